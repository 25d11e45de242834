//! The workload controllers on a real three-replica cluster with fake-runtime agents, driven by real kubectl
//! from YAML: a Deployment rolls out, updates within maxSurge and maxUnavailable (checked at every pod event),
//! rolls back, pauses and resumes, scales and restarts, and one that cannot progress says so; a ReplicaSet
//! replaces deleted pods, adopts orphans and releases pods that stop matching; a leader SIGKILLed in the middle
//! of a scale-up and of a rolling update leaves the new leader to finish both without a pod name created
//! twice or a bound exceeded (`workload_failover.rs` pauses a leader with SIGSTOP).

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::{follower, Kubectl};
use harness::pods::{images, lock, wait_nodes, watch_pods};
use harness::{eventually, kube_client, TestCluster};
use raftsman::cluster::local::Signal;
use serde_json::Value;

fn rollout_status(k: &Kubectl, name: &str) {
    let out = k.ok(&["rollout", "status", &format!("deployment/{name}"), "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn deployment_manifest(name: &str, replicas: u32, surge: &str, unavailable: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations:
    kubernetes.io/change-cause: first release
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: c
        image: {image}
"
    )
}

/// The revisions `kubectl rollout history` lists.
fn history(k: &Kubectl, name: &str) -> Vec<String> {
    let out = k.ok(&["rollout", "history", &format!("deployment/{name}")]);
    out.lines().skip(2).filter_map(|l| l.split_whitespace().next().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_updates_rolls_back_pauses_scales_and_restarts_through_kubectl() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "work-a", &[]);
    let _b = Agent::fake(&cluster, "work-b", &[]);
    wait_nodes(&k, 2).await;

    let manifest = k.manifest("web.yaml", &deployment_manifest("web", 4, "1", "1", "web:1"));
    k.ok(&["apply", "-f", &manifest]);
    rollout_status(&k, "web");
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(d["status"]["availableReplicas"], 4, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 4, "{d}");
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"], "{d}");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1", "{d}");
    let conditions: BTreeMap<String, (String, String)> = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = |f: &str| c[f].as_str().unwrap().to_string();
            (c("type"), (c("status"), c("reason")))
        })
        .collect();
    assert_eq!(conditions["Available"], ("True".into(), "MinimumReplicasAvailable".into()));
    assert_eq!(conditions["Progressing"], ("True".into(), "NewReplicaSetAvailable".into()));
    let rs = k.json(&["get", "rs", "-l", "app=web"]);
    let rs = &rs["items"][0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["annotations"]["kubernetes.io/change-cause"], "first release");

    let clients = vec![kube_client(&cluster, follower(leader)).await];
    let (pods, watch) = watch_pods(clients, "app=web");
    eventually(Duration::from_secs(10), "the watch to list the pods", || async {
        (lock(&pods).samples.last() == Some(&(4, 4))).then_some(())
    })
    .await;
    let start = lock(&pods).samples.len();
    k.ok(&["set", "image", "deployment/web", "c=web:2"]);
    rollout_status(&k, "web");
    assert_eq!(images(&k, "app=web"), BTreeMap::from([("web:2".to_string(), 4)]));
    let (most, fewest_ready) = lock(&pods).bounds(start);
    assert!(most <= 5, "{most} pods alive at once: more than replicas + maxSurge");
    assert!(fewest_ready >= 3, "only {fewest_ready} ready at one point: more than maxUnavailable down");
    assert_eq!(history(&k, "web"), ["1", "2"]);

    k.ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&k, "web");
    assert_eq!(images(&k, "app=web"), BTreeMap::from([("web:1".to_string(), 4)]));
    assert_eq!(history(&k, "web"), ["2", "3"], "the rolled-back revision is the newest");
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");

    k.ok(&["rollout", "pause", "deployment/web"]);
    k.ok(&["set", "image", "deployment/web", "c=web:3"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        k.json(&["get", "rs", "-l", "app=web"])["items"].as_array().unwrap().len(),
        2,
        "paused: no new ReplicaSet"
    );
    assert_eq!(images(&k, "app=web"), BTreeMap::from([("web:1".to_string(), 4)]));
    let d = k.json(&["get", "deployment", "web"]);
    let paused = d["status"]["conditions"].as_array().unwrap().iter().any(|c| c["reason"] == "DeploymentPaused");
    assert!(paused, "{d}");
    k.ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&k, "web");
    assert_eq!(images(&k, "app=web"), BTreeMap::from([("web:3".to_string(), 4)]));

    k.ok(&["scale", "deployment/web", "--replicas=6"]);
    eventually(Duration::from_secs(30), "six available replicas", || async {
        let d = k.json(&["get", "deployment", "web"]);
        (d["status"]["availableReplicas"] == 6 && d["status"]["replicas"] == 6).then_some(())
    })
    .await;

    k.ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&k, "web");
    assert_eq!(history(&k, "web"), ["2", "3", "4", "5"]);
    assert_eq!(images(&k, "app=web"), BTreeMap::from([("web:3".to_string(), 6)]));

    let reasons: BTreeSet<String> = k.json(&["get", "events"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect();
    for reason in ["ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete"] {
        assert!(reasons.contains(reason), "no {reason} event: {reasons:?}");
    }
    watch.abort();
    assert!(lock(&pods).reused.is_empty(), "pod names created twice: {:?}", lock(&pods).reused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_cannot_progress_reports_progress_deadline_exceeded() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "work-a", &[]);
    wait_nodes(&k, 1).await;
    // Its pods ask for a node that does not exist: they stay Pending.
    let manifest = deployment_manifest("stuck", 2, "1", "0", "web:1")
        .replace("spec:\n  replicas", "spec:\n  progressDeadlineSeconds: 3\n  replicas")
        .replace("      containers:", "      nodeSelector: {zone: nowhere}\n      containers:");
    k.ok(&["apply", "-f", &k.manifest("stuck.yaml", &manifest)]);
    let out = k.run(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("exceeded its progress deadline"), "{stderr}");
    let d = k.json(&["get", "deployment", "stuck"]);
    let c = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").cloned();
    let c = c.unwrap_or(Value::Null);
    assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("ProgressDeadlineExceeded")), "{d}");
}

