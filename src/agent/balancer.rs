//! The agent's connection to the API servers: a client-side balancer over the replicas, under the agent's one
//! `kube::Client`. `connect` is the one place where the agent's connections are set up: over TLS with the
//! node's credentials when the agent joined with a node token (each replica's certificate checked against
//! the cluster authority for the replica's address), plain TCP otherwise.
//!
//! The balancer knows the replicas it was given and those it learns from the `kubernetes` Endpoints in
//! `default` (kept in the data dir, so a restarted agent finds the cluster even if every given address is
//! gone). A task checks each replica's `/readyz` every `AGENT_HEALTH_INTERVAL_MS`: ready (200, or a leader
//! failing only because it cannot replicate to some follower), answering (another failure: no leader known,
//! bootstrap not visible) or down. A replica is down when a check fails outright (refused, reset, a TLS
//! failure: nothing usable listens there), or when a check gets no answer within `AGENT_HEALTH_TIMEOUT_MS`
//! and nothing at all (no check, no request) has answered from it for `AGENT_SILENCE_DOWN_MS`: a replica
//! slowed by load keeps answering the agent's requests, and one slow check does not cost every connection.
//! Requests go to one replica while it stays ready (sticky, like k3s's agent load balancer; or, before any
//! check of it has answered, while it answers requests), else to the first ready one, else to one that
//! answers; never to one that is down.
//!
//! Keeps DESIGN.md invariant 7: a dead replica is found by the application-level check, not by TCP timeouts,
//! and every connection to it (idle ones and in-flight requests and watches alike) is closed the moment it
//! turns down (or after `AGENT_UNREADY_GRACE_MS` of answering unready while another replica is ready), so
//! kube-runtime's watchers resume elsewhere from their last resourceVersion. A request whose connection cannot
//! even be made (nothing was sent) is retried at once on another replica.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Endpoints;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::limits;

type HttpClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// What the health checks of a replica say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Failed outright, or silent for `AGENT_SILENCE_DOWN_MS`: never used.
    Down,
    /// Not checked yet: used only when no replica is known to answer.
    Unknown,
    /// Answers `/readyz` with an error: used only when no replica is ready.
    Answering,
    /// Answers `/readyz` with 200.
    Ready,
}

/// What one health check, or one attempt to connect for a request, found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// An answer, showing the replica's health (`Ready` or `Answering`).
    Answered(Health),
    /// Failed before the timeout: refused, reset, or a TLS failure. Nothing usable listens there.
    Failed,
    /// No answer within the timeout: the replica may be gone, or only slow.
    Silent,
}

struct Replica {
    addr: SocketAddr,
    /// Given on the command line (never forgotten), as opposed to learned from the cluster.
    given: bool,
    health: Health,
    /// Since when the replica has not been ready (while it answers).
    unready_since: Option<Instant>,
    /// When anything (a check, a request) last got an answer from the replica; before any did, when the
    /// replica became known.
    last_answer: Instant,
    /// Whether a request sent to it got an answer.
    served: bool,
    /// Bumped to close every connection to the replica; dropped (which closes them too) when it is forgotten.
    generation: watch::Sender<u64>,
}

