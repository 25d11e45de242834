//! Who may talk to whom, and what is kept secret: the cluster's certificate authorities and what they issue
//! (`pki`), mutual TLS on the gRPC ports (`mutual_tls`): between replicas (`peer`) and on the etcd client port
//! (`etcd`), the API's TLS (`tls`) and who a request comes from
//! (`authn`, with ServiceAccount tokens from `service_accounts`) and what they may do (`rbac`,
//! `node_authorizer`), how agents join with the node token (`join`),
//! kubeconfig files (`kubeconfig`), and the API's encryption at rest (`encryption`).

pub mod authn;
pub mod encryption;
pub mod etcd;
pub mod join;
pub mod kubeconfig;
pub mod mutual_tls;
pub mod node_authorizer;
pub mod peer;
pub mod pki;
pub mod rbac;
pub mod service_accounts;
pub mod tls;

use std::sync::Arc;

/// What a replica's API knows of security: who requests come from, what it encrypts at rest, the authority
/// it signs nodes' certificates with (when it holds its key) and its TLS to other replicas' APIs.
pub struct ApiSecurity {
    pub authenticator: authn::Authenticator,
    pub encryption: Arc<encryption::Encryption>,
    /// The cluster authority's certificate (PEM), served to joining agents; None when the API runs insecure.
    pub authority_pem: Option<String>,
    pub signer: Option<pki::Authority>,
    /// What signs ServiceAccount tokens (TokenRequest): the signing authority's key, when it is ECDSA P-256.
    pub tokens: Option<service_accounts::TokenSigner>,
    pub replicas: Option<Arc<rustls::ClientConfig>>,
}

impl ApiSecurity {
    /// No TLS and no credentials (`--insecure-api`); what `encryption` names is still encrypted at rest.
    pub fn insecure(encryption: Arc<encryption::Encryption>) -> ApiSecurity {
        ApiSecurity {
            authenticator: authn::Authenticator::default(),
            encryption,
            authority_pem: None,
            signer: None,
            tokens: None,
            replicas: None,
        }
    }

    /// The cluster authority's certificate when this replica signs ServiceAccount tokens: what pods' token
    /// volumes verify the API with (`kube-root-ca.crt`).
    pub fn token_root_ca(&self) -> Option<Arc<str>> {
        self.tokens.as_ref().and(self.authority_pem.as_deref()).map(Arc::from)
    }
}
