//! A container's environment, command and args as upstream's kubelet makes them (pure): `envFrom` first (each
//! ConfigMap or Secret's keys, with the prefix), then `env` in order, each `value` with `$(NAME)` replaced by
//! the variables defined before it and the Services' variables; `valueFrom` takes a key of a ConfigMap or
//! Secret, a field of the pod (`fieldRef`) or a resource of the container (`resourceFieldRef`); then the
//! Services' variables (`service_variables`) the container does not define itself. The command and args are
//! expanded with the whole environment.
//!
//! A reference that cannot be resolved and is not `optional` keeps the container from starting:
//! `CreateContainerConfigError` with upstream's message; one whose object has not been read yet waits.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Service};

use super::sources::{Kind, Missing, Sources};
use crate::apis::validation::{go_quote, parse_quantity};

/// The container's environment, in order (a later definition of a name replaces an earlier one).
pub fn environment(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    services: &[(String, String)],
) -> Result<Vec<(String, String)>, Missing> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(c), _) => (Kind::ConfigMap, c.name.as_str(), c.optional.unwrap_or(false)),
            (None, Some(s)) => (Kind::Secret, s.name.as_str(), s.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        let data = match sources.object(kind, namespace, name) {
            Ok(data) => data,
            Err(Missing::Absent(_)) if optional => continue,
            Err(missing) => return Err(missing),
        };
        for (key, value) in data {
            // Upstream skips keys that cannot name a variable (and says so in an event).
            if key.is_empty() || key.contains('=') {
                continue;
            }
            set(&mut env, format!("{prefix}{key}"), String::from_utf8_lossy(value).into_owned());
        }
    }
    for var in container.env.iter().flatten() {
        let value = match value(pod, container, var, sources) {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err(missing) => return Err(missing),
        };
        let value = match &var.value {
            Some(_) => expand(&value, |name| {
                let defined = env.iter().chain(services).find(|(n, _)| n == name);
                defined.map(|(_, v)| v.clone())
            }),
            None => value,
        };
        set(&mut env, var.name.clone(), value);
    }
    // The Services' variables come last, where the container defines nothing of that name (as upstream).
    for (name, value) in services {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name.clone(), value.clone()));
        }
    }
    Ok(env)
}

/// The Services' variables of a pod in `namespace` (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, a
/// `<NAME>_SERVICE_PORT_<PORT>` per named port, and Docker's link variables `<NAME>_PORT...`), as upstream's
/// kubelet makes them: from the Services of the pod's namespace with a cluster IP (with `enableServiceLinks`,
/// the default), and always from the `kubernetes` Service of `default`; a Service of the pod's namespace
/// wins over one of the same name from `default`. Sorted by name.
pub fn service_variables(namespace: &str, links: bool, services: &[Arc<Service>]) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let (Some(name), Some(spec)) = (service.metadata.name.as_deref(), service.spec.as_ref()) else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" || spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let in_namespace = service.metadata.namespace.as_deref() == Some(namespace);
        let master = service.metadata.namespace.as_deref() == Some("default") && name == "kubernetes";
        if (in_namespace && links) || (master && !chosen.contains_key(name)) {
            chosen.insert(name, service);
        }
    }
    let mut vars = Vec::new();
    for (name, service) in chosen {
        let spec = service.spec.as_ref().expect("chosen for its spec");
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        vars.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
        if let Some(first) = ports.first() {
            vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let suffix = port_name.to_ascii_uppercase().replace('-', "_");
                vars.push((format!("{prefix}_SERVICE_PORT_{suffix}"), port.port.to_string()));
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{ip}:{}", protocol.to_ascii_lowercase(), port.port);
            if i == 0 {
                vars.push((format!("{prefix}_PORT"), url.clone()));
            }
            let link = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_ascii_uppercase());
            vars.push((format!("{link}_PROTO"), protocol.to_ascii_lowercase()));
            vars.push((format!("{link}_PORT"), port.port.to_string()));
            vars.push((format!("{link}_ADDR"), ip.to_owned()));
            vars.push((link, url));
        }
    }
    vars.sort();
    vars
}

/// Defines `name`, in place of an earlier definition.
fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

