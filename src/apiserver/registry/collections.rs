//! The collection verbs: list (selectors, pagination, resource versions) and watch (a stream of changes from
//! any revision still in the history).
//!
//! A list is read at one revision: the first page at the current one (after a read index, unless the client
//! allows a stale answer with `resourceVersion=0`), later pages at the revision their continue token carries,
//! so pages never mix states. A first page that may be behind (`resourceVersion=0`, or a version the resource's
//! watch cache has reached) is answered from a running watch cache's objects instead of the store.
//!
//! A watch gets its resource's changes from the revision after the one it starts at, exactly once and in order:
//! from the resource's watch cache (`watch_cache`), which decodes each change once for every watch of the
//! resource, whenever the cache's window reaches back to that revision; otherwise (an older revision, or a watch
//! the cache lost because its client reads slowly) from the store's watch hub, until it has caught up and can
//! register with the cache again. Selectors turn a change that moves an object into or out of the selection
//! into ADDED or DELETED, as the real API server does, on either path. A watch with `resourceVersion=0` starts
//! with the cache's objects; other watches that start with the current state read it from the store.
//!
//! A stored value that does not decode (anyone with the etcd port can write one) is skipped and reported, with
//! its key, in a warning log line and in the `Warning` header of lists; the rest is served. A watch's initial
//! events are read a few objects at a time, and what waits for a slow watch client is bounded in bytes
//! (`API_WATCH_QUEUE_BYTES_MAX`), so a watch costs little memory however much it lists and however slowly
//! its client reads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::apis::catalog::Resource;
use crate::apis::selectors::{FieldSelector, LabelSelector};
use crate::apis::table::{self, IncludeObject};
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::objects::{decode_object, object_json, prefix_end, Consistency, Objects, Page, Raw};
use crate::apiserver::registry::verbs::{meta, Target};
use crate::apiserver::watch_cache::core::{CachedEvent, EventType, Listing, Selection, Taken};
use crate::apiserver::watch_cache::{Cache, Subscription, WatchCaches};
use crate::limits;
use crate::store::command::{EventKind, KeyRange, KeyValue};
use crate::store::watch::{Batch, WatchError, WatchFilter};

/// The query options of list and watch.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
}

impl ListOptions {
    pub fn selects_everything(&self) -> bool {
        self.label_selector.as_ref().is_none_or(LabelSelector::is_everything)
            && self.field_selector.as_ref().is_none_or(FieldSelector::is_everything)
    }

    /// Whether `obj` (of `resource`) is selected.
    pub fn selects(&self, resource: &Resource, obj: &Value) -> bool {
        self.label_selector.as_ref().is_none_or(|s| s.matches_object(obj))
            && self.field_selector.as_ref().is_none_or(|s| s.matches_object(resource.group, resource.plural, obj))
    }

    /// What these options select of `target`, as the watch cache reads it.
    fn selection(&self, target: &Target) -> Selection {
        Selection {
            prefix: target.resource.prefix(target.namespace.as_deref()),
            labels: self.label_selector.clone(),
            fields: self.field_selector.clone(),
        }
    }
}

/// Where a paginated list goes on: the revision it reads at and the first key of the next page.
fn encode_continue(revision: i64, next_key: &[u8]) -> String {
    let hex: String = next_key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{revision}-{hex}")
}

fn decode_continue(token: &str) -> Result<(i64, Vec<u8>), ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
    let (rev, hex) = token.split_once('-').ok_or_else(bad)?;
    let revision: i64 = rev.parse().map_err(|_| bad())?;
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok((revision, key))
}

/// One page of a list: the items, the revision read at, the continue token when more remain, and the keys
/// of stored values that did not decode and were left out.
pub struct Listed {
    pub items: Vec<Raw>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub skipped: Vec<String>,
}

/// Leaves a stored value that does not decode out of a list or watch, saying so in the log.
pub fn skip_corrupt(key: &str, error: &ApiError, skipped: &mut Vec<String>) {
    tracing::warn!(%key, %error, "skipped a stored object that does not decode");
    skipped.push(key.to_string());
}

/// The `Warning` texts that name skipped keys (the first few, then how many more).
pub fn skipped_warnings(skipped: &[String]) -> Vec<String> {
    let shown = skipped.iter().take(limits::API_SKIPPED_WARNINGS_MAX);
    let mut out: Vec<String> =
        shown.map(|k| format!("skipped the stored object at {k}: its stored value does not decode")).collect();
    if skipped.len() > limits::API_SKIPPED_WARNINGS_MAX {
        out.push(format!("skipped {} more stored objects that do not decode", skipped.len() - out.len()));
    }
    out
}

