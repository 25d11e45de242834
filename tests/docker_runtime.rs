//! `raftsman agent --runtime docker` against a three-replica cluster and the machine's Docker Engine, driven with real
//! kubectl: a Deployment of a locally built image serves each pod's hostname from its pod IP, its containers carry the
//! pod's labels, `kubectl logs` (and `--previous`), `kubectl exec` (output, stdin, exit codes), `kubectl attach` and
//! `kubectl top` work through a follower, a `docker kill`ed container is restarted, an agent restart and replica kills
//! restart nothing, and deleting the Deployment removes every container; probes drive readiness and restart a container
//! whose liveness fails, a container beyond its memory limit is OOMKilled and missing images wait as upstream says;
//! ConfigMaps and Secrets reach containers as env and as files (updated in place), with init containers, emptyDir,
//! downward API and hostPath volumes, a security context and a preStop hook.

mod harness;

use std::time::Duration;

use raftsman::cluster::local::Signal;
use serde_json::Value;

use harness::agent::Agent;
use harness::docker::{self, NodeCleanup};
use harness::kubectl::{follower, Kubectl};
use harness::{eventually, http_get, TestCluster};

const SERVE: &str = "mkdir -p /www && hostname > /www/index.html && echo serving $(hostname) && \
                     exec httpd -f -p 8080 -h /www";

