//! The simulated network: turmoil sockets behind geoul's [`Net`] seam, plus
//! deterministic datagram loss (turmoil's own loss model fails whole links; SWIM
//! tests need independent per-message loss).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use geoul_transport::{Datagram, Listener, Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Drops each datagram independently with probability `rate`, from a seeded RNG
/// so a seed reproduces exactly which datagrams were lost.
#[derive(Debug)]
pub struct Loss {
    rate: Mutex<f64>,
    rng: Mutex<StdRng>,
}

impl Loss {
    /// No loss yet; `seed` fixes the sequence of drop decisions.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            rate: Mutex::new(0.0),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// Sets the per-datagram drop probability.
    pub fn set_rate(&self, rate: f64) {
        *self.rate.lock().unwrap_or_else(PoisonError::into_inner) = rate.clamp(0.0, 1.0);
    }

    fn drop_this(&self) -> bool {
        let rate = *self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        rate > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .random_bool(rate)
    }
}

/// turmoil's network as a [`Net`].
#[derive(Clone, Debug)]
pub struct SimNet {
    loss: Arc<Loss>,
}

impl SimNet {
    /// A network whose datagrams pass through `loss`.
    pub fn new(loss: Arc<Loss>) -> Self {
        Self { loss }
    }
}

/// A turmoil TCP listener.
pub struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A turmoil UDP socket with injected loss.
pub struct SimDatagram {
    socket: turmoil::net::UdpSocket,
    loss: Arc<Loss>,
}

impl Datagram for SimDatagram {
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        if self.loss.drop_this() {
            return Ok(buf.len());
        }
        self.socket.send_to(buf, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Net for SimNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = SimListener;
    type Datagram = SimDatagram;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }
    async fn listen(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await.map(SimListener)
    }
    async fn bind_datagram(&self, addr: SocketAddr) -> io::Result<Self::Datagram> {
        let socket = turmoil::net::UdpSocket::bind(addr).await?;
        Ok(SimDatagram {
            socket,
            loss: self.loss.clone(),
        })
    }
}
