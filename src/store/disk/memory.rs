//! The simulated disk of the chaos simulation: column families in memory, with durability modelled the way
//! a write-ahead log behaves. Every batch is applied at once (reads see it) and queued as unsynced; `sync`
//! makes the queue durable; `crash` keeps the durable state plus only a prefix of the unsynced batches (the
//! simulation chooses how long, from its seed), which is what a machine crash leaves of an unsynced log.
//!
//! The simulated host owns the disk across restarts: the simulation keeps one `MemoryDisk` per host, crashes it
//! when it crashes the host, and reopens the replica on it.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Batch, Cf, Disk, Frozen, Op, Pair, Scan, SnapshotBytes, SnapshotFile, SnapshotWrite, Syncs};

type Families = BTreeMap<Cf, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Default)]
struct State {
    /// What reads see: durable plus every unsynced batch.
    live: Families,
    /// What survives a crash.
    durable: Families,
    /// Batches written since the last sync, in order.
    unsynced: Vec<Batch>,
    /// The kept snapshot: durable as soon as kept.
    snapshot: Option<Arc<Vec<u8>>>,
    /// Faults switched on by a test: what fails with an I/O error.
    failing: Failing,
}

/// The I/O a test makes fail, to see what the layers above do with a broken disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failing {
    pub reads: bool,
    pub writes: bool,
}

fn broken(what: &str) -> io::Error {
    io::Error::other(format!("simulated disk fault: {what} failed"))
}

fn apply(families: &mut Families, batch: &Batch) {
    for op in &batch.ops {
        match op {
            Op::Put { cf, key, value } => {
                families.entry(*cf).or_default().insert(key.clone(), value.clone());
            }
            Op::Delete { cf, key } => {
                families.entry(*cf).or_default().remove(key);
            }
            Op::DeleteRange { cf, from, to } => {
                let keys = families.entry(*cf).or_default();
                let doomed: Vec<Vec<u8>> = keys.range(from.clone()..to.clone()).map(|(k, _)| k.clone()).collect();
                for k in doomed {
                    keys.remove(&k);
                }
            }
        }
    }
}

/// A simulated disk; clones share it.
#[derive(Clone)]
pub struct MemoryDisk {
    /// std Mutex: in-memory map work only, never held across an await.
    state: Arc<Mutex<State>>,
    sync_latency: Duration,
    id: u64,
}

impl MemoryDisk {
    /// An empty disk whose syncs take `sync_latency` of simulated time.
    pub fn new(sync_latency: Duration) -> MemoryDisk {
        MemoryDisk { state: Arc::default(), sync_latency, id: super::new_disk_id() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory disk poisoned")
    }

    /// The host crashed: everything not yet synced is lost, except the first `keep` unsynced batches (a prefix
    /// of the log that happened to reach the platter). Returns how many batches were lost.
    pub fn crash(&self, keep: usize) -> usize {
        let mut state = self.state();
        let unsynced = std::mem::take(&mut state.unsynced);
        let lost = unsynced.len().saturating_sub(keep);
        for batch in unsynced.iter().take(keep) {
            apply(&mut state.durable, batch);
        }
        state.live = state.durable.clone();
        lost
    }

    /// Makes reads (`get`, `scan`, `last`) and writes fail from now on, as `failing` says, until changed back.
    pub fn set_failing(&self, failing: Failing) {
        self.state().failing = failing;
    }

    /// Batches written and not yet synced.
    pub fn unsynced(&self) -> usize {
        self.state().unsynced.len()
    }

    /// Every key of `cf` as reads see it now.
    pub fn dump(&self, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.state().live.get(&cf).map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }
}

/// The keys of one family from `from` on, copied (the simulation's data is small).
fn scan_copy(families: &Families, cf: Cf, from: &[u8]) -> Vec<Pair> {
    families
        .get(&cf)
        .map(|m| {
            m.range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
                .map(|(k, v)| (k.clone().into_boxed_slice(), v.clone().into_boxed_slice()))
                .collect()
        })
        .unwrap_or_default()
}

impl Disk for MemoryDisk {
    fn get(&self, cf: Cf, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let state = self.state();
        if state.failing.reads {
            return Err(broken("a read"));
        }
        Ok(state.live.get(&cf).and_then(|m| m.get(key)).cloned())
    }