fn parse_revision(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version {rv:?}")))
}

/// The revision a list without a continue token reads at, from its resourceVersion options.
async fn start_revision(objects: &Objects, opts: &ListOptions) -> Result<i64, ApiError> {
    let rv = opts.resource_version.as_deref().unwrap_or("");
    let exact = opts.resource_version_match.as_deref() == Some("Exact");
    Ok(match rv {
        "" => objects.revision(Consistency::Linearizable).await?,
        "0" => objects.revision(Consistency::Local).await?,
        rv if exact => parse_revision(rv)?,
        rv => {
            let wanted = parse_revision(rv)?;
            let local = objects.revision(Consistency::Local).await?;
            if local >= wanted {
                local
            } else {
                objects.revision(Consistency::Linearizable).await?
            }
        }
    })
}

/// A list: its first page from the resource's watch cache when the options allow a state that may be behind
/// (`resourceVersion=0`, or a version the cache has reached, not `Exact`) and a watch has started the cache;
/// from the store otherwise. Later pages always come from the store, at the revision of the first.
pub async fn list_cached(caches: &WatchCaches, target: &Target, opts: &ListOptions) -> Result<Listed, ApiError> {
    match from_cache(caches, target, opts) {
        Some(listed) => Ok(listed),
        None => list(caches.objects(), target, opts).await,
    }
}

fn from_cache(caches: &WatchCaches, target: &Target, opts: &ListOptions) -> Option<Listed> {
    if opts.continue_token.is_some() {
        return None;
    }
    let min = match (opts.resource_version.as_deref()?, opts.resource_version_match.as_deref()) {
        ("0", _) => 0,
        (rv, None | Some("NotOlderThan")) => parse_revision(rv).ok()?,
        _ => return None,
    };
    let cache = caches.running(target.resource)?;
    let limit = if opts.limit == 0 { usize::MAX } else { opts.limit };
    let listing = cache.list(&opts.selection(target), limit, min)?;
    let mut skipped = Vec::new();
    for key in &listing.skipped {
        skip_corrupt(key, &ApiError::Internal(format!("stored object {key} does not decode")), &mut skipped);
    }
    let items = listing
        .objects
        .iter()
        .map(|o| Raw { key: o.key.clone(), value: o.value.to_vec(), revision: o.revision })
        .collect();
    let continue_token = listing.next.map(|key| encode_continue(listing.revision, key.as_bytes()));
    Some(Listed { items, revision: listing.revision, continue_token, skipped })
}

pub async fn list(objects: &Objects, target: &Target, opts: &ListOptions) -> Result<Listed, ApiError> {
    let prefix = target.resource.prefix(target.namespace.as_deref());
    let end = prefix_end(&prefix);
    let (mut from, mut revision) = match &opts.continue_token {
        Some(token) => {
            let (revision, key) = decode_continue(token)?;
            if !key.starts_with(prefix.as_bytes()) {
                return Err(ApiError::BadRequest("continue key does not belong to this list".into()));
            }
            (key, revision)
        }
        None => (prefix.as_bytes().to_vec(), start_revision(objects, opts).await?),
    };
    // Without a limit, the whole selection is answered at once.
    let limit = if opts.limit == 0 { usize::MAX } else { opts.limit };
    let chunk = limits::API_LIST_CHUNK_MAX.min(limit.saturating_add(1));
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    loop {
        let page = objects.page(&from, &end, revision, chunk).await?;
        let page = Page { items: presented_raws(target.resource, page.items), ..page };
        revision = page.revision;
        let scanned = page.items.len();
        let mut iter = page.items.into_iter();
        for raw in iter.by_ref() {
            if items.len() == limit {
                // One more selected item exists: the next page starts at it.
                let token = encode_continue(revision, raw.key.as_bytes());
                return Ok(Listed { items, revision, continue_token: Some(token), skipped });
            }
            let last_key = raw.key.clone();
            let selected = match opts.selects_everything() {
                true => true,
                false => match raw.decode() {
                    Ok(stored) => opts.selects(target.resource, &stored.object),
                    Err(e) => {
                        skip_corrupt(&raw.key, &e, &mut skipped);
                        false
                    }
                },
            };
            if selected {
                items.push(raw);
            }
            from = last_key.into_bytes();
            from.push(0);
        }
        if !page.more || scanned == 0 {
            return Ok(Listed { items, revision, continue_token: None, skipped });
        }
        if items.len() == limit {
            // Items remain after the last page read; whether any is selected, the next page tells.
            let token = encode_continue(revision, &from);
            return Ok(Listed { items, revision, continue_token: Some(token), skipped });
        }
    }
}

