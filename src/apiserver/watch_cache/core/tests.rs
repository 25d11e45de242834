use serde_json::json;

use super::*;
use crate::apis::catalog;

fn pods() -> &'static Resource {
    catalog::find("", "v1", "pods").expect("pods are served")
}

/// A pod at `revision`, bound to `node` if given, with `labels`.
fn pod(namespace: &str, name: &str, node: Option<&str>, labels: Value, revision: i64) -> Arc<CachedObject> {
    let mut value = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": {"containers": []}});
    if let Some(node) = node {
        value["spec"]["nodeName"] = json!(node);
    }
    let key = format!("/registry/pods/{namespace}/{name}");
    Arc::new(CachedObject::decode(pods(), key, serde_json::to_vec(&value).expect("encodes"), revision))
}

fn selection(prefix: &str, labels: Option<&str>, fields: Option<&str>) -> Selection {
    Selection {
        prefix: prefix.into(),
        labels: labels.map(|l| LabelSelector::parse(l).expect("a label selector")),
        fields: fields.map(|f| FieldSelector::parse_for("", "pods", f).expect("a field selector")),
    }
}

fn all_pods() -> Selection {
    selection("/registry/pods/", None, None)
}

fn on_node(node: &str) -> Selection {
    selection("/registry/pods/", None, Some(&format!("spec.nodeName={node}")))
}

/// A pods cache, synced empty at revision 10.
fn synced(bounds: Bounds) -> State {
    let mut state = State::new(index_field(pods()), bounds);
    state.reset(Vec::new(), 10, &mut Vec::new());
    state
}

fn roomy() -> Bounds {
    Bounds { events: 1000, bytes: 1 << 30, pending: 1000 }
}

fn put(state: &mut State, object: Arc<CachedObject>) -> Vec<WatcherId> {
    let mut woken = Vec::new();
    state.apply(object.revision, vec![Change::Put(object)], &mut woken);
    woken
}

fn delete(state: &mut State, namespace: &str, name: &str, revision: i64) -> Vec<WatcherId> {
    let mut woken = Vec::new();
    let key = format!("/registry/pods/{namespace}/{name}");
    state.apply(revision, vec![Change::Delete { key }], &mut woken);
    woken
}

/// What a watch takes: (type, name, resourceVersion) of each event.
fn take(state: &mut State, id: WatcherId) -> Vec<(&'static str, String, String)> {
    match state.take(id) {
        Taken::Events { events, .. } => events
            .iter()
            .map(|(e, kind)| {
                let object: Value = serde_json::from_slice(e.json().expect("decodes")).expect("JSON");
                let meta = &object["metadata"];
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (kind.as_str(), text(&meta["name"]), text(&meta["resourceVersion"]))
            })
            .collect(),
        Taken::Lost { from } => panic!("the watch was lost from {from}"),
    }
}

fn event(kind: &'static str, name: &str, revision: i64) -> (&'static str, String, String) {
    (kind, name.to_string(), revision.to_string())
}

