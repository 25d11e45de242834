//! The container runtime interface of the agent: what `pods.rs` asks of a runtime (start, stop, remove, list)
//! and what the kubelet endpoint asks of it (logs, pod IPs, usage). Three implementations: `fake` (runs nothing,
//! for scale tests), `process` (runs each container as a local process group) and `docker` (runs each pod as
//! containers of a Docker Engine sharing a sandbox's namespaces).
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

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use super::hooks::Hook;
use super::kubelet::LogRequest;

pub mod docker;
pub mod fake;
pub mod process;

/// Which pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// The exit code and reason of a container that could not be started (containerd's).
pub const START_ERROR_EXIT_CODE: i32 = 128;
pub const START_ERROR: &str = "StartError";

/// What the runtime needs of a pod as a whole, for the sandbox that holds its namespaces (a runtime without
/// sandboxes ignores it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The pod's hostname: `spec.hostname`, else its name (at most 63 bytes).
    pub hostname: String,
    /// The containers' ports that ask for a port of the host.
    pub host_ports: Vec<HostPort>,
    /// `spec.shareProcessNamespace`: the containers see each other's processes.
    pub share_process_namespace: bool,
    /// The pod's `/etc/resolv.conf`, when the agent points its pods at the cluster DNS (a runtime without a
    /// filesystem of the pod's own ignores it).
    pub resolv_conf: Option<String>,
}

/// A container port bound on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub container_port: u16,
    pub host_port: u16,
    /// `TCP` or `UDP` (SCTP is refused by the API).
    pub protocol: String,
    /// The host address to bind, empty for all.
    pub host_ip: String,
}

/// What the runtime needs to start one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The pod's `command`: replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// The pod's `args`: replaces the image's command when not empty.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// `resources.limits.memory` in bytes: the container is killed (OOMKilled) beyond it.
    pub memory_limit: Option<u64>,
    /// `resources.limits.cpu` in thousandths of a CPU: the container is throttled beyond it.
    pub cpu_limit_millis: Option<u64>,
    /// When the image is pulled (`imagePullPolicy`).
    pub pull_policy: PullPolicy,
    /// The pod's volumes where the container's `volumeMounts` put them (a runtime without a filesystem of the
    /// container's own ignores them).
    pub mounts: Vec<Mount>,
    /// What its security context asks (a runtime without isolation ignores it).
    pub security: Security,
    /// Run before it is stopped (`lifecycle.preStop`).
    pub pre_stop: Option<Hook>,
    /// `stdin`: its stdin stays open for `kubectl attach -i`; `stdinOnce`: closed when the first attach that
    /// wrote to it ends; `tty`: it runs on a terminal.
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// A container's `securityContext`, its pod's filling in what it leaves unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// `runAsUser` and `runAsGroup`: the image's user when unset.
    pub user: Option<i64>,
    pub group: Option<i64>,
    /// The pod's `supplementalGroups` and `fsGroup`.
    pub supplemental_groups: Vec<i64>,
    /// `runAsNonRoot`: refuse to start as root.
    pub run_as_non_root: bool,
    pub read_only_root_filesystem: bool,
    pub privileged: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
}

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// A directory or file of the host seen in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

impl ContainerSpec {
    /// The command and then the args, for a runtime that has no image to fill them in.
    pub fn argv(&self) -> Vec<String> {
        self.command.iter().chain(&self.args).cloned().collect()
    }
}

/// What `kubectl exec` asks to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// The command reads what the client sends.
    pub stdin: bool,
    /// The command runs on a terminal (its output is then one stream).
    pub tty: bool,
}

/// Which stream a piece of a command's output came from (the channel numbers of the exec protocol).
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// A command started in a container.
pub struct ExecSession {
    /// What it writes, by stream (`STDOUT`, `STDERR`), ending once it has exited.
    pub output: futures::stream::BoxStream<'static, (u8, bytes::Bytes)>,
    /// Its input, when asked for; dropping it closes the command's stdin.
    pub stdin: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    /// Its exit code, once its output has ended.
    pub exit: futures::future::BoxFuture<'static, Result<i32, RuntimeError>>,
    /// Resizes its terminal, with `tty`.
    pub resize: Option<Resize>,
}

