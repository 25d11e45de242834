//! ControllerRevisions, the template history of StatefulSets and DaemonSets: one revision per distinct pod
//! template, named `<owner>-<hash>`, numbered in the order templates were used (going back to an older
//! template renumbers its revision as the newest, as upstream does), the history beyond
//! `revisionHistoryLimit` deleted when no pod still runs it. Pods carry their revision's name in the
//! `controller-revision-hash` label.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::template;

pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The template a revision holds (`data.spec.template`).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    serde_json::from_value(data.0.get("spec")?.get("template")?.clone()).ok()
}

/// The revision a pod runs.
pub fn of_pod(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

/// What the owner's current template needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// The newest revision already holds it.
    Current(Arc<ControllerRevision>),
    /// An older revision holds it: it becomes the newest under this number.
    Renumber(Arc<ControllerRevision>, i64),
    /// No revision holds it yet.
    Create(Box<ControllerRevision>),
    /// Its name is taken by a revision of another template: the owner counts a collision.
    Collision,
}

/// The revision of `owner`'s `template` among its `revisions`; `labels` are the owner's selector labels, which
/// a new revision carries.
pub fn update_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    labels: &BTreeMap<String, String>,
    revisions: &[Arc<ControllerRevision>],
    collision_count: Option<i32>,
    named: impl Fn(&str) -> Option<Arc<ControllerRevision>>,
) -> Update {
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let same = |r: &ControllerRevision| template_of(r).is_some_and(|t| template::same(&t, template));
    if let Some(existing) = revisions.iter().filter(|r| same(r)).max_by_key(|r| r.revision) {
        return if existing.revision == newest {
            Update::Current(existing.clone())
        } else {
            Update::Renumber(existing.clone(), newest + 1)
        };
    }
    let name = format!(
        "{}-{}",
        owner.meta().name.clone().unwrap_or_default(),
        template::template_hash(template, collision_count)
    );
    if named(&name).is_some() {
        return Update::Collision;
    }
    let mut labels = labels.clone();
    labels.insert(REVISION_LABEL.into(), name.clone());
    Update::Create(Box::new(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![template::controller_reference(owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": template}}))),
        revision: newest + 1,
    }))
}

/// The revisions past the history limit: neither `keep` nor run by a live pod, oldest first.
pub fn beyond_history(
    revisions: &[Arc<ControllerRevision>],
    keep: &[&str],
    pods: &[Arc<Pod>],
    limit: i32,
) -> Vec<Arc<ControllerRevision>> {
    let live: BTreeSet<&str> = pods.iter().filter_map(|p| of_pod(p)).chain(keep.iter().copied()).collect();
    let mut history: Vec<&Arc<ControllerRevision>> =
        revisions.iter().filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default())).collect();
    history.sort_by_key(|r| r.revision);
    let excess = history.len().saturating_sub(limit.max(0) as usize);
    history.into_iter().take(excess).cloned().collect()
}

/// Creates or renumbers the update revision.
pub async fn write(client: &Client, namespace: &str, update: &Update) -> Result<(), kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    match update {
        Update::Create(revision) => {
            api.create(&PostParams::default(), revision).await?;
        }
        Update::Renumber(revision, number) => {
            let patch =
                json!({"metadata": {"resourceVersion": revision.metadata.resource_version}, "revision": number});
            api.patch(&revision.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Update::Current(_) | Update::Collision => {}
    }
    Ok(())
}

/// Deletes old revisions (each with its uid as precondition).
pub async fn delete(client: &Client, namespace: &str, old: &[Arc<ControllerRevision>]) -> Result<(), kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for revision in old {
        let preconditions = Some(Preconditions { uid: revision.metadata.uid.clone(), resource_version: None });
        match api.delete(&revision.name_any(), &DeleteParams { preconditions, ..DeleteParams::default() }).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}
