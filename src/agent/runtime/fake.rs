//! The fake runtime: runs nothing. Every container it starts is running at once, except one whose command and
//! args are a plain `exit N` (alone, or under `sh -c`), which has exited with that code at once; stopping a
//! container makes it exit with 137 at once (as a SIGKILL would), whatever the grace. Pods get an address of
//! `FAKE_POD_NETWORK` derived from their uid. What it runs lives in memory only: a restarted agent starts
//! again from attempt 0.
//!
//! Its containers use what their pod declares, read at every sample so that a test can change it:
//! `fake.raftsman.io/cpu` and `fake.raftsman.io/memory` (quantities, for each container of the pod), and
//! `fake.raftsman.io/metric.NAME` (the pod's metric `NAME`, as the service proxy will report its own). The
//! CPU counter advances at the declared rate since the previous sample; nothing declared is zero.
//!
//! Cheap enough for an agent to serve thousands of fake nodes from one process (`--fake-nodes`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;

use super::{
    ContainerLogs, ContainerReport, ContainerSpec, ContainerState, Counters, ExecRequest, ExecSession, PodCounters,
    PodRef, Runtime, RuntimeError, SandboxSpec,
};
use crate::agent::kubelet::LogRequest;
use crate::apis::validation::parse_quantity;

/// The CPU each container of the pod uses (a quantity of cores).
pub const CPU_ANNOTATION: &str = "fake.raftsman.io/cpu";
/// The memory each container of the pod uses (a quantity of bytes).
pub const MEMORY_ANNOTATION: &str = "fake.raftsman.io/memory";
/// Followed by a name: the value of that metric of the pod.
pub const METRIC_ANNOTATION_PREFIX: &str = "fake.raftsman.io/metric.";

/// The exit code of a container killed by SIGKILL.
const KILLED_EXIT_CODE: i32 = 137;

/// The fake runtime's containers, by pod uid then name. A std Mutex: nothing awaits under it.
#[derive(Default)]
pub struct FakeRuntime {
    pods: Mutex<HashMap<String, HashMap<String, ContainerReport>>>,
    /// Each running container's CPU counter (nanoseconds) and when it was last advanced, by pod uid and name.
    cpu: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

/// What a pod declares each of its containers uses (cores, bytes), and its named metrics.
pub fn declared(pod: &Pod) -> (f64, u64, BTreeMap<String, f64>) {
    let annotations = pod.metadata.annotations.as_ref();
    let quantity = |key: &str| annotations.and_then(|a| a.get(key)).and_then(|v| parse_quantity(v)).unwrap_or(0.0);
    let metrics = annotations
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(METRIC_ANNOTATION_PREFIX)?.to_owned(), parse_quantity(v)?)))
        .filter(|(name, _)| !name.is_empty())
        .collect();
    (quantity(CPU_ANNOTATION).max(0.0), quantity(MEMORY_ANNOTATION).max(0.0) as u64, metrics)
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }
}

/// The exit code a container's argv asks for, when it is a plain `exit N` (or `sh -c 'exit N'`).
pub fn exit_code(argv: &[String]) -> Option<i32> {
    let script = match argv {
        [shell, flag, script, ..] if is_shell(shell) && flag == "-c" => script.clone(),
        words => words.join(" "),
    };
    let mut words = script.split_whitespace();
    if words.next()? != "exit" {
        return None;
    }
    let code = match words.next() {
        None => 0,
        Some(n) => n.parse::<i64>().ok()?.rem_euclid(256) as i32,
    };
    match words.next() {
        None => Some(code),
        Some(_) => None,
    }
}

fn is_shell(word: &str) -> bool {
    matches!(word.rsplit('/').next(), Some("sh" | "bash" | "ash" | "dash"))
}

fn exited(exit_code: i32, started_at: jiff::Timestamp, finished_at: jiff::Timestamp) -> ContainerState {
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    ContainerState::Exited { exit_code, reason: reason.to_owned(), message: None, started_at, finished_at }
}

