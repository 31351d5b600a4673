//! The stub resolver's decisions, sans IO (they take `now` and outcomes, and return what to
//! do): when each try of one question goes out and to which server ([`Tries`]), how the A
//! and AAAA outcomes of one name combine ([`combine`]), and how the names of a search list
//! end in one outcome ([`SearchOutcome`]).
//!
//! Tries: `attempts` rounds over the servers, starting at `first` (which rotates with
//! `options rotate`). A try that gets no answer within its time is not abandoned: the next
//! one goes out and the first answer of any of them wins. A try that fails outright (a
//! server error, garbage, an unreachable server) sends the next one at once.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Shortest wait for one try, however many tries share the lookup's time.
pub const MIN_TRY_TIMEOUT: Duration = Duration::from_millis(100);

/// How one question is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TryPlan {
    pub servers: usize,
    pub attempts: u32,
    /// Wait for one try before the next goes out.
    pub per_try: Duration,
    /// The server of the first try.
    pub first: usize,
}

impl TryPlan {
    /// `attempts` rounds over `servers`, each try waiting `try_timeout` but no more than an
    /// even share of `budget` (the lookup's hard bound), and no less than
    /// [`MIN_TRY_TIMEOUT`].
    pub fn new(
        servers: usize,
        attempts: u32,
        try_timeout: Duration,
        budget: Duration,
        first: usize,
    ) -> TryPlan {
        let servers = servers.max(1);
        let attempts = attempts.max(1);
        let tries = u32::try_from(servers)
            .unwrap_or(u32::MAX)
            .saturating_mul(attempts);
        TryPlan {
            servers,
            attempts,
            per_try: try_timeout.min(budget / tries).max(MIN_TRY_TIMEOUT),
            first: first % servers,
        }
    }

    fn total(&self) -> usize {
        self.servers * self.attempts as usize
    }
}

/// What the driver of one question does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send a try to this server (an index into the plan's servers), then ask again.
    Send(usize),
    /// Wait for an answer to a try in flight, or until this time, then ask again.
    WaitUntil(Instant),
    /// Every try is spent and none answered in time.
    TimedOut,
    /// Every try is spent and the last of them failed like this (none is in flight).
    Failed(String),
}

/// The tries of one question.
#[derive(Debug)]
pub struct Tries {
    plan: TryPlan,
    sent: usize,
    in_flight: usize,
    /// When the next try goes out (or, with none left, when the question times out).
    next_at: Instant,
    /// Why the last failed try failed.
    failure: Option<String>,
}

impl Tries {
    pub fn new(plan: TryPlan, now: Instant) -> Tries {
        Tries {
            plan,
            sent: 0,
            in_flight: 0,
            next_at: now,
            failure: None,
        }
    }

    pub fn step(&mut self, now: Instant) -> Step {
        let left = self.sent < self.plan.total();
        if left && now >= self.next_at {
            let server = (self.plan.first + self.sent) % self.plan.servers;
            self.sent += 1;
            self.in_flight += 1;
            self.next_at = now + self.plan.per_try;
            return Step::Send(server);
        }
        if !left && self.in_flight == 0 {
            return Step::Failed(self.failure.clone().unwrap_or_default());
        }
        if !left && now >= self.next_at {
            return match &self.failure {
                Some(why) => Step::Failed(why.clone()),
                None => Step::TimedOut,
            };
        }
        Step::WaitUntil(self.next_at)
    }

    /// A try in flight failed outright: the next one may go out now.
    pub fn failed(&mut self, now: Instant, why: String) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.failure = Some(why);
        if self.sent < self.plan.total() {
            self.next_at = now;
        }
    }

    /// Tries sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}

/// The outcome of one question (one name, one record type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Addresses and the TTL (seconds) they may be kept.
    Found(Vec<IpAddr>, u32),
    NxDomain,
    NoData,
    Failed(String),
    TimedOut,
}

/// The outcome for a name from its A outcome and, if asked, its AAAA outcome: any address
/// wins (IPv4 first, the TTL the smaller of the two that found some); else a failure, a
/// timeout, no data (the name exists), NXDOMAIN, in that order.
pub fn combine(v4: Outcome, v6: Option<Outcome>) -> Outcome {
    let Some(v6) = v6 else { return v4 };
    match (v4, v6) {
        (Outcome::Found(mut a, ta), Outcome::Found(b, tb)) => {
            a.extend(b);
            Outcome::Found(a, ta.min(tb))
        }
        (found @ Outcome::Found(..), _) | (_, found @ Outcome::Found(..)) => found,
        (failed @ Outcome::Failed(_), _) | (_, failed @ Outcome::Failed(_)) => failed,
        (Outcome::TimedOut, _) | (_, Outcome::TimedOut) => Outcome::TimedOut,
        (Outcome::NoData, _) | (_, Outcome::NoData) => Outcome::NoData,
        (Outcome::NxDomain, Outcome::NxDomain) => Outcome::NxDomain,
    }
}

/// The names of a search list tried in order: addresses, a failure or a timeout end the
/// search; NXDOMAIN and no data go on to the next name, and if every name ends so, the
/// search ends in no data if any name exists, else NXDOMAIN.
#[derive(Debug, Default)]
pub struct SearchOutcome {
    some_name_exists: bool,
}

impl SearchOutcome {
    /// Take the outcome of one name: `Some` ends the search with it.
    pub fn take(&mut self, outcome: Outcome) -> Option<Outcome> {
        match outcome {
            Outcome::NxDomain => None,
            Outcome::NoData => {
                self.some_name_exists = true;
                None
            }
            other => Some(other),
        }
    }

