//! Kubernetes objects in the replicated store: encoding, keys' reads, and the compare-and-swap writes every
//! API verb is built from.
//!
//! An object is stored as its JSON without `metadata.resourceVersion`; the version is the key's mod revision,
//! set on every read. Every write is one transaction that compares what the caller read (the key's mod
//! revision, or its absence, plus any guard such as the namespace's revision) and writes only if nothing
//! changed, so concurrent writers through any replica never overwrite each other. An object stored with a time
//! to live (an Event) is put with a lease in that same transaction (`ttl`).
//!
//! Values of encrypted resources (`security::encryption`) are sealed here before they are written and opened
//! here as they are read (`get`, `page`, a refused write's current state, and the events the watches pull
//! through `open_events`): no other code of the API sees a sealed value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::ttl::TtlLeases;
use crate::limits;
use crate::security::encryption::Encryption;
use crate::store::command::{
    ApplyError, Command, Compare, CompareResult, CompareTarget, DeleteOp, Event, KeyRange, KeyValue, Outcome, PutOp,
    RangeOp, RequestOp, ResponseOp, TxnOp,
};
use crate::store::Store;

/// An object as read, with its resource version (the key's mod revision).
#[derive(Clone, Debug)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub revision: i64,
    /// Stored otherwise than a write would store it now (sealed with a key that is no longer the first, or
    /// sealed or not against what the encryption configuration now says): an update that changes nothing is
    /// still written, so that rewriting objects re-encrypts them.
    pub stale: bool,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (a read index through the leader).
    Linearizable,
    /// This replica's state, possibly behind the leader (`resourceVersion=0`).
    Local,
}

/// A condition a write also depends on: `key` still has mod revision `revision` (0: still absent); with
/// `replace`, the key is rewritten to that object in the same transaction (a quota charged for the write).
#[derive(Clone, Debug)]
pub struct Guard {
    pub key: String,
    pub revision: i64,
    pub replace: Option<Value>,
}

/// Keys written or removed in the same transaction as an object: allocations it takes (each must be absent;
/// its value names the holder) and allocations it gives up.
#[derive(Clone, Debug, Default)]
pub struct Allocations {
    pub claim: BTreeSet<String>,
    pub release: BTreeSet<String>,
}

impl Allocations {
    fn writes(&self, holder: &str) -> Vec<RequestOp> {
        let claims = self.claim.iter().map(|k| {
            RequestOp::Put(PutOp { key: k.as_bytes().to_vec(), value: holder.as_bytes().to_vec(), ..PutOp::default() })
        });
        let releases = self.release.iter().map(|k| RequestOp::Delete(DeleteOp { range: single(k), prev_kv: false }));
        claims.chain(releases).collect()
    }
}

/// Why a compare-and-swap did not write: the current state of every key it compared.
#[derive(Debug)]
pub struct Refused {
    pub current: Vec<Option<Stored>>,
}

/// What a compare-and-swap transaction did.
enum Swapped {
    Written(i64),
    Refused(Refused),
    /// Every compare held, but a lease a put named does not exist (any more): nothing was written.
    LeaseNotFound,
}

impl Swapped {
    fn into_result(self, key: &str) -> Result<Result<i64, Refused>, ApiError> {
        match self {
            Swapped::Written(revision) => Ok(Ok(revision)),
            Swapped::Refused(refused) => Ok(Err(refused)),
            Swapped::LeaseNotFound => Err(ApiError::Internal(format!("the write of {key} named a lease that is gone"))),
        }
    }
}

/// An object as read, still encoded: lists pass most objects through without decoding them.
#[derive(Clone, Debug)]
pub struct Raw {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: i64,
}

impl Raw {
    pub fn decode(&self) -> Result<Stored, ApiError> {
        let object = decode_object(&self.key, &self.value, self.revision)?;
        Ok(Stored { key: self.key.clone(), object, revision: self.revision, stale: false })
    }

    /// The object's JSON with its resourceVersion set, spliced into `metadata` without decoding the rest.
    pub fn json(&self) -> Result<Vec<u8>, ApiError> {
        object_json(&self.key, &self.value, self.revision)
    }
}

