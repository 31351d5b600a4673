//! Which failures are worth another attempt, and when: the retry policy, sans-IO (no clock,
//! no randomness of its own: callers pass `now` and a uniform draw).
//!
//! Transient: `connect_timeout`, `reset`, `timeout`, `dns_timeout`, `dns_failure`
//! (SERVFAIL), a connection closed before the response head, and the HTTP statuses 429,
//! 502, 503 and 504. Never retried: NXDOMAIN, TLS failures, invalid URLs, policy and
//! robots refusals, other 4xx. The wait before attempt `n + 1` is exponential backoff with
//! full jitter, `uniform(0, min(RETRY_CAP, RETRY_BASE * 2^(n-1)))`, unless the server said
//! when in `Retry-After` (seconds or an HTTP date), which is honoured up to
//! [`RETRY_AFTER_CAP`].

use std::time::{Duration, SystemTime};

use crate::error::ErrorKind;

/// The first backoff's upper bound.
pub(crate) const RETRY_BASE: Duration = Duration::from_secs(1);
/// Backoff upper bound, however many attempts.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured (a longer one is cut to this).
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);

/// Error kinds that may go away on their own.
const TRANSIENT_KINDS: [ErrorKind; 5] = [
    ErrorKind::ConnectTimeout,
    ErrorKind::Reset,
    ErrorKind::Timeout,
    ErrorKind::DnsTimeout,
    ErrorKind::DnsFailure,
];

/// Whether a failure of this kind is worth another attempt (`protocol` errors are, only
/// when the connection closed before the head: the caller knows).
pub(crate) fn transient_kind(kind: ErrorKind) -> bool {
    TRANSIENT_KINDS.contains(&kind)
}

/// Whether a response with this status is worth another attempt.
pub(crate) fn transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// How long to wait after `attempts` attempts (at least 1) before the next one: the
/// server's `retry_after` (capped) when it gave one, else full-jitter exponential backoff
/// with `unit` a uniform draw in `[0, 1)`.
pub(crate) fn backoff(attempts: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    if let Some(after) = retry_after {
        return after.min(RETRY_AFTER_CAP);
    }
    let doublings = attempts.saturating_sub(1).min(16);
    let ceiling = RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_CAP);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A `Retry-After` value (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) as a
/// delay from `now`; a date in the past is no delay; garbage is `None`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_the_listed_ones() {
        for k in ErrorKind::ALL {
            let want = matches!(
                k,
                ErrorKind::ConnectTimeout
                    | ErrorKind::Reset
                    | ErrorKind::Timeout
                    | ErrorKind::DnsTimeout
                    | ErrorKind::DnsFailure
            );
            assert_eq!(transient_kind(k), want, "{k}");
        }
        for s in [429, 502, 503, 504] {
            assert!(transient_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 500, 501, 505] {
            assert!(!transient_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_its_ceiling_up_to_the_cap_with_full_jitter() {
        let top = |n| backoff(n, None, 0.999_999);
        assert!(top(1) <= RETRY_BASE && top(1) > RETRY_BASE.mul_f64(0.99));
        assert!(top(2) <= RETRY_BASE * 2 && top(2) > RETRY_BASE.mul_f64(1.99));
        assert!(top(3) <= RETRY_BASE * 4);
        assert!(top(30) <= RETRY_CAP && top(30) > RETRY_CAP.mul_f64(0.99));
        assert_eq!(top(u32::MAX), top(30), "no overflow");
        assert_eq!(
            backoff(5, None, 0.0),
            Duration::ZERO,
            "full jitter reaches zero"
        );
        assert_eq!(backoff(2, None, 0.5), RETRY_BASE);
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let d = Duration::from_secs(7);
        assert_eq!(backoff(1, Some(d), 0.3), d);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3600)), 0.3),
            RETRY_AFTER_CAP
        );
        assert_eq!(backoff(9, Some(Duration::ZERO), 0.9), Duration::ZERO);
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        for bad in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX)),
            "huge but a number: capped by backoff"
        );
    }
}
