//! The registry of resource kinds the API serves: names, scope, subresources, discovery metadata, the typed
//! check each body goes through, and each kind's strategy: its defaulting, validation, name rule, printed
//! columns, what a create resets, how its deletion finishes, whether it holds allocations and whether its
//! objects are stored with a time to live.
//!
//! Some kinds are never stored (`Backing`): `bindings` binds pods, `componentstatuses` is computed on each read,
//! and `metrics.k8s.io`'s `nodes` and `pods` are the leader's resource metrics; their entries say so, and
//! discovery lists only the verbs they serve.
//!
//! The table is the single source for routing, discovery, OpenAPI, storage keys and per-kind behaviour: adding
//! a kind is one entry here (its rules live in `defaults.rs`, `validation.rs` and `table.rs`, named by the
//! entry), and no other code tells kinds apart by name. Objects are stored under
//! `/registry/<plural>/<namespace>/<name>` (namespaced) or `/registry/<plural>/<name>` (cluster-scoped); no two
//! served resources share a plural or a kind, so keys never collide.

use k8s_openapi::api::{
    apps, authentication, authorization, autoscaling, batch, coordination, core, discovery, events, networking, policy,
    rbac, scheduling,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::admission::Usage;
use super::conversion;
use super::defaults::{self, keep_status, reset_status};
use super::omitempty;
use super::selectors;
use super::strategy;
use super::table::Printer;
use super::validation::{self, Causes, NameRule};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Log,
    /// A Pod's `exec`: a command in one of its containers, over a WebSocket relayed to its kubelet.
    Exec,
    /// A Pod's `attach`: a container's own streams, over a WebSocket relayed to its kubelet.
    Attach,
    Binding,
    /// A Namespace's `spec.finalizers`, which only the namespace controller changes.
    Finalize,
    /// A ServiceAccount's `token`: a TokenRequest answered with a token.
    Token,
    /// A Pod's `eviction`: a deletion a PodDisruptionBudget may refuse.
    Eviction,
}

impl Subresource {
    pub const ALL: [Subresource; 9] = [
        Subresource::Status,
        Subresource::Scale,
        Subresource::Log,
        Subresource::Exec,
        Subresource::Attach,
        Subresource::Binding,
        Subresource::Finalize,
        Subresource::Token,
        Subresource::Eviction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
            Subresource::Eviction => "eviction",
        }
    }
}

/// How the deletion of an object of a kind finishes, beyond `metadata.finalizers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Removed once no finalizer holds it.
    Plain,
    /// A pod bound to a node is only marked: its kubelet stops it within the grace period and removes it.
    Graceful,
    /// `spec.finalizers` hold it too (the namespace controller empties it, then removes them through the
    /// `finalize` subresource), and its `status.phase` reads `Terminating` meanwhile.
    Finalized,
}

