//! The scheduling queue and the assume cache, as one pure state machine that the scheduler's task feeds
//! with the changes the informers report and with the outcomes of its writes, and that answers which pods
//! to place now and where.
//!
//! - It keeps, for the whole term, every pod and node the informers show, and the snapshot of what counts
//!   against each node; a change costs what that change touches, never a pass over the cluster.
//! - Pending pods are those shown unbound and wanting this scheduler, keyed by uid (so each is pending once
//!   however often it changes), tried by priority, then age, then name (upstream's PrioritySort).
//! - Assumed pods count against their node from the moment they are chosen, until the informers show them
//!   bound (confirmed) or gone; a binding that fails forgets the assumption at once.
//! - A pod that failed is parked: it waits out a back-off (1 s doubling to 10 s, upstream's defaults) and,
//!   when it was unschedulable, also a change that could make it fit (a node's facts changed, or a pod
//!   stopped counting against a node: the cluster's generation moved) or a change of the pod itself, or
//!   `SCHEDULER_UNSCHEDULABLE_RETRY_MS`, as upstream's unschedulable pods wait for cluster events.
//!
//! Pure: time is an argument. Invariant: a pod is in flight (one write at a time) or pending, never both; a
//! pod is never decided again while a binding for it is in flight or its assumption stands.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{NodeFacts, PodFacts};
use super::placement::{feasible_to_find, place_from, Placement};
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
    /// The pod is gone, already bound, or not the one decided for: nothing to retry at once.
    Moot,
    /// The write failed (or may have): try again after a back-off.
    Failed,
}

/// A pending pod's place in line: priority (highest first), then age, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Turn {
    priority: Reverse<i32>,
    creation: String,
    namespace: String,
    name: String,
    uid: String,
}

impl Turn {
    fn of(pod: &PodFacts) -> Turn {
        Turn {
            priority: Reverse(pod.priority),
            creation: pod.creation.clone(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }
}

/// A pending pod that failed.
#[derive(Clone, Debug)]
struct Parked {
    failed_at: Instant,
    not_before: Instant,
    /// The cluster's generation when it was found unschedulable; None: due once the back-off has passed.
    seen: Option<u64>,
}

/// A pod the informers show.
#[derive(Clone, Debug)]
struct Entry {
    facts: Arc<PodFacts>,
    /// The node it counts against: where it is bound (unless finished) or assumed.
    counted: Option<String>,
    /// Failed tries since it was last bound.
    attempts: u32,
}

/// The result of one round.
#[derive(Debug, Default)]
pub struct Round {
    pub decisions: Vec<Decision>,
    /// When a parked pod becomes due, if one does.
    pub wake_at: Option<Instant>,
    /// Pods waiting for this scheduler (due or parked).
    pub pending: usize,
}

#[derive(Debug, Default)]
pub struct Queue {
    snapshot: Snapshot,
    pods: HashMap<String, Entry>,
    /// Pending pods due for a try, in line.
    active: BTreeSet<Turn>,
    parked: HashMap<String, Parked>,
    /// Chosen but not yet seen bound: uid → node.
    assumed: HashMap<String, String>,
    in_flight: HashSet<String>,
    /// Moves with every change that could make an unschedulable pod fit.
    generation: u64,
    /// Parked pods must be looked at again (the generation moved, a pod changed, a write ended).
    recheck: bool,
    /// When a parked pod is next due.
    wake_at: Option<Instant>,
    /// Where the next decision starts filtering nodes.
    next_start: usize,
}

/// Whether two versions of a node offer the same to pods (heartbeats change only the resourceVersion).
fn same_offer(a: &NodeFacts, b: &NodeFacts) -> bool {
    a.labels == b.labels
        && a.taints == b.taints
        && a.unschedulable == b.unschedulable
        && a.ready == b.ready
        && a.allocatable == b.allocatable
}

/// Whether two versions of a pod ask for the same.
fn same_ask(a: &PodFacts, b: &PodFacts) -> bool {
    a.requests == b.requests
        && a.node_selector == b.node_selector
        && a.required == b.required
        && a.preferred == b.preferred
        && a.tolerations == b.tolerations
        && a.host_ports == b.host_ports
        && a.priority == b.priority
}

fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    Duration::from_millis((limits::SCHEDULER_BACKOFF_MS_INITIAL << shift).min(limits::SCHEDULER_BACKOFF_MS_MAX))
}

impl Queue {
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn assumed(&self) -> usize {
        self.assumed.len()
    }

