//! `raftsman ctl`: an operator's view of a running cluster and its maintenance, through the etcd client port
//! (as etcdctl, with its credentials) and the Kubernetes API (with the admin kubeconfig).
//!
//! Run in the directory `raftsman up` runs from, it finds that cluster by itself (`Target::local`: the
//! endpoints `up` writes, its etcd client certificate and admin kubeconfig); elsewhere it takes the endpoints
//! and credentials as flags. `status` is a table per replica (role, term, committed and applied indexes, lag
//! behind the leader, version, health) and per agent (Ready, last heartbeat), with the cluster version;
//! `upgrade_check` says whether a replica may be stopped now for a rolling upgrade, and which one next;
//! `snapshot_save` writes a saved snapshot as `etcdctl snapshot save` does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::etcd_client::EtcdClient;
use crate::limits;
use crate::proto::etcd as pb;
use crate::proto::operations::VersionsRequest;
use crate::security::mutual_tls::{self, TlsFiles};
use crate::security::{etcd, pki};
use crate::store::version::Advertised;

/// The file in `raftsman up`'s data dir that lists the replicas' etcd client addresses, one per line.
pub const ENDPOINTS_FILE: &str = "endpoints";

/// Where a cluster is and how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The replicas' etcd client addresses (`HOST:PORT`).
    pub endpoints: Vec<String>,
    /// The etcd client credentials; None: plain gRPC (a client port on loopback without TLS).
    pub tls: Option<TlsFiles>,
    /// The admin kubeconfig, to list the agents.
    pub kubeconfig: Option<PathBuf>,
}

impl Target {
    /// The cluster `raftsman up` runs from `dir` (its data dir), if it runs there.
    pub fn local(dir: &Path) -> Option<Target> {
        let endpoints = std::fs::read_to_string(dir.join(ENDPOINTS_FILE)).ok()?;
        let pki_dir = dir.join("pki");
        let (cert, key) = pki::files(&pki_dir, etcd::CLIENT_FILES);
        let trusted_ca = pki::files(&pki_dir, etcd::AUTHORITY).0;
        let kubeconfig = dir.join("kubeconfig");
        Some(Target {
            endpoints: endpoints.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
            tls: Some(TlsFiles { trusted_ca, cert, key }),
            kubeconfig: kubeconfig.exists().then_some(kubeconfig),
        })
    }

    /// What its clients dial with: the etcd client credentials, read once.
    fn dialer(&self) -> anyhow::Result<Dialer> {
        let tls = self.tls.as_ref().map(|files| mutual_tls::client_config(files, "etcd client")).transpose()?;
        Ok(Dialer(tls))
    }
}

/// Makes etcd clients of the target's endpoints, over TLS when it has credentials.
struct Dialer(Option<tonic::transport::ClientTlsConfig>);

impl Dialer {
    fn client(&self, endpoint: &str) -> anyhow::Result<EtcdClient> {
        Ok(match &self.0 {
            Some(tls) => EtcdClient::with_tls(&format!("https://{endpoint}"), tls.clone())?,
            None => EtcdClient::new(&format!("http://{endpoint}"))?,
        })
    }
}

/// One replica as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    pub name: String,
    pub id: u64,
    pub endpoint: String,
    /// Err: the replica did not answer (why).
    pub status: Result<ReplicaStatus, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub leader: u64,
    pub learner: bool,
    pub term: u64,
    pub committed: u64,
    pub applied: u64,
    pub errors: Vec<String>,
    /// What it advertises (None: it did not say).
    pub version: Option<Advertised>,
    /// The cluster version as it knows it (None: not known there).
    pub cluster_version: Option<Advertised>,
}

/// One agent (node) as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRow {
    pub node: String,
    pub ready: String,
    /// Seconds since its Lease was last renewed; None without a Lease.
    pub heartbeat_secs_ago: Option<i64>,
}

