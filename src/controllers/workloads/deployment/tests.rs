use super::*;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn pod_template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn deployment(replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template(image),
            "strategy": strategy,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        }
    }))
    .unwrap()
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// A ReplicaSet of `web` for `image`, as this controller names and annotates them, all of its pods available.
fn replica_set(image: &str, replicas: i32, revision: i64, created: i64) -> Arc<ReplicaSet> {
    let template: PodTemplateSpec = serde_json::from_value(pod_template(image)).unwrap();
    let hash = template::template_hash(&template, None);
    let template = template::with_label(&template, POD_TEMPLATE_HASH, &hash);
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": "default", "uid": format!("uid-{image}"),
                         "generation": 1, "creationTimestamp": at(created).to_string(),
                         "labels": {"app": "web", POD_TEMPLATE_HASH: hash},
                         "annotations": {REVISION: revision.to_string()},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": "d-uid", "controller": true}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", POD_TEMPLATE_HASH: hash}},
                     "template": template},
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                       "observedGeneration": 1}
        }))
        .unwrap(),
    )
}

fn plan_of(d: &Deployment, owned: &[Arc<ReplicaSet>], now: i64) -> Plan {
    let named = |name: &str| owned.iter().find(|rs| rs.name_any() == name).cloned();
    let pods = |rs: &ReplicaSet| {
        let n = rs.status.as_ref().map_or(0, |s| s.replicas);
        Pods { active: n, existing: n }
    };
    plan(&Input { deployment: d, owned, orphans: &[], named: &named, pods: &pods, now: at(now) })
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

#[test]
fn fenceposts_round_surge_up_and_unavailability_down_and_are_never_both_zero() {
    let d = |replicas, surge, unavailable| deployment(replicas, "a", rolling(surge, unavailable));
    assert_eq!(fenceposts(&d(10, json!("25%"), json!("25%"))), (3, 2));
    assert_eq!(fenceposts(&d(1, json!("25%"), json!("25%"))), (1, 0));
    assert_eq!(fenceposts(&d(3, json!(0), json!(0))), (0, 1));
    assert_eq!(fenceposts(&d(3, json!(2), json!("50%"))), (2, 1));
    assert_eq!(max_unavailable(&d(2, json!(0), json!(5))), 2);
    assert_eq!(max_unavailable(&deployment(3, "a", json!({"type": "Recreate"}))), 0);
}

#[test]
fn a_new_deployment_creates_its_first_replica_set_with_every_replica_and_revision_1() {
    let d = deployment(3, "a", rolling(json!("25%"), json!("25%")));
    let p = plan_of(&d, &[], 0);
    let Write::Create(rs) = &p.writes[0] else { panic!("{:?}", p.writes) };
    assert!(rs.name_any().starts_with("web-"));
    assert_eq!(replicas_of(rs), 3);
    assert_eq!(rs.annotations()[REVISION], "1");
    let hash = &rs.labels()[POD_TEMPLATE_HASH];
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let selector = &rs.spec.as_ref().unwrap().selector;
    assert_eq!(selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH], *hash);
    let Write::Status(status) = &p.writes[1] else { panic!("{:?}", p.writes) };
    let progressing = get_condition(status, "Progressing").unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
}

