//! deploy/ as an operator uses it: the install script lays out what the procedures say and refuses a binary
//! that is not raftsman, its systemd units pass systemd's own check, and a secure cluster runs from the example
//! settings: three replicas from server.toml.example and an agent from agent.toml.example, each with only its
//! addresses and file paths changed.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::etcdctl::Etcdctl;
use harness::eventually;
use harness::kubectl::Kubectl;
use raftsman::cluster::local::{self, Flavor, LocalCluster};

const BINARY: &str = env!("CARGO_BIN_EXE_raftsman");

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn install(args: &[&str]) -> Output {
    Command::new(deploy("install.sh")).args(args).output().expect("running deploy/install.sh")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[test]
fn the_install_script_lays_out_the_binary_the_units_and_the_settings_and_keeps_an_operators_own() {
    let root = tempfile::tempdir().unwrap();
    let at = |path: &str| root.path().join(path);
    std::fs::create_dir_all(at("etc/raftsman")).unwrap();
    std::fs::write(at("etc/raftsman/server.toml"), "name = \"mine\"\n").unwrap();

    let out = install(&["--binary", BINARY, "--root", root.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let version = format!("raftsman {}", env!("CARGO_PKG_VERSION"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("installed {version}")));

    let installed = at("usr/local/bin/raftsman");
    assert_eq!(mode(&installed), 0o755);
    let runs = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&runs.stdout).trim(), version);
    for (dir, expected) in [("etc/raftsman", 0o700), ("etc/raftsman/pki", 0o700), ("etc/systemd/system", 0o755)] {
        assert_eq!(mode(&at(dir)), expected, "{dir}");
    }
    for (file, expected) in [
        ("etc/raftsman/server.toml.example", 0o600),
        ("etc/raftsman/agent.toml.example", 0o600),
        ("etc/systemd/system/raftsman-server.service", 0o644),
        ("etc/systemd/system/raftsman-agent.service", 0o644),
        ("usr/local/share/doc/raftsman/PROCEDURES.md", 0o644),
    ] {
        assert_eq!(mode(&at(file)), expected, "{file}");
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert_eq!(std::fs::read(at(file)).unwrap(), std::fs::read(deploy(name)).unwrap(), "{file}");
    }
    assert_eq!(std::fs::read_to_string(at("etc/raftsman/server.toml")).unwrap(), "name = \"mine\"\n");

    // A binary that is not raftsman is refused and replaces nothing.
    let out = install(&["--binary", "/bin/true", "--root", root.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/bin/true is not raftsman"));
    let runs = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&runs.stdout).trim(), version);
}

#[test]
fn the_systemd_units_pass_systemds_check_and_start_raftsman_with_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    for (unit, command) in [("raftsman-server.service", "server"), ("raftsman-agent.service", "agent")] {
        let text = std::fs::read_to_string(deploy(unit)).unwrap();
        let start = format!("ExecStart=/usr/local/bin/raftsman {command} --config /etc/raftsman/{command}.toml\n");
        assert!(text.contains(&start), "{unit}: {text}");
        // systemd-analyze checks that the command exists: the unit as installed, run by the binary built here.
        let copy = dir.path().join(unit);
        std::fs::write(&copy, text.replace("/usr/local/bin/raftsman", BINARY)).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().expect("systemd-analyze");
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && complaints.is_empty(), "{unit}: {complaints}");
    }
    let agent = std::fs::read_to_string(deploy("raftsman-agent.service")).unwrap();
    assert!(agent.contains("\nKillMode=process\n"), "stopping the agent must leave its containers running");
}

/// The processes a test started itself, killed when it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(BINARY)
        .args(args)
        .env("RAFTSMAN_LOG", "info,kube=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start raftsman")
}

/// server.toml.example for member `i` of `local`: its name, addresses, certificates, encryption configuration
/// and data dir; everything else as the example has it.
fn server_settings(local: &LocalCluster, i: usize) -> String {
    let mut text = std::fs::read_to_string(deploy("server.toml.example")).unwrap();
    let m = &local.members[i];
    for (key, port, addr) in [("peer", 2380, m.peer_addr), ("client", 2379, m.client_addr), ("api", 6443, m.api_addr)] {
        text = text.replace(&format!("{key}-addr = \"10.0.0.1:{port}\""), &format!("{key}-addr = \"{addr}\""));
    }
    for (j, m) in local.members.iter().enumerate() {
        let host = format!("10.0.0.{}", j + 1);
        text = text.replace(&format!("{host}:2380"), &m.peer_addr.to_string());
        text = text.replace(&format!("{host}:2379"), &m.client_addr.to_string());
        text = text.replace(&format!("{host}:6443"), &m.api_addr.to_string());
    }
    let pki = &local.pki;
    text = text.replace("name = \"n1\"", &format!("name = \"{}\"", m.name));
    text = text.replace("/etc/raftsman/pki/n1-", &format!("{}/{}-", pki.display(), m.name));
    text = text.replace("/etc/raftsman/pki/", &format!("{}/", pki.display()));
    text = text.replace("/etc/raftsman/encryption.yaml", &pki.join(local::ENCRYPTION_CONFIG).to_string_lossy());
    text.replace("/var/lib/raftsman/server", &m.data_dir.to_string_lossy())
}