/// The balancer's state, shared by the service, the connector and the health checker. A std Mutex: nothing
/// awaits while holding it.
struct Shared {
    replicas: Mutex<State>,
    data_dir: Option<PathBuf>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

struct State {
    replicas: Vec<Replica>,
    /// The replica requests go to while it stays ready.
    current: Option<SocketAddr>,
}

impl Shared {
    fn new(
        given: &[SocketAddr],
        learned: &[SocketAddr],
        data_dir: Option<PathBuf>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Shared {
        let mut state = State { replicas: Vec::new(), current: None };
        for (addr, given) in given.iter().map(|a| (a, true)).chain(learned.iter().map(|a| (a, false))) {
            if state.replicas.len() < limits::AGENT_SERVERS_MAX && !state.replicas.iter().any(|r| r.addr == *addr) {
                state.replicas.push(Replica::new(*addr, given));
            }
        }
        Shared { replicas: Mutex::new(state), data_dir, tls }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.lock().expect("balancer lock poisoned").replicas.iter().map(|r| r.addr).collect()
    }

    /// The replica the next request goes to (see the module doc), and makes it the current one.
    fn pick(&self, avoid: &[SocketAddr]) -> Option<SocketAddr> {
        let mut state = self.replicas.lock().expect("balancer lock poisoned");
        let candidates = state.replicas.iter().filter(|r| !avoid.contains(&r.addr) && r.health != Health::Down);
        let best = candidates.clone().map(|r| r.health).max()?;
        // A current replica whose checks have not answered yet (slow under load) stays while it serves requests.
        let keep = |r: &Replica| r.health == best || (r.health == Health::Unknown && r.served);
        let current = state.current.filter(|c| candidates.clone().any(|r| r.addr == *c && keep(r)));
        let chosen = current.or_else(|| candidates.clone().find(|r| r.health == best).map(|r| r.addr))?;
        if state.current != Some(chosen) {
            tracing::info!(server = %chosen, health = ?best, "agent: sending requests to this api server");
            state.current = Some(chosen);
        }
        Some(chosen)
    }

    /// A fresh receiver of a replica's connection generation (None for a replica not known).
    fn generation(&self, addr: SocketAddr) -> Option<watch::Receiver<u64>> {
        let state = self.replicas.lock().expect("balancer lock poisoned");
        state.replicas.iter().find(|r| r.addr == addr).map(|r| r.generation.subscribe())
    }

    /// Records that a request to `addr` got an answer: the replica is alive, however slow its checks are.
    fn answered(&self, addr: SocketAddr, now: Instant) {
        let mut state = self.replicas.lock().expect("balancer lock poisoned");
        if let Some(replica) = state.replicas.iter_mut().find(|r| r.addr == addr) {
            replica.last_answer = replica.last_answer.max(now);
            replica.served = true;
        }
    }

    /// Records a check's outcome; closes the replica's connections when it turns down, or has answered unready
    /// for `AGENT_UNREADY_GRACE_MS` while another replica is ready.
    fn record(&self, addr: SocketAddr, outcome: Outcome, now: Instant) {
        let mut state = self.replicas.lock().expect("balancer lock poisoned");
        let any_ready_other = state.replicas.iter().any(|r| r.addr != addr && r.health == Health::Ready);
        let Some(replica) = state.replicas.iter_mut().find(|r| r.addr == addr) else { return };
        let before = replica.health;
        let health = match outcome {
            Outcome::Answered(health) => {
                replica.last_answer = replica.last_answer.max(now);
                health
            }
            Outcome::Failed => Health::Down,
            Outcome::Silent if silent_for(replica.last_answer, now) >= limits::AGENT_SILENCE_DOWN_MS => Health::Down,
            Outcome::Silent => before,
        };
        replica.health = health;
        replica.unready_since = match health {
            Health::Ready => None,
            _ => replica.unready_since.or(Some(now)),
        };
        let stale_unready = health == Health::Answering
            && any_ready_other
            && replica
                .unready_since
                .is_some_and(|s| now.duration_since(s).as_millis() as u64 >= limits::AGENT_UNREADY_GRACE_MS);
        if (health == Health::Down && before != Health::Down) || stale_unready {
            tracing::warn!(server = %addr, ?before, ?outcome, "agent: closing every connection to this api server");
            replica.generation.send_modify(|g| *g += 1);
            if stale_unready {
                // Counted from now again, so its connections are not closed on every check.
                replica.unready_since = Some(now);
            }
            if state.current == Some(addr) {
                state.current = None;
            }
        } else if before != health {
            tracing::info!(server = %addr, ?before, ?health, "agent: api server health changed");
        }
    }

    /// Replaces the learned replicas by `learned` (given ones stay); forgotten replicas' connections close.
    fn learn(&self, learned: &[SocketAddr]) -> bool {
        let mut state = self.replicas.lock().expect("balancer lock poisoned");
        let before: Vec<SocketAddr> = state.replicas.iter().map(|r| r.addr).collect();
        state.replicas.retain(|r| r.given || learned.contains(&r.addr));
        for addr in learned {
            if state.replicas.len() < limits::AGENT_SERVERS_MAX && !state.replicas.iter().any(|r| r.addr == *addr) {
                state.replicas.push(Replica::new(*addr, false));
            }
        }
        let after: Vec<SocketAddr> = state.replicas.iter().map(|r| r.addr).collect();
        if state.current.is_some_and(|c| !after.contains(&c)) {
            state.current = None;
        }
        before != after
    }
}

impl Replica {
    fn new(addr: SocketAddr, given: bool) -> Replica {
        Replica {
            addr,
            given,
            health: Health::Unknown,
            unready_since: None,
            last_answer: Instant::now(),
            served: false,
            generation: watch::channel(0).0,
        }
    }
}

/// How long nothing has answered from a replica, in milliseconds.
fn silent_for(last_answer: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(last_answer).as_millis() as u64
}

/// A handle on the balancer, for tests and status: which replica requests go to, and each one's health.
#[derive(Clone)]
pub struct Balancer {
    shared: Arc<Shared>,
}

impl Balancer {
    pub fn current(&self) -> Option<SocketAddr> {
        self.shared.replicas.lock().expect("balancer lock poisoned").current
    }

