//! The server half of the peer protocol: hands Raft messages to openraft and forwarded requests to the store.
//!
//! Architecture invariant: nothing a peer sends can crash or brick this replica, whoever sends it (a buggy or
//! version-skewed replica sends the same bytes as an attacker). Before a Raft message reaches openraft, its
//! sender must be a member, its terms and indexes must be plausible (at most `RAFT_TERM_OR_INDEX_MAX`, so no
//! arithmetic on them overflows) and consistent (entries consecutive, no term above the sender's); a snapshot
//! is checked whole (format, checksum, every record) before anything is replaced; forwarded commands get the
//! checks of client requests (`Store::serve_forwarded`).

use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::network::{decode, encode, JoinRequest, Joined, LeaderRequest, SnapshotHeader, CLUSTER_HEADER};
use super::snapshot::check_snapshot;
use super::types::*;
use super::Store;
use crate::limits;
use crate::proto::peer::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::peer::{RaftMessage, SnapshotChunk, VersionInfo, VersionRequest};

pub struct PeerService {
    store: Store,
}

impl PeerService {
    pub fn server(store: Store) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(PeerService { store })
            .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
    }
}

fn bad_payload(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

/// The snapshot file could not be written here: nothing was installed, the leader sends it again later.
fn unwritable(e: std::io::Error) -> Status {
    tracing::error!(error = %e, "receiving a snapshot");
    Status::internal(format!("writing the snapshot: {e}"))
}

/// A peer message that is refused before it reaches openraft.
fn refused(reason: String) -> Status {
    tracing::warn!(%reason, "refused a peer message");
    Status::invalid_argument(format!("refused peer message: {reason}"))
}

fn check_log_id(what: &str, log_id: Option<&LogId>, term_max: u64) -> Result<(), String> {
    let Some(log_id) = log_id else { return Ok(()) };
    if term_of(log_id) > term_max {
        return Err(format!("{what} has term {}, above the sender's term {term_max}", term_of(log_id)));
    }
    if log_id.index > limits::RAFT_TERM_OR_INDEX_MAX {
        return Err(format!("{what} has an implausible index {}", log_id.index));
    }
    Ok(())
}

/// Checks the vote a message carries: a plausible term, and a sender that is a member.
fn check_vote(vote: &Vote, is_member: impl Fn(NodeId) -> bool) -> Result<(), String> {
    let (term, node) = (vote.leader_id.term, vote.leader_id.voted_for);
    if term > limits::RAFT_TERM_OR_INDEX_MAX {
        return Err(format!("implausible term {term}"));
    }
    if !is_member(node) {
        return Err(format!("{node:x} is not a member of this cluster"));
    }
    Ok(())
}

/// Checks an append-entries request: its vote, and entries that follow `prev_log_id` one by one, in terms
/// that never decrease and never exceed the sender's.
pub fn check_append(rpc: &AppendEntriesRequest<TypeConfig>, is_member: impl Fn(NodeId) -> bool) -> Result<(), String> {
    check_vote(&rpc.vote, is_member)?;
    let term = rpc.vote.leader_id.term;
    check_log_id("prev_log_id", rpc.prev_log_id.as_ref(), term)?;
    check_log_id("leader_commit", rpc.leader_commit.as_ref(), term)?;
    let mut prev = rpc.prev_log_id;
    for entry in &rpc.entries {
        check_log_id("an entry", Some(&entry.log_id), term)?;
        let expected = prev.as_ref().map_or(0, |p| p.index + 1);
        if entry.log_id.index != expected {
            return Err(format!("entry {} does not follow {expected}", entry.log_id.index));
        }
        if prev.as_ref().is_some_and(|p| term_of(p) > term_of(&entry.log_id)) {
            return Err(format!("entry {} has a lower term than the one before it", entry.log_id.index));
        }
        prev = Some(entry.log_id);
    }
    Ok(())
}

pub fn check_vote_request(rpc: &VoteRequest<TypeConfig>, is_member: impl Fn(NodeId) -> bool) -> Result<(), String> {
    check_vote(&rpc.vote, is_member)?;
    check_log_id("last_log_id", rpc.last_log_id.as_ref(), rpc.vote.leader_id.term)
}

pub fn check_transfer(
    rpc: &TransferLeaderRequest<TypeConfig>,
    is_member: impl Fn(NodeId) -> bool,
) -> Result<(), String> {
    check_vote(rpc.from_leader(), &is_member)?;
    if !is_member(*rpc.to_node_id()) {
        return Err(format!("{:x} is not a member of this cluster", rpc.to_node_id()));
    }
    check_log_id("last_log_id", rpc.last_log_id(), rpc.from_leader().leader_id.term)
}

pub fn check_snapshot_header(header: &SnapshotHeader, is_member: impl Fn(NodeId) -> bool) -> Result<(), String> {
    check_vote(&header.vote, is_member)?;
    check_log_id("the snapshot's last log id", header.meta.last_log_id.as_ref(), header.vote.leader_id.term)
}

impl PeerService {
    /// Refuses a request from a replica of another cluster (or one that does not say which): its member ids
    /// could collide with this cluster's, and a joining replica would otherwise take whoever leads it.
    fn check_cluster(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let ours = self.store.cluster_id();
        let theirs = metadata.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).map(|v| u64::from_str_radix(v, 16));
        match theirs {
            Some(Ok(id)) if id == ours => Ok(()),
            Some(Ok(id)) => Err(refused(format!("the sender belongs to cluster {id:x}, this replica to {ours:x}"))),
            _ => Err(refused(format!("the sender did not say its cluster ({CLUSTER_HEADER})"))),
        }
    }

    /// Whether `id` is in this replica's membership (voter or learner). A replica without any membership yet
    /// (one waiting to join) learns its cluster from whoever leads it.
    fn is_member(&self) -> impl Fn(NodeId) -> bool {
        let joining = self.joining();
        let membership = self.store.raft().metrics().borrow_watched().membership_config.clone();
        move |id| joining || membership.membership().get_node(&id).is_some()
    }

    /// Refuses Raft messages while this replica waits to be accepted back with an empty log (`Store::rejoin`).
    fn check_not_awaiting_rejoin(&self) -> Result<(), Status> {
        if self.store.awaiting_rejoin() {
            return Err(Status::unavailable("rejoining: waiting for the leader to accept this member's empty log"));
        }
        Ok(())
    }

    /// Whether this replica has no membership yet: it waits for a leader to bring it the cluster's state.
    fn joining(&self) -> bool {
        self.store.raft().metrics().borrow_watched().membership_config.membership().voter_ids().next().is_none()
    }
}

