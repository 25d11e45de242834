//! kubectl as a user types it, pointed at one replica of a test cluster, with its own discovery cache and work
//! dir.

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
