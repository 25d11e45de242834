//! Configuration of a control-plane replica: a plain struct with defaults and validation.
//!
//! Components never read the environment; `main` turns flags into this struct and `validate` turns it into
//! the checked form the replica is built from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::apiserver::registry::allocations::ServiceRange;
use crate::limits;
use crate::security::mutual_tls::TlsFiles;
use crate::security::tls::ApiTlsFiles;
use crate::store::storage::StorageBugs;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--name must be non-empty and made of letters, digits, '-', '_' or '.', got {0:?}")]
    Name(String),
    #[error("--initial-cluster entry {0:?} is not NAME=HOST:PORT")]
    ClusterEntry(String),
    #[error("--initial-cluster names {0:?} twice")]
    DuplicateMember(String),
    #[error("--initial-cluster does not name this replica ({0:?})")]
    SelfMissing(String),
    #[error("--initial-cluster gives {name:?} the peer address {listed}, but --peer-addr is {given}")]
    PeerAddrMismatch { name: String, listed: SocketAddr, given: SocketAddr },
    #[error("--node-monitor-grace-period must be more than 0s and at most {max_secs}s, got {given:?}")]
    NodeMonitorGracePeriod { given: Duration, max_secs: u64 },
    #[error("--rejoin needs --initial-cluster to name the other members, whose leader brings this one back")]
    RejoinAlone,
    #[error(
        "--rejoin takes the cluster's state from its leader; --restore starts a new cluster from a snapshot: not both"
    )]
    RejoinRestore,
    #[error(
        "--join adds this replica to a running cluster, whose leader gives it the cluster's state: it takes none of \
         --initial-cluster, --initial-cluster-token, --rejoin or --restore"
    )]
    JoinAlone,
    #[error("--initial-cluster-token must be at most {max} printable ASCII characters", max = limits::CLUSTER_TOKEN_BYTES_MAX)]
    ClusterToken,
    #[error(
        "--force-new-cluster makes a member that holds data the only voter of its cluster: it takes none of --join, \
         --rejoin or --restore"
    )]
    ForceNewClusterAlone,
    #[error("--event-ttl must be more than 0s and at most {max_secs}s, got {given:?}")]
    EventTtl { given: Duration, max_secs: u64 },
    #[error("--snapshot-count must be at least 1")]
    SnapshotCount,
    #[error("{flag} must be at least 1s and at most {max_secs}s, got {given:?}")]
    Period { flag: &'static str, given: Duration, max_secs: u64 },
    #[error(
        "the peer port needs --peer-trusted-ca-file, --peer-cert-file and --peer-key-file (all three; `raftsman certs` \
         makes them), or --insecure-peer to serve it without TLS"
    )]
    PeerTls,
    #[error(
        "the kubernetes api needs --tls-cert-file, --tls-private-key-file and --client-ca-file (all three; \
         `raftsman certs` makes them), or --insecure-api to serve it without TLS or authentication"
    )]
    ApiTls,
    #[error("the etcd client port's TLS needs --trusted-ca-file, --cert-file and --key-file (all three; `raftsman certs` makes them)")]
    ClientTls,
    #[error(
        "--client-addr {0} is not a loopback address: the etcd client port serves it only with TLS \
         (--trusted-ca-file, --cert-file, --key-file), since whoever reaches it can write any key"
    )]
    PlaintextClientAddr(SocketAddr),
    #[error("--cluster-signing-cert-file and --cluster-signing-key-file go together")]
    ClusterSigning,
    #[error("--insecure-api serves without authentication: --token-auth-file and the cluster signing files need TLS")]
    InsecureApiCredentials,
}

