//! Name resolution: one stub resolver per worker thread (`stub`: hickory-proto messages
//! over a small pool of connected UDP sockets per server, TCP when an answer is truncated),
//! a hard timeout per lookup, a positive/negative cache (`cache`), concurrent lookups of one
//! name coalesced into one query, and DNS failures mapped to distinct error kinds. Servers
//! and options come from `/etc/resolv.conf` or `--resolver` (`conf`). The hosts file is read
//! once per run (`hosts`) and answers the names it lists without any query. AAAA records are
//! asked for only when this machine has a routable IPv6 address (`addrconfig`).
//!
//! This file owns the public surface ([`DnsConfig`], [`Resolver`], [`DnsError`]) and the
//! front of a lookup: literals, `localhost`, the hosts table, the cache and the in-flight
//! table, whose entry goes away when its query completes or its last waiter is dropped.

pub mod addrconfig;
pub mod cache;
pub mod conf;
#[cfg(test)]
mod fake;
pub mod hosts;
pub mod policy;
mod stub;
mod tcp;
pub mod udp;
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

use crate::error::ErrorKind;
use cache::{Cache, LookupResult};
pub use conf::ResolvConf;
pub use hosts::HostsTable;
use policy::Outcome;
use stub::Stub;
use udp::Renewal;

/// Hard bound on one lookup (all retries included) unless configured otherwise.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Names cached per worker by default.
pub const DEFAULT_CACHE_SIZE: usize = 65_536;

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

/// Resolver settings.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Use this server (UDP, TCP on truncation) instead of the system's.
    pub server: Option<SocketAddr>,
    /// The system's servers and options (see [`DnsConfig::system`]); without `server` and
    /// without this, `Resolver::new` reads /etc/resolv.conf itself.
    pub resolv_conf: Option<Arc<ResolvConf>>,
    /// Names answered without a query (the hosts file; see [`DnsConfig::system`]).
    pub hosts: Option<Arc<HostsTable>>,
    pub timeout: Duration,
    /// Entries cached at most (positive and negative).
    pub cache_size: usize,
    /// Address records to ask for; `None`: decided by the machine's addresses, looked at
    /// again every [`addrconfig::ADDRCONFIG_RECHECK`].
    pub families: Option<Families>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            server: None,
            resolv_conf: None,
            hosts: None,
            timeout: DEFAULT_DNS_TIMEOUT,
            cache_size: DEFAULT_CACHE_SIZE,
            families: None,
        }
    }
}

impl DnsConfig {
    /// What a run uses: with `server`, that server alone; without, /etc/resolv.conf and the
    /// system hosts file (both read here, once, and shared by every worker's resolver).
    /// AAAA records are asked for while the machine has a routable IPv6 address.
    pub fn system(server: Option<SocketAddr>) -> DnsConfig {
        let (resolv_conf, hosts) = match server {
            Some(_) => (None, None),
            None => (
                Some(Arc::new(ResolvConf::load(std::path::Path::new(
                    conf::RESOLV_CONF,
                )))),
                Some(Arc::new(HostsTable::load(std::path::Path::new(
                    hosts::SYSTEM_HOSTS,
                )))),
            ),
        };
        DnsConfig {
            server,
            resolv_conf,
            hosts,
            ..DnsConfig::default()
        }
    }

    /// The servers and options a resolver uses.
    fn resolv(&self) -> ResolvConf {
        match (self.server, &self.resolv_conf) {
            (Some(server), _) => ResolvConf::server(server),
            (None, Some(conf)) => ResolvConf::clone(conf),
            (None, None) => ResolvConf::load(std::path::Path::new(conf::RESOLV_CONF)),
        }
    }
}

/// Counters for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsStats {
    /// Names resolved by query (cache misses, after coalescing).
    pub lookups: u64,
    pub cache_hits: u64,
    pub coalesced: u64,
    /// Names answered by the hosts file.
    pub hosts_hits: u64,
    /// UDP sockets opened (a few per server, replaced now and then; not one per query).
    pub udp_sockets: u64,
    /// Tries after the first of a question (timeouts, server errors).
    pub retries: u64,
    /// Questions asked again over TCP after a truncated answer.
    pub tcp_fallbacks: u64,
    /// Datagrams that answered no query: wrong source, unknown id, another question.
    pub ignored_answers: u64,
}

