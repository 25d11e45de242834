//! The Deployment controller (kube-controller-manager's): one ReplicaSet per pod template, named and labelled
//! by the template's hash; rolling updates within maxSurge and maxUnavailable, or Recreate; revisions in
//! `deployment.kubernetes.io/revision` (a rollback makes an old ReplicaSet new again under the next revision,
//! remembering the old one in `revision-history`); proportional scaling of a rollout in progress; paused
//! Deployments only scale; the history beyond `revisionHistoryLimit` is deleted; status with the Available and
//! Progressing conditions (NewReplicaSetCreated, ReplicaSetUpdated, NewReplicaSetAvailable,
//! ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed).
//!
//! `plan` decides purely from the Deployment, its ReplicaSets, the pods each has and the time; `execute`
//! carries the writes out, each at the version the cache holds. A pass makes the writes one step of the
//! rollout needs; the changes they cause bring the Deployment back for the next step.
//!
//! One bound is stricter than upstream's: the room a rollout has to surge counts, for each ReplicaSet, the
//! larger of its `spec.replicas` and the pods it still has alive, so that the pods of a ReplicaSet being scaled
//! down count until they are leaving and a Deployment never has more than replicas + maxSurge pods alive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Selector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::template::{self, POD_TEMPLATE_HASH};
use crate::apis::selectors::LabelSelector;
use crate::controllers::events::{self, Recorder};

pub const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of a Deployment that its ReplicaSets do not copy.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What a ReplicaSet's pods are, for the rollout's bounds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pods {
    /// Alive and counting (not leaving, not finished).
    pub active: i32,
    /// Not finished, leaving or not: what Recreate waits to be gone.
    pub existing: i32,
}

pub struct Input<'a> {
    pub deployment: &'a Deployment,
    /// The ReplicaSets whose controller is this Deployment.
    pub owned: &'a [Arc<ReplicaSet>],
    /// The ReplicaSets of its namespace without a controller.
    pub orphans: &'a [Arc<ReplicaSet>],
    /// Any ReplicaSet of the namespace, by name (to find a name taken by another template).
    pub named: &'a dyn Fn(&str) -> Option<Arc<ReplicaSet>>,
    pub pods: &'a dyn Fn(&ReplicaSet) -> Pods,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Take a matching orphan (add the controller reference), at its cached version.
    Adopt(Arc<ReplicaSet>),
    /// Let go of one that no longer matches.
    Release(Arc<ReplicaSet>),
    /// The Deployment's metadata with the revision annotation set to this, alone in its pass.
    Revision(String),
    Create(Box<ReplicaSet>),
    /// The ReplicaSet as it should be (replicas, annotations), replacing the version the cache holds; `from` is
    /// its replicas before.
    Update {
        replica_set: Box<ReplicaSet>,
        from: i32,
    },
    /// An old ReplicaSet beyond the revision history limit.
    Delete(Arc<ReplicaSet>),
    Status(Box<DeploymentStatus>),
}

#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// When to look again though nothing changes (the progress deadline).
    pub requeue: Option<Duration>,
}

/// One ReplicaSet as the pass changes it.
struct Set {
    rs: Arc<ReplicaSet>,
    replicas: i32,
    annotations: BTreeMap<String, String>,
    pods: Pods,
}

impl Set {
    fn new(rs: &Arc<ReplicaSet>, pods: Pods) -> Set {
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        Set { rs: rs.clone(), replicas, annotations: rs.annotations().clone(), pods }
    }

    fn revision(&self) -> i64 {
        revision_of(&self.annotations)
    }

    /// What it counts for the surge bound: its replicas, or more while more pods are still alive.
    fn counted(&self) -> i32 {
        self.replicas.max(self.pods.active)
    }

    fn available(&self) -> i32 {
        self.rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
    }

    fn changed(&self) -> bool {
        self.replicas != self.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            || &self.annotations != self.rs.annotations()
    }
}

fn revision_of(annotations: &BTreeMap<String, String>) -> i64 {
    annotations.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn spec_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) != Some("Recreate")
}

