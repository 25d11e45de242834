//! The cluster DNS of `raftsman agent`: a DNS server on the cluster DNS address (the tenth address of the
//! service range, which the `kube-system/kube-dns` Service holds), UDP and TCP port 53, that
//! answers the cluster's names from the Services and EndpointSlices the service proxy follows (`zone.rs`) and
//! forwards every other name to the host's resolvers (the nameservers of the host's `/etc/resolv.conf`).
//! Pods are pointed at it by the `/etc/resolv.conf` the agent writes for them (`resolv.rs`).
//!
//! Messages are read and written with `hickory-proto`; the server loops are the agent's own. It answers from
//! the last zone it built while no replica answers, as the proxy forwards.
//!
//! Limits: a UDP answer that does not fit 512 bytes (or the client's EDNS size) is sent truncated, so the
//! client asks again over TCP; at most `DNS_TCP_CONNECTIONS_MAX` TCP clients and `DNS_FORWARDS_IN_FLIGHT_MAX`
//! forwarded questions at once; a forwarded question waits `DNS_FORWARD_TIMEOUT_MS` for its answer.

pub mod resolv;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use super::services::Followed;
use crate::apiserver::registry::allocations::ServiceRange;
use crate::limits;
use zone::{Answer, Data, Kind, Zone};

/// The TTL of every answer from the zone (as upstream's CoreDNS gives).
const TTL_SECS: u32 = 5;

/// What the server answers with: the zone of the moment and where other names go.
#[derive(Clone)]
pub struct Server {
    pub zone: watch::Receiver<Arc<Zone>>,
    /// The host's resolvers.
    pub upstream: Vec<SocketAddr>,
    forwards: Arc<Semaphore>,
}

impl Server {
    pub fn new(zone: watch::Receiver<Arc<Zone>>, upstream: Vec<SocketAddr>) -> Server {
        Server { zone, upstream, forwards: Arc::new(Semaphore::new(limits::DNS_FORWARDS_IN_FLIGHT_MAX)) }
    }
}