/// The encoded list object of a resource (`PodList` …), assembled from the stored objects without decoding
/// them: a full list of many objects is mostly copying. Returns it with the keys of every object left out
/// because its stored value does not decode.
pub fn list_object(resource: &Resource, mut listed: Listed) -> Result<(Vec<u8>, Vec<String>), ApiError> {
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = listed.continue_token {
        metadata["continue"] = json!(token);
    }
    let head = json!({"apiVersion": resource.api_version()});
    let tail = json!({"kind": format!("{}List", resource.kind), "metadata": metadata});
    let encode = |v: &Value| serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()));
    let (head, tail) = (encode(&head)?, encode(&tail)?);
    let size: usize = listed.items.iter().map(|r| r.value.len() + 32).sum();
    let mut out = Vec::with_capacity(size + head.len() + tail.len() + 16);
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    let mut first = true;
    for raw in &listed.items {
        let json = match raw.json() {
            Ok(json) => json,
            Err(e) => {
                skip_corrupt(&raw.key, &e, &mut listed.skipped);
                continue;
            }
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&json);
    }
    out.extend_from_slice(b"],");
    out.extend_from_slice(&tail[1..]);
    Ok((out, listed.skipped))
}

/// The Table a `kubectl get` asks for, with the keys of the objects left out because they do not decode.
pub fn list_table(resource: &Resource, mut listed: Listed, now: i64, include: IncludeObject) -> (Value, Vec<String>) {
    let mut objects = Vec::with_capacity(listed.items.len());
    for raw in &listed.items {
        match raw.decode() {
            Ok(stored) => objects.push(stored.object),
            Err(e) => skip_corrupt(&raw.key, &e, &mut listed.skipped),
        }
    }
    let mut t = table::table(resource, &objects, now, true, include);
    t["metadata"] = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = listed.continue_token {
        t["metadata"]["continue"] = json!(token);
    }
    (t, listed.skipped)
}

/// How watch events are encoded for one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFormat {
    Objects,
    /// `meta.k8s.io/v1` Tables, each row holding what `includeObject` asked for.
    Table(IncludeObject),
}

/// Why a watch ends before its timeout.
#[derive(Debug)]
enum WatchEnd {
    /// The client went away: there is no one to tell.
    ClientGone,
    /// The watch cannot go on; the client gets an ERROR event with this error's `Status` (410 Expired for a
    /// compacted start, 500 InternalError for a storage fault, ...).
    Failed(ApiError),
}

impl From<ApiError> for WatchEnd {
    fn from(e: ApiError) -> WatchEnd {
        WatchEnd::Failed(e)
    }
}

impl From<WatchError> for WatchEnd {
    fn from(e: WatchError) -> WatchEnd {
        WatchEnd::Failed(e.into())
    }
}

struct WatchSession {
    caches: Arc<WatchCaches>,
    objects: Objects,
    target: Target,
    opts: ListOptions,
    format: WatchFormat,
    tx: mpsc::Sender<Bytes>,
    /// Bytes the queue may still take (see `budget_share`); the stream gives them back as the client takes
    /// events.
    budget: Arc<Semaphore>,
    columns_sent: bool,
}

/// How much of a watch's queue budget an encoded event holds while it waits: its size, or the whole budget
/// for a larger one, which then waits alone.
fn budget_share(len: usize) -> u32 {
    len.clamp(1, limits::API_WATCH_QUEUE_BYTES_MAX) as u32
}

/// How many objects the next page of a watch's initial events reads: as many of the size just read as fit in
/// the queue's byte budget (at least one, at most `API_WATCH_INITIAL_CHUNK_MAX`).
fn initial_chunk(read: &[Raw]) -> usize {
    let bytes: usize = read.iter().map(|r| r.value.len()).sum();
    let average = bytes / read.len().max(1);
    (limits::API_WATCH_QUEUE_BYTES_MAX / average.max(1)).clamp(1, limits::API_WATCH_INITIAL_CHUNK_MAX)
}

