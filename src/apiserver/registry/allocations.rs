//! Cluster IPs and node ports of Services: what a Service holds, how free ones are chosen, and what an update
//! keeps.
//!
//! Each allocated IP or port is a key of its own in the store (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`), claimed in the same transaction that writes the Service, with
//! the condition that the key is absent, and released in the same transaction that deletes it or gives it
//! up. So two Services can never hold the same IP or port, whichever replicas created them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

pub const SERVICE_IPS_PREFIX: &str = "/registry/ranges/serviceips/";
pub const NODE_PORTS_PREFIX: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;
/// The API's own Service, through which clients inside the cluster reach it.
pub const KUBERNETES_SERVICE: &str = "kubernetes";
pub const KUBERNETES_SERVICE_NAMESPACE: &str = "default";

/// An IPv4 range for cluster IPs, `10.96.0.0/16` style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRange {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for ServiceRange {
    type Err = String;
    fn from_str(s: &str) -> Result<ServiceRange, String> {
        let bad = || format!("{s:?} is not an IPv4 CIDR range with a prefix from /8 to /28, like 10.96.0.0/16");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=28).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceRange { base: Ipv4Addr::from(u32::from(ip) & mask), prefix })
    }
}

impl Default for ServiceRange {
    fn default() -> Self {
        ServiceRange { base: Ipv4Addr::new(10, 96, 0, 0), prefix: 16 }
    }
}

impl ServiceRange {
    /// Usable addresses: the network and broadcast addresses are skipped.
    fn size(self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The first usable address, which only the API's own `kubernetes` Service may hold, as upstream reserves
    /// it: no other Service is given it or may ask for it, whichever is created first.
    pub fn kubernetes_ip(self) -> Ipv4Addr {
        self.nth(0)
    }

    /// The tenth address, where the cluster DNS is served (`apis::cluster_dns`), as kubeadm places it.
    pub fn cluster_dns_ip(self) -> Ipv4Addr {
        self.nth(9)
    }

    fn nth(self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1 + i)
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.base));
        offset >= 1 && offset <= self.size()
    }
}

pub fn ip_key(ip: &str) -> String {
    format!("{SERVICE_IPS_PREFIX}{ip}")
}

pub fn node_port_key(port: i64) -> String {
    format!("{NODE_PORTS_PREFIX}{port}")
}

fn wants_cluster_ip(service: &Value) -> bool {
    service["spec"]["type"].as_str() != Some("ExternalName") && service["spec"]["clusterIP"].as_str() != Some("None")
}

/// The API's own Service, `default/kubernetes`, the only one that may hold the range's first address.
fn is_kubernetes_service(service: &Value) -> bool {
    service["metadata"]["namespace"] == KUBERNETES_SERVICE_NAMESPACE
        && service["metadata"]["name"] == KUBERNETES_SERVICE
}

fn wants_node_ports(service: &Value) -> bool {
    matches!(service["spec"]["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

/// The allocation keys a Service holds.
pub fn held(service: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Some(ip) = service["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None") {
        keys.insert(ip_key(ip));
    }
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(p) = port["nodePort"].as_i64().filter(|p| *p > 0) {
            keys.insert(node_port_key(p));
        }
    }
    keys
}

/// On update, what the client left out keeps its allocated value (upstream's `patchAllocatedValues`): the
/// cluster IP, and the node port of a port that still exists.
pub fn carry_over(old: &Value, new: &mut Value) {
    if wants_cluster_ip(new) && new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
        if let Some(ip) = old["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty()) {
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = json!([ip]);
        }
    }
    if !wants_node_ports(new) {
        return;
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    for port in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
        if port["nodePort"].as_i64().is_some_and(|p| p > 0) {
            continue;
        }
        let same = old_ports.iter().find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"]);
        if let Some(p) = same.and_then(|o| o["nodePort"].as_i64()).filter(|p| *p > 0) {
            port["nodePort"] = json!(p);
        }
    }
}

/// Why a Service's allocation cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("spec.clusterIP: Invalid value: {0:?}: provided IP is not in the valid range")]
    OutOfRange(String),
    #[error(
        "spec.clusterIPs: Invalid value: {0:?}: provided IP is reserved for the API's own Service default/kubernetes"
    )]
    Reserved(String),
    #[error("spec.clusterIPs: Internal error: range is full")]
    IpsExhausted,
    #[error("spec.ports[{0}].nodePort: Internal error: range is full")]
    PortsExhausted(usize),
    #[error("spec.ports[{index}].nodePort: Invalid value: {port}: provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}")]
    PortOutOfRange { index: usize, port: i64 },
}

