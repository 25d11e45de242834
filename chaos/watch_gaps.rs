//! Watches across a leader change: a watcher on a follower, writes before and after the leader is SIGKILLed,
//! checked by the watch checker. The real server passes; with the planted bug
//! `skip-watch-event-after-leader-change` the checker must find the gap.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::{prefix_end, EtcdClient};
use raftsman::cluster::local::Signal;
use raftsman::proto::etcd as pb;

use super::replicas::{self, Replicas};
use super::watch_checker::{self, Acked, Delivered};

async fn put_acked(client: &EtcdClient, key: &str, value: &str) -> Acked {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.put(key, value).await {
            Ok(r) => return Acked { revision: r.header.unwrap().revision, key: key.into(), value: value.into() },
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
}

/// Returns the watch checker's verdict on a watcher that saw writes on both sides of a leader change.
async fn watch_across_leader_change(planted_bug: Option<&str>) -> Result<(), String> {
    let Replicas { local: mut cluster, clients, dir: _dir } = replicas::start(planted_bug).await;
    let leader = replicas::wait(&clients, None).await;
    let follower = (leader + 1) % 3;

    let (req_tx, req_rx) = tokio::sync::mpsc::channel(1);
    let create = pb::WatchCreateRequest {
        key: b"w/".to_vec(),
        range_end: prefix_end(b"w/"),
        start_revision: 1,
        ..Default::default()
    };
    req_tx
        .send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .unwrap();
    let mut stream = clients[follower]
        .watch_client()
        .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await
        .unwrap()
        .into_inner();

    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(put_acked(&clients[follower], &format!("w/{i}"), &format!("v{i}")).await);
    }
    cluster.signal(leader, Signal::Kill);
    replicas::wait(&clients, Some(leader)).await;
    for i in 10..20 {
        acked.push(put_acked(&clients[follower], &format!("w/{i}"), &format!("v{i}")).await);
    }
    let last = acked.iter().map(|a| a.revision).max().unwrap();

    let mut delivered = Vec::new();
    let mut responses = 0;
    while delivered.last().is_none_or(|d: &Delivered| d.revision < last) {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the watch keeps delivering")
            .unwrap()
            .unwrap();
        responses += 1;
        for e in resp.events {
            let kv = e.kv.unwrap();
            delivered.push(Delivered {
                response: responses,
                revision: kv.mod_revision,
                key: String::from_utf8(kv.key).unwrap(),
                value: Some(String::from_utf8(kv.value).unwrap()),
            });
        }
    }
    drop(req_tx);
    let written: HashSet<String> = acked.iter().map(|a| a.value.clone()).collect();
    watch_checker::check(&delivered, &[], 1, &acked, &written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_misses_nothing_across_a_leader_change() {
    assert_eq!(watch_across_leader_change(None).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_checker_catches_a_planted_skipped_event() {
    let verdict = watch_across_leader_change(Some("skip-watch-event-after-leader-change")).await;
    assert!(verdict.as_ref().is_err_and(|e| e.contains("acknowledged write")), "not caught: {verdict:?}");
}
