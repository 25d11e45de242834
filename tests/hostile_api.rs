//! Hostile and careless requests against a real replica's Kubernetes API (issue 17): each must be refused
//! with upstream's answer, change nothing it should not, leave the replica up, and cost bounded memory that
//! is given back afterwards.

mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use harness::api::HttpsClient;
use harness::{eventually, TestCluster};

/// One replica's Kubernetes API, spoken to as the admin.
struct Api {
    addr: std::net::SocketAddr,
    client: HttpsClient,
    tls: Arc<rustls::ClientConfig>,
}

/// A response: status code, `Warning` headers, body.
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    /// The API of replica `i`, once it is ready.
    async fn of(cluster: &TestCluster, i: usize) -> Api {
        let addr = cluster.local.members[i].api_addr;
        let api =
            Api { addr, client: harness::api::https_client(cluster), tls: harness::api::admin_tls(&cluster.local) };
        eventually(Duration::from_secs(20), "the api to be ready", || async {
            api.call("GET", "/readyz", None, None).await.filter(|a| a.code == 200).map(|_| ())
        })
        .await;
        api
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Option<Answer> {
        let mut request = http::Request::builder().method(method).uri(format!("https://{}{path}", self.addr));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        let response = self.client.request(request).await.ok()?;
        let code = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let body = response.into_body().collect().await.ok()?.to_bytes().to_vec();
        Some(Answer { code, warnings, body })
    }

    async fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<&Value>) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.call(method, path, content_type, bytes).await.unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, Some("application/json"), Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, None, None).await
    }

    /// Creates `body` at `path`, expecting 201.
    async fn create(&self, path: &str, body: &Value) -> Value {
        let a = self.post(path, body).await;
        assert_eq!(a.code, 201, "create at {path}: {}", a.text());
        a.json()
    }

    /// The names of the items of the list at `path`, but every namespace's own `kube-root-ca.crt`.
    async fn names(&self, path: &str) -> Vec<String> {
        let a = self.get(path).await;
        assert_eq!(a.code, 200, "list {path}: {}", a.text());
        let list = a.json();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let names = items.iter().map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_string());
        let mut names: Vec<String> = names.filter(|n| n != "kube-root-ca.crt").collect();
        names.sort();
        names
    }
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

