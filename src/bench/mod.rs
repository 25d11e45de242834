//! The side-by-side benchmark: a three-replica raftsman cluster and a three-member etcd 3.4 cluster, both
//! real processes on loopback, driven by the same etcd v3 client code in the same run.
//!
//! Measured for each: put throughput with p50/p99 latency at 1, 16 and 128 concurrent clients (256-byte
//! values), linearizable get throughput, how long streaming a snapshot of that data takes (`etcdctl snapshot
//! save`'s RPC), the longest gap between acknowledged writes when the leader is SIGKILLed under load, and the
//! resident memory of each replica afterwards. Every load loop runs until a deadline and stops by itself; all
//! traffic stays on loopback.

pub mod api;
pub mod proxy;
pub mod scheduler;
pub mod soak;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::etcd_client::EtcdClient;
use crate::cluster::local::{Flavor, LocalCluster, Signal};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Directory for both clusters' data and logs.
    pub dir: PathBuf,
    /// The raftsman binary (normally the running one).
    pub raftsman: PathBuf,
    /// The etcd binary (Debian's etcd-server).
    pub etcd: PathBuf,
    /// How long each throughput measurement runs.
    pub measure: Duration,
    /// Concurrency levels for puts.
    pub put_clients: Vec<usize>,
    /// Concurrency for gets and for the failover load.
    pub get_clients: usize,
    pub value_bytes: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            dir: std::env::temp_dir().join("raftsman-bench"),
            raftsman: PathBuf::from("raftsman"),
            etcd: PathBuf::from("etcd"),
            measure: Duration::from_secs(5),
            put_clients: vec![1, 16, 128],
            get_clients: 16,
            value_bytes: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{system}: {reason}")]
    Setup { system: &'static str, reason: String },
}

