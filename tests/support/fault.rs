//! [`FaultServer`]: an in-process HTTP server on 127.0.0.1:0 with one path per misbehaviour
//! (see [`PATHS`]). Thread per connection, capped at [`MAX_CONNECTIONS`] live connections
//! (past the cap a connection is closed at once). Counts connections, requests and hits per
//! path so tests can assert keep-alive reuse, and keeps every request head, request body (by
//! Content-Length) and client address. A request in absolute-form (`GET http://any.host/ok`)
//! is answered as its path, so the server also plays an HTTP proxy that forwards to itself.
//! Stops on drop.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::pages::{render, PageKind};

/// Live connections served at once; more are accepted and closed immediately.
pub const MAX_CONNECTIONS: usize = 8192;
/// Largest request head read.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// An idle keep-alive connection is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval of blocking waits, so the server notices `stop`.
const POLL: Duration = Duration::from_millis(50);
/// Poll interval of `/stall` connections (how soon they notice the server stopping).
const STALL_POLL: Duration = Duration::from_millis(500);
/// Per-byte delay of the trickle endpoints.
pub const TRICKLE_DELAY: Duration = Duration::from_secs(1);
/// Thread stack size for connection threads (debug builds of flate2 need a few hundred KiB;
/// only touched pages cost memory).
const CONN_STACK: usize = 1024 * 1024;
/// Size of the Content-Length the short body promises and how much it sends.
pub const SHORT_BODY_PROMISED: usize = 1000;
pub const SHORT_BODY_SENT: usize = 100;
/// Bytes of one header line of `/endless-headers` and the single header of `/huge-head`.
const ENDLESS_HEADER_LINE: usize = 1024;
pub const HUGE_HEADER_BYTES: usize = 256 * 1024;
/// Longest redirect chain `/redirect/N` serves.
pub const MAX_REDIRECT_CHAIN: u32 = 100;
/// Size of a `/bigpage/N` body: past the drain budget for a lone page, within the one for a
/// page whose host has more jobs waiting.
pub const BIG_PAGE_BYTES: usize = 100 * 1024;

/// Every fixed path and what it does (the `/redirect/N`, `/keepalive/N` and
/// `/charset/<kind>` families are parameterised).
pub const PATHS: &[(&str, &str)] = &[
    ("/ok", "200, Content-Length, title \"OK page\", keep-alive"),
    (
        "/flaky/N/STATUS[/RETRY_AFTER]/TAG",
        "the first N requests get STATUS (Retry-After when given), then 200 \"flaky TAG\"",
    ),
    (
        "/sleep/MS/TAG",
        "200 titled \"slept TAG\" after MS milliseconds",
    ),
    (
        "/goto/HOST/PORT/PATH",
        "302 to http://HOST:PORT/PATH (another server)",
    ),
    (
        "/then-close",
        "200, Content-Length, no Connection: close, then the connection is closed",
    ),
    (
        "/chunked",
        "200 chunked, title split across chunks, chunk extensions and trailers",
    ),
    (
        "/close-delimited",
        "HTTP/1.0 200 without length, body ends at close",
    ),
    (
        "/redirect/N",
        "302 to /redirect/N-1; /redirect/0 is 200 \"Redirect end\"",
    ),
    ("/loop", "301 to /loop2, which 301s back to /loop"),
    (
        "/relative-redirect",
        "302 with Location \"ok?from=rel\" (relative)",
    ),
    ("/404-with-title", "404 with title \"Not Found Here\""),
    ("/gzip", "gzip body, title \"Gzip title\""),
    ("/deflate", "deflate (zlib) body, title \"Deflate title\""),
    ("/nohtml", "200 image/png"),
    ("/stall", "reads the request, never answers"),
    ("/trickle-status", "status line at one byte per second"),
    ("/trickle-body", "head at once, body at one byte per second"),
    ("/endless-headers", "header lines forever"),
    (
        "/endless-body",
        "title at once, then body forever (close-delimited)",
    ),
    (
        "/endless-notitle",
        "body without a title forever (close-delimited)",
    ),
    ("/reset", "RST (SO_LINGER 0) after reading the request"),
    ("/garbage", "non-HTTP bytes, then close"),
    ("/bad-chunk", "chunked with chunk size \"zz\""),
    ("/short-body", "Content-Length 1000, 100 bytes, close"),
    (
        "/eof-before-response",
        "close after reading the request, no byte sent",
    ),
    (
        "/conflicting-length",
        "two different Content-Length headers",
    ),
    ("/huge-head", "one 256 KiB header"),
    ("/keepalive/N", "200 keep-alive, title \"keepalive N\""),
    (
        "/linkto/PORT/N",
        "200 keep-alive, title \"index N\", <h3><a> to http://127.0.0.1:PORT/keepalive/N",
    ),
    (
        "/bigpage/N",
        "200 keep-alive, title \"big N\" at the top of a BIG_PAGE_BYTES page",
    ),
    (
        "/charset/<kind>",
        "page variants from pages.rs by PageKind::name()",
    ),
];

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    requests: AtomicU64,
    live: AtomicUsize,
    hits: Mutex<HashMap<String, u64>>,
    /// Every request's path and arrival time, in order.
    arrivals: Mutex<Vec<(String, Instant)>>,
    /// Every request head as received (request line and header lines), in order.
    heads: Mutex<Vec<String>>,
    /// Every request body (by its Content-Length; empty without one), in order.
    bodies: Mutex<Vec<Vec<u8>>>,
    /// The client address of every connection accepted, in order.
    peers: Mutex<Vec<SocketAddr>>,
    /// What `/robots.txt` answers: a status and a body (404 when unset).
    robots: Mutex<Option<(u16, String)>>,
    /// Requests being answered right now, and the most at once.
    busy: AtomicUsize,
    peak_busy: AtomicUsize,
}

