//! Sans-IO per-host scheduling for one worker: which job runs next, under a global slot
//! budget and a per-host limit.
//!
//! A *slot* is one connection's worth of work. A slot started for a host keeps taking that
//! host's queued jobs ([`Scheduler::continue_slot`]) so its keep-alive connection is reused;
//! when the host's queue is empty the slot is released and another host may start one
//! ([`Scheduler::start_next`]). No clocks or I/O here: the worker loop drives it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

struct HostState<J> {
    queue: VecDeque<J>,
    active: usize,
    /// Listed in `Scheduler::ready` (possibly stale: validated when popped).
    in_ready: bool,
}

/// Per-host queues with a global budget of concurrent slots.
pub struct Scheduler<K, J> {
    hosts: HashMap<K, HostState<J>>,
    /// Hosts that could start a slot, in arrival order.
    ready: VecDeque<K>,
    budget: usize,
    per_host: usize,
    active: usize,
    queued: usize,
}

impl<K: Hash + Eq + Clone, J> Scheduler<K, J> {
    /// `budget`: slots at once (at least 1); `per_host`: slots per host (at least 1).
    pub fn new(budget: usize, per_host: usize) -> Self {
        Scheduler {
            hosts: HashMap::new(),
            ready: VecDeque::new(),
            budget: budget.max(1),
            per_host: per_host.max(1),
            active: 0,
            queued: 0,
        }
    }

    /// Queue a job for `key`.
    pub fn push(&mut self, key: K, job: J) {
        self.queued += 1;
        let host = match self.hosts.entry(key.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            // Most hosts of a broad list have one job: room for exactly one (a default
            // VecDeque grows to four at the first push, 3/4 of it never used).
            Entry::Vacant(e) => e.insert(HostState {
                queue: VecDeque::with_capacity(1),
                active: 0,
                in_ready: false,
            }),
        };
        host.queue.push_back(job);
        if !host.in_ready && host.active < self.per_host {
            host.in_ready = true;
            self.ready.push_back(key);
        }
    }

    /// Start a new slot if the budget allows and some host has work and room:
    /// returns its host and first job.
    pub fn start_next(&mut self) -> Option<(K, J)> {
        if self.active >= self.budget {
            return None;
        }
        // Entries are validated here rather than removed eagerly elsewhere: a host may have
        // lost its queued work to `continue_slot`, or been removed, since it was listed.
        while let Some(key) = self.ready.pop_front() {
            let Some(host) = self.hosts.get_mut(&key) else {
                continue;
            };
            host.in_ready = false;
            if host.active >= self.per_host {
                continue;
            }
            let Some(job) = host.queue.pop_front() else {
                continue;
            };
            host.active += 1;
            self.active += 1;
            self.queued -= 1;
            if !host.queue.is_empty() && host.active < self.per_host {
                host.in_ready = true;
                self.ready.push_back(key.clone());
            }
            return Some((key, job));
        }
        None
    }

    /// As [`Scheduler::start_next`], but only once some host can start a slot, and only if
    /// `admit` (asked at most once, only then) agrees: a budget shared with other
    /// schedulers is taken only for a slot that really starts.
    pub fn start_next_if(&mut self, admit: impl FnOnce() -> bool) -> Option<(K, J)> {
        if self.active >= self.budget {
            return None;
        }
        // Drop stale entries from the front until one can start now.
        while let Some(key) = self.ready.front() {
            match self.hosts.get_mut(key) {
                Some(h) if h.active < self.per_host && !h.queue.is_empty() => break,
                Some(h) => {
                    h.in_ready = false;
                    self.ready.pop_front();
                }
                None => {
                    self.ready.pop_front();
                }
            }
        }
        if self.ready.is_empty() || !admit() {
            return None;
        }
        self.start_next()
    }

    /// The slot for `key` finished a job: its next job on the same host, or `None` when the
    /// host has nothing queued, in which case the slot is released.
    pub fn continue_slot(&mut self, key: &K) -> Option<J> {
        let host = self
            .hosts
            .get_mut(key)
            .expect("a running slot's host exists");
        if let Some(job) = host.queue.pop_front() {
            self.queued -= 1;
            return Some(job);
        }
        host.active -= 1;
        self.active -= 1;
        // The queue is empty here, so the host is forgotten with its last slot.
        if host.active == 0 {
            self.hosts.remove(key);
        }
        None
    }

