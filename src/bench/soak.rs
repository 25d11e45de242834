//! The soak benchmark: a three-replica cluster left running under the load a real cluster never stops making,
//! sampled at a fixed period to see what grows.
//!
//! The load: one `raftsman agent --runtime fake --fake-nodes N` (each node renews its Lease every
//! `AGENT_LEASE_RENEW_MS` and reports its Node status), and a bounded pod churn through one follower: `pods`
//! bare pods are created first, then every minute the `churn_per_minute` oldest are deleted and as many new ones
//! created, so that bindings and pod status writes go on while the number of pods stays the same.
//!
//! Sampled every `sample` period: the store's revision (the header of a read), and for each replica its resident
//! memory, the size of its data dir on disk and the size of its `snap/` dir (the latest snapshot). At the end,
//! one follower is stopped with SIGTERM and started again on its data dir: the time until its `/readyz` answers
//! 200, and its memory once it is ready. Every loop ends at the soak's deadline or after a fixed number of
//! rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use super::api::{create_pods, pod_name};
use super::scheduler::{start_fake_agent, wait_for_ready_nodes};
use super::{kube_cluster, leader_index, BenchError};
use crate::agent::balancer::{probe, Health};
use crate::cluster::local::{LocalCluster, Signal};

/// How often the churn replaces its slice of pods.
const CHURN_PERIOD: Duration = Duration::from_secs(60);
/// How long the restarted follower may take to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// How long the restarted follower may take to answer `/readyz` with 200.
const READY_WAIT: Duration = Duration::from_secs(120);
/// Files and directories a data dir walk visits at most.
const DIR_ENTRIES_MAX: usize = 100_000;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Debug)]
pub struct SoakBenchConfig {
    pub dir: std::path::PathBuf,
    pub raftsman: std::path::PathBuf,
    pub nodes: usize,
    /// Pods kept in the store.
    pub pods: usize,
    /// Pods deleted and replaced every minute (at most `pods`).
    pub churn_per_minute: usize,
    /// Concurrent clients creating and deleting pods.
    pub clients: usize,
    pub duration: Duration,
    pub sample: Duration,
}

impl Default for SoakBenchConfig {
    fn default() -> Self {
        SoakBenchConfig {
            dir: std::env::temp_dir().join("raftsman-bench"),
            raftsman: "raftsman".into(),
            nodes: 1_000,
            pods: 1_000,
            churn_per_minute: 100,
            clients: 10,
            duration: Duration::from_secs(30 * 60),
            sample: Duration::from_secs(60),
        }
    }
}

/// One sample; the vectors hold one entry per replica, in member order.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub secs: f64,
    pub revision: Option<i64>,
    pub rss_bytes: Vec<Option<u64>>,
    pub data_bytes: Vec<u64>,
    pub snapshot_bytes: Vec<u64>,
}

