//! Who may talk to whom: the cluster's certificate authorities and what they issue (`pki`), and mutual TLS
//! between replicas (`peer`).

pub mod peer;
pub mod pki;
