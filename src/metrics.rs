//! The daemon's Prometheus endpoint (`[daemon] metrics_listen`): what is measured, its
//! rendering in the Prometheus text format (version 0.0.4, by the Prometheus project's
//! `prometheus-client` crate), and a small HTTP server answering `GET /metrics`.
//!
//! Nothing is counted here: a scrape reads the counters that already exist, the engine's
//! per-worker [`crate::job::Counters`] (records by outcome and kind, bytes, connections,
//! DNS, the fetch-duration histogram; atomics written by each worker, summed when read), the
//! journal writer's durable count and pause, and the spool's directories (counted at most
//! once per [`SPOOL_COUNT_EVERY`]). [`Snapshot`] is that reading, and [`render`] turns it
//! into text without any I/O.
//!
//! The server is one thread blocked in `accept` (woken by a `shutdown` of the listening
//! socket when the daemon stops) and a short-lived thread per connection, at most
//! [`MAX_CLIENTS`] at once (more get a 503 at once). Each connection carries one request:
//! its head must arrive within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST_BYTES`], then the
//! answer is written with `Connection: close`. A slow, silent or garbage-sending client costs
//! a thread for a few seconds at most and never touches the daemon's threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::EngineStats;
use crate::error::ErrorKind;
use crate::job::{Summary, DURATION_BUCKETS_US};
use crate::journal::JournalControl;

/// The path scraped.
pub(crate) const METRICS_PATH: &str = "/metrics";
/// The prefix of every metric's name.
pub(crate) const PREFIX: &str = "ringcrawl";
/// `Content-Type` of a scrape's answer (the text format, version 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Largest request head read (a scrape's is a few hundred bytes); a larger one gets 431.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client has this long to send its whole request head (then the connection is closed).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the answer may wait this long for a client that does not read.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the answer, what the client still sends is read (so that closing does not reset
/// the connection before it read the answer) for this long at most...
pub(crate) const LINGER: Duration = Duration::from_millis(500);
/// ...and this much at most.
pub(crate) const LINGER_BYTES: usize = 64 * 1024;
/// Connections served at the same time; one more gets a 503 and is closed. Enough that a
/// few silent clients do not crowd out a scrape; a client thread is small (see
/// [`CLIENT_STACK`]).
pub(crate) const MAX_CLIENTS: usize = 16;
/// Stack of a client thread: it parses a head and renders a few KiB of text.
const CLIENT_STACK: usize = 256 * 1024;
/// The spool's directories are counted at most this often (a scrape in between gets the
/// last counts).
pub(crate) const SPOOL_COUNT_EVERY: Duration = Duration::from_secs(1);
/// `listen(2)` backlog of the endpoint.
const BACKLOG: i32 = 64;
/// After a failed `accept` (out of file descriptors...), the server waits this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The spool directories counted, as the `state` label says them.
const SPOOL_STATES: [&str; 4] = [
    crate::spool::NEW,
    crate::spool::CUR,
    crate::spool::DONE,
    crate::spool::BAD,
];

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsError {
    #[error("cannot listen for metrics on {addr} (daemon.metrics_listen): {cause}")]
    Listen { addr: SocketAddr, cause: io::Error },
    #[error("cannot start the metrics thread: {0}")]
    Thread(io::Error),
}

/// Everything a scrape reports, read at once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// The engine's counters (all zero before it started).
    pub summary: Summary,
    /// Fetches running: connection slots held.
    pub fetches_in_flight: u64,
    /// Jobs accepted by the engine without a record and not running: in a worker's queue,
    /// spilled to disk, or waiting for a retry.
    pub jobs_queued: u64,
    /// Records the journal writer made durable.
    pub journal_records: u64,
    pub journal_paused: bool,
    /// Entries per spool directory (`new`, `cur`, `done`, `bad`), those that could be counted.
    pub spool_lists: SpoolCounts,
    /// A cluster node's partitions, lag and peers (`None`: not a cluster node).
    pub cluster: Option<ClusterSnapshot>,
}

