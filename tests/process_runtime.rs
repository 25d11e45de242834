//! The agent's process runtime with real child processes (run under the real `raftsman agent-shim`), and the
//! kubelet endpoint serving their logs over real TLS connections. No cluster: the runtime and the endpoint
//! alone.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};

use harness::eventually;
use raftsman::agent::kubelet::container_log::{self, LogCursor, LogOptions, Progress};
use raftsman::agent::kubelet::Access;
use raftsman::agent::runtime::process::{ProcessRuntime, DEFAULT_PATH};
use raftsman::agent::runtime::{ContainerSpec, ContainerState, PodRef, Runtime, RuntimeError, SandboxSpec};
use raftsman::apiserver::http::ReplicaClient;
use raftsman::security::pki::{Authority, Usage};
use raftsman::security::tls;

/// A runtime on `dir` whose shim is the `raftsman` binary.
fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::with_shim(dir, PathBuf::from(env!("CARGO_BIN_EXE_raftsman"))).unwrap()
}

fn pod(uid: &str) -> PodRef {
    PodRef { uid: uid.to_string(), namespace: "default".to_string(), name: format!("pod-{uid}") }
}

fn container(name: &str, argv: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: "busybox:1.36".to_string(),
        command: argv.iter().map(|s| s.to_string()).collect(),
        args: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        ..Default::default()
    }
}

fn shell(name: &str, script: &str) -> ContainerSpec {
    container(name, &["sh", "-c", script])
}

