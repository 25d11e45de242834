//! The real disk: RocksDB, one database with a column family per `Cf`, and the snapshot as a file beside it.
//! The only file that names rocksdb.
//!
//! A snapshot file is written as `snapshot.<n>.tmp` in the snapshot dir, synced when finished, and kept by
//! renaming it over `snapshot.bin` and syncing the dir. Readers read through the open file, so a file replaced
//! or removed while it is being sent stays readable until they are done.
//!
//! Writes go to RocksDB's write-ahead log unsynced unless asked; `sync` flushes and syncs that log, which makes
//! every earlier write durable (the log is one ordered stream, so what survives a crash is a prefix).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{Batch, Cf, Disk, Frozen, Op, Pair, Scan, SnapshotBytes, SnapshotFile, SnapshotWrite, Syncs};
use crate::limits;

const SNAPSHOT_FILE: &str = "snapshot.bin";

fn db_err(e: rocksdb::Error) -> io::Error {
    io::Error::other(e)
}

pub struct RocksDisk {
    db: DB,
    path: PathBuf,
    snapshot_dir: PathBuf,
    /// Numbers the snapshot files being written.
    next_snapshot: AtomicU64,
    id: u64,
}

impl RocksDisk {
    /// Opens (or creates, when `create` is set) the database in `dir`; the snapshot file lives in
    /// `snapshot_dir`.
    pub fn open(dir: &Path, snapshot_dir: &Path, create: bool) -> io::Result<RocksDisk> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.create_missing_column_families(create);
        opts.set_max_background_jobs(2);
        // Table files kept open: part of the replica's open-file budget (`cluster::listen`).
        opts.set_max_open_files(limits::ROCKSDB_OPEN_FILES_MAX as i32);
        opts.set_db_write_buffer_size(limits::ROCKSDB_TOTAL_WRITE_BUFFER_BYTES);
        opts.set_max_total_wal_size(limits::ROCKSDB_WAL_BYTES_MAX);
        let cache = rocksdb::Cache::new_lru_cache(limits::ROCKSDB_BLOCK_CACHE_BYTES);
        let cf_opts = || {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_size(limits::ROCKSDB_WRITE_BUFFER_BYTES);
            o.set_max_write_buffer_number(2);
            o
        };
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_opts()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(db_err)?;
        std::fs::create_dir_all(snapshot_dir)?;
        // Snapshot files a crash left unfinished or unkept.
        for entry in std::fs::read_dir(snapshot_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(RocksDisk {
            db,
            path: dir.to_path_buf(),
            snapshot_dir: snapshot_dir.to_path_buf(),
            next_snapshot: AtomicU64::new(0),
            id: super::new_disk_id(),
        })
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("column families are created at open")
    }
}

/// Turns RocksDB's iterator items into the disk's.
fn pairs<'a>(iter: impl Iterator<Item = Result<Pair, rocksdb::Error>> + 'a) -> Scan<'a> {
    Box::new(iter.map(|item| item.map_err(db_err)))
}

impl Disk for RocksDisk {
    fn get(&self, cf: Cf, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key).map_err(db_err)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: Batch, sync: bool) -> io::Result<()> {
        let mut rocks = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put { cf, key, value } => rocks.put_cf(self.cf(cf), key, value),
                Op::Delete { cf, key } => rocks.delete_cf(self.cf(cf), key),
                Op::DeleteRange { cf, from, to } => rocks.delete_range_cf(self.cf(cf), from, to),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(rocks, &opts).map_err(db_err)
    }

    fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(db_err)
    }

    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_> {
        pairs(self.db.iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward)))
    }

    fn last(&self, cf: Cf) -> io::Result<Option<Pair>> {
        self.db.iterator_cf(self.cf(cf), IteratorMode::End).next().transpose().map_err(db_err)
    }

    fn frozen(&self) -> Box<dyn Frozen + '_> {
        Box::new(RocksFrozen { disk: self, snapshot: self.db.snapshot() })
    }

    fn create_snapshot(&self) -> io::Result<Box<dyn SnapshotWrite>> {
        let n = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshot_dir.join(format!("snapshot.{n}.tmp"));
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        let dir = self.snapshot_dir.clone();
        Ok(Box::new(RocksSnapshotWrite { file: Some(file), path, dir, len: 0, disk: self.id }))
    }

    fn snapshot(&self) -> io::Result<Option<SnapshotFile>> {
        match File::open(self.snapshot_dir.join(SNAPSHOT_FILE)) {
            Ok(file) => {
                let len = file.metadata()?.len();
                let place = Mutex::new(Place::Kept);
                let dir = self.snapshot_dir.clone();
                Ok(Some(SnapshotFile::new(RocksSnapshot { file, len, place, dir }, self.id)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn size_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|entries| entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    fn syncs(&self) -> Syncs {
        Syncs::Blocking
    }

    fn id(&self) -> u64 {
        self.id
    }
}

struct RocksFrozen<'a> {
    disk: &'a RocksDisk,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl Frozen for RocksFrozen<'_> {
    /// A full scan: it stays out of the block cache, which serves the hot reads.
    fn scan(&self, cf: Cf, from: &[u8]) -> Scan<'_> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        pairs(self.snapshot.iterator_cf_opt(self.disk.cf(cf), opts, IteratorMode::From(from, Direction::Forward)))
    }
}

/// A snapshot file being written; removed if dropped unfinished.
struct RocksSnapshotWrite {
    file: Option<File>,
    path: PathBuf,
    dir: PathBuf,
    len: u64,
    disk: u64,
}

impl SnapshotWrite for RocksSnapshotWrite {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_ref().expect("the file is open until finished");
        file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<SnapshotFile> {
        let file = self.file.take().expect("the file is open until finished");
        file.sync_all()?;
        let place = Mutex::new(Place::Temporary(std::mem::take(&mut self.path)));
        Ok(SnapshotFile::new(RocksSnapshot { file, len: self.len, place, dir: self.dir.clone() }, self.disk))
    }
}

impl Drop for RocksSnapshotWrite {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a finished snapshot file is.
enum Place {
    /// Under its temporary name: removed when dropped.
    Temporary(PathBuf),
    /// Kept as the disk's snapshot (it may have been replaced since).
    Kept,
}

struct RocksSnapshot {
    file: File,
    len: u64,
    /// std Mutex: held across the rename and the dir sync of `keep` only.
    place: Mutex<Place>,
    dir: PathBuf,
}

impl SnapshotBytes for RocksSnapshot {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn keep(&self) -> io::Result<()> {
        let mut place = self.place.lock().expect("snapshot place poisoned");
        if let Place::Temporary(path) = &*place {
            std::fs::rename(path, self.dir.join(SNAPSHOT_FILE))?;
            File::open(&self.dir)?.sync_all()?;
            *place = Place::Kept;
        }
        Ok(())
    }

    fn reads_block(&self) -> bool {
        true
    }
}

impl Drop for RocksSnapshot {
    fn drop(&mut self) {
        if let Ok(Place::Temporary(path)) = self.place.get_mut() {
            let _ = std::fs::remove_file(path);
        }
    }
}
