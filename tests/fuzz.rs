//! The short fuzz run of the test suite, on stable: every target of `fuzz/targets.rs` over its seed corpus
//! (`fuzz/corpus/<name>/`) and a bounded number of mutations of it (bit flips, byte changes, insertions,
//! deletions, truncations, splices), drawn from a fixed seed so that every run tries the same inputs. A
//! target that panics fails the test, which prints the input and saves it where `deploy/fuzz.sh` can replay
//! it; an input that aborts the process (an allocation without bound fails) is written out by a SIGABRT
//! handler. Seeds named `crash-*` are crashes found before, kept so that they stay fixed. The long runs are
//! cargo-fuzz's (`deploy/fuzz.sh`).
//!
//! `write_seed_corpus` (ignored) writes the binary seeds (protobuf bodies, etcd requests, peer messages) from
//! the real encoders, so they follow the types when these change.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::{EntryPayload, Membership};
use prost::Message;
use raftsman::proto::etcd as pb;
use raftsman::store::command::{Command, KeyRange, PutOp, RequestOp, TxnOp};
use raftsman::store::mvcc::{HistoryRecord, MvccMeta, Revision};
use raftsman::store::network::{encode, LeaderRequest, LeaderResponse, SnapshotHeader};
use raftsman::store::storage::MemberAttrs;
use raftsman::store::types::{Entry, LogId, RaftNode, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// Mutated inputs tried per target, at most.
const MUTATIONS_PER_TARGET: usize = 50_000;
/// Time per target, at most, whatever is left of its mutations (on a loaded machine the run stops early; the
/// inputs it tries are still the same prefix of the same sequence).
const TIME_PER_TARGET: Duration = Duration::from_secs(3);
/// The longest one input may take before the run counts it as a hang.
const INPUT_TIME_MAX: Duration = Duration::from_secs(10);
/// The longest mutated input.
const INPUT_BYTES_MAX: usize = 64 * 1024;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// The seed inputs of a target, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            (path.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    seeds
}

/// splitmix64: a small generator whose sequence depends on its seed only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that often change what a decoder does: JSON and selector punctuation, varint edges, bincode lengths.
const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"null",
    b"-1",
    b"1e400",
    b"0.5",
    b"18446744073709551615",
    b"=",
    b"!=",
    b"==",
    b" in (",
    b" notin (",
    b")",
    b"!",
    b">",
    b"<",
    b"/",
    b"\n",
    b"\0",
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x80",
    b"\x7f",
    b"\xff\xff\xff\xff\x0f",
    b"\x00\x00\x00\x00",
];

/// One to four stacked mutations of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(8) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 => data.truncate(at),
            5 if !data.is_empty() => {
                // Repeats a slice of the input where it is, making nesting and lists deeper.
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(64)).min(data.len());
                let copy = data[start..end].repeat(1 + rng.below(8));
                data.splice(start..start, copy);
            }
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
        }
    }
    data.truncate(INPUT_BYTES_MAX);
    data
}

/// What the abort handler saves: the input being run and the file it goes to. An allocation that fails (an
/// input that makes a target allocate without bound) aborts the process instead of panicking; the handler
/// writes the input out so that the failure can be replayed.
static RUNNING: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static RUNNING_LEN: AtomicUsize = AtomicUsize::new(0);
static ABORT_FILE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn save_running_input(_signal: libc::c_int) {
    // Only async-signal-safe calls: write(2) of bytes prepared before the signal.
    let fd = ABORT_FILE.load(Ordering::SeqCst);
    let input = RUNNING.load(Ordering::SeqCst);
    if fd >= 0 && !input.is_null() {
        let message = concat!(
            "fuzz: aborted while running an input (an allocation failed?); the input is in ",
            env!("CARGO_TARGET_TMPDIR"),
            "/fuzz-abort-<target>\n"
        );
        unsafe {
            libc::write(fd, input.cast(), RUNNING_LEN.load(Ordering::SeqCst));
            libc::write(2, message.as_ptr().cast(), message.len());
        }
    }
}

