//! `ringcrawl load URL`: a wrk-style HTTP/1.1 load generator on the same io_uring stack.
//!
//! [`Plan::new`] checks and resolves everything once (`--bind` addresses, TLS roots, the
//! target's addresses, the thread count), so the banner can be printed before the run;
//! [`Plan::run`] starts `--threads` workers, each a tokio-uring runtime running its share of
//! `-c` keep-alive connections. Every request is the same bytes, serialized once (method,
//! headers, `Content-Length` and the body read once at start); every response is fully
//! framed and consumed (an `http::Exchange`, driven by `conn::drive` like every fetch) before
//! the next request on that connection; a connection the server closes is reopened and
//! counted. Closed loop by default (each connection sends as soon as its previous response
//! is complete); with `--rate`, open loop: each connection sends on a fixed schedule and
//! latency is measured from when the request *should* have been sent, which corrects
//! coordinated omission as wrk2 does.
//!
//! `-d` is a hard limit: every request's deadline is the earlier of `--timeout` and the end
//! of the run, so at the end the requests still in flight stop at once and are counted as
//! abandoned, apart from errors. Errors are counted by wrk's classes (connect, read, write,
//! timeout; responses of status 400 and above as status) and by journal error kind. When no
//! connection slot can connect at all at the start, the run stops early. Each worker counts
//! into one tally its connections share (an hdrhistogram of microseconds, statuses in an
//! array indexed by code), merged across workers at the end; the report
//! ([`LoadReport`]) has their mean, stdev, percentiles and a 1-2-5 bucketed histogram. A run
//! in which no request got a response is [`LoadError::NoSuccess`], with the commonest cause.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
use crate::net::{BindCheckError, ConnectOptions, StartError, Stream, TlsContext, READ_BUF_SIZE};
use crate::options::FetchOptions;

/// Highest latency the histogram tracks (microseconds): one hour.
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits the latency histogram keeps.
const LATENCY_SIGFIGS: u8 = 3;
/// Pause after a failed connect before the connection slot tries again.
pub(crate) const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Largest request body (`--body`, `--body-file`): every connection holds a copy of the
/// request.
pub(crate) const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// The histogram's bucket bounds within each decade (a 1-2-5 series).
const BUCKET_STEPS: [u64; 3] = [1, 2, 5];
/// Characters of the longest bar of the text histogram.
const BAR_WIDTH: usize = 40;
/// Statuses from this one up are wrk's "status" errors (still completed requests).
const STATUS_ERROR_FROM: u16 = 400;
/// Status codes counted by value (a response head's status has three digits).
const STATUS_CODES: usize = 1000;

/// How long to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Stop {
    Requests(u64),
    /// A hard limit: requests still in flight at the end are abandoned.
    Duration(Duration),
}

/// Load-test settings: the shared, validated fetch options (`-c/--connections` is their
/// `concurrency`; `timeout` (per request), `connect_timeout`, `bind`, `ca_file`, `insecure`,
/// `resolver`, `user_agent` and `headers` are used too) and the load-only ones.
#[derive(Clone, Debug)]
pub(crate) struct LoadOptions {
    pub fetch: FetchOptions,
    pub url: Url,
    /// `None`: [`default_threads`] for the target.
    pub threads: Option<usize>,
    pub stop: Stop,
    /// Requests per second for all connections together (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    pub method: Method,
    /// The request body (`--body`, `--body-file`), at most [`MAX_BODY_BYTES`].
    pub body: Option<Vec<u8>>,
}

/// Why a load test could not run, or ran without a single response (one line each).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("load: no request succeeded: {0}")]
    Resolve(DnsError),
    #[error(transparent)]
    Tls(#[from] crate::net::TlsConfigError),
    #[error(transparent)]
    Bind(#[from] BindCheckError),
    #[error(transparent)]
    Start(#[from] StartError),
    /// The run ended without any response; the commonest cause.
    #[error("load: no request succeeded: {0}")]
    NoSuccess(String),
}

/// Latency statistics in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub max: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

/// One bucket of the latency histogram: the latencies above the previous bucket's bound up
/// to `le` milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Bucket {
    pub le: f64,
    pub count: u64,
}

/// Failures by wrk's classes: where a request failed (`connect`: connecting or the TLS
/// handshake; `write`: sending the request; `read`: receiving the response; `timeout`:
/// `--timeout` passed after the request was sent) and completed responses of status 400 or
/// more (`status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorCounts {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub status: u64,
}

impl ErrorCounts {
    fn add(&mut self, phase: Phase, kind: ErrorKind) {
        match (phase, kind) {
            (Phase::Connect, _) => self.connect += 1,
            (_, ErrorKind::Timeout) => self.timeout += 1,
            (Phase::Write, _) => self.write += 1,
            (Phase::Read, _) => self.read += 1,
        }
    }

