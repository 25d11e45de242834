//! Container probes, as upstream's kubelet runs them: startup, liveness and readiness, each an `httpGet`,
//! `tcpSocket` or `exec` check of a running container attempt, with `initialDelaySeconds`, `periodSeconds`,
//! `timeoutSeconds`, `successThreshold` and `failureThreshold`.
//!
//! The decision is pure (`Verdict::record`): a probe's result changes only after `successThreshold`
//! consecutive successes or `failureThreshold` consecutive failures. Around it, `Probes::sync` keeps one worker
//! task per probe of every running attempt (and stops those of attempts that ended), and the pod sync reads the
//! outcome (`Probes::health`): readiness makes the container ready, a startup probe that has not yet succeeded
//! keeps the container not started (and holds back its liveness and readiness probes), and a failed liveness or
//! startup probe has the container stopped, to be restarted as its pod's restartPolicy says.
//!
//! Invariants:
//! - Results belong to one attempt: a restarted container starts over (not ready, not started) and its probes
//!   wait their initial delay again.
//! - A probe's check never outlives its `timeoutSeconds`; an exec probe's command is the runtime's to time out.
//! - At most one worker per probe; a worker ends with its attempt or with the agent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::runtime::{ContainerReport, ContainerState, Runtime};
use crate::limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Http { scheme: String, host: Option<String>, port: u16, path: String, headers: Vec<(String, String)> },
    Tcp { host: Option<String>, port: u16 },
    Exec { command: Vec<String> },
}

