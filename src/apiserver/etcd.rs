//! The etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance) served by every replica.
//!
//! This is the gRPC edge: protobuf messages are validated and translated into the store's own commands here,
//! and results translated back. Bad input is refused with `InvalidArgument` before anything is proposed.
//! Every response carries a header with the cluster id, this member's id, the store revision and the term.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::config::PlantedBugs;
use crate::limits;
use crate::proto::etcd as pb;
use crate::store::command::{self as cmd, Applied, ApplyError, Command, Outcome, ResponseOp};
use crate::store::saved::SavedChunks;
use crate::store::watch::{Batch, WatchError, WatchFilter, Watcher};
use crate::store::{Store, StoreError};

/// One value implementing every etcd service; cheap to clone.
#[derive(Clone)]
pub struct EtcdService {
    store: Store,
    planted_bugs: PlantedBugs,
}

type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl EtcdService {
    pub fn new(store: Store, planted_bugs: PlantedBugs) -> EtcdService {
        if planted_bugs != PlantedBugs::default() {
            tracing::warn!(?planted_bugs, "deliberate bugs are switched on for the chaos suite");
        }
        EtcdService { store, planted_bugs }
    }

    /// Adds every etcd service to a tonic router.
    pub fn routes(self) -> tonic::service::Routes {
        let max = limits::GRPC_MESSAGE_BYTES_MAX;
        tonic::service::Routes::new(pb::kv_server::KvServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(pb::watch_server::WatchServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(pb::lease_server::LeaseServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(pb::cluster_server::ClusterServer::new(self.clone()))
            .add_service(pb::maintenance_server::MaintenanceServer::new(self))
    }

    fn header_at(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.store.cluster_id(),
            member_id: self.store.member_id(),
            revision,
            raft_term: self.store.term(),
        })
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        self.header_at(self.store.revision())
    }

    /// Proposes a command and unwraps its outcome.
    async fn propose(&self, command: Command) -> Result<(i64, Outcome), Status> {
        let Applied { revision, outcome } = self.store.propose(command).await.map_err(store_status)?;
        Ok((revision, outcome.map_err(apply_status)?))
    }
}

pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Unavailable(msg) => Status::unavailable(msg),
        StoreError::Invalid(msg) => Status::invalid_argument(msg),
        e @ StoreError::TooLarge { .. } => Status::invalid_argument(e.to_string()),
        StoreError::Stopped(msg) => Status::unavailable(format!("etcdserver: server stopped: {msg}")),
        e @ StoreError::NotLeader => Status::failed_precondition(e.to_string()),
        e @ StoreError::BadTransferee(_) => Status::invalid_argument(e.to_string()),
    }
}

pub fn apply_status(e: ApplyError) -> Status {
    let msg = e.to_string();
    match e {
        ApplyError::Compacted | ApplyError::FutureRevision => Status::out_of_range(msg),
        ApplyError::LeaseNotFound => Status::not_found(msg),
        ApplyError::LeaseExists => Status::failed_precondition(msg),
        ApplyError::TooManyLeases => Status::resource_exhausted(msg),
        ApplyError::KeyNotFound => Status::invalid_argument(msg),
        ApplyError::Storage(_) => Status::internal(msg),
        ApplyError::Fenced(_) => Status::failed_precondition(msg),
    }
}

// ------------------------------------------------------------------------------------------------------
// Validation and translation of requests

