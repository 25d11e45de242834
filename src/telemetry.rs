//! The operational metrics every replica and agent serves at `/metrics`, in Prometheus' text format (0.0.4),
//! kept and encoded by the prometheus-client crate.
//!
//! Names follow the components raftsman stands in for wherever the meaning is theirs, so that existing
//! dashboards and alerts read them: etcd's (`etcd_server_*`, `etcd_disk_*`, `etcd_mvcc_*`), kube-apiserver's
//! (`apiserver_*`), client-go's work queues (`workqueue_*`), controller-runtime's reconcilers
//! (`controller_runtime_*`), kube-scheduler's (`scheduler_*`) and the kubelet's (`kubelet_*`). What is
//! raftsman's own is `raftsman_*`.
//!
//! One set per process: the code doing the work counts it where it happens (`get()`); what a replica's state
//! says (its term, its indexes, its database's size) or an agent's latest sample (the pods of each node) is
//! set by the `/metrics` handler just before it encodes (`Telemetry::encode`). A process that runs several
//! replicas (the chaos simulation) adds theirs together.
//!
//! Invariant: bounded. Every label takes its values from a fixed set (verbs, codes, results) or from names the
//! process owns in bounded number (the resources the API serves, its controllers' queues, its agent's nodes);
//! never from a namespace, an object's name, a user, or anything else a client chooses.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of what `encode` writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The process's metrics.
pub fn get() -> &'static Telemetry {
    static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);
    &TELEMETRY
}

/// A histogram of durations in seconds, from 1 ms to about 16 s (etcd's and kube-apiserver's range).
#[derive(Clone, Copy, Debug)]
pub struct Seconds;

impl MetricConstructor<Histogram> for Seconds {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 15))
    }
}

/// What one API request was: its verb as kube-apiserver labels it (`GET`, `LIST`, `WATCH`, `POST`, `PUT`,
/// `PATCH`, `APPLY`, `DELETE`), the served resource and subresource it named (empty for other paths and for
/// what the API does not serve), and the response's code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Requested {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    pub name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Controller {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reconciled {
    pub controller: &'static str,
    /// `success`, `requeue_after` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Attempt {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Node {
    pub node: String,
}

pub struct Telemetry {
    registry: Registry,
    pub store: Store,
    pub api: Api,
    pub controllers: Controllers,
    pub scheduler: Scheduler,
    pub agent: Agent,
}

/// The replicated store's.
pub struct Store {
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub term: Gauge,
    pub committed_index: Gauge,
    pub applied_index: Gauge,
    pub apply_lag: Gauge,
    pub proposals_pending: Gauge,
    pub proposals_committed: Counter,
    pub proposals_failed: Counter,
    /// From proposal to applied, on the leader.
    pub proposal_seconds: Histogram,
    /// One batch of committed entries applied to the state machine.
    pub apply_seconds: Histogram,
    pub wal_fsync_seconds: Histogram,
    pub db_size_bytes: Gauge,
    /// Linearizable reads made through this replica: read indexes from its own Raft as leader, or asked of the
    /// leader.
    pub read_indexes: Counter,
}

/// The Kubernetes API's.
pub struct Api {
    pub requests: Family<Request, Counter>,
    /// Requests that end with their response (not watches, which `long_running` counts, nor exec sessions).
    pub request_seconds: Family<Requested, Histogram, Seconds>,
    pub long_running: Family<Requested, Gauge>,
}

/// The controllers' work queues and reconcilers.
pub struct Controllers {
    pub depth: Family<Queue, Gauge>,
    pub adds: Family<Queue, Counter>,
    pub reconciles: Family<Reconciled, Counter>,
    pub reconcile_errors: Family<Controller, Counter>,
    pub reconcile_seconds: Family<Controller, Histogram, Seconds>,
}

/// The scheduler's.
pub struct Scheduler {
    pub attempts: Family<Attempt, Counter>,
    /// From a pod's decision to its binding (or its unschedulable condition) written.
    pub attempt_seconds: Family<Attempt, Histogram, Seconds>,
}

/// An agent's: its kubelet's and its service proxy's.
pub struct Agent {
    pub running_pods: Family<Node, Gauge>,
    pub proxy_connections: Counter,
    pub proxy_connections_open: Gauge,
}

fn seconds() -> Histogram {
    Seconds.new_metric()
}