/// A stored value in the form of `resource`, which serves it at another version than it is stored at; one
/// that does not decode is passed on as it is, to be skipped and reported where it is read.
fn presented_value(resource: &Resource, value: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(value) {
        Ok(object) if object.is_object() => {
            serde_json::to_vec(&resource.from_stored(object)).unwrap_or_else(|_| value.to_vec())
        }
        _ => value.to_vec(),
    }
}

/// Stored objects read through `resource`, in its form.
fn presented_raws(resource: &Resource, raws: Vec<Raw>) -> Vec<Raw> {
    match resource.conversion {
        None => raws,
        Some(_) => raws.into_iter().map(|raw| Raw { value: presented_value(resource, &raw.value), ..raw }).collect(),
    }
}

/// A change read through `resource`, in its form.
fn presented_kv<'a>(resource: &Resource, kv: &'a KeyValue) -> std::borrow::Cow<'a, KeyValue> {
    match resource.conversion {
        None => std::borrow::Cow::Borrowed(kv),
        Some(_) => std::borrow::Cow::Owned(KeyValue { value: presented_value(resource, &kv.value), ..kv.clone() }),
    }
}

/// A change's object; one that does not decode is left out of the stream (and logged).
fn decode_kv(kv: &KeyValue) -> Option<Value> {
    let key = String::from_utf8_lossy(&kv.key);
    match decode_object(&key, &kv.value, kv.mod_revision) {
        Ok(object) => Some(object),
        Err(e) => {
            skip_corrupt(&key, &e, &mut Vec::new());
            None
        }
    }
}

/// A change's object encoded with its resourceVersion set to `revision`, without decoding it; one that does
/// not decode is left out of the stream (and logged), as `decode_kv` leaves it out.
fn splice_kv(kv: &KeyValue, revision: i64) -> Option<Vec<u8>> {
    let key = String::from_utf8_lossy(&kv.key);
    match object_json(&key, &kv.value, revision) {
        Ok(json) => Some(json),
        Err(e) => {
            skip_corrupt(&key, &e, &mut Vec::new());
            None
        }
    }
}

/// Whether a stored value decodes (as `decode_object` decides), checked without building the object.
fn decodes(kv: &KeyValue) -> bool {
    use serde_json::value::RawValue;
    let decodes = serde_json::from_slice::<std::collections::BTreeMap<&str, &RawValue>>(&kv.value).is_ok()
        || serde_json::from_slice::<Value>(&kv.value).is_ok_and(|v| v.is_object());
    if !decodes {
        skip_corrupt(
            &String::from_utf8_lossy(&kv.key),
            &ApiError::Internal("not a JSON object".into()),
            &mut Vec::new(),
        );
    }
    decodes
}

/// One event as a line of the stream, its object already encoded.
fn event_line(kind: &str, object: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    line
}

/// Lines waiting to be queued as one chunk of the response: what one pull yields goes to the client in as few
/// writes as the queue's byte budget allows, instead of one write per event.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
}

impl Chunk {
    /// Adds a line; returns the chunk to queue first when the line would take it past the budget.
    fn push(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let full = !self.bytes.is_empty() && self.bytes.len() + line.len() > limits::API_WATCH_QUEUE_BYTES_MAX;
        let ready = full.then(|| std::mem::take(&mut self.bytes));
        self.bytes.extend_from_slice(line);
        ready
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        (!self.bytes.is_empty()).then(|| std::mem::take(&mut self.bytes))
    }
}