    /// Failed requests (status errors are completed requests, not counted).
    fn failures(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    fn merge(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.status += o.status;
    }
}

/// Where a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connect,
    Write,
    Read,
}

/// The result of a run with at least one response (also the `--json` output).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LoadReport {
    pub url: String,
    pub method: String,
    pub connections: usize,
    pub threads: usize,
    /// Requests that got a complete response, whatever its status.
    pub requests: u64,
    /// Requests in flight at the end of a `-d` run, not waited for.
    pub abandoned: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    pub latency_ms: Latency,
    /// Every completed request's latency in exactly one bucket.
    pub histogram_ms: Vec<Bucket>,
    pub status: BTreeMap<u16, u64>,
    pub errors: ErrorCounts,
    /// Failed requests by journal error kind.
    pub error_kinds: BTreeMap<ErrorKind, u64>,
    pub connects: u64,
    pub reconnects: u64,
}

/// Counters shared by all workers (for the live progress line).
#[derive(Default)]
pub(crate) struct LiveCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// What the connections of a worker measured (one histogram per worker, whatever `-c`),
/// merged for the run.
struct Tally {
    hist: Histogram<u64>,
    bytes: u64,
    /// Responses by status code (an array: counting one is an index, not a map lookup).
    status: Box<[u64; STATUS_CODES]>,
    errors: ErrorCounts,
    kinds: BTreeMap<ErrorKind, u64>,
    /// The first message of each error kind (for the line of a run without a response).
    causes: BTreeMap<ErrorKind, String>,
    abandoned: u64,
    connects: u64,
    reconnects: u64,
    /// When the last connection slot stopped sending (before closing its connection).
    finished: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::empty()
    }
}

/// A run, checked and resolved, ready to start.
pub(crate) struct Plan {
    opts: LoadOptions,
    addrs: Vec<SocketAddr>,
    tls: Option<TlsContext>,
    threads: usize,
}

/// State all workers of a run share.
struct RunState {
    /// Requests started (for `-n`).
    issued: AtomicU64,
    /// Stop now (no connection slot could connect).
    stop: AtomicBool,
    /// Some connection slot has connected.
    connected: AtomicBool,
    /// Connection slots that failed their first connect, or ended, without ever connecting.
    unconnected: AtomicUsize,
    /// Connection slots in all.
    slots: usize,
}

impl RunState {
    /// A connection slot failed its first connect, or ended, without ever connecting: when
    /// every slot did and none ever connected, the target is unreachable and the run stops.
    fn slot_unconnected(&self) {
        let n = self.unconnected.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.slots && !self.connected.load(Ordering::Acquire) {
            self.stop.store(true, Ordering::Release);
        }
    }
}

/// What each worker of a run starts from (sent to its thread).
#[derive(Clone)]
struct Setup {
    limit: Stop,
    addrs: Vec<SocketAddr>,
    tls: Option<TlsContext>,
    /// SNI and certificate name for https.
    server_name: String,
    /// The request, head and body, serialized once.
    request: Vec<u8>,
    head_request: bool,
    /// Per-request deadline (`--timeout`), connect included.
    timeout: Duration,
    connect_timeout: Duration,
    bind: Vec<IpAddr>,
    /// Open loop: time between two sends of one connection.
    interval: Option<Duration>,
    /// End of a `-d` run.
    end: Option<Instant>,
    state: Arc<RunState>,
    live: Arc<LiveCounters>,
}

/// Per-worker state shared by its connections.
struct Shared {
    limit: Stop,
    addrs: Vec<SocketAddr>,
    tls: Option<TlsContext>,
    server_name: String,
    connect: ConnectOptions,
    request: Vec<u8>,
    head_request: bool,
    timeout: Duration,
    interval: Option<Duration>,
    end: Option<Instant>,
    state: Arc<RunState>,
    live: Arc<LiveCounters>,
    /// What this worker's connections measured (borrowed only between awaits).
    tally: RefCell<Tally>,
}

impl Setup {
    /// The worker's shared state, on its thread.
    fn into_shared(self) -> Shared {
        Shared {
            limit: self.limit,
            addrs: self.addrs,
            tls: self.tls,
            server_name: self.server_name,
            connect: ConnectOptions {
                connect_timeout: self.connect_timeout,
                bind: Rc::from(self.bind),
            },
            request: self.request,
            head_request: self.head_request,
            timeout: self.timeout,
            interval: self.interval,
            end: self.end,
            state: self.state,
            live: self.live,
            tally: RefCell::new(Tally::empty()),
        }
    }
}

