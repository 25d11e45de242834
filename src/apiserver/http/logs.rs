//! `pods/{name}/log`: the API server finds the pod's node and relays the container log its kubelet serves at
//! `/containerLogs/{namespace}/{pod}/{container}`, streaming it back as text.
//!
//! The kubelet's address is the node's `InternalIP` (or `Hostname`) and its
//! `status.daemonEndpoints.kubeletEndpoint.Port`, as upstream resolves it. Query options (`follow`,
//! `tailLines`, `sinceSeconds`, `timestamps`, `previous`, `limitBytes`) are passed through unchanged.
//!
//! One client (`Kubelets`) serves every relay of a replica and keeps a few idle connections per kubelet. A
//! kubelet that cannot be reached within `KUBELET_CONNECT_TIMEOUT_MS`, or has not begun to answer within
//! `KUBELET_RESPONSE_TIMEOUT_MS`, is a 503; once it answers, the log streams for as long as the client reads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::ReplicaClient;
use crate::apis::catalog;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::objects::Consistency;
use crate::apiserver::registry::verbs::{Target, Verbs};
use crate::limits;

/// The client the API server reaches kubelets with, shared by every log relay: over TLS with the replica's
/// API certificate when the API serves TLS (the kubelets serve only such clients).
#[derive(Clone)]
pub struct Kubelets {
    client: ReplicaClient,
    /// The TLS configuration the session relays (`exec.rs`) dial kubelets with; None over plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Kubelets {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Kubelets {
        let (connect, idle) = (limits::KUBELET_CONNECT_TIMEOUT_MS, limits::KUBELET_IDLE_CONNECTIONS_MAX);
        Kubelets { client: ReplicaClient::new(connect, idle, tls.clone()), tls }
    }
}

/// The query options a log request passes on to the kubelet.
const PASSED_ON: &[&str] =
    &["follow", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "previous", "limitBytes"];

/// Which container's log: the one named, the pod's default container, or its only one.
pub fn container<'a>(pod: &'a Value, requested: Option<&'a str>) -> Result<&'a str, ApiError> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str();
    match requested.filter(|c| !c.is_empty()).or(default) {
        Some(c) if names.contains(&c) => Ok(c),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None if names.len() == 1 => Ok(names[0]),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// Where a node's kubelet listens, from its status.
pub fn kubelet_address(node: &Value) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array()?;
    let pick = |kind: &str| addresses.iter().find(|a| a["type"] == kind).and_then(|a| a["address"].as_str());
    let host = pick("InternalIP").or_else(|| pick("Hostname"))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64().unwrap_or(10250);
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    Some(format!("{host}:{port}"))
}

/// The pod `target` names (read linearizably), and the container the query's `container` names or the pod's
/// default one.
pub async fn pod_and_container(
    verbs: &Verbs,
    target: &Target,
    query: &[(String, String)],
) -> Result<(Value, String), ApiError> {
    let main = Target { subresource: None, ..target.clone() };
    let pod = verbs.get(&main, Consistency::Linearizable).await?.object;
    let requested = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str());
    let container = container(&pod, requested)?.to_owned();
    Ok((pod, container))
}

/// Where the kubelet of node `node_name` listens (`host:port`), from the node's status.
pub async fn kubelet_of(verbs: &Verbs, node_name: &str) -> Result<String, ApiError> {
    let nodes = catalog::find("", "v1", "nodes").expect("nodes are served");
    let node_target = Target { resource: nodes, namespace: None, name: Some(node_name.to_string()), subresource: None };
    let node = verbs.get(&node_target, Consistency::Local).await?.object;
    kubelet_address(&node)
        .ok_or_else(|| ApiError::BadRequest(format!("node {node_name:?} reports no address for its kubelet")))
}

pub async fn log(
    kubelets: &Kubelets,
    verbs: &Verbs,
    target: &Target,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let (pod, container) = pod_and_container(verbs, target, query).await?;
    let container = container.as_str();
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "container {container:?} in pod {:?} is waiting to start: the pod is not scheduled to a node yet",
            target.name()
        )));
    };
    let address = kubelet_of(verbs, node_name).await?;
    let passed: Vec<(&str, &str)> =
        query.iter().filter(|(k, _)| PASSED_ON.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let query = encode_query(&passed);
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let path = format!("/containerLogs/{namespace}/{}/{container}{query}", target.name());
    let uri = kubelets
        .client
        .uri(&address, &path)
        .map_err(|e| ApiError::BadRequest(format!("cannot reach the kubelet at {address}: {e}")))?;
    let unavailable = |e: String| {
        ApiError::Unavailable(format!("the kubelet of node {node_name:?} at {address} did not answer: {e}"))
    };
    let waited = Duration::from_millis(limits::KUBELET_RESPONSE_TIMEOUT_MS);
    let request = http::Request::get(uri)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::Internal(format!("a request to the kubelet at {address}: {e}")))?;
    let answer = tokio::time::timeout(waited, kubelets.client.request(request))
        .await
        .map_err(|_| unavailable(format!("no answer within {waited:?}")))?
        .map_err(|e| unavailable(e.to_string()))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if !status.is_success() {
        // The kubelet's refusal becomes a Status carrying its words, as upstream's API server relays it.
        let body = http_body_util::Limited::new(answer.into_body(), limits::KUBELET_ERROR_BYTES_MAX);
        let text = match tokio::time::timeout(waited, body.collect()).await {
            Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
            _ => format!("the kubelet answered {status}"),
        };
        return Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ApiError::BadRequest(text),
            StatusCode::NOT_FOUND => ApiError::PathNotFound(text),
            _ => ApiError::Internal(text),
        });
    }
    let mut response = (status, Body::new(answer.into_body())).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// What a query part keeps as it is: RFC 3986's unreserved characters.
const QUERY_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `?k=v&...` with each part percent-encoded, or nothing.
fn encode_query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encode = |s: &str| utf8_percent_encode(s, QUERY_PART).to_string();
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    format!("?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_named_the_default_or_the_only_one() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container(&one, None).unwrap(), "a");
        assert!(container(&one, Some("b")).is_err());
        let two = json!({"metadata": {"name": "p", "annotations": {"kubectl.kubernetes.io/default-container": "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(container(&two, None).unwrap(), "b");
        assert_eq!(container(&two, Some("a")).unwrap(), "a");
        let plain = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert!(container(&plain, None).unwrap_err().to_string().contains("choose one of: [a b]"));
    }

    #[test]
    fn kubelets_are_found_from_node_status() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(kubelet_address(&node).unwrap(), "10.0.0.5:10255");
        assert_eq!(
            kubelet_address(&json!({"status": {"addresses": [{"type": "InternalIP", "address": "::1"}]}})).unwrap(),
            "[::1]:10250"
        );
        assert!(kubelet_address(&json!({"status": {}})).is_none());
        assert_eq!(
            encode_query(&[("tailLines", "5"), ("sinceTime", "2026-01-01T00:00:00Z")]),
            "?tailLines=5&sinceTime=2026-01-01T00%3A00%3A00Z"
        );
    }
}