impl DnsStats {
    /// Add `other`'s counts to these (summing workers).
    pub fn add(&mut self, other: &DnsStats) {
        self.lookups += other.lookups;
        self.cache_hits += other.cache_hits;
        self.coalesced += other.coalesced;
        self.hosts_hits += other.hosts_hits;
        self.udp_sockets += other.udp_sockets;
        self.retries += other.retries;
        self.tcp_fallbacks += other.tcp_fallbacks;
        self.ignored_answers += other.ignored_answers;
    }
}

/// Per-worker resolver (`!Send`; lives on one tokio-uring thread). IP literals never reach
/// here (the fetch path skips DNS for them), but `lookup` handles them anyway (bracketed IPv6
/// too), and `localhost` / `*.localhost` are 127.0.0.1 and ::1 without a query (RFC 6761).
pub struct Resolver {
    inner: Rc<Inner>,
}

type LookupFuture = Pin<Box<dyn Future<Output = LookupResult>>>;
type SharedLookup = Shared<LookupFuture>;

/// A query in flight, as the in-flight table holds it: weakly, so that the query is dropped
/// (and its sockets' claims and timers with it) when the last lookup waiting on it goes away.
struct Flight {
    /// Tells this flight from a later one of the same name.
    id: u64,
    query: WeakShared<LookupFuture>,
}

struct Inner {
    stub: Stub,
    hosts: Option<Arc<HostsTable>>,
    timeout: Duration,
    /// Fixed by the configuration, or `None`: see `auto`.
    families: Option<Families>,
    /// Without a fixed choice: the last look at the machine, and when to look again.
    auto: Cell<(Families, Instant)>,
    cache: RefCell<Cache>,
    /// Queries in flight by name: later lookups of the same name wait on the same future.
    /// An entry leaves when its query completes or when its last [`Waiter`] is dropped.
    in_flight: RefCell<HashMap<Rc<str>, Flight>>,
    /// The id of the next [`Flight`].
    next_flight: Cell<u64>,
    stats: Cell<DnsStats>,
}

impl Resolver {
    /// Build a resolver: `cfg.hosts` first, then `cfg.server` or the servers of
    /// `cfg.resolv_conf` (/etc/resolv.conf). May be built before the worker's runtime starts
    /// (it opens nothing), but `lookup` must run inside it: sockets and their receive tasks
    /// are set up on the first query. Never fails today (a missing resolv.conf means
    /// 127.0.0.1, as for the C library); the `Result` is kept for callers.
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsError> {
        Ok(Resolver::build(cfg, Renewal::default()))
    }

    fn build(cfg: &DnsConfig, renewal: Renewal) -> Resolver {
        Resolver {
            inner: Rc::new(Inner {
                stub: Stub::new(cfg.resolv(), cfg.timeout, renewal),
                hosts: cfg.hosts.clone(),
                timeout: cfg.timeout,
                families: cfg.families,
                // Looked at on the first query, not before: most runs never send one.
                auto: Cell::new((Families::Both, Instant::now())),
                cache: RefCell::new(Cache::new(cfg.cache_size)),
                in_flight: RefCell::new(HashMap::new()),
                next_flight: Cell::new(0),
                stats: Cell::new(DnsStats::default()),
            }),
        }
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
        // `name.` and `name` differ only for a name the search list applies to.
        let absolute = bare.ends_with('.');
        let key: Rc<str> = if absolute && inner.stub.conf().searches(&name, false) {
            Rc::from(format!("{name}."))
        } else {
            Rc::from(name.as_str())
        };
        if let Some(result) = inner.cache.borrow_mut().get(&key, Instant::now()) {
            inner.bump(|s| s.cache_hits += 1);
            return result;
        }
        let pending = inner.in_flight.borrow().get(&key).and_then(|f| {
            let query = f.query.upgrade()?;
            Some((f.id, query))
        });
        if let Some((flight, query)) = pending {
            inner.bump(|s| s.coalesced += 1);
            return Waiter {
                inner: Rc::downgrade(inner),
                key,
                flight,
                query,
            }
            .await;
        }
        inner.bump(|s| s.lookups += 1);
        let flight = inner.next_flight.get();
        inner.next_flight.set(flight + 1);
        let families = inner.families();
        let query = query(inner.clone(), flight, key.clone(), name, absolute, families);
        let query: SharedLookup = query.boxed_local().shared();
        let weak = query
            .downgrade()
            .expect("a new shared future is not complete");
        inner.in_flight.borrow_mut().insert(
            key.clone(),
            Flight {
                id: flight,
                query: weak,
            },
        );
        Waiter {
            inner: Rc::downgrade(inner),
            key,
            flight,
            query,
        }
        .await
    }

