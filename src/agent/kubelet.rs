//! The kubelet's HTTP endpoint: `GET /containerLogs/{namespace}/{pod}/{container}`, which the API server relays
//! `pods/log` to (`apiserver::http::logs`), served from the runtime's log files (`container_log`);
//! `GET /exec/{namespace}/{pod}/{container}` and `GET /attach/{namespace}/{pod}/{container}`, `kubectl exec`
//! and `kubectl attach` over a WebSocket (`exec.rs`);
//! `GET /metrics/usage`, the latest usage sample of the agent's nodes and pods (`agent::usage`), which the
//! leader scrapes; `GET /metrics`, the agent's operational metrics (`telemetry`); and `GET /healthz`. Over
//! TLS, only the API servers are served (`auth.rs`), `/healthz` aside.
//!
//! Query options are the kubelet's (`PodLogOptions` v1): `follow`, `tailLines` (and the older `tail`),
//! `limitBytes`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous`. Answers as upstream's: 404
//! `pod "p" does not exist` for a pod this node does not run, 400 with the container's state for one that has
//! no log yet (`container "c" in pod "p" is waiting to start: ContainerCreating`) or no previous attempt, 400
//! for a query that does not decode and 422 for one that does not validate.
//!
//! Two differences, since the endpoint knows a pod by its uid and its containers by what the runtime reports:
//! a container the runtime has not started is taken as waiting to start (upstream tells one missing from the
//! pod's spec, 404, but the API server checks the name before it relays); and `previous` is the attempt
//! before the latest one the runtime knows (while a container waits to be restarted, upstream already calls
//! the exited attempt the previous one).
//!
//! Invariants:
//! - A followed log streams until the container's attempt has ended and everything it wrote is served, the
//!   client goes away, `limitBytes` is reached, or the server shuts down; the stream checks the file every
//!   `KUBELET_LOG_FOLLOW_POLL_MS` and the runtime's state every `KUBELET_LOG_FOLLOW_STATUS_MS`.
//! - At most `KUBELET_CONNECTIONS_MAX` connections are served at once (more wait in the listen backlog); a
//!   request header must arrive within `KUBELET_HEADER_READ_TIMEOUT_MS`; a log streams through a queue of at
//!   most `KUBELET_LOG_CHUNKS_QUEUED_MAX` chunks, so a slow client slows the reading of the file.
//! - Connections are set up in one place (`serve`), the TLS handshake within `KUBELET_TLS_HANDSHAKE_TIMEOUT_MS`
//!   in the connection's own task, so that a silent client holds only its slot.

pub mod auth;
pub mod container_log;
pub mod exec;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use jiff::Timestamp;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

pub use self::auth::Access;
use self::container_log::{LogCursor, LogOptions, Progress};
use super::runtime::{ContainerLogs, ContainerState, Runtime};
use super::usage::Latest;
use crate::{limits, telemetry};

type Body = BoxBody<Bytes, Infallible>;

/// What a log request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    pub options: LogOptions,
    pub follow: bool,
    pub previous: bool,
}

/// Why a log request's query was refused: it did not decode (400) or did not validate (422).
#[derive(Debug, PartialEq, Eq)]
pub enum QueryError {
    Decode,
    Invalid,
}

struct Shared<R, P> {
    pods: P,
    runtime: Arc<R>,
    access: Access,
    usage: Latest,
    drain: watch::Receiver<bool>,
}

/// Serves the kubelet endpoint on `listener` until `shutdown` resolves; then stops accepting, ends the logs
/// being followed, lets each connection finish and returns once all are closed. `pods` maps a namespace and
/// pod name to the uid of the pod this node runs under that name; `access` says over what and to whom.
pub async fn serve<R, P>(
    listener: TcpListener,
    access: Access,
    pods: P,
    runtime: Arc<R>,
    usage: Latest,
    shutdown: impl Future<Output = ()>,
) where
    R: Runtime,
    P: Fn(&str, &str) -> Option<String> + Send + Sync + 'static,
{
    let (drain_tx, drain_rx) = watch::channel(false);
    let shared = Arc::new(Shared { pods, runtime, access, usage, drain: drain_rx.clone() });
    let connections_allowed = Arc::new(Semaphore::new(limits::KUBELET_CONNECTIONS_MAX));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits::KUBELET_HEADER_READ_TIMEOUT_MS));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&connections_allowed).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            tcp = crate::cluster::listen::accept(&listener, "kubelet") => tcp,
        };
        let (http, shared, drain) = (http.clone(), Arc::clone(&shared), drain_rx.clone());
        connections.spawn(async move {
            let _permit = permit;
            match &shared.access {
                Access::Open => serve_connection(http, tcp, shared, true, drain).await,
                Access::Tls(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    let handshake = Duration::from_millis(limits::KUBELET_TLS_HANDSHAKE_TIMEOUT_MS);
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "kubelet: tls handshake failed"),
                        Err(_) => return tracing::debug!("kubelet: tls handshake timed out"),
                    };
                    let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
                    let admitted = auth::admitted(&shared.access, certificate);
                    serve_connection(http, stream, shared, admitted, drain).await
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = drain_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection's requests (those of a client not `admitted` are answered 403) until it closes or
/// the server drains.
async fn serve_connection<R, P, IO>(
    http: hyper::server::conn::http1::Builder,
    io: IO,
    shared: Arc<Shared<R, P>>,
    admitted: bool,
    mut drain: watch::Receiver<bool>,
) where
    R: Runtime,
    P: Fn(&str, &str) -> Option<String> + Send + Sync + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, admitted, request).await) }
    });
    let connection = http.serve_connection(hyper_util::rt::TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopping(&mut drain) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "kubelet connection ended");
    }
}

