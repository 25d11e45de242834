//! Leader-only work: the controllers, the node lifecycle controller, the scheduler and the resource metrics
//! scraper run on the term's shared informers, beside the automatic compaction of the store's history, while
//! this replica leads and has applied an entry of its term, and are stopped (aborted and awaited) as soon as
//! that term's leadership ends.
//!
//! Architecture invariant: every term gets fresh informers (which list everything again), queues and
//! components; nothing leader-only survives a step-down, and every task of a term has ended before the next
//! term's can start: the term's components are aborted and awaited, and the term's client runs each request on
//! a task of its own and counts them, so that the writes under way when a component is stopped are carried
//! through (and, committed after the term ended, refused) and waited for.
//! Architecture invariant (fencing): the controllers' client marks every request with the term it was made
//! for (`LeaderTerm`), and the API proposes their writes as fenced transactions, which the state machine refuses
//! when they are committed in another term. A deposed leader's controllers, still running for a moment, cannot
//! change anything.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::compaction;
use crate::apiserver::http::rest::LeaderTerm;
use crate::controllers::kubernetes_service::{Heard, Replica};
use crate::controllers::runtime::Informers;
use crate::controllers::{self, node_lifecycle, Environment};
use crate::limits;
use crate::metrics::{self, Points};
use crate::scheduler;
use crate::security::authn::{Origin, User, CONTROLLER_MANAGER_USER, MASTERS_GROUP};
use crate::store::Store;

/// What this replica tells its controllers when it leads.
#[derive(Clone)]
pub struct Leading {
    /// Where this replica's Kubernetes API is reached.
    pub api_addr: SocketAddr,
    /// The first address of the service range.
    pub kubernetes_service_ip: Ipv4Addr,
    /// The tenth, the cluster DNS Service's.
    pub cluster_dns_ip: Ipv4Addr,
    /// How long a node may go without a heartbeat before the node lifecycle controller declares it Unknown.
    pub node_monitor_grace_period: Duration,
    /// How often the history is compacted (zero: never).
    pub compaction_interval: Duration,
    /// The resource metrics this replica keeps while it leads, and how often they are scraped.
    pub points: Points,
    pub metric_resolution: Duration,
    /// How often each HorizontalPodAutoscaler is evaluated.
    pub autoscaler_sync_period: Duration,
    /// The cluster authority's certificate, for namespaces to publish (`ApiSecurity::token_root_ca`).
    pub root_ca: Option<Arc<str>>,
    /// The TLS the kubelets are scraped with: this replica's API certificate (None: plain HTTP).
    pub kubelets_tls: Option<Arc<rustls::ClientConfig>>,
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

/// Counts a term's requests that are inside the API (until their response head), so that the term ends
/// only once none is left, whichever task made them.
#[derive(Clone)]
struct InFlight(Arc<watch::Sender<usize>>);

/// One request inside the API.
struct Entered(Arc<watch::Sender<usize>>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl InFlight {
    fn new() -> InFlight {
        InFlight(Arc::new(watch::channel(0).0))
    }

    fn enter(&self) -> Entered {
        self.0.send_modify(|n| *n += 1);
        Entered(self.0.clone())
    }

    /// Resolves once no request is inside the API.
    async fn drained(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }
}

/// An API client for the controllers of `term`: in-process through the router, every request fenced and
/// counted in `in_flight`. A request runs on a task of its own until its response head, as a request to a
/// server would: a component stopped meanwhile drops the answer, not the request, so a write it made is
/// carried through (and refused, when committed after the term ended) before the term is over.
fn fenced_client(router: axum::Router, term: u64, in_flight: InFlight) -> kube::Client {
    let service = tower::ServiceBuilder::new()
        .map_future(move |response| {
            let entered = in_flight.enter();
            let request = tokio::spawn(async move {
                let response = response.await;
                drop(entered);
                response
            });
            async move {
                request.await.unwrap_or_else(|e| {
                    let mut failed = axum::response::Response::new(axum::body::Body::from(e.to_string()));
                    *failed.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    Ok(failed)
                })
            }
        })
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            request.extensions_mut().insert(LeaderTerm(term));
            request.extensions_mut().insert(Origin::InProcess(User::new(CONTROLLER_MANAGER_USER, &[MASTERS_GROUP])));
            request
        })
        .service(router);
    kube::Client::new(service, "default")
}

