//! The ownership graph: every stored object's metadata as the informers last reported it, indexed by uid, by
//! owner, by namespace and by name. The garbage collector and the namespace controller decide from it; it is
//! updated by the informers' metadata handler before any component's handler runs.
//!
//! Architecture invariant: the graph holds exactly the objects the informers hold (one entry per live object),
//! so it is bounded by their caches. Its lock is a std mutex, never held across an await.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::runtime::Change;
use super::{object_ref, ObjectRef};
use crate::apis::catalog::Resource;

/// Which object a name names: resource (`plural.group`), namespace and name.
type NameKey = (&'static str, &'static str, Option<String>, String);

#[derive(Default)]
struct Inner {
    objects: HashMap<String, ObjectRef>,
    /// Owner uid → the uids of the objects that name it (whether or not the owner exists).
    dependents: HashMap<String, BTreeSet<String>>,
    /// Namespace → the uids of the objects in it.
    namespaces: HashMap<String, BTreeSet<String>>,
    names: HashMap<NameKey, String>,
    /// (namespace, plural, group) → how many such objects there are.
    counts: HashMap<(String, &'static str, &'static str), usize>,
}

#[derive(Default)]
pub struct Graph {
    inner: Mutex<Inner>,
}

fn name_key(o: &ObjectRef) -> NameKey {
    (o.resource.plural, o.resource.group, o.namespace.clone(), o.name.clone())
}

impl Inner {
    fn remove(&mut self, uid: &str) -> Option<ObjectRef> {
        let old = self.objects.remove(uid)?;
        for owner in &old.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        if let Some(ns) = &old.namespace {
            if let Some(set) = self.namespaces.get_mut(ns) {
                set.remove(uid);
                if set.is_empty() {
                    self.namespaces.remove(ns);
                }
            }
            let count = (ns.clone(), old.resource.plural, old.resource.group);
            if let Some(n) = self.counts.get_mut(&count) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&count);
                }
            }
        }
        let key = name_key(&old);
        if self.names.get(&key).map(String::as_str) == Some(uid) {
            self.names.remove(&key);
        }
        Some(old)
    }

    fn insert(&mut self, o: ObjectRef) {
        for owner in &o.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(o.uid.clone());
        }
        if let Some(ns) = &o.namespace {
            self.namespaces.entry(ns.clone()).or_default().insert(o.uid.clone());
            *self.counts.entry((ns.clone(), o.resource.plural, o.resource.group)).or_default() += 1;
        }
        self.names.insert(name_key(&o), o.uid.clone());
        self.objects.insert(o.uid.clone(), o);
    }
}

impl Graph {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one change; returns the object as it was before (if the graph held it) and as it is now (None
    /// once deleted).
    pub fn apply(
        &self,
        resource: &'static Resource,
        change: Change<'_, ObjectMeta>,
    ) -> (Option<ObjectRef>, Option<ObjectRef>) {
        let Some(now) = object_ref(resource, change.object(), None) else { return (None, None) };
        let mut inner = self.lock();
        let before = inner.remove(&now.uid);
        match change {
            Change::Applied(_) => {
                inner.insert(now.clone());
                (before, Some(now))
            }
            Change::Deleted(_) => (before.or(Some(now)), None),
        }
    }

    pub fn get(&self, uid: &str) -> Option<ObjectRef> {
        self.lock().objects.get(uid).cloned()
    }

    /// The uid of every object.
    pub fn uids(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.lock().objects.contains_key(uid)
    }

    /// The objects that name `owner_uid` among their owners.
    pub fn dependents(&self, owner_uid: &str) -> Vec<ObjectRef> {
        let inner = self.lock();
        let uids = inner.dependents.get(owner_uid).into_iter().flatten();
        uids.filter_map(|u| inner.objects.get(u).cloned()).collect()
    }

    /// Every object in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef> {
        let inner = self.lock();
        let uids = inner.namespaces.get(namespace).into_iter().flatten();
        uids.filter_map(|u| inner.objects.get(u).cloned()).collect()
    }

    /// The object of `resource` with this namespace and name.
    pub fn find(&self, resource: &Resource, namespace: Option<&str>, name: &str) -> Option<ObjectRef> {
        let inner = self.lock();
        let key = (resource.plural, resource.group, namespace.map(String::from), name.to_string());
        inner.names.get(&key).and_then(|uid| inner.objects.get(uid).cloned())
    }

    /// Whether `namespace` holds an object of `resource`.
    pub fn namespace_has(&self, namespace: &str, resource: &'static Resource) -> bool {
        self.lock().counts.contains_key(&(namespace.to_string(), resource.plural, resource.group))
    }
}
