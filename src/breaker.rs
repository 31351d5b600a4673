//! Failing hosts fail fast: a circuit breaker per host, sans-IO (callers pass `now`).
//!
//! After [`FAILS_TO_OPEN`] connection-level failures of one host in a row (connect timeout
//! or refusal, unreachable, reset, timeout, DNS timeout), each within [`FAIL_WINDOW`] of
//! the first, the host is *open* for [`COOL_DOWN`]: its URLs are not tried but get at once
//! a record of the same error kind saying so ("host failing: 5 connect timeouts in a
//! row"). After the cool-down one URL is tried again (half-open): a failure opens the
//! breaker again, any HTTP response closes it. One good response always closes it. This
//! is what keeps one blackholed host with 50,000 URLs from costing hours and from filling
//! the queues that every other host's URLs wait behind.

use std::time::{Duration, Instant};

use crate::error::ErrorKind;

/// Connection-level failures in a row that open a host's breaker.
pub(crate) const FAILS_TO_OPEN: u32 = 5;
/// The failures in a row must fall within this time of the first one.
pub(crate) const FAIL_WINDOW: Duration = Duration::from_secs(120);
/// How long an open host is not tried.
pub(crate) const COOL_DOWN: Duration = Duration::from_secs(60);
/// Hosts tracked at most; past that the oldest quiet entries are dropped.
pub(crate) const MAX_TRACKED_HOSTS: usize = 65_536;

/// The error kinds that say the host (not the page) is in trouble.
pub(crate) fn connection_level(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectTimeout
            | ErrorKind::ConnectRefused
            | ErrorKind::Unreachable
            | ErrorKind::Reset
            | ErrorKind::Timeout
            | ErrorKind::DnsTimeout
    )
}

#[derive(Clone, Debug)]
struct Host {
    /// Failures in a row, and when the first of them happened.
    fails: u32,
    first: Instant,
    /// The kind of the last failure (what fast-failed URLs are recorded as).
    kind: ErrorKind,
    /// Open until then.
    open_until: Option<Instant>,
}

/// The breakers of one worker's hosts.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    hosts: crate::sched::HostMap<String, Host>,
}

/// Why a URL is not tried: its host's breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Open {
    pub kind: ErrorKind,
    pub message: String,
}

impl Breakers {
    /// Whether `key`'s URLs may be tried now; `Err` while its breaker is open.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Open> {
        let Some(h) = self.hosts.get(key) else {
            return Ok(());
        };
        match h.open_until {
            Some(until) if now < until => Err(Open {
                kind: h.kind,
                message: format!(
                    "host failing: {} {} in a row; not tried for {} s more",
                    h.fails,
                    plural(h.kind),
                    until.saturating_duration_since(now).as_secs().max(1)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// A URL of `key` ended with `kind` (`None`: an HTTP response came back, whatever its
    /// status). Returns true when this opened the breaker.
    pub(crate) fn record(&mut self, key: &str, kind: Option<ErrorKind>, now: Instant) -> bool {
        let Some(kind) = kind.filter(|k| connection_level(*k)) else {
            if kind.is_none() {
                self.hosts.remove(key);
            }
            return false;
        };
        if self.hosts.len() >= MAX_TRACKED_HOSTS && !self.hosts.contains_key(key) {
            self.prune(now);
        }
        let h = self.hosts.entry(key.to_string()).or_insert(Host {
            fails: 0,
            first: now,
            kind,
            open_until: None,
        });
        if h.open_until.is_some_and(|until| now < until) {
            return false; // already open (a URL that was in flight when it opened)
        }
        let half_open = h.open_until.is_some();
        if now.saturating_duration_since(h.first) > FAIL_WINDOW && !half_open {
            h.fails = 0;
            h.first = now;
        }
        h.fails += 1;
        h.kind = kind;
        if h.fails >= FAILS_TO_OPEN {
            h.open_until = Some(now + COOL_DOWN);
            return true;
        }
        false
    }

    /// Forget hosts whose failures are old and whose breaker is closed or long expired.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.hosts.retain(|_, h| match h.open_until {
            Some(until) => now < until + FAIL_WINDOW,
            None => now.saturating_duration_since(h.first) <= FAIL_WINDOW,
        });
    }
}

/// "connect timeouts", "resets": a kind as a plural noun, for the fast-fail message.
fn plural(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ConnectTimeout => "connect timeouts",
        ErrorKind::ConnectRefused => "refused connections",
        ErrorKind::Unreachable => "unreachable errors",
        ErrorKind::Reset => "resets",
        ErrorKind::Timeout => "timeouts",
        ErrorKind::DnsTimeout => "DNS timeouts",
        _ => "failures",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn five_connection_failures_in_a_row_open_the_breaker_for_the_cool_down() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for i in 0..FAILS_TO_OPEN - 1 {
            assert!(!b.record("h", Some(ErrorKind::ConnectTimeout), t0 + S * i));
            assert!(b.check("h", t0 + S * i).is_ok());
        }
        assert!(b.record("h", Some(ErrorKind::ConnectTimeout), t0 + S * 5));
        let open = b.check("h", t0 + S * 6).unwrap_err();
        assert_eq!(open.kind, ErrorKind::ConnectTimeout);
        assert!(
            open.message
                .starts_with("host failing: 5 connect timeouts in a row"),
            "{}",
            open.message
        );
        assert!(b.check("other", t0 + S * 6).is_ok(), "per host");
        // Still open until the cool-down is over, then one URL may try.
        assert!(b.check("h", t0 + S * 5 + COOL_DOWN - S).is_err());
        assert!(b.check("h", t0 + S * 5 + COOL_DOWN).is_ok());
    }

