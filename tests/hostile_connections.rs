//! Hostile and heavy connections against real replicas: half-sent TLS handshakes on the Kubernetes API, half-sent
//! HTTP/2 prefaces and silent sockets on the other ports, more of them than the replica has file descriptors, and
//! thousands of Kubernetes watches on a follower. The replica stays up, keeps its store's files, serves new
//! clients, closes what overstays its limits, and returns to its baseline of descriptors and memory.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::cluster::listen::ConnectionCaps;
use raftsman::cluster::local::{Flavor, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use harness::api::ApiStream;
use harness::eventually;

/// Replicas started under a chosen open-file limit (a shell that sets it, then execs the binary, so the pid
/// is the replica's).
struct Cluster {
    local: LocalCluster,
    clients: Vec<EtcdClient>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn layout(size: usize, open_files: Option<u64>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let raftsman = env!("CARGO_BIN_EXE_raftsman");
        let binary = match open_files {
            None => raftsman.into(),
            Some(n) => {
                use std::os::unix::fs::PermissionsExt;
                let script = dir.path().join("raftsman-limited");
                std::fs::write(&script, format!("#!/bin/sh\nulimit -n {n} || exit 111\nexec '{raftsman}' \"$@\"\n"))
                    .unwrap();
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
                script
            }
        };
        let local = LocalCluster::new(Flavor::Raftsman { binary }, dir.path(), size, None).expect("layout");
        let clients = local.etcd_clients().expect("etcd clients");
        Cluster { local, clients, _dir: dir }
    }

    async fn start(size: usize, open_files: Option<u64>) -> Cluster {
        let mut cluster = Cluster::layout(size, open_files);
        cluster.local.start_all().expect("start replicas");
        cluster.leader().await;
        cluster
    }

    /// The index of the leader the replicas agree on (waits up to 20 s).
    async fn leader(&self) -> usize {
        eventually(Duration::from_secs(20), "a leader", || async {
            let mut ids = Vec::new();
            let mut leader = None;
            for c in &self.clients {
                let s = c.status().await.ok();
                ids.push(s.as_ref().and_then(|s| s.header.as_ref()).map(|h| h.member_id));
                leader = leader.or(s.map(|s| s.leader).filter(|l| *l != 0));
            }
            ids.iter().position(|id| *id == leader && leader.is_some())
        })
        .await
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.local.members[i].log).unwrap_or_default()
    }

    fn open_fds(&self, i: usize) -> usize {
        let pid = self.local.pid(i).expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
    }

    fn rss_mib(&self, i: usize) -> u64 {
        self.local.rss_bytes(i).unwrap_or(0) / (1024 * 1024)
    }
}

/// Raises this test process's soft open-file limit to its hard limit (it holds thousands of sockets).
fn raise_own_open_files() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// A replica's Kubernetes API, reached as the admin.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Api {
    fn of(c: &Cluster, i: usize) -> Api {
        Api { addr: c.local.members[i].api_addr, tls: harness::api::admin_tls(&c.local) }
    }
}

/// One HTTP/1.1 GET on a new connection; the status code, or None when the connection was refused,
/// closed or did not answer within `timeout`.
async fn http_status(api: &Api, path: &str, timeout: Duration) -> Option<u16> {
    tokio::time::timeout(timeout, async { http_request(api, "GET", path, "").await.map(|(status, _)| status) })
        .await
        .ok()
        .flatten()
}

/// Sends one request on a new connection and reads the response head; returns the status and the open
/// connection (a watch keeps streaming on it).
async fn http_request(api: &Api, method: &str, path: &str, body: &str) -> Option<(u16, ApiStream)> {
    let mut s = harness::api::connect_with(api.addr, api.tls.clone()).await.ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: raftsman\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let status = std::str::from_utf8(&head).ok()?.split(' ').nth(1)?.parse().ok()?;
    Some((status, s))
}

/// The start of a TLS handshake record announcing 512 bytes that never come: the API's half-sent header.
const HALF_SENT_CLIENT_HELLO: [u8; 5] = [0x16, 0x03, 0x01, 0x02, 0x00];

