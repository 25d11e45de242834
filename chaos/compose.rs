//! The compose cluster (`deploy/compose`): three replicas and two agents, each in a container of its own on a
//! private network, from the image and certificates `deploy/compose/setup.sh` makes of this build. Clients
//! on the host write and read through the replicas' published ports while real containers fail: the leader's
//! container is killed (`docker kill`) and started again, the leader is cut off the network (`docker network
//! disconnect`) and joined back, and the leader is paused (`docker pause`) and resumed. After each fault the
//! cluster must accept writes again within a bound; at the end both agents' nodes are Ready and the history
//! is linearizable. The times from each fault to the next acknowledged write are printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::security::mutual_tls::{self, TlsFiles};
use tokio::time::Instant;

use super::history::{Outcome, Recorder};
use super::linearizability::{check, Verdict};
use super::replicas;
use super::workload::{client_loop, Writes};

const CLIENTS: usize = 4;
/// The replicas' addresses on the compose network (docker-compose.yml's).
const REPLICA_IPS: [&str; 3] = ["10.213.7.11", "10.213.7.12", "10.213.7.13"];
/// How long the cluster may take to accept a write after a fault.
const RECOVERY: Duration = Duration::from_secs(15);
/// How long one try of a write after a fault may take: a write held by a replica that forwards it to a leader
/// that is gone is tried again, on every replica, this often.
const TRY: Duration = Duration::from_millis(250);
/// The compose projects of this suite, named so that a run's leftovers are found and removed by the next.
const PROJECT_PREFIX: &str = "raftsman-chaos-";

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose")
}

