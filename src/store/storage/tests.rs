//! openraft's storage test suite against the log store and state machine, on RocksDB and on the simulated disk.

use openraft::entry::RaftEntry;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use super::*;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("db"), &dir.path().join("snap"), true).expect("open db");
        let shared = SmShared::load(db.clone(), StorageBugs::default()).expect("load state machine");
        Ok((dir, LogStore::new(db, StorageBugs::default()), StateMachine { shared }))
    }
}

struct SimulatedBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for SimulatedBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<TypeConfig>> {
        let db = Db::simulated(MemoryDisk::new(std::time::Duration::from_millis(1)));
        let shared = SmShared::load(db.clone(), StorageBugs::default()).expect("load state machine");
        Ok(((), LogStore::new(db, StorageBugs::default()), StateMachine { shared }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("openraft storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_on_the_simulated_disk() {
    Suite::test_all(SimulatedBuilder).await.expect("openraft storage suite");
}

fn fenced_put(term: u64, key: &str) -> Command {
    use crate::store::command::{PutOp, RequestOp, TxnOp};
    let put = RequestOp::Put(PutOp { key: key.as_bytes().to_vec(), value: b"v".to_vec(), ..PutOp::default() });
    Command::FencedTxn { term, txn: TxnOp { compare: Vec::new(), success: vec![put], failure: Vec::new() } }
}

#[test]
fn fenced_transactions_apply_only_in_their_own_term() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(&dir.path().join("db"), &dir.path().join("snap"), true).expect("open db");
    let shared = SmShared::load(db, StorageBugs::default()).expect("load state machine");
    let entry = |term: u64, index: u64, cmd: Command| {
        Entry::new_normal(openraft::testing::log_id::<TypeConfig>(term, 1, index), cmd)
    };
    // Written by the leader of term 2 and committed in term 2: applied.
    let applied = shared.apply_batch(&[entry(2, 1, fenced_put(2, "a"))]).expect("apply");
    assert!(matches!(applied[0].outcome, Ok(Outcome::Response(_))), "{applied:?}");
    // Written by the leader of term 2 but committed by the leader of term 3: refused, nothing written.
    let applied = shared.apply_batch(&[entry(3, 2, fenced_put(2, "b"))]).expect("apply");
    assert_eq!(applied[0].outcome, Err(ApplyError::Fenced(2)));
    let op = crate::store::command::RangeOp {
        range: crate::store::command::KeyRange { key: b"a".to_vec(), end: b"c".to_vec() },
        ..Default::default()
    };
    let keys: Vec<Vec<u8>> = shared.range(&op).expect("range").1.kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, vec![b"a".to_vec()]);
}

fn put(key: &str) -> Command {
    use crate::store::command::PutOp;
    Command::Put(PutOp { key: key.as_bytes().to_vec(), value: b"v".to_vec(), prev_kv: true, ..PutOp::default() })
}

fn keys_in(shared: &SmShared) -> Result<Vec<Vec<u8>>, ApplyError> {
    let op = crate::store::command::RangeOp {
        range: crate::store::command::KeyRange { key: b"a".to_vec(), end: b"z".to_vec() },
        ..Default::default()
    };
    Ok(shared.range(&op)?.1.kvs.into_iter().map(|kv| kv.key).collect())
}

/// A batch whose write fails, or whose command fails on a storage read halfway, leaves nothing of itself
/// visible: the state is what the disk holds, or, when the disk cannot even be read, reads refuse.
#[test]
fn a_storage_error_in_the_middle_of_a_batch_leaves_none_of_it_visible() {
    use crate::store::disk::memory::Failing;
    let disk = MemoryDisk::new(std::time::Duration::ZERO);
    let shared = SmShared::load(Db::simulated(disk.clone()), StorageBugs::default()).expect("load state machine");
    let entry = |index: u64, cmd: Command| Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), cmd);
    shared.apply_batch(&[entry(1, put("a"))]).expect("apply");

    // The batch's write fails: the puts applied in memory before it are rolled back.
    disk.set_failing(Failing { reads: false, writes: true });
    let failed = shared.apply_batch(&[entry(2, put("b")), entry(3, put("c"))]);
    assert!(failed.is_err(), "the write failed");
    assert_eq!(keys_in(&shared), Ok(vec![b"a".to_vec()]));
    assert_eq!(shared.read().mvcc.revision(), 1, "the revision is the persisted one");
    assert_eq!(shared.read().applied.map(|l| l.index), Some(1));

    // A read fails inside the second command (its previous value): the first is not left visible, and with
    // the disk unreadable the state machine refuses reads rather than show a half-applied state.
    disk.set_failing(Failing { reads: true, writes: false });
    let failed = shared.apply_batch(&[entry(2, put("d")), entry(3, put("a"))]);
    assert!(failed.is_err(), "the read failed");
    assert!(keys_in(&shared).is_err(), "reads refuse");
    disk.set_failing(Failing::default());
    let reloaded = SmShared::load(Db::simulated(disk), StorageBugs::default()).expect("load state machine");
    assert_eq!(keys_in(&reloaded), Ok(vec![b"a".to_vec()]), "a restart finds only what was persisted");
}

