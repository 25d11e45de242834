//! The workload benchmark: a three-replica cluster and one fake agent serving N nodes; a Deployment scaled
//! from 0 to R replicas (time until it reports R available), then a rolling update of all R with maxSurge 25%
//! (time until every replica is updated and available), then a second update during which the leader is
//! SIGKILLed: the time until a survivor leads (its term's entry applied) and until its workload controllers
//! start (both from its log), until they make their first write (the Deployment or one of its ReplicaSets
//! changes), until the interrupted rollout has more updated replicas than at the kill, and, if the agent was
//! sending its requests to the leader, until it sends them to a live replica.
//! Targets are the issue's: R = 10,000 Running in under 10 s, failover under 2 s. Every wait is bounded.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::scheduler::{start_fake_agent, wait_for_ready_nodes};
use super::{kube_cluster, leader_index, BenchError};
use crate::cluster::local::Signal;

/// The longest any one phase may take before the benchmark gives up on it.
const PHASE_WAIT: Duration = Duration::from_secs(900);

#[derive(Clone, Debug)]
pub struct WorkloadBenchConfig {
    pub dir: std::path::PathBuf,
    pub raftsman: std::path::PathBuf,
    pub nodes: usize,
    pub replicas: i32,
}

#[derive(Clone, Debug, Default)]
pub struct WorkloadResult {
    pub scale_up_secs: Option<f64>,
    pub rolling_update_secs: Option<f64>,
    pub failover_leader_ms: Option<f64>,
    pub failover_controllers_ms: Option<f64>,
    pub failover_first_write_ms: Option<f64>,
    pub failover_progress_ms: Option<f64>,
    pub failover_agent_ms: Option<f64>,
}

fn setup(reason: impl ToString) -> BenchError {
    BenchError::Setup { system: "raftsman workloads", reason: reason.to_string() }
}

/// The Deployment's status numbers: replicas, updated, available, and its resourceVersion.
async fn numbers(api: &Api<Deployment>) -> Option<(i32, i32, i32, String)> {
    let d = api.get("bench").await.ok()?;
    let s = d.status.unwrap_or_default();
    let rv = d.metadata.resource_version.unwrap_or_default();
    Some((s.replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0), rv))
}

/// The namespace's ReplicaSets by name, each with its resourceVersion.
async fn replica_set_versions(api: &Api<ReplicaSet>) -> Option<Vec<(String, String)>> {
    let list = api.list(&ListParams::default()).await.ok()?;
    let mut versions: Vec<(String, String)> = list
        .items
        .into_iter()
        .map(|rs| (rs.metadata.name.unwrap_or_default(), rs.metadata.resource_version.unwrap_or_default()))
        .collect();
    versions.sort();
    Some(versions)
}

