//! One URL end to end: DNS, connect (or reuse), the request and its streamed response
//! (an `http::Exchange` driven by `conn::drive`) into the title extractor, redirects, the
//! optional second hop of `--follow`, all under one deadline, producing exactly one
//! [`Record`]. Also owns [`FetchCtx`], what a worker's fetches share (resolver, TLS config,
//! read buffers, keep-alive pool), and [`FetchError`], why one URL failed.
//!
//! A slot (see `sched`) owns at most one idle connection ([`Held`]) and offers it to each job
//! it runs: a request to the same scheme+host+port reuses it. When the slot ends, or moves to
//! another host, the connection is parked in the worker's keep-alive pool (`pool`), where a
//! later job for that host finds it. A reused connection that the server had already closed
//! (EOF or reset before any response byte) is retried on a fresh connection, so keep-alive
//! races never surface as errors. Through an HTTP proxy (`proxied`), requests forwarded to it
//! share its connections under the proxy's key, whatever their origin.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use url::Url;

use crate::conn::{self, DriveError, Limits, ReadBufs};
use crate::dns::{DnsError, Resolver};
use crate::error::ErrorKind;
use crate::html::{is_html, Extracted, Extractor, FollowSelector};
use crate::http::{
    write_request, Consumer, Exchange, ExchangeError, ExchangeOptions, HeaderBlock, HttpError,
    Method, Request, ResponseHead, Target, Want,
};
use crate::intake::host_key;
use crate::ipgate::{IpGate, IpPermit};
use crate::job::millis;
use crate::job::{Counters, Job, WorkItem};
use crate::net::{ConnectOptions, NetError, Stream, TlsContext};
use crate::netpolicy::NetPolicy;
use crate::options::FetchOptions;
use crate::polite::Politeness;
use crate::pool::{IdlePool, MAX_IDLE_AGE};
use crate::proxy::{ProxyError, Route};
use crate::record::{now_rfc3339, ChainHop, Record, RecordError};
use crate::retry;
use crate::robots::{self, Lookup, RobotsCache, Rules};

mod proxied;

/// After the extractor has what it wants, keep reading the rest of a response only while it
/// costs at most this many more bytes, so the connection can be reused (no job for the host
/// is waiting: the connection may still serve a later one from the keep-alive pool).
pub const DRAIN_FOR_REUSE_BYTES: u64 = 64 * 1024;
/// The same when the slot has another job for this host waiting: reading the rest of a page
/// costs far less than a new connection (a TCP and maybe TLS handshake, on both ends).
pub const DRAIN_FOR_NEXT_JOB_BYTES: u64 = 256 * 1024;
/// Read buffer per request in flight. Titles sit in the first few KiB, and at 10,000
/// connections every KiB here is 10 MB of RSS, so this is smaller than the TLS-sized
/// `net::READ_BUF_SIZE` that other callers use.
pub const FETCH_READ_BUF: usize = 4 * 1024;
/// Read buffers of [`FETCH_READ_BUF`] a worker lends at once, at most. Reads only take a
/// buffer once data is there (`Stream::read_ready`), but 10,000 responses that arrive in
/// the same instant all want one; past this many, reads use a [`BURST_READ_BUF`] buffer.
pub const MAX_READ_BUFS: usize = 512;
/// Read buffer beyond [`MAX_READ_BUFS`]: a burst is read in smaller pieces instead of
/// growing the pool (and the RSS) by 4 KiB per connection.
pub const BURST_READ_BUF: usize = 1024;
/// Read buffer once the extractor is satisfied and the rest of a response is only read to
/// keep the connection: the bytes are there already, so fewer, larger reads.
pub const DRAIN_READ_BUF: usize = 64 * 1024;
/// Drain buffers a worker lends at once, at most (a server trickling the rest of its pages
/// to 10,000 connections must not pin 64 KiB each); past that, drains use a small buffer.
pub const MAX_DRAIN_BUFS: usize = 64;
/// DNS lookups in progress per worker at most: each distinct name in flight holds a query
/// and its answer, and 10,000 slots resolving at once need not all be on the wire. Lookups
/// are boxed (so a slot's future does not embed one) and bounded by this.
pub const MAX_CONCURRENT_LOOKUPS: usize = 256;
/// Initial capacity of a request buffer (a GET head; grows for long URLs).
pub const REQUEST_BUF: usize = 512;

/// Why one URL failed. Every variant maps to exactly one [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("timed out after {0} ms (whole-URL deadline)")]
    Deadline(u64),
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("redirect loop back to {0}")]
    RedirectLoop(String),
    #[error("no element matches the --follow selector with a usable href")]
    NoLink,
    #[error("denied by the network policy: {0}")]
    Denied(String),
    #[error("{0}")]
    Robots(String),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The address is at its `--per-ip` cap: the job waits for a permit (never a record).
    #[error("{0} is at its --per-ip limit")]
    IpBusy(IpAddr),
}

