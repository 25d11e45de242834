//! Resource metrics: what the agents measure of their pods and nodes, and the points the leader keeps of them
//! (metrics-server's job, inside the replicas).
//!
//! The path: each agent samples the usage of the pods and nodes it serves every `AGENT_USAGE_SAMPLE_MS`
//! (`agent::usage`) and serves its latest `Report` at its kubelet endpoint's `/metrics/usage`; the leader
//! scrapes every kubelet endpoint once per `--metric-resolution` (`scraper`) into its `Points`; the API servers
//! serve those as `metrics.k8s.io/v1beta1` (`apiserver::http::metrics`, a follower relaying to the leader) and
//! the HorizontalPodAutoscaler reads them in process. Named per-pod metrics (`PodReport::metrics`, what an HPA's
//! `Pods` metric reads) ride the same path: the fake runtime declares them from annotations, and the service
//! proxy adds what it counts in `agent::usage`.
//!
//! Invariants: the points are the leader's only, cleared at every change of term, so a replica never serves
//! the points of a term it no longer leads; an agent's report counts only for the nodes the leader asked that
//! endpoint about; at most `METRICS_PODS_MAX` pod points are kept.

pub mod scraper;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::limits;

/// What `/metrics/usage` answers: the latest sample of every node the agent serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub nodes: Vec<NodeReport>,
}

/// One node's usage and its pods', over the window that ended at `timestamp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub name: String,
    /// When the window ended (RFC 3339).
    pub timestamp: String,
    pub window_ms: u64,
    pub usage: Usage,
    pub pods: Vec<PodReport>,
}

/// CPU (a rate over the window, in billionths of a core) and memory in use (the working set, in bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

impl Usage {
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu_nanocores: self.cpu_nanocores.saturating_add(other.cpu_nanocores),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodReport {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<ContainerReport>,
    /// The pod's named metrics (an HPA's `Pods` metric), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerReport {
    pub name: String,
    pub usage: Usage,
}

/// What the leader knows of a node's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePoint {
    pub timestamp: String,
    pub window_ms: u64,
    pub usage: Usage,
}

/// What the leader knows of a pod's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct PodPoint {
    pub uid: String,
    pub node: String,
    pub timestamp: String,
    pub window_ms: u64,
    pub containers: Vec<ContainerReport>,
    pub metrics: BTreeMap<String, f64>,
}

impl PodPoint {
    /// The pod's usage: its containers' summed.
    pub fn usage(&self) -> Usage {
        self.containers.iter().fold(Usage::default(), |sum, c| sum.plus(c.usage))
    }
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, NodePoint>,
    /// Pods by namespace and name.
    pods: HashMap<(String, String), PodPoint>,
    /// The pods each node reported, to replace them with its next report.
    pods_of: HashMap<String, Vec<(String, String)>>,
}

/// The leader's latest points, shared by the scraper that writes them, the API that serves them and the
/// autoscaler that reads them. A std lock: nothing awaits under it.
#[derive(Clone, Default)]
pub struct Points {
    inner: Arc<RwLock<Inner>>,
    /// Whether a scraper of this replica's current term keeps them.
    kept: Arc<AtomicBool>,
}

impl Points {
    /// Whether this replica keeps the points (it leads, and its scraper runs).
    pub fn kept(&self) -> bool {
        self.kept.load(Ordering::Acquire)
    }

    /// Starts a term's keeping: nothing from an earlier term is left.
    pub fn start(&self) {
        *self.write() = Inner::default();
        self.kept.store(true, Ordering::Release);
    }

