//! Whether a pod fits a node: upstream's filter plugins in upstream's order (NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit), each failing with the reason kube-scheduler
//! gives, the first failing plugin deciding.
//!
//! Pure: over a `NodeView` and `PodFacts`. Invariant: a pod passes only if, added to the node, the requests
//! of everything placed there stay within the node's allocatable.

use super::model::{tolerated, NodeFacts, PodFacts, Requirement, Taint, Term, TAINT_UNSCHEDULABLE};
use super::snapshot::NodeView;
use crate::apis::quantity::Quantity;
use std::collections::BTreeMap;

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// How a node refused a pod: `Unschedulable` could change by evicting pods (preemption could help),
/// `Unresolvable` could not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    Unresolvable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Refusal {
    fn unresolvable(reason: impl Into<String>) -> Refusal {
        Refusal { code: Code::Unresolvable, reasons: vec![reason.into()] }
    }
}

/// Runs the filters in upstream's order; the first that refuses decides.
pub fn filter(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    node_unschedulable(node, pod)?;
    taint_toleration(node, pod)?;
    node_affinity(node, pod)?;
    node_ports(node, pod)?;
    resources_fit(node, pod)
}

fn node_unschedulable(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    if !node.facts.unschedulable {
        return Ok(());
    }
    let cordon = Taint { key: TAINT_UNSCHEDULABLE.into(), value: String::new(), effect: "NoSchedule".into() };
    match tolerated(&pod.tolerations, &cordon) {
        true => Ok(()),
        false => Err(Refusal::unresolvable(REASON_UNSCHEDULABLE)),
    }
}

fn taint_toleration(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    let untolerated = node
        .facts
        .effective_taints()
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(&pod.tolerations, t));
    match untolerated {
        Some(t) => Err(Refusal::unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value))),
        None => Ok(()),
    }
}

/// Whether one requirement holds for a value that is present (`Some`) or not.
fn requirement_holds(r: &Requirement, value: Option<&str>) -> bool {
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(number), r.values.as_slice()) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term holds for a node: every expression over the labels and every field (only
/// `metadata.name`, with In or NotIn) holds; a term with neither matches nothing.
pub fn term_matches(term: &Term, name: &str, labels: &BTreeMap<String, String>) -> bool {
    if term.expressions.is_empty() && term.fields.is_empty() {
        return false;
    }
    term.expressions.iter().all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)))
        && term.fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && r.values.len() == 1
                && requirement_holds(r, Some(name))
        })
}

/// nodeSelector and required node affinity both hold.
pub fn affinity_matches(node: &NodeView, pod: &PodFacts) -> bool {
    node_affinity_holds(&node.facts, pod)
}

fn node_affinity_holds(node: &NodeFacts, pod: &PodFacts) -> bool {
    let labels = &node.labels;
    pod.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        && pod.required.as_ref().is_none_or(|terms| terms.iter().any(|t| term_matches(t, &node.name, labels)))
}

/// Whether a pod may keep running on a node (the DaemonSet controller's other question): every NoExecute taint
/// tolerated and the node affinity holding; NoSchedule taints and a cordon only keep new pods away.
pub fn may_stay(node: &NodeFacts, pod: &PodFacts) -> bool {
    node.taints.iter().filter(|t| t.effect == "NoExecute").all(|t| tolerated(&pod.tolerations, t))
        && node_affinity_holds(node, pod)
}

/// Whether a pod may run on a node whatever else the node holds (the DaemonSet controller's question): a cordon
/// and every NoSchedule or NoExecute taint tolerated, nodeSelector and required node affinity holding.
pub fn eligible(node: &NodeFacts, pod: &PodFacts) -> bool {
    let cordon = Taint { key: TAINT_UNSCHEDULABLE.into(), value: String::new(), effect: "NoSchedule".into() };
    let mut taints = node.effective_taints();
    if node.unschedulable {
        taints.push(cordon);
    }
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerated(&pod.tolerations, t))
        && node_affinity_holds(node, pod)
}

fn node_affinity(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    match affinity_matches(node, pod) {
        true => Ok(()),
        false => Err(Refusal::unresolvable(REASON_AFFINITY)),
    }
}