impl Shared {
    /// Whether the run is over (the `-d` limit passed, or it was stopped).
    fn stopped(&self) -> bool {
        self.stopped_at(Instant::now())
    }

    /// Whether the run is over at `now`.
    fn stopped_at(&self, now: Instant) -> bool {
        self.state.stop.load(Ordering::Relaxed) || self.end.is_some_and(|e| now >= e)
    }

    fn past_end(&self) -> bool {
        self.end.is_some_and(|e| Instant::now() >= e)
    }

    /// Claim the right to send one more request at `now`.
    fn claim(&self, now: Instant) -> bool {
        if self.stopped_at(now) {
            return false;
        }
        match self.limit {
            Stop::Requests(n) => self.state.issued.fetch_add(1, Ordering::Relaxed) < n,
            Stop::Duration(_) => true,
        }
    }

    /// The deadline of a request starting at `now`: `--timeout` later, or the end of the run.
    fn deadline(&self, now: Instant) -> Instant {
        let d = now + self.timeout;
        self.end.map_or(d, |e| d.min(e))
    }
}

impl Plan {
    /// Check the `--bind` addresses, load the TLS roots and resolve the target once (load
    /// tests measure the server, not DNS).
    pub(crate) fn new(opts: LoadOptions) -> Result<Plan, LoadError> {
        crate::net::check_bind_addrs(&opts.fetch.bind)?;
        let tls = if opts.url.scheme() == "https" {
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
        Ok(Plan {
            opts,
            addrs,
            tls,
            threads,
        })
    }

    /// The lines printed before the run, as wrk's:
    /// `Running 10s test @ URL` / `  T threads and C connections`.
    pub(crate) fn banner(&self) -> String {
        let o = &self.opts;
        let what = match o.stop {
            Stop::Duration(d) => format!("{}s test", d.as_secs_f64()),
            Stop::Requests(n) => format!("{n} requests"),
        };
        let mut s = format!("Running {what} @ {}", o.url);
        match (&o.method, &o.body) {
            (Method::Get, None) => {}
            (m, None) => {
                let _ = write!(s, " ({})", m.as_str());
            }
            (m, Some(b)) => {
                let _ = write!(s, " ({}, {}-byte body)", m.as_str(), b.len());
            }
        }
        let _ = writeln!(
            s,
            "\n  {} threads and {} connections",
            self.threads, o.fetch.concurrency
        );
        s
    }

    /// Run the load test; `live` is updated as responses complete (for a progress line).
    /// An error when no request got a response.
    pub(crate) fn run(self, live: Arc<LiveCounters>) -> Result<LoadReport, LoadError> {
        let Plan {
            opts,
            addrs,
            tls,
            threads,
        } = self;
        let conns_total = opts.fetch.concurrency;
        let started = Instant::now();
        let setup = Setup {
            limit: opts.stop,
            addrs,
            tls,
            server_name: opts.url.host_str().unwrap_or_default().to_string(),
            request: serialize_request(&opts),
            head_request: opts.method.is_head(),
            timeout: opts.fetch.timeout,
            connect_timeout: opts.fetch.connect_timeout,
            bind: opts.fetch.bind.clone(),
            interval: opts
                .rate
                .map(|r| Duration::from_secs_f64(conns_total.max(1) as f64 / r.max(1e-6))),
            end: match opts.stop {
                Stop::Duration(d) => Some(started + d),
                Stop::Requests(_) => None,
            },
            state: Arc::new(RunState {
                issued: AtomicU64::new(0),
                stop: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                unconnected: AtomicUsize::new(0),
                slots: conns_total,
            }),
            live,
        };
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            // Spread connections evenly: the first `connections % threads` workers take one more.
            let conns = conns_total / threads + usize::from(i < conns_total % threads);
            let setup = setup.clone();
            handles.push(crate::net::spawn_runtime(
                format!("ringcrawl-load{i}"),
                crate::net::DEFAULT_RING_ENTRIES,
                || Ok(()),
                move |()| worker(Rc::new(setup.into_shared()), conns),
            )?);
        }
        let mut total = Tally::empty();
        for h in handles {
            total.merge(h.join().expect("load worker does not panic"));
        }
        let finished = total.finished.unwrap_or_else(Instant::now);
        let secs = finished.duration_since(started).as_secs_f64().max(1e-9);
        if total.hist.is_empty() {
            return Err(LoadError::NoSuccess(total.failure_cause(opts.stop)));
        }
        let run = RunInfo {
            url: &opts.url,
            method: &opts.method,
            connections: conns_total,
            threads,
        };
        Ok(total.report(&run, secs))
    }
}

