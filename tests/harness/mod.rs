//! Shared helpers of the integration tests: real `raftsman server` processes on loopback ports chosen here.

#![allow(dead_code)]

pub mod agent;
pub mod api;
pub mod docker;
pub mod etcdctl;
pub mod kubectl;
pub mod peer;
pub mod pods;
pub mod solo;

use std::future::Future;
use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::local::{Flavor, LocalCluster};

pub struct TestCluster {
    pub local: LocalCluster,
    pub clients: Vec<EtcdClient>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `size` replicas and waits until one leads.
    pub async fn start(size: usize) -> TestCluster {
        TestCluster::start_with(size, &[]).await
    }

    /// Starts `size` replicas with extra `server` flags and waits until one leads.
    pub async fn start_with(size: usize, server_args: &[&str]) -> TestCluster {
        TestCluster::start_laid_out(size, |local| {
            local.server_args = server_args.iter().map(|a| a.to_string()).collect();
        })
        .await
    }

    /// Lays out `size` replicas, lets `configure` change the layout (flags, environments), starts them and
    /// waits until one leads.
    pub async fn start_laid_out(size: usize, configure: impl FnOnce(&mut LocalCluster)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = env!("CARGO_BIN_EXE_raftsman").into();
        let mut local = LocalCluster::new(Flavor::Raftsman { binary }, dir.path(), size, None).expect("layout");
        configure(&mut local);
        local.start_all().expect("start replicas");
        let clients = local.etcd_clients().expect("etcd clients");
        let cluster = TestCluster { local, clients, _dir: dir };
        cluster.leader().await;
        cluster
    }

    /// The index of the current leader, as the running members agree on it (waits up to 20 s).
    pub async fn leader(&self) -> usize {
        eventually(Duration::from_secs(20), "a leader", || async {
            for c in &self.clients {
                if let Ok(s) = c.status().await {
                    if s.leader != 0 {
                        let ids = self.member_ids().await;
                        return ids.iter().position(|id| *id == Some(s.leader));
                    }
                }
            }
            None
        })
        .await
    }

    /// Member ids by index (None for members that do not answer).
    pub async fn member_ids(&self) -> Vec<Option<u64>> {
        let mut ids = Vec::new();
        for c in &self.clients {
            ids.push(c.status().await.ok().and_then(|s| s.header).map(|h| h.member_id));
        }
        ids
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.local.members[i].log).unwrap_or_default()
    }
}

/// The store revision `client`'s replica reports once the leader's components have made their bootstrap writes
/// (system namespaces, their accounts, priority classes, the `kubernetes` Service): the first value that holds
/// for 1.5 s. Tests that check that something changed nothing compare against it.
pub async fn settled_revision(client: &EtcdClient) -> i64 {
    let revision = || async { client.status().await.expect("status").header.map_or(0, |h| h.revision) };
    let mut last = revision().await;
    let mut same_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while same_since.elapsed() < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "the cluster never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = revision().await;
        if now != last {
            (last, same_since) = (now, Instant::now());
        }
    }
    last
}

/// A kube client for replica `i`'s API with the admin kubeconfig it wrote, once it serves the `default`
/// namespace with its ServiceAccount.
pub async fn kube_client(cluster: &TestCluster, i: usize) -> kube::Client {
    let client = cluster.local.kube_client(i).await.expect("a kube client from the replica's kubeconfig");
    eventually(Duration::from_secs(20), "the default service account", || async {
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    client
}

/// Polls `probe` until it returns Some or `timeout` passes (then panics naming `what`).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // A probe that never answers is bounded by the same deadline as one that keeps saying no.
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, probe()).await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(_) => panic!("timed out after {timeout:?} waiting for {what} (the last probe never answered)"),
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts through `client`, retrying failures that say the write did not happen or may not have, until the
/// deadline. Returns the revision of the acknowledged write.
pub async fn put_retrying(
    client: &EtcdClient,
    key: &str,
    value: &str,
    timeout: Duration,
) -> Result<i64, tonic::Status> {
    let deadline = Instant::now() + timeout;
    loop {
        match client.put(key, value).await {
            Ok(r) => return Ok(r.header.map_or(0, |h| h.revision)),
            Err(e) if Instant::now() < deadline && e.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The body of `GET /` from `address` (`host:port`), if it answers within two seconds.
pub fn http_get(address: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET / HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.trim().to_owned())
}
