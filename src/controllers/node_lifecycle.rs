//! The node lifecycle controller, the node part of kube-controller-manager, on the Raft leader: it owns the
//! verdict that a node stopped heartbeating (its conditions set to Unknown), the condition taints of every node
//! (`node.kubernetes.io/not-ready`, `unreachable`, the pressure taints, `unschedulable`), taint-based eviction
//! (upstream's NoExecute taint manager) and marking the pods of an unreachable node not ready. Orphaned pods are
//! `pod_gc`'s, run from the same task.
//!
//! `plan` decides, purely, from the Nodes, their Leases in `kube-node-lease`, the pods, the time, when this
//! leader started leading and the grace period; `prepare` queues a node's name whenever it, its Lease or a pod
//! bound to it changes, and each reconcile plans that node alone, with its Lease and its pods (an index by
//! `spec.nodeName` kept from the pod informer's changes), then executes: a change costs what that node
//! holds, never a pass over the cluster.
//!
//! Architecture invariant (DESIGN.md 6): a new leader trusts no liveness it did not observe, and no absence of
//! liveness either: a node's heartbeat counts from no earlier than the moment this leader started leading, so no
//! node is declared dead before it has had a full grace period under this leader.
//! Architecture invariant: every write carries a precondition (the resourceVersion that was read, or the pod's
//! uid for a deletion); a stale cache makes a write fail, never do harm, and the next pass sees the new state.
//! Architecture invariant: writes go through the Kubernetes API only, with the leader's fenced client.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::runtime::{run_workers, Change, Next, WorkQueue};
use super::{events, pod_gc, runtime};
use crate::limits;

/// The namespace of the nodes' heartbeat Leases (one per node, named after it).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub use crate::apis::admission::{NOT_READY_TAINT, UNREACHABLE_TAINT};
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The NoSchedule taint a node condition's status calls for (upstream's map from conditions to taints).
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY_TAINT),
    ("Ready", "Unknown", UNREACHABLE_TAINT),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The conditions set to Unknown when a node stops posting its status (NetworkUnavailable belongs to the
/// network and is left alone, as upstream leaves it).
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Upstream's wording for a condition the controller set to Unknown.
pub const STATUS_UNKNOWN_REASON: &str = "NodeStatusUnknown";
pub const STATUS_UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";
pub const NEVER_UPDATED_REASON: &str = "NodeStatusNeverUpdated";
pub const NEVER_UPDATED_MESSAGE: &str = "Kubelet never posted node status.";

/// The components upstream names as the source of the events recorded here.
const NODE_CONTROLLER: &str = "node-controller";
const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";
pub const EVICTION_REASON: &str = "TaintManagerEviction";

/// What one pass decides from.
pub struct Input<'a> {
    pub nodes: &'a [Arc<Node>],
    /// The Leases of `kube-node-lease`.
    pub leases: &'a [Arc<Lease>],
    pub pods: &'a [Arc<Pod>],
    pub now: Timestamp,
    /// When this replica's leadership began: no heartbeat counts from earlier than this.
    pub leading_since: Timestamp,
    /// How long a node may go without a heartbeat before it is declared Unknown.
    pub grace: Duration,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// When the next pass is due at the latest even if nothing changes: the earliest heartbeat deadline or
    /// toleration end still ahead.
    pub next: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// The node as it should be, with the resourceVersion it was read at: its status is replaced when
    /// `status` (and a NodeNotReady event recorded when `became_unknown`), then its taints when `taints`.
    Node { node: Box<Node>, status: bool, taints: bool, became_unknown: bool },
    /// The pod with its Ready condition set to False (upstream's MarkPodsNotReady), at the version read.
    MarkPodNotReady { pod: Box<Pod> },
    /// The pod must leave its node: a NoExecute taint it does not tolerate, or no longer.
    Evict { pod: Box<Pod> },
}

impl Plan {
    fn wake_at(&mut self, at: Timestamp) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }
}