    pub fn replicas(&self) -> Vec<(SocketAddr, Health)> {
        let state = self.shared.replicas.lock().expect("balancer lock poisoned");
        state.replicas.iter().map(|r| (r.addr, r.health)).collect()
    }
}

/// The agent's API client over the balancer (over TLS with `tls`), and the balancer's handle. Spawns the
/// health checker; the learning of replicas from the cluster starts with `learn_servers`.
pub fn client(
    servers: &[SocketAddr],
    data_dir: Option<PathBuf>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (kube::Client, Balancer) {
    let learned = data_dir.as_ref().map(|d| load_learned(&servers_file(d))).unwrap_or_default();
    let shared = Arc::new(Shared::new(servers, &learned, data_dir, tls));
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(limits::AGENT_IDLE_CONNECTION_MS))
        .build(Connector { shared: shared.clone() });
    tokio::spawn(check_health(shared.clone()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limits::AGENT_REQUESTS_IN_FLIGHT_MAX));
    let service = BalancedService { shared: shared.clone(), http, in_flight };
    (kube::Client::new(service, "default"), Balancer { shared })
}

/// Learns the replicas from the `kubernetes` Endpoints every `AGENT_SERVERS_REFRESH_MS`, keeping them in the
/// data dir. Runs until dropped.
pub async fn learn_servers(client: kube::Client, balancer: Balancer) {
    let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
    loop {
        match api.get_opt("kubernetes").await {
            Ok(Some(endpoints)) => {
                let learned = endpoint_addrs(&endpoints);
                if !learned.is_empty() && balancer.shared.learn(&learned) {
                    tracing::info!(servers = ?balancer.shared.addrs(), "agent: api servers learned from the cluster");
                    if let Some(dir) = &balancer.shared.data_dir {
                        save_learned(&servers_file(dir), &learned);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "agent: reading the kubernetes endpoints failed"),
        }
        tokio::time::sleep(Duration::from_millis(limits::AGENT_SERVERS_REFRESH_MS)).await;
    }
}

/// The API addresses an Endpoints object lists: every address with every port of its subset.
pub fn endpoint_addrs(endpoints: &Endpoints) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        for address in subset.addresses.iter().flatten() {
            let Ok(ip) = address.ip.parse::<std::net::IpAddr>() else { continue };
            for port in subset.ports.iter().flatten() {
                if let Ok(port) = u16::try_from(port.port) {
                    addrs.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs.truncate(limits::AGENT_SERVERS_MAX);
    addrs
}

fn servers_file(dir: &std::path::Path) -> PathBuf {
    dir.join("servers")
}

fn load_learned(path: &std::path::Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).take(limits::AGENT_SERVERS_MAX).collect()
}

fn save_learned(path: &std::path::Path, addrs: &[SocketAddr]) {
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!(error = %e, path = %path.display(), "agent: keeping the learned api servers failed");
    }
}

/// Checks every replica every `AGENT_HEALTH_INTERVAL_MS`, each check on its own connection: a check on a
/// pooled connection to a replica that stopped would wait for the timeout rather than fail at once.
async fn check_health(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(limits::AGENT_HEALTH_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Only the strong count of the service and handles keeps the checker alive.
        if Arc::strong_count(&shared) == 1 {
            return;
        }
        let tls = shared.tls.clone();
        let checks = shared.addrs().into_iter().map(|addr| {
            let tls = tls.clone();
            async move { (addr, check(addr, tls).await) }
        });
        for (addr, outcome) in futures::future::join_all(checks).await {
            shared.record(addr, outcome, Instant::now());
        }
    }
}

/// One `/readyz?verbose` check of a replica, as the balancer counts it: a replica that fails it or does not
/// answer within `AGENT_HEALTH_TIMEOUT_MS` is down.
pub async fn probe(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> Health {
    match check(addr, tls).await {
        Outcome::Answered(health) => health,
        Outcome::Failed | Outcome::Silent => Health::Down,
    }
}

/// One `/readyz?verbose` check of a replica, on its own connection. A leader that only misses a follower
/// (`cannot replicate to member ...`) serves as well as ever and counts as ready: otherwise the death of one
/// follower would move every agent off the leader too.
async fn check(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> Outcome {
    let timeout = Duration::from_millis(limits::AGENT_HEALTH_TIMEOUT_MS);
    let check = async {
        let stream = connect(addr, tls).await.ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        let connection = tokio::spawn(connection);
        let request = Request::get("/readyz?verbose")
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .ok()?;
        let answer = async {
            let response = sender.send_request(request).await.ok()?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limits::AGENT_HEALTH_BODY_BYTES_MAX).collect().await.ok()?;
            Some((status, String::from_utf8_lossy(&body.to_bytes()).into_owned()))
        }
        .await;
        connection.abort();
        answer
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Some((status, _))) if status.is_success() => Outcome::Answered(Health::Ready),
        Ok(Some((_, body))) if only_missing_followers(&body) => Outcome::Answered(Health::Ready),
        Ok(Some(_)) => Outcome::Answered(Health::Answering),
        Ok(None) => Outcome::Failed,
        Err(_) => Outcome::Silent,
    }
}

/// Whether a verbose `/readyz` answer fails only because the replica, leading, cannot replicate to some
/// follower.
fn only_missing_followers(body: &str) -> bool {
    let failed: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("[-]")).collect();
    !failed.is_empty()
        && failed.iter().all(|f| {
            f.strip_prefix("store failed: ")
                .is_some_and(|problems| problems.split("; ").all(|p| p.starts_with("cannot replicate to member")))
        })
}

/// The tower service under the agent's `kube::Client`: buffers the request's body (bounded), picks a replica,
/// sends it there, and when no connection can be made tries the next (a refused connection marks the replica
/// down; a slow one only sends this request elsewhere).
#[derive(Clone)]
struct BalancedService {
    shared: Arc<Shared>,
    http: HttpClient,
    /// `AGENT_REQUESTS_IN_FLIGHT_MAX` permits: a request holds one until its answer's head arrives, so the
    /// agent never needs more connections than that (plus its open watches).
    in_flight: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("no api server replica is reachable (known: {0:?})")]
    NoReplica(Vec<SocketAddr>),
    #[error("request body: {0}")]
    Body(String),
    #[error("request to {addr}: {source}")]
    Request { addr: SocketAddr, source: hyper_util::client::legacy::Error },
}

impl tower::Service<Request<kube::client::Body>> for BalancedService {
    type Response = Response<Incoming>;
    type Error = BalancerError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BalancerError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let shared = self.shared.clone();
        let http = self.http.clone();
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            let _permit = in_flight.acquire_owned().await.expect("the semaphore is never closed");
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, limits::AGENT_REQUEST_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| BalancerError::Body(e.to_string()))?
                .to_bytes();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            let mut tried = Vec::new();
            loop {
                let Some(addr) = shared.pick(&tried) else {
                    return Err(BalancerError::NoReplica(shared.addrs()));
                };
                let scheme = if shared.tls.is_some() { "https" } else { "http" };
                let uri: Uri = format!("{scheme}://{addr}{path}")
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| BalancerError::Body(e.to_string()))?;
                let mut request = Request::new(Full::new(body.clone()));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = uri;
                *request.headers_mut() = parts.headers.clone();
                *request.version_mut() = http::Version::HTTP_11;
                match http.request(request).await {
                    Ok(response) => {
                        shared.answered(addr, Instant::now());
                        return Ok(response);
                    }
                    Err(e) if e.is_connect() => {
                        tracing::warn!(server = %addr, error = %e, "agent: no connection to this api server");
                        if !timed_out(&e) {
                            shared.record(addr, Outcome::Failed, Instant::now());
                        }
                        tried.push(addr);
                    }
                    Err(source) => return Err(BalancerError::Request { addr, source }),
                }
            }
        })
    }
}

