//! A controller's work queue, as client-go's: keys, not events. A key queued twice is queued once; a key
//! being worked on is never handed to a second worker, and if it changes meanwhile it is queued again when the
//! first worker is done. Failures come back after a per-key exponential back-off; a reconciler may also ask
//! for a key again after a delay.
//!
//! Architecture invariant: bounded. A queue holds each key at most once, and at most `capacity` keys added
//! by events. A key that does not fit is dropped and the queue remembers that it overflowed; once it has
//! drained, it asks its `resync` for every key again (keys of objects its informers hold, so bounded by their
//! caches), and a dropped key is reconciled late, never lost.
//!
//! The state is behind a std mutex that is never held across an await.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::{limits, telemetry};

/// What a reconciler asks for after handling a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the key changes again.
    Done,
    /// Handle the key again after this long, changed or not.
    RequeueAfter(Duration),
}

/// The back-off after a key's `failures`-th failure in a row: doubling from the minimum, capped.
pub fn backoff(failures: u32) -> Duration {
    let ms = limits::WORK_QUEUE_BACKOFF_MS_MIN.saturating_mul(1u64 << failures.min(32));
    Duration::from_millis(ms.min(limits::WORK_QUEUE_BACKOFF_MS_MAX))
}

type Resync<K> = Box<dyn Fn() -> Vec<K> + Send + Sync>;

struct State<K> {
    ready: VecDeque<K>,
    /// Keys in `ready` or in `delayed`, with the deadline of a delayed one.
    queued: HashMap<K, Option<Instant>>,
    delayed: BTreeMap<(Instant, u64), K>,
    sequence: u64,
    processing: HashSet<K>,
    /// Keys added while a worker held them: queued again (at the earliest time asked) when it is done.
    dirty: HashMap<K, Option<Instant>>,
    failures: HashMap<K, u32>,
    overflowed: bool,
}

pub struct WorkQueue<K> {
    name: &'static str,
    capacity: usize,
    state: Mutex<State<K>>,
    wake: Notify,
    resync: Resync<K>,
    /// `workqueue_depth` and `workqueue_adds_total` of this queue's name.
    depth: Gauge,
    adds: Counter,
}

