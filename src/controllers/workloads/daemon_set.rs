//! The DaemonSet controller (kube-controller-manager's): one pod on every node the template may run on
//! (nodeSelector, required node affinity, the taints it tolerates with the tolerations upstream adds to every
//! daemon pod), following nodes as they come, change and go; each pod is pinned to its node by a node
//! affinity on `metadata.name` and placed by the scheduler. RollingUpdate replaces old pods at most
//! `maxUnavailable` nodes at a time, or, with `maxSurge`, starts the new pod next to the old one and removes
//! the old once the new is available; OnDelete waits for pods to be deleted. Templates are ControllerRevisions
//! (`revisions`); status carries the numbers `kubectl get ds` shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use kube::ResourceExt;

use super::revisions::{self, Update};
use super::writes::PodWriter;
use super::{pods, template, Key};
use crate::scheduler::filter;
use crate::scheduler::model::{NodeFacts, PodFacts};

pub const COMPONENT: &str = "daemonset-controller";

/// The tolerations upstream adds to every daemon pod, so that it stays on (or goes to) nodes with these
/// conditions: (key, effect).
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub struct Input<'a> {
    pub set: &'a DaemonSet,
    pub nodes: &'a [Arc<Node>],
    /// The pods whose controller is this DaemonSet.
    pub pods: &'a [Arc<Pod>],
    pub revisions: &'a [Arc<ControllerRevision>],
    pub named: &'a dyn Fn(&str) -> Option<Arc<ControllerRevision>>,
    pub expectations_satisfied: bool,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// A revision to create or renumber first, alone in its pass.
    pub revision: Option<Update>,
    /// The revision new pods get.
    pub update_revision: String,
    /// Pods to create: for each, its node.
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub delete_revisions: Vec<Arc<ControllerRevision>>,
    pub status: Option<DaemonSetStatus>,
    pub requeue: Option<Duration>,
}

/// The template with the daemon tolerations added (those it lacks).
pub fn with_daemon_tolerations(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let mut add = |key: &str, effect: &str| {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            });
        }
    };
    for (key, effect) in DAEMON_TOLERATIONS {
        add(key, effect);
    }
    if host_network {
        add(NETWORK_UNAVAILABLE, "NoSchedule");
    }
    t
}

/// The node a daemon pod is for: where it is bound, else the node its affinity pins it to.
pub fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let field =
        terms.first()?.match_fields.as_ref()?.iter().find(|f| f.key == "metadata.name" && f.operator == "In")?;
    field.values.as_ref()?.first().cloned()
}

/// The pod of `template` for `node`, pinned to it.
pub fn pod_for(set: &DaemonSet, template: &PodTemplateSpec, revision: &str, node: &str) -> Pod {
    let template = with_daemon_tolerations(template);
    let mut pod = template::pod_from_template(
        &template,
        template::controller_reference(set),
        None,
        format!("{}-", set.name_any()),
    );
    pod.metadata.labels.get_or_insert_with(Default::default).insert(revisions::REVISION_LABEL.into(), revision.into());
    if let Some(spec) = pod.spec.as_mut() {
        let pin = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        };
        let affinity = spec.affinity.get_or_insert_with(Affinity::default);
        let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
        node_affinity.required_during_scheduling_ignored_during_execution =
            Some(NodeSelector { node_selector_terms: vec![pin] });
    }
    pod
}

/// A rolling-update bound of `total`, `default` when unset; percentages rounded up (upstream rounds both
/// DaemonSet bounds up).
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    value.map_or(default, |v| super::scaled(v, total, true))
}

/// One node's daemon pods, whether it should get one, and whether the one it has may stay (a NoSchedule taint,
/// a not-ready node or a cordon keeps a new pod away but leaves a running one, as upstream).
struct OnNode<'a> {
    should_run: bool,
    may_stay: bool,
    pods: Vec<&'a Arc<Pod>>,
}

pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let mut plan = Plan::default();
    let Some(spec) = set.spec.as_ref() else { return plan };
    let current_status = set.status.clone().unwrap_or_default();
    let labels = spec.selector.match_labels.clone().unwrap_or_default();
    let collisions = current_status.collision_count;
    let update =
        match revisions::update_revision(set, &spec.template, &labels, input.revisions, collisions, input.named) {
            Update::Current(r) => r,
            Update::Collision => {
                let mut status = current_status;
                status.collision_count = Some(collisions.unwrap_or(0) + 1);
                plan.status = Some(status);
                return plan;
            }
            other => {
                plan.revision = Some(other);
                return plan;
            }
        };
    let update_name = update.name_any();
    plan.update_revision = update_name.clone();
    let facts = PodFacts::from_pod(&Pod {
        metadata: Default::default(),
        spec: with_daemon_tolerations(&spec.template).spec,
        status: None,
    });
    let mut nodes: BTreeMap<String, OnNode> = input
        .nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| {
            let node = NodeFacts::from_node(n);
            let (should_run, may_stay) = (filter::eligible(&node, &facts), filter::may_stay(&node, &facts));
            (n.name_any(), OnNode { should_run, may_stay, pods: Vec::new() })
        })
        .collect();
    let mut orphaned: Vec<&Arc<Pod>> = Vec::new();
    for pod in input.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        match node_of(pod).and_then(|n| nodes.get_mut(&n)) {
            Some(on) => on.pods.push(pod),
            None => orphaned.push(pod),
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = input.now;
    let available = |p: &Pod| pods::is_active(p) && pods::available_in(p, min_ready, now) == Some(Duration::ZERO);
    let updated = |p: &Pod| revisions::of_pod(p) == Some(update_name.as_str());
    let deleting = set.metadata.deletion_timestamp.is_some();
    let manage = input.expectations_satisfied && !deleting;
    if manage {
        plan.delete.extend(orphaned.iter().map(|p| (*p).clone()));
        for (name, on) in &nodes {
            let active: Vec<&&Arc<Pod>> = on.pods.iter().filter(|p| pods::is_active(p)).collect();
            if !on.may_stay {
                plan.delete.extend(on.pods.iter().map(|p| (*p).clone()));
                continue;
            }
            // A finished pod is replaced; of several, the oldest updated one stays.
            plan.delete.extend(on.pods.iter().filter(|p| !pods::is_active(p)).map(|p| (*p).clone()));
            if active.is_empty() {
                if on.should_run {
                    plan.create.push(name.clone());
                }
            } else if active.len() > 1 && !active.iter().any(|p| !updated(p)) {
                let mut extra: Vec<&&Arc<Pod>> = active.clone();
                extra.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
                plan.delete.extend(extra.into_iter().skip(1).map(|p| (*p).clone()));
            }
        }
    }
    let desired = nodes.values().filter(|n| n.should_run).count() as i32;
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    if manage && rolling && plan.create.is_empty() && plan.delete.is_empty() {
        let rolling_update = strategy.and_then(|s| s.rolling_update.as_ref());
        let surge = scaled(rolling_update.and_then(|r| r.max_surge.as_ref()), desired, 0);
        let max_unavailable = scaled(rolling_update.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
        roll(&nodes, surge, max_unavailable.max(if surge == 0 { 1 } else { 0 }), &available, &updated, &mut plan);
    }
    if let Some(wait) =
        input.pods.iter().filter_map(|p| pods::available_in(p, min_ready, now)).filter(|w| !w.is_zero()).min()
    {
        plan.requeue = Some(wait);
    }
    let mut status = DaemonSetStatus {
        desired_number_scheduled: desired,
        observed_generation: set.metadata.generation,
        collision_count: collisions,
        conditions: current_status.conditions.clone(),
        ..DaemonSetStatus::default()
    };
    let mut available_count = 0;
    let mut ready = 0;
    let mut updated_count = 0;
    for on in nodes.values() {
        let active: Vec<&&Arc<Pod>> = on.pods.iter().filter(|p| pods::is_active(p)).collect();
        if active.is_empty() {
            continue;
        }
        if !on.should_run {
            status.number_misscheduled += 1;
            continue;
        }
        status.current_number_scheduled += 1;
        if active.iter().any(|p| pods::is_ready(p)) {
            ready += 1;
        }
        if active.iter().any(|p| available(p)) {
            available_count += 1;
        }
        if active.iter().any(|p| updated(p)) {
            updated_count += 1;
        }
    }
    status.number_ready = ready;
    status.number_available = Some(available_count);
    status.number_unavailable = Some((desired - available_count).max(0));
    status.updated_number_scheduled = Some(updated_count);
    let limit = spec.revision_history_limit.unwrap_or(10);
    plan.delete_revisions = revisions::beyond_history(input.revisions, &[update_name.as_str()], input.pods, limit);
    if set.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// One step of a rolling update over the nodes that should run a pod.
fn roll(
    nodes: &BTreeMap<String, OnNode>,
    surge: i32,
    max_unavailable: i32,
    available: &dyn Fn(&Pod) -> bool,
    updated: &dyn Fn(&Pod) -> bool,
    plan: &mut Plan,
) {
    let eligible: Vec<(&String, &OnNode)> = nodes.iter().filter(|(_, on)| on.should_run).collect();
    let unavailable = eligible.iter().filter(|(_, on)| !on.pods.iter().any(|p| available(p))).count() as i32;
    let mut budget = max_unavailable - unavailable;
    let mut surged = eligible
        .iter()
        .filter(|(_, on)| on.pods.iter().any(|p| updated(p)) && on.pods.iter().any(|p| !updated(p)))
        .count() as i32;
    for (name, on) in eligible {
        let old: Vec<&&Arc<Pod>> = on.pods.iter().filter(|p| !updated(p)).collect();
        if old.is_empty() {
            continue;
        }
        let new = on.pods.iter().find(|p| updated(p));
        let old_available = old.iter().any(|p| available(p));
        match new {
            // The new pod is up: the old ones go.
            Some(new) if available(new) => plan.delete.extend(old.into_iter().map(|p| (*p).clone())),
            Some(_) => {}
            // An old pod that is not available anyway can go at once.
            None if !old_available => plan.delete.extend(old.into_iter().map(|p| (*p).clone())),
            None if surge > 0 && surged < surge => {
                plan.create.push(name.clone());
                surged += 1;
            }
            None if surge == 0 && budget > 0 => {
                plan.delete.extend(old.into_iter().map(|p| (*p).clone()));
                budget -= 1;
            }
            None => {}
        }
    }
}

/// Makes the plan's writes: the revision alone, or pods, old revisions, then the status.
pub async fn execute(writer: &PodWriter<'_>, key: &Key, set: &DaemonSet, plan: &Plan) -> Result<(), kube::Error> {
    if let Some(update) = &plan.revision {
        return revisions::write(writer.client, &key.0, update).await;
    }
    if let Some(spec) = set.spec.as_ref() {
        let revision = &plan.update_revision;
        let pods: Vec<Pod> = plan.create.iter().map(|node| pod_for(set, &spec.template, revision, node)).collect();
        if !pods.is_empty() {
            writer.create(key, set, pods).await?;
        }
    }
    if !plan.delete.is_empty() {
        writer.delete(key, set, &plan.delete).await?;
    }
    revisions::delete(writer.client, &key.0, &plan.delete_revisions).await?;
    if let Some(status) = &plan.status {
        let mut updated = set.clone();
        updated.status = Some(status.clone());
        super::writes::replace_status(writer.client, key, &updated).await?;
    }
    Ok(())
}

/// The key of the DaemonSet controlling `pod`, if one does.
pub fn owner_key(pod: &Pod) -> Option<Key> {
    super::controller_key(&pod.metadata, "apps/v1", "DaemonSet")
}

#[cfg(test)]
mod tests;
