//! Histories of client operations as the checkers read them: what was asked, when, and how it ended.

use tokio::time::Instant;

/// What a client did to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Wrote a value (unique per history).
    Write(String),
    /// Read the key and saw this value (None: the key was absent).
    Read(Option<String>),
}

/// How an operation ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: it took effect between invocation and completion.
    Ok,
    /// Unknown: it may have taken effect at any time after invocation, or never.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: Op,
    /// Nanoseconds since the history began.
    pub invoke: u64,
    pub complete: u64,
    pub outcome: Outcome,
}

/// The clock every client of one history reads.
enum Clock {
    Real(Instant),
    /// The simulation's time, the same on every simulated host (each host's own tokio clock is not).
    Simulated,
}

/// Collects operations against one clock.
pub struct Recorder {
    clock: Clock,
    ops: Vec<Operation>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder { clock: Clock::Real(start), ops: Vec::new() }
    }

    /// A recorder for clients on simulated hosts.
    pub fn simulated() -> Recorder {
        Recorder { clock: Clock::Simulated, ops: Vec::new() }
    }

    pub fn now(&self) -> u64 {
        let elapsed = match &self.clock {
            Clock::Real(start) => start.elapsed(),
            Clock::Simulated => turmoil::sim_elapsed().expect("a simulated clock is read inside the simulation"),
        };
        elapsed.as_nanos() as u64
    }

    pub fn record(&mut self, op: Operation) {
        self.ops.push(op);
    }

    pub fn into_operations(self) -> Vec<Operation> {
        self.ops
    }
}