/// Fails unless every setting of `settings` was rewritten: no address but loopback, no file outside the test's.
fn assert_all_local(settings: &str) {
    for line in settings.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains("10.0.0.") && !line.contains("\"/etc/") && !line.contains("\"/var/"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_and_an_agent_run_from_the_example_settings() {
    let dir = tempfile::tempdir().unwrap();
    // The layout alone: ports, data dirs and certificates, as an operator makes them with `raftsman certs`.
    let local = LocalCluster::new(Flavor::Raftsman { binary: BINARY.into() }, &dir.path().join("c"), 3, None).unwrap();
    let mut processes = Processes(Vec::new());
    for (i, m) in local.members.iter().enumerate() {
        let settings = server_settings(&local, i);
        assert_all_local(&settings);
        let file = dir.path().join(format!("{}.toml", m.name));
        std::fs::write(&file, settings).unwrap();
        processes.0.push(spawn(&["server", "--config", file.to_str().unwrap()], &m.log));
    }
    let etcdctl = Etcdctl::of(&local);
    let formed = Instant::now() + Duration::from_secs(30);
    // Each member listed under its name with its peer address and, once it has published it, its client address.
    let listed = |out: &str, m: &local::LocalMember| {
        let (name, peer, client) = (format!(", {}, ", m.name), m.peer_addr.to_string(), m.client_addr.to_string());
        out.lines().any(|l| l.contains(&name) && l.contains(&peer) && l.contains(&client))
    };
    loop {
        let (ok, out, err) = etcdctl.run(&["member", "list"], None);
        if ok && out.lines().count() == 3 && local.members.iter().all(|m| listed(&out, m)) {
            break;
        }
        if Instant::now() > formed {
            let logs: Vec<String> =
                local.members.iter().map(|m| std::fs::read_to_string(&m.log).unwrap_or_default()).collect();
            panic!("no cluster of the three within 30 s: {out}{err}\ntheir logs:\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kubeconfig = local.kubeconfig(0);
    let kubeconfig = eventually(Duration::from_secs(30), "the admin kubeconfig", || async {
        std::fs::read_to_string(&kubeconfig).ok()
    })
    .await;
    let k = Kubectl::with_kubeconfig(&kubeconfig);

    // The agent: the example's settings, and on the command line a runtime that runs nothing, which wins.
    let kubelet = local::free_ports(1).unwrap()[0];
    let servers: Vec<String> = local.members.iter().map(|m| format!("\"{}\"", m.api_addr)).collect();
    let settings = std::fs::read_to_string(deploy("agent.toml.example"))
        .unwrap()
        .replace("[\"10.0.0.1:6443\", \"10.0.0.2:6443\", \"10.0.0.3:6443\"]", &format!("[{}]", servers.join(", ")))
        .replace("10.0.0.21:10250", &format!("127.0.0.1:{kubelet}"))
        .replace("/etc/raftsman/node-token", &local.node_token_file().to_string_lossy())
        .replace("/var/lib/raftsman/agent", &dir.path().join("agent").to_string_lossy());
    assert_all_local(&settings);
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, settings).unwrap();
    let log = dir.path().join("agent.log");
    processes.0.push(spawn(&["agent", "--config", file.to_str().unwrap(), "--runtime", "fake"], &log));

    let node = eventually(Duration::from_secs(30), "node w1 ready", || async {
        // Nothing on stdout (not JSON) until the node is registered.
        let out = k.run(&["get", "nodes", "w1", "--ignore-not-found", "-o", "json"]);
        let node: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(node)
    })
    .await;
    assert_eq!(node["metadata"]["labels"]["topology.kubernetes.io/zone"], "eu-1a", "{node}");
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap_or_default();
    assert!(runtime.starts_with("fake://"), "the command line's --runtime wins over the file's: {runtime}");

    k.ok(&["run", "probe", "--image=busybox:1.36", "--", "sleep", "3600"]);
    eventually(Duration::from_secs(30), "the pod running on w1", || async {
        let pod = k.json(&["get", "pod", "probe"]);
        (pod["spec"]["nodeName"] == "w1" && pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
}

#[test]
fn a_config_file_with_a_setting_that_is_not_a_flag_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("server.toml");
    let settings = format!(
        "name = \"n1\"\ndata-dir = \"{}\"\ninitial-cluster = \"n1=127.0.0.1:1\"\npeer_addr = \"127.0.0.1:1\"\n",
        data.display()
    );
    std::fs::write(&file, settings).unwrap();
    let out = Command::new(BINARY).args(["server", "--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("--config {}: unknown setting `peer_addr`", file.display()))
            && said.contains("(did you mean `peer-addr`?)"),
        "{said}"
    );
    assert!(!data.exists(), "nothing was started");

    // A file that is not there is named too.
    let out = Command::new(BINARY).args(["agent", "--config", "/nonexistent/agent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("reading --config /nonexistent/agent.toml"), "{said}");
}
