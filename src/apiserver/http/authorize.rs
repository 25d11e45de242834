//! Authorization of every Kubernetes API request, after authentication, as kube-apiserver's chain decides
//! with `--authorization-mode=Node,RBAC`: members of `system:masters` may do anything; a node's own
//! credentials are judged by the node authorizer first; everything else by RBAC over the roles and bindings
//! in the store. A refused request is 403 before anything is read or written.
//!
//! Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` headers, as `kubectl --as` sends
//! them) is decided here too: the requesting user must be allowed `impersonate` on each user, group,
//! service account and uid named, and the request then goes on as the impersonated user.
//!
//! What only the stored object tells is checked as it is written (`WriteCheck`, passed to the verbs as a
//! request extension): a node creates only its own Node and Lease, and no one grants through RBAC what they
//! do not hold themselves (unless allowed `escalate` on roles or `bind` on the role a binding names).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::rest::{error_response, KubeApi};
use crate::apis::catalog::{self, Resource};
use crate::apis::selectors::FieldSelector;
use crate::apis::validation::Cause;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::collections::{self, ListOptions};
use crate::apiserver::registry::objects::Consistency;
use crate::apiserver::registry::verbs::{Target, WriteCheck};
use crate::security::authn::{User, AUTHENTICATED_GROUP, MASTERS_GROUP};
use crate::security::node_authorizer::{self, Decision, Facts, Needs};
use crate::security::rbac::{self, Attributes, Policy, ResourceAttributes};

/// The write check of an authorized request, for the verbs (a request extension).
#[derive(Clone)]
pub struct Checked(pub WriteCheck);

/// Refuses (403) a request its user may not make; passes an allowed one on, as the impersonated user if it
/// impersonates one, with the check of what it writes.
pub(super) async fn authorize(
    State(api): State<Arc<KubeApi>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // No user: an anonymous request, which authentication let through only to the public paths.
    let Some(user) = request.extensions().get::<User>().cloned() else { return next.run(request).await };
    let user = match impersonated(&api, &user, request.headers()).await {
        Ok(Some(as_user)) => {
            request.extensions_mut().insert(as_user.clone());
            as_user
        }
        Ok(None) => user,
        Err(e) => return error_response(&e),
    };
    let attributes = super::instrument::asked(&request).into_owned();
    match decide(&api, &user, &attributes).await {
        Ok(Allowed { check, .. }) => {
            if let Some(check) = check {
                request.extensions_mut().insert(Checked(check));
            }
            next.run(request).await
        }
        Err(e) => {
            tracing::debug!(user = %user.name, ?attributes, error = %e, "kubernetes api: request refused");
            error_response(&e)
        }
    }
}

/// What a request asks to do, read from its method and path as upstream's RequestInfo reads them.
pub fn attributes(method: &Method, uri: &Uri) -> Attributes {
    let path = uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] if !version.is_empty() && !rest.is_empty() && rest != [""] => ("", rest),
        ["apis", group, version, rest @ ..]
            if !group.is_empty() && !version.is_empty() && !rest.is_empty() && rest != [""] =>
        {
            (*group, rest)
        }
        _ => {
            let verb = if *method == Method::HEAD { "get".to_owned() } else { method.as_str().to_ascii_lowercase() };
            return Attributes::NonResource { verb, path: path.to_owned() };
        }
    };
    // `namespaces/<ns>/<resource>/...` is in a namespace; `namespaces/<ns>[/status|/finalize]` is the
    // namespace itself, which is in its own namespace.
    let (namespace, parts): (&str, Vec<&str>) = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] => (ns, vec!["namespaces", ns, sub]),
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns, tail.to_vec()),
        ["namespaces", ns] => (ns, vec!["namespaces", ns]),
        _ => ("", rest.to_vec()),
    };
    let part = |i: usize| parts.get(i).copied().unwrap_or_default().to_owned();
    let (resource, name, subresource) = (part(0), part(1), part(2));
    let watch = uri.query().is_some_and(|q| {
        q.split('&').any(|pair| matches!(pair, "watch=true" | "watch=1" | "watch=t" | "watch=True" | "watch=TRUE"))
    });
    let streaming = matches!(subresource.as_str(), "exec" | "attach" | "portforward");
    let verb = match *method {
        Method::GET | Method::HEAD if streaming => "create",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    Attributes::Resource(ResourceAttributes {
        verb: verb.to_owned(),
        group: group.to_owned(),
        resource,
        subresource,
        namespace: namespace.to_owned(),
        name,
    })
}

