//! kubectl as the tests run it: the admin kubeconfig of one replica, with its own discovery cache.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, TestCluster};

/// kubectl pointed at one replica, with its own discovery cache.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub cache: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl using the admin kubeconfig replica `i` wrote into its data dir, once that replica is ready.
    pub async fn for_replica(cluster: &TestCluster, i: usize) -> Kubectl {
        let kubeconfig = cluster.local.members[i].data_dir.join("admin.kubeconfig");
        assert!(kubeconfig.exists(), "replica {i} wrote no kubeconfig");
        let k = Kubectl { kubeconfig, cache: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() };
        eventually(Duration::from_secs(20), "the api to be ready", || async {
            k.run(&["get", "--raw", "/readyz"]).status.success().then_some(())
        })
        .await;
        k
    }

    /// kubectl as `user` (in `groups`) with a client certificate of the cluster authority, pointed at replica
    /// `i`.
    pub fn as_user(cluster: &TestCluster, i: usize, user: &str, groups: &[&str]) -> Kubectl {
        use raftsman::security::{kubeconfig, pki};
        let authority = cluster.local.authority().expect("the cluster authority");
        let issued = authority.issue(user, groups, &[], pki::Usage::Client).expect("a client certificate");
        let server = format!("https://{}", cluster.local.members[i].api_addr);
        Kubectl::with_kubeconfig(&kubeconfig::render(&server, Some(authority.cert_pem()), Some(&issued), "test"))
    }

    /// kubectl with the kubeconfig `text`.
    pub fn with_kubeconfig(text: &str) -> Kubectl {
        let work = tempfile::tempdir().unwrap();
        let kubeconfig = work.path().join("kubeconfig");
        std::fs::write(&kubeconfig, text).unwrap();
        Kubectl { kubeconfig, cache: tempfile::tempdir().unwrap(), work }
    }

    /// kubectl against `server` (an `https://` URL, verified with the authority `ca`, PEM) with the bearer
    /// token `token` as its credentials.
    pub fn with_token(server: &str, ca: &str, token: &str) -> Kubectl {
        let work = tempfile::tempdir().unwrap();
        let ca_file = work.path().join("ca.crt");
        std::fs::write(&ca_file, ca).unwrap();
        let kubeconfig = work.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
             clusters: [{{name: c, cluster: {{server: '{server}', certificate-authority: '{}'}}}}]\n\
             users: [{{name: u, user: {{token: '{token}'}}}}]\n\
             contexts: [{{name: t, context: {{cluster: c, user: u}}}}]\n",
            ca_file.display()
        );
        std::fs::write(&kubeconfig, text).unwrap();
        Kubectl { kubeconfig, cache: tempfile::tempdir().unwrap(), work }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl with `input` on its stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().expect("kubectl runs")
    }

    /// Runs kubectl and returns its stdout, failing the test with its stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {} succeeded but should fail", args.join(" "));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// Writes a manifest into the work dir and returns its path.
    pub fn manifest(&self, name: &str, text: &str) -> String {
        let path = self.work.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

pub fn follower(cluster_leader: usize) -> usize {
    (cluster_leader + 1) % 3
}

/// The JSON body of an HTTP/1.1 request written by hand to replica `i`'s API, as the admin.
pub async fn raw_status(cluster: &TestCluster, i: usize, method: &str, path: &str, body: &str) -> Value {
    use tokio::io::AsyncWriteExt;
    let mut stream = super::api::connect(cluster, i).await;
    let content_type = if method == "PATCH" { "application/json-patch+json" } else { "application/json" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = super::api::read_all(&mut stream).await;
    let answer = String::from_utf8_lossy(&answer);
    let (_, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON Status ({e}): {answer}"))
}
