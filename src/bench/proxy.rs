//! The service proxy's cost: the same client and the same server on loopback, once directly and once through
//! the agent's TCP forwarding path (`agent::proxy::forward_tcp`), in one run. Short HTTP requests on kept-alive
//! connections at 1 and 64 concurrent connections (requests per second, p50 and p99 latency), and one bulk
//! transfer (MiB per second). Every loop runs until its deadline and stops by itself; all traffic stays on
//! loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// What to run.
#[derive(Clone, Debug)]
pub struct ProxyBenchConfig {
    /// How long each request measurement runs.
    pub measure: Duration,
    pub connections: Vec<usize>,
    /// Bytes of the bulk transfer.
    pub bulk_bytes: u64,
}

impl Default for ProxyBenchConfig {
    fn default() -> Self {
        ProxyBenchConfig { measure: Duration::from_secs(5), connections: vec![1, 64], bulk_bytes: 1 << 30 }
    }
}

/// One request measurement.
#[derive(Clone, Debug, Default)]
pub struct Requests {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct ProxyResult {
    /// (connections, direct, proxied)
    pub requests: Vec<(usize, Requests, Requests)>,
    /// MiB per second, direct and proxied.
    pub bulk: (f64, f64),
}

/// A server answering every request of a connection with a two-byte body.
async fn http_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut held = Vec::new();
                loop {
                    let Ok(read) = stream.read(&mut buffer).await else { return };
                    if read == 0 {
                        return;
                    }
                    held.extend_from_slice(&buffer[..read]);
                    while let Some(end) = held.windows(4).position(|w| w == b"\r\n\r\n") {
                        held.drain(..end + 4);
                        if stream.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(address)
}

/// A server that sends `bytes` to each connection, then closes it.
async fn bulk_server(bytes: u64) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 1 << 16];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    Ok(address)
}

/// `connections` clients sending requests one after the other to `address` until `measure` has passed.
async fn requests(address: SocketAddr, connections: usize, measure: Duration) -> std::io::Result<Requests> {
    let deadline = Instant::now() + measure;
    let mut clients = Vec::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut buffer = vec![0u8; 1024];
            while Instant::now() < deadline {
                let started = Instant::now();
                if stream.write_all(REQUEST).await.is_err() {
                    break;
                }
                let mut got = 0;
                while got < RESPONSE.len() {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return latencies,
                        Ok(n) => got += n,
                    }
                }
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap_or_default());
    }
    all.sort();
    let at = |p: f64| all.get(((all.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    Ok(Requests { per_second: all.len() as f64 / measure.as_secs_f64(), p50: at(0.50), p99: at(0.99) })
}

/// MiB per second of one transfer from `address` to its end.
async fn bulk(address: SocketAddr) -> std::io::Result<f64> {
    let mut stream = TcpStream::connect(address).await?;
    let started = Instant::now();
    let mut buffer = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// A proxy in front of `server`, through the agent's forwarding path.
async fn proxied(server: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    Ok((address, crate::agent::proxy::forward_tcp(listener, vec![server])))
}

pub async fn run(config: &ProxyBenchConfig) -> std::io::Result<ProxyResult> {
    let server = http_server().await?;
    let (proxy, proxy_task) = proxied(server).await?;
    let mut result = ProxyResult::default();
    for &connections in &config.connections {
        let direct = requests(server, connections, config.measure).await?;
        let through = requests(proxy, connections, config.measure).await?;
        result.requests.push((connections, direct, through));
    }
    let bulk_source = bulk_server(config.bulk_bytes).await?;
    let (bulk_proxy, bulk_task) = proxied(bulk_source).await?;
    result.bulk = (bulk(bulk_source).await?, bulk(bulk_proxy).await?);
    proxy_task.abort();
    bulk_task.abort();
    Ok(result)
}

pub fn table(config: &ProxyBenchConfig, r: &ProxyResult) -> String {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "proxy: short HTTP requests on kept-alive connections for {:?} each, and one transfer of {} MiB\n\n",
        config.measure,
        config.bulk_bytes >> 20
    );
    out.push_str("| measure | direct | through the proxy | proxied / direct |\n|---|---|---|---|\n");
    for (connections, direct, through) in &r.requests {
        out.push_str(&format!(
            "| requests/s, {connections} connections | {:.0} | {:.0} | {:.2} |\n",
            direct.per_second,
            through.per_second,
            through.per_second / direct.per_second.max(f64::MIN_POSITIVE)
        ));
        out.push_str(&format!(
            "| p50 / p99, {connections} connections | {} / {} | {} / {} | added p99 {} |\n",
            ms(direct.p50),
            ms(direct.p99),
            ms(through.p50),
            ms(through.p99),
            ms(through.p99.saturating_sub(direct.p99))
        ));
    }
    out.push_str(&format!(
        "| bulk transfer, MiB/s | {:.0} | {:.0} | {:.2} |\n",
        r.bulk.0,
        r.bulk.1,
        r.bulk.1 / r.bulk.0.max(f64::MIN_POSITIVE)
    ));
    out
}
