//! The pod writes every workload controller makes: creations in slow-start batches and deletions with the
//! pod's uid as precondition, each recorded as an expectation of its controller (also when its outcome is
//! unknown) and as an event about it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::expectations::{Expectations, Outcome, Seen};
use super::Key;
use crate::apiserver::registry::verbs::name_suffix;
use crate::controllers::events::{self, Recorder};
use crate::controllers::runtime::{is_fenced, outcome_unknown};
use crate::limits;

/// `pod` with its name, and whether the name was generated here: a `generateName` is completed as the API
/// would.
fn named(mut pod: Pod) -> (bool, Pod) {
    let generated = pod.metadata.name.is_none();
    if generated {
        pod.metadata.name = pod.metadata.generate_name.as_ref().map(|prefix| format!("{prefix}{}", name_suffix()));
    }
    (generated, pod)
}

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
    /// the rest. A create refused because a fixed name exists is not a failure (the pod is there already); a
    /// generated name taken is.
    ///
    /// A generated name is chosen here, not by the API, so that every pod is expected by name: one whose create
    /// failed with its outcome unknown (`outcome_unknown`: it may still be committed in this term) is expected
    /// for a while (`Outcome::Unknown`), and the next reconcile waits for it instead of making another.
    pub async fn create<K>(&self, key: &Key, owner: &K, pods: Vec<Pod>) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let api = self.api(&key.0);
        let mut pods = pods.into_iter().map(named).peekable();
        let mut batch = 1;
        while pods.peek().is_some() {
            let results: Vec<(String, bool, Result<Pod, kube::Error>)> =
                futures::stream::iter(pods.by_ref().take(batch))
                    .map(|(generated, pod): (bool, Pod)| {
                        let api = api.clone();
                        async move { (pod.name_any(), generated, api.create(&PostParams::default(), &pod).await) }
                    })
                    .buffer_unordered(limits::POD_WRITES_IN_FLIGHT_MAX)
                    .collect()
                    .await;
            let mut failed = None;
            for (name, generated, result) in results {
                match result {
                    Ok(_) => {
                        self.expectations.created(key, name.clone(), (self.seen)(&name));
                        self.recorder.record(owner, events::NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" && !generated => {}
                    Err(e) => {
                        if outcome_unknown(&e) {
                            let seen = (self.seen)(&name);
                            self.expectations.created_with(key, name.clone(), seen, Outcome::Unknown);
                        }
                        failed = Some(e);
                    }
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

    /// Deletes `doomed` (each with its uid as precondition), `POD_WRITES_IN_FLIGHT_MAX` at a time. A deletion
    /// whose outcome is unknown is expected for a while, as a creation.
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
                    self.expectations.deleted(key, name.clone(), Outcome::Made);
                    self.recorder.record(owner, events::NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}"));
                }
                Err(e) => {
                    if outcome_unknown(&e) {
                        self.expectations.deleted(key, name, Outcome::Unknown);
                    }
                    failed = Some(e);
                }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::apps::v1::ReplicaSet;

    use super::*;

    /// An API that answers each pod create with the next of `codes` and remembers the names it was asked for.
    fn scripted(codes: Vec<u16>) -> (Client, Arc<Mutex<Vec<String>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let codes = Arc::new(Mutex::new(codes.into_iter()));
        let seen = asked.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let (asked, codes) = (seen.clone(), codes.clone());
            async move {
                let body = request.into_body().collect_bytes().await.unwrap();
                let pod: Pod = serde_json::from_slice(&body).unwrap();
                asked.lock().unwrap().push(pod.name_any());
                let code = codes.lock().unwrap().next().unwrap_or(201);
                let reply = if code < 300 {
                    serde_json::to_vec(&pod).unwrap()
                } else {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                        "reason": if code == 503 { "ServiceUnavailable" } else { "Invalid" }, "message": "no"});
                    serde_json::to_vec(&status).unwrap()
                };
                let mut response = http::Response::new(axum::body::Body::from(reply));
                *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (Client::new(service, "default"), asked)
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.generate_name = Some("web-".into());
        pod
    }

    #[tokio::test]
    async fn a_create_whose_outcome_is_unknown_is_expected_by_the_name_it_was_made_with() {
        let (client, asked) = scripted(vec![503]);
        let (recorder, _events) = Recorder::new(client.clone(), "replicaset-controller");
        let expectations = Expectations::default();
        let writer =
            PodWriter { client: &client, recorder: &recorder, expectations: &expectations, seen: &|_| Seen::Absent };
        let key: Key = ("default".into(), "web".into());
        let owner = ReplicaSet::default();
        assert!(writer.create(&key, &owner, vec![pod(), pod()]).await.is_err(), "the first create failed");
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1, "the failure stopped the rest: {asked:?}");
        assert!(asked[0].starts_with("web-") && asked[0].len() == 9, "a generated name: {}", asked[0]);
        assert!(!expectations.satisfied(&key, |_| Seen::Absent), "the pod may still be committed: it is waited for");
        let made = asked[0].clone();
        let cache = move |name: &str| if name == made { Seen::Alive } else { Seen::Absent };
        assert!(expectations.satisfied(&key, cache), "the cache showing it satisfies the expectation");

        let (client, _) = scripted(vec![422]);
        let writer =
            PodWriter { client: &client, recorder: &recorder, expectations: &expectations, seen: &|_| Seen::Absent };
        assert!(writer.create(&key, &owner, vec![pod()]).await.is_err());
        assert!(
            expectations.satisfied(&key, |_| Seen::Absent),
            "a refused create changed nothing: nothing to wait for"
        );
    }
}
