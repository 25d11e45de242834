//! The replica's listeners: how many connections each port holds, how long a new connection may take to
//! say what it wants, and the HTTP/1.1 server of the Kubernetes API.
//!
//! Owns the open-file budget (`raise_open_file_limit`, `ConnectionCaps::fit`), the accept loops of the three
//! ports (peer, etcd client, Kubernetes API) and the per-connection limits.
//!
//! Invariants:
//! - Client sockets never take the descriptors the store needs: the connection caps plus RocksDB's open
//!   files plus a reserve fit under the open-file limit, or the replica does not start. Every accepted
//!   connection holds a permit of its port's cap for as long as its socket is open.
//! - A connection over its port's cap is closed as soon as it is accepted (the Kubernetes API over plain HTTP
//!   first writes a 503 with `Retry-After`); connections already admitted are never closed to make room.
//! - A new connection must send a complete request header (Kubernetes API) or the HTTP/2 connection preface
//!   (gRPC ports) within its deadline, or it is closed; over TLS, the handshake has a deadline of its own
//!   before it. The API's header deadline also bounds how long an
//!   idle keep-alive connection waits for its next request. Nothing cuts a response in flight: Kubernetes
//!   watches and etcd watch streams live as long as their clients want; gRPC connections are checked by
//!   HTTP/2 keepalive pings instead of an idle timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use futures::StreamExt;
use hyper::body::Incoming;

use crate::limits;
use crate::security::authn::{Origin, User};
use crate::security::mutual_tls::MutualTls;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot read the open-file limit (RLIMIT_NOFILE): {0}")]
    OpenFileLimit(io::Error),
    #[error(
        "the open-file limit is {limit}, but a replica needs at least {needed} descriptors ({store} for the \
         store's files, {reserve} in reserve, {peer} peer, {client} etcd client and {api} kubernetes api \
         connections); raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit)"
    )]
    TooFewOpenFiles { limit: u64, needed: usize, store: usize, reserve: usize, peer: usize, client: usize, api: usize },
}

/// Raises this process's soft open-file limit to its hard limit and returns the soft limit in force.
/// A soft limit that cannot be raised (an unlimited hard limit above the kernel's ceiling) stays as it was.
pub fn raise_open_file_limit() -> Result<u64, ListenError> {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(ListenError::OpenFileLimit(io::Error::last_os_error()));
    }
    if current.rlim_cur < current.rlim_max {
        let raised = libc::rlimit { rlim_cur: current.rlim_max, rlim_max: current.rlim_max };
        // SAFETY: setrlimit reads only the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
        tracing::warn!(
            soft = current.rlim_cur,
            hard = current.rlim_max,
            error = %io::Error::last_os_error(),
            "cannot raise the open-file limit"
        );
    }
    Ok(current.rlim_cur)
}

/// How many connections each port holds at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub peer: usize,
    pub client: usize,
    pub api: usize,
}

impl Default for ConnectionCaps {
    fn default() -> ConnectionCaps {
        ConnectionCaps {
            peer: limits::PEER_CONNECTIONS_MAX,
            client: limits::CLIENT_CONNECTIONS_MAX,
            api: limits::API_CONNECTIONS_MAX,
        }
    }
}

/// Descriptors that are not client sockets: RocksDB's table files, and the reserve (RocksDB's log, manifest
/// and info files, the snapshot, log files, outgoing peer connections, the runtime's own).
const STORE_AND_RESERVE: usize = limits::ROCKSDB_OPEN_FILES_MAX + limits::OPEN_FILES_RESERVE;

