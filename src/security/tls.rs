//! TLS of the Kubernetes API (rustls, with ring): the replica serves its API certificate and asks every client
//! for a certificate of the cluster authority, which it verifies when one is shown (a client may also come with
//! a bearer token, or with nothing for the public paths: `authn` decides). The same authority signs the
//! replicas' API certificates, so a replica, an agent or a kubeconfig trusts it to reach an API server; and
//! the nodes' certificates, which their kubelet endpoints serve to the replicas, which show theirs in turn.
//!
//! `LiveIdentity` (a certificate and its key) and `LiveTrust` (the trusted authorities) hold what their files
//! hold now, for every TLS port of a replica: files replaced while it runs are used from the next handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::limits;

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

/// Files looked at again, at most every `TLS_FILES_CHECK_MS` (on a handshake, not by a timer), to see
/// whether any of them changed since the last look.
#[derive(Debug)]
struct Followed {
    paths: Vec<PathBuf>,
    /// When the files were last looked at, and their modification times then.
    seen: Mutex<(Instant, Vec<Option<SystemTime>>)>,
}

impl Followed {
    fn new(paths: &[&Path]) -> Followed {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let times = paths.iter().map(|p| modified(p)).collect();
        Followed { paths, seen: Mutex::new((Instant::now(), times)) }
    }

    /// Whether a file changed since the last look; false until `TLS_FILES_CHECK_MS` have passed since then.
    fn changed(&self) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0.elapsed() < Duration::from_millis(limits::TLS_FILES_CHECK_MS) {
            return false;
        }
        let times: Vec<_> = self.paths.iter().map(|p| modified(p)).collect();
        let changed = times != seen.1;
        *seen = (Instant::now(), times);
        changed
    }

    fn first(&self) -> &Path {
        &self.paths[0]
    }
}

/// A certificate and its key that may change while connections are made with them: what a server serves and
/// a client shows, each handshake taking the current pair. Replaced whole (`replace`), or read again from the
/// files it came from once they change (`follow`); a pair that does not load, or whose key is not the
/// certificate's, is refused and the current one kept.
#[derive(Debug)]
pub struct LiveIdentity {
    current: RwLock<Arc<CertifiedKey>>,
    /// The certificate's and the key's files, when followed.
    files: Option<Followed>,
}

impl LiveIdentity {
    /// The pair `cert_pem` and `key_pem`.
    pub fn new(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<LiveIdentity>, TlsError> {
        Ok(Arc::new(LiveIdentity { current: RwLock::new(certified(cert_pem, key_pem)?), files: None }))
    }

    /// The pair in the files `cert` and `key`, read again whenever either changes.
    pub fn follow(cert: &Path, key: &Path) -> Result<Arc<LiveIdentity>, TlsError> {
        let files = Some(Followed::new(&[cert, key]));
        let current = RwLock::new(certified(&read(cert)?, &read(key)?)?);
        Ok(Arc::new(LiveIdentity { current, files }))
    }

    /// Takes `cert_pem` and `key_pem` for every handshake from now on.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let next = certified(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// The pair to use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        if let Some(files) = self.files.as_ref().filter(|f| f.changed()) {
            let loaded = read(&files.paths[0]).and_then(|cert| Ok((cert, read(&files.paths[1])?)));
            reloaded(files, loaded.and_then(|(cert, key)| self.replace(&cert, &key)));
        }
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

fn reloaded(files: &Followed, outcome: Result<(), TlsError>) {
    match outcome {
        Ok(()) => tracing::info!(file = %files.first().display(), "tls: the file changed: using what it holds now"),
        Err(e) => {
            tracing::warn!(file = %files.first().display(), error = %e, "tls: the changed file is not usable; keeping what it held")
        }
    }
}

/// The authorities a port trusts, from a PEM file that may change: a bundle of several certificates while an
/// authority is replaced (trust the new one as well, reissue every certificate from it, then drop the old
/// one). Each handshake verifies the peer's chain against what the file holds now (looked at as `Followed`
/// says); a changed file that holds no usable certificate is refused and the current authorities kept. As a
/// server's verifier it requires a client certificate.
#[derive(Debug)]
pub struct LiveTrust {
    current: RwLock<Verifiers>,
    file: Followed,
    /// Checks handshake signatures, which depend on no authority.
    provider: Arc<rustls::crypto::CryptoProvider>,
}

#[derive(Clone, Debug)]
struct Verifiers {
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<dyn ServerCertVerifier>,
}

impl Verifiers {
    fn of(authorities_pem: &[u8], what: &str) -> Result<Verifiers, TlsError> {
        let roots = Arc::new(roots(authorities_pem, what)?);
        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider()).build()?;
        Ok(Verifiers { clients, servers })
    }
}

impl LiveTrust {
    /// The authorities in the file `path`, read again whenever it changes.
    pub fn follow(path: &Path) -> Result<Arc<LiveTrust>, TlsError> {
        let file = Followed::new(&[path]);
        let current = RwLock::new(Verifiers::of(&read(path)?, &path.display().to_string())?);
        Ok(Arc::new(LiveTrust { current, file, provider: provider() }))
    }

