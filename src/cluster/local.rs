//! Local clusters of real processes on loopback: `raftsman up`, the benchmark and the integration tests.
//!
//! Each member is a child process with its own data dir and log file under one directory. Members of a
//! raftsman cluster run this project's binary, with mutual TLS between them, the Kubernetes API over TLS with
//! authentication, and Secrets encrypted at rest: the peer authority, the cluster authority and the encryption
//! configuration are made in `<dir>/pki` the first time (and kept, so that a restarted cluster keeps them),
//! and each member gets a fresh peer certificate and API certificate there whenever the cluster is laid out.
//! Each member holds the cluster authority's key, so it writes an admin kubeconfig and the node token into its
//! data dir. Members of an etcd cluster run Debian's `etcd`
//! (3.4), so that both can be driven side by side. Dropping a `LocalCluster` kills whatever it still runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::security::authn::{API_SERVER_USER, MASTERS_GROUP};
use crate::security::{encryption, peer, pki, tls};

/// Which program the members run.
#[derive(Clone, Debug)]
pub enum Flavor {
    Raftsman { binary: PathBuf },
    Etcd { binary: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Term,
    Stop,
    Cont,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Kill => libc::SIGKILL,
            Signal::Term => libc::SIGTERM,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

pub struct LocalMember {
    pub name: String,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// The Kubernetes API's address (raftsman members only).
    pub api_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct LocalCluster {
    flavor: Flavor,
    pub members: Vec<LocalMember>,
    /// Where the peer authority and the members' peer certificates are (raftsman members only).
    pub pki: Option<PathBuf>,
    /// Extra arguments for every raftsman member's `server` command.
    pub server_args: Vec<String>,
}

/// `count` distinct loopback ports nobody listens on right now. They are held until all are chosen: a port
/// released at once is often the next one the kernel hands out.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl LocalCluster {
    /// Lays out `size` members under `dir`; ports come from `base_port` (member i uses base+10*i and
    /// base+10*i+1) or, when it is None, are picked free.
    pub fn new(flavor: Flavor, dir: &Path, size: usize, base_port: Option<u16>) -> std::io::Result<LocalCluster> {
        let mut members = Vec::new();
        let free = if base_port.is_none() { free_ports(3 * size)? } else { Vec::new() };
        for i in 0..size {
            let (peer, client, api) = match base_port {
                Some(base) => (base + 10 * i as u16, base + 10 * i as u16 + 1, base + 10 * i as u16 + 2),
                None => (free[3 * i], free[3 * i + 1], free[3 * i + 2]),
            };
            let name = format!("n{}", i + 1);
            members.push(LocalMember {
                peer_addr: SocketAddr::from(([127, 0, 0, 1], peer)),
                client_addr: SocketAddr::from(([127, 0, 0, 1], client)),
                api_addr: SocketAddr::from(([127, 0, 0, 1], api)),
                data_dir: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                name,
                child: None,
            });
        }
        let pki = match flavor {
            Flavor::Raftsman { .. } => Some(make_pki(&dir.join("pki"), &members)?),
            Flavor::Etcd { .. } => None,
        };
        Ok(LocalCluster { flavor, members, pki, server_args: Vec::new() })
    }

    pub fn initial_cluster(&self) -> String {
        let scheme = match self.flavor {
            Flavor::Raftsman { .. } => "",
            Flavor::Etcd { .. } => "http://",
        };
        self.members.iter().map(|m| format!("{}={scheme}{}", m.name, m.peer_addr)).collect::<Vec<_>>().join(",")
    }

    pub fn client_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://{}", m.client_addr)).collect()
    }

    pub fn start_all(&mut self) -> std::io::Result<()> {
        (0..self.members.len()).try_for_each(|i| self.start(i))
    }

    /// Starts member `i` (again) on its data dir.
    pub fn start(&mut self, i: usize) -> std::io::Result<()> {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let mut cmd = match &self.flavor {
            Flavor::Raftsman { binary } => {
                let mut c = Command::new(binary);
                c.arg("server")
                    .args(["--name", &m.name])
                    .arg("--data-dir")
                    .arg(&m.data_dir)
                    .args(["--peer-addr", &m.peer_addr.to_string()])
                    .args(["--client-addr", &m.client_addr.to_string()])
                    .args(["--api-addr", &m.api_addr.to_string()])
                    .args(["--initial-cluster", &initial]);
                if let Some(pki) = &self.pki {
                    let (ca, _) = pki::files(pki, peer::AUTHORITY);
                    let (cert, key) = pki::files(pki, &peer_files(&m.name));
                    c.arg("--peer-trusted-ca-file").arg(ca).arg("--peer-cert-file").arg(cert);
                    c.arg("--peer-key-file").arg(key);
                    c.arg("--encryption-provider-config").arg(pki.join(ENCRYPTION_CONFIG));
                    let (ca, ca_key) = pki::files(pki, tls::AUTHORITY);
                    let (cert, key) = pki::files(pki, &tls::api_files(&m.name));
                    c.arg("--tls-cert-file").arg(cert).arg("--tls-private-key-file").arg(key);
                    c.arg("--client-ca-file").arg(&ca);
                    c.arg("--cluster-signing-cert-file").arg(ca).arg("--cluster-signing-key-file").arg(ca_key);
                }
                c.args(&self.server_args);
                c
            }
            Flavor::Etcd { binary } => {
                let peer = format!("http://{}", m.peer_addr);
                let client = format!("http://{}", m.client_addr);
                let mut c = Command::new(binary);
                c.args(["--name", &m.name])
                    .arg("--data-dir")
                    .arg(&m.data_dir)
                    .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                    .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                    .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", "raftsman-bench"]);
                c
            }
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        m.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// The admin kubeconfig member `i` writes into its data dir when it starts.
    pub fn kubeconfig(&self, i: usize) -> PathBuf {
        self.members[i].data_dir.join("admin.kubeconfig")
    }

    /// A kube client of member `i`'s API as the admin, with the kubeconfig it writes when it starts (waited
    /// for up to 30 s).
    pub async fn kube_client(&self, i: usize) -> Result<kube::Client, String> {
        let path = self.kubeconfig(i);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !path.exists() {
            if Instant::now() > deadline {
                return Err(format!("{} was not written within 30 s", path.display()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).map_err(|e| e.to_string())?;
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| e.to_string())?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// The node token file agents of this cluster join with (every member writes the same token).
    pub fn node_token_file(&self) -> PathBuf {
        self.members[0].data_dir.join("node-token")
    }

    /// A TLS client configuration that trusts the cluster authority and shows no certificate (health checks).
    pub fn anonymous_tls(&self) -> std::io::Result<std::sync::Arc<rustls::ClientConfig>> {
        tls::client_config(self.authority()?.cert_pem().as_bytes(), None).map_err(std::io::Error::other)
    }

    /// The cluster authority (raftsman members only), to issue clients' certificates with.
    pub fn authority(&self) -> std::io::Result<pki::Authority> {
        let pki = self.pki.as_ref().ok_or_else(|| std::io::Error::other("an etcd cluster has no authority"))?;
        pki::Authority::load(pki, tls::AUTHORITY).map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal to member `i`; for Kill it also reaps the process.
    pub fn signal(&mut self, i: usize, signal: Signal) {
        let Some(pid) = self.pid(i) else { return };
        // SAFETY: kill(2) on a child we spawned and have not yet reaped; no memory is shared.
        unsafe {
            libc::kill(pid as libc::pid_t, signal.number());
        }
        if signal == Signal::Kill {
            if let Some(mut c) = self.members[i].child.take() {
                let _ = c.wait();
            }
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether the exit status was success.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> bool {
        self.signal(i, Signal::Term);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.members[i].child = None;
                    return status.success();
                }
            } else {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(i, Signal::Kill);
        false
    }

    /// CPU time member `i` has used so far (user and system), from /proc.
    pub fn cpu_secs(&self, i: usize) -> Option<f64> {
        process_cpu_secs(self.pid(i)?)
    }

    /// Resident memory of member `i` in bytes, from /proc.
    pub fn rss_bytes(&self, i: usize) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i)?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// The encryption configuration of a local cluster, in its pki directory.
pub const ENCRYPTION_CONFIG: &str = "encryption.yaml";

/// The name of member `name`'s peer certificate files.
pub fn peer_files(name: &str) -> String {
    format!("{name}-peer")
}

/// Makes (or reuses) the peer authority and the cluster authority in `pki`, and issues each member a peer
/// certificate for its peer address and an API certificate for its API address (and `localhost`); makes the
/// encryption configuration (a random key for Secrets) unless it is there; returns `pki`.
fn make_pki(pki: &Path, members: &[LocalMember]) -> std::io::Result<PathBuf> {
    let failed = |e: pki::PkiError| std::io::Error::other(e.to_string());
    let peers = pki::Authority::load_or_create(pki, peer::AUTHORITY, peer::AUTHORITY_NAME).map_err(failed)?;
    let cluster = pki::Authority::load_or_create(pki, tls::AUTHORITY, tls::AUTHORITY_NAME).map_err(failed)?;
    for m in members {
        let issued =
            peers.issue(&m.name, &[], &[m.peer_addr.ip().to_string()], pki::Usage::ServerAndClient).map_err(failed)?;
        pki::save(pki, &peer_files(&m.name), &issued).map_err(failed)?;
        let hosts = [m.api_addr.ip().to_string(), "localhost".to_owned()];
        let issued =
            cluster.issue(API_SERVER_USER, &[MASTERS_GROUP], &hosts, pki::Usage::ServerAndClient).map_err(failed)?;
        pki::save(pki, &tls::api_files(&m.name), &issued).map_err(failed)?;
    }
    let config = pki.join(ENCRYPTION_CONFIG);
    if !config.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&config)?;
        file.write_all(encryption::generate_config("key1").as_bytes())?;
        file.sync_all()?;
    }
    Ok(pki.to_owned())
}

/// CPU time a process has used so far (user and system), from `/proc/PID/stat`.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a configuration value and has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_sec > 0).then(|| ticks as f64 / per_sec as f64)
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.signal(i, Signal::Cont);
            self.signal(i, Signal::Kill);
        }
    }
}
