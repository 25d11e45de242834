//! The StatefulSet controller (kube-controller-manager's): pods with stable names `<set>-<ordinal>` (hostname
//! their name, subdomain the governing Service), their claims from `volumeClaimTemplates`; OrderedReady
//! creates one ordinal at a time in ascending order once the ones before are running and ready, and removes
//! from the highest down; Parallel does all at once; RollingUpdate replaces pods from the highest ordinal down
//! to `partition`, one at a time, each once the ones above are healthy again; OnDelete gives a pod the new
//! template only when it is deleted. Templates are kept as ControllerRevisions (`revisions`), and status says
//! which pods run the current and the update revision.
//!
//! A pod's name is its ordinal, so the API refuses a second pod of one ordinal while the first exists (even
//! while it terminates): at most one pod per ordinal, whichever leader creates it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use super::revisions::{self, Update};
use super::writes::PodWriter;
use super::{pods, template, Key};

pub const COMPONENT: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// The pods whose controller is this StatefulSet.
    pub pods: &'a [Arc<Pod>],
    /// Its ControllerRevisions.
    pub revisions: &'a [Arc<ControllerRevision>],
    /// Any revision of the namespace, by name.
    pub named: &'a dyn Fn(&str) -> Option<Arc<ControllerRevision>>,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// A revision to create or renumber first, alone in its pass.
    pub revision: Option<Update>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub create: Vec<Pod>,
    pub delete: Vec<Arc<Pod>>,
    pub delete_revisions: Vec<Arc<ControllerRevision>>,
    pub status: Option<StatefulSetStatus>,
    pub requeue: Option<Duration>,
}

/// The ordinal a pod's name gives it, for a pod of `set`.
pub fn ordinal(set_name: &str, pod: &Pod) -> Option<i32> {
    pod.metadata.name.as_deref()?.strip_prefix(set_name)?.strip_prefix('-')?.parse().ok()
}

