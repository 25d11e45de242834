//! Generated protobuf types and gRPC stubs. Architecture invariant: these types stay at the gRPC edges
//! (`apiserver::etcd` and the store's peer transport); the rest of the code uses its own types.

#![allow(clippy::all, clippy::pedantic)]

pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

pub mod peer {
    tonic::include_proto!("raftsman.peer");
}

pub mod operations {
    tonic::include_proto!("raftsman.operations");
}
