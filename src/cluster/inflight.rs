//! Sans-IO: a node's deliveries in flight, each until every line it holds has a stored
//! record. A delivery is one URL message (a chunk of lines, or one line) as the server handed
//! it out; its handle (the acker, in the node) is given back to be acked exactly when the last
//! of its lines has its record's PubAck, never before: a line fetched out of order does not
//! ack the others. A line may be in several deliveries at once (a message redelivered while
//! its first delivery is still here, or a line queued twice); one stored record completes
//! it in each of them.

use crate::sched::HostMap;

/// A line: its list id and line number.
pub(crate) type LineKey = (std::sync::Arc<str>, u64);

struct Entry<H> {
    handle: H,
    partition: u32,
    /// Its lines, in order (a refused line takes its delivery's other lines out too).
    keys: Vec<LineKey>,
    /// Lines without a stored record yet.
    waiting: usize,
    /// When it was delivered or last marked in progress.
    touched: std::time::Instant,
}

/// The deliveries in flight, and which hold each line.
pub(crate) struct InFlight<H> {
    next: u64,
    deliveries: HostMap<u64, Entry<H>>,
    lines: HostMap<LineKey, Vec<u64>>,
}

impl<H> Default for InFlight<H> {
    fn default() -> Self {
        InFlight {
            next: 0,
            deliveries: HostMap::default(),
            lines: HostMap::default(),
        }
    }
}

impl<H> InFlight<H> {
    /// A delivery of `keys` (distinct lines) arrived. An empty one is given back at once.
    pub fn deliver(
        &mut self,
        partition: u32,
        keys: Vec<LineKey>,
        handle: H,
        now: std::time::Instant,
    ) -> Option<H> {
        if keys.is_empty() {
            return Some(handle);
        }
        let id = self.next;
        self.next += 1;
        for k in &keys {
            self.lines.entry(k.clone()).or_default().push(id);
        }
        self.deliveries.insert(
            id,
            Entry {
                handle,
                partition,
                waiting: keys.len(),
                keys,
                touched: now,
            },
        );
        None
    }

    /// A record of `key` is stored: the deliveries it completed (to be acked).
    pub fn stored(&mut self, key: &LineKey) -> Vec<H> {
        let mut done = Vec::new();
        for id in self.lines.remove(key).unwrap_or_default() {
            let Some(e) = self.deliveries.get_mut(&id) else {
                continue;
            };
            e.waiting -= 1;
            if e.waiting == 0 {
                done.extend(self.deliveries.remove(&id).map(|e| e.handle));
            }
        }
        done
    }

    /// `key` will have no record here (refused while stopping): the deliveries holding it,
    /// taken out with all their lines (to be nak'd: their lines come again, and those
    /// already recorded meet their first record in the duplicate window).
    pub fn refuse(&mut self, key: &LineKey) -> Vec<H> {
        let ids = self.lines.remove(key).unwrap_or_default();
        ids.into_iter().filter_map(|id| self.take(id)).collect()
    }

    /// Every delivery left (to be nak'd at the stop).
    pub fn drain(&mut self) -> Vec<H> {
        self.lines.clear();
        self.deliveries.drain().map(|(_, e)| e.handle).collect()
    }

    fn take(&mut self, id: u64) -> Option<H> {
        let e = self.deliveries.remove(&id)?;
        for k in &e.keys {
            if let Some(ids) = self.lines.get_mut(k) {
                ids.retain(|&x| x != id);
                if ids.is_empty() {
                    self.lines.remove(k);
                }
            }
        }
        Some(e.handle)
    }

    /// Deliveries of partition `p` in flight.
    pub fn of_partition(&self, p: u32) -> usize {
        self.deliveries
            .values()
            .filter(|e| e.partition == p)
            .count()
    }

    /// Call `f` on every delivery untouched for `age` (to mark it in progress), touching it.
    pub fn touch_older(
        &mut self,
        now: std::time::Instant,
        age: std::time::Duration,
        mut f: impl FnMut(&H),
    ) {
        for e in self.deliveries.values_mut() {
            if now.saturating_duration_since(e.touched) >= age {
                e.touched = now;
                f(&e.handle);
            }
        }
    }

