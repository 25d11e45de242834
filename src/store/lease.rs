//! The leader's lessor: when each lease expires. Expiry is leader-local time, never state-machine state.
//!
//! Only the leader tracks deadlines. Every lease it has not seen in its current term gets a full TTL from the
//! moment it is first seen (a new leader extends every lease rather than trusting time it did not observe).
//! Expired leases are revoked through the log by a `LeaseExpire` command that carries the term, so the state
//! machine ignores it if leadership moved on meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::mvcc::LeaseState;
use crate::limits;

#[derive(Default)]
pub struct Lessor {
    /// std Mutex: map operations only, never held across an await.
    state: Mutex<Deadlines>,
}

#[derive(Default)]
struct Deadlines {
    term: u64,
    by_lease: HashMap<i64, Instant>,
}

impl Deadlines {
    fn for_term(&mut self, term: u64) -> &mut HashMap<i64, Instant> {
        if self.term != term {
            self.term = term;
            self.by_lease.clear();
        }
        &mut self.by_lease
    }
}

/// When a lease of `ttl` seconds refreshed `now` expires. A TTL outside the granted range (only a log entry
/// written by a faulty replica could hold one) is clamped into it, so the deadline never overflows.
fn deadline(now: Instant, ttl: i64) -> Instant {
    now + Duration::from_secs(ttl.clamp(0, limits::LEASE_TTL_SECS_MAX) as u64)
}

impl Lessor {
    /// Refreshes a lease; returns its TTL, or None when the state machine does not know it or it is past its
    /// deadline (its expiry is proposed, or will be at the next check: as in etcd, it cannot be revived).
    pub fn keep_alive(&self, term: u64, id: i64, ttl: Option<i64>) -> Option<i64> {
        let ttl = ttl?;
        let now = Instant::now();
        let mut state = self.state.lock().expect("lessor poisoned");
        let deadlines = state.for_term(term);
        if deadlines.get(&id).is_some_and(|expiry| *expiry <= now) {
            return None;
        }
        deadlines.insert(id, deadline(now, ttl));
        Some(ttl)
    }

    /// Remaining whole seconds of a lease, or None when the state machine does not know it.
    pub fn remaining(&self, term: u64, id: i64, ttl: Option<i64>) -> Option<i64> {
        let ttl = ttl?;
        let now = Instant::now();
        let mut state = self.state.lock().expect("lessor poisoned");
        let expiry = *state.for_term(term).entry(id).or_insert(deadline(now, ttl));
        Some(expiry.saturating_duration_since(now).as_secs_f64().ceil() as i64)
    }

    /// The leases past their deadline (at most `LEASE_REVOKES_PER_ENTRY_MAX`); new leases start their clock.
    pub fn expired(&self, term: u64, leases: &BTreeMap<i64, LeaseState>) -> Vec<i64> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("lessor poisoned");
        let deadlines = state.for_term(term);
        deadlines.retain(|id, _| leases.contains_key(id));
        let mut expired = Vec::new();
        for (id, lease) in leases {
            let expiry = *deadlines.entry(*id).or_insert(deadline(now, lease.ttl));
            if expiry <= now && expired.len() < limits::LEASE_REVOKES_PER_ENTRY_MAX {
                expired.push(*id);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(ids: &[(i64, i64)]) -> BTreeMap<i64, LeaseState> {
        ids.iter().map(|(id, ttl)| (*id, LeaseState { ttl: *ttl, keys: Default::default() })).collect()
    }

    #[test]
    fn zero_ttl_expires_and_new_term_restarts_clocks() {
        let lessor = Lessor::default();
        assert_eq!(lessor.expired(1, &leases(&[(1, 0), (2, 60)])), vec![1]);
        assert_eq!(lessor.remaining(1, 2, Some(60)), Some(60));
        assert_eq!(lessor.keep_alive(1, 3, None), None, "unknown lease");
        // A new term forgets deadlines: the lease gets a full TTL from the new leader's first look.
        assert_eq!(lessor.remaining(2, 2, Some(60)), Some(60));
    }

    #[test]
    fn a_lease_past_its_deadline_cannot_be_kept_alive() {
        let lessor = Lessor::default();
        assert_eq!(lessor.expired(1, &leases(&[(1, 0), (2, 60)])), vec![1], "lease 1's expiry is proposed");
        assert_eq!(lessor.keep_alive(1, 1, Some(0)), None, "the expiring lease stays expired");
        assert_eq!(lessor.keep_alive(1, 2, Some(60)), Some(60));
        // A new leader has proposed nothing yet: it gives every lease a full TTL from its first look.
        assert_eq!(lessor.keep_alive(2, 1, Some(5)), Some(5));
    }

    #[test]
    fn a_ttl_beyond_the_limit_does_not_overflow_the_deadline() {
        let lessor = Lessor::default();
        assert_eq!(lessor.keep_alive(1, 1, Some(i64::MAX)), Some(i64::MAX));
        assert!(lessor.expired(1, &leases(&[(1, i64::MAX), (2, i64::MIN)])) == vec![2]);
        assert_eq!(lessor.remaining(1, 3, Some(i64::MAX)), Some(limits::LEASE_TTL_SECS_MAX));
    }
}
