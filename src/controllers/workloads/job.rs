//! The Job controller (kube-controller-manager's): runs pods until `completions` of them succeed (or, without
//! completions, until one succeeds and the rest have finished), at most `parallelism` at once; NonIndexed and
//! Indexed completion (each index once, its pods named `<job>-<index>-` with the index in an annotation, a
//! label, the `JOB_COMPLETION_INDEX` variable and the hostname); a failed pod is replaced after upstream's
//! back-off (10 s, doubling, at most 6 minutes) until more than `backoffLimit` have failed; `activeDeadlineSeconds`;
//! `suspend` (active pods deleted, Suspended condition); the Complete and Failed conditions (with
//! SuccessCriteriaMet and FailureTarget before them, as upstream); `ttlSecondsAfterFinished` deletes the
//! finished Job and, through the garbage collector, its pods.
//!
//! Succeeded and failed pods are counted from the pods the Job still has (upstream's counting before
//! finalizer tracking): a finished pod deleted by someone else before the controller saw it is not counted.
//! The counts never go down: status keeps the highest seen.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::ResourceExt;

use super::writes::PodWriter;
use super::{pods, template, Key};
use crate::controllers::events;
use crate::limits;

pub const COMPONENT: &str = "job-controller";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's pod failure back-off: the first replacement after 10 s, doubling, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

pub struct Input<'a> {
    pub job: &'a Job,
    /// The pods whose controller is this Job.
    pub pods: &'a [Arc<Pod>],
    pub expectations_satisfied: bool,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// The pods to create: each one's completion index (None for NonIndexed Jobs).
    pub create: Vec<Option<i32>>,
    pub delete: Vec<Arc<Pod>>,
    pub status: Option<JobStatus>,
    /// Events to record: type, reason, message.
    pub events: Vec<(&'static str, &'static str, String)>,
    /// The Job has been finished for `ttlSecondsAfterFinished`.
    pub delete_job: bool,
    pub requeue: Option<Duration>,
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    status.conditions.iter().flatten().any(|c| c.type_ == type_ && c.status == "True")
}

/// When the Job finished (Complete or Failed), if it has.
pub fn finished_at(status: &JobStatus) -> Option<Timestamp> {
    let finished = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = status.completion_time.as_ref().or(finished.last_transition_time.as_ref());
    Some(at.map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

fn set_condition(status: &mut JobStatus, type_: &str, state: &str, reason: &str, message: &str, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != state {
            c.last_transition_time = Some(Time(now));
        }
        c.status = state.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: state.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

/// A pod's completion index.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(COMPLETION_INDEX).and_then(|i| i.parse().ok())
}

/// The indexes of `status.completedIndexes` ("1,3-5").
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut all = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    all.extend(a..=b.min(a.saturating_add(limits::JOB_COMPLETIONS_INDEXED_MAX)));
                }
            }
            None => all.extend(part.parse::<i32>().ok()),
        }
    }
    all
}

/// Indexes as `status.completedIndexes` writes them: ordered, runs as ranges.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                parts.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        parts.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
    }
    parts.join(",")
}

