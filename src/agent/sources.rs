//! The ConfigMaps and Secrets the agent's pods refer to (in `env`, `envFrom` and volumes), as last read
//! through the API: what `env.rs` and `volumes.rs` take values and files from.
//!
//! `references` (pure) says which objects a pod needs; `run` keeps a snapshot of exactly those, reading each
//! one when a pod first needs it and again every `AGENT_SOURCES_REFRESH_MS` while one does (upstream's kubelet
//! refreshes them on about the same period, so that an update reaches the files within a minute), or every
//! `AGENT_SOURCES_ABSENT_REFRESH_MS` while it is not there (a pod waits for it), at most
//! `AGENT_SOURCES_READS_IN_FLIGHT_MAX` reads at once, each within `AGENT_SOURCES_READ_TIMEOUT_MS`. A read
//! that fails keeps what was read before: while no replica is reachable, pods keep their values.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::reflector::Store;
use tokio::sync::Notify;

use crate::limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    /// The word upstream's messages use (`configmap "x" not found`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }

    /// The kind's name (`couldn't find key k in ConfigMap ns/x`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// One object a pod refers to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// An object's keys and values (a ConfigMap's `data` and `binaryData`, a Secret's `data`), or `None` when the
/// API said there is no such object.
pub type Data = Option<BTreeMap<String, Vec<u8>>>;

/// The objects as last read. One not in it has not been read yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sources(pub HashMap<SourceKey, Data>);

/// Why a value could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Not read yet: wait.
    Unread,
    /// The object, or the key, is not there: the message says which, as upstream's kubelet words it.
    Absent(String),
}

impl Sources {
    /// The keys and values of an object.
    pub fn object(&self, kind: Kind, namespace: &str, name: &str) -> Result<&BTreeMap<String, Vec<u8>>, Missing> {
        let key = SourceKey { kind, namespace: namespace.to_owned(), name: name.to_owned() };
        match self.0.get(&key) {
            None => Err(Missing::Unread),
            Some(None) => Err(Missing::Absent(format!("{} {name:?} not found", kind.word()))),
            Some(Some(data)) => Ok(data),
        }
    }

    /// One value of an object.
    pub fn value(&self, kind: Kind, namespace: &str, name: &str, key: &str) -> Result<&[u8], Missing> {
        self.object(kind, namespace, name)?
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| Missing::Absent(format!("couldn't find key {key} in {} {namespace}/{name}", kind.name())))
    }
}

/// Every ConfigMap and Secret `pod` refers to.
pub fn references(pod: &Pod) -> BTreeSet<SourceKey> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut add = |kind: Kind, name: &str| {
        if !name.is_empty() {
            out.insert(SourceKey { kind, namespace: namespace.to_owned(), name: name.to_owned() });
        }
    };
    let Some(spec) = &pod.spec else { return BTreeSet::new() };
    let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
    for container in containers {
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else { continue };
            if let Some(r) = &from.config_map_key_ref {
                add(Kind::ConfigMap, &r.name);
            }
            if let Some(r) = &from.secret_key_ref {
                add(Kind::Secret, &r.name);
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                add(Kind::ConfigMap, &r.name);
            }
            if let Some(r) = &from.secret_ref {
                add(Kind::Secret, &r.name);
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(c) = &volume.config_map {
            add(Kind::ConfigMap, &c.name);
        }
        if let Some(s) = &volume.secret {
            add(Kind::Secret, s.secret_name.as_deref().unwrap_or_default());
        }
        for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                add(Kind::ConfigMap, &c.name);
            }
            if let Some(s) = &source.secret {
                add(Kind::Secret, &s.name);
            }
        }
    }
    out
}

/// The latest snapshot, shared with pod sync.
pub type Latest = Arc<RwLock<Arc<Sources>>>;

