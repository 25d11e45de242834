//! Expectations, as kube-controller-manager's: what a controller has created or deleted and its cache has not
//! shown yet. While a controller waits for them it makes no further creations or deletions for that key, so it
//! never creates or deletes twice for one need because its cache is a moment behind its own writes.
//!
//! Expectations are kept by name: a created pod is expected until the cache has held it (the pod handler calls
//! `observed`, or `satisfied` finds it in the cache), a deleted one until the cache no longer holds it alive.
//! They expire after `EXPECTATIONS_TIMEOUT_SECS` (an object created and deleted before the cache showed it
//! would otherwise be waited for forever); a write whose outcome is unknown (`Outcome::Unknown`) is waited for
//! only `UNCONFIRMED_EXPECTATION_SECS`, long enough for the store to have applied it if it was made. They
//! belong to one term: a new leader starts from its own cache, which holds everything the old leader committed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits;

/// What a controller knows of a write it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The API answered that it was made.
    Made,
    /// The request failed in a way that leaves the write possibly made (a 5xx, or no answer).
    Unknown,
}

impl Outcome {
    fn deadline(self) -> Instant {
        let secs = match self {
            Outcome::Made => limits::EXPECTATIONS_TIMEOUT_SECS,
            Outcome::Unknown => limits::UNCONFIRMED_EXPECTATION_SECS,
        };
        Instant::now() + Duration::from_secs(secs)
    }
}

/// The names a key waits for, each until its deadline.
#[derive(Default)]
struct Pending {
    creates: HashMap<String, Instant>,
    deletes: HashMap<String, Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.deletes.is_empty()
    }
}

/// What the cache holds of one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Absent,
    Alive,
    /// Present with a deletion timestamp, or finished.
    Leaving,
}

pub struct Expectations<K> {
    pending: Mutex<HashMap<K, Pending>>,
}

impl<K: Clone + Eq + Hash> Default for Expectations<K> {
    fn default() -> Self {
        Expectations { pending: Mutex::new(HashMap::new()) }
    }
}

impl<K: Clone + Eq + Hash> Expectations<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key` created `name`; `seen` is what the cache holds of it now.
    pub fn created(&self, key: &K, name: String, seen: Seen) {
        self.created_with(key, name, seen, Outcome::Made);
    }

    /// `key` created `name`, or may have (`outcome`); `seen` is what the cache holds of it now.
    pub fn created_with(&self, key: &K, name: String, seen: Seen, outcome: Outcome) {
        if seen != Seen::Absent {
            return;
        }
        self.lock().entry(key.clone()).or_default().creates.insert(name, outcome.deadline());
    }

    /// `key` deleted `name`, or may have (`outcome`).
    pub fn deleted(&self, key: &K, name: String, outcome: Outcome) {
        self.lock().entry(key.clone()).or_default().deletes.insert(name, outcome.deadline());
    }

    /// The cache has shown `name` (owned by `key`) in state `seen`.
    pub fn observed(&self, key: &K, name: &str, seen: Seen) {
        let mut pending = self.lock();
        if let Some(p) = pending.get_mut(key) {
            p.creates.remove(name);
            if seen != Seen::Alive {
                p.deletes.remove(name);
            }
            if p.is_empty() {
                pending.remove(key);
            }
        }
    }

    /// Whether `key` may act on its cache: everything it created has been seen, everything it deleted has gone
    /// (looked up through `seen`), or has been waited for until its deadline.
    pub fn satisfied(&self, key: &K, seen: impl Fn(&str) -> Seen) -> bool {
        let mut pending = self.lock();
        let Some(p) = pending.get_mut(key) else { return true };
        let now = Instant::now();
        p.creates.retain(|name, deadline| *deadline > now && seen(name) == Seen::Absent);
        p.deletes.retain(|name, deadline| *deadline > now && seen(name) == Seen::Alive);
        if p.is_empty() {
            pending.remove(key);
            return true;
        }
        false
    }

    /// Forgets `key` (its object is gone).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_waits_for_its_creations_and_deletions_to_show() {
        let e: Expectations<&str> = Expectations::default();
        e.created(&"rs", "a".into(), Seen::Absent);
        e.created(&"rs", "b".into(), Seen::Alive);
        e.deleted(&"rs", "c".into(), Outcome::Made);
        let cache = |a: Seen, c: Seen| {
            move |n: &str| match n {
                "a" => a,
                "c" => c,
                _ => Seen::Absent,
            }
        };
        assert!(!e.satisfied(&"rs", cache(Seen::Absent, Seen::Alive)));
        assert!(!e.satisfied(&"rs", cache(Seen::Alive, Seen::Alive)), "c is still alive");
        assert!(e.satisfied(&"rs", cache(Seen::Alive, Seen::Leaving)));
        assert!(e.satisfied(&"other", cache(Seen::Absent, Seen::Alive)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_observing_a_creation_satisfies_it_and_expectations_expire() {
        let e: Expectations<&str> = Expectations::default();
        e.created(&"rs", "a".into(), Seen::Absent);
        e.observed(&"rs", "a", Seen::Alive);
        assert!(e.satisfied(&"rs", |_| Seen::Absent), "created and gone before the reconcile looked");
        e.created(&"rs", "b".into(), Seen::Absent);
        assert!(!e.satisfied(&"rs", |_| Seen::Absent));
        tokio::time::advance(Duration::from_secs(limits::EXPECTATIONS_TIMEOUT_SECS)).await;
        assert!(e.satisfied(&"rs", |_| Seen::Absent));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_of_unknown_outcome_is_waited_for_a_short_while_only() {
        let e: Expectations<&str> = Expectations::default();
        e.created_with(&"rs", "a".into(), Seen::Absent, Outcome::Unknown);
        e.created(&"rs", "b".into(), Seen::Absent);
        let only_b_shown = |n: &str| if n == "b" { Seen::Alive } else { Seen::Absent };
        assert!(!e.satisfied(&"rs", only_b_shown), "a may still be applied");
        tokio::time::advance(Duration::from_secs(limits::UNCONFIRMED_EXPECTATION_SECS)).await;
        assert!(e.satisfied(&"rs", only_b_shown), "a was never made: the key acts again");
    }
}
