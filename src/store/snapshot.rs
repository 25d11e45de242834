//! Snapshots of the state machine as files: their format, and writing and reading them as streams, so that no
//! replica ever holds a whole snapshot in memory (building, sending, receiving or installing one).
//!
//! A snapshot file is the meta's length (u32 LE) and the meta (bincode), then the body. The body is what
//! travels to a follower: the head (`SnapshotHead`, bincode), then the history records, each as its 16-byte
//! revision, a u32 LE length and the record's bytes as stored, then the trailer: `MAGIC` and the CRC-32 of
//! everything in the body before it (u32 LE). Records are copied as stored, never decoded and re-encoded.
//!
//! Memory: a writer buffers at most `SNAPSHOT_CHUNK_BYTES`, a reader `SNAPSHOT_READ_BUFFER_BYTES` and one
//! record.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::disk::{Disk, FileReader, SnapshotFile, SnapshotWrite};
use super::mvcc::{HistoryRecord, MvccMeta, Revision};
use super::storage::MemberAttrs;
use super::types::SnapshotMeta;
use crate::limits;

/// Marks the end of a snapshot body, before its checksum.
const MAGIC: &[u8; 8] = b"rsmsnap1";
const TRAILER_BYTES: usize = MAGIC.len() + 4;
/// A record's revision and length, before its bytes.
const RECORD_PREFIX_BYTES: usize = 20;

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {what}"))
}

/// The fixed part of a snapshot body, before the history records.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotHead {
    pub mvcc: MvccMeta,
    pub leases: Vec<(i64, i64)>,
    pub members: BTreeMap<u64, MemberAttrs>,
}

fn trailer(crc: u32) -> [u8; TRAILER_BYTES] {
    let mut trailer = [0u8; TRAILER_BYTES];
    trailer[..MAGIC.len()].copy_from_slice(MAGIC);
    trailer[MAGIC.len()..].copy_from_slice(&crc.to_le_bytes());
    trailer
}

/// Ends snapshot body bytes with their trailer (magic and checksum).
pub fn seal_snapshot(body: &mut Vec<u8>) {
    let trailer = trailer(crc32fast::hash(body));
    body.extend_from_slice(&trailer);
}

/// A snapshot's body in its file: what openraft hands between the state machine and the network.
#[derive(Clone, Debug)]
pub struct SnapshotBody {
    file: SnapshotFile,
    /// Where the body starts in the file, after the meta.
    start: u64,
}

impl SnapshotBody {
    /// Body bytes held in memory, on no disk: to check bytes from elsewhere.
    pub fn from_bytes(body: Vec<u8>) -> SnapshotBody {
        SnapshotBody { file: SnapshotFile::new(super::disk::memory::MemorySnapshot::detached(body), 0), start: 0 }
    }

    pub fn len(&self) -> u64 {
        self.file.len() - self.start
    }