impl Runtime for FakeRuntime {
    async fn start(
        &self,
        pod: &PodRef,
        _sandbox: &SandboxSpec,
        container: &ContainerSpec,
        attempt: u32,
    ) -> Result<(), RuntimeError> {
        let now = jiff::Timestamp::now();
        let state = match exit_code(&container.argv()) {
            Some(code) => exited(code, now, now),
            None => ContainerState::Running { started_at: now },
        };
        let mut pods = self.pods.lock().expect("fake runtime lock poisoned");
        let containers = pods.entry(pod.uid.clone()).or_default();
        if containers.get(&container.name).is_some_and(|c| c.attempt >= attempt) {
            return Ok(());
        }
        tracing::info!(pod_uid = %pod.uid, namespace = %pod.namespace, pod = %pod.name,
            container = %container.name, attempt, "fake runtime: container started");
        let report =
            ContainerReport { pod_uid: pod.uid.clone(), name: container.name.clone(), attempt, state, ids: None };
        containers.insert(container.name.clone(), report);
        Ok(())
    }

    async fn stop(&self, pod_uid: &str, container: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut pods = self.pods.lock().expect("fake runtime lock poisoned");
        if let Some(report) = pods.get_mut(pod_uid).and_then(|p| p.get_mut(container)) {
            if let ContainerState::Running { started_at } = report.state {
                report.state = exited(KILLED_EXIT_CODE, started_at, jiff::Timestamp::now());
            }
        }
        Ok(())
    }

