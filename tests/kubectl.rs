//! Real kubectl against a three-replica cluster, through a follower's API, as a user types the commands.
//! Every step is checked against the object state the API then serves, not only kubectl's exit code.

mod harness;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use harness::etcdctl::Etcdctl;
use harness::kubectl::{follower, raw_status, Kubectl};
use harness::{eventually, TestCluster};

const DEPLOY_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        - containerPort: 443
"#;

const DEPLOY_V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.26
        ports:
        - containerPort: 80
"#;

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

fn ports(deploy: &Value) -> Vec<i64> {
    container(deploy)["ports"].as_array().unwrap().iter().map(|p| p["containerPort"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_apply_get_patch_scale_and_delete_through_a_follower() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;

    // Phase 1: the server speaks Kubernetes 1.33.
    let version: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["minor"], "33");

    // Phase 2: apply creates, with upstream defaults.
    let v1 = k.manifest("deploy.yaml", DEPLOY_V1);
    let out = k.ok(&["apply", "-f", &v1]);
    assert!(out.contains("deployment.apps/nginx created"), "{out}");
    let d = k.json(&["get", "deployment", "nginx"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(container(&d)["ports"][0]["protocol"], "TCP");
    assert_eq!(container(&d)["imagePullPolicy"], "IfNotPresent");
    assert_eq!(ports(&d), vec![80, 443]);
    assert!(d["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .is_some_and(|a| a.ends_with('\n')));

    // Phase 3: a second apply changes the image and removes a port (a three-way strategic merge patch).
    let v2 = k.manifest("deploy2.yaml", DEPLOY_V2);
    let out = k.ok(&["apply", "-f", &v2]);
    assert!(out.contains("deployment.apps/nginx configured"), "{out}");
    let d = k.json(&["get", "deployment", "nginx"]);
    assert_eq!(container(&d)["image"], "nginx:1.26");
    assert_eq!(ports(&d), vec![80]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    let out = k.ok(&["apply", "-f", &v2]);
    assert!(out.contains("deployment.apps/nginx unchanged"), "{out}");

    // Phase 4: get as tables, wide, by label, by field, across namespaces.
    let table = k.ok(&["get", "deployments"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("AVAILABLE"), "{table}");
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("nginx")), "{table}");
    let wide = k.ok(&["get", "deploy", "-o", "wide"]);
    assert!(wide.contains("nginx:1.26") && wide.contains("app=nginx"), "{wide}");
    let all = k.ok(&["get", "deploy", "-A"]);
    assert!(all.starts_with("NAMESPACE") && all.contains("default"), "{all}");
    assert!(k.ok(&["get", "deploy", "-l", "app=nginx", "-o", "name"]).contains("deployment.apps/nginx"));
    assert_eq!(k.ok(&["get", "deploy", "-l", "app=other", "-o", "name"]).trim(), "");
    assert!(k.ok(&["get", "deploy", "--field-selector", "metadata.name=nginx", "-o", "name"]).contains("nginx"));
    let yaml = k.ok(&["get", "deploy", "nginx", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("image: nginx:1.26"), "{yaml}");

    // Phase 5: scale, label, annotate.
    k.ok(&["scale", "deployment", "nginx", "--replicas=5"]);
    assert_eq!(k.json(&["get", "deploy", "nginx"])["spec"]["replicas"], 5);
    k.ok(&["label", "deployment", "nginx", "tier=fe"]);
    k.ok(&["annotate", "deployment", "nginx", "team=web"]);
    let d = k.json(&["get", "deploy", "nginx"]);
    assert_eq!(d["metadata"]["labels"]["tier"], "fe");
    assert_eq!(d["metadata"]["annotations"]["team"], "web");
    assert!(k.ok(&["get", "deploy", "-l", "tier=fe", "-o", "name"]).contains("nginx"));

    // Phase 6: the three patch types.
    let strategic =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"A","value":"1"}]}]}}}}"#;
    k.ok(&["patch", "deployment", "nginx", "-p", strategic]);
    let d = k.json(&["get", "deploy", "nginx"]);
    assert_eq!(container(&d)["env"][0]["name"], "A");
    assert_eq!(ports(&d), vec![80], "a strategic patch keeps the container's ports");
    k.ok(&["patch", "deployment", "nginx", "--type", "merge", "-p", r#"{"spec":{"minReadySeconds":7}}"#]);
    assert_eq!(k.json(&["get", "deploy", "nginx"])["spec"]["minReadySeconds"], 7);
    let json_patch = r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.27"}]"#;
    k.ok(&["patch", "deployment", "nginx", "--type", "json", "-p", json_patch]);
    assert_eq!(container(&k.json(&["get", "deploy", "nginx"]))["image"], "nginx:1.27");

    // Phase 7: describe shows the defaults; edit goes through KUBE_EDITOR.
    let described = k.ok(&["describe", "deployment", "nginx"]);
    let line = |label: &str| described.lines().find(|l| l.trim_start().starts_with(label)).map(str::split_whitespace);
    assert_eq!(line("StrategyType:").and_then(|mut w| w.nth(1)), Some("RollingUpdate"), "{described}");
    assert_eq!(line("Port:").and_then(|mut w| w.nth(1)), Some("80/TCP"), "{described}");
    let editor = k.manifest("editor.sh", "#!/bin/sh\nsed -i 's/minReadySeconds: 7/minReadySeconds: 8/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = k.run_with_env(&["edit", "deployment", "nginx"], &[("KUBE_EDITOR", &editor)]);
    assert!(out.status.success(), "edit failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.json(&["get", "deploy", "nginx"])["spec"]["minReadySeconds"], 8);

    // Phase 8: server-side apply. Fields that scale and patch changed belong to other managers: a conflict,
    // until --force-conflicts takes them over. Then another manager conflicts with this one.
    let err = k.fails(&["apply", "--server-side", "-f", &v2]);
    assert!(err.contains("conflict") && err.contains(".spec.replicas") && err.contains("kubectl-patch"), "{err}");
    let out = k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &v2]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(container(&k.json(&["get", "deploy", "nginx"]))["image"], "nginx:1.26");
    let d = k.json(&["get", "deploy", "nginx", "--show-managed-fields"]);
    let managers: Vec<&str> =
        d["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    assert_eq!(d["spec"]["replicas"], 3);
    let v3 = k.manifest("deploy3.yaml", &DEPLOY_V2.replace("replicas: 3", "replicas: 4"));
    let err = k.fails(&["apply", "--server-side", "--field-manager=other", "-f", &v3]);
    assert!(err.contains("conflict") && err.contains(".spec.replicas"), "{err}");
    assert_eq!(k.json(&["get", "deploy", "nginx"])["spec"]["replicas"], 3);
    k.ok(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", &v3]);
    assert_eq!(k.json(&["get", "deploy", "nginx"])["spec"]["replicas"], 4);

    // Phase 9: delete; the object is gone everywhere.
    let out = k.ok(&["delete", "deployment", "nginx"]);
    assert!(out.contains("deployment.apps \"nginx\" deleted"), "{out}");
    let err = k.fails(&["get", "deployment", "nginx"]);
    assert!(err.contains("NotFound") && err.contains("\"nginx\" not found"), "{err}");
    for i in 0..3 {
        let other = Kubectl::for_replica(&cluster, i).await;
        assert_eq!(other.ok(&["get", "deploy", "-o", "name"]).trim(), "");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_changes_nothing() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, cluster.leader().await).await;

    // An unknown field fails kubectl's default (strict) validation on the server.
    let unknown = k.manifest("unknown.yaml", &DEPLOY_V1.replace("replicas: 2", "replicas: 2\n  replicaz: 3"));
    let err = k.fails(&["apply", "-f", &unknown]);
    assert!(err.contains("unknown field") && err.contains("spec.replicaz"), "{err}");

    // An invalid name and a missing image are 422 Invalid, with the fields named.
    let bad_name = k.manifest("badname.yaml", &DEPLOY_V1.replace("name: nginx\n  labels", "name: Nginx_1\n  labels"));
    let err = k.fails(&["apply", "-f", &bad_name]);
    assert!(err.contains("is invalid") && err.contains("metadata.name"), "{err}");
    let no_image = k.manifest("noimage.yaml", &DEPLOY_V1.replace("        image: nginx:1.25\n", ""));
    let err = k.fails(&["apply", "-f", &no_image]);
    assert!(err.contains("spec.template.spec.containers[0].image: Required value"), "{err}");

    // A selector that does not match the template's labels.
    let mismatch = k.manifest(
        "mismatch.yaml",
        &DEPLOY_V1.replace("      labels:\n        app: nginx", "      labels:\n        app: other"),
    );
    let err = k.fails(&["apply", "-f", &mismatch]);
    assert!(err.contains("selector") && err.contains("does not match"), "{err}");

    // A namespace that does not exist.
    let err = k.fails(&["apply", "-n", "nowhere", "-f", &k.manifest("ok.yaml", DEPLOY_V1)]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    // Bodies that are not objects of the kind, or not JSON at all, are 400s.
    let path = "/api/v1/namespaces/default/configmaps";
    for (name, body) in [
        ("garbage.json", "\u{0}\u{1}not json at all"),
        ("array.json", "[1, 2, 3]"),
        ("wrong-type.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":5}"#),
        ("wrong-kind.json", r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#),
    ] {
        let err = k.fails(&["create", "--raw", path, "-f", &k.manifest(name, body)]);
        assert!(err.contains("BadRequest") || err.contains("the server rejected our request"), "{name}: {err}");
    }

    // Nothing was written.
    assert_eq!(k.ok(&["get", "deploy", "-A", "-o", "name"]).trim(), "");
    assert_eq!(k.ok(&["get", "configmaps", "-o", "name", "--field-selector", NOT_ROOT_CA]).trim(), "");
}

/// A field selector leaving out the namespace's own `kube-root-ca.crt`, which every namespace holds.
const NOT_ROOT_CA: &str = "metadata.name!=kube-root-ca.crt";

#[tokio::test(flavor = "multi_thread")]
async fn generators_events_watch_and_deletion_through_a_follower() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;

    // Phase 1: the system namespaces and their default service accounts appear.
    eventually(Duration::from_secs(20), "the system namespaces", || async {
        let names = k.ok(&["get", "namespaces", "-o", "name"]);
        ["default", "kube-system", "kube-public", "kube-node-lease"]
            .iter()
            .all(|n| names.contains(&format!("namespace/{n}")))
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "the default service account", || async {
        k.run(&["get", "serviceaccount", "default"]).status.success().then_some(())
    })
    .await;

    // Phase 2: kubectl's generator commands (protobuf bodies) create what they say.
    k.ok(&["create", "namespace", "team-a"]);
    k.ok(&["create", "secret", "generic", "s1", "--from-literal=a=b", "-n", "team-a"]);
    k.ok(&["create", "configmap", "c1", "--from-literal=k=v", "-n", "team-a"]);
    k.ok(&["create", "deployment", "d1", "--image=busybox", "--replicas=2", "-n", "team-a"]);
    k.ok(&["create", "job", "j1", "--image=busybox", "-n", "team-a"]);
    assert_eq!(k.json(&["get", "secret", "s1", "-n", "team-a"])["data"]["a"], "Yg==");
    assert_eq!(k.json(&["get", "configmap", "c1", "-n", "team-a"])["data"]["k"], "v");
    let d = k.json(&["get", "deployment", "d1", "-n", "team-a"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
    assert_eq!(k.json(&["get", "job", "j1", "-n", "team-a"])["spec"]["template"]["spec"]["restartPolicy"], "Never");
    k.ok(&["run", "p1", "--image=busybox", "-n", "team-a"]);
    let binding = k.manifest(
        "binding.json",
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p1"},"target":{"kind":"Node","name":"node-1"}}"#,
    );
    k.ok(&["create", "--raw", "/api/v1/namespaces/team-a/pods/p1/binding", "-f", &binding]);
    assert_eq!(k.json(&["get", "pod", "p1", "-n", "team-a"])["spec"]["nodeName"], "node-1");
    let err = k.fails(&["create", "--raw", "/api/v1/namespaces/team-a/pods/p1/binding", "-f", &binding]);
    assert!(err.contains("already assigned"), "{err}");
    k.ok(&["delete", "pod", "p1", "-n", "team-a", "--grace-period=0", "--force"]);
    let token = k.ok(&["create", "token", "default", "-n", "team-a"]);
    assert!(token.trim().len() >= 32, "{token}");
    let explained = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("FIELD: replicas <integer>"), "{explained}");
    let explained = k.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(explained.contains("<[]ContainerPort>"), "{explained}");
    let resources = k.ok(&["api-resources"]);
    for line in ["deployments", "deploy", "apps/v1", "cronjobs", "horizontalpodautoscalers", "leases"] {
        assert!(resources.contains(line), "{line} missing from {resources}");
    }

    // Phase 3: events are listed with kubectl's columns and selected by involved object.
    let event = k.manifest(
        "event.yaml",
        r#"
apiVersion: v1
kind: Event
metadata:
  name: d1.1
  namespace: team-a
involvedObject:
  kind: Deployment
  name: d1
  namespace: team-a
reason: ScalingReplicaSet
message: Scaled up replica set d1-1 to 2
type: Normal
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 1
source:
  component: deployment-controller
"#,
    );
    k.ok(&["apply", "-f", &event]);
    let events = k.ok(&["get", "events", "-n", "team-a"]);
    assert!(events.starts_with("LAST SEEN") && events.contains("ScalingReplicaSet"), "{events}");
    assert!(events.contains("deployment/d1"), "{events}");
    let selected = k.ok(&["get", "events", "-n", "team-a", "--field-selector", "involvedObject.name=d1", "-o", "name"]);
    assert!(selected.contains("d1.1"), "{selected}");
    let none = k.ok(&["get", "events", "-n", "team-a", "--field-selector", "involvedObject.name=x", "-o", "name"]);
    assert_eq!(none.trim(), "");

    // Phase 3b: paging: kubectl reads in chunks of two and follows the continue tokens.
    for i in 0..5 {
        k.ok(&["create", "configmap", &format!("page-{i}"), "-n", "team-a"]);
    }
    let paged = k.ok(&["get", "configmaps", "-n", "team-a", "--chunk-size=2", "-o", "name"]);
    let pages: Vec<&str> = paged.lines().filter(|l| l.contains("page-")).collect();
    assert_eq!(pages.len(), 5, "{paged}");
    let bad = k.fails(&["get", "--raw", "/api/v1/namespaces/team-a/configmaps?limit=2&continue=nonsense"]);
    assert!(bad.contains("continue"), "{bad}");

    // Phase 4: `get -w` prints each change as a table row.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(k.cache.path())
        .args(["get", "configmaps", "-n", "team-a", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&["create", "configmap", "w1", "--from-literal=a=b", "-n", "team-a"]);
    k.ok(&["label", "configmap", "w1", "x=y", "-n", "team-a"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.kill().unwrap();
    let mut printed = String::new();
    watch.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let _ = watch.wait();
    assert!(printed.starts_with("NAME"), "{printed}");
    assert_eq!(printed.lines().filter(|l| l.starts_with("w1 ")).count(), 2, "{printed}");

    // Phase 5: foreground deletion removes the dependents first; the owner waits for them.
    let owner_uid =
        k.json(&["get", "deployment", "d1", "-n", "team-a"])["metadata"]["uid"].as_str().unwrap().to_string();
    let dependent = k.manifest(
        "dependent.yaml",
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  namespace: team-a
  ownerReferences:
  - apiVersion: apps/v1
    kind: Deployment
    name: d1
    uid: {owner_uid}
    blockOwnerDeletion: true
    controller: true
data:
  a: b
"#
        ),
    );
    k.ok(&["apply", "-f", &dependent]);
    k.ok(&["delete", "deployment", "d1", "-n", "team-a", "--cascade=foreground", "--timeout=30s"]);
    assert!(k.fails(&["get", "deployment", "d1", "-n", "team-a"]).contains("NotFound"));
    assert!(k.fails(&["get", "configmap", "owned", "-n", "team-a"]).contains("NotFound"));

    // Phase 6: background deletion: the owner goes at once, the garbage collector removes the dependent.
    k.ok(&["create", "deployment", "d2", "--image=busybox", "-n", "team-a"]);
    let owner_uid =
        k.json(&["get", "deployment", "d2", "-n", "team-a"])["metadata"]["uid"].as_str().unwrap().to_string();
    let dependent = std::fs::read_to_string(&dependent).unwrap().replace("name: d1", "name: d2");
    let dependent = dependent
        .lines()
        .map(|l| if l.trim_start().starts_with("uid:") { format!("    uid: {owner_uid}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    k.ok(&["apply", "-f", &k.manifest("dependent2.yaml", &dependent)]);
    k.ok(&["delete", "deployment", "d2", "-n", "team-a"]);
    k.ok(&["wait", "--for=delete", "configmap/owned", "-n", "team-a", "--timeout=30s"]);

    // Phase 7: deleting the namespace deletes what it holds, then the namespace itself.
    k.ok(&["delete", "namespace", "team-a", "--timeout=60s"]);
    assert!(k.fails(&["get", "namespace", "team-a"]).contains("NotFound"));
    assert_eq!(k.ok(&["get", "secrets,configmaps,jobs", "-n", "team-a", "-o", "name"]).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_get_unique_cluster_ips_and_node_ports_released_on_delete() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, leader).await;
    let other = Kubectl::for_replica(&cluster, follower(leader)).await;

    // Phase 1: services created through two replicas get distinct addresses from the range.
    k.ok(&["create", "service", "nodeport", "a", "--tcp=80:8080"]);
    other.ok(&["create", "service", "clusterip", "b", "--tcp=80:8080"]);
    let a = k.json(&["get", "service", "a"]);
    let b = k.json(&["get", "service", "b"]);
    let ip = |s: &Value| s["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip(&a).starts_with("10.96.") && ip(&b).starts_with("10.96."), "{a} {b}");
    assert_ne!(ip(&a), ip(&b));
    let node_port = a["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let table = k.ok(&["get", "services"]);
    assert!(table.contains(&format!("80:{node_port}/TCP")), "{table}");

    // Phase 2: asking for a node port or IP another service holds is refused, and nothing is written.
    let taken = k.manifest(
        "taken.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: c\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {node_port}\n"
        ),
    );
    let err = other.fails(&["apply", "-f", &taken]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    let same_ip = k.manifest(
        "same-ip.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: d\nspec:\n  clusterIP: {}\n  ports:\n  - port: 80\n",
            ip(&b)
        ),
    );
    let err = k.fails(&["apply", "-f", &same_ip]);
    assert!(err.contains("provided IP is already allocated"), "{err}");
    assert!(k.fails(&["get", "service", "c"]).contains("NotFound"));

    // Phase 3: deleting a service releases its port, which the next service may then ask for.
    k.ok(&["delete", "service", "a"]);
    other.ok(&["apply", "-f", &taken]);
    assert_eq!(k.json(&["get", "service", "c"])["spec"]["ports"][0]["nodePort"], node_port);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_mid_run_loses_and_duplicates_nothing() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;

    // Phase 1: kubectl creates config maps one by one through a follower; the leader is SIGKILLed midway.
    // A failed create is retried, as a user would; AlreadyExists on a retry means the first attempt won.
    let mut failures = Vec::new();
    for i in 0..30 {
        if i == 10 {
            cluster.local.signal(leader, raftsman::cluster::local::Signal::Kill);
        }
        let name = format!("cm-{i}");
        let value = format!("--from-literal=v={i}");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let out = k.run(&["create", "configmap", &name, &value]);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() || (attempts > 1 && stderr.contains("AlreadyExists")) {
                break;
            }
            failures.push(stderr);
            assert!(attempts < 50, "cm-{i} never created: {failures:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Phase 2: every write is there exactly once, with its value; the errors were few and retryable.
    let list = k.json(&["get", "configmaps", "--field-selector", NOT_ROOT_CA]);
    let mut names: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|c| c["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("cm-{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    for c in list["items"].as_array().unwrap() {
        let name = c["metadata"]["name"].as_str().unwrap();
        assert_eq!(format!("cm-{}", c["data"]["v"].as_str().unwrap()), name);
    }
    assert!(failures.len() <= 10, "too many failures around the leader change: {failures:?}");
    for f in &failures {
        assert!(f.contains("ServiceUnavailable") || f.contains("unavailable") || f.contains("Unavailable"), "{f}");
    }
}

/// A stand-in for a node's kubelet, serving a certificate of `cluster`'s authority for 127.0.0.1 and asking for
/// one: answers every request with one log line and records the request lines with the client's user.
async fn fake_kubelet(cluster: &TestCluster) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use raftsman::security::authn::User;
    use raftsman::security::{pki, tls};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let authority = cluster.local.authority().unwrap();
    let node = authority.issue("system:node:node-1", &[], &["127.0.0.1".into()], pki::Usage::ServerAndClient).unwrap();
    let identity = tls::LiveIdentity::new(node.cert_pem.as_bytes(), node.key_pem.as_bytes()).unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tls::kubelet_server_config(authority.cert_pem().as_bytes(), identity).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let Ok(mut conn) = acceptor.accept(tcp).await else { continue };
            let client =
                conn.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| User::of_certificate(c));
            let mut reader = BufReader::new(&mut conn);
            let mut line = String::new();
            let _ = reader.read_line(&mut line).await;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let user = client.map(|u| u.name).unwrap_or_default();
            seen.lock().unwrap().push(format!("{} ({user})", line.trim()));
            let body = "hello from the container\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (port, requests)
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_come_from_the_kubelet_of_the_pods_node() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    let (port, requests) = fake_kubelet(&cluster).await;

    // Phase 1: a node whose status names its kubelet, and a pod bound to it.
    let node = k.manifest("node.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n");
    k.ok(&["apply", "-f", &node]);
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
    );
    k.ok(&["patch", "node", "node-1", "--subresource=status", "--type=merge", "-p", &status]);
    let pod = k.manifest(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: node-1\n  containers:\n  - name: app\n    image: busybox\n",
    );
    k.ok(&["apply", "-f", &pod]);

    // Phase 2: kubectl logs reaches that kubelet for that container, with its options passed on, over TLS,
    // showing the replica's API certificate.
    let out = k.ok(&["logs", "web", "--tail=5"]);
    assert_eq!(out, "hello from the container\n");
    let seen = requests.lock().unwrap().clone();
    assert_eq!(seen, vec!["GET /containerLogs/default/web/app?tailLines=5 HTTP/1.1 (system:apiserver)".to_string()]);

    // Phase 3: a pod on no node, or an unknown container, is a clear error.
    k.ok(&["run", "pending", "--image=busybox"]);
    assert!(k.fails(&["logs", "pending"]).contains("not scheduled"));
    assert!(k.fails(&["logs", "web", "-c", "nope"]).contains("not valid for pod web"));
}

const RC_PVC_PV: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  selector:
    app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: slow
  resources:
    requests:
      storage: 1Gi
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv1
spec:
  capacity:
    storage: 5Gi
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: slow
  hostPath:
    path: /data
---
apiVersion: v1
kind: PodTemplate
metadata:
  name: tpl
template:
  metadata:
    labels:
      app: tpl
  spec:
    containers:
    - name: busybox
      image: busybox
"#;

/// The header and the row of `name` in a `kubectl get` table, split into columns.
fn table_row(table: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let split = |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>();
    let header = split(table.lines().next().unwrap_or_default());
    let row = table.lines().find(|l| l.starts_with(name)).map(split).unwrap_or_default();
    (header, row)
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_controllers_claims_volumes_and_pod_templates_are_served() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;

    // Phase 1: kubectl creates each kind from one manifest; the server defaults them and resets their status.
    let manifest = k.manifest("rc-pvc-pv.yaml", RC_PVC_PV);
    let created = k.ok(&["create", "-f", &manifest]);
    for name in ["replicationcontroller/web", "persistentvolumeclaim/data", "persistentvolume/pv1", "podtemplate/tpl"] {
        assert!(created.contains(&format!("{name} created")), "{created}");
    }
    let rc = k.json(&["get", "rc", "web"]);
    assert_eq!(rc["metadata"]["generation"], 1);
    assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(k.json(&["get", "pvc", "data"])["status"]["phase"], "Pending");
    let pv = k.json(&["get", "pv", "pv1"]);
    assert_eq!(
        (pv["spec"]["persistentVolumeReclaimPolicy"].as_str(), pv["status"]["phase"].as_str()),
        (Some("Retain"), Some("Pending"))
    );
    assert!(pv["metadata"].get("namespace").is_none(), "{pv}");

    // Phase 2: `kubectl get` prints upstream's columns for each.
    let (header, row) = table_row(&k.ok(&["get", "rc"]), "web");
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(row[..4], ["web", "2", "0", "0"]);
    let (header, row) = table_row(&k.ok(&["get", "pvc"]), "data");
    assert_eq!(
        header,
        ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"]
    );
    assert_eq!(row[..4], ["data", "Pending", "slow", "<unset>"]);
    let (header, row) = table_row(&k.ok(&["get", "pv"]), "pv1");
    assert_eq!(header[..5], ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM"]);
    assert_eq!(row[..5], ["pv1", "5Gi", "RWO,ROX", "Retain", "Pending"]);
    let (header, row) = table_row(&k.ok(&["get", "podtemplates"]), "tpl");
    assert_eq!(header, ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"]);
    assert_eq!(row, ["tpl", "busybox", "busybox", "app=tpl"]);

    // Phase 3: the controller scales through its scale subresource, and a spec change bumps its generation.
    k.ok(&["scale", "rc", "web", "--replicas=4"]);
    let rc = k.json(&["get", "rc", "web"]);
    assert_eq!((rc["spec"]["replicas"].as_i64(), rc["metadata"]["generation"].as_i64()), (Some(4), Some(2)));
    let scale: Value =
        serde_json::from_str(&k.ok(&["get", "--raw", "/api/v1/namespaces/default/replicationcontrollers/web/scale"]))
            .expect("a Scale");
    assert_eq!(scale["status"]["selector"], "app=web");

    // Phase 4: they are deleted like any other object.
    k.ok(&["delete", "-f", &manifest]);
    assert_eq!(k.ok(&["get", "rc,pvc,podtemplates", "-o", "name"]).trim(), "");
    assert!(k.fails(&["get", "pv", "pv1"]).contains("NotFound"));
}

#[tokio::test(flavor = "multi_thread")]
async fn system_namespaces_sorting_health_checks_and_error_details() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;
    k.ok(&["create", "configmap", "keep", "--from-literal=a=b"]);

    // Phase 1: the namespaces the cluster needs may not be deleted, not even in a dry run, and not as a
    // collection; nothing in them is touched.
    for ns in ["default", "kube-public", "kube-system"] {
        let err = k.fails(&["delete", "namespace", ns, "--wait=false"]);
        assert!(err.contains("this namespace may not be deleted"), "{ns}: {err}");
        let err = k.fails(&["delete", "namespace", ns, "--dry-run=server"]);
        assert!(err.contains("this namespace may not be deleted"), "{ns}: {err}");
    }
    let all = raw_status(&cluster, i, "DELETE", "/api/v1/namespaces", "").await;
    assert_eq!(all["code"], 405, "{all}");
    assert_eq!(k.ok(&["get", "ns", "default", "-o", "jsonpath={.status.phase}"]), "Active");
    assert_eq!(k.ok(&["get", "ns", "kube-system", "-o", "jsonpath={.status.phase}"]), "Active");
    assert_eq!(k.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"]), "b");
    let created = k.ok(&["create", "namespace", "scratch"]);
    assert!(created.contains("scratch"), "{created}");
    k.ok(&["delete", "namespace", "scratch"]);

    // Phase 2: every error Status carries details, so clients that read them (kubectl debug) do not crash.
    let unserved = raw_status(&cluster, i, "GET", "/apis/nowhere.example.com/v1/things", "").await;
    assert_eq!(unserved["code"], 404, "{unserved}");
    assert!(unserved["details"].is_object(), "{unserved}");
    let missing = raw_status(&cluster, i, "GET", "/api/v1/namespaces/default/configmaps/absent", "").await;
    assert_eq!(missing["details"]["name"], "absent", "{missing}");
    assert_eq!(missing["details"]["kind"], "configmaps", "{missing}");

    // Phase 3: the health endpoints list their checks when asked.
    let ready = k.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(ready.contains("[+]store ok") && ready.contains("[+]bootstrap-default-namespace ok"), "{ready}");
    assert!(ready.trim_end().ends_with("readyz check passed"), "{ready}");
    let live = k.ok(&["get", "--raw", "/livez?verbose"]);
    assert!(live.contains("[+]ping ok") && live.contains("livez check passed"), "{live}");
    assert_eq!(k.ok(&["get", "--raw", "/readyz"]), "ok");

    // Phase 4: sorting by a field outside metadata sorts the printed rows (kubectl asks the Table rows for
    // whole objects).
    k.ok(&["create", "deployment", "big", "--image=nginx", "--replicas=3"]);
    k.ok(&["create", "deployment", "small", "--image=nginx", "--replicas=1"]);
    let sorted = k.ok(&["get", "deploy", "--sort-by=.spec.replicas"]);
    let names: Vec<&str> = sorted.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["small", "big"], "{sorted}");
    let reversed = k.ok(&["get", "deploy", "--sort-by=.metadata.name"]);
    assert!(reversed.find("big").unwrap() < reversed.find("small").unwrap(), "{reversed}");

    // Phase 5: a JSON patch whose test fails names the object and keeps the reason.
    let err = k.fails(&[
        "patch",
        "configmap",
        "keep",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/a","value":"c"}]"#,
    ]);
    assert!(err.contains("\"keep\""), "the object is named: {err}");
    assert!(err.contains("/data/a"), "the failed operation is kept: {err}");
    assert_eq!(k.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"]), "b");
}

const LIMIT_RANGE: &str = r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: cpu-bounds
spec:
  limits:
  - type: Container
    default:
      cpu: 500m
    defaultRequest:
      cpu: 250m
    max:
      cpu: "1"
"#;

const QUOTA: &str = r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: q
  namespace: quota-test
spec:
  hard:
    pods: "2"
    requests.cpu: "1"
"#;

const PRIORITY_CLASS: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
description: for tests
"#;

/// A pod manifest with one container asking for `cpu` (none when empty).
fn pod_asking(name: &str, namespace: &str, cpu: &str) -> String {
    let resources =
        if cpu.is_empty() { String::new() } else { format!("\n    resources: {{requests: {{cpu: {cpu}}}}}") };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  containers:\n  \
         - name: c\n    image: busybox{resources}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_ranges_quotas_and_priority_classes_govern_new_pods() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;

    // Phase 1: a LimitRange's defaults land in a pod that states no resources, and its bounds refuse one
    // that asks for more.
    k.ok(&["apply", "-f", &k.manifest("limits.yaml", LIMIT_RANGE)]);
    k.ok(&["run", "plain", "--image=busybox"]);
    let pod = k.json(&["get", "pod", "plain"]);
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(
        (resources["requests"]["cpu"].as_str(), resources["limits"]["cpu"].as_str()),
        (Some("250m"), Some("500m"))
    );
    let set = pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"].as_str().unwrap_or_default();
    assert!(set.starts_with("LimitRanger plugin set: cpu request for container plain"), "{pod}");
    let err = k.fails(&[
        "run",
        "greedy",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"greedy","image":"busybox","resources":{"limits":{"cpu":"2"}}}]}}"#,
    ]);
    assert!(
        err.contains(r#"pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#),
        "{err}"
    );
    assert!(k.fails(&["get", "pod", "greedy"]).contains("NotFound"));
    let (header, row) = table_row(&k.ok(&["get", "limits"]), "cpu-bounds");
    assert_eq!((header, row.len()), (vec!["NAME".to_string(), "CREATED".into(), "AT".into()], 2));

    // Phase 2: a ResourceQuota gets its status from the leader, refuses the pod that would exceed it with
    // upstream's message, and frees what a deleted pod used.
    k.ok(&["create", "namespace", "quota-test"]);
    k.ok(&["apply", "-f", &k.manifest("quota.yaml", QUOTA)]);
    eventually(Duration::from_secs(20), "the quota's status", || async {
        let quota = k.json(&["get", "quota", "q", "-n", "quota-test"]);
        (quota["status"]["used"]["pods"] == "0").then_some(())
    })
    .await;
    let err = k.fails(&["apply", "-f", &k.manifest("none.yaml", &pod_asking("none", "quota-test", ""))]);
    assert!(err.contains("failed quota: q: must specify requests.cpu for: c"), "{err}");
    for name in ["a", "b"] {
        k.ok(&["apply", "-f", &k.manifest(&format!("{name}.yaml"), &pod_asking(name, "quota-test", "400m"))]);
    }
    let err = k.fails(&["apply", "-f", &k.manifest("c.yaml", &pod_asking("c", "quota-test", "400m"))]);
    assert!(
        err.contains(
            r#"pods "c" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1"#
        ),
        "{err}"
    );
    let (header, row) = table_row(&k.ok(&["get", "quota", "-n", "quota-test"]), "q");
    assert_eq!(header, ["NAME", "AGE", "REQUEST", "LIMIT"]);
    assert_eq!(row[2..], ["pods:", "2/2,", "requests.cpu:", "800m/1"]);
    k.ok(&["delete", "pod", "a", "-n", "quota-test"]);
    eventually(Duration::from_secs(20), "the quota to see the pod gone", || async {
        let quota = k.json(&["get", "quota", "q", "-n", "quota-test"]);
        (quota["status"]["used"]["requests.cpu"] == "400m").then_some(())
    })
    .await;
    k.ok(&["apply", "-f", &k.manifest("c.yaml", &pod_asking("c", "quota-test", "400m"))]);

    // Phase 3: creates racing through every replica at once never together exceed a quota.
    // The namespace's own `kube-root-ca.crt` counts, as upstream's quota counts it.
    let maps =
        r#"{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"maps"},"spec":{"hard":{"configmaps":"6"}}}"#;
    k.ok(&["apply", "-n", "quota-test", "-f", &k.manifest("maps.yaml", maps)]);
    eventually(Duration::from_secs(20), "the maps quota's status", || async {
        let quota = k.json(&["get", "quota", "maps", "-n", "quota-test"]);
        (quota["status"]["used"]["configmaps"] == "1").then_some(())
    })
    .await;
    let racing = (0..24).map(|n| {
        let cluster = &cluster;
        async move {
            let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"race-{n}"}}}}"#);
            raw_status(cluster, n % 3, "POST", "/api/v1/namespaces/quota-test/configmaps", &body).await
        }
    });
    let answers = futures::future::join_all(racing).await;
    let created = answers.iter().filter(|a| a["kind"] == "ConfigMap").count();
    let refused: Vec<&Value> = answers.iter().filter(|a| a["code"] == 403).collect();
    assert_eq!((created, refused.len()), (5, 19), "{answers:?}");
    assert!(refused[0]["message"].as_str().unwrap().contains("exceeded quota: maps, requested: configmaps=1"));
    assert_eq!(
        k.ok(&["get", "cm", "-n", "quota-test", "-o", "name"]).lines().filter(|l| l.contains("race-")).count(),
        5
    );
    assert_eq!(k.json(&["get", "quota", "maps", "-n", "quota-test"])["status"]["used"]["configmaps"], "6");

    // Phase 4: the system priority classes exist; a pod's class sets its priority, and a class that does not
    // exist is refused.
    let classes = k.ok(&["get", "priorityclasses", "-o", "name"]);
    assert!(classes.contains("system-node-critical") && classes.contains("system-cluster-critical"), "{classes}");
    k.ok(&["apply", "-f", &k.manifest("pc.yaml", PRIORITY_CLASS)]);
    let (header, row) = table_row(&k.ok(&["get", "pc"]), "high");
    assert_eq!(header, ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]);
    assert_eq!([&row[..3], &row[4..]].concat(), ["high", "1000", "false", "PreemptLowerPriority"]);
    let important = r#"{"spec":{"priorityClassName":"high"}}"#;
    k.ok(&["run", "important", "--image=busybox", "--overrides", important]);
    let pod = k.json(&["get", "pod", "important"]);
    assert_eq!(
        (pod["spec"]["priority"].as_i64(), pod["spec"]["preemptionPolicy"].as_str()),
        (Some(1000), Some("PreemptLowerPriority"))
    );
    assert_eq!(k.json(&["get", "pod", "plain"])["spec"]["priority"], 0);
    let err = k.fails(&["run", "lost", "--image=busybox", "--overrides", r#"{"spec":{"priorityClassName":"nope"}}"#]);
    assert!(err.contains(r#"pods "lost" is forbidden: no PriorityClass with name nope was found"#), "{err}");
    let err =
        k.fails(&["apply", "-f", &k.manifest("sys.yaml", &PRIORITY_CLASS.replace("name: high", "name: system-mine"))]);
    assert!(err.contains("priority class names with 'system-' prefix are reserved"), "{err}");
}

const HPA_V1: &str = r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  targetCPUUtilizationPercentage: 70
"#;

const EVENTS_V1: &str = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: web.1
eventTime: "2024-05-01T12:00:00.000000Z"
reportingController: example.com/tester
reportingInstance: tester-1
action: Testing
reason: Checked
note: all good
type: Normal
regarding: {kind: Deployment, name: web, namespace: default}
"#;

const NETWORKING: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: example.com/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: site
spec:
  ingressClassName: nginx
  rules:
  - host: foo.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
  tls:
  - hosts: [foo.example.com]
    secretName: cert
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny
spec:
  podSelector:
    matchLabels: {app: web}
  egress:
  - ports: [{port: 53}]
"#;

const PRUNED_SET: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: kept, labels: {set: pruning}}
data: {a: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dropped, labels: {set: pruning}}
data: {a: b}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn second_versions_networking_kinds_prune_and_cluster_info_dump() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;

    // Phase 1: every served group-version is listed.
    let versions = k.ok(&["api-versions"]);
    for gv in ["autoscaling/v1", "autoscaling/v2", "events.k8s.io/v1", "networking.k8s.io/v1", "scheduling.k8s.io/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} in {versions}");
    }

    // Phase 2: an autoscaling/v1 HPA is one object with its v2 form; a change through either version shows in
    // the other.
    k.ok(&["create", "deployment", "web", "--image=nginx"]);
    k.ok(&["apply", "-f", &k.manifest("hpa.yaml", HPA_V1)]);
    let v2 = k.json(&["get", "horizontalpodautoscalers.v2.autoscaling", "web"]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70, "{v2}");
    k.ok(&[
        "patch",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":7}}"#,
    ]);
    let v1 = k.json(&["get", "horizontalpodautoscalers.v1.autoscaling", "web"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    let v1_spec = &v1["spec"];
    assert_eq!(
        (v1_spec["maxReplicas"].as_i64(), v1_spec["targetCPUUtilizationPercentage"].as_i64()),
        (Some(7), Some(70))
    );
    let (header, row) = table_row(&k.ok(&["get", "hpa"]), "web");
    assert_eq!(header[..4], ["NAME", "REFERENCE", "TARGETS", "MINPODS"]);
    assert_eq!(row[1], "Deployment/web");
    assert_eq!(k.ok(&["get", "hpa", "-o", "name"]).trim(), "horizontalpodautoscaler.autoscaling/web");

    // Phase 3: kubectl's generators for these kinds (protobuf bodies) create what they print.
    k.ok(&["create", "deployment", "api", "--image=nginx"]);
    k.ok(&["autoscale", "deployment", "api", "--min=2", "--max=5", "--cpu-percent=80"]);
    let (_, row) = table_row(&k.ok(&["get", "hpa"]), "api");
    // The TARGETS cell has spaces: MINPODS and MAXPODS are counted from the end.
    assert_eq!([&row[1..2], &row[row.len() - 4..row.len() - 2]].concat(), ["Deployment/api", "2", "5"], "{row:?}");
    let hpa = k.json(&["get", "hpa", "api"]);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80, "{hpa}");
    k.ok(&["create", "quota", "counts", "--hard=pods=10,configmaps=5"]);
    assert_eq!(k.json(&["get", "quota", "counts"])["spec"]["hard"]["configmaps"], "5");
    k.ok(&["create", "priorityclass", "batch", "--value=100", "--description=batch work"]);
    assert_eq!(k.json(&["get", "pc", "batch"])["value"], 100);
    k.ok(&["create", "ingress", "simple", "--rule=foo.example.com/bar=svc1:8080"]);
    let ingress = k.json(&["get", "ingress", "simple"]);
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 8080);

    // Phase 4: an events.k8s.io Event is a core Event under other field names, both ways.
    k.ok(&["create", "-f", &k.manifest("event.yaml", EVENTS_V1)]);
    let core = k.json(&["get", "events", "web.1"]);
    assert_eq!((core["message"].as_str(), core["involvedObject"]["name"].as_str()), (Some("all good"), Some("web")));
    assert_eq!(core["reportingComponent"], "example.com/tester");
    let listed = k.json(&["get", "events.v1.events.k8s.io"]);
    let item = listed["items"].as_array().unwrap().iter().find(|e| e["metadata"]["name"] == "web.1").cloned();
    let item = item.expect("the event is listed through events.k8s.io");
    assert_eq!((item["note"].as_str(), item["regarding"]["kind"].as_str()), (Some("all good"), Some("Deployment")));
    let err = k.fails(&[
        "create",
        "-f",
        &k.manifest("bad-event.yaml", &EVENTS_V1.replace("action: Testing\n", "").replace("web.1", "web.2")),
    ]);
    assert!(err.contains("action: Required value"), "{err}");

    // Phase 5: Ingress, IngressClass and NetworkPolicy are stored, defaulted, validated and printed.
    k.ok(&["apply", "-f", &k.manifest("net.yaml", NETWORKING)]);
    let (header, row) = table_row(&k.ok(&["get", "ingress"]), "site");
    assert_eq!(header, ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]);
    assert_eq!(row[..4], ["site", "nginx", "foo.example.com", "80,"]);
    let policy = k.json(&["get", "netpol", "deny"]);
    assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert_eq!(policy["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    let (_, row) = table_row(&k.ok(&["get", "ingressclass"]), "nginx");
    assert_eq!(row[..3], ["nginx", "example.com/ingress-nginx", "<none>"]);
    let bad = NETWORKING.split("---").nth(1).unwrap().replace("pathType: Prefix", "pathType: Sometimes");
    let err = k.fails(&["apply", "-f", &k.manifest("bad-ing.yaml", &bad.replace("name: site", "name: odd"))]);
    assert!(err.contains("spec.rules[0].http.paths[0].pathType: Unsupported value: \"Sometimes\""), "{err}");

    // Phase 6: `apply --prune` with kubectl's default allowlist removes what the manifests no longer name.
    let set = k.manifest("set.yaml", PRUNED_SET);
    k.ok(&["apply", "--prune", "-l", "set=pruning", "-f", &set]);
    let kept_only = k.manifest("set.yaml", PRUNED_SET.split("---").next().unwrap());
    let out = k.ok(&["apply", "--prune", "-l", "set=pruning", "-f", &kept_only]);
    assert!(out.contains("configmap/dropped pruned"), "{out}");
    assert_eq!(k.ok(&["get", "cm", "-l", "set=pruning", "-o", "name"]).trim(), "configmap/kept");

    // Phase 7: `cluster-info dump` reads every kind it wants and writes them out.
    let dump = k.work.path().join("dump");
    k.ok(&["cluster-info", "dump", "--output-directory", dump.to_str().unwrap()]);
    let deployments = std::fs::read_to_string(dump.join("default").join("deployments.json")).expect("dumped");
    assert!(deployments.contains("\"web\""), "{deployments}");
}

/// The default ServiceAccount of the `default` namespace exists (pods may be created there).
async fn default_service_account(k: &Kubectl) {
    eventually(Duration::from_secs(20), "the default service account", || async {
        k.run(&["get", "serviceaccount", "default"]).status.success().then_some(())
    })
    .await;
}

const SETTINGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n";

const SCRATCH_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: scratch
spec:
  securityContext: {}
  containers:
  - name: c
    image: busybox
    securityContext: {}
    resources: {}
  volumes:
  - name: tmp
    emptyDir: {}
"#;

const BATCH_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: applied
spec:
  template:
    metadata:
      labels:
        app: batch
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
"#;

const KUBELET_NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
status:
  capacity:
    cpu: "4"
    memory: 8Gi
    pods: "110"
  addresses:
  - type: InternalIP
    address: 127.0.0.2
"#;

/// The labels a Job's pods get from its generated selector (`uid` is the Job's).
fn job_labels(name: &str, uid: &str) -> Value {
    serde_json::json!({
        "job-name": name, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid,
    })
}

/// Checks a Job created without a manual selector: it selects its own uid, its template carries the labels,
/// and `-l` finds it by them.
fn assert_generated_selector(k: &Kubectl, name: &str, extra_template_labels: &[(&str, &str)]) -> Value {
    let job = k.json(&["get", "job", name]);
    let uid = job["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(
        job["spec"]["selector"],
        serde_json::json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        "{job}"
    );
    let mut labels = job_labels(name, &uid);
    for (key, value) in extra_template_labels {
        labels[*key] = Value::from(*value);
    }
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels, "{job}");
    assert_eq!(job["spec"]["manualSelector"], false, "upstream 1.33 defaults it: {job}");
    job
}

/// Checks that a Job whose own labels are its template's is found by them.
fn assert_found_by_its_labels(k: &Kubectl, job: &Value) {
    let (name, uid) = (job["metadata"]["name"].as_str().unwrap(), job["metadata"]["uid"].as_str().unwrap());
    assert_eq!(job["metadata"]["labels"], job_labels(name, uid), "{job}");
    for selector in [format!("batch.kubernetes.io/controller-uid={uid}"), format!("job-name={name}")] {
        assert_eq!(k.ok(&["get", "jobs", "-l", &selector, "-o", "name"]).trim(), format!("job.batch/{name}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_are_stored_as_upstream_stores_them() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    default_service_account(&k).await;

    // Phase 1: an annotation added and removed leaves no empty map behind, so `kubectl diff` of the file that
    // made the object finds nothing (exit 0, no output).
    let settings = k.manifest("settings.yaml", SETTINGS);
    k.ok(&["create", "-f", &settings]);
    k.ok(&["annotate", "configmap", "settings", "note=x"]);
    k.ok(&["annotate", "configmap", "settings", "note-"]);
    let cm = k.json(&["get", "configmap", "settings"]);
    assert!(cm["metadata"].get("annotations").is_none(), "{cm}");
    let diff = k.run(&["diff", "-f", &settings]);
    assert_eq!(diff.status.code(), Some(0), "{}", String::from_utf8_lossy(&diff.stdout));
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "");

    // Phase 2: the same after `kubectl apply`, whose own annotation a merge patch then removes.
    let applied = k.manifest("applied.yaml", &SETTINGS.replace("settings", "applied"));
    k.ok(&["apply", "-f", &applied]);
    let annotation = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":null}}}"#;
    k.ok(&["patch", "configmap", "applied", "--type=merge", "-p", annotation]);
    let cm = k.json(&["get", "configmap", "applied"]);
    assert!(cm["metadata"].get("annotations").is_none(), "{cm}");
    let diff = k.run(&["diff", "-f", &applied]);
    assert_eq!(diff.status.code(), Some(0), "{}", String::from_utf8_lossy(&diff.stdout));
    let server_side = k.manifest("server-side.yaml", &SETTINGS.replace("settings", "server-side"));
    k.ok(&["apply", "--server-side", "-f", &server_side]);
    k.ok(&["annotate", "configmap", "server-side", "note=x"]);
    k.ok(&["annotate", "configmap", "server-side", "note-"]);
    let diff = k.run(&["diff", "--server-side", "-f", &server_side]);
    assert_eq!(diff.status.code(), Some(0), "{}", String::from_utf8_lossy(&diff.stdout));
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "");
    k.ok(&["patch", "configmap", "applied", "--type=merge", "-p", r#"{"data":{"a":null},"metadata":{"labels":{}}}"#]);
    let cm = k.json(&["get", "configmap", "applied"]);
    assert!(cm.get("data").is_none() && cm["metadata"].get("labels").is_none(), "{cm}");

    // Phase 3: empty structs are values, not absences: they stay.
    k.ok(&["apply", "-f", &k.manifest("scratch.yaml", SCRATCH_POD)]);
    let pod = k.json(&["get", "pod", "scratch"]);
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], serde_json::json!({}), "{pod}");
    assert_eq!(pod["spec"]["securityContext"], serde_json::json!({}), "{pod}");
    assert_eq!(pod["spec"]["containers"][0]["securityContext"], serde_json::json!({}), "{pod}");
    assert_eq!(pod["spec"]["containers"][0]["resources"], serde_json::json!({}), "{pod}");

    // Phase 4: a Job made from a CronJob, by `kubectl create job` and by `kubectl apply` gets upstream's
    // generated selector, and its pods' labels name it.
    k.ok(&["create", "cronjob", "nightly", "--image=busybox", "--schedule=0 3 * * *"]);
    k.ok(&["create", "job", "manual-run", "--from=cronjob/nightly"]);
    let job = assert_generated_selector(&k, "manual-run", &[]);
    assert_eq!(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual", "{job}");
    assert_found_by_its_labels(&k, &job);
    k.ok(&["create", "job", "plain", "--image=busybox"]);
    let job = assert_generated_selector(&k, "plain", &[]);
    assert_found_by_its_labels(&k, &job);
    let batch = k.manifest("job.yaml", BATCH_JOB);
    k.ok(&["apply", "-f", &batch]);
    // Its own labels were defaulted from its template's before the generated ones were added, as upstream's.
    let job = assert_generated_selector(&k, "applied", &[("app", "batch")]);
    assert_eq!(job["metadata"]["labels"], serde_json::json!({"app": "batch"}), "{job}");
    let out = k.ok(&["apply", "-f", &batch]);
    assert!(out.contains("job.batch/applied unchanged"), "{out}");

    // Phase 5: a Node registers with its status, as a kubelet does.
    k.ok(&["create", "-f", &k.manifest("node.yaml", KUBELET_NODE)]);
    let node = k.json(&["get", "node", "worker-1"]);
    assert_eq!(node["status"]["capacity"]["cpu"], "4", "{node}");
    assert_eq!(node["status"]["allocatable"]["memory"], "8Gi", "{node}");
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.2", "{node}");
}

#[tokio::test(flavor = "multi_thread")]
async fn service_types_change_and_release_what_they_no_longer_use() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    let ip = |s: &Value| s["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();

    // Phase 1: a NodePort Service becomes a ClusterIP one: its node port goes, its cluster IP stays.
    k.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"]);
    let web = k.json(&["get", "service", "web"]);
    let node_port = web["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    k.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    let now = k.json(&["get", "service", "web"]);
    assert_eq!(now["spec"]["type"], "ClusterIP", "{now}");
    assert!(now["spec"]["ports"][0].get("nodePort").is_none(), "{now}");
    assert!(now["spec"].get("externalTrafficPolicy").is_none(), "{now}");
    assert_eq!(ip(&now), ip(&web));
    let (_, row) = table_row(&k.ok(&["get", "svc"]), "web");
    assert_eq!(row[1], "ClusterIP", "{row:?}");
    assert_eq!(row[4], "80/TCP", "{row:?}");

    // Phase 2: the released node port can be claimed by another Service.
    let claim = k.manifest(
        "claim.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: claim\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {node_port}\n"
        ),
    );
    k.ok(&["apply", "-f", &claim]);
    assert_eq!(k.json(&["get", "service", "claim"])["spec"]["ports"][0]["nodePort"], node_port);

    // Phase 3: a ClusterIP Service becomes an ExternalName one: its cluster IP goes and another Service may
    // ask for it.
    k.ok(&["create", "service", "clusterip", "db", "--tcp=5432"]);
    let db_ip = ip(&k.json(&["get", "service", "db"]));
    k.ok(&["patch", "svc", "db", "-p", r#"{"spec":{"type":"ExternalName","externalName":"db.example.com"}}"#]);
    let db = k.json(&["get", "service", "db"]);
    assert_eq!(db["spec"]["type"], "ExternalName", "{db}");
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(db["spec"].get(field).is_none(), "{field}: {db}");
    }
    let (_, row) = table_row(&k.ok(&["get", "svc"]), "db");
    assert_eq!((row[1].as_str(), row[2].as_str(), row[3].as_str()), ("ExternalName", "<none>", "db.example.com"));
    let same_ip = k.manifest(
        "same-ip.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: reuse\nspec:\n  clusterIP: {db_ip}\n  ports:\n  - port: 80\n"),
    );
    k.ok(&["apply", "-f", &same_ip]);
    assert_eq!(ip(&k.json(&["get", "service", "reuse"])), db_ip);

    // Phase 4: back to ClusterIP, it gets a new address.
    k.ok(&["patch", "svc", "db", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","externalName":null}}"#]);
    let db = k.json(&["get", "service", "db"]);
    assert!(ip(&db).starts_with("10.96.") && ip(&db) != db_ip, "{db}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_need_their_service_account_and_namespaces_say_what_holds_them() {
    let cluster = TestCluster::start(3).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    default_service_account(&k).await;

    // Phase 1: a pod naming a ServiceAccount that does not exist is refused, and nothing is written.
    let err = k.fails(&["run", "p", "--image=busybox", "--overrides", r#"{"spec":{"serviceAccountName":"nosuch"}}"#]);
    assert!(
        err.contains(
            r#"pods "p" is forbidden: error looking up service account default/nosuch: serviceaccount "nosuch" not found"#
        ),
        "{err}"
    );
    assert!(k.fails(&["get", "pod", "p"]).contains("NotFound"));
    k.ok(&["create", "serviceaccount", "robot"]);
    k.ok(&["run", "p", "--image=busybox", "--overrides", r#"{"spec":{"serviceAccountName":"robot"}}"#]);
    assert_eq!(k.json(&["get", "pod", "p"])["spec"]["serviceAccountName"], "robot");

    // Phase 2: a fresh namespace takes pods at once; they run as its default account.
    k.ok(&["create", "namespace", "fresh"]);
    k.ok(&["run", "q", "--image=busybox", "-n", "fresh"]);
    let q = k.json(&["get", "pod", "q", "-n", "fresh"]);
    assert_eq!(q["spec"]["serviceAccountName"], "default", "{q}");
    assert_eq!(q["spec"]["serviceAccount"], "default", "{q}");

    // Phase 3: a namespace whose content a finalizer holds says so in its conditions, with upstream's reasons
    // and messages; once the finalizer goes, so does the namespace.
    k.ok(&["create", "namespace", "doomed"]);
    let held = k.manifest(
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  finalizers:\n  - example.com/hold\n",
    );
    k.ok(&["apply", "-f", &held]);
    k.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let condition = |ns: &Value, kind: &str| {
        ns["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).cloned()
    };
    let ns = eventually(Duration::from_secs(30), "the namespace's conditions", || async {
        let ns = k.json(&["get", "namespace", "doomed"]);
        let remaining = condition(&ns, "NamespaceFinalizersRemaining")?;
        (remaining["status"] == "True").then_some(ns)
    })
    .await;
    let content = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(content["reason"], "SomeResourcesRemain", "{ns}");
    assert_eq!(content["message"], "Some resources are remaining: configmaps. has 1 resource instances", "{ns}");
    let finalizers = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(finalizers["reason"], "SomeFinalizersRemain", "{ns}");
    assert_eq!(
        finalizers["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
        "{ns}"
    );
    for (kind, reason) in [
        ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions"),
        ("NamespaceDeletionContentFailure", "ContentDeleted"),
    ] {
        let c = condition(&ns, kind).unwrap_or_else(|| panic!("{kind} missing: {ns}"));
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some(reason)), "{ns}");
    }
    assert_eq!(ns["status"]["phase"], "Terminating");
    k.ok(&["patch", "configmap", "held", "-n", "doomed", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    k.ok(&["wait", "--for=delete", "namespace/doomed", "--timeout=30s"]);
}

/// Every `ip:port` an Endpoints object lists, sorted.
fn endpoint_addresses(endpoints: &Value) -> Vec<String> {
    let mut all: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|subset| {
            let ports: Vec<i64> =
                subset["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
            let ips: Vec<String> = subset["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["ip"].as_str().unwrap().to_string())
                .collect();
            ips.into_iter().flat_map(move |ip| ports.clone().into_iter().map(move |port| format!("{ip}:{port}")))
        })
        .collect();
    all.sort();
    all
}

/// Every `ip:port` the EndpointSlices of a list carry, sorted.
fn slice_addresses(list: &Value) -> Vec<String> {
    let mut all = Vec::new();
    for slice in list["items"].as_array().unwrap() {
        for port in slice["ports"].as_array().into_iter().flatten() {
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                for ip in endpoint["addresses"].as_array().unwrap() {
                    all.push(format!("{}:{}", ip.as_str().unwrap(), port["port"]));
                }
            }
        }
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_service_lists_the_replicas_and_follows_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let survivor = follower(leader);
    let k = Kubectl::for_replica(&cluster, survivor).await;
    let addresses: Vec<String> = cluster.local.members.iter().map(|m| m.api_addr.to_string()).collect();
    let mut all = addresses.clone();
    all.sort();

    // Phase 1: the leader creates the Service on the range's first address, port https 443 to the API port
    // (the lowest of the replicas' API ports, once every replica has published its address).
    let lowest_port = (0..3).map(|i| cluster.local.members[i].api_addr.port()).min().unwrap();
    let service = eventually(Duration::from_secs(20), "the kubernetes service", || async {
        let out = k.run(&["get", "service", "kubernetes", "-o", "json"]);
        let service = out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())?;
        (service["spec"]["ports"][0]["targetPort"] == lowest_port).then_some(service)
    })
    .await;
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.1", "{service}");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["metadata"]["labels"]["component"], "apiserver");
    assert_eq!(service["metadata"]["labels"]["provider"], "kubernetes");
    assert_eq!(
        service["spec"]["ports"],
        serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": lowest_port}])
    );
    let table = k.ok(&["get", "svc", "kubernetes"]);
    assert!(table.contains("10.96.0.1") && table.contains("443/TCP"), "{table}");

    // Phase 2: its Endpoints and EndpointSlices list the three replicas' API addresses.
    eventually(Duration::from_secs(20), "the endpoints to list every replica", || async {
        let out = k.run(&["get", "endpoints", "kubernetes", "-o", "json"]);
        let endpoints: Value = serde_json::from_slice(&out.stdout).ok()?;
        (endpoint_addresses(&endpoints) == all).then_some(())
    })
    .await;
    // The slices are written after the Endpoints, in a write of their own.
    let slices = eventually(Duration::from_secs(10), "the endpoint slices to list every replica", || async {
        let slices = k.json(&["get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes"]);
        (slice_addresses(&slices) == all).then_some(slices)
    })
    .await;
    assert!(slices["items"].as_array().unwrap().iter().any(|s| s["metadata"]["name"] == "kubernetes"), "{slices}");

    // Phase 3: no other Service may take the address, even by asking for it.
    let err = k.fails(&["create", "service", "clusterip", "squatter", "--tcp=80:80", "--clusterip=10.96.0.1"]);
    assert!(err.contains("already allocated"), "{err}");
    assert!(k.fails(&["get", "service", "squatter"]).contains("NotFound"));

    // Phase 4: the leader is SIGKILLed; under the new leader the objects are still there, the same, and the
    // endpoints list the two replicas still answering; componentstatuses shows the dead one unhealthy.
    let uid = service["metadata"]["uid"].clone();
    cluster.local.signal(leader, raftsman::cluster::local::Signal::Kill);
    let mut survivors: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| addresses[i].clone()).collect();
    survivors.sort();
    eventually(Duration::from_secs(30), "the endpoints to drop the dead replica", || async {
        let out = k.run(&["get", "endpoints", "kubernetes", "-o", "json"]);
        let endpoints: Value = serde_json::from_slice(&out.stdout).ok()?;
        (endpoint_addresses(&endpoints) == survivors).then_some(())
    })
    .await;
    let slices = k.json(&["get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes"]);
    assert_eq!(slice_addresses(&slices), survivors, "{slices}");
    let after = k.json(&["get", "service", "kubernetes"]);
    assert_eq!(after["metadata"]["uid"], uid);
    assert_eq!(after["spec"]["clusterIP"], "10.96.0.1");
    let dead = format!("etcd-{}", cluster.local.members[leader].name);
    let statuses = k.ok(&["get", "componentstatuses"]);
    let (_, row) = table_row(&statuses, &dead);
    assert_eq!(row.get(1).map(String::as_str), Some("Unhealthy"), "{statuses}");
    assert!(statuses.contains("does not answer"), "{statuses}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bindings_component_statuses_metrics_and_version_are_served() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;

    // Phase 1: a Binding posted to the namespace's bindings binds the pod it names, once.
    k.ok(&["run", "web", "--image=nginx", "--restart=Never"]);
    let binding =
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"kind":"Node","name":"node-a"}}"#;
    let bound = raw_status(&cluster, i, "POST", "/api/v1/namespaces/default/bindings", binding).await;
    assert_eq!((bound["status"].as_str(), bound["code"].as_i64()), (Some("Success"), Some(201)), "{bound}");
    assert_eq!(k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]), "node-a");
    let again =
        raw_status(&cluster, i, "POST", "/api/v1/namespaces/default/bindings", &binding.replace("node-a", "node-b"))
            .await;
    assert_eq!(again["code"], 409, "{again}");
    assert!(again["message"].as_str().unwrap().contains("already assigned"), "{again}");
    let absent = raw_status(
        &cluster,
        i,
        "POST",
        "/api/v1/namespaces/default/bindings",
        &binding.replace("\"web\"", "\"absent\""),
    )
    .await;
    assert_eq!(absent["code"], 404, "{absent}");
    let nameless = raw_status(
        &cluster,
        i,
        "POST",
        "/api/v1/namespaces/default/bindings",
        r#"{"kind":"Binding","target":{"name":"node-a"}}"#,
    )
    .await;
    assert_eq!(nameless["code"], 400, "{nameless}");
    let listed = raw_status(&cluster, i, "GET", "/api/v1/namespaces/default/bindings", "").await;
    assert_eq!(listed["code"], 405, "{listed}");
    assert_eq!(k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]), "node-a");
    // kubectl finds the resource of kind Binding through discovery. (It validates a kind that cannot be patched
    // with the OpenAPI v2 document, which is not served yet.)
    k.ok(&["run", "api", "--image=nginx", "--restart=Never"]);
    let manifest = k.manifest(
        "binding.yaml",
        "apiVersion: v1\nkind: Binding\nmetadata:\n  name: api\ntarget:\n  kind: Node\n  name: node-b\n",
    );
    k.ok(&["create", "-f", &manifest, "--validate=false"]);
    assert_eq!(k.ok(&["get", "pod", "api", "-o", "jsonpath={.spec.nodeName}"]), "node-b");

    // Phase 2: discovery lists bindings (create only) and componentstatuses (get and list only).
    let resources = k.ok(&["api-resources", "-o", "wide"]);
    let (_, bindings) = table_row(&resources, "bindings ");
    assert_eq!(bindings[1..4], ["v1", "true", "Binding"], "{resources}");
    assert_eq!(bindings[4..].join(" "), "create", "{resources}");
    let (_, cs) = table_row(&resources, "componentstatuses ");
    assert_eq!(cs[1..5], ["cs", "v1", "false", "ComponentStatus"], "{resources}");
    assert_eq!(cs[5..].join(" "), "get,list", "{resources}");

    // Phase 3: kubectl get cs prints upstream's columns: every replica and the leader's components, healthy,
    // with upstream's deprecation warning.
    let out = k.run(&["get", "cs"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let (header, _) = table_row(&table, "NAME");
    assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"], "{table}");
    let mut names: Vec<String> =
        table.lines().skip(1).filter_map(|l| l.split_whitespace().next().map(String::from)).collect();
    names.sort();
    assert_eq!(names, ["controller-manager", "etcd-n1", "etcd-n2", "etcd-n3", "scheduler"], "{table}");
    for line in table.lines().skip(1) {
        assert_eq!(line.split_whitespace().nth(1), Some("Healthy"), "{table}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("ComponentStatus is deprecated"), "{out:?}");
    let one = k.json(&["get", "componentstatus", "etcd-n2"]);
    assert_eq!(one["conditions"][0]["type"], "Healthy", "{one}");
    assert_eq!(one["conditions"][0]["status"], "True", "{one}");
    assert!(k.fails(&["get", "cs", "etcd-n9"]).contains("NotFound"));

    // Phase 4: they are read-only.
    for (method, path) in [("DELETE", "/api/v1/componentstatuses/scheduler"), ("POST", "/api/v1/componentstatuses")] {
        let refused = raw_status(&cluster, i, method, path, r#"{"metadata":{"name":"x"}}"#).await;
        assert_eq!(refused["code"], 405, "{method} {path}: {refused}");
        assert_eq!(refused["reason"], "MethodNotAllowed", "{refused}");
    }

    // Phase 5: /metrics answers in Prometheus' text format; a linearizable read counts one read index.
    let read_indexes = || async {
        let (head, body) = raw_get(&cluster, i, "/metrics", "text/plain").await;
        assert!(head.starts_with("http/1.1 200") && head.contains("content-type: text/plain"), "{head}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("# TYPE raftsman_store_read_indexes_total counter\n"), "{body}");
        let line = body.lines().find(|l| l.starts_with("raftsman_store_read_indexes_total ")).expect("the counter");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    let before = read_indexes().await;
    k.ok(&["get", "namespace", "default"]);
    assert_eq!(read_indexes().await, before + 1, "one get, one read index");

    // Phase 6: kubectl version shows the build: the Kubernetes version with raftsman's, commit, date.
    let version = k.json(&["version"]);
    let server = &version["serverVersion"];
    let git_version = server["gitVersion"].as_str().unwrap();
    assert_eq!(git_version, format!("v1.33.0+raftsman.{}", env!("CARGO_PKG_VERSION")), "{server}");
    let commit = server["gitCommit"].as_str().unwrap();
    assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "{server}");
    assert!(["clean", "dirty"].contains(&server["gitTreeState"].as_str().unwrap()), "{server}");
    let date = server["buildDate"].as_str().unwrap();
    assert!(date.parse::<jiff::Timestamp>().is_ok() && date.ends_with('Z') && date > "2025", "{server}");
    assert!(server["goVersion"].as_str().unwrap().starts_with("rustc 1."), "{server}");
    assert_eq!(server["compiler"], "rustc");
    assert_eq!(server["platform"], "linux/amd64");
}

/// The head and body of an HTTP/1.1 GET to replica `i`'s API with the given Accept header, as the admin.
async fn raw_get(cluster: &TestCluster, i: usize, path: &str, accept: &str) -> (String, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let mut stream = harness::api::connect(cluster, i).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nAccept: {accept}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = harness::api::read_all(&mut stream).await;
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    (String::from_utf8_lossy(&answer[..end]).to_lowercase(), answer[end + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_v2_lets_kubectl_name_unserved_kinds_and_validate_lists() {
    let cluster = TestCluster::start(3).await;
    let i = follower(cluster.leader().await);
    let k = Kubectl::for_replica(&cluster, i).await;

    // Phase 1: a kind the server does not serve has no OpenAPI v3 document, so kubectl's default validation
    // falls back to OpenAPI v2, then says the kind is unknown.
    let widget = k.manifest("widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n");
    for verb in ["create", "apply"] {
        let err = k.fails(&[verb, "-f", &widget]);
        assert!(err.contains(r#"no matches for kind "Widget" in version "example.com/v1""#), "{verb}: {err}");
        assert!(!err.contains("failed to download openapi") && !err.contains("error validating"), "{verb}: {err}");
    }

    // Phase 2: a served kind with an unknown field still meets the server's strict field validation, and
    // nothing is created.
    let strict = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata:\n  a: b\nbogus: 1\n";
    let err = k.fails(&["create", "-f", &k.manifest("strict.yaml", strict)]);
    assert!(err.contains("strict decoding error") && err.contains(r#"unknown field "bogus""#), "{err}");
    assert!(k.fails(&["get", "configmap", "strict"]).contains("NotFound"));

    // Phase 3: kubectl validates the items of a List itself, against the v2 definitions: a bad item fails before
    // anything is sent; good items are created.
    let list = |second: &str| {
        format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: listed-a\n  \
             data:\n    a: b\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: listed-b\n  spec:\n{second}    \
             containers:\n    - name: c\n      image: busybox\n"
        )
    };
    let err = k.fails(&["create", "-f", &k.manifest("bad-list.yaml", &list("    bogus: 1\n"))]);
    assert!(err.contains("error validating data") && err.contains(r#"unknown field "bogus""#), "{err}");
    assert!(err.contains("io.k8s.api.core.v1.PodSpec"), "{err}");
    assert_eq!(k.ok(&["get", "configmaps,pods", "-o", "name", "--field-selector", NOT_ROOT_CA]).trim(), "");
    k.ok(&["create", "-f", &k.manifest("list.yaml", &list(""))]);
    assert_eq!(k.ok(&["get", "configmap", "listed-a", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(k.ok(&["get", "pod", "listed-b", "-o", "jsonpath={.spec.containers[0].image}"]), "busybox");

    // Phase 4: the document itself, as JSON and as the protobuf client-go decodes; other encodings are 406.
    let (head, body) = raw_get(&cluster, i, "/openapi/v2", "application/json").await;
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: application/json"), "{head}");
    let document: Value = serde_json::from_slice(&body).expect("a JSON document");
    assert_eq!(document["swagger"], "2.0");
    let pod = &document["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(pod["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
    let patch = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
    let protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (head, body) = raw_get(&cluster, i, "/openapi/v2", protobuf).await;
    assert!(head.contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"), "{head}");
    assert!(!body.starts_with(b"{"), "not JSON");
    assert!(body.windows(5).any(|field| field == b"\x0a\x032.0"), "Document.swagger (field 1) is 2.0");
    let (head, _) = raw_get(&cluster, i, "/openapi/v2", "application/yaml").await;
    assert!(head.starts_with("http/1.1 406"), "{head}");
}

const CORE_EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: web.core
involvedObject: {kind: ConfigMap, name: web, namespace: default}
reason: Checked
message: kept for a while
type: Normal
"#;

/// The granted TTL `etcdctl lease timetolive` reports for a lease, in seconds.
fn granted_ttl(etcd: &Etcdctl, lease: i64) -> i64 {
    let out = etcd.ok(&["lease", "timetolive", &format!("{lease:x}")]);
    let ttl = out.split("granted with TTL(").nth(1).and_then(|rest| rest.split("s)").next());
    ttl.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no granted TTL in {out:?}"))
}

/// The names `kubectl get events -o name` lists in the default namespace.
fn event_names(k: &Kubectl) -> Vec<String> {
    k.ok(&["get", "events", "-o", "name"]).lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_expire_after_the_event_ttl_and_only_they_carry_a_lease() {
    let ttl = Duration::from_secs(5);
    let cluster = TestCluster::start_with(3, &["--event-ttl", "5s"]).await;
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    let etcd = Etcdctl::of(&cluster.local);
    const CORE_KEY: &str = "/registry/events/default/web.core";
    const EVENTS_V1_KEY: &str = "/registry/events/default/web.1";
    const CONFIG_MAP_KEY: &str = "/registry/configmaps/default/web";

    // Phase 1: an Event through each API (core v1 and events.k8s.io/v1) and a ConfigMap are created and listed.
    k.ok(&["create", "configmap", "web", "--from-literal=a=b"]);
    let before_create = Instant::now();
    k.ok(&["create", "-f", &k.manifest("core-event.yaml", CORE_EVENT)]);
    k.ok(&["create", "-f", &k.manifest("events-v1.yaml", EVENTS_V1)]);
    let listed = event_names(&k);
    assert!(listed.contains(&"event/web.core".into()) && listed.contains(&"event/web.1".into()), "{listed:?}");

    // Phase 2: each Event's key carries a lease of the TTL plus the short reuse window (5% of 5 s, rounded up to
    // whole seconds); the ConfigMap's key carries none.
    let core_lease = etcd.lease_of(CORE_KEY).expect("the core Event is stored");
    let v1_lease = etcd.lease_of(EVENTS_V1_KEY).expect("the events.k8s.io Event is stored");
    assert!(core_lease != 0 && v1_lease != 0, "Events are written with a lease: {core_lease} {v1_lease}");
    assert_eq!(granted_ttl(&etcd, core_lease), 6);
    assert_eq!(granted_ttl(&etcd, v1_lease), 6);
    assert_eq!(etcd.lease_of(CONFIG_MAP_KEY), Some(0), "a ConfigMap is stored without a lease");

    // Phase 3: a patch later than the reuse window writes the Event again with a fresh lease, so it lives a
    // full TTL from the patch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_patch = Instant::now();
    k.ok(&["annotate", "event", "web.core", "touched=yes"]);
    let patched_lease = etcd.lease_of(CORE_KEY).expect("the patched Event is stored");
    assert!(patched_lease != 0 && patched_lease != core_lease, "a fresh lease after the window: {patched_lease}");

    // Phase 4: the scheduler's Events (written in-process through the same registry) carry a lease too.
    default_service_account(&k).await;
    k.ok(&["run", "waiting", "--image=nginx"]);
    let scheduler_event = eventually(Duration::from_secs(20), "the FailedScheduling event", || async {
        let events = k.json(&["get", "events", "--field-selector", "reason=FailedScheduling"]);
        let name = events["items"].as_array()?.first()?["metadata"]["name"].as_str()?.to_string();
        Some(name)
    })
    .await;
    let scheduler_lease = etcd.lease_of(&format!("/registry/events/default/{scheduler_event}"));
    assert!(scheduler_lease.is_some_and(|l| l != 0), "the scheduler's Event has a lease: {scheduler_lease:?}");
    k.ok(&["delete", "pod", "waiting"]);

    // Phase 5: the Events go once their TTL (plus at most the window) has passed, never before; the
    // events.k8s.io one first, the patched one a full TTL after its patch. The ConfigMap stays.
    eventually(Duration::from_secs(20), "the events.k8s.io Event to expire", || async {
        (!event_names(&k).contains(&"event/web.1".into())).then_some(())
    })
    .await;
    assert!(before_create.elapsed() >= ttl, "gone after {:?}, before its TTL", before_create.elapsed());
    eventually(Duration::from_secs(20), "the patched Event to expire", || async {
        (!event_names(&k).contains(&"event/web.core".into())).then_some(())
    })
    .await;
    assert!(before_patch.elapsed() >= ttl, "gone {:?} after its patch, before its TTL", before_patch.elapsed());
    eventually(Duration::from_secs(20), "every Event of the namespace to expire", || async {
        etcd.get_json(&["/registry/events/default/", "--prefix", "--keys-only"]).is_empty().then_some(())
    })
    .await;
    assert!(event_names(&k).is_empty());
    assert_eq!(etcd.lease_of(CONFIG_MAP_KEY), Some(0), "the ConfigMap has not expired");
    assert_eq!(k.json(&["get", "configmap", "web"])["data"]["a"], "b");
}

/// `kubectl get -w` goes on through automatic compactions (here every second): compaction ends only the watches
/// that fall behind it, so the watch prints every change and is still running after several of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_w_goes_on_through_compactions() {
    let cluster = TestCluster::start_with(3, &["--compaction-interval", "1s"]).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    k.ok(&["create", "configmap", "c0", "--from-literal=v=0"]);
    let created = k.json(&["get", "configmap", "c0", "-o", "json"])["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_string();
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(k.cache.path())
        .args(["get", "configmaps", "-w", "-o", "custom-columns=NAME:.metadata.name,V:.data.v", "--no-headers"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for v in 1..=5 {
        k.ok(&["patch", "configmap", "c0", "-p", &format!(r#"{{"data":{{"v":"{v}"}}}}"#)]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    // The history up to the create is gone by now: several compactions ran while the watch was open.
    let stale = format!("/api/v1/namespaces/default/configmaps?resourceVersion={created}&resourceVersionMatch=Exact");
    eventually(Duration::from_secs(10), "the create's revision compacted", || async {
        k.fails(&["get", "--raw", &stale]).contains("too old").then_some(())
    })
    .await;
    assert!(watch.try_wait().unwrap().is_none(), "kubectl get -w ended");
    watch.kill().unwrap();
    let mut printed = String::new();
    watch.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let _ = watch.wait();
    let values: Vec<&str> = printed.lines().filter_map(|l| l.strip_prefix("c0")).map(str::trim).collect();
    assert_eq!(values, ["0", "1", "2", "3", "4", "5"], "{printed}");
}
