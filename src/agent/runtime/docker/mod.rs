//! The Docker runtime: each pod is a sandbox container holding the pod's network and IPC namespaces (its
//! hostname, its IP on the agent's pod network, its host ports), and each container attempt is a Docker
//! container joined to those namespaces (and to its process namespace with `shareProcessNamespace`). The only
//! file that names `bollard`, the Docker Engine client; the API version is negotiated with the daemon.
//!
//! What the runtime keeps, it keeps in Docker: every container it creates carries the labels upstream's
//! dockershim gave (`io.kubernetes.pod.name`, `.namespace`, `.uid`, `io.kubernetes.container.name`,
//! `io.kubernetes.docker.type`, `io.kubernetes.container.restartCount` for the attempt) and `io.raftsman.node`
//! for the node it runs for, and is named `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` (the sandbox
//! `k8s_POD_<pod>_<namespace>_<uid>_0`), so that `docker ps --filter label=io.kubernetes.pod.name=web-0` finds
//! a pod's containers, and so that a restarted agent finds what it runs by listing them.
//!
//! Invariants:
//! - A runtime sees only its node's containers (the `io.raftsman.node` label): agents sharing one daemon never
//!   touch each other's.
//! - One attempt is one container name, so a repeated start finds the container it created and at most
//!   starts it; the latest attempt and the one before it are kept (for `kubectl logs --previous`), older ones
//!   are removed.
//! - A pod's sandbox is created once, under the pod's lock, before its first container; a container never
//!   starts outside its pod's sandbox.
//! - A start that fails (a missing image, a command that cannot run) leaves no container behind and is reported
//!   as that attempt's exit (`StartError`, 128, as containerd does), so the pod's restart policy and back-off
//!   apply to it. Such failures are remembered in memory only: after a restart of the agent they are tried
//!   again.
//! - The sandbox image needs no registry: `raftsman/pause:<digest of its bytes>` is imported once from the
//!   root filesystem `pause.rs` makes.

mod cgroup;
mod pause;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum, HostConfig, HostConfigLogConfig, Ipam,
    IpamConfig, MountType, NetworkCreateRequest, PortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, ResizeContainerTTYOptions, StopContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::{
    ContainerLogs, ContainerReport, ContainerSpec, ContainerState, Counters, ExecRequest, ExecSession, Mount,
    PodCounters, PodRef, Resize, Runtime, RuntimeError, RuntimeIds, SandboxSpec, START_ERROR, START_ERROR_EXIT_CODE,
    STDERR, STDOUT,
};
use crate::agent::kubelet::LogRequest;
use crate::limits;

const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
const LABEL_TYPE: &str = "io.kubernetes.docker.type";
const LABEL_ATTEMPT: &str = "io.kubernetes.container.restartCount";
const LABEL_NODE: &str = "io.raftsman.node";
const TYPE_SANDBOX: &str = "podsandbox";
const TYPE_CONTAINER: &str = "container";
/// The container name dockershim gave sandboxes.
const SANDBOX_NAME: &str = "POD";

/// Where the agent's Docker runtime runs pods: the pod network it creates (or finds) and the node it is for.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    pub node: String,
    /// The Docker network the sandboxes join, created as a bridge on `subnet` when missing.
    pub network: String,
    pub subnet: String,
}

/// A pod's sandbox as last seen.
#[derive(Clone, Debug)]
struct Sandbox {
    id: String,
    ip: Option<IpAddr>,
}

/// An attempt's state as inspected: final once it has exited.
#[derive(Clone, Debug)]
struct Inspected {
    running: bool,
    state: ContainerState,
}

#[derive(Default)]
struct Seen {
    /// Running sandboxes by pod uid.
    sandboxes: HashMap<String, Sandbox>,
    /// Running app containers: (pod uid, container name, container id).
    running: Vec<(String, String, String)>,
}

pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    sandbox_image: String,
    /// One lock per pod, held by its starts: its sandbox is created once. Dropped when the pod is removed.
    pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    seen: Mutex<Seen>,
    /// Inspections by container id, kept while the container exists.
    inspected: Mutex<HashMap<String, Inspected>>,
    /// Attempts that could not be started, by pod uid and container name.
    failed: Mutex<HashMap<(String, String), ContainerReport>>,
}

/// A Docker API error's status code, if the daemon answered.
fn status(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn docker_error(what: &str, error: bollard::errors::Error) -> RuntimeError {
    RuntimeError::Start(format!("{what}: {error}"))
}

fn label_filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), pairs.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