/// Opens up to `count` connections to `addr`, sending `first_bytes` on each, and keeps them. Stops early
/// when connecting keeps failing (a full backlog) or after 20 s.
async fn open_hostile(addr: SocketAddr, count: usize, first_bytes: &[u8]) -> Vec<Hostile> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = Vec::with_capacity(count);
    let mut failures = 0;
    while open.len() < count && failures < 20 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await {
            Ok(Ok(mut s)) => {
                if !first_bytes.is_empty() {
                    let _ = s.write_all(first_bytes).await;
                }
                open.push(Hostile { tcp: s, closed: false });
            }
            _ => failures += 1,
        }
    }
    open
}

/// A hostile connection as the client sees it: whether the server closed it.
struct Hostile {
    tcp: TcpStream,
    closed: bool,
}

impl Hostile {
    /// Reads what has arrived without waiting; returns whether the server has closed the connection.
    fn look(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        while !self.closed {
            match self.tcp.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Ok(0) | Err(_) => self.closed = true,
                Ok(_) => {}
            }
        }
        self.closed
    }
}

fn still_open(conns: &mut [Hostile]) -> usize {
    conns.iter_mut().map(|h| usize::from(!h.look())).sum()
}

/// Polls until the server has closed every connection, or `timeout`; returns how many are still open.
async fn wait_closed(conns: &mut [Hostile], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let open = still_open(conns);
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A put and a get on a new etcd client connection to `c`'s first replica, within `timeout`.
async fn fresh_etcd_round_trip(c: &Cluster, key: &str, timeout: Duration) -> Option<()> {
    let work = async {
        let client = c.local.etcd_client(0).ok()?;
        client.put(key, "v").await.ok()?;
        let got = client.get(key, false).await.ok()?;
        (got.count == 1).then_some(())
    };
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// What one flood did to the replica.
#[derive(Debug)]
struct Flood {
    opened: (usize, usize, usize),
    fds_peak: usize,
    rss_peak_mib: u64,
}

/// More half-open connections than the replica has descriptors: half-sent TLS handshakes on the API port and
/// the etcd client port, silent sockets on the peer port. Checks what the
/// replica does while they are open and until it has closed them all.
async fn flood(c: &mut Cluster, open_files: u64) -> Flood {
    let member = &c.local.members[0];
    let (client, peer) = (member.client_addr, member.peer_addr);
    let api = Api::of(c, 0);
    let mut hostile_api = open_hostile(api.addr, 3000, &HALF_SENT_CLIENT_HELLO).await;
    let mut hostile_client = open_hostile(client, 1500, &HALF_SENT_CLIENT_HELLO).await;
    let mut hostile_peer = open_hostile(peer, 200, b"").await;
    let opened = (hostile_api.len(), hostile_client.len(), hostile_peer.len());
    let fds_peak = c.open_fds(0);
    let rss_peak_mib = c.rss_mib(0);

    // While they are open, the replica runs, keeps descriptors for its store, keeps serving the connections
    // it had, and closes what is over each port's cap at once.
    let caps = ConnectionCaps::fit(open_files).expect("caps fit");
    assert!(c.local.is_running(0), "the replica exited:\n{}", c.log(0));
    assert!(
        fds_peak <= caps.open_files() && fds_peak + 256 <= open_files as usize,
        "the replica holds {fds_peak} of its {open_files} descriptors (caps {caps:?}, opened {opened:?})"
    );
    let existing = &c.clients[0];
    existing.put("during", "v").await.expect("a connection opened before the flood is still served");
    assert_eq!(existing.get("during", false).await.expect("read").count, 1);
    assert_eq!(http_status(&api, "/api/v1/namespaces/default", Duration::from_secs(5)).await, None);
    let open = eventually(Duration::from_secs(5), "the excess closed at once", || {
        let open = (still_open(&mut hostile_api), still_open(&mut hostile_client), still_open(&mut hostile_peer));
        let within = open.0 <= caps.api && open.1 < caps.client && open.2 <= caps.peer;
        async move { within.then_some(open) }
    })
    .await;
    assert!(open.0 > 0 && open.1 > 0, "connections under the cap wait for their deadline: {open:?}");

    // New clients are served again once the deadlines have freed the ports; by then the replica has closed
    // every hostile connection.
    let timeout = Duration::from_secs(25);
    eventually(timeout, "a new etcd client served", || fresh_etcd_round_trip(c, "new", Duration::from_secs(2))).await;
    let served = eventually(timeout, "a new kubernetes api client served", || async {
        http_status(&api, "/api/v1/namespaces/default", Duration::from_secs(2)).await.filter(|s| *s == 200)
    })
    .await;
    assert_eq!(served, 200);
    let open = (
        wait_closed(&mut hostile_api, timeout).await,
        wait_closed(&mut hostile_client, timeout).await,
        wait_closed(&mut hostile_peer, timeout).await,
    );
    assert_eq!(open, (0, 0, 0), "hostile connections the replica never closed");
    Flood { opened, fds_peak, rss_peak_mib }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_silent_sockets_cannot_exhaust_a_replica() {
    const OPEN_FILES: u64 = 4096;
    raise_own_open_files();
    let mut c = Cluster::start(1, Some(OPEN_FILES)).await;
    let api = Api::of(&c, 0);

    // Phase 1: a warm baseline.
    eventually(Duration::from_secs(20), "the kubernetes api", || async {
        (http_status(&api, "/api/v1/namespaces/default", Duration::from_secs(2)).await == Some(200)).then_some(())
    })
    .await;
    assert!(fresh_etcd_round_trip(&c, "warm", Duration::from_secs(5)).await.is_some());
    let (fds_before, rss_before) = (c.open_fds(0), c.rss_mib(0));

    // Phase 2: two floods, one after the other.
    let first = flood(&mut c, OPEN_FILES).await;
    let fds_between = eventually(Duration::from_secs(10), "descriptors back to the baseline", || async {
        let n = c.open_fds(0);
        (n <= fds_before + 8).then_some(n)
    })
    .await;
    let rss_between = c.rss_mib(0);
    let second = flood(&mut c, OPEN_FILES).await;

    // Phase 3: descriptors return to the baseline, memory stays bounded.
    let fds_after = eventually(Duration::from_secs(10), "descriptors back to the baseline", || async {
        let n = c.open_fds(0);
        (n <= fds_before + 8).then_some(n)
    })
    .await;
    // Memory returns near the baseline too, once the allocator has given it back (`cluster::memory`).
    let rss_after = eventually(Duration::from_secs(30), "memory back near the baseline", || async {
        let rss = c.rss_mib(0);
        (rss <= rss_before + 32).then_some(rss)
    })
    .await;
    eprintln!(
        "opened {:?} then {:?}; fds before {fds_before}, peak {}, between {fds_between}, peak {}, after {fds_after}; \
         rss MiB before {rss_before}, peak {}, between {rss_between}, peak {}, after {rss_after}",
        first.opened, second.opened, first.fds_peak, second.fds_peak, first.rss_peak_mib, second.rss_peak_mib
    );
    assert!(fresh_etcd_round_trip(&c, "after", Duration::from_secs(5)).await.is_some());
    assert_eq!(http_status(&api, "/api/v1/namespaces/default", Duration::from_secs(5)).await, Some(200));
}

/// (term, leader) as each replica reports it.
async fn raft_views(c: &Cluster) -> Vec<Option<(u64, u64)>> {
    let mut views = Vec::new();
    for client in &c.clients {
        let status = tokio::time::timeout(Duration::from_secs(2), client.status()).await.ok().and_then(Result::ok);
        views.push(status.map(|s| (s.raft_term, s.leader)));
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_watches_on_a_follower_do_not_move_leadership() {
    const WATCHES: usize = 2000;
    raise_own_open_files();
    let c = Cluster::start(3, None).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let (leader_api, follower_api) = (Api::of(&c, leader), Api::of(&c, follower));

    // Phase 1: some objects for the watches' initial lists, and the Raft view before the load.
    eventually(Duration::from_secs(20), "the kubernetes api", || async {
        (http_status(&follower_api, "/api/v1/namespaces/default", Duration::from_secs(2)).await == Some(200))
            .then_some(())
    })
    .await;
    let value = "x".repeat(5 * 1024);
    for i in 0..100 {
        let body = format!(r#"{{"metadata":{{"name":"cm-{i}"}},"data":{{"v":"{value}"}}}}"#);
        let created = http_request(&leader_api, "POST", "/api/v1/namespaces/default/configmaps", &body).await;
        assert_eq!(created.map(|(status, _)| status), Some(201));
    }
    let before = raft_views(&c).await;
    let (term, leader_id) = before[leader].expect("the leader answers");
    assert!(before.iter().all(|v| *v == Some((term, leader_id))), "replicas disagree before the load: {before:?}");

    // Phase 2: open the watches on the follower (each ends by itself after 30 s) while writes go on through the
    // leader; watch the term and the leader throughout.
    let rss_before = c.rss_mib(follower);
    let path = "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=30";
    // Each watch reads its stream until the replica ends it or the test drops the tasks.
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel(WATCHES);
    let mut watches = tokio::task::JoinSet::new();
    for _ in 0..WATCHES {
        let (opened_tx, follower_api) = (opened_tx.clone(), follower_api.clone());
        watches.spawn(async move {
            let answer = http_request(&follower_api, "GET", path, "").await;
            let _ = opened_tx.send(answer.as_ref().map_or(0, |(status, _)| *status)).await;
            drop(opened_tx);
            let Some((_, mut stream)) = answer else { return };
            let mut buf = vec![0u8; 16 * 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        });
    }
    drop(opened_tx);
    let opening = async {
        // Each watch reports once, then lets go of its sender: the channel ends when all have answered.
        let mut opened = 0;
        while let Some(status) = opened_rx.recv().await {
            opened += usize::from(status == 200);
        }
        opened
    };
    let observing = async {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut i = 0;
        while Instant::now() < deadline {
            let body = format!(r#"{{"metadata":{{"name":"load-{i}"}},"data":{{"v":"{i}"}}}}"#);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http_request(&leader_api, "POST", "/api/v1/namespaces/default/configmaps", &body),
            )
            .await;
            i += 1;
            seen.push(raft_views(&c).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    let (opened, seen) = tokio::join!(opening, observing);
    let rss_peak = c.rss_mib(follower);
    let views: Vec<(u64, u64)> = seen.iter().flatten().flatten().copied().collect();
    let terms: std::collections::BTreeSet<u64> = views.iter().map(|(t, _)| *t).collect();
    let leaders: std::collections::BTreeSet<u64> = views.iter().map(|(_, l)| *l).filter(|l| *l != 0).collect();
    let reset_guard = c.log(follower).matches("reached limit").count();
    eprintln!(
        "watches opened {opened}/{WATCHES}; term before {term}, terms seen {terms:?}, leaders seen {leaders:?}; \
         follower rss MiB before {rss_before} peak {rss_peak}; reset-guard log lines {reset_guard}"
    );
    assert_eq!(opened, WATCHES, "every watch opens");
    assert_eq!(terms.into_iter().collect::<Vec<_>>(), vec![term], "the term moved under watch load");
    assert_eq!(leaders.into_iter().collect::<Vec<_>>(), vec![leader_id], "leadership moved under watch load");
    assert_eq!(reset_guard, 0, "the follower's peer server took the leader's heartbeats for an attack");
    drop(watches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_to_start_when_its_open_file_limit_cannot_hold_the_store_and_its_clients() {
    let mut c = Cluster::layout(1, Some(700));
    c.local.start(0).expect("spawn");
    let exited = eventually(Duration::from_secs(20), "the replica to exit", || {
        let running = c.local.is_running(0);
        async move { (!running).then_some(()) }
    });
    exited.await;
    let log = c.log(0);
    assert!(log.contains("open-file limit is 700"), "the replica did not say why it refused to start:\n{log}");
}
