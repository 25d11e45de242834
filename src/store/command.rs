//! The commands replicated through the Raft log and the results their application produces.
//!
//! These are raftsman's own types: the etcd protobuf messages are translated to and from them at the gRPC
//! edge. Architecture invariant: a command carries everything its application needs (lease ids are chosen
//! before proposing), so that applying it reads no clock, random source or environment.
//!
//! Architecture invariant: every command is checked by `Command::check` before it is proposed, whoever asks
//! (a client of the etcd or Kubernetes API, or a follower forwarding one): the same limits hold for all, and
//! the state machine and the lessor can rely on them. Nested transactions are bounded while they are decoded
//! (`TxnOp`'s `Deserialize`), before anything recurses over them.

use std::cell::Cell;
use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits;

/// One key's value at one revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key; a delete carries the key and the deleting revision in `kv`, as etcd does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// A key range as etcd defines it: an empty `end` means the single key, `[0]` means every key from `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            return k == self.key.as_slice();
        }
        k >= self.key.as_slice() && (self.end.as_slice() == [0] || k < self.end.as_slice())
    }

    pub fn is_single_key(&self) -> bool {
        self.end.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOp {
    pub range: KeyRange,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOp {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOp {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub range: KeyRange,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeOp),
    Put(PutOp),
    Delete(DeleteOp),
    Txn(TxnOp),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnOp {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// `TxnOp`'s fields as they are encoded; decoding goes through it so that `TxnOp` can bound its nesting.
#[derive(Deserialize)]
#[serde(rename = "TxnOp")]
struct TxnFields {
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
}

thread_local! {
    /// How many transactions the decoder of this thread is inside.
    static TXN_DECODE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One level of transaction nesting while decoding; the level is left when the guard drops.
struct TxnNesting;

impl TxnNesting {
    fn enter() -> Result<TxnNesting, String> {
        let depth = TXN_DECODE_DEPTH.with(|d| d.get());
        if depth > limits::TXN_DEPTH_MAX {
            return Err(format!("transactions nested deeper than {}", limits::TXN_DEPTH_MAX));
        }
        TXN_DECODE_DEPTH.with(|d| d.set(depth + 1));
        Ok(TxnNesting)
    }
}

impl Drop for TxnNesting {
    fn drop(&mut self) {
        TXN_DECODE_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

impl<'de> Deserialize<'de> for TxnOp {
    /// Refuses a transaction nested deeper than `TXN_DEPTH_MAX` before decoding its contents, so that bytes
    /// from the network cannot make the decoder (or anything after it) recurse without bound.
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<TxnOp, D::Error> {
        let _level = TxnNesting::enter().map_err(serde::de::Error::custom)?;
        let TxnFields { compare, success, failure } = TxnFields::deserialize(decoder)?;
        Ok(TxnOp { compare, success, failure })
    }
}

/// What a replica proposes to the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutOp),
    Delete(DeleteOp),
    Txn(TxnOp),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// Revocation of leases the leader of `term` found expired; unknown ids are skipped, not errors. The
    /// state machine ignores it when it was committed in another term (fencing).
    LeaseExpire {
        term: u64,
        ids: Vec<i64>,
    },
    /// A transaction by leader-only work (the controllers) of `term`. The state machine refuses it, changing
    /// nothing, when it was committed in another term (fencing): a deposed leader's controllers cannot write.
    FencedTxn {
        term: u64,
        txn: TxnOp,
    },
    /// A member announcing the addresses its clients use (etcd's member attributes): its etcd API and its
    /// Kubernetes API.
    PublishMember {
        id: u64,
        name: String,
        client_addr: String,
        api_addr: String,
    },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put(p) => write!(f, "put({} bytes key)", p.key.len()),
            Command::Delete(_) => write!(f, "delete"),
            Command::Txn(t) => write!(f, "txn({} compares)", t.compare.len()),
            Command::Compact { revision } => write!(f, "compact({revision})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease-grant({id:x}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease-revoke({id:x})"),
            Command::LeaseExpire { term, ids } => {
                write!(f, "lease-expire(term {term}, {} leases)", ids.len())
            }
            Command::PublishMember { name, .. } => write!(f, "publish-member({name})"),
            Command::FencedTxn { term, txn } => write!(f, "fenced-txn(term {term}, {} compares)", txn.compare.len()),
        }
    }
}

/// Why a command is refused before it is proposed; the message is the one etcd gives.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

fn check_key(key: &[u8]) -> Result<(), Invalid> {
    if key.is_empty() {
        return invalid("etcdserver: key is not provided");
    }
    if key.len() > limits::KEY_BYTES_MAX {
        return invalid(format!(
            "etcdserver: key is too large ({} bytes, the limit is {})",
            key.len(),
            limits::KEY_BYTES_MAX
        ));
    }
    Ok(())
}

impl RangeOp {
    /// Checks a read's key range (reads are served locally, never proposed).
    pub fn check(&self) -> Result<(), Invalid> {
        check_range(&self.range)
    }
}

fn check_range(range: &KeyRange) -> Result<(), Invalid> {
    check_key(&range.key)?;
    if range.end.len() > limits::KEY_BYTES_MAX {
        return invalid("etcdserver: range end is too large");
    }
    Ok(())
}

fn check_put(p: &PutOp) -> Result<(), Invalid> {
    check_key(&p.key)?;
    if p.value.len() > limits::VALUE_BYTES_MAX {
        return invalid(format!(
            "etcdserver: request is too large (value of {} bytes, the limit is {})",
            p.value.len(),
            limits::VALUE_BYTES_MAX
        ));
    }
    if p.ignore_value && !p.value.is_empty() {
        return invalid("etcdserver: value is provided");
    }
    if p.ignore_lease && p.lease != 0 {
        return invalid("etcdserver: lease is provided");
    }
    if p.lease < 0 {
        return invalid("etcdserver: requested lease not found");
    }
    Ok(())
}

/// Checks a transaction's size, depth and contents, and that no key is written twice.
fn check_txn(t: &TxnOp) -> Result<(), Invalid> {
    check_txn_limits(t, 0, &mut 0)?;
    for branch in [&t.success, &t.failure] {
        writes_of(branch)?;
    }
    Ok(())
}

fn check_txn_limits(t: &TxnOp, depth: usize, ops: &mut usize) -> Result<(), Invalid> {
    if depth > limits::TXN_DEPTH_MAX {
        return invalid("etcdserver: too deeply nested txn request");
    }
    *ops += t.compare.len() + t.success.len() + t.failure.len();
    if *ops > limits::TXN_OPS_MAX {
        return invalid("etcdserver: too many operations in txn request");
    }
    for c in &t.compare {
        check_range(&c.range)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match op {
            RequestOp::Range(r) => check_range(&r.range)?,
            RequestOp::Put(p) => check_put(p)?,
            RequestOp::Delete(d) => check_range(&d.range)?,
            RequestOp::Txn(t) => check_txn_limits(t, depth + 1, ops)?,
        }
    }
    Ok(())
}

/// What one branch of a transaction may write, nested transactions included.
struct Writes<'a> {
    puts: HashSet<&'a [u8]>,
    deletes: Vec<&'a KeyRange>,
}

/// The writes of `reqs`, refusing a key that two of them could both write, with etcd's rules: a put may not
/// repeat another put or fall in a deleted range, at this level or in a nested transaction; the two branches
/// of one nested transaction exclude each other, so they may put the same key. (As in etcd, a nested delete
/// is checked against the puts of the requests after it, not before.)
fn writes_of(reqs: &[RequestOp]) -> Result<Writes<'_>, Invalid> {
    let duplicate = || invalid("etcdserver: duplicate key given in txn request");
    let mut writes = Writes {
        puts: HashSet::new(),
        deletes: reqs
            .iter()
            .filter_map(|r| match r {
                RequestOp::Delete(d) => Some(&d.range),
                _ => None,
            })
            .collect(),
    };
    let deleted = |deletes: &[&KeyRange], key: &[u8]| deletes.iter().any(|d| d.contains(key));
    for r in reqs {
        let RequestOp::Txn(t) = r else { continue };
        let then = writes_of(&t.success)?;
        let otherwise = writes_of(&t.failure)?;
        for &key in &then.puts {
            if writes.puts.contains(key) || deleted(&writes.deletes, key) {
                return duplicate();
            }
            writes.puts.insert(key);
        }
        for &key in &otherwise.puts {
            if (writes.puts.contains(key) && !then.puts.contains(key)) || deleted(&writes.deletes, key) {
                return duplicate();
            }
            writes.puts.insert(key);
        }
        writes.deletes.extend(then.deletes);
        writes.deletes.extend(otherwise.deletes);
    }
    for r in reqs {
        let RequestOp::Put(p) = r else { continue };
        if !writes.puts.insert(&p.key) || deleted(&writes.deletes, &p.key) {
            return duplicate();
        }
    }
    Ok(writes)
}

impl Command {
    /// Checks the limits and the shape every proposed command keeps, whoever sends it. The encoded size is
    /// checked separately (`Store::propose`), once the command is encoded anyway.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Command::Put(p) => check_put(p),
            Command::Delete(d) => check_range(&d.range),
            Command::Txn(t) | Command::FencedTxn { txn: t, .. } => check_txn(t),
            Command::Compact { .. } | Command::LeaseRevoke { .. } => Ok(()),
            Command::LeaseGrant { id, .. } if *id <= 0 => invalid("etcdserver: lease id must be positive"),
            Command::LeaseGrant { ttl, .. }
                if !(limits::LEASE_TTL_SECS_MIN..=limits::LEASE_TTL_SECS_MAX).contains(ttl) =>
            {
                invalid(format!(
                    "etcdserver: lease ttl must be between {} and {} seconds",
                    limits::LEASE_TTL_SECS_MIN,
                    limits::LEASE_TTL_SECS_MAX
                ))
            }
            Command::LeaseGrant { .. } => Ok(()),
            Command::LeaseExpire { ids, .. } if ids.len() > limits::LEASE_REVOKES_PER_ENTRY_MAX => {
                invalid("too many leases in one expiry")
            }
            Command::LeaseExpire { .. } => Ok(()),
            Command::PublishMember { name, client_addr, api_addr, .. } => {
                if name.is_empty() || name.len() > limits::KEY_BYTES_MAX {
                    return invalid("a member name must be 1 to 1536 bytes");
                }
                if client_addr.parse::<std::net::SocketAddr>().is_err() {
                    return invalid(format!("member client address {client_addr:?} is not host:port"));
                }
                if api_addr.parse::<std::net::SocketAddr>().is_err() {
                    return invalid(format!("member api address {api_addr:?} is not host:port"));
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResult),
    Put { prev_kv: Option<KeyValue> },
    Delete { deleted: i64, prev_kvs: Vec<KeyValue> },
    Txn(TxnResult),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

/// Why a command was refused by the state machine; a refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too many leases")]
    TooManyLeases,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: storage error: {0}")]
    Storage(String),
    /// A fenced transaction committed in a term other than its writer's.
    #[error("the leadership term {0} of this write's writer has ended")]
    Fenced(u64),
}

/// The outcome of one applied command, with the store revision after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub revision: i64,
    pub outcome: Result<Outcome, ApplyError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Response(ResponseOp),
    Compacted,
    LeaseGranted {
        id: i64,
        ttl: i64,
    },
    LeaseRevoked,
    /// A Raft-internal entry (blank or membership) or a lease expiry: nothing for a client.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp::Put(PutOp { key: key.into(), value: b"v".to_vec(), ..PutOp::default() })
    }

    fn delete(key: &str, end: &str) -> RequestOp {
        RequestOp::Delete(DeleteOp { range: KeyRange { key: key.into(), end: end.into() }, prev_kv: false })
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnOp { compare: Vec::new(), success, failure })
    }

    fn checked(success: Vec<RequestOp>) -> Result<(), Invalid> {
        Command::Txn(TxnOp { success, ..TxnOp::default() }).check()
    }

    /// The cases etcd 3.5's `checkIntervals` decides, with its answers.
    #[test]
    fn keys_written_twice_are_found_in_nested_transactions_as_etcd_finds_them() {
        let refused = [
            ("put twice", vec![put("a"), put("a")]),
            ("put in a deleted range", vec![delete("a", "c"), put("b")]),
            ("outer put, nested put", vec![put("a"), nested(vec![put("a")], vec![])]),
            ("outer delete, nested put", vec![delete("a", "c"), nested(vec![put("b")], vec![])]),
            ("nested delete, outer put", vec![nested(vec![delete("a", "c")], vec![]), put("b")]),
            ("two nested puts", vec![nested(vec![put("a")], vec![]), nested(vec![], vec![put("a")])]),
            (
                "nested delete, later nested put",
                vec![nested(vec![delete("a", "")], vec![]), nested(vec![put("a")], vec![])],
            ),
            ("twice inside a branch", vec![nested(vec![nested(vec![put("a")], vec![]), put("a")], vec![])]),
        ];
        for (case, success) in refused {
            let err = checked(success).expect_err(case);
            assert!(err.0.contains("duplicate key"), "{case}: {err}");
        }
        let allowed = [
            ("different keys", vec![put("a"), put("b"), delete("c", "d")]),
            ("the two branches of one txn", vec![nested(vec![put("a")], vec![put("a")])]),
            ("a delete next to a put of another key", vec![delete("a", ""), nested(vec![put("b")], vec![])]),
            // etcd does not look back: a nested delete after a put of its key passes.
            (
                "nested put, later nested delete",
                vec![nested(vec![put("a")], vec![]), nested(vec![delete("a", "")], vec![])],
            ),
        ];
        for (case, success) in allowed {
            assert_eq!(checked(success), Ok(()), "{case}");
        }
        // The outer transaction's two branches never both run either.
        let both = TxnOp { success: vec![put("a")], failure: vec![put("a")], ..TxnOp::default() };
        assert_eq!(Command::Txn(both).check(), Ok(()));
    }
}
