//! The audit log: one line for every write the API answers (create, update, patch, delete, deletecollection;
//! `pods/exec` and `pods/attach` are creates), refused ones included, in kube-apiserver's audit format
//! (`audit.k8s.io/v1` Events at level Metadata, stage ResponseComplete, one JSON object a line): who (the
//! authenticated user, the user it asked to impersonate, its user agent), what (verb, request URI and the
//! object), when (received and completed) and the result (the response code). It sits between authentication
//! and authorization: requests refused for want of credentials (401) are not recorded, refused ones (403) are.
//! The replica's own controllers write through the same router, so their writes are in the leader's log too.
//!
//! Lines go through a bounded queue to one writer task; a request waits for room in the queue (as
//! kube-apiserver's blocking log backend does) rather than going unrecorded. The file is `audit.log` in the data
//! dir, rotated at `AUDIT_LOG_BYTES_MAX` to `audit.log.1` (older files shifting up), with
//! `AUDIT_LOG_FILES_KEPT` rotated files kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::instrument;
use crate::apis::time;
use crate::limits;
use crate::security::authn::User;
use crate::security::rbac::Attributes;

/// Where the router's writes are recorded.
#[derive(Clone)]
pub struct Audit {
    lines: mpsc::Sender<Vec<u8>>,
}

impl Audit {
    /// An audit log at `path`, written by a task spawned here until every `Audit` is dropped.
    pub fn open(path: PathBuf) -> std::io::Result<Audit> {
        let mut file = Rotating::open(path, limits::AUDIT_LOG_BYTES_MAX, limits::AUDIT_LOG_FILES_KEPT)?;
        let (lines, mut queue) = mpsc::channel::<Vec<u8>>(limits::AUDIT_QUEUE_LINES_MAX);
        tokio::task::spawn_blocking(move || {
            while let Some(line) = queue.blocking_recv() {
                let mut batch = vec![line];
                while let Ok(more) = queue.try_recv() {
                    batch.push(more);
                }
                if let Err(e) = file.write_lines(&batch) {
                    tracing::error!(path = %file.path.display(), error = %e, "cannot write the audit log");
                }
            }
        });
        Ok(Audit { lines })
    }
}

/// The verbs recorded.
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The middleware: answers the request, then records it if it was a write.
pub async fn record(State(audit): State<Audit>, request: Request, next: Next) -> Response {
    let Some(mut event) = event(&request) else { return next.run(request).await };
    let response = next.run(request).await;
    event["responseStatus"] = json!({"metadata": {}, "code": response.status().as_u16()});
    event["stageTimestamp"] = json!(time::now());
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    if audit.lines.send(line).await.is_err() {
        tracing::error!(uri = %event["requestURI"], "the audit log's writer has stopped; a write went unrecorded");
    }
    response
}

/// The audit event of `request` as it arrives, if it is a write: all but its outcome.
fn event(request: &Request) -> Option<Value> {
    let asked = instrument::asked(request);
    let Attributes::Resource(asked) = &*asked else { return None };
    if !WRITES.contains(&asked.verb.as_str()) {
        return None;
    }
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let user = match request.extensions().get::<User>() {
        Some(user) => json!({"username": user.name, "uid": user.uid, "groups": user.groups}),
        None => json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
    };
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": "ResponseComplete",
        "requestURI": request.uri().to_string(),
        "verb": asked.verb,
        "user": user,
        "userAgent": header("user-agent"),
        "objectRef": {"resource": asked.resource, "namespace": asked.namespace, "name": asked.name,
            "apiGroup": asked.group, "subresource": asked.subresource},
        "requestReceivedTimestamp": time::now(),
    });
    if let Some(name) = header("impersonate-user") {
        event["impersonatedUser"] = json!({"username": name});
    }
    Some(event)
}

/// A file that is rotated when it would pass `max_bytes`.
struct Rotating {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    max_bytes: u64,
    kept: usize,
}

impl Rotating {
    fn open(path: PathBuf, max_bytes: u64, kept: usize) -> std::io::Result<Rotating> {
        let file = append(&path)?;
        let written = file.metadata()?.len();
        Ok(Rotating { path, file, written, max_bytes, kept })
    }

    fn write_lines(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
        if self.written > 0 && self.written + bytes > self.max_bytes {
            self.rotate()?;
        }
        let mut writer = std::io::BufWriter::new(&self.file);
        for line in lines {
            writer.write_all(line)?;
        }
        writer.flush()?;
        self.written += bytes;
        Ok(())
    }

    /// `audit.log.(n-1)` becomes `audit.log.n` (the oldest dropped), `audit.log` becomes `audit.log.1`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| rotated(&self.path, n);
        let _ = std::fs::remove_file(numbered(self.kept));
        for n in (1..self.kept).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_past_its_size_and_keeps_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = Rotating::open(path.clone(), 100, 2).unwrap();
        for i in 0..10 {
            log.write_lines(&[format!("{i:039}\n").into_bytes()]).unwrap();
        }
        // 40 bytes a line, 100 a file: two lines a file; the last two files rotated out are kept.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&path).ends_with(&format!("{:039}\n", 9)));
        assert!(read(&rotated(&path, 1)).starts_with(&format!("{:039}\n", 6)));
        assert!(read(&rotated(&path, 2)).starts_with(&format!("{:039}\n", 4)));
        assert!(!rotated(&path, 3).exists());
        // Reopened, it goes on from the size it found.
        let mut log = Rotating::open(path.clone(), 100, 2).unwrap();
        log.write_lines(&[format!("{:039}\n", 10).into_bytes()]).unwrap();
        assert_eq!(read(&path).lines().count(), 1, "rotated: the line did not fit");
    }
}
