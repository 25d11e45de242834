use super::*;

use proptest::prelude::*;
use serde_json::{json, Value};

const GRACE: Duration = Duration::from_secs(50);

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn rfc(seconds: i64) -> String {
    t(seconds).to_string()
}

/// A node created at 0 whose Ready condition has `status`, last posted at `heartbeat`.
fn node_value(name: &str, status: &str, heartbeat: i64) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
            "creationTimestamp": rfc(0)},
        "spec": {},
        "status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": rfc(heartbeat),
                "lastTransitionTime": rfc(0), "reason": "KubeletHasSufficientMemory"},
            {"type": "Ready", "status": status, "lastHeartbeatTime": rfc(heartbeat),
                "lastTransitionTime": rfc(0), "reason": "KubeletReady"},
        ]},
    })
}

fn node(v: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn lease(name: &str, renewed: i64) -> Arc<Lease> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "renewTime": format!("{}", t(renewed))},
        }))
        .unwrap(),
    )
}

fn pod(name: &str, node: &str, tolerations: Value) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "9"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}], "tolerations": tolerations},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap(),
    )
}

struct World {
    nodes: Vec<Arc<Node>>,
    leases: Vec<Arc<Lease>>,
    pods: Vec<Arc<Pod>>,
    leading_since: Timestamp,
}

impl World {
    fn new(nodes: Vec<Arc<Node>>) -> World {
        World { nodes, leases: Vec::new(), pods: Vec::new(), leading_since: t(0) }
    }

    fn plan(&self, now: i64) -> Plan {
        plan(&Input {
            nodes: &self.nodes,
            leases: &self.leases,
            pods: &self.pods,
            now: t(now),
            leading_since: self.leading_since,
            grace: GRACE,
        })
    }

    /// Applies the plan's writes to the world, as the API would.
    fn apply(&mut self, plan: &Plan) {
        for write in &plan.writes {
            match write {
                Write::Node { node, .. } => {
                    let name = node.metadata.name.clone();
                    self.nodes.retain(|n| n.metadata.name != name);
                    self.nodes.push(Arc::new(node.as_ref().clone()));
                }
                Write::MarkPodNotReady { pod } => {
                    let name = pod.metadata.name.clone();
                    self.pods.retain(|p| p.metadata.name != name);
                    self.pods.push(Arc::new(pod.as_ref().clone()));
                }
                Write::Evict { pod } => self.pods.retain(|p| p.metadata.name != pod.metadata.name),
            }
        }
    }
}