/// Fills in a cluster IP and node ports the Service needs and does not have, avoiding `taken` (allocation
/// keys already held); `pick(n)` chooses a start offset in `0..n` (random in production).
pub fn assign(
    service: &mut Value,
    range: ServiceRange,
    taken: &BTreeSet<String>,
    mut pick: impl FnMut(u32) -> u32,
) -> Result<(), AllocationError> {
    if wants_cluster_ip(service) {
        match service["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty()) {
            Some(ip) => {
                let parsed: Option<Ipv4Addr> = ip.parse().ok();
                if !parsed.is_some_and(|p| range.contains(p)) {
                    return Err(AllocationError::OutOfRange(ip.to_string()));
                }
                if parsed == Some(range.kubernetes_ip()) && !is_kubernetes_service(service) {
                    return Err(AllocationError::Reserved(ip.to_string()));
                }
            }
            None => {
                // Chosen among every address but the first.
                let size = range.size() - 1;
                let start = pick(size);
                let ip = (0..size)
                    .map(|i| range.nth(1 + (start + i) % size))
                    .map(|ip| ip.to_string())
                    .find(|ip| !taken.contains(&ip_key(ip)))
                    .ok_or(AllocationError::IpsExhausted)?;
                service["spec"]["clusterIP"] = json!(ip);
                service["spec"]["clusterIPs"] = json!([ip]);
            }
        }
    }
    if wants_node_ports(service) {
        // Ports the client asked for are taken first, so a port chosen for another entry never collides.
        let mut used: BTreeSet<String> = taken.clone();
        for (index, port) in service["spec"]["ports"].as_array().into_iter().flatten().enumerate() {
            if let Some(p) = port["nodePort"].as_i64().filter(|p| *p != 0) {
                if !(i64::from(NODE_PORT_MIN)..=i64::from(NODE_PORT_MAX)).contains(&p) {
                    return Err(AllocationError::PortOutOfRange { index, port: p });
                }
                used.insert(node_port_key(p));
            }
        }
        let count = u32::from(NODE_PORT_MAX - NODE_PORT_MIN) + 1;
        for (index, port) in service["spec"]["ports"].as_array_mut().into_iter().flatten().enumerate() {
            if port["nodePort"].as_i64().is_some_and(|p| p != 0) {
                continue;
            }
            let start = pick(count);
            let p = (0..count)
                .map(|i| i64::from(NODE_PORT_MIN) + i64::from((start + i) % count))
                .find(|p| !used.contains(&node_port_key(*p)))
                .ok_or(AllocationError::PortsExhausted(index))?;
            used.insert(node_port_key(p));
            port["nodePort"] = json!(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_skip_network_and_broadcast_addresses() {
        let r: ServiceRange = "10.96.3.7/16".parse().unwrap();
        assert_eq!(r.base, Ipv4Addr::new(10, 96, 0, 0));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(r.contains(Ipv4Addr::new(10, 96, 0, 1)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 255, 255)));
        assert!(!r.contains(Ipv4Addr::new(10, 97, 0, 1)));
        assert!("10.96.0.0".parse::<ServiceRange>().is_err());
        assert!("10.96.0.0/30".parse::<ServiceRange>().is_err());
    }

    #[test]
    fn free_ips_and_ports_are_assigned_around_what_is_taken() {
        let range: ServiceRange = "10.0.0.0/28".parse().unwrap();
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "nodePort": 30001}]}});
        let taken: BTreeSet<String> = [ip_key("10.0.0.1"), node_port_key(30000)].into();
        assign(&mut svc, range, &taken, |_| 0).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.0.0.2");
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30002);
        assert_eq!(held(&svc), [ip_key("10.0.0.2"), node_port_key(30001), node_port_key(30002)].into());
    }

    #[test]
    fn only_the_kubernetes_service_holds_the_first_address() {
        let range: ServiceRange = "10.0.0.0/28".parse().unwrap();
        assert_eq!(range.kubernetes_ip(), Ipv4Addr::new(10, 0, 0, 1));
        // Whatever the random start, a Service that asks for no address never gets the first one, even when it
        // is the only one not taken.
        let others: BTreeSet<String> = (3..=14).map(|i| ip_key(&format!("10.0.0.{i}"))).collect();
        for start in 0..20 {
            let mut svc =
                json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"ports": [{"port": 80}]}});
            assign(&mut svc, range, &others, |n| start % n).unwrap();
            assert_eq!(svc["spec"]["clusterIP"], "10.0.0.2", "start {start}");
        }
        let full: BTreeSet<String> = (2..=14).map(|i| ip_key(&format!("10.0.0.{i}"))).collect();
        let mut svc = json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(assign(&mut svc, range, &full, |_| 0), Err(AllocationError::IpsExhausted));
        // Asking for it is refused, in any namespace, unless it is default/kubernetes asking.
        for (namespace, name) in [("default", "web"), ("team-a", "kubernetes"), ("kube-system", "kubernetes")] {
            let mut svc = json!({"metadata": {"namespace": namespace, "name": name},
                "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}});
            assert_eq!(
                assign(&mut svc, range, &BTreeSet::new(), |_| 0),
                Err(AllocationError::Reserved("10.0.0.1".into())),
                "{namespace}/{name}"
            );
        }
        let mut api = json!({"metadata": {"namespace": "default", "name": "kubernetes"},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 443}]}});
        assign(&mut api, range, &BTreeSet::new(), |_| 0).unwrap();
        assert_eq!(held(&api), [ip_key("10.0.0.1")].into());
    }

    #[test]
    fn headless_and_external_name_services_hold_nothing() {
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        assign(&mut headless, ServiceRange::default(), &BTreeSet::new(), |_| 0).unwrap();
        assert!(held(&headless).is_empty());
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "x.example"}});
        assign(&mut external, ServiceRange::default(), &BTreeSet::new(), |_| 0).unwrap();
        assert!(held(&external).is_empty());
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut outside = json!({"spec": {"clusterIP": "192.168.0.1"}});
        assert!(matches!(
            assign(&mut outside, ServiceRange::default(), &BTreeSet::new(), |_| 0),
            Err(AllocationError::OutOfRange(_))
        ));
        let mut port = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        assert!(matches!(
            assign(&mut port, ServiceRange::default(), &BTreeSet::new(), |_| 0),
            Err(AllocationError::PortOutOfRange { .. })
        ));
        let full: BTreeSet<String> = (1..=14).map(|i| ip_key(&format!("10.0.0.{i}"))).collect();
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(assign(&mut svc, "10.0.0.0/28".parse().unwrap(), &full, |_| 3), Err(AllocationError::IpsExhausted));
    }

    #[test]
    fn updates_keep_what_the_client_left_out() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 90, "protocol": "TCP"}]}});
        carry_over(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());
    }
}
