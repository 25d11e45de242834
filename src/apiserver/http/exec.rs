//! `pods/exec` and `pods/attach`: `kubectl exec` and `kubectl attach` are relayed to the kubelet of the pod's
//! node, as upstream's API server proxies them: the client's WebSocket upgrade request is passed on to
//! `GET /exec/{namespace}/{pod}/{container}` (or `/attach/...`) on the kubelet endpoint with the same query and
//! handshake headers, and once the kubelet has switched protocols the two connections are joined byte for
//! byte. The API server never reads the frames; the kubelet's `Sec-WebSocket-Accept` answers the client's key.
//!
//! A request that is not a WebSocket upgrade is refused as upstream refuses it when the upgrade fails
//! (`Upgrade request required`; kubectl then tries SPDY, which is not served, and reports that). A kubelet
//! that refuses (the container is not running, the command cannot start) is relayed as a Status with its words.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::logs::{kubelet_of, pod_and_container};
use super::rest::{error_response, KubeApi};
use crate::apis::catalog;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::verbs::Target;
use crate::limits;

/// The handshake headers passed on to the kubelet.
const PASSED_ON: [header::HeaderName; 4] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// The handshake headers passed back to the client.
const PASSED_BACK: [&str; 2] = ["sec-websocket-accept", "sec-websocket-protocol"];

/// The subresource relayed, by its name in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Exec,
    Attach,
}

impl Verb {
    fn path(self) -> &'static str {
        match self {
            Verb::Exec => "exec",
            Verb::Attach => "attach",
        }
    }
}

pub async fn exec(
    State(api): State<Arc<KubeApi>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    relay(&api, Verb::Exec, namespace, name, request).await.unwrap_or_else(|e| error_response(&e))
}

pub async fn attach(
    State(api): State<Arc<KubeApi>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    relay(&api, Verb::Attach, namespace, name, request).await.unwrap_or_else(|e| error_response(&e))
}

async fn relay(
    api: &KubeApi,
    verb: Verb,
    namespace: String,
    name: String,
    mut request: Request,
) -> Result<Response, ApiError> {
    let upgrade = request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(ApiError::BadRequest("Upgrade request required".to_owned()));
    }
    let pods = catalog::find("", "v1", "pods").expect("pods are served");
    let target =
        Target { resource: pods, namespace: Some(namespace.clone()), name: Some(name.clone()), subresource: None };
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (pod, container) = pod_and_container(&api.verbs, &target, &query).await?;
    if let Some(phase) = pod["status"]["phase"].as_str().filter(|p| *p == "Succeeded" || *p == "Failed") {
        return Err(ApiError::BadRequest(match verb {
            Verb::Exec => format!("cannot exec into a container in a completed pod; current phase is {phase}"),
            Verb::Attach => format!("cannot attach a container in a completed pod; current phase is {phase}"),
        }));
    }
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!("pod {name} does not have a host assigned")));
    };
    let address = kubelet_of(&api.verbs, node_name).await?;
    let unavailable = |e: String| {
        ApiError::Unavailable(format!("the kubelet of node {node_name:?} at {address} did not answer: {e}"))
    };

    // The kubelet's request: the client's query (the container in the path instead) and handshake.
    let passed: Vec<String> = query.iter().filter(|(k, _)| k != "container").map(|(k, v)| format!("{k}={v}")).collect();
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut head = format!(
        "GET /{}/{}/{}/{}?{} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
        verb.path(),
        encode(&namespace),
        encode(&name),
        encode(&container),
        passed.join("&")
    );
    for name in PASSED_ON {
        if let Some(value) = request.headers().get(&name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let connect = Duration::from_millis(limits::KUBELET_CONNECT_TIMEOUT_MS);
    let mut kubelet = tokio::time::timeout(connect, dial(&address, api.kubelets.tls.clone()))
        .await
        .map_err(|_| unavailable(format!("no connection within {connect:?}")))?
        .map_err(|e| unavailable(e.to_string()))?;
    kubelet.write_all(head.as_bytes()).await.map_err(|e| unavailable(e.to_string()))?;
    let waited = Duration::from_millis(limits::KUBELET_RESPONSE_TIMEOUT_MS);
    let (answer, rest) = tokio::time::timeout(waited, read_head(&mut kubelet))
        .await
        .map_err(|_| unavailable(format!("no answer within {waited:?}")))?
        .map_err(|e| unavailable(e.to_string()))?;
    let (status, headers) = parse_head(&answer).ok_or_else(|| unavailable("an answer that is not HTTP".to_owned()))?;
    if status != 101 {
        let body = String::from_utf8_lossy(&rest).trim().to_owned();
        return Err(match status {
            400 | 422 => ApiError::BadRequest(body),
            404 => ApiError::PathNotFound(body),
            _ => ApiError::Internal(format!("the kubelet answered {status}: {body}")),
        });
    }

    let client = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = client.await else { return };
        let mut client = TokioIo::new(upgraded);
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
    });
    let mut response = (StatusCode::SWITCHING_PROTOCOLS, Body::empty()).into_response();
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for (name, value) in headers {
        if PASSED_BACK.contains(&name.to_ascii_lowercase().as_str()) {
            if let (Ok(name), Ok(value)) = (header::HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                out.insert(name, value);
            }
        }
    }
    Ok(response)
}

/// A connection to a kubelet.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Connection for T {}

/// Connects to the kubelet at `address` (`host:port`): over TLS with `tls` (verifying that its certificate
/// names the host), or plain.
async fn dial(address: &str, tls: Option<Arc<rustls::ClientConfig>>) -> std::io::Result<Box<dyn Connection>> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else { return Ok(Box::new(tcp)) };
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    Ok(Box::new(tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?))
}

/// Reads an HTTP response head; returns it and whatever came after it (a refusal's body, or the first frames).
async fn read_head(stream: &mut Box<dyn Connection>) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            if !buffer.starts_with(b"HTTP/1.1 101") {
                // A refusal: its body, as much as the kubelet sends before closing (bounded).
                let mut body = rest;
                let mut limited = stream.take(limits::KUBELET_ERROR_BYTES_MAX.saturating_sub(body.len()) as u64);
                let _ = tokio::time::timeout(Duration::from_secs(1), limited.read_to_end(&mut body)).await;
                return Ok((buffer, body));
            }
            return Ok((buffer, rest));
        }
        if buffer.len() > limits::KUBELET_ERROR_BYTES_MAX {
            return Err(std::io::Error::other("the answer's head is too long"));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::other("the kubelet closed the connection"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The status code and headers of a response head.
fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Some((status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_give_their_status_and_headers() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
        let (status, headers) = parse_head(head).unwrap();
        assert_eq!(status, 101);
        assert!(headers.contains(&("Sec-WebSocket-Accept".to_owned(), "abc=".to_owned())));
        assert_eq!(parse_head(b"garbage"), None);
    }
}
