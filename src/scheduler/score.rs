//! How much a pod would like each node that passed the filters, as upstream's score plugins weigh it:
//! TaintToleration (weight 3: fewer untolerated PreferNoSchedule taints), NodeAffinity (2: preferred terms'
//! weights), spreading (2: fewer pods of the same controller owner already there, standing in for the default
//! PodTopologySpread constraint on `kubernetes.io/hostname`), NodeResourcesFit least allocated (1) and
//! NodeResourcesBalancedAllocation (1). Each plugin's scores are normalized to 0..=100 across the nodes, as
//! upstream normalizes them, then weighed and summed.
//!
//! Pure. Invariant: `best` is deterministic: the highest total wins, ties go to the first node by name.

use super::filter::term_matches;
use super::model::{PodFacts, Toleration};
use super::snapshot::NodeView;
use crate::apis::quantity::Quantity;

pub const MAX_NODE_SCORE: i64 = 100;

const WEIGHT_TAINTS: i64 = 3;
const WEIGHT_AFFINITY: i64 = 2;
const WEIGHT_SPREAD: i64 = 2;
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;

/// The fraction of `capacity` that `used` takes, clamped to 0..=1 (none when the node has none).
fn fraction(used: Quantity, capacity: Quantity) -> f64 {
    used.ratio(capacity).map_or(1.0, |f| f.clamp(0.0, 1.0))
}

fn capacity(node: &NodeView, name: &str) -> Quantity {
    node.facts.allocatable.get(name).copied().unwrap_or(Quantity::ZERO)
}

/// LeastAllocated: free share of CPU and memory after placing the pod (counting upstream's defaults for
/// containers that request nothing), averaged.
fn least_allocated(node: &NodeView, pod: &PodFacts) -> i64 {
    let free = |used: Quantity, cap: Quantity| {
        if cap <= Quantity::ZERO {
            return 0;
        }
        ((1.0 - fraction(used, cap)) * MAX_NODE_SCORE as f64).floor() as i64
    };
    let cpu = free(node.non_zero_cpu.plus(pod.non_zero_cpu), capacity(node, "cpu"));
    let memory = free(node.non_zero_memory.plus(pod.non_zero_memory), capacity(node, "memory"));
    (cpu + memory) / 2
}

/// BalancedAllocation: how even the CPU and memory shares would be after placing the pod.
fn balanced(node: &NodeView, pod: &PodFacts) -> i64 {
    let request = |name: &str| pod.requests.get(name).copied().unwrap_or(Quantity::ZERO);
    let used = |name: &str| node.requested.get(name).copied().unwrap_or(Quantity::ZERO);
    let cpu = fraction(used("cpu").plus(request("cpu")), capacity(node, "cpu"));
    let memory = fraction(used("memory").plus(request("memory")), capacity(node, "memory"));
    let deviation = (cpu - memory).abs() / 2.0;
    ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
}

fn preferred_affinity(node: &NodeView, pod: &PodFacts) -> i64 {
    pod.preferred
        .iter()
        .filter(|p| p.weight != 0 && term_matches(&p.term, &node.facts.name, &node.facts.labels))
        .map(|p| p.weight)
        .sum()
}

fn untolerated_soft_taints(node: &NodeView, pod: &PodFacts) -> i64 {
    let soft = |t: &&Toleration| t.effect.is_empty() || t.effect == "PreferNoSchedule";
    node.facts
        .effective_taints()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !pod.tolerations.iter().filter(soft).any(|tol| tol.tolerates(t)))
        .count() as i64
}

fn same_owner(node: &NodeView, pod: &PodFacts) -> i64 {
    pod.owner.as_ref().and_then(|o| node.owners.get(o)).map_or(0, |n| i64::from(*n))
}

/// Upstream's default normalization: scaled so the largest raw score becomes 100 (reversed: the smallest);
/// all 100 when reversed and every raw score is 0, all 0 when not reversed.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| match (max, reverse) {
            (0, true) => MAX_NODE_SCORE,
            (0, false) => 0,
            (max, false) => s * MAX_NODE_SCORE / max,
            (max, true) => MAX_NODE_SCORE - s * MAX_NODE_SCORE / max,
        })
        .collect()
}

