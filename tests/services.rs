//! The service proxy of `raftsman agent --runtime docker` against a three-replica cluster (on a service range of its
//! own, so that other tests' proxies never hold its addresses) and the machine's Docker Engine: the agent makes the
//! whole service range a local route; a NodePort Service of a Deployment of a locally built HTTP server balances
//! requests through the node port on 127.0.0.1 and through the cluster IP, from the host and from inside a pod, and a
//! Service without a selector through its user's Endpoints; new pods get traffic within a second of being Ready, a
//! deleted pod's address leaves the endpoints while its container still runs, a pod that is not ready gets none, and
//! the proxy goes on forwarding while the leader replica is SIGKILLed and while no replica answers. The agent's cluster
//! DNS: pods' resolv.conf points at it, it answers Services, a StatefulSet's pod through its headless Service and
//! NXDOMAIN for a missing name, from inside a pod and, with every replica down, from the host. Pods get the Services'
//! variables. An autoscaler on the proxy's `concurrent_connections` metric follows held connections.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use raftsman::cluster::local::Signal;

use harness::agent::Agent;
use harness::docker::{self, NodeCleanup};
use harness::kubectl::{follower, Kubectl};
use harness::{eventually, http_get, TestCluster};

const RANGE: &str = "10.97.0.0/16";
const DNS: &str = "10.97.0.10";
const NODE_PORT: u16 = 30_781;
const SERVE: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www";

/// The pods that answered `count` requests to `address`.
fn answering(address: &str, count: usize) -> BTreeSet<String> {
    (0..count).filter_map(|_| http_get(address)).collect()
}

