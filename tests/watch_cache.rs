//! The watch cache under Kubernetes watches: a thousand node watches (as a thousand agents keep) cost one store
//! watch and one decode per change, each sees exactly its own node's pods; a watch from a revision before the
//! cache's window reads the store's history and then joins the cache; a watch whose client does not read is
//! lost by the cache without holding back the others, and still sees every change once, in order; lists with
//! `resourceVersion=0` are answered from the cache.
//!
//! The replica is the real store code in this process, a single voter on the simulated disk, so that the test
//! can read the caches' counters.

mod harness;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use raftsman::apis::catalog::{self, Resource};
use raftsman::apis::selectors::FieldSelector;
use raftsman::apiserver::registry::collections::{self, ListOptions, WatchFormat};
use raftsman::apiserver::registry::objects::Objects;
use raftsman::apiserver::registry::verbs::Target;
use raftsman::apiserver::watch_cache::WatchCaches;
use raftsman::cluster::config::EVENT_TTL_DEFAULT;
use raftsman::store::command::{Command, PutOp, RequestOp, TxnOp};
use raftsman::store::disk::memory::MemoryDisk;
use raftsman::store::Store;
use serde_json::{json, Value};

type Events = Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>>;

fn pods() -> &'static Resource {
    catalog::find("", "v1", "pods").expect("pods are served")
}

fn pod_target() -> Target {
    Target { resource: pods(), namespace: Some("default".into()), name: None, subresource: None }
}

fn pod(name: &str, node: &str, phase: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}, "status": {"phase": phase}}))
    .expect("encodes")
}

/// Writes the objects, up to `TXN_OPS_MAX` per revision; returns the last revision.
async fn put_all(store: &Store, objects: Vec<(String, Vec<u8>)>) -> i64 {
    let mut revision = 0;
    for chunk in objects.chunks(100) {
        let success = chunk
            .iter()
            .map(|(k, v)| RequestOp::Put(PutOp { key: k.as_bytes().to_vec(), value: v.clone(), ..PutOp::default() }))
            .collect();
        let applied = store.propose(Command::Txn(TxnOp { compare: vec![], success, failure: vec![] })).await;
        let applied = applied.expect("the write is applied");
        applied.outcome.expect("the transaction succeeds");
        revision = applied.revision;
    }
    revision
}

fn node_of(i: usize, nodes: usize) -> String {
    format!("node-{}", i % nodes)
}

/// `count` pods spread over `nodes` node names, in the given phase.
fn pods_on_nodes(count: usize, nodes: usize, phase: &str) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| (format!("/registry/pods/default/pod-{i}"), pod(&format!("pod-{i}"), &node_of(i, nodes), phase)))
        .collect()
}

fn watch(caches: &std::sync::Arc<WatchCaches>, from: i64, fields: Option<&str>) -> Events {
    let opts = ListOptions {
        resource_version: Some(from.to_string()),
        field_selector: fields.map(|f| FieldSelector::parse_for("", "pods", f).expect("a field selector")),
        ..ListOptions::default()
    };
    Box::pin(collections::watch(caches.clone(), pod_target(), opts, WatchFormat::Objects))
}