/// Resizes a terminal to a width and a height.
pub type Resize = Box<dyn Fn(u16, u16) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Where a container's log is read from: a CRI log file (`kubelet::container_log`), or a stream of its lines as
/// `kubectl logs` shows them, the runtime having applied the request's options but `limitBytes`.
pub enum ContainerLogs {
    File(PathBuf),
    Stream(futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>),
}

/// The state of a container's latest attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running {
        started_at: jiff::Timestamp,
    },
    Exited {
        exit_code: i32,
        reason: String,
        /// What the runtime said of the end, when it said anything (why a start failed).
        message: Option<String>,
        started_at: jiff::Timestamp,
        finished_at: jiff::Timestamp,
    },
}

/// One container as the runtime knows it: its latest attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReport {
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    /// The runtime's ids of the attempt's container and of its image, when it has any.
    pub ids: Option<RuntimeIds>,
}

/// A container's id and its image's, as the runtime names them (`docker ps`, `docker images --no-trunc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeIds {
    pub container: String,
    pub image: String,
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
        sandbox: &SandboxSpec,
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
    /// The log of a container's current (or, with `previous`, its previous) attempt, if it has one. A stream
    /// follows the attempt when `request.follow` and ends with it.
    fn logs(
        &self,
        pod_uid: &str,
        container: &str,
        request: &LogRequest,
    ) -> impl Future<Output = Result<Option<ContainerLogs>, RuntimeError>> + Send;
    /// Starts `request.command` in a running container (with its environment and working directory, in its
    /// namespaces), as `kubectl exec` does.
    fn exec_session(
        &self,
        pod_uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> impl Future<Output = Result<ExecSession, RuntimeError>> + Send;
    /// Joins a running container's own output, and its stdin when asked and the container keeps one open, as
    /// `kubectl attach` does; the session's output ends when the container exits.
    fn attach_session(
        &self,
        pod_uid: &str,
        container: &str,
        stdin: bool,
    ) -> impl Future<Output = Result<ExecSession, RuntimeError>> + Send {
        let _ = (pod_uid, container, stdin);
        async { Err(RuntimeError::Start("this node's runtime does not attach to containers".to_owned())) }
    }
    /// Runs `command` in a running container and returns its exit code (its output is dropped); an error once
    /// `timeout` has passed.
    fn exec(
        &self,
        pod_uid: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<i32, RuntimeError>> + Send {
        let request = ExecRequest { command: command.to_vec(), stdin: false, tty: false };
        let run = async move {
            let mut session = self.exec_session(pod_uid, container, request).await?;
            while session.output.next().await.is_some() {}
            session.exit.await
        };
        async move {
            tokio::time::timeout(timeout, run)
                .await
                .unwrap_or_else(|_| Err(RuntimeError::Start(format!("the command did not finish within {timeout:?}"))))
        }
    }
    /// Whether the runtime runs images (which the agent then pulls as `imagePullPolicy` says).
    fn runs_images(&self) -> bool {
        false
    }
    /// Whether the runtime mounts the pods' volumes into their containers: the agent makes volumes (and asks
    /// for the tokens they hold) only for a runtime that does.
    fn mounts_volumes(&self) -> bool {
        false
    }
    /// Whether `image` is on the node (a runtime without images has them all).
    fn image_present(&self, image: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send {
        let _ = image;
        async { Ok(true) }
    }
    /// Pulls `image` onto the node from its registry.
    fn pull_image(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        let _ = image;
        async { Ok(()) }
    }
    /// The pod's IP as this runtime gives it.
    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr>;
    /// The counters of the running containers of `pods`, the pods the agent runs as the API has them, as of
    /// `at`, about now (the fake runtime advances the counters of what they declare in annotations to `at`).
    /// Reads no more than the runtime's own state and `/proc`: cheap enough to call every few seconds.
    fn usage(&self, pods: &[Arc<Pod>], at: Instant) -> Vec<PodCounters>;
    /// The host's counters, for a runtime whose node is the host; `None` when a node uses what its pods use.
    fn node_usage(&self) -> Option<Counters>;
}