/// Runs `program args`, returning its trimmed stdout; panics with its stderr when it fails.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program).args(args).envs(env.iter().copied()).output().expect(program);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the containers, networks and images earlier runs of this suite left behind (a killed test run).
fn remove_leftovers() {
    let format = "{{.ID}} {{.Label \"com.docker.compose.project\"}}";
    let containers =
        run("docker", &["ps", "-a", "--filter", "label=com.docker.compose.project", "--format", format], &[]);
    for line in containers.lines() {
        if let Some((id, project)) = line.split_once(' ') {
            if project.starts_with(PROJECT_PREFIX) {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
    let networks = run("docker", &["network", "ls", "--format", "{{.Name}}"], &[]);
    for network in networks.lines().filter(|n| n.starts_with(PROJECT_PREFIX)) {
        let _ = Command::new("docker").args(["network", "rm", network]).output();
    }
}

/// A compose cluster of this build; taken down (containers, network, image) when dropped.
struct Compose {
    project: String,
    image: String,
    env: Vec<(String, String)>,
    pki: tempfile::TempDir,
}

impl Compose {
    fn up() -> Compose {
        remove_leftovers();
        let project = format!("{PROJECT_PREFIX}{}", std::process::id());
        let image = format!("raftsman-chaos:{}", std::process::id());
        let pki = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("RAFTSMAN_IMAGE".to_owned(), image.clone()),
            ("RAFTSMAN_COMPOSE_PKI".to_owned(), pki.path().display().to_string()),
            ("RAFTSMAN_CLUSTER_TOKEN".to_owned(), project.clone()),
        ];
        // The host ports the replicas are published on: free ones, not the file's defaults.
        let ports = raftsman::cluster::local::free_ports(6).unwrap();
        for (i, pair) in ports.chunks(2).enumerate() {
            env.push((format!("RAFTSMAN_N{}_ETCD_PORT", i + 1), pair[0].to_string()));
            env.push((format!("RAFTSMAN_N{}_API_PORT", i + 1), pair[1].to_string()));
        }
        let compose = Compose { project, image, env, pki };
        let setup = compose_dir().join("setup.sh");
        run(setup.to_str().unwrap(), &[env!("CARGO_BIN_EXE_raftsman")], &compose.env());
        compose.compose(&["up", "-d"]);
        compose
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// `docker-compose ARGS` on this project, with its environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command.args(["-p", &self.project, "-f"]).arg(compose_dir().join("docker-compose.yml")).args(args);
        command.envs(self.env());
        command
    }

    fn compose(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("docker-compose");
        assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The container of service `service`.
    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
    }

    /// The compose network's name.
    fn network(&self) -> String {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        run("docker", &["network", "ls", "--filter", &filter, "--format", "{{.Name}}"], &[])
    }

    /// Where the host reaches `service`'s `port`.
    fn published(&self, service: &str, port: u16) -> String {
        self.compose(&["port", service, &port.to_string()])
    }

    /// The last lines of every container's log (empty if docker-compose fails: it is called while panicking).
    fn logs(&self) -> String {
        let out = self.command(&["logs", "--no-color", "--tail", "60"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    fn etcd_files(&self) -> TlsFiles {
        let dir = self.pki.path();
        TlsFiles { trusted_ca: dir.join("etcd-ca.crt"), cert: dir.join("etcdctl.crt"), key: dir.join("etcdctl.key") }
    }

    /// An admin kubeconfig for replica `service`'s published API port.
    fn kubeconfig(&self, service: &str) -> PathBuf {
        let out = self.pki.path().join(format!("admin-{service}.kubeconfig"));
        let server = format!("https://{}", self.published(service, 6443));
        let dir = self.pki.path().to_str().unwrap();
        let args = ["certs", "kubeconfig", "--dir", dir, "--server", &server, "--user", "admin"];
        let out_arg = out.to_str().unwrap();
        run(
            env!("CARGO_BIN_EXE_raftsman"),
            &[&args[..], &["--group", "system:masters", "--out", out_arg]].concat(),
            &[],
        );
        out
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the containers' last log lines:\n{}", self.logs());
        }
        let _ = self.command(&["down", "-v", "--timeout", "5"]).output();
        let _ = Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

/// Writes `key` through every replica at once, each retrying on its own (a try waits at most `TRY`), until one
/// acknowledges; how long that took (panics after `RECOVERY`).
async fn write_accepted(clients: &[EtcdClient], key: &str, writes: &Mutex<Writes>) -> Duration {
    let start = Instant::now();
    writes.lock().unwrap().tried.insert(key.to_owned());
    let tries = clients.iter().map(|client| {
        Box::pin(async move {
            loop {
                if let Ok(Ok(_)) = tokio::time::timeout(TRY, client.put(key, key)).await {
                    return Ok::<(), ()>(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let accepted = tokio::time::timeout(RECOVERY, futures::future::select_ok(tries)).await;
    assert!(accepted.is_ok(), "no write accepted within {RECOVERY:?} ({key})");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_cluster_serves_through_killed_partitioned_and_paused_leaders_and_stays_linearizable() {
    let compose = Compose::up();
    let tls = mutual_tls::client_config(&compose.etcd_files(), "etcd client").unwrap();
    let services = ["n1", "n2", "n3"];
    let clients: Vec<EtcdClient> = services
        .iter()
        .map(|s| EtcdClient::with_tls(&format!("https://{}", compose.published(s, 2379)), tls.clone()).unwrap())
        .collect();
    replicas::wait(&clients, None).await;

    let seed = rand::random();
    let recorder = Arc::new(Mutex::new(Recorder::new(Instant::now())));
    let writes = Arc::new(Mutex::new(Writes::default()));
    // Long enough for the three faults; the clients stop by themselves, every operation recorded whole.
    let load_end = Instant::now() + Duration::from_secs(45);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (clients, recorder, writes) = (clients.clone(), recorder.clone(), writes.clone());
            tokio::spawn(client_loop(id, seed, clients, recorder, writes, load_end, 50))
        })
        .collect();
    let network = compose.network();

    // The leader's container is killed; writes go on through the others; it is started again.
    let leader = replicas::wait(&clients, None).await;
    let container = compose.container(services[leader]);
    run("docker", &["kill", &container], &[]);
    let after_kill = write_accepted(&clients, "compose/after-kill", &writes).await;
    run("docker", &["start", &container], &[]);
    replicas::wait(&clients, None).await;

    // The leader is cut off the network, then joined back at its address.
    let leader = replicas::wait(&clients, None).await;
    let container = compose.container(services[leader]);
    run("docker", &["network", "disconnect", &network, &container], &[]);
    let after_partition = write_accepted(&clients, "compose/after-partition", &writes).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    run("docker", &["network", "connect", "--ip", REPLICA_IPS[leader], &network, &container], &[]);

    // The leader is paused, then resumed.
    let leader = replicas::wait(&clients, None).await;
    let container = compose.container(services[leader]);
    run("docker", &["pause", &container], &[]);
    let after_pause = write_accepted(&clients, "compose/after-pause", &writes).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    run("docker", &["unpause", &container], &[]);
    eprintln!(
        "compose: a write accepted {} ms after the leader was killed, {} ms after it was cut off, {} ms after it \
         was paused",
        after_kill.as_millis(),
        after_partition.as_millis(),
        after_pause.as_millis()
    );

    // Healed: every replica serves, and both agents' nodes are Ready.
    for (i, client) in clients.iter().enumerate() {
        let deadline = Instant::now() + RECOVERY;
        while client.get("compose/after-pause", false).await.map_or(true, |r| r.count == 0) {
            assert!(Instant::now() < deadline, "{} does not serve the latest write", services[i]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let kubeconfig = compose.kubeconfig(services[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = run("kubectl", &["--kubeconfig", kubeconfig.to_str().unwrap(), "get", "nodes", "-o", "json"], &[]);
        let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
        let ready: Vec<&str> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        if ready == ["a1", "a2"] {
            break;
        }
        assert!(Instant::now() < deadline, "the agents' nodes are not both Ready: {ready:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for w in workers {
        w.await.unwrap();
    }

    let history = Arc::try_unwrap(recorder).ok().unwrap().into_inner().unwrap().into_operations();
    let acked = history.iter().filter(|o| o.outcome == Outcome::Ok).count();
    assert!(acked > 100, "the load made progress: only {acked} acknowledged operations");
    match check(&history) {
        Verdict::Ok => {}
        Verdict::Violation { key, .. } => panic!("history of {key} is not linearizable (seed {seed})"),
        Verdict::Unknown { key } => panic!("the checker gave up on {key} (seed {seed})"),
    }
}
