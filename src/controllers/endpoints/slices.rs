//! EndpointSlices as upstream's EndpointSlice controllers keep them: a Service's slices list the pods it selects
//! (every member, terminating ones too, with their conditions); the mirror of the Endpoints a user wrote for a
//! Service without a selector lists their addresses (as upstream's mirroring controller copies them, ready or
//! not). Slices hold at most `ENDPOINT_SLICE_ENDPOINTS_MAX` endpoints, one set of ports and one address type
//! each; a Service with no endpoints keeps one empty placeholder slice (a mirror with none has no slice).
//!
//! The plan changes as few slices as it can: an endpoint (known by its target's uid, or its address when it has
//! no target) stays in the slice that holds it (updated in place when its conditions change), endpoints that
//! left are taken out, new ones fill the slices that have room before a new slice is made, and a slice left
//! empty is deleted. Slices are named `<service>-<random>` by the API (`generateName`), labelled with their
//! owner's labels, `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by` (each controller
//! touches only the slices with its own value) and, for a headless Service, `service.kubernetes.io/headless`.
//! Their owner (the Service, or the mirrored Endpoints) takes them with it when it goes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::legacy::HEADLESS_LABEL;
use super::members::{self, Member, Port};
use crate::controllers::kubernetes_service::{SERVICE_NAME_LABEL, SKIP_MIRROR_LABEL};
use crate::limits;

pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const MIRROR_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";

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

/// Which of the two controllers made `slice` for the Service named `service`, if either did.
pub fn manager(slice: &EndpointSlice, service: &str) -> Option<&'static str> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(SERVICE_NAME_LABEL).map(String::as_str) != Some(service) {
        return None;
    }
    [MANAGED_BY, MIRROR_MANAGED_BY].into_iter().find(|m| labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(m))
}

/// What a slice holds that decides where an endpoint goes: its address type and its ports (as JSON text).
type Group = (&'static str, String);

fn ports_text(ports: Vec<Value>) -> String {
    Value::Array(ports).to_string()
}

/// Whose slices a plan keeps: their labels, their owner and whether an empty set keeps a placeholder.
pub struct Owner {
    /// The Service's name, and the slices' name prefix.
    name: String,
    namespace: Option<String>,
    labels: Value,
    reference: Value,
    placeholder: bool,
}

impl Owner {
    /// The slices of a Service with a selector, owned by it.
    pub fn service(service: &Service) -> Owner {
        let mut labels = copied_labels(service.metadata.labels.as_ref(), MANAGED_BY, service);
        if members::is_headless(service) {
            labels[HEADLESS_LABEL] = json!("");
        }
        Owner {
            name: service.metadata.name.clone().unwrap_or_default(),
            namespace: service.metadata.namespace.clone(),
            labels,
            reference: reference("Service", &service.metadata),
            placeholder: true,
        }
    }

    /// The mirror of `endpoints`, the Endpoints of `service` (which has no selector), owned by the Endpoints.
    pub fn mirror(service: &Service, endpoints: &Endpoints) -> Owner {
        Owner {
            name: service.metadata.name.clone().unwrap_or_default(),
            namespace: service.metadata.namespace.clone(),
            labels: copied_labels(endpoints.metadata.labels.as_ref(), MIRROR_MANAGED_BY, service),
            reference: reference("Endpoints", &endpoints.metadata),
            placeholder: false,
        }
    }
}

/// `labels` without those the slices' writer sets, and with the ones it sets.
fn copied_labels(labels: Option<&BTreeMap<String, String>>, managed_by: &str, service: &Service) -> Value {
    let reserved = [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL, SKIP_MIRROR_LABEL];
    let mut copied: serde_json::Map<String, Value> = labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    copied.insert(SERVICE_NAME_LABEL.into(), json!(service.metadata.name));
    copied.insert(MANAGED_BY_LABEL.into(), json!(managed_by));
    Value::Object(copied)
}

fn reference(kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "name": meta.name, "uid": meta.uid, "controller": true,
        "blockOwnerDeletion": true})
}