impl FetchError {
    /// The journal `error.kind` for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FetchError::InvalidUrl(_) => ErrorKind::InvalidUrl,
            FetchError::Dns(e) => e.kind(),
            FetchError::Net(e) => e.kind(),
            FetchError::Http(e) => e.kind(),
            FetchError::Deadline(_) => ErrorKind::Timeout,
            FetchError::TooManyRedirects(_) | FetchError::RedirectLoop(_) => {
                ErrorKind::TooManyRedirects
            }
            FetchError::NoLink => ErrorKind::NoLink,
            FetchError::Denied(_) => ErrorKind::Denied,
            FetchError::Robots(_) => ErrorKind::Robots,
            FetchError::Proxy(_) => ErrorKind::Proxy,
            // Never recorded: the worker puts the job back until a permit is free.
            FetchError::IpBusy(_) => ErrorKind::Internal,
        }
    }

    /// Whether the failure may go away on its own (see `retry`).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Http(HttpError::ClosedBeforeHead(_)) => true,
            FetchError::Proxy(e) => e.is_transient(),
            e => retry::transient_kind(e.kind()),
        }
    }

    /// The record's `error` object; `hop` with `--follow`.
    fn to_record(&self, hop: Option<u8>) -> RecordError {
        RecordError {
            kind: self.kind(),
            message: self.to_string(),
            hop,
        }
    }
}

impl From<ExchangeError> for FetchError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Http(e) => FetchError::Http(e),
            ExchangeError::Truncated => FetchError::Net(NetError::Tls(e.to_string())),
        }
    }
}

/// Everything a worker's fetches share. Lives on the worker thread (not `Send`).
pub struct FetchCtx {
    pub opts: Arc<FetchOptions>,
    pub resolver: Resolver,
    tls: TlsContext,
    connect: ConnectOptions,
    /// The run's default and `-H` headers, serialized once.
    headers: HeaderBlock,
    follow: Option<FollowSelector>,
    pub counters: Arc<Counters>,
    bufs: BufPool,
    drain_bufs: BufPool,
    lookups: tokio::sync::Semaphore,
    idle: RefCell<IdlePool<Stream>>,
    /// Per-host least interval between request starts.
    polite: RefCell<Politeness>,
    /// robots.txt answers by origin (with `--robots`).
    robots: RefCell<RobotsCache>,
    /// Crawl-delays learned from robots.txt and not yet told to the scheduler.
    crawl_delays: RefCell<Vec<(String, Duration)>>,
    /// The per-IP cap shared by the workers (`--per-ip`), and this worker's number in it.
    ip_gate: Option<Arc<IpGate>>,
    worker: usize,
}

impl FetchCtx {
    pub fn new(
        opts: Arc<FetchOptions>,
        resolver: Resolver,
        tls: TlsContext,
        follow: Option<FollowSelector>,
        counters: Arc<Counters>,
        idle_cap: usize,
        ip_gate: Option<(Arc<IpGate>, usize)>,
    ) -> Self {
        let (ip_gate, worker) = match ip_gate {
            Some((g, w)) => (Some(g), w),
            None => (None, 0),
        };
        let connect = ConnectOptions {
            connect_timeout: opts.connect_timeout,
            bind: Rc::from(opts.bind.clone()),
        };
        FetchCtx {
            resolver,
            tls,
            connect,
            headers: HeaderBlock::new(&opts.user_agent, &opts.headers),
            follow,
            counters,
            bufs: BufPool::new(FETCH_READ_BUF, MAX_READ_BUFS),
            drain_bufs: BufPool::new(DRAIN_READ_BUF, MAX_DRAIN_BUFS),
            lookups: tokio::sync::Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            idle: RefCell::new(IdlePool::new(idle_cap, MAX_IDLE_AGE)),
            polite: RefCell::new(Politeness::new(opts.host_delay)),
            robots: RefCell::new(RobotsCache::default()),
            crawl_delays: RefCell::new(Vec::new()),
            ip_gate,
            worker,
            opts,
        }
    }

    /// The Crawl-delays learned since the last call, by host key.
    pub fn take_crawl_delays(&self) -> Vec<(String, Duration)> {
        std::mem::take(&mut self.crawl_delays.borrow_mut())
    }

    /// A permit to have a request in flight to `ip` (`--per-ip`): `None` when there is no
    /// cap, `IpBusy` when the address is at it.
    fn ip_permit(&self, ip: IpAddr) -> Result<Option<IpPermit>, FetchError> {
        match &self.ip_gate {
            None => Ok(None),
            Some(g) => g
                .try_acquire(ip, self.worker)
                .map(Some)
                .ok_or(FetchError::IpBusy(ip)),
        }
    }

    /// Forget politeness clocks that hold nothing back any more.
    pub fn prune_politeness(&self, now: Instant) {
        self.polite.borrow_mut().prune(now);
    }