/// What the host's busybox `nslookup` says of `name` at the cluster DNS.
fn nslookup(name: &str) -> String {
    let out = std::process::Command::new("busybox").args(["nslookup", name, DNS]).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The names of the pods of `selector` that are Ready.
fn ready_of(k: &Kubectl, selector: &str) -> BTreeSet<String> {
    let pods = k.json(&["get", "pods", "-l", selector]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            let conditions = p["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn ready(k: &Kubectl) -> BTreeSet<String> {
    ready_of(k, "app=web")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_port_service_balances_over_ready_pods_from_the_host_and_from_pods() {
    let image = docker::busybox_image();
    let mut cluster = TestCluster::start_with(3, &["--service-cluster-ip-range", RANGE]).await;
    let node = "docker-services";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker", "--service-cluster-ip-range", RANGE]);
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    harness::pods::wait_nodes(&k, 1).await;

    // The whole range is local before any Service exists.
    let routes = std::process::Command::new("ip").args(["route", "show", "table", "local"]).output().unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.lines().any(|l| l.starts_with(&format!("local {RANGE} dev lo"))), "{routes}");

    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
            {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web"}},
              "spec": {{"replicas": 3, "selector": {{"matchLabels": {{"app": "web"}}}},
                "template": {{"metadata": {{"labels": {{"app": "web"}}}},
                  "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "app", "image": "{image}",
                    "imagePullPolicy": "Never", "command": ["sh", "-c", "{SERVE}"],
                    "ports": [{{"name": "http", "containerPort": 8080}}],
                    "readinessProbe": {{"httpGet": {{"path": "/", "port": "http"}}, "periodSeconds": 1,
                      "failureThreshold": 1}}}}]}}}}}}}},
            {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web"}},
              "spec": {{"type": "NodePort", "selector": {{"app": "web"}},
                "ports": [{{"port": 80, "targetPort": "http", "nodePort": {NODE_PORT}}}]}}}},
            {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "db"}},
              "spec": {{"clusterIP": "None", "selector": {{"app": "db"}}}}}},
            {{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {{"name": "db"}},
              "spec": {{"serviceName": "db", "replicas": 1, "selector": {{"matchLabels": {{"app": "db"}}}},
                "template": {{"metadata": {{"labels": {{"app": "db"}}}},
                  "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "app", "image": "{image}",
                    "imagePullPolicy": "Never", "command": ["sh", "-c", "{SERVE}"]}}]}}}}}}}}]}}"#
    );
    k.ok(&["apply", "-f", &k.manifest("web.json", &manifest)]);
    let pods = eventually(Duration::from_secs(60), "3 pods Ready", || async {
        let pods = ready(&k);
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let cluster_ip = k.json(&["get", "service", "web"])["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(cluster_ip.starts_with("10.97."), "{cluster_ip}");
    let node_port = format!("127.0.0.1:{NODE_PORT}");
    let by_cluster_ip = format!("{cluster_ip}:80");

    // 30 requests through the node port reach all three pods; so do requests to the cluster IP.
    eventually(Duration::from_secs(30), "all three pods through the node port", || async {
        (answering(&node_port, 30) == pods).then_some(())
    })
    .await;
    assert_eq!(answering(&by_cluster_ip, 30), pods);

    // From inside a pod, the cluster IP answers too (busybox's nc: its static wget cannot resolve anything).
    let first = pods.iter().next().unwrap().clone();
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {cluster_ip} 80");
    let inside = k.ok(&["exec", &first, "--", "sh", "-c", &request]);
    let body = inside.trim().lines().last().unwrap_or_default();
    assert!(pods.contains(body), "{inside}");

    // The pod's resolv.conf points at the cluster DNS, which answers the Service's name with its cluster IP,
    // the StatefulSet's pod through its headless Service with the pod's IP (where it answers), and NXDOMAIN.
    let resolv = k.ok(&["exec", &first, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with(&format!("nameserver {DNS}\n")), "{resolv}");
    assert!(resolv.contains("\nsearch default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.ends_with("\noptions ndots:5\n"), "{resolv}");
    let dns_service = k.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    assert_eq!(dns_service["spec"]["clusterIP"], DNS);
    let found = k.ok(&["exec", &first, "--", "nslookup", "web.default.svc.cluster.local"]);
    assert!(found.contains(&format!("Address: {cluster_ip}")), "{found}");
    eventually(Duration::from_secs(60), "db-0 Ready", || async { (ready_of(&k, "app=db").len() == 1).then_some(()) })
        .await;
    let db_ip = k.json(&["get", "pod", "db-0"])["status"]["podIP"].as_str().unwrap().to_owned();
    let found = eventually(Duration::from_secs(10), "db-0.db resolved", || async {
        let out = k.run(&["exec", &first, "--", "nslookup", "db-0.db.default.svc.cluster.local"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&format!("Address: {db_ip}")).then_some(text)
    })
    .await;
    assert!(found.contains("db-0.db.default.svc.cluster.local"), "{found}");
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {db_ip} 8080");
    let answer = k.ok(&["exec", &first, "--", "sh", "-c", &request]);
    assert_eq!(answer.trim().lines().last(), Some("db-0"), "{answer}");
    let missing = k.run(&["exec", &first, "--", "nslookup", "missing.default.svc.cluster.local"]);
    let said = format!("{}{}", String::from_utf8_lossy(&missing.stdout), String::from_utf8_lossy(&missing.stderr));
    assert!(said.contains("NXDOMAIN"), "{said}");

    // A Service without a selector, with the Endpoints its user writes (mirrored into a slice), is proxied too.
    let manual = format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
            {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "manual"}},
              "spec": {{"ports": [{{"port": 80, "targetPort": 8080}}]}}}},
            {{"apiVersion": "v1", "kind": "Endpoints", "metadata": {{"name": "manual"}},
              "subsets": [{{"addresses": [{{"ip": "{db_ip}"}}], "ports": [{{"port": 8080}}]}}]}}]}}"#
    );
    k.ok(&["apply", "-f", &k.manifest("manual.json", &manual)]);
    let manual_ip = k.json(&["get", "service", "manual"])["spec"]["clusterIP"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "the user's endpoints proxied", || async {
        (http_get(&format!("{manual_ip}:80")).as_deref() == Some("db-0")).then_some(())
    })
    .await;

    // Scaled to 5, each new pod gets traffic within a second of being Ready (as a watch of the pods saw it).
    let clients = vec![harness::kube_client(&cluster, follower(leader)).await];
    let (history, watch) = harness::pods::watch_pods(clients, "app=web");
    k.ok(&["scale", "deployment/web", "--replicas=5"]);
    let mut first_answer: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first_answer.len() < 5 && Instant::now() < deadline {
        if let Some(pod) = http_get(&node_port) {
            first_answer.entry(pod).or_insert_with(Instant::now);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let five: BTreeSet<String> = first_answer.keys().cloned().collect();
    assert_eq!(five.len(), 5, "{five:?}");
    let delays: BTreeMap<&String, Duration> = eventually(Duration::from_secs(10), "the watch", || async {
        let history = harness::pods::lock(&history);
        let ready_at = |pod: &String| history.ready_at.get(pod).copied();
        five.difference(&pods)
            .map(|pod| Some((pod, first_answer[pod].saturating_duration_since(ready_at(pod)?))))
            .collect()
    })
    .await;
    watch.abort();
    eprintln!("from Ready to the first proxied request: {delays:?}");
    assert!(delays.values().all(|d| *d < Duration::from_secs(1)), "{delays:?}");
    // A pod started after the Service has its variables (and the `kubernetes` Service's).
    let newer = five.difference(&pods).next().unwrap().clone();
    let env = k.ok(&["exec", &newer, "--", "sh", "-c", "echo $WEB_SERVICE_HOST $WEB_SERVICE_PORT $WEB_PORT"]);
    assert_eq!(env.trim(), format!("{cluster_ip} 80 tcp://{cluster_ip}:80"));
    let api = k.ok(&["exec", &newer, "--", "sh", "-c", "echo $KUBERNETES_SERVICE_HOST"]);
    assert_eq!(api.trim(), "10.97.0.1");

    // A deleted pod's address leaves the endpoints while its container still runs (httpd, the container's
    // first process, ignores SIGTERM; it is killed at the end of the grace period), and the proxy sends it
    // nothing more.
    let leaving_ip = k.json(&["get", "pod", &newer])["status"]["podIP"].as_str().unwrap().to_owned();
    k.ok(&["delete", "pod", &newer, "--grace-period=20", "--wait=false"]);
    eventually(Duration::from_secs(5), "the deleted pod's address out of the endpoints", || async {
        let endpoints = k.json(&["get", "endpoints", "web"]);
        (!endpoints["subsets"].to_string().contains(&format!("\"{leaving_ip}\""))).then_some(())
    })
    .await;
    assert_eq!(http_get(&format!("{leaving_ip}:8080")).as_deref(), Some(newer.as_str()), "its container runs");
    assert!(!answering(&node_port, 20).contains(&newer));

    // Scaled back to 3, the proxy balances over the three that stay.
    k.ok(&["scale", "deployment/web", "--replicas=3"]);
    let three = eventually(Duration::from_secs(60), "3 pods Ready, and only they answering", || async {
        let pods = ready(&k);
        (pods.len() == 3 && answering(&node_port, 30) == pods).then_some(pods)
    })
    .await;

    // A pod that fails its readiness probe gets no traffic.
    let unready = three.iter().next().unwrap().clone();
    k.ok(&["exec", &unready, "--", "rm", "/www/index.html"]);
    let others: BTreeSet<String> = three.iter().filter(|p| **p != unready).cloned().collect();
    eventually(Duration::from_secs(20), "the unready pod out of the rotation", || async {
        (!ready(&k).contains(&unready) && answering(&node_port, 30) == others).then_some(())
    })
    .await;

    // SIGKILL the leader replica, then every replica: the proxy forwards from what it last knew.
    cluster.local.signal(leader, Signal::Kill);
    assert_eq!(answering(&node_port, 20), others);
    for i in (0..3).filter(|i| *i != leader) {
        cluster.local.signal(i, Signal::Kill);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(answering(&node_port, 20), others, "with no replica answering");
    assert_eq!(answering(&by_cluster_ip, 20), others);
    let found = nslookup("web.default.svc.cluster.local");
    assert!(found.contains(&format!("Address: {cluster_ip}")), "the DNS answers from what it knew: {found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_autoscaler_on_the_concurrency_metric_follows_held_connections() {
    const RANGE: &str = "10.98.0.0/16";
    const NODE_PORT: u16 = 30_782;
    let image = docker::busybox_image();
    let fast = ["--metric-resolution", "1s", "--horizontal-pod-autoscaler-sync-period", "1s"];
    let cluster = TestCluster::start_with(3, &[&fast[..], &["--service-cluster-ip-range", RANGE]].concat()).await;
    let node = "docker-concurrency";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker", "--service-cluster-ip-range", RANGE]);
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    harness::pods::wait_nodes(&k, 1).await;
    // A request to /cgi-bin/hold keeps its connection open until its client has sent its whole body (or gone).
    let serve = "mkdir -p /www/cgi-bin && printf '%s\\n' '#!/bin/sh' 'cat >/dev/null' echo > /www/cgi-bin/hold && \
                 chmod +x /www/cgi-bin/hold && exec httpd -f -p 8080 -h /www";
    let manifest = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "held"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "held"}},
            "template": {"metadata": {"labels": {"app": "held"}},
              "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": image,
                "imagePullPolicy": "Never", "command": ["sh", "-c", serve]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "held"},
          "spec": {"type": "NodePort", "selector": {"app": "held"},
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "held"},
          "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "held"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "concurrent_connections"},
              "target": {"type": "AverageValue", "averageValue": "10"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}]})
    .to_string();
    k.ok(&["apply", "-f", &k.manifest("held.json", &manifest)]);
    let replicas =
        |k: &Kubectl| k.json(&["get", "deployment", "held"])["status"]["readyReplicas"].as_i64().unwrap_or(0);
    eventually(Duration::from_secs(60), "one pod serving", || async {
        http_get(&format!("127.0.0.1:{NODE_PORT}")).map(|_| ())
    })
    .await;

    // 30 connections held open on the one pod: 30 per pod against a target of 10 gives 3 pods.
    let held: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", NODE_PORT)).expect("the node port takes it");
            stream.write_all(b"POST /cgi-bin/hold HTTP/1.0\r\nContent-Length: 1000000\r\n\r\n").unwrap();
            stream
        })
        .collect();
    eventually(Duration::from_secs(60), "scaled to 3 on the connections", || async {
        (replicas(&k) >= 3).then_some(())
    })
    .await;
    let shown = k.ok(&["get", "hpa", "held"]);
    assert!(shown.contains("/10"), "{shown}");

    // Once they close, back to 1.
    drop(held);
    eventually(Duration::from_secs(60), "back to 1", || async {
        let scaled = k.json(&["get", "deployment", "held"])["spec"]["replicas"].as_i64();
        (scaled == Some(1)).then_some(())
    })
    .await;
}
