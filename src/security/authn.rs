//! Who a request to the Kubernetes API comes from, as kube-apiserver decides it: a client certificate of the
//! cluster authority (its common name is the user, its organizations the groups), else a bearer token of the
//! static token file or a ServiceAccount token the cluster authority signed (`service_accounts`), else nobody. Every authenticated user is also in `system:authenticated`. A request with
//! no credentials is anonymous, and anonymous requests reach only the health and version endpoints; a request
//! with credentials that do not check out is refused (401) even there.
//!
//! How a request arrived is its `Origin`, which only this process sets: the listener (TLS, with the client
//! certificate it verified; or plain HTTP, when the API runs insecure) or the leader's own components, which
//! call the router in process under their own names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use http::HeaderMap;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::service_accounts::{Claims, TokenError, TokenVerifier};
use crate::limits;

/// The user and group of the cluster's administrators, as kube-apiserver names them: members of
/// `system:masters` may do anything.
pub const ADMIN_USER: &str = "system:admin";
pub const MASTERS_GROUP: &str = "system:masters";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user the replicas' own requests to each other's APIs come from (their API certificates name it).
pub const API_SERVER_USER: &str = "system:apiserver";
/// The user the leader's components call the API as.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// Nodes are `system:node:<name>` in `system:nodes`.
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// Paths an anonymous request may reach (and their subpaths): whether the server lives and is ready, and
/// its version, as kube-apiserver's `system:public-info-viewer` allows.
const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> User {
        User { name: name.to_owned(), uid: String::new(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    /// The user a verified client certificate names: its common name, and its organizations as groups.
    /// None when it names no one.
    pub fn of_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
        let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_owned).collect();
        (!name.is_empty()).then_some(User { name, uid: String::new(), groups })
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node this user is, for `system:node:<name>` in `system:nodes`.
    pub fn node_name(&self) -> Option<&str> {
        self.name.strip_prefix(NODE_USER_PREFIX).filter(|_| self.in_group(NODES_GROUP))
    }

    fn authenticated(mut self) -> User {
        if !self.in_group(AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        self
    }
}

/// How a request reached the API: a request extension that only this process sets.
#[derive(Clone, Debug)]
pub enum Origin {
    /// Over TLS, with the client certificate the handshake verified against the cluster authority, if any.
    Tls { certificate: Option<User> },
    /// Over plain HTTP (`--insecure-api`): no credentials can be checked, and every request is the admin's.
    Plaintext,
    /// From the leader's own components, in process.
    InProcess(User),
}

/// Why a request is refused before anything else is looked at (401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("the bearer token is not valid")]
    BadToken,
    #[error("the service account token is not valid: {0}")]
    ServiceAccount(TokenError),
    #[error("the service account token's {0} no longer exists")]
    Revoked(&'static str),
    #[error("anonymous requests are not allowed here")]
    Anonymous,
    #[error("the request did not come through a listener of this replica")]
    NoOrigin,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path} line {line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
}

/// The API's authenticators.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// Bearer tokens of the static token file, and whom they stand for.
    tokens: HashMap<String, User>,
    /// ServiceAccount tokens' verifier (the cluster authority's certificate).
    accounts: Option<TokenVerifier>,
}

impl Authenticator {
    /// Authenticates with the static token file at `path` (kube-apiserver's `--token-auth-file`) besides
    /// client certificates.
    pub fn with_token_file(path: &Path) -> Result<Authenticator, TokenFileError> {
        let size = std::fs::metadata(path).map_err(|source| TokenFileError::Read { path: path.into(), source })?.len();
        if size > limits::TOKEN_FILE_BYTES_MAX {
            return Err(TokenFileError::TooLarge { path: path.into(), max: limits::TOKEN_FILE_BYTES_MAX });
        }
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenFileError::Read { path: path.into(), source })?;
        let tokens = parse_token_file(&text).map_err(|(line, reason)| TokenFileError::Invalid {
            path: path.into(),
            line,
            reason,
        })?;
        Ok(Authenticator { tokens, accounts: None })
    }

    /// The same authenticators, also accepting the ServiceAccount tokens `verifier` checks.
    pub fn with_service_accounts(self, verifier: TokenVerifier) -> Authenticator {
        Authenticator { accounts: Some(verifier), ..self }
    }

    /// Who a request to `path` with `headers` that arrived by `origin` comes from: None when anonymous (only
    /// for the public paths). A ServiceAccount token's user comes with its claims, whose account (and pod) the
    /// caller checks still exist.
    pub fn authenticate(
        &self,
        origin: Option<&Origin>,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Option<(User, Option<Claims>)>, Unauthenticated> {
        let certificate = match origin {
            None => return Err(Unauthenticated::NoOrigin),
            Some(Origin::InProcess(user)) => return Ok(Some((user.clone(), None))),
            Some(Origin::Plaintext) => {
                return Ok(Some((User::new(ADMIN_USER, &[MASTERS_GROUP]).authenticated(), None)))
            }
            Some(Origin::Tls { certificate }) => certificate,
        };
        if let Some(user) = certificate {
            return Ok(Some((user.clone().authenticated(), None)));
        }
        let token = match bearer(headers) {
            Some(token) => token,
            None if is_public(path) => return Ok(None),
            None => return Err(Unauthenticated::Anonymous),
        };
        if let Some(user) = self.tokens.get(token) {
            return Ok(Some((user.clone().authenticated(), None)));
        }
        match &self.accounts {
            Some(verifier) if TokenVerifier::looks_like(token) => {
                let now = jiff::Timestamp::now().as_second();
                let claims = verifier.verify(token, now).map_err(Unauthenticated::ServiceAccount)?;
                Ok(Some((claims.user().authenticated(), Some(claims))))
            }
            _ => Err(Unauthenticated::BadToken),
        }
    }
}

fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.iter().any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A static token file: one `token,user,uid[,"group1,group2"]` per line (CSV, as kube-apiserver reads it);
/// empty lines and lines starting with `#` are skipped. An error names the line (from 1) and what is wrong.
fn parse_token_file(text: &str) -> Result<HashMap<String, User>, (usize, String)> {
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = csv_fields(line).ok_or((i + 1, "an unterminated quote".to_owned()))?;
        let [token, name, uid, rest @ ..] = fields.as_slice() else {
            return Err((i + 1, "expected token,user,uid[,groups]".to_owned()));
        };
        if token.is_empty() || name.is_empty() {
            return Err((i + 1, "the token and the user must not be empty".to_owned()));
        }
        let groups = match rest {
            [] => Vec::new(),
            [groups] => groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect(),
            _ => return Err((i + 1, "more than four fields (quote the groups)".to_owned())),
        };
        let user = User { name: name.clone(), uid: uid.clone(), groups };
        if tokens.insert(token.clone(), user).is_some() {
            return Err((i + 1, "a token given twice".to_owned()));
        }
    }
    Ok(tokens)
}