/// `t` plus `d`, saturating.
fn after(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// `t` to the second, as the API stores `Time`s: what the plan writes compares equal to what it reads back.
fn to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

pub fn plan(input: &Input) -> Plan {
    let mut plan = Plan::default();
    let renewed: BTreeMap<&str, Timestamp> = input
        .leases
        .iter()
        .filter_map(|l| Some((l.metadata.name.as_deref()?, l.spec.as_ref()?.renew_time.as_ref()?.0)))
        .collect();
    for node in input.nodes {
        let renewed = node.metadata.name.as_deref().and_then(|n| renewed.get(n).copied());
        plan_node(input, node, renewed, &mut plan);
    }
    let nodes: BTreeMap<&str, &Node> =
        input.nodes.iter().filter_map(|n| Some((n.metadata.name.as_deref()?, n.as_ref()))).collect();
    for pod in input.pods {
        plan_pod(input, pod, &nodes, &mut plan);
    }
    plan
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default()
}

fn condition_status<'a>(conditions: &'a [NodeCondition], type_: &str) -> Option<&'a str> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.as_str())
}

/// The node's latest heartbeat: its Lease's renewTime or its Ready condition's lastHeartbeatTime, whichever is
/// newer; its creation when it has neither.
pub fn heartbeat(node: &Node, lease_renewed: Option<Timestamp>) -> Option<Timestamp> {
    let posted = conditions(node).iter().find(|c| c.type_ == "Ready").and_then(|c| c.last_heartbeat_time.as_ref());
    let newest = lease_renewed.max(posted.map(|t| t.0));
    newest.or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// When the node is declared Unknown unless it heartbeats again: a grace period after its latest heartbeat, or
/// after this leader started leading if that is later.
pub fn deadline(node: &Node, lease_renewed: Option<Timestamp>, leading_since: Timestamp, grace: Duration) -> Timestamp {
    let observed = heartbeat(node, lease_renewed).map_or(leading_since, |h| h.max(leading_since));
    after(observed, grace)
}

fn plan_node(input: &Input, node: &Node, lease_renewed: Option<Timestamp>, plan: &mut Plan) {
    if node.metadata.name.is_none() || node.metadata.deletion_timestamp.is_some() {
        return;
    }
    let now = to_second(input.now);
    let current = conditions(node);
    let mut unknown = current.to_vec();
    let would_change = mark_unknown(&mut unknown, now, node.metadata.creation_timestamp.as_ref());
    let due = deadline(node, lease_renewed, input.leading_since, input.grace);
    let status = would_change && input.now >= due;
    if would_change && !status {
        plan.wake_at(due);
    }
    let effective = if status { unknown.as_slice() } else { current };
    let spec = node.spec.as_ref();
    let taints_now = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let taints = condition_taints(taints_now, effective, unschedulable, now);
    let taints_changed = taints != taints_now;
    if !status && !taints_changed {
        return;
    }
    let became_unknown = status && condition_status(current, "Ready") != Some("Unknown");
    let mut node = node.clone();
    if status {
        node.status.get_or_insert_with(Default::default).conditions = Some(unknown);
    }
    if taints_changed {
        node.spec.get_or_insert_with(Default::default).taints = Some(taints);
    }
    plan.writes.push(Write::Node { node: Box::new(node), status, taints: taints_changed, became_unknown });
}

/// Sets the monitored conditions to Unknown as upstream does for a node whose heartbeat is overdue: one never
/// posted is added as never updated; one posted keeps its heartbeat and gets the new status, reason, message
/// and transition time. Returns whether anything changed.
fn mark_unknown(conditions: &mut Vec<NodeCondition>, now: Timestamp, created: Option<&Time>) -> bool {
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".into(),
                    reason: Some(NEVER_UPDATED_REASON.into()),
                    message: Some(NEVER_UPDATED_MESSAGE.into()),
                    last_heartbeat_time: created.cloned(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some(STATUS_UNKNOWN_REASON.into());
                c.message = Some(STATUS_UNKNOWN_MESSAGE.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

/// Whether this controller owns the taint: the NoSchedule taints of conditions and of `spec.unschedulable`,
/// and the NoExecute not-ready and unreachable taints.
fn managed(taint: &Taint) -> bool {
    match taint.effect.as_str() {
        NO_SCHEDULE => taint.key == UNSCHEDULABLE_TAINT || CONDITION_TAINTS.iter().any(|(_, _, key)| *key == taint.key),
        NO_EXECUTE => taint.key == NOT_READY_TAINT || taint.key == UNREACHABLE_TAINT,
        _ => false,
    }
}

/// The node's taints with the managed ones as its conditions call for: those that stay keep their timeAdded,
/// new ones are added at `now`, the others go; taints of anyone else are kept as they are. A node that has
/// never reported Ready keeps the Ready taints it has (the not-ready one it got when it registered).
fn condition_taints(
    current: &[Taint],
    conditions: &[NodeCondition],
    unschedulable: bool,
    now: Timestamp,
) -> Vec<Taint> {
    let mut wanted: Vec<(String, &str)> = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition_status(conditions, type_) == Some(*status) {
            wanted.push((key.to_string(), NO_SCHEDULE));
        }
    }
    match condition_status(conditions, "Ready") {
        Some("False") => wanted.push((NOT_READY_TAINT.into(), NO_EXECUTE)),
        Some("Unknown") => wanted.push((UNREACHABLE_TAINT.into(), NO_EXECUTE)),
        Some(_) => {}
        None => {
            for t in current.iter().filter(|t| managed(t) && (t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT)) {
                let effect = if t.effect == NO_EXECUTE { NO_EXECUTE } else { NO_SCHEDULE };
                wanted.push((t.key.clone(), effect));
            }
        }
    }
    if unschedulable {
        wanted.push((UNSCHEDULABLE_TAINT.into(), NO_SCHEDULE));
    }
    let mut taints: Vec<Taint> = Vec::new();
    for t in current {
        let keep = !managed(t) || wanted.iter().any(|(k, e)| *k == t.key && *e == t.effect);
        let duplicate = managed(t) && taints.iter().any(|s| s.key == t.key && s.effect == t.effect);
        if keep && !duplicate {
            taints.push(t.clone());
        }
    }
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint { key, effect: effect.into(), value: None, time_added: Some(Time(now)) });
        }
    }
    taints
}