    fn write(&self, batch: Batch, sync: bool) -> io::Result<()> {
        let mut state = self.state();
        if state.failing.writes {
            return Err(broken("a write"));
        }
        apply(&mut state.live, &batch);
        state.unsynced.push(batch);
        if sync {
            drop(state);
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.state();
        let unsynced = std::mem::take(&mut state.unsynced);
        for batch in &unsynced {
            apply(&mut state.durable, batch);
        }
        Ok(())
    }

    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_> {
        let state = self.state();
        if state.failing.reads {
            return Box::new(std::iter::once(Err(broken("a scan"))));
        }
        Box::new(scan_copy(&state.live, cf, from).into_iter().map(Ok))
    }

    fn last(&self, cf: Cf) -> io::Result<Option<Pair>> {
        let state = self.state();
        if state.failing.reads {
            return Err(broken("a read"));
        }
        let last = state.live.get(&cf).and_then(|m| m.last_key_value());
        Ok(last.map(|(k, v)| (k.clone().into_boxed_slice(), v.clone().into_boxed_slice())))
    }

    fn frozen(&self) -> Box<dyn Frozen + '_> {
        Box::new(MemoryFrozen(self.state().live.clone()))
    }

    fn create_snapshot(&self) -> io::Result<Box<dyn SnapshotWrite>> {
        if self.state().failing.writes {
            return Err(broken("a snapshot write"));
        }
        Ok(Box::new(MemorySnapshotWrite { bytes: Vec::new(), disk: self.state.clone(), id: self.id }))
    }

    fn snapshot(&self) -> io::Result<Option<SnapshotFile>> {
        let kept = self.state().snapshot.clone();
        Ok(kept.map(|bytes| SnapshotFile::new(MemorySnapshot { bytes, disk: Some(self.state.clone()) }, self.id)))
    }

    fn size_bytes(&self) -> u64 {
        let state = self.state();
        state.live.values().flat_map(|m| m.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    fn syncs(&self) -> Syncs {
        Syncs::Simulated { latency: self.sync_latency }
    }

    fn id(&self) -> u64 {
        self.id
    }
}

struct MemorySnapshotWrite {
    bytes: Vec<u8>,
    disk: Arc<Mutex<State>>,
    id: u64,
}

impl SnapshotWrite for MemorySnapshotWrite {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile::new(MemorySnapshot { bytes: Arc::new(self.bytes), disk: Some(self.disk) }, self.id))
    }
}

/// A snapshot file in memory: on a simulated disk, or on none (bytes from elsewhere, to be checked).
pub struct MemorySnapshot {
    bytes: Arc<Vec<u8>>,
    disk: Option<Arc<Mutex<State>>>,
}

impl MemorySnapshot {
    /// Bytes on no disk: they can be read, not kept.
    pub fn detached(bytes: Vec<u8>) -> MemorySnapshot {
        MemorySnapshot { bytes: Arc::new(bytes), disk: None }
    }
}

impl SnapshotBytes for MemorySnapshot {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let rest = usize::try_from(offset).ok().and_then(|at| self.bytes.get(at..)).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn keep(&self) -> io::Result<()> {
        let disk = self.disk.as_ref().ok_or_else(|| io::Error::other("these snapshot bytes are on no disk"))?;
        disk.lock().expect("memory disk poisoned").snapshot = Some(self.bytes.clone());
        Ok(())
    }

    fn reads_block(&self) -> bool {
        false
    }
}

struct MemoryFrozen(Families);

impl Frozen for MemoryFrozen {
    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_> {
        Box::new(scan_copy(&self.0, cf, from).into_iter().map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(disk: &MemoryDisk, key: &str, sync: bool) {
        let mut batch = Batch::default();
        batch.put(Cf::Log, key.as_bytes(), b"v".to_vec());
        disk.write(batch, sync).unwrap();
    }

    fn keys(disk: &MemoryDisk) -> Vec<String> {
        disk.dump(Cf::Log).into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_a_prefix_of_the_rest() {
        let disk = MemoryDisk::new(Duration::ZERO);
        put(&disk, "a", false);
        disk.sync().unwrap();
        put(&disk, "b", false);
        put(&disk, "c", false);
        put(&disk, "d", false);
        assert_eq!(keys(&disk), ["a", "b", "c", "d"], "reads see unsynced writes");
        assert_eq!(disk.crash(1), 2);
        assert_eq!(keys(&disk), ["a", "b"]);
        assert_eq!(disk.crash(0), 0, "nothing was left unsynced");
        assert_eq!(keys(&disk), ["a", "b"]);
    }

    #[test]
    fn a_synced_write_survives_and_range_deletes_apply_in_order() {
        let disk = MemoryDisk::new(Duration::ZERO);
        put(&disk, "a", false);
        put(&disk, "b", true);
        let mut batch = Batch::default();
        batch.delete_range(Cf::Log, b"a".to_vec(), b"b".to_vec());
        disk.write(batch, false).unwrap();
        assert_eq!(keys(&disk), ["b"]);
        disk.crash(0);
        assert_eq!(keys(&disk), ["a", "b"], "the unsynced delete is lost, the synced writes are not");
        let frozen = disk.frozen();
        put(&disk, "c", false);
        assert_eq!(frozen.scan(Cf::Log, b"").count(), 2, "a frozen view does not see later writes");
    }
}
