//! The scheduler benchmark: a three-replica cluster and one `raftsman agent --runtime fake --fake-nodes N`
//! serving N nodes, then bare pods created by concurrent clients through a follower.
//!
//! Measured: the time from the first create until every pod is bound and until every pod reports Running
//! (a watch from before the first create sees each pod's first binding and first Running status), the binding
//! throughput, each replica's resident memory with the nodes and pods stored, and the time from a SIGKILL of
//! the leader until the new leader's scheduler binds its first pod (pods keep arriving through a follower
//! throughout), and the CPU time each process used, which says what the run was bound by; and, before the
//! cluster starts, the scheduler's core deciding the same pods onto the same nodes without the API. Targets are the issue's: 2,000 pods/s bound, failover under 2 s. Every loop is bounded.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

use super::api::create_pods;
use super::{kube_cluster, leader_index, BenchError};
use crate::cluster::local::{process_cpu_secs, LocalCluster, Signal};
use crate::scheduler::model::{NodeFacts, PodFacts, Ready, Resources};
use crate::scheduler::queue::{BindOutcome, Decision, Queue};

/// How long the fake agent's nodes may take to register and turn Ready.
const NODES_READY_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct SchedulerBenchConfig {
    pub dir: std::path::PathBuf,
    pub raftsman: std::path::PathBuf,
    pub nodes: usize,
    pub pods: usize,
    pub clients: usize,
}

impl Default for SchedulerBenchConfig {
    fn default() -> Self {
        SchedulerBenchConfig {
            dir: std::env::temp_dir().join("raftsman-bench"),
            raftsman: "raftsman".into(),
            nodes: 1_000,
            pods: 10_000,
            clients: 50,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SchedulerResult {
    pub created_secs: f64,
    pub bound_secs: f64,
    pub running_secs: f64,
    pub bound: usize,
    pub running: usize,
    pub create_errors: u64,
    pub failover_first_binding_ms: Option<f64>,
    pub rss_mib: Vec<f64>,
    /// The scheduler's own decisions per second with these nodes and pods, without the API (`core_decisions`).
    pub core_decisions_per_sec: f64,
    /// CPU seconds used from the first create until every pod reported Running: the leader, the two
    /// followers, the agent, and this process (the clients and the watch).
    pub cpu_secs: Vec<f64>,
}

/// The scheduler's core alone: `pods` bench pods (with the tolerations admission gives them) decided onto
/// `nodes` nodes of the fake agent's size, each binding confirmed at once, as fast as the queue decides; no API,
/// no writes. Returns decisions per second: what the scheduler could do if writes were free.
pub fn core_decisions(nodes: usize, pods: usize) -> f64 {
    let mut queue = Queue::default();
    let allocatable: Resources = crate::agent::default_fake_capacity()
        .into_iter()
        .filter_map(|(k, v)| Some((k, crate::apis::quantity::Quantity::parse(&v.0)?)))
        .collect();
    for i in 0..nodes {
        let name = format!("fake-{i}");
        let labels = [("kubernetes.io/hostname".to_string(), name.clone())].into();
        let node = NodeFacts {
            name,
            resource_version: "1".into(),
            labels,
            taints: Vec::new(),
            unschedulable: false,
            ready: Ready::True,
            allocatable: allocatable.clone(),
        };
        queue.set_node(node);
    }
    let mut pod = super::api::pod("template");
    let tolerations = serde_json::json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.tolerations = serde_json::from_value(tolerations).ok();
    }
    let template = PodFacts::from_pod(&pod);
    for i in 0..pods {
        let name = super::api::pod_name(i);
        queue.set_pod(Arc::new(PodFacts { uid: format!("uid-{i}"), name, ..template.clone() }));
    }
    let started = Instant::now();
    let mut decided = 0;
    while decided < pods {
        let round = queue.round(Instant::now(), crate::limits::SCHEDULER_WRITES_IN_FLIGHT_MAX);
        if round.decisions.is_empty() {
            break;
        }
        for decision in round.decisions {
            decided += 1;
            if let Decision::Bind { pod, node } = decision {
                queue.bound(&pod.uid, BindOutcome::Bound, Instant::now());
                queue.set_pod(Arc::new(PodFacts { node_name: Some(node), ..(*pod).clone() }));
            }
        }
    }
    decided as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON)
}

/// CPU seconds used so far by the leader, the followers, the agent and this process, in that order.
fn cpu_use(cluster: &LocalCluster, leader: usize, agent: u32) -> Vec<f64> {
    let followers = (0..3).filter(|i| *i != leader);
    let replicas = std::iter::once(leader).chain(followers).map(|i| cluster.cpu_secs(i).unwrap_or(f64::NAN));
    let others = [agent, std::process::id()].map(|pid| process_cpu_secs(pid).unwrap_or(f64::NAN));
    replicas.chain(others).collect()
}

fn setup(reason: impl ToString) -> BenchError {
    BenchError::Setup { system: "raftsman scheduler", reason: reason.to_string() }
}

/// Kills the agent when the benchmark ends, however it ends.
pub(super) struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When each pod was first seen bound and first seen Running, from a watch started before the pods exist.
#[derive(Default)]
struct Seen {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn follow(pods: Api<Pod>, from: String, seen: Arc<Mutex<Seen>>, expected: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut from = from;
        // A watch ends after its timeout; resume from the last event, a bounded number of times.
        for _ in 0..20 {
            let Ok(stream) = pods.watch(&WatchParams::default().timeout(290), &from).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = stream.boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else { continue };
                from = p.metadata.resource_version.clone().unwrap_or(from);
                let name = p.metadata.name.clone().unwrap_or_default();
                let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let mut s = seen.lock().expect("seen lock");
                if bound {
                    s.bound.entry(name.clone()).or_insert_with(Instant::now);
                }
                if running {
                    s.running.entry(name).or_insert_with(Instant::now);
                }
                if s.running.len() >= expected && s.bound.len() >= expected {
                    return;
                }
            }
        }
    })
}

