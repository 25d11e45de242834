//! What a node's own credentials (`system:node:<name>` in `system:nodes`) may do, as upstream's Node authorizer
//! and NodeRestriction admission decide together: read what every kubelet reads (nodes, pods, services,
//! endpoints), write its own Node, its own Lease and the pods bound to it, read only the Secrets, ConfigMaps
//! and PersistentVolumeClaims the pods bound to it refer to, and request tokens only for the accounts those
//! pods run as, bound to those pods. It has no opinion on anything else,
//! which RBAC then decides.
//!
//! Pure: what a decision needs to know of stored objects (`Needs`) is looked up by the API layer and handed
//! back as `Facts`; what only the new object tells (the name of a Node or Lease a node creates) is checked
//! by `check_create`.

use serde_json::Value;

use super::rbac::{Attributes, ResourceAttributes};

/// The namespace of the nodes' Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, whatever RBAC says: a node acting on another node's objects.
    Deny(String),
    /// Not a node's request to judge.
    NoOpinion,
}

/// What a decision needs to know of stored objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// The node the pod `namespace/name` is bound to.
    PodNode {
        namespace: String,
        name: String,
    },
    /// The pods bound to the node in `namespace`, to find which refer to the object asked for.
    PodsOnNode {
        namespace: String,
    },
}

/// What was looked up for `Needs`.
#[derive(Debug, Default)]
pub struct Facts {
    /// The node the pod is bound to (None: not bound, or no such pod).
    pub pod_node: Option<String>,
    /// The pods bound to the node in the namespace asked about.
    pub pods: Vec<Value>,
}

/// What the decision on `attributes` of `node` needs looked up.
pub fn needs(attributes: &Attributes) -> Needs {
    let Attributes::Resource(r) = attributes else { return Needs::Nothing };
    match (r.group.as_str(), r.resource.as_str(), r.verb.as_str()) {
        ("", "pods", "update" | "patch" | "delete") if !r.name.is_empty() => {
            Needs::PodNode { namespace: r.namespace.clone(), name: r.name.clone() }
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims", "get") if !r.name.is_empty() => {
            Needs::PodsOnNode { namespace: r.namespace.clone() }
        }
        ("", "serviceaccounts", "create") if r.subresource == "token" => {
            Needs::PodsOnNode { namespace: r.namespace.clone() }
        }
        _ => Needs::Nothing,
    }
}

/// Whether `node` may do what `attributes` ask, given the facts `needs` asked for.
pub fn decide(node: &str, attributes: &Attributes, facts: &Facts) -> Decision {
    let Attributes::Resource(r) = attributes else { return Decision::NoOpinion };
    let read = matches!(r.verb.as_str(), "get" | "list" | "watch");
    let own = |name: &str| {
        if name == node {
            Decision::Allow
        } else {
            Decision::Deny(format!("node {node:?} may not {} {} {name:?} of another node", r.verb, r.resource))
        }
    };
    match (r.group.as_str(), r.resource.as_str(), r.subresource.as_str()) {
        ("", "nodes", "") if read => Decision::Allow,
        // Which Node a create makes is in its body: `check_create`.
        ("", "nodes", "") if r.verb == "create" => Decision::Allow,
        ("", "nodes", "" | "status") if matches!(r.verb.as_str(), "get" | "update" | "patch" | "delete") => {
            own(&r.name)
        }
        ("coordination.k8s.io", "leases", "") if r.namespace == LEASE_NAMESPACE => match r.verb.as_str() {
            "create" => Decision::Allow,
            "get" | "update" | "patch" | "delete" => own(&r.name),
            _ => Decision::NoOpinion,
        },
        ("", "pods", "") if read => Decision::Allow,
        ("", "pods", "" | "status") if matches!(r.verb.as_str(), "update" | "patch" | "delete") => {
            if r.subresource.is_empty() && r.verb != "delete" {
                return Decision::NoOpinion;
            }
            match facts.pod_node.as_deref() {
                Some(bound) if bound == node => Decision::Allow,
                _ => Decision::Deny(format!(
                    "node {node:?} may only {} pods bound to it, and {}/{} is not",
                    r.verb, r.namespace, r.name
                )),
            }
        }
        ("", "services" | "endpoints", "") | ("discovery.k8s.io", "endpointslices", "") if read => Decision::Allow,
        ("", "events", "") | ("events.k8s.io", "events", "")
            if matches!(r.verb.as_str(), "create" | "patch" | "update") =>
        {
            Decision::Allow
        }
        ("", "serviceaccounts", "token") if r.verb == "create" => {
            let runs_as = |pod: &Value| pod["spec"]["serviceAccountName"].as_str() == Some(r.name.as_str());
            match facts.pods.iter().any(runs_as) {
                true => Decision::Allow,
                false => Decision::Deny(format!(
                    "no relationship found between node {node:?} and this object (serviceaccount {}/{})",
                    r.namespace, r.name
                )),
            }
        }
        ("", kind @ ("secrets" | "configmaps" | "persistentvolumeclaims"), "") => {
            let referenced = r.verb == "get" && facts.pods.iter().any(|pod| refers_to(pod, kind, &r.name));
            match referenced {
                true => Decision::Allow,
                false => Decision::Deny(format!(
                    "no relationship found between node {node:?} and this object ({kind} {}/{})",
                    r.namespace, r.name
                )),
            }
        }
        _ => Decision::NoOpinion,
    }
}

