use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::metrics::{ContainerReport, Usage};

const NOW: &str = "2026-12-06T10:10:00Z";

/// A running pod started long ago, ready since then, requesting 500m and 64Mi.
fn pod(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": "ns", "uid": name},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "startTime": "2026-12-06T09:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-06T09:00:01Z"}]}})
}

fn pods(values: Vec<serde_json::Value>) -> Vec<Arc<Pod>> {
    values.into_iter().map(|v| Arc::new(serde_json::from_value(v).unwrap())).collect()
}

fn point(millicores: u64, metric: Option<f64>) -> PodPoint {
    PodPoint {
        uid: String::new(),
        node: "n".into(),
        timestamp: "2026-12-06T10:09:55Z".into(),
        window_ms: 5000,
        containers: vec![ContainerReport {
            name: "c".into(),
            usage: Usage { cpu_nanocores: millicores * 1_000_000, memory_bytes: 32 << 20 },
        }],
        metrics: metric.map(|m| BTreeMap::from([("in_flight".to_owned(), m)])).unwrap_or_default(),
    }
}

fn cpu_target(percent: i64) -> serde_json::Value {
    let target = json!({"type": "Utilization", "averageUtilization": percent});
    json!({"type": "Resource", "resource": {"name": "cpu", "target": target}})
}

fn propose(
    current: i32,
    pods: &[Arc<Pod>],
    points: &BTreeMap<&str, PodPoint>,
    metric: &serde_json::Value,
) -> Result<Proposal, Failure> {
    let lookup = |p: &Pod| points.get(p.metadata.name.as_deref().unwrap_or_default()).cloned();
    let input = Input { current, pods, point: &lookup, now: NOW.parse().unwrap() };
    proposal(&input, metric)
}

#[test]
fn cpu_utilization_scales_by_the_ratio_of_the_ready_pods() {
    let pods = pods(vec![pod("a"), pod("b")]);
    // 450m and 350m of 500m each: 80% against a target of 40% -> 2 x 2 = 4.
    let points = BTreeMap::from([("a", point(450, None)), ("b", point(350, None))]);
    let p = propose(2, &pods, &points, &cpu_target(40)).unwrap();
    assert_eq!(p.replicas, 4);
    assert_eq!(p.status["resource"]["current"], json!({"averageUtilization": 80, "averageValue": "400m"}));
    assert_eq!(p.name, "cpu resource utilization (percentage of request)");
    // Within the tolerance (80% against 75%), the count stays.
    assert_eq!(propose(2, &pods, &points, &cpu_target(75)).unwrap().replicas, 2);
}

#[test]
fn missing_pods_count_as_the_target_on_a_scale_down_and_pending_ones_are_ignored() {
    let mut pending = pod("c");
    pending["status"]["phase"] = json!("Pending");
    let pods = pods(vec![pod("a"), pod("b"), pending]);
    // a uses 50m (10% against 80%), b has no point: on a scale-down b counts as using 100% of its request,
    // (50 + 500) / 1000 = 55%, a ratio of 0.6875 over both: ceil(0.6875 x 2) = 2, where a alone says 1.
    let points = BTreeMap::from([("a", point(50, None))]);
    assert_eq!(propose(3, &pods, &points, &cpu_target(80)).unwrap().replicas, 2);
    // Both measured low: 10% against 80% -> ceil(0.125 x 2) = 1.
    let points = BTreeMap::from([("a", point(50, None)), ("b", point(50, None))]);
    assert_eq!(propose(3, &pods, &points, &cpu_target(80)).unwrap().replicas, 1);
}

#[test]
fn unready_pods_count_as_idle_on_a_scale_up() {
    let mut starting = pod("c");
    starting["status"]["conditions"][0]["status"] = json!("False");
    let pods = pods(vec![pod("a"), pod("b"), starting]);
    // a and b at 100% against 50%: ratio 2; with c at 0: 1000/1500 = 66% -> 1.33 -> ceil(1.33 x 3) = 4.
    let points = BTreeMap::from([("a", point(500, None)), ("b", point(500, None)), ("c", point(500, None))]);
    assert_eq!(propose(3, &pods, &points, &cpu_target(50)).unwrap().replicas, 4);
}

#[test]
fn a_container_without_a_request_or_no_point_at_all_is_a_failure() {
    let mut bare = pod("a");
    bare["spec"]["containers"][0]["resources"] = json!({});
    let no_request = propose(1, &pods(vec![bare]), &BTreeMap::from([("a", point(1, None))]), &cpu_target(50));
    let failure = no_request.unwrap_err();
    assert_eq!(failure.reason, "FailedGetResourceMetric");
    assert!(failure.message.contains("missing request for cpu in container c of Pod a"), "{}", failure.message);
    let unmeasured = propose(1, &pods(vec![pod("a")]), &BTreeMap::new(), &cpu_target(50)).unwrap_err();
    assert!(unmeasured.message.contains("did not receive metrics"), "{}", unmeasured.message);
    let none = propose(1, &[], &BTreeMap::new(), &cpu_target(50)).unwrap_err();
    assert!(none.message.contains("no pods returned by selector"), "{}", none.message);
}

#[test]
fn a_pods_metric_scales_on_its_average() {
    let pods = pods(vec![pod("a"), pod("b")]);
    let metric = json!({"type": "Pods", "pods": {"metric": {"name": "in_flight"},
        "target": {"type": "AverageValue", "averageValue": "10"}}});
    let points = BTreeMap::from([("a", point(1, Some(30.0))), ("b", point(1, Some(20.0)))]);
    let p = propose(2, &pods, &points, &metric).unwrap();
    assert_eq!(p.replicas, 5, "an average of 25 against 10: ceil(2.5 x 2)");
    assert_eq!(
        p.status,
        json!({"type": "Pods", "pods": {"metric": {"name": "in_flight"},
        "current": {"averageValue": "25"}}})
    );
    let unknown = json!({"type": "External", "external": {}});
    assert_eq!(propose(2, &pods, &points, &unknown).unwrap_err().reason, "InvalidMetricSourceType");
}

#[test]
fn memory_average_value_targets_are_in_bytes() {
    let pods = pods(vec![pod("a")]);
    let metric = json!({"type": "Resource", "resource": {"name": "memory",
        "target": {"type": "AverageValue", "averageValue": "16Mi"}}});
    let p = propose(1, &pods, &BTreeMap::from([("a", point(1, None))]), &metric).unwrap();
    assert_eq!(p.replicas, 2);
    assert_eq!(p.status["resource"]["current"]["averageValue"], json!((32u64 << 20).to_string()));
}