fn node_write(plan: &Plan) -> &Node {
    plan.writes
        .iter()
        .find_map(|w| match w {
            Write::Node { node, .. } => Some(node.as_ref()),
            _ => None,
        })
        .expect("a node write")
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

fn evicted(plan: &Plan) -> Vec<String> {
    plan.writes
        .iter()
        .filter_map(|w| match w {
            Write::Evict { pod } => pod.metadata.name.clone(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_within_its_grace_is_left_alone_until_its_deadline() {
    let world = World::new(vec![node(node_value("n", "True", 10))]);
    let plan = world.plan(59);
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert_eq!(plan.next, Some(t(60)));
}

#[test]
fn an_overdue_node_becomes_unknown_with_the_unreachable_taints() {
    let world = World::new(vec![node(node_value("n", "True", 10))]);
    let plan = world.plan(60);
    let Write::Node { status, taints, became_unknown, .. } = &plan.writes[0] else { panic!("{:?}", plan.writes) };
    assert!(*status && *taints && *became_unknown);
    let node = node_write(&plan);
    let conditions = node.status.as_ref().unwrap().conditions.as_ref().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
    assert_eq!(ready.last_heartbeat_time.as_ref().map(|h| h.0), Some(t(10)), "the heartbeat is kept");
    assert_eq!(ready.last_transition_time.as_ref().map(|h| h.0), Some(t(60)));
    // The conditions never posted are added as never updated; NetworkUnavailable is not the controller's.
    for type_ in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
        assert_eq!(c.status, "Unknown", "{type_}");
    }
    let disk = conditions.iter().find(|c| c.type_ == "DiskPressure").unwrap();
    assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert!(conditions.iter().all(|c| c.type_ != "NetworkUnavailable"));
    assert_eq!(
        taint_keys(node),
        ["node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"]
    );
    let taints = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
    assert!(taints.iter().all(|taint| taint.time_added.as_ref().map(|a| a.0) == Some(t(60))));
}

#[test]
fn a_renewed_lease_keeps_a_node_alive_whatever_its_condition_says() {
    let mut world = World::new(vec![node(node_value("n", "True", 10))]);
    world.leases.push(lease("n", 55));
    assert!(world.plan(100).writes.is_empty());
    assert_eq!(world.plan(100).next, Some(t(105)));
    assert!(!world.plan(105).writes.is_empty());
}

#[test]
fn a_new_leader_gives_every_node_a_full_grace_period() {
    let mut world = World::new(vec![node(node_value("n", "True", 10))]);
    world.leading_since = t(1000);
    let plan = world.plan(1049);
    assert!(plan.writes.is_empty(), "a node is not declared dead on liveness the leader did not observe");
    assert_eq!(plan.next, Some(t(1050)));
    assert!(!world.plan(1050).writes.is_empty());
}

#[test]
fn ready_false_gives_the_not_ready_taints_and_ready_takes_them_away() {
    let mut world = World::new(vec![node(node_value("n", "False", 10))]);
    let plan = world.plan(20);
    assert_eq!(
        taint_keys(node_write(&plan)),
        ["node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/not-ready:NoExecute"]
    );
    let Write::Node { status, .. } = &plan.writes[0] else { panic!() };
    assert!(!status, "the node's own condition is not touched");
    world.apply(&plan);
    assert!(world.plan(21).writes.is_empty(), "planning again changes nothing");
    // Ready again: the controller's taints go, anyone else's stay.
    let mut v = node_value("n", "True", 30);
    v["spec"]["taints"] = json!([
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": rfc(20)},
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": rfc(20)},
    ]);
    world.nodes = vec![node(v)];
    let plan = world.plan(31);
    assert_eq!(taint_keys(node_write(&plan)), ["dedicated:NoSchedule"]);
}

#[test]
fn pressure_and_cordon_taints_follow_conditions_and_spec() {
    let mut v = node_value("n", "True", 10);
    v["status"]["conditions"][0]["status"] = json!("True");
    v["spec"]["unschedulable"] = json!(true);
    let world = World::new(vec![node(v)]);
    assert_eq!(
        taint_keys(node_write(&world.plan(20))),
        ["node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"]
    );
}

#[test]
fn a_node_that_never_reported_keeps_its_registration_taint_until_its_grace_ends() {
    let v = json!({
        "metadata": {"name": "n", "uid": "u", "resourceVersion": "1", "creationTimestamp": rfc(0)},
        "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
    });
    let world = World::new(vec![node(v)]);
    let plan = world.plan(10);
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert_eq!(plan.next, Some(t(50)));
    let plan = world.plan(50);
    let conditions = node_write(&plan).status.as_ref().unwrap().conditions.clone().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("Unknown", Some("NodeStatusNeverUpdated")));
    assert_eq!(
        taint_keys(node_write(&plan)),
        ["node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"]
    );
}

fn unreachable_node(added: i64) -> Arc<Node> {
    let mut v = node_value("n", "Unknown", 0);
    v["spec"]["taints"] = json!([
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": rfc(added)},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": rfc(added)},
    ]);
    for c in v["status"]["conditions"].as_array_mut().unwrap() {
        c["status"] = json!("Unknown");
    }
    v["status"]["conditions"].as_array_mut().unwrap().extend([
        json!({"type": "DiskPressure", "status": "Unknown"}),
        json!({"type": "PIDPressure", "status": "Unknown"}),
    ]);
    node(v)
}

fn unreachable_for(seconds: Option<i64>) -> Value {
    let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    t
}

#[test]
fn pods_leave_a_tainted_node_when_their_toleration_runs_out() {
    let mut world = World::new(vec![unreachable_node(100)]);
    world.pods = vec![
        pod("intolerant", "n", json!([])),
        pod("short", "n", json!([unreachable_for(Some(2))])),
        pod("long", "n", json!([unreachable_for(Some(300))])),
        pod("forever", "n", json!([unreachable_for(None)])),
        pod("everything", "n", json!([{"operator": "Exists"}])),
        pod("elsewhere", "other", json!([])),
    ];
    let plan = world.plan(101);
    assert_eq!(evicted(&plan), ["intolerant"]);
    assert_eq!(plan.next, Some(t(102)));
    assert_eq!(evicted(&world.plan(102)), ["intolerant", "short"]);
    let plan = world.plan(399);
    assert_eq!(evicted(&plan), ["intolerant", "short"]);
    assert_eq!(plan.next, Some(t(400)));
    assert_eq!(evicted(&world.plan(400)), ["intolerant", "short", "long"]);
}

#[test]
fn a_toleration_of_another_taint_or_effect_does_not_count() {
    let mut world = World::new(vec![unreachable_node(100)]);
    world.pods = vec![
        pod("wrong-key", "n", json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])),
        pod(
            "wrong-effect",
            "n",
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
            "operator": "Exists"}]),
        ),
        pod("no-effect", "n", json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}])),
        pod("zero", "n", json!([unreachable_for(Some(0))])),
    ];
    assert_eq!(evicted(&world.plan(100)), ["wrong-key", "wrong-effect", "zero"]);
}

