//! Mutual TLS on the peer port, against real replicas: each forged peer message (appends from a non-member, an
//! empty snapshot, a leadership transfer, a vote, a forwarded write) is refused before any handler sees it when
//! the sender has no TLS, no client certificate, or a certificate from another authority, while the same
//! messages with the cluster's peer certificate reach the handlers; nothing moves. A replica whose certificate comes from another
//! authority neither sends nor receives Raft traffic, and catches up once it has the cluster's. Reissued
//! certificates and a replaced authority are taken by running replicas, on both gRPC ports. `raftsman certs`
//! makes what a replica needs, and a replica without peer TLS flags refuses to start.

mod harness;

use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use raftsman::cluster::local::Signal;
use raftsman::proto::peer::raft_peer_client::RaftPeerClient;
use raftsman::proto::peer::{RaftMessage, SnapshotChunk};
use raftsman::security::{peer, pki};
use raftsman::store::command::{Command, PutOp};
use raftsman::store::network::{encode, peer_request, LeaderRequest, SnapshotHeader};
use raftsman::store::types::{LogId, SnapshotMeta, TypeConfig, Vote};

use harness::peer::Credentials;
use harness::{eventually, put_retrying, TestCluster};

/// Term, revision and leader as replica `i` reports them.
async fn state(c: &TestCluster, i: usize) -> (u64, i64, u64) {
    let s = c.clients[i].status().await.expect("status");
    (s.raft_term, s.header.map_or(0, |h| h.revision), s.leader)
}

/// The forged messages: appends from a non-member, a snapshot (empty) from one, a leadership transfer to one, a
/// vote for one, and a write forwarded as if from a replica.
const FORGED: [&str; 5] = ["append", "snapshot", "transfer", "vote", "forward"];

/// What became of a forged message.
#[derive(Debug)]
enum Outcome {
    /// A handler answered it with this refusal.
    Refused(tonic::Status),
    /// It never reached a handler: the connection failed (a refused handshake, a TLS alert read as HTTP/2).
    Unreached(String),
}