/// The request every connection sends: head (method, the `-H` block, `Content-Length` when
/// there is a body or the method expects one) and body.
fn serialize_request(opts: &LoadOptions) -> Vec<u8> {
    let headers = HeaderBlock::new(&opts.fetch.user_agent, &opts.fetch.headers);
    let body_len = match (&opts.body, &opts.method) {
        (Some(b), _) => Some(b.len() as u64),
        // RFC 9110 8.6: a request whose method expects content says how much, even none.
        (None, Method::Post | Method::Put | Method::Patch) => Some(0),
        (None, _) => None,
    };
    let mut request = Vec::new();
    write_request(
        &mut request,
        &Request {
            method: &opts.method,
            url: &opts.url,
            target: Target::Origin,
            headers: &headers,
            proxy_authorization: None,
            body_len,
            close: false,
        },
    );
    if let Some(body) = &opts.body {
        request.extend_from_slice(body);
    }
    request
}

/// Worker threads when `--threads` is not given: every core for a remote target; half of
/// them for a target on this machine (loopback), whose server needs the rest (on a small
/// machine, one load thread beside the server beat two in `benches/e2e.sh load`).
pub(crate) fn default_threads(addrs: &[SocketAddr], cores: usize) -> usize {
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
    let ips = rt
        .block_on(async move { Resolver::new(&dns)?.lookup(&host).await })
        .map_err(LoadError::Resolve)?;
    Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// Run `conns` connection loops on this thread; what they measured.
async fn worker(shared: Rc<Shared>, conns: usize) -> Tally {
    let handles: Vec<_> = (0..conns)
        .map(|i| tokio_uring::spawn(connection_loop(shared.clone(), i, conns)))
        .collect();
    for h in handles {
        let _ = h.await;
    }
    shared.tally.take()
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
}

/// One connection slot: (re)connect, then request/response until the run ends.
async fn connection_loop(shared: Rc<Shared>, index: usize, conns: usize) {
    let mut stream: Option<Stream> = None;
    let buf = ConnBuf(RefCell::new(Vec::new()));
    let mut req_buf = Vec::with_capacity(shared.request.len());
    // Open loop: this connection's share of the rate, phase-shifted so connections interleave.
    let start = Instant::now();
    let mut next_send = shared
        .interval
        .map(|iv| start + iv.mul_f64(index as f64 / conns.max(1) as f64));
    let mut had_connection = false;
    // Counted in `RunState::unconnected` (at most once per slot).
    let mut counted_unconnected = false;
    // A request whose connection turned out stale is sent again, as the same request.
    let mut retry: Option<Instant> = None;
    loop {
        // One clock read for the claim, the intended start and the deadline (a closed loop
        // reads the clock twice per request: here and for its latency).
        let mut now = Instant::now();
        let intended = match (retry.take(), next_send) {
            (Some(t), _) => t,
            (None, _) if !shared.claim(now) => break,
            (None, Some(t)) => {
                if shared.end.is_some_and(|e| t >= e) {
                    break;
                }
                tokio::time::sleep_until(t.into()).await;
                now = Instant::now();
                next_send = shared.interval.map(|iv| t + iv);
                t
            }
            (None, None) => now,
        };
        let deadline = shared.deadline(now);
        let (mut s, reused) = match stream.take() {
            Some(s) => (s, true),
            None => {
                let tls = shared
                    .tls
                    .as_ref()
                    .map(|t| (t, shared.server_name.as_str()));
                match Stream::connect(&shared.addrs, &shared.connect, tls, deadline).await {
                    Ok(s) => {
                        {
                            let mut t = shared.tally.borrow_mut();
                            t.connects += 1;
                            t.reconnects += u64::from(had_connection);
                        }
                        if !had_connection {
                            shared.state.connected.store(true, Ordering::Release);
                            had_connection = true;
                        }
                        (s, false)
                    }
                    Err(e) => {
                        shared
                            .tally
                            .borrow_mut()
                            .fail(&shared, Phase::Connect, e.kind(), &e);
                        if !had_connection && !counted_unconnected {
                            counted_unconnected = true;
                            shared.state.slot_unconnected();
                        }
                        tokio::time::sleep(RECONNECT_BACKOFF).await;
                        // Until some slot connects, a slot that could not waits rather than
                        // trying again: an unreachable target stops the run once every slot
                        // has tried once, without a second round of connect timeouts.
                        while !had_connection
                            && !shared.state.connected.load(Ordering::Acquire)
                            && !shared.stopped()
                        {
                            tokio::time::sleep(RECONNECT_BACKOFF).await;
                        }
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
            head_request: shared.head_request,
            drain_budget: u64::MAX,
            reused,
        });
        let mut status = Status(0);
        let limits = Limits {
            deadline,
            idle: shared.timeout,
        };
        let mut bytes = 0;
        let (outcome, req) =
            conn::drive(&mut s, req, &mut ex, &mut status, &buf, limits, &mut bytes).await;
        req_buf = req;
        let keep_alive = {
            let mut t = shared.tally.borrow_mut();
            t.bytes += bytes;
            match outcome {
                Ok(keep_alive) => {
                    t.completed(intended.elapsed().as_micros() as u64, status.0);
                    shared.live.requests.fetch_add(1, Ordering::Relaxed);
                    keep_alive
                }
                Err(DriveError::Stale) => {
                    retry = Some(intended);
                    false
                }
                Err(e) => {
                    let phase = if matches!(e, DriveError::Write(_)) {
                        Phase::Write
                    } else {
                        Phase::Read
                    };
                    t.fail(&shared, phase, e.kind(), &e);
                    false
                }
            }
        };
        if keep_alive {
            stream = Some(s);
        } else {
            s.close().await;
        }
    }
    {
        let mut t = shared.tally.borrow_mut();
        t.finished = t.finished.max(Some(Instant::now()));
    }
    if !had_connection && !counted_unconnected {
        shared.state.slot_unconnected();
    }
    if let Some(s) = stream {
        s.close().await;
    }
}

/// What the report names the run by.
struct RunInfo<'a> {
    url: &'a Url,
    method: &'a Method,
    connections: usize,
    threads: usize,
}

impl Tally {
    fn empty() -> Self {
        Tally {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, LATENCY_SIGFIGS)
                .expect("static bounds are valid"),
            bytes: 0,
            status: Box::new([0; STATUS_CODES]),
            errors: ErrorCounts::default(),
            kinds: BTreeMap::new(),
            causes: BTreeMap::new(),
            abandoned: 0,
            connects: 0,
            reconnects: 0,
            finished: None,
        }
    }

    /// A complete response after `us` microseconds.
    fn completed(&mut self, us: u64, status: u16) {
        self.hist.saturating_record(us.max(1));
        if let Some(n) = self.status.get_mut(usize::from(status)) {
            *n += 1;
        }
        if status >= STATUS_ERROR_FROM {
            self.errors.status += 1;
        }
    }

    /// A request that failed in `phase`; abandoned when the run's end stopped it.
    fn fail(&mut self, shared: &Shared, phase: Phase, kind: ErrorKind, cause: &dyn fmt::Display) {
        if shared.past_end() {
            self.abandoned += 1;
            return;
        }
        self.errors.add(phase, kind);
        *self.kinds.entry(kind).or_default() += 1;
        self.causes.entry(kind).or_insert_with(|| cause.to_string());
        shared.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn merge(&mut self, o: Tally) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.bytes += o.bytes;
        for (n, o) in self.status.iter_mut().zip(o.status.iter()) {
            *n += o;
        }
        self.errors.merge(&o.errors);
        for (k, v) in o.kinds {
            *self.kinds.entry(k).or_default() += v;
        }
        for (k, v) in o.causes {
            self.causes.entry(k).or_insert(v);
        }
        self.abandoned += o.abandoned;
        self.connects += o.connects;
        self.reconnects += o.reconnects;
        self.finished = self.finished.max(o.finished);
    }

    /// Why no request got a response: the commonest error kind's first message and the
    /// counts, or the run's end when every request was abandoned.
    fn failure_cause(&self, stop: Stop) -> String {
        let failed = self.errors.failures();
        let abandoned = match self.abandoned {
            0 => String::new(),
            n => format!(", {n} abandoned at the end of the run"),
        };
        let commonest = self
            .kinds
            .iter()
            .max_by_key(|&(k, n)| (*n, std::cmp::Reverse(*k)))
            .and_then(|(k, _)| self.causes.get(k));
        match (commonest, stop) {
            (Some(cause), _) => format!("{cause} ({failed} failed{abandoned})"),
            (None, Stop::Duration(d)) if self.abandoned > 0 => format!(
                "no response within the {}s run ({} requests abandoned at its end)",
                d.as_secs_f64(),
                self.abandoned
            ),
            (None, _) => "no request was sent".to_string(),
        }
    }

    fn report(&self, run: &RunInfo<'_>, secs: f64) -> LoadReport {
        let h = &self.hist;
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| ms(h.value_at_quantile(p));
        let requests = h.len();
        LoadReport {
            url: run.url.to_string(),
            method: run.method.as_str().to_string(),
            connections: run.connections,
            threads: run.threads,
            requests,
            abandoned: self.abandoned,
            duration_s: secs,
            rps: requests as f64 / secs,
            bytes: self.bytes,
            bytes_per_s: self.bytes as f64 / secs,
            latency_ms: Latency {
                min: ms(h.min()),
                mean: h.mean() / 1000.0,
                stdev: h.stdev() / 1000.0,
                max: ms(h.max()),
                p50: q(0.50),
                p75: q(0.75),
                p90: q(0.90),
                p99: q(0.99),
                p999: q(0.999),
            },
            histogram_ms: buckets(h)
                .into_iter()
                .map(|(le, count)| Bucket { le: ms(le), count })
                .collect(),
            status: (0u16..)
                .zip(self.status.iter())
                .filter(|&(_, &n)| n > 0)
                .map(|(code, &n)| (code, n))
                .collect(),
            errors: self.errors,
            error_kinds: self.kinds.clone(),
            connects: self.connects,
            reconnects: self.reconnects,
        }
    }
}

/// Bucket bounds (microseconds) on a 1-2-5 series: from the first at or above `lo` to the
/// first at or above `hi`.
fn bucket_bounds(lo: u64, hi: u64) -> Vec<u64> {
    let mut bounds = Vec::new();
    let mut decade: u64 = 1;
    loop {
        for step in BUCKET_STEPS {
            let b = decade.saturating_mul(step);
            if b >= lo {
                bounds.push(b);
            }
            if b >= hi {
                return bounds;
            }
        }
        decade = decade.saturating_mul(10);
    }
}

/// The histogram's latencies in buckets: `(upper bound, count)` in microseconds, from the
/// bucket holding the lowest latency to the one holding the highest (empty buckets between
/// included). Every recorded latency is counted in exactly one bucket, by the lowest value
/// of its histogram slot.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let bounds = bucket_bounds(h.lowest_equivalent(h.min()), h.max());
    let mut counts = vec![0u64; bounds.len()];
    let last = bounds.len() - 1;
    for v in h.iter_recorded() {
        let x = h.lowest_equivalent(v.value_iterated_to());
        let i = bounds.partition_point(|&b| b < x).min(last);
        counts[i] += v.count_at_value();
    }
    bounds.into_iter().zip(counts).collect()
}

