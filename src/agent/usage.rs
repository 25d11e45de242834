//! The agent's usage sampler: every `AGENT_USAGE_SAMPLE_MS` (the first two samples `AGENT_USAGE_FIRST_WINDOW_MS`
//! apart), the counters of the pods it runs (through the runtime) and of its host, turned into rates over the
//! window since the previous sample. The latest `metrics::Report` is what the kubelet endpoint serves at
//! `/metrics/usage`, for the leader's scraper (`metrics::scraper`).
//!
//! A container's CPU rate needs two samples of it: one first seen is reported from the next sample on, and so
//! is a pod once all its running containers are. A counter that went back (another attempt) counts from zero.
//! A node uses what the host uses when the runtime measures the host (the process runtime), else what its pods
//! use. The pure part is `report`.
//!
//! Beside the metrics the runtime reports, each pod the service proxy has connections open to has
//! `concurrent_connections`, their number at the sample.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;

use super::proxy::Connections;
use super::runtime::{Counters, PodCounters, Runtime};
use crate::limits;
use crate::metrics::{ContainerReport, NodeReport, PodReport, Report, Usage};

/// The pod metric of the proxy's open connections to a pod.
pub const CONNECTIONS_METRIC: &str = "concurrent_connections";

/// The latest report, shared with the kubelet endpoint.
pub type Latest = Arc<RwLock<Arc<Report>>>;

/// The counters of one sample, what the next one's rates are computed from.
#[derive(Debug, Default)]
pub struct Sample {
    containers: HashMap<(String, String), u64>,
    host: Option<u64>,
}

/// The rate of a counter over `window`, in billionths of a core (rounded to the nearest).
fn rate(before: u64, now: u64, window: Duration) -> u64 {
    let nanos = window.as_nanos().max(1);
    // A counter that went back belongs to a new attempt: it counted from zero.
    let used = if now >= before { now - before } else { now };
    u64::try_from((u128::from(used) * 1_000_000_000 + nanos / 2) / nanos).unwrap_or(u64::MAX)
}

/// The report of `nodes` from this sample's counters and the previous sample, `window` earlier.
pub fn report(
    nodes: &[String],
    pods: &[Arc<Pod>],
    measured: Vec<PodCounters>,
    host: Option<Counters>,
    previous: &Sample,
    window: Duration,
    timestamp: &str,
) -> (Report, Sample) {
    let mut sample = Sample { containers: HashMap::new(), host: host.map(|h| h.cpu_ns) };
    let mut by_uid: HashMap<String, PodCounters> = measured.into_iter().map(|p| (p.uid.clone(), p)).collect();
    let mut pods_of: HashMap<&str, Vec<PodReport>> = HashMap::new();
    for pod in pods {
        let (Some(uid), Some(node)) =
            (pod.metadata.uid.as_deref(), pod.spec.as_ref().and_then(|s| s.node_name.as_deref()))
        else {
            continue;
        };
        let Some(counters) = by_uid.remove(uid) else { continue };
        let mut containers = Vec::new();
        let mut complete = !counters.containers.is_empty();
        for (name, now) in counters.containers {
            let key = (uid.to_owned(), name.clone());
            match previous.containers.get(&key) {
                Some(before) => containers.push(ContainerReport {
                    name,
                    usage: Usage { cpu_nanocores: rate(*before, now.cpu_ns, window), memory_bytes: now.memory_bytes },
                }),
                None => complete = false,
            }
            sample.containers.insert(key, now.cpu_ns);
        }
        if complete {
            pods_of.entry(node).or_default().push(PodReport {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: uid.to_owned(),
                containers,
                metrics: counters.metrics,
            });
        }
    }
    let host_usage = match (host, previous.host) {
        (Some(now), Some(before)) => {
            Some(Usage { cpu_nanocores: rate(before, now.cpu_ns, window), memory_bytes: now.memory_bytes })
        }
        _ => None,
    };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let reports = nodes
        .iter()
        .filter_map(|name| {
            let pods = pods_of.remove(name.as_str()).unwrap_or_default();
            let usage = match host {
                Some(_) => host_usage?,
                None => pods.iter().flat_map(|p| &p.containers).fold(Usage::default(), |sum, c| sum.plus(c.usage)),
            };
            Some(NodeReport { name: name.clone(), timestamp: timestamp.to_owned(), window_ms, usage, pods })
        })
        .collect();
    (Report { nodes: reports }, sample)
}

