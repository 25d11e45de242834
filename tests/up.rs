//! `raftsman up` as the README's Quick start runs it, in a directory of its own with the default ports: the
//! admin kubeconfig it writes works and anonymous requests are refused, its agent joins with the node token
//! and runs a Deployment, etcdctl works with the documented client certificate and is refused without it,
//! `raftsman ctl status` and `snapshot save` find the cluster from the same directory,
//! SIGTERM stops everything, running it again resumes the same cluster, and a SIGKILLed `up` takes its
//! replicas with it.

mod harness;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::eventually;

/// `raftsman up` running in a directory: stopped with SIGTERM (then SIGKILL) when dropped, so that it stops
/// its replicas even when the test fails.
struct Up(Child);

impl Up {
    /// Starts `raftsman up ARGS` in `cwd` and waits until it says it is ready; returns what it printed.
    async fn start(cwd: &Path, args: &[&str]) -> (Up, String) {
        let child = Command::new(env!("CARGO_BIN_EXE_raftsman"))
            .arg("up")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut up = Up(child);
        let stdout = up.0.stdout.take().unwrap();
        let printed = tokio::task::spawn_blocking(move || {
            let mut printed = String::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap_or_default();
                printed.push_str(&line);
                printed.push('\n');
                if line.contains("press Ctrl-C to stop") {
                    break;
                }
            }
            printed
        });
        let printed = tokio::time::timeout(Duration::from_secs(90), printed).await.expect("up ready in 90 s").unwrap();
        assert!(printed.contains("3 replicas are up"), "up printed:\n{printed}\n(ports 23000-23050 must be free)");
        (up, printed)
    }

    /// Sends `signal` and returns the exit status within 20 s.
    fn end(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on a child this test spawned and has not reaped; no memory is shared.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, signal);
        }
        for _ in 0..400 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("up did not end within 20 s of signal {signal}");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.end(libc::SIGTERM);
        }
    }
}

fn run(cwd: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(program).current_dir(cwd).args(args).envs(env.iter().copied()).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// Waits until nothing listens on the replicas' API ports and the agent's kubelet port.
async fn all_ended() {
    eventually(Duration::from_secs(15), "the replicas and the agent to end", || async {
        let listening = [23002, 23012, 23022, 23050]
            .into_iter()
            .filter(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
            .collect::<Vec<_>>();
        listening.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_secure_cluster_with_an_agent_as_the_readme_says_and_ends_with_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let (mut up, printed) = Up::start(cwd, &["--agent", "process"]).await;
    assert!(printed.contains("admin kubeconfig: .raftsman/kubeconfig"), "{printed}");

    // The admin kubeconfig, its owner's only; anonymous requests are refused.
    let mode = std::fs::metadata(cwd.join(".raftsman/kubeconfig")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let kubectl = |args: &[&str]| run(cwd, "kubectl", args, &[("KUBECONFIG", ".raftsman/kubeconfig")]);
    let (ok, namespaces, err) = kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(ok, "kubectl get namespaces: {err}");
    assert!(namespaces.contains("namespace/default") && namespaces.contains("namespace/kube-system"), "{namespaces}");
    let authority = std::fs::read(cwd.join(".raftsman/pki/ca.crt")).unwrap();
    let anonymous = raftsman::security::tls::client_config(&authority, None).unwrap();
    let url: hyper::Uri = "https://127.0.0.1:23002/api/v1/namespaces".parse().unwrap();
    let answer = harness::api::https_client_with(anonymous).get(url).await.expect("an answer");
    assert_eq!(answer.status(), 401, "an anonymous request");

    // up's agent joined with the node token, and runs a Deployment's pod.
    let ready = "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}";
    eventually(Duration::from_secs(30), "up's node to be Ready", || async {
        (kubectl(&["get", "nodes", "-o", ready]).1.trim() == "True").then_some(())
    })
    .await;
    let (ok, _, err) = kubectl(&["create", "deployment", "web", "--image=busybox", "--", "sleep", "300"]);
    assert!(ok, "kubectl create deployment: {err}");
    let (ok, out, err) = kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(ok, "the Deployment rolled out: {out}{err}");

    // etcdctl with the client certificate up made, as the README exports it; refused without it.
    let etcd = [
        ("ETCDCTL_API", "3"),
        ("ETCDCTL_CACERT", ".raftsman/pki/etcd-ca.crt"),
        ("ETCDCTL_CERT", ".raftsman/pki/etcd-client.crt"),
        ("ETCDCTL_KEY", ".raftsman/pki/etcd-client.key"),
    ];
    let all = "--endpoints=127.0.0.1:23001,127.0.0.1:23011,127.0.0.1:23021";
    let (ok, status, err) = run(cwd, "etcdctl", &[all, "endpoint", "status"], &etcd);
    assert!(ok, "etcdctl endpoint status: {err}");
    assert_eq!(status.lines().count(), 3, "{status}");
    let (ok, _, err) = run(cwd, "etcdctl", &["--endpoints=127.0.0.1:23011", "put", "greeting", "hello"], &etcd);
    assert!(ok, "etcdctl put: {err}");
    let refused = ["--endpoints=127.0.0.1:23001", "--dial-timeout=1s", "--command-timeout=2s", "get", "greeting"];
    let (ok, _, _) = run(cwd, "etcdctl", &refused, &etcd[..2]);
    assert!(!ok, "etcdctl without a client certificate was served");

    // raftsman ctl, run from the same directory, finds the cluster: three replicas, one leader, the agent.
    let ctl = |args: &[&str]| run(cwd, env!("CARGO_BIN_EXE_raftsman"), &[&["ctl"], args].concat(), &[]);
    let (ok, status, err) = ctl(&["status"]);
    assert!(ok, "raftsman ctl status: {err}");
    let rows: Vec<&str> = status.lines().filter(|l| l.contains("127.0.0.1:230")).collect();
    assert_eq!(rows.len(), 3, "{status}");
    assert_eq!(rows.iter().filter(|r| r.contains(" leader ")).count(), 1, "{status}");
    assert!(rows.iter().all(|r| r.ends_with("ok")), "{status}");
    assert!(status.lines().any(|l| l.starts_with("leader: n")), "{status}");
    assert!(status.lines().any(|l| l.contains("True") && l.ends_with("s ago")), "the agent's heartbeat: {status}");
    let (ok, saved, err) = ctl(&["snapshot", "save", "backup.db"]);
    assert!(ok && saved.contains("Snapshot saved at backup.db"), "raftsman ctl snapshot save: {saved}{err}");
    assert_eq!(std::fs::metadata(cwd.join("backup.db")).unwrap().len() % 512, 32, "sized as etcdctl keeps them");

    // SIGTERM stops up, its agent and every replica.
    let status = up.end(libc::SIGTERM);
    assert!(status.success(), "up exited with {status}");
    all_ended().await;

    // Started again, it resumes the same cluster; SIGKILLed, it takes its replicas with it.
    let (mut up, _) = Up::start(cwd, &["--agent", "none"]).await;
    let get = ["--endpoints=127.0.0.1:23021", "get", "greeting", "--print-value-only"];
    assert_eq!(run(cwd, "etcdctl", &get, &etcd).1.trim(), "hello", "the data survived the restart");
    let (ok, _, err) = kubectl(&["get", "deployment", "web"]);
    assert!(ok, "the Deployment survived the restart: {err}");
    up.end(libc::SIGKILL);
    all_ended().await;
}
