//! The patch metadata of the kinds raftsman serves: which lists merge by which key, which lists are sets or
//! atomic, and which objects are unions whose unset members a patch may clear (`retainKeys`).
//!
//! The table is a graph of named object types (`ObjectMeta`, `PodSpec`, `Container`, ...) whose fields point at
//! other types, so `PodSpec` is described once and reached from a Pod at `spec`, from a Deployment at
//! `spec.template.spec` and from a CronJob at `spec.jobTemplate.spec.template.spec`. The facts follow the
//! Kubernetes 1.33 API: the Go types' `patchStrategy`/`patchMergeKey` tags (used by strategic merge patch) and the
//! `listType`/`listMapKey`/`mapType` markers (used by server-side apply). The two can differ: Job
//! `status.conditions` merges by `type` under a strategic merge patch but is atomic for server-side apply.
//!
//! Invariants:
//! - Only fields that carry patch metadata, or lead to fields that do, are listed. A field missing from the table
//!   is unknown (`field` answers `None`) and is patched as a plain map or an atomic list, which is what its
//!   upstream metadata says anyway.
//! - Objects and maps carry `PatchStrategy::Merge` unless upstream says otherwise; lists carry
//!   `PatchStrategy::Replace` (atomic) unless upstream says `merge`. Every merging list of objects has a merge key;
//!   a merging list without one is a set of primitives.
//! - The graph has no cycles, so walking a path always ends.

use std::fmt;

/// How a strategic merge patch combines a field's value with the patch's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's value replaces the whole field: the default for lists (atomic). On an object or a map it
    /// would mean the same, but no served object or map carries it.
    Replace,
    /// Objects and maps merge key by key; lists merge item by item (by merge key, or as a set of primitives).
    Merge,
    /// An object that is a union: a `$retainKeys` directive clears the members it does not name.
    RetainKeys,
    /// A merging list whose items are unions (`merge,retainKeys` upstream, e.g. `PodSpec.volumes`).
    MergeRetainKeys,
}

impl PatchStrategy {
    /// True if the value merges with the patch rather than being replaced by it.
    pub fn merges(self) -> bool {
        !matches!(self, PatchStrategy::Replace)
    }

    /// True if the field, or each item of the list, is a union that `$retainKeys` may prune.
    pub fn retains_keys(self) -> bool {
        matches!(self, PatchStrategy::RetainKeys | PatchStrategy::MergeRetainKeys)
    }
}

/// How server-side apply identifies a list's items (`x-kubernetes-list-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value: whoever sets it owns all of it.
    Atomic,
    /// A set of primitives: each distinct value is an item.
    Set,
    /// A list of objects identified by these keys (`x-kubernetes-list-map-keys`).
    Map(&'static [&'static str]),
}

/// What a list's items or a map's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    Object(&'static ObjectType),
    /// A string, number or boolean, or a value this table does not look into (quantities, int-or-string).
    Primitive,
}

/// What kind of node a field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An object of a named type of the graph.
    Object(&'static ObjectType),
    /// A map from free-form keys to values (labels, resource lists, ConfigMap data). `atomic` maps are replaced
    /// whole by server-side apply (`x-kubernetes-map-type: atomic`); a strategic merge patch still merges them.
    Map {
        value: Element,
        atomic: bool,
    },
    /// A list.
    List {
        element: Element,
        list_type: ListType,
    },
    Primitive,
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSchema {
    pub shape: Shape,
    pub strategy: PatchStrategy,
    /// The field that identifies a merging list's items under a strategic merge patch (`patchMergeKey`).
    pub merge_key: Option<&'static str>,
}

impl FieldSchema {
    /// An object field that merges key by key.
    pub const fn object(object_type: &'static ObjectType) -> FieldSchema {
        FieldSchema { shape: Shape::Object(object_type), strategy: PatchStrategy::Merge, merge_key: None }
    }

    /// The schema of a list item or map value of this shape.
    pub const fn of_element(element: Element) -> FieldSchema {
        match element {
            Element::Object(object_type) => FieldSchema::object(object_type),
            Element::Primitive => PRIMITIVE,
        }
    }

    /// The list type, for lists.
    pub fn list_type(&self) -> Option<ListType> {
        match self.shape {
            Shape::List { list_type, .. } => Some(list_type),
            _ => None,
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self.shape, Shape::List { .. })
    }

    /// The schema of one item, for lists.
    pub fn item(&self) -> Option<FieldSchema> {
        match self.shape {
            Shape::List { element, .. } => Some(FieldSchema::of_element(element)),
            _ => None,
        }
    }

    /// The schema of the child named `name`: a field of an object, the value at a key of a map, or a field of a
    /// list's items (list indices are skipped). `None` if the table does not know it.
    pub fn child(&self, name: &str) -> Option<FieldSchema> {
        match self.shape {
            Shape::Object(object_type) => object_type.field(name),
            Shape::Map { value, .. } => Some(FieldSchema::of_element(value)),
            Shape::List { element: Element::Object(object_type), .. } => object_type.field(name),
            Shape::List { element: Element::Primitive, .. } | Shape::Primitive => None,
        }
    }
}

/// A named object type and those of its fields that matter to patching.
pub struct ObjectType {
    pub name: &'static str,
    pub fields: &'static [(&'static str, FieldSchema)],
}

impl ObjectType {
    const fn new(name: &'static str, fields: &'static [(&'static str, FieldSchema)]) -> ObjectType {
        ObjectType { name, fields }
    }

    /// A type none of whose fields carries patch metadata.
    const fn plain(name: &'static str) -> ObjectType {
        ObjectType { name, fields: &[] }
    }

    pub fn field(&self, name: &str) -> Option<FieldSchema> {
        self.fields.iter().find(|(field, _)| *field == name).map(|(_, schema)| *schema)
    }
}

impl PartialEq for ObjectType {
    fn eq(&self, other: &ObjectType) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for ObjectType {}

impl fmt::Debug for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The root type of a served kind, by API group (`""` for core) and kind.
pub fn root(group: &str, kind: &str) -> Option<&'static ObjectType> {
    KINDS.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, _, object_type)| *object_type)
}

/// The served kinds as (group, kind).
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    KINDS.iter().map(|(group, kind, _)| (*group, *kind))
}

/// The schema of the field at `path` (field names from the kind's root, list indices skipped) of (group, kind).
/// The empty path is the root object. `None` means unknown: patched as a plain map or an atomic list.
pub fn field(group: &str, kind: &str, path: &[&str]) -> Option<FieldSchema> {
    let mut schema = FieldSchema::object(root(group, kind)?);
    for name in path {
        schema = schema.child(name)?;
    }
    Some(schema)
}

