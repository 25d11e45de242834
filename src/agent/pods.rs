//! Pod sync: runs the pods bound to the agent's nodes through a `Runtime` and reports their status.
//!
//! The decisions are pure: `plan(desired pods, runtime reports, probe health, now) -> actions` (start, stop,
//! remove, delete) and `pod_status(pod, reports, ..., now) -> PodStatus`, as upstream's kubelet decides them:
//! the probes' verdicts (`probes.rs`: readiness, startup, a failed liveness probe stops the container);
//! restartPolicy Always, OnFailure and Never; CrashLoopBackOff (the first restart at once, then 10 s doubling to 5 min,
//! reset by an attempt that ran 10 min); graceful deletion (a pod with a deletionTimestamp has its containers
//! stopped with its grace period, then is deleted with gracePeriodSeconds 0 and a uid precondition); the phase,
//! the conditions and the container statuses as `kubectl` shows them.
//!
//! A container starts once what it needs is there: its environment (`env.rs`, from the ConfigMaps and Secrets
//! `sources.rs` reads), its pod's volumes (`volumes.rs`, made before each plan, for a runtime that mounts
//! them) and its image (`images.rs`,
//! made sure of just before the start); until then it waits, as `ContainerCreating`,
//! `CreateContainerConfigError` (a reference to what does not exist), `ErrImageNeverPull`, `ErrImagePull`
//! or `ImagePullBackOff`.
//!
//! Around them, `run` keeps one watch of the pods bound to its nodes (field selector `spec.nodeName`, one
//! reflector for any number of fake nodes), syncs on every change (at most every `AGENT_SYNC_INTERVAL_MS_MIN`)
//! and at least every `AGENT_SYNC_INTERVAL_MS_MAX` (for back-off timers), executes actions concurrently (at most
//! `AGENT_ACTIONS_CONCURRENT_MAX`, never two for one container), and writes statuses through the status
//! subresource by `AGENT_STATUS_WRITERS_PER_NODE` workers per node served (at most `AGENT_STATUS_WRITERS_MAX`),
//! only when a pod's status changed.
//!
//! Keeps DESIGN.md invariant 7's agent side: nothing is planned before the first list of the pods has arrived,
//! and the reflector's cache survives every lost connection, so the agent keeps what it runs while no replica
//! is reachable. Level-triggered: an action is repeated until the runtime's reports show it done, and a start
//! names its attempt, so a container is never started twice for one attempt.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSecurityContext, PodStatus,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use tokio::sync::{Notify, Semaphore};

use super::dns::resolv;
use super::env::{environment, expand};
use super::hooks::{self, Hook};
use super::images::{self, Images};
use super::node::seconds;
use super::probes::{Health, Probes};
use super::runtime::{
    ContainerReport, ContainerSpec, ContainerState, HostPort, PodRef, PullPolicy, Runtime, SandboxSpec, Security,
};
use super::services::Followed;
use super::sources::{self, Missing, Sources};
use super::volumes::{self, Volumes};
use super::AbortOnDrop;
use crate::apis::validation::parse_quantity;
use crate::limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// A pod as the plan needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredPod {
    pub pod: PodRef,
    pub sandbox: SandboxSpec,
    pub restart_policy: RestartPolicy,
    /// Run one after the other, each to success, before the containers.
    pub init_containers: Vec<ContainerSpec>,
    pub containers: Vec<ContainerSpec>,
    /// Set while the pod is being deleted: the grace its containers get.
    pub deleting: Option<Duration>,
    /// The grace a container gets when it is stopped while its pod lives on (a failed liveness probe).
    pub grace: Duration,
    /// Its phase is Succeeded or Failed: nothing of it runs again.
    pub terminal: bool,
    /// The containers that cannot be started now, and why (their env, their image or the pod's volumes are not
    /// ready).
    pub waiting: BTreeMap<String, Waiting>,
}

/// Why a container cannot be started now, as its status says it.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// `ContainerCreating` (waiting for what it needs), `CreateContainerConfigError` (a reference to what is
    /// not there), or one of `images.rs`'s.
    pub reason: &'static str,
    pub message: Option<String>,
}

impl Waiting {
    fn from(missing: Missing, reason: &'static str) -> Waiting {
        match missing {
            Missing::Unread => Waiting { reason: "ContainerCreating", message: None },
            Missing::Absent(message) => Waiting { reason, message: Some(message) },
        }
    }
}

/// What, besides the pod, says how its containers are started.
pub struct PodContext<'a> {
    /// The ConfigMaps and Secrets the pods refer to, as last read.
    pub sources: &'a Sources,
    /// Where the pod's volumes are (`volumes::Volumes::pod_dir`).
    pub volumes_dir: PathBuf,
    /// Why the pod's volumes are not ready, if they are not.
    pub volumes_missing: Option<&'a Missing>,
    /// The images whose last try failed (`images.rs`).
    pub image_failures: &'a HashMap<String, images::Failure>,
    /// The cluster DNS the pods are pointed at, if any.
    pub dns: Option<&'a PodDns>,
    /// The Services' variables of the pod's environment (`env::service_variables`).
    pub service_variables: &'a [(String, String)],
    pub now: jiff::Timestamp,
}

