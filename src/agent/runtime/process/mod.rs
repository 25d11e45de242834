//! The process runtime: each container attempt is a local child process (Nomad's raw_exec), run under a shim
//! (`raftsman agent-shim`, `shim.rs`) that captures its output into a CRI log file and records how it exited.
//! The image name is recorded and otherwise ignored.
//!
//! Layout under the runtime's data dir, every state file written whole and renamed into place:
//! ```text
//! pods/<pod uid>/pod.json                          the pod's namespace and name
//! pods/<pod uid>/work/                             the containers' working directory unless they name one
//! pods/<pod uid>/containers/<name>/<attempt>/      the latest attempt and the one before it
//!     spec.json     what to run (argv, env, working directory, image), written by the agent
//!     started.json  the process's and the shim's pids and start times, written by the shim once it runs
//!     exited.json   exit code, reason and times, written by the shim once it has exited (or by the agent
//!                   when the shim could not: start failures, a shim that died)
//!     log, log.1    the attempt's output (`kubelet::container_log`)
//! ```
//!
//! Invariants:
//! - A container outlives the agent: its shim starts a session of its own (no shared process group, no
//!   controlling terminal), reads the container's output itself, and holds no pipe to the agent.
//! - A container is its own process group; stopping signals the group, and when the container's main process
//!   exits the shim kills what is left of its group and its other descendants (a container's processes end
//!   with it).
//! - A restarted agent (a new `ProcessRuntime` on the same dir) finds every container by its files and keeps
//!   reporting it with the same pids; it learns the exit from `exited.json`. A process is identified by its pid
//!   and its start time in `/proc`, so a reused pid is never mistaken for it nor signalled.
//! - What is lost: if a shim itself is killed, its container's exit code cannot be known; the container is then
//!   reported `ContainerStatusUnknown` (137, as upstream) once its process is gone, and its output from then on
//!   is not captured (writes fail with a broken pipe).
//! - The environment is exactly the container's, plus `PATH` (Docker's default) and `HOME` (the agent user's home
//!   from the password database) when the container does not set them. Nothing else of the agent's leaks.

mod shim;
mod usage;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use k8s_openapi::api::core::v1::Pod;

use super::{
    ContainerLogs, ContainerReport, ContainerSpec, ContainerState, Counters, ExecRequest, ExecSession, PodCounters,
    PodRef, Runtime, RuntimeError, SandboxSpec, START_ERROR, START_ERROR_EXIT_CODE, STDERR, STDOUT,
};
use crate::agent::kubelet::LogRequest;
use crate::limits;

pub use shim::run as run_shim;

/// The hidden subcommand of the `raftsman` binary that runs one container attempt under a shim.
pub const SHIM_SUBCOMMAND: &str = "agent-shim";

/// `PATH` for a container that does not set one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const POD_FILE: &str = "pod.json";
const WORK_DIR: &str = "work";
const CONTAINERS_DIR: &str = "containers";
const SPEC_FILE: &str = "spec.json";
const STARTED_FILE: &str = "started.json";
const EXITED_FILE: &str = "exited.json";
const LOG_FILE: &str = "log";

/// The exit code and reason of a container whose end was not observed (kubelet's).
const UNKNOWN_EXIT_CODE: i32 = 137;
const STATUS_UNKNOWN: &str = "ContainerStatusUnknown";

/// `spec.json`: what the shim runs.
#[derive(Debug, Serialize, Deserialize)]
struct ShimSpec {
    pod_uid: String,
    container: String,
    image: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
}

/// `pod.json`.
#[derive(Debug, Serialize, Deserialize)]
struct PodFile {
    uid: String,
    namespace: String,
    name: String,
}

/// `started.json`: the running process and its shim, each with its start time in clock ticks after boot (the
/// 22nd field of `/proc/<pid>/stat`), which tells them from a later process with the same pid.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Started {
    pid: u32,
    start_ticks: u64,
    shim_pid: u32,
    shim_start_ticks: u64,
    started_at: String,
}

/// `exited.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Exited {
    exit_code: i32,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    started_at: String,
    finished_at: String,
}

fn format_time(time: Timestamp) -> String {
    format!("{time:.9}")
}