/// Why a request is allowed, and the check of what it writes.
struct Allowed {
    reason: String,
    check: Option<WriteCheck>,
}

/// Whether `user` may do what `attributes` ask: why, and the check of what it writes, when it may; a 403
/// when it may not.
async fn decide(api: &KubeApi, user: &User, attributes: &Attributes) -> Result<Allowed, ApiError> {
    if user.in_group(MASTERS_GROUP) {
        return Ok(Allowed { reason: format!("a member of {MASTERS_GROUP} may do anything"), check: None });
    }
    if let Some(node) = user.node_name() {
        let facts = node_facts(api, node, attributes, false).await?;
        let mut decision = node_authorizer::decide(node, attributes, &facts);
        // This replica may not have seen the pod (or its binding) the node saw elsewhere: ask the log itself
        // before refusing.
        if matches!(decision, Decision::Deny(_)) && node_authorizer::needs(attributes) != Needs::Nothing {
            let facts = node_facts(api, node, attributes, true).await?;
            decision = node_authorizer::decide(node, attributes, &facts);
        }
        match decision {
            Decision::Allow => {
                let reason = "allowed by the node authorizer".to_owned();
                return Ok(Allowed { reason, check: node_check(user, node, attributes) });
            }
            Decision::Deny(reason) => return Err(denied(attributes, user, Some(&reason))),
            Decision::NoOpinion => {}
        }
    }
    let policy = policy(api).await?;
    let Some(binding) = policy.allows(user, attributes) else { return Err(denied(attributes, user, None)) };
    Ok(Allowed { reason: format!("RBAC: allowed by {binding}"), check: escalation_check(policy, user, attributes) })
}

/// The 403 of a refused request.
fn denied(attributes: &Attributes, user: &User, reason: Option<&str>) -> ApiError {
    let mut message = attributes.refusal(user);
    if let Some(reason) = reason {
        message.push_str(": ");
        message.push_str(reason);
    }
    match attributes {
        Attributes::Resource(r) => {
            ApiError::Denied { group: r.group.clone(), resource: r.resource.clone(), name: r.name.clone(), message }
        }
        Attributes::NonResource { .. } => {
            ApiError::Denied { group: String::new(), resource: String::new(), name: String::new(), message }
        }
    }
}

