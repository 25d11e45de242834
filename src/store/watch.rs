//! Watching the store: the hub of recent changes every replica keeps, and `Watcher`, the one cursor through
//! which every watch (the etcd Watch service and Kubernetes watches alike) pulls its events.
//!
//! Watchers pull; nothing is pushed into per-watcher queues. A watcher remembers the next revision it needs
//! and asks the hub for events from there; the hub answers from its ring of recent revisions when it holds
//! them and from the history on disk otherwise. That gives etcd's guarantees by construction: events come in
//! revision order, each revision whole, with no gaps and no duplicates, and a watcher resumes from any revision
//! not yet compacted. A slow watcher costs no memory: it simply falls behind the ring and reads from disk.
//!
//! Invariants: `publish` is called with consecutive revisions, after the changes are persisted; the published
//! revision (a `tokio::sync::watch`) is what wakes watchers, never a timer. A watcher's cursor moves only past
//! revisions whose selected events it has handed out, so a batch dropped by a caller is never skipped silently
//! unless the caller drops the watcher too. A compacted start is `WatchError::Compacted`, a failed read of the
//! history `WatchError::Storage`: the two are never confused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::command::{ApplyError, Event, EventKind, KeyRange};
use super::mvcc::HistoryRecord;
use super::storage::SmShared;
use crate::limits;

/// What a watcher wants to see.
#[derive(Clone, Debug)]
pub struct WatchFilter {
    pub range: KeyRange,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchFilter {
    pub fn matches(&self, r: &HistoryRecord) -> bool {
        self.range.contains(&r.kv.key)
            && !(self.no_put && r.kind == EventKind::Put)
            && !(self.no_delete && r.kind == EventKind::Delete)
    }
}

/// The changes of one revision.
#[derive(Clone, Debug)]
pub struct RevisionEvents {
    pub revision: i64,
    pub records: Arc<Vec<HistoryRecord>>,
}

/// A batch of events for one watcher and the revision it needs next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pull {
    Events {
        events: Vec<Event>,
        next: i64,
    },
    /// The requested revision is older than the compaction revision.
    Compacted {
        compact_revision: i64,
    },
}

/// Matching changes from the ring and the revision the watcher needs next.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RecentPull {
    pub records: Vec<HistoryRecord>,
    pub next: i64,
}

#[derive(Default)]
struct Ring {
    revisions: VecDeque<RevisionEvents>,
    /// What the revisions' keys and values hold, in bytes (`RevisionEvents::bytes`).
    bytes: usize,
}

impl RevisionEvents {
    /// The bytes of the keys and values of this revision's changes: what it costs the ring.
    fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.kv.key.len() + r.kv.value.len()).sum()
    }
}

impl Ring {
    fn push(&mut self, rev: RevisionEvents) {
        if self.revisions.back().is_some_and(|last| last.revision + 1 != rev.revision) {
            self.clear();
        }
        self.bytes += rev.bytes();
        self.revisions.push_back(rev);
        while self.revisions.len() > limits::WATCH_RING_REVISIONS_MAX || self.bytes > limits::WATCH_RING_BYTES_MAX {
            let Some(oldest) = self.revisions.pop_front() else { break };
            self.bytes -= oldest.bytes();
        }
    }

    fn clear(&mut self) {
        self.revisions.clear();
        self.bytes = 0;
    }

    /// The ring's changes from `from` on, when the ring still holds `from` (or nothing newer exists).
    fn pull(&self, from: i64, filter: &WatchFilter, current: i64) -> Option<RecentPull> {
        let first = self.revisions.front().map_or(current + 1, |r| r.revision);
        if from < first && from <= current {
            return None;
        }
        let mut records = Vec::new();
        let mut next = from.max(first);
        let skip = (next - first).max(0) as usize;
        for rev in self.revisions.iter().skip(skip) {
            records.extend(rev.records.iter().filter(|r| filter.matches(r)).cloned());
            next = rev.revision + 1;
            if records.len() >= limits::WATCH_EVENTS_PER_RESPONSE_MAX {
                break;
            }
        }
        Some(RecentPull { records, next: next.max(from) })
    }
}

/// The shared hub: one per replica.
pub struct WatchHub {
    /// std Mutex: held only to push or copy out of the ring, never across an await.
    ring: Mutex<Ring>,
    revision: watch::Sender<i64>,
}

impl WatchHub {
    pub fn new(revision: i64) -> WatchHub {
        WatchHub { ring: Mutex::new(Ring::default()), revision: watch::Sender::new(revision) }
    }

    /// Records the events of newly applied revisions and wakes the watchers.
    pub fn publish(&self, batch: Vec<RevisionEvents>, revision: i64) {
        if !batch.is_empty() {
            let mut ring = self.ring.lock().expect("watch ring poisoned");
            for rev in batch {
                ring.push(rev);
            }
        }
        self.revision.send_replace(revision);
    }

