//! The Kubernetes API's HTTP edge: the router and request options (`rest`), discovery documents
//! (`discovery`) and the relay of container logs from the node's kubelet (`logs`).

pub mod discovery;
pub mod logs;
pub mod rest;