/// Translates a read and checks it (writes are checked by `Store::propose`, for every proposer alike).
pub fn range_op(r: pb::RangeRequest) -> Result<cmd::RangeOp, Status> {
    let sort_order = match r.sort_order() {
        pb::range_request::SortOrder::None => cmd::SortOrder::None,
        pb::range_request::SortOrder::Ascend => cmd::SortOrder::Ascend,
        pb::range_request::SortOrder::Descend => cmd::SortOrder::Descend,
    };
    let sort_target = match r.sort_target() {
        pb::range_request::SortTarget::Key => cmd::SortTarget::Key,
        pb::range_request::SortTarget::Version => cmd::SortTarget::Version,
        pb::range_request::SortTarget::Create => cmd::SortTarget::Create,
        pb::range_request::SortTarget::Mod => cmd::SortTarget::Mod,
        pb::range_request::SortTarget::Value => cmd::SortTarget::Value,
    };
    let op = cmd::RangeOp {
        range: cmd::KeyRange { key: r.key, end: r.range_end },
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    };
    op.check().map_err(|e| Status::invalid_argument(e.0))?;
    Ok(op)
}

pub fn put_op(p: pb::PutRequest) -> cmd::PutOp {
    cmd::PutOp {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

pub fn delete_op(d: pb::DeleteRangeRequest) -> cmd::DeleteOp {
    cmd::DeleteOp { range: cmd::KeyRange { key: d.key, end: d.range_end }, prev_kv: d.prev_kv }
}

fn compare(c: pb::Compare) -> Result<cmd::Compare, Status> {
    use pb::compare::{CompareResult as R, TargetUnion as U};
    let result = match c.result() {
        R::Equal => cmd::CompareResult::Equal,
        R::Greater => cmd::CompareResult::Greater,
        R::Less => cmd::CompareResult::Less,
        R::NotEqual => cmd::CompareResult::NotEqual,
    };
    let target = match (c.target(), c.target_union) {
        (pb::compare::CompareTarget::Version, Some(U::Version(v))) => cmd::CompareTarget::Version(v),
        (pb::compare::CompareTarget::Create, Some(U::CreateRevision(v))) => cmd::CompareTarget::Create(v),
        (pb::compare::CompareTarget::Mod, Some(U::ModRevision(v))) => cmd::CompareTarget::Mod(v),
        (pb::compare::CompareTarget::Value, Some(U::Value(v))) => cmd::CompareTarget::Value(v),
        (pb::compare::CompareTarget::Lease, Some(U::Lease(v))) => cmd::CompareTarget::Lease(v),
        // A zero target is absent on the wire.
        (pb::compare::CompareTarget::Version, None) => cmd::CompareTarget::Version(0),
        (pb::compare::CompareTarget::Create, None) => cmd::CompareTarget::Create(0),
        (pb::compare::CompareTarget::Mod, None) => cmd::CompareTarget::Mod(0),
        (pb::compare::CompareTarget::Value, None) => cmd::CompareTarget::Value(Vec::new()),
        (pb::compare::CompareTarget::Lease, None) => cmd::CompareTarget::Lease(0),
        _ => return Err(Status::invalid_argument("etcdserver: compare target does not match its value")),
    };
    Ok(cmd::Compare { range: cmd::KeyRange { key: c.key, end: c.range_end }, result, target })
}

/// Translates a transaction. Its limits (size, depth, keys written twice) are checked by `Store::propose`;
/// its depth here is bounded by the protobuf decoder's recursion limit.
pub fn txn_op(t: pb::TxnRequest) -> Result<cmd::TxnOp, Status> {
    let compare = t.compare.into_iter().map(compare).collect::<Result<_, _>>()?;
    let branch = |reqs: Vec<pb::RequestOp>| -> Result<Vec<cmd::RequestOp>, Status> {
        reqs.into_iter()
            .map(|r| match r.request {
                Some(pb::request_op::Request::RequestRange(r)) => Ok(cmd::RequestOp::Range(range_op(r)?)),
                Some(pb::request_op::Request::RequestPut(p)) => Ok(cmd::RequestOp::Put(put_op(p))),
                Some(pb::request_op::Request::RequestDeleteRange(d)) => Ok(cmd::RequestOp::Delete(delete_op(d))),
                Some(pb::request_op::Request::RequestTxn(t)) => Ok(cmd::RequestOp::Txn(txn_op(t)?)),
                None => Err(Status::invalid_argument("etcdserver: empty request in txn")),
            })
            .collect()
    };
    Ok(cmd::TxnOp { compare, success: branch(t.success)?, failure: branch(t.failure)? })
}

// ------------------------------------------------------------------------------------------------------
// Translation of results

fn kv(kv: cmd::KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

fn event(e: cmd::Event) -> pb::Event {
    let kind = match e.kind {
        cmd::EventKind::Put => pb::event::EventType::Put,
        cmd::EventKind::Delete => pb::event::EventType::Delete,
    };
    pb::Event { r#type: kind as i32, kv: Some(kv(e.kv)), prev_kv: e.prev_kv.map(kv) }
}

impl EtcdService {
    fn range_response(&self, r: cmd::RangeResult, revision: i64) -> pb::RangeResponse {
        pb::RangeResponse {
            header: self.header_at(revision),
            kvs: r.kvs.into_iter().map(kv).collect(),
            more: r.more,
            count: r.count,
        }
    }

    fn response_op(&self, r: ResponseOp, revision: i64) -> pb::ResponseOp {
        use pb::response_op::Response as R;
        let response = match r {
            ResponseOp::Range(r) => R::ResponseRange(self.range_response(r, revision)),
            ResponseOp::Put { prev_kv } => {
                R::ResponsePut(pb::PutResponse { header: self.header_at(revision), prev_kv: prev_kv.map(kv) })
            }
            ResponseOp::Delete { deleted, prev_kvs } => R::ResponseDeleteRange(pb::DeleteRangeResponse {
                header: self.header_at(revision),
                deleted,
                prev_kvs: prev_kvs.into_iter().map(kv).collect(),
            }),
            ResponseOp::Txn(t) => R::ResponseTxn(self.txn_response(t, revision)),
        };
        pb::ResponseOp { response: Some(response) }
    }

    fn txn_response(&self, t: cmd::TxnResult, revision: i64) -> pb::TxnResponse {
        pb::TxnResponse {
            header: self.header_at(revision),
            succeeded: t.succeeded,
            responses: t.responses.into_iter().map(|r| self.response_op(r, revision)).collect(),
        }
    }
}

fn unexpected(outcome: Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

// ------------------------------------------------------------------------------------------------------
// KV

#[tonic::async_trait]
impl pb::kv_server::Kv for EtcdService {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let req = req.into_inner();
        let serializable = req.serializable;
        let op = range_op(req)?;
        if !serializable && !self.planted_bugs.stale_follower_reads {
            self.store.read_index().await.map_err(store_status)?;
        }
        let (revision, result) = self.store.range(&op).await.map_err(apply_status)?;
        Ok(Response::new(self.range_response(result, revision)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let op = put_op(req.into_inner());
        let want_prev = op.prev_kv;
        match self.propose(Command::Put(op)).await? {
            (revision, Outcome::Response(ResponseOp::Put { prev_kv })) => Ok(Response::new(pb::PutResponse {
                header: self.header_at(revision),
                prev_kv: prev_kv.filter(|_| want_prev).map(kv),
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let op = delete_op(req.into_inner());
        match self.propose(Command::Delete(op)).await? {
            (revision, Outcome::Response(ResponseOp::Delete { deleted, prev_kvs })) => {
                Ok(Response::new(pb::DeleteRangeResponse {
                    header: self.header_at(revision),
                    deleted,
                    prev_kvs: prev_kvs.into_iter().map(kv).collect(),
                }))
            }
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let op = txn_op(req.into_inner())?;
        match self.propose(Command::Txn(op)).await? {
            (revision, Outcome::Response(ResponseOp::Txn(t))) => Ok(Response::new(self.txn_response(t, revision))),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = req.into_inner().revision;
        let (revision, _) = self.propose(Command::Compact { revision }).await?;
        Ok(Response::new(pb::CompactionResponse { header: self.header_at(revision) }))
    }
}

// ------------------------------------------------------------------------------------------------------
// Watch

/// One watcher of a stream: the store's cursor, and whether it asked for progress notifications.
struct StreamWatcher {
    watcher: Watcher,
    progress_notify: bool,
    /// The client reassembles fragments: a response larger than `WATCH_FRAGMENT_BYTES` goes in parts.
    fragment: bool,
}

/// A watch response's events in the responses that carry them: one, or for a watcher that asked for fragments
/// (as etcd's `fragment` option), parts of at most `WATCH_FRAGMENT_BYTES` (at least one event each), every part
/// but the last marked as a fragment.
fn fragments(events: Vec<pb::Event>, fragment: bool) -> Vec<(Vec<pb::Event>, bool)> {
    use prost::Message;
    if !fragment || events.iter().map(Message::encoded_len).sum::<usize>() <= limits::WATCH_FRAGMENT_BYTES {
        return vec![(events, false)];
    }
    let mut parts: Vec<(Vec<pb::Event>, bool)> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let len = e.encoded_len();
        match parts.last_mut() {
            Some((part, _)) if bytes + len <= limits::WATCH_FRAGMENT_BYTES => part.push(e),
            _ => {
                parts.push((vec![e], true));
                bytes = 0;
            }
        }
        bytes += len;
    }
    if let Some((_, more)) = parts.last_mut() {
        *more = false;
    }
    parts
}

/// Why a watch stream ends before its client closes it.
#[derive(Debug)]
enum StreamEnd {
    /// The client went away: there is no one to tell.
    ClientGone,
    /// The stream cannot go on; the client gets this status.
    Failed(Status),
}

#[tonic::async_trait]
impl pb::watch_server::Watch for EtcdService {
    type WatchStream = GrpcStream<pb::WatchResponse>;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(limits::WATCH_STREAM_QUEUE_MAX);
        tokio::spawn(self.clone().watch_session(req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type WatchTx = mpsc::Sender<Result<pb::WatchResponse, Status>>;

async fn send(tx: &WatchTx, resp: pb::WatchResponse) -> Result<(), StreamEnd> {
    tx.send(Ok(resp)).await.map_err(|_| StreamEnd::ClientGone)
}

/// The response that cancels watcher `id` because it cannot go on: a compaction carries the compact revision
/// (clients take it for `ErrCompacted` and re-list); a storage fault carries its reason and no compact revision.
fn watch_canceled(header: Option<pb::ResponseHeader>, id: i64, e: &WatchError) -> pb::WatchResponse {
    let (compact_revision, cancel_reason) = match e {
        WatchError::Compacted { compact_revision, .. } => (*compact_revision, ApplyError::Compacted.to_string()),
        WatchError::Storage(_) | WatchError::Stopped => (0, format!("etcdserver: {e}")),
    };
    pb::WatchResponse { header, watch_id: id, canceled: true, compact_revision, cancel_reason, ..Default::default() }
}

impl EtcdService {
    /// Serves one watch stream until its client closes it; a stream that cannot go on ends with a status.
    async fn watch_session(self, incoming: Streaming<pb::WatchRequest>, tx: WatchTx) {
        match self.serve_watchers(incoming, &tx).await {
            Ok(()) | Err(StreamEnd::ClientGone) => {}
            Err(StreamEnd::Failed(status)) => {
                tracing::warn!(error = %status.message(), "watch stream ended on an error");
                let _ = tx.send(Err(status)).await;
            }
        }
    }

    /// The stream's watchers each pull one batch whenever the store's revision moves, in turns, until every
    /// one has caught up; requests from the client are served in between.
    async fn serve_watchers(&self, mut incoming: Streaming<pb::WatchRequest>, tx: &WatchTx) -> Result<(), StreamEnd> {
        let mut watchers: BTreeMap<i64, StreamWatcher> = BTreeMap::new();
        let mut next_id = 0i64;
        // The planted bug, when switched on, drops one event after the term this stream started in ends.
        let mut planted_skip = self.planted_bugs.skip_watch_event_after_leader_change.then(|| self.store.term());
        let mut revisions = self.store.revisions();
        let mut progress = tokio::time::interval(Duration::from_millis(limits::WATCH_PROGRESS_INTERVAL_MS));
        progress.tick().await;
        loop {
            let behind = self.deliver(&mut watchers, tx, &mut planted_skip).await?;
            tokio::select! {
                msg = incoming.next() => {
                    let request = match msg {
                        Some(Ok(r)) => r,
                        Some(Err(_)) | None => return Ok(()),
                    };
                    let current = revisions.current();
                    self.handle_watch_request(request, &mut watchers, &mut next_id, current, tx).await?;
                }
                changed = revisions.changed() => if let Err(e) = changed {
                    return Err(StreamEnd::Failed(Status::unavailable(format!("etcdserver: {e}"))));
                },
                _ = progress.tick() => {
                    let current = revisions.current();
                    let idle = watchers.iter().filter(|(_, w)| w.progress_notify && !w.watcher.is_behind());
                    for (id, _) in idle {
                        send(tx, pb::WatchResponse { header: self.header_at(current), watch_id: *id, ..Default::default() }).await?;
                    }
                }
                () = std::future::ready(()), if behind => {}
                () = tx.closed() => return Err(StreamEnd::ClientGone),
            }
        }
    }

    /// Sends one batch of pending events per watcher; returns whether some watcher is still behind. A watcher
    /// that cannot go on is canceled with its reason.
    async fn deliver(
        &self,
        watchers: &mut BTreeMap<i64, StreamWatcher>,
        tx: &WatchTx,
        planted_skip: &mut Option<u64>,
    ) -> Result<bool, StreamEnd> {
        let mut behind = false;
        let mut ended = Vec::new();
        for (id, w) in watchers.iter_mut().filter(|(_, w)| w.watcher.is_behind()) {
            let Batch { mut events, revision } = match w.watcher.pull() {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(e) => {
                    ended.push((*id, e));
                    continue;
                }
            };
            if planted_skip.is_some_and(|term| term != self.store.term()) && !events.is_empty() {
                events.remove(0);
                *planted_skip = None;
            }
            behind |= w.watcher.is_behind();
            if !events.is_empty() {
                let header = self.header_at(revision);
                for (events, more) in fragments(events.into_iter().map(event).collect(), w.fragment) {
                    let response =
                        pb::WatchResponse { header, watch_id: *id, events, fragment: more, ..Default::default() };
                    send(tx, response).await?;
                }
            }
        }
        for (id, e) in ended {
            if let WatchError::Storage(_) = e {
                tracing::warn!(error = %e, watch_id = id, "watch canceled: its history cannot be read");
            }
            watchers.remove(&id);
            send(tx, watch_canceled(self.header(), id, &e)).await?;
        }
        Ok(behind)
    }

    async fn handle_watch_request(
        &self,
        request: pb::WatchRequest,
        watchers: &mut BTreeMap<i64, StreamWatcher>,
        next_id: &mut i64,
        current: i64,
        tx: &WatchTx,
    ) -> Result<(), StreamEnd> {
        use pb::watch_request::RequestUnion as U;
        let resp = match request.request_union {
            Some(U::CreateRequest(c)) => self.create_watcher(c, watchers, next_id, current),
            Some(U::CancelRequest(c)) => {
                watchers.remove(&c.watch_id);
                pb::WatchResponse { header: self.header(), watch_id: c.watch_id, canceled: true, ..Default::default() }
            }
            Some(U::ProgressRequest(_)) => {
                // Everything below the slowest watcher's next revision has been delivered.
                let upto =
                    watchers.values().map(|w| w.watcher.next_revision() - 1).min().unwrap_or(current).min(current);
                pb::WatchResponse { header: self.header_at(upto), watch_id: -1, ..Default::default() }
            }
            None => return Ok(()),
        };
        send(tx, resp).await
    }

    fn create_watcher(
        &self,
        c: pb::WatchCreateRequest,
        watchers: &mut BTreeMap<i64, StreamWatcher>,
        next_id: &mut i64,
        current: i64,
    ) -> pb::WatchResponse {
        let refuse = |reason: &str, id: i64| pb::WatchResponse {
            header: self.header(),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if c.key.is_empty() || c.key.len() > limits::KEY_BYTES_MAX || c.range_end.len() > limits::KEY_BYTES_MAX {
            return refuse("etcdserver: bad watch key", -1);
        }
        if watchers.len() >= limits::WATCHERS_PER_STREAM_MAX {
            return refuse("etcdserver: too many watchers on this stream", -1);
        }
        let id = if c.watch_id != 0 {
            if watchers.contains_key(&c.watch_id) {
                return refuse("etcdserver: watch id already in use", c.watch_id);
            }
            c.watch_id
        } else {
            while watchers.contains_key(next_id) {
                *next_id += 1;
            }
            *next_id
        };
        let filters = c.filters();
        let (mut no_put, mut no_delete) = (false, false);
        for f in filters {
            match f {
                pb::watch_create_request::FilterType::Noput => no_put = true,
                pb::watch_create_request::FilterType::Nodelete => no_delete = true,
            }
        }
        let filter = WatchFilter {
            range: cmd::KeyRange { key: c.key, end: c.range_end },
            prev_kv: c.prev_kv,
            no_put,
            no_delete,
        };
        let from = if c.start_revision > 0 { c.start_revision } else { current + 1 };
        watchers.insert(
            id,
            StreamWatcher {
                watcher: self.store.watch(filter, from),
                progress_notify: c.progress_notify,
                fragment: c.fragment,
            },
        );
        pb::WatchResponse { header: self.header_at(current), watch_id: id, created: true, ..Default::default() }
    }
}

// ------------------------------------------------------------------------------------------------------
// Lease

#[tonic::async_trait]
impl pb::lease_server::Lease for EtcdService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.id < 0 {
            return Err(Status::invalid_argument("etcdserver: lease id must be positive"));
        }
        let ttl = req.ttl.clamp(limits::LEASE_TTL_SECS_MIN, limits::LEASE_TTL_SECS_MAX);
        let id = if req.id != 0 { req.id } else { rand::random::<i64>().checked_abs().unwrap_or(1).max(1) };
        match self.propose(Command::LeaseGrant { id, ttl }).await? {
            (revision, Outcome::LeaseGranted { id, ttl }) => Ok(Response::new(pb::LeaseGrantResponse {
                header: self.header_at(revision),
                id,
                ttl,
                error: String::new(),
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        let (revision, _) = self.propose(Command::LeaseRevoke { id }).await?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: self.header_at(revision) }))
    }

    type LeaseKeepAliveStream = GrpcStream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(limits::WATCH_STREAM_QUEUE_MAX);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(ka)) = incoming.next().await {
                let resp = match this.store.lease_keep_alive(ka.id).await {
                    // An unknown lease answers TTL 0, as etcd does.
                    Ok(ttl) => {
                        Ok(pb::LeaseKeepAliveResponse { header: this.header(), id: ka.id, ttl: ttl.unwrap_or(0) })
                    }
                    Err(e) => Err(store_status(e)),
                };
                if tx.send(resp).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let remaining = self.store.lease_time_to_live(req.id).await.map_err(store_status)?;
        let (granted, keys) = match self.store.lease(req.id, req.keys) {
            Some(lease) => (lease.granted_ttl, lease.keys),
            None => (0, Vec::new()),
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.header(),
            id: req.id,
            // An unknown or expired lease answers TTL -1, as etcd does.
            ttl: remaining.unwrap_or(-1),
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let leases = self.store.lease_ids().into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: self.header(), leases }))
    }
}

// ------------------------------------------------------------------------------------------------------
// Cluster and Maintenance

impl EtcdService {
    /// The members as etcd lists them.
    fn members(&self) -> Vec<pb::Member> {
        self.store.members().into_iter().map(member).collect()
    }
}

fn member(m: crate::store::Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: vec![format!("http://{}", m.peer_addr)],
        client_ur_ls: m.published.map(|p| vec![format!("http://{}", p.client_addr)]).unwrap_or_default(),
        is_learner: m.is_learner,
    }
}

/// The `HOST:PORT` of a peer URL as etcdctl sends it (`https://10.0.0.4:2380`).
fn peer_address(url: &str) -> Result<String, Status> {
    let bare = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    match bare.trim_end_matches('/').parse::<std::net::SocketAddr>() {
        Ok(addr) => Ok(addr.to_string()),
        Err(_) => Err(Status::invalid_argument(format!("etcdserver: {url:?} is not a peer URL (https://IP:PORT)"))),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for EtcdService {
    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let req = req.into_inner();
        let [url] = req.peer_ur_ls.as_slice() else {
            return Err(Status::invalid_argument("etcdserver: a member has exactly one peer URL here"));
        };
        let peer_addr = peer_address(url)?;
        let id = self.store.add_member(String::new(), peer_addr.clone(), req.is_learner).await.map_err(store_status)?;
        let added = pb::Member {
            id,
            name: String::new(),
            peer_ur_ls: vec![format!("http://{peer_addr}")],
            client_ur_ls: Vec::new(),
            is_learner: req.is_learner,
        };
        Ok(Response::new(pb::MemberAddResponse { header: self.header(), member: Some(added), members: self.members() }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.store.remove_member(req.into_inner().id).await.map_err(store_status)?;
        Ok(Response::new(pb::MemberRemoveResponse { header: self.header(), members: self.members() }))
    }

    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse { header: self.header(), members: self.members() }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.store.promote_member(req.into_inner().id).await.map_err(store_status)?;
        Ok(Response::new(pb::MemberPromoteResponse { header: self.header(), members: self.members() }))
    }
}

/// The etcd API version raftsman reports (the API subset it serves is etcd 3.4's).
const ETCD_API_VERSION: &str = "3.4.0";

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for EtcdService {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.store.status();
        let db_size = i64::try_from(s.db_size_bytes).unwrap_or(i64::MAX);
        Ok(Response::new(pb::StatusResponse {
            header: self.header_at(s.revision),
            version: ETCD_API_VERSION.into(),
            db_size,
            leader: s.leader.unwrap_or(0),
            raft_index: s.committed_index,
            raft_term: s.term,
            raft_applied_index: s.applied_index,
            errors: self.store.health(),
            db_size_in_use: db_size,
            is_learner: s.is_learner,
        }))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        self.store.transfer_leadership(target).await.map_err(store_status)?;
        Ok(Response::new(pb::MoveLeaderResponse { header: self.header() }))
    }

    type SnapshotStream = GrpcStream<pb::SnapshotResponse>;

    /// This replica's state now as a saved snapshot (`store::saved`), a chunk per message.
    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let failed = |e: std::io::Error| Status::internal(format!("cannot snapshot this replica: {e}"));
        let file = self.store.export_snapshot().await.map_err(failed)?;
        let (store, header) = (self.store.clone(), self.header());
        let chunks = SavedChunks::new(file);
        let total = chunks.size();
        let stream = futures::stream::try_unfold((chunks, 0u64), move |(mut chunks, sent)| {
            let store = store.clone();
            async move {
                let (chunk, chunks) = store
                    .off_the_workers(move || chunks.next_chunk().map(|chunk| (chunk, chunks)))
                    .await
                    .map_err(failed)?;
                Ok(chunk.map(|blob| {
                    let sent = sent + blob.len() as u64;
                    let version = ETCD_API_VERSION.into();
                    (pb::SnapshotResponse { header, remaining_bytes: total - sent, blob, version }, (chunks, sent))
                }))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