// Constructors for the table below.

const PRIMITIVE: FieldSchema =
    FieldSchema { shape: Shape::Primitive, strategy: PatchStrategy::Replace, merge_key: None };
const STRING_MAP: FieldSchema = FieldSchema {
    shape: Shape::Map { value: Element::Primitive, atomic: false },
    strategy: PatchStrategy::Merge,
    merge_key: None,
};
const ATOMIC_STRING_MAP: FieldSchema = FieldSchema {
    shape: Shape::Map { value: Element::Primitive, atomic: true },
    strategy: PatchStrategy::Merge,
    merge_key: None,
};
/// An atomic list of primitives.
const ATOMIC_PRIMITIVES: FieldSchema = atomic(Element::Primitive);
/// A set of primitives for server-side apply that a strategic merge patch still replaces whole.
const SET: FieldSchema = FieldSchema {
    shape: Shape::List { element: Element::Primitive, list_type: ListType::Set },
    strategy: PatchStrategy::Replace,
    merge_key: None,
};
/// A set of primitives that a strategic merge patch merges (union, `$deleteFromPrimitiveList`).
const MERGING_SET: FieldSchema = FieldSchema {
    shape: Shape::List { element: Element::Primitive, list_type: ListType::Set },
    strategy: PatchStrategy::Merge,
    merge_key: None,
};

const fn object(object_type: &'static ObjectType) -> FieldSchema {
    FieldSchema::object(object_type)
}

/// A union object: `$retainKeys` clears the members it does not name.
const fn union(object_type: &'static ObjectType) -> FieldSchema {
    FieldSchema { shape: Shape::Object(object_type), strategy: PatchStrategy::RetainKeys, merge_key: None }
}

const fn atomic(element: Element) -> FieldSchema {
    FieldSchema {
        shape: Shape::List { element, list_type: ListType::Atomic },
        strategy: PatchStrategy::Replace,
        merge_key: None,
    }
}

const fn atomic_of(object_type: &'static ObjectType) -> FieldSchema {
    atomic(Element::Object(object_type))
}

/// A list of objects merged by `merge_key`; a list map keyed by `map_keys` for server-side apply.
const fn keyed(
    object_type: &'static ObjectType,
    merge_key: &'static str,
    map_keys: &'static [&'static str],
) -> FieldSchema {
    FieldSchema {
        shape: Shape::List { element: Element::Object(object_type), list_type: ListType::Map(map_keys) },
        strategy: PatchStrategy::Merge,
        merge_key: Some(merge_key),
    }
}

/// Like `keyed`, and each item is a union pruned by `$retainKeys`.
const fn keyed_unions(
    object_type: &'static ObjectType,
    merge_key: &'static str,
    map_keys: &'static [&'static str],
) -> FieldSchema {
    FieldSchema {
        shape: Shape::List { element: Element::Object(object_type), list_type: ListType::Map(map_keys) },
        strategy: PatchStrategy::MergeRetainKeys,
        merge_key: Some(merge_key),
    }
}

/// Merged by `merge_key` under a strategic merge patch, yet atomic for server-side apply.
const fn keyed_atomic(object_type: &'static ObjectType, merge_key: &'static str) -> FieldSchema {
    FieldSchema {
        shape: Shape::List { element: Element::Object(object_type), list_type: ListType::Atomic },
        strategy: PatchStrategy::Merge,
        merge_key: Some(merge_key),
    }
}

/// A list map for server-side apply that a strategic merge patch replaces whole.
const fn list_map(object_type: &'static ObjectType, map_keys: &'static [&'static str]) -> FieldSchema {
    FieldSchema {
        shape: Shape::List { element: Element::Object(object_type), list_type: ListType::Map(map_keys) },
        strategy: PatchStrategy::Replace,
        merge_key: None,
    }
}

/// Conditions, merged by `type` everywhere.
const fn conditions(object_type: &'static ObjectType) -> FieldSchema {
    keyed(object_type, "type", &["type"])
}

static KINDS: &[(&str, &str, &ObjectType)] = &[
    ("", "Namespace", &NAMESPACE),
    ("", "Pod", &POD),
    ("", "Node", &NODE),
    ("", "Service", &SERVICE),
    ("", "Endpoints", &ENDPOINTS),
    ("", "ConfigMap", &CONFIG_MAP),
    ("", "Secret", &SECRET),
    ("", "Event", &EVENT),
    ("", "ServiceAccount", &SERVICE_ACCOUNT),
    ("apps", "Deployment", &DEPLOYMENT),
    ("apps", "ReplicaSet", &REPLICA_SET),
    ("apps", "StatefulSet", &STATEFUL_SET),
    ("apps", "DaemonSet", &DAEMON_SET),
    ("apps", "ControllerRevision", &CONTROLLER_REVISION),
    ("batch", "Job", &JOB),
    ("batch", "CronJob", &CRON_JOB),
    ("coordination.k8s.io", "Lease", &LEASE),
    ("autoscaling", "HorizontalPodAutoscaler", &HORIZONTAL_POD_AUTOSCALER),
    ("autoscaling", "Scale", &SCALE),
    ("discovery.k8s.io", "EndpointSlice", &ENDPOINT_SLICE),
    ("", "ReplicationController", &REPLICATION_CONTROLLER),
    ("", "PodTemplate", &POD_TEMPLATE),
    ("", "PersistentVolumeClaim", &PERSISTENT_VOLUME_CLAIM),
    ("", "PersistentVolume", &PERSISTENT_VOLUME),
    ("", "LimitRange", &LIMIT_RANGE),
    ("", "ResourceQuota", &RESOURCE_QUOTA),
    ("events.k8s.io", "Event", &EVENTS_EVENT),
    ("networking.k8s.io", "Ingress", &INGRESS),
    ("networking.k8s.io", "IngressClass", &INGRESS_CLASS),
    ("networking.k8s.io", "NetworkPolicy", &NETWORK_POLICY),
    ("scheduling.k8s.io", "PriorityClass", &PRIORITY_CLASS),
    ("policy", "PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    ("rbac.authorization.k8s.io", "Role", &ROLE),
    ("rbac.authorization.k8s.io", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io", "RoleBinding", &ROLE_BINDING),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", &CLUSTER_ROLE_BINDING),
];

// meta/v1

static OBJECT_META: ObjectType = ObjectType::new(
    "ObjectMeta",
    &[
        ("labels", STRING_MAP),
        ("annotations", STRING_MAP),
        ("finalizers", MERGING_SET),
        ("ownerReferences", keyed(&OWNER_REFERENCE, "uid", &["uid"])),
        ("managedFields", atomic_of(&MANAGED_FIELDS_ENTRY)),
    ],
);
static OWNER_REFERENCE: ObjectType = ObjectType::plain("OwnerReference");
static MANAGED_FIELDS_ENTRY: ObjectType = ObjectType::plain("ManagedFieldsEntry");
static LABEL_SELECTOR: ObjectType = ObjectType::new(
    "LabelSelector",
    &[("matchLabels", STRING_MAP), ("matchExpressions", atomic_of(&LABEL_SELECTOR_REQUIREMENT))],
);
static LABEL_SELECTOR_REQUIREMENT: ObjectType =
    ObjectType::new("LabelSelectorRequirement", &[("values", ATOMIC_PRIMITIVES)]);
static CONDITION: ObjectType = ObjectType::plain("Condition");

// The roots of the served kinds.

static NAMESPACE: ObjectType = ObjectType::new(
    "Namespace",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&NAMESPACE_SPEC)), ("status", object(&NAMESPACE_STATUS))],
);
static POD: ObjectType = ObjectType::new(
    "Pod",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&POD_SPEC)), ("status", object(&POD_STATUS))],
);
static NODE: ObjectType = ObjectType::new(
    "Node",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&NODE_SPEC)), ("status", object(&NODE_STATUS))],
);
static SERVICE: ObjectType = ObjectType::new(
    "Service",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&SERVICE_SPEC)), ("status", object(&SERVICE_STATUS))],
);
static ENDPOINTS: ObjectType =
    ObjectType::new("Endpoints", &[("metadata", object(&OBJECT_META)), ("subsets", atomic_of(&ENDPOINT_SUBSET))]);