/// The value of one `env` entry; `None` for an optional reference to what is not there.
fn value(pod: &Pod, container: &Container, var: &EnvVar, sources: &Sources) -> Result<Option<String>, Missing> {
    if let Some(value) = &var.value {
        return Ok(Some(value.clone()));
    }
    let Some(from) = &var.value_from else { return Ok(Some(String::new())) };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let keyed = match (&from.config_map_key_ref, &from.secret_key_ref) {
        (Some(r), _) => Some((Kind::ConfigMap, r.name.as_str(), r.key.as_str(), r.optional.unwrap_or(false))),
        (None, Some(r)) => Some((Kind::Secret, r.name.as_str(), r.key.as_str(), r.optional.unwrap_or(false))),
        (None, None) => None,
    };
    if let Some((kind, name, key, optional)) = keyed {
        return match sources.value(kind, namespace, name, key) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
            Err(Missing::Absent(_)) if optional => Ok(None),
            Err(missing) => Err(missing),
        };
    }
    if let Some(field) = &from.field_ref {
        return Ok(Some(field_value(pod, &field.field_path).unwrap_or_default()));
    }
    if let Some(resource) = &from.resource_field_ref {
        return Ok(Some(resource_value(
            container,
            &resource.resource,
            resource.divisor.as_ref().map(|d| d.0.as_str()),
        )));
    }
    Ok(Some(String::new()))
}

/// What a `resourceFieldRef` selects of a container (`limits.cpu`, `requests.memory`, ...), in whole
/// `divisor`s rounded up, as upstream resolves it; empty when it is not set.
pub fn resource_value(container: &Container, resource: &str, divisor: Option<&str>) -> String {
    let (kind, name) = resource.split_once('.').unwrap_or(("", ""));
    let resources = container.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    let Some(value) = set.and_then(|s| s.get(name)).and_then(|q| parse_quantity(&q.0)) else {
        return String::new();
    };
    let divisor = divisor.and_then(parse_quantity).filter(|d| *d > 0.0).unwrap_or(1.0);
    format!("{}", (value / divisor).ceil() as i64)
}

