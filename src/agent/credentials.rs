//! The agent's credentials: its node's certificate (the client certificate it reaches the API with, and the
//! server certificate of its kubelet endpoint) and the cluster authority, obtained once and kept in
//! `<data dir>/pki`, so that a restarted agent needs no replica to sign again until its certificate nears its
//! end or names other addresses. A running agent renews it as it nears its end (`keep_renewed`), and uses the
//! new one from the next handshake on, without a restart.
//!
//! Joining with the node token: from the first replica that answers, the authority's certificate (`CA_PATH`,
//! over a connection that is not verified yet), checked against the token's fingerprint before anything else
//! is sent; then, over a connection verified with that authority, a signing request for a key made here and
//! the token's secret (`CREDENTIALS_PATH`). An agent given a kubeconfig asks the same way, the kubeconfig's
//! client certificate vouching for it instead of the secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::limits;
use crate::security::authn::User;
use crate::security::join::{Credentials, CredentialsRequest, JoinError, NodeToken, CA_PATH, CREDENTIALS_PATH};
use crate::security::kubeconfig::Identity;
use crate::security::pki::{self, Issued};
use crate::security::tls::{self, LiveIdentity, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{0}")]
    Server(String),
    #[error("{0} refused the node token's secret (or the kubeconfig's certificate) as proof for this node")]
    Refused(SocketAddr),
}

/// What the agent proves itself with to have its node's certificate signed.
#[derive(Clone)]
pub enum Proof {
    Token(NodeToken),
    Kubeconfig(Identity),
}

impl Proof {
    /// Whether `authority_pem` is the authority this proof trusts.
    fn trusts(&self, authority_pem: &str) -> bool {
        match self {
            Proof::Token(token) => token.check_authority(authority_pem).is_ok(),
            Proof::Kubeconfig(identity) => identity.authority_pem == authority_pem,
        }
    }
}

/// The node's certificate and the authority that signed it.
pub struct NodeCredentials {
    pub authority_pem: String,
    pub issued: Issued,
}

impl NodeCredentials {
    /// The node's certificate for the handshakes to come, which `keep_renewed` replaces.
    pub fn identity(&self) -> Result<Arc<LiveIdentity>, TlsError> {
        LiveIdentity::new(self.issued.cert_pem.as_bytes(), self.issued.key_pem.as_bytes())
    }

    /// A TLS client configuration showing `identity`.
    pub fn client_config(&self, identity: Arc<LiveIdentity>) -> Result<Arc<ClientConfig>, TlsError> {
        tls::live_client_config(self.authority_pem.as_bytes(), identity)
    }

    /// The kubelet endpoint's TLS: `identity` served to clients of the authority only.
    pub fn kubelet_config(&self, identity: Arc<LiveIdentity>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        tls::kubelet_server_config(self.authority_pem.as_bytes(), identity)
    }

    /// When the certificate is to be renewed: `AGENT_CERTIFICATE_RENEW_DAYS` before it ends.
    fn renew_at(&self) -> Option<time::OffsetDateTime> {
        Some(pki::not_after(&self.issued.cert_pem)? - time::Duration::days(limits::AGENT_CERTIFICATE_RENEW_DAYS))
    }
}

/// Renews the node's certificate (`current`) when it is due, for as long as it runs, and puts each new one in
/// `identity`: the kubelet endpoint serves it, and the API sees it, from the next handshake on.
pub async fn keep_renewed(
    servers: Vec<SocketAddr>,
    proof: Proof,
    node: String,
    hosts: Vec<String>,
    data_dir: PathBuf,
    mut current: NodeCredentials,
    identity: Arc<LiveIdentity>,
) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let due = current.renew_at().map_or(time::Duration::ZERO, |at| at - now);
        let wait =
            Duration::try_from(due).unwrap_or(Duration::ZERO).max(Duration::from_millis(limits::AGENT_JOIN_RETRY_MS));
        tokio::time::sleep(wait).await;
        let renewed = match obtain(&servers, proof.clone(), &node, &hosts, &data_dir).await {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::warn!(error = %e, "agent: renewing the node's certificate failed; trying again later");
                tokio::time::sleep(Duration::from_millis(limits::AGENT_JOIN_RETRY_MAX_MS)).await;
                continue;
            }
        };
        if renewed.issued.cert_pem == current.issued.cert_pem {
            continue;
        }
        match identity.replace(renewed.issued.cert_pem.as_bytes(), renewed.issued.key_pem.as_bytes()) {
            Ok(()) => tracing::info!(node, "agent: the node's certificate was renewed"),
            Err(e) => tracing::warn!(error = %e, "agent: the renewed certificate is not usable"),
        }
        current = renewed;
    }
}

/// Where the agent keeps them.
fn files(data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = data_dir.join("pki");
    (dir.join("ca.crt"), dir.join("node.crt"), dir.join("node.key"))
}

