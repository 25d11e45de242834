use super::*;
use serde_json::{json, Value};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn daemon_set(image: &str, extra: Value) -> DaemonSet {
    let mut s = json!({
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    serde_json::from_value(s).unwrap()
}

fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap(),
    )
}

fn revision(set: &DaemonSet, number: i64) -> Arc<ControllerRevision> {
    let spec = set.spec.as_ref().unwrap();
    let labels = spec.selector.match_labels.clone().unwrap();
    let Update::Create(mut r) = revisions::update_revision(set, &spec.template, &labels, &[], None, |_| None) else {
        panic!("a new template needs a revision")
    };
    r.revision = number;
    Arc::new(*r)
}

fn pod(set: &DaemonSet, node: &str, revision: &ControllerRevision, ready: bool, n: usize) -> Arc<Pod> {
    let mut pod = pod_for(set, &set.spec.as_ref().unwrap().template, &revision.name_any(), node);
    pod.metadata.name = Some(format!("agent-{node}-{n}"));
    pod.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(n as i64)));
    pod.status = serde_json::from_value(json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": at(0).to_string()}]}))
    .unwrap();
    Arc::new(pod)
}

fn plan_of(set: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], revisions: &[Arc<ControllerRevision>]) -> Plan {
    let named = |name: &str| revisions.iter().find(|r| r.name_any() == name).cloned();
    plan(&Input { set, nodes, pods, revisions, named: &named, expectations_satisfied: true, now: at(100) })
}

#[test]
fn one_pod_goes_to_every_eligible_node_pinned_with_the_daemon_tolerations() {
    let s = daemon_set(
        "a",
        json!({"template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "a"}]}}}),
    );
    let r = revision(&s, 1);
    let nodes = [
        node("ssd-1", json!({"disk": "ssd"}), json!([])),
        node("hdd-1", json!({"disk": "hdd"}), json!([])),
        node(
            "ssd-tainted",
            json!({"disk": "ssd"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        ),
        node(
            "ssd-cordoned",
            json!({"disk": "ssd"}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        ),
    ];
    let p = plan_of(&s, &nodes, &[], std::slice::from_ref(&r));
    assert_eq!(p.create, ["ssd-1", "ssd-cordoned"]);
    let made = pod_for(&s, &s.spec.as_ref().unwrap().template, &r.name_any(), "ssd-1");
    assert_eq!(node_of(&made).as_deref(), Some("ssd-1"));
    let tolerations = made.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")));
    assert_eq!(made.labels()[revisions::REVISION_LABEL], r.name_any());
    assert_eq!(p.status.unwrap().desired_number_scheduled, 2);
}

#[test]
fn pods_follow_nodes_that_leave_or_stop_matching() {
    let s = daemon_set("a", json!({}));
    let r = revision(&s, 1);
    let nodes = [node("n1", json!({}), json!([]))];
    let pods = [pod(&s, "n1", &r, true, 0), pod(&s, "gone", &r, true, 1), pod(&s, "n1", &r, true, 2)];
    let p = plan_of(&s, &nodes, &pods, std::slice::from_ref(&r));
    let deleted: Vec<String> = p.delete.iter().map(|p| p.name_any()).collect();
    assert_eq!(deleted, ["agent-gone-1", "agent-n1-2"], "the node's pod past the first and the one of a node gone");
    assert!(p.create.is_empty());
}

#[test]
fn a_rolling_update_replaces_at_most_max_unavailable_nodes_at_a_time() {
    let old_set = daemon_set("a", json!({}));
    let old = revision(&old_set, 1);
    let s =
        daemon_set("b", json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}));
    let new = revision(&s, 2);
    let nodes = [node("n1", json!({}), json!([])), node("n2", json!({}), json!([])), node("n3", json!({}), json!([]))];
    let revisions = [old.clone(), new.clone()];
    let pods = [pod(&s, "n1", &old, true, 0), pod(&s, "n2", &old, true, 0), pod(&s, "n3", &old, true, 0)];
    let p = plan_of(&s, &nodes, &pods, &revisions);
    assert_eq!(p.delete.len(), 1, "{:?}", p.delete);
    // n1 is being replaced (its new pod not ready): nothing more goes.
    let pods = [pod(&s, "n1", &new, false, 1), pod(&s, "n2", &old, true, 0), pod(&s, "n3", &old, true, 0)];
    assert!(plan_of(&s, &nodes, &pods, &revisions).delete.is_empty());
    let pods = [pod(&s, "n1", &new, true, 1), pod(&s, "n2", &old, true, 0), pod(&s, "n3", &old, true, 0)];
    assert_eq!(plan_of(&s, &nodes, &pods, &revisions).delete.len(), 1);
}

#[test]
fn a_surging_update_starts_the_new_pod_before_removing_the_old() {
    let old_set = daemon_set("a", json!({}));
    let old = revision(&old_set, 1);
    let s = daemon_set(
        "b",
        json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
    );
    let new = revision(&s, 2);
    let nodes = [node("n1", json!({}), json!([])), node("n2", json!({}), json!([]))];
    let revisions = [old.clone(), new.clone()];
    let p = plan_of(&s, &nodes, &[pod(&s, "n1", &old, true, 0), pod(&s, "n2", &old, true, 0)], &revisions);
    assert_eq!((p.create.len(), p.delete.len()), (1, 0));
    let pods = [pod(&s, "n1", &old, true, 0), pod(&s, "n1", &new, true, 1), pod(&s, "n2", &old, true, 0)];
    let p = plan_of(&s, &nodes, &pods, &revisions);
    assert_eq!(p.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>(), ["agent-n1-0"]);
}

#[test]
fn a_pod_stays_on_a_node_that_only_turned_unschedulable_for_new_pods() {
    let s = daemon_set("a", json!({}));
    let r = revision(&s, 1);
    let not_ready: Arc<Node> = Arc::new(
        serde_json::from_value(json!({"metadata": {"name": "n1"},
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}))
        .unwrap(),
    );
    let p = plan_of(&s, std::slice::from_ref(&not_ready), &[pod(&s, "n1", &r, true, 0)], std::slice::from_ref(&r));
    assert!(p.delete.is_empty() && p.create.is_empty(), "{:?}", p.delete);
    assert!(plan_of(&s, &[not_ready], &[], &[r]).create.is_empty(), "no new pod on it");
    let evicting = node("n2", json!({}), json!([{"key": "dedicated", "effect": "NoExecute"}]));
    let r2 = revision(&s, 1);
    let p = plan_of(&s, &[evicting], &[pod(&s, "n2", &r2, true, 0)], &[r2]);
    assert_eq!(p.delete.len(), 1, "a NoExecute taint it does not tolerate removes it");
}