/// The follower restarted at the end.
#[derive(Clone, Debug, Default)]
pub struct Restart {
    pub member: String,
    /// From SIGTERM until the process exited (or was killed after `STOP_WAIT`).
    pub stop_secs: f64,
    pub killed: bool,
    /// From the start until `/readyz` answered 200; None if it did not within `READY_WAIT`.
    pub ready_secs: Option<f64>,
    pub rss_after_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct SoakResult {
    pub members: Vec<String>,
    pub samples: Vec<Sample>,
    pub replaced: usize,
    pub churn_errors: u64,
    pub restart: Option<Restart>,
}

fn setup(reason: impl ToString) -> BenchError {
    BenchError::Setup { system: "raftsman soak", reason: reason.to_string() }
}

pub async fn run(config: SoakBenchConfig) -> Result<SoakResult, BenchError> {
    let dir = config.dir.join("raftsman-soak");
    let (mut cluster, client) = kube_cluster(&config.raftsman, &dir).await.map_err(setup)?;
    let _agent = start_fake_agent(&config.raftsman, &cluster, &dir, config.nodes).map_err(setup)?;
    if !wait_for_ready_nodes(&client, config.nodes).await {
        return Err(setup(format!("{} nodes were not Ready in time", config.nodes)));
    }
    let pods: Api<Pod> = Api::default_namespaced(client);
    let (_, create_errors, _) = create_pods(&pods, 0, config.pods, config.clients).await;
    eprintln!("soak: {} fake nodes Ready, {} pods created ({create_errors} errors)", config.nodes, config.pods);

    let started = Instant::now();
    let deadline = started + config.duration;
    let churn = churn(pods, &config, started, deadline);
    let mut result =
        SoakResult { members: cluster.members.iter().map(|m| m.name.clone()).collect(), ..Default::default() };
    let periods = (config.duration.as_secs_f64() / config.sample.as_secs_f64()).ceil() as u32;
    for k in 0..=periods {
        tokio::time::sleep_until((started + config.sample * k).min(deadline).into()).await;
        let s = sample(&cluster, started).await;
        eprintln!("soak: {}", row(&s));
        result.samples.push(s);
    }
    let churned = tokio::time::timeout(CHURN_PERIOD, churn).await;
    (result.replaced, result.churn_errors) = churned.ok().and_then(Result::ok).unwrap_or_default();

    // A missing leader or a failed start costs the restart figures, not the samples.
    result.restart = match leader_index(&cluster).await {
        Some(leader) => {
            restart(&mut cluster, (leader + 1) % 3).await.inspect_err(|e| eprintln!("soak: restart: {e}")).ok()
        }
        None => None,
    };
    if let Some(r) = &result.restart {
        eprintln!(
            "soak: follower {} exited {:.2} s after SIGTERM, ready {:?} s after its start",
            r.member, r.stop_secs, r.ready_secs
        );
    }
    Ok(result)
}

/// Every `CHURN_PERIOD` until `deadline`, deletes the oldest `churn_per_minute` pods and creates as many new
/// ones. Returns the pods replaced and the requests that failed.
fn churn(
    pods: Api<Pod>,
    config: &SoakBenchConfig,
    started: Instant,
    deadline: Instant,
) -> tokio::task::JoinHandle<(usize, u64)> {
    let (kept, clients) = (config.pods, config.clients);
    let per_round = config.churn_per_minute.min(kept);
    let rounds = (deadline - started).as_secs() / CHURN_PERIOD.as_secs();
    tokio::spawn(async move {
        let (mut replaced, mut errors) = (0, 0);
        for round in 1..=rounds {
            let at = started + CHURN_PERIOD * round as u32;
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            errors += delete_pods(&pods, replaced, per_round, clients).await;
            errors += create_pods(&pods, kept + replaced, per_round, clients).await.1;
            replaced += per_round;
        }
        (replaced, errors)
    })
}

/// Deletes pods `first..first+count` (as `create_pods` named them) with `clients` concurrent requests; returns
/// how many failed.
async fn delete_pods(api: &Api<Pod>, first: usize, count: usize, clients: usize) -> u64 {
    let deletes = futures::stream::iter(first..first + count).map(|i| {
        let api = api.clone();
        async move { api.delete(&pod_name(i), &DeleteParams::default()).await.is_err() }
    });
    deletes.buffer_unordered(clients.max(1)).filter(|failed| std::future::ready(*failed)).count().await as u64
}

async fn sample(cluster: &LocalCluster, started: Instant) -> Sample {
    let revision = revision(cluster).await;
    Sample {
        secs: started.elapsed().as_secs_f64(),
        revision,
        rss_bytes: (0..cluster.members.len()).map(|i| cluster.rss_bytes(i)).collect(),
        data_bytes: cluster.members.iter().map(|m| dir_bytes(&m.data_dir)).collect(),
        snapshot_bytes: cluster.members.iter().map(|m| dir_bytes(&m.data_dir.join("snap"))).collect(),
    }
}

/// The store's current revision, from the header of a read on the first replica that answers.
async fn revision(cluster: &LocalCluster) -> Option<i64> {
    for client in cluster.etcd_clients().ok()? {
        if let Some(header) = client.get("soak", false).await.ok().and_then(|r| r.header) {
            return Some(header.revision);
        }
    }
    None
}

/// The sizes of the files under `dir`, summed (at most `DIR_ENTRIES_MAX` entries visited; files that vanish
/// during the walk count as empty).
fn dir_bytes(dir: &Path) -> u64 {
    let (mut pending, mut visited, mut total) = (vec![dir.to_path_buf()], 0, 0);
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.filter_map(Result::ok) {
            visited += 1;
            if visited > DIR_ENTRIES_MAX {
                return total;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Stops member `i` with SIGTERM, starts it again on its data dir and times it until `/readyz` answers 200.
async fn restart(cluster: &mut LocalCluster, i: usize) -> std::io::Result<Restart> {
    let member = cluster.members[i].name.clone();
    let stopping = Instant::now();
    cluster.signal(i, Signal::Term);
    while cluster.is_running(i) && stopping.elapsed() < STOP_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = cluster.is_running(i);
    if killed {
        cluster.signal(i, Signal::Kill);
    }
    let stop_secs = stopping.elapsed().as_secs_f64();
    let starting = Instant::now();
    cluster.start(i)?;
    let mut ready_secs = None;
    let tls = cluster.anonymous_tls()?;
    while starting.elapsed() < READY_WAIT {
        if probe(cluster.members[i].api_addr, Some(tls.clone())).await == Health::Ready {
            ready_secs = Some(starting.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Restart { member, stop_secs, killed, ready_secs, rss_after_bytes: cluster.rss_bytes(i) })
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

fn row(s: &Sample) -> String {
    let rss = s.rss_bytes.iter().map(|b| b.map_or("-".into(), mib));
    let data = s.data_bytes.iter().copied().map(mib);
    let snapshot = s.snapshot_bytes.iter().copied().max().map_or("-".into(), mib);
    let revision = s.revision.map_or("-".into(), |r| r.to_string());
    let cells: Vec<String> =
        [format!("{:.1}", s.secs / 60.0), revision].into_iter().chain(rss).chain(data).chain([snapshot]).collect();
    format!("| {} |", cells.join(" | "))
}

/// The growth per hour of `value` over the samples, by least squares; None with fewer than two samples.
fn per_hour(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples.iter().filter_map(|s| Some((s.secs / 3600.0, value(s)?))).collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The samples as a markdown table, then a summary: growth per hour of each replica's memory and data dir,
/// the write rate, and the restart.
pub fn table(config: &SoakBenchConfig, r: &SoakResult) -> String {
    let names = |what: &str| r.members.iter().map(|m| format!("{what} {m}, MiB")).collect::<Vec<_>>();
    let header: Vec<String> = ["minute".to_string(), "revision".into()]
        .into_iter()
        .chain(names("RSS"))
        .chain(names("data dir"))
        .chain(["snapshot (largest), MiB".into()])
        .collect();
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---:|".repeat(header.len()));
    for s in &r.samples {
        out.push_str(&row(s));
        out.push('\n');
    }
    let each = |value: &dyn Fn(&Sample, usize) -> Option<f64>| {
        let per_member = (0..r.members.len()).map(|i| per_hour(&r.samples, |s| value(s, i)));
        per_member.map(|g| g.map_or("-".into(), |g| format!("{g:+.1}"))).collect::<Vec<_>>().join(" / ")
    };
    let rss_growth = each(&|s, i| s.rss_bytes[i].map(|b| b as f64 / MIB));
    let data_growth = each(&|s, i| Some(s.data_bytes[i] as f64 / MIB));
    let writes =
        per_hour(&r.samples, |s| s.revision.map(|r| r as f64)).map_or("-".into(), |g| format!("{:.0}", g / 3600.0));
    let last = r.samples.last().cloned().unwrap_or_default();
    let at_end = |v: Vec<String>| v.join(" / ");
    let mut rows = vec![
        ("revisions per second (store writes)".to_string(), writes),
        ("RSS growth per hour, MiB".into(), rss_growth),
        ("data dir growth per hour, MiB".into(), data_growth),
        ("RSS at the end, MiB".into(), at_end(last.rss_bytes.iter().map(|b| b.map_or("-".into(), mib)).collect())),
        ("data dir at the end, MiB".into(), at_end(last.data_bytes.iter().copied().map(mib).collect())),
        ("snapshot at the end, MiB".into(), at_end(last.snapshot_bytes.iter().copied().map(mib).collect())),
        ("pods replaced (failed requests)".into(), format!("{} ({})", r.replaced, r.churn_errors)),
    ];
    match &r.restart {
        Some(restart) => {
            let stop = format!("{:.2}{}", restart.stop_secs, if restart.killed { " (killed)" } else { "" });
            rows.push((format!("follower {}: SIGTERM to exit, s", restart.member), stop));
            let ready = restart.ready_secs.map_or(format!("not ready within {READY_WAIT:?}"), |s| format!("{s:.2}"));
            rows.push((format!("follower {}: start to /readyz 200, s", restart.member), ready));
            let rss = restart.rss_after_bytes.map_or("-".into(), mib);
            rows.push((format!("follower {}: RSS once ready, MiB", restart.member), rss));
        }
        None => rows.push(("follower restart".into(), "not measured (no leader, or the start failed)".into())),
    }
    out.push_str(&format!(
        "\n| Soak ({} fake nodes, {} pods, {} replaced per minute, {:.0} min; per replica: {}) | value |\n|---|---:|\n",
        config.nodes,
        config.pods,
        config.churn_per_minute.min(config.pods),
        config.duration.as_secs_f64() / 60.0,
        r.members.join(" / ")
    ));
    for (name, value) in rows {
        out.push_str(&format!("| {name} | {value} |\n"));
    }
    out
}

/// The samples as CSV, one column per replica and measure, sizes in MiB (what `deploy/plot-soak.py` reads).
pub fn csv(r: &SoakResult) -> String {
    let names = |what: &str| r.members.iter().map(|m| format!("{what}_mib_{m}")).collect::<Vec<_>>();
    let header: Vec<String> = ["minute".to_string(), "revision".into()]
        .into_iter()
        .chain(names("rss"))
        .chain(names("data"))
        .chain(names("snapshot"))
        .collect();
    let mut out = header.join(",") + "\n";
    for s in &r.samples {
        let rss = s.rss_bytes.iter().map(|b| b.map_or(String::new(), |b| format!("{:.2}", b as f64 / MIB)));
        let sizes = s.data_bytes.iter().chain(&s.snapshot_bytes).map(|b| format!("{:.2}", *b as f64 / MIB));
        let revision = s.revision.map_or(String::new(), |r| r.to_string());
        let cells: Vec<String> =
            [format!("{:.2}", s.secs / 60.0), revision].into_iter().chain(rss).chain(sizes).collect();
        out.push_str(&(cells.join(",") + "\n"));
    }
    out
}
