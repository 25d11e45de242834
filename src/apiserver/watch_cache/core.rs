//! The watch cache's pure core: one resource's objects as of a store revision, a window of its recent
//! changes, and the watches registered with it, with no store, clock or task in sight.
//!
//! The shell (`watch_cache`) decodes each change once (`CachedObject::decode`: the stored bytes kept as they
//! are, plus what selectors read) and applies it here one revision at a time. `apply` turns each change into a
//! `CachedEvent` (the object after it, the object before it, taken from the cache's own objects), appends it to
//! the window and offers it to the watches that may select it: every watch without an indexed field, and the
//! watches whose field selector demands one value of the indexed field (`spec.nodeName` for pods) equal to the
//! object's old or new value, found in a map, so an agent's pod watch costs nothing for other nodes' pods. An
//! offered watch evaluates its selectors once per event, on the decoded attributes, and records the event's
//! position and what it is to this watch (ADDED, MODIFIED, DELETED) in its pending list; the watch's task takes
//! the list, and every watch that sends an event shares its encoded object (`CachedEvent::json`).
//!
//! Invariants:
//! - The objects are exactly the store's under the resource's prefix at `revision` (once synced); an event's
//!   previous object is the one the cache held, as the store's previous value would be.
//! - The window holds every change with a revision above `base`, in order, at most `Bounds::events` events and
//!   `Bounds::bytes` bytes; whole revisions are dropped from its front. A watch can start from revision `from`
//!   only when `from > base`, and then sees exactly the selected changes from `from` on.
//! - A watch is handed whole revisions (a revision is applied under one lock, and `take` drains everything
//!   pending), so a watch that is lost (its pending list outgrew `Bounds::pending`, the window dropped an event
//!   it had not taken, or the cache re-listed) resumes elsewhere from the revision of its oldest untaken event
//!   without a duplicate or a gap. A slow watch holds at most `Bounds::pending` small entries and never holds
//!   back the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::apis::catalog::Resource;
use crate::apis::selectors::{self, FieldSelector, LabelSelector};
use crate::apiserver::registry::objects::object_json;
use crate::limits;

/// What an event costs the window besides its object's bytes (the event, its key, the bookkeeping), as an
/// estimate for the byte bound.
const EVENT_OVERHEAD_BYTES: usize = 128;

/// What selectors read of an object, computed once when it is decoded.
#[derive(Debug)]
struct Attrs {
    /// `metadata.labels` (null when there are none).
    labels: Value,
    /// The selectable fields, as `selectors::fields` reads them.
    fields: BTreeMap<&'static str, String>,
}

/// An object as the cache keeps it: in its resource's form and encoded as stored (without its resourceVersion,
/// which is `revision`), with what selectors read of it. A stored value that does not decode is kept too (so
/// that lists report it), without attributes; no selection selects it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub revision: i64,
    pub value: Bytes,
    attrs: Option<Attrs>,
}

impl CachedObject {
    /// Decodes a stored value of `resource` (converted to its form when it is served from another kind's
    /// objects) and reads its attributes: the one decode a change costs.
    pub fn decode(resource: &Resource, key: String, value: Vec<u8>, revision: i64) -> CachedObject {
        let Some(object) = serde_json::from_slice::<Value>(&value).ok().filter(Value::is_object) else {
            return CachedObject { key, revision, value: Bytes::from(value), attrs: None };
        };
        let (object, value) = match resource.conversion {
            None => (object, value),
            Some(_) => {
                let object = resource.from_stored(object);
                let value = serde_json::to_vec(&object).unwrap_or(value);
                (object, value)
            }
        };
        let labels = object.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
        let fields = selectors::fields(resource.group, resource.plural, &object);
        CachedObject { key, revision, value: Bytes::from(value), attrs: Some(Attrs { labels, fields }) }
    }

    /// Whether the stored value decodes (as `objects::decode_object` decides).
    pub fn decodes(&self) -> bool {
        self.attrs.is_some()
    }

    /// The object's JSON with its resourceVersion set to `revision`; None when it does not decode.
    pub fn json(&self, revision: i64) -> Option<Vec<u8>> {
        object_json(&self.key, &self.value, revision).ok()
    }

    fn field(&self, field: &str) -> Option<&str> {
        self.attrs.as_ref()?.fields.get(field).map(String::as_str)
    }

