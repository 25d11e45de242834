//! TLS on the etcd client port (`mutual_tls` with the etcd authority), as etcd's `--client-cert-auth`: the
//! port serves the replica's etcd certificate and accepts only clients with a certificate from the etcd
//! authority. Any such client may read and write every key, as on an etcd without its own users: the authority
//! is kept apart from the cluster's and the peers', so that neither a Kubernetes user nor a node can reach the
//! store, and an etcd client cannot pose as a replica.

/// The name of the etcd authority's files in a PKI directory, and its subject.
pub const AUTHORITY: &str = "etcd-ca";
pub const AUTHORITY_NAME: &str = "raftsman-etcd-ca";

/// The name of replica `name`'s etcd serving certificate files.
pub fn server_files(name: &str) -> String {
    format!("{name}-etcd")
}

/// The name of the etcd client certificate's files that `raftsman up` makes for etcdctl.
pub const CLIENT_FILES: &str = "etcd-client";