    /// Deliveries in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.deliveries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn key(n: u64) -> LineKey {
        (Arc::from("l@00"), n)
    }

    #[test]
    fn a_chunk_is_given_back_once_its_last_line_is_stored_in_any_order() {
        let now = Instant::now();
        for order in [[1, 2, 3], [3, 1, 2], [2, 3, 1]] {
            let mut f = InFlight::default();
            assert!(f.deliver(0, (1..=3).map(key).collect(), "m", now).is_none());
            for (i, n) in order.iter().enumerate() {
                let done = f.stored(&key(*n));
                assert_eq!(done.is_empty(), i < 2, "{order:?} at {n}");
            }
            assert_eq!(f.len(), 0);
            assert!(f.stored(&key(1)).is_empty(), "a second record acks nothing");
        }
    }

    #[test]
    fn a_refused_line_takes_its_delivery_out_whole() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.deliver(3, vec![key(1), key(2)], "a", now);
        f.deliver(3, vec![key(3)], "b", now);
        assert_eq!(f.of_partition(3), 2);
        assert!(f.stored(&key(1)).is_empty());
        assert_eq!(f.refuse(&key(2)), vec!["a"]);
        assert!(f.stored(&key(2)).is_empty() && f.stored(&key(1)).is_empty());
        assert_eq!(f.of_partition(3), 1);
        assert_eq!(f.drain(), vec!["b"]);
        assert!(f.deliver(0, Vec::new(), "empty", now) == Some("empty"));
    }

    #[test]
    fn in_progress_marks_only_old_deliveries() {
        let t0 = Instant::now();
        let mut f = InFlight::default();
        f.deliver(0, vec![key(1)], 1, t0);
        f.deliver(0, vec![key(2)], 2, t0 + Duration::from_secs(5));
        let mut marked = Vec::new();
        f.touch_older(t0 + Duration::from_secs(6), Duration::from_secs(3), |h| {
            marked.push(*h)
        });
        assert_eq!(marked, vec![1]);
        marked.clear();
        f.touch_older(t0 + Duration::from_secs(7), Duration::from_secs(3), |h| {
            marked.push(*h)
        });
        assert!(marked.is_empty(), "touched again");
    }

    /// Random deliveries (chunks, overlapping redeliveries), random record and refusal
    /// orders, duplicate records: a delivery is given back exactly once in all, by `stored`
    /// only once each of its lines had a record stored after it was delivered, and never
    /// while one of its lines has none.
    #[test]
    fn property_no_delivery_is_given_back_before_all_its_lines_have_records() {
        let mut rng = fastrand::Rng::with_seed(16);
        let now = Instant::now();
        for _ in 0..2_000 {
            let mut f = InFlight::default();
            let lines = rng.u64(1..30);
            // Delivery id -> its lines.
            let mut delivered: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
            // Lines with a record stored, per delivery, since it was delivered.
            let mut recorded: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
            let mut given: BTreeSet<u32> = BTreeSet::new();
            let mut refused: BTreeSet<u32> = BTreeSet::new();
            let mut next = 0u32;
            for _ in 0..rng.usize(1..80) {
                match rng.u8(0..10) {
                    0..=2 => {
                        let first = rng.u64(1..=lines);
                        let n = rng.u64(1..6);
                        let mut ks: BTreeSet<u64> = BTreeSet::new();
                        for k in first..first + n {
                            if rng.bool() {
                                ks.insert(k);
                            }
                        }
                        let h = next;
                        next += 1;
                        let back = f.deliver(0, ks.iter().map(|&k| key(k)).collect(), h, now);
                        assert_eq!(back.is_some(), ks.is_empty());
                        if ks.is_empty() {
                            given.insert(h);
                        } else {
                            delivered.insert(h, ks);
                            recorded.insert(h, BTreeSet::new());
                        }
                    }
                    3..=8 => {
                        let k = rng.u64(1..=lines);
                        for (h, ks) in &delivered {
                            if ks.contains(&k) && !given.contains(h) && !refused.contains(h) {
                                recorded.get_mut(h).unwrap().insert(k);
                            }
                        }
                        for h in f.stored(&key(k)) {
                            assert_eq!(
                                recorded[&h], delivered[&h],
                                "delivery {h} given back with lines unrecorded"
                            );
                            assert!(given.insert(h), "delivery {h} given back twice");
                        }
                    }
                    _ => {
                        let k = rng.u64(1..=lines);
                        for h in f.refuse(&key(k)) {
                            assert!(delivered[&h].contains(&k));
                            assert!(!given.contains(&h) && refused.insert(h));
                        }
                    }
                }
                // Whatever is complete has been given back.
                for (h, ks) in &delivered {
                    if !refused.contains(h) {
                        assert_eq!(given.contains(h), recorded[h] == *ks, "delivery {h}");
                    }
                }
            }
            let left: BTreeSet<u32> = f.drain().into_iter().collect();
            for h in delivered.keys() {
                let n = [given.contains(h), refused.contains(h), left.contains(h)]
                    .iter()
                    .filter(|&&b| b)
                    .count();
                assert_eq!(n, 1, "delivery {h} settled exactly once");
            }
        }
    }
}
