//! The service proxy of `raftsman agent`: kube-proxy's job done in userspace on tokio. It follows every Service
//! and EndpointSlice (`agent::services`, shared with the agent's DNS server and its pod sync), turns them into a
//! `table::Table` on each change, and keeps one listener per frontend: a TCP or UDP socket on each cluster IP
//! and port, and on every address of the host for each node port. A connection is forwarded to a backend
//! chosen round robin (or, with `sessionAffinity: ClientIP`, the one the client had, while it is still an
//! endpoint and within the timeout); an endpoint that refuses is skipped for the next.
//!
//! Why userspace: it needs nothing of the host but sockets, works the same for pods and for the host, and lets
//! the proxy count each pod's open connections (the `concurrent_connections` pod metric, `Connections`). The
//! cost is a copy through the agent of every byte, measured against a direct connection by `bench --suite proxy`
//! (BENCHMARKS.md).
//!
//! Invariants:
//! - Before the proxy starts, the whole service range is a `local` route on the host (`service_range`), so no
//!   packet to a service address leaves the machine, whether or not a listener is there yet.
//! - The proxy keeps the last table it built while no replica answers (its watches retry), so forwarding goes
//!   on from the last known state.
//! - A connection lasts while its endpoint is listed in a slice; once the endpoint has left (its pod is gone)
//!   the connection is closed. A listener whose address is taken is retried at each table change.
//! - At most `PROXY_CONNECTIONS_MAX` connections are forwarded at once; more are refused (closed at once).

pub mod service_range;
pub mod table;
mod tcp;
mod udp;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, Semaphore};

use super::services::Followed;
use crate::limits;
use table::{Backend, Endpoint, Frontend, Protocol, Table};

/// Open forwarded connections per pod uid.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<HashMap<String, usize>>>);

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more connection to `pod` while the returned guard lives.
    fn open(&self, pod: Option<&str>) -> Option<Opened> {
        let pod = pod?.to_owned();
        *self.lock().entry(pod.clone()).or_default() += 1;
        Some(Opened { connections: self.clone(), pod })
    }

    /// The open connections of each pod that has any.
    pub fn snapshot(&self) -> HashMap<String, usize> {
        self.lock().clone()
    }
}

struct Opened {
    connections: Connections,
    pod: String,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let mut counts = self.connections.lock();
        if let Some(n) = counts.get_mut(&self.pod) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.pod);
            }
        }
    }
}

/// How one frontend picks an endpoint: round robin, with client-IP affinity when its backend asks for it.
#[derive(Default)]
struct Balancer {
    next: usize,
    affinity: HashMap<IpAddr, (Endpoint, Instant)>,
}

impl Balancer {
    /// The endpoints of `backend` in the order to try them for a client at `client`.
    fn order(&mut self, backend: &Backend, client: IpAddr, now: Instant) -> Vec<Endpoint> {
        let endpoints = &backend.endpoints;
        if endpoints.is_empty() {
            return Vec::new();
        }
        if let Some(timeout) = backend.affinity {
            self.affinity.retain(|_, (_, at)| now.duration_since(*at) < timeout);
            if let Some((sticky, _)) = self.affinity.get(&client) {
                if let Some(i) = endpoints.iter().position(|e| e == sticky) {
                    return endpoints[i..].iter().chain(&endpoints[..i]).cloned().collect();
                }
            }
        }
        let start = self.next % endpoints.len();
        self.next = self.next.wrapping_add(1);
        endpoints[start..].iter().chain(&endpoints[..start]).cloned().collect()
    }

    /// `client` was connected to `endpoint`.
    fn connected(&mut self, backend: &Backend, client: IpAddr, endpoint: &Endpoint, now: Instant) {
        if backend.affinity.is_some() && self.affinity.len() < limits::PROXY_AFFINITY_CLIENTS_MAX {
            self.affinity.insert(client, (endpoint.clone(), now));
        }
    }
}

/// What every listener shares.
#[derive(Clone)]
struct Shared {
    table: watch::Receiver<Arc<Table>>,
    connections: Connections,
    permits: Arc<Semaphore>,
}

impl Shared {
    fn backend(&self, frontend: &Frontend) -> Option<Arc<Backend>> {
        self.table.borrow().frontends.get(frontend).cloned()
    }
}

/// Runs the proxy for the node `node` until dropped, forwarding as `followed` says.
pub async fn run(mut followed: Followed, node: String, connections: Connections) {
    let (table_tx, table_rx) = watch::channel(Arc::new(Table::default()));
    let shared =
        Shared { table: table_rx, connections, permits: Arc::new(Semaphore::new(limits::PROXY_CONNECTIONS_MAX)) };
    if !followed.ready().await {
        return;
    }
    tracing::info!("proxy: following Services and EndpointSlices");
    let mut listeners: BTreeMap<Frontend, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let table = Arc::new(table::table(&followed.services.state(), &followed.slices.state(), &node));
        if **table_tx.borrow() != *table {
            table_tx.send_replace(table.clone());
        }
        reconcile_listeners(&mut listeners, &table, &shared).await;
        if !followed.next_change().await {
            return;
        }
    }
}