    /// Wait until a request on `key` may start (the host's least interval since its last
    /// one), and book its start; `Err` when that is past `deadline`.
    async fn polite_start(&self, key: &str, deadline: Instant) -> Result<(), FetchError> {
        if self.polite.borrow().is_off() {
            return Ok(());
        }
        let now = Instant::now();
        let at = self.polite.borrow_mut().reserve(key, now);
        if at > now {
            if at >= deadline {
                return Err(deadline_error(self));
            }
            Box::pin(tokio::time::sleep_until(at.into())).await;
        }
        Ok(())
    }

    /// Keep `held` for a later job on its host (closing whatever the pool lets go).
    pub async fn park(&self, held: Held) {
        let Held { key, mut stream } = held;
        stream.release_idle_buffers();
        let evicted = self.idle.borrow_mut().put(&key, stream, Instant::now());
        if let Some(old) = evicted {
            old.close().await;
        }
    }

    /// An idle connection to `key`'s host, if one is parked and young enough.
    async fn unpark(&self, key: &str) -> Option<Stream> {
        let taken = self.idle.borrow_mut().take(key, Instant::now());
        for old in taken.expired {
            old.close().await;
        }
        taken.conn
    }

    /// Close the parked connections that are too old to reuse.
    pub async fn close_expired_idle(&self) {
        let old = self.idle.borrow_mut().expire(Instant::now());
        for stream in old {
            stream.close().await;
        }
    }

    /// Close every parked connection (the worker is done).
    pub async fn close_idle(&self) {
        let all = self.idle.borrow_mut().drain();
        for stream in all {
            stream.close().await;
        }
    }
}

impl ReadBufs for FetchCtx {
    /// A [`DRAIN_READ_BUF`] buffer while draining (if one is free), else a
    /// [`FETCH_READ_BUF`] one from the pool, or a [`BURST_READ_BUF`] one when
    /// [`MAX_READ_BUFS`] are lent already.
    fn take(&self, draining: bool) -> Vec<u8> {
        draining
            .then(|| self.drain_bufs.take())
            .flatten()
            .or_else(|| self.bufs.take())
            .unwrap_or_else(|| Vec::with_capacity(BURST_READ_BUF))
    }

    /// Back to the pool it came from (by capacity); burst buffers are freed.
    fn give(&self, buf: Vec<u8>) {
        if let Some(buf) = self.drain_bufs.put(buf) {
            // Not a drain buffer: a pooled one, or a burst buffer (which is dropped here).
            let _ = self.bufs.put(buf);
        }
    }
}

/// Read buffers of one size that a worker lends, at most `max_lent` at once.
struct BufPool {
    size: usize,
    max_lent: usize,
    free: RefCell<Vec<Vec<u8>>>,
    lent: Cell<usize>,
}

impl BufPool {
    fn new(size: usize, max_lent: usize) -> BufPool {
        BufPool {
            size,
            max_lent,
            free: RefCell::new(Vec::new()),
            lent: Cell::new(0),
        }
    }

    /// A cleared buffer of `size` capacity, unless `max_lent` are out already.
    fn take(&self) -> Option<Vec<u8>> {
        let lent = self.lent.get();
        if lent >= self.max_lent {
            return None;
        }
        self.lent.set(lent + 1);
        let pooled = self.free.borrow_mut().pop();
        Some(pooled.unwrap_or_else(|| Vec::with_capacity(self.size)))
    }

    /// Keep `buf` if it is one of ours (by capacity); otherwise hand it back.
    fn put(&self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if buf.capacity() < self.size {
            return Some(buf);
        }
        buf.clear();
        self.lent.set(self.lent.get().saturating_sub(1));
        self.free.borrow_mut().push(buf);
        None
    }
}

/// An idle keep-alive connection and the `host_key` it belongs to.
pub struct Held {
    key: String,
    stream: Stream,
}

/// Per-URL accounting across hops and redirects.
struct Acct {
    bytes: u64,
    redirects: u32,
    tls_verified: Option<bool>,
    /// Bytes past the title that may be read to keep the connection reusable.
    drain_for_reuse: u64,
    /// With `--follow`: the link hop 2 fetches (the record's `link`).
    link: Option<String>,
    /// The server address of the last connection used or tried.
    ip: Option<IpAddr>,
    /// With `--chain`: the responses before the final one (the record's `chain`).
    chain: Option<Vec<ChainHop>>,
}

/// The page a hop ended on, after redirects.
struct Page {
    /// Where the redirects ended; `None`: the URL asked for itself (not copied).
    final_url: Option<Url>,
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    extracted: Extracted,
}

/// One attempt at a job: its record, and whether the outcome is worth another attempt.
///
/// The record made by [`run_job`] leaves out what the job already holds: its `url` is
/// empty and, when the page was the listed URL itself, it has a `status` and no
/// `final_url`. [`Attempt::finish`] moves them in from the job once the record is final,
/// instead of a copy of each per URL that a retry would throw away.
pub(crate) struct Attempt {
    pub record: Record,
    /// `Some` when the failure (or the status) is transient, with the server's Retry-After.
    pub retry: Option<Option<Duration>>,
    /// The attempt did not happen: this address is at its `--per-ip` cap (the record is
    /// meaningless; the job waits for a permit).
    pub blocked_on: Option<IpAddr>,
}

