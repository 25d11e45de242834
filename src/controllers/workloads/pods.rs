//! What the workload controllers read from a pod: whether it counts (active), is ready, is available, and
//! the facts that order deletions.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodCondition};

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

pub fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// A pod that counts towards a controller's replicas: not being deleted, not finished.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Since when a ready pod has been ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

/// For a ready pod, how long until it is available (zero: it is), having been ready `min_ready_seconds`;
/// None for a pod that is not ready.
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let Some(since) = ready_since(pod) else { return Some(Duration::ZERO) };
    let ready_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
    Some(Duration::from_secs(min_ready_seconds as u64).saturating_sub(ready_for))
}

/// The most restarts of any of its containers.
pub fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().map(|c| c.restart_count).max().unwrap_or(0)
}

/// The `count` pods to delete first, in upstream's order.
pub fn to_delete(active: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in active {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let mut ranked: Vec<(&Arc<Pod>, usize)> =
        active.iter().map(|p| (p, on_node.get(node_name(p)).copied().unwrap_or(0))).collect();
    ranked.sort_by(|(a, a_crowd), (b, b_crowd)| deletion_order(a, *a_crowd, b, *b_crowd));
    ranked.into_iter().take(count).map(|(p, _)| p.clone()).collect()
}

/// Which of two pods goes first on a scale-down (upstream's ActivePodsWithRanks): unscheduled before
/// scheduled, pending before unknown before running, not ready before ready, more crowded nodes first, ready
/// for less time first, more restarts first, younger first.
fn deletion_order(a: &Pod, a_crowd: usize, b: &Pod, b_crowd: usize) -> Ordering {
    let scheduled = |p: &Pod| !node_name(p).is_empty();
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| b_crowd.cmp(&a_crowd))
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp))
}