/// How a resource served at a second version keeps its objects: as objects of the resource it names (same
/// group and plural, or the kind upstream converts it to), converted on every read and write, as upstream
/// stores one version of a group-resource and serves the others through conversion.
#[derive(Debug)]
pub struct Conversion {
    /// The group, version and plural of the resource whose stored objects these are.
    pub stored_as: (&'static str, &'static str, &'static str),
    /// From this resource's form to the stored one.
    pub to_stored: fn(Value) -> Value,
    /// From the stored form to this resource's.
    pub from_stored: fn(Value) -> Value,
}

/// What serves a resource's verbs: the store, or, for the few resources whose objects are never stored,
/// what the server does instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Objects in the store under the resource's keys, with every verb.
    Stored,
    /// Create only: a create binds the pod the Binding names to a node, as `pods/{name}/binding` does.
    PodBinding,
    /// Get and list only: each read computes the objects from the replicas' health (upstream's deprecated
    /// ComponentStatus).
    ComponentStatuses,
    /// Get and list only: the usage of the nodes or pods of the same plural, from the leader's resource metrics
    /// (`metrics.k8s.io`'s NodeMetrics and PodMetrics).
    Metrics,
    /// Create only: the answer says what a user may do (the access reviews `kubectl auth can-i` asks) or who
    /// the requester is (`kubectl auth whoami`); nothing is stored.
    Review,
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
    pub typed: fn(&Value) -> Result<Typed, String>,
    /// Registers the kind's OpenAPI schema (and those it refers to) and returns a reference to it.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Upstream's defaulting, run on every write (create, update, patch, apply).
    pub defaults: fn(&mut Value),
    /// What upstream's registry defaults only on create, after `defaults`, and what its admission adds to
    /// every new object of the kind without reading other objects (TaintNodesByCondition's not-ready taint).
    pub create_defaults: fn(&mut Value),
    /// What a new object starts from, whatever the client sent (upstream's `PrepareForCreate`): its status
    /// kept, reset (controllers set it through the status subresource), or set to the kind's initial status.
    pub prepare_for_create: fn(&mut Value),
    /// What an update changes beyond what every update keeps (upstream's `PrepareForUpdate`), given the stored
    /// object and the new one after its defaults: a Service drops the fields its new type no longer uses.
    pub prepare_for_update: fn(&Value, &mut Value),
    /// The kind's own validation; the metadata rules every kind shares run before it.
    pub validate: fn(&Value, &mut Causes),
    /// The kind's update rules (`old`, `new`): what may not change, after every create rule on `new`.
    pub validate_update: fn(&Value, &Value, &mut Causes),
    /// The syntax of `metadata.name`.
    pub names: NameRule,
    /// The columns `kubectl get` prints.
    pub printer: Printer,
    /// How a deletion finishes.
    pub deletion: Deletion,
    /// Whether objects claim Service cluster IPs and node ports (released when they give them up or go).
    pub allocates_addresses: bool,
    /// Whether a new object runs as a ServiceAccount of its namespace (`spec.serviceAccountName`, `default` when
    /// unset), which must exist: upstream's ServiceAccount admission.
    pub runs_as_service_account: bool,
    /// Whether a new object gets its `default` ServiceAccount at once (a Namespace), so that pods can be
    /// created in it right away.
    pub creates_default_service_account: bool,
    /// `spec.selector` as the `scale` subresource reports it in `status.selector`.
    pub scale_selector: fn(Option<&Value>) -> String,
    /// Names of objects that may never be deleted: the namespaces the cluster itself needs, which upstream's
    /// NamespaceLifecycle admission keeps.
    pub undeletable: &'static [&'static str],
    /// Whether a whole collection may be deleted in one request (upstream serves no deletecollection of
    /// namespaces).
    pub delete_collection: bool,
    /// `None` for a resource stored under its own plural; the conversion for one served from another's objects.
    pub conversion: Option<&'static Conversion>,
    /// What an object uses of a ResourceQuota, beyond its `count/<resource>`.
    pub usage: Usage,
    /// Whether new objects go through the pod admission steps: LimitRanger defaults and bounds, Priority,
    /// DefaultTolerationSeconds (which updates of the object itself go through too).
    pub pod_admission: bool,
    /// What serves the verbs.
    pub backing: Backing,
    /// Whether objects are stored with a time to live: every write puts the object with a lease of the server's
    /// `--event-ttl`, so it is deleted that long after its last write, as upstream stores Events. A resource
    /// with a `Conversion` follows the rule of the resource it is stored as.
    pub expires: bool,
}

/// A kind with no rules of its own: no defaults, no validation beyond the metadata rules, status kept as
/// sent, subdomain names, `NAME AGE` columns. Entries start from it and name what differs; its identity
/// fields are always replaced.
const PLAIN: Resource = Resource {
    group: "",
    version: "",
    kind: "",
    plural: "",
    singular: "",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    tracks_generation: false,
    typed: typed::<Value>,
    schema: schema::<Value>,
    defaults: defaults::no_defaults,
    create_defaults: defaults::no_defaults,
    prepare_for_create: keep_status,
    prepare_for_update: strategy::no_update_changes,
    validate: validation::no_rules,
    validate_update: validation::no_update_rules,
    names: NameRule::Dns1123Subdomain,
    printer: Printer::AgeOnly,
    deletion: Deletion::Plain,
    allocates_addresses: false,
    runs_as_service_account: false,
    creates_default_service_account: false,
    scale_selector: selectors::selector_string,
    undeletable: &[],
    delete_collection: true,
    conversion: None,
    usage: Usage::Counted,
    pod_admission: false,
    backing: Backing::Stored,
    expires: false,
};

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// A body after the typed round trip.
#[derive(Debug)]
pub struct Typed {
    /// Every field the type knows, as the type encodes it: what unknown fields are found against.
    pub known: Value,
    /// What the API server stores and returns: `known` without the empty maps and lists upstream's encoding
    /// leaves out (`omitempty`).
    pub stored: Value,
}

