//! The scheduling queue and the assume cache, as one pure state machine that the scheduler's task feeds
//! with what the informers show and with the outcomes of its writes, and that answers which pods to place
//! now and where.
//!
//! - Pending pods are those the informers show unbound and wanting this scheduler, keyed by uid (so each is
//!   pending once however often it changes), tried by priority, then age, then name (upstream's PrioritySort).
//! - Assumed pods count against their node from the moment they are chosen, until the informers show them
//!   bound (confirmed) or gone; a binding that fails forgets the assumption at once.
//! - A pod found unschedulable waits out a back-off (1 s doubling to 10 s, upstream's defaults), and is
//!   tried again only once the cluster (nodes, or pods placed on them) or the pod itself has changed since
//!   it failed, or `SCHEDULER_UNSCHEDULABLE_RETRY_MS` has passed.
//!
//! Pure: time is an argument. Invariant: a pod is in flight (one write at a time) or pending, never both; a
//! pod is never decided again while a binding for it is in flight or its assumption stands.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{NodeFacts, PodFacts};
use super::placement::{place, Placement};
use super::snapshot::{Placed, Snapshot};
use crate::limits;

/// What to do for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Bind { pod: Arc<PodFacts>, node: String },
    Unschedulable { pod: Arc<PodFacts>, message: String },
}

/// How a binding ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// The pod is gone, already bound, or not the one decided for: nothing to retry.
    Moot,
    /// The write failed (or may have): try again after a back-off.
    Failed,
}

#[derive(Clone, Debug)]
struct Backoff {
    attempts: u32,
    failed_at: Instant,
    /// The cluster and the pod as they were when it failed; None: retry once the back-off has passed.
    seen: Option<(u64, u64)>,
}

impl Backoff {
    fn not_before(&self) -> Instant {
        let shift = self.attempts.saturating_sub(1).min(16);
        let wait = (limits::SCHEDULER_BACKOFF_MS_INITIAL << shift).min(limits::SCHEDULER_BACKOFF_MS_MAX);
        self.failed_at + Duration::from_millis(wait)
    }
}

/// The result of one round.
#[derive(Debug, Default)]
pub struct Round {
    pub decisions: Vec<Decision>,
    /// When a pod waiting out a back-off becomes due, if any does.
    pub wake_at: Option<Instant>,
    /// Pods the informers show waiting for this scheduler.
    pub pending: usize,
}

#[derive(Debug, Default)]
pub struct Queue {
    /// Chosen but not yet seen bound: uid → (node, what it holds).
    assumed: HashMap<String, (String, Placed)>,
    in_flight: HashSet<String>,
    backoff: HashMap<String, Backoff>,
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The scheduling-relevant part of a pod, to tell whether it changed since it failed.
fn pod_fingerprint(pod: &PodFacts) -> u64 {
    hash_of(format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{}",
        pod.requests, pod.node_selector, pod.required, pod.preferred, pod.tolerations, pod.host_ports, pod.priority
    ))
}

impl Queue {
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn assumed(&self) -> usize {
        self.assumed.len()
    }