/// Where pods find the cluster's names: the cluster DNS address, the cluster domain, and the host's own
/// resolver settings (for `dnsPolicy: Default`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDns {
    pub server: std::net::IpAddr,
    pub domain: String,
    pub host: resolv::HostResolv,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Start {
        pod: PodRef,
        sandbox: Box<SandboxSpec>,
        container: Box<ContainerSpec>,
        attempt: u32,
    },
    Stop {
        pod_uid: String,
        container: String,
        grace: Duration,
        /// Run first, within the grace.
        pre_stop: Option<Hook>,
    },
    /// Forget a pod the API no longer has, all of whose containers have exited.
    Remove {
        pod_uid: String,
    },
    /// Delete a pod being deleted, all of whose containers have exited (grace 0, uid precondition).
    Delete {
        pod: PodRef,
    },
}

/// What an action is about: no two actions with one key run at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ActionKey {
    Container(String, String),
    Pod(String),
}

impl Action {
    pub fn key(&self) -> ActionKey {
        match self {
            Action::Start { pod, container, .. } => ActionKey::Container(pod.uid.clone(), container.name.clone()),
            Action::Stop { pod_uid, container, .. } => ActionKey::Container(pod_uid.clone(), container.clone()),
            Action::Remove { pod_uid } => ActionKey::Pod(pod_uid.clone()),
            Action::Delete { pod } => ActionKey::Pod(pod.uid.clone()),
        }
    }
}

/// What comes next for one container.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Start this attempt now.
    Start(u32),
    /// Exited; restarted once `until` has come (the back-off it waits).
    BackOff { until: jiff::Timestamp, backoff: Duration },
    /// Running, or exited for good.
    Nothing,
}

/// The back-off before restarting a container whose attempt `attempt` ran for `ran`: none after the first
/// attempt, then 10 s doubling to 5 min; none again after an attempt that ran twice the longest back-off.
pub fn restart_backoff(attempt: u32, ran: Duration) -> Duration {
    let max = limits::AGENT_RESTART_BACKOFF_SECS_MAX;
    if attempt == 0 || ran >= Duration::from_secs(2 * max) {
        return Duration::ZERO;
    }
    let secs = limits::AGENT_RESTART_BACKOFF_SECS_MIN.saturating_mul(1u64 << (attempt - 1).min(16));
    Duration::from_secs(secs.min(max))
}

fn span(from: jiff::Timestamp, to: jiff::Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// What comes next for a container of a pod with `policy`, given its latest attempt.
pub fn next(policy: RestartPolicy, report: Option<&ContainerReport>, now: jiff::Timestamp) -> Next {
    let Some(report) = report else { return Next::Start(0) };
    let ContainerState::Exited { exit_code, started_at, finished_at, .. } = &report.state else {
        return Next::Nothing;
    };
    let restart = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => *exit_code != 0,
        RestartPolicy::Never => false,
    };
    if !restart {
        return Next::Nothing;
    }
    let backoff = restart_backoff(report.attempt, span(*started_at, *finished_at));
    let until = finished_at.checked_add(backoff).unwrap_or(*finished_at);
    if now >= until {
        Next::Start(report.attempt + 1)
    } else {
        Next::BackOff { until, backoff }
    }
}

/// Where a pod is in its initialization.
#[derive(Debug, PartialEq)]
pub enum Init<'a> {
    /// Every init container has succeeded (or a container has been started): the containers run.
    Done,
    /// This init container runs next, runs now, or waits to be restarted.
    Next(&'a ContainerSpec),
    /// This init container failed and will not be restarted (`restartPolicy: Never`): the pod has failed.
    Failed(&'a ContainerSpec),
}

impl DesiredPod {
    /// Where the pod is in its initialization, given its containers' latest attempts.
    pub fn init<'a>(&'a self, reports: &[&ContainerReport]) -> Init<'a> {
        let started = self.containers.iter().any(|c| reports.iter().any(|r| r.name == c.name));
        if started {
            return Init::Done;
        }
        for init in &self.init_containers {
            match reports.iter().find(|r| r.name == init.name).map(|r| &r.state) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Exited { .. }) if self.restart_policy == RestartPolicy::Never => {
                    return Init::Failed(init)
                }
                _ => return Init::Next(init),
            }
        }
        Init::Done
    }

    /// The restart policy of its init containers: a failed one is restarted unless the pod's policy is Never.
    fn init_policy(&self) -> RestartPolicy {
        match self.restart_policy {
            RestartPolicy::Never => RestartPolicy::Never,
            _ => RestartPolicy::OnFailure,
        }
    }
}