/// The weighed total of every feasible node, in the order given.
pub fn scores(feasible: &[&NodeView], pod: &PodFacts) -> Vec<i64> {
    let per = |f: &dyn Fn(&NodeView, &PodFacts) -> i64| feasible.iter().map(|n| f(n, pod)).collect::<Vec<_>>();
    let taints = normalize(&per(&untolerated_soft_taints), true);
    let affinity = normalize(&per(&preferred_affinity), false);
    let spread = normalize(&per(&same_owner), true);
    let least = per(&least_allocated);
    let balance = per(&balanced);
    (0..feasible.len())
        .map(|i| {
            taints[i] * WEIGHT_TAINTS
                + affinity[i] * WEIGHT_AFFINITY
                + spread[i] * WEIGHT_SPREAD
                + least[i] * WEIGHT_LEAST_ALLOCATED
                + balance[i] * WEIGHT_BALANCED
        })
        .collect()
}

/// The index (into `feasible`) of the node to bind to: the highest total, ties to the first by name.
pub fn best(feasible: &[&NodeView], pod: &PodFacts) -> Option<usize> {
    let totals = scores(feasible, pod);
    let mut best: Option<usize> = None;
    for i in 0..feasible.len() {
        best = match best {
            None => Some(i),
            Some(b) if totals[i] > totals[b] => Some(i),
            Some(b) if totals[i] == totals[b] && feasible[i].facts.name < feasible[b].facts.name => Some(i),
            keep => keep,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::{NodeFacts, Preferred, Ready, Requirement, Resources, Taint, Term};
    use crate::scheduler::snapshot::Placed;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn node(name: &str, cpu: &str) -> NodeView {
        let allocatable: Resources =
            [("cpu", cpu), ("memory", "8Gi"), ("pods", "110")].iter().map(|(k, v)| (k.to_string(), q(v))).collect();
        NodeView::new(NodeFacts {
            name: name.into(),
            resource_version: "1".into(),
            labels: [("zone".to_string(), name.to_string())].into(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::True,
            allocatable,
        })
    }

    fn pod() -> PodFacts {
        PodFacts { uid: "p".into(), non_zero_cpu: q("100m"), non_zero_memory: q("200Mi"), ..PodFacts::default() }
    }

    fn choose(nodes: &[NodeView], pod: &PodFacts) -> String {
        let refs: Vec<&NodeView> = nodes.iter().collect();
        nodes[best(&refs, pod).unwrap()].facts.name.clone()
    }

    #[test]
    fn the_least_allocated_node_wins_and_ties_go_by_name() {
        let nodes = vec![node("b", "4"), node("a", "4")];
        assert_eq!(choose(&nodes, &pod()), "a");
        let nodes = vec![node("b", "64"), node("a", "1")];
        assert_eq!(choose(&nodes, &pod()), "b");
    }

    #[test]
    fn pods_of_one_owner_spread() {
        let mut p = pod();
        p.owner = Some("rs".into());
        let mut a = node("a", "4");
        let b = node("b", "4");
        a.add(Placed::of(&p));
        assert_eq!(choose(&[a.clone(), b.clone()], &p), "b");
        // Pods of other owners do not repel it.
        let mut a2 = node("a", "4");
        a2.add(Placed::of(&PodFacts { owner: Some("other".into()), ..pod() }));
        let mut b2 = node("b", "4");
        b2.add(Placed::of(&PodFacts { owner: Some("third".into()), ..pod() }));
        assert_eq!(choose(&[a2, b2], &p), "a");
    }

    #[test]
    fn preferred_affinity_and_soft_taints_weigh() {
        let mut p = pod();
        p.preferred.push(Preferred {
            weight: 10,
            term: Term {
                expressions: vec![Requirement { key: "zone".into(), operator: "In".into(), values: vec!["b".into()] }],
                fields: vec![],
            },
        });
        assert_eq!(choose(&[node("a", "4"), node("b", "4")], &p), "b");
        let mut b = node("b", "4");
        b.facts.taints.push(Taint { key: "x".into(), value: String::new(), effect: "PreferNoSchedule".into() });
        // TaintToleration (3 x 100) outweighs NodeAffinity (2 x 100).
        assert_eq!(choose(&[node("a", "4"), b], &p), "a");
    }
}
