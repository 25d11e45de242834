//! A control-plane replica: its data dir, its Raft, and its peer and client servers.
//!
//! Data dir layout: `member.json` (which cluster and member this dir belongs to), `db/` (RocksDB) and
//! `snap/` (the latest snapshot). A data dir is never overwritten: a dir that is not empty and is not a
//! raftsman data dir, belongs to another cluster or member, or cannot be opened, stops the start with an error
//! that says so.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::config::{
    cluster_id, forced_cluster_id, member_id, restored_cluster_id, ApiSecurityConfig, ClientSecurity, Member,
    PeerSecurity, ValidServerConfig,
};
use super::leadership;
use super::listen::{self, ConnectionCaps};
use crate::apiserver::etcd::EtcdService;
use crate::apiserver::http::audit::Audit;
use crate::apiserver::http::rest::{self, KubeApi};
use crate::apiserver::operations::OperationsService;
use crate::limits;
use crate::metrics::Points;
use crate::security::authn::{Authenticator, ADMIN_USER, MASTERS_GROUP};
use crate::security::encryption::Encryption;
use crate::security::join::NodeToken;
use crate::security::mutual_tls::MutualTls;
use crate::security::pki::{self, Authority, Usage};
use crate::security::service_accounts::{TokenSigner, TokenVerifier};
use crate::security::tls::ApiTls;
use crate::security::{kubeconfig, ApiSecurity};
use crate::store::command::Command;
use crate::store::network::{Dialer, JoinRequest, Joined, PeerNetwork, PeerPool};
use crate::store::peer::PeerService;
use crate::store::saved;
use crate::store::storage::{self, Db, LogStore, SmShared, StateMachine, StorageBugs};
use crate::store::types::{NodeId, Raft, RaftNode};
use crate::store::Store;