static CONFIG_MAP: ObjectType = ObjectType::new(
    "ConfigMap",
    &[("metadata", object(&OBJECT_META)), ("data", STRING_MAP), ("binaryData", STRING_MAP)],
);
static SECRET: ObjectType =
    ObjectType::new("Secret", &[("metadata", object(&OBJECT_META)), ("data", STRING_MAP), ("stringData", STRING_MAP)]);
static EVENT: ObjectType = ObjectType::new("Event", &[("metadata", object(&OBJECT_META))]);
static SERVICE_ACCOUNT: ObjectType = ObjectType::new(
    "ServiceAccount",
    &[
        ("metadata", object(&OBJECT_META)),
        ("secrets", keyed(&OBJECT_REFERENCE, "name", &["name"])),
        ("imagePullSecrets", atomic_of(&LOCAL_OBJECT_REFERENCE)),
    ],
);
static DEPLOYMENT: ObjectType = ObjectType::new(
    "Deployment",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&DEPLOYMENT_SPEC)), ("status", object(&DEPLOYMENT_STATUS))],
);
static REPLICA_SET: ObjectType = ObjectType::new(
    "ReplicaSet",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&REPLICA_SET_SPEC)), ("status", object(&REPLICA_SET_STATUS))],
);
static STATEFUL_SET: ObjectType = ObjectType::new(
    "StatefulSet",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&STATEFUL_SET_SPEC)),
        ("status", object(&STATEFUL_SET_STATUS)),
    ],
);
static DAEMON_SET: ObjectType = ObjectType::new(
    "DaemonSet",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&DAEMON_SET_SPEC)), ("status", object(&DAEMON_SET_STATUS))],
);
/// `data` is an embedded object of any kind: unknown here, so it is patched as a plain map.
static CONTROLLER_REVISION: ObjectType = ObjectType::new("ControllerRevision", &[("metadata", object(&OBJECT_META))]);
static JOB: ObjectType = ObjectType::new(
    "Job",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&JOB_SPEC)), ("status", object(&JOB_STATUS))],
);
static CRON_JOB: ObjectType = ObjectType::new(
    "CronJob",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&CRON_JOB_SPEC)), ("status", object(&CRON_JOB_STATUS))],
);
static LEASE: ObjectType = ObjectType::new("Lease", &[("metadata", object(&OBJECT_META))]);
static HORIZONTAL_POD_AUTOSCALER: ObjectType = ObjectType::new(
    "HorizontalPodAutoscaler",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&HORIZONTAL_POD_AUTOSCALER_SPEC)),
        ("status", object(&HORIZONTAL_POD_AUTOSCALER_STATUS)),
    ],
);
static SCALE: ObjectType = ObjectType::new("Scale", &[("metadata", object(&OBJECT_META))]);
static REPLICATION_CONTROLLER: ObjectType = ObjectType::new(
    "ReplicationController",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&REPLICATION_CONTROLLER_SPEC))],
);
static REPLICATION_CONTROLLER_SPEC: ObjectType =
    ObjectType::new("ReplicationControllerSpec", &[("template", object(&POD_TEMPLATE_SPEC))]);
static POD_TEMPLATE: ObjectType =
    ObjectType::new("PodTemplate", &[("metadata", object(&OBJECT_META)), ("template", object(&POD_TEMPLATE_SPEC))]);
static PERSISTENT_VOLUME: ObjectType = ObjectType::new("PersistentVolume", &[("metadata", object(&OBJECT_META))]);
// Kinds whose lists are all atomic and whose maps all merge: only their metadata carries patch metadata.
static LIMIT_RANGE: ObjectType = ObjectType::new("LimitRange", &[("metadata", object(&OBJECT_META))]);
static RESOURCE_QUOTA: ObjectType = ObjectType::new("ResourceQuota", &[("metadata", object(&OBJECT_META))]);
static EVENTS_EVENT: ObjectType = ObjectType::new("Event", &[("metadata", object(&OBJECT_META))]);
static INGRESS: ObjectType = ObjectType::new("Ingress", &[("metadata", object(&OBJECT_META))]);
static INGRESS_CLASS: ObjectType = ObjectType::new("IngressClass", &[("metadata", object(&OBJECT_META))]);
static NETWORK_POLICY: ObjectType = ObjectType::new("NetworkPolicy", &[("metadata", object(&OBJECT_META))]);
static PRIORITY_CLASS: ObjectType = ObjectType::new("PriorityClass", &[("metadata", object(&OBJECT_META))]);