    fn current(&self) -> Verifiers {
        if self.file.changed() {
            let path = self.file.first();
            let next = read(path).and_then(|pem| Verifiers::of(&pem, &path.display().to_string()));
            reloaded(&self.file, next.map(|next| *self.current.write().unwrap_or_else(|p| p.into_inner()) = next));
        }
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl LiveTrust {
    fn tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
}

impl ClientCertVerifier for LiveTrust {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client shows the one certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().clients.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for LiveTrust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().servers.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A certificate chain and its key, checked to match.
fn certified(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(cert_pem, "the certificate")?;
    let key = private_key(key_pem, "the key")?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

/// A client configuration that trusts `authority_pem` and shows `identity` as it is at each handshake.
pub fn live_client_config(authority_pem: &[u8], identity: Arc<LiveIdentity>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(authority_pem, "the cluster authority")?)
        .with_client_cert_resolver(identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A kubelet endpoint's server configuration: it serves `identity` (the node's certificate) and asks every
/// client for a certificate of `authority_pem`, refusing the handshake of one without.
pub fn kubelet_server_config(authority_pem: &[u8], identity: Arc<LiveIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(authority_pem, "the cluster authority")?),
        provider(),
    )
    .build()?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

impl ApiTls {
    /// Reads the files and builds both configurations, so that a bad file stops the replica at its start. The
    /// certificate and key are followed: replaced files are served (and shown to other replicas) from the next
    /// handshake on, without a restart.
    pub fn load(files: &ApiTlsFiles) -> Result<ApiTls, TlsError> {
        let ca = read(&files.client_ca)?;
        let what = |path: &Path| path.display().to_string();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&ca, &what(&files.client_ca))?), provider())
                .allow_unauthenticated()
                .build()?;
        let identity = LiveIdentity::follow(&files.cert, &files.key)?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(identity.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = live_client_config(&ca, identity)?;
        let authority_pem = String::from_utf8_lossy(&ca).into_owned();
        Ok(ApiTls { server: Arc::new(server), client, authority_pem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::pki::{self, Authority, Usage};

    fn leaf(identity: &LiveIdentity) -> Vec<u8> {
        identity.current().cert[0].to_vec()
    }

    #[test]
    fn a_followed_certificate_is_taken_once_its_files_change_and_only_if_it_loads() {
        let ca = Authority::create("test-ca").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let issue = || ca.issue("system:apiserver", &[], &["127.0.0.1".into()], Usage::ServerAndClient).unwrap();
        let first = issue();
        pki::save(dir.path(), "api", &first).unwrap();
        let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
        let identity = LiveIdentity::follow(&cert, &key).unwrap();
        let served = leaf(&identity);
        assert_eq!(served, certificates(first.cert_pem.as_bytes(), "first").unwrap()[0].to_vec());

        // A new pair is served once the files have been looked at again.
        let second = issue();
        pki::save(dir.path(), "api", &second).unwrap();
        std::thread::sleep(Duration::from_millis(limits::TLS_FILES_CHECK_MS + 100));
        let renewed = leaf(&identity);
        assert_eq!(renewed, certificates(second.cert_pem.as_bytes(), "second").unwrap()[0].to_vec());

        // A certificate whose key is another's, or a file that is not PEM, is refused: the last good pair stays.
        pki::write(&cert, &issue().cert_pem, 0o644).unwrap();
        std::thread::sleep(Duration::from_millis(limits::TLS_FILES_CHECK_MS + 100));
        assert_eq!(leaf(&identity), renewed, "a certificate without its key");
        pki::write(&key, "not a key", 0o600).unwrap();
        std::thread::sleep(Duration::from_millis(limits::TLS_FILES_CHECK_MS + 100));
        assert_eq!(leaf(&identity), renewed, "a key that does not load");
        assert!(identity.replace(second.cert_pem.as_bytes(), first.key_pem.as_bytes()).is_err());
        identity.replace(first.cert_pem.as_bytes(), first.key_pem.as_bytes()).unwrap();
        assert_eq!(leaf(&identity), served);
    }

    #[test]
    fn a_followed_authority_file_is_trusted_as_it_changes_and_only_if_it_loads() {
        let (old, new) = (Authority::create("old-ca").unwrap(), Authority::create("new-ca").unwrap());
        let leaf_of = |ca: &Authority| {
            let issued = ca.issue("replica", &[], &["127.0.0.1".into()], Usage::ServerAndClient).unwrap();
            certificates(issued.cert_pem.as_bytes(), "leaf").unwrap().remove(0)
        };
        let (old_leaf, new_leaf) = (leaf_of(&old), leaf_of(&new));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.crt");
        let rewrite = |pem: &str| {
            pki::write(&path, pem, 0o644).unwrap();
            std::thread::sleep(Duration::from_millis(limits::TLS_FILES_CHECK_MS + 100));
        };
        rewrite(old.cert_pem());
        let trust = LiveTrust::follow(&path).unwrap();
        let trusted = |leaf: &CertificateDer<'_>| {
            let as_client = trust.verify_client_cert(leaf, &[], UnixTime::now()).is_ok();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let as_server = trust.verify_server_cert(leaf, &[], &name, &[], UnixTime::now()).is_ok();
            assert_eq!(as_client, as_server, "both directions trust the same authorities");
            as_client
        };
        assert!(trusted(&old_leaf) && !trusted(&new_leaf));

        // While the authority is replaced, the file holds both: both are trusted.
        rewrite(&format!("{}{}", old.cert_pem(), new.cert_pem()));
        assert!(trusted(&old_leaf) && trusted(&new_leaf));
        // Then the old one is dropped.
        rewrite(new.cert_pem());
        assert!(!trusted(&old_leaf) && trusted(&new_leaf));
        // A file that holds no certificate is refused: the authorities stay as they were.
        rewrite("not a certificate");
        assert!(!trusted(&old_leaf) && trusted(&new_leaf));
    }
}
