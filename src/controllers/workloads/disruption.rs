//! The disruption controller (kube-controller-manager's): keeps each PodDisruptionBudget's status, which the
//! eviction subresource spends: the pods it covers (`expectedPods`: the replicas of their controllers, or the
//! pods themselves when they have none), how many must stay healthy (`desiredHealthy`, from minAvailable or
//! maxUnavailable, percentages rounded up), how many are (`currentHealthy`: ready, not being deleted, not just
//! evicted) and so `disruptionsAllowed`, with the DisruptionAllowed condition. An eviction recorded in
//! `disruptedPods` counts as spent until its pod is gone or `DISRUPTED_POD_TIMEOUT` has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{pods, Key};
use crate::apis::selectors::LabelSelector;
use crate::controllers::runtime::controller_of;

/// How long an eviction counts against its budget if its pod does not go (upstream's DeletionTimeout).
const DISRUPTED_POD_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Input<'a> {
    pub budget: &'a PodDisruptionBudget,
    /// The pods of its namespace.
    pub pods: &'a [Arc<Pod>],
    /// The replicas of a pod's controller (kind, name), when it is one that scales.
    pub replicas_of: &'a dyn Fn(&str, &str) -> Option<i32>,
    pub now: Timestamp,
}

pub struct Plan {
    pub status: Option<PodDisruptionBudgetStatus>,
    /// When an eviction in `disruptedPods` runs out.
    pub requeue: Option<Duration>,
}

pub fn selector(budget: &PodDisruptionBudget) -> LabelSelector {
    super::label_selector(budget.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

pub fn plan(input: &Input) -> Plan {
    let budget = input.budget;
    let now = Timestamp::from_second(input.now.as_second()).unwrap_or(input.now);
    let selector = selector(budget);
    let covered: Vec<&Arc<Pod>> = input
        .pods
        .iter()
        .filter(|p| {
            !selector.is_everything() && selector.matches_labels(&p.metadata.labels.clone().unwrap_or_default())
        })
        .filter(|p| !matches!(pods::phase(p), "Succeeded" | "Failed"))
        .collect();
    let spec = budget.spec.clone().unwrap_or_default();
    let current = budget.status.clone().unwrap_or_default();
    let mut controllers: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut bare = 0;
    for pod in &covered {
        match controller_of(&pod.metadata)
            .and_then(|c| Some(((c.kind.clone(), c.name.clone()), (input.replicas_of)(&c.kind, &c.name)?)))
        {
            Some((key, replicas)) => {
                controllers.insert(key, replicas);
            }
            None => bare += 1,
        }
    }
    let expected = controllers.values().sum::<i32>() + bare;
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => *n,
        (Some(percent), _) => super::scaled(percent, expected, true),
        (None, Some(unavailable)) => (expected - super::scaled(unavailable, expected, true)).max(0),
        (None, None) => 0,
    };
    // Evictions still counting: their pod is there and not yet leaving, and they are recent.
    let alive: BTreeSet<&str> =
        covered.iter().filter(|p| pods::is_active(p)).filter_map(|p| p.metadata.name.as_deref()).collect();
    let mut disrupted = BTreeMap::new();
    let mut requeue: Option<Duration> = None;
    for (name, at) in current.disrupted_pods.iter().flatten() {
        let age = Duration::try_from(now.duration_since(at.0)).unwrap_or_default();
        if alive.contains(name.as_str()) && age < DISRUPTED_POD_TIMEOUT {
            disrupted.insert(name.clone(), at.clone());
            let left = DISRUPTED_POD_TIMEOUT - age;
            requeue = Some(requeue.map_or(left, |r| r.min(left)));
        }
    }
    let healthy = covered
        .iter()
        .filter(|p| pods::is_active(p) && pods::is_ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count() as i32;
    let allowed = if expected > 0 { (healthy - desired).max(0) } else { 0 };
    let (state, reason, message) =
        if allowed > 0 { ("True", "SufficientPods", "") } else { ("False", "InsufficientPods", "") };
    let mut conditions: Vec<Condition> = current.conditions.clone().unwrap_or_default();
    match conditions.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) if c.status == state && c.reason == reason => {}
        Some(c) => {
            if c.status != state {
                c.last_transition_time = Time(now);
            }
            c.status = state.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = budget.metadata.generation;
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: state.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(now),
            observed_generation: budget.metadata.generation,
        }),
    }
    let status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: budget.metadata.generation,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        conditions: Some(conditions),
    };
    Plan { status: (Some(&status) != budget.status.as_ref()).then_some(status), requeue }
}

pub async fn execute(
    client: &kube::Client,
    key: &Key,
    budget: &PodDisruptionBudget,
    plan: &Plan,
) -> Result<(), kube::Error> {
    if let Some(status) = &plan.status {
        let mut updated = budget.clone();
        updated.status = Some(status.clone());
        super::writes::replace_status(client, key, &updated).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn budget(spec: Value) -> PodDisruptionBudget {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        serde_json::from_value(
            json!({"metadata": {"name": "b", "namespace": "default", "generation": 1}, "spec": spec}),
        )
        .unwrap()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(owner) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": "u", "controller": true}]);
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn status(budget: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> PodDisruptionBudgetStatus {
        let replicas_of = |kind: &str, _: &str| (kind == "ReplicaSet").then_some(4);
        plan(&Input { budget, pods, replicas_of: &replicas_of, now: Timestamp::UNIX_EPOCH }).status.unwrap()
    }

    #[test]
    fn min_available_and_max_unavailable_give_the_disruptions_allowed() {
        let pods = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", true, Some("rs")),
            pod("d", false, Some("rs")),
        ];
        let s = status(&budget(json!({"minAvailable": 2})), &pods);
        assert_eq!((s.expected_pods, s.desired_healthy, s.current_healthy, s.disruptions_allowed), (4, 2, 3, 1));
        let s = status(&budget(json!({"maxUnavailable": "25%"})), &pods);
        assert_eq!((s.desired_healthy, s.disruptions_allowed), (3, 0));
        let s = status(
            &budget(json!({"minAvailable": "50%"})),
            &[pod("x", true, None), pod("y", true, None), pod("z", true, None)],
        );
        assert_eq!((s.expected_pods, s.desired_healthy, s.disruptions_allowed), (3, 2, 1));
    }

    #[test]
    fn a_recorded_eviction_counts_until_its_pod_leaves() {
        let mut b = budget(json!({"minAvailable": 1}));
        b.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some([("a".to_string(), Time(Timestamp::UNIX_EPOCH))].into()),
            ..Default::default()
        });
        let s = status(&b, &[pod("a", true, None), pod("b", true, None)]);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        let s = status(&b, &[pod("b", true, None)]);
        assert!(s.disrupted_pods.is_none());
    }
}
