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

/// The certificate a gRPC port at `addr` (peer or etcd client) serves, through a handshake that trusts only
/// `authority_pem` and shows `shown`; `Err` says why the handshake failed (either side refused the other).
pub async fn served_certificate(
    addr: std::net::SocketAddr,
    authority_pem: &str,
    shown: &pki::Issued,
) -> Result<Vec<u8>, String> {
    use raftsman::security::tls;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls::certificates(authority_pem.as_bytes(), "authority").unwrap() {
        roots.add(cert).unwrap();
    }
    let chain = tls::certificates(shown.cert_pem.as_bytes(), "shown").unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(shown.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    // A client certificate the server refuses is only known when the server's alert arrives.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut first = [0u8; 9];
    stream.read_exact(&mut first).await.map_err(|e| e.to_string())?;
    let leaf = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).expect("a served certificate");
    Ok(leaf.to_vec())
}