    fn bytes(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

/// What a watch or a list selects: objects under a key prefix (the resource's, or one namespace's) that its
/// label and field selectors match.
#[derive(Clone, Debug)]
pub struct Selection {
    pub prefix: String,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl Selection {
    pub fn selects(&self, object: &CachedObject) -> bool {
        let Some(attrs) = &object.attrs else { return false };
        object.key.starts_with(&self.prefix)
            && self.labels.as_ref().is_none_or(|s| s.matches(Some(&attrs.labels)))
            && self.fields.as_ref().is_none_or(|s| s.matches(&attrs.fields))
    }
}

/// The field a resource's watch cache indexes watches and objects by: a watch whose field selector demands
/// one value of it is offered only the events of objects with that value, before or after the change.
pub fn index_field(resource: &Resource) -> Option<&'static str> {
    ((resource.group, resource.plural) == ("", "pods")).then_some("spec.nodeName")
}

/// What an event is to one watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of the resource, decoded, as the shell applies it.
#[derive(Debug)]
pub enum Change {
    Put(Arc<CachedObject>),
    Delete { key: String },
}

/// A change in the window, shared by every watch that sends it.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: i64,
    /// The object after the change; for a deletion, the object as it was.
    pub object: Arc<CachedObject>,
    /// The object before the change (none for a key that did not exist).
    prev: Option<Arc<CachedObject>>,
    deleted: bool,
    /// `object` as sent: its JSON with the event's revision as resourceVersion, computed by the first watch
    /// that sends the event.
    json: OnceLock<Option<Bytes>>,
}

impl CachedEvent {
    fn new(revision: i64, object: Arc<CachedObject>, prev: Option<Arc<CachedObject>>, deleted: bool) -> CachedEvent {
        CachedEvent { revision, object, prev, deleted, json: OnceLock::new() }
    }

    /// The object as every watch sends it (for a deletion, the last state with the deletion's revision), encoded
    /// once; None when it does not decode.
    pub fn json(&self) -> Option<&Bytes> {
        self.json.get_or_init(|| self.object.json(self.revision).map(Bytes::from)).as_ref()
    }

    /// What a watch with `selection` sees of this change: a put that moves the object into the selection is
    /// ADDED, one within it MODIFIED, one out of it DELETED (with the new object); a deletion of a selected
    /// object is DELETED. An object that does not decode is never sent.
    pub fn seen_by(&self, selection: &Selection) -> Option<EventType> {
        let old = self.prev.as_ref().is_some_and(|p| selection.selects(p));
        if self.deleted {
            return old.then_some(EventType::Deleted);
        }
        if !self.object.decodes() {
            return None;
        }
        match (old, selection.selects(&self.object)) {
            (false, true) => Some(EventType::Added),
            (true, true) => Some(EventType::Modified),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        }
    }

    fn bytes(&self) -> usize {
        self.object.bytes() + EVENT_OVERHEAD_BYTES
    }

    /// The indexed field's values before and after the change.
    fn index_values(&self, field: &str) -> (Option<&str>, Option<&str>) {
        let old = self.prev.as_ref().and_then(|p| p.field(field));
        let new = if self.deleted { None } else { self.object.field(field) };
        (old, new)
    }
}

/// The cache's bounds (the limits in production; tests choose small ones).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most events in the window.
    pub events: usize,
    /// Most bytes of events in the window.
    pub bytes: usize,
    /// Most events one watch may have pending before it is lost.
    pub pending: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            events: limits::API_WATCH_CACHE_WINDOW_EVENTS_MAX,
            bytes: limits::API_WATCH_CACHE_WINDOW_BYTES_MAX,
            pending: limits::API_WATCH_CACHE_PENDING_EVENTS_MAX,
        }
    }
}

pub type WatcherId = u64;

/// An event a watch has yet to take: where it is in the window, and what it is to the watch.
#[derive(Clone, Copy, Debug)]
struct Pending {
    seq: u64,
    revision: i64,
    kind: EventType,
}

#[derive(Debug)]
struct Watcher {
    selection: Selection,
    /// The value the watch's field selector demands of the indexed field, if it demands one.
    index: Option<String>,
    /// The first revision the watch needs.
    from: i64,
    pending: VecDeque<Pending>,
    /// The revision a lost watch resumes from elsewhere.
    lost: Option<i64>,
}

