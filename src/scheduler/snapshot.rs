//! The cluster as one scheduling decision sees it: every node with the pods that count against it (bound
//! ones as the informers show them, and assumed ones: chosen, binding in flight or not yet seen bound).
//!
//! The scheduler keeps one snapshot for its whole term and changes it as the informers report changes: a
//! node's facts are replaced, a pod is added to or removed from the node it counts against. Pods counted
//! against a node the snapshot does not (yet) hold are kept aside and join the node when it appears.
//!
//! Invariant: a pod counts against a node from the moment it is assumed; a node's sums are always those of
//! the pods it holds, so what `filter` checks against is allocatable minus everything placed there.
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
        self.count(&placed);
        self.pods.push(placed);
    }

    fn count(&mut self, placed: &Placed) {
        for (k, v) in &placed.requests {
            let e = self.requested.entry(k.clone()).or_insert(Quantity::ZERO);
            *e = e.plus(*v);
        }
        self.non_zero_cpu = self.non_zero_cpu.plus(placed.non_zero_cpu);
        self.non_zero_memory = self.non_zero_memory.plus(placed.non_zero_memory);
        if let Some(owner) = &placed.owner {
            *self.owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }

    /// Takes a pod off the node (its sums are recounted from the pods that stay); false if it was not there.
    pub fn remove(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        self.pods.swap_remove(i);
        let pods = std::mem::take(&mut self.pods);
        *self = NodeView::new(self.facts.clone());
        for p in &pods {
            self.count(p);
        }
        self.pods = pods;
        true
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

/// Every node, in name order, and the pods counted against nodes it does not hold.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeView>,
    index: HashMap<String, usize>,
    /// Pods counted against a node the snapshot does not hold, by node name.
    elsewhere: HashMap<String, Vec<Placed>>,
}

impl Snapshot {
    pub fn new(nodes: Vec<NodeFacts>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for n in nodes {
            snapshot.set_node(n);
        }
        snapshot
    }

    /// Adds a node, or replaces what is known of it (the pods counted against it stay).
    pub fn set_node(&mut self, facts: NodeFacts) {
        if let Some(&i) = self.index.get(&facts.name) {
            self.nodes[i].facts = facts;
            return;
        }
        let mut view = NodeView::new(facts);
        for placed in self.elsewhere.remove(&view.facts.name).unwrap_or_default() {
            view.add(placed);
        }
        let at = self.nodes.partition_point(|n| n.facts.name < view.facts.name);
        self.nodes.insert(at, view);
        self.reindex();
    }

    /// Forgets a node; the pods counted against it are kept aside in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else { return };
        let view = self.nodes.remove(i);
        if !view.pods.is_empty() {
            self.elsewhere.insert(name.to_string(), view.pods);
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = self.nodes.iter().enumerate().map(|(i, n)| (n.facts.name.clone(), i)).collect();
    }

    /// Counts a pod against `node`; true if the snapshot holds that node.
    pub fn add(&mut self, node: &str, placed: Placed) -> bool {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].add(placed);
                true
            }
            None => {
                self.elsewhere.entry(node.to_string()).or_default().push(placed);
                false
            }
        }
    }

    /// Stops counting a pod against `node`.
    pub fn remove(&mut self, node: &str, uid: &str) {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].remove(uid);
            }
            None => {
                if let Some(pods) = self.elsewhere.get_mut(node) {
                    pods.retain(|p| p.uid != uid);
                    if pods.is_empty() {
                        self.elsewhere.remove(node);
                    }
                }
            }
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::quantity::Quantity;
    use crate::scheduler::model::Ready;

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            resource_version: "1".into(),
            labels: Default::default(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::True,
            allocatable: [("cpu".to_string(), Quantity::parse("4").unwrap())].into(),
        }
    }

    fn placed(uid: &str, cpu: &str, owner: &str) -> Placed {
        Placed {
            uid: uid.into(),
            priority: 0,
            requests: [("cpu".to_string(), Quantity::parse(cpu).unwrap())].into(),
            non_zero_cpu: Quantity::parse(cpu).unwrap(),
            non_zero_memory: Quantity::ZERO,
            host_ports: vec![],
            owner: Some(owner.into()),
        }
    }

    #[test]
    fn nodes_stay_in_name_order_and_keep_their_pods_across_changes() {
        let mut s = Snapshot::new(vec![node("c"), node("a")]);
        s.add("b", placed("p1", "1", "o"));
        s.set_node(node("b"));
        let names: Vec<&str> = s.nodes.iter().map(|n| n.facts.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(s.node("b").unwrap().pods.len(), 1, "a pod counted before its node appeared");
        s.add("b", placed("p2", "500m", "o"));
        s.remove("b", "p1");
        let b = s.node("b").unwrap();
        assert_eq!(b.requested["cpu"], Quantity::parse("500m").unwrap());
        assert_eq!(b.owners["o"], 1);
        s.remove_node("b");
        assert!(s.node("b").is_none());
        assert_eq!(s.node("c").map(|n| n.facts.name.as_str()), Some("c"));
        s.set_node(node("b"));
        assert_eq!(s.node("b").unwrap().non_zero_cpu, Quantity::parse("500m").unwrap());
        s.remove("b", "p2");
        assert!(s.node("b").unwrap().requested.values().all(|q| *q == Quantity::ZERO));
        assert!(s.node("b").unwrap().owners.is_empty());
    }
}