/// The actions that bring the runtime to the desired pods, given what the probes say of the running
/// containers (`health`). Pure.
pub fn plan(
    desired: &[DesiredPod],
    reports: &[ContainerReport],
    health: &dyn Fn(&ContainerReport) -> Health,
    now: jiff::Timestamp,
) -> Vec<Action> {
    let mut by_pod: HashMap<&str, Vec<&ContainerReport>> = HashMap::new();
    for r in reports {
        by_pod.entry(r.pod_uid.as_str()).or_default().push(r);
    }
    let mut actions = Vec::new();
    let mut known = HashSet::new();
    for pod in desired {
        known.insert(pod.pod.uid.as_str());
        let reports = by_pod.get(pod.pod.uid.as_str()).map_or(&[][..], |v| v.as_slice());
        if let Some(grace) = pod.deleting {
            let running: Vec<&&ContainerReport> =
                reports.iter().filter(|r| matches!(r.state, ContainerState::Running { .. })).collect();
            if running.is_empty() {
                actions.push(Action::Delete { pod: pod.pod.clone() });
            }
            for r in running {
                let spec = pod.containers.iter().chain(&pod.init_containers).find(|c| c.name == r.name);
                let pre_stop = spec.and_then(|c| c.pre_stop.clone());
                actions.push(Action::Stop { pod_uid: r.pod_uid.clone(), container: r.name.clone(), grace, pre_stop });
            }
            continue;
        }
        if pod.terminal {
            continue;
        }
        let (containers, policy) = match pod.init(reports) {
            Init::Done => (pod.containers.as_slice(), pod.restart_policy),
            Init::Next(init) => (std::slice::from_ref(init), pod.init_policy()),
            Init::Failed(_) => continue,
        };
        for container in containers {
            let report = reports.iter().find(|r| r.name == container.name).copied();
            if let Some(r) = report.filter(|r| matches!(r.state, ContainerState::Running { .. })) {
                if let Some(kind) = health(r).failed {
                    tracing::info!(pod = %pod.pod.name, namespace = %pod.pod.namespace, container = %r.name,
                        probe = ?kind, "agent: container failed its probe; stopping it");
                    actions.push(Action::Stop {
                        pod_uid: r.pod_uid.clone(),
                        container: r.name.clone(),
                        grace: pod.grace,
                        pre_stop: container.pre_stop.clone(),
                    });
                }
            }
            if let Next::Start(attempt) = next(policy, report, now) {
                if pod.waiting.contains_key(&container.name) {
                    continue;
                }
                actions.push(Action::Start {
                    pod: pod.pod.clone(),
                    sandbox: Box::new(pod.sandbox.clone()),
                    container: Box::new(container.clone()),
                    attempt,
                });
            }
        }
    }
    let mut orphans: Vec<(&str, &Vec<&ContainerReport>)> =
        by_pod.iter().filter(|(uid, _)| !known.contains(*uid)).map(|(uid, r)| (*uid, r)).collect();
    orphans.sort_by_key(|(uid, _)| *uid);
    for (uid, reports) in orphans {
        let mut running = false;
        for r in reports.iter().filter(|r| matches!(r.state, ContainerState::Running { .. })) {
            running = true;
            actions.push(Action::Stop {
                pod_uid: uid.to_owned(),
                container: r.name.clone(),
                grace: Duration::from_secs(limits::AGENT_ORPHAN_GRACE_SECS),
                pre_stop: None,
            });
        }
        if !running {
            actions.push(Action::Remove { pod_uid: uid.to_owned() });
        }
    }
    actions
}

/// A container's `resources.limits` of `resource`, if set and positive.
fn limit(container: &Container, resource: &str) -> Option<f64> {
    let quantity = container.resources.as_ref()?.limits.as_ref()?.get(resource)?;
    parse_quantity(&quantity.0).filter(|v| *v > 0.0)
}

/// What a container's security context asks, its pod's filling in what it leaves unset, as upstream merges
/// them. `runAsNonRoot` with `runAsUser: 0` cannot be met: an error.
fn security(pod: Option<&PodSecurityContext>, container: Option<&SecurityContext>) -> Result<Security, String> {
    let capabilities = container.and_then(|c| c.capabilities.as_ref());
    let security = Security {
        user: container.and_then(|c| c.run_as_user).or(pod.and_then(|p| p.run_as_user)),
        group: container.and_then(|c| c.run_as_group).or(pod.and_then(|p| p.run_as_group)),
        supplemental_groups: pod
            .into_iter()
            .flat_map(|p| p.supplemental_groups.iter().flatten().copied().chain(p.fs_group))
            .collect(),
        run_as_non_root: container.and_then(|c| c.run_as_non_root).or(pod.and_then(|p| p.run_as_non_root))
            == Some(true),
        read_only_root_filesystem: container.and_then(|c| c.read_only_root_filesystem) == Some(true),
        privileged: container.and_then(|c| c.privileged) == Some(true),
        no_new_privileges: container.and_then(|c| c.allow_privilege_escalation) == Some(false),
        add_capabilities: capabilities.into_iter().flat_map(|c| c.add.iter().flatten().cloned()).collect(),
        drop_capabilities: capabilities.into_iter().flat_map(|c| c.drop.iter().flatten().cloned()).collect(),
    };
    if security.run_as_non_root && security.user == Some(0) {
        return Err("container's runAsUser breaks non-root policy".to_owned());
    }
    Ok(security)
}

