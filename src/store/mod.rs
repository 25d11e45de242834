//! The replicated store: openraft over RocksDB, the MVCC state machine, the watch hub and the leases.
//!
//! `Store` is the cheap handle every client-facing service uses, through its methods only: Raft, the state
//! machine, the disk and the peer pool stay private to this module. Any replica accepts any request:
//! - writes are proposed locally on the leader and forwarded to it by followers (waiting up to
//!   `LEADER_WAIT_MS` for an election, then failing with `Unavailable`);
//! - linearizable reads obtain a read index from the leader (ReadIndex), wait until the local state machine
//!   has applied it, and read locally; serializable reads read locally at once;
//! - lease keep-alives and time-to-live queries are answered by the leader, which alone tracks expiry;
//! - watches are `Watcher`s (`watch.rs`), cursors over the history that wait for new revisions.
//!
//! Architecture invariants: a write is acknowledged only once committed (fsynced on a quorum) and applied;
//! a write whose fate is unknown is reported as a failure, never retried behind the client's back.

pub mod command;
pub mod disk;
mod lease;
mod membership;
pub mod mvcc;
pub mod network;
pub mod peer;
pub mod runtime;
pub mod saved;
pub mod snapshot;
pub mod storage;
pub mod types;
pub mod version;
pub mod watch;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ReadPolicy, ServerState};
use tokio::time::Instant;

use command::{Applied, ApplyError, Command, RangeOp, RangeResult};
use network::{LeaderRequest, LeaderResponse, PeerPool};
use storage::{Db, MemberAttrs, SmShared};
use types::*;
use watch::{Revisions, WatchFilter, Watcher};

use crate::{limits, telemetry};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No leader, no quorum, or a deadline passed; for a write, the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    #[error("raft stopped: {0}")]
    Stopped(String),
    /// The command breaks a limit or is malformed; nothing was proposed.
    #[error("{0}")]
    Invalid(String),
    #[error("etcdserver: request is too large ({bytes} bytes encoded, the limit is {max})")]
    TooLarge { bytes: u64, max: usize },
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee {0:x}")]
    BadTransferee(NodeId),
}

/// A serializable read of the state machine: in place for a single key (one point read), on tokio's blocking
/// pool for a range of keys on a disk whose reads block.
async fn read_range(sm: &Arc<SmShared>, op: &RangeOp) -> Result<(i64, RangeResult), ApplyError> {
    if op.range.end.is_empty() || !sm.disk_reads_block() {
        return sm.range(op);
    }
    let (sm, op) = (sm.clone(), op.clone());
    let read = tokio::task::spawn_blocking(move || sm.range(&op)).await;
    read.map_err(|e| ApplyError::Storage(format!("the read stopped: {e}")))?
}

/// Where leader-only work must go.
enum LeaderAt {
    Local,
    Remote(String),
}

struct StoreInner {
    raft: Raft,
    sm: Arc<SmShared>,
    db: Arc<Db>,
    pool: PeerPool,
    id: NodeId,
    cluster_id: u64,
    lessor: lease::Lessor,
    /// Each follower's replication progress as the leader last saw it change (for `health`). std Mutex: a map
    /// update only, never held across an await.
    progress: std::sync::Mutex<BTreeMap<NodeId, Progress>>,
    /// Set while this replica, rejoining with an empty log, waits for the leader to accept that: until then it
    /// answers no Raft message, so the leader never sees its empty log as a log that went back.
    awaiting_rejoin: std::sync::atomic::AtomicBool,
    /// What this replica advertises and what it last learned of the other members' versions. std Mutex: never
    /// held across an await.
    versions: std::sync::Mutex<version::Versions>,
}

/// A follower's matched log index and when the leader first saw it there.
#[derive(Clone, Copy)]
struct Progress {
    matched: Option<u64>,
    since: Instant,
}

/// The handle to this replica's store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

