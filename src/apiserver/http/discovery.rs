//! What clients learn before they ask for objects: `/version` and discovery (aggregated and legacy), built from
//! the resource table, and which encoding of the OpenAPI v2 document (`apis::openapi`) a client asks for.
//!
//! kubectl needs aggregated discovery answered with its exact content type.

use serde_json::{json, Value};

use crate::apis::catalog::{self, Resource, Subresource};
use crate::apis::openapi;
use crate::apis::KUBERNETES_MINOR;

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
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        _ => (r.group, r.version, r.kind),
    }
}

fn subresource_verbs(s: Subresource) -> &'static [&'static str] {
    match s {
        Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
        Subresource::Finalize => &["update"],
        Subresource::Log => &["get"],
        Subresource::Exec | Subresource::Attach => &["get", "create"],
        Subresource::Binding | Subresource::Token | Subresource::Eviction => &["create"],
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

/// The encodings `/openapi/v2` is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenApiV2Encoding {
    Json,
    /// gnostic's protobuf, which client-go asks for (`openapi::V2_PROTOBUF_CONTENT_TYPE`).
    Protobuf,
}

/// The encoding an Accept header asks `/openapi/v2` for, as upstream's handler picks it: the media ranges by
/// decreasing quality, exact ones before wildcards (in the order given otherwise), the first that matches JSON
/// or protobuf (in either spelling); no header means any. None: neither is acceptable (406).
pub fn openapi_v2_encoding(accept: &str) -> Option<OpenApiV2Encoding> {
    let accept = if accept.trim().is_empty() { "*/*" } else { accept };
    let mut ranges: Vec<(f32, u8, &str, &str)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let (kind, subtype) = parts.next()?.trim().split_once('/')?;
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let exact = u8::from(kind != "*") + u8::from(subtype != "*");
            (quality > 0.0).then_some((quality, exact, kind, subtype))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let offered = [
        ("application/json", OpenApiV2Encoding::Json),
        (openapi::V2_PROTOBUF_CONTENT_TYPE_DEPRECATED, OpenApiV2Encoding::Protobuf),
        (openapi::V2_PROTOBUF_CONTENT_TYPE, OpenApiV2Encoding::Protobuf),
    ];
    ranges.into_iter().find_map(|(_, _, kind, subtype)| {
        offered.iter().find_map(|(media, encoding)| {
            let (k, s) = media.split_once('/')?;
            ((kind == k || kind == "*") && (subtype == s || subtype == "*")).then_some(*encoding)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_v2_is_json_unless_protobuf_is_asked_for_first() {
        use OpenApiV2Encoding::*;
        for (accept, encoding) in [
            ("", Some(Json)),
            ("*/*", Some(Json)),
            ("application/json", Some(Json)),
            ("application/json, */*", Some(Json)),
            ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", Some(Protobuf)),
            ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", Some(Protobuf)),
            ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", Some(Protobuf)),
            ("*/*, application/com.github.proto-openapi.spec.v2.v1.0+protobuf", Some(Protobuf)),
            ("application/json, application/com.github.proto-openapi.spec.v2.v1.0+protobuf", Some(Json)),
            ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", Some(Protobuf)),
            ("application/yaml, application/*", Some(Json)),
            ("application/yaml", None),
            ("application/json;q=0", None),
            ("text/html", None),
            ("garbage", None),
        ] {
            assert_eq!(openapi_v2_encoding(accept), encoding, "{accept:?}");
        }
    }
}
