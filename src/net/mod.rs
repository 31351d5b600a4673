//! The only tokio-uring socket code: TCP connect/read/write with deadlines (`tcp`), TLS over
//! it with rustls driven by hand (`tls`), and [`Stream`], the one type the fetch path and the
//! load mode talk to.
//!
//! tokio-uring 0.5 drops in-flight operations without cancelling them, so every read/write
//! that times out shuts the socket down (`shutdown(Both)`) before it is dropped; that is
//! wrapped in [`tcp::TcpConn`] and nobody outside this module touches a raw uring stream.

pub mod tcp;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::ErrorKind;

pub use tcp::TcpConn;
pub use tls::{TlsContext, TlsStats};

/// Size of the pooled read buffers handed to the kernel.
pub const READ_BUF_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("connect to {0} timed out after {1} ms")]
    ConnectTimeout(SocketAddr, u64),
    #[error("{0} unreachable: {1}")]
    Unreachable(SocketAddr, String),
    #[error("connection reset: {0}")]
    Reset(String),
    /// No byte read/written within the idle or URL deadline.
    #[error("timed out after {0} ms waiting for the server")]
    Timeout(u64),
    /// TLS failure: the message says which (unknown issuer, expired, name mismatch, not TLS,
    /// handshake timeout, truncated without close_notify...).
    #[error("TLS: {0}")]
    Tls(String),
    /// Any other socket error, with the OS message.
    #[error("network error: {0}")]
    Io(String),
}

impl NetError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::Refused(_) => ErrorKind::ConnectRefused,
            NetError::ConnectTimeout(..) => ErrorKind::ConnectTimeout,
            NetError::Unreachable(..) => ErrorKind::Unreachable,
            NetError::Reset(_) | NetError::Io(_) => ErrorKind::Reset,
            NetError::Timeout(_) => ErrorKind::Timeout,
            NetError::Tls(_) => ErrorKind::Tls,
        }
    }
}

/// How to open connections.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    /// Source addresses to spread connections over (`--bind`); empty = kernel's choice.
    /// Bound with IP_BIND_ADDRESS_NO_PORT; EADDRNOTAVAIL (ports exhausted) is retried on the
    /// next source address and after a short back-off, never reported as a failure until the
    /// deadline.
    pub bind: Rc<[IpAddr]>,
}

/// A connection, plain or TLS, with owned-buffer I/O under deadlines.
pub enum Stream {
    Plain(TcpConn),
    Tls(Box<tls::TlsConn>),
}

impl Stream {
    /// Connect to the first address of `addrs` that answers (next one on failure; the last
    /// error is returned), within `opts.connect_timeout` each and `deadline` overall; for
    /// `tls = Some((ctx, server_name))` also complete the TLS handshake (SNI = `server_name`
    /// unless it is an IP literal) before `deadline`.
    pub async fn connect(
        addrs: &[SocketAddr],
        opts: &ConnectOptions,
        tls: Option<(&TlsContext, &str)>,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        let _ = (addrs, opts, tls, deadline);
        todo!("net helper")
    }

    /// Write all of `data`; returns the buffer (cleared) for reuse.
    pub async fn write_all(
        &mut self,
        data: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        let _ = (data, deadline);
        todo!("net helper")
    }

    /// Read into `buf` (its contents are replaced: on return `buf[..n]` holds the bytes, with
    /// `buf.capacity()` unchanged). `n == 0` is a clean EOF (for TLS: close_notify, or TCP EOF
    /// without it reported as `Ok(0)` with [`Stream::eof_was_clean`] false).
    pub async fn read(
        &mut self,
        buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        let _ = (buf, deadline);
        todo!("net helper")
    }

    /// After a read returned 0: whether the peer closed cleanly (always true for plain TCP).
    pub fn eof_was_clean(&self) -> bool {
        todo!("net helper")
    }

    /// Peer address.
    pub fn peer(&self) -> SocketAddr {
        todo!("net helper")
    }

    /// For TLS streams: whether certificates were verified (false under `--insecure`).
    pub fn tls_verified(&self) -> Option<bool> {
        todo!("net helper")
    }

    /// Shut down and close (sends close_notify for TLS, best effort, no waiting).
    pub async fn close(self) {
        todo!("net helper")
    }
}