pub async fn run(store: Store, router: axum::Router, leading: Leading, mut shutdown: watch::Receiver<bool>) {
    loop {
        // Stopping comes first: a leader asked to stop is still leading, and must not start its term again.
        let term = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            term = store.wait_for_leadership() => match term {
                Some(term) => term,
                None => return,
            },
        };
        tracing::info!(term, "leading: starting the controllers");
        let seen = store.clone();
        let environment = Environment {
            kubernetes_service_ip: leading.kubernetes_service_ip,
            cluster_dns_ip: leading.cluster_dns_ip,
            replicas: Arc::new(move || replicas(&seen, leading.api_addr)),
            root_ca: leading.root_ca.clone(),
        };
        let in_flight = InFlight::new();
        let mut informers = Informers::new(fenced_client(router.clone(), term, in_flight.clone()));
        let controllers = controllers::prepare(&mut informers, environment);
        let nodes = node_lifecycle::prepare(&mut informers, leading.node_monitor_grace_period);
        let scheduler = scheduler::prepare(&mut informers);
        let workloads = controllers::workloads::prepare(&mut informers);
        let endpoints = controllers::endpoints::prepare(&mut informers);
        let scraper = metrics::scraper::prepare(
            &mut informers,
            leading.points.clone(),
            leading.metric_resolution,
            leading.kubelets_tls.clone(),
        );
        let autoscaler =
            controllers::autoscaler::prepare(&mut informers, leading.points.clone(), leading.autoscaler_sync_period);
        let compaction = compaction::run(store.clone(), leading.compaction_interval);
        let informers = informers.start();
        let task = tokio::spawn(async move {
            tokio::join!(controllers, nodes, scheduler, workloads, endpoints, scraper, autoscaler, compaction);
        });
        tokio::select! {
            () = store.wait_for_leadership_end(term) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        task.abort();
        let _ = task.await;
        informers.stop().await;
        // Writes the components had spawned are dropped with them; wait until the last has let go.
        let drain = Duration::from_millis(limits::TERM_REQUESTS_DRAIN_MS);
        if tokio::time::timeout(drain, in_flight.drained()).await.is_err() {
            tracing::warn!(term, "requests of the term still inside the API after {drain:?}");
        }
        tracing::info!(term, "no longer leading: the controllers and the scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_outlives_the_component_that_made_it_and_the_term_drains_once_it_ends() {
        let release = Arc::new(tokio::sync::Notify::new());
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler = {
            let (release, served) = (release.clone(), served.clone());
            move || async move {
                release.notified().await;
                served.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let router = axum::Router::new().route("/api/v1/namespaces", axum::routing::post(handler));
        let in_flight = InFlight::new();
        let client = fenced_client(router, 7, in_flight.clone());
        let component = tokio::spawn(async move {
            let _ = client.request_text(http::Request::post("/api/v1/namespaces").body(Vec::new()).unwrap()).await;
        });
        let mut count = in_flight.0.subscribe();
        count.wait_for(|n| *n == 1).await.unwrap();
        component.abort();
        let drained = tokio::time::timeout(Duration::from_millis(50), in_flight.drained()).await;
        assert!(drained.is_err(), "the request goes on without the component that made it");
        release.notify_one();
        let drained = tokio::time::timeout(Duration::from_secs(5), in_flight.drained()).await;
        assert!(drained.is_ok(), "the request ended");
        assert!(served.load(std::sync::atomic::Ordering::SeqCst), "and was served to its end");
    }
}
