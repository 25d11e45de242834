//! Disaster recovery with the real tools: `etcdctl snapshot save` from one replica of a running cluster, then a
//! new cluster of three replicas started from the file with `raftsman server --restore`: the same keys, values,
//! versions, revisions and leases, and a cluster that goes on writing. A member started without the snapshot
//! is refused by those started from it (it would otherwise diverge from them), and a damaged file is refused
//! before anything is written.

mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use raftsman::cluster::local::{Flavor, LocalCluster};
use serde_json::Value;

use harness::etcdctl::Etcdctl;
use harness::{eventually, put_retrying, TestCluster};

/// What a saved snapshot holds and what the restored cluster must hold: the `/data/` keys as etcdctl prints
/// them (key, value, create and mod revisions, version, lease), the lease and the revision at the save.
struct Saved {
    path: PathBuf,
    kvs: Vec<Value>,
    lease: i64,
    revision: i64,
    cluster_id: u64,
}

/// Starts a cluster, writes keys (overwritten, deleted, one on a lease) and saves a snapshot of it with
/// etcdctl into `dir`.
async fn save_a_snapshot(dir: &Path) -> Saved {
    let old = TestCluster::start(3).await;
    for i in 0..40 {
        put_retrying(&old.clients[i % 3], &format!("/data/k{i:02}"), &format!("v{i}"), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let etcdctl = Etcdctl::of(&old.local);
    etcdctl.ok(&["put", "/data/k00", "overwritten"]);
    etcdctl.ok(&["del", "/data/k01"]);
    let granted = etcdctl.ok(&["lease", "grant", "900"]);
    let lease = granted.split_whitespace().nth(1).expect("lease <hex id> granted");
    etcdctl.ok(&["put", "--lease", lease, "/data/leased", "x"]);
    let lease = i64::from_str_radix(lease, 16).unwrap();

    let path = dir.join("saved.db");
    let out = etcdctl.only(1).ok(&["snapshot", "save", path.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    // Nothing was written since: the snapshot holds what the cluster holds now.
    let kvs = etcdctl.only(1).get_json(&["--prefix", "/data/"]);
    let header = old.clients[1].status().await.unwrap().header.unwrap();
    assert_eq!(kvs.len(), 40);
    Saved { path, kvs, lease, revision: header.revision, cluster_id: header.cluster_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_with_etcdctl_restores_into_a_new_cluster_with_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let saved = save_a_snapshot(dir.path()).await;

    let restored = TestCluster::start_with(3, &["--restore", saved.path.to_str().unwrap()]).await;
    let etcdctl = Etcdctl::of(&restored.local);
    for replica in etcdctl.each() {
        let kvs = eventually(Duration::from_secs(10), "the restored keys on every replica", || async {
            Some(replica.get_json(&["--prefix", "/data/", "--consistency=s"])).filter(|kvs| !kvs.is_empty())
        })
        .await;
        assert_eq!(kvs, saved.kvs, "keys, values, revisions, versions and leases as saved");
    }
    // The lease still holds its key, with its TTL.
    assert_eq!(etcdctl.lease_of("/data/leased"), Some(saved.lease));
    let ttl = etcdctl.ok(&["lease", "timetolive", &format!("{:x}", saved.lease)]);
    assert!(ttl.contains("granted with TTL(900s)") && !ttl.contains("expired"), "{ttl}");

    // The new cluster is another cluster, and goes on from the saved revision.
    let status = restored.clients[0].status().await.unwrap().header.unwrap();
    assert!(status.revision >= saved.revision, "{} < {}", status.revision, saved.revision);
    etcdctl.ok(&["put", "/data/after", "new"]);
    let after = etcdctl.get_json(&["/data/after"]);
    assert!(after[0]["mod_revision"].as_i64().unwrap() > saved.revision);
    assert_ne!(status.cluster_id, saved.cluster_id);
    // A later start of a restored replica needs the file no more.
    std::fs::remove_file(&saved.path).unwrap();
    let mut restored = restored;
    restored.local.server_args.clear();
    restored.local.stop(2, Duration::from_secs(10));
    restored.local.start(2).unwrap();
    eventually(Duration::from_secs(20), "the restarted replica to serve", || async {
        let kvs = etcdctl.only(2).run(&["get", "/data/after", "--consistency=s", "--print-value-only"], None);
        (kvs.0 && kvs.1.trim() == "new").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_started_without_the_snapshot_or_with_a_damaged_one_never_joins_the_restored_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let saved = save_a_snapshot(dir.path()).await;
    let binary = env!("CARGO_BIN_EXE_raftsman").into();
    let layout = dir.path().join("restored");
    let mut cluster = LocalCluster::new(Flavor::Raftsman { binary }, &layout, 3, None).unwrap();

    // A damaged file is refused before the data dir is touched.
    let mut damaged = std::fs::read(&saved.path).unwrap();
    damaged[100] ^= 1;
    let damaged_path = dir.path().join("damaged.db");
    std::fs::write(&damaged_path, &damaged).unwrap();
    cluster.server_args = vec!["--restore".into(), damaged_path.display().to_string()];
    cluster.start(0).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cluster.is_running(0) {
        assert!(std::time::Instant::now() < deadline, "a replica started from a damaged snapshot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&cluster.members[0].log).unwrap();
    assert!(log.contains("digest"), "{log}");
    assert!(!cluster.members[0].data_dir.exists(), "nothing was written");

    // Two members start from the snapshot, the third empty.
    cluster.server_args = vec!["--restore".into(), saved.path.display().to_string()];
    cluster.start(0).unwrap();
    cluster.start(1).unwrap();
    cluster.server_args.clear();
    cluster.start(2).unwrap();
    let etcdctl = Etcdctl::of(&cluster);
    put_retrying(&cluster.etcd_client(0).unwrap(), "/data/after", "new", Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (answered, out, _) =
        etcdctl.only(2).run(&["get", "--prefix", "/data/", "--consistency=s", "--keys-only"], None);
    assert!(!answered || out.trim().is_empty(), "the empty member got the restored cluster's data: {out}");
    let log = || std::fs::read_to_string(&cluster.members[2].log).unwrap();
    eventually(Duration::from_secs(10), "the empty member to refuse the restored ones", || async {
        log().contains("the sender belongs to cluster").then_some(())
    })
    .await;
    assert!(cluster.is_running(0) && cluster.is_running(1));
    assert_eq!(etcdctl.only(1).get_json(&["--prefix", "/data/k", "--consistency=s"]).len(), saved.kvs.len() - 1);
}
