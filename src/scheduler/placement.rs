//! One scheduling decision: filter every node, score the feasible ones, pick the best; or, when none fits,
//! the message kube-scheduler writes into the `FailedScheduling` Event and the PodScheduled condition:
//! `0/N nodes are available: <count> <reason>, ... preemption: 0/N nodes are available: ...`, the reasons
//! counted over nodes and sorted as strings, as upstream sorts them.
//!
//! Preemption is not carried out; its part of the message is what upstream's dry run reports when it
//! finds no victims: "Preemption is not helpful for scheduling" on nodes that removing pods cannot fix, the
//! filters' reasons on nodes that would still refuse without the lower-priority pods, and "No preemption
//! victims found for incoming pod" otherwise.
//!
//! Large clusters are sampled as upstream samples them: a decision looks for `feasible_to_find` feasible
//! nodes, starting where the previous decision stopped, and picks the best of those.
//!
//! Pure. Invariant: a node returned passes `filter::filter` for the pod against the same snapshot.

use std::collections::BTreeMap;

use super::filter::{filter, Code, Refusal};
use super::model::PodFacts;
use super::score::best;
use super::snapshot::{NodeView, Snapshot};

pub const NO_NODES: &str = "no nodes available to schedule pods";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Bind to this node.
    Node(String),
    /// No node fits; the message says why.
    Unschedulable(String),
}

