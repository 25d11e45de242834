//! The cluster's names, as Kubernetes' DNS specification gives them (pure): what the agent's DNS server answers
//! for a name under the cluster domain or a reverse name of a service or endpoint address.
//!
//! - `<service>.<namespace>.svc.<domain>`: A/AAAA of the cluster IPs; for a headless Service, of its ready
//!   endpoints' addresses.
//! - `<hostname>.<service>.<namespace>.svc.<domain>`: a headless Service's endpoint that has a hostname (a
//!   StatefulSet's pod through its governing Service: `db-0.db.default.svc.cluster.local`).
//! - `_<port>._<protocol>.<service>.<namespace>.svc.<domain>`: SRV of a named port, to the Service's name (port
//!   of the Service), or for a headless Service to each ready endpoint's name (port of the endpoint).
//! - `<a>-<b>-<c>-<d>.<namespace>.pod.<domain>`: A of that address (upstream's `pods insecure`).
//! - PTR of a cluster IP (the Service's name) and of a headless endpoint with a hostname (its name).
//!
//! A name that exists with no record of the asked type answers empty (NODATA); a name under the domain that
//! does not exist answers NXDOMAIN. Names are compared in lower case.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::apiserver::registry::allocations::ServiceRange;
use crate::controllers::kubernetes_service::SERVICE_NAME_LABEL;

/// A record's data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    Address(IpAddr),
    /// SRV: port and target name.
    Service {
        port: u16,
        target: String,
    },
    Pointer(String),
}

/// What the server answers for one name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is not the cluster's: ask the host's resolvers.
    Elsewhere,
    NxDomain,
    /// The records (none: the name exists without records of that type).
    Records(Vec<Data>),
}

/// The record types the zone knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    A,
    Aaaa,
    Srv,
    Ptr,
    /// Any other type: the name's existence is all there is to say.
    Other,
}

/// The cluster's names, built from Services and EndpointSlices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Zone {
    domain: String,
    /// Every name under the domain with its records (names in lower case, without the final dot).
    names: HashMap<String, BTreeSet<Data>>,
    /// Reverse names (`...in-addr.arpa`, `...ip6.arpa`) with their PTR targets.
    reverse: HashMap<String, BTreeSet<String>>,
    /// The service range, whose reverse names are the zone's alone (NXDOMAIN when unknown, never forwarded).
    service_range: Option<ServiceRange>,
}