/// A container's `imagePullPolicy`; when unset, upstream's default: `Always` for an image tagged `latest` or
/// not tagged (nor pinned by digest), else `IfNotPresent`.
fn pull_policy(policy: Option<&str>, image: &str) -> PullPolicy {
    match policy {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some(_) => PullPolicy::IfNotPresent,
        None => {
            let name = image.rsplit('/').next().unwrap_or(image);
            let latest = !image.contains('@') && name.split_once(':').is_none_or(|(_, tag)| tag == "latest");
            if latest {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            }
        }
    }
}

/// The plan's view of a pod.
pub fn desired_pod(pod: &Pod, context: &PodContext) -> DesiredPod {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = match spec.restart_policy.as_deref() {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    };
    let mut waiting = BTreeMap::new();
    let mut container_spec = |c: &Container| {
        let image = c.image.clone().unwrap_or_default();
        let security = match security(spec.security_context.as_ref(), c.security_context.as_ref()) {
            Ok(security) => security,
            Err(message) => {
                let message = Some(format!(
                    "{message} (pod: {:?}, container: {})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    c.name
                ));
                waiting.insert(c.name.clone(), Waiting { reason: "CreateContainerConfigError", message });
                Security::default()
            }
        };
        let env = match (context.volumes_missing, environment(pod, c, context.sources, context.service_variables)) {
            (Some(missing), _) => {
                waiting.insert(c.name.clone(), Waiting::from(missing.clone(), "ContainerCreating"));
                Vec::new()
            }
            (None, Err(missing)) => {
                waiting.insert(c.name.clone(), Waiting::from(missing, "CreateContainerConfigError"));
                Vec::new()
            }
            (None, Ok(env)) => {
                if let Some(w) = images::waiting(&image, context.image_failures.get(&image), context.now) {
                    waiting.entry(c.name.clone()).or_insert(w);
                }
                env
            }
        };
        let expand = |words: &Option<Vec<String>>| -> Vec<String> {
            let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            words.iter().flatten().map(|w| expand(w, lookup)).collect()
        };
        ContainerSpec {
            name: c.name.clone(),
            pull_policy: pull_policy(c.image_pull_policy.as_deref(), &image),
            image,
            command: expand(&c.command),
            args: expand(&c.args),
            working_dir: c.working_dir.clone(),
            memory_limit: limit(c, "memory").map(|bytes| bytes as u64),
            cpu_limit_millis: limit(c, "cpu").map(|cpus| (cpus * 1000.0).ceil() as u64),
            mounts: volumes::mounts(pod, c, &context.volumes_dir),
            security,
            pre_stop: hooks::pre_stop(c),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            env,
        }
    };
    let init_containers = spec.init_containers.iter().flatten().map(&mut container_spec).collect();
    let containers = spec.containers.iter().map(&mut container_spec).collect();
    let grace = spec.termination_grace_period_seconds.unwrap_or(limits::AGENT_POD_GRACE_SECS_DEFAULT);
    let deleting = pod.metadata.deletion_timestamp.as_ref().map(|_| {
        let secs = pod.metadata.deletion_grace_period_seconds.unwrap_or(grace);
        Duration::from_secs(secs.max(0) as u64)
    });
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let host_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(HostPort {
                container_port: u16::try_from(p.container_port).ok()?,
                host_port: u16::try_from(p.host_port?).ok().filter(|port| *port > 0)?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    hostname.truncate(limits::POD_HOSTNAME_BYTES_MAX);
    let hostname = hostname.trim_end_matches(['-', '.']).to_owned();
    DesiredPod {
        pod: PodRef {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name,
        },
        sandbox: SandboxSpec {
            hostname,
            host_ports,
            share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            resolv_conf: context.dns.map(|d| resolv::resolv_conf(pod, d.server, &d.domain, &d.host)),
        },
        restart_policy,
        init_containers,
        containers,
        deleting,
        grace: Duration::from_secs(grace.max(0) as u64),
        terminal: matches!(phase, Some("Succeeded" | "Failed")),
        waiting,
    }
}

/// Where a pod runs, for its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub host_ip: String,
    pub pod_ip: Option<String>,
    /// `fake` or `process`: the scheme of container and image ids.
    pub runtime: &'static str,
}

/// A container's id in its status: the runtime's, or one made of the pod, the name and the attempt.
fn container_id(runtime: &str, report: &ContainerReport) -> String {
    match &report.ids {
        Some(ids) => format!("{runtime}://{}", ids.container),
        None => format!("{runtime}://{}-{}-{}", report.pod_uid, report.name, report.attempt),
    }
}

fn terminated(runtime: &str, report: &ContainerReport) -> Option<ContainerStateTerminated> {
    match &report.state {
        ContainerState::Exited { exit_code, reason, message, started_at, finished_at } => {
            Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone(),
                started_at: Some(Time(seconds(*started_at))),
                finished_at: Some(Time(seconds(*finished_at))),
                container_id: Some(container_id(runtime, report)),
                ..Default::default()
            })
        }
        ContainerState::Running { .. } => None,
    }
}

/// A container state waiting, for `reason`.
fn waiting(reason: &str, message: Option<String>) -> ApiContainerState {
    ApiContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.to_owned()), message }),
        ..Default::default()
    }
}