/// maxSurge or maxUnavailable of `total` (25% when unset).
fn bound(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        Some(v) => super::scaled(v, total, round_up),
        None => super::scaled(&IntOrString::String("25%".into()), total, round_up),
    }
}

/// maxSurge and maxUnavailable resolved against the replicas (upstream's ResolveFenceposts: surge rounded up,
/// unavailability down, and never both zero).
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let replicas = spec_replicas(d);
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = bound(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true);
    let unavailable = bound(rolling.and_then(|r| r.max_unavailable.as_ref()), replicas, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) {
        fenceposts(d).0
    } else {
        0
    }
}

/// How many pods may be unavailable during a rolling update (none for Recreate), never more than replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = spec_replicas(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas)
}

pub fn selector(d: &Deployment) -> LabelSelector {
    super::label_selector(d.spec.as_ref().map(|s| &s.selector))
}

pub fn plan(input: &Input) -> Plan {
    let d = input.deployment;
    let mut plan = Plan::default();
    let Some(spec) = d.spec.as_ref() else { return plan };
    let selector = selector(d);
    let mut sets: Vec<Set> = Vec::new();
    for rs in input.owned {
        if selector.matches_labels(rs.labels()) || rs.metadata.deletion_timestamp.is_some() {
            sets.push(Set::new(rs, (input.pods)(rs)));
        } else {
            plan.writes.push(Write::Release(rs.clone()));
        }
    }
    let deleting = d.metadata.deletion_timestamp.is_some();
    for rs in input.orphans {
        if !deleting && rs.metadata.deletion_timestamp.is_none() && selector.matches_labels(rs.labels()) {
            plan.writes.push(Write::Adopt(rs.clone()));
        }
    }
    if !plan.writes.is_empty() {
        return plan;
    }
    sets.sort_by(|a, b| a.rs.metadata.creation_timestamp.cmp(&b.rs.metadata.creation_timestamp));
    let template = &spec.template;
    let new = sets.iter().position(|s| {
        s.rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| template::equal_ignoring_hash(t, template))
    });
    let paused = spec.paused == Some(true);
    if deleting {
        plan.writes.push(status_write(d, &sets, new, input.now, false).0);
        return finish(d, plan);
    }
    // The revision: the new ReplicaSet's, one past every old one's.
    let max_old =
        sets.iter().enumerate().filter(|(i, _)| Some(*i) != new).map(|(_, s)| s.revision()).max().unwrap_or(0);
    let revision = (max_old + 1).to_string();
    if let Some(n) = new {
        let s = &mut sets[n];
        let old = s.revision();
        if old < max_old + 1 {
            if old > 0 {
                let history =
                    s.annotations.get(REVISION_HISTORY).map(|h| format!("{h},{old}")).unwrap_or(old.to_string());
                s.annotations.insert(REVISION_HISTORY.into(), history);
            }
            s.annotations.insert(REVISION.into(), revision.clone());
        }
        copy_annotations(d, &mut s.annotations);
    }
    let current_revision = new.and_then(|n| sets[n].annotations.get(REVISION).cloned());
    if let Some(r) = &current_revision {
        if d.annotations().get(REVISION) != Some(r) {
            // Only the Deployment's own metadata changes in this pass: the status write would conflict with it.
            let mut changed: Vec<Write> = changed_sets(&sets);
            changed.push(Write::Revision(r.clone()));
            plan.writes = changed;
            return plan;
        }
    }
    let rolling = is_rolling(d);
    let replicas = spec_replicas(d);
    let scaling = sets.iter().filter(|s| s.replicas > 0).any(|s| {
        s.annotations.get(DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok()).is_some_and(|v| v != replicas)
    });
    if paused || scaling {
        scale(d, new, &mut sets);
        if paused && new.is_some() {
            plan.writes.extend(cleanup(d, &sets, new));
        }
        let (status, requeue) = status_write(d, &sets, new, input.now, paused);
        plan.writes.extend(changed_sets(&sets));
        plan.writes.push(status);
        plan.requeue = requeue;
        return finish(d, plan);
    }
    match new {
        None if rolling => return create_new(input, &sets, revision, plan),
        Some(n) if rolling => roll(d, n, &mut sets),
        _ => {
            // Recreate: every old ReplicaSet to zero, then no old pod left, then the new one.
            let mut old_scaled = false;
            for (i, s) in sets.iter_mut().enumerate() {
                if Some(i) != new && s.replicas > 0 {
                    set_replicas(d, s, 0);
                    old_scaled = true;
                }
            }
            let old_pods = sets.iter().enumerate().any(|(i, s)| Some(i) != new && s.pods.existing > 0);
            if !old_scaled && !old_pods {
                match new {
                    None => return create_new(input, &sets, revision, plan),
                    Some(n) if sets[n].replicas != replicas => set_replicas(d, &mut sets[n], replicas),
                    Some(_) => {}
                }
            }
        }
    }
    let (status, requeue) = status_write(d, &sets, new, input.now, false);
    if let Write::Status(s) = &status {
        if complete(d, s) {
            plan.writes.extend(cleanup(d, &sets, new));
        }
    }
    plan.writes.extend(changed_sets(&sets));
    plan.writes.push(status);
    plan.requeue = requeue;
    finish(d, plan)
}

