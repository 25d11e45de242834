//! Conversions between the versions a kind is served at and the one it is stored at: `autoscaling/v1`
//! HorizontalPodAutoscalers are stored as `autoscaling/v2` ones, `events.k8s.io/v1` Events as core `v1` Events.
//!
//! Invariants: a conversion never fails and never panics (a field of an unexpected type is carried as it is or
//! dropped, and validation of the served form has already run); converting to the stored form and back gives
//! the object that was converted, so a write through one version that changes nothing is seen as no change.
//! What the older version cannot express (other metrics, conditions, scaling behaviour of an HPA) is kept in
//! annotations of the older form, as upstream does, so a read-modify-write through it loses nothing.

use serde_json::{json, Map, Value};

/// Annotations of an `autoscaling/v1` HPA that carry what only `autoscaling/v2` can express.
const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Moves `from[old]` to `to[new]` when present.
fn carry(from: &mut Map<String, Value>, to: &mut Map<String, Value>, old: &str, new: &str) {
    if let Some(value) = from.remove(old) {
        to.insert(new.to_owned(), value);
    }
}

fn annotations(meta: &mut Map<String, Value>) -> &mut Map<String, Value> {
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta.insert("annotations".to_owned(), json!({}));
    }
    meta.get_mut("annotations").and_then(Value::as_object_mut).expect("annotations was just made an object")
}

/// Sets annotation `key` to the JSON of `value`, unless it is an empty list.
fn annotate(meta: &mut Map<String, Value>, key: &str, value: Value) {
    if value.as_array().is_some_and(Vec::is_empty) || value.is_null() {
        return;
    }
    annotations(meta).insert(key.to_owned(), Value::String(value.to_string()));
}

/// Removes annotation `key` and decodes it; a value that is not JSON is dropped, as upstream drops it.
fn take_annotation(meta: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let map = meta.get_mut("annotations").and_then(Value::as_object_mut)?;
    let text = map.remove(key)?;
    if map.is_empty() {
        meta.remove("annotations");
    }
    serde_json::from_str(text.as_str()?).ok()
}

/// Whether a v2 metric is the CPU utilization target that v1's `targetCPUUtilizationPercentage` holds.
fn cpu_utilization(metric: &Value) -> Option<&Value> {
    let resource = metric.get("resource")?;
    let is_cpu = metric.get("type")? == "Resource" && resource.get("name")? == "cpu";
    let target = resource.get("target").or_else(|| resource.get("current"))?;
    let utilization = target.get("averageUtilization")?;
    (is_cpu && target.get("type").is_none_or(|t| t == "Utilization")).then_some(utilization)
}

