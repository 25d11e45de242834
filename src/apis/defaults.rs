//! Server-side defaulting of built-in objects, as upstream's `SetDefaults_*` functions and declarative
//! `+default` markers fill them when an object is decoded, and what a new object starts from (upstream's
//! `PrepareForCreate`: a status reset or the kind's initial status).
//!
//! Objects are `serde_json::Value`s in Kubernetes JSON form. Each catalog entry (`Resource`) names its kind's
//! functions here. [`apply_defaults`] fills what upstream fills every time an object is decoded (the entry's
//! `defaults`), so it runs on every write, create or update. [`apply_create_defaults`] adds what upstream's
//! registries set only when an object is first created (the entry's `create_defaults`: a Namespace's
//! `kubernetes` finalizer, which must not come back after the namespace controller has removed it).
//!
//! Invariants:
//! - Idempotent: applying defaults to a defaulted object changes nothing.
//! - A field is only filled where it is absent (or holds the Go zero value for fields upstream treats that way,
//!   such as an empty `dnsPolicy` or a zero probe `periodSeconds`); a value the client sent is never replaced,
//!   except where upstream overwrites too (the namespace's `kubernetes.io/metadata.name` label).
//! - A field of the wrong JSON type is left as it is: defaulting never panics and never reports errors;
//!   validation reports them.
//! - Kinds whose entry names no defaults are left untouched.
//! - Service defaults assume an IPv4 single-stack cluster (`ipFamilies: ["IPv4"]`); cluster IP and node port
//!   allocation belong to the Service registry, not here.

use serde_json::{json, Map, Value};

use super::catalog::Resource;

/// The default container termination message path.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Upstream's default file mode for configMap, secret, downwardAPI and projected volumes (0644).
const VOLUME_DEFAULT_MODE: i64 = 420;
/// Expiry of a projected service account token when the pod does not say.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// `backoffLimit` of a Job that sets `backoffLimitPerIndex` (upstream's math.MaxInt32).
const BACKOFF_LIMIT_PER_INDEX_DEFAULT: i64 = 2_147_483_647;
/// ClientIP session affinity timeout when the Service does not say (three hours).
const CLIENT_IP_AFFINITY_SECONDS: i64 = 10_800;

/// Fills upstream's defaults into `obj`, an object of `resource` in Kubernetes JSON form. Idempotent.
pub fn apply_defaults(resource: &Resource, obj: &mut Value) {
    (resource.defaults)(obj);
}

/// [`apply_defaults`] plus what upstream's registries set only on create. Idempotent.
pub fn apply_create_defaults(resource: &Resource, obj: &mut Value) {
    (resource.defaults)(obj);
    (resource.create_defaults)(obj);
}

/// The defaulting of a kind upstream fills nothing into.
pub(crate) fn no_defaults(_obj: &mut Value) {}

// ---------------------------------------------------------------------------------------------------------
// What a new object starts from, whatever the client sent (upstream's `PrepareForCreate`).

/// Keeps the status the client sent: kinds without a status that controllers set.
pub(crate) fn keep_status(_obj: &mut Value) {}

/// Drops the status the client sent: controllers and kubelets set it, through the status subresource.
pub(crate) fn reset_status(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}

/// A new Pod is `Pending`, with the QoS class its containers' requests and limits give it.
pub(crate) fn pod_initial_status(pod: &mut Value) {
    let status = json!({"phase": "Pending", "qosClass": qos_class(pod)});
    if let Some(o) = pod.as_object_mut() {
        o.insert("status".to_owned(), status);
    }
}

/// A new Namespace is `Active`.
pub(crate) fn namespace_initial_status(namespace: &mut Value) {
    if let Some(o) = namespace.as_object_mut() {
        o.insert("status".to_owned(), json!({"phase": "Active"}));
    }
}

/// A pod's QoS class from its containers' requests and limits, as upstream computes it.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> =
        ["containers", "initContainers"].iter().filter_map(|f| pod["spec"][f].as_array()).flatten().collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c["resources"]["requests"].as_object();
        let limits = c["resources"]["limits"].as_object();
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

// ---------------------------------------------------------------------------------------------------------
// JSON helpers. Every one of them leaves a wrongly typed field alone.

/// Whether `map[key]` is missing or null.
fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Sets `map[key]` when it is missing or null (a Go pointer field left nil).
fn default_value(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value);
    }
}

/// Sets `map[key]` when it is missing, null or the empty string (a Go string field left at "").
fn default_string(map: &mut Map<String, Value>, key: &str, value: &str) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// Sets `map[key]` when it is missing, null or zero (a Go integer field left at 0).
fn default_integer(map: &mut Map<String, Value>, key: &str, value: i64) {
    let zero = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    };
    if zero {
        map.insert(key.to_owned(), Value::from(value));
    }
}

/// The object at `value[key]`, created empty when missing or null; `None` when `value` is not an object or
/// `value[key]` holds something other than an object.
fn child_object<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = value.as_object_mut()?;
    if is_unset(map, key) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    map.get_mut(key).filter(|child| child.is_object())
}

/// The object at `value[key]` if it exists; nothing is created.
fn existing_object<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    value.as_object_mut()?.get_mut(key).filter(|child| child.is_object())
}

/// The elements of the array at `value[key]`, if there is one.
fn array_items<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value.as_object_mut().and_then(|map| map.get_mut(key)).and_then(Value::as_array_mut).into_iter().flatten()
}

fn string_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

// ---------------------------------------------------------------------------------------------------------
// Pods and pod templates.

pub(crate) fn default_pod(pod: &mut Value) {
    if let Some(status) = child_object(pod, "status") {
        mirror_ip(status, "podIP", "podIPs");
        mirror_ip(status, "hostIP", "hostIPs");
    }
    let Some(spec) = child_object(pod, "spec") else { return };
    default_pod_only(spec);
    default_pod_spec(spec);
}

/// A pod status that names one address (`podIP`) but not the list (`podIPs`), or the list but not the address,
/// gets the other filled in, as upstream's conversion of a v1 PodStatus fills them from each other.
fn mirror_ip(status: &mut Value, single: &str, plural: &str) {
    let Some(map) = status.as_object_mut() else { return };
    let first = map.get(plural).and_then(|list| list.get(0)).and_then(|entry| entry.get("ip")).cloned();
    match (map.get(single).and_then(Value::as_str).filter(|ip| !ip.is_empty()), first) {
        (Some(ip), None) if is_unset(map, plural) => {
            let list = json!([{"ip": ip}]);
            map.insert(plural.to_owned(), list);
        }
        (None, Some(ip)) if ip.is_string() && is_unset(map, single) => {
            map.insert(single.to_owned(), ip);
        }
        _ => {}
    }
}

/// `SetDefaults_Pod`: what only a Pod gets, not a pod template.
fn default_pod_only(spec: &mut Value) {
    for key in ["containers", "initContainers"] {
        for container in array_items(spec, key) {
            default_requests_from_limits(container);
        }
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "enableServiceLinks", Value::Bool(true));
    }
    if host_network {
        for key in ["containers", "initContainers"] {
            for container in array_items(spec, key) {
                for port in array_items(container, "ports") {
                    default_host_port(port);
                }
            }
        }
    }
}

