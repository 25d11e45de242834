//! The multi-version key-value state with etcd's semantics: the pure core of the state machine.
//!
//! `Mvcc` holds, in memory, the key index: for every key the revisions at which it changed and, while it is
//! live, its create revision, version and lease; plus the leases. Values are not kept in memory: they live in
//! the history (every change since the last compaction, addressed by revision, in a `History`), as etcd keeps
//! them in bbolt, and are read from there. Applying a command returns the `Write`s the storage layer must
//! persist next to the applied log id, and the history records the watch hub publishes; records written but not yet
//! persisted are kept aside for reads until the storage layer calls `persisted`.
//!
//! Invariants kept here:
//! - `apply` is deterministic: it depends only on the current state and the command.
//! - The revision grows by exactly one per command that changes at least one key; a refused command (an
//!   `ApplyError`) changes nothing, because everything it checks is checked before anything is written.
//! - A key's revision list is ascending; once a compaction at `c` is pruned, it keeps the newest change at or
//!   before `c` unless that change was a delete. Reads before `c` are refused from the compaction on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::command::*;
use crate::limits;

/// A point in the store's history: the main revision of a write command and the index of a change within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    /// Big-endian encoding, so that byte order is revision order.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Revision> {
        let main = i64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let sub = i64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some(Revision { main, sub })
    }
}

/// One change in the history, as persisted: the event, and where the key's previous value lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<Revision>,
}

/// Read access to the persisted history.
pub trait History {
    fn record(&self, rev: Revision) -> Result<Option<HistoryRecord>, ApplyError>;
}

/// What the storage layer must persist for one applied command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    History(Revision, HistoryRecord),
    ForgetHistory(Revision),
    /// A lease granted (with its TTL in seconds) or removed (None).
    Lease(i64, Option<i64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RevMark {
    rev: Revision,
    tombstone: bool,
}

/// What memory keeps of a live key; its value and mod revision come from its last change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LiveMeta {
    create_revision: i64,
    version: i64,
    lease: i64,
}

#[derive(Clone, Debug, Default)]
struct KeyEntry {
    live: Option<LiveMeta>,
    marks: Vec<RevMark>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// The revisions that describe the store as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvccMeta {
    pub revision: i64,
    pub compact_revision: i64,
}

#[derive(Debug, Default)]
pub struct Mvcc {
    keys: BTreeMap<Vec<u8>, KeyEntry>,
    leases: BTreeMap<i64, LeaseState>,
    meta: MvccMeta,
    /// History records written since the storage layer last persisted, for reads until it has.
    pending: HashMap<Revision, HistoryRecord>,
    /// The keys whose revisions before the compaction revision are still in memory and on disk.
    pruning: Option<Pruning>,
}

/// A compaction's cleanup in progress, done in bounded steps (`prune`) outside apply. History before the
/// compaction revision is unreadable from the moment the compaction is applied; removing it is not visible.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pruning {
    revision: i64,
    /// The first key not yet pruned.
    next: Vec<u8>,
}

/// The result of applying one command.
pub struct ApplyOutput {
    pub applied: Applied,
    /// The changes made, in revision order, for the watch hub (previous values are resolved only for watchers
    /// that ask for them).
    pub events: Vec<HistoryRecord>,
    pub writes: Vec<Write>,
}

