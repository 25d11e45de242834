//! `raftsman agent` with the fake runtime against a three-replica cluster: it registers its node (Ready, its
//! Lease renewed), runs the pods bound to it with the status Kubernetes reports, finishes deleted pods, serves
//! many fake nodes from one process, and carries on when the replica it talks to, or the leader, is SIGKILLed:
//! its next request goes elsewhere within a second, and its pod watch neither misses nor repeats a pod. A late
//! status of a finished pod never lands on a new pod of its name.
//! Pods are bound by creating them with `spec.nodeName` set.

mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use raftsman::cluster::local::Signal;
use serde_json::json;

use harness::agent::Agent;
use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};

fn pod(name: &str, node: &str, command: &[&str], restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": command}],
        }
    }))
    .unwrap()
}

/// Creates `pod` until the API acknowledges it (an AlreadyExists after an unknown outcome means it was).
async fn create(api: &Api<Pod>, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap();
    eventually(Duration::from_secs(30), &format!("pod {name} created"), || async {
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => Some(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Some(()),
            Err(_) => None,
        }
    })
    .await;
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn node_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until pod `name` satisfies `done`; returns it.
async fn wait_pod(api: &Api<Pod>, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    eventually(Duration::from_secs(30), &format!("pod {name} {what}"), || async {
        api.get_opt(name).await.ok().flatten().filter(|p| done(p))
    })
    .await
}

async fn wait_node_ready(nodes: &Api<Node>, name: &str) -> Node {
    eventually(Duration::from_secs(30), &format!("node {name} Ready"), || async {
        nodes.get_opt(name).await.ok().flatten().filter(node_ready)
    })
    .await
}

async fn renew_time(leases: &Api<Lease>, name: &str) -> Option<jiff::Timestamp> {
    let lease = leases.get_opt(name).await.ok()??;
    lease.spec?.renew_time.map(|t| t.0)
}

/// How often the agent started each pod's containers (attempt 0), by pod name.
fn starts(agent: &Agent) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in agent.logged("fake runtime: container started") {
        *counts.entry(line["pod"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fake_agent_registers_its_node_runs_finishes_and_deletes_pods() {
    let cluster = TestCluster::start(3).await;
    let follower = (cluster.leader().await + 1) % 3;
    let client = harness::kube_client(&cluster, follower).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    // Phase 1: the agent registers its node, Ready, with the flags' labels and taints and a fixed size.
    let agent = Agent::fake(
        &cluster,
        "n1",
        &["--node-labels", "zone=a", "--register-with-taints", "dedicated=infra:PreferNoSchedule"],
    );
    let node = wait_node_ready(&nodes, "n1").await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("n1"));
    assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
    assert!(labels.contains_key("kubernetes.io/arch"));
    assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
    let taints = node.spec.clone().unwrap_or_default().taints.unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "dedicated" && t.value.as_deref() == Some("infra") && t.effect == "PreferNoSchedule"),
        "{taints:?}"
    );
    let status = node.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
    assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "32");
    let addresses: Vec<(String, String)> =
        status.addresses.unwrap().into_iter().map(|a| (a.type_, a.address)).collect();
    assert_eq!(addresses, vec![("InternalIP".into(), "127.0.0.1".into()), ("Hostname".into(), "n1".into())]);
    assert!(status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port > 0);

    // Phase 2: its Lease is held and renewed (every 10 s).
    let first = eventually(Duration::from_secs(20), "the node lease", || renew_time(&leases, "n1")).await;
    let lease = leases.get("n1").await.unwrap();
    let spec = lease.spec.clone().unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_duration_seconds), (Some("n1"), Some(40)));
    assert_eq!(lease.metadata.owner_references.unwrap()[0].name, "n1");
    eventually(Duration::from_secs(20), "the lease renewed", || async {
        renew_time(&leases, "n1").await.filter(|t| *t > first)
    })
    .await;

    // Phase 3: a pod bound to the node runs, with the status Kubernetes reports.
    create(&pods, &pod("web", "n1", &["sleep", "3600"], "Always")).await;
    let web = wait_pod(&pods, "web", "Running and Ready", |p| {
        phase(p) == Some("Running") && condition(p, "Ready").as_deref() == Some("True")
    })
    .await;
    for kind in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        assert_eq!(condition(&web, kind).as_deref(), Some("True"), "{kind}");
    }
    let status = web.status.clone().unwrap();
    let main = &status.container_statuses.as_ref().unwrap()[0];
    assert!(main.state.as_ref().unwrap().running.is_some());
    assert!(main.ready && main.started == Some(true) && main.restart_count == 0);
    assert_eq!(main.image, "busybox:1.36");
    assert!(!main.image_id.is_empty());
    assert!(main.container_id.as_deref().is_some_and(|id| id.starts_with("fake://")));
    assert!(status.start_time.is_some());
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let pod_ip = status.pod_ip.clone().expect("a pod IP");
    let kubectl = Kubectl::for_replica(&cluster, follower).await;
    let wide = kubectl.ok(&["get", "pods", "-o", "wide"]);
    let row = wide.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("no row for web:\n{wide}"));
    for column in ["1/1", "Running", "n1", pod_ip.as_str()] {
        assert!(row.split_whitespace().any(|c| c == column), "{column} missing from {row:?}");
    }

    // Phase 4: containers that exit end their pods as restartPolicy says.
    create(&pods, &pod("fail", "n1", &["sh", "-c", "exit 3"], "Never")).await;
    create(&pods, &pod("done", "n1", &["exit", "0"], "Never")).await;
    create(&pods, &pod("crash", "n1", &["sh", "-c", "exit 1"], "Always")).await;
    let fail = wait_pod(&pods, "fail", "Failed", |p| phase(p) == Some("Failed")).await;
    let ended = fail.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((ended.exit_code, ended.reason.as_deref()), (3, Some("Error")));
    let done = wait_pod(&pods, "done", "Succeeded", |p| phase(p) == Some("Succeeded")).await;
    let ended = done.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((ended.exit_code, ended.reason.as_deref()), (0, Some("Completed")));
    let crash = wait_pod(&pods, "crash", "in CrashLoopBackOff", |p| {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        statuses.first().and_then(|s| s.state.clone()).and_then(|s| s.waiting).and_then(|w| w.reason).as_deref()
            == Some("CrashLoopBackOff")
    })
    .await;
    let main = crash.status.unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!(main.restart_count, 1, "the first restart is at once, the second waits");
    let message = main.state.unwrap().waiting.unwrap().message.unwrap();
    assert!(message.starts_with("back-off 10s restarting failed container=main pod=crash_default("), "{message}");
    assert_eq!(main.last_state.unwrap().terminated.unwrap().exit_code, 1);

    // Phase 5: a deleted pod is finished by the agent (stopped, then removed), long before its 30 s grace.
    let deleted_at = Instant::now();
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(15), "web to disappear", || async {
        matches!(pods.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
    eprintln!("a deleted pod disappeared {:?} after its deletion", deleted_at.elapsed());
    assert_eq!(starts(&agent).get("web"), Some(&1), "web started exactly once");

    // A status of the finished web, written late, does not land on a new pod of the same name.
    let old_uid = web.metadata.uid.clone().unwrap();
    let mut late = web.status.clone().unwrap();
    late.phase = Some("Succeeded".into());
    create(&pods, &pod("web", "n2", &["sleep", "3600"], "Always")).await;
    let refused = raftsman::agent::pods::patch_status(&pods, "web", &old_uid, &late).await;
    assert!(matches!(&refused, Err(kube::Error::Api(e)) if e.code == 409), "{refused:?}");
    let new_web = pods.get("web").await.unwrap();
    assert_ne!(new_web.metadata.uid.as_deref(), Some(old_uid.as_str()));
    assert_ne!(new_web.status.and_then(|s| s.phase).as_deref(), Some("Succeeded"), "the late status landed");
    pods.delete("web", &DeleteParams::default()).await.unwrap();

    // Phase 6: one agent process serves many fake nodes, each with its lease and its pods.
    let _many = Agent::fake(&cluster, "f", &["--fake-nodes", "3", "--fake-capacity", "cpu=4,memory=8Gi,pods=20"]);
    for i in 0..3 {
        let node = wait_node_ready(&nodes, &format!("f-{i}")).await;
        assert_eq!(node.status.unwrap().capacity.unwrap()["memory"].0, "8Gi");
        let name = format!("f-{i}");
        eventually(Duration::from_secs(20), "the fake node's lease", || renew_time(&leases, &name)).await;
    }
    create(&pods, &pod("on-f2", "f-2", &["sleep", "3600"], "Always")).await;
    let on_f2 = wait_pod(&pods, "on-f2", "Running", |p| phase(p) == Some("Running")).await;
    assert_eq!(on_f2.spec.unwrap().node_name.as_deref(), Some("f-2"));
    assert!(!starts(&agent).contains_key("on-f2"), "only the agent of f-2 runs it");
}

/// Whether replica `addr` answers `/readyz` with 200 (over TLS, trusting the cluster authority).
async fn ready(cluster: &TestCluster, addr: SocketAddr) -> bool {
    let tls = harness::api::tls_as(&cluster.local, None);
    raftsman::agent::balancer::probe(addr, Some(tls)).await == raftsman::agent::balancer::Health::Ready
}

/// Kills replica `victim` while pods bound to `agent`'s node are created through `survivor`; returns how long
/// the agent took to send its requests elsewhere, and how long the first pod created after the kill took to run.
async fn kill_while_creating(
    cluster: &mut TestCluster,
    victim: usize,
    survivor: usize,
    agent: &Agent,
    prefix: &str,
) -> (Duration, Duration) {
    let victim_addr = cluster.local.members[victim].api_addr;
    assert_eq!(agent.current_server(), Some(victim_addr), "the agent talks to the replica about to be killed");
    let pods: Api<Pod> = Api::default_namespaced(harness::kube_client(cluster, survivor).await);
    create(&pods, &pod(&format!("{prefix}-before"), &agent.node_name, &["sleep", "3600"], "Always")).await;

    cluster.local.signal(victim, Signal::Kill);
    let killed = Instant::now();
    let names: Vec<String> = (0..8).map(|i| format!("{prefix}-{i}")).collect();
    let creating = {
        let (pods, node, names) = (pods.clone(), agent.node_name.clone(), names.clone());
        tokio::spawn(async move {
            for name in &names {
                create(&pods, &pod(name, &node, &["sleep", "3600"], "Always")).await;
            }
        })
    };
    let switched = eventually(Duration::from_secs(5), "the agent to leave the killed replica", || async {
        agent.current_server().filter(|s| *s != victim_addr).map(|_| killed.elapsed())
    })
    .await;
    let first_running = {
        let pods = pods.clone();
        wait_pod(&pods, &names[0], "Running", |p| phase(p) == Some("Running")).await;
        killed.elapsed()
    };
    creating.await.unwrap();
    for name in names.iter().chain([&format!("{prefix}-before")]) {
        let p = wait_pod(&pods, name, "Running", |p| phase(p) == Some("Running")).await;
        assert_eq!(p.status.unwrap().container_statuses.unwrap()[0].restart_count, 0, "{name}");
    }

    // The killed replica comes back for the next round.
    cluster.local.start(victim).unwrap();
    eventually(Duration::from_secs(30), "the killed replica to be ready again", || async {
        ready(cluster, victim_addr).await.then_some(())
    })
    .await;
    (switched, first_running)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_carries_on_when_its_replica_or_the_leader_is_killed() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let addr = |i: usize| cluster.local.members[i].api_addr;
    // Each agent talks to the first replica it is given while that one stays ready.
    let mut on_follower =
        Agent::start(&cluster, &[addr(follower), addr(other), addr(leader)], "via-follower", &["--runtime", "fake"]);
    let mut on_leader =
        Agent::start(&cluster, &[addr(leader), addr(follower), addr(other)], "via-leader", &["--runtime", "fake"]);
    let admin = harness::kube_client(&cluster, other).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    wait_node_ready(&nodes, "via-follower").await;
    wait_node_ready(&nodes, "via-leader").await;
    let first_picked =
        || on_follower.current_server() == Some(addr(follower)) && on_leader.current_server() == Some(addr(leader));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first_picked() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !first_picked() {
        for agent in [&on_follower, &on_leader] {
            let balancer = agent.log_lines().into_iter().filter(|l| l["target"] == "raftsman::agent::balancer");
            balancer.for_each(|line| eprintln!("{}: {line}", agent.node_name));
        }
        panic!("the agents did not pick their first replicas within 10 s");
    }

    // Phase 1: SIGKILL the follower one agent talks to.
    let (switched, running) = kill_while_creating(&mut cluster, follower, other, &on_follower, "f").await;
    eprintln!("follower killed: the agent sent its requests elsewhere after {switched:?}; a pod created after the kill ran after {running:?}");
    assert!(switched < Duration::from_secs(1), "the agent left the killed follower after {switched:?}");

    // Phase 2: SIGKILL the leader the other agent talks to.
    let leader_killed = jiff::Timestamp::now();
    let (switched, running) = kill_while_creating(&mut cluster, leader, other, &on_leader, "l").await;
    eprintln!("leader killed: the agent sent its requests elsewhere after {switched:?}; a pod created after the kill ran after {running:?}");
    assert!(switched < Duration::from_secs(1), "the agent left the killed leader after {switched:?}");

    // Phase 3: every pod was started exactly once, and the pod watches resumed without listing again.
    for agent in [&on_follower, &on_leader] {
        let starts = starts(agent);
        assert_eq!(starts.len(), 9, "{}: {starts:?}", agent.node_name);
        assert!(starts.values().all(|n| *n == 1), "{}: {starts:?}", agent.node_name);
        assert_eq!(agent.logged("agent: listing the pods").len(), 1, "{}: the pod watch re-listed", agent.node_name);
    }

    // Phase 4: both nodes stay Ready and keep renewing their leases through the surviving replicas.
    let leases: Api<Lease> = Api::namespaced(admin, "kube-node-lease");
    for agent in [&on_follower, &on_leader] {
        eventually(Duration::from_secs(20), "a lease renewed after the leader was killed", || async {
            renew_time(&leases, &agent.node_name).await.filter(|t| *t > leader_killed)
        })
        .await;
        assert!(node_ready(&nodes.get(&agent.node_name).await.unwrap()));
    }

    // Phase 5: no replica answers for a while: the agents keep what they run, and once the replicas are back
    // nothing was started again.
    let before = (starts(&on_follower), starts(&on_leader));
    for i in 0..3 {
        cluster.local.signal(i, Signal::Kill);
    }
    // Nothing to poll for: what is checked is that nothing happens while the replicas are gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(on_follower.is_running() && on_leader.is_running(), "the agents survive the loss of every replica");
    for i in 0..3 {
        cluster.local.start(i).unwrap();
    }
    cluster.leader().await;
    let pods: Api<Pod> = Api::default_namespaced(harness::kube_client(&cluster, other).await);
    for name in before.0.keys().chain(before.1.keys()) {
        let p = wait_pod(&pods, name, "Running after the restart", |p| phase(p) == Some("Running")).await;
        assert_eq!(p.status.unwrap().container_statuses.unwrap()[0].restart_count, 0, "{name}");
    }
    assert_eq!((starts(&on_follower), starts(&on_leader)), before, "nothing started again");
}