    /// The outcome once every name was tried.
    pub fn finish(self) -> Outcome {
        if self.some_name_exists {
            Outcome::NoData
        } else {
            Outcome::NxDomain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn plan(servers: usize, attempts: u32, per_try_ms: u64, first: usize) -> TryPlan {
        TryPlan {
            servers,
            attempts,
            per_try: MS * per_try_ms as u32,
            first,
        }
    }

    #[test]
    fn per_try_time_is_a_share_of_the_budget() {
        let secs = Duration::from_secs;
        // One server, two attempts, 5 s budget: 2.5 s each (resolv.conf says 5).
        let p = TryPlan::new(1, 2, secs(5), secs(5), 0);
        assert_eq!(p.per_try, Duration::from_millis(2500));
        // resolv.conf's timeout when it is shorter.
        assert_eq!(TryPlan::new(1, 2, secs(1), secs(5), 0).per_try, secs(1));
        // Never below the floor.
        assert_eq!(
            TryPlan::new(3, 5, secs(5), MS * 300, 0).per_try,
            MIN_TRY_TIMEOUT
        );
        // The first server wraps.
        assert_eq!(TryPlan::new(2, 1, secs(5), secs(5), 3).first, 1);
    }

    #[test]
    fn silent_servers_get_every_try_then_time_out() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(2, 2, 100, 1), t0);
        // Rounds over the servers from `first`: 1, 0, 1, 0, each after the last's time.
        assert_eq!(t.step(t0), Step::Send(1));
        assert_eq!(t.step(t0), Step::WaitUntil(t0 + MS * 100));
        assert_eq!(t.step(t0 + MS * 99), Step::WaitUntil(t0 + MS * 100));
        assert_eq!(t.step(t0 + MS * 100), Step::Send(0));
        assert_eq!(t.step(t0 + MS * 200), Step::Send(1));
        assert_eq!(t.step(t0 + MS * 300), Step::Send(0));
        assert_eq!(t.sent(), 4);
        // All four still in flight: the last one gets its full time.
        assert_eq!(t.step(t0 + MS * 300), Step::WaitUntil(t0 + MS * 400));
        assert_eq!(t.step(t0 + MS * 400), Step::TimedOut);
    }

    #[test]
    fn a_failed_try_sends_the_next_at_once() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(2, 1, 1000, 0), t0);
        assert_eq!(t.step(t0), Step::Send(0));
        t.failed(t0 + MS * 5, "server answered SERVFAIL".into());
        assert_eq!(t.step(t0 + MS * 5), Step::Send(1));
        // The last try fails too: nothing is in flight, the question has failed.
        t.failed(t0 + MS * 6, "server answered REFUSED".into());
        assert_eq!(
            t.step(t0 + MS * 6),
            Step::Failed("server answered REFUSED".into())
        );
    }

    #[test]
    fn a_failure_then_silence_reports_the_failure() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(2, 1, 100, 0), t0);
        assert_eq!(t.step(t0), Step::Send(0));
        t.failed(t0, "connection refused".into());
        assert_eq!(t.step(t0), Step::Send(1));
        assert_eq!(t.step(t0 + MS * 50), Step::WaitUntil(t0 + MS * 100));
        assert_eq!(
            t.step(t0 + MS * 100),
            Step::Failed("connection refused".into())
        );
    }

    #[test]
    fn a_failure_after_the_last_try_went_out_waits_for_the_others() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(1, 2, 100, 0), t0);
        assert_eq!(t.step(t0), Step::Send(0));
        assert_eq!(t.step(t0 + MS * 100), Step::Send(0));
        // The second try fails; the first may still answer until the second's time is up.
        t.failed(t0 + MS * 120, "malformed answer".into());
        assert_eq!(t.step(t0 + MS * 120), Step::WaitUntil(t0 + MS * 200));
    }

    fn found(ips: &[&str], ttl: u32) -> Outcome {
        Outcome::Found(ips.iter().map(|s| s.parse().unwrap()).collect(), ttl)
    }

    #[test]
    fn a_and_aaaa_combine() {
        use Outcome::*;
        let v4 = || found(&["192.0.2.1"], 300);
        let v6 = || found(&["2001:db8::1"], 60);
        assert_eq!(combine(v4(), None), v4());
        assert_eq!(
            combine(v4(), Some(v6())),
            found(&["192.0.2.1", "2001:db8::1"], 60)
        );
        assert_eq!(combine(NoData, Some(v6())), v6());
        assert_eq!(combine(v4(), Some(TimedOut)), v4());
        assert_eq!(combine(v4(), Some(Failed("x".into()))), v4());
        assert_eq!(
            combine(NoData, Some(Failed("x".into()))),
            Failed("x".into())
        );
        assert_eq!(combine(TimedOut, Some(NoData)), TimedOut);
        assert_eq!(combine(NxDomain, Some(NoData)), NoData);
        assert_eq!(combine(NxDomain, Some(NxDomain)), NxDomain);
    }

    #[test]
    fn search_goes_on_past_missing_names_only() {
        let mut s = SearchOutcome::default();
        assert_eq!(s.take(Outcome::NxDomain), None);
        assert_eq!(s.take(Outcome::NoData), None);
        assert_eq!(s.take(Outcome::NxDomain), None);
        assert_eq!(s.finish(), Outcome::NoData);
        let mut s = SearchOutcome::default();
        assert_eq!(s.take(Outcome::NxDomain), None);
        assert_eq!(s.finish(), Outcome::NxDomain);
        let mut s = SearchOutcome::default();
        assert_eq!(s.take(Outcome::TimedOut), Some(Outcome::TimedOut));
        let hit = found(&["192.0.2.9"], 5);
        assert_eq!(SearchOutcome::default().take(hit.clone()), Some(hit));
    }
}
