//! The Kubernetes API benchmark: a three-replica raftsman cluster driven through one follower's API with the
//! `kube` client, as controllers and tools drive it.
//!
//! Measured: pod creation with 50 concurrent clients until 10,000 pods are stored (throughput, p50/p99), a
//! full list of all pods (p50 and worst of ten), updates (a PUT of the listed pod with a new label, its
//! resourceVersion as precondition, as a controller writes from its cache) and merge patches (a label) of 5,000
//! pods each with 50 clients through a follower (throughput, p50/p99), a watch fan-out (100 watchers on the pods while 1,000 more
//! are created: events delivered per second and the delay from a write's acknowledgement to its arrival at
//! every watcher), a node watch fan-out (1,000 watchers, each selecting one node's pods with
//! `fieldSelector=spec.nodeName=node-i` as an agent does, while the 10,000 pods' status is updated by 50
//! clients: the delay from each update's acknowledgement to its arrival at the watcher of its node, and the CPU
//! seconds each replica spent meanwhile), and each replica's resident memory with the pods stored. The pods
//! are bound at creation, round-robin over the node names (no Node objects: the servers run with a node monitor
//! grace period longer than the run, so nothing collects pods of missing nodes). There is no second system to
//! run side by side here; the targets are the (full list under 300 ms, create p99 under 20 ms, node
//! watch delay p99 under 100 ms) and upstream's published figures. Every loop writes a fixed number of objects
//! and stops by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

use crate::cluster::local::LocalCluster;

use super::{kube_cluster_with, leader_index, percentile, BenchError, Load};

/// The node monitor grace period the benchmark's servers run with: longer than any run, so that pods bound to
/// node names no Node has are neither collected nor evicted while they are measured.
const NODE_MONITOR_GRACE_PERIOD: &str = "24h";
/// How long the node watchers may take, after the last status update, to receive what they select.
const NODE_WATCH_DRAIN_WAIT: Duration = Duration::from_secs(300);

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
    /// Node names the pods are bound to, round-robin, and node watchers (one per name).
    pub nodes: usize,
    /// Pods whose status is updated while the node watchers watch (the first ones created).
    pub status_updates: usize,
    pub update_clients: usize,
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
            nodes: 1_000,
            status_updates: 10_000,
            update_clients: 50,
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
    pub node_watch: NodeWatchResult,
    pub rss_mib: Vec<f64>,
}

/// The node watch fan-out: status updates, each selected by the one watcher of its pod's node.
#[derive(Clone, Debug, Default)]
pub struct NodeWatchResult {
    pub updates: Load,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delivered: usize,
    pub missed: usize,
    /// From the first update until every update arrived (or the wait ended).
    pub secs: f64,
    /// CPU seconds of each replica over that time, in member order.
    pub cpu_secs: Vec<f64>,
    pub leader: Option<usize>,
}

pub(super) fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1.0", "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .expect("a valid pod")
}

/// The node name pod number `i` is bound to when pods are spread over `nodes` names.
fn node_name(i: usize, nodes: usize) -> String {
    format!("node-{}", i % nodes)
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
    create_bound_pods(api, first, count, clients, 0).await
}