fn typed<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Typed, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let known = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let stored = omitempty::to_value(&t).map_err(|e| e.to_string())?;
    Ok(Typed { known, stored })
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

    /// The verbs the resource's collection and objects serve, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self.backing {
            Backing::PodBinding | Backing::Review => &["create"],
            Backing::ComponentStatuses | Backing::Metrics => &["get", "list"],
            Backing::Stored if self.delete_collection => {
                &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            }
            Backing::Stored => &["create", "delete", "get", "list", "patch", "update", "watch"],
        }
    }

    /// Whether the resource's objects are in the store (listed, watched, owned, collected).
    pub fn is_stored(&self) -> bool {
        self.backing == Backing::Stored
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key prefix of every object of this resource, or of those in one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let plural = self.conversion.map_or(self.plural, |c| c.stored_as.2);
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{plural}/{ns}/"),
            _ => format!("/registry/{plural}/"),
        }
    }

    /// A stored object in this resource's form.
    pub fn from_stored(&self, stored: Value) -> Value {
        match self.conversion {
            Some(c) => (c.from_stored)(stored),
            None => stored,
        }
    }

    /// An object of this resource in the form it is stored in.
    pub fn to_stored(&self, object: Value) -> Value {
        match self.conversion {
            Some(c) => (c.to_stored)(object),
            None => object,
        }
    }

    /// The resource whose form objects of this one are stored in: itself, or the one its conversion names.
    pub fn storage(&'static self) -> &'static Resource {
        self.conversion.and_then(|c| find(c.stored_as.0, c.stored_as.1, c.stored_as.2)).unwrap_or(self)
    }

    /// The quota resource that counts objects of this resource (`count/pods`, `count/deployments.apps`).
    pub fn count_name(&self) -> String {
        let storage = self.conversion.map_or((self.group, self.plural), |c| (c.stored_as.0, c.stored_as.2));
        super::admission::count_name(storage.0, storage.1)
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

use self::Subresource::*;

/// An entry: identity, scope, the k8s-openapi type, discovery metadata, then the rules that differ from
/// [`PLAIN`]'s.
macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr, $ty:ty,
     short: [$($short:expr),*], categories: [$($cat:expr),*], sub: [$($sub:expr),*], generation: $gen:expr
     $(, $rule:ident: $value:expr)* $(,)?) => {
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
            $($rule: $value,)*
            ..PLAIN
        }
    };
}

use super::defaults as d;
use super::strategy as s;
use super::validation as v;

