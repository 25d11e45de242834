//! The garbage collector: deletes objects whose owners are gone, and finishes foreground and orphan deletions.
//!
//! `plan` is pure: from one snapshot of the objects' ownership graph it decides the actions. Rules, as
//! Kubernetes' garbage collector applies them:
//! - a dependent none of whose owners exists is deleted (in the background); references to missing owners
//!   are dropped while another owner still exists;
//! - an owner being deleted in the foreground (finalizer `foregroundDeletion`) first has its dependents deleted
//!   in the foreground, and loses the finalizer once no dependent that blocks its deletion is left;
//! - an owner being deleted with `orphan` has its references removed from every dependent, then loses the
//!   finalizer.
//!
//! A snapshot is assembled from several lists, so it can miss an owner created after its resource was listed:
//! the executor therefore confirms an owner is really gone (by reading it) before deleting a dependent.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Snapshot};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

pub fn plan(snapshot: &Snapshot) -> Vec<Action> {
    let by_uid: BTreeMap<&str, usize> = snapshot.objects.iter().enumerate().map(|(i, o)| (o.uid.as_str(), i)).collect();
    let mut dependents: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, o) in snapshot.objects.iter().enumerate() {
        for r in &o.owners {
            dependents.entry(r.uid.as_str()).or_default().push(i);
        }
    }
    let mut actions = Vec::new();
    let mut orphaned_refs: BTreeSet<(usize, &str)> = BTreeSet::new();
    for (i, owner) in snapshot.objects.iter().enumerate() {
        if !owner.deleting {
            continue;
        }
        let deps = dependents.get(owner.uid.as_str()).map(Vec::as_slice).unwrap_or_default();
        if owner.finalizers.iter().any(|f| f == ORPHAN) {
            for &d in deps {
                orphaned_refs.insert((d, owner.uid.as_str()));
                actions.push(Action::RemoveOwnerRef { object: d, owner_uid: owner.uid.clone() });
            }
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer { object: i, finalizer: ORPHAN });
            }
        } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
            for &d in deps {
                if !snapshot.objects[d].deleting {
                    actions.push(Action::Delete {
                        object: d,
                        propagation: Some(FOREGROUND),
                        confirm_owners_gone: false,
                    });
                }
            }
            let blocking = deps
                .iter()
                .any(|&d| snapshot.objects[d].owners.iter().any(|r| r.uid == owner.uid && r.block_owner_deletion));
            if !blocking {
                actions.push(Action::RemoveFinalizer { object: i, finalizer: FOREGROUND });
            }
        }
    }
    for (i, o) in snapshot.objects.iter().enumerate() {
        if o.owners.is_empty() || o.deleting {
            continue;
        }
        let (present, missing): (Vec<_>, Vec<_>) = o.owners.iter().partition(|r| by_uid.contains_key(r.uid.as_str()));
        if present.is_empty() {
            actions.push(Action::Delete { object: i, propagation: None, confirm_owners_gone: true });
        } else {
            for r in missing {
                if !orphaned_refs.contains(&(i, r.uid.as_str())) {
                    actions.push(Action::RemoveOwnerRef { object: i, owner_uid: r.uid.clone() });
                }
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::super::{ObjectRef, OwnerRef};
    use super::*;

    fn obj(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> ObjectRef {
        ObjectRef {
            resource: crate::apis::catalog::find("apps", "v1", "replicasets").unwrap(),
            namespace: Some("default".into()),
            name: format!("o-{uid}"),
            uid: uid.into(),
            resource_version: "1".into(),
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            namespace_finalizers: Vec::new(),
            conditions: Vec::new(),
            owners: owners
                .iter()
                .map(|(u, block)| OwnerRef {
                    uid: u.to_string(),
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: format!("o-{u}"),
                    block_owner_deletion: *block,
                })
                .collect(),
        }
    }

    fn snapshot(objects: Vec<ObjectRef>) -> Snapshot {
        Snapshot { objects }
    }

    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_deleted_after_confirmation() {
        let s = snapshot(vec![obj("a", &[("gone", true)], false, &[])]);
        assert_eq!(plan(&s), vec![Action::Delete { object: 0, propagation: None, confirm_owners_gone: true }]);
    }

    #[test]
    fn a_dependent_with_a_live_owner_stays_and_loses_only_dangling_references() {
        let s = snapshot(vec![obj("o", &[], false, &[]), obj("d", &[("o", true), ("gone", false)], false, &[])]);
        assert_eq!(plan(&s), vec![Action::RemoveOwnerRef { object: 1, owner_uid: "gone".into() }]);
    }

    #[test]
    fn foreground_deletion_deletes_dependents_first_then_releases_the_owner() {
        let s = snapshot(vec![obj("o", &[], true, &[FOREGROUND]), obj("d", &[("o", true)], false, &[])]);
        assert_eq!(
            plan(&s),
            vec![Action::Delete { object: 1, propagation: Some(FOREGROUND), confirm_owners_gone: false }]
        );
        let s = snapshot(vec![obj("o", &[], true, &[FOREGROUND]), obj("d", &[("o", false)], false, &[])]);
        let actions = plan(&s);
        assert!(actions.contains(&Action::RemoveFinalizer { object: 0, finalizer: FOREGROUND }));
        let s = snapshot(vec![obj("o", &[], true, &[FOREGROUND])]);
        assert_eq!(plan(&s), vec![Action::RemoveFinalizer { object: 0, finalizer: FOREGROUND }]);
    }

    #[test]
    fn orphan_deletion_frees_dependents_then_releases_the_owner() {
        let s = snapshot(vec![obj("o", &[], true, &[ORPHAN]), obj("d", &[("o", true)], false, &[])]);
        assert_eq!(plan(&s), vec![Action::RemoveOwnerRef { object: 1, owner_uid: "o".into() }]);
        let s = snapshot(vec![obj("o", &[], true, &[ORPHAN])]);
        assert_eq!(plan(&s), vec![Action::RemoveFinalizer { object: 0, finalizer: ORPHAN }]);
    }
}
