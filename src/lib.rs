//! raftsman: a Kubernetes-style control plane whose replicas embed their own Raft-replicated store.
//!
//! See ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod agent;
pub mod apis;
pub mod apiserver;
pub mod bench;
pub mod cluster;
pub mod controllers;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod scheduler;
pub mod security;
pub mod store;
pub mod telemetry;
