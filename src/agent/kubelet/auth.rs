//! Who may use the kubelet endpoint. Over TLS (the node's certificate, `agent::credentials`), only the API
//! servers: a client must show a certificate of the cluster authority (the handshake fails without one, within
//! `KUBELET_TLS_HANDSHAKE_TIMEOUT_MS`), and only one in `system:masters` (the replicas' API certificates,
//! `system:apiserver`, and admins') is served; any other, a node's included, is answered 403. The agent of a
//! cluster whose API runs without TLS (`--insecure-api`) serves its endpoint over plain HTTP to anyone.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::security::authn::{User, MASTERS_GROUP};

/// How the endpoint is reached.
#[derive(Clone)]
pub enum Access {
    /// Over TLS with this configuration, which asks clients for a certificate of the cluster authority.
    Tls(Arc<rustls::ServerConfig>),
    /// Over plain HTTP, by anyone.
    Open,
}

/// Whether a client whose verified certificate is `certificate` (None: it showed none) is served.
pub fn admitted(access: &Access, certificate: Option<&CertificateDer<'_>>) -> bool {
    match access {
        Access::Open => true,
        Access::Tls(_) => certificate.and_then(|c| User::of_certificate(c)).is_some_and(|u| u.in_group(MASTERS_GROUP)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::pki::{Authority, Usage};
    use crate::security::tls::LiveIdentity;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn over_tls_only_the_masters_group_is_served() {
        let ca = Authority::create("test-ca").unwrap();
        let der = |user: &str, groups: &[&str]| {
            let issued = ca.issue(user, groups, &[], Usage::Client).unwrap();
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
        };
        let node =
            ca.issue("system:node:n1", &["system:nodes"], &["127.0.0.1".into()], Usage::ServerAndClient).unwrap();
        let identity = LiveIdentity::new(node.cert_pem.as_bytes(), node.key_pem.as_bytes()).unwrap();
        let config = crate::security::tls::kubelet_server_config(ca.cert_pem().as_bytes(), identity).unwrap();
        let tls = Access::Tls(config);
        assert!(admitted(&tls, Some(&der("system:apiserver", &[MASTERS_GROUP]))));
        assert!(!admitted(&tls, Some(&der("system:node:n2", &["system:nodes"]))));
        assert!(!admitted(&tls, Some(&der("jane", &[]))));
        assert!(!admitted(&tls, None));
        assert!(admitted(&Access::Open, None));
    }
}
