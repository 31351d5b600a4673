//! Latency-bound test server for the end-to-end bench (`benches/e2e.sh latency`).
//!
//! Owns: an HTTP/1.1 server on tokio's multi-thread runtime that answers every request exactly
//! `DELAY_MS` after its head was received, with an HTML page, and keeps the connection alive.
//! Built to hold 10,000+ concurrent connections (large listen backlog, one task per
//! connection, no per-connection allocation beyond a small read buffer). On SIGTERM/SIGINT it
//! prints `requests=N peak_connections=M` to stdout and exits.
//!
//! Pages: by default a 160-byte page with `Content-Length`. With `--go-page`, a page shaped
//! like a small real site as Go's `net/http` serves it: 2,286 bytes of HTML, the title
//! first, sent `Transfer-Encoding: chunked` in a 2,048-byte chunk and the rest (Go buffers
//! 2,048 bytes before it chunks), with `Content-Type: text/html; charset=utf-8` and a `Date`
//! header, in Go's header order.
//!
//! Usage: `delay_server [ADDR:PORT] [DELAY_MS] [--go-page]` (default `0.0.0.0:8080 2000`).
//! Prints `listening ADDR` once ready.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Default listen address.
const DEFAULT_ADDR: &str = "0.0.0.0:8080";
/// Default delay before each response.
const DEFAULT_DELAY_MS: u64 = 2000;
/// Listen backlog: a 10,000-connection burst must not overflow the accept queue.
const LISTEN_BACKLOG: u32 = 65_535;
/// Largest request head accepted; bigger heads close the connection.
const MAX_HEAD: usize = 16 * 1024;
/// Read chunk size.
const READ_CHUNK: usize = 2048;
/// The page every request gets by default.
const BODY: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Delayed page</title></head><body><p>answered after a fixed delay</p></body></html>\n";
/// The `--go-page` page's head; its body is [`GO_PARAGRAPHS`] paragraphs of [`GO_FILLER`].
const GO_HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<title>Delayed page</title>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<link rel=\"stylesheet\" href=\"/static/site.css\">\n</head>\n<body>\n<nav><a href=\"/\">Home</a> <a href=\"/about\">About</a> <a href=\"/blog\">Blog</a> <a href=\"/contact\">Contact</a></nav>\n<main>\n";
const GO_FILLER: &str = "<p>This page was answered after a fixed delay by a server that writes its pages the way a small Go site does: a template rendered into the response writer, no length known in advance.</p>\n";
const GO_PARAGRAPHS: usize = 10;
const GO_TAIL: &str = "</main>\n<footer>&copy; delay server</footer>\n</body>\n</html>\n";
/// Go's `net/http` buffers this much of a body before it starts chunking.
const GO_CHUNK: usize = 2048;

/// Counters reported at exit.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    open: AtomicU64,
    peak: AtomicU64,
}

/// What every request gets.
#[derive(Clone, Copy)]
enum Page {
    /// [`BODY`] with `Content-Length`.
    Small,
    /// Go `net/http` style: chunked, about 2.3 KB, a `Date` header.
    Go,
}

fn main() -> std::io::Result<()> {
    let (flags, positional): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let page = match flags
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Page::Small,
        ["--go-page"] => Page::Go,
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("unknown options {other:?} (known: --go-page)"),
            ))
        }
    };
    let mut args = positional.into_iter();
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| DEFAULT_ADDR.to_string())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let delay = Duration::from_millis(match args.next() {
        Some(s) => s
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => DEFAULT_DELAY_MS,
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, delay, page))
}

async fn serve(addr: SocketAddr, delay: Duration, page: Page) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    println!("listening {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Accept errors (EMFILE, aborted handshakes) are transient: keep serving.
                let Ok((stream, _)) = accepted else { continue };
                let stats = stats.clone();
                tokio::spawn(async move {
                    let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                    stats.peak.fetch_max(open, Ordering::Relaxed);
                    // A peer reset is an ordinary end of a connection here.
                    let _ = connection(stream, delay, page, &stats).await;
                    stats.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!(
        "requests={} peak_connections={}",
        stats.requests.load(Ordering::Relaxed),
        stats.peak.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The `--go-page` body (built once).
fn go_body() -> &'static str {
    static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BODY.get_or_init(|| {
        let mut body = String::from(GO_HEAD);
        for _ in 0..GO_PARAGRAPHS {
            body.push_str(GO_FILLER);
        }
        body.push_str(GO_TAIL);
        body
    })
}

/// A response as Go's `net/http` writes one whose handler wrote `body` without a length:
/// sorted headers, then chunks of [`GO_CHUNK`] bytes and the rest, then the last chunk.
fn go_response(body: &str) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nDate: {date}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(GO_CHUNK) {
        out.push_str(&format!("{:x}\r\n", chunk.len()));
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out.push_str("0\r\n\r\n");
    out
}

/// Serve one keep-alive connection: every complete request head gets the page after `delay`.
async fn connection(
    mut stream: TcpStream,
    delay: Duration,
    page: Page,
    stats: &Stats,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let small = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{}",
        BODY.len(),
        BODY
    );
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let received = Instant::now();
        buf.drain(..end);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep_until(received + delay).await;
        match page {
            Page::Small => stream.write_all(small.as_bytes()).await?,
            Page::Go => stream.write_all(go_response(go_body()).as_bytes()).await?,
        }
    }
}