fn parse_time(text: &str) -> Timestamp {
    text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Exited {
    fn start_error(message: String) -> Exited {
        let now = format_time(Timestamp::now());
        Exited {
            exit_code: START_ERROR_EXIT_CODE,
            reason: START_ERROR.to_string(),
            message: Some(message),
            started_at: now.clone(),
            finished_at: now,
        }
    }

    /// How the runtime reports an exit code: upstream's reasons.
    fn of_status(exit_code: i32) -> &'static str {
        if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// What the runtime knows of one attempt.
#[derive(Clone, Debug)]
enum Known {
    /// Its shim was started (by this agent or a previous one) and has not said yet whether the process runs.
    Pending {
        since: SystemTime,
    },
    Running(Started),
    Exited(Exited),
}

/// The latest attempt of one container.
#[derive(Clone, Debug)]
struct Tracked {
    attempt: u32,
    /// The attempt before it whose files are kept.
    previous: Option<u32>,
    state: Known,
}

type Key = (String, String);

/// The process runtime; see the module documentation.
pub struct ProcessRuntime {
    pods_dir: PathBuf,
    /// The program run as `<shim> agent-shim <attempt dir>`: the agent's own binary.
    shim: PathBuf,
    home: String,
    host_ip: Option<IpAddr>,
    /// The latest attempt of every container, by pod uid and container name. A std Mutex: nothing awaits
    /// under it, and no file is touched under it.
    containers: Mutex<BTreeMap<Key, Tracked>>,
}

impl ProcessRuntime {
    /// A runtime keeping its files under `data_dir`, with this very program as the shim; finds the containers
    /// a previous agent left running there.
    pub fn new(data_dir: &Path) -> Result<ProcessRuntime, RuntimeError> {
        ProcessRuntime::with_shim(data_dir, std::env::current_exe()?)
    }

    /// As `new`, with another `raftsman` binary as the shim (tests run from a test binary).
    pub fn with_shim(data_dir: &Path, shim: PathBuf) -> Result<ProcessRuntime, RuntimeError> {
        let pods_dir = data_dir.join("pods");
        std::fs::create_dir_all(&pods_dir)?;
        let containers = discover(&pods_dir)?;
        Ok(ProcessRuntime { pods_dir, shim, home: home_dir(), host_ip: None, containers: Mutex::new(containers) })
    }

    /// The IP every pod reports: the processes share the host's network, so it is the node's.
    pub fn with_host_ip(mut self, ip: IpAddr) -> ProcessRuntime {
        self.host_ip = Some(ip);
        self
    }

    /// The log file of a container's current (or, with `previous`, its previous) attempt, if any.
    pub fn log_path(&self, pod_uid: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let tracked = self.tracked(&(pod_uid.to_string(), container.to_string()))?;
        let attempt = if previous { tracked.previous? } else { tracked.attempt };
        let path = self.container_dir(pod_uid, container).join(attempt.to_string()).join(LOG_FILE);
        path.exists().then_some(path)
    }

    /// The pid of a container's running process (its process group id too).
    pub fn pid(&self, pod_uid: &str, container: &str) -> Option<u32> {
        let containers = self.containers.lock().expect("no panics under this lock");
        match &containers.get(&(pod_uid.to_string(), container.to_string()))?.state {
            Known::Running(started) => Some(started.pid),
            _ => None,
        }
    }

    fn container_dir(&self, pod_uid: &str, container: &str) -> PathBuf {
        self.pods_dir.join(pod_uid).join(CONTAINERS_DIR).join(container)
    }

    fn tracked(&self, key: &Key) -> Option<Tracked> {
        self.containers.lock().expect("no panics under this lock").get(key).cloned()
    }

    /// Sets what is known of `attempt`, unless a later attempt has been started meanwhile.
    fn record(&self, key: &Key, attempt: u32, state: Known) {
        let mut containers = self.containers.lock().expect("no panics under this lock");
        if let Some(tracked) = containers.get_mut(key) {
            if tracked.attempt == attempt {
                tracked.state = state;
            }
        }
    }

    /// Looks again at the latest attempt of a container that may have changed, and records what it finds.
    fn refresh(&self, key: &Key) -> Option<Known> {
        let tracked = self.tracked(key)?;
        if matches!(tracked.state, Known::Exited(_)) {
            return Some(tracked.state);
        }
        let dir = self.container_dir(&key.0, &key.1).join(tracked.attempt.to_string());
        let state = observe(&dir, &tracked.state);
        self.record(key, tracked.attempt, state.clone());
        Some(state)
    }

    async fn start_attempt(&self, pod: &PodRef, container: &ContainerSpec, attempt: u32) -> Result<(), RuntimeError> {
        check_name(&pod.uid, "pod uid")?;
        check_name(&container.name, "container name")?;
        let key = (pod.uid.clone(), container.name.clone());
        let previous = match self.tracked(&key) {
            Some(t) if t.attempt >= attempt => {
                return Err(RuntimeError::Start(format!(
                    "attempt {attempt} of container {:?} comes after attempt {}",
                    container.name, t.attempt
                )))
            }
            Some(Tracked { state: Known::Exited(_), attempt: last, .. }) => Some(last),
            Some(_) => {
                return Err(RuntimeError::Start(format!("container {:?} is still running", container.name)));
            }
            None => None,
        };
        let pod_dir = self.pods_dir.join(&pod.uid);
        let work_dir = pod_dir.join(WORK_DIR);
        std::fs::create_dir_all(&work_dir)?;
        if !pod_dir.join(POD_FILE).exists() {
            let file = PodFile { uid: pod.uid.clone(), namespace: pod.namespace.clone(), name: pod.name.clone() };
            write_json(&pod_dir.join(POD_FILE), &file)?;
        }
        let container_dir = self.container_dir(&pod.uid, &container.name);
        std::fs::create_dir_all(&container_dir)?;
        prune_attempts(&container_dir, previous)?;
        let dir = container_dir.join(attempt.to_string());
        std::fs::create_dir(&dir)?;
        let mut env = container.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        if !env.iter().any(|(k, _)| k == "HOME") {
            env.push(("HOME".to_string(), self.home.clone()));
        }
        let spec = ShimSpec {
            pod_uid: pod.uid.clone(),
            container: container.name.clone(),
            image: container.image.clone(),
            argv: container.argv(),
            env,
            working_dir: container.working_dir.as_ref().map_or(work_dir, PathBuf::from),
        };
        write_json(&dir.join(SPEC_FILE), &spec)?;
        self.containers
            .lock()
            .expect("no panics under this lock")
            .insert(key.clone(), Tracked { attempt, previous, state: Known::Pending { since: SystemTime::now() } });

        let failed = |message: String| -> Result<(), RuntimeError> {
            let exited = Exited::start_error(message.clone());
            let _ = write_json(&dir.join(EXITED_FILE), &exited);
            self.record(&key, attempt, Known::Exited(exited));
            Err(RuntimeError::Start(message))
        };
        if spec.argv.is_empty() {
            return failed("no command given, and the process runtime has no image entrypoint to run".to_string());
        }
        let mut command = tokio::process::Command::new(&self.shim);
        command
            .arg(SHIM_SUBCOMMAND)
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| if libc::setsid() == -1 { Err(io::Error::last_os_error()) } else { Ok(()) });
        }
        let mut shim = match command.spawn() {
            Ok(shim) => shim,
            Err(e) => return failed(format!("starting the shim {:?}: {e}", self.shim)),
        };
        let deadline = Instant::now() + Duration::from_millis(limits::CONTAINER_START_TIMEOUT_MS);
        loop {
            match observe(&dir, &Known::Pending { since: SystemTime::now() }) {
                Known::Pending { .. } => {}
                state => {
                    // A container may also have run and exited already: only a start error is a failure.
                    let exited = match &state {
                        Known::Exited(exited) if exited.reason == START_ERROR => {
                            Some(exited.message.clone().unwrap_or_else(|| exited.reason.clone()))
                        }
                        _ => None,
                    };
                    self.record(&key, attempt, state);
                    // The shim is this agent's child until it ends: reap it then.
                    tokio::spawn(async move {
                        let _ = shim.wait().await;
                    });
                    return match exited {
                        Some(message) => Err(RuntimeError::Start(message)),
                        None => Ok(()),
                    };
                }
            }
            if let Ok(Some(status)) = shim.try_wait() {
                // It may have written its files just before it ended.
                if let state @ (Known::Running(_) | Known::Exited(_)) =
                    observe(&dir, &Known::Pending { since: SystemTime::now() })
                {
                    self.record(&key, attempt, state.clone());
                    if let Known::Exited(exited) = state {
                        if exited.reason == START_ERROR {
                            return Err(RuntimeError::Start(exited.message.unwrap_or(exited.reason)));
                        }
                    }
                    return Ok(());
                }
                return failed(format!("the shim ended ({status}) before starting the container"));
            }
            if Instant::now() >= deadline {
                let _ = shim.start_kill();
                let _ = shim.wait().await;
                return failed(format!(
                    "the shim did not start the container within {} ms",
                    limits::CONTAINER_START_TIMEOUT_MS
                ));
            }
            tokio::time::sleep(Duration::from_millis(limits::CONTAINER_START_POLL_MS)).await;
        }
    }

    async fn stop_container(&self, pod_uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        let key = (pod_uid.to_string(), container.to_string());
        let begun = Instant::now();
        let give_up =
            begun + grace + Duration::from_millis(limits::CONTAINER_START_TIMEOUT_MS + limits::CONTAINER_KILL_WAIT_MS);
        let mut term_sent_at = None;
        let mut kill_sent = false;
        loop {
            match self.refresh(&key) {
                None | Some(Known::Exited(_)) => return Ok(()),
                Some(Known::Pending { .. }) => {}
                Some(Known::Running(started)) => match term_sent_at {
                    None => {
                        signal_group(&started, libc::SIGTERM);
                        term_sent_at = Some(Instant::now());
                    }
                    Some(at) if !kill_sent && at.elapsed() >= grace => {
                        signal_group(&started, libc::SIGKILL);
                        kill_sent = true;
                    }
                    Some(_) => {}
                },
            }
            if Instant::now() >= give_up {
                return Err(RuntimeError::Io(io::Error::other(format!(
                    "container {container:?} of pod {pod_uid} did not exit within {:?} of being stopped",
                    begun.elapsed()
                ))));
            }
            tokio::time::sleep(Duration::from_millis(limits::CONTAINER_STATE_POLL_MS)).await;
        }
    }

    fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        check_name(pod_uid, "pod uid")?;
        let keys: Vec<Key> = {
            let containers = self.containers.lock().expect("no panics under this lock");
            containers.keys().filter(|(uid, _)| uid == pod_uid).cloned().collect()
        };
        for key in &keys {
            if !matches!(self.refresh(key), None | Some(Known::Exited(_))) {
                return Err(RuntimeError::Io(io::Error::other(format!(
                    "pod {pod_uid} cannot be removed: its container {:?} has not exited",
                    key.1
                ))));
            }
        }
        {
            let mut containers = self.containers.lock().expect("no panics under this lock");
            for key in &keys {
                containers.remove(key);
            }
        }
        match std::fs::remove_dir_all(self.pods_dir.join(pod_uid)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn list_containers(&self) -> Vec<ContainerReport> {
        let keys: Vec<Key> = {
            let containers = self.containers.lock().expect("no panics under this lock");
            containers.iter().filter(|(_, t)| !matches!(t.state, Known::Exited(_))).map(|(k, _)| k.clone()).collect()
        };
        for key in &keys {
            self.refresh(key);
        }
        let containers = self.containers.lock().expect("no panics under this lock");
        containers
            .iter()
            .filter_map(|((pod_uid, name), tracked)| {
                let state = match &tracked.state {
                    Known::Pending { .. } => return None,
                    Known::Running(started) => ContainerState::Running { started_at: parse_time(&started.started_at) },
                    Known::Exited(exited) => ContainerState::Exited {
                        exit_code: exited.exit_code,
                        reason: exited.reason.clone(),
                        message: exited.message.clone(),
                        started_at: parse_time(&exited.started_at),
                        finished_at: parse_time(&exited.finished_at),
                    },
                };
                Some(ContainerReport {
                    pod_uid: pod_uid.clone(),
                    name: name.clone(),
                    attempt: tracked.attempt,
                    state,
                    ids: None,
                })
            })
            .collect()
    }
}

impl Runtime for ProcessRuntime {
    async fn start(
        &self,
        pod: &PodRef,
        _sandbox: &SandboxSpec,
        container: &ContainerSpec,
        attempt: u32,
    ) -> Result<(), RuntimeError> {
        self.start_attempt(pod, container, attempt).await
    }

    async fn stop(&self, pod_uid: &str, container: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop_container(pod_uid, container, grace).await
    }

    async fn remove(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.remove_pod(pod_uid)
    }

    async fn list(&self) -> Result<Vec<ContainerReport>, RuntimeError> {
        Ok(self.list_containers())
    }

    async fn logs(
        &self,
        pod_uid: &str,
        container: &str,
        request: &LogRequest,
    ) -> Result<Option<ContainerLogs>, RuntimeError> {
        Ok(self.log_path(pod_uid, container, request.previous).map(ContainerLogs::File))
    }

    /// Runs the command as a child of the agent with the container's environment and working directory (no
    /// terminal: `tty` is not given).
    async fn exec_session(
        &self,
        pod_uid: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let key = (pod_uid.to_string(), container.to_string());
        let tracked = self.tracked(&key).filter(|t| matches!(t.state, Known::Running(_)));
        let Some(tracked) = tracked else {
            return Err(RuntimeError::Start(format!("container {container} is not running")));
        };
        let dir = self.container_dir(pod_uid, container).join(tracked.attempt.to_string());
        let spec: ShimSpec = read_json(&dir.join(SPEC_FILE))
            .ok_or_else(|| RuntimeError::Start(format!("container {container} has no spec")))?;
        let Some((program, args)) = request.command.split_first() else {
            return Err(RuntimeError::Start("no command to run".to_string()));
        };
        let piped = std::process::Stdio::piped;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.working_dir)
            .stdin(if request.stdin { piped() } else { std::process::Stdio::null() })
            .stdout(piped())
            .stderr(piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().map(|w| Box::pin(w) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let stdout = labelled(tokio_util::io::ReaderStream::new(child.stdout.take().expect("piped")), STDOUT);
        let stderr = labelled(tokio_util::io::ReaderStream::new(child.stderr.take().expect("piped")), STDERR);
        let exit = async move { Ok(child.wait().await?.code().unwrap_or(START_ERROR_EXIT_CODE)) };
        Ok(ExecSession {
            output: futures::stream::select(stdout, stderr).boxed(),
            stdin,
            exit: exit.boxed(),
            resize: None,
        })
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        let containers = self.containers.lock().expect("no panics under this lock");
        containers.keys().any(|(uid, _)| uid == pod_uid).then_some(self.host_ip?)
    }

    fn usage(&self, pods: &[Arc<Pod>], _at: Instant) -> Vec<PodCounters> {
        let running: Vec<(String, String, u32, u64)> = {
            let containers = self.containers.lock().expect("no panics under this lock");
            containers
                .iter()
                .filter_map(|((uid, name), tracked)| match &tracked.state {
                    Known::Running(s) => Some((uid.clone(), name.clone(), s.shim_pid, s.shim_start_ticks)),
                    _ => None,
                })
                .collect()
        };
        let tree = usage::Tree::new(usage::scan(), usage::units());
        pods.iter()
            .filter_map(|pod| pod.metadata.uid.as_deref())
            .map(|uid| PodCounters {
                uid: uid.to_owned(),
                containers: running
                    .iter()
                    .filter(|(u, ..)| u == uid)
                    .filter_map(|(_, name, shim, started)| Some((name.clone(), tree.below(*shim, *started)?)))
                    .collect(),
                metrics: BTreeMap::new(),
            })
            .collect()
    }

    fn node_usage(&self) -> Option<Counters> {
        host_usage()
    }
}

/// A command's output read from one of its pipes, labelled with the stream it came from; ends at the first
/// error.
fn labelled(
    chunks: impl futures::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static,
    channel: u8,
) -> impl futures::Stream<Item = (u8, bytes::Bytes)> + Send + 'static {
    chunks
        .take_while(|chunk| futures::future::ready(chunk.is_ok()))
        .filter_map(move |chunk| futures::future::ready(chunk.ok().map(|bytes| (channel, bytes))))
}

/// The host's counters, from `/proc`.
pub fn host_usage() -> Option<Counters> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    usage::host(&stat, &meminfo, usage::units().0)
}

