//! A Docker container's counters, read from its control group as cAdvisor does: CPU time so far and the
//! working set (memory in use less the inactive file cache). Both cgroup layouts are read: v1 with the
//! `cgroupfs` driver (`<controller>/docker/<id>/`) and v2 with either driver (`system.slice/docker-<id>.scope/`
//! or `docker/<id>/`).

use std::path::{Path, PathBuf};

use crate::agent::runtime::Counters;

const ROOT: &str = "/sys/fs/cgroup";

/// The counters of container `id`, if its control group is found.
pub fn counters(id: &str) -> Option<Counters> {
    v2(Path::new(ROOT), id).or_else(|| v1(Path::new(ROOT), id))
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The value of `key` in a `key value` file (`memory.stat`, `cpu.stat`).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn v1(root: &Path, id: &str) -> Option<Counters> {
    let cpu_ns: u64 = read(root.join("cpuacct/docker").join(id).join("cpuacct.usage"))?.trim().parse().ok()?;
    let memory = root.join("memory/docker").join(id);
    let usage: u64 = read(memory.join("memory.usage_in_bytes"))?.trim().parse().ok()?;
    let inactive = read(memory.join("memory.stat")).and_then(|s| stat_value(&s, "total_inactive_file")).unwrap_or(0);
    Some(Counters { cpu_ns, memory_bytes: usage.saturating_sub(inactive) })
}

fn v2(root: &Path, id: &str) -> Option<Counters> {
    let dir = [root.join(format!("system.slice/docker-{id}.scope")), root.join("docker").join(id)]
        .into_iter()
        .find(|d| d.join("cpu.stat").exists())?;
    let cpu_ns = stat_value(&read(dir.join("cpu.stat"))?, "usage_usec")?.saturating_mul(1000);
    let usage: u64 = read(dir.join("memory.current"))?.trim().parse().ok()?;
    let inactive = read(dir.join("memory.stat")).and_then(|s| stat_value(&s, "inactive_file")).unwrap_or(0);
    Some(Counters { cpu_ns, memory_bytes: usage.saturating_sub(inactive) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn both_layouts_give_cpu_time_and_the_working_set() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(&root.join("cpuacct/docker/a"), "cpuacct.usage", "1500000000\n");
        write(&root.join("memory/docker/a"), "memory.usage_in_bytes", "10485760\n");
        write(&root.join("memory/docker/a"), "memory.stat", "cache 5\ninactive_file 9\ntotal_inactive_file 4194304\n");
        assert_eq!(v1(root, "a"), Some(Counters { cpu_ns: 1_500_000_000, memory_bytes: 6_291_456 }));
        let scope = root.join("system.slice/docker-b.scope");
        write(&scope, "cpu.stat", "usage_usec 2500\nuser_usec 2000\n");
        write(&scope, "memory.current", "8192\n");
        write(&scope, "memory.stat", "anon 4096\ninactive_file 4096\n");
        assert_eq!(v2(root, "b"), Some(Counters { cpu_ns: 2_500_000, memory_bytes: 4096 }));
        assert_eq!(v1(root, "b"), None);
        assert_eq!(v2(root, "a"), None);
    }
}