    /// A node appeared or changed.
    pub fn set_node(&mut self, facts: NodeFacts) {
        if self.snapshot.node(&facts.name).is_none_or(|known| !same_offer(&known.facts, &facts)) {
            self.moved();
        }
        self.snapshot.set_node(facts);
    }

    /// A node is gone (the pods counted against it are kept for when it comes back).
    pub fn remove_node(&mut self, name: &str) {
        self.snapshot.remove_node(name);
    }

    fn moved(&mut self) {
        self.generation += 1;
        self.recheck = true;
    }

    /// Counts the pod against `node` instead of where it counted before.
    fn recount(&mut self, uid: &str, facts: &PodFacts, before: Option<&str>, node: Option<&str>) {
        if let Some(before) = before {
            self.snapshot.remove(before, uid);
            if Some(before) != node {
                self.moved();
            }
        }
        if let Some(node) = node {
            self.snapshot.add(node, Placed::of(facts));
        }
    }

    /// A pod appeared or changed.
    pub fn set_pod(&mut self, facts: Arc<PodFacts>) {
        let uid = facts.uid.clone();
        let old = self.pods.remove(&uid);
        if let Some(old) = &old {
            self.active.remove(&Turn::of(&old.facts));
        }
        let counted = match &facts.node_name {
            Some(node) => {
                // Seen bound: its assumption (if any) is confirmed, and it waits no more.
                self.assumed.remove(&uid);
                self.parked.remove(&uid);
                (!facts.terminal).then(|| node.clone())
            }
            None => self.assumed.get(&uid).cloned(),
        };
        let before = old.as_ref().and_then(|e| e.counted.as_deref());
        self.recount(&uid, &facts, before, counted.as_deref());
        if !facts.wants_scheduling() {
            self.parked.remove(&uid);
        } else if !self.in_flight.contains(&uid) && !self.assumed.contains_key(&uid) {
            match self.parked.get_mut(&uid) {
                Some(parked) => {
                    if old.as_ref().is_some_and(|o| !same_ask(&o.facts, &facts)) {
                        parked.seen = None;
                        self.recheck = true;
                    }
                }
                None => {
                    self.active.insert(Turn::of(&facts));
                }
            }
        }
        let attempts = old.map_or(0, |e| e.attempts);
        self.pods.insert(uid, Entry { facts, counted, attempts });
    }

    /// A pod is gone.
    pub fn remove_pod(&mut self, uid: &str) {
        let Some(entry) = self.pods.remove(uid) else { return };
        self.active.remove(&Turn::of(&entry.facts));
        self.parked.remove(uid);
        self.assumed.remove(uid);
        self.recount(uid, &entry.facts, entry.counted.as_deref(), None);
    }

    fn park(&mut self, uid: &str, now: Instant, seen: Option<u64>) {
        let Some(entry) = self.pods.get_mut(uid) else { return };
        entry.attempts += 1;
        let not_before = now + backoff(entry.attempts);
        self.parked.insert(uid.to_string(), Parked { failed_at: now, not_before, seen });
        self.recheck = true;
    }

    /// Moves the parked pods that are due back in line, and notes when the next one is.
    fn unpark(&mut self, now: Instant) {
        self.recheck = false;
        self.wake_at = None;
        let retry_after = Duration::from_millis(limits::SCHEDULER_UNSCHEDULABLE_RETRY_MS);
        let mut due = Vec::new();
        for (uid, parked) in &self.parked {
            if self.in_flight.contains(uid) {
                continue;
            }
            let at = match parked.seen {
                Some(generation) if generation == self.generation => parked.failed_at + retry_after,
                _ => parked.not_before,
            };
            if at <= now {
                due.push(uid.clone());
            } else {
                self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
            }
        }
        for uid in due {
            self.parked.remove(&uid);
            if let Some(entry) = self.pods.get(&uid) {
                self.active.insert(Turn::of(&entry.facts));
            }
        }
    }

