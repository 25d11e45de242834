//! The Kubernetes API's HTTP edge: the router and request options (`rest`), discovery documents
//! (`discovery`), the relay of container logs from the node's kubelet (`logs`) and the computed component
//! statuses (`components`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub mod audit;
pub mod authorize;
pub mod components;
pub mod discovery;
pub mod eviction;
pub mod exec;
pub mod fairness;
pub mod instrument;
pub mod join;
pub mod logs;
pub mod metrics;
pub mod rest;

/// The plain HTTP client a replica reaches other processes with (kubelets, other replicas' APIs): bodiless
/// requests, a connection attempt given up after `connect_timeout_ms`, at most `idle` idle connections kept per
/// host. Connections are set up here, where TLS will go.
pub type PlainClient = Client<HttpConnector, Empty<Bytes>>;

pub fn plain_client(connect_timeout_ms: u64, idle: usize) -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle).build(connector)
}

/// The client a replica reaches other replicas' APIs (`componentstatuses`' probes, the relay of metrics reads
/// to the leader) and the agents' kubelet endpoints with: over TLS, showing its own API certificate and
/// verifying theirs with the cluster authority, when the API serves TLS; keeping at most `idle` idle
/// connections per host.
#[derive(Clone)]
pub struct ReplicaClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    scheme: &'static str,
}

impl ReplicaClient {
    pub fn new(connect_timeout_ms: u64, idle: usize, tls: Option<Arc<rustls::ClientConfig>>) -> ReplicaClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Without TLS the configuration is never used: the scheme is http.
        let tls = tls.unwrap_or_else(|| {
            let provider = crate::security::tls::provider();
            let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions();
            let roots = rustls::RootCertStore::empty();
            Arc::new(
                builder
                    .expect("ring supports the default versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
        // The builder sets the ALPN protocols itself (HTTP/1.1 here).
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        ReplicaClient {
            client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle).build(connector),
            scheme,
        }
    }

    /// The URI of `path` (with its query) on the replica or kubelet at `address`.
    pub fn uri(&self, address: &str, path: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        format!("{}://{address}{path}", self.scheme).parse()
    }

    pub fn request(&self, request: http::Request<Empty<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }
}