/// Every served resource, in discovery order (groups in priority order).
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", false, core::v1::Namespace,
        short: ["ns"], categories: [], sub: [Status, Finalize], generation: false,
        defaults: d::default_namespace, create_defaults: d::add_kubernetes_finalizer,
        prepare_for_create: d::namespace_initial_status, names: NameRule::Dns1123Label, printer: Printer::Namespace,
        deletion: Deletion::Finalized, undeletable: &["default", "kube-public", "kube-system"],
        delete_collection: false, creates_default_service_account: true),
    resource!("", "v1", "Pod", "pods", "pod", true, core::v1::Pod,
        short: ["po"], categories: ["all"], sub: [Status, Log, Exec, Attach, Binding, Eviction], generation: false,
        defaults: d::default_pod, prepare_for_create: d::pod_initial_status, validate: v::validate_pod,
        validate_update: v::validate_pod_update, printer: Printer::Pod, deletion: Deletion::Graceful,
        usage: Usage::Pods, pod_admission: true, runs_as_service_account: true),
    resource!("", "v1", "Node", "nodes", "node", false, core::v1::Node,
        short: ["no"], categories: [], sub: [Status], generation: false,
        defaults: d::default_node, create_defaults: super::admission::add_not_ready_taint,
        prepare_for_create: s::prepare_node_for_create, printer: Printer::Node),
    resource!("", "v1", "Service", "services", "service", true, core::v1::Service,
        short: ["svc"], categories: ["all"], sub: [Status], generation: false,
        defaults: d::default_service, prepare_for_create: reset_status,
        prepare_for_update: s::drop_type_dependent_fields, validate: v::validate_service,
        validate_update: v::validate_service_update, names: NameRule::Dns1035Label, printer: Printer::Service,
        allocates_addresses: true, usage: Usage::Services),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true, core::v1::Endpoints,
        short: ["ep"], categories: [], sub: [], generation: false,
        defaults: d::default_endpoints, printer: Printer::Endpoints),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true, core::v1::ConfigMap,
        short: ["cm"], categories: [], sub: [], generation: false,
        validate: v::validate_config_map, validate_update: v::validate_config_map_update,
        printer: Printer::ConfigMap, usage: Usage::Object("configmaps")),
    resource!("", "v1", "Secret", "secrets", "secret", true, core::v1::Secret,
        short: [], categories: [], sub: [], generation: false,
        defaults: d::default_secret, validate: v::validate_secret, validate_update: v::validate_secret_update,
        printer: Printer::Secret, usage: Usage::Object("secrets")),
    resource!("", "v1", "Event", "events", "event", true, core::v1::Event,
        short: ["ev"], categories: [], sub: [], generation: false, printer: Printer::Event, expires: true),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, core::v1::ServiceAccount,
        short: ["sa"], categories: [], sub: [Token], generation: false, printer: Printer::ServiceAccount),
    resource!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true,
        core::v1::ReplicationController, short: ["rc"], categories: ["all"], sub: [Status, Scale], generation: true,
        defaults: d::default_replication_controller, prepare_for_create: reset_status,
        validate: v::validate_replication_controller, printer: Printer::ReplicationController,
        scale_selector: selectors::set_selector_string, usage: Usage::Object("replicationcontrollers")),
    resource!("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, core::v1::PodTemplate,
        short: [], categories: [], sub: [], generation: false,
        defaults: d::default_pod_template, validate: v::validate_pod_template_object, printer: Printer::PodTemplate),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true,
        core::v1::PersistentVolumeClaim, short: ["pvc"], categories: [], sub: [Status], generation: false,
        defaults: d::default_persistent_volume_claim, prepare_for_create: reset_status,
        printer: Printer::PersistentVolumeClaim, usage: Usage::Claims),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false,
        core::v1::PersistentVolume, short: ["pv"], categories: [], sub: [Status], generation: false,
        defaults: d::default_persistent_volume, prepare_for_create: reset_status,
        printer: Printer::PersistentVolume),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange", true, core::v1::LimitRange,
        short: ["limits"], categories: [], sub: [], generation: false,
        defaults: d::default_limit_range, validate: v::validate_limit_range, printer: Printer::LimitRange),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, core::v1::ResourceQuota,
        short: ["quota"], categories: [], sub: [Status], generation: false,
        prepare_for_create: reset_status, validate: v::validate_resource_quota, printer: Printer::ResourceQuota,
        usage: Usage::Object("resourcequotas")),
    resource!("", "v1", "Binding", "bindings", "binding", true, core::v1::Binding,
        short: [], categories: [], sub: [], generation: false, backing: Backing::PodBinding),
    resource!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", false, core::v1::ComponentStatus,
        short: ["cs"], categories: [], sub: [], generation: false, printer: Printer::ComponentStatus,
        backing: Backing::ComponentStatuses),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true, apps::v1::Deployment,
        short: ["deploy"], categories: ["all"], sub: [Status, Scale], generation: true,
        defaults: d::default_deployment, prepare_for_create: reset_status, validate: v::validate_deployment,
        validate_update: v::validate_selector_unchanged, printer: Printer::Deployment),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, apps::v1::ReplicaSet,
        short: ["rs"], categories: ["all"], sub: [Status, Scale], generation: true,
        defaults: d::default_replica_set, prepare_for_create: reset_status, validate: v::validate_replica_set,
        validate_update: v::validate_selector_unchanged, printer: Printer::ReplicaSet),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, apps::v1::StatefulSet,
        short: ["sts"], categories: ["all"], sub: [Status, Scale], generation: true,
        defaults: d::default_stateful_set, prepare_for_create: reset_status, validate: v::validate_stateful_set,
        validate_update: v::validate_stateful_set_update, printer: Printer::StatefulSet),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, apps::v1::DaemonSet,
        short: ["ds"], categories: ["all"], sub: [Status], generation: true,
        defaults: d::default_daemon_set, prepare_for_create: reset_status, validate: v::validate_daemon_set,
        validate_update: v::validate_selector_unchanged, printer: Printer::DaemonSet),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true,
        apps::v1::ControllerRevision, short: [], categories: [], sub: [], generation: false,
        printer: Printer::ControllerRevision),
    resource!("batch", "v1", "Job", "jobs", "job", true, batch::v1::Job,
        short: [], categories: ["all"], sub: [Status], generation: true,
        defaults: d::default_job, create_defaults: s::generate_job_selector, prepare_for_create: reset_status,
        validate: v::validate_job,
        validate_update: v::validate_job_update, printer: Printer::Job),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, batch::v1::CronJob,
        short: ["cj"], categories: ["all"], sub: [Status], generation: true,
        defaults: d::default_cron_job, prepare_for_create: reset_status, validate: v::validate_cron_job,
        printer: Printer::CronJob),
    resource!("events.k8s.io", "v1", "Event", "events", "event", true, events::v1::Event,
        short: [], categories: [], sub: [], generation: false,
        validate: v::validate_events_event, printer: Printer::Event, conversion: Some(&EVENTS_V1)),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, coordination::v1::Lease,
        short: [], categories: [], sub: [], generation: false, printer: Printer::Lease),
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        true, autoscaling::v2::HorizontalPodAutoscaler, short: ["hpa"], categories: ["all"], sub: [Status],
        generation: true, defaults: d::default_horizontal_pod_autoscaler, prepare_for_create: reset_status,
        validate: v::validate_horizontal_pod_autoscaler, printer: Printer::HorizontalPodAutoscaler),
    resource!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        true, autoscaling::v1::HorizontalPodAutoscaler, short: ["hpa"], categories: ["all"], sub: [Status],
        generation: true, defaults: d::default_horizontal_pod_autoscaler, prepare_for_create: reset_status,
        validate: v::validate_horizontal_pod_autoscaler, printer: Printer::HorizontalPodAutoscaler,
        conversion: Some(&AUTOSCALING_V1)),
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true,
        policy::v1::PodDisruptionBudget, short: ["pdb"], categories: [], sub: [Status], generation: true,
        prepare_for_create: reset_status, printer: Printer::PodDisruptionBudget),
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, networking::v1::Ingress,
        short: ["ing"], categories: [], sub: [Status], generation: true,
        prepare_for_create: reset_status, validate: v::validate_ingress, printer: Printer::Ingress),
    resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false,
        networking::v1::IngressClass, short: [], categories: [], sub: [], generation: true,
        validate: v::validate_ingress_class, validate_update: v::validate_ingress_class_update,
        printer: Printer::IngressClass),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true,
        networking::v1::NetworkPolicy, short: ["netpol"], categories: [], sub: [], generation: true,
        defaults: d::default_network_policy, validate: v::validate_network_policy, printer: Printer::NetworkPolicy),
    resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false,
        scheduling::v1::PriorityClass, short: ["pc"], categories: [], sub: [], generation: false,
        defaults: d::default_priority_class, validate: v::validate_priority_class,
        validate_update: v::validate_priority_class_update, printer: Printer::PriorityClass),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true,
        discovery::v1::EndpointSlice, short: [], categories: [], sub: [], generation: false,
        defaults: d::default_endpoint_slice, validate: v::validate_endpoint_slice,
        validate_update: v::validate_endpoint_slice_update, printer: Printer::EndpointSlice),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false,
        rbac::v1::ClusterRole, short: [], categories: [], sub: [], generation: false,
        validate: v::validate_cluster_role, names: NameRule::PathSegment, printer: Printer::Role),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
        false, rbac::v1::ClusterRoleBinding, short: [], categories: [], sub: [], generation: false,
        validate: v::validate_cluster_role_binding, validate_update: v::validate_binding_update,
        names: NameRule::PathSegment, printer: Printer::RoleBinding),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, rbac::v1::Role,
        short: [], categories: [], sub: [], generation: false,
        validate: v::validate_role, names: NameRule::PathSegment, printer: Printer::Role),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true,
        rbac::v1::RoleBinding, short: [], categories: [], sub: [], generation: false,
        validate: v::validate_role_binding, validate_update: v::validate_binding_update,
        names: NameRule::PathSegment, printer: Printer::RoleBinding),
    resource!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
        "selfsubjectaccessreview", false, authorization::v1::SelfSubjectAccessReview,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Review),
    resource!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
        "selfsubjectrulesreview", false, authorization::v1::SelfSubjectRulesReview,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Review),
    resource!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview",
        false, authorization::v1::SubjectAccessReview,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Review),
    resource!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
        "localsubjectaccessreview", true, authorization::v1::LocalSubjectAccessReview,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Review),
    resource!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false,
        authentication::v1::SelfSubjectReview, short: [], categories: [], sub: [], generation: false,
        backing: Backing::Review),
    resource!("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "nodemetrics", false, Value,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Metrics),
    resource!("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "podmetrics", true, Value,
        short: [], categories: [], sub: [], generation: false, backing: Backing::Metrics),
];

