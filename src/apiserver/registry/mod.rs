//! The registry of stored Kubernetes objects: how each verb reads and writes them (`verbs`, `apply`), lists and
//! watches (`collections`), cluster IP and node port allocation (`allocations`), admission that reads other
//! objects (`admission`: ServiceAccounts), and the objects' keys, values and transactions in the store
//! (`objects`).

pub mod admission;
pub mod allocations;
pub mod apply;
pub mod collections;
pub mod objects;
pub mod verbs;