/// Requests default to limits for every resource the container limits without requesting.
fn default_requests_from_limits(container: &mut Value) {
    let Some(resources) = existing_object(container, "resources") else { return };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else { return };
    let Some(requests) = child_object(resources, "requests").and_then(Value::as_object_mut) else { return };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

/// With host networking a container port's hostPort defaults to its containerPort.
fn default_host_port(port: &mut Value) {
    let Some(map) = port.as_object_mut() else { return };
    let Some(container_port) = map.get("containerPort").filter(|p| p.is_number()).cloned() else { return };
    let unset = match map.get("hostPort") {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    };
    if unset {
        map.insert("hostPort".to_owned(), container_port);
    }
}

pub(crate) fn default_pod_template(pod_template: &mut Value) {
    if let Some(template) = child_object(pod_template, "template") {
        default_pod_template_spec(template);
    }
}

fn default_pod_template_spec(template: &mut Value) {
    if let Some(spec) = child_object(template, "spec") {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec.
fn default_pod_spec(spec: &mut Value) {
    if let Some(map) = spec.as_object_mut() {
        default_string(map, "dnsPolicy", "ClusterFirst");
        default_string(map, "restartPolicy", "Always");
        default_value(map, "securityContext", Value::Object(Map::new()));
        default_value(map, "terminationGracePeriodSeconds", Value::from(30));
        default_string(map, "schedulerName", "default-scheduler");
        // `serviceAccount` is the deprecated alias of `serviceAccountName`: upstream's conversion takes it when
        // the name is unset and always encodes it from the name.
        let alias = map.get("serviceAccount").and_then(Value::as_str).filter(|a| !a.is_empty()).map(str::to_owned);
        match (map.get("serviceAccountName").and_then(Value::as_str).filter(|n| !n.is_empty()), alias) {
            (Some(name), _) => {
                let name = Value::String(name.to_owned());
                map.insert("serviceAccount".to_owned(), name);
            }
            (None, Some(alias)) if map.get("serviceAccountName").is_none_or(|n| n.is_null() || n == "") => {
                map.insert("serviceAccountName".to_owned(), Value::String(alias));
            }
            _ => {}
        }
    }
    for volume in array_items(spec, "volumes") {
        default_volume(volume);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for container in array_items(spec, key) {
            default_container(container);
        }
    }
}

fn default_container(container: &mut Value) {
    let Some(map) = container.as_object_mut() else { return };
    let image = map.get("image").and_then(Value::as_str).unwrap_or("");
    let pull_policy = if image_tag(image).as_deref() == Some("latest") { "Always" } else { "IfNotPresent" };
    default_string(map, "imagePullPolicy", pull_policy);
    default_string(map, "terminationMessagePath", TERMINATION_MESSAGE_PATH);
    default_string(map, "terminationMessagePolicy", "File");
    for port in array_items(container, "ports") {
        if let Some(port) = port.as_object_mut() {
            default_string(port, "protocol", "TCP");
        }
    }
    for env in array_items(container, "env") {
        if let Some(field_ref) = existing_object(env, "valueFrom").and_then(|from| existing_object(from, "fieldRef")) {
            default_object_field_selector(field_ref);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing_object(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = existing_object(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(get) = existing_object(lifecycle, hook).and_then(|h| existing_object(h, "httpGet")) {
                default_http_get(get);
            }
        }
    }
}

fn default_probe(probe: &mut Value) {
    if let Some(map) = probe.as_object_mut() {
        default_integer(map, "timeoutSeconds", 1);
        default_integer(map, "periodSeconds", 10);
        default_integer(map, "successThreshold", 1);
        default_integer(map, "failureThreshold", 3);
    }
    if let Some(get) = existing_object(probe, "httpGet") {
        default_http_get(get);
    }
    if let Some(grpc) = existing_object(probe, "grpc").and_then(Value::as_object_mut) {
        default_value(grpc, "service", Value::String(String::new()));
    }
}

fn default_http_get(get: &mut Value) {
    if let Some(map) = get.as_object_mut() {
        default_string(map, "path", "/");
        default_string(map, "scheme", "HTTP");
    }
}

fn default_object_field_selector(selector: &mut Value) {
    if let Some(map) = selector.as_object_mut() {
        default_string(map, "apiVersion", "v1");
    }
}

fn default_volume(volume: &mut Value) {
    let Some(map) = volume.as_object_mut() else { return };
    let has_source = map.iter().any(|(key, value)| key != "name" && !value.is_null());
    if !has_source {
        map.insert("emptyDir".to_owned(), Value::Object(Map::new()));
    }
    for source in ["configMap", "secret", "projected"] {
        if let Some(source) = existing_object(volume, source).and_then(Value::as_object_mut) {
            default_value(source, "defaultMode", Value::from(VOLUME_DEFAULT_MODE));
        }
    }
    if let Some(host_path) = existing_object(volume, "hostPath").and_then(Value::as_object_mut) {
        default_value(host_path, "type", Value::String(String::new()));
    }
    if let Some(downward) = existing_object(volume, "downwardAPI") {
        default_downward_api_items(downward);
        if let Some(map) = downward.as_object_mut() {
            default_value(map, "defaultMode", Value::from(VOLUME_DEFAULT_MODE));
        }
    }
    if let Some(projected) = existing_object(volume, "projected") {
        for source in array_items(projected, "sources") {
            if let Some(downward) = existing_object(source, "downwardAPI") {
                default_downward_api_items(downward);
            }
            if let Some(token) = existing_object(source, "serviceAccountToken").and_then(Value::as_object_mut) {
                default_value(token, "expirationSeconds", Value::from(TOKEN_EXPIRATION_SECONDS));
            }
        }
    }
    let claim_template = existing_object(volume, "ephemeral").and_then(|e| existing_object(e, "volumeClaimTemplate"));
    if let Some(spec) = claim_template.and_then(|t| existing_object(t, "spec")) {
        default_persistent_volume_claim_spec(spec);
    }
}

fn default_downward_api_items(downward: &mut Value) {
    for item in array_items(downward, "items") {
        if let Some(field_ref) = existing_object(item, "fieldRef") {
            default_object_field_selector(field_ref);
        }
    }
}

/// The tag an image reference names, as the kubelet's image name parser reads it: `latest` when the
/// reference has neither tag nor digest, `None` when it has only a digest or does not parse.
fn image_tag(image: &str) -> Option<String> {
    let reference = ImageReference::parse(image)?;
    match (reference.tag, reference.has_digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, false) => Some("latest".to_owned()),
        (None, true) => None,
    }
}

/// A container image reference split into its parts: `[domain/]path[:tag][@digest]`.
struct ImageReference<'a> {
    tag: Option<&'a str>,
    has_digest: bool,
}

impl<'a> ImageReference<'a> {
    /// Parses a reference the way the distribution reference grammar does; `None` if it is malformed.
    fn parse(image: &'a str) -> Option<ImageReference<'a>> {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        if let Some(digest) = digest {
            if !is_image_digest(digest) {
                return None;
            }
        }
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_image_tag(tag) {
                return None;
            }
        }
        if name.is_empty() || name.len() > 255 || !is_image_name(name) {
            return None;
        }
        Some(ImageReference { tag, has_digest: digest.is_some() })
    }
}

fn is_image_name(name: &str) -> bool {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first != first.to_lowercase() => {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if let Some(domain) = domain {
        if !is_image_domain(domain) {
            return false;
        }
    }
    !path.is_empty() && path.split('/').all(is_image_path_component)
}

fn is_image_domain(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(bracketed) => {
            let Some((ipv6, after)) = bracketed.split_once(']') else { return false };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (ipv6.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match domain.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (domain, None),
            };
            (is_image_host(host), port)
        }
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Dot-separated parts of letters, digits and inner hyphens.
fn is_image_host(host: &str) -> bool {
    host.split('.').all(|part| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    })
}

/// `[a-z0-9]+` parts joined by `.`, `_`, `__` or any run of `-`.
fn is_image_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = separator == "." || separator == "_" || separator == "__" || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn is_image_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(&bytes[0])
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// `algorithm:hex` with an algorithm of letters, digits and separators and at least 32 hex digits.
fn is_image_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else { return false };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    algorithm_ok && encoded.len() >= 32 && encoded.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------------------
// Workloads.

pub(crate) fn default_replication_controller(rc: &mut Value) {
    let template_labels = rc.pointer("/spec/template/metadata/labels").filter(|l| l.is_object()).cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = child_object(rc, "spec").and_then(Value::as_object_mut) {
            if spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty)
                && !is_wrong_type(spec, "selector")
            {
                spec.insert("selector".to_owned(), labels.clone());
            }
        }
        if let Some(metadata) = child_object(rc, "metadata").and_then(Value::as_object_mut) {
            if metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty)
                && !is_wrong_type(metadata, "labels")
            {
                metadata.insert("labels".to_owned(), labels);
            }
        }
    }
    let Some(spec) = child_object(rc, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "replicas", Value::from(1));
    }
    if let Some(template) = existing_object(spec, "template") {
        default_pod_template_spec(template);
    }
}

