//! Who may talk to whom, and what is kept secret: the cluster's certificate authorities and what they issue
//! (`pki`), mutual TLS between replicas (`peer`), and the API's encryption at rest (`encryption`).

pub mod encryption;
pub mod peer;
pub mod pki;