/// The fields of one CSV line: comma separated, a field in double quotes may hold commas and `""`.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => field.push(c),
        }
    }
    (!quoted).then(|| fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::pki::{Authority, Usage};

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    #[test]
    fn a_certificate_names_its_user_by_common_name_and_its_groups_by_organization() {
        let ca = Authority::create("test-ca").unwrap();
        let issued = ca.issue("jane", &["dev"], &[], Usage::Client).unwrap();
        assert_eq!(User::of_certificate(&der(&issued.cert_pem)), Some(User::new("jane", &["dev"])));
        assert!(ca.issue("jane", &["dev", "ops"], &[], Usage::Client).is_err(), "one organization at most");
        let node = ca.issue("system:node:w1", &[NODES_GROUP], &[], Usage::Client).unwrap();
        assert_eq!(User::of_certificate(&der(&node.cert_pem)).unwrap().node_name(), Some("w1"));
        assert_eq!(User::new("system:node:w1", &[]).node_name(), None, "a node is in system:nodes too");
    }

    #[test]
    fn the_token_file_reads_as_kube_apiserver_reads_it() {
        let text = "# admins\nt0k3n,alice,1001,\"admins, dev\"\n\nt2,bob,1002\n";
        let tokens = parse_token_file(text).unwrap();
        assert_eq!(tokens["t0k3n"].name, "alice");
        assert_eq!(tokens["t0k3n"].groups, ["admins", "dev"]);
        assert_eq!(tokens["t2"], User { name: "bob".into(), uid: "1002".into(), groups: vec![] });
        assert_eq!(parse_token_file("only,two").unwrap_err().0, 1);
        assert_eq!(parse_token_file("a,b,c\n\"open,b,c").unwrap_err().0, 2);
        assert_eq!(parse_token_file("a,b,c\na,d,e").unwrap_err().0, 2, "a token given twice");
        assert_eq!(parse_token_file(",b,c").unwrap_err().0, 1);
        assert_eq!(parse_token_file("a,b,c,g1,g2").unwrap_err().0, 1);
    }

    #[test]
    fn certificates_then_tokens_then_anonymous_only_on_public_paths() {
        let authn = Authenticator { tokens: parse_token_file("good,alice,1,ops").unwrap(), accounts: None };
        let tls = |certificate| Origin::Tls { certificate };
        let jane = User::new("jane", &["dev"]);
        let as_jane = authn.authenticate(Some(&tls(Some(jane))), &headers(None), "/api").unwrap().unwrap().0;
        assert_eq!(as_jane.groups, ["dev", AUTHENTICATED_GROUP]);
        let alice = authn.authenticate(Some(&tls(None)), &headers(Some("Bearer good")), "/api").unwrap().unwrap().0;
        assert_eq!(
            (alice.name.as_str(), alice.groups.as_slice()),
            ("alice", &["ops".into(), AUTHENTICATED_GROUP.into()][..])
        );
        let refused = |auth, path| authn.authenticate(Some(&tls(None)), &headers(auth), path).unwrap_err();
        assert_eq!(refused(Some("Bearer bad"), "/api"), Unauthenticated::BadToken);
        assert_eq!(refused(Some("Bearer bad"), "/readyz"), Unauthenticated::BadToken, "bad credentials fail anywhere");
        assert_eq!(refused(None, "/api/v1/secrets"), Unauthenticated::Anonymous);
        assert_eq!(refused(None, "/readyzz"), Unauthenticated::Anonymous);
        assert_eq!(refused(Some("Basic good"), "/api"), Unauthenticated::Anonymous);
        for public in ["/readyz", "/livez", "/healthz", "/version", "/readyz/ping"] {
            assert_eq!(authn.authenticate(Some(&tls(None)), &headers(None), public), Ok(None), "{public}");
        }
        assert_eq!(authn.authenticate(None, &headers(Some("Bearer good")), "/api"), Err(Unauthenticated::NoOrigin));
        let inside = Origin::InProcess(User::new(CONTROLLER_MANAGER_USER, &[]));
        assert_eq!(
            authn.authenticate(Some(&inside), &headers(None), "/api").unwrap().unwrap().0.name,
            CONTROLLER_MANAGER_USER
        );
    }
}