    /// Forgets the ring: the state was replaced by a snapshot, whose history is on disk.
    pub fn reset(&self, revision: i64) {
        self.ring.lock().expect("watch ring poisoned").clear();
        self.revision.send_replace(revision);
    }

    pub(super) fn subscribe(&self) -> Revisions {
        Revisions(self.revision.subscribe())
    }

    pub(super) fn current_revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Whether the ring holds revision `from` (or nothing that new exists yet): a pull from there reads no disk.
    pub(super) fn holds(&self, from: i64) -> bool {
        let current = self.current_revision();
        let ring = self.ring.lock().expect("watch ring poisoned");
        from > current || ring.revisions.front().is_some_and(|r| r.revision <= from)
    }

    /// Changes from the in-memory ring, or None when the watcher must read the history on disk.
    pub(super) fn pull_recent(&self, from: i64, filter: &WatchFilter) -> Option<RecentPull> {
        let current = self.current_revision();
        self.ring.lock().expect("watch ring poisoned").pull(from, filter, current)
    }
}

/// Why a watcher cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The watcher needs revision `from`, which compaction (up to `compact_revision`) removed.
    #[error("required revision {from} has been compacted (compacted up to {compact_revision})")]
    Compacted { from: i64, compact_revision: i64 },
    /// The history could not be read: a fault of this replica's storage, not of the request.
    #[error("watch history read failed: {0}")]
    Storage(String),
    /// The state machine is gone: the replica is stopping.
    #[error("the store stopped")]
    Stopped,
}

/// The store's revision as it moves: what wakes watchers.
pub struct Revisions(watch::Receiver<i64>);

impl Revisions {
    /// The revision applied and published last.
    pub fn current(&self) -> i64 {
        *self.0.borrow()
    }

    /// Waits until a revision newer than the one last seen through this handle is published.
    pub async fn changed(&mut self) -> Result<(), WatchError> {
        self.0.changed().await.map_err(|_| WatchError::Stopped)
    }
}

/// Events for one watcher: whole revisions, in order, at most `WATCH_EVENTS_PER_RESPONSE_MAX` unless a single
/// revision holds more.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The store revision the batch was read at: at least the revision of its last event.
    pub revision: i64,
}

/// A cursor over the store's changes that a filter selects, from a start revision on; see the module doc.
pub struct Watcher {
    sm: Arc<SmShared>,
    filter: WatchFilter,
    next: i64,
    revisions: Revisions,
}

impl Watcher {
    /// A watcher whose first event is the first selected change at revision `from` or later.
    pub(super) fn new(sm: Arc<SmShared>, filter: WatchFilter, from: i64) -> Watcher {
        let revisions = sm.revisions();
        Watcher { sm, filter, next: from, revisions }
    }

    /// The revision this watcher needs next: every selected change before it has been handed out.
    pub fn next_revision(&self) -> i64 {
        self.next
    }

    /// Whether the store holds revisions this watcher has not pulled yet.
    pub fn is_behind(&self) -> bool {
        self.next <= self.revisions.current()
    }

    /// Pulls once, without waiting: the selected events of the next revisions (possibly none, when the filter
    /// selected nothing in them; the cursor moves past them all the same), or None when the watcher is caught
    /// up.
    pub fn pull(&mut self) -> Result<Option<Batch>, WatchError> {
        let current = self.revisions.current();
        if self.next > current {
            return Ok(None);
        }
        let pulled = self.sm.pull(self.next, &self.filter);
        self.take(pulled, current).map(Some)
    }

    /// Like `pull`, but a catch-up from a disk whose reads block runs on a blocking thread, so that the
    /// workers serving requests never wait on a scan of the history.
    async fn pull_off_the_workers(&mut self) -> Result<Option<Batch>, WatchError> {
        let current = self.revisions.current();
        if self.next > current {
            return Ok(None);
        }
        if !self.sm.disk_reads_block() || self.sm.hub_holds(self.next) {
            return self.pull();
        }
        let (sm, filter, from) = (self.sm.clone(), self.filter.clone(), self.next);
        let pulled = tokio::task::spawn_blocking(move || sm.pull(from, &filter))
            .await
            .map_err(|e| WatchError::Storage(format!("the history read stopped: {e}")))?;
        self.take(pulled, current).map(Some)
    }

    /// Moves the cursor past what was pulled at `current` and hands it out.
    fn take(&mut self, pulled: Result<Pull, ApplyError>, current: i64) -> Result<Batch, WatchError> {
        match pulled {
            Ok(Pull::Events { events, next }) => {
                self.next = next;
                Ok(Batch { events, revision: current.max(next - 1) })
            }
            Ok(Pull::Compacted { compact_revision }) => {
                Err(WatchError::Compacted { from: self.next, compact_revision })
            }
            Err(e) => Err(WatchError::Storage(e.to_string())),
        }
    }

