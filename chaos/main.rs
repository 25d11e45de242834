//! raftsman's chaos suite: faults injected into real clusters, histories checked by checkers.
//!
//! Today it runs three real `raftsman server` processes on loopback under a client load while a nemesis
//! SIGKILLs and SIGSTOPs replicas (the leader most often), then checks the recorded history for
//! linearizability. `CHAOS_SEED=S` replays one schedule of faults and operations; `CHAOS_SECS=N` sets how long
//! the fault phase lasts (default 20). A failure prints the seed and the command that replays it.
//!
//! Checkers are only worth their failures: `stale_reads` and `watch_gaps` switch on planted bugs in real replicas
//! (`raftsman server --chaos-plant-bug stale-follower-reads | skip-watch-event-after-leader-change`, a hidden
//! flag) and require the linearizability and watch checkers to catch them, next to the same scenarios without
//! the bugs.

mod history;
mod linearizability;
mod real_process;
mod replicas;
mod stale_reads;
mod watch_checker;
mod watch_gaps;
