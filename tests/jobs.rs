//! Jobs and CronJobs on a real three-replica cluster through kubectl: a Job whose first attempt fails (a real
//! process on the process runtime) is retried after its back-off and completes, never running more than its
//! parallelism at once; an Indexed Job runs each index once; a CronJob fires at the minute, its Job named after
//! that minute, and keeps its history limit.

mod harness;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::{follower, Kubectl};
use harness::pods::{lock, wait_nodes, watch_pods};
use harness::{eventually, kube_client, TestCluster};
use serde_json::Value;

fn pods_of(k: &Kubectl, selector: &str) -> Vec<Value> {
    k.json(&["get", "pods", "-l", selector])["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_first_attempt_fails_completes_within_its_parallelism() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let servers: Vec<SocketAddr> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let _proc = Agent::start(&cluster, &servers, "proc-1", &["--runtime", "process"]);
    wait_nodes(&k, 1).await;
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("first-attempt");
    // The first attempt to make the directory fails the pod; every later one finds it and succeeds.
    let script = format!("if mkdir {} 2>/dev/null; then exit 1; fi; exit 0", marker.display());
    let manifest = format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: work}}
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: host
        command: [sh, -c, {script:?}]
"
    );
    let (pods, watch) = watch_pods(vec![kube_client(&cluster, follower(leader)).await], "job-name=work");
    k.ok(&["apply", "-f", &k.manifest("job.yaml", &manifest)]);
    k.ok(&["wait", "--for=condition=complete", "job/work", "--timeout=90s"]);
    let job = k.json(&["get", "job", "work"]);
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert_eq!(job["status"]["failed"], 1, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    let phases: Vec<String> =
        pods_of(&k, "job-name=work").iter().map(|p| p["status"]["phase"].as_str().unwrap().to_string()).collect();
    assert_eq!(phases.iter().filter(|p| *p == "Succeeded").count(), 3, "{phases:?}");
    assert_eq!(phases.iter().filter(|p| *p == "Failed").count(), 1, "{phases:?}");
    let (most, _) = lock(&pods).bounds(0);
    assert!(most <= 2, "{most} pods of the Job ran at once: more than its parallelism");
    watch.abort();
    let events = k.ok(&["get", "events", "--field-selector", "involvedObject.name=work"]);
    assert!(events.contains("SuccessfulCreate") && events.contains("Completed"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_runs_each_index_once_and_a_cron_job_fires_at_the_minute() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let k = Kubectl::for_replica(&cluster, follower(leader)).await;
    let _a = Agent::fake(&cluster, "work-a", &[]);
    wait_nodes(&k, 1).await;
    let indexed = "apiVersion: batch/v1
kind: Job
metadata: {name: shards}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: i, command: [sh, -c, 'exit 0']}]
";
    k.ok(&["apply", "-f", &k.manifest("indexed.yaml", indexed)]);
    k.ok(&["wait", "--for=condition=complete", "job/shards", "--timeout=60s"]);
    let job = k.json(&["get", "job", "shards"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job}");
    let hostnames: BTreeSet<String> =
        pods_of(&k, "job-name=shards").iter().map(|p| p["spec"]["hostname"].as_str().unwrap().to_string()).collect();
    assert_eq!(hostnames, BTreeSet::from(["shards-0".into(), "shards-1".into(), "shards-2".into()]));

    let cron = "apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: '* * * * *'
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: i, command: [sh, -c, 'exit 0']}]
";
    k.ok(&["apply", "-f", &k.manifest("cron.yaml", cron)]);
    let uid = k.json(&["get", "cronjob", "tick"])["metadata"]["uid"].as_str().unwrap().to_string();
    // An earlier run, finished: the history limit (1) removes it once the next run has succeeded.
    let earlier = format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: tick-earlier
  ownerReferences: [{{apiVersion: batch/v1, kind: CronJob, name: tick, uid: {uid}, controller: true}}]
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: c, image: i, command: [sh, -c, 'exit 0']}}]
"
    );
    k.ok(&["apply", "-f", &k.manifest("earlier.yaml", &earlier)]);
    k.ok(&["wait", "--for=condition=complete", "job/tick-earlier", "--timeout=60s"]);
    let run = eventually(Duration::from_secs(75), "the CronJob's first run", || async {
        let jobs = k.json(&["get", "jobs"]);
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| {
                let name = j["metadata"]["name"].as_str().unwrap();
                name.starts_with("tick-") && name != "tick-earlier"
            })
            .cloned()
    })
    .await;
    let scheduled = run["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap();
    let scheduled: jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(scheduled.as_second() % 60, 0, "runs at the minute");
    assert_eq!(run["metadata"]["name"], format!("tick-{}", scheduled.as_second() / 60));
    eventually(Duration::from_secs(30), "the run done and the earlier one gone", || async {
        let cj = k.json(&["get", "cronjob", "tick"]);
        let names: Vec<String> = k.json(&["get", "jobs"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with("tick-"))
            .collect();
        (cj["status"]["lastSuccessfulTime"].is_string() && !names.contains(&"tick-earlier".to_string())).then_some(())
    })
    .await;
    let cj = k.json(&["get", "cronjob", "tick"]);
    assert_eq!(cj["status"]["lastScheduleTime"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), scheduled);
}