    pub fn stats(&self) -> DnsStats {
        let inner = &self.inner;
        let stub = &inner.stub;
        DnsStats {
            udp_sockets: stub.udp.sockets.get(),
            ignored_answers: stub.udp.ignored.get(),
            retries: stub.counters.retries.get(),
            tcp_fallbacks: stub.counters.tcp_fallbacks.get(),
            ..inner.stats.get()
        }
    }
}

/// One lookup's share of a query in flight. Dropping the last one of a query (every lookup
/// of the name cancelled, by a URL deadline say) drops the query and takes the name out of
/// the in-flight table: nothing stays behind, and a later lookup starts afresh.
struct Waiter {
    inner: Weak<Inner>,
    key: Rc<str>,
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
                inner.forget_flight(&self.key, self.flight);
            }
        }
    }
}

/// One real query under the hard timeout; the outcome goes to the cache and the name leaves
/// the in-flight table even if the lookup that started it was cancelled meanwhile (while
/// another still waits).
async fn query(
    inner: Rc<Inner>,
    flight: u64,
    key: Rc<str>,
    name: String,
    absolute: bool,
    families: Families,
) -> LookupResult {
    let timeout = inner.timeout;
    let resolved = tokio::time::timeout(timeout, inner.stub.resolve(&name, absolute, families));
    let (result, ttl) = match resolved.await {
        Ok(Outcome::Found(ips, ttl)) => (Ok(Rc::from(ips)), ttl),
        Ok(Outcome::NxDomain) => (Err(DnsError::NxDomain(name)), 0),
        Ok(Outcome::NoData) => (Err(DnsError::NoAddress(name, families)), 0),
        Ok(Outcome::Failed(why)) => (Err(DnsError::Failure(name, why)), 0),
        Ok(Outcome::TimedOut) | Err(_) => (Err(DnsError::Timeout(name, millis(timeout))), 0),
    };
    let now = Instant::now();
    inner.forget_flight(&key, flight);
    let expires = cache::expiry(&result, ttl, now);
    inner
        .cache
        .borrow_mut()
        .insert(key, result.clone(), expires, now);
    result
}

impl Inner {
    /// Take `key` out of the in-flight table if `flight` is still its entry.
    fn forget_flight(&self, key: &str, flight: u64) {
        let mut in_flight = self.in_flight.borrow_mut();
        if in_flight.get(key).is_some_and(|f| f.id == flight) {
            in_flight.remove(key);
        }
    }

    /// The records to ask for now: as configured, or from a look at the machine at most
    /// [`addrconfig::ADDRCONFIG_RECHECK`] old.
    fn families(&self) -> Families {
        addrconfig::decide_families(
            self.families,
            &self.auto,
            Instant::now(),
            addrconfig::machine_families,
        )
    }