/// A stored object's JSON with its resourceVersion (`revision`) spliced into `metadata` without decoding the
/// rest; the same object as `decode_object`'s, and an error exactly when that fails.
pub fn object_json(key: &str, value: &[u8], revision: i64) -> Result<Vec<u8>, ApiError> {
    use serde_json::value::RawValue;
    let Ok(top) = serde_json::from_slice::<BTreeMap<&str, &RawValue>>(value) else {
        let object = decode_object(key, value, revision)?;
        return serde_json::to_vec(&object).map_err(|e| ApiError::Internal(e.to_string()));
    };
    let mut out = Vec::with_capacity(value.len() + 32);
    out.push(b'{');
    for (i, (k, v)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serde_json::to_vec(k).map_err(|e| ApiError::Internal(e.to_string()))?);
        out.push(b':');
        let text = v.get();
        match (*k, text.strip_prefix('{')) {
            ("metadata", Some(inner)) => {
                out.extend_from_slice(format!("{{\"resourceVersion\":\"{revision}\"").as_bytes());
                if !inner.trim_start().starts_with('}') {
                    out.push(b',');
                }
                out.extend_from_slice(inner.as_bytes());
            }
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }
    out.push(b'}');
    Ok(out)
}

/// One page of a range read.
pub struct Page {
    pub revision: i64,
    pub items: Vec<Raw>,
    pub more: bool,
}

#[derive(Clone)]
pub struct Objects {
    store: Store,
    /// The leadership term writes are fenced to (the leader's controllers), if any.
    fence: Option<u64>,
    /// The leases of writes with a time to live, shared by every copy (fenced or not).
    leases: Arc<TtlLeases>,
    /// What is encrypted at rest, and the keys.
    encryption: Arc<Encryption>,
}

/// A stored object's JSON decoded, with its resourceVersion (the key's mod revision) set.
pub fn decode_object(key: &str, value: &[u8], revision: i64) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("stored object {key} is not valid JSON: {e}")))?;
    if !object.is_object() {
        return Err(ApiError::Internal(format!("stored object {key} is not a JSON object")));
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Ok(object)
}

