//! Sans-IO per-host scheduling for one worker: which job runs next, and when, under a
//! global slot budget, a per-host limit and a per-host least interval between request
//! starts (politeness).
//!
//! A *slot* is one connection's worth of work. A slot started for a host keeps taking that
//! host's queued jobs ([`Scheduler::continue_slot`]) so its keep-alive connection is reused;
//! when the host's queue is empty the slot is released and another host may start one
//! ([`Scheduler::start_next_if`]). A host with no slot starts one before any host gets a
//! second (breadth first, as polite crawlers go): an extra slot costs the host a new
//! connection, and other hosts wait. With a delay (`--host-delay`, or a robots.txt
//! Crawl-delay set with [`Scheduler::set_delay`]), every job handed out for a host gets a
//! start time at least the delay after the previous one's: a host is not started before
//! its time (it waits in a time-ordered set, and [`Scheduler::next_wake`] tells the worker
//! when to look again), and a slot that would have to wait longer than
//! [`MAX_SLOT_WAIT`] for its next job is released instead of holding its connection idle.
//! No clocks or I/O here: callers pass `now`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Longest a slot waits for its host's next start time while keeping its connection;
/// beyond that the slot is released and the host waits without a slot.
pub(crate) const MAX_SLOT_WAIT: Duration = Duration::from_secs(2);

struct HostState<J> {
    queue: VecDeque<J>,
    active: usize,
    /// Listed in `Scheduler::ready` (possibly stale: validated when popped).
    in_ready: bool,
    /// Least interval between request starts on this host (the scheduler's default unless
    /// set).
    delay: Option<Duration>,
    /// The earliest start of the next job handed out (politeness).
    next_start: Option<Instant>,
    /// Listed in `Scheduler::waiting` under this time.
    waiting_since: Option<Instant>,
    /// Its server's address is at its cap (`--per-ip`): no slot starts until unblocked.
    blocked: bool,
}

impl<J> HostState<J> {
    fn new() -> HostState<J> {
        HostState {
            // Most hosts of a broad list have one job: room for exactly one (a default
            // VecDeque grows to four at the first push, 3/4 of it never used).
            queue: VecDeque::with_capacity(1),
            active: 0,
            in_ready: false,
            delay: None,
            next_start: None,
            waiting_since: None,
            blocked: false,
        }
    }
}

/// A job handed out, with when it may start (`now` or later, for politeness).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Handout<K, J> {
    pub key: K,
    pub job: J,
    pub start_at: Instant,
}

/// The maps keyed by host (`scheme://host:port`) that every URL looks up a few times: the
/// scheduler's, the breakers', politeness clocks, the spill's, the idle pool's. foldhash
/// rather than SipHash (several hundred instructions per URL less). HashDoS: the keys come from the
/// user's own lists, and with `--follow` at most one page-chosen host per listed URL, so an
/// attacker adds few keys; foldhash's `RandomState` is seeded at random per process and per
/// map, and no hash value or map order is observable from outside.
pub(crate) type HostMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Per-host queues with a global budget of concurrent slots.
pub(crate) struct Scheduler<K, J> {
    hosts: HostMap<K, HostState<J>>,
    /// Hosts with no slot that could start one, in arrival order.
    ready: VecDeque<K>,
    /// Hosts with a slot that could start another, in arrival order: served only when
    /// `ready` has no host that can start.
    extra: VecDeque<K>,
    /// Hosts with work whose next start is in the future, by that time.
    waiting: BTreeSet<(Instant, K)>,
    budget: usize,
    per_host: usize,
    /// Least interval between request starts on one host, unless a host has its own.
    delay: Duration,
    active: usize,
    queued: usize,
}

impl<K: Hash + Eq + Ord + Clone, J> Scheduler<K, J> {
    /// `budget`: slots at once (at least 1); `per_host`: slots per host (at least 1);
    /// `delay`: least interval between request starts on one host.
    pub(crate) fn new(budget: usize, per_host: usize, delay: Duration) -> Self {
        Scheduler {
            hosts: HostMap::default(),
            ready: VecDeque::new(),
            extra: VecDeque::new(),
            waiting: BTreeSet::new(),
            budget: budget.max(1),
            per_host: per_host.max(1),
            delay,
            active: 0,
            queued: 0,
        }
    }

