//! The Kubernetes REST API's HTTP edge: paths, query strings, content negotiation, and responses.
//!
//! Every request is first authenticated (`authenticate`, with `security::authn`): one without valid
//! credentials is refused with 401 before anything else is read. Then it is authorized (`authorize`): one its
//! user may not make is refused with 403. Then it goes through `serve`, which parses the path into a `Target`,
//! reads the options it needs, and calls the verbs (`verbs`, `collections`). Every error leaves as a `Status` object with its HTTP code
//! (`errors`). Bodies are JSON (a missing Content-Type means JSON, as the Python client sends) or, for the
//! kinds kubectl's generator commands send that way, Kubernetes protobuf; responses are JSON, or a `Table` when
//! the Accept header asks for one as kubectl does. Requests of the leader's controllers carry a `LeaderTerm`
//! extension, and their writes are fenced to that term.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::apis::catalog::{self, Backing, Resource, Subresource};
use crate::apis::openapi;
use crate::apis::patch::{self, PatchType};
use crate::apis::protobuf;
use crate::apis::selectors::{FieldSelector, LabelSelector};
use crate::apis::table::{self, IncludeObject};
use crate::apis::time;
use crate::apiserver::errors::ApiError;
use crate::apiserver::http::audit::Audit;
use crate::apiserver::http::authorize::{Checked, PolicyCache};
use crate::apiserver::http::components::{self, Prober};
use crate::apiserver::http::discovery::{self, OpenApiV2Encoding};
use crate::apiserver::http::eviction;
use crate::apiserver::http::fairness::Fairness;
use crate::apiserver::http::logs::{self, Kubelets};
use crate::apiserver::http::metrics;
use crate::apiserver::registry::allocations::ServiceRange;
use crate::apiserver::registry::apply;
use crate::apiserver::registry::collections::{self, ListOptions, WatchFormat};
use crate::apiserver::registry::objects::{Consistency, Objects};
use crate::apiserver::registry::verbs::{self, DeleteOptions, FieldValidation, Target, Verbs, WriteOptions};
use crate::apiserver::watch_cache::WatchCaches;
use crate::limits;
use crate::metrics::Points;
use crate::security::authn::{Origin, Unauthenticated, User};
use crate::security::service_accounts::{self, Claims};
use crate::security::{join, ApiSecurity};
use crate::store::Store;
use crate::telemetry;

/// The Kubernetes API of one replica.
pub struct KubeApi {
    pub(super) verbs: Verbs,
    /// The watch caches that serve this replica's watches (and the lists that allow a cached answer).
    caches: Arc<WatchCaches>,
    /// The address clients reach this replica's API at, for `/api`'s serverAddressByClientCIDRs.
    advertise: String,
    watches: AtomicUsize,
    pub(super) kubelets: Kubelets,
    prober: Prober,
    /// The leader's resource metrics (kept only while this replica leads), and how a follower reaches the leader's.
    points: Points,
    relay: metrics::Relay,
    pub(super) security: ApiSecurity,
    fairness: Fairness,
    policies: PolicyCache,
}

impl KubeApi {
    /// The API of the replica of `store`; Events live `event_ttl` after their last write; `security` says who
    /// requests come from and what is encrypted at rest; resource metrics are served from `points` while this
    /// replica leads.
    pub fn new(
        store: Store,
        advertise: String,
        service_range: ServiceRange,
        event_ttl: Duration,
        security: ApiSecurity,
        points: Points,
    ) -> Arc<KubeApi> {
        let objects = Objects::new(store, event_ttl).encrypted(security.encryption.clone());
        let caches = WatchCaches::new(objects.clone());
        let verbs = Verbs::new(objects, service_range, security.token_root_ca().is_some());
        let kubelets = Kubelets::new(security.replicas.clone());
        let prober = Prober::new(security.replicas.clone());
        let relay = metrics::Relay::new(security.replicas.clone());
        let watches = AtomicUsize::new(0);
        let (fairness, policies) = (Fairness::default(), PolicyCache::default());
        Arc::new(KubeApi {
            verbs,
            caches,
            advertise,
            watches,
            kubelets,
            prober,
            points,
            relay,
            security,
            fairness,
            policies,
        })
    }

    fn objects(&self) -> &Objects {
        &self.verbs.objects
    }

    pub(super) fn caches(&self) -> &WatchCaches {
        &self.caches
    }

    pub(super) fn fairness(&self) -> &Fairness {
        &self.fairness
    }

    pub(super) fn policies(&self) -> &PolicyCache {
        &self.policies
    }
}

