//! The Kubernetes API's HTTP edge: the router and request options (`rest`), discovery documents
//! (`discovery`), the relay of container logs from the node's kubelet (`logs`) and the computed component
//! statuses (`components`).

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub mod components;
pub mod discovery;
pub mod eviction;
pub mod exec;
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
