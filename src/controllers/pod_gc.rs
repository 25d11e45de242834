//! Pod garbage collection (upstream's PodGC controller), on the Raft leader: a pod bound to a node that no
//! longer exists has no kubelet to finish it, so the leader removes it (a forced deletion, grace period 0). Run
//! from the node lifecycle controller's reconciles, over the same caches.
//!
//! As upstream, a missing node is quarantined first: its pods go only once this leader has seen it missing for
//! a while (upstream waits a fixed 40 s; here the node monitor grace period), so that a pod bound just before
//! its node registers, or a cache that lags, costs nothing. The quarantine clock is the leader's own and starts
//! afresh with every term. The node lifecycle controller runs it for each node name that pods name and no Node
//! has.
//!
//! Architecture invariant: a pod is removed only after a live read of its node (not the cache, which may lag
//! behind a node just created) found no node of that name, and its deletion is conditional on the uid that was
//! planned, so a pod recreated under the same name is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::Client;

use crate::limits;

/// A pod bound to a node the cache does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
}

/// What a pass of the collector decides.
#[derive(Debug, Default)]
pub struct Plan {
    /// The pods to remove, oldest first (as upstream goes through them).
    pub orphans: Vec<Orphan>,
    /// When this leader first saw each missing node that pods still name; the next pass starts from it.
    pub missing_since: BTreeMap<String, Timestamp>,
    /// When the next quarantine ends, if one is running.
    pub next: Option<Timestamp>,
}

/// The pods bound to a node that is not among `nodes` and has been missing for `quarantine` since this leader
/// first saw it missing (`missing_since`, from the last pass). At most `POD_GC_MISSING_NODES_MAX` missing nodes
/// are tracked; the pods of others wait for a later pass.
pub fn plan(
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    missing_since: &BTreeMap<String, Timestamp>,
    now: Timestamp,
    quarantine: Duration,
) -> Plan {
    let existing: BTreeSet<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
    let quarantine = SignedDuration::try_from(quarantine).unwrap_or(SignedDuration::MAX);
    let mut plan = Plan::default();
    let mut orphans: Vec<(Option<Timestamp>, Orphan)> = Vec::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) else {
            continue;
        };
        if existing.contains(node) {
            continue;
        }
        let since = match plan.missing_since.get(node) {
            Some(since) => *since,
            None if plan.missing_since.len() < limits::POD_GC_MISSING_NODES_MAX => {
                let since = missing_since.get(node).copied().unwrap_or(now);
                plan.missing_since.insert(node.to_string(), since);
                since
            }
            None => continue,
        };
        let due = since.checked_add(quarantine).unwrap_or(Timestamp::MAX);
        if now < due {
            plan.next = Some(plan.next.map_or(due, |n| n.min(due)));
            continue;
        }
        let (Some(namespace), Some(name), Some(uid)) =
            (pod.metadata.namespace.clone(), pod.metadata.name.clone(), pod.metadata.uid.clone())
        else {
            continue;
        };
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        orphans.push((created, Orphan { namespace, name, uid, node: node.to_string() }));
    }
    orphans.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name))));
    plan.orphans = orphans.into_iter().map(|(_, o)| o).collect();
    plan
}

/// Removes an orphaned pod once a live read confirms that its node is gone.
pub async fn collect(client: &Client, orphan: &Orphan) -> Result<(), kube::Error> {
    if Api::<Node>::all(client.clone()).get_opt(&orphan.node).await?.is_some() {
        return Ok(());
    }
    tracing::info!(namespace = %orphan.namespace, pod = %orphan.name, node = %orphan.node,
        "deleting a pod bound to a node that no longer exists");
    let preconditions = Some(Preconditions { uid: Some(orphan.uid.clone()), resource_version: None });
    let params = DeleteParams { grace_period_seconds: Some(0), preconditions, ..DeleteParams::default() };
    match Api::<Pod>::namespaced(client.clone(), &orphan.namespace).delete(&orphan.name, &params).await {
        Ok(_) => Ok(()),
        // Already gone, or another pod by now: done either way.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap())
    }

    fn pod(name: &str, node: Option<&str>, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                    "creationTimestamp": created},
                "spec": {"containers": [], "nodeName": node},
            }))
            .unwrap(),
        )
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn pods_of_a_node_missing_for_the_quarantine_go_oldest_first() {
        let nodes = [node("a")];
        let pods = [
            pod("on-a", Some("a"), "2025-01-01T00:00:00Z"),
            pod("unbound", None, "2025-01-01T00:00:00Z"),
            pod("late", Some("gone"), "2025-01-01T00:00:09Z"),
            pod("early", Some("gone"), "2025-01-01T00:00:01Z"),
        ];
        let quarantine = Duration::from_secs(40);
        let first = plan(&nodes, &pods, &BTreeMap::new(), t(0), quarantine);
        assert!(first.orphans.is_empty(), "a node just seen missing is quarantined");
        assert_eq!(first.missing_since, BTreeMap::from([("gone".to_string(), t(0))]));
        assert_eq!(first.next, Some(t(40)));
        let waiting = plan(&nodes, &pods, &first.missing_since, t(39), quarantine);
        assert!(waiting.orphans.is_empty());
        let due = plan(&nodes, &pods, &waiting.missing_since, t(40), quarantine);
        let names: Vec<&str> = due.orphans.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["early", "late"]);
        assert_eq!((due.orphans[0].uid.as_str(), due.orphans[0].node.as_str()), ("uid-early", "gone"));
        // The node is back: its quarantine is forgotten.
        let back = plan(&[node("a"), node("gone")], &pods, &due.missing_since, t(41), quarantine);
        assert!(back.orphans.is_empty() && back.missing_since.is_empty());
    }
}