/// Whether `map[key]` is present with a type other than object (so it must not be overwritten).
fn is_wrong_type(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_some_and(|v| !v.is_null() && !v.is_object())
}

pub(crate) fn default_deployment(deployment: &mut Value) {
    let Some(spec) = child_object(deployment, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "replicas", Value::from(1));
    }
    if let Some(strategy) = child_object(spec, "strategy") {
        if let Some(map) = strategy.as_object_mut() {
            default_string(map, "type", "RollingUpdate");
        }
        if string_field(strategy, "type") == Some("RollingUpdate") {
            if let Some(rolling) = child_object(strategy, "rollingUpdate").and_then(Value::as_object_mut) {
                default_value(rolling, "maxUnavailable", json!("25%"));
                default_value(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "revisionHistoryLimit", Value::from(10));
        default_value(map, "progressDeadlineSeconds", Value::from(600));
    }
    if let Some(template) = child_object(spec, "template") {
        default_pod_template_spec(template);
    }
}

pub(crate) fn default_replica_set(replica_set: &mut Value) {
    let Some(spec) = child_object(replica_set, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "replicas", Value::from(1));
    }
    if let Some(template) = child_object(spec, "template") {
        default_pod_template_spec(template);
    }
}

pub(crate) fn default_stateful_set(stateful_set: &mut Value) {
    let Some(spec) = child_object(stateful_set, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_string(map, "podManagementPolicy", "OrderedReady");
    }
    if let Some(strategy) = child_object(spec, "updateStrategy") {
        let type_unset = strategy.get("type").is_none_or(|t| t.is_null() || t.as_str() == Some(""));
        if type_unset {
            if let Some(map) = strategy.as_object_mut() {
                map.insert("type".to_owned(), json!("RollingUpdate"));
                default_value(map, "rollingUpdate", Value::Object(Map::new()));
            }
        }
        if string_field(strategy, "type") == Some("RollingUpdate") {
            if let Some(rolling) = existing_object(strategy, "rollingUpdate").and_then(Value::as_object_mut) {
                default_value(rolling, "partition", Value::from(0));
            }
        }
    }
    if let Some(policy) = child_object(spec, "persistentVolumeClaimRetentionPolicy").and_then(Value::as_object_mut) {
        default_string(policy, "whenDeleted", "Retain");
        default_string(policy, "whenScaled", "Retain");
    }
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "replicas", Value::from(1));
        default_value(map, "revisionHistoryLimit", Value::from(10));
    }
    if let Some(template) = child_object(spec, "template") {
        default_pod_template_spec(template);
    }
    for claim in array_items(spec, "volumeClaimTemplates") {
        default_persistent_volume_claim(claim);
    }
}

pub(crate) fn default_daemon_set(daemon_set: &mut Value) {
    let Some(spec) = child_object(daemon_set, "spec") else { return };
    if let Some(strategy) = child_object(spec, "updateStrategy") {
        if let Some(map) = strategy.as_object_mut() {
            default_string(map, "type", "RollingUpdate");
        }
        if string_field(strategy, "type") == Some("RollingUpdate") {
            if let Some(rolling) = child_object(strategy, "rollingUpdate").and_then(Value::as_object_mut) {
                default_value(rolling, "maxUnavailable", Value::from(1));
                default_value(rolling, "maxSurge", Value::from(0));
            }
        }
    }
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "revisionHistoryLimit", Value::from(10));
    }
    if let Some(template) = child_object(spec, "template") {
        default_pod_template_spec(template);
    }
}

pub(crate) fn default_job(job: &mut Value) {
    let template_labels = job.pointer("/spec/template/metadata/labels").filter(|l| l.is_object()).cloned();
    if let Some(labels) = template_labels {
        if let Some(metadata) = child_object(job, "metadata").and_then(Value::as_object_mut) {
            if metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty)
                && !is_wrong_type(metadata, "labels")
            {
                metadata.insert("labels".to_owned(), labels);
            }
        }
    }
    let Some(spec) = child_object(job, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        if is_unset(map, "completions") && is_unset(map, "parallelism") {
            map.insert("completions".to_owned(), Value::from(1));
            map.insert("parallelism".to_owned(), Value::from(1));
        }
        default_value(map, "parallelism", Value::from(1));
        let backoff = if is_unset(map, "backoffLimitPerIndex") { 6 } else { BACKOFF_LIMIT_PER_INDEX_DEFAULT };
        default_value(map, "backoffLimit", Value::from(backoff));
        default_value(map, "completionMode", json!("NonIndexed"));
        default_value(map, "suspend", Value::Bool(false));
        let replacement = if is_unset(map, "podFailurePolicy") { "TerminatingOrFailed" } else { "Failed" };
        default_value(map, "podReplacementPolicy", json!(replacement));
        default_value(map, "manualSelector", Value::Bool(false));
    }
    default_job_spec_nested(spec);
}

