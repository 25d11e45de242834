//! The node agent: the kubelet (its runtimes and its HTTP endpoint).

pub mod kubelet;
pub mod runtime;