impl Mvcc {
    /// Rebuilds the in-memory state from persisted history (in revision order), leases and meta.
    pub fn restore(
        meta: MvccMeta,
        records: impl IntoIterator<Item = (Revision, HistoryRecord)>,
        leases: impl IntoIterator<Item = (i64, i64)>,
    ) -> Mvcc {
        // Whatever an interrupted cleanup left is pruned again.
        let pruning =
            (meta.compact_revision > 0).then(|| Pruning { revision: meta.compact_revision, next: Vec::new() });
        let mut mvcc = Mvcc { meta, pruning, ..Mvcc::default() };
        for (id, ttl) in leases {
            mvcc.leases.insert(id, LeaseState { ttl, keys: BTreeSet::new() });
        }
        for (rev, record) in records {
            let entry = mvcc.keys.entry(record.kv.key.clone()).or_default();
            let tombstone = record.kind == EventKind::Delete;
            entry.marks.push(RevMark { rev, tombstone });
            entry.live = (!tombstone).then_some(LiveMeta {
                create_revision: record.kv.create_revision,
                version: record.kv.version,
                lease: record.kv.lease,
            });
        }
        for (key, entry) in &mvcc.keys {
            if let Some(live) = &entry.live {
                if let Some(lease) = mvcc.leases.get_mut(&live.lease) {
                    lease.keys.insert(key.clone());
                }
            }
        }
        mvcc
    }

    /// The storage layer has persisted every write returned so far.
    pub fn persisted(&mut self) {
        self.pending.clear();
    }

    pub fn meta(&self) -> MvccMeta {
        self.meta
    }

    pub fn revision(&self) -> i64 {
        self.meta.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.meta.compact_revision
    }

    pub fn leases(&self) -> &BTreeMap<i64, LeaseState> {
        &self.leases
    }

    /// The previous value a history record points to, for watchers that asked for it.
    pub fn prev_kv(history: &dyn History, record: &HistoryRecord) -> Result<Option<KeyValue>, ApplyError> {
        let Some(prev) = record.prev else {
            return Ok(None);
        };
        Ok(history.record(prev)?.filter(|r| r.kind == EventKind::Put).map(|r| r.kv))
    }

    pub fn apply(&mut self, cmd: &Command, history: &dyn History) -> ApplyOutput {
        let mut tx = Tx { main: self.meta.revision + 1, sub: 0, events: Vec::new(), writes: Vec::new() };
        let outcome = match cmd {
            Command::Put(op) => self
                .check_put(op)
                .and_then(|()| self.put(op, &mut tx, history))
                .map(|prev_kv| Outcome::Response(ResponseOp::Put { prev_kv })),
            Command::Delete(op) => self.delete(op, &mut tx, history).map(Outcome::Response),
            Command::Txn(op) | Command::FencedTxn { txn: op, .. } => {
                self.txn(op, history, &mut tx).map(|r| Outcome::Response(ResponseOp::Txn(r)))
            }
            Command::Compact { revision } => self.compact(*revision).map(|()| Outcome::Compacted),
            Command::LeaseGrant { id, ttl } => self.lease_grant(*id, *ttl, &mut tx),
            Command::LeaseRevoke { id } => match self.leases.contains_key(id) {
                true => self.lease_revoke(*id, &mut tx, history).map(|()| Outcome::LeaseRevoked),
                false => Err(ApplyError::LeaseNotFound),
            },
            Command::LeaseExpire { ids, .. } => ids
                .iter()
                .filter(|id| self.leases.contains_key(id))
                .copied()
                .collect::<Vec<_>>()
                .into_iter()
                .try_for_each(|id| self.lease_revoke(id, &mut tx, history))
                .map(|()| Outcome::Nothing),
            Command::PublishMember { .. } => Ok(Outcome::Nothing),
        };
        // A storage fault may strike midway; the storage layer treats it as fatal and persists nothing.
        if outcome.as_ref().is_err_and(|e| !matches!(e, ApplyError::Storage(_))) {
            debug_assert!(tx.writes.is_empty(), "a refused command must not write");
        }
        if tx.sub > 0 {
            self.meta.revision = tx.main;
        }
        ApplyOutput { applied: Applied { revision: self.meta.revision, outcome }, events: tx.events, writes: tx.writes }
    }