    /// Queue a job for `key`.
    pub(crate) fn push(&mut self, key: K, job: J) {
        self.queued += 1;
        // No clone of the key for a host already known (most pushes).
        if !self.hosts.contains_key(&key) {
            self.hosts.insert(key.clone(), HostState::new());
        }
        let host = self.hosts.get_mut(&key).expect("just inserted");
        host.queue.push_back(job);
        offer(
            host,
            key,
            [&mut self.ready, &mut self.extra],
            self.per_host,
            self.delay,
        );
    }

    /// Set `key`'s own least interval between request starts (a robots.txt Crawl-delay);
    /// the scheduler's default applies when it is shorter.
    pub(crate) fn set_delay(&mut self, key: &K, delay: Duration) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.delay = Some(delay.max(self.delay));
        }
    }

    /// Start a new slot if the budget allows, some host has work, room and its start time
    /// has come, and `admit` (asked at most once, only then) agrees: a budget shared with
    /// other schedulers is taken only for a slot that really starts.
    pub(crate) fn start_next_if(
        &mut self,
        now: Instant,
        admit: impl FnOnce() -> bool,
    ) -> Option<Handout<K, J>> {
        self.wake(now);
        if self.active >= self.budget {
            return None;
        }
        let first = self.front_startable(now)?;
        if !admit() {
            return None;
        }
        let key = if first {
            &mut self.ready
        } else {
            &mut self.extra
        }
        .pop_front()
        .expect("checked startable");
        let (per_host, default_delay) = (self.per_host, self.delay);
        let host = self.hosts.get_mut(&key).expect("checked above");
        host.in_ready = false;
        let job = host.queue.pop_front().expect("checked above");
        let start_at = take_start(host, default_delay, now);
        host.active += 1;
        self.active += 1;
        self.queued -= 1;
        offer(
            host,
            key.clone(),
            [&mut self.ready, &mut self.extra],
            per_host,
            default_delay,
        );
        Some(Handout { key, job, start_at })
    }

    /// Whether a host can start a slot now: `Some(true)` at the front of `ready`,
    /// `Some(false)` at the front of `extra` (`ready` has none), `None` for neither. Stale
    /// entries before it are dropped, and hosts whose start time is ahead go to wait.
    fn front_startable(&mut self, now: Instant) -> Option<bool> {
        for first in [true, false] {
            loop {
                let queue = if first {
                    &mut self.ready
                } else {
                    &mut self.extra
                };
                let Some(key) = queue.front() else {
                    break;
                };
                match self.hosts.get_mut(key) {
                    Some(h) if wants_slot(h, self.per_host, self.delay) => {
                        if h.next_start.is_none_or(|t| t <= now) {
                            return Some(first);
                        }
                        // Not yet: wait in time order instead.
                        let key = queue.pop_front().expect("front exists");
                        self.wait(key, now);
                    }
                    Some(h) => {
                        h.in_ready = false;
                        queue.pop_front();
                    }
                    None => {
                        queue.pop_front();
                    }
                }
            }
        }
        None
    }

    /// The slot for `key` finished a job: its next job on the same host, with its start
    /// time, or `None` when the slot is released (the host has nothing queued, or its next
    /// start is more than [`MAX_SLOT_WAIT`] away and it waits without a slot).
    pub(crate) fn continue_slot(&mut self, key: &K, now: Instant) -> Option<(J, Instant)> {
        let default_delay = self.delay;
        let host = self
            .hosts
            .get_mut(key)
            .expect("a running slot's host exists");
        let wait_too_long = host
            .next_start
            .is_some_and(|t| t.saturating_duration_since(now) > MAX_SLOT_WAIT);
        if !host.queue.is_empty() && !wait_too_long && !host.blocked {
            let job = host.queue.pop_front().expect("checked non-empty");
            self.queued -= 1;
            return Some((job, take_start(host, default_delay, now)));
        }
        host.active -= 1;
        self.active -= 1;
        if !host.queue.is_empty() {
            // Work left, but not for a while: wait for the time without holding the slot.
            if !host.blocked && !host.in_ready && host.waiting_since.is_none() {
                self.wait(key.clone(), now);
            }
            return None;
        }
        // The queue is empty: the host is forgotten with its last slot unless its next
        // start is still ahead (a new job must respect it).
        if host.active == 0 && host.next_start.is_none_or(|t| t <= now) {
            self.hosts.remove(key);
        }
        None
    }

    /// Put a job handed out for `key` back at the front of its queue (it could not start).
    pub(crate) fn push_front(&mut self, key: &K, job: J) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.queue.push_front(job);
            self.queued += 1;
        }
    }

    /// No new slot starts for `key`, and its running slots end at their next
    /// [`Scheduler::continue_slot`], until [`Scheduler::unblock`].
    pub(crate) fn block(&mut self, key: &K) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.blocked = true;
            h.in_ready = false;
        }
    }

    /// `key` may start slots again.
    pub(crate) fn unblock(&mut self, key: &K) {
        let (per_host, delay) = (self.per_host, self.delay);
        let Some(h) = self.hosts.get_mut(key) else {
            return;
        };
        h.blocked = false;
        offer(
            h,
            key.clone(),
            [&mut self.ready, &mut self.extra],
            per_host,
            delay,
        );
    }

    /// Drop every queued job (running slots are untouched and still end through
    /// [`Scheduler::continue_slot`]); returns how many were dropped.
    pub(crate) fn abandon_queued(&mut self) -> usize {
        let dropped = self.queued;
        self.hosts.retain(|_, h| {
            h.queue.clear();
            h.in_ready = false;
            h.waiting_since = None;
            h.active > 0
        });
        self.ready.clear();
        self.extra.clear();
        self.waiting.clear();
        self.queued = 0;
        dropped
    }

    /// Whether `key` has jobs waiting (for a slot of it: whether its connection will be
    /// wanted again soon).
    pub(crate) fn has_queued<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.hosts.get(key).is_some_and(|h| !h.queue.is_empty())
    }

    /// When a waiting host's start time comes (the worker looks again then).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.waiting.first().map(|(t, _)| *t)
    }

    /// Forget hosts with nothing queued or running whose next start has passed (kept only
    /// to space a late job's start).
    pub(crate) fn prune(&mut self, now: Instant) {
        self.hosts.retain(|_, h| {
            h.active > 0 || !h.queue.is_empty() || h.next_start.is_some_and(|t| t > now)
        });
    }

    /// Slots running.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Jobs of `key` waiting for a slot.
    pub(crate) fn queued_for<Q>(&self, key: &Q) -> usize
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.hosts.get(key).map_or(0, |h| h.queue.len())
    }

    /// Jobs waiting for a slot.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Nothing running and nothing queued.
    pub(crate) fn is_idle(&self) -> bool {
        self.active == 0 && self.queued == 0
    }

    /// List `key` as waiting until its next start.
    fn wait(&mut self, key: K, now: Instant) {
        let Some(h) = self.hosts.get_mut(&key) else {
            return;
        };
        h.in_ready = false;
        let at = h.next_start.unwrap_or(now).max(now);
        h.waiting_since = Some(at);
        self.waiting.insert((at, key));
    }

    /// Move hosts whose start time has come back to `ready`.
    fn wake(&mut self, now: Instant) {
        while let Some((at, _)) = self.waiting.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.waiting.pop_first().expect("first exists");
            let Some(h) = self.hosts.get_mut(&key) else {
                continue;
            };
            h.waiting_since = None;
            offer(
                h,
                key,
                [&mut self.ready, &mut self.extra],
                self.per_host,
                self.delay,
            );
        }
    }
}