/// A cluster node's view, as its ownership rounds last saw it (see [`ClusterGauges`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterSnapshot {
    /// Partitions of the URL stream.
    pub partitions: u64,
    /// Partitions this node holds a lease on.
    pub held: u64,
    /// Lines waiting or in flight in the held partitions (messages the URL stream keeps).
    pub lag: u64,
    /// Nodes with a live heartbeat, this one included.
    pub nodes: u64,
    /// Records this node stored in the records stream (since it started).
    pub records_stored: u64,
    pub connected: bool,
}

/// Where a cluster node writes what [`ClusterSnapshot`] reads: atomics updated by the node's
/// ownership round (each a third of a lease) and its record publisher.
#[derive(Debug, Default)]
pub(crate) struct ClusterGauges {
    pub partitions: AtomicU64,
    pub held: AtomicU64,
    pub lag: AtomicU64,
    pub nodes: AtomicU64,
    pub records_stored: AtomicU64,
    pub connected: AtomicBool,
}

impl ClusterGauges {
    fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            partitions: self.partitions.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            lag: self.lag.load(Ordering::Relaxed),
            nodes: self.nodes.load(Ordering::Relaxed),
            records_stored: self.records_stored.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// Entries per spool directory, by the `state` label's value.
pub(crate) type SpoolCounts = Vec<(&'static str, u64)>;

/// Where a scrape reads from. The journal and the engine are set once they run (the
/// endpoint listens before: it fails early, and answers during recovery).
pub(crate) struct Sources {
    engine: OnceLock<Arc<EngineStats>>,
    journal: OnceLock<JournalControl>,
    cluster: OnceLock<Arc<ClusterGauges>>,
    spool: PathBuf,
    /// The last spool count and when it was made.
    spool_counts: Mutex<Option<(Instant, SpoolCounts)>>,
}

impl Sources {
    /// Sources for the spool at `spool`.
    pub(crate) fn new(spool: PathBuf) -> Sources {
        Sources {
            engine: OnceLock::new(),
            journal: OnceLock::new(),
            cluster: OnceLock::new(),
            spool,
            spool_counts: Mutex::new(None),
        }
    }

    /// The journal writer runs: its counts are reported from now on.
    pub(crate) fn set_journal(&self, journal: JournalControl) {
        let _ = self.journal.set(journal);
    }

    /// The engine runs: its counters are reported from now on.
    pub(crate) fn set_engine(&self, stats: Arc<EngineStats>) {
        let _ = self.engine.set(stats);
    }

    /// The daemon is a cluster node: its partitions and lag are reported from now on.
    pub(crate) fn set_cluster(&self, gauges: Arc<ClusterGauges>) {
        let _ = self.cluster.set(gauges);
    }

    /// Read every source now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let (summary, running, submitted) = match self.engine.get() {
            Some(e) => (e.summary(), e.running() as u64, e.submitted()),
            None => (Summary::default(), 0, 0),
        };
        let in_flight = submitted.saturating_sub(summary.urls);
        Snapshot {
            fetches_in_flight: running,
            jobs_queued: in_flight.saturating_sub(running),
            summary,
            journal_records: self.journal.get().map_or(0, |j| j.records_written()),
            journal_paused: self.journal.get().is_some_and(|j| j.paused().is_some()),
            spool_lists: self.spool_lists(),
            cluster: self.cluster.get().map(|g| g.snapshot()),
        }
    }

    fn spool_lists(&self) -> SpoolCounts {
        let mut last = self.spool_counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, counts)) = &*last {
            if at.elapsed() < SPOOL_COUNT_EVERY {
                return counts.clone();
            }
        }
        let counts: SpoolCounts = SPOOL_STATES
            .iter()
            .filter_map(|&state| match count_entries(&self.spool.join(state)) {
                Ok(n) => Some((state, n)),
                Err(e) => {
                    tracing::debug!(dir = state, error = %e, "metrics: cannot count the spool directory");
                    None
                }
            })
            .collect();
        *last = Some((Instant::now(), counts.clone()));
        counts
    }
}

