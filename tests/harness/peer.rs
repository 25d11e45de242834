//! Connections to a replica's peer port as the tests need them: with a peer certificate of the cluster's
//! authority (to speak as a replica would), or with credentials the port must refuse.

use raftsman::security::{peer, pki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::TestCluster;

/// What a connection shows the peer port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A peer certificate from the cluster's peer authority.
    Member,
    /// A certificate of the same name and host from another authority (of the same name).
    OtherAuthority,
    /// TLS without a client certificate.
    NoCertificate,
    /// No TLS at all.
    Plaintext,
}

/// The cluster's peer authority.
pub fn authority(c: &TestCluster) -> pki::Authority {
    let dir = &c.local.pki;
    pki::Authority::load(dir, peer::AUTHORITY).expect("the peer authority")
}

/// A peer certificate for a loopback replica named `name`, from `authority`.
pub fn identity(authority: &pki::Authority, name: &str) -> Identity {
    let issued = authority.issue(name, &[], &["127.0.0.1".into()], pki::Usage::ServerAndClient).unwrap();
    Identity::from_pem(issued.cert_pem, issued.key_pem)
}

/// The endpoint of replica `i`'s peer port with `credentials` (it trusts the cluster's authority).
pub fn endpoint(c: &TestCluster, i: usize, credentials: Credentials) -> Endpoint {
    let addr = c.local.members[i].peer_addr;
    if credentials == Credentials::Plaintext {
        return Endpoint::from_shared(format!("http://{addr}")).unwrap();
    }
    let cluster_authority = authority(c);
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cluster_authority.cert_pem()));
    match credentials {
        Credentials::Member => tls = tls.identity(identity(&cluster_authority, "tester")),
        Credentials::OtherAuthority => {
            let other = pki::Authority::create(peer::AUTHORITY_NAME).unwrap();
            tls = tls.identity(identity(&other, &c.local.members[(i + 1) % c.local.members.len()].name));
        }
        Credentials::NoCertificate | Credentials::Plaintext => {}
    }
    Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap()
}

/// A channel to replica `i`'s peer port as a replica of the cluster.
pub async fn member_channel(c: &TestCluster, i: usize) -> Channel {
    endpoint(c, i, Credentials::Member).connect().await.expect("peer port answers")
}
