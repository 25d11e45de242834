//! The node lifecycle on a real three-replica cluster with a short grace period: nodes created through the API
//! heartbeat through Leases the test renews, as an agent would. A node that stops is declared Unknown and
//! tainted unreachable, its pods go when their tolerations run out, and it comes back when it heartbeats
//! again; a pod bound to a node that does not exist is removed; a new leader gives every node a full grace
//! period before declaring it dead. What kubectl shows is checked along the way.

mod harness;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use raftsman::cluster::local::Signal;
use serde_json::{json, Value};

use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};

const LEASES: &str = "kube-node-lease";

fn now() -> String {
    Timestamp::now().to_string()
}

/// The conditions a healthy kubelet reports.
fn healthy_conditions() -> Value {
    let now = now();
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": "posted by the test",
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        condition("Ready", "True", "KubeletReady"),
    ])
}

/// Registers a node as an agent does, reporting Ready.
async fn register(client: &kube::Client, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": healthy_conditions()},
    }))
    .unwrap();
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.expect("node created");
}

/// Reports the node Ready again, as its kubelet does when it is back.
async fn report_ready(client: &kube::Client, name: &str) {
    let nodes = Api::<Node>::all(client.clone());
    eventually(Duration::from_secs(10), "a Ready status posted", || async {
        let mut node = nodes.get(name).await.ok()?;
        let mut status = serde_json::to_value(node.status.take().unwrap_or_default()).ok()?;
        status["conditions"] = healthy_conditions();
        node.status = serde_json::from_value(status).ok();
        nodes.replace_status(name, &PostParams::default(), &node).await.ok()
    })
    .await;
}

/// Renews the Lease of every node in its set every 300 ms, as agents do (every 10 s upstream).
struct Heartbeats {
    renewing: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeats {
    fn start(client: kube::Client) -> Heartbeats {
        let renewing: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let names = renewing.clone();
        let task = tokio::spawn(async move {
            let leases = Api::<Lease>::namespaced(client, LEASES);
            loop {
                // No await while the lock is held: the set is copied out.
                let names: Vec<String> = names.lock().unwrap().iter().cloned().collect();
                for name in names {
                    let _ = renew(&leases, &name).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Heartbeats { renewing, task }
    }

    fn renew(&self, name: &str) {
        self.renewing.lock().unwrap().insert(name.to_string());
    }

    fn stop(&self, name: &str) {
        self.renewing.lock().unwrap().remove(name);
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew(leases: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let renewed = Some(MicroTime(Timestamp::now()));
    match leases.get_opt(name).await? {
        Some(mut lease) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = renewed;
            leases.replace(name, &PostParams::default(), &lease).await?;
        }
        None => {
            let mut lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
            }))
            .unwrap();
            lease.spec.get_or_insert_with(Default::default).renew_time = renewed;
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Waits until the node's Lease has been renewed once (the heartbeats reach the API).
async fn renewed_once(client: &kube::Client, name: &str) {
    let leases = Api::<Lease>::namespaced(client.clone(), LEASES);
    eventually(Duration::from_secs(20), "a renewed lease", || async {
        leases.get_opt(name).await.ok().flatten().and_then(|l| l.spec?.renew_time).map(drop)
    })
    .await;
}

fn ready_status(node: &Node) -> Option<(String, Option<String>)> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

fn taints(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

/// Creates a pod bound to `node` with these tolerations (the server adds the default ones it lacks).
async fn create_bound(client: &kube::Client, name: &str, node: &str, tolerations: Value) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await.expect("pod created")
}

/// A pod bound to `node`, reported Running and Ready as its kubelet would.
async fn bind_pod(client: &kube::Client, name: &str, node: &str, tolerations: Value) -> Pod {
    let mut running = create_bound(client, name, node, tolerations).await;
    running.status = serde_json::from_value(json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
    ]}))
    .ok();
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.replace_status(name, &PostParams::default(), &running).await.expect("pod status posted")
}

/// The value of a `kubectl describe` field: the rest of the line that starts with `label`, then each indented
/// line that continues it.
fn described(text: &str, label: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(label));
    let Some(first) = lines.next() else { return Vec::new() };
    let mut values = vec![first[label.len()..].trim().to_string()];
    values.extend(lines.take_while(|l| l.starts_with(' ') && !l.trim().is_empty()).map(|l| l.trim().to_string()));
    values
}

fn unreachable_for(seconds: i64) -> Value {
    json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
        "tolerationSeconds": seconds}])
}

