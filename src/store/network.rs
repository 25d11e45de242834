//! The client half of the peer protocol: openraft's network over tonic, and requests forwarded to the leader.
//!
//! Channels are created lazily per peer address and reused; every call has a deadline. Transport failures
//! map to openraft's `Unreachable` (it backs off) or `NetworkError` (it retries soon).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Future;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::RaftNetworkV2;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::command::{Applied, Command};
use super::disk::off_the_workers;
use super::types::*;
use super::version::{Advertised, BEFORE_ADVERTISING};
use crate::limits;
use crate::proto::peer::raft_peer_client::RaftPeerClient;
use crate::proto::peer::{RaftMessage, SnapshotChunk, VersionRequest};

/// What a follower asks of the leader on behalf of a client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderRequest {
    Propose(Command),
    ReadIndex,
    KeepAlive(i64),
    TimeToLive(i64),
    /// A member that lost its database and rejoins with an empty log: the leader is to accept, once, that
    /// this member's log went back to empty, and replicate to it from the start.
    AcceptRejoin(NodeId),
    /// Add a member at `peer_addr` (`membership`): a learner, or a voter at once when `learner` is false.
    AddMember {
        name: String,
        peer_addr: String,
        learner: bool,
    },
    /// Make a caught-up learner a voter.
    PromoteMember(NodeId),
    /// Take a member out of the cluster.
    RemoveMember(NodeId),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderResponse {
    /// The command's result and the log index it was applied at.
    Applied {
        applied: Applied,
        index: u64,
    },
    ReadIndex(u64),
    /// Remaining seconds of a lease, or None when the lease does not exist.
    Ttl(Option<i64>),
    /// The leader will replicate to the rejoining member from the start.
    RejoinAccepted,
    /// The member's id: added now, or there already.
    MemberAdded(NodeId),
    /// The membership change is committed.
    MembershipChanged,
    /// The receiver is not the leader; it names the leader it knows.
    NotLeader(Option<NodeId>),
    /// The request reached the leader but failed there; the outcome of a write is unknown.
    Failed(String),
    /// The leader refused the request without proposing it (it breaks a limit or is malformed).
    Refused(String),
}

/// The header of a streamed snapshot: the leader's vote and the snapshot's meta.
#[derive(Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory values always serialize")
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}

/// Makes the (lazily connecting) channel to a peer's `http://` address (over TLS, the dialer's connector does
/// the handshake).
pub type Dialer = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

/// The metadata header every peer request carries: the sender's cluster id (hex). A replica refuses requests
/// from another cluster, and from senders that do not say.
pub const CLUSTER_HEADER: &str = "raftsman-cluster-id";

/// `message` as a request from a replica of `cluster`.
pub fn peer_request<T>(message: T, cluster: u64) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("{cluster:x}").parse().expect("hex digits are a valid header value");
    request.metadata_mut().insert(CLUSTER_HEADER, value);
    request
}

/// Lazily connected channels to the peers of one cluster, by address.
#[derive(Clone)]
pub struct PeerPool {
    /// std Mutex: only a map lookup or insert happens under it.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    dial: Dialer,
    cluster: u64,
}

impl PeerPool {
    /// Peers of `cluster` reached through `dial` (TCP, or the simulation's network).
    pub fn new(cluster: u64, dial: Dialer) -> PeerPool {
        PeerPool { channels: Arc::default(), dial, cluster }
    }

