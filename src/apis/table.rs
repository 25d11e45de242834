//! `meta.k8s.io/v1` Table output: what `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Owns the column sets and cell values of the built-in printers kube-apiserver uses for each resource
//! (pods, nodes, services, events, volumes and claims, the apps and batch workloads, ...) as the [`Printer`]
//! each catalog entry names, upstream's fallback for kinds without one (`NAME AGE`), upstream's human-readable
//! durations and a small RFC 3339 parser for the timestamps they are computed from.
//!
//! Invariants:
//! - every row has exactly one cell per column definition of its resource, priority 1 (`-o wide`) columns
//!   included: the server always sends them and kubectl drops what it does not show;
//! - cells carry the JSON type upstream's printers put in them (numbers where upstream prints an integer, even
//!   in a few columns upstream declares as `string`), so kubectl renders them identically;
//! - `rows[].object` is a `PartialObjectMetadata` holding the object's whole `metadata`, which kubectl needs for
//!   `-A` and `--show-labels`;
//! - the functions are pure: "now" is a parameter, and malformed objects produce cells, never panics.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::catalog::Resource;
use super::selectors::{format_label_selector, format_labels, LabelSelector};
use super::time;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// What each row's `object` holds (the `includeObject` option): nothing, the object's metadata as a
/// `PartialObjectMetadata` (the default), or the whole object, which kubectl asks for to sort by a field
/// outside `metadata` (`--sort-by=.status.phase`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// The option as a query names it; unset is the default.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, String> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("includeObject must be None, Metadata or Object, not {other:?}")),
        }
    }
}

/// Builds a Table of `objects` (all of `resource`) as seen at `now_unix_secs`, with the resource's printer.
/// With `include_column_definitions` false the definitions list is empty, as in watch events after the first.
/// The caller fills `metadata` (`resourceVersion`, `continue`).
pub fn table(
    resource: &Resource,
    objects: &[Value],
    now_unix_secs: i64,
    include_column_definitions: bool,
    include: IncludeObject,
) -> Value {
    match resource.conversion {
        // A version served from another's objects prints as the stored form does.
        Some(_) => {
            let stored: Vec<Value> = objects.iter().map(|o| resource.to_stored(o.clone())).collect();
            let mut table = resource.printer.table(&stored, now_unix_secs, include_column_definitions, include);
            let rows = table["rows"].as_array_mut().into_iter().flatten();
            for (row, object) in rows.zip(objects) {
                if include != IncludeObject::None {
                    row["object"] = Printer::included(object, include);
                }
            }
            table
        }
        None => resource.printer.table(objects, now_unix_secs, include_column_definitions, include),
    }
}

/// The `columnDefinitions` of a Table of `resource`.
pub fn column_definitions(resource: &Resource) -> Value {
    resource.printer.column_definitions()
}

// ---------------------------------------------------------------------------------------------------------------
// Durations and timestamps

/// Upstream's `duration.HumanDuration`: `5s` under two minutes, `2m3s` under ten, `10m` under three hours,
/// `3h20m` under eight, `20h` under two days, `2d3h` under eight days, `40d` under two years, `3y12d` under
/// eight, then `9y`. A duration more than a second into the future is `<invalid>`; a smaller skew is `0s`.
pub fn human_duration(elapsed_ns: i128) -> String {
    let elapsed_ns = elapsed_ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    let seconds = elapsed_ns / NANOS_PER_SEC;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_remainder(whole: i128, unit: &str, remainder: i128, remainder_unit: &str) -> String {
    if remainder == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{remainder}{remainder_unit}")
    }
}

fn instant(value: Option<&Value>) -> Option<(i64, u32)> {
    value.and_then(Value::as_str).and_then(time::parse)
}

fn elapsed_ns(from: (i64, u32), to: (i64, u32)) -> i128 {
    (i128::from(to.0) - i128::from(from.0)) * NANOS_PER_SEC + i128::from(to.1) - i128::from(from.1)
}

/// The age of a timestamp at `now`, or `<unknown>` when it is missing or unreadable.
fn since(timestamp: Option<&Value>, now: i64) -> String {
    instant(timestamp).map_or_else(|| "<unknown>".to_owned(), |t| human_duration(elapsed_ns(t, (now, 0))))
}

fn later(a: Option<(i64, u32)>, b: Option<(i64, u32)>) -> Option<(i64, u32)> {
    a.max(b)
}

// ---------------------------------------------------------------------------------------------------------------
// JSON access

/// The value at `path`, treating `null` as absent (a nil pointer in upstream's types).
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key)).filter(|v| !v.is_null())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or_default()
}

fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

fn integer(value: &Value, path: &[&str]) -> i64 {
    at(value, path).and_then(as_integer).unwrap_or(0)
}

fn flag(value: &Value, path: &[&str]) -> Option<bool> {
    at(value, path).and_then(Value::as_bool)
}

fn items<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn name(object: &Value) -> &str {
    text(object, &["metadata", "name"])
}

fn age(object: &Value, now: i64) -> String {
    since(at(object, &["metadata", "creationTimestamp"]), now)
}

fn or_placeholder(text: &str, placeholder: &str) -> String {
    if text.is_empty() {
        placeholder.to_owned()
    } else {
        text.to_owned()
    }
}

/// The status of the first condition of `condition_type` is `True` (upstream's `hasJobCondition` and
/// `isPodInitializedConditionTrue`).
fn first_condition_true(object: &Value, condition_type: &str) -> bool {
    items(object, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == condition_type)
        .is_some_and(|c| text(c, &["status"]) == "True")
}

fn any_condition_true(object: &Value, condition_type: &str) -> bool {
    items(object, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == condition_type && text(c, &["status"]) == "True")
}

/// Names and images of a pod template's containers, each joined by commas.
fn container_cells(object: &Value, template: &[&str]) -> [Value; 2] {
    let mut path = template.to_vec();
    path.extend(["spec", "containers"]);
    let containers = items(object, &path);
    let joined = |key: &str| containers.iter().map(|c| text(c, &[key])).collect::<Vec<_>>().join(",");
    [json!(joined("name")), json!(joined("image"))]
}

/// `spec.replicas` of a workload, with the API's default of 1 when absent.
fn desired_replicas(object: &Value) -> i64 {
    at(object, &["spec", "replicas"]).and_then(as_integer).unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------------------------
// Columns

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellType {
    String,
    Integer,
    Boolean,
    Date,
}

impl CellType {
    fn as_str(self) -> &'static str {
        match self {
            CellType::String => "string",
            CellType::Integer => "integer",
            CellType::Boolean => "boolean",
            CellType::Date => "date",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    cell_type: CellType,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn column(name: &'static str, cell_type: CellType, description: &'static str) -> Column {
    Column { name, cell_type, format: "", priority: 0, description }
}

const fn wide(name: &'static str, cell_type: CellType, description: &'static str) -> Column {
    Column { name, cell_type, format: "", priority: 1, description }
}

use self::CellType::{Boolean, Date, Integer, String as Text};

const NAME: Column =
    Column { name: "Name", cell_type: Text, format: "name", priority: 0, description: "Name of the object." };
const AGE: Column = column("Age", Text, "Time since the object was created.");
const CONTAINERS: Column = wide("Containers", Text, "Names of the containers in the pod template.");
const IMAGES: Column = wide("Images", Text, "Images of the containers in the pod template.");
const SELECTOR: Column = wide("Selector", Text, "Label selector of the pods this object manages.");

const POD_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", Text, "Ready containers out of all containers."),
    column("Status", Text, "Aggregate status of the pod and its containers."),
    column("Restarts", Text, "Container restarts, and how long ago the last one was."),
    AGE,
    wide("IP", Text, "First IP address of the pod."),
    wide("Node", Text, "Node the pod is bound to."),
    wide("Nominated Node", Text, "Node the scheduler nominated after preempting other pods."),
    wide("Readiness Gates", Text, "Readiness gates whose condition is true, out of all gates."),
];
const NAMESPACE_COLUMNS: &[Column] = &[NAME, column("Status", Text, "Phase of the namespace."), AGE];
const NODE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", Text, "Readiness of the node, and whether scheduling is disabled."),
    column("Roles", Text, "Roles taken from the node's role labels."),
    AGE,
    column("Version", Text, "Kubelet version."),
    wide("Internal-IP", Text, "First internal address."),
    wide("External-IP", Text, "First external address."),
    wide("OS-Image", Text, "Operating system image."),
    wide("Kernel-Version", Text, "Kernel version."),
    wide("Container-Runtime", Text, "Container runtime and version."),
];
const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", Text, "How the service is exposed."),
    column("Cluster-IP", Text, "Cluster-internal virtual IP."),
    column("External-IP", Text, "External addresses: external IPs or load balancer ingress."),
    column("Port(s)", Text, "Service ports, with node ports and protocols."),
    AGE,
    wide("Selector", Text, "Labels of the pods the service sends traffic to."),
];
const ENDPOINTS_COLUMNS: &[Column] = &[NAME, column("Endpoints", Text, "First addresses and ports."), AGE];
const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    column("Status", Text, "Status of the component conditions"),
    column("Message", Text, "Message of the component conditions"),
    column("Error", Text, "Error of the component conditions"),
];
const CONFIG_MAP_COLUMNS: &[Column] = &[NAME, column("Data", Text, "Number of data and binary data entries."), AGE];
const SECRET_COLUMNS: &[Column] =
    &[NAME, column("Type", Text, "Type of the secret."), column("Data", Text, "Number of data entries."), AGE];
