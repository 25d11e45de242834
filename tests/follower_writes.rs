//! Kubernetes writes through a follower, on a real three-replica cluster: they cost no read index (the
//! follower reads its own state and the write's compare-and-swap catches a stale read), and a follower that
//! is behind the leader still never answers from its stale state: a refusal, a no-op or a dry run is
//! confirmed with a linearizable read first, so a client that wrote through one replica reads its own write
//! through another.
//!
//! A follower is put behind by stopping it (SIGSTOP) while another replica writes, and sending it the request
//! (on a connection opened before it stopped) before it resumes: it then usually reads before it has applied the write. Whether it did is seen on its
//! `/metrics` (a confirmation is one read index); each case runs until one round caught it behind.

mod harness;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use harness::api::ApiStream;
use harness::kubectl::follower;
use harness::{eventually, kube_client, TestCluster};
use raftsman::cluster::local::Signal;

/// Rounds a stale case may take to catch the follower behind.
const ROUNDS_MAX: usize = 8;

/// The status code and JSON body of the answer on `stream`.
async fn answer(mut stream: ApiStream) -> (u16, Value) {
    let raw = tokio::time::timeout(Duration::from_secs(20), harness::api::read_all(&mut stream))
        .await
        .expect("the replica answers within 20 s");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// Sends an HTTP/1.1 request on `stream` and leaves its answer there.
async fn send(mut stream: ApiStream, method: &str, path: &str, content_type: &str, body: &str) -> ApiStream {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("the request is sent");
    stream.flush().await.expect("the request is sent");
    stream
}

/// Replica `i`'s `raftsman_store_read_indexes_total`.
async fn read_indexes(cluster: &TestCluster, i: usize) -> u64 {
    let mut stream = harness::api::connect(cluster, i).await;
    let request = "GET /metrics HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let raw = harness::api::read_all(&mut stream).await;
    let text = String::from_utf8(raw).unwrap();
    let line = text.lines().find(|l| l.starts_with("raftsman_store_read_indexes_total ")).expect("the counter");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

fn pod(name: &str) -> Pod {
    // Another scheduler's pod: the cluster's scheduler leaves it alone, so only the test binds it.
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"schedulerName": "elsewhere", "containers": [{"name": "app", "image": "registry.local/app:1"}]}}))
    .unwrap()
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{obj}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_a_follower_make_no_read_index() {
    let cluster = TestCluster::start(3).await;
    let b = follower(cluster.leader().await);
    let client = kube_client(&cluster, b).await;
    let maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());

    // Phase 1: the objects, created through the follower.
    maps.create(&PostParams::default(), &config_map("cm", json!({"a": "1"}))).await.unwrap();
    pods.create(&PostParams::default(), &pod("p")).await.unwrap();
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]}}}}))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();

    // Phase 2: every kind of write, each of which read the object with a read index before.
    let before = read_indexes(&cluster, b).await;
    let mut cm = maps.get_with("cm", &GetParams::any()).await.unwrap();
    cm.metadata.labels.as_mut().unwrap().insert("put".into(), "yes".into());
    maps.replace("cm", &PostParams::default(), &cm).await.unwrap();
    let params = PatchParams::default();
    maps.patch("cm", &params, &Patch::Merge(json!({"metadata": {"labels": {"merge": "yes"}}}))).await.unwrap();
    maps.patch("cm", &params, &Patch::Strategic(json!({"metadata": {"labels": {"strategic": "yes"}}}))).await.unwrap();
    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/json", "value": "yes"}])).unwrap();
    maps.patch("cm", &params, &Patch::<()>::Json(json_patch)).await.unwrap();
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"applied": "yes"}});
    maps.patch("cm", &PatchParams::apply("test"), &Patch::Apply(applied)).await.unwrap();
    pods.patch_status("p", &params, &Patch::Merge(json!({"status": {"message": "checked"}}))).await.unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
    let _: Value = pods.create_subresource("binding", "p", &PostParams::default(), &binding).await.unwrap();
    deployments.patch_scale("web", &params, &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    maps.delete("cm", &DeleteParams::default()).await.unwrap();
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let after = read_indexes(&cluster, b).await;
    assert_eq!(after, before, "ten writes through the follower made {} read indexes", after - before);

    // Phase 3: each write did what it says.
    assert!(maps.get_opt("cm").await.unwrap().is_none(), "the config map is deleted");
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("node-a"));
    assert_eq!(p.status.as_ref().unwrap().message.as_deref(), Some("checked"));
    assert!(p.metadata.deletion_timestamp.is_some(), "a bound pod is deleted gracefully");
    assert_eq!(deployments.get("web").await.unwrap().spec.unwrap().replicas, Some(3));
}

/// A request as `Lagging::request` sends it.
struct Request {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: String,
}

const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

fn map_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/configmaps/{name}")
}

/// A follower `b` put behind the other two replicas, and clients of the third, `c` (a follower too: "another
/// replica" the client writes through).
struct Lagging {
    cluster: TestCluster,
    b: usize,
    b_client: kube::Client,
    c_client: kube::Client,
}

