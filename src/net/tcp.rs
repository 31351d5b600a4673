//! TCP over tokio-uring: connect (a socket2 socket connected by tokio under a timeout, then
//! handed to tokio-uring), reads and writes under deadlines, shutdown-before-drop whenever an
//! operation may still be in flight.
//!
//! Why the detour for connect: tokio-uring 0.5 drops in-flight operations without cancelling
//! them, so a uring connect that times out would keep its socket until the kernel gives up.
//! A tokio (epoll) connect future closes its socket when dropped. Reads and writes do go
//! through io_uring; an operation abandoned by a timeout (ours or a caller's) keeps the fd
//! open until it completes, so the socket is `shutdown(Both)` first, which completes it.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{classify_io, ConnectOptions, NetError, Phase, READ_BUF_SIZE};

/// First back-off after EADDRNOTAVAIL (ephemeral ports exhausted on every source address).
const PORT_EXHAUSTED_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Back-off cap for EADDRNOTAVAIL retries.
const PORT_EXHAUSTED_BACKOFF_MAX: Duration = Duration::from_millis(200);

thread_local! {
    /// Round-robin cursor over `ConnectOptions::bind` (per worker thread, no locking).
    static NEXT_BIND: Cell<usize> = const { Cell::new(0) };
}

/// A connected tokio-uring TCP stream that is shut down before it is dropped whenever an
/// operation on it timed out or was abandoned (tokio-uring does not cancel in-flight ops).
pub struct TcpConn {
    stream: tokio_uring::net::TcpStream,
    peer: SocketAddr,
    /// Set while a uring op is submitted and not yet completed; if the future awaiting it is
    /// dropped (a caller's timeout), this stays set and `Drop` shuts the socket down.
    op_pending: bool,
    /// The socket was shut down after a timeout: every later operation fails at once.
    dead: bool,
}

