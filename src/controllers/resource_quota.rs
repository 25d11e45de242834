//! The resource quota controller: every ResourceQuota's status holds its hard limits and the sum of what the
//! objects of its namespace use. Admission adds each new object's usage to `used` in the object's own
//! transaction; this controller recomputes `used` from the objects themselves, which catches up deletions,
//! finished pods and changed limits.
//!
//! `plan` is pure: the quota and the objects of its namespace in, the status to write (if it differs) out.
//! The work queue is keyed by namespace: a quota's change queues its namespace at once, a change of another
//! object in a namespace with quotas queues it after `QUOTA_RECALCULATION_DELAY_MS`, so that a burst of
//! changes costs one recalculation.

use std::collections::BTreeSet;

use kube::api::{DynamicObject, ListParams, PostParams};
use kube::Client;
use serde_json::Value;

use super::api_for;
use crate::apis::admission::{self, Usage};
use crate::apis::catalog::{self, Resource};

/// The status `quota` should have given the objects of its namespace (each with its resource), if it differs
/// from the one it has.
pub fn plan(quota: &Value, objects: &[(&Resource, Value)]) -> Option<Value> {
    let counted: Vec<(Usage, String, &Value)> = objects.iter().map(|(r, o)| (r.usage, r.count_name(), o)).collect();
    let status = admission::quota_status(quota, counted.iter().map(|(u, c, o)| (*u, c.as_str(), *o)));
    let current = quota.get("status").cloned().unwrap_or(Value::Null);
    let same = |field: &str| current.get(field).unwrap_or(&Value::Null) == &status[field];
    (!same("hard") || !same("used")).then_some(status)
}

/// The resources whose objects `quota` may count: those with a usage of their own, and those it counts by
/// `count/<resource>`.
fn counted_resources(quota: &Value) -> Vec<&'static Resource> {
    let hard: BTreeSet<&str> =
        quota["spec"]["hard"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    catalog::stored()
        .filter(|r| r.namespaced && (r.usage != Usage::Counted || hard.contains(r.count_name().as_str())))
        .collect()
}

/// Recomputes the status of every ResourceQuota of `namespace`; a write that races another fails its
/// precondition, and the key comes back.
pub async fn reconcile(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let quotas = catalog::find("", "v1", "resourcequotas").expect("resource quotas are served");
    for quota in api_for(client, quotas, Some(namespace)).list(&ListParams::default()).await?.items {
        let Some(name) = quota.metadata.name.clone() else { continue };
        let quota_json = serde_json::to_value(&quota).map_err(kube::Error::SerdeError)?;
        let mut objects = Vec::new();
        for resource in counted_resources(&quota_json) {
            let list = api_for(client, resource, Some(namespace)).list(&ListParams::default()).await?;
            for item in list.items {
                objects.push((resource, serde_json::to_value(&item).map_err(kube::Error::SerdeError)?));
            }
        }
        if let Some(status) = plan(&quota_json, &objects) {
            let mut updated = quota_json;
            updated["status"] = status;
            let updated: DynamicObject = serde_json::from_value(updated).map_err(kube::Error::SerdeError)?;
            api_for(client, quotas, Some(namespace)).replace_status(&name, &PostParams::default(), &updated).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(cpu: &str, phase: &str) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}})
    }

    #[test]
    fn used_sums_what_the_live_objects_use_and_forgets_finished_pods() {
        let pods = catalog::find("", "v1", "pods").unwrap();
        let maps = catalog::find("", "v1", "configmaps").unwrap();
        let quota = json!({"spec": {"hard": {"pods": "5", "requests.cpu": "2", "configmaps": "3"}}});
        let objects = vec![
            (pods, pod("500m", "Running")),
            (pods, pod("250m", "Pending")),
            (pods, pod("1", "Succeeded")),
            (maps, json!({"data": {}})),
        ];
        let status = plan(&quota, &objects).expect("a new quota gets a status");
        assert_eq!(status["hard"], quota["spec"]["hard"]);
        assert_eq!(status["used"], json!({"pods": "2", "requests.cpu": "750m", "configmaps": "1"}));
        let current = json!({"spec": quota["spec"], "status": status});
        assert_eq!(plan(&current, &objects), None, "an up-to-date status is left alone");
    }

    #[test]
    fn a_scoped_quota_counts_only_the_pods_its_scopes_select() {
        let pods = catalog::find("", "v1", "pods").unwrap();
        let quota = json!({"spec": {"hard": {"pods": "5"}, "scopes": ["BestEffort"]}});
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let objects = vec![(pods, best_effort), (pods, pod("100m", "Running"))];
        assert_eq!(plan(&quota, &objects).unwrap()["used"], json!({"pods": "1"}));
    }

    #[test]
    fn quotas_list_the_kinds_they_count() {
        let quota = json!({"spec": {"hard": {"count/deployments.apps": "1"}}});
        let kinds: Vec<&str> = counted_resources(&quota).iter().map(|r| r.plural).collect();
        assert!(kinds.contains(&"deployments") && kinds.contains(&"pods"), "{kinds:?}");
        assert!(!kinds.contains(&"statefulsets"));
    }
}
