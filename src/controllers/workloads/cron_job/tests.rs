use super::*;
use serde_json::{json, Value};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cron_job(extra: Value, last: Option<&str>) -> CronJob {
    let mut c = json!({
        "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2026-12-05T09:00:00Z"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                 "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        c["spec"][k] = v.clone();
    }
    if let Some(last) = last {
        c["status"] = json!({"lastScheduleTime": last});
    }
    serde_json::from_value(c).unwrap()
}

/// A Job of the run at `at`, finished with `state` (Complete or Failed) at `at` + 1 minute, or active.
fn job(at: &str, state: Option<&str>) -> Arc<Job> {
    let mut j =
        json!({"metadata": {"name": job_name("tick", ts(at)), "namespace": "default", "uid": format!("job-{at}")}});
    if let Some(state) = state {
        let done = (ts(at) + jiff::SignedDuration::from_secs(60)).to_string();
        j["status"] = json!({"completionTime": done, "conditions": [{"type": state, "status": "True", "lastTransitionTime": done}]});
    }
    Arc::new(serde_json::from_value(j).unwrap())
}

fn plan_of(cj: &CronJob, jobs: &[Arc<Job>], now: &str) -> Plan {
    plan(&Input { cron_job: cj, jobs, now: ts(now) })
}

#[test]
fn a_due_run_creates_its_job_named_by_the_minute_once() {
    let cj = cron_job(json!({}), Some("2026-12-05T09:55:00Z"));
    let p = plan_of(&cj, &[], "2026-12-05T10:01:00Z");
    let created = p.create.expect("a job");
    assert_eq!(created.name_any(), job_name("tick", ts("2026-12-05T10:00:00Z")));
    assert_eq!(created.annotations()[SCHEDULED_TIMESTAMP], "2026-12-05T10:00:00Z");
    assert_eq!(created.labels()["app"], "tick");
    assert_eq!(p.status.unwrap().last_schedule_time, Some(Time(ts("2026-12-05T10:00:00Z"))));
    assert_eq!(p.requeue.map(|d| d.as_secs()), Some(240), "until 10:05");
    // The run's Job already exists (created by an earlier leader): no second one.
    let p = plan_of(&cj, &[job("2026-12-05T10:00:00Z", None)], "2026-12-05T10:01:00Z");
    assert!(p.create.is_none());
    assert_eq!(p.status.unwrap().last_schedule_time, Some(Time(ts("2026-12-05T10:00:00Z"))));
}

#[test]
fn forbid_waits_for_the_active_run_and_replace_ends_it() {
    let active = [job("2026-12-05T09:55:00Z", None)];
    let forbid = cron_job(json!({"concurrencyPolicy": "Forbid"}), Some("2026-12-05T09:55:00Z"));
    let p = plan_of(&forbid, &active, "2026-12-05T10:00:30Z");
    assert!(p.create.is_none());
    assert!(p.events.iter().any(|e| e.1 == "JobAlreadyActive"));
    let replace = cron_job(json!({"concurrencyPolicy": "Replace"}), Some("2026-12-05T09:55:00Z"));
    let p = plan_of(&replace, &active, "2026-12-05T10:00:30Z");
    assert!(p.create.is_some());
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let cj =
        cron_job(json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}), Some("2026-12-05T10:00:00Z"));
    let jobs = [
        job("2026-12-05T09:40:00Z", Some("Complete")),
        job("2026-12-05T09:45:00Z", Some("Failed")),
        job("2026-12-05T09:50:00Z", Some("Complete")),
        job("2026-12-05T09:55:00Z", Some("Failed")),
    ];
    let p = plan_of(&cj, &jobs, "2026-12-05T10:01:00Z");
    let deleted: Vec<String> = p.delete.iter().map(|j| j.name_any()).collect();
    assert_eq!(deleted, [jobs[0].name_any(), jobs[1].name_any()]);
    assert_eq!(p.status.unwrap().last_successful_time, Some(Time(ts("2026-12-05T09:51:00Z"))));
}

#[test]
fn a_suspended_cron_job_starts_nothing_and_a_run_past_the_starting_deadline_is_missed() {
    let cj = cron_job(json!({"suspend": true}), Some("2026-12-05T09:55:00Z"));
    assert!(plan_of(&cj, &[], "2026-12-05T10:01:00Z").create.is_none());
    let late = cron_job(json!({"startingDeadlineSeconds": 30}), Some("2026-12-05T09:55:00Z"));
    assert!(plan_of(&late, &[], "2026-12-05T10:01:00Z").create.is_none(), "10:00 was due more than 30 s ago");
    assert!(plan_of(&late, &[], "2026-12-05T10:00:20Z").create.is_some());
}