/// The status of one container, from its latest attempt, what its probes say and the status the API has.
fn container_status(
    pod: &DesiredPod,
    spec: &ContainerSpec,
    report: Option<&ContainerReport>,
    health: &dyn Fn(&ContainerReport) -> Health,
    previous: Option<&ContainerStatus>,
    placement: &Placement,
    now: jiff::Timestamp,
) -> ContainerStatus {
    let runtime = placement.runtime;
    let is_init = pod.init_containers.iter().any(|c| c.name == spec.name);
    let policy = if is_init { pod.init_policy() } else { pod.restart_policy };
    // What a container not yet created waits as: an init container, as the pod, initializing.
    let creating = if is_init { "PodInitializing" } else { "ContainerCreating" };
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone(),
        image_id: format!("{runtime}://{}", spec.image),
        ..Default::default()
    };
    let blocked = pod.waiting.get(&spec.name).filter(|_| pod.deleting.is_none());
    let Some(report) = report else {
        status.state = Some(match blocked {
            Some(b) if b.reason == "ContainerCreating" => waiting(creating, b.message.clone()),
            Some(b) => waiting(b.reason, b.message.clone()),
            None => waiting(creating, None),
        });
        status.last_state = previous.and_then(|p| p.last_state.clone());
        status.started = Some(false);
        return status;
    };
    status.restart_count = report.attempt as i32;
    status.container_id = Some(container_id(runtime, report));
    if let Some(ids) = report.ids.as_ref().filter(|ids| !ids.image.is_empty()) {
        status.image_id = format!("{runtime}://{}", ids.image);
    }
    // The previous attempt's end: what the API showed as this container's state when it was that attempt.
    let earlier = previous.and_then(|p| match &p.state {
        Some(ApiContainerState { terminated: Some(t), .. }) if (p.restart_count as u32) < report.attempt => {
            Some(ApiContainerState { terminated: Some(t.clone()), ..Default::default() })
        }
        _ => p.last_state.clone(),
    });
    match &report.state {
        ContainerState::Running { started_at } => {
            status.state = Some(ApiContainerState {
                running: Some(ContainerStateRunning { started_at: Some(Time(seconds(*started_at))) }),
                ..Default::default()
            });
            status.last_state = earlier.filter(|_| report.attempt > 0);
            let health = health(report);
            status.ready = pod.deleting.is_none() && health.ready;
            status.started = Some(health.started);
        }
        ContainerState::Exited { .. } => {
            let ended = ApiContainerState { terminated: terminated(runtime, report), ..Default::default() };
            match (next(policy, Some(report), now), blocked) {
                (Next::BackOff { backoff, .. }, _) if pod.deleting.is_none() => {
                    let message = format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        backoff.as_secs(),
                        spec.name,
                        pod.pod.name,
                        pod.pod.namespace,
                        pod.pod.uid
                    );
                    status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                    status.last_state = Some(ended);
                }
                (Next::Start(_), Some(b)) => {
                    status.state = Some(waiting(b.reason, b.message.clone()));
                    status.last_state = Some(ended);
                }
                _ => {
                    status.state = Some(ended);
                    status.last_state = earlier.filter(|_| report.attempt > 0);
                }
            }
            status.started = Some(false);
        }
    }
    status
}

/// The phase upstream's kubelet gives a pod from its containers' statuses (`getPhase`).
fn phase(pod: &DesiredPod, statuses: &[ContainerStatus]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    if pod.deleting.is_some() {
        return if stopped == succeeded { "Succeeded" } else { "Failed" };
    }
    match pod.restart_policy {
        RestartPolicy::Always => "Running",
        _ if stopped == succeeded => "Succeeded",
        RestartPolicy::Never => "Failed",
        RestartPolicy::OnFailure => "Running",
    }
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    previous: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.filter(|_| !ok).map(str::to_owned),
        message: message.filter(|_| !ok),
        last_transition_time: Some(transition),
        ..Default::default()
    }
}

