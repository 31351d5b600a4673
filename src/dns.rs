//! Name resolution with hickory-resolver: one resolver per worker thread, a hard timeout per
//! lookup, a positive/negative cache, concurrent lookups of one name coalesced into one
//! query, and DNS failures mapped to distinct error kinds. The hosts file is read once per
//! run (`hosts`) and answers the names it lists without any query. AAAA records are asked
//! for only when this machine has an IPv6 address that can reach beyond it (the rule of
//! getaddrinfo's `AI_ADDRCONFIG`, looked at again every [`ADDRCONFIG_RECHECK`]): without
//! one, IPv6 answers could never be connected to, and skipping them halves the queries.

pub mod cache;
pub mod conf;
pub mod hosts;
pub mod policy;
pub mod wire;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, Shared, WeakShared};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError as HickoryError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::system_conf::read_system_conf;
use hickory_resolver::TokioResolver;

use crate::error::ErrorKind;
pub use hosts::HostsTable;

/// Hard bound on one lookup (all retries included) unless configured otherwise.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest life of a positive answer (TTL 0 records still serve concurrent URLs).
pub const POSITIVE_MIN_TTL: Duration = Duration::from_secs(1);
/// How long NXDOMAIN / no-address answers are remembered.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long server failures and timeouts are remembered (so the queued URLs of a broken
/// host fail fast instead of each waiting for the timeout again).
pub const FAILURE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Tries per lookup inside the hard timeout (each gets an equal share of it).
const DNS_ATTEMPTS: usize = 2;
/// Floor for the per-try timeout.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS: no such host {0}")]
    NxDomain(String),
    #[error("DNS: {0} has no {records} address{note}", records = .1.records(), note = .1.note())]
    NoAddress(String, Families),
    #[error("DNS: lookup of {0} failed: {1}")]
    Failure(String, String),
    #[error("DNS: lookup of {0} timed out after {1} ms")]
    Timeout(String, u64),
}

impl DnsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DnsError::NxDomain(_) => ErrorKind::DnsNxdomain,
            DnsError::NoAddress(..) => ErrorKind::DnsNoAddress,
            DnsError::Failure(..) => ErrorKind::DnsFailure,
            DnsError::Timeout(..) => ErrorKind::DnsTimeout,
        }
    }
}

/// Which address records a lookup asks for (and so what "no address" means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// A and AAAA.
    Both,
    /// A only: the machine has no IPv6 address beyond loopback and link-local.
    Ipv4Only,
}

impl Families {
    /// The record types asked for.
    fn records(self) -> &'static str {
        match self {
            Families::Both => "A/AAAA",
            Families::Ipv4Only => "A",
        }
    }

    /// Why a record type was not asked for, if one was not.
    fn note(self) -> &'static str {
        match self {
            Families::Both => "",
            Families::Ipv4Only => " (AAAA not asked: this machine has no IPv6 address)",
        }
    }
}

/// The kernel's list of configured IPv6 addresses, through `/proc/self`: systemd's
/// `ProcSubset=pid` (in the shipped unit) hides `/proc/net`, not `/proc/self/net`.
const IF_INET6: &str = "/proc/self/net/if_inet6";
/// How long a resolver trusts its look at the machine's IPv6 addresses: a daemon may start
/// before its IPv6 address is configured, and then asks for AAAA within this time after.
pub const ADDRCONFIG_RECHECK: Duration = Duration::from_secs(30);
/// `if_inet6` scope values of addresses that reach beyond the link: global and
/// site-local (loopback is 0x10, link-local 0x20).
const ROUTABLE_SCOPES: [u8; 2] = [0x00, 0x40];

/// Whether `if_inet6` text lists an address of global or site scope on an
/// interface other than loopback.
pub fn has_routable_ipv6(if_inet6: &str) -> bool {
    if_inet6.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, _, _, scope, _, name] => {
                *name != "lo"
                    && u8::from_str_radix(scope, 16).is_ok_and(|s| ROUTABLE_SCOPES.contains(&s))
            }
            _ => false,
        }
    })
}

/// What to ask for now, judged from the machine's addresses (no [`IF_INET6`] means IPv6 is
/// off in the kernel).
fn machine_families() -> Families {
    if std::fs::read_to_string(IF_INET6).is_ok_and(|t| has_routable_ipv6(&t)) {
        Families::Both
    } else {
        Families::Ipv4Only
    }
}