/// Upstream's rule of whether a toleration tolerates a taint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        "Exists" => true,
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// A NoExecute taint is not tolerated: the pod goes at once.
    Now,
    /// Every taint is tolerated, the first to run out at this time (its timeAdded plus its toleration's
    /// `tolerationSeconds`).
    At(Timestamp),
    /// Every taint is tolerated forever (or there is none).
    Never,
}

/// When a pod with these tolerations must leave a node with these taints (only NoExecute ones count). Each
/// taint is tolerated by the first toleration that matches it, as upstream picks; a taint without timeAdded
/// counts from `unknown_added`.
pub fn eviction(taints: &[Taint], tolerations: &[Toleration], unknown_added: Timestamp) -> Eviction {
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else { return Eviction::Now };
        if let Some(seconds) = toleration.toleration_seconds {
            let added = taint.time_added.as_ref().map_or(unknown_added, |t| t.0);
            let ends = after(added, Duration::from_secs(seconds.max(0).unsigned_abs()));
            at = Some(at.map_or(ends, |a| a.min(ends)));
        }
    }
    at.map_or(Eviction::Never, Eviction::At)
}

fn plan_pod(input: &Input, pod: &Pod, nodes: &BTreeMap<&str, &Node>, plan: &mut Plan) {
    let Some(spec) = pod.spec.as_ref() else { return };
    let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()).and_then(|n| nodes.get(n)) else { return };
    if pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    // The node as stored: a pod is evicted for a taint the node has, never for one this pass only plans.
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let evict = match eviction(taints, spec.tolerations.as_deref().unwrap_or_default(), input.leading_since) {
        Eviction::Now => true,
        Eviction::At(at) if at <= input.now => true,
        Eviction::At(at) => {
            plan.wake_at(at);
            false
        }
        Eviction::Never => false,
    };
    if evict {
        plan.writes.push(Write::Evict { pod: Box::new(pod.clone()) });
        return;
    }
    if condition_status(conditions(node), "Ready") == Some("Unknown") {
        if let Some(not_ready) = pod_not_ready(pod, to_second(input.now)) {
            plan.writes.push(Write::MarkPodNotReady { pod: Box::new(not_ready) });
        }
    }
}

/// The pod with its Ready condition set to False, if it is True now.
fn pod_not_ready(pod: &Pod, now: Timestamp) -> Option<Pod> {
    let mut pod = pod.clone();
    let ready = pod.status.as_mut()?.conditions.as_mut()?.iter_mut().find(|c| c.type_ == "Ready")?;
    if ready.status != "True" {
        return None;
    }
    ready.status = "False".into();
    ready.last_transition_time = Some(Time(now));
    Some(pod)
}

