//! The HorizontalPodAutoscaler controller (`autoscaling/v2`), as kube-controller-manager's: every sync period,
//! each autoscaler reads its target's `scale` subresource, computes what each of its metrics asks for from the
//! pods the scale's selector selects and their points in the leader's resource metrics (`replicas`), takes the
//! largest, stabilizes and bounds it (`behavior`), writes the new count to the `scale` subresource at the
//! version it read, and reports it all in its status and conditions (AbleToScale, ScalingActive,
//! ScalingLimited) with upstream's reasons, messages and events (SuccessfulRescale, FailedGetResourceMetric,
//! ...).
//!
//! Targets: any served kind with a `scale` subresource (Deployments, ReplicaSets, StatefulSets). Metrics:
//! `Resource` and `ContainerResource` (utilization of the requests or an average value) and `Pods` (the
//! average of a named per-pod metric the agents report); `Object` and `External` are refused with
//! `InvalidMetricSourceType`. When some metrics fail, the count may still go up on the others, never down.
//!
//! Runs on the leader's controller runtime: a key per autoscaler, handled again every sync period. What it
//! remembers for stabilization is the term's own (`behavior::Memory`, by autoscaler uid).

pub mod behavior;
pub mod replicas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::reflector::Store;
use serde_json::{json, Value};

use super::events::Recorder;
use super::runtime::{informer, run_workers, Change, Informers, Next};
use super::workloads::{key_of, lock, queue_of, Key};
use crate::apis::catalog::{self, Resource, Subresource};
use crate::apis::selectors::LabelSelector;
use crate::limits;
use crate::metrics::Points;
use behavior::{Bounds, Decision, Memory, Rules};

pub const COMPONENT: &str = "horizontal-pod-autoscaler";

struct Context {
    client: kube::Client,
    autoscalers: Store<HorizontalPodAutoscaler>,
    pods: Store<Pod>,
    points: Points,
    period: Duration,
    memory: Arc<Mutex<HashMap<String, Memory>>>,
    events: Recorder,
}

/// The term's autoscaler controller: every autoscaler once per `period`, and at once when it changes.
pub fn prepare(
    informers: &mut Informers,
    points: Points,
    period: Duration,
) -> impl std::future::Future<Output = ()> + Send {
    let client = informers.client().clone();
    let autoscalers = informers.typed::<HorizontalPodAutoscaler>();
    let pods = informers.typed::<Pod>();
    let queue = queue_of("horizontalpodautoscaler", autoscalers.store());
    let memory: Arc<Mutex<HashMap<String, Memory>>> = Arc::default();
    {
        let (queue, memory) = (queue.clone(), memory.clone());
        autoscalers.on_change(move |change| {
            // What a deleted autoscaler remembered goes with it (a new one of that name has another uid).
            if let Change::Deleted(hpa) = change {
                if let Some(uid) = &hpa.metadata.uid {
                    lock(&memory).remove(uid);
                }
            }
            queue.add(key_of(change.object()));
        });
    }
    let synced = informers.synced();
    let (events, writer) = Recorder::new(client.clone(), COMPONENT);
    let context = Context {
        client,
        autoscalers: autoscalers.store().clone(),
        pods: pods.store().clone(),
        points,
        period,
        memory,
        events,
    };
    async move {
        synced.wait().await;
        let context = &context;
        tokio::join!(
            run_workers(queue, limits::HORIZONTAL_POD_AUTOSCALER_WORKERS, |key| reconcile(context, key).boxed()),
            writer
        );
    }
}

/// The served kind an autoscaler's `scaleTargetRef` names, if it has a `scale` subresource.
fn scalable(api_version: &str, kind: &str) -> Option<&'static Resource> {
    catalog::RESOURCES.iter().find(|r| r.api_version() == api_version && r.kind == kind && r.has(Subresource::Scale))
}

/// One condition, as upstream words them.
fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason, "message": message})
}

/// `conditions` with the transition times of `before` kept where the status did not change, and the conditions
/// of `before` this evaluation did not look at kept as they were (as upstream sets them one by one).
fn with_transitions(conditions: Vec<Value>, before: &[Value], now: &str) -> Vec<Value> {
    let kept: Vec<Value> =
        before.iter().filter(|b| !conditions.iter().any(|c| c["type"] == b["type"])).cloned().collect();
    let mut merged: Vec<Value> = conditions
        .into_iter()
        .map(|mut c| {
            let earlier = before.iter().find(|b| b["type"] == c["type"]);
            c["lastTransitionTime"] = match earlier {
                Some(b) if b["status"] == c["status"] => b["lastTransitionTime"].clone(),
                _ => json!(now),
            };
            c
        })
        .collect();
    merged.extend(kept);
    merged
}

/// What one evaluation found, for the status.
struct Outcome {
    current: i32,
    desired: i32,
    metrics: Vec<Value>,
    conditions: Vec<Value>,
    rescaled: bool,
}

