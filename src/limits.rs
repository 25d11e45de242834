//! Every bound in raftsman, in one place.
//!
//! Architecture invariant: every queue, channel, cache, request and message is bounded by a constant named
//! here, with the unit last. Relations between limits are checked at compile time below.

/// Largest key accepted in any request.
pub const KEY_BYTES_MAX: usize = 1536;
/// Largest value accepted in a put (etcd's default request limit is 1.5 MiB for the whole request).
pub const VALUE_BYTES_MAX: usize = 1536 * 1024;
/// Largest encoded client request accepted by the etcd gRPC server.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest command a replica proposes, encoded (a client request of `GRPC_MESSAGE_BYTES_MAX` encodes to a
/// little more); larger ones are refused before they reach the log.
pub const COMMAND_BYTES_MAX: usize = 6 * 1024 * 1024;
/// Largest peer message (Raft message, forwarded request or reply) sent or accepted.
pub const PEER_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Log entries carried by one append-entries message, encoded: more are sent in further messages, and an
/// entry larger than this travels alone.
pub const APPEND_ENTRIES_BYTES_MAX: usize = 1024 * 1024;
/// Highest term or log index a peer message may carry. Real clusters stay far below it (an election every
/// millisecond would take 2,000 years to get there); above it arithmetic on them could overflow.
pub const RAFT_TERM_OR_INDEX_MAX: u64 = 1 << 56;
/// How often each replica asks every member which version it runs (`store::version`).
pub const VERSION_POLL_INTERVAL_MS: u64 = 5_000;
/// Most log entries a replica may be behind the newest committed index for `raftsman ctl upgrade-check` to
/// count it caught up.
pub const UPGRADE_LAG_ENTRIES_MAX: u64 = 1_000;
/// Longest `--initial-cluster-token`.
pub const CLUSTER_TOKEN_BYTES_MAX: usize = 256;
/// How long a follower may stay behind the leader's log without any progress before the leader reports that
/// it cannot replicate to it (`/readyz`, `etcdctl endpoint status`).
pub const REPLICATION_STALL_MS: u64 = 5_000;
/// Largest response the project's own etcd client accepts (a range of many keys can be large; etcd's clients
/// accept up to 2 GiB).
pub const CLIENT_RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Most concurrent requests and streams (watches, keep-alives) one client or peer connection may have open.
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// Most operations (compares plus requests, counted recursively) in one transaction.
pub const TXN_OPS_MAX: usize = 128;
/// Deepest nesting of transactions inside transactions.
pub const TXN_DEPTH_MAX: usize = 4;
/// Most keys a single range returns when the request sets no smaller limit.
pub const RANGE_KEYS_MAX: usize = 100_000;

/// Most watchers one watch stream may hold.
pub const WATCHERS_PER_STREAM_MAX: usize = 1024;
/// Most watch responses queued for one stream before its watchers stop pulling.
pub const WATCH_STREAM_QUEUE_MAX: usize = 256;
/// Most events carried by one watch response.
pub const WATCH_EVENTS_PER_RESPONSE_MAX: usize = 1000;
/// Largest part of a watch response sent to an etcd client that asked for fragments (etcd splits at its
/// `--max-request-bytes`, whose default this is).
pub const WATCH_FRAGMENT_BYTES: usize = VALUE_BYTES_MAX;
/// Most history records one pull of a watcher catching up from disk reads (it stops at the end of a revision
/// past this), so that a watcher selecting little of a long history takes many short steps.
pub const WATCH_CATCH_UP_RECORDS_PER_PULL_MAX: usize = 10_000;
/// Most recent revisions whose events the watch hub keeps in memory; older ones are read from disk.
pub const WATCH_RING_REVISIONS_MAX: usize = 8192;
/// Most bytes of keys and values the watch hub's ring holds: a few large revisions push the older ones out
/// (a revision larger than this alone is read from disk).
pub const WATCH_RING_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Interval between progress notifications for watchers that asked for them.
pub const WATCH_PROGRESS_INTERVAL_MS: u64 = 10_000;

/// Most keys one step of a compaction's cleanup goes through while holding the state machine (etcd's
/// compaction batch limit).
pub const COMPACTION_PRUNE_KEYS_MAX: usize = 1000;
/// Pause between two cleanup steps, in which writes and reads go ahead.
pub const COMPACTION_PRUNE_PAUSE_MS: u64 = 10;
/// How often a replica looks for a compaction to clean up after.
pub const COMPACTION_PRUNE_POLL_MS: u64 = 1000;

/// Most leases that may exist at once.
pub const LEASES_MAX: usize = 100_000;
/// Shortest lease time-to-live granted (shorter requests are raised to it, as etcd does).
pub const LEASE_TTL_SECS_MIN: i64 = 5;
/// Longest lease time-to-live granted.
pub const LEASE_TTL_SECS_MAX: i64 = 9_000_000_000;
/// How often the leader looks for expired leases.
pub const LEASE_CHECK_INTERVAL_MS: u64 = 500;
/// Most expired leases revoked by one log entry.
pub const LEASE_REVOKES_PER_ENTRY_MAX: usize = 64;

