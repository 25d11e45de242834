//! Server-side apply (`application/apply-patch+yaml`): the applied configuration of a field manager is merged
//! into the object by `managed_fields::apply` (ownership, conflicts, removal of fields the manager stopped
//! applying); an absent object is created from it (201). It is an update like any other (`Verbs::update_with`),
//! so it reads the object as an update does.

use serde_json::{json, Value};

use crate::apis::managed_fields::{self, ApplyError};
use crate::apis::time;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::verbs::{Target, Verbs, WriteOptions, Written};

fn apply_error(target: &Target, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: ApplyError::Conflicts(conflicts.clone()).to_string(),
            causes: conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": c.message(), "field": c.field}))
                .collect(),
            resource: target.resource,
            name: target.name().to_string(),
        },
        ApplyError::Invalid(m) => ApiError::BadRequest(m),
    }
}

pub async fn server_side_apply(
    verbs: &Verbs,
    target: &Target,
    options: &WriteOptions,
    config: Value,
) -> Result<Written, ApiError> {
    let Some(manager) = options.field_manager.clone().filter(|m| !m.is_empty()) else {
        return Err(ApiError::BadRequest("PATCH, application/apply-patch+yaml requires fieldManager to be set".into()));
    };
    let resource = target.resource;
    let api_version = resource.api_version();
    if config.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str) != Some(target.name()) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            config["metadata"]["name"].as_str().unwrap_or_default(),
            target.name()
        )));
    }
    // The manager's ownership is recorded here; the verbs must not record the write a second time.
    let recorded = WriteOptions { field_manager: None, ..options.clone() };
    // An update first: it reads this replica's state, and answers NotFound only after a linearizable read.
    let updated = verbs
        .update_with(target, &recorded, |current| {
            let now = time::now();
            let mut next = managed_fields::apply(
                resource.group,
                resource.kind,
                &api_version,
                Some(current),
                &config,
                &manager,
                options.force,
                &now,
            )
            .map_err(|e| apply_error(target, e))?;
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(next)
        })
        .await;
    match updated {
        Err(ApiError::NotFound { .. }) => {
            let now = time::now();
            let object = managed_fields::apply(
                resource.group,
                resource.kind,
                &api_version,
                None,
                &config,
                &manager,
                options.force,
                &now,
            )
            .map_err(|e| apply_error(target, e))?;
            verbs.create(target, object, &recorded).await
        }
        other => other,
    }
}
