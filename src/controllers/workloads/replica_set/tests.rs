use super::*;
use serde_json::{json, Value};

fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    }))
    .unwrap()
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

/// A pod of `web` (owned unless `orphan`), with `extra` merged into its JSON.
fn pod(name: &str, orphan: bool, extra: Value) -> Arc<Pod> {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web", "tier": "front"},
                     "creationTimestamp": at(0).to_string()},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Pending"}
    });
    if !orphan {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": true}]);
    }
    merge(&mut p, extra);
    Arc::new(serde_json::from_value(p).unwrap())
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn running(node: &str, ready_since: Option<i64>) -> Value {
    let mut v = json!({"spec": {"nodeName": node}, "status": {"phase": "Running"}});
    if let Some(s) = ready_since {
        v["status"]["conditions"] =
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": at(s).to_string()}]);
    }
    v
}

fn plan_of(rs: &ReplicaSet, owned: &[Arc<Pod>], orphans: &[Arc<Pod>], satisfied: bool, now: i64) -> Plan {
    plan(&Input { replica_set: rs, owned, orphans, expectations_satisfied: satisfied, now: at(now) })
}

#[test]
fn missing_pods_are_created_up_to_the_burst_and_not_while_expectations_wait() {
    let owned = [pod("a", false, json!({}))];
    assert_eq!(plan_of(&rs(3, 0), &owned, &[], true, 0).create, 2);
    assert_eq!(plan_of(&rs(3, 0), &owned, &[], false, 0).create, 0);
    assert_eq!(plan_of(&rs(10_000, 0), &[], &[], true, 0).create, limits::REPLICA_SET_BURST);
}

#[test]
fn finished_and_leaving_pods_do_not_count() {
    let owned = [
        pod("done", false, json!({"status": {"phase": "Succeeded"}})),
        pod("failed", false, json!({"status": {"phase": "Failed"}})),
        pod("leaving", false, json!({"metadata": {"deletionTimestamp": at(0).to_string()}})),
    ];
    let p = plan_of(&rs(2, 0), &owned, &[], true, 0);
    assert_eq!(p.create, 2);
    assert_eq!(p.status.unwrap().replicas, 0);
}

#[test]
fn a_scale_down_deletes_in_upstreams_order() {
    let owned = [
        pod("ready-old", false, running("n1", Some(0))),
        pod("ready-new", false, running("n2", Some(50))),
        pod("running-not-ready", false, running("n3", None)),
        pod("pending-scheduled", false, json!({"spec": {"nodeName": "n4"}})),
        pod("unscheduled", false, json!({})),
        pod("crowded", false, running("n1", Some(0))),
    ];
    let names = |count| -> Vec<String> {
        let r = rs(owned.len() as i32 - count, 0);
        plan_of(&r, &owned, &[], true, 100).delete.iter().map(|p| p.name_any()).collect()
    };
    let order = ["unscheduled", "pending-scheduled", "running-not-ready", "ready-old", "crowded", "ready-new"];
    assert_eq!(names(6), order, "ready pods on the crowded node (n1) before the one alone on n2");
    assert_eq!(names(3), order[..3]);
}

#[test]
fn matching_orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let owned =
        [pod("mine", false, json!({})), pod("relabelled", false, json!({"metadata": {"labels": {"app": "db"}}}))];
    let orphans =
        [pod("orphan", true, json!({})), pod("stranger", true, json!({"metadata": {"labels": {"app": "db"}}}))];
    let p = plan_of(&rs(2, 0), &owned, &orphans, true, 0);
    let names = |v: &[Arc<Pod>]| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert_eq!(names(&p.adopt), ["orphan"]);
    assert_eq!(names(&p.release), ["relabelled"]);
    assert_eq!(p.create, 0, "the adopted orphan counts");
}

#[test]
fn status_counts_ready_and_available_pods_and_waits_for_min_ready_seconds() {
    let owned = [
        pod("a", false, running("n1", Some(0))),
        pod("b", false, running("n1", Some(95))),
        pod("c", false, json!({"metadata": {"labels": {"tier": "back"}}})),
    ];
    let p = plan_of(&rs(3, 10), &owned, &[], true, 100);
    let status = p.status.unwrap();
    assert_eq!(status.replicas, 3);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(p.requeue, Some(Duration::from_secs(5)), "b becomes available 10 s after it became ready");
}

#[test]
fn an_unchanged_status_is_not_written_and_a_deleting_replica_set_does_nothing_else() {
    let owned = [pod("a", false, running("n1", Some(0)))];
    let mut r = rs(1, 0);
    r.status = plan_of(&r, &owned, &[], true, 100).status;
    assert!(plan_of(&r, &owned, &[], true, 100).status.is_none());
    r.metadata.deletion_timestamp = Some(Time(at(0)));
    r.spec.as_mut().unwrap().replicas = Some(5);
    let p = plan_of(&r, &owned, &[pod("orphan", true, json!({}))], true, 100);
    assert_eq!((p.create, p.adopt.len()), (0, 0));
}
