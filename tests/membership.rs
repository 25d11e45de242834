//! Membership changes on real replicas under a client load: a cluster of three grows to five (one replica with
//! `raftsman server --join`, one added with `etcdctl member add --learner` and then started with `--join`), each
//! new replica a learner that gets the cluster's state as a snapshot (the log behind it is purged), promoted to
//! voter once caught up; leadership moves to a joined replica with `etcdctl move-leader`; two of the original
//! replicas leave with `etcdctl member remove`; no acknowledged write is lost. A remove that would leave the
//! cluster without a quorum of running voters is refused. Changes asked for at once are made one after another.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use harness::etcdctl::Etcdctl;
use harness::{eventually, put_retrying, TestCluster};

/// The members as `etcdctl member list -w json` prints them.
fn members(etcdctl: &Etcdctl) -> Vec<Value> {
    let out = etcdctl.ok(&["member", "list", "-w", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    list["members"].as_array().cloned().unwrap_or_default()
}

/// The names of the voters and of the learners, sorted.
fn voters_and_learners(etcdctl: &Etcdctl) -> (Vec<String>, Vec<String>) {
    let (mut voters, mut learners) = (Vec::new(), Vec::new());
    for m in members(etcdctl) {
        let name = m["name"].as_str().unwrap_or_default().to_owned();
        match m["isLearner"].as_bool().unwrap_or(false) {
            true => learners.push(name),
            false => voters.push(name),
        }
    }
    voters.sort();
    learners.sort();
    (voters, learners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grows_to_five_and_shrinks_back_to_three_under_load_losing_nothing() {
    // Snapshots every 200 entries, keeping 20 behind: the load purges the log before the new replicas join, so
    // they get the cluster's state as a snapshot, then the log.
    let mut c = TestCluster::start_with(3, &["--snapshot-count", "200", "--snapshot-catchup-entries", "20"]).await;

    // The load: keys written one after another through the replica that stays, each retried until acknowledged
    // or given up (its outcome then unknown, so it is not counted).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (c.clients[2].clone(), stop.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("load/{i:05}");
                if put_retrying(&client, &key, "v", Duration::from_secs(10)).await.is_ok() {
                    acknowledged.push(key);
                }
            }
            acknowledged
        })
    };

    eventually(Duration::from_secs(30), "the log purged behind a snapshot", || async {
        let status = c.clients[0].status().await.ok()?;
        (status.raft_applied_index > 400).then_some(())
    })
    .await;

    // Grow: n4 joins through n1; n5 is added by address with etcdctl, then joins through n2.
    let n4 = c.local.add_member(0).unwrap();
    c.local.start(n4).unwrap();
    let n5 = c.local.add_member(1).unwrap();
    let n5_peer = format!("http://{}", c.local.members[n5].peer_addr);
    let added = Etcdctl::of(&c.local).only(2).ok(&["member", "add", "n5", "--peer-urls", &n5_peer, "--learner"]);
    assert!(added.contains("added to cluster"), "{added}");
    c.local.start(n5).unwrap();
    c.clients.push(c.local.etcd_client(n4).unwrap());
    c.clients.push(c.local.etcd_client(n5).unwrap());
    let all = Etcdctl::of(&c.local);
    let five: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
    eventually(Duration::from_secs(60), "five voters", || async {
        (voters_and_learners(&all.only(2)) == (five.clone(), Vec::new())).then_some(())
    })
    .await;
    for i in [n4, n5] {
        let log = c.log(i);
        assert!(log.contains("joined the cluster as a learner"), "{log}");
        assert!(log.contains("installed a snapshot"), "{log}");
        eventually(Duration::from_secs(20), "the joined replica to hold the cluster's keys", || async {
            let r = c.clients[i].get_prefix(b"load/", true).await.ok()?;
            (r.count > 10).then_some(())
        })
        .await;
    }

    // Leadership moves to a joined replica.
    let n4_id = c.clients[n4].status().await.unwrap().header.unwrap().member_id;
    all.ok(&["move-leader", &format!("{n4_id:x}")]);
    assert_eq!(c.leader().await, n4);

    // Shrink: n1 and n2 leave, one at a time, through the replicas that stay.
    for i in [0, 1] {
        let id = c.clients[i].status().await.unwrap().header.unwrap().member_id;
        let removed = all.only(n4).ok(&["member", "remove", &format!("{id:x}")]);
        assert!(removed.contains("removed from cluster"), "{removed}");
        c.local.stop(i, Duration::from_secs(10));
    }
    let remaining = Etcdctl::of(&c.local).only(2);
    assert_eq!(voters_and_learners(&remaining), (vec!["n3".into(), "n4".into(), "n5".into()], Vec::new()));
    put_retrying(&c.clients[n5], "after-the-shrink", "v", Duration::from_secs(10)).await.unwrap();

    // Nothing acknowledged was lost: every key is on every replica that stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() > 50, "the load ran: {} writes", acknowledged.len());
    for i in [2, n4, n5] {
        let read = eventually(Duration::from_secs(20), "every acknowledged key", || async {
            let r = c.clients[i].get_prefix(b"load/", true).await.ok()?;
            (r.count as usize >= acknowledged.len()).then_some(r)
        })
        .await;
        let keys: std::collections::BTreeSet<Vec<u8>> = read.kvs.into_iter().map(|kv| kv.key).collect();
        for key in &acknowledged {
            assert!(keys.contains(key.as_bytes()), "replica {i} lost {key}");
        }
    }

    // With n5 down (and unheard for longer than the leader counts a replica as running), removing another
    // voter would leave one running voter out of two: refused.
    c.local.stop(n5, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(2 * raftsman::limits::ELECTION_TIMEOUT_MS_MAX)).await;
    let leader = c.leader().await;
    let other = [2, n4].into_iter().find(|i| *i != leader).unwrap();
    let other_id = c.clients[other].status().await.unwrap().header.unwrap().member_id;
    let (removed, _, err) = remaining.run(&["member", "remove", &format!("{other_id:x}")], None);
    assert!(!removed && err.contains("not enough started members"), "{err}");
    assert_eq!(voters_and_learners(&remaining).0.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_asked_at_once_through_every_replica_are_all_made_one_after_another() {
    let c = TestCluster::start(3).await;
    let ports = raftsman::cluster::local::free_ports(3).unwrap();

    // Three learners added by address at the same moment, one through each replica (two of them forwarded).
    let added: Vec<String> = std::thread::scope(|s| {
        let adds: Vec<_> = (0..3)
            .map(|i| {
                let (etcdctl, name, url) =
                    (Etcdctl::of(&c.local).only(i), format!("l{i}"), format!("http://127.0.0.1:{}", ports[i]));
                s.spawn(move || etcdctl.ok(&["member", "add", &name, "--peer-urls", &url, "--learner"]))
            })
            .collect();
        adds.into_iter().map(|a| a.join().unwrap()).collect()
    });
    for out in &added {
        assert!(out.contains("added to cluster"), "{out}");
    }
    let all = Etcdctl::of(&c.local);
    let voters: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
    // Members added by address have no name until they start (as etcd lists them): their addresses tell them.
    let mut learners: Vec<String> = members(&all.only(2))
        .iter()
        .filter(|m| m["isLearner"].as_bool() == Some(true))
        .map(|m| m["peerURLs"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    learners.sort();
    let mut asked: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    asked.sort();
    assert_eq!(learners, asked);
    assert_eq!(voters_and_learners(&all.only(2)).0, voters);

    // And removed the same way.
    let ids: Vec<String> = members(&all.only(0))
        .iter()
        .filter(|m| m["isLearner"].as_bool() == Some(true))
        .map(|m| format!("{:x}", m["ID"].as_u64().unwrap()))
        .collect();
    assert_eq!(ids.len(), 3);
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let etcdctl = Etcdctl::of(&c.local).only(i);
            s.spawn(move || {
                let out = etcdctl.ok(&["member", "remove", id]);
                assert!(out.contains("removed from cluster"), "{out}");
            });
        }
    });
    assert_eq!(voters_and_learners(&all.only(1)), (voters, Vec::new()));
}
