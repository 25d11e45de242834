//! The Kubernetes API benchmark: a three-replica raftsman cluster driven through one follower's API with the
//! `kube` client, as controllers and tools drive it.
//!
//! Measured: pod creation with 50 concurrent clients until 10,000 pods are stored (throughput, p50/p99), a
//! full list of all pods (p50 and worst of ten), updates (a PUT of the listed pod with a new label, its
//! resourceVersion as precondition, as a controller writes from its cache) and merge patches (a label) of 5,000
//! pods each with 50 clients through a follower (throughput, p50/p99), a watch fan-out (100 watchers on the pods while 1,000 more
//! are created: events delivered per second and the delay from a write's acknowledgement to its arrival at
//! every watcher), and each replica's resident memory with the pods stored. There is no second system to run
//! side by side here; the targets are the (full list under 300 ms, create p99 under 20 ms) and
//! upstream's published figures. Every loop creates a fixed number of objects and stops by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

use crate::cluster::local::LocalCluster;

use super::{kube_cluster, leader_index, percentile, BenchError, Load};

#[derive(Clone, Debug)]
pub struct ApiBenchConfig {
    pub dir: std::path::PathBuf,
    pub raftsman: std::path::PathBuf,
    pub pods: usize,
    pub create_clients: usize,
    /// Pods updated, then pods patched (different pods), each with `create_clients` clients.
    pub updates: usize,
    pub patches: usize,
    pub watchers: usize,
    pub watched_creates: usize,
}

impl Default for ApiBenchConfig {
    fn default() -> Self {
        ApiBenchConfig {
            dir: std::env::temp_dir().join("raftsman-bench"),
            raftsman: "raftsman".into(),
            pods: 10_000,
            create_clients: 50,
            updates: 5_000,
            patches: 5_000,
            watchers: 100,
            watched_creates: 1_000,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ApiResult {
    pub create: Load,
    pub list_p50_ms: f64,
    pub list_max_ms: f64,
    pub list_items: usize,
    pub update: Load,
    pub patch: Load,
    pub watch_events_per_sec: f64,
    pub watch_delay_p50_ms: f64,
    pub watch_delay_p99_ms: f64,
    pub watch_missed: usize,
    pub rss_mib: Vec<f64>,
}

pub(super) fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1.0", "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .expect("a valid pod")
}

fn setup(reason: impl ToString) -> BenchError {
    BenchError::Setup { system: "raftsman api", reason: reason.to_string() }
}

/// The name `create_pods` gives its pod number `i`.
pub(super) fn pod_name(i: usize) -> String {
    format!("pod-{i}")
}

/// Creates pods `first..first+count` with `clients` concurrent clients; returns the latencies in microseconds
/// and the acknowledgement time of each pod.
pub(super) async fn create_pods(
    api: &Api<Pod>,
    first: usize,
    count: usize,
    clients: usize,
) -> (Vec<u32>, u64, HashMap<String, Instant>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(first));
    let end = first + count;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut acked) = (Vec::new(), 0u64, HashMap::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= end {
                    break;
                }
                let name = pod_name(i);
                let t = Instant::now();
                match api.create(&PostParams::default(), &pod(&name)).await {
                    Ok(_) => {
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        acked.insert(name, Instant::now());
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, acked)
        }));
    }
    let (mut all, mut errors, mut acked) = (Vec::new(), 0, HashMap::new());
    for t in tasks {
        let (l, e, a) = t.await.expect("create task");
        all.extend(l);
        errors += e;
        acked.extend(a);
    }
    (all, errors, acked)
}

/// Runs `op` on `0..count` with `clients` concurrent clients, each taking the next number; `op` says whether
/// it succeeded.
async fn timed<F, Fut>(count: usize, clients: usize, op: F) -> Load
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= count {
                    return (latencies, errors);
                }
                let t = Instant::now();
                match op(i).await {
                    true => latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    false => errors += 1,
                }
            }
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
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

/// The pods of the `default` namespace through a follower's API: `client`'s replica (member 1) unless it
/// leads, then member 2's.
async fn follower_pods(cluster: &LocalCluster, client: &kube::Client) -> Result<(usize, Api<Pod>), BenchError> {
    let leader = leader_index(&cluster.client_endpoints()).await.ok_or_else(|| setup("no leader"))?;
    if leader != 1 {
        return Ok((1, Api::default_namespaced(client.clone())));
    }
    let url: http::Uri = format!("http://{}", cluster.members[2].api_addr).parse().map_err(setup)?;
    let other = kube::Client::try_from(kube::Config::new(url)).map_err(setup)?;
    Ok((2, Api::default_namespaced(other)))
}