/// Entries of a directory but the dot files (the daemon's own state in `cur/`).
fn count_entries(dir: &std::path::Path) -> io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        if !entry?.file_name().as_encoded_bytes().starts_with(b".") {
            n += 1;
        }
    }
    Ok(n)
}

/// The snapshot as one scrape's text (the Prometheus text format, version 0.0.4).
pub(crate) fn render(snapshot: Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Collect(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A [`Snapshot`] as a `prometheus-client` collector: every metric, its help and type.
#[derive(Debug)]
struct Collect(Snapshot);

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let sum = &s.summary;
        let errors: u64 = sum.errors.values().sum();
        counters(
            &mut enc,
            "records",
            "Records made (journal lines to be), by outcome: ok (an HTTP response was read, \
             whatever its status) or error (error.kind set).",
            None,
            "outcome",
            &[("ok", sum.ok), ("error", errors)],
        )?;
        let kinds: Vec<(&str, u64)> = ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str(), sum.errors.get(k).copied().unwrap_or(0)))
            .collect();
        counters(
            &mut enc,
            "record_errors",
            "Records with an error, by error.kind (every kind, from 0).",
            None,
            "kind",
            &kinds,
        )?;
        counter(
            &mut enc,
            "retries",
            "Attempts that failed transiently and were tried again later.",
            None,
            sum.retries,
        )?;
        gauge(
            &mut enc,
            "fetches_in_flight",
            "Fetches running now (connection slots held).",
            s.fetches_in_flight,
        )?;
        gauge(
            &mut enc,
            "jobs_queued",
            "URLs accepted by the engine that are neither running nor recorded: queued, \
             spilled to disk, or waiting for a retry.",
            s.jobs_queued,
        )?;
        counter(
            &mut enc,
            "dns_lookups",
            "DNS lookups sent to a server (cache misses; concurrent lookups of a name count \
             once).",
            None,
            sum.dns.lookups,
        )?;
        counter(
            &mut enc,
            "dns_cache_hits",
            "DNS lookups answered from the cache.",
            None,
            sum.dns.cache_hits,
        )?;
        counter(
            &mut enc,
            "connections_opened",
            "Connections opened (to servers and proxies).",
            None,
            sum.connections_opened,
        )?;
        counter(
            &mut enc,
            "connections_reused",
            "Requests sent on a kept-alive connection instead of a new one.",
            None,
            sum.connections_reused,
        )?;
        counter(
            &mut enc,
            "read",
            "Response bytes received (heads included, before content decoding): the sum of \
             the records' bytes.",
            Some(&Unit::Bytes),
            sum.bytes_read,
        )?;
        counter(
            &mut enc,
            "journal_records",
            "Records written to the journal and durable (fsync'd, or written with fsync = \
             never).",
            None,
            s.journal_records,
        )?;
        gauge(
            &mut enc,
            "journal_paused",
            "1 while the journal cannot be written (a full disk...) and the daemon waits, \
             else 0.",
            u64::from(s.journal_paused),
        )?;
        let mut m = enc.encode_descriptor(
            "spool_lists",
            "Lists in each spool directory: new (waiting), cur (in progress), done, bad.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &s.spool_lists {
            ConstGauge::new(*n).encode(m.encode_family(&[("state", *state)])?)?;
        }
        if let Some(c) = &s.cluster {
            cluster(&mut enc, c)?;
        }
        let d = &sum.durations;
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(d.buckets)
            .collect();
        enc.encode_descriptor(
            "fetch_duration",
            "Time from a URL's first attempt to its record (retries and their waits \
             included), for URLs that were tried: the records' ms.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            d.sum_us as f64 / 1e6,
            d.count(),
            &buckets,
            None,
        )?;
        let mut m = enc.encode_descriptor(
            "build_info",
            "The running ringcrawl's version (always 1).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1u64).encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)
    }
}