/// Raft heartbeat interval.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Lower bound of the randomized election timeout.
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 150;
/// Upper bound of the randomized election timeout.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 300;
/// Most log entries in one append-entries message.
pub const APPEND_ENTRIES_MAX: u64 = 1024;
/// Log entries applied since the last snapshot that trigger a new one (etcd's `--snapshot-count` default). A
/// snapshot carries the state and the history since the last compaction: at 20,000, a 10,000-pod rollout built a
/// snapshot of up to 390 MB every 14 s on every replica.
pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 100_000;
/// Log entries kept behind a snapshot so that slightly lagging followers catch up without one.
pub const SNAPSHOT_LOGS_KEPT: u64 = 5_000;
/// Log entries removed behind a snapshot in one purge (one write batch).
pub const LOG_PURGE_BATCH_ENTRIES: u64 = 256;
/// Size of one chunk of a snapshot streamed to a follower.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest snapshot a replica accepts from a leader.
pub const SNAPSHOT_BYTES_MAX: usize = 8 * 1024 * 1024 * 1024;
/// Read buffer of a snapshot being checked or installed.
pub const SNAPSHOT_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Largest head (MVCC meta, leases, members) a snapshot may claim.
pub const SNAPSHOT_HEAD_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Committed entries applied in one write batch, by encoded size (at least one entry).
pub const APPLY_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// History records installed from a snapshot file per write batch.
pub const SNAPSHOT_INSTALL_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// What building, sending, receiving or installing a snapshot may add to a replica's memory, whatever the
/// snapshot's size: a few chunks in flight, the read buffer, one install batch twice (ours and RocksDB's),
/// and RocksDB's write buffers and block cache, which the install fills.
pub const SNAPSHOT_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// How long a peer RPC (other than a snapshot) may take.
pub const PEER_RPC_TIMEOUT_MS: u64 = 2_000;
/// How long a snapshot transfer may take.
pub const SNAPSHOT_RPC_TIMEOUT_MS: u64 = 60_000;
/// How long a request waits for a leader to be elected before it fails with Unavailable.
pub const LEADER_WAIT_MS: u64 = 3_000;
/// How long a write waits to be committed and applied before it fails with Unavailable.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// How long a linearizable read waits for its read index to be applied.
pub const READ_TIMEOUT_MS: u64 = 5_000;
/// How far (in log entries) a learner's log may lag the leader's for it to be promoted to voter.
pub const PROMOTE_LAG_ENTRIES_MAX: u64 = 1_000;
/// How often a replica that joined as a learner asks to be promoted.
pub const PROMOTE_RETRY_MS: u64 = 1_000;
/// Size of one RocksDB memtable (per column family) before it is flushed to disk.
pub const ROCKSDB_WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Memtable memory of all column families together; reaching it forces flushes.
pub const ROCKSDB_TOTAL_WRITE_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// Most RocksDB write-ahead log kept on disk: past it, the column families still holding the oldest log file
/// (a quiet one, like leases, pins every log written since its last flush) are flushed so the file can go.
pub const ROCKSDB_WAL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// RocksDB's block cache, shared by all column families.
pub const ROCKSDB_BLOCK_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Most client writes queued in the group-commit flusher.
pub const FLUSH_QUEUE_MAX: usize = 4096;

/// Largest request body the Kubernetes API reads (upstream's limit is 3 MiB too).
pub const API_BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
/// Most objects read from the store at once while a list is filtered and paged.
pub const API_LIST_CHUNK_MAX: usize = 1000;
/// Longest a Kubernetes watch stays open; clients re-watch from their last resource version.
pub const API_WATCH_TIMEOUT_SECS_MAX: u64 = 1800;
/// Interval between bookmarks on a watch that allows them.
pub const API_WATCH_BOOKMARK_INTERVAL_MS: u64 = 10_000;
/// Most encoded events queued for one watch client before the watch stops pulling.
pub const API_WATCH_QUEUE_MAX: usize = 256;
/// Most watches one replica serves at once; more are refused with 429.
pub const API_WATCHES_MAX: usize = 10_000;
/// Most compare-and-swap attempts of one write against concurrent writers before it answers 409.
pub const API_WRITE_ATTEMPTS_MAX: usize = 16;
/// Longest `--event-ttl` a replica accepts (a year).
pub const EVENT_TTL_SECS_MAX: u64 = 366 * 86_400;
/// Events written within this long of a lease's grant share it (upstream's `--lease-reuse-duration-seconds`),
/// and so live at most this much longer than their TTL; a shorter TTL shares for `EVENT_LEASE_REUSE_PERCENT` of
/// itself (upstream's share too), so a short TTL is not stretched by a whole minute.
pub const EVENT_LEASE_REUSE_MS_MAX: u64 = 60_000;
pub const EVENT_LEASE_REUSE_PERCENT: u32 = 5;
/// Most writes that share one lease (upstream's lease object count), so that its expiry deletes a bounded
/// number of keys in one revision.
pub const EVENT_LEASE_WRITES_MAX: usize = 1000;
/// Most leases one write with a time to live tries: the lease it took vanished before the write committed
/// (expired or revoked), or a fresh lease id was taken already.
pub const TTL_LEASE_ATTEMPTS_MAX: usize = 4;

// The leader's controller runtime.
/// Longest wait, once a term's components are stopped, for their requests still inside the API to end (they are
/// dropped with their tasks; this bounds a request that would not let go).
pub const TERM_REQUESTS_DRAIN_MS: u64 = 5_000;
/// Most keys one controller's work queue holds from events (after an overflow it resyncs from its caches).
pub const WORK_QUEUE_KEYS_MAX: usize = 100_000;
/// A failing key comes back after this back-off, doubled at each failure in a row up to the maximum.
pub const WORK_QUEUE_BACKOFF_MS_MIN: u64 = 5;
pub const WORK_QUEUE_BACKOFF_MS_MAX: u64 = 60_000;
/// Concurrent workers of the garbage collector and of the namespace controller.
pub const GARBAGE_COLLECTOR_WORKERS: usize = 8;
pub const NAMESPACE_WORKERS: usize = 2;
/// A change inside a namespace being deleted looks at the namespace again after this delay, so that a
/// deletion of many objects costs few passes over what remains.
pub const NAMESPACE_RECHECK_DELAY_MS: u64 = 200;
/// A change of an object in a namespace with quotas recalculates them after this delay (a burst costs one).
pub const QUOTA_RECALCULATION_DELAY_MS: u64 = 1_000;
/// How often the leader looks at the replicas' facts behind the `kubernetes` Service's endpoints.
pub const KUBERNETES_SERVICE_CHECK_INTERVAL_MS: u64 = 500;
/// Most addresses a Service's `v1` Endpoints list (upstream's cap; beyond it the object says it is truncated).
pub const ENDPOINTS_ADDRESSES_MAX: usize = 1_000;
/// Most endpoints in one EndpointSlice (upstream's default `--max-endpoints-per-slice`).
pub const ENDPOINT_SLICE_ENDPOINTS_MAX: usize = 100;
/// Concurrent workers of the endpoints controller (each reconciles one Service at a time).
pub const ENDPOINTS_WORKERS: usize = 4;

