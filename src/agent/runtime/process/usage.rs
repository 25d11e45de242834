//! What the process runtime's containers and their host use, read from `/proc`.
//!
//! A container is its shim's descendants: the shim, a child subreaper, keeps even the orphans the container's
//! processes leave, and is not counted itself (as a container runtime's shim is not). A process counts its CPU
//! time (user and system) and that of the children it has waited for; its memory is its resident set. The host
//! is `/proc/stat`'s busy time (all but idle and I/O wait) and `/proc/meminfo`'s `MemTotal - MemAvailable`.

use std::collections::HashMap;

use super::super::Counters;

/// One process as `/proc/<pid>/stat` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub parent: u32,
    pub start_ticks: u64,
    /// User and system time, its own and its waited-for children's, in clock ticks.
    pub cpu_ticks: u64,
    pub resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<Process> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    // The command name (field 2) is in parentheses and may hold anything: fields are counted after it, from
    // the state (field 3).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Process {
        pid,
        parent: u32::try_from(field(4)?).ok()?,
        start_ticks: field(22)?,
        cpu_ticks: field(14)? + field(15)? + field(16)? + field(17)?,
        resident_pages: field(24)?,
    })
}

/// Every process of the host.
pub fn scan() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .collect()
}

/// The system's clock ticks per second and page size.
pub fn units() -> (u64, u64) {
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    (
        u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
        u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
    )
}

/// The processes of the host, by parent.
pub struct Tree {
    children: HashMap<u32, Vec<Process>>,
    started: HashMap<u32, u64>,
    ticks_per_second: u64,
    page_bytes: u64,
}

impl Tree {
    pub fn new(processes: Vec<Process>, (ticks_per_second, page_bytes): (u64, u64)) -> Tree {
        let started = processes.iter().map(|p| (p.pid, p.start_ticks)).collect();
        let mut children: HashMap<u32, Vec<Process>> = HashMap::new();
        for p in processes {
            children.entry(p.parent).or_default().push(p);
        }
        Tree { children, started, ticks_per_second, page_bytes }
    }

    /// What the descendants of `root` use, if `root` is the process that started at `start_ticks`.
    pub fn below(&self, root: u32, start_ticks: u64) -> Option<Counters> {
        if self.started.get(&root) != Some(&start_ticks) {
            return None;
        }
        let (mut ticks, mut pages) = (0u64, 0u64);
        let mut stack = vec![root];
        // A pid is visited once: the parent links of a snapshot read at different moments could loop.
        let mut visited = std::collections::HashSet::new();
        while let Some(pid) = stack.pop() {
            for child in self.children.get(&pid).into_iter().flatten() {
                if visited.insert(child.pid) {
                    ticks = ticks.saturating_add(child.cpu_ticks);
                    pages = pages.saturating_add(child.resident_pages);
                    stack.push(child.pid);
                }
            }
        }
        Some(Counters {
            cpu_ns: ticks.saturating_mul(1_000_000_000 / self.ticks_per_second),
            memory_bytes: pages.saturating_mul(self.page_bytes),
        })
    }
}

/// The host's counters from `/proc/stat` and `/proc/meminfo`.
pub fn host(stat: &str, meminfo: &str, ticks_per_second: u64) -> Option<Counters> {
    let cpu: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: u64 = cpu.iter().take(8).enumerate().filter(|(i, _)| !matches!(i, 3 | 4)).map(|(_, t)| t).sum();
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
    };
    let used = kib("MemTotal:")?.saturating_sub(kib("MemAvailable:")?);
    Some(Counters {
        cpu_ns: busy.saturating_mul(1_000_000_000 / ticks_per_second.max(1)),
        memory_bytes: used.saturating_mul(1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, parent: u32, utime: u64, rss: u64) -> String {
        format!("{pid} (a (b) c) S {parent} 1 1 0 -1 4194304 1 0 0 0 {utime} 2 3 4 20 0 1 0 {} 1000 {rss} 0", pid * 10)
    }

    #[test]
    fn a_stat_line_is_read_after_the_command_name() {
        let p = parse_stat(&stat(42, 7, 100, 250)).unwrap();
        assert_eq!(p, Process { pid: 42, parent: 7, start_ticks: 420, cpu_ticks: 109, resident_pages: 250 });
        assert!(parse_stat("42 (x) S 7").is_none());
    }

    #[test]
    fn a_container_is_what_is_below_its_shim_and_a_reused_shim_pid_is_nothing() {
        // 10 the shim, 11 the container's process, 12 its child, 13 an orphan the shim adopted; 20 elsewhere.
        let processes =
            [stat(10, 1, 1, 1), stat(11, 10, 100, 10), stat(12, 11, 50, 5), stat(13, 10, 10, 1), stat(20, 1, 7, 7)]
                .iter()
                .map(|s| parse_stat(s).unwrap())
                .collect();
        let tree = Tree::new(processes, (100, 4096));
        let used = tree.below(10, 100).unwrap();
        assert_eq!(used.cpu_ns, (109 + 59 + 19) * 10_000_000);
        assert_eq!(used.memory_bytes, 16 * 4096);
        assert!(tree.below(10, 99).is_none(), "another process now has the shim's pid");
    }

    #[test]
    fn the_host_is_busy_for_all_but_idle_and_io_wait() {
        let stat = "cpu  100 10 50 1000 40 5 5 0 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        let host = host(stat, meminfo, 100).unwrap();
        assert_eq!(host.cpu_ns, 170 * 10_000_000);
        assert_eq!(host.memory_bytes, 600 * 1024);
    }
}
