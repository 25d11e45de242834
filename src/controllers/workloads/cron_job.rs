//! The CronJob controller (kube-controller-manager's): a Job from `jobTemplate` at each time of the schedule
//! (`cron`), in the CronJob's time zone; concurrencyPolicy Allow, Forbid (a run due while one is active waits)
//! or Replace (the active ones are deleted first); `suspend`; `startingDeadlineSeconds` (a run later than that
//! is missed); the newest `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` finished Jobs are kept;
//! status lists the active Jobs and the last scheduled and successful times.
//!
//! A run happens once, whichever leader sees it due: its Job is named after the scheduled minute
//! (`<cronjob>-<minutes since the epoch>`), so a second creation is refused by the API, and `lastScheduleTime`
//! in status tells the next leader which runs are done; a run due while no leader acted is started by the next
//! one from that time (within the starting deadline).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::ResourceExt;

use super::cron::Schedule;
use super::{job, template, Key};
use crate::controllers::events::{self, Recorder};

pub const COMPONENT: &str = "cronjob-controller";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub struct Input<'a> {
    pub cron_job: &'a CronJob,
    /// The Jobs whose controller is this CronJob.
    pub jobs: &'a [Arc<Job>],
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Finished Jobs past the history limits, and active ones a Replace run ends.
    pub delete: Vec<Arc<Job>>,
    pub create: Option<Box<Job>>,
    pub status: Option<CronJobStatus>,
    /// Events to record: type, reason, message.
    pub events: Vec<(&'static str, &'static str, String)>,
    pub requeue: Option<Duration>,
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The Job's name for a run scheduled at `at`.
pub fn job_name(cron_job: &str, at: Timestamp) -> String {
    format!("{cron_job}-{}", at.as_second().div_euclid(60))
}

fn succeeded(job: &Job) -> bool {
    job.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Complete" && c.status == "True")
}

pub fn plan(input: &Input) -> Plan {
    let cj = input.cron_job;
    let now = Timestamp::from_second(input.now.as_second()).unwrap_or(input.now);
    let mut plan = Plan::default();
    let Some(spec) = cj.spec.as_ref() else { return plan };
    let current = cj.status.clone().unwrap_or_default();
    let finished = |j: &Job| j.status.as_ref().and_then(job::finished_at).is_some();
    let was_active: BTreeSet<&str> = current.active.iter().flatten().filter_map(|r| r.name.as_deref()).collect();
    let mut active: Vec<&Arc<Job>> =
        input.jobs.iter().filter(|j| !finished(j) && j.metadata.deletion_timestamp.is_none()).collect();
    let mut status = current.clone();
    for j in input.jobs.iter().filter(|j| finished(j)) {
        if was_active.contains(j.name_any().as_str()) {
            let state = if succeeded(j) { "Complete" } else { "Failed" };
            plan.events.push((
                events::NORMAL,
                "SawCompletedJob",
                format!("Saw completed job: {}, status: {state}", j.name_any()),
            ));
        }
        if succeeded(j) {
            let at = j.status.as_ref().and_then(job::finished_at).map(Time);
            if at > status.last_successful_time {
                status.last_successful_time = at;
            }
        }
    }
    // History: the newest finished Jobs of each kind stay.
    for (wanted, limit) in
        [(true, spec.successful_jobs_history_limit.unwrap_or(3)), (false, spec.failed_jobs_history_limit.unwrap_or(1))]
    {
        let mut done: Vec<&Arc<Job>> = input
            .jobs
            .iter()
            .filter(|j| finished(j) && succeeded(j) == wanted && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| j.status.as_ref().and_then(job::finished_at));
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        plan.delete.extend(done.into_iter().take(excess).cloned());
    }
    let deleting = cj.metadata.deletion_timestamp.is_some();
    let schedule = Schedule::parse(&spec.schedule, spec.time_zone.as_deref());
    if let (Ok(schedule), false, false) = (&schedule, deleting, spec.suspend == Some(true)) {
        let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let mut earliest = current.last_schedule_time.as_ref().map_or(created, |t| t.0);
        if let Some(deadline) = spec.starting_deadline_seconds {
            let limit = now - jiff::SignedDuration::from_secs(deadline.max(0));
            earliest = earliest.max(limit);
        }
        let (latest, missed) = schedule.latest(earliest, now);
        if missed > crate::limits::CRON_MISSED_MAX {
            let message = format!("too many missed start times: {missed}; the last one runs");
            plan.events.push((events::WARNING, "TooManyMissedTimes", message));
        }
        if let Some(at) = latest {
            let name = job_name(&cj.name_any(), at);
            let exists = input.jobs.iter().any(|j| j.name_any() == name);
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            if exists {
                status.last_schedule_time = Some(Time(at));
            } else if policy == "Forbid" && !active.is_empty() {
                let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
                plan.events.push((events::NORMAL, "JobAlreadyActive", message.into()));
            } else {
                if policy == "Replace" {
                    plan.delete.extend(active.drain(..).cloned());
                }
                plan.create = Some(Box::new(job_for(cj, &name, at)));
                status.last_schedule_time = Some(Time(at));
            }
        }
        plan.requeue = schedule
            .next_after(now)
            .and_then(|next| Duration::try_from(next.duration_since(input.now)).ok())
            .map(|d| d + Duration::from_millis(100));
    }
    if let Err(e) = &schedule {
        plan.events.push((
            events::WARNING,
            "UnparseableSchedule",
            format!("unparseable schedule {:?}: {e}", spec.schedule),
        ));
    }
    let mut refs: Vec<ObjectReference> = active.iter().map(|j| reference(j)).collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    status.active = (!refs.is_empty()).then_some(refs);
    if status != current {
        plan.status = Some(status);
    }
    plan
}