/// The credentials of node `node`, for the addresses `hosts`: kept ones when `proof` trusts their authority
/// and they have a month left, else new ones from the first replica of `servers` that signs (trying them in
/// turn until one does).
pub async fn obtain(
    servers: &[SocketAddr],
    proof: Proof,
    node: &str,
    hosts: &[String],
    data_dir: &Path,
) -> Result<NodeCredentials, CredentialsError> {
    let (ca_path, cert_path, key_path) = files(data_dir);
    if let Some(kept) = kept(&proof, node, hosts, &ca_path, &cert_path, &key_path) {
        return Ok(kept);
    }
    let mut pause = Duration::from_millis(limits::AGENT_JOIN_RETRY_MS);
    let joined = 'joined: loop {
        let mut failures = Vec::new();
        for server in servers {
            match join(*server, &proof, node, hosts).await {
                Ok(joined) => break 'joined joined,
                // Another cluster's replica, or a token this cluster never made: no retry can help.
                Err(e @ CredentialsError::Join(JoinError::WrongAuthority { .. })) => return Err(e),
                Err(e @ CredentialsError::Refused(_)) => return Err(e),
                Err(e) => failures.push(format!("{server}: {e}")),
            }
        }
        tracing::warn!(?failures, "agent: no api server signed this node's certificate yet; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(limits::AGENT_JOIN_RETRY_MAX_MS));
    };
    pki::save(ca_path.parent().expect("in the pki dir"), "node", &joined.issued)?;
    pki::write(&ca_path, &joined.authority_pem, 0o644)?;
    tracing::info!(node, ?hosts, "agent: the node's certificate was signed");
    Ok(joined)
}

/// The credentials kept in the data dir, when `proof` trusts their authority, they name `node` and `hosts` and
/// have at least `AGENT_CERTIFICATE_RENEW_DAYS` left.
fn kept(proof: &Proof, node: &str, hosts: &[String], ca: &Path, cert: &Path, key: &Path) -> Option<NodeCredentials> {
    use rustls::pki_types::pem::PemObject;
    let authority_pem = std::fs::read_to_string(ca).ok()?;
    if !proof.trusts(&authority_pem) {
        return None;
    }
    let issued = Issued { cert_pem: std::fs::read_to_string(cert).ok()?, key_pem: std::fs::read_to_string(key).ok()? };
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).ok()?;
    if User::of_certificate(&der)?.node_name() != Some(node) || pki::hosts(&issued.cert_pem) != hosts {
        return None;
    }
    let kept = NodeCredentials { authority_pem, issued };
    (time::OffsetDateTime::now_utc() < kept.renew_at()?).then_some(kept)
}

/// Has the node's certificate signed by the replica at `server`: with the node token, its authority is first
/// fetched and checked against the token; with a kubeconfig, it is the kubeconfig's.
async fn join(
    server: SocketAddr,
    proof: &Proof,
    node: &str,
    hosts: &[String],
) -> Result<NodeCredentials, CredentialsError> {
    let (authority_pem, verified, secret) = match proof {
        Proof::Token(token) => {
            let unverified = unverified_config();
            let answer = call(server, unverified, http::Method::GET, CA_PATH, Bytes::new()).await?;
            let authority = String::from_utf8_lossy(&answer).into_owned();
            token.check_authority(&authority)?;
            let verified = tls::client_config(authority.as_bytes(), None)?;
            (authority, verified, token.secret.clone())
        }
        Proof::Kubeconfig(identity) => {
            let shown = (identity.cert_pem.as_bytes(), identity.key_pem.as_bytes());
            let verified = tls::client_config(identity.authority_pem.as_bytes(), Some(shown))?;
            (identity.authority_pem.clone(), verified, String::new())
        }
    };
    let (csr, key_pem) = pki::request(&format!("{}{node}", crate::security::authn::NODE_USER_PREFIX))?;
    let request = CredentialsRequest { secret, node: node.to_owned(), csr, hosts: hosts.to_vec() };
    let body = Bytes::from(serde_json::to_vec(&request).expect("a request serializes"));
    let answer = call(server, verified, http::Method::POST, CREDENTIALS_PATH, body).await?;
    let credentials: Credentials = serde_json::from_slice(&answer)
        .map_err(|e| CredentialsError::Server(format!("{server} answered with no certificate: {e}")))?;
    Ok(NodeCredentials { authority_pem, issued: Issued { cert_pem: credentials.certificate, key_pem } })
}

/// One request to `server` over TLS with `config`, within `AGENT_HEALTH_TIMEOUT_MS` per step; the body of a
/// 200 answer. A 401 is a refusal of the token (`Refused`); any other failure may pass.
async fn call(
    server: SocketAddr,
    config: Arc<ClientConfig>,
    method: http::Method,
    path: &str,
    body: Bytes,
) -> Result<Bytes, CredentialsError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CredentialsError::Server(format!("{server}: {what}: {e}"));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(server).await.map_err(|e| failed("connect", &e))?;
        let name = ServerName::IpAddress(server.ip().into());
        let stream =
            tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| failed("tls", &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed("http", &e))?;
        let connection = tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, server.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| failed("request", &e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(path, &e))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), limits::NODE_CREDENTIALS_BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| failed(path, &e))?
            .to_bytes();
        connection.abort();
        match status {
            http::StatusCode::OK => Ok(body),
            http::StatusCode::UNAUTHORIZED => Err(CredentialsError::Refused(server)),
            other => Err(failed(path, &format!("{other}: {}", String::from_utf8_lossy(&body)))),
        }
    };
    let timeout = Duration::from_millis(limits::AGENT_HEALTH_TIMEOUT_MS);
    tokio::time::timeout(timeout, exchange).await.map_err(|_| failed(path, &"no answer in time"))?
}

/// A TLS client that accepts any server certificate: only for fetching the authority's certificate, which is
/// then checked against the token before anything is sent.
fn unverified_config() -> Arc<ClientConfig> {
    let provider = crate::security::tls::provider();
    let verifier = Arc::new(AnyServer(provider.clone()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any certificate, yet checks that the server holds its key.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
