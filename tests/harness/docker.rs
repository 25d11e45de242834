//! Docker for the tests of the Docker runtime: a workload image made locally (no registry is reachable), the
//! containers an agent's node has, and their removal when a test ends however it ends.

use std::io::Write;
use std::process::{Command, Stdio};

/// A static busybox (Debian's `busybox-static`) with its applets linked in `/bin`: `sh`, `httpd`, `sleep`, ...
pub const BUSYBOX_IMAGE: &str = "raftsman-test/busybox:2";
const BUSYBOX: &str = "/bin/busybox";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("run docker")
}

/// The id of a local image (`sha256:...`).
pub fn image_id(image: &str) -> String {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(out.status.success(), "docker image inspect: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Imports `BUSYBOX_IMAGE` unless it is there.
pub fn busybox_image() -> &'static str {
    if docker(&["image", "inspect", BUSYBOX_IMAGE]).status.success() {
        return BUSYBOX_IMAGE;
    }
    let program = std::fs::read(BUSYBOX).expect("a static busybox at /bin/busybox (Debian's busybox-static)");
    let list = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    let mut tar = tar::Builder::new(Vec::new());
    for (dir, mode) in [("bin", 0o755), ("tmp", 0o1777)] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        tar.append_data(&mut header, dir, std::io::empty()).unwrap();
    }
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o755);
    header.set_size(program.len() as u64);
    tar.append_data(&mut header, "bin/busybox", program.as_slice()).unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox").unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut import = Command::new("docker")
        .args(["import", "--change", "ENV PATH=/bin", "-", BUSYBOX_IMAGE])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker import");
    import.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(import.wait().unwrap().success(), "docker import of {BUSYBOX_IMAGE}");
    BUSYBOX_IMAGE
}

/// One container of a node, as `docker ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub state: String,
    pub pod: String,
    pub container: String,
}

/// The containers (stopped ones too) the agent of `node` has made.
pub fn containers(node: &str) -> Vec<Listed> {
    let format = concat!(
        r#"{{.ID}} {{.Names}} {{.State}} {{.Label "io.kubernetes.pod.name"}} "#,
        r#"{{.Label "io.kubernetes.container.name"}}"#
    );
    let filter = format!("label=io.raftsman.node={node}");
    let out = docker(&["ps", "-a", "--no-trunc", "--filter", &filter, "--format", format]);
    assert!(out.status.success(), "docker ps: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().map(str::to_owned);
            Some(Listed {
                id: words.next()?,
                name: words.next()?,
                state: words.next()?,
                pod: words.next()?,
                container: words.next()?,
            })
        })
        .collect()
}

/// When a container started, as Docker has it.
pub fn started_at(id: &str) -> String {
    let out = docker(&["inspect", "--format", "{{.State.StartedAt}}", id]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn kill(id: &str) {
    assert!(docker(&["kill", id]).status.success(), "docker kill {id}");
}

/// Removes every container of `node` when dropped.
pub struct NodeCleanup(pub String);

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let ids: Vec<String> = containers(&self.0).into_iter().map(|c| c.id).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

/// `docker exec ID ARGS...`, which must succeed.
pub fn exec(id: &str, args: &[&str]) {
    let out = docker(&[&["exec", id], args].concat());
    assert!(out.status.success(), "docker exec {id} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
