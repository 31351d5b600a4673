//! The I/O shell of a `CONNECT` tunnel through an HTTP proxy: write the `CONNECT` head on a
//! fresh connection to the proxy, read its answer under the deadlines into the sans-IO
//! `proxy::Tunnel`, which decides when the tunnel is open (or why not).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{NetError, TcpConn};
use crate::proxy::{Tunnel, TunnelError};

/// Read buffer for the proxy's answer: a `CONNECT` answer is a short head (a longer one
/// takes several reads, up to the head limit of `http`).
const ANSWER_READ_BUF: usize = 1024;

/// Why a tunnel (or TLS through it) could not be set up.
#[derive(Debug)]
pub enum TunnelFailure {
    /// Connecting to the proxy failed, or the connection to it broke or stalled before its
    /// answer was complete; `peer` is the proxy address it happened with, when known.
    Proxy {
        peer: Option<SocketAddr>,
        error: NetError,
    },
    /// The proxy's answer did not open the tunnel.
    Answer {
        peer: SocketAddr,
        error: TunnelError,
    },
    /// The TLS handshake with the origin, through the open tunnel, failed.
    Origin { peer: SocketAddr, error: NetError },
}

impl TunnelFailure {
    /// The proxy address this failure happened with, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            TunnelFailure::Proxy { peer, error } => peer.or_else(|| error.peer()),
            TunnelFailure::Answer { peer, .. } | TunnelFailure::Origin { peer, .. } => Some(*peer),
        }
    }
}

/// Ask the proxy at the other end of `tcp` for the tunnel `request` (a `CONNECT` head) and
/// wait for its answer: each read within `idle`, all before `deadline`. On `Ok` the next
/// byte on `tcp` is the origin's.
pub(super) async fn open(
    tcp: &mut TcpConn,
    request: Vec<u8>,
    idle: Duration,
    deadline: Instant,
) -> Result<(), TunnelFailure> {
    let peer = tcp.peer();
    let proxy = |error| TunnelFailure::Proxy {
        peer: Some(peer),
        error,
    };
    let (res, _) = tcp.write_all(request, deadline).await;
    res.map_err(proxy)?;
    let mut tunnel = Tunnel::new();
    let mut buf = Vec::with_capacity(ANSWER_READ_BUF);
    loop {
        let io_deadline = deadline.min(Instant::now() + idle);
        let (res, b) = tcp.read(buf, io_deadline).await;
        buf = b;
        let open = match res.map_err(proxy)? {
            0 => Err(tunnel.closed()),
            n => tunnel.received(&buf[..n]),
        };
        match open {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => return Err(TunnelFailure::Answer { peer, error }),
        }
    }
}
