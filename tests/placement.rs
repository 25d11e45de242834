//! Pods from creation to Running on real agents: three `raftsman agent --runtime fake` and one
//! `--runtime process` against a three-replica cluster, driven by real kubectl through a follower. Placement
//! (spread, nodeSelector, taints and tolerations), a real process's output through `kubectl logs`, an
//! unschedulable pod that says why, a dead agent's pods evicted after their toleration and replaced elsewhere,
//! and a restarted process agent that keeps its processes.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::{follower, Kubectl};
use harness::{eventually, TestCluster};
use raftsman::apiserver::http::ReplicaClient;
use raftsman::security::tls;
use serde_json::Value;

/// The nodes kubectl lists as Ready, by name.
fn ready_nodes(k: &Kubectl) -> BTreeSet<String> {
    let nodes = k.json(&["get", "nodes"]);
    let ready = |n: &&Value| {
        let conditions = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(ready)
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_ready(k: &Kubectl, names: &[&str]) {
    let want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    eventually(Duration::from_secs(30), "the agents' nodes to be Ready", || async {
        ready_nodes(k).is_superset(&want).then_some(())
    })
    .await;
}

/// Where each pod of `pods` runs, once all are Running.
async fn running_on(k: &Kubectl, pods: &[String]) -> BTreeMap<String, String> {
    eventually(Duration::from_secs(30), "the pods to be Running", || async {
        let list = k.json(&["get", "pods"]);
        let mut placed = BTreeMap::new();
        for p in list["items"].as_array().unwrap() {
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            if pods.contains(&name) && p["status"]["phase"] == "Running" {
                placed.insert(name, p["spec"]["nodeName"].as_str().unwrap_or_default().to_string());
            }
        }
        (placed.len() == pods.len()).then_some(placed)
    })
    .await
}

fn pod_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: placed\nspec:\n  containers:\n  - name: app\n    image: registry.local/app:1\n    resources:\n      requests:\n        cpu: 100m\n{extra_spec}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_placed_by_their_constraints_and_a_process_pod_really_runs() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _f1 = Agent::fake(&cluster, "fake-1", &[]);
    let _f2 = Agent::fake(&cluster, "fake-2", &[]);
    let _gpu = Agent::fake(
        &cluster,
        "fake-gpu",
        &["--register-with-taints", "dedicated=gpu:NoSchedule", "--node-labels", "accelerator=gpu"],
    );
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let proc =
        Agent::start(&cluster, &servers, "proc-1", &["--runtime", "process", "--node-labels", "runtime=process"]);
    wait_ready(&k, &["fake-1", "fake-2", "fake-gpu", "proc-1"]).await;

    // Spread: plain pods land on the untainted nodes, never on the tainted one.
    let names: Vec<String> = (0..6).map(|i| format!("plain-{i}")).collect();
    for name in &names {
        k.ok(&["apply", "-f", &k.manifest(name, &pod_yaml(name, "  nodeSelector:\n    kubernetes.io/os: linux\n"))]);
    }
    let placed = running_on(&k, &names).await;
    assert!(!placed.values().any(|n| n == "fake-gpu"), "a NoSchedule taint keeps pods off: {placed:?}");
    // Least allocated: a fake node (32 cpus) is emptier after 100m than the process node (the host's cpus).
    let on = |node: &str| placed.values().filter(|n| *n == node).count();
    assert!(on("fake-1").abs_diff(on("fake-2")) <= 1, "spread evenly over the two big nodes: {placed:?}");
    assert!(on("fake-1") + on("fake-2") + on("proc-1") == 6, "{placed:?}");

    // nodeSelector and a toleration.
    let gpu = pod_yaml("gpu-job", "  nodeSelector:\n    accelerator: gpu\n  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: gpu\n    effect: NoSchedule\n");
    k.ok(&["apply", "-f", &k.manifest("gpu-job", &gpu)]);
    assert_eq!(running_on(&k, &["gpu-job".into()]).await["gpu-job"], "fake-gpu");

    // A pod on the process runtime runs its command; its output comes back through the follower.
    k.ok(&[
        "run",
        "echo",
        "--image=busybox",
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"runtime":"process"}}}"#,
        "--",
        "sh",
        "-c",
        "echo hello from a real process; sleep 300",
    ]);
    assert_eq!(running_on(&k, &["echo".into()]).await["echo"], "proc-1");
    eventually(Duration::from_secs(20), "the process's output in kubectl logs", || async {
        let out = k.run(&["logs", "echo"]);
        String::from_utf8_lossy(&out.stdout).contains("hello from a real process").then_some(())
    })
    .await;
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.lines().any(|l| l.starts_with("echo ") && l.contains("Running") && l.contains("proc-1")), "{wide}");

    // The kubelet endpoint serves only the API servers, over TLS: a plain request gets no HTTP answer, and the
    // node's own certificate (of the cluster authority, but not an API server's) is refused.
    let node = k.json(&["get", "node", "proc-1"]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap();
    assert!(!kubelet_get(port, "/healthz").starts_with("HTTP/1.1"), "no plain HTTP");
    let pki = proc.data_dir.join("pki");
    let read = |file: &str| std::fs::read(pki.join(file)).unwrap();
    let (cert, key) = (read("node.crt"), read("node.key"));
    let as_node = tls::client_config(&read("ca.crt"), Some((&cert, &key))).unwrap();
    let as_node = ReplicaClient::new(5_000, 1, Some(as_node));
    let uri = as_node.uri(&format!("127.0.0.1:{port}"), "/containerLogs/default/echo/echo").unwrap();
    let answer = as_node.request(http::Request::get(uri).body(Default::default()).unwrap()).await.unwrap();
    assert_eq!(answer.status(), 403);
    let described = k.ok(&["describe", "pod", "echo"]);
    assert!(
        described.contains("PodScheduled") && described.contains("Successfully assigned default/echo to proc-1"),
        "{described}"
    );

    // An unschedulable pod says why, and is placed once a node fits.
    let nowhere = pod_yaml("nowhere", "  nodeSelector:\n    zone: moon\n");
    k.ok(&["apply", "-f", &k.manifest("nowhere", &nowhere)]);
    let described = eventually(Duration::from_secs(20), "FailedScheduling", || async {
        let d = k.ok(&["describe", "pod", "nowhere"]);
        d.contains("FailedScheduling").then_some(d)
    })
    .await;
    assert!(described.contains("0/4 nodes are available"), "{described}");
    assert!(described.contains("didn't match Pod's node affinity/selector"), "{described}");
    let _moon = Agent::fake(&cluster, "fake-moon", &["--node-labels", "zone=moon"]);
    assert_eq!(running_on(&k, &["nowhere".into()]).await["nowhere"], "fake-moon");
}

