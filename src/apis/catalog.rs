//! The registry of resource kinds the API serves: names, scope, subresources, discovery metadata, and the
//! typed check each body goes through.
//!
//! The table is the single source for routing, discovery, OpenAPI and storage keys. Objects are stored under
//! `/registry/<plural>/<namespace>/<name>` (namespaced) or `/registry/<plural>/<name>` (cluster-scoped); no two
//! served resources share a plural, so keys never collide.

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Log,
    Binding,
    /// A Namespace's `spec.finalizers`, which only the namespace controller changes.
    Finalize,
    /// A ServiceAccount's `token`: a TokenRequest answered with a token.
    Token,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Log => "log",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
        }
    }
}

#[derive(Debug)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether `metadata.generation` counts spec changes.
    pub tracks_generation: bool,
    /// Decodes a body into the kind's k8s-openapi type and encodes it back: type errors are refused and fields
    /// the type does not know are dropped, as the real API server prunes them.
    pub typed: fn(&Value) -> Result<Value, String>,
    /// Registers the kind's OpenAPI schema (and those it refers to) and returns a reference to it.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

fn typed<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// Resources are equal when they are the same served resource.
impl PartialEq for Resource {
    fn eq(&self, other: &Resource) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as error messages name resources.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod` or `Deployment.apps`, as `Invalid` messages name kinds.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix of every object of this resource, or of those in one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.plural),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

use Subresource::*;

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr, $ty:ty,
     short: [$($short:expr),*], categories: [$($cat:expr),*], sub: [$($sub:expr),*], generation: $gen:expr) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            tracks_generation: $gen,
            typed: typed::<$ty>,
            schema: schema::<$ty>,
        }
    };
}

/// Every served resource, in discovery order (groups in priority order).
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", false, core::v1::Namespace,
        short: ["ns"], categories: [], sub: [Status, Finalize], generation: false),
    resource!("", "v1", "Pod", "pods", "pod", true, core::v1::Pod,
        short: ["po"], categories: ["all"], sub: [Status, Log, Binding], generation: false),
    resource!("", "v1", "Node", "nodes", "node", false, core::v1::Node,
        short: ["no"], categories: [], sub: [Status], generation: false),
    resource!("", "v1", "Service", "services", "service", true, core::v1::Service,
        short: ["svc"], categories: ["all"], sub: [Status], generation: false),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true, core::v1::Endpoints,
        short: ["ep"], categories: [], sub: [], generation: false),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true, core::v1::ConfigMap,
        short: ["cm"], categories: [], sub: [], generation: false),
    resource!("", "v1", "Secret", "secrets", "secret", true, core::v1::Secret,
        short: [], categories: [], sub: [], generation: false),
    resource!("", "v1", "Event", "events", "event", true, core::v1::Event,
        short: ["ev"], categories: [], sub: [], generation: false),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, core::v1::ServiceAccount,
        short: ["sa"], categories: [], sub: [Token], generation: false),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true, apps::v1::Deployment,
        short: ["deploy"], categories: ["all"], sub: [Status, Scale], generation: true),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, apps::v1::ReplicaSet,
        short: ["rs"], categories: ["all"], sub: [Status, Scale], generation: true),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, apps::v1::StatefulSet,
        short: ["sts"], categories: ["all"], sub: [Status, Scale], generation: true),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, apps::v1::DaemonSet,
        short: ["ds"], categories: ["all"], sub: [Status], generation: true),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true,
        apps::v1::ControllerRevision, short: [], categories: [], sub: [], generation: false),
    resource!("batch", "v1", "Job", "jobs", "job", true, batch::v1::Job,
        short: [], categories: ["all"], sub: [Status], generation: true),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, batch::v1::CronJob,
        short: ["cj"], categories: ["all"], sub: [Status], generation: true),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, coordination::v1::Lease,
        short: [], categories: [], sub: [], generation: false),
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        true, autoscaling::v2::HorizontalPodAutoscaler, short: ["hpa"], categories: ["all"], sub: [Status],
        generation: true),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true,
        discovery::v1::EndpointSlice, short: [], categories: [], sub: [], generation: false),
];

/// The type check of the `autoscaling/v1 Scale` objects the `/scale` subresources speak.
pub fn typed_scale(v: &Value) -> Result<Value, String> {
    typed::<autoscaling::v1::Scale>(v)
}

/// The resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The group-versions served, in discovery order, each with its resources.
pub fn group_versions() -> Vec<(&'static str, &'static str, Vec<&'static Resource>)> {
    let mut out: Vec<(&'static str, &'static str, Vec<&'static Resource>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, v, _)| *g == r.group && *v == r.version) {
            Some((_, _, list)) => list.push(r),
            None => out.push((r.group, r.version, vec![r])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_so_keys_never_collide() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.plural, b.plural);
            }
        }
    }

    #[test]
    fn typed_check_refuses_a_wrong_kind_and_prunes_unknown_fields() {
        let pods = find("", "v1", "pods").unwrap();
        assert!((pods.typed)(&serde_json::json!({"kind": "Service", "apiVersion": "v1"})).is_err());
        let v = (pods.typed)(&serde_json::json!({"metadata": {"name": "a", "bogus": 1}})).unwrap();
        assert_eq!(v["metadata"], serde_json::json!({"name": "a"}));
        assert_eq!(v["kind"], "Pod");
    }
}