// ---------------------------------------------------------------------------------------------------------
// The task around the plan: one key per node.

/// The pods bound to each node, kept from the Pod informer's changes, so that one node's reconcile reads its
/// own pods alone.
#[derive(Default)]
struct PodsByNode {
    node_of: HashMap<ObjectRef<Pod>, String>,
    pods: HashMap<String, HashSet<ObjectRef<Pod>>>,
}

impl PodsByNode {
    /// Records a change; returns the nodes it concerns (where the pod was bound and where it is).
    fn apply(&mut self, change: Change<'_, Pod>) -> Vec<String> {
        let key = ObjectRef::from_obj(change.object());
        let now = match change {
            Change::Applied(pod) => pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            Change::Deleted(_) => None,
        };
        let before = self.node_of.get(&key).cloned();
        if before != now {
            if let Some(before) = &before {
                self.node_of.remove(&key);
                if let Some(pods) = self.pods.get_mut(before) {
                    pods.remove(&key);
                    if pods.is_empty() {
                        self.pods.remove(before);
                    }
                }
            }
            if let Some(now) = &now {
                self.node_of.insert(key.clone(), now.clone());
                self.pods.entry(now.clone()).or_default().insert(key);
            }
        }
        before.into_iter().chain(now).collect()
    }

    fn on(&self, node: &str) -> Vec<ObjectRef<Pod>> {
        self.pods.get(node).map(|p| p.iter().cloned().collect()).unwrap_or_default()
    }
}

/// What every reconcile of a term shares.
struct Context {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    by_node: Arc<Mutex<PodsByNode>>,
    /// When this replica's leadership began.
    leading_since: Timestamp,
    grace: Duration,
    /// The pod garbage collector's quarantine clock, this term's own: when each missing node that pods still
    /// name was first seen missing.
    missing_since: Mutex<BTreeMap<String, Timestamp>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers the controller (and the pod garbage collector) with the term's informers: Nodes, Leases and
/// Pods, whole, each change queueing the node it concerns (a Node, its Lease in `kube-node-lease`, a pod bound
/// to it). The returned future reconciles one node at a time per worker, once the informers have listed,
/// until it is dropped; a node is looked at again when a deadline its plan computed arrives, or at the latest
/// every `NODE_LIFECYCLE_RESYNC_INTERVAL_MS`.
pub fn prepare(informers: &mut runtime::Informers, grace: Duration) -> impl std::future::Future<Output = ()> + Send {
    let client = informers.client().clone();
    let nodes = informers.typed::<Node>();
    let leases = informers.typed::<Lease>();
    let pods = informers.typed::<Pod>();
    let by_node: Arc<Mutex<PodsByNode>> = Arc::default();
    let queue = {
        let (nodes, by_node) = (nodes.store().clone(), by_node.clone());
        WorkQueue::new("node-lifecycle", limits::WORK_QUEUE_KEYS_MAX, move || {
            let mut names: BTreeSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
            names.extend(lock(&by_node).pods.keys().cloned());
            names.into_iter().collect()
        })
    };
    {
        let queue = queue.clone();
        nodes.on_change(move |change| queue.add(change.object().name_any()));
    }
    {
        let queue = queue.clone();
        leases.on_change(move |change| {
            if change.object().metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE) {
                queue.add(change.object().name_any());
            }
        });
    }
    {
        let (queue, by_node) = (queue.clone(), by_node.clone());
        pods.on_change(move |change| {
            for node in lock(&by_node).apply(change) {
                queue.add(node);
            }
        });
    }
    let synced = informers.synced();
    let (nodes, leases, pods) = (nodes.store().clone(), leases.store().clone(), pods.store().clone());
    async move {
        synced.wait().await;
        let leading_since = Timestamp::now();
        tracing::info!(grace_secs = grace.as_secs_f64(), "node lifecycle controller started");
        let context =
            Context { client, nodes, leases, pods, by_node, leading_since, grace, missing_since: Mutex::default() };
        let context = &context;
        run_workers(queue, limits::NODE_LIFECYCLE_WORKERS, |name| reconcile(context, name)).await;
    }
}

