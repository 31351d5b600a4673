//! Sans-IO keep-alive pool of one worker: idle connections by host key, most recent first,
//! bounded in number (least recently parked evicted first) and in idle age.
//!
//! A slot that runs out of work for its host parks its connection here instead of closing
//! it, and a later job for the same host (in a list that cycles over hosts, the next visit
//! is a thousand URLs later) takes it instead of connecting again. What the pool gives back
//! (evicted or expired) is the caller's to close; the pool never does I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sched::HostMap;

/// Idle connections a run keeps at most (all workers together), whatever the fd limit.
pub const MAX_IDLE_CONNS: usize = 4096;
/// An idle connection older than this is not reused (servers close idle keep-alive
/// connections after 5 s to 75 s; a reused connection the server closed costs a retry).
pub const MAX_IDLE_AGE: Duration = Duration::from_secs(15);
/// The recency queue is compacted when it holds this many times `cap` entries.
const LRU_SLACK: usize = 4;

struct Idle<S> {
    conn: S,
    since: Instant,
    seq: u64,
}

/// Idle connections by key.
pub struct IdlePool<S> {
    by_key: HostMap<String, VecDeque<Idle<S>>>,
    /// (key, seq) in parking order; entries whose connection was taken are skipped lazily.
    lru: VecDeque<(String, u64)>,
    len: usize,
    cap: usize,
    max_age: Duration,
    next_seq: u64,
}

/// What [`IdlePool::take`] found.
pub struct Taken<S> {
    /// A live idle connection for the key, the most recently parked one.
    pub conn: Option<S>,
    /// Connections for the key too old to reuse: close them.
    pub expired: Vec<S>,
}

impl<S> IdlePool<S> {
    /// A pool of at most `cap` idle connections (0: nothing is ever kept).
    pub fn new(cap: usize, max_age: Duration) -> IdlePool<S> {
        IdlePool {
            by_key: HostMap::default(),
            lru: VecDeque::new(),
            len: 0,
            cap,
            max_age,
            next_seq: 0,
        }
    }