/// How the Kubernetes API proves who it is and finds out who its clients are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ApiSecurityConfig {
    Tls(ApiTlsConfig),
    /// Plain HTTP and no authentication: every request is the admin's (`--insecure-api`, for loopback tests).
    #[default]
    Plaintext,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTlsConfig {
    pub files: ApiTlsFiles,
    /// kube-apiserver's `--token-auth-file`: static bearer tokens.
    pub token_auth_file: Option<PathBuf>,
    /// The cluster authority's certificate and key (kube-controller-manager's `--cluster-signing-cert-file`
    /// and `--cluster-signing-key-file`): with them the replica writes an admin kubeconfig and the node token,
    /// and signs joining nodes' certificates.
    pub signing: Option<(PathBuf, PathBuf)>,
}

/// The API's security flags, as `raftsman server` takes them.
#[derive(Clone, Debug, Default)]
pub struct ApiSecurityFlags {
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    pub cluster_signing_cert_file: Option<PathBuf>,
    pub cluster_signing_key_file: Option<PathBuf>,
    pub insecure_api: bool,
}

impl ApiSecurityConfig {
    /// The choice the flags make: the three TLS files (with the optional token file and signing pair), or
    /// `--insecure-api` alone.
    pub fn from_flags(flags: ApiSecurityFlags) -> Result<ApiSecurityConfig, ConfigError> {
        let signing = match (flags.cluster_signing_cert_file, flags.cluster_signing_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError::ClusterSigning),
        };
        let files = (flags.tls_cert_file, flags.tls_private_key_file, flags.client_ca_file);
        match (files, flags.insecure_api) {
            ((Some(cert), Some(key), Some(client_ca)), false) => Ok(ApiSecurityConfig::Tls(ApiTlsConfig {
                files: ApiTlsFiles { cert, key, client_ca },
                token_auth_file: flags.token_auth_file,
                signing,
            })),
            ((None, None, None), true) if flags.token_auth_file.is_none() && signing.is_none() => {
                Ok(ApiSecurityConfig::Plaintext)
            }
            ((None, None, None), true) => Err(ConfigError::InsecureApiCredentials),
            _ => Err(ConfigError::ApiTls),
        }
    }
}

/// How replicas prove who they are to each other on the peer port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerSecurity {
    /// Mutual TLS with certificates of the peer authority.
    Tls(TlsFiles),
    /// None: whoever reaches the peer port can send Raft messages (`--insecure-peer`, for loopback tests).
    #[default]
    Plaintext,
}

impl PeerSecurity {
    /// The choice the flags make: all three files, or `--insecure-peer` alone.
    pub fn from_flags(
        trusted_ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        insecure: bool,
    ) -> Result<PeerSecurity, ConfigError> {
        match (trusted_ca, cert, key, insecure) {
            (Some(trusted_ca), Some(cert), Some(key), false) => {
                Ok(PeerSecurity::Tls(TlsFiles { trusted_ca, cert, key }))
            }
            (None, None, None, true) => Ok(PeerSecurity::Plaintext),
            _ => Err(ConfigError::PeerTls),
        }
    }
}

/// How the etcd client port serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientSecurity {
    /// TLS, and only clients with a certificate of the trusted (etcd) authority (etcd's `--client-cert-auth`).
    Tls(TlsFiles),
    /// None: whoever reaches the port can read and write every key; allowed on a loopback address only.
    #[default]
    Plaintext,
}