/// Sends forged message `kind` to replica `i` with `credentials` (a message that was accepted fails the test).
async fn send_forged(c: &TestCluster, i: usize, credentials: Credentials, kind: &str) -> Outcome {
    let status = c.clients[i].status().await.expect("status");
    let (cluster, term) = (status.header.expect("header").cluster_id, status.raft_term);
    let stranger = 0x5eed;
    let message = |payload: Vec<u8>| peer_request(RaftMessage { payload }, cluster);
    let channel = match harness::peer::endpoint(c, i, credentials).connect().await {
        Ok(channel) => channel,
        Err(e) => return Outcome::Unreached(format!("cannot connect: {e:?}")),
    };
    let mut client = RaftPeerClient::new(channel);
    let sent = match kind {
        "append" => {
            let append = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(term + 1, stranger),
                prev_log_id: None,
                entries: Vec::new(),
                leader_commit: None,
            };
            client.append_entries(message(encode(&append))).await
        }
        "snapshot" => {
            let meta =
                SnapshotMeta { last_log_id: Some(LogId::new_term_index(term + 1, 1_000_000)), ..Default::default() };
            let header = SnapshotHeader { vote: Vote::new_committed(term + 1, stranger), meta };
            let chunk = SnapshotChunk { header: encode(&header), data: Vec::new() };
            client.install_snapshot(peer_request(futures::stream::iter(vec![chunk]), cluster)).await
        }
        "transfer" => {
            let transfer =
                TransferLeaderRequest::<TypeConfig>::new(Vote::new_committed(term, stranger), stranger, None);
            client.transfer_leader(message(encode(&transfer))).await
        }
        "vote" => {
            client.vote(message(encode(&VoteRequest::<TypeConfig>::new(Vote::new(term + 1, stranger), None)))).await
        }
        _ => {
            let put = PutOp { key: b"/registry/forged".to_vec(), value: b"not json".to_vec(), ..PutOp::default() };
            client.forward(message(encode(&LeaderRequest::Propose(Command::Put(put))))).await
        }
    };
    let status = sent.map(drop).expect_err(kind);
    let source = std::error::Error::source(&status);
    match source.and_then(|s| s.downcast_ref::<tonic::transport::Error>()) {
        Some(transport) => Outcome::Unreached(format!("{transport:?}")),
        None => Outcome::Refused(status),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_peer_messages_without_the_clusters_certificate_never_reach_a_replica() {
    let mut c = TestCluster::start(3).await;
    put_retrying(&c.clients[0], "kept", "value", Duration::from_secs(10)).await.unwrap();
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let before = state(&c, follower).await;

    for credentials in [Credentials::Plaintext, Credentials::NoCertificate, Credentials::OtherAuthority] {
        for kind in FORGED {
            match send_forged(&c, follower, credentials, kind).await {
                Outcome::Unreached(why) => eprintln!("{credentials:?} {kind}: stopped at the connection: {why}"),
                Outcome::Refused(status) => panic!("{credentials:?} {kind} reached a handler: {status:?}"),
            }
        }
    }
    // The same Raft messages with the cluster's peer certificate reach the handlers, which refuse them on their
    // merits (the connections above were refused for their credentials, not for what they carried).
    for kind in FORGED.iter().filter(|k| **k != "forward") {
        let outcome = send_forged(&c, follower, Credentials::Member, kind).await;
        let refused = matches!(&outcome, Outcome::Refused(status) if status.code() == tonic::Code::InvalidArgument);
        assert!(refused, "{kind}: {outcome:?}");
    }

    assert!(c.local.is_running(follower), "{}", c.log(follower));
    let after = state(&c, follower).await;
    assert_eq!((after.0, after.2), (before.0, before.2), "no term moved and no leader changed");
    assert_eq!(c.clients[follower].get("kept", true).await.unwrap().kvs[0].value, b"value");
    assert!(c.clients[leader].get("/registry/forged", true).await.unwrap().kvs.is_empty(), "no forwarded write");
    put_retrying(&c.clients[follower], "after", "ok", Duration::from_secs(10)).await.expect("the cluster commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_certificate_of_another_authority_is_cut_off_until_it_has_the_clusters() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let outsider = (leader + 1) % 3;
    let pki_dir = c.local.pki.clone();
    let name = c.local.members[outsider].name.clone();
    let files = raftsman::security::peer::files(&name);
    let (cert_path, key_path) = pki::files(&pki_dir, &files);
    let genuine = pki::Issued {
        cert_pem: std::fs::read_to_string(cert_path).unwrap(),
        key_pem: std::fs::read_to_string(key_path).unwrap(),
    };

    // The outsider restarts with a certificate of its name and address from another authority.
    c.local.stop(outsider, Duration::from_secs(10));
    let other = pki::Authority::create(peer::AUTHORITY_NAME).unwrap();
    let forged = other.issue(&name, &[], &["127.0.0.1".into()], pki::Usage::ServerAndClient).unwrap();
    pki::save(&pki_dir, &files, &forged).unwrap();
    c.local.start(outsider).unwrap();
    let insiders: Vec<usize> = (0..3).filter(|i| *i != outsider).collect();
    let (term, ..) = state(&c, leader).await;
    for i in 0..20 {
        put_retrying(&c.clients[leader], &format!("k{i}"), "v", Duration::from_secs(10)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader_state = state(&c, leader).await;
    assert_eq!(leader_state.0, term, "the outsider's elections never reached the cluster");
    for i in &insiders {
        assert_eq!(state(&c, *i).await.0, term);
    }
    let outsider_state = state(&c, outsider).await;
    assert!(outsider_state.1 < leader_state.1, "the outsider got no entries: {outsider_state:?} vs {leader_state:?}");
    assert_ne!(outsider_state.2, leader_state.2, "the outsider never heard from the leader");

    // With the cluster's certificate again, it catches up.
    c.local.signal(outsider, Signal::Kill);
    pki::save(&pki_dir, &files, &genuine).unwrap();
    c.local.start(outsider).unwrap();
    put_retrying(&c.clients[insiders[0]], "last", "v", Duration::from_secs(10)).await.unwrap();
    eventually(Duration::from_secs(30), "the outsider to catch up", || async {
        c.clients[outsider].get("last", true).await.ok().filter(|r| !r.kvs.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftsman_certs_makes_what_a_replica_needs_and_a_replica_without_peer_tls_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_raftsman");
    let pki_dir = dir.path().join("pki");
    let ports = raftsman::cluster::local::free_ports(3).unwrap();
    let [peer, client, api] = [0, 1, 2].map(|i| format!("127.0.0.1:{}", ports[i]));
    let server = |extra: &[&str]| {
        let mut command = std::process::Command::new(binary);
        command
            .args(["server", "--name", "n1", "--peer-addr", &peer, "--client-addr", &client, "--api-addr", &api])
            .arg("--data-dir")
            .arg(dir.path().join("n1"))
            .args(extra);
        command
    };

    let out = server(&[]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--peer-trusted-ca-file") && stderr.contains("--insecure-peer"), "{stderr}");
    assert!(!dir.path().join("n1").exists(), "nothing was written");

    let certs = |args: &[&str]| {
        let out =
            std::process::Command::new(binary).arg("certs").args(args).arg("--dir").arg(&pki_dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    certs(&["peer-ca"]);
    let authority = std::fs::read(pki_dir.join("peer-ca.crt")).unwrap();
    certs(&["peer-ca"]);
    assert_eq!(std::fs::read(pki_dir.join("peer-ca.crt")).unwrap(), authority, "an existing authority is kept");
    certs(&["peer", "--name", "n1", "--host", "127.0.0.1"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pki_dir.join("n1-peer.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");

    let tls: Vec<String> = [
        ("--peer-trusted-ca-file", "peer-ca.crt"),
        ("--peer-cert-file", "n1-peer.crt"),
        ("--peer-key-file", "n1-peer.key"),
    ]
    .iter()
    .flat_map(|(flag, file)| [flag.to_string(), pki_dir.join(file).display().to_string()])
    .collect();
    let mut tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    tls.push("--insecure-api");
    let mut replica = server(&tls).stderr(std::process::Stdio::null()).spawn().unwrap();
    let etcd = raftsman::cluster::etcd_client::EtcdClient::new(&format!("http://{client}")).unwrap();
    eventually(Duration::from_secs(20), "the replica to serve", || async { etcd.put("k", "v").await.ok() }).await;
    // Its peer port speaks TLS with the certificate made for it.
    let ca = tonic::transport::Certificate::from_pem(authority);
    let tls_config = tonic::transport::ClientTlsConfig::new().ca_certificate(ca);
    let handshake =
        tonic::transport::Endpoint::from_shared(format!("https://{peer}")).unwrap().tls_config(tls_config).unwrap();
    assert!(handshake.connect().await.is_ok(), "the server's certificate is valid for its address");
    replica.kill().unwrap();
    replica.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_authorities_rotate_on_running_replicas() {
    use raftsman::security::{etcd, tls};
    let mut c = TestCluster::start(3).await;
    put_retrying(&c.clients[0], "before", "v", Duration::from_secs(10)).await.unwrap();
    let pki_dir = c.local.pki.clone();
    let peer_addrs: Vec<std::net::SocketAddr> = c.local.members.iter().map(|m| m.peer_addr).collect();
    let (old, new) = (harness::peer::authority(&c), pki::Authority::create(peer::AUTHORITY_NAME).unwrap());
    let tester = |ca: &pki::Authority| ca.issue("tester", &[], &[], pki::Usage::ServerAndClient).unwrap();
    let (old_tester, new_tester) = (tester(&old), tester(&new));
    let leaf = |issued: &pki::Issued| tls::certificates(issued.cert_pem.as_bytes(), "leaf").unwrap()[0].to_vec();
    let served = |i: usize, authority: String, shown: pki::Issued| {
        let addr = peer_addrs[i];
        async move { harness::peer::served_certificate(addr, &authority, &shown).await }
    };

    // The replicas trust both authorities and get certificates of the new one, without a restart.
    let trusted = pki::files(&pki_dir, peer::AUTHORITY).0;
    pki::write(&trusted, &format!("{}{}", old.cert_pem(), new.cert_pem()), 0o644).unwrap();
    let mut reissued = Vec::new();
    for m in &c.local.members {
        let issued = new.issue(&m.name, &[], &[m.peer_addr.ip().to_string()], pki::Usage::ServerAndClient).unwrap();
        pki::save(&pki_dir, &peer::files(&m.name), &issued).unwrap();
        reissued.push(leaf(&issued));
    }
    for (i, reissued) in reissued.iter().enumerate() {
        let shown = eventually(Duration::from_secs(10), "the replica to serve its new certificate", || async {
            served(i, new.cert_pem().to_owned(), new_tester.clone()).await.ok()
        })
        .await;
        assert_eq!(&shown, reissued);
        let both = format!("{}{}", old.cert_pem(), new.cert_pem());
        assert!(served(i, both, old_tester.clone()).await.is_ok(), "a client of the old authority is still trusted");
    }

    // Then they trust only the new one.
    pki::write(&trusted, new.cert_pem(), 0o644).unwrap();
    for i in 0..3 {
        eventually(Duration::from_secs(10), "the old authority's clients to be refused", || async {
            served(i, new.cert_pem().to_owned(), old_tester.clone()).await.err()
        })
        .await;
        assert!(served(i, new.cert_pem().to_owned(), new_tester.clone()).await.is_ok());
    }

    // The replicas dial each other with what they have now: a follower restarted on the new certificates is
    // accepted by the two that were never restarted, and accepts them.
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    c.local.stop(follower, Duration::from_secs(10));
    c.local.start(follower).unwrap();
    put_retrying(&c.clients[leader], "after", "v", Duration::from_secs(10)).await.unwrap();
    eventually(Duration::from_secs(30), "the restarted follower to catch up", || async {
        c.clients[follower].get("after", true).await.ok().filter(|r| !r.kvs.is_empty())
    })
    .await;
    for i in (0..3).filter(|i| *i != follower) {
        assert!(c.local.is_running(i), "replica {i} ran throughout: {}", c.log(i));
    }

    // The etcd client port follows its certificate too.
    let etcd_authority = pki::Authority::load(&pki_dir, etcd::AUTHORITY).unwrap();
    let m = &c.local.members[0];
    let issued = etcd_authority.issue(&m.name, &[], &[m.client_addr.ip().to_string()], pki::Usage::ServerAndClient);
    let issued = issued.unwrap();
    pki::save(&pki_dir, &etcd::server_files(&m.name), &issued).unwrap();
    let client = tester(&etcd_authority);
    let client_addr = m.client_addr;
    let shown = eventually(Duration::from_secs(10), "the etcd port to serve its new certificate", || async {
        let shown = harness::peer::served_certificate(client_addr, etcd_authority.cert_pem(), &client).await.ok();
        shown.filter(|s| *s == leaf(&issued))
    })
    .await;
    assert_eq!(shown, leaf(&issued));
    put_retrying(&c.clients[0], "etcd", "v", Duration::from_secs(10)).await.expect("etcd clients still served");
}
