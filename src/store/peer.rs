//! The server half of the peer protocol: hands Raft messages to openraft and forwarded requests to the store.

use std::io::Cursor;

use futures::StreamExt;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::network::{decode, encode, LeaderRequest, SnapshotHeader};
use super::types::*;
use super::Store;
use crate::limits;
use crate::proto::peer::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::peer::{RaftMessage, SnapshotChunk};

pub struct PeerService {
    store: Store,
}

impl PeerService {
    pub fn server(store: Store) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(PeerService { store })
            .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
    }
}

fn bad_payload(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

/// A Raft reply, with Raft's own errors carried as text (the caller treats them as the peer being unreachable).
fn reply<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Response<RaftMessage>, Status> {
    let result = result.map_err(|e| e.to_string());
    Ok(Response::new(RaftMessage { payload: encode(&result) }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        reply(self.store.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        reply(self.store.raft.vote(rpc).await)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().payload).map_err(bad_payload)?;
        reply(self.store.raft.handle_transfer_leader(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        let mut chunks = req.into_inner();
        let first = chunks.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let header: SnapshotHeader = decode(&first.header).map_err(bad_payload)?;
        let mut data = first.data;
        while let Some(chunk) = chunks.next().await {
            data.extend_from_slice(&chunk?.data);
            if data.len() > limits::SNAPSHOT_BYTES_MAX {
                return Err(Status::resource_exhausted("snapshot larger than the limit"));
            }
        }
        let snapshot = Snapshot { meta: header.meta, snapshot: Cursor::new(data) };
        reply(self.store.raft.install_full_snapshot(header.vote, snapshot).await)
    }

    async fn forward(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let request: LeaderRequest = decode(&req.into_inner().payload).map_err(bad_payload)?;
        let response = self.store.serve_forwarded(request).await;
        Ok(Response::new(RaftMessage { payload: encode(&response) }))
    }
}
