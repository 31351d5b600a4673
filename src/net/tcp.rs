//! TCP over tokio-uring: connect (a non-blocking socket2 socket, completion awaited through
//! tokio's epoll under a timeout, then handed to tokio-uring), reads and writes under
//! deadlines, reads that take their buffer only once data is there, and shutdown-before-drop
//! whenever an operation may still be in flight.
//!
//! Why the detour for connect: tokio-uring 0.5 drops in-flight operations without cancelling
//! them, so a uring connect that times out would keep its socket until the kernel gives up.
//! An epoll wait simply ends when dropped, and the socket is closed. The epoll registration
//! made for connect stays for the connection's life and tells reads when data has arrived.
//!
//! Bytes known to be there are read with a plain non-blocking `recv`, and a write first
//! tries a plain non-blocking `send`: a request fits the empty send buffer of a keep-alive
//! connection, and a response waits in the socket once epoll said so, so neither needs a
//! trip through the ring and the runtime. Waiting goes through io_uring: reads lent a
//! buffer up front and the rest of a write the socket could not take. An io_uring
//! operation abandoned by a timeout (ours or a caller's) keeps the fd open until it
//! completes, so the socket is `shutdown(Both)` first, which completes it.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{classify_io, os_message, ConnectOptions, NetError, Phase, READ_BUF_SIZE};

/// First back-off after EADDRNOTAVAIL (ephemeral ports exhausted on every source address).
const PORT_EXHAUSTED_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Back-off cap for EADDRNOTAVAIL retries.
const PORT_EXHAUSTED_BACKOFF_MAX: Duration = Duration::from_millis(200);

