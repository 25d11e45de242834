//! The fuzz targets: one `fn(&[u8])` per decoder that faces the network, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/<name>.rs`) and the short run of the test suite (`tests/fuzz.rs`), which both include
//! this file; nothing here ships in the library.
//!
//! Each target decodes its bytes the way a replica does and then runs the pure code the replica runs next:
//! - `kube_json`: a Kubernetes JSON body, then the admission of a create (defaults, the typed check, managed
//!   fields, validation) and of an update onto itself;
//! - `kube_protobuf`: a Kubernetes protobuf body (`apis::protobuf::decode_object`), then the same admission;
//! - `patch`: an object and a patch (`<type>\0<object JSON>\0<patch JSON>`, type `json`, `merge`,
//!   `strategic` or `apply`), the patch applied as the PATCH verb applies it, then the admission of the update;
//! - `selectors`: `<plural>\n<label selector>\n<field selector>`, parsed as the query parameters are, printed,
//!   and matched against a few objects;
//! - `etcd`: one selector byte naming an etcd request type, then that request's protobuf; translated as
//!   `apiserver::etcd` translates it, checked as `Store::propose` checks it, and what passes encoded and
//!   decoded as a forward to the leader carries it;
//! - `peer`: one selector byte naming a peer payload, then its bincode; decoded and put through the checks
//!   the peer server runs before openraft (`check_append`, `check_vote_request`, `check_transfer`,
//!   `check_snapshot_header`, `check_snapshot`), and forwarded commands through `Command::check`; replies a
//!   replica decodes from its peers are decoded too.
//!
//! Invariant: every target returns for every input. A refusal is an ordinary outcome; a panic, a hang or an
//! unbounded allocation is the bug a target exists to find. The only assertions are properties the server
//! relies on (a command that passes its checks survives the trip to the leader unchanged).

#![allow(dead_code)]

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;
use raftsman::apis::catalog::{Resource, RESOURCES};
use raftsman::apis::selectors::{fields, FieldSelector, LabelSelector};
use raftsman::apis::{managed_fields, patch, protobuf};
use raftsman::apiserver::etcd;
use raftsman::apiserver::registry::verbs;
use raftsman::limits;
use raftsman::proto::etcd as pb;
use raftsman::store::command::Command;
use raftsman::store::network::{decode, encode, LeaderRequest, LeaderResponse, SnapshotHeader};
use raftsman::store::peer::{check_append, check_snapshot_header, check_transfer, check_vote_request};
use raftsman::store::snapshot::{check_snapshot, seal_snapshot, SnapshotBody};
use raftsman::store::types::{NodeId, TypeConfig};
use serde_json::{json, Value};

/// A fuzz target: it may be given any bytes and must neither panic, hang nor allocate without bound.
pub type Target = fn(&[u8]);

/// Every target by name, as the corpus directories and the cargo-fuzz binaries name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("kube_json", kube_json),
    ("kube_protobuf", kube_protobuf),
    ("patch", patch),
    ("selectors", selectors),
    ("etcd", etcd),
    ("peer", peer),
];

/// The time every admission stamps, so that runs repeat.
const NOW: &str = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------------------------------
// Kubernetes bodies

/// The served resource a body names by its `kind`, or one picked by the body's length when it names none.
fn resource_for(body: &Value, len: usize) -> &'static Resource {
    let kind = body.get("kind").and_then(Value::as_str);
    RESOURCES.iter().find(|r| Some(r.kind) == kind).unwrap_or(&RESOURCES[len % RESOURCES.len()])
}

/// What `verbs::check_envelope` does to a body sent to `resource` in namespace `default`: a body for another
/// version is refused, the type and namespace are set from the URL.
fn envelope(resource: &Resource, mut body: Value) -> Option<Value> {
    let obj = body.as_object_mut()?;
    if obj.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v != resource.api_version()) {
        return None;
    }
    obj.insert("apiVersion".into(), Value::String(resource.api_version()));
    obj.insert("kind".into(), Value::String(resource.kind.into()));
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    let meta = meta.as_object_mut()?;
    if resource.namespaced {
        meta.insert("namespace".into(), Value::String("default".into()));
    } else {
        meta.remove("namespace");
    }
    Some(body)
}

/// `verbs::admit` as a create (`old` None) or an update, with unknown fields as warnings and a field manager.
/// Returns the admitted object, if it was admitted.
fn admit(resource: &'static Resource, old: Option<&Value>, obj: Value) -> Option<Value> {
    let opts = verbs::WriteOptions {
        field_validation: verbs::FieldValidation::Warn,
        field_manager: Some("kubectl".into()),
        ..verbs::WriteOptions::default()
    };
    verbs::admit(resource, old, obj, &opts, &mut Vec::new()).ok()
}