pub(crate) const IDENTITY_FILE: &str = "member.json";
/// 2: members publish their Kubernetes API address too (`Command::PublishMember`, `MemberAttrs`).
const DATA_FORMAT: u32 = 2;
const _: () = assert!(DATA_FORMAT == crate::store::version::STORAGE_FORMAT);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {dir}: {reason}")]
    DataDir { dir: PathBuf, reason: String },
    #[error("cannot bind {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: std::net::SocketAddr, source: io::Error },
    #[error("cannot load the state machine: {0}")]
    LoadStateMachine(io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("serving {what}: {source}")]
    Serve { what: &'static str, source: tonic::transport::Error },
    #[error("serving the kubernetes api: {0}")]
    ServeApi(io::Error),
    #[error("cannot start the raft threads: {0}")]
    Runtime(io::Error),
    #[error(transparent)]
    MutualTls(#[from] crate::security::mutual_tls::MutualTlsError),
    #[error(transparent)]
    ApiTls(#[from] crate::security::tls::TlsError),
    #[error(transparent)]
    Pki(#[from] crate::security::pki::PkiError),
    #[error(transparent)]
    TokenFile(#[from] crate::security::authn::TokenFileError),
    #[error(transparent)]
    Encryption(#[from] crate::security::encryption::EncryptionError),
    #[error("cannot join the cluster through {addr}: {reason}")]
    Join { addr: SocketAddr, reason: String },
    #[error("cannot restore the snapshot {path}: {source}")]
    Restore { path: PathBuf, source: io::Error },
    #[error("opening the audit log {path}: {source}")]
    Audit { path: PathBuf, source: io::Error },
}

/// Which cluster and member a data dir belongs to.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    format: u32,
    cluster_id: u64,
    member_id: u64,
    name: String,
    /// Whether this member's database has ever held its Raft state. Once it has, a missing database is a
    /// lost one, never a new one. (Dirs written before the field existed always had their database.)
    #[serde(default = "initialized_before_the_field")]
    initialized: bool,
    /// The id of the saved snapshot the member's cluster started from (`--restore`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restored_from: Option<u64>,
    /// The id of the cluster `--initial-cluster` described, if this member forced a new one
    /// (`--force-new-cluster`): the line still names its data dir's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forced_from: Option<u64>,
}

/// The data dir's identity, if it holds a readable one (`claim_data_dir` says what is wrong with one that is
/// not).
fn recorded_identity(dir: &Path) -> Option<Identity> {
    serde_json::from_slice(&std::fs::read(dir.join(IDENTITY_FILE)).ok()?).ok()
}

fn initialized_before_the_field() -> bool {
    true
}

/// How a replica's database starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// A new member of a new cluster: the database is created and Raft initialized with the described members.
    New,
    /// The database is there: Raft resumes from it.
    Existing,
    /// The member's database is gone and the operator asked it to rejoin (`--rejoin`): an empty database,
    /// no initialization; the leader brings it the cluster's state, and it votes only once it has a
    /// membership from a leader.
    Rejoin,
    /// A new replica joined a running cluster as a learner (`--join`): an empty database, no initialization;
    /// the leader brings it the cluster's state, and it asks to be promoted once it has caught up.
    Join,
}

fn data_dir_error(dir: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::DataDir { dir: dir.to_path_buf(), reason: reason.into() }
}

/// Reads the data dir's identity, or writes `expected` when the dir is new. Returns the identity and how the
/// database starts. On an existing dir the cluster is only checked when the operator described one
/// (`check_cluster`); the name always has to match. A member whose database is gone after it once held Raft
/// state starts only to `rejoin`: started as new, it would vote with an empty log and could elect a leader
/// that lacks acknowledged writes.
fn claim_data_dir(
    dir: &Path,
    expected: &Identity,
    check_cluster: bool,
    rejoin: bool,
    joined: bool,
) -> Result<(Identity, Start), ServerError> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| data_dir_error(dir, format!("{IDENTITY_FILE} is corrupt ({e}); refusing to start")))?;
            if found.format != DATA_FORMAT {
                return Err(data_dir_error(dir, format!("data format {} is not supported", found.format)));
            }
            let described = found.forced_from.unwrap_or(found.cluster_id);
            if check_cluster && described != expected.cluster_id {
                return Err(data_dir_error(
                    dir,
                    format!(
                        "belongs to cluster {described:x}, but --initial-cluster (with --initial-cluster-token) \
                         describes cluster {:x}; refusing to start",
                        expected.cluster_id
                    ),
                ));
            }
            if found.name != expected.name || (check_cluster && found.member_id != expected.member_id) {
                return Err(data_dir_error(
                    dir,
                    format!(
                        "belongs to member {:?} ({:x}), not {:?}; refusing to start",
                        found.name, found.member_id, expected.name
                    ),
                ));
            }
            let start = match (dir.join("db").exists(), found.initialized, rejoin) {
                (true, _, _) => Start::Existing,
                // The first start stopped before the database was made.
                (false, false, false) => Start::New,
                (false, _, true) => Start::Rejoin,
                (false, true, false) => {
                    return Err(data_dir_error(
                        dir,
                        format!(
                            "holds the identity of member {:?} ({:x}), but its database (db/) is gone; refusing to \
                             start with an empty log, which could vote away acknowledged writes. With the other \
                             members running, start it again with --rejoin: it then takes the cluster's state from \
                             the leader and votes only once it has it",
                            found.name, found.member_id
                        ),
                    ))
                }
            };
            Ok((found, start))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let empty = match std::fs::read_dir(dir) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(data_dir_error(dir, e.to_string())),
            };
            if !empty {
                return Err(data_dir_error(dir, "is not empty and is not a raftsman data dir; refusing to touch it"));
            }
            std::fs::create_dir_all(dir).map_err(|e| data_dir_error(dir, e.to_string()))?;
            // A member rejoining or joining on an empty dir is initialized from the start: the leader brings its
            // state, and it must never initialize a cluster of its own.
            let identity = Identity { name: expected.name.clone(), initialized: rejoin || joined, ..*expected };
            write_identity(dir, &identity)?;
            let start = match (rejoin, joined) {
                (true, _) => Start::Rejoin,
                (_, true) => Start::Join,
                _ => Start::New,
            };
            Ok((identity, start))
        }
        Err(e) => Err(data_dir_error(dir, e.to_string())),
    }
}