/// The API's router: the join endpoints, and the Kubernetes API behind what it counts of requests
/// (`instrument`), authentication, the audit log of writes (`audit`), per-user fairness (`fairness`) and
/// authorization.
pub fn router(api: Arc<KubeApi>, audit: Audit) -> axum::Router {
    let joining = axum::Router::new()
        .route(join::CA_PATH, axum::routing::get(super::join::authority))
        .route(join::CREDENTIALS_PATH, axum::routing::post(super::join::node_credentials))
        .layer(DefaultBodyLimit::max(limits::NODE_CREDENTIALS_BODY_BYTES_MAX));
    let kubernetes = axum::Router::new()
        .route("/api/v1/namespaces/{namespace}/pods/{name}/exec", axum::routing::any(super::exec::exec))
        .route("/api/v1/namespaces/{namespace}/pods/{name}/attach", axum::routing::any(super::exec::attach))
        .fallback(serve)
        .layer(DefaultBodyLimit::max(limits::API_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(api.clone(), super::authorize::authorize))
        .layer(axum::middleware::from_fn_with_state(api.clone(), super::fairness::limit))
        .layer(axum::middleware::from_fn_with_state(audit, super::audit::record))
        .layer(axum::middleware::from_fn_with_state(api.clone(), authenticate))
        .layer(axum::middleware::from_fn(super::instrument::measure));
    joining.merge(kubernetes).with_state(api)
}

/// Refuses (401) a request whose credentials do not check out, or an anonymous one outside the public paths;
/// passes the user on as a request extension (absent for an anonymous request).
async fn authenticate(
    State(api): State<Arc<KubeApi>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = request.extensions().get::<Origin>();
    let authenticated = api.security.authenticator.authenticate(origin, request.headers(), request.uri().path());
    let checked = match authenticated {
        Ok(Some((user, Some(claims)))) => account_exists(&api, &claims).await.map(|()| Some(user)),
        Ok(found) => Ok(found.map(|(user, _)| user)),
        Err(e) => Err(e),
    };
    match checked {
        Ok(user) => {
            if let Some(user) = user {
                request.extensions_mut().insert(user);
            }
            next.run(request).await
        }
        Err(e) => {
            tracing::debug!(uri = %request.uri(), error = %e, "kubernetes api: unauthenticated request refused");
            error_response(&ApiError::Unauthorized)
        }
    }
}

/// Whether the ServiceAccount (and the pod) a token names still exist with the uids it names: as this replica
/// has them, or else as a linearizable read has them (one just created may not have reached this replica).
async fn account_exists(api: &KubeApi, claims: &Claims) -> Result<(), Unauthenticated> {
    let mut wanted = vec![("serviceaccounts", "service account", &claims.account, &claims.account_uid)];
    if let Some((pod, uid)) = &claims.pod {
        wanted.push(("pods", "pod", pod, uid));
    }
    for (plural, what, name, uid) in wanted {
        let resource = catalog::find("", "v1", plural).expect("served");
        let target =
            Target { resource, namespace: Some(claims.namespace.clone()), name: Some(name.clone()), subresource: None };
        let mut found = false;
        for consistency in [Consistency::Local, Consistency::Linearizable] {
            if let Ok(stored) = api.verbs.get(&target, consistency).await {
                if verbs::meta_str(&stored.object, "uid") == Some(uid.as_str()) {
                    found = true;
                    break;
                }
            }
        }
        if !found {
            return Err(Unauthenticated::Revoked(what));
        }
    }
    Ok(())
}

/// A request's query string.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Result<Query, ApiError> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::BadRequest(format!("the query string is not valid: {e}")))?;
        Ok(Query(pairs.0))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter, read as Go's `strconv.ParseBool` reads it.
    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(ApiError::BadRequest(format!("{name}: invalid boolean {other:?}"))),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<T>().map_err(|_| ApiError::BadRequest(format!("{name}: invalid number {v:?}"))))
            .transpose()
    }

    /// The options of a write; a write that names no field manager is recorded under its client's name, as
    /// upstream does (except server-side apply, which must name one).
    fn write_options(&self, headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
        let mut options = self.apply_options()?;
        if options.field_manager.as_deref().is_none_or(str::is_empty) {
            let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
            let name: String = agent.split('/').next().unwrap_or("unknown").chars().take(128).collect();
            options.field_manager = Some(if name.is_empty() { "unknown".into() } else { name });
        }
        Ok(options)
    }

    fn apply_options(&self) -> Result<WriteOptions, ApiError> {
        let field_validation = match self.get("fieldValidation") {
            None | Some("") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "fieldValidation: unsupported value {other:?} (use Strict, Warn or Ignore)"
                )))
            }
        };
        let dry_run = match self.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => return Err(ApiError::BadRequest(format!("dryRun: unsupported value {other:?}"))),
        };
        Ok(WriteOptions {
            dry_run,
            field_validation,
            field_manager: self.get("fieldManager").map(String::from),
            force: self.flag("force")?,
        })
    }

    fn list_options(&self, resource: &Resource) -> Result<ListOptions, ApiError> {
        let label_selector = match self.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?),
            None => None,
        };
        let field_selector = match self.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                FieldSelector::parse_for(resource.group, resource.plural, s)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            ),
            None => None,
        };
        let limit: Option<i64> = self.number("limit")?;
        Ok(ListOptions {
            label_selector,
            field_selector,
            limit: limit.unwrap_or(0).max(0) as usize,
            continue_token: self.get("continue").filter(|c| !c.is_empty()).map(String::from),
            resource_version: self.get("resourceVersion").map(String::from),
            resource_version_match: self.get("resourceVersionMatch").filter(|m| !m.is_empty()).map(String::from),
            timeout_seconds: self.number("timeoutSeconds")?,
            allow_bookmarks: self.flag("allowWatchBookmarks")?,
            send_initial_events: self.flag("sendInitialEvents")?,
        })
    }

    fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        let options = DeleteOptions {
            propagation: self.get("propagationPolicy").filter(|p| !p.is_empty()).map(String::from),
            grace_period_seconds: self.number("gracePeriodSeconds")?,
            dry_run: self.get("dryRun") == Some("All"),
            ..DeleteOptions::default()
        };
        options.check()?;
        Ok(options)
    }
}