/// The status tables: replicas (with their lag behind the highest committed index any replica reports) and
/// agents.
pub fn table(replicas: &[ReplicaRow], agents: Option<&[AgentRow]>) -> String {
    let lag = lags(replicas);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6} {:<8}  HEALTH",
        "REPLICA", "ID", "ENDPOINT", "ROLE", "TERM", "COMMITTED", "APPLIED", "LAG", "VERSION"
    );
    for r in replicas {
        let id = format!("{:x}", r.id);
        let _ = match &r.status {
            Ok(s) => {
                let role = match (s.leader == r.id, s.learner) {
                    (true, _) => "leader",
                    (_, true) => "learner",
                    _ => "follower",
                };
                let health = if s.errors.is_empty() { "ok".to_owned() } else { s.errors.join("; ") };
                let behind = lag(s);
                let version = s.version.map_or("?".to_owned(), |v| v.binary.to_string());
                writeln!(
                    out,
                    "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6} {:<8}  {health}",
                    r.name, id, r.endpoint, role, s.term, s.committed, s.applied, behind, version
                )
            }
            Err(e) => writeln!(
                out,
                "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6} {:<8}  unreachable: {e}",
                r.name, id, r.endpoint, "-", "-", "-", "-", "-", "-"
            ),
        };
    }
    let leaders: Vec<u64> = replicas.iter().filter_map(|r| r.status.as_ref().ok()).map(|s| s.leader).collect();
    let _ = match leaders.iter().find(|l| **l != 0) {
        Some(leader) if leaders.iter().all(|l| l == leader) => {
            let name = replicas.iter().find(|r| r.id == *leader).map_or("?", |r| r.name.as_str());
            writeln!(out, "leader: {name} ({leader:x})")
        }
        Some(_) => writeln!(out, "leader: the replicas do not agree on one"),
        None => writeln!(out, "leader: none"),
    };
    let _ = match leader_status(replicas).and_then(|s| s.cluster_version) {
        Some(version) => writeln!(out, "cluster version: {version}"),
        None => writeln!(out, "cluster version: not known yet (some voter's version is not)"),
    };
    if let Some(agents) = agents {
        let _ = writeln!(out, "\n{:<24} {:<8} LAST HEARTBEAT", "AGENT (NODE)", "READY");
        for a in agents {
            let beat = a.heartbeat_secs_ago.map_or("never".to_owned(), |s| format!("{s}s ago"));
            let _ = writeln!(out, "{:<24} {:<8} {beat}", a.node, a.ready);
        }
    }
    out
}

/// The replicas' status, each asked at its own endpoint; the members (names, ids, client addresses) come from
/// the first that answers, and a member no endpoint was given for is asked at the address it publishes.
pub async fn replicas(target: &Target) -> anyhow::Result<Vec<ReplicaRow>> {
    let dialer = target.dialer()?;
    let mut members: Option<Vec<pb::Member>> = None;
    for endpoint in &target.endpoints {
        if let Ok(list) = dialer.client(endpoint)?.cluster().member_list(pb::MemberListRequest::default()).await {
            members = Some(list.into_inner().members);
            break;
        }
    }
    let members = members.ok_or_else(|| anyhow::anyhow!("no endpoint answered: {}", target.endpoints.join(", ")))?;
    let mut rows = Vec::new();
    for m in members {
        let published = m.client_ur_ls.first().map(|u| u.rsplit("//").next().unwrap_or(u).to_owned());
        let endpoint = published.unwrap_or_default();
        let status = match endpoint.is_empty() {
            true => Err("it publishes no client address (not started yet?)".to_owned()),
            false => {
                let client = dialer.client(&endpoint)?;
                match client.status().await {
                    Ok(s) => {
                        // A replica of a build without the call does not say its version.
                        let versions = client.operations().versions(VersionsRequest {}).await.ok();
                        let versions = versions.map(tonic::Response::into_inner);
                        let advertised = |info: Option<&crate::proto::peer::VersionInfo>| {
                            info.and_then(|i| Advertised::from_proto(i).ok())
                        };
                        Ok(ReplicaStatus {
                            leader: s.leader,
                            learner: s.is_learner,
                            term: s.raft_term,
                            committed: s.raft_index,
                            applied: s.raft_applied_index,
                            errors: s.errors,
                            version: advertised(versions.as_ref().and_then(|v| v.own.as_ref())),
                            cluster_version: advertised(versions.as_ref().and_then(|v| v.cluster.as_ref())),
                        })
                    }
                    Err(e) => Err(e.message().to_owned()),
                }
            }
        };
        rows.push(ReplicaRow { name: m.name, id: m.id, endpoint, status });
    }
    Ok(rows)
}

