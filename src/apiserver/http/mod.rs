//! The Kubernetes API's HTTP edge: the router and request options (`rest`), discovery documents
//! (`discovery`), the relay of container logs from the node's kubelet (`logs`) and the computed component
//! statuses (`components`).

pub mod components;
pub mod discovery;
pub mod eviction;
pub mod logs;
pub mod metrics;
pub mod rest;