/// Drops a status write that changes nothing.
fn finish(d: &Deployment, mut plan: Plan) -> Plan {
    plan.writes.retain(|w| !matches!(w, Write::Status(s) if Some(s.as_ref()) == d.status.as_ref()));
    plan
}

fn copy_annotations(d: &Deployment, annotations: &mut BTreeMap<String, String>) {
    for (k, v) in d.annotations() {
        if !NOT_COPIED.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
}

fn changed_sets(sets: &[Set]) -> Vec<Write> {
    sets.iter()
        .filter(|s| s.changed())
        .map(|s| {
            let mut rs = s.rs.as_ref().clone();
            rs.metadata.annotations = Some(s.annotations.clone());
            rs.spec.get_or_insert_with(Default::default).replicas = Some(s.replicas);
            let from = s.rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            Write::Update { replica_set: Box::new(rs), from }
        })
        .collect()
}

/// Sets the replicas of one ReplicaSet with the annotations that say for which Deployment size it was scaled.
fn set_replicas(d: &Deployment, s: &mut Set, replicas: i32) {
    s.replicas = replicas.max(0);
    let desired = spec_replicas(d);
    s.annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    s.annotations.insert(MAX_REPLICAS.into(), (desired + max_surge(d)).to_string());
}

/// One step of a rolling update (upstream's reconcileNewReplicaSet, then reconcileOldReplicaSets).
fn roll(d: &Deployment, n: usize, sets: &mut [Set]) {
    let replicas = spec_replicas(d);
    let counted: i32 = sets.iter().map(Set::counted).sum();
    let new_replicas = sets[n].replicas;
    if new_replicas > replicas {
        set_replicas(d, &mut sets[n], replicas);
    } else if new_replicas < replicas {
        let room = replicas + max_surge(d) - counted;
        if room > 0 {
            let up = room.min(replicas - new_replicas);
            set_replicas(d, &mut sets[n], new_replicas + up);
        }
    }
    // Old ReplicaSets go down as far as availability allows: unhealthy pods first, then the oldest sets.
    let old_total: i32 = sets.iter().enumerate().filter(|(i, _)| *i != n).map(|(_, s)| s.replicas).sum();
    if old_total == 0 {
        return;
    }
    let all: i32 = sets.iter().map(|s| s.replicas).sum();
    let min_available = replicas - max_unavailable(d);
    let new_unavailable = sets[n].replicas - sets[n].available();
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    for i in (0..sets.len()).filter(|i| *i != n) {
        let unhealthy = (sets[i].replicas - sets[i].available()).max(0);
        let down = unhealthy.min(budget);
        if down > 0 {
            let r = sets[i].replicas - down;
            set_replicas(d, &mut sets[i], r);
            budget -= down;
        }
    }
    let available: i32 = sets.iter().map(|s| s.available().min(s.replicas)).sum();
    let mut excess = available - min_available;
    for i in (0..sets.len()).filter(|i| *i != n) {
        if excess <= 0 {
            break;
        }
        let down = sets[i].replicas.min(excess);
        if down > 0 {
            let r = sets[i].replicas - down;
            set_replicas(d, &mut sets[i], r);
            excess -= down;
        }
    }
}

/// Scaling the Deployment (upstream's `scale`): one active ReplicaSet takes the new size; a saturated new one
/// leaves the old ones at zero; otherwise every active ReplicaSet grows or shrinks in proportion to its size.
fn scale(d: &Deployment, new: Option<usize>, sets: &mut [Set]) {
    let replicas = spec_replicas(d);
    let active: Vec<usize> = (0..sets.len()).filter(|i| sets[*i].replicas > 0).collect();
    if active.len() <= 1 {
        let target = active.first().copied().or(new).or_else(|| sets.len().checked_sub(1));
        if let Some(t) = target {
            if sets[t].replicas != replicas || !sets[t].annotations.contains_key(DESIRED_REPLICAS) {
                set_replicas(d, &mut sets[t], replicas);
            }
        }
        return;
    }
    if let Some(n) = new {
        if sets[n].replicas == replicas && sets[n].available() == replicas {
            for (i, s) in sets.iter_mut().enumerate() {
                if i != n && s.replicas > 0 {
                    set_replicas(d, s, 0);
                }
            }
            return;
        }
    }
    if !is_rolling(d) {
        return;
    }
    let surge = max_surge(d);
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let total: i32 = active.iter().map(|i| sets[*i].replicas).sum();
    let to_add = allowed - total;
    let mut order = active.clone();
    // Largest first; among equals, newer first when growing and older first when shrinking.
    order.sort_by(|a, b| {
        let by_age = sets[*a].rs.metadata.creation_timestamp.cmp(&sets[*b].rs.metadata.creation_timestamp);
        let by_age = if to_add > 0 { by_age.reverse() } else { by_age };
        sets[*b].replicas.cmp(&sets[*a].replicas).then(by_age)
    });
    let mut sizes: BTreeMap<usize, i32> = BTreeMap::new();
    let mut added = 0;
    for &i in &order {
        let proportion = if to_add == 0 || to_add == added {
            0
        } else {
            let s = &sets[i];
            let fraction = if replicas == 0 {
                -s.replicas
            } else {
                let annotated = s.annotations.get(MAX_REPLICAS).and_then(|v| v.parse::<i32>().ok());
                let annotated = annotated.unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
                if annotated <= 0 {
                    0
                } else {
                    (f64::from(s.replicas) * f64::from(replicas + surge) / f64::from(annotated)).round() as i32
                        - s.replicas
                }
            };
            let left = to_add - added;
            if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            }
        };
        sizes.insert(i, sets[i].replicas + proportion);
        added += proportion;
    }
    if let Some(&first) = order.first() {
        let size = sizes.entry(first).or_default();
        *size = (*size + to_add - added).max(0);
    }
    for (i, size) in sizes {
        set_replicas(d, &mut sets[i], size);
    }
}

