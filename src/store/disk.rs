//! The byte store under the log and the state machine: ordered keys in a few column families, atomic write
//! batches, and an explicit sync. `storage` keeps all of the log's and the state machine's logic and sees the
//! disk only through `Disk`; two disks implement it: RocksDB (`rocks`) for real replicas and a simulated disk
//! (`memory`) that loses unsynced writes when its host crashes, for the chaos simulation.
//!
//! Invariants every disk keeps:
//! - A batch is atomic: after a crash either all of it or none of it is there.
//! - Writes reach the disk in order: whatever survives a crash is a prefix of the writes.
//! - A write is durable once `sync` (or a write with `sync` set) returns; before that a crash may lose it.
//! - A snapshot file is durable once its writer finished; it replaces the disk's snapshot atomically, and
//!   durably, when kept. A snapshot file dropped before it was kept leaves nothing behind.

pub mod memory;
pub mod rocks;

use std::fmt;
use std::io;
use std::sync::Arc;
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

    /// Starts a new snapshot file, written in order. It becomes the disk's snapshot only when kept.
    fn create_snapshot(&self) -> io::Result<Box<dyn SnapshotWrite>>;

    /// The disk's snapshot, the last one kept.
    fn snapshot(&self) -> io::Result<Option<SnapshotFile>>;

    /// Bytes the disk occupies.
    fn size_bytes(&self) -> u64;

    /// Tells this disk from every other one opened in this process (see `new_disk_id`).
    fn id(&self) -> u64;

    fn syncs(&self) -> Syncs;
}

/// A point-in-time view of a disk.
pub trait Frozen {
    /// The keys of `cf` from `from` on, in order, as they were when the view was taken.
    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_>;
}

/// A snapshot file being written, in order.
pub trait SnapshotWrite: Send {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Makes what was written durable and readable.
    fn finish(self: Box<Self>) -> io::Result<SnapshotFile>;
}

/// The bytes of a finished snapshot file, as one disk keeps them.
pub trait SnapshotBytes: Send + Sync {
    /// Bytes in the file.
    fn size(&self) -> u64;

    /// Reads into `buf` from `offset`; 0 at the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Makes this file the disk's snapshot, replacing the previous one atomically; durable when this returns.
    /// Keeping a file again does nothing.
    fn keep(&self) -> io::Result<()>;

    /// Whether a read blocks the calling thread (a real file; the simulated disk's never does).
    fn reads_block(&self) -> bool;
}

/// A new disk's id: unique in this process; 0 is no disk's.
pub fn new_disk_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A finished snapshot file, read at any offset by any number of readers, never loaded whole; clones share it.
#[derive(Clone)]
pub struct SnapshotFile {
    bytes: Arc<dyn SnapshotBytes>,
    /// The id of the disk it is on (0: none).
    disk: u64,
}

impl SnapshotFile {
    pub fn new(bytes: impl SnapshotBytes + 'static, disk: u64) -> SnapshotFile {
        SnapshotFile { bytes: Arc::new(bytes), disk }
    }

    /// The id of the disk the file is on (`Disk::id`; 0 for bytes on no disk).
    pub fn disk(&self) -> u64 {
        self.disk
    }

    pub fn len(&self) -> u64 {
        self.bytes.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.bytes.read_at(offset, buf)
    }

    /// Fills `buf` from `offset`, or fails if the file ends first.
    pub fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(offset, buf)? {
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the snapshot file ends early")),
                n => {
                    offset += n as u64;
                    buf = &mut buf[n..];
                }
            }
        }
        Ok(())
    }

    pub fn keep(&self) -> io::Result<()> {
        self.bytes.keep()
    }

    pub fn reads_block(&self) -> bool {
        self.bytes.reads_block()
    }

    /// The bytes from `from` to `to`, as a reader.
    pub fn reader(&self, from: u64, to: u64) -> FileReader {
        FileReader { file: self.clone(), at: from, end: to.min(self.len()) }
    }
}

impl fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotFile({} bytes)", self.len())
    }
}

/// A stretch of a snapshot file, read in order.
pub struct FileReader {
    file: SnapshotFile,
    at: u64,
    end: u64,
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.at)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(self.at, &mut buf[..want])?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Runs disk work where it belongs: on tokio's blocking pool when it blocks (a real disk), inline otherwise
/// (the simulated disk, whose runs must stay deterministic).
pub async fn off_the_workers<T: Send + 'static>(
    blocks: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    if blocks {
        tokio::task::spawn_blocking(work).await.map_err(|e| io::Error::other(format!("disk work stopped: {e}")))
    } else {
        Ok(work())
    }
}
