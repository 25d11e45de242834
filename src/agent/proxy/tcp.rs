//! TCP frontends: each accepted connection is joined to an endpoint of the frontend's backend, trying them in
//! the balancer's order (an endpoint that refuses or does not answer within `PROXY_CONNECT_TIMEOUT_MS` is
//! skipped; the last one tried is given `PROXY_CONNECT_LAST_TIMEOUT_MS`), then bytes are copied both ways until
//! either side closes, or until the endpoint has left the table.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use super::table::{Endpoint, Frontend};

const BUFFER: usize = limits::PROXY_COPY_BUFFER_BYTES;
use super::{Balancer, Shared};
use crate::limits;
use crate::telemetry::{self, Held};

/// Listens on `address` for `frontend`; the returned task accepts until aborted.
pub(super) async fn listen(
    address: SocketAddr,
    frontend: Frontend,
    shared: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(serve(TcpListener::bind(address).await?, frontend, shared))
}

/// Forwards what `listener` accepts for `frontend`; the returned task accepts until aborted.
pub(super) fn serve(listener: TcpListener, frontend: Frontend, shared: Shared) -> tokio::task::JoinHandle<()> {
    let address = listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string());
    let balancer = Arc::new(Mutex::new(Balancer::default()));
    tokio::spawn(async move {
        loop {
            let Ok((client, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
                tracing::warn!(%address, "proxy: too many connections; one refused");
                continue;
            };
            let (shared, balancer) = (shared.clone(), balancer.clone());
            let metrics = &telemetry::get().agent;
            metrics.proxy_connections.inc();
            let open = Held::new(&metrics.proxy_connections_open);
            tokio::spawn(async move {
                forward(client, peer, frontend, &shared, &balancer).await;
                drop(open);
                drop(permit);
            });
        }
    })
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    frontend: Frontend,
    shared: &Shared,
    balancer: &Mutex<Balancer>,
) {
    let Some(backend) = shared.backend(&frontend) else { return };
    let order = balancer.lock().unwrap_or_else(|p| p.into_inner()).order(&backend, peer.ip(), Instant::now());
    let Some((mut upstream, endpoint)) = connect_first(&order).await else {
        tracing::debug!(service = %backend.service, %peer, "proxy: no endpoint took the connection");
        return;
    };
    balancer.lock().unwrap_or_else(|p| p.into_inner()).connected(&backend, peer.ip(), &endpoint, Instant::now());
    let _counted = shared.connections.open(endpoint.pod_uid.as_deref());
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut table = shared.table.clone();
    let gone = async {
        loop {
            if !table.borrow_and_update().keeps(&endpoint.address) {
                return;
            }
            if table.changed().await.is_err() {
                // The proxy is stopping: the connection ends with it.
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER) => {}
        () = gone => tracing::debug!(endpoint = %endpoint.address, "proxy: endpoint gone; its connection closed"),
    }
}

/// The first of `order` that accepts a connection. The last one tried gets as long as a client's own connect
/// would (a server whose backlog is full drops the handshake, and TCP tries again a second later).
async fn connect_first(order: &[Endpoint]) -> Option<(TcpStream, Endpoint)> {
    let tried = order.len().min(limits::PROXY_CONNECT_ATTEMPTS_MAX);
    for (i, endpoint) in order.iter().take(tried).enumerate() {
        let timeout = Duration::from_millis(match i + 1 == tried {
            true => limits::PROXY_CONNECT_LAST_TIMEOUT_MS,
            false => limits::PROXY_CONNECT_TIMEOUT_MS,
        });
        match tokio::time::timeout(timeout, TcpStream::connect(endpoint.address)).await {
            Ok(Ok(stream)) => return Some((stream, endpoint.clone())),
            Ok(Err(e)) => tracing::debug!(endpoint = %endpoint.address, error = %e, "proxy: endpoint refused"),
            Err(_) => tracing::debug!(endpoint = %endpoint.address, "proxy: endpoint did not answer"),
        }
    }
    None
}
