//! Secrets encrypted at rest, against a three-replica cluster (local clusters get an encryption configuration
//! with a random key): kubectl reads a Secret back whole, through gets, lists and a watch, while etcdctl sees
//! only the sealed value, and the value (plain or base64) is nowhere in the cluster's files: data dirs with their
//! Raft logs, state machines and snapshots, and the replicas' logs. Rotating the key: the old one kept second,
//! the Secret rewritten with `kubectl replace` is sealed with the new one, and still read once the old key is
//! gone.

mod harness;

use std::path::Path;
use std::time::Duration;

use base64::Engine;

use harness::etcdctl::Etcdctl;
use harness::kubectl::{follower, Kubectl};
use harness::{eventually, TestCluster};

/// Whether any file under `dir` contains `needle`.
fn found_under(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(found_under(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            found.push(path.display().to_string());
        }
    }
    found
}

/// The sealed value etcdctl reads for Secret `name` in `default`.
fn stored(c: &TestCluster, name: &str) -> Vec<u8> {
    let kvs = Etcdctl::of(&c.local).get_json(&[&format!("/registry/secrets/default/{name}")]);
    let value = kvs[0]["value"].as_str().expect("the secret is stored");
    base64::engine::general_purpose::STANDARD.decode(value).unwrap()
}

fn password(k: &Kubectl, name: &str) -> String {
    let encoded = k.ok(&["get", "secret", name, "-o", "jsonpath={.data.password}"]);
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap()).unwrap()
}

/// Restarts every replica (one at a time, so the cluster keeps a quorum).
async fn restart_all(c: &mut TestCluster) {
    for i in 0..3 {
        assert!(c.local.stop(i, Duration::from_secs(10)), "replica {i} stopped cleanly");
        c.local.start(i).unwrap();
        c.leader().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_read_whole_through_every_path() {
    // Snapshots every 50 entries, so the replicas' snapshots hold the Secret too.
    let mut c = TestCluster::start_with(3, &["--snapshot-count", "50"]).await;
    let dir = c.local.members[0].data_dir.parent().unwrap().to_owned();
    let k = Kubectl::for_replica(&c, follower(c.leader().await)).await;
    let secret = format!("hunter2-{}", uuid::Uuid::new_v4().simple());
    let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);

    // A watch (served by the watch cache) sees the Secret's creation and update in the clear.
    let watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.local.members[0].data_dir.join("admin.kubeconfig"))
        .args(["get", "--raw", "/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=8"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    k.ok(&["create", "secret", "generic", "db", &format!("--from-literal=password={secret}")]);
    assert_eq!(password(&k, "db"), secret);
    let listed = k.json(&["get", "secrets", "-o", "json"]);
    assert!(listed.to_string().contains(&encoded), "the list holds the value: {listed}");
    let cached = k.ok(&["get", "--raw", "/api/v1/namespaces/default/secrets?resourceVersion=0"]);
    assert!(cached.contains(&encoded), "the cached list holds the value: {cached}");
    k.ok(&["label", "secret", "db", "tier=back"]);
    let events = String::from_utf8(watch.wait_with_output().unwrap().stdout).unwrap();
    let with_value = events.lines().filter(|l| l.contains(&encoded)).count();
    assert!(with_value >= 2, "the watch saw the Secret added and modified, in the clear: {events}");

    // Stored sealed with the configuration's key, as etcdctl sees it.
    assert!(
        stored(&c, "db").starts_with(b"k8s:enc:aesgcm:v1:key1:"),
        "{:?}",
        String::from_utf8_lossy(&stored(&c, "db"))
    );

    // Enough writes for every replica to snapshot, then nothing in any file holds the value.
    for i in 0..60 {
        k.ok(&["create", "configmap", &format!("filler-{i}"), "--from-literal=k=v"]);
    }
    let snapshots = eventually(Duration::from_secs(30), "a snapshot on every replica", || async {
        let with: Vec<bool> = c
            .local
            .members
            .iter()
            .map(|m| std::fs::read_dir(m.data_dir.join("snap")).is_ok_and(|d| d.count() > 0))
            .collect();
        with.iter().all(|s| *s).then_some(with)
    })
    .await;
    assert_eq!(snapshots, [true, true, true]);
    // (A ConfigMap's value, stored as is, is found the same way: the search can find what is there.)
    assert!(!found_under(&dir, b"filler-59").is_empty(), "the search finds an unencrypted object");
    for needle in [secret.as_bytes(), encoded.as_bytes()] {
        let found = found_under(&dir, needle);
        assert!(found.is_empty(), "{:?} is in {found:?}", String::from_utf8_lossy(needle));
    }

    // Rotation: a new key first, the old one second; after a restart the Secret still reads, and rewritten it is
    // sealed with the new key; with the old key gone it still reads.
    let config = c.local.pki.join(raftsman::cluster::local::ENCRYPTION_CONFIG);
    let first = std::fs::read_to_string(&config).unwrap();
    let old_key = first.lines().find(|l| l.trim_start().starts_with("secret:")).unwrap().to_owned();
    let new_key = format!("              secret: {}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let rotated = first.replace(
        &format!("            - name: key1\n{old_key}\n"),
        &format!("            - name: key2\n{new_key}\n            - name: key1\n{old_key}\n"),
    );
    assert_ne!(rotated, first);
    std::fs::write(&config, &rotated).unwrap();
    restart_all(&mut c).await;
    let k = Kubectl::for_replica(&c, follower(c.leader().await)).await;
    assert_eq!(password(&k, "db"), secret);
    let all = k.run(&["get", "secrets", "-o", "json"]);
    let replaced = k.run_with_input(&["replace", "-f", "-"], &all.stdout);
    assert!(replaced.status.success(), "{}", String::from_utf8_lossy(&replaced.stderr));
    assert!(stored(&c, "db").starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    std::fs::write(
        &config,
        first.replace(
            &format!("            - name: key1\n{old_key}\n"),
            &format!("            - name: key2\n{new_key}\n"),
        ),
    )
    .unwrap();
    restart_all(&mut c).await;
    let k = Kubectl::for_replica(&c, follower(c.leader().await)).await;
    assert_eq!(password(&k, "db"), secret);
}