/// A proxy of one TCP frontend on `listener` to `endpoints`, through the same forwarding path as the agent's
/// (for the proxy benchmark, which compares it with a direct connection). Runs until the task is aborted.
pub fn forward_tcp(
    listener: tokio::net::TcpListener,
    endpoints: Vec<std::net::SocketAddr>,
) -> tokio::task::JoinHandle<()> {
    let frontend = Frontend {
        address: listener.local_addr().ok().map(|a| a.ip()),
        port: listener.local_addr().map_or(0, |a| a.port()),
        protocol: Protocol::Tcp,
    };
    let backend = Backend {
        service: "bench".to_owned(),
        endpoints: endpoints.iter().map(|a| Endpoint { address: *a, pod_uid: None }).collect(),
        affinity: None,
    };
    let table = Table { frontends: [(frontend, Arc::new(backend))].into(), listed: endpoints.into_iter().collect() };
    let (table_tx, table_rx) = watch::channel(Arc::new(table));
    let shared = Shared {
        table: table_rx,
        connections: Connections::default(),
        permits: Arc::new(Semaphore::new(limits::PROXY_CONNECTIONS_MAX)),
    };
    let listening = super::AbortOnDrop(vec![tcp::serve(listener, frontend, shared)]);
    tokio::spawn(async move {
        // The table's sender lives as long as the listener does.
        let _table = table_tx;
        let _listening = listening;
        std::future::pending::<()>().await;
    })
}

/// Opens a listener for each frontend of `table` that has none (retrying those whose address was taken) and
/// closes those of frontends that are gone.
async fn reconcile_listeners(
    listeners: &mut BTreeMap<Frontend, tokio::task::JoinHandle<()>>,
    table: &Table,
    shared: &Shared,
) {
    listeners.retain(|frontend, task| {
        let keep = table.frontends.contains_key(frontend) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    for frontend in table.frontends.keys() {
        if listeners.contains_key(frontend) {
            continue;
        }
        let address = std::net::SocketAddr::new(
            frontend.address.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            frontend.port,
        );
        let opened = match frontend.protocol {
            Protocol::Tcp => tcp::listen(address, *frontend, shared.clone()).await,
            Protocol::Udp => udp::listen(address, *frontend, shared.clone()).await,
        };
        match opened {
            Ok(task) => {
                tracing::debug!(%address, protocol = ?frontend.protocol, "proxy: listening");
                listeners.insert(*frontend, task);
            }
            Err(e) => {
                tracing::warn!(%address, protocol = ?frontend.protocol, error = %e, "proxy: cannot listen")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint(port: u16) -> Endpoint {
        Endpoint { address: std::net::SocketAddr::from(([10, 88, 0, 2], port)), pod_uid: Some(format!("p{port}")) }
    }

    fn backend(ports: &[u16], affinity: Option<Duration>) -> Backend {
        Backend { service: "default/web:".into(), endpoints: ports.iter().map(|p| endpoint(*p)).collect(), affinity }
    }

    #[test]
    fn endpoints_are_taken_in_turn_and_an_affine_client_keeps_its_own() {
        let mut balancer = Balancer::default();
        let now = Instant::now();
        let plain = backend(&[1, 2, 3], None);
        let client: IpAddr = [127, 0, 0, 1].into();
        let firsts: Vec<u16> = (0..4).map(|_| balancer.order(&plain, client, now)[0].address.port()).collect();
        assert_eq!(firsts, [1, 2, 3, 1]);
        assert_eq!(balancer.order(&plain, client, now).len(), 3, "the others follow, to skip a refusal");

        let sticky = backend(&[1, 2, 3], Some(Duration::from_secs(10)));
        let mut balancer = Balancer::default();
        let first = balancer.order(&sticky, client, now)[0].clone();
        balancer.connected(&sticky, client, &first, now);
        for _ in 0..3 {
            assert_eq!(balancer.order(&sticky, client, now + Duration::from_secs(5))[0], first);
        }
        let later = now + Duration::from_secs(11);
        assert_ne!(balancer.order(&sticky, client, later)[0], first, "the affinity has expired");
        assert!(balancer.order(&backend(&[], None), client, now).is_empty());
    }

    #[test]
    fn connections_are_counted_per_pod_while_open() {
        let connections = Connections::default();
        let a = connections.open(Some("p1"));
        let b = connections.open(Some("p1"));
        assert!(connections.open(None).is_none());
        assert_eq!(connections.snapshot()["p1"], 2);
        drop((a, b));
        assert!(connections.snapshot().is_empty());
    }
}
