//! The scheduler on a three-replica cluster, through a follower: the binding subresource's preconditions and
//! condition, `kubectl run` placed and described, unschedulable pods explained and placed once a node fits,
//! spreading, node selectors, taints and tolerations, and a leader SIGKILL while 1,000 pods are being bound.
//!
//! Nodes are created through the API as an agent would register them (status written through the status
//! subresource, a fresh Lease in `kube-node-lease`); no agent runs.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use raftsman::cluster::local::Signal;
use serde_json::{json, Value};

use harness::kubectl::{follower, raw_status, Kubectl};
use harness::{eventually, TestCluster};

fn micro_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// What a node offers and how it is marked.
struct NodeSpec<'a> {
    name: &'a str,
    cpu: &'a str,
    pods: &'a str,
    labels: &'a [(&'a str, &'a str)],
    taints: Value,
}

impl<'a> NodeSpec<'a> {
    fn new(name: &'a str) -> NodeSpec<'a> {
        NodeSpec { name, cpu: "4", pods: "110", labels: &[], taints: json!([]) }
    }
}

/// Registers a Ready node as an agent would: the Node, its status, and a fresh Lease.
async fn register(client: &kube::Client, spec: NodeSpec<'_>) {
    let mut labels: BTreeMap<&str, &str> = spec.labels.iter().copied().collect();
    labels.insert("kubernetes.io/hostname", spec.name);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"taints": spec.taints},
    }))
    .unwrap();
    let nodes = Api::<Node>::all(client.clone());
    nodes.create(&PostParams::default(), &node).await.expect("node created");
    let now = raftsman::apis::time::now();
    let resources = json!({"cpu": spec.cpu, "memory": "8Gi", "pods": spec.pods});
    let status = json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
         "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes.patch_status(spec.name, &PatchParams::default(), &Patch::Merge(status)).await.expect("node status");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": spec.name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": spec.name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await
        .expect("node lease");
}