    /// Park `conn` for `key`. Returns a connection to close: the least recently parked one
    /// when the pool was full (or `conn` itself when the pool keeps nothing).
    pub fn put(&mut self, key: &str, conn: S, now: Instant) -> Option<S> {
        if self.cap == 0 {
            return Some(conn);
        }
        let evicted = if self.len >= self.cap {
            self.evict_oldest()
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key
            .entry(key.to_string())
            .or_default()
            .push_back(Idle {
                conn,
                since: now,
                seq,
            });
        self.lru.push_back((key.to_string(), seq));
        self.len += 1;
        if self.lru.len() > LRU_SLACK * self.cap.max(16) {
            self.compact();
        }
        evicted
    }

    /// The most recently parked connection for `key` that is young enough, and the ones for
    /// `key` that are not.
    pub fn take(&mut self, key: &str, now: Instant) -> Taken<S> {
        let mut taken = Taken {
            conn: None,
            expired: Vec::new(),
        };
        let Some(list) = self.by_key.get_mut(key) else {
            return taken;
        };
        if let Some(newest) = list.pop_back() {
            self.len -= 1;
            if now.saturating_duration_since(newest.since) <= self.max_age {
                taken.conn = Some(newest.conn);
            } else {
                // The newest is too old, so are all the older ones.
                taken.expired.push(newest.conn);
                self.len -= list.len();
                taken.expired.extend(list.drain(..).map(|i| i.conn));
            }
        }
        if list.is_empty() {
            self.by_key.remove(key);
        }
        taken
    }

    /// Remove and return every connection parked for longer than the age limit (a periodic
    /// sweep, so an idle daemon does not keep them open).
    pub fn expire(&mut self, now: Instant) -> Vec<S> {
        let mut old = Vec::new();
        // Oldest first: once one is young enough, so are the rest.
        while self
            .oldest_since()
            .is_some_and(|since| now.saturating_duration_since(since) > self.max_age)
        {
            old.extend(self.evict_oldest());
        }
        old
    }

    /// Everything still parked (at the end of a run, to close).
    pub fn drain(&mut self) -> Vec<S> {
        self.lru.clear();
        self.len = 0;
        self.by_key
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|i| i.conn))
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When the least recently parked connection was parked (recency records of taken
    /// connections at the front are dropped on the way).
    fn oldest_since(&mut self) -> Option<Instant> {
        while let Some((key, seq)) = self.lru.front() {
            // Live entries keep their recency record, and records are in parking order, so
            // the front record is live exactly when it names its key's oldest entry.
            let oldest = self.by_key.get(key).and_then(|list| list.front());
            match oldest {
                Some(i) if i.seq == *seq => return Some(i.since),
                _ => {
                    self.lru.pop_front();
                }
            }
        }
        None
    }

    fn evict_oldest(&mut self) -> Option<S> {
        self.oldest_since()?;
        let (key, _) = self.lru.pop_front()?;
        let list = self.by_key.get_mut(&key)?;
        let idle = list.pop_front()?;
        if list.is_empty() {
            self.by_key.remove(&key);
        }
        self.len -= 1;
        Some(idle.conn)
    }

    /// Drop recency records of connections already taken.
    fn compact(&mut self) {
        let by_key = &self.by_key;
        self.lru.retain(|(key, seq)| {
            by_key
                .get(key)
                .is_some_and(|list| list.iter().any(|i| i.seq == *seq))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(15);

    #[test]
    fn reuse_is_per_key_and_most_recent_first() {
        let t = Instant::now();
        let mut p = IdlePool::new(8, AGE);
        assert!(p.put("a", 1, t).is_none());
        assert!(p.put("a", 2, t).is_none());
        assert!(p.put("b", 3, t).is_none());
        assert_eq!(p.take("a", t).conn, Some(2));
        assert_eq!(p.take("a", t).conn, Some(1));
        assert_eq!(p.take("a", t).conn, None);
        assert_eq!(p.take("c", t).conn, None);
        assert_eq!(p.len(), 1);
        assert_eq!(p.drain(), vec![3]);
        assert!(p.is_empty());
    }

    #[test]
    fn full_pool_evicts_the_least_recently_parked() {
        let t = Instant::now();
        let mut p = IdlePool::new(3, AGE);
        p.put("a", 1, t);
        p.put("b", 2, t);
        p.put("c", 3, t);
        assert_eq!(p.take("a", t).conn, Some(1)); // its record goes stale
        p.put("d", 4, t);
        assert_eq!(p.put("e", 5, t), Some(2), "b is now the oldest parked");
        assert_eq!(p.put("f", 6, t), Some(3));
        assert_eq!(p.len(), 3);
        let mut rest = p.drain();
        rest.sort();
        assert_eq!(rest, vec![4, 5, 6]);
    }

    #[test]
    fn old_connections_are_handed_back_to_close() {
        let t = Instant::now();
        let mut p = IdlePool::new(8, AGE);
        p.put("a", 1, t);
        p.put("a", 2, t + Duration::from_secs(1));
        let later = t + AGE + Duration::from_secs(2);
        let taken = p.take("a", later);
        assert_eq!(taken.conn, None);
        assert_eq!(taken.expired, vec![2, 1]);
        assert!(p.is_empty());
    }

    #[test]
    fn sweep_removes_only_the_old() {
        let t = Instant::now();
        let mut p = IdlePool::new(8, AGE);
        p.put("a", 1, t);
        p.put("b", 2, t + Duration::from_secs(10));
        p.put("a", 3, t + Duration::from_secs(20));
        assert_eq!(p.expire(t + AGE + Duration::from_secs(1)), vec![1]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.expire(t + AGE + Duration::from_secs(11)), vec![2]);
        assert_eq!(p.take("a", t + Duration::from_secs(21)).conn, Some(3));
        assert!(p.is_empty());
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut p = IdlePool::new(0, AGE);
        assert_eq!(p.put("a", 1, Instant::now()), Some(1));
        assert!(p.is_empty());
    }

    #[test]
    fn recency_records_stay_bounded_under_churn() {
        let t = Instant::now();
        let mut p = IdlePool::new(16, AGE);
        p.put("pinned", 0, t); // never taken: keeps the front of the queue live
        for i in 1..10_000 {
            p.put("churn", i, t);
            assert_eq!(p.take("churn", t).conn, Some(i));
        }
        assert!(p.lru.len() <= LRU_SLACK * 16 + 1, "{}", p.lru.len());
        assert_eq!(p.take("pinned", t).conn, Some(0));
    }
}