/// What the node authorizer needs to know of stored objects: as this replica has them, or, when `fresh`, as
/// a linearizable read has them.
async fn node_facts(api: &KubeApi, node: &str, attributes: &Attributes, fresh: bool) -> Result<Facts, ApiError> {
    let pods = catalog::find("", "v1", "pods").expect("pods are served");
    match node_authorizer::needs(attributes) {
        Needs::Nothing => Ok(Facts::default()),
        Needs::PodNode { namespace, name } => {
            let target = Target { resource: pods, namespace: Some(namespace), name: Some(name), subresource: None };
            let consistency = if fresh { Consistency::Linearizable } else { Consistency::Local };
            let pod_node = match api.verbs.get(&target, consistency).await {
                Ok(stored) => stored.object["spec"]["nodeName"].as_str().map(str::to_owned),
                Err(ApiError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            Ok(Facts { pod_node, pods: Vec::new() })
        }
        Needs::PodsOnNode { namespace } => {
            let selector = FieldSelector::parse_for("", "pods", &format!("spec.nodeName={node}"))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            // A list without a resourceVersion is read from the store, linearizably.
            let resource_version = if fresh { None } else { Some("0".into()) };
            let options = ListOptions { field_selector: Some(selector), resource_version, ..Default::default() };
            let target = Target { resource: pods, namespace: Some(namespace), name: None, subresource: None };
            Ok(Facts { pod_node: None, pods: listed(api, &target, &options).await? })
        }
    }
}

/// The objects a list selects, from the watch cache when it runs, decoded (an object that does not decode
/// is left out).
async fn listed(api: &KubeApi, target: &Target, options: &ListOptions) -> Result<Vec<Value>, ApiError> {
    let listed = collections::list_cached(api.caches(), target, options).await?;
    Ok(listed.items.iter().filter_map(|raw| raw.decode().ok()).map(|stored| stored.object).collect())
}

/// The kinds RBAC decides from.
const RBAC_KINDS: [&str; 4] = ["roles", "clusterroles", "rolebindings", "clusterrolebindings"];

/// The policy last built from the watch caches, with the caches' counters when it was built: it is built
/// again only once a role or binding has changed (or a cache has listed again).
#[derive(Default)]
pub struct PolicyCache(std::sync::Mutex<Option<(Vec<CacheCounters>, Arc<Policy>)>>);

/// What a watch cache has decoded, how many store watches it opened and how many changes it applied: any
/// change to its objects changes one of them.
type CacheCounters = (u64, u64, u64);

/// The roles and bindings as this replica's watch caches hold them (started on first use).
async fn policy(api: &KubeApi) -> Result<Arc<Policy>, ApiError> {
    let resource =
        |plural: &str| catalog::find("rbac.authorization.k8s.io", "v1", plural).expect("rbac kinds are served");
    let mut counters = Vec::new();
    for plural in RBAC_KINDS {
        let cache = api.caches().cache(resource(plural));
        if !cache.wait_synced().await {
            counters.clear();
            break;
        }
        let stats = cache.stats();
        counters.push((stats.decodes, stats.store_watches, stats.core.events));
    }
    let cached = api.policies().0.lock().expect("policy cache poisoned").clone();
    if let Some((_, policy)) = cached.filter(|(at, _)| !counters.is_empty() && *at == counters) {
        return Ok(policy);
    }
    async fn all<T: DeserializeOwned>(api: &KubeApi, resource: &'static Resource) -> Result<Vec<T>, ApiError> {
        let target = Target { resource, namespace: None, name: None, subresource: None };
        let options = ListOptions { resource_version: Some("0".into()), ..Default::default() };
        let objects = listed(api, &target, &options).await?;
        Ok(objects.into_iter().filter_map(|o| serde_json::from_value(o).ok()).collect())
    }
    let roles: Vec<Role> = all(api, resource("roles")).await?;
    let cluster_roles: Vec<ClusterRole> = all(api, resource("clusterroles")).await?;
    let role_bindings: Vec<RoleBinding> = all(api, resource("rolebindings")).await?;
    let cluster_role_bindings: Vec<ClusterRoleBinding> = all(api, resource("clusterrolebindings")).await?;
    let policy = Arc::new(Policy::new(roles, cluster_roles, role_bindings, cluster_role_bindings));
    // Counted before listing: a change made meanwhile leaves the counters behind, and the next request builds
    // the policy again.
    if !counters.is_empty() {
        *api.policies().0.lock().expect("policy cache poisoned") = Some((counters, policy.clone()));
    }
    Ok(policy)
}

/// NodeRestriction on the creates of `user`, the node `node`.
fn node_check(user: &User, node: &str, attributes: &Attributes) -> Option<WriteCheck> {
    let Attributes::Resource(r) = attributes else { return None };
    if r.verb != "create" {
        return None;
    }
    let (user, node, r, attributes) = (user.clone(), node.to_owned(), r.clone(), attributes.clone());
    Some(Arc::new(move |_: &Target, object: &Value| {
        node_authorizer::check_create(&node, &r, object).map_err(|reason| denied(&attributes, &user, Some(&reason)))
    }))
}

/// RBAC's escalation check on writes of roles and bindings: the rules a Role or ClusterRole grants, or the
/// role a binding binds, must be held by the writer, unless it may `escalate` roles or `bind` that role.
fn escalation_check(policy: Arc<Policy>, user: &User, attributes: &Attributes) -> Option<WriteCheck> {
    let Attributes::Resource(r) = attributes else { return None };
    let kinds = ["roles", "clusterroles", "rolebindings", "clusterrolebindings"];
    if r.group != "rbac.authorization.k8s.io" || !kinds.contains(&r.resource.as_str()) || !r.subresource.is_empty() {
        return None;
    }
    if !matches!(r.verb.as_str(), "create" | "update" | "patch") {
        return None;
    }
    let (user, r) = (user.clone(), r.clone());
    Some(Arc::new(move |target: &Target, object: &Value| {
        let namespace = target.namespace.as_deref();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let may = |verb: &str, resource: &str, name: &str| {
            let asked = ResourceAttributes {
                verb: verb.to_owned(),
                group: r.group.clone(),
                resource: resource.to_owned(),
                namespace: namespace.unwrap_or_default().to_owned(),
                name: name.to_owned(),
                ..Default::default()
            };
            policy.allows(&user, &Attributes::Resource(asked)).is_some()
        };
        let held: Vec<_> = policy.rules_for(&user, namespace).into_iter().map(|(_, rule)| rule).collect();
        let missing = match r.resource.as_str() {
            "roles" | "clusterroles" => {
                if may("escalate", &r.resource, &name) {
                    return Ok(());
                }
                let requested: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
                    serde_json::from_value(object["rules"].clone()).unwrap_or_default();
                rbac::uncovered(&held, &requested)
            }
            _ => {
                let kind = object["roleRef"]["kind"].as_str().unwrap_or_default();
                let role = object["roleRef"]["name"].as_str().unwrap_or_default();
                let plural = if kind == "Role" { "roles" } else { "clusterroles" };
                if may("bind", plural, role) {
                    return Ok(());
                }
                match policy.role_rules(kind, namespace, role) {
                    Some(rules) => rbac::uncovered(&held, rules),
                    None => vec![format!("{kind} {role:?} does not exist, and {:?} may not bind it", user.name)],
                }
            }
        };
        if missing.is_empty() {
            return Ok(());
        }
        let what = if r.resource.ends_with("bindings") { "bind" } else { "grant" };
        Err(ApiError::Denied {
            group: r.group.clone(),
            resource: r.resource.clone(),
            name: name.clone(),
            message: format!(
                "user {:?} (groups={:?}) is attempting to {what} permissions it does not hold: missing {}",
                user.name,
                user.groups,
                missing.join(", ")
            ),
        })
    }))
}

/// The user a request impersonates, if it does, once the requesting user is found allowed to.
async fn impersonated(api: &KubeApi, user: &User, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let (names, groups, uids) = (values("impersonate-user"), values("impersonate-group"), values("impersonate-uid"));
    let extras = headers.keys().any(|k| k.as_str().starts_with("impersonate-extra-"));
    if names.is_empty() {
        if !groups.is_empty() || !uids.is_empty() || extras {
            return Err(ApiError::BadRequest(
                "requested impersonation of groups, a uid or extra fields without impersonating a user".into(),
            ));
        }
        return Ok(None);
    }
    if names.len() > 1 || uids.len() > 1 {
        return Err(ApiError::BadRequest("only one user and one uid may be impersonated".into()));
    }
    let name = names[0].clone();
    let mut asked = vec![match name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':')) {
        Some((namespace, account)) => impersonation("", "serviceaccounts", namespace, account),
        None => impersonation("", "users", "", &name),
    }];
    asked.extend(groups.iter().map(|group| impersonation("", "groups", "", group)));
    asked.extend(uids.iter().map(|uid| impersonation("authentication.k8s.io", "uids", "", uid)));
    for attributes in &asked {
        decide(api, user, attributes).await?;
    }
    let mut as_user = User { name, uid: uids.first().cloned().unwrap_or_default(), groups };
    if let Some((namespace, _)) =
        as_user.name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':'))
    {
        let namespace_group = format!("system:serviceaccounts:{namespace}");
        for group in ["system:serviceaccounts".to_owned(), namespace_group] {
            if !as_user.in_group(&group) {
                as_user.groups.push(group);
            }
        }
    }
    if !as_user.in_group(AUTHENTICATED_GROUP) {
        as_user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    Ok(Some(as_user))
}