impl WatchSession {
    /// An event as a line of the stream, in the stream's format.
    fn line(&mut self, kind: &str, object: Value) -> Result<Vec<u8>, ApiError> {
        let object = match (self.format, kind) {
            (WatchFormat::Table(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let now = jiff::Timestamp::now().as_second();
                let mut t =
                    table::table(self.target.resource, std::slice::from_ref(&object), now, !self.columns_sent, include);
                self.columns_sent = true;
                t["metadata"] = json!({"resourceVersion": meta(&object).and_then(|m| m.get("resourceVersion")).cloned().unwrap_or(Value::Null)});
                t
            }
            _ => object,
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
            .map_err(|e| ApiError::Internal(format!("encoding a watch event: {e}")))?;
        line.push(b'\n');
        Ok(line)
    }

    async fn send(&mut self, kind: &str, object: Value) -> Result<(), WatchEnd> {
        let line = self.line(kind, object)?;
        self.send_line(line).await
    }

    /// Queues encoded events once the queue's byte budget has room for them.
    async fn send_line(&mut self, line: Vec<u8>) -> Result<(), WatchEnd> {
        let permit = tokio::select! {
            permit = self.budget.acquire_many(budget_share(line.len())) => permit.map_err(|_| WatchEnd::ClientGone)?,
            () = self.tx.closed() => return Err(WatchEnd::ClientGone),
        };
        // Given back by the stream when the client takes the event.
        permit.forget();
        self.tx.send(Bytes::from(line)).await.map_err(|_| WatchEnd::ClientGone)
    }

    /// Adds a line to `chunk`, queueing what it held first when the line would take it past the budget.
    async fn push_line(&mut self, chunk: &mut Chunk, line: &[u8]) -> Result<(), WatchEnd> {
        match chunk.push(line) {
            Some(ready) => self.send_line(ready).await,
            None => Ok(()),
        }
    }

    async fn flush(&mut self, chunk: &mut Chunk) -> Result<(), WatchEnd> {
        match chunk.take() {
            Some(ready) => self.send_line(ready).await,
            None => Ok(()),
        }
    }

    /// Sends every selected object at `revision` as ADDED, reading a few objects at a time so that the list
    /// is never held whole; a revision that cannot be read any more is 410 Expired.
    async fn send_initial(&mut self, revision: i64) -> Result<(), WatchEnd> {
        let resource = self.target.resource;
        let prefix = resource.prefix(self.target.namespace.as_deref());
        let end = prefix_end(&prefix);
        let mut from = prefix.into_bytes();
        let spliced = self.format == WatchFormat::Objects && self.opts.selects_everything();
        let mut chunk = Chunk::default();
        let mut page_size = limits::API_WATCH_INITIAL_CHUNK_MAX;
        loop {
            let page = self.objects.page(&from, &end, revision, page_size).await.map_err(|e| match e {
                ApiError::Gone(_) => ApiError::Gone(too_old(revision, revision)),
                other => other,
            })?;
            let more = page.more && !page.items.is_empty();
            page_size = initial_chunk(&page.items);
            for raw in presented_raws(resource, page.items) {
                from = raw.key.clone().into_bytes();
                from.push(0);
                if spliced {
                    match raw.json() {
                        Ok(json) => self.push_line(&mut chunk, &event_line("ADDED", &json)).await?,
                        Err(e) => skip_corrupt(&raw.key, &e, &mut Vec::new()),
                    }
                    continue;
                }
                match raw.decode() {
                    Ok(stored) if self.opts.selects(resource, &stored.object) => {
                        let line = self.line("ADDED", stored.object)?;
                        self.push_line(&mut chunk, &line).await?
                    }
                    Ok(_) => {}
                    Err(e) => skip_corrupt(&raw.key, &e, &mut Vec::new()),
                }
            }
            if !more {
                return self.flush(&mut chunk).await;
            }
        }
    }

    fn bookmark(&self, revision: i64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.target.resource.kind, "apiVersion": self.target.resource.api_version(), "metadata": metadata})
    }