/// The status the agent reports for a pod, given what the probes say of its running containers. Pure; fields
/// the agent does not own are kept.
pub fn pod_status(
    pod: &DesiredPod,
    current: Option<&PodStatus>,
    reports: &[&ContainerReport],
    placement: &Placement,
    health: &dyn Fn(&ContainerReport) -> Health,
    now: jiff::Timestamp,
) -> PodStatus {
    let mut status = current.cloned().unwrap_or_default();
    let now_time = Time(seconds(now));
    let init = pod.init(reports);
    let status_of = |spec: &ContainerSpec, previous: &[ContainerStatus]| {
        let report = reports.iter().find(|r| r.name == spec.name).copied();
        let before = previous.iter().find(|p| p.name == spec.name);
        container_status(pod, spec, report, health, before, placement, now)
    };
    let previous = status.container_statuses.clone().unwrap_or_default();
    let mut statuses: Vec<ContainerStatus> = pod.containers.iter().map(|spec| status_of(spec, &previous)).collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    if init != Init::Done {
        for s in statuses.iter_mut().filter(|s| s.container_id.is_none()) {
            s.state = Some(waiting("PodInitializing", None));
        }
    }
    let previous = status.init_container_statuses.clone().unwrap_or_default();
    let init_statuses: Vec<ContainerStatus> = pod
        .init_containers
        .iter()
        .map(|spec| {
            let mut s = status_of(spec, &previous);
            // A completed init container is ready, as upstream reports it.
            s.ready = s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0);
            s
        })
        .collect();
    let incomplete: Vec<&str> = init_statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let phase = match init {
        Init::Done => phase(pod, &statuses),
        Init::Next(_) => "Pending",
        Init::Failed(_) => "Failed",
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let unready: Vec<&str> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let (reason, message) = match terminal {
        true => ("PodCompleted", None),
        false => ("ContainersNotReady", Some(format!("containers with unready status: [{}]", unready.join(" ")))),
    };
    let initialized = init == Init::Done;
    let init_message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
    let ready = unready.is_empty() && !terminal;
    let conditions = status.conditions.clone().unwrap_or_default();
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled").cloned().unwrap_or(PodCondition {
        type_: "PodScheduled".to_owned(),
        status: "True".to_owned(),
        last_transition_time: Some(now_time.clone()),
        ..Default::default()
    });
    status.conditions = Some(vec![
        condition("PodReadyToStartContainers", true, None, None, &conditions, &now_time),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(init_message),
            &conditions,
            &now_time,
        ),
        condition("Ready", ready, Some(reason), message.clone(), &conditions, &now_time),
        condition("ContainersReady", ready, Some(reason), message, &conditions, &now_time),
        scheduled,
    ]);
    status.phase = Some(phase.to_owned());
    status.container_statuses = Some(statuses);
    if !init_statuses.is_empty() {
        status.init_container_statuses = Some(init_statuses);
    }
    status.host_ip = Some(placement.host_ip.clone());
    status.host_ips = Some(vec![HostIP { ip: placement.host_ip.clone() }]);
    status.pod_ip = placement.pod_ip.clone();
    status.pod_ips = placement.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]);
    status.start_time = status.start_time.or(Some(now_time));
    status
}

/// What `run` needs besides the client and the runtime.
#[derive(Clone, Debug)]
pub struct PodSyncConfig {
    /// The nodes whose pods this agent runs.
    pub nodes: Vec<String>,
    pub host_ip: String,
    pub runtime: &'static str,
    /// Where the pod cache is published for the kubelet endpoint, once it exists.
    pub cache: Arc<std::sync::OnceLock<Store<Pod>>>,
    /// Where the pods' volumes are made (a directory of their own each).
    pub volumes_dir: PathBuf,
    /// The cluster DNS the pods are pointed at, if any.
    pub dns: Option<PodDns>,
    /// The Services (for the pods' environment), once listed.
    pub services: Followed,
}

/// The one watch of the pods bound to `nodes`: a reflector store, and a notification on every change.
pub fn informer(
    client: kube::Client,
    nodes: &[String],
    changed: Arc<Notify>,
) -> (Store<Pod>, impl std::future::Future<Output = ()>) {
    let selector = match nodes {
        [one] => format!("spec.nodeName={one}"),
        _ => "spec.nodeName!=".to_owned(),
    };
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().fields(&selector);
    let stream = reflector::reflector(writer, watcher::watcher(Api::<Pod>::all(client), config))
        .backoff(WatchBackoff::default());
    let drive = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => tracing::info!(%selector, "agent: listing the pods"),
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::debug!(error = %e, "agent: the pod watch failed; it resumes"),
            }
        }
    };
    (reader, drive)
}

/// The pause of a failing watch before it resumes: `AGENT_WATCH_BACKOFF_MS_MIN` doubling to `..._MAX`, from
/// the start again once an event arrives. Short, because a watch fails when its replica dies and resumes at
/// once on another.
#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Duration::from_millis(limits::AGENT_WATCH_BACKOFF_MS_MIN) }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let pause = self.next;
        self.next = (pause * 2).min(Duration::from_millis(limits::AGENT_WATCH_BACKOFF_MS_MAX));
        Some(pause)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = WatchBackoff::default();
    }
}

/// A status write waiting for a worker: the pod's identity and its new status.
struct StatusWrite {
    namespace: String,
    name: String,
    status: PodStatus,
}

/// The statuses waiting to be written, one per pod (a newer one replaces an older), and what was last written
/// for each pod with the resourceVersion it produced (`u64::MAX` while it is being written). A std Mutex:
/// nothing awaits under it.
#[derive(Default)]
struct StatusQueue {
    inner: Mutex<StatusQueueInner>,
    ready: Notify,
}

#[derive(Default)]
struct StatusQueueInner {
    order: VecDeque<String>,
    pending: HashMap<String, StatusWrite>,
    written: HashMap<String, (u64, PodStatus)>,
}

