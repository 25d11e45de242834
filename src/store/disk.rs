//! The byte store under the log and the state machine: ordered keys in a few column families, atomic write
//! batches, and an explicit sync. `storage` keeps all of the log's and the state machine's logic and sees the
//! disk only through `Disk`; two disks implement it: RocksDB (`rocks`) for real replicas and a simulated disk
//! (`memory`) that loses unsynced writes when its host crashes, for the chaos simulation.
//!
//! Invariants every disk keeps:
//! - A batch is atomic: after a crash either all of it or none of it is there.
//! - Writes reach the disk in order: whatever survives a crash is a prefix of the writes.
//! - A write is durable once `sync` (or a write with `sync` set) returns; before that a crash may lose it.
//! - The snapshot file is replaced atomically and is durable when `save_snapshot` returns.

pub mod memory;
pub mod rocks;

use std::io;
use std::time::Duration;

/// The column families, by owner: `Log` (entries by index) and `Raft` (vote, purged, committed) for the log;
/// `History` (MVCC changes by revision), `Lease` and `Sm` (applied log id, membership, MVCC meta, published
/// members) for the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cf {
    Log,
    Raft,
    History,
    Lease,
    Sm,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::Log, Cf::Raft, Cf::History, Cf::Lease, Cf::Sm];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Log => "log",
            Cf::Raft => "raft",
            Cf::History => "history",
            Cf::Lease => "lease",
            Cf::Sm => "sm",
        }
    }
}

/// One change in a write batch.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes the keys in `from..to`.
    DeleteRange {
        cf: Cf,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Changes written atomically.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { cf, key: key.into() });
    }

    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange { cf, from: from.into(), to: to.into() });
    }
}

/// A key and its value.
pub type Pair = (Box<[u8]>, Box<[u8]>);

/// Keys in order, from a start key on.
pub type Scan<'a> = Box<dyn Iterator<Item = io::Result<Pair>> + 'a>;

/// How a disk's syncs behave, which decides where the log's group commit and snapshot builds run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syncs {
    /// A sync blocks the calling thread (a real fsync): the group commit runs on a thread of its own and
    /// snapshot builds on tokio's blocking pool.
    Blocking,
    /// A sync is instant but only becomes true after `latency` of (simulated) time; everything runs as tasks
    /// on the host's runtime, so that a simulation stays deterministic.
    Simulated { latency: Duration },
}

/// The byte store.
pub trait Disk: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> io::Result<Option<Vec<u8>>>;

    /// Writes a batch atomically; with `sync`, it is durable when this returns.
    fn write(&self, batch: Batch, sync: bool) -> io::Result<()>;

    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;

    /// The keys of `cf` from `from` on, in order.
    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_>;

    /// The last key of `cf` and its value.
    fn last(&self, cf: Cf) -> io::Result<Option<Pair>>;

    /// A consistent view of the disk as it is now, for a long scan while writes go on (snapshot builds).
    fn frozen(&self) -> Box<dyn Frozen + '_>;

    /// Replaces the snapshot file; durable when this returns.
    fn save_snapshot(&self, bytes: &[u8]) -> io::Result<()>;

    fn load_snapshot(&self) -> io::Result<Option<Vec<u8>>>;

    /// Bytes the disk occupies.
    fn size_bytes(&self) -> u64;

    fn syncs(&self) -> Syncs;
}

/// A point-in-time view of a disk.
pub trait Frozen {
    /// The keys of `cf` from `from` on, in order, as they were when the view was taken.
    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_>;
}
