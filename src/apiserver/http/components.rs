//! `componentstatuses`: upstream's deprecated ComponentStatus, computed on each read and never stored.
//!
//! One item per replica, `etcd-<replica name>` in member order: `Healthy` when it answers (its `/livez`; this
//! replica is answering already). Whether the store has a leader shows in `scheduler` and
//! `controller-manager`, which run on the Raft leader: `Healthy` while a leader is known. (A replica's own
//! `/readyz` is not asked: on the leader it fails for a follower that does not answer, which would show the
//! leader unhealthy for another's fault.) The other replicas are asked at once, each within
//! `COMPONENT_PROBE_TIMEOUT_MS`, at the API address they published.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};

use super::ReplicaClient;
use crate::limits;
use crate::store::{Member, Store};

/// Upstream's warning on every read of the kind.
pub const DEPRECATION_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The HTTP client that asks the other replicas whether they answer.
#[derive(Clone)]
pub struct Prober {
    client: ReplicaClient,
}

/// A component's `Healthy` condition: its message when healthy, the reason when not.
type Health = Result<String, String>;

fn component_status(name: &str, health: Health) -> Value {
    let condition = match health {
        Ok(message) => json!({"type": "Healthy", "status": "True", "message": message}),
        Err(error) => json!({"type": "Healthy", "status": "False", "error": error}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name, "creationTimestamp": null},
        "conditions": [condition]})
}

/// Every component's status: the replicas, then the leader's components.
pub async fn statuses(store: &Store, prober: &Prober) -> Vec<Value> {
    let me = store.member_id();
    let members = store.members();
    let probes = members.iter().map(|m| async move {
        let health = if m.id == me { Ok("ok".into()) } else { prober.probe(m).await };
        component_status(&format!("etcd-{}", m.name), health)
    });
    let mut items = futures::future::join_all(probes).await;
    let leader: Health = match store.status().leader {
        Some(_) => Ok("ok".into()),
        None => Err("no raft leader is known, and only the leader runs it".into()),
    };
    for name in ["scheduler", "controller-manager"] {
        items.push(component_status(name, leader.clone()));
    }
    items
}

impl Prober {
    pub fn new(tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Prober {
        Prober { client: ReplicaClient::new(limits::COMPONENT_PROBE_TIMEOUT_MS, 1, tls) }
    }

    /// Asks another replica's API whether it is live.
    async fn probe(&self, member: &Member) -> Health {
        let Some(address) = member.published.as_ref().map(|p| p.api_addr.as_str()).filter(|a| !a.is_empty()) else {
            return Err(format!("replica {} has not published its api address yet", member.name));
        };
        let uri = (self.client.uri(address, "/livez"))
            .map_err(|e| format!("replica {} published an unusable api address {address:?}: {e}", member.name))?;
        let silent = |why: String| format!("replica {} at {address} does not answer: {why}", member.name);
        let waited = Duration::from_millis(limits::COMPONENT_PROBE_TIMEOUT_MS);
        let answer = async {
            let request = http::Request::get(uri).body(http_body_util::Empty::new()).map_err(|e| e.to_string())?;
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limits::COMPONENT_PROBE_BODY_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(waited, answer)
            .await
            .map_err(|_| silent(format!("no answer within {waited:?}")))?
            .map_err(silent)?;
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if status.is_success() {
            return Ok(text);
        }
        // A failed check answers with a Status whose message names what failed.
        let reason = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|s| s["message"].as_str().map(String::from))
            .unwrap_or(text);
        Err(format!("replica {} at {address} is not live ({status}): {reason}", member.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_one_healthy_condition() {
        let up = component_status("etcd-n1", Ok("ok".into()));
        assert_eq!(up["metadata"]["name"], "etcd-n1");
        assert_eq!(up["conditions"], json!([{"type": "Healthy", "status": "True", "message": "ok"}]));
        let down = component_status("scheduler", Err("no leader".into()));
        assert_eq!(down["conditions"], json!([{"type": "Healthy", "status": "False", "error": "no leader"}]));
    }
}