impl ConnectionCaps {
    /// The caps that fit under `open_files` descriptors: the limits' maxima when they fit; otherwise the etcd
    /// client and Kubernetes API caps shrink in proportion to their maxima, down to their minima; below
    /// that the replica cannot start.
    pub fn fit(open_files: u64) -> Result<ConnectionCaps, ListenError> {
        let full = ConnectionCaps::default();
        let limit = usize::try_from(open_files).unwrap_or(usize::MAX);
        let room = limit.saturating_sub(STORE_AND_RESERVE + full.peer);
        let wanted = full.client + full.api;
        if room >= wanted {
            return Ok(full);
        }
        let api = room * full.api / wanted;
        let client = room * full.client / wanted;
        if api < limits::API_CONNECTIONS_MIN || client < limits::CLIENT_CONNECTIONS_MIN {
            return Err(ListenError::TooFewOpenFiles {
                limit: open_files,
                needed: STORE_AND_RESERVE + full.peer + limits::CLIENT_CONNECTIONS_MIN + limits::API_CONNECTIONS_MIN,
                store: limits::ROCKSDB_OPEN_FILES_MAX,
                reserve: limits::OPEN_FILES_RESERVE,
                peer: full.peer,
                client: limits::CLIENT_CONNECTIONS_MIN,
                api: limits::API_CONNECTIONS_MIN,
            });
        }
        Ok(ConnectionCaps { api, client, ..full })
    }

    /// Descriptors a replica with these caps may hold at most.
    pub fn open_files(&self) -> usize {
        STORE_AND_RESERVE + self.peer + self.client + self.api
    }
}

/// A port's cap: permits held by its connections.
#[derive(Clone)]
struct Gate {
    port: &'static str,
    cap: usize,
    permits: Arc<Semaphore>,
    refused: Arc<Refusals>,
}

/// Connections refused over a cap, logged at most once per `CONNECTION_REFUSAL_LOG_INTERVAL_MS`.
#[derive(Default)]
struct Refusals {
    // std Mutex: nothing awaits while it is held.
    state: std::sync::Mutex<(u64, Option<Instant>)>,
}

impl Gate {
    fn new(port: &'static str, cap: usize) -> Gate {
        Gate { port, cap, permits: Arc::new(Semaphore::new(cap)), refused: Arc::default() }
    }

    /// A permit for a new connection, or None when the port is at its cap.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            let mut state = self.refused.state.lock().expect("refusals lock");
            state.0 += 1;
            let now = Instant::now();
            let due = state.1.is_none_or(|last| {
                now.duration_since(last) >= Duration::from_millis(limits::CONNECTION_REFUSAL_LOG_INTERVAL_MS)
            });
            if due {
                tracing::warn!(port = self.port, cap = self.cap, refused = state.0, "connection limit reached");
                *state = (0, Some(now));
            }
        }
        permit
    }
}

/// Accepts the next connection, with Nagle's algorithm off (small request/response exchanges must not wait
/// for delayed acknowledgements). A failed accept is logged; when it failed for want of descriptors or
/// memory, the loop pauses instead of spinning.
pub async fn accept(listener: &TcpListener, port: &'static str) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                let starved =
                    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
                tracing::warn!(port, error = %e, "accept failed");
                if starved {
                    tokio::time::sleep(Duration::from_millis(limits::ACCEPT_RETRY_MS)).await;
                }
            }
        }
    }
}

/// An admitted connection: the socket, its permit of the port's cap, and until the first bytes arrived,
/// their deadline.
pub struct Admitted {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// How many bytes of the preface are still missing, and by when they must arrive.
    preface: Option<(usize, Pin<Box<Sleep>>)>,
}

/// The HTTP/2 client connection preface's length (RFC 9113, section 3.4).
const HTTP2_PREFACE_BYTES: usize = 24;