/// Resolves once the server drains (or is gone).
async fn stopping(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|stop| *stop).await;
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn handle<R, P, B>(shared: &Shared<R, P>, admitted: bool, request: Request<B>) -> Response<Body>
where
    R: Runtime,
    P: Fn(&str, &str) -> Option<String>,
{
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    if request.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    if !admitted {
        return text(StatusCode::FORBIDDEN, "Forbidden: only the API servers may use this endpoint");
    }
    for (prefix, session) in [("/exec/", exec::Session::Exec), ("/attach/", exec::Session::Attach)] {
        if let Some(rest) = request.uri().path().strip_prefix(prefix).map(str::to_owned) {
            return session_request(shared, session, &rest, request).await;
        }
    }
    let path = request.uri().path();
    if path == "/metrics" {
        let report = Arc::clone(&shared.usage.read().unwrap_or_else(|p| p.into_inner()));
        let metrics = telemetry::get();
        for node in &report.nodes {
            let pods = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
            metrics.agent.running_pods.get_or_create(&telemetry::Node { node: node.name.clone() }).set(pods);
        }
        let mut response = Response::new(Full::new(Bytes::from(metrics.encode())).boxed());
        let content_type = header::HeaderValue::from_static(telemetry::CONTENT_TYPE);
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
        return response;
    }
    if path == "/metrics/usage" {
        let report = Arc::clone(&shared.usage.read().unwrap_or_else(|p| p.into_inner()));
        let mut response =
            Response::new(Full::new(Bytes::from(serde_json::to_vec(&*report).unwrap_or_default())).boxed());
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        return response;
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let Some(segments) = container_path(rest) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let [namespace, pod, container] = &segments;
    for (value, missing) in [(pod, "podID"), (container, "container name"), (namespace, "podNamespace")] {
        if value.is_empty() {
            return text(StatusCode::BAD_REQUEST, format!("{{\"message\": \"Missing {missing}.\"}}"));
        }
    }
    let log = match parse_query(request.uri().query().unwrap_or_default(), Timestamp::now()) {
        Ok(log) => log,
        Err(QueryError::Decode) => {
            return text(StatusCode::BAD_REQUEST, r#"{"message": "Unable to decode query."}"#);
        }
        Err(QueryError::Invalid) => {
            return text(StatusCode::UNPROCESSABLE_ENTITY, r#"{"message": "Invalid request."}"#)
        }
    };
    let Some(uid) = (shared.pods)(namespace.as_str(), pod.as_str()) else {
        return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
    };
    let reports = match shared.runtime.list().await {
        Ok(reports) => reports,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("listing the node's containers: {e}")),
    };
    let Some(report) = reports.into_iter().find(|r| r.pod_uid == uid && r.name == *container) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"),
        );
    };
    let logs = match shared.runtime.logs(&uid, container, &log).await {
        Ok(logs) => logs,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the container's log: {e}")),
    };
    let path = match logs {
        Some(ContainerLogs::File(path)) => path,
        Some(ContainerLogs::Stream(stream)) => {
            let (tx, rx) = mpsc::channel(limits::KUBELET_LOG_CHUNKS_QUEUED_MAX);
            tokio::spawn(relay_log(stream, log.options.limit_bytes, tx, shared.drain.clone()));
            return log_response(rx);
        }
        None if log.previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        // The attempt wrote no log (it could not be started).
        None => return text(StatusCode::OK, ""),
    };
    let options = log.options.clone();
    let cursor = match tokio::task::spawn_blocking(move || LogCursor::open(&path, options)).await {
        Ok(Ok(cursor)) => cursor,
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the container's log: {e}")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the container's log: {e}")),
    };
    // Following the current attempt ends with it; a previous attempt has ended already.
    let running = matches!(report.state, ContainerState::Running { .. }) && !log.previous;
    let watched =
        (log.follow && running).then(|| Attempt { pod_uid: uid, name: container.clone(), attempt: report.attempt });
    let (tx, rx) = mpsc::channel(limits::KUBELET_LOG_CHUNKS_QUEUED_MAX);
    tokio::spawn(stream_log(cursor, Arc::clone(&shared.runtime), watched, tx, shared.drain.clone()));
    log_response(rx)
}

