//! The namespace controller: the system namespaces exist, every live namespace has its `default`
//! ServiceAccount, and a namespace being deleted is emptied, then finalized.
//!
//! `plan` is pure. A terminating namespace (deletionTimestamp set) has every object in it deleted; once none is
//! left, its `kubernetes` finalizer is removed through the `finalize` subresource and the API server deletes it.

use super::{Action, Snapshot};

pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub fn plan(snapshot: &Snapshot) -> Vec<Action> {
    let mut actions = Vec::new();
    let is_namespace = |o: &&super::ObjectRef| o.resource.kind == "Namespace";
    for name in SYSTEM_NAMESPACES {
        if !snapshot.objects.iter().filter(is_namespace).any(|o| o.name == *name) {
            actions.push(Action::CreateNamespace { name });
        }
    }
    for ns in snapshot.objects.iter().filter(is_namespace).filter(|ns| !ns.deleting) {
        let has_default_account = snapshot.objects.iter().any(|o| {
            o.resource.kind == "ServiceAccount" && o.name == "default" && o.namespace.as_deref() == Some(&ns.name)
        });
        if !has_default_account {
            actions.push(Action::CreateServiceAccount { namespace: ns.name.clone() });
        }
    }
    for (i, ns) in snapshot.objects.iter().enumerate() {
        if ns.resource.kind != "Namespace" || !ns.deleting {
            continue;
        }
        let contents: Vec<usize> = snapshot
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.resource.namespaced && o.namespace.as_deref() == Some(ns.name.as_str()))
            .map(|(j, _)| j)
            .collect();
        for &j in &contents {
            if !snapshot.objects[j].deleting {
                actions.push(Action::Delete { object: j, propagation: Some("Background"), confirm_owners_gone: false });
            }
        }
        if contents.is_empty() && ns.namespace_finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
            actions.push(Action::FinalizeNamespace { object: i });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::super::ObjectRef;
    use super::*;
    use crate::apis::catalog::find;

    fn namespace(name: &str, deleting: bool) -> ObjectRef {
        ObjectRef {
            resource: find("", "v1", "namespaces").unwrap(),
            namespace: None,
            name: name.into(),
            uid: format!("ns-{name}"),
            resource_version: "1".into(),
            deleting,
            finalizers: Vec::new(),
            namespace_finalizers: vec![KUBERNETES_FINALIZER.into()],
            owners: Vec::new(),
        }
    }

    fn config_map(ns: &str, name: &str, deleting: bool) -> ObjectRef {
        ObjectRef {
            resource: find("", "v1", "configmaps").unwrap(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: format!("cm-{name}"),
            resource_version: "1".into(),
            deleting,
            finalizers: Vec::new(),
            namespace_finalizers: Vec::new(),
            owners: Vec::new(),
        }
    }

    fn with_system(mut objects: Vec<ObjectRef>) -> Snapshot {
        objects.extend(SYSTEM_NAMESPACES.iter().map(|n| namespace(n, false)));
        let accounts: Vec<ObjectRef> = objects
            .iter()
            .filter(|o| o.resource.kind == "Namespace" && !o.deleting)
            .map(|ns| ObjectRef {
                resource: find("", "v1", "serviceaccounts").unwrap(),
                namespace: Some(ns.name.clone()),
                name: "default".into(),
                ..config_map(&ns.name, "default", false)
            })
            .collect();
        objects.extend(accounts);
        Snapshot { objects }
    }

    #[test]
    fn system_namespaces_and_default_accounts_are_created() {
        let s = Snapshot { objects: vec![namespace("a", false)] };
        let actions = plan(&s);
        for name in SYSTEM_NAMESPACES {
            assert!(actions.contains(&Action::CreateNamespace { name }));
        }
        assert!(actions.contains(&Action::CreateServiceAccount { namespace: "a".into() }));
        assert!(plan(&with_system(vec![namespace("a", false)])).is_empty());
    }

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let s = with_system(vec![namespace("a", true), config_map("a", "x", false), config_map("b", "y", false)]);
        assert_eq!(
            plan(&s),
            vec![Action::Delete { object: 1, propagation: Some("Background"), confirm_owners_gone: false }]
        );
        let s = with_system(vec![namespace("a", true), config_map("b", "y", false)]);
        assert_eq!(plan(&s), vec![Action::FinalizeNamespace { object: 0 }]);
    }

    #[test]
    fn a_live_namespace_is_left_alone() {
        let s = with_system(vec![namespace("a", false), config_map("a", "x", false)]);
        assert!(plan(&s).is_empty());
    }
}