/// `0/N nodes are available: 1 a, 2 b.` from the reasons counted over nodes.
fn summary(total: usize, refusals: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reasons in refusals {
        for r in reasons {
            *counts.entry(r.as_str()).or_insert(0) += 1;
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// What upstream's preemption dry run says of each node that refused.
fn preemption(pod: &PodFacts, refused: &[(&NodeView, Refusal)], total: usize) -> String {
    if pod.preemption_never {
        return "preemption: not eligible due to preemptionPolicy=Never.".into();
    }
    let per_node: Vec<Vec<String>> = refused
        .iter()
        .map(|(node, refusal)| {
            if refusal.code == Code::Unresolvable {
                return vec![NOT_HELPFUL.to_string()];
            }
            if !node.pods.iter().any(|p| p.priority < pod.priority) {
                return vec![NO_VICTIMS.to_string()];
            }
            match filter(&node.without(|p| p.priority < pod.priority), pod) {
                Err(still) => still.reasons,
                Ok(()) => vec![NO_VICTIMS.to_string()],
            }
        })
        .collect();
    format!("preemption: {}", summary(total, &per_node))
}

/// Filters and scores every node of the snapshot for `pod`.
pub fn place(snapshot: &Snapshot, pod: &PodFacts) -> Placement {
    place_from(snapshot, pod, 0, usize::MAX).0
}

/// How many feasible nodes a decision looks for before it scores them: upstream's adaptive
/// percentageOfNodesToScore (50% less one point per 125 nodes, at least 5%, and never fewer than 100 nodes).
pub fn feasible_to_find(nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if nodes < MIN_FEASIBLE {
        return nodes;
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percent / 100).max(MIN_FEASIBLE)
}

/// Filters the snapshot's nodes for `pod` starting at node `start` (wrapping around) until `to_find` nodes
/// are feasible, and scores those, as upstream samples large clusters; also returns where the next decision
/// starts, so that successive decisions look at every node in turn. When fewer than `to_find` nodes are
/// feasible every node has been filtered, so the message of an unschedulable pod counts them all.
pub fn place_from(snapshot: &Snapshot, pod: &PodFacts, start: usize, to_find: usize) -> (Placement, usize) {
    let total = snapshot.nodes.len();
    if total == 0 {
        return (Placement::Unschedulable(NO_NODES.into()), 0);
    }
    let start = start % total;
    let mut feasible = Vec::new();
    let mut refused = Vec::new();
    let mut looked = 0;
    for node in snapshot.nodes[start..].iter().chain(&snapshot.nodes[..start]) {
        looked += 1;
        match filter(node, pod) {
            Ok(()) => feasible.push(node),
            Err(refusal) => refused.push((node, refusal)),
        }
        if feasible.len() >= to_find {
            break;
        }
    }
    let next = (start + looked) % total;
    // Scored in name order, so that ties go to the first node by name whatever the start.
    feasible.sort_by(|a, b| a.facts.name.cmp(&b.facts.name));
    if let Some(i) = best(&feasible, pod) {
        return (Placement::Node(feasible[i].facts.name.clone()), next);
    }
    let reasons: Vec<Vec<String>> = refused.iter().map(|(_, r)| r.reasons.clone()).collect();
    let message = format!("{} {}", summary(total, &reasons), preemption(pod, &refused, total));
    (Placement::Unschedulable(message), next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::quantity::Quantity;
    use crate::scheduler::model::{NodeFacts, Ready, Taint};
    use crate::scheduler::snapshot::Placed;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn node(name: &str, cpu: &str, pods: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            resource_version: "1".into(),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::True,
            allocatable: [("cpu", cpu), ("memory", "4Gi"), ("pods", pods)]
                .iter()
                .map(|(k, v)| (k.to_string(), q(v)))
                .collect(),
        }
    }

    fn pod(uid: &str, cpu: &str) -> PodFacts {
        PodFacts {
            uid: uid.into(),
            requests: [("cpu".to_string(), q(cpu))].into(),
            non_zero_cpu: q(cpu),
            non_zero_memory: q("200Mi"),
            ..PodFacts::default()
        }
    }

    #[test]
    fn the_message_counts_reasons_over_nodes_sorted_as_upstream_does() {
        let mut a = node("a", "1", "110");
        a.labels.insert("disk".into(), "ssd".into());
        let snapshot = Snapshot::new(vec![a, node("b", "8", "110"), node("c", "8", "110")]);
        let mut p = pod("p", "2");
        p.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(
            place(&snapshot, &p),
            Placement::Unschedulable(
                "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
                 preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                    .into()
            )
        );
    }

    #[test]
    fn nodes_full_of_pods_of_equal_priority_have_no_victims() {
        let mut snapshot = Snapshot::new(vec![node("a", "2", "110"), node("b", "2", "110")]);
        snapshot.add("a", Placed::of(&pod("x", "2")));
        snapshot.add("b", Placed::of(&pod("y", "1500m")));
        assert_eq!(
            place(&snapshot, &pod("p", "1")),
            Placement::Unschedulable(
                "0/2 nodes are available: 2 Insufficient cpu. \
                 preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
                    .into()
            )
        );
        let mut never = pod("p", "1");
        never.preemption_never = true;
        let Placement::Unschedulable(m) = place(&snapshot, &never) else { panic!() };
        assert!(m.ends_with("2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."), "{m}");
    }

    #[test]
    fn counts_sort_as_strings_and_unreachable_nodes_name_their_taint() {
        let mut nodes: Vec<NodeFacts> = (0..10).map(|i| node(&format!("n{i}"), "8", "110")).collect();
        for n in nodes.iter_mut().take(2) {
            n.ready = Ready::Unknown;
        }
        for n in nodes.iter_mut().skip(2) {
            n.taints.push(Taint { key: "dedicated".into(), value: "db".into(), effect: "NoExecute".into() });
        }
        let Placement::Unschedulable(m) = place(&Snapshot::new(nodes), &pod("p", "1")) else { panic!() };
        assert_eq!(
            m,
            "0/10 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, \
             8 node(s) had untolerated taint {dedicated: db}. \
             preemption: 0/10 nodes are available: 10 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn no_nodes_at_all() {
        assert_eq!(place(&Snapshot::default(), &pod("p", "1")), Placement::Unschedulable(NO_NODES.into()));
    }

    #[test]
    fn large_clusters_are_sampled_in_turn_and_small_ones_whole() {
        assert_eq!(feasible_to_find(3), 3);
        assert_eq!(feasible_to_find(150), 100);
        assert_eq!(feasible_to_find(1_000), 420);
        assert_eq!(feasible_to_find(5_000), 500);
        assert_eq!(feasible_to_find(100_000), 5_000);
        let snapshot = Snapshot::new((0..10).map(|i| node(&format!("n{i}"), "8", "110")).collect());
        let (first, next) = place_from(&snapshot, &pod("p", "1"), 0, 3);
        assert_eq!((first, next), (Placement::Node("n0".into()), 3));
        let (second, next) = place_from(&snapshot, &pod("q", "1"), next, 3);
        assert_eq!((second, next), (Placement::Node("n3".into()), 6));
        let (_, next) = place_from(&snapshot, &pod("r", "1"), 9, 3);
        assert_eq!(next, 2, "wraps around");
        // Nothing fits: every node was filtered, and the message counts them all.
        let (none, _) = place_from(&snapshot, &pod("big", "9"), 4, 3);
        assert!(
            matches!(none, Placement::Unschedulable(m) if m.starts_with("0/10 nodes are available: 10 Insufficient cpu."))
        );
    }

    fn arb_node(i: usize) -> impl Strategy<Value = NodeFacts> {
        (1u32..8, 1u32..6, any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(cpu, pods, cordon, ssd, ready)| {
            let mut n = node(&format!("node-{i:02}"), &cpu.to_string(), &pods.to_string());
            n.unschedulable = cordon && i.is_multiple_of(3);
            if ssd {
                n.labels.insert("disk".into(), "ssd".into());
            }
            n.ready = [Ready::True, Ready::True, Ready::Unknown][usize::from(ready)];
            n
        })
    }

    fn arb_pod(i: usize) -> impl Strategy<Value = PodFacts> {
        (0u32..2500, any::<bool>(), 0u8..4).prop_map(move |(milli, wants_ssd, owner)| {
            let mut p = pod(&format!("pod-{i}"), &format!("{milli}m"));
            if wants_ssd {
                p.node_selector.insert("disk".into(), "ssd".into());
            }
            p.owner = Some(format!("owner-{owner}"));
            p
        })
    }

    fn arb_cluster() -> impl Strategy<Value = (Vec<NodeFacts>, Vec<PodFacts>)> {
        (1usize..8, 1usize..40)
            .prop_flat_map(|(n, p)| ((0..n).map(arb_node).collect::<Vec<_>>(), (0..p).map(arb_pod).collect::<Vec<_>>()))
    }

    proptest! {
        /// Scheduling pods one after another, each assumed on its node at once: every chosen node passes the
        /// filter, and no node ever holds more than its allocatable (cpu and pod count).
        #[test]
        fn chosen_nodes_pass_the_filter_and_assumed_pods_never_overcommit((nodes, pods) in arb_cluster()) {
            let mut snapshot = Snapshot::new(nodes);
            for p in &pods {
                match place(&snapshot, p) {
                    Placement::Node(name) => {
                        let view = snapshot.node(&name).expect("a node of the snapshot");
                        prop_assert!(filter(view, p).is_ok());
                        prop_assert!(view.facts.ready == Ready::True && !view.facts.unschedulable);
                        snapshot.add(&name, Placed::of(p));
                    }
                    Placement::Unschedulable(message) => {
                        prop_assert!(snapshot.nodes.iter().all(|n| filter(n, p).is_err()));
                        let prefix = format!("0/{} nodes are available: ", snapshot.nodes.len());
                        prop_assert!(message.starts_with(&prefix), "{}", message);
                    }
                }
            }
            for n in &snapshot.nodes {
                let cpu = n.requested.get("cpu").copied().unwrap_or(Quantity::ZERO);
                prop_assert!(cpu <= n.facts.allocatable["cpu"]);
                prop_assert!(Quantity::units(n.pods.len() as i64) <= n.facts.allocatable["pods"]);
            }
        }

        /// The decision depends on the nodes, not on the order they were listed in.
        #[test]
        fn decisions_do_not_depend_on_node_order((nodes, pods) in arb_cluster()) {
            let mut reversed = nodes.clone();
            reversed.reverse();
            let (mut a, mut b) = (Snapshot::new(nodes), Snapshot::new(reversed));
            for p in &pods {
                let (x, y) = (place(&a, p), place(&b, p));
                prop_assert_eq!(&x, &y);
                if let Placement::Node(name) = x {
                    a.add(&name, Placed::of(p));
                    b.add(&name, Placed::of(p));
                }
            }
        }

        /// Every node that refused is counted once per reason: the counts of the first part add up to at
        /// least the number of nodes.
        #[test]
        fn every_refusing_node_is_counted((nodes, pods) in arb_cluster()) {
            let total = nodes.len();
            let mut snapshot = Snapshot::new(nodes);
            for p in &pods {
                match place(&snapshot, p) {
                    Placement::Node(name) => { snapshot.add(&name, Placed::of(p)); }
                    Placement::Unschedulable(message) => {
                        let reasons = message.split(". preemption: ").next().unwrap_or_default();
                        let list = reasons.split_once(": ").map(|(_, l)| l).unwrap_or_default();
                        let counted: usize = list
                            .split(", ")
                            .filter_map(|part| part.split_once(' ').and_then(|(n, _)| n.parse::<usize>().ok()))
                            .sum();
                        prop_assert!(counted >= total, "{}", message);
                    }
                }
            }
        }
    }
}
