//! `raftsman ctl`: an operator's view of a running cluster and its maintenance, through the etcd client port
//! (as etcdctl, with its credentials) and the Kubernetes API (with the admin kubeconfig).
//!
//! Run in the directory `raftsman up` runs from, it finds that cluster by itself (`Target::local`: the
//! endpoints `up` writes, its etcd client certificate and admin kubeconfig); elsewhere it takes the endpoints
//! and credentials as flags. `status` is a table per replica (role, term, committed and applied indexes, lag
//! behind the leader, health) and per agent (Ready, last heartbeat); `snapshot_save` writes a saved snapshot
//! as `etcdctl snapshot save` does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::etcd_client::EtcdClient;
use crate::proto::etcd as pb;
use crate::security::mutual_tls::{self, TlsFiles};
use crate::security::{etcd, pki};

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
    let newest = replicas.iter().filter_map(|r| r.status.as_ref().ok()).map(|s| s.committed).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6}  HEALTH",
        "REPLICA", "ID", "ENDPOINT", "ROLE", "TERM", "COMMITTED", "APPLIED", "LAG"
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
                let lag = newest.saturating_sub(s.applied);
                writeln!(
                    out,
                    "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6}  {health}",
                    r.name, id, r.endpoint, role, s.term, s.committed, s.applied, lag
                )
            }
            Err(e) => writeln!(
                out,
                "{:<8} {:<16} {:<21} {:<9} {:>6} {:>10} {:>10} {:>6}  unreachable: {e}",
                r.name, id, r.endpoint, "-", "-", "-", "-", "-"
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
            false => match dialer.client(&endpoint)?.status().await {
                Ok(s) => Ok(ReplicaStatus {
                    leader: s.leader,
                    learner: s.is_learner,
                    term: s.raft_term,
                    committed: s.raft_index,
                    applied: s.raft_applied_index,
                    errors: s.errors,
                }),
                Err(e) => Err(e.message().to_owned()),
            },
        };
        rows.push(ReplicaRow { name: m.name, id: m.id, endpoint, status });
    }
    Ok(rows)
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
        Ok(ReplicaStatus { leader, learner: false, term: 3, committed, applied, errors: Vec::new() })
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
        assert!(out.contains("worker") && out.contains("4s ago"), "{out}");

        let split = [replica("n1", 1, running(1, 5, 5)), replica("n2", 2, running(2, 5, 5))];
        assert!(table(&split, None).contains("leader: the replicas do not agree on one"));
    }
}