/// A cluster node's metrics (only a node has them).
fn cluster(enc: &mut DescriptorEncoder, c: &ClusterSnapshot) -> std::fmt::Result {
    gauge(
        enc,
        "cluster_partitions",
        "Partitions of the cluster's URL stream.",
        c.partitions,
    )?;
    gauge(
        enc,
        "cluster_partitions_held",
        "Partitions this node holds a lease on (and fetches).",
        c.held,
    )?;
    gauge(
        enc,
        "cluster_lag",
        "Messages waiting or in flight in the partitions this node holds (the URL streams' \
         messages not yet acked: chunks of up to 32 lines), as of the last ownership round.",
        c.lag,
    )?;
    gauge(
        enc,
        "cluster_nodes",
        "Nodes with a live heartbeat, this one included.",
        c.nodes,
    )?;
    gauge(
        enc,
        "cluster_connected",
        "1 while the node is connected to NATS, else 0 (it takes no work then).",
        u64::from(c.connected),
    )?;
    counter(
        enc,
        "cluster_records_stored",
        "Records this node stored in the cluster's records stream.",
        None,
        c.records_stored,
    )
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> std::fmt::Result {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

/// One counter per value of `label`.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(*n).encode(m.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `GET /metrics` (`HEAD`: the same answer without its body).
    Metrics { head: bool },
    /// Another path: 404.
    NotFound,
    /// Another method: 405.
    MethodNotAllowed,
    /// Not an HTTP/1.x request head: 400.
    Bad,
    /// No end of the head within [`MAX_REQUEST_BYTES`]: 431.
    TooLarge,
}

/// Headers parsed in a request at most (more: 400).
const MAX_REQUEST_HEADERS: usize = 64;

/// What the bytes received so far ask for; `None` while the head is incomplete.
pub(crate) fn parse_request(buf: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_BYTES => Some(Request::TooLarge),
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Request::Bad),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or_default();
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let head = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Some(Request::MethodNotAllowed),
            };
            Some(if path == METRICS_PATH {
                Request::Metrics { head }
            } else {
                Request::NotFound
            })
        }
    }
}

/// A whole answer: status line, headers (`Connection: close`), and the body unless `head`.
pub(crate) fn response(status: u16, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A short plain-text answer (errors).
fn plain(status: u16, body: &str) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", body, false)
}

/// The answer to `req`; a scrape reads the sources.
fn answer(req: &Request, sources: &Sources) -> Vec<u8> {
    match req {
        Request::Metrics { head } => match render(sources.snapshot()) {
            Ok(text) => response(200, CONTENT_TYPE, &text, *head),
            Err(_) => plain(500, "cannot render the metrics\n"),
        },
        Request::NotFound => plain(404, "not found: the metrics are at /metrics\n"),
        Request::MethodNotAllowed => plain(405, "only GET and HEAD\n"),
        Request::Bad => plain(400, "not an HTTP request\n"),
        Request::TooLarge => plain(431, "request head too large\n"),
    }
}

/// The running endpoint; stopped by [`MetricsServer::stop`] or when dropped.
pub(crate) struct MetricsServer {
    stop: Arc<AtomicBool>,
    /// A handle on the listening socket, to wake the accept loop.
    socket: socket2::Socket,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listen on `addr` and serve `sources` from a thread of its own.
    pub(crate) fn start(addr: SocketAddr, sources: Arc<Sources>) -> Result<Self, MetricsError> {
        let listen_err = |cause| MetricsError::Listen { addr, cause };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(listen_err)?;
        socket.set_reuse_address(true).map_err(listen_err)?;
        socket.bind(&addr.into()).map_err(listen_err)?;
        socket.listen(BACKLOG).map_err(listen_err)?;
        let waker = socket.try_clone().map_err(listen_err)?;
        let listener: TcpListener = socket.into();
        let addr = listener.local_addr().map_err(listen_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || accept_loop(&listener, &sources, &flag))
            .map_err(MetricsError::Thread)?;
        tracing::info!(%addr, path = METRICS_PATH, "serving Prometheus metrics");
        Ok(MetricsServer {
            stop,
            socket: waker,
            thread: Some(thread),
        })
    }