impl TcpConn {
    /// Connect to `addr` before `min(now + opts.connect_timeout, deadline)`, from the next
    /// `--bind` source address of `addr`'s family (round-robin) when any are given.
    pub async fn connect(
        addr: SocketAddr,
        opts: &ConnectOptions,
        deadline: Instant,
    ) -> Result<TcpConn, NetError> {
        let start = Instant::now();
        let limit = deadline.min(start + opts.connect_timeout);
        let timeout_err =
            || NetError::ConnectTimeout(addr, millis(limit.saturating_duration_since(start)));
        let sources: Vec<IpAddr> = opts
            .bind
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == addr.is_ipv4())
            .collect();
        let mut backoff = PORT_EXHAUSTED_BACKOFF_MIN;
        let mut exhausted_in_a_row = 0usize;
        loop {
            let source = if sources.is_empty() {
                None
            } else {
                let i = NEXT_BIND.with(|c| {
                    let i = c.get();
                    c.set(i.wrapping_add(1));
                    i
                });
                Some(sources[i % sources.len()])
            };
            // Socket setup errors (a --bind address not on this host...) are not retried.
            let socket = new_socket(addr, source).map_err(|e| bind_error(&e, source))?;
            let attempt = tokio::net::TcpSocket::from_std_stream(socket.into()).connect(addr);
            match tokio::time::timeout_at(limit.into(), attempt).await {
                Err(_) => return Err(timeout_err()),
                Ok(Ok(stream)) => {
                    let std_stream = stream
                        .into_std()
                        .map_err(|e| classify_io(&e, addr, Phase::Connect))?;
                    let stream = tokio_uring::net::TcpStream::from_std(std_stream);
                    return Ok(TcpConn {
                        stream,
                        peer: addr,
                        op_pending: false,
                        dead: false,
                    });
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    // Ports exhausted for this source: try the next source at once, then back
                    // off once every source has failed, until the deadline.
                    exhausted_in_a_row += 1;
                    if exhausted_in_a_row >= sources.len().max(1) {
                        exhausted_in_a_row = 0;
                        let wake = Instant::now() + backoff;
                        if wake >= limit {
                            tokio::time::sleep_until(limit.into()).await;
                            return Err(timeout_err());
                        }
                        tokio::time::sleep_until(wake.into()).await;
                        backoff = (backoff * 2).min(PORT_EXHAUSTED_BACKOFF_MAX);
                    }
                }
                Ok(Err(e)) => return Err(classify_io(&e, addr, Phase::Connect)),
            }
        }
    }

    /// Peer address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Read into `buf` (contents replaced, `buf[..n]` holds the bytes; a buffer without
    /// capacity gets [`READ_BUF_SIZE`]). `Ok(0)` is EOF.
    pub async fn read(
        &mut self,
        mut buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        if self.dead {
            return (
                Err(NetError::Reset(
                    "connection already shut down after a timeout".into(),
                )),
                buf,
            );
        }
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve_exact(READ_BUF_SIZE);
        }
        let cap = buf.capacity();
        let start = Instant::now();
        self.op_pending = true;
        match tokio::time::timeout_at(deadline.into(), self.stream.read(buf)).await {
            Ok((res, mut buf)) => {
                self.op_pending = false;
                match res {
                    Ok(n) => {
                        buf.truncate(n);
                        (Ok(n), buf)
                    }
                    Err(e) => (Err(classify_io(&e, self.peer, Phase::Transfer)), buf),
                }
            }
            Err(_) => (
                Err(self.timed_out(start, deadline)),
                Vec::with_capacity(cap),
            ),
        }
    }

    /// Write all of `buf`; returns it (cleared) for reuse.
    pub async fn write_all(
        &mut self,
        buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<(), NetError>, Vec<u8>) {
        if self.dead {
            return (
                Err(NetError::Reset(
                    "connection already shut down after a timeout".into(),
                )),
                buf,
            );
        }
        let cap = buf.capacity();
        let start = Instant::now();
        self.op_pending = true;
        match tokio::time::timeout_at(deadline.into(), self.stream.write_all(buf)).await {
            Ok((res, mut buf)) => {
                self.op_pending = false;
                buf.clear();
                (
                    res.map_err(|e| classify_io(&e, self.peer, Phase::Transfer)),
                    buf,
                )
            }
            Err(_) => (
                Err(self.timed_out(start, deadline)),
                Vec::with_capacity(cap),
            ),
        }
    }

    /// Half-close our side (best effort, e.g. after sending close_notify).
    pub fn shutdown(&self) {
        // ENOTCONN after a peer reset is expected and harmless.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The op in flight was abandoned: shut the socket down so it completes and the fd can
    /// close, and refuse further use.
    fn timed_out(&mut self, start: Instant, deadline: Instant) -> NetError {
        self.shutdown();
        self.dead = true;
        self.op_pending = false;
        NetError::Timeout(millis(deadline.saturating_duration_since(start)))
    }
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        if self.op_pending {
            self.shutdown();
        }
    }
}

/// A non-blocking TCP socket for `addr`'s family with TCP_NODELAY, bound to `source` (port
/// chosen at connect time) when given.
fn new_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Linux honours this IPPROTO_IP option on IPv6 sockets too; an older kernel without
        // it only loses the wider port space, so failure is tolerated for IPv6.
        let res = set_bind_address_no_port(&socket);
        if ip.is_ipv4() {
            res?;
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    Ok(socket)
}

/// A failure to create or bind the socket, naming the source address.
fn bind_error(e: &io::Error, source: Option<IpAddr>) -> NetError {
    match source {
        Some(ip) => NetError::Io(format!("cannot bind source address {ip}: {e}")),
        None => NetError::Io(format!("cannot create socket: {e}")),
    }
}

/// IP_BIND_ADDRESS_NO_PORT: defer the ephemeral port choice from bind() to connect(), so the
/// port space is per (source, destination) pair instead of per source address.
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a valid, owned fd with a pointer to a live c_int and its exact
    // size; the kernel only reads `optlen` bytes from it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
