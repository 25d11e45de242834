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
