//! The per-worker answer cache, sans IO (every call takes `now`): a name's addresses for
//! their TTL (at least [`POSITIVE_MIN_TTL`]), NXDOMAIN and no-address answers for
//! [`NEGATIVE_CACHE_TTL`], failures and timeouts for [`FAILURE_CACHE_TTL`], and at most
//! `capacity` names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::DnsError;

/// Shortest life of a positive answer (TTL 0 records still serve concurrent URLs).
pub const POSITIVE_MIN_TTL: Duration = Duration::from_secs(1);
/// How long NXDOMAIN / no-address answers are remembered.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long server failures and timeouts are remembered (so the queued URLs of a broken
/// host fail fast instead of each waiting for the timeout again).
pub const FAILURE_CACHE_TTL: Duration = Duration::from_secs(10);

/// What a lookup gives.
pub type LookupResult = Result<Rc<[IpAddr]>, DnsError>;

/// When an outcome leaves the cache: `ttl` (seconds, from the answer) for addresses.
pub fn expiry(result: &LookupResult, ttl: u32, now: Instant) -> Instant {
    let life = match result {
        Ok(_) => Duration::from_secs(ttl.into()).max(POSITIVE_MIN_TTL),
        Err(DnsError::NxDomain(_) | DnsError::NoAddress(..)) => NEGATIVE_CACHE_TTL,
        Err(DnsError::Failure(..) | DnsError::Timeout(..)) => FAILURE_CACHE_TTL,
    };
    now + life
}

struct Entry {
    result: LookupResult,
    expires: Instant,
}

/// Name -> outcome until it expires.
pub struct Cache {
    capacity: usize,
    entries: HashMap<Rc<str>, Entry>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// The live outcome for `name`, if any (an expired one is dropped).
    pub fn get(&mut self, name: &str, now: Instant) -> Option<LookupResult> {
        let entry = self.entries.get(name)?;
        if entry.expires > now {
            return Some(entry.result.clone());
        }
        self.entries.remove(name);
        None
    }

    /// Remember `result` until `expires`, keeping at most `capacity` entries: expired ones
    /// go first, then an arbitrary eighth of the rest (cheap, and rare: only when the cache
    /// is full of live entries).
    pub fn insert(&mut self, name: Rc<str>, result: LookupResult, expires: Instant, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&name) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.capacity {
                let victims: Vec<Rc<str>> = self
                    .entries
                    .keys()
                    .take(self.capacity / 8 + 1)
                    .cloned()
                    .collect();
                for key in victims {
                    self.entries.remove(&key);
                }
            }
        }
        self.entries.insert(name, Entry { result, expires });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Families;

    fn ok(ip: &str) -> LookupResult {
        Ok(Rc::from([ip.parse::<IpAddr>().unwrap()]))
    }

    #[test]
    fn lives_follow_the_kind_of_outcome() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        assert_eq!(expiry(&ok("192.0.2.1"), 300, t0), t0 + secs(300));
        assert_eq!(expiry(&ok("192.0.2.1"), 0, t0), t0 + POSITIVE_MIN_TTL);
        let nx = Err(DnsError::NxDomain("a.test".into()));
        assert_eq!(expiry(&nx, 0, t0), t0 + NEGATIVE_CACHE_TTL);
        let none = Err(DnsError::NoAddress("a.test".into(), Families::Both));
        assert_eq!(expiry(&none, 0, t0), t0 + NEGATIVE_CACHE_TTL);
        let failed = Err(DnsError::Failure("a.test".into(), "x".into()));
        assert_eq!(expiry(&failed, 0, t0), t0 + FAILURE_CACHE_TTL);
        let late = Err(DnsError::Timeout("a.test".into(), 5000));
        assert_eq!(expiry(&late, 0, t0), t0 + FAILURE_CACHE_TTL);
    }

    #[test]
    fn entries_expire() {
        let t0 = Instant::now();
        let mut c = Cache::new(4);
        c.insert(
            "a.test".into(),
            ok("192.0.2.1"),
            t0 + Duration::from_secs(2),
            t0,
        );
        assert_eq!(
            c.get("a.test", t0 + Duration::from_secs(1)),
            Some(ok("192.0.2.1"))
        );
        assert_eq!(c.get("a.test", t0 + Duration::from_secs(2)), None);
        assert!(c.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn stays_bounded_dropping_expired_entries_first() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        for i in 0..16 {
            let life = Duration::from_secs(if i < 8 { 1 } else { 100 });
            c.insert(format!("h{i}").into(), ok("192.0.2.1"), t0 + life, t0);
        }
        let later = t0 + Duration::from_secs(5);
        c.insert(
            "new".into(),
            ok("192.0.2.2"),
            later + Duration::from_secs(100),
            later,
        );
        assert_eq!(c.len(), 9, "the eight expired ones went, no live one");
        for i in 0..100 {
            c.insert(
                format!("x{i}").into(),
                ok("192.0.2.3"),
                later + Duration::from_secs(100),
                later,
            );
        }
        assert!(c.len() <= 16);
        assert!(c.get("x99", later).is_some(), "the newest entry is kept");
    }
}
