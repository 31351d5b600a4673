//! Latency-bound test server for the end-to-end bench (`benches/e2e.sh latency`).
//!
//! Owns: an HTTP/1.1 server on tokio's multi-thread runtime that answers every request exactly
//! `DELAY_MS` after its head was received, with a small HTML page, and keeps the connection
//! alive. Built to hold 10,000+ concurrent connections (large listen backlog, one task per
//! connection, no per-connection allocation beyond a small read buffer). On SIGTERM/SIGINT it
//! prints `requests=N peak_connections=M` to stdout and exits.
//!
//! Usage: `delay_server [ADDR:PORT] [DELAY_MS]` (default `0.0.0.0:8080 2000`). Prints
//! `listening ADDR` once ready.

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
/// The page every request gets.
const BODY: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Delayed page</title></head><body><p>answered after a fixed delay</p></body></html>\n";

/// Counters reported at exit.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    open: AtomicU64,
    peak: AtomicU64,
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
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
        .block_on(serve(addr, delay))
}

async fn serve(addr: SocketAddr, delay: Duration) -> std::io::Result<()> {
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
                    let _ = connection(stream, delay, &stats).await;
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

/// Serve one keep-alive connection: every complete request head gets the page after `delay`.
async fn connection(mut stream: TcpStream, delay: Duration, stats: &Stats) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let response = format!(
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
        stream.write_all(response.as_bytes()).await?;
    }
}
