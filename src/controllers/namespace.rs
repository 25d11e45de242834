//! The namespace controller: the system namespaces exist, every live namespace has its `default`
//! ServiceAccount and (when the cluster signs ServiceAccount tokens) its `kube-root-ca.crt` ConfigMap, and a
//! namespace being deleted is emptied, then finalized. A `kube-root-ca.crt` that was deleted is made again, and
//! one whose data was changed is set back to the authority's certificate alone, as upstream's publisher does.
//!
//! `plan` is pure. A terminating namespace (deletionTimestamp set) has every object in it deleted; once none is
//! left, its `kubernetes` finalizer is removed through the `finalize` subresource and the API server deletes it.
//! Meanwhile its `status.conditions` say what holds it, with upstream's condition types, reasons and messages:
//! the objects that remain (already being deleted, or held by finalizers) by resource, and their finalizers.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Action, ObjectRef};
use crate::apis::admission::{self, ROOT_CA_CONFIG_MAP};

pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// One of the conditions the controller keeps on a terminating namespace (its time of transition aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub condition_type: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Condition {
    /// The condition as the controller read it from a namespace's `status.conditions` entry.
    pub fn from_status(entry: &Value) -> Condition {
        let text = |field: &str| entry[field].as_str().unwrap_or_default().to_owned();
        Condition {
            condition_type: text("type"),
            status: text("status"),
            reason: text("reason"),
            message: text("message"),
        }
    }

    fn new(condition_type: &str, status: &str, reason: &str, message: String) -> Condition {
        Condition { condition_type: condition_type.into(), status: status.into(), reason: reason.into(), message }
    }
}

/// The condition types upstream's namespace controller maintains, in its order, each with the reason and
/// message of its "nothing wrong" (`False`) form.
const CONDITIONS: [(&str, &str, &str); 5] = [
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// The conditions of a terminating namespace whose remaining objects are `remaining` (resource and group,
/// finalizers of each).
fn deletion_conditions(remaining: &[(&str, &str, &[String])]) -> Vec<Condition> {
    let mut by_resource: std::collections::BTreeMap<String, usize> = Default::default();
    let mut by_finalizer: std::collections::BTreeMap<&str, usize> = Default::default();
    for (plural, group, finalizers) in remaining {
        *by_resource.entry(format!("{plural}.{group}")).or_default() += 1;
        for f in finalizers.iter() {
            *by_finalizer.entry(f.as_str()).or_default() += 1;
        }
    }
    let mut resources: Vec<String> =
        by_resource.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
    resources.sort();
    let mut finalizers: Vec<String> =
        by_finalizer.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
    finalizers.sort();
    CONDITIONS
        .iter()
        .map(|(condition_type, ok_reason, ok_message)| match *condition_type {
            "NamespaceContentRemaining" if !resources.is_empty() => Condition::new(
                condition_type,
                "True",
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", resources.join(", ")),
            ),
            "NamespaceFinalizersRemaining" if !finalizers.is_empty() => Condition::new(
                condition_type,
                "True",
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", ")),
            ),
            _ => Condition::new(condition_type, "False", ok_reason, (*ok_message).to_owned()),
        })
        .collect()
}