pub async fn run(config: ApiBenchConfig) -> Result<ApiResult, BenchError> {
    let dir = config.dir.join("raftsman-api");
    let (cluster, client) = kube_cluster(&config.raftsman, &dir).map_err(setup)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Api::<Namespace>::all(client.clone()).get_opt("default").await.ok().flatten().is_none() {
        if Instant::now() > deadline {
            return Err(setup("the API was not ready within 30s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut result = ApiResult::default();

    // Creation until the store holds `pods` pods.
    let started = Instant::now();
    let (mut latencies, errors, _) = create_pods(&pods, 0, config.pods, config.create_clients).await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    result.create = Load {
        ops_per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        errors,
    };
    eprintln!(
        "api: create x{}: {:.0}/s p50 {:.2} ms p99 {:.2} ms",
        config.create_clients, result.create.ops_per_sec, result.create.p50_ms, result.create.p99_ms
    );

    // Full lists, linearizable, as `kubectl get pods` without paging.
    let mut list_ms = Vec::new();
    let mut listed = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let list = pods.list(&ListParams::default()).await.map_err(setup)?;
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        result.list_items = list.items.len();
        listed = list.items;
    }
    list_ms.sort_by(f64::total_cmp);
    result.list_p50_ms = list_ms[list_ms.len() / 2];
    result.list_max_ms = list_ms[list_ms.len() - 1];
    eprintln!(
        "api: list of {} pods: p50 {:.0} ms max {:.0} ms",
        result.list_items, result.list_p50_ms, result.list_max_ms
    );

    // Updates of the even pods of the list, then merge patches of the odd ones, through a follower.
    let (member, writer) = follower_pods(&cluster, &client).await?;
    let listed = Arc::new(listed);
    if listed.is_empty() {
        return Err(setup("the list returned no pods"));
    }
    let (api, items) = (writer.clone(), listed.clone());
    result.update = timed(config.updates, config.create_clients, move |i| {
        let (api, items) = (api.clone(), items.clone());
        async move {
            let mut pod = items[(2 * i) % items.len()].clone();
            let name = pod.metadata.name.clone().unwrap_or_default();
            pod.metadata.labels.get_or_insert_with(Default::default).insert("updated".into(), "yes".into());
            api.replace(&name, &PostParams::default(), &pod).await.is_ok()
        }
    })
    .await;
    eprintln!(
        "api: update x{} through member {member}: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {} errors",
        config.create_clients,
        result.update.ops_per_sec,
        result.update.p50_ms,
        result.update.p99_ms,
        result.update.errors
    );
    let (api, items) = (writer.clone(), listed.clone());
    result.patch = timed(config.patches, config.create_clients, move |i| {
        let (api, items) = (api.clone(), items.clone());
        async move {
            let name = items[(2 * i + 1) % items.len()].metadata.name.clone().unwrap_or_default();
            let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"patched": "yes"}}}));
            api.patch(&name, &PatchParams::default(), &patch).await.is_ok()
        }
    })
    .await;
    eprintln!(
        "api: merge patch x{} through member {member}: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {} errors",
        config.create_clients, result.patch.ops_per_sec, result.patch.p50_ms, result.patch.p99_ms, result.patch.errors
    );

    // Watch fan-out: every watcher must see every new pod.
    let revision = pods.list_metadata(&ListParams::default().limit(1)).await.map_err(setup)?.metadata.resource_version;
    let arrivals: Arc<Mutex<HashMap<String, (usize, Instant)>>> = Arc::default();
    let mut watchers = Vec::new();
    for _ in 0..config.watchers {
        let stream = pods.watch(&WatchParams::default().timeout(120), &revision.clone().unwrap_or_default()).await;
        let mut stream = stream.map_err(setup)?.boxed();
        let (arrivals, expected) = (arrivals.clone(), config.watched_creates);
        watchers.push(tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Ok(event)) = stream.next().await {
                if let WatchEvent::Added(p) = event {
                    let name = p.metadata.name.unwrap_or_default();
                    let mut a = arrivals.lock().expect("arrivals lock");
                    let entry = a.entry(name).or_insert((0, Instant::now()));
                    entry.0 += 1;
                    entry.1 = Instant::now();
                    seen += 1;
                    if seen == expected {
                        return;
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    let (_, _, acked) = create_pods(&pods, config.pods, config.watched_creates, config.create_clients).await;
    let finish = Instant::now() + Duration::from_secs(60);
    for w in watchers {
        let _ = tokio::time::timeout(finish.saturating_duration_since(Instant::now()), w).await;
    }
    let arrivals = std::mem::take(&mut *arrivals.lock().expect("arrivals lock"));
    let delivered: usize = arrivals.values().map(|(n, _)| *n).sum();
    let last = arrivals.values().map(|(_, t)| *t).max().unwrap_or(started);
    result.watch_events_per_sec = delivered as f64 / last.duration_since(started).as_secs_f64().max(1e-9);
    let mut delays: Vec<u32> = acked
        .iter()
        .filter_map(|(name, ack)| arrivals.get(name).filter(|(n, _)| *n == config.watchers).map(|(_, t)| (*t, *ack)))
        .map(|(t, ack)| t.saturating_duration_since(ack).as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    delays.sort_unstable();
    result.watch_delay_p50_ms = percentile(&delays, 0.5);
    result.watch_delay_p99_ms = percentile(&delays, 0.99);
    result.watch_missed = config.watchers * acked.len() - delivered.min(config.watchers * acked.len());
    eprintln!(
        "api: watch fan-out x{}: {:.0} events/s, delay p50 {:.2} ms p99 {:.2} ms, missed {}",
        config.watchers,
        result.watch_events_per_sec,
        result.watch_delay_p50_ms,
        result.watch_delay_p99_ms,
        result.watch_missed
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_mib = (0..3).filter_map(|i| cluster.rss_bytes(i)).map(|b| b as f64 / (1024.0 * 1024.0)).collect();
    Ok(result)
}

pub fn table(config: &ApiBenchConfig, r: &ApiResult) -> String {
    let rss = r.rss_mib.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" / ");
    let mut out =
        String::from("| Kubernetes API (through one follower, kube client) | value | target |\n|---|---:|---|\n");
    let rows = [
        (
            format!("create pods x{}: pods/s", config.create_clients),
            format!("{:.0}", r.create.ops_per_sec),
            String::new(),
        ),
        (format!("create pods x{}: p50 ms", config.create_clients), format!("{:.2}", r.create.p50_ms), String::new()),
        (format!("create pods x{}: p99 ms", config.create_clients), format!("{:.2}", r.create.p99_ms), "< 20".into()),
        ("create errors".into(), r.create.errors.to_string(), "0".into()),
        (format!("full list of {} pods: p50 ms", r.list_items), format!("{:.0}", r.list_p50_ms), "< 300".into()),
        (format!("full list of {} pods: max ms", r.list_items), format!("{:.0}", r.list_max_ms), "< 300".into()),
        (
            format!("update pods x{} (PUT, a label): ops/s", config.create_clients),
            format!("{:.0}", r.update.ops_per_sec),
            String::new(),
        ),
        (format!("update pods x{}: p50 ms", config.create_clients), format!("{:.2}", r.update.p50_ms), String::new()),
        (format!("update pods x{}: p99 ms", config.create_clients), format!("{:.2}", r.update.p99_ms), "< 20".into()),
        ("update errors".into(), r.update.errors.to_string(), "0".into()),
        (
            format!("merge patch pods x{} (a label): ops/s", config.create_clients),
            format!("{:.0}", r.patch.ops_per_sec),
            String::new(),
        ),
        (
            format!("merge patch pods x{}: p50 ms", config.create_clients),
            format!("{:.2}", r.patch.p50_ms),
            String::new(),
        ),
        (
            format!("merge patch pods x{}: p99 ms", config.create_clients),
            format!("{:.2}", r.patch.p99_ms),
            String::new(),
        ),
        ("merge patch errors".into(), r.patch.errors.to_string(), "0".into()),
        (
            format!("watch fan-out x{}: events/s delivered", config.watchers),
            format!("{:.0}", r.watch_events_per_sec),
            String::new(),
        ),
        ("watch: ack to all watchers p50 ms".into(), format!("{:.2}", r.watch_delay_p50_ms), String::new()),
        ("watch: ack to all watchers p99 ms".into(), format!("{:.2}", r.watch_delay_p99_ms), String::new()),
        ("watch: events missed".into(), r.watch_missed.to_string(), "0".into()),
        (format!("RSS per replica with {} pods, MiB", config.pods + config.watched_creates), rss, String::new()),
    ];
    for (name, value, target) in rows {
        out.push_str(&format!("| {name} | {value} | {target} |\n"));
    }
    out
}