/// How far a replica's applied index is behind the highest committed index any of `replicas` reports.
fn lags(replicas: &[ReplicaRow]) -> impl Fn(&ReplicaStatus) -> u64 {
    let newest = replicas.iter().filter_map(|r| r.status.as_ref().ok()).map(|s| s.committed).max().unwrap_or(0);
    move |s| newest.saturating_sub(s.applied)
}

/// The status of the replica the answering replicas agree leads, if they agree on one.
fn leader_status(replicas: &[ReplicaRow]) -> Option<&ReplicaStatus> {
    let answering: Vec<&ReplicaStatus> = replicas.iter().filter_map(|r| r.status.as_ref().ok()).collect();
    let leader = answering.first()?.leader;
    if leader == 0 || answering.iter().any(|s| s.leader != leader) {
        return None;
    }
    replicas.iter().find(|r| r.id == leader)?.status.as_ref().ok()
}

/// What `upgrade-check` found: whether one replica may be stopped now, why not, and which one goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeCheck {
    /// Why no replica may be stopped now; empty when one may.
    pub blockers: Vec<String>,
    /// Where the upgrade stands (the versions running, the cluster version).
    pub summary: String,
    /// The replica to upgrade next and how, when one may be stopped.
    pub next: Option<String>,
}

/// Whether the next step of a rolling upgrade is safe: every member answers, is healthy and caught up (at
/// most `UPGRADE_LAG_ENTRIES_MAX` behind), a leader is agreed on and knows every voter's version, no learner
/// waits, and with one voter stopped a quorum is left (three voters or more). The next replica is one on the
/// oldest version running, a follower before the leader (the leader goes last, handing leadership over as it
/// stops); when every replica runs the same version, any follower starts an upgrade.
pub fn upgrade_check(replicas: &[ReplicaRow]) -> UpgradeCheck {
    let mut blockers = Vec::new();
    let lag = lags(replicas);
    for r in replicas {
        match &r.status {
            Err(e) => blockers.push(format!("{} does not answer ({e}): bring it back or replace it first", r.name)),
            Ok(s) if !s.errors.is_empty() => blockers.push(format!("{} reports: {}", r.name, s.errors.join("; "))),
            Ok(s) if s.learner => {
                blockers.push(format!("{} is a learner: let it catch up and be promoted, or remove it", r.name))
            }
            Ok(s) if lag(s) > limits::UPGRADE_LAG_ENTRIES_MAX => {
                blockers.push(format!("{} is {} entries behind", r.name, lag(s)))
            }
            Ok(s) if s.version.is_none() => blockers.push(format!("{} does not say its version", r.name)),
            Ok(_) => {}
        }
    }
    let leading = leader_status(replicas);
    let leader = leading.map(|s| s.leader);
    if leader.is_none() {
        blockers.push("the replicas do not agree on a leader".to_owned());
    }
    // A member that does not answer counts as a voter: it may be one.
    let voters = replicas.iter().filter(|r| !r.status.as_ref().is_ok_and(|s| s.learner)).count();
    if voters < 3 {
        blockers.push(format!("with {voters} voter(s), stopping one would stop the cluster's writes"));
    }
    if leading.is_some_and(|s| s.cluster_version.is_none()) {
        blockers.push("the leader has not heard every voter's version yet: check again in a few seconds".to_owned());
    }
    let running: Vec<(&ReplicaRow, Advertised)> =
        replicas.iter().filter_map(|r| Some((r, r.status.as_ref().ok()?.version?))).collect();
    let oldest = running.iter().map(|(_, v)| v.binary).min();
    let newest = running.iter().map(|(_, v)| v.binary).max();
    let cluster = leading.and_then(|s| s.cluster_version).map_or("not known yet".to_owned(), |v| v.to_string());
    let summary = match (oldest, newest) {
        (Some(oldest), Some(newest)) if oldest == newest => {
            format!("every replica runs {newest}; the cluster version is {cluster}")
        }
        (Some(oldest), Some(newest)) => {
            let behind: Vec<&str> =
                running.iter().filter(|(_, v)| v.binary < newest).map(|(r, _)| r.name.as_str()).collect();
            format!(
                "upgrading from {oldest} to {newest}: {} still to upgrade; the cluster version is {cluster}",
                behind.join(", ")
            )
        }
        _ => format!("no replica says its version; the cluster version is {cluster}"),
    };
    let next = match (blockers.is_empty(), oldest) {
        (true, Some(oldest)) => {
            let mut candidates: Vec<&ReplicaRow> =
                running.iter().filter(|(_, v)| v.binary == oldest).map(|(r, _)| *r).collect();
            candidates.sort_by_key(|r| (Some(r.id) == leader, r.name.clone()));
            candidates.first().map(|r| match Some(r.id) == leader {
                true => format!(
                    "{} (the leader, on {oldest}): stop it with SIGTERM (it hands leadership to the most caught-up \
                     voter first), replace its binary, start it on its data dir, then check again",
                    r.name
                ),
                false => format!(
                    "{} (a follower, on {oldest}): stop it with SIGTERM, replace its binary, start it on its data \
                     dir, then check again",
                    r.name
                ),
            })
        }
        _ => None,
    };
    UpgradeCheck { blockers, summary, next }
}

