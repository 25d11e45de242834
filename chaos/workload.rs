//! The client load every chaos run applies, in real time or simulated time alike: clients doing random puts
//! and linearizable gets against random replicas, recording every operation, and a watcher that follows every
//! change from revision 1, moving to another replica whenever its own stalls or fails.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::etcd_client::{prefix_end, EtcdClient};
use raftsman::proto::etcd as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::history::{Op, Operation, Outcome, Recorder};
use super::watch_checker::{Acked, Bookmark, Delivered};

/// Keys the clients share (`chaos/0` ...).
pub const KEYS: usize = 4;

/// How long a client waits for one operation before calling its outcome unknown.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// What the clients wrote, for the watch checker: every value tried, and the acknowledged writes with revisions.
#[derive(Default)]
pub struct Writes {
    pub tried: HashSet<String>,
    pub acked: Vec<Acked>,
}

/// One client: random puts and linearizable gets against random replicas until `until`, pausing up to
/// `think_ms_max` between operations.
pub async fn client_loop(
    id: usize,
    seed: u64,
    clients: Vec<EtcdClient>,
    recorder: Arc<Mutex<Recorder>>,
    writes: Arc<Mutex<Writes>>,
    until: Instant,
    think_ms_max: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut n = 0u64;
    while Instant::now() < until {
        let key = format!("chaos/{}", rng.random_range(0..KEYS));
        let client = &clients[rng.random_range(0..clients.len())];
        let invoke = recorder.lock().unwrap().now();
        let (op, outcome) = if rng.random_bool(0.5) {
            n += 1;
            let value = format!("c{id}-{n}");
            writes.lock().unwrap().tried.insert(value.clone());
            let result = tokio::time::timeout(OPERATION_TIMEOUT, client.put(key.clone(), value.clone())).await;
            let outcome = match result {
                Ok(Ok(resp)) => {
                    let revision = resp.header.map_or(0, |h| h.revision);
                    writes.lock().unwrap().acked.push(Acked { revision, key: key.clone(), value: value.clone() });
                    Outcome::Ok
                }
                Ok(Err(e)) if e.code() == tonic::Code::InvalidArgument => panic!("unexpected refusal: {e}"),
                _ => Outcome::Unknown,
            };
            (Op::Write(value), outcome)
        } else {
            let result = tokio::time::timeout(OPERATION_TIMEOUT, client.get(key.clone(), false)).await;
            match result {
                Ok(Ok(r)) => {
                    let value = r.kvs.first().map(|kv| String::from_utf8(kv.value.clone()).unwrap());
                    (Op::Read(value), Outcome::Ok)
                }
                _ => (Op::Read(None), Outcome::Unknown),
            }
        };
        {
            let mut rec = recorder.lock().unwrap();
            let complete = rec.now();
            rec.record(Operation { client: id, key, op, invoke, complete, outcome });
        }
        if outcome == Outcome::Unknown {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if think_ms_max > 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..think_ms_max))).await;
        }
    }
}

/// What the watcher received: events, and the progress bookmarks between them.
#[derive(Default)]
pub struct Followed {
    pub delivered: Vec<Delivered>,
    pub bookmarks: Vec<Bookmark>,
}

/// How often the watcher asks its stream for a progress bookmark.
const PROGRESS_REQUEST_INTERVAL: Duration = Duration::from_millis(250);

/// Follows every change under `chaos/` from revision 1 until it has seen `target` (set at the end of the run),
/// moving to the next replica whenever its stream fails or stays silent for a while, and asking each stream for
/// progress bookmarks as it goes.
pub async fn follow_all_changes(clients: Vec<EtcdClient>, target: tokio::sync::watch::Receiver<i64>) -> Followed {
    use pb::watch_request::RequestUnion;
    let mut followed = Followed::default();
    let mut next = 1i64;
    let mut responses = 0usize;
    for replica in (0..clients.len()).cycle() {
        let target_now = *target.borrow();
        if target_now > 0 && next > target_now {
            return followed;
        }
        let (req_tx, req_rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchCreateRequest {
            key: b"chaos/".to_vec(),
            range_end: prefix_end(b"chaos/"),
            start_revision: next,
            ..Default::default()
        };
        let request = pb::WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        if req_tx.send(request).await.is_err() {
            continue;
        }
        let mut watch_client = clients[replica].watch_client();
        let stream = watch_client.watch(tokio_stream::wrappers::ReceiverStream::new(req_rx));
        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), stream).await else { continue };
        let mut stream = stream.into_inner();
        let mut progress = tokio::time::interval(PROGRESS_REQUEST_INTERVAL);
        loop {
            let target_now = *target.borrow();
            if target_now > 0 && next > target_now {
                return followed;
            }
            let message = tokio::select! {
                message = tokio::time::timeout(Duration::from_secs(2), stream.message()) => message,
                _ = progress.tick() => {
                    let ask = pb::WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                    };
                    let _ = req_tx.try_send(ask);
                    continue;
                }
            };
            let Ok(Ok(Some(resp))) = message else { break };
            if resp.canceled {
                break;
            }
            if resp.events.is_empty() {
                if resp.watch_id == -1 {
                    let revision = resp.header.map_or(0, |h| h.revision);
                    followed.bookmarks.push(Bookmark { after: followed.delivered.len(), revision });
                }
                continue;
            }
            responses += 1;
            for e in resp.events {
                let kv = e.kv.unwrap_or_default();
                let value = (e.r#type == pb::event::EventType::Put as i32)
                    .then(|| String::from_utf8_lossy(&kv.value).into_owned());
                next = kv.mod_revision + 1;
                followed.delivered.push(Delivered {
                    response: responses,
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value,
                });
            }
        }
        drop(req_tx);
    }
    unreachable!("cycle() never ends")
}
