//! Mutual TLS between replicas: the peer port serves TLS and accepts only clients with a certificate from the
//! peer authority, and a replica dials its peers with its own certificate and accepts only servers with one
//! from the same authority, for the address it dialled. A replica without the peer authority's certificate
//! (another cluster's, an agent's, none) can neither send Raft messages to a replica nor receive them.

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::limits;

/// The name of the peer authority's files in a PKI directory, and its subject.
pub const AUTHORITY: &str = "peer-ca";
pub const AUTHORITY_NAME: &str = "raftsman-peer-ca";

#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the peer TLS files are not usable ({what}): {source}")]
    Invalid { what: &'static str, source: tonic::transport::Error },
}

/// Where a replica's peer TLS material is (etcd's `--peer-trusted-ca-file`, `--peer-cert-file`,
/// `--peer-key-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsFiles {
    pub trusted_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS settings of the peer port and of the connections to peers.
#[derive(Clone, Debug)]
pub struct PeerTls {
    server: ServerTlsConfig,
    client: ClientTlsConfig,
}

impl PeerTls {
    /// Reads the files and checks that they make a server and a client configuration.
    pub fn load(files: &PeerTlsFiles) -> Result<PeerTls, PeerTlsError> {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|source| PeerTlsError::Read { path: path.clone(), source });
        let ca = Certificate::from_pem(read(&files.trusted_ca)?);
        let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
        let handshake = Duration::from_millis(limits::PEER_PREFACE_TIMEOUT_MS);
        let tls = PeerTls {
            server: ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone()).timeout(handshake),
            client: ClientTlsConfig::new().identity(identity).ca_certificate(ca).timeout(handshake),
        };
        // Both are parsed here, so that a bad file stops the replica at its start.
        tonic::transport::Server::builder()
            .tls_config(tls.server.clone())
            .map_err(|source| PeerTlsError::Invalid { what: "server", source })?;
        tonic::transport::Endpoint::from_static("https://127.0.0.1:1")
            .tls_config(tls.client.clone())
            .map_err(|source| PeerTlsError::Invalid { what: "client", source })?;
        Ok(tls)
    }

    pub fn server(&self) -> ServerTlsConfig {
        self.server.clone()
    }

    pub fn client(&self) -> ClientTlsConfig {
        self.client.clone()
    }
}
