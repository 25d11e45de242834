//! The client-facing API layer: the only layer that touches the store.
//!
//! Two APIs on every replica: the etcd v3 gRPC API (`etcd`) and the Kubernetes REST API, in two parts: the HTTP
//! edge (`http`: routing, options, content negotiation, discovery, the log relay) and the registry of stored
//! objects (`registry`: the verbs, lists and watches, server-side apply, allocations, and the reads and writes
//! of objects in the store), with the watch cache that fans each resource's changes out to its watches
//! (`watch_cache`). The Kubernetes API keeps objects as JSON under `/registry/` keys; its
//! `resourceVersion` is the store's mod revision. What it knows of Kubernetes objects without the store comes
//! from `crate::apis`.

pub mod errors;
pub mod etcd;
pub mod http;
pub mod operations;
pub mod registry;
pub mod watch_cache;