impl Attempt {
    /// An outcome that is final: this record, no retry.
    pub fn done(record: Record) -> Attempt {
        Attempt {
            record,
            retry: None,
            blocked_on: None,
        }
    }

    /// Make the record final: the job's URL (and, when it is the page's, its parsed URL as
    /// `final_url`) moved in from `item`, which the record replaces. In place: a record is
    /// large, and every move of it is a copy.
    pub fn finish(&mut self, item: WorkItem) {
        if self.record.url.is_empty() {
            self.record.url = item.job.url;
        }
        // A response and no URL it ended on: the job's own (see `run_job`).
        if self.record.status.is_some() && self.record.final_url.is_none() {
            self.record.final_url = Some(item.url.into());
        }
    }
}

/// Make one attempt at a job (already parsed) and build its record (`attempts` and `ms`
/// from the job: the caller counts attempts and set when the first began). `next_on_host`:
/// the slot has another job for this host waiting (so reading a page to its end to keep
/// the connection pays). The URL deadline is per attempt.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async
/// fn` keeps each argument twice in its future (as passed, and as the body's variable), and
/// every connection in flight carries this future.
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future"
)]
pub fn run_job<'a>(
    ctx: &'a FetchCtx,
    job: &'a Job,
    url: &'a Url,
    held: &'a mut Option<Held>,
    next_on_host: bool,
) -> impl std::future::Future<Output = Attempt> + 'a {
    async move {
        let deadline = Instant::now() + ctx.opts.timeout;
        let mut acct = Acct {
            bytes: 0,
            redirects: 0,
            tls_verified: None,
            drain_for_reuse: if next_on_host {
                DRAIN_FOR_NEXT_JOB_BYTES
            } else {
                DRAIN_FOR_REUSE_BYTES
            },
            link: None,
            ip: None,
            chain: ctx.opts.chain.then(Vec::new),
        };
        // The record is built once the fetch is over, not held across it: a slot's future
        // carries its largest state for every connection in flight.
        let outcome = fetch_hops(ctx, url, deadline, held, &mut acct).await;
        let mut rec = Record {
            url: String::new(), // moved in by `Attempt::finish`
            src: job.src.as_deref().map(str::to_owned),
            line: job.line,
            link: acct.link.take(),
            attempts: job.attempts,
            ..Record::default()
        };
        let mut blocked_on = None;
        let retry = match outcome {
            Ok(page) => {
                // Its text, without a copy; the job's own URL is moved in by `finish`.
                rec.final_url = page.final_url.map(String::from);
                rec.status = Some(page.status);
                rec.content_type = page.content_type;
                rec.title = page.extracted.title;
                rec.title_truncated = page.extracted.title_truncated;
                retry::transient_status(page.status).then(|| {
                    page.retry_after
                        .as_deref()
                        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
                })
            }
            Err((FetchError::IpBusy(ip), _)) => {
                blocked_on = Some(ip);
                None
            }
            Err((e, hop)) => {
                let transient = e.is_transient();
                rec.error = Some(e.to_record(ctx.follow.as_ref().map(|_| hop)));
                transient.then_some(None)
            }
        };
        rec.redirects = acct.redirects;
        rec.chain = acct.chain.take();
        rec.bytes = acct.bytes;
        rec.ip = acct.ip;
        rec.tls_verified = acct.tls_verified.filter(|v| !v);
        rec.ms = job.started.map_or(0.0, |t| millis(t.elapsed()));
        rec.ts = now_rfc3339();
        Attempt {
            record: rec,
            retry,
            blocked_on,
        }
    }
}

/// Hop 1, and with `--follow` hop 2 (its URL goes to `acct.link`); errors carry the hop
/// they happened on.
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn fetch_hops<'a>(
    ctx: &'a FetchCtx,
    url: &'a Url,
    deadline: Instant,
    held: &'a mut Option<Held>,
    acct: &'a mut Acct,
) -> impl std::future::Future<Output = Result<Page, (FetchError, u8)>> + 'a {
    async move {
        let first = get_page(ctx, url, deadline, ctx.follow.as_ref(), held, acct)
            .await
            .map_err(|e| (e, 1))?;
        if ctx.follow.is_none() {
            return Ok(first);
        }
        if let Some(chain) = &mut acct.chain {
            chain.push(ChainHop {
                url: first.final_url.as_ref().unwrap_or(url).to_string(),
                status: first.status,
            });
        }
        let link = first_link(first, url)?;
        acct.link = Some(link.to_string());
        let mut second = get_page(ctx, &link, deadline, None, held, acct)
            .await
            .map_err(|e| (e, 2))?;
        // `None` means the URL asked for, and that is the job's only on hop 1.
        second.final_url.get_or_insert(link);
        Ok(second)
    }
}