async fn ready_nodes(nodes: &Api<Node>) -> usize {
    let Ok(list) = nodes.list(&ListParams::default()).await else { return 0 };
    let ready = |n: &Node| {
        let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
    };
    list.items.iter().filter(|n| ready(n)).count()
}

/// Starts `raftsman agent --runtime fake --fake-nodes NODES` against every replica of `cluster`, as the admin
/// (no node's own certificate may act for many nodes), its data under `dir/agent` and its log (JSON lines) in
/// `dir/agent.log`.
pub(super) fn start_fake_agent(
    raftsman: &Path,
    cluster: &LocalCluster,
    dir: &Path,
    nodes: usize,
) -> std::io::Result<AgentProcess> {
    let servers: Vec<String> = cluster.members.iter().map(|m| m.api_addr.to_string()).collect();
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let agent = Command::new(raftsman)
        .args(["--log-json", "agent", "--node-name", "fake", "--runtime", "fake"])
        .args(["--servers", &servers.join(",")])
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig(0))
        .args(["--fake-nodes", &nodes.to_string()])
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(AgentProcess(agent))
}

/// Waits until `count` nodes are Ready, polling for at most `NODES_READY_WAIT`; returns whether they are.
pub(super) async fn wait_for_ready_nodes(client: &kube::Client, count: usize) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + NODES_READY_WAIT;
    while ready_nodes(&nodes).await < count {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    true
}