/// What a watch's task takes.
#[derive(Debug)]
pub enum Taken {
    /// Every event pending for the watch, in order, and the revision through which it has now seen everything.
    Events { events: Vec<(Arc<CachedEvent>, EventType)>, through: i64 },
    /// The cache can no longer serve the watch; it must resume from revision `from` elsewhere (the store's
    /// history). The watch is no longer registered.
    Lost { from: i64 },
}

/// Selected objects of a list, in key order.
#[derive(Debug)]
pub struct Listing {
    pub objects: Vec<Arc<CachedObject>>,
    /// The revision the objects are as of.
    pub revision: i64,
    /// The key of the first selected object after the limit, when there is one.
    pub next: Option<String>,
    /// Keys under the selection's prefix whose stored values do not decode.
    pub skipped: Vec<String>,
}

/// Counters, for tests and the benchmark's curiosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Changes applied.
    pub events: u64,
    /// Times a watch's selectors were evaluated for an event.
    pub selections: u64,
    /// Events recorded for watches to send.
    pub deliveries: u64,
    /// Watches lost to the store's history.
    pub lost: u64,
    pub watchers: usize,
    pub objects: usize,
    pub window_events: usize,
    pub window_bytes: usize,
}

/// One resource's cache; see the module doc.
#[derive(Debug)]
pub struct State {
    index_field: Option<&'static str>,
    bounds: Bounds,
    synced: bool,
    /// The store revision through which every change has been applied.
    revision: i64,
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// Keys of objects by their value of the indexed field.
    objects_by_index: HashMap<String, BTreeSet<String>>,
    /// Keys of objects whose stored values do not decode.
    corrupt: BTreeSet<String>,
    window: VecDeque<Arc<CachedEvent>>,
    /// The sequence number of the window's first event (each event applied gets the next one).
    first_seq: u64,
    window_bytes: usize,
    /// Every change after this revision is in the window.
    base: i64,
    watchers: HashMap<WatcherId, Watcher>,
    unindexed: BTreeSet<WatcherId>,
    indexed: HashMap<String, BTreeSet<WatcherId>>,
    next_id: WatcherId,
    stats: Stats,
}