    /// The whole file the body ends: the meta, then the body.
    pub fn file(&self) -> &SnapshotFile {
        &self.file
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether reading it blocks the thread (see `disk::off_the_workers`).
    pub fn reads_block(&self) -> bool {
        self.file.reads_block()
    }

    /// Up to `max` bytes of the body from `offset`; empty at the end.
    pub fn read(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let want = usize::try_from(self.len().saturating_sub(offset)).unwrap_or(usize::MAX).min(max);
        let mut bytes = vec![0; want];
        self.file.read_exact_at(self.start + offset, &mut bytes)?;
        Ok(bytes)
    }

    /// Makes this snapshot the disk's snapshot (see `disk::SnapshotBytes::keep`).
    pub fn keep(&self) -> io::Result<()> {
        self.file.keep()
    }

    /// This snapshot as a file on `disk`: itself if it is there already, else a copy written a chunk at a time.
    pub fn on(&self, disk: &dyn Disk, meta: &SnapshotMeta) -> io::Result<SnapshotBody> {
        if self.file.disk() == disk.id() {
            return Ok(self.clone());
        }
        let mut copy = NewSnapshot::create(disk, meta)?;
        let mut offset = 0;
        loop {
            let chunk = self.read(offset, limits::SNAPSHOT_CHUNK_BYTES)?;
            if chunk.is_empty() {
                return copy.finish();
            }
            offset += chunk.len() as u64;
            copy.write(&chunk)?;
        }
    }

    fn reader(&self, from: u64, to: u64) -> FileReader {
        self.file.reader(self.start + from, self.start + to)
    }
}

/// A new snapshot file: the meta, then body bytes as they come, buffered up to a chunk.
pub struct NewSnapshot {
    out: Box<dyn SnapshotWrite>,
    buf: Vec<u8>,
    start: u64,
    body_bytes: u64,
}

impl NewSnapshot {
    pub fn create(disk: &dyn Disk, meta: &SnapshotMeta) -> io::Result<NewSnapshot> {
        let meta = bincode::serialize(meta).map_err(io::Error::other)?;
        let meta_len = u32::try_from(meta.len()).map_err(|_| io::Error::other("snapshot meta too large"))?;
        let mut out = disk.create_snapshot()?;
        out.write(&meta_len.to_le_bytes())?;
        out.write(&meta)?;
        let start = 4 + meta.len() as u64;
        Ok(NewSnapshot { out, buf: Vec::new(), start, body_bytes: 0 })
    }

    /// Whether `more` body bytes keep the body within `SNAPSHOT_BYTES_MAX`.
    pub fn fits(&self, more: usize) -> bool {
        self.body_bytes.saturating_add(more as u64) <= limits::SNAPSHOT_BYTES_MAX as u64
    }

    /// Appends body bytes; refused past `SNAPSHOT_BYTES_MAX`, before anything is buffered.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.fits(bytes.len()) {
            return Err(io::Error::other("snapshot larger than the limit"));
        }
        self.body_bytes += bytes.len() as u64;
        if self.buf.len() + bytes.len() > limits::SNAPSHOT_CHUNK_BYTES {
            self.flush()?;
        }
        if bytes.len() >= limits::SNAPSHOT_CHUNK_BYTES {
            return self.out.write(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Makes the file durable. The body is not checked: see `check_snapshot`.
    pub fn finish(mut self) -> io::Result<SnapshotBody> {
        self.flush()?;
        Ok(SnapshotBody { file: self.out.finish()?, start: self.start })
    }
}

/// Writes a snapshot of the local state: the head, then the records in revision order, then the trailer.
pub struct SnapshotEncoder {
    file: NewSnapshot,
    crc: crc32fast::Hasher,
}

impl SnapshotEncoder {
    pub fn create(disk: &dyn Disk, meta: &SnapshotMeta, head: &SnapshotHead) -> io::Result<SnapshotEncoder> {
        let mut encoder = SnapshotEncoder { file: NewSnapshot::create(disk, meta)?, crc: crc32fast::Hasher::new() };
        encoder.body(&bincode::serialize(head).map_err(io::Error::other)?)?;
        Ok(encoder)
    }

    fn body(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.file.write(bytes)
    }

    /// One history record: its key in the history (the revision's bytes) and its bytes as stored.
    pub fn record(&mut self, revision: &[u8], bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("history record too large"))?;
        self.body(revision)?;
        self.body(&len.to_le_bytes())?;
        self.body(bytes)
    }

    pub fn finish(mut self) -> io::Result<SnapshotBody> {
        let trailer = trailer(self.crc.clone().finalize());
        self.file.write(&trailer)?;
        self.file.finish()
    }
}

/// The meta of a snapshot file and its body.
pub fn open_snapshot(file: SnapshotFile) -> io::Result<(SnapshotMeta, SnapshotBody)> {
    let corrupt = || io::Error::new(io::ErrorKind::InvalidData, "the snapshot file is corrupt");
    let mut len = [0u8; 4];
    file.read_exact_at(0, &mut len).map_err(|_| corrupt())?;
    let meta_len = u32::from_le_bytes(len) as u64;
    if 4 + meta_len > file.len() {
        return Err(corrupt());
    }
    let mut meta = vec![0; meta_len as usize];
    file.read_exact_at(4, &mut meta)?;
    let meta = bincode::deserialize(&meta).map_err(|_| corrupt())?;
    Ok((meta, SnapshotBody { file, start: 4 + meta_len }))
}

/// Feeds what is read through it to a checksum.
struct Summed<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Summed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a snapshot body in order, checking it as it goes: the head decodes within the body's size, records
/// come in ascending revisions with plausible lengths, and the checksum matches once the last was read.
pub struct SnapshotDecoder {
    content: BufReader<Summed<FileReader>>,
    expected_crc: u32,
    last: Option<Revision>,
}

impl SnapshotDecoder {
    /// The head, and a decoder positioned at the first record.
    pub fn open(body: &SnapshotBody) -> io::Result<(SnapshotHead, SnapshotDecoder)> {
        let content_len = body.len().checked_sub(TRAILER_BYTES as u64).ok_or_else(|| invalid("too short"))?;
        let mut end = [0u8; TRAILER_BYTES];
        body.reader(content_len, body.len()).read_exact(&mut end)?;
        if !end.starts_with(MAGIC) {
            return Err(invalid("has no trailer: not a snapshot of this format"));
        }
        let expected_crc = u32::from_le_bytes(end[MAGIC.len()..].try_into().expect("four bytes"));
        let summed = Summed { inner: body.reader(0, content_len), crc: crc32fast::Hasher::new() };
        let mut content = BufReader::with_capacity(limits::SNAPSHOT_READ_BUFFER_BYTES, summed);
        // A length inside the head can claim more bytes than the body holds: the limit refuses it before the
        // decoder allocates for it.
        let options = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(content_len.min(limits::SNAPSHOT_HEAD_BYTES_MAX));
        let head: SnapshotHead =
            options.deserialize_from(&mut content).map_err(|e| invalid(format!("head is undecodable: {e}")))?;
        Ok((head, SnapshotDecoder { content, expected_crc, last: None }))
    }

