//! The collection verbs: list (selectors, pagination, resource versions) and watch (a stream of changes from
//! any revision still in the history).
//!
//! A list is read at one revision: the first page at the current one (after a read index, unless the client
//! allows a stale answer with `resourceVersion=0`), later pages at the revision their continue token carries,
//! so pages never mix states. A watch pulls its resource's changes from the store's watch hub from the revision
//! after the one it starts at, so it sees every change exactly once and in order; selectors turn a change that
//! moves an object into or out of the selection into ADDED or DELETED, as the real API server does.
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
use crate::apis::table;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::objects::{decode_object, prefix_end, Consistency, Objects, Raw};
use crate::apiserver::registry::verbs::{meta, Target};
use crate::limits;
use crate::store::command::{EventKind, KeyRange, KeyValue};
use crate::store::watch::{Pull, WatchFilter};

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
        let page = objects.page(&from, &end, revision, chunk)?;
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
pub fn list_table(resource: &Resource, mut listed: Listed, now: i64) -> (Value, Vec<String>) {
    let mut objects = Vec::with_capacity(listed.items.len());
    for raw in &listed.items {
        match raw.decode() {
            Ok(stored) => objects.push(stored.object),
            Err(e) => skip_corrupt(&raw.key, &e, &mut listed.skipped),
        }
    }
    let mut t = table::table(resource, &objects, now, true);
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
    Table,
}

struct WatchSession {
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

/// The 410 a watch ends with when it asked for a revision the history no longer holds.
pub fn expired_status(requested: i64, compact: i64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {requested} ({compact})"), "reason": "Expired", "code": 410})
}

impl WatchSession {
    async fn send(&mut self, kind: &str, object: Value) -> Result<(), ()> {
        let object = match (self.format, kind) {
            (WatchFormat::Table, "ADDED" | "MODIFIED" | "DELETED") => {
                let now = jiff::Timestamp::now().as_second();
                let mut t = table::table(self.target.resource, std::slice::from_ref(&object), now, !self.columns_sent);
                self.columns_sent = true;
                t["metadata"] = json!({"resourceVersion": meta(&object).and_then(|m| m.get("resourceVersion")).cloned().unwrap_or(Value::Null)});
                t
            }
            _ => object,
        };
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).map_err(|_| ())?;
        line.push(b'\n');
        self.send_line(line).await
    }

    /// Sends an event whose object is already encoded.
    async fn send_encoded(&mut self, kind: &str, object: &[u8]) -> Result<(), ()> {
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(b"{\"type\":");
        line.extend_from_slice(&serde_json::to_vec(kind).map_err(|_| ())?);
        line.extend_from_slice(b",\"object\":");
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        self.send_line(line).await
    }

    /// Queues one encoded event once the queue's byte budget has room for it.
    async fn send_line(&mut self, line: Vec<u8>) -> Result<(), ()> {
        let permit = tokio::select! {
            permit = self.budget.acquire_many(budget_share(line.len())) => permit.map_err(|_| ())?,
            () = self.tx.closed() => return Err(()),
        };
        // Given back by the stream when the client takes the event.
        permit.forget();
        self.tx.send(Bytes::from(line)).await.map_err(|_| ())
    }