impl Lagging {
    fn maps(&self) -> Api<ConfigMap> {
        Api::default_namespaced(self.c_client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.c_client.clone())
    }

    /// Creates `obj` through `c` and waits until `b`'s own state has it, so that `b` holds an old version
    /// of what the next writes change.
    async fn create_everywhere<K>(&self, obj: &K) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        let created = Api::<K>::default_namespaced(self.c_client.clone()).create(&PostParams::default(), obj).await;
        let created = created.unwrap();
        let (name, version) = (created.meta().name.clone().unwrap(), created.meta().resource_version.clone());
        let at_b = Api::<K>::default_namespaced(self.b_client.clone());
        eventually(Duration::from_secs(10), "the follower to have the object", || async {
            let found = at_b.get_with(&name, &GetParams::any()).await.ok()?;
            (found.meta().resource_version == version).then_some(())
        })
        .await;
        created
    }

    /// Stops `b`, makes `writes` through the other replicas (which yield the request), sends `b` the request
    /// while it is stopped, resumes it: its answer, and whether `b` read its state behind the writes (it made
    /// a read index to confirm).
    async fn request(&mut self, writes: impl Future<Output = Request>) -> (u16, Value, bool) {
        let before = read_indexes(&self.cluster, self.b).await;
        // The TLS handshake needs `b` to answer: the connection is ready before it stops.
        let stream = harness::api::connect(&self.cluster, self.b).await;
        self.cluster.local.signal(self.b, Signal::Stop);
        let r = writes.await;
        let stream = send(stream, r.method, &r.path, r.content_type, &r.body).await;
        self.cluster.local.signal(self.b, Signal::Cont);
        let (code, obj) = answer(stream).await;
        (code, obj, read_indexes(&self.cluster, self.b).await > before)
    }
}