/// Resolver settings.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Use this server (UDP+TCP) instead of /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    /// Names answered without a query (the hosts file; see [`DnsConfig::system`]).
    pub hosts: Option<Arc<HostsTable>>,
    pub timeout: Duration,
    /// Entries cached at most (positive and negative).
    pub cache_size: usize,
    /// Address records to ask for; `None`: decided by the machine's addresses, looked at
    /// again every [`ADDRCONFIG_RECHECK`].
    pub families: Option<Families>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            server: None,
            hosts: None,
            timeout: DEFAULT_DNS_TIMEOUT,
            cache_size: 65_536,
            families: None,
        }
    }
}

impl DnsConfig {
    /// What a run uses: with `server`, that server alone; without, /etc/resolv.conf and the
    /// system hosts file (read here, once, and shared by every worker's resolver). AAAA
    /// records are asked for while the machine has a routable IPv6 address.
    pub fn system(server: Option<SocketAddr>) -> DnsConfig {
        let hosts = server
            .is_none()
            .then(|| Arc::new(HostsTable::load(std::path::Path::new(hosts::SYSTEM_HOSTS))));
        DnsConfig {
            server,
            hosts,
            ..DnsConfig::default()
        }
    }
}

/// Counters for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsStats {
    /// Queries actually sent (cache misses, after coalescing).
    pub lookups: u64,
    pub cache_hits: u64,
    pub coalesced: u64,
    /// Names answered by the hosts file.
    pub hosts_hits: u64,
}

/// Per-worker resolver (`!Send`; lives on one tokio-uring thread). IP literals never reach
/// here (the fetch path skips DNS for them), but `lookup` handles them anyway (bracketed IPv6
/// too), and `localhost` / `*.localhost` are 127.0.0.1 and ::1 without a query (RFC 6761).
pub struct Resolver {
    inner: Rc<Inner>,
}

type LookupResult = Result<Rc<[IpAddr]>, DnsError>;
type LookupFuture = Pin<Box<dyn Future<Output = LookupResult>>>;
type SharedLookup = Shared<LookupFuture>;

/// A query in flight, as the in-flight table holds it: weakly, so that the query is dropped
/// (and its sockets and timers with it) when the last lookup waiting on it goes away.
struct Flight {
    /// Tells this flight from a later one of the same name.
    id: u64,
    query: WeakShared<LookupFuture>,
}

struct Inner {
    /// Asks for A and AAAA.
    dual: TokioResolver,
    /// Asks for A only.
    v4: TokioResolver,
    hosts: Option<Arc<HostsTable>>,
    timeout: Duration,
    /// Fixed by the configuration, or `None`: see `auto`.
    families: Option<Families>,
    /// Without a fixed choice: the last look at the machine, and when to look again.
    auto: Cell<(Families, Instant)>,
    cache_size: usize,
    cache: RefCell<HashMap<Rc<str>, CacheEntry>>,
    /// Queries in flight by name: later lookups of the same name wait on the same future.
    /// An entry leaves when its query completes or when its last [`Waiter`] is dropped.
    in_flight: RefCell<HashMap<Rc<str>, Flight>>,
    /// The id of the next [`Flight`].
    next_flight: Cell<u64>,
    stats: Cell<DnsStats>,
}

struct CacheEntry {
    result: LookupResult,
    expires: Instant,
}

impl Resolver {
    /// Build a resolver: `cfg.hosts` first, then `cfg.server` (UDP, TCP on truncation) or the
    /// servers of /etc/resolv.conf. May be built before the worker's runtime starts, but
    /// `lookup` must run inside it (hickory spawns its I/O tasks on the ambient tokio runtime).
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsError> {
        let now = Instant::now();
        // Read once for both resolvers (from /etc/resolv.conf unless a server is given).
        let base = base_config(cfg)?;
        Ok(Resolver {
            inner: Rc::new(Inner {
                dual: build_resolver(&base, cfg, LookupIpStrategy::Ipv4AndIpv6)?,
                v4: build_resolver(&base, cfg, LookupIpStrategy::Ipv4Only)?,
                hosts: cfg.hosts.clone(),
                timeout: cfg.timeout,
                families: cfg.families,
                // Looked at on the first query, not before: most runs never send one.
                auto: Cell::new((Families::Both, now)),
                cache_size: cfg.cache_size.max(1),
                cache: RefCell::new(HashMap::new()),
                in_flight: RefCell::new(HashMap::new()),
                next_flight: Cell::new(0),
                stats: Cell::new(DnsStats::default()),
            }),
        })
    }

