//! The scheduler's task on the leader: gathers what the informers show, lets the queue decide (pure), and
//! carries the decisions out through the API: bindings (`pods/NAME/binding`, with the pod's uid as
//! precondition), the PodScheduled=False condition of unschedulable pods (status subresource, with the
//! resourceVersion as precondition) and the Events.
//!
//! Each round first feeds the queue the changes the informers reported since the last one (the queue keeps
//! the cluster's state for the whole term), then decides. Writes run concurrently, at most
//! `SCHEDULER_WRITES_IN_FLIGHT_MAX` at once, so that bindings share Raft round trips; a round of decisions
//! waits until enough of them are free (or none is in flight), and rounds are at least
//! `SCHEDULER_ROUND_INTERVAL_MS` apart.
//!
//! Invariant (leadership): a fresh instance per term on the term's informers, aborted with the controllers; all its
//! writes go through the fenced client, and the binding subresource refuses a pod already bound, so a pod is
//! bound once even when two terms' schedulers overlap for a moment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::events::{unschedulable_conditions, EventWrite, Recorder, Report};
use super::informers::{informers, Informers};
use super::model::PodFacts;
use super::queue::{BindOutcome, Decision, Queue};
use crate::apis::time;
use crate::controllers::runtime;
use crate::{limits, telemetry};

/// What a finished write tells the loop.
enum Done {
    Bind {
        uid: String,
        outcome: BindOutcome,
    },
    /// An unschedulable pod's writes ended; a repeated Event that was gone is forgotten (its message).
    Reported {
        uid: String,
        missing_event: Option<String>,
    },
}

/// Registers the scheduler with the term's informers; the returned future runs it (once they have listed)
/// until it is dropped.
pub fn prepare(shared: &mut runtime::Informers) -> impl std::future::Future<Output = ()> + Send {
    let client = shared.client().clone();
    let informers = informers(shared);
    async move {
        if !informers.ready().await {
            tracing::warn!("scheduler informers ended before their first list");
            return;
        }
        tracing::info!("scheduler started");
        schedule(client, informers).await;
    }
}

fn is_api_error(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn unix_nanos() -> i128 {
    jiff::Timestamp::now().as_nanosecond()
}

async fn write_event(client: &Client, write: EventWrite) -> Result<(), kube::Error> {
    match write {
        EventWrite::Create { namespace, event } => {
            let event: Event = serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
            Api::<Event>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        }
        EventWrite::Repeat { namespace, name, count, last_timestamp } => {
            let patch = Patch::Merge(json!({"count": count, "lastTimestamp": last_timestamp}));
            Api::<Event>::namespaced(client.clone(), &namespace).patch(&name, &PatchParams::default(), &patch).await?;
        }
    }
    Ok(())
}

async fn bind(client: Client, pod: Arc<PodFacts>, node: String, event: EventWrite) -> Done {
    let started = std::time::Instant::now();
    let api = Api::<Pod>::namespaced(client.clone(), &pod.namespace);
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"kind": "Node", "name": node}});
    let outcome = match api.create_subresource::<_, Value>("binding", &pod.name, &PostParams::default(), &binding).await
    {
        Ok(_) => {
            if let Err(e) = write_event(&client, event).await {
                tracing::debug!(error = %e, pod = %pod.name, "scheduled event not written");
            }
            BindOutcome::Bound
        }
        // Gone, already bound, being deleted, another pod of that name: nothing to retry.
        Err(e) if is_api_error(&e, 404) || is_api_error(&e, 409) => {
            tracing::debug!(error = %e, pod = %pod.name, node, "binding refused");
            BindOutcome::Moot
        }
        Err(e) => {
            tracing::debug!(error = %e, pod = %pod.name, node, "binding failed; retrying after a back-off");
            BindOutcome::Failed
        }
    };
    attempted(if matches!(outcome, BindOutcome::Bound) { "scheduled" } else { "error" }, started);
    Done::Bind { uid: pod.uid.clone(), outcome }
}

/// Counts a scheduling attempt whose decision was written from `started` on.
fn attempted(result: &'static str, started: std::time::Instant) {
    let metrics = &telemetry::get().scheduler;
    metrics.attempts.get_or_create(&telemetry::Attempt { result }).inc();
    telemetry::observe(&metrics.attempt_seconds.get_or_create(&telemetry::Attempt { result }), started.elapsed());
}