/// Kills every process the runtime's files under `dir` name when a test ends, however it ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(pods) = std::fs::read_dir(self.0.join("pods")) else { return };
        for pod in pods.flatten() {
            for container in std::fs::read_dir(pod.path().join("containers")).into_iter().flatten().flatten() {
                for attempt in std::fs::read_dir(container.path()).into_iter().flatten().flatten() {
                    let Ok(text) = std::fs::read(attempt.path().join("started.json")) else { continue };
                    let started: serde_json::Value = serde_json::from_slice(&text).unwrap();
                    for (pid, ticks) in [("pid", "start_ticks"), ("shim_pid", "shim_start_ticks")] {
                        let (pid, ticks) = (started[pid].as_u64().unwrap() as u32, started[ticks].as_u64().unwrap());
                        if start_ticks(pid) == Some(ticks) {
                            // SAFETY: kill(2) touches no memory; the process was checked to be the one started.
                            unsafe {
                                libc::kill(-(pid as i32), libc::SIGKILL);
                                libc::kill(pid as i32, libc::SIGKILL);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A process's start time in clock ticks after boot, while it has not been reaped.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
}

/// Whether any process is in process group `group`.
fn group_exists(group: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe { libc::kill(-(group as i32), 0) == 0 }
}

/// Waits until the latest attempt of a container has exited; its attempt, exit code and reason.
async fn exited(runtime: &ProcessRuntime, uid: &str, name: &str) -> (u32, i32, String) {
    eventually(Duration::from_secs(10), &format!("container {name} to exit"), || async {
        let reports = runtime.list().await.unwrap();
        let report = reports.into_iter().find(|r| r.pod_uid == uid && r.name == name)?;
        match report.state {
            ContainerState::Exited { exit_code, reason, started_at, finished_at, .. } => {
                assert!(started_at <= finished_at);
                Some((report.attempt, exit_code, reason))
            }
            ContainerState::Running { .. } => None,
        }
    })
    .await
}

/// Whether a container's latest attempt is reported running.
async fn is_running(runtime: &ProcessRuntime, uid: &str, name: &str) -> bool {
    let reports = runtime.list().await.unwrap();
    reports.iter().any(|r| r.pod_uid == uid && r.name == name && matches!(r.state, ContainerState::Running { .. }))
}

/// A log file as `kubectl logs` shows it.
fn read_log(path: &Path, options: LogOptions) -> String {
    let mut cursor = LogCursor::open(path, options).unwrap();
    let mut out = Vec::new();
    while cursor.read(&mut out, 1 << 20).unwrap() == Progress::More {}
    String::from_utf8(out).unwrap()
}

fn current_log(runtime: &ProcessRuntime, uid: &str, name: &str) -> String {
    read_log(&runtime.log_path(uid, name, false).expect("a log"), LogOptions::default())
}

#[tokio::test]
async fn a_container_runs_its_command_with_its_own_env_and_its_output_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = runtime(dir.path());
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "the test itself runs with cargo's environment");
    let mut spec = shell(
        "app",
        r#"echo out; echo err >&2; echo "FOO=$FOO"; echo "PATH=$PATH"; echo "HOME=$HOME";
           echo "LEAK=${CARGO_MANIFEST_DIR:-none}"; pwd; printf 'no newline'; exit 3"#,
    );
    spec.env = vec![("FOO".to_string(), "bar baz".to_string())];
    runtime.start(&pod("u1"), &SandboxSpec::default(), &spec, 0).await.unwrap();

    let (attempt, code, reason) = exited(&runtime, "u1", "app").await;
    assert_eq!((attempt, code, reason.as_str()), (0, 3, "Error"));
    let work = std::fs::canonicalize(dir.path().join("pods/u1/work")).unwrap();
    // stdout and stderr are read apart, so only each stream's own order is certain.
    let raw = std::fs::read_to_string(runtime.log_path("u1", "app", false).unwrap()).unwrap();
    let records: Vec<_> = raw.lines().map(|l| container_log::decode(l.as_bytes()).expect("a record")).collect();
    let of = |stream| -> Vec<String> {
        records.iter().filter(|r| r.stream == stream).map(|r| String::from_utf8_lossy(r.content).into_owned()).collect()
    };
    let out = of(container_log::Stream::Stdout);
    assert_eq!(
        out,
        [
            "out".to_string(),
            "FOO=bar baz".to_string(),
            format!("PATH={DEFAULT_PATH}"),
            out[3].clone(),
            "LEAK=none".to_string(),
            work.display().to_string(),
            "no newline".to_string(),
        ]
    );
    assert!(out[3].starts_with("HOME=/"), "{out:?}");
    assert_eq!(of(container_log::Stream::Stderr), ["err"]);
    // Output that ended without a newline is a piece of a line, served as it was written.
    assert!(records.iter().rev().find(|r| r.content == b"no newline").unwrap().partial);
    assert!(records.iter().filter(|r| r.content != b"no newline").all(|r| !r.partial));
    let served = current_log(&runtime, "u1", "app");
    assert_eq!(served.len(), raw.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap().len() + 1).sum::<usize>() - 1);
}

#[tokio::test]
async fn exit_codes_and_reasons_are_recorded_as_upstream_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = runtime(dir.path());
    let uid = "u2";
    runtime.start(&pod(uid), &SandboxSpec::default(), &container("ok", &["true"]), 0).await.unwrap();
    runtime.start(&pod(uid), &SandboxSpec::default(), &shell("killed", "kill -KILL $$"), 0).await.unwrap();
    // A process the container's main process left behind in its group ends with it.
    runtime
        .start(&pod(uid), &SandboxSpec::default(), &shell("leaves", "sleep 1000 & echo $!; exit 0"), 0)
        .await
        .unwrap();
    assert_eq!(exited(&runtime, uid, "ok").await, (0, 0, "Completed".to_string()));
    assert_eq!(exited(&runtime, uid, "killed").await, (0, 137, "Error".to_string()));
    assert_eq!(exited(&runtime, uid, "leaves").await, (0, 0, "Completed".to_string()));
    let left: u32 = current_log(&runtime, uid, "leaves").trim().parse().unwrap();
    assert!(start_ticks(left).is_none(), "the background sleep {left} was killed with its container");

    let missing =
        runtime.start(&pod(uid), &SandboxSpec::default(), &container("missing", &["no-such-program-here"]), 0).await;
    let message = match missing {
        Err(RuntimeError::Start(message)) => message,
        other => panic!("{:?}", other.err()),
    };
    assert_eq!(message, r#"exec: "no-such-program-here": executable file not found in $PATH"#);
    assert_eq!(exited(&runtime, uid, "missing").await, (0, 128, "StartError".to_string()));

    let mut elsewhere = container("elsewhere", &["true"]);
    elsewhere.working_dir = Some(dir.path().join("nowhere").display().to_string());
    let Err(RuntimeError::Start(message)) = runtime.start(&pod(uid), &SandboxSpec::default(), &elsewhere, 0).await
    else {
        panic!()
    };
    assert!(message.starts_with("chdir to cwd"), "{message}");
    let Err(RuntimeError::Start(message)) =
        runtime.start(&pod(uid), &SandboxSpec::default(), &container("none", &[]), 0).await
    else {
        panic!()
    };
    assert!(message.contains("no command"), "{message}");
    assert_eq!(exited(&runtime, uid, "none").await, (0, 128, "StartError".to_string()));
    assert!(runtime.start(&pod("../x"), &SandboxSpec::default(), &container("c", &["true"]), 0).await.is_err());
}

#[tokio::test]
async fn stop_sends_sigterm_to_the_group_then_sigkill_once_the_grace_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = runtime(dir.path());
    let uid = "u3";
    runtime.start(&pod(uid), &SandboxSpec::default(), &container("polite", &["sleep", "1000"]), 0).await.unwrap();
    runtime
        .start(
            &pod(uid),
            &SandboxSpec::default(),
            &shell("stubborn", "trap '' TERM; echo ready; while :; do sleep 0.05; done"),
            0,
        )
        .await
        .unwrap();
    assert!(is_running(&runtime, uid, "polite").await && is_running(&runtime, uid, "stubborn").await);
    let stubborn = runtime.pid(uid, "stubborn").unwrap();
    eventually(Duration::from_secs(5), "the stubborn container to ignore SIGTERM", || async {
        current_log(&runtime, uid, "stubborn").contains("ready").then_some(())
    })
    .await;

    let begun = Instant::now();
    runtime.stop(uid, "polite", Duration::from_secs(30)).await.unwrap();
    assert!(begun.elapsed() < Duration::from_secs(5), "SIGTERM ends it without waiting for the grace");
    assert_eq!(exited(&runtime, uid, "polite").await, (0, 143, "Error".to_string()));

    let grace = Duration::from_millis(600);
    let begun = Instant::now();
    runtime.stop(uid, "stubborn", grace).await.unwrap();
    let took = begun.elapsed();
    assert!(took >= grace && took < grace + Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(exited(&runtime, uid, "stubborn").await, (0, 137, "Error".to_string()));
    assert!(!group_exists(stubborn), "every process of the container's group is gone");
    // Stopping what has exited already is nothing to do.
    runtime.stop(uid, "stubborn", grace).await.unwrap();
    runtime.stop(uid, "never-started", grace).await.unwrap();
}

#[tokio::test]
async fn a_new_runtime_on_the_same_dir_keeps_the_running_containers_and_learns_their_exit() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let uid = "u4";
    let first = runtime(dir.path());
    let waits = r#"echo before; while [ ! -e release ]; do sleep 0.05; done; echo after; exit 7"#;
    first.start(&pod(uid), &SandboxSpec::default(), &shell("waits", waits), 0).await.unwrap();
    first.start(&pod(uid), &SandboxSpec::default(), &container("sleeps", &["sleep", "1000"]), 0).await.unwrap();
    let (waits_pid, sleeps_pid) = (first.pid(uid, "waits").unwrap(), first.pid(uid, "sleeps").unwrap());
    let ticks = start_ticks(waits_pid).unwrap();
    drop(first);

    // The agent restarts: what it started runs on, with the same pids, and is reported as running.
    let second = runtime(dir.path());
    assert!(is_running(&second, uid, "waits").await && is_running(&second, uid, "sleeps").await);
    assert_eq!(second.pid(uid, "waits"), Some(waits_pid));
    assert_eq!(second.pid(uid, "sleeps"), Some(sleeps_pid));
    assert_eq!(start_ticks(waits_pid), Some(ticks), "the very same process");

    std::fs::write(dir.path().join("pods").join(uid).join("work/release"), b"").unwrap();
    assert_eq!(exited(&second, uid, "waits").await, (0, 7, "Error".to_string()));
    assert_eq!(current_log(&second, uid, "waits"), "before\nafter\n");
    second.stop(uid, "sleeps", Duration::from_secs(10)).await.unwrap();
    assert_eq!(exited(&second, uid, "sleeps").await, (0, 143, "Error".to_string()));

    // And a third one reads the same exits back from the files.
    let third = runtime(dir.path());
    assert_eq!(exited(&third, uid, "waits").await, (0, 7, "Error".to_string()));
    assert_eq!(exited(&third, uid, "sleeps").await, (0, 143, "Error".to_string()));
}

#[tokio::test]
async fn attempts_keep_the_previous_log_and_a_removed_pod_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = runtime(dir.path());
    let uid = "u5";
    for attempt in 0..3 {
        runtime
            .start(&pod(uid), &SandboxSpec::default(), &shell("app", &format!("echo attempt {attempt}")), attempt)
            .await
            .unwrap();
        assert_eq!(exited(&runtime, uid, "app").await, (attempt, 0, "Completed".to_string()));
        assert_eq!(current_log(&runtime, uid, "app"), format!("attempt {attempt}\n"));
        let previous = runtime.log_path(uid, "app", true).map(|p| read_log(&p, LogOptions::default()));
        assert_eq!(previous, attempt.checked_sub(1).map(|p| format!("attempt {p}\n")));
    }
    let attempts: Vec<String> = std::fs::read_dir(dir.path().join("pods").join(uid).join("containers/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(attempts.len(), 2, "only the latest two attempts are kept: {attempts:?}");
    assert!(
        runtime.start(&pod(uid), &SandboxSpec::default(), &container("app", &["true"]), 2).await.is_err(),
        "attempt 2 ran already"
    );

    runtime.start(&pod(uid), &SandboxSpec::default(), &container("sleeps", &["sleep", "1000"]), 0).await.unwrap();
    assert!(runtime.remove(uid).await.is_err(), "a pod with a running container is not removed");
    runtime.stop(uid, "sleeps", Duration::from_secs(5)).await.unwrap();
    runtime.remove(uid).await.unwrap();
    assert!(!dir.path().join("pods").join(uid).exists());
    assert!(runtime.list().await.unwrap().is_empty());
    assert!(runtime.log_path(uid, "app", false).is_none());
}

/// A pod object of `uid`, as the agent hands the runtime the pods it runs.
fn pod_object(uid: &str) -> Arc<k8s_openapi::api::core::v1::Pod> {
    let pod = serde_json::json!({"metadata": {"uid": uid, "name": format!("pod-{uid}"), "namespace": "default"}});
    Arc::new(serde_json::from_value(pod).unwrap())
}

#[tokio::test]
async fn usage_counts_the_cpu_and_memory_of_a_containers_processes_and_their_children() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = runtime(dir.path());
    // A child that spins, under a parent that only waits: the container is both.
    runtime
        .start(&pod("busy"), &SandboxSpec::default(), &shell("spin", "sh -c 'while :; do :; done' & wait"), 0)
        .await
        .unwrap();
    runtime.start(&pod("idle"), &SandboxSpec::default(), &shell("sleep", "exec sleep 60"), 0).await.unwrap();
    eventually(Duration::from_secs(10), "both containers running", || async {
        (is_running(&runtime, "busy", "spin").await && is_running(&runtime, "idle", "sleep").await).then_some(())
    })
    .await;
    let pods = [pod_object("busy"), pod_object("idle"), pod_object("unknown")];
    let first = runtime.usage(&pods, Instant::now());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = runtime.usage(&pods, Instant::now());
    let elapsed = started.elapsed().as_nanos() as f64;
    let counters = |sample: &[raftsman::agent::runtime::PodCounters], uid: &str| {
        let pod = sample.iter().find(|p| p.uid == uid).unwrap_or_else(|| panic!("{uid} measured"));
        assert_eq!(pod.containers.len(), 1, "{pod:?}");
        pod.containers[0].1
    };
    let busy = (counters(&first, "busy"), counters(&second, "busy"));
    let cores = (busy.1.cpu_ns - busy.0.cpu_ns) as f64 / elapsed;
    // One spinning process on a shared two-core machine: most of a core, never more than the machine has.
    assert!(cores > 0.3 && cores < 2.1, "the spinning container used {cores} cores");
    assert!(busy.1.memory_bytes > 100 * 1024, "resident memory of two shells: {}", busy.1.memory_bytes);
    let idle = (counters(&first, "idle"), counters(&second, "idle"));
    let idle_cores = (idle.1.cpu_ns - idle.0.cpu_ns) as f64 / elapsed;
    assert!(idle_cores < 0.05, "a sleeping container used {idle_cores} cores");
    let unknown = second.iter().find(|p| p.uid == "unknown").expect("a pod the runtime does not run");
    assert!(unknown.containers.is_empty());
    let host = runtime.node_usage().expect("the host's counters");
    assert!(host.cpu_ns > 0 && host.memory_bytes > 0, "{host:?}");
}

/// A GET of `url` (an `https://` URI).
async fn get(client: &ReplicaClient, url: &str) -> (u16, String) {
    let request = hyper::Request::get(url).body(Empty::new()).unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A client of the kubelet endpoint showing a certificate of `ca` for `user` in `groups` (none: no certificate).
fn client_as(ca: &Authority, user: Option<(&str, &[&str])>) -> ReplicaClient {
    let issued = user.map(|(user, groups)| ca.issue(user, groups, &[], Usage::Client).unwrap());
    let identity = issued.as_ref().map(|i| (i.cert_pem.as_bytes(), i.key_pem.as_bytes()));
    ReplicaClient::new(5_000, 1, Some(tls::client_config(ca.cert_pem().as_bytes(), identity).unwrap()))
}

#[tokio::test]
async fn the_kubelet_endpoint_serves_container_logs_to_the_api_servers_only() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let runtime = Arc::new(runtime(dir.path()));
    runtime
        .start(&pod("u6"), &SandboxSpec::default(), &shell("app", "echo one; echo two; echo three"), 0)
        .await
        .unwrap();
    exited(&runtime, "u6", "app").await;
    let follow_script = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second; exit 1";
    runtime.start(&pod("u7"), &SandboxSpec::default(), &shell("app", follow_script), 0).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/containerLogs/default", listener.local_addr().unwrap());
    let ca = Authority::create("test-ca").unwrap();
    let node = ca.issue("system:node:n1", &["system:nodes"], &["127.0.0.1".into()], Usage::ServerAndClient).unwrap();
    let identity = tls::LiveIdentity::new(node.cert_pem.as_bytes(), node.key_pem.as_bytes()).unwrap();
    let access = Access::Tls(tls::kubelet_server_config(ca.cert_pem().as_bytes(), identity).unwrap());
    let pods = |namespace: &str, name: &str| match (namespace, name) {
        ("default", "web") => Some("u6".to_string()),
        ("default", "tail") => Some("u7".to_string()),
        ("default", "pending") => Some("u8".to_string()),
        _ => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(raftsman::agent::kubelet::serve(
        listener,
        access,
        pods,
        Arc::clone(&runtime),
        Default::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let client = client_as(&ca, Some(("system:apiserver", &["system:masters"])));

    assert_eq!(get(&client, &format!("{base}/web/app")).await, (200, "one\ntwo\nthree\n".to_string()));
    // Only the API servers are served: another certificate of the authority is refused, a client without one
    // or with another authority's cannot even connect.
    let node_client = client_as(&ca, Some(("system:node:n2", &["system:nodes"])));
    assert_eq!(get(&node_client, &format!("{base}/web/app")).await.0, 403);
    assert_eq!(get(&node_client, &base.replace("/containerLogs/default", "/healthz")).await, (200, "ok".into()));
    let anonymous = client_as(&ca, None);
    let refused = anonymous.request(hyper::Request::get(format!("{base}/web/app")).body(Empty::new()).unwrap()).await;
    assert!(refused.is_err(), "a client without a certificate is refused at the handshake");
    let other =
        Authority::create("other-ca").unwrap().issue("system:apiserver", &["system:masters"], &[], Usage::Client);
    let other = other.unwrap();
    let shown = (other.cert_pem.as_bytes(), other.key_pem.as_bytes());
    let stranger =
        ReplicaClient::new(5_000, 1, Some(tls::client_config(ca.cert_pem().as_bytes(), Some(shown)).unwrap()));
    let refused = stranger.request(hyper::Request::get(format!("{base}/web/app")).body(Empty::new()).unwrap()).await;
    assert!(refused.is_err(), "another authority's client is refused at the handshake");
    assert_eq!(get(&client, &format!("{base}/web/app?tailLines=1")).await, (200, "three\n".to_string()));
    assert_eq!(get(&client, &format!("{base}/web/app?limitBytes=5")).await, (200, "one\nt".to_string()));
    assert_eq!(get(&client, &format!("{base}/web/app?sinceTime=2999-01-01T00%3A00%3A00Z")).await.1, "");
    assert_eq!(get(&client, &format!("{base}/web/app?sinceSeconds=3600")).await.1, "one\ntwo\nthree\n");
    let (status, stamped) = get(&client, &format!("{base}/web/app?timestamps=true&tailLines=2")).await;
    assert_eq!(status, 200);
    let stamped: Vec<(&str, &str)> = stamped.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(stamped.iter().map(|(_, l)| *l).collect::<Vec<_>>(), ["two", "three"]);
    for (time, _) in &stamped {
        assert_eq!(time.len(), "2026-01-01T00:00:00.000000000Z".len(), "{time}");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
    }
    assert_eq!(
        get(&client, &format!("{base}/web/app?previous=true")).await,
        (400, r#"previous terminated container "app" in pod "web" not found"#.to_string())
    );
    assert_eq!(get(&client, &format!("{base}/nope/app")).await, (404, r#"pod "nope" does not exist"#.to_string()));
    assert_eq!(
        get(&client, &format!("{base}/web/other")).await,
        (400, r#"container "other" in pod "web" is waiting to start: ContainerCreating"#.to_string())
    );
    assert_eq!(get(&client, &format!("{base}/pending/app")).await.0, 400);
    assert_eq!(get(&client, &format!("{base}/web/app?tailLines=many")).await.0, 400);
    assert_eq!(get(&client, &format!("{base}/web/app?tailLines=-2")).await.0, 422);

    // Following a running container streams what it writes and ends once it has exited.
    let follow = hyper::Request::get(format!("{base}/tail/app?follow=true")).body(Empty::new()).unwrap();
    let response = client.request(follow).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut streamed = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !streamed.contains("first\n") {
        let frame = tokio::time::timeout_at(deadline.into(), body.frame()).await.unwrap().unwrap().unwrap();
        streamed.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    assert!(is_running(&runtime, "u7", "app").await, "the container still runs while its log is followed");
    std::fs::write(dir.path().join("pods/u7/work/go"), b"").unwrap();
    while let Some(frame) = tokio::time::timeout_at(deadline.into(), body.frame()).await.expect("the stream ends") {
        streamed.push_str(std::str::from_utf8(&frame.unwrap().into_data().unwrap()).unwrap());
    }
    assert_eq!(streamed, "first\nsecond\n");
    assert_eq!(exited(&runtime, "u7", "app").await, (0, 1, "Error".to_string()));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server stops").unwrap();
}
