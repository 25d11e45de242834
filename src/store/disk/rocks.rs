//! The real disk: RocksDB, one database with a column family per `Cf`, and the snapshot as a file beside it.
//! The only file that names rocksdb.
//!
//! Writes go to RocksDB's write-ahead log unsynced unless asked; `sync` flushes and syncs that log, which makes
//! every earlier write durable (the log is one ordered stream, so what survives a crash is a prefix).

use std::io;
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{Batch, Cf, Disk, Frozen, Op, Pair, Scan, Syncs};
use crate::limits;

const SNAPSHOT_FILE: &str = "snapshot.bin";

fn db_err(e: rocksdb::Error) -> io::Error {
    io::Error::other(e)
}

pub struct RocksDisk {
    db: DB,
    path: PathBuf,
    snapshot_dir: PathBuf,
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
        Ok(RocksDisk { db, path: dir.to_path_buf(), snapshot_dir: snapshot_dir.to_path_buf() })
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

    /// Written to a temporary file, synced, renamed over the old one, and the directory synced.
    fn save_snapshot(&self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = self.snapshot_dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.snapshot_dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.snapshot_dir)?.sync_all()
    }

    fn load_snapshot(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.snapshot_dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
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
