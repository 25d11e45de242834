//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, as metrics-server serves them to `kubectl top` and
//! autoscalers, made from the leader's points (`crate::metrics::Points`) and the nodes and pods the request
//! selects (label and field selectors as on `nodes` and `pods`, read from the watch cache).
//!
//! Only the leader keeps points: a follower relays the request, path and query unchanged, to the API address
//! the leader published, and passes its answer back. A relayed request is answered by the replica it reaches
//! from what that replica keeps, or refused with 503 if it no longer leads (leadership moved meanwhile): a
//! request is relayed once at most. Objects without points are left out of lists and are `NotFound` by name,
//! as upstream's.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::{json, Map, Value};

use super::ReplicaClient;
use crate::apis::catalog;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::collections::{self, ListOptions};
use crate::apiserver::registry::objects::Consistency;
use crate::apiserver::registry::verbs::{Target, Verbs};
use crate::apiserver::watch_cache::WatchCaches;
use crate::limits;
use crate::metrics::{NodePoint, Points, Usage};
use crate::store::Store;

/// Marks a request a follower relayed to the leader.
pub const RELAYED_HEADER: &str = "raftsman-metrics-relayed";

/// The HTTP client a follower relays metrics reads with.
#[derive(Clone)]
pub struct Relay {
    client: ReplicaClient,
}

/// A quantity of CPU as metrics-server writes it (billionths of a core).
pub fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// A quantity of memory as metrics-server writes it (kibibytes when whole).
pub fn memory_quantity(bytes: u64) -> String {
    match bytes % 1024 {
        0 => format!("{}Ki", bytes / 1024),
        _ => bytes.to_string(),
    }
}

fn usage_value(usage: Usage) -> Value {
    json!({"cpu": cpu_quantity(usage.cpu_nanocores), "memory": memory_quantity(usage.memory_bytes)})
}

/// A window as Go's `time.Duration` prints and parses it (`5s`, `4.998s`).
pub fn window(ms: u64) -> String {
    let (seconds, millis) = (ms / 1000, ms % 1000);
    match millis {
        0 => format!("{seconds}s"),
        _ => format!("{seconds}.{}s", format!("{millis:03}").trim_end_matches('0')),
    }
}

/// The metadata of a metrics object: the name, namespace and labels of what it measures, created now.
fn metadata(object: &Value, now: &str) -> Value {
    let mut meta = Map::new();
    for field in ["name", "namespace", "labels"] {
        if let Some(v) = object["metadata"].get(field).filter(|v| !v.is_null()) {
            meta.insert(field.to_owned(), v.clone());
        }
    }
    meta.insert("creationTimestamp".to_owned(), json!(now));
    Value::Object(meta)
}

fn node_metrics(node: &Value, point: NodePoint, now: &str) -> Value {
    json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": metadata(node, now),
        "timestamp": point.timestamp, "window": window(point.window_ms), "usage": usage_value(point.usage)})
}

/// A pod's metrics, when its point is of this pod (the same uid, not an earlier pod of that name).
fn pod_metrics(points: &Points, pod: &Value, now: &str) -> Option<Value> {
    let meta = &pod["metadata"];
    let point = points.pod(meta["namespace"].as_str()?, meta["name"].as_str()?)?;
    if meta["uid"].as_str() != Some(point.uid.as_str()) {
        return None;
    }
    let containers: Vec<Value> =
        point.containers.iter().map(|c| json!({"name": c.name, "usage": usage_value(c.usage)})).collect();
    Some(json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": metadata(pod, now),
        "timestamp": point.timestamp, "window": window(point.window_ms), "containers": containers}))
}

/// Where this replica's metrics reads go: answered here, or relayed to the leader's API address.
enum Route {
    Here,
    Leader(String),
}

fn route(points: &Points, store: &Store, headers: &HeaderMap) -> Result<Route, ApiError> {
    if points.kept() {
        return Ok(Route::Here);
    }
    let unavailable = |why: &str| ApiError::Unavailable(format!("resource metrics are kept by the leader: {why}"));
    if headers.contains_key(RELAYED_HEADER) {
        return Err(unavailable("this replica no longer leads; try again"));
    }
    let leader = store.status().leader.ok_or_else(|| unavailable("no leader is known"))?;
    if leader == store.member_id() {
        return Err(unavailable("this replica has only begun to lead; try again"));
    }
    let address = store
        .members()
        .into_iter()
        .find(|m| m.id == leader)
        .and_then(|m| m.published)
        .map(|p| p.api_addr)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| unavailable("the leader has not published its API address yet"))?;
    Ok(Route::Leader(address))
}

