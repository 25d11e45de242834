//! The agent's Node: registration, the Lease heartbeat and the Ready condition, as upstream's kubelet keeps
//! them.
//!
//! - Registration creates the Node (labels `kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`
//!   and those of `--node-labels`; taints of `--register-with-taints`; capacity and allocatable; addresses
//!   InternalIP and Hostname; the kubelet port; node info; the conditions) or, when it exists, merges the labels
//!   in and reports the status. Taints are only set on creation, as upstream.
//! - The Lease `kube-node-lease/<node>` is renewed every `AGENT_LEASE_RENEW_MS` (renewTime, holderIdentity,
//!   leaseDurationSeconds `AGENT_LEASE_DURATION_SECS`), owned by the Node; a failed renewal is retried after
//!   `AGENT_LEASE_RETRY_MS_MIN`, doubling up to the renewal interval while failures go on.
//! - The status is computed every `AGENT_NODE_STATUS_UPDATE_MS` against the Node as the API has it, and written
//!   (with a new lastHeartbeatTime) only when it differs or `AGENT_NODE_STATUS_REPORT_MS` has passed since the
//!   last report (upstream's node-status-update-frequency and node-status-report-frequency): the Lease is the
//!   heartbeat, the status is not rewritten every 10 s.
//!
//! What is written is decided by pure functions (`node_object`, `node_status`, `needs_report`, `lease_object`);
//! the loops only read, compare and write. Keeps DESIGN.md invariant 1 (an API client only).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::limits;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What one node registers as.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Capacity, also reported as allocatable (nothing is reserved).
    pub capacity: BTreeMap<String, Quantity>,
    pub address: IpAddr,
    pub kubelet_port: u16,
    /// `fake://0.1.0` or `process://0.1.0`.
    pub runtime_version: String,
    pub os_image: String,
    pub kernel_version: String,
    pub boot_id: String,
    pub machine_id: String,
}

/// The architecture as Kubernetes names it (Go's GOARCH).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The labels every node carries, then the flags' (which may override them).
pub fn labels(name: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), name.to_owned()),
        ("kubernetes.io/os".to_owned(), std::env::consts::OS.to_owned()),
        ("kubernetes.io/arch".to_owned(), arch().to_owned()),
        ("beta.kubernetes.io/os".to_owned(), std::env::consts::OS.to_owned()),
        ("beta.kubernetes.io/arch".to_owned(), arch().to_owned()),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The host's capacity: its CPUs, its memory (`MemTotal` of `meminfo`, the text of /proc/meminfo) and 110 pods.
pub fn host_capacity(cpus: usize, meminfo: &str) -> BTreeMap<String, Quantity> {
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        ("memory".to_owned(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_owned(), Quantity("110".to_owned())),
        ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
    ])
}

/// Parses `k=v,k2=v2` (the `--node-labels` and `--fake-capacity` form).
pub fn parse_pairs(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut pairs = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?} is not of the form key=value"))?;
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        pairs.insert(k.to_owned(), v.to_owned());
    }
    Ok(pairs)
}

