//! Snapshots an operator saves (etcd's `Maintenance.Snapshot`, so that `etcdctl snapshot save` works) and
//! opens again to start a new cluster from (`raftsman server --restore FILE`).
//!
//! A saved snapshot is a snapshot file as a replica writes one (`snapshot`: meta, then body), zero padding,
//! that file's length (u64 LE) and the SHA-256 of everything before the digest. The padding makes the whole a
//! multiple of 512 bytes plus the 32 of the digest: etcdctl keeps a saved file only if its size says that a
//! digest ends it. The file is written and read a chunk at a time, never held whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::disk::{SnapshotBytes, SnapshotFile};
use super::snapshot::{open_snapshot, SnapshotBody};
use crate::limits;

const DIGEST_BYTES: u64 = 32;
const LENGTH_BYTES: u64 = 8;
const ALIGN: u64 = 512;

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} {what}", path.display()))
}

/// What follows a snapshot file of `len` bytes, before the digest: the padding and the length.
fn tail(len: u64) -> Vec<u8> {
    let padding = (ALIGN - (len + LENGTH_BYTES) % ALIGN) % ALIGN;
    let mut tail = vec![0u8; padding as usize];
    tail.extend_from_slice(&len.to_le_bytes());
    tail
}

/// A snapshot file read out as a saved snapshot, a chunk at a time.
pub struct SavedChunks {
    file: SnapshotFile,
    offset: u64,
    digest: ring::digest::Context,
    done: bool,
}

impl SavedChunks {
    pub fn new(file: SnapshotFile) -> SavedChunks {
        SavedChunks { file, offset: 0, digest: ring::digest::Context::new(&ring::digest::SHA256), done: false }
    }

    /// The saved snapshot's size in bytes.
    pub fn size(&self) -> u64 {
        let len = self.file.len();
        len + tail(len).len() as u64 + DIGEST_BYTES
    }

    /// The next at most `SNAPSHOT_CHUNK_BYTES` bytes; None after the last (the tail and the digest). Reads the
    /// snapshot file, which may block (`SnapshotFile::reads_block`).
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let len = self.file.len();
        if self.done {
            return Ok(None);
        }
        if self.offset < len {
            let want = (len - self.offset).min(limits::SNAPSHOT_CHUNK_BYTES as u64) as usize;
            let mut chunk = vec![0; want];
            self.file.read_exact_at(self.offset, &mut chunk)?;
            self.digest.update(&chunk);
            self.offset += want as u64;
            return Ok(Some(chunk));
        }
        let mut last = tail(len);
        self.digest.update(&last);
        last.extend_from_slice(self.digest.clone().finish().as_ref());
        self.done = true;
        Ok(Some(last))
    }
}

/// A saved snapshot opened from a file, checked whole: its size, its digest and its snapshot's meta. The body
/// is checked as it is read (`SnapshotDecoder`).
pub struct Saved {
    /// The first eight bytes of its digest: what tells it from any other saved snapshot.
    pub id: u64,
    pub body: SnapshotBody,
}

/// Opens the saved snapshot at `path`.
pub fn open(path: &Path) -> io::Result<Saved> {
    let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let size = file.metadata()?.len();
    if size < LENGTH_BYTES + DIGEST_BYTES || size % ALIGN != DIGEST_BYTES {
        return Err(invalid(path, format!("is not a saved snapshot ({size} bytes: not 32 past a multiple of 512)")));
    }
    let hashed = size - DIGEST_BYTES;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; limits::SNAPSHOT_CHUNK_BYTES];
    let mut offset = 0;
    while offset < hashed {
        let want = (hashed - offset).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..want], offset)?;
        digest.update(&buf[..want]);
        offset += want as u64;
    }
    let mut stored = [0u8; DIGEST_BYTES as usize];
    file.read_exact_at(&mut stored, hashed)?;
    let computed = digest.finish();
    if computed.as_ref() != stored {
        return Err(invalid(path, "does not match its digest: it is corrupt or incomplete"));
    }
    let mut len = [0u8; LENGTH_BYTES as usize];
    file.read_exact_at(&mut len, hashed - LENGTH_BYTES)?;
    let len = u64::from_le_bytes(len);
    if len + tail(len).len() as u64 != hashed {
        return Err(invalid(path, "gives a snapshot length that does not fit its size"));
    }
    let (_, body) = open_snapshot(SnapshotFile::new(Plain { file, len }, 0))
        .map_err(|e| invalid(path, format!("holds no usable snapshot: {e}")))?;
    let id = u64::from_le_bytes(stored[..8].try_into().expect("eight bytes"));
    Ok(Saved { id, body })
}

/// The first `len` bytes of a file of no disk: a saved snapshot's snapshot file.
struct Plain {
    file: File,
    len: u64,
}

impl SnapshotBytes for Plain {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.len.saturating_sub(offset)).min(buf.len() as u64) as usize;
        self.file.read_at(&mut buf[..want], offset)
    }

    fn keep(&self) -> io::Result<()> {
        Err(io::Error::other("a saved snapshot is not a disk's own"))
    }

    fn reads_block(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::memory::MemorySnapshot;

    fn saved(bytes: &[u8]) -> Vec<u8> {
        let mut chunks = SavedChunks::new(SnapshotFile::new(MemorySnapshot::detached(bytes.to_vec()), 0));
        let expected = chunks.size();
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            assert!(chunk.len() <= limits::SNAPSHOT_CHUNK_BYTES);
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out.len() as u64, expected);
        out
    }

    #[test]
    fn a_saved_snapshot_has_the_size_etcdctl_keeps_and_a_digest_that_is_checked() {
        for len in [0usize, 1, 503, 504, 505, 4096] {
            let out = saved(&vec![7u8; len]);
            assert_eq!(out.len() % 512, 32, "{len} bytes");
            assert_eq!(&out[..len], &vec![7u8; len][..]);
            let digest = ring::digest::digest(&ring::digest::SHA256, &out[..out.len() - 32]);
            assert_eq!(&out[out.len() - 32..], digest.as_ref());
            let stored_len = u64::from_le_bytes(out[out.len() - 40..out.len() - 32].try_into().unwrap());
            assert_eq!(stored_len, len as u64);
        }

        // Opening checks the size and the digest before anything else.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saved.db");
        let mut out = saved(b"not a snapshot file");
        std::fs::write(&path, &out[..out.len() - 1]).unwrap();
        let e = open(&path).err().expect("a truncated file");
        assert!(e.to_string().contains("not 32 past a multiple of 512"), "{e}");
        out[3] ^= 1;
        std::fs::write(&path, &out).unwrap();
        let e = open(&path).err().expect("a changed byte");
        assert!(e.to_string().contains("digest"), "{e}");
        out[3] ^= 1;
        std::fs::write(&path, &out).unwrap();
        let e = open(&path).err().expect("an intact file that holds no snapshot");
        assert!(e.to_string().contains("no usable snapshot"), "{e}");
    }
}
