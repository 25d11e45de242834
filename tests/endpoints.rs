//! The endpoints controllers against a three-replica cluster, with a fake agent and real kubectl through a
//! follower: `kubectl expose` of a Deployment gets Endpoints and an EndpointSlice listing its pods with the
//! named target port resolved, following a scale up, an edit by hand (put back) and the Service's deletion; a
//! StatefulSet's headless Service lists each pod's hostname; a Service without a selector keeps the Endpoints
//! its user writes, mirrored into a slice that follows them; a Service selecting nothing keeps one empty slice.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use harness::agent::Agent;
use harness::kubectl::{follower, Kubectl};
use harness::pods::wait_nodes;
use harness::{eventually, TestCluster};

/// The IPs of the pods of `selector` that are alive and have one.
fn pod_ips(k: &Kubectl, selector: &str) -> BTreeSet<String> {
    let pods = k.json(&["get", "pods", "-l", selector]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect()
}

/// The ready addresses and the ports of Endpoints `name` (its one subset).
fn endpoints(k: &Kubectl, name: &str) -> (BTreeSet<String>, Value) {
    let endpoints = k.json(&["get", "endpoints", name]);
    let subset = &endpoints["subsets"][0];
    let ips = subset["addresses"].as_array().into_iter().flatten();
    (ips.filter_map(|a| a["ip"].as_str().map(str::to_owned)).collect(), subset["ports"].clone())
}

/// The controller's slices of Service `name`.
fn slices(k: &Kubectl, name: &str) -> Vec<Value> {
    slices_by(k, name, "endpointslice-controller.k8s.io")
}

/// The slices of Service `name` made by `manager`.
fn slices_by(k: &Kubectl, name: &str, manager: &str) -> Vec<Value> {
    let selector = format!("kubernetes.io/service-name={name},endpointslice.kubernetes.io/managed-by={manager}");
    k.json(&["get", "endpointslices", "-l", &selector])["items"].as_array().unwrap().clone()
}

/// The slices mirroring the Endpoints of Service `name`.
fn mirrored(k: &Kubectl, name: &str) -> Vec<Value> {
    slices_by(k, name, "endpointslicemirroring-controller.k8s.io")
}

fn slice_ips(slice: &Value) -> BTreeSet<String> {
    let endpoints = slice["endpoints"].as_array().into_iter().flatten();
    endpoints.filter_map(|e| e["addresses"][0].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_pods_are_listed_in_endpoints_and_slices_that_follow_them() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    let _agent = Agent::fake(&cluster, "work", &[]);
    wait_nodes(&k, 1).await;
    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: web:1, ports: [{name: http, containerPort: 8080}]}]}