    /// Addresses for `host` (IPv4 first, then IPv6: the order to try), from cache or one
    /// query shared with every concurrent lookup of the same name.
    pub async fn lookup(&self, host: &str) -> Result<Rc<[IpAddr]>, DnsError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Rc::from([ip]));
        }
        let name = hosts::normalize(bare);
        if name == "localhost" || name.ends_with(".localhost") {
            return Ok(Rc::from([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]));
        }
        let inner = &self.inner;
        if let Some(ips) = inner.hosts.as_ref().and_then(|h| h.get(&name)) {
            inner.bump(|s| s.hosts_hits += 1);
            return Ok(ips);
        }
        if let Some(result) = inner.cached(&name) {
            inner.bump(|s| s.cache_hits += 1);
            return result;
        }
        let pending = inner.in_flight.borrow().get(name.as_str()).and_then(|f| {
            let query = f.query.upgrade()?;
            Some((f.id, query))
        });
        let name: Rc<str> = Rc::from(name);
        if let Some((flight, query)) = pending {
            inner.bump(|s| s.coalesced += 1);
            return Waiter {
                inner: Rc::downgrade(inner),
                name,
                flight,
                query,
            }
            .await;
        }
        inner.bump(|s| s.lookups += 1);
        let flight = inner.next_flight.get();
        inner.next_flight.set(flight + 1);
        let families = inner.families();
        let resolver = match families {
            Families::Both => inner.dual.clone(),
            Families::Ipv4Only => inner.v4.clone(),
        };
        let query = query(
            Rc::downgrade(inner),
            flight,
            resolver,
            name.clone(),
            inner.timeout,
            families,
        );
        let query: SharedLookup = query.boxed_local().shared();
        let weak = query
            .downgrade()
            .expect("a new shared future is not complete");
        inner.in_flight.borrow_mut().insert(
            name.clone(),
            Flight {
                id: flight,
                query: weak,
            },
        );
        Waiter {
            inner: Rc::downgrade(inner),
            name,
            flight,
            query,
        }
        .await
    }

    pub fn stats(&self) -> DnsStats {
        self.inner.stats.get()
    }
}

/// `fixed` if configured; else the last `look` at the machine if it is younger than
/// [`ADDRCONFIG_RECHECK`], else a new one (remembered in `auto` with when to look again).
fn decide_families(
    fixed: Option<Families>,
    auto: &Cell<(Families, Instant)>,
    now: Instant,
    look: impl FnOnce() -> Families,
) -> Families {
    if let Some(fixed) = fixed {
        return fixed;
    }
    let (last, next_look) = auto.get();
    if now < next_look {
        return last;
    }
    let current = look();
    auto.set((current, now + ADDRCONFIG_RECHECK));
    current
}

fn setup_err(e: HickoryError) -> DnsError {
    DnsError::Failure("(resolver setup)".into(), e.to_string())
}

/// The servers and base options: `cfg.server` alone, or the system's (/etc/resolv.conf).
fn base_config(cfg: &DnsConfig) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    match cfg.server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for conn in &mut ns.connections {
                conn.port = server.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
            Ok((config, ResolverOpts::default()))
        }
        None => read_system_conf().map_err(setup_err),
    }
}

/// One hickory resolver on `base` for `cfg`, asking for the records of `strategy`.
fn build_resolver(
    base: &(ResolverConfig, ResolverOpts),
    cfg: &DnsConfig,
    strategy: LookupIpStrategy,
) -> Result<TokioResolver, DnsError> {
    let mut builder =
        TokioResolver::builder_with_config(base.0.clone(), TokioRuntimeProvider::default());
    *builder.options_mut() = base.1.clone();
    let opts = builder.options_mut();
    opts.timeout = (cfg.timeout / DNS_ATTEMPTS as u32).max(MIN_ATTEMPT_TIMEOUT);
    opts.attempts = DNS_ATTEMPTS;
    // Answers are cached here (`Inner::cache`, a few dozen bytes per name); hickory's own
    // response cache would keep whole DNS messages for the same names again.
    opts.cache_size = 0;
    opts.ip_strategy = strategy;
    // The hosts file is ours (`cfg.hosts`): hickory's copy would be parsed per worker into
    // about a kilobyte per name, and answers only the families the file lists, querying
    // the network for the other one.
    opts.use_hosts_file = ResolveHosts::Never;
    builder.build().map_err(setup_err)
}

