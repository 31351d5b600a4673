//! The stub resolver's decisions, sans IO (they take `now` and outcomes, and return what to
//! do): when each try of one question goes out and to which server ([`Tries`]), how long a
//! server usually takes ([`Rtt`]), how many queries a server gets at once ([`Window`]), how
//! the A and AAAA outcomes of one name combine ([`combine`]), and how the names of a search
//! list end in one outcome ([`SearchOutcome`]).
//!
//! Tries: rounds over the servers, starting at `first` (which rotates with `options
//! rotate`); the question is given up `attempts x servers x per_try` after it started
//! (`per_try`: resolv.conf's timeout, or less to fit the lookup's bound), as the C library
//! would, and fails once `attempts x servers` tries failed outright (a server error,
//! garbage, an unreachable server: each sends the next try at once). Unlike the C library,
//! the next try goes out as soon as the answer is overdue, judged from the server's
//! measured round trips (TCP's retransmission timeout, RFC 6298), the wait doubling each
//! round and never longer than `per_try`; up to [`MAX_TRIES`] fit in the question's time.
//! A query lost in a burst then costs a fraction of a second, not a whole `per_try`, and a
//! burst that loses two tries in a row does not end the lookup. A try that gets no answer
//! is not abandoned: the first answer of any try wins.
//!
//! Window: a server (a local dnsmasq, say) drops what overflows its socket buffer, so the
//! queries in flight to it are bounded like TCP's congestion window: [`INITIAL_WINDOW`] at
//! first, one more per answer while below the threshold (slow start), one more per window
//! of answers above it, halved (at most once per round trip) when an answer is overdue.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Shortest wait for one try, however many tries share the lookup's time.
pub const MIN_TRY_TIMEOUT: Duration = Duration::from_millis(100);
/// A server's retransmission timeout before any of its answers was timed.
pub const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Shortest retransmission timeout, however fast the server.
pub const MIN_RTO: Duration = Duration::from_millis(100);
/// Queries in flight to a server at first (per worker).
pub const INITIAL_WINDOW: usize = 32;
/// Queries in flight to a server after any number of losses, at least.
pub const MIN_WINDOW: usize = 4;
/// Largest backoff shift (the wait is capped by `per_try` long before).
const MAX_BACKOFF_SHIFT: usize = 16;
/// Tries of one question at most (however many would fit in its time).
pub const MAX_TRIES: usize = 8;

/// How one question is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TryPlan {
    pub servers: usize,
    pub attempts: u32,
    /// Wait for one try at most before the next goes out.
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
    /// Send a try to this server (an index into the plan's servers), then ask again; its
    /// answer is overdue after the given wait.
    Send(usize, Duration),
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
    failures: usize,
    /// When the next try goes out.
    next_at: Instant,
    /// When the question times out.
    give_up_at: Instant,
    /// Why the last failed try failed.
    failure: Option<String>,
}

impl Tries {
    pub fn new(plan: TryPlan, now: Instant) -> Tries {
        let total = u32::try_from(plan.total()).unwrap_or(u32::MAX);
        Tries {
            plan,
            sent: 0,
            in_flight: 0,
            failures: 0,
            next_at: now,
            give_up_at: now + plan.per_try.saturating_mul(total),
            failure: None,
        }
    }

    /// The next step at `now`; `rto(server)`: that server's retransmission timeout.
    pub fn step(&mut self, now: Instant, rto: impl Fn(usize) -> Duration) -> Step {
        let more = self.sent < MAX_TRIES
            && self.failures < self.plan.total()
            && self.next_at < self.give_up_at;
        if more && now >= self.next_at {
            let server = (self.plan.first + self.sent) % self.plan.servers;
            let round = self.sent / self.plan.servers;
            let wait = rto(server)
                .saturating_mul(1 << round.min(MAX_BACKOFF_SHIFT))
                .min(self.plan.per_try);
            self.sent += 1;
            self.in_flight += 1;
            self.next_at = now + wait;
            return Step::Send(server, wait);
        }
        if more {
            return Step::WaitUntil(self.next_at);
        }
        if self.in_flight > 0 && now < self.give_up_at {
            return Step::WaitUntil(self.give_up_at);
        }
        match &self.failure {
            Some(why) => Step::Failed(why.clone()),
            None => Step::TimedOut,
        }
    }

    /// A try in flight failed outright: the next one may go out now.
    pub fn failed(&mut self, now: Instant, why: String) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.failures += 1;
        self.failure = Some(why);
        self.next_at = now;
    }

    /// Tries sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}