/// Writes the identity file atomically and durably (temporary file, sync, rename, sync of the dir).
fn write_identity(dir: &Path, identity: &Identity) -> Result<(), ServerError> {
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(identity).expect("identity serializes");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, dir.join(IDENTITY_FILE)))
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| data_dir_error(dir, e.to_string()))
}

/// The Raft configuration of a replica.
pub fn raft_config() -> Result<openraft::Config, ServerError> {
    openraft::Config {
        cluster_name: "raftsman".into(),
        heartbeat_interval: limits::HEARTBEAT_INTERVAL_MS,
        election_timeout_min: limits::ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: limits::ELECTION_TIMEOUT_MS_MAX,
        install_snapshot_timeout: limits::SNAPSHOT_RPC_TIMEOUT_MS,
        max_payload_entries: limits::APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(limits::SNAPSHOT_LOGS_SINCE_LAST),
        max_in_snapshot_log_to_keep: limits::SNAPSHOT_LOGS_KEPT,
        purge_batch_size: limits::LOG_PURGE_BATCH_ENTRIES,
        enable_pre_vote: Some(true),
        // Replicate entries as soon as they are written locally instead of after the local fsync: the leader's
        // and the followers' fsyncs overlap (commit still needs a quorum of completed fsyncs).
        broadcast_submitted_on_append: Some(true),
        // A restarted leader holds an election instead of resuming its term. Resuming is unsafe here: entries it
        // had sent to followers before its own fsync may be gone from its log, and in the same term it would
        // write different entries at their indexes (the chaos simulation lost acknowledged writes that way).
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ServerError::Raft(e.to_string()))
}

/// The replica's store on an open database: its state machine, its Raft (initialized with the `initial`
/// members when the database is new) and the handle every service uses. Its cluster is the peer pool's.
pub async fn open_store(
    raft_config: openraft::Config,
    db: Arc<Db>,
    pool: PeerPool,
    id: NodeId,
    initial: Option<BTreeMap<NodeId, RaftNode>>,
    bugs: StorageBugs,
) -> Result<Store, ServerError> {
    let sm = SmShared::load(db.clone(), bugs).map_err(ServerError::LoadStateMachine)?;
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        PeerNetwork { pool: pool.clone() },
        LogStore::new(db.clone(), bugs),
        StateMachine { shared: sm.clone() },
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    if let Some(nodes) = initial {
        match raft.initialize(nodes).await {
            Ok(()) => {}
            Err(e) if e.api_error().is_some() => {
                tracing::info!(error = %e, "raft already initialized")
            }
            Err(e) => return Err(ServerError::Raft(e.to_string())),
        }
    }
    Ok(Store::new(raft, sm, db, pool, id))
}

/// A replica's listeners, bound before anything else starts (tests bind port 0), and how many connections
/// each may hold (`listen::ConnectionCaps::fit` for the process's open-file limit).
pub struct Listeners {
    pub peer: TcpListener,
    pub client: TcpListener,
    pub api: TcpListener,
    pub caps: ConnectionCaps,
}

impl Listeners {
    pub async fn bind(config: &ValidServerConfig, caps: ConnectionCaps) -> Result<Listeners, ServerError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { what, addr, source })
        };
        Ok(Listeners {
            peer: bind("peer", config.config.peer_addr).await?,
            client: bind("client", config.config.client_addr).await?,
            api: bind("kubernetes api", config.config.api_addr).await?,
            caps,
        })
    }
}

