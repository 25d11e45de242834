//! Role-based access control (`rbac.authorization.k8s.io/v1`), decided as kube-apiserver's RBAC authorizer
//! decides: a request is allowed when a rule of a role bound to its user allows it, and nothing else allows
//! it (rules only ever grant). `Policy` is the roles and bindings as of one moment; `Attributes` is what a
//! request asks to do. Pure: the API layer builds both.
//!
//! Also here: the rules that cover others (no one may grant what they do not hold, upstream's escalation
//! check) and the default roles and bindings every cluster has (`defaults`).

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};

use serde_json::{json, Value};

use super::authn::User;

/// What a request asks to do, as upstream's authorizers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    /// On an API resource: `namespace` empty for a cluster-scoped resource or a request across namespaces,
    /// `name` empty for a collection (and for a create).
    Resource(ResourceAttributes),
    /// On any other path (`/version`, `/apis`, `/healthz`).
    NonResource { verb: String, path: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceAttributes {
    /// `pods`, or `pods/log` for a subresource: what rules name.
    pub fn combined_resource(&self) -> String {
        match self.subresource.as_str() {
            "" => self.resource.clone(),
            sub => format!("{}/{sub}", self.resource),
        }
    }
}

impl Attributes {
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource(r) => &r.verb,
            Attributes::NonResource { verb, .. } => verb,
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            Attributes::Resource(r) if !r.namespace.is_empty() => Some(&r.namespace),
            _ => None,
        }
    }

    /// Why a request of `user` is refused, worded as kube-apiserver words it: `User "alice" cannot list
    /// resource "pods" in API group "" in the namespace "b"`.
    pub fn refusal(&self, user: &User) -> String {
        match self {
            Attributes::Resource(r) => {
                let scope = match r.namespace.as_str() {
                    "" => "at the cluster scope".to_owned(),
                    ns => format!("in the namespace {ns:?}"),
                };
                format!(
                    "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
                    user.name,
                    r.verb,
                    r.combined_resource(),
                    r.group
                )
            }
            Attributes::NonResource { verb, path } => {
                format!("User {:?} cannot {verb} path {path:?}", user.name)
            }
        }
    }
}

/// The roles and bindings as of one moment, indexed for deciding.
#[derive(Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl Policy {
    pub fn new(
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        role_bindings: Vec<RoleBinding>,
        cluster_role_bindings: Vec<ClusterRoleBinding>,
    ) -> Policy {
        let roles = roles
            .into_iter()
            .map(|r| {
                let key = (r.metadata.namespace.unwrap_or_default(), r.metadata.name.unwrap_or_default());
                (key, r.rules.unwrap_or_default())
            })
            .collect();
        let cluster_roles = cluster_roles
            .into_iter()
            .map(|r| (r.metadata.name.unwrap_or_default(), r.rules.unwrap_or_default()))
            .collect();
        Policy { roles, cluster_roles, role_bindings, cluster_role_bindings }
    }

    /// Every rule bound to `user`: through cluster role bindings, and through the role bindings of `namespace`
    /// when one is given. Each rule comes with the binding that grants it.
    pub fn rules_for<'a>(&'a self, user: &User, namespace: Option<&str>) -> Vec<(String, &'a PolicyRule)> {
        let mut out = Vec::new();
        for binding in &self.cluster_role_bindings {
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            if binding.role_ref.kind == "ClusterRole" && subjects.iter().any(|s| applies_to(s, user, "")) {
                let name = format!("ClusterRoleBinding {:?}", binding.metadata.name.as_deref().unwrap_or_default());
                let rules = self.cluster_roles.get(&binding.role_ref.name).into_iter().flatten();
                out.extend(rules.map(|rule| (name.clone(), rule)));
            }
        }
        let Some(namespace) = namespace else { return out };
        for binding in &self.role_bindings {
            if binding.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            if !subjects.iter().any(|s| applies_to(s, user, namespace)) {
                continue;
            }
            let rules = match binding.role_ref.kind.as_str() {
                "Role" => self.roles.get(&(namespace.to_owned(), binding.role_ref.name.clone())),
                "ClusterRole" => self.cluster_roles.get(&binding.role_ref.name),
                _ => None,
            };
            let name = format!("RoleBinding \"{namespace}/{}\"", binding.metadata.name.as_deref().unwrap_or_default());
            out.extend(rules.into_iter().flatten().map(|rule| (name.clone(), rule)));
        }
        out
    }

    /// The binding that allows the request, if any.
    pub fn allows(&self, user: &User, attributes: &Attributes) -> Option<String> {
        self.rules_for(user, attributes.namespace())
            .into_iter()
            .find(|(_, rule)| rule_allows(rule, attributes))
            .map(|(binding, _)| binding)
    }

    /// The rules a role reference names in `namespace` (a RoleBinding's `Role` is of its namespace).
    pub fn role_rules(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&[PolicyRule]> {
        match (kind, namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(name).map(Vec::as_slice),
            ("Role", Some(ns)) => self.roles.get(&(ns.to_owned(), name.to_owned())).map(Vec::as_slice),
            _ => None,
        }
    }
}

