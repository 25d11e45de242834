//! The ConfigMaps and Secrets the agent's pods refer to (in `env`, `envFrom` and volumes), and the
//! ServiceAccount tokens their projected volumes hold, as last read through the API: what `env.rs` and
//! `volumes.rs` take values and files from.
//!
//! `references` (pure) says which objects a pod needs; `run` keeps a snapshot of exactly those, reading each
//! one when a pod first needs it and again every `AGENT_SOURCES_REFRESH_MS` while one does (upstream's kubelet
//! refreshes them on about the same period, so that an update reaches the files within a minute), or every
//! `AGENT_SOURCES_ABSENT_REFRESH_MS` while it is not there (a pod waits for it), at most
//! `AGENT_SOURCES_READS_IN_FLIGHT_MAX` reads at once, each within `AGENT_SOURCES_READ_TIMEOUT_MS`. A read
//! that fails keeps what was read before (while no replica is reachable, pods keep their values) and is tried
//! again after `AGENT_SOURCES_ABSENT_REFRESH_MS`.
//!
//! A token is requested (TokenRequest, bound to its pod) when its pod first needs it and again once 80% of
//! its lifetime has passed, as upstream's kubelet renews them; the node's credentials may ask only for the
//! tokens of the pods bound to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount, ServiceAccountTokenProjection};
use kube::runtime::reflector::Store;
use tokio::sync::Notify;

use crate::limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
    /// A ServiceAccount's token (its data: `token`).
    Token,
}

impl Kind {
    /// The word upstream's messages use (`configmap "x" not found`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
            Kind::Token => "serviceaccount",
        }
    }

    /// The kind's name (`couldn't find key k in ConfigMap ns/x`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Token => "ServiceAccount",
        }
    }
}

/// One object a pod refers to; for a token, `name` is the account's and `token` says what it is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub token: Option<TokenFor>,
}

impl SourceKey {
    pub fn object(kind: Kind, namespace: &str, name: &str) -> SourceKey {
        SourceKey { kind, namespace: namespace.to_owned(), name: name.to_owned(), token: None }
    }