/// A created object, then the same object written again as an update.
fn admit_create_and_update(body: Value, len: usize) {
    let resource = resource_for(&body, len);
    let Some(body) = envelope(resource, body) else { return };
    if let Some(created) = admit(resource, None, body) {
        admit(resource, Some(&created), created.clone());
    }
}

/// A Kubernetes JSON request body (POST or PUT).
pub fn kube_json(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    admit_create_and_update(body, data.len());
}

/// A Kubernetes protobuf request body (kubectl's generator commands).
pub fn kube_protobuf(data: &[u8]) {
    let Ok(body) = protobuf::decode_object(data) else { return };
    admit_create_and_update(body, data.len());
}

/// A PATCH: `<type>\0<object JSON>\0<patch JSON>`. The object is first admitted as a create (what is stored
/// has passed admission); the patched object is then admitted as an update, as the verb does.
pub fn patch(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(kind), Some(object), Some(patch)) = (parts.next(), parts.next(), parts.next()) else { return };
    let Ok(object) = serde_json::from_slice::<Value>(object) else { return };
    let Ok(input) = serde_json::from_slice::<Value>(patch) else { return };
    let resource = resource_for(&object, data.len());
    let Some(object) = envelope(resource, object) else { return };
    let current = admit(resource, None, object.clone()).unwrap_or(object);
    let patched = match kind {
        b"json" => patch::apply(resource, patch::PatchType::Json, &current, &input),
        b"merge" => patch::apply(resource, patch::PatchType::Merge, &current, &input),
        b"strategic" => patch::apply(resource, patch::PatchType::Strategic, &current, &input),
        b"apply" => {
            let api_version = resource.api_version();
            for force in [false, true] {
                let (group, kind) = (resource.group, resource.kind);
                let applied = managed_fields::apply(group, kind, &api_version, Some(&current), &input, "m", force, NOW);
                if let Ok(next) = applied {
                    admit(resource, Some(&current), next);
                }
            }
            managed_fields::apply(resource.group, resource.kind, &api_version, None, &input, "kubectl", false, NOW)
                .ok()
                .and_then(|created| admit(resource, None, created));
            return;
        }
        _ => return,
    };
    if let Ok(next) = patched {
        admit(resource, Some(&current), next);
    }
}

/// The objects selectors are matched against: a pod with labels and the fields pods select on, a node, an
/// event.
fn selector_objects() -> [(&'static str, &'static str, Value); 3] {
    [
        (
            "",
            "pods",
            json!({"metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web", "tier": "1"}},
                   "spec": {"nodeName": "n1", "restartPolicy": "Always", "serviceAccountName": "default"},
                   "status": {"phase": "Running", "podIP": "10.0.0.7"}}),
        ),
        ("", "nodes", json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}}, "spec": {}})),
        (
            "",
            "events",
            json!({"metadata": {"name": "e", "namespace": "default"}, "reason": "Started", "type": "Normal",
                   "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"},
                   "source": {"component": "kubelet"}}),
        ),
    ]
}

/// `<plural>\n<label selector>\n<field selector>` from a list or watch request's query.
pub fn selectors(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let plural = lines.next().unwrap_or_default();
    let label = lines.next().unwrap_or_default();
    let field = lines.next().unwrap_or_default();
    let resource = RESOURCES.iter().find(|r| r.plural == plural).unwrap_or(&RESOURCES[1]);
    let objects = selector_objects();
    if let Ok(selector) = LabelSelector::parse(label) {
        let printed = selector.to_string();
        let _ = LabelSelector::parse(&printed);
        for (_, _, object) in &objects {
            selector.matches_object(object);
        }
    }
    if let Ok(selector) = FieldSelector::parse(field) {
        let _ = FieldSelector::parse(&selector.to_string());
    }
    if let Ok(selector) = FieldSelector::parse_for(resource.group, resource.plural, field) {
        for (group, plural, object) in &objects {
            selector.matches(&fields(group, plural, object));
            selector.matches_object(resource.group, resource.plural, object);
        }
        selector.requires_exact_match("metadata.name");
    }
}

// ---------------------------------------------------------------------------------------------------------
// etcd requests

/// The checks `Store::propose` runs on every command, on the replica a client reached; a command that
/// passes is forwarded to the leader, which decodes it and checks it again.
fn propose(command: Command) {
    if command.check().is_err() {
        return;
    }
    if bincode::serialized_size(&command).unwrap_or(u64::MAX) > limits::COMMAND_BYTES_MAX as u64 {
        return;
    }
    let forwarded = encode(&LeaderRequest::Propose(command.clone()));
    match decode::<LeaderRequest>(&forwarded) {
        Ok(LeaderRequest::Propose(received)) => {
            assert_eq!(received, command, "a forwarded command must arrive unchanged");
            assert!(received.check().is_ok(), "a command that passed its checks must pass them on the leader");
        }
        other => panic!("a command that passed its checks must decode on the leader, got {other:?}"),
    }
}