fn pod_manifest(name: &str, extra_spec: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn node_of(api: &Api<Pod>, name: &str) -> Option<String> {
    api.get(name).await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
}

async fn wait_bound(api: &Api<Pod>, name: &str) -> String {
    eventually(Duration::from_secs(20), &format!("pod {name} bound"), || node_of(api, name)).await
}

fn condition(pod: &Value, kind: &str) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn binding_honours_preconditions_refuses_deleting_pods_and_sets_pod_scheduled() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;
    let client = harness::kube_client(&cluster, i).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    // Pods for another scheduler: this one leaves them alone.
    let other = json!({"schedulerName": "other-scheduler"});
    pods.create(&PostParams::default(), &pod_manifest("web", other.clone())).await.unwrap();
    let web = k.json(&["get", "pod", "web"]);
    let (uid, rv) = (web["metadata"]["uid"].as_str().unwrap(), web["metadata"]["resourceVersion"].as_str().unwrap());
    let binding = |uid: &str, rv: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web", "uid": uid, "resourceVersion": rv},
            "target": {"kind": "Node", "name": "node-a"}})
        .to_string()
    };
    let path = "/api/v1/namespaces/default/pods/web/binding";

    // Phase 1: a Binding naming another uid or resourceVersion is a conflict and binds nothing.
    let wrong_uid = raw_status(&cluster, i, "POST", path, &binding("not-the-uid", "")).await;
    assert_eq!(wrong_uid["code"], 409, "{wrong_uid}");
    let message = wrong_uid["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Precondition failed: UID in precondition: not-the-uid, UID in object meta: {uid}")),
        "{message}"
    );
    let wrong_rv = raw_status(&cluster, i, "POST", "/api/v1/namespaces/default/bindings", &binding(uid, "1")).await;
    assert_eq!(wrong_rv["code"], 409, "{wrong_rv}");
    assert!(wrong_rv["message"].as_str().unwrap().contains("ResourceVersion in precondition: 1"), "{wrong_rv}");
    assert_eq!(node_of(&pods, "web").await, None);

    // Phase 2: the right ones bind, and PodScheduled=True comes in the same write.
    let bound = raw_status(&cluster, i, "POST", path, &binding(uid, rv)).await;
    assert_eq!((bound["status"].as_str(), bound["code"].as_i64()), (Some("Success"), Some(201)), "{bound}");
    let web = k.json(&["get", "pod", "web"]);
    assert_eq!(web["spec"]["nodeName"], "node-a");
    let scheduled = condition(&web, "PodScheduled");
    assert_eq!(scheduled["status"], "True", "{web}");
    assert!(scheduled["lastTransitionTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{scheduled}");
    assert_eq!(web["metadata"]["resourceVersion"].as_str().map(|v| v != rv), Some(true));

    // Phase 3: a pod being deleted (held by a finalizer) cannot be bound.
    let mut held = pod_manifest("held", other);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &held).await.unwrap();
    k.ok(&["delete", "pod", "held", "--wait=false"]);
    let deleting = raw_status(
        &cluster,
        i,
        "POST",
        "/api/v1/namespaces/default/pods/held/binding",
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"held"},"target":{"name":"node-a"}}"#,
    )
    .await;
    assert_eq!(deleting["code"], 409, "{deleting}");
    assert!(
        deleting["message"].as_str().unwrap().ends_with("pod held is being deleted, cannot be assigned to a host"),
        "{deleting}"
    );
    assert_eq!(node_of(&pods, "held").await, None);
    k.ok(&["patch", "pod", "held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_run_is_placed_and_an_unschedulable_pod_says_why_until_a_node_fits() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;
    let client = harness::kube_client(&cluster, i).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    for name in ["node-1", "node-2", "node-3"] {
        register(&client, NodeSpec::new(name)).await;
    }

    // Phase 1: kubectl run is placed on a node; get -o wide shows it, describe shows the condition and event.
    k.ok(&["run", "web", "--image=nginx", "--restart=Never"]);
    let node = wait_bound(&pods, "web").await;
    assert!(["node-1", "node-2", "node-3"].contains(&node.as_str()), "{node}");
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    let row = wide.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("{wide}"));
    assert!(row.split_whitespace().any(|c| c == node), "{wide}");
    let described = eventually(Duration::from_secs(10), "the Scheduled event", || async {
        let d = k.ok(&["describe", "pod", "web"]);
        d.contains("Scheduled").then_some(d)
    })
    .await;
    assert!(described.lines().any(|l| l.trim_start().starts_with("PodScheduled") && l.contains("True")), "{described}");
    let event_line = described.lines().find(|l| l.contains("  Scheduled  ")).unwrap_or_else(|| panic!("{described}"));
    assert!(event_line.trim_start().starts_with("Normal"), "{event_line}");
    assert!(event_line.contains("default-scheduler"), "{event_line}");
    assert!(event_line.ends_with(&format!("Successfully assigned default/web to {node}")), "{event_line}");

    // Phase 2: a pod asking for more CPU than any node has stays unbound, and says why, as kube-scheduler
    // words it, in its condition and in describe.
    let big = pod_manifest(
        "big",
        json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "6"}}}]}),
    );
    pods.create(&PostParams::default(), &big).await.unwrap();
    let expected = "0/3 nodes are available: 3 Insufficient cpu. \
                    preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let pod = eventually(Duration::from_secs(20), "the unschedulable condition", || async {
        let pod = k.json(&["get", "pod", "big"]);
        (condition(&pod, "PodScheduled")["reason"] == "Unschedulable").then_some(pod)
    })
    .await;
    let unschedulable = condition(&pod, "PodScheduled");
    assert_eq!(unschedulable["status"], "False");
    assert_eq!(unschedulable["message"], expected);
    assert_eq!(pod["spec"]["nodeName"], Value::Null);
    let described = eventually(Duration::from_secs(10), "the FailedScheduling event", || async {
        let d = k.ok(&["describe", "pod", "big"]);
        d.contains("FailedScheduling").then_some(d)
    })
    .await;
    assert!(
        described.lines().any(|l| l.trim_start().starts_with("PodScheduled") && l.contains("False")),
        "{described}"
    );
    let event_line = described.lines().find(|l| l.contains("FailedScheduling")).unwrap();
    assert!(event_line.trim_start().starts_with("Warning") && event_line.contains("default-scheduler"), "{event_line}");
    assert!(event_line.ends_with(expected), "{event_line}");

    // Phase 3: a node that fits appears: the pod is placed there, and its condition turns True.
    register(&client, NodeSpec { cpu: "8", ..NodeSpec::new("node-big") }).await;
    assert_eq!(wait_bound(&pods, "big").await, "node-big");
    let pod = k.json(&["get", "pod", "big"]);
    assert_eq!(condition(&pod, "PodScheduled")["status"], "True");
    // One FailedScheduling Event for the pod per message, however often it was tried: repeats are counted.
    let events = k.json(&["get", "events", "--field-selector", "involvedObject.name=big,reason=FailedScheduling"]);
    let same: Vec<&Value> = events["items"].as_array().unwrap().iter().filter(|e| e["message"] == expected).collect();
    assert_eq!(same.len(), 1, "{events}");
    assert_eq!(same[0]["source"]["component"], "default-scheduler");
    assert!(same[0]["count"].as_i64().is_some_and(|c| c >= 1), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_spread_and_node_selectors_taints_and_tolerations_hold() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;
    let client = harness::kube_client(&cluster, i).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    register(&client, NodeSpec::new("plain")).await;
    register(&client, NodeSpec { labels: &[("disk", "ssd")], ..NodeSpec::new("fast") }).await;
    let taints = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
    register(&client, NodeSpec { taints, ..NodeSpec::new("db") }).await;

    // Phase 1: six pods of one controller spread over the two nodes they may use, three each, none on the
    // tainted one.
    k.ok(&["create", "configmap", "owner"]);
    let owner_uid = k.json(&["get", "configmap", "owner"])["metadata"]["uid"].as_str().unwrap().to_string();
    for n in 0..6 {
        let mut pod = pod_manifest(&format!("spread-{n}"), json!({}));
        pod.metadata.owner_references = Some(vec![serde_json::from_value(json!({"apiVersion": "v1",
            "kind": "ConfigMap", "name": "owner", "uid": owner_uid, "controller": true}))
        .unwrap()]);
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for n in 0..6 {
        *per_node.entry(wait_bound(&pods, &format!("spread-{n}")).await).or_default() += 1;
    }
    assert_eq!(per_node, HashMap::from([("plain".to_string(), 3), ("fast".to_string(), 3)]));

    // Phase 2: a node selector picks its node; a toleration opens the tainted node.
    pods.create(&PostParams::default(), &pod_manifest("wants-ssd", json!({"nodeSelector": {"disk": "ssd"}})))
        .await
        .unwrap();
    assert_eq!(wait_bound(&pods, "wants-ssd").await, "fast");
    let tolerating = json!({"nodeSelector": {"kubernetes.io/hostname": "db"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]});
    pods.create(&PostParams::default(), &pod_manifest("tolerates", tolerating)).await.unwrap();
    assert_eq!(wait_bound(&pods, "tolerates").await, "db");
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}],
                               "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["db"]}]}]}}}});
    pods.create(&PostParams::default(), &pod_manifest("no-ssd", affinity)).await.unwrap();
    assert_eq!(wait_bound(&pods, "no-ssd").await, "plain");

    // Phase 3: without the toleration the tainted node refuses, and the message says so.
    pods.create(
        &PostParams::default(),
        &pod_manifest("intolerant", json!({"nodeSelector": {"kubernetes.io/hostname": "db"}})),
    )
    .await
    .unwrap();
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, \
                    2 node(s) didn't match Pod's node affinity/selector. \
                    preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    eventually(Duration::from_secs(20), "the taint to be named", || async {
        let pod = k.json(&["get", "pod", "intolerant"]);
        (condition(&pod, "PodScheduled")["message"] == expected).then_some(())
    })
    .await;
    assert_eq!(node_of(&pods, "intolerant").await, None);
    // A cordoned node takes nothing new.
    k.ok(&["cordon", "plain"]);
    pods.create(
        &PostParams::default(),
        &pod_manifest("to-plain", json!({"nodeSelector": {"kubernetes.io/hostname": "plain"}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "the cordon to be named", || async {
        let pod = k.json(&["get", "pod", "to-plain"]);
        condition(&pod, "PodScheduled")["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 node(s) were unschedulable"))
            .then_some(())
    })
    .await;
    k.ok(&["uncordon", "plain"]);
    assert_eq!(wait_bound(&pods, "to-plain").await, "plain");
}

/// Per pod, the node the watch first saw it bound to, and any pod it later saw on another node (or unbound).
#[derive(Default)]
struct Placements {
    first: HashMap<String, String>,
    violations: Vec<String>,
}

fn watch_placements(api: Api<Pod>, seen: Arc<Mutex<Placements>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let (Ok(Event::Apply(pod)) | Ok(Event::InitApply(pod))) = event else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let node = pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty());
            let mut seen = seen.lock().unwrap();
            match (seen.first.get(&name).cloned(), node) {
                (None, Some(node)) => {
                    seen.first.insert(name, node);
                }
                (Some(first), Some(node)) if first != node => {
                    seen.violations.push(format!("{name}: {first} then {node}"))
                }
                (Some(first), None) => seen.violations.push(format!("{name}: {first} then unbound")),
                _ => {}
            }
        }
    })
}

