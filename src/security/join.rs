//! How an agent joins: with the node token a replica writes to `<data dir>/node-token`, it obtains its node's
//! client certificate (`system:node:<name>` in `system:nodes`) from any replica, without its key leaving it.
//!
//! The token is `sha256:<fingerprint>::<secret>`: the fingerprint of the cluster authority's certificate lets
//! the agent check the authority it is handed (over an unverified connection, from `CA_PATH`) before it trusts
//! it, as k3s's tokens do; the secret is an HMAC of the authority's key, so that every replica holding the
//! key (which it needs to sign anyway) agrees on it without storing it, and a new authority revokes it. The
//! agent then sends a certificate signing request and the secret to `CREDENTIALS_PATH` over a connection it
//! verifies; the replica signs the request's key for the node named, and for nothing else: the certificate is
//! the node's client certificate and its kubelet endpoint's server certificate, for the addresses it gives.
//! An agent that holds an admin's client certificate (a kubeconfig) or its node's own gets one the same way,
//! without the secret.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::authn::{User, MASTERS_GROUP, NODES_GROUP, NODE_USER_PREFIX};
use super::pki::{self, Authority, PkiError, Usage};
use crate::limits;

/// Where a replica serves the cluster authority's certificate (anyone may read it).
pub const CA_PATH: &str = "/cacerts";
/// Where a replica signs a node's certificate signing request for the node token's secret.
pub const CREDENTIALS_PATH: &str = "/raftsman/v1/node-credentials";
/// What the secret is derived under.
const SECRET_LABEL: &[u8] = b"raftsman node token v1";

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("a node token is sha256:<fingerprint>::<secret>")]
    TokenFormat,
    #[error("the node token's secret is not this cluster's")]
    WrongSecret,
    #[error("{0:?} is not a valid node name (a DNS subdomain of at most 253 characters)")]
    NodeName(String),
    #[error("a node's addresses are IPs or DNS names, at most {max} of them: {0:?}", max = limits::NODE_CERTIFICATE_HOSTS_MAX)]
    Hosts(Vec<String>),
    #[error(
        "the cluster authority served does not have the node token's fingerprint (expected {expected}, got {got})"
    )]
    WrongAuthority { expected: String, got: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A parsed node token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeToken {
    /// The SHA-256 of the cluster authority's certificate (DER), in hex.
    pub fingerprint: String,
    pub secret: String,
}

impl NodeToken {
    /// The node token of `authority`.
    pub fn of(authority: &Authority) -> NodeToken {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, authority.key_pem().as_bytes());
        NodeToken {
            fingerprint: pki::fingerprint(authority.cert_pem()).expect("an authority's certificate is valid PEM"),
            secret: pki::hex(ring::hmac::sign(&key, SECRET_LABEL).as_ref()),
        }
    }

    pub fn parse(text: &str) -> Result<NodeToken, JoinError> {
        let (fingerprint, secret) = text.trim().split_once("::").ok_or(JoinError::TokenFormat)?;
        let fingerprint = fingerprint.strip_prefix("sha256:").ok_or(JoinError::TokenFormat)?;
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(fingerprint, 64) || !hex(secret, 64) {
            return Err(JoinError::TokenFormat);
        }
        Ok(NodeToken { fingerprint: fingerprint.to_ascii_lowercase(), secret: secret.to_ascii_lowercase() })
    }

    /// Checks that `authority_pem` is the authority this token names.
    pub fn check_authority(&self, authority_pem: &str) -> Result<(), JoinError> {
        let got = pki::fingerprint(authority_pem).unwrap_or_default();
        match got == self.fingerprint {
            true => Ok(()),
            false => Err(JoinError::WrongAuthority { expected: self.fingerprint.clone(), got }),
        }
    }
}

impl std::fmt::Display for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}::{}", self.fingerprint, self.secret)
    }
}

/// What an agent sends to `CREDENTIALS_PATH`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialsRequest {
    /// The node token's secret; may be empty when the connection's client certificate vouches for the request
    /// (`sign`).
    #[serde(default)]
    pub secret: String,
    pub node: String,
    /// A PKCS#10 certificate signing request (PEM) for the node's key.
    pub csr: String,
    /// The node's addresses (IPs or DNS names): its certificate serves its kubelet endpoint there.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// What it gets back: the node's certificate (PEM), a client one for the API and a server one for its
/// kubelet endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub certificate: String,
}