/// Plans one node with its Lease and its pods and carries the plan out; for a node that does not exist, collects
/// the pods still bound to it once its quarantine is over.
async fn reconcile(context: &Context, name: String) -> Result<Next, kube::Error> {
    let now = Timestamp::now();
    let bound = lock(&context.by_node).on(&name);
    let pods: Vec<Arc<Pod>> = bound.iter().filter_map(|key| context.pods.get(key)).collect();
    let next = match runtime::informer::get(&context.nodes, None, &name) {
        Some(node) => {
            lock(&context.missing_since).remove(&name);
            let lease = runtime::informer::get(&context.leases, Some(NODE_LEASE_NAMESPACE), &name);
            let (leading_since, grace) = (context.leading_since, context.grace);
            let input = Input { nodes: &[node], leases: lease.as_slice(), pods: &pods, now, leading_since, grace };
            let plan = plan(&input);
            for write in &plan.writes {
                execute(&context.client, write).await?;
            }
            plan.next
        }
        None if pods.is_empty() => {
            lock(&context.missing_since).remove(&name);
            return Ok(Next::Done);
        }
        None => {
            // Upstream quarantines a missing node for 40 s; here for as long as a node may go silent.
            let seen: BTreeMap<String, Timestamp> = {
                let mut missing = lock(&context.missing_since);
                let since = *missing.entry(name.clone()).or_insert(now);
                [(name.clone(), since)].into()
            };
            let gc = pod_gc::plan(&[], &pods, &seen, now, context.grace);
            for orphan in &gc.orphans {
                pod_gc::collect(&context.client, orphan).await?;
            }
            gc.next
        }
    };
    let resync = Duration::from_millis(limits::NODE_LIFECYCLE_RESYNC_INTERVAL_MS);
    let wait = next
        .map_or(resync, |at| Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default().min(resync));
    Ok(Next::RequeueAfter(wait))
}

async fn execute(client: &Client, write: &Write) -> Result<(), kube::Error> {
    match write {
        Write::Node { node, status, taints, became_unknown } => {
            let api: Api<Node> = Api::all(client.clone());
            let name = node.name_any();
            let mut resource_version = node.metadata.resource_version.clone();
            if *status {
                tracing::info!(node = %name, "node stopped posting its status: its conditions are now Unknown");
                let written = api.replace_status(&name, &PostParams::default(), node).await?;
                resource_version = written.metadata.resource_version.clone();
                if *became_unknown {
                    let message = format!("Node {name} status is now: NodeNotReady");
                    record_event(client, &written, "NodeNotReady", &message, NODE_CONTROLLER).await;
                }
            }
            if *taints {
                let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
                let keys: Vec<String> = taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
                tracing::info!(node = %name, taints = ?keys, "node taints follow its conditions");
                let patch = json!({"metadata": {"resourceVersion": resource_version}, "spec": {"taints": taints}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        Write::MarkPodNotReady { pod } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            tracing::info!(namespace = ?pod.namespace(), pod = %pod.name_any(), "marking a pod of an unreachable node not ready");
            api.replace_status(&pod.name_any(), &PostParams::default(), pod).await?;
        }
        Write::Evict { pod } => {
            let namespace = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            // Upstream says why the pod goes before it deletes it; the version read is the precondition.
            let mut marked = pod.as_ref().clone();
            let now = Time(to_second(Timestamp::now()));
            let conditions = marked.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByTaintManager".into()),
                message: Some("Taint manager: deleting due to NoExecute taint".into()),
                last_transition_time: Some(now),
                ..PodCondition::default()
            });
            api.replace_status(&name, &PostParams::default(), &marked).await?;
            tracing::info!(%namespace, pod = %name, "evicting a pod from a node with a NoExecute taint it does not tolerate");
            let preconditions = Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None });
            api.delete(&name, &DeleteParams { preconditions, ..DeleteParams::default() }).await?;
            let message = format!("Marking for deletion Pod {namespace}/{name}");
            record_event(client, pod.as_ref(), EVICTION_REASON, &message, TAINT_EVICTION_CONTROLLER).await;
        }
    }
    Ok(())
}

/// Records a Normal core Event about `object` now (in its namespace, `default` for a Node).
async fn record_event<K>(client: &Client, object: &K, reason: &str, message: &str, component: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = events::event(events::reference(object), events::NORMAL, reason, message, component);
    events::write(client, &event).await;
}

#[cfg(test)]
mod tests;
