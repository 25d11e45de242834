use super::*;
use serde_json::{json, Value};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn job(spec: Value) -> Job {
    let mut j = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": {"backoffLimit": 6, "template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "i"}]}}}
    });
    for (k, v) in spec.as_object().unwrap() {
        j["spec"][k] = v.clone();
    }
    serde_json::from_value(j).unwrap()
}

fn pod(name: &str, phase: &str, index: Option<i32>, finished: i64) -> Arc<Pod> {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": at(0).to_string()},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                   "restartCount": 0, "state": {"terminated": {"exitCode": 1, "finishedAt": at(finished).to_string()}}}]}
    });
    if let Some(i) = index {
        p["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
    }
    Arc::new(serde_json::from_value(p).unwrap())
}

fn plan_of(job: &Job, pods: &[Arc<Pod>], now: i64) -> Plan {
    plan(&Input { job, pods, expectations_satisfied: true, now: at(now) })
}

fn with_status(mut job: Job, plan: &Plan) -> Job {
    job.status = plan.status.clone().or(job.status);
    job
}

#[test]
fn pods_run_at_most_parallelism_until_completions_have_succeeded() {
    let j = job(json!({"completions": 3, "parallelism": 2}));
    assert_eq!(plan_of(&j, &[], 0).create.len(), 2);
    let running = pod("a", "Running", None, 0);
    let done = pod("b", "Succeeded", None, 0);
    assert_eq!(plan_of(&j, &[running.clone(), done.clone()], 1).create.len(), 1);
    let two_done = [done.clone(), pod("c", "Succeeded", None, 0), running];
    assert!(plan_of(&j, &two_done, 1).create.is_empty(), "one left to succeed and it runs");
    let p = plan_of(&j, &[done, pod("c", "Succeeded", None, 0), pod("d", "Succeeded", None, 0)], 2);
    let status = p.status.unwrap();
    assert!(condition_true(&status, "Complete") && condition_true(&status, "SuccessCriteriaMet"));
    assert_eq!((status.succeeded, status.active), (Some(3), Some(0)));
    assert!(status.completion_time.is_some());
    assert_eq!(p.events[0].1, "Completed");
}

#[test]
fn a_failed_pod_is_replaced_after_the_back_off_until_the_limit() {
    let j = job(json!({"completions": 1, "parallelism": 1, "backoffLimit": 2}));
    let first = pod("a", "Failed", None, 100);
    let p = plan_of(&j, std::slice::from_ref(&first), 105);
    assert!(p.create.is_empty());
    assert_eq!(p.requeue, Some(Duration::from_secs(5)));
    assert_eq!(plan_of(&j, std::slice::from_ref(&first), 110).create.len(), 1);
    let second = pod("b", "Failed", None, 120);
    let p = plan_of(&j, &[first.clone(), second.clone()], 135);
    assert!(p.create.is_empty(), "20 s after the second failure");
    assert_eq!(plan_of(&j, &[first.clone(), second.clone()], 140).create.len(), 1);
    let p = plan_of(&j, &[first, second, pod("c", "Failed", None, 150), pod("d", "Running", None, 0)], 151);
    let status = p.status.unwrap();
    assert!(condition_true(&status, "Failed"));
    assert_eq!(status.conditions.unwrap().last().unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(p.delete.len(), 1, "the running pod is stopped");
}

#[test]
fn an_indexed_job_runs_each_index_once() {
    let j = job(json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
    let p = plan_of(&j, &[], 0);
    assert_eq!(p.create, [Some(0), Some(1)]);
    let pods = [pod("pi-0-x", "Succeeded", Some(0), 0), pod("pi-2-x", "Running", Some(2), 0)];
    let p = plan_of(&j, &pods, 1);
    assert_eq!(p.create, [Some(1)]);
    assert_eq!(p.status.unwrap().completed_indexes.as_deref(), Some("0"));
    let made = pod_for(&j, Some(3));
    assert_eq!(made.metadata.generate_name.as_deref(), Some("pi-3-"));
    assert_eq!(made.annotations()[COMPLETION_INDEX], "3");
    let spec = made.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
    let env = spec.containers[0].env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_deref() == Some("3")));
}

#[test]
fn completed_indexes_are_written_as_ranges() {
    let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
    assert_eq!(format_indexes(&set), "0-2,4,6-7");
    assert_eq!(parse_indexes("0-2,4,6-7"), set);
    assert_eq!(parse_indexes(""), BTreeSet::new());
}

#[test]
fn a_job_without_completions_is_done_when_one_succeeded_and_the_others_finished() {
    let j = job(json!({"parallelism": 2}));
    let mut j = j;
    j.spec.as_mut().unwrap().completions = None;
    let p = plan_of(&j, &[pod("a", "Succeeded", None, 0), pod("b", "Running", None, 0)], 1);
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert!(!condition_true(p.status.as_ref().unwrap(), "Complete"));
    let p = plan_of(&j, &[pod("a", "Succeeded", None, 0), pod("b", "Succeeded", None, 0)], 2);
    assert!(condition_true(p.status.as_ref().unwrap(), "Complete"));
}

#[test]
fn a_suspended_job_stops_its_pods_and_resumes_later() {
    let j = job(json!({"completions": 2, "parallelism": 2, "suspend": true}));
    let p = plan_of(&j, &[pod("a", "Running", None, 0)], 1);
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    assert!(condition_true(p.status.as_ref().unwrap(), "Suspended"));
    let mut resumed = with_status(j, &p);
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    let p = plan_of(&resumed, &[], 2);
    assert_eq!(p.create.len(), 2);
    assert!(!condition_true(p.status.as_ref().unwrap(), "Suspended"));
}

#[test]
fn a_job_past_its_deadline_fails_and_a_finished_one_goes_after_its_ttl() {
    let j = job(json!({"completions": 1, "activeDeadlineSeconds": 30, "ttlSecondsAfterFinished": 60}));
    let started = with_status(j, &plan_of(&job(json!({"completions": 1})), &[], 0));
    let p = plan_of(&started, &[pod("a", "Running", None, 0)], 10);
    assert_eq!(p.requeue, Some(Duration::from_secs(20)));
    let p = plan_of(&started, &[pod("a", "Running", None, 0)], 31);
    assert_eq!(p.delete.len(), 1);
    let failed = with_status(started, &p);
    assert_eq!(finished_at(failed.status.as_ref().unwrap()), Some(at(31)));
    assert!(!plan_of(&failed, &[], 60).delete_job);
    assert!(plan_of(&failed, &[], 91).delete_job);
}