fn container_name(pod: &PodRef, container: &str, attempt: u32) -> String {
    format!("k8s_{container}_{}_{}_{}_{attempt}", pod.name, pod.namespace, pod.uid)
}

fn parse_time(text: Option<&str>) -> Timestamp {
    text.and_then(|t| t.parse().ok()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What an inspection says of an attempt.
fn inspected(response: &ContainerInspectResponse) -> Inspected {
    let state = response.state.clone().unwrap_or_default();
    let started_at = parse_time(state.started_at.as_deref());
    if state.running == Some(true) {
        return Inspected { running: true, state: ContainerState::Running { started_at } };
    }
    let exit_code = state.exit_code.unwrap_or(0) as i32;
    let reason = match (state.oom_killed, exit_code) {
        (Some(true), _) => "OOMKilled",
        (_, 0) => "Completed",
        _ => "Error",
    };
    let finished_at = parse_time(state.finished_at.as_deref()).max(started_at);
    Inspected {
        running: false,
        state: ContainerState::Exited {
            exit_code,
            reason: reason.to_owned(),
            message: state.error.filter(|e| !e.is_empty()),
            started_at,
            finished_at,
        },
    }
}

/// The pod-network address of a sandbox.
fn sandbox_ip(response: &ContainerInspectResponse, network: &str) -> Option<IpAddr> {
    let networks = response.network_settings.as_ref()?.networks.as_ref()?;
    networks.get(network)?.ip_address.as_deref()?.parse().ok()
}

/// Whether a Docker daemon answers (`DOCKER_HOST`, else its default socket) within two seconds.
pub async fn engine_answers() -> bool {
    let Ok(docker) = Docker::connect_with_local_defaults() else { return false };
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), docker.ping());
    matches!(ping.await, Ok(Ok(_)))
}

impl DockerRuntime {
    /// Connects to the local Docker daemon (`DOCKER_HOST`, else its default socket), negotiating the API
    /// version, and makes sure the sandbox image and the pod network exist.
    pub async fn connect(config: DockerConfig) -> Result<DockerRuntime, RuntimeError> {
        let unreachable = |e: bollard::errors::Error| {
            let at = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
            RuntimeError::Start(format!("no Docker daemon answers at {at}: {e}"))
        };
        let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let root = pause::root_filesystem().ok_or_else(|| {
            RuntimeError::Start(format!("the Docker runtime has no sandbox program for {}", std::env::consts::ARCH))
        })?;
        let sandbox_image = format!("raftsman/pause:{:08x}", crc32fast::hash(&root));
        let runtime = DockerRuntime {
            docker,
            config,
            sandbox_image,
            pod_locks: Mutex::default(),
            seen: Mutex::default(),
            inspected: Mutex::default(),
            failed: Mutex::default(),
        };
        runtime.ensure_sandbox_image(root).await?;
        runtime.ensure_network().await?;
        Ok(runtime)
    }

    async fn ensure_sandbox_image(&self, root: Vec<u8>) -> Result<(), RuntimeError> {
        if self.docker.inspect_image(&self.sandbox_image).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = self.sandbox_image.split_once(':').expect("the image name has a tag");
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes: vec![r#"CMD ["/pause"]"#.to_owned()],
            ..Default::default()
        };
        let body = bollard::body_full(Bytes::from(root));
        let progress: Vec<_> = self
            .docker
            .create_image(Some(options), Some(body), None)
            .try_collect()
            .await
            .map_err(|e| docker_error("importing the sandbox image", e))?;
        if let Some(error) = progress.iter().find_map(|p| p.error_detail.as_ref()) {
            return Err(RuntimeError::Start(format!("importing the sandbox image: {error:?}")));
        }
        tracing::info!(image = %self.sandbox_image, "docker runtime: sandbox image imported");
        Ok(())
    }

    async fn ensure_network(&self) -> Result<(), RuntimeError> {
        if self.docker.inspect_network(&self.config.network, None).await.is_ok() {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: self.config.network.clone(),
            driver: Some("bridge".to_owned()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig { subnet: Some(self.config.subnet.clone()), ..Default::default() }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([("io.raftsman.pod-network".to_owned(), "true".to_owned())])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {
                let (network, subnet) = (&self.config.network, &self.config.subnet);
                tracing::info!(%network, %subnet, "docker runtime: pod network created");
                Ok(())
            }
            Err(e) => {
                // Another agent on this daemon may be creating it (its subnet then overlaps ours): it shows up
                // under its name a moment later.
                for _ in 0..limits::DOCKER_NETWORK_WAITS_MAX {
                    if self.docker.inspect_network(&self.config.network, None).await.is_ok() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(limits::DOCKER_NETWORK_WAIT_MS)).await;
                }
                Err(docker_error(&format!("creating the pod network {}", self.config.network), e))
            }
        }
    }