/// The link hop 2 follows. Takes hop 1's page (of `url`) by value so it is gone before
/// hop 2 starts (not kept in the slot's future while hop 2 is in flight).
fn first_link(first: Page, url: &Url) -> Result<Url, (FetchError, u8)> {
    let page_url = first.final_url.as_ref().unwrap_or(url);
    first
        .extracted
        .link
        .as_deref()
        .and_then(|href| resolve_link(page_url, first.extracted.base_href.as_deref(), href))
        .ok_or((FetchError::NoLink, 1))
}

/// Resolve `href` against `<base href>` (itself resolved against the page URL) or the page
/// URL; only http(s) results count.
fn resolve_link(page: &Url, base_href: Option<&str>, href: &str) -> Option<Url> {
    let base = base_href
        .and_then(|b| page.join(b).ok())
        .unwrap_or_else(|| page.clone());
    let mut link = base.join(href).ok()?;
    link.set_fragment(None);
    matches!(link.scheme(), "http" | "https").then_some(link)
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Fetch `url`, following redirects, and extract from the final page.
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn get_page<'a>(
    ctx: &'a FetchCtx,
    url: &'a Url,
    deadline: Instant,
    follow: Option<&'a FollowSelector>,
    held: &'a mut Option<Held>,
    acct: &'a mut Acct,
) -> impl std::future::Future<Output = Result<Page, FetchError>> + 'a {
    async move {
        // Redirect targets after the first; `url` itself is borrowed, not copied, for the
        // common case of no redirect.
        let mut visited: Vec<Url> = Vec::new();
        loop {
            let current = visited.last().unwrap_or(url);
            if ctx.opts.robots {
                Box::pin(robots_allow(ctx, current, deadline, held, acct)).await?;
            }
            let mut page = PageReader {
                follow,
                parse: Parse::Nothing,
            };
            let head = on_connection(ctx, current, deadline, &mut page, held, acct).await?;
            let status = head.status;
            if let (true, Some(location)) = (is_redirect(status), head.location.as_deref()) {
                if let Some(chain) = &mut acct.chain {
                    chain.push(ChainHop {
                        url: current.to_string(),
                        status,
                    });
                }
                let hops = visited.len() as u32;
                if hops >= ctx.opts.max_redirects {
                    return Err(FetchError::TooManyRedirects(ctx.opts.max_redirects));
                }
                let mut next = current.join(location).map_err(|e| {
                    HttpError::Protocol(format!("bad Location header {location:?}: {e}"))
                })?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(HttpError::Protocol(format!(
                        "redirect to unsupported scheme {:?}",
                        next.scheme()
                    ))
                    .into());
                }
                next.set_fragment(None);
                if next == *url || visited.contains(&next) {
                    return Err(FetchError::RedirectLoop(next.to_string()));
                }
                acct.redirects += 1;
                visited.push(next);
                continue;
            }
            // The last redirect target is taken, not copied; the URL asked for is not copied.
            let final_url = visited.pop();
            return Ok(Page {
                final_url,
                status,
                content_type: head.content_type,
                retry_after: head.retry_after,
                extracted: page.into_extracted(),
            });
        }
    }
}