impl State {
    pub fn new(index_field: Option<&'static str>, bounds: Bounds) -> State {
        State {
            index_field,
            bounds,
            synced: false,
            revision: 0,
            objects: BTreeMap::new(),
            objects_by_index: HashMap::new(),
            corrupt: BTreeSet::new(),
            window: VecDeque::new(),
            first_seq: 0,
            window_bytes: 0,
            base: 0,
            watchers: HashMap::new(),
            unindexed: BTreeSet::new(),
            indexed: HashMap::new(),
            next_id: 0,
            stats: Stats::default(),
        }
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn stats(&self) -> Stats {
        Stats {
            watchers: self.watchers.len(),
            objects: self.objects.len(),
            window_events: self.window.len(),
            window_bytes: self.window_bytes,
            ..self.stats
        }
    }

    /// Starts over from a list of every object at `revision`: the window starts there, and every watch is lost
    /// from the revision it needs next (the store's history takes it on, or ends it with 410 Expired if that
    /// revision is compacted). Returns the watches to wake in `woken`.
    pub fn reset(&mut self, objects: Vec<Arc<CachedObject>>, revision: i64, woken: &mut Vec<WatcherId>) {
        self.lose_all(woken);
        self.objects.clear();
        self.objects_by_index.clear();
        self.corrupt.clear();
        for object in objects {
            self.insert(object);
        }
        self.clear_window();
        self.base = revision;
        self.revision = revision;
        self.synced = true;
    }

    /// The cache cannot follow the store any more (its watch failed): every watch is lost, and nothing is
    /// served until the next `reset`.
    pub fn fail(&mut self, woken: &mut Vec<WatcherId>) {
        self.lose_all(woken);
        self.objects.clear();
        self.objects_by_index.clear();
        self.corrupt.clear();
        self.clear_window();
        self.synced = false;
    }

    fn clear_window(&mut self) {
        self.first_seq += self.window.len() as u64;
        self.window.clear();
        self.window_bytes = 0;
    }

    fn lose_all(&mut self, woken: &mut Vec<WatcherId>) {
        for (id, w) in &mut self.watchers {
            if w.lost.is_none() {
                let next = w.from.max(self.revision + 1);
                w.lost = Some(w.pending.front().map_or(next, |p| p.revision));
                w.pending.clear();
                self.stats.lost += 1;
                woken.push(*id);
            }
        }
    }

    /// Applies the changes of one store revision, in order, and offers each to the watches that may select it;
    /// returns the watches to wake in `woken` (a watch may appear more than once).
    pub fn apply(&mut self, revision: i64, changes: Vec<Change>, woken: &mut Vec<WatcherId>) {
        for change in changes {
            let event = match change {
                Change::Put(object) => {
                    let prev = self.insert(object.clone());
                    CachedEvent::new(revision, object, prev, false)
                }
                Change::Delete { key } => match self.remove(&key) {
                    Some(prev) => CachedEvent::new(revision, prev.clone(), Some(prev), true),
                    None => continue,
                },
            };
            let event = Arc::new(event);
            let seq = self.first_seq + self.window.len() as u64;
            self.window_bytes += event.bytes();
            self.window.push_back(event.clone());
            self.stats.events += 1;
            self.dispatch(seq, &event, woken);
        }
        self.revision = self.revision.max(revision);
        self.evict();
    }

    /// Records that the store has no further change of this resource through `revision`.
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn insert(&mut self, object: Arc<CachedObject>) -> Option<Arc<CachedObject>> {
        let prev = self.objects.insert(object.key.clone(), object.clone());
        if let Some(prev) = &prev {
            self.unindex(prev);
        }
        if !object.decodes() {
            self.corrupt.insert(object.key.clone());
        }
        if let Some(value) = self.index_field.and_then(|f| object.field(f)) {
            self.objects_by_index.entry(value.to_string()).or_default().insert(object.key.clone());
        }
        prev
    }

    fn remove(&mut self, key: &str) -> Option<Arc<CachedObject>> {
        let prev = self.objects.remove(key)?;
        self.unindex(&prev);
        Some(prev)
    }

    fn unindex(&mut self, object: &CachedObject) {
        self.corrupt.remove(&object.key);
        if let Some(value) = self.index_field.and_then(|f| object.field(f)) {
            if let Some(keys) = self.objects_by_index.get_mut(value) {
                keys.remove(&object.key);
                if keys.is_empty() {
                    self.objects_by_index.remove(value);
                }
            }
        }
    }

    /// Offers an event to every watch without an index value and to the watches indexed by its old or new
    /// value: no other watch can select it.
    fn dispatch(&mut self, seq: u64, event: &CachedEvent, woken: &mut Vec<WatcherId>) {
        let (old, new) = match self.index_field {
            Some(field) => event.index_values(field),
            None => (None, None),
        };
        let new = new.filter(|n| Some(*n) != old);
        let indexed = [old, new].into_iter().flatten().filter_map(|v| self.indexed.get(v)).flatten();
        for id in self.unindexed.iter().chain(indexed) {
            let Some(w) = self.watchers.get_mut(id) else { continue };
            if offer(w, seq, event, self.first_seq, &self.bounds, &mut self.stats) {
                woken.push(*id);
            }
        }
    }

    /// Drops whole revisions from the window's front while it is over a bound.
    fn evict(&mut self) {
        while self.window.len() > self.bounds.events || self.window_bytes > self.bounds.bytes {
            let Some(revision) = self.window.front().map(|e| e.revision) else { break };
            while let Some(e) = self.window.front().filter(|e| e.revision == revision) {
                self.window_bytes -= e.bytes();
                self.window.pop_front();
                self.first_seq += 1;
            }
            self.base = self.base.max(revision);
        }
    }

    /// Whether a watch that needs every change from revision `from` on can be served from here.
    pub fn covers(&self, from: i64) -> bool {
        self.synced && from > self.base
    }

    fn index_of(&self, selection: &Selection) -> Option<String> {
        let field = self.index_field?;
        selection.fields.as_ref()?.requires_exact_match(field).map(String::from)
    }

    /// Registers a watch that needs every change it selects from revision `from` on (a revision the cache has
    /// not reached yet is fine); the window's events from there are pending at once. None when the window does
    /// not reach back to `from`, or holds more for this watch than it may have pending.
    pub fn subscribe(&mut self, from: i64, selection: Selection) -> Option<WatcherId> {
        if !self.covers(from) {
            return None;
        }
        let index = self.index_of(&selection);
        let mut pending = VecDeque::new();
        let start = self.window.partition_point(|e| e.revision < from);
        for (i, event) in self.window.iter().enumerate().skip(start) {
            if let (Some(field), Some(value)) = (self.index_field, index.as_deref()) {
                let (old, new) = event.index_values(field);
                if old != Some(value) && new != Some(value) {
                    continue;
                }
            }
            self.stats.selections += 1;
            if let Some(kind) = event.seen_by(&selection) {
                if pending.len() == self.bounds.pending {
                    return None;
                }
                pending.push_back(Pending { seq: self.first_seq + i as u64, revision: event.revision, kind });
            }
        }
        self.stats.deliveries += pending.len() as u64;
        let id = self.next_id;
        self.next_id += 1;
        match &index {
            Some(value) => {
                self.indexed.entry(value.clone()).or_default().insert(id);
            }
            None => {
                self.unindexed.insert(id);
            }
        }
        self.watchers.insert(id, Watcher { selection, index, from, pending, lost: None });
        Some(id)
    }

    /// The selected objects as of the cache's revision, and a watch registered from the next revision, in one
    /// step: what a watch that starts with the current state needs. None until the cache is synced.
    pub fn snapshot(&mut self, selection: Selection) -> Option<(Listing, WatcherId)> {
        if !self.synced {
            return None;
        }
        let listing = self.list(&selection, usize::MAX);
        let id = self.subscribe(self.revision + 1, selection)?;
        Some((listing, id))
    }

    /// Up to `limit` selected objects as of the cache's revision, in key order (through the index when the
    /// selection demands a value of the indexed field).
    pub fn list(&self, selection: &Selection, limit: usize) -> Listing {
        let mut listing = Listing { objects: Vec::new(), revision: self.revision, next: None, skipped: Vec::new() };
        let prefix = selection.prefix.as_str();
        listing.skipped =
            self.corrupt.range(prefix.to_string()..).take_while(|k| k.starts_with(prefix)).cloned().collect();
        let mut push = |object: &Arc<CachedObject>| {
            if !selection.selects(object) {
                return true;
            }
            if listing.objects.len() == limit {
                listing.next = Some(object.key.clone());
                return false;
            }
            listing.objects.push(object.clone());
            true
        };
        match self.index_of(selection) {
            Some(value) => {
                let keys = self.objects_by_index.get(&value).into_iter().flatten();
                for object in keys.filter_map(|k| self.objects.get(k)) {
                    if !push(object) {
                        break;
                    }
                }
            }
            None => {
                let under = self.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
                for (_, object) in under {
                    if !push(object) {
                        break;
                    }
                }
            }
        }
        listing
    }

    /// Takes everything pending for a watch; see `Taken`.
    pub fn take(&mut self, id: WatcherId) -> Taken {
        let Some(w) = self.watchers.get_mut(&id) else {
            debug_assert!(false, "take for a watch that is not registered");
            return Taken::Lost { from: self.revision + 1 };
        };
        if let Some(p) = w.pending.front().filter(|p| p.seq < self.first_seq) {
            w.lost = Some(p.revision);
            self.stats.lost += 1;
        }
        if let Some(from) = w.lost {
            self.unsubscribe(id);
            return Taken::Lost { from };
        }
        let first = self.first_seq;
        let events = w.pending.drain(..).map(|p| (self.window[(p.seq - first) as usize].clone(), p.kind)).collect();
        Taken::Events { events, through: self.revision.max(w.from - 1) }
    }

    pub fn unsubscribe(&mut self, id: WatcherId) {
        let Some(w) = self.watchers.remove(&id) else { return };
        match w.index {
            Some(value) => {
                if let Some(ids) = self.indexed.get_mut(&value) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.indexed.remove(&value);
                    }
                }
            }
            None => {
                self.unindexed.remove(&id);
            }
        }
    }
}

/// Offers an event to one watch: records it as pending if the watch selects it (and needs its revision), or
/// loses the watch if it may not have more pending. Returns whether the watch has something new to take.
fn offer(w: &mut Watcher, seq: u64, event: &CachedEvent, first_seq: u64, bounds: &Bounds, stats: &mut Stats) -> bool {
    if w.lost.is_some() || event.revision < w.from {
        return false;
    }
    stats.selections += 1;
    let Some(kind) = event.seen_by(&w.selection) else { return false };
    if w.pending.len() >= bounds.pending || w.pending.front().is_some_and(|p| p.seq < first_seq) {
        w.lost = Some(w.pending.front().map_or(event.revision, |p| p.revision));
        w.pending.clear();
        stats.lost += 1;
        return true;
    }
    w.pending.push_back(Pending { seq, revision: event.revision, kind });
    stats.deliveries += 1;
    true
}

#[cfg(test)]
mod tests;
