//! The workload controllers across leader changes, with real processes: the leader SIGKILLed in the middle of a
//! StatefulSet roll, a Job and just before a CronJob run is due leaves the new leader to finish the roll and
//! the Job and start the run exactly once, with no ordinal ever holding two pods and the Job never above its
//! parallelism; a leader paused with SIGSTOP while its ReplicaSet controller creates pods has its writes
//! refused as fenced once it resumes behind a new leader.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::Kubectl;
use harness::pods::{lock, wait_nodes, watch_pods};
use harness::{eventually, kube_client, TestCluster};
use raftsman::cluster::local::Signal;

/// The replica that leads, asking only `among` (a paused replica would not answer).
async fn leader_among(cluster: &TestCluster, among: &[usize]) -> usize {
    eventually(Duration::from_secs(20), "a leader among the running replicas", || async {
        for &i in among {
            let Ok(status) = cluster.clients[i].status().await else { continue };
            let id = status.header.map(|h| h.member_id);
            if status.leader != 0 && id == Some(status.leader) {
                return Some(i);
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_a_stateful_set_roll_and_a_job_and_starts_a_due_cron_run_once() {
    let mut cluster = TestCluster::start(3).await;
    let ks = [
        Kubectl::for_replica(&cluster, 0).await,
        Kubectl::for_replica(&cluster, 1).await,
        Kubectl::for_replica(&cluster, 2).await,
    ];
    let servers: Vec<SocketAddr> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _fake = Agent::fake(&cluster, "fake-a", &["--node-labels", "runtime=fake"]);
    let _proc =
        Agent::start(&cluster, &servers, "proc-a", &["--runtime", "process", "--node-labels", "runtime=process"]);
    let leader = cluster.leader().await;
    let k = &ks[(leader + 1) % 3];
    wait_nodes(k, 2).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(kube_client(&cluster, i).await);
    }
    let set = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 4
  minReadySeconds: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {nodeSelector: {runtime: fake}, containers: [{name: c, image: db:1}]}
";
    k.ok(&["apply", "-f", &k.manifest("db.yaml", set)]);
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let cron = "apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: '* * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          nodeSelector: {runtime: fake}
          containers: [{name: c, image: i, command: [sh, -c, 'exit 0']}]
";
    k.ok(&["apply", "-f", &k.manifest("cron.yaml", cron)]);
    let (db, db_watch) = watch_pods(clients.clone(), "app=db");
    let (batch, batch_watch) = watch_pods(clients.clone(), "job-name=batch");

    // Start the roll and the Job about 5 s before a minute begins, and kill the leader 1 s before it.
    let now = jiff::Timestamp::now().as_second();
    let boundary = (now / 60 + 1) * 60 + if 60 - now % 60 < 8 { 60 } else { 0 };
    tokio::time::sleep(Duration::from_secs((boundary - 5 - jiff::Timestamp::now().as_second()).max(0) as u64)).await;
    k.ok(&["set", "image", "statefulset/db", "c=db:2"]);
    let job = "apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 12
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {runtime: process}
      containers: [{name: c, image: host, command: [sh, -c, 'sleep 1']}]
";
    k.ok(&["apply", "-f", &k.manifest("batch.yaml", job)]);
    tokio::time::sleep(Duration::from_secs((boundary - 1 - jiff::Timestamp::now().as_second()).max(0) as u64)).await;
    let updated_before = lock(&db).leaving.len();
    cluster.local.signal(leader, Signal::Kill);
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    leader_among(&cluster, &alive).await;
    let k = &ks[alive[0]];

    k.ok(&["rollout", "status", "statefulset/db", "--timeout=90s"]);
    k.ok(&["wait", "--for=condition=complete", "job/batch", "--timeout=90s"]);
    let runs = eventually(Duration::from_secs(30), "the run due at the failover", || async {
        let jobs = k.json(&["get", "jobs"]);
        let runs: Vec<String> = jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                let at = &j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"];
                at.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_second()) == Some(boundary)
            })
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert_eq!(runs, [format!("tick-{}", boundary / 60)], "the run due at the failover, exactly once");
    db_watch.abort();
    batch_watch.abort();
    let db = lock(&db);
    assert!(updated_before < 4, "the roll had not finished when the leader died");
    assert!(db.overlapping.is_empty(), "two pods of one ordinal at once: {:?}", db.overlapping);
    let batch = lock(&batch);
    assert!(batch.bounds(0).0 <= 3, "{} pods of the Job at once: more than its parallelism", batch.bounds(0).0);
    assert!(batch.reused.is_empty(), "pod names created twice: {:?}", batch.reused);
}

/// The leader is paused (SIGSTOP) while its ReplicaSet controller creates 1,000 pods, a new leader is elected,
/// and the old one resumes: it learns of the new term and stops its controllers; the writes they had under way
/// are carried through and those not yet in the log before the new term are refused as fenced (the old leader
/// logs each refusal); nothing takes effect twice: the new leader finishes with exactly 1,000 pods, no name
/// created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_resumed_behind_a_new_one_has_its_writes_refused_and_changes_nothing_twice() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let k = Kubectl::for_replica(&cluster, others[0]).await;
    // 1,000 pods, on nodes that take 110 each: room for twice as many.
    let _a = Agent::fake(&cluster, "fake", &["--fake-nodes", "20"]);
    wait_nodes(&k, 20).await;
    let manifest = "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: many}
spec:
  replicas: 1000
  selector: {matchLabels: {app: many}}
  template:
    metadata: {labels: {app: many}}
    spec: {containers: [{name: c, image: i}]}
";
    let (pods, watch) = watch_pods(vec![kube_client(&cluster, others[0]).await], "app=many");
    k.ok(&["apply", "-f", &k.manifest("many.yaml", manifest)]);
    eventually(Duration::from_secs(30), "the ReplicaSet creating pods", || async {
        (lock(&pods).created.len() >= 20).then_some(())
    })
    .await;
    cluster.local.signal(leader, Signal::Stop);
    let new = leader_among(&cluster, &others).await;
    assert_ne!(new, leader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.local.signal(leader, Signal::Cont);
    eventually(Duration::from_secs(20), "the old leader to stop its controllers", || async {
        cluster.log(leader).contains("no longer leading: the controllers and the scheduler stopped").then_some(())
    })
    .await;
    eventually(Duration::from_secs(90), "all 1000 pods, made by the new leader", || async {
        let rs = k.json(&["get", "rs", "many"]);
        (rs["status"]["replicas"] == 1000 && rs["status"]["readyReplicas"] == 1000).then_some(())
    })
    .await;
    // Anything the old leader still had in flight has had time to land, had it been going to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watch.abort();
    let history = lock(&pods);
    assert!(history.reused.is_empty(), "pod names created twice: {:?}", history.reused);
    let alive = history.pods.values().filter(|p| p.1).count();
    assert_eq!(alive, 1000, "pods beyond the 1000");
    let events = k.json(&["get", "events"]);
    let failed: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "FailedCreate")
        .filter_map(|e| e["message"].as_str())
        .collect();
    if history.created.len() != 1000 {
        // What made and removed the pods beyond the 1000, and the leadership changes around them.
        let gone = |name: &&String| !history.pods.get(*name).is_some_and(|p| p.1);
        let extra: Vec<&String> = history.created.iter().filter(gone).collect();
        for event in events["items"].as_array().unwrap() {
            let message = event["message"].as_str().unwrap_or_default();
            if extra.iter().any(|name| message.ends_with(name.as_str())) {
                eprintln!("event about a pod beyond the 1000: {event}");
            }
        }
        for i in 0..3 {
            let log = cluster.log(i);
            let leadership = log.lines().filter(|l| l.contains("lead") || l.contains("term") || l.contains("fenced"));
            leadership.for_each(|line| eprintln!("replica {i}: {line}"));
        }
    }
    assert_eq!(
        history.created.len(),
        1000,
        "pods created beyond the 1000 (and removed again); most alive at once: {}; failed creates: {failed:?}",
        history.bounds(0).0
    );
    // Writes the old leader's controllers had made before they stopped were carried through, committed in the
    // new term and refused by the state machine: the old leader logs each refusal.
    let refused =
        cluster.log(leader).matches("write refused: it was made for a leadership term that has ended").count();
    assert!(refused > 0, "no fenced refusal in the old leader's log");
}