fn impersonation(group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes::Resource(ResourceAttributes {
        verb: "impersonate".to_owned(),
        group: group.to_owned(),
        resource: resource.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ..Default::default()
    })
}

/// The answer to a create of a review kind (`Backing::Review`) by `user`: the body with its `status` filled
/// in. `namespace` is the request's (a LocalSubjectAccessReview's).
pub(super) async fn review(
    api: &KubeApi,
    user: &User,
    resource: &'static Resource,
    namespace: Option<&str>,
    mut body: Value,
) -> Result<Value, ApiError> {
    let spec = body["spec"].clone();
    let invalid = |field: &str, message: &str| {
        let cause = Cause { reason: "FieldValueInvalid", field: field.to_owned(), message: message.to_owned() };
        ApiError::invalid(resource, "", vec![cause])
    };
    let status = match resource.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "SelfSubjectRulesReview" => {
            let namespace = spec["namespace"].as_str().unwrap_or_default();
            if namespace.is_empty() {
                return Err(invalid("spec.namespace", "Required value"));
            }
            let policy = policy(api).await?;
            let rules: Vec<_> = policy.rules_for(user, Some(namespace)).into_iter().map(|(_, rule)| rule).collect();
            let resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| r.non_resource_urls.as_ref().is_none_or(Vec::is_empty))
                .map(|r| {
                    json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources,
                    "resourceNames": r.resource_names})
                })
                .collect();
            let non_resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()))
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect();
            json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                "incomplete": user.node_name().is_some()})
        }
        _ => {
            let subject = match resource.kind {
                "SelfSubjectAccessReview" => user.clone(),
                _ => {
                    let name = spec["user"].as_str().unwrap_or_default().to_owned();
                    let groups: Vec<String> = spec["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str().map(str::to_owned))
                        .collect();
                    if name.is_empty() && groups.is_empty() {
                        return Err(invalid("spec.user", "at least one of user or group must be specified"));
                    }
                    User { name, uid: spec["uid"].as_str().unwrap_or_default().to_owned(), groups }
                }
            };
            let attributes = match (&spec["resourceAttributes"], &spec["nonResourceAttributes"]) {
                (r, Value::Null) if r.is_object() => {
                    let field = |name: &str| r[name].as_str().unwrap_or_default().to_owned();
                    let asked = ResourceAttributes {
                        verb: field("verb"),
                        group: field("group"),
                        resource: field("resource"),
                        subresource: field("subresource"),
                        namespace: field("namespace"),
                        name: field("name"),
                    };
                    if let Some(ns) = namespace.filter(|ns| *ns != asked.namespace) {
                        let message = format!("spec.resourceAttributes.namespace must match the request's ({ns})");
                        return Err(invalid("spec.resourceAttributes.namespace", &message));
                    }
                    Attributes::Resource(asked)
                }
                (Value::Null, n) if n.is_object() => Attributes::NonResource {
                    verb: n["verb"].as_str().unwrap_or_default().to_owned(),
                    path: n["path"].as_str().unwrap_or_default().to_owned(),
                },
                _ => {
                    return Err(invalid(
                        "spec.resourceAttributes",
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    ))
                }
            };
            match decide(api, &subject, &attributes).await {
                Ok(Allowed { reason, .. }) => json!({"allowed": true, "reason": reason}),
                // As upstream: RBAC gives no reason for what it does not allow.
                Err(ApiError::Denied { .. }) => json!({"allowed": false}),
                Err(e) => return Err(e),
            }
        }
    };
    body["status"] = status;
    body["apiVersion"] = json!(resource.api_version());
    body["kind"] = json!(resource.kind);
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    Ok(body)
}