/// One endpoint a plan places: the group of slices it belongs in, what it is known by, and the endpoint itself.
pub struct Wanted {
    group: Group,
    key: String,
    endpoint: Value,
}

/// The endpoints of a Service's `members`.
pub fn of_members(service: &Service, members: &[Member]) -> Vec<Wanted> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    members
        .iter()
        .map(|member| Wanted {
            group: (address_type(member.ip), ports_text(member.ports.iter().map(port).collect())),
            key: member.pod_uid.clone(),
            endpoint: endpoint(member, namespace),
        })
        .collect()
}

/// The endpoints mirroring `endpoints`: each address of each subset (`notReadyAddresses` not ready), with its
/// node, hostname and target, at most `ENDPOINTS_ADDRESSES_MAX` of them; an address that is not an IP is left
/// out.
pub fn of_endpoints(endpoints: &Endpoints) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<Value> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                port(&Port {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (address, ready) in ready.chain(not_ready) {
            let Ok(ip) = address.ip.parse::<IpAddr>() else { continue };
            let mut endpoint = json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}});
            if let Some(target) = &address.target_ref {
                endpoint["targetRef"] = serde_json::to_value(target).unwrap_or_default();
            }
            if let Some(node) = &address.node_name {
                endpoint["nodeName"] = json!(node);
            }
            if let Some(hostname) = address.hostname.as_ref().filter(|h| !h.is_empty()) {
                endpoint["hostname"] = json!(hostname);
            }
            let key = key_of(&endpoint);
            wanted.push(Wanted { group: (address_type(ip), ports_text(ports.clone())), key, endpoint });
        }
    }
    wanted.truncate(limits::ENDPOINTS_ADDRESSES_MAX);
    wanted
}

/// Whether `endpoints` (of a Service without a selector) are mirrored into slices: unless they ask not to be.
pub fn mirrors(endpoints: &Endpoints) -> bool {
    endpoints.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR_LABEL)).map(String::as_str) != Some("true")
}

/// The writes that delete every one of `current`.
pub fn deletes(current: &[&EndpointSlice]) -> Vec<SliceWrite> {
    current.iter().map(|s| delete(s)).collect()
}

/// What an endpoint is known by from one plan to the next: its target's uid, or its address.
fn key_of(endpoint: &Value) -> String {
    match endpoint["targetRef"]["uid"].as_str() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => endpoint["addresses"][0].as_str().unwrap_or_default().to_owned(),
    }
}

/// The writes that make `current` (the owner's slices) hold `wanted`.
pub fn plan(owner: &Owner, wanted: Vec<Wanted>, current: &[&EndpointSlice]) -> Vec<SliceWrite> {
    if wanted.is_empty() {
        return match owner.placeholder {
            true => placeholder(owner, current),
            false => deletes(current),
        };
    }
    // The endpoints wanted, by group, each by its key.
    let mut by_group: BTreeMap<Group, BTreeMap<String, Value>> = BTreeMap::new();
    for Wanted { group, key, endpoint } in wanted {
        by_group.entry(group).or_default().insert(key, endpoint);
    }
    let mut writes = Vec::new();
    // Each slice of a wanted group keeps the endpoints it holds that are still wanted, in their new form.
    let mut kept: Vec<(Group, &EndpointSlice, Vec<Value>)> = Vec::new();
    for slice in current {
        let group = group_of(slice);
        let Some(want) = by_group.get_mut(&group) else {
            writes.push(delete(slice));
            continue;
        };
        let held = slice
            .endpoints
            .iter()
            .filter_map(|e| want.remove(&key_of(&serde_json::to_value(e).unwrap_or_default())))
            .collect();
        kept.push((group, slice, held));
    }
    // New endpoints fill the kept slices of their group that have room, then new slices.
    for (group, _, held) in kept.iter_mut() {
        let want = by_group.get_mut(group).expect("a kept slice's group is wanted");
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
        writes.extend(replace_if_changed(owner, &group, slice, held));
    }
    for (group, want) in by_group {
        let mut endpoints: Vec<Value> = want.into_values().collect();
        endpoints.sort_by_key(address_of);
        for chunk in endpoints.chunks(limits::ENDPOINT_SLICE_ENDPOINTS_MAX) {
            writes.push(SliceWrite::Create(new_slice(owner, &group, chunk.to_vec())));
        }
    }
    writes
}