impl<K: Clone + Eq + Hash + Ord + Send + 'static> WorkQueue<K> {
    /// A queue of at most `capacity` keys; `resync` lists every key the controller should look at, for after an
    /// overflow.
    pub fn new(name: &'static str, capacity: usize, resync: impl Fn() -> Vec<K> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(WorkQueue {
            name,
            capacity,
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashMap::new(),
                delayed: BTreeMap::new(),
                sequence: 0,
                processing: HashSet::new(),
                dirty: HashMap::new(),
                failures: HashMap::new(),
                overflowed: false,
            }),
            wake: Notify::new(),
            resync: Box::new(resync),
            depth: telemetry::get().controllers.depth.get_or_create_owned(&telemetry::Queue { name }),
            adds: telemetry::get().controllers.adds.get_or_create_owned(&telemetry::Queue { name }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` now.
    pub fn add(&self, key: K) {
        self.add_at(key, None);
    }

    /// Queues `key` once `delay` has passed (sooner if it is added without a delay meanwhile).
    pub fn add_after(&self, key: K, delay: Duration) {
        self.add_at(key, Some(Instant::now() + delay));
    }

    fn add_at(&self, key: K, at: Option<Instant>) {
        self.insert(key, at, false);
    }

    fn insert(&self, key: K, at: Option<Instant>, resyncing: bool) {
        let mut s = self.lock();
        if s.processing.contains(&key) {
            let due = s.dirty.entry(key).or_insert(at);
            *due = match (*due, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            return;
        }
        match s.queued.get(&key).copied() {
            Some(None) => return,
            Some(Some(due)) if at.is_some_and(|at| at >= due) => return,
            Some(Some(due)) => {
                s.delayed.retain(|(d, _), k| !(*d == due && *k == key));
            }
            None if s.queued.len() >= self.capacity && !resyncing => {
                if !s.overflowed {
                    tracing::warn!(queue = self.name, capacity = self.capacity, "work queue full: resyncing later");
                }
                s.overflowed = true;
                return;
            }
            None => {}
        }
        s.queued.insert(key.clone(), at);
        self.adds.inc();
        self.depth.set(s.queued.len() as i64);
        match at {
            None => s.ready.push_back(key),
            Some(at) => {
                s.sequence += 1;
                let sequence = s.sequence;
                s.delayed.insert((at, sequence), key);
            }
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Waits for the next key to work on; the caller must call `done` with it.
    pub async fn next(&self) -> K {
        loop {
            let deadline = {
                let mut s = self.lock();
                let now = Instant::now();
                while let Some(entry) = s.delayed.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let key = entry.remove();
                    s.queued.insert(key.clone(), None);
                    s.ready.push_back(key);
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    self.depth.set(s.queued.len() as i64);
                    s.processing.insert(key.clone());
                    if !s.ready.is_empty() {
                        self.wake.notify_one();
                    }
                    return key;
                }
                s.delayed.first_key_value().map(|((at, _), _)| *at)
            };
            self.resync_after_overflow();
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Once an overflowed queue has drained, every key comes back.
    fn resync_after_overflow(&self) {
        let drained = {
            let mut s = self.lock();
            let drained = s.overflowed && s.queued.is_empty();
            if drained {
                s.overflowed = false;
            }
            drained
        };
        if drained {
            for key in (self.resync)() {
                self.insert(key, None, true);
            }
        }
    }

    /// A worker finished `key` with `outcome`: an error brings it back after its back-off, a success forgets
    /// its failures.
    pub fn done(&self, key: K, outcome: Result<Next, ()>) {
        let again = {
            let mut s = self.lock();
            s.processing.remove(&key);
            let dirty = s.dirty.remove(&key);
            let now = Instant::now();
            let asked = match outcome {
                Ok(Next::Done) => {
                    s.failures.remove(&key);
                    None
                }
                Ok(Next::RequeueAfter(d)) => {
                    s.failures.remove(&key);
                    Some(Some(now + d))
                }
                Err(()) => {
                    let failures = s.failures.entry(key.clone()).or_default();
                    *failures = failures.saturating_add(1);
                    Some(Some(now + backoff(*failures - 1)))
                }
            };
            // The earliest of what the change and the outcome ask for.
            match (dirty, asked) {
                (Some(None), _) | (None, Some(None)) => Some(None),
                (Some(Some(a)), Some(Some(b))) => Some(Some(a.min(b))),
                (Some(Some(a)), _) | (None, Some(Some(a))) => Some(Some(a)),
                (None, None) => None,
            }
        };
        if let Some(at) = again {
            self.add_at(key, at);
        }
    }

    /// How many keys wait (ready or delayed).
    pub fn len(&self) -> usize {
        self.lock().queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `workers` workers over `queue` until the future is dropped: each takes a key, reconciles it and
/// reports the outcome. An error is logged at debug level (the key comes back after its back-off). The workers
/// are futures of the caller's task, not tasks of their own, so that when a term's task has been aborted and
/// awaited, none of its workers is still running.
pub async fn run_workers<K, E, F, Fut>(queue: Arc<WorkQueue<K>>, workers: usize, reconcile: F)
where
    K: Clone + Eq + Hash + Ord + Send + Sync + std::fmt::Debug + 'static,
    E: std::fmt::Display,
    F: Fn(K) -> Fut,
    Fut: std::future::Future<Output = Result<Next, E>>,
{
    let metrics = &telemetry::get().controllers;
    let name = telemetry::Controller { controller: queue.name };
    let took = metrics.reconcile_seconds.get_or_create_owned(&name);
    let errors = metrics.reconcile_errors.get_or_create_owned(&name);
    let counter =
        |result| metrics.reconciles.get_or_create_owned(&telemetry::Reconciled { controller: queue.name, result });
    let (succeeded, requeued, failed) = (counter("success"), counter("requeue_after"), counter("error"));
    let worker = || async {
        loop {
            let key = queue.next().await;
            let started = Instant::now();
            let outcome = reconcile(key.clone()).await.map_err(|e| {
                tracing::debug!(queue = queue.name, ?key, error = %e, "reconcile failed; retrying after a back-off");
            });
            telemetry::observe(&took, started.elapsed());
            match outcome {
                Ok(Next::Done) => succeeded.inc(),
                Ok(Next::RequeueAfter(_)) => requeued.inc(),
                Err(()) => {
                    errors.inc();
                    failed.inc()
                }
            };
            queue.done(key, outcome);
        }
    };
    futures::future::join_all((0..workers.max(1)).map(|_| worker())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> Arc<WorkQueue<u32>> {
        WorkQueue::new("test", capacity, || vec![1, 2, 3])
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_twice_is_handed_out_once() {
        let q = queue(10);
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.next().await, 1);
        assert_eq!(q.next().await, 2);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_changed_while_processed_comes_back_after_done() {
        let q = queue(10);
        q.add(1);
        let k = q.next().await;
        q.add(1);
        assert!(q.is_empty(), "not handed to a second worker while the first holds it");
        q.done(k, Ok(Next::Done));
        assert_eq!(q.next().await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_success_forgets_them() {
        let q = queue(10);
        q.add(7);
        let start = Instant::now();
        for failure in 0..3 {
            let k = q.next().await;
            assert!(start.elapsed() >= (0..failure).map(backoff).sum::<Duration>());
            q.done(k, Err(()));
        }
        let k = q.next().await;
        q.done(k, Ok(Next::Done));
        assert!(q.lock().failures.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_after_waits_its_delay_unless_the_key_changes() {
        let q = queue(10);
        q.add(1);
        let k = q.next().await;
        q.done(k, Ok(Next::RequeueAfter(Duration::from_secs(30))));
        let start = Instant::now();
        assert_eq!(q.next().await, 1);
        assert!(start.elapsed() >= Duration::from_secs(30));
        let k = 1;
        q.done(k, Ok(Next::RequeueAfter(Duration::from_secs(30))));
        q.add(1);
        let start = Instant::now();
        assert_eq!(q.next().await, 1);
        assert!(start.elapsed() < Duration::from_secs(1), "an add brings a delayed key forward");
    }

    #[tokio::test(start_paused = true)]
    async fn an_overflowed_queue_resyncs_every_key_once_drained() {
        let q = queue(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.len(), 1);
        let k = q.next().await;
        q.done(k, Ok(Next::Done));
        let mut seen = Vec::new();
        for _ in 0..3 {
            let k = q.next().await;
            seen.push(k);
            q.done(k, Ok(Next::Done));
        }
        seen.sort();
        assert_eq!(seen, vec![1, 2, 3], "the dropped key came back with the resync");
        assert!(q.is_empty());
    }
}