/// Samples until dropped, publishing each report in `latest`.
pub async fn run<R: Runtime>(
    runtime: Arc<R>,
    cache: Arc<OnceLock<Store<Pod>>>,
    nodes: Vec<String>,
    latest: Latest,
    connections: Connections,
) {
    let mut previous = Sample::default();
    let mut at = Instant::now();
    for sampled in 0u64.. {
        let wait = match sampled {
            0 => 0,
            1 => limits::AGENT_USAGE_FIRST_WINDOW_MS,
            _ => limits::AGENT_USAGE_SAMPLE_MS,
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let pods = cache.get().map(|c| c.state()).unwrap_or_default();
        let measuring = Arc::clone(&runtime);
        let now = Instant::now();
        let Ok((mut measured, host, pods)) = tokio::task::spawn_blocking(move || {
            let measured = measuring.usage(&pods, now);
            (measured, measuring.node_usage(), pods)
        })
        .await
        else {
            continue;
        };
        with_connections(&mut measured, connections.snapshot());
        let timestamp = jiff::Timestamp::now().to_string();
        let (report, sample) = report(&nodes, &pods, measured, host, &previous, now - at, &timestamp);
        *latest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(report);
        (previous, at) = (sample, now);
    }
}

/// Adds each pod's open proxied connections to its metrics (a pod the runtime did not measure gets none).
fn with_connections(measured: &mut [PodCounters], mut open: HashMap<String, usize>) {
    for pod in measured {
        let count = open.remove(&pod.uid).unwrap_or(0);
        pod.metrics.insert(CONNECTIONS_METRIC.to_owned(), count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, node: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": format!("p-{uid}"), "namespace": "ns", "uid": uid},
                "spec": {"nodeName": node, "containers": []}}))
            .unwrap(),
        )
    }

    fn counters(uid: &str, containers: &[(&str, u64, u64)]) -> PodCounters {
        PodCounters {
            uid: uid.into(),
            containers: containers
                .iter()
                .map(|(n, cpu, mem)| ((*n).to_owned(), Counters { cpu_ns: *cpu, memory_bytes: *mem }))
                .collect(),
            metrics: [("in_flight".to_owned(), 3.0)].into(),
        }
    }

    #[test]
    fn rates_come_from_the_second_sample_of_a_container_and_nodes_sum_their_pods() {
        let nodes = ["n-0".to_owned(), "n-1".to_owned()];
        let pods = [pod("a", "n-0"), pod("b", "n-0"), pod("c", "n-elsewhere")];
        let first = vec![counters("a", &[("x", 1_000, 10)]), counters("b", &[("x", 0, 1)])];
        let (out, sample) = report(&nodes, &pods, first, None, &Sample::default(), Duration::from_secs(1), "t0");
        assert!(out.nodes.iter().all(|n| n.pods.is_empty() && n.usage == Usage::default()));
        // a used half a core over 2 s; b has a second container now, not seen before: b waits.
        let second = vec![counters("a", &[("x", 1_000_001_000, 20)]), counters("b", &[("x", 5, 1), ("y", 0, 1)])];
        let (out, _) = report(&nodes, &pods, second, None, &sample, Duration::from_secs(2), "t1");
        let n0 = &out.nodes[0];
        assert_eq!((n0.name.as_str(), n0.window_ms, n0.timestamp.as_str()), ("n-0", 2000, "t1"));
        assert_eq!(n0.pods.len(), 1);
        assert_eq!(n0.pods[0].containers[0].usage, Usage { cpu_nanocores: 500_000_000, memory_bytes: 20 });
        assert_eq!(n0.pods[0].metrics["in_flight"], 3.0);
        assert_eq!(n0.usage, Usage { cpu_nanocores: 500_000_000, memory_bytes: 20 });
        assert_eq!(out.nodes[1].pods.len(), 0, "a pod on another node is not n-1's");
    }

    #[test]
    fn each_measured_pod_carries_its_open_connections() {
        let mut measured = vec![counters("a", &[("x", 0, 1)]), counters("b", &[("x", 0, 1)])];
        with_connections(&mut measured, [("a".to_owned(), 30), ("gone".to_owned(), 2)].into());
        assert_eq!(measured[0].metrics[CONNECTIONS_METRIC], 30.0);
        assert_eq!(measured[1].metrics[CONNECTIONS_METRIC], 0.0, "none open is a measure too");
    }

    #[test]
    fn a_host_measured_node_waits_for_its_second_sample_and_a_counter_that_went_back_counts_from_zero() {
        let nodes = ["n".to_owned()];
        let host = |cpu| Some(Counters { cpu_ns: cpu, memory_bytes: 7 });
        let (out, sample) = report(&nodes, &[], vec![], host(1_000), &Sample::default(), Duration::from_secs(1), "t");
        assert!(out.nodes.is_empty());
        let (out, _) = report(&nodes, &[], vec![], host(2_000_001_000), &sample, Duration::from_secs(1), "t");
        assert_eq!(out.nodes[0].usage, Usage { cpu_nanocores: 2_000_000_000, memory_bytes: 7 });
        assert_eq!(rate(5_000, 1_000, Duration::from_secs(1)), 1_000);
    }
}