/// Asserts a `Status` answer: code, reason, and a message containing `words`.
fn assert_status(a: &Answer, code: u16, reason: &str, words: &str) {
    assert_eq!(a.code, code, "expected {code} {reason}, got: {}", a.text());
    let status = a.json();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    assert_eq!(status["code"], code, "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "message {message:?} does not say {words:?}");
}

/// The fields of an Invalid Status's causes.
fn cause_fields(a: &Answer) -> Vec<String> {
    a.json()["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Samples a process's RSS every 20 ms until stopped; the peak seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    kb * 1024
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_of(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

const MB: u64 = 1024 * 1024;

/// Waits until the replica's RSS is at most `bound`, returning what it settled at (panics after `timeout`).
async fn rss_settles(pid: u32, bound: u64, timeout: Duration, what: &str) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = rss_of(pid);
        if now <= bound {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: RSS stayed at {} MB, above {} MB, for {timeout:?}",
            now / MB,
            bound / MB
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Item 4: an empty name is never a collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_is_never_a_collection() {
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    for name in ["a", "b", "c"] {
        api.create("/api/v1/namespaces/default/configmaps", &config_map(name, "x")).await;
    }

    // Phase: every verb on an item path with an empty name is refused as upstream refuses an empty name.
    let body = config_map("d", "y");
    for (method, content_type) in [
        ("DELETE", None),
        ("GET", None),
        ("PUT", Some("application/json")),
        ("PATCH", Some("application/merge-patch+json")),
        ("POST", Some("application/json")),
    ] {
        for path in ["/api/v1/namespaces/default/configmaps/", "/api/v1/namespaces/default/configmaps//"] {
            let a = api.send(method, path, content_type, content_type.map(|_| &body)).await;
            assert_status(&a, 400, "BadRequest", "name must be provided");
        }
    }
    // An empty namespace segment names no namespace (it must not fall through to `namespaces/configmaps`).
    for method in ["DELETE", "GET"] {
        let a = api.send(method, "/api/v1/namespaces//configmaps", None, None).await;
        assert_eq!(a.code, 404, "{method} with an empty namespace: {}", a.text());
    }
    let a = api.delete("/api/v1/namespaces/default/configmaps/a/").await;
    assert_eq!(a.code, 404, "a trailing slash after a name: {}", a.text());

    // Phase: nothing was deleted or created.
    assert_eq!(api.names("/api/v1/namespaces/default/configmaps").await, ["a", "b", "c"]);

    // Phase: the collection path itself still lists and deletes collections.
    let a = api.delete("/api/v1/namespaces/default/configmaps?labelSelector=none%3Dnone").await;
    assert_eq!(a.code, 200, "{}", a.text());
    assert_eq!(api.names("/api/v1/namespaces/default/configmaps").await, ["a", "b", "c"]);
}

// Item 5: namespaced kinds have no cluster-scoped writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_kinds_are_refused_on_cluster_scoped_paths() {
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    api.create("/api/v1/namespaces/default/configmaps", &config_map("kept", "x")).await;
    // The leader's bootstrap Services (`kubernetes`, `kube-dns`) take their cluster IPs first.
    harness::settled_revision(&cluster.clients[0]).await;
    let ranges_before = cluster.clients[0].get_prefix(b"/registry/ranges/", false).await.unwrap().kvs.len();

    // Phase: creates of namespaced kinds on the cluster-scoped path are not allowed.
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    for (path, body) in [
        ("/api/v1/configmaps", config_map("x", "y")),
        ("/api/v1/secrets", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})),
        ("/api/v1/services", service.clone()),
        ("/api/v1/pods", pod),
        ("/apis/apps/v1/deployments", deployment),
    ] {
        let a = api.post(path, &body).await;
        assert_status(&a, 405, "MethodNotAllowed", "the server does not allow this method");
    }
    // Phase: so are updates and deletes there; the cluster-scoped collection of a namespaced kind only lists.
    let a = api.delete("/api/v1/configmaps").await;
    assert_status(&a, 405, "MethodNotAllowed", "the server does not allow this method");
    let empty = json!({});
    for method in ["PUT", "PATCH", "DELETE", "GET"] {
        let ct = (method != "DELETE" && method != "GET").then_some("application/merge-patch+json");
        let a = api.send(method, "/api/v1/configmaps/kept", ct, ct.map(|_| &empty)).await;
        assert_eq!(a.code, 404, "{method} /api/v1/configmaps/kept: {}", a.text());
    }
    assert_eq!(api.names("/api/v1/configmaps").await, ["kept"]);

    // Phase: nothing outside a namespace was stored and no cluster IP was allocated.
    for key in ["/registry/configmaps/x", "/registry/secrets/x", "/registry/services/s", "/registry/pods/p"] {
        assert!(cluster.clients[0].get(key, false).await.unwrap().kvs.is_empty(), "{key} was stored");
    }
    let ranges_after = cluster.clients[0].get_prefix(b"/registry/ranges/", false).await.unwrap().kvs.len();
    assert_eq!(ranges_before, ranges_after, "an allocation was made");

    // Phase: a body whose namespace disagrees with the path is a bad request, on create and on update.
    let mut other = config_map("y", "z");
    other["metadata"]["namespace"] = json!("kube-system");
    let a = api.post("/api/v1/namespaces/default/configmaps", &other).await;
    assert_status(
        &a,
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    );
    let mut moved = config_map("kept", "changed");
    moved["metadata"]["namespace"] = json!("kube-system");
    let a = api.send("PUT", "/api/v1/namespaces/default/configmaps/kept", Some("application/json"), Some(&moved)).await;
    assert_status(&a, 400, "BadRequest", "the namespace of the provided object does not match");
    let kept = api.get("/api/v1/namespaces/default/configmaps/kept").await.json();
    assert_eq!(kept["data"]["v"], "x");
}

// Item 7: one corrupt stored object does not break its kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_object_is_skipped_and_reported() {
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    api.create("/api/v1/namespaces/default/configmaps", &config_map("a", "1")).await;
    let key = "/registry/configmaps/default/broken";
    cluster.clients[0].put(key, "this is not json").await.unwrap();
    api.create("/api/v1/namespaces/default/configmaps", &config_map("z", "2")).await;

    // Phase: lists (plain, selected, across namespaces, as a Table) skip it and name it in a warning.
    for path in [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps?labelSelector=x!%3Dy",
        "/api/v1/configmaps",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ] {
        let a = api.get(path).await;
        assert_eq!(a.code, 200, "{path}: {}", a.text());
        assert!(
            a.warnings.iter().any(|w| w.contains(key)) || path.contains("limit=1"),
            "{path}: no warning naming {key}: {:?}",
            a.warnings
        );
        let names: Vec<String> = a.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "a") && !names.iter().any(|n| n == "broken"), "{path}: {names:?}");
    }
    assert_eq!(api.names("/api/v1/namespaces/default/configmaps").await, ["a", "z"]);
    let request = http::Request::builder()
        .uri(format!("https://{}/api/v1/namespaces/default/configmaps", api.addr))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = api.client.request(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "a Table list");
    let warned = response.headers().get_all("warning").iter().any(|w| w.to_str().unwrap_or("").contains(key));
    assert!(warned, "a Table list does not name {key}");

    // Phase: a watch from 0 sends the rest; the log names the key.
    let a = api.get("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=1").await;
    assert_eq!(a.code, 200);
    let events: Vec<Value> = a.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .filter(|name| *name != "kube-root-ca.crt")
        .collect();
    assert_eq!(added, ["a", "z"], "{events:?}");
    assert!(events.iter().all(|e| e["type"] != "ERROR"), "{events:?}");
    eventually(Duration::from_secs(5), "a log line naming the corrupt key", || async {
        cluster.log(0).lines().any(|l| l.contains("WARN") && l.contains(key)).then_some(())
    })
    .await;

    // Phase: reading exactly that object is a clear 500 naming it; the replica keeps serving.
    let a = api.get("/api/v1/namespaces/default/configmaps/broken").await;
    assert_status(&a, 500, "InternalError", key);
    let a = api.get("/api/v1/namespaces/default/configmaps/a").await;
    assert_eq!(a.code, 200);
}

