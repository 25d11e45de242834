//! Raw connections to a replica's Kubernetes API, for tests that write HTTP by hand: TLS, with a client
//! certificate of the cluster authority (the admin's unless said otherwise), handshake done.

use std::net::SocketAddr;
use std::sync::Arc;

use raftsman::security::authn::{ADMIN_USER, MASTERS_GROUP};
use raftsman::security::pki::Usage;
use raftsman::security::tls::client_config;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use raftsman::cluster::local::LocalCluster;

use super::TestCluster;

pub type ApiStream = tokio_rustls::client::TlsStream<TcpStream>;
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// A TLS client configuration that trusts the cluster authority and shows a certificate for `user` in
/// `groups` (None: no certificate).
pub fn tls_as(cluster: &LocalCluster, user: Option<(&str, &[&str])>) -> Arc<rustls::ClientConfig> {
    let authority = cluster.authority().expect("the cluster authority");
    let issued = user.map(|(name, groups)| authority.issue(name, groups, &[], Usage::Client).expect("a certificate"));
    let identity = issued.as_ref().map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes()));
    client_config(authority.cert_pem().as_bytes(), identity).expect("a client configuration")
}

/// The admin's TLS client configuration.
pub fn admin_tls(cluster: &LocalCluster) -> Arc<rustls::ClientConfig> {
    tls_as(cluster, Some((ADMIN_USER, &[MASTERS_GROUP])))
}

/// A TLS connection to `addr` with `config`.
pub async fn connect_with(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<ApiStream> {
    over(TcpStream::connect(addr).await?, config).await
}

/// TLS with `config` over the connection `tcp`.
pub async fn over(tcp: TcpStream, config: Arc<rustls::ClientConfig>) -> std::io::Result<ApiStream> {
    let name = rustls::pki_types::ServerName::IpAddress(tcp.peer_addr()?.ip().into());
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// A TLS connection to replica `i`'s API as the admin.
pub async fn connect(cluster: &TestCluster, i: usize) -> ApiStream {
    connect_with(cluster.local.members[i].api_addr, admin_tls(&cluster.local)).await.expect("the API answers over TLS")
}

/// Everything the server sends until it closes: a close without TLS's close_notify ends it too.
pub async fn read_all(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    answer
}

/// An HTTP client of the cluster's APIs (`https://` URLs) as the admin.
pub fn https_client(cluster: &TestCluster) -> HttpsClient {
    https_client_with(admin_tls(&cluster.local))
}

/// An HTTP client of the cluster's APIs (`https://` URLs) with the TLS configuration `tls`.
pub fn https_client_with(tls: Arc<rustls::ClientConfig>) -> HttpsClient {
    // The builder sets the ALPN protocols itself.
    let mut tls = (*tls).clone();
    tls.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}