    fn labels(&self, pod: &PodRef, container: &str, kind: &str, attempt: u32) -> HashMap<String, String> {
        [
            (LABEL_POD_NAME, pod.name.as_str()),
            (LABEL_POD_NAMESPACE, pod.namespace.as_str()),
            (LABEL_POD_UID, pod.uid.as_str()),
            (LABEL_CONTAINER_NAME, container),
            (LABEL_TYPE, kind),
            (LABEL_NODE, self.config.node.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([(LABEL_ATTEMPT.to_owned(), attempt.to_string())])
        .collect()
    }

    /// This node's containers matching `labels`, stopped ones too.
    async fn containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let mut pairs = vec![(LABEL_NODE, self.config.node.as_str())];
        pairs.extend_from_slice(labels);
        let options = ListContainersOptions { all: true, filters: Some(label_filter(&pairs)), ..Default::default() };
        self.docker.list_containers(Some(options)).await.map_err(|e| docker_error("listing containers", e))
    }

    fn pod_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pod_locks.lock().expect("no panics under this lock");
        locks.entry(uid.to_owned()).or_default().clone()
    }

    /// The running sandbox of `pod`, created (and an exited one replaced) if need be. Under the pod's lock.
    async fn ensure_sandbox(&self, pod: &PodRef, spec: &SandboxSpec) -> Result<Sandbox, String> {
        let existing = self
            .containers(&[(LABEL_POD_UID, &pod.uid), (LABEL_TYPE, TYPE_SANDBOX)])
            .await
            .map_err(|e| e.to_string())?;
        for summary in existing {
            let id = summary.id.unwrap_or_default();
            if summary.state == Some(ContainerSummaryStateEnum::RUNNING) {
                if let Some(sandbox) = self.seen.lock().expect("no panics under this lock").sandboxes.get(&pod.uid) {
                    if sandbox.id == id {
                        return Ok(sandbox.clone());
                    }
                }
                return self.sandbox_seen(pod, id).await;
            }
            tracing::info!(pod = %pod.name, namespace = %pod.namespace, "docker runtime: replacing a stopped sandbox");
            self.remove_container(&id).await.map_err(|e| e.to_string())?;
        }
        let mut bindings: HashMap<String, Vec<PortBinding>> = HashMap::new();
        for port in &spec.host_ports {
            let key = format!("{}/{}", port.container_port, port.protocol.to_ascii_lowercase());
            bindings.entry(key).or_default().push(PortBinding {
                host_ip: Some(port.host_ip.clone()).filter(|ip| !ip.is_empty()),
                host_port: Some(port.host_port.to_string()),
            });
        }
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> =
            bindings.into_iter().map(|(port, b)| (port, Some(b))).collect();
        let body = ContainerCreateBody {
            image: Some(self.sandbox_image.clone()),
            hostname: Some(spec.hostname.clone()),
            labels: Some(self.labels(pod, SANDBOX_NAME, TYPE_SANDBOX, 0)),
            exposed_ports: Some(port_bindings.keys().cloned().collect()).filter(|p: &Vec<String>| !p.is_empty()),
            host_config: Some(HostConfig {
                network_mode: Some(self.config.network.clone()),
                ipc_mode: Some("shareable".to_owned()),
                port_bindings: Some(port_bindings).filter(|p| !p.is_empty()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = container_name(pod, SANDBOX_NAME, 0);
        let id = self.create(&name, body).await?;
        self.docker.start_container(&id, None).await.map_err(|e| format!("starting the pod's sandbox: {e}"))?;
        if let Some(text) = &spec.resolv_conf {
            self.write_resolv_conf(&id, text).await?;
        }
        self.sandbox_seen(pod, id).await
    }

    /// Puts the pod's resolv.conf in place of Docker's, in the sandbox's own file (which the containers joined
    /// to it share), as dockershim did: written in place, since Docker bind-mounts that very file.
    async fn write_resolv_conf(&self, sandbox: &str, text: &str) -> Result<(), String> {
        let inspected = self
            .docker
            .inspect_container(sandbox, None)
            .await
            .map_err(|e| format!("inspecting the pod's sandbox: {e}"))?;
        let Some(path) = inspected.resolv_conf_path.filter(|p| !p.is_empty()) else {
            return Err("the pod's sandbox has no resolv.conf to write".to_owned());
        };
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || std::fs::write(&path, text))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the pod's resolv.conf: {e}"))
    }

    async fn sandbox_seen(&self, pod: &PodRef, id: String) -> Result<Sandbox, String> {
        let response =
            self.docker.inspect_container(&id, None).await.map_err(|e| format!("inspecting the pod's sandbox: {e}"))?;
        let sandbox = Sandbox { id, ip: sandbox_ip(&response, &self.config.network) };
        self.seen.lock().expect("no panics under this lock").sandboxes.insert(pod.uid.clone(), sandbox.clone());
        Ok(sandbox)
    }

    /// Creates a container called `name`; one left by an earlier try under that name is removed first.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, String> {
        let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        match self.docker.create_container(Some(options.clone()), body.clone()).await {
            Ok(created) => Ok(created.id),
            Err(e) if status(&e) == Some(409) => {
                self.remove_container(name).await.map_err(|e| e.to_string())?;
                let created = self.docker.create_container(Some(options), body).await.map_err(|e| e.to_string())?;
                Ok(created.id)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(docker_error("removing a container", e)),
        }
    }

    /// Whether `image` runs as root when no user is given (its configured user is empty, `root` or 0).
    async fn image_runs_as_root(&self, image: &str) -> Result<bool, String> {
        let inspected =
            self.docker.inspect_image(image).await.map_err(|e| format!("inspecting image {image:?}: {e}"))?;
        let user = inspected.config.and_then(|c| c.user).unwrap_or_default();
        let name = user.split(':').next().unwrap_or_default();
        Ok(matches!(name, "" | "root" | "0"))
    }

    /// Creates and starts attempt `attempt` of `container` in `sandbox`.
    async fn run_attempt(
        &self,
        pod: &PodRef,
        sandbox: &SandboxSpec,
        container: &ContainerSpec,
        attempt: u32,
    ) -> Result<(), String> {
        let name = container_name(pod, &container.name, attempt);
        let pod_sandbox = self.ensure_sandbox(pod, sandbox).await?;
        let security = &container.security;
        if security.run_as_non_root && security.user.is_none() && self.image_runs_as_root(&container.image).await? {
            return Err("container has runAsNonRoot and image will run as root".to_owned());
        }
        let join = format!("container:{}", pod_sandbox.id);
        let body = ContainerCreateBody {
            image: Some(container.image.clone()),
            // The pod's command replaces the image's entrypoint and, with it, the image's command.
            entrypoint: Some(container.command.clone()).filter(|c| !c.is_empty()),
            cmd: Some(container.args.clone()).filter(|a| !a.is_empty() || !container.command.is_empty()),
            env: Some(container.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: container.working_dir.clone(),
            user: security.user.map(|u| match security.group {
                Some(g) => format!("{u}:{g}"),
                None => u.to_string(),
            }),
            labels: Some(self.labels(pod, &container.name, TYPE_CONTAINER, attempt)),
            open_stdin: Some(container.stdin),
            stdin_once: Some(container.stdin_once),
            attach_stdin: Some(container.stdin),
            tty: Some(container.tty),
            host_config: Some(HostConfig {
                network_mode: Some(join.clone()),
                ipc_mode: Some(join.clone()),
                pid_mode: sandbox.share_process_namespace.then_some(join),
                memory: container.memory_limit.map(|bytes| bytes as i64),
                // Swap is not given beyond the limit, as upstream's kubelet does.
                memory_swap: container.memory_limit.map(|bytes| bytes as i64),
                nano_cpus: container.cpu_limit_millis.map(|millis| millis as i64 * 1_000_000),
                mounts: Some(container.mounts.iter().map(bind).collect()).filter(|m: &Vec<_>| !m.is_empty()),
                group_add: Some(security.supplemental_groups.iter().map(|g| g.to_string()).collect())
                    .filter(|g: &Vec<_>| !g.is_empty()),
                readonly_rootfs: Some(security.read_only_root_filesystem),
                privileged: Some(security.privileged),
                security_opt: security.no_new_privileges.then(|| vec!["no-new-privileges".to_owned()]),
                cap_add: Some(security.add_capabilities.clone()).filter(|c| !c.is_empty()),
                cap_drop: Some(security.drop_capabilities.clone()).filter(|c| !c.is_empty()),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_owned()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), limits::CONTAINER_LOG_BYTES_MAX.to_string()),
                        ("max-file".to_owned(), "2".to_owned()),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create(&name, body).await?;
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove_container(&id).await;
            return Err(e.to_string());
        }
        Ok(())
    }

    /// Removes the attempts of a container older than the one before `attempt`.
    async fn prune_attempts(&self, pod_uid: &str, container: &str, attempt: u32) -> Result<(), RuntimeError> {
        for summary in self.containers(&[(LABEL_POD_UID, pod_uid), (LABEL_CONTAINER_NAME, container)]).await? {
            let old = attempt_of(&summary).is_some_and(|a| a + 1 < attempt);
            if old {
                self.remove_container(summary.id.as_deref().unwrap_or_default()).await?;
            }
        }
        Ok(())
    }

    /// The state of a container, inspected once per state it shows in a listing.
    async fn inspect(&self, id: &str, running: bool) -> Result<ContainerState, RuntimeError> {
        if let Some(known) = self.inspected.lock().expect("no panics under this lock").get(id) {
            if known.running == running {
                return Ok(known.state.clone());
            }
        }
        let response =
            self.docker.inspect_container(id, None).await.map_err(|e| docker_error("inspecting a container", e))?;
        let known = inspected(&response);
        let state = known.state.clone();
        self.inspected.lock().expect("no panics under this lock").insert(id.to_owned(), known);
        Ok(state)
    }

    /// The containers of a pod's container, latest attempt first (those never started left out).
    async fn attempts(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Result<Vec<(u32, bollard::models::ContainerSummary)>, RuntimeError> {
        let mut attempts: Vec<(u32, bollard::models::ContainerSummary)> = self
            .containers(&[(LABEL_POD_UID, pod_uid), (LABEL_CONTAINER_NAME, container), (LABEL_TYPE, TYPE_CONTAINER)])
            .await?
            .into_iter()
            .filter(|s| s.state != Some(ContainerSummaryStateEnum::CREATED))
            .filter_map(|s| Some((attempt_of(&s)?, s)))
            .collect();
        attempts.sort_by_key(|(attempt, _)| std::cmp::Reverse(*attempt));
        Ok(attempts)
    }

    /// The Docker id of a container's latest attempt, while it runs.
    async fn running_id(&self, pod_uid: &str, container: &str) -> Result<String, RuntimeError> {
        let latest = self.attempts(pod_uid, container).await?.into_iter().next();
        match latest {
            Some((_, summary)) if summary.state == Some(ContainerSummaryStateEnum::RUNNING) => {
                Ok(summary.id.unwrap_or_default())
            }
            _ => Err(RuntimeError::Start(format!("container {container} is not running"))),
        }
    }
}

/// Docker's frames of a container's or an exec's streams, by the exec protocol's channel (a terminal's one
/// stream is stdout).
fn by_channel(
    frames: impl futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send + 'static,
) -> futures::stream::BoxStream<'static, (u8, Bytes)> {
    frames
        .filter_map(|frame| {
            futures::future::ready(frame.ok().map(|frame| match frame {
                bollard::container::LogOutput::StdErr { message } => (STDERR, message),
                bollard::container::LogOutput::StdOut { message }
                | bollard::container::LogOutput::Console { message }
                | bollard::container::LogOutput::StdIn { message } => (STDOUT, message),
            }))
        })
        .boxed()
}

fn label<'a>(summary: &'a bollard::models::ContainerSummary, key: &str) -> Option<&'a str> {
    summary.labels.as_ref()?.get(key).map(String::as_str)
}

fn attempt_of(summary: &bollard::models::ContainerSummary) -> Option<u32> {
    label(summary, LABEL_ATTEMPT)?.parse().ok()
}

/// Turns Docker's log lines (each `<RFC 3339 nanoseconds> <content>`) into what `kubectl logs` shows: lines
/// from `since` on, with their timestamps when asked for.
fn log_line(line: Bytes, since: Option<Timestamp>, timestamps: bool) -> Option<Bytes> {
    let space = line.iter().position(|b| *b == b' ')?;
    if let Some(since) = since {
        let at: Timestamp = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if at < since {
            return None;
        }
    }
    Some(if timestamps { line } else { line.slice(space + 1..) })
}

impl Runtime for DockerRuntime {
    async fn start(
        &self,
        pod: &PodRef,
        sandbox: &SandboxSpec,
        container: &ContainerSpec,
        attempt: u32,
    ) -> Result<(), RuntimeError> {
        let lock = self.pod_lock(&pod.uid);
        let _guard = lock.lock().await;
        let key = (pod.uid.clone(), container.name.clone());
        if self.failed.lock().expect("no panics under this lock").get(&key).is_some_and(|f| f.attempt >= attempt) {
            return Ok(());
        }
        // A repeated start: the attempt exists (and was started) already.
        if self.attempts(&pod.uid, &container.name).await?.first().is_some_and(|(a, _)| *a >= attempt) {
            return Ok(());
        }
        let outcome = self.run_attempt(pod, sandbox, container, attempt).await;
        match outcome {
            Ok(()) => {
                tracing::info!(pod = %pod.name, namespace = %pod.namespace, container = %container.name, attempt,
                    "docker runtime: container started");
                self.failed.lock().expect("no panics under this lock").remove(&key);
                self.prune_attempts(&pod.uid, &container.name, attempt).await
            }
            Err(message) => {
                let now = Timestamp::now();
                let state = ContainerState::Exited {
                    exit_code: START_ERROR_EXIT_CODE,
                    reason: START_ERROR.to_owned(),
                    message: Some(message.clone()),
                    started_at: now,
                    finished_at: now,
                };
                let report = ContainerReport {
                    pod_uid: pod.uid.clone(),
                    name: container.name.clone(),
                    attempt,
                    state,
                    ids: None,
                };
                self.failed.lock().expect("no panics under this lock").insert(key, report);
                Err(RuntimeError::Start(message))
            }
        }
    }

    async fn stop(&self, pod_uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        for (_, summary) in self.attempts(pod_uid, container).await? {
            if summary.state != Some(ContainerSummaryStateEnum::RUNNING) {
                continue;
            }
            let id = summary.id.unwrap_or_default();
            let options = StopContainerOptions { t: Some(grace.as_secs_f64().ceil() as i32), signal: None };
            match self.docker.stop_container(&id, Some(options)).await {
                Ok(()) => {}
                Err(e) if matches!(status(&e), Some(304 | 404)) => {}
                Err(e) => return Err(docker_error("stopping a container", e)),
            }
        }
        Ok(())
    }

    async fn remove(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let mut containers = self.containers(&[(LABEL_POD_UID, pod_uid)]).await?;
        // The sandbox last: the others live in its namespaces.
        containers.sort_by_key(|s| label(s, LABEL_TYPE) == Some(TYPE_SANDBOX));
        for summary in containers {
            let id = summary.id.unwrap_or_default();
            self.remove_container(&id).await?;
            self.inspected.lock().expect("no panics under this lock").remove(&id);
        }
        self.failed.lock().expect("no panics under this lock").retain(|(uid, _), _| uid != pod_uid);
        self.seen.lock().expect("no panics under this lock").sandboxes.remove(pod_uid);
        self.pod_locks.lock().expect("no panics under this lock").remove(pod_uid);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerReport>, RuntimeError> {
        let summaries = self.containers(&[]).await?;
        let mut sandboxes = HashMap::new();
        let mut latest: HashMap<(String, String), (u32, String, String, bool)> = HashMap::new();
        for summary in &summaries {
            let (Some(uid), Some(id)) = (label(summary, LABEL_POD_UID), summary.id.as_deref()) else { continue };
            let state = summary.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
            if label(summary, LABEL_TYPE) == Some(TYPE_SANDBOX) {
                if state == ContainerSummaryStateEnum::RUNNING {
                    sandboxes.insert(uid.to_owned(), id.to_owned());
                }
                continue;
            }
            let (Some(name), Some(attempt)) = (label(summary, LABEL_CONTAINER_NAME), attempt_of(summary)) else {
                continue;
            };
            if state == ContainerSummaryStateEnum::CREATED {
                continue;
            }
            let running = matches!(state, ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED);
            let image = summary.image_id.clone().unwrap_or_default();
            let entry = latest.entry((uid.to_owned(), name.to_owned())).or_insert((
                attempt,
                id.to_owned(),
                image.clone(),
                running,
            ));
            if attempt > entry.0 {
                *entry = (attempt, id.to_owned(), image, running);
            }
        }
        let mut reports = Vec::with_capacity(latest.len());
        let mut running = Vec::new();
        for ((uid, name), (attempt, id, image, is_running)) in latest {
            let state = self.inspect(&id, is_running).await?;
            if matches!(state, ContainerState::Running { .. }) {
                running.push((uid.clone(), name.clone(), id.clone()));
            }
            let ids = Some(RuntimeIds { container: id, image });
            reports.push(ContainerReport { pod_uid: uid, name, attempt, state, ids });
        }
        for failure in self.failed.lock().expect("no panics under this lock").values() {
            match reports.iter_mut().find(|r| r.pod_uid == failure.pod_uid && r.name == failure.name) {
                Some(report) if report.attempt < failure.attempt => *report = failure.clone(),
                Some(_) => {}
                None => reports.push(failure.clone()),
            }
        }
        let ids: std::collections::HashSet<&str> = summaries.iter().filter_map(|s| s.id.as_deref()).collect();
        self.inspected.lock().expect("no panics under this lock").retain(|id, _| ids.contains(id.as_str()));
        {
            let mut seen = self.seen.lock().expect("no panics under this lock");
            seen.sandboxes.retain(|uid, sandbox| sandboxes.get(uid) == Some(&sandbox.id));
            seen.running = running;
        }
        // Sandboxes found running (after a restart of the agent): their IPs.
        for (uid, id) in sandboxes {
            let known = self.seen.lock().expect("no panics under this lock").sandboxes.contains_key(&uid);
            if !known {
                if let Ok(response) = self.docker.inspect_container(&id, None).await {
                    let sandbox = Sandbox { ip: sandbox_ip(&response, &self.config.network), id };
                    self.seen.lock().expect("no panics under this lock").sandboxes.insert(uid, sandbox);
                }
            }
        }
        Ok(reports)
    }

    async fn logs(
        &self,
        pod_uid: &str,
        container: &str,
        request: &LogRequest,
    ) -> Result<Option<ContainerLogs>, RuntimeError> {
        let attempts = self.attempts(pod_uid, container).await?;
        let Some((_, summary)) = attempts.get(usize::from(request.previous)) else { return Ok(None) };
        let id = summary.id.clone().unwrap_or_default();
        let since = request.options.since;
        let options = LogsOptions {
            follow: request.follow && !request.previous,
            stdout: true,
            stderr: true,
            since: since.map_or(0, |s| s.as_second().clamp(0, i64::from(i32::MAX)) as i32),
            timestamps: true,
            tail: request.options.tail_lines.map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..Default::default()
        };
        let timestamps = request.options.timestamps;
        let stream =
            self.docker.logs(&id, Some(options)).map_err(std::io::Error::other).try_filter_map(move |output| {
                let line = match output {
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::StdErr { message }
                    | bollard::container::LogOutput::Console { message } => log_line(message, since, timestamps),
                    bollard::container::LogOutput::StdIn { .. } => None,
                };
                futures::future::ready(Ok(line))
            });
        Ok(Some(ContainerLogs::Stream(stream.boxed())))
    }

    /// Docker cannot end an exec'd process: one whose client went away is left to finish by itself.
    async fn exec_session(
        &self,
        pod_uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let id = self.running_id(pod_uid, container).await?;
        let config = CreateExecOptions {
            cmd: Some(request.command.clone()),
            attach_stdin: Some(request.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(request.tty),
            ..Default::default()
        };
        let exec = self.docker.create_exec(&id, config).await.map_err(|e| docker_error("exec", e))?.id;
        let options = StartExecOptions { detach: false, tty: request.tty, ..Default::default() };
        let StartExecResults::Attached { output, input } =
            self.docker.start_exec(&exec, Some(options)).await.map_err(|e| docker_error("exec", e))?
        else {
            return Err(RuntimeError::Start("the exec did not attach".to_owned()));
        };
        let output = by_channel(output);
        let (docker, id) = (self.docker.clone(), exec.clone());
        let exit = async move {
            // The output ends as the process does; Docker may take a moment more to record its exit.
            for _ in 0..limits::DOCKER_EXEC_EXIT_POLLS_MAX {
                let inspected = docker.inspect_exec(&id).await.map_err(|e| docker_error("exec", e))?;
                if inspected.running != Some(true) {
                    return Ok(inspected.exit_code.unwrap_or(i64::from(START_ERROR_EXIT_CODE)) as i32);
                }
                tokio::time::sleep(Duration::from_millis(limits::DOCKER_EXEC_EXIT_POLL_MS)).await;
            }
            Err(RuntimeError::Start("the command's exit was not recorded".to_owned()))
        };
        let docker = self.docker.clone();
        let resize = move |width: u16, height: u16| {
            let (docker, exec) = (docker.clone(), exec.clone());
            async move {
                let options = ResizeExecOptions { width, height };
                if let Err(e) = docker.resize_exec(&exec, options).await {
                    tracing::debug!(error = %e, "docker runtime: resizing an exec's terminal failed");
                }
            }
            .boxed()
        };
        Ok(ExecSession {
            output,
            stdin: request.stdin.then_some(input),
            exit: exit.boxed(),
            resize: Some(Box::new(resize)),
        })
    }

    /// Ends with the container's output (it exited); leaving it leaves the container running. Its stdin closes
    /// with the attach only when the container has `stdinOnce`.
    async fn attach_session(&self, pod_uid: &str, container: &str, stdin: bool) -> Result<ExecSession, RuntimeError> {
        let id = self.running_id(pod_uid, container).await?;
        let config = self.docker.inspect_container(&id, None).await.map_err(|e| docker_error("attach", e))?.config;
        let (open_stdin, tty) =
            config.map_or((false, false), |c| (c.open_stdin.unwrap_or(false), c.tty.unwrap_or(false)));
        let options = AttachContainerOptions {
            stdin: stdin && open_stdin,
            stdout: true,
            stderr: true,
            stream: true,
            ..Default::default()
        };
        let attached = self.docker.attach_container(&id, Some(options)).await.map_err(|e| docker_error("attach", e))?;
        let docker = self.docker.clone();
        let resize = move |width: u16, height: u16| {
            let (docker, id) = (docker.clone(), id.clone());
            async move {
                let options = ResizeContainerTTYOptions { w: i32::from(width), h: i32::from(height) };
                if let Err(e) = docker.resize_container_tty(&id, options).await {
                    tracing::debug!(error = %e, "docker runtime: resizing a container's terminal failed");
                }
            }
            .boxed()
        };
        Ok(ExecSession {
            output: by_channel(attached.output),
            stdin: (stdin && open_stdin).then_some(attached.input),
            exit: futures::future::ready(Ok(0)).boxed(),
            resize: tty.then(|| Box::new(resize) as Resize),
        })
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn mounts_volumes(&self) -> bool {
        true
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(docker_error("inspecting an image", e)),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        let options = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let progress: Vec<_> = self
            .docker
            .create_image(Some(options), None, None)
            .try_collect()
            .await
            .map_err(|e| RuntimeError::Start(e.to_string()))?;
        match progress.iter().find_map(|p| p.error_detail.as_ref()) {
            Some(error) => Err(RuntimeError::Start(error.message.clone().unwrap_or_else(|| format!("{error:?}")))),
            None => Ok(()),
        }
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        self.seen.lock().expect("no panics under this lock").sandboxes.get(pod_uid)?.ip
    }

    fn usage(&self, _pods: &[Arc<Pod>], _at: Instant) -> Vec<PodCounters> {
        let running = self.seen.lock().expect("no panics under this lock").running.clone();
        let mut pods: HashMap<String, PodCounters> = HashMap::new();
        for (uid, name, id) in running {
            let Some(counters) = cgroup::counters(&id) else { continue };
            let pod = pods.entry(uid.clone()).or_insert_with(|| PodCounters { uid, ..Default::default() });
            pod.containers.push((name, counters));
        }
        pods.into_values().collect()
    }

    fn node_usage(&self) -> Option<Counters> {
        super::process::host_usage()
    }
}

/// A volume as Docker bind-mounts it.
fn bind(mount: &Mount) -> bollard::models::Mount {
    bollard::models::Mount {
        typ: Some(MountType::BIND),
        source: Some(mount.host_path.to_string_lossy().into_owned()),
        target: Some(mount.container_path.clone()),
        read_only: Some(mount.read_only),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_their_timestamp_unless_asked_and_older_ones_are_dropped() {
        let line = || Bytes::from_static(b"2026-12-06T10:00:01.500000000Z hello\n");
        assert_eq!(log_line(line(), None, false).unwrap(), Bytes::from_static(b"hello\n"));
        assert_eq!(log_line(line(), None, true).unwrap(), line());
        let since = |t: &str| Some(t.parse::<Timestamp>().unwrap());
        assert_eq!(log_line(line(), since("2026-12-06T10:00:01.6Z"), false), None);
        assert!(log_line(line(), since("2026-12-06T10:00:01.5Z"), false).is_some());
    }

    #[test]
    fn container_names_say_which_pod_and_attempt() {
        let pod = PodRef { uid: "u-1".into(), namespace: "default".into(), name: "web-0".into() };
        assert_eq!(container_name(&pod, "app", 3), "k8s_app_web-0_default_u-1_3");
        assert_eq!(container_name(&pod, SANDBOX_NAME, 0), "k8s_POD_web-0_default_u-1_0");
    }
}