/// One request/response for `url` on the slot's held connection, a parked one, or a new
/// one, its body fed to `consumer`; a reused connection found dead is replaced and the
/// request sent again. Returns the response head.
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn on_connection<'a, C: Consumer>(
    ctx: &'a FetchCtx,
    url: &'a Url,
    deadline: Instant,
    consumer: &'a mut C,
    held: &'a mut Option<Held>,
    acct: &'a mut Acct,
) -> impl std::future::Future<Output = Result<ResponseHead, FetchError>> + 'a {
    async move {
        let route = ctx.opts.proxy.route(url);
        let key = host_key(url);
        // The keep-alive pool key: the origin's, or the proxy's for requests forwarded to an
        // HTTP proxy (one connection to it serves every origin).
        let pooled = route.pool_key();
        if held
            .as_ref()
            .is_some_and(|h| h.key != pooled.unwrap_or(&key))
        {
            if let Some(h) = held.take() {
                ctx.park(h).await;
            }
        }
        let direct = matches!(route, Route::Direct);
        if !direct {
            proxied::check_origin(ctx, url)?;
        }
        loop {
            let parked = match held.take() {
                Some(h) => Some(h.stream),
                None => ctx.unpark(pooled.unwrap_or(&key)).await,
            };
            let (mut stream, reused, _permit) = match parked {
                // Through a proxy the origin's address is unknown: no --per-ip permit.
                Some(stream) if !direct => (stream, true, None),
                Some(stream) => match ctx.ip_permit(stream.peer().ip()) {
                    Ok(permit) => (stream, true, permit),
                    Err(busy) => {
                        ctx.park(Held { key, stream }).await;
                        return Err(busy);
                    }
                },
                None if direct => {
                    let (stream, permit) =
                        Box::pin(connect(ctx, url, deadline, &mut acct.ip)).await?;
                    (stream, false, permit)
                }
                None => {
                    let via = proxied::connect(ctx, url, route, deadline, &mut acct.ip);
                    (Box::pin(via).await?, false, None)
                }
            };
            acct.ip = Some(stream.peer().ip());
            if reused {
                ctx.counters.conns_reused.fetch_add(1, Ordering::Relaxed);
            }
            acct.tls_verified = stream.tls_verified().or(acct.tls_verified);
            if let Err(e) = ctx.polite_start(&key, deadline).await {
                stream.close().await;
                return Err(e);
            }
            match request(ctx, &mut stream, url, deadline, consumer, reused, acct).await {
                Ok((head, true)) => {
                    let key = pooled.map_or(key, str::to_owned);
                    *held = Some(Held { key, stream });
                    return proxied::check_answer(route, head);
                }
                Ok((head, false)) => {
                    stream.close().await;
                    return proxied::check_answer(route, head);
                }
                Err(e) => {
                    stream.close().await;
                    match e {
                        DriveError::Stale => continue,
                        DriveError::Write(e) | DriveError::Net(e) => {
                            return Err(net_error(ctx, e, deadline))
                        }
                        DriveError::Exchange(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// Resolve and connect (TLS included for https) before `deadline`, with a `--per-ip`
/// permit for the first address tried when there is a cap; a failed connect attempt leaves
/// the address it tried in `tried`.
async fn connect(
    ctx: &FetchCtx,
    url: &Url,
    deadline: Instant,
    tried: &mut Option<IpAddr>,
) -> Result<(Stream, Option<IpPermit>), FetchError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => {
            let ips = lookup_until(ctx, name, deadline).await??;
            ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
        }
        None => return Err(FetchError::InvalidUrl("URL has no host".to_string())),
    };
    let addrs = allowed_addrs(&ctx.opts.policy, url, addrs)?;
    let permit = ctx.ip_permit(addrs[0].ip())?;
    let tls = (url.scheme() == "https").then(|| (&ctx.tls, url.host_str().unwrap_or("")));
    let stream = Stream::connect(&addrs, &ctx.connect, tls, deadline)
        .await
        .map_err(|e| {
            if let Some(peer) = e.peer() {
                *tried = Some(peer.ip());
            }
            net_error(ctx, e, deadline)
        })?;
    ctx.counters.conns_opened.fetch_add(1, Ordering::Relaxed);
    Ok((stream, permit))
}

/// The addresses of `url`'s host the network policy lets us connect to; `denied` when none.
fn allowed_addrs(
    policy: &NetPolicy,
    url: &Url,
    mut addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, FetchError> {
    if policy.allows_everything() {
        return Ok(addrs);
    }
    let mut denied = Vec::new();
    addrs.retain(|a| match policy.denies(a.ip()) {
        Some(rule) => {
            denied.push(format!("{} in {rule}", a.ip()));
            false
        }
        None => true,
    });
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    let host = url.host_str().unwrap_or("");
    Err(FetchError::Denied(match url.host() {
        Some(url::Host::Domain(_)) => format!(
            "{host} resolves only to denied addresses ({})",
            denied.join(", ")
        ),
        _ => denied.join(", "),
    }))
}

/// Resolve `name` through the worker's resolver (and cache), holding one of its lookup
/// permits while asking, within `deadline` (the outer error: it passed).
pub(crate) async fn lookup_until(
    ctx: &FetchCtx,
    name: &str,
    deadline: Instant,
) -> Result<Result<Rc<[IpAddr]>, DnsError>, FetchError> {
    let lookup = async {
        let _permit = ctx
            .lookups
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Box::pin(ctx.resolver.lookup(name)).await
    };
    tokio::time::timeout_at(deadline.into(), lookup)
        .await
        .map_err(|_| deadline_error(ctx))
}

fn deadline_error(ctx: &FetchCtx) -> FetchError {
    FetchError::Deadline(ctx.opts.timeout.as_millis() as u64)
}

/// A network error, reported as the URL deadline when that is what ran out.
fn net_error(ctx: &FetchCtx, e: NetError, deadline: Instant) -> FetchError {
    if matches!(e, NetError::Timeout(_)) && Instant::now() >= deadline {
        deadline_error(ctx)
    } else {
        FetchError::Net(e)
    }
}

/// Whether robots.txt lets us fetch `url` (with `--robots`): looked up in the worker's
/// cache, fetched once per origin when it is not there (other URLs of the origin wait for
/// that fetch). A robots.txt that cannot be fetched for a network reason fails this URL with
/// that error and disallows the origin's other URLs for a while (RFC 9309).
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn robots_allow<'a>(
    ctx: &'a FetchCtx,
    url: &'a Url,
    deadline: Instant,
    held: &'a mut Option<Held>,
    acct: &'a mut Acct,
) -> impl std::future::Future<Output = Result<(), FetchError>> + 'a {
    async move {
        let origin = host_key(url);
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        loop {
            let found = ctx.robots.borrow_mut().lookup(&origin, Instant::now());
            let rules = match found {
                Lookup::Known(rules) => rules,
                Lookup::Fetching(done) => {
                    let wait = done.notified();
                    if tokio::time::timeout_at(deadline.into(), wait)
                        .await
                        .is_err()
                    {
                        return Err(deadline_error(ctx));
                    }
                    continue;
                }
                Lookup::Missing => {
                    ctx.robots.borrow_mut().begin(&origin, Instant::now());
                    let mut guard = RobotsFetch {
                        ctx,
                        origin: &origin,
                        done: false,
                    };
                    ctx.counters.robots_fetches.fetch_add(1, Ordering::Relaxed);
                    let fetched = fetch_robots(ctx, url, deadline, held, acct).await;
                    if let Err(FetchError::IpBusy(ip)) = fetched {
                        // Not an answer: the guard forgets the fetch; it is tried again.
                        return Err(FetchError::IpBusy(ip));
                    }
                    guard.done = true;
                    let (rules, err) = match fetched {
                        Ok(rules) => (rules, None),
                        Err(e) => (Rules::unreachable(&e.to_string()), Some(e)),
                    };
                    let rules = ctx
                        .robots
                        .borrow_mut()
                        .finish(&origin, rules, Instant::now());
                    if let Some(delay) = rules.crawl_delay() {
                        ctx.polite
                            .borrow_mut()
                            .set_delay(&origin, delay, Instant::now());
                        ctx.crawl_delays.borrow_mut().push((origin.clone(), delay));
                    }
                    if let Some(e) = err {
                        return Err(e);
                    }
                    rules
                }
            };
            return rules.allows(path).map_err(FetchError::Robots);
        }
    }
}

/// Forgets an origin's robots.txt fetch that was abandoned (its future dropped), so that
/// the URLs waiting for it do not wait forever.
struct RobotsFetch<'a> {
    ctx: &'a FetchCtx,
    origin: &'a str,
    done: bool,
}

impl Drop for RobotsFetch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ctx.robots.borrow_mut().abort(self.origin);
        }
    }
}