/// Whether a request's connection failed only by not being made in time (the replica may just be slow).
fn timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::TimedOut) {
            return true;
        }
        source = e.source();
    }
    false
}

/// Opens connections to replicas, each tied to its replica's generation: bumping it (or forgetting the
/// replica) makes every read and write on the connection fail, which closes it.
#[derive(Clone)]
struct Connector {
    shared: Arc<Shared>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a replica address: {uri}")))?;
            let mut generation = shared
                .generation(addr)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr} is no longer a replica")))?;
            let timeout = Duration::from_millis(limits::AGENT_CONNECT_TIMEOUT_MS);
            let stream = tokio::time::timeout(timeout, connect(addr, shared.tls.clone()))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))??;
            let closed = Box::pin(async move {
                // Resolves when the generation moves on or the replica is forgotten (its sender dropped).
                let _ = generation.changed().await;
            });
            Ok(TokioIo::new(Conn { stream, closed, dead: false }))
        })
    }
}

/// A byte stream to a replica: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Connects to the replica at `addr`, over TLS with `tls` (its certificate must be valid for `addr`'s IP).
async fn connect(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Ok(Box::new(tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?))
        }
        None => Ok(Box::new(tcp)),
    }
}

/// A connection to a replica that fails every read and write once its replica's generation has moved on.
pub struct Conn {
    stream: Box<dyn Stream>,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl Conn {
    /// Whether the connection has been closed by the balancer; registers the waker otherwise.
    fn closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.closed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the api server replica turned unhealthy")
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed(cx) {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn picks_sticky_ready_then_answering_never_down() {
        let shared = Shared::new(&[addr(1), addr(2), addr(3)], &[], None, None);
        let now = Instant::now();
        // Nothing checked yet: the first given.
        assert_eq!(shared.pick(&[]), Some(addr(1)));
        shared.record(addr(1), Outcome::Answered(Health::Ready), now);
        shared.record(addr(2), Outcome::Answered(Health::Ready), now);
        shared.record(addr(3), Outcome::Answered(Health::Answering), now);
        assert_eq!(shared.pick(&[]), Some(addr(1)));
        // The current one goes down: its connections close and the next ready one takes over, and stays.
        let generation = shared.generation(addr(1)).unwrap();
        shared.record(addr(1), Outcome::Failed, now);
        assert!(generation.has_changed().unwrap(), "connections to a down replica are closed");
        assert_eq!(shared.pick(&[]), Some(addr(2)));
        shared.record(addr(1), Outcome::Answered(Health::Ready), now);
        assert_eq!(shared.pick(&[]), Some(addr(2)), "sticky while ready");
        // A replica refused at connect is avoided for that request.
        assert_eq!(shared.pick(&[addr(2)]), Some(addr(1)));
        shared.record(addr(1), Outcome::Failed, now);
        shared.record(addr(2), Outcome::Failed, now);
        assert_eq!(shared.pick(&[]), Some(addr(3)), "an answering replica when none is ready");
        shared.record(addr(3), Outcome::Failed, now);
        assert_eq!(shared.pick(&[]), None);
    }

    #[tokio::test]
    async fn requests_in_flight_are_capped_so_that_connections_are() {
        // A replica that accepts connections and never answers: every request holds its connection.
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, _balancer) = super::client(&[mute.local_addr().unwrap()], None, None);
        let requests: Vec<_> = (0..2 * limits::AGENT_REQUESTS_IN_FLIGHT_MAX)
            .map(|_| {
                let client = client.clone();
                let request = Request::get("/version").body(kube::client::Body::empty()).unwrap();
                tokio::spawn(async move { client.send(request).await })
            })
            .collect();
        let (mut held, window) = (Vec::new(), Duration::from_millis(500));
        let until = tokio::time::Instant::now() + window;
        while let Ok(Ok((stream, _))) = tokio::time::timeout_at(until, mute.accept()).await {
            held.push(stream);
        }
        // The requests' connections, and the health checks' (one every AGENT_HEALTH_INTERVAL_MS).
        let checks = 2 + window.as_millis() as usize / limits::AGENT_HEALTH_INTERVAL_MS as usize;
        assert!(held.len() >= limits::AGENT_REQUESTS_IN_FLIGHT_MAX, "{} connections", held.len());
        assert!(held.len() <= limits::AGENT_REQUESTS_IN_FLIGHT_MAX + checks, "{} connections", held.len());
        requests.iter().for_each(|r| r.abort());
    }

    #[test]
    fn a_silent_check_turns_a_replica_down_only_after_a_silence() {
        let shared = Shared::new(&[addr(1), addr(2)], &[], None, None);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        shared.record(addr(1), Outcome::Answered(Health::Ready), at(0));
        shared.record(addr(2), Outcome::Answered(Health::Ready), at(0));
        assert_eq!(shared.pick(&[]), Some(addr(1)));
        let generation = shared.generation(addr(1)).unwrap();
        // A check too slow under load: the replica stays as it was, its connections open.
        shared.record(addr(1), Outcome::Silent, at(limits::AGENT_HEALTH_TIMEOUT_MS));
        assert_eq!(shared.replicas.lock().unwrap().replicas[0].health, Health::Ready);
        assert!(!generation.has_changed().unwrap());
        // Requests answered meanwhile: it is alive, however slow its checks.
        shared.answered(addr(1), at(limits::AGENT_SILENCE_DOWN_MS));
        shared.record(addr(1), Outcome::Silent, at(limits::AGENT_SILENCE_DOWN_MS + 1));
        assert!(!generation.has_changed().unwrap());
        assert_eq!(shared.pick(&[]), Some(addr(1)), "still sticky");
        // Nothing answered for the whole silence: down, its connections closed.
        shared.record(addr(1), Outcome::Silent, at(2 * limits::AGENT_SILENCE_DOWN_MS));
        assert!(generation.has_changed().unwrap());
        assert_eq!(shared.pick(&[]), Some(addr(2)));
        // A check that fails outright needs no silence.
        shared.record(addr(2), Outcome::Failed, at(2 * limits::AGENT_SILENCE_DOWN_MS));
        assert_eq!(shared.pick(&[]), None);
    }

    #[tokio::test]
    async fn a_check_fails_where_nothing_listens_and_is_silent_where_nothing_answers() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nothing = closed.local_addr().unwrap();
        drop(closed);
        assert_eq!(check(nothing, None).await, Outcome::Failed);
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = mute.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (_stream, _) = mute.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        assert_eq!(check(silent, None).await, Outcome::Silent);
        held.abort();
    }