fn json_response(code: StatusCode, body: &Value, content_type: &'static str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response()
}

fn json_bytes(body: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body, "application/json")
}

pub(super) fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, &e.status(), "application/json");
    if matches!(e, ApiError::Unavailable(_) | ApiError::TooManyRequests(_)) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

fn accepts_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.contains("as=Table") && t.contains("g=meta.k8s.io") && t.contains("v=v1"))
}

/// Decodes a request body: JSON (also when no Content-Type is given), or Kubernetes protobuf for the kinds
/// kubectl's generator commands send that way.
fn json_body(headers: &HeaderMap, body: &Bytes, patch: bool) -> Result<Value, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == protobuf::PROTOBUF_CONTENT_TYPE && !patch {
        return protobuf::decode_object(body).map_err(|e| match e {
            protobuf::ProtobufError::UnsupportedKind { .. } | protobuf::ProtobufError::UnsupportedField { .. } => {
                ApiError::UnsupportedMediaType(e.to_string())
            }
            other => ApiError::BadRequest(format!("the protobuf body is not valid: {other}")),
        });
    }
    let json_like = media.is_empty()
        || media == "application/json"
        || media == "*/*"
        || (patch && PatchType::from_content_type(media).is_some());
    if !json_like {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, \
             application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, \
             application/strategic-merge-patch+json, application/apply-patch+yaml (got {media:?})"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

/// Marks a request of the leader's controllers (inserted by the in-process client, never by HTTP): its writes
/// are fenced to this leadership term.
#[derive(Clone, Copy, Debug)]
pub struct LeaderTerm(pub u64);

async fn serve(
    State(api): State<Arc<KubeApi>>,
    extensions: axum::http::Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verbs = match extensions.get::<LeaderTerm>() {
        Some(LeaderTerm(term)) => api.verbs.fenced(*term),
        None => api.verbs.clone(),
    };
    let verbs = match extensions.get::<Checked>() {
        Some(Checked(check)) => verbs.checked(check.clone()),
        None => verbs,
    };
    let user = extensions.get::<User>();
    match route(&api, &verbs, user, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            if e.code() >= 500 {
                tracing::warn!(%method, %uri, error = %e, "kubernetes api request failed");
            }
            error_response(&e)
        }
    }
}

async fn route(
    api: &Arc<KubeApi>,
    verbs: &Verbs,
    user: Option<&User>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Resource paths keep their empty segments: `configmaps/` names an empty name, never the collection.
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let raw: Vec<&str> = path.split('/').collect();
    match raw.as_slice() {
        ["api", version, rest @ ..] if !version.is_empty() && !rest.is_empty() && rest != [""] => {
            return resource_request(api, verbs, user, "", version, rest, method, uri, headers, body).await;
        }
        ["apis", group, version, rest @ ..]
            if !group.is_empty() && !version.is_empty() && !rest.is_empty() && rest != [""] =>
        {
            return resource_request(api, verbs, user, group, version, rest, method, uri, headers, body).await;
        }
        _ => {}
    }
    let segments: Vec<&str> = raw.iter().copied().filter(|s| !s.is_empty()).collect();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let get = method == Method::GET;
    match segments.as_slice() {
        ["version"] if get => Ok(ok(&discovery::version())),
        [endpoint @ ("healthz" | "livez")] if get => health(endpoint, vec![("ping", Ok(()))], verbose(uri)?),
        ["readyz"] if get => health("readyz", readiness(api).await, verbose(uri)?),
        ["metrics"] if get => Ok(metrics(api.objects().store())),
        ["api"] if get && discovery::wants_aggregated(accept) => {
            Ok(json_response(StatusCode::OK, &discovery::aggregated(true), discovery::AGGREGATED_CONTENT_TYPE))
        }
        ["apis"] if get && discovery::wants_aggregated(accept) => {
            Ok(json_response(StatusCode::OK, &discovery::aggregated(false), discovery::AGGREGATED_CONTENT_TYPE))
        }
        ["api"] if get => Ok(ok(&discovery::core_versions(&api.advertise))),
        ["apis"] if get => Ok(ok(&discovery::group_list())),
        ["api", version] if get => discovery::resource_list("", version).map(|v| ok(&v)).ok_or_else(|| not_found(uri)),
        ["apis", group, version] if get => {
            discovery::resource_list(group, version).map(|v| ok(&v)).ok_or_else(|| not_found(uri))
        }
        ["openapi", "v2"] if get => openapi_v2(accept),
        ["openapi", "v3"] if get => Ok(ok(&openapi::v3_root())),
        ["openapi", "v3", rest @ ..] if get => {
            openapi::v3_document(&rest.join("/")).map(|v| ok(&v)).ok_or_else(|| not_found(uri))
        }
        _ => Err(not_found(uri)),
    }
}