/// Plays a rolling update step by step (every pod of a ReplicaSet appears and becomes available at once after
/// a step), checking the bounds at every step.
fn roll_out(replicas: i32, surge: Value, unavailable: Value) -> usize {
    let mut d = deployment(replicas, "b", rolling(surge, unavailable));
    let (max_surge, max_unavailable) = (fenceposts(&d).0, max_unavailable(&d));
    let mut sets = vec![replica_set("a", replicas, 1, 0)];
    for step in 0..100i64 {
        let p = plan_of(&d, &sets, step);
        for w in &p.writes {
            match w {
                Write::Create(rs) => {
                    let mut rs = rs.as_ref().clone();
                    rs.metadata.uid = Some("uid-new".into());
                    rs.metadata.creation_timestamp = Some(Time(at(step)));
                    sets.push(Arc::new(rs));
                }
                Write::Update { replica_set, .. } => {
                    let i = sets.iter().position(|s| s.name_any() == replica_set.name_any()).unwrap();
                    sets[i] = Arc::new(replica_set.as_ref().clone());
                }
                Write::Revision(r) => {
                    d.annotations_mut().insert(REVISION.into(), r.clone());
                }
                Write::Status(status) => d.status = Some(status.as_ref().clone()),
                Write::Delete(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // After a step, the pods follow the ReplicaSets: first the scale-downs take effect (the available
        // count is the least the step leaves), then the new pods come up.
        let alive: i32 = sets.iter().map(|s| replicas_of(s)).sum();
        assert!(alive <= replicas + max_surge, "step {step}: {alive} pods alive");
        let available: i32 = sets
            .iter()
            .map(|s| replicas_of(s).min(s.status.as_ref().and_then(|st| st.available_replicas).unwrap_or(0)))
            .sum();
        assert!(available >= replicas - max_unavailable, "step {step}: {available} available");
        for s in &mut sets {
            let mut rs = s.as_ref().clone();
            let n = replicas_of(&rs);
            rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas: n,
                ready_replicas: Some(n),
                available_replicas: Some(n),
                observed_generation: Some(1),
                ..Default::default()
            });
            *s = Arc::new(rs);
        }
        let new = sets.iter().find(|s| s.metadata.uid.as_deref() == Some("uid-new"));
        if new.is_some_and(|n| replicas_of(n) == replicas) && sets.iter().filter(|s| replicas_of(s) > 0).count() == 1 {
            return step as usize;
        }
    }
    panic!("the rollout did not finish");
}

#[test]
fn a_rolling_update_stays_within_max_surge_and_max_unavailable_at_every_step() {
    assert!(roll_out(10, json!("25%"), json!("25%")) < 20);
    assert!(roll_out(4, json!(1), json!(0)) < 20);
    assert!(roll_out(4, json!(0), json!(1)) < 20);
    assert!(roll_out(5, json!("100%"), json!(0)) < 5);
    assert!(roll_out(1, json!("25%"), json!("25%")) < 5);
}

#[test]
fn a_rollback_makes_the_old_replica_set_new_again_under_the_next_revision() {
    let d = deployment(2, "a", rolling(json!(1), json!(0)));
    let old = replica_set("a", 0, 1, 0);
    let current = replica_set("b", 2, 2, 10);
    let p = plan_of(&d, &[old.clone(), current], 20);
    let Write::Update { replica_set, .. } = &p.writes[0] else { panic!("{:?}", p.writes) };
    assert_eq!(replica_set.name_any(), old.name_any());
    assert_eq!(replica_set.annotations()[REVISION], "3");
    assert_eq!(replica_set.annotations()[REVISION_HISTORY], "1");
    assert_eq!(p.writes[1], Write::Revision("3".into()));
    assert_eq!(p.writes.len(), 2, "the Deployment's metadata changes alone in its pass");
}

#[test]
fn scaling_a_rollout_in_progress_is_proportional() {
    let mut d = deployment(20, "b", rolling(json!("25%"), json!("25%")));
    let annotate = |rs: Arc<ReplicaSet>| {
        let mut rs = rs.as_ref().clone();
        let a = rs.metadata.annotations.get_or_insert_with(Default::default);
        a.insert(DESIRED_REPLICAS.into(), "10".into());
        a.insert(MAX_REPLICAS.into(), "13".into());
        Arc::new(rs)
    };
    let old = annotate(replica_set("a", 5, 1, 0));
    let new = annotate(replica_set("b", 8, 2, 10));
    d.annotations_mut().insert(REVISION.into(), "2".into());
    let p = plan_of(&d, &[old, new], 20);
    let sizes: BTreeMap<String, i32> = p
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Update { replica_set, .. } => Some((replica_set.name_any(), replicas_of(replica_set))),
            _ => None,
        })
        .collect();
    // 20 replicas + 5 surge allowed, 13 there: 12 to add, in proportion to 8 and 5 of 13.
    let by_image = |image| sizes[&replica_set(image, 0, 0, 0).name_any()];
    assert_eq!((by_image("b"), by_image("a")), (15, 10));
}