    fn bump(&self, f: impl FnOnce(&mut DnsStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeDns, Mode, ANSWER_IP, ANSWER_TTL, ANSWER_V6, BIG_IPS};
    use super::*;
    use hickory_proto::rr::RecordType;
    use std::collections::HashSet;

    const A: RecordType = RecordType::A;
    const AAAA: RecordType = RecordType::AAAA;

    fn answer() -> IpAddr {
        IpAddr::V4(ANSWER_IP)
    }

    fn config(servers: Vec<SocketAddr>, timeout_ms: u64, families: Option<Families>) -> DnsConfig {
        DnsConfig {
            resolv_conf: Some(Arc::new(ResolvConf {
                servers,
                ..ResolvConf::default()
            })),
            timeout: Duration::from_millis(timeout_ms),
            cache_size: 16,
            families,
            ..DnsConfig::default()
        }
    }

    impl FakeDns {
        fn resolver(&self, timeout_ms: u64) -> Resolver {
            self.resolver_for(timeout_ms, Some(Families::Both))
        }

        fn resolver_for(&self, timeout_ms: u64, families: Option<Families>) -> Resolver {
            Resolver::new(&DnsConfig {
                server: Some(self.addr),
                timeout: Duration::from_millis(timeout_ms),
                cache_size: 16,
                families,
                ..DnsConfig::default()
            })
            .unwrap()
        }
    }

    impl Resolver {
        /// Nothing left behind: no name in flight, no query waiting on a socket.
        fn assert_idle(&self) {
            assert!(self.inner.in_flight.borrow().is_empty(), "a name in flight");
            assert_eq!(self.inner.stub.pending(), 0, "a query waiting on a socket");
        }
    }

    #[test]
    fn answer_then_cache_hit() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            assert_eq!(&*r.lookup("www.example.test").await.unwrap(), &[answer()]);
            assert_eq!(&*r.lookup("WWW.Example.Test.").await.unwrap(), &[answer()]);
            r.assert_idle();
        });
        assert_eq!(dns.queries("www.example.test", A), 1);
        let s = r.stats();
        assert_eq!((s.lookups, s.cache_hits, s.coalesced), (1, 1, 0));
    }

    #[test]
    fn the_answer_ttl_is_kept() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            r.lookup("ttl.example.test").await.unwrap();
            let cache = r.inner.cache.borrow();
            assert_eq!(cache.len(), 1);
        });
        // The entry lives for the record's TTL, not for the minimum.
        let later = Instant::now() + Duration::from_secs(u64::from(ANSWER_TTL) - 5);
        assert!(r
            .inner
            .cache
            .borrow_mut()
            .get("ttl.example.test", later)
            .is_some());
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
        assert_eq!(dns.queries("nx.example.test", A), 1);
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
        tokio_uring::start(async {
            assert_eq!(
                &*both.lookup("both.example.test").await.unwrap(),
                &[answer()]
            );
            let dual = both.lookup("v6.example.test").await.unwrap();
            assert_eq!(&*dual, &[answer(), IpAddr::V6(ANSWER_V6)], "IPv4 first");
            assert_eq!(&*v4.lookup("v4.example.test").await.unwrap(), &[answer()]);
            let e = v4.lookup("nodata.example.test").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DnsNoAddress);
            assert_eq!(
                e.to_string(),
                "DNS: nodata.example.test has no A address (AAAA not asked: this machine has \
                 no IPv6 address)"
            );
        });
        assert_eq!(dns.queries("both.example.test", A), 1);
        assert_eq!(dns.queries("both.example.test", AAAA), 1);
        assert_eq!(dns.queries("v4.example.test", A), 1);
        assert_eq!(dns.queries("v4.example.test", AAAA), 0);
        assert_eq!(dns.queries("nodata.example.test", AAAA), 0);
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
        // One server, two attempts: a server error sends the next try at once.
        assert_eq!(dns.queries("fail.example.test", A), 2);
    }

    #[test]
    fn garbage_with_the_right_id_is_a_failure() {
        let dns = FakeDns::start();
        let r = dns.resolver_for(2000, Some(Families::Ipv4Only));
        let e = tokio_uring::start(async { r.lookup("garbage.example.test").await.unwrap_err() });
        assert_eq!(e.kind(), ErrorKind::DnsFailure, "{e}");
        assert!(e.to_string().contains("malformed answer"), "{e}");
        assert!(!e.to_string().contains('\n'));
        assert_eq!(dns.queries("garbage.example.test", A), 2);
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
            r.assert_idle();
        });
        // Two attempts, each with half the time.
        assert_eq!(dns.queries("silent.example.test", A), 2);
        assert_eq!(r.stats().retries, 2, "the second A and the second AAAA");
    }

    #[test]
    fn cname_chains_are_followed() {
        let dns = FakeDns::start();
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            assert_eq!(&*r.lookup("alias.example.test").await.unwrap(), &[answer()]);
        });
        assert_eq!(dns.queries("real.example.test", A), 0, "no second query");
    }

    #[test]
    fn truncated_answers_are_asked_again_over_tcp() {
        let dns = FakeDns::start();
        let r = dns.resolver_for(2000, Some(Families::Ipv4Only));
        tokio_uring::start(async {
            let ips = r.lookup("big.example.test").await.unwrap();
            assert_eq!(&*ips, &BIG_IPS.map(IpAddr::V4));
        });
        let seen = dns.seen();
        let udp = seen.iter().filter(|s| !s.tcp).count();
        let tcp = seen.iter().filter(|s| s.tcp).count();
        assert_eq!((udp, tcp), (1, 1));
        assert_eq!(r.stats().tcp_fallbacks, 1);
    }

    #[test]
    fn answers_with_another_id_or_question_are_ignored() {
        let dns = FakeDns::start();
        let r = dns.resolver_for(2000, Some(Families::Ipv4Only));
        tokio_uring::start(async {
            assert_eq!(&*r.lookup("spoof.example.test").await.unwrap(), &[answer()]);
        });
        // Another id, another question, a NOERROR without the question: three ignored.
        assert_eq!(r.stats().ignored_answers, 3);
        assert_eq!(dns.queries("spoof.example.test", A), 1);
    }

    #[test]
    fn a_failing_server_hands_over_to_the_next() {
        let bad = FakeDns::start();
        bad.set_mode(Mode::ServFail);
        let good = FakeDns::start();
        let r = Resolver::new(&config(
            vec![bad.addr, good.addr],
            2000,
            Some(Families::Ipv4Only),
        ))
        .unwrap();
        tokio_uring::start(async {
            let started = Instant::now();
            assert_eq!(&*r.lookup("www.example.test").await.unwrap(), &[answer()]);
            // At once, not after the first try's time (2 s / 4 tries).
            assert!(
                started.elapsed() < Duration::from_millis(400),
                "{:?}",
                started.elapsed()
            );
        });
        assert_eq!(bad.queries("www.example.test", A), 1);
        assert_eq!(good.queries("www.example.test", A), 1);
    }

    #[test]
    fn an_unreachable_server_hands_over_at_once() {
        // A port nothing listens on: the kernel's port-unreachable fails the try.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let good = FakeDns::start();
        let r = Resolver::new(&config(
            vec![closed, good.addr],
            2000,
            Some(Families::Ipv4Only),
        ))
        .unwrap();
        tokio_uring::start(async {
            let started = Instant::now();
            assert_eq!(&*r.lookup("www.example.test").await.unwrap(), &[answer()]);
            assert!(
                started.elapsed() < Duration::from_millis(400),
                "{:?}",
                started.elapsed()
            );
            r.assert_idle();
        });
    }

    #[test]
    fn a_silent_server_hands_over_after_its_try() {
        let quiet = FakeDns::start();
        quiet.set_mode(Mode::Muted);
        let good = FakeDns::start();
        let r = Resolver::new(&config(
            vec![quiet.addr, good.addr],
            800,
            Some(Families::Ipv4Only),
        ))
        .unwrap();
        tokio_uring::start(async {
            let started = Instant::now();
            assert_eq!(&*r.lookup("www.example.test").await.unwrap(), &[answer()]);
            // The try's time is 800 ms / 4 tries.
            assert!(
                started.elapsed() >= Duration::from_millis(200),
                "{:?}",
                started.elapsed()
            );
            r.assert_idle();
        });
        assert_eq!((quiet.total(), good.total()), (1, 1));
        assert_eq!(r.stats().retries, 1);
    }

    #[test]
    fn rotate_spreads_questions_over_the_servers() {
        let one = FakeDns::start();
        let two = FakeDns::start();
        let mut cfg = config(vec![one.addr, two.addr], 2000, Some(Families::Ipv4Only));
        let mut conf = ResolvConf::clone(cfg.resolv_conf.as_ref().unwrap());
        conf.rotate = true;
        cfg.resolv_conf = Some(Arc::new(conf));
        let r = Resolver::new(&cfg).unwrap();
        tokio_uring::start(async {
            for i in 0..10 {
                r.lookup(&format!("h{i}.example.test")).await.unwrap();
            }
        });
        assert_eq!((one.total(), two.total()), (5, 5));
    }

    #[test]
    fn bare_names_go_through_the_search_list() {
        let dns = FakeDns::start();
        let conf = ResolvConf {
            servers: vec![dns.addr],
            search: vec!["corp.test".into()],
            ..ResolvConf::default()
        };
        let r = Resolver::new(&DnsConfig {
            resolv_conf: Some(Arc::new(conf)),
            families: Some(Families::Ipv4Only),
            ..DnsConfig::default()
        })
        .unwrap();
        tokio_uring::start(async {
            assert_eq!(&*r.lookup("intranet").await.unwrap(), &[answer()]);
            let e = r.lookup("nx").await.unwrap_err();
            assert_eq!(e, DnsError::NxDomain("nx".into()));
            // Written with a final dot: as it is.
            assert_eq!(&*r.lookup("intranet.").await.unwrap(), &[answer()]);
            // Dotted: as it is, and only so.
            r.lookup("nx.example.test").await.unwrap_err();
        });
        let names: Vec<String> = dns.seen().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "intranet.corp.test",
                "nx.corp.test",
                "nx",
                "intranet",
                "nx.example.test"
            ]
        );
    }

    #[test]
    fn a_few_sockets_serve_every_query_with_random_ids() {
        const NAMES: usize = 300;
        let dns = FakeDns::start();
        let r = dns.resolver_for(5000, Some(Families::Ipv4Only));
        tokio_uring::start(async {
            let all = futures_util::future::join_all((0..NAMES).map(|i| {
                let r = &r;
                async move { r.lookup(&format!("h{i}.pool.test")).await }
            }))
            .await;
            assert!(all.iter().all(Result::is_ok));
            assert!(r.inner.stub.open_sockets() <= udp::SOCKETS_PER_SERVER);
            r.assert_idle();
        });
        let seen = dns.seen();
        assert_eq!(seen.len(), NAMES);
        let ports: HashSet<u16> = seen.iter().map(|s| s.from.port()).collect();
        assert!(ports.len() <= udp::SOCKETS_PER_SERVER, "{ports:?}");
        assert!(
            ports.len() >= 2,
            "queries are spread over the sockets: {ports:?}"
        );
        let ids: HashSet<u16> = seen.iter().map(|s| s.id).collect();
        // 300 random 16-bit ids: a handful of repeats at most (ids repeat across sockets).
        assert!(ids.len() >= NAMES - 10, "{} distinct ids", ids.len());
        assert!(r.stats().udp_sockets <= udp::SOCKETS_PER_SERVER as u64);
    }

    #[test]
    fn sockets_are_replaced_after_their_share_of_queries() {
        const NAMES: usize = 40;
        let dns = FakeDns::start();
        let renewal = Renewal {
            max_queries: 4,
            max_age: Duration::from_secs(3600),
        };
        let r = Resolver::build(
            &DnsConfig {
                server: Some(dns.addr),
                families: Some(Families::Ipv4Only),
                ..DnsConfig::default()
            },
            renewal,
        );
        tokio_uring::start(async {
            for i in 0..NAMES {
                r.lookup(&format!("h{i}.renew.test")).await.unwrap();
            }
            assert!(r.inner.stub.open_sockets() <= udp::SOCKETS_PER_SERVER);
        });
        let ports: HashSet<u16> = dns.seen().iter().map(|s| s.from.port()).collect();
        assert!(
            ports.len() >= NAMES / 4,
            "{} ports for {NAMES} queries",
            ports.len()
        );
        assert!(r.stats().udp_sockets >= (NAMES / 4) as u64);
    }

    #[test]
    fn a_lost_query_is_asked_again_once_overdue() {
        let dns = FakeDns::start();
        // 5 s for the lookup: 2.5 s per try, as resolv.conf's defaults would have it.
        let r = dns.resolver_for(5000, Some(Families::Ipv4Only));
        tokio_uring::start(async {
            let started = Instant::now();
            assert_eq!(&*r.lookup("lossy.example.test").await.unwrap(), &[answer()]);
            let took = started.elapsed();
            assert!(took >= policy::INITIAL_RTO, "{took:?}");
            assert!(took < Duration::from_millis(1000), "{took:?}");
        });
        assert_eq!(dns.queries("lossy.example.test", A), 2);
        assert_eq!(r.stats().retries, 1);
    }

    #[test]
    fn a_burst_of_queries_waits_for_room_in_the_window() {
        const NAMES: usize = 100;
        let dns = FakeDns::start();
        dns.set_mode(Mode::Muted);
        let r = dns.resolver_for(5000, Some(Families::Ipv4Only));
        tokio_uring::start(async {
            let mut all = Box::pin(futures_util::future::join_all((0..NAMES).map(|i| {
                let r = &r;
                async move { r.lookup(&format!("h{i}.burst.test")).await }
            })));
            let window = policy::INITIAL_WINDOW;
            while dns.total() < window {
                tokio::select! {
                    _ = &mut all => unreachable!("the server is muted"),
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            // A while longer, well before any answer is overdue: still only the window.
            tokio::select! {
                _ = &mut all => unreachable!("the server is muted"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            assert_eq!(dns.total(), window);
            assert_eq!(r.inner.stub.pending(), window);
            drop(all);
            r.assert_idle();
        });
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
                assert_eq!(&*res.unwrap(), &[answer()]);
            }
        });
        assert_eq!(dns.queries("slow.example.test", A), 1);
        assert_eq!(dns.queries("slow.example.test", AAAA), 1);
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
            let (first, second) = tokio::join!(first, r.lookup("slow.cancel.test"));
            assert!(first.is_err());
            assert_eq!(&*second.unwrap(), &[answer()]);
            assert_eq!(&*r.lookup("slow.cancel.test").await.unwrap(), &[answer()]);
        });
        assert_eq!(dns.queries("slow.cancel.test", A), 1);
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced, s.cache_hits), (1, 1, 1));
    }

    #[test]
    fn cancelled_lookups_leave_nothing_in_flight() {
        const NAME: &str = "gone.example.test";
        let dns = FakeDns::start();
        dns.set_mode(Mode::Muted);
        let r = dns.resolver(2000);
        tokio_uring::start(async {
            let mut first = Box::pin(r.lookup(NAME));
            let mut second = Box::pin(r.lookup(NAME));
            // Drive both until the server holds the queries: the lookup is in flight.
            while dns.queries(NAME, A) == 0 || dns.queries(NAME, AAAA) == 0 {
                tokio::select! {
                    _ = &mut first => unreachable!("the server is muted"),
                    _ = &mut second => unreachable!("the server is muted"),
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            assert_eq!(r.inner.in_flight.borrow().len(), 1);
            assert_eq!(r.inner.stub.pending(), 2, "A and AAAA wait on the sockets");
            drop(first);
            assert_eq!(
                r.inner.in_flight.borrow().len(),
                1,
                "one lookup still waits"
            );
            drop(second);
            r.assert_idle();
            assert!(r.inner.cache.borrow().is_empty(), "nothing cached");
            // A later lookup of the same name is a new query, and gets the answer.
            dns.set_mode(Mode::Normal);
            assert_eq!(&*r.lookup(NAME).await.unwrap(), &[answer()]);
            r.assert_idle();
        });
        let s = r.stats();
        assert_eq!((s.lookups, s.coalesced), (2, 1));
    }

    #[test]
    fn lookups_cut_by_deadlines_leave_nothing_in_flight() {
        const NAMES: usize = 50;
        let dns = FakeDns::start();
        dns.set_mode(Mode::Muted);
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
            r.assert_idle();
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
        let s = r.stats();
        assert_eq!((s.lookups, s.udp_sockets), (0, 0));
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
            ..DnsConfig::default()
        })
        .unwrap();
        tokio_uring::start(async {
            let listed = r.lookup("Listed.Test.").await.unwrap();
            assert_eq!(&*listed, &["127.1.0.9".parse::<IpAddr>().unwrap()]);
            let v6 = r.lookup("v6only.test").await.unwrap();
            assert_eq!(&*v6, &[IpAddr::V6(Ipv6Addr::LOCALHOST)]);
            // Not in the table: the server answers.
            assert_eq!(&*r.lookup("other.test").await.unwrap(), &[answer()]);
        });
        assert_eq!(dns.queries("listed.test", A), 0);
        assert_eq!(dns.queries("listed.test", AAAA), 0);
        assert_eq!(dns.queries("v6only.test", A), 0);
        assert_eq!(dns.queries("other.test", A), 1);
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

    #[test]
    fn the_system_config_reads_resolv_conf_once_for_every_worker() {
        let cfg = DnsConfig::system(None);
        assert!(cfg.resolv_conf.is_some() && cfg.hosts.is_some());
        let given = DnsConfig::system(Some("127.0.0.53:53".parse().unwrap()));
        assert!(given.resolv_conf.is_none() && given.hosts.is_none());
        assert_eq!(given.resolv().servers, ["127.0.0.53:53".parse().unwrap()]);
    }
}