    /// The next record as its revision and its bytes as stored; `None` after the last, once the checksum
    /// matched.
    pub fn next_record(&mut self) -> io::Result<Option<(Revision, Vec<u8>)>> {
        if self.content.fill_buf()?.is_empty() {
            if self.content.get_ref().crc.clone().finalize() != self.expected_crc {
                return Err(invalid("checksum does not match: the snapshot is corrupt"));
            }
            return Ok(None);
        }
        let truncated = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("record is truncated"),
            _ => e,
        };
        let mut prefix = [0u8; RECORD_PREFIX_BYTES];
        self.content.read_exact(&mut prefix).map_err(truncated)?;
        let rev = Revision::from_bytes(&prefix[..16]).expect("sixteen bytes");
        if self.last.is_some_and(|last| rev <= last) {
            return Err(invalid("records are out of order"));
        }
        self.last = Some(rev);
        let len = u32::from_le_bytes(prefix[16..].try_into().expect("four bytes")) as usize;
        // A record holds one change of one key: no larger than a command.
        if len > limits::COMMAND_BYTES_MAX {
            return Err(invalid(format!("record of {len} bytes is larger than any change")));
        }
        let mut bytes = vec![0; len];
        self.content.read_exact(&mut bytes).map_err(truncated)?;
        Ok(Some((rev, bytes)))
    }
}

/// Checks a snapshot before anything is replaced: its format and checksum, that every record decodes, and that
/// its membership has voters. A snapshot that fails changes nothing. Reads the whole body, a record at a time.
pub fn check_snapshot(meta: &SnapshotMeta, body: &SnapshotBody) -> io::Result<()> {
    if meta.last_membership.membership().voter_ids().next().is_none() {
        return Err(invalid("membership has no voters"));
    }
    check_records(body)
}

/// Checks a snapshot body's format and checksum, and that every record decodes.
pub fn check_records(body: &SnapshotBody) -> io::Result<()> {
    let (_, mut records) = SnapshotDecoder::open(body)?;
    while let Some((_, bytes)) = records.next_record()? {
        bincode::deserialize::<HistoryRecord>(&bytes).map_err(|e| invalid(format!("record is undecodable: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
