//! The replicated store as operators see it: three real `raftsman server` processes on loopback, leader
//! crashes, restarts, catch-up by log and by snapshot, and full-cluster restarts.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::{eventually, put_retrying, TestCluster};
use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::local::Signal;
use raftsman::proto::etcd as pb;
use tokio_stream::wrappers::ReceiverStream;

fn key(i: usize) -> String {
    format!("k/{i:05}")
}

/// Reads every `k/` key from member `i` (serializable: what that member itself holds).
async fn local_keys(c: &TestCluster, i: usize) -> Option<BTreeMap<String, String>> {
    let r = c.clients[i].get_prefix(b"k/", true).await.ok()?;
    Some(
        r.kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
            .collect(),
    )
}

/// Writes `write(i)` for every i below `count` through `client`, from `tasks` concurrent tasks, each write
/// retried for up to `timeout` until acknowledged.
async fn put_concurrently(
    client: &EtcdClient,
    tasks: usize,
    count: usize,
    timeout: Duration,
    write: fn(usize) -> (String, String),
) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..count).step_by(tasks) {
                let (key, value) = write(i);
                put_retrying(&client, &key, &value, timeout).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// A leader stopped with SIGTERM hands its leadership to a follower before it stops: the stopping replica
/// logs the completed transfer, a follower leads, writes through the followers go on, and every acknowledged
/// one is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_hands_its_leadership_over_first() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let writer = {
        let clients: Vec<EtcdClient> = followers.iter().map(|f| c.clients[*f].clone()).collect();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                if *done.borrow() {
                    break;
                }
                if clients[i % 2].put(key(i), "v").await.is_ok() {
                    acked.push((i, Instant::now()));
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    assert!(c.local.stop(leader, Duration::from_secs(10)), "a clean stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    done_tx.send(true).unwrap();
    let acked = writer.await.unwrap();

    let log = c.log(leader);
    assert!(log.contains("handed leadership over before stopping"), "no completed transfer:\n{log}");
    let new = c.leader().await;
    assert!(followers.contains(&new), "member {new} leads");
    let after: Vec<Instant> = acked.iter().map(|(_, at)| *at).filter(|at| *at >= stopping).collect();
    assert!(!after.is_empty(), "no write acknowledged after the stop");
    let gap = std::iter::once(stopping).chain(after).collect::<Vec<_>>().windows(2).map(|w| w[1] - w[0]).max();
    eprintln!("{} writes acknowledged; longest gap from the stop on: {gap:?}", acked.len());
    let kept = c.clients[new].get_prefix(b"k/", false).await.expect("a linearizable read").kvs;
    let kept: std::collections::BTreeSet<Vec<u8>> = kept.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<usize> = acked.iter().map(|(i, _)| *i).filter(|i| !kept.contains(key(*i).as_bytes())).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_restart_and_full_restart_keep_every_acknowledged_write() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let mut acked = BTreeMap::new();

    // Phase 1: writes through a follower are forwarded to the leader.
    for i in 0..100 {
        put_retrying(&c.clients[follower], &key(i), &format!("v{i}"), Duration::from_secs(10)).await.unwrap();
        acked.insert(key(i), format!("v{i}"));
    }

    // Phase 2: SIGKILL the leader; the survivors elect another and keep taking writes.
    c.local.signal(leader, Signal::Kill);
    for i in 100..200 {
        put_retrying(&c.clients[follower], &key(i), &format!("v{i}"), Duration::from_secs(10)).await.unwrap();
        acked.insert(key(i), format!("v{i}"));
    }
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader, "a killed replica cannot lead");

    // Phase 3: the killed replica restarts on its data dir and catches up.
    c.local.start(leader).unwrap();
    eventually(Duration::from_secs(20), "the restarted replica to catch up", || async {
        (local_keys(&c, leader).await? == acked).then_some(())
    })
    .await;

    // Phase 4: stop everything cleanly, start everything again: nothing acknowledged is lost.
    for i in 0..3 {
        if !c.local.stop(i, Duration::from_secs(10)) {
            let log = c.log(i);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("replica {i} exits cleanly on SIGTERM; its log ends:\n{}", tail.join("\n"));
        }
    }
    c.local.start_all().unwrap();
    c.leader().await;
    for i in 0..3 {
        let all = eventually(Duration::from_secs(20), "a linearizable read", || async {
            c.clients[i].get_prefix(b"k/", false).await.ok()
        })
        .await;
        let found: BTreeMap<String, String> = all
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
            .collect();
        assert_eq!(found, acked, "member {i} after a full restart");
    }
}

/// Far more revisions than compaction keeps (every key rewritten many times, compaction every second), with a
/// follower down meanwhile: the history before the compaction is gone everywhere, and the follower comes back
/// through a snapshot holding only the retained history, then serves the same data and watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_purged_log_catches_up_by_snapshot_of_a_compacted_store() {
    const SNAPSHOT_COUNT: usize = 20_000;
    let snapshot_count = SNAPSHOT_COUNT.to_string();
    let mut c = TestCluster::start_with(3, &["--compaction-interval", "1s", "--snapshot-count", &snapshot_count]).await;
    let leader = c.leader().await;
    let lagging = (leader + 2) % 3;
    let writer = (leader + 1) % 3;
    c.local.signal(lagging, Signal::Kill);

    // Enough writes that the leader snapshots and purges the log the lagging follower needs; 500 keys, each
    // written about 40 times.
    let total = SNAPSHOT_COUNT + raftsman::limits::SNAPSHOT_LOGS_KEPT as usize + 500;
    const KEYS: usize = 500;
    put_concurrently(&c.clients[writer], 64, total, Duration::from_secs(10), |i| (key(i % KEYS), format!("w{i}")))
        .await;
    let expected = local_keys(&c, writer).await.unwrap();
    assert_eq!(expected.len(), KEYS);

    // The leader purges only log entries no replication stream is using; wait until it has.
    eventually(Duration::from_secs(60), "the leader to purge its log behind a snapshot", || async {
        let leader = c.leader().await;
        c.log(leader).contains("purged the log behind a snapshot").then_some(())
    })
    .await;
    c.local.start(lagging).unwrap();
    eventually(Duration::from_secs(60), "the lagging follower to catch up", || async {
        (local_keys(&c, lagging).await? == expected).then_some(())
    })
    .await;
    assert!(c.log(lagging).contains("installed a snapshot"), "the follower caught up by snapshot:\n{}", c.log(lagging));

    // The early history is compacted on the follower too, and it watches from a retained revision.
    let old = pb::RangeRequest { key: key(0).into_bytes(), revision: 2, serializable: true, ..Default::default() };
    let err = c.clients[lagging].kv().range(old).await.expect_err("revision 2 is compacted");
    assert!(err.message().contains("compacted"), "{}", err.message());
    let revision = c.clients[writer].status().await.unwrap().header.unwrap().revision;
    put_retrying(&c.clients[writer], &key(7), "after-catch-up", Duration::from_secs(10)).await.unwrap();
    let create =
        pb::WatchCreateRequest { key: key(7).into_bytes(), start_revision: revision + 1, ..Default::default() };
    let request = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) };
    let (_keep_open, requests) = tokio::sync::mpsc::channel(1);
    let requests = futures::StreamExt::chain(futures::stream::iter([request]), ReceiverStream::new(requests));
    let mut stream = c.clients[lagging].watch_client().watch(requests).await.unwrap().into_inner();
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let response = stream.message().await.unwrap().expect("the watch stays open");
            assert!(!response.canceled, "{}", response.cancel_reason);
            if let Some(event) = response.events.into_iter().next() {
                return event;
            }
        }
    })
    .await
    .expect("the change arrives");
    assert_eq!(event.kv.unwrap().value, b"after-catch-up");
}