/// Writes an unschedulable pod's condition (when it changed) and its FailedScheduling Event.
async fn report(
    client: Client,
    pod: Arc<PodFacts>,
    message: String,
    conditions: Option<Vec<Value>>,
    event: EventWrite,
) -> Done {
    let started = std::time::Instant::now();
    if let Some(conditions) = conditions {
        let patch = Patch::Merge(json!({"metadata": {"resourceVersion": pod.resource_version},
            "status": {"conditions": conditions}}));
        let api = Api::<Pod>::namespaced(client.clone(), &pod.namespace);
        if let Err(e) = api.patch_status(&pod.name, &PatchParams::default(), &patch).await {
            tracing::debug!(error = %e, pod = %pod.name, "unschedulable condition not written");
        }
    }
    let repeat = matches!(event, EventWrite::Repeat { .. });
    let missing_event = match write_event(&client, event).await {
        Err(e) if repeat && is_api_error(&e, 404) => Some(message),
        Err(e) => {
            tracing::debug!(error = %e, pod = %pod.name, "failed-scheduling event not written");
            None
        }
        Ok(()) => None,
    };
    attempted("unschedulable", started);
    Done::Reported { uid: pod.uid.clone(), missing_event }
}

/// Feeds the queue what the informers reported since the last round.
fn catch_up(queue: &mut Queue, informers: &Informers) {
    let changes = informers.take();
    for (name, node) in changes.nodes {
        match node {
            Some(facts) => queue.set_node(facts),
            None => queue.remove_node(&name),
        }
    }
    for (uid, pod) in changes.pods {
        match pod {
            Some(facts) => queue.set_pod(facts),
            None => queue.remove_pod(&uid),
        }
    }
}

/// The conditions the informers show for the pod decided on (none if it has changed identity since).
fn current_conditions(informers: &Informers, pod: &PodFacts) -> Vec<Value> {
    runtime::informer::get(&informers.pods, Some(&pod.namespace), &pod.name)
        .filter(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()))
        .and_then(|p| p.status.as_ref()?.conditions.clone())
        .map(|c| c.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
        .unwrap_or_default()
}

async fn schedule(client: Client, informers: Informers) {
    let mut queue = Queue::default();
    let mut recorder = Recorder::default();
    let mut writes: JoinSet<Done> = JoinSet::new();
    // Which pod each write is for, so that a write that panicked still frees its pod.
    let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut changed = informers.changed.clone();
    let interval = Duration::from_millis(limits::SCHEDULER_ROUND_INTERVAL_MS);
    let mut last_round = Instant::now() - interval;
    let mut wake_at: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let free = limits::SCHEDULER_WRITES_IN_FLIGHT_MAX.saturating_sub(queue.in_flight());
        let ready = dirty && free > 0 && (free >= limits::SCHEDULER_ROUND_SLOTS_MIN || queue.in_flight() == 0);
        if ready && last_round.elapsed() >= interval {
            dirty = false;
            last_round = Instant::now();
            catch_up(&mut queue, &informers);
            let round = queue.round(Instant::now(), free);
            wake_at = round.wake_at;
            let now = time::now();
            for decision in round.decisions {
                match decision {
                    Decision::Bind { pod, node } => {
                        let event = recorder.record(&Report::scheduled(&pod, &node), &now, unix_nanos());
                        let uid = pod.uid.clone();
                        let task = writes.spawn(bind(client.clone(), pod, node, event));
                        tasks.insert(task.id(), uid);
                    }
                    Decision::Unschedulable { pod, message } => {
                        tracing::debug!(pod = %pod.name, message = %message, "unschedulable");
                        let current = current_conditions(&informers, &pod);
                        let conditions = unschedulable_conditions(&current, &message, &now);
                        let event = recorder.record(&Report::failed(&pod, &message), &now, unix_nanos());
                        let uid = pod.uid.clone();
                        let task = writes.spawn(report(client.clone(), pod, message, conditions, event));
                        tasks.insert(task.id(), uid);
                    }
                }
            }
            continue;
        }
        let round_at = tokio::time::Instant::from_std(last_round + interval);
        let wake = wake_at.map(tokio::time::Instant::from_std);
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    tracing::warn!("scheduler informers ended");
                    return;
                }
                dirty = true;
            }
            Some(done) = writes.join_next_with_id() => {
                let mut next = Some(done);
                while let Some(done) = next.take() {
                    match done {
                        Ok((id, Done::Bind { uid, outcome })) => {
                            tasks.remove(&id);
                            queue.bound(&uid, outcome, Instant::now());
                        }
                        Ok((id, Done::Reported { uid, missing_event })) => {
                            tasks.remove(&id);
                            if let Some(message) = missing_event {
                                recorder.forget(&uid, "FailedScheduling", &message);
                            }
                            queue.reported(&uid);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduler write task failed");
                            if let Some(uid) = tasks.remove(&e.id()) {
                                queue.bound(&uid, BindOutcome::Failed, Instant::now());
                            }
                        }
                    }
                    next = writes.try_join_next_with_id();
                }
                dirty = true;
            }
            () = tokio::time::sleep_until(round_at), if ready => {}
            () = tokio::time::sleep_until(wake.unwrap_or(round_at)), if wake.is_some() && !ready => {
                wake_at = None;
                dirty = true;
            }
        }
    }
}
