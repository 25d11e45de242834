//! The pod writes every workload controller makes: creations in slow-start batches and deletions with the
//! pod's uid as precondition, each recorded as an expectation of its controller and as an event about it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::expectations::{Expectations, Seen};
use super::Key;
use crate::controllers::events::{self, Recorder};
use crate::controllers::runtime::is_fenced;
use crate::limits;

/// Replaces the status of the object at `key` with `updated`'s, at the version `updated` carries (the cache's):
/// a stale cache makes it fail and the key come back.
pub async fn replace_status<K>(client: &Client, key: &Key, updated: &K) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), &key.0).replace_status(&key.1, &PostParams::default(), updated).await.map(drop)
}

/// What a controller's pod writes need: its client, its event recorder, its expectations and what the pod
/// cache holds of a pod of the controller's namespace, by name.
pub struct PodWriter<'a> {
    pub client: &'a Client,
    pub recorder: &'a Recorder,
    pub expectations: &'a Expectations<Key>,
    pub seen: &'a (dyn Fn(&str) -> Seen + Sync),
}

impl PodWriter<'_> {
    fn api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates `pods` for `owner` in batches of 1, 2, 4, ... (upstream's slow start): the first failure stops
    /// the rest. A create refused because the name exists is not a failure (a fixed name already there).
    pub async fn create<K>(&self, key: &Key, owner: &K, pods: Vec<Pod>) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let api = self.api(&key.0);
        let mut pods = pods.into_iter().peekable();
        let mut batch = 1;
        while pods.peek().is_some() {
            let results: Vec<Result<Pod, kube::Error>> = futures::stream::iter(pods.by_ref().take(batch))
                .map(|pod: Pod| {
                    let api = api.clone();
                    async move { api.create(&PostParams::default(), &pod).await }
                })
                .buffer_unordered(limits::POD_WRITES_IN_FLIGHT_MAX)
                .collect()
                .await;
            let mut failed = None;
            for result in results {
                match result {
                    Ok(created) => {
                        let name = created.name_any();
                        self.expectations.created(key, name.clone(), (self.seen)(&name));
                        self.recorder.record(owner, events::NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {}
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                if !is_fenced(&e) {
                    self.recorder.record(owner, events::WARNING, "FailedCreate", format!("Error creating: {e}"));
                }
                return Err(e);
            }
            batch *= 2;
        }
        Ok(())
    }

    /// Deletes `doomed` (each with its uid as precondition), `POD_WRITES_IN_FLIGHT_MAX` at a time.
    pub async fn delete<K>(&self, key: &Key, owner: &K, doomed: &[Arc<Pod>]) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let api = self.api(&key.0);
        let results: Vec<(String, Result<(), kube::Error>)> = futures::stream::iter(doomed.iter().cloned())
            .map(|pod: Arc<Pod>| {
                let api = api.clone();
                async move {
                    let preconditions = Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None });
                    let params = DeleteParams { preconditions, ..DeleteParams::default() };
                    let result = match api.delete(&pod.name_any(), &params).await {
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        other => other.map(drop),
                    };
                    (pod.name_any(), result)
                }
            })
            .buffer_unordered(limits::POD_WRITES_IN_FLIGHT_MAX)
            .collect()
            .await;
        let mut failed = None;
        for (name, result) in results {
            match result {
                Ok(()) => {
                    self.expectations.deleted(key, name.clone());
                    self.recorder.record(owner, events::NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}"));
                }
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Replaces a pod's owner references, at the version the cache holds (adoption and release).
    pub async fn set_owners(&self, pod: &Pod, refs: &[OwnerReference]) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
        let api = self.api(pod.metadata.namespace.as_deref().unwrap_or_default());
        api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }
}
