//! The container runtime trait the kubelet drives (start, stop, remove, list, logs, pod IPs), and its
//! implementations: `process` (local child processes).

pub mod process;

pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The command and then the args, as the pod gives them (the args alone when there is no command).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}
pub enum ContainerState {
    Running { started_at: jiff::Timestamp },
    Exited { exit_code: i32, reason: String, started_at: jiff::Timestamp, finished_at: jiff::Timestamp },
}
pub struct ContainerReport {
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
}
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Start(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
pub trait Runtime: Send + Sync + 'static {
    /// Starts attempt `attempt` (0 first) of a container; any earlier attempt has exited.
    fn start(
        &self,
        pod: &PodRef,
        container: &ContainerSpec,
        attempt: u32,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Stops a running container: SIGTERM (to its process group), SIGKILL once `grace` has passed; returns once it has exited.
    fn stop(
        &self,
        pod_uid: &str,
        container: &str,
        grace: std::time::Duration,
    ) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Forgets a pod whose containers have all exited, removing its files.
    fn remove(&self, pod_uid: &str) -> impl std::future::Future<Output = Result<(), RuntimeError>> + Send;
    /// Every container the runtime knows (the latest attempt of each), including after a restart of the agent.
    fn list(&self) -> impl std::future::Future<Output = Result<Vec<ContainerReport>, RuntimeError>> + Send;
    /// The log file of a container's current (or, with `previous`, its previous) attempt, if any.
    fn log_path(&self, pod_uid: &str, container: &str, previous: bool) -> Option<std::path::PathBuf>;
    /// The pod's IP as this runtime gives it.
    fn pod_ip(&self, pod_uid: &str) -> Option<std::net::IpAddr>;
}
