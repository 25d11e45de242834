//! `raftsman agent`: the worker side, an API client of the replicas (DESIGN.md invariant 1) that registers
//! its node(s) and runs the pods bound to them through a container runtime.
//!
//! - `balancer.rs`: the one connection to the API servers (health-checked replicas, invariant 7), over TLS
//!   with the node's certificate, which `credentials.rs` obtains with the node token and keeps (or with a
//!   kubeconfig's); `kubelet/`: the kubelet endpoint the API servers reach the node through, serving the
//!   node's certificate to them only.
//! - `node.rs`: registration, Lease and Ready condition of each node.
//! - `pods.rs`: pod sync (pure plan and status, executed through the runtime).
//! - `env.rs`, `sources.rs`, `volumes.rs`: a container's environment and its pod's volumes, from the
//!   ConfigMaps and Secrets the pods refer to; `images.rs`: images pulled as `imagePullPolicy` says;
//!   `hooks.rs`: lifecycle hooks (`preStop`).
//! - `runtime/`: the runtime trait and its implementations.
//! - `usage.rs`: the usage of its pods and nodes, sampled for the leader's metrics.
//! - `proxy/`: the service proxy (cluster IPs and node ports forwarded to the Services' endpoints), with the
//!   service range made local on the host before it starts; `dns/`: the cluster DNS beside it, and the pods'
//!   resolv.conf pointing at it.
//!
//! One agent serves one node, or with `--fake-nodes N` the fake nodes `NAME-0` ... `NAME-(N-1)`, each with its
//! own registration, Lease and status, sharing one balancer, one pod watch and one pod sync. Everything runs
//! until the shutdown signal; what the runtime runs is left running when the agent stops (invariant 7 and the
//! agent's restart).

pub mod balancer;
pub mod credentials;
pub mod dns;
pub mod env;
pub mod hooks;
pub mod images;
pub mod kubelet;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proxy;
pub mod runtime;
pub mod services;
pub mod sources;
pub mod usage;
pub mod volumes;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::apiserver::registry::allocations::ServiceRange;
use crate::limits;
use crate::security::join::NodeToken;
use crate::security::{kubeconfig, tls};
use node::NodeConfig;
use runtime::Runtime;

/// Which runtime the agent runs pods with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Fake,
    Process,
    Docker,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Fake => "fake",
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// The agent's configuration, as the command line gives it.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    pub servers: Vec<SocketAddr>,
    pub runtime: RuntimeKind,
    pub node_labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub data_dir: PathBuf,
    /// Serve this many fake nodes (`NAME-0` ...) instead of one node called `NAME`.
    pub fake_nodes: Option<usize>,
    /// The size of a fake node.
    pub fake_capacity: BTreeMap<String, Quantity>,
    /// Where the kubelet endpoint listens (its port is reported in the Node).
    pub kubelet_addr: SocketAddr,
    /// The node's address (InternalIP) and the pods' hostIP.
    pub node_ip: IpAddr,
    /// The service range, when the agent runs the service proxy and the cluster DNS (the range is made local
    /// on the host first).
    pub service_proxy: Option<ServiceRange>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// How the agent proves who it is to the API servers.
    pub credentials: Credentials,
}

/// How an agent reaches the API servers.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// Over plain HTTP, for API servers that run insecure (`--insecure-api`).
    #[default]
    None,
    /// Over TLS with the node's own certificate, obtained with the node token: the node authorizer lets it
    /// act only for its own node.
    Token(NodeToken),
    /// Over TLS with a kubeconfig's client certificate: whatever RBAC lets that user do (a fake-nodes agent
    /// acts for many nodes, which no node certificate may).
    Kubeconfig(kubeconfig::Identity),
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: String::new(),
            servers: Vec::new(),
            runtime: RuntimeKind::Fake,
            node_labels: BTreeMap::new(),
            taints: Vec::new(),
            data_dir: PathBuf::from("raftsman-agent"),
            fake_nodes: None,
            fake_capacity: default_fake_capacity(),
            kubelet_addr: SocketAddr::from(([127, 0, 0, 1], 10250)),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            service_proxy: None,
            cluster_domain: "cluster.local".to_owned(),
            credentials: Credentials::None,
        }
    }
}

