//! The plain facts the scheduler decides from: what a pod asks for (requests as upstream sums them, node
//! selector, node affinity, tolerations, host ports, controller owner, priority) and what a node offers
//! (allocatable, labels, taints, cordon, Ready condition), taken out of the API's objects.
//!
//! Pure: no I/O, no clock. Quantities stay exact (`apis::quantity`); a quantity that does not parse counts as
//! absent, as the API server would have refused it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, NodeSelectorTerm, Pod, PodSpec};

use crate::apis::quantity::Quantity;

/// Resource name to exact amount (`cpu`, `memory`, `pods`, `ephemeral-storage`, extended resources).
pub type Resources = BTreeMap<String, Quantity>;

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// The taint the node lifecycle controller puts on a node whose Ready condition is False (or not yet known).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint a cordoned node is treated as having.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What upstream counts for a container that requests no CPU, when it scores (100m), in nano-cores.
const NON_ZERO_CPU: &str = "100m";
/// ... and no memory (200 MiB).
const NON_ZERO_MEMORY: &str = "200Mi";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Toleration {
    pub key: String,
    /// `Exists` or `Equal` (the default).
    pub operator: String,
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
}

impl Toleration {
    /// Upstream's `ToleratesTaint` (tolerationSeconds does not matter for scheduling).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt, Lt.
    pub operator: String,
    pub values: Vec<String>,
}

/// One `nodeSelectorTerm`: its expressions and fields all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Term {
    pub expressions: Vec<Requirement>,
    /// Only `metadata.name` is a field upstream selects nodes by.
    pub fields: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Preferred {
    pub weight: i64,
    pub term: Term,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `0.0.0.0` when the pod names no host IP.
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict on one node when protocol and port are equal and the addresses overlap
    /// (`0.0.0.0` overlaps every address).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// What the scheduler needs to know of a pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub creation: String,
    pub scheduler_name: String,
    /// `spec.nodeName`, when bound.
    pub node_name: Option<String>,
    pub deleting: bool,
    /// Succeeded or Failed: holds nothing on a node.
    pub terminal: bool,
    pub gated: bool,
    /// Containers summed, with restartable init containers, against the largest init container; overhead
    /// added.
    pub requests: Resources,
    /// CPU and memory as scoring counts them: containers that request none count upstream's defaults.
    pub non_zero_cpu: Quantity,
    pub non_zero_memory: Quantity,
    pub node_selector: BTreeMap<String, String>,
    /// None: no required node affinity. Terms are ORed.
    pub required: Option<Vec<Term>>,
    pub preferred: Vec<Preferred>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    /// The uid of the controller owner (the owner reference with `controller: true`).
    pub owner: Option<String>,
    pub priority: i32,
    pub preemption_never: bool,
}

impl PodFacts {
    /// Whether this scheduler places the pod: unbound, not being deleted, not finished, not gated, and
    /// addressed to the default scheduler.
    pub fn wants_scheduling(&self) -> bool {
        self.node_name.is_none()
            && !self.deleting
            && !self.terminal
            && !self.gated
            && (self.scheduler_name.is_empty() || self.scheduler_name == DEFAULT_SCHEDULER)
    }
}

/// The Ready condition as the node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ready {
    True,
    False,
    Unknown,
    /// No Ready condition yet (a node just registered).
    Missing,
}

/// What the scheduler needs to know of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: Ready,
    pub allocatable: Resources,
}

impl NodeFacts {
    /// The taints the scheduler filters and scores by: the node's own, plus the one its Ready condition
    /// stands for when the node lifecycle controller has not put it there yet (so a pod that tolerates it, as
    /// upstream's DaemonSet pods do, still fits).
    pub fn effective_taints(&self) -> Vec<Taint> {
        let mut taints = self.taints.clone();
        let implied = match self.ready {
            Ready::True => None,
            Ready::False | Ready::Missing => Some(TAINT_NOT_READY),
            Ready::Unknown => Some(TAINT_UNREACHABLE),
        };
        if let Some(key) = implied {
            if !taints.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
                taints.push(Taint { key: key.into(), value: String::new(), effect: "NoSchedule".into() });
            }
        }
        taints
    }
}

fn quantities(list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> Resources {
    list.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0)?))).collect()
}

fn add(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = e.plus(*v);
    }
}

fn max_into(into: &mut Resources, from: &Resources) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = (*e).max(*v);
    }
}

/// Upstream's pod request arithmetic over containers whose requests `of` gives: regular containers and
/// restartable (sidecar) init containers are summed; each regular init container runs alone with the sidecars
/// started before it, and the pod needs the largest of those moments.
fn pod_requests(containers: &[Container], init: &[Container], of: impl Fn(&Container) -> Resources) -> Resources {
    let mut sum = Resources::new();
    for c in containers {
        add(&mut sum, &of(c));
    }
    let mut sidecars = Resources::new();
    let mut init_max = Resources::new();
    for c in init {
        let own = of(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, &own);
            max_into(&mut init_max, &sidecars);
        } else {
            let mut moment = own;
            add(&mut moment, &sidecars);
            max_into(&mut init_max, &moment);
        }
    }
    add(&mut sum, &sidecars);
    max_into(&mut sum, &init_max);
    sum
}

fn requirement(r: &k8s_openapi::api::core::v1::NodeSelectorRequirement) -> Requirement {
    Requirement { key: r.key.clone(), operator: r.operator.clone(), values: r.values.clone().unwrap_or_default() }
}