/// Creates the ReplicaSet of the current template (its replicas within the surge for a rolling update, all of
/// them for Recreate), or, when its name is taken by another template, counts a collision.
fn create_new(input: &Input, sets: &[Set], revision: String, mut plan: Plan) -> Plan {
    let d = input.deployment;
    let Some(spec) = d.spec.as_ref() else { return plan };
    let collisions = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template::template_hash(&spec.template, collisions);
    let name = format!("{}-{hash}", d.name_any());
    if let Some(taken) = (input.named)(&name) {
        let ours = taken
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| template::equal_ignoring_hash(t, &spec.template));
        if !ours {
            let mut status = d.status.clone().unwrap_or_default();
            status.collision_count = Some(collisions.unwrap_or(0) + 1);
            plan.writes.push(Write::Status(Box::new(status)));
        }
        return plan;
    }
    let replicas = spec_replicas(d);
    let size = if is_rolling(d) {
        let counted: i32 = sets.iter().map(Set::counted).sum();
        (replicas + max_surge(d) - counted).clamp(0, replicas)
    } else {
        replicas
    };
    let template = template::with_label(&spec.template, POD_TEMPLATE_HASH, &hash);
    let mut selector: Selector = spec.selector.clone();
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations = BTreeMap::new();
    copy_annotations(d, &mut annotations);
    annotations.insert(REVISION.into(), revision);
    annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas + max_surge(d)).to_string());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.namespace(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![template::controller_reference(d)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(size),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    plan.writes.push(Write::Create(Box::new(rs)));
    if has_progress_deadline(d) {
        let mut status = d.status.clone().unwrap_or_default();
        let message = format!("Created new replica set \"{name}\"");
        set_condition(&mut status, condition("Progressing", "True", "NewReplicaSetCreated", message, input.now));
        plan.writes.push(Write::Status(Box::new(status)));
    }
    finish(d, plan)
}

/// Old ReplicaSets past `revisionHistoryLimit`, scaled to zero with no pods, oldest revision first.
fn cleanup(d: &Deployment, sets: &[Set], new: Option<usize>) -> Vec<Write> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Vec::new() };
    let mut old: Vec<&Set> = sets
        .iter()
        .enumerate()
        .filter(|(i, s)| Some(*i) != new && s.rs.metadata.deletion_timestamp.is_none())
        .map(|(_, s)| s)
        .collect();
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    old.sort_by_key(|s| s.revision());
    old.into_iter()
        .take(excess)
        .filter(|s| {
            let status = s.rs.status.as_ref();
            s.replicas == 0
                && !s.changed()
                && status.is_some_and(|st| st.replicas == 0)
                && status.and_then(|st| st.observed_generation) >= s.rs.metadata.generation
        })
        .map(|s| Write::Delete(s.rs.clone()))
        .collect()
}

fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|s| s != i32::MAX)
}

fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Upstream's SetDeploymentCondition: nothing changes when the status and reason are the same; a new status
/// keeps the transition time when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Whether the rollout is done: every replica updated and available, no old one left.
fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let replicas = spec_replicas(d);
    s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.observed_generation >= d.metadata.generation
}

/// The new status (upstream's calculateStatus and, unless paused, syncRolloutStatus) and when the progress
/// deadline runs out.
fn status_write(
    d: &Deployment,
    sets: &[Set],
    new: Option<usize>,
    now: Timestamp,
    paused: bool,
) -> (Write, Option<Duration>) {
    let old = d.status.clone().unwrap_or_default();
    fn rs_status(rs: &ReplicaSet) -> k8s_openapi::api::apps::v1::ReplicaSetStatus {
        rs.status.clone().unwrap_or_default()
    }
    let sum = |f: fn(&ReplicaSet) -> i32| sets.iter().map(|s| f(&s.rs)).sum::<i32>();
    let available = sum(|rs| rs_status(rs).available_replicas.unwrap_or(0));
    let replicas = spec_replicas(d);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(|rs| rs_status(rs).replicas)),
        updated_replicas: Some(new.map(|n| rs_status(&sets[n].rs).replicas).unwrap_or(0)),
        ready_replicas: Some(sum(|rs| rs_status(rs).ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if available >= replicas - max_unavailable(d) {
        let c = condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    } else {
        let c = condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    }
    let progressing = get_condition(&old, "Progressing").cloned();
    let was_paused = progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
    if paused {
        if !was_paused {
            let c = condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), now);
            set_condition(&mut status, c);
        }
        return (Write::Status(Box::new(status)), None);
    }
    if was_paused {
        let c = condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), now);
        set_condition(&mut status, c);
    }
    if !has_progress_deadline(d) {
        if let Some(c) = status.conditions.as_mut() {
            c.retain(|c| c.type_ != "Progressing");
        }
        return (Write::Status(Box::new(status)), None);
    }
    let rs_name = new.map(|n| sets[n].rs.name_any()).unwrap_or_default();
    let current = get_condition(&status, "Progressing").cloned();
    let reason = current.as_ref().and_then(|c| c.reason.clone()).unwrap_or_default();
    let finished = status.replicas == status.updated_replicas && reason == "NewReplicaSetAvailable";
    let deadline =
        Duration::from_secs(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600).max(0) as u64);
    let mut requeue = None;
    if !finished {
        let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
        let new_old = status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0);
        let progressed = status.updated_replicas > old.updated_replicas
            || new_old < old_old
            || status.ready_replicas > old.ready_replicas
            || status.available_replicas > old.available_replicas;
        let since = current.as_ref().and_then(|c| c.last_update_time.as_ref()).map(|t| t.0);
        let timed_out = reason == "ProgressDeadlineExceeded"
            || (current.is_some()
                && since.is_some_and(|s| {
                    now.duration_since(s) > jiff::SignedDuration::try_from(deadline).unwrap_or_default()
                }));
        if complete(d, &status) {
            let message = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
            set_condition(&mut status, condition("Progressing", "True", "NewReplicaSetAvailable", message, now));
        } else if progressed {
            let message = format!("ReplicaSet \"{rs_name}\" is progressing.");
            let mut c = condition("Progressing", "True", "ReplicaSetUpdated", message, now);
            if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = current.last_transition_time.clone();
            }
            if let Some(all) = status.conditions.as_mut() {
                all.retain(|c| c.type_ != "Progressing");
            }
            set_condition(&mut status, c);
            requeue = Some(deadline);
        } else if timed_out {
            let message = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
            set_condition(&mut status, condition("Progressing", "False", "ProgressDeadlineExceeded", message, now));
        } else if let Some(since) = since {
            let elapsed = Duration::try_from(now.duration_since(since)).unwrap_or_default();
            requeue = Some(deadline.saturating_sub(elapsed) + Duration::from_secs(1));
        }
    }
    (Write::Status(Box::new(status)), requeue)
}

