//! The cluster as one scheduling decision sees it: every node with the pods that count against it (bound
//! ones as the informers show them, and assumed ones: chosen, binding in flight or not yet seen bound).
//!
//! Invariant: a pod counts against a node from the moment it is assumed; `add` is the only way usage grows,
//! so what `filter` checks against is always allocatable minus everything placed there.

use std::collections::HashMap;

use super::model::{HostPort, NodeFacts, PodFacts, Resources};
use crate::apis::quantity::Quantity;

/// What one placed pod holds on its node.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub uid: String,
    pub priority: i32,
    pub requests: Resources,
    pub non_zero_cpu: Quantity,
    pub non_zero_memory: Quantity,
    pub host_ports: Vec<HostPort>,
    pub owner: Option<String>,
}

impl Placed {
    pub fn of(pod: &PodFacts) -> Placed {
        Placed {
            uid: pod.uid.clone(),
            priority: pod.priority,
            requests: pod.requests.clone(),
            non_zero_cpu: pod.non_zero_cpu,
            non_zero_memory: pod.non_zero_memory,
            host_ports: pod.host_ports.clone(),
            owner: pod.owner.clone(),
        }
    }
}

/// A node and what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub facts: NodeFacts,
    pub pods: Vec<Placed>,
    /// The placed pods' requests summed.
    pub requested: Resources,
    pub non_zero_cpu: Quantity,
    pub non_zero_memory: Quantity,
    /// Placed pods by controller owner uid.
    pub owners: HashMap<String, u32>,
}

impl NodeView {
    pub fn new(facts: NodeFacts) -> NodeView {
        NodeView {
            facts,
            pods: Vec::new(),
            requested: Resources::new(),
            non_zero_cpu: Quantity::ZERO,
            non_zero_memory: Quantity::ZERO,
            owners: HashMap::new(),
        }
    }

    pub fn add(&mut self, placed: Placed) {
        for (k, v) in &placed.requests {
            let e = self.requested.entry(k.clone()).or_insert(Quantity::ZERO);
            *e = e.plus(*v);
        }
        self.non_zero_cpu = self.non_zero_cpu.plus(placed.non_zero_cpu);
        self.non_zero_memory = self.non_zero_memory.plus(placed.non_zero_memory);
        if let Some(owner) = &placed.owner {
            *self.owners.entry(owner.clone()).or_insert(0) += 1;
        }
        self.pods.push(placed);
    }

    /// The same node without the pods `remove` selects (what preemption would evict).
    pub fn without(&self, remove: impl Fn(&Placed) -> bool) -> NodeView {
        let mut view = NodeView::new(self.facts.clone());
        for p in self.pods.iter().filter(|p| !remove(p)) {
            view.add(p.clone());
        }
        view
    }

    pub fn host_ports(&self) -> impl Iterator<Item = &HostPort> {
        self.pods.iter().flat_map(|p| p.host_ports.iter())
    }
}

/// Every node, in name order.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeView>,
    index: HashMap<String, usize>,
}

impl Snapshot {
    pub fn new(mut nodes: Vec<NodeFacts>) -> Snapshot {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Snapshot { nodes: nodes.into_iter().map(NodeView::new).collect(), index }
    }

    /// Counts a pod against `node`; a node the snapshot does not hold is ignored (its pods hold nothing the
    /// scheduler could use).
    pub fn add(&mut self, node: &str, placed: Placed) -> bool {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].add(placed);
                true
            }
            None => false,
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
}
