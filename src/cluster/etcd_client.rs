//! A small etcd v3 client over the generated stubs: what `up`, the benchmark and the tests use to talk to
//! raftsman and to etcd alike.

use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::limits;
use crate::proto::etcd as pb;
use crate::proto::etcd::cluster_client::ClusterClient;
use crate::proto::etcd::kv_client::KvClient;
use crate::proto::etcd::maintenance_client::MaintenanceClient;
use crate::proto::etcd::watch_client::WatchClient;

/// A connection to one endpoint.
#[derive(Clone)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    /// A lazily connecting client for `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str) -> Result<EtcdClient, tonic::transport::Error> {
        Ok(EtcdClient { channel: Self::endpoint(endpoint)?.connect_lazy() })
    }

    /// A lazily connecting client for `endpoint` (`https://host:port`) over TLS (`mutual_tls::client_config`).
    pub fn with_tls(endpoint: &str, tls: ClientTlsConfig) -> Result<EtcdClient, tonic::transport::Error> {
        Ok(EtcdClient { channel: Self::endpoint(endpoint)?.tls_config(tls)?.connect_lazy() })
    }

    fn endpoint(endpoint: &str) -> Result<Endpoint, tonic::transport::Error> {
        Ok(Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(Duration::from_millis(limits::ETCD_CLIENT_CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(limits::ETCD_CLIENT_REQUEST_TIMEOUT_MS))
            .tcp_nodelay(true))
    }

    /// A client over a channel the caller made (the simulation's network, for one).
    pub fn from_channel(channel: Channel) -> EtcdClient {
        EtcdClient { channel }
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(limits::CLIENT_RESPONSE_BYTES_MAX)
    }

    pub fn watch_client(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone()).max_decoding_message_size(limits::CLIENT_RESPONSE_BYTES_MAX)
    }

    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone()).max_decoding_message_size(limits::CLIENT_RESPONSE_BYTES_MAX)
    }

    /// raftsman's own operator calls on the same port (`apiserver::operations`).
    pub fn operations(&self) -> crate::proto::operations::operations_client::OperationsClient<Channel> {
        crate::proto::operations::operations_client::OperationsClient::new(self.channel.clone())
    }

    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone()).max_decoding_message_size(limits::CLIENT_RESPONSE_BYTES_MAX)
    }

    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<pb::PutResponse, tonic::Status> {
        let req = pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        Ok(self.kv().put(req).await?.into_inner())
    }

    /// A linearizable (or, with `serializable`, local) read of one key.
    pub async fn get(&self, key: impl Into<Vec<u8>>, serializable: bool) -> Result<pb::RangeResponse, tonic::Status> {
        let req = pb::RangeRequest { key: key.into(), serializable, ..Default::default() };
        Ok(self.kv().range(req).await?.into_inner())
    }

    /// Every key starting with `prefix`.
    pub async fn get_prefix(&self, prefix: &[u8], serializable: bool) -> Result<pb::RangeResponse, tonic::Status> {
        let req = pb::RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            serializable,
            ..Default::default()
        };
        Ok(self.kv().range(req).await?.into_inner())
    }

    pub async fn status(&self) -> Result<pb::StatusResponse, tonic::Status> {
        Ok(MaintenanceClient::new(self.channel.clone()).status(pb::StatusRequest {}).await?.into_inner())
    }
}

/// The range end that selects every key with `prefix` (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