/// When a finished pod finished: its containers' latest finish, else its creation.
fn finished(pod: &Pod) -> Option<Timestamp> {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    let latest = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    latest.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

pub fn plan(input: &Input) -> Plan {
    let job = input.job;
    let now = Timestamp::from_second(input.now.as_second()).unwrap_or(input.now);
    let mut plan = Plan::default();
    let Some(spec) = job.spec.as_ref() else { return plan };
    let current = job.status.clone().unwrap_or_default();
    if let Some(at) = finished_at(&current) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let due = at + jiff::SignedDuration::from_secs(i64::from(ttl.max(0)));
            if now >= due {
                plan.delete_job = job.metadata.deletion_timestamp.is_none();
            } else {
                plan.requeue = Duration::try_from(due.duration_since(now)).ok();
            }
        }
        return plan;
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let active: Vec<Arc<Pod>> = input.pods.iter().filter(|p| pods::is_active(p)).cloned().collect();
    let succeeded_pods: Vec<&Arc<Pod>> = input.pods.iter().filter(|p| pods::phase(p) == "Succeeded").collect();
    let failed_pods: Vec<&Arc<Pod>> = input.pods.iter().filter(|p| pods::phase(p) == "Failed").collect();
    let mut completed: BTreeSet<i32> = current.completed_indexes.as_deref().map(parse_indexes).unwrap_or_default();
    let completions = spec.completions;
    if indexed {
        let limit = completions.unwrap_or(0);
        completed.extend(succeeded_pods.iter().filter_map(|p| index_of(p)).filter(|i| (0..limit).contains(i)));
    }
    let succeeded =
        if indexed { completed.len() as i32 } else { current.succeeded.unwrap_or(0).max(succeeded_pods.len() as i32) };
    let failed = current.failed.unwrap_or(0).max(failed_pods.len() as i32);
    let suspended = spec.suspend == Some(true);
    let mut status = JobStatus {
        active: Some(active.len() as i32),
        ready: Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32),
        succeeded: Some(succeeded),
        failed: Some(failed),
        start_time: current.start_time.clone().or_else(|| (!suspended).then_some(Time(now))),
        completed_indexes: indexed.then(|| format_indexes(&completed)),
        ..current.clone()
    };
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let restarts: i32 = active.iter().map(|p| pods::restarts(p)).sum();
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let past_deadline = match (spec.active_deadline_seconds, &status.start_time) {
        (Some(limit), Some(start)) if !suspended => now >= start.0 + jiff::SignedDuration::from_secs(limit),
        _ => false,
    };
    let failure = if failed > backoff_limit || (on_failure && backoff_limit > 0 && restarts >= backoff_limit) {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if past_deadline {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        plan.delete = active;
        status.active = Some(0);
        set_condition(&mut status, "FailureTarget", "True", reason, message, now);
        set_condition(&mut status, "Failed", "True", reason, message, now);
        plan.events.push((events::WARNING, reason, message.into()));
    } else {
        let complete = match completions {
            None => succeeded > 0 && active.is_empty(),
            Some(c) => succeeded >= c,
        };
        if complete {
            set_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            set_condition(
                &mut status,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            status.completion_time = Some(Time(now));
            plan.events.push((events::NORMAL, "Completed", "Job completed".into()));
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                plan.requeue = Some(Duration::from_secs(ttl.max(0) as u64));
            }
        } else if suspended {
            plan.delete = active;
            status.active = Some(0);
            if !condition_true(&current, "Suspended") {
                set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended", now);
                plan.events.push((events::NORMAL, "Suspended", "Job suspended".into()));
            }
        } else {
            if condition_true(&current, "Suspended") {
                set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed", now);
                plan.events.push((events::NORMAL, "Resumed", "Job resumed".into()));
            }
            if input.expectations_satisfied {
                manage(
                    spec.parallelism.unwrap_or(1),
                    completions,
                    indexed,
                    succeeded,
                    &completed,
                    &active,
                    &failed_pods,
                    now,
                    &mut plan,
                );
            }
            if let (Some(limit), Some(start)) = (spec.active_deadline_seconds, &status.start_time) {
                let due = start.0 + jiff::SignedDuration::from_secs(limit);
                let wait = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    if status != current {
        plan.status = Some(status);
    }
    plan
}

/// How many pods should be running and which to create or delete to get there (upstream's manageJob), after the
/// back-off that follows a failure.
#[allow(clippy::too_many_arguments)]
fn manage(
    parallelism: i32,
    completions: Option<i32>,
    indexed: bool,
    succeeded: i32,
    completed: &BTreeSet<i32>,
    active: &[Arc<Pod>],
    failed_pods: &[&Arc<Pod>],
    now: Timestamp,
    plan: &mut Plan,
) {
    let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
    let pending: Vec<i32> = if indexed {
        (0..completions.unwrap_or(0)).filter(|i| !completed.contains(i) && !running.contains(i)).collect()
    } else {
        Vec::new()
    };
    let want = match completions {
        // Once one has succeeded, no more start; the running ones finish.
        None if succeeded > 0 => active.len() as i32,
        None => parallelism,
        Some(_) if indexed => parallelism.min(active.len() as i32 + pending.len() as i32),
        Some(c) => parallelism.min(c - succeeded),
    }
    .max(0) as usize;
    if active.len() > want {
        plan.delete = pods::to_delete(active, active.len() - want);
        return;
    }
    let missing = (want - active.len()).min(limits::REPLICA_SET_BURST);
    if missing == 0 {
        return;
    }
    if !failed_pods.is_empty() {
        let exponent = (failed_pods.len() - 1).min(16) as u32;
        let delay = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        if let Some(last) = failed_pods.iter().filter_map(|p| finished(p)).max() {
            let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or_default();
            if elapsed < delay {
                plan.requeue = Some(delay - elapsed);
                return;
            }
        }
    }
    plan.create = if indexed { pending.into_iter().take(missing).map(Some).collect() } else { vec![None; missing] };
}

/// The pod for one completion (with its index for an Indexed Job).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let name = job.name_any();
    let generate = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    let mut pod = template::pod_from_template(&spec, template::controller_reference(job), None, generate);
    if let Some(i) = index {
        let value = i.to_string();
        pod.metadata.annotations.get_or_insert_with(Default::default).insert(COMPLETION_INDEX.into(), value.clone());
        pod.metadata.labels.get_or_insert_with(Default::default).insert(COMPLETION_INDEX.into(), value.clone());
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(format!("{name}-{i}"));
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let env = c.env.get_or_insert_with(Vec::new);
                env.push(EnvVar { name: "JOB_COMPLETION_INDEX".into(), value: Some(value.clone()), value_from: None });
            }
        }
    }
    pod
}

/// Makes the plan's writes: pods, then status, then events; or deletes a Job past its time to live.
pub async fn execute(writer: &PodWriter<'_>, key: &Key, job: &Job, plan: &Plan) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::namespaced(writer.client.clone(), &key.0);
    if plan.delete_job {
        tracing::info!(namespace = %key.0, job = %key.1, "deleting a Job past its ttlSecondsAfterFinished");
        let preconditions = Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None });
        let params = DeleteParams {
            preconditions,
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        return jobs.delete(&key.1, &params).await.map(drop);
    }
    if !plan.create.is_empty() {
        let pods = plan.create.iter().map(|i| pod_for(job, *i)).collect();
        writer.create(key, job, pods).await?;
    }
    if !plan.delete.is_empty() {
        writer.delete(key, job, &plan.delete).await?;
    }
    if let Some(status) = &plan.status {
        let mut updated = job.clone();
        updated.status = Some(status.clone());
        super::writes::replace_status(writer.client, key, &updated).await?;
    }
    for (type_, reason, message) in &plan.events {
        writer.recorder.record(job, type_, reason, message.clone());
    }
    Ok(())
}

/// The key of the Job controlling `pod`, if one does.
pub fn owner_key(pod: &Pod) -> Option<Key> {
    super::controller_key(&pod.metadata, "batch/v1", "Job")
}

#[cfg(test)]
mod tests;
