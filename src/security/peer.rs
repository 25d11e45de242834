//! Mutual TLS between replicas (`mutual_tls` with the peer authority): the peer port accepts only clients
//! with a certificate from the peer authority, and a replica dials its peers with its own and accepts only
//! servers with one from the same authority. A replica without such a certificate (another cluster's, an
//! agent's, none) can neither send Raft messages to a replica nor receive them.

/// The name of the peer authority's files in a PKI directory, and its subject.
pub const AUTHORITY: &str = "peer-ca";
pub const AUTHORITY_NAME: &str = "raftsman-peer-ca";

/// The name of replica `name`'s peer certificate files.
pub fn files(name: &str) -> String {
    format!("{name}-peer")
}
