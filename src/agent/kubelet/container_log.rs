//! Container log files in the CRI format, written by runtimes that capture output themselves (the process
//! runtime's shim) and read back by the kubelet endpoint with `kubectl logs`' options.
//!
//! A log is a file of records, one a line: `<RFC 3339, nanoseconds, UTC> <stdout|stderr> <F|P> <content>`.
//! `F` ends a line of output; `P` is a piece of one (a line longer than `CONTAINER_LOG_LINE_BYTES_MAX`, or output
//! that ended without a newline), whose content is served without a newline. Once the file outgrows
//! `CONTAINER_LOG_BYTES_MAX` it is renamed to `<file>.1` (replacing an older one) and a new file is begun, so an
//! attempt's log takes at most twice that.
//!
//! Invariants:
//! - A record is written with one `write` on a file opened for appending, so a reader sees whole records, and
//!   one that is still being written (no newline yet) is left for the next read.
//! - Reading follows kubelet's order: `tailLines` picks the last records of the file (and its rotated
//!   predecessor), then records older than `since` are skipped, then the output (timestamps included) is cut at
//!   `limitBytes`, which ends the read.
//! - A reader keeps the files it opened: a rotation while it follows loses nothing unless the log rotates twice
//!   between two reads.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::limits;

/// Which output a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub stream: Stream,
    /// A piece of a line (`P`): served without a newline.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Appends `record` as one line of a log file to `out`.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let tag = if record.partial { "P" } else { "F" };
    let _ = write!(out, "{:.9} {} {tag} ", record.time, record.stream.as_str());
    out.extend_from_slice(record.content);
    out.push(b'\n');
}

/// Reads one line of a log file (without its newline); `None` if it is not a record.
pub fn decode(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time: Timestamp = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Record { time, stream, partial, content: parts.next().unwrap_or_default() })
}

/// The rotated predecessor of a log file.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Writes a log file, rotating it at `CONTAINER_LOG_BYTES_MAX`.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    record: Vec<u8>,
}

impl LogWriter {
    /// Opens (or creates) the log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, size, record: Vec::new() })
    }

    /// Appends one record stamped with the current time.
    pub fn write(&mut self, stream: Stream, partial: bool, content: &[u8]) -> io::Result<()> {
        self.record.clear();
        encode(&Record { time: Timestamp::now(), stream, partial, content }, &mut self.record);
        self.file.write_all(&self.record)?;
        self.size += self.record.len() as u64;
        if self.size >= limits::CONTAINER_LOG_BYTES_MAX {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
        }
        Ok(())
    }
}

/// Splits a stream of output into records: whole lines, and pieces of lines longer than
/// `CONTAINER_LOG_LINE_BYTES_MAX` or left without a newline at the end.
pub fn split_lines(mut input: impl Read, mut emit: impl FnMut(bool, &[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; limits::CONTAINER_LOG_LINE_BYTES_MAX];
    let mut len = 0;
    loop {
        let n = match input.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if len > 0 {
                    emit(true, &buf[..len]);
                }
                return Err(e);
            }
        };
        if n == 0 {
            if len > 0 {
                emit(true, &buf[..len]);
            }
            return Ok(());
        }
        len += n;
        let mut start = 0;
        while let Some(at) = buf[start..len].iter().position(|b| *b == b'\n') {
            emit(false, &buf[start..start + at]);
            start += at + 1;
        }
        if start == 0 && len == buf.len() {
            emit(true, &buf[..len]);
            len = 0;
        } else {
            buf.copy_within(start..len, 0);
            len -= start;
        }
    }
}

/// What a kubelet log request asks for (`PodLogOptions`, less `follow` and `previous`, which pick the file and
/// how long to read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
}

/// Where a read stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The output budget of this call is used up; there may be more.
    More,
    /// Everything written so far has been read.
    Idle,
    /// `limitBytes` is reached: nothing more will be served.
    Done,
}

/// A reader of one log file (and its rotated predecessor) that serves it as `kubectl logs` shows it, and can
/// keep reading what is appended.
pub struct LogCursor {
    path: PathBuf,
    /// Files still to be read after the current one (the live file after the rotated one).
    queued: Vec<File>,
    current: File,
    /// The current file's identity, to notice that the live file was rotated away under it.
    current_id: (u64, u64),
    /// Bytes read past the last complete record.
    pending: Vec<u8>,
    skip_records: u64,
    options: LogOptions,
    served_bytes: u64,
    at_line_start: bool,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn count_records(file: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; limits::KUBELET_LOG_CHUNK_BYTES];
    let mut records = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(records);
        }
        records += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

