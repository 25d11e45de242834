//! tonic over turmoil's simulated TCP: the dialer peers and clients use, and the accept stream servers use.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use turmoil::net::{TcpListener, TcpStream};

/// A lazily connecting channel to `endpoint` over the simulated network.
pub fn dial(endpoint: Endpoint) -> Channel {
    endpoint.connect_with_connector_lazy(tower::service_fn(|uri: http::Uri| async move {
        let host = uri.host().ok_or_else(|| io::Error::other("no host in the address"))?;
        let port = uri.port_u16().ok_or_else(|| io::Error::other("no port in the address"))?;
        let stream = TcpStream::connect(format!("{host}:{port}")).await?;
        Ok::<_, io::Error>(TokioIo::new(stream))
    }))
}

/// An accepted simulated connection, as tonic's server wants it.
pub struct Conn(TcpStream);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Every connection accepted on `port` of this simulated host.
pub async fn incoming(port: u16) -> io::Result<impl futures::Stream<Item = io::Result<Conn>>> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    Ok(futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| Conn(stream));
        Some((conn, listener))
    }))
}