impl std::fmt::Display for UpgradeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.summary)?;
        if self.blockers.is_empty() {
            writeln!(f, "safe: one replica may be stopped now")?;
        } else {
            writeln!(f, "not safe to stop a replica now:")?;
            for blocker in &self.blockers {
                writeln!(f, "  - {blocker}")?;
            }
        }
        match &self.next {
            Some(next) => writeln!(f, "next: {next}"),
            None => Ok(()),
        }
    }
}

/// The agents: every Node, its Ready condition and how long ago its Lease was renewed.
pub async fn agents(kubeconfig: &Path) -> anyhow::Result<Vec<AgentRow>> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let nodes = kube::Api::<Node>::all(client.clone()).list(&Default::default()).await?;
    let leases: BTreeMap<String, Lease> = kube::Api::<Lease>::namespaced(client, "kube-node-lease")
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|l| Some((l.metadata.name.clone()?, l)))
        .collect();
    let now = jiff::Timestamp::now();
    Ok(nodes
        .items
        .into_iter()
        .map(|n| {
            let node = n.metadata.name.clone().unwrap_or_default();
            let conditions = n.status.and_then(|s| s.conditions).unwrap_or_default();
            let ready =
                conditions.iter().find(|c| c.type_ == "Ready").map_or("Unknown".to_owned(), |c| c.status.clone());
            let renewed = leases.get(&node).and_then(|l| l.spec.as_ref()?.renew_time.clone());
            let heartbeat_secs_ago = renewed.map(|t| (now.as_second() - t.0.as_second()).max(0));
            AgentRow { node, ready, heartbeat_secs_ago }
        })
        .collect())
}