/// How a replica dials its peers: through the TLS connector of the peer port when it has one, entering
/// `runtime` (if any) so that the channel's connection task runs there.
fn peer_dialer(tls: Option<&MutualTls>, runtime: Option<tokio::runtime::Handle>) -> Dialer {
    let connector = tls.map(MutualTls::connector);
    Arc::new(move |endpoint: tonic::transport::Endpoint| {
        let _entered = runtime.as_ref().map(|r| r.enter());
        match &connector {
            Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
            None => endpoint.tcp_nodelay(true).connect_lazy(),
        }
    })
}

/// Asks the replica at the peer address `addr` to add this one (`me`) to its cluster as a learner.
async fn join(addr: SocketAddr, me: &Member, tls: Option<&MutualTls>) -> Result<Joined, ServerError> {
    let pool = PeerPool::new(0, peer_dialer(tls, None));
    let request = JoinRequest { name: me.name.clone(), peer_addr: me.peer_addr.to_string() };
    let joined = pool.join(&addr.to_string(), &request).await.map_err(|reason| ServerError::Join { addr, reason })?;
    tracing::info!(
        via = %addr,
        cluster_id = format!("{:x}", joined.cluster_id),
        member_id = format!("{:x}", joined.member_id),
        "joined the cluster as a learner"
    );
    Ok(joined)
}

/// A leader asked to stop hands its leadership to the voter whose log is furthest along before it stops, so
/// that the cluster goes on under a new leader at once instead of after an election timeout (a planned restart
/// costs no election). A transfer that does not complete within `LEADER_WAIT_MS` is given up: the others then
/// elect a leader by themselves.
async fn hand_leadership_over(store: &Store) {
    let Some(target) = store.most_caught_up_voter() else { return };
    match store.transfer_leadership(target).await {
        Ok(()) => tracing::info!(to = %format!("{target:x}"), "handed leadership over before stopping"),
        Err(e) => tracing::warn!(error = %e, "could not hand leadership over before stopping"),
    }
}

/// The identity a new member's data dir gets, from its flags: a member of the cluster `--initial-cluster`
/// describes, started from a saved snapshot if `--restore` names one (read and checked whole here; a cluster
/// started from one has an id of its own, `restored_cluster_id`), or a learner of the cluster it joined through
/// `--join`. Also the snapshot to restore, and whether it joined. A data dir that holds a member already keeps
/// what it recorded (`claim_data_dir` checks the rest).
async fn identity_for(
    config: &ValidServerConfig,
    me: &Member,
    peer_tls: Option<&MutualTls>,
) -> Result<(Identity, Option<saved::Saved>, bool), ServerError> {
    let recorded = recorded_identity(&config.config.data_dir);
    let saved = match &config.config.restore {
        Some(path) if !recorded.as_ref().is_some_and(|r| r.initialized) => {
            Some(saved::open(path).map_err(|source| ServerError::Restore { path: path.clone(), source })?)
        }
        _ => None,
    };
    let identity = |cluster_id, member_id, restored_from| Identity {
        format: DATA_FORMAT,
        cluster_id,
        member_id,
        name: me.name.clone(),
        initialized: false,
        restored_from,
        forced_from: None,
    };
    if let (Some(addr), None) = (config.config.join, &recorded) {
        let joined = join(addr, me, peer_tls).await?;
        return Ok((identity(joined.cluster_id, joined.member_id, None), None, true));
    }
    let restored_from = saved.as_ref().map(|s| s.id).or(recorded.as_ref().and_then(|r| r.restored_from));
    let token = &config.config.initial_cluster_token;
    let described = match restored_from {
        Some(snapshot) => restored_cluster_id(cluster_id(&config.members, token), snapshot),
        None => cluster_id(&config.members, token),
    };
    Ok((identity(described, member_id(described, me), restored_from), saved, false))
}