    #[test]
    fn a_replica_serving_requests_stays_current_until_a_check_of_it_answers() {
        let shared = Shared::new(&[addr(1), addr(2)], &[], None, None);
        let now = Instant::now();
        assert_eq!(shared.pick(&[]), Some(addr(1)));
        shared.answered(addr(1), now);
        // Its first check is too slow under load; the other's answers.
        shared.record(addr(1), Outcome::Silent, now);
        shared.record(addr(2), Outcome::Answered(Health::Ready), now);
        assert_eq!(shared.pick(&[]), Some(addr(1)), "it serves: it stays");
        // Once a check of it answers, the usual order holds.
        shared.record(addr(1), Outcome::Answered(Health::Answering), now);
        assert_eq!(shared.pick(&[]), Some(addr(2)));
        // A replica that never served is left for a ready one at once.
        let fresh = Shared::new(&[addr(1), addr(2)], &[], None, None);
        assert_eq!(fresh.pick(&[]), Some(addr(1)));
        fresh.record(addr(2), Outcome::Answered(Health::Ready), now);
        assert_eq!(fresh.pick(&[]), Some(addr(2)));
    }

    #[test]
    fn unready_replica_keeps_connections_for_a_grace() {
        let shared = Shared::new(&[addr(1), addr(2)], &[], None, None);
        let now = Instant::now();
        shared.record(addr(2), Outcome::Answered(Health::Ready), now);
        shared.record(addr(1), Outcome::Answered(Health::Ready), now);
        let generation = shared.generation(addr(1)).unwrap();
        shared.record(addr(1), Outcome::Answered(Health::Answering), now);
        assert!(!generation.has_changed().unwrap(), "an election makes replicas unready for a moment");
        let later = now + Duration::from_millis(limits::AGENT_UNREADY_GRACE_MS);
        shared.record(addr(1), Outcome::Answered(Health::Answering), later);
        assert!(generation.has_changed().unwrap());
    }