    /// Sends every selected object at `revision` as ADDED, reading a few objects at a time so that the list
    /// is never held whole; ends the stream with an ERROR event if the revision cannot be read any more.
    async fn send_initial(&mut self, revision: i64) -> Result<(), ()> {
        let resource = self.target.resource;
        let prefix = resource.prefix(self.target.namespace.as_deref());
        let end = prefix_end(&prefix);
        let mut from = prefix.into_bytes();
        let spliced = self.format == WatchFormat::Objects && self.opts.selects_everything();
        let mut chunk = limits::API_WATCH_INITIAL_CHUNK_MAX;
        loop {
            let page = match self.objects.page(&from, &end, revision, chunk) {
                Ok(page) => page,
                Err(e) => {
                    let status = match e {
                        ApiError::Gone(_) => expired_status(revision, revision),
                        other => other.status(),
                    };
                    let _ = self.send("ERROR", status).await;
                    return Err(());
                }
            };
            let more = page.more && !page.items.is_empty();
            chunk = initial_chunk(&page.items);
            for raw in page.items {
                from = raw.key.clone().into_bytes();
                from.push(0);
                if spliced {
                    match raw.json() {
                        Ok(json) => self.send_encoded("ADDED", &json).await?,
                        Err(e) => skip_corrupt(&raw.key, &e, &mut Vec::new()),
                    }
                    continue;
                }
                match raw.decode() {
                    Ok(stored) if self.opts.selects(resource, &stored.object) => {
                        self.send("ADDED", stored.object).await?
                    }
                    Ok(_) => {}
                    Err(e) => skip_corrupt(&raw.key, &e, &mut Vec::new()),
                }
            }
            if !more {
                return Ok(());
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

    /// Sends one change, translated by the selection before and after it; returns false when it was skipped.
    async fn send_change(&mut self, kind: EventKind, kv: &KeyValue, prev: Option<&KeyValue>) -> Result<(), ()> {
        let resource = self.target.resource;
        let old = prev.and_then(decode_kv).filter(|o| self.opts.selects(resource, o));
        match kind {
            EventKind::Put => {
                let Some(new) = decode_kv(kv) else { return Ok(()) };
                match (old.is_some(), self.opts.selects(resource, &new)) {
                    (false, true) => self.send("ADDED", new).await,
                    (true, true) => self.send("MODIFIED", new).await,
                    (true, false) => self.send("DELETED", new).await,
                    (false, false) => Ok(()),
                }
            }
            EventKind::Delete => match old {
                Some(mut obj) => {
                    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    }
                    self.send("DELETED", obj).await
                }
                None => Ok(()),
            },
        }
    }

    async fn run(mut self) {
        let timeout = Duration::from_secs(
            self.opts
                .timeout_seconds
                .unwrap_or(limits::API_WATCH_TIMEOUT_SECS_MAX)
                .min(limits::API_WATCH_TIMEOUT_SECS_MAX),
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = tokio::time::timeout_at(deadline, self.stream()).await;
    }

    async fn stream(&mut self) -> Result<(), ()> {
        let store = self.objects.store().clone();
        let resource = self.target.resource;
        let rv = self.opts.resource_version.clone().unwrap_or_default();
        let mut next = if rv.is_empty() || rv == "0" || self.opts.send_initial_events {
            // Start from the current state: every selected object as ADDED, then the changes after it.
            let mut opts = self.opts.clone();
            if !rv.is_empty() && rv != "0" {
                opts.resource_version_match = None;
            }
            let revision = match start_revision(&self.objects, &opts).await {
                Ok(revision) => revision,
                Err(e) => return self.send("ERROR", e.status()).await,
            };
            self.send_initial(revision).await?;
            if self.opts.send_initial_events && self.opts.allow_bookmarks {
                let b = self.bookmark(revision, true);
                self.send("BOOKMARK", b).await?;
            }
            revision + 1
        } else {
            match rv.parse::<i64>() {
                Ok(r) if r >= 0 => r + 1,
                _ => {
                    let status = ApiError::BadRequest(format!("invalid resource version {rv:?}")).status();
                    return self.send("ERROR", status).await;
                }
            }
        };
        let prefix = resource.prefix(self.target.namespace.as_deref());
        let filter = WatchFilter {
            range: KeyRange { key: prefix.as_bytes().to_vec(), end: prefix_end(&prefix) },
            prev_kv: true,
            no_put: false,
            no_delete: false,
        };
        let mut revisions = store.sm.hub.subscribe();
        let mut bookmarks = tokio::time::interval(Duration::from_millis(limits::API_WATCH_BOOKMARK_INTERVAL_MS));
        bookmarks.tick().await;
        loop {
            let current = store.sm.hub.current_revision();
            if next <= current {
                match store.sm.pull(next, &filter) {
                    Ok(Pull::Events { events, next: after }) => {
                        for e in &events {
                            self.send_change(e.kind, &e.kv, e.prev_kv.as_ref()).await?;
                        }
                        next = after;
                        continue;
                    }
                    Ok(Pull::Compacted { compact_revision }) => {
                        return self.send("ERROR", expired_status(next - 1, compact_revision)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch history read failed");
                        return self.send("ERROR", ApiError::Internal(e.to_string()).status()).await;
                    }
                }
            }
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return Err(()) },
                _ = bookmarks.tick(), if self.opts.allow_bookmarks => {
                    let b = self.bookmark(next - 1, false);
                    self.send("BOOKMARK", b).await?;
                }
                () = self.tx.closed() => return Err(()),
            }
        }
    }
}

/// Starts a watch; its events arrive on the returned stream, one JSON line each, until the timeout, a
/// compaction past its position, or the client going away (dropping the stream ends the watch).
pub fn watch(
    objects: Objects,
    target: Target,
    opts: ListOptions,
    format: WatchFormat,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel(limits::API_WATCH_QUEUE_MAX);
    let budget = Arc::new(Semaphore::new(limits::API_WATCH_QUEUE_BYTES_MAX));
    let session = WatchSession { objects, target, opts, format, tx, budget: budget.clone(), columns_sent: false };
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