impl ClientSecurity {
    /// The choice the flags make: all three files (etcd's `--trusted-ca-file`, `--cert-file`, `--key-file`),
    /// or none.
    pub fn from_flags(
        trusted_ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<ClientSecurity, ConfigError> {
        match (trusted_ca, cert, key) {
            (Some(trusted_ca), Some(cert), Some(key)) => Ok(ClientSecurity::Tls(TlsFiles { trusted_ca, cert, key })),
            (None, None, None) => Ok(ClientSecurity::Plaintext),
            _ => Err(ConfigError::ClientTls),
        }
    }
}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub peer_addr: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// Address of the Kubernetes REST API.
    pub api_addr: SocketAddr,
    /// Where Services' cluster IPs come from.
    pub service_cluster_ip_range: ServiceRange,
    /// `name=host:port,...`; forms the cluster when the data dir is new, checked against it otherwise.
    pub initial_cluster: String,
    /// Mixed into the id of the cluster `initial_cluster` forms (etcd's `--initial-cluster-token`), so that two
    /// clusters started from the same member list are different clusters and refuse each other's members.
    /// Empty: the id comes from the member list alone.
    pub initial_cluster_token: String,
    /// How long a node may go without a heartbeat (its Lease or its Ready condition) before the leader declares
    /// it Unknown and taints it unreachable (kube-controller-manager's `--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How often the leader compacts the history to the revision it saw one interval earlier (the Kubernetes
    /// API server's `--etcd-compaction-interval`); zero turns automatic compaction off.
    pub compaction_interval: Duration,
    /// Start a member whose database was lost (its data dir kept only its identity, or is empty) as a
    /// replacement that takes the cluster's state from the leader, instead of as a member of a new cluster.
    pub rejoin: bool,
    /// The peer address of a replica of a running cluster that a new replica joins (as a learner, promoted to
    /// voter once caught up), instead of forming a cluster. Ignored once the data dir holds the member.
    pub join: Option<SocketAddr>,
    /// A saved snapshot (`store::saved`) a new member of a new cluster starts from; every initial member
    /// starts from the same one. Ignored once the data dir holds the member.
    pub restore: Option<PathBuf>,
    /// Make this member, which holds data, the only voter of its cluster (etcd's `--force-new-cluster`): how a
    /// cluster that lost a majority of its members for good goes on from a survivor's data. Forces again at
    /// every start it is given to.
    pub force_new_cluster: bool,
    /// How long an Event is kept after its last write (the Kubernetes API server's `--event-ttl`): Events are
    /// stored with a lease of this TTL.
    pub event_ttl: Duration,
    /// Log entries applied between two snapshots of the state machine (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Log entries kept behind a snapshot, so that a follower lagging by fewer catches up from the log
    /// (etcd's `--experimental-snapshot-catchup-entries`).
    pub snapshot_catchup_entries: u64,
    /// How often the leader scrapes the agents' usage for the resource metrics (metrics-server's
    /// `--metric-resolution`).
    pub metric_resolution: Duration,
    /// How often each HorizontalPodAutoscaler is evaluated (kube-controller-manager's
    /// `--horizontal-pod-autoscaler-sync-period`).
    pub autoscaler_sync_period: Duration,
    /// How replicas authenticate each other.
    pub peer_security: PeerSecurity,
    /// How the etcd client port serves.
    pub client_security: ClientSecurity,
    /// How the Kubernetes API serves and authenticates.
    pub api_security: ApiSecurityConfig,
    /// The EncryptionConfiguration of what the API encrypts at rest (kube-apiserver's
    /// `--encryption-provider-config`); None stores everything as is.
    pub encryption_provider_config: Option<PathBuf>,
    /// Deliberate bugs, for the chaos suite to prove its checkers catch them. Never set in production.
    pub planted_bugs: PlantedBugs,
    /// What the replica advertises to the others: its build's version, or the one `ADVERTISED_VERSION_ENV` names.
    pub advertised: crate::store::version::Advertised,
}

/// Bugs the chaos suite can switch on to show that its checkers catch them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Serve linearizable reads from the local state machine without a read index (stale on followers).
    pub stale_follower_reads: bool,
    /// Drop one event from a watch stream the first time it delivers after the leader changed.
    pub skip_watch_event_after_leader_change: bool,
    /// Acknowledge log appends before they are synced; ignore the term of fenced (controller) writes.
    pub storage: StorageBugs,
}

impl std::str::FromStr for PlantedBugs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let none = PlantedBugs::default();
        match s {
            "stale-follower-reads" => Ok(PlantedBugs { stale_follower_reads: true, ..none }),
            "skip-watch-event-after-leader-change" => {
                Ok(PlantedBugs { skip_watch_event_after_leader_change: true, ..none })
            }
            "ack-before-sync" => {
                Ok(PlantedBugs { storage: StorageBugs { ack_before_sync: true, ..StorageBugs::default() }, ..none })
            }
            "ignore-fences" => {
                Ok(PlantedBugs { storage: StorageBugs { ignore_fences: true, ..StorageBugs::default() }, ..none })
            }
            other => Err(format!(
                "unknown planted bug {other:?} (known: stale-follower-reads, skip-watch-event-after-leader-change, \
                 ack-before-sync, ignore-fences)"
            )),
        }
    }
}