// rbac.authorization.k8s.io/v1: rules and subjects are replaced whole, as upstream declares no merge keys.
static ROLE: ObjectType = ObjectType::new("Role", &[("metadata", object(&OBJECT_META))]);
static CLUSTER_ROLE: ObjectType = ObjectType::new("ClusterRole", &[("metadata", object(&OBJECT_META))]);
static ROLE_BINDING: ObjectType = ObjectType::new("RoleBinding", &[("metadata", object(&OBJECT_META))]);
static CLUSTER_ROLE_BINDING: ObjectType = ObjectType::new("ClusterRoleBinding", &[("metadata", object(&OBJECT_META))]);
static POD_DISRUPTION_BUDGET: ObjectType = ObjectType::new(
    "PodDisruptionBudget",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&POD_DISRUPTION_BUDGET_SPEC)),
        ("status", object(&POD_DISRUPTION_BUDGET_STATUS)),
    ],
);
static POD_DISRUPTION_BUDGET_SPEC: ObjectType =
    ObjectType::new("PodDisruptionBudgetSpec", &[("selector", object(&LABEL_SELECTOR))]);
static POD_DISRUPTION_BUDGET_STATUS: ObjectType =
    ObjectType::new("PodDisruptionBudgetStatus", &[("conditions", conditions(&CONDITION))]);
static ENDPOINT_SLICE: ObjectType = ObjectType::new(
    "EndpointSlice",
    &[
        ("metadata", object(&OBJECT_META)),
        ("endpoints", atomic_of(&ENDPOINT)),
        ("ports", atomic_of(&DISCOVERY_ENDPOINT_PORT)),
    ],
);

// core/v1: Namespace

static NAMESPACE_SPEC: ObjectType = ObjectType::new("NamespaceSpec", &[("finalizers", ATOMIC_PRIMITIVES)]);
static NAMESPACE_STATUS: ObjectType =
    ObjectType::new("NamespaceStatus", &[("conditions", conditions(&NAMESPACE_CONDITION))]);
static NAMESPACE_CONDITION: ObjectType = ObjectType::plain("NamespaceCondition");

// core/v1: the pod template and PodSpec

static POD_TEMPLATE_SPEC: ObjectType =
    ObjectType::new("PodTemplateSpec", &[("metadata", object(&OBJECT_META)), ("spec", object(&POD_SPEC))]);
static POD_SPEC: ObjectType = ObjectType::new(
    "PodSpec",
    &[
        ("volumes", keyed_unions(&VOLUME, "name", &["name"])),
        ("initContainers", keyed(&CONTAINER, "name", &["name"])),
        ("containers", keyed(&CONTAINER, "name", &["name"])),
        ("ephemeralContainers", keyed(&EPHEMERAL_CONTAINER, "name", &["name"])),
        ("imagePullSecrets", keyed(&LOCAL_OBJECT_REFERENCE, "name", &["name"])),
        ("tolerations", atomic_of(&TOLERATION)),
        ("hostAliases", keyed(&HOST_ALIAS, "ip", &["ip"])),
        ("readinessGates", atomic_of(&POD_READINESS_GATE)),
        (
            "topologySpreadConstraints",
            keyed(&TOPOLOGY_SPREAD_CONSTRAINT, "topologyKey", &["topologyKey", "whenUnsatisfiable"]),
        ),
        ("schedulingGates", keyed(&POD_SCHEDULING_GATE, "name", &["name"])),
        ("resourceClaims", keyed_unions(&POD_RESOURCE_CLAIM, "name", &["name"])),
        ("securityContext", object(&POD_SECURITY_CONTEXT)),
        ("dnsConfig", object(&POD_DNS_CONFIG)),
        ("affinity", object(&AFFINITY)),
        ("nodeSelector", ATOMIC_STRING_MAP),
        ("overhead", STRING_MAP),
        ("resources", object(&RESOURCE_REQUIREMENTS)),
    ],
);
static LOCAL_OBJECT_REFERENCE: ObjectType = ObjectType::plain("LocalObjectReference");
static OBJECT_REFERENCE: ObjectType = ObjectType::plain("ObjectReference");
static TOLERATION: ObjectType = ObjectType::plain("Toleration");
static HOST_ALIAS: ObjectType = ObjectType::new("HostAlias", &[("hostnames", ATOMIC_PRIMITIVES)]);
static POD_READINESS_GATE: ObjectType = ObjectType::plain("PodReadinessGate");
static TOPOLOGY_SPREAD_CONSTRAINT: ObjectType = ObjectType::new(
    "TopologySpreadConstraint",
    &[("labelSelector", object(&LABEL_SELECTOR)), ("matchLabelKeys", ATOMIC_PRIMITIVES)],
);
static POD_SCHEDULING_GATE: ObjectType = ObjectType::plain("PodSchedulingGate");
static POD_RESOURCE_CLAIM: ObjectType = ObjectType::plain("PodResourceClaim");
static POD_SECURITY_CONTEXT: ObjectType = ObjectType::new(
    "PodSecurityContext",
    &[("supplementalGroups", ATOMIC_PRIMITIVES), ("sysctls", atomic_of(&SYSCTL))],
);
static SYSCTL: ObjectType = ObjectType::plain("Sysctl");
static POD_DNS_CONFIG: ObjectType = ObjectType::new(
    "PodDNSConfig",
    &[
        ("nameservers", ATOMIC_PRIMITIVES),
        ("searches", ATOMIC_PRIMITIVES),
        ("options", atomic_of(&POD_DNS_CONFIG_OPTION)),
    ],
);
static POD_DNS_CONFIG_OPTION: ObjectType = ObjectType::plain("PodDNSConfigOption");

// core/v1: affinity

static AFFINITY: ObjectType = ObjectType::new(
    "Affinity",
    &[
        ("nodeAffinity", object(&NODE_AFFINITY)),
        ("podAffinity", object(&POD_AFFINITY)),
        ("podAntiAffinity", object(&POD_ANTI_AFFINITY)),
    ],
);
static NODE_AFFINITY: ObjectType = ObjectType::new(
    "NodeAffinity",
    &[
        ("requiredDuringSchedulingIgnoredDuringExecution", object(&NODE_SELECTOR)),
        ("preferredDuringSchedulingIgnoredDuringExecution", atomic_of(&PREFERRED_SCHEDULING_TERM)),
    ],
);
static NODE_SELECTOR: ObjectType =
    ObjectType::new("NodeSelector", &[("nodeSelectorTerms", atomic_of(&NODE_SELECTOR_TERM))]);
static NODE_SELECTOR_TERM: ObjectType = ObjectType::new(
    "NodeSelectorTerm",
    &[
        ("matchExpressions", atomic_of(&NODE_SELECTOR_REQUIREMENT)),
        ("matchFields", atomic_of(&NODE_SELECTOR_REQUIREMENT)),
    ],
);
static NODE_SELECTOR_REQUIREMENT: ObjectType =
    ObjectType::new("NodeSelectorRequirement", &[("values", ATOMIC_PRIMITIVES)]);