// Item 3: a patch cannot grow an object past the object size limit, even while it is computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_cannot_amplify_memory() {
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    let pid = cluster.local.pid(0).unwrap();
    api.create("/api/v1/namespaces/default/configmaps", &config_map("big", "x")).await;
    let baseline = rss_of(pid);

    // Phase: a 500 KB value, then ten doubling copies (the 1,488-byte patch).
    let mut ops = vec![json!({"op": "add", "path": "/data/k0", "value": "v".repeat(500_000)})];
    for i in 1..=10 {
        ops.push(json!({"op": "copy", "from": format!("/data/k{}", i - 1), "path": format!("/data/k{i}")}));
    }
    // Each of those copies one value; these double an array by appending it to itself.
    let mut doubling = vec![json!({"op": "add", "path": "/data/k0", "value": "v".repeat(500_000)})];
    doubling.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    doubling.push(json!({"op": "add", "path": "/x", "value": {"a": []}}));
    doubling.push(json!({"op": "add", "path": "/x/a/-", "value": "v".repeat(500_000)}));
    for _ in 0..10 {
        doubling.push(json!({"op": "copy", "from": "/x/a", "path": "/x/a/-"}));
    }
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    for patch in [Value::Array(ops), Value::Array(doubling)] {
        let a = api
            .send(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/big",
                Some("application/json-patch+json"),
                Some(&patch),
            )
            .await;
        assert!(a.code == 422 || a.code == 413, "an amplifying patch: {} {}", a.code, a.text());
        let status = a.json();
        assert_eq!(status["kind"], "Status");
    }
    // A merge patch and a strategic merge patch whose result is too large are refused too.
    let half = json!({"data": {"m1": "m".repeat(900_000), "m2": "n".repeat(900_000)}});
    for ct in ["application/merge-patch+json", "application/strategic-merge-patch+json"] {
        let a = api.send("PATCH", "/api/v1/namespaces/default/configmaps/big", Some(ct), Some(&half)).await;
        assert_status(&a, 413, "RequestEntityTooLarge", "");
    }
    // More operations than upstream allows.
    let many: Vec<Value> = (0..10_001).map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"})).collect();
    let a = api
        .send(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/big",
            Some("application/json-patch+json"),
            Some(&Value::Array(many)),
        )
        .await;
    assert_status(
        &a,
        413,
        "RequestEntityTooLarge",
        "The allowed maximum operations in a JSON patch is 10000, got 10001",
    );
    let elapsed = started.elapsed();
    let peak = sampler.finish();
    eprintln!("patches: rss baseline {} MB, peak {} MB, in {elapsed:?}", baseline / MB, peak / MB);
    assert!(peak < baseline + 150 * MB, "patches took RSS from {} MB to {} MB", baseline / MB, peak / MB);

    // Phase: the object is unchanged and the replica answers; memory is back near its baseline.
    let big = api.get("/api/v1/namespaces/default/configmaps/big").await;
    assert_eq!(big.code, 200);
    assert_eq!(big.json()["data"], json!({"v": "x"}));
    let after = rss_settles(pid, baseline + 64 * MB, Duration::from_secs(10), "after the patches").await;
    eprintln!("patches: rss after {} MB", after / MB);
}