pub async fn run(config: SchedulerBenchConfig) -> Result<SchedulerResult, BenchError> {
    let core_decisions_per_sec = core_decisions(config.nodes, config.pods);
    eprintln!("scheduler: the core alone decides {core_decisions_per_sec:.0} pods/s");
    let dir = config.dir.join("raftsman-scheduler");
    let (mut cluster, client) = kube_cluster(&config.raftsman, &dir).await.map_err(setup)?;
    let agent = start_fake_agent(&config.raftsman, &cluster, &dir, config.nodes).map_err(setup)?;
    let agent_pid = agent.0.id();
    if !wait_for_ready_nodes(&client, config.nodes).await {
        return Err(setup(format!("{} nodes were not Ready within {NODES_READY_WAIT:?}", config.nodes)));
    }
    eprintln!("scheduler: {} fake nodes Ready", config.nodes);

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let from = pods.list_metadata(&ListParams::default().limit(1)).await.map_err(setup)?.metadata.resource_version;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let watcher = follow(pods.clone(), from.unwrap_or_default(), seen.clone(), config.pods);
    let leader = leader_index(&cluster).await.ok_or_else(|| setup("no leader"))?;
    let cpu_before = cpu_use(&cluster, leader, agent_pid);
    let started = Instant::now();
    let (_, create_errors, _) = create_pods(&pods, 0, config.pods, config.clients).await;
    let mut result = SchedulerResult { create_errors, core_decisions_per_sec, ..SchedulerResult::default() };
    result.created_secs = started.elapsed().as_secs_f64();
    let _ = tokio::time::timeout(Duration::from_secs(600), watcher).await;
    let cpu_after = cpu_use(&cluster, leader, agent_pid);
    result.cpu_secs = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a - b).collect();
    {
        let s = seen.lock().expect("seen lock");
        let last = |m: &HashMap<String, Instant>| m.values().max().map(|t| t.duration_since(started).as_secs_f64());
        result.bound = s.bound.len();
        result.running = s.running.len();
        result.bound_secs = last(&s.bound).unwrap_or(f64::NAN);
        result.running_secs = last(&s.running).unwrap_or(f64::NAN);
    }
    eprintln!(
        "scheduler: {} pods created in {:.1} s, {} bound by {:.1} s, {} Running by {:.1} s",
        config.pods, result.created_secs, result.bound, result.bound_secs, result.running, result.running_secs
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    result.rss_mib = (0..3).filter_map(|i| cluster.rss_bytes(i)).map(|b| b as f64 / (1024.0 * 1024.0)).collect();

    // Failover: pods keep arriving through a follower; the first one bound after the kill times the takeover.
    let follower = (leader + 1) % 3;
    let pods: Api<Pod> = Api::default_namespaced(cluster.kube_client(follower).await.map_err(setup)?);
    let from = pods.list_metadata(&ListParams::default().limit(1)).await.map_err(setup)?.metadata.resource_version;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let extra = 200;
    let watcher = follow(pods.clone(), from.unwrap_or_default(), seen.clone(), extra);
    let killed = Instant::now();
    cluster.signal(leader, Signal::Kill);
    for i in 0..extra {
        let _ = pods.create(&PostParams::default(), &super::api::pod(&format!("after-{i}"))).await;
        if killed.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), watcher).await;
    let first = seen.lock().expect("seen lock").bound.values().min().copied();
    result.failover_first_binding_ms = first.map(|t| t.duration_since(killed).as_secs_f64() * 1000.0);
    eprintln!("scheduler: first binding {:?} ms after the leader's SIGKILL", result.failover_first_binding_ms);
    Ok(result)
}

pub fn table(config: &SchedulerBenchConfig, r: &SchedulerResult) -> String {
    let rss = r.rss_mib.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" / ");
    let per_sec = |n: usize, secs: f64| if secs > 0.0 { format!("{:.0}", n as f64 / secs) } else { "-".into() };
    let failover = r.failover_first_binding_ms.map_or("none".into(), |ms| format!("{ms:.0}"));
    let cpu = r.cpu_secs.iter().map(|s| format!("{s:.0}")).collect::<Vec<_>>().join(" / ");
    let mut out = format!(
        "| Scheduler ({} fake nodes, {} pods by {} clients) | value | target |\n|---|---:|---|\n",
        config.nodes, config.pods, config.clients
    );
    let rows = [
        ("pods created, s".to_string(), format!("{:.1}", r.created_secs), String::new()),
        ("create errors".into(), r.create_errors.to_string(), "0".into()),
        ("first create to all bound, s".into(), format!("{:.1} ({} bound)", r.bound_secs, r.bound), String::new()),
        ("bound pods/s".into(), per_sec(r.bound, r.bound_secs), ">= 2000".into()),
        ("last create to all bound, s".into(), format!("{:.1}", r.bound_secs - r.created_secs), String::new()),
        (
            "first create to all Running, s".into(),
            format!("{:.1} ({} Running)", r.running_secs, r.running),
            String::new(),
        ),
        ("leader SIGKILL to first binding, ms".into(), failover, "< 2000".into()),
        (
            "scheduler core alone (no API, no writes): decisions/s".into(),
            format!("{:.0}", r.core_decisions_per_sec),
            String::new(),
        ),
        ("RSS per replica, MiB".into(), rss, String::new()),
        ("CPU s until all Running: leader / followers / agent / clients".into(), cpu, String::new()),
    ];
    for (name, value, target) in rows {
        out.push_str(&format!("| {name} | {value} | {target} |\n"));
    }
    out
}