/// Round trips to one server (RFC 6298's smoothed estimate) and the retransmission
/// timeout they give.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    /// One answer came `rtt` after its query (each try has its own id, so every sample is
    /// unambiguous).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
    }

    /// When an answer is overdue: [`INITIAL_RTO`] before any sample, else SRTT + 4 RTTVAR,
    /// at least [`MIN_RTO`].
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).max(MIN_RTO),
        }
    }
}

/// How many queries one server gets at once (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    limit: f64,
    threshold: f64,
    max: f64,
    /// When the window was last halved: losses of queries sent before it are the same
    /// congestion.
    cut_at: Option<Instant>,
}

impl Window {
    /// A window of [`INITIAL_WINDOW`] that may grow to `max`.
    pub fn new(max: usize) -> Window {
        let max = max.max(MIN_WINDOW) as f64;
        Window {
            limit: (INITIAL_WINDOW as f64).min(max),
            threshold: max,
            max,
            cut_at: None,
        }
    }

    /// Queries allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// An answer came with `in_flight` queries (this one included) out: the window grows
    /// if it was in use (at least half full).
    pub fn answered(&mut self, in_flight: usize) {
        if (in_flight as f64) * 2.0 < self.limit {
            return;
        }
        self.limit += if self.limit < self.threshold {
            1.0
        } else {
            1.0 / self.limit
        };
        self.limit = self.limit.min(self.max);
    }

