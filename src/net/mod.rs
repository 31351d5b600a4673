//! The only tokio-uring socket code: TCP connect/read/write with deadlines (`tcp`), TLS over
//! it with rustls driven by hand (`tls`), `CONNECT` tunnels through an HTTP proxy (`tunnel`),
//! and [`Stream`], the one type the fetch path and the load mode talk to.
//!
//! tokio-uring 0.5 drops in-flight operations without cancelling them, so every read/write
//! that times out shuts the socket down (`shutdown(Both)`) before it is dropped; that is
//! wrapped in [`tcp::TcpConn`] and nobody outside this module touches a raw uring stream.

pub mod tcp;
pub mod tls;
pub mod tunnel;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::ErrorKind;

pub use tcp::{check_bind_addrs, BindCheckError, TcpConn};
pub use tls::{TlsConfigError, TlsContext};
pub use tunnel::TunnelFailure;

/// Size of the pooled read buffers handed to the kernel.
pub const READ_BUF_SIZE: usize = 16 * 1024;
/// Submission queue entries of a ring not sized for a connection budget.
pub const DEFAULT_RING_ENTRIES: u32 = 256;

/// A tokio-uring runtime for one thread with `entries` submission queue entries. The ring is
/// set up with COOP_TASKRUN (completions are processed when the thread next enters the
/// kernel, without an interrupt to a running thread) and SINGLE_ISSUER (only this thread
/// submits), which measured faster in `benches/e2e.sh load`. Kernels older than 6.0 refuse
/// those flags, and then the ring is made without them.
pub fn new_runtime(entries: u32) -> io::Result<tokio_uring::Runtime> {
    let mut tuned = tokio_uring::uring_builder();
    tuned.setup_coop_taskrun().setup_single_issuer();
    match tokio_uring::Runtime::new(
        tokio_uring::builder()
            .entries(entries)
            .uring_builder(&tuned),
    ) {
        Ok(rt) => Ok(rt),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tokio_uring::Runtime::new(tokio_uring::builder().entries(entries))
        }
        Err(e) => Err(e),
    }
}

/// Why a runtime thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("io_uring is not available ({0}); ringcrawl needs Linux 5.11+ without a seccomp filter blocking io_uring_setup")]
    NoUring(io::Error),
    #[error("{0}")]
    Setup(String),
    #[error("cannot start thread: {0}")]
    Thread(io::Error),
}

/// A thread running a tokio-uring runtime (see [`spawn_runtime`]).
pub struct RuntimeThread<T>(std::thread::JoinHandle<Option<T>>);

impl<T> RuntimeThread<T> {
    /// Wait for the thread; `Err` if it panicked.
    pub fn join(self) -> std::thread::Result<T> {
        self.0
            .join()
            .map(|t| t.expect("only a thread whose setup succeeded is handed out"))
    }