/// Serves DNS on `address` (UDP and TCP) until dropped.
pub async fn serve(address: SocketAddr, server: Server) -> std::io::Result<()> {
    let udp = Arc::new(UdpSocket::bind(address).await?);
    let tcp = TcpListener::bind(address).await?;
    tracing::info!(%address, "dns: serving the cluster's names");
    let over_udp = {
        let server = server.clone();
        async move {
            let mut buffer = vec![0u8; limits::DNS_MESSAGE_BYTES_MAX];
            loop {
                let (len, client) = match udp.recv_from(&mut buffer).await {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns: receiving failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (server, udp, query) = (server.clone(), udp.clone(), buffer[..len].to_vec());
                tokio::spawn(async move {
                    if let Some(reply) = respond(&server, &query, true).await {
                        let _ = udp.send_to(&reply, client).await;
                    }
                });
            }
        }
    };
    let over_tcp = async move {
        let clients = Arc::new(Semaphore::new(limits::DNS_TCP_CONNECTIONS_MAX));
        loop {
            let stream = match tcp.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: accepting failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = clients.clone().try_acquire_owned() else { continue };
            let server = server.clone();
            tokio::spawn(async move {
                let idle = Duration::from_secs(limits::DNS_TCP_IDLE_SECS);
                let _ = tokio::time::timeout(idle, serve_tcp(stream, &server)).await;
                drop(permit);
            });
        }
    };
    tokio::join!(over_udp, over_tcp);
    Ok(())
}

/// Answers the length-prefixed questions of one TCP client until it closes.
async fn serve_tcp(mut stream: TcpStream, server: &Server) -> std::io::Result<()> {
    loop {
        let len = stream.read_u16().await? as usize;
        let mut query = vec![0u8; len];
        stream.read_exact(&mut query).await?;
        let Some(reply) = respond(server, &query, false).await else { return Ok(()) };
        stream.write_u16(reply.len() as u16).await?;
        stream.write_all(&reply).await?;
    }
}

/// The reply to the wire message `query`; `None` for something that is not a question.
async fn respond(server: &Server, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let id = request.metadata.id;
    let Some(question) = request.queries.first().filter(|_| request.metadata.op_code == OpCode::Query) else {
        return Message::error_msg(id, request.metadata.op_code, ResponseCode::NotImp).to_vec().ok();
    };
    let name = question.name().to_ascii();
    let kind = match question.query_type() {
        RecordType::A => Kind::A,
        RecordType::AAAA => Kind::Aaaa,
        RecordType::SRV => Kind::Srv,
        RecordType::PTR => Kind::Ptr,
        _ => Kind::Other,
    };
    let answer = server.zone.borrow().answer(&name, kind);
    let records = match answer {
        Answer::Elsewhere => return forward(server, query, udp).await,
        Answer::NxDomain => None,
        Answer::Records(records) => Some(records),
    };
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    match records {
        None => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(records) => {
            for data in records {
                if let Some(record) = record(question.name(), data) {
                    reply.add_answer(record);
                }
            }
        }
    }
    let mut bytes = reply.to_vec().ok()?;
    let room = request.edns.as_ref().map_or(512, |e| usize::from(e.max_payload()).max(512));
    if udp && bytes.len() > room {
        bytes = reply.truncate().to_vec().ok()?;
    }
    Some(bytes)
}

fn record(owner: &Name, data: Data) -> Option<Record> {
    let rdata = match data {
        Data::Address(IpAddr::V4(ip)) => RData::A(A(ip)),
        Data::Address(IpAddr::V6(ip)) => RData::AAAA(AAAA(ip)),
        Data::Service { port, target } => {
            RData::SRV(SRV::new(0, 100, port, Name::from_ascii(format!("{target}.")).ok()?))
        }
        Data::Pointer(target) => RData::PTR(PTR(Name::from_ascii(format!("{target}.")).ok()?)),
    };
    Some(Record::from_rdata(owner.clone(), TTL_SECS, rdata))
}

/// Serves the cluster's names on `address` for `domain` from what `followed` holds, rebuilding the zone on
/// each change, until dropped; the host's resolvers (`upstream`) answer the other names.
pub async fn run(
    mut followed: Followed,
    address: SocketAddr,
    domain: String,
    service_range: ServiceRange,
    upstream: Vec<SocketAddr>,
) {
    let (zone_tx, zone_rx) = watch::channel(Arc::new(Zone::default()));
    let server = Server::new(zone_rx, upstream);
    let serving = async {
        if let Err(e) = serve(address, server).await {
            tracing::error!(%address, error = %e, "dns: cannot serve");
        }
    };
    let building = async {
        if !followed.ready().await {
            return;
        }
        loop {
            let zone = Zone::build(&domain, Some(service_range), &followed.services.state(), &followed.slices.state());
            zone_tx.send_if_modified(|current| {
                let changed = **current != zone;
                if changed {
                    *current = Arc::new(zone);
                }
                changed
            });
            if !followed.next_change().await {
                return;
            }
        }
    };
    tokio::join!(serving, building);
}

/// The resolvers of the host's `/etc/resolv.conf` (port 53), leaving out `own` (the cluster DNS itself).
pub fn host_resolvers(host: &resolv::HostResolv, own: IpAddr) -> Vec<SocketAddr> {
    host.nameservers
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .filter(|ip| *ip != own)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks the host's resolvers in turn; SERVFAIL when none answers.
async fn forward(server: &Server, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let servfail = || {
        let request = Message::from_vec(query).ok()?;
        let mut reply = Message::error_msg(request.metadata.id, OpCode::Query, ResponseCode::ServFail);
        reply.add_queries(request.queries);
        reply.to_vec().ok()
    };
    let Ok(_permit) = server.forwards.try_acquire() else { return servfail() };
    let timeout = Duration::from_millis(limits::DNS_FORWARD_TIMEOUT_MS);
    for upstream in &server.upstream {
        let asked = async {
            let any: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            if udp {
                let socket = UdpSocket::bind(any).await?;
                socket.connect(upstream).await?;
                socket.send(query).await?;
                let mut buffer = vec![0u8; limits::DNS_MESSAGE_BYTES_MAX];
                let len = socket.recv(&mut buffer).await?;
                buffer.truncate(len);
                Ok::<_, std::io::Error>(buffer)
            } else {
                let mut stream = TcpStream::connect(upstream).await?;
                stream.write_u16(query.len() as u16).await?;
                stream.write_all(query).await?;
                let len = stream.read_u16().await? as usize;
                let mut buffer = vec![0u8; len];
                stream.read_exact(&mut buffer).await?;
                Ok(buffer)
            }
        };
        if let Ok(Ok(reply)) = tokio::time::timeout(timeout, asked).await {
            return Some(reply);
        }
    }
    servfail()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use serde_json::json;

    fn server() -> Server {
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.20"}}),
        )
        .unwrap();
        let zone = Zone::build("cluster.local", None, &[Arc::new(service)], &[]);
        let (_, rx) = watch::channel(Arc::new(zone));
        Server::new(rx, Vec::new())
    }

    fn ask(name: &str, kind: RecordType) -> Vec<u8> {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        query.to_vec().unwrap()
    }

    #[tokio::test]
    async fn cluster_names_are_answered_and_missing_ones_are_nxdomain() {
        let server = server();
        let reply = Message::from_vec(
            &respond(&server, &ask("web.default.svc.cluster.local.", RecordType::A), true).await.unwrap(),
        )
        .unwrap();
        assert_eq!((reply.metadata.id, reply.metadata.response_code), (7, ResponseCode::NoError));
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data, RData::A(A("10.96.0.20".parse().unwrap())));
        let missing = respond(&server, &ask("nope.default.svc.cluster.local.", RecordType::A), true).await.unwrap();
        assert_eq!(Message::from_vec(&missing).unwrap().metadata.response_code, ResponseCode::NXDomain);
        // Elsewhere with no resolver to ask: SERVFAIL.
        let away = respond(&server, &ask("example.invalid.", RecordType::A), true).await.unwrap();
        assert_eq!(Message::from_vec(&away).unwrap().metadata.response_code, ResponseCode::ServFail);
        assert!(respond(&server, b"garbage", true).await.is_none());
    }
}