/// The answer of the kubelet endpoint on `port` to a plain HTTP GET of `path`.
fn kubelet_get(port: u64, path: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    // A TLS server may close before the request is all written, or answer with bytes that are not text.
    let _ = write!(tcp, "GET {path} HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The pid of the `sh` whose command line carries `marker`, if one runs.
fn pid_with(marker: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"sh")) && args.contains(&marker.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_process_agent_keeps_its_processes() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let mut agent = Agent::start(&cluster, &servers, "proc-r", &["--runtime", "process"]);
    wait_ready(&k, &["proc-r"]).await;
    let marker = format!("marker-{}", std::process::id());
    k.ok(&["run", "keeper", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo up; sleep 600", &marker]);
    assert_eq!(running_on(&k, &["keeper".into()]).await["keeper"], "proc-r");
    let pid = eventually(Duration::from_secs(10), "the container's process", || async { pid_with(&marker) }).await;

    agent.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pid_with(&marker), Some(pid), "the process outlives its agent");
    agent.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pid_with(&marker), Some(pid), "the restarted agent did not start the container again");
    let pod = k.json(&["get", "pod", "keeper"]);
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod}");

    // The restarted agent still owns it: deleting the pod ends the process.
    k.ok(&["delete", "pod", "keeper", "--wait=false"]);
    eventually(Duration::from_secs(30), "the process to end with its pod", || async {
        pid_with(&marker).is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_agents_pods_are_evicted_after_their_toleration_and_replaced_elsewhere() {
    let cluster = TestCluster::start_with(3, &["--node-monitor-grace-period", "4s"]).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let mut doomed = Agent::fake(&cluster, "doomed", &[]);
    let _spare = Agent::fake(&cluster, "spare", &[]);
    wait_ready(&k, &["doomed", "spare"]).await;

    // The test is the pods' owner: one worker pod, which it replaces when it is going.
    let worker = |name: &str| {
        pod_yaml(name, "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 2\n")
    };
    k.ok(&["cordon", "spare"]);
    k.ok(&["apply", "-f", &k.manifest("worker-1", &worker("worker-1"))]);
    assert_eq!(running_on(&k, &["worker-1".into()]).await["worker-1"], "doomed");
    k.ok(&["uncordon", "spare"]);

    doomed.kill();
    let killed = std::time::Instant::now();
    eventually(Duration::from_secs(30), "the silent node to become Unknown", || async {
        let node = k.json(&["get", "node", "doomed"]);
        let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "Unknown").then_some(())
    })
    .await;
    let nodes = k.ok(&["get", "nodes"]);
    assert!(nodes.lines().any(|l| l.starts_with("doomed ") && l.contains("NotReady")), "{nodes}");
    eventually(Duration::from_secs(30), "worker-1 to be evicted", || async {
        let out = k.run(&["get", "pod", "worker-1", "-o", "json"]);
        let gone = !out.status.success();
        let terminating =
            serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|p| p["metadata"]["deletionTimestamp"].is_string());
        (gone || terminating).then_some(())
    })
    .await;
    assert!(killed.elapsed() >= Duration::from_secs(4), "evicted only after the grace period and the toleration");
    let events = k.ok(&["get", "events", "--field-selector", "involvedObject.name=worker-1"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");

    k.ok(&["apply", "-f", &k.manifest("worker-2", &worker("worker-2"))]);
    assert_eq!(running_on(&k, &["worker-2".into()]).await["worker-2"], "spare", "the replacement avoids the dead node");
}