/// One lookup's share of a query in flight. Dropping the last one of a query (every lookup
/// of the name cancelled, by a URL deadline say) drops the query and takes the name out of
/// the in-flight table: nothing stays behind, and a later lookup starts afresh.
struct Waiter {
    inner: Weak<Inner>,
    name: Rc<str>,
    flight: u64,
    query: SharedLookup,
}

impl Future for Waiter {
    type Output = LookupResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LookupResult> {
        self.query.poll_unpin(cx)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // `None` once the query completed (it left the table itself); `Some(1)`: the last.
        if self.query.strong_count() == Some(1) {
            if let Some(inner) = self.inner.upgrade() {
                inner.forget_flight(&self.name, self.flight);
            }
        }
    }
}

/// One real query under the hard timeout; the outcome goes to the cache and the name leaves
/// the in-flight table even if the lookup that started it was cancelled meanwhile (while
/// another still waits).
async fn query(
    inner: Weak<Inner>,
    flight: u64,
    resolver: TokioResolver,
    name: Rc<str>,
    timeout: Duration,
    families: Families,
) -> LookupResult {
    let now = Instant::now();
    let (result, expires) = match tokio::time::timeout(timeout, resolver.lookup_ip(&*name)).await {
        Err(_) => (
            Err(DnsError::Timeout(name.to_string(), millis(timeout))),
            now + FAILURE_CACHE_TTL,
        ),
        Ok(Err(e)) => {
            let err = map_error(&name, &e, timeout, families);
            let ttl = match err {
                DnsError::NxDomain(_) | DnsError::NoAddress(..) => NEGATIVE_CACHE_TTL,
                DnsError::Failure(..) | DnsError::Timeout(..) => FAILURE_CACHE_TTL,
            };
            (Err(err), now + ttl)
        }
        Ok(Ok(found)) => {
            let addrs: Rc<[IpAddr]> = found.iter().collect();
            let expires = found.valid_until().max(now + POSITIVE_MIN_TTL);
            if addrs.is_empty() {
                (
                    Err(DnsError::NoAddress(name.to_string(), families)),
                    now + NEGATIVE_CACHE_TTL,
                )
            } else {
                (Ok(addrs), expires)
            }
        }
    };
    if let Some(inner) = inner.upgrade() {
        inner.forget_flight(&name, flight);
        inner.store(
            name,
            CacheEntry {
                result: result.clone(),
                expires,
            },
        );
    }
    result
}

impl Inner {
    /// Take `name` out of the in-flight table if `flight` is still its entry.
    fn forget_flight(&self, name: &str, flight: u64) {
        let mut in_flight = self.in_flight.borrow_mut();
        if in_flight.get(name).is_some_and(|f| f.id == flight) {
            in_flight.remove(name);
        }
    }

    fn cached(&self, name: &str) -> Option<LookupResult> {
        let mut cache = self.cache.borrow_mut();
        let entry = cache.get(name)?;
        if entry.expires > Instant::now() {
            return Some(entry.result.clone());
        }
        cache.remove(name);
        None
    }

    /// Insert, keeping at most `cache_size` entries: expired ones go first, then an arbitrary
    /// eighth of the rest (cheap, and rare: only when the cache is full of live entries).
    fn store(&self, name: Rc<str>, entry: CacheEntry) {
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= self.cache_size && !cache.contains_key(&name) {
            let now = Instant::now();
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= self.cache_size {
                let victims: Vec<Rc<str>> = cache
                    .keys()
                    .take(self.cache_size / 8 + 1)
                    .cloned()
                    .collect();
                for key in victims {
                    cache.remove(&key);
                }
            }
        }
        cache.insert(name, entry);
    }

