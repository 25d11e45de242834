//! raftsman's own operator calls on the etcd client port (`proto/operations.proto`), beside etcd's services and
//! with the port's TLS and client certificates: what etcd's API has no place for (`raftsman ctl` uses them).

use tonic::{Request, Response, Status};

use crate::proto::operations::operations_server::{Operations, OperationsServer};
use crate::proto::operations::{MemberVersion, VersionsRequest, VersionsResponse};
use crate::store::version::Advertised;
use crate::store::Store;

pub struct OperationsService {
    store: Store,
}

impl OperationsService {
    pub fn server(store: Store) -> OperationsServer<OperationsService> {
        OperationsServer::new(OperationsService { store })
    }
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn versions(&self, _req: Request<VersionsRequest>) -> Result<Response<VersionsResponse>, Status> {
        let members = self
            .store
            .member_versions()
            .into_iter()
            .map(|(member, version)| MemberVersion {
                id: member.id,
                name: member.name,
                is_learner: member.is_learner,
                version: version.as_ref().ok().map(|v| v.to_proto()),
                error: version.err().unwrap_or_default(),
            })
            .collect();
        let cluster = self.store.cluster_version().map(Advertised::to_proto);
        let (member_id, own) = (self.store.member_id(), Some(self.store.advertised().to_proto()));
        Ok(Response::new(VersionsResponse { members, cluster, member_id, own }))
    }
}
