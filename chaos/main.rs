//! raftsman's chaos suite: faults injected into real clusters, histories checked by checkers.
//!
//! Today it runs three real `raftsman server` processes on loopback under a client load while a nemesis
//! SIGKILLs and SIGSTOPs replicas (the leader most often), then checks the recorded history for
//! linearizability. `CHAOS_SEED=S` replays one schedule of faults and operations; `CHAOS_SECS=N` sets how long
//! the fault phase lasts (default 20). A failure prints the seed and the command that replays it.

mod history;
mod linearizability;
mod real_process;
