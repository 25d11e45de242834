//! What replicas and agents serve at `/metrics`, read after real work: every replica says it has a leader and
//! exactly one says it leads, with one term; the leader counts the writes it proposed and synced; the API
//! counts kubectl's requests by verb, resource and code (and never a resource it does not serve); the
//! controllers' queues, reconciles and the scheduler's attempts are counted on the leader; the agent counts
//! the pods of its node, to the API servers only.

mod harness;

use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};
use raftsman::apiserver::http::ReplicaClient;
use raftsman::security::{pki, tls};

/// The value of the sample `name` (labels included, as written) in `text`; None if absent.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of the family `name` whose labels contain each of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_agents_serve_what_they_did_in_prometheus_text() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, leader).await;
    let agent = Agent::fake(&cluster, "fake-1", &[]);
    k.ok(&["create", "configmap", "counted", "--from-literal=a=b"]);
    k.ok(&["run", "web", "--image=busybox", "--restart=Never"]);
    eventually(Duration::from_secs(30), "the pod running", || async {
        (k.json(&["get", "pod", "web"])["status"]["phase"] == "Running").then_some(())
    })
    .await;
    // A path naming nothing the API serves is refused, and named in no label.
    assert!(k.fails(&["get", "--raw", "/apis/made.up/v1/inventions"]).contains("NotFound"));

    let mut leading = 0.0;
    let mut terms = Vec::new();
    for i in 0..3 {
        let text = Kubectl::for_replica(&cluster, i).await.ok(&["get", "--raw", "/metrics"]);
        assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0), "replica {i}:\n{text}");
        assert!(sample(&text, "etcd_server_leader_changes_seen_total").unwrap() >= 1.0, "{text}");
        leading += sample(&text, "etcd_server_is_leader").unwrap();
        terms.push(sample(&text, "raftsman_raft_term").unwrap());
        assert!(sample(&text, "raftsman_raft_applied_index").unwrap() > 10.0, "{text}");
        assert!(sample(&text, "etcd_disk_wal_fsync_duration_seconds_count").unwrap() > 0.0, "{text}");
        assert!(sample(&text, "raftsman_store_apply_duration_seconds_count").unwrap() > 0.0, "{text}");
        assert!(sample(&text, "etcd_mvcc_db_total_size_in_bytes").unwrap() > 0.0, "{text}");
        assert!(!text.contains("inventions") && !text.contains("made.up"), "{text}");
        if i != leader {
            continue;
        }
        assert!(sample(&text, "etcd_server_proposals_committed_total").unwrap() > 10.0, "{text}");
        assert!(sample(&text, "raftsman_store_proposal_duration_seconds_count").unwrap() > 10.0, "{text}");
        let created =
            sum(&text, "apiserver_request_total", &[r#"verb="POST""#, r#"resource="configmaps""#, r#"code="201""#]);
        assert!(created >= 1.0, "{text}");
        assert!(
            sum(&text, "apiserver_request_total", &[r#"verb="GET""#, r#"resource="pods""#, r#"code="200""#]) >= 1.0
        );
        assert!(
            sum(&text, "apiserver_request_duration_seconds_count", &[r#"verb="POST""#, r#"resource="pods""#]) >= 1.0
        );
        assert!(sum(&text, "apiserver_request_total", &[r#"resource="""#, r#"code="404""#]) >= 1.0, "{text}");
        // The leader's controllers watch, and work their queues.
        assert!(sum(&text, "apiserver_longrunning_requests", &[r#"verb="WATCH""#]) >= 5.0, "{text}");
        assert!(sum(&text, "workqueue_adds_total", &[]) > 0.0, "{text}");
        assert!(sum(&text, "controller_runtime_reconcile_total", &[r#"result="success""#]) > 0.0, "{text}");
        assert!(sum(&text, "scheduler_schedule_attempts_total", &[r#"result="scheduled""#]) >= 1.0, "{text}");
    }
    assert_eq!(leading, 1.0, "one leader");
    assert!(terms.windows(2).all(|w| w[0] == w[1]), "one term: {terms:?}");

    // The agent's kubelet endpoint serves its metrics to an API server's certificate.
    let node = k.json(&["get", "node", "fake-1"]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap();
    let read = |name: &str| {
        let (cert, key) = pki::files(&cluster.local.pki, name);
        (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    };
    let (ca, _) = read(tls::AUTHORITY);
    let (cert, key) = read(&tls::api_files("n1"));
    let as_api = ReplicaClient::new(5_000, 1, Some(tls::client_config(&ca, Some((&cert, &key))).unwrap()));
    let scrape = || async {
        let uri = as_api.uri(&format!("127.0.0.1:{port}"), "/metrics").unwrap();
        let answer = as_api.request(http::Request::get(uri).body(Default::default()).unwrap()).await.unwrap();
        assert_eq!(answer.status(), 200);
        let body = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let text = eventually(Duration::from_secs(20), "the agent's pod counted", || async {
        let text = scrape().await;
        (sample(&text, r#"kubelet_running_pods{node="fake-1"}"#) == Some(1.0)).then_some(text)
    })
    .await;
    assert!(text.contains("# TYPE kubelet_running_pods gauge\n"), "{text}");
    drop(agent);
}