/// Whether `subject` of a binding in `namespace` (empty for a cluster role binding) names `user`.
fn applies_to(subject: &Subject, user: &User, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let account_namespace = subject.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(namespace);
            !account_namespace.is_empty()
                && user.name == format!("system:serviceaccount:{account_namespace}:{}", subject.name)
        }
        _ => false,
    }
}

/// Whether `value` is in `list` or `list` holds the wildcard.
fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

pub fn rule_allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    if !has(&rule.verbs, attributes.verb()) {
        return false;
    }
    match attributes {
        Attributes::Resource(r) => {
            let groups = rule.api_groups.as_deref().unwrap_or_default();
            let resources = rule.resources.as_deref().unwrap_or_default();
            let names = rule.resource_names.as_deref().unwrap_or_default();
            let combined = r.combined_resource();
            let resource_matches = resources.iter().any(|x| {
                x == "*" || *x == combined || (!r.subresource.is_empty() && *x == format!("*/{}", r.subresource))
            });
            has(groups, &r.group) && resource_matches && (names.is_empty() || names.contains(&r.name))
        }
        Attributes::NonResource { path, .. } => {
            let urls = rule.non_resource_urls.as_deref().unwrap_or_default();
            urls.iter()
                .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
        }
    }
}

/// The parts of `requested` that no rule of `held` covers, each as one verb on one resource (or path), for
/// the refusal message; empty when `held` covers all of it. A wildcard asked for is covered only by a
/// wildcard held.
pub fn uncovered(held: &[&PolicyRule], requested: &[PolicyRule]) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in requested {
        for verb in &rule.verbs {
            for path in rule.non_resource_urls.iter().flatten() {
                let asked = Attributes::NonResource { verb: verb.clone(), path: path.clone() };
                if !held.iter().any(|h| rule_allows(h, &asked)) {
                    missing.push(format!("{{NonResourceURLs:[{path:?}], Verbs:[{verb:?}]}}"));
                }
            }
            let names: Vec<String> = match rule.resource_names.as_deref() {
                Some(names) if !names.is_empty() => names.to_vec(),
                _ => vec![String::new()],
            };
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for name in &names {
                        let (resource_part, subresource) = match resource.split_once('/') {
                            Some((r, s)) => (r.to_owned(), s.to_owned()),
                            None => (resource.clone(), String::new()),
                        };
                        let asked = Attributes::Resource(ResourceAttributes {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource_part,
                            subresource,
                            namespace: String::new(),
                            name: name.clone(),
                        });
                        if !held.iter().any(|h| rule_allows(h, &asked)) {
                            let names =
                                if name.is_empty() { String::new() } else { format!(", ResourceNames:[{name}]") };
                            missing.push(format!(
                                "{{APIGroups:[{group:?}], Resources:[{resource:?}]{names}, Verbs:[{verb:?}]}}"
                            ));
                        }
                    }
                }
            }
        }
    }
    missing
}

/// The annotation upstream marks its default roles and bindings with.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// What the `view` role reads in each API group: what a namespace holds, without Secrets.
const VIEWED: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "pods/log",
            "pods/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "serviceaccounts",
            "services",
            "services/status",
            "bindings",
            "events",
            "limitranges",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
            "namespaces/status",
        ],
    ),
    (
        "apps",
        &[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    ("autoscaling", &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    ("batch", &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    ("discovery.k8s.io", &["endpointslices"]),
    ("events.k8s.io", &["events"]),
    ("networking.k8s.io", &["ingresses", "ingresses/status", "networkpolicies"]),
    ("policy", &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    ("metrics.k8s.io", &["pods", "nodes"]),
];

/// What the `edit` role writes in each API group, besides reading what `view` reads.
const EDITED: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "configmaps",
            "endpoints",
            "events",
            "persistentvolumeclaims",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
        ],
    ),
    (
        "apps",
        &[
            "daemonsets",
            "deployments",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
    ),
    ("autoscaling", &["horizontalpodautoscalers"]),
    ("batch", &["cronjobs", "jobs"]),
    ("discovery.k8s.io", &["endpointslices"]),
    ("networking.k8s.io", &["ingresses", "networkpolicies"]),
    ("policy", &["poddisruptionbudgets"]),
];

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn rules_of(table: &[(&str, &[&str])], verbs: &[&str]) -> Vec<Value> {
    table.iter().map(|(group, resources)| rule(&[group], resources, verbs)).collect()
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "rules": rules})
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> =
        groups.iter().map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g})).collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