/// `autoscaling/v1` HorizontalPodAutoscalers are stored as `autoscaling/v2` ones.
static AUTOSCALING_V1: Conversion = Conversion {
    stored_as: ("autoscaling", "v2", "horizontalpodautoscalers"),
    to_stored: conversion::autoscaling_v1_to_v2,
    from_stored: conversion::autoscaling_v2_to_v1,
};

/// `events.k8s.io/v1` Events are the core `v1` Events.
static EVENTS_V1: Conversion = Conversion {
    stored_as: ("", "v1", "events"),
    to_stored: conversion::events_v1_to_core,
    from_stored: conversion::core_to_events_v1,
};

/// The type check of the `autoscaling/v1 Scale` objects the `/scale` subresources speak.
pub fn typed_scale(v: &Value) -> Result<Value, String> {
    typed::<autoscaling::v1::Scale>(v).map(|t| t.stored)
}

/// The resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// A resource served in `group` under `plural`, in any version.
pub fn named(group: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
}

/// The resources whose objects are stored under their own keys: each stored object once.
pub fn stored() -> impl Iterator<Item = &'static Resource> {
    RESOURCES.iter().filter(|r| r.is_stored() && r.conversion.is_none())
}

/// A served version of a group and its resources.
pub type GroupVersion = (&'static str, Vec<&'static Resource>);

