//! What reaches a replica's peer port and the heaviest valid writes cannot crash, wedge or brick it: crafted
//! Raft messages (implausible terms, senders that are not members, inconsistent entries, forged snapshots),
//! forwarded commands beyond the client limits, and concurrent writes of 1 MB through a follower. Each test
//! checks the refusal it expects, that the replica is still up, and that the cluster still commits.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use harness::api::HttpsClient;
use harness::{eventually, put_retrying, TestCluster};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::{EntryPayload, Membership, StoredMembership};
use raftsman::cluster::local::Signal;
use raftsman::proto::etcd as pb;
use raftsman::proto::peer::raft_peer_client::RaftPeerClient;
use raftsman::proto::peer::{RaftMessage, SnapshotChunk};
use raftsman::store::command::{Command, KeyRange, PutOp, RequestOp, TxnOp};
use raftsman::store::network::CLUSTER_HEADER;
use raftsman::store::network::{decode, encode, LeaderRequest, LeaderResponse, SnapshotHeader};
use raftsman::store::types::{Entry, LogId, RaftNode, SnapshotMeta, TypeConfig, Vote};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// Says, on every request, that it comes from a replica of the cluster with this id.
#[derive(Clone)]
struct FromCluster(Option<u64>);

impl Interceptor for FromCluster {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(cluster) = self.0 {
            request.metadata_mut().insert(CLUSTER_HEADER, format!("{cluster:x}").parse().unwrap());
        }
        Ok(request)
    }
}

type PeerClient = RaftPeerClient<InterceptedService<Channel, FromCluster>>;

