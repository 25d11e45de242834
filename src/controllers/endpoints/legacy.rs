//! A Service's `v1` Endpoints, as upstream's endpoints controller writes them: one object named after the
//! Service, its subsets grouping the addresses that serve the same ports (ready ones in `addresses`, the others
//! in `notReadyAddresses`), terminating pods left out unless the Service publishes not-ready addresses, at
//! most `ENDPOINTS_ADDRESSES_MAX` addresses (ready ones first) with the `over-capacity` annotation beyond.
//! A headless Service without ports lists its pods' addresses with no ports. The labels are the Service's, with
//! `service.kubernetes.io/headless` on a headless Service's and `endpoints.kubernetes.io/managed-by` (as
//! upstream marks them since 1.33): only Endpoints so marked are deleted with their Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::{json, Value};

use super::members::{self, Member, Port};
use crate::limits;

pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpoint-controller";
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// The Endpoints `service` should have, given its `members`.
pub fn desired(service: &Service, members: &[Member]) -> Value {
    let headless = members::is_headless(service);
    let portless = service.spec.as_ref().and_then(|s| s.ports.as_ref()).is_none_or(Vec::is_empty);
    let include_terminating = members::publishes_not_ready(service);
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let mut chosen: Vec<&Member> = members
        .iter()
        .filter(|m| include_terminating || !m.terminating)
        .filter(|m| !m.ports.is_empty() || (headless && portless))
        .collect();
    // Ready addresses first when some must be left out.
    chosen.sort_by_key(|m| !m.ready);
    let over = chosen.len() > limits::ENDPOINTS_ADDRESSES_MAX;
    chosen.truncate(limits::ENDPOINTS_ADDRESSES_MAX);
    let mut by_ports: BTreeMap<Vec<Port>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for member in chosen {
        let mut ports = member.ports.clone();
        ports.sort();
        let (ready, not_ready) = by_ports.entry(ports).or_default();
        match member.ready {
            true => ready.push(address(member, namespace)),
            false => not_ready.push(address(member, namespace)),
        }
    }
    let subsets: Vec<Value> = by_ports
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            let mut subset = serde_json::Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports.iter().map(port).collect()));
            }
            Value::Object(subset)
        })
        .collect();
    let mut labels: serde_json::Map<String, Value> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != HEADLESS_LABEL && k.as_str() != MANAGED_BY_LABEL)
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    if headless {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    let mut metadata = json!({
        "name": service.metadata.name,
        "namespace": service.metadata.namespace,
        "labels": labels,
    });
    if over {
        metadata["annotations"] = json!({OVER_CAPACITY_ANNOTATION: "truncated"});
    }
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": subsets})
}

fn address(member: &Member, namespace: &str) -> Value {
    let mut address = json!({
        "ip": member.ip.to_string(),
        "targetRef": {"kind": "Pod", "namespace": namespace, "name": member.pod_name, "uid": member.pod_uid},
    });
    if let Some(node) = &member.node {
        address["nodeName"] = json!(node);
    }
    if let Some(hostname) = &member.hostname {
        address["hostname"] = json!(hostname);
    }
    address
}

fn by_ip(a: &Value, b: &Value) -> std::cmp::Ordering {
    let ip = |v: &Value| v["ip"].as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok());
    ip(a).cmp(&ip(b))
}

fn port(port: &Port) -> Value {
    let mut value = json!({"port": port.port, "protocol": port.protocol});
    if !port.name.is_empty() {
        value["name"] = json!(port.name);
    }
    if let Some(app) = &port.app_protocol {
        value["appProtocol"] = json!(app);
    }
    value
}

/// Whether this controller made `endpoints`.
pub fn managed(endpoints: &Endpoints) -> bool {
    endpoints.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY)
}

