//! ServiceAccount tokens, as kube-apiserver's TokenRequest issues them: JSON Web Tokens signed (ES256) with the
//! cluster authority's key, naming the account (and, for a bound token, the pod it is bound to), its audiences
//! and its lifetime. Any replica verifies them with the authority's certificate alone; only a replica holding
//! the key issues them. A token authenticates to the API only if it names the API's audience, is within its
//! lifetime, and the account (and pod) it names still exist with the uids it names: deleting the account or
//! the pod revokes it (that last check is the API layer's, which reads the store).
//!
//! Pure apart from the system clock the caller passes in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, UnparsedPublicKey};
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::authn::User;
use super::pki::{self, Authority};

/// The issuer tokens name, and the audience the API accepts (upstream's defaults).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const API_AUDIENCE: &str = ISSUER;
/// The groups of every account, and of those of a namespace (`system:serviceaccounts:<namespace>`).
pub const ACCOUNTS_GROUP: &str = "system:serviceaccounts";
pub const ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the cluster authority's key is not an ECDSA P-256 key, so it cannot sign service account tokens")]
    KeyType,
    #[error("the cluster authority's certificate cannot be read: {0}")]
    Certificate(String),
    #[error("not a token of this cluster")]
    Invalid,
    #[error("the token has expired or is not valid yet")]
    Expired,
    #[error("the token is not meant for the API (its audiences are {0:?})")]
    Audience(Vec<String>),
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub account: String,
    pub account_uid: String,
    /// The pod the token is bound to (name, uid).
    pub pod: Option<(String, String)>,
    pub audiences: Vec<String>,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
}

impl Claims {
    /// The user a token of these claims authenticates as.
    pub fn user(&self) -> User {
        let namespace_group = format!("{ACCOUNTS_GROUP}:{}", self.namespace);
        User {
            name: format!("{ACCOUNT_USER_PREFIX}{}:{}", self.namespace, self.account),
            uid: self.account_uid.clone(),
            groups: vec![ACCOUNTS_GROUP.to_owned(), namespace_group],
        }
    }

    fn payload(&self, id: &str) -> Value {
        let mut kubernetes = json!({"namespace": self.namespace,
            "serviceaccount": {"name": self.account, "uid": self.account_uid}});
        if let Some((name, uid)) = &self.pod {
            kubernetes["pod"] = json!({"name": name, "uid": uid});
        }
        json!({
            "iss": ISSUER,
            "sub": format!("{ACCOUNT_USER_PREFIX}{}:{}", self.namespace, self.account),
            "aud": self.audiences,
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.expires_at,
            "jti": id,
            "kubernetes.io": kubernetes,
        })
    }

    fn from_payload(payload: &Value) -> Option<Claims> {
        let k = &payload["kubernetes.io"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let pod = match (text(&k["pod"]["name"]), text(&k["pod"]["uid"])) {
            (Some(name), Some(uid)) => Some((name, uid)),
            _ => None,
        };
        let audiences = match &payload["aud"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        let claims = Claims {
            namespace: text(&k["namespace"])?,
            account: text(&k["serviceaccount"]["name"])?,
            account_uid: text(&k["serviceaccount"]["uid"])?,
            pod,
            audiences,
            issued_at: payload["iat"].as_i64()?,
            expires_at: payload["exp"].as_i64()?,
        };
        let subject = format!("{ACCOUNT_USER_PREFIX}{}:{}", claims.namespace, claims.account);
        (payload["iss"] == ISSUER && payload["sub"] == subject.as_str()).then_some(claims)
    }
}

/// The key id of tokens signed by the authority of `cert_pem`: its certificate's fingerprint.
fn key_id(cert_pem: &str) -> Result<String, TokenError> {
    pki::fingerprint(cert_pem).ok_or_else(|| TokenError::Certificate("not a PEM certificate".into()))
}

/// Signs tokens with the cluster authority's key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    key_id: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn new(authority: &Authority) -> Result<TokenSigner, TokenError> {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &authority.key_der(), &rng)
            .map_err(|_| TokenError::KeyType)?;
        Ok(TokenSigner { key, key_id: key_id(authority.cert_pem())? })
    }