fn healthy(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    pods::is_active(pod)
        && pods::phase(pod) == "Running"
        && pods::available_in(pod, min_ready, now) == Some(Duration::ZERO)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let mut plan = Plan::default();
    let Some(spec) = set.spec.as_ref() else { return plan };
    let name = set.name_any();
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
    let current = current_status
        .current_revision
        .as_deref()
        .and_then(|c| input.revisions.iter().find(|r| r.metadata.name.as_deref() == Some(c)))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let current_name = current.name_any();
    let current_template = revisions::template_of(&current).unwrap_or_else(|| spec.template.clone());
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    let partition = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0).max(0);
    let by_ordinal: BTreeMap<i32, &Arc<Pod>> =
        input.pods.iter().filter_map(|p| Some((ordinal(&name, p)?, p))).collect();
    let now = input.now;
    let deleting = set.metadata.deletion_timestamp.is_some();
    let mut waiting = deleting;
    for ord in start..start + replicas {
        if waiting {
            break;
        }
        match by_ordinal.get(&ord) {
            None => {
                let (revision, template) = if rolling && ord - start < partition {
                    (&current_name, &current_template)
                } else {
                    (&update_name, &spec.template)
                };
                let (pod, claims) = pod_for(set, ord, revision, template);
                plan.create.push(pod);
                plan.claims.extend(claims);
                waiting = monotonic;
            }
            Some(pod) if !terminating(pod) && matches!(pods::phase(pod), "Failed" | "Succeeded") => {
                plan.delete.push((*pod).clone());
                waiting = monotonic;
            }
            Some(pod) if monotonic && !healthy(pod, min_ready, now) => {
                if let Some(wait) = pods::available_in(pod, min_ready, now).filter(|w| !w.is_zero()) {
                    plan.requeue = Some(wait);
                }
                waiting = true;
            }
            Some(_) => {}
        }
    }
    let condemned: Vec<&Arc<Pod>> =
        by_ordinal.iter().rev().filter(|(o, _)| **o < start || **o >= start + replicas).map(|(_, p)| *p).collect();
    for pod in condemned {
        if waiting {
            break;
        }
        if terminating(pod) {
            waiting = monotonic;
            continue;
        }
        plan.delete.push(pod.clone());
        waiting = monotonic;
    }
    if !waiting && rolling {
        for ord in (start + partition..start + replicas).rev() {
            let Some(pod) = by_ordinal.get(&ord) else { break };
            if revisions::of_pod(pod) != Some(update_name.as_str()) && !terminating(pod) {
                plan.delete.push((*pod).clone());
                break;
            }
            if !healthy(pod, min_ready, now) {
                break;
            }
        }
    }
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: 0,
        ready_replicas: Some(0),
        available_replicas: Some(0),
        current_replicas: Some(0),
        updated_replicas: Some(0),
        current_revision: Some(current_name.clone()),
        update_revision: Some(update_name.clone()),
        collision_count: collisions,
        conditions: current_status.conditions.clone(),
    };
    let count = |n: &mut Option<i32>| *n = Some(n.unwrap_or(0) + 1);
    for pod in input.pods.iter().filter(|p| ordinal(&name, p).is_some()) {
        status.replicas += 1;
        if pods::phase(pod) == "Running" && pods::is_ready(pod) {
            count(&mut status.ready_replicas);
            if healthy(pod, min_ready, now) {
                count(&mut status.available_replicas);
            }
        }
        if !terminating(pod) {
            if revisions::of_pod(pod) == Some(current_name.as_str()) {
                count(&mut status.current_replicas);
            }
            if revisions::of_pod(pod) == Some(update_name.as_str()) {
                count(&mut status.updated_replicas);
            }
        }
    }
    if rolling && status.updated_replicas == Some(status.replicas) && status.ready_replicas == Some(status.replicas) {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    let keep = [current_name.as_str(), update_name.as_str()];
    let limit = spec.revision_history_limit.unwrap_or(10);
    plan.delete_revisions = revisions::beyond_history(input.revisions, &keep, input.pods, limit);
    if set.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// The pod of one ordinal from `template` at `revision`, and the claims its volume claim templates call for.
pub fn pod_for(
    set: &StatefulSet,
    ordinal: i32,
    revision: &str,
    template: &PodTemplateSpec,
) -> (Pod, Vec<PersistentVolumeClaim>) {
    let name = format!("{}-{ordinal}", set.name_any());
    let mut pod =
        template::pod_from_template(template, template::controller_reference(set), Some(name.clone()), String::new());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(revisions::REVISION_LABEL.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let spec = set.spec.as_ref();
    let mut claims = Vec::new();
    if let Some(pod_spec) = pod.spec.as_mut() {
        pod_spec.hostname = Some(name.clone());
        pod_spec.subdomain = spec.and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
        for claim in spec.and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
            let volume = claim.metadata.name.clone().unwrap_or_default();
            let claim_name = format!("{volume}-{name}");
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            volumes.retain(|v| v.name != volume);
            volumes.push(Volume {
                name: volume.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name.clone(),
                    read_only: None,
                }),
                ..Volume::default()
            });
            let mut claim_labels = claim.metadata.labels.clone().unwrap_or_default();
            claim_labels.extend(spec.and_then(|s| s.selector.match_labels.clone()).unwrap_or_default());
            claims.push(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name),
                    namespace: set.namespace(),
                    labels: Some(claim_labels),
                    annotations: claim.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: claim.spec.clone(),
                status: None,
            });
        }
    }
    (pod, claims)
}

/// Makes the plan's writes: the revision alone, or claims, pods, old revisions, then the status.
pub async fn execute(writer: &PodWriter<'_>, key: &Key, set: &StatefulSet, plan: &Plan) -> Result<(), kube::Error> {
    if let Some(update) = &plan.revision {
        return revisions::write(writer.client, &key.0, update).await;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(writer.client.clone(), &key.0);
    for claim in &plan.claims {
        match claims.create(&PostParams::default(), claim).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => {
                other?;
            }
        }
    }
    if !plan.create.is_empty() {
        writer.create(key, set, plan.create.clone()).await?;
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

/// The key of the StatefulSet controlling `pod`, if one does.
pub fn owner_key(pod: &Pod) -> Option<Key> {
    super::controller_key(&pod.metadata, "apps/v1", "StatefulSet")
}

#[cfg(test)]
mod tests;
