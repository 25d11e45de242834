//! What clients learn before they ask for objects: `/version`, discovery (aggregated and legacy) and the
//! OpenAPI v3 documents, all built from the resource table.
//!
//! kubectl needs aggregated discovery answered with its exact content type, and an OpenAPI v3 document per
//! group-version whose PATCH operations declare `fieldValidation`: then it leaves field validation to the
//! server instead of downloading OpenAPI v2. The documents carry each kind's schema from k8s-openapi so that
//! `kubectl explain` works.

use serde_json::{json, Value};

use crate::apis::catalog::{self, Backing, Resource, Subresource};

/// The Kubernetes version whose types are served (k8s-openapi's `v1_33`).
pub const KUBERNETES_MINOR: &str = "33";
/// The oldest minor whose behaviour the API still offers, as upstream reports it (one below its own).
const KUBERNETES_MIN_COMPATIBILITY_MINOR: &str = "32";

pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `/version`: the Kubernetes version served, with raftsman's version as build metadata, and the facts of
/// this build (`build.rs`): commit, tree state, date, and the Rust compiler in Go's place.
pub fn version() -> Value {
    let arch = if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH };
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "emulationMajor": "1",
        "emulationMinor": KUBERNETES_MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": KUBERNETES_MIN_COMPATIBILITY_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0+raftsman.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": env!("RAFTSMAN_GIT_COMMIT"),
        "gitTreeState": env!("RAFTSMAN_GIT_TREE_STATE"),
        "buildDate": env!("RAFTSMAN_BUILD_DATE"),
        "goVersion": env!("RAFTSMAN_RUSTC_VERSION"),
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    })
}

/// Whether an Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|t| t.contains("as=APIGroupDiscoveryList") && t.contains("v=v2") && !t.contains("v=v2beta1"))
}

fn subresource_kind(r: &Resource, s: Subresource) -> (&'static str, &'static str, &'static str) {
    match s {
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        _ => (r.group, r.version, r.kind),
    }
}

fn subresource_verbs(s: Subresource) -> &'static [&'static str] {
    match s {
        Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
        Subresource::Finalize => &["update"],
        Subresource::Log => &["get"],
        Subresource::Binding | Subresource::Token => &["create"],
    }
}

/// The legacy `APIResourceList` of one group-version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let gv = catalog::group_versions().into_iter().find(|(g, v, _)| *g == group && *v == version)?;
    let mut list = Vec::new();
    for r in gv.2 {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": r.verbs(), "shortNames": r.short_names, "categories": r.categories,
        }));
        for s in r.subresources {
            let (g, v, kind) = subresource_kind(r, *s);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, s.name()), "singularName": "", "namespaced": r.namespaced,
                "kind": kind, "verbs": subresource_verbs(*s),
            });
            if g != r.group || v != r.version {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}))
}

/// `GET /api` in the legacy form.
pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// `GET /apis` in the legacy form.
pub fn group_list() -> Value {
    let groups: Vec<Value> = catalog::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| {
            let versions: Vec<Value> =
                versions.iter().map(|(v, _)| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "preferredVersion": versions[0], "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api` (core = true) or `GET /apis` as an aggregated `APIGroupDiscoveryList`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = catalog::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions.iter().map(|(v, rs)| aggregated_version(v, rs)).collect();
            let metadata =
                if core { json!({"creationTimestamp": null}) } else { json!({"name": g, "creationTimestamp": null}) };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// One version of a group in aggregated discovery.
fn aggregated_version(v: &str, rs: &[&'static Resource]) -> Value {
    let resources: Vec<Value> = rs
        .iter()
        .map(|r| {
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    let (sg, sv, sk) = subresource_kind(r, *s);
                    json!({"subresource": s.name(), "responseKind": {"group": sg, "version": sv, "kind": sk},
                        "verbs": subresource_verbs(*s)})
                })
                .collect();
            json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular, "verbs": r.verbs(), "shortNames": r.short_names,
                "categories": r.categories, "subresources": subs,
            })
        })
        .collect();
    json!({"version": v, "freshness": "Current", "resources": resources})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: where each group-version's document is.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v, _) in catalog::group_versions() {
        let p = gv_path(g, v);
        let url = format!("/openapi/v3/{p}?hash={}", env!("CARGO_PKG_VERSION"));
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`).
pub fn openapi_document(gv: &str) -> Option<Value> {
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let gv = catalog::group_versions().into_iter().find(|(g, v, _)| *g == group && *v == version)?;
    let mut paths = serde_json::Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
    ]);
    for r in &gv.2 {
        let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}})
        };
        let (path, operations) = match r.backing {
            Backing::Stored => (
                format!("{collection}/{{name}}"),
                json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
            ),
            Backing::ComponentStatuses => (format!("{collection}/{{name}}"), json!({"get": op("get")})),
            Backing::PodBinding => (collection, json!({"post": op("post")})),
        };
        paths.insert(path, operations);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas(&gv.2)},
    }))
}

/// The schemas of `resources` and of every type they refer to, each kind's marked with its group, version
/// and kind as kubectl looks them up.
fn schemas(resources: &[&'static Resource]) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let roots: Vec<(String, &Resource)> = resources
        .iter()
        .map(|r| {
            let reference = (r.schema)(&mut generator);
            let name = reference.get("$ref").and_then(Value::as_str).unwrap_or_default();
            (name.rsplit('/').next().unwrap_or_default().to_string(), *r)
        })
        .collect();
    let mut definitions = generator.take_definitions(true);
    for (name, r) in roots {
        if let Some(Value::Object(schema)) = definitions.get_mut(&name) {
            let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
            schema.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    Value::Object(definitions)
}
