//! Real `etcdctl` (Debian's etcd-client, v3.4) as the tests run it, against the etcd API of chosen replicas.

use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs etcdctl against `endpoints` and returns (success, stdout, stderr).
pub fn etcdctl(endpoints: &[String], args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let hosts: Vec<&str> = endpoints.iter().map(|e| e.trim_start_matches("http://")).collect();
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", hosts.join(",")))
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

/// The key-values `etcdctl get <args> -w json` prints (an empty list when nothing matches).
pub fn get_json(endpoints: &[String], args: &[&str]) -> Vec<Value> {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-w", "json"]);
    let (success, out, err) = etcdctl(endpoints, &all, None);
    assert!(success, "etcdctl {all:?} failed: {err}");
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl printed no JSON ({e}): {out}"));
    answer["kvs"].as_array().cloned().unwrap_or_default()
}

/// The lease `key` is attached to (0: none), as etcdctl reads it; None when the key does not exist.
pub fn lease_of(endpoints: &[String], key: &str) -> Option<i64> {
    let kvs = get_json(endpoints, &[key]);
    let kv = kvs.first()?;
    // etcd's JSON leaves a zero lease out.
    Some(kv.get("lease").map_or(0, |l| l.as_i64().expect("a numeric lease id")))
}