    /// The address listened on (a test's port 0 made concrete).
    #[cfg(test)]
    fn addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("a TCP listener has an address")
    }

    /// Stop listening and end the accept thread (connections being served finish within
    /// their timeouts).
    pub(crate) fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // On Linux, shutting a listening socket down wakes a blocked accept (EINVAL).
        match self.socket.shutdown(Shutdown::Both) {
            Ok(()) => {
                let _ = thread.join();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot stop the metrics listener; leaving it to the exit")
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut();
    }
}

fn accept_loop(listener: &TcpListener, sources: &Arc<Sources>, stop: &AtomicBool) {
    let clients = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                std::thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(LINGER));
            // Said without waiting: the accept loop does not read from the client.
            let mut stream = stream;
            let _ = stream.set_nonblocking(true);
            let _ = stream.write_all(&plain(503, "busy: too many metrics clients\n"));
            let _ = stream.shutdown(Shutdown::Write);
            let mut sink = [0u8; 1024];
            while matches!((&stream).read(&mut sink), Ok(n) if n > 0) {}
            continue;
        }
        let (sources, count) = (sources.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-client".into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                let _done = Leave(&count);
                serve_client(stream, &sources);
            });
        if let Err(e) = spawned {
            clients.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(error = %e, "metrics: cannot start a client thread");
        }
    }
}