const EVENT_COLUMNS: &[Column] = &[
    column("Last Seen", Text, "Time since the event was last observed."),
    column("Type", Text, "Normal or Warning."),
    column("Reason", Text, "Short machine-readable reason."),
    column("Object", Text, "Object the event is about."),
    wide("Subobject", Text, "Part of the object the event is about."),
    wide("Source", Text, "Component, and host, that reported the event."),
    column("Message", Text, "Human-readable description."),
    wide("First Seen", Text, "Time since the event was first observed."),
    wide("Count", Text, "Number of times the event was observed."),
    Column { name: "Name", cell_type: Text, format: "name", priority: 1, description: "Name of the event object." },
];
const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[NAME, column("Secrets", Text, "Number of referenced secrets."), AGE];
const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", Integer, "Desired number of pods."),
    column("Current", Integer, "Current number of pods."),
    column("Ready", Integer, "Number of ready pods."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", Text, "Ready pods out of desired pods."),
    column("Up-to-date", Text, "Pods running the latest pod template."),
    column("Available", Text, "Pods available to serve."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const STATEFUL_SET_COLUMNS: &[Column] =
    &[NAME, column("Ready", Text, "Ready pods out of desired pods."), AGE, CONTAINERS, IMAGES];
const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", Integer, "Nodes that should run the daemon pod."),
    column("Current", Integer, "Nodes running at least one daemon pod."),
    column("Ready", Integer, "Nodes with a ready daemon pod."),
    column("Up-to-date", Integer, "Nodes running the latest daemon pod."),
    column("Available", Integer, "Nodes with an available daemon pod."),
    column("Node Selector", Text, "Node labels the daemon pods require."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    column("Controller", Text, "Controller that owns the revision."),
    column("Revision", Text, "Revision number."),
    AGE,
];
const JOB_COLUMNS: &[Column] = &[
    NAME,
    column("Status", Text, "Status of the job."),
    column("Completions", Text, "Succeeded pods out of required completions."),
    column("Duration", Text, "Time the job took, or has taken so far."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    column("Schedule", Text, "Cron schedule."),
    column("Timezone", Text, "Time zone of the schedule."),
    column("Suspend", Boolean, "Whether new runs are suspended."),
    column("Active", Integer, "Number of running jobs."),
    column("Last Schedule", Text, "Time since a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const LEASE_COLUMNS: &[Column] = &[NAME, column("Holder", Text, "Identity of the lease holder."), AGE];
const POD_DISRUPTION_BUDGET_COLUMNS: &[Column] = &[
    NAME,
    column("Min Available", Text, "The minimum number of pods that must be available."),
    column("Max Unavailable", Text, "The maximum number of pods that may be unavailable."),
    column("Allowed Disruptions", Integer, "Calculated number of pods that may be disrupted at this time."),
    AGE,
];
const HORIZONTAL_POD_AUTOSCALER_COLUMNS: &[Column] = &[
    NAME,
    column("Reference", Text, "Kind and name of the scaled object."),
    column("Targets", Text, "Current and target metric values."),
    column("MinPods", Text, "Lower replica bound."),
    column("MaxPods", Text, "Upper replica bound."),
    column("Replicas", Text, "Current replicas."),
    AGE,
];
const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    column("AddressType", Text, "Address family of the endpoints."),
    column("Ports", Text, "First ports."),
    column("Endpoints", Text, "First endpoint addresses."),
    AGE,
];
const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    column("Containers", Text, "Names of each container in the template."),
    column("Images", Text, "Images referenced by each container in the template."),
    column("Pod Labels", Text, "The labels for the pod template."),
];
const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    column("Capacity", Text, "Storage capacity of the volume."),
    column("Access Modes", Text, "Ways the volume can be mounted."),
    column("Reclaim Policy", Text, "What happens to the volume when its claim is released."),
    column("Status", Text, "Phase of the volume."),
    column("Claim", Text, "Namespace and name of the claim bound to the volume."),
    column("StorageClass", Text, "StorageClass of the pv"),
    column("VolumeAttributesClass", Text, "VolumeAttributesClass of the pv"),
    column("Reason", Text, "Why the volume is in its phase."),
    AGE,
    wide("VolumeMode", Text, "Whether the volume is a filesystem or a raw block device."),
];
const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    column("Status", Text, "Phase of the claim."),
    column("Volume", Text, "Name of the volume bound to the claim."),
    column("Capacity", Text, "Storage capacity of the bound volume."),
    column("Access Modes", Text, "Ways the bound volume can be mounted."),
    column("StorageClass", Text, "StorageClass of the pvc"),
    column("VolumeAttributesClass", Text, "VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", Text, "Whether the claim asks for a filesystem or a raw block device."),
];
const AGE_ONLY_COLUMNS: &[Column] = &[NAME, column("Age", Date, "Time since the object was created.")];
const ROLE_COLUMNS: &[Column] = &[NAME, column("Created At", Date, "Time when the role was created, in UTC.")];
const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    column("Role", Text, "The role the subjects are bound to."),
    AGE,
    wide("Users", Text, "Users bound."),
    wide("Groups", Text, "Groups bound."),
    wide("ServiceAccounts", Text, "Service accounts bound."),
];
const LIMIT_RANGE_COLUMNS: &[Column] =
    &[NAME, column("Created At", Date, "Time when the limit range was created, in UTC.")];
const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    column("Request", Text, "Used and hard amounts of the quota's resources other than limits."),
    column("Limit", Text, "Used and hard amounts of the quota's limits."),
];
const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    column("Value", Integer, "The priority pods of this class get."),
    column("Global-Default", Boolean, "Whether pods that name no class get this one."),
    AGE,
    column("PreemptionPolicy", Text, "Whether pods of this class may preempt pods of lower priority."),
];
const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    column("Class", Text, "The ingress class that implements the ingress."),
    column("Hosts", Text, "Hosts the rules match."),
    column("Address", Text, "Addresses the load balancer serves the ingress at."),
    column("Ports", Text, "Ports the ingress is served on."),
    AGE,
];
const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    column("Controller", Text, "The controller that implements ingresses of this class."),
    column("Parameters", Text, "The object holding the controller's parameters."),
    AGE,
];
const NETWORK_POLICY_COLUMNS: &[Column] = &[NAME, column("Pod-Selector", Text, "The pods the policy applies to."), AGE];

// ---------------------------------------------------------------------------------------------------------------
// Printers

/// Which of upstream's printers a resource uses: its columns and how each row's cells are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printer {
    Namespace,
    Pod,
    Node,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    Event,
    ServiceAccount,
    ReplicationController,
    PodTemplate,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    Lease,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    EndpointSlice,
    LimitRange,
    ResourceQuota,
    PriorityClass,
    Ingress,
    IngressClass,
    NetworkPolicy,
    ComponentStatus,
    /// Roles and ClusterRoles.
    Role,
    /// RoleBindings and ClusterRoleBindings.
    RoleBinding,
    /// Upstream's default for kinds without a printer of their own: `NAME AGE`.
    AgeOnly,
}