/// Defaults inside a Job spec that apply wherever a Job spec appears (a Job or a CronJob's job template).
fn default_job_spec_nested(spec: &mut Value) {
    if let Some(policy) = existing_object(spec, "podFailurePolicy") {
        for rule in array_items(policy, "rules") {
            for pattern in array_items(rule, "onPodConditions") {
                if let Some(map) = pattern.as_object_mut() {
                    default_string(map, "status", "True");
                }
            }
        }
    }
    if let Some(template) = child_object(spec, "template") {
        default_pod_template_spec(template);
    }
}

pub(crate) fn default_cron_job(cron_job: &mut Value) {
    let Some(spec) = child_object(cron_job, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_string(map, "concurrencyPolicy", "Allow");
        default_value(map, "suspend", Value::Bool(false));
        default_value(map, "successfulJobsHistoryLimit", Value::from(3));
        default_value(map, "failedJobsHistoryLimit", Value::from(1));
    }
    if let Some(job_spec) = child_object(spec, "jobTemplate").and_then(|t| child_object(t, "spec")) {
        default_job_spec_nested(job_spec);
    }
}

pub(crate) fn default_horizontal_pod_autoscaler(hpa: &mut Value) {
    let version_one = string_field(hpa, "apiVersion") == Some("autoscaling/v1");
    let Some(spec) = child_object(hpa, "spec") else { return };
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "minReplicas", Value::from(1));
    }
    if version_one {
        return;
    }
    if let Some(map) = spec.as_object_mut() {
        let no_metrics = match map.get("metrics") {
            None | Some(Value::Null) => true,
            Some(Value::Array(metrics)) => metrics.is_empty(),
            Some(_) => false,
        };
        if no_metrics {
            let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}});
            map.insert("metrics".to_owned(), Value::Array(vec![cpu]));
        }
    }
    if let Some(behavior) = existing_object(spec, "behavior") {
        default_scaling_rules(behavior, "scaleUp", true);
        default_scaling_rules(behavior, "scaleDown", false);
    }
}

/// Fills a scaling direction of an HPA behavior: unset fields take upstream's defaults (stabilization 0 for
/// scale-up only, Max policy selection, the standard policies).
fn default_scaling_rules(behavior: &mut Value, key: &str, scale_up: bool) {
    let Some(rules) = child_object(behavior, key).and_then(Value::as_object_mut) else { return };
    if scale_up {
        default_value(rules, "stabilizationWindowSeconds", Value::from(0));
    }
    default_value(rules, "selectPolicy", json!("Max"));
    let policies = if scale_up {
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
    } else {
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    };
    default_value(rules, "policies", policies);
}

// ---------------------------------------------------------------------------------------------------------
// Services, endpoints, namespaces, secrets, nodes, volumes.