    /// A token of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let id = uuid::Uuid::new_v4().to_string();
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signed = format!("{}.{}", encode(&header), encode(&claims.payload(&id)));
        let rng = ring::rand::SystemRandom::new();
        let signature = self.key.sign(&rng, signed.as_bytes()).expect("ECDSA signing with a valid key");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// Verifies tokens with the cluster authority's certificate.
pub struct TokenVerifier {
    key: UnparsedPublicKey<Vec<u8>>,
    key_id: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier of the tokens the authority of `cert_pem` signs.
    pub fn new(cert_pem: &str) -> Result<TokenVerifier, TokenError> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| TokenError::Certificate(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| TokenError::Certificate(e.to_string()))?;
        let point = cert.public_key().subject_public_key.data.to_vec();
        Ok(TokenVerifier {
            key: UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point),
            key_id: key_id(cert_pem)?,
        })
    }

    /// Whether `token` is a JSON Web Token at all (three dot-separated parts), so worth verifying.
    pub fn looks_like(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// The claims of `token` if this authority signed it, it is valid at `now` (seconds since the epoch) and
    /// meant for the API.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let [header, payload, signature] = token.split('.').collect::<Vec<_>>()[..] else {
            return Err(TokenError::Invalid);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Invalid);
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Invalid)?;
        if header["alg"] != "ES256" || header["kid"] != self.key_id.as_str() {
            return Err(TokenError::Invalid);
        }
        let signed = &token[..token.rfind('.').expect("three parts")];
        self.key.verify(signed.as_bytes(), &decode(signature)?).map_err(|_| TokenError::Invalid)?;
        let payload: Value = serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Invalid)?;
        let claims = Claims::from_payload(&payload).ok_or(TokenError::Invalid)?;
        let not_before = payload["nbf"].as_i64().unwrap_or(claims.issued_at);
        // Clocks of replicas differ a little, as upstream allows for.
        if now + LEEWAY_SECS < not_before || now >= claims.expires_at + LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if !claims.audiences.iter().any(|a| a == API_AUDIENCE) {
            return Err(TokenError::Audience(claims.audiences));
        }
        Ok(claims)
    }
}

/// How far apart replicas' clocks may be when a token's lifetime is checked.
const LEEWAY_SECS: i64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(audiences: &[&str], expires_at: i64) -> Claims {
        Claims {
            namespace: "ns".into(),
            account: "bot".into(),
            account_uid: "u-1".into(),
            pod: Some(("p".into(), "u-2".into())),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            issued_at: 1_000,
            expires_at,
        }
    }

    #[test]
    fn a_signed_token_verifies_as_its_claims_and_nothing_else_does() {
        let authority = Authority::create("raftsman-ca").unwrap();
        let signer = TokenSigner::new(&authority).unwrap();
        let verifier = TokenVerifier::new(authority.cert_pem()).unwrap();
        let issued = claims(&[API_AUDIENCE], 5_000);
        let token = signer.sign(&issued);
        assert!(TokenVerifier::looks_like(&token));
        assert_eq!(verifier.verify(&token, 2_000), Ok(issued.clone()));
        assert_eq!(issued.user().name, "system:serviceaccount:ns:bot");
        assert_eq!(issued.user().groups, ["system:serviceaccounts", "system:serviceaccounts:ns"]);
        assert_eq!(verifier.verify(&token, 5_100), Err(TokenError::Expired));
        let other = signer.sign(&claims(&["vault"], 5_000));
        assert_eq!(verifier.verify(&other, 2_000), Err(TokenError::Audience(vec!["vault".into()])));
        // A changed payload, or another authority's token, does not verify.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(claims(&[API_AUDIENCE], 9_999_999).payload("x").to_string());
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(verifier.verify(&forged, 2_000), Err(TokenError::Invalid));
        let stranger = TokenSigner::new(&Authority::create("raftsman-ca").unwrap()).unwrap();
        assert_eq!(verifier.verify(&stranger.sign(&issued), 2_000), Err(TokenError::Invalid));
        assert_eq!(verifier.verify("a.b.c", 2_000), Err(TokenError::Invalid));
    }
}