    /// Drop every queued job (running slots are untouched and still end through
    /// [`Scheduler::continue_slot`]); returns how many were dropped.
    pub fn abandon_queued(&mut self) -> usize {
        let dropped = self.queued;
        self.hosts.retain(|_, h| {
            h.queue.clear();
            h.in_ready = false;
            h.active > 0
        });
        self.ready.clear();
        self.queued = 0;
        dropped
    }

    /// Whether `key` has jobs waiting (for a slot of it: whether its connection will be
    /// wanted again soon).
    pub fn has_queued(&self, key: &K) -> bool {
        self.hosts.get(key).is_some_and(|h| !h.queue.is_empty())
    }

    #[cfg(test)]
    /// Slots running.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Jobs waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Nothing running and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.queued == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_starts(s: &mut Scheduler<&'static str, u32>) -> Vec<(&'static str, u32)> {
        std::iter::from_fn(|| s.start_next()).collect()
    }

    #[test]
    fn admission_is_asked_only_for_a_slot_that_starts() {
        let mut s = Scheduler::new(4, 1);
        let mut asked = 0;
        assert_eq!(
            s.start_next_if(|| {
                asked += 1;
                true
            }),
            None
        );
        assert_eq!(asked, 0, "nothing queued: not asked");
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(s.start_next_if(|| false), None);
        assert_eq!(s.queued(), 2, "a refused start loses nothing");
        assert_eq!(s.start_next_if(|| true), Some(("a", 1)));
        // "a" is at its per-host limit: its stale ready entry is skipped without asking.
        assert_eq!(
            s.start_next_if(|| {
                asked += 1;
                true
            }),
            None
        );
        assert_eq!(asked, 0);
        assert_eq!(s.continue_slot(&"a"), Some(2));
        assert_eq!(s.continue_slot(&"a"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn a_host_with_one_job_holds_room_for_one() {
        let mut s: Scheduler<&str, u32> = Scheduler::new(1, 1);
        s.push("a", 1);
        assert_eq!(s.hosts["a"].queue.capacity(), 1);
        s.push("a", 2);
        assert!(s.hosts["a"].queue.capacity() >= 2);
        assert_eq!(drain_starts(&mut s), vec![("a", 1)]);
        assert_eq!(s.continue_slot(&"a"), Some(2));
    }

    #[test]
    fn has_queued_tells_whether_a_host_has_work_waiting() {
        let mut s = Scheduler::new(4, 1);
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(s.start_next(), Some(("a", 1)));
        assert!(s.has_queued(&"a"));
        assert!(!s.has_queued(&"b"));
        assert_eq!(s.continue_slot(&"a"), Some(2));
        assert!(!s.has_queued(&"a"));
    }

    #[test]
    fn per_host_limit_and_budget() {
        let mut s = Scheduler::new(3, 2);
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
        let mut s = Scheduler::new(1, 1);
        s.push("a", 1);
        s.push("a", 2);
        s.push("b", 3);
        assert_eq!(s.start_next(), Some(("a", 1)));
        assert_eq!(s.continue_slot(&"a"), Some(2));
        assert_eq!(s.continue_slot(&"a"), None);
        assert_eq!(s.active(), 0);
        assert_eq!(s.start_next(), Some(("b", 3)));
        assert_eq!(s.continue_slot(&"b"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn host_regains_readiness_after_release() {
        let mut s = Scheduler::new(4, 1);
        s.push("a", 1);
        s.push("a", 2);
        assert_eq!(s.start_next(), Some(("a", 1)));
        // per-host 1: the second job waits for the running slot.
        assert!(s.start_next().is_none());
        assert_eq!(s.continue_slot(&"a"), Some(2));
        s.push("a", 3);
        assert!(s.start_next().is_none());
        assert_eq!(s.continue_slot(&"a"), Some(3));
        assert_eq!(s.continue_slot(&"a"), None);
        s.push("a", 4);
        assert_eq!(s.start_next(), Some(("a", 4)));
    }

    #[test]
    fn abandon_keeps_running_slots_accountable() {
        let mut s = Scheduler::new(2, 1);
        for i in 0..5 {
            s.push("a", i);
            s.push("b", 10 + i);
        }
        assert_eq!(s.start_next(), Some(("a", 0)));
        assert_eq!(s.abandon_queued(), 9);
        assert!(s.start_next().is_none());
        assert!(!s.is_idle());
        assert_eq!(s.continue_slot(&"a"), None);
        assert!(s.is_idle());
    }

    #[test]
    fn every_job_runs_exactly_once() {
        let mut s = Scheduler::new(7, 3);
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
                    if let Some(j) = s.continue_slot(&k) {
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
            if let Some(j) = s.continue_slot(&k) {
                seen.push(j);
                running.push(k);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }
}
