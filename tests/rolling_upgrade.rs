//! A rolling upgrade of the control plane, one replica at a time, under a client load and with an agent
//! running pods. The replicas start as the build before this one: this binary advertising 0.1.0
//! (`RAFTSMAN_ADVERTISED_VERSION`), which is what builds from before versions were advertised count as
//! (`store::version::BEFORE_ADVERTISING`). `raftsman ctl upgrade-check` leads the way: at each step it must
//! say that one replica may stop and name it (followers first, the leader last); the replica is stopped with
//! SIGTERM and started again as this build. The cluster version stays the old one until the last replica
//! runs the new build, then becomes it. No client write fails after retries, none is lost, and no pod is
//! restarted or replaced.

mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::store::version::ADVERTISED_VERSION_ENV;

use harness::agent::Agent;
use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};

const OLD: &str = "0.1.0";
const NEW: &str = env!("CARGO_PKG_VERSION");

/// `raftsman ctl ARGS` against every replica, with etcdctl's credentials: whether it exited 0, and its output.
fn ctl(cluster: &TestCluster, args: &[&str]) -> (bool, String) {
    let files = cluster.local.etcd_client_files();
    let endpoints: Vec<String> = cluster.local.members.iter().map(|m| m.client_addr.to_string()).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_raftsman"))
        .args(["ctl", "--endpoints", &endpoints.join(",")])
        .arg("--cacert")
        .arg(&files.trusted_ca)
        .arg("--cert")
        .arg(&files.cert)
        .arg("--key")
        .arg(&files.key)
        .args(args)
        .output()
        .expect("raftsman ctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Puts `key`, trying the replicas in turn from `first` until one acknowledges, for up to 30 s.
async fn put_somewhere(clients: &[EtcdClient], first: usize, key: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = first;
    while Instant::now() < deadline {
        if clients[i % clients.len()].put(key, key).await.is_ok() {
            return true;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Each pod's uid, and its container's start time and restart count.
fn pods(k: &Kubectl) -> BTreeMap<String, (String, String, i64)> {
    let list = k.json(&["get", "pods", "-l", "app=steady"]);
    let mut pods = BTreeMap::new();
    for pod in list["items"].as_array().unwrap() {
        let status = &pod["status"]["containerStatuses"][0];
        let started = status["state"]["running"]["startedAt"].as_str().unwrap_or_default().to_owned();
        let restarts = status["restartCount"].as_i64().unwrap_or(-1);
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        pods.insert(name, (pod["metadata"]["uid"].as_str().unwrap().to_owned(), started, restarts));
    }
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_replica_by_replica_fails_no_request_loses_no_write_and_restarts_no_pod() {
    let mut cluster = TestCluster::start_laid_out(3, |local| {
        for member in &mut local.members {
            member.env.push((ADVERTISED_VERSION_ENV.to_owned(), OLD.to_owned()));
        }
    })
    .await;
    let k = Kubectl::for_replica(&cluster, 0).await;
    let _agent = Agent::fake(&cluster, "worker", &[]);
    let manifest = "apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 4
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec: {containers: [{name: c, image: busybox:1.36, command: [sleep, '3600']}]}
";
    k.ok(&["apply", "-f", &k.manifest("steady.yaml", manifest)]);
    let before = eventually(Duration::from_secs(60), "four running pods", || async {
        let pods = pods(&k);
        (pods.len() == 4 && pods.values().all(|(_, started, _)| !started.is_empty())).then_some(pods)
    })
    .await;
    eventually(Duration::from_secs(30), "the cluster version known as the old one", || async {
        let (_, status) = ctl(&cluster, &["status"]);
        status.contains(&format!("cluster version: {OLD} ")).then_some(())
    })
    .await;

    // The load: keys written one after another, each through the next replica, retried elsewhere on failure.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (clients, stop) = (cluster.clients.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("load/{i:06}");
                match put_somewhere(&clients, i, &key).await {
                    true => acknowledged.push(key),
                    false => failed.push(key),
                }
            }
            (acknowledged, failed)
        })
    };

    // Three steps, each where upgrade-check says, each only once it says a replica may stop.
    let mut upgraded = Vec::new();
    for step in 0..3 {
        let check = eventually(Duration::from_secs(60), "upgrade-check to allow the next step", || async {
            let (safe, out) = ctl(&cluster, &["upgrade-check"]);
            safe.then_some(out)
        })
        .await;
        assert!(check.contains(&format!("the cluster version is {OLD} ")), "step {step}: {check}");
        let next = check.lines().find_map(|l| l.strip_prefix("next: ")).unwrap_or_else(|| panic!("{check}"));
        let name = next.split_whitespace().next().unwrap();
        let i = cluster.local.members.iter().position(|m| m.name == name).unwrap();
        assert!(!upgraded.contains(&i), "step {step} names {name} again: {check}");
        assert!(next.contains(&format!("on {OLD}")), "{check}");
        // Followers first: while two replicas run the old build, one of them follows. The leader goes last.
        let leads = cluster.leader().await == i;
        assert_eq!(next.contains("(the leader"), leads, "{check}");
        assert!(step == 2 || !leads, "the leader named before the old followers: {check}");
        let status = cluster.local.stop_with_status(i, Duration::from_secs(20));
        if !status.is_some_and(|s| s.success()) {
            let log = cluster.log(i);
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "{name} did not stop cleanly ({status:?}, None: killed after 20 s); its log ends:\n{}",
                tail.join("\n")
            );
        }
        cluster.local.members[i].env.clear();
        cluster.local.start(i).unwrap();
        upgraded.push(i);
    }
    let done = eventually(Duration::from_secs(60), "every replica on the new build", || async {
        let (safe, out) = ctl(&cluster, &["upgrade-check"]);
        (safe && out.contains(&format!("every replica runs {NEW}; the cluster version is {NEW} "))).then_some(out)
    })
    .await;
    assert!(done.contains("safe: one replica may be stopped now"), "{done}");
    let (_, status) = ctl(&cluster, &["status"]);
    let rows_on_new = status.lines().filter(|l| l.starts_with('n') && l.contains(&format!(" {NEW} "))).count();
    assert_eq!(rows_on_new, 3, "{status}");

    // Nothing failed, nothing was lost.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "writes that failed after retries: {failed:?}");
    assert!(acknowledged.len() > 100, "the load ran: {} writes", acknowledged.len());
    // A linearizable read: a replica restarted last may not have applied the newest writes yet.
    let read = cluster.clients[0].get_prefix(b"load/", false).await.unwrap();
    let keys: std::collections::BTreeSet<Vec<u8>> = read.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|key| !keys.contains(key.as_bytes())).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // The same pods, never restarted.
    let k = Kubectl::for_replica(&cluster, 1).await;
    assert_eq!(pods(&k), before, "pods replaced or restarted during the upgrade");
}
