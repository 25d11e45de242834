//! The four patch types of the Kubernetes API, applied to an object's JSON.
//!
//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386) come from the `json-patch` crate; strategic merge patch
//! is `strategic`; server-side apply is `apply`. A patch that does not apply is refused before anything is
//! written, with the patch engine's message.
//!
//! A patch cannot make a replica hold much more than an object: a JSON patch has at most upstream's number of
//! operations, its `copy` operations may add only so many bytes together (measured before each copy is
//! made, as upstream's engine bounds them), and a patched object larger than the object limit is refused
//! (413) before anything else is done with it.

use serde_json::Value;

use super::catalog::Resource;
use super::strategic;
use crate::limits;

/// Why a patch was refused; nothing was written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch itself is malformed (the API answers 400 Bad Request).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but does not apply to the object (422 Invalid).
    #[error("{0}")]
    DoesNotApply(String),
    /// The patch, or the object it makes, is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
}

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

/// The size of `value` encoded as JSON, counted without building the encoding.
pub fn encoded_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn does_not_apply(detail: String) -> PatchError {
    PatchError::DoesNotApply(format!("the JSON patch does not apply: {detail}"))
}

/// Applies a JSON patch one operation at a time, refusing it before a `copy` would take the bytes its copies
/// add past `API_JSON_PATCH_COPY_BYTES_MAX`.
fn json_patch(current: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("the JSON patch is not valid: {e}")))?;
    if ops.0.len() > limits::API_JSON_PATCH_OPERATIONS_MAX {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {}, got {}",
            limits::API_JSON_PATCH_OPERATIONS_MAX,
            ops.0.len()
        )));
    }
    let mut doc = current.clone();
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = op {
            copied += doc.pointer(copy.from.as_str()).map_or(0, encoded_len);
            if copied > limits::API_JSON_PATCH_COPY_BYTES_MAX {
                return Err(does_not_apply(format!(
                    "operation '/{i}': the accumulated size increase of copy is {copied} bytes, exceeding the \
                         limit of {} bytes",
                    limits::API_JSON_PATCH_COPY_BYTES_MAX
                )));
            }
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            does_not_apply(e.to_string())
        })?;
    }
    Ok(doc)
}

/// Applies a JSON, merge or strategic patch to `current`; a result larger than an object may be is refused.
pub fn apply(
    resource: &'static Resource,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let patched = patch_object(resource, patch_type, current, patch)?;
    let size = encoded_len(&patched);
    if size > limits::VALUE_BYTES_MAX {
        return Err(PatchError::TooLarge(format!(
            "the patched object is {size} bytes once encoded; the limit is {} bytes",
            limits::VALUE_BYTES_MAX
        )));
    }
    Ok(patched)
}

fn patch_object(
    resource: &'static Resource,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch(current, patch),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::Malformed("a merge patch must be a JSON object".into()));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => strategic::strategic_merge(resource.group, resource.kind, current, patch)
            .map_err(|e| PatchError::Malformed(e.to_string())),
        PatchType::Apply => Err(PatchError::Malformed("an apply patch is not a merge: see managed_fields".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config_maps() -> &'static Resource {
        crate::apis::catalog::find("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let v = json!({"a": [1, "two", null], "b": {"c": "\u{e9}\n"}});
        assert_eq!(encoded_len(&v), serde_json::to_vec(&v).unwrap().len());
    }

    #[test]
    fn doubling_copies_are_refused_before_they_are_made() {
        let current = json!({"kind": "ConfigMap", "x": {"a": ["v".repeat(100_000)]}});
        let mut ops = vec![];
        for _ in 0..30 {
            ops.push(json!({"op": "copy", "from": "/x/a", "path": "/x/a/-"}));
        }
        let e = apply(config_maps(), PatchType::Json, &current, &json!(ops)).unwrap_err();
        assert!(matches!(e, PatchError::DoesNotApply(_)), "{e:?}");
        assert!(e.to_string().contains("accumulated size increase of copy"), "{e}");
        // The operation named is the one that would have crossed the limit (copies of 100 KB, then doubling).
        assert!(e.to_string().contains("operation '/4'"), "{e}");
    }

    #[test]
    fn too_many_operations_and_too_large_results_are_413() {
        let ops: Vec<Value> = (0..=limits::API_JSON_PATCH_OPERATIONS_MAX)
            .map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"}))
            .collect();
        let current = json!({"kind": "ConfigMap"});
        let e = apply(config_maps(), PatchType::Json, &current, &json!(ops)).unwrap_err();
        assert!(matches!(e, PatchError::TooLarge(_)), "{e:?}");
        let big = json!({"data": {"a": "x".repeat(limits::VALUE_BYTES_MAX)}});
        let e = apply(config_maps(), PatchType::Merge, &current, &big).unwrap_err();
        assert!(matches!(e, PatchError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn failures_name_the_operation_that_failed() {
        let current = json!({"kind": "ConfigMap"});
        let ops = json!([{"op": "test", "path": "/kind", "value": "ConfigMap"}, {"op": "remove", "path": "/nope"}]);
        let e = apply(config_maps(), PatchType::Json, &current, &ops).unwrap_err();
        assert!(e.to_string().contains("operation '/1'"), "{e}");
    }
}
