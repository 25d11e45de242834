//! Mutual TLS on a gRPC port: the server serves its certificate and accepts only clients with a certificate
//! from the trusted authority; a client dials with its own certificate and accepts only servers with one from
//! the same authority, for the address it dialled. The peer port runs it with the peer authority (`peer`),
//! the etcd client port with the etcd authority (`etcd`).

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum MutualTlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the {port} TLS files are not usable ({what}): {source}")]
    Invalid { port: &'static str, what: &'static str, source: tonic::transport::Error },
}

/// Where one side's TLS material is: the authority it trusts, its certificate and that certificate's key
/// (etcd's `--trusted-ca-file`, `--cert-file`, `--key-file`, and their `--peer-` forms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub trusted_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS settings of a port and of the connections to it.
#[derive(Clone, Debug)]
pub struct MutualTls {
    server: ServerTlsConfig,
    client: ClientTlsConfig,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, MutualTlsError> {
    std::fs::read(path).map_err(|source| MutualTlsError::Read { path: path.clone(), source })
}

impl MutualTls {
    /// Reads the files of the `port` (named in errors) and checks that they make a server and a client
    /// configuration; a handshake not done within `handshake` is dropped.
    pub fn load(files: &TlsFiles, port: &'static str, handshake: Duration) -> Result<MutualTls, MutualTlsError> {
        let ca = Certificate::from_pem(read(&files.trusted_ca)?);
        let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
        let tls = MutualTls {
            server: ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone()).timeout(handshake),
            client: ClientTlsConfig::new().identity(identity).ca_certificate(ca).timeout(handshake),
        };
        // Both are parsed here, so that a bad file stops the replica at its start.
        tonic::transport::Server::builder()
            .tls_config(tls.server.clone())
            .map_err(|source| MutualTlsError::Invalid { port, what: "server", source })?;
        check_client(&tls.client, port)?;
        Ok(tls)
    }

    pub fn server(&self) -> ServerTlsConfig {
        self.server.clone()
    }

    pub fn client(&self) -> ClientTlsConfig {
        self.client.clone()
    }
}

/// A client's side alone (etcdctl's `--cacert`, `--cert`, `--key`): dials with the certificate and accepts
/// only servers with one from the authority.
pub fn client_config(files: &TlsFiles, port: &'static str) -> Result<ClientTlsConfig, MutualTlsError> {
    let ca = Certificate::from_pem(read(&files.trusted_ca)?);
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let client = ClientTlsConfig::new().identity(identity).ca_certificate(ca);
    check_client(&client, port)?;
    Ok(client)
}

fn check_client(client: &ClientTlsConfig, port: &'static str) -> Result<(), MutualTlsError> {
    tonic::transport::Endpoint::from_static("https://127.0.0.1:1")
        .tls_config(client.clone())
        .map(drop)
        .map_err(|source| MutualTlsError::Invalid { port, what: "client", source })
}