/// The Job of the run scheduled at `at`.
pub fn job_for(cj: &CronJob, name: &str, at: Timestamp) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), at.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![template::controller_reference(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Makes the plan's writes: deletions, the creation, the status, then the events.
pub async fn execute(
    client: &kube::Client,
    recorder: &Recorder,
    key: &Key,
    cj: &CronJob,
    plan: &Plan,
) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &key.0);
    for doomed in &plan.delete {
        let preconditions = Some(Preconditions { uid: doomed.metadata.uid.clone(), resource_version: None });
        let params = DeleteParams {
            preconditions,
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match jobs.delete(&doomed.name_any(), &params).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other?;
            }
        }
        recorder.record(cj, events::NORMAL, "SuccessfulDelete", format!("Deleted job {}", doomed.name_any()));
    }
    let mut status = plan.status.clone();
    if let Some(new) = &plan.create {
        match jobs.create(&PostParams::default(), new).await {
            Ok(created) => {
                recorder.record(cj, events::NORMAL, "SuccessfulCreate", format!("Created job {}", created.name_any()));
                let status = status.get_or_insert_with(|| cj.status.clone().unwrap_or_default());
                let active = status.active.get_or_insert_with(Vec::new);
                active.retain(|r| r.name != created.metadata.name);
                active.push(reference(&created));
            }
            // The run's Job exists: it was started already.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                recorder.record(cj, events::WARNING, "FailedCreate", format!("Error creating job: {e}"));
                return Err(e);
            }
        }
    }
    if let Some(status) = status {
        let mut updated = cj.clone();
        updated.status = Some(status);
        super::writes::replace_status(client, key, &updated).await?;
    }
    for (type_, reason, message) in &plan.events {
        recorder.record(cj, type_, reason, message.clone());
    }
    Ok(())
}

/// The key of the CronJob controlling `job`, if one does.
pub fn owner_key(job: &Job) -> Option<Key> {
    super::controller_key(&job.metadata, "batch/v1", "CronJob")
}

#[cfg(test)]
mod tests;