/// Shortest pause between two passes of the leader's controllers (a pass also rests four times its length).
pub const CONTROLLER_PASS_INTERVAL_MS_MIN: u64 = 500;
/// Most actions one controller pass executes; the rest wait for the next pass.
pub const CONTROLLER_ACTIONS_PER_PASS_MAX: usize = 1000;

// The scheduler.
/// Most writes (bindings, unschedulable pods' conditions and Events) the scheduler has in flight at once:
/// enough for many bindings to share each Raft round trip.
pub const SCHEDULER_WRITES_IN_FLIGHT_MAX: usize = 128;
/// A round of scheduling decisions waits until this many write slots are free (or none is in flight).
pub const SCHEDULER_ROUND_SLOTS_MIN: usize = 32;
/// Least time between two rounds of scheduling decisions (each rebuilds the view of the cluster).
pub const SCHEDULER_ROUND_INTERVAL_MS: u64 = 5;
/// First back-off of a pod that could not be scheduled (upstream's podInitialBackoffSeconds); it doubles.
pub const SCHEDULER_BACKOFF_MS_INITIAL: u64 = 1_000;
/// Longest back-off of a pod that could not be scheduled (upstream's podMaxBackoffSeconds).
pub const SCHEDULER_BACKOFF_MS_MAX: u64 = 10_000;
/// An unschedulable pod is tried again after this long even when nothing changed (upstream's
/// podMaxInUnschedulablePodsDuration).
pub const SCHEDULER_UNSCHEDULABLE_RETRY_MS: u64 = 300_000;
/// Most Events the scheduler remembers to aggregate repeats into (by pod, reason and message).
pub const SCHEDULER_EVENT_KEYS_MAX: usize = 4096;

/// How long the leader goes without hearing from a follower before the `kubernetes` Service's endpoints stop
/// listing that replica's API; a new leader waits as long before dropping one it has not heard from yet.
pub const API_SERVER_SILENCE_MS: u64 = 5_000;
/// How long `componentstatuses` waits for another replica's `/livez` to answer, and the most of its answer it
/// reads.
pub const COMPONENT_PROBE_TIMEOUT_MS: u64 = 2_000;
pub const COMPONENT_PROBE_BODY_BYTES_MAX: usize = 4096;

