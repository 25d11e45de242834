//! Stale reads from a follower: a follower is paused (SIGSTOP) while a write commits, resumed, and read from at
//! once. The real server must still answer with the write (its read waits for a read index); with the planted
//! bug `stale-follower-reads` it answers from its own state, and the linearizability checker must say so.

use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::local::Signal;

use super::history::{Op, Operation, Outcome, Recorder};
use super::linearizability::{check, Verdict};
use super::replicas::{self, Replicas};

const ROUNDS: usize = 5;

/// A put through `client`, recorded as acknowledged.
async fn recorded_put(recorder: &mut Recorder, client: &EtcdClient, key: &str, value: &str) {
    let invoke = recorder.now();
    client.put(key, value).await.unwrap();
    let complete = recorder.now();
    let op = Op::Write(value.into());
    recorder.record(Operation { client: 0, key: key.into(), op, invoke, complete, outcome: Outcome::Ok });
}

/// Runs the pause-write-resume-read rounds and returns the checker's verdict on the recorded history.
async fn paused_follower_rounds(planted_bug: Option<&str>) -> Verdict {
    let Replicas { local: mut cluster, clients, dir: _dir } = replicas::start(planted_bug).await;
    let leader = replicas::wait(&clients, None).await;
    let follower = (leader + 1) % 3;
    let mut recorder = Recorder::new(tokio::time::Instant::now());
    let key = "stale/k".to_string();

    for round in 0..ROUNDS {
        // The follower has the first value before it is paused.
        let first = format!("r{round}-a");
        recorded_put(&mut recorder, &clients[leader], &key, &first).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = clients[follower].get(key.clone(), true).await.unwrap();
            if r.kvs.first().is_some_and(|kv| kv.value == first.as_bytes()) {
                break;
            }
            assert!(Instant::now() < deadline, "the follower never caught up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Paused, it misses the second value; resumed, it is read from at once.
        cluster.signal(follower, Signal::Stop);
        let second = format!("r{round}-b");
        recorded_put(&mut recorder, &clients[leader], &key, &second).await;
        cluster.signal(follower, Signal::Cont);
        let invoke = recorder.now();
        let read = clients[follower].get(key.clone(), false).await.unwrap();
        let complete = recorder.now();
        let seen = read.kvs.first().map(|kv| String::from_utf8(kv.value.clone()).unwrap());
        recorder.record(Operation {
            client: 1,
            key: key.clone(),
            op: Op::Read(seen),
            invoke,
            complete,
            outcome: Outcome::Ok,
        });
    }
    check(&recorder.into_operations())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumed_from_sigstop_serves_no_stale_linearizable_read() {
    assert_eq!(paused_follower_rounds(None).await, Verdict::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_planted_stale_follower_read() {
    let verdict = paused_follower_rounds(Some("stale-follower-reads")).await;
    assert!(matches!(verdict, Verdict::Violation { .. }), "the planted stale read went unnoticed: {verdict:?}");
}