impl Telemetry {
    fn new() -> Telemetry {
        let store = Store {
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            apply_lag: Gauge::default(),
            proposals_pending: Gauge::default(),
            proposals_committed: Counter::default(),
            proposals_failed: Counter::default(),
            proposal_seconds: seconds(),
            apply_seconds: seconds(),
            wal_fsync_seconds: seconds(),
            db_size_bytes: Gauge::default(),
            read_indexes: Counter::default(),
        };
        let api = Api {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(Seconds),
            long_running: Family::default(),
        };
        let controllers = Controllers {
            depth: Family::default(),
            adds: Family::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_seconds: Family::new_with_constructor(Seconds),
        };
        let scheduler =
            Scheduler { attempts: Family::default(), attempt_seconds: Family::new_with_constructor(Seconds) };
        let agent = Agent {
            running_pods: Family::default(),
            proxy_connections: Counter::default(),
            proxy_connections_open: Gauge::default(),
        };

        let mut r = Registry::default();
        let s = &store;
        r.register("etcd_server_has_leader", "Whether a leader is known (1) or not (0)", s.has_leader.clone());
        r.register("etcd_server_is_leader", "Whether this replica leads (1) or not (0)", s.is_leader.clone());
        r.register("etcd_server_leader_changes_seen", "Leaders this replica has seen come", s.leader_changes.clone());
        r.register("raftsman_raft_term", "This replica's Raft term", s.term.clone());
        r.register(
            "raftsman_raft_committed_index",
            "The last log index this replica knows committed",
            s.committed_index.clone(),
        );
        r.register(
            "raftsman_raft_applied_index",
            "The last log index this replica has applied",
            s.applied_index.clone(),
        );
        r.register(
            "raftsman_raft_apply_lag_entries",
            "Committed entries this replica has not applied yet",
            s.apply_lag.clone(),
        );
        r.register(
            "etcd_server_proposals_pending",
            "Writes proposed by this replica as leader and not yet applied",
            s.proposals_pending.clone(),
        );
        r.register(
            "etcd_server_proposals_committed",
            "Writes proposed by this replica as leader and applied",
            s.proposals_committed.clone(),
        );
        r.register(
            "etcd_server_proposals_failed",
            "Writes proposed by this replica as leader that failed or timed out",
            s.proposals_failed.clone(),
        );
        r.register(
            "raftsman_store_proposal_duration_seconds",
            "From a write's proposal to its application, on the leader",
            s.proposal_seconds.clone(),
        );
        r.register(
            "raftsman_store_apply_duration_seconds",
            "Applying one batch of committed entries to the state machine",
            s.apply_seconds.clone(),
        );
        r.register("etcd_disk_wal_fsync_duration_seconds", "Syncing the Raft log to disk", s.wal_fsync_seconds.clone());
        r.register("etcd_mvcc_db_total_size_in_bytes", "The state machine's size on disk", s.db_size_bytes.clone());
        r.register(
            "raftsman_store_read_indexes",
            "Linearizable reads made through this replica: read indexes from its own Raft as leader, or asked of the \
             leader",
            s.read_indexes.clone(),
        );

        r.register("apiserver_request", "API requests answered, by verb, resource and code", api.requests.clone());
        r.register(
            "apiserver_request_duration_seconds",
            "API request latency, watches and sessions excepted",
            api.request_seconds.clone(),
        );
        r.register("apiserver_longrunning_requests", "Watches open", api.long_running.clone());

        let c = &controllers;
        r.register("workqueue_depth", "Keys waiting in a controller's queue", c.depth.clone());
        r.register("workqueue_adds", "Keys added to a controller's queue", c.adds.clone());
        r.register("controller_runtime_reconcile", "Reconciles, by controller and result", c.reconciles.clone());
        r.register(
            "controller_runtime_reconcile_errors",
            "Reconciles that failed, by controller",
            c.reconcile_errors.clone(),
        );
        r.register(
            "controller_runtime_reconcile_time_seconds",
            "Reconcile latency, by controller",
            c.reconcile_seconds.clone(),
        );

        r.register("scheduler_schedule_attempts", "Scheduling attempts, by result", scheduler.attempts.clone());
        r.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "From a scheduling decision to its write, by result",
            scheduler.attempt_seconds.clone(),
        );

        r.register("kubelet_running_pods", "Pods running on each of the agent's nodes", agent.running_pods.clone());
        r.register(
            "raftsman_proxy_connections",
            "Connections the service proxy has forwarded",
            agent.proxy_connections.clone(),
        );
        r.register(
            "raftsman_proxy_open_connections",
            "Connections the service proxy holds open",
            agent.proxy_connections_open.clone(),
        );

        Telemetry { registry: r, store, api, controllers, scheduler, agent }
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Records a duration in seconds.
pub fn observe(histogram: &Histogram, took: Duration) {
    histogram.observe(took.as_secs_f64());
}

/// A gauge held one higher while this lives.
pub struct Held(Gauge);

impl Held {
    pub fn new(gauge: &Gauge) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_each_family_once_with_its_type_and_counts_what_was_recorded() {
        let t = Telemetry::new();
        t.api
            .requests
            .get_or_create(&Request { verb: "LIST", group: "", resource: "pods", subresource: "", code: 200 })
            .inc();
        t.store.term.set(7);
        observe(&t.store.wal_fsync_seconds, Duration::from_millis(3));
        let text = t.encode();
        assert!(text.contains("# TYPE apiserver_request_total counter\n"), "{text}");
        assert!(
            text.contains(
                r#"apiserver_request_total{verb="LIST",group="",resource="pods",subresource="",code="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("raftsman_raft_term 7\n"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1\n"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 1\n"), "{text}");
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, text.lines().filter(|l| l.starts_with("# HELP ")).count());
    }
}
