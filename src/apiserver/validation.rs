//! Placeholder until the validation module lands.
use serde_json::Value;
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}
pub fn validate_create(_group: &str, _kind: &str, _obj: &Value) -> Vec<Cause> {
    Vec::new()
}
pub fn validate_update(_group: &str, _kind: &str, _old: &Value, _new: &Value) -> Vec<Cause> {
    Vec::new()
}