fn alive_pods(k: &Kubectl, selector: &str) -> Vec<Value> {
    let pods = k.json(&["get", "pods", "-l", selector]);
    pods["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_replaces_deleted_pods_adopts_orphans_and_releases_pods_that_stop_matching() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "work-a", &[]);
    wait_nodes(&k, 1).await;
    let manifest = "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 3
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: c, image: rs:1}]}
";
    k.ok(&["apply", "-f", &k.manifest("rs.yaml", manifest)]);
    let three_ready = || async {
        let rs = k.json(&["get", "rs", "rs"]);
        let s = &rs["status"];
        let counts = [&s["replicas"], &s["readyReplicas"], &s["availableReplicas"], &s["fullyLabeledReplicas"]];
        (counts.iter().all(|c| **c == 3) && s["observedGeneration"] == rs["metadata"]["generation"]).then_some(())
    };
    eventually(Duration::from_secs(30), "three ready replicas", three_ready).await;
    let first: BTreeSet<String> = alive_pods(&k, "app=rs").iter().map(name).collect();
    let uid = k.json(&["get", "rs", "rs"])["metadata"]["uid"].as_str().unwrap().to_string();

    let victim = first.iter().next().unwrap().clone();
    k.ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually(Duration::from_secs(30), "a replacement", || async {
        let now: BTreeSet<String> = alive_pods(&k, "app=rs").iter().map(name).collect();
        (now.len() == 3 && !now.contains(&victim)).then_some(())
    })
    .await;

    let orphan = "apiVersion: v1
