//! The client-facing API layer: the only layer that touches the store.
//!
//! Two APIs on every replica: the etcd v3 gRPC API (`etcd`) and the Kubernetes REST API (`rest` and the
//! modules it composes). The Kubernetes API keeps objects as JSON under `/registry/` keys; its
//! `resourceVersion` is the store's mod revision.

pub mod allocations;
pub mod apply;
pub mod collections;
pub mod defaults;
pub mod discovery;
pub mod errors;
pub mod etcd;
pub mod logs;
pub mod managed_fields;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod rest;
pub mod schema;
pub mod selectors;
pub mod strategic;
pub mod table;
pub mod validation;
pub mod verbs;
