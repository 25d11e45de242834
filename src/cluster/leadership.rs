//! Leader-only work: the controllers, the node lifecycle controller and the scheduler run on the term's shared
//! informers while this replica leads and has applied an entry of its term, and are stopped (aborted and
//! awaited) as soon as that term's leadership ends.
//!
//! Architecture invariant: every term gets fresh informers (which list everything again), queues and
//! components; nothing leader-only survives a step-down, and every task of a term has ended before the next
//! term's can start.
//! Architecture invariant (fencing): the controllers' client marks every request with the term it was made
//! for (`LeaderTerm`), and the API proposes their writes as fenced transactions, which the state machine refuses
//! when they are committed in another term. A deposed leader's controllers, still running for a moment, cannot
//! change anything.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::apiserver::http::rest::LeaderTerm;
use crate::controllers::kubernetes_service::{Heard, Replica};
use crate::controllers::runtime::Informers;
use crate::controllers::{self, node_lifecycle, Environment};
use crate::scheduler;
use crate::store::Store;

/// What this replica tells its controllers when it leads.
#[derive(Clone, Copy, Debug)]
pub struct Leading {
    /// Where this replica's Kubernetes API is reached.
    pub api_addr: SocketAddr,
    /// The first address of the service range.
    pub kubernetes_service_ip: Ipv4Addr,
    /// How long a node may go without a heartbeat before the node lifecycle controller declares it Unknown.
    pub node_monitor_grace_period: Duration,
}

/// The replicas as this replica, leading, sees them: their published API addresses (its own as it knows it)
/// and when it last heard from each.
fn replicas(store: &Store, own_api_addr: SocketAddr) -> Vec<Replica> {
    let me = store.member_id();
    let heard = store.followers_heard();
    store
        .members()
        .into_iter()
        .map(|m| {
            if m.id == me {
                return Replica { api_addr: Some(own_api_addr), heard: Heard::Leading };
            }
            let api_addr = m.published.and_then(|p| p.api_addr.parse().ok());
            Replica { api_addr, heard: heard.get(&m.id).map_or(Heard::Never, |ago| Heard::Ago(*ago)) }
        })
        .collect()
}

/// An API client for the controllers of `term`: in-process through the router, every request fenced.
fn fenced_client(router: axum::Router, term: u64) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            request.extensions_mut().insert(LeaderTerm(term));
            request
        })
        .service(router);
    kube::Client::new(service, "default")
}

pub async fn run(store: Store, router: axum::Router, leading: Leading, mut shutdown: watch::Receiver<bool>) {
    loop {
        let term = tokio::select! {
            term = store.wait_for_leadership() => match term {
                Some(term) => term,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        tracing::info!(term, "leading: starting the controllers");
        let seen = store.clone();
        let environment = Environment {
            kubernetes_service_ip: leading.kubernetes_service_ip,
            replicas: Arc::new(move || replicas(&seen, leading.api_addr)),
        };
        let mut informers = Informers::new(fenced_client(router.clone(), term));
        let controllers = controllers::prepare(&mut informers, environment);
        let nodes = node_lifecycle::prepare(&mut informers, leading.node_monitor_grace_period);
        let scheduler = scheduler::prepare(&mut informers);
        let informers = informers.start();
        let task = tokio::spawn(async move {
            tokio::join!(controllers, nodes, scheduler);
        });
        tokio::select! {
            () = store.wait_for_leadership_end(term) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        task.abort();
        let _ = task.await;
        informers.stop().await;
        tracing::info!(term, "no longer leading: the controllers and the scheduler stopped");
    }
}
