//! Real `etcdctl` (Debian's etcd-client, v3.4) against a three-replica cluster, checked against the state it
//! leaves, and bad input and faults: clear errors, nothing changed, the replica keeps serving.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::etcdctl::Etcdctl;
use harness::{eventually, put_retrying, TestCluster};
use raftsman::cluster::local::Signal;
use raftsman::proto::etcd as pb;

/// Runs a long-running etcdctl command (watch) for `duration` and returns what it printed.
fn etcdctl_for(etcd: &Etcdctl, args: &[&str], duration: Duration) -> String {
    let child = Command::new("timeout")
        .arg("--signal=TERM")
        .arg(format!("{}s", duration.as_secs()))
        .arg("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(etcd.connection())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl is installed (Debian package etcd-client)");
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_against_any_replica_and_all_of_them() {
    let c = TestCluster::start(3).await;
    let all = Etcdctl::of(&c.local);
    let leader = c.leader().await;
    let follower = all.only((leader + 1) % 3);

    // put / get / prefix / serializable, through a follower.
    assert_eq!(follower.ok(&["put", "app/a", "1"]).trim(), "OK");
    assert_eq!(all.ok(&["put", "app/b", "2"]).trim(), "OK");
    assert_eq!(follower.ok(&["get", "app/", "--prefix"]), "app/a\n1\napp/b\n2\n");
    assert_eq!(follower.ok(&["get", "app/a", "--consistency=s", "--print-value-only"]).trim(), "1");
    let rev_of_a = all.ok(&["get", "app/a", "-w", "fields"]);
    let rev_of_a: i64 = rev_of_a
        .lines()
        .find_map(|l| l.strip_prefix("\"ModRevision\" : "))
        .expect("fields output has ModRevision")
        .parse()
        .unwrap();
    assert_eq!(all.ok(&["put", "app/a", "3"]).trim(), "OK");
    assert_eq!(all.ok(&["get", "app/a", &format!("--rev={rev_of_a}"), "--print-value-only"]).trim(), "1");

    // txn: compare on value, then the success branch.
    let (success, out, err) =
        follower.run(&["txn"], Some("value(\"app/a\") = \"3\"\n\nput app/c 4\n\nput app/c 5\n\n"));
    assert!(success, "{err}");
    assert!(out.starts_with("SUCCESS"), "{out}");
    assert_eq!(all.ok(&["get", "app/c", "--print-value-only"]).trim(), "4");

    // del, then watch replays history from a revision.
    assert_eq!(all.ok(&["del", "app/b"]).trim(), "1");
    let watched =
        etcdctl_for(&follower, &["watch", "app/", "--prefix", &format!("--rev={rev_of_a}")], Duration::from_secs(2));
    assert!(watched.starts_with("PUT\napp/a\n1\n"), "{watched}");
    assert!(watched.contains("DELETE\napp/b\n"), "{watched}");

    // Leases: grant, attach, time-to-live with keys, keep-alive, revoke deletes the key.
    let granted = follower.ok(&["lease", "grant", "60"]);
    let lease = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert_eq!(follower.ok(&["put", "leased", "x", &format!("--lease={lease}")]).trim(), "OK");
    let ttl = follower.ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let kept = follower.ok(&["lease", "keep-alive", "--once", &lease]);
    assert!(kept.contains("keepalived with TTL(60)"), "{kept}");
    assert!(all.ok(&["lease", "list"]).contains(&lease));
    follower.ok(&["lease", "revoke", &lease]);
    assert_eq!(all.ok(&["get", "leased"]), "");

    // Compaction: old revisions become unreadable.
    let compact_to = all.ok(&["get", "app/c", "-w", "fields"]);
    let compact_to: i64 = compact_to.lines().find_map(|l| l.strip_prefix("\"Revision\" : ")).unwrap().parse().unwrap();
    assert!(all.ok(&["compaction", &compact_to.to_string()]).contains("compacted revision"));
    let (success, _, err) = all.run(&["get", "app/a", &format!("--rev={rev_of_a}")], None);
    assert!(!success && err.contains("compacted"), "{err}");

    // member list and endpoint status show three members and exactly one leader.
    let members = all.ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(members.lines().all(|l| l.contains("started")), "{members}");
    let status = all.ok(&["endpoint", "status"]);
    assert_eq!(status.lines().filter(|l| l.contains(", true, false,")).count(), 1, "one leader: {status}");
}

/// The etcd client port serves TLS and takes only clients with a certificate of the etcd authority: without
/// TLS, without a certificate, with the cluster authority's admin certificate or with a replica's peer
/// certificate, etcdctl is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_client_port_takes_only_certificates_of_the_etcd_authority() {
    use raftsman::security::{peer, pki};
    let c = TestCluster::start(1).await;
    let etcd = Etcdctl::of(&c.local);
    assert_eq!(etcd.ok(&["put", "k", "by-the-etcd-client"]).trim(), "OK");

    let dir = tempfile::tempdir().unwrap();
    let admin = c.local.authority().unwrap().issue("admin", &["system:masters"], &[], pki::Usage::Client).unwrap();
    pki::save(dir.path(), "admin", &admin).unwrap();
    let files = c.local.etcd_client_files();
    let flag = |name: &str, path: &std::path::Path| format!("--{name}={}", path.display());
    let cacert = flag("cacert", &files.trusted_ca);
    let shown = |(cert, key): (std::path::PathBuf, std::path::PathBuf)| {
        vec![cacert.clone(), flag("cert", &cert), flag("key", &key)]
    };
    let refused = [
        ("no TLS", vec![]),
        ("no certificate", vec![cacert.clone()]),
        ("the cluster authority's admin", shown(pki::files(dir.path(), "admin"))),
        ("a replica's peer certificate", shown(pki::files(&c.local.pki, &peer::files("n1")))),
    ];
    for (what, tls) in refused {
        let args = ["put", "k", what, "--dial-timeout=1s", "--command-timeout=2s"];
        let (success, out, err) = etcd.with_credentials(&tls).run(&args, None);
        assert!(!success, "{what}: etcdctl was served: {out}");
        assert!(!err.is_empty(), "{what}: no error printed");
    }
    assert_eq!(
        etcd.ok(&["get", "k", "--print-value-only"]).trim(),
        "by-the-etcd-client",
        "nothing refused was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let c = TestCluster::start(3).await;
    let client = &c.clients[0];
    let before = harness::settled_revision(client).await;

    let big_key = vec![b'k'; raftsman::limits::KEY_BYTES_MAX + 1];
    let err = client.put(big_key, "v").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("key is too large"), "{}", err.message());

    let big_value = vec![0u8; raftsman::limits::VALUE_BYTES_MAX + 1];
    let err = client.put("k", big_value).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let err = client.put("", "v").await.unwrap_err();
    assert!(err.message().contains("key is not provided"), "{}", err.message());

    let put = |k: &str| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    let dup = pb::TxnRequest { success: vec![put("same"), put("same")], ..Default::default() };
    let err = client.kv().txn(dup).await.unwrap_err();
    assert!(err.message().contains("duplicate key"), "{}", err.message());
    let huge = pb::TxnRequest {
        success: (0..=raftsman::limits::TXN_OPS_MAX).map(|i| put(&format!("t{i}"))).collect(),
        ..Default::default()
    };
    let err = client.kv().txn(huge).await.unwrap_err();
    assert!(err.message().contains("too many operations"), "{}", err.message());

    let err = client
        .kv()
        .put(pb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 12345, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());

    let after = client.status().await.unwrap().header.unwrap().revision;
    assert_eq!(before, after, "refused requests change nothing");
    assert!(client.put("still", "serving").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_down_fails_fast_and_a_minority_down_does_not_matter() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;

    // One replica down: reads and writes go on.
    c.local.signal(b, Signal::Kill);
    put_retrying(&c.clients[a], "minority", "ok", Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.clients[a].get("minority", false).await.unwrap().kvs.len(), 1);

    // Two down: requests fail with Unavailable within a bounded time instead of hanging.
    c.local.signal(leader, Signal::Kill);
    let started = Instant::now();
    let err = c.clients[a].put("majority", "down").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    let err = c.clients[a].get("minority", false).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(9), "failed fast: {:?}", started.elapsed());
    // A serializable read is still served locally.
    assert_eq!(c.clients[a].get("minority", true).await.unwrap().kvs.len(), 1);

    // Quorum back: service resumes.
    c.local.start(b).unwrap();
    eventually(Duration::from_secs(20), "writes to resume", || async {
        c.clients[a].put("majority", "back").await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_other_cluster_and_corrupt_data_dirs_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_raftsman");
    let run = |data: &std::path::Path, cluster: &str| {
        let ports = raftsman::cluster::local::free_ports(3).unwrap();
        let [peer, client, api] = [0, 1, 2].map(|i| format!("127.0.0.1:{}", ports[i]));
        let initial = cluster.replace("PEER", &peer);
        Command::new(binary)
            .args(["server", "--name", "n1", "--peer-addr", &peer, "--client-addr", &client, "--api-addr", &api])
            .args(["--insecure-peer", "--insecure-api"])
            .arg("--data-dir")
            .arg(data)
            .args(["--initial-cluster", &initial])
            .output()
            .unwrap()
    };

    // A dir with someone else's files.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
    let out = run(&foreign, "n1=PEER");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a raftsman data dir"));
    assert_eq!(std::fs::read_to_string(foreign.join("precious.txt")).unwrap(), "keep me");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing was written");

    // A data dir that belongs to another cluster.
    let mut c = TestCluster::start(1).await;
    let member_before = c.member_ids().await[0];
    assert!(member_before.is_some());
    c.local.stop(0, Duration::from_secs(10));
    let data = c.local.members[0].data_dir.clone();
    let out = run(&data, "n1=PEER,n2=127.0.0.1:1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to cluster"), "{stderr}");

    // Restarting without --initial-cluster uses the cluster the data dir belongs to.
    let [peer_port, client_port, api_port] =
        <[u16; 3]>::try_from(raftsman::cluster::local::free_ports(3).unwrap()).unwrap();
    let mut restarted = Command::new(binary)
        .args(["server", "--name", "n1", "--insecure-peer", "--insecure-api"])
        .arg("--data-dir")
        .arg(&data)
        .args(["--peer-addr", &format!("127.0.0.1:{peer_port}")])
        .args(["--client-addr", &format!("127.0.0.1:{client_port}")])
        .args(["--api-addr", &format!("127.0.0.1:{api_port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = raftsman::cluster::etcd_client::EtcdClient::new(&format!("http://127.0.0.1:{client_port}")).unwrap();
    let members = eventually(Duration::from_secs(20), "the restarted replica to serve", || async {
        client.status().await.ok()?;
        client.put("after-restart", "ok").await.ok()?;
        Some(client.status().await.ok()?.header?.member_id)
    })
    .await;
    assert_eq!(Some(members), member_before, "the same member");
    restarted.kill().unwrap();
    restarted.wait().unwrap();

    // A corrupt database: refused, and left as it was for the operator to inspect.
    let current = data.join("db").join("CURRENT");
    std::fs::write(&current, "garbage").unwrap();
    let out = run(&data, "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&current).unwrap(), "garbage");

    // A corrupt identity file.
    std::fs::write(data.join("member.json"), "{ not json").unwrap();
    let out = run(&data, "n1=PEER");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
}

/// Two clusters formed from the same `--initial-cluster` with different `--initial-cluster-token`s are different
/// clusters, as in etcd: their ids differ (so their members refuse each other), the same list and token give
/// the same id, and a data dir of one cluster is not started as a member of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_member_list_with_another_token_forms_another_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_raftsman");
    let ports = raftsman::cluster::local::free_ports(3).unwrap();
    let [peer, client, api] = [0, 1, 2].map(|i| format!("127.0.0.1:{}", ports[i]));
    let initial = format!("n1={peer}");
    let server = |data: &std::path::Path, token: &str| {
        let mut command = Command::new(binary);
        command
            .args(["server", "--name", "n1", "--peer-addr", &peer, "--client-addr", &client, "--api-addr", &api])
            .args(["--insecure-peer", "--insecure-api", "--initial-cluster", &initial])
            .args(["--initial-cluster-token", token])
            .arg("--data-dir")
            .arg(data);
        command
    };
    let cluster_of = |data: std::path::PathBuf, token: &'static str| {
        let mut child = server(&data, token).stderr(std::process::Stdio::null()).spawn().unwrap();
        let etcd = raftsman::cluster::etcd_client::EtcdClient::new(&format!("http://{client}")).unwrap();
        async move {
            let id = eventually(Duration::from_secs(20), "the replica to serve", || async {
                Some(etcd.status().await.ok()?.header?.cluster_id)
            })
            .await;
            child.kill().unwrap();
            child.wait().unwrap();
            id
        }
    };
    let alpha = cluster_of(dir.path().join("alpha"), "alpha").await;
    let beta = cluster_of(dir.path().join("beta"), "beta").await;
    let alpha_again = cluster_of(dir.path().join("alpha-again"), "alpha").await;
    assert_ne!(alpha, beta, "another token, another cluster");
    assert_eq!(alpha, alpha_again, "the same list and token describe the same cluster");

    let out = server(&dir.path().join("alpha"), "beta").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("belongs to cluster {alpha:x}")), "{stderr}");
}

/// A member whose database is gone but whose identity file is left must not come back as a new member: with
/// an empty log it could vote away acknowledged writes. It starts only with `--rejoin`, takes the cluster's
/// state from the leader, and afterwards restarts as any member does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_database_starts_only_to_rejoin() {
    let mut c = TestCluster::start(3).await;
    let all = Etcdctl::of(&c.local);
    all.ok(&["put", "before-the-loss", "kept"]);
    let lost = (c.leader().await + 1) % 3;
    c.local.signal(lost, Signal::Kill);
    let db = c.local.members[lost].data_dir.join("db");
    std::fs::remove_dir_all(&db).unwrap();

    c.local.start(lost).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.local.is_running(lost) {
        assert!(Instant::now() < deadline, "the member started without its database");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&c.local.members[lost].log).unwrap();
    assert!(log.contains("its database (db/) is gone") && log.contains("--rejoin"), "{log}");
    assert!(!db.exists(), "a refused start creates nothing");

    c.local.server_args.push("--rejoin".into());
    c.local.start(lost).unwrap();
    c.local.server_args.pop();
    all.only(0).ok(&["put", "after-the-loss", "new"]);
    eventually(Duration::from_secs(30), "the rejoined member to hold the cluster's data", || async {
        let before = c.clients[lost].get("before-the-loss", true).await.ok()?;
        let after = c.clients[lost].get("after-the-loss", true).await.ok()?;
        (before.kvs.len() == 1 && after.kvs.len() == 1).then_some(())
    })
    .await;
    let members = all.ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");

    // Once rejoined, it is a member like the others: a plain restart resumes from its database.
    assert!(c.local.stop(lost, Duration::from_secs(10)), "clean stop");
    c.local.start(lost).unwrap();
    eventually(Duration::from_secs(20), "the restarted member to serve", || async {
        let r = c.clients[lost].get("after-the-loss", true).await.ok()?;
        (r.kvs.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_deletes_its_keys_on_every_replica() {
    let c = TestCluster::start(3).await;
    let all = Etcdctl::of(&c.local);
    let granted = all.ok(&["lease", "grant", &raftsman::limits::LEASE_TTL_SECS_MIN.to_string()]);
    let lease = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert_eq!(all.ok(&["put", "ephemeral", "x", &format!("--lease={lease}")]).trim(), "OK");
    assert_eq!(all.ok(&["put", "durable", "y"]).trim(), "OK");

    // Nobody keeps the lease alive: the leader revokes it through the log, so every replica deletes the key.
    for i in 0..3 {
        eventually(Duration::from_secs(20), "the leased key to disappear", || async {
            let r = c.clients[i].get("ephemeral", true).await.ok()?;
            r.kvs.is_empty().then_some(())
        })
        .await;
        assert_eq!(c.clients[i].get("durable", true).await.unwrap().kvs.len(), 1);
    }
    let ttl = all.ok(&["lease", "timetolive", &lease]);
    assert!(ttl.contains("already expired"), "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_move_leader_hands_leadership_to_the_chosen_member() {
    let c = TestCluster::start(3).await;
    let all = Etcdctl::of(&c.local);
    let leader = c.leader().await;
    let target = (leader + 1) % 3;
    let ids = c.member_ids().await;
    let target_id = format!("{:x}", ids[target].unwrap());
    let term_before = c.clients[leader].status().await.unwrap().raft_term;

    let out = all.ok(&["move-leader", &target_id]);
    assert!(out.contains(&format!("to {target_id}")), "{out}");
    assert_eq!(c.leader().await, target);
    assert!(c.clients[target].status().await.unwrap().raft_term > term_before);
    assert_eq!(all.ok(&["put", "after-transfer", "ok"]).trim(), "OK");

    let (success, _, err) = all.run(&["move-leader", "123abc"], None);
    assert!(!success && err.contains("bad leader transferee"), "{err}");
    assert_eq!(c.leader().await, target, "a refused transfer changes nothing");
}

/// The revision a read answered at.
fn revision_of(etcd: &Etcdctl, key: &str) -> i64 {
    let fields = etcd.ok(&["get", key, "-w", "fields"]);
    fields.lines().find_map(|l| l.strip_prefix("\"Revision\" : ")).expect("a revision").parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_compacts_the_history_one_interval_behind() {
    let c = TestCluster::start_with(3, &["--compaction-interval", "1s"]).await;
    let all = Etcdctl::of(&c.local);
    all.ok(&["put", "k", "v1"]);
    let first = revision_of(&all, "k");
    all.ok(&["put", "k", "v2"]);
    // Within a few intervals the history before the write of v2 is gone, on every replica, and nothing
    // else changed: the latest value reads as before.
    eventually(Duration::from_secs(20), "the first write's revision compacted", || async {
        let (success, _, err) = all.run(&["get", "k", &format!("--rev={first}")], None);
        (!success && err.contains("required revision has been compacted")).then_some(())
    })
    .await;
    for (i, endpoint) in all.each().enumerate() {
        let (success, _, err) = endpoint.run(&["get", "k", "--consistency=s", &format!("--rev={first}")], None);
        assert!(!success && err.contains("compacted"), "replica {i}: {err}");
    }
    assert_eq!(all.ok(&["get", "k", "--print-value-only"]).trim(), "v2");
    // A revision newer than the last tick is still readable: compaction stays one interval behind.
    all.ok(&["put", "k", "v3"]);
    let fresh = revision_of(&all, "k");
    assert_eq!(all.ok(&["get", "k", "--print-value-only", &format!("--rev={fresh}")]).trim(), "v3");
}