/// A running fault server.
pub struct FaultServer {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start() -> FaultServer {
        FaultServer::start_on("127.0.0.1")
    }

    /// A fault server on another loopback address (`127.0.0.2`...), for tests that tell
    /// servers apart by address.
    pub fn start_on(ip: &str) -> FaultServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind fault server");
        let addr = listener.local_addr().expect("local_addr");
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        let accept = std::thread::spawn(move || accept_loop(listener, st, sp));
        FaultServer {
            addr,
            stats,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base() + path`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Requests seen for `path` (query string stripped).
    pub fn hits(&self, path: &str) -> u64 {
        self.stats
            .hits
            .lock()
            .expect("hits lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The most requests this server was working on at once (from a request head's arrival
    /// to the start of its answer).
    pub fn peak_busy(&self) -> usize {
        self.stats.peak_busy.load(Ordering::SeqCst)
    }

    /// Make `/robots.txt` answer `status` with `body` from now on.
    pub fn set_robots(&self, status: u16, body: &str) {
        *self.stats.robots.lock().expect("robots lock") = Some((status, body.to_string()));
    }

    /// When each request whose path starts with `prefix` arrived, in order.
    pub fn arrivals(&self, prefix: &str) -> Vec<Instant> {
        self.stats
            .arrivals
            .lock()
            .expect("arrivals lock")
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, t)| *t)
            .collect()
    }

    /// Every request head received so far (request line and header lines, CRLF-separated),
    /// in order.
    pub fn heads(&self) -> Vec<String> {
        self.stats.heads.lock().expect("heads lock").clone()
    }

    /// Every request body received so far (by its Content-Length), in order.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.stats.bodies.lock().expect("bodies lock").clone()
    }

    /// The client address of every connection accepted so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.stats.peers.lock().expect("peers lock").clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Requests read so far (all paths).
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Connections open right now.
    pub fn live(&self) -> usize {
        self.stats.live.load(Ordering::Relaxed)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept().
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = conn else { continue };
        if stats.live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        if let Ok(peer) = stream.peer_addr() {
            stats.peers.lock().expect("peers lock").push(peer);
        }
        stats.live.fetch_add(1, Ordering::Relaxed);
        let (st, sp) = (stats.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(CONN_STACK)
            .spawn(move || {
                let _ = serve(stream, &st, &sp);
                st.live.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            stats.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Sleep `d` unless the server stops first; true when stopped.
fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    stop.load(Ordering::Relaxed)
}

/// Pseudo target for a request that is not HTTP at all.
const NOT_HTTP_TARGET: &str = "<not-http>";

/// A request head: its target (absolute-form reduced to the path) and whether the client
/// asked to close; and its body (by Content-Length).
struct Request {
    target: String,
    close: bool,
    head: String,
    body: Vec<u8>,
}

/// The value of the request head's Content-Length (0 without one).
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The origin-form of a request target: `http://host:port/p?q` becomes `/p?q`.
fn origin_form(target: &str) -> String {
    match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => target.to_string(),
    }
}

/// Read one request head; `Ok(None)` on EOF/idle/stop. Leftover bytes stay in `buf`.
fn read_request(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<Request>> {
    s.set_read_timeout(Some(POLL))?;
    let start = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        let body_len = head_end.map(|end| content_length(&String::from_utf8_lossy(&buf[..end])));
        if let Some((end, len)) = head_end
            .zip(body_len)
            .filter(|(e, l)| buf.len() >= e + 4 + l)
        {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            let target = origin_form(head.split(' ').nth(1).unwrap_or("/"));
            let close = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case("connection")
                        && v.trim().eq_ignore_ascii_case("close")
                })
            });
            return Ok(Some(Request {
                target,
                close,
                head,
                body,
            }));
        }
        if buf.first().is_some_and(|b| !b.is_ascii_uppercase()) {
            // Not HTTP (a TLS ClientHello, say): answer like a real server, 400 and close.
            buf.clear();
            return Ok(Some(Request {
                target: NOT_HTTP_TARGET.to_string(),
                close: true,
                head: String::new(),
                body: Vec::new(),
            }));
        }
        if (head_end.is_none() && buf.len() > MAX_REQUEST_HEAD)
            || stop.load(Ordering::Relaxed)
            || start.elapsed() > IDLE_TIMEOUT
        {
            return Ok(None);
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// After answering: keep the connection for another request, or close it.
enum Next {
    KeepAlive,
    Close,
    /// Drop without a FIN (SO_LINGER 0 was set): the peer sees RST.
    Abort,
}

fn serve(mut s: TcpStream, stats: &Stats, stop: &AtomicBool) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut s, &mut buf, stop)? {
        let arrived = Instant::now();
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let path = req.target.split('?').next().unwrap_or("/").to_string();
        let hit = {
            let mut hits = stats.hits.lock().expect("hits lock");
            let n = hits.entry(path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        stats
            .arrivals
            .lock()
            .expect("arrivals lock")
            .push((path.clone(), arrived));
        stats.heads.lock().expect("heads lock").push(req.head);
        stats.bodies.lock().expect("bodies lock").push(req.body);
        if path == "/robots.txt" {
            let robots = stats.robots.lock().expect("robots lock").clone();
            let (status, body) = robots.unwrap_or((404, String::new()));
            full(
                &mut s,
                &format!("{status} Robots"),
                "text/plain",
                "",
                body.as_bytes(),
            )?;
            continue;
        }
        let now_busy = stats.busy.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_busy.fetch_max(now_busy, Ordering::SeqCst);
        if let Some(think) = sleep_of(&path) {
            std::thread::sleep(think);
        }
        // Busy until the answer starts: once its last byte is out the client may send its
        // next request (on another connection) before this write call has even returned.
        stats.busy.fetch_sub(1, Ordering::SeqCst);
        let answered = respond(&mut s, &path, hit, stop);
        match answered? {
            Next::KeepAlive if !req.close => continue,
            Next::Abort => return Ok(()),
            _ => break,
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

fn title_doc(title: &str) -> Vec<u8> {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><p>fault server</p></body></html>\n"
    )
    .into_bytes()
}

/// A complete response with Content-Length.
fn full(s: &mut TcpStream, status: &str, ctype: &str, extra: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nServer: fault\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out)
}

fn redirect(s: &mut TcpStream, status: &str, location: &str) -> io::Result<Next> {
    full(
        s,
        status,
        "text/html",
        &format!("Location: {location}\r\n"),
        b"<p>moved</p>",
    )?;
    Ok(Next::KeepAlive)
}

/// Write `bytes` one at a time with [`TRICKLE_DELAY`] between them.
fn trickle(s: &mut TcpStream, bytes: &[u8], stop: &AtomicBool) -> io::Result<Next> {
    for b in bytes {
        s.write_all(std::slice::from_ref(b))?;
        if nap(stop, TRICKLE_DELAY) {
            break;
        }
    }
    Ok(Next::Close)
}

/// Write `unit` over and over until the peer goes away or the server stops.
fn endless(s: &mut TcpStream, unit: &[u8], stop: &AtomicBool) -> io::Result<Next> {
    // A client that stops reading must not pin this thread after the server stops: write
    // under a short timeout and look at `stop` between tries.
    s.set_write_timeout(Some(STALL_POLL))?;
    while !stop.load(Ordering::Relaxed) {
        let mut off = 0;
        while off < unit.len() && !stop.load(Ordering::Relaxed) {
            match s.write(&unit[off..]) {
                Ok(0) => return Ok(Next::Close),
                Ok(n) => off += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Next::Close)
}

/// Answer the `hit`th request for `path`.
/// How long `/sleep/MS/TAG` waits before its answer.
fn sleep_of(path: &str) -> Option<Duration> {
    let ms = path
        .strip_prefix("/sleep/")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

fn respond(s: &mut TcpStream, path: &str, hit: u64, stop: &AtomicBool) -> io::Result<Next> {
    let html = "text/html; charset=utf-8";
    match path {
        NOT_HTTP_TARGET => {
            full(
                s,
                "400 Bad Request",
                "text/plain",
                "Connection: close\r\n",
                b"not HTTP\n",
            )?;
            Ok(Next::Close)
        }
        "/ok" => {
            full(s, "200 OK", html, "", &title_doc("OK page"))?;
            Ok(Next::KeepAlive)
        }
        "/chunked" => {
            let mut out = Vec::from(
                &b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nTrailer: X-Check\r\n\r\n"[..],
            );
            let parts: [&[u8]; 4] = [
                b"<html><head><ti",
                b"tle>Chunked ",
                b"title</ti",
                b"tle></head><body>x</body></html>",
            ];
            for (i, p) in parts.iter().enumerate() {
                let ext = if i == 1 { ";name=value" } else { "" };
                out.extend_from_slice(format!("{:x}{ext}\r\n", p.len()).as_bytes());
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nX-Check: done\r\n\r\n");
            s.write_all(&out)?;
            Ok(Next::KeepAlive)
        }
        "/close-delimited" => {
            let mut out = Vec::from(&b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"[..]);
            out.extend_from_slice(&title_doc("Close delimited"));
            s.write_all(&out)?;
            Ok(Next::Close)
        }
        "/loop" => redirect(s, "301 Moved Permanently", "/loop2"),
        "/loop2" => redirect(s, "301 Moved Permanently", "/loop"),
        "/relative-redirect" => redirect(s, "302 Found", "ok?from=rel"),
        "/404-with-title" => {
            full(s, "404 Not Found", html, "", &title_doc("Not Found Here"))?;
            Ok(Next::KeepAlive)
        }
        "/gzip" => {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(&title_doc("Gzip title"))?;
            full(
                s,
                "200 OK",
                html,
                "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
                &enc.finish()?,
            )?;
            Ok(Next::KeepAlive)
        }
        "/deflate" => {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
            enc.write_all(&title_doc("Deflate title"))?;
            full(
                s,
                "200 OK",
                html,
                "Content-Encoding: deflate\r\n",
                &enc.finish()?,
            )?;
            Ok(Next::KeepAlive)
        }
        "/nohtml" => {
            full(s, "200 OK", "image/png", "", super::pages::PNG_BYTES)?;
            Ok(Next::KeepAlive)
        }
        "/stall" => {
            // Hold the connection open, answering nothing, until the client leaves. A slow
            // poll: a thousand stalled connections must not busy the test machine.
            s.set_read_timeout(Some(STALL_POLL))?;
            let mut sink = [0u8; 512];
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Next::Close);
                }
                match s.read(&mut sink) {
                    Ok(0) => return Ok(Next::Close),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        "/trickle-status" => {
            let mut out = Vec::from(&b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"[..]);
            out.extend_from_slice(&title_doc("Trickled"));
            trickle(s, &out, stop)
        }
        "/trickle-body" => {
            let body = title_doc("Trickled body");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes())?;
            trickle(s, &body, stop)
        }
        "/endless-headers" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")?;
            let line = format!("X-Pad: {}\r\n", "a".repeat(ENDLESS_HEADER_LINE - 10));
            endless(s, line.as_bytes(), stop)
        }
        "/endless-body" => {
            let mut out = Vec::from(
                &b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"[..],
            );
            out.extend_from_slice(b"<html><head><title>Endless</title></head><body>");
            s.write_all(&out)?;
            endless(
                s,
                "<p>more and more and more</p>\n".repeat(64).as_bytes(),
                stop,
            )
        }
        "/endless-notitle" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html><body>")?;
            endless(s, "<p>no title anywhere</p>\n".repeat(64).as_bytes(), stop)
        }
        "/reset" => {
            socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO))?;
            Ok(Next::Abort)
        }
        "/garbage" => {
            s.write_all(b"\x00\xff\xfeSSH-2.0-OpenSSH_9.2 not http at all\r\n\x16\x03\x01\x02\x00garbage\r\n\r\n")?;
            Ok(Next::Close)
        }
        "/bad-chunk" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<title>never</title>\r\n0\r\n\r\n")?;
            Ok(Next::Close)
        }
        "/short-body" => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {SHORT_BODY_PROMISED}\r\n\r\n");
            let mut body = b"<html><head><!-- ".to_vec();
            body.resize(SHORT_BODY_SENT, b'-');
            s.write_all(head.as_bytes())?;
            s.write_all(&body)?;
            Ok(Next::Close)
        }
        "/eof-before-response" => Ok(Next::Close),
        "/conflicting-length" => {
            let body = title_doc("Conflicting");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nContent-Length: {}\r\n\r\n",
                body.len(),
                body.len() + 7
            );
            s.write_all(head.as_bytes())?;
            s.write_all(&body)?;
            Ok(Next::Close)
        }
        "/huge-head" => {
            let body = title_doc("Huge head");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Huge: {}\r\nContent-Length: {}\r\n\r\n",
                "h".repeat(HUGE_HEADER_BYTES),
                body.len()
            );
            s.write_all(head.as_bytes())?;
            s.write_all(&body)?;
            Ok(Next::Close)
        }
        p if p.starts_with("/redirect/") => match p["/redirect/".len()..].parse::<u32>() {
            Ok(0) => {
                full(s, "200 OK", html, "", &title_doc("Redirect end"))?;
                Ok(Next::KeepAlive)
            }
            Ok(n) if n <= MAX_REDIRECT_CHAIN => {
                redirect(s, "302 Found", &format!("/redirect/{}", n - 1))
            }
            _ => not_found(s),
        },
        p if p.starts_with("/linkto/") => {
            let Some((port, n)) = p["/linkto/".len()..].split_once('/') else {
                return not_found(s);
            };
            let body = format!(
                "<!DOCTYPE html><html><head><title>index {n}</title></head><body>\
                 <h3><a href=\"http://127.0.0.1:{port}/keepalive/{n}\">post</a></h3></body></html>\n"
            );
            full(s, "200 OK", html, "", body.as_bytes())?;
            Ok(Next::KeepAlive)
        }
        p if p.starts_with("/bigpage/") => {
            let mut body = title_doc(&format!("big {}", &p["/bigpage/".len()..]));
            body.resize(BIG_PAGE_BYTES, b' ');
            full(s, "200 OK", html, "", &body)?;
            Ok(Next::KeepAlive)
        }
        // A keep-alive response, then the connection closed anyway: the client's next
        // request on it finds it dead (a stale keep-alive connection).
        "/then-close" => {
            full(s, "200 OK", html, "", &title_doc("then close"))?;
            Ok(Next::Close)
        }
        // `/goto/HOST/PORT/PATH`: a redirect to http://HOST:PORT/PATH.
        p if p.starts_with("/goto/") => {
            let mut parts = p["/goto/".len()..].splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(host), Some(port), rest) => {
                    let to = format!("http://{host}:{port}/{}", rest.unwrap_or(""));
                    redirect(s, "302 Found", &to)
                }
                _ => not_found(s),
            }
        }
        // `/flaky/N/STATUS[/RETRY_AFTER]/TAG`: the first N requests get STATUS (with a
        // Retry-After header when given), the later ones a 200 titled "flaky TAG".
        p if p.starts_with("/flaky/") => {
            let parts: Vec<&str> = p["/flaky/".len()..].split('/').collect();
            let (n, status, after, tag) = match parts[..] {
                [n, status, tag] => (n, status, None, tag),
                [n, status, after, tag] => (n, status, Some(after), tag),
                _ => return not_found(s),
            };
            let (Ok(n), Ok(status)) = (n.parse::<u64>(), status.parse::<u16>()) else {
                return not_found(s);
            };
            if hit <= n {
                let extra = after.map_or(String::new(), |a| format!("Retry-After: {a}\r\n"));
                full(
                    s,
                    &format!("{status} Flaky"),
                    html,
                    &extra,
                    &title_doc("not yet"),
                )?;
            } else {
                full(s, "200 OK", html, "", &title_doc(&format!("flaky {tag}")))?;
            }
            Ok(Next::KeepAlive)
        }
        // `/sleep/MS/TAG`: a 200 titled "slept TAG" after MS milliseconds.
        // (The wait is the caller's: `sleep_of`.)
        p if p.starts_with("/sleep/") => {
            let tag = p["/sleep/".len()..].split_once('/').map_or("", |(_, t)| t);
            full(s, "200 OK", html, "", &title_doc(&format!("slept {tag}")))?;
            Ok(Next::KeepAlive)
        }
        p if p.starts_with("/keepalive/") => {
            let n = &p["/keepalive/".len()..];
            full(s, "200 OK", html, "", &title_doc(&format!("keepalive {n}")))?;
            Ok(Next::KeepAlive)
        }
        p if p.starts_with("/charset/") => match PageKind::from_name(&p["/charset/".len()..]) {
            Some(kind) => {
                let page = render(kind, "fault");
                full(
                    s,
                    "200 OK",
                    page.content_type.header_value(),
                    "",
                    &page.body,
                )?;
                Ok(Next::KeepAlive)
            }
            None => not_found(s),
        },
        _ => not_found(s),
    }
}

fn not_found(s: &mut TcpStream) -> io::Result<Next> {
    full(s, "404 Not Found", "text/plain", "", b"no such fault\n")?;
    Ok(Next::KeepAlive)
}

/// Connections queued on the full backlog of a [`Blackhole`] before it drops SYNs.
const BLACKHOLE_FILL_ATTEMPTS: usize = 8;
const BLACKHOLE_PROBE: Duration = Duration::from_millis(300);

/// A listener on 127.0.0.1 whose accept queue is full and never drained: the kernel drops
/// further SYNs, so a connect to it times out (for `connect_timeout`). Stops on drop.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        sock.bind(&any.into()).expect("bind blackhole");
        sock.listen(0).expect("listen(0)");
        let addr = sock
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("inet addr");
        let mut fillers = Vec::new();
        for _ in 0..BLACKHOLE_FILL_ATTEMPTS {
            match TcpStream::connect_timeout(&addr, BLACKHOLE_PROBE) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Blackhole {
                        addr,
                        _listener: sock,
                        _fillers: fillers,
                    };
                }
                Err(e) => panic!("filling the blackhole backlog: {e}"),
            }
        }
        panic!("the backlog of {addr} never filled: SYNs are not dropped on this kernel");
    }
}
