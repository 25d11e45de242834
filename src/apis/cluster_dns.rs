//! The cluster DNS Service: `kube-system/kube-dns` on the tenth address of the service range, ports 53/UDP
//! and 53/TCP, as clusters built by kubeadm have it. It reserves the address the agents' DNS servers answer on
//! (every agent serves it on its own host, so the Service has no selector and carries the service-proxy-name
//! label that keeps the agents' proxies off it). The leader creates it when it is missing.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
/// Services with this label are another proxy's: the agents' proxies leave them alone.
pub const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Who serves the cluster DNS Service instead of the proxy.
pub const SERVED_BY: &str = "raftsman-agent-dns";

/// The Service at `ip`.
pub fn service(ip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "KubeDNS",
            PROXY_NAME_LABEL: SERVED_BY}},
        "spec": {"clusterIP": ip.to_string(), "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    })
}
