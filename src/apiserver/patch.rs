//! The four patch types of the Kubernetes API, applied to an object's JSON.
//!
//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386) come from the `json-patch` crate; strategic merge patch
//! is `strategic`; server-side apply is `apply`. A patch that does not apply is refused before anything is
//! written, with the patch engine's message.

use serde_json::Value;

use super::errors::ApiError;
use super::resources::Resource;
use super::strategic;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type a request's Content-Type names.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies a JSON, merge or strategic patch to `current`.
pub fn apply(
    resource: &'static Resource,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("the JSON patch is not valid: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::Invalid {
                resource,
                name: String::new(),
                message: format!("the JSON patch does not apply: {e}"),
                causes: Vec::new(),
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest("a merge patch must be a JSON object".into()));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => strategic::strategic_merge(resource.group, resource.kind, current, patch)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        PatchType::Apply => Err(ApiError::Internal("server-side apply is handled by the apply module".into())),
    }
}