/// Opens a watch with a tiny receive buffer and reads only its response head, so that the replica has to
/// hold (or not) what the client does not take.
async fn idle_watch(api: &Api, path: &str) -> harness::api::ApiStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = api.addr;
    let mut stream = harness::api::over(socket.connect(addr).await.unwrap(), api.tls.clone()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[9..12], b"200", "watch answered {}", String::from_utf8_lossy(&head));
    stream
}

// Item 3: watches from resourceVersion=0 cost bounded memory, given back when they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_from_zero_cost_bounded_memory_given_back_when_they_close() {
    // Each watch lists 4 MB: more than loopback's socket buffers take off the replica's hands.
    const CONFIG_MAPS: usize = 100;
    const WATCHES: usize = 100;
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    let pid = cluster.local.pid(0).unwrap();
    let value = "w".repeat(40_000);
    for i in 0..CONFIG_MAPS {
        api.create("/api/v1/namespaces/default/configmaps", &config_map(&format!("cm-{i:03}"), &value)).await;
    }
    // Warm the allocator with one full list, as a busy replica would be.
    assert_eq!(api.names("/api/v1/namespaces/default/configmaps").await.len(), CONFIG_MAPS);
    let baseline = rss_of(pid);

    // Phase: many watches from 0 whose clients read nothing, twice over.
    let mut rounds = Vec::new();
    for round in 1..=2 {
        let sampler = RssSampler::start(pid);
        let started = Instant::now();
        let mut watches = Vec::new();
        for _ in 0..WATCHES {
            watches.push(idle_watch(&api, "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0").await);
        }
        let opened = started.elapsed();
        // Give the replica time to fill whatever it buffers: watch its RSS until it stops growing.
        let mut last = rss_of(pid);
        let settle = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = rss_of(pid);
            if now <= last + MB || settle.elapsed() > Duration::from_secs(10) {
                break;
            }
            last = now;
        }
        // The replica still answers while they are open.
        assert_eq!(api.get("/api/v1/namespaces/default/configmaps/cm-000").await.code, 200);

        // Phase: close them all; the replica stops holding anything for them.
        drop(watches);
        let peak = sampler.finish();
        let per_watch = peak.saturating_sub(baseline) / WATCHES as u64;
        // What remains per idle watch is mostly the HTTP server's write buffer (hyper's ~400 KB), not the list.
        assert!(per_watch < 800 * 1024, "round {round}: each idle watch cost {} KB", per_watch / 1024);
        // Most of what they took goes back to the system, not only to the allocator (`cluster::memory`).
        let returned = baseline + peak.saturating_sub(baseline) / 3 + 16 * MB;
        let after = rss_settles(pid, returned, Duration::from_secs(30), "after the watches closed").await;
        eprintln!(
            "watches round {round}: {WATCHES} opened in {opened:?}; rss baseline {} MB, peak {} MB, after close {} MB",
            baseline / MB,
            peak / MB,
            after / MB
        );
        rounds.push((peak, after));
    }
    // The second round reuses what the first one freed: nothing was kept for the closed watches.
    let (first_peak, _) = rounds[0];
    let (second_peak, second_after) = rounds[1];
    assert!(second_peak <= first_peak + 24 * MB, "the second round grew RSS to {} MB", second_peak / MB);
    assert!(second_after <= first_peak + 24 * MB, "after two rounds RSS is {} MB", second_after / MB);
    assert_eq!(api.get("/api/v1/namespaces/default/configmaps/cm-000").await.code, 200);
}

