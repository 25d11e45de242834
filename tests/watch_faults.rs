//! Watches whose history cannot be read: a storage fault ends a Kubernetes watch with an ERROR event carrying a
//! 500 InternalError `Status`, and cancels an etcd watcher with the fault as its reason and no compact
//! revision; neither is ever reported as a compaction (410 Expired, `ErrCompacted`), which would send clients
//! to re-list from a history that is fine. A real compaction is still reported as one.
//!
//! The replica is the real store code in this process, a single voter on the simulated disk, so that the test
//! can damage one history record under it.

mod harness;

use std::time::Duration;

use futures::StreamExt;
use raftsman::apis::catalog;
use raftsman::apiserver::etcd::EtcdService;
use raftsman::apiserver::registry::collections::{self, ListOptions, WatchFormat};
use raftsman::apiserver::registry::objects::Objects;
use raftsman::apiserver::registry::verbs::Target;
use raftsman::apiserver::watch_cache::WatchCaches;
use raftsman::cluster::config::{PlantedBugs, EVENT_TTL_DEFAULT};
use raftsman::proto::etcd as pb;
use raftsman::store::command::{Applied, Command, PutOp};
use raftsman::store::disk::memory::MemoryDisk;
use raftsman::store::disk::{Batch, Cf, Disk};
use raftsman::store::mvcc::Revision;
use raftsman::store::Store;
use serde_json::Value;

const KEY: &str = "/registry/configmaps/default/settings";

async fn put(store: &Store, key: &str, value: &str) -> i64 {
    let op = PutOp { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..PutOp::default() };
    let Applied { revision, outcome } = store.propose(Command::Put(op)).await.expect("put");
    outcome.expect("put applied");
    revision
}

fn config_map(data: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"settings","namespace":"default"}},"data":{{"k":"{data}"}}}}"#
    )
}

/// Overwrites the history record of `revision` with bytes that do not decode.
fn damage_history(disk: &MemoryDisk, revision: i64) {
    let mut batch = Batch::default();
    batch.put(Cf::History, Revision { main: revision, sub: 0 }.to_bytes(), b"not a history record".to_vec());
    disk.write(batch, true).expect("write to the simulated disk");
}

/// The first line of a Kubernetes watch from `resource_version` on, decoded.
async fn first_kube_event(store: &Store, resource_version: i64) -> Value {
    let resource = catalog::find("", "v1", "configmaps").expect("configmaps are served");
    let target = Target { resource, namespace: Some("default".into()), name: None, subresource: None };
    let opts = ListOptions { resource_version: Some(resource_version.to_string()), ..ListOptions::default() };
    let caches = WatchCaches::new(Objects::new(store.clone(), EVENT_TTL_DEFAULT));
    let mut events = Box::pin(collections::watch(caches, target, opts, WatchFormat::Objects));
    let line = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event in time")
        .expect("an event")
        .expect("infallible");
    let first = line.split(|b| *b == b'\n').next().expect("a line");
    serde_json::from_slice(first).expect("a JSON event")
}

/// The responses of an etcd watch of `KEY` from `start_revision` on, with previous values, up to the first
/// one that carries events or cancels the watcher.
async fn etcd_watch_outcome(store: &Store, start_revision: i64) -> pb::WatchResponse {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let service = EtcdService::new(store.clone(), PlantedBugs::default());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(service.routes())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = pb::watch_client::WatchClient::connect(format!("http://{addr}")).await.expect("connect");
    let create =
        pb::WatchCreateRequest { key: KEY.as_bytes().to_vec(), start_revision, prev_kv: true, ..Default::default() };
    let request = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) };
    // The request stream stays open (a closed one ends the watch) until the answer is in.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests.send(request).await.expect("queue the create request");
    let mut responses =
        client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("watch").into_inner();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let resp = responses.message().await.expect("a response").expect("the stream stays open");
            if resp.canceled || !resp.events.is_empty() {
                return resp;
            }
        }
    })
    .await
    .expect("an outcome in time");
    drop(requests);
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_cannot_be_read_is_a_storage_error_not_a_compaction() {
    // Phase 1: an object written twice; the record of its first version is damaged on disk. A watch from the
    // first version needs it as the second one's previous value.
    let disk = MemoryDisk::new(Duration::ZERO);
    let store = harness::solo::replica(disk.clone()).await;
    let first = put(&store, KEY, &config_map("one")).await;
    put(&store, KEY, &config_map("two")).await;
    damage_history(&disk, first);

    // Phase 2: the Kubernetes watch ends with a 500 InternalError, not a 410 Expired.
    let event = first_kube_event(&store, first).await;
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["kind"], "Status", "{event}");
    assert_eq!(event["object"]["code"], 500, "{event}");
    assert_eq!(event["object"]["reason"], "InternalError", "{event}");

    // Phase 3: the etcd watcher is canceled with the fault as its reason and no compact revision.
    let resp = etcd_watch_outcome(&store, first + 1).await;
    assert!(resp.canceled, "{resp:?}");
    assert_eq!(resp.compact_revision, 0, "a storage fault is not a compaction: {resp:?}");
    assert!(resp.cancel_reason.contains("history"), "{resp:?}");
    assert!(!resp.cancel_reason.contains("compacted"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_start_is_still_expired() {
    let disk = MemoryDisk::new(Duration::ZERO);
    let store = harness::solo::replica(disk).await;
    let first = put(&store, KEY, &config_map("one")).await;
    put(&store, KEY, &config_map("two")).await;
    let third = put(&store, KEY, &config_map("three")).await;
    let compacted = store.propose(Command::Compact { revision: third }).await.expect("compact");
    compacted.outcome.expect("compaction applied");

    // A watch from `first` needs the changes after it, which compaction removed.
    let event = first_kube_event(&store, first).await;
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["code"], 410, "{event}");
    assert_eq!(event["object"]["reason"], "Expired", "{event}");

    let resp = etcd_watch_outcome(&store, first + 1).await;
    assert!(resp.canceled, "{resp:?}");
    assert_eq!(resp.compact_revision, third, "{resp:?}");
}