/// Opens the file the abort handler writes `name`'s running input to, and installs the handler once.
fn prepare_abort_file(name: &str) {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| unsafe {
        libc::signal(libc::SIGABRT, save_running_input as *const () as libc::sighandler_t);
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-abort-{name}"));
    let file = std::fs::File::create(&path).expect("creating the abort file");
    let old = ABORT_FILE.swap(std::os::fd::IntoRawFd::into_raw_fd(file), Ordering::SeqCst);
    if old >= 0 {
        unsafe { libc::close(old) };
    }
}

/// Runs one input; a panic or a hang is reported with the input and saved for cargo-fuzz to replay.
fn run_one(name: &str, target: fn(&[u8]), input: &[u8], origin: &str) -> Result<(), String> {
    RUNNING_LEN.store(input.len(), Ordering::SeqCst);
    RUNNING.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
    // The panic is reported with its input below; the default hook would print it a second time.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    let elapsed = started.elapsed();
    panic::set_hook(hook);
    RUNNING.store(std::ptr::null_mut(), Ordering::SeqCst);
    let problem = match outcome {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("panicked: {message}")
        }
        Ok(()) if elapsed > INPUT_TIME_MAX => format!("took {elapsed:?}"),
        Ok(()) => return Ok(()),
    };
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{name}"));
    std::fs::write(&saved, input).expect("saving the crashing input");
    Err(format!(
        "target {name} {problem} on {origin} ({} bytes, saved to {}; replay with `deploy/fuzz.sh {name} {}`)\n\
         input as text: {:?}",
        input.len(),
        saved.display(),
        saved.display(),
        String::from_utf8_lossy(&input[..input.len().min(2048)]),
    ))
}

