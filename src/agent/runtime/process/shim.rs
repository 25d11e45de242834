//! The shim: `raftsman agent-shim <attempt dir>`, one process per container attempt, started by the process
//! runtime in a session of its own. It runs the container's process, writes its output into the attempt's log,
//! and records how it exited, whether or not the agent that started it is still there.
//!
//! Invariants:
//! - It writes `started.json` only once the process runs, and `exited.json` (once) only after the process has
//!   exited and its output has been written, so a reader that sees the exit has seen the whole log.
//! - The container's process is its own process group; when it exits, the shim kills the rest of its group
//!   before reaping it (the pid, and so the group id, cannot be reused before that). The shim is a child
//!   subreaper, as a container's init: the container's orphans become its children, are reaped as they exit,
//!   and those still there when the main process has exited are killed (up to `CONTAINER_OUTPUT_DRAIN_MS`).
//! - It needs no async runtime and never exits before the container's process has.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{
    format_time, proc_stat, read_json, write_json, Exited, ShimSpec, Started, EXITED_FILE, LOG_FILE, SPEC_FILE,
    STARTED_FILE,
};
use crate::agent::kubelet::container_log::{split_lines, LogWriter, Stream};
use crate::limits;

/// Runs the attempt in `dir`; the shim's exit code (0 when the container ran, whatever its own code).
pub fn run(dir: &Path) -> i32 {
    match run_container(dir) {
        Ok(()) => 0,
        Err(message) => {
            let _ = write_json(&dir.join(EXITED_FILE), &Exited::start_error(message));
            1
        }
    }
}

/// Runs the container; an error is a start error (nothing ran).
fn run_container(dir: &Path) -> Result<(), String> {
    let spec: ShimSpec =
        read_json(&dir.join(SPEC_FILE)).ok_or_else(|| format!("cannot read the container's spec in {dir:?}"))?;
    let log = LogWriter::open(&dir.join(LOG_FILE)).map_err(|e| format!("opening the container's log: {e}"))?;
    let program = spec.argv.first().ok_or("no command given")?;
    match std::fs::metadata(&spec.working_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("chdir to cwd ({:?}): not a directory", spec.working_dir)),
        Err(e) => return Err(format!("chdir to cwd ({:?}): {e}", spec.working_dir)),
    }
    // Orphans of the container (its processes whose parent exited) become the shim's children, as they would
    // become the children of a container's init: the shim reaps them, and kills those left at the end.
    // SAFETY: prctl(2) with PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut command = Command::new(program);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound if !program.contains('/') => {
            format!("exec: {program:?}: executable file not found in $PATH")
        }
        _ => format!("exec: {program:?}: {e}"),
    })?;
    let started_at = format_time(Timestamp::now());
    let pid = child.id();
    let shim_pid = std::process::id();
    // The child is not reaped before `wait_exit` below, so its /proc entry is there.
    let (start_ticks, shim_start_ticks) = (proc_stat(pid).map(|s| s.1), proc_stat(shim_pid).map(|s| s.1));
    let started = Started {
        pid,
        start_ticks: start_ticks.unwrap_or_default(),
        shim_pid,
        shim_start_ticks: shim_start_ticks.unwrap_or_default(),
        started_at: started_at.clone(),
    };
    if let Err(e) = write_json(&dir.join(STARTED_FILE), &started) {
        kill_group(pid);
        let _ = child.wait();
        return Err(format!("recording the container's start: {e}"));
    }

    let log = Arc::new(Mutex::new(log));
    let (done_tx, done_rx) = mpsc::sync_channel::<()>(2);
    let outputs: [(Option<Box<dyn io::Read + Send>>, Stream); 2] = [
        (child.stdout.take().map(|o| Box::new(o) as Box<dyn io::Read + Send>), Stream::Stdout),
        (child.stderr.take().map(|o| Box::new(o) as Box<dyn io::Read + Send>), Stream::Stderr),
    ];
    let mut pumps = 0;
    for (output, stream) in outputs {
        let Some(output) = output else { continue };
        let (log, done) = (Arc::clone(&log), done_tx.clone());
        pumps += 1;
        std::thread::spawn(move || {
            let _ = split_lines(output, |partial, content| {
                // A write that fails (a full disk) loses that record; the pipe is still drained so that the
                // container never blocks on its output.
                let _ = log.lock().unwrap_or_else(|e| e.into_inner()).write(stream, partial, content);
            });
            let _ = done.send(());
        });
    }

    let exit_code = wait_exit(pid).unwrap_or(super::UNKNOWN_EXIT_CODE);
    let finished_at = format_time(Timestamp::now());
    kill_group(pid);
    let _ = child.wait();
    // What is left of the container (the rest of its group, processes that left it) ends now; output still in
    // the pipes is written before the exit is recorded. Neither is waited for beyond the drain time.
    let drain_until = Instant::now() + Duration::from_millis(limits::CONTAINER_OUTPUT_DRAIN_MS);
    end_descendants(shim_pid, drain_until);
    for _ in 0..pumps {
        let left = drain_until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let exited =
        Exited { exit_code, reason: Exited::of_status(exit_code).to_string(), message: None, started_at, finished_at };
    // Nothing can be done if this fails: the runtime then reports the exit as unknown.
    let _ = write_json(&dir.join(EXITED_FILE), &exited);
    Ok(())
}

/// Waits for the process `pid` to exit without reaping it, reaping the other children (orphans handed to the
/// shim) as they exit; its exit code, 128 + N for signal N.
fn wait_exit(pid: u32) -> io::Result<i32> {
    loop {
        // SAFETY: waitid(2) writes only into `info`, a zeroed siginfo_t, whose pid and status are read once it
        // reported a child; waitpid(2) is given no status pointer.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            if libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) == 0 {
                let exited = info.si_pid();
                if u32::try_from(exited) != Ok(pid) {
                    libc::waitpid(exited, std::ptr::null_mut(), 0);
                    continue;
                }
                let status = info.si_status();
                return Ok(match info.si_code {
                    libc::CLD_EXITED => status,
                    _ => 128 + status,
                });
            }
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Kills and reaps the shim's remaining children (the container's orphans, and theirs as they are handed on),
/// until there are none or `until` has passed.
fn end_descendants(shim_pid: u32, until: Instant) {
    loop {
        for child in children(shim_pid) {
            // SAFETY: kill(2) touches no memory; an unreaped child's pid cannot have been reused.
            unsafe {
                libc::kill(child, libc::SIGKILL);
            }
        }
        // SAFETY: waitpid(2) is given no status pointer.
        match unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } {
            0 if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            reaped if reaped > 0 => {}
            _ => return,
        }
    }
}

/// The pids of the shim's children: the processes whose parent (field 4 of `/proc/<pid>/stat`) it is.
fn children(shim_pid: u32) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let after_name = stat.rfind(')').map_or("", |at| &stat[at + 1..]);
            after_name.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(shim_pid)
        })
        .collect()
}

/// SIGKILL to the process group `pid` leads.
fn kill_group(pid: u32) {
    if let Ok(group) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) touches no memory; the group's leader is this process's unreaped child.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}