const _: () = assert!(ELECTION_TIMEOUT_MS_MIN < ELECTION_TIMEOUT_MS_MAX);
const _: () = assert!(HEARTBEAT_INTERVAL_MS * 3 <= ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX < GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(
    4 * SNAPSHOT_CHUNK_BYTES
        + SNAPSHOT_READ_BUFFER_BYTES
        + 2 * SNAPSHOT_INSTALL_BATCH_BYTES
        + ROCKSDB_TOTAL_WRITE_BUFFER_BYTES
        + ROCKSDB_BLOCK_CACHE_BYTES
        < SNAPSHOT_MEMORY_BYTES
);
const _: () = assert!(GRPC_MESSAGE_BYTES_MAX < COMMAND_BYTES_MAX);
// A message holding one largest entry, with its envelope (vote, log ids), fits in a peer message.
const _: () = assert!(COMMAND_BYTES_MAX + 64 * 1024 <= PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(APPEND_ENTRIES_BYTES_MAX < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(REPLICATION_STALL_MS > PEER_RPC_TIMEOUT_MS);
const _: () = assert!(API_SERVER_SILENCE_MS > PEER_RPC_TIMEOUT_MS);
const _: () = assert!(LEADER_WAIT_MS > ELECTION_TIMEOUT_MS_MAX * 2);
const _: () = assert!(WRITE_TIMEOUT_MS > LEADER_WAIT_MS);
const _: () = assert!(SNAPSHOT_LOGS_KEPT < SNAPSHOT_LOGS_SINCE_LAST);
const _: () = assert!(WATCH_EVENTS_PER_RESPONSE_MAX <= WATCH_RING_REVISIONS_MAX);
const _: () = assert!(ROCKSDB_WRITE_BUFFER_BYTES * 2 <= ROCKSDB_TOTAL_WRITE_BUFFER_BYTES);
const _: () = assert!(ROCKSDB_TOTAL_WRITE_BUFFER_BYTES as u64 <= ROCKSDB_WAL_BYTES_MAX);
const _: () = assert!(API_BODY_BYTES_MAX >= VALUE_BYTES_MAX);

/// Most connections the peer port holds at once (each other replica keeps one; more are closed on arrival).
pub const PEER_CONNECTIONS_MAX: usize = 64;
/// Most connections the etcd client port holds at once; more are closed on arrival.
pub const CLIENT_CONNECTIONS_MAX: usize = 4096;
/// Fewest etcd client connections a replica starts with when its open-file limit is low.
pub const CLIENT_CONNECTIONS_MIN: usize = 64;
/// Most connections the Kubernetes API port holds at once; more are answered 503 and closed on arrival.
pub const API_CONNECTIONS_MAX: usize = 8192;
/// Fewest Kubernetes API connections a replica starts with when its open-file limit is low.
pub const API_CONNECTIONS_MIN: usize = 128;
/// Most table files RocksDB keeps open at once (its table cache; older ones are closed and reopened).
pub const ROCKSDB_OPEN_FILES_MAX: usize = 256;
/// Descriptors never given to client sockets besides RocksDB's table files: its log, manifest and info
/// files, the snapshot, outgoing peer connections, the runtime's own.
pub const OPEN_FILES_RESERVE: usize = 256;
/// How long a Kubernetes API connection may take to send a complete request header; also how long an idle
/// keep-alive connection waits for its next request.
pub const API_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// How long a new Kubernetes API connection may take to finish its TLS handshake.
pub const API_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// A certificate served from files is looked at again at most this often (on a handshake): a replaced pair is
/// in use within this long.
pub const TLS_FILES_CHECK_MS: u64 = 2_000;
/// How long a new etcd client connection may take to send the HTTP/2 connection preface.
pub const GRPC_PREFACE_TIMEOUT_MS: u64 = 10_000;
/// How long a new peer connection may take to send the HTTP/2 connection preface; also how long its TLS
/// handshake may take.
pub const PEER_PREFACE_TIMEOUT_MS: u64 = 2_000;
/// Interval of the HTTP/2 keepalive pings the gRPC servers send on every connection.
pub const GRPC_KEEPALIVE_INTERVAL_MS: u64 = 10_000;
/// How long a gRPC connection may leave a keepalive ping unanswered before it is closed.
pub const GRPC_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
/// Interval at which a replica gives the heap memory it freed back to the operating system.
pub const MALLOC_TRIM_INTERVAL_MS: u64 = 10_000;
/// Allocations of this size or more are mapped from the operating system and returned to it when freed.
pub const MALLOC_MMAP_THRESHOLD_BYTES: usize = 256 * 1024;
/// Pause of an accept loop after accepting failed for want of descriptors or memory.
pub const ACCEPT_RETRY_MS: u64 = 100;
/// Shortest interval between two log lines about connections refused over a port's cap.
pub const CONNECTION_REFUSAL_LOG_INTERVAL_MS: u64 = 1_000;

const _: () = assert!(CLIENT_CONNECTIONS_MIN <= CLIENT_CONNECTIONS_MAX);
const _: () = assert!(API_CONNECTIONS_MIN <= API_CONNECTIONS_MAX);
const _: () = assert!(PEER_PREFACE_TIMEOUT_MS <= PEER_RPC_TIMEOUT_MS);
const _: () = assert!(PEER_PREFACE_TIMEOUT_MS <= GRPC_PREFACE_TIMEOUT_MS);

/// Most operations in one JSON patch (upstream's limit; more are refused with 413).
pub const API_JSON_PATCH_OPERATIONS_MAX: usize = 10_000;
/// Most bytes the `copy` operations of one JSON patch may add together (upstream bounds them by its body
/// limit; a result past the object limit could not be stored anyway).
pub const API_JSON_PATCH_COPY_BYTES_MAX: usize = VALUE_BYTES_MAX;
/// Most objects a watch's initial events read from the store at once.
pub const API_WATCH_INITIAL_CHUNK_MAX: usize = 16;
/// Most bytes of encoded events queued for one watch client; an event larger than this waits alone.
pub const API_WATCH_QUEUE_BYTES_MAX: usize = 64 * 1024;
/// Most keys of stored objects that do not decode one list names in its `Warning` headers.
pub const API_SKIPPED_WARNINGS_MAX: usize = 10;
/// Most recent changes a resource's watch cache keeps, so that watches resuming from a recent resourceVersion
/// are served from it; older ones read the store's history.
pub const API_WATCH_CACHE_WINDOW_EVENTS_MAX: usize = 16_384;
/// Most bytes of changed objects (as stored) a resource's watch cache keeps in its window of recent changes.
pub const API_WATCH_CACHE_WINDOW_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Most events a watch served by the cache may have waiting (a few words each: the events live in the
/// window); a watch whose client falls further behind reads the store's history until it has caught up.
pub const API_WATCH_CACHE_PENDING_EVENTS_MAX: usize = 4096;
/// Pause before a watch cache whose store watch or list failed on a storage fault lists again.
pub const API_WATCH_CACHE_RETRY_MS: u64 = 1_000;

const _: () = assert!(API_JSON_PATCH_COPY_BYTES_MAX <= API_BODY_BYTES_MAX);
const _: () = assert!(API_WATCH_INITIAL_CHUNK_MAX <= API_LIST_CHUNK_MAX);
// The queue's byte budget is a semaphore, whose permits are counted in u32.
const _: () = assert!(API_WATCH_QUEUE_BYTES_MAX <= u32::MAX as usize);
// A watch can have a whole response of the store's watch pending, and never more than the window holds.
const _: () = assert!(WATCH_EVENTS_PER_RESPONSE_MAX <= API_WATCH_CACHE_PENDING_EVENTS_MAX);
const _: () = assert!(API_WATCH_CACHE_PENDING_EVENTS_MAX <= API_WATCH_CACHE_WINDOW_EVENTS_MAX);

/// Worker threads of the runtime that runs Raft and the peer server, apart from client traffic.
pub const RAFT_WORKER_THREADS: usize = 2;
/// Streams a peer connection may reset (the leader cancels heartbeats that time out) before the peer server
/// takes it for an attack and closes it (h2's guard defaults to 20).
pub const PEER_RESET_STREAMS_MAX: usize = 4096;
const _: () = assert!(PEER_RESET_STREAMS_MAX >= GRPC_STREAMS_PER_CONNECTION_MAX as usize);

/// How long the API server waits to connect to a node's kubelet when it relays a log.
pub const KUBELET_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long the API server waits for the kubelet's answer to begin (its status and headers); the log itself then
/// streams for as long as the client reads it (`kubectl logs -f`).
pub const KUBELET_RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// Most of a kubelet's error answer an API server reads, to relay it as a Status message.
pub const KUBELET_ERROR_BYTES_MAX: usize = 4096;
/// Idle connections to kubelets the API server keeps for later log requests, per kubelet.
pub const KUBELET_IDLE_CONNECTIONS_MAX: usize = 4;
/// The lifetime of a ServiceAccount token when a TokenRequest does not ask for one, and the range a requested
/// one is clamped to (upstream's minimum of ten minutes; at most a year).
pub const SERVICE_ACCOUNT_TOKEN_SECS_DEFAULT: i64 = 3_600;
pub const SERVICE_ACCOUNT_TOKEN_SECS_MIN: i64 = 600;
pub const SERVICE_ACCOUNT_TOKEN_SECS_MAX: i64 = 365 * 86_400;
/// How often a new pod's `default` ServiceAccount is looked up before the pod is refused, and the pause
/// between lookups: the namespace controller may still be creating it (upstream tries ten times, 100 to 200 ms
/// apart). Any other account is looked up once.
pub const DEFAULT_SERVICE_ACCOUNT_LOOKUPS_MAX: usize = 10;
pub const DEFAULT_SERVICE_ACCOUNT_LOOKUP_INTERVAL_MS: u64 = 150;
/// The etcd v3 client's (`cluster::etcd_client`) connect timeout and per-request deadline.
pub const ETCD_CLIENT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const ETCD_CLIENT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The interval of HTTP/2 keepalive pings a replica sends on its peer connections; a peer that does not answer
/// one within `PEER_RPC_TIMEOUT_MS` is dropped and redialled.
pub const PEER_KEEPALIVE_INTERVAL_MS: u64 = HEARTBEAT_INTERVAL_MS * 10;

const _: () = assert!(KUBELET_CONNECT_TIMEOUT_MS < KUBELET_RESPONSE_TIMEOUT_MS);
const _: () = assert!(SERVICE_ACCOUNT_TOKEN_SECS_MIN <= SERVICE_ACCOUNT_TOKEN_SECS_DEFAULT);
const _: () = assert!(SERVICE_ACCOUNT_TOKEN_SECS_DEFAULT <= SERVICE_ACCOUNT_TOKEN_SECS_MAX);
const _: () = assert!(ETCD_CLIENT_CONNECT_TIMEOUT_MS < ETCD_CLIENT_REQUEST_TIMEOUT_MS);

// The agent (`src/agent/`).
/// How often the agent's balancer checks each API server replica's `/readyz`, and how long one check may take
/// before it counts as unanswered.
pub const AGENT_HEALTH_INTERVAL_MS: u64 = 200;
pub const AGENT_HEALTH_TIMEOUT_MS: u64 = 500;
/// How long nothing (no check, no request) may have answered from a replica when a check goes unanswered
/// before the replica counts as down (its connections are then closed at once). A replica that refuses or
/// resets a check is down at once.
pub const AGENT_SILENCE_DOWN_MS: u64 = 1_000;
/// How long the agent waits for a connection (TCP and TLS) to a replica for a request before trying another:
/// longer than a check, as a replica slowed by load still serves.
pub const AGENT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Most of a `/readyz?verbose` answer the agent reads.
pub const AGENT_HEALTH_BODY_BYTES_MAX: usize = 4096;
/// How long a replica that answers but is not ready keeps the agent's open connections (an election makes
/// every replica unready for a moment) before they are closed, when another replica is ready.
pub const AGENT_UNREADY_GRACE_MS: u64 = 2_000;
/// How long the agent keeps an idle connection to a replica: less than the replica keeps it
/// (`API_HEADER_READ_TIMEOUT_MS`), so that a request never goes out on a connection the replica is closing.
pub const AGENT_IDLE_CONNECTION_MS: u64 = 5_000;
/// Requests an agent has waiting for their answer's head at once (a watch holds one only until its stream
/// starts). Over HTTP/1.1 each needs a connection of its own: without a cap, a fake agent of 1,000 nodes held
/// 800 connections to its replica and opened about 77 new TLS connections a second, 14% of the replica's CPU.
pub const AGENT_REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// How often the agent reads the `kubernetes` Endpoints to learn the replicas' API addresses.
pub const AGENT_SERVERS_REFRESH_MS: u64 = 10_000;
/// Most API server replicas the agent's balancer knows at once (the given ones first).
pub const AGENT_SERVERS_MAX: usize = 16;
/// Largest request body the agent sends (bodies are buffered so a request refused at connect can go elsewhere).
pub const AGENT_REQUEST_BYTES_MAX: usize = API_BODY_BYTES_MAX;
/// First and longest pause of the agent's watches after an error before they resume.
pub const AGENT_WATCH_BACKOFF_MS_MIN: u64 = 50;
pub const AGENT_WATCH_BACKOFF_MS_MAX: u64 = 5_000;
/// How often a node's Lease is renewed, and the duration it claims (upstream's kubelet: 10 s and 40 s).
pub const AGENT_LEASE_RENEW_MS: u64 = 10_000;
pub const AGENT_LEASE_DURATION_SECS: i32 = 40;
/// The first pause before a failed Lease renewal is tried again (upstream's 200 ms); it doubles up to
/// `AGENT_LEASE_RENEW_MS` while failures go on.
pub const AGENT_LEASE_RETRY_MS_MIN: u64 = 200;
/// How often a node's status is computed (upstream's node-status-update-frequency), and how long an unchanged
/// status goes without being reported again (upstream's node-status-report-frequency).
pub const AGENT_NODE_STATUS_UPDATE_MS: u64 = 10_000;
pub const AGENT_NODE_STATUS_REPORT_MS: u64 = 300_000;
/// Most fake nodes one agent process serves.
pub const AGENT_FAKE_NODES_MAX: usize = 10_000;
/// Shortest pause between two pod syncs (changes arriving meanwhile are handled together), and the longest
/// time between two syncs without changes (what back-off timers wait on).
pub const AGENT_SYNC_INTERVAL_MS_MIN: u64 = 50;
pub const AGENT_SYNC_INTERVAL_MS_MAX: u64 = 1_000;
/// Most runtime actions (start, stop, remove, delete) running at once.
pub const AGENT_ACTIONS_CONCURRENT_MAX: usize = 64;
/// Pod status writes in flight at once per node an agent serves, up to `AGENT_STATUS_WRITERS_MAX` per agent (a
/// `--fake-nodes` agent serves many); and most waiting (the others are recomputed at the next sync).
pub const AGENT_STATUS_WRITERS_PER_NODE: usize = 16;
pub const AGENT_STATUS_WRITERS_MAX: usize = 128;
pub const AGENT_STATUS_QUEUE_MAX: usize = 100_000;
/// Upstream's CrashLoopBackOff: the first restart is at once, then 10 s doubling to 5 min; an attempt that ran
/// for twice the longest back-off resets it.
pub const AGENT_RESTART_BACKOFF_SECS_MIN: u64 = 10;
pub const AGENT_RESTART_BACKOFF_SECS_MAX: u64 = 300;
/// The grace given to containers of a pod that no longer exists in the API.
pub const AGENT_ORPHAN_GRACE_SECS: u64 = 2;
/// How often the agent reads again a ConfigMap or Secret its pods refer to (`agent::sources`): an update reaches
/// the pods' volume files within about this long.
pub const AGENT_SOURCES_REFRESH_MS: u64 = 10_000;
/// How often the agent reads again a ConfigMap or Secret its pods wait for, which was not there.
pub const AGENT_SOURCES_ABSENT_REFRESH_MS: u64 = 1_000;
/// How often the agent looks for ConfigMaps and Secrets its pods newly refer to.
pub const AGENT_SOURCES_CHECK_MS: u64 = 250;
/// Reads of ConfigMaps and Secrets in flight at once, and how long one may take.
pub const AGENT_SOURCES_READS_IN_FLIGHT_MAX: usize = 16;
pub const AGENT_SOURCES_READ_TIMEOUT_MS: u64 = 5_000;
/// The least time a container gets between the end of its preStop hook and its SIGKILL.
pub const AGENT_PRE_STOP_GRACE_AFTER_SECS: u64 = 2;
/// The pause before an image whose pull failed is pulled again: the minimum, doubling to the maximum.
pub const AGENT_IMAGE_BACKOFF_SECS_MIN: u64 = 10;
pub const AGENT_IMAGE_BACKOFF_SECS_MAX: u64 = 300;
/// How long one image pull may take.
pub const AGENT_IMAGE_PULL_TIMEOUT_SECS: u64 = 600;
/// How often the agent looks whether an image that may not be pulled (`imagePullPolicy: Never`) has appeared.
pub const AGENT_IMAGE_RECHECK_MS: u64 = 5_000;
/// Bytes of files one volume's sources may write (upstream's limit on a ConfigMap is 1 MiB).
pub const AGENT_VOLUME_PAYLOAD_BYTES_MAX: usize = 8 << 20;
/// The grace period of a pod that names none (upstream's default).
pub const AGENT_POD_GRACE_SECS_DEFAULT: i64 = 30;
/// How often, and how many times, the Docker runtime asks for the exit code of an exec'd command whose output
/// has ended (Docker records it a moment later).
pub const DOCKER_EXEC_EXIT_POLL_MS: u64 = 20;
pub const DOCKER_EXEC_EXIT_POLLS_MAX: usize = 250;
/// How long the Docker runtime waits for a pod network another agent is creating to show up under its name
/// (its own creation having failed): `DOCKER_NETWORK_WAITS_MAX` looks, `DOCKER_NETWORK_WAIT_MS` apart.
pub const DOCKER_NETWORK_WAIT_MS: u64 = 100;
pub const DOCKER_NETWORK_WAITS_MAX: usize = 50;
/// The User-Agent of the agent's HTTP probes (upstream's is `kube-probe/<version>`).
pub const PROBE_USER_AGENT: &str = "kube-probe/1.32";
/// Longest hostname a pod gets (a DNS label's): a longer pod name is cut, as upstream's kubelet does.
pub const POD_HOSTNAME_BYTES_MAX: usize = 63;

const _: () = assert!(EVENT_TTL_SECS_MAX + EVENT_LEASE_REUSE_MS_MAX / 1000 < LEASE_TTL_SECS_MAX as u64);
const _: () = assert!(0 < EVENT_LEASE_REUSE_PERCENT && EVENT_LEASE_REUSE_PERCENT < 100);
const _: () = assert!(TTL_LEASE_ATTEMPTS_MAX >= 2);

const _: () = assert!(AGENT_HEALTH_TIMEOUT_MS < AGENT_UNREADY_GRACE_MS);
const _: () = assert!(AGENT_HEALTH_TIMEOUT_MS < AGENT_SILENCE_DOWN_MS);
const _: () = assert!(AGENT_HEALTH_TIMEOUT_MS < AGENT_CONNECT_TIMEOUT_MS);
const _: () = assert!(AGENT_IDLE_CONNECTION_MS < API_HEADER_READ_TIMEOUT_MS);
const _: () = assert!(AGENT_WATCH_BACKOFF_MS_MIN < AGENT_WATCH_BACKOFF_MS_MAX);
const _: () = assert!(AGENT_STATUS_WRITERS_PER_NODE <= AGENT_STATUS_WRITERS_MAX);
const _: () = assert!(AGENT_LEASE_RENEW_MS < AGENT_LEASE_DURATION_SECS as u64 * 1000);
const _: () = assert!(AGENT_LEASE_RETRY_MS_MIN < AGENT_LEASE_RENEW_MS);
const _: () = assert!(AGENT_NODE_STATUS_UPDATE_MS < AGENT_NODE_STATUS_REPORT_MS);
const _: () = assert!(AGENT_SYNC_INTERVAL_MS_MIN < AGENT_SYNC_INTERVAL_MS_MAX);
const _: () = assert!(AGENT_RESTART_BACKOFF_SECS_MIN < AGENT_RESTART_BACKOFF_SECS_MAX);

// Node lifecycle and pod garbage collection (leader-only, `controllers::node_lifecycle`, `controllers::pod_gc`).

/// Longest `--node-monitor-grace-period` a replica accepts (a day): a longer one would let a dead node hold its
/// pods for longer than anyone waits.
pub const NODE_MONITOR_GRACE_PERIOD_SECS_MAX: u64 = 86_400;
/// Nodes the node lifecycle controller reconciles at once.
pub const NODE_LIFECYCLE_WORKERS: usize = 4;
/// Missing nodes (named by pods, absent from the cache) whose quarantine the pod garbage collector times at
/// once; the pods of further ones wait until some of these are settled.
pub const POD_GC_MISSING_NODES_MAX: usize = 10_000;
/// Longest time before a node is looked at again when no deadline of its own is pending and nothing changes (a
/// missed notification costs at most this).
pub const NODE_LIFECYCLE_RESYNC_INTERVAL_MS: u64 = 30_000;

// The leader's event recorder (`controllers::events`).
/// Events waiting for the writer task; a further one is dropped.
pub const EVENT_QUEUE_MAX: usize = 1_000;
/// Events one object may have recorded in a burst (upstream's spam filter), then one more every
/// `EVENT_REFILL_SECS`.
pub const EVENT_BURST_PER_OBJECT: usize = 25;
pub const EVENT_REFILL_SECS: u64 = 300;
/// Objects whose spam filter is remembered; past this, those with a full burst are forgotten.
pub const EVENT_SPAM_OBJECTS_MAX: usize = 10_000;

// The workload controllers (`controllers::workloads`).
/// ReplicaSets and Deployments reconciled at once (kube-controller-manager's `--concurrent-*-syncs`).
pub const REPLICA_SET_WORKERS: usize = 5;
pub const DEPLOYMENT_WORKERS: usize = 5;
/// Most pods one ReplicaSet creates or deletes in one reconcile (upstream's burstReplicas); the rest wait for
/// the cache to show these.
pub const REPLICA_SET_BURST: usize = 500;
/// Pod creations or deletions of one reconcile in flight at once; they start one, then double (upstream's slow
/// start), so a failing create costs one request, not a burst.
pub const POD_WRITES_IN_FLIGHT_MAX: usize = 64;
/// Most completions of an Indexed Job (upstream's limit): bounds the indexes a `completedIndexes` range expands to.
pub const JOB_COMPLETIONS_INDEXED_MAX: i32 = 100_000;
/// Jobs reconciled at once (kube-controller-manager's `--concurrent-job-syncs`).
pub const JOB_WORKERS: usize = 5;
pub const STATEFUL_SET_WORKERS: usize = 5;
pub const DAEMON_SET_WORKERS: usize = 2;
pub const CRON_JOB_WORKERS: usize = 2;
pub const DISRUPTION_WORKERS: usize = 2;
/// HorizontalPodAutoscalers reconciled at once (kube-controller-manager's
/// `--concurrent-horizontal-pod-autoscaler-syncs`).
pub const HORIZONTAL_POD_AUTOSCALER_WORKERS: usize = 5;
/// Scale events an autoscaler remembers per direction for its behavior's policies and stabilization windows.
pub const AUTOSCALER_RECOMMENDATIONS_MAX: usize = 1_000;
/// Days a cron schedule's next time is searched for (a schedule for the 31st of February never fires).
pub const CRON_SEARCH_DAYS_MAX: usize = 5 * 366;
/// Missed runs of a CronJob counted one by one before jumping near the present (upstream warns past 100).
pub const CRON_MISSED_MAX: usize = 100;
/// How long a controller waits for its cache to show the pods it created or deleted before it trusts the
/// cache again anyway (upstream's ExpectationsTimeout).
pub const EXPECTATIONS_TIMEOUT_SECS: u64 = 300;
/// How long a controller waits for a write whose outcome it does not know (its request failed with a 5xx or
/// no answer) to show in its cache: longer than the store takes to time a write out and apply it, far shorter
/// than `EXPECTATIONS_TIMEOUT_SECS`, since such a write usually never happened.
pub const UNCONFIRMED_EXPECTATION_SECS: u64 = 15;
const _: () = assert!(UNCONFIRMED_EXPECTATION_SECS * 1000 > 2 * WRITE_TIMEOUT_MS);

// The agent's process runtime and the kubelet endpoint.
/// Size at which a container's log file is rotated; one rotated file is kept, so an attempt's log takes at
/// most twice this (kubelet's `containerLogMaxSize` default).
pub const CONTAINER_LOG_BYTES_MAX: u64 = 10 * 1024 * 1024;
/// Longest log record: a longer line is written in pieces (CRI's partial records, 16 KiB as containerd's).
pub const CONTAINER_LOG_LINE_BYTES_MAX: usize = 16 * 1024;
/// How long the process runtime waits for a container's shim to start the container's process.
pub const CONTAINER_START_TIMEOUT_MS: u64 = 10_000;
/// How often the process runtime looks whether a starting container's shim has started it.
pub const CONTAINER_START_POLL_MS: u64 = 5;
/// How often a container being stopped is looked at.
pub const CONTAINER_STATE_POLL_MS: u64 = 20;
/// How long a stop waits for a container to exit after SIGKILL before it reports a failure.
pub const CONTAINER_KILL_WAIT_MS: u64 = 10_000;
/// How long a shim waits, once its container's main process has exited, for the rest of its output: a process
/// that left the container's group may hold the pipes open.
pub const CONTAINER_OUTPUT_DRAIN_MS: u64 = 1_000;
/// Connections the kubelet endpoint serves at once; more wait in the listen backlog.
pub const KUBELET_CONNECTIONS_MAX: usize = 256;
/// How long a kubelet client may take to send a request header.
pub const KUBELET_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Bytes of a container log read (and sent) at once.
pub const KUBELET_LOG_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks of a log queued for a client before reading waits for it.
pub const KUBELET_LOG_CHUNKS_QUEUED_MAX: usize = 4;
/// How often a followed log's file is read for new output.
pub const KUBELET_LOG_FOLLOW_POLL_MS: u64 = 100;
/// How often a followed log asks the runtime whether its container has exited.
pub const KUBELET_LOG_FOLLOW_STATUS_MS: u64 = 500;
/// How long a kubelet client may take to finish the TLS handshake.
pub const KUBELET_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// How often an agent samples the usage of its pods and nodes (the window of the usage it reports); the first
/// two samples are `AGENT_USAGE_FIRST_WINDOW_MS` apart, so that usage is known soon after a start.
pub const AGENT_USAGE_SAMPLE_MS: u64 = 5_000;
pub const AGENT_USAGE_FIRST_WINDOW_MS: u64 = 1_000;
/// Pod points the leader's metrics keep at most (more are left out, with a warning).
pub const METRICS_PODS_MAX: usize = 200_000;
/// The largest usage report read from a kubelet endpoint, and the largest metrics answer relayed from the
/// leader.
pub const METRICS_REPORT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long a kubelet endpoint (or the leader, relaying a metrics read) may take to answer.
pub const METRICS_SCRAPE_TIMEOUT_MS: u64 = 10_000;
/// The longest `--metric-resolution` and `--horizontal-pod-autoscaler-sync-period`.
pub const METRICS_PERIOD_SECS_MAX: u64 = 3_600;
/// Kubelet endpoints scraped at once.
pub const METRICS_SCRAPES_IN_FLIGHT_MAX: usize = 16;

const _: () = assert!(CONTAINER_LOG_LINE_BYTES_MAX as u64 * 4 <= CONTAINER_LOG_BYTES_MAX);
const _: () = assert!(AGENT_USAGE_FIRST_WINDOW_MS < AGENT_USAGE_SAMPLE_MS);
const _: () = assert!(KUBELET_CONNECT_TIMEOUT_MS < METRICS_SCRAPE_TIMEOUT_MS);
const _: () = assert!(CONTAINER_START_POLL_MS < CONTAINER_START_TIMEOUT_MS);
const _: () = assert!(KUBELET_LOG_FOLLOW_POLL_MS <= KUBELET_LOG_FOLLOW_STATUS_MS);

const _: () = assert!(0 < SCHEDULER_ROUND_SLOTS_MIN && SCHEDULER_ROUND_SLOTS_MIN <= SCHEDULER_WRITES_IN_FLIGHT_MAX);
const _: () = assert!(SCHEDULER_BACKOFF_MS_INITIAL <= SCHEDULER_BACKOFF_MS_MAX);
const _: () = assert!(SCHEDULER_BACKOFF_MS_MAX < SCHEDULER_UNSCHEDULABLE_RETRY_MS);

/// The service proxy: most connections forwarded at once (more are closed at once), how long a connection to
/// an endpoint may take before the next endpoint is tried (and to the last one tried), and how many endpoints
/// one connection tries.
pub const PROXY_CONNECTIONS_MAX: usize = 10_000;
pub const PROXY_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const PROXY_CONNECT_LAST_TIMEOUT_MS: u64 = 10_000;
pub const PROXY_CONNECT_ATTEMPTS_MAX: usize = 3;
/// The buffer of each direction of a forwarded TCP connection (two per connection, so at most
/// `PROXY_CONNECTIONS_MAX` times twice this in all).
pub const PROXY_COPY_BUFFER_BYTES: usize = 32 * 1024;
/// Most clients a frontend with `sessionAffinity: ClientIP` remembers.
pub const PROXY_AFFINITY_CLIENTS_MAX: usize = 10_000;
/// Changes of Services and slices that arrive within this long are applied together.
pub const PROXY_TABLE_SETTLE_MS: u64 = 20;
/// UDP: most sessions (client addresses) per frontend, how long one lives without a datagram, the largest
/// datagram relayed.
pub const PROXY_UDP_SESSIONS_MAX: usize = 1_000;
pub const PROXY_UDP_IDLE_SECS: u64 = 30;
pub const PROXY_UDP_DATAGRAM_BYTES_MAX: usize = 65_535;

/// The agent's DNS server: the largest message it reads, most TCP clients and forwarded questions at once, how
/// long a forwarded question waits, how long a TCP client may stay.
pub const DNS_MESSAGE_BYTES_MAX: usize = 65_535;
pub const DNS_TCP_CONNECTIONS_MAX: usize = 256;
pub const DNS_FORWARDS_IN_FLIGHT_MAX: usize = 256;
pub const DNS_FORWARD_TIMEOUT_MS: u64 = 2_000;
pub const DNS_TCP_IDLE_SECS: u64 = 30;

/// How long a certificate authority made by `raftsman` is valid.
pub const CA_VALIDITY_DAYS: i64 = 3_650;
/// How long a certificate it issues is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// How long an agent waits before asking the replicas again for its node's certificate (doubling up to the
/// maximum), and how long before its certificate ends it asks for a new one (at its start).
pub const AGENT_JOIN_RETRY_MS: u64 = 500;
pub const AGENT_JOIN_RETRY_MAX_MS: u64 = 10_000;
pub const AGENT_CERTIFICATE_RENEW_DAYS: i64 = 30;
const _: () = assert!(AGENT_CERTIFICATE_RENEW_DAYS < LEAF_VALIDITY_DAYS);
/// The largest static token file (`--token-auth-file`) a replica reads.
pub const TOKEN_FILE_BYTES_MAX: u64 = 1 << 20;
/// The largest body a node's request for its credentials may have (a signing request and a token).
pub const NODE_CREDENTIALS_BODY_BYTES_MAX: usize = 16 << 10;
/// The most addresses a node's certificate may name.
pub const NODE_CERTIFICATE_HOSTS_MAX: usize = 16;

/// Size at which the audit log is rotated.
pub const AUDIT_LOG_BYTES_MAX: u64 = 100 * 1024 * 1024;
/// Rotated audit logs kept (`audit.log.1` ... `audit.log.N`).
pub const AUDIT_LOG_FILES_KEPT: usize = 5;
/// Audit lines waiting for the writer; a write's request waits for room beyond this.
pub const AUDIT_QUEUE_LINES_MAX: usize = 4_096;

/// Requests a second each user (other than `system:masters`) may make of one replica's API, on average...
pub const API_USER_REQUESTS_PER_SEC: u32 = 100;
/// ... and at once after a quiet spell; beyond, 429 with Retry-After.
pub const API_USER_REQUEST_BURST: u32 = 200;
/// Watches a user (other than `system:masters`) may hold open on one replica; beyond, 429.
pub const API_USER_WATCHES_MAX: usize = 64;
/// Users whose request budgets a replica remembers; past this, those with a full budget are forgotten.
pub const API_USER_BUCKETS_MAX: usize = 10_000;