/// A client of replica `i`'s peer port that speaks as a replica of `cluster` (None: says nothing).
async fn peer_client_of(c: &TestCluster, i: usize, cluster: Option<u64>) -> PeerClient {
    let channel = harness::peer::member_channel(c, i).await;
    RaftPeerClient::with_interceptor(channel, FromCluster(cluster))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// A client of replica `i`'s peer port that speaks as a replica of the same cluster.
async fn peer_client(c: &TestCluster, i: usize) -> PeerClient {
    let cluster = c.clients[i].status().await.expect("status").header.expect("header").cluster_id;
    peer_client_of(c, i, Some(cluster)).await
}

/// Member ids by index, as every replica reports them.
async fn ids(c: &TestCluster) -> Vec<u64> {
    c.member_ids().await.into_iter().map(|id| id.expect("every replica answers")).collect()
}

async fn term_and_revision(c: &TestCluster, i: usize) -> (u64, i64) {
    let s = c.clients[i].status().await.expect("status");
    (s.raft_term, s.header.map_or(0, |h| h.revision))
}

/// `term_and_revision` once the leader's controllers have made their bootstrap writes (system namespaces, their
/// accounts, priority classes, the `kubernetes` Service): the first value that holds for 1.5 s.
async fn settled_term_and_revision(c: &TestCluster, i: usize) -> (u64, i64) {
    let mut last = term_and_revision(c, i).await;
    let mut same_since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while same_since.elapsed() < Duration::from_millis(1500) {
        assert!(std::time::Instant::now() < deadline, "the cluster never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = term_and_revision(c, i).await;
        if now != last {
            (last, same_since) = (now, std::time::Instant::now());
        }
    }
    last
}

/// The replica is still running, and the cluster still commits a write through it.
async fn still_serving(c: &mut TestCluster, i: usize, key: &str) {
    assert!(c.local.is_running(i), "replica {i} exited; its log:\n{}", c.log(i));
    put_retrying(&c.clients[i], key, "after", Duration::from_secs(10)).await.expect("the cluster still commits");
}

fn refused(status: tonic::Status) -> String {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "expected a refusal, got {status:?}");
    status.message().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_raft_messages_are_refused_and_change_nothing() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let ids = ids(&c).await;
    let (term, revision) = settled_term_and_revision(&c, follower).await;
    let mut peer = peer_client(&c, follower).await;

    // A well-formed vote from a replica of another cluster, and from a sender that does not say its cluster.
    let cluster = c.clients[follower].status().await.unwrap().header.unwrap().cluster_id;
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(term + 1, ids[leader]), None);
    let mut other_cluster = peer_client_of(&c, follower, Some(cluster ^ 1)).await;
    let msg = refused(other_cluster.vote(RaftMessage { payload: encode(&vote) }).await.unwrap_err());
    assert!(msg.contains("belongs to cluster"), "{msg}");
    let mut unnamed = peer_client_of(&c, follower, None).await;
    let msg = refused(unnamed.vote(RaftMessage { payload: encode(&vote) }).await.unwrap_err());
    assert!(msg.contains("did not say its cluster"), "{msg}");

    // A vote with the largest term, as part of a leadership transfer: once granted, it wrapped the term and
    // panicked every replica on every restart.
    let mut vote = VoteRequest::<TypeConfig>::new(Vote::new(u64::MAX, ids[leader]), None);
    vote.leadership_transfer = true;
    let msg = refused(peer.vote(RaftMessage { payload: encode(&vote) }).await.unwrap_err());
    assert!(msg.contains("implausible term"), "{msg}");

    // A vote and appends from a node that is not a member.
    let stranger = 0x5eed;
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(term + 1, stranger), None);
    let msg = refused(peer.vote(RaftMessage { payload: encode(&vote) }).await.unwrap_err());
    assert!(msg.contains("not a member"), "{msg}");
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term + 1, stranger),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let msg = refused(peer.append_entries(RaftMessage { payload: encode(&append) }).await.unwrap_err());
    assert!(msg.contains("not a member"), "{msg}");

    // Entries that do not follow one another, and entries from a term above the sender's.
    let put = |key: &str| Command::Put(PutOp { key: key.into(), value: b"forged".to_vec(), ..PutOp::default() });
    let entry = |term: u64, index: u64| Entry {
        log_id: LogId::new_term_index(term, index),
        payload: EntryPayload::Normal(put("forged")),
    };
    let gap = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, ids[leader]),
        prev_log_id: Some(LogId::new_term_index(term, 1)),
        entries: vec![entry(term, 2), entry(term, 9)],
        leader_commit: None,
    };
    let msg = refused(peer.append_entries(RaftMessage { payload: encode(&gap) }).await.unwrap_err());
    assert!(msg.contains("does not follow"), "{msg}");
    let ahead = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, ids[leader]),
        prev_log_id: Some(LogId::new_term_index(term + 5, 1)),
        entries: Vec::new(),
        leader_commit: Some(LogId::new_term_index(u64::MAX, u64::MAX)),
    };
    let msg = refused(peer.append_entries(RaftMessage { payload: encode(&ahead) }).await.unwrap_err());
    assert!(msg.contains("above the sender's term"), "{msg}");

    // A leadership transfer to a node that is not a member.
    let transfer = TransferLeaderRequest::<TypeConfig>::new(Vote::new_committed(term, ids[leader]), stranger, None);
    let msg = refused(peer.transfer_leader(RaftMessage { payload: encode(&transfer) }).await.unwrap_err());
    assert!(msg.contains("not a member"), "{msg}");

    // Nothing moved: same term, no forged key, and the cluster commits through the replica.
    assert_eq!(term_and_revision(&c, follower).await, (term, revision));
    still_serving(&mut c, follower, "after-crafted-raft").await;
    assert!(c.clients[follower].get("forged", true).await.unwrap().kvs.is_empty());
    assert_eq!(c.leader().await, leader, "no election was forced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_snapshot_is_checked_before_anything_is_replaced() {
    let mut c = TestCluster::start(3).await;
    put_retrying(&c.clients[0], "kept", "value", Duration::from_secs(10)).await.unwrap();
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let ids = ids(&c).await;
    let (term, revision) = settled_term_and_revision(&c, follower).await;

    let nodes: BTreeMap<u64, RaftNode> = ids
        .iter()
        .zip(&c.local.members)
        .map(|(id, m)| (*id, RaftNode { name: m.name.clone(), peer_addr: m.peer_addr.to_string() }))
        .collect();
    let membership = Membership::new(vec![ids.iter().copied().collect::<BTreeSet<_>>()], nodes).unwrap();
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new_term_index(term, 1_000_000)),
        last_membership: StoredMembership::new(Some(LogId::new_term_index(term, 0)), membership),
    };
    let header = encode(&SnapshotHeader { vote: Vote::new_committed(term, ids[leader]), meta });
    for (what, body) in [
        ("garbage", b"this is not a snapshot at all, it is garbage of some length".repeat(100)),
        ("empty", Vec::new()),
        ("a zeroed trailer", vec![0u8; 4096]),
    ] {
        let mut peer = peer_client(&c, follower).await;
        let chunks = vec![SnapshotChunk { header: header.clone(), data: body }];
        let status = peer.install_snapshot(futures::stream::iter(chunks)).await.unwrap_err();
        let msg = refused(status);
        assert!(msg.contains("snapshot"), "{what}: {msg}");
    }

    assert!(c.local.is_running(follower), "the replica exited on a forged snapshot:\n{}", c.log(follower));
    assert_eq!(term_and_revision(&c, follower).await, (term, revision), "nothing was replaced");
    let kept = c.clients[follower].get("kept", true).await.unwrap();
    assert_eq!(kept.kvs[0].value, b"value");
    still_serving(&mut c, follower, "after-forged-snapshot").await;
}