/// One load run's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// Everything measured for one system.
#[derive(Clone, Debug, Default)]
pub struct SystemResult {
    pub puts: Vec<(usize, Load)>,
    pub gets: Load,
    pub failover_gap_ms: f64,
    pub transfer_gap_ms: f64,
    pub rss_mib: Vec<f64>,
    /// How long streaming a snapshot of one replica took (Maintenance.Snapshot, as `etcdctl snapshot save`),
    /// and its size.
    pub snapshot_ms: f64,
    pub snapshot_mib: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs `clients` concurrent loops of `op` until `measure` passes, each on a connection of its own to the
/// members in turn.
async fn load<F, Fut>(cluster: &LocalCluster, clients: usize, measure: Duration, op: F) -> Load
where
    F: Fn(EtcdClient, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let connections = cluster.etcd_connections(clients).expect("the cluster's etcd credentials");
    let deadline = Instant::now() + measure;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in connections.into_iter().enumerate() {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(client.clone(), c, i).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Load {
        ops_per_sec: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        errors,
    }
}

async fn wait_for_leader(cluster: &LocalCluster, system: &'static str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let clients = cluster.etcd_clients().map_err(|e| BenchError::Setup { system, reason: e.to_string() })?;
    loop {
        for client in &clients {
            if client.status().await.is_ok_and(|s| s.leader != 0) && client.put("bench/ready", "1").await.is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup { system, reason: "no leader within 30s".into() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh three-replica raftsman cluster in `dir` (emptied first), started, and a Kubernetes client of its
/// second member, as the API-level suites drive it.
async fn kube_cluster(raftsman: &Path, dir: &Path) -> Result<(LocalCluster, kube::Client), String> {
    kube_cluster_with(raftsman, dir, &[]).await
}

/// `kube_cluster` with extra arguments for every replica's `server` command.
async fn kube_cluster_with(
    raftsman: &Path,
    dir: &Path,
    server_args: &[String],
) -> Result<(LocalCluster, kube::Client), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut cluster = LocalCluster::new(Flavor::Raftsman { binary: raftsman.to_path_buf() }, dir, 3, None)
        .map_err(|e| e.to_string())?;
    cluster.server_args = server_args.to_vec();
    cluster.start_all().map_err(|e| e.to_string())?;
    let client = cluster.kube_client(1).await?;
    Ok((cluster, client))
}

/// The index of the member that leads, by asking each one.
async fn leader_index(cluster: &LocalCluster) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader = None;
    for client in cluster.etcd_clients().ok()? {
        let s = client.status().await.ok();
        ids.push(s.as_ref().and_then(|s| s.header.as_ref()).map(|h| h.member_id));
        leader = leader.or(s.map(|s| s.leader).filter(|l| *l != 0));
    }
    ids.iter().position(|id| *id == leader)
}

/// Writes continuously through the followers, sends the leader `signal` (SIGKILL: a crash; SIGTERM: a planned
/// stop, which both systems answer by handing leadership over first), and returns the longest gap between
/// consecutive acknowledged writes around it, and the member it stopped.
async fn failover_gap(cluster: &mut LocalCluster, clients: usize, value: Vec<u8>, signal: Signal) -> (f64, usize) {
    let Some(leader) = leader_index(cluster).await else { return (f64::NAN, 0) };
    let followers: Vec<usize> = (0..cluster.members.len()).filter(|i| *i != leader).collect();
    let run_for = Duration::from_secs(8);
    let deadline = Instant::now() + run_for;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = cluster.etcd_client(followers[c % followers.len()]).expect("the cluster's etcd credentials");
        let (tx, value) = (tx.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                if client.put(format!("gap/{c}/{i}"), value.clone()).await.is_ok() {
                    let _ = tx.send(Instant::now());
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += 1;
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cluster.signal(leader, signal);
    for t in tasks {
        let _ = t.await;
    }
    let mut acks = Vec::new();
    while let Some(t) = rx.recv().await {
        acks.push(t);
    }
    acks.sort();
    let window_start = killed_at - Duration::from_secs(1);
    let mut last = window_start;
    let mut gap = Duration::ZERO;
    for t in acks.into_iter().filter(|t| *t >= window_start) {
        gap = gap.max(t.duration_since(last));
        last = t;
    }
    (gap.max(deadline.saturating_duration_since(last)).as_secs_f64() * 1000.0, leader)
}

async fn run_system(config: &BenchConfig, flavor: Flavor, system: &'static str) -> Result<SystemResult, BenchError> {
    let dir = config.dir.join(system);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Setup { system, reason: e.to_string() })?;
    let mut cluster =
        LocalCluster::new(flavor, &dir, 3, None).map_err(|e| BenchError::Setup { system, reason: e.to_string() })?;
    cluster.start_all().map_err(|e| BenchError::Setup { system, reason: format!("cannot start: {e}") })?;
    wait_for_leader(&cluster, system).await?;
    let value = vec![b'x'; config.value_bytes];
    let mut result = SystemResult::default();
    for &clients in &config.put_clients {
        let value = value.clone();
        let l = load(&cluster, clients, config.measure, move |client, c, i| {
            let value = value.clone();
            async move { client.put(format!("bench/{c}/{}", i % 1000), value).await.map(drop) }
        })
        .await;
        eprintln!("{system}: put x{clients}: {:.0}/s p50 {:.2} ms p99 {:.2} ms", l.ops_per_sec, l.p50_ms, l.p99_ms);
        result.puts.push((clients, l));
    }
    result.gets = load(&cluster, config.get_clients, config.measure, |client, c, _| async move {
        client.get(format!("bench/{c}/0"), false).await.map(drop)
    })
    .await;
    eprintln!("{system}: linearizable get x{}: {:.0}/s", config.get_clients, result.gets.ops_per_sec);
    (result.snapshot_ms, result.snapshot_mib) = snapshot_save(&cluster, system).await?;
    eprintln!("{system}: snapshot save: {:.0} ms for {:.1} MiB", result.snapshot_ms, result.snapshot_mib);
    let stopped;
    (result.transfer_gap_ms, stopped) =
        failover_gap(&mut cluster, config.get_clients, value.clone(), Signal::Term).await;
    eprintln!("{system}: write gap after leader SIGTERM: {:.0} ms", result.transfer_gap_ms);
    cluster.stop(stopped, Duration::from_secs(10));
    cluster.start(stopped).map_err(|e| BenchError::Setup { system, reason: format!("cannot restart: {e}") })?;
    wait_for_leader(&cluster, system).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    (result.failover_gap_ms, _) = failover_gap(&mut cluster, config.get_clients, value, Signal::Kill).await;
    eprintln!("{system}: write gap after leader SIGKILL: {:.0} ms", result.failover_gap_ms);
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_mib = (0..3).filter_map(|i| cluster.rss_bytes(i)).map(|b| b as f64 / (1024.0 * 1024.0)).collect();
    Ok(result)
}

/// Streams a snapshot of replica 0's state to nowhere (Maintenance.Snapshot, what `etcdctl snapshot save`
/// reads) and returns how long it took in ms and its size in MiB.
async fn snapshot_save(cluster: &LocalCluster, system: &'static str) -> Result<(f64, f64), BenchError> {
    use futures::StreamExt;
    let failed = |reason: String| BenchError::Setup { system, reason: format!("snapshot save: {reason}") };
    let client = cluster.etcd_client(0).map_err(|e| failed(e.to_string()))?;
    let started = Instant::now();
    let request = crate::proto::etcd::SnapshotRequest {};
    let mut stream = client.maintenance().snapshot(request).await.map_err(|e| failed(e.to_string()))?.into_inner();
    let mut bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.map_err(|e| failed(e.to_string()))?.blob.len();
    }
    Ok((started.elapsed().as_secs_f64() * 1000.0, bytes as f64 / (1024.0 * 1024.0)))
}

/// Runs both systems and returns the printed table.
pub async fn run(config: BenchConfig) -> Result<String, BenchError> {
    let ours = run_system(&config, Flavor::Raftsman { binary: config.raftsman.clone() }, "raftsman").await?;
    let etcd = run_system(&config, Flavor::Etcd { binary: config.etcd.clone() }, "etcd").await?;
    Ok(table(&config, &ours, &etcd))
}

fn table(config: &BenchConfig, ours: &SystemResult, etcd: &SystemResult) -> String {
    let mut rows: Vec<(String, f64, f64, &str)> = Vec::new();
    for ((clients, a), (_, b)) in ours.puts.iter().zip(&etcd.puts) {
        rows.push((format!("put x{clients}: writes/s"), a.ops_per_sec, b.ops_per_sec, "higher"));
        rows.push((format!("put x{clients}: p50 ms"), a.p50_ms, b.p50_ms, "lower"));
        rows.push((format!("put x{clients}: p99 ms"), a.p99_ms, b.p99_ms, "lower"));
    }
    rows.push((
        format!("linearizable get x{}: reads/s", config.get_clients),
        ours.gets.ops_per_sec,
        etcd.gets.ops_per_sec,
        "higher",
    ));
    rows.push(("snapshot save: ms".into(), ours.snapshot_ms, etcd.snapshot_ms, "lower"));
    rows.push(("snapshot save: MiB".into(), ours.snapshot_mib, etcd.snapshot_mib, "-"));
    rows.push(("leader SIGTERM: longest write gap ms".into(), ours.transfer_gap_ms, etcd.transfer_gap_ms, "lower"));
    rows.push(("leader SIGKILL: longest write gap ms".into(), ours.failover_gap_ms, etcd.failover_gap_ms, "lower"));
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    rows.push(("RSS per replica after, max MiB".into(), max(&ours.rss_mib), max(&etcd.rss_mib), "lower"));
    let mut out = format!(
        "| metric ({}-byte values, 3 replicas on loopback) | raftsman | etcd 3.4 | raftsman / etcd | better |\n|---|---:|---:|---:|---|\n",
        config.value_bytes
    );
    for (name, a, b, better) in rows {
        let ratio = if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        out.push_str(&format!("| {name} | {a:.2} | {b:.2} | {ratio} | {better} |\n"));
    }
    let errors: u64 = ours.puts.iter().map(|(_, l)| l.errors).sum::<u64>() + ours.gets.errors;
    let etcd_errors: u64 = etcd.puts.iter().map(|(_, l)| l.errors).sum::<u64>() + etcd.gets.errors;
    out.push_str(&format!("\nfailed requests during the throughput runs: raftsman {errors}, etcd {etcd_errors}\n"));
    out
}