/// `GET /openapi/v2` in the encoding the Accept header asks for: JSON, or the protobuf client-go reads.
fn openapi_v2(accept: &str) -> Result<Response, ApiError> {
    let (body, content_type) = match discovery::openapi_v2_encoding(accept) {
        Some(OpenApiV2Encoding::Json) => (openapi::v2_json(), "application/json"),
        Some(OpenApiV2Encoding::Protobuf) => {
            let body = openapi::v2_protobuf().map_err(|e| ApiError::Internal(e.to_string()))?;
            (body, openapi::V2_PROTOBUF_CONTENT_TYPE)
        }
        None => {
            return Err(ApiError::NotAcceptable(format!(
                "only the following media types are accepted: application/json, {}",
                openapi::V2_PROTOBUF_CONTENT_TYPE
            )))
        }
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::VARY, HeaderValue::from_static("Accept")),
    ];
    Ok((StatusCode::OK, headers, Body::from(Bytes::from_static(body))).into_response())
}

/// `/metrics`: the process's metrics (`telemetry`), this replica's state read as it is now.
fn metrics(store: &Store) -> Response {
    store.record_telemetry();
    let text = telemetry::get().encode();
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(telemetry::CONTENT_TYPE))], text).into_response()
}

/// What `/readyz` checks: the store is healthy (a leader is known and, on the leader, every follower is
/// replicating) and the cluster's bootstrap (the `default` namespace) is visible here.
async fn readiness(api: &KubeApi) -> Vec<(&'static str, Result<(), String>)> {
    let problems = api.objects().store().health();
    let store = if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) };
    let namespaces = catalog::find("", "v1", "namespaces").expect("namespaces are served");
    let bootstrap = match api.objects().get(&namespaces.key(None, "default"), Consistency::Local).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the default namespace does not exist yet".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    vec![("ping", Ok(())), ("store", store), ("bootstrap-default-namespace", bootstrap)]
}

/// A health endpoint's answer: `ok`, or with `?verbose` each check on a line as upstream lists them
/// (`[+]ping ok`, `[-]store failed: ...`). A failed check is 503, with a `Status` unless verbose.
fn health(
    endpoint: &str,
    checks: Vec<(&'static str, Result<(), String>)>,
    verbose: bool,
) -> Result<Response, ApiError> {
    let failed: Vec<String> = checks.iter().filter_map(|(_, result)| result.as_ref().err().cloned()).collect();
    if !verbose {
        return match failed.is_empty() {
            true => Ok((StatusCode::OK, "ok").into_response()),
            false => Err(ApiError::Unavailable(failed.join("; "))),
        };
    }
    let mut text: String = checks
        .iter()
        .map(|(name, result)| match result {
            Ok(()) => format!("[+]{name} ok\n"),
            Err(reason) => format!("[-]{name} failed: {reason}\n"),
        })
        .collect();
    let (code, outcome) =
        if failed.is_empty() { (StatusCode::OK, "passed") } else { (StatusCode::SERVICE_UNAVAILABLE, "failed") };
    text.push_str(&format!("{endpoint} check {outcome}\n"));
    Ok((code, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], text).into_response())
}

/// Whether a health endpoint was asked for its checks (`?verbose`, with or without a value).
fn verbose(uri: &Uri) -> Result<bool, ApiError> {
    Ok(Query::parse(uri)?.get("verbose").is_some())
}

fn not_found(uri: &Uri) -> ApiError {
    ApiError::PathNotFound(format!("the server could not find the requested resource ({})", uri.path()))
}

