//! Lifecycle hooks: a container's `preStop` handler runs before it is sent SIGTERM, as upstream's kubelet runs
//! it: an `exec` command in the container, an `httpGet` to the pod, or a `sleep`. The hook's time counts against
//! the termination grace; the container still gets at least `AGENT_PRE_STOP_GRACE_AFTER_SECS` after the hook
//! before it is killed. A hook that fails is logged and the stop goes on.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::probes::{self, Check};
use super::runtime::Runtime;
use crate::limits;

/// What a hook does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Check(Check),
    Sleep(Duration),
}

/// The container's `preStop` hook, if it has one the agent can run.
pub fn pre_stop(container: &Container) -> Option<Hook> {
    handler(container, container.lifecycle.as_ref()?.pre_stop.as_ref()?)
}

fn handler(container: &Container, handler: &LifecycleHandler) -> Option<Hook> {
    if let Some(sleep) = &handler.sleep {
        return Some(Hook::Sleep(Duration::from_secs(sleep.seconds.max(0) as u64)));
    }
    if let Some(exec) = &handler.exec {
        return Some(Hook::Check(Check::Exec { command: exec.command.clone().unwrap_or_default() }));
    }
    let http = handler.http_get.as_ref()?;
    Some(Hook::Check(Check::Http {
        scheme: http.scheme.clone().unwrap_or_else(|| "HTTP".to_owned()),
        host: http.host.clone().filter(|h| !h.is_empty()),
        port: probes::port(&http.port, container)?,
        path: http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".to_owned()),
        headers: http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
    }))
}

/// Runs `hook` for a container being stopped with `grace`; returns the grace left for the stop itself.
pub async fn run_pre_stop<R: Runtime>(
    runtime: &R,
    pod_uid: &str,
    container: &str,
    hook: &Hook,
    grace: Duration,
) -> Duration {
    let started = Instant::now();
    let ok = match hook {
        Hook::Sleep(pause) => {
            tokio::time::sleep((*pause).min(grace)).await;
            true
        }
        Hook::Check(check) => {
            let client = crate::apiserver::http::plain_client(limits::KUBELET_CONNECT_TIMEOUT_MS, 0);
            probes::run_check(runtime, &client, pod_uid, container, check, grace).await
        }
    };
    if !ok {
        tracing::warn!(%pod_uid, %container, "agent: the container's preStop hook failed");
    }
    let after = Duration::from_secs(limits::AGENT_PRE_STOP_GRACE_AFTER_SECS);
    grace.saturating_sub(started.elapsed()).max(after.min(grace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_stop_hooks_are_read_from_the_lifecycle() {
        let container: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}],
            "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": "http"}}}}))
        .unwrap();
        let expected =
            Check::Http { scheme: "HTTP".into(), host: None, port: 8080, path: "/drain".into(), headers: vec![] };
        assert_eq!(pre_stop(&container), Some(Hook::Check(expected)));
        let container: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}}))
        .unwrap();
        assert_eq!(
            pre_stop(&container),
            Some(Hook::Check(Check::Exec { command: vec!["sh".into(), "-c".into(), "sleep 1".into()] }))
        );
        let container: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}),
        )
        .unwrap();
        assert_eq!(pre_stop(&container), Some(Hook::Sleep(Duration::from_secs(3))));
        let container: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_eq!(pre_stop(&container), None);
    }
}
