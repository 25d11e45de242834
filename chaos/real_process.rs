//! Real-process chaos: three replicas on loopback, clients recording every operation, and a nemesis that
//! kills (SIGKILL, then restart) or pauses (SIGSTOP, then SIGCONT) replicas, the leader most often. After the
//! fault phase every replica runs again and the cluster must serve within a bound; then the history must be
//! linearizable, and a watcher that followed the whole run (moving to another replica whenever its own stalls
//! or fails) must have seen every acknowledged write once, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::local::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::history::{Outcome, Recorder};
use super::linearizability::{check, Verdict};
use super::replicas::{self, Replicas};
use super::watch_checker::{self, Acked};
use super::workload::{client_loop, follow_all_changes, Writes};

const CLIENTS: usize = 6;

fn seed() -> u64 {
    std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

fn fault_phase() -> Duration {
    Duration::from_secs(std::env::var("CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20))
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
        .map(|id| tokio::spawn(client_loop(id, seed, clients.clone(), recorder.clone(), writes.clone(), load_end, 0)))
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
    let followed = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap_or_else(|_| panic!("the watcher did not reach revision {final_revision} within 30s (seed {seed})"))
        .unwrap();
    let writes = Arc::try_unwrap(writes).ok().unwrap().into_inner().unwrap();
    let delivered = &followed.delivered;
    if let Err(broken) = watch_checker::check(delivered, &followed.bookmarks, 1, &writes.acked, &writes.tried) {
        panic!("watch guarantee broken (seed {seed}): {broken}; replay with: {replay}");
    }
    let bookmarks = followed.bookmarks.len();
    eprintln!(
        "the watcher followed {} events and {bookmarks} bookmarks up to revision {final_revision}",
        delivered.len()
    );

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
