//! The fake runtime: runs nothing. Every container it starts is running at once, except one whose command and
//! args are a plain `exit N` (alone, or under `sh -c`), which has exited with that code at once; stopping a
//! container makes it exit with 137 at once (as a SIGKILL would), whatever the grace. Pods get an address of
//! `FAKE_POD_NETWORK` derived from their uid. What it runs lives in memory only: a restarted agent starts
//! again from attempt 0.
//!
//! Cheap enough for an agent to serve thousands of fake nodes from one process (`--fake-nodes`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::{ContainerReport, ContainerSpec, ContainerState, PodRef, Runtime, RuntimeError};

/// The exit code of a container killed by SIGKILL.
const KILLED_EXIT_CODE: i32 = 137;

/// The fake runtime's containers, by pod uid then name. A std Mutex: nothing awaits under it.
#[derive(Default)]
pub struct FakeRuntime {
    pods: Mutex<HashMap<String, HashMap<String, ContainerReport>>>,
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
    ContainerState::Exited { exit_code, reason: reason.to_owned(), started_at, finished_at }
}

impl Runtime for FakeRuntime {
    async fn start(&self, pod: &PodRef, container: &ContainerSpec, attempt: u32) -> Result<(), RuntimeError> {
        let now = jiff::Timestamp::now();
        let state = match exit_code(&container.argv) {
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
        let report = ContainerReport { pod_uid: pod.uid.clone(), name: container.name.clone(), attempt, state };
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

    fn log_path(&self, _pod_uid: &str, _container: &str, _previous: bool) -> Option<PathBuf> {
        None
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
            argv: argv(words),
            env: vec![],
            working_dir: None,
        };
        runtime.start(&pod, &spec("run", &["sleep", "1d"]), 0).await.unwrap();
        runtime.start(&pod, &spec("fail", &["sh", "-c", "exit 3"]), 0).await.unwrap();
        runtime.start(&pod, &spec("run", &["sleep", "1d"]), 0).await.unwrap();
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
}
