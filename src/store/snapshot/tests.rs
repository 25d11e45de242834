//! The snapshot format: what is written reads back the same, and every way a body can be damaged is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::store::command::{EventKind, KeyValue};
use crate::store::disk::memory::MemoryDisk;
use crate::store::types::{LogId, RaftNode, StoredMembership};

fn meta() -> SnapshotMeta {
    let nodes: BTreeMap<u64, RaftNode> = [(1, RaftNode::default())].into();
    let membership = openraft::Membership::new(vec![BTreeSet::from([1])], nodes).expect("a valid membership");
    SnapshotMeta {
        last_log_id: Some(LogId::new_term_index(1, 9)),
        last_membership: StoredMembership::new(Some(LogId::new_term_index(1, 1)), membership),
    }
}

fn record(main: i64, value: Vec<u8>) -> Vec<u8> {
    let kv = KeyValue {
        key: format!("k{main}").into_bytes(),
        create_revision: main,
        mod_revision: main,
        version: 1,
        value,
        lease: 0,
    };
    bincode::serialize(&HistoryRecord { kind: EventKind::Put, kv, prev: None }).expect("encodes")
}

fn head() -> SnapshotHead {
    SnapshotHead {
        mvcc: MvccMeta { revision: 3, compact_revision: 1 },
        leases: vec![(7, 60)],
        members: BTreeMap::new(),
    }
}

/// A snapshot of three records, one larger than a chunk, written to a simulated disk.
fn written(disk: &MemoryDisk) -> (SnapshotBody, Records) {
    let records: Records = [(1, vec![1; 10]), (2, vec![2; limits::SNAPSHOT_CHUNK_BYTES + 5]), (3, vec![])]
        .into_iter()
        .map(|(main, value)| (Revision { main, sub: 0 }, record(main, value)))
        .collect();
    let mut encoder = SnapshotEncoder::create(disk, &meta(), &head()).expect("create");
    for (rev, bytes) in &records {
        encoder.record(&rev.to_bytes(), bytes).expect("record");
    }
    (encoder.finish().expect("finish"), records)
}

/// History records as revisions and stored bytes.
type Records = Vec<(Revision, Vec<u8>)>;

fn read_all(body: &SnapshotBody) -> io::Result<(SnapshotHead, Records)> {
    let (head, mut decoder) = SnapshotDecoder::open(body)?;
    let mut records = Vec::new();
    while let Some(record) = decoder.next_record()? {
        records.push(record);
    }
    Ok((head, records))
}

/// The body's bytes, as a follower receives them.
fn bytes_of(body: &SnapshotBody) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let chunk = body.read(bytes.len() as u64, 1000).expect("read");
        if chunk.is_empty() {
            return bytes;
        }
        bytes.extend(chunk);
    }
}

#[test]
fn a_snapshot_reads_back_as_written_and_once_kept_is_the_disks() {
    let disk = MemoryDisk::new(Duration::ZERO);
    let (body, records) = written(&disk);
    let (read_head, read) = read_all(&body).expect("decodes");
    assert_eq!((read_head.mvcc, read_head.leases), (head().mvcc, head().leases));
    assert_eq!(read, records);
    check_snapshot(&meta(), &body).expect("a written snapshot passes the check");

    assert!(disk.snapshot().expect("snapshot").is_none(), "not the disk's snapshot until kept");
    body.keep().expect("keep");
    let (kept_meta, kept) = open_snapshot(disk.snapshot().expect("snapshot").expect("kept")).expect("opens");
    assert_eq!(kept_meta, meta());
    assert_eq!(bytes_of(&kept), bytes_of(&body));

    // What a follower receives and writes to its own file is the same snapshot.
    let follower = MemoryDisk::new(Duration::ZERO);
    let mut incoming = NewSnapshot::create(&follower, &meta()).expect("create");
    for chunk in bytes_of(&body).chunks(777) {
        incoming.write(chunk).expect("write");
    }
    assert_eq!(read_all(&incoming.finish().expect("finish")).expect("decodes").1, records);
}

#[test]
fn a_damaged_snapshot_is_refused_with_what_is_wrong() {
    let disk = MemoryDisk::new(Duration::ZERO);
    let good = bytes_of(&written(&disk).0);
    let refusal = |bytes: Vec<u8>| match check_snapshot(&meta(), &SnapshotBody::from_bytes(bytes)) {
        Ok(()) => panic!("a damaged snapshot passed the check"),
        Err(e) => e.to_string(),
    };
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    assert!(refusal(flipped).contains("checksum"));
    assert!(refusal(good[..good.len() - 1].to_vec()).contains("trailer"));
    assert!(refusal(b"short".to_vec()).contains("too short"));

    // Bodies with a valid trailer, so that the decoding behind the checksum is reached.
    let sealed = |content: Vec<u8>| {
        let mut body = content;
        seal_snapshot(&mut body);
        body
    };
    let head = bincode::serialize(&head()).expect("encodes");
    let with_records = |records: &[(i64, Vec<u8>)]| {
        let mut content = head.clone();
        for (main, bytes) in records {
            content.extend_from_slice(&Revision { main: *main, sub: 0 }.to_bytes());
            content.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            content.extend_from_slice(bytes);
        }
        sealed(content)
    };
    assert!(refusal(with_records(&[(2, record(2, vec![])), (1, record(1, vec![]))])).contains("out of order"));
    assert!(refusal(with_records(&[(1, b"not a record".to_vec())])).contains("undecodable"));
    let mut truncated = with_records(&[(1, record(1, vec![]))]);
    truncated.truncate(truncated.len() - TRAILER_BYTES - 3);
    assert!(refusal(sealed(truncated)).contains("truncated"));
    let mut huge = head.clone();
    huge.extend_from_slice(&Revision { main: 1, sub: 0 }.to_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(refusal(sealed(huge)).contains("larger than any change"));
    // A head claiming a string of 343 GB: refused before anything is allocated for it.
    let mut claims = bincode::serialize(&(MvccMeta::default(), Vec::<(i64, i64)>::new(), 1u64, 1u64)).expect("encodes");
    claims.extend_from_slice(&0x50_0000_0000u64.to_le_bytes());
    assert!(refusal(sealed(claims)).contains("head is undecodable"));
}

#[test]
fn a_snapshot_file_dropped_before_it_is_kept_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshots = dir.path().join("snap");
    let disk = crate::store::disk::rocks::RocksDisk::open(&dir.path().join("db"), &snapshots, true).expect("open");
    let files = || std::fs::read_dir(&snapshots).expect("list").count();
    let unfinished = NewSnapshot::create(&disk, &meta()).expect("create");
    assert_eq!(files(), 1);
    drop(unfinished);
    assert_eq!(files(), 0, "an unfinished file is removed");
    let finished = || {
        let mut encoder = SnapshotEncoder::create(&disk, &meta(), &head()).expect("create");
        encoder.record(&Revision { main: 1, sub: 0 }.to_bytes(), &record(1, vec![])).expect("record");
        encoder.finish().expect("finish")
    };
    let body = finished();
    let sent = body.clone();
    drop(body);
    assert_eq!(files(), 1, "a finished file stays while a clone reads it");
    drop(sent);
    assert_eq!(files(), 0, "a finished file nobody kept is removed");
    let body = finished();
    body.keep().expect("keep");
    drop(body);
    let kept = disk.snapshot().expect("snapshot").expect("kept");
    assert_eq!(read_all(&open_snapshot(kept).expect("opens").1).expect("decodes").1.len(), 1);
}
