//! The controller runtime every leader component runs on: shared informers (`informer`), work queues with
//! workers (`queue`), and the mapping of a child's change to its controller owner.
//!
//! A component registers, before the term's informers start, the kinds it reads and handlers that turn
//! changes into keys on its queues; once every informer has listed (`Synced`), its workers take keys and
//! reconcile them: a pure decision over the cached objects, then writes with preconditions, then a `Next`
//! (done, or requeue after a delay). A term's informers, queues and workers are created for that term and
//! dropped with it.

pub mod informer;
pub mod queue;

pub use informer::{Change, Informer, Informers, Running, Synced};
pub use queue::{run_workers, Next, WorkQueue};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The owner reference that names an object's controller (`controller: true`), if any: a child's change is
/// its controller's business.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Whether a failed request was a fenced write refused because this leadership term has ended: the term's
/// components are about to be stopped, and retrying is pointless.
pub fn is_fenced(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.reason == crate::apiserver::errors::FENCED_REASON)
}

/// Whether a failed write may still take effect: the API answered 5xx (the store's deadline passed, the leader
/// changed, a fault) or nothing came back at all. Only a 4xx answer says that the write changed nothing.
pub fn outcome_unknown(error: &kube::Error) -> bool {
    !matches!(error, kube::Error::Api(e) if (400..500).contains(&e.code))
}