/// What an attempt's files and processes say of it now, given what was known before.
fn observe(dir: &Path, known: &Known) -> Known {
    if let Some(exited) = read_json::<Exited>(&dir.join(EXITED_FILE)) {
        return Known::Exited(exited);
    }
    match known {
        Known::Exited(_) => known.clone(),
        Known::Pending { since } => match read_json::<Started>(&dir.join(STARTED_FILE)) {
            Some(started) => observe(dir, &Known::Running(started)),
            None if since.elapsed().unwrap_or_default() > Duration::from_millis(limits::CONTAINER_START_TIMEOUT_MS) => {
                let exited = Exited::start_error("the container was not started (its shim left no record)".to_string());
                let _ = write_json(&dir.join(EXITED_FILE), &exited);
                Known::Exited(exited)
            }
            None => known.clone(),
        },
        Known::Running(started) => {
            if is_alive(started.shim_pid, started.shim_start_ticks) {
                return known.clone();
            }
            // The shim writes its record before it ends.
            if let Some(exited) = read_json::<Exited>(&dir.join(EXITED_FILE)) {
                return Known::Exited(exited);
            }
            if is_alive(started.pid, started.start_ticks) {
                // The shim is gone but the container is not: it runs on, and its exit code will be unknown.
                return known.clone();
            }
            let exited = Exited {
                exit_code: UNKNOWN_EXIT_CODE,
                reason: STATUS_UNKNOWN.to_string(),
                message: Some("the container's shim ended without recording how the container exited".to_string()),
                started_at: started.started_at.clone(),
                finished_at: format_time(Timestamp::now()),
            };
            let _ = write_json(&dir.join(EXITED_FILE), &exited);
            Known::Exited(exited)
        }
    }
}

