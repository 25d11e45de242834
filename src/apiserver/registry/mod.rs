//! The registry of stored Kubernetes objects: how each verb reads and writes them (`verbs`, `apply`), lists and
//! watches (`collections`), cluster IP and node port allocation (`allocations`), admission that reads other
//! objects (`admission`: ServiceAccounts), the objects' keys, values and transactions in the store
//! (`objects`), and the leases of the objects stored with a time to live (`ttl`: Events).

pub mod admission;
pub mod allocations;
pub mod apply;
pub mod collections;
pub mod objects;
pub mod ttl;
pub mod verbs;
