//! The credentials the API servers present to the agents' kubelet endpoints: a bearer token kept in the Secret
//! `kube-system/raftsman-kubelet-credentials`, which the leader creates when it is missing (a new random token
//! each time, so deleting the Secret rotates the token). A replica reads it from its own store when it relays
//! `kubectl logs` or `kubectl exec`, or scrapes usage; an agent reads it through the API and accepts a request
//! only with `Authorization: Bearer <token>`.
//!
//! Whoever may read Secrets in `kube-system` may use the kubelets, which is no more than such a user can do
//! through the API (`pods/exec`). Client certificates from the cluster CA will replace the token.

use base64::Engine as _;
use serde_json::{json, Value};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "raftsman-kubelet-credentials";
/// The key of the Secret's data that holds the token.
pub const KEY: &str = "token";

/// A new Secret holding `token` (32 random bytes, hex, from the caller).
pub fn secret(token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {KEY: base64::engine::general_purpose::STANDARD.encode(token)},
    })
}

/// The token a Secret holds, if it holds a usable one.
pub fn token(secret: &Value) -> Option<String> {
    let encoded = secret["data"][KEY].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

/// The value of the `Authorization` header that carries `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Whether an `Authorization` header carries `token`; compares in time independent of where they differ.
pub fn carries(header: Option<&[u8]>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
    let expected = token.as_bytes();
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_into_the_secret_and_comes_back_out() {
        let s = secret("0123abcd");
        assert_eq!(token(&s).as_deref(), Some("0123abcd"));
        assert_eq!(token(&json!({"data": {KEY: "not base64!"}})), None);
        assert_eq!(token(&json!({"data": {}})), None);
        assert_eq!(token(&json!({"data": {KEY: ""}})), None);
    }

    #[test]
    fn only_the_exact_bearer_token_is_carried() {
        assert!(carries(Some(bearer("abc").as_bytes()), "abc"));
        assert!(!carries(Some(b"Bearer abd"), "abc"));
        assert!(!carries(Some(b"Bearer ab"), "abc"));
        assert!(!carries(Some(b"Basic abc"), "abc"));
        assert!(!carries(None, "abc"));
    }
}
