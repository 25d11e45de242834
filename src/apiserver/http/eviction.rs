//! `POST pods/{name}/eviction` (policy/v1 Eviction), as upstream's eviction storage: a pod covered by a
//! PodDisruptionBudget is deleted only while the budget allows a disruption, which the eviction spends (it
//! lowers `status.disruptionsAllowed` and records the pod in `status.disruptedPods`, in one write conditioned
//! on the budget's version, before the pod is deleted); otherwise the answer is 429 and nothing changes, and
//! `kubectl drain` retries. A pod that has finished, or is not ready while its budget is met, needs no
//! budget.

use serde_json::{json, Value};

use crate::apis::catalog::{self, Subresource};
use crate::apis::selectors::LabelSelector;
use crate::apis::time;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::collections::{self, ListOptions};
use crate::apiserver::registry::objects::Consistency;
use crate::apiserver::registry::verbs::{self, DeleteOptions, Target, Verbs, WriteOptions};

fn too_many(cause: String) -> ApiError {
    ApiError::DisruptionBudget(format!("The disruption budget {cause}"))
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Evicts `pod` as `eviction` asks; answers the Status of success.
pub async fn evict(
    verbs: &Verbs,
    objects: &crate::apiserver::registry::objects::Objects,
    pod: &Target,
    eviction: &Value,
) -> Result<Value, ApiError> {
    if let Some(kind) = eviction["kind"].as_str().filter(|k| *k != "Eviction") {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (Eviction)"
        )));
    }
    if eviction["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty() && n != pod.name()) {
        return Err(ApiError::BadRequest("name in URL does not match name in Eviction object".into()));
    }
    let mut options = DeleteOptions::default();
    if eviction["deleteOptions"].is_object() {
        options.merge_body(&eviction["deleteOptions"])?;
    }
    let current = verbs.get(pod, Consistency::Linearizable).await?.object;
    let phase = current["status"]["phase"].as_str().unwrap_or("Pending");
    let finished = matches!(phase, "Succeeded" | "Failed") || !current["metadata"]["deletionTimestamp"].is_null();
    if !finished {
        spend_budget(verbs, objects, pod, &current).await?;
    }
    verbs.delete(pod, &options).await?;
    Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}

/// Finds the pod's budget (at most one may cover it) and spends one of its disruptions, or refuses.
async fn spend_budget(
    verbs: &Verbs,
    objects: &crate::apiserver::registry::objects::Objects,
    pod: &Target,
    current: &Value,
) -> Result<(), ApiError> {
    let budgets = catalog::find("policy", "v1", "poddisruptionbudgets").expect("budgets are served");
    let target = Target { resource: budgets, namespace: pod.namespace.clone(), name: None, subresource: None };
    let listed = collections::list(objects, &target, &ListOptions::default()).await?;
    let mut covering = Vec::new();
    for raw in listed.items {
        let budget = raw.decode()?.object;
        let selector = LabelSelector::from_label_selector(Some(&budget["spec"]["selector"]));
        if selector.is_ok_and(|s| !s.is_everything() && s.matches_object(current)) {
            covering.push(budget);
        }
    }
    let budget = match covering.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                    .into(),
            ))
        }
    };
    let name = verbs::meta_str(budget, "name").unwrap_or_default().to_string();
    let status = &budget["status"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(too_many(format!("{name} is still being processed by the server.")));
    }
    let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
    let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
    // A pod that is not ready costs the budget nothing while the budget is met (upstream's IfHealthyBudget).
    if !ready(current) && healthy >= desired {
        return Ok(());
    }
    if status["disruptionsAllowed"].as_i64().unwrap_or(0) <= 0 {
        return Err(too_many(format!("{name} needs {desired} healthy pods and has {healthy} currently")));
    }
    let pod_name = pod.name().to_string();
    let now = time::now();
    let status_target = Target { name: Some(name.clone()), subresource: Some(Subresource::Status), ..target };
    verbs
        .update_with(&status_target, &WriteOptions::default(), |live| {
            // The budget as it is now (another eviction may have spent it since it was read).
            let allowed = live["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            if allowed <= 0 {
                return Err(too_many(format!("{name} needs {desired} healthy pods and has {healthy} currently")));
            }
            let mut next = live.clone();
            next["status"]["disruptionsAllowed"] = json!(allowed - 1);
            next["status"]["disruptedPods"][&pod_name] = json!(now);
            // Written on the version read here; a concurrent change makes the verb read and decide again.
            if let Some(meta) = next["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            Ok(next)
        })
        .await?;
    Ok(())
}