/// Runs a replica until `shutdown` resolves, then stops it cleanly.
pub async fn run(
    config: ValidServerConfig,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let me = config.members.iter().find(|m| m.name == config.config.name).expect("validated: self is a member");
    let peer_tls = match &config.config.peer_security {
        PeerSecurity::Tls(files) => {
            Some(MutualTls::load(files, "peer", Duration::from_millis(limits::PEER_PREFACE_TIMEOUT_MS))?)
        }
        PeerSecurity::Plaintext => {
            tracing::warn!(
                "the peer port serves without TLS (--insecure-peer): whoever reaches it can take the cluster over"
            );
            None
        }
    };
    let client_tls = match &config.config.client_security {
        ClientSecurity::Tls(files) => {
            Some(MutualTls::load(files, "etcd client", Duration::from_millis(limits::GRPC_PREFACE_TIMEOUT_MS))?)
        }
        ClientSecurity::Plaintext => {
            tracing::warn!(
                "the etcd client port serves without TLS (on loopback): any local process can read and write every key"
            );
            None
        }
    };
    let encryption = match &config.config.encryption_provider_config {
        Some(path) => Arc::new(Encryption::load(path)?),
        None => {
            tracing::warn!("no --encryption-provider-config: Secrets are stored unencrypted");
            Arc::new(Encryption::none())
        }
    };
    let (security, api_tls) = api_security(&config.config.api_security, encryption)?;
    let dir = &config.config.data_dir;
    let (expected, saved, joined) = identity_for(&config, me, peer_tls.as_ref()).await?;
    let check_cluster = !config.config.initial_cluster.trim().is_empty();
    let (mut identity, start) = claim_data_dir(dir, &expected, check_cluster, config.config.rejoin, joined)?;
    if config.config.force_new_cluster && !(start == Start::Existing && identity.initialized) {
        return Err(data_dir_error(dir, "holds no member's data: --force-new-cluster has nothing to go on from"));
    }

    let db = Db::open(&dir.join("db"), &dir.join("snap"), start != Start::Existing)
        .map_err(|e| data_dir_error(dir, format!("cannot open the database ({e}); refusing to start")))?;
    if config.config.force_new_cluster {
        let alone = RaftNode { name: me.name.clone(), peer_addr: me.peer_addr.to_string() };
        let index = storage::force_new_cluster(&db, identity.member_id, alone)
            .map_err(|e| data_dir_error(dir, format!("cannot force a new cluster ({e})")))?;
        identity = Identity {
            cluster_id: forced_cluster_id(identity.cluster_id, identity.member_id, index),
            forced_from: identity.forced_from.or(Some(identity.cluster_id)),
            ..identity
        };
        write_identity(dir, &identity)?;
    }
    let (cluster, id) = (identity.cluster_id, identity.member_id);
    if !identity.initialized {
        match (&saved, identity.restored_from) {
            (Some(saved), _) => {
                storage::restore(&db, &saved.body).map_err(|source| ServerError::Restore {
                    path: config.config.restore.clone().expect("a snapshot was read from it"),
                    source,
                })?;
            }
            (None, Some(_)) => return Err(data_dir_error(
                dir,
                "was being restored from a snapshot when the replica stopped; start it again with the same --restore",
            )),
            (None, None) => {}
        }
    }
    // A database made by a first start that stopped before Raft was initialized is initialized now.
    let initialize = match start {
        Start::New => true,
        Start::Existing => !identity.initialized,
        Start::Rejoin | Start::Join => false,
    };
    let initial = initialize.then(|| {
        config
            .members
            .iter()
            .map(|m| (member_id(cluster, m), RaftNode { name: m.name.clone(), peer_addr: m.peer_addr.to_string() }))
            .collect()
    });
    let bugs = config.config.planted_bugs.storage;
    // Raft (its core, replication and state machine tasks), the peer connections it dials and the peer server
    // run on threads of their own, so that client load (thousands of watches) cannot delay heartbeats.
    let raft_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits::RAFT_WORKER_THREADS)
        .thread_name("raft")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let raft_threads = raft_runtime.handle().clone();
    // A lazily connecting channel spawns its connection task where it is made: on the Raft threads.
    let pool = PeerPool::new(cluster, peer_dialer(peer_tls.as_ref(), Some(raft_threads)));
    let mut raft = raft_config()?;
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(config.config.snapshot_count);
    raft.max_in_snapshot_log_to_keep = config.config.snapshot_catchup_entries;
    let opened = raft_runtime.spawn(open_store(raft, db, pool, id, initial, bugs));
    let store = opened.await.map_err(|e| ServerError::Raft(e.to_string()))?.map_err(|e| match e {
        ServerError::LoadStateMachine(e) => {
            data_dir_error(dir, format!("cannot load the state machine ({e}); refusing to start"))
        }
        other => other,
    })?;
    if !identity.initialized {
        write_identity(dir, &Identity { initialized: true, ..identity })?;
    }
    store.advertise(config.config.advertised);
    tracing::info!(
        name = %me.name,
        member_id = format!("{id:x}"),
        cluster_id = format!("{cluster:x}"),
        ?start,
        version = %config.config.advertised,
        "replica starting"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A learner (joined now, or before and not promoted yet) asks to become a voter once caught up.
    let promote_task = (start == Start::Join || !store.is_voter())
        .then(|| tokio::spawn(store.clone().promote_when_caught_up(stop_rx.clone())));
    // A member back with an empty log waits, answering no Raft message, until the leader accepts it.
    let rejoin_task = (start == Start::Rejoin).then(|| {
        let others = config.members.iter().filter(|m| m.name != me.name).map(|m| m.peer_addr.to_string()).collect();
        tokio::spawn(store.clone().rejoin(others, stop_rx.clone()))
    });
    let caps = listeners.caps;
    let keepalive = |server: tonic::transport::Server| {
        server
            .http2_keepalive_interval(Some(Duration::from_millis(limits::GRPC_KEEPALIVE_INTERVAL_MS)))
            .http2_keepalive_timeout(Some(Duration::from_millis(limits::GRPC_KEEPALIVE_TIMEOUT_MS)))
    };
    // The peer listener is moved to the Raft threads' reactor, with the connections it accepts.
    let peer_listener = {
        let _on_raft_threads = raft_runtime.enter();
        listeners.peer.into_std().and_then(TcpListener::from_std).map_err(ServerError::ServeApi)?
    };
    let peer_preface = Duration::from_millis(limits::PEER_PREFACE_TIMEOUT_MS);
    let peer_incoming = listen::grpc_incoming(peer_listener, "peer", caps.peer, peer_preface, peer_tls);
    let peer_server = keepalive(tonic::transport::Server::builder())
        .max_concurrent_streams(limits::GRPC_STREAMS_PER_CONNECTION_MAX)
        // The leader cancels heartbeats that time out; h2's rapid-reset guard (20 by default) would take a
        // burst of them for an attack and close the connection, and with it every stream to this follower.
        .http2_max_pending_accept_reset_streams(Some(limits::PEER_RESET_STREAMS_MAX))
        .http2_max_local_error_reset_streams(Some(limits::PEER_RESET_STREAMS_MAX))
        .add_service(PeerService::server(store.clone()))
        .serve_with_incoming_shutdown(peer_incoming, wait_stop(stop_rx.clone()));
    let client_preface = Duration::from_millis(limits::GRPC_PREFACE_TIMEOUT_MS);
    let client_incoming =
        listen::grpc_incoming(listeners.client, "etcd client", caps.client, client_preface, client_tls);
    let client_server = keepalive(tonic::transport::Server::builder())
        .max_concurrent_streams(limits::GRPC_STREAMS_PER_CONNECTION_MAX)
        .add_routes(EtcdService::new(store.clone(), config.config.planted_bugs).routes())
        .add_service(OperationsService::server(store.clone()))
        .serve_with_incoming_shutdown(client_incoming, wait_stop(stop_rx.clone()));
    let api_addr = advertised(listeners.api.local_addr().map_err(ServerError::ServeApi)?, me.peer_addr);
    write_credentials(dir, &me.name, api_addr, &security)?;
    let service_range = config.config.service_cluster_ip_range;
    let points = Points::default();
    let event_ttl = config.config.event_ttl;
    let (root_ca, kubelets_tls) = (security.token_root_ca(), security.replicas.clone());
    let api = KubeApi::new(store.clone(), api_addr.to_string(), service_range, event_ttl, security, points.clone());
    let audit_path = dir.join("audit.log");
    let audit = Audit::open(audit_path.clone()).map_err(|source| ServerError::Audit { path: audit_path, source })?;
    let router = rest::router(api, audit);
    // The leader's controllers are API clients of this replica, through the router without a socket.
    let leading = leadership::Leading {
        api_addr,
        kubernetes_service_ip: service_range.kubernetes_ip(),
        cluster_dns_ip: service_range.cluster_dns_ip(),
        node_monitor_grace_period: config.config.node_monitor_grace_period,
        compaction_interval: config.config.compaction_interval,
        points,
        metric_resolution: config.config.metric_resolution,
        autoscaler_sync_period: config.config.autoscaler_sync_period,
        root_ca,
        kubelets_tls,
    };
    let leader_task = tokio::spawn(leadership::run(store.clone(), router.clone(), leading, stop_rx.clone()));
    let api_server = listen::serve_api(listeners.api, router, caps.api, api_tls, wait_stop(stop_rx.clone()));
    let api_task = tokio::spawn(api_server);
    let peer_task = raft_runtime.spawn(peer_server);
    let client_task = tokio::spawn(client_server);
    let lessor_task = tokio::spawn(store.clone().run_lessor(stop_rx.clone()));
    let pruner_task = tokio::spawn(store.clone().run_pruner(stop_rx.clone()));
    let leaders_task = tokio::spawn(store.clone().count_leader_changes(stop_rx.clone()));
    let versions_task = tokio::spawn(store.clone().poll_versions(stop_rx.clone()));
    let addresses = Published { client_addr: config.config.client_addr.to_string(), api_addr: api_addr.to_string() };
    let publish_task = tokio::spawn(publish_member(store.clone(), me.name.clone(), addresses, stop_rx));

    // A replica whose Raft stopped on a fatal error (a storage fault) exits with it, so that its supervisor
    // restarts it on its data dir, instead of serving errors forever.
    let fatal = tokio::select! {
        () = shutdown => None,
        fatal = store.fatal_error() => Some(fatal),
    };
    tracing::info!("replica stopping");
    if fatal.is_none() {
        hand_leadership_over(&store).await;
    }
    let _ = stop_tx.send(true);
    publish_task.abort();
    let _ = lessor_task.await;
    let _ = pruner_task.await;
    let _ = leaders_task.await;
    let _ = versions_task.await;
    if let Some(task) = promote_task {
        task.abort();
    }
    if let Some(task) = rejoin_task {
        let _ = task.await;
    }
    let _ = leader_task.await;
    // Kubernetes watches would hold a graceful stop for as long as they last: the API closes at once.
    api_task.abort();
    let _ = api_task.await;
    let served = [("client API", client_task.await), ("peer API", peer_task.await)];
    let raft_stopped = store.shutdown().await.map_err(|e| ServerError::Raft(e.to_string()));
    raft_runtime.shutdown_background();
    raft_stopped?;
    tracing::info!("replica stopped");
    if let Some(fatal) = fatal {
        return Err(ServerError::Raft(format!("raft stopped on a fatal error: {fatal}")));
    }
    for (what, result) in served {
        if let Ok(Err(source)) = result {
            return Err(ServerError::Serve { what, source });
        }
    }
    Ok(())
}

