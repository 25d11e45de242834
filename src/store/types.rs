//! The openraft type configuration of raftsman's store.

use serde::{Deserialize, Serialize};

use super::command::{Applied, Command};

/// A Raft member as the log records it: its name and where its peers and clients reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    pub name: String,
    pub peer_addr: String,
}

openraft::declare_raft_types!(
    /// Standard Raft (one leader per term) over raftsman's commands.
    pub TypeConfig:
        D = Command,
        R = Applied,
        Node = RaftNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = super::runtime::Runtime,
);

pub type NodeId = u64;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot's body, in its file.
pub type SnapshotData = super::snapshot::SnapshotBody;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub type Raft = openraft::Raft<TypeConfig, super::storage::StateMachine>;

/// The term a log id was written in.
pub fn term_of(log_id: &LogId) -> u64 {
    log_id.leader_id.term
}