async fn reconcile(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(hpa) = informer::get(&context.autoscalers, Some(&key.0), &key.1) else { return Ok(Next::Done) };
    let uid = hpa.metadata.uid.clone().unwrap_or_default();
    let spec = serde_json::to_value(&hpa.spec).unwrap_or_default();
    let outcome = evaluate(context, &hpa, &uid, &spec).await?;
    write_status(context, &key, &hpa, outcome).await?;
    Ok(Next::RequeueAfter(context.period))
}

async fn evaluate(
    context: &Context,
    hpa: &HorizontalPodAutoscaler,
    uid: &str,
    spec: &Value,
) -> Result<Outcome, kube::Error> {
    let reference = &spec["scaleTargetRef"];
    let (kind, name) = (reference["kind"].as_str().unwrap_or_default(), reference["name"].as_str().unwrap_or_default());
    let namespace = hpa.metadata.namespace.clone().unwrap_or_default();
    let failed_scale = |message: String| {
        context.events.record(hpa, "Warning", "FailedGetScale", message.clone());
        let conditions = vec![condition(
            "AbleToScale",
            false,
            "FailedGetScale",
            &format!("the HPA controller was unable to get the target's current scale: {message}"),
        )];
        let current = hpa.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
        Outcome { current, desired: current, metrics: Vec::new(), conditions, rescaled: false }
    };
    let Some(resource) = scalable(reference["apiVersion"].as_str().unwrap_or_default(), kind) else {
        return Ok(failed_scale(format!("no scale subresource is served for {kind} {:?}", reference["apiVersion"])));
    };
    let api = super::api_for(&context.client, resource, Some(&namespace));
    let scale = match api.get_scale(name).await {
        Ok(scale) => scale,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Ok(failed_scale(format!("{} {name:?} not found", resource.qualified_plural())));
        }
        Err(e) => return Err(e),
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    let min = spec["minReplicas"].as_i64().unwrap_or(1) as i32;
    let max = spec["maxReplicas"].as_i64().unwrap_or(0) as i32;
    let now = Timestamp::now();
    let mut conditions = vec![condition(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    )];
    let mut metrics = Vec::new();
    let (desired, reason) = if current == 0 && min != 0 {
        conditions.push(condition(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
        (current, String::new())
    } else if current > max {
        (max, "Current number of replicas above Spec.MaxReplicas".to_owned())
    } else if current < min {
        (min, "Current number of replicas below Spec.MinReplicas".to_owned())
    } else {
        let pods = selected(&context.pods, &namespace, &selector);
        let point = |pod: &Pod| {
            let point = context.points.pod(&namespace, pod.metadata.name.as_deref()?)?;
            (Some(point.uid.as_str()) == pod.metadata.uid.as_deref()).then_some(point)
        };
        let input = replicas::Input { current, pods: &pods, point: &point, now };
        let specs = spec["metrics"].as_array().cloned().unwrap_or_default();
        let (mut best, mut failures): (Option<replicas::Proposal>, Vec<replicas::Failure>) = (None, Vec::new());
        for metric in &specs {
            match replicas::proposal(&input, metric) {
                Ok(p) => {
                    metrics.push(p.status.clone());
                    if best.as_ref().is_none_or(|b| p.replicas > b.replicas) {
                        best = Some(p);
                    }
                }
                Err(f) => {
                    // As upstream: the failed metric's entry stays, empty, so entries line up with the spec's.
                    metrics.push(json!({"type": ""}));
                    context.events.record(hpa, "Warning", f.reason, f.message.clone());
                    failures.push(f);
                }
            }
        }
        let refused = match (&best, failures.first()) {
            (None, Some(first)) => Some((first.reason, first.message.clone())),
            (Some(b), Some(first)) if b.replicas < current => Some((
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({} invalid out of {}), first error is: {}",
                    failures.len(),
                    specs.len(),
                    first.message
                ),
            )),
            (None, None) => Some(("FailedComputeMetricsReplicas", "the HPA has no metrics".to_owned())),
            _ => None,
        };
        if let Some((reason, message)) = refused {
            conditions.push(condition("ScalingActive", false, reason, &message));
            return Ok(Outcome { current, desired: current, metrics, conditions, rescaled: false });
        }
        let best = best.expect("a proposal when nothing was refused");
        conditions.push(condition(
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {}", best.name),
        ));
        let reason = match best.replicas.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{} above target", best.name),
            _ => "All metrics below target".to_owned(),
        };
        let decision = decide(context, uid, &spec["behavior"], best.replicas, &Bounds { current, min, max }, now);
        let (stabilized_reason, stabilized_message) =
            decision.stabilized.unwrap_or(("ReadyForNewScale", "recommended size matches current size"));
        conditions[0] = condition("AbleToScale", true, stabilized_reason, stabilized_message);
        conditions.push(condition("ScalingLimited", decision.limited, decision.limit.0, decision.limit.1));
        (decision.replicas, reason)
    };
    if desired == current {
        return Ok(Outcome { current, desired, metrics, conditions, rescaled: false });
    }
    let mut updated = scale.clone();
    updated.spec.get_or_insert_with(Default::default).replicas = Some(desired);
    if let Err(e) = api.replace_scale(name, &PostParams::default(), &updated).await {
        if super::runtime::is_fenced(&e) {
            return Err(e);
        }
        context.events.record(
            hpa,
            "Warning",
            "FailedRescale",
            format!("New size: {desired}; reason: {reason}; error: {e}"),
        );
        conditions[0] = condition(
            "AbleToScale",
            false,
            "FailedUpdateScale",
            &format!("the HPA controller was unable to update the target scale: {e}"),
        );
        return Ok(Outcome { current, desired: current, metrics, conditions, rescaled: false });
    }
    context.events.record(hpa, "Normal", "SuccessfulRescale", format!("New size: {desired}; reason: {reason}"));
    conditions[0] = condition(
        "AbleToScale",
        true,
        "SucceededRescale",
        &format!("the HPA controller was able to update the target scale to {desired}"),
    );
    let (up, down) = rules(&spec["behavior"]);
    lock(&context.memory).entry(uid.to_owned()).or_default().scaled(current, desired, now, &up, &down);
    Ok(Outcome { current, desired, metrics, conditions, rescaled: true })
}

