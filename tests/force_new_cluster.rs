//! Recovery from the permanent loss of a majority: two of three replicas are killed and their disks given up;
//! the survivor, restarted with `raftsman server --force-new-cluster`, becomes the only voter of a new cluster
//! with every write it had acknowledged, serves writes again, and grows with `--join`; a later start without the
//! flag keeps that cluster; a replica left behind that comes back with its old data is refused and changes
//! nothing.

mod harness;

use std::time::Duration;

use raftsman::cluster::local::Signal;

use harness::etcdctl::Etcdctl;
use harness::{eventually, put_retrying, TestCluster};

/// The members' names, as `etcdctl member list` prints them, sorted.
fn member_names(etcdctl: &Etcdctl) -> Vec<String> {
    let out = etcdctl.ok(&["member", "list"]);
    let mut names: Vec<String> =
        out.lines().filter_map(|l| l.split(", ").nth(2).map(str::to_owned)).filter(|n| !n.is_empty()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_forced_into_a_new_cluster_keeps_every_acknowledged_write_and_grows_again() {
    let mut c = TestCluster::start(3).await;
    let survivor = 0;
    for i in 0..30 {
        put_retrying(&c.clients[i % 3], &format!("/kept/k{i:02}"), &format!("v{i}"), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let before = c.clients[survivor].status().await.unwrap().header.unwrap();

    // The majority is lost: nothing can be written.
    c.local.signal(1, Signal::Kill);
    c.local.signal(2, Signal::Kill);
    let etcdctl = Etcdctl::of(&c.local).only(survivor);
    let (written, _, _) = etcdctl.run(&["--command-timeout=3s", "put", "/lost", "x"], None);
    assert!(!written, "a write was acknowledged by one replica of three");

    // The survivor, forced: the only voter of a new cluster, with everything it had.
    c.local.stop(survivor, Duration::from_secs(10));
    c.local.server_args.push("--force-new-cluster".into());
    c.local.start(survivor).unwrap();
    c.local.server_args.pop();
    put_retrying(&c.clients[survivor], "/after-the-loss", "v", Duration::from_secs(20)).await.unwrap();
    let kept = etcdctl.ok(&["get", "--prefix", "/kept/", "--print-value-only"]);
    let expected: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    assert_eq!(kept.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), expected);
    let forced = c.clients[survivor].status().await.unwrap().header.unwrap();
    assert_ne!(forced.cluster_id, before.cluster_id, "a new cluster");
    assert_eq!(member_names(&etcdctl), ["n1"]);
    assert!(c.log(survivor).contains("forced a new cluster"), "{}", c.log(survivor));

    // It grows again with --join, and a restart without the flag keeps that cluster.
    let joined = c.local.add_member(survivor).unwrap();
    c.local.start(joined).unwrap();
    c.clients.push(c.local.etcd_client(joined).unwrap());
    eventually(Duration::from_secs(30), "two voters", || async {
        let list = etcdctl.ok(&["member", "list", "-w", "json"]);
        let voters = list.matches("\"name\"").count() - list.matches("\"isLearner\":true").count();
        (voters == 2).then_some(())
    })
    .await;
    c.local.stop(survivor, Duration::from_secs(10));
    c.local.start(survivor).unwrap();
    put_retrying(&c.clients[survivor], "/after-the-restart", "v", Duration::from_secs(20)).await.unwrap();
    let restarted = c.clients[survivor].status().await.unwrap().header.unwrap();
    assert_eq!(restarted.cluster_id, forced.cluster_id, "not forced again");
    assert_eq!(member_names(&etcdctl), vec!["n1".to_owned(), c.local.members[joined].name.clone()]);

    // A replica left behind comes back with its old data: the new cluster refuses it, and goes on as it was.
    let term = c.clients[survivor].status().await.unwrap().raft_term;
    c.local.start(1).unwrap();
    eventually(Duration::from_secs(20), "the old member to be refused", || async {
        c.log(survivor).contains("the sender belongs to cluster").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    put_retrying(&c.clients[joined], "/still-writing", "v", Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.clients[survivor].status().await.unwrap().raft_term, term, "no election");
    let (answered, out, _) =
        Etcdctl::of(&c.local).only(1).run(&["get", "/after-the-loss", "--consistency=s", "--print-value-only"], None);
    assert!(!answered || out.trim().is_empty(), "the old member got the new cluster's data: {out}");
}