/// Runs `case` (given the round) until a round caught the follower behind; each round asserts its answer.
async fn until_behind(l: &mut Lagging, what: &str, mut case: impl AsyncFnMut(&mut Lagging, usize) -> bool) {
    for round in 0..ROUNDS_MAX {
        if case(l, round).await {
            return;
        }
    }
    panic!("{what}: the follower was never behind in {ROUNDS_MAX} rounds, so its stale state was not tested");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_behind_the_others_never_answers_from_its_stale_state() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let (b, c) = ((leader + 1) % 3, (leader + 2) % 3);
    let c_client = kube_client(&cluster, c).await;
    let b_client = kube_client(&cluster, b).await;
    let mut l = Lagging { cluster, b, b_client, c_client };

    // Case 1: an object created through another replica is found (no stale 404).
    until_behind(&mut l, "not found", async |l: &mut Lagging, round: usize| {
        let name = format!("new-{round}");
        let maps = l.maps();
        let (code, obj, behind) = l
            .request(async {
                maps.create(&PostParams::default(), &config_map(&name, json!({}))).await.unwrap();
                let body = json!({"metadata": {"labels": {"seen": "yes"}}}).to_string();
                Request { method: "PATCH", path: map_path(&name), content_type: MERGE, body }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        assert_eq!(obj["metadata"]["labels"]["seen"], "yes", "{obj}");
        behind
    })
    .await;

    // Case 2: read-your-writes: an update through another replica, then one through the follower with the
    // resourceVersion the first returned (no stale 409).
    until_behind(&mut l, "resourceVersion precondition", async |l: &mut Lagging, round: usize| {
        let name = format!("rv-{round}");
        let maps = l.maps();
        l.create_everywhere(&config_map(&name, json!({"v": "1"}))).await;
        let mut version = 0;
        let (code, obj, behind) = l
            .request(async {
                let patch = Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}}));
                let written = maps.patch(&name, &PatchParams::default(), &patch).await.unwrap();
                version = written.metadata.resource_version.unwrap().parse::<u64>().unwrap();
                let mut put = serde_json::to_value(config_map(&name, json!({"v": "3"}))).unwrap();
                put["metadata"]["resourceVersion"] = json!(version.to_string());
                Request { method: "PUT", path: map_path(&name), content_type: JSON, body: put.to_string() }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        assert_eq!(obj["metadata"]["labels"]["v"], "3", "{obj}");
        assert!(rv(&obj) > version, "{obj}");
        behind
    })
    .await;

    // Case 3: a delete whose UID precondition names the object as recreated through another replica.
    until_behind(&mut l, "uid precondition", async |l: &mut Lagging, round: usize| {
        let name = format!("uid-{round}");
        let maps = l.maps();
        l.create_everywhere(&config_map(&name, json!({}))).await;
        let mut uid = String::new();
        let (code, obj, behind) = l
            .request(async {
                maps.delete(&name, &DeleteParams::default()).await.unwrap();
                let again = maps.create(&PostParams::default(), &config_map(&name, json!({}))).await.unwrap();
                uid = again.metadata.uid.unwrap();
                let body = json!({"preconditions": {"uid": uid}}).to_string();
                Request { method: "DELETE", path: map_path(&name), content_type: JSON, body }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        assert_eq!(obj["metadata"]["uid"], json!(uid), "{obj}");
        assert!(maps.get_opt(&name).await.unwrap().is_none(), "the recreated object is deleted");
        behind
    })
    .await;

    // Case 4: the follower still holds the object's old self, marked for deletion; a delete removes the new
    // one and answers with it, not with the stale marked object.
    until_behind(&mut l, "already being deleted", async |l: &mut Lagging, round: usize| {
        let name = format!("held-{round}");
        let maps = l.maps();
        let mut held = config_map(&name, json!({}));
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        maps.create(&PostParams::default(), &held).await.unwrap();
        maps.delete(&name, &DeleteParams::default()).await.unwrap();
        let marked = maps.get(&name).await.unwrap();
        let at_b: Api<ConfigMap> = Api::default_namespaced(l.b_client.clone());
        eventually(Duration::from_secs(10), "the follower to have the marked object", || async {
            let found = at_b.get_with(&name, &GetParams::any()).await.ok()?;
            (found.metadata.resource_version == marked.metadata.resource_version).then_some(())
        })
        .await;
        let (code, obj, behind) = l
            .request(async {
                let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                maps.patch(&name, &PatchParams::default(), &release).await.unwrap();
                maps.create(&PostParams::default(), &config_map(&name, json!({"second": "yes"}))).await.unwrap();
                Request { method: "DELETE", path: map_path(&name), content_type: JSON, body: String::new() }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        assert_eq!(obj["metadata"]["labels"]["second"], "yes", "the answer is the new object: {obj}");
        assert!(maps.get_opt(&name).await.unwrap().is_none(), "the new object is deleted");
        behind
    })
    .await;

    // Case 5: a patch that would change nothing in the follower's stale state changes the current object.
    until_behind(&mut l, "no-op update", async |l: &mut Lagging, round: usize| {
        let name = format!("noop-{round}");
        let maps = l.maps();
        l.create_everywhere(&config_map(&name, json!({"v": "1"}))).await;
        let (code, obj, behind) = l
            .request(async {
                let patch = Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}}));
                maps.patch(&name, &PatchParams::default(), &patch).await.unwrap();
                let body = json!({"metadata": {"labels": {"v": "1"}}}).to_string();
                Request { method: "PATCH", path: map_path(&name), content_type: MERGE, body }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        let now = maps.get(&name).await.unwrap();
        assert_eq!(now.metadata.labels.unwrap()["v"], "1", "the patch was written");
        assert_eq!(obj["metadata"]["resourceVersion"], json!(now.metadata.resource_version), "{obj}");
        behind
    })
    .await;

    // Case 6: a dry run answers with the current object patched, not the follower's stale one.
    until_behind(&mut l, "dry run", async |l: &mut Lagging, round: usize| {
        let name = format!("dry-{round}");
        let maps = l.maps();
        l.create_everywhere(&config_map(&name, json!({"a": "1"}))).await;
        let (code, obj, behind) = l
            .request(async {
                let patch = Patch::Merge(json!({"metadata": {"labels": {"b": "2"}}}));
                maps.patch(&name, &PatchParams::default(), &patch).await.unwrap();
                let body = json!({"metadata": {"labels": {"c": "3"}}}).to_string();
                Request { method: "PATCH", path: format!("{}?dryRun=All", map_path(&name)), content_type: MERGE, body }
            })
            .await;
        assert_eq!(code, 200, "round {round}: {obj}");
        assert_eq!(obj["metadata"]["labels"], json!({"a": "1", "b": "2", "c": "3"}), "{obj}");
        let now = maps.get(&name).await.unwrap();
        assert_eq!(obj["metadata"]["resourceVersion"], json!(now.metadata.resource_version), "{obj}");
        assert!(!now.metadata.labels.unwrap().contains_key("c"), "a dry run writes nothing");
        behind
    })
    .await;

    // Case 7: a binding naming the uid of a pod recreated through another replica binds it.
    until_behind(&mut l, "binding uid precondition", async |l: &mut Lagging, round: usize| {
        let name = format!("bind-{round}");
        let pods = l.pods();
        l.create_everywhere(&pod(&name)).await;
        let (code, obj, behind) = l
            .request(async {
                pods.delete(&name, &DeleteParams::default()).await.unwrap();
                let again = pods.create(&PostParams::default(), &pod(&name)).await.unwrap();
                let binding = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "uid": again.metadata.uid.unwrap()},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
                let path = format!("/api/v1/namespaces/default/pods/{name}/binding");
                Request { method: "POST", path, content_type: JSON, body: binding.to_string() }
            })
            .await;
        assert_eq!(code, 201, "round {round}: {obj}");
        assert_eq!(pods.get(&name).await.unwrap().spec.unwrap().node_name.as_deref(), Some("node-a"));
        behind
    })
    .await;
}