/// One etcd request: a selector byte naming the request type, then the request's protobuf.
pub fn etcd(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    match which % 12 {
        0 => {
            if let Ok(r) = pb::RangeRequest::decode(body) {
                let _ = etcd::range_op(r);
            }
        }
        1 => {
            if let Ok(p) = pb::PutRequest::decode(body) {
                propose(Command::Put(etcd::put_op(p)));
            }
        }
        2 => {
            if let Ok(d) = pb::DeleteRangeRequest::decode(body) {
                propose(Command::Delete(etcd::delete_op(d)));
            }
        }
        3 => {
            if let Ok(Ok(t)) = pb::TxnRequest::decode(body).map(etcd::txn_op) {
                propose(Command::Txn(t));
            }
        }
        4 => {
            if let Ok(c) = pb::CompactionRequest::decode(body) {
                propose(Command::Compact { revision: c.revision });
            }
        }
        5 => {
            // As `lease_grant` does, with a fixed id where it draws a random one.
            if let Ok(g) = pb::LeaseGrantRequest::decode(body) {
                if g.id >= 0 {
                    let ttl = g.ttl.clamp(limits::LEASE_TTL_SECS_MIN, limits::LEASE_TTL_SECS_MAX);
                    propose(Command::LeaseGrant { id: if g.id != 0 { g.id } else { 1 }, ttl });
                }
            }
        }
        6 => {
            if let Ok(r) = pb::LeaseRevokeRequest::decode(body) {
                propose(Command::LeaseRevoke { id: r.id });
            }
        }
        7 => {
            let _ = pb::LeaseKeepAliveRequest::decode(body);
        }
        8 => {
            let _ = pb::LeaseTimeToLiveRequest::decode(body);
        }
        9 => {
            if let Ok(w) = pb::WatchRequest::decode(body) {
                if let Some(pb::watch_request::RequestUnion::CreateRequest(c)) = w.request_union {
                    c.filters().count();
                }
            }
        }
        10 => {
            let _ = pb::MoveLeaderRequest::decode(body);
        }
        _ => {
            let _ = pb::LeaseLeasesRequest::decode(body);
            let _ = pb::MemberListRequest::decode(body);
            let _ = pb::StatusRequest::decode(body);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Peer messages

/// The members the peer checks accept: ids 1, 2 and 3.
fn is_member(id: NodeId) -> bool {
    (1..=3).contains(&id)
}

/// `content` with the trailer a snapshot body ends with (`store::snapshot::seal_snapshot`): a target that
/// appends it reaches the decoding behind the checksum.
pub fn with_snapshot_trailer(mut content: Vec<u8>) -> Vec<u8> {
    seal_snapshot(&mut content);
    content
}

/// An install-snapshot stream: `<u16 LE header length><header bincode><body>`.
fn install_snapshot(data: &[u8], fix_trailer: bool) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (header, body) = rest.split_at(len);
    let Ok(header) = decode::<SnapshotHeader>(header) else { return };
    if check_snapshot_header(&header, is_member).is_err() {
        return;
    }
    let body = if fix_trailer { with_snapshot_trailer(body.to_vec()) } else { body.to_vec() };
    let _ = check_snapshot(&header.meta, &SnapshotBody::from_bytes(body));
}

/// One peer payload: a selector byte naming its type, then its bincode.
pub fn peer(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    match which % 11 {
        0 => {
            if let Ok(rpc) = decode::<AppendEntriesRequest<TypeConfig>>(body) {
                let _ = check_append(&rpc, is_member);
            }
        }
        1 => {
            if let Ok(rpc) = decode::<VoteRequest<TypeConfig>>(body) {
                let _ = check_vote_request(&rpc, is_member);
            }
        }
        2 => {
            if let Ok(rpc) = decode::<TransferLeaderRequest<TypeConfig>>(body) {
                let _ = check_transfer(&rpc, is_member);
            }
        }
        3 => install_snapshot(body, false),
        4 => install_snapshot(body, true),
        5 => {
            // A forward is checked as a client's command is; a command that passes goes through the log.
            if let Ok(LeaderRequest::Propose(command)) = decode::<LeaderRequest>(body) {
                propose(command);
            }
        }
        6 => {
            let _ = decode::<LeaderResponse>(body);
        }
        7 => {
            let _ = decode::<Result<AppendEntriesResponse<TypeConfig>, String>>(body);
        }
        8 => {
            let _ = decode::<Result<VoteResponse<TypeConfig>, String>>(body);
        }
        9 => {
            let _ = decode::<Result<TransferLeaderResponse<TypeConfig>, String>>(body);
        }
        _ => {
            let _ = decode::<Result<SnapshotResponse<TypeConfig>, String>>(body);
        }
    }
}