/// The count to set for what the metrics recommend, by the autoscaler's behavior (or upstream's older rules).
fn decide(
    context: &Context,
    uid: &str,
    behavior: &Value,
    recommended: i32,
    bounds: &Bounds,
    now: Timestamp,
) -> Decision {
    let mut memory = lock(&context.memory);
    let memory = memory.entry(uid.to_owned()).or_default();
    if behavior.is_null() {
        return memory.decide_without_behavior(recommended, bounds, now);
    }
    let (up, down) = rules(behavior);
    memory.decide(recommended, bounds, &up, &down, now)
}

/// The scale-up and scale-down rules of an autoscaler's `spec.behavior` (upstream's defaults where it is unset).
fn rules(behavior: &Value) -> (Rules, Rules) {
    (Rules::from_spec(&behavior["scaleUp"], true), Rules::from_spec(&behavior["scaleDown"], false))
}

/// The pods of `namespace` that `selector` (the scale's `status.selector`) selects; none for an empty or
/// unreadable selector, as upstream refuses to scale on one.
fn selected(pods: &Store<Pod>, namespace: &str, selector: &str) -> Vec<Arc<Pod>> {
    let Ok(selector) = LabelSelector::parse(selector) else { return Vec::new() };
    if selector.is_everything() {
        return Vec::new();
    }
    let empty = Default::default();
    pods.state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| selector.matches_labels(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect()
}

/// Writes the status an evaluation found, when it differs from the one the cache holds.
async fn write_status(
    context: &Context,
    key: &Key,
    hpa: &HorizontalPodAutoscaler,
    outcome: Outcome,
) -> Result<(), kube::Error> {
    let before = serde_json::to_value(&hpa.status).unwrap_or_default();
    let now = Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| Timestamp::now()).to_string();
    let earlier: Vec<Value> = before["conditions"].as_array().cloned().unwrap_or_default();
    let mut status = json!({
        "currentReplicas": outcome.current,
        "desiredReplicas": outcome.desired,
        "conditions": with_transitions(outcome.conditions, &earlier, &now),
    });
    if let Some(generation) = hpa.metadata.generation {
        status["observedGeneration"] = json!(generation);
    }
    if !outcome.metrics.is_empty() {
        status["currentMetrics"] = json!(outcome.metrics);
    }
    match outcome.rescaled {
        true => status["lastScaleTime"] = json!(now),
        false if !before["lastScaleTime"].is_null() => status["lastScaleTime"] = before["lastScaleTime"].clone(),
        false => {}
    }
    let status: HorizontalPodAutoscalerStatus = match serde_json::from_value(status) {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!(error = %e, "autoscaler: a status that does not decode");
            return Ok(());
        }
    };
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = hpa.clone();
    updated.status = Some(status);
    super::workloads::writes::replace_status(&context.client, key, &updated).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_replica_sets_and_stateful_sets_can_be_targets() {
        for (api_version, kind) in [("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet")] {
            assert!(scalable(api_version, kind).is_some(), "{kind}");
        }
        assert!(scalable("apps/v1", "DaemonSet").is_none());
        assert!(scalable("v1", "Pod").is_none());
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let before = vec![
            json!({"type": "AbleToScale", "status": "True", "lastTransitionTime": "t0"}),
            json!({"type": "ScalingActive", "status": "True", "lastTransitionTime": "t0"}),
        ];
        let now =
            vec![condition("AbleToScale", true, "ReadyForNewScale", "m"), condition("ScalingActive", false, "X", "m")];
        let merged = with_transitions(now, &before, "t1");
        assert_eq!(merged[0]["lastTransitionTime"], "t0");
        assert_eq!(merged[1]["lastTransitionTime"], "t1");
        // A condition this evaluation did not set stays as it was.
        let merged = with_transitions(vec![condition("AbleToScale", true, "SucceededRescale", "m")], &before, "t2");
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1], before[1]);
    }
}
