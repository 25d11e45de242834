use super::*;
use serde_json::{json, Value};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn set(replicas: i32, image: &str, extra: Value) -> StatefulSet {
    let mut s = json!({
        "metadata": {"name": "db", "namespace": "default", "uid": "set-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    serde_json::from_value(s).unwrap()
}

/// The revision `set`'s template gets (created at revision `number`).
fn revision(set: &StatefulSet, number: i64) -> Arc<ControllerRevision> {
    let spec = set.spec.as_ref().unwrap();
    let labels = spec.selector.match_labels.clone().unwrap();
    let Update::Create(mut r) = revisions::update_revision(set, &spec.template, &labels, &[], None, |_| None) else {
        panic!("a new template needs a revision")
    };
    r.revision = number;
    r.metadata.uid = Some(format!("rev-{number}"));
    Arc::new(*r)
}

/// A pod of ordinal `n` at `revision`, running and ready unless `ready` is false.
fn pod(n: i32, revision: &ControllerRevision, ready: bool) -> Arc<Pod> {
    let conditions = json!([{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": at(0).to_string()}]);
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("db-{n}"), "namespace": "default", "uid": format!("pod-{n}"),
                         "labels": {"app": "db", revisions::REVISION_LABEL: revision.name_any()}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": conditions}
        }))
        .unwrap(),
    )
}

fn plan_of(set: &StatefulSet, pods: &[Arc<Pod>], revisions: &[Arc<ControllerRevision>]) -> Plan {
    let named = |name: &str| revisions.iter().find(|r| r.name_any() == name).cloned();
    plan(&Input { set, pods, revisions, named: &named, now: at(100) })
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn a_new_template_gets_a_revision_first() {
    let s = set(3, "a", json!({}));
    let p = plan_of(&s, &[], &[]);
    let Some(Update::Create(r)) = &p.revision else { panic!("{:?}", p.revision) };
    assert_eq!(r.revision, 1);
    assert!(r.name_any().starts_with("db-"));
    assert!(p.create.is_empty());
}

#[test]
fn ordered_ready_creates_one_ordinal_at_a_time_once_the_ones_before_are_ready() {
    let s = set(3, "a", json!({}));
    let r = revision(&s, 1);
    let p = plan_of(&s, &[], std::slice::from_ref(&r));
    assert_eq!(names(&p.create), ["db-0"]);
    let created = &p.create[0];
    assert_eq!(created.spec.as_ref().unwrap().hostname.as_deref(), Some("db-0"));
    assert_eq!(created.spec.as_ref().unwrap().subdomain.as_deref(), Some("db"));
    assert_eq!(created.labels()[revisions::REVISION_LABEL], r.name_any());
    assert_eq!(created.labels()[POD_INDEX_LABEL], "0");
    assert!(plan_of(&s, &[pod(0, &r, false)], std::slice::from_ref(&r)).create.is_empty(), "db-0 not ready yet");
    assert_eq!(names(&plan_of(&s, &[pod(0, &r, true)], std::slice::from_ref(&r)).create), ["db-1"]);
    let parallel = set(3, "a", json!({"podManagementPolicy": "Parallel"}));
    let r = revision(&parallel, 1);
    assert_eq!(names(&plan_of(&parallel, &[], &[r]).create), ["db-0", "db-1", "db-2"]);
}

#[test]
fn a_scale_down_removes_the_highest_ordinal_first_and_one_at_a_time() {
    let s = set(1, "a", json!({}));
    let r = revision(&s, 1);
    let pods = [pod(0, &r, true), pod(1, &r, true), pod(2, &r, true)];
    let p = plan_of(&s, &pods, std::slice::from_ref(&r));
    assert_eq!(p.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>(), ["db-2"]);
}

#[test]
fn a_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
    let old_set = set(3, "a", json!({}));
    let old = revision(&old_set, 1);
    let s = set(3, "b", json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}));
    let new = revision(&s, 2);
    let mut s = s;
    s.status = Some(StatefulSetStatus { current_revision: Some(old.name_any()), ..Default::default() });
    let revisions = [old.clone(), new.clone()];
    let pods = [pod(0, &old, true), pod(1, &old, true), pod(2, &old, true)];
    let deleted = |p: &Plan| p.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    assert_eq!(deleted(&plan_of(&s, &pods, &revisions)), ["db-2"]);
    let pods = [pod(0, &old, true), pod(1, &old, true), pod(2, &new, false)];
    assert!(deleted(&plan_of(&s, &pods, &revisions)).is_empty(), "db-2 is not ready again yet");
    let pods = [pod(0, &old, true), pod(1, &old, true), pod(2, &new, true)];
    assert_eq!(deleted(&plan_of(&s, &pods, &revisions)), ["db-1"]);
    let pods = [pod(0, &old, true), pod(1, &new, true), pod(2, &new, true)];
    let p = plan_of(&s, &pods, &revisions);
    assert!(deleted(&p).is_empty(), "db-0 is below the partition");
    let status = p.status.unwrap();
    assert_eq!((status.updated_replicas, status.current_replicas), (Some(2), Some(1)));
    assert_eq!(status.current_revision.as_deref(), Some(old.name_any().as_str()));
    // A missing pod below the partition comes back at the current revision.
    let p = plan_of(&s, &[pod(1, &new, true), pod(2, &new, true)], &revisions);
    assert_eq!(p.create[0].labels()[revisions::REVISION_LABEL], old.name_any());
}

#[test]
fn a_finished_update_makes_the_update_revision_current() {
    let old_set = set(2, "a", json!({}));
    let old = revision(&old_set, 1);
    let mut s = set(2, "b", json!({}));
    let new = revision(&s, 2);
    s.status = Some(StatefulSetStatus { current_revision: Some(old.name_any()), ..Default::default() });
    let p = plan_of(&s, &[pod(0, &new, true), pod(1, &new, true)], &[old, new.clone()]);
    let status = p.status.unwrap();
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.current_replicas, Some(2));
}

#[test]
fn volume_claim_templates_give_each_pod_its_own_claim() {
    let s = set(
        1,
        "a",
        json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
    );
    let r = revision(&s, 1);
    let p = plan_of(&s, &[], &[r]);
    assert_eq!(p.claims[0].name_any(), "data-db-0");
    let volumes = p.create[0].spec.as_ref().unwrap().volumes.clone().unwrap();
    assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-db-0");
}

#[test]
fn going_back_to_an_older_template_renumbers_its_revision() {
    let a = set(1, "a", json!({}));
    let old = revision(&a, 1);
    let newer = revision(&set(1, "b", json!({})), 2);
    let p = plan_of(&a, &[], &[old.clone(), newer]);
    assert_eq!(p.revision, Some(Update::Renumber(old, 3)));
}