// Item 6: validation gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pods_services_and_delete_options_are_refused() {
    let cluster = TestCluster::start(1).await;
    let api = Api::of(&cluster, 0).await;
    let pod = |name: &str, spec_extra: Value, container_extra: Value| {
        let mut container = json!({"name": "c", "image": "nginx"});
        container.as_object_mut().unwrap().extend(container_extra.as_object().unwrap().clone());
        let mut spec = json!({"containers": [container]});
        spec.as_object_mut().unwrap().extend(spec_extra.as_object().unwrap().clone());
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    };
    let node_affinity_values = |operator: &str, values: Value| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": operator, "values": values}]}]}}}})
    };
    let node_affinity = |operator: &str| node_affinity_values(operator, json!(["v"]));
    let pod_affinity = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}}]}}});
    let cases: Vec<(Value, &str, &str)> = vec![
        (pod("q2", json!({}), json!({"resources": {"limits": {"cpu": "-1"}}})),
            "spec.containers[0].resources.limits[cpu]", "must be greater than or equal to 0"),
        (pod("q3", json!({}), json!({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}})),
            "spec.containers[0].resources.requests", "must be less than or equal to memory limit"),
        (pod("n1", json!({"nodeName": "../../etc"}), json!({})), "spec.nodeName", "a lowercase RFC 1123 subdomain"),
        (pod("e1", json!({}), json!({"env": [{"name": "X", "valueFrom": {}}]})),
            "spec.containers[0].env[0].valueFrom", "must specify one of"),
        (pod("e2", json!({}), json!({"env": [{"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})),
            "spec.containers[0].env[0].valueFrom", "may not be specified when `value` is not empty"),
        (pod("a1", node_affinity("Bogus"), json!({})),
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator",
            "not a valid selector operator"),
        (pod("a2", node_affinity_values("Gt", json!(["1", "2"])), json!({})),
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
            "must be specified single value when `operator` is 'Lt' or 'Gt'"),
        (pod("a3", pod_affinity, json!({})),
            "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator",
            "not a valid selector operator"),
        (json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s1"}, "spec": {
            "ports": [{"port": 80}], "clusterIPs": ["10.96.0.10", "10.96.0.11", "fd00::10"]}}),
            "spec.clusterIPs", "may only hold up to 2 values"),
        (json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s2"}, "spec": {
            "ports": [{"port": 80}], "clusterIPs": ["10.96.0.10", "10.96.0.11"], "ipFamilyPolicy": "RequireDualStack"}}),
            "spec.clusterIPs", "may specify no more than one IP for each IP family"),
        (json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3"}, "spec": {
            "ports": [{"port": 80}], "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.13"]}}),
            "spec.clusterIPs", "first value must match `clusterIP`"),
    ];
    for (body, field, words) in &cases {
        let plural = if body["kind"] == "Pod" { "pods" } else { "services" };
        let path = format!("/api/v1/namespaces/default/{plural}");
        let a = api.post(&path, body).await;
        let name = body["metadata"]["name"].as_str().unwrap();
        assert_eq!(a.code, 422, "{name} was not refused: {}", a.text());
        assert_eq!(a.json()["reason"], "Invalid");
        assert!(cause_fields(&a).iter().any(|f| f == field), "{name}: no cause at {field}: {}", a.text());
        assert!(a.text().contains(words), "{name}: the answer does not say {words:?}: {}", a.text());
        assert_eq!(api.get(&format!("{path}/{name}")).await.code, 404, "{name} was stored");
    }

    // Phase: a quantity that does not parse is a body upstream cannot decode: 400, as upstream answers.
    let garbage = pod("q1", json!({}), json!({"resources": {"limits": {"cpu": "garbage"}}}));
    let a = api.post("/api/v1/namespaces/default/pods", &garbage).await;
    assert_status(&a, 400, "BadRequest", "quantities must match the regular expression");
    assert_eq!(api.get("/api/v1/namespaces/default/pods/q1").await.code, 404, "q1 was stored");

    // Phase: valid quantities, selectors and dual-stack IPs are still accepted.
    let ok = pod(
        "ok",
        node_affinity("In"),
        json!({"resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"cpu": "0.5", "memory": "1e9"}}}),
    );
    api.create("/api/v1/namespaces/default/pods", &ok).await;

    // Phase: a malformed DeleteOptions body is refused and deletes nothing.
    api.create("/api/v1/namespaces/default/configmaps", &config_map("keep", "x")).await;
    for body in [
        json!({"gracePeriodSeconds": "x"}),
        json!({"propagationPolicy": 3}),
        json!({"preconditions": "x"}),
        json!({"dryRun": "All"}),
    ] {
        let a = api
            .send("DELETE", "/api/v1/namespaces/default/configmaps/keep", Some("application/json"), Some(&body))
            .await;
        assert_eq!(a.code, 400, "DeleteOptions {body}: {}", a.text());
        assert_eq!(a.json()["reason"], "BadRequest");
    }
    assert_eq!(api.get("/api/v1/namespaces/default/configmaps/keep").await.code, 200);
    // kubectl describe reads every pod; it must still decode.
    let pods = api.get("/api/v1/namespaces/default/pods").await;
    assert_eq!(pods.code, 200);
    let _: k8s_openapi::List<k8s_openapi::api::core::v1::Pod> = serde_json::from_slice(&pods.body).unwrap();
}