/// What a `fieldRef` path selects of a pod.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<Option<String>> {
        let key = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key).cloned()))
    };
    if let Some(value) =
        keyed("metadata.labels", &meta.labels).or_else(|| keyed("metadata.annotations", &meta.annotations))
    {
        return value;
    }
    let status = pod.status.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(key_values(meta.labels.as_ref())),
        "metadata.annotations" => Some(key_values(meta.annotations.as_ref())),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.hostIP" => status?.host_ip.clone(),
        "status.podIP" => status?.pod_ip.clone(),
        "status.hostIPs" => Some(status?.host_ips.iter().flatten().map(|i| i.ip.clone()).collect::<Vec<_>>().join(",")),
        "status.podIPs" => Some(status?.pod_ips.iter().flatten().map(|i| i.ip.clone()).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

/// Labels or annotations as the downward API writes them: `key="value"` lines, sorted, values quoted as Go
/// quotes them.
fn key_values(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter().flatten().map(|(k, v)| format!("{k}={}\n", go_quote(v))).collect()
}

/// `input` with each `$(NAME)` replaced by `lookup(NAME)` where it has a value; `$$` is one `$` (so `$$(NAME)`
/// stays as it is written); anything else is kept, as upstream's expansion does.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::SourceKey;

    fn sources() -> Sources {
        let key = |kind, name: &str| SourceKey::object(kind, "ns", name);
        let data = |pairs: &[(&str, &str)]| {
            Some(pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<BTreeMap<_, _>>())
        };
        Sources(
            [
                (key(Kind::ConfigMap, "cfg"), data(&[("color", "blue"), ("size", "9"), ("bad=key", "x")])),
                (key(Kind::Secret, "creds"), data(&[("password", "hunter2")])),
                (key(Kind::ConfigMap, "gone"), None),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn pod(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web", "tier": "a\"b"}},
            "spec": {"nodeName": "n1", "containers": [container]},
            "status": {"hostIP": "10.0.0.1"},
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, container)
    }

    #[test]
    fn env_from_comes_first_and_env_replaces_and_expands() {
        let (pod, c) = pod(serde_json::json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "CFG_size", "value": "10"},
            {"name": "URL", "value": "http://$(CFG_color):$(CFG_size)/$(UNSET)/$$(CFG_color)"},
            {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "x", "optional": true}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]}));
        let env = environment(&pod, &c, &sources(), &[]).unwrap();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [
                ("CFG_color", "blue"),
                ("CFG_size", "10"),
                ("password", "hunter2"),
                ("URL", "http://blue:10/$(UNSET)/$(CFG_color)"),
                ("KEY", "blue"),
                ("PASS", "hunter2"),
                ("NAME", "p"),
            ]
        );
    }

    #[test]
    fn what_is_not_there_stops_the_container_unless_optional_and_what_is_unread_waits() {
        let missing = |env: serde_json::Value| {
            let (pod, c) = pod(serde_json::json!({"name": "c", "env": [env]}));
            environment(&pod, &c, &sources(), &[]).unwrap_err()
        };
        let absent = |m: &str| Missing::Absent(m.to_string());
        assert_eq!(
            missing(serde_json::json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "x"}}})),
            absent("configmap \"gone\" not found")
        );
        assert_eq!(
            missing(serde_json::json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}})),
            absent("couldn't find key user in Secret ns/creds")
        );
        assert_eq!(
            missing(serde_json::json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}})),
            Missing::Unread
        );
        let (pod, c) =
            pod(serde_json::json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone", "optional": true}}]}));
        assert_eq!(environment(&pod, &c, &sources(), &[]).unwrap(), []);
    }

    #[test]
    fn fields_and_resources_resolve_as_upstream() {
        let (pod, c) =
            pod(serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}}}));
        assert_eq!(field_value(&pod, "metadata.labels['app']").as_deref(), Some("web"));
        assert_eq!(field_value(&pod, "metadata.labels['none']"), None);
        assert_eq!(field_value(&pod, "metadata.labels").as_deref(), Some("app=\"web\"\ntier=\"a\\\"b\"\n"));
        assert_eq!(field_value(&pod, "status.hostIP").as_deref(), Some("10.0.0.1"));
        assert_eq!(resource_value(&c, "limits.cpu", None), "2");
        assert_eq!(resource_value(&c, "limits.memory", Some("1Mi")), "64");
        assert_eq!(resource_value(&c, "requests.memory", None), "");
    }

    #[test]
    fn expansion_keeps_what_it_cannot_expand() {
        let lookup = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$A-$(A", lookup), "x-$(B)-$(A)-$A-$(A");
        assert_eq!(expand("100$", lookup), "100$");
    }

    #[test]
    fn services_give_their_variables_and_the_container_wins_over_them() {
        let service = |namespace: &str, name: &str, spec: serde_json::Value| {
            Arc::new(
                serde_json::from_value::<Service>(
                    serde_json::json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec}),
                )
                .unwrap(),
            )
        };
        let services = [
            service(
                "shop",
                "web-front",
                serde_json::json!({"clusterIP": "10.96.0.20",
                "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
            ),
            service("shop", "db", serde_json::json!({"clusterIP": "None", "ports": [{"port": 5432}]})),
            service("other", "elsewhere", serde_json::json!({"clusterIP": "10.96.0.30", "ports": [{"port": 1}]})),
            service(
                "default",
                "kubernetes",
                serde_json::json!({"clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443}]}),
            ),
        ];
        let vars = service_variables("shop", true, &services);
        let get = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_FRONT_SERVICE_HOST"), Some("10.96.0.20"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("80"));
        assert_eq!(get("WEB_FRONT_SERVICE_PORT_DNS"), Some("53"));
        assert_eq!(get("WEB_FRONT_PORT"), Some("tcp://10.96.0.20:80"));
        assert_eq!(get("WEB_FRONT_PORT_53_UDP"), Some("udp://10.96.0.20:53"));
        assert_eq!(get("WEB_FRONT_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("WEB_FRONT_PORT_80_TCP_ADDR"), Some("10.96.0.20"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("DB_SERVICE_HOST"), None, "headless: none");
        assert_eq!(get("ELSEWHERE_SERVICE_HOST"), None, "another namespace: none");
        let unlinked = service_variables("shop", false, &services);
        assert!(unlinked.iter().all(|(n, _)| n.starts_with("KUBERNETES_")), "{unlinked:?}");

        let (pod, c) = pod(serde_json::json!({"name": "c", "env": [
            {"name": "WEB_FRONT_SERVICE_PORT", "value": "8080"},
            {"name": "URL", "value": "http://$(WEB_FRONT_SERVICE_HOST)/"}]}));
        let env = environment(&pod, &c, &sources(), &vars).unwrap();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_FRONT_SERVICE_PORT"), Some("8080"), "the container's own definition wins");
        assert_eq!(get("URL"), Some("http://10.96.0.20/"));
        assert_eq!(env.iter().filter(|(n, _)| n == "WEB_FRONT_SERVICE_PORT").count(), 1);
    }
}
