//! The Kubernetes API's errors: one enum, and the one map from it to an HTTP code and a `Status` object.
//!
//! kubectl and client-go decide what to do from `code` and `reason` (`IsNotFound`, `IsConflict`, retry on
//! 429/5xx), and print `message`, so both follow the real API server's wording.

use serde_json::{json, Value};

use crate::apis::catalog::Resource;
use crate::apis::patch::PatchError;
pub use crate::apis::validation::Cause;
use crate::store::watch::WatchError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", named(.resource, .name, "not found"))]
    NotFound { resource: &'static Resource, name: String },
    #[error("{}", named(.resource, .name, "already exists"))]
    AlreadyExists { resource: &'static Resource, name: String },
    #[error("Operation cannot be fulfilled on {} {name:?}: {message}", .resource.qualified_plural())]
    Conflict { resource: &'static Resource, name: String, message: String },
    /// A server-side apply that would change fields other managers own.
    #[error("{message}")]
    ApplyConflict { resource: &'static Resource, name: String, message: String, causes: Vec<Value> },
    #[error("{message}")]
    Invalid { resource: &'static Resource, name: String, message: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    /// No credentials where some are needed, or credentials that do not check out.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{} {name:?} is forbidden: {message}", .resource.qualified_plural())]
    Forbidden { resource: &'static Resource, name: String, message: String },
    /// A request its user may not make (403): `message` says who cannot do what, as the authorizers word it.
    #[error("{}", denied(.group, .resource, .name, .message))]
    Denied { group: String, resource: String, name: String, message: String },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    PathNotFound(String),
    /// A write of the leader's controllers committed after their term ended: refused, nothing changed.
    #[error("the leadership term {0} this write was made in has ended")]
    Fenced(u64),
    /// A bound on concurrent work was reached: retryable.
    #[error("{0}")]
    TooManyRequests(String),
    /// An eviction a PodDisruptionBudget does not allow now (429 without Retry-After, as upstream: the
    /// caller decides when to try again); the cause names the budget.
    #[error("Cannot evict pod as it would violate the pod's disruption budget.")]
    DisruptionBudget(String),
    /// No leader, no quorum, or the outcome of a write is unknown: retryable.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The `Status` reason of a fenced write refused because its leadership term ended: a 409 that no retry can
/// fix, unlike an ordinary `Conflict`.
pub const FENCED_REASON: &str = "Fenced";

/// `pods "x" is forbidden: ...`, `pods is forbidden: ...` for a collection, `forbidden: ...` for a path.
fn denied(group: &str, resource: &str, name: &str, message: &str) -> String {
    let what = match (group, resource, name) {
        (_, "", _) => String::new(),
        ("", r, "") => format!("{r} "),
        (g, r, "") => format!("{r}.{g} "),
        ("", r, n) => format!("{r} {n:?} "),
        (g, r, n) => format!("{r}.{g} {n:?} "),
    };
    format!("{what}is forbidden: {message}")
}

fn named(resource: &Resource, name: &str, what: &str) -> String {
    format!("{} {name:?} {what}", resource.qualified_plural())
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound(_) => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. }
            | ApiError::Fenced(_) => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } | ApiError::Denied { .. } => 403,
            ApiError::Gone(_) => 410,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::TooManyRequests(_) | ApiError::DisruptionBudget(_) => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound(_) => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Fenced(_) => FENCED_REASON,
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } | ApiError::Denied { .. } => "Forbidden",
            ApiError::Gone(_) => "Expired",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooManyRequests(_) | ApiError::DisruptionBudget(_) => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object the API answers with.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. }
            | ApiError::Forbidden { resource, name, .. } => {
                Some(json!({"name": name, "group": resource.group, "kind": resource.plural}))
            }
            ApiError::Denied { group, resource, name, .. } => {
                Some(json!({"name": name, "group": group, "kind": resource}))
            }
            ApiError::Invalid { resource, name, causes, .. } => Some(json!({
                "name": name,
                "group": resource.group,
                "kind": resource.kind,
                "causes": causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect::<Vec<_>>(),
            })),
            ApiError::ApplyConflict { resource, name, causes, .. } => {
                Some(json!({"name": name, "group": resource.group, "kind": resource.plural, "causes": causes}))
            }
            ApiError::Unavailable(_) | ApiError::TooManyRequests(_) => Some(json!({"retryAfterSeconds": 1})),
            ApiError::DisruptionBudget(cause) => {
                Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}))
            }
            _ => None,
        };
        // Every Status carries details, as upstream's do: clients read them without checking (kubectl debug).
        status["details"] = details.unwrap_or_else(|| json!({}));
        status
    }

    pub fn conflict(resource: &'static Resource, name: &str) -> ApiError {
        ApiError::Conflict {
            resource,
            name: name.to_string(),
            message: "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        }
    }

    /// A 422 whose message is built as the real API server builds it from the causes.
    pub fn invalid(resource: &'static Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let list: Vec<String> = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect();
        let body = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let message = format!("{} {name:?} is invalid: {body}", resource.qualified_kind());
        ApiError::Invalid { resource, name: name.to_string(), message, causes }
    }

    /// A refused patch of the `resource` object `name`: a patch that does not apply is Invalid, naming the
    /// object, with the engine's reason as its cause (which kubectl prints).
    pub fn patch(resource: &'static Resource, name: &str, e: PatchError) -> ApiError {
        match e {
            PatchError::Malformed(m) => ApiError::BadRequest(m),
            PatchError::DoesNotApply(message) => {
                let cause = Cause { reason: "FieldValueInvalid", field: String::new(), message };
                ApiError::invalid(resource, name, vec![cause])
            }
            PatchError::TooLarge(m) => ApiError::RequestEntityTooLarge(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            e @ StoreError::TooLarge { .. } => ApiError::RequestEntityTooLarge(e.to_string()),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

/// How a watch that cannot go on ends: a compacted start is 410 Expired (clients re-list), a storage fault
/// 500, a stopping replica 503.
impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> ApiError {
        match e {
            WatchError::Compacted { from, compact_revision } => {
                ApiError::Gone(format!("too old resource version: {} ({compact_revision})", from - 1))
            }
            e @ WatchError::Storage(_) => ApiError::Internal(e.to_string()),
            e @ WatchError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}