/// Creates `count` bare pods through `api`, `concurrency` at a time, retrying what the API could not take
/// (an election in progress); a create that already happened counts.
async fn create_pods(api: &Api<Pod>, prefix: &str, count: usize, concurrency: usize) {
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |n| async move {
            let pod = pod_manifest(&format!("{prefix}-{n:05}"), json!({}));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(e)) if e.code == 409 => return,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "pod {n} not created: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_while_1000_pods_are_bound_binds_each_once_and_the_next_leader_takes_over() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let i = follower(leader);
    let client = harness::kube_client(&cluster, i).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    for n in 0..20 {
        register(&client, NodeSpec::new(&format!("node-{n:02}"))).await;
    }
    let seen = Arc::new(Mutex::new(Placements::default()));
    let watch = watch_placements(pods.clone(), seen.clone());

    // Phase 1: 1,000 pods are created; once 200 are bound, the leader is SIGKILLed.
    let creating = tokio::spawn({
        let pods = pods.clone();
        async move { create_pods(&pods, "bulk", 1000, 32).await }
    });
    eventually(Duration::from_secs(30), "200 pods bound", || async {
        (seen.lock().unwrap().first.len() >= 200).then_some(())
    })
    .await;
    cluster.local.signal(leader, Signal::Kill);
    let bound_at_kill = seen.lock().unwrap().first.len();
    let killed = Instant::now();
    creating.await.unwrap();

    // Phase 2: every pod ends up bound, the new leader's scheduler binding what was left.
    eventually(Duration::from_secs(45), "all 1,000 pods bound", || async {
        (seen.lock().unwrap().first.len() == 1000).then_some(())
    })
    .await;
    let took_over = killed.elapsed();
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    assert!(bound_at_kill < 1000, "the kill came after every pod was bound");
    let violations = seen.lock().unwrap().violations.clone();
    assert!(violations.is_empty(), "pods moved: {violations:?}");
    // What the API holds agrees with what the watch saw.
    let listed = pods.list(&ListParams::default()).await.unwrap();
    let seen_now = seen.lock().unwrap();
    assert_eq!(listed.items.len(), 1000);
    for pod in &listed.items {
        let name = pod.metadata.name.clone().unwrap();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert_eq!(node.as_ref(), seen_now.first.get(&name), "{name}");
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for node in seen_now.first.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 20, "pods spread over every node: {per_node:?}");
    eprintln!("bound {bound_at_kill} before the kill; all 1,000 bound {took_over:?} after it");
    watch.abort();
}