    /// One round: decides for pods in line until `slots` decisions are made.
    pub fn round(&mut self, now: Instant, slots: usize) -> Round {
        if self.recheck || self.wake_at.is_some_and(|at| at <= now) {
            self.unpark(now);
        }
        let mut decisions = Vec::new();
        let to_find = feasible_to_find(self.snapshot.nodes.len());
        while decisions.len() < slots {
            let Some(turn) = self.active.pop_first() else { break };
            let Some(entry) = self.pods.get(&turn.uid) else { continue };
            let pod = entry.facts.clone();
            self.in_flight.insert(pod.uid.clone());
            let (placement, next) = place_from(&self.snapshot, &pod, self.next_start, to_find);
            self.next_start = next;
            match placement {
                Placement::Node(node) => {
                    self.recount(&pod.uid, &pod, None, Some(&node));
                    if let Some(entry) = self.pods.get_mut(&pod.uid) {
                        entry.counted = Some(node.clone());
                    }
                    self.assumed.insert(pod.uid.clone(), node.clone());
                    decisions.push(Decision::Bind { pod, node });
                }
                Placement::Unschedulable(message) => {
                    self.park(&pod.uid, now, Some(self.generation));
                    decisions.push(Decision::Unschedulable { pod, message });
                }
            }
        }
        Round { decisions, wake_at: self.wake_at, pending: self.active.len() + self.parked.len() }
    }

    /// A binding ended.
    pub fn bound(&mut self, uid: &str, outcome: BindOutcome, now: Instant) {
        self.in_flight.remove(uid);
        match outcome {
            BindOutcome::Bound => {
                if let Some(entry) = self.pods.get_mut(uid) {
                    entry.attempts = 0;
                }
            }
            BindOutcome::Moot | BindOutcome::Failed => {
                // Not (or not known to be) bound: the assumption goes, and the pod, if it still waits, waits
                // out a back-off (a refusal the informers have not caught up with yet must not spin).
                let Some(node) = self.assumed.remove(uid) else { return };
                let Some(entry) = self.pods.get_mut(uid) else { return };
                entry.counted = None;
                let (facts, wants) = (entry.facts.clone(), entry.facts.wants_scheduling());
                self.recount(uid, &facts, Some(&node), None);
                if wants {
                    self.park(uid, now, None);
                }
            }
        }
    }

