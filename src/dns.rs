//! Name resolution with hickory-resolver: one resolver per worker thread, a hard timeout per
//! lookup, a positive/negative cache, concurrent lookups of one name coalesced into one
//! query, and DNS failures mapped to distinct error kinds.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::error::ErrorKind;

/// Hard bound on one lookup (all retries included) unless configured otherwise.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS: no such host {0}")]
    NxDomain(String),
    #[error("DNS: {0} has no A/AAAA address")]
    NoAddress(String),
    #[error("DNS: lookup of {0} failed: {1}")]
    Failure(String, String),
    #[error("DNS: lookup of {0} timed out after {1} ms")]
    Timeout(String, u64),
}

impl DnsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DnsError::NxDomain(_) => ErrorKind::DnsNxdomain,
            DnsError::NoAddress(_) => ErrorKind::DnsNoAddress,
            DnsError::Failure(..) => ErrorKind::DnsFailure,
            DnsError::Timeout(..) => ErrorKind::DnsTimeout,
        }
    }
}

/// Resolver settings.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Use this server (UDP+TCP) instead of /etc/resolv.conf; /etc/hosts is still honoured
    /// when `None` only.
    pub server: Option<SocketAddr>,
    pub timeout: Duration,
    /// Entries cached at most (positive and negative).
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            server: None,
            timeout: DEFAULT_DNS_TIMEOUT,
            cache_size: 65_536,
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
}

/// Per-worker resolver (`!Send`; lives on one tokio-uring thread). IP literals never reach
/// here (the fetch path skips DNS for them), but `lookup` handles them anyway.
pub struct Resolver {
    _private: (),
}

impl Resolver {
    pub fn new(cfg: &DnsConfig) -> Result<Self, DnsError> {
        let _ = cfg;
        todo!("dns helper")
    }

    /// Addresses for `host` (IPv6 and IPv4, in the order to try), from cache or one query.
    pub async fn lookup(&self, host: &str) -> Result<Rc<[IpAddr]>, DnsError> {
        let _ = host;
        todo!("dns helper")
    }

    pub fn stats(&self) -> DnsStats {
        todo!("dns helper")
    }
}