/// Parses `k=v:Effect,k:Effect` (the `--register-with-taints` form).
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, String> {
    let mut taints = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kv, effect) =
            item.rsplit_once(':').ok_or_else(|| format!("{item:?} is not of the form key=value:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!("{item:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute"));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        taints.push(Taint { key: key.to_owned(), value, effect: effect.to_owned(), time_added: None });
    }
    Ok(taints)
}

/// A timestamp as the API keeps it (whole seconds), so that what is computed compares equal to what was read.
pub fn seconds(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The conditions a healthy agent reports, in upstream's order; a condition whose status did not change keeps
/// its lastTransitionTime.
fn conditions(current: Option<&NodeStatus>, now: jiff::Timestamp) -> Vec<NodeCondition> {
    let now = Time(seconds(now));
    let wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ];
    let before = current.and_then(|s| s.conditions.as_ref());
    wanted
        .iter()
        .map(|(kind, status, reason, message)| {
            let previous = before.and_then(|cs| cs.iter().find(|c| c.type_ == *kind));
            let transition = previous
                .filter(|c| c.status == *status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: (*kind).to_owned(),
                status: (*status).to_owned(),
                reason: Some((*reason).to_owned()),
                message: Some((*message).to_owned()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// The status the agent reports for its node at `now`.
pub fn node_status(config: &NodeConfig, current: Option<&NodeStatus>, now: jiff::Timestamp) -> NodeStatus {
    NodeStatus {
        capacity: Some(config.capacity.clone()),
        allocatable: Some(config.capacity.clone()),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".to_owned(), address: config.address.to_string() },
            NodeAddress { type_: "Hostname".to_owned(), address: config.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(config.kubelet_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().to_owned(),
            boot_id: config.boot_id.clone(),
            container_runtime_version: config.runtime_version.clone(),
            kernel_version: config.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: format!("v1.{}.0-raftsman.{}", crate::apis::KUBERNETES_MINOR, env!("CARGO_PKG_VERSION")),
            machine_id: config.machine_id.clone(),
            operating_system: std::env::consts::OS.to_owned(),
            os_image: config.os_image.clone(),
            system_uuid: config.machine_id.clone(),
            ..Default::default()
        }),
        conditions: Some(conditions(current, now)),
        ..current.cloned().unwrap_or_default()
    }
}

/// The Node as first registered.
pub fn node_object(config: &NodeConfig, now: jiff::Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels(&config.name, &config.labels)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: Some(node_status(config, None, now)),
    }
}

/// Whether the status must be written: it differs from the API's (heartbeat times aside), or the last report
/// is older than `AGENT_NODE_STATUS_REPORT_MS`.
pub fn needs_report(wanted: &NodeStatus, current: Option<&NodeStatus>, since_report: Option<Duration>) -> bool {
    let Some(current) = current else { return true };
    if since_report.is_none_or(|d| d >= Duration::from_millis(limits::AGENT_NODE_STATUS_REPORT_MS)) {
        return true;
    }
    let without_heartbeats = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    without_heartbeats(wanted) != without_heartbeats(current)
}

/// The node's Lease renewed at `now`, from the one read (if any).
pub fn lease_object(node: &str, node_uid: Option<&str>, current: Option<&Lease>, now: jiff::Timestamp) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Node".to_owned(),
                    name: node.to_owned(),
                    uid: uid.to_owned(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node.to_owned());
    spec.lease_duration_seconds = Some(limits::AGENT_LEASE_DURATION_SECS);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// Registers the node, retrying until it succeeds; returns the Node's uid.
pub async fn register(client: &kube::Client, config: &NodeConfig) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut pause = Duration::from_millis(limits::AGENT_WATCH_BACKOFF_MS_MIN);
    loop {
        match register_once(&nodes, config).await {
            Ok(uid) => return uid,
            Err(e) => {
                tracing::warn!(node = %config.name, error = %e, "agent: registering the node failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(limits::AGENT_WATCH_BACKOFF_MS_MAX));
            }
        }
    }
}

async fn register_once(nodes: &Api<Node>, config: &NodeConfig) -> Result<String, kube::Error> {
    match nodes.create(&PostParams::default(), &node_object(config, jiff::Timestamp::now())).await {
        Ok(node) => {
            tracing::info!(node = %config.name, "agent: node registered");
            return Ok(node.metadata.uid.unwrap_or_default());
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let patch = serde_json::json!({"metadata": {"labels": labels(&config.name, &config.labels)}});
    let node = nodes.patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let status = node_status(config, node.status.as_ref(), jiff::Timestamp::now());
    let patch = serde_json::json!({"status": status});
    nodes.patch_status(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(node = %config.name, "agent: node registered again");
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Renews the node's Lease every `AGENT_LEASE_RENEW_MS` (after `offset`, which spreads many fake nodes).
pub async fn renew_lease(client: kube::Client, node: String, node_uid: String, offset: Duration) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut current: Option<Lease> = None;
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_millis(limits::AGENT_LEASE_RENEW_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = Duration::from_millis(limits::AGENT_LEASE_RETRY_MS_MIN);
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        let renewed = match current.take() {
            Some(lease) => {
                let lease = lease_object(&node, Some(&node_uid), Some(&lease), now);
                leases.replace(&node, &PostParams::default(), &lease).await
            }
            None => match leases.get_opt(&node).await {
                Ok(Some(lease)) => {
                    let lease = lease_object(&node, Some(&node_uid), Some(&lease), now);
                    leases.replace(&node, &PostParams::default(), &lease).await
                }
                Ok(None) => {
                    let lease = lease_object(&node, Some(&node_uid), None, now);
                    leases.create(&PostParams::default(), &lease).await
                }
                Err(e) => Err(e),
            },
        };
        match renewed {
            Ok(lease) => {
                current = Some(lease);
                retry = Duration::from_millis(limits::AGENT_LEASE_RETRY_MS_MIN);
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "agent: renewing the node lease failed");
                // Retried sooner than the next tick, as upstream does, reading the lease again; the pause doubles
                // while failures go on, so that many nodes do not hammer a cluster that cannot answer.
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_millis(limits::AGENT_LEASE_RENEW_MS));
                tick.reset_immediately();
            }
        }
    }
}

/// Reports the node's status every `AGENT_NODE_STATUS_UPDATE_MS` when it changed or is due.
pub async fn report_status(client: kube::Client, config: NodeConfig, offset: Duration) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut reported: Option<tokio::time::Instant> = None;
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_millis(limits::AGENT_NODE_STATUS_UPDATE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let node = match nodes.get_opt(&config.name).await {
            Ok(Some(node)) => node,
            Ok(None) => {
                // Deleted by someone: register again, as upstream's kubelet does.
                register(&client, &config).await;
                reported = Some(tokio::time::Instant::now());
                continue;
            }
            Err(e) => {
                tracing::warn!(node = %config.name, error = %e, "agent: reading the node failed");
                continue;
            }
        };
        let now = jiff::Timestamp::now();
        let wanted = node_status(&config, node.status.as_ref(), now);
        if !needs_report(&wanted, node.status.as_ref(), reported.map(|r| r.elapsed())) {
            continue;
        }
        let patch = serde_json::json!({"status": wanted});
        match nodes.patch_status(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => reported = Some(tokio::time::Instant::now()),
            Err(e) => tracing::warn!(node = %config.name, error = %e, "agent: reporting the node status failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            taints: parse_taints("dedicated=gpu:NoSchedule").unwrap(),
            capacity: host_capacity(4, "MemTotal:       16305440 kB\nMemFree: 1 kB\n"),
            address: "127.0.0.1".parse().unwrap(),
            kubelet_port: 10250,
            runtime_version: "fake://0.1.0".into(),
            os_image: "fake".into(),
            kernel_version: "6.1".into(),
            boot_id: "b".into(),
            machine_id: "m".into(),
        }
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_registered_node() {
        let node = node_object(&config(), ts("2026-01-01T00:00:00.5Z"));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!(
            (taints[0].key.as_str(), taints[0].value.as_deref(), taints[0].effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["memory"], Quantity("16305440Ki".into()));
        assert_eq!(status.capacity.as_ref().unwrap()["cpu"], Quantity("4".into()));
        assert_eq!(status.capacity, status.allocatable);
        assert_eq!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[1], NodeAddress { type_: "Hostname".into(), address: "n1".into() });
        let ready = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts("2026-01-01T00:00:00Z"))), "whole seconds");
    }

    #[test]
    fn status_is_reported_when_it_changes_or_is_due() {
        let config = config();
        let first = node_status(&config, None, ts("2026-01-01T00:00:00Z"));
        let later = node_status(&config, Some(&first), ts("2026-01-01T00:00:10Z"));
        let ready =
            |s: &NodeStatus| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").cloned().unwrap();
        assert_eq!(ready(&later).last_transition_time, ready(&first).last_transition_time);
        assert!(!needs_report(&later, Some(&first), Some(Duration::from_secs(10))), "only the heartbeat moved");
        assert!(needs_report(&later, Some(&first), Some(Duration::from_millis(limits::AGENT_NODE_STATUS_REPORT_MS))));
        assert!(needs_report(&later, Some(&first), None), "never reported by this agent");
        assert!(needs_report(&later, None, Some(Duration::from_secs(10))));
        // The node lifecycle controller marked it Unknown: reported at once, with a new transition time.
        let mut unknown = first.clone();
        for c in unknown.conditions.iter_mut().flatten().filter(|c| c.type_ == "Ready") {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
        }
        let back = node_status(&config, Some(&unknown), ts("2026-01-01T00:00:20Z"));
        assert!(needs_report(&back, Some(&unknown), Some(Duration::from_secs(10))));
        assert_eq!(ready(&back).last_transition_time, Some(Time(ts("2026-01-01T00:00:20Z"))));
    }

    #[test]
    fn lease_renewal() {
        let now = ts("2026-01-01T00:00:00.123456Z");
        let lease = lease_object("n1", Some("uid-1"), None, now);
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(lease.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let later = ts("2026-01-01T00:00:10Z");
        let renewed = lease_object("n1", Some("uid-1"), Some(&lease), later);
        assert_eq!(renewed.spec.unwrap().renew_time, Some(MicroTime(later)));
        assert_eq!(renewed.metadata, lease.metadata);
    }

    #[test]
    fn flags() {
        assert_eq!(
            parse_pairs("a=1, b=").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "".into())])
        );
        assert!(parse_pairs("a").is_err());
        let taints = parse_taints("k:NoExecute,x=y:PreferNoSchedule").unwrap();
        assert_eq!(taints[0].value, None);
        assert_eq!(taints[1].value.as_deref(), Some("y"));
        assert!(parse_taints("k=v:Sometimes").is_err());
        assert!(parse_taints("k=v").is_err());
    }
}
