//! The garbage collector: deletes objects whose owners are gone, and finishes foreground and orphan deletions.
//!
//! `plan` is pure: it decides for one object, from that object, whether each of its owners exists, and its
//! dependents. Rules, as Kubernetes' garbage collector applies them:
//! - a dependent none of whose owners exists is deleted (in the background); references to missing owners
//!   are dropped while another owner still exists;
//! - an owner being deleted in the foreground (finalizer `foregroundDeletion`) first has its dependents deleted
//!   in the foreground, and loses the finalizer once no dependent that blocks its deletion is left;
//! - an owner being deleted with `orphan` has its references removed from every dependent, then loses the
//!   finalizer.
//!
//! The graph it decides from is fed by several watches, so it can miss an owner created a moment ago: the
//! executor therefore confirms an owner is really gone (by reading it) before deleting a dependent.
//!
//! The work queue is keyed by uid. A change to an object queues the object, and its owners when they are being
//! deleted (one of their dependents moved); a deletion also queues its dependents (their owner is gone).

use super::{Action, ObjectRef};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// What to do about `object`, given which of its owners exist and its dependents.
pub fn plan(object: &ObjectRef, owner_exists: impl Fn(&str) -> bool, dependents: &[ObjectRef]) -> Vec<Action> {
    let mut actions = Vec::new();
    if object.deleting {
        if object.finalizers.iter().any(|f| f == ORPHAN) {
            for d in dependents {
                actions.push(Action::RemoveOwnerRef { object: d.clone(), owner_uid: object.uid.clone() });
            }
            if dependents.is_empty() {
                actions.push(Action::RemoveFinalizer { object: object.clone(), finalizer: ORPHAN });
            }
        } else if object.finalizers.iter().any(|f| f == FOREGROUND) {
            for d in dependents.iter().filter(|d| !d.deleting) {
                actions.push(Action::Delete {
                    object: d.clone(),
                    propagation: Some(FOREGROUND),
                    confirm_owners_gone: false,
                });
            }
            let blocking =
                dependents.iter().any(|d| d.owners.iter().any(|r| r.uid == object.uid && r.block_owner_deletion));
            if !blocking {
                actions.push(Action::RemoveFinalizer { object: object.clone(), finalizer: FOREGROUND });
            }
        }
        return actions;
    }
    if object.owners.is_empty() {
        return actions;
    }
    let (present, missing): (Vec<_>, Vec<_>) = object.owners.iter().partition(|r| owner_exists(&r.uid));
    if present.is_empty() {
        actions.push(Action::Delete { object: object.clone(), propagation: None, confirm_owners_gone: true });
    } else {
        for r in missing {
            actions.push(Action::RemoveOwnerRef { object: object.clone(), owner_uid: r.uid.clone() });
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

    fn plan_for(objects: &[ObjectRef], i: usize) -> Vec<Action> {
        let o = &objects[i];
        let exists = |uid: &str| objects.iter().any(|x| x.uid == uid);
        let dependents: Vec<ObjectRef> =
            objects.iter().filter(|d| d.owners.iter().any(|r| r.uid == o.uid)).cloned().collect();
        plan(o, exists, &dependents)
    }

    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_deleted_after_confirmation() {
        let s = [obj("a", &[("gone", true)], false, &[])];
        assert_eq!(
            plan_for(&s, 0),
            vec![Action::Delete { object: s[0].clone(), propagation: None, confirm_owners_gone: true }]
        );
    }

    #[test]
    fn a_dependent_with_a_live_owner_stays_and_loses_only_dangling_references() {
        let s = [obj("o", &[], false, &[]), obj("d", &[("o", true), ("gone", false)], false, &[])];
        assert_eq!(plan_for(&s, 0), vec![]);
        assert_eq!(plan_for(&s, 1), vec![Action::RemoveOwnerRef { object: s[1].clone(), owner_uid: "gone".into() }]);
    }

    #[test]
    fn foreground_deletion_deletes_dependents_first_then_releases_the_owner() {
        let s = [obj("o", &[], true, &[FOREGROUND]), obj("d", &[("o", true)], false, &[])];
        assert_eq!(
            plan_for(&s, 0),
            vec![Action::Delete { object: s[1].clone(), propagation: Some(FOREGROUND), confirm_owners_gone: false }]
        );
        assert_eq!(plan_for(&s, 1), vec![], "its owner exists: the dependent waits for the owner's decision");
        let s = [obj("o", &[], true, &[FOREGROUND]), obj("d", &[("o", false)], false, &[])];
        assert!(plan_for(&s, 0).contains(&Action::RemoveFinalizer { object: s[0].clone(), finalizer: FOREGROUND }));
        let s = [obj("o", &[], true, &[FOREGROUND])];
        assert_eq!(plan_for(&s, 0), vec![Action::RemoveFinalizer { object: s[0].clone(), finalizer: FOREGROUND }]);
    }

    #[test]
    fn orphan_deletion_frees_dependents_then_releases_the_owner() {
        let s = [obj("o", &[], true, &[ORPHAN]), obj("d", &[("o", true)], false, &[])];
        assert_eq!(plan_for(&s, 0), vec![Action::RemoveOwnerRef { object: s[1].clone(), owner_uid: "o".into() }]);
        let s = [obj("o", &[], true, &[ORPHAN])];
        assert_eq!(plan_for(&s, 0), vec![Action::RemoveFinalizer { object: s[0].clone(), finalizer: ORPHAN }]);
    }
}