    async fn remove(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.pods.lock().expect("fake runtime lock poisoned").remove(pod_uid);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerReport>, RuntimeError> {
        let pods = self.pods.lock().expect("fake runtime lock poisoned");
        Ok(pods.values().flat_map(|p| p.values().cloned()).collect())
    }

    async fn logs(
        &self,
        _pod_uid: &str,
        _container: &str,
        _request: &LogRequest,
    ) -> Result<Option<ContainerLogs>, RuntimeError> {
        Ok(None)
    }

    /// Writes nothing, and exits as `exit N` (or `sh -c 'exit N'`) says, else succeeds.
    async fn exec_session(
        &self,
        _pod_uid: &str,
        _container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let code = exit_code(&request.command).unwrap_or(0);
        Ok(ExecSession {
            output: futures::stream::empty().boxed(),
            stdin: None,
            exit: futures::future::ready(Ok(code)).boxed(),
            resize: None,
        })
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        if !self.pods.lock().expect("fake runtime lock poisoned").contains_key(pod_uid) {
            return None;
        }
        // FNV-1a of the uid picks a host in 10.244.0.0/16 (never .0 or .255 in the last octet).
        let hash =
            pod_uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let third = (hash >> 8) as u8;
        let fourth = 1 + (hash % 254) as u8;
        Some(IpAddr::V4(Ipv4Addr::new(10, 244, third, fourth)))
    }

    fn usage(&self, pods: &[Arc<Pod>], now: Instant) -> Vec<PodCounters> {
        let running = self.pods.lock().expect("fake runtime lock poisoned");
        let mut cpu = self.cpu.lock().expect("fake runtime lock poisoned");
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for pod in pods {
            let Some(containers) = pod.metadata.uid.as_ref().and_then(|uid| running.get(uid)) else { continue };
            let (cores, memory_bytes, metrics) = declared(pod);
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut measured = Vec::new();
            for report in containers.values().filter(|c| matches!(c.state, ContainerState::Running { .. })) {
                let key = (uid.clone(), report.name.clone());
                let (last, total) = cpu.get(&key).copied().unwrap_or((now, 0));
                let advanced =
                    total.saturating_add((now.saturating_duration_since(last).as_secs_f64() * cores * 1e9) as u64);
                cpu.insert(key.clone(), (now, advanced));
                seen.insert(key);
                measured.push((report.name.clone(), Counters { cpu_ns: advanced, memory_bytes }));
            }
            out.push(PodCounters { uid, containers: measured, metrics });
        }
        cpu.retain(|key, _| seen.contains(key));
        out
    }

    fn node_usage(&self) -> Option<Counters> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn exit_shapes() {
        assert_eq!(exit_code(&argv(&["exit", "3"])), Some(3));
        assert_eq!(exit_code(&argv(&["exit 0"])), Some(0));
        assert_eq!(exit_code(&argv(&["sh", "-c", "exit 3"])), Some(3));
        assert_eq!(exit_code(&argv(&["/bin/sh", "-c", "  exit   42 "])), Some(42));
        assert_eq!(exit_code(&argv(&["exit"])), Some(0));
        assert_eq!(exit_code(&argv(&["exit", "256"])), Some(0));
        assert_eq!(exit_code(&argv(&["exit", "-1"])), Some(255));
        assert_eq!(exit_code(&argv(&["sleep", "3600"])), None);
        assert_eq!(exit_code(&argv(&["sh", "-c", "echo hi; exit 3"])), None);
        assert_eq!(exit_code(&argv(&["exit", "x"])), None);
        assert_eq!(exit_code(&argv(&["exit", "1", "2"])), None);
        assert_eq!(exit_code(&argv(&[])), None);
    }

    #[tokio::test]
    async fn starts_run_or_exit_and_repeat_starts_are_ignored() {
        let runtime = FakeRuntime::new();
        let pod = PodRef { uid: "u1".into(), namespace: "default".into(), name: "p".into() };
        let spec = |name: &str, words: &[&str]| ContainerSpec {
            name: name.into(),
            image: "busybox".into(),
            command: argv(words),
            args: Vec::new(),
            env: vec![],
            working_dir: None,
            ..Default::default()
        };
        runtime.start(&pod, &SandboxSpec::default(), &spec("run", &["sleep", "1d"]), 0).await.unwrap();
        runtime.start(&pod, &SandboxSpec::default(), &spec("fail", &["sh", "-c", "exit 3"]), 0).await.unwrap();
        runtime.start(&pod, &SandboxSpec::default(), &spec("run", &["sleep", "1d"]), 0).await.unwrap();
        let mut reports = runtime.list().await.unwrap();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(reports.len(), 2);
        assert!(
            matches!(reports[0].state, ContainerState::Exited { exit_code: 3, ref reason, .. } if reason == "Error")
        );
        assert!(matches!(reports[1].state, ContainerState::Running { .. }));
        assert!(runtime.pod_ip("u1").is_some());
        runtime.stop("u1", "run", Duration::from_secs(30)).await.unwrap();
        let reports = runtime.list().await.unwrap();
        assert!(reports.iter().all(|r| matches!(r.state, ContainerState::Exited { .. })));
        runtime.remove("u1").await.unwrap();
        assert!(runtime.list().await.unwrap().is_empty());
        assert_eq!(runtime.pod_ip("u1"), None);
    }

    #[tokio::test]
    async fn running_containers_use_what_their_pod_declares_from_the_last_sample_on() {
        let runtime = FakeRuntime::new();
        let pod_ref = PodRef { uid: "u1".into(), namespace: "ns".into(), name: "p".into() };
        let spec = ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            command: argv(&["sleep", "1d"]),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            ..Default::default()
        };
        runtime.start(&pod_ref, &SandboxSpec::default(), &spec, 0).await.unwrap();
        let declaring = |cpu: &str| {
            let pod = serde_json::json!({"metadata": {"uid": "u1", "annotations": {CPU_ANNOTATION: cpu,
                MEMORY_ANNOTATION: "1Mi", "fake.raftsman.io/metric.in_flight": "7", "fake.raftsman.io/metric.": "1"}}});
            vec![Arc::new(serde_json::from_value::<Pod>(pod).unwrap())]
        };
        let start = Instant::now();
        let first = runtime.usage(&declaring("500m"), start);
        assert_eq!(first[0].containers, [("c".to_string(), Counters { cpu_ns: 0, memory_bytes: 1 << 20 })]);
        assert_eq!(first[0].metrics, BTreeMap::from([("in_flight".to_string(), 7.0)]));
        // Two seconds at the newly declared 2 cores: 4 s of CPU time.
        let later = runtime.usage(&declaring("2"), start + Duration::from_secs(2));
        assert_eq!(later[0].containers[0].1.cpu_ns, 4_000_000_000);
        // A pod the runtime does not run, or one without declarations, uses nothing.
        let bare = Arc::new(serde_json::from_value::<Pod>(serde_json::json!({"metadata": {"uid": "u1"}})).unwrap());
        let idle = runtime.usage(&[bare], start + Duration::from_secs(3));
        assert_eq!(idle[0].containers[0].1, Counters { cpu_ns: 4_000_000_000, memory_bytes: 0 });
        runtime.stop("u1", "c", Duration::ZERO).await.unwrap();
        assert!(runtime.usage(&declaring("1"), start + Duration::from_secs(4))[0].containers.is_empty());
    }
}
