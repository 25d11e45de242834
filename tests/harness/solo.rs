//! A replica in the test's own process: the real store code, a single voter on the simulated disk, for tests
//! that must reach under the API (damage a record, write with a given fence).

use std::sync::Arc;
use std::time::Duration;

use raftsman::cluster::server::{open_store, raft_config};
use raftsman::store::disk::memory::MemoryDisk;
use raftsman::store::network::PeerPool;
use raftsman::store::storage::{Db, StorageBugs};
use raftsman::store::types::RaftNode;
use raftsman::store::Store;

/// A single-voter replica on `disk`, once it leads.
pub async fn replica(disk: MemoryDisk) -> Store {
    let node = RaftNode { name: "solo".into(), peer_addr: "127.0.0.1:1".into() };
    let initial = Some([(1, node)].into_iter().collect());
    let pool = PeerPool::new(7, Arc::new(|e: tonic::transport::Endpoint| e.connect_lazy()));
    let config = raft_config().expect("raft config");
    let store =
        open_store(config, Db::simulated(disk), pool, 1, initial, StorageBugs::default()).await.expect("open store");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.leading_term().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the single voter did not take the lead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
}