    /// A query sent at `sent_at` is overdue at `now`: the window halves, once for every
    /// loss of the same burst.
    pub fn lost(&mut self, sent_at: Instant, now: Instant) {
        if self.cut_at.is_some_and(|cut| sent_at <= cut) {
            return;
        }
        self.threshold = (self.limit / 2.0).max(MIN_WINDOW as f64);
        self.limit = self.threshold;
        self.cut_at = Some(now);
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

    /// A server whose answers are overdue after `ms`.
    fn rto(ms: u64) -> impl Fn(usize) -> Duration {
        move |_| Duration::from_millis(ms)
    }

    #[test]
    fn silent_servers_get_every_try_then_time_out() {
        let t0 = Instant::now();
        // Slow servers (their answers overdue only after the per-try time): one try per
        // per-try time, as the C library does.
        let mut t = Tries::new(plan(2, 2, 100, 1), t0);
        // Rounds over the servers from `first`: 1, 0, 1, 0, each after the last's time.
        assert_eq!(t.step(t0, rto(500)), Step::Send(1, MS * 100));
        assert_eq!(t.step(t0, rto(500)), Step::WaitUntil(t0 + MS * 100));
        assert_eq!(
            t.step(t0 + MS * 99, rto(500)),
            Step::WaitUntil(t0 + MS * 100)
        );
        assert_eq!(t.step(t0 + MS * 100, rto(500)), Step::Send(0, MS * 100));
        assert_eq!(t.step(t0 + MS * 200, rto(500)), Step::Send(1, MS * 100));
        assert_eq!(t.step(t0 + MS * 300, rto(500)), Step::Send(0, MS * 100));
        assert_eq!(t.sent(), 4);
        // All four still in flight: the question gives up after 4 x 100 ms.
        assert_eq!(
            t.step(t0 + MS * 300, rto(500)),
            Step::WaitUntil(t0 + MS * 400)
        );
        assert_eq!(t.step(t0 + MS * 400, rto(500)), Step::TimedOut);
    }

    #[test]
    fn fast_servers_get_the_next_try_once_overdue_doubling_each_round() {
        let t0 = Instant::now();
        // Three attempts of 1 s: the question has 3 s.
        let mut t = Tries::new(plan(1, 3, 1000, 0), t0);
        assert_eq!(t.step(t0, rto(100)), Step::Send(0, MS * 100));
        assert_eq!(t.step(t0, rto(100)), Step::WaitUntil(t0 + MS * 100));
        let mut at = MS * 100;
        for wait in [200, 400, 800, 1000, 1000] {
            // The wait doubles, never past the per-try time.
            assert_eq!(t.step(t0 + at, rto(100)), Step::Send(0, MS * wait));
            at += MS * wait;
        }
        // The next would go out at 3.5 s, after the question's time: no more tries.
        assert_eq!(t.sent(), 6);
        assert_eq!(at, MS * 3500);
        assert_eq!(
            t.step(t0 + MS * 2600, rto(100)),
            Step::WaitUntil(t0 + MS * 3000)
        );
        assert_eq!(t.step(t0 + MS * 3000, rto(100)), Step::TimedOut);
    }

    #[test]
    fn tries_stop_at_the_maximum() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(1, 5, 30_000, 0), t0);
        let mut at = Duration::ZERO;
        while let Step::Send(_, wait) = t.step(t0 + at, rto(100)) {
            at += wait;
        }
        assert_eq!(t.sent(), MAX_TRIES);
    }

    #[test]
    fn a_failed_try_sends_the_next_at_once() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(2, 1, 1000, 0), t0);
        assert_eq!(t.step(t0, rto(1000)), Step::Send(0, MS * 1000));
        t.failed(t0 + MS * 5, "server answered SERVFAIL".into());
        assert_eq!(t.step(t0 + MS * 5, rto(1000)), Step::Send(1, MS * 1000));
        // The last try fails too: nothing is in flight, the question has failed.
        t.failed(t0 + MS * 6, "server answered REFUSED".into());
        assert_eq!(
            t.step(t0 + MS * 6, rto(1000)),
            Step::Failed("server answered REFUSED".into())
        );
    }

    #[test]
    fn a_failure_then_silence_reports_the_failure() {
        let t0 = Instant::now();
        // Two servers, one attempt, 100 ms each: the question has 200 ms.
        let mut t = Tries::new(plan(2, 1, 100, 0), t0);
        assert_eq!(t.step(t0, rto(100)), Step::Send(0, MS * 100));
        t.failed(t0, "connection refused".into());
        assert_eq!(t.step(t0, rto(100)), Step::Send(1, MS * 100));
        assert_eq!(
            t.step(t0 + MS * 50, rto(100)),
            Step::WaitUntil(t0 + MS * 100)
        );
        // Server 1 is silent: the next round goes out, and then time is up.
        assert_eq!(t.step(t0 + MS * 100, rto(100)), Step::Send(0, MS * 100));
        assert_eq!(
            t.step(t0 + MS * 150, rto(100)),
            Step::WaitUntil(t0 + MS * 200)
        );
        assert_eq!(
            t.step(t0 + MS * 200, rto(100)),
            Step::Failed("connection refused".into())
        );
    }

    #[test]
    fn failures_end_the_question_after_attempts_times_servers() {
        let t0 = Instant::now();
        let mut t = Tries::new(plan(1, 2, 1000, 0), t0);
        assert_eq!(t.step(t0, rto(100)), Step::Send(0, MS * 100));
        assert_eq!(t.step(t0 + MS * 100, rto(100)), Step::Send(0, MS * 200));
        // The second try fails: there is time, the next goes out at once.
        t.failed(t0 + MS * 120, "malformed answer".into());
        assert_eq!(t.step(t0 + MS * 120, rto(100)), Step::Send(0, MS * 400));
        // A second failure: enough of them; the first try may still answer in time.
        t.failed(t0 + MS * 130, "malformed answer".into());
        assert_eq!(
            t.step(t0 + MS * 130, rto(100)),
            Step::WaitUntil(t0 + MS * 2000)
        );
        assert_eq!(
            t.step(t0 + MS * 2000, rto(100)),
            Step::Failed("malformed answer".into())
        );
    }

    #[test]
    fn rto_follows_the_measured_round_trips() {
        let mut r = Rtt::default();
        assert_eq!(r.rto(), INITIAL_RTO);
        r.sample(MS * 40);
        // 40 + 4 x 20.
        assert_eq!(r.rto(), MS * 120);
        for _ in 0..50 {
            r.sample(MS);
        }
        assert_eq!(r.rto(), MIN_RTO, "a fast server still gets the floor");
        for _ in 0..50 {
            r.sample(MS * 400);
        }
        assert!(r.rto() >= MS * 400, "{:?}", r.rto());
    }

    #[test]
    fn the_window_starts_small_grows_with_answers_and_halves_on_a_loss() {
        let t0 = Instant::now();
        let mut w = Window::new(1024);
        assert_eq!(w.limit(), INITIAL_WINDOW);
        // Not in use (under half full): no growth.
        w.answered(3);
        assert_eq!(w.limit(), INITIAL_WINDOW);
        // Slow start: one more per answer.
        for _ in 0..32 {
            let full = w.limit();
            w.answered(full);
        }
        assert_eq!(w.limit(), 64);
        // A loss halves it; more losses of the same burst do not.
        w.lost(t0, t0 + MS * 100);
        assert_eq!(w.limit(), 32);
        w.lost(t0 + MS * 50, t0 + MS * 101);
        assert_eq!(w.limit(), 32);
        // Above the threshold: one more per window of answers.
        for _ in 0..40 {
            w.answered(32);
        }
        assert_eq!(w.limit(), 33);
        // A loss of a later query halves it again, never below the floor.
        for i in 0..10 {
            let at = t0 + MS * (200 + 10 * i);
            w.lost(at, at);
        }
        assert_eq!(w.limit(), MIN_WINDOW);
        // Never above the maximum.
        let mut small = Window::new(8);
        assert_eq!(small.limit(), 8);
        small.answered(8);
        assert_eq!(small.limit(), 8);
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