    /// A range read at the request's revision (0: the current one).
    pub fn range(&self, op: &RangeOp, history: &dyn History) -> Result<RangeResult, ApplyError> {
        let rev = if op.revision <= 0 { self.meta.revision } else { op.revision };
        if rev > self.meta.revision {
            return Err(ApplyError::FutureRevision);
        }
        if rev < self.meta.compact_revision {
            return Err(ApplyError::Compacted);
        }
        // The index answers everything but values at the current revision, and keys and mod revisions at a past
        // one; the records are read last, and only for the keys returned, unless sorting or filtering needs
        // what only they hold. So a page of a large range reads the values of that page alone.
        let current = rev == self.meta.revision;
        let creation_needed = matches!(op.sort_target, SortTarget::Create | SortTarget::Version)
            || op.min_create_revision != 0
            || op.max_create_revision != 0;
        let records_first = op.sort_target == SortTarget::Value || (!current && creation_needed);
        // Each key with the revision of the record that holds its value at `rev`.
        let mut found: Vec<(KeyValue, Revision)> = Vec::new();
        for (key, entry) in self.entries_in(&op.range) {
            let visible = if current {
                entry.live.and(entry.marks.last())
            } else {
                entry.marks.iter().rev().find(|m| m.rev.main <= rev).filter(|m| !m.tombstone)
            };
            let Some(mark) = visible else { continue };
            let kv = match (records_first, current) {
                (true, _) => match self.record(mark.rev, history)? {
                    Some(record) => record.kv,
                    None if !current => continue,
                    None => return Err(missing(mark.rev)),
                },
                (false, true) => self.live_kv(key, entry, false, history)?.ok_or_else(|| missing(mark.rev))?,
                (false, false) => KeyValue { key: key.to_vec(), mod_revision: mark.rev.main, ..KeyValue::default() },
            };
            found.push((kv, mark.rev));
        }
        let count = found.len() as i64;
        found.retain(|(kv, _)| {
            (op.min_mod_revision == 0 || kv.mod_revision >= op.min_mod_revision)
                && (op.max_mod_revision == 0 || kv.mod_revision <= op.max_mod_revision)
                && (op.min_create_revision == 0 || kv.create_revision >= op.min_create_revision)
                && (op.max_create_revision == 0 || kv.create_revision <= op.max_create_revision)
        });
        sort_found(&mut found, op.sort_order, op.sort_target);
        let limit = match op.limit {
            l if l > 0 => (l as usize).min(limits::RANGE_KEYS_MAX),
            _ => limits::RANGE_KEYS_MAX,
        };
        let more = found.len() > limit;
        found.truncate(limit);
        if op.count_only {
            found.clear();
        }
        let mut kvs = Vec::with_capacity(found.len());
        for (mut kv, at) in found {
            let loaded = records_first || (op.keys_only && current);
            if !loaded {
                let record = match self.record(at, history)? {
                    Some(record) => record.kv,
                    // A past revision's record can be gone with the history compaction forgot.
                    None if !current => continue,
                    None => return Err(missing(at)),
                };
                kv = if current { KeyValue { value: record.value, ..kv } } else { record };
            }
            if op.keys_only {
                kv.value.clear();
            }
            kvs.push(kv);
        }
        Ok(RangeResult { kvs, more, count })
    }