/// Polls until `done` holds for the Deployment's numbers; returns the seconds since `from`.
async fn wait(api: &Api<Deployment>, from: Instant, done: impl Fn(i32, i32, i32) -> bool) -> Option<f64> {
    while from.elapsed() < PHASE_WAIT {
        if let Some((replicas, updated, available, _)) = numbers(api).await {
            if done(replicas, updated, available) {
                return Some(from.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn set_image(image: &str) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}))
}

pub async fn run(config: WorkloadBenchConfig) -> Result<WorkloadResult, BenchError> {
    let dir = config.dir.join("raftsman-workloads");
    let (mut cluster, client) = kube_cluster(&config.raftsman, &dir).await.map_err(setup)?;
    let _agent = start_fake_agent(&config.raftsman, &cluster, &dir, config.nodes).map_err(setup)?;
    if !wait_for_ready_nodes(&client, config.nodes).await {
        return Err(setup(format!("{} nodes were not Ready", config.nodes)));
    }
    eprintln!("workloads: {} fake nodes Ready", config.nodes);
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "bench"}},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "bench"}},
                              "spec": {"containers": [{"name": "c", "image": "bench:1"}]}}}
    }))
    .map_err(setup)?;
    api.create(&PostParams::default(), &deployment).await.map_err(setup)?;
    let r = config.replicas;
    let mut result = WorkloadResult::default();

    let started = Instant::now();
    let scale = Patch::Merge(json!({"spec": {"replicas": r}}));
    api.patch("bench", &PatchParams::default(), &scale).await.map_err(setup)?;
    result.scale_up_secs = wait(&api, started, |replicas, _, available| replicas == r && available == r).await;
    eprintln!("workloads: 0 to {r} available in {:?} s", result.scale_up_secs);

    let started = Instant::now();
    api.patch("bench", &PatchParams::default(), &set_image("bench:2")).await.map_err(setup)?;
    let rolled = |replicas: i32, updated: i32, available: i32| replicas == r && updated == r && available == r;
    // The status must first show the new template being rolled out (updated below r).
    let _ = wait(&api, started, |_, updated, _| updated < r).await;
    result.rolling_update_secs = wait(&api, started, rolled).await;
    eprintln!("workloads: rolling update of {r} in {:?} s", result.rolling_update_secs);

    // Failover in the middle of a third rollout.
    let leader = leader_index(&cluster).await.ok_or_else(|| setup("no leader"))?;
    let follower = (leader + 1) % 3;
    let follower_client = cluster.kube_client(follower).await.map_err(setup)?;
    let api: Api<Deployment> = Api::default_namespaced(follower_client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(follower_client);
    api.patch("bench", &PatchParams::default(), &set_image("bench:3")).await.map_err(setup)?;
    let _ = wait(&api, Instant::now(), |_, updated, _| updated > r / 10 && updated < r / 2).await;
    let (_, updated_at_kill, _, rv_at_kill) = numbers(&api).await.ok_or_else(|| setup("no status"))?;
    let sets_at_kill = replica_set_versions(&sets).await.ok_or_else(|| setup("no ReplicaSets"))?;
    let killed = Instant::now();
    let killed_at = jiff::Timestamp::now();
    cluster.signal(leader, Signal::Kill);
    while killed.elapsed() < Duration::from_secs(60) {
        if let Some((_, updated, _, rv)) = numbers(&api).await {
            if result.failover_first_write_ms.is_none()
                && (rv != rv_at_kill || replica_set_versions(&sets).await.is_some_and(|v| v != sets_at_kill))
            {
                result.failover_first_write_ms = Some(killed.elapsed().as_secs_f64() * 1000.0);
            }
            if updated > updated_at_kill {
                result.failover_progress_ms = Some(killed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<_> = cluster.members.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, m)| m).collect();
    let logs: Vec<_> = survivors.iter().map(|m| m.log.clone()).collect();
    result.failover_leader_ms = first_logged(&logs, killed_at, "leading: starting the controllers");
    result.failover_controllers_ms = first_logged(&logs, killed_at, "workload controllers started");
    let live: Vec<_> = survivors.iter().map(|m| m.api_addr.to_string()).collect();
    result.failover_agent_ms = agent_moved(&dir.join("agent.log"), killed_at, &live).await;
    eprintln!(
        "workloads: after the leader's SIGKILL, a new leader {:?} ms, its workload controllers started {:?} ms, \
         first write {:?} ms, rollout moving {:?} ms, the agent on a live replica {:?} ms",
        result.failover_leader_ms,
        result.failover_controllers_ms,
        result.failover_first_write_ms,
        result.failover_progress_ms,
        result.failover_agent_ms
    );
    Ok(result)
}

/// How long after `killed_at` a replica logging to one of `logs` (plain text lines, each starting with its
/// timestamp) first logged `message`.
fn first_logged(logs: &[std::path::PathBuf], killed_at: jiff::Timestamp, message: &str) -> Option<f64> {
    let logged = logs.iter().flat_map(|log| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let at = text.lines().filter(|l| l.contains(message)).filter_map(|l| {
            let at: jiff::Timestamp = l.split_whitespace().next()?.parse().ok()?;
            (at > killed_at).then(|| at.duration_since(killed_at).as_secs_f64() * 1000.0)
        });
        at.collect::<Vec<_>>()
    });
    logged.reduce(f64::min)
}

/// How long after `killed_at` the agent logging to `log` turned to one of the replicas `live` (waiting up to
/// 30 s for it to say so).
async fn agent_moved(log: &std::path::Path, killed_at: jiff::Timestamp, live: &[String]) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let moved = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|l| {
            let fields = &l["fields"];
            let turned = fields["message"] == "agent: sending requests to this api server"
                && live.iter().any(|addr| fields["server"] == addr.as_str());
            let at: jiff::Timestamp = l["timestamp"].as_str()?.parse().ok()?;
            (turned && at > killed_at).then(|| at.duration_since(killed_at).as_secs_f64() * 1000.0)
        });
        if moved.is_some() {
            return moved;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

pub fn table(config: &WorkloadBenchConfig, r: &WorkloadResult) -> String {
    let secs = |v: Option<f64>| v.map_or("did not finish".into(), |s| format!("{s:.1} s"));
    let ms = |v: Option<f64>| v.map_or("not seen".into(), |s| format!("{s:.0} ms"));
    format!(
        "| Workloads ({} fake nodes) | raftsman | target |\n|---|---|---|\n\
         | Deployment 0 to {} available | {} | < 10 s |\n\
         | rolling update of {} (maxSurge 25%) | {} | |\n\
         | leader SIGKILL to a new leader leading | {} | |\n\
         | leader SIGKILL to its workload controllers started | {} | |\n\
         | leader SIGKILL to the controllers' first write | {} | < 2 s |\n\
         | leader SIGKILL to the rollout moving again | {} | < 2 s |\n\
         | leader SIGKILL to the agent on a live replica (if it used the leader) | {} | |\n",
        config.nodes,
        config.replicas,
        secs(r.scale_up_secs),
        config.replicas,
        secs(r.rolling_update_secs),
        ms(r.failover_leader_ms),
        ms(r.failover_controllers_ms),
        ms(r.failover_first_write_ms),
        ms(r.failover_progress_ms),
        ms(r.failover_agent_ms),
    )
}