/// NodeRestriction on creates: a node creates only its own Node and its own Lease, and only tokens bound to a
/// pod it runs as that pod's account. For a token (`serviceaccounts/token`), `object` is the pod the token is
/// bound to (null when none is).
pub fn check_create(node: &str, attributes: &ResourceAttributes, object: &Value) -> Result<(), String> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match (attributes.group.as_str(), attributes.resource.as_str(), attributes.subresource.as_str()) {
        ("", "nodes", "") | ("coordination.k8s.io", "leases", "") if name != node => {
            Err(format!("node {node:?} may not create {} {name:?} of another node", attributes.resource))
        }
        ("", "serviceaccounts", "token") => {
            let spec = &object["spec"];
            match (object.is_null(), spec["nodeName"].as_str() == Some(node)) {
                (true, _) => Err(format!("node {node:?} may only request tokens bound to a pod")),
                (false, false) => Err(format!("node {node:?} may only request tokens bound to pods bound to it")),
                (false, true) if spec["serviceAccountName"].as_str() != Some(attributes.name.as_str()) => {
                    Err(format!("pod {name:?} does not run as service account {:?}", attributes.name))
                }
                (false, true) => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Whether `pod` refers to the `kind` (`secrets`, `configmaps`, `persistentvolumeclaims`) object `name`: in
/// its volumes (projected ones too), its containers' `env` and `envFrom`, or its image pull secrets.
pub fn refers_to(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let named = |v: &Value, field: &str| v[field].as_str() == Some(name);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let volumes = list(&spec["volumes"]);
    let containers: Vec<Value> =
        ["initContainers", "containers", "ephemeralContainers"].iter().flat_map(|field| list(&spec[*field])).collect();
    match kind {
        "persistentvolumeclaims" => volumes.iter().any(|v| named(&v["persistentVolumeClaim"], "claimName")),
        "secrets" | "configmaps" => {
            let (volume, projected, key_ref, from) = match kind {
                "secrets" => (("secret", "secretName"), "secret", "secretKeyRef", "secretRef"),
                _ => (("configMap", "name"), "configMap", "configMapKeyRef", "configMapRef"),
            };
            let in_volumes = volumes.iter().any(|v| {
                named(&v[volume.0], volume.1)
                    || list(&v["projected"]["sources"]).iter().any(|s| named(&s[projected], "name"))
            });
            let in_env = containers.iter().any(|c| {
                list(&c["env"]).iter().any(|e| named(&e["valueFrom"][key_ref], "name"))
                    || list(&c["envFrom"]).iter().any(|e| named(&e[from], "name"))
            });
            let pulled = kind == "secrets" && list(&spec["imagePullSecrets"]).iter().any(|s| named(s, "name"));
            in_volumes || in_env || pulled
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn asks(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    fn decided(attributes: &Attributes, facts: &Facts) -> Decision {
        decide("n1", attributes, facts)
    }

    #[test]
    fn a_node_writes_only_its_own_node_and_lease() {
        let none = Facts::default();
        assert_eq!(decided(&asks("patch", "", "nodes/status", "", "n1"), &none), Decision::Allow);
        assert!(matches!(decided(&asks("patch", "", "nodes/status", "", "n2"), &none), Decision::Deny(_)));
        assert!(matches!(decided(&asks("delete", "", "nodes", "", "n2"), &none), Decision::Deny(_)));
        assert_eq!(decided(&asks("list", "", "nodes", "", ""), &none), Decision::Allow);
        let lease = |name: &str| asks("update", "coordination.k8s.io", "leases", LEASE_NAMESPACE, name);
        assert_eq!(decided(&lease("n1"), &none), Decision::Allow);
        assert!(matches!(decided(&lease("n2"), &none), Decision::Deny(_)));
        let create = match asks("create", "", "nodes", "", "") {
            Attributes::Resource(r) => r,
            _ => unreachable!(),
        };
        assert!(check_create("n1", &create, &json!({"metadata": {"name": "n1"}})).is_ok());
        assert!(check_create("n1", &create, &json!({"metadata": {"name": "n2"}})).is_err());
    }

    #[test]
    fn a_node_changes_only_the_pods_bound_to_it() {
        let on = |node: &str| Facts { pod_node: Some(node.into()), pods: vec![] };
        assert_eq!(
            needs(&asks("patch", "", "pods/status", "a", "p")),
            Needs::PodNode { namespace: "a".into(), name: "p".into() }
        );
        assert_eq!(decided(&asks("patch", "", "pods/status", "a", "p"), &on("n1")), Decision::Allow);
        assert!(matches!(decided(&asks("patch", "", "pods/status", "a", "p"), &on("n2")), Decision::Deny(_)));
        assert!(matches!(decided(&asks("delete", "", "pods", "a", "p"), &Facts::default()), Decision::Deny(_)));
        assert_eq!(decided(&asks("delete", "", "pods", "a", "p"), &on("n1")), Decision::Allow);
        assert_eq!(decided(&asks("create", "", "pods", "a", ""), &on("n1")), Decision::NoOpinion);
    }

    #[test]
    fn a_node_reads_only_the_secrets_its_pods_refer_to() {
        let pod = json!({"spec": {
            "volumes": [{"name": "v", "secret": {"secretName": "mounted"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "projected"}}]}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}}],
            "containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "env", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "from"}}]}]}});
        let facts = Facts { pod_node: None, pods: vec![pod] };
        assert_eq!(needs(&asks("get", "", "secrets", "a", "mounted")), Needs::PodsOnNode { namespace: "a".into() });
        for (kind, name) in [
            ("secrets", "mounted"),
            ("secrets", "env"),
            ("configmaps", "projected"),
            ("configmaps", "from"),
            ("persistentvolumeclaims", "claim"),
        ] {
            assert_eq!(decided(&asks("get", "", kind, "a", name), &facts), Decision::Allow, "{kind} {name}");
        }
        assert!(matches!(decided(&asks("get", "", "secrets", "a", "other"), &facts), Decision::Deny(_)));
        assert!(matches!(decided(&asks("get", "", "configmaps", "a", "mounted"), &facts), Decision::Deny(_)));
        assert!(matches!(decided(&asks("list", "", "secrets", "a", ""), &facts), Decision::Deny(_)));
        assert_eq!(decided(&asks("list", "apps", "deployments", "a", ""), &facts), Decision::NoOpinion);
    }

    #[test]
    fn a_node_requests_tokens_only_for_its_pods_and_their_accounts() {
        let pod = |name: &str, node: &str, account: &str| json!({"metadata": {"name": name}, "spec": {"nodeName": node, "serviceAccountName": account}});
        let token = |account: &str| asks("create", "", "serviceaccounts/token", "a", account);
        assert_eq!(needs(&token("builder")), Needs::PodsOnNode { namespace: "a".into() });
        let facts = Facts { pod_node: None, pods: vec![pod("p", "n1", "builder")] };
        assert_eq!(decided(&token("builder"), &facts), Decision::Allow);
        assert!(matches!(decided(&token("admin"), &facts), Decision::Deny(_)));
        assert!(matches!(
            decided(&asks("get", "", "serviceaccounts/token", "a", "builder"), &facts),
            Decision::NoOpinion
        ));
        let Attributes::Resource(create) = token("builder") else { unreachable!() };
        assert!(check_create("n1", &create, &pod("p", "n1", "builder")).is_ok());
        assert!(check_create("n1", &create, &pod("q", "n2", "builder")).is_err(), "another node's pod");
        assert!(check_create("n1", &create, &pod("r", "n1", "admin")).is_err(), "a pod of another account");
        assert!(check_create("n1", &create, &Value::Null).is_err(), "not bound to a pod");
    }
}