fn pod_ready(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

/// The time a Time field holds.
fn timestamp(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Timestamp {
    t.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_its_pods_evicted_and_it_comes_back() {
    // Phase 1: a cluster with a 4 s grace period; kubectl and a client on a follower.
    let cluster = TestCluster::start_with(3, &["--node-monitor-grace-period", "4s"]).await;
    let follower = (cluster.leader().await + 1) % 3;
    let k = Kubectl::for_replica(&cluster, follower).await;
    let client = harness::kube_client(&cluster, follower).await;
    let nodes = Api::<Node>::all(client.clone());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let heartbeats = Heartbeats::start(client.clone());

    // Phase 2: a node registered by kubectl without any status gets the not-ready taint at once (admission)...
    let manifest = k.manifest("fresh.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: fresh\n");
    k.ok(&["create", "-f", &manifest]);
    let fresh = k.ok(&["describe", "node", "fresh"]);
    assert_eq!(described(&fresh, "Taints:"), ["node.kubernetes.io/not-ready:NoSchedule"], "{fresh}");
    // ... which goes once it heartbeats and reports Ready.
    heartbeats.renew("fresh");
    renewed_once(&client, "fresh").await;
    report_ready(&client, "fresh").await;
    eventually(Duration::from_secs(20), "the registration taint gone", || async {
        let node = nodes.get("fresh").await.ok()?;
        taints(&node).is_empty().then_some(())
    })
    .await;
    assert_eq!(described(&k.ok(&["describe", "node", "fresh"]), "Taints:"), ["<none>"]);

    // Phase 3: two heartbeating nodes, and pods bound to one of them.
    for name in ["alive", "lost"] {
        heartbeats.renew(name);
        register(&client, name).await;
        renewed_once(&client, name).await;
    }
    for name in ["alive", "lost"] {
        eventually(Duration::from_secs(20), "a Ready node without taints", || async {
            let node = nodes.get(name).await.ok()?;
            taints(&node).is_empty().then_some(())
        })
        .await;
    }
    bind_pod(&client, "short", "lost", unreachable_for(2)).await;
    bind_pod(&client, "long", "lost", unreachable_for(120)).await;
    bind_pod(&client, "plain", "lost", json!([])).await;
    bind_pod(&client, "bystander", "alive", json!([])).await;
    // Admission gave the pods what upstream's API server gives them (kubectl lists tolerations by key).
    let plain = k.ok(&["describe", "pod", "plain"]);
    assert_eq!(described(&plain, "Service Account:"), ["default"], "{plain}");
    assert_eq!(
        described(&plain, "Tolerations:"),
        [
            "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
            "node.kubernetes.io/unreachable:NoExecute op=Exists for 300s"
        ],
        "{plain}"
    );
    let short = k.ok(&["describe", "pod", "short"]);
    assert_eq!(
        described(&short, "Tolerations:"),
        [
            "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
            "node.kubernetes.io/unreachable:NoExecute op=Exists for 2s"
        ],
        "{short}"
    );

    // Phase 4: "lost" stops heartbeating. It stays Ready within its grace period, then becomes Unknown with the
    // unreachable taints.
    heartbeats.stop("lost");
    let stopped = Instant::now();
    let unknown = eventually(Duration::from_secs(30), "the silent node Unknown", || async {
        let node = nodes.get("lost").await.ok()?;
        (ready_status(&node)?.0 == "Unknown").then_some(node)
    })
    .await;
    assert!(stopped.elapsed() >= Duration::from_secs(2), "declared Unknown after {:?}", stopped.elapsed());
    assert_eq!(ready_status(&unknown).unwrap().1.as_deref(), Some("NodeStatusUnknown"));
    let unreachable = eventually(Duration::from_secs(10), "the unreachable taints", || async {
        let node = nodes.get("lost").await.ok()?;
        (taints(&node).len() == 2).then_some(node)
    })
    .await;
    let mut keys = taints(&unreachable);
    keys.sort();
    assert_eq!(keys, ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]);
    let lost = k.ok(&["describe", "node", "lost"]);
    let mut shown = described(&lost, "Taints:");
    shown.sort();
    assert_eq!(
        shown,
        ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"],
        "{lost}"
    );
    let ready_row = lost.lines().find(|l| l.trim_start().starts_with("Ready ")).expect("a Ready row");
    assert!(ready_row.contains("Unknown") && ready_row.contains("NodeStatusUnknown"), "{lost}");
    assert!(ready_row.contains("Kubelet stopped posting node status."), "{lost}");
    assert!(lost.contains("Node lost status is now: NodeNotReady"), "the node controller's event: {lost}");
    let healthy = nodes.get("alive").await.unwrap();
    assert_eq!(ready_status(&healthy).unwrap().0, "True");
    assert!(taints(&healthy).is_empty(), "the heartbeating node is left alone");

    // Phase 5: the pod tolerating 2 s goes 2 s after the taint, not before; the others stay, marked not ready.
    let tainted_at = unreachable.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].time_added.clone().unwrap();
    let evicted = eventually(Duration::from_secs(20), "the 2 s pod evicted", || async {
        let pod = pods.get("short").await.ok()?;
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    // A bound pod is deleted gracefully (30 s): its deletionTimestamp says when it was evicted.
    let deleted_at = timestamp(evicted.metadata.deletion_timestamp.as_ref().unwrap());
    let grace = evicted.metadata.deletion_grace_period_seconds.unwrap();
    let evicted_at = deleted_at - jiff::SignedDuration::from_secs(grace);
    assert!(
        evicted_at >= timestamp(&tainted_at) + jiff::SignedDuration::from_secs(1),
        "evicted at {evicted_at}, tainted at {}",
        tainted_at.0
    );
    let events = k.json(&["get", "events"]);
    let eviction = events["items"].as_array().unwrap().iter().find(|e| e["reason"] == "TaintManagerEviction");
    let eviction = eviction.expect("an eviction event");
    assert_eq!(eviction["message"], "Marking for deletion Pod default/short");
    assert_eq!(eviction["involvedObject"]["name"], "short");
    let short = k.ok(&["describe", "pod", "short"]);
    assert!(short.contains("Marking for deletion Pod default/short"), "{short}");
    let disruption = short.lines().find(|l| l.trim_start().starts_with("DisruptionTarget")).expect("a condition row");
    assert!(disruption.contains("True"), "{short}");
    let long = eventually(Duration::from_secs(10), "the tolerant pod marked not ready", || async {
        let pod = pods.get("long").await.ok()?;
        (pod_ready(&pod).as_deref() == Some("False")).then_some(pod)
    })
    .await;
    assert!(long.metadata.deletion_timestamp.is_none(), "a pod tolerating 120 s is not evicted after 2 s");
    for name in ["plain", "bystander"] {
        let pod = pods.get(name).await.unwrap();
        assert!(pod.metadata.deletion_timestamp.is_none(), "{name} is not evicted");
    }
    assert_eq!(pod_ready(&pods.get("bystander").await.unwrap()).as_deref(), Some("True"));

    // Phase 6: the node heartbeats and reports Ready again: its taints go, and its pods stay.
    heartbeats.renew("lost");
    report_ready(&client, "lost").await;
    eventually(Duration::from_secs(20), "the taints gone", || async {
        let node = nodes.get("lost").await.ok()?;
        taints(&node).is_empty().then_some(())
    })
    .await;
    assert_eq!(described(&k.ok(&["describe", "node", "lost"]), "Taints:"), ["<none>"]);
    assert!(pods.get("long").await.unwrap().metadata.deletion_timestamp.is_none());

    // Phase 7: pods bound to a node that is deleted, or that never existed, are removed; others stay.
    create_bound(&client, "ghost-pod", "ghost", json!([])).await;
    heartbeats.renew("doomed");
    register(&client, "doomed").await;
    bind_pod(&client, "doomed-pod", "doomed", json!([])).await;
    heartbeats.stop("doomed");
    k.ok(&["delete", "node", "doomed"]);
    for name in ["ghost-pod", "doomed-pod"] {
        eventually(Duration::from_secs(20), "the orphaned pod removed", || async {
            pods.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    assert!(pods.get_opt("bystander").await.unwrap().is_some());
    let listed = k.ok(&["get", "pods"]);
    assert!(!listed.contains("ghost-pod") && listed.contains("bystander"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_gives_every_node_a_full_grace_period() {
    // Phase 1: a node heartbeating on a cluster with a 6 s grace period.
    let grace = Duration::from_secs(6);
    let cluster = TestCluster::start_with(3, &["--node-monitor-grace-period", "6s"]).await;
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    let client = harness::kube_client(&cluster, survivor).await;
    let nodes = Api::<Node>::all(client.clone());
    let heartbeats = Heartbeats::start(client.clone());
    heartbeats.renew("n");
    register(&client, "n").await;
    renewed_once(&client, "n").await;
    eventually(Duration::from_secs(20), "the node Ready without taints", || async {
        taints(&nodes.get("n").await.ok()?).is_empty().then_some(())
    })
    .await;

    // Phase 2: it stops; halfway through its grace period the leader is killed.
    heartbeats.stop("n");
    tokio::time::sleep(grace / 2).await;
    let mut cluster = cluster;
    cluster.local.signal(leader, Signal::Kill);
    let killed = Instant::now();
    assert_ne!(ready_status(&nodes.get("n").await.unwrap()).unwrap().0, "Unknown");

    // Phase 3: the node's old heartbeat would make it overdue half a grace period from now; the new leader
    // observes it for a full grace period of its own first.
    let observed_until = killed + grace - Duration::from_millis(500);
    while Instant::now() < observed_until {
        if let Ok(node) = nodes.get("n").await {
            let status = ready_status(&node).unwrap().0;
            assert_ne!(status, "Unknown", "declared Unknown {:?} after the leader was killed", killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then it is declared dead.
    eventually(Duration::from_secs(30), "the node Unknown under the new leader", || async {
        (ready_status(&nodes.get("n").await.ok()?)?.0 == "Unknown").then_some(())
    })
    .await;
    assert!(killed.elapsed() >= grace, "declared Unknown {:?} after the leader was killed", killed.elapsed());
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let log = cluster.log(new_leader);
    assert!(log.contains("node lifecycle controller started"), "the new leader runs the controller");
}
