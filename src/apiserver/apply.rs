//! Server-side apply (`application/apply-patch+yaml`): create the object when it is absent (201), otherwise
//! merge the applied configuration into it.

use serde_json::Value;

use super::errors::ApiError;
use super::registry::Consistency;
use super::strategic;
use super::verbs::{Target, Verbs, WriteOptions, Written};

pub async fn server_side_apply(
    verbs: &Verbs,
    target: &Target,
    options: &WriteOptions,
    config: Value,
) -> Result<Written, ApiError> {
    if options.field_manager.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::BadRequest("fieldManager is required for apply requests".into()));
    }
    let resource = target.resource;
    if config.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str) != Some(target.name()) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            config["metadata"]["name"].as_str().unwrap_or_default(),
            target.name()
        )));
    }
    match verbs.get(target, Consistency::Linearizable).await {
        Err(ApiError::NotFound { .. }) => verbs.create(target, config, options).await,
        Err(e) => Err(e),
        Ok(_) => {
            verbs
                .update_with(target, options, |current| {
                    let mut next = strategic::strategic_merge(resource.group, resource.kind, current, &config)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    Ok(next)
                })
                .await
        }
    }
}