/// An `autoscaling/v1` HPA as the `autoscaling/v2` object it is stored as.
pub fn autoscaling_v1_to_v2(hpa: Value) -> Value {
    let mut hpa = object(hpa);
    hpa.insert("apiVersion".to_owned(), json!("autoscaling/v2"));
    let mut meta = object(hpa.remove("metadata").unwrap_or_default());
    let mut spec = object(hpa.remove("spec").unwrap_or_default());
    let mut metrics = Vec::new();
    if let Some(target) = spec.remove("targetCPUUtilizationPercentage").filter(|t| !t.is_null()) {
        metrics.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    if let Some(Value::Array(others)) = take_annotation(&mut meta, METRICS_ANNOTATION) {
        metrics.extend(others);
    }
    if !metrics.is_empty() {
        spec.insert("metrics".to_owned(), Value::Array(metrics));
    }
    if let Some(behavior) = take_annotation(&mut meta, BEHAVIOR_ANNOTATION) {
        spec.insert("behavior".to_owned(), behavior);
    }
    let mut status = object(hpa.remove("status").unwrap_or_default());
    let mut current = Vec::new();
    if let Some(utilization) = status.remove("currentCPUUtilizationPercentage").filter(|u| !u.is_null()) {
        current.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": utilization}}}));
    }
    if let Some(Value::Array(others)) = take_annotation(&mut meta, CURRENT_METRICS_ANNOTATION) {
        current.extend(others);
    }
    if !current.is_empty() {
        status.insert("currentMetrics".to_owned(), Value::Array(current));
    }
    if let Some(conditions) = take_annotation(&mut meta, CONDITIONS_ANNOTATION) {
        status.insert("conditions".to_owned(), conditions);
    }
    hpa.insert("metadata".to_owned(), Value::Object(meta));
    hpa.insert("spec".to_owned(), Value::Object(spec));
    if !status.is_empty() {
        // v2 requires `desiredReplicas` in a status; v1 always has it.
        status.entry("desiredReplicas").or_insert(json!(0));
        hpa.insert("status".to_owned(), Value::Object(status));
    }
    Value::Object(hpa)
}

/// Removes the v2 metric list `list` from `map`, sets `field` to the first CPU utilization in it (v1's one
/// metric), and returns the other metrics.
fn take_cpu_utilization(map: &mut Map<String, Value>, list: &str, field: &str) -> Vec<Value> {
    let mut metrics = match map.remove(list) {
        Some(Value::Array(metrics)) => metrics,
        _ => Vec::new(),
    };
    if let Some(i) = metrics.iter().position(|m| cpu_utilization(m).is_some()) {
        let utilization = cpu_utilization(&metrics.remove(i)).cloned();
        map.insert(field.to_owned(), utilization.unwrap_or_default());
    }
    metrics
}

/// A stored `autoscaling/v2` HPA as `autoscaling/v1` shows it.
pub fn autoscaling_v2_to_v1(hpa: Value) -> Value {
    let mut hpa = object(hpa);
    hpa.insert("apiVersion".to_owned(), json!("autoscaling/v1"));
    let mut meta = object(hpa.remove("metadata").unwrap_or_default());
    let mut spec = object(hpa.remove("spec").unwrap_or_default());
    let others = take_cpu_utilization(&mut spec, "metrics", "targetCPUUtilizationPercentage");
    annotate(&mut meta, METRICS_ANNOTATION, Value::Array(others));
    if let Some(behavior) = spec.remove("behavior") {
        annotate(&mut meta, BEHAVIOR_ANNOTATION, behavior);
    }
    let mut status = object(hpa.remove("status").unwrap_or_default());
    let other_current = take_cpu_utilization(&mut status, "currentMetrics", "currentCPUUtilizationPercentage");
    annotate(&mut meta, CURRENT_METRICS_ANNOTATION, Value::Array(other_current));
    if let Some(conditions) = status.remove("conditions") {
        annotate(&mut meta, CONDITIONS_ANNOTATION, conditions);
    }
    hpa.insert("metadata".to_owned(), Value::Object(meta));
    hpa.insert("spec".to_owned(), Value::Object(spec));
    if !status.is_empty() {
        hpa.insert("status".to_owned(), Value::Object(status));
    }
    Value::Object(hpa)
}

/// The fields that change name between `events.k8s.io/v1` (first) and core `v1` (second) Events.
const EVENT_RENAMES: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename_event(event: Value, api_version: &str, to_core: bool) -> Value {
    let mut from = object(event);
    let mut to = Map::new();
    for (new, old) in EVENT_RENAMES {
        let (source, target) = if to_core { (new, old) } else { (old, new) };
        carry(&mut from, &mut to, source, target);
    }
    to.extend(from);
    to.insert("apiVersion".to_owned(), json!(api_version));
    to.insert("kind".to_owned(), json!("Event"));
    Value::Object(to)
}

/// An `events.k8s.io/v1` Event as the core `v1` Event it is stored as.
pub fn events_v1_to_core(event: Value) -> Value {
    rename_event(event, "v1", true)
}

/// A stored core `v1` Event as `events.k8s.io/v1` shows it.
pub fn core_to_events_v1(event: Value) -> Value {
    rename_event(event, "events.k8s.io/v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_autoscaler_round_trips_through_v2() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 40}});
        let v2 = autoscaling_v1_to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
        assert_eq!(v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 40);
        assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
        assert_eq!(autoscaling_v2_to_v1(v2), v1);
    }

    #[test]
    fn what_v1_cannot_express_rides_in_annotations_and_comes_back() {
        let memory = json!({"type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let cpu = json!({"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}});
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"maxReplicas": 4, "metrics": [cpu, memory],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"desiredReplicas": 1, "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = autoscaling_v2_to_v1(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        let annotations = &v1["metadata"]["annotations"];
        assert!(annotations[METRICS_ANNOTATION].as_str().unwrap().contains("100Mi"));
        assert!(annotations[CONDITIONS_ANNOTATION].as_str().unwrap().contains("AbleToScale"));
        assert!(annotations[BEHAVIOR_ANNOTATION].is_string());
        assert_eq!(autoscaling_v1_to_v2(v1), v2);
    }

    #[test]
    fn events_rename_their_fields_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "started",
            "source": {"component": "kubelet"}, "count": 3, "type": "Normal",
            "firstTimestamp": "2024-05-01T12:00:00Z", "lastTimestamp": "2024-05-01T12:05:00Z",
            "reportingComponent": "kubelet", "reportingInstance": "node-1"});
        let v1 = core_to_events_v1(core.clone());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "started");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["reportingController"], "kubelet");
        assert!(v1.get("message").is_none() && v1.get("involvedObject").is_none());
        assert_eq!(events_v1_to_core(v1), core);
    }

    #[test]
    fn odd_shapes_convert_without_panicking() {
        for odd in [json!(null), json!([]), json!({"spec": 3, "status": "x", "metadata": []})] {
            autoscaling_v2_to_v1(autoscaling_v1_to_v2(odd.clone()));
            core_to_events_v1(events_v1_to_core(odd));
        }
    }
}