/// Upstream's default `--node-monitor-grace-period` (50 s since Kubernetes 1.32; 40 s before).
pub const NODE_MONITOR_GRACE_PERIOD_DEFAULT: Duration = Duration::from_secs(50);

/// Upstream's default compaction interval (kube-apiserver's `--etcd-compaction-interval`).
pub const COMPACTION_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);

/// Upstream's default `--event-ttl`.
pub const EVENT_TTL_DEFAULT: Duration = Duration::from_secs(3600);

/// metrics-server's default `--metric-resolution`, and kube-controller-manager's default
/// `--horizontal-pod-autoscaler-sync-period`.
pub const METRIC_RESOLUTION_DEFAULT: Duration = Duration::from_secs(15);
pub const AUTOSCALER_SYNC_PERIOD_DEFAULT: Duration = Duration::from_secs(15);

/// A duration as Kubernetes' flags take them (Go's `time.Duration` syntax: `50s`, `1m30s`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let parsed: jiff::SignedDuration =
        text.trim().parse().map_err(|e| format!("{text:?} is not a duration like 50s or 1m30s: {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "default".into(),
            data_dir: PathBuf::from("default.raftsman"),
            peer_addr: "127.0.0.1:2380".parse().expect("valid literal"),
            client_addr: "127.0.0.1:2379".parse().expect("valid literal"),
            api_addr: "127.0.0.1:6443".parse().expect("valid literal"),
            service_cluster_ip_range: ServiceRange::default(),
            initial_cluster: String::new(),
            initial_cluster_token: String::new(),
            node_monitor_grace_period: NODE_MONITOR_GRACE_PERIOD_DEFAULT,
            compaction_interval: COMPACTION_INTERVAL_DEFAULT,
            rejoin: false,
            join: None,
            restore: None,
            force_new_cluster: false,
            event_ttl: EVENT_TTL_DEFAULT,
            snapshot_count: limits::SNAPSHOT_LOGS_SINCE_LAST,
            snapshot_catchup_entries: limits::SNAPSHOT_LOGS_KEPT,
            metric_resolution: METRIC_RESOLUTION_DEFAULT,
            autoscaler_sync_period: AUTOSCALER_SYNC_PERIOD_DEFAULT,
            peer_security: PeerSecurity::default(),
            client_security: ClientSecurity::default(),
            api_security: ApiSecurityConfig::default(),
            encryption_provider_config: None,
            planted_bugs: PlantedBugs::default(),
            advertised: crate::store::version::Advertised::this_build(),
        }
    }
}

/// A configuration whose fields have been checked against each other.
#[derive(Clone, Debug)]
pub struct ValidServerConfig {
    pub config: ServerConfig,
    pub members: Vec<Member>,
}