    #[test]
    fn a_response_closes_it_and_other_failures_do_not_count() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record("h", Some(ErrorKind::Reset), t0);
        }
        // A 404 or a protocol error is the page's problem, not the host's.
        b.record("h", Some(ErrorKind::Protocol), t0);
        b.record("h", Some(ErrorKind::TooLarge), t0);
        assert!(!b.record("h", None, t0), "a response resets the count");
        for _ in 0..4 {
            assert!(!b.record("h", Some(ErrorKind::Reset), t0));
        }
        assert!(b.check("h", t0).is_ok());
        // Failures spread wider than the window do not add up.
        let mut b = Breakers::default();
        for i in 0..10 {
            assert!(!b.record("h", Some(ErrorKind::Timeout), t0 + FAIL_WINDOW * i));
        }
    }

    #[test]
    fn half_open_failure_reopens_at_once_and_success_closes() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..FAILS_TO_OPEN {
            b.record("h", Some(ErrorKind::Unreachable), t0);
        }
        let later = t0 + COOL_DOWN + S;
        assert!(b.check("h", later).is_ok(), "half-open: one try");
        assert!(
            b.record("h", Some(ErrorKind::Unreachable), later),
            "reopened"
        );
        assert!(b.check("h", later + S).is_err());
        let much_later = later + COOL_DOWN + S;
        assert!(!b.record("h", None, much_later));
        assert!(b.check("h", much_later).is_ok());
        assert!(b.hosts.is_empty(), "a closed breaker is forgotten");
    }

    #[test]
    fn a_url_in_flight_when_it_opened_does_not_extend_the_cool_down() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..FAILS_TO_OPEN {
            b.record("h", Some(ErrorKind::ConnectTimeout), t0);
        }
        assert!(!b.record("h", Some(ErrorKind::ConnectTimeout), t0 + S));
        assert!(b.check("h", t0 + COOL_DOWN).is_ok());
    }

    #[test]
    fn pruning_forgets_quiet_hosts_only() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        b.record("quiet", Some(ErrorKind::Reset), t0);
        for _ in 0..FAILS_TO_OPEN {
            b.record("open", Some(ErrorKind::Reset), t0 + FAIL_WINDOW);
        }
        b.prune(t0 + FAIL_WINDOW + S);
        assert!(!b.hosts.contains_key("quiet"));
        assert!(b.check("open", t0 + FAIL_WINDOW + S).is_err());
    }
}