/// Runs a target over its seeds and their mutations; the first failure stops it.
fn run_target(name: &str, target: fn(&[u8]), seed: u64) -> Result<usize, String> {
    prepare_abort_file(name);
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "target {name} has no seed corpus in {}", corpus_dir(name).display());
    for (file, input) in &seeds {
        run_one(name, target, input, &format!("seed {file}"))?;
    }
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut runs = seeds.len();
    for i in 0..MUTATIONS_PER_TARGET {
        if started.elapsed() > TIME_PER_TARGET {
            break;
        }
        let (file, base) = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())].1;
        let input = mutate(&mut rng, base, other);
        run_one(name, target, &input, &format!("mutation {i} of seed {file}"))?;
        runs += 1;
    }
    Ok(runs)
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mut failures = Vec::new();
    for (i, (name, target)) in targets::TARGETS.iter().enumerate() {
        let started = Instant::now();
        match run_target(name, *target, 0x5eed_0000 + i as u64) {
            Ok(runs) => println!("fuzz target {name}: {runs} inputs in {:?}", started.elapsed()),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_mutations_repeat_for_a_seed() {
    let input = br#"{"kind":"Pod","metadata":{"name":"a"}}"#;
    let run = |seed| {
        let mut rng = Rng(seed);
        (0..50).map(|_| mutate(&mut rng, input, b"other")).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

// ---------------------------------------------------------------------------------------------------------
// The binary seeds

/// A protobuf writer for the Kubernetes seed bodies.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint_raw(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn varint(mut self, number: u64, value: u64) -> Proto {
        self.varint_raw(number << 3);
        self.varint_raw(value);
        self
    }

    fn bytes(mut self, number: u64, bytes: &[u8]) -> Proto {
        self.varint_raw(number << 3 | 2);
        self.varint_raw(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn message(self, number: u64, message: Proto) -> Proto {
        self.bytes(number, &message.0)
    }

    fn entry(self, number: u64, key: &str, value: &[u8]) -> Proto {
        self.message(number, Proto::default().bytes(1, key.as_bytes()).bytes(2, value))
    }
}

/// `k8s\0` and the `runtime.Unknown` envelope (typeMeta 1, raw 2, contentEncoding 3, contentType 4).
fn kube_protobuf_body(api_version: &str, kind: &str, raw: Proto) -> Vec<u8> {
    let type_meta = Proto::default().bytes(1, api_version.as_bytes()).bytes(2, kind.as_bytes());
    let unknown = Proto::default().message(1, type_meta).message(2, raw).bytes(3, b"").bytes(4, b"");
    [b"k8s\0".as_slice(), &unknown.0].concat()
}

/// ObjectMeta: name 1, namespace 3, labels 11.
fn object_meta(name: &str, labels: &[(&str, &str)]) -> Proto {
    let mut meta = Proto::default().bytes(1, name.as_bytes()).bytes(3, b"");
    for (key, value) in labels {
        meta = meta.entry(11, key, value.as_bytes());
    }
    meta
}

fn kube_protobuf_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Secret: metadata 1, data 2, type 3. ConfigMap: metadata 1, data 2. Namespace: metadata 1.
    let secret = Proto::default()
        .message(1, object_meta("db-password", &[]))
        .entry(2, "password", b"hunter2")
        .bytes(3, b"Opaque");
    let config_map = Proto::default().message(1, object_meta("settings", &[])).entry(2, "mode", b"fast");
    let namespace = Proto::default().message(1, object_meta("team-a", &[]));
    // Deployment: metadata 1, spec 2 (replicas 1, selector 2 with matchLabels 1, template 3 with metadata 1 and
    // spec 2, whose containers are field 2 with name 1 and image 2).
    let container = Proto::default().bytes(1, b"nginx").bytes(2, b"nginx:1.27");
    let template = Proto::default()
        .message(1, object_meta("", &[("app", "web")]))
        .message(2, Proto::default().message(2, container));
    let spec = Proto::default().varint(1, 2).message(2, Proto::default().entry(1, "app", b"web")).message(3, template);
    let deployment = Proto::default().message(1, object_meta("web", &[("app", "web")])).message(2, spec);
    vec![
        ("secret", kube_protobuf_body("v1", "Secret", secret)),
        ("configmap", kube_protobuf_body("v1", "ConfigMap", config_map)),
        ("namespace", kube_protobuf_body("v1", "Namespace", namespace)),
        ("deployment", kube_protobuf_body("apps/v1", "Deployment", deployment)),
    ]
}

fn with_selector(which: u8, body: Vec<u8>) -> Vec<u8> {
    [vec![which], body].concat()
}

fn etcd_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let range = pb::RangeRequest {
        key: b"/registry/pods/".to_vec(),
        range_end: b"/registry/pods0".to_vec(),
        limit: 500,
        ..Default::default()
    };
    let put =
        pb::PutRequest { key: b"greeting".to_vec(), value: b"hello".to_vec(), prev_kv: true, ..Default::default() };
    let delete = pb::DeleteRangeRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), prev_kv: true };
    let put_op = |key: &[u8]| pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    let nested = pb::TxnRequest { compare: Vec::new(), success: vec![put_op(b"inner")], failure: Vec::new() };
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"/registry/configmaps/default/a".to_vec(),
            range_end: Vec::new(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(7)),
        }],
        success: vec![
            put_op(b"/registry/configmaps/default/a"),
            pb::RequestOp { request: Some(pb::request_op::Request::RequestTxn(nested)) },
        ],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: b"/registry/configmaps/default/a".to_vec(),
                ..Default::default()
            })),
        }],
    };
    let watch = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: b"/registry/".to_vec(),
            range_end: b"/registry0".to_vec(),
            start_revision: 5,
            progress_notify: true,
            filters: vec![1],
            prev_kv: true,
            watch_id: 3,
            ..Default::default()
        })),
    };
    vec![
        ("range", with_selector(0, range.encode_to_vec())),
        ("put", with_selector(1, put.encode_to_vec())),
        ("delete", with_selector(2, delete.encode_to_vec())),
        ("txn", with_selector(3, txn.encode_to_vec())),
        ("compact", with_selector(4, pb::CompactionRequest { revision: 9, physical: false }.encode_to_vec())),
        ("lease-grant", with_selector(5, pb::LeaseGrantRequest { ttl: 60, id: 0 }.encode_to_vec())),
        ("lease-revoke", with_selector(6, pb::LeaseRevokeRequest { id: 0x1234 }.encode_to_vec())),
        ("watch", with_selector(9, watch.encode_to_vec())),
    ]
}