";
    k.ok(&["apply", "-f", &k.manifest("web.yaml", deployment)]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    k.ok(&["expose", "deployment", "web", "--port=80", "--target-port=http", "--name=web"]);

    // Every pod's IP, with the named target port resolved, in the Endpoints and in one slice.
    let ips = eventually(Duration::from_secs(30), "the Endpoints of web", || async {
        let ips = pod_ips(&k, "app=web");
        (ips.len() == 3 && endpoints(&k, "web").0 == ips).then_some(ips)
    })
    .await;
    let (_, ports) = endpoints(&k, "web");
    assert_eq!(ports, serde_json::json!([{"port": 8080, "protocol": "TCP"}]));
    let listed = slices(&k, "web");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let slice = &listed[0];
    assert_eq!(slice_ips(slice), ips);
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], serde_json::json!([{"name": "", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["conditions"], serde_json::json!({"ready": true, "serving": true, "terminating": false}));
    assert_eq!(endpoint["nodeName"], "work");
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");

    // What kubectl shows: the addresses in `get endpoints` and `describe service`.
    let table = k.ok(&["get", "endpoints", "web"]);
    let first = ips.iter().next().unwrap();
    assert!(table.contains(&format!("{first}:8080")), "{table}");
    let described = k.ok(&["describe", "service", "web"]);
    assert!(described.lines().any(|l| l.starts_with("TargetPort:") && l.contains("http/TCP")), "{described}");
    assert!(
        described.lines().any(|l| l.starts_with("Endpoints:") && l.contains(&format!("{first}:8080"))),
        "{described}"
    );
    let table = k.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    assert!(table.contains("IPv4") && table.contains("8080"), "{table}");

    // A scale up reaches both; an edit by hand is put back.
    k.ok(&["scale", "deployment/web", "--replicas=5"]);
    eventually(Duration::from_secs(30), "five addresses", || async {
        let ips = pod_ips(&k, "app=web");
        let listed = slices(&k, "web");
        (ips.len() == 5 && endpoints(&k, "web").0 == ips && listed.len() == 1 && slice_ips(&listed[0]) == ips)
            .then_some(())
    })
    .await;
    k.ok(&["patch", "endpoints", "web", "--type=merge", "-p", r#"{"subsets": []}"#]);
    eventually(Duration::from_secs(30), "the Endpoints put back", || async {
        (endpoints(&k, "web").0.len() == 5).then_some(())
    })
    .await;

    // Deleting the Service takes its Endpoints and its slices with it.
    k.ok(&["delete", "service", "web"]);
    eventually(Duration::from_secs(30), "the Endpoints and slices gone", || async {
        let gone = k.run(&["get", "endpoints", "web"]);
        (!gone.status.success() && slices(&k, "web").is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_services_name_their_pods_and_user_written_endpoints_are_mirrored() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    let _agent = Agent::fake(&cluster, "work", &[]);
    wait_nodes(&k, 1).await;
    let manifests = "apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: db:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec: {ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: outside}
subsets: [{addresses: [{ip: 127.0.0.2}], ports: [{port: 5432}]}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec: {selector: {app: nobody}, ports: [{port: 80}]}
";
    k.ok(&["apply", "-f", &k.manifest("services.yaml", manifests)]);
    k.ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);

    // The headless Service: its pods' addresses with their hostnames, no ports, labelled headless.
    let hosts = eventually(Duration::from_secs(30), "db's Endpoints", || async {
        let endpoints = k.json(&["get", "endpoints", "db"]);
        let addresses = endpoints["subsets"][0]["addresses"].as_array().cloned().unwrap_or_default();
        let hosts: BTreeSet<String> =
            addresses.iter().filter_map(|a| a["hostname"].as_str().map(str::to_owned)).collect();
        (hosts.len() == 2).then_some((hosts, endpoints))
    })
    .await;
    assert_eq!(hosts.0, BTreeSet::from(["db-0".to_owned(), "db-1".to_owned()]));
    assert!(hosts.1["subsets"][0].get("ports").is_none(), "{}", hosts.1);
    assert_eq!(hosts.1["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    let db_slices = slices(&k, "db");
    assert_eq!(db_slices.len(), 1);
    let slice_hosts: BTreeSet<&str> =
        db_slices[0]["endpoints"].as_array().unwrap().iter().filter_map(|e| e["hostname"].as_str()).collect();
    assert_eq!(slice_hosts, BTreeSet::from(["db-0", "db-1"]));

    // A Service selecting nothing keeps one empty slice and empty Endpoints.
    eventually(Duration::from_secs(30), "nobody's placeholder slice", || async {
        let listed = slices(&k, "nobody");
        (listed.len() == 1 && listed[0]["endpoints"].as_array().is_none_or(Vec::is_empty)).then_some(())
    })
    .await;
    assert!(k.json(&["get", "endpoints", "nobody"])["subsets"].as_array().is_none_or(Vec::is_empty));

    // The Service without a selector: its user's Endpoints stay as written, the controller makes no slice of
    // its own for it, and the Endpoints are mirrored into one slice, owned by them, that follows their edits.
    let slice = eventually(Duration::from_secs(30), "outside's Endpoints mirrored", || async {
        let listed = mirrored(&k, "outside");
        (listed.len() == 1).then(|| listed[0].clone())
    })
    .await;
    assert_eq!(slice_ips(&slice), BTreeSet::from(["127.0.0.2".to_owned()]));
    assert_eq!(slice["ports"], serde_json::json!([{"name": "", "port": 5432, "protocol": "TCP"}]));
    assert_eq!(slice["endpoints"][0]["conditions"], serde_json::json!({"ready": true}));
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    let outside = k.json(&["get", "endpoints", "outside"]);
    assert_eq!(outside["subsets"][0]["addresses"][0]["ip"], "127.0.0.2", "{outside}");
    assert!(slices(&k, "outside").is_empty());
    let edited = "apiVersion: v1
kind: Endpoints
metadata: {name: outside}
subsets: [{addresses: [{ip: 127.0.0.3}], notReadyAddresses: [{ip: 127.0.0.4}], ports: [{port: 5432}]}]
";
    k.ok(&["apply", "-f", &k.manifest("outside.yaml", edited)]);
    let name = slice["metadata"]["name"].clone();
    eventually(Duration::from_secs(30), "the mirror following the edit", || async {
        let listed = mirrored(&k, "outside");
        let ips = BTreeSet::from(["127.0.0.3".to_owned(), "127.0.0.4".to_owned()]);
        (listed.len() == 1 && listed[0]["metadata"]["name"] == name && slice_ips(&listed[0]) == ips).then_some(())
    })
    .await;
    k.ok(&["delete", "endpoints", "outside"]);
    eventually(Duration::from_secs(30), "the mirror gone with the Endpoints", || async {
        mirrored(&k, "outside").is_empty().then_some(())
    })
    .await;
}