    /// The records to ask for now: as configured, or from a look at the machine at most
    /// [`ADDRCONFIG_RECHECK`] old.
    fn families(&self) -> Families {
        decide_families(self.families, &self.auto, Instant::now(), machine_families)
    }

    fn bump(&self, f: impl FnOnce(&mut DnsStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// hickory's error -> our kinds: NXDOMAIN, no A/AAAA (NODATA), timeout, anything else failure.
fn map_error(name: &str, e: &HickoryError, timeout: Duration, families: Families) -> DnsError {
    match e {
        _ if e.is_nx_domain() => DnsError::NxDomain(name.to_string()),
        HickoryError::Dns(HickoryDnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NoError =>
        {
            DnsError::NoAddress(name.to_string(), families)
        }
        HickoryError::Timeout => DnsError::Timeout(name.to_string(), millis(timeout)),
        HickoryError::Dns(HickoryDnsError::ResponseCode(code)) => {
            DnsError::Failure(name.to_string(), format!("server answered {code}"))
        }
        other => DnsError::Failure(name.to_string(), other.to_string()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;

    /// A tiny authoritative-looking DNS server on 127.0.0.1 whose answer depends on the first
    /// label: `nx` NXDOMAIN, `nodata` no records, `fail` SERVFAIL, `refused` REFUSED, `silent`
    /// never answers, `slow` answers after 150 ms, anything else answers at once; answers are
    /// A 127.0.0.7 (AAAA queries get no records). Counts queries by (name, type). While
    /// muted it answers nothing.
    struct FakeDns {
        addr: SocketAddr,
        seen: Arc<Mutex<HashMap<(String, u16), usize>>>,
        stop: Arc<AtomicBool>,
        mute: Arc<AtomicBool>,
        thread: Option<thread::JoinHandle<()>>,
    }

    const TYPE_A: u16 = 1;
    const TYPE_AAAA: u16 = 28;
    const ANSWER_IP: [u8; 4] = [127, 0, 0, 7];

    impl FakeDns {
        fn start() -> FakeDns {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(HashMap::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let mute = Arc::new(AtomicBool::new(false));
            let (seen2, stop2, mute2) = (seen.clone(), stop.clone(), mute.clone());
            let thread = thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some((name, qtype, qend)) = parse_question(&buf[..n]) else {
                        continue;
                    };
                    *seen2
                        .lock()
                        .unwrap()
                        .entry((name.clone(), qtype))
                        .or_insert(0) += 1;
                    if mute2.load(Ordering::Relaxed) {
                        continue;
                    }
                    let label = name.split('.').next().unwrap_or("");
                    let (rcode, answer) = match label {
                        "silent" => continue,
                        "nx" => (3, false),
                        "nodata" => (0, false),
                        "fail" => (2, false),
                        "refused" => (5, false),
                        "slow" => {
                            thread::sleep(Duration::from_millis(150));
                            (0, qtype == TYPE_A)
                        }
                        _ => (0, qtype == TYPE_A),
                    };
                    let reply = build_reply(&buf[..qend], rcode, answer);
                    let _ = sock.send_to(&reply, from);
                }
            });
            FakeDns {
                addr,
                seen,
                stop,
                mute,
                thread: Some(thread),
            }
        }

        fn mute(&self, on: bool) {
            self.mute.store(on, Ordering::Relaxed);
        }

        fn queries(&self, name: &str, qtype: u16) -> usize {
            self.seen
                .lock()
                .unwrap()
                .get(&(name.to_string(), qtype))
                .copied()
                .unwrap_or(0)
        }

        fn total(&self) -> usize {
            self.seen.lock().unwrap().values().sum()
        }

        fn resolver(&self, timeout_ms: u64) -> Resolver {
            self.resolver_for(timeout_ms, Some(Families::Both))
        }

        fn resolver_for(&self, timeout_ms: u64, families: Option<Families>) -> Resolver {
            Resolver::new(&DnsConfig {
                server: Some(self.addr),
                hosts: None,
                timeout: Duration::from_millis(timeout_ms),
                cache_size: 16,
                families,
            })
            .unwrap()
        }
    }

    impl Drop for FakeDns {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// (lower-case name without the final dot, qtype, end of the question section).
    fn parse_question(msg: &[u8]) -> Option<(String, u16, usize)> {
        let mut pos = 12;
        let mut labels = Vec::new();
        loop {
            let len = *msg.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(msg.get(pos..pos + len)?).to_ascii_lowercase());
            pos += len;
        }
        let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
        Some((labels.join("."), qtype, pos + 4))
    }

    /// Header + the question copied from the query + optionally one A record.
    fn build_reply(query_through_question: &[u8], rcode: u8, answer: bool) -> Vec<u8> {
        let mut r = Vec::with_capacity(query_through_question.len() + 16);
        r.extend_from_slice(&query_through_question[..2]); // id
        r.push(0x81); // QR, RD
        r.push(0x80 | rcode); // RA, rcode
        r.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
        r.extend_from_slice(&query_through_question[12..]);
        if answer {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ANSWER_IP);
        }
        r
    }

    #[test]
    fn answer_then_cache_hit() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            let ip = IpAddr::from(ANSWER_IP);
            assert_eq!(&*r.lookup("www.example.test").await.unwrap(), &[ip]);
            assert_eq!(&*r.lookup("WWW.Example.Test.").await.unwrap(), &[ip]);
        });
        assert_eq!(dns.queries("www.example.test", TYPE_A), 1);
        let s = r.stats();
        assert_eq!((s.lookups, s.cache_hits, s.coalesced), (1, 1, 0));
    }