/// The human-readable report (after the banner), in the spirit of wrk's.
pub(crate) fn format_report(r: &LoadReport) -> String {
    let mut s = String::new();
    let l = &r.latency_ms;
    let _ = writeln!(
        s,
        "  Latency (ms)  mean {:.3}  stdev {:.3}  min {:.3}  max {:.3}",
        l.mean, l.stdev, l.min, l.max
    );
    let _ = writeln!(s, "  Latency distribution (ms)");
    for (p, v) in [
        ("50%", l.p50),
        ("75%", l.p75),
        ("90%", l.p90),
        ("99%", l.p99),
        ("99.9%", l.p999),
    ] {
        let _ = writeln!(s, "  {p:>7}  {v:.3}");
    }
    let _ = writeln!(s, "  Latency histogram (ms)");
    s.push_str(&format_histogram(&r.histogram_ms, r.requests));
    let _ = writeln!(
        s,
        "  {} requests in {:.2}s, {} read ({} connects, {} reconnects)",
        r.requests,
        r.duration_s,
        human_bytes(r.bytes as f64),
        r.connects,
        r.reconnects
    );
    let e = &r.errors;
    if e.failures() > 0 {
        let _ = writeln!(
            s,
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            e.connect, e.read, e.write, e.timeout
        );
    }
    if e.status > 0 {
        let _ = writeln!(s, "  Non-2xx or 3xx responses: {}", e.status);
    }
    if r.abandoned > 0 {
        let _ = writeln!(s, "  Abandoned at the end of the run: {}", r.abandoned);
    }
    let codes: Vec<String> = r.status.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(s, "  Status codes: {}", codes.join(", "));
    if !r.error_kinds.is_empty() {
        let kinds: Vec<String> = r
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(s, "  Error kinds: {}", kinds.join(", "));
    }
    let _ = writeln!(s, "Requests/sec: {:.2}", r.rps);
    let _ = writeln!(s, "Transfer/sec: {}", human_bytes(r.bytes_per_s));
    s
}

