//! raftsman's chaos suite: faults injected into whole clusters, histories checked by checkers.
//!
//! - `simulation` (with `sim/`): the deterministic simulation. Every replica is the real replica code on a
//!   simulated disk, on turmoil's simulated network and clock; one seed gives one whole run. `CHAOS_SEEDS=N`
//!   sets the number of random seeds next to the fixed regression seeds, `CHAOS_SEED=S` replays one seed with
//!   the nemesis's trace; the batch ends with a `chaos summary:` line. Planted bugs (a hidden switch, never on
//!   in production) show each checker catching what it is for.
//! - `real_process`: three real `raftsman server` processes on loopback under a client load while a nemesis
//!   SIGKILLs and SIGSTOPs replicas (the leader most often), checked with the same linearizability and watch
//!   checkers. `CHAOS_SEED=S` replays one schedule; `CHAOS_SECS=N` sets how long the fault phase lasts
//!   (default 20). `stale_reads` and `watch_gaps` switch planted bugs on in real replicas
//!   (`raftsman server --chaos-plant-bug ...`) and require the checkers to catch them.
//!
//! - `compose`: the compose cluster of `deploy/compose` (three replicas and two agents in containers on a
//!   private network, this build's image) under a client load while the leader's container is killed, cut off
//!   the network and paused; the cluster must accept writes within a bound after each, the agents' nodes end
//!   Ready, and the history must be linearizable.
//!
//! The checkers, each a module with tests that feed it a known-bad history: `linearizability`,
//! `watch_checker`, `raft_safety`, `control_plane`.

mod compose;
mod control_plane;
mod history;
mod linearizability;
mod raft_safety;
mod real_process;
mod replicas;
mod sim;
mod simulation;
mod stale_reads;
mod watch_checker;
mod watch_gaps;
mod workload;