impl Printer {
    fn table(self, objects: &[Value], now: i64, include_column_definitions: bool, include: IncludeObject) -> Value {
        let rows: Vec<Value> = objects.iter().map(|object| self.row(object, now, include)).collect();
        let definitions = if include_column_definitions { self.column_definitions() } else { json!([]) };
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "columnDefinitions": definitions,
            "rows": rows,
        })
    }

    fn column_definitions(self) -> Value {
        Value::Array(
            self.columns()
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "type": c.cell_type.as_str(),
                        "format": c.format,
                        "description": c.description,
                        "priority": c.priority,
                    })
                })
                .collect(),
        )
    }

    fn columns(self) -> &'static [Column] {
        match self {
            Printer::Namespace => NAMESPACE_COLUMNS,
            Printer::Pod => POD_COLUMNS,
            Printer::Node => NODE_COLUMNS,
            Printer::Service => SERVICE_COLUMNS,
            Printer::Endpoints => ENDPOINTS_COLUMNS,
            Printer::ConfigMap => CONFIG_MAP_COLUMNS,
            Printer::Secret => SECRET_COLUMNS,
            Printer::Event => EVENT_COLUMNS,
            Printer::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
            Printer::ReplicationController | Printer::ReplicaSet => REPLICATION_CONTROLLER_COLUMNS,
            Printer::PodTemplate => POD_TEMPLATE_COLUMNS,
            Printer::PersistentVolume => PERSISTENT_VOLUME_COLUMNS,
            Printer::PersistentVolumeClaim => PERSISTENT_VOLUME_CLAIM_COLUMNS,
            Printer::Deployment => DEPLOYMENT_COLUMNS,
            Printer::StatefulSet => STATEFUL_SET_COLUMNS,
            Printer::DaemonSet => DAEMON_SET_COLUMNS,
            Printer::ControllerRevision => CONTROLLER_REVISION_COLUMNS,
            Printer::Job => JOB_COLUMNS,
            Printer::CronJob => CRON_JOB_COLUMNS,
            Printer::Lease => LEASE_COLUMNS,
            Printer::PodDisruptionBudget => POD_DISRUPTION_BUDGET_COLUMNS,
            Printer::HorizontalPodAutoscaler => HORIZONTAL_POD_AUTOSCALER_COLUMNS,
            Printer::EndpointSlice => ENDPOINT_SLICE_COLUMNS,
            Printer::LimitRange => LIMIT_RANGE_COLUMNS,
            Printer::ResourceQuota => RESOURCE_QUOTA_COLUMNS,
            Printer::PriorityClass => PRIORITY_CLASS_COLUMNS,
            Printer::Ingress => INGRESS_COLUMNS,
            Printer::IngressClass => INGRESS_CLASS_COLUMNS,
            Printer::NetworkPolicy => NETWORK_POLICY_COLUMNS,
            Printer::ComponentStatus => COMPONENT_STATUS_COLUMNS,
            Printer::Role => ROLE_COLUMNS,
            Printer::RoleBinding => ROLE_BINDING_COLUMNS,
            Printer::AgeOnly => AGE_ONLY_COLUMNS,
        }
    }

    fn cells(self, object: &Value, now: i64) -> Vec<Value> {
        match self {
            Printer::Namespace => {
                vec![json!(name(object)), json!(text(object, &["status", "phase"])), json!(age(object, now))]
            }
            Printer::Pod => pod_cells(object, now),
            Printer::Node => node_cells(object, now),
            Printer::Service => service_cells(object, now),
            Printer::Endpoints => vec![json!(name(object)), json!(format_endpoints(object)), json!(age(object, now))],
            Printer::ConfigMap => {
                let entries = |key| at(object, &[key]).and_then(Value::as_object).map_or(0, Map::len);
                vec![json!(name(object)), json!(entries("data") + entries("binaryData")), json!(age(object, now))]
            }
            Printer::Secret => {
                let entries = at(object, &["data"]).and_then(Value::as_object).map_or(0, Map::len);
                vec![json!(name(object)), json!(text(object, &["type"])), json!(entries), json!(age(object, now))]
            }
            Printer::Event => event_cells(object, now),
            Printer::ServiceAccount => {
                vec![json!(name(object)), json!(items(object, &["secrets"]).len()), json!(age(object, now))]
            }
            Printer::ReplicationController => {
                replica_set_cells(object, now, format_labels(at(object, &["spec", "selector"])))
            }
            Printer::ReplicaSet => {
                replica_set_cells(object, now, format_label_selector(at(object, &["spec", "selector"])))
            }
            Printer::PodTemplate => {
                let [containers, images] = container_cells(object, &["template"]);
                let labels = format_labels(at(object, &["template", "metadata", "labels"]));
                vec![json!(name(object)), containers, images, json!(labels)]
            }
            Printer::PersistentVolume => persistent_volume_cells(object, now),
            Printer::PersistentVolumeClaim => persistent_volume_claim_cells(object, now),
            Printer::Deployment => deployment_cells(object, now),
            Printer::StatefulSet => {
                let ready = format!("{}/{}", integer(object, &["status", "readyReplicas"]), desired_replicas(object));
                let [containers, images] = container_cells(object, &["spec", "template"]);
                vec![json!(name(object)), json!(ready), json!(age(object, now)), containers, images]
            }
            Printer::DaemonSet => daemon_set_cells(object, now),
            Printer::ControllerRevision => vec![
                json!(name(object)),
                json!(controller_of(object)),
                json!(integer(object, &["revision"])),
                json!(age(object, now)),
            ],
            Printer::Job => job_cells(object, now),
            Printer::CronJob => cron_job_cells(object, now),
            Printer::Lease => {
                vec![json!(name(object)), json!(text(object, &["spec", "holderIdentity"])), json!(age(object, now))]
            }
            Printer::PodDisruptionBudget => {
                let bound = |field: &str| match &object["spec"][field] {
                    Value::Null => "N/A".to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                vec![
                    json!(name(object)),
                    json!(bound("minAvailable")),
                    json!(bound("maxUnavailable")),
                    json!(integer(object, &["status", "disruptionsAllowed"])),
                    json!(age(object, now)),
                ]
            }
            Printer::HorizontalPodAutoscaler => horizontal_pod_autoscaler_cells(object, now),
            Printer::EndpointSlice => vec![
                json!(name(object)),
                json!(text(object, &["addressType"])),
                json!(format_slice_ports(items(object, &["ports"]))),
                json!(format_slice_endpoints(items(object, &["endpoints"]))),
                json!(age(object, now)),
            ],
            Printer::LimitRange | Printer::Role => {
                vec![json!(name(object)), json!(text(object, &["metadata", "creationTimestamp"]))]
            }
            Printer::RoleBinding => {
                let role = format!("{}/{}", text(object, &["roleRef", "kind"]), text(object, &["roleRef", "name"]));
                let subjects = at(object, &["subjects"]).and_then(Value::as_array).cloned().unwrap_or_default();
                let of_kind = |kind: &str| {
                    let names: Vec<String> = subjects
                        .iter()
                        .filter(|s| s["kind"] == kind)
                        .map(|s| match (kind, s["namespace"].as_str()) {
                            ("ServiceAccount", Some(ns)) => format!("{ns}/{}", text(s, &["name"])),
                            _ => text(s, &["name"]).to_owned(),
                        })
                        .collect();
                    names.join(", ")
                };
                vec![
                    json!(name(object)),
                    json!(role),
                    json!(age(object, now)),
                    json!(of_kind("User")),
                    json!(of_kind("Group")),
                    json!(of_kind("ServiceAccount")),
                ]
            }
            Printer::ResourceQuota => resource_quota_cells(object, now),
            Printer::PriorityClass => vec![
                json!(name(object)),
                json!(integer(object, &["value"])),
                json!(flag(object, &["globalDefault"]).unwrap_or(false)),
                json!(age(object, now)),
                json!(at(object, &["preemptionPolicy"]).and_then(Value::as_str).unwrap_or("<unset>")),
            ],
            Printer::Ingress => ingress_cells(object, now),
            Printer::IngressClass => {
                let parameters = at(object, &["spec", "parameters"]).map_or_else(
                    || "<none>".to_owned(),
                    |p| match text(p, &["apiGroup"]) {
                        "" => format!("{}/{}", text(p, &["kind"]), text(p, &["name"])),
                        group => format!("{}.{group}/{}", text(p, &["kind"]), text(p, &["name"])),
                    },
                );
                let controller = text(object, &["spec", "controller"]);
                vec![json!(name(object)), json!(controller), json!(parameters), json!(age(object, now))]
            }
            Printer::NetworkPolicy => vec![
                json!(name(object)),
                json!(format_label_selector(at(object, &["spec", "podSelector"]))),
                json!(age(object, now)),
            ],
            Printer::ComponentStatus => component_status_cells(object),
            Printer::AgeOnly => vec![json!(name(object)), json!(age(object, now))],
        }
    }

    fn row(self, object: &Value, now: i64, include: IncludeObject) -> Value {
        let mut row = Map::new();
        row.insert("cells".to_owned(), Value::Array(self.cells(object, now)));
        if self == Printer::Pod {
            if let Some(conditions) = pod_row_conditions(object) {
                row.insert("conditions".to_owned(), conditions);
            }
        }
        row.insert("object".to_owned(), Printer::included(object, include));
        Value::Object(row)
    }

    /// What a row carries of its object.
    fn included(object: &Value, include: IncludeObject) -> Value {
        match include {
            IncludeObject::None => Value::Null,
            IncludeObject::Metadata => partial_object_metadata(object),
            IncludeObject::Object => object.clone(),
        }
    }
}