static PREFERRED_SCHEDULING_TERM: ObjectType =
    ObjectType::new("PreferredSchedulingTerm", &[("preference", object(&NODE_SELECTOR_TERM))]);
const POD_AFFINITY_FIELDS: &[(&str, FieldSchema)] = &[
    ("requiredDuringSchedulingIgnoredDuringExecution", atomic_of(&POD_AFFINITY_TERM)),
    ("preferredDuringSchedulingIgnoredDuringExecution", atomic_of(&WEIGHTED_POD_AFFINITY_TERM)),
];
static POD_AFFINITY: ObjectType = ObjectType::new("PodAffinity", POD_AFFINITY_FIELDS);
static POD_ANTI_AFFINITY: ObjectType = ObjectType::new("PodAntiAffinity", POD_AFFINITY_FIELDS);
static POD_AFFINITY_TERM: ObjectType = ObjectType::new(
    "PodAffinityTerm",
    &[
        ("labelSelector", object(&LABEL_SELECTOR)),
        ("namespaceSelector", object(&LABEL_SELECTOR)),
        ("namespaces", ATOMIC_PRIMITIVES),
        ("matchLabelKeys", ATOMIC_PRIMITIVES),
        ("mismatchLabelKeys", ATOMIC_PRIMITIVES),
    ],
);
static WEIGHTED_POD_AFFINITY_TERM: ObjectType =
    ObjectType::new("WeightedPodAffinityTerm", &[("podAffinityTerm", object(&POD_AFFINITY_TERM))]);

// core/v1: containers

/// The fields of `Container` that matter to patching; `EphemeralContainer` shares them.
const CONTAINER_FIELDS: &[(&str, FieldSchema)] = &[
    ("command", ATOMIC_PRIMITIVES),
    ("args", ATOMIC_PRIMITIVES),
    ("ports", keyed(&CONTAINER_PORT, "containerPort", &["containerPort", "protocol"])),
    ("envFrom", atomic_of(&ENV_FROM_SOURCE)),
    ("env", keyed(&ENV_VAR, "name", &["name"])),
    ("resources", object(&RESOURCE_REQUIREMENTS)),
    ("resizePolicy", atomic_of(&CONTAINER_RESIZE_POLICY)),
    ("volumeMounts", keyed(&VOLUME_MOUNT, "mountPath", &["mountPath"])),
    ("volumeDevices", keyed(&VOLUME_DEVICE, "devicePath", &["devicePath"])),
    ("livenessProbe", object(&PROBE)),
    ("readinessProbe", object(&PROBE)),
    ("startupProbe", object(&PROBE)),
    ("lifecycle", object(&LIFECYCLE)),
    ("securityContext", object(&SECURITY_CONTEXT)),
];
static CONTAINER: ObjectType = ObjectType::new("Container", CONTAINER_FIELDS);
static EPHEMERAL_CONTAINER: ObjectType = ObjectType::new("EphemeralContainer", CONTAINER_FIELDS);
static CONTAINER_PORT: ObjectType = ObjectType::plain("ContainerPort");
static ENV_FROM_SOURCE: ObjectType = ObjectType::plain("EnvFromSource");
static ENV_VAR: ObjectType = ObjectType::plain("EnvVar");
static CONTAINER_RESIZE_POLICY: ObjectType = ObjectType::plain("ContainerResizePolicy");
static VOLUME_MOUNT: ObjectType = ObjectType::plain("VolumeMount");
static VOLUME_DEVICE: ObjectType = ObjectType::plain("VolumeDevice");
static RESOURCE_REQUIREMENTS: ObjectType = ObjectType::new(
    "ResourceRequirements",
    &[("limits", STRING_MAP), ("requests", STRING_MAP), ("claims", list_map(&RESOURCE_CLAIM, &["name"]))],
);
static RESOURCE_CLAIM: ObjectType = ObjectType::plain("ResourceClaim");
static PROBE: ObjectType =
    ObjectType::new("Probe", &[("exec", object(&EXEC_ACTION)), ("httpGet", object(&HTTP_GET_ACTION))]);
static EXEC_ACTION: ObjectType = ObjectType::new("ExecAction", &[("command", ATOMIC_PRIMITIVES)]);
static HTTP_GET_ACTION: ObjectType = ObjectType::new("HTTPGetAction", &[("httpHeaders", atomic_of(&HTTP_HEADER))]);
static HTTP_HEADER: ObjectType = ObjectType::plain("HTTPHeader");
static LIFECYCLE: ObjectType =
    ObjectType::new("Lifecycle", &[("postStart", object(&LIFECYCLE_HANDLER)), ("preStop", object(&LIFECYCLE_HANDLER))]);
static LIFECYCLE_HANDLER: ObjectType =
    ObjectType::new("LifecycleHandler", &[("exec", object(&EXEC_ACTION)), ("httpGet", object(&HTTP_GET_ACTION))]);
static SECURITY_CONTEXT: ObjectType = ObjectType::new("SecurityContext", &[("capabilities", object(&CAPABILITIES))]);
static CAPABILITIES: ObjectType =
    ObjectType::new("Capabilities", &[("add", ATOMIC_PRIMITIVES), ("drop", ATOMIC_PRIMITIVES)]);

// core/v1: volumes. A Volume is a union of its sources, pruned by `$retainKeys` through `PodSpec.volumes`.

static VOLUME: ObjectType = ObjectType::new(
    "Volume",
    &[
        ("configMap", object(&CONFIG_MAP_VOLUME_SOURCE)),
        ("secret", object(&SECRET_VOLUME_SOURCE)),
        ("downwardAPI", object(&DOWNWARD_API_VOLUME_SOURCE)),
        ("projected", object(&PROJECTED_VOLUME_SOURCE)),
        ("ephemeral", object(&EPHEMERAL_VOLUME_SOURCE)),
        ("iscsi", object(&ISCSI_VOLUME_SOURCE)),
        ("rbd", object(&RBD_VOLUME_SOURCE)),
        ("cephfs", object(&CEPH_FS_VOLUME_SOURCE)),
        ("fc", object(&FC_VOLUME_SOURCE)),
    ],
);
static CONFIG_MAP_VOLUME_SOURCE: ObjectType =
    ObjectType::new("ConfigMapVolumeSource", &[("items", atomic_of(&KEY_TO_PATH))]);
static SECRET_VOLUME_SOURCE: ObjectType = ObjectType::new("SecretVolumeSource", &[("items", atomic_of(&KEY_TO_PATH))]);
static KEY_TO_PATH: ObjectType = ObjectType::plain("KeyToPath");
static DOWNWARD_API_VOLUME_SOURCE: ObjectType =
    ObjectType::new("DownwardAPIVolumeSource", &[("items", atomic_of(&DOWNWARD_API_VOLUME_FILE))]);