/// The Deployment's pods that are Running and Ready with an IP, by name: (IP, restart count).
fn ready_pods(k: &Kubectl, selector: &str) -> Vec<(String, String, i64)> {
    let list = k.json(&["get", "pods", "-l", selector, "-o", "json"]);
    let mut ready = Vec::new();
    for pod in list["items"].as_array().unwrap() {
        let status = &pod["status"];
        let is_ready = status["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let (Some(ip), true) = (status["podIP"].as_str(), is_ready && status["phase"] == "Running") else { continue };
        let restarts = status["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(-1);
        ready.push((pod["metadata"]["name"].as_str().unwrap().to_owned(), ip.to_owned(), restarts));
    }
    ready.sort();
    ready
}

fn app_containers(node: &str) -> Vec<docker::Listed> {
    let mut app: Vec<docker::Listed> =
        docker::containers(node).into_iter().filter(|c| c.container == "app" && c.state == "running").collect();
    app.sort_by(|a, b| a.pod.cmp(&b.pod));
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_runs_in_docker_and_survives_kills_of_its_containers_agent_and_replicas() {
    let image = docker::busybox_image();
    let mut cluster = TestCluster::start_with(3, &["--metric-resolution", "1s"]).await;
    let node = "docker-deploy";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let mut agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker"]);
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    harness::pods::wait_nodes(&k, 1).await;

    let manifest = format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web"}},
            "spec": {{"replicas": 3, "selector": {{"matchLabels": {{"app": "web"}}}},
              "template": {{"metadata": {{"labels": {{"app": "web"}}}},
                "spec": {{"terminationGracePeriodSeconds": 2, "containers": [{{"name": "app", "image": "{image}",
                  "imagePullPolicy": "Never", "command": ["sh", "-c", "{SERVE}"],
                  "ports": [{{"containerPort": 8080}}]}}]}}}}}}}}"#
    );
    let path = k.manifest("web.json", &manifest);
    k.ok(&["apply", "-f", &path]);
    let pods = eventually(Duration::from_secs(60), "3 pods Running and Ready with IPs", || async {
        let pods = ready_pods(&k, "app=web");
        (pods.len() == 3).then_some(pods)
    })
    .await;

    // Each pod IP answers with its pod's hostname (the pod's name), from the pod's own network namespace.
    for (name, ip, restarts) in &pods {
        assert_eq!(*restarts, 0);
        assert!(ip.starts_with("10.88."), "{ip} is on the pod network");
        let body =
            eventually(Duration::from_secs(10), "the pod to answer", || async { http_get(&format!("{ip}:8080")) })
                .await;
        assert_eq!(&body, name);
    }
    let distinct: std::collections::BTreeSet<&String> = pods.iter().map(|(_, ip, _)| ip).collect();
    assert_eq!(distinct.len(), 3, "{pods:?}");

    // Every pod is a sandbox and an app container, found by the pod's labels and named after it.
    let listed = docker::containers(node);
    assert_eq!(listed.len(), 6, "{listed:?}");
    for (name, _, _) in &pods {
        let mut mine: Vec<&str> = listed.iter().filter(|c| c.pod == *name).map(|c| c.container.as_str()).collect();
        mine.sort();
        assert_eq!(mine, ["POD", "app"], "{name}: {listed:?}");
        assert!(listed.iter().any(|c| c.name == format!("k8s_app_{name}_default_{}_0", uid(&k, name))));
    }
    // The statuses name the containers and the image as Docker does.
    let image_id = docker::image_id(image);
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    for (name, _, _) in &pods {
        let status = k.json(&["get", "pod", name, "-o", "json"])["status"]["containerStatuses"][0].clone();
        let app = listed.iter().find(|c| c.pod == *name && c.container == "app").unwrap();
        assert_eq!(status["containerID"], format!("docker://{}", app.id), "{status}");
        assert_eq!(status["imageID"], format!("docker://{image_id}"), "{status}");
    }

    // Logs through a follower.
    let (first, first_ip, _) = pods[0].clone();
    assert_eq!(k.ok(&["logs", &first]).trim(), format!("serving {first}"));
    assert_eq!(
        k.ok(&["logs", &first, "-c", "app", "--tail=1", "--timestamps"]).split_once(' ').unwrap().1.trim(),
        format!("serving {first}")
    );
    let previous = k.fails(&["logs", &first, "--previous"]);
    assert!(
        previous.contains(&format!("(BadRequest): previous terminated container \"app\" in pod \"{first}\" not found")),
        "{previous}"
    );

    // Exec through a follower: output, exit codes, stdin.
    assert_eq!(k.ok(&["exec", &first, "--", "hostname"]).trim(), first);
    let failed = k.run(&["exec", &first, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.starts_with("err\n") && stderr.contains("command terminated with exit code 3"), "{stderr}");
    let echoed =
        k.run_with_input(&["exec", "-i", &first, "-c", "app", "--", "sh", "-c", "cat; echo done"], b"one\ntwo\n");
    assert!(echoed.status.success(), "{}", String::from_utf8_lossy(&echoed.stderr));
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "one\ntwo\ndone\n");
    // A command the image does not have: Docker's words and exit code 126, as with the docker CLI.
    let missing = k.run(&["exec", &first, "--", "no-such-command"]);
    let said = format!("{}{}", String::from_utf8_lossy(&missing.stdout), String::from_utf8_lossy(&missing.stderr));
    assert_eq!(missing.status.code(), Some(126), "{said}");
    assert!(said.contains("\"no-such-command\": executable file not found"), "{said}");

    // Usage from the containers' control groups and the host, through a follower.
    eventually(Duration::from_secs(60), "kubectl top to show the pods and the node", || async {
        let pods = k.run(&["top", "pod", "-l", "app=web", "--no-headers"]);
        let nodes = k.run(&["top", "node", "--no-headers"]);
        let pods = String::from_utf8_lossy(&pods.stdout).lines().count();
        let nodes = String::from_utf8_lossy(&nodes.stdout).into_owned();
        let memory = nodes.split_whitespace().nth(3).and_then(|m| m.strip_suffix("Mi")?.parse::<u64>().ok());
        (pods == 3 && nodes.starts_with(node) && memory.is_some_and(|m| m > 0)).then_some(())
    })
    .await;

    // A killed container is restarted: a new container, restartCount 1, its predecessor's log as --previous.
    let before = app_containers(node);
    let victim = before.iter().find(|c| c.pod == first).unwrap().clone();
    docker::kill(&victim.id);
    eventually(Duration::from_secs(30), "the killed container to be restarted", || async {
        let pods = ready_pods(&k, "app=web");
        pods.iter().any(|(name, _, restarts)| *name == first && *restarts == 1).then_some(())
    })
    .await;
    let restarted = app_containers(node).into_iter().find(|c| c.pod == first).unwrap();
    assert_ne!(restarted.id, victim.id);
    assert_eq!(k.ok(&["logs", &first, "--previous"]).trim(), format!("serving {first}"));
    let status = k.json(&["get", "pod", &first, "-o", "json"])["status"]["containerStatuses"][0].clone();
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 137, "{status}");
    assert_eq!(http_get(&format!("{first_ip}:8080")).as_deref(), Some(first.as_str()), "the pod keeps its IP");

    // Neither an agent restart nor the SIGKILL of the leader and then of the replica the agent talks to (which
    // leaves no quorum) restarts a container.
    let running = app_containers(node);
    let started: Vec<String> = running.iter().map(|c| docker::started_at(&c.id)).collect();
    agent.kill();
    agent.restart();
    let leader = cluster.leader().await;
    let leader_addr = cluster.local.members[leader].api_addr;
    cluster.local.signal(leader, Signal::Kill);
    let talked_to = eventually(Duration::from_secs(20), "the agent to talk to a live replica", || async {
        agent.current_server().filter(|s| *s != leader_addr)
    })
    .await;
    let other = cluster.local.members.iter().position(|m| m.api_addr == talked_to).unwrap();
    cluster.local.signal(other, Signal::Kill);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = app_containers(node);
    assert_eq!(
        after.iter().map(|c| &c.id).collect::<Vec<_>>(),
        running.iter().map(|c| &c.id).collect::<Vec<_>>(),
        "the same containers run"
    );
    let started_after: Vec<String> = after.iter().map(|c| docker::started_at(&c.id)).collect();
    assert_eq!(started_after, started);
    cluster.local.start(leader).unwrap();
    cluster.local.start(other).unwrap();
    let k = Kubectl::for_replica(&cluster, cluster.leader().await).await;
    eventually(Duration::from_secs(30), "the restarted agent to report the pods as before", || async {
        let pods = ready_pods(&k, "app=web");
        let restarts: Vec<i64> = pods.iter().map(|(_, _, r)| *r).collect();
        (pods.len() == 3 && restarts.iter().sum::<i64>() == 1).then_some(())
    })
    .await;

    // Deleting the Deployment removes every container within the grace period (and a few syncs).
    k.ok(&["delete", "deployment", "web"]);
    eventually(Duration::from_secs(30), "every container of the node to be gone", || async {
        docker::containers(node).is_empty().then_some(())
    })
    .await;
    assert!(agent.is_running());
}