/// Fetch `url`'s origin's robots.txt, following up to `MAX_ROBOTS_REDIRECTS` redirects:
/// the rules its status and body mean. `Err` only for a network failure (no connection, a
/// timeout, a denied address): an HTTP answer, whatever it is, has a meaning.
async fn fetch_robots(
    ctx: &FetchCtx,
    url: &Url,
    deadline: Instant,
    held: &mut Option<Held>,
    acct: &mut Acct,
) -> Result<Rules, FetchError> {
    let mut target = url
        .join("/robots.txt")
        .map_err(|e| FetchError::InvalidUrl(format!("cannot make the robots.txt URL: {e}")))?;
    let agent = robots::product_token(&ctx.opts.user_agent);
    for _ in 0..=robots::MAX_ROBOTS_REDIRECTS {
        let mut body = RobotsReader::default();
        let head = match on_connection(ctx, &target, deadline, &mut body, held, acct).await {
            Ok(head) => head,
            // A robots.txt the server cannot frame is as good as none.
            Err(FetchError::Http(_)) => return Ok(Rules::AllowAll),
            Err(e) => return Err(e),
        };
        match (is_redirect(head.status), head.location.as_deref()) {
            (true, Some(location)) => match target.join(location) {
                Ok(next) if matches!(next.scheme(), "http" | "https") => target = next,
                _ => return Ok(Rules::AllowAll),
            },
            _ => return Ok(Rules::from_response(head.status, &body.bytes, agent)),
        }
    }
    // Too many redirects: RFC 9309 treats that as unavailable (allow all).
    Ok(Rules::AllowAll)
}

/// What a robots.txt response feeds: its body, up to `ROBOTS_MAX_BYTES`.
#[derive(Default)]
struct RobotsReader {
    bytes: Vec<u8>,
}

impl Consumer for RobotsReader {
    fn head(&mut self, head: &ResponseHead) -> Want {
        if (200..300).contains(&head.status) {
            Want::Body
        } else {
            Want::Enough
        }
    }

    fn data(&mut self, bytes: &[u8]) -> Want {
        let room = robots::ROBOTS_MAX_BYTES - self.bytes.len();
        self.bytes
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.bytes.len() >= robots::ROBOTS_MAX_BYTES {
            Want::Enough
        } else {
            Want::Body
        }
    }
}

/// What a page's response feeds: the title extractor, for an HTML page that is not a
/// redirect; nothing otherwise.
struct PageReader<'a> {
    follow: Option<&'a FollowSelector>,
    parse: Parse,
}

/// Where a page's extraction is. Boxed both ways: a connection waiting for its response
/// should hold neither the parser nor its result.
enum Parse {
    Nothing,
    Parsing(Box<Extractor>),
    /// The extractor had all it wanted: its result, the parser already freed (the rest of
    /// the page may still be read to keep the connection).
    Found(Box<Extracted>),
}

impl PageReader<'_> {
    fn into_extracted(self) -> Extracted {
        match self.parse {
            Parse::Nothing => Extracted::default(),
            Parse::Parsing(x) => x.finish(),
            Parse::Found(found) => *found,
        }
    }
}