/// A member of the cluster as this replica knows it: from the Raft membership, with the attributes it
/// published through the log (none yet when it has not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    pub peer_addr: String,
    pub published: Option<MemberAttrs>,
    pub is_learner: bool,
}

/// A lease as the state machine holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub granted_ttl: i64,
    /// The keys attached to it, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// Where this replica stands in Raft right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftRole {
    pub term: u64,
    /// In the Leader state (whether or not it has applied an entry of its term yet).
    pub leads: bool,
    pub applied_index: u64,
}

/// What `etcdctl endpoint status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub db_size_bytes: u64,
    pub is_learner: bool,
}

impl Store {
    pub fn new(raft: Raft, sm: Arc<SmShared>, db: Arc<Db>, pool: PeerPool, id: NodeId) -> Store {
        let inner = StoreInner {
            raft,
            sm,
            db,
            cluster_id: pool.cluster(),
            pool,
            id,
            lessor: lease::Lessor::default(),
            progress: Default::default(),
            awaiting_rejoin: Default::default(),
            versions: Default::default(),
        };
        Store { inner: Arc::new(inner) }
    }

    fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    fn sm(&self) -> &SmShared {
        &self.inner.sm
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// This replica's member id.
    pub fn member_id(&self) -> NodeId {
        self.inner.id
    }

    pub fn term(&self) -> u64 {
        self.raft().metrics().borrow_watched().current_term
    }

    pub fn revision(&self) -> i64 {
        self.sm().read().mvcc.revision()
    }

    /// The revision the history is compacted to on this replica.
    pub fn compact_revision(&self) -> i64 {
        self.sm().read().mvcc.compact_revision()
    }

    /// A serializable range read: the local state machine as it is now, with the revision it was read at. For
    /// a linearizable read, call `read_index` first. A read of a range of keys may load many values from disk:
    /// it runs off the async workers (a single key is one point read, served in place).
    pub async fn range(&self, op: &RangeOp) -> Result<(i64, RangeResult), ApplyError> {
        read_range(&self.inner.sm, op).await
    }

    /// A watcher of the changes `filter` selects, from revision `from` on (see `watch::Watcher`).
    pub fn watch(&self, filter: WatchFilter, from: i64) -> Watcher {
        Watcher::new(self.inner.sm.clone(), filter, from)
    }

    /// The published revision as it moves, for a service that pulls several watchers on one signal.
    pub fn revisions(&self) -> Revisions {
        self.sm().revisions()
    }

    /// The members in the applied membership, in id order.
    pub fn members(&self) -> Vec<Member> {
        let state = self.sm().read();
        let membership = state.membership.membership();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_addr: node.peer_addr.clone(),
                published: state.members.get(id).cloned(),
                is_learner: learners.contains(id),
            })
            .collect()
    }

    /// On the leader, how long ago each follower last acknowledged a heartbeat or an append; a follower not
    /// heard from in this term is absent. Empty on a replica that does not lead.
    pub fn followers_heard(&self) -> BTreeMap<NodeId, Duration> {
        use openraft::Instant as _;
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        m.heartbeat
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.inner.id)
            .filter_map(|(id, acked)| acked.as_ref().map(|at| (*id, at.elapsed())))
            .collect()
    }

    /// The ids of the live leases, ascending.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.sm().read().mvcc.leases().keys().copied().collect()
    }

    /// A live lease's granted TTL and, when `with_keys`, its keys; None when it does not exist.
    pub fn lease(&self, id: i64, with_keys: bool) -> Option<Lease> {
        let state = self.sm().read();
        let lease = state.mvcc.leases().get(&id)?;
        let keys = if with_keys { lease.keys.iter().cloned().collect() } else { Vec::new() };
        Some(Lease { granted_ttl: lease.ttl, keys })
    }

    /// Snapshots received from a leader and installed since this replica started.
    pub fn snapshots_installed(&self) -> u64 {
        self.sm().snapshots_installed()
    }

    /// Runs blocking disk work off the async workers (inline on the simulated disk, which never blocks).
    pub async fn off_the_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        disk::off_the_workers(self.sm().disk_reads_block(), work).await?
    }

    /// A snapshot of this replica's current state, for an operator to save (`saved::SavedChunks`): a file of
    /// its own, removed once dropped.
    pub async fn export_snapshot(&self) -> io::Result<disk::SnapshotFile> {
        let sm = self.inner.sm.clone();
        disk::off_the_workers(sm.disk_reads_block(), move || sm.export_snapshot()).await?
    }

    /// A new file for a snapshot arriving from the leader (blocking disk work: see `off_the_workers`).
    pub fn receive_snapshot(&self, meta: &SnapshotMeta) -> io::Result<snapshot::NewSnapshot> {
        self.sm().receive_snapshot(meta)
    }

    pub fn raft_role(&self) -> RaftRole {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        RaftRole {
            term: m.current_term,
            leads: m.state == ServerState::Leader,
            applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
        }
    }

    pub fn status(&self) -> Status {
        let m = self.raft().metrics().borrow_watched().clone();
        let committed = m.local_committed.as_ref().map_or(0, |l| l.index);
        Status {
            leader: m.current_leader,
            term: m.current_term,
            committed_index: committed,
            applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            revision: self.revision(),
            db_size_bytes: self.inner.db.size_bytes(),
            is_learner: m.state == ServerState::Learner,
        }
    }

    /// Sets what `/metrics` reads of this replica's state (`telemetry::Store`) as it is now.
    pub fn record_telemetry(&self) {
        let status = self.status();
        let metrics = &telemetry::get().store;
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        metrics.has_leader.set(i64::from(status.leader.is_some()));
        metrics.is_leader.set(i64::from(status.leader == Some(self.inner.id)));
        metrics.term.set(gauge(status.term));
        metrics.committed_index.set(gauge(status.committed_index));
        metrics.applied_index.set(gauge(status.applied_index));
        metrics.apply_lag.set(gauge(status.committed_index.saturating_sub(status.applied_index)));
        metrics.db_size_bytes.set(gauge(status.db_size_bytes));
    }

    /// Counts the leaders this replica sees come (a first one, then each different one), until `shutdown` fires.
    pub async fn count_leader_changes(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.raft().metrics();
        let mut last = None;
        loop {
            let leader = rx.borrow_watched().current_leader;
            if leader.is_some() && leader != last {
                telemetry::get().store.leader_changes.inc();
                last = leader;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// What keeps this replica from serving well, in words for an operator; empty when healthy. A replica
    /// that knows no leader is unhealthy; a leader is unhealthy while a follower has stayed behind its log
    /// without any progress for `REPLICATION_STALL_MS` (it cannot replicate to it).
    pub fn health(&self) -> Vec<String> {
        let m = self.raft().metrics().borrow_watched().clone();
        let Some(leader) = m.current_leader else {
            return vec!["no raft leader is known".into()];
        };
        let mut progress = self.inner.progress.lock().expect("progress lock poisoned");
        let Some(replication) = m.replication.as_ref().filter(|_| leader == self.inner.id) else {
            progress.clear();
            return Vec::new();
        };
        let now = Instant::now();
        let last = m.last_log_index;
        let mut problems = Vec::new();
        progress.retain(|id, _| replication.contains_key(id));
        for (id, matched) in replication {
            let matched = matched.as_ref().map(|l| l.index);
            let seen = progress.entry(*id).or_insert(Progress { matched, since: now });
            if seen.matched != matched || matched >= last {
                *seen = Progress { matched, since: now };
                continue;
            }
            let stalled = now.saturating_duration_since(seen.since);
            if stalled >= Duration::from_millis(limits::REPLICATION_STALL_MS) {
                let name = m.membership_config.membership().get_node(id).map_or("?", |n| n.name.as_str()).to_owned();
                problems.push(format!(
                    "cannot replicate to member {name} ({id:x}): it has matched the log up to {} of {} for {} s",
                    matched.map_or("nothing".to_string(), |i| i.to_string()),
                    last.unwrap_or(0),
                    stalled.as_secs()
                ));
            }
        }
        problems
    }

    /// Waits until some replica is known to lead, up to `LEADER_WAIT_MS`.
    async fn leader(&self, deadline: Instant) -> Result<LeaderAt, StoreError> {
        let mut rx = self.raft().metrics();
        loop {
            let leader = rx.borrow_watched().current_leader;
            if let Some(leader) = leader {
                if leader == self.inner.id {
                    return Ok(LeaderAt::Local);
                }
                let m = rx.borrow_watched().membership_config.clone();
                if let Some(node) = m.membership().get_node(&leader) {
                    return Ok(LeaderAt::Remote(node.peer_addr.clone()));
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StoreError::Unavailable("etcdserver: no leader".into()));
            }
            match tokio::time::timeout(remaining, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::Stopped("metrics closed".into())),
                Err(_) => return Err(StoreError::Unavailable("etcdserver: no leader".into())),
            }
        }
    }

    fn leader_deadline() -> Instant {
        Instant::now() + Duration::from_millis(limits::LEADER_WAIT_MS)
    }

    /// Proposes a command through the leader and returns its result once applied.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        check_command(&cmd)?;
        let deadline = Self::leader_deadline();
        loop {
            match self.leader(deadline).await? {
                // Raft may refuse the write while its metrics still name this replica leader (it is stepping
                // down or handing leadership over): wait rather than spin until they catch up.
                LeaderAt::Local => match self.write_local(cmd.clone()).await {
                    Err(LeaderLost) => self.wait_a_little(deadline).await?,
                    Ok(r) => return r.map(|(applied, _)| applied),
                },
                LeaderAt::Remote(addr) => match self.forward(&addr, LeaderRequest::Propose(cmd.clone())).await? {
                    LeaderResponse::Applied { applied, index } => {
                        // Like etcd, answer once this replica has applied the write too, so that its client reads
                        // its own write here even with a serializable read.
                        let local = self.raft().wait(Some(Duration::from_millis(limits::READ_TIMEOUT_MS)));
                        if let Err(e) = local.applied_index_at_least(Some(index), "a forwarded write").await {
                            tracing::debug!(error = %e, index, "a forwarded write is not yet applied here");
                        }
                        return Ok(applied);
                    }
                    LeaderResponse::NotLeader(_) => self.wait_a_little(deadline).await?,
                    other => return Err(unexpected(other)),
                },
            }
        }
    }

    /// Writes through the local Raft; `Err(LeaderLost)` means the command may be proposed again: it was not
    /// appended, or it is a fenced transaction whose entry was discarded when this replica took another
    /// leader's log. Proposing that again is safe: a fenced transaction applies only in an entry of its own
    /// term, and the new proposal is committed in a later one, so the state machine refuses it (`Fenced`);
    /// the discarded entry applies at most once (its outcome is unknown to this caller, as any write's cut off by
    /// a leader change, but the term's controllers stop either way). Other discarded writes are Unavailable,
    /// their outcome unknown. On success it returns the result and the log index of the entry.
    async fn write_local(&self, cmd: Command) -> Result<Result<(Applied, u64), StoreError>, LeaderLost> {
        let fenced = matches!(cmd, Command::FencedTxn { .. });
        let metrics = &telemetry::get().store;
        let (_pending, started) = (telemetry::Held::new(&metrics.proposals_pending), Instant::now());
        let write = self.raft().client_write(cmd);
        let written = tokio::time::timeout(Duration::from_millis(limits::WRITE_TIMEOUT_MS), write).await;
        if matches!(written, Ok(Ok(_))) {
            metrics.proposals_committed.inc();
            telemetry::observe(&metrics.proposal_seconds, started.elapsed());
        } else {
            metrics.proposals_failed.inc();
        }
        match written {
            Err(_) => Ok(Err(StoreError::Unavailable("etcdserver: request timed out".into()))),
            Ok(Ok(resp)) => Ok(Ok((resp.data, resp.log_id.index))),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(LeaderLost),
            Ok(Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)))) if fenced => Err(LeaderLost),
            Ok(Err(RaftError::APIError(e))) => {
                Ok(Err(StoreError::Unavailable(format!("etcdserver: leader changed, the outcome is unknown: {e}"))))
            }
            Ok(Err(RaftError::Fatal(e))) => Ok(Err(StoreError::Stopped(e.to_string()))),
        }
    }

    /// Sends a request to the leader at `addr`. A request that never left this replica (the leader refused the
    /// connection, as a dead one does) is answered `NotLeader`, so the caller waits for the election and
    /// retries; any other transport failure leaves the outcome unknown and is an error.
    async fn forward(&self, addr: &str, req: LeaderRequest) -> Result<LeaderResponse, StoreError> {
        match self.inner.pool.forward(addr, &req).await {
            Ok(LeaderResponse::Failed(msg)) => Err(StoreError::Unavailable(msg)),
            Ok(LeaderResponse::Refused(msg)) => Err(StoreError::Invalid(msg)),
            Ok(resp) => Ok(resp),
            Err(status) if not_delivered(&status) => Ok(LeaderResponse::NotLeader(None)),
            Err(status) => {
                Err(StoreError::Unavailable(format!("etcdserver: leader unreachable: {}", status.message())))
            }
        }
    }

    async fn wait_a_little(&self, deadline: Instant) -> Result<(), StoreError> {
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable("etcdserver: no leader".into()));
        }
        tokio::time::sleep(Duration::from_millis(limits::HEARTBEAT_INTERVAL_MS)).await;
        Ok(())
    }

    /// Makes the local state machine current enough for a linearizable read.
    pub async fn read_index(&self) -> Result<(), StoreError> {
        telemetry::get().store.read_indexes.inc();
        let deadline = Self::leader_deadline();
        let index = loop {
            match self.leader(deadline).await? {
                LeaderAt::Local => match self.local_read_index().await {
                    Err(LeaderLost) => self.wait_a_little(deadline).await?,
                    Ok(index) => break index?,
                },
                LeaderAt::Remote(addr) => match self.forward(&addr, LeaderRequest::ReadIndex).await? {
                    LeaderResponse::ReadIndex(index) => break index,
                    LeaderResponse::NotLeader(_) => self.wait_a_little(deadline).await?,
                    other => return Err(unexpected(other)),
                },
            }
        };
        self.raft()
            .wait(Some(Duration::from_millis(limits::READ_TIMEOUT_MS)))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| StoreError::Unavailable(format!("etcdserver: request timed out: {e}")))?;
        Ok(())
    }

    async fn local_read_index(&self) -> Result<Result<u64, StoreError>, LeaderLost> {
        let read = self.raft().get_read_linearizer(ReadPolicy::ReadIndex);
        match tokio::time::timeout(Duration::from_millis(limits::READ_TIMEOUT_MS), read).await {
            Err(_) => Ok(Err(StoreError::Unavailable("etcdserver: request timed out".into()))),
            Ok(Ok(linearizer)) => Ok(Ok(linearizer.read_log_id().index())),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => Err(LeaderLost),
            Ok(Err(RaftError::APIError(e))) => Ok(Err(StoreError::Unavailable(format!("etcdserver: {e}")))),
            Ok(Err(RaftError::Fatal(e))) => Ok(Err(StoreError::Stopped(e.to_string()))),
        }
    }

    /// The voter other than this replica whose log matches this leader's furthest, among those that answered
    /// within an election timeout; None unless this replica leads and has such a voter.
    pub fn most_caught_up_voter(&self) -> Option<NodeId> {
        let m = self.raft().metrics().borrow_watched().clone();
        let replication = m.replication.as_ref().filter(|_| m.state == ServerState::Leader)?;
        let heard = self.followers_heard();
        let alive = |id: &NodeId| {
            heard.get(id).is_some_and(|ago| *ago < Duration::from_millis(limits::ELECTION_TIMEOUT_MS_MAX))
        };
        let matched = |id: &NodeId| replication.get(id).cloned().flatten().map(|l| l.index);
        let voters = m.membership_config.membership().voter_ids().filter(|id| *id != self.inner.id && alive(id));
        voters.max_by_key(matched)
    }

    /// Hands leadership to `target` (a voter) and waits until it leads. Only the leader can do this. If the
    /// target does not take over in time, the cluster elects a leader by itself and the caller gets an error.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), StoreError> {
        let m = self.raft().metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return Err(StoreError::NotLeader);
        }
        if !m.membership_config.membership().voter_ids().any(|id| id == target) {
            return Err(StoreError::BadTransferee(target));
        }
        if target == self.inner.id {
            return Ok(());
        }
        self.raft().trigger().transfer_leader(target).await.map_err(|e| StoreError::Stopped(e.to_string()))?;
        self.raft()
            .wait(Some(Duration::from_millis(limits::LEADER_WAIT_MS)))
            .current_leader(target, "leadership transfer")
            .await
            .map(drop)
            .map_err(|e| StoreError::Unavailable(format!("etcdserver: leadership transfer did not complete: {e}")))
    }

    /// Refreshes a lease on the leader; None when it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, StoreError> {
        self.lease_query(LeaderRequest::KeepAlive(id)).await
    }

    /// The remaining seconds of a lease as the leader sees them; None when it does not exist.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<i64>, StoreError> {
        self.lease_query(LeaderRequest::TimeToLive(id)).await
    }

    async fn lease_query(&self, req: LeaderRequest) -> Result<Option<i64>, StoreError> {
        let deadline = Self::leader_deadline();
        loop {
            match self.leader(deadline).await? {
                LeaderAt::Local => match self.answer_as_leader(&req).await? {
                    Some(LeaderResponse::Ttl(ttl)) => return Ok(ttl),
                    _ => self.wait_a_little(deadline).await?,
                },
                LeaderAt::Remote(addr) => match self.forward(&addr, req.clone()).await? {
                    LeaderResponse::Ttl(ttl) => return Ok(ttl),
                    LeaderResponse::NotLeader(_) => self.wait_a_little(deadline).await?,
                    other => return Err(unexpected(other)),
                },
            }
        }
    }

    /// Lease questions, answered only while this replica leads and has applied an entry of its term (None
    /// otherwise). A keep-alive first confirms the leadership with a quorum, as etcd 3.5 does: a leader cut off
    /// from the majority, where another leader will expire the lease, must not tell a client it lives on.
    async fn answer_as_leader(&self, req: &LeaderRequest) -> Result<Option<LeaderResponse>, StoreError> {
        let Some(term) = self.leading_term() else { return Ok(None) };
        if let LeaderRequest::KeepAlive(_) = req {
            match self.local_read_index().await {
                Err(LeaderLost) => return Ok(None),
                Ok(confirmed) => {
                    confirmed?;
                }
            }
            if self.leading_term() != Some(term) {
                return Ok(None);
            }
        }
        let state = self.sm().read();
        let ttl_of = |id: &i64| state.mvcc.leases().get(id).map(|l| l.ttl);
        Ok(Some(match req {
            LeaderRequest::KeepAlive(id) => LeaderResponse::Ttl(self.inner.lessor.keep_alive(term, *id, ttl_of(id))),
            LeaderRequest::TimeToLive(id) => LeaderResponse::Ttl(self.inner.lessor.remaining(term, *id, ttl_of(id))),
            _ => return Ok(None),
        }))
    }

    /// The current term when this replica is leader and has applied an entry of that term (caught up).
    pub fn leading_term(&self) -> Option<u64> {
        let m = self.raft().metrics().borrow_watched().clone();
        let caught_up = m.last_applied.as_ref().is_some_and(|l| term_of(l) == m.current_term);
        (m.state == ServerState::Leader && caught_up).then_some(m.current_term)
    }

    /// Waits until this replica leads and has applied an entry of its term (`leading_term`), and returns that
    /// term; None once Raft has stopped.
    pub async fn wait_for_leadership(&self) -> Option<u64> {
        let mut metrics = self.raft().metrics();
        loop {
            if let Some(term) = self.leading_term() {
                return Some(term);
            }
            metrics.changed().await.ok()?;
        }
    }

    /// Waits until this replica no longer leads in `term`, or Raft has stopped.
    pub async fn wait_for_leadership_end(&self, term: u64) {
        let mut metrics = self.raft().metrics();
        while self.leading_term() == Some(term) {
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Resolves once Raft has stopped on a fatal error (a storage fault), with that error.
    pub async fn fatal_error(&self) -> String {
        let mut metrics = self.raft().metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_watched().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft metrics closed".into();
            }
        }
    }

    /// Stops Raft (its core, replication and state machine tasks); the store serves nothing afterwards.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.raft().shutdown().await.map_err(|e| StoreError::Stopped(e.to_string()))
    }

    /// Serves a request a follower forwarded to this replica.
    pub async fn serve_forwarded(&self, req: LeaderRequest) -> LeaderResponse {
        let not_leader = || LeaderResponse::NotLeader(self.raft().metrics().borrow_watched().current_leader);
        match req {
            LeaderRequest::Propose(cmd) => {
                if let Err(e) = check_command(&cmd).and_then(|()| self.check_member_claim(&cmd)) {
                    return LeaderResponse::Refused(e.to_string());
                }
                match self.write_local(cmd).await {
                    Err(LeaderLost) => not_leader(),
                    Ok(Ok((applied, index))) => LeaderResponse::Applied { applied, index },
                    Ok(Err(e)) => LeaderResponse::Failed(e.to_string()),
                }
            }
            LeaderRequest::ReadIndex => match self.local_read_index().await {
                Err(LeaderLost) => not_leader(),
                Ok(Ok(index)) => LeaderResponse::ReadIndex(index),
                Ok(Err(e)) => LeaderResponse::Failed(e.to_string()),
            },
            LeaderRequest::AcceptRejoin(id) => {
                if self.leading_term().is_none() {
                    return not_leader();
                }
                match self.raft().trigger().allow_next_revert(&id, true).await {
                    Ok(Ok(())) => {
                        tracing::warn!(
                            member = format!("{id:x}"),
                            "member rejoins with an empty log: replicating to it from the start"
                        );
                        LeaderResponse::RejoinAccepted
                    }
                    Ok(Err(e)) => LeaderResponse::Refused(e.to_string()),
                    Err(fatal) => LeaderResponse::Failed(fatal.to_string()),
                }
            }
            LeaderRequest::AddMember { .. } | LeaderRequest::PromoteMember(_) | LeaderRequest::RemoveMember(_) => {
                match self.change_membership_as_leader(&req).await {
                    Ok(Some(answer)) => answer,
                    Ok(None) => not_leader(),
                    Err(StoreError::Invalid(e)) => LeaderResponse::Refused(e),
                    Err(e) => LeaderResponse::Failed(e.to_string()),
                }
            }
            req => match self.answer_as_leader(&req).await {
                Ok(Some(answer)) => answer,
                Ok(None) => not_leader(),
                Err(e) => LeaderResponse::Failed(e.to_string()),
            },
        }
    }

    /// A member may only publish its own attributes under the name the membership gives it. (Which peer sent
    /// a forwarded request is not known yet: that needs authenticated peers.)
    fn check_member_claim(&self, cmd: &Command) -> Result<(), StoreError> {
        let Command::PublishMember { id, name, .. } = cmd else {
            return Ok(());
        };
        let m = self.raft().metrics().borrow_watched().membership_config.clone();
        match m.membership().get_node(id) {
            Some(node) if node.name == *name => Ok(()),
            Some(node) => Err(StoreError::Invalid(format!("member {id:x} is named {:?}, not {name:?}", node.name))),
            None => Err(StoreError::Invalid(format!("{id:x} is not a member of this cluster"))),
        }
    }

    /// Whether this replica waits for a leader to accept it back with an empty log (`rejoin`).
    pub fn awaiting_rejoin(&self) -> bool {
        self.inner.awaiting_rejoin.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Rejoins the cluster after this replica lost its database: asks the replicas at `peers` in turn until
    /// the leader accepts that this member's log is empty now, answering no Raft message meanwhile; then the
    /// leader replicates to it from the start. The replica waits from the call on; the returned future asks
    /// until accepted, or until `shutdown` fires.
    pub fn rejoin(
        self,
        peers: Vec<String>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> {
        use std::sync::atomic::Ordering;
        self.inner.awaiting_rejoin.store(true, Ordering::Release);
        async move {
            loop {
                for addr in &peers {
                    match self.inner.pool.forward(addr, &LeaderRequest::AcceptRejoin(self.inner.id)).await {
                        Ok(LeaderResponse::RejoinAccepted) => {
                            tracing::info!(leader = %addr, "the leader accepted this member back with an empty log");
                            self.inner.awaiting_rejoin.store(false, Ordering::Release);
                            return;
                        }
                        Ok(other) => tracing::debug!(peer = %addr, reply = ?other, "not accepted back yet"),
                        Err(e) => tracing::debug!(peer = %addr, error = %e, "not accepted back yet"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(limits::ELECTION_TIMEOUT_MS_MAX)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Cleans up after compactions until `shutdown` fires: every replica removes the history a compaction made
    /// unreadable, in bounded steps with pauses between them (`COMPACTION_PRUNE_*`), on a blocking thread.
    pub async fn run_pruner(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(limits::COMPACTION_PRUNE_POLL_MS));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            while self.sm().pruning() && !*shutdown.borrow() {
                let sm = self.inner.sm.clone();
                match tokio::task::spawn_blocking(move || sm.prune_step()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "removing compacted history failed; it is retried after a restart");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the compaction cleanup task failed");
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(limits::COMPACTION_PRUNE_PAUSE_MS)).await;
            }
        }
    }

    /// Runs the leader's lease expiry loop until `shutdown` fires.
    pub async fn run_lessor(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(limits::LEASE_CHECK_INTERVAL_MS));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            let expired = {
                let state = self.sm().read();
                self.inner.lessor.expired(term, state.mvcc.leases())
            };
            if expired.is_empty() {
                continue;
            }
            tracing::info!(leases = expired.len(), term, "revoking expired leases");
            if let Err(e) = self.propose(Command::LeaseExpire { term, ids: expired }).await {
                tracing::warn!(error = %e, "lease expiry not committed; retrying next tick");
            }
        }
    }
}

/// The checks every command passes before it is proposed, on the replica its client reached and again on the
/// leader when a follower forwards it: its limits and shape, and its encoded size, which must leave room in a
/// peer message for the entry that carries it.
fn check_command(cmd: &Command) -> Result<(), StoreError> {
    cmd.check().map_err(|e| StoreError::Invalid(e.0))?;
    let bytes = bincode::serialized_size(cmd).unwrap_or(u64::MAX);
    if bytes > limits::COMMAND_BYTES_MAX as u64 {
        return Err(StoreError::TooLarge { bytes, max: limits::COMMAND_BYTES_MAX });
    }
    Ok(())
}

/// Whether a forwarded request failed before it left this replica: the connection could not be made.
fn not_delivered(status: &tonic::Status) -> bool {
    if status.message().contains("tcp connect error") {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = e.source();
    }
    false
}

/// The local Raft stopped leading before accepting the command.
struct LeaderLost;

fn unexpected(resp: LeaderResponse) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from the leader: {resp:?}"))
}