/// Parses `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`. Only a path that ends at the plural is a
/// collection: an empty name (`configmaps/`) is refused as upstream refuses an item request without a name,
/// and an empty namespace or subresource names nothing.
fn target(group: &str, version: &str, rest: &[&str], uri: &Uri) -> Result<Target, ApiError> {
    if let ["namespaces", "", plural, ..] = rest {
        if catalog::find(group, version, plural).is_some_and(|r| r.namespaced) {
            return Err(not_found(uri));
        }
    }
    let namespaced_path = match rest {
        ["namespaces", ns, plural, tail @ ..] => {
            catalog::find(group, version, plural).filter(|r| r.namespaced).map(|r| (r, Some(*ns), tail))
        }
        _ => None,
    };
    let (resource, namespace, tail) = match namespaced_path {
        Some(found) => found,
        None => match rest {
            [plural, tail @ ..] => {
                let r = catalog::find(group, version, plural).ok_or_else(|| not_found(uri))?;
                (r, None, tail)
            }
            [] => return Err(not_found(uri)),
        },
    };
    if tail.first() == Some(&"") {
        return Err(ApiError::BadRequest("name must be provided".into()));
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, sub] => {
            let s = resource.subresources.iter().find(|s| s.name() == *sub).ok_or_else(|| not_found(uri))?;
            (Some(*name), Some(*s))
        }
        _ => return Err(not_found(uri)),
    };
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found(uri));
    }
    Ok(Target { resource, namespace: namespace.map(String::from), name: name.map(String::from), subresource })
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    api: &Arc<KubeApi>,
    verbs: &Verbs,
    user: Option<&User>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = target(group, version, rest, uri)?;
    // The cluster-wide path of a namespaced kind only lists and watches across namespaces, as upstream
    // serves it: an object there would belong to no namespace.
    if target.resource.namespaced && target.namespace.is_none() && *method != Method::GET {
        return Err(method_not_allowed(method, uri));
    }
    let query = Query::parse(uri)?;
    let table = match accepts_table(headers) {
        true => Some(IncludeObject::parse(query.get("includeObject")).map_err(ApiError::BadRequest)?),
        false => None,
    };
    let resource = target.resource;
    let now = jiff::Timestamp::now().as_second();
    match (resource.backing, method.clone(), target.name.is_some()) {
        (Backing::Stored, _, _) => {}
        (Backing::PodBinding, Method::POST, false) => {
            let binding = json_body(headers, &body, false)?;
            let name = binding["metadata"]["name"].as_str().filter(|n| !n.is_empty()).map(String::from);
            let Some(name) = name else {
                return Err(ApiError::BadRequest("a Binding needs metadata.name, the name of the pod to bind".into()));
            };
            let pods = catalog::find("", "v1", "pods").expect("pods are served");
            let pod = Target { resource: pods, name: Some(name), subresource: None, ..target };
            return bind(verbs, &pod, &binding, &query.write_options(headers)?).await;
        }
        (Backing::ComponentStatuses, Method::GET, _) if !query.flag("watch")? => {
            let items = components::statuses(api.objects().store(), &api.prober).await;
            let listed = match &target.name {
                Some(name) => {
                    let item = items.into_iter().find(|c| verbs::meta_str(c, "name") == Some(name.as_str()));
                    vec![item.ok_or_else(|| ApiError::NotFound { resource, name: name.clone() })?]
                }
                None => {
                    let options = query.list_options(resource)?;
                    let selected = |c: &Value| {
                        options.label_selector.as_ref().is_none_or(|s| s.matches_object(c))
                            && options.field_selector.as_ref().is_none_or(|s| s.matches_object("", resource.plural, c))
                    };
                    items.into_iter().filter(selected).collect()
                }
            };
            let response = match (table, &target.name) {
                (Some(include), _) => ok(&table::table(resource, &listed, now, true, include)),
                (None, Some(_)) => ok(&listed[0]),
                (None, None) => ok(&json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {},
                    "items": listed})),
            };
            return Ok(with_warnings(response, &[components::DEPRECATION_WARNING.to_string()]));
        }
        (Backing::Metrics, Method::GET, _) if !query.flag("watch")? => {
            let measured = catalog::find("", "v1", resource.plural).expect("metrics measure served kinds");
            let sources = metrics::Sources { verbs, caches: &api.caches, points: &api.points, relay: &api.relay };
            let listed = match metrics::read(&sources, &target, query.list_options(measured)?, uri, headers).await? {
                metrics::Answer::Relayed(response) => return Ok(response),
                metrics::Answer::Objects(listed) => listed,
            };
            return Ok(match (table, &target.name) {
                (Some(include), _) => ok(&table::table(resource, &listed, now, true, include)),
                (None, Some(_)) => ok(&listed[0]),
                (None, None) => ok(&json!({"kind": format!("{}List", resource.kind),
                    "apiVersion": resource.api_version(), "metadata": {}, "items": listed})),
            });
        }
        (Backing::Review, Method::POST, false) => {
            let user = user.ok_or(ApiError::Unauthorized)?;
            let body = json_body(headers, &body, false)?;
            let namespace = target.namespace.as_deref();
            let answer = super::authorize::review(api, user, resource, namespace, body).await?;
            return Ok(json_response(StatusCode::CREATED, &answer, "application/json"));
        }
        (Backing::PodBinding | Backing::ComponentStatuses | Backing::Metrics | Backing::Review, _, _) => {
            return Err(method_not_allowed(method, uri))
        }
    }
    match (method.clone(), target.name.is_some(), target.subresource) {
        (Method::GET, false, None) if query.flag("watch")? => watch(api, target, &query, table),
        (Method::GET, false, None) => {
            let listed = collections::list_cached(&api.caches, &target, &query.list_options(resource)?).await?;
            let (response, skipped) = match table {
                Some(include) => {
                    let (t, skipped) = collections::list_table(resource, listed, now, include);
                    (ok(&t), skipped)
                }
                None => {
                    let (bytes, skipped) = collections::list_object(resource, listed)?;
                    (json_bytes(bytes), skipped)
                }
            };
            Ok(with_warnings(response, &collections::skipped_warnings(&skipped)))
        }
        (Method::GET, true, None | Some(Subresource::Status)) => {
            let consistency = match query.get("resourceVersion") {
                Some(rv) if !rv.is_empty() => Consistency::Local,
                _ => Consistency::Linearizable,
            };
            let stored = verbs.get(&target, consistency).await?;
            if let Some(include) = table {
                let mut t = table::table(resource, &[stored.object], now, true, include);
                t["metadata"] = json!({"resourceVersion": stored.revision.to_string()});
                return Ok(ok(&t));
            }
            Ok(ok(&stored.object))
        }
        (Method::GET, true, Some(Subresource::Scale)) => {
            let stored = verbs.get(&target, Consistency::Linearizable).await?;
            Ok(ok(&scale_of(resource, &stored.object)))
        }
        (Method::GET, true, Some(Subresource::Log)) => logs::log(&api.kubelets, verbs, &target, &query.0).await,
        (Method::POST, true, Some(Subresource::Binding)) => {
            let binding = json_body(headers, &body, false)?;
            if binding["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty() && n != target.name()) {
                return Err(ApiError::BadRequest("name in URL does not match name in Binding object".into()));
            }
            let pod = Target { subresource: None, ..target.clone() };
            bind(verbs, &pod, &binding, &query.write_options(headers)?).await
        }
        (Method::POST, true, Some(Subresource::Eviction)) => {
            let request = json_body(headers, &body, false)?;
            let pod = Target { subresource: None, ..target.clone() };
            let status = eviction::evict(verbs, api.objects(), &pod, &request).await?;
            Ok(json_response(StatusCode::CREATED, &status, "application/json"))
        }
        (Method::POST, true, Some(Subresource::Token)) => {
            let request = json_body(headers, &body, false)?;
            let account = Target { subresource: None, ..target.clone() };
            let answer = token_request(api, verbs, &account, &request).await?;
            Ok(json_response(StatusCode::CREATED, &answer, "application/json"))
        }
        (Method::POST, false, None) => {
            let options = query.write_options(headers)?;
            let written = verbs.create(&target, json_body(headers, &body, false)?, &options).await?;
            let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(json_response(code, &written.object, "application/json"), &written.warnings))
        }
        (Method::PUT, true, None | Some(Subresource::Status) | Some(Subresource::Finalize)) => {
            let options = query.write_options(headers)?;
            let new = json_body(headers, &body, false)?;
            let written = verbs.update_with(&target, &options, |_| Ok(new.clone())).await?;
            Ok(with_warnings(ok(&written.object), &written.warnings))
        }
        (Method::PUT | Method::PATCH, true, Some(Subresource::Scale)) => {
            scale(verbs, &target, method, &query, headers, &body).await
        }
        (Method::PATCH, true, None | Some(Subresource::Status)) => patch(verbs, &target, &query, headers, &body).await,
        (Method::DELETE, true, None) => {
            let mut options = query.delete_options()?;
            if !body.is_empty() {
                options.merge_body(&json_body(headers, &body, false)?)?;
            }
            let deleted = verbs.delete(&target, &options).await?;
            Ok(ok(&deleted))
        }
        (Method::DELETE, false, None) if !resource.delete_collection => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({} cannot be deleted as a collection)",
            resource.qualified_plural()
        ))),
        (Method::DELETE, false, None) => {
            let mut options = query.delete_options()?;
            if !body.is_empty() {
                options.merge_body(&json_body(headers, &body, false)?)?;
            }
            let listed = collections::list(api.objects(), &target, &query.list_options(resource)?).await?;
            let mut deleted = Vec::new();
            let mut skipped = listed.skipped;
            for raw in listed.items {
                let stored = match raw.decode() {
                    Ok(stored) => stored,
                    Err(e) => {
                        collections::skip_corrupt(&raw.key, &e, &mut skipped);
                        continue;
                    }
                };
                let one = Target { name: verbs::meta_str(&stored.object, "name").map(String::from), ..target.clone() };
                match verbs.delete(&one, &options).await {
                    Ok(obj) => deleted.push(obj),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(),
                "metadata": {}, "items": deleted});
            Ok(with_warnings(ok(&list), &collections::skipped_warnings(&skipped)))
        }
        _ => Err(method_not_allowed(method, uri)),
    }
}