impl Consumer for PageReader<'_> {
    fn head(&mut self, head: &ResponseHead) -> Want {
        let ct = head.content_type.as_deref();
        if is_redirect(head.status) || !is_html(ct) {
            return Want::Enough;
        }
        self.parse = Parse::Parsing(Box::new(Extractor::new(ct, self.follow)));
        Want::Body
    }

    fn data(&mut self, bytes: &[u8]) -> Want {
        let Parse::Parsing(x) = &mut self.parse else {
            return Want::Enough;
        };
        if !x.feed(bytes) {
            return Want::Body;
        }
        if let Parse::Parsing(x) = std::mem::replace(&mut self.parse, Parse::Nothing) {
            self.parse = Parse::Found(Box::new(x.finish()));
        }
        Want::Enough
    }
}

/// Send the request for `url` on `stream` (in absolute-form with the proxy's credentials
/// when its route forwards it to an HTTP proxy) and read its response into `consumer`.
/// Returns its head, and whether the connection may carry another request.
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn request<'a, C: Consumer>(
    ctx: &'a FetchCtx,
    stream: &'a mut Stream,
    url: &'a Url,
    deadline: Instant,
    consumer: &'a mut C,
    reused: bool,
    acct: &'a mut Acct,
) -> impl std::future::Future<Output = Result<(ResponseHead, bool), DriveError>> + 'a {
    async move {
        let mut req = Vec::with_capacity(REQUEST_BUF);
        let (target, proxy_authorization) = match ctx.opts.proxy.route(url) {
            Route::Forward(proxy) => (Target::Absolute, proxy.authorization()),
            Route::Direct | Route::Tunnel(_) => (Target::Origin, None),
        };
        write_request(
            &mut req,
            &Request {
                method: &Method::Get,
                url,
                target,
                headers: &ctx.headers,
                proxy_authorization,
                body_len: None,
                close: false,
            },
        );
        let mut ex = Exchange::new(ExchangeOptions {
            max_body: ctx.opts.max_body,
            head_request: false,
            drain_budget: acct.drain_for_reuse,
            reused,
        });
        let limits = Limits {
            deadline,
            idle: ctx.opts.read_timeout,
        };
        let (res, _) =
            conn::drive(stream, req, &mut ex, consumer, ctx, limits, &mut acct.bytes).await;
        let keep_alive = res?;
        let head = ex.into_head().ok_or_else(|| {
            DriveError::Exchange(
                HttpError::Protocol("response ended before a head".to_string()).into(),
            )
        })?;
        Ok((head, keep_alive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(url: &str) -> WorkItem {
        WorkItem {
            job: Job::new(url.to_string(), None, Some(3)),
            url: Url::parse(url).unwrap(),
        }
    }

    #[test]
    fn a_finished_attempt_takes_the_jobs_url_and_final_url() {
        // A page of the listed URL itself: both come from the job.
        let mut own = Attempt::done(Record {
            status: Some(200),
            ..Record::default()
        });
        own.finish(item("http://A.test/x"));
        let rec = own.record;
        assert_eq!(rec.url, "http://A.test/x");
        assert_eq!(rec.final_url.as_deref(), Some("http://a.test/x"));
        // After redirects the record's own final URL stays.
        let mut redirected = Attempt::done(Record {
            final_url: Some("http://b.test/".to_string()),
            ..Record::default()
        });
        redirected.finish(item("http://a.test/"));
        let rec = redirected.record;
        assert_eq!(rec.url, "http://a.test/");
        assert_eq!(rec.final_url.as_deref(), Some("http://b.test/"));
        // A record made without a fetch (an error) has its URL and no final URL.
        let mut failed = Attempt::done(
            item("http://a.test/y")
                .job
                .error_record(ErrorKind::Internal, "boom".to_string()),
        );
        failed.finish(item("http://a.test/y"));
        let rec = failed.record;
        assert_eq!(rec.url, "http://a.test/y");
        assert_eq!(rec.final_url, None);
    }

    #[test]
    fn links_resolve_against_base_and_page() {
        let page = Url::parse("http://blog.example/posts/index.html").unwrap();
        let r = |base, href| resolve_link(&page, base, href).map(|u| u.to_string());
        assert_eq!(
            r(None, "a.html"),
            Some("http://blog.example/posts/a.html".into())
        );
        assert_eq!(r(None, "/b#frag"), Some("http://blog.example/b".into()));
        assert_eq!(
            r(Some("/other/"), "c"),
            Some("http://blog.example/other/c".into())
        );
        assert_eq!(
            r(Some("https://cdn.example/x/"), "d"),
            Some("https://cdn.example/x/d".into())
        );
        assert_eq!(r(None, "ftp://x/"), None);
    }

    #[test]
    fn redirect_statuses() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_redirect(s));
        }
        for s in [200, 300, 304, 305, 404] {
            assert!(!is_redirect(s));
        }
    }
}
