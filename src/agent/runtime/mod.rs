//! The container runtime interface of the agent: what `pods.rs` asks of a runtime (start, stop, remove, list)
//! and what the kubelet endpoint asks of it (log files, pod IPs, usage). Two implementations: `fake` (runs nothing,
//! for scale tests) and `process` (runs each container as a local process group).
//!
//! Keeps DESIGN.md invariant 7 for the agent: a runtime outlives the agent's connection to the API servers
//! (what it runs keeps running while no replica is reachable), and `list` reports what it runs again after a
//! restart of the agent, so the agent never starts a container twice for one attempt.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

pub mod fake;
pub mod process;

/// Which pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// What the runtime needs to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The command and then the args, as the pod gives them (the args alone when there is no command).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

/// The state of a container's latest attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running { started_at: jiff::Timestamp },
    Exited { exit_code: i32, reason: String, started_at: jiff::Timestamp, finished_at: jiff::Timestamp },
}

/// One container as the runtime knows it: its latest attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReport {
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
}

/// What a container (or a host) has used: CPU time so far, a counter that only grows while it runs, and the
/// memory it uses now (its working set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
}

/// The counters of a pod's running containers, by container name, and the pod's named metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodCounters {
    pub uid: String,
    pub containers: Vec<(String, Counters)>,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Start(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A container runtime. Every method is idempotent from the agent's point of view: the agent plans from `list`
/// and may repeat an action whose outcome it did not see.
pub trait Runtime: Send + Sync + 'static {
    /// Starts attempt `attempt` (0 first) of a container; any earlier attempt has exited.
    fn start(
        &self,
        pod: &PodRef,
        container: &ContainerSpec,
        attempt: u32,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Stops a running container: SIGTERM (to its process group), SIGKILL once `grace` has passed; returns once it has exited.
    fn stop(
        &self,
        pod_uid: &str,
        container: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Forgets a pod whose containers have all exited, removing its files.
    fn remove(&self, pod_uid: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Every container the runtime knows (the latest attempt of each), including after a restart of the agent.
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerReport>, RuntimeError>> + Send;
    /// The log file of a container's current (or, with `previous`, its previous) attempt, if any.
    fn log_path(&self, pod_uid: &str, container: &str, previous: bool) -> Option<PathBuf>;
    /// The pod's IP as this runtime gives it.
    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr>;
    /// The counters of the running containers of `pods`, the pods the agent runs as the API has them, as of
    /// `at`, about now (the fake runtime advances the counters of what they declare in annotations to `at`).
    /// Reads no more than the runtime's own state and `/proc`: cheap enough to call every few seconds.
    fn usage(&self, pods: &[Arc<Pod>], at: Instant) -> Vec<PodCounters>;
    /// The host's counters, for a runtime whose node is the host; `None` when a node uses what its pods use.
    fn node_usage(&self) -> Option<Counters>;
}
