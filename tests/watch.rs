//! Watches as etcd defines them: from an old revision, every event exactly once and in order, across a
//! leader change, and resumable from any revision that is not compacted.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::{eventually, put_retrying, TestCluster};
use raftsman::cluster::etcd_client::{prefix_end, EtcdClient};
use raftsman::cluster::local::Signal;
use raftsman::proto::etcd as pb;
use tokio::sync::mpsc;

/// One watch stream on one replica.
struct Watch {
    rx: mpsc::UnboundedReceiver<pb::WatchResponse>,
    _requests: mpsc::Sender<pb::WatchRequest>,
}

async fn watch(client: &EtcdClient, prefix: &[u8], start_revision: i64) -> Watch {
    watch_with(client, prefix, start_revision, false).await
}

async fn watch_with(client: &EtcdClient, prefix: &[u8], start_revision: i64, prev_kv: bool) -> Watch {
    let create = pb::WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        start_revision,
        prev_kv,
        ..Default::default()
    };
    watch_created(client, create).await
}

async fn watch_created(client: &EtcdClient, create: pb::WatchCreateRequest) -> Watch {
    let (req_tx, req_rx) = mpsc::channel(4);
    req_tx
        .send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .unwrap();
    let mut stream =
        client.watch_client().watch(tokio_stream::wrappers::ReceiverStream::new(req_rx)).await.unwrap().into_inner();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            if tx.send(resp).is_err() {
                return;
            }
        }
    });
    Watch { rx, _requests: req_tx }
}