/// The `Healthy` condition as upstream prints it: `Healthy` only when it is true, `Unknown` without one.
fn component_status_cells(object: &Value) -> Vec<Value> {
    let healthy = items(object, &["conditions"]).iter().find(|c| text(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) if text(c, &["status"]) == "True" => ("Healthy", text(c, &["message"]), text(c, &["error"])),
        Some(c) => ("Unhealthy", text(c, &["message"]), text(c, &["error"])),
        None => ("Unknown", "", ""),
    };
    vec![json!(name(object)), json!(status), json!(message), json!(error)]
}

fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": at(object, &["metadata"]).cloned().unwrap_or_else(|| json!({})),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Pods

/// What the READY, STATUS and RESTARTS columns summarise.
#[derive(Debug, PartialEq, Eq)]
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<(i64, u32)>,
}

fn pod_summary(pod: &Value) -> PodSummary {
    let init_specs = items(pod, &["spec", "initContainers"]);
    let is_sidecar = |container_name: &str| {
        init_specs.iter().any(|c| text(c, &["name"]) == container_name && text(c, &["restartPolicy"]) == "Always")
    };
    let sidecars = init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();
    let mut summary = PodSummary {
        ready: 0,
        total: items(pod, &["spec", "containers"]).len() + sidecars,
        reason: or_placeholder(text(pod, &["status", "reason"]), text(pod, &["status", "phase"])),
        restarts: 0,
        last_restart: None,
    };
    let phase = text(pod, &["status", "phase"]);
    let gated = items(pod, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated");
    if gated {
        summary.reason = "SchedulingGated".to_owned();
    }

    let mut sidecar_restarts: i64 = 0;
    let mut sidecar_last_restart = None;
    let mut initializing = false;
    for (i, status) in items(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let restarts = integer(status, &["restartCount"]);
        let finished = instant(at(status, &["lastState", "terminated", "finishedAt"]));
        summary.restarts = summary.restarts.saturating_add(restarts);
        summary.last_restart = later(summary.last_restart, finished);
        let sidecar = is_sidecar(text(status, &["name"]));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(restarts);
            sidecar_last_restart = later(sidecar_last_restart, finished);
        }
        let terminated = at(status, &["state", "terminated"]);
        let waiting_reason = text(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| integer(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && flag(status, &["started"]) == Some(true) {
            if flag(status, &["ready"]) == Some(true) {
                summary.ready += 1;
            }
            continue;
        }
        summary.reason = if let Some(terminated) = terminated {
            format!("Init:{}", terminated_reason(terminated))
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || first_condition_true(pod, "Initialized") {
        summary.restarts = sidecar_restarts;
        summary.last_restart = sidecar_last_restart;
        let mut has_running = false;
        for status in items(pod, &["status", "containerStatuses"]).iter().rev() {
            summary.restarts = summary.restarts.saturating_add(integer(status, &["restartCount"]));
            let finished = instant(at(status, &["lastState", "terminated", "finishedAt"]));
            summary.last_restart = later(summary.last_restart, finished);
            let waiting_reason = text(status, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                summary.reason = waiting_reason.to_owned();
            } else if let Some(terminated) = at(status, &["state", "terminated"]) {
                summary.reason = terminated_reason(terminated);
            } else if flag(status, &["ready"]) == Some(true) && at(status, &["state", "running"]).is_some() {
                has_running = true;
                summary.ready += 1;
            }
        }
        if summary.reason == "Completed" && has_running {
            summary.reason = if any_condition_true(pod, "Ready") { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if at(pod, &["metadata", "deletionTimestamp"]).is_some() {
        if text(pod, &["status", "reason"]) == "NodeLost" {
            summary.reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            summary.reason = "Terminating".to_owned();
        }
    }
    summary
}

/// A terminated container's reason, or `Signal:N` / `ExitCode:N` when it gave none.
fn terminated_reason(terminated: &Value) -> String {
    let reason = text(terminated, &["reason"]);
    let signal = integer(terminated, &["signal"]);
    if !reason.is_empty() {
        reason.to_owned()
    } else if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", integer(terminated, &["exitCode"]))
    }
}

fn pod_ip(pod: &Value) -> &str {
    pod.pointer("/status/podIPs/0/ip")
        .and_then(Value::as_str)
        .or_else(|| at(pod, &["status", "podIP"]).and_then(Value::as_str))
        .unwrap_or_default()
}

fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let summary = pod_summary(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, human_duration(elapsed_ns(last, (now, 0))))
        }
        _ => summary.restarts.to_string(),
    };
    let gates = items(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let conditions = items(pod, &["status", "conditions"]);
        let passing = gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, &["conditionType"]);
                conditions.iter().find(|c| text(c, &["type"]) == wanted).is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        json!(age(pod, now)),
        json!(or_placeholder(pod_ip(pod), "<none>")),
        json!(or_placeholder(text(pod, &["spec", "nodeName"]), "<none>")),
        json!(or_placeholder(text(pod, &["status", "nominatedNodeName"]), "<none>")),
        json!(readiness_gates),
    ]
}

/// Row conditions marking finished pods, as upstream attaches them.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

// ---------------------------------------------------------------------------------------------------------------
// Nodes and services

fn node_cells(node: &Value, now: i64) -> Vec<Value> {
    let ready = items(node, &["status", "conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(condition) if text(condition, &["status"]) == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if flag(node, &["spec", "unschedulable"]) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = at(node, &["metadata", "labels"])
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => Some(role),
                    Some(_) => None,
                    None if key == "kubernetes.io/role" => value.as_str().filter(|v| !v.is_empty()),
                    None => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let roles = or_placeholder(&roles.into_iter().collect::<Vec<_>>().join(","), "<none>");
    let address = |kind: &str| {
        items(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map_or_else(|| "<none>".to_owned(), |a| text(a, &["address"]).to_owned())
    };
    let info = |key: &str| or_placeholder(text(node, &["status", "nodeInfo", key]), "<unknown>");
    vec![
        json!(name(node)),
        json!(status),
        json!(roles),
        json!(age(node, now)),
        json!(text(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn strings<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a str> {
    items(value, path).iter().filter_map(Value::as_str).collect()
}

/// Load balancer ingress IPs (or hostnames when there is no IP), sorted and without duplicates.
fn load_balancer_addresses(service: &Value) -> String {
    let addresses: BTreeSet<&str> = items(service, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|ingress| {
            let ip = text(ingress, &["ip"]);
            let hostname = text(ingress, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !hostname.is_empty() {
                Some(hostname)
            } else {
                None
            }
        })
        .collect();
    addresses.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(service: &Value) -> String {
    let external_ips = strings(service, &["spec", "externalIPs"]);
    match text(service, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => or_placeholder(&external_ips.join(","), "<none>"),
        "LoadBalancer" => {
            let balancer = load_balancer_addresses(service);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if balancer.is_empty() { Vec::new() } else { balancer.split(',').collect() };
                all.extend(external_ips);
                all.join(",")
            } else {
                or_placeholder(&balancer, "<pending>")
            }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// `80/TCP`, or `80:30080/TCP` with a node port, joined by commas; `<none>` without ports.
fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = items(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = or_placeholder(text(port, &["protocol"]), "TCP");
            let number = integer(port, &["port"]);
            match integer(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    or_placeholder(&ports.join(","), "<none>")
}

fn service_cells(service: &Value, now: i64) -> Vec<Value> {
    let cluster_ip = match items(service, &["spec", "clusterIPs"]).first() {
        Some(first) => first.as_str().unwrap_or_default().to_owned(),
        None => or_placeholder(text(service, &["spec", "clusterIP"]), "<none>"),
    };
    vec![
        json!(name(service)),
        json!(text(service, &["spec", "type"])),
        json!(cluster_ip),
        json!(service_external_ip(service)),
        json!(service_ports(service)),
        json!(age(service, now)),
        json!(format_labels(at(service, &["spec", "selector"]))),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Endpoints and endpoint slices

const LISTED_ADDRESSES: usize = 3;

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn with_more(list: &[String], total: usize) -> String {
    let joined = list.join(",");
    if total > list.len() {
        format!("{joined} + {} more...", total - list.len())
    } else {
        joined
    }
}

/// Up to three `ip:port` pairs of an Endpoints object (bare IPs for port-less subsets), then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = items(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list = Vec::new();
    let mut total = 0;
    for subset in subsets {
        let addresses = items(subset, &["addresses"]);
        let ports = items(subset, &["ports"]);
        if ports.is_empty() {
            total += addresses.len();
            let room = LISTED_ADDRESSES.saturating_sub(list.len());
            list.extend(addresses.iter().take(room).map(|a| text(a, &["ip"]).to_owned()));
            continue;
        }
        for port in ports {
            total += addresses.len();
            let room = LISTED_ADDRESSES.saturating_sub(list.len());
            let number = integer(port, &["port"]);
            list.extend(addresses.iter().take(room).map(|a| host_port(text(a, &["ip"]), number)));
        }
    }
    with_more(&list, total)
}

fn unset_if_empty(text: String) -> String {
    or_placeholder(&text, "<unset>")
}

fn format_slice_ports(ports: &[Value]) -> String {
    let list: Vec<String> = ports
        .iter()
        .take(LISTED_ADDRESSES)
        .map(|port| match (at(port, &["port"]).and_then(as_integer), at(port, &["name"]).and_then(Value::as_str)) {
            (Some(number), _) => number.to_string(),
            (None, Some(port_name)) => port_name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    unset_if_empty(with_more(&list, ports.len()))
}

fn format_slice_endpoints(endpoints: &[Value]) -> String {
    let addresses: Vec<&str> = endpoints.iter().flat_map(|e| strings(e, &["addresses"])).collect();
    let list: Vec<String> = addresses.iter().take(LISTED_ADDRESSES).map(|a| (*a).to_owned()).collect();
    unset_if_empty(with_more(&list, addresses.len()))
}

// ---------------------------------------------------------------------------------------------------------------
// Events

/// The two JSON forms of an Event: core `v1` and `events.k8s.io/v1` (renamed and `deprecated*` fields).
fn event_cells(event: &Value, now: i64) -> Vec<Value> {
    let field = |key: &'static str| at(event, &[key]);
    let first_seen = match instant(field("firstTimestamp")) {
        Some(first) => human_duration(elapsed_ns(first, (now, 0))),
        None => since(at(event, &["eventTime"]), now),
    };
    let mut last_seen = match instant(field("lastTimestamp")) {
        Some(last) => human_duration(elapsed_ns(last, (now, 0))),
        None => first_seen.clone(),
    };
    let mut count = field("count").and_then(as_integer).unwrap_or(0);
    if let Some(series) = at(event, &["series"]) {
        last_seen = since(at(series, &["lastObservedTime"]), now);
        count = integer(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let involved = field("involvedObject").unwrap_or(&Value::Null);
    let kind = text(involved, &["kind"]).to_lowercase();
    let target = match text(involved, &["name"]) {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let source = field("source").unwrap_or(&Value::Null);
    let component = or_placeholder(text(source, &["component"]), text(event, &["reportingComponent"]));
    let instance = or_placeholder(text(source, &["host"]), text(event, &["reportingInstance"]));
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last_seen),
        json!(text(event, &["type"])),
        json!(text(event, &["reason"])),
        json!(target),
        json!(text(involved, &["fieldPath"])),
        json!(source),
        json!(field("message").and_then(Value::as_str).unwrap_or_default().trim()),
        json!(first_seen),
        json!(count),
        json!(name(event)),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Storage

/// The annotation older clients set instead of `storageClassName`; upstream's printers prefer it.
const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Upstream's `GetAccessModesAsString`: the modes present, abbreviated, in a fixed order.
fn access_modes(modes: &[Value]) -> String {
    let abbreviations =
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];
    let present = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    abbreviations.iter().filter(|(mode, _)| present(mode)).map(|(_, short)| *short).collect::<Vec<_>>().join(",")
}

/// The storage class of a volume or claim: the beta annotation if set, else `spec.storageClassName`.
fn storage_class(object: &Value) -> &str {
    match at(object, &["metadata", "annotations", STORAGE_CLASS_ANNOTATION]).and_then(Value::as_str) {
        Some(class) => class,
        None => text(object, &["spec", "storageClassName"]),
    }
}

/// `status.phase`, or `Terminating` once the object is being deleted.
fn storage_phase(object: &Value) -> &str {
    if at(object, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        text(object, &["status", "phase"])
    }
}

/// A `storage` quantity as upstream prints it: a missing one is the zero quantity, `0`.
fn storage(value: Option<&Value>) -> String {
    value.map_or_else(|| "0".to_owned(), |v| quantity(Some(v)))
}

fn or_unset(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).map_or_else(|| "<unset>".to_owned(), str::to_owned)
}

fn persistent_volume_cells(volume: &Value, now: i64) -> Vec<Value> {
    let claim = match at(volume, &["spec", "claimRef"]) {
        Some(claim) => format!("{}/{}", text(claim, &["namespace"]), text(claim, &["name"])),
        None => String::new(),
    };
    vec![
        json!(name(volume)),
        json!(storage(at(volume, &["spec", "capacity", "storage"]))),
        json!(access_modes(items(volume, &["spec", "accessModes"]))),
        json!(text(volume, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(storage_phase(volume)),
        json!(claim),
        json!(storage_class(volume)),
        json!(or_unset(at(volume, &["spec", "volumeAttributesClassName"]))),
        json!(text(volume, &["status", "reason"])),
        json!(age(volume, now)),
        json!(or_unset(at(volume, &["spec", "volumeMode"]))),
    ]
}

/// A claim shows capacity and access modes only once it names its volume.
fn persistent_volume_claim_cells(claim: &Value, now: i64) -> Vec<Value> {
    let volume = text(claim, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (storage(at(claim, &["status", "capacity", "storage"])), access_modes(items(claim, &["status", "accessModes"])))
    };
    vec![
        json!(name(claim)),
        json!(storage_phase(claim)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(claim)),
        json!(or_unset(at(claim, &["spec", "volumeAttributesClassName"]))),
        json!(age(claim, now)),
        json!(or_unset(at(claim, &["spec", "volumeMode"]))),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Workloads

fn replica_set_cells(object: &Value, now: i64, selector: String) -> Vec<Value> {
    let [containers, images] = container_cells(object, &["spec", "template"]);
    vec![
        json!(name(object)),
        json!(desired_replicas(object)),
        json!(integer(object, &["status", "replicas"])),
        json!(integer(object, &["status", "readyReplicas"])),
        json!(age(object, now)),
        containers,
        images,
        json!(selector),
    ]
}

fn deployment_cells(deployment: &Value, now: i64) -> Vec<Value> {
    let selector = LabelSelector::from_label_selector(at(deployment, &["spec", "selector"]))
        .map_or_else(|_| "<invalid>".to_owned(), |s| s.to_string());
    let ready = format!("{}/{}", integer(deployment, &["status", "readyReplicas"]), desired_replicas(deployment));
    let [containers, images] = container_cells(deployment, &["spec", "template"]);
    vec![
        json!(name(deployment)),
        json!(ready),
        json!(integer(deployment, &["status", "updatedReplicas"])),
        json!(integer(deployment, &["status", "availableReplicas"])),
        json!(age(deployment, now)),
        containers,
        images,
        json!(selector),
    ]
}

fn daemon_set_cells(daemon_set: &Value, now: i64) -> Vec<Value> {
    let status = |key| json!(integer(daemon_set, &["status", key]));
    let [containers, images] = container_cells(daemon_set, &["spec", "template"]);
    vec![
        json!(name(daemon_set)),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        json!(format_labels(at(daemon_set, &["spec", "template", "spec", "nodeSelector"]))),
        json!(age(daemon_set, now)),
        containers,
        images,
        json!(format_label_selector(at(daemon_set, &["spec", "selector"]))),
    ]
}

/// `kind.group/name` (lowercase kind and group) of the controlling owner, or `<none>`.
fn controller_of(object: &Value) -> String {
    let Some(owner) =
        items(object, &["metadata", "ownerReferences"]).iter().find(|o| flag(o, &["controller"]) == Some(true))
    else {
        return "<none>".to_owned();
    };
    let group = match text(owner, &["apiVersion"]).split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = text(owner, &["kind"]);
    let owner_name = text(owner, &["name"]);
    match (kind, group) {
        ("", "") => owner_name.to_owned(),
        (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{owner_name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

fn job_cells(job: &Value, now: i64) -> Vec<Value> {
    let succeeded = integer(job, &["status", "succeeded"]);
    let completions = match at(job, &["spec", "completions"]).and_then(as_integer) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match integer(job, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match instant(at(job, &["status", "startTime"])) {
        None => String::new(),
        Some(start) => {
            let end = instant(at(job, &["status", "completionTime"])).unwrap_or((now, 0));
            human_duration(elapsed_ns(start, end))
        }
    };
    let status = if first_condition_true(job, "Complete") {
        "Complete"
    } else if first_condition_true(job, "Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if first_condition_true(job, "Suspended") {
        "Suspended"
    } else if first_condition_true(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [containers, images] = container_cells(job, &["spec", "template"]);
    vec![
        json!(name(job)),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        containers,
        images,
        json!(format_label_selector(at(job, &["spec", "selector"]))),
    ]
}

fn cron_job_cells(cron_job: &Value, now: i64) -> Vec<Value> {
    let suspend = match flag(cron_job, &["spec", "suspend"]) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match at(cron_job, &["status", "lastScheduleTime"]) {
        None => "<none>".to_owned(),
        Some(time) => since(Some(time), now),
    };
    let template = ["spec", "jobTemplate", "spec", "template"];
    let [containers, images] = container_cells(cron_job, &template);
    vec![
        json!(name(cron_job)),
        json!(text(cron_job, &["spec", "schedule"])),
        json!(or_placeholder(text(cron_job, &["spec", "timeZone"]), "<none>")),
        json!(suspend),
        json!(items(cron_job, &["status", "active"]).len()),
        json!(last_schedule),
        json!(age(cron_job, now)),
        containers,
        images,
        json!(format_label_selector(at(cron_job, &["spec", "jobTemplate", "spec", "selector"]))),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Horizontal pod autoscalers

const LISTED_METRICS: usize = 2;

/// A quantity as its canonical string; Go prints a nil quantity as `<nil>`.
fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<nil>".to_owned(),
    }
}

/// `spec.metrics` of `autoscaling/v2`, or the single CPU metric an `autoscaling/v1` object implies.
fn metric_specs(hpa: &Value) -> Vec<Value> {
    if let Some(metrics) = at(hpa, &["spec", "metrics"]).and_then(Value::as_array) {
        return metrics.clone();
    }
    at(hpa, &["spec", "targetCPUUtilizationPercentage"])
        .map(|target| {
            vec![json!({"type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}})]
        })
        .unwrap_or_default()
}

fn metric_statuses(hpa: &Value) -> Vec<Value> {
    if let Some(metrics) = at(hpa, &["status", "currentMetrics"]).and_then(Value::as_array) {
        return metrics.clone();
    }
    at(hpa, &["status", "currentCPUUtilizationPercentage"])
        .map(|current| {
            vec![json!({"type": "Resource",
                        "resource": {"name": "cpu", "current": {"averageUtilization": current}}})]
        })
        .unwrap_or_default()
}

fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    let metric_type = text(spec, &["type"]);
    let key = match metric_type {
        "External" => "external",
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        _ => return "<unknown type>".to_owned(),
    };
    let target = at(spec, &[key, "target"]).unwrap_or(&Value::Null);
    let current = status.and_then(|s| at(s, &[key, "current"]).or_else(|| at(s, &[key]).map(|_| &Value::Null)));
    let current_quantity = |field: &str| current.map(|c| quantity(at(c, &[field])));
    let target_average = at(target, &["averageValue"]);
    match metric_type {
        "External" | "Object" if target_average.is_some() => {
            let now =
                current.and_then(|c| at(c, &["averageValue"])).map_or("<unknown>".to_owned(), |q| quantity(Some(q)));
            format!("{now}/{} (avg)", quantity(target_average))
        }
        "External" | "Object" => {
            let now = current_quantity("value").unwrap_or_else(|| "<unknown>".to_owned());
            format!("{now}/{}", quantity(at(target, &["value"])))
        }
        "Pods" => {
            let now = current_quantity("averageValue").unwrap_or_else(|| "<unknown>".to_owned());
            format!("{now}/{}", quantity(target_average))
        }
        _ => {
            let resource = text(spec, &[key, "name"]);
            if target_average.is_some() {
                let now = current_quantity("averageValue").unwrap_or_else(|| "<unknown>".to_owned());
                return format!("{resource}: {now}/{}", quantity(target_average));
            }
            let percent = |v: Option<&Value>| v.and_then(as_integer).map(|n| format!("{n}%"));
            let now =
                percent(current.and_then(|c| at(c, &["averageUtilization"]))).unwrap_or_else(|| "<unknown>".to_owned());
            let goal = percent(at(target, &["averageUtilization"])).unwrap_or_else(|| "<auto>".to_owned());
            format!("{resource}: {now}/{goal}")
        }
    }
}

fn format_metrics(hpa: &Value) -> String {
    let specs = metric_specs(hpa);
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let statuses = metric_statuses(hpa);
    let list: Vec<String> = specs.iter().enumerate().map(|(i, spec)| format_metric(spec, statuses.get(i))).collect();
    if list.len() > LISTED_METRICS {
        format!("{} + {} more...", list[..LISTED_METRICS].join(", "), list.len() - LISTED_METRICS)
    } else {
        list.join(", ")
    }
}

fn horizontal_pod_autoscaler_cells(hpa: &Value, now: i64) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(hpa, &["spec", "scaleTargetRef", "kind"]),
        text(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods =
        at(hpa, &["spec", "minReplicas"]).and_then(as_integer).map_or_else(|| "<unset>".to_owned(), |n| n.to_string());
    vec![
        json!(name(hpa)),
        json!(reference),
        json!(format_metrics(hpa)),
        json!(min_pods),
        json!(integer(hpa, &["spec", "maxReplicas"])),
        json!(integer(hpa, &["status", "currentReplicas"])),
        json!(age(hpa, now)),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Resource quotas and ingresses

/// `REQUEST` and `LIMIT`: `resource: used/hard` for each hard limit in name order, `limits.*` in the second.
fn resource_quota_cells(quota: &Value, now: i64) -> Vec<Value> {
    let mut resources: Vec<&String> =
        at(quota, &["spec", "hard"]).and_then(Value::as_object).map(|m| m.keys().collect()).unwrap_or_default();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let amount = |field: &str| match at(quota, &["status", field, resource.as_str()]) {
            None => "0".to_owned(),
            some => quantity(some),
        };
        let cell = format!("{resource}: {}/{}", amount("used"), amount("hard"));
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(cell),
            _ => requests.push(cell),
        }
    }
    vec![json!(name(quota)), json!(age(quota, now)), json!(requests.join(", ")), json!(limits.join(", "))]
}

/// The hosts an ingress's rules name, three at most, `*` when none does.
fn format_ingress_hosts(rules: &[Value]) -> String {
    const SHOWN: usize = 3;
    let hosts: Vec<&str> = rules.iter().map(|r| text(r, &["host"])).filter(|h| !h.is_empty()).take(SHOWN).collect();
    if hosts.is_empty() {
        return "*".to_owned();
    }
    match rules.len() > SHOWN && hosts.len() == SHOWN {
        true => format!("{} + {} more...", hosts.join(","), rules.len() - SHOWN),
        false => hosts.join(","),
    }
}

fn ingress_cells(ingress: &Value, now: i64) -> Vec<Value> {
    let class = at(ingress, &["spec", "ingressClassName"]).and_then(Value::as_str).unwrap_or("<none>");
    let addresses: Vec<&str> = items(ingress, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| if text(i, &["ip"]).is_empty() { text(i, &["hostname"]) } else { text(i, &["ip"]) })
        .filter(|a| !a.is_empty())
        .collect();
    let ports = if items(ingress, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        json!(name(ingress)),
        json!(class),
        json!(format_ingress_hosts(items(ingress, &["spec", "rules"]))),
        json!(addresses.join(",")),
        json!(ports),
        json!(age(ingress, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::catalog::RESOURCES;

    /// 2024-05-01T12:00:00Z.
    const NOW: i64 = 1_714_564_800;

    fn ago(seconds: i64) -> String {
        time::format_or_zero(Some((NOW - seconds, 0)))
    }

    /// The served resource `plural` of `group`.
    fn served(group: &str, plural: &str) -> &'static Resource {
        RESOURCES.iter().find(|r| r.group == group && r.plural == plural).expect("served")
    }

    fn printed(printer: Printer, object: Value) -> Vec<Value> {
        let table = printer.table(&[object], NOW, true, IncludeObject::Metadata);
        let columns = table["columnDefinitions"].as_array().map_or(0, Vec::len);
        let row_cells = table["rows"][0]["cells"].as_array().cloned().unwrap_or_default();
        assert_eq!(row_cells.len(), columns, "one cell per column for {printer:?}");
        row_cells
    }

    fn cells(group: &str, plural: &str, object: Value) -> Vec<Value> {
        printed(served(group, plural).printer, object)
    }

    #[test]
    fn human_durations_follow_upstream_rules() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (599, "9m59s"),
            (600, "10m"),
            (601, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60 + 59, "3h20m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 3599, "47h"),
            (48 * 3600, "2d"),
            (2 * 86_400 + 3 * 3600 + 59, "2d3h"),
            (8 * 86_400 - 1, "7d23h"),
            (8 * 86_400, "8d"),
            (40 * 86_400, "40d"),
            (2 * 365 * 86_400 - 1, "729d"),
            (2 * 365 * 86_400, "2y"),
            ((3 * 365 + 12) * 86_400, "3y12d"),
            (8 * 365 * 86_400, "8y"),
            (20 * 365 * 86_400 + 100 * 86_400, "20y"),
        ];
        for &(seconds, expected) in cases {
            assert_eq!(human_duration(i128::from(seconds) * NANOS_PER_SEC), expected, "{seconds}s");
        }
        assert_eq!(human_duration(-1_500_000_000), "0s");
        assert_eq!(human_duration(1_999_999_999), "1s");
        assert_eq!(human_duration(i128::MAX), "292y");
    }

    #[test]
    fn table_carries_definitions_rows_and_partial_object_metadata() {
        let metadata = json!({"name": "team-a", "uid": "u1", "labels": {"x": "y"}, "creationTimestamp": ago(300)});
        let namespace = json!({"kind": "Namespace", "metadata": metadata, "status": {"phase": "Active"}});
        let full =
            table(served("", "namespaces"), std::slice::from_ref(&namespace), NOW, true, IncludeObject::Metadata);
        assert_eq!(full["kind"], "Table");
        assert_eq!(full["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(full["metadata"], json!({}));
        let names: Vec<&str> =
            full["columnDefinitions"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["Name", "Status", "Age"]);
        assert_eq!(full["columnDefinitions"][0]["format"], "name");
        assert_eq!(full["rows"][0]["cells"], json!(["team-a", "Active", "5m"]));
        assert_eq!(
            full["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
        );
        let later =
            table(served("", "namespaces"), std::slice::from_ref(&namespace), NOW, false, IncludeObject::Metadata);
        assert_eq!(later["columnDefinitions"], json!([]));
        assert_eq!(later["rows"], full["rows"]);
        let whole =
            table(served("", "namespaces"), std::slice::from_ref(&namespace), NOW, false, IncludeObject::Object);
        assert_eq!(whole["rows"][0]["object"], namespace);
        let none = table(served("", "namespaces"), &[namespace], NOW, false, IncludeObject::None);
        assert_eq!(none["rows"][0]["object"], Value::Null);
        assert_eq!(none["rows"][0]["cells"], full["rows"][0]["cells"]);
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
        assert!(IncludeObject::parse(Some("Everything")).is_err());
    }

    #[test]
    fn pod_with_one_ready_container_is_running() {
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(300)},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}]},
            "status": {
                "phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                       "state": {"running": {"startedAt": ago(290)}}}],
            },
        });
        assert_eq!(
            cells("", "pods", pod),
            json!(["web-0", "1/1", "Running", "0", "5m", "10.0.0.7", "node-1", "<none>", "<none>"])
                .as_array()
                .cloned()
                .unwrap_or_default()
        );
        let defs = column_definitions(served("", "pods"));
        let wide: Vec<&str> = defs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["priority"] == 1)
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    }

    #[test]
    fn pod_statuses_are_computed_as_upstream() {
        let terminating = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(7200), "deletionTimestamp": ago(5)},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running",
                       "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2,
                                              "lastState": {"terminated": {"finishedAt": ago(600)}},
                                              "state": {"running": {}}}]},
        });
        let row = cells("", "pods", terminating);
        assert_eq!(row[1..5], [json!("1/1"), json!("Terminating"), json!("2 (10m ago)"), json!("120m")]);

        let status = |pod: Value| pod_summary(&pod).reason;
        let crashing = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(status(crashing), "CrashLoopBackOff");
        let completed = json!({"status": {"phase": "Succeeded",
            "containerStatuses": [{"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(status(completed.clone()), "Completed");
        assert_eq!(pod_row_conditions(&completed).map(|c| c[0]["type"].clone()), Some(json!("Completed")));
        let killed = json!({"status": {"phase": "Failed",
            "containerStatuses": [{"name": "a", "state": {"terminated": {"signal": 9, "exitCode": 137}}}]}});
        assert_eq!(status(killed), "Signal:9");
        let init_waiting = json!({"spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(status(init_waiting), "Init:1/2");
        let init_failed = json!({"spec": {"initContainers": [{"name": "i1"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(status(init_failed), "Init:ExitCode:3");
        let pulling = json!({"spec": {"initContainers": [{"name": "i1"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "ErrImagePull"}}}]}});
        assert_eq!(status(pulling), "Init:ErrImagePull");
        let gated = json!({"status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(status(gated), "SchedulingGated");
        let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(status(evicted), "Evicted");
        let lost =
            json!({"metadata": {"deletionTimestamp": ago(1)}, "status": {"phase": "Running", "reason": "NodeLost"}});
        assert_eq!(status(lost), "Unknown");
        let sidecar = json!({
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                                           "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]},
        });
        let summary = pod_summary(&sidecar);
        assert_eq!((summary.ready, summary.total, summary.reason.as_str(), summary.restarts), (2, 2, "Running", 1));
        let gates = json!({"metadata": {"name": "g"},
            "spec": {"readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"conditions": [{"type": "x", "status": "True"}, {"type": "y", "status": "False"}]}});
        assert_eq!(cells("", "pods", gates)[8], json!("1/2"));
    }

    #[test]
    fn deployment_row_shows_readiness_and_wide_columns() {
        let deployment = json!({
            "metadata": {"name": "nginx", "creationTimestamp": ago(3 * 86_400 + 3600)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"},
                                                          {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            cells("apps", "deployments", deployment),
            [
                json!("nginx"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3d1h"),
                json!("nginx,log"),
                json!("nginx:1.25,busybox"),
                json!("app=nginx")
            ]
        );
        let bare = json!({"metadata": {"name": "d"}});
        assert_eq!(cells("apps", "deployments", bare)[1..5], [json!("0/1"), json!(0), json!(0), json!("<unknown>")]);
    }

    #[test]
    fn services_print_types_addresses_and_ports() {
        let node_port = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(45)},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web", "tier": "fe"}},
        });
        assert_eq!(
            cells("", "services", node_port),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("45s"),
                json!("app=web,tier=fe")
            ]
        );
        let balancer = json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11", "ports": [{"port": 443}],
                     "externalIPs": ["1.2.3.4"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cells("", "services", balancer)[2..5],
            [json!("10.96.0.11"), json!("5.6.7.8,lb.example.com,1.2.3.4"), json!("443/TCP")]
        );
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["None"]}});
        assert_eq!(cells("", "services", pending)[2..5], [json!("None"), json!("<pending>"), json!("<none>")]);
        let external =
            json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(cells("", "services", external)[2..4], [json!("<none>"), json!("db.example.com")]);
    }

    #[test]
    fn event_row_names_the_object_and_its_source() {
        let event = json!({
            "metadata": {"name": "web-0.17a8", "namespace": "default", "creationTimestamp": ago(600)},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default",
                               "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "message": "  Successfully pulled image \"nginx\"\n", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(120), "count": 3,
        });
        assert_eq!(
            cells("", "events", event),
            [
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(3),
                json!("web-0.17a8")
            ]
        );
        let series = json!({"metadata": {"name": "e3"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": ago(900),
            "series": {"count": 7, "lastObservedTime": ago(60)}});
        let row = cells("", "events", series);
        assert_eq!((row[0].clone(), row[7].clone(), row[8].clone()), (json!("60s"), json!("15m"), json!(7)));
        let names: Vec<Value> = column_definitions(served("", "events"))
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names[..4], [json!("Last Seen"), json!("Type"), json!("Reason"), json!("Object")]);
    }

    #[test]
    fn other_printers_fill_their_columns() {
        let roles = json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"});
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(86_400), "labels": roles},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"}}});
        assert_eq!(
            cells("", "nodes", node),
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("24h"),
                json!("v1.32.0"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let endpoints = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(cells("", "endpoints", endpoints)[1], json!("10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more..."));
        assert_eq!(cells("", "endpoints", json!({"metadata": {"name": "e"}}))[1], json!("<none>"));
        let config_map = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("", "configmaps", config_map)[1], json!(3));
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "YQ=="}});
        assert_eq!(cells("", "secrets", secret)[1..3], [json!("Opaque"), json!(1)]);
        let account = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        assert_eq!(cells("", "serviceaccounts", account)[1], json!(1));
        let replica_set = json!({"metadata": {"name": "nginx-7c"},
                                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}}},
                                 "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(cells("apps", "replicasets", replica_set)[1..4], [json!(2), json!(2), json!(1)]);
        let stateful_set = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
        assert_eq!(cells("apps", "statefulsets", stateful_set)[1], json!("3/3"));
        let daemon_set = json!({"metadata": {"name": "agent"},
                                "spec": {"selector": {}, "template": {"spec": {"nodeSelector": {"os": "linux"}}}},
                                "status": {"desiredNumberScheduled": 3, "numberReady": 2}});
        let row = cells("apps", "daemonsets", daemon_set);
        assert_eq!(
            (row[1].clone(), row[3].clone(), row[6].clone(), row[10].clone()),
            (json!(3), json!(2), json!("os=linux"), json!("<none>"))
        );
        let revision = json!({"metadata": {"name": "db-5d", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 4});
        assert_eq!(cells("apps", "controllerrevisions", revision)[1..3], [json!("statefulset.apps/db"), json!(4)]);
        let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1},
                         "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
                                    "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(cells("batch", "jobs", job)[1..4], [json!("Complete"), json!("1/1"), json!("60s")]);
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
        assert_eq!(cells("batch", "jobs", running)[1..4], [json!("Running"), json!("0/1 of 3"), json!("30s")]);
        let cron_job = json!({"metadata": {"name": "tick"}, "spec": {"schedule": "*/5 * * * *", "suspend": false},
                              "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(120)}});
        assert_eq!(
            cells("batch", "cronjobs", cron_job)[1..6],
            [json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(1), json!("2m")]
        );
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node-1_abc"}});
        assert_eq!(cells("coordination.k8s.io", "leases", lease)[1], json!("node-1_abc"));
        let hpa = json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                                    "target": {"averageUtilization": 80}}},
                                 {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
                                 {"type": "Resource",
                                  "resource": {"name": "memory", "target": {"averageValue": "100Mi"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42}}}]}});
        assert_eq!(
            cells("autoscaling", "horizontalpodautoscalers", hpa)[1..6],
            [json!("Deployment/web"), json!("cpu: 42%/80%, <unknown>/1k + 1 more..."), json!("1"), json!(5), json!(2)]
        );
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "endpointslices", slice)[1..4],
            [json!("IPv4"), json!("80,dns,* + 1 more..."), json!("10.0.0.1,10.0.0.2")]
        );
        assert_eq!(cells("discovery.k8s.io", "endpointslices", json!({}))[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn controllers_templates_volumes_and_claims_print_upstreams_columns() {
        let rc = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)},
            "spec": {"replicas": 3, "selector": {"app": "web"},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("", "replicationcontrollers", rc),
            [
                json!("web"),
                json!(3),
                json!(2),
                json!(1),
                json!("60s"),
                json!("nginx"),
                json!("nginx:1.25"),
                json!("app=web")
            ]
        );
        let template = json!({"metadata": {"name": "t"},
            "template": {"metadata": {"labels": {"app": "t"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}});
        assert_eq!(cells("", "podtemplates", template), [json!("t"), json!("c"), json!("busybox"), json!("app=t")]);
        let volume = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(30)},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "slow", "volumeMode": "Filesystem",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("", "persistentvolumes", volume),
            [
                json!("pv1"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("slow"),
                json!("<unset>"),
                json!(""),
                json!("30s"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"name": "data", "creationTimestamp": ago(5)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        assert_eq!(
            cells("", "persistentvolumeclaims", pending),
            [
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!(""),
                json!("<unset>"),
                json!("5s"),
                json!("<unset>")
            ]
        );
        let bound = json!({"metadata": {"name": "data", "deletionTimestamp": ago(1),
                "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
            "spec": {"volumeName": "pv1", "storageClassName": "slow"},
            "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(
            cells("", "persistentvolumeclaims", bound)[1..6],
            [json!("Terminating"), json!("pv1"), json!("2Gi"), json!("RWOP"), json!("fast")]
        );
    }

    #[test]
    fn kinds_without_a_printer_fall_back_to_name_and_age() {
        let widget = json!({"metadata": {"name": "w1", "creationTimestamp": ago(7)}});
        assert_eq!(printed(Printer::AgeOnly, widget), [json!("w1"), json!("7s")]);
        assert_eq!(Printer::AgeOnly.column_definitions()[1]["name"], "Age");
        assert_eq!(printed(Printer::AgeOnly, json!({"metadata": {"name": "w2"}}))[1], json!("<unknown>"));
        let malformed =
            table(served("", "pods"), &[json!("not an object"), json!(null)], NOW, true, IncludeObject::Metadata);
        assert_eq!(malformed["rows"][0]["cells"][0], json!(""));
        assert_eq!(malformed["rows"][1]["object"]["metadata"], json!({}));
    }

    #[test]
    fn component_statuses_print_their_healthy_condition() {
        let healthy = json!({"metadata": {"name": "scheduler"},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            cells("", "componentstatuses", healthy),
            [json!("scheduler"), json!("Healthy"), json!("ok"), json!("")]
        );
        let down = json!({"metadata": {"name": "etcd-n2"},
            "conditions": [{"type": "Healthy", "status": "False", "error": "no answer"}]});
        assert_eq!(
            cells("", "componentstatuses", down),
            [json!("etcd-n2"), json!("Unhealthy"), json!(""), json!("no answer")]
        );
        let bare = json!({"metadata": {"name": "x"}});
        assert_eq!(cells("", "componentstatuses", bare)[1], "Unknown");
    }
}
