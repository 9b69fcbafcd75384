//! The network seam: everything the transport and membership need from sockets.
//!
//! Owns: the [`Net`] trait and its production implementation over tokio.
//! Does not own: framing, authentication, or the simulated implementation (that
//! lives in `geoul-sim`, over turmoil), so production code never links the simulator.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream between two endpoints (a TCP connection, real or simulated).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A bound TCP listener.
pub trait Listener: Send + Sync + 'static {
    /// The stream type accepted connections use.
    type Stream: Stream;
    /// Waits for the next inbound connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound UDP socket.
pub trait Datagram: Send + Sync + 'static {
    /// Sends one datagram.
    fn send_to(&self, buf: &[u8], to: SocketAddr)
        -> impl Future<Output = io::Result<usize>> + Send;
    /// Receives one datagram into `buf`.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// The address actually bound.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A network: tokio sockets in production, turmoil's in simulation.
pub trait Net: Clone + Send + Sync + 'static {
    /// Stream type of outbound and inbound connections.
    type Stream: Stream;
    /// Listener type.
    type Listener: Listener<Stream = Self::Stream>;
    /// UDP socket type.
    type Datagram: Datagram;

    /// Opens a TCP connection.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Binds a TCP listener.
    fn listen(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Binds a UDP socket.
    fn bind_datagram(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Datagram>> + Send;
}

/// The real network, through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        // Small request/response frames: latency matters more than packet count.
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Datagram for tokio::net::UdpSocket {
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        tokio::net::UdpSocket::send_to(self, buf, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::recv_from(self, buf).await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;
    type Datagram = tokio::net::UdpSocket;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    async fn listen(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }
    async fn bind_datagram(&self, addr: SocketAddr) -> io::Result<Self::Datagram> {
        tokio::net::UdpSocket::bind(addr).await
    }
}
