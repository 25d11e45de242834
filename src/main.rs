//! The `raftsman` command: a control-plane replica (`server`), a worker agent (`agent`), a local HA cluster
//! (`up`), the cluster's certificates (`certs`) and the benchmark (`bench`). The only place that uses anyhow
//! and reads process-level settings.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use raftsman::cluster;
use raftsman::cluster::config::ServerConfig;

#[derive(Parser)]
#[command(name = "raftsman", version, about = "A Kubernetes-style control plane with its own Raft-replicated store")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one container attempt of the agent's process runtime; started by the agent, not by hand.
    #[command(name = "agent-shim", hide = true)]
    AgentShim { attempt_dir: PathBuf },
    /// Run one control-plane replica.
    Server(Box<ServerArgs>),
    /// Run a local HA cluster of three replicas (child processes) until interrupted.
    Up(UpArgs),
    /// Benchmark a three-replica raftsman cluster against a three-member etcd cluster, side by side.
    Bench(BenchArgs),
    /// Run a worker agent: register a node (or many fake ones) and run the pods bound to it.
    Agent(Box<AgentArgs>),
    /// Make the cluster's certificates: the peer authority and each replica's peer certificate, the etcd
    /// authority, each replica's etcd certificate and etcd clients', the cluster authority and each replica's
    /// API certificate, and users' kubeconfigs.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Inspect and maintain a running cluster: in the directory `raftsman up` runs from it finds that cluster;
    /// elsewhere give --endpoints and the etcd client credentials, as etcdctl takes them.
    Ctl(CtlArgs),
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The replicas' etcd client addresses (HOST:PORT,...); default: the cluster `raftsman up` runs from
    /// --dir.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The etcd authority's certificate, the client certificate and its key (all three, or none: plain gRPC).
    #[arg(long, requires_all = ["cert", "key"])]
    cacert: Option<PathBuf>,
    #[arg(long, requires_all = ["cacert", "key"])]
    cert: Option<PathBuf>,
    #[arg(long, requires_all = ["cacert", "cert"])]
    key: Option<PathBuf>,
    /// An admin kubeconfig, to list the agents (default: the one `raftsman up` wrote).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The data dir of `raftsman up` to find the cluster in when --endpoints is not given.
    #[arg(long, default_value = ".raftsman")]
    dir: PathBuf,
    #[command(subcommand)]
    command: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Each replica's role, term, committed and applied indexes, lag and health; each agent's last heartbeat.
    Status,
    /// Snapshots of the store.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Whether one replica may be stopped now for a rolling upgrade, and which one next (exits 1 when not).
    UpgradeCheck,
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Save the first endpoint's state to FILE, as `etcdctl snapshot save` does (`server --restore` reads it).
    Save { file: PathBuf },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create the peer authority (peer-ca.crt and peer-ca.key) in --dir, unless it is there already. Keep
    /// peer-ca.key on this machine; every replica gets peer-ca.crt.
    PeerCa {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue replica NAME's peer certificate (NAME-peer.crt and NAME-peer.key in --dir), signed by the peer
    /// authority in --dir, valid for the hosts (IP addresses or DNS names) its peers dial it at.
    Peer {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// The host of the replica's --peer-addr (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Create the etcd authority (etcd-ca.crt and etcd-ca.key) in --dir, unless it is there already. Every
    /// replica gets etcd-ca.crt (--trusted-ca-file); whoever holds a certificate it signed may read and write
    /// every key of the store.
    EtcdCa {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue replica NAME's etcd serving certificate (NAME-etcd.crt and NAME-etcd.key in --dir), signed by the
    /// etcd authority in --dir, valid for the hosts clients reach its etcd client port at.
    Etcd {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// The host of the replica's --client-addr (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Issue an etcd client certificate for NAME (NAME.crt and NAME.key in --dir), signed by the etcd authority
    /// in --dir: etcdctl's --cert and --key.
    EtcdClient {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Create the cluster authority (ca.crt and ca.key) in --dir, unless it is there already. Every replica
    /// gets ca.crt (--client-ca-file); replicas that sign nodes' and the admin's certificates get ca.key too
    /// (--cluster-signing-cert-file and --cluster-signing-key-file).
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue replica NAME's API certificate (NAME-api.crt and NAME-api.key in --dir), signed by the cluster
    /// authority in --dir, valid for the hosts clients reach its API at.
    Api {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// The host of the replica's --api-addr (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// Write a kubeconfig for USER (in GROUP) with a client certificate signed by the cluster authority in
    /// --dir, for the API at --server (`https://HOST:PORT`).
    Kubeconfig {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        /// The user's group (a certificate names one); `system:masters` may do anything.
        #[arg(long)]
        group: Option<String>,
        /// Where to write it (readable by its owner only).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the node token of the cluster authority in --dir to --out (readable by its owner only): the token
    /// agents join with (`raftsman agent --token-file`), the one every replica holding that authority's key
    /// writes to `<data dir>/node-token`.
    NodeToken {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct AgentArgs {
    /// A TOML file of settings: each key is one of these long flags (`node-name = "w1"`, lists such as
    /// `servers` as arrays), meaning what the flag means; a flag on the command line wins over the file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node's name (with --fake-nodes N, the prefix of NAME-0 ... NAME-(N-1)).
    #[arg(long)]
    node_name: String,
    /// HOST:PORT of the API servers to start from (more are learned from the cluster).
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<SocketAddr>,
    /// What runs the pods: `fake` (nothing runs; for tests at scale), `process` (local processes) or `docker`
    /// (containers of the local Docker Engine).
    #[arg(long, value_enum)]
    runtime: AgentRuntime,
    /// Labels of the node, k=v,...
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints the node registers with, k=v:Effect,...
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// Where the agent keeps its state (learned API servers, the process runtime's pods).
    #[arg(long, default_value = "raftsman-agent")]
    data_dir: PathBuf,
    /// Serve this many fake nodes from this one process (needs --runtime fake).
    #[arg(long)]
    fake_nodes: Option<usize>,
    /// The size of a fake node, k=v,... (cpu, memory, pods, ...).
    #[arg(long, default_value = "cpu=32,memory=256Gi,pods=110,ephemeral-storage=100Gi")]
    fake_capacity: String,
    /// Address of the kubelet endpoint (`kubectl logs` through the API server).
    #[arg(long, default_value = "127.0.0.1:10250")]
    kubelet_addr: SocketAddr,
    /// The Docker network pods join (--runtime docker), created as a bridge on --pod-subnet when missing.
    #[arg(long, default_value = "raftsman-pods")]
    pod_network: String,
    /// The subnet of a pod network the agent creates.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_subnet: String,
    /// Run the service proxy (on by default with --runtime docker): it makes the whole service range local
    /// on this host (a `local` route; needs CAP_NET_ADMIN) and forwards cluster IPs and node ports.
    #[arg(long)]
    service_proxy: Option<bool>,
    /// The API servers' service range (their --service-cluster-ip-range). With the proxy, the agent serves the
    /// cluster DNS on its tenth address and points its pods at it.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cluster_ip_range: raftsman::apiserver::registry::allocations::ServiceRange,
    /// The cluster domain the DNS answers for.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node token (a replica's `<data dir>/node-token`): the agent obtains its node's certificate with it
    /// and reaches the API over TLS. Without a token (or --token-file) it speaks plain HTTP, for API servers
    /// started with --insecure-api.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the node token.
    #[arg(long, conflicts_with = "kubeconfig")]
    token_file: Option<PathBuf>,
    /// Reach the API with the certificate authority and client certificate of this kubeconfig's current
    /// context instead of joining with the node token (its server address is not used: --servers is). A
    /// --fake-nodes agent needs one: a node's own certificate acts only for its node.
    #[arg(long, conflicts_with = "token")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AgentRuntime {
    Fake,
    Process,
    Docker,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Where both clusters keep their data and logs (wiped first).
    #[arg(long, default_value = "raftsman-bench")]
    data_dir: PathBuf,
    /// The etcd binary to compare against.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Which benchmarks to run: the store against etcd, the Kubernetes API, the scheduler, or all three; or
    /// the workload controllers, the service proxy against direct connections, or the soak (none of these part
    /// of all: the soak runs for --soak-minutes).
    #[arg(long, value_enum, default_value_t = BenchSuite::All)]
    suite: BenchSuite,
    /// Fake nodes of the scheduler and soak benchmarks (the soak keeps as many pods).
    #[arg(long, default_value_t = 1_000)]
    fake_nodes: usize,
    /// Bare pods of the scheduler benchmark; the replicas of the workloads benchmark's Deployment.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// How long the soak runs.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    soak_minutes: u64,
    /// The soak's sampling period.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    sample_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchSuite {
    All,
    Store,
    Api,
    Scheduler,
    Soak,
    Workloads,
    Proxy,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where the replicas and the agent keep their data and logs, and the admin kubeconfig is written; an
    /// existing dir resumes the same cluster.
    #[arg(long, default_value = ".raftsman")]
    data_dir: PathBuf,
    /// Replica i (from 0) listens for peers on BASE+10*i, for etcd clients on BASE+10*i+1 and for the
    /// Kubernetes API on BASE+10*i+2.
    #[arg(long, default_value_t = 23000)]
    base_port: u16,
    /// The worker agent to start beside the replicas (its kubelet endpoint on BASE+50): `auto` runs pods in
    /// Docker when a Docker Engine answers, else as local processes; `none` starts no agent.
    #[arg(long, value_enum, default_value_t = UpAgent::Auto)]
    agent: UpAgent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum UpAgent {
    Auto,
    Docker,
    Process,
    None,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// A TOML file of settings: each key is one of these long flags (`peer-addr = "10.0.0.1:2380"`,
    /// `insecure-api = true`), meaning what the flag means; a flag on the command line wins over the file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This replica's name; must appear in --initial-cluster.
    #[arg(long)]
    name: String,
    /// Where this replica keeps its log, state and snapshots.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for Raft traffic between replicas.
    #[arg(long, default_value = "127.0.0.1:2380")]
    peer_addr: SocketAddr,
    /// Address for the etcd v3 client API: a loopback address unless the port serves TLS (--trusted-ca-file,
    /// --cert-file, --key-file).
    #[arg(long, default_value = "127.0.0.1:2379")]
    client_addr: SocketAddr,
    /// Address for the Kubernetes REST API (kubectl and the Kubernetes clients).
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_addr: SocketAddr,
    /// The IPv4 range Services' cluster IPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cluster_ip_range: raftsman::apiserver::registry::allocations::ServiceRange,
    /// NAME=HOST:PORT of every initial member (peer addresses). It forms the cluster when the data dir is new;
    /// on restart it may be left out, and if given it must describe the cluster the data dir belongs to.
    #[arg(long, default_value = "")]
    initial_cluster: String,
    /// A token unique to this cluster, the same for every initial member (etcd's flag of the same name): two
    /// clusters started from the same --initial-cluster with different tokens are different clusters and refuse
    /// each other's members. Only read where --initial-cluster forms the cluster.
    #[arg(long, default_value = "")]
    initial_cluster_token: String,
    /// How long a node may go without a heartbeat before the leader marks it Unknown and taints it unreachable
    /// (as kube-controller-manager's flag of the same name).
    #[arg(long, default_value = "50s", value_parser = cluster::config::parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How often the leader compacts the history to the revision it saw one interval earlier; 0 turns it off.
    #[arg(long, default_value = "5m", value_parser = cluster::config::parse_duration)]
    compaction_interval: std::time::Duration,
    /// Starts a member that lost its database (its data dir is empty, or kept only member.json) as a
    /// replacement: it takes the cluster's state from the leader and votes only once it has a membership.
    #[arg(long)]
    rejoin: bool,
    /// Joins the running cluster of the replica at this peer address (HOST:PORT) as a new member: a learner
    /// until its log has caught up, then a voter. Later starts may leave it out.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["rejoin", "restore", "initial_cluster", "initial_cluster_token"])]
    join: Option<std::net::SocketAddr>,
    /// Starts a new member of a new cluster from a saved snapshot (`etcdctl snapshot save`): its keys,
    /// revisions and leases. Every initial member starts from the same file; later starts may leave it out.
    #[arg(long, value_name = "FILE", conflicts_with = "rejoin")]
    restore: Option<PathBuf>,
    /// Makes this member the only voter of its cluster, with all the data it holds: how a cluster that lost a
    /// majority of its members for good goes on (etcd's flag of the same name). The cluster gets a new id, so
    /// the members left behind are refused if they come back; others join it with --join. Acts at every start
    /// it is given to: leave it out afterwards.
    #[arg(long, conflicts_with_all = ["rejoin", "restore", "join"])]
    force_new_cluster: bool,
    /// How long an Event is kept after its last write (as kube-apiserver's flag of the same name); more than 0.
    #[arg(long, default_value = "1h", value_parser = cluster::config::parse_duration)]
    event_ttl: std::time::Duration,
    /// Log entries applied between two snapshots of the state machine (as etcd's flag of the same name).
    #[arg(long, default_value_t = raftsman::limits::SNAPSHOT_LOGS_SINCE_LAST)]
    snapshot_count: u64,
    /// Log entries kept behind a snapshot, so that a follower lagging by fewer catches up from the log rather
    /// than by a snapshot (etcd's --experimental-snapshot-catchup-entries).
    #[arg(long, default_value_t = raftsman::limits::SNAPSHOT_LOGS_KEPT)]
    snapshot_catchup_entries: u64,
    /// How often the leader scrapes the agents for resource metrics (as metrics-server's flag of the same name).
    #[arg(long, default_value = "15s", value_parser = cluster::config::parse_duration)]
    metric_resolution: std::time::Duration,
    /// How often each HorizontalPodAutoscaler is evaluated (as kube-controller-manager's flag of the same name).
    #[arg(long, default_value = "15s", value_parser = cluster::config::parse_duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// The peer authority's certificate: peers (both ways) must have a certificate it signed.
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// This replica's peer certificate (from the peer authority; valid for the host of --peer-addr), which it
    /// serves on the peer port and shows when it dials its peers.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// The key of --peer-cert-file.
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// Serve and dial peers without TLS: anyone who reaches the peer port can then forge Raft messages and take
    /// the cluster over. Only for clusters on loopback.
    #[arg(long)]
    insecure_peer: bool,
    /// The etcd authority's certificate: the etcd client port then serves TLS and takes only clients with a
    /// certificate it signed (as etcd's flag of the same name with --client-cert-auth).
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// This replica's etcd serving certificate (from the etcd authority; valid for the host of --client-addr).
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// The key of --cert-file.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The Kubernetes API's serving certificate (from the cluster authority, valid for the host of --api-addr).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The cluster authority's certificate: clients' certificates are verified against it (common name the user,
    /// organizations the groups), and so are other replicas' API certificates.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Static bearer tokens: lines of token,user,uid,"group1,group2" (as kube-apiserver's flag of the same name).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The cluster authority's certificate, to sign with (as kube-controller-manager's flag of the same name):
    /// with it and its key the replica writes an admin kubeconfig and the node token into its data dir, and
    /// signs the certificates of agents that join with that token.
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    /// The key of --cluster-signing-cert-file.
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    /// Serve the Kubernetes API over plain HTTP without authentication: every request is then the admin's.
    /// Only for clusters on loopback.
    #[arg(long)]
    insecure_api: bool,
    /// What the API encrypts at rest, and with which keys: an EncryptionConfiguration file (as kube-apiserver's
    /// flag of the same name takes; providers aesgcm and identity). Every replica needs the same one.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// Switches on a deliberate bug so the chaos suite can show its checkers catch it. Never in production.
    #[arg(long, hide = true)]
    chaos_plant_bug: Option<cluster::config::PlantedBugs>,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTSMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colours only on a terminal: `up`, the tests and systemd write the logs to files.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() {
    if let Err(e) = run() {
        // One line, whatever the environment asks of backtraces: the error and the causes its words leave out.
        let mut line = e.to_string();
        for cause in e.chain().skip(1).map(|c| c.to_string()) {
            if !line.contains(&cause) {
                line = format!("{line}: {cause}");
            }
        }
        eprintln!("raftsman: {line}");
        std::process::exit(1);
    }
}

/// The command line with the flags a subcommand's `--config FILE` stands for put in right after the
/// subcommand's name, so that the command line's own flags, parsed after them, win.
fn with_config_file(mut args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    use cluster::config_file;
    // The subcommand is the first word after the program's name that is not a (global) switch.
    let Some(at) = args.iter().skip(1).position(|a| !a.as_encoded_bytes().starts_with(b"-")).map(|i| i + 1) else {
        return Ok(args);
    };
    let cli = Cli::command();
    let Some(command) = args[at].to_str().and_then(|name| cli.find_subcommand(name)) else {
        return Ok(args);
    };
    let flags = config_file::Flag::of(command);
    if !flags.iter().any(|f| f.long == config_file::CONFIG_FLAG) {
        return Ok(args);
    }
    let Some(path) = config_file::config_path(&args[at + 1..]) else {
        return Ok(args);
    };
    let file = format!("--config {}", path.display());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
    let given = config_file::flags_given(&args[at + 1..]);
    let from_file = config_file::args_from_file(&text, &flags, &given).context(file)?;
    args.splice(at + 1..at + 1, from_file);
    Ok(args)
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse_from(with_config_file(std::env::args_os().collect())?);
    if let Cmd::AgentShim { attempt_dir } = &cli.command {
        // No tracing and no async runtime: the shim only waits on its container.
        std::process::exit(raftsman::agent::runtime::process::run_shim(attempt_dir));
    }
    init_tracing(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        match cli.command {
            Cmd::Server(args) => {
                if let Some(file) = &args.config {
                    tracing::info!(file = %file.display(), "settings from the config file");
                }
                let config = ServerConfig {
                    name: args.name,
                    data_dir: args.data_dir,
                    peer_addr: args.peer_addr,
                    client_addr: args.client_addr,
                    api_addr: args.api_addr,
                    service_cluster_ip_range: args.service_cluster_ip_range,
                    initial_cluster: args.initial_cluster,
                    initial_cluster_token: args.initial_cluster_token,
                    node_monitor_grace_period: args.node_monitor_grace_period,
                    compaction_interval: args.compaction_interval,
                    rejoin: args.rejoin,
                    join: args.join,
                    restore: args.restore,
                    force_new_cluster: args.force_new_cluster,
                    event_ttl: args.event_ttl,
                    snapshot_count: args.snapshot_count,
                    snapshot_catchup_entries: args.snapshot_catchup_entries,
                    metric_resolution: args.metric_resolution,
                    autoscaler_sync_period: args.horizontal_pod_autoscaler_sync_period,
                    peer_security: cluster::config::PeerSecurity::from_flags(
                        args.peer_trusted_ca_file,
                        args.peer_cert_file,
                        args.peer_key_file,
                        args.insecure_peer,
                    )?,
                    client_security: cluster::config::ClientSecurity::from_flags(
                        args.trusted_ca_file,
                        args.cert_file,
                        args.key_file,
                    )?,
                    api_security: cluster::config::ApiSecurityConfig::from_flags(cluster::config::ApiSecurityFlags {
                        tls_cert_file: args.tls_cert_file,
                        tls_private_key_file: args.tls_private_key_file,
                        client_ca_file: args.client_ca_file,
                        token_auth_file: args.token_auth_file,
                        cluster_signing_cert_file: args.cluster_signing_cert_file,
                        cluster_signing_key_file: args.cluster_signing_key_file,
                        insecure_api: args.insecure_api,
                    })?,
                    encryption_provider_config: args.encryption_provider_config,
                    planted_bugs: args.chaos_plant_bug.unwrap_or_default(),
                    advertised: advertised_version()?,
                }
                .validate()?;
                // Client sockets must never take the descriptors the store needs (`cluster::listen`).
                let open_files = cluster::listen::raise_open_file_limit()?;
                let caps = cluster::listen::ConnectionCaps::fit(open_files)?;
                tracing::info!(open_files, peer = caps.peer, client = caps.client, api = caps.api, "connection limits");
                let listeners = cluster::server::Listeners::bind(&config, caps).await?;
                cluster::memory::start_trimming().context("starting the memory trimming thread")?;
                cluster::server::run(config, listeners, shutdown_signal()).await?;
                Ok(())
            }
            Cmd::AgentShim { .. } => unreachable!("the shim runs before the async runtime"),
            Cmd::Up(args) => up(args).await,
            Cmd::Certs(command) => certs(command),
            Cmd::Ctl(args) => ctl(args).await,
            Cmd::Agent(args) => agent(*args).await,
            Cmd::Bench(args) => {
                let dir = std::path::absolute(&args.data_dir).context("resolving --data-dir")?;
                let raftsman = std::env::current_exe().context("locating the raftsman binary")?;
                let all = args.suite == BenchSuite::All;
                if all || args.suite == BenchSuite::Store {
                    let config = raftsman::bench::BenchConfig {
                        dir: dir.clone(),
                        raftsman: raftsman.clone(),
                        etcd: args.etcd,
                        measure: std::time::Duration::from_secs(args.seconds),
                        ..Default::default()
                    };
                    println!("{}", raftsman::bench::run(config).await?);
                }
                if all || args.suite == BenchSuite::Api {
                    let (dir, raftsman) = (dir.clone(), raftsman.clone());
                    let config = raftsman::bench::api::ApiBenchConfig { dir, raftsman, ..Default::default() };
                    let result = raftsman::bench::api::run(config.clone()).await?;
                    println!("{}", raftsman::bench::api::table(&config, &result));
                }
                if all || args.suite == BenchSuite::Scheduler {
                    use raftsman::bench::scheduler::{self as bench, SchedulerBenchConfig};
                    let config = SchedulerBenchConfig {
                        dir: dir.clone(),
                        raftsman: raftsman.clone(),
                        nodes: args.fake_nodes,
                        pods: args.pods,
                        ..Default::default()
                    };
                    let result = bench::run(config.clone()).await?;
                    println!("{}", bench::table(&config, &result));
                }
                if args.suite == BenchSuite::Workloads {
                    use raftsman::bench::workloads::{self as bench, WorkloadBenchConfig};
                    let replicas = i32::try_from(args.pods).context("--pods")?;
                    let config = WorkloadBenchConfig {
                        dir: dir.clone(),
                        raftsman: raftsman.clone(),
                        nodes: args.fake_nodes,
                        replicas,
                    };
                    let result = bench::run(config.clone()).await?;
                    println!("{}", bench::table(&config, &result));
                }
                if args.suite == BenchSuite::Proxy {
                    use raftsman::bench::proxy::{self as bench, ProxyBenchConfig};
                    let config = ProxyBenchConfig {
                        measure: std::time::Duration::from_secs(args.seconds),
                        ..Default::default()
                    };
                    let result = bench::run(&config).await?;
                    println!("{}", bench::table(&config, &result));
                }
                if args.suite == BenchSuite::Soak {
                    use raftsman::bench::soak::{self as bench, SoakBenchConfig};
                    let config = SoakBenchConfig {
                        dir: dir.clone(),
                        raftsman,
                        nodes: args.fake_nodes,
                        pods: args.fake_nodes,
                        churn_per_minute: args.fake_nodes.div_ceil(10),
                        duration: std::time::Duration::from_secs(args.soak_minutes * 60),
                        sample: std::time::Duration::from_secs(args.sample_seconds),
                        ..Default::default()
                    };
                    let result = bench::run(config.clone()).await?;
                    println!("{}", bench::table(&config, &result));
                    let csv = dir.join("soak.csv");
                    std::fs::write(&csv, bench::csv(&result)).with_context(|| format!("writing {}", csv.display()))?;
                    println!("samples: {} (plot them: deploy/dev.sh plot-soak {})", csv.display(), csv.display());
                }
                Ok(())
            }
        }
    })
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    use raftsman::agent::{self, node, AgentConfig, Credentials, RuntimeKind};
    use raftsman::security::{join::NodeToken, kubeconfig};
    if let Some(file) = &args.config {
        tracing::info!(file = %file.display(), "settings from the config file");
    }
    let config = AgentConfig {
        node_name: args.node_name,
        servers: args.servers,
        runtime: match args.runtime {
            AgentRuntime::Fake => RuntimeKind::Fake,
            AgentRuntime::Process => RuntimeKind::Process,
            AgentRuntime::Docker => RuntimeKind::Docker,
        },
        node_labels: node::parse_pairs(&args.node_labels).map_err(anyhow::Error::msg).context("--node-labels")?,
        taints: node::parse_taints(&args.register_with_taints)
            .map_err(anyhow::Error::msg)
            .context("--register-with-taints")?,
        data_dir: args.data_dir,
        fake_nodes: args.fake_nodes,
        fake_capacity: node::parse_pairs(&args.fake_capacity)
            .map_err(anyhow::Error::msg)
            .context("--fake-capacity")?
            .into_iter()
            .map(|(k, v)| (k, k8s_openapi::apimachinery::pkg::api::resource::Quantity(v)))
            .collect(),
        kubelet_addr: args.kubelet_addr,
        service_proxy: args
            .service_proxy
            .unwrap_or(args.runtime == AgentRuntime::Docker)
            .then_some(args.service_cluster_ip_range),
        cluster_domain: args.cluster_domain,
        credentials: match (args.token, args.token_file, args.kubeconfig) {
            (Some(token), _, _) => Credentials::Token(NodeToken::parse(&token).context("--token")?),
            (None, Some(path), _) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                Credentials::Token(NodeToken::parse(&text).with_context(|| format!("--token-file {}", path.display()))?)
            }
            (None, None, Some(path)) => Credentials::Kubeconfig(kubeconfig::read_identity(&path)?),
            (None, None, None) => Credentials::None,
        },
        ..AgentConfig::default()
    }
    .validate()?;
    match config.runtime {
        RuntimeKind::Fake => {
            let runtime = std::sync::Arc::new(agent::runtime::fake::FakeRuntime::new());
            agent::run(config, runtime, shutdown_signal()).await?;
        }
        RuntimeKind::Process => {
            let runtime = agent::runtime::process::ProcessRuntime::new(&config.data_dir)
                .context("opening the process runtime's data dir")?
                .with_host_ip(config.node_ip);
            agent::run(config, std::sync::Arc::new(runtime), shutdown_signal()).await?;
        }
        RuntimeKind::Docker => {
            let docker = agent::runtime::docker::DockerConfig {
                node: config.node_name.clone(),
                network: args.pod_network,
                subnet: args.pod_subnet,
            };
            let runtime = agent::runtime::docker::DockerRuntime::connect(docker).await?;
            agent::run(config, std::sync::Arc::new(runtime), shutdown_signal()).await?;
        }
    }
    Ok(())
}

fn certs(command: CertsCmd) -> anyhow::Result<()> {
    use raftsman::security::{etcd, kubeconfig, peer, pki, tls};
    match command {
        CertsCmd::PeerCa { dir } => make_authority(&dir, peer::AUTHORITY, peer::AUTHORITY_NAME, "peer")?,
        CertsCmd::Peer { dir, name, hosts } => {
            issue_to(&dir, peer::AUTHORITY, &peer::files(&name), (&name, &[]), &hosts, &format!("{name}'s peer"))?;
        }
        CertsCmd::EtcdCa { dir } => make_authority(&dir, etcd::AUTHORITY, etcd::AUTHORITY_NAME, "etcd")?,
        CertsCmd::Etcd { dir, name, hosts } => {
            let files = etcd::server_files(&name);
            issue_to(&dir, etcd::AUTHORITY, &files, (&name, &[]), &hosts, &format!("{name}'s etcd"))?;
        }
        CertsCmd::EtcdClient { dir, name } => {
            let issued = pki::Authority::load(&dir, etcd::AUTHORITY)?.issue(&name, &[], &[], pki::Usage::Client)?;
            pki::save(&dir, &name, &issued)?;
            let (cert, key) = pki::files(&dir, &name);
            println!("issued {name}'s etcd client certificate: {} (key {})", cert.display(), key.display());
        }
        CertsCmd::Ca { dir } => make_authority(&dir, tls::AUTHORITY, tls::AUTHORITY_NAME, "cluster")?,
        CertsCmd::Api { dir, name, hosts } => {
            use raftsman::security::authn::{API_SERVER_USER, MASTERS_GROUP};
            let subject = (API_SERVER_USER, &[MASTERS_GROUP][..]);
            issue_to(&dir, tls::AUTHORITY, &tls::api_files(&name), subject, &hosts, &format!("{name}'s API"))?;
        }
        CertsCmd::Kubeconfig { dir, server, user, group, out } => {
            let authority = pki::Authority::load(&dir, tls::AUTHORITY)?;
            let groups: Vec<&str> = group.iter().map(String::as_str).collect();
            let issued = authority.issue(&user, &groups, &[], pki::Usage::Client)?;
            let text = kubeconfig::render(&server, Some(authority.cert_pem()), Some(&issued), "raftsman");
            pki::write(&out, &text, 0o600)?;
            println!("wrote {user}'s kubeconfig: {}", out.display());
        }
        CertsCmd::NodeToken { dir, out } => {
            let authority = pki::Authority::load(&dir, tls::AUTHORITY)?;
            let token = raftsman::security::join::NodeToken::of(&authority);
            pki::write(&out, &format!("{token}\n"), 0o600)?;
            println!("wrote the node token: {}", out.display());
        }
    }
    Ok(())
}

/// Creates the authority `name` in `dir` unless it is there (`what` names it to the user).
fn make_authority(dir: &std::path::Path, name: &str, common_name: &str, what: &str) -> anyhow::Result<()> {
    use raftsman::security::pki;
    let (cert, _) = pki::files(dir, name);
    let existed = cert.exists();
    pki::Authority::load_or_create(dir, name, common_name)?;
    let done = if existed { "kept the existing" } else { "created the" };
    println!("{done} {what} authority: {}", cert.display());
    Ok(())
}

/// Issues a server-and-client certificate for `subject` (common name, organizations) valid for `hosts`,
/// signed by the authority `authority` in `dir`, as `<files>.crt` and `<files>.key` there.
fn issue_to(
    dir: &std::path::Path,
    authority: &str,
    files: &str,
    subject: (&str, &[&str]),
    hosts: &[String],
    what: &str,
) -> anyhow::Result<()> {
    use raftsman::security::pki;
    let authority = pki::Authority::load(dir, authority)?;
    let issued = authority.issue(subject.0, subject.1, hosts, pki::Usage::ServerAndClient)?;
    pki::save(dir, files, &issued)?;
    let (cert, key) = pki::files(dir, files);
    println!("issued {what} certificate: {} (key {})", cert.display(), key.display());
    Ok(())
}

async fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    use cluster::ctl::{self, Target};
    let target = match args.endpoints.is_empty() {
        true => Target::local(&args.dir).with_context(|| {
            format!(
                "no --endpoints, and no cluster of `raftsman up` in {} (its {} file)",
                args.dir.display(),
                ctl::ENDPOINTS_FILE
            )
        })?,
        false => {
            let tls = match (args.cacert, args.cert, args.key) {
                (Some(trusted_ca), Some(cert), Some(key)) => {
                    Some(raftsman::security::mutual_tls::TlsFiles { trusted_ca, cert, key })
                }
                _ => None,
            };
            Target { endpoints: args.endpoints, tls, kubeconfig: None }
        }
    };
    let kubeconfig = args.kubeconfig.or(target.kubeconfig.clone());
    match args.command {
        CtlCmd::Status => {
            let replicas = ctl::replicas(&target).await?;
            let agents = match &kubeconfig {
                Some(path) => Some(
                    ctl::agents(path).await.with_context(|| format!("listing the agents with {}", path.display()))?,
                ),
                None => None,
            };
            print!("{}", ctl::table(&replicas, agents.as_deref()));
        }
        CtlCmd::UpgradeCheck => {
            let check = ctl::upgrade_check(&ctl::replicas(&target).await?);
            print!("{check}");
            if !check.blockers.is_empty() {
                std::process::exit(1);
            }
        }
        CtlCmd::Snapshot(SnapshotCmd::Save { file }) => {
            let bytes = ctl::snapshot_save(&target, &file).await?;
            println!("Snapshot saved at {} ({bytes} bytes)", file.display());
        }
    }
    Ok(())
}

/// The version this replica advertises: its build's, or the one `RAFTSMAN_ADVERTISED_VERSION` names.
fn advertised_version() -> anyhow::Result<raftsman::store::version::Advertised> {
    use raftsman::store::version::{Advertised, ADVERTISED_VERSION_ENV};
    match std::env::var(ADVERTISED_VERSION_ENV) {
        Ok(version) => {
            Advertised::this_build_as(&version).map_err(|e| anyhow::anyhow!("{ADVERTISED_VERSION_ENV}: {e}"))
        }
        Err(_) => Ok(Advertised::this_build()),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    use cluster::local::{Flavor, LocalCluster};
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let binary = std::env::current_exe().context("locating the raftsman binary")?;
    let mut local =
        LocalCluster::new(Flavor::Raftsman { binary: binary.clone() }, &args.data_dir, 3, Some(args.base_port))?;
    // Spawned from this (the main) thread, the replicas and the agent end with this process however it ends.
    local.end_with_this_process = true;
    local.start_all().context("starting the replicas")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let client = local.etcd_client(0)?;
    loop {
        // Ready once a leader is elected and has created the system namespaces.
        let bootstrapped = match client.status().await {
            Ok(s) if s.leader != 0 => {
                client.get("/registry/namespaces/default", false).await.is_ok_and(|r| r.count > 0)
            }
            _ => false,
        };
        match bootstrapped {
            true => break,
            false if std::time::Instant::now() > deadline => {
                anyhow::bail!("the cluster was not ready within 30s; see the logs in {}", args.data_dir.display())
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let kubeconfig = args.data_dir.join("kubeconfig");
    let admin = std::fs::read_to_string(local.kubeconfig(0)).context("reading n1's admin kubeconfig")?;
    raftsman::security::pki::write(&kubeconfig, &admin, 0o600)?;
    // Where `raftsman ctl`, run from here, finds the replicas.
    let endpoints: String = local.members.iter().map(|m| format!("{}\n", m.client_addr)).collect();
    raftsman::security::pki::write(&args.data_dir.join(cluster::ctl::ENDPOINTS_FILE), &endpoints, 0o644)?;
    let runtime = match args.agent {
        UpAgent::Auto if raftsman::agent::runtime::docker::engine_answers().await => Some("docker"),
        UpAgent::Auto | UpAgent::Process => Some("process"),
        UpAgent::Docker => Some("docker"),
        UpAgent::None => None,
    };
    let mut agent = match runtime {
        Some(runtime) => Some(start_agent(&binary, &local, runtime, &args)?),
        None => None,
    };
    let hosts: Vec<String> = local.members.iter().map(|m| m.client_addr.to_string()).collect();
    println!("raftsman: 3 replicas are up; data and logs in {}", args.data_dir.display());
    for m in &local.members {
        println!(
            "  {}  kubernetes api https://{}  etcd client {}  peer {}  log {}",
            m.name,
            m.api_addr,
            m.client_addr,
            m.peer_addr,
            m.log.display()
        );
    }
    if let Some((_, node, runtime)) = &agent {
        let log = args.data_dir.join("agent.log");
        println!("  agent: node {node}, pods run by the {runtime} runtime, log {}", log.display());
    }
    println!(
        "replicas talk over mutual TLS and serve the API and the etcd client port over TLS; authorities and \
         certificates: {}",
        local.pki.display()
    );
    println!(
        "more agents join with the node token: raftsman agent --token-file {} ...",
        local.node_token_file().display()
    );
    println!("admin kubeconfig: {}", kubeconfig.display());
    println!("try:  kubectl --kubeconfig {} get nodes", kubeconfig.display());
    let etcd = local.etcd_client_files();
    println!(
        "      ETCDCTL_API=3 etcdctl --endpoints={} --cacert {} --cert {} --key {} endpoint status -w table",
        hosts.join(","),
        etcd.trusted_ca.display(),
        etcd.cert.display(),
        etcd.key.display()
    );
    println!("      raftsman ctl status      (from this directory)");
    println!("each replica also writes an admin.kubeconfig into its data dir: use another one if n1 goes down");
    println!("press Ctrl-C to stop");
    shutdown_signal().await;
    if let Some((child, _, _)) = &mut agent {
        cluster::local::stop_child(child, std::time::Duration::from_secs(10));
    }
    for i in 0..local.members.len() {
        local.stop(i, std::time::Duration::from_secs(10));
    }
    Ok(())
}

/// Starts the agent of `up`: a node named after this host, with pods run by `runtime`, joining with the node
/// token, its data in `<data dir>/agent` and its log in `<data dir>/agent.log`; returns it with its node's
/// name and runtime.
fn start_agent(
    binary: &std::path::Path,
    local: &cluster::local::LocalCluster,
    runtime: &'static str,
    args: &UpArgs,
) -> anyhow::Result<(std::process::Child, String, &'static str)> {
    let node = node_name();
    let servers: Vec<String> = local.members.iter().map(|m| m.api_addr.to_string()).collect();
    let log_path = args.data_dir.join("agent.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut command = std::process::Command::new(binary);
    command
        .args(["agent", "--node-name", &node, "--runtime", runtime, "--servers", &servers.join(",")])
        .arg("--token-file")
        .arg(local.node_token_file())
        .arg("--data-dir")
        .arg(args.data_dir.join("agent"))
        .arg("--kubelet-addr")
        .arg(format!("127.0.0.1:{}", args.base_port + 50))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cluster::local::end_with_this_process(&mut command);
    let child = command.spawn().with_context(|| format!("starting the agent (log {})", log_path.display()))?;
    Ok((child, node, runtime))
}

/// This host's name as a node name (lowercase letters, digits, '-' and '.'), or `local`.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase();
    let name: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
    if name.is_empty() {
        "local".to_owned()
    } else {
        name
    }
}
