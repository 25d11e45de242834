//! Real `etcdctl` (Debian's etcd-client, v3.4) as the tests run it, against the etcd API of chosen replicas,
//! over TLS with the client certificate the cluster made for it.

use std::process::{Command, Stdio};

use raftsman::cluster::local::LocalCluster;
use serde_json::Value;

/// etcdctl for some of a cluster's replicas.
#[derive(Clone)]
pub struct Etcdctl {
    hosts: Vec<String>,
    /// `--cacert`, `--cert`, `--key`.
    tls: Vec<String>,
}

impl Etcdctl {
    /// etcdctl for every replica of `cluster`.
    pub fn of(cluster: &LocalCluster) -> Etcdctl {
        let files = cluster.etcd_client_files();
        let flag = |name: &str, path: &std::path::Path| format!("--{name}={}", path.display());
        Etcdctl {
            hosts: cluster.members.iter().map(|m| m.client_addr.to_string()).collect(),
            tls: vec![flag("cacert", &files.trusted_ca), flag("cert", &files.cert), flag("key", &files.key)],
        }
    }

    /// etcdctl for replica `i` alone.
    pub fn only(&self, i: usize) -> Etcdctl {
        Etcdctl { hosts: vec![self.hosts[i].clone()], tls: self.tls.clone() }
    }

    /// etcdctl for the same replicas showing other credentials (`--cacert`, `--cert`, `--key` flags; none: no
    /// TLS at all).
    pub fn with_credentials(&self, tls: &[String]) -> Etcdctl {
        Etcdctl { hosts: self.hosts.clone(), tls: tls.to_vec() }
    }

    /// The endpoints it talks to, one per replica.
    pub fn each(&self) -> impl Iterator<Item = Etcdctl> + '_ {
        (0..self.hosts.len()).map(|i| self.only(i))
    }

    /// The arguments that name its endpoints and credentials.
    pub fn connection(&self) -> Vec<String> {
        let mut args = vec![format!("--endpoints={}", self.hosts.join(","))];
        args.extend(self.tls.iter().cloned());
        args
    }

    fn command(&self) -> Command {
        let mut command = Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").args(self.connection());
        command
    }

    /// Runs etcdctl with `args` (and `stdin`) and returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl is installed (Debian package etcd-client)");
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What etcdctl with `args` prints, asserting that it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let (success, out, err) = self.run(args, None);
        assert!(success, "etcdctl {args:?} failed: {err}");
        out
    }

    /// The key-values `etcdctl get <args> -w json` prints (an empty list when nothing matches).
    pub fn get_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-w", "json"]);
        let out = self.ok(&all);
        let answer: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl printed no JSON ({e}): {out}"));
        answer["kvs"].as_array().cloned().unwrap_or_default()
    }

    /// The lease `key` is attached to (0: none), as etcdctl reads it; None when the key does not exist.
    pub fn lease_of(&self, key: &str) -> Option<i64> {
        let kvs = self.get_json(&[key]);
        let kv = kvs.first()?;
        // etcd's JSON leaves a zero lease out.
        Some(kv.get("lease").map_or(0, |l| l.as_i64().expect("a numeric lease id")))
    }
}