kind: Pod
metadata: {name: orphan, labels: {app: rs}}
spec: {containers: [{name: c, image: rs:1}]}
";
    k.ok(&["apply", "-f", &k.manifest("orphan.yaml", orphan)]);
    eventually(Duration::from_secs(30), "the orphan adopted and the set back to three", || async {
        let pods = alive_pods(&k, "app=rs");
        let owned = |p: &Value| p["metadata"]["ownerReferences"][0]["uid"] == uid.as_str();
        let orphan = k.json(&["get", "pods", "-l", "app=rs"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| name(p) == "orphan")
            .map(&owned);
        (pods.len() == 3 && pods.iter().all(owned) && orphan != Some(false)).then_some(())
    })
    .await;

    let relabelled = name(&alive_pods(&k, "app=rs")[0]);
    k.ok(&["label", "pod", &relabelled, "app=other", "--overwrite"]);
    eventually(Duration::from_secs(30), "the relabelled pod released and replaced", || async {
        let released = k.json(&["get", "pod", &relabelled]);
        let refs = released["metadata"]["ownerReferences"].as_array().map_or(0, Vec::len);
        (refs == 0 && alive_pods(&k, "app=rs").len() == 3).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "three ready replicas again", three_ready).await;

    k.ok(&["scale", "rs/rs", "--replicas=1"]);
    eventually(Duration::from_secs(30), "one replica", || async {
        (alive_pods(&k, "app=rs").len() == 1).then_some(())
    })
    .await;
}

/// The leader is SIGKILLed in the middle of a scale from 2 to 50, then (the killed replica back) the new leader
/// in the middle of a rolling update of the 50: each time the next leader finishes the work, and across both no
/// pod name is created twice, the scale-up never has more than 50 pods alive and the update never more than
/// 50 + maxSurge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_a_scale_up_and_a_rolling_update_the_old_one_started() {
    let mut cluster = TestCluster::start(3).await;
    let ks = [
        Kubectl::for_replica(&cluster, 0).await,
        Kubectl::for_replica(&cluster, 1).await,
        Kubectl::for_replica(&cluster, 2).await,
    ];
    let _a = Agent::fake(&cluster, "work-a", &[]);
    let _b = Agent::fake(&cluster, "work-b", &[]);
    let leader = cluster.leader().await;
    let k = &ks[follower(leader)];
    wait_nodes(k, 2).await;
    k.ok(&["apply", "-f", &k.manifest("big.yaml", &deployment_manifest("big", 2, "5", "0", "big:1"))]);
    rollout_status(k, "big");
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(kube_client(&cluster, i).await);
    }
    let (pods, watch) = watch_pods(clients, "app=big");

    k.ok(&["scale", "deployment/big", "--replicas=50"]);
    eventually(Duration::from_secs(30), "the scale-up under way", || async {
        (lock(&pods).pods.len() >= 8).then_some(())
    })
    .await;
    cluster.local.signal(leader, Signal::Kill);
    cluster.leader().await;
    let k = &ks[(0..3).find(|i| *i != leader).unwrap()];
    rollout_status(k, "big");
    assert_eq!(k.json(&["get", "deployment", "big"])["status"]["availableReplicas"], 50);
    assert!(lock(&pods).bounds(0).0 <= 50, "more than 50 pods alive during the scale-up");

    cluster.local.start(leader).unwrap();
    eventually(Duration::from_secs(30), "the killed replica back", || async {
        ks[leader].run(&["get", "--raw", "/readyz"]).status.success().then_some(())
    })
    .await;
    let start = lock(&pods).samples.len();
    let current = cluster.leader().await;
    let k = &ks[follower(current)];
    k.ok(&["set", "image", "deployment/big", "c=big:2"]);
    eventually(Duration::from_secs(30), "the rolling update under way", || async {
        (images(k, "app=big").get("big:2").copied().unwrap_or(0) >= 5).then_some(())
    })
    .await;
    cluster.local.signal(current, Signal::Kill);
    cluster.leader().await;
    let k = &ks[(0..3).find(|i| *i != current).unwrap()];
    rollout_status(k, "big");
    assert_eq!(images(k, "app=big"), BTreeMap::from([("big:2".to_string(), 50)]));
    let (most, _) = lock(&pods).bounds(start);
    assert!(most <= 55, "{most} pods alive during the update: more than replicas + maxSurge");
    watch.abort();
    assert!(lock(&pods).reused.is_empty(), "pod names created twice: {:?}", lock(&pods).reused);
}

/// `kubectl drain` evicts a node's pods one budget-allowed disruption at a time: with four replicas on the node
/// and `minAvailable: 3`, every eviction waits for the last one's replacement to be ready elsewhere, the
/// refusals meanwhile say why, and three pods are ready at every moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_respects_a_pod_disruption_budget() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "drained", &[]);
    wait_nodes(&k, 1).await;
    k.ok(&["apply", "-f", &k.manifest("web.yaml", &deployment_manifest("web", 4, "1", "0", "web:1"))]);
    rollout_status(&k, "web");
    let budget = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
";
    k.ok(&["apply", "-f", &k.manifest("pdb.yaml", budget)]);
    eventually(Duration::from_secs(30), "the budget's status", || async {
        let pdb = k.json(&["get", "pdb", "web"]);
        (pdb["status"]["disruptionsAllowed"] == 1 && pdb["status"]["expectedPods"] == 4).then_some(())
    })
    .await;
    let printed = k.ok(&["get", "pdb", "web"]);
    assert!(printed.contains("MIN AVAILABLE") && printed.lines().nth(1).unwrap().contains('3'), "{printed}");
    let _b = Agent::fake(&cluster, "spare", &[]);
    wait_nodes(&k, 2).await;
    let (pods, watch) = watch_pods(vec![kube_client(&cluster, follower(leader)).await], "app=web");
    eventually(Duration::from_secs(10), "the watch to list the pods", || async {
        (lock(&pods).samples.last() == Some(&(4, 4))).then_some(())
    })
    .await;

    let out = k.run(&["drain", "drained", "--ignore-daemonsets", "--timeout=120s"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("node/drained drained"), "{stdout}");
    assert!(stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stdout}{stderr}");
    let node = k.json(&["get", "node", "drained"]);
    assert_eq!(node["spec"]["unschedulable"], true);
    let on: Vec<String> = k.json(&["get", "pods", "-l", "app=web"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(on, ["spare"; 4], "every pod moved to the spare node");
    watch.abort();
    let (_, fewest_ready) = lock(&pods).bounds(0);
    assert!(fewest_ready >= 3, "only {fewest_ready} ready at one point: the budget was broken");
    k.ok(&["uncordon", "drained"]);
    assert!(k.json(&["get", "node", "drained"])["spec"]["unschedulable"].is_null());
}