/// The groups served, in discovery order, each with its versions (the preferred one first) and their resources.
pub fn groups() -> Vec<(&'static str, Vec<GroupVersion>)> {
    let mut out: Vec<(&'static str, Vec<GroupVersion>)> = Vec::new();
    for (group, version, resources) in group_versions() {
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push((version, resources)),
            None => out.push((group, vec![(version, resources)])),
        }
    }
    out
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

/// The served resource of `kind` in `group`, for tests that name kinds.
#[cfg(test)]
pub(crate) fn served(group: &str, kind: &str) -> &'static Resource {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind).unwrap_or_else(|| panic!("{group}/{kind} is served"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_so_keys_and_names_never_collide() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                if a.is_stored() && b.is_stored() && a.conversion.is_none() && b.conversion.is_none() {
                    assert_ne!(a.prefix(None), b.prefix(None));
                }
                assert_ne!((a.group, a.version, a.kind), (b.group, b.version, b.kind));
                assert_ne!((a.group, a.version, a.singular), (b.group, b.version, b.singular));
                // Versions of one resource share its short names; no other two resources do.
                let versions_of_one = (a.group, a.plural) == (b.group, b.plural);
                for short in a.short_names.iter().filter(|_| !versions_of_one) {
                    assert!(!b.short_names.contains(short), "{short} names {} and {}", a.kind, b.kind);
                }
            }
        }
    }

    #[test]
    fn every_served_kind_prints_one_cell_per_column() {
        let objects = [
            serde_json::json!({}),
            serde_json::json!({"metadata": {"name": "a", "creationTimestamp": "2024-05-01T12:00:00Z"}}),
            serde_json::json!({"metadata": {"name": "b", "deletionTimestamp": "x"}, "spec": {"template": {}},
                "status": {"phase": "Bound", "conditions": [{}]}}),
            serde_json::json!(null),
        ];
        for resource in RESOURCES {
            let table = super::super::table::table(resource, &objects, 1_714_564_800, true, Default::default());
            let columns = table["columnDefinitions"].as_array().map_or(0, Vec::len);
            assert!(columns >= 2, "{} prints its name and more", resource.kind);
            for row in table["rows"].as_array().into_iter().flatten() {
                assert_eq!(row["cells"].as_array().map_or(0, Vec::len), columns, "{}", resource.kind);
            }
        }
    }

    #[test]
    fn converted_resources_are_stored_as_a_resource_of_their_own_keys() {
        for resource in RESOURCES.iter().filter(|r| r.conversion.is_some()) {
            let storage = resource.storage();
            assert!(storage.conversion.is_none() && storage != resource, "{}", resource.api_version());
            assert_eq!(resource.prefix(Some("ns")), storage.prefix(Some("ns")));
            assert_eq!(resource.namespaced, storage.namespaced);
        }
    }

    #[test]
    fn events_of_both_versions_and_nothing_else_are_stored_with_a_time_to_live() {
        let expiring: Vec<String> = RESOURCES
            .iter()
            .filter(|r| r.storage().expires)
            .map(|r| format!("{}/{}", r.api_version(), r.kind))
            .collect();
        assert_eq!(expiring, ["v1/Event", "events.k8s.io/v1/Event"]);
        for resource in RESOURCES.iter().filter(|r| r.conversion.is_some()) {
            assert!(!resource.expires, "{} follows the rule of its storage", resource.api_version());
        }
    }

    #[test]
    fn kinds_whose_status_controllers_set_do_not_take_it_from_a_create() {
        // A Node registers with its status: its kubelet sets it from the start.
        let registered_with_status = ["Node"];
        for resource in RESOURCES.iter().filter(|r| r.has(Subresource::Status)) {
            if registered_with_status.contains(&resource.kind) {
                let mut obj = serde_json::json!({"metadata": {"name": "a"}, "status": {"capacity": {"cpu": "1"}}});
                (resource.prepare_for_create)(&mut obj);
                assert_eq!(obj["status"]["capacity"]["cpu"], "1", "{}", resource.kind);
                continue;
            }
            let mut obj = serde_json::json!({"metadata": {"name": "a"}, "status": {"sent": "by the client"}});
            (resource.prepare_for_create)(&mut obj);
            assert_ne!(obj["status"]["sent"], "by the client", "{}", resource.kind);
        }
    }

    #[test]
    fn only_kinds_with_a_finalize_subresource_are_held_by_spec_finalizers() {
        for resource in RESOURCES {
            assert_eq!(resource.has(Finalize), resource.deletion == Deletion::Finalized, "{}", resource.kind);
        }
    }

    #[test]
    fn resources_that_are_not_stored_serve_only_their_verbs() {
        assert_eq!(find("", "v1", "bindings").unwrap().verbs(), ["create"]);
        assert_eq!(find("", "v1", "componentstatuses").unwrap().verbs(), ["get", "list"]);
        assert_eq!(find("metrics.k8s.io", "v1beta1", "pods").unwrap().verbs(), ["get", "list"]);
        for resource in RESOURCES.iter().filter(|r| !r.is_stored()) {
            assert!(resource.subresources.is_empty(), "{}", resource.kind);
            assert_eq!(resource.deletion, Deletion::Plain, "{}", resource.kind);
            assert!(!resource.allocates_addresses, "{}", resource.kind);
        }
    }

    #[test]
    fn typed_check_refuses_a_wrong_kind_and_prunes_unknown_fields() {
        let pods = find("", "v1", "pods").unwrap();
        assert!((pods.typed)(&serde_json::json!({"kind": "Service", "apiVersion": "v1"})).is_err());
        let v = (pods.typed)(&serde_json::json!({"metadata": {"name": "a", "bogus": 1}})).unwrap().stored;
        assert_eq!(v["metadata"], serde_json::json!({"name": "a"}));
        assert_eq!(v["kind"], "Pod");
    }

    #[test]
    fn typed_check_stores_no_empty_maps_but_knows_them() {
        let config_maps = find("", "v1", "configmaps").unwrap();
        let t = (config_maps.typed)(&serde_json::json!({"metadata": {"name": "a", "annotations": {}}, "data": {}}))
            .unwrap();
        assert_eq!(t.known["metadata"]["annotations"], serde_json::json!({}));
        assert_eq!(t.known["data"], serde_json::json!({}));
        assert_eq!(t.stored, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
    }
}
