//! Real-process chaos: three replicas on loopback, clients recording every operation, and a nemesis that
//! kills (SIGKILL, then restart) or pauses (SIGSTOP, then SIGCONT) replicas, the leader most often. After the
//! fault phase every replica runs again and the cluster must serve within a bound; then the history must be
//! linearizable, and a watcher that followed the whole run (moving to another replica whenever its own stalls
//! or fails) must have seen every acknowledged write once, in order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::local::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::history::{Op, Operation, Outcome, Recorder};
use super::linearizability::{check, Verdict};
use super::replicas::{self, Replicas};
use super::watch_checker::{self, Acked, Delivered};
use raftsman::cluster::etcd_client::prefix_end;
use raftsman::proto::etcd as pb;

const KEYS: usize = 4;
const CLIENTS: usize = 6;

fn seed() -> u64 {
    std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

fn fault_phase() -> Duration {
    Duration::from_secs(std::env::var("CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20))
}

/// What the clients wrote, for the watch checker: every value tried, and the acknowledged writes with revisions.
#[derive(Default)]
struct Writes {
    tried: HashSet<String>,
    acked: Vec<Acked>,
}

/// One client: random puts and linearizable gets against random replicas until `until`.
async fn client_loop(
    id: usize,
    seed: u64,
    clients: Vec<EtcdClient>,
    recorder: Arc<Mutex<Recorder>>,
    writes: Arc<Mutex<Writes>>,
    until: Instant,
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
            let result = tokio::time::timeout(Duration::from_secs(3), client.put(key.clone(), value.clone())).await;
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
            let result = tokio::time::timeout(Duration::from_secs(3), client.get(key.clone(), false)).await;
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
    }
}

/// Follows every change under `chaos/` from revision 1 until it has seen `target` (set at the end of the run),
/// moving to the next replica whenever its stream fails or stays silent for a while.
async fn follow_all_changes(clients: Vec<EtcdClient>, target: tokio::sync::watch::Receiver<i64>) -> Vec<Delivered> {
    let mut delivered: Vec<Delivered> = Vec::new();
    let mut next = 1i64;
    let mut responses = 0usize;
    for replica in (0..clients.len()).cycle() {
        let target_now = *target.borrow();
        if target_now > 0 && next > target_now {
            return delivered;
        }
        let (req_tx, req_rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchCreateRequest {
            key: b"chaos/".to_vec(),
            range_end: prefix_end(b"chaos/"),
            start_revision: next,
            ..Default::default()
        };
        let request = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) };
        if req_tx.send(request).await.is_err() {
            continue;
        }
        let mut watch_client = clients[replica].watch_client();
        let stream = watch_client.watch(tokio_stream::wrappers::ReceiverStream::new(req_rx));
        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), stream).await else { continue };
        let mut stream = stream.into_inner();
        while let Ok(Ok(Some(resp))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
            if resp.canceled {
                break;
            }
            if resp.events.is_empty() {
                continue;
            }
            responses += 1;
            for e in resp.events {
                let kv = e.kv.unwrap_or_default();
                let value = (e.r#type == pb::event::EventType::Put as i32)
                    .then(|| String::from_utf8_lossy(&kv.value).into_owned());
                next = kv.mod_revision + 1;
                delivered.push(Delivered {
                    response: responses,
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value,
                });
            }
            let target_now = *target.borrow();
            if target_now > 0 && next > target_now {
                return delivered;
            }
        }
        drop(req_tx);
    }
    unreachable!("cycle() never ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_replicas_under_sigkill_and_sigstop_stay_linearizable() {
    let seed = seed();
    let replay = format!("CHAOS_SEED={seed} cargo test --release --test chaos real_replicas");
    eprintln!("chaos seed {seed}; replay with: {replay}");
    let mut rng = StdRng::seed_from_u64(seed);
    let Replicas { local: mut cluster, clients, dir: _dir } = replicas::start(None).await;

    // Fault phase: clients run while the nemesis strikes.
    let recorder = Arc::new(Mutex::new(Recorder::new(Instant::now())));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let (target_tx, target_rx) = tokio::sync::watch::channel(0i64);
    let watcher = tokio::spawn(follow_all_changes(clients.clone(), target_rx));
    let fault_end = Instant::now() + fault_phase();
    let load_end = fault_end + Duration::from_secs(3);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client_loop(id, seed, clients.clone(), recorder.clone(), writes.clone(), load_end)))
        .collect();
    let mut faults = 0;
    while Instant::now() < fault_end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        let victim = match replicas::current(&clients, None).await {
            Some(l) if rng.random_bool(0.7) => l,
            _ => rng.random_range(0..3),
        };
        let down_for = Duration::from_millis(rng.random_range(200..1500));
        if rng.random_bool(0.5) {
            cluster.signal(victim, Signal::Kill);
            tokio::time::sleep(down_for).await;
            cluster.start(victim).unwrap();
        } else {
            cluster.signal(victim, Signal::Stop);
            tokio::time::sleep(down_for).await;
            cluster.signal(victim, Signal::Cont);
        }
        faults += 1;
    }

    // Healing phase: every replica runs; the cluster must serve again within a bound.
    let healed_by = Instant::now() + Duration::from_secs(15);
    writes.lock().unwrap().tried.insert("yes".into());
    loop {
        if let Ok(resp) = clients[0].put("chaos/healed", "yes").await {
            let revision = resp.header.map_or(0, |h| h.revision);
            writes.lock().unwrap().acked.push(Acked { revision, key: "chaos/healed".into(), value: "yes".into() });
            break;
        }
        assert!(Instant::now() < healed_by, "the cluster did not recover within 15s after the faults (seed {seed})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    // The watcher must reach the last acknowledged write.
    let final_revision = writes.lock().unwrap().acked.iter().map(|a| a.revision).max().unwrap_or(0);
    target_tx.send_replace(final_revision);
    let delivered = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap_or_else(|_| panic!("the watcher did not reach revision {final_revision} within 30s (seed {seed})"))
        .unwrap();
    let writes = Arc::try_unwrap(writes).ok().unwrap().into_inner().unwrap();
    if let Err(broken) = watch_checker::check(&delivered, 1, &writes.acked, &writes.tried) {
        panic!("watch guarantee broken (seed {seed}): {broken}; replay with: {replay}");
    }
    eprintln!("the watcher followed {} events up to revision {final_revision}", delivered.len());

    let history = Arc::try_unwrap(recorder).ok().unwrap().into_inner().unwrap().into_operations();
    let acked = history.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let verdict = check(&history);
    let failures = usize::from(verdict != Verdict::Ok);
    eprintln!("chaos summary: seeds=1 sim_secs=0 ops={} faults={faults} failures={failures}", history.len());
    assert!(acked > 100, "the load made progress: only {acked} acknowledged operations");
    match verdict {
        Verdict::Ok => {}
        Verdict::Violation { key, ops } => {
            // The key's operations in invocation order; the search does not say which one failed.
            let shown = ops.len().min(100);
            eprintln!("last {shown} of {} operations on {key}:", ops.len());
            for o in &ops[ops.len() - shown..] {
                eprintln!("  {o:?}");
            }
            panic!("history of {key} is not linearizable (seed {seed}); replay with: {replay}");
        }
        Verdict::Unknown { key } => panic!("the checker gave up on {key} (seed {seed}); replay with: {replay}"),
    }
}