impl StatusQueue {
    /// Queues `status` for `pod` unless the API has it already, or it was written and the API has seen no
    /// other write of the pod since.
    fn offer(&self, pod: &Pod, status: PodStatus) {
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let version: u64 = pod.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut inner = self.inner.lock().expect("status queue lock poisoned");
        if inner.written.get(&uid).is_some_and(|(at, written)| *written == status && version <= *at) {
            return;
        }
        let write = StatusWrite {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            status: status.clone(),
        };
        if inner.pending.insert(uid.clone(), write).is_none() {
            if inner.order.len() >= limits::AGENT_STATUS_QUEUE_MAX {
                // Dropped: the next sync offers it again.
                inner.pending.remove(&uid);
                return;
            }
            inner.order.push_back(uid.clone());
        }
        inner.written.insert(uid, (u64::MAX, status));
        drop(inner);
        self.ready.notify_one();
    }

    fn take(&self) -> Option<(String, StatusWrite)> {
        let mut inner = self.inner.lock().expect("status queue lock poisoned");
        let uid = inner.order.pop_front()?;
        let write = inner.pending.remove(&uid)?;
        Some((uid, write))
    }

    fn done(&self, uid: &str, status: &PodStatus, version: Option<u64>) {
        let mut inner = self.inner.lock().expect("status queue lock poisoned");
        match version {
            Some(v) => {
                if inner.written.get(uid).is_some_and(|(_, s)| s == status) {
                    inner.written.insert(uid.to_owned(), (v, status.clone()));
                }
            }
            None => {
                inner.written.remove(uid);
            }
        }
    }

    /// Forgets the pods no longer bound here.
    fn retain(&self, uids: &HashSet<&str>) {
        let mut inner = self.inner.lock().expect("status queue lock poisoned");
        inner.written.retain(|uid, _| uids.contains(uid.as_str()));
    }
}

/// Writes `status` to the pod `name` only while that name is the pod `uid`: a status of a pod that is gone
/// never lands on a new pod of the same name (409 Conflict instead), as upstream's kubelet patches.
pub async fn patch_status(api: &Api<Pod>, name: &str, uid: &str, status: &PodStatus) -> kube::Result<Pod> {
    let patch = serde_json::json!({"metadata": {"uid": uid}, "status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

async fn write_statuses(client: kube::Client, queue: Arc<StatusQueue>) {
    loop {
        let Some((uid, write)) = queue.take() else {
            queue.ready.notified().await;
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &write.namespace);
        match patch_status(&api, &write.name, &uid, &write.status).await {
            Ok(pod) => {
                let version = pod.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
                queue.done(&uid, &write.status, version.or(Some(0)));
            }
            Err(e) => {
                tracing::debug!(pod = %write.name, namespace = %write.namespace, error = %e, "agent: writing a pod status failed");
                queue.done(&uid, &write.status, None);
            }
        }
    }
}

/// Runs pod sync for `config.nodes` until dropped.
pub async fn run<R: Runtime>(client: kube::Client, runtime: Arc<R>, config: PodSyncConfig) {
    let changed = Arc::new(Notify::new());
    let (store, drive) = informer(client.clone(), &config.nodes, changed.clone());
    let _ = config.cache.set(store.clone());
    let watch = tokio::spawn(drive);
    let queue = Arc::new(StatusQueue::default());
    let writers = (config.nodes.len() * limits::AGENT_STATUS_WRITERS_PER_NODE).min(limits::AGENT_STATUS_WRITERS_MAX);
    let writers: Vec<_> =
        (0..writers.max(1)).map(|_| tokio::spawn(write_statuses(client.clone(), queue.clone()))).collect();
    let latest_sources = sources::Latest::default();
    let read_sources =
        sources::run(client.clone(), store.clone(), runtime.mounts_volumes(), latest_sources.clone(), changed.clone());
    let read_sources = tokio::spawn(read_sources);
    let _abort = AbortOnDrop(writers.into_iter().chain([watch, read_sources]).collect());
    let volumes = Volumes::new(config.volumes_dir.clone());
    let images = Arc::new(Images::default());
    // Nothing starts before the pods and the Services are known (a container's environment needs both).
    if store.wait_until_ready().await.is_err() || !config.services.ready().await {
        return;
    }
    tracing::info!(nodes = config.nodes.len(), pods = store.state().len(), "agent: pod sync started");
    let nodes: HashSet<&str> = config.nodes.iter().map(String::as_str).collect();
    let in_flight: Arc<Mutex<HashSet<ActionKey>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(limits::AGENT_ACTIONS_CONCURRENT_MAX));
    let probes = Arc::new(Probes::default());
    loop {
        // Actions that end after this snapshot may not show in the reports listed below: skipped this time.
        let busy: HashSet<ActionKey> = in_flight.lock().expect("in-flight lock poisoned").clone();
        let reports = match runtime.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "agent: listing the runtime's containers failed");
                tokio::time::sleep(Duration::from_millis(limits::AGENT_SYNC_INTERVAL_MS_MAX)).await;
                continue;
            }
        };
        let pods: Vec<Arc<Pod>> = store
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| nodes.contains(n)))
            .collect();
        let sources = Arc::clone(&latest_sources.read().unwrap_or_else(|p| p.into_inner()));
        let volumes_missing = match runtime.mounts_volumes() {
            true => prepare_volumes(&volumes, &pods, &sources, &reports).await,
            false => HashMap::new(),
        };
        images.recheck(runtime.as_ref()).await;
        let image_failures = images.failures();
        let now = jiff::Timestamp::now();
        let services = config.services.services.state();
        let mut variables: HashMap<(&str, bool), Vec<(String, String)>> = HashMap::new();
        for p in &pods {
            let namespace = p.metadata.namespace.as_deref().unwrap_or_default();
            let links = p.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
            variables
                .entry((namespace, links))
                .or_insert_with(|| super::env::service_variables(namespace, links, &services));
        }
        let desired: Vec<DesiredPod> = pods
            .iter()
            .map(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or_default();
                let namespace = p.metadata.namespace.as_deref().unwrap_or_default();
                let links = p.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
                let context = PodContext {
                    sources: &sources,
                    volumes_dir: volumes.pod_dir(uid),
                    volumes_missing: volumes_missing.get(uid),
                    image_failures: &image_failures,
                    dns: config.dns.as_ref(),
                    service_variables: variables.get(&(namespace, links)).map(Vec::as_slice).unwrap_or_default(),
                    now,
                };
                desired_pod(p, &context)
            })
            .collect();
        probes.sync(&runtime, &pods, &reports);
        let health = |r: &ContainerReport| probes.health(&(r.pod_uid.clone(), r.name.clone(), r.attempt));
        for action in plan(&desired, &reports, &health, now) {
            let key = action.key();
            if busy.contains(&key) || !in_flight.lock().expect("in-flight lock poisoned").insert(key.clone()) {
                continue;
            }
            let (client, runtime, in_flight, changed, permits, images) =
                (client.clone(), runtime.clone(), in_flight.clone(), changed.clone(), permits.clone(), images.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire().await;
                execute(&client, runtime.as_ref(), &images, action).await;
                in_flight.lock().expect("in-flight lock poisoned").remove(&key);
                changed.notify_one();
            });
        }
        let mut by_pod: HashMap<&str, Vec<&ContainerReport>> = HashMap::new();
        for r in &reports {
            by_pod.entry(r.pod_uid.as_str()).or_default().push(r);
        }
        for (pod, want) in pods.iter().zip(&desired) {
            if want.terminal {
                continue;
            }
            let reports = by_pod.get(want.pod.uid.as_str()).cloned().unwrap_or_default();
            let placement = Placement {
                host_ip: config.host_ip.clone(),
                pod_ip: runtime.pod_ip(&want.pod.uid).map(|ip| ip.to_string()),
                runtime: config.runtime,
            };
            queue.offer(pod, pod_status(want, pod.status.as_ref(), &reports, &placement, &health, now));
        }
        queue.retain(&desired.iter().map(|d| d.pod.uid.as_str()).collect());
        tokio::time::sleep(Duration::from_millis(limits::AGENT_SYNC_INTERVAL_MS_MIN)).await;
        let _ =
            tokio::time::timeout(Duration::from_millis(limits::AGENT_SYNC_INTERVAL_MS_MAX), changed.notified()).await;
    }
}

