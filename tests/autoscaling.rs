//! Resource metrics and the HorizontalPodAutoscaler on a real three-replica cluster with a fake-runtime agent,
//! through real kubectl: `kubectl top` shows the usage pods declare (fake runtime annotations) on any replica
//! (a follower relays to the leader), and an autoscaler made by `kubectl autoscale` scales a Deployment up and
//! back down as a driven load moves, on CPU utilization and on a per-pod metric, with the targets
//! `kubectl get hpa` prints.

mod harness;

use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::{follower, raw_status, Kubectl};
use harness::pods::wait_nodes;
use harness::{eventually, kube_client, TestCluster};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

/// Scrapes and autoscaler evaluations every second, so that a test sees a change within a few seconds.
const FAST: &[&str] = &["--metric-resolution", "1s", "--horizontal-pod-autoscaler-sync-period", "1s"];

fn deployment(name: &str, replicas: u32, cpu_request: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{{annotations}}}
    spec:
      containers:
      - name: c
        image: app:1
        resources:
          requests: {{cpu: {cpu_request}, memory: 64Mi}}
"
    )
}

/// The rows of `kubectl top pod|node` (without headers), split into cells.
fn top(k: &Kubectl, args: &[&str]) -> Vec<Vec<String>> {
    let out = k.run(&[&["top"], args, &["--no-headers"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_shows_the_usage_pods_declare_on_every_replica() {
    let cluster = TestCluster::start_with(3, FAST).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _agent = Agent::fake(&cluster, "metered", &[]);
    wait_nodes(&k, 1).await;
    let annotations = "fake.raftsman.io/cpu: 250m, fake.raftsman.io/memory: 48Mi";
    k.ok(&["apply", "-f", &k.manifest("web.yaml", &deployment("web", 2, "500m", annotations))]);

    let rows = eventually(Duration::from_secs(60), "kubectl top to show both pods", || async {
        let rows = top(&k, &["pod", "-l", "app=web"]);
        (rows.len() == 2).then_some(rows)
    })
    .await;
    for row in &rows {
        assert!(row[0].starts_with("web-"), "{row:?}");
        assert_eq!((row[1].as_str(), row[2].as_str()), ("250m", "48Mi"), "{row:?}");
    }
    // The node uses what its pods use; a fake node has 32 cores and 256Gi.
    let nodes = top(&k, &["node"]);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0][..3], ["metered".to_string(), "500m".to_string(), "1%".to_string()], "{nodes:?}");
    assert_eq!(nodes[0][3], "96Mi", "{nodes:?}");

    // The same objects from the leader itself and from the other follower; labels are the pods'.
    for i in 0..3 {
        let list = raw_status(
            &cluster,
            i,
            "GET",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
            "",
        )
        .await;
        assert_eq!(list["kind"], "PodMetricsList", "{list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "replica {i}: {list}");
        for item in items {
            assert_eq!(item["metadata"]["labels"]["app"], "web", "{item}");
            assert_eq!(item["containers"][0]["usage"], json!({"cpu": "250000000n", "memory": "49152Ki"}), "{item}");
            assert!(item["window"].as_str().unwrap().ends_with('s'), "{item}");
        }
    }
    let missing =
        raw_status(&cluster, follower(leader), "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope", "")
            .await;
    assert_eq!((missing["code"].as_i64(), missing["reason"].as_str()), (Some(404), Some("NotFound")), "{missing}");
    let refused = raw_status(&cluster, leader, "DELETE", "/apis/metrics.k8s.io/v1beta1/nodes/metered", "").await;
    assert_eq!(refused["code"], 405, "{refused}");

    // A change of what a pod declares shows within a few samples.
    k.ok(&["annotate", "pods", "-l", "app=web", "fake.raftsman.io/cpu=1", "--overwrite"]);
    eventually(Duration::from_secs(30), "the new usage in kubectl top", || async {
        let rows = top(&k, &["pod", "-l", "app=web"]);
        (rows.len() == 2 && rows.iter().all(|r| r[1] == "1000m")).then_some(())
    })
    .await;
}

/// Spreads `load` (in `unit`s of the annotation's quantity) evenly over the live pods of `app` by annotating
/// them, as a load balancer spreads requests: every 500 ms until aborted, at most 10 minutes.
fn drive(
    client: kube::Client,
    app: &'static str,
    key: &'static str,
    load: f64,
    unit: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, "default");
        for _ in 0..1200 {
            if let Ok(list) = pods.list(&ListParams::default().labels(&format!("app={app}"))).await {
                let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
                let share = format!("{}{unit}", (load / live.len().max(1) as f64).round() as i64);
                for pod in live {
                    let current = pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
                    if current != Some(&share) {
                        let patch = json!({"metadata": {"annotations": {key: share}}});
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let _ = pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn replicas(k: &Kubectl, deployment: &str) -> i64 {
    k.json(&["get", "deployment", deployment])["spec"]["replicas"].as_i64().unwrap_or(-1)
}

async fn wait_replicas(k: &Kubectl, deployment: &str, want: i64) {
    eventually(Duration::from_secs(90), &format!("{deployment} scaled to {want}"), || async {
        (replicas(k, deployment) == want).then_some(())
    })
    .await;
}

fn condition<'a>(hpa: &'a Value, type_: &str) -> &'a Value {
    hpa["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_scales_up_and_back_down_on_cpu_and_on_a_pods_metric() {
    let cluster = TestCluster::start_with(3, FAST).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let client = kube_client(&cluster, follower(leader)).await;
    let _agent = Agent::fake(&cluster, "scaled", &["--fake-nodes", "2"]);
    wait_nodes(&k, 2).await;

    // CPU: 200m requested, a target of 50%: each pod should use 100m.
    k.ok(&["apply", "-f", &k.manifest("cpu.yaml", &deployment("cpu", 1, "200m", "fake.raftsman.io/cpu: 100m"))]);
    let out = k.ok(&["autoscale", "deployment", "cpu", "--cpu-percent=50", "--min=1", "--max=5"]);
    assert!(out.contains("autoscaled"), "{out}");
    // Scale down without the 5 minute stabilization, to keep the test short.
    k.ok(&[
        "patch",
        "hpa",
        "cpu",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#,
    ]);
    let hpa = eventually(Duration::from_secs(60), "the autoscaler to measure its target", || async {
        let hpa = k.json(&["get", "hpa", "cpu"]);
        (condition(&hpa, "ScalingActive")["status"] == "True").then_some(hpa)
    })
    .await;
    assert_eq!(condition(&hpa, "ScalingActive")["reason"], "ValidMetricFound", "{hpa}");
    assert_eq!(hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 50, "{hpa}");
    assert_eq!(replicas(&k, "cpu"), 1, "at its target, the count stays");
    let printed = k.ok(&["get", "hpa", "cpu"]);
    assert!(printed.contains("cpu: 50%/50%"), "{printed}");

    // 800m of load where each pod should take 100m: 8 pods wanted, 5 at most.
    let load = drive(client.clone(), "cpu", "fake.raftsman.io/cpu", 800.0, "m");
    wait_replicas(&k, "cpu", 5).await;
    let hpa = eventually(Duration::from_secs(30), "the autoscaler to say it is limited", || async {
        let hpa = k.json(&["get", "hpa", "cpu"]);
        (condition(&hpa, "ScalingLimited")["status"] == "True").then_some(hpa)
    })
    .await;
    assert_eq!(condition(&hpa, "ScalingLimited")["reason"], "TooManyReplicas", "{hpa}");
    assert!(hpa["status"]["lastScaleTime"].is_string(), "{hpa}");
    load.abort();
    // 200m of load: 2 pods.
    let load = drive(client.clone(), "cpu", "fake.raftsman.io/cpu", 200.0, "m");
    wait_replicas(&k, "cpu", 2).await;
    load.abort();
    let events = k.json(&["get", "events", "--field-selector", "reason=SuccessfulRescale,involvedObject.name=cpu"]);
    let messages: Vec<&str> =
        events["items"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.starts_with("New size: 5; reason: cpu resource utilization")), "{messages:?}");
    assert!(messages.contains(&"New size: 2; reason: All metrics below target"), "{messages:?}");

    // A per-pod metric: 10 in flight per pod, 40 in all: 4 pods; then 10 in all: 1.
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "busy"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "busy"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "in_flight"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}});
    k.ok(&[
        "apply",
        "-f",
        &k.manifest("busy.yaml", &deployment("busy", 1, "100m", "fake.raftsman.io/metric.in_flight: '10'")),
    ]);
    k.ok(&["apply", "-f", &k.manifest("busy-hpa.json", &hpa.to_string())]);
    let load = drive(client.clone(), "busy", "fake.raftsman.io/metric.in_flight", 40.0, "");
    wait_replicas(&k, "busy", 4).await;
    load.abort();
    let load = drive(client, "busy", "fake.raftsman.io/metric.in_flight", 10.0, "");
    wait_replicas(&k, "busy", 1).await;
    eventually(Duration::from_secs(30), "kubectl get hpa to print the pods metric", || async {
        k.ok(&["get", "hpa", "busy"]).contains("10/10").then_some(())
    })
    .await;
    load.abort();
}
