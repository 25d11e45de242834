//! TLS of the Kubernetes API (rustls, with ring): the replica serves its API certificate and asks every client
//! for a certificate of the cluster authority, which it verifies when one is shown (a client may also come with
//! a bearer token, or with nothing for the public paths: `authn` decides). The same authority signs the
//! replicas' API certificates, so a replica, an agent or a kubeconfig trusts it to reach an API server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The name of the cluster authority's files in a PKI directory, and its subject.
pub const AUTHORITY: &str = "ca";
pub const AUTHORITY_NAME: &str = "raftsman-ca";

/// The name of replica `name`'s API certificate files in a PKI directory.
pub fn api_files(name: &str) -> String {
    format!("{name}-api")
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{what} holds no usable PEM {kind}")]
    Pem { what: String, kind: &'static str },
    #[error("the TLS settings are not usable: {0}")]
    Config(#[from] rustls::Error),
    #[error("the client authority is not usable: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where a replica's API TLS material is (kube-apiserver's `--tls-cert-file`, `--tls-private-key-file`,
/// `--client-ca-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The API's TLS: how it serves, and how this replica dials other replicas' APIs (with its own certificate,
/// whose subject is `authn::API_SERVER_USER`).
#[derive(Clone)]
pub struct ApiTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// The cluster authority's certificate (PEM), as `--client-ca-file` holds it.
    pub authority_pem: String,
}

/// The crypto provider of every TLS configuration here: ring, as the peer port's (tonic's `tls-ring`) and the
/// encryption at rest use. rustls marks it deprecated for its lack of post-quantum key exchange; moving to
/// another provider is one change here.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// The certificates of a PEM text (`what` names it in errors).
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    match certs.is_empty() {
        true => Err(TlsError::Pem { what: what.to_owned(), kind: "certificate" }),
        false => Ok(certs),
    }
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Pem { what: what.to_owned(), kind: "private key" })
}

fn roots(authority_pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(authority_pem, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A client configuration that trusts `authority_pem` and shows `identity` (certificate and key PEM), if any.
pub fn client_config(authority_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(authority_pem, "the cluster authority")?);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            certificates(cert, "the client certificate")?,
            private_key(key, "the client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl ApiTls {
    /// Reads the files and builds both configurations, so that a bad file stops the replica at its start.
    pub fn load(files: &ApiTlsFiles) -> Result<ApiTls, TlsError> {
        let (cert, key, ca) = (read(&files.cert)?, read(&files.key)?, read(&files.client_ca)?);
        let what = |path: &Path| path.display().to_string();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&ca, &what(&files.client_ca))?), provider())
                .allow_unauthenticated()
                .build()?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates(&cert, &what(&files.cert))?, private_key(&key, &what(&files.key))?)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = client_config(&ca, Some((&cert, &key)))?;
        let authority_pem = String::from_utf8_lossy(&ca).into_owned();
        Ok(ApiTls { server: Arc::new(server), client, authority_pem })
    }
}
