//! The watch cache, as upstream's API server has one: per served resource, one watch on the store, whose
//! changes are decoded once and fanned out to every Kubernetes watch of the resource on this replica.
//!
//! A resource's cache starts with the first Kubernetes watch of it on this replica (leader or follower alike:
//! the store's watch hub is local). Its task lists the resource's objects at the current revision, then pulls
//! the store's changes under the resource's prefix from the next one, decodes each changed object once
//! (`core::CachedObject::decode`) and applies them to the core one revision at a time under a std Mutex, which
//! is never held across an await. A Kubernetes watch registers with the cache (`Cache::subscribe`) from the
//! revision it needs, if the cache's window reaches back to it and the store has not compacted it; then it waits
//! on its `Notify` and takes what the core recorded for it (`Subscription::take`). A watch the cache cannot
//! serve (a revision before the window, or a watch the cache lost because its client is slow or the cache had
//! to list again) reads the store's history itself, as every watch did before the cache, and registers again
//! once it has caught up (see `collections`).
//!
//! When the store's watch fails the cache starts over: a compaction it fell behind makes it list again at once,
//! a storage fault after `API_WATCH_CACHE_RETRY_MS`; either way its watches are lost to the store's history,
//! which ends them with 410 Expired when their revision is compacted, as upstream's cacher does. Lists that
//! allow a state that may be behind (`resourceVersion=0`, or a version the cache has reached) are answered
//! from a running cache's objects.

pub mod core;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::apis::catalog::Resource;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::collections::skip_corrupt;
use crate::apiserver::registry::objects::{decode_object, prefix_end, Objects};
use crate::limits;
use crate::store::command::{Event, EventKind, KeyRange};
use crate::store::watch::{WatchError, WatchFilter, Watcher};

use self::core::{Bounds, CachedObject, Change, Listing, Selection, State, Taken, WatcherId};

/// Which resource a cache serves: a kind at one version (a second version served from another's objects has
/// a cache of its own, in its form).
type CacheKey = (&'static str, &'static str, &'static str);

fn cache_key(resource: &Resource) -> CacheKey {
    (resource.group, resource.version, resource.plural)
}

/// The watch caches of one replica's Kubernetes API.
pub struct WatchCaches {
    objects: Objects,
    /// std Mutex: held only to find or add a cache.
    caches: Mutex<HashMap<CacheKey, Arc<Cache>>>,
    /// Store watches opened by Kubernetes watches the caches could not serve.
    store_watches: AtomicU64,
}

/// What a cache has done, for tests and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Store watches the cache opened (one, unless it had to start over).
    pub store_watches: u64,
    /// Stored values decoded (each listed or changed object once).
    pub decodes: u64,
    pub core: core::Stats,
}

impl WatchCaches {
    pub fn new(objects: Objects) -> Arc<WatchCaches> {
        Arc::new(WatchCaches { objects, caches: Mutex::default(), store_watches: AtomicU64::new(0) })
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    fn caches(&self) -> MutexGuard<'_, HashMap<CacheKey, Arc<Cache>>> {
        self.caches.lock().expect("watch caches poisoned")
    }

    /// The cache of `resource`, started (its task spawned) on first use.
    pub fn cache(&self, resource: &'static Resource) -> Arc<Cache> {
        let mut caches = self.caches();
        if let Some(cache) = caches.get(&cache_key(resource)) {
            return cache.clone();
        }
        let cache = Arc::new(Cache::new(resource, self.objects.clone(), Bounds::default()));
        caches.insert(cache_key(resource), cache.clone());
        tokio::spawn(run(cache.clone()));
        cache
    }

    /// The cache of `resource`, if a watch has started it.
    pub fn running(&self, resource: &Resource) -> Option<Arc<Cache>> {
        self.caches().get(&cache_key(resource)).cloned()
    }

    /// A store watch for a Kubernetes watch that no cache serves (counted).
    pub fn store_watch(&self, filter: WatchFilter, from: i64) -> Watcher {
        self.store_watches.fetch_add(1, Ordering::Relaxed);
        self.objects.store().watch(filter, from)
    }

    /// How many store watches Kubernetes watches opened themselves, because no cache could serve them.
    pub fn store_watches(&self) -> u64 {
        self.store_watches.load(Ordering::Relaxed)
    }

    pub fn stats(&self, resource: &Resource) -> Option<CacheStats> {
        self.running(resource).map(|c| c.stats())
    }
}

