//! The simulated cluster: each replica a turmoil host running the real replica code (`server::open_store`:
//! Raft, state machine, peer protocol, etcd API) on a simulated disk that outlives the host's crashes, plus a
//! stand-in for the leader's controllers that makes fenced writes exactly as the real ones do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::config::PlantedBugs;
use raftsman::cluster::server::{open_store, raft_config};
use raftsman::store::command::{Command, PutOp, RequestOp, TxnOp};
use raftsman::store::disk::memory::MemoryDisk;
use raftsman::store::disk::{Cf, Disk};
use raftsman::store::network::PeerPool;
use raftsman::store::peer::PeerService;
use raftsman::store::storage::Db;
use raftsman::store::types::{NodeId, RaftNode};
use raftsman::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::net;

pub const PEER_PORT: u16 = 2380;
pub const CLIENT_PORT: u16 = 2379;
const CLUSTER_ID: u64 = 0x5eed;

/// The key the controllers' stand-in writes, outside the clients' `chaos/` prefix.
pub const CONTROLLER_KEY: &[u8] = b"control/epoch";

/// What the simulation shares with its hosts: their disks, their live stores, and the controllers' log.
pub struct Cluster {
    pub names: Vec<String>,
    pub disks: Vec<MemoryDisk>,
    pub bugs: PlantedBugs,
    pub seed: u64,
    /// The store of every replica currently running, by index (std Mutex: lookups only).
    pub stores: Mutex<BTreeMap<usize, Store>>,
    /// Revisions of the controller writes their controllers saw acknowledged.
    pub controller_acks: Mutex<Vec<i64>>,
}

impl Cluster {
    pub fn new(replicas: usize, seed: u64, bugs: PlantedBugs, sync_latency: impl Fn(usize) -> Duration) -> Cluster {
        Cluster {
            names: (0..replicas).map(|i| format!("replica-{i}")).collect(),
            disks: (0..replicas).map(|i| MemoryDisk::new(sync_latency(i))).collect(),
            bugs,
            seed,
            stores: Mutex::default(),
            controller_acks: Mutex::default(),
        }
    }

    pub fn id(index: usize) -> NodeId {
        index as NodeId + 1
    }

    pub fn store(&self, index: usize) -> Option<Store> {
        self.stores.lock().unwrap().get(&index).cloned()
    }

    /// The Raft configuration of the simulation: the production one, with snapshots taken often enough that a
    /// replica kept down for a while has to catch up by installing one.
    fn raft_config() -> openraft::Config {
        let config = raft_config().expect("the production raft config is valid");
        openraft::Config {
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 5,
            purge_batch_size: 8,
            replication_lag_threshold: 40,
            ..config
        }
        .validate()
        .expect("the simulation's raft config is valid")
    }
}

/// One replica host, from (re)start until its host crashes.
pub async fn replica(cluster: Arc<Cluster>, index: usize) -> Result<(), Box<dyn std::error::Error>> {
    let disk = cluster.disks[index].clone();
    let fresh = disk.last(Cf::Raft)?.is_none() && disk.last(Cf::Log)?.is_none();
    let initial = fresh.then(|| {
        let node = |(i, name): (usize, &String)| {
            (Cluster::id(i), RaftNode { name: name.clone(), peer_addr: format!("{name}:{PEER_PORT}") })
        };
        cluster.names.iter().enumerate().map(node).collect()
    });
    let pool = PeerPool::new(CLUSTER_ID, Arc::new(net::dial));
    let db = Db::simulated(disk);
    let store = open_store(Cluster::raft_config(), db, pool, Cluster::id(index), initial, cluster.bugs.storage).await?;
    cluster.stores.lock().unwrap().insert(index, store.clone());

    let peer = tonic::transport::Server::builder()
        .add_service(PeerService::server(store.clone()))
        .serve_with_incoming(net::incoming(PEER_PORT).await?);
    let etcd = raftsman::apiserver::etcd::EtcdService::new(store.clone(), cluster.bugs);
    let client = tonic::transport::Server::builder()
        .add_routes(etcd.routes())
        .serve_with_incoming(net::incoming(CLIENT_PORT).await?);
    let controller_seed = cluster.seed ^ (index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    tokio::spawn(controller(store, cluster.clone(), controller_seed));
    tokio::try_join!(peer, client)?;
    Ok(())
}

/// The leader's controllers, reduced to their part in fencing: a pass starts while this replica leads and has
/// caught up (`leading_term`, as `cluster::leadership` decides), takes a while to decide, then writes with the
/// term it started under, through `Store::propose` (forwarded to the new leader if leadership moved meanwhile).
async fn controller(store: Store, cluster: Arc<Cluster>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
        let Some(term) = store.leading_term() else { continue };
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        let put = RequestOp::Put(PutOp {
            key: CONTROLLER_KEY.to_vec(),
            value: term.to_string().into_bytes(),
            ..PutOp::default()
        });
        let txn = TxnOp { compare: Vec::new(), success: vec![put], failure: Vec::new() };
        if let Ok(applied) = store.propose(Command::FencedTxn { term, txn }).await {
            if applied.outcome.is_ok() {
                cluster.controller_acks.lock().unwrap().push(applied.revision);
            }
        }
    }
}