static DOWNWARD_API_VOLUME_FILE: ObjectType = ObjectType::plain("DownwardAPIVolumeFile");
static PROJECTED_VOLUME_SOURCE: ObjectType =
    ObjectType::new("ProjectedVolumeSource", &[("sources", atomic_of(&VOLUME_PROJECTION))]);
static VOLUME_PROJECTION: ObjectType = ObjectType::plain("VolumeProjection");
static EPHEMERAL_VOLUME_SOURCE: ObjectType =
    ObjectType::new("EphemeralVolumeSource", &[("volumeClaimTemplate", object(&PERSISTENT_VOLUME_CLAIM_TEMPLATE))]);
static ISCSI_VOLUME_SOURCE: ObjectType = ObjectType::new("ISCSIVolumeSource", &[("portals", ATOMIC_PRIMITIVES)]);
static RBD_VOLUME_SOURCE: ObjectType = ObjectType::new("RBDVolumeSource", &[("monitors", ATOMIC_PRIMITIVES)]);
static CEPH_FS_VOLUME_SOURCE: ObjectType = ObjectType::new("CephFSVolumeSource", &[("monitors", ATOMIC_PRIMITIVES)]);
static FC_VOLUME_SOURCE: ObjectType =
    ObjectType::new("FCVolumeSource", &[("targetWWNs", ATOMIC_PRIMITIVES), ("wwids", ATOMIC_PRIMITIVES)]);

// core/v1: persistent volume claims (StatefulSet templates and ephemeral volumes)

static PERSISTENT_VOLUME_CLAIM: ObjectType = ObjectType::new(
    "PersistentVolumeClaim",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&PERSISTENT_VOLUME_CLAIM_SPEC)),
        ("status", object(&PERSISTENT_VOLUME_CLAIM_STATUS)),
    ],
);
static PERSISTENT_VOLUME_CLAIM_TEMPLATE: ObjectType = ObjectType::new(
    "PersistentVolumeClaimTemplate",
    &[("metadata", object(&OBJECT_META)), ("spec", object(&PERSISTENT_VOLUME_CLAIM_SPEC))],
);
static PERSISTENT_VOLUME_CLAIM_SPEC: ObjectType = ObjectType::new(
    "PersistentVolumeClaimSpec",
    &[
        ("accessModes", ATOMIC_PRIMITIVES),
        ("selector", object(&LABEL_SELECTOR)),
        ("resources", object(&VOLUME_RESOURCE_REQUIREMENTS)),
    ],
);
static VOLUME_RESOURCE_REQUIREMENTS: ObjectType =
    ObjectType::new("VolumeResourceRequirements", &[("limits", STRING_MAP), ("requests", STRING_MAP)]);
static PERSISTENT_VOLUME_CLAIM_STATUS: ObjectType = ObjectType::new(
    "PersistentVolumeClaimStatus",
    &[
        ("accessModes", ATOMIC_PRIMITIVES),
        ("conditions", conditions(&PERSISTENT_VOLUME_CLAIM_CONDITION)),
        ("capacity", STRING_MAP),
        ("allocatedResources", STRING_MAP),
        ("allocatedResourceStatuses", STRING_MAP),
    ],
);
static PERSISTENT_VOLUME_CLAIM_CONDITION: ObjectType = ObjectType::plain("PersistentVolumeClaimCondition");

// core/v1: PodStatus

static POD_STATUS: ObjectType = ObjectType::new(
    "PodStatus",
    &[
        ("conditions", conditions(&POD_CONDITION)),
        ("hostIPs", keyed_atomic(&HOST_IP, "ip")),
        ("podIPs", keyed(&POD_IP, "ip", &["ip"])),
        ("initContainerStatuses", atomic_of(&CONTAINER_STATUS)),
        ("containerStatuses", atomic_of(&CONTAINER_STATUS)),
        ("ephemeralContainerStatuses", atomic_of(&CONTAINER_STATUS)),
        ("resourceClaimStatuses", keyed_unions(&POD_RESOURCE_CLAIM_STATUS, "name", &["name"])),
    ],
);
static POD_CONDITION: ObjectType = ObjectType::plain("PodCondition");
static HOST_IP: ObjectType = ObjectType::plain("HostIP");
static POD_IP: ObjectType = ObjectType::plain("PodIP");
static POD_RESOURCE_CLAIM_STATUS: ObjectType = ObjectType::plain("PodResourceClaimStatus");
static CONTAINER_STATUS: ObjectType = ObjectType::new(
    "ContainerStatus",
    &[
        ("volumeMounts", keyed(&VOLUME_MOUNT_STATUS, "mountPath", &["mountPath"])),
        ("allocatedResourcesStatus", keyed(&RESOURCE_STATUS, "name", &["name"])),
        ("allocatedResources", STRING_MAP),
        ("resources", object(&RESOURCE_REQUIREMENTS)),
        ("user", object(&CONTAINER_USER)),
    ],
);
static VOLUME_MOUNT_STATUS: ObjectType = ObjectType::plain("VolumeMountStatus");
static RESOURCE_STATUS: ObjectType =
    ObjectType::new("ResourceStatus", &[("resources", list_map(&RESOURCE_HEALTH, &["resourceID"]))]);
static RESOURCE_HEALTH: ObjectType = ObjectType::plain("ResourceHealth");
static CONTAINER_USER: ObjectType = ObjectType::new("ContainerUser", &[("linux", object(&LINUX_CONTAINER_USER))]);
static LINUX_CONTAINER_USER: ObjectType =
    ObjectType::new("LinuxContainerUser", &[("supplementalGroups", ATOMIC_PRIMITIVES)]);

// core/v1: Node

static NODE_SPEC: ObjectType = ObjectType::new("NodeSpec", &[("podCIDRs", MERGING_SET), ("taints", atomic_of(&TAINT))]);
static TAINT: ObjectType = ObjectType::plain("Taint");
static NODE_STATUS: ObjectType = ObjectType::new(
    "NodeStatus",
    &[
        ("capacity", STRING_MAP),
        ("allocatable", STRING_MAP),
        ("conditions", conditions(&NODE_CONDITION)),
        ("addresses", keyed(&NODE_ADDRESS, "type", &["type"])),
        ("images", atomic_of(&CONTAINER_IMAGE)),
        ("volumesInUse", ATOMIC_PRIMITIVES),
        ("volumesAttached", atomic_of(&ATTACHED_VOLUME)),
        ("runtimeHandlers", atomic_of(&NODE_RUNTIME_HANDLER)),
    ],
);
static NODE_CONDITION: ObjectType = ObjectType::plain("NodeCondition");
static NODE_ADDRESS: ObjectType = ObjectType::plain("NodeAddress");
static CONTAINER_IMAGE: ObjectType = ObjectType::new("ContainerImage", &[("names", ATOMIC_PRIMITIVES)]);
static ATTACHED_VOLUME: ObjectType = ObjectType::plain("AttachedVolume");
static NODE_RUNTIME_HANDLER: ObjectType = ObjectType::plain("NodeRuntimeHandler");

