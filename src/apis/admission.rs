//! What upstream's admission plugins decide from the policy objects of a namespace, given those objects:
//! LimitRanger (container resource defaults and bounds), ResourceQuota (what an object uses and whether the
//! quotas allow it) and Priority (a pod's priority from its class); and the two that need no other object:
//! DefaultTolerationSeconds (a pod's tolerations of not-ready and unreachable nodes) and TaintNodesByCondition
//! (a new node's not-ready taint); and the ServiceAccount plugin's token volume, given the pod's account. The
//! registry reads the policy objects and writes the results; everything here is pure.
//!
//! Refusals are the messages of upstream's 403 Forbidden answers, which the registry prefixes with the
//! object (`pods "p" is forbidden: ...`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::quantity::Quantity;

// ---------------------------------------------------------------------------------------------------------
// LimitRanger

/// The annotation that records which defaults LimitRanger set.
pub const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn quantities(value: Option<&Value>) -> BTreeMap<String, Quantity> {
    let entries = value.and_then(Value::as_object).into_iter().flatten();
    entries.filter_map(|(name, q)| Some((name.clone(), Quantity::parse(q.as_str()?)?))).collect()
}

fn containers_mut(pod: &mut Value) -> impl Iterator<Item = &mut Value> {
    let spec = pod.get_mut("spec").and_then(Value::as_object_mut);
    let (mut init, mut main) = (None, None);
    if let Some(spec) = spec {
        for (key, list) in spec.iter_mut() {
            match key.as_str() {
                "initContainers" => init = list.as_array_mut(),
                "containers" => main = list.as_array_mut(),
                _ => {}
            }
        }
    }
    init.into_iter().flatten().chain(main.into_iter().flatten())
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    let list = |key: &str| pod["spec"][key].as_array().map(Vec::as_slice).unwrap_or_default().iter();
    list("initContainers").chain(list("containers"))
}

