//! What the service proxy forwards, as kube-proxy decides it (pure): for every port of every Service that has a
//! cluster IP, a frontend on each cluster IP, and one on every node address for its `nodePort`; each frontend's
//! backends are the endpoints of the Service's EndpointSlices (any slice labelled with its name, the
//! controller's or a user's) for the port of the same name and protocol.
//!
//! Which endpoints take new connections: the ready ones; when none is ready, the ones still serving while they
//! terminate (kube-proxy's fallback, so that a rolling update does not drop traffic). `internalTrafficPolicy:
//! Local` keeps a cluster IP's endpoints to this node's, `externalTrafficPolicy: Local` a node port's. Every
//! endpoint a slice lists, whatever its conditions, keeps the connections it has: a connection is closed when
//! its endpoint has left the slices (its pod is gone), not while it terminates.
//!
//! Left out: headless Services and ExternalName Services (nothing to forward), Services labelled
//! `service.kubernetes.io/service-proxy-name` (another proxy's), ports of other protocols than TCP and UDP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::kubernetes_service::SERVICE_NAME_LABEL;

use crate::apis::cluster_dns::PROXY_NAME_LABEL;
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset: three hours, as upstream.
const AFFINITY_TIMEOUT_DEFAULT_SECS: u64 = 10_800;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Where the proxy listens: a cluster IP, or every address of the node (a node port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// `None` for a node port.
    pub address: Option<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
}

/// One endpoint: where to connect, and the pod it is (whose connections the proxy counts).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub pod_uid: Option<String>,
}

/// Where one frontend forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// `namespace/name:port-name`, for logs.
    pub service: String,
    /// The endpoints new connections go to, in a fixed order.
    pub endpoints: Vec<Endpoint>,
    /// With `sessionAffinity: ClientIP`: how long a client sticks to its endpoint after its last connection.
    pub affinity: Option<Duration>,
}

/// Every frontend with its backend, and every endpoint address any slice lists (those keep their connections).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub frontends: BTreeMap<Frontend, Arc<Backend>>,
    pub listed: BTreeSet<SocketAddr>,
}

impl Table {
    /// Whether a connection to `address` through `frontend` may stay open.
    pub fn keeps(&self, address: &SocketAddr) -> bool {
        self.listed.contains(address)
    }
}

/// One endpoint of a slice for one port, with what decides whether it takes new connections.
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving_terminating: bool,
    local: bool,
}

/// The table of `services` and `slices` for the node `node`.
pub fn table(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], node: &str) -> Table {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        by_service.entry((namespace, name.as_str())).or_default().push(slice);
    }
    let mut table = Table::default();
    for slice in slices {
        for endpoint in &slice.endpoints {
            for port in slice.ports.iter().flatten().filter_map(|p| p.port) {
                for address in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    if let Ok(port) = u16::try_from(port) {
                        table.listed.insert(SocketAddr::new(address, port));
                    }
                }
            }
        }
    }
    for service in services {
        let Some(spec) = service.spec.as_ref() else { continue };
        let labels = service.metadata.labels.as_ref();
        if labels.is_some_and(|l| l.contains_key(PROXY_NAME_LABEL)) || spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if cluster_ips.is_empty() {
            continue;
        }
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let slices = by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
            let seconds =
                config.and_then(|c| c.timeout_seconds).map_or(AFFINITY_TIMEOUT_DEFAULT_SECS, |s| s.max(1) as u64);
            Duration::from_secs(seconds)
        });
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        for port in spec.ports.iter().flatten() {
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => continue,
            };
            let Ok(number) = u16::try_from(port.port) else { continue };
            let candidates = candidates(slices, port, node);
            let backend = |local_only: bool| {
                Arc::new(Backend {
                    service: format!("{namespace}/{name}:{}", port.name.as_deref().unwrap_or_default()),
                    endpoints: chosen(&candidates, local_only),
                    affinity,
                })
            };
            let cluster = backend(internal_local);
            for ip in &cluster_ips {
                table.frontends.insert(Frontend { address: Some(*ip), port: number, protocol }, cluster.clone());
            }
            if let Some(node_port) = port.node_port.filter(|_| node_ports).and_then(|p| u16::try_from(p).ok()) {
                let frontend = Frontend { address: None, port: node_port, protocol };
                table.frontends.insert(frontend, backend(external_local));
            }
        }
    }
    table
}

/// The endpoints of `slices` for the Service port `port`, once each.
fn candidates(slices: &[&EndpointSlice], port: &ServicePort, node: &str) -> Vec<Candidate> {
    let name = port.name.as_deref().unwrap_or_default();
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut seen = BTreeSet::new();
    let mut candidates = Vec::new();
    for slice in slices {
        let Some(target) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == name && p.protocol.as_deref().unwrap_or("TCP") == protocol
        }) else {
            continue;
        };
        let Some(number) = target.port.and_then(|p| u16::try_from(p).ok()) else { continue };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // Unset conditions mean ready and serving, as upstream reads them.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let local = endpoint.node_name.as_deref() == Some(node);
            let pod_uid = endpoint.target_ref.as_ref().and_then(|r| r.uid.clone());
            for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                let address = SocketAddr::new(ip, number);
                if seen.insert(address) {
                    candidates.push(Candidate {
                        endpoint: Endpoint { address, pod_uid: pod_uid.clone() },
                        ready,
                        serving_terminating: serving && terminating,
                        local,
                    });
                }
            }
        }
    }
    candidates
}