/// List `key` (its state `host`) as able to start a slot, unless it is listed or waiting
/// for its time already, or could not use one: in `ready` (the first of the two) with no
/// slot yet, in `extra` (the second) with one.
fn offer<K, J>(
    host: &mut HostState<J>,
    key: K,
    [ready, extra]: [&mut VecDeque<K>; 2],
    per_host: usize,
    default_delay: Duration,
) {
    if host.in_ready || host.waiting_since.is_some() || !wants_slot(host, per_host, default_delay) {
        return;
    }
    host.in_ready = true;
    if host.active == 0 {
        ready.push_back(key);
    } else {
        extra.push_back(key);
    }
}

/// Whether `host` could use one more slot: it has jobs queued, is not blocked and is below
/// its slot limit.
fn wants_slot<J>(host: &HostState<J>, per_host: usize, default_delay: Duration) -> bool {
    !host.blocked
        && !host.queue.is_empty()
        && host.active < slots_for(host, per_host, default_delay)
}

/// Slots `host` may have at once: one when it has a delay (a polite crawler keeps one
/// connection to such a host, and one connection keeps the requests exactly spaced as the
/// server sees them), `per_host` otherwise.
fn slots_for<J>(host: &HostState<J>, per_host: usize, default_delay: Duration) -> usize {
    if host.delay.unwrap_or(default_delay).is_zero() {
        per_host
    } else {
        1
    }
}