    /// One change as a line, translated by the selection before and after it; None when the client does not
    /// see it.
    fn change_line(
        &mut self,
        kind: EventKind,
        kv: &KeyValue,
        prev: Option<&KeyValue>,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if self.format == WatchFormat::Objects && self.opts.selects_everything() {
            return Ok(Self::spliced_change_line(kind, kv, prev));
        }
        let resource = self.target.resource;
        let old = prev.and_then(decode_kv).filter(|o| self.opts.selects(resource, o));
        let (kind, object) = match kind {
            EventKind::Put => {
                let Some(new) = decode_kv(kv) else { return Ok(None) };
                match (old.is_some(), self.opts.selects(resource, &new)) {
                    (false, true) => ("ADDED", new),
                    (true, true) => ("MODIFIED", new),
                    (true, false) => ("DELETED", new),
                    (false, false) => return Ok(None),
                }
            }
            EventKind::Delete => match old {
                Some(mut obj) => {
                    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    }
                    ("DELETED", obj)
                }
                None => return Ok(None),
            },
        };
        self.line(kind, object).map(Some)
    }

    /// `change_line` for a watch that selects everything and wants plain objects: the stored bytes are spliced,
    /// never decoded, which is most of what a change costs a watch.
    fn spliced_change_line(kind: EventKind, kv: &KeyValue, prev: Option<&KeyValue>) -> Option<Vec<u8>> {
        match kind {
            EventKind::Put => {
                let new = splice_kv(kv, kv.mod_revision)?;
                let kind = if prev.is_some_and(decodes) { "MODIFIED" } else { "ADDED" };
                Some(event_line(kind, &new))
            }
            EventKind::Delete => Some(event_line("DELETED", &splice_kv(prev?, kv.mod_revision)?)),
        }
    }

    /// Sends one batch of changes, in as few chunks as the queue's budget allows.
    async fn send_changes(&mut self, batch: Batch) -> Result<(), WatchEnd> {
        let mut chunk = Chunk::default();
        let resource = self.target.resource;
        for e in &self.caches.objects().open_events(batch.events) {
            let (kv, prev) = (presented_kv(resource, &e.kv), e.prev_kv.as_ref().map(|p| presented_kv(resource, p)));
            if let Some(line) = self.change_line(e.kind, &kv, prev.as_deref())? {
                self.push_line(&mut chunk, &line).await?;
            }
        }
        self.flush(&mut chunk).await
    }

    /// Streams until the timeout or the client going away; a watch that cannot go on ends with an ERROR
    /// event carrying its `Status`.
    async fn run(mut self) {
        let timeout = Duration::from_secs(
            self.opts
                .timeout_seconds
                .unwrap_or(limits::API_WATCH_TIMEOUT_SECS_MAX)
                .min(limits::API_WATCH_TIMEOUT_SECS_MAX),
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = tokio::time::timeout_at(deadline, async {
            match self.stream().await {
                Ok(()) | Err(WatchEnd::ClientGone) => {}
                Err(WatchEnd::Failed(e)) => {
                    if e.code() >= 500 {
                        tracing::warn!(error = %e, resource = self.target.resource.plural, "watch ended on an error");
                    }
                    let _ = self.send("ERROR", e.status()).await;
                }
            }
        })
        .await;
    }

    /// Where the watch's changes start: after the current state's revision, the state sent first as ADDED
    /// events (from the cache, already registered with it, for `resourceVersion=0`; from the store otherwise), or
    /// after the revision the client gave.
    async fn start(&mut self, cache: Option<&Arc<Cache>>) -> Result<(i64, Option<Subscription>), WatchEnd> {
        let rv = self.opts.resource_version.clone().unwrap_or_default();
        if rv == "0" {
            if let Some((listing, subscription)) = cache.and_then(|c| c.snapshot(self.opts.selection(&self.target))) {
                let revision = listing.revision;
                self.send_listing(listing).await?;
                self.initial_events_end(revision).await?;
                return Ok((revision, Some(subscription)));
            }
        }
        if rv.is_empty() || rv == "0" || self.opts.send_initial_events {
            let mut opts = self.opts.clone();
            if !rv.is_empty() && rv != "0" {
                opts.resource_version_match = None;
            }
            let revision = start_revision(&self.objects, &opts).await?;
            self.send_initial(revision).await?;
            self.initial_events_end(revision).await?;
            return Ok((revision, None));
        }
        match rv.parse::<i64>() {
            Ok(r) if r >= 0 => Ok((r, None)),
            _ => Err(ApiError::BadRequest(format!("invalid resource version {rv:?}")).into()),
        }
    }

    /// The bookmark that ends the initial events, for a client that asked for both.
    async fn initial_events_end(&mut self, revision: i64) -> Result<(), WatchEnd> {
        if self.opts.send_initial_events && self.opts.allow_bookmarks {
            let b = self.bookmark(revision, true);
            self.send("BOOKMARK", b).await?;
        }
        Ok(())
    }

    /// Sends a cache's objects as ADDED events.
    async fn send_listing(&mut self, listing: Listing) -> Result<(), WatchEnd> {
        let mut chunk = Chunk::default();
        for object in &listing.objects {
            let Some(json) = object.json(object.revision) else { continue };
            let line = self.cached_line(EventType::Added, &json)?;
            self.push_line(&mut chunk, &line).await?;
        }
        self.flush(&mut chunk).await
    }

    /// An event of the cache as a line of the stream: its shared JSON spliced in, or, for a Table, decoded.
    fn cached_line(&mut self, kind: EventType, json: &[u8]) -> Result<Vec<u8>, ApiError> {
        match self.format {
            WatchFormat::Objects => Ok(event_line(kind.as_str(), json)),
            WatchFormat::Table(_) => {
                let object = serde_json::from_slice(json)
                    .map_err(|e| ApiError::Internal(format!("decoding a cached object: {e}")))?;
                self.line(kind.as_str(), object)
            }
        }
    }

    /// Sends what the cache recorded for this watch, in as few chunks as the queue's budget allows.
    async fn send_cached(&mut self, events: &[(Arc<CachedEvent>, EventType)]) -> Result<(), WatchEnd> {
        let mut chunk = Chunk::default();
        for (event, kind) in events {
            let Some(json) = event.json() else { continue };
            let line = self.cached_line(*kind, json)?;
            self.push_line(&mut chunk, &line).await?;
        }
        self.flush(&mut chunk).await
    }

    async fn stream(&mut self) -> Result<(), WatchEnd> {
        let cache = self.caches.cache(self.target.resource);
        let synced = cache.wait_synced().await;
        let mut bookmarks = tokio::time::interval(Duration::from_millis(limits::API_WATCH_BOOKMARK_INTERVAL_MS));
        bookmarks.tick().await;
        let (mut after, mut subscription) = self.start(synced.then_some(&cache)).await?;
        loop {
            let subscription = match subscription.take() {
                Some(s) => Some(s),
                None => cache.subscribe(after + 1, self.opts.selection(&self.target)),
            };
            after = match subscription {
                Some(subscription) => self.stream_cached(subscription, &mut bookmarks).await?,
                None => self.stream_store(after, &cache, &mut bookmarks).await?,
            };
        }
    }

    /// Streams what the cache records for this watch until the cache loses it; returns the revision the watch
    /// has seen everything through.
    async fn stream_cached(
        &mut self,
        subscription: Subscription,
        bookmarks: &mut tokio::time::Interval,
    ) -> Result<i64, WatchEnd> {
        loop {
            let mut bookmark = false;
            tokio::select! {
                () = subscription.changed() => {}
                _ = bookmarks.tick(), if self.opts.allow_bookmarks => bookmark = true,
                () = self.tx.closed() => return Err(WatchEnd::ClientGone),
            }
            match subscription.take() {
                Taken::Lost { from } => return Ok(from - 1),
                Taken::Events { events, through } => {
                    self.send_cached(&events).await?;
                    if bookmark {
                        let b = self.bookmark(through, false);
                        self.send("BOOKMARK", b).await?;
                    }
                }
            }
        }
    }

    /// Streams from the store's history, after `after`, until the watch has caught up with the store and the
    /// cache can take it on (checked after each batch sent or bookmark, so that each try follows progress);
    /// returns the revision the watch has seen everything through.
    async fn stream_store(
        &mut self,
        after: i64,
        cache: &Cache,
        bookmarks: &mut tokio::time::Interval,
    ) -> Result<i64, WatchEnd> {
        let prefix = self.target.resource.prefix(self.target.namespace.as_deref());
        let filter = WatchFilter {
            range: KeyRange { key: prefix.as_bytes().to_vec(), end: prefix_end(&prefix) },
            prev_kv: true,
            no_put: false,
            no_delete: false,
        };
        let mut watcher = self.caches.store_watch(filter, after + 1);
        loop {
            tokio::select! {
                batch = watcher.next_batch() => self.send_changes(batch?).await?,
                _ = bookmarks.tick(), if self.opts.allow_bookmarks => {
                    let b = self.bookmark(watcher.next_revision() - 1, false);
                    self.send("BOOKMARK", b).await?;
                }
                () = self.tx.closed() => return Err(WatchEnd::ClientGone),
            }
            if !watcher.is_behind() && cache.covers(watcher.next_revision()) {
                return Ok(watcher.next_revision() - 1);
            }
        }
    }
}