/// The endpoints that take new connections: the ready ones, else those serving while they terminate; with
/// `local_only`, of this node only.
fn chosen(candidates: &[Candidate], local_only: bool) -> Vec<Endpoint> {
    let eligible: Vec<&Candidate> = candidates.iter().filter(|c| !local_only || c.local).collect();
    let ready: Vec<Endpoint> = eligible.iter().filter(|c| c.ready).map(|c| c.endpoint.clone()).collect();
    let mut chosen = match ready.is_empty() {
        true => eligible.iter().filter(|c| c.serving_terminating).map(|c| c.endpoint.clone()).collect(),
        false => ready,
    };
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})).unwrap(),
        )
    }

    fn slice(service: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-x"), "namespace": "default",
                    "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4", "ports": ports, "endpoints": endpoints}))
            .unwrap(),
        )
    }

    fn endpoint(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> serde_json::Value {
        json!({"addresses": [ip], "nodeName": node, "targetRef": {"kind": "Pod", "uid": format!("uid-{ip}")},
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    }

    fn addresses(backend: &Backend) -> Vec<String> {
        backend.endpoints.iter().map(|e| e.address.to_string()).collect()
    }

    #[test]
    fn cluster_ips_and_node_ports_forward_to_the_ready_endpoints_of_their_port() {
        let services = [service(
            "web",
            json!({"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )];
        let slices = [slice(
            "web",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([
                endpoint("10.88.0.3", "n1", true, true, false),
                endpoint("10.88.0.2", "n2", true, true, false),
                endpoint("10.88.0.4", "n1", false, false, false)
            ]),
        )];
        let table = table(&services, &slices, "n1");
        let cluster = Frontend { address: Some("10.96.0.5".parse().unwrap()), port: 80, protocol: Protocol::Tcp };
        assert_eq!(addresses(&table.frontends[&cluster]), ["10.88.0.2:8080", "10.88.0.3:8080"]);
        assert_eq!(table.frontends[&cluster].endpoints[0].pod_uid.as_deref(), Some("uid-10.88.0.2"));
        assert_eq!(table.frontends[&cluster].service, "default/web:http");
        let node_port = Frontend { address: None, port: 30080, protocol: Protocol::Tcp };
        assert_eq!(addresses(&table.frontends[&node_port]), ["10.88.0.2:8080", "10.88.0.3:8080"]);
        let dns = Frontend { address: Some("10.96.0.5".parse().unwrap()), port: 53, protocol: Protocol::Udp };
        assert_eq!(addresses(&table.frontends[&dns]), ["10.88.0.2:5353", "10.88.0.3:5353"]);
        assert_eq!(table.frontends.len(), 3);
        assert!(table.keeps(&"10.88.0.4:8080".parse().unwrap()), "a listed endpoint keeps its connections");
        assert!(!table.keeps(&"10.88.0.9:8080".parse().unwrap()));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready_and_local_policies_keep_to_the_node() {
        let services = [service(
            "web",
            json!({"type": "NodePort", "clusterIP": "10.96.0.5",
            "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP", "ports": [{"port": 80, "nodePort": 30080}]}),
        )];
        let ports = json!([{"name": "", "port": 8080, "protocol": "TCP"}]);
        let both = [slice(
            "web",
            ports.clone(),
            json!([endpoint("10.88.0.2", "n2", true, true, false), endpoint("10.88.0.3", "n1", false, true, true)]),
        )];
        let table = table(&services, &both, "n1");
        let cluster = Frontend { address: Some("10.96.0.5".parse().unwrap()), port: 80, protocol: Protocol::Tcp };
        assert_eq!(addresses(&table.frontends[&cluster]), ["10.88.0.3:8080"], "local: the terminating one serves");
        assert_eq!(table.frontends[&cluster].affinity, Some(Duration::from_secs(AFFINITY_TIMEOUT_DEFAULT_SECS)));
        let everywhere = service("web", json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}));
        let table = super::table(&[everywhere], &both, "n1");
        assert_eq!(addresses(&table.frontends[&cluster]), ["10.88.0.2:8080"], "a ready one is preferred");
    }

    #[test]
    fn headless_external_name_and_other_proxies_services_are_left_out() {
        let mut other = (*service("mine", json!({"clusterIP": "10.96.0.7", "ports": [{"port": 80}]}))).clone();
        other.metadata.labels = Some([(PROXY_NAME_LABEL.to_owned(), "other".to_owned())].into());
        let services = [
            service("db", json!({"clusterIP": "None", "ports": [{"port": 5432}]})),
            service("away", json!({"type": "ExternalName", "externalName": "example.invalid"})),
            Arc::new(other),
            service("sctp", json!({"clusterIP": "10.96.0.8", "ports": [{"port": 80, "protocol": "SCTP"}]})),
        ];
        assert!(table(&services, &[], "n1").frontends.is_empty());
        let empty = table(&[service("web", json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}))], &[], "n1");
        assert!(empty.frontends.values().all(|b| b.endpoints.is_empty()), "a Service without endpoints is listened on");
    }
}