/// The start time of the job being handed out for `host`, and the host's next one after it.
fn take_start<J>(host: &mut HostState<J>, default_delay: Duration, now: Instant) -> Instant {
    let delay = host.delay.unwrap_or(default_delay);
    let start = host.next_start.map_or(now, |t| t.max(now));
    host.next_start = (!delay.is_zero()).then(|| start + delay);
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// `start_next_if` at `t0` with admission granted.
    trait Short<K, J> {
        fn start_next(&mut self) -> Option<(K, J)>;
        fn cont(&mut self, key: &K) -> Option<J>;
    }

    impl<K: Hash + Eq + Ord + Clone, J> Short<K, J> for Scheduler<K, J> {
        fn start_next(&mut self) -> Option<(K, J)> {
            self.start_next_if(t0(), || true).map(|h| (h.key, h.job))
        }
        fn cont(&mut self, key: &K) -> Option<J> {
            self.continue_slot(key, t0()).map(|(j, _)| j)
        }
    }

    fn drain_starts(s: &mut Scheduler<&'static str, u32>) -> Vec<(&'static str, u32)> {
        std::iter::from_fn(|| s.start_next()).collect()
    }

    #[test]
    fn admission_is_asked_only_for_a_slot_that_starts() {
        let mut s = Scheduler::new(4, 1, Duration::ZERO);
        let mut asked = 0;
        assert_eq!(
            s.start_next_if(t0(), || {
                asked += 1;
                true
            })
            .map(|h| (h.key, h.job)),
            None
        );
        assert_eq!(asked, 0, "nothing queued: not asked");
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(
            s.start_next_if(t0(), || false).map(|h| (h.key, h.job)),
            None
        );
        assert_eq!(s.queued(), 2, "a refused start loses nothing");
        assert_eq!(
            s.start_next_if(t0(), || true).map(|h| (h.key, h.job)),
            Some(("a", 1))
        );
        // "a" is at its per-host limit: its stale ready entry is skipped without asking.
        assert_eq!(
            s.start_next_if(t0(), || {
                asked += 1;
                true
            })
            .map(|h| (h.key, h.job)),
            None
        );
        assert_eq!(asked, 0);
        assert_eq!(s.cont(&"a"), Some(2));
        assert_eq!(s.cont(&"a"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn a_host_with_one_job_holds_room_for_one() {
        let mut s: Scheduler<&str, u32> = Scheduler::new(1, 1, Duration::ZERO);
        s.push("a", 1);
        assert_eq!(s.hosts["a"].queue.capacity(), 1);
        s.push("a", 2);
        assert!(s.hosts["a"].queue.capacity() >= 2);
        assert_eq!(drain_starts(&mut s), vec![("a", 1)]);
        assert_eq!(s.cont(&"a"), Some(2));
    }

    #[test]
    fn has_queued_tells_whether_a_host_has_work_waiting() {
        let mut s = Scheduler::new(4, 1, Duration::ZERO);
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(s.start_next(), Some(("a", 1)));
        assert!(s.has_queued(&"a"));
        assert!(!s.has_queued(&"b"));
        assert_eq!(s.cont(&"a"), Some(2));
        assert!(!s.has_queued(&"a"));
    }

    #[test]
    fn per_host_limit_and_budget() {
        let mut s = Scheduler::new(3, 2, Duration::ZERO);
        for i in 0..5 {
            s.push("a", i);
        }
        s.push("b", 10);
        // a gets 2 slots (per-host), b 1 (budget 3).
        let started = drain_starts(&mut s);
        assert_eq!(started, vec![("a", 0), ("b", 10), ("a", 1)]);
        assert_eq!(s.active(), 3);
        assert_eq!(s.queued(), 3);
        assert!(s.start_next().is_none());
    }

    #[test]
    fn slot_continues_on_same_host_then_releases() {
        let mut s = Scheduler::new(1, 1, Duration::ZERO);
        s.push("a", 1);
        s.push("a", 2);
        s.push("b", 3);
        assert_eq!(s.start_next(), Some(("a", 1)));
        assert_eq!(s.cont(&"a"), Some(2));
        assert_eq!(s.cont(&"a"), None);
        assert_eq!(s.active(), 0);
        assert_eq!(s.start_next(), Some(("b", 3)));
        assert_eq!(s.cont(&"b"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn host_regains_readiness_after_release() {
        let mut s = Scheduler::new(4, 1, Duration::ZERO);
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(s.start_next(), Some(("a", 1)));
        // per-host 1: the second job waits for the running slot.
        assert!(s.start_next().is_none());
        assert_eq!(s.cont(&"a"), Some(2));
        s.push("a", 3);
        assert!(s.start_next().is_none());
        assert_eq!(s.cont(&"a"), Some(3));
        assert_eq!(s.cont(&"a"), None);
        s.push("a", 4);
        assert_eq!(s.start_next(), Some(("a", 4)));
    }

    #[test]
    fn abandon_keeps_running_slots_accountable() {
        let mut s = Scheduler::new(2, 1, Duration::ZERO);
        for i in 0..5 {
            s.push("a", i);
            s.push("b", 10 + i);
        }
        assert_eq!(s.start_next(), Some(("a", 0)));
        assert_eq!(s.abandon_queued(), 9);
        assert!(s.start_next().is_none());
        assert!(!s.is_idle());
        assert_eq!(s.cont(&"a"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn every_job_runs_exactly_once() {
        let mut s = Scheduler::new(7, 3, Duration::ZERO);
        let mut seen = Vec::new();
        let mut running: Vec<&'static str> = Vec::new();
        let hosts = ["a", "b", "c", "d"];
        for i in 0..200u32 {
            s.push(hosts[(i * 7 % 4) as usize], i);
            if i % 3 == 0 {
                while let Some((k, j)) = s.start_next() {
                    seen.push(j);
                    running.push(k);
                }
                if let Some(k) = running.pop() {
                    if let Some(j) = s.cont(&k) {
                        seen.push(j);
                        running.push(k);
                    }
                }
            }
            assert!(s.active() <= 7);
        }
        while !s.is_idle() {
            while let Some((k, j)) = s.start_next() {
                seen.push(j);
                running.push(k);
            }
            let k = running.pop().expect("work remains so a slot runs");
            if let Some(j) = s.cont(&k) {
                seen.push(j);
                running.push(k);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_host_delay_spaces_every_start_on_one_slot_per_host() {
        let d = Duration::from_millis(200);
        let mut s = Scheduler::new(8, 4, d);
        for i in 0..4 {
            s.push("a", i);
        }
        s.push("b", 10);
        let now = t0();
        let h = s.start_next_if(now, || true).unwrap();
        assert_eq!((h.key, h.job, h.start_at), ("a", 0, now));
        // "a" gets no second slot (one connection per host with a delay); "b" starts.
        let h = s.start_next_if(now, || true).unwrap();
        assert_eq!((h.key, h.start_at), ("b", now));
        assert!(s.start_next_if(now + d * 10, || true).is_none());
        // The running slot gets the next jobs, each one delay after the one before.
        let (job, at) = s
            .continue_slot(&"a", now + Duration::from_millis(50))
            .unwrap();
        assert_eq!((job, at), (1, now + d));
        let (job, at) = s.continue_slot(&"a", now + d).unwrap();
        assert_eq!((job, at), (2, now + d * 2));
        assert_eq!(s.continue_slot(&"b", now).map(|(j, _)| j), None);
        // Without a delay, the per-host limit is the slots a host may have.
        let mut s = Scheduler::new(8, 3, Duration::ZERO);
        for i in 0..4 {
            s.push("a", i);
        }
        let started = std::iter::from_fn(|| s.start_next_if(now, || true)).count();
        assert_eq!(started, 3);
    }

    #[test]
    fn every_waiting_host_gets_a_slot_before_any_host_gets_a_second() {
        let mut s = Scheduler::new(3, 6, Duration::ZERO);
        for i in 0..10 {
            s.push("busy", i);
        }
        s.push("b", 100);
        s.push("c", 200);
        s.push("d", 300);
        // "busy" arrived first and has the longest queue, yet its second slot waits until
        // every host without one has started.
        assert_eq!(
            drain_starts(&mut s),
            vec![("busy", 0), ("b", 100), ("c", 200)]
        );
        assert_eq!(s.cont(&"b"), None);
        assert_eq!(drain_starts(&mut s), vec![("d", 300)]);
        assert_eq!(s.cont(&"c"), None);
        assert_eq!(drain_starts(&mut s), vec![("busy", 1)]);
        // A host that gets a job while it has no slot goes before the extra ones again.
        s.push("b", 101);
        assert_eq!(s.cont(&"d"), None);
        assert_eq!(drain_starts(&mut s), vec![("b", 101)]);
    }

    #[test]
    fn a_long_delay_releases_the_slot_and_the_host_waits_without_one() {
        let d = MAX_SLOT_WAIT * 3;
        let mut s = Scheduler::new(4, 1, Duration::ZERO);
        s.push("slow", 1);
        s.push("slow", 2);
        let now = t0();
        let h = s.start_next_if(now, || true).unwrap();
        s.set_delay(&"slow", d);
        // `set_delay` applies from the next handout on.
        let (job, at) = s.continue_slot(&"slow", now).unwrap();
        assert_eq!((h.job, job, at), (1, 2, now));
        s.push("slow", 3);
        // Its next start is `d` away: the slot is released, the host waits.
        assert_eq!(s.continue_slot(&"slow", now), None);
        assert_eq!(s.active(), 0);
        assert!(!s.is_idle(), "job 3 still queued");
        assert_eq!(s.next_wake(), Some(now + d));
        assert!(s
            .start_next_if(now + d - Duration::from_millis(1), || true)
            .is_none());
        let h = s.start_next_if(now + d, || true).unwrap();
        assert_eq!((h.job, h.start_at), (3, now + d));
        assert_eq!(s.continue_slot(&"slow", now + d), None);
        assert!(s.is_idle());
    }

    #[test]
    fn a_late_job_still_waits_for_the_interval_after_the_host_went_quiet() {
        let d = Duration::from_millis(500);
        let mut s = Scheduler::new(4, 1, d);
        s.push("a", 1);
        let now = t0();
        assert!(s.start_next_if(now, || true).is_some());
        assert_eq!(s.continue_slot(&"a", now), None);
        // The host entry is kept while its next start is ahead, so a new job respects it.
        s.push("a", 2);
        assert!(s
            .start_next_if(now + Duration::from_millis(100), || true)
            .is_none());
        let h = s.start_next_if(now + d, || true).unwrap();
        assert_eq!((h.job, h.start_at), (2, now + d));
        assert_eq!(s.continue_slot(&"a", now + d), None);
        s.prune(now + d * 3);
        assert!(s.hosts.is_empty());
    }

    #[test]
    fn a_blocked_host_starts_nothing_until_unblocked_and_keeps_its_job_first() {
        let mut s = Scheduler::new(4, 2, Duration::ZERO);
        s.push("ip", 1);
        s.push("ip", 2);
        s.push("other", 9);
        let now = t0();
        let h = s.start_next_if(now, || true).unwrap();
        assert_eq!((h.key, h.job), ("ip", 1));
        // Its address was at the cap: the job goes back first, the host is blocked.
        s.push_front(&"ip", h.job);
        s.block(&"ip");
        assert_eq!(s.continue_slot(&"ip", now), None, "the slot is released");
        assert_eq!(s.start_next(), Some(("other", 9)));
        assert_eq!(s.start_next(), None, "blocked");
        s.push("ip", 3);
        assert_eq!(s.start_next(), None, "still blocked after a push");
        s.unblock(&"ip");
        assert_eq!(s.start_next(), Some(("ip", 1)));
        assert_eq!(s.cont(&"ip"), Some(2));
        assert_eq!(s.cont(&"ip"), Some(3));
        assert_eq!(s.cont(&"ip"), None);
        assert_eq!(s.cont(&"other"), None);
        assert!(s.is_idle());
    }
}