/// Reads the runtime's files back: the latest attempt (and the one before) of every container.
fn discover(pods_dir: &Path) -> io::Result<BTreeMap<Key, Tracked>> {
    let mut found = BTreeMap::new();
    for pod in std::fs::read_dir(pods_dir)? {
        let pod = pod?;
        let Some(uid) = pod.file_name().to_str().map(str::to_string) else { continue };
        let containers_dir = pod.path().join(CONTAINERS_DIR);
        let Ok(containers) = std::fs::read_dir(&containers_dir) else { continue };
        for container in containers {
            let container = container?;
            let Some(name) = container.file_name().to_str().map(str::to_string) else { continue };
            let mut attempts = attempts(&container.path())?;
            let Some(attempt) = attempts.pop() else { continue };
            let dir = container.path().join(attempt.to_string());
            let since = std::fs::metadata(dir.join(SPEC_FILE)).and_then(|m| m.modified()).unwrap_or(SystemTime::now());
            let state = observe(&dir, &Known::Pending { since });
            found.insert((uid.clone(), name), Tracked { attempt, previous: attempts.pop(), state });
        }
    }
    Ok(found)
}

/// The attempts of a container that have a directory, in order.
fn attempts(container_dir: &Path) -> io::Result<Vec<u32>> {
    let mut attempts: Vec<u32> =
        std::fs::read_dir(container_dir)?.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect();
    attempts.sort_unstable();
    Ok(attempts)
}