pub(crate) fn default_service(service: &mut Value) {
    let Some(spec) = child_object(service, "spec") else { return };
    let Some(map) = spec.as_object_mut() else { return };
    default_string(map, "sessionAffinity", "None");
    match map.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            map.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = map.get("sessionAffinityConfig").and_then(|c| c.pointer("/clientIP/timeoutSeconds"));
            if timeout.is_none_or(Value::is_null) {
                map.insert(
                    "sessionAffinityConfig".to_owned(),
                    json!({"clientIP": {"timeoutSeconds": CLIENT_IP_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    default_string(map, "type", "ClusterIP");
    for port in map.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        default_service_port(port);
    }
    let service_type = map.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let has_external_ips = map.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_string(map, "externalTrafficPolicy", "Cluster");
    }
    if matches!(service_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_value(map, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_value(map, "allocateLoadBalancerNodePorts", Value::Bool(true));
    }
    if service_type != "ExternalName" {
        default_cluster_ips(map);
    }
}

fn default_service_port(port: &mut Value) {
    let Some(map) = port.as_object_mut() else { return };
    default_string(map, "protocol", "TCP");
    let target_unset = match map.get("targetPort") {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if target_unset {
        if let Some(port_number) = map.get("port").filter(|p| p.is_number()).cloned() {
            map.insert("targetPort".to_owned(), port_number);
        }
    }
}

/// Keeps `clusterIP` and `clusterIPs[0]` in step and fills the IP family fields the way the Service registry
/// does for an IPv4 single-stack cluster.
fn default_cluster_ips(spec: &mut Map<String, Value>) {
    let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_owned();
    let first_of_ips = spec.get("clusterIPs").and_then(|ips| ips.get(0)).and_then(Value::as_str).map(str::to_owned);
    let ips_unset = spec.get("clusterIPs").is_none_or(|ips| ips.is_null() || ips.as_array().is_some_and(Vec::is_empty));
    if !cluster_ip.is_empty() && ips_unset {
        spec.insert("clusterIPs".to_owned(), json!([cluster_ip]));
    } else if cluster_ip.is_empty() {
        if let Some(first) = first_of_ips {
            spec.insert("clusterIP".to_owned(), Value::String(first));
        }
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let has_selector = spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
    let policy = if headless && !has_selector { "RequireDualStack" } else { "SingleStack" };
    default_value(spec, "ipFamilyPolicy", json!(policy));
    let families_unset = spec.get("ipFamilies").is_none_or(|f| f.is_null() || f.as_array().is_some_and(Vec::is_empty));
    if families_unset {
        spec.insert("ipFamilies".to_owned(), json!(["IPv4"]));
    }
}

pub(crate) fn default_endpoints(endpoints: &mut Value) {
    for subset in array_items(endpoints, "subsets") {
        for port in array_items(subset, "ports") {
            if let Some(map) = port.as_object_mut() {
                default_string(map, "protocol", "TCP");
            }
        }
    }
}

pub(crate) fn default_endpoint_slice(slice: &mut Value) {
    for port in array_items(slice, "ports") {
        if let Some(map) = port.as_object_mut() {
            default_value(map, "name", Value::String(String::new()));
            default_value(map, "protocol", json!("TCP"));
        }
    }
}

pub(crate) fn default_namespace(namespace: &mut Value) {
    let name = namespace.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_owned();
    if !name.is_empty() {
        if let Some(labels) =
            child_object(namespace, "metadata").and_then(|m| child_object(m, "labels")).and_then(Value::as_object_mut)
        {
            labels.insert("kubernetes.io/metadata.name".to_owned(), Value::String(name));
        }
    }
    if let Some(status) = child_object(namespace, "status").and_then(Value::as_object_mut) {
        default_string(status, "phase", "Active");
    }
}

/// The Namespace registry's create-time rule: `spec.finalizers` must hold `kubernetes`.
pub(crate) fn add_kubernetes_finalizer(namespace: &mut Value) {
    let Some(spec) = child_object(namespace, "spec").and_then(Value::as_object_mut) else { return };
    match spec.get_mut("finalizers") {
        None | Some(Value::Null) => {
            spec.insert("finalizers".to_owned(), json!(["kubernetes"]));
        }
        Some(Value::Array(finalizers)) => {
            if !finalizers.iter().any(|f| f.as_str() == Some("kubernetes")) {
                finalizers.push(json!("kubernetes"));
            }
        }
        Some(_) => {}
    }
}

/// Secret type defaults to Opaque; `stringData` is merged into `data` (base64) and dropped, as upstream's
/// conversion does, with `stringData` winning over `data` for the same key.
pub(crate) fn default_secret(secret: &mut Value) {
    let Some(map) = secret.as_object_mut() else { return };
    default_string(map, "type", "Opaque");
    let Some(Value::Object(string_data)) = map.get("stringData").cloned() else { return };
    if is_wrong_type(map, "data") {
        return;
    }
    let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in string_data {
            if let Some(text) = value.as_str() {
                data.insert(key, Value::String(base64_encode(text.as_bytes())));
            }
        }
    }
    map.remove("stringData");
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn default_node(node: &mut Value) {
    let Some(status) = existing_object(node, "status").and_then(Value::as_object_mut) else { return };
    if is_unset(status, "allocatable") {
        if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
            status.insert("allocatable".to_owned(), capacity);
        }
    }
}

pub(crate) fn default_persistent_volume(volume: &mut Value) {
    if let Some(status) = child_object(volume, "status").and_then(Value::as_object_mut) {
        default_string(status, "phase", "Pending");
    }
    if let Some(spec) = child_object(volume, "spec").and_then(Value::as_object_mut) {
        default_string(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_value(spec, "volumeMode", json!("Filesystem"));
    }
}

pub(crate) fn default_persistent_volume_claim(claim: &mut Value) {
    if let Some(status) = child_object(claim, "status").and_then(Value::as_object_mut) {
        default_string(status, "phase", "Pending");
    }
    if let Some(spec) = child_object(claim, "spec") {
        default_persistent_volume_claim_spec(spec);
    }
}

fn default_persistent_volume_claim_spec(spec: &mut Value) {
    if let Some(map) = spec.as_object_mut() {
        default_value(map, "volumeMode", json!("Filesystem"));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Policy, scheduling and networking kinds.

/// A `Container` limit's `default` takes what `max` names and it lacks; its `defaultRequest` takes what
/// `default`, then `min`, names and it lacks (upstream's `SetDefaults_LimitRangeItem`).
pub(crate) fn default_limit_range(limit_range: &mut Value) {
    let Some(spec) = existing_object(limit_range, "spec") else { return };
    for item in array_items(spec, "limits") {
        if string_field(item, "type") != Some("Container") {
            continue;
        }
        let Some(map) = item.as_object_mut() else { continue };
        for (target, sources) in [("default", &["max"][..]), ("defaultRequest", &["default", "min"][..])] {
            for source in sources {
                let Some(Value::Object(from)) = map.get(*source).cloned() else { continue };
                if from.is_empty() {
                    continue;
                }
                if is_unset(map, target) {
                    map.insert(target.to_owned(), Value::Object(Map::new()));
                }
                let Some(Value::Object(to)) = map.get_mut(target) else { continue };
                for (resource, quantity) in from {
                    to.entry(resource).or_insert(quantity);
                }
            }
        }
    }
}

pub(crate) fn default_priority_class(priority_class: &mut Value) {
    if let Some(map) = priority_class.as_object_mut() {
        default_value(map, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// Ports default to TCP, and `policyTypes` to `Ingress`, plus `Egress` when the policy has egress rules.
pub(crate) fn default_network_policy(policy: &mut Value) {
    let Some(spec) = child_object(policy, "spec") else { return };
    for direction in ["ingress", "egress"] {
        for rule in array_items(spec, direction) {
            for port in array_items(rule, "ports") {
                if let Some(map) = port.as_object_mut() {
                    default_string(map, "protocol", "TCP");
                }
            }
        }
    }
    let Some(map) = spec.as_object_mut() else { return };
    let unset = match map.get("policyTypes") {
        None | Some(Value::Null) => true,
        Some(Value::Array(types)) => types.is_empty(),
        Some(_) => false,
    };
    if unset {
        let has_egress = map.get("egress").and_then(Value::as_array).is_some_and(|rules| !rules.is_empty());
        let types = if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
        map.insert("policyTypes".to_owned(), types);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_and_their_lists_fill_each_other() {
        let mut pod = json!({"status": {"podIP": "10.0.0.5", "hostIPs": [{"ip": "192.168.1.2"}]}, "spec": {}});
        default_pod(&mut pod);
        assert_eq!(pod["status"]["podIPs"], json!([{"ip": "10.0.0.5"}]));
        assert_eq!(pod["status"]["hostIP"], "192.168.1.2");
        let before = pod.clone();
        default_pod(&mut pod);
        assert_eq!(pod, before, "idempotent");
        let mut pending = json!({"status": {"phase": "Pending"}, "spec": {}});
        default_pod(&mut pending);
        assert_eq!(pending["status"], json!({"phase": "Pending"}));
    }
    use crate::apis::catalog::served;

    /// The body `kubectl apply -f deploy.yaml` sends (from the recorded wire log).
    fn kubectl_deployment() -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"labels":{"app":"nginx"},"name":"nginx","namespace":"default"},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"nginx"}},
                "template":{"metadata":{"labels":{"app":"nginx"}},
                    "spec":{"containers":[{"image":"nginx:1.25","name":"nginx","ports":[{"containerPort":80}]}]}}}})
    }

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply_defaults(served(group, kind), &mut obj);
        obj
    }

    #[test]
    fn deployment_from_kubectl_gets_exactly_the_server_defaults() {
        let got = defaulted("apps", "Deployment", kubectl_deployment());
        let want = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"labels":{"app":"nginx"},"name":"nginx","namespace":"default"},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"nginx"}},
                "progressDeadlineSeconds":600,"revisionHistoryLimit":10,
                "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
                "template":{"metadata":{"labels":{"app":"nginx"}},
                    "spec":{"containers":[{"image":"nginx:1.25","name":"nginx",
                            "imagePullPolicy":"IfNotPresent",
                            "ports":[{"containerPort":80,"protocol":"TCP"}],
                            "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],
                        "dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler",
                        "securityContext":{},"terminationGracePeriodSeconds":30}}}});
        assert_eq!(got, want);
    }

    #[test]
    fn defaults_are_idempotent_for_every_kind() {
        let cases = [
            ("apps", "Deployment", kubectl_deployment()),
            (
                "",
                "Pod",
                json!({"metadata":{"name":"p"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"busybox",
                "ports":[{"containerPort":8080}],"resources":{"limits":{"cpu":"1"}},
                "livenessProbe":{"httpGet":{"port":80}},"env":[{"name":"N","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}],
                "volumes":[{"name":"v"},{"name":"c","configMap":{"name":"x"}}]}}),
            ),
            ("", "Service", json!({"spec":{"type":"LoadBalancer","ports":[{"port":80}],"sessionAffinity":"ClientIP"}})),
            ("", "Namespace", json!({"metadata":{"name":"team-a"}})),
            ("", "Secret", json!({"stringData":{"a":"hello"}})),
            ("", "ReplicationController", json!({"spec":{"template":{"metadata":{"labels":{"a":"b"}},"spec":{}}}})),
            ("apps", "StatefulSet", json!({"spec":{"volumeClaimTemplates":[{"metadata":{"name":"d"}}],"template":{}}})),
            ("apps", "DaemonSet", json!({"spec":{"template":{}}})),
            ("apps", "ReplicaSet", json!({"spec":{}})),
            ("batch", "Job", json!({"spec":{"template":{"metadata":{"labels":{"a":"b"}},"spec":{}}}})),
            ("batch", "CronJob", json!({"spec":{"jobTemplate":{"spec":{"template":{}}}}})),
            ("autoscaling", "HorizontalPodAutoscaler", json!({"spec":{"behavior":{}}})),
            ("discovery.k8s.io", "EndpointSlice", json!({"ports":[{"port":80}]})),
            ("", "Endpoints", json!({"subsets":[{"ports":[{"port":80}]}]})),
            ("", "Node", json!({"status":{"capacity":{"cpu":"2"}}})),
            ("", "PersistentVolumeClaim", json!({"spec":{}})),
        ];
        for (group, kind, obj) in cases {
            let once = defaulted(group, kind, obj);
            let twice = defaulted(group, kind, once.clone());
            assert_eq!(once, twice, "{group}/{kind} is not idempotent");
        }
    }

    #[test]
    fn the_service_account_alias_follows_the_name() {
        let pod = |spec: Value| defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": spec}));
        let named = pod(json!({"serviceAccountName": "robot", "serviceAccount": "old", "containers": []}));
        assert_eq!(
            (&named["spec"]["serviceAccountName"], &named["spec"]["serviceAccount"]),
            (&json!("robot"), &json!("robot"))
        );
        let aliased = pod(json!({"serviceAccount": "robot", "containers": []}));
        assert_eq!(aliased["spec"]["serviceAccountName"], "robot");
        let neither = pod(json!({"containers": []}));
        assert!(neither["spec"].get("serviceAccount").is_none() && neither["spec"].get("serviceAccountName").is_none());
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("registry.example.com:5000/team/app", "Always"),
            ("localhost/app:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry.example.com:5000/team/app:v2", "IfNotPresent"),
            ("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
            ("nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "Always"),
            ("NGINX", "IfNotPresent"),
            ("", "IfNotPresent"),
        ];
        for (image, want) in cases {
            let pod = defaulted("", "Pod", json!({"spec":{"containers":[{"name":"c","image":image}]}}));
            assert_eq!(pod.pointer("/spec/containers/0/imagePullPolicy"), Some(&json!(want)), "image {image:?}");
        }
    }

    #[test]
    fn pod_gets_pod_only_defaults_and_templates_do_not() {
        let spec = json!({"hostNetwork":true,"containers":[{"name":"c","image":"x:1","ports":[{"containerPort":8080}],
            "resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}}}]});
        let pod = defaulted("", "Pod", json!({"spec": spec.clone()}));
        assert_eq!(pod.pointer("/spec/enableServiceLinks"), Some(&json!(true)));
        assert_eq!(pod.pointer("/spec/containers/0/ports/0/hostPort"), Some(&json!(8080)));
        assert_eq!(pod.pointer("/spec/containers/0/resources/requests"), Some(&json!({"cpu":"500m","memory":"1Gi"})));

        let rs = defaulted("apps", "ReplicaSet", json!({"spec":{"template":{"spec": spec}}}));
        assert_eq!(rs.pointer("/spec/template/spec/enableServiceLinks"), None);
        assert_eq!(rs.pointer("/spec/template/spec/containers/0/ports/0/hostPort"), None);
        assert_eq!(rs.pointer("/spec/template/spec/containers/0/resources/requests"), Some(&json!({"cpu":"500m"})));
        assert_eq!(rs.pointer("/spec/replicas"), Some(&json!(1)));
    }

    #[test]
    fn container_nested_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec":{"initContainers":[{"name":"i","image":"x:1"}],"containers":[{"name":"c","image":"x:1",
                "env":[{"name":"N","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
                "readinessProbe":{"httpGet":{"port":80},"periodSeconds":0},
                "startupProbe":{"grpc":{"port":9000}},
                "lifecycle":{"preStop":{"httpGet":{"port":80}}}}]}}),
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c.pointer("/env/0/valueFrom/fieldRef/apiVersion"), Some(&json!("v1")));
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet":{"port":80,"path":"/","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,
                "successThreshold":1,"failureThreshold":3})
        );
        assert_eq!(c.pointer("/startupProbe/grpc/service"), Some(&json!("")));
        assert_eq!(c.pointer("/lifecycle/preStop/httpGet/path"), Some(&json!("/")));
        assert_eq!(pod.pointer("/spec/initContainers/0/terminationMessagePolicy"), Some(&json!("File")));
    }

    #[test]
    fn volume_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec":{"containers":[],"volumes":[
                {"name":"scratch"},
                {"name":"cm","configMap":{"name":"x"}},
                {"name":"s","secret":{"secretName":"x","defaultMode":256}},
                {"name":"h","hostPath":{"path":"/data"}},
                {"name":"d","downwardAPI":{"items":[{"path":"n","fieldRef":{"fieldPath":"metadata.name"}}]}},
                {"name":"p","projected":{"sources":[{"serviceAccountToken":{"path":"t"}}]}},
                {"name":"e","ephemeral":{"volumeClaimTemplate":{"spec":{}}}}]}}),
        );
        let v = &pod["spec"]["volumes"];
        assert_eq!(v[0], json!({"name":"scratch","emptyDir":{}}));
        assert_eq!(v[1]["configMap"]["defaultMode"], json!(420));
        assert_eq!(v[2]["secret"]["defaultMode"], json!(256));
        assert_eq!(v[3]["hostPath"]["type"], json!(""));
        assert_eq!(v[4]["downwardAPI"]["defaultMode"], json!(420));
        assert_eq!(v[4].pointer("/downwardAPI/items/0/fieldRef/apiVersion"), Some(&json!("v1")));
        assert_eq!(v[5]["projected"]["defaultMode"], json!(420));
        assert_eq!(v[5].pointer("/projected/sources/0/serviceAccountToken/expirationSeconds"), Some(&json!(3600)));
        assert_eq!(v[6].pointer("/ephemeral/volumeClaimTemplate/spec/volumeMode"), Some(&json!("Filesystem")));
    }

    #[test]
    fn deployment_strategy_defaults_only_for_rolling_update() {
        let recreate = defaulted("apps", "Deployment", json!({"spec":{"strategy":{"type":"Recreate"}}}));
        assert_eq!(recreate.pointer("/spec/strategy"), Some(&json!({"type":"Recreate"})));
        let partial = defaulted("apps", "Deployment", json!({"spec":{"strategy":{"rollingUpdate":{"maxSurge":1}}}}));
        assert_eq!(
            partial.pointer("/spec/strategy"),
            Some(&json!({"type":"RollingUpdate","rollingUpdate":{"maxSurge":1,"maxUnavailable":"25%"}}))
        );
    }

    #[test]
    fn stateful_set_defaults() {
        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec":{"serviceName":"web","volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{}}]}}),
        );
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], json!(1));
        assert_eq!(spec["podManagementPolicy"], json!("OrderedReady"));
        assert_eq!(spec["updateStrategy"], json!({"type":"RollingUpdate","rollingUpdate":{"partition":0}}));
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
        assert_eq!(spec["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted":"Retain","whenScaled":"Retain"}));
        assert_eq!(spec.get("minReadySeconds"), None);
        assert_eq!(spec.pointer("/volumeClaimTemplates/0/spec/volumeMode"), Some(&json!("Filesystem")));
        assert_eq!(spec.pointer("/volumeClaimTemplates/0/status/phase"), Some(&json!("Pending")));
        let on_delete = defaulted("apps", "StatefulSet", json!({"spec":{"updateStrategy":{"type":"OnDelete"}}}));
        assert_eq!(on_delete.pointer("/spec/updateStrategy"), Some(&json!({"type":"OnDelete"})));
    }

    #[test]
    fn daemon_set_defaults() {
        let ds = defaulted("apps", "DaemonSet", json!({"spec":{}}));
        assert_eq!(
            ds.pointer("/spec/updateStrategy"),
            Some(&json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}}))
        );
        assert_eq!(ds.pointer("/spec/revisionHistoryLimit"), Some(&json!(10)));
    }

    #[test]
    fn job_defaults() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"metadata":{"name":"j"},"spec":{"template":{"metadata":{"labels":{"app":"j"}},
                "spec":{"containers":[{"name":"c","image":"busybox"}]}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(spec["completions"], json!(1));
        assert_eq!(spec["parallelism"], json!(1));
        assert_eq!(spec["backoffLimit"], json!(6));
        assert_eq!(spec["completionMode"], json!("NonIndexed"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["podReplacementPolicy"], json!("TerminatingOrFailed"));
        assert_eq!(spec["manualSelector"], json!(false));
        assert_eq!(job.pointer("/metadata/labels"), Some(&json!({"app":"j"})));
        assert_eq!(spec.pointer("/template/spec/restartPolicy"), Some(&json!("Always")));

        let parallel = defaulted(
            "batch",
            "Job",
            json!({"spec":{"parallelism":3,"backoffLimitPerIndex":1,
            "podFailurePolicy":{"rules":[{"action":"Ignore","onPodConditions":[{"type":"DisruptionTarget"}]}]}}}),
        );
        assert_eq!(parallel.pointer("/spec/completions"), None);
        assert_eq!(parallel.pointer("/spec/backoffLimit"), Some(&json!(2_147_483_647)));
        assert_eq!(parallel.pointer("/spec/podReplacementPolicy"), Some(&json!("Failed")));
        assert_eq!(parallel.pointer("/spec/podFailurePolicy/rules/0/onPodConditions/0/status"), Some(&json!("True")));
    }

    #[test]
    fn cron_job_defaults_leave_the_job_spec_alone() {
        let cj = defaulted(
            "batch",
            "CronJob",
            json!({"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"OnFailure"}}}}}}),
        );
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], json!("Allow"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["successfulJobsHistoryLimit"], json!(3));
        assert_eq!(spec["failedJobsHistoryLimit"], json!(1));
        assert_eq!(spec.pointer("/jobTemplate/spec/backoffLimit"), None);
        assert_eq!(spec.pointer("/jobTemplate/spec/template/spec/dnsPolicy"), Some(&json!("ClusterFirst")));
        assert_eq!(spec.pointer("/jobTemplate/spec/template/spec/restartPolicy"), Some(&json!("OnFailure")));
    }

    #[test]
    fn service_defaults() {
        let cases = [
            (
                json!({"spec":{"selector":{"app":"a"},"ports":[{"port":80},{"port":443,"targetPort":"https","protocol":"UDP"}]}}),
                json!({"selector":{"app":"a"},"ports":[{"port":80,"protocol":"TCP","targetPort":80},
                        {"port":443,"targetPort":"https","protocol":"UDP"}],
                    "type":"ClusterIP","sessionAffinity":"None","internalTrafficPolicy":"Cluster",
                    "ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}),
            ),
            (
                json!({"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":0}]}}),
                json!({"type":"NodePort","ports":[{"port":80,"protocol":"TCP","targetPort":80}],"sessionAffinity":"None",
                    "externalTrafficPolicy":"Cluster","internalTrafficPolicy":"Cluster",
                    "ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}),
            ),
            (
                json!({"spec":{"type":"LoadBalancer","sessionAffinity":"ClientIP","ports":[{"port":80}]}}),
                json!({"type":"LoadBalancer","ports":[{"port":80,"protocol":"TCP","targetPort":80}],
                    "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":10800}},
                    "externalTrafficPolicy":"Cluster","internalTrafficPolicy":"Cluster",
                    "allocateLoadBalancerNodePorts":true,"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}),
            ),
            (
                json!({"spec":{"type":"ExternalName","externalName":"example.com"}}),
                json!({"type":"ExternalName","externalName":"example.com","sessionAffinity":"None"}),
            ),
            (
                json!({"spec":{"clusterIP":"None","ports":[{"port":80}]}}),
                json!({"clusterIP":"None","clusterIPs":["None"],"ports":[{"port":80,"protocol":"TCP","targetPort":80}],
                    "type":"ClusterIP","sessionAffinity":"None","internalTrafficPolicy":"Cluster",
                    "ipFamilyPolicy":"RequireDualStack","ipFamilies":["IPv4"]}),
            ),
            (
                json!({"spec":{"clusterIPs":["10.0.0.7"],"ports":[{"port":80}],"sessionAffinityConfig":{"clientIP":{}}}}),
                json!({"clusterIP":"10.0.0.7","clusterIPs":["10.0.0.7"],"ports":[{"port":80,"protocol":"TCP","targetPort":80}],
                    "type":"ClusterIP","sessionAffinity":"None","internalTrafficPolicy":"Cluster",
                    "ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}),
            ),
        ];
        for (input, want_spec) in cases {
            let got = defaulted("", "Service", input.clone());
            assert_eq!(got["spec"], want_spec, "input {input}");
        }
    }

    #[test]
    fn namespace_defaults_and_create_only_finalizer() {
        let ns = defaulted(
            "",
            "Namespace",
            json!({"metadata":{"name":"team-a","labels":{"kubernetes.io/metadata.name":"x"}}}),
        );
        assert_eq!(ns.pointer("/metadata/labels/kubernetes.io~1metadata.name"), Some(&json!("team-a")));
        assert_eq!(ns.pointer("/status/phase"), Some(&json!("Active")));
        assert_eq!(ns.pointer("/spec/finalizers"), None, "the finalizer is create-only");

        let mut created = json!({"metadata":{"name":"team-a"}});
        apply_create_defaults(served("", "Namespace"), &mut created);
        assert_eq!(created.pointer("/spec/finalizers"), Some(&json!(["kubernetes"])));
        let mut other = json!({"metadata":{"name":"b"},"spec":{"finalizers":["example.com/x"]}});
        apply_create_defaults(served("", "Namespace"), &mut other);
        apply_create_defaults(served("", "Namespace"), &mut other);
        assert_eq!(other.pointer("/spec/finalizers"), Some(&json!(["example.com/x", "kubernetes"])));

        let finalized = defaulted("", "Namespace", json!({"metadata":{"name":"b"},"spec":{"finalizers":[]}}));
        assert_eq!(finalized.pointer("/spec/finalizers"), Some(&json!([])));
    }

    #[test]
    fn secret_defaults_and_string_data() {
        let secret =
            defaulted("", "Secret", json!({"data":{"a":"b2xk","b":"YmI="},"stringData":{"a":"new","c":"hi!"}}));
        assert_eq!(secret, json!({"type":"Opaque","data":{"a":"bmV3","b":"YmI=","c":"aGkh"}}));
        let typed = defaulted("", "Secret", json!({"type":"kubernetes.io/tls"}));
        assert_eq!(typed, json!({"type":"kubernetes.io/tls"}));
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn replication_controller_defaults_selector_and_labels_from_template() {
        let rc =
            defaulted("", "ReplicationController", json!({"spec":{"template":{"metadata":{"labels":{"app":"x"}}}}}));
        assert_eq!(rc.pointer("/spec/selector"), Some(&json!({"app":"x"})));
        assert_eq!(rc.pointer("/metadata/labels"), Some(&json!({"app":"x"})));
        assert_eq!(rc.pointer("/spec/replicas"), Some(&json!(1)));
    }

    #[test]
    fn horizontal_pod_autoscaler_defaults() {
        let hpa = defaulted("autoscaling", "HorizontalPodAutoscaler", json!({"apiVersion":"autoscaling/v2","spec":{}}));
        assert_eq!(hpa.pointer("/spec/minReplicas"), Some(&json!(1)));
        assert_eq!(
            hpa.pointer("/spec/metrics"),
            Some(
                &json!([{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}])
            )
        );
        assert_eq!(hpa.pointer("/spec/behavior"), None);

        let with_behavior = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":60}}}}),
        );
        assert_eq!(
            with_behavior.pointer("/spec/behavior"),
            Some(&json!({
                "scaleUp":{"stabilizationWindowSeconds":0,"selectPolicy":"Max","policies":[
                    {"type":"Pods","value":4,"periodSeconds":15},{"type":"Percent","value":100,"periodSeconds":15}]},
                "scaleDown":{"stabilizationWindowSeconds":60,"selectPolicy":"Max","policies":[
                    {"type":"Percent","value":100,"periodSeconds":15}]}}))
        );

        let v1 = defaulted("autoscaling", "HorizontalPodAutoscaler", json!({"apiVersion":"autoscaling/v1","spec":{}}));
        assert_eq!(v1, json!({"apiVersion":"autoscaling/v1","spec":{"minReplicas":1}}));
    }

    #[test]
    fn endpoint_node_and_volume_kinds() {
        let endpoints =
            defaulted("", "Endpoints", json!({"subsets":[{"ports":[{"port":80},{"port":53,"protocol":"UDP"}]}]}));
        assert_eq!(endpoints.pointer("/subsets/0/ports/0/protocol"), Some(&json!("TCP")));
        assert_eq!(endpoints.pointer("/subsets/0/ports/1/protocol"), Some(&json!("UDP")));
        let slice = defaulted("discovery.k8s.io", "EndpointSlice", json!({"ports":[{"port":80}]}));
        assert_eq!(slice.pointer("/ports/0"), Some(&json!({"port":80,"name":"","protocol":"TCP"})));
        let node = defaulted("", "Node", json!({"status":{"capacity":{"cpu":"2","pods":"110"}}}));
        assert_eq!(node.pointer("/status/allocatable"), Some(&json!({"cpu":"2","pods":"110"})));
        let pv = defaulted("", "PersistentVolume", json!({"spec":{}}));
        assert_eq!(
            pv,
            json!({"spec":{"persistentVolumeReclaimPolicy":"Retain","volumeMode":"Filesystem"},"status":{"phase":"Pending"}})
        );
    }

    #[test]
    fn wrongly_typed_fields_are_left_alone() {
        let cases = [
            ("apps", "Deployment", json!({"spec":"nonsense"})),
            ("apps", "Deployment", json!({"spec":{"template":{"spec":{"containers":"x"}},"strategy":7}})),
            ("", "Pod", json!({"spec":{"containers":[7,{"name":"c","image":3,"ports":"p"}],"volumes":[null,"v"]}})),
            ("", "Service", json!({"spec":{"ports":[{"port":"eighty"}],"type":5,"clusterIPs":"x"}})),
            ("", "Secret", json!({"data":"x","stringData":{"a":"b"}})),
            ("", "Namespace", json!({"metadata":{"name":"a","labels":"x"},"status":"y"})),
            ("batch", "Job", json!({"spec":{"template":{"metadata":{"labels":{"a":"b"}}}},"metadata":{"labels":"x"}})),
            ("", "Pod", json!("just a string")),
            ("", "Pod", json!(null)),
        ];
        for (group, kind, obj) in cases {
            let once = defaulted(group, kind, obj.clone());
            let twice = defaulted(group, kind, once.clone());
            assert_eq!(once, twice, "{obj}");
        }
        let service = defaulted("", "Service", json!({"spec":{"ports":[{"port":"eighty"}]}}));
        assert_eq!(service.pointer("/spec/ports/0/targetPort"), None);
    }

    #[test]
    fn kinds_without_defaults_are_untouched() {
        let obj = json!({"metadata":{"name":"c"},"data":{"a":"b"}});
        assert_eq!(defaulted("", "ConfigMap", obj.clone()), obj);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})), "BestEffort");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn create_starts_from_the_kinds_initial_status() {
        let prepared = |group, kind, mut obj: Value| {
            (served(group, kind).prepare_for_create)(&mut obj);
            obj
        };
        let pod = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}});
        assert_eq!(prepared("", "Pod", pod)["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
        let namespace = json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}});
        assert_eq!(prepared("", "Namespace", namespace)["status"], json!({"phase": "Active"}));
        let deployment = json!({"spec": {}, "status": {"replicas": 3}});
        assert_eq!(prepared("apps", "Deployment", deployment), json!({"spec": {}}));
        let config_map = json!({"data": {}, "status": "kept"});
        assert_eq!(prepared("", "ConfigMap", config_map.clone()), config_map);
        assert_eq!(prepared("", "Pod", json!("not an object")), json!("not an object"));
    }
}
