//! The client-facing API layer: the only layer that touches the store. Today it serves the etcd v3 API.

pub mod etcd;
