//! The Kubernetes API machinery that needs no server: the catalog of kinds, the OpenAPI documents built from it
//! and, for the objects of those kinds as Kubernetes JSON (`serde_json::Value`), their defaults, validation,
//! selectors, printed tables, protobuf bodies and patch engines (JSON, merge, strategic, server-side apply with
//! managed fields and the schema they follow).
//!
//! **Architecture invariant:** pure. Nothing here imports the store, the API server, the cluster layer, an
//! async runtime or an HTTP crate; it depends on k8s-openapi, serde and `limits` only, so that the API server,
//! the controllers, the scheduler and the agent can all use it. `tests/layering.rs` enforces the rule.

pub mod admission;
pub mod catalog;
pub mod cluster_dns;
pub mod conversion;
pub mod defaults;
pub mod managed_fields;
pub mod omitempty;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod schema;
pub mod selectors;
pub mod strategic;
pub mod strategy;
pub mod table;
pub mod time;
pub mod validation;

/// The minor version of the Kubernetes API whose types are served (k8s-openapi's `v1_33`).
pub const KUBERNETES_MINOR: &str = "33";
