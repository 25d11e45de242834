//! The official Python `kubernetes` client (from PyPI) against a follower: CRUD, patches, server-side apply
//! and watches on pods and deployments (`tests/python/client.py` asserts on every step).

mod harness;

use std::process::Command;

use harness::TestCluster;

/// The Python interpreter that has the `kubernetes` package (`deploy/dev.sh` prepares one).
fn python() -> String {
    std::env::var("RAFTSMAN_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_does_crud_patches_and_watches() {
    let cluster = TestCluster::start(3).await;
    let follower = (cluster.leader().await + 1) % 3;
    let kubeconfig = cluster.local.members[follower].data_dir.join("admin.kubeconfig");
    // Ready once it serves the default namespace's ServiceAccount to the admin.
    harness::kube_client(&cluster, follower).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let out = Command::new(python()).arg(script).arg(&kubeconfig).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("checks passed"), "{stdout}");
}
