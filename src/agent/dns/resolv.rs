//! A pod's `/etc/resolv.conf`, as upstream's kubelet writes it (pure), by `dnsPolicy`:
//! - `ClusterFirst` (the default): the cluster DNS, the search path `<namespace>.svc.<domain> svc.<domain>
//!   <domain>` then the host's own search domains, `options ndots:5`; a pod on the host's network with
//!   `ClusterFirst` gets `Default` instead, as upstream;
//! - `ClusterFirstWithHostNet`: `ClusterFirst`, also on the host's network;
//! - `Default`: the host's resolvers, search path and options;
//! - `None`: only what `dnsConfig` says.
//!
//! `dnsConfig` adds its nameservers and searches after the policy's (duplicates dropped) and its options
//! replace those of the same name. Upstream's limits hold: at most 3 nameservers and 32 search domains.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

const NAMESERVERS_MAX: usize = 3;
const SEARCHES_MAX: usize = 32;

/// What the host's `/etc/resolv.conf` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostResolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl HostResolv {
    pub fn parse(text: &str) -> HostResolv {
        let mut host = HostResolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => host.nameservers.extend(words.next().map(str::to_owned)),
                Some("search" | "domain") => host.searches = words.map(str::to_owned).collect(),
                Some("options") => host.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        host
    }
}

/// The contents of `pod`'s resolv.conf with the cluster DNS at `dns` for `domain`.
pub fn resolv_conf(pod: &Pod, dns: IpAddr, domain: &str, host: &HostResolv) -> String {
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let (mut nameservers, mut searches, mut options) = match (cluster, policy) {
        (true, _) => (
            vec![dns.to_string()],
            [format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.to_owned()]
                .into_iter()
                .chain(host.searches.iter().cloned())
                .collect(),
            vec!["ndots:5".to_owned()],
        ),
        (false, "None") => (Vec::new(), Vec::new(), Vec::new()),
        (false, _) => (host.nameservers.clone(), host.searches.clone(), host.options.clone()),
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        nameservers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else { continue };
            options.retain(|o| o.split(':').next() != Some(name));
            options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_owned(),
            });
        }
    }
    dedup(&mut nameservers);
    dedup(&mut searches);
    nameservers.truncate(NAMESERVERS_MAX);
    searches.truncate(SEARCHES_MAX);
    let mut text = String::new();
    for server in &nameservers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn host() -> HostResolv {
        HostResolv::parse("# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_the_namespaces_search_path() {
        let dns: IpAddr = "10.96.0.10".parse().unwrap();
        let text = resolv_conf(&pod(json!({"containers": []})), dns, "cluster.local", &host());
        assert_eq!(
            text,
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             options ndots:5\n"
        );
        let host_net = pod(json!({"containers": [], "hostNetwork": true}));
        assert!(resolv_conf(&host_net, dns, "cluster.local", &host()).starts_with("nameserver 192.0.2.53\n"));
        let with_host_net = pod(json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert!(resolv_conf(&with_host_net, dns, "cluster.local", &host()).starts_with("nameserver 10.96.0.10\n"));
    }

    #[test]
    fn default_takes_the_hosts_and_none_takes_only_dns_config() {
        let dns: IpAddr = "10.96.0.10".parse().unwrap();
        let default = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            resolv_conf(&default, dns, "cluster.local", &host()),
            "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"
        );
        let none = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}));
        assert_eq!(
            resolv_conf(&none, dns, "cluster.local", &host()),
            "nameserver 192.0.2.1\nsearch a.example\noptions ndots:2 rotate\n"
        );
        let tuned = pod(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert!(resolv_conf(&tuned, dns, "cluster.local", &host()).ends_with("options ndots:1\n"));
    }
}