pub fn default_fake_capacity() -> BTreeMap<String, Quantity> {
    [("cpu", "32"), ("memory", "256Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-name must be a DNS subdomain (lowercase letters, digits, '-' and '.'), got {0:?}")]
    NodeName(String),
    #[error("--servers must name at least one API server (HOST:PORT)")]
    NoServers,
    #[error("--fake-nodes needs --runtime fake")]
    FakeNodesNeedFake,
    #[error(
        "--fake-nodes cannot join with a node token: a node's certificate acts only for its own node; give \
         --kubeconfig with a user allowed to act for every fake node"
    )]
    FakeNodesNeedKubeconfig,
    #[error("--fake-nodes must be between 1 and {max}", max = limits::AGENT_FAKE_NODES_MAX)]
    FakeNodes,
    #[error("more than {max} --servers", max = limits::AGENT_SERVERS_MAX)]
    TooManyServers,
}

impl AgentConfig {
    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let name_ok = !self.node_name.is_empty()
            && self.node_name.len() <= 240
            && self.node_name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && self.node_name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self.node_name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !name_ok {
            return Err(ConfigError::NodeName(self.node_name));
        }
        if self.servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        if self.servers.len() > limits::AGENT_SERVERS_MAX {
            return Err(ConfigError::TooManyServers);
        }
        if let Some(n) = self.fake_nodes {
            if self.runtime != RuntimeKind::Fake {
                return Err(ConfigError::FakeNodesNeedFake);
            }
            if n == 0 || n > limits::AGENT_FAKE_NODES_MAX {
                return Err(ConfigError::FakeNodes);
            }
            if matches!(self.credentials, Credentials::Token(_)) {
                return Err(ConfigError::FakeNodesNeedKubeconfig);
            }
        }
        Ok(self)
    }

    /// The addresses the node's certificate serves the kubelet endpoint at: the node's address, which the API
    /// servers dial, and the endpoint's own when it listens on one address that differs.
    pub fn kubelet_hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.node_ip.to_string()];
        let listening = self.kubelet_addr.ip();
        if !listening.is_unspecified() && listening != self.node_ip {
            hosts.push(listening.to_string());
        }
        hosts
    }

    /// The names of the nodes this agent serves.
    pub fn node_names(&self) -> Vec<String> {
        match self.fake_nodes {
            Some(n) => (0..n).map(|i| format!("{}-{i}", self.node_name)).collect(),
            None => vec![self.node_name.clone()],
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// What one node registers as, for the runtime in use.
fn node_config(config: &AgentConfig, name: String) -> NodeConfig {
    let capacity = match config.runtime {
        RuntimeKind::Fake => config.fake_capacity.clone(),
        RuntimeKind::Process | RuntimeKind::Docker => node::host_capacity(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        ),
    };
    let os_image = match config.runtime {
        RuntimeKind::Fake => "raftsman fake node".to_owned(),
        RuntimeKind::Process | RuntimeKind::Docker => {
            let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
            release
                .lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| "Linux".to_owned())
        }
    };
    NodeConfig {
        name,
        labels: config.node_labels.clone(),
        taints: config.taints.clone(),
        capacity,
        address: config.node_ip,
        kubelet_port: config.kubelet_addr.port(),
        runtime_version: format!("{}://{}", config.runtime.name(), env!("CARGO_PKG_VERSION")),
        os_image,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        machine_id: read_trimmed("/etc/machine-id"),
    }
}

/// Aborts its tasks when dropped.
pub(crate) struct AbortOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs the agent with `runtime` until `shutdown` completes.
pub async fn run<R: Runtime>(
    config: AgentConfig,
    runtime: Arc<R>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    tokio::pin!(shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    // The node's certificate, for the kubelet endpoint (and, joined with the node token, for the API), kept
    // renewed.
    let proof = match &config.credentials {
        Credentials::Kubeconfig(identity) => Some(credentials::Proof::Kubeconfig(identity.clone())),
        Credentials::Token(token) => Some(credentials::Proof::Token(token.clone())),
        Credentials::None => None,
    };
    let (tls, kubelet_access) = match proof {
        Some(proof) => {
            let hosts = config.kubelet_hosts();
            let (servers, node, dir) = (&config.servers, &config.node_name, &config.data_dir);
            let obtained = credentials::obtain(servers, proof.clone(), node, &hosts, dir);
            let obtained = tokio::select! {
                obtained = obtained => obtained,
                () = &mut shutdown => return Ok(()),
            };
            let obtained = obtained.map_err(std::io::Error::other)?;
            let identity = obtained.identity().map_err(std::io::Error::other)?;
            let tls = match &config.credentials {
                Credentials::Kubeconfig(shown) => {
                    let pair = (shown.cert_pem.as_bytes(), shown.key_pem.as_bytes());
                    tls::client_config(shown.authority_pem.as_bytes(), Some(pair))
                }
                _ => obtained.client_config(identity.clone()),
            };
            let access =
                kubelet::Access::Tls(obtained.kubelet_config(identity.clone()).map_err(std::io::Error::other)?);
            let (servers, node, dir) = (servers.clone(), node.clone(), dir.clone());
            tasks.spawn(credentials::keep_renewed(servers, proof, node, hosts, dir, obtained, identity));
            (Some(tls.map_err(std::io::Error::other)?), access)
        }
        None => {
            tracing::warn!(
                "no node token: the agent reaches the api servers over plain HTTP and serves its kubelet endpoint to \
                 anyone"
            );
            (None, kubelet::Access::Open)
        }
    };
    let (client, balancer) = balancer::client(&config.servers, Some(config.data_dir.clone()), tls);
    tasks.spawn(balancer::learn_servers(client.clone(), balancer));
    let names = config.node_names();
    let cache: Arc<std::sync::OnceLock<Store<Pod>>> = Arc::default();
    // The kubelet endpoint, which the API servers relay `kubectl logs` to: the pod's uid from the pod cache.
    let kubelet = tokio::net::TcpListener::bind(config.kubelet_addr).await?;
    let (stop_kubelet, kubelet_stopped) = tokio::sync::oneshot::channel::<()>();
    let pods_by_name = {
        let cache = cache.clone();
        move |namespace: &str, name: &str| {
            let key = ObjectRef::<Pod>::new(name).within(namespace);
            cache.get()?.get(&key)?.metadata.uid.clone()
        }
    };
    let connections = proxy::Connections::default();
    // Services and their slices: for the pods' environment, and with the proxy for forwarding and DNS.
    let (followed, follow) = services::follow(client.clone());
    tasks.spawn(follow);
    let mut pod_dns = None;
    if let Some(range) = config.service_proxy {
        // Before anything can send to a service address: none may leave the host.
        proxy::service_range::make_local(&format!("{}/{}", range.base, range.prefix)).map_err(std::io::Error::other)?;
        tasks.spawn(proxy::run(followed.clone(), names[0].clone(), connections.clone()));
        let server = IpAddr::V4(range.cluster_dns_ip());
        let host = dns::resolv::HostResolv::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let upstream = dns::host_resolvers(&host, server);
        let address = SocketAddr::new(server, 53);
        tasks.spawn(dns::run(followed.clone(), address, config.cluster_domain.clone(), range, upstream));
        pod_dns = Some(pods::PodDns { server, domain: config.cluster_domain.clone(), host });
    }
    let usage = usage::Latest::default();
    tasks.spawn(usage::run(runtime.clone(), cache.clone(), names.clone(), usage.clone(), connections));
    tasks.spawn(kubelet::serve(kubelet, kubelet_access, pods_by_name, runtime.clone(), usage, async {
        let _ = kubelet_stopped.await;
    }));
    tasks.spawn(pods::run(
        client.clone(),
        runtime,
        pods::PodSyncConfig {
            nodes: names.clone(),
            host_ip: config.node_ip.to_string(),
            runtime: config.runtime.name(),
            cache,
            volumes_dir: config.data_dir.join("volumes"),
            dns: pod_dns,
            services: followed,
        },
    ));
    let count = names.len() as u32;
    let spread = |i: usize| Duration::from_millis(limits::AGENT_LEASE_RENEW_MS) * i as u32 / count.max(1);
    for (i, name) in names.into_iter().enumerate() {
        let (client, node) = (client.clone(), node_config(&config, name));
        let offset = spread(i);
        tasks.spawn(async move {
            // Registrations are spread like the renewals, so that a thousand fake nodes do not arrive at once.
            tokio::time::sleep(offset / 10).await;
            let uid = node::register(&client, &node).await;
            let renew = node::renew_lease(client.clone(), node.name.clone(), uid, Duration::ZERO);
            let report = node::report_status(client, node, offset);
            tokio::join!(renew, report);
        });
    }
    tracing::info!(nodes = count, runtime = config.runtime.name(), servers = ?config.servers, "agent: running");
    shutdown.await;
    tracing::info!("agent: stopping; what runs is left running");
    let _ = stop_kubelet.send(());
    tasks.shutdown().await;
    Ok(())
}
