//! The only tokio-uring socket code: TCP connect/read/write with deadlines (`tcp`), TLS over
//! it with rustls driven by hand (`tls`), and [`Stream`], the one type the fetch path and the
//! load mode talk to.
//!
//! tokio-uring 0.5 drops in-flight operations without cancelling them, so every read/write
//! that times out shuts the socket down (`shutdown(Both)`) before it is dropped; that is
//! wrapped in [`tcp::TcpConn`] and nobody outside this module touches a raw uring stream.

pub mod tcp;
pub mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::ErrorKind;

pub use tcp::TcpConn;
pub use tls::{TlsConfigError, TlsContext, TlsStats};

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
    /// unless it is an IP literal) within `opts.connect_timeout` and before `deadline`.
    pub async fn connect(
        addrs: &[SocketAddr],
        opts: &ConnectOptions,
        tls: Option<(&TlsContext, &str)>,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        let mut last_err = None;
        for &addr in addrs {
            if Instant::now() >= deadline && last_err.is_some() {
                break;
            }
            let tcp = match TcpConn::connect(addr, opts, deadline).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            return match tls {
                None => Ok(Stream::Plain(tcp)),
                Some((ctx, name)) => {
                    let hs_deadline = deadline.min(Instant::now() + opts.connect_timeout);
                    let conn = tls::TlsConn::handshake(tcp, ctx, name, hs_deadline).await?;
                    Ok(Stream::Tls(Box::new(conn)))
                }
            };
        }
        Err(last_err.unwrap_or_else(|| NetError::Io("no address to connect to".into())))
    }

    /// Write all of `data`; returns the buffer (cleared) for reuse.
    pub async fn write_all(
        &mut self,
        data: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        match self {
            Stream::Plain(tcp) => {
                let (res, buf) = tcp.write_all(data, deadline).await;
                res.map(|()| buf)
            }
            Stream::Tls(tls) => tls.write_all(data, deadline).await,
        }
    }

    /// Read into `buf` (its contents are replaced: on return `buf[..n]` holds the bytes, with
    /// `buf.capacity()` unchanged). `n == 0` is a clean EOF (for TLS: close_notify, or TCP EOF
    /// without it reported as `Ok(0)` with [`Stream::eof_was_clean`] false).
    pub async fn read(
        &mut self,
        buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        match self {
            Stream::Plain(tcp) => tcp.read(buf, deadline).await,
            Stream::Tls(tls) => tls.read(buf, deadline).await,
        }
    }

    /// After a read returned 0: whether the peer closed cleanly (always true for plain TCP).
    pub fn eof_was_clean(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(tls) => tls.eof_was_clean(),
        }
    }

    /// Peer address.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Stream::Plain(tcp) => tcp.peer(),
            Stream::Tls(tls) => tls.peer(),
        }
    }

    /// For TLS streams: whether certificates were verified (false under `--insecure`).
    pub fn tls_verified(&self) -> Option<bool> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(tls.verified()),
        }
    }

    /// Shut down and close (sends close_notify for TLS, best effort, no waiting).
    pub async fn close(self) {
        match self {
            Stream::Plain(tcp) => tcp.shutdown(),
            Stream::Tls(tls) => tls.close().await,
        }
    }
}

/// Which step an I/O error happened in (an OS timeout means a different thing in each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Transfer,
}

/// Map an OS error on a socket to a [`NetError`] (and so to a journal error kind).
pub(crate) fn classify_io(err: &io::Error, peer: SocketAddr, phase: Phase) -> NetError {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => NetError::Refused(peer),
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
            NetError::Unreachable(peer, os_message(err))
        }
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => {
            NetError::Reset(os_message(err))
        }
        Some(libc::ETIMEDOUT) if phase == Phase::Connect => NetError::ConnectTimeout(peer, 0),
        Some(libc::ETIMEDOUT) => NetError::Reset(os_message(err)),
        _ => NetError::Io(os_message(err)),
    }
}

/// The OS message of an error without Rust's " (os error N)" suffix.
fn os_message(err: &io::Error) -> String {
    let msg = err.to_string();
    match msg.rfind(" (os error ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
