//! The audit log against a real replica and real kubectl: every write the replica answers is a line of its
//! `audit.log` in kube-apiserver's format (verb, request URI, object, user, user agent, response code,
//! timestamps), refused writes included (a conflict, a write its user may not make); reads are not.

mod harness;

use std::time::Duration;

use serde_json::Value;

use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};

/// The audit events of replica `i` for requests whose URI holds `needle`.
fn events(c: &TestCluster, i: usize, needle: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(c.local.members[i].data_dir.join("audit.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is one JSON event"))
        .filter(|e| e["requestURI"].as_str().is_some_and(|u| u.contains(needle)))
        // The leader's own writes (each namespace's `kube-root-ca.crt`) are not the test's.
        .filter(|e| e["user"]["username"] != raftsman::security::authn::CONTROLLER_MANAGER_USER)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_through_a_replica_is_in_its_audit_log_and_reads_are_not() {
    let c = TestCluster::start(1).await;
    let k = Kubectl::for_replica(&c, 0).await;
    k.ok(&["create", "configmap", "audited", "--from-literal=k=v"]);
    k.fails(&["create", "configmap", "audited", "--from-literal=k=v"]);
    k.ok(&["label", "configmap", "audited", "x=y"]);
    k.ok(&["get", "configmap", "audited"]);
    k.ok(&["delete", "configmap", "audited"]);
    let stranger = Kubectl::as_user(&c, 0, "mallory", &[]);
    stranger.fails(&["create", "configmap", "audited", "--from-literal=k=v"]);

    let seen = eventually(Duration::from_secs(10), "the audit lines", || async {
        let seen = events(&c, 0, "configmaps");
        (seen.len() >= 5).then_some(seen)
    })
    .await;
    let summary: Vec<(String, u64)> = seen
        .iter()
        .map(|e| (e["verb"].as_str().unwrap().to_owned(), e["responseStatus"]["code"].as_u64().unwrap()))
        .collect();
    let expected = [("create", 201), ("create", 409), ("patch", 200), ("delete", 200), ("create", 403)];
    let expected: Vec<(String, u64)> = expected.iter().map(|(v, c)| (v.to_string(), *c)).collect();
    assert_eq!(summary, expected, "{seen:#?}");
    let first = &seen[0];
    assert_eq!(first["kind"], "Event");
    assert_eq!(first["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(first["stage"], "ResponseComplete");
    assert_eq!(first["requestURI"].as_str().unwrap().split('?').next(), Some("/api/v1/namespaces/default/configmaps"));
    assert_eq!(first["user"]["username"], "system:admin");
    assert_eq!(first["user"]["groups"][0], "system:masters");
    assert_eq!(first["objectRef"]["resource"], "configmaps");
    assert_eq!(seen[4]["user"]["username"], "mallory");
    assert!(first["userAgent"].as_str().unwrap().starts_with("kubectl"), "{first}");
    assert!(first["requestReceivedTimestamp"].as_str().is_some() && first["auditID"].as_str().is_some());
    assert!(seen[3]["requestURI"].as_str().unwrap().contains("/configmaps/audited"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.local.members[0].data_dir.join("audit.log")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
