//! The two endpoints an agent joins through (`security::join`): the cluster authority's certificate, and
//! the signing of a node's certificate for the node token's secret. Both are outside the Kubernetes API and
//! reachable without credentials; the second checks the secret itself (or the client certificate that
//! vouches instead).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::rest::{error_response, KubeApi};
use crate::apiserver::errors::ApiError;
use crate::security::authn::Origin;
use crate::security::join::{self, CredentialsRequest, JoinError};

/// `GET /cacerts`: the cluster authority's certificate (PEM).
pub async fn authority(State(api): State<Arc<KubeApi>>) -> Response {
    match &api.security.authority_pem {
        Some(pem) => {
            let pem_type = HeaderValue::from_static("application/x-pem-file");
            (StatusCode::OK, [(header::CONTENT_TYPE, pem_type)], pem.clone()).into_response()
        }
        None => error_response(&ApiError::PathNotFound("this replica serves its API without TLS".into())),
    }
}

/// `POST /raftsman/v1/node-credentials`: a `CredentialsRequest` in, `Credentials` out. The connection's client
/// certificate, if any, may vouch for the request instead of the node token's secret.
pub async fn node_credentials(
    State(api): State<Arc<KubeApi>>,
    origin: Option<Extension<Origin>>,
    body: Bytes,
) -> Response {
    let Some(signer) = &api.security.signer else {
        let e = "this replica does not hold the cluster authority's key (--cluster-signing-key-file)";
        return error_response(&ApiError::PathNotFound(e.into()));
    };
    let request: CredentialsRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error_response(&ApiError::BadRequest(format!("not a node credentials request: {e}"))),
    };
    let vouched_by = match origin.as_deref() {
        Some(Origin::Tls { certificate }) => certificate.as_ref(),
        _ => None,
    };
    match join::sign(signer, &request, vouched_by) {
        Ok(credentials) => {
            let json = HeaderValue::from_static("application/json");
            let body = serde_json::to_vec(&credentials).unwrap_or_default();
            (StatusCode::OK, [(header::CONTENT_TYPE, json)], body).into_response()
        }
        Err(e @ JoinError::WrongSecret) => {
            tracing::warn!(node = %request.node, "refused a node's credentials: {e}");
            error_response(&ApiError::Unauthorized)
        }
        Err(e) => error_response(&ApiError::BadRequest(e.to_string())),
    }
}