    /// The cluster these peers belong to.
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    pub fn client(&self, addr: &str) -> RaftPeerClient<Channel> {
        let mut channels = self.channels.lock().expect("peer pool poisoned");
        let channel = channels
            .entry(addr.to_string())
            .or_insert_with(|| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .expect("peer addresses are validated socket addresses")
                    .connect_timeout(Duration::from_millis(limits::PEER_RPC_TIMEOUT_MS))
                    .http2_keep_alive_interval(Duration::from_millis(limits::PEER_KEEPALIVE_INTERVAL_MS))
                    .keep_alive_timeout(Duration::from_millis(limits::PEER_RPC_TIMEOUT_MS));
                (self.dial)(endpoint)
            })
            .clone();
        RaftPeerClient::new(channel)
            .max_decoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::PEER_MESSAGE_BYTES_MAX)
    }

    /// Sends a leader-only request to `addr`; `Err` means the request may not have arrived.
    pub async fn forward(&self, addr: &str, req: &LeaderRequest) -> Result<LeaderResponse, tonic::Status> {
        let mut client = self.client(addr);
        let mut request = peer_request(RaftMessage { payload: encode(req) }, self.cluster);
        request.set_timeout(Duration::from_millis(limits::WRITE_TIMEOUT_MS));
        let reply = client.forward(request).await?.into_inner();
        decode(&reply.payload).map_err(|e| tonic::Status::internal(format!("undecodable forward reply: {e}")))
    }
}

/// What a replica that is not a member yet sends to join a cluster (`Join`): its name and peer address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub name: String,
    pub peer_addr: String,
}

/// The answer to a join: the cluster the replica joined and its member id there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Joined {
    pub cluster_id: u64,
    pub member_id: NodeId,
}

impl PeerPool {
    /// Asks the replica at `addr` to add this one as a learner (`JoinRequest`); `Err` says why not.
    pub async fn join(&self, addr: &str, req: &JoinRequest) -> Result<Joined, String> {
        let mut request = tonic::Request::new(RaftMessage { payload: encode(req) });
        request.set_timeout(Duration::from_millis(limits::WRITE_TIMEOUT_MS));
        let reply = self.client(addr).join(request).await.map_err(|status| status.message().to_owned())?;
        decode::<Result<Joined, String>>(&reply.into_inner().payload)
            .map_err(|e| format!("undecodable join reply: {e}"))?
    }
}

impl PeerPool {
    /// What the replica at `addr` advertises (`version`): `BEFORE_ADVERTISING` for a build that does not
    /// know the call; Err says why there is no answer.
    pub async fn version(&self, addr: &str) -> Result<Advertised, String> {
        let mut request = peer_request(VersionRequest {}, self.cluster);
        request.set_timeout(Duration::from_millis(limits::PEER_RPC_TIMEOUT_MS));
        match self.client(addr).version(request).await {
            Ok(reply) => Advertised::from_proto(&reply.into_inner()),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(BEFORE_ADVERTISING),
            Err(status) => Err(status.message().to_owned()),
        }
    }
}

/// Splits an append-entries request into consecutive requests whose entries encode to at most `budget`
/// bytes each, except that an entry larger than `budget` makes a request of its own. A request without
/// entries (a heartbeat) stays one request.
pub fn split_append(rpc: AppendEntriesRequest<TypeConfig>, budget: usize) -> Vec<AppendEntriesRequest<TypeConfig>> {
    let AppendEntriesRequest { vote, prev_log_id, entries, leader_commit } = rpc;
    let mut parts: Vec<AppendEntriesRequest<TypeConfig>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = bincode::serialized_size(&entry).unwrap_or(u64::MAX).min(usize::MAX as u64) as usize;
        match parts.last_mut() {
            Some(part) if bytes + size <= budget => {
                bytes += size;
                part.entries.push(entry);
            }
            _ => {
                let prev = match parts.last() {
                    Some(p) => p.entries.last().map(|e| e.log_id),
                    None => prev_log_id,
                };
                bytes = size;
                parts.push(AppendEntriesRequest { vote, prev_log_id: prev, entries: vec![entry], leader_commit });
            }
        }
    }
    if parts.is_empty() {
        parts.push(AppendEntriesRequest { vote, prev_log_id, entries: Vec::new(), leader_commit });
    }
    parts
}

