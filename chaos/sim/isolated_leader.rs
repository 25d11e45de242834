//! A leader cut off from the majority while a client keeps a lease alive through it. The majority elects
//! another leader, which expires the lease a TTL after it first sees it; so from the cut on, the old leader
//! must renew nothing (it confirms its leadership with a quorum first, as etcd 3.5 does).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::config::PlantedBugs;
use raftsman::proto::etcd as pb;
use tokio::time::{sleep, timeout};

use super::cluster::{self, Cluster};
use super::{client_endpoint, net};

const REPLICAS: usize = 3;
const LEASE_TTL_SECS: i64 = 10;
/// Keep-alives before the cut (all must be answered) and after it (none may renew).
const KEEP_ALIVES_BEFORE: usize = 5;
const KEEP_ALIVES_AFTER: usize = 20;
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(300);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the client saw: the keep-alives renewed before the cut, and the (simulated) times, after the cut, at
/// which a keep-alive sent after it was renewed anyway.
#[derive(Debug, Default)]
pub struct KeepAlives {
    pub renewed_before_cut: usize,
    pub renewed_after_cut: Vec<Duration>,
}

/// Runs the scenario on `seed`; an error when the simulation itself could not run it.
pub fn run(seed: u64) -> Result<KeepAlives, String> {
    raftsman::store::runtime::seed_elections(Some(seed));
    let cluster = Arc::new(Cluster::new(REPLICAS, seed, PlantedBugs::default(), |_| Duration::from_micros(500)));
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(40))
        .tick_duration(Duration::from_millis(1))
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::from_millis(4))
        .rng_seed(seed)
        .build();
    for (i, name) in cluster.names.iter().enumerate() {
        let cluster = cluster.clone();
        sim.host(name.as_str(), move || cluster::replica(cluster.clone(), i));
    }
    let seen = Arc::new(Mutex::new(KeepAlives::default()));
    let client_seen = seen.clone();
    sim.client("keeper", async move {
        let leader = wait_for_leader(&cluster).await.ok_or("no leader was elected")?;
        let name = &cluster.names[leader];
        let mut leases = pb::lease_client::LeaseClient::new(net::dial(client_endpoint(name)));
        let grant = pb::LeaseGrantRequest { ttl: LEASE_TTL_SECS, id: 0 };
        let id = leases.lease_grant(grant).await?.into_inner().id;
        for _ in 0..KEEP_ALIVES_BEFORE {
            if keep_alive(&mut leases, id).await {
                client_seen.lock().unwrap().renewed_before_cut += 1;
            }
            sleep(KEEP_ALIVE_EVERY).await;
        }
        for other in cluster.names.iter().filter(|n| *n != name) {
            turmoil::partition(name.as_str(), other.as_str());
        }
        let cut = turmoil::sim_elapsed().unwrap_or_default();
        for _ in 0..KEEP_ALIVES_AFTER {
            if keep_alive(&mut leases, id).await {
                let at = turmoil::sim_elapsed().unwrap_or_default();
                client_seen.lock().unwrap().renewed_after_cut.push(at - cut);
            }
            sleep(KEEP_ALIVE_EVERY).await;
        }
        Ok(())
    });
    sim.run().map_err(|e| format!("the simulation stopped: {e}"))?;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    Ok(seen)
}

/// The replica that leads, once one does (bounded wait).
async fn wait_for_leader(cluster: &Cluster) -> Option<usize> {
    for _ in 0..200 {
        let leading = (0..REPLICAS).find(|i| cluster.store(*i).is_some_and(|s| s.leading_term().is_some()));
        if leading.is_some() {
            return leading;
        }
        sleep(Duration::from_millis(50)).await;
    }
    None
}

/// One keep-alive on a stream of its own; whether the lease was renewed (a positive TTL came back in time).
async fn keep_alive(leases: &mut pb::lease_client::LeaseClient<tonic::transport::Channel>, id: i64) -> bool {
    let request = futures::stream::iter([pb::LeaseKeepAliveRequest { id }]);
    let renewed = async {
        let mut responses = leases.lease_keep_alive(request).await.ok()?.into_inner();
        responses.message().await.ok().flatten()
    };
    matches!(timeout(KEEP_ALIVE_TIMEOUT, renewed).await, Ok(Some(r)) if r.ttl > 0)
}