/// Reads events until `count` have arrived: (type, name, resourceVersion, phase) each.
async fn read_events(events: &mut Events, count: usize) -> Vec<(String, String, i64, String)> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    while out.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("events in time")
            .expect("the watch goes on")
            .expect("infallible");
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).expect("a JSON event");
            assert_ne!(event["type"], "ERROR", "{event}");
            let object = &event["object"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            out.push((
                text(&event["type"]),
                text(&object["metadata"]["name"]),
                text(&object["metadata"]["resourceVersion"]).parse().expect("a resourceVersion"),
                text(&object["status"]["phase"]),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_node_watches_cost_one_store_watch_and_one_decode_per_change() {
    const NODES: usize = 1000;
    const PODS: usize = 2000;
    let store = harness::solo::replica(MemoryDisk::new(Duration::ZERO)).await;
    let caches = WatchCaches::new(Objects::new(store.clone(), EVENT_TTL_DEFAULT));

    // Phase 1: the pods exist, two per node; one watch per node from the revision after them.
    let created = put_all(&store, pods_on_nodes(PODS, NODES, "Pending")).await;
    let mut watches: Vec<Events> =
        (0..NODES).map(|i| watch(&caches, created, Some(&format!("spec.nodeName=node-{i}")))).collect();
    let first = cache_stats(&caches, NODES).await;
    assert_eq!(first.decodes, PODS as u64, "the cache decoded each listed pod once");

    // Phase 2: every pod turns Running; each watch sees exactly its own node's two pods, in order.
    let updated = put_all(&store, pods_on_nodes(PODS, NODES, "Running")).await;
    for (i, events) in watches.iter_mut().enumerate() {
        let seen = read_events(events, 2).await;
        let expected: Vec<String> = (0..PODS).filter(|p| p % NODES == i).map(|p| format!("pod-{p}")).collect();
        assert_eq!(seen.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), expected, "node-{i}");
        assert!(seen.iter().all(|e| e.0 == "MODIFIED" && e.3 == "Running" && e.2 > created && e.2 <= updated));
    }

    // Phase 3: the cost. One store watch for all of them, none of their own; each change decoded once, and
    // its selectors evaluated for one watch, not a thousand.
    let stats = caches.stats(pods()).expect("the pods cache runs");
    assert_eq!(stats.store_watches, 1);
    assert_eq!(caches.store_watches(), 0);
    assert_eq!(stats.decodes, 2 * PODS as u64);
    assert_eq!(stats.core.watchers, NODES);
    assert_eq!(stats.core.selections, PODS as u64, "one selector evaluation per change");
    assert_eq!(stats.core.deliveries, PODS as u64);

    // Phase 4: a watch from before the cache's first list reads the store's history, then joins the cache.
    let mut old = watch(&caches, created - 1, None);
    let history = read_events(&mut old, 100 + PODS).await;
    assert!(history[..100].iter().all(|e| e.0 == "ADDED"), "the last creates, from the history");
    assert!(history[100..].iter().all(|e| e.0 == "MODIFIED"));
    assert_eq!(caches.store_watches(), 1, "the old watch read the store itself");
    let later = put_all(&store, vec![("/registry/pods/default/pod-0".into(), pod("pod-0", "node-0", "Failed"))]).await;
    let next = read_events(&mut old, 1).await;
    assert_eq!(next[0].2, later);
    assert_eq!(read_events(&mut watches[0], 1).await[0].2, later);
    let stats = cache_stats(&caches, NODES + 1).await;
    assert_eq!((stats.store_watches, caches.store_watches()), (1, 1), "the old watch joined the cache");
}

/// The pods cache's counters once `watches` watches are registered with it.
async fn cache_stats(caches: &WatchCaches, watches: usize) -> raftsman::apiserver::watch_cache::CacheStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(stats) = caches.stats(pods()).filter(|s| s.core.watchers == watches) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{watches} watches did not register: {:?}",
            caches.stats(pods())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_is_not_read_is_lost_by_the_cache_and_still_misses_nothing() {
    const PODS: usize = 6000;
    let store = harness::solo::replica(MemoryDisk::new(Duration::ZERO)).await;
    let caches = WatchCaches::new(Objects::new(store.clone(), EVENT_TTL_DEFAULT));
    let start = put_all(&store, vec![("/registry/pods/default/seed".into(), pod("seed", "n", "Pending"))]).await;

    // Phase 1: a watch whose client reads nothing, and one that reads everything as it comes.
    let mut slow = watch(&caches, start, None);
    let mut fast = watch(&caches, start, None);
    cache_stats(&caches, 2).await;

    // Phase 2: more changes than the cache keeps pending for one watch.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { put_all(&store, pods_on_nodes(PODS, 10, "Pending")).await })
    };
    let seen_fast = read_events(&mut fast, PODS).await;
    let last = writer.await.expect("the writer");
    assert_eq!(seen_fast.last().map(|e| e.2), Some(last));
    let stats = caches.stats(pods()).expect("the pods cache runs");
    assert!(stats.core.lost >= 1, "the slow watch was lost: {stats:?}");

    // Phase 3: the slow client reads at last: every change once, in order, from the store's history.
    let seen_slow = read_events(&mut slow, PODS).await;
    assert_eq!(seen_slow, seen_fast);
    assert!(caches.store_watches() >= 1);
    let names: BTreeMap<&str, usize> = seen_slow.iter().map(|e| (e.1.as_str(), 1)).collect();
    assert_eq!(names.len(), PODS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_at_resource_version_0_come_from_the_cache() {
    let store = harness::solo::replica(MemoryDisk::new(Duration::ZERO)).await;
    let caches = WatchCaches::new(Objects::new(store.clone(), EVENT_TTL_DEFAULT));
    let created = put_all(&store, pods_on_nodes(30, 3, "Pending")).await;
    let mut events = watch(&caches, created, None);
    let listed_once = cache_stats(&caches, 1).await.decodes;

    let list = |rv: &str, fields: Option<&str>, limit: usize| ListOptions {
        resource_version: Some(rv.into()),
        field_selector: fields.map(|f| FieldSelector::parse_for("", "pods", f).expect("a field selector")),
        limit,
        ..ListOptions::default()
    };
    let on_node_1 = collections::list_cached(&caches, &pod_target(), &list("0", Some("spec.nodeName=node-1"), 0))
        .await
        .expect("a list");
    assert_eq!(on_node_1.items.len(), 10);
    assert_eq!(on_node_1.revision, created);
    assert!(on_node_1.items.iter().all(|raw| raw.decode().expect("decodes").object["spec"]["nodeName"] == "node-1"));

    // A page from the cache continues from the store at the cache's revision.
    let page = collections::list_cached(&caches, &pod_target(), &list("0", None, 20)).await.expect("a list");
    assert_eq!(page.items.len(), 20);
    let token = page.continue_token.expect("more remain");
    let rest = ListOptions { continue_token: Some(token), ..list("", None, 20) };
    let rest = collections::list_cached(&caches, &pod_target(), &rest).await.expect("the next page");
    assert_eq!(rest.items.len(), 10);
    assert_eq!(rest.revision, created);
    assert_eq!(caches.stats(pods()).expect("running").decodes, listed_once, "no object decoded for the lists");

    // A version the cache has reached is served too; one it has not, by the store.
    let later = put_all(&store, vec![("/registry/pods/default/pod-0".into(), pod("pod-0", "node-0", "Running"))]).await;
    read_events(&mut events, 1).await;
    let at = collections::list_cached(&caches, &pod_target(), &list(&later.to_string(), None, 0)).await.expect("list");
    assert_eq!((at.items.len(), at.revision), (30, later));
}