/// Whether `current` already says what `desired` says (subsets, labels and annotations this controller sets).
pub fn up_to_date(current: &Endpoints, desired: &Value) -> bool {
    let current = serde_json::to_value(current).unwrap_or_default();
    let subsets = |v: &Value| v["subsets"].as_array().cloned().unwrap_or_default();
    let labels = |v: &Value| v["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let over = |v: &Value| v["metadata"]["annotations"][OVER_CAPACITY_ANNOTATION].clone();
    subsets(&current) == subsets(desired) && labels(&current) == labels(desired) && over(&current) == over(desired)
}

/// `desired` as a replacement of `current`: its resourceVersion as the precondition, the other annotations
/// kept.
pub fn replacement(current: &Endpoints, desired: &Value) -> Value {
    let mut object = desired.clone();
    object["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
    let mut annotations: serde_json::Map<String, Value> = current
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != OVER_CAPACITY_ANNOTATION)
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if let Some(own) = desired["metadata"]["annotations"].as_object() {
        annotations.extend(own.clone());
    }
    object["metadata"]["annotations"] = Value::Object(annotations);
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": spec}))
        .unwrap()
    }

    fn member(name: &str, ip: &str, ready: bool, ports: &[i32]) -> Member {
        Member {
            ip: ip.parse::<IpAddr>().unwrap(),
            ready,
            serving: ready,
            terminating: false,
            node: Some("n1".into()),
            zone: None,
            hostname: None,
            pod_name: name.into(),
            pod_uid: format!("uid-{name}"),
            ports: ports
                .iter()
                .map(|p| Port { name: String::new(), port: *p, protocol: "TCP".into(), app_protocol: None })
                .collect(),
        }
    }

    #[test]
    fn addresses_are_grouped_by_their_ports_ready_or_not() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let mut leaving = member("d", "10.0.0.4", false, &[8080]);
        leaving.terminating = true;
        let members = [
            member("b", "10.0.0.2", true, &[8080]),
            member("a", "10.0.0.10", true, &[8080]),
            member("c", "10.0.0.3", false, &[8080]),
            member("e", "10.0.0.5", true, &[9090]),
            member("f", "10.0.0.6", true, &[]),
            leaving,
        ];
        let endpoints = desired(&svc, &members);
        assert_eq!(endpoints["metadata"]["labels"], json!({"tier": "front", MANAGED_BY_LABEL: MANAGED_BY}));
        let subsets = endpoints["subsets"].as_array().unwrap();
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ips =
            |v: &Value| v.as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(ips(&subsets[0]["addresses"]), ["10.0.0.2", "10.0.0.10"], "sorted by address");
        assert_eq!(ips(&subsets[0]["notReadyAddresses"]), ["10.0.0.3"], "the terminating one left out");
        assert_eq!(subsets[0]["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
        assert_eq!(ips(&subsets[1]["addresses"]), ["10.0.0.5"]);
        assert_eq!(
            subsets[0]["addresses"][0]["targetRef"],
            json!({"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"})
        );
        assert_eq!(subsets[0]["addresses"][0]["nodeName"], "n1");
    }

    #[test]
    fn a_headless_service_without_ports_lists_addresses_alone_and_is_labelled() {
        let svc = service(json!({"selector": {"app": "db"}, "clusterIP": "None"}));
        let endpoints = desired(&svc, &[member("a", "10.0.0.1", true, &[])]);
        assert_eq!(
            endpoints["subsets"],
            json!([{"addresses": [
            {"ip": "10.0.0.1", "nodeName": "n1",
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}]}])
        );
        assert_eq!(
            endpoints["metadata"]["labels"],
            json!({"tier": "front", HEADLESS_LABEL: "", MANAGED_BY_LABEL: MANAGED_BY})
        );
    }

    #[test]
    fn beyond_the_capacity_ready_addresses_are_kept_and_the_object_says_so() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let members: Vec<Member> = (0..limits::ENDPOINTS_ADDRESSES_MAX + 2)
            .map(|i| member(&format!("p{i}"), &format!("10.1.{}.{}", i / 250, i % 250), i >= 2, &[80]))
            .collect();
        let endpoints = desired(&svc, &members);
        assert_eq!(endpoints["metadata"]["annotations"][OVER_CAPACITY_ANNOTATION], "truncated");
        let subset = &endpoints["subsets"][0];
        assert_eq!(subset["addresses"].as_array().unwrap().len(), limits::ENDPOINTS_ADDRESSES_MAX);
        assert!(subset.get("notReadyAddresses").is_none());
    }

    #[test]
    fn an_object_is_up_to_date_when_subsets_labels_and_capacity_agree() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let want = desired(&svc, &[member("a", "10.0.0.1", true, &[80])]);
        let mut current: Endpoints = serde_json::from_value(want.clone()).unwrap();
        current.metadata.resource_version = Some("7".into());
        current.metadata.annotations = Some([("note".to_owned(), "kept".to_owned())].into());
        assert!(up_to_date(&current, &want) && managed(&current));
        let other = desired(&svc, &[member("a", "10.0.0.2", true, &[80])]);
        assert!(!up_to_date(&current, &other));
        let replaced = replacement(&current, &other);
        assert_eq!(replaced["metadata"]["resourceVersion"], "7");
        assert_eq!(replaced["metadata"]["annotations"], json!({"note": "kept"}));
    }
}