fn peer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let put = |key: &str| Command::Put(PutOp { key: key.into(), value: b"value".to_vec(), ..PutOp::default() });
    let entry = |index: u64| Entry { log_id: LogId::new_term_index(3, index), payload: EntryPayload::Normal(put("k")) };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new_term_index(3, 10)),
        entries: vec![entry(11), entry(12)],
        leader_commit: Some(LogId::new_term_index(3, 10)),
    };
    let heartbeat = AppendEntriesRequest::<TypeConfig> { entries: Vec::new(), ..append.clone() };
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(4, 2), Some(LogId::new_term_index(3, 12)));
    let transfer =
        TransferLeaderRequest::<TypeConfig>::new(Vote::new_committed(3, 1), 2, Some(LogId::new_term_index(3, 12)));

    let nodes: BTreeMap<u64, RaftNode> =
        (1..=3).map(|id| (id, RaftNode { name: format!("n{id}"), peer_addr: format!("127.0.0.1:238{id}") })).collect();
    let membership = Membership::new(vec![(1..=3).collect::<BTreeSet<u64>>()], nodes).expect("a valid membership");
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new_term_index(3, 12)),
        last_membership: StoredMembership::new(Some(LogId::new_term_index(1, 1)), membership),
    };
    let header = encode(&SnapshotHeader { vote: Vote::new_committed(3, 1), meta });
    // The snapshot body (`store::snapshot`): the head (meta, leases, members), then each history record as its
    // revision, a u32 LE length and its bincode.
    let members: BTreeMap<u64, MemberAttrs> = (1..=3)
        .map(|id| {
            let (name, client_addr, api_addr) =
                (format!("n{id}"), format!("127.0.0.1:237{id}"), format!("127.0.0.1:644{id}"));
            (id, MemberAttrs { name, client_addr, api_addr })
        })
        .collect();
    let mut content = encode(&(MvccMeta { revision: 2, compact_revision: 0 }, vec![(0x1234i64, 60i64)], members));
    for main in 1..=2 {
        let record = HistoryRecord {
            kind: raftsman::store::command::EventKind::Put,
            kv: raftsman::store::command::KeyValue {
                key: b"k".to_vec(),
                create_revision: 1,
                mod_revision: main,
                version: main,
                value: b"v".to_vec(),
                lease: 0,
            },
            prev: (main > 1).then_some(Revision { main: 1, sub: 0 }),
        };
        let bytes = encode(&record);
        content.extend_from_slice(&Revision { main, sub: 0 }.to_bytes());
        content.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        content.extend_from_slice(&bytes);
    }
    let mut huge_member_name = encode(&(MvccMeta::default(), Vec::<(i64, i64)>::new(), 1u64, 1u64));
    huge_member_name.extend_from_slice(&0x50_0000_0000u64.to_le_bytes());
    let stream = |body: &[u8]| [&(header.len() as u16).to_le_bytes()[..], &header, body].concat();
    let txn = Command::Txn(TxnOp {
        compare: Vec::new(),
        success: vec![RequestOp::Put(PutOp { key: b"a".to_vec(), ..PutOp::default() })],
        failure: vec![RequestOp::Delete(raftsman::store::command::DeleteOp {
            range: KeyRange { key: b"a".to_vec(), end: vec![0] },
            prev_kv: false,
        })],
    });
    vec![
        ("append-entries", with_selector(0, encode(&append))),
        ("heartbeat", with_selector(0, encode(&heartbeat))),
        ("vote", with_selector(1, encode(&vote))),
        ("transfer-leader", with_selector(2, encode(&transfer))),
        ("install-snapshot", with_selector(3, stream(&targets::with_snapshot_trailer(content.clone())))),
        ("install-snapshot-content", with_selector(4, stream(&content))),
        ("forward-put", with_selector(5, encode(&LeaderRequest::Propose(put("forwarded"))))),
        ("forward-txn", with_selector(5, encode(&LeaderRequest::Propose(txn)))),
        (
            "forward-lease-grant",
            with_selector(5, encode(&LeaderRequest::Propose(Command::LeaseGrant { id: 7, ttl: 60 }))),
        ),
        ("leader-response", with_selector(6, encode(&LeaderResponse::NotLeader(Some(2))))),
        // Found by the short run: a snapshot with a valid checksum whose head names a member with a string of
        // 343 GB. The head is decoded from a reader, and bincode allocates a string's claimed length before
        // reading it: the receiving replica aborts.
        ("crash-snapshot-head-string-length", with_selector(4, stream(&huge_member_name))),
    ]
}

/// Writes the binary seeds into `fuzz/corpus/`; the text seeds there are written by hand.
#[test]
#[ignore]
fn write_seed_corpus() {
    for (target, seeds) in [("kube_protobuf", kube_protobuf_seeds()), ("etcd", etcd_seeds()), ("peer", peer_seeds())] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