impl ServerConfig {
    pub fn validate(self) -> Result<ValidServerConfig, ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(ConfigError::Name(self.name));
        }
        let members = if self.initial_cluster.trim().is_empty() {
            vec![Member { name: self.name.clone(), peer_addr: self.peer_addr }]
        } else {
            parse_initial_cluster(&self.initial_cluster)?
        };
        let me =
            members.iter().find(|m| m.name == self.name).ok_or_else(|| ConfigError::SelfMissing(self.name.clone()))?;
        if me.peer_addr != self.peer_addr {
            return Err(ConfigError::PeerAddrMismatch {
                name: self.name.clone(),
                listed: me.peer_addr,
                given: self.peer_addr,
            });
        }
        if self.rejoin && members.len() < 2 {
            return Err(ConfigError::RejoinAlone);
        }
        if self.rejoin && self.restore.is_some() {
            return Err(ConfigError::RejoinRestore);
        }
        let formed = !self.initial_cluster.trim().is_empty() || !self.initial_cluster_token.is_empty();
        if self.join.is_some() && (self.rejoin || self.restore.is_some() || formed) {
            return Err(ConfigError::JoinAlone);
        }
        let token = &self.initial_cluster_token;
        if token.len() > limits::CLUSTER_TOKEN_BYTES_MAX || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::ClusterToken);
        }
        if self.force_new_cluster && (self.join.is_some() || self.rejoin || self.restore.is_some()) {
            return Err(ConfigError::ForceNewClusterAlone);
        }
        if self.client_security == ClientSecurity::Plaintext && !self.client_addr.ip().is_loopback() {
            return Err(ConfigError::PlaintextClientAddr(self.client_addr));
        }
        let grace = self.node_monitor_grace_period;
        if grace.is_zero() || grace > Duration::from_secs(limits::NODE_MONITOR_GRACE_PERIOD_SECS_MAX) {
            return Err(ConfigError::NodeMonitorGracePeriod {
                given: grace,
                max_secs: limits::NODE_MONITOR_GRACE_PERIOD_SECS_MAX,
            });
        }
        let ttl = self.event_ttl;
        if ttl.is_zero() || ttl > Duration::from_secs(limits::EVENT_TTL_SECS_MAX) {
            return Err(ConfigError::EventTtl { given: ttl, max_secs: limits::EVENT_TTL_SECS_MAX });
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::SnapshotCount);
        }
        let periods = [
            ("--metric-resolution", self.metric_resolution),
            ("--horizontal-pod-autoscaler-sync-period", self.autoscaler_sync_period),
        ];
        for (flag, given) in periods {
            if given < Duration::from_secs(1) || given > Duration::from_secs(limits::METRICS_PERIOD_SECS_MAX) {
                return Err(ConfigError::Period { flag, given, max_secs: limits::METRICS_PERIOD_SECS_MAX });
            }
        }
        Ok(ValidServerConfig { config: self, members })
    }
}

pub fn parse_initial_cluster(s: &str) -> Result<Vec<Member>, ConfigError> {
    let mut members: Vec<Member> = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addr) = entry.split_once('=').ok_or_else(|| ConfigError::ClusterEntry(entry.into()))?;
        let addr = addr.trim_start_matches("http://");
        let peer_addr = addr.parse().map_err(|_| ConfigError::ClusterEntry(entry.into()))?;
        if members.iter().any(|m| m.name == name) {
            return Err(ConfigError::DuplicateMember(name.into()));
        }
        members.push(Member { name: name.into(), peer_addr });
    }
    Ok(members)
}

/// A stable 64-bit id derived from text (FNV-1a), used for member and cluster ids.
pub fn stable_id(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Zero means "no member" in etcd's API.
    h.max(1)
}