/// `GET /exec/{namespace}/{pod}/{container}` and `GET /attach/...` (`path` is what follows the verb): starts the
/// command or attaches to the container, then answers the WebSocket upgrade and relays the session (`exec.rs`).
async fn session_request<R, P, B>(
    shared: &Shared<R, P>,
    session: exec::Session,
    path: &str,
    mut request: Request<B>,
) -> Response<Body>
where
    R: Runtime,
    P: Fn(&str, &str) -> Option<String>,
{
    let Some(segments) = container_path(path) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let [namespace, pod, container] = &segments;
    let query = request.uri().query().unwrap_or_default();
    let (exec_request, stdout, stderr) = match exec::parse_query(query, session) {
        Ok(parsed) => parsed,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let header = |name: header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !header(header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let key = header(header::SEC_WEBSOCKET_KEY).to_owned();
    let Some(protocol) = exec::choose_protocol(header(header::SEC_WEBSOCKET_PROTOCOL)) else {
        let offered = exec::PROTOCOLS.join(", ");
        return text(StatusCode::BAD_REQUEST, format!("no subprotocol this kubelet speaks was offered ({offered})"));
    };
    let Some(uid) = (shared.pods)(namespace.as_str(), pod.as_str()) else {
        return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
    };
    let started = match session {
        exec::Session::Exec => shared.runtime.exec_session(&uid, container, exec_request).await,
        exec::Session::Attach => shared.runtime.attach_session(&uid, container, exec_request.stdin).await,
    };
    let session = match started {
        Ok(session) => session,
        Err(e) => {
            let what = match session {
                exec::Session::Exec => "start the command in",
                exec::Session::Attach => "attach to",
            };
            return text(StatusCode::BAD_REQUEST, format!("unable to {what} container {container:?}: {e}"));
        }
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => exec::relay(upgraded, session, protocol == exec::PROTOCOLS[0], stdout, stderr).await,
            Err(e) => tracing::debug!(error = %e, "kubelet: an exec or attach upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, header::HeaderValue::from_static(protocol));
    if let Ok(accept) = header::HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A log's response: its chunks as they come.
fn log_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let body = StreamBody::new(ReceiverStream::new(rx).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Relays a runtime's log stream into `tx`, cut at `limit` bytes, until it ends, the client goes away or the
/// server drains.
async fn relay_log(
    mut stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    limit: Option<u64>,
    tx: mpsc::Sender<Bytes>,
    mut drain: watch::Receiver<bool>,
) {
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            () = tx.closed() => return,
            () = stopping(&mut drain) => return,
        };
        let mut chunk = match chunk {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading a container log");
                return;
            }
            None => return,
        };
        chunk.truncate(left.min(chunk.len() as u64) as usize);
        left -= chunk.len() as u64;
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

/// The attempt a followed log belongs to.
struct Attempt {
    pod_uid: String,
    name: String,
    attempt: u32,
}

impl Attempt {
    /// Whether the attempt has ended (or is gone) by the runtime's account.
    async fn ended<R: Runtime>(&self, runtime: &R) -> bool {
        let Ok(reports) = runtime.list().await else { return false };
        match reports.iter().find(|r| r.pod_uid == self.pod_uid && r.name == self.name) {
            Some(report) => report.attempt != self.attempt || matches!(report.state, ContainerState::Exited { .. }),
            None => true,
        }
    }
}

/// Reads the log into `tx` until it is all served, or, when following `watched`, until that attempt has ended
/// and all it wrote is served, the client went away or the server drains.
async fn stream_log<R: Runtime>(
    mut cursor: LogCursor,
    runtime: Arc<R>,
    watched: Option<Attempt>,
    tx: mpsc::Sender<Bytes>,
    mut drain: watch::Receiver<bool>,
) {
    let mut ended = watched.is_none();
    let mut checked = tokio::time::Instant::now();
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let progress = cursor.read(&mut out, limits::KUBELET_LOG_CHUNK_BYTES);
            (cursor, out, progress)
        })
        .await;
        let Ok((returned, out, progress)) = read else { return };
        cursor = returned;
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        match progress {
            Ok(Progress::More) => continue,
            Ok(Progress::Done) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading a container log");
                return;
            }
            Ok(Progress::Idle) if ended => return,
            Ok(Progress::Idle) => {}
        }
        if let Some(attempt) = &watched {
            if checked.elapsed() >= Duration::from_millis(limits::KUBELET_LOG_FOLLOW_STATUS_MS) {
                checked = tokio::time::Instant::now();
                if attempt.ended(runtime.as_ref()).await {
                    // Everything was written before the end was recorded: one more read serves the rest.
                    ended = true;
                    continue;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(limits::KUBELET_LOG_FOLLOW_POLL_MS)) => {}
            () = tx.closed() => return,
            () = stopping(&mut drain) => return,
        }
    }
}

/// `{namespace}/{pod}/{container}`, each segment percent-decoded.
fn container_path(path: &str) -> Option<[String; 3]> {
    let segments: Vec<String> =
        path.split('/').map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    segments.try_into().ok()
}

/// A query's `key=value` pairs, form-decoded, in order.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Decodes and validates a log request's query as the kubelet does; `now` anchors `sinceSeconds`.
pub fn parse_query(query: &str, now: Timestamp) -> Result<LogRequest, QueryError> {
    let pairs = query_pairs(query);
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let int = |key: &str| get(key).map(|v| v.parse::<i64>().map_err(|_| QueryError::Decode)).transpose();
    let flag = |key: &str| get(key).map(|v| parse_bool(v).ok_or(QueryError::Decode)).transpose();
    let mut tail_lines = int("tailLines")?;
    // The older `tail` parameter; `all` is every line.
    match get("tail") {
        Some("all") => tail_lines = None,
        Some(tail) => tail_lines = Some(tail.parse().map_err(|_| QueryError::Decode)?),
        None => {}
    }
    let limit_bytes = int("limitBytes")?;
    let since_seconds = int("sinceSeconds")?;
    let since_time = match get("sinceTime") {
        Some(text) => {
            let (seconds, nanos) = crate::apis::time::parse(text).ok_or(QueryError::Decode)?;
            Some(Timestamp::new(seconds, nanos as i32).map_err(|_| QueryError::Decode)?)
        }
        None => None,
    };
    if tail_lines.is_some_and(|t| t < 0)
        || limit_bytes.is_some_and(|l| l < 1)
        || since_seconds.is_some_and(|s| s < 1)
        || (since_seconds.is_some() && since_time.is_some())
    {
        return Err(QueryError::Invalid);
    }
    let since = match since_seconds {
        Some(seconds) => Some(now.checked_sub(jiff::SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MIN)),
        None => since_time,
    };
    Ok(LogRequest {
        options: LogOptions {
            tail_lines: tail_lines.map(|t| t as u64),
            limit_bytes: limit_bytes.map(|l| l as u64),
            since,
            timestamps: flag("timestamps")?.unwrap_or(false),
        },
        follow: flag("follow")?.unwrap_or(false),
        previous: flag("previous")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_validate_as_the_kubelet_does() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let request = parse_query("follow=true&tailLines=10&timestamps=1&limitBytes=5&previous=False", now).unwrap();
        assert_eq!(
            request,
            LogRequest {
                options: LogOptions { tail_lines: Some(10), limit_bytes: Some(5), since: None, timestamps: true },
                follow: true,
                previous: false,
            }
        );
        let since = parse_query("sinceSeconds=60", now).unwrap().options.since.unwrap();
        assert_eq!(since, "2026-01-01T00:00:00Z".parse().unwrap());
        let since = parse_query("sinceTime=2026-01-01T00%3A00%3A30Z", now).unwrap().options.since.unwrap();
        assert_eq!(since, "2026-01-01T00:00:30Z".parse().unwrap());
        assert_eq!(parse_query("tail=3", now).unwrap().options.tail_lines, Some(3));
        assert_eq!(parse_query("tailLines=3&tail=all", now).unwrap().options.tail_lines, None);
        assert_eq!(parse_query("", now).unwrap(), LogRequest::default());

        assert_eq!(parse_query("follow=yes", now), Err(QueryError::Decode));
        assert_eq!(parse_query("tailLines=x", now), Err(QueryError::Decode));
        assert_eq!(parse_query("sinceTime=yesterday", now), Err(QueryError::Decode));
        assert_eq!(parse_query("tailLines=-1", now), Err(QueryError::Invalid));
        assert_eq!(parse_query("limitBytes=0", now), Err(QueryError::Invalid));
        assert_eq!(parse_query("sinceSeconds=0", now), Err(QueryError::Invalid));
        assert_eq!(parse_query("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", now), Err(QueryError::Invalid));
    }
}