impl Zone {
    pub fn build(
        domain: &str,
        service_range: Option<ServiceRange>,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Zone {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut zone = Zone { domain: domain.clone(), service_range, ..Zone::default() };
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            by_service.entry((namespace, name.as_str())).or_default().push(slice);
        }
        for service in services {
            let (Some(name), Some(spec)) = (service.metadata.name.as_deref(), service.spec.as_ref()) else { continue };
            let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
            let fqdn = format!("{name}.{namespace}.svc.{domain}").to_ascii_lowercase();
            zone.names.entry(format!("{namespace}.svc.{domain}").to_ascii_lowercase()).or_default();
            zone.names.entry(format!("svc.{domain}")).or_default();
            let headless = spec.cluster_ip.as_deref() == Some("None");
            if spec.type_.as_deref() == Some("ExternalName") {
                zone.names.entry(fqdn).or_default();
                continue;
            }
            let named_ports: Vec<(&str, &str, u16)> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let port_name = p.name.as_deref().filter(|n| !n.is_empty())?;
                    Some((port_name, p.protocol.as_deref().unwrap_or("TCP"), u16::try_from(p.port).ok()?))
                })
                .collect();
            if !headless {
                let ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.iter())
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                for ip in &ips {
                    zone.add(&fqdn, Data::Address(*ip));
                    zone.reverse.entry(reverse_name(*ip)).or_default().insert(fqdn.clone());
                }
                for (port_name, protocol, port) in &named_ports {
                    let srv = format!("_{port_name}._{}.{fqdn}", protocol.to_ascii_lowercase());
                    zone.add(&srv, Data::Service { port: *port, target: fqdn.clone() });
                }
                zone.names.entry(fqdn).or_default();
                continue;
            }
            zone.names.entry(fqdn.clone()).or_default();
            for slice in by_service.get(&(namespace, name)).into_iter().flatten() {
                for endpoint in &slice.endpoints {
                    let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if !ready {
                        continue;
                    }
                    for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                        zone.add(&fqdn, Data::Address(ip));
                        let host = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                        let host_fqdn = format!("{host}.{fqdn}").to_ascii_lowercase();
                        zone.add(&host_fqdn, Data::Address(ip));
                        if endpoint.hostname.is_some() {
                            zone.reverse.entry(reverse_name(ip)).or_default().insert(host_fqdn.clone());
                        }
                        for (port_name, protocol, _) in &named_ports {
                            let Some(target_port) = slice
                                .ports
                                .iter()
                                .flatten()
                                .find_map(|p| (p.name.as_deref() == Some(port_name)).then_some(p.port).flatten())
                            else {
                                continue;
                            };
                            let srv = format!("_{port_name}._{}.{fqdn}", protocol.to_ascii_lowercase());
                            let port = u16::try_from(target_port).unwrap_or_default();
                            zone.add(&srv, Data::Service { port, target: host_fqdn.clone() });
                        }
                    }
                }
            }
        }
        zone
    }

    fn add(&mut self, name: &str, data: Data) {
        self.names.entry(name.to_owned()).or_default().insert(data);
    }

    /// The answer for `name` (with or without its final dot) and `kind`.
    pub fn answer(&self, name: &str, kind: Kind) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa") {
            return match self.reverse.get(&name) {
                Some(targets) if kind == Kind::Ptr => {
                    Answer::Records(targets.iter().map(|t| Data::Pointer(t.clone())).collect())
                }
                Some(_) => Answer::Records(Vec::new()),
                None if self.in_service_range(&name) => Answer::NxDomain,
                None => Answer::Elsewhere,
            };
        }
        if name != self.domain && !name.ends_with(&format!(".{}", self.domain)) {
            return Answer::Elsewhere;
        }
        if let Some(address) = self.pod_address(&name) {
            let wanted = matches!((kind, address), (Kind::A, IpAddr::V4(_)) | (Kind::Aaaa, IpAddr::V6(_)));
            return Answer::Records(if wanted { vec![Data::Address(address)] } else { Vec::new() });
        }
        let Some(records) = self.names.get(&name) else {
            let exists = name == self.domain || name == format!("pod.{}", self.domain);
            return if exists { Answer::Records(Vec::new()) } else { Answer::NxDomain };
        };
        Answer::Records(
            records
                .iter()
                .filter(|d| {
                    matches!(
                        (kind, d),
                        (Kind::A, Data::Address(IpAddr::V4(_)))
                            | (Kind::Aaaa, Data::Address(IpAddr::V6(_)))
                            | (Kind::Srv, Data::Service { .. })
                    )
                })
                .cloned()
                .collect(),
        )
    }

    /// Whether a reverse name is of an address of the service range.
    fn in_service_range(&self, name: &str) -> bool {
        let Some(range) = self.service_range else { return false };
        let Some(octets) = name.strip_suffix(".in-addr.arpa") else { return false };
        let mut parts: Vec<&str> = octets.split('.').collect();
        parts.reverse();
        parts.join(".").parse::<std::net::Ipv4Addr>().is_ok_and(|ip| range.contains(ip))
    }

    /// The address a `<a>-<b>-<c>-<d>.<namespace>.pod.<domain>` name spells.
    fn pod_address(&self, name: &str) -> Option<IpAddr> {
        let rest = name.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (dashed, _namespace) = rest.split_once('.')?;
        dashed.replace('-', ".").parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// An address as a DNS label: `10-88-0-5`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The reverse-lookup name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> =
                v6.octets().iter().rev().flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)]).collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
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

    fn slice(service: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": format!("{service}-x"), "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: service}}, "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}], "endpoints": endpoints}))
            .unwrap(),
        )
    }

    fn zone() -> Zone {
        let services = [
            service("web", json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]})),
            service("db", json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]})),
        ];
        let slices = [slice(
            "db",
            json!([{"addresses": ["10.88.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
                   {"addresses": ["10.88.0.8"], "hostname": "db-1", "conditions": {"ready": false}},
                   {"addresses": ["10.88.0.9"], "conditions": {"ready": true}}]),
        )];
        Zone::build("cluster.local", Some("10.96.0.0/16".parse().unwrap()), &services, &slices)
    }

    fn addresses(ips: &[&str]) -> Answer {
        Answer::Records(ips.iter().map(|ip| Data::Address(ip.parse().unwrap())).collect())
    }

    #[test]
    fn services_resolve_to_their_cluster_ip_and_headless_ones_to_their_ready_endpoints() {
        let zone = zone();
        assert_eq!(zone.answer("web.default.svc.cluster.local.", Kind::A), addresses(&["10.96.0.20"]));
        assert_eq!(zone.answer("WEB.Default.svc.cluster.local", Kind::A), addresses(&["10.96.0.20"]));
        assert_eq!(zone.answer("web.default.svc.cluster.local", Kind::Aaaa), Answer::Records(vec![]), "NODATA");
        assert_eq!(zone.answer("db.default.svc.cluster.local", Kind::A), addresses(&["10.88.0.7", "10.88.0.9"]));
        assert_eq!(zone.answer("db-0.db.default.svc.cluster.local", Kind::A), addresses(&["10.88.0.7"]));
        assert_eq!(zone.answer("10-88-0-9.db.default.svc.cluster.local", Kind::A), addresses(&["10.88.0.9"]));
        assert_eq!(zone.answer("db-1.db.default.svc.cluster.local", Kind::A), Answer::NxDomain, "not ready");
        assert_eq!(zone.answer("missing.default.svc.cluster.local", Kind::A), Answer::NxDomain);
        assert_eq!(zone.answer("default.svc.cluster.local", Kind::A), Answer::Records(vec![]));
        assert_eq!(zone.answer("10-1-2-3.default.pod.cluster.local", Kind::A), addresses(&["10.1.2.3"]));
        assert_eq!(zone.answer("example.com", Kind::A), Answer::Elsewhere);
    }

    #[test]
    fn named_ports_have_srv_records_and_addresses_have_ptr_records() {
        let zone = zone();
        let target = "web.default.svc.cluster.local".to_owned();
        assert_eq!(
            zone.answer("_http._tcp.web.default.svc.cluster.local", Kind::Srv),
            Answer::Records(vec![Data::Service { port: 80, target }])
        );
        let Answer::Records(srv) = zone.answer("_pg._tcp.db.default.svc.cluster.local", Kind::Srv) else { panic!() };
        assert!(srv.contains(&Data::Service { port: 5432, target: "db-0.db.default.svc.cluster.local".into() }));
        assert_eq!(srv.len(), 2);
        assert_eq!(
            zone.answer("20.0.96.10.in-addr.arpa", Kind::Ptr),
            Answer::Records(vec![Data::Pointer("web.default.svc.cluster.local".into())])
        );
        assert_eq!(
            zone.answer("7.0.88.10.in-addr.arpa.", Kind::Ptr),
            Answer::Records(vec![Data::Pointer("db-0.db.default.svc.cluster.local".into())])
        );
        assert_eq!(zone.answer("1.1.1.10.in-addr.arpa", Kind::Ptr), Answer::Elsewhere);
        assert_eq!(zone.answer("9.9.96.10.in-addr.arpa", Kind::Ptr), Answer::NxDomain, "the service range's");
        assert!(reverse_name("::1".parse().unwrap()).starts_with("1.0.0.0."));
    }
}
