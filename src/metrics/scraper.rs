//! The leader's metrics scraper: once per resolution, asks every kubelet endpoint for its latest usage report
//! (`GET /metrics/usage`, over TLS with the replica's API certificate, which the kubelets serve) and records it
//! in the `Points`, as metrics-server scrapes kubelets.
//!
//! Nodes come from the term's Node informer; a node's kubelet endpoint is where `pods/log` is relayed too
//! (`InternalIP` and `daemonEndpoints.kubeletEndpoint.Port`). Nodes that share an endpoint (an agent serving
//! many fake nodes) are scraped in one request. At most `METRICS_SCRAPES_IN_FLIGHT_MAX` endpoints are asked at
//! once, each within `METRICS_SCRAPE_TIMEOUT_MS` and `METRICS_REPORT_BYTES_MAX`; an endpoint that fails keeps
//! its nodes' last points until the node leaves. The first scrape of a term is made at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, Limited};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::Store;

use super::{Points, Report};
use crate::apiserver::http::logs::kubelet_address;
use crate::apiserver::http::ReplicaClient;
use crate::controllers::runtime::Informers;
use crate::limits;

/// The nodes to ask each kubelet endpoint about, by endpoint address.
pub fn endpoints(nodes: &[std::sync::Arc<Node>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.clone() else { continue };
        let Ok(value) = serde_json::to_value(node.as_ref()) else { continue };
        if let Some(address) = kubelet_address(&value) {
            out.entry(address).or_default().insert(name);
        }
    }
    out
}

struct Scraper {
    client: ReplicaClient,
    points: Points,
}

impl Scraper {
    fn new(points: Points, tls: Option<Arc<rustls::ClientConfig>>) -> Scraper {
        Scraper { client: ReplicaClient::new(limits::KUBELET_CONNECT_TIMEOUT_MS, 1, tls), points }
    }

    /// Asks one endpoint for its report and records the nodes it was asked about.
    async fn scrape(&self, address: &str, nodes: &BTreeSet<String>) -> Result<(), String> {
        let uri = self.client.uri(address, "/metrics/usage").map_err(|e| format!("unusable address: {e}"))?;
        let request =
            http::Request::get(uri).body(http_body_util::Empty::new()).map_err(|e| format!("unusable address: {e}"))?;
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            let body = Limited::new(response.into_body(), limits::METRICS_REPORT_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            serde_json::from_slice::<Report>(&body).map_err(|e| format!("an unreadable report: {e}"))
        };
        let waited = Duration::from_millis(limits::METRICS_SCRAPE_TIMEOUT_MS);
        let report =
            tokio::time::timeout(waited, answer).await.map_err(|_| format!("no answer within {waited:?}"))??;
        for node in report.nodes.into_iter().filter(|n| nodes.contains(&n.name)) {
            let left_out = self.points.record(node);
            if left_out > 0 {
                tracing::warn!(left_out, max = limits::METRICS_PODS_MAX, "metrics: too many pods, some left out");
            }
        }
        Ok(())
    }

    /// One round: every endpoint of the nodes the informer holds.
    async fn round(&self, nodes: &Store<Node>) {
        let state = nodes.state();
        let names: BTreeSet<String> = state.iter().filter_map(|n| n.metadata.name.clone()).collect();
        self.points.retain_nodes(|n| names.contains(n));
        let endpoints = endpoints(&state);
        futures::stream::iter(endpoints.iter())
            .for_each_concurrent(limits::METRICS_SCRAPES_IN_FLIGHT_MAX, |(address, nodes)| async move {
                if let Err(e) = self.scrape(address, nodes).await {
                    tracing::debug!(%address, error = %e, "metrics: a kubelet endpoint was not scraped");
                }
            })
            .await;
    }
}

/// The term's scraper: keeps `points` for as long as the returned future runs (the term), every `resolution`,
/// reaching the kubelets with `tls` (None: over plain HTTP).
pub fn prepare(
    informers: &mut Informers,
    points: Points,
    resolution: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> impl std::future::Future<Output = ()> + Send {
    let nodes = informers.typed::<Node>().store().clone();
    let synced = informers.synced();
    async move {
        let scraper = Scraper::new(points, tls);
        scraper.points.start();
        // The term ends by aborting this future: the guard forgets the points then.
        let _kept = Kept(scraper.points.clone());
        synced.wait().await;
        let mut ticks = tokio::time::interval(resolution);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            scraper.round(&nodes).await;
        }
    }
}

/// Forgets the points when the term's scraper ends.
struct Kept(Points);

impl Drop for Kept {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_sharing_an_endpoint_are_asked_about_in_one_request() {
        let node = |name: &str, ip: &str, port: i64| {
            std::sync::Arc::new(
                serde_json::from_value::<Node>(json!({"metadata": {"name": name}, "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
                .unwrap(),
            )
        };
        let nodes = [node("a-0", "127.0.0.1", 10250), node("a-1", "127.0.0.1", 10250), node("b", "::1", 10251)];
        let endpoints = endpoints(&nodes);
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints["127.0.0.1:10250"], BTreeSet::from(["a-0".to_string(), "a-1".to_string()]));
        assert_eq!(endpoints["[::1]:10251"], BTreeSet::from(["b".to_string()]));
    }
}