// core/v1: Service and Endpoints

static SERVICE_SPEC: ObjectType = ObjectType::new(
    "ServiceSpec",
    &[
        ("ports", keyed(&SERVICE_PORT, "port", &["port", "protocol"])),
        ("selector", ATOMIC_STRING_MAP),
        ("clusterIPs", ATOMIC_PRIMITIVES),
        ("externalIPs", ATOMIC_PRIMITIVES),
        ("loadBalancerSourceRanges", ATOMIC_PRIMITIVES),
        ("ipFamilies", ATOMIC_PRIMITIVES),
    ],
);
static SERVICE_PORT: ObjectType = ObjectType::plain("ServicePort");
static SERVICE_STATUS: ObjectType = ObjectType::new(
    "ServiceStatus",
    &[("loadBalancer", object(&LOAD_BALANCER_STATUS)), ("conditions", conditions(&CONDITION))],
);
static LOAD_BALANCER_STATUS: ObjectType =
    ObjectType::new("LoadBalancerStatus", &[("ingress", atomic_of(&LOAD_BALANCER_INGRESS))]);
static LOAD_BALANCER_INGRESS: ObjectType =
    ObjectType::new("LoadBalancerIngress", &[("ports", atomic_of(&PORT_STATUS))]);
static PORT_STATUS: ObjectType = ObjectType::plain("PortStatus");
static ENDPOINT_SUBSET: ObjectType = ObjectType::new(
    "EndpointSubset",
    &[
        ("addresses", atomic_of(&ENDPOINT_ADDRESS)),
        ("notReadyAddresses", atomic_of(&ENDPOINT_ADDRESS)),
        ("ports", atomic_of(&CORE_ENDPOINT_PORT)),
    ],
);
static ENDPOINT_ADDRESS: ObjectType = ObjectType::plain("EndpointAddress");
static CORE_ENDPOINT_PORT: ObjectType = ObjectType::plain("EndpointPort");

// apps/v1

/// `strategy` is a union of `rollingUpdate` and whatever `type` implies; DaemonSet and StatefulSet update
/// strategies carry no such tag upstream.
static DEPLOYMENT_SPEC: ObjectType = ObjectType::new(
    "DeploymentSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        ("strategy", union(&DEPLOYMENT_STRATEGY)),
    ],
);
static DEPLOYMENT_STRATEGY: ObjectType = ObjectType::plain("DeploymentStrategy");
static DEPLOYMENT_STATUS: ObjectType =
    ObjectType::new("DeploymentStatus", &[("conditions", conditions(&DEPLOYMENT_CONDITION))]);
static DEPLOYMENT_CONDITION: ObjectType = ObjectType::plain("DeploymentCondition");
static REPLICA_SET_SPEC: ObjectType = ObjectType::new(
    "ReplicaSetSpec",
    &[("selector", object(&LABEL_SELECTOR)), ("template", object(&POD_TEMPLATE_SPEC))],
);
static REPLICA_SET_STATUS: ObjectType =
    ObjectType::new("ReplicaSetStatus", &[("conditions", conditions(&REPLICA_SET_CONDITION))]);
static REPLICA_SET_CONDITION: ObjectType = ObjectType::plain("ReplicaSetCondition");
static STATEFUL_SET_SPEC: ObjectType = ObjectType::new(
    "StatefulSetSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        ("volumeClaimTemplates", atomic_of(&PERSISTENT_VOLUME_CLAIM)),
    ],
);
static STATEFUL_SET_STATUS: ObjectType =
    ObjectType::new("StatefulSetStatus", &[("conditions", conditions(&STATEFUL_SET_CONDITION))]);
static STATEFUL_SET_CONDITION: ObjectType = ObjectType::plain("StatefulSetCondition");
static DAEMON_SET_SPEC: ObjectType = ObjectType::new(
    "DaemonSetSpec",
    &[("selector", object(&LABEL_SELECTOR)), ("template", object(&POD_TEMPLATE_SPEC))],
);
static DAEMON_SET_STATUS: ObjectType =
    ObjectType::new("DaemonSetStatus", &[("conditions", conditions(&DAEMON_SET_CONDITION))]);
static DAEMON_SET_CONDITION: ObjectType = ObjectType::plain("DaemonSetCondition");

// batch/v1

static JOB_TEMPLATE_SPEC: ObjectType =
    ObjectType::new("JobTemplateSpec", &[("metadata", object(&OBJECT_META)), ("spec", object(&JOB_SPEC))]);
static JOB_SPEC: ObjectType = ObjectType::new(
    "JobSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        ("podFailurePolicy", object(&POD_FAILURE_POLICY)),
        ("successPolicy", object(&SUCCESS_POLICY)),
    ],
);
static POD_FAILURE_POLICY: ObjectType =
    ObjectType::new("PodFailurePolicy", &[("rules", atomic_of(&POD_FAILURE_POLICY_RULE))]);
static POD_FAILURE_POLICY_RULE: ObjectType = ObjectType::new(
    "PodFailurePolicyRule",
    &[
        ("onExitCodes", object(&POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT)),
        ("onPodConditions", atomic_of(&POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN)),
    ],
);
static POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT: ObjectType =
    ObjectType::new("PodFailurePolicyOnExitCodesRequirement", &[("values", SET)]);
static POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN: ObjectType =
    ObjectType::plain("PodFailurePolicyOnPodConditionsPattern");
static SUCCESS_POLICY: ObjectType = ObjectType::new("SuccessPolicy", &[("rules", atomic_of(&SUCCESS_POLICY_RULE))]);
static SUCCESS_POLICY_RULE: ObjectType = ObjectType::plain("SuccessPolicyRule");
static JOB_STATUS: ObjectType = ObjectType::new(
    "JobStatus",
    &[
        ("conditions", keyed_atomic(&JOB_CONDITION, "type")),
        ("uncountedTerminatedPods", object(&UNCOUNTED_TERMINATED_PODS)),
    ],
);
static JOB_CONDITION: ObjectType = ObjectType::plain("JobCondition");
static UNCOUNTED_TERMINATED_PODS: ObjectType =
    ObjectType::new("UncountedTerminatedPods", &[("succeeded", SET), ("failed", SET)]);