/// The API's security as the configuration asks: its authenticators, the authority it signs with, its TLS
/// to other replicas, and the TLS it serves (None over plain HTTP).
fn api_security(
    config: &ApiSecurityConfig,
    encryption: Arc<Encryption>,
) -> Result<(ApiSecurity, Option<Arc<rustls::ServerConfig>>), ServerError> {
    let tls = match config {
        ApiSecurityConfig::Plaintext => {
            tracing::warn!("the kubernetes api serves plain HTTP without authentication (--insecure-api)");
            return Ok((ApiSecurity::insecure(encryption), None));
        }
        ApiSecurityConfig::Tls(tls) => tls,
    };
    let loaded = ApiTls::load(&tls.files)?;
    let authenticator = match &tls.token_auth_file {
        Some(path) => Authenticator::with_token_file(path)?,
        None => Authenticator::default(),
    };
    let authenticator = match TokenVerifier::new(&loaded.authority_pem) {
        Ok(verifier) => authenticator.with_service_accounts(verifier),
        Err(e) => {
            tracing::warn!(error = %e, "service account tokens will not authenticate");
            authenticator
        }
    };
    let signer = tls.signing.as_ref().map(|(cert, key)| Authority::from_files(cert, key)).transpose()?;
    let tokens = match signer.as_ref().map(TokenSigner::new) {
        Some(Ok(tokens)) => Some(tokens),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "this replica will not issue service account tokens");
            None
        }
        None => None,
    };
    let security = ApiSecurity {
        authenticator,
        encryption,
        authority_pem: Some(loaded.authority_pem),
        signer,
        tokens,
        replicas: Some(loaded.client),
    };
    Ok((security, Some(loaded.server)))
}

