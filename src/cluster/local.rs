//! Local clusters of real processes on loopback: `raftsman up`, the benchmark and the integration tests.
//!
//! Each member is a child process with its own data dir and log file under one directory. Members of a
//! raftsman cluster run this project's binary, with mutual TLS between them, the etcd client port over TLS
//! with client certificates, the Kubernetes API over TLS with authentication, and Secrets encrypted at rest:
//! the peer authority, the etcd authority, the cluster authority and the encryption configuration are made in
//! `<dir>/pki` the first time (and kept, so that a restarted cluster keeps them), and each member gets a
//! fresh peer certificate, etcd certificate and API certificate there whenever the cluster is laid out, as
//! etcdctl gets an etcd client certificate (`etcd-client.crt`). Each member holds the cluster authority's key,
//! so it writes an admin kubeconfig and the node token into its data dir. Members of an etcd cluster run
//! Debian's `etcd` (3.4), with the same TLS on their client port, so that both can be driven side by side.
//! Dropping a `LocalCluster` kills whatever it still runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::etcd_client::EtcdClient;
use crate::security::authn::{API_SERVER_USER, MASTERS_GROUP};
use crate::security::mutual_tls::{self, TlsFiles};
use crate::security::{encryption, etcd, peer, pki, tls};

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
    /// The peer address a member added to the running cluster joins through (`add_member`); None for the
    /// initial members.
    pub join: Option<SocketAddr>,
    /// Environment variables its process gets (besides this process's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

pub struct LocalCluster {
    flavor: Flavor,
    pub members: Vec<LocalMember>,
    /// Where the authorities and the members' certificates are: for an etcd cluster, the etcd authority's
    /// alone.
    pub pki: PathBuf,
    /// The initial members' `--initial-cluster-token`: made the first time, kept in `<dir>/cluster-token`, so
    /// that every cluster laid out is a cluster of its own and a restarted one is the same cluster.
    token: String,
    /// Extra arguments for every raftsman member's `server` command.
    pub server_args: Vec<String>,
    /// Members get SIGTERM when the thread that starts them ends (`end_with_this_process`): for `up`, which
    /// starts them from its main thread.
    pub end_with_this_process: bool,
}

/// Where a local cluster keeps its `--initial-cluster-token`.
const TOKEN_FILE: &str = "cluster-token";