static CRON_JOB_SPEC: ObjectType = ObjectType::new("CronJobSpec", &[("jobTemplate", object(&JOB_TEMPLATE_SPEC))]);
static CRON_JOB_STATUS: ObjectType = ObjectType::new("CronJobStatus", &[("active", atomic_of(&OBJECT_REFERENCE))]);

// autoscaling/v2

static HORIZONTAL_POD_AUTOSCALER_SPEC: ObjectType = ObjectType::new(
    "HorizontalPodAutoscalerSpec",
    &[("metrics", atomic_of(&METRIC_SPEC)), ("behavior", object(&HORIZONTAL_POD_AUTOSCALER_BEHAVIOR))],
);
static METRIC_SPEC: ObjectType = ObjectType::plain("MetricSpec");
static HORIZONTAL_POD_AUTOSCALER_BEHAVIOR: ObjectType = ObjectType::new(
    "HorizontalPodAutoscalerBehavior",
    &[("scaleUp", object(&HPA_SCALING_RULES)), ("scaleDown", object(&HPA_SCALING_RULES))],
);
static HPA_SCALING_RULES: ObjectType =
    ObjectType::new("HPAScalingRules", &[("policies", atomic_of(&HPA_SCALING_POLICY))]);
static HPA_SCALING_POLICY: ObjectType = ObjectType::plain("HPAScalingPolicy");
static HORIZONTAL_POD_AUTOSCALER_STATUS: ObjectType = ObjectType::new(
    "HorizontalPodAutoscalerStatus",
    &[("currentMetrics", atomic_of(&METRIC_STATUS)), ("conditions", conditions(&HORIZONTAL_POD_AUTOSCALER_CONDITION))],
);
static METRIC_STATUS: ObjectType = ObjectType::plain("MetricStatus");
static HORIZONTAL_POD_AUTOSCALER_CONDITION: ObjectType = ObjectType::plain("HorizontalPodAutoscalerCondition");

// discovery.k8s.io/v1

static ENDPOINT: ObjectType = ObjectType::new("Endpoint", &[("addresses", SET), ("hints", object(&ENDPOINT_HINTS))]);
static ENDPOINT_HINTS: ObjectType =
    ObjectType::new("EndpointHints", &[("forZones", atomic_of(&FOR_ZONE)), ("forNodes", atomic_of(&FOR_NODE))]);
static FOR_ZONE: ObjectType = ObjectType::plain("ForZone");
static FOR_NODE: ObjectType = ObjectType::plain("ForNode");
static DISCOVERY_ENDPOINT_PORT: ObjectType = ObjectType::plain("EndpointPort");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_metadata() {
        for (group, kind) in kinds() {
            let metadata = field(group, kind, &["metadata"]).map(|schema| schema.shape);
            assert_eq!(metadata, Some(Shape::Object(&OBJECT_META)), "{group}/{kind}");
        }
        // Kinds that are never stored are never patched.
        for resource in crate::apis::catalog::RESOURCES.iter().filter(|r| r.is_stored()) {
            assert!(
                root(resource.group, resource.kind).is_some(),
                "{} {} has patch metadata",
                resource.group,
                resource.kind
            );
        }
    }

    #[test]
    fn pod_spec_is_shared_by_every_workload() {
        let paths: [(&str, &str, &[&str]); 6] = [
            ("", "Pod", &["spec"]),
            ("apps", "Deployment", &["spec", "template", "spec"]),
            ("apps", "ReplicaSet", &["spec", "template", "spec"]),
            ("apps", "StatefulSet", &["spec", "template", "spec"]),
            ("apps", "DaemonSet", &["spec", "template", "spec"]),
            ("batch", "CronJob", &["spec", "jobTemplate", "spec", "template", "spec"]),
        ];
        for (group, kind, path) in paths {
            assert_eq!(field(group, kind, path).map(|schema| schema.shape), Some(Shape::Object(&POD_SPEC)));
        }
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let containers = field("apps", "Deployment", &["spec", "template", "spec", "containers"]).unwrap();
        assert_eq!(containers.strategy, PatchStrategy::Merge);
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(containers.list_type(), Some(ListType::Map(&["name"])));

        let ports =
            field("batch", "CronJob", &["spec", "jobTemplate", "spec", "template", "spec", "containers", "ports"])
                .unwrap();
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.list_type(), Some(ListType::Map(&["containerPort", "protocol"])));
    }

    #[test]
    fn strategies_follow_upstream() {
        let strategy = |group, kind, path: &[&str]| field(group, kind, path).map(|schema| schema.strategy);
        assert_eq!(strategy("apps", "Deployment", &["spec", "strategy"]), Some(PatchStrategy::RetainKeys));
        assert_eq!(strategy("", "Pod", &["spec", "volumes"]), Some(PatchStrategy::MergeRetainKeys));
        assert_eq!(strategy("", "Pod", &["spec", "tolerations"]), Some(PatchStrategy::Replace));
        assert_eq!(strategy("", "Pod", &["metadata", "finalizers"]), Some(PatchStrategy::Merge));
        assert_eq!(strategy("", "Node", &["spec", "taints"]), Some(PatchStrategy::Replace));
        assert_eq!(strategy("", "ServiceAccount", &["imagePullSecrets"]), Some(PatchStrategy::Replace));
        assert_eq!(strategy("apps", "DaemonSet", &["spec", "updateStrategy"]), None);

        let job_conditions = field("batch", "Job", &["status", "conditions"]).unwrap();
        assert_eq!((job_conditions.merge_key, job_conditions.list_type()), (Some("type"), Some(ListType::Atomic)));
        let finalizers = field("", "Namespace", &["metadata", "finalizers"]).unwrap();
        assert_eq!((finalizers.merge_key, finalizers.list_type()), (None, Some(ListType::Set)));
    }

    #[test]
    fn maps_and_unknown_paths() {
        let label = field("", "Pod", &["metadata", "labels", "app"]).unwrap();
        assert_eq!(label.shape, Shape::Primitive);
        assert_eq!(
            field("", "Pod", &["spec", "nodeSelector"]).unwrap().shape,
            Shape::Map { value: Element::Primitive, atomic: true }
        );
        assert_eq!(field("", "Pod", &["spec", "containers", "image"]), None);
        assert_eq!(field("", "Pod", &["spec", "nonsense", "deeper"]), None);
        assert_eq!(field("example.com", "Widget", &[]), None);
        assert_eq!(field("autoscaling", "Scale", &[]).map(|schema| schema.shape), Some(Shape::Object(&SCALE)));
    }
}