/// Where a cache is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Listing for the first time.
    Starting,
    Synced,
    /// Its store watch or list failed; it tries again.
    Failed,
}

/// The state the cache's task and the watches share.
struct Shared {
    state: State,
    /// What wakes each registered watch.
    wakers: HashMap<WatcherId, Arc<Notify>>,
}

impl Shared {
    fn wake(&self, woken: &[WatcherId]) {
        for id in woken {
            if let Some(n) = self.wakers.get(id) {
                n.notify_one();
            }
        }
    }
}

/// One resource's cache: the core, shared with its task and its watches.
pub struct Cache {
    resource: &'static Resource,
    objects: Objects,
    /// std Mutex: held to apply one revision, or to register, take or list, never across an await.
    shared: Mutex<Shared>,
    phase: tokio::sync::watch::Sender<Phase>,
    store_watches: AtomicU64,
    decodes: AtomicU64,
}

impl Cache {
    fn new(resource: &'static Resource, objects: Objects, bounds: Bounds) -> Cache {
        let state = State::new(core::index_field(resource), bounds);
        Cache {
            resource,
            objects,
            shared: Mutex::new(Shared { state, wakers: HashMap::new() }),
            phase: tokio::sync::watch::Sender::new(Phase::Starting),
            store_watches: AtomicU64::new(0),
            decodes: AtomicU64::new(0),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("watch cache poisoned")
    }

    /// Waits until the cache has listed for the first time; false if it failed to (the caller reads the store).
    pub async fn wait_synced(&self) -> bool {
        let mut phase = self.phase.subscribe();
        let synced = match phase.wait_for(|p| *p != Phase::Starting).await {
            Ok(p) => *p == Phase::Synced,
            Err(_) => false,
        };
        synced
    }

    /// Whether a watch that needs every change from revision `from` on can register: the window reaches back
    /// to it and the store has not compacted it (a compacted revision is 410 Expired, as the store answers).
    pub fn covers(&self, from: i64) -> bool {
        from >= self.objects.store().compact_revision() && self.shared().state.covers(from)
    }

    /// Registers a watch from revision `from`; None when the cache cannot serve it (see `covers`).
    pub fn subscribe(self: &Arc<Self>, from: i64, selection: Selection) -> Option<Subscription> {
        if from < self.objects.store().compact_revision() {
            return None;
        }
        let mut shared = self.shared();
        let id = shared.state.subscribe(from, selection)?;
        Some(self.registered(&mut shared, id))
    }

    /// The selected objects as of the cache's revision, with a watch registered from the next one; None until
    /// the cache is synced.
    pub fn snapshot(self: &Arc<Self>, selection: Selection) -> Option<(Listing, Subscription)> {
        let mut shared = self.shared();
        let (listing, id) = shared.state.snapshot(selection)?;
        Some((listing, self.registered(&mut shared, id)))
    }

    fn registered(self: &Arc<Self>, shared: &mut Shared, id: WatcherId) -> Subscription {
        let notify = Arc::new(Notify::new());
        // The window's events from its revision on may be pending already.
        notify.notify_one();
        shared.wakers.insert(id, notify.clone());
        Subscription { cache: self.clone(), id, notify }
    }

    /// Up to `limit` selected objects, if the cache is synced and has reached revision `min`.
    pub fn list(&self, selection: &Selection, limit: usize, min: i64) -> Option<Listing> {
        let shared = self.shared();
        (shared.state.synced() && shared.state.revision() >= min).then(|| shared.state.list(selection, limit))
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            store_watches: self.store_watches.load(Ordering::Relaxed),
            decodes: self.decodes.load(Ordering::Relaxed),
            core: self.shared().state.stats(),
        }
    }

    fn decode(&self, key: String, value: Vec<u8>, revision: i64) -> CachedObject {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let object = CachedObject::decode(self.resource, key, value, revision);
        if !object.decodes() {
            if let Err(e) = decode_object(&object.key, &object.value, revision) {
                skip_corrupt(&object.key, &e, &mut Vec::new());
            }
        }
        object
    }

    /// Every object of the resource at the store's current revision, read a page at a time; returns that
    /// revision.
    async fn list_all(&self) -> Result<(Vec<Arc<CachedObject>>, i64), ApiError> {
        let prefix = self.resource.prefix(None);
        let end = prefix_end(&prefix);
        let revision = self.objects.store().revision();
        let mut from = prefix.into_bytes();
        let mut objects = Vec::new();
        loop {
            let page = self.objects.page(&from, &end, revision, limits::API_LIST_CHUNK_MAX).await?;
            let more = page.more && !page.items.is_empty();
            for raw in page.items {
                from = raw.key.clone().into_bytes();
                from.push(0);
                objects.push(Arc::new(self.decode(raw.key, raw.value, raw.revision)));
            }
            if !more {
                return Ok((objects, revision));
            }
            tokio::task::yield_now().await;
        }
    }

