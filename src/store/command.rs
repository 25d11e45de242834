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
fn check_txn(t: &TxnOp, depth: usize, ops: &mut usize) -> Result<(), Invalid> {
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
    for branch in [&t.success, &t.failure] {
        for op in branch.iter() {
            match op {
                RequestOp::Range(r) => check_range(&r.range)?,
                RequestOp::Put(p) => check_put(p)?,
                RequestOp::Delete(d) => check_range(&d.range)?,
                RequestOp::Txn(t) => check_txn(t, depth + 1, ops)?,
            }
        }
        check_no_duplicate_writes(branch)?;
    }
    Ok(())
}

fn check_no_duplicate_writes(reqs: &[RequestOp]) -> Result<(), Invalid> {
    let mut put_keys = HashSet::new();
    let mut deletes = Vec::new();
    collect_writes(reqs, &mut put_keys, &mut deletes)?;
    if deletes.iter().any(|d| put_keys.iter().any(|k| d.contains(k))) {
        return invalid("etcdserver: duplicate key given in txn request");
    }
    Ok(())
}

fn collect_writes<'a>(
    reqs: &'a [RequestOp],
    puts: &mut HashSet<&'a [u8]>,
    deletes: &mut Vec<&'a KeyRange>,
) -> Result<(), Invalid> {
    for r in reqs {
        match r {
            RequestOp::Put(p) if !puts.insert(&p.key) => {
                return invalid("etcdserver: duplicate key given in txn request");
            }
            RequestOp::Delete(d) => deletes.push(&d.range),
            RequestOp::Txn(t) => {
                // Only one branch of a nested txn runs; each branch is checked against the outer writes.
                for branch in [&t.success, &t.failure] {
                    let mut branch_puts = puts.clone();
                    collect_writes(branch, &mut branch_puts, deletes)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Command {
    /// Checks the limits and the shape every proposed command keeps, whoever sends it. The encoded size is
    /// checked separately (`Store::propose`), once the command is encoded anyway.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Command::Put(p) => check_put(p),
            Command::Delete(d) => check_range(&d.range),
            Command::Txn(t) | Command::FencedTxn { txn: t, .. } => check_txn(t, 0, &mut 0),
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