impl Admitted {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, preface_deadline: Option<Duration>) -> Admitted {
        let preface = preface_deadline.map(|d| (HTTP2_PREFACE_BYTES, Box::pin(tokio::time::sleep(d))));
        Admitted { tcp, _permit: permit, preface }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some((missing, _)) = &mut this.preface {
                    let got = buf.filled().len() - before;
                    if got == 0 || got >= *missing {
                        this.preface = None;
                    } else {
                        *missing -= got;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let late = this.preface.as_mut().is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready());
                match late {
                    true => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no connection preface in time"))),
                    false => Poll::Pending,
                }
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

/// A connection a gRPC port serves: as accepted, or after its TLS handshake.
pub enum GrpcConnection {
    Plain(Admitted),
    Tls(Box<tokio_rustls::server::TlsStream<Admitted>>),
}

impl AsyncRead for GrpcConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConnection::Plain(io) => Pin::new(io).poll_read(cx, buf),
            GrpcConnection::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcConnection::Plain(io) => Pin::new(io).poll_write(cx, buf),
            GrpcConnection::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcConnection::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            GrpcConnection::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            GrpcConnection::Plain(io) => io.is_write_vectored(),
            GrpcConnection::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConnection::Plain(io) => Pin::new(io).poll_flush(cx),
            GrpcConnection::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConnection::Plain(io) => Pin::new(io).poll_shutdown(cx),
            GrpcConnection::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for GrpcConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            GrpcConnection::Plain(io) => io.connect_info(),
            GrpcConnection::Tls(io) => io.get_ref().0.connect_info(),
        }
    }
}

type Handshake = Pin<Box<dyn Future<Output = Option<GrpcConnection>> + Send>>;

/// The connections a gRPC server on `listener` serves: at most `cap` at once (others are closed as they
/// arrive), each closed unless its HTTP/2 preface arrives within `preface_deadline` and, with `tls`, unless
/// its handshake succeeds within the handshake deadline. Handshakes proceed side by side while the server
/// polls for the next connection, so that a slow one does not hold up the others.
pub fn grpc_incoming(
    listener: TcpListener,
    port: &'static str,
    cap: usize,
    preface_deadline: Duration,
    tls: Option<MutualTls>,
) -> impl futures::Stream<Item = io::Result<GrpcConnection>> + Send + 'static {
    let handshakes = futures::stream::FuturesUnordered::<Handshake>::new();
    let state = (listener, Gate::new(port, cap), tls, handshakes);
    futures::stream::unfold(state, move |(listener, gate, tls, mut handshakes)| async move {
        loop {
            tokio::select! {
                tcp = accept(&listener, gate.port) => {
                    let Some(permit) = gate.admit() else {
                        close_at_once(tcp, b"");
                        continue;
                    };
                    let admitted = Admitted::new(tcp, permit, Some(preface_deadline));
                    let Some(tls) = &tls else {
                        return Some((Ok(GrpcConnection::Plain(admitted)), (listener, gate, tls, handshakes)));
                    };
                    let tls = tls.clone();
                    handshakes.push(Box::pin(async move {
                        match tls.accept(admitted).await {
                            Ok(stream) => Some(GrpcConnection::Tls(Box::new(stream))),
                            Err(e) => {
                                tracing::debug!(port, error = %e, "tls handshake failed");
                                None
                            }
                        }
                    }));
                }
                Some(done) = handshakes.next(), if !handshakes.is_empty() => {
                    if let Some(connection) = done {
                        return Some((Ok(connection), (listener, gate, tls, handshakes)));
                    }
                }
            }
        }
    })
}

/// What a client over the Kubernetes API's connection cap reads before the connection closes.
static API_OVER_CAP: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too many connections to this replica, retry later","reason":"ServiceUnavailable","code":503}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Closes a connection refused over a cap, after reading what it already sent (so that the close is a FIN,
/// not a reset that could discard `answer` at the client) and writing `answer` if the socket takes it
/// without waiting.
fn close_at_once(tcp: TcpStream, answer: &[u8]) {
    let mut sink = [0u8; 4096];
    let _ = tcp.try_read(&mut sink);
    if !answer.is_empty() {
        let _ = tcp.try_write(answer);
    }
}