/// A watcher catching up from disk on a history it selects nothing of reads it in bounded steps, each ending
/// between two revisions, instead of scanning the whole history in one pull.
#[test]
fn a_watch_catching_up_from_disk_scans_a_bounded_stretch_per_pull() {
    use crate::store::command::KeyRange;
    use crate::store::watch::{Pull, WatchFilter};
    let shared = SmShared::load(Db::simulated(MemoryDisk::new(std::time::Duration::ZERO)), StorageBugs::default())
        .expect("load state machine");
    let writes = limits::WATCH_RING_REVISIONS_MAX + 2 * limits::WATCH_CATCH_UP_RECORDS_PER_PULL_MAX;
    let mut index = 0;
    for chunk in (0..writes).collect::<Vec<_>>().chunks(500) {
        let entries: Vec<Entry> = chunk
            .iter()
            .map(|_| {
                index += 1;
                Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), put("busy"))
            })
            .collect();
        shared.apply_batch(&entries).expect("apply");
    }
    let current = shared.read().mvcc.revision();
    let quiet = WatchFilter {
        range: KeyRange { key: b"quiet".to_vec(), end: Vec::new() },
        prev_kv: false,
        no_put: false,
        no_delete: false,
    };
    let mut from = 1;
    let mut pulls = 0;
    while from <= current {
        let Ok(Pull::Events { events, next }) = shared.pull(from, &quiet) else { panic!("pull from {from}") };
        assert!(events.is_empty());
        assert!(next > from, "every pull moves on");
        assert!(next - from <= limits::WATCH_CATCH_UP_RECORDS_PER_PULL_MAX as i64, "{from} to {next} in one pull");
        (from, pulls) = (next, pulls + 1);
    }
    assert_eq!(from, current + 1);
    assert!(pulls >= 3, "{pulls} pulls");
}

/// Another thread takes the state machine's lock and keeps it for a second; returns once it holds it.
fn hold_the_state_lock_for_a_second(shared: &Arc<SmShared>) -> std::thread::JoinHandle<()> {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let shared = shared.clone();
    let holder = std::thread::spawn(move || {
        let _state = shared.state.write().unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(1));
    });
    locked_rx.recv().unwrap();
    holder
}

/// A watcher catching up from RocksDB reads the history on a blocking thread: the runtime's workers go on
/// serving while the read waits (here, on a state lock another thread holds for a second).
#[test]
fn a_watch_catching_up_from_disk_leaves_the_async_workers_free() {
    use crate::store::command::KeyRange;
    use crate::store::watch::{WatchFilter, Watcher};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(&dir.path().join("db"), &dir.path().join("snap"), true).expect("open db");
    let shared = SmShared::load(db, StorageBugs::default()).expect("load state machine");
    let writes = limits::WATCH_RING_REVISIONS_MAX as u64 + 100;
    let entries: Vec<Entry> = (1..=writes)
        .map(|index| Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), put("k")))
        .collect();
    for chunk in entries.chunks(1000) {
        shared.apply_batch(chunk).expect("apply");
    }
    let all = WatchFilter {
        range: KeyRange { key: b"k".to_vec(), end: Vec::new() },
        prev_kv: false,
        no_put: false,
        no_delete: false,
    };
    let mut watcher = Watcher::new(shared.clone(), all, 1);

    let holder = hold_the_state_lock_for_a_second(&shared);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (waited, first) = runtime.block_on(async move {
        let catch_up = tokio::spawn(async move { watcher.next_batch().await });
        let started = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let waited = started.elapsed();
        (waited, catch_up.await.unwrap().expect("events"))
    });
    holder.join().unwrap();
    assert!(waited < std::time::Duration::from_millis(500), "the only worker was blocked for {waited:?}");
    assert_eq!(first.events[0].kv.mod_revision, 1, "the catch-up starts where it was asked to");
}