    /// Applies a batch of the store's changes, one revision at a time, waking the watches each one concerns;
    /// `through` is the revision the store watch has read through.
    fn apply(&self, events: Vec<Event>, through: i64) {
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let revision = first.kv.mod_revision;
            let mut changes = vec![self.change(first)];
            while let Some(e) = events.next_if(|e| e.kv.mod_revision == revision) {
                changes.push(self.change(e));
            }
            let mut woken = Vec::new();
            let mut shared = self.shared();
            shared.state.apply(revision, changes, &mut woken);
            shared.wake(&woken);
        }
        self.shared().state.advance(through);
    }

    fn change(&self, event: Event) -> Change {
        let key = String::from_utf8_lossy(&event.kv.key).into_owned();
        match event.kind {
            EventKind::Put => Change::Put(Arc::new(self.decode(key, event.kv.value, event.kv.mod_revision))),
            EventKind::Delete => Change::Delete { key },
        }
    }

    fn reset(&self, objects: Vec<Arc<CachedObject>>, revision: i64) {
        let mut woken = Vec::new();
        let mut shared = self.shared();
        shared.state.reset(objects, revision, &mut woken);
        shared.wake(&woken);
        drop(shared);
        self.phase.send_replace(Phase::Synced);
    }

    fn fail(&self) {
        let mut woken = Vec::new();
        let mut shared = self.shared();
        shared.state.fail(&mut woken);
        shared.wake(&woken);
        drop(shared);
        self.phase.send_replace(Phase::Failed);
    }

    /// Follows the store from `revision` until the store watch fails; returns why.
    async fn follow(&self, revision: i64) -> WatchError {
        let prefix = self.resource.prefix(None);
        let range = KeyRange { key: prefix.as_bytes().to_vec(), end: prefix_end(&prefix) };
        let filter = WatchFilter { range, prev_kv: false, no_put: false, no_delete: false };
        let store = self.objects.store();
        let mut revisions = store.revisions();
        self.store_watches.fetch_add(1, Ordering::Relaxed);
        let mut watcher = store.watch(filter, revision + 1);
        loop {
            match watcher.pull() {
                Ok(Some(batch)) => {
                    self.apply(self.objects.open_events(batch.events), watcher.next_revision() - 1);
                    tokio::task::yield_now().await;
                }
                Ok(None) => {
                    if let Err(e) = revisions.changed().await {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    }
}

/// A cache's task: list, follow the store, and start over when the store watch fails.
async fn run(cache: Arc<Cache>) {
    let resource = cache.resource.qualified_plural();
    loop {
        let (objects, revision) = match cache.list_all().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%resource, %error, "the watch cache could not list; trying again");
                cache.fail();
                tokio::time::sleep(Duration::from_millis(limits::API_WATCH_CACHE_RETRY_MS)).await;
                continue;
            }
        };
        cache.reset(objects, revision);
        match cache.follow(revision).await {
            WatchError::Compacted { from, compact_revision } => {
                tracing::info!(%resource, from, compact_revision, "the watch cache fell behind a compaction; listing again");
            }
            WatchError::Storage(error) => {
                tracing::warn!(%resource, %error, "the watch cache's store watch failed; listing again");
                cache.fail();
                tokio::time::sleep(Duration::from_millis(limits::API_WATCH_CACHE_RETRY_MS)).await;
            }
            WatchError::Stopped => {
                cache.fail();
                return;
            }
        }
    }
}

/// A Kubernetes watch's registration with a cache; dropping it unregisters the watch.
pub struct Subscription {
    cache: Arc<Cache>,
    id: WatcherId,
    notify: Arc<Notify>,
}

impl Subscription {
    /// Waits until the cache has recorded something for this watch (or lost it).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Takes what the cache recorded for this watch; after `Taken::Lost` the watch is no longer registered.
    pub fn take(&self) -> Taken {
        self.cache.shared().state.take(self.id)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut shared = self.cache.shared();
        shared.state.unsubscribe(self.id);
        shared.wakers.remove(&self.id);
    }
}