/// One probe of a container, its defaults filled in as upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: Kind,
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A container port given by number or by the name of one of the container's ports.
pub fn port(value: &IntOrString, container: &Container) -> Option<u16> {
    match value {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

/// A container's probe of `kind`, if it has one the agent can run (a named port it does not have, or a gRPC
/// probe, is left out).
pub fn spec(container: &Container, kind: Kind) -> Option<ProbeSpec> {
    let probe: &Probe = match kind {
        Kind::Startup => container.startup_probe.as_ref(),
        Kind::Liveness => container.liveness_probe.as_ref(),
        Kind::Readiness => container.readiness_probe.as_ref(),
    }?;
    let check = if let Some(http) = &probe.http_get {
        Check::Http {
            scheme: http.scheme.clone().unwrap_or_else(|| "HTTP".to_owned()),
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: port(&http.port, container)?,
            path: http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".to_owned()),
            headers: http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        Check::Tcp { host: tcp.host.clone().filter(|h| !h.is_empty()), port: port(&tcp.port, container)? }
    } else {
        Check::Exec { command: probe.exec.as_ref()?.command.clone().unwrap_or_default() }
    };
    Some(ProbeSpec {
        kind,
        check,
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    })
}

/// A probe's running tally and its result so far (`None` until the first decision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub result: Option<bool>,
    successes: u32,
    failures: u32,
}

impl Verdict {
    /// Counts one check; the result changes once the threshold of its outcome is reached.
    pub fn record(&mut self, ok: bool, spec: &ProbeSpec) {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= spec.success_threshold {
                self.result = Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= spec.failure_threshold {
                self.result = Some(false);
            }
        }
    }
}

/// What the probes say of a running attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// The startup probe succeeded, or there is none.
    pub started: bool,
    /// The readiness probe succeeded (and the container started), or there is none.
    pub ready: bool,
    /// The liveness or startup probe failed: the attempt is to be stopped.
    pub failed: Option<Kind>,
}

impl Health {
    pub const UNPROBED: Health = Health { started: true, ready: true, failed: None };
}

/// One running attempt of a container: pod uid, container name, attempt.
pub type AttemptKey = (String, String, u32);

struct Probed {
    specs: Vec<ProbeSpec>,
    verdicts: HashMap<Kind, Verdict>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Probed {
    fn health(&self) -> Health {
        let has = |kind| self.specs.iter().any(|s| s.kind == kind);
        let result = |kind| self.verdicts.get(&kind).and_then(|v| v.result);
        let started = !has(Kind::Startup) || result(Kind::Startup) == Some(true);
        let ready = started && (!has(Kind::Readiness) || result(Kind::Readiness) == Some(true));
        let failed = [Kind::Startup, Kind::Liveness].into_iter().find(|k| result(*k) == Some(false));
        Health { started, ready, failed }
    }
}

impl Drop for Probed {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

/// The probes of the agent's running attempts. A std Mutex: nothing awaits under it.
#[derive(Default)]
pub struct Probes {
    attempts: Mutex<HashMap<AttemptKey, Probed>>,
}

impl Probes {
    /// What the probes say of an attempt (one without probes is healthy).
    pub fn health(&self, key: &AttemptKey) -> Health {
        self.attempts.lock().expect("no panics under this lock").get(key).map_or(Health::UNPROBED, Probed::health)
    }

    /// Starts the workers of the running attempts of `pods` that have none, and stops those of attempts no
    /// longer running.
    pub fn sync<R: Runtime>(self: &Arc<Self>, runtime: &Arc<R>, pods: &[Arc<Pod>], reports: &[ContainerReport]) {
        // Each container's report (the runtime lists its latest attempt) by pod uid and name: one lookup per
        // container, not a scan of every report, which cost a fake agent of 10,000 pods a third of its CPU.
        let mut latest: HashMap<(&str, &str), &ContainerReport> = HashMap::with_capacity(reports.len());
        for report in reports {
            latest.entry((report.pod_uid.as_str(), report.name.as_str())).or_insert(report);
        }
        let mut running: HashMap<AttemptKey, (&Pod, &Container)> = HashMap::new();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            for container in pod.spec.iter().flat_map(|s| &s.containers) {
                let report = latest.get(&(uid.as_str(), container.name.as_str()));
                if let Some(r) = report.filter(|r| matches!(r.state, ContainerState::Running { .. })) {
                    running.insert((uid.clone(), container.name.clone(), r.attempt), (pod, container));
                }
            }
        }
        let mut attempts = self.attempts.lock().expect("no panics under this lock");
        attempts.retain(|key, _| running.contains_key(key));
        for (key, (_, container)) in running {
            if attempts.contains_key(&key) {
                continue;
            }
            let specs: Vec<ProbeSpec> = [Kind::Startup, Kind::Liveness, Kind::Readiness]
                .into_iter()
                .filter_map(|k| spec(container, k))
                .collect();
            let workers = specs
                .iter()
                .map(|spec| tokio::spawn(work(Arc::downgrade(self), runtime.clone(), key.clone(), spec.clone())))
                .collect();
            attempts.insert(key, Probed { specs, verdicts: HashMap::new(), workers });
        }
    }

    fn started(&self, key: &AttemptKey) -> bool {
        self.health(key).started
    }

    /// Records a check's outcome; false once the attempt is no longer probed.
    fn record(&self, key: &AttemptKey, spec: &ProbeSpec, ok: bool) -> bool {
        let mut attempts = self.attempts.lock().expect("no panics under this lock");
        let Some(probed) = attempts.get_mut(key) else { return false };
        probed.verdicts.entry(spec.kind).or_default().record(ok, spec);
        true
    }
}

/// One probe's worker: waits the initial delay, then checks every period (liveness and readiness only once
/// the container has started) until the attempt is no longer probed.
async fn work<R: Runtime>(probes: std::sync::Weak<Probes>, runtime: Arc<R>, key: AttemptKey, spec: ProbeSpec) {
    tokio::time::sleep(spec.initial_delay).await;
    let client = crate::apiserver::http::plain_client(spec.timeout.as_millis() as u64, 0);
    loop {
        let Some(current) = probes.upgrade() else { return };
        let waiting = spec.kind != Kind::Startup && !current.started(&key);
        drop(current);
        if !waiting {
            let ok = check(runtime.as_ref(), &client, &key, &spec).await;
            tracing::debug!(pod_uid = %key.0, container = %key.1, kind = ?spec.kind, ok, "agent: probe checked");
            let Some(current) = probes.upgrade() else { return };
            if !current.record(&key, &spec, ok) {
                return;
            }
        }
        tokio::time::sleep(spec.period).await;
    }
}

/// Runs one probe's check.
async fn check<R: Runtime>(
    runtime: &R,
    client: &crate::apiserver::http::PlainClient,
    (uid, container, _): &AttemptKey,
    spec: &ProbeSpec,
) -> bool {
    run_check(runtime, client, uid, container, &spec.check, spec.timeout).await
}

/// Runs a check against a container: an HTTP status from 200 to 399, a TCP connection, or an exec exit code
/// 0, within `timeout` (probes and lifecycle hooks).
pub async fn run_check<R: Runtime>(
    runtime: &R,
    client: &crate::apiserver::http::PlainClient,
    uid: &str,
    container: &str,
    check: &Check,
    timeout: Duration,
) -> bool {
    let host = |given: &Option<String>| -> Option<String> {
        match given {
            Some(host) => Some(host.clone()),
            None => runtime.pod_ip(uid).map(|ip: IpAddr| ip.to_string()),
        }
    };
    let checked = async {
        match check {
            Check::Http { scheme, host: given, port, path, headers } => {
                if !scheme.eq_ignore_ascii_case("HTTP") {
                    // HTTPS probes need TLS, which the agent does not speak yet: a failure, said once per check.
                    tracing::warn!(pod_uid = %uid, %container, "agent: HTTPS probes are not supported");
                    return false;
                }
                let Some(host) = host(given) else { return false };
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                let mut request = http::Request::get(format!("http://{host}:{port}{path}"));
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("user-agent")) {
                    request = request.header(http::header::USER_AGENT, limits::PROBE_USER_AGENT);
                }
                let Ok(request) = request.body(Empty::<Bytes>::new()) else { return false };
                match client.request(request).await {
                    Ok(response) => (200..400).contains(&response.status().as_u16()),
                    Err(_) => false,
                }
            }
            Check::Tcp { host: given, port } => {
                let Some(host) = host(given) else { return false };
                tokio::net::TcpStream::connect((host.as_str(), *port)).await.is_ok()
            }
            Check::Exec { command } => {
                matches!(runtime.exec(uid, container, command, timeout).await, Ok(0))
            }
        }
    };
    tokio::time::timeout(timeout, checked).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            kind: Kind::Readiness,
            check: Check::Tcp { host: None, port: 80 },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn a_result_changes_only_after_its_threshold_of_consecutive_outcomes() {
        let spec = probe(2, 3);
        let mut v = Verdict::default();
        v.record(true, &spec);
        assert_eq!(v.result, None);
        v.record(false, &spec);
        v.record(true, &spec);
        assert_eq!(v.result, None, "the successes were not consecutive");
        v.record(true, &spec);
        assert_eq!(v.result, Some(true));
        v.record(false, &spec);
        v.record(false, &spec);
        assert_eq!(v.result, Some(true));
        v.record(false, &spec);
        assert_eq!(v.result, Some(false));
        v.record(true, &spec);
        assert_eq!(v.result, Some(false));
        v.record(true, &spec);
        assert_eq!(v.result, Some(true));
    }

    #[test]
    fn specs_take_upstreams_defaults_and_resolve_named_ports() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "ports": [{"name": "web", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "web"}},
            "livenessProbe": {"tcpSocket": {"port": 81}, "periodSeconds": 3, "failureThreshold": 1},
            "startupProbe": {"httpGet": {"port": "nothing"}},
        }))
        .unwrap();
        let readiness = spec(&container, Kind::Readiness).unwrap();
        assert_eq!(
            readiness.check,
            Check::Http { scheme: "HTTP".into(), host: None, port: 8080, path: "/".into(), headers: vec![] }
        );
        assert_eq!(
            (readiness.period, readiness.timeout, readiness.success_threshold, readiness.failure_threshold),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let liveness = spec(&container, Kind::Liveness).unwrap();
        assert_eq!((liveness.period, liveness.failure_threshold), (Duration::from_secs(3), 1));
        assert_eq!(spec(&container, Kind::Startup), None, "a port the container does not name");
    }

    #[test]
    fn health_waits_for_startup_and_readiness_and_names_a_failed_probe() {
        let mut probed = Probed {
            specs: vec![
                ProbeSpec { kind: Kind::Startup, ..probe(1, 1) },
                ProbeSpec { kind: Kind::Liveness, ..probe(1, 1) },
                probe(1, 1),
            ],
            verdicts: HashMap::new(),
            workers: Vec::new(),
        };
        assert_eq!(probed.health(), Health { started: false, ready: false, failed: None });
        probed.verdicts.insert(Kind::Startup, Verdict { result: Some(true), ..Verdict::default() });
        assert_eq!(probed.health(), Health { started: true, ready: false, failed: None });
        probed.verdicts.insert(Kind::Readiness, Verdict { result: Some(true), ..Verdict::default() });
        assert_eq!(probed.health(), Health::UNPROBED);
        probed.verdicts.insert(Kind::Liveness, Verdict { result: Some(false), ..Verdict::default() });
        assert_eq!(probed.health().failed, Some(Kind::Liveness));
    }
}