/// Serves the Kubernetes API (HTTP/1.1, over TLS with `tls`) on `listener` until `shutdown` resolves; then
/// stops accepting, lets each connection finish the request it is serving (idle ones close at once) and
/// returns when all are closed. Dropping the future closes every connection. Every request carries its
/// connection's `Origin` (the client certificate the handshake verified, if any), for `authn`.
pub async fn serve_api(
    listener: TcpListener,
    router: axum::Router,
    cap: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let gate = Gate::new("kubernetes api", cap);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits::API_HEADER_READ_TIMEOUT_MS));
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            tcp = accept(&listener, gate.port) => match gate.admit() {
                Some(permit) => {
                    let io = Admitted::new(tcp, permit, None);
                    let (http, router, drain) = (http.clone(), router.clone(), drain_rx.clone());
                    match &tls {
                        Some(acceptor) => connections.spawn(serve_tls(acceptor.clone(), http, io, router, drain)),
                        None => connections.spawn(serve_http(http, io, router, Origin::Plaintext, drain)),
                    };
                }
                // A TLS client could not read a plain answer: it is only closed.
                None => close_at_once(tcp, if tls.is_some() { &[] } else { &API_OVER_CAP }),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Finishes the TLS handshake (within `API_TLS_HANDSHAKE_TIMEOUT_MS`, so that a silent client does not hold
/// its slot) and serves the connection as the user its client certificate names, if it showed one.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    http: hyper::server::conn::http1::Builder,
    io: Admitted,
    router: axum::Router,
    drain: tokio::sync::watch::Receiver<bool>,
) {
    let handshake = Duration::from_millis(limits::API_TLS_HANDSHAKE_TIMEOUT_MS);
    let stream = match tokio::time::timeout(handshake, acceptor.accept(io)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::debug!(error = %e, "kubernetes api: tls handshake failed"),
        Err(_) => return tracing::debug!("kubernetes api: tls handshake timed out"),
    };
    // The verifier has checked the chain against the cluster authority: the leaf names the user.
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| User::of_certificate(leaf).ok_or("a client certificate without a common name"));
    let certificate = match certificate.transpose() {
        Ok(user) => user,
        Err(e) => return tracing::debug!(error = e, "kubernetes api: connection refused"),
    };
    serve_http(http, stream, router, Origin::Tls { certificate }, drain).await
}

async fn serve_http<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    http: hyper::server::conn::http1::Builder,
    io: T,
    router: axum::Router,
    origin: Origin,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    let with_origin = tower::ServiceBuilder::new().map_request(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(origin.clone());
        request
    });
    let service = hyper_util::service::TowerToHyperService::new(with_origin.service(router));
    let connection = http.serve_connection(hyper_util::rt::TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = drain.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "kubernetes api connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_the_maxima_when_they_fit() {
        let caps = ConnectionCaps::fit(1 << 20).unwrap();
        assert_eq!(caps, ConnectionCaps::default());
        let exact = ConnectionCaps::default().open_files() as u64;
        assert_eq!(ConnectionCaps::fit(exact).unwrap(), ConnectionCaps::default());
    }

    #[test]
    fn caps_shrink_under_a_low_limit_and_still_fit() {
        for limit in [1024u64, 4096, 10_000, ConnectionCaps::default().open_files() as u64 - 1] {
            let caps = ConnectionCaps::fit(limit).unwrap();
            assert!(caps.open_files() as u64 <= limit, "{caps:?} over {limit}");
            assert!(caps.api >= limits::API_CONNECTIONS_MIN && caps.client >= limits::CLIENT_CONNECTIONS_MIN);
            assert!(caps.api < limits::API_CONNECTIONS_MAX);
            assert_eq!(caps.peer, limits::PEER_CONNECTIONS_MAX);
        }
    }

    #[test]
    fn too_few_open_files_is_refused() {
        let err = ConnectionCaps::fit(512).unwrap_err();
        assert!(err.to_string().contains("open-file limit is 512"), "{err}");
    }
}
