//! The composition root and its tools: builds a replica from validated configuration and runs it until
//! shutdown (`server`) behind its listeners' limits (`listen`), lays out local clusters of real processes
//! (`local`), and talks to them (`etcd_client`; `ctl`, the operator's status and snapshots); `config_file` turns
//! a TOML config file into the flags it stands for; `memory` gives freed heap memory back to the system;
//! `leadership` runs the leader-only work, `compaction` among it.

pub mod compaction;
pub mod config;
pub mod config_file;
pub mod ctl;
pub mod etcd_client;
pub mod leadership;
pub mod listen;
pub mod local;
pub mod memory;
pub mod server;