    /// Ends a term's keeping and forgets the points.
    pub fn stop(&self) {
        self.kept.store(false, Ordering::Release);
        *self.write() = Inner::default();
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces a node's point and its pods' with a new report of it. Returns how many pods were left out
    /// because `METRICS_PODS_MAX` points are kept already.
    pub fn record(&self, report: NodeReport) -> usize {
        let mut inner = self.write();
        for key in inner.pods_of.remove(&report.name).unwrap_or_default() {
            if inner.pods.get(&key).is_some_and(|p| p.node == report.name) {
                inner.pods.remove(&key);
            }
        }
        let mut kept = Vec::with_capacity(report.pods.len());
        let mut left_out = 0;
        for pod in report.pods {
            let key = (pod.namespace, pod.name);
            if inner.pods.len() >= limits::METRICS_PODS_MAX && !inner.pods.contains_key(&key) {
                left_out += 1;
                continue;
            }
            let point = PodPoint {
                uid: pod.uid,
                node: report.name.clone(),
                timestamp: report.timestamp.clone(),
                window_ms: report.window_ms,
                containers: pod.containers,
                metrics: pod.metrics,
            };
            inner.pods.insert(key.clone(), point);
            kept.push(key);
        }
        inner.pods_of.insert(report.name.clone(), kept);
        let node = NodePoint { timestamp: report.timestamp, window_ms: report.window_ms, usage: report.usage };
        inner.nodes.insert(report.name, node);
        left_out
    }

    /// Forgets every node (and its pods) that `keep` refuses: nodes that left the cluster.
    pub fn retain_nodes(&self, keep: impl Fn(&str) -> bool) {
        let mut inner = self.write();
        let gone: Vec<String> = inner.nodes.keys().filter(|n| !keep(n)).cloned().collect();
        for node in gone {
            inner.nodes.remove(&node);
            for key in inner.pods_of.remove(&node).unwrap_or_default() {
                if inner.pods.get(&key).is_some_and(|p| p.node == node) {
                    inner.pods.remove(&key);
                }
            }
        }
    }

    pub fn node(&self, name: &str) -> Option<NodePoint> {
        self.read().nodes.get(name).cloned()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodPoint> {
        self.read().pods.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, pods: &[&str]) -> NodeReport {
        NodeReport {
            name: node.into(),
            timestamp: "2026-12-06T10:00:00Z".into(),
            window_ms: 5000,
            usage: Usage { cpu_nanocores: 1, memory_bytes: 2 },
            pods: pods
                .iter()
                .map(|p| PodReport {
                    namespace: "ns".into(),
                    name: (*p).into(),
                    uid: format!("uid-{p}"),
                    containers: vec![ContainerReport {
                        name: "c".into(),
                        usage: Usage { cpu_nanocores: 10, memory_bytes: 20 },
                    }],
                    metrics: BTreeMap::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_report_replaces_the_nodes_pods_and_a_pod_that_moved_stays_with_its_new_node() {
        let points = Points::default();
        points.start();
        points.record(report("a", &["p1", "p2"]));
        points.record(report("b", &["p3"]));
        assert_eq!(points.pod("ns", "p1").unwrap().usage(), Usage { cpu_nanocores: 10, memory_bytes: 20 });
        // p2 is gone from a; p3 was recreated on a under the same name.
        points.record(report("a", &["p1", "p3"]));
        assert!(points.pod("ns", "p2").is_none());
        assert_eq!(points.pod("ns", "p3").unwrap().node, "a");
        // b's next report no longer has p3: a's point of it stays.
        points.record(report("b", &[]));
        assert_eq!(points.pod("ns", "p3").unwrap().node, "a");
        points.retain_nodes(|n| n != "a");
        assert!(points.pod("ns", "p1").is_none() && points.pod("ns", "p3").is_none() && points.node("a").is_none());
        assert!(points.node("b").is_some());
    }

    #[test]
    fn a_term_starts_and_ends_with_nothing_kept() {
        let points = Points::default();
        assert!(!points.kept());
        points.start();
        points.record(report("a", &["p1"]));
        assert!(points.kept());
        points.stop();
        assert!(!points.kept() && points.node("a").is_none() && points.pod("ns", "p1").is_none());
        points.start();
        assert!(points.node("a").is_none());
    }
}