/// Carries out one write, at the version the cache holds.
pub async fn execute(client: &Client, recorder: &Recorder, d: &Deployment, write: &Write) -> Result<(), kube::Error> {
    let namespace = d.namespace().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    match write {
        Write::Adopt(rs) | Write::Release(rs) => {
            let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
            if matches!(write, Write::Adopt(_)) {
                refs.push(template::controller_reference(d));
            } else {
                refs.retain(|r| Some(&r.uid) != d.metadata.uid.as_ref());
            }
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
            sets.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Write::Revision(revision) => {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}, "resourceVersion": d.metadata.resource_version}});
            deployments.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Write::Create(rs) => {
            let created = sets.create(&PostParams::default(), rs).await?;
            let replicas = created.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let message = format!("Scaled up replica set {} from 0 to {replicas}", created.name_any());
            recorder.record(d, events::NORMAL, "ScalingReplicaSet", message);
        }
        Write::Update { replica_set, from } => {
            let written = sets.replace(&replica_set.name_any(), &PostParams::default(), replica_set).await?;
            let to = written.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if to != *from {
                let direction = if to > *from { "up" } else { "down" };
                let message = format!("Scaled {direction} replica set {} from {from} to {to}", written.name_any());
                recorder.record(d, events::NORMAL, "ScalingReplicaSet", message);
            }
        }
        Write::Delete(rs) => {
            let preconditions = Some(Preconditions { uid: rs.metadata.uid.clone(), resource_version: None });
            match sets.delete(&rs.name_any(), &DeleteParams { preconditions, ..DeleteParams::default() }).await {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => {
                    other?;
                }
            }
        }
        Write::Status(status) => {
            let mut updated = d.clone();
            updated.status = Some(status.as_ref().clone());
            super::writes::replace_status(client, &(namespace.clone(), d.name_any()), &updated).await?;
        }
    }
    Ok(())
}

/// The key of the Deployment controlling `rs`, if one does.
pub fn owner_key(rs: &ReplicaSet) -> Option<super::Key> {
    super::controller_key(&rs.metadata, "apps/v1", "Deployment")
}

#[cfg(test)]
mod tests;