#[test]
fn pods_of_an_unreachable_node_are_marked_not_ready() {
    let mut world = World::new(vec![unreachable_node(100)]);
    world.pods = vec![pod("p", "n", json!([unreachable_for(Some(300))]))];
    let plan = world.plan(101);
    let [Write::MarkPodNotReady { pod }] = plan.writes.as_slice() else { panic!("{:?}", plan.writes) };
    let ready = pod.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(pod.metadata.resource_version.as_deref(), Some("9"), "the version read is the precondition");
    world.apply(&plan);
    assert!(world.plan(102).writes.is_empty());
}

#[test]
fn eviction_counts_from_the_leadership_when_a_taint_has_no_time() {
    let taint = Taint { key: UNREACHABLE_TAINT.into(), effect: NO_EXECUTE.into(), ..Taint::default() };
    let toleration: Toleration = serde_json::from_value(unreachable_for(Some(5))).unwrap();
    assert_eq!(eviction(&[taint], &[toleration], t(7)), Eviction::At(t(12)));
}

proptest! {
    /// Whatever the nodes' heartbeats and the leader's start, a pass followed by the API applying its writes
    /// leaves nothing for the next pass at the same time, and nothing is declared Unknown within a full grace
    /// period of both the heartbeat and the leadership.
    #[test]
    fn passes_settle_and_respect_the_grace(
        heartbeats in proptest::collection::vec((0i64..200, prop_oneof![Just("True"), Just("False"), Just("Unknown")]), 1..5),
        renewals in proptest::collection::vec(proptest::option::of(0i64..200), 5),
        leading_since in 0i64..200,
        now in 0i64..400,
    ) {
        let nodes: Vec<Arc<Node>> = heartbeats
            .iter()
            .enumerate()
            .map(|(i, (h, s))| node(node_value(&format!("n{i}"), s, *h)))
            .collect();
        let mut world = World::new(nodes);
        world.leading_since = t(leading_since);
        world.leases = renewals.iter().enumerate().filter_map(|(i, r)| r.map(|r| lease(&format!("n{i}"), r))).collect();
        let plan = world.plan(now);
        for write in &plan.writes {
            let Write::Node { node, became_unknown, .. } = write else { continue };
            if *became_unknown {
                let i: usize = node.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
                let newest = heartbeats[i].0.max(renewals[i].unwrap_or(0)).max(leading_since);
                prop_assert!(now >= newest + GRACE.as_secs() as i64);
            }
        }
        world.apply(&plan);
        let again = world.plan(now);
        prop_assert!(again.writes.is_empty(), "{:?}", again.writes);
    }
}
