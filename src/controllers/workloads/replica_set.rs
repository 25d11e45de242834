//! The ReplicaSet controller (kube-controller-manager's): keeps `spec.replicas` pods alive from the template,
//! adopts orphans its selector matches and releases pods that stop matching, deletes in upstream's order on a
//! scale-down (unscheduled, pending, not ready, crowded, recently ready, restarted, younger first) and reports
//! `status`.
//!
//! `plan` decides purely from the ReplicaSet, its pods and the orphans of its namespace; `execute` makes the
//! writes: creations and deletions at most `REPLICA_SET_BURST` per reconcile (`writes`), each recorded as an
//! expectation so that the next reconcile waits for the cache to show them.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use kube::ResourceExt;

use super::writes::PodWriter;
use super::{pods, template, Key};
use crate::apis::selectors::LabelSelector;
use crate::controllers::runtime::is_fenced;
use crate::limits;

pub const COMPONENT: &str = "replicaset-controller";

pub struct Input<'a> {
    pub replica_set: &'a ReplicaSet,
    /// The pods whose controller is this ReplicaSet.
    pub owned: &'a [Arc<Pod>],
    /// The pods of its namespace without a controller.
    pub orphans: &'a [Arc<Pod>],
    /// Whether the cache shows every creation and deletion made for it so far.
    pub expectations_satisfied: bool,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub adopt: Vec<Arc<Pod>>,
    pub release: Vec<Arc<Pod>>,
    pub create: usize,
    pub delete: Vec<Arc<Pod>>,
    /// The status to write, when it differs from the current one.
    pub status: Option<ReplicaSetStatus>,
    /// When to look again though nothing changes (a ready pod becoming available after minReadySeconds).
    pub requeue: Option<Duration>,
}

/// The ReplicaSet's selector; an invalid one selects nothing.
pub fn selector(rs: &ReplicaSet) -> LabelSelector {
    super::label_selector(rs.spec.as_ref().map(|s| &s.selector))
}

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn plan(input: &Input) -> Plan {
    let rs = input.replica_set;
    let mut plan = Plan::default();
    let selector = selector(rs);
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut claimed: Vec<Arc<Pod>> = Vec::new();
    for pod in input.owned {
        if deleting || selector.matches_labels(pod.labels()) {
            claimed.push(pod.clone());
        } else if pod.metadata.deletion_timestamp.is_none() {
            plan.release.push(pod.clone());
        }
    }
    if !deleting {
        for pod in input.orphans {
            if pod.metadata.deletion_timestamp.is_none() && selector.matches_labels(pod.labels()) {
                plan.adopt.push(pod.clone());
                claimed.push(pod.clone());
            }
        }
    }
    let active: Vec<Arc<Pod>> = claimed.into_iter().filter(|p| pods::is_active(p)).collect();
    let want = replicas(rs).max(0) as usize;
    if input.expectations_satisfied && !deleting {
        if active.len() < want {
            plan.create = (want - active.len()).min(limits::REPLICA_SET_BURST);
        } else if active.len() > want {
            let excess = (active.len() - want).min(limits::REPLICA_SET_BURST);
            plan.delete = pods::to_delete(&active, excess);
        }
    }
    let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (status, requeue) = status(rs, &active, min_ready, input.now);
    plan.requeue = requeue;
    if rs.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// The status `active` pods give (upstream's calculateStatus, the conditions kept but for ReplicaFailure,
/// which `execute` sets when a creation or deletion fails), and when a ready pod becomes available.
fn status(
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    min_ready: i32,
    now: Timestamp,
) -> (ReplicaSetStatus, Option<Duration>) {
    let template_labels = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref());
    let template_labels = template_labels.and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled =
        active.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let mut available = 0;
    let mut requeue: Option<Duration> = None;
    for pod in active {
        match pods::available_in(pod, min_ready, now) {
            Some(Duration::ZERO) => available += 1,
            Some(wait) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
            None => {}
        }
    }
    let current = rs.status.clone().unwrap_or_default();
    let conditions: Vec<ReplicaSetCondition> =
        current.conditions.into_iter().flatten().filter(|c| c.type_ != "ReplicaFailure").collect();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: current.terminating_replicas,
    };
    (status, requeue)
}

/// Makes the plan's writes: adoptions and releases, creations or deletions, then the status.
pub async fn execute(writer: &PodWriter<'_>, key: &Key, rs: &ReplicaSet, plan: &Plan) -> Result<(), kube::Error> {
    for pod in &plan.adopt {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(template::controller_reference(rs));
        writer.set_owners(pod, &refs).await?;
    }
    for pod in &plan.release {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let refs: Vec<_> = pod.owner_references().iter().filter(|r| r.uid != uid).cloned().collect();
        writer.set_owners(pod, &refs).await?;
    }
    let manage = if plan.create > 0 {
        match rs.spec.as_ref().and_then(|s| s.template.as_ref()) {
            Some(t) => {
                let pod = template::pod_from_template(
                    t,
                    template::controller_reference(rs),
                    None,
                    format!("{}-", rs.name_any()),
                );
                writer.create(key, rs, vec![pod; plan.create]).await
            }
            None => Ok(()),
        }
    } else {
        writer.delete(key, rs, &plan.delete).await
    };
    if let Err(e) = &manage {
        if is_fenced(e) {
            return manage;
        }
    }
    let status = match (&manage, &plan.status) {
        (Err(e), _) => {
            let mut status = plan.status.clone().or_else(|| rs.status.clone()).unwrap_or_default();
            let reason = if plan.create > 0 { "FailedCreate" } else { "FailedDelete" };
            status.conditions.get_or_insert_with(Vec::new).push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(Timestamp::now())),
            });
            Some(status)
        }
        (Ok(()), status) => status.clone(),
    };
    if let Some(status) = status {
        let mut updated = rs.clone();
        updated.status = Some(status);
        super::writes::replace_status(writer.client, key, &updated).await?;
    }
    manage
}

/// The key of the ReplicaSet controlling `pod`, if one does.
pub fn owner_key(pod: &Pod) -> Option<Key> {
    super::controller_key(&pod.metadata, "apps/v1", "ReplicaSet")
}

#[cfg(test)]
mod tests;