    /// Waits for the next selected events and returns them. Cancel-safe: the cursor moves only in the poll
    /// that hands the batch out.
    pub async fn next_batch(&mut self) -> Result<Batch, WatchError> {
        loop {
            match self.pull_off_the_workers().await? {
                Some(batch) if !batch.events.is_empty() => return Ok(batch),
                // Nothing selected in a stretch of history: move on, letting other tasks run in between.
                Some(_) => tokio::task::yield_now().await,
                None => self.revisions.changed().await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::command::KeyValue;

    fn rev(revision: i64, keys: &[&str]) -> RevisionEvents {
        let records = keys
            .iter()
            .map(|k| HistoryRecord {
                kind: EventKind::Put,
                kv: KeyValue { key: k.as_bytes().to_vec(), mod_revision: revision, ..KeyValue::default() },
                prev: None,
            })
            .collect();
        RevisionEvents { revision, records: Arc::new(records) }
    }

    fn all() -> WatchFilter {
        WatchFilter { range: KeyRange { key: vec![0], end: vec![0] }, prev_kv: false, no_put: false, no_delete: false }
    }

    #[test]
    fn pulls_in_order_without_gaps() {
        let hub = WatchHub::new(0);
        hub.publish(vec![rev(1, &["a"]), rev(2, &["b", "c"]), rev(3, &["a"])], 3);
        let Some(RecentPull { records: events, next }) = hub.pull_recent(2, &all()) else { panic!() };
        assert_eq!(next, 4);
        assert_eq!(events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(), vec![2, 2, 3]);
        let Some(RecentPull { records: events, next }) = hub.pull_recent(4, &all()) else { panic!() };
        assert!(events.is_empty());
        assert_eq!(next, 4);
    }

    #[test]
    fn filtered_watchers_still_advance() {
        let hub = WatchHub::new(0);
        hub.publish(vec![rev(1, &["a"]), rev(2, &["b"])], 2);
        let f = WatchFilter { range: KeyRange { key: b"b".to_vec(), end: vec![] }, ..all() };
        let Some(RecentPull { records: events, next }) = hub.pull_recent(1, &f) else { panic!() };
        assert_eq!(events.len(), 1);
        assert_eq!(next, 3);
    }

    #[test]
    fn old_revisions_fall_through_to_disk() {
        let hub = WatchHub::new(5);
        hub.publish(vec![rev(6, &["a"])], 6);
        assert_eq!(hub.pull_recent(3, &all()), None);
        let hub = WatchHub::new(0);
        let many: Vec<_> = (1..=(limits::WATCH_RING_REVISIONS_MAX as i64 + 10)).map(|r| rev(r, &["k"])).collect();
        let last = many.len() as i64;
        hub.publish(many, last);
        assert_eq!(hub.pull_recent(1, &all()), None);
        assert!(hub.pull_recent(last, &all()).is_some());
    }

    /// The ring is bounded in bytes as well as in revisions: large revisions push older ones out to disk, and
    /// a revision larger than the whole budget is not kept at all.
    #[test]
    fn the_ring_is_bounded_in_bytes() {
        let large = |revision: i64, bytes: usize| {
            let kv =
                KeyValue { key: b"k".to_vec(), value: vec![0; bytes], mod_revision: revision, ..KeyValue::default() };
            let record = HistoryRecord { kind: EventKind::Put, kv, prev: None };
            RevisionEvents { revision, records: Arc::new(vec![record]) }
        };
        let quarter = limits::WATCH_RING_BYTES_MAX / 4;
        let hub = WatchHub::new(0);
        hub.publish((1..=6).map(|r| large(r, quarter - 1)).collect(), 6);
        assert_eq!(hub.pull_recent(2, &all()), None, "revisions 1 and 2 were pushed out");
        let Some(RecentPull { records, next }) = hub.pull_recent(3, &all()) else { panic!("3 to 6 are kept") };
        assert_eq!((records.len(), next), (4, 7));
        assert!(hub.ring.lock().unwrap().bytes <= limits::WATCH_RING_BYTES_MAX);
        hub.publish(vec![large(7, limits::WATCH_RING_BYTES_MAX + 1)], 7);
        assert_eq!(hub.pull_recent(7, &all()), None, "a revision above the budget is read from disk");
        assert_eq!(hub.ring.lock().unwrap().bytes, 0);
    }

    #[test]
    fn responses_stop_at_revision_boundaries() {
        let hub = WatchHub::new(0);
        let wide: Vec<String> = (0..limits::WATCH_EVENTS_PER_RESPONSE_MAX).map(|i| format!("k{i}")).collect();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        hub.publish(vec![rev(1, &["x"]), rev(2, &wide), rev(3, &["y"])], 3);
        let Some(RecentPull { records: events, next }) = hub.pull_recent(1, &all()) else { panic!() };
        assert_eq!(next, 3, "revision 2 is delivered whole, revision 3 waits for the next pull");
        assert_eq!(events.len(), 1 + wide.len());
    }
}