/// Who `user` is, as a SelfSubjectReview tells it.
fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: Method, uri: &str) -> ResourceAttributes {
        match attributes(&method, &uri.parse().unwrap()) {
            Attributes::Resource(r) => r,
            other => panic!("{uri} is a resource request, not {other:?}"),
        }
    }

    #[test]
    fn requests_read_as_upstream_reads_them() {
        let r = resource(Method::GET, "/api/v1/namespaces/a/pods");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.resource.as_str(), r.name.as_str()),
            ("list", "a", "pods", "")
        );
        let r = resource(Method::GET, "/api/v1/pods?watch=true&fieldSelector=x");
        assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("watch", ""));
        let r = resource(Method::GET, "/api/v1/namespaces/a/pods/p/log");
        assert_eq!((r.verb.as_str(), r.name.as_str(), r.combined_resource().as_str()), ("get", "p", "pods/log"));
        let r = resource(Method::GET, "/api/v1/namespaces/a/pods/p/exec?command=sh");
        assert_eq!(r.verb, "create");
        let r = resource(Method::DELETE, "/apis/apps/v1/namespaces/a/deployments");
        assert_eq!((r.verb.as_str(), r.group.as_str()), ("deletecollection", "apps"));
        let r = resource(Method::PATCH, "/api/v1/nodes/n1/status");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("patch", "", "n1", "status")
        );
        // A namespace is in itself.
        let r = resource(Method::GET, "/api/v1/namespaces/a");
        assert_eq!((r.resource.as_str(), r.namespace.as_str(), r.name.as_str()), ("namespaces", "a", "a"));
        let r = resource(Method::PUT, "/api/v1/namespaces/a/finalize");
        assert_eq!((r.resource.as_str(), r.name.as_str(), r.subresource.as_str()), ("namespaces", "a", "finalize"));
        let r = resource(Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
        assert_eq!((r.verb.as_str(), r.resource.as_str()), ("create", "selfsubjectaccessreviews"));
        assert_eq!(
            attributes(&Method::GET, &"/apis".parse().unwrap()),
            Attributes::NonResource { verb: "get".into(), path: "/apis".into() }
        );
        assert_eq!(
            attributes(&Method::GET, &"/apis/apps/v1".parse().unwrap()),
            Attributes::NonResource { verb: "get".into(), path: "/apis/apps/v1".into() }
        );
    }
}