#[test]
fn recreate_scales_the_old_down_and_waits_for_its_pods_before_creating_the_new() {
    let d = deployment(3, "b", json!({"type": "Recreate"}));
    let old = replica_set("a", 3, 1, 0);
    let p = plan_of(&d, std::slice::from_ref(&old), 10);
    assert!(p.writes.iter().any(|w| matches!(w, Write::Update { replica_set, .. } if replicas_of(replica_set) == 0)));
    assert!(!p.writes.iter().any(|w| matches!(w, Write::Create(_))));
    // Scaled to zero, pods still there (status says 3): still no new ReplicaSet.
    let mut scaled = old.as_ref().clone();
    scaled.spec.as_mut().unwrap().replicas = Some(0);
    let p = plan_of(&d, &[Arc::new(scaled.clone())], 10);
    assert!(!p.writes.iter().any(|w| matches!(w, Write::Create(_))), "{:?}", p.writes);
    scaled.status.as_mut().unwrap().replicas = 0;
    let p = plan_of(&d, &[Arc::new(scaled)], 10);
    assert!(p.writes.iter().any(|w| matches!(w, Write::Create(rs) if replicas_of(rs) == 3)), "{:?}", p.writes);
}

/// A status with these counts and a Progressing condition last updated at `updated`.
fn status_with_progressing(reason: &str, updated: i64, replicas: i32, new: i32, available: i32) -> DeploymentStatus {
    let mut status = DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(new),
        ready_replicas: Some(available),
        available_replicas: Some(available),
        ..DeploymentStatus::default()
    };
    let mut c = condition("Progressing", "True", reason, String::new(), at(updated));
    c.last_update_time = Some(Time(at(updated)));
    status.conditions = Some(vec![c]);
    status
}

#[test]
fn a_rollout_without_progress_past_its_deadline_reports_progress_deadline_exceeded() {
    let mut d = deployment(2, "b", rolling(json!(1), json!(0)));
    d.annotations_mut().insert(REVISION.into(), "2".into());
    let old = replica_set("a", 2, 1, 0);
    let mut new = replica_set("b", 1, 2, 10).as_ref().clone();
    new.status = Some(Default::default());
    d.status = Some(status_with_progressing("ReplicaSetUpdated", 0, 2, 0, 2));
    let sets = [old, Arc::new(new)];
    let before = plan_of(&d, &sets, 100);
    assert!(before.requeue.is_some_and(|r| r <= Duration::from_secs(501)), "{:?}", before.requeue);
    let p = plan_of(&d, &sets, 700);
    let status = p.writes.iter().find_map(|w| if let Write::Status(s) = w { Some(s) } else { None }).unwrap();
    let c = get_condition(status, "Progressing").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
}

#[test]
fn a_paused_deployment_does_not_roll_but_says_so() {
    let mut d = deployment(2, "b", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().paused = Some(true);
    d.annotations_mut().insert(REVISION.into(), "1".into());
    let p = plan_of(&d, &[replica_set("a", 2, 1, 0)], 10);
    assert!(!p.writes.iter().any(|w| matches!(w, Write::Create(_))), "{:?}", p.writes);
    let Some(Write::Status(status)) = p.writes.last() else { panic!("{:?}", p.writes) };
    assert_eq!(get_condition(status, "Progressing").unwrap().reason.as_deref(), Some("DeploymentPaused"));
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
    let mut d = deployment(1, "d", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    d.annotations_mut().insert(REVISION.into(), "4".into());
    let sets =
        [replica_set("b", 0, 2, 1), replica_set("a", 0, 1, 0), replica_set("c", 0, 3, 2), replica_set("d", 1, 4, 3)];
    let p = plan_of(&d, &sets, 10);
    let deleted: Vec<String> =
        p.writes.iter().filter_map(|w| if let Write::Delete(rs) = w { Some(rs.name_any()) } else { None }).collect();
    assert_eq!(deleted, [sets[1].name_any(), sets[0].name_any()]);
}

#[test]
fn a_name_taken_by_another_template_counts_a_collision() {
    let d = deployment(1, "a", rolling(json!(1), json!(0)));
    let mut stranger = replica_set("x", 1, 1, 0).as_ref().clone();
    stranger.metadata.name = Some(replica_set("a", 0, 0, 0).name_any());
    stranger.metadata.owner_references = None;
    let stranger = Arc::new(stranger);
    let named = |name: &str| (name == stranger.name_any()).then(|| stranger.clone());
    let pods = |_: &ReplicaSet| Pods::default();
    let p = plan(&Input { deployment: &d, owned: &[], orphans: &[], named: &named, pods: &pods, now: at(0) });
    let Write::Status(status) = &p.writes[0] else { panic!("{:?}", p.writes) };
    assert_eq!(status.collision_count, Some(1));
}