fn node_ports(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    let taken = node.host_ports().any(|used| pod.host_ports.iter().any(|p| p.conflicts(used)));
    match taken {
        true => Err(Refusal { code: Code::Unschedulable, reasons: vec![REASON_PORTS.into()] }),
        false => Ok(()),
    }
}

/// NodeResourcesFit: the pod count, then every resource the pod requests, against allocatable minus what
/// is placed. A request larger than the node's whole allocatable can never fit there (preemption cannot
/// help).
fn resources_fit(node: &NodeView, pod: &PodFacts) -> Result<(), Refusal> {
    let allocatable = &node.facts.allocatable;
    let mut reasons = Vec::new();
    let mut code = Code::Unschedulable;
    let allowed_pods = allocatable.get("pods").copied().unwrap_or(Quantity::ZERO);
    if Quantity::units(node.pods.len() as i64 + 1) > allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    for (name, wanted) in &pod.requests {
        if name == "pods" || *wanted <= Quantity::ZERO {
            continue;
        }
        let have = allocatable.get(name).copied().unwrap_or(Quantity::ZERO);
        let used = node.requested.get(name).copied().unwrap_or(Quantity::ZERO);
        if used.plus(*wanted) > have {
            reasons.push(format!("Insufficient {name}"));
            if *wanted > have {
                code = Code::Unresolvable;
            }
        }
    }
    match reasons.is_empty() {
        true => Ok(()),
        false => Err(Refusal { code, reasons }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::{HostPort, NodeFacts, Ready, Resources, Toleration};
    use crate::scheduler::snapshot::Placed;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn resources(pairs: &[(&str, &str)]) -> Resources {
        pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
    }

    fn node(name: &str) -> NodeView {
        NodeView::new(NodeFacts {
            name: name.into(),
            resource_version: "1".into(),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            taints: vec![],
            unschedulable: false,
            ready: Ready::True,
            allocatable: resources(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "3")]),
        })
    }

    fn pod(cpu: &str) -> PodFacts {
        PodFacts { uid: format!("uid-{cpu}"), requests: resources(&[("cpu", cpu)]), ..PodFacts::default() }
    }

    fn reasons(r: Result<(), Refusal>) -> Vec<String> {
        r.err().map(|r| r.reasons).unwrap_or_default()
    }

    #[test]
    fn resources_count_what_is_placed() {
        let mut n = node("a");
        assert!(filter(&n, &pod("2")).is_ok());
        n.add(Placed::of(&pod("1500m")));
        assert_eq!(reasons(filter(&n, &pod("600m"))), ["Insufficient cpu"]);
        assert!(filter(&n, &pod("500m")).is_ok());
        // More than the node has at all: preemption could not help.
        assert_eq!(filter(&n, &pod("3")).unwrap_err().code, Code::Unresolvable);
        assert_eq!(filter(&n, &pod("600m")).unwrap_err().code, Code::Unschedulable);
        n.add(Placed::of(&pod("0")));
        n.add(Placed::of(&pod("0")));
        assert_eq!(reasons(filter(&n, &pod("0"))), ["Too many pods"]);
        let mut both = pod("1");
        both.requests.insert("memory".into(), q("5Gi"));
        assert_eq!(reasons(filter(&n, &both)), ["Too many pods", "Insufficient cpu", "Insufficient memory"]);
    }

    #[test]
    fn extended_resources_the_node_lacks_are_insufficient() {
        let mut p = pod("1");
        p.requests.insert("example.com/gpu".into(), q("1"));
        assert_eq!(reasons(filter(&node("a"), &p)), ["Insufficient example.com/gpu"]);
    }

    #[test]
    fn taints_need_tolerations_and_cordons_refuse() {
        let mut n = node("a");
        n.facts.taints.push(Taint { key: "soft".into(), value: "x".into(), effect: "PreferNoSchedule".into() });
        n.facts.taints.push(Taint { key: "gpu".into(), value: "yes".into(), effect: "NoSchedule".into() });
        let mut p = pod("1");
        assert_eq!(reasons(filter(&n, &p)), ["node(s) had untolerated taint {gpu: yes}"]);
        p.tolerations.push(Toleration {
            key: "gpu".into(),
            operator: "Equal".into(),
            value: "yes".into(),
            effect: String::new(),
        });
        assert!(filter(&n, &p).is_ok());
        n.facts.ready = Ready::Unknown;
        assert_eq!(reasons(filter(&n, &p)), ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]);
        n.facts.ready = Ready::True;
        n.facts.unschedulable = true;
        assert_eq!(reasons(filter(&n, &p)), [REASON_UNSCHEDULABLE]);
        p.tolerations.push(Toleration {
            key: TAINT_UNSCHEDULABLE.into(),
            operator: "Exists".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
        assert!(filter(&n, &p).is_ok());
    }

    #[test]
    fn default_not_ready_tolerations_do_not_tolerate_no_schedule() {
        let mut n = node("a");
        n.facts.ready = Ready::False;
        let mut p = pod("1");
        p.tolerations.push(Toleration {
            key: "node.kubernetes.io/not-ready".into(),
            operator: "Exists".into(),
            value: String::new(),
            effect: "NoExecute".into(),
        });
        assert_eq!(reasons(filter(&n, &p)), ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]);
    }

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement { key: key.into(), operator: op.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    #[test]
    fn node_affinity_operators() {
        let labels: BTreeMap<String, String> =
            [("zone", "a"), ("cores", "8")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let holds = |r: Requirement| term_matches(&Term { expressions: vec![r], fields: vec![] }, "n1", &labels);
        assert!(holds(req("zone", "In", &["a", "b"])));
        assert!(!holds(req("zone", "In", &["b"])));
        assert!(holds(req("zone", "NotIn", &["b"])));
        assert!(holds(req("absent", "NotIn", &["b"])));
        assert!(holds(req("zone", "Exists", &[])));
        assert!(holds(req("absent", "DoesNotExist", &[])));
        assert!(!holds(req("zone", "DoesNotExist", &[])));
        assert!(holds(req("cores", "Gt", &["4"])));
        assert!(!holds(req("cores", "Gt", &["8"])));
        assert!(holds(req("cores", "Lt", &["9"])));
        assert!(!holds(req("zone", "Gt", &["1"])));
        assert!(!holds(req("cores", "Gt", &["1", "2"])));
        assert!(!holds(req("zone", "Near", &["a"])));
        let field = |op: &str, v: &str| Term { expressions: vec![], fields: vec![req("metadata.name", op, &[v])] };
        assert!(term_matches(&field("In", "n1"), "n1", &labels));
        assert!(!term_matches(&field("In", "n2"), "n1", &labels));
        assert!(term_matches(&field("NotIn", "n2"), "n1", &labels));
        assert!(!term_matches(&Term::default(), "n1", &labels));
    }

    #[test]
    fn node_selector_and_required_terms() {
        let n = node("a");
        let mut p = pod("1");
        p.node_selector.insert("kubernetes.io/hostname".into(), "a".into());
        assert!(filter(&n, &p).is_ok());
        p.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(reasons(filter(&n, &p)), [REASON_AFFINITY]);
        p.node_selector.clear();
        // Terms are ORed; an empty list of terms matches nothing.
        p.required = Some(vec![
            Term { expressions: vec![req("disk", "Exists", &[])], fields: vec![] },
            Term { expressions: vec![req("kubernetes.io/hostname", "In", &["a"])], fields: vec![] },
        ]);
        assert!(filter(&n, &p).is_ok());
        p.required = Some(vec![]);
        assert_eq!(reasons(filter(&n, &p)), [REASON_AFFINITY]);
    }

    #[test]
    fn host_ports_conflict_by_protocol_port_and_overlapping_address() {
        let port = |ip: &str, protocol: &str, port: i32| HostPort { ip: ip.into(), protocol: protocol.into(), port };
        let mut n = node("a");
        let mut holder = pod("0");
        holder.host_ports.push(port("127.0.0.1", "TCP", 8080));
        n.add(Placed::of(&holder));
        let mut p = pod("0");
        p.host_ports.push(port("0.0.0.0", "TCP", 8080));
        assert_eq!(reasons(filter(&n, &p)), [REASON_PORTS]);
        p.host_ports[0] = port("127.0.0.2", "TCP", 8080);
        assert!(filter(&n, &p).is_ok());
        p.host_ports[0] = port("127.0.0.1", "UDP", 8080);
        assert!(filter(&n, &p).is_ok());
        p.host_ports[0] = port("127.0.0.1", "TCP", 8081);
        assert!(filter(&n, &p).is_ok());
    }
}
