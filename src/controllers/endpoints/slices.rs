//! A Service's EndpointSlices, as upstream's EndpointSlice controller keeps them: every member (terminating ones
//! too, with their conditions) in slices of at most `ENDPOINT_SLICE_ENDPOINTS_MAX` endpoints, one set of ports
//! and one address type per slice; a Service with no endpoints keeps one empty placeholder slice.
//!
//! The plan changes as few slices as it can: an endpoint stays in the slice that holds it (updated in place
//! when its conditions change), endpoints that left are taken out, new ones fill the slices that have room
//! before a new slice is made, and a slice left empty is deleted. Slices are named `<service>-<random>` by the
//! API (`generateName`), labelled with the Service's labels and `kubernetes.io/service-name`,
//! `endpointslice.kubernetes.io/managed-by` (only slices with this controller's value are touched) and, for a
//! headless Service, `service.kubernetes.io/headless`; the Service owns them, so they go with it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::legacy::HEADLESS_LABEL;
use super::members::{self, Member, Port};
use crate::controllers::kubernetes_service::SERVICE_NAME_LABEL;
use crate::limits;

pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// One of the plan's writes.
#[derive(Clone, Debug, PartialEq)]
pub enum SliceWrite {
    /// A new slice (named by the API from its `generateName`).
    Create(Value),
    /// A changed slice, with the resourceVersion it was read at.
    Replace(Value),
    Delete {
        name: String,
        uid: String,
    },
}

/// Whether `slice` is one of this controller's slices of `service`.
pub fn managed(slice: &EndpointSlice, service: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(MANAGED_BY_LABEL) == Some(MANAGED_BY) && label(SERVICE_NAME_LABEL) == Some(service)
}

/// What a slice holds that decides where an endpoint goes: its address type and its ports (as JSON text).
type Group = (&'static str, String);

fn ports_text(ports: Vec<Value>) -> String {
    Value::Array(ports).to_string()
}

/// The writes that make `current` (the Service's managed slices) hold `members`.
pub fn plan(service: &Service, members: &[Member], current: &[&EndpointSlice]) -> Vec<SliceWrite> {
    let labels = labels(service);
    if members.is_empty() {
        return placeholder(service, &labels, current);
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    // The endpoints wanted, by group, each by its pod's uid.
    let mut wanted: BTreeMap<Group, BTreeMap<String, Value>> = BTreeMap::new();
    for member in members {
        let group = (address_type(member.ip), ports_text(member.ports.iter().map(port).collect()));
        wanted.entry(group).or_default().insert(member.pod_uid.clone(), endpoint(member, namespace));
    }
    let mut writes = Vec::new();
    // Each slice of a wanted group keeps the endpoints it holds that are still wanted, in their new form.
    let mut kept: Vec<(Group, &EndpointSlice, Vec<Value>)> = Vec::new();
    for slice in current {
        let group = group_of(slice);
        let Some(want) = wanted.get_mut(&group) else {
            writes.push(delete(slice));
            continue;
        };
        let held = slice
            .endpoints
            .iter()
            .filter_map(|e| e.target_ref.as_ref()?.uid.clone())
            .filter_map(|uid| want.remove(&uid))
            .collect();
        kept.push((group, slice, held));
    }
    // New endpoints fill the kept slices of their group that have room, then new slices.
    for (group, _, held) in kept.iter_mut() {
        let want = wanted.get_mut(group).expect("a kept slice's group is wanted");
        while held.len() < limits::ENDPOINT_SLICE_ENDPOINTS_MAX {
            let Some((_, endpoint)) = want.pop_first() else { break };
            held.push(endpoint);
        }
    }
    for (group, slice, mut held) in kept {
        if held.is_empty() {
            writes.push(delete(slice));
            continue;
        }
        held.sort_by_key(address_of);
        writes.extend(replace_if_changed(service, &labels, &group, slice, held));
    }
    for (group, want) in wanted {
        let mut endpoints: Vec<Value> = want.into_values().collect();
        endpoints.sort_by_key(address_of);
        for chunk in endpoints.chunks(limits::ENDPOINT_SLICE_ENDPOINTS_MAX) {
            writes.push(SliceWrite::Create(new_slice(service, &labels, &group, chunk.to_vec())));
        }
    }
    writes
}

/// A Service without endpoints keeps one empty slice: the first empty one it has, or a new one.
fn placeholder(service: &Service, labels: &Value, current: &[&EndpointSlice]) -> Vec<SliceWrite> {
    let empty = ("IPv4", ports_text(Vec::new()));
    let kept = current.iter().position(|s| s.endpoints.is_empty() && group_of(s) == empty);
    let mut writes: Vec<SliceWrite> =
        current.iter().enumerate().filter(|(i, _)| Some(*i) != kept).map(|(_, s)| delete(s)).collect();
    match kept {
        Some(i) => writes.extend(replace_if_changed(service, labels, &empty, current[i], Vec::new())),
        None => writes.push(SliceWrite::Create(new_slice(service, labels, &empty, Vec::new()))),
    }
    writes
}

/// `slice` replaced with `endpoints` and the Service's labels, unless it holds them already.
fn replace_if_changed(
    service: &Service,
    labels: &Value,
    group: &Group,
    slice: &EndpointSlice,
    endpoints: Vec<Value>,
) -> Option<SliceWrite> {
    let current = serde_json::to_value(&slice.endpoints).unwrap_or_default();
    let current_labels = serde_json::to_value(&slice.metadata.labels).unwrap_or_default();
    if current == Value::Array(endpoints.clone()) && current_labels == *labels {
        return None;
    }
    let mut object = new_slice(service, labels, group, endpoints);
    object["metadata"]["name"] = json!(slice.metadata.name);
    object["metadata"]["resourceVersion"] = json!(slice.metadata.resource_version);
    Some(SliceWrite::Replace(object))
}

fn delete(slice: &EndpointSlice) -> SliceWrite {
    SliceWrite::Delete {
        name: slice.metadata.name.clone().unwrap_or_default(),
        uid: slice.metadata.uid.clone().unwrap_or_default(),
    }
}

fn group_of(slice: &EndpointSlice) -> Group {
    let address_type = match slice.address_type.as_str() {
        "IPv6" => "IPv6",
        "FQDN" => "FQDN",
        _ => "IPv4",
    };
    let ports = slice.ports.iter().flatten().map(|p| serde_json::to_value(p).unwrap_or_default()).collect();
    (address_type, ports_text(ports))
}

fn address_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

fn address_of(endpoint: &Value) -> Option<IpAddr> {
    endpoint["addresses"][0].as_str()?.parse().ok()
}

/// A slice's port: upstream always names it, `""` for an unnamed Service port.
fn port(port: &Port) -> Value {
    let mut value = json!({"name": port.name, "port": port.port, "protocol": port.protocol});
    if let Some(app) = &port.app_protocol {
        value["appProtocol"] = json!(app);
    }
    value
}

fn endpoint(member: &Member, namespace: &str) -> Value {
    let mut endpoint = json!({
        "addresses": [member.ip.to_string()],
        "conditions": {"ready": member.ready, "serving": member.serving, "terminating": member.terminating},
        "targetRef": {"kind": "Pod", "namespace": namespace, "name": member.pod_name, "uid": member.pod_uid},
    });
    for (key, value) in [("nodeName", &member.node), ("zone", &member.zone), ("hostname", &member.hostname)] {
        if let Some(value) = value {
            endpoint[key] = json!(value);
        }
    }
    endpoint
}

/// The labels of the Service's slices.
fn labels(service: &Service) -> Value {
    let reserved = [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL];
    let mut labels: serde_json::Map<String, Value> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), json!(service.metadata.name));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    if members::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    Value::Object(labels)
}

