//! The composition root: builds a replica from validated configuration and runs it until shutdown.

pub mod config;
pub mod server;
