//! The `kubernetes` Service in namespace `default`, with its Endpoints and EndpointSlices: how clients inside
//! the cluster find the API, as upstream's API server keeps them (its kubernetes service controller and
//! endpoint reconciler).
//!
//! The Service holds the first address of the service range (which the allocator gives no other Service) and
//! port `https` 443/TCP to the replicas' API port. The Endpoints list the API address of every replica the
//! leader hears from; a follower silent for `API_SERVER_SILENCE_MS` is left out until it answers again. The
//! EndpointSlice `kubernetes` carries the same addresses; replicas on other ports than the Service's target (a
//! cluster on one host) get a slice of their own per port, as a slice has one set of ports.
//!
//! `desired` and `plan` are pure: from what the leader knows of the replicas and the objects as read, the
//! writes that make the objects right. A missing object is created; a Service's ports and type are put back (as
//! upstream does, nothing else of it is touched); Endpoints and slices are replaced when their addresses or
//! ports differ; slices no longer needed are deleted. Every write has a precondition: a create needs the name
//! free, a replace carries the resourceVersion read, a delete the uid read.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::apis::catalog::{self, Resource};
use crate::limits;

pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";
/// The label every EndpointSlice carries with the name of its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Keeps the EndpointSlice mirroring controller away from Endpoints whose slices are written here.
/// Endpoints so labelled are not mirrored into EndpointSlices (their writer makes the slices itself).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
const PORT_NAME: &str = "https";
const SERVICE_PORT: u16 = 443;

/// When the leader last heard from a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// It is the leader.
    Leading,
    /// This long ago.
    Ago(Duration),
    /// Not since this leader's term began.
    Never,
}

/// A replica as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// Where its Kubernetes API listens, once it has published it.
    pub api_addr: Option<SocketAddr>,
    pub heard: Heard,
}

/// What the objects should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub cluster_ip: Ipv4Addr,
    /// The Service's target port: the API port most replicas listen on (the lowest of those most share).
    pub target_port: u16,
    /// The API addresses the endpoints list, sorted.
    pub servers: Vec<SocketAddr>,
}

/// The objects as read; `slices` are those labelled with the Service's name.
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub service: Option<Value>,
    pub endpoints: Option<Value>,
    pub slices: Vec<Value>,
}

/// A write, with its precondition.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Create; fails if the name is taken.
    Create {
        resource: &'static Resource,
        object: Value,
    },
    /// Replace; `object` carries the resourceVersion it was read at.
    Replace {
        resource: &'static Resource,
        object: Value,
    },
    Delete {
        resource: &'static Resource,
        name: String,
        uid: String,
    },
}

fn services() -> &'static Resource {
    catalog::find("", "v1", "services").expect("services are served")
}

fn endpoints() -> &'static Resource {
    catalog::find("", "v1", "endpoints").expect("endpoints are served")
}

pub fn endpoint_slices() -> &'static Resource {
    catalog::find("discovery.k8s.io", "v1", "endpointslices").expect("endpoint slices are served")
}

/// What the objects should say, from the replicas and how long this replica has led.
pub fn desired(cluster_ip: Ipv4Addr, replicas: &[Replica], leading_for: Duration) -> Desired {
    let silence = Duration::from_millis(limits::API_SERVER_SILENCE_MS);
    let listening = || replicas.iter().filter_map(|r| r.api_addr);
    let mut servers: Vec<SocketAddr> = replicas
        .iter()
        .filter(|r| match r.heard {
            Heard::Leading => true,
            Heard::Ago(ago) => ago < silence,
            // Liveness this leader did not observe is not taken for death until it has had time to.
            Heard::Never => leading_for < silence,
        })
        .filter_map(|r| r.api_addr)
        .collect();
    servers.sort();
    servers.dedup();
    let mut ports: BTreeMap<u16, usize> = BTreeMap::new();
    for addr in listening() {
        *ports.entry(addr.port()).or_default() += 1;
    }
    // The first of the most shared ports: the map iterates ports upwards and `max_by_key` keeps the last maximum.
    let target_port = ports.iter().rev().max_by_key(|(_, n)| **n).map_or(SERVICE_PORT, |(port, _)| *port);
    Desired { cluster_ip, target_port, servers }
}

