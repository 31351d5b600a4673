//! `ringcrawl load URL`: a wrk-style HTTP/1.1 load generator on the same io_uring stack.
//!
//! `--threads` workers, each a tokio-uring runtime running its share of `-c` keep-alive
//! connections. Every response is fully framed and consumed (an `http::Exchange`, driven by
//! `conn::drive` like every fetch) before the next request on that connection; a connection
//! the server closes is reopened and counted. Closed loop by default (each connection sends as soon as
//! its previous response is complete); with `--rate`, open loop: each connection sends on a
//! fixed schedule and latency is measured from when the request *should* have been sent,
//! which corrects coordinated omission as wrk2 does. Latencies go to a per-worker
//! hdrhistogram (microseconds), merged at the end.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use url::Url;

use crate::conn::{self, DriveError, Limits, ReadBufs};
use crate::dns::{DnsConfig, DnsError, Resolver};
use crate::error::ErrorKind;
use crate::http::{
    write_request, Consumer, Exchange, ExchangeOptions, HeaderBlock, Method, Request, ResponseHead,
    Target, Want,
};
use crate::net::{ConnectOptions, StartError, Stream, TlsContext, READ_BUF_SIZE};
use crate::options::FetchOptions;

/// Highest latency the histogram tracks (microseconds): one hour.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Deadline for one request/response (connect included) in load mode.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed connect before the connection slot tries again.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How long to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    Requests(u64),
    Duration(Duration),
}

/// Load-test settings: the shared, validated fetch options (`-c/--connections` is their
/// `concurrency`; `connect_timeout`, `ca_file`, `insecure`, `resolver`, `user_agent` and
/// `headers` are used too) and the load-only ones.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub fetch: FetchOptions,
    pub url: Url,
    /// `None`: [`default_threads`] for the target.
    pub threads: Option<usize>,
    pub stop: Stop,
    /// Requests per second for all connections together (open loop); `None` = closed loop.
    pub rate: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Tls(#[from] crate::net::TlsConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The result of a run (also the `--json` output).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    pub latency_ms: Latency,
    pub status: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub connects: u64,
    pub reconnects: u64,
}

/// Counters shared by all workers (for the live progress line).
#[derive(Default)]
pub struct LiveCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// What one worker measured.
struct WorkerResult {
    hist: Histogram<u64>,
    bytes: u64,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    connects: u64,
    reconnects: u64,
}

/// Per-run state shared by a worker's connections.
struct Shared {
    opts: LoadOptions,
    addrs: Vec<SocketAddr>,
    tls: Option<TlsContext>,
    connect: ConnectOptions,
    request: Vec<u8>,
    /// Requests started, all workers (for `-n`).
    issued: Arc<AtomicU64>,
    live: Arc<LiveCounters>,
    stop_flag: Arc<AtomicBool>,
    end: Option<Instant>,
}