/// A read of a range of keys from RocksDB runs on a blocking thread: the runtime's workers go on serving while
/// it waits (here, on a state lock another thread holds for a second).
#[test]
fn a_range_read_from_disk_leaves_the_async_workers_free() {
    use crate::store::command::{KeyRange, RangeOp};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(&dir.path().join("db"), &dir.path().join("snap"), true).expect("open db");
    let shared = SmShared::load(db, StorageBugs::default()).expect("load state machine");
    let entry = |index: u64, cmd: Command| Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), cmd);
    shared.apply_batch(&[entry(1, put("a")), entry(2, put("b"))]).expect("apply");

    let holder = hold_the_state_lock_for_a_second(&shared);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (waited, keys) = runtime.block_on(async move {
        let op = RangeOp { range: KeyRange { key: b"a".to_vec(), end: b"z".to_vec() }, ..RangeOp::default() };
        let read = tokio::spawn(async move { crate::store::read_range(&shared, &op).await });
        let started = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let waited = started.elapsed();
        let (_, result) = read.await.unwrap().expect("range");
        (waited, result.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>())
    });
    holder.join().unwrap();
    assert!(waited < std::time::Duration::from_millis(500), "the only worker was blocked for {waited:?}");
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
}

/// An install is synced before it returns. One interrupted by a crash leaves its marker: the state machine
/// then loads empty, and openraft, finding the disk's snapshot newer than what is applied, installs it again.
#[tokio::test]
async fn a_snapshot_install_is_synced_and_one_interrupted_is_done_again_at_start() {
    let entry = |index: u64, cmd: Command| Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), cmd);
    let leader = SmShared::load(Db::simulated(MemoryDisk::new(std::time::Duration::ZERO)), StorageBugs::default())
        .expect("load state machine");
    let nodes: BTreeMap<u64, RaftNode> = [(1, RaftNode::default())].into();
    let voters = openraft::Membership::new(vec![[1].into()], nodes).expect("a valid membership");
    let membership =
        Entry { log_id: openraft::testing::log_id::<TypeConfig>(1, 1, 1), payload: EntryPayload::Membership(voters) };
    leader.apply_batch(&[membership, entry(2, put("a")), entry(3, put("b")), entry(4, put("c"))]).expect("apply");
    let snapshot = leader.build_snapshot().expect("build");

    let disk = MemoryDisk::new(std::time::Duration::ZERO);
    let follower = SmShared::load(Db::simulated(disk.clone()), StorageBugs::default()).expect("load state machine");
    follower.apply_batch(&[entry(1, put("a"))]).expect("apply");
    // As a follower receives it: written to a file of its own disk.
    let mut received = follower.receive_snapshot(&snapshot.meta).expect("create");
    received.write(&snapshot.snapshot.read(0, usize::MAX).expect("read")).expect("write");
    let received = received.finish().expect("finish");
    follower.install_snapshot(&snapshot.meta, &received).expect("install");
    let all = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    assert_eq!(keys_in(&follower), Ok(all.clone()));
    assert_eq!(disk.unsynced(), 0, "the install is durable when it returns");

    // A crash in the middle of an install: the marker is there, the history only in part.
    let mut batch = Batch::default();
    batch.put(Cf::Sm, KEY_INSTALLING, encode(&snapshot.meta.last_log_id));
    batch.delete(Cf::History, Revision { main: 3, sub: 0 }.to_bytes());
    disk.write(batch, true).expect("write");
    let restarted = SmShared::load(Db::simulated(disk), StorageBugs::default()).expect("load state machine");
    assert_eq!(restarted.read().applied, None, "a half-installed state is not loaded");
    assert_eq!(keys_in(&restarted), Ok(vec![]));

    let mut sm = StateMachine { shared: restarted };
    let kept = sm.get_current_snapshot().await.expect("read").expect("the disk keeps the snapshot");
    assert_eq!(kept.meta, snapshot.meta);
    sm.install_snapshot(&kept.meta, kept.snapshot).await.expect("install again");
    assert_eq!(keys_in(&sm.shared), Ok(all));
    assert_eq!(sm.shared.read().applied, snapshot.meta.last_log_id);
}