    /// The thread has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Start thread `name` with a tokio-uring runtime of `entries` submission queue entries.
/// On that thread, inside the runtime, `setup` runs first; this returns once it has, with
/// its error (or the ring's) if it failed. Then the thread runs `run` on what `setup` made,
/// to its end. The engine's workers and `load`'s workers start this way.
pub fn spawn_runtime<S, F, Fut, T>(
    name: String,
    entries: u32,
    setup: impl FnOnce() -> Result<S, String> + Send + 'static,
    run: F,
) -> Result<RuntimeThread<T>, StartError>
where
    F: FnOnce(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), StartError>>(1);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let rt = match new_runtime(entries) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(StartError::NoUring(e)));
                    return None;
                }
            };
            rt.block_on(async move {
                let made = match setup() {
                    Ok(made) => made,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Setup(e)));
                        return None;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                Some(run(made).await)
            })
        })
        .map_err(StartError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(RuntimeThread(thread)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StartError::Setup(
            "runtime thread died at start".to_string(),
        )),
    }
}

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
    /// The server address a connect error is about, if any.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            NetError::Refused(a) | NetError::ConnectTimeout(a, _) | NetError::Unreachable(a, _) => {
                Some(*a)
            }
            _ => None,
        }
    }

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
        // Boxed: the future awaiting the TLS handshake below (thousands at once, while
        // servers answer their ClientHellos) would otherwise carry the TCP connect's state
        // inline, long after it is over.
        let tcp = Box::pin(connect_tcp(addrs, opts, deadline)).await?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => start_tls(tcp, opts, tls, deadline).await,
        }
    }

    /// Connect to the HTTP proxy at the first address of `addrs` that answers (as
    /// [`Stream::connect`] does), ask it for a tunnel with `request` (a `CONNECT` head),
    /// waiting at most `idle` for each byte of its answer, then complete the TLS handshake
    /// with the origin `server_name` through the tunnel (SNI and certificate verification
    /// for the origin's name, as on a direct connection). The stream's peer is the proxy.
    pub async fn connect_tunnel(
        addrs: &[SocketAddr],
        opts: &ConnectOptions,
        request: Vec<u8>,
        idle: Duration,
        tls: (&TlsContext, &str),
        deadline: Instant,
    ) -> Result<Stream, TunnelFailure> {
        // Boxed, as in `connect`: not carried through the handshake.
        let mut tcp = Box::pin(connect_tcp(addrs, opts, deadline))
            .await
            .map_err(|error| TunnelFailure::Proxy { peer: None, error })?;
        // Boxed: only a connecting slot pays for the handshake's state.
        Box::pin(tunnel::open(&mut tcp, request, idle, deadline)).await?;
        let peer = tcp.peer();
        start_tls(tcp, opts, tls, deadline)
            .await
            .map_err(|error| TunnelFailure::Origin { peer, error })
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

    #[cfg(test)]
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

    /// Like a plain read ([`TcpConn::read`], [`tls::TlsConn::read`]), with the buffer taken
    /// from `take` only once there is something to read (see [`TcpConn::read_ready`] and
    /// [`tls::TlsConn::read_ready`]): a connection waiting for its server holds no buffer.
    pub async fn read_ready(
        &mut self,
        take: impl FnOnce() -> Vec<u8>,
        deadline: Instant,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        match self {
            Stream::Plain(tcp) => tcp.read_ready(take, deadline).await,
            Stream::Tls(tls) => tls.read_ready(take, deadline).await,
        }
    }

    /// Throw away up to `max` received bytes unseen (see [`TcpConn::discard`]); `None` when
    /// this stream cannot (TLS: records must be decrypted in order), so the caller reads.
    pub async fn discard(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Option<Result<usize, NetError>> {
        match self {
            Stream::Plain(tcp) => tcp.discard(max, deadline).await,
            Stream::Tls(_) => None,
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

    /// Free what an idle connection does not need (TLS: the emptied network buffer).
    pub fn release_idle_buffers(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.release_idle_buffers();
        }
    }

    /// Close (TLS: close_notify first, best effort, no waiting).
    pub async fn close(self) {
        match self {
            // Closing the fd sends the FIN; shutdown(2) first is only needed when an
            // operation may still be in flight, which TcpConn's Drop takes care of.
            Stream::Plain(tcp) => drop(tcp),
            // Boxed: a TLS close (close_notify under a timeout) is a ~3 KB future, and every
            // request future that may close its stream would otherwise carry it inline.
            Stream::Tls(tls) => Box::pin(tls.close()).await,
        }
    }
}

/// A TCP connection to the first address of `addrs` that answers (see [`Stream::connect`]).
async fn connect_tcp(
    addrs: &[SocketAddr],
    opts: &ConnectOptions,
    deadline: Instant,
) -> Result<TcpConn, NetError> {
    let mut last_err = None;
    for &addr in addrs {
        if Instant::now() >= deadline && last_err.is_some() {
            break;
        }
        match TcpConn::connect(addr, opts, deadline).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| NetError::Io("no address to connect to".into())))
}

/// The TLS handshake with `name` over `tcp`, within `opts.connect_timeout` and `deadline`.
async fn start_tls(
    tcp: TcpConn,
    opts: &ConnectOptions,
    (ctx, name): (&TlsContext, &str),
    deadline: Instant,
) -> Result<Stream, NetError> {
    let hs_deadline = deadline.min(Instant::now() + opts.connect_timeout);
    // Boxed: only connecting slots pay for a handshake.
    let conn = Box::pin(tls::TlsConn::handshake(tcp, ctx, name, hs_deadline)).await?;
    Ok(Stream::Tls(Box::new(conn)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::thread;

    /// fd-counting tests must not overlap with other socket-heavy tests of this module.
    static FD_LOCK: Mutex<()> = Mutex::new(());

    fn opts(connect_timeout_ms: u64) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            bind: Rc::from([]),
        }
    }

    /// Read `s` to EOF with [`Stream::read_ready`], lending `cap`-byte buffers: the bytes,
    /// and how long after the call the first buffer was taken.
    pub(super) async fn read_to_end_ready(
        s: &mut Stream,
        cap: usize,
        deadline: Instant,
    ) -> (Vec<u8>, Duration) {
        let start = std::time::Instant::now();
        let mut first_take = None;
        let mut got = Vec::new();
        loop {
            let take = || {
                first_take.get_or_insert_with(|| start.elapsed());
                Vec::with_capacity(cap)
            };
            let (n, buf) = s.read_ready(take, deadline).await;
            match n.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        (got, first_take.expect("a buffer was taken"))
    }

    fn in_ms(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Open fds of this process. Other tests in the same binary open fds concurrently, so
    /// a count above `limit` is re-read for a while before it is believed.
    fn open_fds_settled(limit: usize) -> usize {
        for _ in 0..50 {
            let n = open_fds();
            if n <= limit {
                return n;
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
        open_fds()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// A server that reads one request chunk, answers `reply`, then closes.
    fn one_shot_server(listener: TcpListener, reply: &'static [u8]) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).unwrap();
            req.truncate(n);
            s.write_all(reply).unwrap();
            req
        })
    }

    /// read_ready: no buffer is taken while the server is silent; data larger than the
    /// buffers arrives in bursts and is read to the last byte (no edge is lost); EOF is 0.
    #[test]
    fn read_ready_takes_a_buffer_only_when_data_is_there() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        const DELAY: Duration = Duration::from_millis(150);
        const BURST: usize = 50_000;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for round in 0..3u8 {
                thread::sleep(DELAY);
                s.write_all(&vec![b'a' + round; BURST]).unwrap();
            }
        });
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            let (got, first_take) = read_to_end_ready(&mut s, 4096, in_ms(5000)).await;
            assert!(
                first_take >= DELAY - Duration::from_millis(20),
                "{first_take:?}"
            );
            assert_eq!(got.len(), 3 * BURST);
            assert!(got[..BURST].iter().all(|&b| b == b'a'));
            assert!(got[2 * BURST..].iter().all(|&b| b == b'c'));
            s.close().await;
        });
        server.join().unwrap();
    }

    #[test]
    fn discard_throws_away_exactly_what_it_is_asked() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&[b'x'; 30_000]).unwrap();
            thread::sleep(Duration::from_millis(100));
            s.write_all(b"tail").unwrap();
        });
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            let mut left = 30_000;
            while left > 0 {
                let n = s.discard(left, in_ms(2000)).await.unwrap().unwrap();
                assert!(n > 0 && n <= left);
                left -= n;
            }
            // What follows the discarded bytes is intact, after a wait for it.
            let mut got = Vec::new();
            loop {
                let (n, buf) = s.read_ready(|| Vec::with_capacity(16), in_ms(2000)).await;
                match n.unwrap() {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            assert_eq!(got, b"tail");
            assert_eq!(s.discard(10, in_ms(500)).await.unwrap().unwrap(), 0, "EOF");
            s.close().await;
        });
        server.join().unwrap();
    }

    #[test]
    fn read_ready_times_out_without_taking_a_buffer() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            thread::sleep(Duration::from_millis(400));
            drop(s);
        });
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            let mut taken = false;
            let (res, _) = s
                .read_ready(
                    || {
                        taken = true;
                        Vec::new()
                    },
                    in_ms(100),
                )
                .await;
            assert!(matches!(res, Err(NetError::Timeout(_))), "{res:?}");
            assert!(!taken);
            s.close().await;
        });
        server.join().unwrap();
    }

    #[test]
    fn connect_write_read_eof_ipv4() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = one_shot_server(listener, b"hello");
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            assert_eq!(s.peer(), addr);
            assert_eq!(s.tls_verified(), None);
            let buf = s.write_all(b"GET".to_vec(), in_ms(1000)).await.unwrap();
            assert!(buf.is_empty());
            // Stale contents must be replaced, capacity kept.
            let mut stale = Vec::with_capacity(64);
            stale.extend_from_slice(&[b'x'; 40]);
            let (n, buf) = s.read(stale, in_ms(1000)).await;
            assert_eq!(n.unwrap(), 5);
            assert_eq!(&buf[..], b"hello");
            assert_eq!(buf.capacity(), 64);
            let (n, _) = s.read(buf, in_ms(1000)).await;
            assert_eq!(n.unwrap(), 0);
            assert!(s.eof_was_clean());
            s.close().await;
        });
        assert_eq!(server.join().unwrap(), b"GET");
    }

    /// A write far larger than the socket buffers: the plain send takes what fits, the
    /// ring the rest while the server reads slowly; every byte arrives, in order.
    #[test]
    fn a_write_larger_than_the_socket_buffers_arrives_whole() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        const LEN: usize = 16 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            thread::sleep(Duration::from_millis(100));
            let mut got = Vec::with_capacity(LEN);
            s.read_to_end(&mut got).unwrap();
            got
        });
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            let buf = s.write_all(data, in_ms(10_000)).await.unwrap();
            assert!(buf.is_empty());
            s.close().await;
        });
        let got = server.join().unwrap();
        assert!(got == expect, "{} bytes arrived of {LEN}", got.len());
    }

    #[test]
    fn connect_ipv6_loopback() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        };
        let addr = listener.local_addr().unwrap();
        let server = one_shot_server(listener, b"six");
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            s.write_all(b"hi".to_vec(), in_ms(1000)).await.unwrap();
            let (n, buf) = s.read(Vec::new(), in_ms(1000)).await;
            assert_eq!(&buf[..n.unwrap()], b"six");
            assert_eq!(buf.capacity(), READ_BUF_SIZE);
        });
        server.join().unwrap();
    }

    fn refused_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn refused_then_next_address() {
        let dead = refused_addr();
        tokio_uring::start(async move {
            let err = Stream::connect(&[dead], &opts(1000), None, in_ms(2000))
                .await
                .err()
                .unwrap();
            assert_eq!(err, NetError::Refused(dead));
            assert_eq!(err.kind(), ErrorKind::ConnectRefused);
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        let server = one_shot_server(listener, b"ok");
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[dead, good], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            assert_eq!(s.peer(), good);
            s.write_all(b"x".to_vec(), in_ms(1000)).await.unwrap();
            let (n, _) = s.read(Vec::new(), in_ms(1000)).await;
            assert_eq!(n.unwrap(), 2);
        });
        server.join().unwrap();
    }

    #[test]
    fn empty_address_list_is_an_error() {
        tokio_uring::start(async {
            let err = Stream::connect(&[], &opts(100), None, in_ms(100))
                .await
                .err()
                .unwrap();
            assert!(matches!(err, NetError::Io(_)), "{err}");
        });
    }

    #[test]
    fn connect_timeout_on_full_backlog() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // A listener that never accepts, with the smallest backlog: once the accept queue is
        // full the kernel drops further SYNs, so a connect hangs until our timeout.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        sock.listen(0).unwrap();
        let addr = sock.local_addr().unwrap().as_socket().unwrap();
        tokio_uring::start(async move {
            // Counted inside the runtime: its own ring, eventfd and epoll fds are not leaks.
            let before = open_fds();
            let mut held = Vec::new();
            let mut timeouts = 0;
            for _ in 0..16 {
                match Stream::connect(&[addr], &opts(150), None, in_ms(5000)).await {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        assert!(
                            matches!(e, NetError::ConnectTimeout(a, 150) if a == addr),
                            "{e}"
                        );
                        assert_eq!(e.kind(), ErrorKind::ConnectTimeout);
                        timeouts += 1;
                        if timeouts == 3 {
                            break;
                        }
                    }
                }
            }
            assert_eq!(
                timeouts,
                3,
                "backlog never filled ({} connections accepted)",
                held.len()
            );
            drop(held);
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Every socket (queued ones and timed-out ones) is closed again.
            let after = open_fds_settled(before);
            assert!(after <= before, "fds leaked: {before} -> {after}");
        });
        drop(sock);
    }

    #[test]
    fn read_timeouts_leak_no_fd() {
        let _g = FD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        const N: usize = 100;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted_tx, accepted_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        // Accepts N connections and never writes; holds them until released.
        let server = thread::spawn(move || {
            let held: Vec<_> = (0..N).map(|_| listener.accept().unwrap().0).collect();
            accepted_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            // Every client socket was shut down: the server sees EOF on each.
            held.into_iter()
                .filter(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    matches!(s.read(&mut [0u8; 8]), Ok(0))
                })
                .count()
        });
        let before = open_fds();
        tokio_uring::start(async move {
            for _ in 0..N {
                let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                    .await
                    .unwrap();
                let (res, buf) = s.read(Vec::with_capacity(128), in_ms(10)).await;
                let err = res.err().unwrap();
                assert!(matches!(err, NetError::Timeout(_)), "{err}");
                assert_eq!(err.kind(), ErrorKind::Timeout);
                assert_eq!(buf.capacity(), 128);
                // The stream refuses further use instead of hanging.
                let (res, _) = s.read(buf, in_ms(1000)).await;
                assert!(res.is_err());
            }
            // Let the abandoned reads complete and their fds close, then count while the
            // runtime is still alive (its teardown would close everything anyway).
            tokio::time::sleep(Duration::from_millis(200)).await;
            accepted_rx.recv().unwrap();
            let after = open_fds_settled(before + N + N / 4);
            // The server still holds its N accepted sockets; a leak would add N more.
            assert!(
                after <= before + N + N / 4,
                "fds leaked: {before} -> {after}"
            );
        });
        release_tx.send(()).unwrap();
        assert_eq!(server.join().unwrap(), N);
    }

    #[test]
    fn abandoned_read_is_shut_down_on_drop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            tx.send(s.read(&mut [0u8; 8]).map_err(|e| e.kind()))
                .unwrap();
        });
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            // A caller's own timeout cancels our read mid-flight (no deadline of ours fires).
            let far = in_ms(60_000);
            let cancelled =
                tokio::time::timeout(Duration::from_millis(20), s.read(Vec::new(), far)).await;
            assert!(cancelled.is_err());
            drop(s);
            // Checked while the runtime lives (its teardown would close the socket anyway).
            let seen = rx.recv_timeout(Duration::from_secs(3)).unwrap();
            assert_eq!(seen, Ok(0), "server should see EOF after the drop");
        });
    }

    #[test]
    fn reset_by_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            assert!(s.read(&mut [0u8; 64]).unwrap() > 0);
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).unwrap();
            drop(sock); // RST
        });
        tokio_uring::start(async move {
            let mut s = Stream::connect(&[addr], &opts(1000), None, in_ms(2000))
                .await
                .unwrap();
            s.write_all(b"GET".to_vec(), in_ms(1000)).await.unwrap();
            server.join().unwrap();
            let (res, _) = s.read(Vec::new(), in_ms(1000)).await;
            let err = res.err().unwrap();
            assert!(matches!(err, NetError::Reset(_)), "{err}");
            assert_eq!(err.kind(), ErrorKind::Reset);
        });
    }

    #[test]
    fn bind_addresses_round_robin() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            (0..4)
                .map(|_| listener.accept().unwrap().1.ip())
                .collect::<Vec<IpAddr>>()
        });
        let sources: Rc<[IpAddr]> = Rc::from([
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            "::1".parse().unwrap(), // other family: never used for an IPv4 target
        ]);
        tokio_uring::start(async move {
            let o = ConnectOptions {
                connect_timeout: Duration::from_secs(1),
                bind: sources,
            };
            let mut conns = Vec::new();
            for _ in 0..4 {
                conns.push(
                    Stream::connect(&[addr], &o, None, in_ms(2000))
                        .await
                        .unwrap(),
                );
            }
        });
        let mut seen = server.join().unwrap();
        seen.sort();
        let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let three = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(seen, vec![two, two, three, three]);
    }

    #[test]
    fn os_errors_map_to_kinds() {
        let peer: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let e = |code| io::Error::from_raw_os_error(code);
        let kind = |code, phase| classify_io(&e(code), peer, phase).kind();
        assert_eq!(
            kind(libc::ECONNREFUSED, Phase::Connect),
            ErrorKind::ConnectRefused
        );
        assert_eq!(
            kind(libc::ETIMEDOUT, Phase::Connect),
            ErrorKind::ConnectTimeout
        );
        assert_eq!(
            kind(libc::ENETUNREACH, Phase::Connect),
            ErrorKind::Unreachable
        );
        assert_eq!(
            kind(libc::EHOSTUNREACH, Phase::Connect),
            ErrorKind::Unreachable
        );
        assert_eq!(kind(libc::ECONNRESET, Phase::Transfer), ErrorKind::Reset);
        assert_eq!(kind(libc::EPIPE, Phase::Transfer), ErrorKind::Reset);
        let msg = classify_io(&e(libc::EHOSTUNREACH), peer, Phase::Connect).to_string();
        assert_eq!(msg, "127.0.0.1:80 unreachable: No route to host");
    }
}
