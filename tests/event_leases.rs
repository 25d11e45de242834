//! Writes with a time to live (Events) under the API: the writes of a window share one lease, granted for the
//! TTL plus the window; a write whose lease vanished (here revoked under the API) is made again with a fresh
//! lease, neither failing nor going without one; the leader's fenced writes share the same leases; other
//! writes take none. The replica is the real store code in this process, so that the test can revoke a lease
//! between two writes.

mod harness;

use std::time::Duration;

use raftsman::apiserver::registry::objects::{Allocations, Consistency, Objects};
use raftsman::store::command::{Command, KeyRange, Outcome, RangeOp};
use raftsman::store::disk::memory::MemoryDisk;
use raftsman::store::Store;
use serde_json::{json, Value};

/// Long enough that every write of the test falls within one reuse window (5% of it: 5 s).
const TTL: Duration = Duration::from_secs(100);

fn event(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Tested"})
}

fn key(name: &str) -> String {
    format!("/registry/events/default/{name}")
}

/// The lease `key` is attached to (0: none).
async fn lease_of(store: &Store, key: &str) -> i64 {
    let op = RangeOp { range: KeyRange { key: key.as_bytes().to_vec(), end: Vec::new() }, ..RangeOp::default() };
    let (_, result) = store.range(&op).await.expect("range");
    result.kvs.first().unwrap_or_else(|| panic!("{key} is stored")).lease
}

/// Writes `object` at `key` over `expected` (0: a create), expecting the write to apply; returns its revision.
async fn put(objects: &Objects, key: &str, object: &Value, expected: i64, expires: bool) -> i64 {
    let written = objects.put(key, object, expected, &[], &Allocations::default(), expires).await;
    written.expect("no error").expect("the compare holds")
}

#[tokio::test]
async fn writes_in_a_window_share_a_lease_and_a_vanished_lease_is_replaced() {
    let store = harness::solo::replica(MemoryDisk::new(Duration::ZERO)).await;
    let objects = Objects::new(store.clone(), TTL);
    let leases_before = store.lease_ids().len();

    // Phase 1: two Events written within the window share one lease, granted for the TTL plus the window.
    put(&objects, &key("a"), &event("a"), 0, true).await;
    put(&objects, &key("b"), &event("b"), 0, true).await;
    let first = lease_of(&store, &key("a")).await;
    assert_ne!(first, 0, "an Event is written with a lease");
    assert_eq!(lease_of(&store, &key("b")).await, first, "the writes of a window share one lease");
    let lease = store.lease(first, true).expect("the lease is granted");
    assert_eq!(lease.granted_ttl, 105);
    assert_eq!(lease.keys, [key("a").into_bytes(), key("b").into_bytes()]);
    assert_eq!(store.lease_ids().len(), leases_before + 1, "one grant for both");

    // Phase 2: an object written without a time to live takes no lease.
    let config_map = "/registry/configmaps/default/plain";
    let object =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "default"}});
    put(&objects, config_map, &object, 0, false).await;
    assert_eq!(lease_of(&store, config_map).await, 0);

    // Phase 3: the lease is revoked under the API, taking its Events with it. The next write names the lease it
    // holds, finds it gone, and is made again with a fresh one: it succeeds, with a lease.
    let revoked = store.propose(Command::LeaseRevoke { id: first }).await.expect("revoke");
    assert_eq!(revoked.outcome, Ok(Outcome::LeaseRevoked));
    assert!(objects.get(&key("a"), Consistency::Linearizable).await.expect("read").is_none(), "gone with it");
    let created = put(&objects, &key("c"), &event("c"), 0, true).await;
    let second = lease_of(&store, &key("c")).await;
    assert!(second != 0 && second != first, "a fresh lease: {second:x} after {first:x}");
    assert_eq!(store.lease(second, true).expect("granted").keys, [key("c").into_bytes()]);

    // Phase 4: an update puts the Event with a lease again (the current one), and a fenced write of the leader's
    // components shares it; a refused compare writes nothing and grants nothing.
    let updated = put(&objects, &key("c"), &event("c"), created, true).await;
    assert_eq!(lease_of(&store, &key("c")).await, second, "an update keeps a lease");
    let term = store.leading_term().expect("leading");
    put(&objects.fenced(term), &key("d"), &event("d"), 0, true).await;
    assert_eq!(lease_of(&store, &key("d")).await, second, "fenced writes share the replica's leases");
    let stale = objects.put(&key("c"), &event("c"), created, &[], &Allocations::default(), true).await;
    let refused = stale.expect("no error").expect_err("the compare fails");
    assert_eq!(refused.current[0].as_ref().map(|s| s.revision), Some(updated));
    assert_eq!(store.lease_ids().len(), leases_before + 1, "the revoked lease gone, one fresh lease");
}