fn term(t: &NodeSelectorTerm) -> Term {
    Term {
        expressions: t.match_expressions.iter().flatten().map(requirement).collect(),
        fields: t.match_fields.iter().flatten().map(requirement).collect(),
    }
}

impl PodFacts {
    pub fn from_pod(pod: &Pod) -> PodFacts {
        let m = &pod.metadata;
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let init = spec.init_containers.as_deref().unwrap_or_default();
        let mut requests = pod_requests(&spec.containers, init, |c| {
            quantities(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
        });
        add(&mut requests, &quantities(spec.overhead.as_ref()));
        let defaults = |c: &Container| {
            let mut r = quantities(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
            for (name, default) in [("cpu", NON_ZERO_CPU), ("memory", NON_ZERO_MEMORY)] {
                if r.get(name).is_none_or(Quantity::is_zero) {
                    r.insert(name.into(), Quantity::parse(default).expect("a valid quantity"));
                }
            }
            r.retain(|k, _| k == "cpu" || k == "memory");
            r
        };
        let non_zero = pod_requests(&spec.containers, init, defaults);
        let affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
        let required = affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|s| s.node_selector_terms.iter().map(term).collect());
        let preferred = affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|p| p.iter().map(|p| Preferred { weight: i64::from(p.weight), term: term(&p.preference) }).collect())
            .unwrap_or_default();
        let tolerations = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| Toleration {
                key: t.key.clone().unwrap_or_default(),
                operator: t.operator.clone().unwrap_or_default(),
                value: t.value.clone().unwrap_or_default(),
                effect: t.effect.clone().unwrap_or_default(),
            })
            .collect();
        let host_ports = spec
            .containers
            .iter()
            .chain(init.iter().filter(|c| c.restart_policy.as_deref() == Some("Always")))
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|hp| hp > 0))
            .map(|p| HostPort {
                ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or_default(),
            })
            .collect();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodFacts {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone().unwrap_or_default(),
            creation: m.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            scheduler_name: spec.scheduler_name.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            deleting: m.deletion_timestamp.is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            gated: spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()),
            requests,
            non_zero_cpu: non_zero.get("cpu").copied().unwrap_or_default(),
            non_zero_memory: non_zero.get("memory").copied().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required,
            preferred,
            tolerations,
            host_ports,
            owner: m.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone()),
            priority: spec.priority.unwrap_or(0),
            preemption_never: spec.preemption_policy.as_deref() == Some("Never"),
        }
    }
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> NodeFacts {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map_or(Ready::Missing, |c| match c.status.as_str() {
                "True" => Ready::True,
                "False" => Ready::False,
                _ => Ready::Unknown,
            });
        NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec
                .taints
                .iter()
                .flatten()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            ready,
            allocatable: quantities(status.and_then(|s| s.allocatable.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
                ],
                "initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}},
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}
                ],
                "overhead": {"memory": "1Mi"}
            }
        }))
        .unwrap();
        let f = PodFacts::from_pod(&pod);
        // cpu: max(100m + 200m + 50m sidecar, 1 init) = 1; memory: max(64Mi, 1Mi) + 1Mi overhead.
        assert_eq!(f.requests["cpu"], q("1"));
        assert_eq!(f.requests["memory"], q("65Mi"));
        // Scoring counts 200Mi for container b and sidecar s, which request no memory.
        assert_eq!(f.non_zero_memory, q("464Mi"));
        assert_eq!(f.non_zero_cpu, q("1"));
        assert!(f.wants_scheduling());
    }

    #[test]
    fn a_sidecar_started_before_an_init_container_runs_beside_it() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "i", "resources": {"requests": {"cpu": "1"}}}
                ]
            }
        }))
        .unwrap();
        assert_eq!(PodFacts::from_pod(&pod).requests["cpu"], q("1500m"));
    }

    #[test]
    fn tolerations_follow_upstream() {
        let taint = Taint { key: "k".into(), value: "v".into(), effect: "NoSchedule".into() };
        let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
        };
        assert!(t("k", "Equal", "v", "NoSchedule").tolerates(&taint));
        assert!(t("k", "", "v", "").tolerates(&taint));
        assert!(t("k", "Exists", "", "").tolerates(&taint));
        assert!(t("", "Exists", "", "").tolerates(&taint));
        assert!(!t("k", "Equal", "w", "").tolerates(&taint));
        assert!(!t("k", "Exists", "", "NoExecute").tolerates(&taint));
        assert!(!t("other", "Exists", "", "").tolerates(&taint));
    }

    #[test]
    fn a_node_that_is_not_ready_counts_as_tainted() {
        let mut node = NodeFacts {
            name: "n".into(),
            resource_version: "1".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::Unknown,
            allocatable: Resources::new(),
        };
        assert_eq!(node.effective_taints()[0].key, TAINT_UNREACHABLE);
        node.ready = Ready::False;
        assert_eq!(node.effective_taints()[0].key, TAINT_NOT_READY);
        node.taints.push(Taint { key: TAINT_NOT_READY.into(), value: String::new(), effect: "NoSchedule".into() });
        assert_eq!(node.effective_taints().len(), 1);
        node.ready = Ready::True;
        node.taints.clear();
        assert!(node.effective_taints().is_empty());
    }
}