/// Binding throughput: `SCHED_BENCH_PODS` bare pods (default 2,000) created by 50 clients over
/// `SCHED_BENCH_NODES` API-created nodes (default 100). Run by hand:
/// `cargo nextest run --release --test scheduler -E 'test(/throughput/)' --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn binding_throughput() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (count, node_count) = (env("SCHED_BENCH_PODS", 2000), env("SCHED_BENCH_NODES", 100));
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let client = harness::kube_client(&cluster, i).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    futures::stream::iter(0..node_count)
        .for_each_concurrent(16, |n| {
            let client = client.clone();
            async move { register(&client, NodeSpec::new(&format!("node-{n:03}"))).await }
        })
        .await;
    let seen = Arc::new(Mutex::new(Placements::default()));
    let watch = watch_placements(pods.clone(), seen.clone());
    let started = Instant::now();
    create_pods(&pods, "bench", count, 50).await;
    let created = started.elapsed();
    let bound_when_created = seen.lock().unwrap().first.len();
    eventually(Duration::from_secs(300), "every pod bound", || async {
        (seen.lock().unwrap().first.len() == count).then_some(())
    })
    .await;
    let all_bound = started.elapsed();
    assert!(seen.lock().unwrap().violations.is_empty());
    eprintln!(
        "{count} pods over {node_count} nodes: created in {created:?} ({:.0}/s), {bound_when_created} bound by then; \
         all bound after {all_bound:?} ({:.0} pods/s from the first create)",
        count as f64 / created.as_secs_f64(),
        count as f64 / all_bound.as_secs_f64()
    );
    watch.abort();
}