/// A Raft reply, with Raft's own errors carried as text (the caller treats them as the peer being unreachable).
fn reply<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Response<RaftMessage>, Status> {
    let result = result.map_err(|e| e.to_string());
    Ok(Response::new(RaftMessage { payload: encode(&result) }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_cluster(req.metadata())?;
        self.check_not_awaiting_rejoin()?;
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        check_append(&rpc, self.is_member()).map_err(refused)?;
        reply(self.store.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_cluster(req.metadata())?;
        self.check_not_awaiting_rejoin()?;
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        check_vote_request(&rpc, self.is_member()).map_err(refused)?;
        if self.joining() {
            // A replica without a membership is one rejoining after losing its database: with an empty log it
            // would vote for any candidate, even one lacking acknowledged writes.
            return Err(refused("this replica is rejoining and votes once a leader has given it its log".into()));
        }
        reply(self.store.raft().vote(rpc).await)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_cluster(req.metadata())?;
        self.check_not_awaiting_rejoin()?;
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        check_transfer(&rpc, self.is_member()).map_err(refused)?;
        reply(self.store.raft().handle_transfer_leader(rpc).await)
    }

    /// Writes the chunks to a new snapshot file as they arrive (at most one chunk in memory), checks the whole
    /// file, and only then hands it to Raft, which installs it from the file.
    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        self.check_cluster(req.metadata())?;
        self.check_not_awaiting_rejoin()?;
        let mut chunks = req.into_inner();
        let first = chunks.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let header: SnapshotHeader = decode(&first.header).map_err(bad_payload)?;
        check_snapshot_header(&header, self.is_member()).map_err(refused)?;
        let (store, meta) = (self.store.clone(), header.meta.clone());
        let mut file = self.store.off_the_workers(move || store.receive_snapshot(&meta)).await.map_err(unwritable)?;
        let mut data = first.data;
        loop {
            if !file.fits(data.len()) {
                return Err(Status::resource_exhausted("snapshot larger than the limit"));
            }
            file = self.store.off_the_workers(move || file.write(&data).map(|()| file)).await.map_err(unwritable)?;
            match chunks.next().await {
                Some(chunk) => data = chunk?.data,
                None => break,
            }
        }
        let meta = header.meta.clone();
        let body = self.store.off_the_workers(move || file.finish()).await.map_err(unwritable)?;
        let checked = body.clone();
        self.store
            .off_the_workers(move || check_snapshot(&meta, &checked))
            .await
            .map_err(|e| refused(e.to_string()))?;
        let snapshot = Snapshot { meta: header.meta, snapshot: body };
        reply(self.store.raft().install_full_snapshot(header.vote, snapshot).await)
    }

    async fn forward(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_cluster(req.metadata())?;
        let request: LeaderRequest = decode(&req.into_inner().payload).map_err(bad_payload)?;
        let response = self.store.serve_forwarded(request).await;
        Ok(Response::new(RaftMessage { payload: encode(&response) }))
    }

    /// Adds the sender as a learner, through the leader. The one request without the cluster's id: the sender
    /// does not know it yet; its peer certificate (the peer port's TLS) is what lets it in.
    async fn join(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let JoinRequest { name, peer_addr } = decode(&req.into_inner().payload).map_err(bad_payload)?;
        if peer_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(refused(format!("{peer_addr:?} is not a peer address (HOST:PORT)")));
        }
        tracing::info!(%name, %peer_addr, "a replica asks to join");
        let joined = self
            .store
            .add_member(name, peer_addr, true)
            .await
            .map(|member_id| Joined { cluster_id: self.store.cluster_id(), member_id })
            .map_err(|e| e.to_string());
        Ok(Response::new(RaftMessage { payload: encode(&joined) }))
    }

    async fn version(&self, req: Request<VersionRequest>) -> Result<Response<VersionInfo>, Status> {
        self.check_cluster(req.metadata())?;
        Ok(Response::new(self.store.advertised().to_proto()))
    }
}