impl LogCursor {
    /// Opens the log at `path` (with its rotated predecessor, if there is one).
    pub fn open(path: &Path, options: LogOptions) -> io::Result<LogCursor> {
        let live = File::open(path)?;
        let mut files = Vec::new();
        match File::open(rotated(path)) {
            Ok(old) => files.push(old),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files.push(live);
        let mut skip_records = 0;
        if let Some(tail) = options.tail_lines {
            let mut total = 0;
            for file in &mut files {
                total += count_records(file)?;
            }
            skip_records = total.saturating_sub(tail);
            for file in &mut files {
                io::Seek::rewind(file)?;
            }
        }
        let mut files = files.into_iter();
        let current = files.next().expect("the live file is there");
        let queued: Vec<File> = files.collect();
        let current_id = identity(&current.metadata()?);
        Ok(LogCursor {
            path: path.to_path_buf(),
            queued,
            current,
            current_id,
            pending: Vec::new(),
            skip_records,
            options,
            served_bytes: 0,
            at_line_start: true,
        })
    }

    /// Appends to `out` what there is to serve, up to about `budget` bytes more.
    pub fn read(&mut self, out: &mut Vec<u8>, budget: usize) -> io::Result<Progress> {
        let mut chunk = vec![0u8; limits::KUBELET_LOG_CHUNK_BYTES];
        let start = out.len();
        while out.len() - start < budget {
            let n = self.current.read(&mut chunk)?;
            if n > 0 {
                self.pending.extend_from_slice(&chunk[..n]);
                if self.serve_pending(out) {
                    return Ok(Progress::Done);
                }
                continue;
            }
            if !self.queued.is_empty() {
                // A rotated file holds whole records only.
                self.pending.clear();
                self.current = self.queued.remove(0);
                self.current_id = identity(&self.current.metadata()?);
                continue;
            }
            // At the end of the live file: if it was rotated away, what is left of it was read just now, so
            // the new live file is next.
            match std::fs::metadata(&self.path) {
                Ok(meta) if identity(&meta) != self.current_id => {
                    let n = self.current.read(&mut chunk)?;
                    if n > 0 {
                        // Written between the end seen above and the rotation.
                        self.pending.extend_from_slice(&chunk[..n]);
                        if self.serve_pending(out) {
                            return Ok(Progress::Done);
                        }
                        continue;
                    }
                    self.pending.clear();
                    self.current = File::open(&self.path)?;
                    self.current_id = identity(&self.current.metadata()?);
                }
                _ => return Ok(Progress::Idle),
            }
        }
        Ok(Progress::More)
    }

    /// Serves the complete records in `pending`; true once `limitBytes` is reached.
    fn serve_pending(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else { return false };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        for line in complete[..complete.len() - 1].split(|b| *b == b'\n') {
            if self.skip_records > 0 {
                self.skip_records -= 1;
                continue;
            }
            let Some(record) = decode(line) else { continue };
            if self.options.since.is_some_and(|since| record.time < since) {
                continue;
            }
            let before = out.len();
            if self.options.timestamps && self.at_line_start {
                let _ = write!(out, "{:.9} ", record.time);
            }
            out.extend_from_slice(record.content);
            if !record.partial {
                out.push(b'\n');
            }
            self.at_line_start = !record.partial;
            let written = (out.len() - before) as u64;
            if let Some(limit) = self.options.limit_bytes {
                if self.served_bytes + written >= limit {
                    out.truncate(before + (limit - self.served_bytes) as usize);
                    self.served_bytes = limit;
                    return true;
                }
            }
            self.served_bytes += written;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::new(1_767_225_600 + second, 5).unwrap()
    }

    fn record(time: Timestamp, stream: Stream, partial: bool, content: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&Record { time, stream, partial, content: content.as_bytes() }, &mut out);
        out
    }

    /// A log of five lines, one a second from second 0, the third in two pieces.
    fn five_lines(dir: &Path) -> PathBuf {
        let path = dir.join("log");
        let mut bytes = Vec::new();
        bytes.extend(record(at(0), Stream::Stdout, false, "zero"));
        bytes.extend(record(at(1), Stream::Stderr, false, "one"));
        bytes.extend(record(at(2), Stream::Stdout, true, "two "));
        bytes.extend(record(at(2), Stream::Stdout, false, "continued"));
        bytes.extend(record(at(3), Stream::Stdout, false, "three"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn read_all(path: &Path, options: LogOptions) -> String {
        let mut cursor = LogCursor::open(path, options).unwrap();
        let mut out = Vec::new();
        loop {
            match cursor.read(&mut out, 7).unwrap() {
                Progress::More => continue,
                Progress::Idle | Progress::Done => return String::from_utf8(out).unwrap(),
            }
        }
    }

    #[test]
    fn records_are_cri_lines() {
        let line = record(at(0), Stream::Stderr, true, "a b  c");
        assert_eq!(String::from_utf8_lossy(&line), "2026-01-01T00:00:00.000000005Z stderr P a b  c\n");
        let decoded = decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(decoded, Record { time: at(0), stream: Stream::Stderr, partial: true, content: b"a b  c" });
        assert_eq!(decode(b"2026-01-01T00:00:00Z stdout F ").unwrap().content, b"");
        assert!(decode(b"garbage").is_none());
        assert!(decode(b"2026-01-01T00:00:00Z stdin F x").is_none());
        assert!(decode(b"2026-01-01T00:00:00Z stdout X x").is_none());
    }

    /// Gives its input a few bytes at a time.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn output_splits_into_lines_and_pieces() {
        let split = |input: &[u8]| {
            let mut records = Vec::new();
            split_lines(Trickle(input), |partial, content| records.push((partial, content.len()))).unwrap();
            records
        };
        assert_eq!(split(b"ab\n\ncd\n"), [(false, 2), (false, 0), (false, 2)]);
        assert_eq!(split(b"ab\nprompt: "), [(false, 2), (true, 8)]);
        let max = limits::CONTAINER_LOG_LINE_BYTES_MAX;
        let mut long = vec![b'x'; max * 2 + 10];
        long.push(b'\n');
        assert_eq!(split(&long), [(true, max), (true, max), (false, 10)]);
    }

    #[test]
    fn tail_since_limit_and_timestamps_select_as_the_kubelet_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = five_lines(dir.path());
        assert_eq!(read_all(&path, LogOptions::default()), "zero\none\ntwo continued\nthree\n");
        let tail = |n| read_all(&path, LogOptions { tail_lines: Some(n), ..Default::default() });
        assert_eq!(tail(1), "three\n");
        // Records are counted, as the kubelet counts the file's lines: a piece of a line is one.
        assert_eq!(tail(2), "continued\nthree\n");
        assert_eq!(tail(0), "");
        assert_eq!(tail(100), "zero\none\ntwo continued\nthree\n");
        let since = |s| read_all(&path, LogOptions { since: Some(s), ..Default::default() });
        assert_eq!(since(at(1)), "one\ntwo continued\nthree\n");
        assert_eq!(since(at(3).checked_add(jiff::SignedDuration::from_nanos(1)).unwrap()), "");
        let limit = |n| read_all(&path, LogOptions { limit_bytes: Some(n), ..Default::default() });
        assert_eq!(limit(7), "zero\non");
        assert_eq!(limit(5), "zero\n");
        let stamped = read_all(&path, LogOptions { timestamps: true, since: Some(at(2)), ..Default::default() });
        assert_eq!(stamped, "2026-01-01T00:00:02.000000005Z two continued\n2026-01-01T00:00:03.000000005Z three\n");
        let both = LogOptions { tail_lines: Some(3), since: Some(at(3)), timestamps: true, limit_bytes: Some(33) };
        assert_eq!(read_all(&path, both), "2026-01-01T00:00:03.000000005Z th");
    }

    #[test]
    fn a_rotated_log_is_read_first_and_following_crosses_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(rotated(&path), record(at(0), Stream::Stdout, false, "old")).unwrap();
        std::fs::write(&path, record(at(1), Stream::Stdout, false, "new")).unwrap();
        assert_eq!(read_all(&path, LogOptions::default()), "old\nnew\n");
        assert_eq!(read_all(&path, LogOptions { tail_lines: Some(1), ..Default::default() }), "new\n");

        let mut cursor = LogCursor::open(&path, LogOptions::default()).unwrap();
        let mut out = Vec::new();
        assert_eq!(cursor.read(&mut out, 1 << 20).unwrap(), Progress::Idle);
        // A record still being written is left for the next read.
        let appended = record(at(2), Stream::Stdout, false, "appended");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&appended[..10]).unwrap();
        assert_eq!(cursor.read(&mut out, 1 << 20).unwrap(), Progress::Idle);
        assert_eq!(String::from_utf8_lossy(&out), "old\nnew\n");
        file.write_all(&appended[10..]).unwrap();
        // The writer rotates: what it wrote before is read from the old file, then the new one.
        file.write_all(&record(at(3), Stream::Stdout, false, "last before rotation")).unwrap();
        std::fs::rename(&path, rotated(&path)).unwrap();
        std::fs::write(&path, record(at(4), Stream::Stdout, false, "after")).unwrap();
        assert_eq!(cursor.read(&mut out, 1 << 20).unwrap(), Progress::Idle);
        assert_eq!(String::from_utf8_lossy(&out), "old\nnew\nappended\nlast before rotation\nafter\n");
    }

    #[test]
    fn the_writer_rotates_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut writer = LogWriter::open(&path).unwrap();
        let line = vec![b'y'; limits::CONTAINER_LOG_LINE_BYTES_MAX];
        let per_file = limits::CONTAINER_LOG_BYTES_MAX as usize / (line.len() + 40) + 1;
        for _ in 0..per_file + 3 {
            writer.write(Stream::Stdout, false, &line).unwrap();
        }
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(
            old >= limits::CONTAINER_LOG_BYTES_MAX && old < limits::CONTAINER_LOG_BYTES_MAX + line.len() as u64 * 2
        );
        let served = read_all(&path, LogOptions::default());
        assert_eq!(served.lines().count(), per_file + 3);
    }
}
