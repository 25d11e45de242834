//! Expectations, as kube-controller-manager's: what a controller has created or deleted and its cache has not
//! shown yet. While a controller waits for them it makes no further creations or deletions for that key, so it
//! never creates or deletes twice for one need because its cache is a moment behind its own writes.
//!
//! Expectations are kept by name: a created pod is expected until the cache has held it (the pod handler calls
//! `observed`, or `satisfied` finds it in the cache), a deleted one until the cache no longer holds it alive.
//! They expire after `EXPECTATIONS_TIMEOUT_SECS` (an object created and deleted before the cache showed it
//! would otherwise be waited for forever). They belong to one term: a new leader starts from its own cache,
//! which holds everything the old leader committed.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits;

#[derive(Default)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
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
        if seen != Seen::Absent {
            return;
        }
        let mut pending = self.lock();
        let p = pending.entry(key.clone()).or_default();
        p.since.get_or_insert_with(Instant::now);
        p.creates.insert(name);
    }

    /// `key` deleted `name`.
    pub fn deleted(&self, key: &K, name: String) {
        let mut pending = self.lock();
        let p = pending.entry(key.clone()).or_default();
        p.since.get_or_insert_with(Instant::now);
        p.deletes.insert(name);
    }

    /// The cache has shown `name` (owned by `key`) in state `seen`.
    pub fn observed(&self, key: &K, name: &str, seen: Seen) {
        let mut pending = self.lock();
        if let Some(p) = pending.get_mut(key) {
            p.creates.remove(name);
            if seen != Seen::Alive {
                p.deletes.remove(name);
            }
            if p.creates.is_empty() && p.deletes.is_empty() {
                pending.remove(key);
            }
        }
    }

    /// Whether `key` may act on its cache: everything it created has been seen, everything it deleted has gone
    /// (looked up through `seen`), or it has waited `EXPECTATIONS_TIMEOUT_SECS`.
    pub fn satisfied(&self, key: &K, seen: impl Fn(&str) -> Seen) -> bool {
        let mut pending = self.lock();
        let Some(p) = pending.get_mut(key) else { return true };
        p.creates.retain(|name| seen(name) == Seen::Absent);
        p.deletes.retain(|name| seen(name) == Seen::Alive);
        let expired = p.since.is_some_and(|s| s.elapsed() >= Duration::from_secs(limits::EXPECTATIONS_TIMEOUT_SECS));
        if expired || (p.creates.is_empty() && p.deletes.is_empty()) {
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
        e.deleted(&"rs", "c".into());
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
}
