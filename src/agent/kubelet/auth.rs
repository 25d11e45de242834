//! Who may use the kubelet endpoint: a request must carry the cluster's kubelet credentials
//! (`apis::kubelet_credentials`), which only the API servers present. The agent reads the token through the
//! API when it first needs it, and again when a request carries another token (the Secret was replaced), at most
//! every `KUBELET_CREDENTIALS_REREAD_MS`, each read within `KUBELET_CREDENTIALS_READ_TIMEOUT_MS`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use std::sync::Mutex;

use crate::apis::kubelet_credentials;
use crate::limits;

/// The token the endpoint accepts.
pub struct Credentials {
    source: Source,
    known: Mutex<Known>,
}

enum Source {
    Fixed,
    Api(kube::Client),
}

#[derive(Default)]
struct Known {
    token: Option<String>,
    read_at: Option<Instant>,
}

impl Credentials {
    /// Accepts `token`, for ever.
    pub fn fixed(token: &str) -> Credentials {
        Credentials { source: Source::Fixed, known: Mutex::new(Known { token: Some(token.to_owned()), read_at: None }) }
    }

    /// Accepts the token the API's Secret holds.
    pub fn from_api(client: kube::Client) -> Credentials {
        Credentials { source: Source::Api(client), known: Mutex::default() }
    }

    /// Whether a request with this `Authorization` header may be served.
    pub async fn admit(&self, authorization: Option<&[u8]>) -> bool {
        if authorization.is_none() {
            return false;
        }
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.token.as_deref().is_some_and(|t| kubelet_credentials::carries(authorization, t)) {
                return true;
            }
            let reread = Duration::from_millis(limits::KUBELET_CREDENTIALS_REREAD_MS);
            if matches!(self.source, Source::Fixed) || known.read_at.is_some_and(|at| at.elapsed() < reread) {
                return false;
            }
            known.read_at = Some(Instant::now());
        }
        let Source::Api(client) = &self.source else { return false };
        let token = match read(client).await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "kubelet: the kubelet credentials could not be read");
                return false;
            }
        };
        let admitted = kubelet_credentials::carries(authorization, &token);
        self.known.lock().unwrap_or_else(|p| p.into_inner()).token = Some(token);
        admitted
    }
}

/// The token the kubelet credentials Secret holds now, read through the API (the agent's and the leader's
/// scraper's way to it).
pub async fn read(client: &kube::Client) -> Result<String, String> {
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), kubelet_credentials::NAMESPACE);
    let waited = Duration::from_millis(limits::KUBELET_CREDENTIALS_READ_TIMEOUT_MS);
    let secret = tokio::time::timeout(waited, secrets.get_opt(kubelet_credentials::NAME))
        .await
        .map_err(|_| format!("no answer within {waited:?}"))?
        .map_err(|e| e.to_string())?
        .ok_or("the Secret is not there yet")?;
    let secret = serde_json::to_value(secret).map_err(|e| e.to_string())?;
    kubelet_credentials::token(&secret).ok_or_else(|| "the Secret holds no usable token".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_token_is_admitted_and_nothing_else() {
        let credentials = Credentials::fixed("abc");
        assert!(credentials.admit(Some(b"Bearer abc")).await);
        assert!(!credentials.admit(Some(b"Bearer abd")).await);
        assert!(!credentials.admit(None).await);
    }
}
