//! Real replicas for the chaos tests: three `raftsman server` processes on loopback, and which of them leads, as
//! the replicas themselves report it.

use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::local::{Flavor, LocalCluster};

/// A running three-replica cluster and a client per replica; its data lives as long as it does.
pub struct Replicas {
    pub local: LocalCluster,
    pub clients: Vec<EtcdClient>,
    /// Removed when dropped: keep it bound while the replicas run.
    pub dir: tempfile::TempDir,
}

/// Starts three replicas, with `planted_bug` switched on in each if given, and waits for a leader.
pub async fn start(planted_bug: Option<&str>) -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_raftsman").into();
    let mut local = LocalCluster::new(Flavor::Raftsman { binary }, dir.path(), 3, None).unwrap();
    if let Some(bug) = planted_bug {
        local.server_args = vec!["--chaos-plant-bug".into(), bug.into()];
    }
    local.start_all().unwrap();
    let clients: Vec<EtcdClient> = local.etcd_clients().unwrap();
    wait(&clients, None).await;
    Replicas { local, clients, dir }
}

/// The index of the replica the others name as leader, asking all but `skip` once; None while there is none.
pub async fn current(clients: &[EtcdClient], skip: Option<usize>) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader = None;
    for (i, c) in clients.iter().enumerate() {
        let status = match skip == Some(i) {
            true => None,
            false => tokio::time::timeout(Duration::from_millis(300), c.status()).await.ok().and_then(Result::ok),
        };
        ids.push(status.as_ref().and_then(|s| s.header.as_ref()).map(|h| h.member_id));
        leader = leader.or(status.map(|s| s.leader).filter(|l| *l != 0));
    }
    ids.iter().position(|id| leader.is_some() && *id == leader)
}

/// Waits up to 20 s for a leader among the replicas other than `skip`.
pub async fn wait(clients: &[EtcdClient], skip: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = current(clients, skip).await {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