/// `create_pods`, each pod bound at creation to `node_name(i, nodes)` when `nodes` is not 0.
async fn create_bound_pods(
    api: &Api<Pod>,
    first: usize,
    count: usize,
    clients: usize,
    nodes: usize,
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
                let mut pod = pod(&name);
                if nodes > 0 {
                    pod.spec.as_mut().expect("a pod spec").node_name = Some(node_name(i, nodes));
                }
                let t = Instant::now();
                match api.create(&PostParams::default(), &pod).await {
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
    let leader = leader_index(cluster).await.ok_or_else(|| setup("no leader"))?;
    if leader != 1 {
        return Ok((1, Api::default_namespaced(client.clone())));
    }
    let other = cluster.kube_client(2).await.map_err(setup)?;
    Ok((2, Api::default_namespaced(other)))
}

pub async fn run(config: ApiBenchConfig) -> Result<ApiResult, BenchError> {
    let dir = config.dir.join("raftsman-api");
    let grace = ["--node-monitor-grace-period", NODE_MONITOR_GRACE_PERIOD].map(String::from);
    let (cluster, client) = kube_cluster_with(&config.raftsman, &dir, &grace).await.map_err(setup)?;
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
    let (mut latencies, errors, _) =
        create_bound_pods(&pods, 0, config.pods, config.create_clients, config.nodes).await;
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
    let (_, _, acked) =
        create_bound_pods(&pods, config.pods, config.watched_creates, config.create_clients, config.nodes).await;
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

    result.node_watch = node_watch(&config, &cluster, &pods).await?;
    let n = &result.node_watch;
    eprintln!(
        "api: node watch x{}: {} status updates at {:.0}/s, delay p50 {:.2} ms p99 {:.2} ms, missed {}, \
         {:.1} s, CPU s {:?} (leader {:?})",
        config.nodes,
        config.status_updates,
        n.updates.ops_per_sec,
        n.delay_p50_ms,
        n.delay_p99_ms,
        n.missed,
        n.secs,
        n.cpu_secs,
        n.leader
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_mib = (0..3).filter_map(|i| cluster.rss_bytes(i)).map(|b| b as f64 / (1024.0 * 1024.0)).collect();
    Ok(result)
}

/// One watcher per node name, each with `fieldSelector=spec.nodeName=<node>`, while the status of the first
/// `status_updates` pods is updated by `update_clients` clients; each update is selected by exactly one watcher.
async fn node_watch(
    config: &ApiBenchConfig,
    cluster: &crate::cluster::local::LocalCluster,
    pods: &Api<Pod>,
) -> Result<NodeWatchResult, BenchError> {
    let updates = config.status_updates.min(config.pods);
    let revision = pods.list_metadata(&ListParams::default().limit(1)).await.map_err(setup)?.metadata.resource_version;
    let revision = revision.unwrap_or_default();
    // When each (pod, resourceVersion) arrived at its node's watcher.
    type Arrivals = Arc<Mutex<HashMap<(String, String), Instant>>>;
    let arrivals: Arrivals = Arc::default();
    let mut watchers = Vec::new();
    for node in 0..config.nodes {
        let selector = format!("spec.nodeName={}", node_name(node, config.nodes));
        let expected = (0..updates).filter(|i| i % config.nodes == node).count();
        let params = WatchParams::default().fields(&selector).timeout(290);
        let stream = pods.watch(&params, &revision).await.map_err(setup)?.boxed();
        let (pods, arrivals, mut from) = (pods.clone(), arrivals.clone(), revision.clone());
        watchers.push(tokio::spawn(async move {
            let (mut stream, mut seen) = (Some(stream), std::collections::HashSet::new());
            while seen.len() < expected {
                // A watch that times out is resumed from the last version seen, as a client does.
                let mut current = match stream.take() {
                    Some(s) => s,
                    None => match pods.watch(&params, &from).await {
                        Ok(s) => s.boxed(),
                        Err(_) => return,
                    },
                };
                while let Some(Ok(event)) = current.next().await {
                    if let WatchEvent::Modified(p) = event {
                        let (name, rv) = (p.metadata.name.unwrap_or_default(), p.metadata.resource_version);
                        let rv = rv.unwrap_or_default();
                        arrivals.lock().expect("arrivals lock").insert((name.clone(), rv.clone()), Instant::now());
                        from = rv;
                        if name.strip_prefix("pod-").and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i < updates)
                        {
                            seen.insert(name);
                        }
                        if seen.len() == expected {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let leader = leader_index(cluster).await;
    let cpu = |c: &crate::cluster::local::LocalCluster| -> Vec<f64> {
        (0..c.members.len()).map(|i| c.cpu_secs(i).unwrap_or(f64::NAN)).collect()
    };
    let cpu_before = cpu(cluster);
    let started = Instant::now();

    // The status updates, as agents report their pods Running.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..config.update_clients {
        let (pods, next) = (pods.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut acked) = (Vec::new(), 0u64, Vec::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= updates {
                    break;
                }
                let name = pod_name(i);
                let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
                let patch = serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
                let t = Instant::now();
                match pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(p) => {
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        acked.push(((name, p.metadata.resource_version.unwrap_or_default()), Instant::now()));
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, acked)
        }));
    }
    let (mut latencies, mut errors, mut acked) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        let (l, e, a) = t.await.expect("update task");
        latencies.extend(l);
        errors += e;
        acked.extend(a);
    }
    let updated = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let load = Load {
        ops_per_sec: latencies.len() as f64 / updated,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        errors,
    };

    let finish = Instant::now() + NODE_WATCH_DRAIN_WAIT;
    for w in watchers.iter_mut() {
        let _ = tokio::time::timeout(finish.saturating_duration_since(Instant::now()), w).await;
    }
    for w in watchers {
        w.abort();
    }
    let arrivals = std::mem::take(&mut *arrivals.lock().expect("arrivals lock"));
    let last = arrivals.values().max().copied().unwrap_or(started);
    let secs = last.max(started + Duration::from_secs_f64(updated)).duration_since(started).as_secs_f64();
    let cpu_after = cpu(cluster);
    let mut delays: Vec<u32> = acked
        .iter()
        .filter_map(|(key, ack)| arrivals.get(key).map(|t| t.saturating_duration_since(*ack)))
        .map(|d| d.as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    delays.sort_unstable();
    Ok(NodeWatchResult {
        updates: load,
        delay_p50_ms: percentile(&delays, 0.5),
        delay_p99_ms: percentile(&delays, 0.99),
        delivered: delays.len(),
        missed: acked.len() - delays.len(),
        secs,
        cpu_secs: cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).collect(),
        leader,
    })
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
        (
            format!("node watch x{}: status updates x{}: updates/s", config.nodes, config.update_clients),
            format!("{:.0}", r.node_watch.updates.ops_per_sec),
            String::new(),
        ),
        (
            "node watch: update p50 / p99 ms".into(),
            format!("{:.2} / {:.2}", r.node_watch.updates.p50_ms, r.node_watch.updates.p99_ms),
            String::new(),
        ),
        ("node watch: ack to its watcher p50 ms".into(), format!("{:.2}", r.node_watch.delay_p50_ms), String::new()),
        ("node watch: ack to its watcher p99 ms".into(), format!("{:.2}", r.node_watch.delay_p99_ms), "< 100".into()),
        (
            "node watch: events missed / update errors".into(),
            format!("{} / {}", r.node_watch.missed, r.node_watch.updates.errors),
            "0 / 0".into(),
        ),
        (
            format!(
                "node watch: CPU s per replica over {:.1} s (leader n{})",
                r.node_watch.secs,
                r.node_watch.leader.map_or("?".into(), |l| (l + 1).to_string())
            ),
            r.node_watch.cpu_secs.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(" / "),
            String::new(),
        ),
        (format!("RSS per replica with {} pods, MiB", config.pods + config.watched_creates), rss, String::new()),
    ];
    for (name, value, target) in rows {
        out.push_str(&format!("| {name} | {value} | {target} |\n"));
    }
    out
}