/// The writes that make the objects say what `desired` does.
pub fn plan(desired: &Desired, current: &Current) -> Vec<Write> {
    let mut writes = Vec::new();
    plan_service(desired, current.service.as_ref(), &mut writes);
    let groups = groups(desired);
    plan_endpoints(&groups, current.endpoints.as_ref(), &mut writes);
    plan_slices(&groups, &current.slices, &mut writes);
    writes
}

fn service_ports(desired: &Desired) -> Value {
    json!([{"name": PORT_NAME, "protocol": "TCP", "port": SERVICE_PORT, "targetPort": desired.target_port}])
}

fn plan_service(desired: &Desired, current: Option<&Value>, writes: &mut Vec<Write>) {
    let resource = services();
    let mut ports = json!({"spec": {"ports": service_ports(desired)}});
    (resource.defaults)(&mut ports);
    let ports = ports["spec"]["ports"].take();
    let Some(current) = current else {
        let ip = desired.cluster_ip.to_string();
        let object = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                "ports": ports},
        });
        writes.push(Write::Create { resource, object });
        return;
    };
    if current["spec"]["type"] == "ClusterIP" && current["spec"]["ports"] == ports {
        return;
    }
    let mut object = current.clone();
    object["spec"]["type"] = json!("ClusterIP");
    object["spec"]["ports"] = ports;
    writes.push(Write::Replace { resource, object });
}

/// The servers by address family and port, the group of the Service's target port (IPv4 first) leading.
struct Group {
    ipv6: bool,
    port: u16,
    ips: Vec<IpAddr>,
}

fn groups(desired: &Desired) -> Vec<Group> {
    let mut by_key: BTreeMap<(bool, bool, u16), Vec<IpAddr>> = BTreeMap::new();
    for addr in &desired.servers {
        let key = (addr.port() != desired.target_port, addr.is_ipv6(), addr.port());
        by_key.entry(key).or_default().push(addr.ip());
    }
    by_key.into_iter().map(|((_, ipv6, port), ips)| Group { ipv6, port, ips }).collect()
}

fn endpoint_port(port: u16) -> Value {
    json!({"name": PORT_NAME, "port": port, "protocol": "TCP"})
}

/// Whether `current` has every label of `wanted`.
fn has_labels(current: &Value, wanted: &Value) -> bool {
    let labels = &current["metadata"]["labels"];
    wanted.as_object().into_iter().flatten().all(|(k, v)| labels[k] == *v)
}

/// `current` with `wanted`'s labels added.
fn with_labels(current: &Value, wanted: &Value) -> Value {
    let mut object = current.clone();
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = json!({});
    }
    for (k, v) in wanted.as_object().into_iter().flatten() {
        object["metadata"]["labels"][k] = v.clone();
    }
    object
}

fn plan_endpoints(groups: &[Group], current: Option<&Value>, writes: &mut Vec<Write>) {
    let resource = endpoints();
    let subsets: Vec<Value> = groups
        .iter()
        .map(|g| {
            let addresses: Vec<Value> = g.ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
            json!({"addresses": addresses, "ports": [endpoint_port(g.port)]})
        })
        .collect();
    let labels = json!({SKIP_MIRROR_LABEL: "true"});
    let mut wanted = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels}, "subsets": subsets});
    (resource.defaults)(&mut wanted);
    let Some(current) = current else {
        writes.push(Write::Create { resource, object: wanted });
        return;
    };
    let same_subsets = match current.get("subsets") {
        None | Some(Value::Null) => subsets.is_empty(),
        Some(s) => *s == wanted["subsets"],
    };
    if same_subsets && has_labels(current, &labels) {
        return;
    }
    let mut object = with_labels(current, &labels);
    object["subsets"] = wanted["subsets"].take();
    writes.push(Write::Replace { resource, object });
}

fn slice_name(index: usize, group: &Group) -> String {
    match index {
        0 => NAME.to_string(),
        _ => format!("{NAME}-{}-{}", if group.ipv6 { "ipv6" } else { "ipv4" }, group.port),
    }
}

