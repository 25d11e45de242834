//! StatefulSets and DaemonSets on a real three-replica cluster with fake-runtime agents, through kubectl: a
//! StatefulSet creates its pods in order with their names, replaces a deleted one under the same name, and
//! rolls an update from the highest ordinal down, never two pods of one ordinal at once; a DaemonSet puts one
//! pod on each node it selects and follows nodes joining, being relabelled and rolling to a new template.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::{follower, Kubectl};
use harness::pods::{images, lock, wait_nodes, watch_pods};
use harness::{eventually, kube_client, TestCluster};
use serde_json::Value;

fn alive(k: &Kubectl, selector: &str) -> Vec<Value> {
    let pods = k.json(&["get", "pods", "-l", selector]);
    pods["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_creates_in_order_keeps_names_and_updates_from_the_highest_ordinal() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "work-a", &[]);
    wait_nodes(&k, 1).await;
    let (pods, watch) = watch_pods(vec![kube_client(&cluster, follower(leader)).await], "app=db");
    let manifest = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: db:1}]}
";
    k.ok(&["apply", "-f", &k.manifest("db.yaml", manifest)]);
    let out = k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete"), "{out}");
    assert_eq!(lock(&pods).created, ["db-0", "db-1", "db-2"], "created in order");
    let by_name: BTreeMap<String, Value> =
        alive(&k, "app=db").into_iter().map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p)).collect();
    assert_eq!(by_name["db-1"]["spec"]["hostname"], "db-1");
    assert_eq!(by_name["db-1"]["spec"]["subdomain"], "db");
    let old_uid = by_name["db-1"]["metadata"]["uid"].as_str().unwrap().to_string();

    k.ok(&["delete", "pod", "db-1", "--wait=false"]);
    eventually(Duration::from_secs(30), "db-1 back under its name", || async {
        // Between the old pod's removal and the new one's creation the name is free: not there yet.
        let out = k.run(&["get", "pod", "db-1", "-o", "json"]);
        let pod: Value = serde_json::from_slice(&out.stdout).ok().filter(|_| out.status.success())?;
        let ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        (pod["metadata"]["uid"] != old_uid.as_str() && ready).then_some(())
    })
    .await;

    let before = lock(&pods).leaving.len();
    k.ok(&["set", "image", "statefulset/db", "c=db:2"]);
    let out = k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    assert_eq!(images(&k, "app=db"), BTreeMap::from([("db:2".to_string(), 3)]));
    assert_eq!(lock(&pods).leaving[before..], ["db-2", "db-1", "db-0"], "updated from the highest ordinal down");
    let set = k.json(&["get", "statefulset", "db"]);
    assert_eq!(set["status"]["currentRevision"], set["status"]["updateRevision"], "{set}");
    assert_eq!(set["status"]["updatedReplicas"], 3, "{set}");
    let revisions = k.json(&["get", "controllerrevisions", "-l", "app=db"]);
    assert_eq!(revisions["items"].as_array().unwrap().len(), 2);

    k.ok(&["scale", "statefulset/db", "--replicas=1"]);
    eventually(Duration::from_secs(30), "scaled down to db-0", || async {
        let names: Vec<String> =
            alive(&k, "app=db").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        (names == ["db-0"]).then_some(())
    })
    .await;
    watch.abort();
    let history = lock(&pods);
    assert!(history.overlapping.is_empty(), "two pods of one ordinal at once: {:?}", history.overlapping);
    assert_eq!(history.leaving[before + 3..], ["db-2", "db-1"], "scaled down from the highest ordinal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_follows_the_nodes_it_selects_and_rolls_to_a_new_template() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "node-a", &["--node-labels", "role=worker"]);
    let _b = Agent::fake(&cluster, "node-b", &["--node-labels", "role=worker"]);
    let _c = Agent::fake(&cluster, "node-c", &[]);
    wait_nodes(&k, 3).await;
    let manifest = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata: {labels: {app: logs}}
    spec:
      nodeSelector: {role: worker}
      containers: [{name: c, image: logs:1}]
";
    k.ok(&["apply", "-f", &k.manifest("logs.yaml", manifest)]);
    let nodes_of = |k: &Kubectl| -> Vec<String> {
        let mut nodes: Vec<String> =
            alive(k, "app=logs").iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).collect();
        nodes.sort();
        nodes
    };
    let ready_on = |want: &'static [&'static str]| {
        let k = &k;
        move || async move {
            let ds = k.json(&["get", "ds", "logs"]);
            let s = &ds["status"];
            let n = want.len() as u64;
            (nodes_of(k) == want
                && s["numberReady"] == n
                && s["desiredNumberScheduled"] == n
                && s["updatedNumberScheduled"] == n)
                .then_some(())
        }
    };
    eventually(Duration::from_secs(30), "a pod on each worker", ready_on(&["node-a", "node-b"])).await;

    k.ok(&["label", "node", "node-c", "role=worker"]);
    eventually(Duration::from_secs(30), "node-c labelled: a pod there too", ready_on(&["node-a", "node-b", "node-c"]))
        .await;
    k.ok(&["label", "node", "node-a", "role-"]);
    eventually(Duration::from_secs(30), "node-a unlabelled: its pod gone", ready_on(&["node-b", "node-c"])).await;
    let _d = Agent::fake(&cluster, "node-d", &["--node-labels", "role=worker"]);
    eventually(Duration::from_secs(30), "a new node: a pod there", ready_on(&["node-b", "node-c", "node-d"])).await;

    k.ok(&["set", "image", "ds/logs", "c=logs:2"]);
    let out = k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(images(&k, "app=logs"), BTreeMap::from([("logs:2".to_string(), 3)]));
}