/// Binds `pod` to the node a Binding names (`pods/{name}/binding`, or `bindings` naming the pod), as
/// upstream's binding storage does: the Binding's `metadata.uid` and `metadata.resourceVersion`, when given,
/// must be the pod's (409 otherwise); a pod already bound, being deleted or gated is a conflict; the node name
/// and the PodScheduled=True condition are written together. Answers a `Status` of success, as upstream does.
async fn bind(verbs: &Verbs, pod: &Target, binding: &Value, options: &WriteOptions) -> Result<Response, ApiError> {
    if let Some(kind) = binding["kind"].as_str().filter(|k| *k != "Binding") {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (Binding)"
        )));
    }
    let namespace = binding["metadata"]["namespace"].as_str().filter(|ns| !ns.is_empty());
    if namespace.is_some_and(|ns| Some(ns) != pod.namespace.as_deref()) {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    if let Some(kind) = binding["target"]["kind"].as_str().filter(|k| !k.is_empty() && *k != "Node") {
        return Err(ApiError::BadRequest(format!(
            "target.kind: Unsupported value: {kind:?}: supported values: \"Node\", \"<empty>\""
        )));
    }
    let node = binding["target"]["name"].as_str().filter(|n| !n.is_empty()).map(String::from);
    let Some(node) = node else {
        return Err(ApiError::BadRequest("a Binding needs target.name, the node to bind to".into()));
    };
    let given = |field: &str| binding["metadata"][field].as_str().filter(|v| !v.is_empty()).map(String::from);
    let (uid, resource_version) = (given("uid"), given("resourceVersion"));
    let name = pod.name().to_string();
    let key = pod.key(&name);
    let conflict = |message: String| ApiError::Conflict { resource: pod.resource, name: name.clone(), message };
    // Upstream's storage reports a failed precondition as an invalid object, which the API answers as 409.
    let precondition_failed = |message: String| {
        conflict(format!(
            "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: {message}"
        ))
    };
    let now = time::now();
    let bound = Target { subresource: Some(Subresource::Binding), ..pod.clone() };
    verbs
        .update_with(&bound, options, |current| {
            let have = |field: &str| verbs::meta_str(current, field).unwrap_or_default().to_string();
            if let Some(uid) = uid.as_ref().filter(|u| **u != have("uid")) {
                return Err(precondition_failed(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    have("uid")
                )));
            }
            if let Some(rv) = resource_version.as_ref().filter(|rv| **rv != have("resourceVersion")) {
                return Err(precondition_failed(format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    have("resourceVersion")
                )));
            }
            if !current["metadata"]["deletionTimestamp"].is_null() {
                return Err(conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(bound) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(conflict(format!("pod {name} is already assigned to node {bound:?}")));
            }
            if current["spec"]["schedulingGates"].as_array().is_some_and(|g| !g.is_empty()) {
                return Err(conflict(format!("pod {name} has non-empty .spec.schedulingGates")));
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            set_scheduled(&mut next, &now);
            Ok(next)
        })
        .await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(StatusCode::CREATED, &status, "application/json"))
}