fn plan_slices(groups: &[Group], current: &[Value], writes: &mut Vec<Write>) {
    let resource = endpoint_slices();
    let labels = json!({SERVICE_NAME_LABEL: NAME});
    let mut wanted: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let endpoints: Vec<Value> =
                g.ips.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect();
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name(i, g), "namespace": NAMESPACE, "labels": labels},
                "addressType": if g.ipv6 { "IPv6" } else { "IPv4" }, "endpoints": endpoints,
                "ports": [endpoint_port(g.port)]})
        })
        .collect();
    if wanted.is_empty() {
        wanted.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "addressType": "IPv4", "endpoints": [], "ports": []}));
    }
    for slice in &mut wanted {
        (resource.defaults)(slice);
    }
    let name_of = |v: &Value| v["metadata"]["name"].as_str().unwrap_or_default().to_string();
    for slice in current {
        let name = name_of(slice);
        let replaceable = wanted.iter().any(|w| name_of(w) == name && w["addressType"] == slice["addressType"]);
        if !replaceable {
            // Not wanted, or of another address family, which a slice cannot change: created anew next pass.
            let uid = slice["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            writes.push(Write::Delete { resource, name, uid });
        }
    }
    for slice in wanted {
        let name = name_of(&slice);
        match current.iter().find(|c| name_of(c) == name) {
            None => writes.push(Write::Create { resource, object: slice }),
            Some(c) if c["addressType"] != slice["addressType"] => {}
            Some(c)
                if c["endpoints"] == slice["endpoints"] && c["ports"] == slice["ports"] && has_labels(c, &labels) => {}
            Some(c) => {
                let mut object = with_labels(c, &labels);
                object["endpoints"] = slice["endpoints"].clone();
                object["ports"] = slice["ports"].clone();
                writes.push(Write::Replace { resource, object });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

    fn replica(addr: &str, heard: Heard) -> Replica {
        Replica { api_addr: Some(addr.parse().unwrap()), heard }
    }

    fn three(port_step: u16) -> Vec<Replica> {
        (0..3u16)
            .map(|i| {
                let heard = if i == 0 { Heard::Leading } else { Heard::Ago(Duration::from_millis(40)) };
                replica(&format!("10.0.0.{}:{}", i + 1, 6443 + i * port_step), heard)
            })
            .collect()
    }

    /// What the API server stores for a written object: the write with a uid and a resourceVersion.
    fn stored(object: &Value) -> Value {
        let mut object = object.clone();
        object["metadata"]["uid"] = json!(format!("uid-{}", object["metadata"]["name"].as_str().unwrap()));
        object["metadata"]["resourceVersion"] = json!("7");
        object
    }

    /// The objects after `writes` were made on `current`.
    fn applied(mut current: Current, writes: &[Write]) -> Current {
        for write in writes {
            match write {
                Write::Create { resource, object } | Write::Replace { resource, object } => match resource.kind {
                    "Service" => current.service = Some(stored(object)),
                    "Endpoints" => current.endpoints = Some(stored(object)),
                    _ => {
                        current.slices.retain(|s| s["metadata"]["name"] != object["metadata"]["name"]);
                        current.slices.push(stored(object));
                    }
                },
                Write::Delete { name, .. } => current.slices.retain(|s| s["metadata"]["name"] != *name),
            }
        }
        current
    }

    #[test]
    fn a_new_cluster_gets_the_service_its_endpoints_and_its_slice_then_nothing_more() {
        let desired = desired(IP, &three(0), Duration::from_secs(1));
        assert_eq!(desired.target_port, 6443);
        let writes = plan(&desired, &Current::default());
        assert_eq!(writes.len(), 3, "{writes:#?}");
        let Write::Create { object: service, .. } = &writes[0] else { panic!("{writes:?}") };
        assert_eq!(service["metadata"]["labels"], json!({"component": "apiserver", "provider": "kubernetes"}));
        assert_eq!(service["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(
            service["spec"]["ports"],
            json!([{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}])
        );
        let Write::Create { object: endpoints, .. } = &writes[1] else { panic!("{writes:?}") };
        assert_eq!(
            endpoints["subsets"],
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        );
        assert_eq!(endpoints["metadata"]["labels"][SKIP_MIRROR_LABEL], "true");
        let Write::Create { object: slice, .. } = &writes[2] else { panic!("{writes:?}") };
        assert_eq!(slice["metadata"]["name"], "kubernetes");
        assert_eq!(slice["metadata"]["labels"], json!({SERVICE_NAME_LABEL: "kubernetes"}));
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 3);
        assert_eq!(slice["endpoints"][0], json!({"addresses": ["10.0.0.1"], "conditions": {"ready": true}}));

        let current = applied(Current::default(), &writes);
        assert_eq!(plan(&desired, &current), []);
    }

    #[test]
    fn replicas_on_one_host_get_a_subset_and_a_slice_per_port() {
        let desired = desired(IP, &three(1), Duration::from_secs(1));
        assert_eq!(desired.target_port, 6443, "the lowest of equally shared ports");
        let current = applied(Current::default(), &plan(&desired, &Current::default()));
        let subsets = current.endpoints.as_ref().unwrap()["subsets"].as_array().unwrap().clone();
        let ports: Vec<&Value> = subsets.iter().map(|s| &s["ports"][0]["port"]).collect();
        assert_eq!(ports, [6443, 6444, 6445]);
        let mut names: Vec<&str> = current.slices.iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["kubernetes", "kubernetes-ipv4-6444", "kubernetes-ipv4-6445"]);
        assert_eq!(plan(&desired, &current), []);
    }

    #[test]
    fn a_silent_follower_is_left_out_and_its_slice_deleted() {
        let before = desired(IP, &three(1), Duration::from_secs(60));
        let current = applied(Current::default(), &plan(&before, &Current::default()));
        let mut replicas = three(1);
        replicas[2].heard = Heard::Ago(Duration::from_millis(limits::API_SERVER_SILENCE_MS + 1));
        let after = desired(IP, &replicas, Duration::from_secs(60));
        assert_eq!(after.servers.len(), 2);
        assert_eq!(after.target_port, before.target_port, "the Service does not move with liveness");
        let writes = plan(&after, &current);
        assert!(writes.contains(&Write::Delete {
            resource: endpoint_slices(),
            name: "kubernetes-ipv4-6445".into(),
            uid: "uid-kubernetes-ipv4-6445".into()
        }));
        let Some(Write::Replace { object, .. }) = writes.iter().find(|w| matches!(w, Write::Replace { .. })) else {
            panic!("{writes:?}")
        };
        assert_eq!(object["subsets"].as_array().unwrap().len(), 2);
        assert_eq!(object["metadata"]["resourceVersion"], "7", "replaced on the version read");
        assert_eq!(plan(&after, &applied(current, &writes)), []);
    }

    #[test]
    fn a_new_leader_keeps_followers_it_has_not_heard_from_for_a_while() {
        let mut replicas = three(0);
        replicas[1].heard = Heard::Never;
        assert_eq!(desired(IP, &replicas, Duration::from_millis(10)).servers.len(), 3);
        let late = Duration::from_millis(limits::API_SERVER_SILENCE_MS);
        assert_eq!(desired(IP, &replicas, late).servers.len(), 2);
        replicas[2].api_addr = None;
        assert_eq!(desired(IP, &replicas, Duration::ZERO).servers.len(), 2, "unpublished addresses are not listed");
    }

    #[test]
    fn the_service_gets_its_ports_and_type_back_and_keeps_the_rest() {
        let desired = desired(IP, &three(0), Duration::ZERO);
        let current = applied(Current::default(), &plan(&desired, &Current::default()));
        let mut changed = current.clone();
        let service = changed.service.as_mut().unwrap();
        service["spec"]["type"] = json!("NodePort");
        service["spec"]["ports"][0]["nodePort"] = json!(30443);
        service["metadata"]["labels"]["team"] = json!("a");
        let writes = plan(&desired, &changed);
        let [Write::Replace { object, .. }] = writes.as_slice() else { panic!("{writes:?}") };
        assert_eq!(object["spec"]["type"], "ClusterIP");
        assert_eq!(object["spec"]["ports"], current.service.as_ref().unwrap()["spec"]["ports"]);
        assert_eq!(object["metadata"]["labels"]["team"], "a");
    }

    #[test]
    fn a_slice_of_the_wrong_family_is_deleted_before_it_is_made_again() {
        let desired = desired(IP, &three(0), Duration::ZERO);
        let mut current = applied(Current::default(), &plan(&desired, &Current::default()));
        current.slices[0]["addressType"] = json!("IPv6");
        let writes = plan(&desired, &current);
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert!(matches!(&writes[0], Write::Delete { name, .. } if name == "kubernetes"));
        current.slices.clear();
        assert!(matches!(&plan(&desired, &current)[..], [Write::Create { .. }]));
    }
}
