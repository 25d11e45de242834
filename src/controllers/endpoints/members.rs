//! Which pods back a Service and how, as upstream's endpoint controllers decide it: a pod the Service's selector
//! matches, in its namespace, with an IP, and not finished for good (a pod with restartPolicy Never that
//! failed or succeeded, or OnFailure that succeeded); its conditions (`ready`, `serving`, `terminating`); its
//! hostname when the pod names the Service as its subdomain; and the Service's ports resolved for it (a named
//! `targetPort` is the pod's container port of that name and protocol; a port the pod does not have is left
//! out for that pod).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::apis::selectors::LabelSelector;
use crate::controllers::workloads::pods;

/// The label a zone is read from on the pod's node.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// One port of a Service as one pod serves it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod backing a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub ip: IpAddr,
    /// Ready for traffic: Ready and not terminating, or any pod with `publishNotReadyAddresses`.
    pub ready: bool,
    /// Ready, terminating or not.
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
    pub zone: Option<String>,
    pub hostname: Option<String>,
    pub pod_name: String,
    pub pod_uid: String,
    /// The Service's ports this pod serves, in the Service's order.
    pub ports: Vec<Port>,
}

/// What a Service selects, when the controllers make its endpoints: it has a selector (a Service without one,
/// or with an empty one, which upstream stores as none, has endpoints its user writes).
pub fn selects(service: &Service) -> Option<LabelSelector> {
    let selector = service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    let labels: serde_json::Map<String, serde_json::Value> =
        selector.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    LabelSelector::from_match_labels(&labels).ok()
}

pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// Whether a pod that ended stays out for good: its restart policy will not run it again.
fn finished(pod: &Pod) -> bool {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    matches!((policy, pods::phase(pod)), ("Never", "Failed" | "Succeeded") | ("OnFailure", "Succeeded"))
}

/// The members of `service` among `pods` (its namespace's), ordered by pod name; `zone_of` gives a node's
/// zone.
pub fn members<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    zone_of: impl Fn(&str) -> Option<String>,
) -> Vec<Member> {
    let Some(selector) = selects(service) else { return Vec::new() };
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let mut members: Vec<Member> = pods
        .into_iter()
        .filter(|p| p.metadata.namespace == service.metadata.namespace)
        .filter(|p| selector.matches_labels(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .filter(|p| !finished(p))
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            let spec = pod.spec.as_ref();
            let serving = pods::is_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let node = spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
            let hostname = spec
                .filter(|s| s.subdomain.as_deref() == Some(name))
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty());
            Some(Member {
                ip,
                ready: publishes_not_ready(service) || (serving && !terminating),
                serving,
                terminating,
                zone: node.as_deref().and_then(&zone_of),
                node,
                hostname,
                pod_name: pod.metadata.name.clone().unwrap_or_default(),
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                ports: ports.iter().filter_map(|p| resolve(p, pod)).collect(),
            })
        })
        .collect();
    members.sort_by(|a, b| a.pod_name.cmp(&b.pod_name));
    members
}

/// A Service port as `pod` serves it: its `targetPort` (the port itself when unset), a name looked up among the
/// pod's container ports of the same protocol.
fn resolve(port: &ServicePort, pod: &Pod) -> Option<Port> {
    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
    let number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(n)) if *n == 0 => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container_port(pod, name, &protocol)?,
        },
    };
    Some(Port {
        name: port.name.clone().unwrap_or_default(),
        port: number,
        protocol,
        app_protocol: port.app_protocol.clone(),
    })
}

fn container_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    let containers = pod.spec.as_ref()?.containers.iter();
    containers.flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
        let same_protocol = p.protocol.as_deref().unwrap_or("TCP") == protocol;
        (p.name.as_deref() == Some(name) && same_protocol).then_some(p.container_port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, extra: serde_json::Value) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(ip) = ip {
            pod["status"]["podIP"] = json!(ip);
        }
        merge(&mut pod, &extra);
        serde_json::from_value(pod).unwrap()
    }

    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn selected_pods_with_ips_are_members_with_their_conditions() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}));
        let pods = [
            pod("a", Some("10.0.0.1"), true, json!({})),
            pod("b", Some("10.0.0.2"), false, json!({})),
            pod("c", None, true, json!({})),
            pod("d", Some("10.0.0.4"), true, json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
            pod("e", Some("10.0.0.5"), true, json!({"metadata": {"labels": {"app": "other"}}})),
            pod(
                "f",
                Some("10.0.0.6"),
                false,
                json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Failed"}}),
            ),
            pod("g", Some("10.0.0.7"), false, json!({"status": {"phase": "Failed"}})),
            pod("h", Some("10.0.0.8"), true, json!({"metadata": {"namespace": "other"}})),
        ];
        let zone = |node: &str| (node == "n1").then(|| "z1".to_owned());
        let got = members(&svc, &pods, zone);
        let names: Vec<&str> = got.iter().map(|m| m.pod_name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d", "g"], "no IP, another app, finished for good, another namespace: out");
        let conditions: Vec<(bool, bool, bool)> = got.iter().map(|m| (m.ready, m.serving, m.terminating)).collect();
        assert_eq!(
            conditions,
            [(true, true, false), (false, false, false), (false, true, true), (false, false, false)]
        );
        assert_eq!(
            got[0].ports,
            [Port { name: String::new(), port: 8080, protocol: "TCP".into(), app_protocol: None }]
        );
        assert_eq!((got[0].node.as_deref(), got[0].zone.as_deref()), (Some("n1"), Some("z1")));
        assert_eq!((got[0].pod_uid.as_str(), got[0].ip.to_string()), ("uid-a", "10.0.0.1".to_owned()));

        let publish = service(json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true}));
        assert!(members(&publish, &pods, zone).iter().all(|m| m.ready));
        let no_selector = service(json!({"ports": [{"port": 80}]}));
        assert!(members(&no_selector, &pods, zone).is_empty());
    }

    #[test]
    fn target_ports_resolve_per_pod_and_hostnames_need_the_service_as_subdomain() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "a", "port": 80},
            {"name": "b", "port": 81, "targetPort": 9000},
            {"name": "c", "port": 53, "targetPort": "dns", "protocol": "UDP"},
            {"name": "d", "port": 54, "targetPort": "dns"},
            {"name": "e", "port": 82, "targetPort": "8081", "appProtocol": "http"}]}));
        let p = pod("a", Some("10.0.0.1"), true, json!({"spec": {"hostname": "a", "subdomain": "web"}}));
        let got = members(&svc, [&p], |_| None);
        let ports: Vec<(&str, i32)> = got[0].ports.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(ports, [("a", 80), ("b", 9000), ("c", 5353), ("e", 8081)], "d: no TCP port named dns");
        assert_eq!(got[0].ports[3].app_protocol.as_deref(), Some("http"));
        assert_eq!(got[0].hostname.as_deref(), Some("a"));
        let elsewhere = pod("a", Some("10.0.0.1"), true, json!({"spec": {"hostname": "a", "subdomain": "db"}}));
        assert_eq!(members(&svc, [&elsewhere], |_| None)[0].hostname, None);
    }
}
