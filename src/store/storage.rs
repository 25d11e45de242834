//! Persistence: the Raft log store and the state machine store, over the byte store in `disk` (RocksDB for
//! real replicas, the simulated disk in the chaos simulation; this file does not know which).
//!
//! One disk, column families by owner (`disk::Cf`): `Log` (entries by index) and `Raft` (vote, purged,
//! committed) for the log; `History` (MVCC changes by revision), `Lease` and `Sm` (applied log id, membership,
//! MVCC meta, published members) for the state machine.
//!
//! Invariants kept here:
//! - The vote is written with a synced write before `save_vote` returns.
//! - An append is readable when `append` returns and durable when its callback fires: the group-commit
//!   flusher syncs the disk once for every batch of appends queued behind it, then fires their callbacks.
//!   Nothing is reported durable before the sync (unless the chaos suite's planted bug says otherwise).
//! - The state machine's changes for a batch of entries, with the applied log id, go in one atomic write
//!   batch; the log is the source of truth, so these writes need no sync of their own.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::{FutureExt, TryStreamExt};
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::mpsc;

use super::command::{Applied, ApplyError, Command, Outcome};
use super::disk::{
    memory::MemoryDisk, off_the_workers, rocks::RocksDisk, Batch, Cf, Disk, Frozen, SnapshotFile, Syncs,
};
use super::mvcc::{History, HistoryRecord, Mvcc, MvccMeta, Revision, Write};
use super::snapshot::{
    check_records, check_snapshot, open_snapshot, NewSnapshot, SnapshotBody, SnapshotDecoder, SnapshotEncoder,
    SnapshotHead,
};
use super::types::*;
use super::watch::{Pull, RecentPull, RevisionEvents, Revisions, WatchFilter, WatchHub};
use crate::{limits, telemetry};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"purged";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_MVCC: &[u8] = b"mvcc";
const KEY_MEMBERS: &[u8] = b"members";
/// Present while a snapshot is being installed (its value: the snapshot's last log id). A state machine found
/// with it loads empty, and openraft installs the kept snapshot again.
const KEY_INSTALLING: &[u8] = b"installing";

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory values always serialize")
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    bincode::deserialize(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Bugs the chaos suite can plant in the storage layer to show that its checkers catch them; all off unless a
/// test asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageBugs {
    /// Report appends durable before they are synced.
    pub ack_before_sync: bool,
    /// Apply fenced transactions whatever term they were committed in.
    pub ignore_fences: bool,
}

/// The open disk shared by the log store and the state machine.
pub struct Db {
    disk: Box<dyn Disk>,
}

impl Db {
    /// Opens (or creates, when `create` is set) the RocksDB database in `dir`, with snapshots in `snapshot_dir`.
    pub fn open(dir: &Path, snapshot_dir: &Path, create: bool) -> io::Result<Arc<Db>> {
        Ok(Arc::new(Db { disk: Box::new(RocksDisk::open(dir, snapshot_dir, create)?) }))
    }

    /// A database on a simulated disk.
    pub fn simulated(disk: MemoryDisk) -> Arc<Db> {
        Arc::new(Db { disk: Box::new(disk) })
    }

    fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> io::Result<Option<T>> {
        match self.disk.get(cf, key)? {
            Some(b) => decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_bytes(&self) -> u64 {
        self.disk.size_bytes()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Log store

/// The Raft log, with group commit.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    flusher: FlushQueue,
    bugs: StorageBugs,
}

impl LogStore {
    /// The log store and its flusher: a thread of its own on a real disk, a task on a simulated one.
    pub fn new(db: Arc<Db>, bugs: StorageBugs) -> LogStore {
        // The flusher holds no strong reference: the database closes when its owners drop it, not at exit.
        let flush_db = Arc::downgrade(&db);
        let flusher = match db.disk.syncs() {
            Syncs::Blocking => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<IOFlushed<TypeConfig>>(limits::FLUSH_QUEUE_MAX);
                std::thread::Builder::new()
                    .name("raftsman-log-flush".into())
                    .spawn(move || {
                        while let Ok(first) = rx.recv() {
                            flush(&flush_db, std::iter::once(first).chain(rx.try_iter()).collect());
                        }
                    })
                    .expect("spawning the log flusher thread");
                FlushQueue::Thread(tx)
            }
            Syncs::Simulated { latency } => {
                let (tx, mut rx) = mpsc::channel::<IOFlushed<TypeConfig>>(limits::FLUSH_QUEUE_MAX);
                tokio::spawn(async move {
                    while let Some(first) = rx.recv().await {
                        tokio::time::sleep(latency).await;
                        let mut batch = vec![first];
                        while let Ok(next) = rx.try_recv() {
                            batch.push(next);
                        }
                        flush(&flush_db, batch);
                    }
                });
                FlushQueue::Task(tx)
            }
        };
        LogStore { db, flusher, bugs }
    }

    fn log_key(index: u64) -> [u8; 8] {
        index.to_be_bytes()
    }
}

/// Where appends wait for the flusher: a channel to its thread (real disk) or to its task (simulated disk).
#[derive(Clone)]
enum FlushQueue {
    Thread(std::sync::mpsc::SyncSender<IOFlushed<TypeConfig>>),
    Task(mpsc::Sender<IOFlushed<TypeConfig>>),
}

/// Syncs the disk once for a batch of queued appends, then reports them all durable.
fn flush(db: &std::sync::Weak<Db>, batch: Vec<IOFlushed<TypeConfig>>) {
    let result = match db.upgrade() {
        Some(db) => {
            let started = std::time::Instant::now();
            let synced = db.disk.sync();
            telemetry::observe(&telemetry::get().store.wal_fsync_seconds, started.elapsed());
            synced
        }
        None => Err(io::Error::other("the log store is closed")),
    };
    for callback in batch {
        callback.io_completed(result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
    }
}

fn bad_key(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad {what} key"))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.db.disk.scan(Cf::Log, &Self::log_key(start)) {
            let (key, value) = item?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| bad_key("log"))?);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode::<Entry>(&value)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.db.get(Cf::Raft, KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.db.get(Cf::Raft, KEY_PURGED)?;
        let last_log_id = match self.db.disk.last(Cf::Log)? {
            Some((_, value)) => Some(decode::<Entry>(&value)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        batch.put(Cf::Raft, KEY_VOTE, encode(vote));
        self.db.disk.write(batch, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        batch.put(Cf::Raft, KEY_COMMITTED, encode(&committed));
        self.db.disk.write(batch, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.db.get::<Option<LogId>>(Cf::Raft, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::default();
        for entry in entries {
            batch.put(Cf::Log, Self::log_key(entry.log_id.index), encode(&entry));
        }
        self.db.disk.write(batch, false)?;
        if self.bugs.ack_before_sync {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let stopped = || io::Error::other("log flusher stopped");
        match &self.flusher {
            FlushQueue::Thread(tx) => tx.send(callback).map_err(|_| stopped()),
            FlushQueue::Task(tx) => tx.send(callback).await.map_err(|_| stopped()),
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let mut batch = Batch::default();
        batch.delete_range(Cf::Log, Self::log_key(from), Self::log_key(u64::MAX));
        self.db.disk.write(batch, false)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        batch.put(Cf::Raft, KEY_PURGED, encode(&log_id));
        batch.delete_range(Cf::Log, Self::log_key(0), Self::log_key(log_id.index + 1));
        self.db.disk.write(batch, false)?;
        tracing::info!(upto = log_id.index, "purged the log behind a snapshot");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// State machine

/// A member's self-published attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    /// Where its etcd API listens.
    pub client_addr: String,
    /// Where its Kubernetes API listens.
    pub api_addr: String,
}

/// Everything the state machine holds in memory.
#[derive(Default)]
pub struct SmState {
    pub mvcc: Mvcc,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub members: BTreeMap<u64, MemberAttrs>,
    /// Set when a failed batch left a state that could not be reloaded from disk: reads refuse with it.
    pub failed: Option<String>,
}

/// The state machine's shared half: what readers (KV, watch, status) use while Raft applies.
pub struct SmShared {
    db: Arc<Db>,
    /// std RwLock: held for in-memory work and RocksDB calls only, never across an await.
    state: RwLock<SmState>,
    hub: WatchHub,
    bugs: StorageBugs,
    /// Snapshots received from a leader and installed since this replica started.
    installed: std::sync::atomic::AtomicU64,
    /// Held by a snapshot build or install for its whole run (on a blocking thread): openraft may start an
    /// install while a build it spawned runs, and the older of the two must not be kept after the newer.
    snapshots: std::sync::Mutex<()>,
}

/// The history column family as the MVCC core reads it.
struct DbHistory<'a>(&'a Db);

impl History for DbHistory<'_> {
    fn record(&self, rev: Revision) -> Result<Option<HistoryRecord>, ApplyError> {
        self.0.get(Cf::History, &rev.to_bytes()).map_err(|e| ApplyError::Storage(e.to_string()))
    }
}

/// The history column family of a frozen view of the disk, as the MVCC core reads it.
struct FrozenHistory<'a>(&'a dyn Frozen);

impl History for FrozenHistory<'_> {
    fn record(&self, rev: Revision) -> Result<Option<HistoryRecord>, ApplyError> {
        let key = rev.to_bytes();
        match self.0.scan(Cf::History, &key).next() {
            Some(Ok((k, v))) if *k == key => decode(&v).map(Some).map_err(|e| ApplyError::Storage(e.to_string())),
            Some(Err(e)) => Err(ApplyError::Storage(e.to_string())),
            _ => Ok(None),
        }
    }
}

/// Lease TTLs by id, from a scan of the lease column family.
fn read_leases(scan: super::disk::Scan<'_>) -> io::Result<Vec<(i64, i64)>> {
    let mut leases = Vec::new();
    for item in scan {
        let (k, v) = item?;
        let id = i64::from_be_bytes(k.as_ref().try_into().map_err(|_| bad_key("lease"))?);
        leases.push((id, decode::<i64>(&v)?));
    }
    Ok(leases)
}

/// The state machine's state as the database holds it.
fn load_state(db: &Db) -> io::Result<SmState> {
    if let Some(last_log_id) = db.get::<Option<LogId>>(Cf::Sm, KEY_INSTALLING)? {
        tracing::warn!(
            ?last_log_id,
            "a snapshot install was interrupted: the state machine starts empty and installs it again"
        );
        return Ok(SmState::default());
    }
    let meta: MvccMeta = db.get(Cf::Sm, KEY_MVCC)?.unwrap_or_default();
    // Records stream into the index one by one; the first error stops the stream and fails the load.
    let mut failure = None;
    let records = db.disk.scan(Cf::History, &[]).map_while(|item| {
        let record = item.and_then(|(k, v)| {
            let rev = Revision::from_bytes(&k).ok_or_else(|| bad_key("history"))?;
            Ok((rev, decode::<HistoryRecord>(&v)?))
        });
        record.map_err(|e| failure = Some(e)).ok()
    });
    let leases = read_leases(db.disk.scan(Cf::Lease, &[]))?;
    let mvcc = Mvcc::restore(meta, records, leases);
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(SmState {
        mvcc,
        applied: db.get::<Option<LogId>>(Cf::Sm, KEY_APPLIED)?.flatten(),
        membership: db.get(Cf::Sm, KEY_MEMBERSHIP)?.unwrap_or_default(),
        members: db.get(Cf::Sm, KEY_MEMBERS)?.unwrap_or_default(),
        failed: None,
    })
}

impl SmShared {
    /// Loads the state machine from the database.
    pub fn load(db: Arc<Db>, bugs: StorageBugs) -> io::Result<Arc<SmShared>> {
        let state = load_state(&db)?;
        let hub = WatchHub::new(state.mvcc.revision());
        Ok(Arc::new(SmShared {
            hub,
            db,
            state: RwLock::new(state),
            bugs,
            installed: Default::default(),
            snapshots: Default::default(),
        }))
    }

    /// Snapshots received from a leader and installed since this replica started.
    pub(super) fn snapshots_installed(&self) -> u64 {
        self.installed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Read access to the state; do not hold it across an await.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, SmState> {
        self.state.read().expect("state machine lock poisoned")
    }

    /// A range read against the local state machine, with the store revision it was read at.
    pub(super) fn range(&self, op: &super::command::RangeOp) -> Result<(i64, super::command::RangeResult), ApplyError> {
        let state = self.read();
        if let Some(failure) = &state.failed {
            return Err(ApplyError::Storage(failure.clone()));
        }
        Ok((state.mvcc.revision(), state.mvcc.range(op, &DbHistory(&self.db))?))
    }

    /// Whether reading this disk blocks the thread (RocksDB; the simulated disk never does).
    pub(super) fn disk_reads_block(&self) -> bool {
        matches!(self.db.disk.syncs(), Syncs::Blocking)
    }

    /// Whether the watch hub's ring holds revision `from`, so that a pull from there reads no disk.
    pub(super) fn hub_holds(&self, from: i64) -> bool {
        self.hub.holds(from)
    }

    /// The published revision as it moves (see `watch::Watcher`).
    pub(super) fn revisions(&self) -> Revisions {
        self.hub.subscribe()
    }

    /// Events for a watcher from `from` on: from the hub's ring when it has them, else from disk.
    pub(super) fn pull(&self, from: i64, filter: &WatchFilter) -> Result<Pull, ApplyError> {
        let compact = self.read().mvcc.compact_revision();
        if from < compact {
            return Ok(Pull::Compacted { compact_revision: compact });
        }
        if let Some(RecentPull { records, next }) = self.hub.pull_recent(from, filter) {
            let events = records.into_iter().map(|r| self.event(r, filter.prev_kv)).collect::<Result<_, _>>()?;
            return Ok(Pull::Events { events, next });
        }
        // Compaction may have run since the check above: decide again under the lock, and take a view of the
        // disk there. The scan then reads that view without the lock, so neither applying entries nor a
        // compaction's cleanup waits for it, and what it reads is the history as of the check.
        let (current, frozen) = {
            let state = self.read();
            if let Some(failure) = &state.failed {
                return Err(ApplyError::Storage(failure.clone()));
            }
            let compact = state.mvcc.compact_revision();
            if from < compact {
                return Ok(Pull::Compacted { compact_revision: compact });
            }
            (state.mvcc.revision(), self.db.disk.frozen())
        };
        let storage = |e: io::Error| ApplyError::Storage(e.to_string());
        let mut events = Vec::new();
        let mut next = from;
        let mut reached_the_end = true;
        let start = Revision { main: from, sub: 0 }.to_bytes();
        for (scanned, item) in frozen.scan(Cf::History, &start).enumerate() {
            let (k, v) = item.map_err(storage)?;
            let rev = Revision::from_bytes(&k).ok_or_else(|| ApplyError::Storage("bad history key".into()))?;
            if rev.main > current {
                break;
            }
            // Whole revisions only: stop between two, once enough was selected or scanned.
            let full = events.len() >= limits::WATCH_EVENTS_PER_RESPONSE_MAX
                || scanned >= limits::WATCH_CATCH_UP_RECORDS_PER_PULL_MAX;
            if rev.main >= next && full {
                reached_the_end = false;
                break;
            }
            let record: HistoryRecord = decode(&v).map_err(storage)?;
            next = rev.main + 1;
            if filter.matches(&record) {
                let prev_kv = if filter.prev_kv { Mvcc::prev_kv(&FrozenHistory(&*frozen), &record)? } else { None };
                events.push(super::command::Event { kind: record.kind, kv: record.kv, prev_kv });
            }
        }
        if reached_the_end {
            next = next.max(current + 1);
        }
        Ok(Pull::Events { events, next })
    }

    /// A change as a watch event, with its previous value read from the history when asked for (none when
    /// that value has been compacted away, as in etcd).
    fn event(&self, record: HistoryRecord, prev_kv: bool) -> Result<super::command::Event, ApplyError> {
        let prev_kv = if prev_kv { Mvcc::prev_kv(&DbHistory(&self.db), &record)? } else { None };
        Ok(super::command::Event { kind: record.kind, kv: record.kv, prev_kv })
    }

    /// Applies a batch of committed entries and persists their effects in one write batch. If that fails
    /// halfway (a storage read inside a command, or the write itself), the in-memory state is put back to
    /// what the disk holds, so no part of the batch is ever visible; openraft then stops on the error.
    fn apply_batch(&self, entries: &[Entry]) -> io::Result<Vec<Applied>> {
        let started = std::time::Instant::now();
        let mut state = self.state.write().expect("state machine lock poisoned");
        let (results, published) = match self.apply_and_persist(&mut state, entries) {
            Ok(applied) => applied,
            Err(e) => {
                *state = load_state(&self.db).unwrap_or_else(|reload| {
                    tracing::error!(error = %reload, "the state machine cannot be reloaded: it serves no more reads");
                    SmState { failed: Some(e.to_string()), ..SmState::default() }
                });
                return Err(e);
            }
        };
        let revision = state.mvcc.revision();
        drop(state);
        telemetry::observe(&telemetry::get().store.apply_seconds, started.elapsed());
        self.hub.publish(published, revision);
        Ok(results)
    }

    fn apply_and_persist(
        &self,
        state: &mut SmState,
        entries: &[Entry],
    ) -> io::Result<(Vec<Applied>, Vec<RevisionEvents>)> {
        let mut results = Vec::with_capacity(entries.len());
        let mut published = Vec::new();
        let mut batch = Batch::default();
        let (mut members_changed, mut membership_changed) = (false, false);
        for entry in entries {
            state.applied = Some(entry.log_id);
            let applied = match &entry.payload {
                EntryPayload::Blank => Applied { revision: state.mvcc.revision(), outcome: Ok(Outcome::Nothing) },
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    membership_changed = true;
                    Applied { revision: state.mvcc.revision(), outcome: Ok(Outcome::Nothing) }
                }
                EntryPayload::Normal(Command::PublishMember { id, name, client_addr, api_addr }) => {
                    let attrs = MemberAttrs {
                        name: name.clone(),
                        client_addr: client_addr.clone(),
                        api_addr: api_addr.clone(),
                    };
                    state.members.insert(*id, attrs);
                    members_changed = true;
                    Applied { revision: state.mvcc.revision(), outcome: Ok(Outcome::Nothing) }
                }
                EntryPayload::Normal(Command::LeaseExpire { term, .. }) if *term != term_of(&entry.log_id) => {
                    // Proposed by a leader of an earlier term: it no longer speaks for the cluster.
                    Applied { revision: state.mvcc.revision(), outcome: Ok(Outcome::Nothing) }
                }
                EntryPayload::Normal(Command::FencedTxn { term, .. })
                    if *term != term_of(&entry.log_id) && !self.bugs.ignore_fences =>
                {
                    Applied { revision: state.mvcc.revision(), outcome: Err(ApplyError::Fenced(*term)) }
                }
                EntryPayload::Normal(cmd) => {
                    let out = state.mvcc.apply(cmd, &DbHistory(&self.db));
                    if let Err(ApplyError::Storage(e)) = &out.applied.outcome {
                        // The state may be half-changed in memory: stop here and persist nothing.
                        return Err(io::Error::other(format!("applying {}: {e}", entry.log_id)));
                    }
                    self.stage_writes(&mut batch, out.writes);
                    if !out.events.is_empty() {
                        published
                            .push(RevisionEvents { revision: out.applied.revision, records: Arc::new(out.events) });
                    }
                    out.applied
                }
            };
            results.push(applied);
        }
        batch.put(Cf::Sm, KEY_APPLIED, encode(&state.applied));
        batch.put(Cf::Sm, KEY_MVCC, encode(&state.mvcc.meta()));
        if membership_changed {
            batch.put(Cf::Sm, KEY_MEMBERSHIP, encode(&state.membership));
        }
        if members_changed {
            batch.put(Cf::Sm, KEY_MEMBERS, encode(&state.members));
        }
        self.db.disk.write(batch, false)?;
        state.mvcc.persisted();
        Ok((results, published))
    }

    /// One bounded step of a compaction's cleanup (`Mvcc::prune`): the history it frees is deleted from disk.
    /// Returns whether more remains. Blocking disk work: run it off the async workers.
    pub(super) fn prune_step(&self) -> io::Result<bool> {
        let mut state = self.state.write().expect("state machine lock poisoned");
        let writes = state.mvcc.prune(limits::COMPACTION_PRUNE_KEYS_MAX);
        let more = state.mvcc.pruning();
        if writes.is_empty() {
            return Ok(more);
        }
        let mut batch = Batch::default();
        self.stage_writes(&mut batch, writes);
        // The keys are forgotten in memory already; if this write fails, a restart finds the records and
        // prunes them again.
        self.db.disk.write(batch, false)?;
        Ok(more)
    }

    /// Whether a compaction still has history to clean up.
    pub(super) fn pruning(&self) -> bool {
        self.read().mvcc.pruning()
    }

    fn stage_writes(&self, batch: &mut Batch, writes: Vec<Write>) {
        for w in writes {
            match w {
                Write::History(rev, record) => batch.put(Cf::History, rev.to_bytes(), encode(&record)),
                Write::ForgetHistory(rev) => batch.delete(Cf::History, rev.to_bytes()),
                Write::Lease(id, Some(ttl)) => batch.put(Cf::Lease, id.to_be_bytes(), encode(&ttl)),
                Write::Lease(id, None) => batch.delete(Cf::Lease, id.to_be_bytes()),
            }
        }
    }

    /// Writes the current state to a new snapshot file and keeps it as the disk's snapshot.
    fn build_snapshot(&self) -> io::Result<Snapshot> {
        let _one_at_a_time = self.snapshots.lock().expect("snapshot lock poisoned");
        let (meta, body) = self.write_snapshot()?;
        body.keep()?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = body.len(), "built a snapshot");
        Ok(Snapshot { meta, snapshot: body })
    }

    /// A snapshot of the current state for an operator to save (`saved`): written as `build_snapshot` writes
    /// one, but never kept as the disk's snapshot; its file is removed once the last handle to it is dropped.
    pub(super) fn export_snapshot(&self) -> io::Result<SnapshotFile> {
        let _one_at_a_time = self.snapshots.lock().expect("snapshot lock poisoned");
        let (meta, body) = self.write_snapshot()?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = body.len(), "exported a snapshot");
        Ok(body.file().clone())
    }

    /// Writes the current state to a new snapshot file. The state lock is held only while the disk's view is
    /// taken; the file is written a chunk at a time from that view. Callers hold the snapshot lock.
    fn write_snapshot(&self) -> io::Result<(SnapshotMeta, SnapshotBody)> {
        let (meta, mvcc, members, frozen) = {
            let state = self.read();
            if let Some(failure) = &state.failed {
                return Err(io::Error::other(format!("no snapshot of this state: {failure}")));
            }
            let meta = SnapshotMeta { last_log_id: state.applied, last_membership: state.membership.clone() };
            (meta, state.mvcc.meta(), state.members.clone(), self.db.disk.frozen())
        };
        let leases = read_leases(frozen.scan(Cf::Lease, &[]))?;
        let mut encoder = SnapshotEncoder::create(&*self.db.disk, &meta, &SnapshotHead { mvcc, leases, members })?;
        for item in frozen.scan(Cf::History, &[]) {
            let (rev, bytes) = item?;
            encoder.record(&rev, &bytes)?;
        }
        Ok((meta, encoder.finish()?))
    }

    /// Replaces the whole state with a snapshot (received from the leader, or the disk's own when an install
    /// was interrupted). The snapshot is checked first, then kept as the disk's snapshot; the state machine
    /// then serves no reads until the new state is written, in batches of at most
    /// `SNAPSHOT_INSTALL_BATCH_BYTES` read from the file, synced, and loaded.
    fn install_snapshot(&self, meta: &SnapshotMeta, body: &SnapshotBody) -> io::Result<()> {
        let _one_at_a_time = self.snapshots.lock().expect("snapshot lock poisoned");
        check_snapshot(meta, body)?;
        // Received snapshots are written to this disk already; openraft's own tests hand over another's.
        let body = &body.on(&*self.db.disk, meta)?;
        body.keep()?;
        *self.state.write().expect("state machine lock poisoned") =
            SmState { failed: Some("installing a snapshot from the leader".into()), ..SmState::default() };
        let mut batch = Batch::default();
        batch.put(Cf::Sm, KEY_INSTALLING, encode(&meta.last_log_id));
        batch.delete_range(Cf::History, [0u8; 16], [0xffu8; 16]);
        batch.delete_range(Cf::Lease, [0u8; 8], [0xffu8; 8]);
        let (head, mut batch) = write_history(&self.db, body, batch)?;
        batch.put(Cf::Sm, KEY_APPLIED, encode(&meta.last_log_id));
        batch.put(Cf::Sm, KEY_MEMBERSHIP, encode(&meta.last_membership));
        batch.put(Cf::Sm, KEY_MVCC, encode(&head.mvcc));
        batch.put(Cf::Sm, KEY_MEMBERS, encode(&head.members));
        batch.delete(Cf::Sm, KEY_INSTALLING);
        // Durable before openraft acknowledges the snapshot and purges the log it replaces.
        self.db.disk.write(batch, true)?;
        let state = load_state(&self.db)?;
        let revision = state.mvcc.revision();
        *self.state.write().expect("state machine lock poisoned") = state;
        self.hub.reset(revision);
        self.installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last_log_id = ?meta.last_log_id, revision, bytes = body.len(), "installed a snapshot");
        Ok(())
    }

    fn current_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let Some(file) = self.db.disk.snapshot()? else {
            return Ok(None);
        };
        let (meta, snapshot) = open_snapshot(file)?;
        Ok(Some(Snapshot { meta, snapshot }))
    }

    /// A new file for a snapshot arriving from the leader.
    pub(super) fn receive_snapshot(&self, meta: &SnapshotMeta) -> io::Result<NewSnapshot> {
        NewSnapshot::create(&*self.db.disk, meta)
    }
}

/// Writes a snapshot's history records after `batch`, in batches of at most `SNAPSHOT_INSTALL_BATCH_BYTES`
/// (unsynced), and returns its head with the last batch, which holds its leases and is left to the caller to
/// finish and write.
fn write_history(db: &Db, body: &SnapshotBody, mut batch: Batch) -> io::Result<(SnapshotHead, Batch)> {
    let (head, mut records) = SnapshotDecoder::open(body)?;
    let mut batch_bytes = 0;
    while let Some((rev, bytes)) = records.next_record()? {
        batch_bytes += bytes.len();
        batch.put(Cf::History, rev.to_bytes(), bytes);
        if batch_bytes >= limits::SNAPSHOT_INSTALL_BATCH_BYTES {
            db.disk.write(std::mem::take(&mut batch), false)?;
            batch_bytes = 0;
        }
    }
    for (id, ttl) in &head.leases {
        batch.put(Cf::Lease, id.to_be_bytes(), encode(ttl));
    }
    Ok((head, batch))
}

/// Fills the state machine of a new replica's empty database with a saved snapshot's keys, history,
/// revisions and leases (`raftsman server --restore`). Not its Raft position, membership or replicas'
/// addresses: the new cluster makes its own, as any new cluster does. The snapshot is checked whole before
/// anything is written. Returns the revision restored.
pub fn restore(db: &Db, body: &SnapshotBody) -> io::Result<i64> {
    check_records(body)?;
    // What an interrupted restore wrote goes first.
    let mut batch = Batch::default();
    batch.delete_range(Cf::History, [0u8; 16], [0xffu8; 16]);
    batch.delete_range(Cf::Lease, [0u8; 8], [0xffu8; 8]);
    let (head, mut batch) = write_history(db, body, batch)?;
    batch.put(Cf::Sm, KEY_MVCC, encode(&head.mvcc));
    db.disk.write(batch, true)?;
    tracing::info!(revision = head.mvcc.revision, bytes = body.len(), "restored a saved snapshot");
    Ok(head.mvcc.revision)
}

/// Makes this replica the only voter of its cluster, keeping all it holds (`--force-new-cluster`, for a
/// cluster that lost a majority for good): appends to its log a membership of itself alone, in a term past any
/// it has seen, with a vote for itself in that term. Raft starts from the last membership of the log,
/// committed or not, so the replica elects itself and commits that entry, and with it every entry of its log.
/// Returns the entry's index.
pub fn force_new_cluster(db: &Db, id: NodeId, node: RaftNode) -> io::Result<u64> {
    let vote: Option<Vote> = db.get(Cf::Raft, KEY_VOTE)?;
    let last_purged: Option<LogId> = db.get(Cf::Raft, KEY_PURGED)?;
    let last = match db.disk.last(Cf::Log)? {
        Some((_, value)) => Some(decode::<Entry>(&value)?.log_id),
        None => last_purged,
    };
    let seen = vote.map_or(0, |v| v.leader_id.term).max(last.as_ref().map_or(0, term_of));
    let term = seen + 1;
    let index = last.map_or(1, |l| l.index + 1);
    let alone = openraft::Membership::new(vec![[id].into()], BTreeMap::from([(id, node)]))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let entry = Entry { log_id: LogId::new_term_index(term, index), payload: EntryPayload::Membership(alone) };
    let mut batch = Batch::default();
    batch.put(Cf::Log, LogStore::log_key(index), encode(&entry));
    batch.put(Cf::Raft, KEY_VOTE, encode(&Vote::new(term, id)));
    db.disk.write(batch, true)?;
    tracing::warn!(term, index, "forced a new cluster: this replica is its only voter, with all the data it held");
    Ok(index)
}

/// An entry's size as the log holds it, near enough to bound an apply batch.
fn entry_bytes(entry: &Entry) -> usize {
    bincode::serialized_size(entry).map_or(usize::MAX, |n| n.min(usize::MAX as u64) as usize)
}

/// The state machine handed to openraft.
#[derive(Clone)]
pub struct StateMachine {
    pub shared: Arc<SmShared>,
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        off_the_workers(shared.disk_reads_block(), move || shared.build_snapshot()).await?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.shared.read();
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(first) = entries.try_next().await? {
            // Take whatever else is ready without waiting, so that one write batch covers many entries, up to
            // `APPLY_BATCH_BYTES_MAX` of them (a follower catching up applies thousands at once).
            let mut bytes = entry_bytes(&first.0);
            let mut batch = vec![first];
            while bytes < limits::APPLY_BATCH_BYTES_MAX {
                let Some(Some(next)) = entries.try_next().now_or_never().transpose()? else {
                    break;
                };
                bytes += entry_bytes(&next.0);
                batch.push(next);
            }
            let (entries_only, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let results = self.shared.apply_batch(&entries_only)?;
            for (responder, result) in responders.into_iter().zip(results) {
                if let Some(r) = responder {
                    r.send(result);
                }
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let (shared, meta) = (self.shared.clone(), meta.clone());
        off_the_workers(shared.disk_reads_block(), move || shared.install_snapshot(&meta, &snapshot)).await?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.shared.current_snapshot()
    }
}

#[cfg(test)]
mod tests;