/// The paths every authenticated user may read: discovery, OpenAPI, health and version.
const DISCOVERY_PATHS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];

/// The default cluster roles and cluster role bindings, as upstream's API server creates them at start:
/// `cluster-admin` (everything; bound to `system:masters`), the user-facing `admin`, `edit` and `view` (meant
/// for role bindings in a namespace), and what every authenticated user may do (`system:basic-user`: ask what
/// it may do; `system:discovery`: read discovery). Each is `(plural, object)`.
pub fn defaults() -> Vec<(&'static str, Value)> {
    let view = [rules_of(VIEWED, READ)].concat();
    let mut edit = view.clone();
    edit.extend(rules_of(EDITED, WRITE));
    edit.push(rule(&[""], &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], &["create", "get"]));
    edit.push(rule(&[""], &["pods/eviction", "serviceaccounts/token"], &["create"]));
    edit.push(rule(&[""], &["secrets"], READ));
    edit.push(rule(&[""], &["serviceaccounts"], &["impersonate"]));
    edit.push(rule(&["apps"], &["deployments/rollback"], WRITE));
    let mut admin = edit.clone();
    admin.push(rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"], &[READ, WRITE].concat()));
    admin.push(rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]));
    let everything = vec![rule(&["*"], &["*"], &["*"]), json!({"nonResourceURLs": ["*"], "verbs": ["*"]})];
    let basic = vec![
        rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
        rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
    ];
    let discovery = vec![json!({"nonResourceURLs": DISCOVERY_PATHS, "verbs": ["get"]})];
    let roles = [
        ("cluster-admin", everything),
        ("admin", admin),
        ("edit", edit),
        ("view", view),
        ("system:basic-user", basic),
        ("system:discovery", discovery),
    ];
    let bindings = [
        ("cluster-admin", "cluster-admin", super::authn::MASTERS_GROUP),
        ("system:basic-user", "system:basic-user", super::authn::AUTHENTICATED_GROUP),
        ("system:discovery", "system:discovery", super::authn::AUTHENTICATED_GROUP),
    ];
    let roles = roles.into_iter().map(|(name, rules)| ("clusterroles", cluster_role(name, rules)));
    let bindings = bindings
        .into_iter()
        .map(|(name, role, group)| ("clusterrolebindings", cluster_role_binding(name, role, &[group])));
    roles.chain(bindings).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy(extra_bindings: Vec<RoleBinding>, extra_roles: Vec<Role>) -> Policy {
        let (mut cluster_roles, mut cluster_bindings) = (Vec::new(), Vec::new());
        for (plural, object) in defaults() {
            match plural {
                "clusterroles" => cluster_roles.push(serde_json::from_value(object).unwrap()),
                _ => cluster_bindings.push(serde_json::from_value(object).unwrap()),
            }
        }
        Policy::new(extra_roles, cluster_roles, extra_bindings, cluster_bindings)
    }

    fn binding(namespace: &str, role_kind: &str, role: &str, user: &str) -> RoleBinding {
        serde_json::from_value(json!({"metadata": {"name": format!("{user}-{role}"), "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": user}]}))
        .unwrap()
    }

    fn asks(verb: &str, group: &str, resource: &str, namespace: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: String::new(),
        })
    }

    fn user(name: &str) -> User {
        User::new(name, &[super::super::authn::AUTHENTICATED_GROUP])
    }

    #[test]
    fn a_view_binding_reads_its_namespace_only_and_writes_nothing() {
        let policy = default_policy(vec![binding("a", "ClusterRole", "view", "alice")], vec![]);
        let alice = user("alice");
        assert!(policy.allows(&alice, &asks("list", "", "pods", "a")).is_some());
        assert!(policy.allows(&alice, &asks("watch", "apps", "deployments", "a")).is_some());
        assert!(policy.allows(&alice, &asks("get", "", "pods/log", "a")).is_some());
        assert!(policy.allows(&alice, &asks("list", "", "pods", "b")).is_none());
        assert!(policy.allows(&alice, &asks("list", "", "pods", "")).is_none(), "not across namespaces");
        assert!(policy.allows(&alice, &asks("create", "", "pods", "a")).is_none());
        assert!(policy.allows(&alice, &asks("get", "", "secrets", "a")).is_none(), "view reads no secrets");
        // Every authenticated user may ask what it may do, and read discovery.
        assert!(policy
            .allows(&alice, &asks("create", "authorization.k8s.io", "selfsubjectaccessreviews", ""))
            .is_some());
        let discovery = Attributes::NonResource { verb: "get".into(), path: "/apis/apps/v1".into() };
        assert!(policy.allows(&alice, &discovery).is_some());
        let metrics = Attributes::NonResource { verb: "get".into(), path: "/metrics".into() };
        assert!(policy.allows(&alice, &metrics).is_none());
        assert!(policy.allows(&user("bob"), &asks("list", "", "pods", "a")).is_none());
    }

    #[test]
    fn edit_writes_workloads_and_admin_also_roles() {
        let policy = default_policy(
            vec![binding("a", "ClusterRole", "edit", "ed"), binding("a", "ClusterRole", "admin", "ad")],
            vec![],
        );
        assert!(policy.allows(&user("ed"), &asks("create", "apps", "deployments", "a")).is_some());
        assert!(policy.allows(&user("ed"), &asks("patch", "apps", "deployments/scale", "a")).is_some());
        assert!(policy.allows(&user("ed"), &asks("create", "", "pods/exec", "a")).is_some());
        assert!(policy
            .allows(&user("ed"), &asks("create", "rbac.authorization.k8s.io", "rolebindings", "a"))
            .is_none());
        assert!(policy
            .allows(&user("ad"), &asks("create", "rbac.authorization.k8s.io", "rolebindings", "a"))
            .is_some());
        assert!(policy.allows(&user("ad"), &asks("delete", "", "nodes", "")).is_none(), "admin is of a namespace");
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts_of_the_binding_namespace() {
        let role: Role = serde_json::from_value(json!({"metadata": {"name": "reader", "namespace": "a"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get"]}]}))
        .unwrap();
        let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "r", "namespace": "a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "Group", "name": "readers"}, {"kind": "ServiceAccount", "name": "bot"}]}))
        .unwrap();
        let policy = default_policy(vec![rb], vec![role]);
        let named = |name: &str| match asks("get", "", "configmaps", "a") {
            Attributes::Resource(mut r) => {
                r.name = name.into();
                Attributes::Resource(r)
            }
            other => other,
        };
        let reader = User::new("carol", &["readers"]);
        assert!(policy.allows(&reader, &named("one")).is_some());
        assert!(policy.allows(&reader, &named("two")).is_none(), "resourceNames restrict");
        assert!(policy.allows(&user("system:serviceaccount:a:bot"), &named("one")).is_some());
        assert!(policy.allows(&user("system:serviceaccount:b:bot"), &named("one")).is_none());
    }

    #[test]
    fn rules_cover_only_what_they_grant_and_wildcards_only_by_wildcards() {
        let held: Vec<PolicyRule> = serde_json::from_value(json!([
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]},
        ]))
        .unwrap();
        let held: Vec<&PolicyRule> = held.iter().collect();
        let asked = |rules: Value| -> Vec<String> {
            uncovered(&held, &serde_json::from_value::<Vec<PolicyRule>>(rules).unwrap())
        };
        assert!(asked(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])).is_empty());
        assert!(asked(json!([{"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["*"]}])).is_empty());
        assert_eq!(asked(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "get"]}])).len(), 1);
        assert_eq!(asked(json!([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}])).len(), 1);
        assert_eq!(asked(json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])).len(), 1);
    }

    #[test]
    fn a_refusal_reads_as_upstream_words_it() {
        let message = asks("list", "", "pods", "b").refusal(&user("alice"));
        assert_eq!(message, r#"User "alice" cannot list resource "pods" in API group "" in the namespace "b""#);
        let message = asks("delete", "", "nodes", "").refusal(&user("alice"));
        assert_eq!(message, r#"User "alice" cannot delete resource "nodes" in API group "" at the cluster scope"#);
    }
}
