//! UDP frontends: each client address gets a session, a socket of the proxy's own connected to one endpoint
//! (chosen as for TCP), through which its datagrams go and the endpoint's replies come back to the client
//! from the frontend's address. A session ends after `PROXY_UDP_IDLE_SECS` without a datagram either way, or
//! once its endpoint has left the table; at most `PROXY_UDP_SESSIONS_MAX` sessions per frontend.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::table::{Endpoint, Frontend};
use super::{Balancer, Shared};
use crate::limits;

struct Session {
    upstream: Arc<UdpSocket>,
    endpoint: Endpoint,
    last: Arc<Mutex<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `address` for `frontend`; the returned task relays until aborted.
pub(super) async fn listen(
    address: SocketAddr,
    frontend: Frontend,
    shared: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = Arc::new(UdpSocket::bind(address).await?);
    Ok(tokio::spawn(relay(socket, frontend, shared)))
}

async fn relay(socket: Arc<UdpSocket>, frontend: Frontend, shared: Shared) {
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut balancer = Balancer::default();
    let mut buffer = vec![0u8; limits::PROXY_UDP_DATAGRAM_BYTES_MAX];
    let idle = Duration::from_secs(limits::PROXY_UDP_IDLE_SECS);
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buffer).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let now = Instant::now();
        let table = shared.table.borrow().clone();
        sessions.retain(|_, s| {
            !s.task.is_finished() && table.keeps(&s.endpoint.address) && now.duration_since(*lock(&s.last)) < idle
        });
        if !sessions.contains_key(&client) {
            if sessions.len() >= limits::PROXY_UDP_SESSIONS_MAX {
                continue;
            }
            let Some(backend) = shared.backend(&frontend) else { continue };
            let order = balancer.order(&backend, client.ip(), now);
            let Some(endpoint) = order.into_iter().next() else { continue };
            let Ok(upstream) = connected(endpoint.address).await else { continue };
            balancer.connected(&backend, client.ip(), &endpoint, now);
            let upstream = Arc::new(upstream);
            let last = Arc::new(Mutex::new(now));
            let task = tokio::spawn(replies(
                upstream.clone(),
                socket.clone(),
                client,
                last.clone(),
                shared.connections.open(endpoint.pod_uid.as_deref()),
            ));
            sessions.insert(client, Session { upstream, endpoint, last, task });
        }
        if let Some(session) = sessions.get(&client) {
            *lock(&session.last) = now;
            let _ = session.upstream.send(&buffer[..len]).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A socket of the proxy's own, connected to `endpoint`.
async fn connected(endpoint: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: IpAddr = match endpoint {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).await?;
    socket.connect(endpoint).await?;
    Ok(socket)
}

/// Sends the endpoint's replies back to `client` until the session is idle for `PROXY_UDP_IDLE_SECS`.
async fn replies<T>(
    upstream: Arc<UdpSocket>,
    frontend: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<Mutex<Instant>>,
    _counted: T,
) {
    let mut buffer = vec![0u8; limits::PROXY_UDP_DATAGRAM_BYTES_MAX];
    let idle = Duration::from_secs(limits::PROXY_UDP_IDLE_SECS);
    loop {
        let since = lock(&last).elapsed();
        let Some(left) = idle.checked_sub(since) else { return };
        match tokio::time::timeout(left, upstream.recv(&mut buffer)).await {
            Ok(Ok(len)) => {
                *lock(&last) = Instant::now();
                let _ = frontend.send_to(&buffer[..len], client).await;
            }
            // A refused datagram (nothing listens on the endpoint) ends nothing: the next may be answered.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {}
        }
    }
}