/// The bincode bytes of `LeaderRequest::Propose(Command::Txn(..))` with `depth` transactions nested in
/// each other's success branch: written by hand, since encoding such a value would itself recurse that deep.
fn nested_txn_request(depth: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0u32.to_le_bytes()); // LeaderRequest::Propose
    b.extend_from_slice(&2u32.to_le_bytes()); // Command::Txn
    for _ in 0..depth {
        b.extend_from_slice(&0u64.to_le_bytes()); // no compares
        b.extend_from_slice(&1u64.to_le_bytes()); // one success op
        b.extend_from_slice(&3u32.to_le_bytes()); // RequestOp::Txn
    }
    b.extend_from_slice(&[0u8; 24]); // the innermost txn: empty compare, success and failure
    for _ in 0..depth {
        b.extend_from_slice(&0u64.to_le_bytes()); // empty failure branch
    }
    b
}

async fn forward(peer: &mut PeerClient, payload: Vec<u8>) -> Result<LeaderResponse, tonic::Status> {
    let reply = peer.forward(RaftMessage { payload }).await?.into_inner();
    Ok(decode(&reply.payload).expect("a forward reply decodes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_get_the_limits_of_client_requests() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let ids = ids(&c).await;
    let (_, revision) = settled_term_and_revision(&c, leader).await;
    let mut peer = peer_client(&c, leader).await;

    // Nested 3,300 deep (92 KB): it overflowed the stack of the replica that decoded it.
    let status = forward(&mut peer, nested_txn_request(3300)).await.unwrap_err();
    assert!(status.message().contains("nested deeper"), "{status:?}");
    // One level beyond the transaction limit is refused by the same bound.
    let status = forward(&mut peer, nested_txn_request(5)).await.unwrap_err();
    assert!(status.message().contains("nested deeper"), "{status:?}");

    let put = |key: Vec<u8>| PutOp { key, value: b"v".to_vec(), ..PutOp::default() };
    let many: Vec<RequestOp> = (0..10_000).map(|i| RequestOp::Put(put(format!("k{i}").into_bytes()))).collect();
    let twice = vec![RequestOp::Put(put(b"same".to_vec())), RequestOp::Put(put(b"same".to_vec()))];
    let cases: Vec<(&str, Command, &str)> = vec![
        ("a 100 KB key", Command::Put(put(vec![b'k'; 100_000])), "key is too large"),
        ("an empty key", Command::Put(put(Vec::new())), "key is not provided"),
        ("a 10,000-op txn", Command::Txn(TxnOp { success: many, ..TxnOp::default() }), "too many operations"),
        ("a key written twice", Command::Txn(TxnOp { success: twice, ..TxnOp::default() }), "duplicate key"),
        (
            "a delete of an empty key",
            Command::Delete(raftsman::store::command::DeleteOp { range: KeyRange::default(), prev_kv: false }),
            "key is not provided",
        ),
        ("a negative lease id", Command::LeaseGrant { id: -5, ttl: 60 }, "lease id must be positive"),
        ("a negative ttl", Command::LeaseGrant { id: 77, ttl: -1 }, "lease ttl must be between"),
        ("an endless ttl", Command::LeaseGrant { id: 78, ttl: i64::MAX }, "lease ttl must be between"),
        (
            "another member's address",
            Command::PublishMember {
                id: ids[(leader + 1) % 3],
                name: "mallory".into(),
                client_addr: "127.0.0.1:1".into(),
                api_addr: "127.0.0.1:2".into(),
            },
            "is named",
        ),
        (
            "a stranger's address",
            Command::PublishMember {
                id: 0x5eed,
                name: "mallory".into(),
                client_addr: "127.0.0.1:1".into(),
                api_addr: "127.0.0.1:2".into(),
            },
            "not a member",
        ),
    ];
    for (what, command, expected) in cases {
        match forward(&mut peer, encode(&LeaderRequest::Propose(command))).await {
            Ok(LeaderResponse::Refused(msg)) => assert!(msg.contains(expected), "{what}: {msg}"),
            other => panic!("{what} was not refused: {other:?}"),
        }
    }

    // Nothing was written, the member list is as it was, and the leader still serves.
    assert_eq!(term_and_revision(&c, leader).await.1, revision);
    let log = c.log(leader);
    assert!(!log.contains("panicked"), "the leader panicked:\n{log}");
    still_serving(&mut c, leader, "after-forwarded").await;
    for (i, client) in c.clients.iter().enumerate() {
        let members =
            client.cluster().member_list(pb::MemberListRequest::default()).await.unwrap().into_inner().members;
        assert!(members.iter().all(|m| m.name != "mallory"), "member {i}: {members:?}");
        assert!(members.iter().all(|m| !m.client_ur_ls.iter().any(|u| u.ends_with(":1"))), "member {i}: {members:?}");
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

/// Sends `request` and returns the HTTP status once the whole answer is read.
async fn http_status(client: &HttpsClient, request: http::Request<Body>) -> u16 {
    use http_body_util::BodyExt;
    let response = client.request(request).await.expect("the API answers");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Creates a ConfigMap holding 1,000,000 bytes in `default` through the Kubernetes API at `api`; returns the
/// HTTP status.
async fn post_config_map(client: HttpsClient, api: std::net::SocketAddr, name: String) -> u16 {
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"blob": "x".repeat(1_000_000)},
    });
    let request = http::Request::post(format!("https://{api}/api/v1/namespaces/default/configmaps"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    http_status(&client, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_one_megabyte_writes_through_a_follower_never_stop_the_cluster() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let value = vec![b'x'; 1_000_000];
    let api = c.local.members[follower].api_addr;
    let client = harness::api::https_client(&c);
    eventually(Duration::from_secs(20), "the follower's API to be ready", || async {
        let ready = http::Request::get(format!("https://{api}/readyz")).body(Default::default()).unwrap();
        (http_status(&client, ready).await == 200).then_some(())
    })
    .await;

    // Eight concurrent writes of 1 MB through a follower, under a stream of small writes through the leader:
    // each large write either commits or fails with a retryable error.
    let small = {
        let client = c.clients[leader].clone();
        tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..200 {
                if client.put(format!("small-{i}"), "v").await.is_err() {
                    failed += 1;
                }
            }
            failed
        })
    };
    let large: Vec<_> = (0..8)
        .map(|i| {
            let client = c.clients[follower].clone();
            let value = value.clone();
            tokio::spawn(async move { client.put(format!("large-{i}"), value).await })
        })
        .collect();
    // Six ConfigMaps of 1 MB through the same follower's Kubernetes API, as a Helm release Secret would be.
    let config_maps: Vec<_> =
        (0..6).map(|i| tokio::spawn(post_config_map(client.clone(), api, format!("big-{i}")))).collect();
    let mut committed = Vec::new();
    for (i, write) in large.into_iter().enumerate() {
        match write.await.unwrap() {
            Ok(_) => committed.push(i),
            Err(e) => assert_eq!(e.code(), tonic::Code::Unavailable, "large-{i}: {e:?}"),
        }
    }
    let mut created = 0;
    for (i, write) in config_maps.into_iter().enumerate() {
        let status = write.await.unwrap();
        assert!(status == 201 || status == 503, "ConfigMap big-{i}: HTTP {status}");
        created += usize::from(status == 201);
    }
    assert!(created > 0 && !committed.is_empty(), "no large write went through");
    // Later ConfigMap writes through the follower succeed.
    eventually(Duration::from_secs(10), "a ConfigMap write through the follower", || async {
        (post_config_map(client.clone(), api, "after-large".into()).await == 201).then_some(())
    })
    .await;
    let small_failed = small.await.unwrap();
    assert!(small_failed < 200, "no small write went through");

    // The cluster keeps committing, through every replica, and every replica catches up on every large value.
    let started = Instant::now();
    for round in 0..3 {
        for i in 0..3 {
            still_serving(&mut c, i, &format!("later-{round}-{i}")).await;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30), "later writes took {:?}", started.elapsed());
    for i in 0..3 {
        eventually(Duration::from_secs(20), "every replica holds every committed large value", || async {
            for k in &committed {
                let got = c.clients[i].get(format!("large-{k}"), true).await.ok()?;
                if got.kvs.first().map(|kv| kv.value.len()) != Some(1_000_000) {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
    // No follower is left behind, as the leader sees it.
    let status = c.clients[c.leader().await].status().await.unwrap();
    assert!(status.errors.is_empty(), "{:?}", status.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_a_follower_it_cannot_replicate_to() {
    let mut c = TestCluster::start(3).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let name = c.local.members[follower].name.clone();

    c.local.signal(follower, Signal::Stop);
    for i in 0..5 {
        put_retrying(&c.clients[leader], &format!("while-stopped-{i}"), "v", Duration::from_secs(10)).await.unwrap();
    }
    let errors = eventually(Duration::from_secs(15), "the leader to report the stopped follower", || async {
        let s = c.clients[leader].status().await.ok()?;
        (!s.errors.is_empty()).then_some(s.errors)
    })
    .await;
    assert!(errors.iter().any(|e| e.contains("cannot replicate") && e.contains(&name)), "{errors:?}");

    c.local.signal(follower, Signal::Cont);
    eventually(Duration::from_secs(15), "the report to clear once the follower catches up", || async {
        c.clients[leader].status().await.ok().filter(|s| s.errors.is_empty())
    })
    .await;
}