/// Counts a client thread out when it ends, panics included.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A read timeout (`SO_RCVTIMEO` makes a read fail with `EAGAIN`).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One connection: read a request head (bounded in size and time), answer, close.
fn serve_client(mut stream: TcpStream, sources: &Sources) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let req = loop {
        if let Some(req) = parse_request(&buf) {
            break req;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            let _ = stream.set_write_timeout(Some(LINGER));
            let _ = stream.write_all(&plain(408, "request head too slow\n"));
            return;
        }
        let room = (MAX_REQUEST_BYTES - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // The deadline is looked at again at the top.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if stream.write_all(&answer(&req, sources)).is_err() {
        return;
    }
    // Read what the client still sends until it closes (briefly): closing a socket with
    // unread bytes would reset the connection, and the client could lose the answer.
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::DurationCounts;

    fn sample() -> Snapshot {
        let mut summary = Summary {
            ok: 7,
            bytes_read: 1234,
            connections_opened: 3,
            connections_reused: 4,
            retries: 2,
            ..Summary::default()
        };
        summary.errors.insert(ErrorKind::ConnectRefused, 2);
        summary.errors.insert(ErrorKind::Timeout, 1);
        summary.dns.lookups = 5;
        summary.dns.cache_hits = 6;
        let mut d = DurationCounts::default();
        d.buckets[0] = 3;
        d.buckets[2] = 1;
        d.buckets[DURATION_BUCKETS_US.len()] = 1;
        d.sum_us = 200_001_500;
        summary.durations = d;
        Snapshot {
            summary,
            fetches_in_flight: 8,
            jobs_queued: 9,
            journal_records: 10,
            journal_paused: true,
            spool_lists: vec![("new", 1), ("cur", 2), ("done", 3), ("bad", 0)],
            cluster: None,
        }
    }

    /// The sample lines of `text`: (name with labels, value).
    fn samples(text: &str) -> Vec<(&str, &str)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap())
            .collect()
    }

    fn value<'a>(text: &'a str, series: &str) -> &'a str {
        samples(text)
            .into_iter()
            .find(|(s, _)| *s == series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .1
    }

    #[test]
    fn every_metric_has_help_type_and_its_values() {
        let text = render(sample()).unwrap();
        for (series, want) in [
            ("ringcrawl_records_total{outcome=\"ok\"}", "7"),
            ("ringcrawl_records_total{outcome=\"error\"}", "3"),
            (
                "ringcrawl_record_errors_total{kind=\"connect_refused\"}",
                "2",
            ),
            ("ringcrawl_record_errors_total{kind=\"timeout\"}", "1"),
            ("ringcrawl_record_errors_total{kind=\"internal\"}", "0"),
            ("ringcrawl_retries_total", "2"),
            ("ringcrawl_fetches_in_flight", "8"),
            ("ringcrawl_jobs_queued", "9"),
            ("ringcrawl_dns_lookups_total", "5"),
            ("ringcrawl_dns_cache_hits_total", "6"),
            ("ringcrawl_connections_opened_total", "3"),
            ("ringcrawl_connections_reused_total", "4"),
            ("ringcrawl_read_bytes_total", "1234"),
            ("ringcrawl_journal_records_total", "10"),
            ("ringcrawl_journal_paused", "1"),
            ("ringcrawl_spool_lists{state=\"done\"}", "3"),
            ("ringcrawl_spool_lists{state=\"bad\"}", "0"),
            ("ringcrawl_build_info{version=\"0.1.0\"}", "1"),
        ] {
            assert_eq!(value(&text, series), want, "{series}");
        }
        // Every kind from the start, so that rate() works.
        let kinds = text
            .lines()
            .filter(|l| l.starts_with("ringcrawl_record_errors_total{"))
            .count();
        assert_eq!(kinds, ErrorKind::ALL.len());
        // HELP and TYPE once per metric, before its samples.
        for (name, kind) in [
            ("ringcrawl_records_total", "counter"),
            ("ringcrawl_read_bytes_total", "counter"),
            ("ringcrawl_jobs_queued", "gauge"),
            ("ringcrawl_fetch_duration_seconds", "histogram"),
        ] {
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# TYPE {name} {kind}\n")).count(),
                1,
                "{name}"
            );
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!((types, helps), (15, 15), "{text}");
    }

    #[test]
    fn the_histogram_is_cumulative_in_seconds() {
        let text = render(sample()).unwrap();
        let h = "ringcrawl_fetch_duration_seconds";
        assert_eq!(value(&text, &format!("{h}_bucket{{le=\"0.005\"}}")), "3");
        assert_eq!(value(&text, &format!("{h}_bucket{{le=\"0.01\"}}")), "3");
        assert_eq!(value(&text, &format!("{h}_bucket{{le=\"0.025\"}}")), "4");
        assert_eq!(value(&text, &format!("{h}_bucket{{le=\"120\"}}")), "4");
        assert_eq!(value(&text, &format!("{h}_bucket{{le=\"+Inf\"}}")), "5");
        assert_eq!(value(&text, &format!("{h}_count")), "5");
        assert_eq!(value(&text, &format!("{h}_sum")), "200.0015");
        let buckets = text
            .lines()
            .filter(|l| l.starts_with(&format!("{h}_bucket")))
            .count();
        assert_eq!(buckets, DURATION_BUCKETS_US.len() + 1);
    }

    #[test]
    fn an_empty_snapshot_renders_zeros() {
        let text = render(Snapshot::default()).unwrap();
        assert_eq!(value(&text, "ringcrawl_records_total{outcome=\"ok\"}"), "0");
        assert_eq!(value(&text, "ringcrawl_journal_paused"), "0");
        assert_eq!(value(&text, "ringcrawl_fetch_duration_seconds_count"), "0");
        assert!(!text.contains("ringcrawl_spool_lists{"), "nothing counted");
        assert!(!text.contains("cluster"), "not a cluster node");
    }

    #[test]
    fn a_cluster_node_reports_its_partitions_lag_and_peers() {
        let gauges = ClusterGauges::default();
        gauges.partitions.store(16, Ordering::Relaxed);
        gauges.held.store(5, Ordering::Relaxed);
        gauges.lag.store(1234, Ordering::Relaxed);
        gauges.nodes.store(3, Ordering::Relaxed);
        gauges.records_stored.store(77, Ordering::Relaxed);
        gauges.connected.store(true, Ordering::Relaxed);
        let sources = Sources::new(PathBuf::from("/nonexistent"));
        sources.set_cluster(Arc::new(gauges));
        let text = render(sources.snapshot()).unwrap();
        for (series, want) in [
            ("ringcrawl_cluster_partitions", "16"),
            ("ringcrawl_cluster_partitions_held", "5"),
            ("ringcrawl_cluster_lag", "1234"),
            ("ringcrawl_cluster_nodes", "3"),
            ("ringcrawl_cluster_connected", "1"),
            ("ringcrawl_cluster_records_stored_total", "77"),
        ] {
            assert_eq!(value(&text, series), want, "{series}");
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(types, 15 + 6, "{text}");
    }

    #[test]
    fn requests_by_method_path_and_shape() {
        let get = |t: &str| parse_request(t.as_bytes());
        assert_eq!(
            get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request::Metrics { head: false })
        );
        assert_eq!(
            get("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Request::Metrics { head: true })
        );
        assert_eq!(get("GET / HTTP/1.1\r\n\r\n"), Some(Request::NotFound));
        assert_eq!(
            get("GET /metricsx HTTP/1.1\r\n\r\n"),
            Some(Request::NotFound)
        );
        assert_eq!(
            get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Some(Request::MethodNotAllowed)
        );
        assert_eq!(get("GET /metrics HTTP/1.1\r\nHost"), None, "incomplete");
        assert_eq!(get("\x16\x03\x01\x02\x00\x01"), Some(Request::Bad), "TLS");
        assert_eq!(get("hello\r\n\r\n"), Some(Request::Bad));
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        assert_eq!(get(&huge), Some(Request::TooLarge));
    }

    #[test]
    fn answers_close_and_say_their_length() {
        let r = String::from_utf8(response(200, CONTENT_TYPE, "abc", false)).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        let r = String::from_utf8(response(200, CONTENT_TYPE, "abc", true)).unwrap();
        assert!(
            r.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{r}"
        );
        let r = String::from_utf8(plain(405, "no\n")).unwrap();
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    }

    /// Send `bytes` on a new connection and read the whole answer.
    fn ask(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(bytes).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    /// Only read from a new connection.
    fn listen_to(addr: SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    fn status(answer: &str) -> &str {
        answer.split(' ').nth(1).unwrap_or("")
    }

    #[test]
    fn the_server_answers_scrapes_and_survives_bad_clients() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "done", "bad"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("done/a"), "").unwrap();
        std::fs::write(dir.path().join("cur/.a.claim"), "").unwrap();
        let sources = Arc::new(Sources::new(dir.path().to_path_buf()));
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), sources).unwrap();
        let addr = server.addr();

        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&ok), "200", "{ok}");
        assert!(
            ok.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(
            ok.contains("\nringcrawl_spool_lists{state=\"done\"} 1\n"),
            "{ok}"
        );
        assert!(
            ok.contains("\nringcrawl_spool_lists{state=\"cur\"} 0\n"),
            "{ok}"
        );
        assert_eq!(status(&ask(addr, b"GET / HTTP/1.1\r\n\r\n")), "404");
        assert_eq!(
            status(&ask(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n")),
            "405"
        );
        assert_eq!(status(&ask(addr, b"\x00\x01garbage\r\n\r\n")), "400");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST_BYTES * 4, b'a');
        assert_eq!(status(&ask(addr, &huge)), "431");

        // Silent clients take every slot (once the threads above are done lingering): one
        // more is turned away at once...
        std::thread::sleep(LINGER + Duration::from_millis(200));
        let silent: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(status(&listen_to(addr)), "503");
        // ...and once they go, scrapes are served again.
        drop(silent);
        let started = Instant::now();
        loop {
            let a = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
            if status(&a) == "200" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{a}");
            std::thread::sleep(Duration::from_millis(20));
        }

        // A client that stalls mid-head is cut off after the request timeout.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        slow.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
        let started = Instant::now();
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        assert!(started.elapsed() < REQUEST_TIMEOUT * 2);
        assert_eq!(status(&answer), "408", "{answer}");

        let started = Instant::now();
        server.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(TcpStream::connect(addr).is_err(), "no longer listening");
    }
}