/// The text histogram: one line per bucket, `<= BOUND`, count, share of `total`, and a bar
/// scaled to the fullest bucket.
fn format_histogram(buckets: &[Bucket], total: u64) -> String {
    let mut s = String::new();
    let fullest = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for b in buckets {
        let bar = (b.count as f64 / fullest as f64 * BAR_WIDTH as f64).round() as usize;
        let bar = if b.count > 0 { bar.max(1) } else { 0 };
        let share = b.count as f64 * 100.0 / total.max(1) as f64;
        let line = format!(
            "    <= {:<9} {:>10} {share:>7.2}%  {}",
            b.le,
            b.count,
            "#".repeat(bar)
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
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

    fn run_info<'a>(url: &'a Url) -> RunInfo<'a> {
        RunInfo {
            url,
            method: &Method::Get,
            connections: 10,
            threads: 2,
        }
    }

    #[test]
    fn report_statistics_and_rates() {
        let mut w = Tally::empty();
        for ms in 1..=1000u64 {
            w.completed(ms * 1000, if ms % 100 == 0 { 503 } else { 200 });
        }
        w.bytes = 2048;
        w.abandoned = 3;
        let url = Url::parse("http://127.0.0.1/").unwrap();
        let r = w.report(&run_info(&url), 2.0);
        assert_eq!(r.requests, 1000);
        assert_eq!(r.abandoned, 3);
        assert!((r.rps - 500.0).abs() < 1e-9);
        let l = &r.latency_ms;
        assert!((l.p50 - 500.0).abs() < 1.0, "{}", l.p50);
        assert!((l.p75 - 750.0).abs() < 1.0, "{}", l.p75);
        assert!((l.p99 - 990.0).abs() < 2.0);
        assert!((l.max - 1000.0).abs() < 1.0);
        assert!((l.min - 1.0).abs() < 0.01);
        assert!((l.mean - 500.5).abs() < 1.0, "{}", l.mean);
        // The stdev of 1..=1000 is 288.7.
        assert!((l.stdev - 288.7).abs() < 1.0, "{}", l.stdev);
        assert_eq!(r.status[&200], 990);
        assert_eq!(r.errors.status, 10, "5xx are status errors");
        assert_eq!(r.errors.failures(), 0);
        let json = serde_json::to_value(&r).unwrap();
        for k in [
            "method",
            "requests",
            "abandoned",
            "duration_s",
            "rps",
            "bytes_per_s",
            "latency_ms",
            "histogram_ms",
            "status",
            "errors",
            "error_kinds",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        for k in [
            "min", "mean", "stdev", "max", "p50", "p75", "p90", "p99", "p999",
        ] {
            assert!(json["latency_ms"][k].is_f64(), "{k}");
        }
        for k in ["connect", "read", "write", "timeout", "status"] {
            assert!(json["errors"][k].is_u64(), "{k}");
        }
        let sum: u64 = r.histogram_ms.iter().map(|b| b.count).sum();
        assert_eq!(sum, r.requests);
        let text = format_report(&r);
        assert!(text.contains("Requests/sec: 500.00"), "{text}");
        assert!(text.contains("stdev 288."), "{text}");
        assert!(text.contains("Non-2xx or 3xx responses: 10"), "{text}");
        assert!(
            text.contains("Abandoned at the end of the run: 3"),
            "{text}"
        );
        assert!(!text.contains("Socket errors"), "{text}");
    }

    #[test]
    fn bucket_bounds_follow_a_1_2_5_series_around_the_range() {
        assert_eq!(bucket_bounds(1, 1), [1]);
        assert_eq!(bucket_bounds(300, 4000), [500, 1000, 2000, 5000]);
        assert_eq!(bucket_bounds(500, 500), [500]);
        assert_eq!(bucket_bounds(501, 1999), [1000, 2000]);
        assert_eq!(bucket_bounds(7, 12), [10, 20]);
        let top = bucket_bounds(1, MAX_LATENCY_US);
        assert_eq!(top.len(), 30, "a bounded number of buckets: {top:?}");
    }

    #[test]
    fn every_latency_is_in_exactly_one_bucket() {
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, LATENCY_SIGFIGS).unwrap();
        for (us, n) in [
            (150, 5),
            (200, 3),
            (201, 1),
            (999, 2),
            (1000, 4),
            (40_000, 1),
        ] {
            h.record_n(us, n).unwrap();
        }
        let b = buckets(&h);
        let want: Vec<(u64, u64)> = vec![
            (200, 8),
            (500, 1),
            (1000, 6),
            (2000, 0),
            (5000, 0),
            (10_000, 0),
            (20_000, 0),
            (50_000, 1),
        ];
        assert_eq!(b, want);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), h.len());
        assert!(buckets(&Tally::empty().hist).is_empty());
    }

    #[test]
    fn histogram_text_has_a_line_per_bucket_with_shares_and_bars() {
        let text = format_histogram(
            &[
                Bucket { le: 0.5, count: 1 },
                Bucket { le: 1.0, count: 80 },
                Bucket { le: 2.0, count: 0 },
                Bucket { le: 5.0, count: 20 },
            ],
            100,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "    <= 0.5                1    1.00%  #");
        assert!(
            lines[1].starts_with(&format!("    <= 1{}80   80.00%  #", " ".repeat(17))),
            "{text}"
        );
        assert!(lines[1].ends_with(&"#".repeat(BAR_WIDTH)), "{text}");
        assert_eq!(lines[2], format!("    <= 2{}0    0.00%", " ".repeat(18)));
        assert!(
            lines[3].ends_with("%  ##########"),
            "20/80 of the bar: {text}"
        );
    }

    #[test]
    fn errors_are_classed_as_wrk_does() {
        let mut e = ErrorCounts::default();
        e.add(Phase::Connect, ErrorKind::ConnectRefused);
        e.add(Phase::Connect, ErrorKind::ConnectTimeout);
        e.add(Phase::Connect, ErrorKind::Tls);
        e.add(Phase::Write, ErrorKind::Reset);
        e.add(Phase::Write, ErrorKind::Timeout);
        e.add(Phase::Read, ErrorKind::Timeout);
        e.add(Phase::Read, ErrorKind::Protocol);
        e.add(Phase::Read, ErrorKind::Reset);
        assert_eq!(
            e,
            ErrorCounts {
                connect: 3,
                read: 2,
                write: 1,
                timeout: 2,
                status: 0
            }
        );
        assert_eq!(e.failures(), 8);
    }

    #[test]
    fn failure_cause_names_the_commonest_error() {
        let mut t = Tally::empty();
        for _ in 0..3 {
            t.errors.add(Phase::Connect, ErrorKind::ConnectRefused);
            *t.kinds.entry(ErrorKind::ConnectRefused).or_default() += 1;
        }
        t.errors.add(Phase::Read, ErrorKind::Reset);
        *t.kinds.entry(ErrorKind::Reset).or_default() += 1;
        t.causes.insert(
            ErrorKind::ConnectRefused,
            "connection refused by 127.0.0.1:1".into(),
        );
        t.causes.insert(ErrorKind::Reset, "connection reset".into());
        let d = Stop::Duration(Duration::from_secs(3));
        assert_eq!(
            t.failure_cause(d),
            "connection refused by 127.0.0.1:1 (4 failed)"
        );
        t.abandoned = 2;
        assert_eq!(
            t.failure_cause(d),
            "connection refused by 127.0.0.1:1 (4 failed, 2 abandoned at the end of the run)"
        );
        let mut t = Tally::empty();
        t.abandoned = 5;
        assert_eq!(
            t.failure_cause(d),
            "no response within the 3s run (5 requests abandoned at its end)"
        );
        let err = LoadError::NoSuccess(t.failure_cause(d)).to_string();
        assert!(err.starts_with("load: no request succeeded: "), "{err}");
        assert!(!err.contains('\n'));
    }

    fn options(method: Method, body: Option<&[u8]>) -> LoadOptions {
        LoadOptions {
            fetch: FetchOptions::default(),
            url: Url::parse("http://127.0.0.1:8080/p?q").unwrap(),
            threads: Some(1),
            stop: Stop::Duration(Duration::from_secs(3)),
            rate: None,
            method,
            body: body.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn the_request_carries_method_length_and_body() {
        let req = |m, b| String::from_utf8(serialize_request(&options(m, b))).unwrap();
        let post = req(Method::Post, Some(b"{\"a\":1}"));
        assert!(post.starts_with("POST /p?q HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(
            post.ends_with("\r\nContent-Length: 7\r\n\r\n{\"a\":1}"),
            "{post}"
        );
        let put = req(Method::Put, None);
        assert!(put.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{put}");
        let get = req(Method::Get, None);
        assert!(get.starts_with("GET /p?q ") && !get.contains("Content-Length"));
        let purge = req(Method::Other("PURGE".into()), None);
        assert!(purge.starts_with("PURGE /p?q ") && !purge.contains("Content-Length"));
        let del = req(Method::Delete, Some(b""));
        assert!(del.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{del}");
    }

    #[test]
    fn banner_names_the_run_before_it_starts() {
        let plan = |m, b, stop| Plan {
            opts: LoadOptions {
                stop,
                ..options(m, b)
            },
            addrs: Vec::new(),
            tls: None,
            threads: 1,
        };
        let d = Stop::Duration(Duration::from_secs(3));
        assert_eq!(
            plan(Method::Get, None, d).banner(),
            "Running 3s test @ http://127.0.0.1:8080/p?q\n  1 threads and 256 connections\n"
        );
        let b = plan(Method::Post, Some(b"abc"), Stop::Requests(50)).banner();
        assert!(
            b.starts_with("Running 50 requests @ http://127.0.0.1:8080/p?q (POST, 3-byte body)\n"),
            "{b}"
        );
        let b = plan(
            Method::Head,
            None,
            Stop::Duration(Duration::from_millis(500)),
        )
        .banner();
        assert!(b.starts_with("Running 0.5s test @ "), "{b}");
        assert!(b.contains("(HEAD)"), "{b}");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(512.0), "512.00B");
        assert_eq!(human_bytes(1536.0), "1.50KB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.00MB");
    }
}