impl Relay {
    pub fn new(tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Relay {
        Relay { client: ReplicaClient::new(limits::KUBELET_CONNECT_TIMEOUT_MS, 1, tls) }
    }

    async fn relay(&self, address: &str, uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let unavailable = |why: String| ApiError::Unavailable(format!("relaying to the leader at {address}: {why}"));
        let uri = self.client.uri(address, path).map_err(|e| unavailable(e.to_string()))?;
        let mut request = http::Request::get(uri)
            .header(RELAYED_HEADER, "1")
            .body(Empty::new())
            .map_err(|e| unavailable(e.to_string()))?;
        if let Some(accept) = headers.get(header::ACCEPT) {
            request.headers_mut().insert(header::ACCEPT, accept.clone());
        }
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, limits::METRICS_REPORT_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((parts, body))
        };
        let waited = Duration::from_millis(limits::METRICS_SCRAPE_TIMEOUT_MS);
        let (parts, body) = tokio::time::timeout(waited, answer)
            .await
            .map_err(|_| unavailable(format!("no answer within {waited:?}")))?
            .map_err(unavailable)?;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
            let kind = HeaderValue::from_bytes(kind.as_bytes()).unwrap_or(HeaderValue::from_static("application/json"));
            response.headers_mut().insert(header::CONTENT_TYPE, kind);
        }
        Ok(response)
    }
}

/// What a metrics read needs of the API.
pub struct Sources<'a> {
    pub verbs: &'a Verbs,
    pub caches: &'a WatchCaches,
    pub points: &'a Points,
    pub relay: &'a Relay,
}

/// What a metrics read answers: the metrics objects, or the relayed answer of the leader.
pub enum Answer {
    Objects(Vec<Value>),
    Relayed(Response),
}

/// Reads the metrics `target` names (a `metrics.k8s.io` resource), with `options` selecting what they measure.
pub async fn read(
    sources: &Sources<'_>,
    target: &Target,
    options: ListOptions,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    if let Route::Leader(address) = route(sources.points, sources.verbs.objects.store(), headers)? {
        return sources.relay.relay(&address, uri, headers).await.map(Answer::Relayed);
    }
    let measured = catalog::find("", "v1", target.resource.plural).expect("metrics measure served kinds");
    let of = Target { resource: measured, namespace: target.namespace.clone(), name: None, subresource: None };
    let now = jiff::Timestamp::now().to_string();
    let metrics_of = |object: &Value| match measured.plural {
        "nodes" => {
            let point = sources.points.node(object["metadata"]["name"].as_str()?)?;
            Some(node_metrics(object, point, &now))
        }
        _ => pod_metrics(sources.points, object, &now),
    };
    if let Some(name) = &target.name {
        let named = Target { name: Some(name.clone()), ..of };
        let object = sources.verbs.get(&named, Consistency::Local).await.ok().map(|s| s.object);
        let found = object.as_ref().and_then(metrics_of);
        return found
            .map(|m| Answer::Objects(vec![m]))
            .ok_or_else(|| ApiError::NotFound { resource: target.resource, name: name.clone() });
    }
    // From the watch cache: metrics are as fresh as the points, not a linearizable read.
    let options = ListOptions { resource_version: Some("0".into()), continue_token: None, limit: 0, ..options };
    let listed = collections::list_cached(sources.caches, &of, &options).await?;
    let objects = listed.items.iter().filter_map(|raw| raw.decode().ok()).map(|s| s.object);
    Ok(Answer::Objects(objects.filter_map(|o| metrics_of(&o)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_windows_read_as_metrics_servers() {
        assert_eq!(cpu_quantity(250_000_000), "250000000n");
        assert_eq!(memory_quantity(64 * 1024 * 1024), "65536Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(window(5000), "5s");
        assert_eq!(window(4998), "4.998s");
        assert_eq!(window(15_050), "15.05s");
        assert_eq!(window(0), "0s");
    }

    #[test]
    fn a_pods_metrics_are_of_that_pod_only() {
        let points = Points::default();
        points.start();
        points.record(crate::metrics::NodeReport {
            name: "n".into(),
            timestamp: "2026-12-06T10:00:00Z".into(),
            window_ms: 5000,
            usage: Usage::default(),
            pods: vec![crate::metrics::PodReport {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u1".into(),
                containers: vec![crate::metrics::ContainerReport {
                    name: "c".into(),
                    usage: Usage { cpu_nanocores: 5, memory_bytes: 2048 },
                }],
                metrics: Default::default(),
            }],
        });
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"},
            "resourceVersion": "7"}});
        let metrics = pod_metrics(&points, &pod, "now").unwrap();
        assert_eq!(
            metrics["metadata"],
            json!({"name": "p", "namespace": "ns", "labels": {"app": "a"},
            "creationTimestamp": "now"})
        );
        assert_eq!(metrics["window"], "5s");
        assert_eq!(metrics["containers"], json!([{"name": "c", "usage": {"cpu": "5n", "memory": "2Ki"}}]));
        let successor = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u2"}});
        assert!(pod_metrics(&points, &successor, "now").is_none());
    }
}