#[test]
fn every_watch_gets_what_it_selects_from_one_shared_encoding() {
    let mut state = synced(roomy());
    let all = state.subscribe(11, all_pods()).expect("covered");
    let web = state.subscribe(11, selection("/registry/pods/", Some("app=web"), None)).expect("covered");
    let team_a = state.subscribe(11, selection("/registry/pods/a/", None, None)).expect("covered");

    put(&mut state, pod("a", "web-1", None, json!({"app": "web"}), 11));
    put(&mut state, pod("b", "db-1", None, json!({"app": "db"}), 12));
    // The label changes: the pod leaves the `app=web` selection, which sees it DELETED (with the new object).
    put(&mut state, pod("a", "web-1", None, json!({"app": "db"}), 13));
    delete(&mut state, "a", "web-1", 14);

    assert_eq!(
        take(&mut state, all),
        vec![
            event("ADDED", "web-1", 11),
            event("ADDED", "db-1", 12),
            event("MODIFIED", "web-1", 13),
            event("DELETED", "web-1", 14)
        ]
    );
    assert_eq!(take(&mut state, web), vec![event("ADDED", "web-1", 11), event("DELETED", "web-1", 13)]);
    assert_eq!(
        take(&mut state, team_a),
        vec![event("ADDED", "web-1", 11), event("MODIFIED", "web-1", 13), event("DELETED", "web-1", 14)]
    );

    // Two watches sending the same event send the same bytes, encoded once.
    put(&mut state, pod("a", "web-2", None, json!({"app": "web"}), 15));
    let (Taken::Events { events: first, .. }, Taken::Events { events: second, .. }) =
        (state.take(all), state.take(web))
    else {
        panic!("both watches are served");
    };
    assert!(Arc::ptr_eq(&first[0].0, &second[0].0));
    let (a, b) = (first[0].0.json().expect("decodes"), second[0].0.json().expect("decodes"));
    assert_eq!(a.as_ptr(), b.as_ptr(), "one encoding, shared");
    let object: Value = serde_json::from_slice(a).expect("JSON");
    assert_eq!(object["metadata"]["resourceVersion"], "15");
    assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn a_deletion_carries_the_last_state_at_the_deletion_revision() {
    let mut state = synced(roomy());
    put(&mut state, pod("a", "p", Some("n1"), json!({"v": "last"}), 11));
    let id = state.subscribe(12, all_pods()).expect("covered");
    delete(&mut state, "a", "p", 12);
    delete(&mut state, "a", "never-there", 13);
    let Taken::Events { events, through } = state.take(id) else { panic!("served") };
    assert_eq!(through, 13);
    assert_eq!(events.len(), 1);
    let object: Value = serde_json::from_slice(events[0].0.json().expect("decodes")).expect("JSON");
    assert_eq!(object["metadata"]["resourceVersion"], "12");
    assert_eq!(object["metadata"]["labels"]["v"], "last");
    assert_eq!(events[0].1, EventType::Deleted);
}

#[test]
fn a_node_watch_is_offered_only_its_own_nodes_pods() {
    let mut state = synced(roomy());
    let nodes: Vec<WatcherId> =
        (0..1000).map(|i| state.subscribe(11, on_node(&format!("node-{i}"))).expect("covered")).collect();
    let all = state.subscribe(11, all_pods()).expect("covered");
    let before = state.stats().selections;

    let woken = put(&mut state, pod("a", "p", Some("node-7"), json!({}), 11));
    assert_eq!(state.stats().selections - before, 2, "only the node's watch and the unindexed one were asked");
    assert_eq!(woken.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([nodes[7], all]));
    assert_eq!(take(&mut state, nodes[7]), vec![event("ADDED", "p", 11)]);

    // Moving to another node: the old node's watch sees it leave, the new one's sees it arrive.
    let before = state.stats().selections;
    put(&mut state, pod("a", "p", Some("node-8"), json!({}), 12));
    assert_eq!(state.stats().selections - before, 3);
    assert_eq!(take(&mut state, nodes[7]), vec![event("DELETED", "p", 12)]);
    assert_eq!(take(&mut state, nodes[8]), vec![event("ADDED", "p", 12)]);
    assert!(take(&mut state, nodes[9]).is_empty());
    assert_eq!(take(&mut state, all), vec![event("ADDED", "p", 11), event("MODIFIED", "p", 12)]);

    // Unscheduled pods are indexed too (`spec.nodeName=` is what a scheduler watches).
    let unscheduled = state.subscribe(13, on_node("")).expect("covered");
    let before = state.stats().selections;
    put(&mut state, pod("a", "q", None, json!({}), 13));
    assert_eq!(state.stats().selections - before, 2);
    assert_eq!(take(&mut state, unscheduled), vec![event("ADDED", "q", 13)]);

    // A watch that goes away leaves the index.
    state.unsubscribe(nodes[8]);
    let before = state.stats().selections;
    put(&mut state, pod("a", "p", Some("node-8"), json!({"x": "y"}), 14));
    assert_eq!(state.stats().selections - before, 1);
}

#[test]
fn the_window_keeps_its_bounds_and_refuses_what_it_no_longer_holds() {
    let mut state = synced(Bounds { events: 4, bytes: 1 << 30, pending: 1000 });
    for revision in 11..=16 {
        put(&mut state, pod("a", &format!("p{revision}"), None, json!({}), revision));
    }
    assert_eq!(state.stats().window_events, 4);
    assert!(!state.covers(12), "revisions 11 and 12 left the window");
    assert!(state.subscribe(12, all_pods()).is_none());
    let id = state.subscribe(13, all_pods()).expect("13 is still there");
    let names: Vec<String> = take(&mut state, id).into_iter().map(|(_, name, _)| name).collect();
    assert_eq!(names, ["p13", "p14", "p15", "p16"]);
    assert!(state.covers(100), "a revision the cache has not reached yet is covered");

    // A revision of several changes leaves whole.
    let mut woken = Vec::new();
    let two = vec![Change::Put(pod("a", "x", None, json!({}), 17)), Change::Put(pod("a", "y", None, json!({}), 17))];
    state.apply(17, two, &mut woken);
    put(&mut state, pod("a", "z", None, json!({}), 18));
    put(&mut state, pod("a", "w", None, json!({}), 19));
    assert_eq!(state.stats().window_events, 4);
    put(&mut state, pod("a", "v", None, json!({}), 20));
    assert_eq!(state.stats().window_events, 3, "revision 17 went as one");
    assert!(!state.covers(17) && state.covers(18));

    // The byte bound: a window of about two pods.
    let one = pod("a", "sized", None, json!({}), 1).bytes() + EVENT_OVERHEAD_BYTES;
    let mut state = synced(Bounds { events: 1000, bytes: 2 * one + one / 2, pending: 1000 });
    for revision in 11..=15 {
        put(&mut state, pod("a", "sized", None, json!({}), revision));
    }
    assert_eq!(state.stats().window_events, 2);
    assert!(state.stats().window_bytes <= 2 * one + one / 2);
    assert!(!state.covers(13) && state.covers(14));
}

#[test]
fn a_slow_watch_is_lost_without_holding_back_the_others() {
    let mut state = synced(Bounds { events: 1000, bytes: 1 << 30, pending: 3 });
    let slow = state.subscribe(11, all_pods()).expect("covered");
    let fast = state.subscribe(11, all_pods()).expect("covered");
    take(&mut state, slow);
    for revision in 11..=15 {
        put(&mut state, pod("a", &format!("p{revision}"), None, json!({}), revision));
        assert_eq!(take(&mut state, fast), vec![event("ADDED", &format!("p{revision}"), revision)]);
    }
    // The slow watch had 11, 12 and 13 pending when 14 came: it resumes from 11 elsewhere.
    assert!(matches!(state.take(slow), Taken::Lost { from: 11 }));
    assert_eq!(state.stats().watchers, 1, "a lost watch is no longer registered");
    put(&mut state, pod("a", "p16", None, json!({}), 16));
    assert_eq!(take(&mut state, fast), vec![event("ADDED", "p16", 16)]);
}

#[test]
fn a_watch_whose_pending_events_left_the_window_is_lost_from_the_first() {
    let mut state = synced(Bounds { events: 2, bytes: 1 << 30, pending: 1000 });
    let id = state.subscribe(11, all_pods()).expect("covered");
    for revision in 11..=13 {
        put(&mut state, pod("a", &format!("p{revision}"), None, json!({}), revision));
    }
    assert!(matches!(state.take(id), Taken::Lost { from: 11 }));
}

#[test]
fn a_start_ahead_of_the_cache_waits_for_its_revision() {
    let mut state = synced(roomy());
    let id = state.subscribe(13, all_pods()).expect("covered");
    put(&mut state, pod("a", "p", None, json!({}), 11));
    put(&mut state, pod("a", "p", None, json!({"v": "2"}), 13));
    // The pod existed before the watch's start: its first change after it is a modification.
    let Taken::Events { events, through } = state.take(id) else { panic!("served") };
    assert_eq!(through, 13);
    assert_eq!(events.iter().map(|(e, k)| (e.revision, *k)).collect::<Vec<_>>(), vec![(13, EventType::Modified)]);
    let later = state.subscribe(20, all_pods()).expect("covered");
    let Taken::Events { through, .. } = state.take(later) else { panic!("served") };
    assert_eq!(through, 19, "a watch has seen everything before its start");
}

#[test]
fn a_stored_value_that_does_not_decode_is_reported_and_never_sent() {
    let mut state = synced(roomy());
    let id = state.subscribe(11, all_pods()).expect("covered");
    let key = "/registry/pods/a/broken".to_string();
    let broken = Arc::new(CachedObject::decode(pods(), key.clone(), b"not json".to_vec(), 11));
    assert!(!broken.decodes());
    put(&mut state, broken);
    assert!(take(&mut state, id).is_empty());
    assert_eq!(state.list(&all_pods(), usize::MAX).skipped, vec![key]);
    // A valid value replaces it: the watch sees the object arrive.
    put(&mut state, pod("a", "broken", None, json!({}), 12));
    assert_eq!(take(&mut state, id), vec![event("ADDED", "broken", 12)]);
    assert!(state.list(&all_pods(), usize::MAX).skipped.is_empty());
}

#[test]
fn starting_over_loses_every_watch_from_the_revision_it_needs_next() {
    let mut state = synced(roomy());
    let behind = state.subscribe(11, all_pods()).expect("covered");
    let current = state.subscribe(11, all_pods()).expect("covered");
    let ahead = state.subscribe(30, all_pods()).expect("covered");
    put(&mut state, pod("a", "p", None, json!({}), 11));
    put(&mut state, pod("a", "p", None, json!({}), 12));
    take(&mut state, current);
    let mut woken = Vec::new();
    state.reset(vec![pod("a", "p", None, json!({}), 20)], 25, &mut woken);
    assert_eq!(woken.len(), 3);
    assert!(matches!(state.take(behind), Taken::Lost { from: 11 }));
    assert!(matches!(state.take(current), Taken::Lost { from: 13 }));
    assert!(matches!(state.take(ahead), Taken::Lost { from: 30 }));
    assert!(!state.covers(25) && state.covers(26));
    assert_eq!(state.list(&all_pods(), usize::MAX).objects.len(), 1);

    let mut woken = Vec::new();
    state.fail(&mut woken);
    assert!(!state.covers(26) && state.snapshot(all_pods()).is_none());
}

#[test]
fn lists_page_by_key_and_go_through_the_index() {
    let mut state = synced(roomy());
    for (i, (namespace, node)) in [("a", "n1"), ("a", "n2"), ("b", "n1"), ("b", "n2"), ("c", "n1")].iter().enumerate() {
        put(&mut state, pod(namespace, &format!("p{i}"), Some(node), json!({}), 11 + i as i64));
    }
    let names = |l: &Listing| l.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    let page = state.list(&all_pods(), 2);
    assert_eq!(names(&page), ["/registry/pods/a/p0", "/registry/pods/a/p1"]);
    assert_eq!(page.next.as_deref(), Some("/registry/pods/b/p2"));
    assert_eq!(page.revision, 15);
    let n1 = state.list(&on_node("n1"), usize::MAX);
    assert_eq!(names(&n1), ["/registry/pods/a/p0", "/registry/pods/b/p2", "/registry/pods/c/p4"]);
    assert_eq!(n1.next, None);
    let b_n2 = state.list(&selection("/registry/pods/b/", None, Some("spec.nodeName=n2")), usize::MAX);
    assert_eq!(names(&b_n2), ["/registry/pods/b/p3"]);
    // The index follows moves and deletions.
    put(&mut state, pod("a", "p0", Some("n2"), json!({}), 16));
    delete(&mut state, "c", "p4", 17);
    assert_eq!(names(&state.list(&on_node("n1"), usize::MAX)), ["/registry/pods/b/p2"]);
}

#[test]
fn a_snapshot_and_its_watch_meet_exactly() {
    let mut state = synced(roomy());
    put(&mut state, pod("a", "p", Some("n1"), json!({}), 11));
    let (listing, id) = state.snapshot(on_node("n1")).expect("synced");
    assert_eq!((listing.revision, listing.objects.len()), (11, 1));
    put(&mut state, pod("a", "p", Some("n1"), json!({"v": "2"}), 12));
    assert_eq!(take(&mut state, id), vec![event("MODIFIED", "p", 12)]);
}

#[test]
fn a_served_version_is_decoded_into_its_own_form() {
    let events = catalog::find("events.k8s.io", "v1", "events").expect("events.k8s.io is served");
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "a"},
        "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started"});
    let key = "/registry/events/a/e".to_string();
    let object = CachedObject::decode(events, key, serde_json::to_vec(&core).expect("encodes"), 5);
    let presented: Value = serde_json::from_slice(&object.json(5).expect("decodes")).expect("JSON");
    assert_eq!(presented["regarding"]["name"], "p");
    assert_eq!(presented["apiVersion"], "events.k8s.io/v1");
    let by_regarding = Selection {
        prefix: "/registry/events/".into(),
        labels: None,
        fields: Some(FieldSelector::parse_for("events.k8s.io", "events", "regarding.name=p").expect("supported")),
    };
    assert!(by_regarding.selects(&object));
}