fn uid(k: &Kubectl, pod: &str) -> String {
    let pod: Value = k.json(&["get", "pod", pod, "-o", "json"]);
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

#[test]
fn without_a_docker_daemon_the_agent_says_so_and_exits() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftsman"))
        .args(["agent", "--node-name", "n", "--servers", "127.0.0.1:1", "--runtime", "docker"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no Docker daemon answers at unix:///nonexistent/docker.sock"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_drive_readiness_and_restart_a_container_whose_liveness_fails() {
    let image = docker::busybox_image();
    let cluster = TestCluster::start(3).await;
    let node = "docker-probes";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker"]);
    let k = Kubectl::for_replica(&cluster, cluster.leader().await).await;
    harness::pods::wait_nodes(&k, 1).await;
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "probed"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [
              {{"name": "web", "image": "{image}", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "mkdir -p /www && touch /www/ready && exec httpd -f -p 8080 -h /www"],
                "ports": [{{"name": "http", "containerPort": 8080}}],
                "readinessProbe": {{"httpGet": {{"path": "/ready", "port": "http"}}, "periodSeconds": 1}},
                "livenessProbe": {{"tcpSocket": {{"port": 8080}}, "periodSeconds": 1}}}},
              {{"name": "live", "image": "{image}", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "touch /tmp/healthy && exec sleep 100000"],
                "startupProbe": {{"exec": {{"command": ["cat", "/tmp/healthy"]}}, "periodSeconds": 1}},
                "livenessProbe": {{"exec": {{"command": ["cat", "/tmp/healthy"]}}, "periodSeconds": 1,
                                  "failureThreshold": 2}}}}]}}}}"#
    );
    let path = k.manifest("probed.json", &manifest);
    k.ok(&["apply", "-f", &path]);
    let statuses = |k: &Kubectl| {
        let pod = k.json(&["get", "pod", "probed", "-o", "json"]);
        let ready = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True");
        let mut containers: Vec<(String, bool, i64)> = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c["ready"] == true, c["restartCount"].as_i64().unwrap()))
            .collect();
        containers.sort();
        (ready, containers)
    };
    let container_id = |name: &str| {
        app_or(node, name).unwrap_or_else(|| panic!("a running {name} container: {:?}", docker::containers(node)))
    };
    eventually(Duration::from_secs(60), "the pod Ready", || async {
        (statuses(&k) == (true, vec![("live".into(), true, 0), ("web".into(), true, 0)])).then_some(())
    })
    .await;

    // Readiness follows the HTTP check, both ways, without restarting anything.
    docker::exec(&container_id("web"), &["rm", "/www/ready"]);
    eventually(Duration::from_secs(20), "the pod not Ready", || async {
        (statuses(&k) == (false, vec![("live".into(), true, 0), ("web".into(), false, 0)])).then_some(())
    })
    .await;
    docker::exec(&container_id("web"), &["touch", "/www/ready"]);
    eventually(Duration::from_secs(20), "the pod Ready again", || async {
        (statuses(&k) == (true, vec![("live".into(), true, 0), ("web".into(), true, 0)])).then_some(())
    })
    .await;

    // A failing liveness probe restarts its container, which starts healthy again.
    let before = container_id("live");
    docker::exec(&before, &["rm", "/tmp/healthy"]);
    eventually(Duration::from_secs(30), "the unhealthy container restarted and Ready", || async {
        (statuses(&k) == (true, vec![("live".into(), true, 1), ("web".into(), true, 0)])).then_some(())
    })
    .await;
    assert_ne!(container_id("live"), before);
    k.ok(&["delete", "pod", "probed"]);

    // An image that is not on the node: with pull policy Never the container waits, saying so; a pull that
    // fails (from a registry on a loopback port nothing listens on) shows as ErrImagePull, then as back-off.
    let absent = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "absent"},
        "spec": {"restartPolicy": "Never", "containers": [
          {"name": "never", "image": "raftsman-test/absent:1", "imagePullPolicy": "Never"},
          {"name": "pulled", "image": "127.0.0.1:1/raftsman-test/absent:1", "imagePullPolicy": "IfNotPresent"}]}}"#;
    let path = k.manifest("absent.json", absent);
    k.ok(&["apply", "-f", &path]);
    let waiting = |k: &Kubectl, name: &str| {
        let pod = k.json(&["get", "pod", "absent", "-o", "json"]);
        let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
        statuses.into_iter().find(|c| c["name"] == name).map(|c| c["state"]["waiting"].clone()).unwrap_or_default()
    };
    let never = eventually(Duration::from_secs(30), "ErrImageNeverPull", || async {
        let w = waiting(&k, "never");
        (w["reason"] == "ErrImageNeverPull").then_some(w)
    })
    .await;
    assert_eq!(
        never["message"],
        r#"Container image "raftsman-test/absent:1" is not present with pull policy of Never"#
    );
    let failed = eventually(Duration::from_secs(60), "ErrImagePull", || async {
        let w = waiting(&k, "pulled");
        (w["reason"] == "ErrImagePull").then_some(w)
    })
    .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(r#"failed to pull image "127.0.0.1:1/raftsman-test/absent:1": "#), "{failed}");
    eventually(Duration::from_secs(30), "ImagePullBackOff", || async {
        let w = waiting(&k, "pulled");
        (w["reason"] == "ImagePullBackOff"
            && w["message"] == r#"Back-off pulling image "127.0.0.1:1/raftsman-test/absent:1""#)
            .then_some(())
    })
    .await;
    let pod = k.json(&["get", "pod", "absent", "-o", "json"]);
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert!(app_or(node, "never").is_none() && app_or(node, "pulled").is_none());
    k.ok(&["delete", "pod", "absent"]);

    // A container that outgrows its memory limit is killed by the kernel and reported OOMKilled.
    let hungry = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "hungry"}},
            "spec": {{"restartPolicy": "Never", "containers": [{{"name": "app", "image": "{image}",
              "imagePullPolicy": "Never", "command": ["sh", "-c", "tail /dev/zero"],
              "resources": {{"limits": {{"memory": "16Mi"}}}}}}]}}}}"#
    );
    let path = k.manifest("hungry.json", &hungry);
    k.ok(&["apply", "-f", &path]);
    let ended = eventually(Duration::from_secs(60), "the container killed for its memory", || async {
        let pod = k.json(&["get", "pod", "hungry", "-o", "json"]);
        let ended = pod["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        ended.is_object().then_some(ended)
    })
    .await;
    assert_eq!((ended["reason"].as_str(), ended["exitCode"].as_i64()), (Some("OOMKilled"), Some(137)), "{ended}");
    k.ok(&["delete", "pod", "hungry"]);
    eventually(Duration::from_secs(30), "every container of the node to be gone", || async {
        docker::containers(node).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_maps_secrets_and_volumes_reach_the_containers() {
    let image = docker::busybox_image();
    let cluster = TestCluster::start(3).await;
    let node = "docker-volumes";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker"]);
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    harness::pods::wait_nodes(&k, 1).await;
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().join("made-by-the-agent");
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "configured", "labels": {{"app": "volumes"}}}},
            "spec": {{"terminationGracePeriodSeconds": 1,
              "initContainers": [{{"name": "prepare", "image": "{image}", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo prepared > /out/init"],
                "volumeMounts": [{{"name": "shared", "mountPath": "/out"}}]}}],
              "containers": [
              {{"name": "app", "image": "{image}", "imagePullPolicy": "Never", "command": ["sleep", "100000"],
                "lifecycle": {{"preStop": {{"exec": {{"command": ["sh", "-c", "echo $COLOR > /host/stopped"]}}}}}},
                "env": [{{"name": "COLOR", "valueFrom": {{"configMapKeyRef": {{"name": "settings", "key": "color"}}}}}},
                        {{"name": "PASSWORD", "valueFrom": {{"secretKeyRef": {{"name": "creds", "key": "password"}}}}}},
                        {{"name": "GREETING", "value": "$(COLOR) sky"}}],
                "envFrom": [{{"configMapRef": {{"name": "settings"}}, "prefix": "CFG_"}}],
                "volumeMounts": [{{"name": "settings", "mountPath": "/etc/settings"}},
                                 {{"name": "creds", "mountPath": "/etc/creds"}},
                                 {{"name": "info", "mountPath": "/etc/info"}},
                                 {{"name": "scratch", "mountPath": "/scratch"}},
                                 {{"name": "shared", "mountPath": "/shared"}},
                                 {{"name": "host", "mountPath": "/host"}}]}},
              {{"name": "writer", "image": "{image}", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo from the writer > /out/note && exec sleep 100000"],
                "securityContext": {{"runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": true,
                  "allowPrivilegeEscalation": false, "capabilities": {{"drop": ["ALL"]}}}},
                "volumeMounts": [{{"name": "shared", "mountPath": "/out"}}, {{"name": "creds", "mountPath": "/creds"}}]}}],
              "securityContext": {{"supplementalGroups": [4000], "fsGroup": 2000}},
              "volumes": [{{"name": "settings", "configMap": {{"name": "settings"}}}},
                          {{"name": "creds", "secret": {{"secretName": "creds", "defaultMode": 256}}}},
                          {{"name": "info", "downwardAPI": {{"items": [
                              {{"path": "labels", "fieldRef": {{"fieldPath": "metadata.labels"}}}}]}}}},
                          {{"name": "scratch", "emptyDir": {{"medium": "Memory"}}}},
                          {{"name": "shared", "emptyDir": {{}}}},
                          {{"name": "host", "hostPath": {{"path": "{host}", "type": "DirectoryOrCreate"}}}}]}}}}"#,
        host = host_dir.display()
    );
    let path = k.manifest("configured.json", &manifest);
    k.ok(&["apply", "-f", &path]);

    // Without its ConfigMap, the pod waits and says why; nothing runs, not even the init container.
    let waiting = eventually(Duration::from_secs(30), "the pod waiting for its ConfigMap", || async {
        let pod = k.json(&["get", "pod", "configured", "-o", "json"]);
        let waiting = pod["status"]["initContainerStatuses"][0]["state"]["waiting"].clone();
        waiting["message"].as_str()?.contains("settings").then_some(waiting)
    })
    .await;
    assert_eq!(waiting["reason"], "PodInitializing", "{waiting}");
    assert_eq!(
        waiting["message"], r#"MountVolume.SetUp failed for volume "settings" : configmap "settings" not found"#,
        "{waiting}"
    );
    let listed = k.ok(&["get", "pod", "configured", "--no-headers"]);
    assert!(listed.contains("Init:0/1"), "{listed}");
    assert!(docker::containers(node).is_empty());

    // Once the ConfigMap and the Secret exist, the init container runs to completion, then the containers,
    // with the ConfigMap's and the Secret's values as env and as files.
    k.ok(&["create", "configmap", "settings", "--from-literal=color=blue", "--from-literal=size=9"]);
    k.ok(&["create", "secret", "generic", "creds", "--from-literal=password=hunter2"]);
    eventually(Duration::from_secs(60), "the pod's containers Ready", || async {
        let pod = k.json(&["get", "pod", "configured", "-o", "json"]);
        let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
        (statuses.len() == 2 && statuses.iter().all(|c| c["ready"] == true)).then_some(())
    })
    .await;
    let exec = |script: &str| k.ok(&["exec", "configured", "-c", "app", "--", "sh", "-c", script]);
    assert_eq!(exec("echo $COLOR $PASSWORD $CFG_size / $GREETING"), "blue hunter2 9 / blue sky\n");
    assert_eq!(exec("cat /etc/settings/color /etc/settings/size /etc/creds/password"), "blue9hunter2");
    assert_eq!(exec("stat -L -c %a /etc/creds/password /etc/settings/color"), "440\n644\n");
    assert_eq!(exec("cat /etc/info/labels"), "app=\"volumes\"\n");
    assert_eq!(exec("cat /shared/note /shared/init"), "from the writer\nprepared\n");
    let pod = k.json(&["get", "pod", "configured", "-o", "json"]);
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(init["ready"], true, "{init}");
    let mounts = exec("cat /proc/mounts");
    let fs_of = |at: &str| {
        let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(at))?;
        line.split(' ').nth(2).map(str::to_owned)
    };
    assert_eq!(fs_of("/scratch").as_deref(), Some("tmpfs"), "{mounts}");
    assert_eq!(fs_of("/etc/creds").as_deref(), Some("tmpfs"), "a secret is never on the node's disk: {mounts}");
    let refused = k.run(&["exec", "configured", "-c", "app", "--", "sh", "-c", "echo x > /etc/settings/color"]);
    assert!(!refused.status.success(), "configMap volumes are read-only");

    // Every container has its ServiceAccount's token, the cluster authority and its namespace mounted (on a
    // tmpfs): with them, it is the account to the API, which it can verify.
    let account = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(fs_of(account).as_deref(), Some("tmpfs"), "{mounts}");
    assert_eq!(exec(&format!("cat {account}/namespace")), "default");
    let ca = exec(&format!("cat {account}/ca.crt"));
    assert_eq!(ca, cluster.local.authority().unwrap().cert_pem());
    let token = exec(&format!("cat {account}/token"));
    let as_account = Kubectl::with_token(&format!("https://{}", servers[0]), &ca, &token);
    let whoami = as_account.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(whoami, "system:serviceaccount:default:default");
    let other_user = k.run(&["exec", "configured", "-c", "writer", "--", "cat", &format!("{account}/token")]);
    assert_eq!(String::from_utf8_lossy(&other_user.stdout), token, "readable by the pod's other users");

    // The writer runs as its security context says: its user and groups, a read-only root, no privileges.
    let writer = |script: &str| k.run(&["exec", "configured", "-c", "writer", "--", "sh", "-c", script]);
    let ids = writer("id -u; id -g; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status");
    let ids = String::from_utf8_lossy(&ids.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(ids, "1000 3000 CapEff: 0000000000000000 NoNewPrivs: 1");
    let groups = writer("id -G");
    let mut groups: Vec<String> =
        String::from_utf8_lossy(&groups.stdout).split_whitespace().map(str::to_owned).collect();
    groups.sort();
    assert_eq!(groups, ["2000", "3000", "4000"]);
    // The fsGroup owns the volumes' files: the secret (mode 0400) is readable by the group.
    let secret = writer("stat -L -c '%a %g' /creds/password && cat /creds/password");
    assert_eq!(String::from_utf8_lossy(&secret.stdout), "440 2000\nhunter2");
    assert!(!writer("touch /on-the-root").status.success(), "the root filesystem is read-only");

    // An update of the ConfigMap reaches the files (not the env, which is fixed at start), all keys at once.
    k.ok(&["patch", "configmap", "settings", "-p", r#"{"data": {"color": "green", "size": "10"}}"#]);
    eventually(Duration::from_secs(60), "the updated ConfigMap in the files", || async {
        (exec("cat /etc/settings/color /etc/settings/size") == "green10").then_some(())
    })
    .await;
    assert_eq!(exec("echo $COLOR"), "blue\n");

    // Deleting the pod runs the preStop hook first (here it leaves a file in the hostPath the agent made),
    // then removes its containers and its volumes' directory, tmpfs mounts included.
    let pod_dir = agent.data_dir.join("volumes").join(uid(&k, "configured"));
    assert!(pod_dir.join("settings").join("..data").exists(), "{}", pod_dir.display());
    k.ok(&["delete", "pod", "configured"]);
    eventually(Duration::from_secs(30), "containers and volumes gone", || async {
        (docker::containers(node).is_empty() && !pod_dir.exists()).then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(host_dir.join("stopped")).unwrap(), "blue\n");
    let host_mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!host_mounts.contains(&*agent.data_dir.to_string_lossy()), "{host_mounts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_attach_joins_a_containers_own_streams_through_a_follower() {
    let image = docker::busybox_image();
    let cluster = TestCluster::start(3).await;
    let node = "docker-attach";
    let _cleanup = NodeCleanup(node.to_owned());
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _agent = Agent::start(&cluster, &servers, node, &["--runtime", "docker"]);
    let k = Kubectl::for_replica(&cluster, follower(cluster.leader().await)).await;
    harness::pods::wait_nodes(&k, 1).await;
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "talk"}},
            "spec": {{"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
              {{"name": "app", "image": "{image}", "imagePullPolicy": "Never", "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "echo before; while read line; do echo got $line; done; echo bye"]}}]}}}}"#
    );
    k.ok(&["apply", "-f", &k.manifest("talk.json", &manifest)]);
    k.ok(&["wait", "pod/talk", "--for=condition=Ready", "--timeout=60s"]);

    // What is sent reaches the container's stdin; the end of the input closes it (stdinOnce), the container
    // ends, and with it the attach: kubectl exits 0 with everything the container wrote since it attached.
    let attached = k.run_with_input(&["attach", "-i", "talk", "-c", "app"], b"one\ntwo\n");
    let stdout = String::from_utf8_lossy(&attached.stdout);
    assert!(attached.status.success(), "{attached:?}");
    assert_eq!(stdout, "got one\ngot two\nbye\n", "{attached:?}");
    let pod = eventually(Duration::from_secs(30), "the pod Succeeded", || async {
        let pod = k.json(&["get", "pod", "talk", "-o", "json"]);
        (pod["status"]["phase"] == "Succeeded").then_some(pod)
    })
    .await;
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0, "{pod}");
    assert_eq!(k.ok(&["logs", "talk"]), "before\ngot one\ngot two\nbye\n");

    // A completed pod is refused as upstream refuses it.
    let refused = k.run(&["attach", "talk"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("cannot attach a container in a completed pod; current phase is Succeeded"), "{stderr}");
}

/// The id of the running container `name` of the node's pods.
fn app_or(node: &str, name: &str) -> Option<String> {
    docker::containers(node).into_iter().find(|c| c.container == name && c.state == "running").map(|c| c.id)
}