/// The message of the 410 Expired a watch ends with when its initial events are asked at a revision the
/// history no longer holds (the same words as `WatchError::Compacted`'s).
fn too_old(requested: i64, compact: i64) -> String {
    format!("too old resource version: {requested} ({compact})")
}

/// Starts a watch; its events arrive on the returned stream, one JSON line each, until the timeout, an error
/// (sent as an ERROR event: 410 Expired after a compaction, 500 for a storage fault), or the client going away
/// (dropping the stream ends the watch).
pub fn watch(
    caches: Arc<WatchCaches>,
    target: Target,
    opts: ListOptions,
    format: WatchFormat,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel(limits::API_WATCH_QUEUE_MAX);
    let budget = Arc::new(Semaphore::new(limits::API_WATCH_QUEUE_BYTES_MAX));
    let objects = caches.objects().clone();
    let session =
        WatchSession { caches, objects, target, opts, format, tx, budget: budget.clone(), columns_sent: false };
    tokio::spawn(session.run());
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), move |event| {
        budget.add_permits(budget_share(event.len()) as usize);
        Ok(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_holds_its_size_of_the_queue_budget_and_a_large_one_all_of_it() {
        assert_eq!(budget_share(0), 1);
        assert_eq!(budget_share(100), 100);
        assert_eq!(budget_share(limits::API_WATCH_QUEUE_BYTES_MAX * 3) as usize, limits::API_WATCH_QUEUE_BYTES_MAX);
    }

    #[test]
    fn a_chunk_gathers_lines_up_to_the_queue_budget_and_a_large_line_goes_alone() {
        let mut chunk = Chunk::default();
        let line = vec![b'x'; limits::API_WATCH_QUEUE_BYTES_MAX / 3];
        for _ in 0..3 {
            assert_eq!(chunk.push(&line), None);
        }
        let full = chunk.push(b"y\n").expect("a fourth line overflows the budget");
        assert_eq!(full.len(), 3 * line.len());
        let large = vec![b'z'; limits::API_WATCH_QUEUE_BYTES_MAX * 2];
        assert_eq!(chunk.push(&large), Some(b"y\n".to_vec()));
        assert_eq!(chunk.take(), Some(large));
        assert_eq!(chunk.take(), None);
    }

    #[test]
    fn spliced_changes_match_decoded_ones() {
        let kv = |value: &str, revision: i64| KeyValue {
            key: b"/registry/pods/default/p".to_vec(),
            value: value.as_bytes().to_vec(),
            mod_revision: revision,
            ..KeyValue::default()
        };
        let (old, new) = (
            kv(r#"{"metadata":{"name":"p"},"spec":{"a":1}}"#, 5),
            kv(r#"{"metadata":{"name":"p"},"spec":{"a":2}}"#, 6),
        );
        let event = |line: Vec<u8>| serde_json::from_slice::<Value>(&line).expect("an event line");
        let added = event(WatchSession::spliced_change_line(EventKind::Put, &old, None).expect("added"));
        assert_eq!(added, json!({"type": "ADDED", "object": decode_kv(&old).expect("decodes")}));
        let modified = event(WatchSession::spliced_change_line(EventKind::Put, &new, Some(&old)).expect("modified"));
        assert_eq!(modified, json!({"type": "MODIFIED", "object": decode_kv(&new).expect("decodes")}));
        let gone = kv("", 7);
        let deleted = event(WatchSession::spliced_change_line(EventKind::Delete, &gone, Some(&new)).expect("deleted"));
        let mut object = decode_kv(&new).expect("decodes");
        object["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(deleted, json!({"type": "DELETED", "object": object}));
        assert_eq!(WatchSession::spliced_change_line(EventKind::Put, &kv("[1]", 8), None), None);
    }

    #[test]
    fn initial_pages_shrink_to_what_the_queue_holds() {
        let raw = |size: usize| Raw { key: "k".into(), value: vec![b' '; size], revision: 1 };
        assert_eq!(initial_chunk(&[]), limits::API_WATCH_INITIAL_CHUNK_MAX);
        assert_eq!(initial_chunk(&[raw(10)]), limits::API_WATCH_INITIAL_CHUNK_MAX);
        assert_eq!(
            initial_chunk(&[raw(limits::API_WATCH_QUEUE_BYTES_MAX / 4), raw(limits::API_WATCH_QUEUE_BYTES_MAX / 4)]),
            4
        );
        assert_eq!(initial_chunk(&[raw(limits::API_WATCH_QUEUE_BYTES_MAX * 8)]), 1);
    }

    #[test]
    fn skipped_keys_are_named_up_to_a_bound() {
        let keys: Vec<String> = (0..limits::API_SKIPPED_WARNINGS_MAX + 3).map(|i| format!("/registry/x/{i}")).collect();
        let warnings = skipped_warnings(&keys);
        assert_eq!(warnings.len(), limits::API_SKIPPED_WARNINGS_MAX + 1);
        assert!(warnings[0].contains("/registry/x/0"));
        assert!(warnings.last().unwrap().starts_with("skipped 3 more"));
    }

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let t = encode_continue(42, b"/registry/pods/default/web-1\0");
        assert_eq!(decode_continue(&t).unwrap(), (42, b"/registry/pods/default/web-1\0".to_vec()));
        assert!(decode_continue("nope").is_err());
        assert!(decode_continue("1-abc").is_err());
        assert!(decode_continue("x-00").is_err());
    }
}
