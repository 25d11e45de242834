//! The agent's credentials: its node's client certificate and the cluster authority, obtained once with the
//! node token (`security::join`) and kept in `<data dir>/pki`, so that a restarted agent needs no replica
//! to sign again until its certificate nears its end.
//!
//! Joining: from the first replica that answers, the authority's certificate (`CA_PATH`, over a connection
//! that is not verified yet), checked against the token's fingerprint before anything else is sent; then,
//! over a connection verified with that authority, a signing request for a key made here and the token's
//! secret (`CREDENTIALS_PATH`).

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
use crate::security::pki::{self, Issued};
use crate::security::tls::{self, TlsError};

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
    #[error("{0} refused the node token's secret")]
    Refused(SocketAddr),
}

/// Where the agent keeps them.
fn files(data_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = data_dir.join("pki");
    (dir.join("ca.crt"), dir.join("node.crt"), dir.join("node.key"))
}

/// The TLS client configuration the agent reaches the API with: kept credentials when they are the token's
/// authority's and have a month left, else new ones from the first replica of `servers` that signs
/// (trying them in turn until one does).
pub async fn obtain(
    servers: &[SocketAddr],
    token: &NodeToken,
    node: &str,
    data_dir: &Path,
) -> Result<Arc<ClientConfig>, CredentialsError> {
    let (ca_path, cert_path, key_path) = files(data_dir);
    if let Some((authority, issued)) = kept(token, node, &ca_path, &cert_path, &key_path) {
        let identity = (issued.cert_pem.as_bytes(), issued.key_pem.as_bytes());
        return Ok(tls::client_config(authority.as_bytes(), Some(identity))?);
    }
    let mut pause = Duration::from_millis(limits::AGENT_JOIN_RETRY_MS);
    let (authority, issued) = 'joined: loop {
        let mut failures = Vec::new();
        for server in servers {
            match join(*server, token, node).await {
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
    pki::save(ca_path.parent().expect("in the pki dir"), "node", &issued)?;
    pki::write(&ca_path, &authority, 0o644)?;
    tracing::info!(node, "agent: joined the cluster with the node token");
    let identity = (issued.cert_pem.as_bytes(), issued.key_pem.as_bytes());
    Ok(tls::client_config(authority.as_bytes(), Some(identity))?)
}

/// The credentials kept in the data dir, when they are the token's authority's, name `node` and have at
/// least `AGENT_CERTIFICATE_RENEW_DAYS` left.
fn kept(token: &NodeToken, node: &str, ca: &Path, cert: &Path, key: &Path) -> Option<(String, Issued)> {
    use rustls::pki_types::pem::PemObject;
    let authority = std::fs::read_to_string(ca).ok()?;
    token.check_authority(&authority).ok()?;
    let issued = Issued { cert_pem: std::fs::read_to_string(cert).ok()?, key_pem: std::fs::read_to_string(key).ok()? };
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).ok()?;
    if User::of_certificate(&der)?.node_name() != Some(node) {
        return None;
    }
    let renew_at = pki::not_after(&issued.cert_pem)? - time::Duration::days(limits::AGENT_CERTIFICATE_RENEW_DAYS);
    (time::OffsetDateTime::now_utc() < renew_at).then_some((authority, issued))
}

/// Joins through the replica at `server`: its authority, checked against the token, then a certificate.
async fn join(server: SocketAddr, token: &NodeToken, node: &str) -> Result<(String, Issued), CredentialsError> {
    let unverified = unverified_config();
    let authority = String::from_utf8_lossy(&call(server, unverified, http::Method::GET, CA_PATH, Bytes::new()).await?)
        .into_owned();
    token.check_authority(&authority)?;
    let verified = tls::client_config(authority.as_bytes(), None)?;
    let (csr, key_pem) = pki::request(&format!("{}{node}", crate::security::authn::NODE_USER_PREFIX))?;
    let request = CredentialsRequest { secret: token.secret.clone(), node: node.to_owned(), csr };
    let body = Bytes::from(serde_json::to_vec(&request).expect("a request serializes"));
    let answer = call(server, verified, http::Method::POST, CREDENTIALS_PATH, body).await?;
    let credentials: Credentials = serde_json::from_slice(&answer)
        .map_err(|e| CredentialsError::Server(format!("{server} answered with no certificate: {e}")))?;
    Ok((authority, Issued { cert_pem: credentials.certificate, key_pem }))
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