/// Makes the volumes of the pods that may start containers, and removes those of pods neither the API nor the
/// runtime knows; returns why a pod's volumes are not ready, by uid.
async fn prepare_volumes(
    volumes: &Volumes,
    pods: &[Arc<Pod>],
    sources: &Arc<Sources>,
    reports: &[ContainerReport],
) -> HashMap<String, Missing> {
    let live: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| super::volumes::made_for(p))
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.volumes.as_ref().is_some_and(|v| !v.is_empty())))
        .cloned()
        .collect();
    if live.is_empty() && !volumes.any() {
        return HashMap::new();
    }
    let keep: HashSet<String> =
        pods.iter().filter_map(|p| p.metadata.uid.clone()).chain(reports.iter().map(|r| r.pod_uid.clone())).collect();
    let (volumes, sources) = (volumes.clone(), Arc::clone(sources));
    tokio::task::spawn_blocking(move || volumes.prepare(&live, &sources, &keep)).await.unwrap_or_default()
}

async fn execute<R: Runtime>(client: &kube::Client, runtime: &R, images: &Images, action: Action) {
    let outcome = match &action {
        Action::Start { pod, sandbox, container, attempt } => {
            // Without its image the container waits (the failure is recorded for its status).
            if !images.ensure(runtime, &container.image, container.pull_policy).await {
                return;
            }
            runtime.start(pod, sandbox, container, *attempt).await.map_err(|e| e.to_string())
        }
        Action::Stop { pod_uid, container, grace, pre_stop } => {
            let grace = match pre_stop {
                Some(hook) => hooks::run_pre_stop(runtime, pod_uid, container, hook, *grace).await,
                None => *grace,
            };
            runtime.stop(pod_uid, container, grace).await.map_err(|e| e.to_string())
        }
        Action::Remove { pod_uid } => runtime.remove(pod_uid).await.map_err(|e| e.to_string()),
        Action::Delete { pod } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&pod.name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match outcome {
        Ok(()) => tracing::debug!(?action, "agent: action done"),
        Err(error) => tracing::warn!(?action, %error, "agent: action failed"),
    }
}

#[cfg(test)]
mod tests;