/// A Service without endpoints keeps one empty slice: the first empty one it has, or a new one.
fn placeholder(owner: &Owner, current: &[&EndpointSlice]) -> Vec<SliceWrite> {
    let empty = ("IPv4", ports_text(Vec::new()));
    let kept = current.iter().position(|s| s.endpoints.is_empty() && group_of(s) == empty);
    let mut writes: Vec<SliceWrite> =
        current.iter().enumerate().filter(|(i, _)| Some(*i) != kept).map(|(_, s)| delete(s)).collect();
    match kept {
        Some(i) => writes.extend(replace_if_changed(owner, &empty, current[i], Vec::new())),
        None => writes.push(SliceWrite::Create(new_slice(owner, &empty, Vec::new()))),
    }
    writes
}

/// `slice` replaced with `endpoints` and the owner's labels, unless it holds them already.
fn replace_if_changed(
    owner: &Owner,
    group: &Group,
    slice: &EndpointSlice,
    endpoints: Vec<Value>,
) -> Option<SliceWrite> {
    let current = serde_json::to_value(&slice.endpoints).unwrap_or_default();
    let current_labels = serde_json::to_value(&slice.metadata.labels).unwrap_or_default();
    if current == Value::Array(endpoints.clone()) && current_labels == owner.labels {
        return None;
    }
    let mut object = new_slice(owner, group, endpoints);
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

fn new_slice(owner: &Owner, group: &Group, endpoints: Vec<Value>) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": format!("{}-", owner.name),
            "namespace": owner.namespace,
            "labels": owner.labels,
            "ownerReferences": [owner.reference],
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

    fn plan_of(service: &Service, members: &[Member], current: &[&EndpointSlice]) -> Vec<SliceWrite> {
        plan(&Owner::service(service), of_members(service, members), current)
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
        let writes = plan_of(&svc, &members, &[]);
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
        assert_eq!(plan_of(&svc, &members, &[&a, &b]), []);
    }

    #[test]
    fn endpoints_stay_in_their_slice_leave_it_and_new_ones_fill_it() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let slice = stored(&plan_of(&svc, &[member(1, true, 8080), member(2, true, 8080)], &[])[0], "web-a");
        // 1 leaves, 2 is no longer ready, 3 arrives: one replace of the same slice.
        let writes = plan_of(&svc, &[member(2, false, 8080), member(3, true, 8080)], &[&slice]);
        assert_eq!(writes.len(), 1, "{writes:?}");
        let replaced = stored(&writes[0], "web-a");
        assert!(matches!(&writes[0], SliceWrite::Replace(o) if o["metadata"]["name"] == "web-a"));
        assert_eq!(uids(&replaced), ["uid-2", "uid-3"]);
        assert_eq!(replaced.endpoints[0].conditions.as_ref().unwrap().ready, Some(false));
        // A full slice: newcomers go to a new one.
        let full: Vec<Member> = (0..limits::ENDPOINT_SLICE_ENDPOINTS_MAX).map(|i| member(i, true, 8080)).collect();
        let full_slice = stored(&plan_of(&svc, &full, &[])[0], "web-a");
        let mut more = full.clone();
        more.push(member(500, true, 8080));
        let writes = plan_of(&svc, &more, &[&full_slice]);
        assert_eq!(writes.len(), 1);
        assert!(matches!(&writes[0], SliceWrite::Create(_)));
        assert_eq!(uids(&stored(&writes[0], "web-b")), ["uid-500"]);
    }

    #[test]
    fn a_change_of_ports_moves_endpoints_to_a_new_slice_and_an_empty_service_keeps_a_placeholder() {
        let svc = service(json!({"selector": {"app": "web"}}));
        let old = stored(&plan_of(&svc, &[member(1, true, 8080)], &[])[0], "web-a");
        let writes = plan_of(&svc, &[member(1, true, 9090)], &[&old]);
        assert_eq!(writes[0], SliceWrite::Delete { name: "web-a".into(), uid: "uid-web-a".into() });
        assert_eq!(stored(&writes[1], "web-b").ports.unwrap()[0].port, Some(9090));

        // Without members: the slice with endpoints goes and an empty one is made, which then stays.
        let writes = plan_of(&svc, &[], &[&old]);
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(matches!(&writes[0], SliceWrite::Delete { name, .. } if name == "web-a"));
        let placeholder = stored(&writes[1], "web-c");
        assert!(placeholder.endpoints.is_empty() && placeholder.ports.as_ref().is_none_or(Vec::is_empty));
        assert_eq!(placeholder.address_type, "IPv4");
        assert_eq!(plan_of(&svc, &[], &[&placeholder]), []);
        // Members again: the placeholder, a group of no ports, is deleted and a slice made.
        let writes = plan_of(&svc, &[member(1, true, 8080)], &[&placeholder]);
        assert!(matches!(&writes[0], SliceWrite::Delete { name, .. } if name == "web-c"));
        assert!(matches!(&writes[1], SliceWrite::Create(_)));
    }

    #[test]
    fn a_headless_services_slices_say_so_and_changed_labels_are_written() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let slice = stored(&plan_of(&svc, &[member(1, true, 8080)], &[])[0], "web-a");
        assert_eq!(slice.metadata.labels.as_ref().unwrap()[HEADLESS_LABEL], "");
        let mut relabelled = svc.clone();
        relabelled.metadata.labels = Some([("tier".to_owned(), "back".to_owned())].into());
        let writes = plan_of(&relabelled, &[member(1, true, 8080)], &[&slice]);
        assert_eq!(stored(&writes[0], "web-a").metadata.labels.unwrap()["tier"], "back");
        assert_eq!((manager(&slice, "web"), manager(&slice, "db")), (Some(MANAGED_BY), None));
    }

    #[test]
    fn user_written_endpoints_are_mirrored_by_address_and_an_empty_mirror_has_no_slice() {
        let svc = service(json!({"ports": [{"port": 80}]}));
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "ep-uid",
                "labels": {"team": "a", SKIP_MIRROR_LABEL: "false"}},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.2", "nodeName": "n1"}, {"ip": "not-an-ip"}],
                 "notReadyAddresses": [{"ip": "192.0.2.3",
                     "targetRef": {"kind": "Pod", "namespace": "default", "name": "p3", "uid": "uid-3"}}],
                 "ports": [{"port": 8080}]},
                {"addresses": [{"ip": "192.0.2.2"}], "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}]
        }))
        .unwrap();
        let owner = Owner::mirror(&svc, &endpoints);
        let writes = plan(&owner, of_endpoints(&endpoints), &[]);
        assert_eq!(writes.len(), 2, "one slice per set of ports: {writes:?}");
        let SliceWrite::Create(object) = &writes[0] else { panic!("{writes:?}") };
        assert_eq!(
            object["metadata"]["labels"],
            json!({"team": "a", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MIRROR_MANAGED_BY})
        );
        assert_eq!(object["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "ep-uid");
        assert_eq!(object["ports"], json!([{"name": "", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(
            object["endpoints"],
            json!([{"addresses": ["192.0.2.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["192.0.2.3"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "p3", "uid": "uid-3"}}])
        );
        let (a, b) = (stored(&writes[0], "web-a"), stored(&writes[1], "web-b"));
        assert_eq!(manager(&a, "web"), Some(MIRROR_MANAGED_BY));
        assert_eq!(plan(&owner, of_endpoints(&endpoints), &[&a, &b]), [], "mirrored already");
        // The Endpoints emptied: the mirror's slices go and no placeholder is made.
        let mut empty = endpoints.clone();
        empty.subsets = None;
        let writes = plan(&Owner::mirror(&svc, &empty), of_endpoints(&empty), &[&a, &b]);
        assert!(writes.iter().all(|w| matches!(w, SliceWrite::Delete { .. })) && writes.len() == 2, "{writes:?}");
    }
}
