//! Raft's safety properties, checked on every step of a simulation from what each replica reports:
//! - election safety: at most one leader per term;
//! - committed entries never change: once any replica applied an entry at an index, every replica that
//!   applies that index applies the same entry (same term, same bytes);
//! - the applied index never goes back while a replica runs (a restart may begin lower: it re-applies from its
//!   log what its unsynced state machine lost).

use std::collections::BTreeMap;

/// One replica's view at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub replica: u64,
    pub term: u64,
    pub leads: bool,
    pub applied: u64,
}

/// An applied log entry: its index, term and a digest of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    pub digest: u64,
}

#[derive(Default)]
pub struct RaftSafety {
    leader_of_term: BTreeMap<u64, u64>,
    entries: BTreeMap<u64, (u64, u64, u64)>,
    applied: BTreeMap<u64, u64>,
    violations: Vec<String>,
}

impl RaftSafety {
    pub fn observe(&mut self, o: Observation) {
        if o.leads {
            let leader = *self.leader_of_term.entry(o.term).or_insert(o.replica);
            if leader != o.replica {
                self.violate(format!("two leaders in term {}: replicas {leader} and {}", o.term, o.replica));
            }
        }
        let before = self.applied.insert(o.replica, o.applied).unwrap_or(0);
        if o.applied < before {
            self.violate(format!("replica {} went back from applied index {before} to {}", o.replica, o.applied));
        }
    }

    /// The replica restarted: its applied index starts over from what its disk kept.
    pub fn restarted(&mut self, replica: u64) {
        self.applied.remove(&replica);
    }

    /// An entry `replica` has applied.
    pub fn applied_entry(&mut self, replica: u64, e: AppliedEntry) {
        let (term, digest, first) = *self.entries.entry(e.index).or_insert((e.term, e.digest, replica));
        if (term, digest) != (e.term, e.digest) {
            self.violate(format!(
                "the entry at index {} changed: replica {first} applied one of term {term}, replica {replica} one \
                 of term {}{}",
                e.index,
                e.term,
                if term == e.term { " with other contents" } else { "" }
            ));
        }
    }

    fn violate(&mut self, what: String) {
        if self.violations.len() < 10 && !self.violations.contains(&what) {
            self.violations.push(what);
        }
    }

    pub fn terms_with_a_leader(&self) -> usize {
        self.leader_of_term.len()
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(replica: u64, term: u64, leads: bool, applied: u64) -> Observation {
        Observation { replica, term, leads, applied }
    }

    #[test]
    fn a_safe_run_passes() {
        let mut safety = RaftSafety::default();
        safety.observe(observe(1, 1, true, 1));
        safety.observe(observe(2, 1, false, 1));
        safety.observe(observe(2, 2, true, 3));
        safety.applied_entry(1, AppliedEntry { index: 1, term: 1, digest: 7 });
        safety.applied_entry(2, AppliedEntry { index: 1, term: 1, digest: 7 });
        safety.restarted(1);
        safety.observe(observe(1, 2, false, 0));
        assert!(safety.violations().is_empty(), "{:?}", safety.violations());
    }

    #[test]
    fn two_leaders_in_one_term_fail() {
        let mut safety = RaftSafety::default();
        safety.observe(observe(1, 3, true, 1));
        safety.observe(observe(2, 3, true, 1));
        assert_eq!(safety.violations().len(), 1);
        assert!(safety.violations()[0].contains("two leaders in term 3"));
    }

    #[test]
    fn a_changed_entry_fails() {
        let mut safety = RaftSafety::default();
        safety.applied_entry(1, AppliedEntry { index: 5, term: 2, digest: 1 });
        safety.applied_entry(2, AppliedEntry { index: 5, term: 3, digest: 9 });
        assert!(safety.violations()[0].contains("index 5 changed"));
    }

    #[test]
    fn an_applied_index_going_back_fails_unless_restarted() {
        let mut safety = RaftSafety::default();
        safety.observe(observe(1, 1, false, 9));
        safety.observe(observe(1, 1, false, 4));
        assert!(safety.violations()[0].contains("went back from applied index 9 to 4"));
    }
}