    /// The writes for an unschedulable pod (condition, Event) ended, however they ended: it waits out its
    /// back-off either way.
    pub fn reported(&mut self, uid: &str) {
        self.in_flight.remove(uid);
        self.recheck = true;
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

    /// A queue that has seen these nodes and pods.
    fn queue(nodes: &[NodeFacts], pods: &[&Arc<PodFacts>]) -> Queue {
        let mut q = Queue::default();
        for n in nodes {
            q.set_node(n.clone());
        }
        for p in pods {
            q.set_pod(Arc::clone(p));
        }
        q
    }

    #[test]
    fn assumed_pods_count_until_seen_bound_and_are_not_decided_twice() {
        let now = Instant::now();
        let (a, b) = (pod("a", "1"), pod("b", "1"));
        let mut q = queue(&[node("n1", "1")], &[&a, &b]);
        let r = q.round(now, 10);
        assert_eq!(r.decisions.len(), 2);
        assert!(matches!(&r.decisions[0], Decision::Bind { node, .. } if node == "n1"));
        assert!(
            matches!(&r.decisions[1], Decision::Unschedulable { message, .. } if message.contains("1 Insufficient cpu"))
        );
        // While a's binding is in flight, a is not decided again and still holds its cpu.
        q.reported("uid-b");
        q.set_pod(a.clone());
        assert!(q.round(now, 10).decisions.is_empty());
        q.bound("uid-a", BindOutcome::Bound, now);
        let r = q.round(now + Duration::from_secs(2), 10);
        assert!(r.decisions.is_empty(), "assumed until seen bound: {r:?}");
        assert_eq!(q.assumed(), 1);
        q.set_pod(bound(&a, "n1"));
        assert_eq!(q.assumed(), 0);
        // a is now bound, not assumed, which is the same placement: b stays put.
        let r = q.round(now + Duration::from_secs(3), 10);
        assert!(r.decisions.is_empty(), "{r:?}");
        assert_eq!(r.pending, 1);
    }

    #[test]
    fn a_failed_binding_forgets_the_assumption_and_backs_off() {
        let now = Instant::now();
        let a = pod("a", "1");
        let mut q = queue(&[node("n1", "2")], &[&a]);
        assert_eq!(q.round(now, 10).decisions.len(), 1);
        q.bound("uid-a", BindOutcome::Failed, now);
        assert_eq!(q.assumed(), 0);
        let r = q.round(now + Duration::from_millis(500), 10);
        assert!(r.decisions.is_empty());
        assert_eq!(r.wake_at, Some(now + Duration::from_millis(limits::SCHEDULER_BACKOFF_MS_INITIAL)));
        assert_eq!(q.round(now + Duration::from_secs(1), 10).decisions.len(), 1);
    }

    #[test]
    fn unschedulable_pods_retry_when_the_cluster_changes_after_their_back_off() {
        let now = Instant::now();
        let a = pod("a", "4");
        let mut q = queue(&[node("n1", "2")], &[&a]);
        assert!(matches!(q.round(now, 10).decisions[0], Decision::Unschedulable { .. }));
        q.reported("uid-a");
        // Nothing changed (a heartbeat changes only the resourceVersion): not retried, even after the back-off.
        q.set_node(NodeFacts { resource_version: "2".into(), ..node("n1", "2") });
        assert!(q.round(now + Duration::from_secs(5), 10).decisions.is_empty());
        // A node appears: retried once the back-off has passed.
        q.set_node(node("n2", "8"));
        assert!(q.round(now + Duration::from_millis(500), 10).decisions.is_empty());
        let r = q.round(now + Duration::from_secs(6), 10);
        assert!(matches!(&r.decisions[0], Decision::Bind { node, .. } if node == "n2"));
        // And long after, a retry comes even without a change.
        let mut q = queue(&[node("n1", "2")], &[&a]);
        q.round(now, 10);
        q.reported("uid-a");
        let later = now + Duration::from_millis(limits::SCHEDULER_UNSCHEDULABLE_RETRY_MS);
        assert!(q.round(later - Duration::from_millis(1), 10).decisions.is_empty());
        assert_eq!(q.round(later, 10).decisions.len(), 1);
    }

    #[test]
    fn a_pod_that_frees_its_node_or_asks_for_less_is_retried() {
        let now = Instant::now();
        let (big, small) = (pod("big", "2"), pod("small", "1"));
        let mut q = queue(&[node("n1", "2")], &[&bound(&small, "n1"), &big]);
        assert!(matches!(q.round(now, 10).decisions[0], Decision::Unschedulable { .. }));
        q.reported("uid-big");
        assert!(q.round(now + Duration::from_secs(2), 10).decisions.is_empty());
        // The bound pod finishes: it holds nothing any more.
        let done = Arc::new(PodFacts { terminal: true, ..(*bound(&small, "n1")).clone() });
        q.set_pod(done);
        let r = q.round(now + Duration::from_secs(2), 10);
        assert!(matches!(&r.decisions[0], Decision::Bind { node, .. } if node == "n1"), "{r:?}");

        let mut q = queue(&[node("n1", "1")], &[&big]);
        q.round(now, 10);
        q.reported("uid-big");
        assert!(q.round(now + Duration::from_secs(2), 10).decisions.is_empty());
        q.set_pod(pod("big", "1"));
        assert_eq!(q.round(now + Duration::from_secs(2), 10).decisions.len(), 1, "the pod itself changed");
    }

    #[test]
    fn slots_bound_a_round_and_priority_goes_first() {
        let now = Instant::now();
        let low = pod("low", "0");
        let high = Arc::new(PodFacts { priority: 10, ..(*pod("high", "0")).clone() });
        let mut q = queue(&[node("n1", "2")], &[&low, &high]);
        let r = q.round(now, 1);
        assert_eq!(r.decisions.len(), 1);
        assert!(matches!(&r.decisions[0], Decision::Bind { pod, .. } if pod.name == "high"));
        assert_eq!(q.in_flight(), 1);
        assert_eq!(r.pending, 1);
    }

    #[test]
    fn pods_that_are_gone_release_their_assumption() {
        let now = Instant::now();
        let a = pod("a", "1");
        let mut q = queue(&[node("n1", "1")], &[&a]);
        q.round(now, 10);
        q.bound("uid-a", BindOutcome::Bound, now);
        q.remove_pod("uid-a");
        assert_eq!(q.assumed(), 0);
        q.set_pod(pod("b", "1"));
        assert!(matches!(&q.round(now, 10).decisions[0], Decision::Bind { .. }));
    }

    #[test]
    fn pods_bound_to_a_node_not_yet_seen_count_once_it_appears() {
        let now = Instant::now();
        let (a, b) = (pod("a", "1"), pod("b", "1"));
        let mut q = queue(&[], &[&bound(&a, "n1"), &b]);
        q.set_node(node("n1", "1"));
        let r = q.round(now, 10);
        assert!(matches!(&r.decisions[0], Decision::Unschedulable { .. }), "{r:?}");
    }
}