fn new_slice(service: &Service, labels: &Value, group: &Group, endpoints: Vec<Value>) -> Value {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": service.metadata.namespace,
            "labels": labels,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": service.metadata.uid,
                "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": group.0,
        "endpoints": endpoints,
        "ports": serde_json::from_str::<Value>(&group.1).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
            "labels": {"tier": "front"}}, "spec": spec}))
        .unwrap()
    }

    fn member(i: usize, ready: bool, port: i32) -> Member {
        Member {
            ip: format!("10.0.{}.{}", i / 200, i % 200 + 1).parse().unwrap(),
            ready,
            serving: ready,
            terminating: false,
            node: Some("n1".into()),
            zone: None,
            hostname: None,
            pod_name: format!("p{i}"),
            pod_uid: format!("uid-{i}"),
            ports: vec![Port { name: "http".into(), port, protocol: "TCP".into(), app_protocol: None }],
        }
    }

    /// The slice a Create or Replace makes, as the API would store it under `name`.
    fn stored(write: &SliceWrite, name: &str) -> EndpointSlice {
        let (SliceWrite::Create(object) | SliceWrite::Replace(object)) = write else { panic!("{write:?}") };
        let mut object = object.clone();
        object["metadata"]["name"] = json!(name);
        object["metadata"]["uid"] = json!(format!("uid-{name}"));
        object["metadata"]["resourceVersion"] = json!("1");
        serde_json::from_value(object).unwrap()
    }

    fn uids(slice: &EndpointSlice) -> Vec<String> {
        slice.endpoints.iter().map(|e| e.target_ref.clone().unwrap().uid.unwrap()).collect()
    }

    #[test]
    fn members_go_into_new_slices_of_at_most_the_slice_capacity() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let members: Vec<Member> =
            (0..limits::ENDPOINT_SLICE_ENDPOINTS_MAX + 50).map(|i| member(i, true, 8080)).collect();
        let writes = plan(&svc, &members, &[]);
        assert_eq!(writes.len(), 2);
        let first = stored(&writes[0], "web-a");
        assert_eq!(first.endpoints.len(), limits::ENDPOINT_SLICE_ENDPOINTS_MAX);
        assert_eq!(stored(&writes[1], "web-b").endpoints.len(), 50);
        let SliceWrite::Create(object) = &writes[0] else { unreachable!() };
        assert_eq!(object["metadata"]["generateName"], "web-");
        assert_eq!(
            object["metadata"]["labels"],
            json!({"tier": "front", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY})
        );
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(object["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(object["addressType"], "IPv4");
        assert_eq!(object["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(
            object["endpoints"][0],
            json!({"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "p0", "uid": "uid-0"}})
        );
        // Once stored, the same members change nothing.
        let (a, b) = (first, stored(&writes[1], "web-b"));
        assert_eq!(plan(&svc, &members, &[&a, &b]), []);
    }

    #[test]
    fn endpoints_stay_in_their_slice_leave_it_and_new_ones_fill_it() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let slice = stored(&plan(&svc, &[member(1, true, 8080), member(2, true, 8080)], &[])[0], "web-a");
        // 1 leaves, 2 is no longer ready, 3 arrives: one replace of the same slice.
        let writes = plan(&svc, &[member(2, false, 8080), member(3, true, 8080)], &[&slice]);
        assert_eq!(writes.len(), 1, "{writes:?}");
        let replaced = stored(&writes[0], "web-a");
        assert!(matches!(&writes[0], SliceWrite::Replace(o) if o["metadata"]["name"] == "web-a"));
        assert_eq!(uids(&replaced), ["uid-2", "uid-3"]);
        assert_eq!(replaced.endpoints[0].conditions.as_ref().unwrap().ready, Some(false));
        // A full slice: newcomers go to a new one.
        let full: Vec<Member> = (0..limits::ENDPOINT_SLICE_ENDPOINTS_MAX).map(|i| member(i, true, 8080)).collect();
        let full_slice = stored(&plan(&svc, &full, &[])[0], "web-a");
        let mut more = full.clone();
        more.push(member(500, true, 8080));
        let writes = plan(&svc, &more, &[&full_slice]);
        assert_eq!(writes.len(), 1);
        assert!(matches!(&writes[0], SliceWrite::Create(_)));
        assert_eq!(uids(&stored(&writes[0], "web-b")), ["uid-500"]);
    }

    #[test]
    fn a_change_of_ports_moves_endpoints_to_a_new_slice_and_an_empty_service_keeps_a_placeholder() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let old = stored(&plan(&svc, &[member(1, true, 8080)], &[])[0], "web-a");
        let writes = plan(&svc, &[member(1, true, 9090)], &[&old]);
        assert_eq!(writes[0], SliceWrite::Delete { name: "web-a".into(), uid: "uid-web-a".into() });
        assert_eq!(stored(&writes[1], "web-b").ports.unwrap()[0].port, Some(9090));

        // Without members: the slice with endpoints goes and an empty one is made, which then stays.
        let writes = plan(&svc, &[], &[&old]);
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(matches!(&writes[0], SliceWrite::Delete { name, .. } if name == "web-a"));
        let placeholder = stored(&writes[1], "web-c");
        assert!(placeholder.endpoints.is_empty() && placeholder.ports.as_ref().is_none_or(Vec::is_empty));
        assert_eq!(placeholder.address_type, "IPv4");
        assert_eq!(plan(&svc, &[], &[&placeholder]), []);
        // Members again: the placeholder, a group of no ports, is deleted and a slice made.
        let writes = plan(&svc, &[member(1, true, 8080)], &[&placeholder]);
        assert!(matches!(&writes[0], SliceWrite::Delete { name, .. } if name == "web-c"));
        assert!(matches!(&writes[1], SliceWrite::Create(_)));
    }

    #[test]
    fn a_headless_services_slices_say_so_and_changed_labels_are_written() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let slice = stored(&plan(&svc, &[member(1, true, 8080)], &[])[0], "web-a");
        assert_eq!(slice.metadata.labels.as_ref().unwrap()[HEADLESS_LABEL], "");
        let mut relabelled = svc.clone();
        relabelled.metadata.labels = Some([("tier".to_owned(), "back".to_owned())].into());
        let writes = plan(&relabelled, &[member(1, true, 8080)], &[&slice]);
        assert_eq!(stored(&writes[0], "web-a").metadata.labels.unwrap()["tier"], "back");
        assert!(managed(&slice, "web") && !managed(&slice, "db"));
    }
}