thread_local! {
    /// Round-robin cursor over `ConnectOptions::bind` (per worker thread, no locking).
    static NEXT_BIND: Cell<usize> = const { Cell::new(0) };
    /// The bytes of [`TcpConn::recv_with`], one buffer per worker thread: they are handed
    /// on before anything else runs on the thread, so no connection holds one.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A connected tokio-uring TCP stream that is shut down before it is dropped whenever an
/// operation on it timed out or was abandoned (tokio-uring does not cancel in-flight ops).
pub struct TcpConn {
    /// Readiness of the socket in tokio's epoll, registered at the first
    /// [`TcpConn::read_ready`]. Declared before `stream` so it is deregistered before the fd
    /// is closed.
    ready: Option<tokio::io::unix::AsyncFd<FdRef>>,
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
            match tokio::time::timeout_at(limit.into(), connect_registered(&socket, addr)).await {
                Err(_) => return Err(timeout_err()),
                Ok(Ok(ready)) => {
                    let std_stream: std::net::TcpStream = socket.into();
                    let stream = tokio_uring::net::TcpStream::from_std(std_stream);
                    return Ok(TcpConn {
                        ready,
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
        buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        if self.dead {
            return (Err(dead_error()), buf);
        }
        let start = Instant::now();
        match read_op(&self.stream, self.peer, &mut self.op_pending, buf, deadline).await {
            ReadOp::Done(res, buf) => (res, buf),
            ReadOp::TimedOut(cap) => (
                Err(self.timed_out(start, deadline)),
                Vec::with_capacity(cap),
            ),
        }
    }

    /// Like [`TcpConn::read`], but the buffer is taken from `take` only once the socket has
    /// something to read (data, EOF or an error): a connection waiting seconds for its
    /// response holds no read buffer (10,000 of them would hold 40 MB). The wait uses
    /// tokio's epoll, which the runtime polls anyway; the bytes, known to be there, are then
    /// read with a plain non-blocking `recv` (an io_uring read would cost another trip
    /// through the ring and the runtime for data that is already waiting; see [`recv_ready`]
    /// for when readiness is forgotten). A socket that cannot be registered is read the
    /// plain way.
    pub async fn read_ready(
        &mut self,
        take: impl FnOnce() -> Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        if self.dead {
            return (Err(dead_error()), Vec::new());
        }
        self.register_readiness();
        let Some(afd) = self.ready.as_ref() else {
            return self.read(take(), deadline).await;
        };
        let mut take = Some(take);
        let mut buf = Vec::new();
        let got = recv_ready(afd, self.peer, deadline, |fd| {
            if let Some(take) = take.take() {
                buf = take();
                buf.clear();
                if buf.capacity() == 0 {
                    buf.reserve_exact(READ_BUF_SIZE);
                }
            }
            let cap = buf.capacity();
            // SAFETY: recv(2) on our open socket into `buf`'s spare capacity, valid for
            // writes of `cap` bytes for the duration of the call.
            let got = os_result(unsafe {
                libc::recv(fd, buf.as_mut_ptr().cast(), cap, libc::MSG_DONTWAIT)
            });
            if let Ok(n) = got {
                // SAFETY: the kernel initialised the first `n <= cap` bytes.
                unsafe { buf.set_len(n) };
            }
            (got, cap)
        })
        .await;
        (got, buf)
    }

    /// Wait until the socket has something to read, read it with a plain non-blocking
    /// `recv` into the worker thread's scratch buffer and hand the bytes to `f` at once;
    /// `Ok(None)` is EOF. Nothing is lent to the kernel across an await, so a connection
    /// holds no read buffer at any time: for callers that copy the bytes on anyway (TLS
    /// hands them to rustls, which keeps its own buffer). A socket that cannot be
    /// registered for readiness is read through io_uring into a buffer of its own.
    pub async fn recv_with<R>(
        &mut self,
        deadline: Instant,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, NetError> {
        if self.dead {
            return Err(dead_error());
        }
        self.register_readiness();
        let Some(afd) = self.ready.as_ref() else {
            // Boxed: a rare path, and every caller waiting for readiness below (TLS
            // connections waiting for their server) would otherwise carry its state.
            let (res, buf) = Box::pin(self.read(Vec::new(), deadline)).await;
            return Ok((res? > 0).then(|| f(&buf)));
        };
        let n = recv_ready(afd, self.peer, deadline, |fd| {
            SCRATCH.with_borrow_mut(|scratch| {
                if scratch.len() < READ_BUF_SIZE {
                    scratch.resize(READ_BUF_SIZE, 0);
                }
                // SAFETY: recv(2) on our open socket into `scratch`, which is valid for
                // writes of its whole length for the duration of the call.
                let got = os_result(unsafe {
                    libc::recv(
                        fd,
                        scratch.as_mut_ptr().cast(),
                        scratch.len(),
                        libc::MSG_DONTWAIT,
                    )
                });
                (got, scratch.len())
            })
        })
        .await?;
        Ok((n > 0).then(|| SCRATCH.with_borrow(|scratch| f(&scratch[..n]))))
    }

    /// Register the socket in tokio's epoll for read readiness unless connect already did
    /// (left unregistered if that fails: callers then read the plain way).
    fn register_readiness(&mut self) {
        if self.ready.is_some() {
            return;
        }
        let fd = FdRef(self.stream.as_raw_fd());
        // SAFETY: the fd belongs to `self.stream`, which is only closed when this TcpConn is
        // dropped, and `ready` is declared before `stream`, so the AsyncFd (deregistration
        // included) is dropped first: the fd stays open and names the same socket for the
        // AsyncFd's whole life, as the contract requires.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        self.ready = registered.ok();
    }

    /// Throw away up to `max` received bytes without copying them (recv with MSG_TRUNC,
    /// which TCP sockets honour by discarding), waiting for readiness when none are there.
    /// `Ok(0)` is EOF. `None` when the socket is not registered for readiness (the caller
    /// reads instead).
    pub async fn discard(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Option<Result<usize, NetError>> {
        if self.dead {
            return Some(Err(dead_error()));
        }
        self.register_readiness();
        let afd = self.ready.as_ref()?;
        Some(
            recv_ready(afd, self.peer, deadline, |fd| {
                // SAFETY: recv(2) on our open socket with a null buffer: with MSG_TRUNC the
                // kernel discards up to `max` bytes and writes nothing to user memory.
                let got = os_result(unsafe {
                    libc::recv(
                        fd,
                        std::ptr::null_mut(),
                        max,
                        libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    )
                });
                (got, max)
            })
            .await,
        )
    }

    /// Write all of `buf`; returns it (cleared) for reuse.
    pub async fn write_all(
        &mut self,
        mut buf: Vec<u8>,
        deadline: Instant,
    ) -> (Result<(), NetError>, Vec<u8>) {
        if self.dead {
            return (Err(dead_error()), buf);
        }
        let cap = buf.capacity();
        // Most writes (a request on a connection whose send buffer is empty) fit at once: a
        // plain non-blocking send spares them the trip through the ring and the runtime.
        // What does not fit goes through io_uring.
        // SAFETY: send(2) on our open socket from `buf`, valid for reads of its length.
        let sent = unsafe {
            libc::send(
                self.stream.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match os_result(sent) {
            Ok(n) if n == buf.len() => {
                buf.clear();
                return (Ok(()), buf);
            }
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                buf.clear();
                return (Err(classify_io(&e, self.peer, Phase::Transfer)), buf);
            }
        }
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

/// Connect the non-blocking `socket` and wait until that completes, through tokio's epoll.
/// The registration made for the wait is returned, to serve [`TcpConn::read_ready`] for
/// the connection's life (one epoll_ctl pair per connection); `None` when the socket could
/// not be registered after an immediate connect. If the future is dropped (a timeout), the
/// registration goes with it and the caller closes the socket.
async fn connect_registered(
    socket: &Socket,
    addr: SocketAddr,
) -> io::Result<Option<tokio::io::unix::AsyncFd<FdRef>>> {
    let in_progress = match socket.connect(&addr.into()) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    let interest = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
    // SAFETY: the fd is `socket`'s, which outlives this registration: the caller drops this
    // future (and with it the AsyncFd) before the socket, or moves the AsyncFd into a
    // TcpConn whose `ready` field is dropped before the stream that then owns the fd.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(FdRef(socket.as_raw_fd()), interest)
    };
    let afd = match registered {
        Ok(afd) => afd,
        Err(_) if !in_progress => return Ok(None),
        Err(e) => return Err(e.into_parts().1),
    };
    if in_progress {
        // Writable (connected) or an error condition; SO_ERROR tells which.
        let _ = afd.writable().await?;
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
    }
    Ok(Some(afd))
}

/// What any operation on a connection shut down after a timeout gets.
fn dead_error() -> NetError {
    NetError::Reset("connection already shut down after a timeout".into())
}

/// How a uring read under a deadline ended.
enum ReadOp {
    /// Completed: the result and the buffer (`buf[..n]`).
    Done(Result<usize, NetError>, Vec<u8>),
    /// The deadline passed with the operation in flight (`op_pending` stays set; the buffer
    /// is the kernel's until it completes): the capacity that was offered.
    TimedOut(usize),
}

/// One io_uring read into `buf` (cleared; a buffer without capacity gets
/// [`READ_BUF_SIZE`]) before `deadline`, with `op_pending` set while it is in flight.
async fn read_op(
    stream: &tokio_uring::net::TcpStream,
    peer: SocketAddr,
    op_pending: &mut bool,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> ReadOp {
    buf.clear();
    if buf.capacity() == 0 {
        buf.reserve_exact(READ_BUF_SIZE);
    }
    let cap = buf.capacity();
    *op_pending = true;
    match tokio::time::timeout_at(deadline.into(), stream.read(buf)).await {
        Ok((res, mut buf)) => {
            *op_pending = false;
            match res {
                Ok(n) => {
                    buf.truncate(n);
                    ReadOp::Done(Ok(n), buf)
                }
                Err(e) => ReadOp::Done(Err(classify_io(&e, peer, Phase::Transfer)), buf),
            }
        }
        Err(_) => ReadOp::TimedOut(cap),
    }
}

/// Wait for read readiness (data, EOF or an error) until `deadline`. The guard, when there
/// is one, must be cleared only after a read that drained the socket.
async fn wait_readable(
    afd: &tokio::io::unix::AsyncFd<FdRef>,
    deadline: Instant,
) -> Result<Option<tokio::io::unix::AsyncFdReadyGuard<'_, FdRef>>, NetError> {
    let start = Instant::now();
    match tokio::time::timeout_at(deadline.into(), afd.readable()).await {
        Ok(Ok(guard)) => Ok(Some(guard)),
        Ok(Err(_)) => Ok(None), // the read reports the socket's error
        Err(_) => Err(NetError::Timeout(millis(
            deadline.saturating_duration_since(start),
        ))),
    }
}

/// Wait until the socket of `afd` is readable, then make one non-blocking `recv` through
/// `recv` (given the fd: recv(2)'s outcome, and how many bytes it offered). Stale readiness
/// (`EAGAIN`) is forgotten and waited for again, as is an interrupted call; readiness is also
/// forgotten when the recv came back with bytes but short of what it offered (the socket was
/// drained). EOF (`Ok(0)`) keeps it: a socket at its end stays readable.
/// Readiness is edge-triggered: tokio's ticks keep a newer edge from being cleared.
async fn recv_ready(
    afd: &tokio::io::unix::AsyncFd<FdRef>,
    peer: SocketAddr,
    deadline: Instant,
    mut recv: impl FnMut(RawFd) -> (io::Result<usize>, usize),
) -> Result<usize, NetError> {
    let fd = afd.get_ref().0;
    loop {
        let guard = wait_readable(afd, deadline).await?;
        let (got, offered) = recv(fd);
        match got {
            Ok(n) => {
                if let (Some(mut guard), true) = (guard, n > 0 && n < offered) {
                    guard.clear_ready();
                }
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(mut guard) = guard {
                    guard.clear_ready();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify_io(&e, peer, Phase::Transfer)),
        }
    }
}

/// A libc call's `ssize_t` as a byte count, or the OS error it set (read at once).
fn os_result(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A socket fd registered for readiness only; the fd is owned (and closed) by the
/// tokio-uring stream next to it.
struct FdRef(RawFd);

impl AsRawFd for FdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A `--bind` source address this host cannot use (checked once at engine start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--bind {addr}: cannot bind ({reason})")]
pub struct BindCheckError {
    /// The offending source address.
    pub addr: IpAddr,
    /// The OS message, e.g. "Cannot assign requested address".
    pub reason: String,
}

/// Check that every `--bind` source address is local and bindable, by binding a throwaway TCP
/// socket to it (port 0; nothing is sent). The first failure is returned, so a typo fails
/// the run at start instead of failing every URL.
pub fn check_bind_addrs(addrs: &[IpAddr]) -> Result<(), BindCheckError> {
    for &addr in addrs {
        let bind = || -> io::Result<()> {
            let domain = Domain::for_address(SocketAddr::new(addr, 0));
            let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            socket.bind(&SocketAddr::new(addr, 0).into())
        };
        bind().map_err(|e| BindCheckError {
            addr,
            reason: os_message(&e),
        })?;
    }
    Ok(())
}

/// A non-blocking TCP socket for `addr`'s family with TCP_NODELAY, bound to `source` (port
/// chosen at connect time) when given.
fn new_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    // Non-blocking from the start (SOCK_NONBLOCK): no fcntl round trip per connection.
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
    use std::process::Command;
    use std::rc::Rc;
    use std::thread;

    #[test]
    fn local_bind_addresses_pass() {
        let ok = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        ];
        assert_eq!(check_bind_addrs(&ok), Ok(()));
        assert_eq!(check_bind_addrs(&[]), Ok(()));
    }

    #[test]
    fn ipv6_loopback_passes_when_present() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        }
        assert_eq!(check_bind_addrs(&[IpAddr::V6(Ipv6Addr::LOCALHOST)]), Ok(()));
    }

    #[test]
    fn non_local_bind_address_is_named_in_one_line() {
        // With net.ipv4.ip_nonlocal_bind=1 the kernel accepts any address: nothing to check.
        let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if nonlocal {
            eprintln!("ip_nonlocal_bind=1 here; skipping");
            return;
        }
        // TEST-NET-1 (RFC 5737), never assigned to a host; only bound, never connected.
        let bad = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let list = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), bad];
        let err = check_bind_addrs(&list).unwrap_err();
        assert_eq!(err.addr, bad);
        assert_eq!(
            err.to_string(),
            "--bind 192.0.2.1: cannot bind (Cannot assign requested address)"
        );
        assert!(!err.to_string().contains('\n'));
    }

    /// Set in the child process that runs inside the test network namespace.
    const NETNS_CHILD_ENV: &str = "RINGCRAWL_TEST_NETNS_CHILD";
    /// The namespace's whole ephemeral port range: 10 ports.
    const PORT_RANGE: (u16, u16) = (40000, 40009);
    const PORTS: usize = (PORT_RANGE.1 - PORT_RANGE.0 + 1) as usize;
    /// The test server's port inside the namespace, outside PORT_RANGE.
    const SERVER_PORT: u16 = 18080;
    /// Concurrent connections started while every port is taken: three per port.
    const CONNS: usize = 30;
    /// How long the blocking connections hold every port before releasing them.
    const HOLD: Duration = Duration::from_millis(200);
    /// Connect timeout and overall deadline for each of the CONNS connections.
    const DEADLINE: Duration = Duration::from_secs(8);

    /// Issue 5: EADDRNOTAVAIL (ephemeral ports exhausted) is retried until the deadline, not
    /// reported. Runs its client in a fresh network namespace (needs root and `ip`; skipped
    /// otherwise) whose port range is 10 ports, with only 127.0.0.1 inside.
    #[test]
    fn exhausted_ephemeral_ports_are_retried() {
        if std::env::var_os(NETNS_CHILD_ENV).is_some() {
            exhausted_ports_client();
            return;
        }
        let ns = format!("ringcrawl-test-{}", std::process::id());
        match Command::new("ip").args(["netns", "add", &ns]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                eprintln!("cannot create a network namespace (not root?): {why}; skipping");
                return;
            }
            Err(e) => {
                eprintln!("`ip` not available ({e}); skipping");
                return;
            }
        }
        let _cleanup = NetnsGuard(ns.clone());
        let setup = format!(
            "ip link set lo up && echo '{} {}' > /proc/sys/net/ipv4/ip_local_port_range",
            PORT_RANGE.0, PORT_RANGE.1
        );
        let status = Command::new("ip")
            .args(["netns", "exec", &ns, "sh", "-c", &setup])
            .status()
            .unwrap();
        assert!(status.success(), "namespace setup failed: {setup}");
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .args([
                "net::tcp::tests::exhausted_ephemeral_ports_are_retried",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NETNS_CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child in namespace failed:\n{stdout}\n{stderr}"
        );
    }

    /// Deletes the test network namespace.
    struct NetnsGuard(String);

    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    /// Inside the namespace: take every ephemeral port, start CONNS connects at once, free
    /// the ports after HOLD; every connect must wait for them and then succeed.
    fn exhausted_ports_client() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let range: Vec<u16> = range
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            range,
            [PORT_RANGE.0, PORT_RANGE.1],
            "not in the test namespace"
        );

        // A fixed port outside the range (port 0 would take one of the 10; the namespace is
        // fresh, so the port is free).
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, SERVER_PORT)).unwrap();
        let addr = listener.local_addr().unwrap();
        // Each connection that sends a byte gets "ok" and is closed by the server first, so
        // the client side never sits in TIME_WAIT holding a port.
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    if matches!(conn.read(&mut [0u8; 1]), Ok(1)) {
                        let _ = conn.write_all(b"ok");
                    }
                });
            }
        });

        // Take every port; the next connect must fail with EADDRNOTAVAIL.
        let held: Vec<TcpStream> = (0..PORTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let err = TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{err}");
        let start = Instant::now();
        thread::spawn(move || {
            thread::sleep(HOLD);
            for s in held {
                // RST on close: no TIME_WAIT on these ports either.
                Socket::from(s).set_linger(Some(Duration::ZERO)).unwrap();
            }
        });

        let results = tokio_uring::start(async move {
            let opts = Rc::new(ConnectOptions {
                connect_timeout: DEADLINE,
                bind: Rc::from([]),
            });
            let tasks: Vec<_> = (0..CONNS)
                .map(|_| {
                    let opts = Rc::clone(&opts);
                    tokio_uring::spawn(async move {
                        let deadline = Instant::now() + DEADLINE;
                        let mut conn = TcpConn::connect(addr, &opts, deadline).await?;
                        let connected = start.elapsed();
                        let (res, _) = conn.write_all(b"x".to_vec(), deadline).await;
                        res?;
                        let mut reply = Vec::new();
                        let mut buf = Vec::with_capacity(64);
                        loop {
                            let (n, b) = conn.read(buf, deadline).await;
                            let n = n?;
                            if n == 0 {
                                break;
                            }
                            reply.extend_from_slice(&b[..n]);
                            buf = b;
                        }
                        Ok::<_, NetError>((connected, reply))
                    })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        });
        let total = start.elapsed();
        let mut first_connect = DEADLINE;
        for (i, r) in results.into_iter().enumerate() {
            let (connected, reply) = r.unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
            assert_eq!(reply, b"ok", "connection {i}");
            first_connect = first_connect.min(connected);
        }
        // Every connect started while all ports were held, so none got through before the
        // release: each one met EADDRNOTAVAIL and retried.
        assert!(
            first_connect >= HOLD,
            "a connect succeeded after {first_connect:?}, before the ports were freed"
        );
        assert!(total < DEADLINE, "took {total:?}");
        println!("{CONNS} connections over {PORTS} ports in {total:?}");
    }
}