/// Every `k/` key of member `i` with its mod revision, without the values (serializable: what that member holds).
async fn local_versions(c: &TestCluster, i: usize) -> Option<Vec<(Vec<u8>, i64)>> {
    let prefix = b"k/";
    let range_end = raftsman::cluster::etcd_client::prefix_end(prefix);
    let read =
        pb::RangeRequest { key: prefix.to_vec(), range_end, keys_only: true, serializable: true, ..Default::default() };
    let kvs = c.clients[i].kv().range(read).await.ok()?.into_inner().kvs;
    Some(kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)).collect())
}

/// The peak resident memory of a process (its high-water mark), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process runs");
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM in /proc/PID/status");
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number of kB") * 1024
}

/// A number logged as `name=N` on the first line of `log` that contains `line` (colour codes left out).
fn logged_number(log: &str, line: &str, name: &str) -> Option<u64> {
    let found = log.lines().find(|l| l.contains(line))?;
    let mut plain = String::new();
    let mut chars = found.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(ch);
        }
    }
    let value = plain.split_whitespace().find_map(|word| word.strip_prefix(&format!("{name}=")))?;
    value.parse().ok()
}

/// A snapshot several times larger than `SNAPSHOT_MEMORY_BYTES` goes to a follower that was down: it is sent,
/// received and installed a chunk and a batch at a time, and the follower's peak memory grows by less than
/// that bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_the_snapshot_memory_is_installed_within_it() {
    use raftsman::limits::SNAPSHOT_MEMORY_BYTES;
    let values = 4 * SNAPSHOT_MEMORY_BYTES / (1 << 20) + 40;
    let snapshot_count = values.to_string();
    let mut c =
        TestCluster::start_with(3, &["--snapshot-count", &snapshot_count, "--snapshot-catchup-entries", "4"]).await;
    let leader = c.leader().await;
    let lagging = (leader + 2) % 3;
    let writer = (leader + 1) % 3;
    let idle_peak = peak_rss(c.local.pid(lagging).expect("running"));
    c.local.signal(lagging, Signal::Kill);

    // Values of 1 MiB, each different, so that the store holds several times the bound; then small writes
    // until the leader snapshots, so that what the follower replays after the snapshot is small.
    let one_mib = |i: usize| (key(i), format!("{i:08}").repeat((1 << 20) / 8));
    put_concurrently(&c.clients[writer], 8, values, Duration::from_secs(30), one_mib).await;
    let mut small = 0;
    while !c.log(c.leader().await).contains("built a snapshot") {
        assert!(small < 2 * values, "no snapshot after {small} more writes");
        put_retrying(&c.clients[writer], "small", &small.to_string(), Duration::from_secs(10)).await.unwrap();
        small += 1;
    }
    eventually(Duration::from_secs(120), "the leader to purge its log behind a snapshot", || async {
        let leader = c.leader().await;
        c.log(leader).contains("purged the log behind a snapshot").then_some(())
    })
    .await;

    c.local.start(lagging).unwrap();
    let expected = local_versions(&c, writer).await.unwrap();
    assert_eq!(expected.len(), values);
    eventually(Duration::from_secs(180), "the lagging follower to install the snapshot", || async {
        logged_number(&c.log(lagging), "installed a snapshot", "bytes")
    })
    .await;
    eventually(Duration::from_secs(60), "the lagging follower to catch up", || async {
        (local_versions(&c, lagging).await? == expected).then_some(())
    })
    .await;
    let last = key(values - 1);
    let read = pb::RangeRequest { key: last.clone().into_bytes(), serializable: true, ..Default::default() };
    let kv = c.clients[lagging].kv().range(read).await.unwrap().into_inner().kvs.remove(0);
    assert_eq!(kv.value, format!("{:08}", values - 1).repeat((1 << 20) / 8).into_bytes(), "{last} on the follower");

    let log = c.log(lagging);
    let installed = logged_number(&log, "installed a snapshot", "bytes").expect("logged");
    assert!(
        installed > 4 * SNAPSHOT_MEMORY_BYTES as u64,
        "the snapshot holds {installed} bytes, too few to show anything"
    );
    let peak = peak_rss(c.local.pid(lagging).expect("running"));
    let grown = peak.saturating_sub(idle_peak);
    eprintln!("snapshot of {installed} bytes installed; follower peak memory {idle_peak} idle, {peak} after");
    assert!(
        grown < SNAPSHOT_MEMORY_BYTES as u64,
        "installing a snapshot of {installed} bytes took the follower's peak memory from {idle_peak} to {peak} bytes, \
         more than SNAPSHOT_MEMORY_BYTES ({SNAPSHOT_MEMORY_BYTES}) above its idle peak"
    );
}