    /// One round: builds the snapshot from the nodes, the bound pods and the standing assumptions, then
    /// decides for due pending pods in queue order until `slots` decisions are made.
    pub fn round(&mut self, nodes: Vec<NodeFacts>, pods: &[Arc<PodFacts>], now: Instant, slots: usize) -> Round {
        let mut cluster = 0u64;
        for n in &nodes {
            cluster ^= hash_of((&n.name, &n.resource_version));
        }
        let mut snapshot = Snapshot::new(nodes);
        let mut pending = Vec::new();
        let mut unbound = HashSet::new();
        for pod in pods {
            match &pod.node_name {
                Some(node) => {
                    // Seen bound: the assumption (if any) is confirmed.
                    self.assumed.remove(&pod.uid);
                    if !pod.terminal {
                        cluster ^= hash_of((&pod.uid, node));
                        snapshot.add(node, Placed::of(pod));
                    }
                }
                None => {
                    unbound.insert(pod.uid.as_str());
                    if pod.wants_scheduling() {
                        pending.push(pod);
                    }
                }
            }
        }
        // An assumption stands while its pod is still shown unbound (or its binding is in flight).
        self.assumed.retain(|uid, _| unbound.contains(uid.as_str()) || self.in_flight.contains(uid));
        for (uid, (node, placed)) in &self.assumed {
            cluster ^= hash_of((uid, node));
            snapshot.add(node, placed.clone());
        }
        let wanted: HashSet<&str> = pending.iter().map(|p| p.uid.as_str()).collect();
        self.backoff.retain(|uid, _| wanted.contains(uid.as_str()));

        pending.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.creation.cmp(&b.creation))
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        let mut round = Round { pending: pending.len(), ..Round::default() };
        let retry_after = Duration::from_millis(limits::SCHEDULER_UNSCHEDULABLE_RETRY_MS);
        for pod in pending {
            if self.in_flight.contains(&pod.uid) || self.assumed.contains_key(&pod.uid) {
                continue;
            }
            let fingerprint = pod_fingerprint(pod);
            if let Some(b) = self.backoff.get(&pod.uid) {
                let changed = b.seen != Some((cluster, fingerprint));
                let due_at = if changed { b.not_before() } else { b.failed_at + retry_after };
                if now < due_at {
                    round.wake_at = Some(round.wake_at.map_or(due_at, |w| w.min(due_at)));
                    continue;
                }
            }
            if round.decisions.len() >= slots {
                break;
            }
            self.in_flight.insert(pod.uid.clone());
            match place(&snapshot, pod) {
                Placement::Node(node) => {
                    let placed = Placed::of(pod);
                    snapshot.add(&node, placed.clone());
                    cluster ^= hash_of((&pod.uid, &node));
                    self.assumed.insert(pod.uid.clone(), (node.clone(), placed));
                    round.decisions.push(Decision::Bind { pod: pod.clone(), node });
                }
                Placement::Unschedulable(message) => {
                    let attempts = self.backoff.get(&pod.uid).map_or(0, |b| b.attempts) + 1;
                    let seen = Some((cluster, fingerprint));
                    self.backoff.insert(pod.uid.clone(), Backoff { attempts, failed_at: now, seen });
                    round.decisions.push(Decision::Unschedulable { pod: pod.clone(), message });
                }
            }
        }
        round
    }

    /// A binding ended.
    pub fn bound(&mut self, uid: &str, outcome: BindOutcome, now: Instant) {
        self.in_flight.remove(uid);
        match outcome {
            BindOutcome::Bound => {
                self.backoff.remove(uid);
            }
            BindOutcome::Moot => {
                self.assumed.remove(uid);
            }
            BindOutcome::Failed => {
                self.assumed.remove(uid);
                let attempts = self.backoff.get(uid).map_or(0, |b| b.attempts) + 1;
                self.backoff.insert(uid.to_string(), Backoff { attempts, failed_at: now, seen: None });
            }
        }
    }

    /// The writes for an unschedulable pod (condition, Event) ended, however they ended: it waits out its
    /// back-off either way.
    pub fn reported(&mut self, uid: &str) {
        self.in_flight.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::quantity::Quantity;
    use crate::scheduler::model::Ready;

    fn node(name: &str, cpu: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            resource_version: "1".into(),
            labels: Default::default(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::True,
            allocatable: [("cpu", cpu), ("memory", "4Gi"), ("pods", "110")]
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
                .collect(),
        }
    }

    fn pod(name: &str, cpu: &str) -> Arc<PodFacts> {
        Arc::new(PodFacts {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            requests: [("cpu".to_string(), Quantity::parse(cpu).unwrap())].into(),
            ..PodFacts::default()
        })
    }

    fn bound(p: &Arc<PodFacts>, node: &str) -> Arc<PodFacts> {
        Arc::new(PodFacts { node_name: Some(node.into()), ..(**p).clone() })
    }

    #[test]
    fn assumed_pods_count_until_seen_bound_and_are_not_decided_twice() {
        let mut q = Queue::default();
        let now = Instant::now();
        let (a, b) = (pod("a", "1"), pod("b", "1"));
        let r = q.round(vec![node("n1", "1")], &[a.clone(), b.clone()], now, 10);
        assert_eq!(r.decisions.len(), 2);
        assert!(matches!(&r.decisions[0], Decision::Bind { node, .. } if node == "n1"));
        assert!(
            matches!(&r.decisions[1], Decision::Unschedulable { message, .. } if message.contains("1 Insufficient cpu"))
        );
        // While a's binding is in flight, a is not decided again and still holds its cpu.
        q.reported("uid-b");
        let r = q.round(vec![node("n1", "1")], &[a.clone(), b.clone()], now, 10);
        assert!(r.decisions.is_empty());
        q.bound("uid-a", BindOutcome::Bound, now);
        let r = q.round(vec![node("n1", "1")], &[a.clone(), b.clone()], now + Duration::from_secs(2), 10);
        assert!(r.decisions.is_empty(), "assumed until seen bound: {r:?}");
        assert_eq!(q.assumed(), 1);
        let r = q.round(vec![node("n1", "1")], &[bound(&a, "n1"), b.clone()], now + Duration::from_secs(3), 10);
        assert_eq!(q.assumed(), 0);
        // The cluster changed (a is now bound, not assumed, which is the same placement): b stays put.
        assert!(r.decisions.is_empty(), "{r:?}");
    }

    #[test]
    fn a_failed_binding_forgets_the_assumption_and_backs_off() {
        let mut q = Queue::default();
        let now = Instant::now();
        let a = pod("a", "1");
        let r = q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now, 10);
        assert_eq!(r.decisions.len(), 1);
        q.bound("uid-a", BindOutcome::Failed, now);
        assert_eq!(q.assumed(), 0);
        let r = q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now + Duration::from_millis(500), 10);
        assert!(r.decisions.is_empty());
        assert_eq!(r.wake_at, Some(now + Duration::from_millis(limits::SCHEDULER_BACKOFF_MS_INITIAL)));
        let r = q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now + Duration::from_secs(1), 10);
        assert_eq!(r.decisions.len(), 1);
    }

    #[test]
    fn unschedulable_pods_retry_when_the_cluster_changes_after_their_back_off() {
        let mut q = Queue::default();
        let now = Instant::now();
        let a = pod("a", "4");
        let r = q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now, 10);
        assert!(matches!(r.decisions[0], Decision::Unschedulable { .. }));
        q.reported("uid-a");
        // Nothing changed: not retried, even after the back-off.
        let r = q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now + Duration::from_secs(5), 10);
        assert!(r.decisions.is_empty());
        // A node appears: retried once the back-off has passed.
        let nodes = || vec![node("n1", "2"), node("n2", "8")];
        let r = q.round(nodes(), std::slice::from_ref(&a), now + Duration::from_millis(500), 10);
        assert!(r.decisions.is_empty());
        let r = q.round(nodes(), std::slice::from_ref(&a), now + Duration::from_secs(6), 10);
        assert!(matches!(&r.decisions[0], Decision::Bind { node, .. } if node == "n2"));
        // And long after, a retry comes even without a change.
        let mut q = Queue::default();
        q.round(vec![node("n1", "2")], std::slice::from_ref(&a), now, 10);
        q.reported("uid-a");
        let later = now + Duration::from_millis(limits::SCHEDULER_UNSCHEDULABLE_RETRY_MS);
        assert_eq!(q.round(vec![node("n1", "2")], std::slice::from_ref(&a), later, 10).decisions.len(), 1);
    }

    #[test]
    fn slots_bound_a_round_and_priority_goes_first() {
        let mut q = Queue::default();
        let now = Instant::now();
        let low = pod("low", "0");
        let high = Arc::new(PodFacts { priority: 10, ..(*pod("high", "0")).clone() });
        let r = q.round(vec![node("n1", "2")], &[low.clone(), high.clone()], now, 1);
        assert_eq!(r.decisions.len(), 1);
        assert!(matches!(&r.decisions[0], Decision::Bind { pod, .. } if pod.name == "high"));
        assert_eq!(q.in_flight(), 1);
        assert_eq!(r.pending, 2);
    }

    #[test]
    fn pods_that_are_gone_release_their_assumption() {
        let mut q = Queue::default();
        let now = Instant::now();
        let a = pod("a", "1");
        q.round(vec![node("n1", "1")], std::slice::from_ref(&a), now, 10);
        q.bound("uid-a", BindOutcome::Bound, now);
        q.round(vec![node("n1", "1")], &[], now, 10);
        assert_eq!(q.assumed(), 0);
        let b = pod("b", "1");
        let r = q.round(vec![node("n1", "1")], &[b], now, 10);
        assert!(matches!(&r.decisions[0], Decision::Bind { .. }));
    }
}