/// What a replica writes into its data dir for its users: `admin.kubeconfig`, pointing kubectl at this
/// replica's API (with a fresh admin client certificate when the replica holds the cluster authority's key),
/// and `node-token`, the token agents join with (`security::join`). Both are readable by their owner only.
/// One kubeconfig names one server: to survive the loss of this replica, a client switches to another
/// replica's file (or an address in front of all of them).
fn write_credentials(dir: &Path, name: &str, api_addr: SocketAddr, security: &ApiSecurity) -> Result<(), ServerError> {
    let context = format!("raftsman-{name}");
    let text = match (&security.authority_pem, &security.signer) {
        (None, _) => kubeconfig::render(&format!("http://{api_addr}"), None, None, &context),
        (Some(authority), Some(signer)) => {
            let admin = signer.issue(ADMIN_USER, &[MASTERS_GROUP], &[], Usage::Client)?;
            let token = NodeToken::of(signer).to_string();
            pki::write(&dir.join("node-token"), &format!("{token}\n"), 0o600)?;
            kubeconfig::render(&format!("https://{api_addr}"), Some(authority), Some(&admin), &context)
        }
        (Some(_), None) => {
            tracing::info!("no admin kubeconfig: this replica does not hold the cluster authority's key");
            return Ok(());
        }
    };
    pki::write(&dir.join("admin.kubeconfig"), &text, 0o600)?;
    Ok(())
}

async fn wait_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The addresses a member announces to the others.
struct Published {
    client_addr: String,
    api_addr: String,
}

/// Announces this member's client addresses through the log, retrying until it is committed.
async fn publish_member(store: Store, name: String, addresses: Published, stop: tokio::sync::watch::Receiver<bool>) {
    let id = store.member_id();
    let published = store.members().into_iter().find(|m| m.id == id).and_then(|m| m.published);
    let already = published
        .is_some_and(|m| m.client_addr == addresses.client_addr && m.api_addr == addresses.api_addr && m.name == name);
    if already {
        return;
    }
    while !*stop.borrow() {
        let cmd = Command::PublishMember {
            id,
            name: name.clone(),
            client_addr: addresses.client_addr.clone(),
            api_addr: addresses.api_addr.clone(),
        };
        match store.propose(cmd).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "member attributes not yet published"),
        }
        tokio::time::sleep(Duration::from_millis(limits::ELECTION_TIMEOUT_MS_MAX)).await;
    }
}

/// The address others reach a listener at: the one it is bound to, or, when bound to every interface, the
/// peer address's host (which the other members reach) with the listener's port.
fn advertised(bound: SocketAddr, peer: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(peer.ip(), bound.port())
    } else {
        bound
    }
}
