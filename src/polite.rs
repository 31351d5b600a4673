//! The per-host politeness clock of one worker, sans-IO (callers pass `now`): the least
//! interval between two request starts on one host (`--host-delay`, or a longer robots.txt
//! Crawl-delay for that host), enforced at the moment each request is written, so that the
//! server sees its requests at least that far apart whatever happened in between
//! (connects, redirects to the same host, `--follow` hops). The scheduler plans slots with
//! the same delays (`sched`); this clock makes the spacing exact.

use std::time::{Duration, Instant};

/// Added to every interval, so that the few microseconds between taking the time and
/// writing the request cannot make two requests arrive closer than the delay.
pub(crate) const SLACK: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Clock {
    /// The next request on this host may start then.
    next: Instant,
    /// This host's own delay (Crawl-delay), when longer than the default.
    delay: Option<Duration>,
}

/// The clocks of one worker's hosts.
#[derive(Debug)]
pub(crate) struct Politeness {
    default: Duration,
    hosts: crate::sched::HostMap<String, Clock>,
}

impl Politeness {
    /// Clocks with `default` as every host's least interval (zero: none).
    pub(crate) fn new(default: Duration) -> Politeness {
        Politeness {
            default,
            hosts: crate::sched::HostMap::default(),
        }
    }

    /// Nothing to enforce for anyone (the common case: no delays at all).
    pub(crate) fn is_off(&self) -> bool {
        self.default.is_zero() && self.hosts.is_empty()
    }

    /// Book the next request start on `key`: when it may start (`now` or later, in turn
    /// with the requests booked before it); the one after it is then booked a delay later.
    /// The caller waits until the returned time, then starts at once.
    pub(crate) fn reserve(&mut self, key: &str, now: Instant) -> Instant {
        let clock = self.hosts.get(key);
        let delay = clock.and_then(|c| c.delay).unwrap_or(self.default);
        let start = clock.map_or(now, |c| c.next.max(now));
        if delay.is_zero() {
            return start;
        }
        let next = start + delay + SLACK;
        match self.hosts.get_mut(key) {
            Some(c) => c.next = next,
            None => {
                self.hosts
                    .insert(key.to_string(), Clock { next, delay: None });
            }
        }
        start
    }

    /// `key`'s own least interval (a Crawl-delay); the default wins when it is longer.
    pub(crate) fn set_delay(&mut self, key: &str, delay: Duration, now: Instant) {
        let delay = delay.max(self.default);
        let c = self.hosts.entry(key.to_string()).or_insert(Clock {
            next: now,
            delay: None,
        });
        c.delay = Some(delay);
    }

    /// Forget clocks that no longer hold anything back and carry no own delay.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.hosts.retain(|_, c| c.next > now || c.delay.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_delay_means_no_clocks() {
        let mut p = Politeness::new(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(p.reserve("h", now), now);
        assert_eq!(p.reserve("h", now), now);
        assert!(p.is_off());
    }

    #[test]
    fn starts_are_booked_in_turn_a_delay_plus_slack_apart() {
        let d = MS * 200;
        let mut p = Politeness::new(d);
        let t = Instant::now();
        assert_eq!(p.reserve("h", t), t, "a new host starts at once");
        // Two more callers at the same moment queue up behind it, each a delay later.
        assert_eq!(p.reserve("h", t), t + d + SLACK);
        assert_eq!(p.reserve("h", t), t + (d + SLACK) * 2);
        assert_eq!(p.reserve("other", t), t, "per host");
        // Long after, a start is at once again.
        let late = t + MS * 5000;
        assert_eq!(p.reserve("h", late), late);
        p.prune(late + d * 2);
        assert!(p.hosts.is_empty());
    }

    #[test]
    fn a_crawl_delay_lengthens_one_host_only_and_never_shortens() {
        let mut p = Politeness::new(MS * 100);
        let t = Instant::now();
        p.set_delay("slow", Duration::from_secs(5), t);
        p.set_delay("eager", MS * 10, t);
        for h in ["slow", "eager", "plain"] {
            assert_eq!(p.reserve(h, t), t);
        }
        assert_eq!(p.reserve("slow", t), t + Duration::from_secs(5) + SLACK);
        assert_eq!(p.reserve("eager", t), t + MS * 100 + SLACK);
        assert_eq!(p.reserve("plain", t), t + MS * 100 + SLACK);
        p.prune(t + Duration::from_secs(60));
        assert_eq!(p.hosts.len(), 2, "own delays are kept");
        let mut p = Politeness::new(Duration::ZERO);
        p.set_delay("cd", Duration::from_secs(1), t);
        assert!(!p.is_off());
        assert_eq!(p.reserve("cd", t), t);
        assert_eq!(p.reserve("cd", t), t + Duration::from_secs(1) + SLACK);
    }
}