/// Sets PodScheduled=True as upstream's `UpdatePodCondition` does: the condition replaced whole (no reason or
/// message), its lastTransitionTime `now` unless it was True already.
fn set_scheduled(pod: &mut Value, now: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"].as_array_mut().expect("made an array above");
    let existing = conditions.iter().position(|c| c["type"] == "PodScheduled");
    let transition = match existing.map(|i| &conditions[i]) {
        Some(c) if c["status"] == "True" && c["lastTransitionTime"].is_string() => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": transition});
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

fn method_not_allowed(method: &Method, uri: &Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "the server does not allow this method on the requested resource ({method} {})",
        uri.path()
    ))
}

fn watch(
    api: &Arc<KubeApi>,
    target: Target,
    query: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let opts = query.list_options(target.resource)?;
    let watching = api.watches.fetch_add(1, Ordering::SeqCst);
    if watching >= limits::API_WATCHES_MAX {
        api.watches.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::TooManyRequests(format!("this replica already serves {watching} watches")));
    }
    let format = table.map_or(WatchFormat::Objects, WatchFormat::Table);
    let events = collections::watch(api.caches.clone(), target, opts, format);
    let api = api.clone();
    let guard = WatchCount(api);
    let stream = futures::StreamExt::map(events, move |item| {
        let _held = &guard;
        item
    });
    let content_type =
        if table.is_some() { "application/json;as=Table;v=v1;g=meta.k8s.io" } else { "application/json" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], Body::from_stream(stream))
        .into_response())
}