/// openraft's network factory.
#[derive(Clone)]
pub struct PeerNetwork {
    pub pool: PeerPool,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> PeerConn {
        PeerConn { client: self.pool.client(&node.peer_addr), target, cluster: self.pool.cluster }
    }
}

/// One unary method of the peer client, as a function pointer.
type PeerCall =
    for<'a> fn(
        &'a mut RaftPeerClient<Channel>,
        tonic::Request<RaftMessage>,
    ) -> Pin<Box<dyn Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>> + Send + 'a>>;

pub struct PeerConn {
    client: RaftPeerClient<Channel>,
    target: NodeId,
    cluster: u64,
}

fn rpc_err(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerConn {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        which: PeerCall,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut request = peer_request(RaftMessage { payload: encode(req) }, self.cluster);
        request.set_timeout(option.soft_ttl().min(Duration::from_millis(limits::PEER_RPC_TIMEOUT_MS)));
        let reply = which(&mut self.client, request).await.map_err(rpc_err)?.into_inner();
        let decoded: Result<Resp, String> =
            decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| RPCError::Unreachable(Unreachable::from_string(format!("peer {}: {e}", self.target))))
    }
}

/// A snapshot as the stream of chunks that carries it: the header in the first, then the body read from its
/// file a chunk at a time, as the transport asks for more (so at most a few chunks are in memory). A body that
/// cannot be read ends the stream early; the follower then refuses the snapshot as truncated.
fn snapshot_chunks(header: Vec<u8>, body: SnapshotData) -> impl futures::Stream<Item = SnapshotChunk> {
    futures::stream::unfold(Some((header, 0u64, body)), |next| async move {
        let (header, offset, body) = next?;
        let reading = body.clone();
        let read = off_the_workers(body.reads_block(), move || reading.read(offset, limits::SNAPSHOT_CHUNK_BYTES));
        let data = match read.await.and_then(|r| r) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(error = %e, offset, "reading a snapshot to send: the follower gets it truncated");
                return None;
            }
        };
        let end = offset + data.len() as u64;
        let more = (end < body.len()).then_some((Vec::new(), end, body));
        Some((SnapshotChunk { header, data }, more))
    })
}

impl RaftNetworkV2<TypeConfig> for PeerConn {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A batch of entries may be larger than a peer message can carry: send it in parts of at most
        // `APPEND_ENTRIES_BYTES_MAX` (an entry larger than that alone), each part following the previous one.
        let mut sent = None;
        for (i, part) in split_append(rpc, limits::APPEND_ENTRIES_BYTES_MAX).into_iter().enumerate() {
            let last = part.entries.last().map(|e| e.log_id).or(part.prev_log_id);
            let reply = self.call(&part, &option, |c, r| Box::pin(c.append_entries(r))).await;
            match reply {
                Ok(AppendEntriesResponse::Success) => sent = last,
                // The first part answers for the whole request.
                reply if i == 0 => return reply,
                // A later part that did not go through: what the earlier parts matched stands.
                Ok(AppendEntriesResponse::HigherVote(vote)) => return Ok(AppendEntriesResponse::HigherVote(vote)),
                Ok(_) | Err(_) => return Ok(AppendEntriesResponse::PartialSuccess(sent)),
            }
        }
        Ok(AppendEntriesResponse::Success)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, |c, r| Box::pin(c.vote(r))).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, &option, |c, r| Box::pin(c.transfer_leader(r))).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = encode(&SnapshotHeader { vote, meta: snapshot.meta });
        let mut request = peer_request(snapshot_chunks(header, snapshot.snapshot), self.cluster);
        request.set_timeout(Duration::from_millis(limits::SNAPSHOT_RPC_TIMEOUT_MS));
        let send = self.client.install_snapshot(request);
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = send => reply.map_err(|s| StreamingError::from(rpc_err(s)))?.into_inner(),
        };
        let decoded: Result<SnapshotResponse<TypeConfig>, String> =
            decode(&reply.payload).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))
    }
}