/// Keeps `latest` holding the objects the pods in `pods` refer to; `changed` is notified when it changes.
pub async fn run(client: kube::Client, pods: Store<Pod>, latest: Latest, changed: Arc<Notify>) {
    // When each object was last read, and whether it was there.
    let mut read_at: HashMap<SourceKey, (Instant, bool)> = HashMap::new();
    let refresh = Duration::from_millis(limits::AGENT_SOURCES_REFRESH_MS);
    let refresh_absent = Duration::from_millis(limits::AGENT_SOURCES_ABSENT_REFRESH_MS);
    loop {
        let wanted: BTreeSet<SourceKey> = pods.state().iter().flat_map(|p| references(p)).collect();
        read_at.retain(|k, _| wanted.contains(k));
        let due = |key: &SourceKey| match read_at.get(key) {
            None => true,
            Some((at, true)) => at.elapsed() >= refresh,
            Some((at, false)) => at.elapsed() >= refresh_absent,
        };
        let due: Vec<SourceKey> = wanted.iter().filter(|k| due(k)).cloned().collect();
        let read: Vec<(SourceKey, Option<Data>)> = futures::stream::iter(due)
            .map(|key| {
                let client = client.clone();
                async move {
                    let data = read(&client, &key).await;
                    (key, data)
                }
            })
            .buffer_unordered(limits::AGENT_SOURCES_READS_IN_FLIGHT_MAX)
            .collect()
            .await;
        let current = Arc::clone(&latest.read().unwrap_or_else(|p| p.into_inner()));
        let mut changes: Vec<(SourceKey, Data)> = Vec::new();
        for (key, data) in read {
            let Some(data) = data else { continue };
            read_at.insert(key.clone(), (Instant::now(), data.is_some()));
            if current.0.get(&key) != Some(&data) {
                changes.push((key, data));
            }
        }
        // A new snapshot only when something changed: most rounds read nothing, or read what was there.
        if !changes.is_empty() || current.0.keys().any(|k| !wanted.contains(k)) {
            let kept = current.0.iter().filter(|(k, _)| wanted.contains(*k)).map(|(k, v)| (k.clone(), v.clone()));
            let next = Sources(kept.chain(changes).collect());
            *latest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            changed.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(limits::AGENT_SOURCES_CHECK_MS)).await;
    }
}

/// One object as the API has it now; `None` when it could not be read.
async fn read(client: &kube::Client, key: &SourceKey) -> Option<Data> {
    let waited = Duration::from_millis(limits::AGENT_SOURCES_READ_TIMEOUT_MS);
    let answer = match key.kind {
        Kind::ConfigMap => {
            let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), &key.namespace);
            tokio::time::timeout(waited, api.get_opt(&key.name)).await.map(|r| {
                r.map(|found| {
                    found.map(|c| {
                        let text = c.data.into_iter().flatten().map(|(k, v)| (k, v.into_bytes()));
                        text.chain(c.binary_data.into_iter().flatten().map(|(k, v)| (k, v.0))).collect()
                    })
                })
            })
        }
        Kind::Secret => {
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &key.namespace);
            tokio::time::timeout(waited, api.get_opt(&key.name))
                .await
                .map(|r| r.map(|found| found.map(|s| s.data.into_iter().flatten().map(|(k, v)| (k, v.0)).collect())))
        }
    };
    match answer {
        Ok(Ok(data)) => Some(data),
        Ok(Err(e)) => {
            tracing::debug!(kind = key.kind.name(), namespace = %key.namespace, name = %key.name, error = %e,
                "agent: reading a pod's source failed");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_refers_to_what_its_env_and_volumes_name() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s1"}}]}],
                "containers": [{"name": "c",
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}},
                            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
                            {"name": "C", "value": "plain"}],
                    "envFrom": [{"configMapRef": {"name": "c2"}, "prefix": "X_"}]}],
                "volumes": [
                    {"name": "v1", "configMap": {"name": "c3"}},
                    {"name": "v2", "secret": {"secretName": "s3"}},
                    {"name": "v3", "projected": {"sources": [{"configMap": {"name": "c1"}}, {"secret": {"name": "s4"}}]}},
                    {"name": "v4", "emptyDir": {}},
                ],
            },
        }))
        .unwrap();
        let names: Vec<String> =
            references(&pod).into_iter().map(|k| format!("{}/{}/{}", k.kind.name(), k.namespace, k.name)).collect();
        assert_eq!(
            names,
            [
                "ConfigMap/ns/c1",
                "ConfigMap/ns/c2",
                "ConfigMap/ns/c3",
                "Secret/ns/s1",
                "Secret/ns/s2",
                "Secret/ns/s3",
                "Secret/ns/s4"
            ]
        );
    }

    #[test]
    fn a_missing_object_or_key_is_worded_as_upstream() {
        let mut sources = Sources::default();
        let key = |name: &str| SourceKey { kind: Kind::ConfigMap, namespace: "ns".into(), name: name.into() };
        sources.0.insert(key("gone"), None);
        sources.0.insert(key("cfg"), Some(BTreeMap::from([("a".to_string(), b"1".to_vec())])));
        assert_eq!(sources.value(Kind::ConfigMap, "ns", "cfg", "a"), Ok(&b"1"[..]));
        assert_eq!(
            sources.value(Kind::ConfigMap, "ns", "cfg", "b"),
            Err(Missing::Absent("couldn't find key b in ConfigMap ns/cfg".into()))
        );
        assert_eq!(
            sources.value(Kind::ConfigMap, "ns", "gone", "a"),
            Err(Missing::Absent("configmap \"gone\" not found".into()))
        );
        assert_eq!(sources.value(Kind::Secret, "ns", "cfg", "a"), Err(Missing::Unread));
    }
}