/// Removes every attempt's files but those of `keep`, before a new attempt begins.
fn prune_attempts(container_dir: &Path, keep: Option<u32>) -> io::Result<()> {
    for attempt in attempts(container_dir)? {
        if Some(attempt) != keep {
            std::fs::remove_dir_all(container_dir.join(attempt.to_string()))?;
        }
    }
    Ok(())
}

/// Pod uids and container names become path components: nothing but a plain file name is accepted.
fn check_name(name: &str, what: &str) -> Result<(), RuntimeError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 253 || name == "." || name == ".." || !name.chars().all(plain) {
        return Err(RuntimeError::Start(format!("{what} {name:?} cannot name a directory")));
    }
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes a state file whole: into a temporary file, renamed over the old one.
fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, serde_json::to_vec(value).map_err(io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}

/// A process's state letter and start time in clock ticks after boot, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: fields are counted after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some((state, start_ticks))
}

/// Whether the process `pid` that started at `start_ticks` is still running (a zombie has ended).
fn is_alive(pid: u32, start_ticks: u64) -> bool {
    matches!(proc_stat(pid), Some((state, ticks)) if ticks == start_ticks && !matches!(state, 'Z' | 'X'))
}

/// Signals a container's process group, if its main process is still the one that was started.
fn signal_group(started: &Started, signal: libc::c_int) {
    if !is_alive(started.pid, started.start_ticks) {
        return;
    }
    let Ok(group) = libc::pid_t::try_from(started.pid) else { return };
    // SAFETY: kill(2) touches no memory; the group is the container's (its leader was checked just now).
    unsafe {
        libc::kill(-group, signal);
    }
}

/// The home directory of the user the agent runs as, from the password database; `/` if it has none.
fn home_dir() -> String {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwuid_r writes only into `entry` and `buffer`, whose sizes it is given; `found` points at
    // `entry` or is null, and the strings it holds live in `buffer`, read before it is dropped.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(libc::getuid(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
        if rc == 0 && !found.is_null() && !entry.pw_dir.is_null() {
            let dir = CStr::from_ptr(entry.pw_dir).to_string_lossy().into_owned();
            if !dir.is_empty() {
                return dir;
            }
        }
    }
    "/".to_string()
}