/// Upstream's aggregate of several errors: one as it is, more as `[a, b]`.
fn aggregate(errors: Vec<String>) -> Result<(), String> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// Fills each container's missing requests and limits from the `Container` limits' `defaultRequest` and
/// `default`, records what it set in the `kubernetes.io/limit-ranger` annotation, then checks every limit's
/// bounds. Err is the refusal.
pub fn apply_limit_ranges(pod: &mut Value, limit_ranges: &[Value]) -> Result<(), String> {
    let items: Vec<&Value> = limit_ranges
        .iter()
        .flat_map(|lr| lr["spec"]["limits"].as_array().map(Vec::as_slice).unwrap_or_default())
        .collect();
    let mut set = Vec::new();
    for item in items.iter().filter(|i| i["type"] == "Container") {
        for container in containers_mut(pod) {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            for (source, field, what) in [("defaultRequest", "requests", "request"), ("default", "limits", "limit")] {
                let Some(Value::Object(defaults)) = item.get(source) else { continue };
                let Some(container) = container.as_object_mut() else { continue };
                let resources = container.entry("resources").or_insert_with(|| json!({}));
                let Some(resources) = resources.as_object_mut() else { continue };
                let target = resources.entry(field).or_insert_with(|| json!({}));
                let Some(target) = target.as_object_mut() else { continue };
                let added: Vec<&String> = defaults.keys().filter(|r| !target.contains_key(*r)).collect();
                if added.is_empty() {
                    continue;
                }
                let names: Vec<&str> = added.iter().map(|r| r.as_str()).collect();
                set.push(format!("{} {what} for container {name}", names.join(", ")));
                for resource in added {
                    target.insert(resource.clone(), defaults[resource.as_str()].clone());
                }
            }
        }
    }
    if !set.is_empty() {
        let meta = pod.as_object_mut().map(|p| p.entry("metadata").or_insert_with(|| json!({})));
        if let Some(meta) = meta.and_then(Value::as_object_mut) {
            let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    LIMIT_RANGER_ANNOTATION.to_owned(),
                    json!(format!("LimitRanger plugin set: {}", set.join("; "))),
                );
            }
        }
    }
    let mut errors = Vec::new();
    for item in &items {
        match item["type"].as_str() {
            Some("Container") => {
                for container in containers(pod) {
                    let requests = quantities(container["resources"].get("requests"));
                    let limits = quantities(container["resources"].get("limits"));
                    check_bounds(item, "Container", &requests, &limits, &mut errors);
                }
            }
            Some("Pod") => {
                let (requests, limits) = pod_totals(pod);
                check_bounds(item, "Pod", &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    aggregate(errors)
}

/// The requests and limits of a whole pod: its containers summed, or an init container's if larger.
fn pod_totals(pod: &Value) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut totals = [BTreeMap::new(), BTreeMap::new()];
    for (i, field) in ["requests", "limits"].into_iter().enumerate() {
        let list = |key: &str| pod["spec"][key].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut sum: BTreeMap<String, Quantity> = BTreeMap::new();
        for container in list("containers") {
            for (name, q) in quantities(container["resources"].get(field)) {
                let entry = sum.entry(name).or_insert(Quantity::ZERO);
                *entry = entry.plus(q);
            }
        }
        for container in list("initContainers") {
            for (name, q) in quantities(container["resources"].get(field)) {
                let entry = sum.entry(name).or_insert(Quantity::ZERO);
                *entry = (*entry).max(q);
            }
        }
        totals[i] = sum;
    }
    let [requests, limits] = totals;
    (requests, limits)
}

/// Upstream's min, max and ratio constraints of one limit over a container's or a pod's resources.
fn check_bounds(
    item: &Value,
    scope: &str,
    requests: &BTreeMap<String, Quantity>,
    limits: &BTreeMap<String, Quantity>,
    errors: &mut Vec<String>,
) {
    for (resource, min) in quantities(item.get("min")) {
        match requests.get(&resource) {
            None => errors.push(format!("minimum {resource} usage per {scope} is {min}.  No request is specified")),
            Some(request) if *request < min => {
                errors.push(format!("minimum {resource} usage per {scope} is {min}, but request is {request}"))
            }
            Some(_) => {}
        }
        if let Some(limit) = limits.get(&resource).filter(|l| **l < min) {
            errors.push(format!("minimum {resource} usage per {scope} is {min}, but limit is {limit}"));
        }
    }
    for (resource, max) in quantities(item.get("max")) {
        match limits.get(&resource) {
            None => errors.push(format!("maximum {resource} usage per {scope} is {max}.  No limit is specified")),
            Some(limit) if *limit > max => {
                errors.push(format!("maximum {resource} usage per {scope} is {max}, but limit is {limit}"))
            }
            Some(_) => {}
        }
    }
    for (resource, ratio) in quantities(item.get("maxLimitRequestRatio")) {
        let (Some(limit), Some(request)) = (limits.get(&resource), requests.get(&resource)) else {
            errors.push(format!("{resource} max limit to request ratio per {scope} is {ratio}, but no request is specified or request is 0"));
            continue;
        };
        let provided = limit.ratio(*request).unwrap_or(f64::INFINITY);
        if provided > ratio.ratio(Quantity::units(1)).unwrap_or(0.0) {
            errors.push(format!(
                "{resource} max limit to request ratio per {scope} is {ratio}, but provided ratio is {provided:.6}"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// ResourceQuota

/// What objects of a kind use, beyond their `count/<resource>` (which every kind counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Only `count/<resource>`.
    Counted,
    /// Also the object count under its legacy name (`configmaps`, `secrets`, ...).
    Object(&'static str),
    /// Pods: `pods`, and their containers' compute requests and limits.
    Pods,
    /// Services: `services`, `services.nodeports`, `services.loadbalancers`.
    Services,
    /// PersistentVolumeClaims: `persistentvolumeclaims`, `requests.storage`.
    Claims,
}

/// The quota resource names for `count/<plural>` (core) or `count/<plural>.<group>`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// What one object uses, by quota resource name. A pod that has finished uses nothing but its count.
pub fn usage(kind: Usage, count: &str, object: &Value) -> BTreeMap<String, Quantity> {
    let mut used = BTreeMap::from([(count.to_owned(), Quantity::units(1))]);
    match kind {
        Usage::Counted => {}
        Usage::Object(name) => {
            used.insert(name.to_owned(), Quantity::units(1));
        }
        Usage::Pods => {
            if matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
                used.clear();
                return used;
            }
            used.insert("pods".to_owned(), Quantity::units(1));
            let (requests, limits) = pod_totals(object);
            for (name, q) in requests {
                used.insert(format!("requests.{name}"), q);
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    used.insert(name, q);
                }
            }
            for (name, q) in limits {
                used.insert(format!("limits.{name}"), q);
            }
        }
        Usage::Services => {
            used.insert("services".to_owned(), Quantity::units(1));
            let service_type = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ports = object["spec"]["ports"].as_array().map(Vec::as_slice).unwrap_or_default();
            let node_ports = match service_type {
                "NodePort" | "LoadBalancer" => ports.iter().filter(|p| p.get("nodePort").is_some()).count(),
                _ => 0,
            };
            used.insert("services.nodeports".to_owned(), Quantity::units(node_ports as i64));
            let balancers = i64::from(service_type == "LoadBalancer");
            used.insert("services.loadbalancers".to_owned(), Quantity::units(balancers));
        }
        Usage::Claims => {
            used.insert("persistentvolumeclaims".to_owned(), Quantity::units(1));
            if let Some(storage) = object["spec"]["resources"]["requests"]["storage"].as_str().and_then(Quantity::parse)
            {
                used.insert("requests.storage".to_owned(), storage);
            }
        }
    }
    used
}

/// Whether a pod has no compute requests or limits at all (the `BestEffort` scope).
fn best_effort(pod: &Value) -> bool {
    containers(pod).all(|c| {
        let resources = &c["resources"];
        ["requests", "limits"]
            .iter()
            .all(|f| resources[f].as_object().is_none_or(|m| !m.contains_key("cpu") && !m.contains_key("memory")))
    })
}

/// Whether a quota tracks `object`: a quota with scopes or a scope selector tracks only pods that match them.
pub fn tracks(quota: &Value, kind: Usage, object: &Value) -> bool {
    let spec = &quota["spec"];
    let scopes: Vec<&str> = spec["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let selector = spec["scopeSelector"]["matchExpressions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if scopes.is_empty() && selector.is_empty() {
        return true;
    }
    if kind != Usage::Pods {
        return false;
    }
    let terminating = object["spec"]["activeDeadlineSeconds"].as_i64().is_some();
    let class = object["spec"]["priorityClassName"].as_str().unwrap_or_default();
    let scope_matches = |scope: &str, operator: &str, values: &[Value]| {
        let holds = match scope {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => best_effort(object),
            "NotBestEffort" => !best_effort(object),
            "PriorityClass" => match operator {
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                "Exists" | "" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            },
            _ => false,
        };
        match (scope, operator) {
            ("PriorityClass", _) | (_, "Exists" | "In" | "") => holds,
            (_, "DoesNotExist" | "NotIn") => !holds,
            _ => false,
        }
    };
    scopes.iter().all(|s| scope_matches(s, "", &[]))
        && selector.iter().all(|e| {
            let values = e["values"].as_array().map(Vec::as_slice).unwrap_or_default();
            scope_matches(
                e["scopeName"].as_str().unwrap_or_default(),
                e["operator"].as_str().unwrap_or_default(),
                values,
            )
        })
}

/// The compute resources a quota on them requires every container to state.
const REQUIRED_BY_QUOTA: [(&str, &str, &str); 6] = [
    ("cpu", "requests", "cpu"),
    ("requests.cpu", "requests", "cpu"),
    ("memory", "requests", "memory"),
    ("requests.memory", "requests", "memory"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
];

fn show_quantities(names: &[&String], amounts: &BTreeMap<String, Quantity>) -> String {
    let shown: Vec<String> =
        names.iter().map(|n| format!("{n}={}", amounts.get(*n).copied().unwrap_or(Quantity::ZERO))).collect();
    shown.join(",")
}

/// A quota's decision on an object that adds `delta`: `Ok(None)` when the quota does not limit anything the
/// object uses, `Ok(Some(used))` with the quota's new `status.used` when it allows it, Err with upstream's
/// message when it does not.
pub fn charge(
    quota: &Value,
    kind: Usage,
    object: &Value,
    delta: &BTreeMap<String, Quantity>,
) -> Result<Option<Value>, String> {
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    let limited = quantities(quota["spec"].get("hard"));
    let touched: Vec<&String> = limited.keys().filter(|r| delta.contains_key(*r)).collect();
    let required: Vec<&(&str, &str, &str)> =
        REQUIRED_BY_QUOTA.iter().filter(|(quota_name, ..)| limited.contains_key(*quota_name)).collect();
    if kind == Usage::Pods && !required.is_empty() {
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for container in containers(object) {
            for (quota_name, field, resource) in &required {
                if container["resources"][field].get(resource).is_none() {
                    let container_name = container["name"].as_str().unwrap_or_default().to_owned();
                    missing.entry((*quota_name).to_owned()).or_default().insert(container_name);
                }
            }
        }
        if !missing.is_empty() {
            let parts: Vec<String> = missing
                .iter()
                .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
                .collect();
            return Err(format!("failed quota: {name}: must specify {}", parts.join("; ")));
        }
    }
    if touched.is_empty() {
        return Ok(None);
    }
    let hard = quantities(quota["status"].get("hard"));
    let unknown: Vec<&String> = touched.iter().copied().filter(|r| !hard.contains_key(*r)).collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|r| r.as_str()).collect();
        return Err(format!("status unknown for quota: {name}, resources: {}", names.join(",")));
    }
    let mut used = quantities(quota["status"].get("used"));
    let exceeded: Vec<&String> = touched
        .iter()
        .copied()
        .filter(|r| used.get(*r).copied().unwrap_or(Quantity::ZERO).plus(delta[r.as_str()]) > hard[r.as_str()])
        .collect();
    if !exceeded.is_empty() {
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            show_quantities(&exceeded, delta),
            show_quantities(&exceeded, &used),
            show_quantities(&exceeded, &hard),
        ));
    }
    for r in touched {
        let entry = used.entry(r.clone()).or_insert(Quantity::ZERO);
        *entry = entry.plus(delta[r.as_str()]);
    }
    Ok(Some(quantities_json(&used)))
}

fn quantities_json(amounts: &BTreeMap<String, Quantity>) -> Value {
    Value::Object(amounts.iter().map(|(k, q)| (k.clone(), json!(q.to_string()))).collect::<Map<String, Value>>())
}

/// A quota's status from the usage of every object in its namespace: `hard` as its spec says, `used` the sum
/// over the objects it tracks of each resource it limits.
pub fn quota_status<'a>(quota: &Value, objects: impl IntoIterator<Item = (Usage, &'a str, &'a Value)>) -> Value {
    let hard = quantities(quota["spec"].get("hard"));
    let mut used: BTreeMap<String, Quantity> = hard.keys().map(|r| (r.clone(), Quantity::ZERO)).collect();
    for (kind, count, object) in objects {
        if !tracks(quota, kind, object) {
            continue;
        }
        for (r, q) in usage(kind, count, object) {
            if let Some(total) = used.get_mut(&r) {
                *total = total.plus(q);
            }
        }
    }
    json!({"hard": quantities_json(&hard), "used": quantities_json(&used)})
}

// ---------------------------------------------------------------------------------------------------------
// Priority

/// Sets a new pod's `spec.priority` (and `preemptionPolicy`) from its `priorityClassName`, or from the
/// cluster's global default class when it names none. Err is the refusal: an unknown class, or a priority the
/// pod states that its class does not give.
pub fn resolve_priority(pod: &mut Value, classes: &[Value]) -> Result<(), String> {
    let named = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_owned();
    let class = if named.is_empty() {
        classes.iter().find(|c| c["globalDefault"] == true)
    } else {
        let class = classes.iter().find(|c| c["metadata"]["name"] == named.as_str());
        Some(class.ok_or_else(|| format!("no PriorityClass with name {named} was found"))?)
    };
    let priority = class.and_then(|c| c["value"].as_i64()).unwrap_or(0);
    let policy = class.and_then(|c| c["preemptionPolicy"].as_str()).unwrap_or("PreemptLowerPriority");
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(stated) = spec.get("priority").and_then(Value::as_i64) {
        if stated != priority {
            return Err(format!(
                "the integer value of priority ({stated}) must not be provided in pod spec; priority admission \
                 controller computed {priority} from the given PriorityClass name"
            ));
        }
    }
    spec.insert("priority".to_owned(), json!(priority));
    spec.entry("preemptionPolicy").or_insert_with(|| json!(policy));
    if let Some(class) = class.filter(|_| named.is_empty()) {
        spec.insert("priorityClassName".to_owned(), class["metadata"]["name"].clone());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// DefaultTolerationSeconds and TaintNodesByCondition

/// The taint a node has while it is not ready, and while it is unreachable (the node lifecycle controller's).
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// How long a pod stays on a not-ready or unreachable node unless it says otherwise (upstream's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds, on a pod created or updated: a pod that tolerates no NoExecute
/// not-ready taint (a toleration of that key or of every key, with the NoExecute effect or every effect) gets
/// one for 300 s, and likewise for the unreachable taint, appended to its tolerations.
pub fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("tolerations").is_some_and(|t| !t.is_null() && !t.is_array()) {
        return;
    }
    let tolerations = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |t: &Value, field: &str| t.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
    let tolerated = |taint: &str| {
        tolerations.iter().any(|t| {
            let (key, effect) = (text(t, "key"), text(t, "effect"));
            (key.is_empty() || key == taint) && (effect.is_empty() || effect == "NoExecute")
        })
    };
    let mut added = tolerations.clone();
    for taint in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        if !tolerated(taint) {
            added.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if added.len() != tolerations.len() {
        spec.insert("tolerations".into(), Value::Array(added));
    }
}

/// Upstream's TaintNodesByCondition, on a node created: it gets the `node.kubernetes.io/not-ready:NoSchedule`
/// taint unless it has one of that key and effect, so that nothing is scheduled to it before it reports Ready
/// (the node lifecycle controller then takes the taint away).
pub(crate) fn add_not_ready_taint(node: &mut Value) {
    let Some(map) = node.as_object_mut() else { return };
    if map.get("spec").is_none_or(Value::is_null) {
        map.insert("spec".into(), json!({}));
    }
    let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if spec.get("taints").is_none_or(Value::is_null) {
        spec.insert("taints".into(), json!([]));
    }
    let Some(taints) = spec.get_mut("taints").and_then(Value::as_array_mut) else { return };
    let present = taints
        .iter()
        .any(|t| t.get("key") == Some(&json!(NOT_READY_TAINT)) && t.get("effect") == Some(&json!("NoSchedule")));
    if !present {
        taints.push(json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"}));
    }
}

// ---------------------------------------------------------------------------------------------------------
// ServiceAccount: the API access volume

/// The ConfigMap every namespace holds with the cluster authority's certificate (`ca.crt`).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The description upstream gives that ConfigMap.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using \
    internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed \
    across distributions of Kubernetes clusters.";

/// The `kube-root-ca.crt` ConfigMap of a namespace, holding the cluster authority's certificate `root_ca` (PEM).
pub fn root_ca_config_map(root_ca: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIG_MAP, "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
        "data": {"ca.crt": root_ca}})
}

/// Where a container finds its ServiceAccount's token, the authority's certificate and its namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The names of the volumes this plugin adds start with it.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The lifetime the volume's token asks for (upstream's: an hour and seven seconds, so that its tokens are
/// told apart from others).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3_607;

/// Upstream's ServiceAccount admission of the token volume, on a new pod running as `account`: unless the pod
/// (or else the account) sets `automountServiceAccountToken: false`, each container and init container with
/// nothing mounted at `TOKEN_MOUNT_PATH` mounts a projected volume there, read-only: the account's token (bound
/// to the pod), the cluster authority's certificate from `kube-root-ca.crt` and the namespace. A volume
/// already named `kube-api-access-*` is the one mounted; otherwise one is added, named with `suffix()`.
pub fn mount_service_account_token(pod: &mut Value, account: &Value, suffix: impl FnOnce() -> String) {
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return;
    }
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let mut names = volumes.iter().filter_map(|v| v["name"].as_str());
    let existing = names.find(|n| n.starts_with(TOKEN_VOLUME_PREFIX)).map(str::to_owned);
    let name = existing.clone().unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{}", suffix()));
    let mut mounted = false;
    for container in containers_mut(pod) {
        let Some(container) = container.as_object_mut() else { continue };
        if container.get("volumeMounts").is_none_or(Value::is_null) {
            container.insert("volumeMounts".into(), json!([]));
        }
        let Some(mounts) = container.get_mut("volumeMounts").and_then(Value::as_array_mut) else { continue };
        if mounts.iter().any(|m| m["mountPath"].as_str() == Some(TOKEN_MOUNT_PATH)) {
            continue;
        }
        mounts.push(json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
        mounted = true;
    }
    if !mounted || existing.is_some() {
        return;
    }
    let volume = json!({"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    let mut volumes = volumes;
    volumes.push(volume);
    pod["spec"]["volumes"] = Value::Array(volumes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    fn limit_range(limit: Value) -> Value {
        json!({"spec": {"limits": [limit]}})
    }

    #[test]
    fn limit_ranges_fill_what_containers_leave_out_and_say_so() {
        let range = limit_range(json!({"type": "Container", "default": {"cpu": "500m", "memory": "1Gi"},
            "defaultRequest": {"cpu": "250m"}}));
        let mut p = pod(json!({"requests": {"cpu": "100m"}}));
        apply_limit_ranges(&mut p, &[range]).unwrap();
        let resources = &p["spec"]["containers"][0]["resources"];
        assert_eq!(resources["requests"], json!({"cpu": "100m"}), "a stated request is kept");
        assert_eq!(resources["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(
            p["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION],
            "LimitRanger plugin set: cpu, memory limit for container c"
        );
    }

    #[test]
    fn limit_range_bounds_refuse_with_upstreams_messages() {
        let range = limit_range(json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}}));
        let mut small = pod(json!({"requests": {"cpu": "50m"}, "limits": {"memory": "2Gi"}}));
        let err = apply_limit_ranges(&mut small, std::slice::from_ref(&range)).unwrap_err();
        assert_eq!(
            err,
            "[minimum cpu usage per Container is 100m, but request is 50m, maximum memory usage per Container is \
             1Gi, but limit is 2Gi]"
        );
        let mut bare = pod(json!({}));
        let err = apply_limit_ranges(&mut bare, &[range]).unwrap_err();
        assert!(err.contains("minimum cpu usage per Container is 100m.  No request is specified"), "{err}");
        let per_pod = limit_range(json!({"type": "Pod", "max": {"cpu": "1"}}));
        let mut two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "600m"}}},
            {"name": "b", "resources": {"limits": {"cpu": "600m"}}}]}});
        let err = apply_limit_ranges(&mut two, &[per_pod]).unwrap_err();
        assert_eq!(err, "maximum cpu usage per Pod is 1, but limit is 1200m");
    }

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    fn pod_usage(object: &Value) -> BTreeMap<String, Quantity> {
        usage(Usage::Pods, "count/pods", object)
    }

    #[test]
    fn a_quota_charges_what_fits_and_refuses_what_does_not() {
        let q = quota(json!({"pods": "2", "requests.cpu": "1"}), json!({"pods": "1", "requests.cpu": "400m"}));
        let p = pod(json!({"requests": {"cpu": "400m"}}));
        let used = charge(&q, Usage::Pods, &p, &pod_usage(&p)).unwrap().unwrap();
        assert_eq!(used, json!({"pods": "2", "requests.cpu": "800m"}));
        let full = quota(json!({"pods": "2", "requests.cpu": "1"}), used);
        let err = charge(&full, Usage::Pods, &p, &pod_usage(&p)).unwrap_err();
        assert_eq!(
            err,
            "exceeded quota: q, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: \
             pods=2,requests.cpu=1"
        );
        let bare = pod(json!({}));
        let err = charge(&q, Usage::Pods, &bare, &pod_usage(&bare)).unwrap_err();
        assert_eq!(err, "failed quota: q: must specify requests.cpu for: c");
    }

    #[test]
    fn a_quota_without_a_status_yet_refuses_and_one_that_limits_nothing_used_is_skipped() {
        let fresh = json!({"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "1"}}});
        let map = json!({"data": {}});
        let delta = usage(Usage::Object("configmaps"), "count/configmaps", &map);
        let err = charge(&fresh, Usage::Object("configmaps"), &map, &delta).unwrap_err();
        assert_eq!(err, "status unknown for quota: q, resources: configmaps");
        let secrets = usage(Usage::Object("secrets"), "count/secrets", &map);
        assert_eq!(charge(&fresh, Usage::Object("secrets"), &map, &secrets), Ok(None));
    }

    #[test]
    fn scoped_quotas_track_only_matching_pods() {
        let best_effort = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(tracks(&best_effort, Usage::Pods, &pod(json!({}))));
        assert!(!tracks(&best_effort, Usage::Pods, &pod(json!({"requests": {"cpu": "1"}}))));
        assert!(!tracks(&best_effort, Usage::Services, &json!({})));
        let by_class = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(tracks(&by_class, Usage::Pods, &json!({"spec": {"priorityClassName": "high"}})));
        assert!(!tracks(&by_class, Usage::Pods, &json!({"spec": {"priorityClassName": "low"}})));
    }

    #[test]
    fn services_use_their_node_ports_and_finished_pods_use_nothing() {
        let service = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30002}]}});
        let used = usage(Usage::Services, "count/services", &service);
        assert_eq!(used["services.nodeports"], Quantity::units(2));
        assert_eq!(used["services.loadbalancers"], Quantity::ZERO);
        let done = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        assert!(pod_usage(&done).is_empty());
    }

    #[test]
    fn a_pods_class_sets_its_priority_and_a_missing_class_is_refused() {
        let classes = [
            json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
            json!({"metadata": {"name": "everyday"}, "value": 10, "globalDefault": true}),
        ];
        let mut named = json!({"spec": {"priorityClassName": "high"}});
        resolve_priority(&mut named, &classes).unwrap();
        assert_eq!(
            (named["spec"]["priority"].as_i64(), named["spec"]["preemptionPolicy"].as_str()),
            (Some(1000), Some("Never"))
        );
        let mut unnamed = json!({"spec": {}});
        resolve_priority(&mut unnamed, &classes).unwrap();
        assert_eq!(
            (unnamed["spec"]["priority"].as_i64(), unnamed["spec"]["priorityClassName"].as_str()),
            (Some(10), Some("everyday"))
        );
        let mut missing = json!({"spec": {"priorityClassName": "nope"}});
        assert_eq!(resolve_priority(&mut missing, &classes).unwrap_err(), "no PriorityClass with name nope was found");
        let mut stated = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        assert!(resolve_priority(&mut stated, &classes).unwrap_err().contains("must not be provided in pod spec"));
    }

    #[test]
    fn pods_get_the_default_tolerations_unless_they_tolerate_those_taints() {
        let mut bare = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut bare);
        assert_eq!(
            bare["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let again = bare.clone();
        add_default_tolerations(&mut bare);
        assert_eq!(bare, again, "added once");
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 2});
        let mut short = json!({"spec": {"tolerations": [own.clone()]}});
        add_default_tolerations(&mut short);
        assert_eq!(short["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(short["spec"]["tolerations"][0], own, "the pod's own toleration stays first and unchanged");
        assert_eq!(short["spec"]["tolerations"][1]["key"], "node.kubernetes.io/not-ready");
        // A toleration of every key, or of the key with no effect, covers both; a NoSchedule one does not.
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut everything);
        assert_eq!(everything["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut no_schedule = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}});
        add_default_tolerations(&mut no_schedule);
        assert_eq!(no_schedule["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_new_node_gets_the_not_ready_taint_once() {
        let mut node = json!({"metadata": {"name": "n"}});
        add_not_ready_taint(&mut node);
        assert_eq!(node["spec"]["taints"], json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]));
        add_not_ready_taint(&mut node);
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 1);
        let mut tainted = json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
        add_not_ready_taint(&mut tainted);
        assert_eq!(tainted["spec"]["taints"][0]["key"], "dedicated");
        assert_eq!(tainted["spec"]["taints"][1]["key"], "node.kubernetes.io/not-ready");
    }

    #[test]
    fn a_pod_mounts_its_accounts_token_unless_either_says_not_to() {
        let pod = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [
            {"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]},
        ], "volumes": [{"name": "own", "emptyDir": {}}]}});
        let mut mounted = pod.clone();
        mount_service_account_token(&mut mounted, &json!({}), || "x2b4c".into());
        let volume = &mounted["spec"]["volumes"][1];
        assert_eq!(volume["name"], "kube-api-access-x2b4c");
        let sources = &volume["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"], json!({"expirationSeconds": 3607, "path": "token"}));
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
        let expected = json!([{"name": "kube-api-access-x2b4c", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}]);
        assert_eq!(mounted["spec"]["initContainers"][0]["volumeMounts"], expected);
        assert_eq!(mounted["spec"]["containers"][0]["volumeMounts"], expected);
        assert_eq!(mounted["spec"]["containers"][1]["volumeMounts"][0]["name"], "own", "its own mount stays alone");
        assert_eq!(mounted["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        // Admitted again (an existing volume of that prefix is reused), nothing changes.
        let mut again = mounted.clone();
        mount_service_account_token(&mut again, &json!({}), || "other".into());
        assert_eq!(again, mounted);
        // The pod's choice wins over the account's; the account's over the default.
        for (pod_says, account_says, mounts) in [
            (None, None, true),
            (None, Some(false), false),
            (Some(true), Some(false), true),
            (Some(false), None, false),
        ] {
            let mut p = pod.clone();
            if let Some(v) = pod_says {
                p["spec"]["automountServiceAccountToken"] = json!(v);
            }
            let account = account_says.map_or(json!({}), |v| json!({"automountServiceAccountToken": v}));
            mount_service_account_token(&mut p, &account, || "abcde".into());
            assert_eq!(p["spec"]["volumes"].as_array().unwrap().len() == 2, mounts, "{pod_says:?} {account_says:?}");
        }
    }
}
