//! The namespace controller: empties a namespace that is being deleted, then finalizes it.
//!
//! `plan` is pure. A terminating namespace (deletionTimestamp set) has every object in it deleted; once none is
//! left, its `kubernetes` finalizer is removed through the `finalize` subresource and the API server deletes it.

use super::{Action, Snapshot};

pub const KUBERNETES_FINALIZER: &str = "kubernetes";

pub fn plan(snapshot: &Snapshot) -> Vec<Action> {
    let mut actions = Vec::new();
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
    use crate::apiserver::resources::find;

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

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let s =
            Snapshot { objects: vec![namespace("a", true), config_map("a", "x", false), config_map("b", "y", false)] };
        assert_eq!(
            plan(&s),
            vec![Action::Delete { object: 1, propagation: Some("Background"), confirm_owners_gone: false }]
        );
        let s = Snapshot { objects: vec![namespace("a", true), config_map("b", "y", false)] };
        assert_eq!(plan(&s), vec![Action::FinalizeNamespace { object: 0 }]);
    }

    #[test]
    fn a_live_namespace_is_left_alone() {
        let s = Snapshot { objects: vec![namespace("a", false), config_map("a", "x", false)] };
        assert!(plan(&s).is_empty());
    }
}