/// Signs a node's request when its secret is `authority`'s, or when `vouched_by` (the client certificate of
/// the connection) is an admin's (`system:masters`: an agent run with an admin's kubeconfig) or the node's own
/// (renewing): the certificate names the node the request asks for, whatever its signing request says.
pub fn sign(
    authority: &Authority,
    request: &CredentialsRequest,
    vouched_by: Option<&User>,
) -> Result<Credentials, JoinError> {
    let vouched = vouched_by.is_some_and(|u| u.in_group(MASTERS_GROUP) || u.node_name() == Some(&request.node));
    if !vouched {
        let token = NodeToken::of(authority);
        // Compared as HMACs of both under a fresh key, so that the time taken says nothing about the secret.
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the system's random source");
        let tag = ring::hmac::sign(&key, token.secret.as_bytes());
        ring::hmac::verify(&key, request.secret.as_bytes(), tag.as_ref()).map_err(|_| JoinError::WrongSecret)?;
    }
    if !crate::apis::validation::dns1123_subdomain(&request.node).is_empty() {
        return Err(JoinError::NodeName(request.node.clone()));
    }
    let valid = |h: &String| h.parse::<IpAddr>().is_ok() || crate::apis::validation::dns1123_subdomain(h).is_empty();
    if request.hosts.len() > limits::NODE_CERTIFICATE_HOSTS_MAX || !request.hosts.iter().all(valid) {
        return Err(JoinError::Hosts(request.hosts.clone()));
    }
    let user = format!("{NODE_USER_PREFIX}{}", request.node);
    let usage = Usage::ServerAndClient;
    let certificate = authority.sign_request(&request.csr, &user, &[NODES_GROUP], &request.hosts, usage)?;
    Ok(Credentials { certificate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_pins_its_authority() {
        let ca = Authority::create("test-ca").unwrap();
        let token = NodeToken::of(&ca);
        assert_eq!(NodeToken::parse(&format!(" {token}\n")).unwrap(), token);
        assert_eq!(NodeToken::of(&ca), token, "the same authority, the same token");
        token.check_authority(ca.cert_pem()).unwrap();
        let other = Authority::create("test-ca").unwrap();
        assert_ne!(NodeToken::of(&other).secret, token.secret);
        assert!(matches!(token.check_authority(other.cert_pem()), Err(JoinError::WrongAuthority { .. })));
        for bad in ["", "abc", "sha256:12::34", &token.secret, &format!("md5:{}::{}", token.fingerprint, token.secret)]
        {
            assert!(NodeToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_secret_buys_a_certificate_for_the_node_named_and_nothing_else() {
        let ca = Authority::create("test-ca").unwrap();
        let secret = NodeToken::of(&ca).secret;
        // The signing request asks to be an admin: its subject is ignored.
        let (csr, _key) = pki::request("system:admin").unwrap();
        let request = |secret: &str, node: &str| CredentialsRequest {
            secret: secret.into(),
            node: node.into(),
            csr: csr.clone(),
            hosts: vec!["10.0.0.7".into(), "worker-1.example".into()],
        };
        let issued = sign(&ca, &request(&secret, "worker-1"), None).unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(issued.certificate.as_bytes()).unwrap();
        assert_eq!(User::of_certificate(&der), Some(User::new("system:node:worker-1", &[NODES_GROUP])));
        assert_eq!(pki::hosts(&issued.certificate), ["10.0.0.7", "worker-1.example"]);
        assert!(matches!(sign(&ca, &request(&"0".repeat(64), "worker-1"), None), Err(JoinError::WrongSecret)));
        assert!(matches!(sign(&ca, &request(&secret, "Bad_Name"), None), Err(JoinError::NodeName(_))));
        let forged = CredentialsRequest { csr: csr.replace('A', "B"), ..request(&secret, "worker-1") };
        assert!(sign(&ca, &forged, None).is_err(), "a request whose signature does not check out");
        let odd = CredentialsRequest { hosts: vec!["not a host".into()], ..request(&secret, "worker-1") };
        assert!(matches!(sign(&ca, &odd, None), Err(JoinError::Hosts(_))));
        // Without the secret: an admin's certificate, or the node's own, vouches; another node's does not.
        let admin = User::new("admin", &[MASTERS_GROUP]);
        assert!(sign(&ca, &request("", "worker-1"), Some(&admin)).is_ok());
        let own = User::new("system:node:worker-1", &[NODES_GROUP]);
        assert!(sign(&ca, &request("", "worker-1"), Some(&own)).is_ok());
        let other = User::new("system:node:worker-2", &[NODES_GROUP]);
        assert!(matches!(sign(&ca, &request("", "worker-1"), Some(&other)), Err(JoinError::WrongSecret)));
    }
}
