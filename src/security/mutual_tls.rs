//! Mutual TLS on a gRPC port: the server serves its certificate and accepts only clients with a certificate
//! from the trusted authority; a client dials with its own certificate and accepts only servers with one from
//! the same authority, for the address it dialled. The peer port runs it with the peer authority (`peer`),
//! the etcd client port with the etcd authority (`etcd`).
//!
//! A replica's ports follow their files (`tls::LiveIdentity`, `tls::LiveTrust`): a reissued certificate, or a
//! trusted-authority file that now holds another authority too, is used from the next handshake on, in both
//! directions, without a restart. Connections already open keep the certificates they were made with.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::security::tls::{self, LiveIdentity, LiveTrust, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum MutualTlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the {port} TLS files are not usable ({what}): {source}")]
    Invalid { port: &'static str, what: &'static str, source: tonic::transport::Error },
    #[error("the {port} TLS files are not usable: {source}")]
    Tls { port: &'static str, source: TlsError },
}

/// Where one side's TLS material is: the authority it trusts, its certificate and that certificate's key
/// (etcd's `--trusted-ca-file`, `--cert-file`, `--key-file`, and their `--peer-` forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub trusted_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS of a replica's port and of the connections it dials to the same port of other replicas: both ends
/// show the certificate the files hold now and trust the authorities the trusted-authority file holds now.
#[derive(Clone, Debug)]
pub struct MutualTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    handshake: Duration,
}

/// gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

impl MutualTls {
    /// Reads the files of the `port` (named in errors), so that a bad file stops the replica at its start; a
    /// handshake not done within `handshake` is dropped.
    pub fn load(files: &TlsFiles, port: &'static str, handshake: Duration) -> Result<MutualTls, MutualTlsError> {
        let failed = |source| MutualTlsError::Tls { port, source };
        let identity = LiveIdentity::follow(&files.cert, &files.key).map_err(failed)?;
        let trust = LiveTrust::follow(&files.trusted_ca).map_err(failed)?;
        let mut server = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(e.into()))?
            .with_client_cert_verifier(trust.clone())
            .with_cert_resolver(identity.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(e.into()))?
            .dangerous()
            .with_custom_certificate_verifier(trust)
            .with_client_cert_resolver(identity);
        client.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(MutualTls { server: Arc::new(server), client: Arc::new(client), handshake })
    }

    /// Finishes the server side of a handshake on an accepted connection, within the handshake deadline.
    pub async fn accept<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: T,
    ) -> io::Result<tokio_rustls::server::TlsStream<T>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        tokio::time::timeout(self.handshake, acceptor.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"))?
    }

    /// What a tonic endpoint dials the port of another replica with (`Endpoint::connect_with_connector_lazy`,
    /// on an `http://` address: the connector does the TLS).
    pub fn connector(&self) -> Connector {
        Connector { tls: tokio_rustls::TlsConnector::from(self.client.clone()), handshake: self.handshake }
    }
}

/// Dials a TCP connection to a URI's host and port and makes it a TLS connection verified for that host.
#[derive(Clone)]
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
    handshake: Duration,
}

type Dialled = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<http::Uri> for Connector {
    type Response = Dialled;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Dialled>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, handshake) = (self.tls.clone(), self.handshake);
        Box::pin(async move {
            let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("no host and port in {uri}"));
            let host = uri.host().ok_or_else(invalid)?.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().ok_or_else(invalid)?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio::time::timeout(handshake, tls.connect(name, tcp))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"))??;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, MutualTlsError> {
    std::fs::read(path).map_err(|source| MutualTlsError::Read { path: path.clone(), source })
}

/// A client's side alone (etcdctl's `--cacert`, `--cert`, `--key`): dials with the certificate and accepts
/// only servers with one from the authority.
pub fn client_config(files: &TlsFiles, port: &'static str) -> Result<ClientTlsConfig, MutualTlsError> {
    let ca = Certificate::from_pem(read(&files.trusted_ca)?);
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let client = ClientTlsConfig::new().identity(identity).ca_certificate(ca);
    tonic::transport::Endpoint::from_static("https://127.0.0.1:1")
        .tls_config(client.clone())
        .map_err(|source| MutualTlsError::Invalid { port, what: "client", source })?;
    Ok(client)
}