/// Saves the first endpoint's state as a saved snapshot at `file` (written beside it, synced, then renamed),
/// as `etcdctl snapshot save` does; returns its size in bytes.
pub async fn snapshot_save(target: &Target, file: &Path) -> anyhow::Result<u64> {
    use std::io::Write;
    let endpoint = target.endpoints.first().ok_or_else(|| anyhow::anyhow!("no endpoint to save a snapshot from"))?;
    let client = target.dialer()?.client(endpoint)?;
    let mut stream = client.maintenance().snapshot(pb::SnapshotRequest {}).await?.into_inner();
    let partial = file.with_extension("part");
    let mut out = std::fs::File::create(&partial)?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        out.write_all(&chunk.blob)?;
        written += chunk.blob.len() as u64;
    }
    out.sync_all()?;
    drop(out);
    // A stream cut short is not a snapshot: the digest check refuses it before it takes the name.
    crate::store::saved::open(&partial)?;
    std::fs::rename(&partial, file)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, id: u64, status: Result<ReplicaStatus, String>) -> ReplicaRow {
        ReplicaRow { name: name.into(), id, endpoint: format!("127.0.0.1:{id}"), status }
    }

    fn running(leader: u64, committed: u64, applied: u64) -> Result<ReplicaStatus, String> {
        let version = Some(Advertised::this_build_as("0.2.0").unwrap());
        let (errors, cluster_version) = (Vec::new(), version);
        Ok(ReplicaStatus { leader, learner: false, term: 3, committed, applied, errors, version, cluster_version })
    }

    fn on(version: &str, mut status: Result<ReplicaStatus, String>) -> Result<ReplicaStatus, String> {
        status.as_mut().unwrap().version = Some(Advertised::this_build_as(version).unwrap());
        status
    }

    #[test]
    fn an_upgrade_goes_follower_by_follower_on_the_oldest_version_and_the_leader_last() {
        let rows = |versions: [&str; 3]| {
            let names = ["n1", "n2", "n3"];
            (0..3).map(|i| replica(names[i], i as u64 + 1, on(versions[i], running(1, 50, 50)))).collect::<Vec<_>>()
        };
        let start = upgrade_check(&rows(["0.1.0", "0.1.0", "0.1.0"]));
        assert!(start.blockers.is_empty(), "{start}");
        assert!(start.summary.starts_with("every replica runs 0.1.0"), "{start}");
        assert!(start.next.as_ref().unwrap().starts_with("n2 (a follower, on 0.1.0)"), "{start}");
        let midway = upgrade_check(&rows(["0.1.0", "0.2.0", "0.1.0"]));
        assert!(midway.summary.starts_with("upgrading from 0.1.0 to 0.2.0: n1, n3 still to upgrade"), "{midway}");
        assert!(midway.next.as_ref().unwrap().starts_with("n3 (a follower"), "{midway}");
        let last = upgrade_check(&rows(["0.1.0", "0.2.0", "0.2.0"]));
        assert!(last.next.as_ref().unwrap().starts_with("n1 (the leader, on 0.1.0)"), "{last}");
        let done = upgrade_check(&rows(["0.2.0", "0.2.0", "0.2.0"]));
        assert!(done.summary.contains("every replica runs 0.2.0; the cluster version is 0.2.0"), "{done}");
    }

    #[test]
    fn no_replica_may_stop_while_one_is_down_behind_learning_or_the_voters_are_too_few() {
        let healthy = |name: &str, id: u64| replica(name, id, running(1, 5000, 5000));
        let down = [healthy("n1", 1), healthy("n2", 2), replica("n3", 3, Err("connection refused".into()))];
        let check = upgrade_check(&down);
        assert_eq!(check.blockers, ["n3 does not answer (connection refused): bring it back or replace it first"]);
        assert_eq!(check.next, None);
        assert!(check.to_string().contains("not safe to stop a replica now"), "{check}");
        let behind = [healthy("n1", 1), healthy("n2", 2), replica("n3", 3, running(1, 5000, 10))];
        assert_eq!(upgrade_check(&behind).blockers, ["n3 is 4990 entries behind"]);
        let mut learning = running(1, 5000, 5000);
        learning.as_mut().unwrap().learner = true;
        let learner = [healthy("n1", 1), healthy("n2", 2), healthy("n3", 3), replica("n4", 4, learning)];
        assert_eq!(upgrade_check(&learner).blockers.len(), 1);
        let two = [healthy("n1", 1), healthy("n2", 2)];
        assert_eq!(upgrade_check(&two).blockers, ["with 2 voter(s), stopping one would stop the cluster's writes"]);
    }

    #[test]
    fn the_table_names_the_leader_each_role_and_how_far_each_replica_lags() {
        let rows = [
            replica("n1", 1, running(1, 100, 100)),
            replica("n2", 2, running(1, 100, 90)),
            replica("n3", 3, Err("connection refused".into())),
        ];
        let agents = [AgentRow { node: "worker".into(), ready: "True".into(), heartbeat_secs_ago: Some(4) }];
        let out = table(&rows, Some(&agents));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("n1") && lines[1].contains("leader") && lines[1].ends_with("ok"), "{out}");
        let n2: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(n2[3..8], ["follower", "3", "100", "90", "10"], "{out}");
        assert!(lines[3].contains("unreachable: connection refused"), "{out}");
        assert_eq!(lines[4], "leader: n1 (1)");
        assert!(lines[1].contains(" 0.2.0 "), "{out}");
        assert_eq!(lines[5], format!("cluster version: {}", Advertised::this_build_as("0.2.0").unwrap()));
        assert!(out.contains("worker") && out.contains("4s ago"), "{out}");

        let split = [replica("n1", 1, running(1, 5, 5)), replica("n2", 2, running(2, 5, 5))];
        assert!(table(&split, None).contains("leader: the replicas do not agree on one"));
    }
}