impl Watch {
    /// Collects (revision, key) events until `done` says the collection is complete (or 30 s pass).
    async fn collect_until(&mut self, mut done: impl FnMut(&[(i64, String)]) -> bool) -> Vec<(i64, String)> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&events) {
            let resp = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("watch events arrive before the deadline")
                .expect("the watch stream stays open");
            assert!(!resp.canceled, "watch canceled: {}", resp.cancel_reason);
            for e in resp.events {
                let kv = e.kv.unwrap();
                events.push((kv.mod_revision, String::from_utf8(kv.key).unwrap()));
            }
        }
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_an_old_revision_sees_every_event_once_in_order_across_a_leader_change() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let survivor = (leader + 1) % 3;

    // Some history exists before the watch starts.
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..50 {
        let k = format!("w/{i:04}");
        acked.insert(k.clone(), put_retrying(&c.clients[survivor], &k, "v", Duration::from_secs(10)).await.unwrap());
    }
    let start = acked.values().min().copied().unwrap();
    let mut w = watch(&c.clients[survivor], b"w/", start).await;

    // Writes continue while the leader is killed.
    for i in 50..200 {
        if i == 100 {
            c.local.signal(leader, Signal::Kill);
        }
        let k = format!("w/{i:04}");
        acked.insert(k.clone(), put_retrying(&c.clients[survivor], &k, "v", Duration::from_secs(10)).await.unwrap());
    }
    assert_ne!(c.leader().await, leader);

    let wanted: BTreeSet<(i64, String)> = acked.iter().map(|(k, r)| (*r, k.clone())).collect();
    let events = w
        .collect_until(|events| {
            let seen: BTreeSet<_> = events.iter().cloned().collect();
            wanted.is_subset(&seen)
        })
        .await;

    // In order, each event once, nothing that was not written.
    assert!(events.windows(2).all(|p| p[0].0 <= p[1].0), "revisions never go back: {events:?}");
    let unique: BTreeSet<_> = events.iter().cloned().collect();
    assert_eq!(unique.len(), events.len(), "no duplicates");
    assert!(events.iter().all(|(_, k)| acked.contains_key(k)));

    // A second watcher resumes from the middle and sees exactly the suffix the first saw.
    let middle = events[events.len() / 2].0;
    let suffix: Vec<_> = events.iter().filter(|(r, _)| *r >= middle).cloned().collect();
    let other_survivor = 3 - leader - survivor;
    let mut resumed = watch(&c.clients[other_survivor], b"w/", middle).await;
    let resumed_events = resumed.collect_until(|e| e.len() >= suffix.len()).await;
    assert_eq!(resumed_events, suffix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision() {
    let c = TestCluster::start(3).await;
    let client = &c.clients[0];
    for i in 0..10 {
        put_retrying(client, &format!("c/{i}"), "v", Duration::from_secs(10)).await.unwrap();
    }
    let current = client.status().await.unwrap().header.unwrap().revision;
    client.kv().compact(pb::CompactionRequest { revision: current - 2, physical: false }).await.unwrap();
    // Watches are served from the replica's own state: wait until this replica has applied the compaction.
    eventually(Duration::from_secs(10), "the compaction to be applied locally", || async {
        let old = pb::RangeRequest { key: b"c/0".to_vec(), revision: 1, serializable: true, ..Default::default() };
        let refused = client.kv().range(old).await.err()?;
        (refused.code() == tonic::Code::OutOfRange).then_some(())
    })
    .await;
    let mut w = watch(client, b"c/", 1).await;
    let cancel = eventually(Duration::from_secs(10), "the cancel response", || {
        let got = w.rx.try_recv().ok();
        async move { got.filter(|r| r.canceled) }
    })
    .await;
    assert_eq!(cancel.compact_revision, current - 2);
    assert!(cancel.cancel_reason.contains("compacted"), "{}", cancel.cancel_reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_prev_kv_sees_the_values_each_change_replaced() {
    let c = TestCluster::start(3).await;
    let client = &c.clients[0];
    let first = put_retrying(client, "p/k", "v1", Duration::from_secs(10)).await.unwrap();
    put_retrying(client, "p/k", "v2", Duration::from_secs(10)).await.unwrap();
    client.kv().delete_range(pb::DeleteRangeRequest { key: b"p/k".to_vec(), ..Default::default() }).await.unwrap();

    let mut w = watch_with(client, b"p/", first, true).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(10), w.rx.recv()).await.unwrap().unwrap();
        for e in resp.events {
            let value = |kv: Option<pb::KeyValue>| kv.map(|kv| String::from_utf8(kv.value).unwrap());
            seen.push((e.r#type, value(e.kv), value(e.prev_kv)));
        }
    }
    let (put, delete) = (pb::event::EventType::Put as i32, pb::event::EventType::Delete as i32);
    assert_eq!(
        seen,
        vec![
            (put, Some("v1".into()), None),
            (put, Some("v2".into()), Some("v1".into())),
            (delete, Some(String::new()), Some("v2".into())),
        ]
    );
}

/// A revision larger than a response should be (a range delete of keys whose previous values are asked for)
/// reaches a watcher that asked for fragments in parts, every part but the last marked as a fragment, as etcd
/// sends it; a watcher that did not ask gets it in one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_revision_goes_in_fragments_to_a_watcher_that_asks_for_them() {
    let c = TestCluster::start(1).await;
    let client = &c.clients[0];
    let (keys, value) = (30, "x".repeat(100 * 1024));
    for i in 0..keys {
        put_retrying(client, &format!("f/{i:02}"), &value, Duration::from_secs(10)).await.unwrap();
    }
    let delete = pb::DeleteRangeRequest { key: b"f/".to_vec(), range_end: prefix_end(b"f/"), ..Default::default() };
    let deleted_at = client.kv().delete_range(delete).await.unwrap().into_inner().header.unwrap().revision;

    let create = |fragment| pb::WatchCreateRequest {
        key: b"f/".to_vec(),
        range_end: prefix_end(b"f/"),
        start_revision: deleted_at,
        prev_kv: true,
        fragment,
        ..Default::default()
    };
    // Each response of the deleted revision as (events, encoded bytes, marked as a fragment).
    let responses = |mut w: Watch| async move {
        let mut parts = Vec::new();
        let mut events = 0;
        while events < keys {
            let resp = tokio::time::timeout(Duration::from_secs(10), w.rx.recv()).await.unwrap().unwrap();
            if resp.events.is_empty() {
                continue;
            }
            assert!(resp.events.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == deleted_at));
            events += resp.events.len();
            let bytes = resp.events.iter().map(prost::Message::encoded_len).sum::<usize>();
            parts.push((resp.events.len(), bytes, resp.fragment));
        }
        parts
    };
    let parts = responses(watch_created(client, create(true)).await).await;
    assert!(parts.len() > 1, "{parts:?}");
    assert!(parts.iter().all(|&(_, bytes, _)| bytes <= raftsman::limits::WATCH_FRAGMENT_BYTES), "{parts:?}");
    let marks: Vec<bool> = parts.iter().map(|&(_, _, fragment)| fragment).collect();
    assert_eq!(marks, [vec![true; parts.len() - 1], vec![false]].concat());
    assert_eq!(parts.iter().map(|&(events, _, _)| events).sum::<usize>(), keys);

    let whole = responses(watch_created(client, create(false)).await).await;
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert_eq!((whole[0].0, whole[0].2), (keys, false));
}