/// The id of the cluster an initial member list forms with `token` (`--initial-cluster-token`; none if empty).
pub fn cluster_id(members: &[Member], token: &str) -> u64 {
    let mut parts: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_addr)).collect();
    parts.sort();
    if !token.is_empty() {
        parts.push(format!("token {token}"));
    }
    stable_id(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The id of the cluster an initial member list `described` forms from the saved snapshot `snapshot`
/// (`saved::Saved::id`): another cluster than the one the same members form empty, so that a member started
/// without the snapshot is refused by those started from it instead of diverging from them.
pub fn restored_cluster_id(described: u64, snapshot: u64) -> u64 {
    stable_id(&[&described.to_string(), "restored", &format!("{snapshot:x}")])
}

/// The id of the cluster the member `member_id` of `cluster` forced (`--force-new-cluster`) with the entry at
/// `index`: another cluster, so that the members left behind, should one come back, are refused.
pub fn forced_cluster_id(cluster: u64, member_id: u64, index: u64) -> u64 {
    stable_id(&[&cluster.to_string(), "forced", &format!("{member_id:x}"), &index.to_string()])
}

/// The member id of `member` within the cluster `cluster`.
pub fn member_id(cluster: u64, member: &Member) -> u64 {
    stable_id(&[&cluster.to_string(), &member.name, &member.peer_addr.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, cluster: &str) -> ServerConfig {
        ServerConfig {
            name: name.into(),
            peer_addr: "127.0.0.1:12380".parse().unwrap(),
            initial_cluster: cluster.into(),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn a_joining_or_restored_replica_takes_no_flag_that_would_start_it_otherwise() {
        let two = "n1=127.0.0.1:12380,n2=127.0.0.1:22380";
        let join = |c: ServerConfig| ServerConfig { join: Some("127.0.0.1:1".parse().unwrap()), ..c };
        assert!(join(cfg("n1", "")).validate().is_ok());
        assert!(matches!(join(cfg("n1", two)).validate(), Err(ConfigError::JoinAlone)));
        let restore = |c: ServerConfig| ServerConfig { restore: Some("saved.db".into()), ..c };
        assert!(restore(cfg("n1", two)).validate().is_ok());
        assert!(matches!(join(restore(cfg("n1", ""))).validate(), Err(ConfigError::JoinAlone)));
        let rejoin = |c: ServerConfig| ServerConfig { rejoin: true, ..c };
        assert!(matches!(restore(rejoin(cfg("n1", two))).validate(), Err(ConfigError::RejoinRestore)));
        let force = |c: ServerConfig| ServerConfig { force_new_cluster: true, ..c };
        assert!(force(cfg("n1", two)).validate().is_ok());
        assert!(force(cfg("n1", "")).validate().is_ok());
        for other in [join(cfg("n1", "")), restore(cfg("n1", two)), rejoin(cfg("n1", two))] {
            assert!(matches!(force(other).validate(), Err(ConfigError::ForceNewClusterAlone)));
        }
    }

    #[test]
    fn parses_and_checks_initial_cluster() {
        let ok = cfg("n1", "n1=127.0.0.1:12380,n2=127.0.0.1:22380").validate().unwrap();
        assert_eq!(ok.members.len(), 2);
        assert!(matches!(cfg("n3", "n1=127.0.0.1:12380").validate(), Err(ConfigError::SelfMissing(_))));
        assert!(matches!(cfg("n1", "n1=127.0.0.1:1").validate(), Err(ConfigError::PeerAddrMismatch { .. })));
        assert!(matches!(cfg("n1", "n1=nope").validate(), Err(ConfigError::ClusterEntry(_))));
        assert!(matches!(
            cfg("n1", "n1=127.0.0.1:12380,n1=127.0.0.1:2").validate(),
            Err(ConfigError::DuplicateMember(_))
        ));
        assert!(matches!(cfg("", "").validate(), Err(ConfigError::Name(_))));
    }

    #[test]
    fn the_compaction_interval_defaults_to_upstreams_and_zero_turns_it_off() {
        assert_eq!(ServerConfig::default().compaction_interval, Duration::from_secs(300));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_node_grace_period_is_parsed_as_upstream_writes_it_and_bounded() {
        assert_eq!(parse_duration("50s"), Ok(Duration::from_secs(50)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(ServerConfig::default().node_monitor_grace_period, Duration::from_secs(50));
        let with = |grace| ServerConfig { node_monitor_grace_period: grace, ..cfg("n1", "") }.validate();
        assert!(with(Duration::from_secs(4)).is_ok());
        assert!(matches!(with(Duration::ZERO), Err(ConfigError::NodeMonitorGracePeriod { .. })));
        assert!(matches!(with(Duration::from_secs(86_401)), Err(ConfigError::NodeMonitorGracePeriod { .. })));
    }

    #[test]
    fn metric_resolution_and_autoscaler_period_are_upstreams_and_bounded() {
        assert_eq!(ServerConfig::default().metric_resolution, Duration::from_secs(15));
        assert_eq!(ServerConfig::default().autoscaler_sync_period, Duration::from_secs(15));
        let resolution = |d| ServerConfig { metric_resolution: d, ..cfg("n1", "") }.validate();
        assert!(resolution(Duration::from_secs(1)).is_ok());
        let refused = resolution(Duration::from_millis(500)).unwrap_err();
        assert!(refused.to_string().starts_with("--metric-resolution must be at least 1s"), "{refused}");
        let period = |d| ServerConfig { autoscaler_sync_period: d, ..cfg("n1", "") }.validate();
        assert!(matches!(period(Duration::from_secs(100_000)), Err(ConfigError::Period { .. })));
    }

    #[test]
    fn the_event_ttl_defaults_to_upstreams_and_must_be_positive() {
        assert_eq!(ServerConfig::default().event_ttl, Duration::from_secs(3600));
        let with = |ttl| ServerConfig { event_ttl: ttl, ..cfg("n1", "") }.validate();
        assert!(with(Duration::from_secs(5)).is_ok());
        assert!(with(Duration::from_millis(500)).is_ok(), "a short TTL is raised to the shortest lease");
        let refused = with(parse_duration("0").unwrap()).unwrap_err();
        assert!(matches!(refused, ConfigError::EventTtl { .. }), "{refused}");
        assert!(refused.to_string().starts_with("--event-ttl must be more than 0s"), "{refused}");
        let too_long = Duration::from_secs(limits::EVENT_TTL_SECS_MAX + 1);
        assert!(matches!(with(too_long), Err(ConfigError::EventTtl { .. })));
    }

    #[test]
    fn ids_are_stable_and_order_independent() {
        let a = parse_initial_cluster("n1=127.0.0.1:1,n2=127.0.0.1:2").unwrap();
        let b = parse_initial_cluster("n2=127.0.0.1:2,n1=127.0.0.1:1").unwrap();
        assert_eq!(cluster_id(&a, ""), cluster_id(&b, ""));
        let c = cluster_id(&a, "");
        assert_ne!(member_id(c, &a[0]), member_id(c, &a[1]));
        assert_eq!(member_id(c, &a[0]), member_id(c, &b[1]));
        // A token makes another cluster of the same list, the same one for every member given it.
        assert_eq!(cluster_id(&a, "t1"), cluster_id(&b, "t1"));
        assert_ne!(cluster_id(&a, "t1"), cluster_id(&a, "t2"));
        assert_ne!(cluster_id(&a, "t1"), c);
    }

    #[test]
    fn a_cluster_token_is_printable_bounded_and_not_for_a_joining_member() {
        let with = |token: &str, join: Option<SocketAddr>| {
            let cluster = if join.is_some() { "" } else { "n1=127.0.0.1:12380" };
            ServerConfig { initial_cluster_token: token.into(), join, ..cfg("n1", cluster) }.validate()
        };
        assert!(with("prod-7f3a", None).is_ok());
        assert!(matches!(with("has space", None), Err(ConfigError::ClusterToken)));
        assert!(matches!(with(&"x".repeat(limits::CLUSTER_TOKEN_BYTES_MAX + 1), None), Err(ConfigError::ClusterToken)));
        assert!(matches!(with("t", Some("127.0.0.1:2380".parse().unwrap())), Err(ConfigError::JoinAlone)));
    }

    #[test]
    fn the_api_gets_its_three_tls_files_or_an_explicit_insecure_choice() {
        let file = |name: &str| Some(PathBuf::from(name));
        let tls = ApiSecurityFlags {
            tls_cert_file: file("api.crt"),
            tls_private_key_file: file("api.key"),
            client_ca_file: file("ca.crt"),
            ..ApiSecurityFlags::default()
        };
        let files = ApiTlsFiles { cert: "api.crt".into(), key: "api.key".into(), client_ca: "ca.crt".into() };
        let plain = ApiTlsConfig { files, token_auth_file: None, signing: None };
        assert_eq!(ApiSecurityConfig::from_flags(tls.clone()).unwrap(), ApiSecurityConfig::Tls(plain.clone()));
        let signing = ApiSecurityFlags {
            cluster_signing_cert_file: file("ca.crt"),
            cluster_signing_key_file: file("ca.key"),
            ..tls.clone()
        };
        let signed = ApiTlsConfig { signing: Some(("ca.crt".into(), "ca.key".into())), ..plain };
        assert_eq!(ApiSecurityConfig::from_flags(signing).unwrap(), ApiSecurityConfig::Tls(signed));
        let insecure = ApiSecurityFlags { insecure_api: true, ..ApiSecurityFlags::default() };
        assert_eq!(ApiSecurityConfig::from_flags(insecure.clone()).unwrap(), ApiSecurityConfig::Plaintext);
        let refused = |flags| ApiSecurityConfig::from_flags(flags).unwrap_err();
        assert!(matches!(refused(ApiSecurityFlags::default()), ConfigError::ApiTls), "nothing chosen");
        assert!(matches!(refused(ApiSecurityFlags { insecure_api: true, ..tls.clone() }), ConfigError::ApiTls));
        assert!(matches!(refused(ApiSecurityFlags { client_ca_file: None, ..tls.clone() }), ConfigError::ApiTls));
        let half = ApiSecurityFlags { cluster_signing_key_file: file("ca.key"), ..tls };
        assert!(matches!(refused(half), ConfigError::ClusterSigning));
        let tokens = ApiSecurityFlags { token_auth_file: file("tokens.csv"), ..insecure };
        assert!(matches!(refused(tokens), ConfigError::InsecureApiCredentials));
    }

    #[test]
    fn the_peer_port_gets_all_three_tls_files_or_an_explicit_insecure_choice() {
        let file = |name: &str| Some(PathBuf::from(name));
        let tls = PeerSecurity::from_flags(file("ca.crt"), file("n1.crt"), file("n1.key"), false).unwrap();
        let files = TlsFiles { trusted_ca: "ca.crt".into(), cert: "n1.crt".into(), key: "n1.key".into() };
        assert_eq!(tls, PeerSecurity::Tls(files));
        assert_eq!(PeerSecurity::from_flags(None, None, None, true).unwrap(), PeerSecurity::Plaintext);
        for (ca, cert, key, insecure) in [
            (None, None, None, false),
            (file("ca.crt"), file("n1.crt"), None, false),
            (file("ca.crt"), file("n1.crt"), file("n1.key"), true),
        ] {
            let err = PeerSecurity::from_flags(ca, cert, key, insecure).unwrap_err();
            assert!(err.to_string().contains("--insecure-peer"), "{err}");
        }
    }

    #[test]
    fn the_etcd_client_port_serves_plaintext_on_loopback_only() {
        let file = |name: &str| Some(PathBuf::from(name));
        let tls = ClientSecurity::from_flags(file("etcd-ca.crt"), file("n1-etcd.crt"), file("n1-etcd.key")).unwrap();
        let files =
            TlsFiles { trusted_ca: "etcd-ca.crt".into(), cert: "n1-etcd.crt".into(), key: "n1-etcd.key".into() };
        assert_eq!(tls, ClientSecurity::Tls(files));
        assert_eq!(ClientSecurity::from_flags(None, None, None).unwrap(), ClientSecurity::Plaintext);
        let half = ClientSecurity::from_flags(file("etcd-ca.crt"), None, file("n1-etcd.key")).unwrap_err();
        assert!(matches!(half, ConfigError::ClientTls), "{half}");

        let at = |addr: &str, security: ClientSecurity| {
            ServerConfig { client_addr: addr.parse().unwrap(), client_security: security, ..cfg("n1", "") }.validate()
        };
        assert!(at("127.0.0.1:2379", ClientSecurity::Plaintext).is_ok());
        let exposed = at("0.0.0.0:2379", ClientSecurity::Plaintext).unwrap_err();
        assert!(exposed.to_string().contains("only with TLS"), "{exposed}");
        assert!(at("0.0.0.0:2379", tls).is_ok());
    }
}