impl Shared {
    /// Claim the right to send one more request.
    fn claim(&self) -> bool {
        if self.stop_flag.load(Ordering::Relaxed) || self.end.is_some_and(|e| Instant::now() >= e) {
            return false;
        }
        match self.opts.stop {
            Stop::Requests(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            Stop::Duration(_) => true,
        }
    }
}

/// Run a load test; `live` is updated as responses complete (for a progress line).
pub fn run(opts: LoadOptions, live: Arc<LiveCounters>) -> Result<LoadReport, LoadError> {
    let url = opts.url.clone();
    let tls = if url.scheme() == "https" {
        Some(TlsContext::new(
            opts.fetch.ca_file.as_deref(),
            opts.fetch.insecure,
        )?)
    } else {
        None
    };
    let addrs = resolve_once(&opts)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = opts
        .threads
        .unwrap_or_else(|| default_threads(&addrs, cores))
        .clamp(1, opts.fetch.concurrency.max(1));
    let issued = Arc::new(AtomicU64::new(0));
    let stop_flag = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = match opts.stop {
        Stop::Duration(d) => Some(started + d),
        Stop::Requests(_) => None,
    };
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        // Spread connections evenly: the first `connections % threads` workers take one more.
        let conns =
            opts.fetch.concurrency / threads + usize::from(i < opts.fetch.concurrency % threads);
        let (opts, addrs, tls) = (opts.clone(), addrs.clone(), tls.clone());
        let (issued, live, stop_flag) = (issued.clone(), live.clone(), stop_flag.clone());
        let run = move |()| {
            let mut request = Vec::new();
            let headers = HeaderBlock::new(&opts.fetch.user_agent, &opts.fetch.headers);
            write_request(
                &mut request,
                &Request {
                    method: &Method::Get,
                    url: &opts.url,
                    target: Target::Origin,
                    headers: &headers,
                    proxy_authorization: None,
                    body_len: None,
                    close: false,
                },
            );
            let connect = ConnectOptions {
                connect_timeout: opts.fetch.connect_timeout,
                bind: Rc::from(Vec::new()),
            };
            let shared = Rc::new(Shared {
                opts,
                addrs,
                tls,
                connect,
                request,
                issued,
                live,
                stop_flag,
                end,
            });
            worker(shared, conns)
        };
        handles.push(crate::net::spawn_runtime(
            format!("ringcrawl-load{i}"),
            crate::net::DEFAULT_RING_ENTRIES,
            || Ok(()),
            run,
        )?);
    }
    let mut total = WorkerResult::empty();
    for h in handles {
        total.merge(h.join().expect("load worker does not panic"));
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(total.report(&url, opts.fetch.concurrency, threads, elapsed))
}

/// Worker threads when `--threads` is not given: every core for a remote target; half of
/// them for a target on this machine (loopback), whose server needs the rest (on a small
/// machine, one load thread beside the server beat two in `benches/e2e.sh load`).
pub fn default_threads(addrs: &[SocketAddr], cores: usize) -> usize {
    let local = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
    if local {
        (cores / 2).max(1)
    } else {
        cores.max(1)
    }
}

/// Resolve the target once (load tests measure the server, not DNS).
fn resolve_once(opts: &LoadOptions) -> Result<Vec<SocketAddr>, LoadError> {
    let port = opts.url.port_or_known_default().unwrap_or(80);
    match opts.url.host() {
        Some(url::Host::Ipv4(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        _ => {}
    }
    let host = opts.url.host_str().unwrap_or_default().to_string();
    let dns = DnsConfig::system(opts.fetch.resolver);
    let rt = crate::net::new_runtime(crate::net::DEFAULT_RING_ENTRIES)
        .map_err(|e| LoadError::Start(StartError::NoUring(e)))?;
    let ips = rt.block_on(async move { Resolver::new(&dns)?.lookup(&host).await })?;
    Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// Run `conns` connection loops on this thread and merge what they measured.
async fn worker(shared: Rc<Shared>, conns: usize) -> WorkerResult {
    let handles: Vec<_> = (0..conns)
        .map(|i| tokio_uring::spawn(connection_loop(shared.clone(), i, conns)))
        .collect();
    let mut total = WorkerResult::empty();
    for h in handles {
        if let Ok(r) = h.await {
            total.merge(r);
        }
    }
    total
}

/// What a load test wants of a response: its status; the body is only read through.
struct Status(u16);

impl Consumer for Status {
    fn head(&mut self, head: &ResponseHead) -> Want {
        self.0 = head.status;
        Want::Enough
    }
    fn data(&mut self, _: &[u8]) -> Want {
        Want::Enough
    }
}

/// One connection's read buffer, kept across its requests.
struct ConnBuf(RefCell<Vec<u8>>);

impl ReadBufs for ConnBuf {
    fn take(&self, _draining: bool) -> Vec<u8> {
        let buf = std::mem::take(&mut *self.0.borrow_mut());
        if buf.capacity() == 0 {
            Vec::with_capacity(READ_BUF_SIZE)
        } else {
            buf
        }
    }
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() > 0 {
            *self.0.borrow_mut() = buf;
        }
    }
    fn hold_while_waiting(&self) -> bool {
        true
    }
}

/// One connection slot: (re)connect, then request/response until the run ends.
async fn connection_loop(shared: Rc<Shared>, index: usize, conns: usize) -> WorkerResult {
    let mut res = WorkerResult::empty();
    let mut stream: Option<Stream> = None;
    let buf = ConnBuf(RefCell::new(Vec::new()));
    let mut req_buf = Vec::with_capacity(shared.request.len());
    // Open loop: this connection's share of the rate, phase-shifted so connections interleave.
    let interval = shared.opts.rate.map(|r| {
        let total_conns = shared.opts.fetch.concurrency.max(1) as f64;
        Duration::from_secs_f64(total_conns / r.max(1e-6))
    });
    let start = Instant::now();
    let mut next_send = interval.map(|iv| start + iv.mul_f64(index as f64 / conns.max(1) as f64));
    let mut had_connection = false;
    // A request whose connection turned out stale is sent again, as the same request.
    let mut retry: Option<Instant> = None;
    loop {
        let intended = match (retry.take(), next_send) {
            (Some(t), _) => t,
            (None, _) if !shared.claim() => break,
            (None, Some(t)) => {
                tokio::time::sleep_until(t.into()).await;
                next_send = Some(t + interval.expect("rate set"));
                t
            }
            (None, None) => Instant::now(),
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let (mut s, reused) = match stream.take() {
            Some(s) => (s, true),
            None => {
                let tls = shared
                    .tls
                    .as_ref()
                    .map(|t| (t, shared.opts.url.host_str().unwrap_or("")));
                match Stream::connect(&shared.addrs, &shared.connect, tls, deadline).await {
                    Ok(s) => {
                        res.connects += 1;
                        res.reconnects += u64::from(had_connection);
                        had_connection = true;
                        (s, false)
                    }
                    Err(e) => {
                        res.error(e.kind(), &shared);
                        tokio::time::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                }
            }
        };
        let mut req = std::mem::take(&mut req_buf);
        req.clear();
        req.extend_from_slice(&shared.request);
        let mut ex = Exchange::new(ExchangeOptions {
            max_body: u64::MAX,
            head_request: false,
            drain_budget: u64::MAX,
            reused,
        });
        let mut status = Status(0);
        let limits = Limits {
            deadline,
            idle: REQUEST_TIMEOUT,
        };
        let mut bytes = 0;
        let (outcome, req) =
            conn::drive(&mut s, req, &mut ex, &mut status, &buf, limits, &mut bytes).await;
        req_buf = req;
        res.bytes += bytes;
        match outcome {
            Ok(keep_alive) => {
                let us = intended.elapsed().as_micros() as u64;
                res.hist.saturating_record(us.max(1));
                *res.status.entry(status.0).or_default() += 1;
                shared.live.requests.fetch_add(1, Ordering::Relaxed);
                if keep_alive {
                    stream = Some(s);
                } else {
                    s.close().await;
                }
            }
            Err(DriveError::Stale) => {
                s.close().await;
                retry = Some(intended);
            }
            Err(e) => {
                res.error(e.kind(), &shared);
                s.close().await;
            }
        }
    }
    if let Some(s) = stream {
        s.close().await;
    }
    res
}

impl WorkerResult {
    fn empty() -> Self {
        WorkerResult {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static bounds are valid"),
            bytes: 0,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            connects: 0,
            reconnects: 0,
        }
    }

    fn error(&mut self, kind: ErrorKind, shared: &Shared) {
        *self.errors.entry(kind).or_default() += 1;
        shared.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn merge(&mut self, o: WorkerResult) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.bytes += o.bytes;
        for (k, v) in o.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.connects += o.connects;
        self.reconnects += o.reconnects;
    }

    fn report(&self, url: &Url, connections: usize, threads: usize, secs: f64) -> LoadReport {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| ms(self.hist.value_at_quantile(p));
        let requests = self.hist.len();
        LoadReport {
            url: url.to_string(),
            connections,
            threads,
            requests,
            duration_s: secs,
            rps: requests as f64 / secs,
            bytes: self.bytes,
            bytes_per_s: self.bytes as f64 / secs,
            latency_ms: Latency {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p999: q(0.999),
                max: ms(self.hist.max()),
                mean: self.hist.mean() / 1000.0,
            },
            status: self.status.clone(),
            errors: self.errors.clone(),
            connects: self.connects,
            reconnects: self.reconnects,
        }
    }
}

/// The human-readable report, in the spirit of wrk's.
pub fn format_report(r: &LoadReport) -> String {
    let mut s = String::new();
    use std::fmt::Write;
    let _ = writeln!(s, "Running {:.1}s test @ {}", r.duration_s, r.url);
    let _ = writeln!(
        s,
        "  {} threads and {} connections",
        r.threads, r.connections
    );
    let l = &r.latency_ms;
    let _ = writeln!(s, "  Latency (ms)  mean {:.3}  max {:.3}", l.mean, l.max);
    let _ = writeln!(
        s,
        "  Latency distribution (ms)\n     50%  {:.3}\n     90%  {:.3}\n     99%  {:.3}\n   99.9%  {:.3}",
        l.p50, l.p90, l.p99, l.p999
    );
    let _ = writeln!(
        s,
        "  {} requests in {:.2}s, {} read ({} connects, {} reconnects)",
        r.requests,
        r.duration_s,
        human_bytes(r.bytes as f64),
        r.connects,
        r.reconnects
    );
    let codes: Vec<String> = r.status.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(s, "  Status codes: {}", codes.join(", "));
    if !r.errors.is_empty() {
        let errs: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let _ = writeln!(s, "  Errors: {}", errs.join(", "));
    }
    let _ = writeln!(s, "Requests/sec: {:.2}", r.rps);
    let _ = writeln!(s, "Transfer/sec: {}", human_bytes(r.bytes_per_s));
    s
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_targets_leave_half_the_cores_to_the_server() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(default_threads(&[a("127.0.0.1:80")], 2), 1);
        assert_eq!(default_threads(&[a("127.0.0.1:80"), a("[::1]:80")], 8), 4);
        assert_eq!(default_threads(&[a("127.0.0.1:80")], 1), 1);
        assert_eq!(default_threads(&[a("192.0.2.10:80")], 8), 8);
        assert_eq!(
            default_threads(&[a("127.0.0.1:80"), a("192.0.2.10:80")], 8),
            8
        );
    }

    #[test]
    fn report_percentiles_and_rates() {
        let mut w = WorkerResult::empty();
        for us in 1..=1000u64 {
            w.hist.record(us * 1000).unwrap();
        }
        w.bytes = 2048;
        w.status.insert(200, 1000);
        let r = w.report(&Url::parse("http://127.0.0.1/").unwrap(), 10, 2, 2.0);
        assert_eq!(r.requests, 1000);
        assert!((r.rps - 500.0).abs() < 1e-9);
        assert!(
            (r.latency_ms.p50 - 500.0).abs() < 1.0,
            "{}",
            r.latency_ms.p50
        );
        assert!((r.latency_ms.p99 - 990.0).abs() < 2.0);
        assert!((r.latency_ms.max - 1000.0).abs() < 1.0);
        let json = serde_json::to_value(&r).unwrap();
        for k in [
            "requests",
            "duration_s",
            "rps",
            "bytes_per_s",
            "latency_ms",
            "status",
            "errors",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        assert!(json["latency_ms"].get("p999").is_some());
        assert!(format_report(&r).contains("Requests/sec: 500.00"));
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(512.0), "512.00B");
        assert_eq!(human_bytes(1536.0), "1.50KB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.00MB");
    }
}