fn encode(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Refuses a value over the store's limit (as it would be stored, sealed or not).
fn within_limit(bytes: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if bytes.len() > limits::VALUE_BYTES_MAX {
        return Err(ApiError::RequestEntityTooLarge(format!(
            "the object is {} bytes once encoded; the limit is {} bytes",
            bytes.len(),
            limits::VALUE_BYTES_MAX
        )));
    }
    Ok(bytes)
}

fn single(key: &str) -> KeyRange {
    KeyRange { key: key.as_bytes().to_vec(), end: Vec::new() }
}

fn mod_is(key: &str, revision: i64) -> Compare {
    Compare { range: single(key), result: CompareResult::Equal, target: CompareTarget::Mod(revision) }
}

/// The first key after every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Objects {
    /// The objects in `store`; those written with a time to live (`put`'s `expires`) live `ttl` after their last
    /// write (Events: `--event-ttl`).
    pub fn new(store: Store, ttl: Duration) -> Objects {
        let encryption = Arc::new(Encryption::none());
        Objects { store, fence: None, leases: Arc::new(TtlLeases::new(ttl)), encryption }
    }

    /// These objects, with the resources `encryption` names encrypted at rest.
    pub fn encrypted(self, encryption: Arc<Encryption>) -> Objects {
        Objects { encryption, ..self }
    }

    /// These objects, with every write fenced to `term`: the state machine refuses a write committed in another
    /// term, so the work of a leader that has been deposed cannot change anything.
    pub fn fenced(&self, term: u64) -> Objects {
        Objects { fence: Some(term), ..self.clone() }
    }

    fn decode(&self, kv: KeyValue) -> Result<Stored, ApiError> {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let stale = self.encryption.is_stale(&key, &kv.value);
        let value = self.encryption.open(&key, kv.value).map_err(|e| ApiError::Internal(e.to_string()))?;
        let object = decode_object(&key, &value, kv.mod_revision)?;
        Ok(Stored { key, object, revision: kv.mod_revision, stale })
    }

    /// `object` as it is stored under `key`: encoded, sealed if its resource is encrypted, within the limit.
    fn stored_value(&self, key: &str, object: &Value) -> Result<Vec<u8>, ApiError> {
        within_limit(self.encryption.seal(key, encode(object)?))
    }

    /// A read value, opened; one that does not open is logged and read as empty, so that lists and watches
    /// skip it as they skip any value that does not decode.
    fn opened(&self, key: &[u8], value: Vec<u8>) -> Vec<u8> {
        let key = String::from_utf8_lossy(key);
        self.encryption.open(&key, value).unwrap_or_else(|e| {
            tracing::error!(%key, error = %e, "a stored value cannot be decrypted");
            Vec::new()
        })
    }

    /// Store events with their values (and previous values) opened, for the watches.
    pub fn open_events(&self, mut events: Vec<Event>) -> Vec<Event> {
        for event in &mut events {
            for kv in std::iter::once(&mut event.kv).chain(event.prev_kv.as_mut()) {
                if !kv.value.is_empty() {
                    kv.value = self.opened(&kv.key, std::mem::take(&mut kv.value));
                }
            }
        }
        events
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn sync(&self, consistency: Consistency) -> Result<(), ApiError> {
        if consistency == Consistency::Linearizable {
            self.store.read_index().await?;
        }
        Ok(())
    }

    /// This replica's current revision (after `sync`, at least every acknowledged write's).
    pub async fn revision(&self, consistency: Consistency) -> Result<i64, ApiError> {
        self.sync(consistency).await?;
        Ok(self.store.revision())
    }

    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Stored>, ApiError> {
        self.sync(consistency).await?;
        let op = RangeOp { range: single(key), ..RangeOp::default() };
        let (_, result) = self.store.range(&op).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        result.kvs.into_iter().next().map(|kv| self.decode(kv)).transpose()
    }

    /// Up to `limit` objects with keys in `[from, end)` at `revision` (0: the current one), from the local
    /// state machine; the caller syncs first when it needs a linearizable list.
    pub async fn page(&self, from: &[u8], end: &[u8], revision: i64, limit: usize) -> Result<Page, ApiError> {
        let op = RangeOp {
            range: KeyRange { key: from.to_vec(), end: end.to_vec() },
            limit: limit as i64,
            revision,
            ..RangeOp::default()
        };
        let (current, result) = self.store.range(&op).await.map_err(|e| match e {
            ApplyError::Compacted => ApiError::Gone(format!(
                "The provided continue parameter is too old to display a consistent list result. You can \
                 start a new list without the continue parameter, or use the continue token in this response \
                 to retrieve the remainder of the results. Continuing with the provided token results in an \
                 inconsistent list - objects that were created, modified, or deleted between the time the \
                 first chunk was returned and now may show up in the list. (revision {revision} is compacted)"
            )),
            // A version this replica has not reached yet is worth retrying, as upstream answers it.
            ApplyError::FutureRevision => ApiError::Unavailable(format!(
                "Too large resource version: {revision}, current: {}",
                self.store.revision()
            )),
            other => ApiError::Internal(other.to_string()),
        })?;
        let items = result
            .kvs
            .into_iter()
            .map(|kv| Raw {
                value: self.opened(&kv.key, kv.value),
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                revision: kv.mod_revision,
            })
            .collect();
        Ok(Page { revision: if revision > 0 { revision } else { current }, items, more: result.more })
    }

    /// Runs a transaction: if every compare holds, `writes`; otherwise reads back every compared key.
    async fn cas(&self, compares: Vec<Compare>, writes: Vec<RequestOp>) -> Result<Swapped, ApiError> {
        let reads = compares
            .iter()
            .map(|c| RequestOp::Range(RangeOp { range: c.range.clone(), ..RangeOp::default() }))
            .collect();
        let txn = TxnOp { compare: compares, success: writes, failure: reads };
        let command = match self.fence {
            Some(term) => Command::FencedTxn { term, txn },
            None => Command::Txn(txn),
        };
        let applied = self.store.propose(command).await?;
        let revision = applied.revision;
        match applied.outcome {
            Ok(Outcome::Response(ResponseOp::Txn(t))) if t.succeeded => Ok(Swapped::Written(revision)),
            Ok(Outcome::Response(ResponseOp::Txn(t))) => {
                let mut current = Vec::new();
                for r in t.responses {
                    match r {
                        ResponseOp::Range(r) => {
                            current.push(r.kvs.into_iter().next().map(|kv| self.decode(kv)).transpose()?)
                        }
                        other => return Err(ApiError::Internal(format!("unexpected response {other:?}"))),
                    }
                }
                Ok(Swapped::Refused(Refused { current }))
            }
            Ok(other) => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
            Err(ApplyError::Fenced(term)) => {
                tracing::info!(term, revision, "write refused: it was made for a leadership term that has ended");
                Err(ApiError::Fenced(term))
            }
            Err(ApplyError::LeaseNotFound) => Ok(Swapped::LeaseNotFound),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    }

    /// Writes `object` at `key` if the key still has mod revision `expected` (0: absent) and every guard holds;
    /// with `expires`, with a lease of this replica's time to live (a fresh one if the lease it took vanished
    /// before the write committed). The first entry of `Refused::current` is the key's current state.
    pub async fn put(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
        guards: &[Guard],
        allocations: &Allocations,
        expires: bool,
    ) -> Result<Result<i64, Refused>, ApiError> {
        let value = self.stored_value(key, object)?;
        let mut compares = vec![mod_is(key, expected)];
        compares.extend(guards.iter().map(|g| mod_is(&g.key, g.revision)));
        compares.extend(allocations.claim.iter().map(|k| mod_is(k, 0)));
        let put = PutOp { key: key.as_bytes().to_vec(), value, ..PutOp::default() };
        let mut others = Vec::new();
        for guard in guards {
            if let Some(object) = &guard.replace {
                let value = self.stored_value(&guard.key, object)?;
                others.push(RequestOp::Put(PutOp { key: guard.key.as_bytes().to_vec(), value, ..PutOp::default() }));
            }
        }
        others.extend(allocations.writes(key));
        let writes = |lease: i64| {
            let put = RequestOp::Put(PutOp { lease, ..put.clone() });
            std::iter::once(put).chain(others.iter().cloned()).collect::<Vec<_>>()
        };
        if !expires {
            return self.cas(compares, writes(0)).await?.into_result(key);
        }
        for _ in 0..limits::TTL_LEASE_ATTEMPTS_MAX {
            let lease = self.leases.lease(&self.store).await?;
            match self.cas(compares.clone(), writes(lease)).await? {
                Swapped::LeaseNotFound => {
                    tracing::info!(key, lease, "the lease of a write vanished; writing again with a fresh one");
                    self.leases.vanished(lease).await;
                }
                done => return done.into_result(key),
            }
        }
        Err(ApiError::Unavailable(format!(
            "the write of {key} found {} leases gone in a row",
            limits::TTL_LEASE_ATTEMPTS_MAX
        )))
    }

    /// Deletes `key` if it still has mod revision `expected`.
    pub async fn delete(
        &self,
        key: &str,
        expected: i64,
        allocations: &Allocations,
    ) -> Result<Result<i64, Refused>, ApiError> {
        let mut writes = vec![RequestOp::Delete(DeleteOp { range: single(key), prev_kv: false })];
        writes.extend(allocations.writes(key));
        self.cas(vec![mod_is(key, expected)], writes).await?.into_result(key)
    }

    /// The keys under `prefix` in this replica's state (after a read index, so no acknowledged write is missed).
    pub async fn keys(&self, prefix: &str) -> Result<BTreeSet<String>, ApiError> {
        self.sync(Consistency::Linearizable).await?;
        let op = RangeOp {
            range: KeyRange { key: prefix.as_bytes().to_vec(), end: prefix_end(prefix) },
            keys_only: true,
            ..RangeOp::default()
        };
        let (_, result) = self.store.range(&op).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(result.kvs.into_iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(value: &Value) -> Raw {
        Raw { key: "/registry/pods/default/a".into(), value: serde_json::to_vec(value).unwrap(), revision: 42 }
    }

    #[test]
    fn encoded_objects_get_their_resource_version_without_a_decode() {
        let obj =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {}});
        let out: Value = serde_json::from_slice(&raw(&obj).json().unwrap()).unwrap();
        let mut expected = obj.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(out, expected);
        let empty = json!({"kind": "Pod", "metadata": {}});
        let out: Value = serde_json::from_slice(&raw(&empty).json().unwrap()).unwrap();
        assert_eq!(out["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(raw(&obj).decode().unwrap().object, expected);
    }

    #[test]
    fn odd_stored_values_fall_back_to_a_full_decode() {
        let escaped =
            Raw { key: "k".into(), value: br#"{"kind":"Pod","meta\u0064ata":{"name":"a"}}"#.to_vec(), revision: 7 };
        let out: Value = serde_json::from_slice(&escaped.json().unwrap()).unwrap();
        assert_eq!(out["metadata"], json!({"name": "a", "resourceVersion": "7"}));
        let garbage = Raw { key: "k".into(), value: b"not json".to_vec(), revision: 7 };
        assert!(garbage.json().is_err());
        let number = Raw { key: "/registry/configmaps/default/n".into(), value: b"42".to_vec(), revision: 7 };
        let error = number.json().unwrap_err().to_string();
        assert!(error.contains("/registry/configmaps/default/n"), "{error}");
    }
}