    fn entries_in<'a>(&'a self, range: &KeyRange) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyEntry)> + 'a> {
        if range.is_single_key() {
            return Box::new(self.keys.get_key_value(&range.key).into_iter());
        }
        let start = Bound::Included(range.key.clone());
        if range.end.as_slice() == [0] {
            return Box::new(self.keys.range((start, Bound::Unbounded)));
        }
        if range.end <= range.key {
            return Box::new(std::iter::empty());
        }
        Box::new(self.keys.range((start, Bound::Excluded(range.end.clone()))))
    }

    /// A history record, from the writes not yet persisted or from the history.
    fn record(&self, rev: Revision, history: &dyn History) -> Result<Option<HistoryRecord>, ApplyError> {
        match self.pending.get(&rev) {
            Some(record) => Ok(Some(record.clone())),
            None => history.record(rev),
        }
    }

    /// A live key as a `KeyValue`; without `value` the value stays empty and nothing is read.
    fn live_kv(
        &self,
        key: &[u8],
        entry: &KeyEntry,
        value: bool,
        history: &dyn History,
    ) -> Result<Option<KeyValue>, ApplyError> {
        let (Some(live), Some(last)) = (entry.live, entry.marks.last()) else { return Ok(None) };
        if value {
            return Ok(Some(self.record(last.rev, history)?.ok_or_else(|| missing(last.rev))?.kv));
        }
        Ok(Some(KeyValue {
            key: key.to_vec(),
            create_revision: live.create_revision,
            mod_revision: last.rev.main,
            version: live.version,
            value: Vec::new(),
            lease: live.lease,
        }))
    }

    fn live_in(&self, range: &KeyRange, value: bool, history: &dyn History) -> Result<Vec<KeyValue>, ApplyError> {
        self.entries_in(range).filter_map(|(k, e)| self.live_kv(k, e, value, history).transpose()).collect()
    }

    fn check_put(&self, op: &PutOp) -> Result<(), ApplyError> {
        let live = self.keys.get(&op.key).and_then(|e| e.live.as_ref());
        if (op.ignore_value || op.ignore_lease) && live.is_none() {
            return Err(ApplyError::KeyNotFound);
        }
        if !op.ignore_lease && op.lease != 0 && !self.leases.contains_key(&op.lease) {
            return Err(ApplyError::LeaseNotFound);
        }
        Ok(())
    }

    fn put(&mut self, op: &PutOp, tx: &mut Tx, history: &dyn History) -> Result<Option<KeyValue>, ApplyError> {
        // The previous value is read only when the request needs it.
        let prev = match self.keys.get(&op.key) {
            Some(entry) => self.live_kv(&op.key, entry, op.prev_kv || op.ignore_value, history)?,
            None => None,
        };
        let rev = tx.next();
        let entry = self.keys.entry(op.key.clone()).or_default();
        let value = match (&prev, op.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => op.value.clone(),
        };
        let lease = match (&prev, op.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => op.lease,
        };
        let kv = KeyValue {
            key: op.key.clone(),
            create_revision: prev.as_ref().map_or(rev.main, |p| p.create_revision),
            mod_revision: rev.main,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        let prev_rev = prev.as_ref().and(entry.marks.last().map(|m| m.rev));
        entry.marks.push(RevMark { rev, tombstone: false });
        entry.live = Some(LiveMeta { create_revision: kv.create_revision, version: kv.version, lease });
        if let Some(old) = prev.as_ref().map(|p| p.lease).filter(|&l| l != 0 && l != lease) {
            if let Some(state) = self.leases.get_mut(&old) {
                state.keys.remove(&op.key);
            }
        }
        if let Some(state) = self.leases.get_mut(&lease) {
            state.keys.insert(op.key.clone());
        }
        self.write_history(tx, rev, HistoryRecord { kind: EventKind::Put, kv, prev: prev_rev });
        Ok(prev)
    }

    fn write_history(&mut self, tx: &mut Tx, rev: Revision, record: HistoryRecord) {
        self.pending.insert(rev, record.clone());
        tx.events.push(record.clone());
        tx.writes.push(Write::History(rev, record));
    }

    fn delete(&mut self, op: &DeleteOp, tx: &mut Tx, history: &dyn History) -> Result<ResponseOp, ApplyError> {
        let victims = self.live_in(&op.range, op.prev_kv, history)?;
        for prev in &victims {
            self.delete_key(prev, tx);
        }
        let deleted = victims.len() as i64;
        Ok(ResponseOp::Delete { deleted, prev_kvs: if op.prev_kv { victims } else { Vec::new() } })
    }

    fn delete_key(&mut self, prev: &KeyValue, tx: &mut Tx) {
        let rev = tx.next();
        let entry = self.keys.get_mut(&prev.key).expect("a live key has an entry");
        let prev_rev = entry.marks.last().map(|m| m.rev);
        entry.marks.push(RevMark { rev, tombstone: true });
        entry.live = None;
        if let Some(state) = self.leases.get_mut(&prev.lease) {
            state.keys.remove(&prev.key);
        }
        let tomb = KeyValue { key: prev.key.clone(), mod_revision: rev.main, ..KeyValue::default() };
        self.write_history(tx, rev, HistoryRecord { kind: EventKind::Delete, kv: tomb, prev: prev_rev });
    }

    fn txn(&mut self, op: &TxnOp, history: &dyn History, tx: &mut Tx) -> Result<TxnResult, ApplyError> {
        // Decide every branch against the state before the transaction, check the chosen requests, then
        // execute: a refused transaction writes nothing.
        let mut path = Vec::new();
        self.choose_path(op, &mut path, history)?;
        self.check_path(op, &path, &mut 0)?;
        self.execute(op, &path, &mut 0, history, tx)
    }

    fn choose_path(&self, op: &TxnOp, path: &mut Vec<bool>, history: &dyn History) -> Result<(), ApplyError> {
        let mut succeeded = true;
        for c in &op.compare {
            succeeded &= self.compare(c, history)?;
        }
        path.push(succeeded);
        for req in if succeeded { &op.success } else { &op.failure } {
            if let RequestOp::Txn(nested) = req {
                self.choose_path(nested, path, history)?;
            }
        }
        Ok(())
    }

    fn check_path(&self, op: &TxnOp, path: &[bool], at: &mut usize) -> Result<(), ApplyError> {
        let succeeded = path[*at];
        *at += 1;
        for req in if succeeded { &op.success } else { &op.failure } {
            match req {
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::Range(range) => self.check_range_revision(range.revision)?,
                RequestOp::Txn(nested) => self.check_path(nested, path, at)?,
                RequestOp::Delete(_) => {}
            }
        }
        Ok(())
    }

    fn check_range_revision(&self, revision: i64) -> Result<(), ApplyError> {
        if revision > self.meta.revision {
            return Err(ApplyError::FutureRevision);
        }
        if revision > 0 && revision < self.meta.compact_revision {
            return Err(ApplyError::Compacted);
        }
        Ok(())
    }

    fn execute(
        &mut self,
        op: &TxnOp,
        path: &[bool],
        at: &mut usize,
        history: &dyn History,
        tx: &mut Tx,
    ) -> Result<TxnResult, ApplyError> {
        let succeeded = path[*at];
        *at += 1;
        let mut responses = Vec::new();
        for req in if succeeded { &op.success } else { &op.failure } {
            // Revisions, leases and keys were checked above: what can still fail here is reading the disk, a
            // storage fault the storage layer treats as fatal.
            let response = match req {
                RequestOp::Range(range) => ResponseOp::Range(self.range(range, history)?),
                RequestOp::Put(put) => ResponseOp::Put { prev_kv: self.put(put, tx, history)?.filter(|_| put.prev_kv) },
                RequestOp::Delete(del) => self.delete(del, tx, history)?,
                RequestOp::Txn(nested) => ResponseOp::Txn(self.execute(nested, path, at, history, tx)?),
            };
            responses.push(response);
        }
        Ok(TxnResult { succeeded, responses })
    }

    fn compare(&self, c: &Compare, history: &dyn History) -> Result<bool, ApplyError> {
        let kvs = self.live_in(&c.range, matches!(c.target, CompareTarget::Value(_)), history)?;
        if kvs.is_empty() {
            // A missing key compares as zero everywhere, except that it has no value to compare.
            return Ok(match c.target {
                CompareTarget::Value(_) => false,
                _ => compare_kv(c, &KeyValue::default()),
            });
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    /// Makes history before `revision` unreadable at once; what it frees is removed later, in bounded steps
    /// (`prune`), so that a compaction of a large store never holds the write path for long.
    fn compact(&mut self, revision: i64) -> Result<(), ApplyError> {
        if revision <= self.meta.compact_revision {
            return Err(ApplyError::Compacted);
        }
        if revision > self.meta.revision {
            return Err(ApplyError::FutureRevision);
        }
        self.meta.compact_revision = revision;
        self.pruning = Some(Pruning { revision, next: Vec::new() });
        Ok(())
    }

    /// Whether a compaction still has history to remove.
    pub fn pruning(&self) -> bool {
        self.pruning.is_some()
    }

    /// One step of a compaction's cleanup: up to `keys_max` keys give up their revisions before the
    /// compaction revision (all but the newest, and that one too if it is a delete), and keys left with none
    /// are forgotten. Returns the history records to delete from disk. Only between batches of entries: records
    /// not yet persisted are never pruned.
    pub fn prune(&mut self, keys_max: usize) -> Vec<Write> {
        let Some(pruning) = &mut self.pruning else { return Vec::new() };
        debug_assert!(self.pending.is_empty(), "pruning runs between batches, once they are persisted");
        let revision = pruning.revision;
        let mut writes = Vec::new();
        let mut emptied = Vec::new();
        let mut next = None;
        let from = (Bound::Included(pruning.next.as_slice()), Bound::Unbounded);
        for (visited, (key, entry)) in self.keys.range_mut::<[u8], _>(from).enumerate() {
            if visited == keys_max {
                next = Some(key.clone());
                break;
            }
            let at_or_before = entry.marks.partition_point(|m| m.rev.main <= revision);
            let keep_from = match at_or_before {
                0 => 0,
                n if entry.marks[n - 1].tombstone => n,
                n => n - 1,
            };
            writes.extend(entry.marks.drain(..keep_from).map(|mark| Write::ForgetHistory(mark.rev)));
            if entry.live.is_none() && entry.marks.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        match next {
            Some(key) => pruning.next = key,
            None => self.pruning = None,
        }
        writes
    }

    fn lease_grant(&mut self, id: i64, ttl: i64, tx: &mut Tx) -> Result<Outcome, ApplyError> {
        if self.leases.contains_key(&id) {
            return Err(ApplyError::LeaseExists);
        }
        if self.leases.len() >= limits::LEASES_MAX {
            return Err(ApplyError::TooManyLeases);
        }
        self.leases.insert(id, LeaseState { ttl, keys: BTreeSet::new() });
        tx.writes.push(Write::Lease(id, Some(ttl)));
        Ok(Outcome::LeaseGranted { id, ttl })
    }

    fn lease_revoke(&mut self, id: i64, tx: &mut Tx, history: &dyn History) -> Result<(), ApplyError> {
        let Some(state) = self.leases.get(&id) else { return Ok(()) };
        let mut victims = Vec::with_capacity(state.keys.len());
        for key in &state.keys {
            if let Some(entry) = self.keys.get(key) {
                victims.extend(self.live_kv(key, entry, false, history)?);
            }
        }
        self.leases.remove(&id);
        for prev in &victims {
            self.delete_key(prev, tx);
        }
        tx.writes.push(Write::Lease(id, None));
        Ok(())
    }
}

/// Revisions handed out to the changes of one command.
struct Tx {
    main: i64,
    sub: i64,
    events: Vec<HistoryRecord>,
    writes: Vec<Write>,
}

impl Tx {
    fn next(&mut self) -> Revision {
        let rev = Revision { main: self.main, sub: self.sub };
        self.sub += 1;
        rev
    }
}

fn missing(rev: Revision) -> ApplyError {
    ApplyError::Storage(format!("the history has no record at revision {}.{} of a live key", rev.main, rev.sub))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn sort_found(found: &mut [(KeyValue, Revision)], order: SortOrder, target: SortTarget) {
    // Keys come out of the index in ascending key order already.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    match target {
        SortTarget::Key => {}
        SortTarget::Version => found.sort_by_key(|(kv, _)| kv.version),
        SortTarget::Create => found.sort_by_key(|(kv, _)| kv.create_revision),
        SortTarget::Mod => found.sort_by_key(|(kv, _)| kv.mod_revision),
        SortTarget::Value => found.sort_by(|(a, _), (b, _)| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        found.reverse();
    }
}

#[cfg(test)]
mod tests;