    #[test]
    fn learning_keeps_given_replicas_and_forgets_old_learned_ones() {
        let shared = Shared::new(&[addr(1)], &[addr(5)], None, None);
        let generation = shared.generation(addr(5)).unwrap();
        assert!(shared.learn(&[addr(1), addr(2), addr(3)]));
        assert_eq!(shared.addrs(), vec![addr(1), addr(2), addr(3)]);
        assert!(generation.has_changed().is_err(), "a forgotten replica's connections close");
        assert!(!shared.learn(&[addr(1), addr(2), addr(3)]));
        assert!(shared.learn(&[addr(2)]));
        assert_eq!(shared.addrs(), vec![addr(1), addr(2)]);
    }

    #[test]
    fn a_leader_missing_a_follower_is_ready() {
        let missing = "[+]ping ok\n[-]store failed: cannot replicate to member n2 (2): it has matched the log up to 4 of 9 for 6 s\n[+]bootstrap-default-namespace ok\nreadyz check failed\n";
        assert!(only_missing_followers(missing));
        let leaderless = "[+]ping ok\n[-]store failed: no raft leader is known\n[+]bootstrap-default-namespace ok\n";
        assert!(!only_missing_followers(leaderless));
        let both = "[-]store failed: cannot replicate to member n2 (2): x\n[-]bootstrap-default-namespace failed: no\n";
        assert!(!only_missing_followers(both));
        assert!(!only_missing_followers("ok"));
    }

    #[test]
    fn endpoint_addresses_cross_their_subset_ports() {
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes"},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443}]},
                {"addresses": [{"ip": "127.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 7443}]},
            ]
        }))
        .unwrap();
        let got = endpoint_addrs(&endpoints);
        let want: Vec<SocketAddr> =
            ["10.0.0.2:7443", "127.0.0.1:6443", "127.0.0.1:7443"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(got, want);
    }
}