/// `current` (a namespace's `status.conditions`) with `wanted` merged in as upstream does: a new type is
/// appended, a changed one updated in place (its `lastTransitionTime` set to `now` only when its status
/// flips), others kept. `None` when nothing changes.
pub fn merge_conditions(current: &[Value], wanted: &[Condition], now: &str) -> Option<Vec<Value>> {
    let mut merged = current.to_vec();
    let mut changed = false;
    for want in wanted {
        let existing = merged.iter_mut().find(|c| c["type"] == want.condition_type.as_str());
        match existing {
            None => {
                merged.push(json!({"type": want.condition_type, "status": want.status,
                    "lastTransitionTime": now, "reason": want.reason, "message": want.message}));
                changed = true;
            }
            Some(entry) if Condition::from_status(entry) != *want => {
                if entry["status"] != want.status.as_str() {
                    entry["lastTransitionTime"] = json!(now);
                }
                entry["status"] = json!(want.status);
                entry["reason"] = json!(want.reason);
                entry["message"] = json!(want.message);
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(merged)
}

/// `published` (a namespace's `kube-root-ca.crt` as read) as it must be to publish `root_ca`: its data the
/// certificate alone, with upstream's description. None when it is so already.
pub fn reset_root_ca(published: &Value, root_ca: &str) -> Option<Value> {
    let wanted = admission::root_ca_config_map(root_ca);
    let description = &wanted["metadata"]["annotations"][DESCRIPTION_ANNOTATION];
    let annotations = &published["metadata"]["annotations"];
    if published["data"] == wanted["data"] && annotations[DESCRIPTION_ANNOTATION].is_string() {
        return None;
    }
    let mut reset = published.clone();
    reset["data"] = wanted["data"].clone();
    if !annotations.is_object() {
        reset["metadata"]["annotations"] = json!({});
    }
    reset["metadata"]["annotations"][DESCRIPTION_ANNOTATION] = description.clone();
    Some(reset)
}

const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// What to do about the namespace `name`, from the namespace as the cache holds it (None when there is none),
/// the objects in it, the cluster authority's certificate to publish (None: none is) and its `kube-root-ca.crt`
/// as read from the API (None when the cache holds none).
pub fn plan(
    name: &str,
    namespace: Option<&ObjectRef>,
    contents: &[ObjectRef],
    root_ca: Option<&Arc<str>>,
    published: Option<&Value>,
) -> Vec<Action> {
    let Some(ns) = namespace else {
        return match SYSTEM_NAMESPACES.iter().find(|n| **n == name) {
            Some(name) => vec![Action::CreateNamespace { name }],
            None => Vec::new(),
        };
    };
    if !ns.deleting {
        let has = |kind: &str, name: &str| contents.iter().any(|o| o.resource.kind == kind && o.name == name);
        let mut actions = Vec::new();
        if !has("ServiceAccount", "default") {
            actions.push(Action::CreateServiceAccount { namespace: ns.name.clone() });
        }
        match (root_ca, published) {
            (Some(root_ca), _) if !has("ConfigMap", ROOT_CA_CONFIG_MAP) => {
                actions.push(Action::CreateRootCaConfigMap { namespace: ns.name.clone(), root_ca: root_ca.clone() })
            }
            (Some(root_ca), Some(published)) => {
                if let Some(object) = reset_root_ca(published, root_ca) {
                    actions.push(Action::ResetRootCaConfigMap { namespace: ns.name.clone(), object });
                }
            }
            _ => {}
        }
        return actions;
    }
    let mut actions: Vec<Action> = contents
        .iter()
        .filter(|o| !o.deleting)
        .map(|o| Action::Delete { object: o.clone(), propagation: Some("Background"), confirm_owners_gone: false })
        .collect();
    // What these deletions leave: objects already being deleted, and those finalizers hold.
    let remaining: Vec<(&str, &str, &[String])> = contents
        .iter()
        .filter(|o| o.deleting || !o.finalizers.is_empty())
        .map(|o| (o.resource.plural, o.resource.group, o.finalizers.as_slice()))
        .collect();
    let conditions = deletion_conditions(&remaining);
    if !conditions.iter().all(|c| ns.conditions.contains(c)) {
        actions.push(Action::SetNamespaceConditions { object: ns.clone(), conditions });
    }
    if contents.is_empty() && ns.namespace_finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        actions.push(Action::FinalizeNamespace { object: ns.clone() });
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
            conditions: Vec::new(),
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
            conditions: Vec::new(),
            owners: Vec::new(),
        }
    }

    fn account(ns: &str) -> ObjectRef {
        ObjectRef { resource: find("", "v1", "serviceaccounts").unwrap(), ..config_map(ns, "default", false) }
    }

    #[test]
    fn system_namespaces_and_default_accounts_are_created() {
        for name in SYSTEM_NAMESPACES {
            assert_eq!(plan(name, None, &[], None, None), vec![Action::CreateNamespace { name }]);
        }
        assert_eq!(plan("other", None, &[], None, None), vec![], "a deleted namespace of a user stays deleted");
        let a = namespace("a", false);
        assert_eq!(plan("a", Some(&a), &[], None, None), vec![Action::CreateServiceAccount { namespace: "a".into() }]);
        assert!(plan("a", Some(&a), &[account("a")], None, None).is_empty());
    }

    #[test]
    fn live_namespaces_publish_the_root_ca_when_there_is_one() {
        let (a, root_ca): (ObjectRef, Arc<str>) = (namespace("a", false), Arc::from("PEM"));
        let publish = Action::CreateRootCaConfigMap { namespace: "a".into(), root_ca: root_ca.clone() };
        assert_eq!(plan("a", Some(&a), &[account("a")], Some(&root_ca), None), vec![publish]);
        let published = [account("a"), config_map("a", ROOT_CA_CONFIG_MAP, false)];
        assert!(plan("a", Some(&a), &published, Some(&root_ca), None).is_empty());
        assert!(plan("a", Some(&a), &[account("a")], None, None).is_empty(), "nothing to publish");
        let b = terminating("b");
        let planned = plan("b", Some(&b), &[], Some(&root_ca), None);
        assert!(!planned.iter().any(|a| matches!(a, Action::CreateRootCaConfigMap { .. })), "{planned:?}");
    }

    #[test]
    fn a_changed_root_ca_config_map_is_set_back_to_the_authority_alone() {
        let (a, root_ca): (ObjectRef, Arc<str>) = (namespace("a", false), Arc::from("PEM"));
        let contents = [account("a"), config_map("a", ROOT_CA_CONFIG_MAP, false)];
        let mut published = admission::root_ca_config_map(&root_ca);
        published["metadata"]["resourceVersion"] = json!("7");
        assert!(plan("a", Some(&a), &contents, Some(&root_ca), Some(&published)).is_empty());

        for (change, field) in [("ca.crt", "another authority"), ("extra", "a key of a user")] {
            let mut changed = published.clone();
            changed["data"][change] = json!(field);
            changed["metadata"]["labels"] = json!({"kept": "yes"});
            let planned = plan("a", Some(&a), &contents, Some(&root_ca), Some(&changed));
            let [Action::ResetRootCaConfigMap { namespace, object }] = planned.as_slice() else {
                panic!("{change}: {planned:?}")
            };
            assert_eq!(namespace, "a");
            assert_eq!(object["data"], json!({"ca.crt": "PEM"}), "{change}");
            assert_eq!(object["metadata"]["resourceVersion"], "7", "the update is made on what was read");
            assert_eq!(object["metadata"]["labels"]["kept"], "yes", "the rest is the user's");
        }
        let mut undescribed = published.clone();
        undescribed["metadata"].as_object_mut().unwrap().remove("annotations");
        let reset = reset_root_ca(&undescribed, &root_ca).expect("the description is put back");
        assert_eq!(reset["metadata"]["annotations"], published["metadata"]["annotations"]);
        assert!(plan("a", Some(&a), &contents, None, Some(&undescribed)).is_empty(), "nothing to publish");
    }

    /// A terminating namespace whose conditions already say that nothing remains.
    fn terminating(name: &str) -> ObjectRef {
        ObjectRef { conditions: deletion_conditions(&[]), ..namespace(name, true) }
    }

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let a = terminating("a");
        let x = config_map("a", "x", false);
        assert_eq!(
            plan("a", Some(&a), std::slice::from_ref(&x), None, None),
            vec![Action::Delete { object: x, propagation: Some("Background"), confirm_owners_gone: false }]
        );
        assert_eq!(plan("a", Some(&a), &[], None, None), vec![Action::FinalizeNamespace { object: a }]);
    }

    fn condition<'a>(conditions: &'a [Condition], condition_type: &str) -> &'a Condition {
        conditions.iter().find(|c| c.condition_type == condition_type).unwrap()
    }

    #[test]
    fn a_namespace_held_by_finalized_content_says_what_remains() {
        let held = ObjectRef { finalizers: vec!["example.com/hold".into()], ..config_map("a", "x", false) };
        let going = ObjectRef { finalizers: vec!["example.com/hold".into()], ..config_map("a", "y", true) };
        let a = namespace("a", true);
        let contents = [held, going, config_map("a", "z", false)];
        let actions = plan("a", Some(&a), &contents, None, None);
        let Some(Action::SetNamespaceConditions { conditions, .. }) =
            actions.iter().find(|a| matches!(a, Action::SetNamespaceConditions { .. }))
        else {
            panic!("no conditions set: {actions:?}")
        };
        let types: Vec<&str> = conditions.iter().map(|c| c.condition_type.as_str()).collect();
        assert_eq!(types, CONDITIONS.map(|(t, _, _)| t));
        let content = condition(conditions, "NamespaceContentRemaining");
        assert_eq!((content.status.as_str(), content.reason.as_str()), ("True", "SomeResourcesRemain"));
        assert_eq!(content.message, "Some resources are remaining: configmaps. has 2 resource instances");
        let finalizers = condition(conditions, "NamespaceFinalizersRemaining");
        assert_eq!((finalizers.status.as_str(), finalizers.reason.as_str()), ("True", "SomeFinalizersRemain"));
        assert_eq!(
            finalizers.message,
            "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances"
        );
        let failure = condition(conditions, "NamespaceDeletionContentFailure");
        assert_eq!((failure.status.as_str(), failure.reason.as_str()), ("False", "ContentDeleted"));
        assert!(!actions.iter().any(|a| matches!(a, Action::FinalizeNamespace { .. })));
        // Conditions already in place are not written again.
        let a = ObjectRef { conditions: conditions.clone(), ..a };
        assert!(!plan("a", Some(&a), &contents, None, None)
            .iter()
            .any(|a| matches!(a, Action::SetNamespaceConditions { .. })));
    }

    #[test]
    fn conditions_merge_as_upstream_merges_them() {
        let wanted = deletion_conditions(&[("configmaps", "", &["f".to_string()])]);
        let merged = merge_conditions(&[], &wanted, "T1").unwrap();
        assert_eq!(merged.len(), 5);
        assert_eq!(merged[3]["lastTransitionTime"], "T1");
        assert_eq!(merge_conditions(&merged, &wanted, "T2"), None);
        let cleared = deletion_conditions(&[]);
        let again = merge_conditions(&merged, &cleared, "T3").unwrap();
        assert_eq!(again[3]["status"], "False");
        assert_eq!(again[3]["reason"], "ContentRemoved");
        assert_eq!(again[3]["lastTransitionTime"], "T3", "the status flipped");
        assert_eq!(again[0]["lastTransitionTime"], "T1", "unchanged");
    }

    #[test]
    fn a_live_namespace_is_left_alone() {
        let a = namespace("a", false);
        assert!(plan("a", Some(&a), &[account("a"), config_map("a", "x", false)], None, None).is_empty());
    }
}