    #[test]
    fn nxdomain_is_cached_negatively() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            for _ in 0..2 {
                let e = r.lookup("nx.example.test").await.unwrap_err();
                assert_eq!(e, DnsError::NxDomain("nx.example.test".into()));
                assert_eq!(e.kind(), ErrorKind::DnsNxdomain);
            }
        });
        assert_eq!(dns.queries("nx.example.test", TYPE_A), 1);
        assert_eq!(r.stats().cache_hits, 1);
    }

    #[test]
    fn nodata_is_no_address() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        let e = tokio_uring::start(async { r.lookup("nodata.example.test").await.unwrap_err() });
        assert_eq!(
            e,
            DnsError::NoAddress("nodata.example.test".into(), Families::Both)
        );
        assert_eq!(e.kind(), ErrorKind::DnsNoAddress);
        assert_eq!(
            e.to_string(),
            "DNS: nodata.example.test has no A/AAAA address"
        );
    }

    #[test]
    fn aaaa_is_asked_only_when_the_machine_has_ipv6() {
        let dns = FakeDns::start();
        let both = dns.resolver_for(2000, Some(Families::Both));
        let v4 = dns.resolver_for(2000, Some(Families::Ipv4Only));
        let ip = IpAddr::from(ANSWER_IP);
        tokio_uring::start(async {
            assert_eq!(&*both.lookup("both.example.test").await.unwrap(), &[ip]);
            assert_eq!(&*v4.lookup("v4.example.test").await.unwrap(), &[ip]);
            let e = v4.lookup("nodata.example.test").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DnsNoAddress);
            assert_eq!(
                e.to_string(),
                "DNS: nodata.example.test has no A address (AAAA not asked: this machine has \
                 no IPv6 address)"
            );
        });
        assert_eq!(dns.queries("both.example.test", TYPE_A), 1);
        assert_eq!(dns.queries("both.example.test", TYPE_AAAA), 1);
        assert_eq!(dns.queries("v4.example.test", TYPE_A), 1);
        assert_eq!(dns.queries("v4.example.test", TYPE_AAAA), 0);
        assert_eq!(dns.queries("nodata.example.test", TYPE_AAAA), 0);
    }

    #[test]
    fn the_machine_is_looked_at_again_after_the_recheck_time() {
        let t0 = Instant::now();
        let auto = Cell::new((Families::Both, t0));
        let looks = Cell::new(0);
        let look = |answer| {
            let looks = &looks;
            move || {
                looks.set(looks.get() + 1);
                answer
            }
        };
        // First query: looks (IPv4 only at boot).
        let f = decide_families(None, &auto, t0, look(Families::Ipv4Only));
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 1));
        // Within the recheck time: the same answer, no new look, even though IPv6 came up.
        let soon = t0 + ADDRCONFIG_RECHECK - Duration::from_millis(1);
        let f = decide_families(None, &auto, soon, look(Families::Both));
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 1));
        // After it: looks again and asks for AAAA from then on.
        let later = t0 + ADDRCONFIG_RECHECK;
        let f = decide_families(None, &auto, later, look(Families::Both));
        assert_eq!((f, looks.get()), (Families::Both, 2));
        // A configured choice never looks.
        let f = decide_families(
            Some(Families::Ipv4Only),
            &auto,
            later + ADDRCONFIG_RECHECK,
            look(Families::Both),
        );
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 2));
    }

    #[test]
    fn routable_ipv6_is_global_or_site_scope_off_loopback() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let link = "fe80000000000000021122fffe334455 02 40 20 80     eth0\n";
        let global = "20010db8000000000000000000000001 02 40 00 80     eth0\n";
        assert!(!has_routable_ipv6(""));
        assert!(!has_routable_ipv6(lo));
        assert!(!has_routable_ipv6(&format!("{lo}{link}")));
        assert!(has_routable_ipv6(&format!("{lo}{link}{global}")));
        assert!(!has_routable_ipv6("garbage line\n"));
    }

    #[test]
    fn ipv6_is_looked_at_through_proc_self() {
        // `ProcSubset=pid` hides /proc/net but not /proc/self/net.
        assert!(IF_INET6.starts_with("/proc/self/net/"), "{IF_INET6}");
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            let via_self = std::fs::read_to_string(IF_INET6).unwrap();
            let via_net = std::fs::read_to_string("/proc/net/if_inet6").unwrap();
            assert_eq!(has_routable_ipv6(&via_self), has_routable_ipv6(&via_net));
        }
    }

    #[test]
    fn servfail_and_refused_are_failures() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            for name in ["fail.example.test", "refused.example.test"] {
                let e = r.lookup(name).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::DnsFailure, "{name}: {e}");
                assert!(
                    e.to_string()
                        .starts_with(&format!("DNS: lookup of {name} failed: ")),
                    "{e}"
                );
                assert!(!e.to_string().contains('\n'));
            }
        });
    }

    #[test]
    fn silent_server_times_out_within_the_bound() {
        let dns = FakeDns::start();
        let r = dns.resolver(300);
        tokio_uring::start(async {
            let started = Instant::now();
            let e = r.lookup("silent.example.test").await.unwrap_err();
            assert_eq!(e, DnsError::Timeout("silent.example.test".into(), 300));
            assert_eq!(e.kind(), ErrorKind::DnsTimeout);
            assert!(
                started.elapsed() < Duration::from_millis(900),
                "{:?}",
                started.elapsed()
            );
        });
        assert!(dns.queries("silent.example.test", TYPE_A) >= 1);
    }

    #[test]
    fn concurrent_lookups_share_one_query() {
        const N: usize = 20;
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            let all =
                futures_util::future::join_all((0..N).map(|_| r.lookup("slow.example.test"))).await;
            for res in all {
                assert_eq!(&*res.unwrap(), &[IpAddr::from(ANSWER_IP)]);
            }
        });
        assert_eq!(dns.queries("slow.example.test", TYPE_A), 1);
        assert_eq!(dns.queries("slow.example.test", TYPE_AAAA), 1);
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced), (1, N as u64 - 1));
    }

    #[test]
    fn cancelled_first_lookup_still_serves_the_others() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            // The lookup that started the query is dropped before the answer arrives; the
            // one waiting with it still gets the answer of the same query.
            let first =
                tokio::time::timeout(Duration::from_millis(30), r.lookup("slow.cancel.test"));
            let (first, second) = futures_util::join!(first, r.lookup("slow.cancel.test"));
            assert!(first.is_err());
            assert_eq!(&*second.unwrap(), &[IpAddr::from(ANSWER_IP)]);
            assert_eq!(
                &*r.lookup("slow.cancel.test").await.unwrap(),
                &[IpAddr::from(ANSWER_IP)]
            );
        });
        assert_eq!(dns.queries("slow.cancel.test", TYPE_A), 1);
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced, s.cache_hits), (1, 1, 1));
    }

    #[test]
    fn cancelled_lookups_leave_nothing_in_flight() {
        const NAME: &str = "gone.example.test";
        let dns = FakeDns::start();
        dns.mute(true);
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            let mut first = Box::pin(r.lookup(NAME));
            let mut second = Box::pin(r.lookup(NAME));
            // Drive both until the server holds the query: the lookup is in flight.
            while dns.queries(NAME, TYPE_A) == 0 {
                tokio::select! {
                    _ = &mut first => unreachable!("the server is muted"),
                    _ = &mut second => unreachable!("the server is muted"),
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            assert_eq!(r.inner.in_flight.borrow().len(), 1);
            drop(first);
            assert_eq!(
                r.inner.in_flight.borrow().len(),
                1,
                "one lookup still waits"
            );
            drop(second);
            assert!(r.inner.in_flight.borrow().is_empty());
            assert!(r.inner.cache.borrow().is_empty(), "nothing cached");
            // A later lookup of the same name is a new query, and gets the answer.
            dns.mute(false);
            assert_eq!(&*r.lookup(NAME).await.unwrap(), &[IpAddr::from(ANSWER_IP)]);
            assert!(r.inner.in_flight.borrow().is_empty());
        });
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced), (2, 1));
    }

    #[test]
    fn lookups_cut_by_deadlines_leave_nothing_in_flight() {
        const NAMES: usize = 50;
        let dns = FakeDns::start();
        dns.mute(true);
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            // As the fetch path does: each lookup under its URL's deadline.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            let cut = futures_util::future::join_all((0..NAMES * 2).map(|i| {
                let name = format!("h{}.cut.test", i % NAMES);
                let r = &r;
                async move { tokio::time::timeout_at(deadline, r.lookup(&name)).await }
            }))
            .await;
            assert!(cut.iter().all(Result::is_err));
            assert!(r.inner.in_flight.borrow().is_empty());
        });
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced), (NAMES as u64, NAMES as u64));
    }

    #[test]
    fn literals_and_localhost_need_no_query() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
            assert_eq!(&*r.lookup("127.0.0.1").await.unwrap(), &[v4]);
            assert_eq!(&*r.lookup("[::1]").await.unwrap(), &[v6]);
            assert_eq!(&*r.lookup("::1").await.unwrap(), &[v6]);
            assert_eq!(&*r.lookup("localhost").await.unwrap(), &[v4, v6]);
            assert_eq!(&*r.lookup("LocalHost.").await.unwrap(), &[v4, v6]);
            assert_eq!(&*r.lookup("app.localhost").await.unwrap(), &[v4, v6]);
        });
        assert_eq!(dns.total(), 0);
        assert_eq!(r.stats().lookups, 0);
    }

    #[test]
    fn hosts_file_names_need_no_query_of_either_family() {
        let dns = FakeDns::start();
        let r = Resolver::new(&DnsConfig {
            server: Some(dns.addr),
            hosts: Some(Arc::new(HostsTable::parse(
                "127.1.0.9 listed.test\n::1 v6only.test\n",
            ))),
            timeout: Duration::from_millis(2000),
            cache_size: 16,
            // The hosts file answers IPv6 even when the network is not asked for it.
            families: Some(Families::Ipv4Only),
        })
        .unwrap();
        tokio_uring::start(async {
            let listed = r.lookup("Listed.Test.").await.unwrap();
            assert_eq!(&*listed, &["127.1.0.9".parse::<IpAddr>().unwrap()]);
            let v6 = r.lookup("v6only.test").await.unwrap();
            assert_eq!(&*v6, &[IpAddr::V6(Ipv6Addr::LOCALHOST)]);
            // Not in the table: the server answers.
            assert_eq!(
                &*r.lookup("other.test").await.unwrap(),
                &[IpAddr::from(ANSWER_IP)]
            );
        });
        assert_eq!(dns.queries("listed.test", TYPE_A), 0);
        assert_eq!(dns.queries("listed.test", TYPE_AAAA), 0);
        assert_eq!(dns.queries("v6only.test", TYPE_A), 0);
        assert_eq!(dns.queries("other.test", TYPE_A), 1);
        let s = r.stats();
        assert_eq!((s.hosts_hits, s.lookups), (2, 1));
    }

    #[test]
    fn cache_stays_bounded() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000); // cache_size 16
        tokio_uring::start(async {
            for i in 0..100 {
                r.lookup(&format!("h{i}.example.test")).await.unwrap();
            }
        });
        assert!(r.inner.cache.borrow().len() <= 16);
        assert!(r.inner.in_flight.borrow().is_empty());
    }
}