/// The token kept at `path`, made there the first time: none for a cluster `formed` before tokens were kept,
/// whose id came from its member list alone.
fn cluster_token(path: &Path, formed: bool) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = if formed { String::new() } else { format!("{:032x}", rand::random::<u128>()) };
            std::fs::write(path, format!("{token}\n"))?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
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
                join: None,
                env: Vec::new(),
                child: None,
            });
        }
        let pki = dir.join("pki");
        make_etcd_pki(&pki, &members)?;
        if let Flavor::Raftsman { .. } = flavor {
            make_pki(&pki, &members)?;
        }
        let formed = members.iter().any(|m| m.data_dir.join(super::server::IDENTITY_FILE).exists());
        let token = cluster_token(&dir.join(TOKEN_FILE), formed)?;
        Ok(LocalCluster { flavor, members, pki, token, server_args: Vec::new(), end_with_this_process: false })
    }

    /// The initial members (not those added later) as `--initial-cluster` lists them.
    pub fn initial_cluster(&self) -> String {
        let scheme = match self.flavor {
            Flavor::Raftsman { .. } => "",
            Flavor::Etcd { .. } => "http://",
        };
        let initial = self.members.iter().filter(|m| m.join.is_none());
        initial.map(|m| format!("{}={scheme}{}", m.name, m.peer_addr)).collect::<Vec<_>>().join(",")
    }

    /// Lays out a new raftsman member (its ports, data dir, certificates) that joins the running cluster through
    /// member `through`'s peer address when it starts; returns its index.
    pub fn add_member(&mut self, through: usize) -> std::io::Result<usize> {
        let ports = free_ports(3)?;
        let i = self.members.len();
        let name = format!("n{}", i + 1);
        let dir = self.pki.parent().expect("the pki dir is in the cluster's dir").to_path_buf();
        let member = LocalMember {
            peer_addr: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            client_addr: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            api_addr: SocketAddr::from(([127, 0, 0, 1], ports[2])),
            data_dir: dir.join(&name),
            log: dir.join(format!("{name}.log")),
            name,
            join: Some(self.members[through].peer_addr),
            env: Vec::new(),
            child: None,
        };
        make_etcd_pki(&self.pki, std::slice::from_ref(&member))?;
        make_pki(&self.pki, std::slice::from_ref(&member))?;
        self.members.push(member);
        Ok(i)
    }

    /// What an etcd client of this cluster shows and trusts: the etcd authority and the client certificate
    /// made for etcdctl (`--cacert`, `--cert`, `--key`).
    pub fn etcd_client_files(&self) -> TlsFiles {
        let (trusted_ca, _) = pki::files(&self.pki, etcd::AUTHORITY);
        let (cert, key) = pki::files(&self.pki, etcd::CLIENT_FILES);
        TlsFiles { trusted_ca, cert, key }
    }

    /// An etcd client of member `i`, over TLS with the etcdctl certificate.
    pub fn etcd_client(&self, i: usize) -> std::io::Result<EtcdClient> {
        self.dial_etcd(i, self.etcd_tls()?)
    }

    /// An etcd client of every member, in order.
    pub fn etcd_clients(&self) -> std::io::Result<Vec<EtcdClient>> {
        self.etcd_connections(self.members.len())
    }

    /// `count` etcd clients, each on a connection of its own, to the members in turn (the certificate files
    /// read once).
    pub fn etcd_connections(&self, count: usize) -> std::io::Result<Vec<EtcdClient>> {
        let tls = self.etcd_tls()?;
        (0..count).map(|c| self.dial_etcd(c % self.members.len(), tls.clone())).collect()
    }

    fn etcd_tls(&self) -> std::io::Result<tonic::transport::ClientTlsConfig> {
        mutual_tls::client_config(&self.etcd_client_files(), "etcd client").map_err(std::io::Error::other)
    }

    fn dial_etcd(&self, i: usize, tls: tonic::transport::ClientTlsConfig) -> std::io::Result<EtcdClient> {
        EtcdClient::with_tls(&format!("https://{}", self.members[i].client_addr), tls).map_err(std::io::Error::other)
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
                    .args(["--api-addr", &m.api_addr.to_string()]);
                match m.join {
                    Some(through) => c.args(["--join", &through.to_string()]),
                    None => c.args(["--initial-cluster", &initial]),
                };
                if m.join.is_none() && !self.token.is_empty() {
                    c.args(["--initial-cluster-token", &self.token]);
                }
                let pki = &self.pki;
                let (ca, _) = pki::files(pki, peer::AUTHORITY);
                let (cert, key) = pki::files(pki, &peer::files(&m.name));
                c.arg("--peer-trusted-ca-file").arg(ca).arg("--peer-cert-file").arg(cert);
                c.arg("--peer-key-file").arg(key);
                let (ca, _) = pki::files(pki, etcd::AUTHORITY);
                let (cert, key) = pki::files(pki, &etcd::server_files(&m.name));
                c.arg("--trusted-ca-file").arg(ca).arg("--cert-file").arg(cert).arg("--key-file").arg(key);
                c.arg("--encryption-provider-config").arg(pki.join(ENCRYPTION_CONFIG));
                let (ca, ca_key) = pki::files(pki, tls::AUTHORITY);
                let (cert, key) = pki::files(pki, &tls::api_files(&m.name));
                c.arg("--tls-cert-file").arg(cert).arg("--tls-private-key-file").arg(key);
                c.arg("--client-ca-file").arg(&ca);
                c.arg("--cluster-signing-cert-file").arg(ca).arg("--cluster-signing-key-file").arg(ca_key);
                c.args(&self.server_args);
                c
            }
            Flavor::Etcd { binary } => {
                let peer = format!("http://{}", m.peer_addr);
                let client = format!("https://{}", m.client_addr);
                let (ca, _) = pki::files(&self.pki, etcd::AUTHORITY);
                let (cert, key) = pki::files(&self.pki, &etcd::server_files(&m.name));
                let mut c = Command::new(binary);
                c.arg("--client-cert-auth").arg("--trusted-ca-file").arg(ca);
                c.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
                c.args(["--name", &m.name])
                    .arg("--data-dir")
                    .arg(&m.data_dir)
                    .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                    .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                    .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", &self.token]);
                c
            }
        };
        cmd.envs(m.env.iter().map(|(k, v)| (k, v)));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        if self.end_with_this_process {
            end_with_this_process(&mut cmd);
        }
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
        pki::Authority::load(&self.pki, tls::AUTHORITY).map_err(|e| std::io::Error::other(e.to_string()))
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
        self.stop_with_status(i, timeout).is_some_and(|status| status.success())
    }

    /// Stops member `i` as `stop` does; returns how it exited (None: it was not running, or had to be killed).
    pub fn stop_with_status(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        stop_child_with_status(&mut self.members[i].child.take()?, timeout)
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

/// Sends `child` SIGTERM and waits up to `timeout` for a clean exit, then kills it; returns whether it exited
/// cleanly with success.
pub fn stop_child(child: &mut Child, timeout: Duration) -> bool {
    stop_child_with_status(child, timeout).is_some_and(|status| status.success())
}

/// Sends `child` SIGTERM and waits up to `timeout` for it to exit; returns how it exited, or None if it had to
/// be killed.
pub fn stop_child_with_status(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) on a child we spawned and have not yet reaped; no memory is shared.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Makes the process `command` starts get SIGTERM when the thread that starts it ends (Linux's parent-death
/// signal), and exit at once if this process is already gone. Started from the main thread, the child ends
/// with this process however it ends (SIGKILL, a closed terminal); started from another thread, it would end
/// with that thread, which a runtime's worker may do at any time.
pub fn end_with_this_process(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec the hook calls only async-signal-safe functions (prctl, getppid) and
    // allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The encryption configuration of a local cluster, in its pki directory.
pub const ENCRYPTION_CONFIG: &str = "encryption.yaml";

fn pki_failed(e: pki::PkiError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Makes (or reuses) the etcd authority in `pki`, and issues each member an etcd certificate for its client
/// address (and `localhost`), and etcdctl its client certificate.
fn make_etcd_pki(pki: &Path, members: &[LocalMember]) -> std::io::Result<()> {
    let authority = pki::Authority::load_or_create(pki, etcd::AUTHORITY, etcd::AUTHORITY_NAME).map_err(pki_failed)?;
    for m in members {
        let hosts = [m.client_addr.ip().to_string(), "localhost".to_owned()];
        let issued = authority.issue(&m.name, &[], &hosts, pki::Usage::ServerAndClient).map_err(pki_failed)?;
        pki::save(pki, &etcd::server_files(&m.name), &issued).map_err(pki_failed)?;
    }
    let issued = authority.issue(etcd::CLIENT_FILES, &[], &[], pki::Usage::Client).map_err(pki_failed)?;
    pki::save(pki, etcd::CLIENT_FILES, &issued).map_err(pki_failed)
}

/// Makes (or reuses) the peer authority and the cluster authority in `pki`, and issues each member a peer
/// certificate for its peer address and an API certificate for its API address (and `localhost`); makes the
/// encryption configuration (a random key for Secrets) unless it is there.
fn make_pki(pki: &Path, members: &[LocalMember]) -> std::io::Result<()> {
    let peers = pki::Authority::load_or_create(pki, peer::AUTHORITY, peer::AUTHORITY_NAME).map_err(pki_failed)?;
    let cluster = pki::Authority::load_or_create(pki, tls::AUTHORITY, tls::AUTHORITY_NAME).map_err(pki_failed)?;
    for m in members {
        let issued = peers
            .issue(&m.name, &[], &[m.peer_addr.ip().to_string()], pki::Usage::ServerAndClient)
            .map_err(pki_failed)?;
        pki::save(pki, &peer::files(&m.name), &issued).map_err(pki_failed)?;
        let hosts = [m.api_addr.ip().to_string(), "localhost".to_owned()];
        let issued = cluster
            .issue(API_SERVER_USER, &[MASTERS_GROUP], &hosts, pki::Usage::ServerAndClient)
            .map_err(pki_failed)?;
        pki::save(pki, &tls::api_files(&m.name), &issued).map_err(pki_failed)?;
    }
    let config = pki.join(ENCRYPTION_CONFIG);
    if !config.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&config)?;
        file.write_all(encryption::generate_config("key1").as_bytes())?;
        file.sync_all()?;
    }
    Ok(())
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