    /// The token a projected volume's `serviceAccountToken` source of `pod` holds.
    pub fn token(pod: &Pod, projection: &ServiceAccountTokenProjection) -> SourceKey {
        let spec = pod.spec.as_ref();
        let account = spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
        let token = TokenFor {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audience: projection.audience.clone().unwrap_or_default(),
            seconds: projection.expiration_seconds.unwrap_or(limits::SERVICE_ACCOUNT_TOKEN_SECS_DEFAULT),
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        SourceKey { token: Some(token), ..SourceKey::object(Kind::Token, namespace, account) }
    }
}

/// What a token is requested for: the pod it is bound to, its audience (empty: the API's) and its lifetime.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenFor {
    pub pod: String,
    pub pod_uid: String,
    pub audience: String,
    pub seconds: i64,
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
        self.data(&SourceKey::object(kind, namespace, name))
    }

    /// What was read for `key`.
    pub fn data(&self, key: &SourceKey) -> Result<&BTreeMap<String, Vec<u8>>, Missing> {
        match self.0.get(key) {
            None => Err(Missing::Unread),
            Some(None) if key.kind == Kind::Token => {
                Err(Missing::Absent(format!("failed to fetch token: serviceaccounts {:?} not found", key.name)))
            }
            Some(None) => Err(Missing::Absent(format!("{} {:?} not found", key.kind.word(), key.name))),
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

/// Every ConfigMap and Secret `pod` refers to, and the tokens of its projected volumes; those of its env only
/// unless `volumes` (when the runtime mounts no volumes), and while the pod is live (its volumes are made only
/// then).
pub fn references(pod: &Pod, volumes: bool) -> BTreeSet<SourceKey> {
    let volumes = volumes && super::volumes::made_for(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = BTreeSet::new();
    let mut add = |kind: Kind, name: &str| {
        if !name.is_empty() {
            out.insert(SourceKey::object(kind, namespace, name));
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
    if !volumes {
        return out;
    }
    let mut tokens = Vec::new();
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
            if let Some(t) = &source.service_account_token {
                tokens.push(SourceKey::token(pod, t));
            }
        }
    }
    out.extend(tokens);
    out
}

/// The latest snapshot, shared with pod sync.
pub type Latest = Arc<RwLock<Arc<Sources>>>;

/// Keeps `latest` holding the objects the pods in `pods` refer to (their volumes' too when `volumes`);
/// `changed` is notified when it changes.
pub async fn run(client: kube::Client, pods: Store<Pod>, volumes: bool, latest: Latest, changed: Arc<Notify>) {
    // When each object is to be read again.
    let mut due_at: HashMap<SourceKey, Instant> = HashMap::new();
    loop {
        let wanted: BTreeSet<SourceKey> = pods.state().iter().flat_map(|p| references(p, volumes)).collect();
        due_at.retain(|k, _| wanted.contains(k));
        let now = Instant::now();
        let due: Vec<SourceKey> =
            wanted.iter().filter(|k| due_at.get(*k).is_none_or(|at| *at <= now)).cloned().collect();
        let read: Vec<(SourceKey, Option<Read>)> = futures::stream::iter(due)
            .map(|key| {
                let client = client.clone();
                async move {
                    let read = read(&client, &key).await;
                    (key, read)
                }
            })
            .buffer_unordered(limits::AGENT_SOURCES_READS_IN_FLIGHT_MAX)
            .collect()
            .await;
        let current = Arc::clone(&latest.read().unwrap_or_else(|p| p.into_inner()));
        let mut changes: Vec<(SourceKey, Data)> = Vec::new();
        for (key, read) in read {
            let Some(Read { data, fresh_for }) = read else {
                due_at.insert(key, Instant::now() + Duration::from_millis(limits::AGENT_SOURCES_ABSENT_REFRESH_MS));
                continue;
            };
            due_at.insert(key.clone(), Instant::now() + fresh_for);
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

/// What a read found, and for how long it holds before it is read again.
struct Read {
    data: Data,
    fresh_for: Duration,
}

/// One object as the API has it now, or a new token; `None` when it could not be read.
async fn read(client: &kube::Client, key: &SourceKey) -> Option<Read> {
    let waited = Duration::from_millis(limits::AGENT_SOURCES_READ_TIMEOUT_MS);
    let answer = match (key.kind, &key.token) {
        (Kind::Token, Some(token)) => {
            return tokio::time::timeout(waited, request_token(client, key, token)).await.ok()?
        }
        (Kind::Token, None) => return None,
        (Kind::ConfigMap, _) => {
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
        (Kind::Secret, _) => {
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &key.namespace);
            tokio::time::timeout(waited, api.get_opt(&key.name))
                .await
                .map(|r| r.map(|found| found.map(|s| s.data.into_iter().flatten().map(|(k, v)| (k, v.0)).collect())))
        }
    };
    match answer {
        Ok(Ok(data)) => {
            let fresh_for = match data {
                Some(_) => limits::AGENT_SOURCES_REFRESH_MS,
                None => limits::AGENT_SOURCES_ABSENT_REFRESH_MS,
            };
            Some(Read { data, fresh_for: Duration::from_millis(fresh_for) })
        }
        Ok(Err(e)) => {
            tracing::debug!(kind = key.kind.name(), namespace = %key.namespace, name = %key.name, error = %e,
                "agent: reading a pod's source failed");
            None
        }
        Err(_) => None,
    }
}

/// A new token for `key`'s account, bound to its pod: renewed once 80% of its lifetime has passed. An account
/// or pod that is not there (404) is absent; another refusal is logged, and the request made again later.
async fn request_token(client: &kube::Client, key: &SourceKey, token: &TokenFor) -> Option<Read> {
    let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), &key.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if token.audience.is_empty() { Vec::new() } else { vec![token.audience.clone()] },
            expiration_seconds: Some(token.seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(token.pod.clone()),
                uid: Some(token.pod_uid.clone()),
            }),
        },
        ..TokenRequest::default()
    };
    let absent = Duration::from_millis(limits::AGENT_SOURCES_ABSENT_REFRESH_MS);
    match api.create_token_request(&key.name, &Default::default(), &request).await {
        Ok(answer) => {
            let status = answer.status?;
            let seconds = answer.spec.expiration_seconds.unwrap_or(token.seconds).max(1) as u64;
            let data = BTreeMap::from([("token".to_owned(), status.token.into_bytes())]);
            Some(Read { data: Some(data), fresh_for: Duration::from_secs(seconds) * 4 / 5 })
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Some(Read { data: None, fresh_for: absent }),
        Err(e) => {
            tracing::warn!(namespace = %key.namespace, account = %key.name, pod = %token.pod, error = %e,
                "agent: requesting a service account token failed");
            None
        }
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
                    {"name": "v3", "projected": {"sources": [{"configMap": {"name": "c1"}}, {"secret": {"name": "s4"}},
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}},
                    {"name": "v4", "emptyDir": {}},
                ],
            },
        }))
        .unwrap();
        let names: Vec<String> = references(&pod, true)
            .into_iter()
            .map(|k| format!("{}/{}/{}", k.kind.name(), k.namespace, k.name))
            .collect();
        assert_eq!(
            names,
            [
                "ConfigMap/ns/c1",
                "ConfigMap/ns/c2",
                "ConfigMap/ns/c3",
                "Secret/ns/s1",
                "Secret/ns/s2",
                "Secret/ns/s3",
                "Secret/ns/s4",
                "ServiceAccount/ns/default"
            ]
        );
        let env_only: Vec<String> = references(&pod, false).into_iter().map(|k| k.name).collect();
        assert_eq!(env_only, ["c1", "c2", "s1", "s2"], "a runtime that mounts nothing needs the env's alone");
        let mut finished = pod.clone();
        finished.status = Some(serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).unwrap());
        assert_eq!(references(&finished, true).len(), 4, "a finished pod's volumes are not made again");
    }

    #[test]
    fn a_missing_object_or_key_is_worded_as_upstream() {
        let mut sources = Sources::default();
        let key = |name: &str| SourceKey::object(Kind::ConfigMap, "ns", name);
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