/// Counts a watch as open until its response body is dropped.
struct WatchCount(Arc<KubeApi>);

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The answer to a TokenRequest for the ServiceAccount `account` (`serviceaccounts/NAME/token`): a token
/// signed with the cluster authority's key for the audiences asked (the API's when none), bound to a pod when
/// asked (it stops authenticating once that pod is gone), valid for `expirationSeconds` within the limits. The
/// request's write check sees the pod the token is bound to (null when none).
async fn token_request(api: &KubeApi, verbs: &Verbs, account: &Target, request: &Value) -> Result<Value, ApiError> {
    let signer = api.security.tokens.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this replica cannot sign service account tokens: it was started without an ECDSA P-256 cluster \
             signing key (--cluster-signing-key-file)"
                .into(),
        )
    })?;
    let account_target = account;
    let account = verbs.get(account_target, Consistency::Linearizable).await?.object;
    let namespace = verbs::meta_str(&account, "namespace").unwrap_or_default().to_owned();
    let spec = &request["spec"];
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(limits::SERVICE_ACCOUNT_TOKEN_SECS_DEFAULT)
        .clamp(limits::SERVICE_ACCOUNT_TOKEN_SECS_MIN, limits::SERVICE_ACCOUNT_TOKEN_SECS_MAX);
    let mut audiences: Vec<String> =
        spec["audiences"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(str::to_owned).collect();
    if audiences.is_empty() {
        audiences.push(service_accounts::API_AUDIENCE.to_owned());
    }
    let bound = &spec["boundObjectRef"];
    let mut bound_pod = Value::Null;
    let pod = match bound["kind"].as_str().unwrap_or_default() {
        "" => None,
        "Pod" => {
            let name = bound["name"].as_str().filter(|n| !n.is_empty());
            let name = name.ok_or_else(|| ApiError::BadRequest("boundObjectRef.name is required".into()))?;
            let pods = catalog::find("", "v1", "pods").expect("pods are served");
            let target = Target {
                resource: pods,
                namespace: Some(namespace.clone()),
                name: Some(name.into()),
                subresource: None,
            };
            let pod = verbs.get(&target, Consistency::Linearizable).await?.object;
            let uid = verbs::meta_str(&pod, "uid").unwrap_or_default().to_owned();
            if bound["uid"].as_str().is_some_and(|given| !given.is_empty() && given != uid) {
                return Err(ApiError::Conflict {
                    resource: pods,
                    name: name.into(),
                    message: format!(
                        "the UID in the bound object reference ({}) does not match the pod's",
                        bound["uid"]
                    ),
                });
            }
            bound_pod = pod;
            Some((name.to_owned(), uid))
        }
        other => return Err(ApiError::BadRequest(format!("a token can be bound to a Pod only, not to a {other}"))),
    };
    // What the requester may ask for (NodeRestriction: a node, only tokens bound to its own pods).
    verbs.check(account_target, &bound_pod)?;
    let now = jiff::Timestamp::now().as_second();
    let claims = service_accounts::Claims {
        namespace: namespace.clone(),
        account: verbs::meta_str(&account, "name").unwrap_or_default().to_owned(),
        account_uid: verbs::meta_str(&account, "uid").unwrap_or_default().to_owned(),
        pod,
        audiences: audiences.clone(),
        issued_at: now,
        expires_at: now + seconds,
    };
    let mut answered = spec.clone();
    if !answered.is_object() {
        answered = json!({});
    }
    answered["expirationSeconds"] = json!(seconds);
    answered["audiences"] = json!(audiences);
    Ok(json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": claims.account, "namespace": namespace, "creationTimestamp": null},
        "spec": answered,
        "status": {"token": signer.sign(&claims), "expirationTimestamp": time::from_now(seconds)},
    }))
}

/// The `autoscaling/v1 Scale` view of a scalable object.
fn scale_of(resource: &Resource, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = (resource.scale_selector)(obj["spec"].get("selector"));
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

async fn scale(
    verbs: &Verbs,
    target: &Target,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let options = query.write_options(headers)?;
    let patch_type = if *method == Method::PATCH {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        Some(PatchType::from_content_type(ct).ok_or_else(|| unsupported_patch(ct))?)
    } else {
        None
    };
    let input = json_body(headers, body, true)?;
    let main = Target { subresource: None, ..target.clone() };
    let written = verbs
        .update_with(&main, &options, |current| {
            let view = scale_of(target.resource, current);
            let new_scale = match patch_type {
                None => input.clone(),
                Some(PatchType::Apply) | Some(PatchType::Strategic) | Some(PatchType::Merge) => {
                    let mut doc = view.clone();
                    json_patch::merge(&mut doc, &input);
                    doc
                }
                Some(PatchType::Json) => patch::apply(target.resource, PatchType::Json, &view, &input)
                    .map_err(|e| ApiError::patch(target.resource, target.name(), e))?,
            };
            let replicas = new_scale["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::BadRequest("the Scale has no spec.replicas".into()))?;
            let mut next = current.clone();
            next["spec"]["replicas"] = json!(replicas);
            match new_scale["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty()) {
                Some(rv) if patch_type.is_none() => next["metadata"]["resourceVersion"] = json!(rv),
                _ => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                }
            }
            Ok(next)
        })
        .await?;
    Ok(ok(&scale_of(target.resource, &written.object)))
}

fn unsupported_patch(content_type: &str) -> ApiError {
    ApiError::UnsupportedMediaType(format!(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
         application/strategic-merge-patch+json (got {content_type:?})"
    ))
}

async fn patch(
    verbs: &Verbs,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let patch_type = PatchType::from_content_type(ct).ok_or_else(|| unsupported_patch(ct))?;
    let input = json_body(headers, body, true)?;
    if patch_type == PatchType::Apply {
        let options = query.apply_options()?;
        return apply::server_side_apply(verbs, target, &options, input).await.map(|written| {
            let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            with_warnings(json_response(code, &written.object, "application/json"), &written.warnings)
        });
    }
    let options = query.write_options(headers)?;
    let resource = target.resource;
    let written = verbs
        .update_with(target, &options, |current| {
            let mut next = patch::apply(resource, patch_type, current, &input)
                .map_err(|e| ApiError::patch(resource, target.name(), e))?;
            // Without a resourceVersion in the patch itself, a patch applies to whatever is current.
            let patched_rv = next["metadata"]["resourceVersion"].clone();
            if patched_rv == current["metadata"]["resourceVersion"] {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
            }
            Ok(next)
        })
        .await?;
    Ok(with_warnings(ok(&written.object), &written.warnings))
}
