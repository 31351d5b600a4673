//! The connection budget shared by all workers. Each worker has an even share of it; a
//! worker may go past its share (borrow) only while no other worker has work waiting, so
//! hash routing cannot leave slots idle at the end of a run (hashing gives one worker a few
//! more URLs than its share of slots, and they would run as a last, almost empty wave) and
//! cannot pile the whole budget onto one core either (with a plain shared count, the worker
//! that released a slot grabbed it again at once, and the run went to one core).
//!
//! Taking and giving back a slot is a few atomic operations. A worker refused a slot is
//! marked and woken when what refused it changes: by the next release when the budget was
//! used up, by another worker running out of waiting work when it was at its share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Slots in use across workers, bounded by `budget`.
pub struct SlotGate {
    budget: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    workers: Vec<WorkerState>,
}

struct WorkerState {
    share: usize,
    in_use: AtomicUsize,
    /// Jobs waiting in this worker's scheduler (published by the worker).
    queued: AtomicUsize,
    /// Refused because the budget was used up: a release wakes it.
    wants_release: AtomicBool,
    /// Refused at its share while others had work waiting: their queues emptying wakes it.
    wants_idle_share: AtomicBool,
    wake: Notify,
}

impl SlotGate {
    /// A gate of `budget` slots (at least 1) split evenly over `workers` workers.
    pub fn new(budget: usize, workers: usize) -> SlotGate {
        let budget = budget.max(1);
        let n = workers.max(1);
        SlotGate {
            budget,
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            workers: (0..n)
                .map(|i| WorkerState {
                    share: (budget / n + usize::from(i < budget % n)).max(1),
                    in_use: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    wants_release: AtomicBool::new(false),
                    wants_idle_share: AtomicBool::new(false),
                    wake: Notify::new(),
                })
                .collect(),
        }
    }

    /// Tell the other workers how many jobs `worker` has waiting. When that drops to zero,
    /// workers held at their share may now borrow: they are woken.
    pub fn set_queued(&self, worker: usize, queued: usize) {
        let before = self.workers[worker].queued.swap(queued, Ordering::SeqCst);
        if before > 0 && queued == 0 {
            for w in &self.workers {
                if w.wants_idle_share.swap(false, Ordering::SeqCst) {
                    w.wake.notify_one();
                }
            }
        }
    }

    /// Take a slot for `worker`; `false` when it is at its share while another worker has
    /// work waiting, or when the budget is used up. A refused worker is woken (see
    /// [`SlotGate::starved`]) when that changes.
    pub fn try_acquire(&self, worker: usize) -> bool {
        let me = &self.workers[worker];
        for second_look in [false, true] {
            let flag = if self.held_at_share(worker) {
                &me.wants_idle_share
            } else if self.take() {
                me.in_use.fetch_add(1, Ordering::Relaxed);
                return true;
            } else {
                &me.wants_release
            };
            if second_look {
                return false;
            }
            // Flag first, then look again: a change between the first look and the flag
            // would have woken nobody.
            flag.store(true, Ordering::SeqCst);
        }
        false
    }

    /// At its share while another worker has work waiting.
    fn held_at_share(&self, worker: usize) -> bool {
        let me = &self.workers[worker];
        me.in_use.load(Ordering::Relaxed) >= me.share
            && self
                .workers
                .iter()
                .enumerate()
                .any(|(i, w)| i != worker && w.queued.load(Ordering::SeqCst) > 0)
    }

    fn take(&self) -> bool {
        let taken = self
            .in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.budget).then_some(n + 1)
            });
        if let Ok(before) = taken {
            self.peak.fetch_max(before + 1, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    /// `worker` gives a slot back; one worker refused for want of a free slot, if any, is
    /// woken.
    pub fn release(&self, worker: usize) {
        self.workers[worker].in_use.fetch_sub(1, Ordering::Relaxed);
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.wants_release.swap(false, Ordering::SeqCst))
        {
            w.wake.notify_one();
        }
    }

    /// Resolves when `worker` may find a slot again after [`SlotGate::try_acquire`] refused.
    pub async fn starved(&self, worker: usize) {
        self.workers[worker].wake.notified().await;
    }

    /// Slots in use right now, all workers together.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Most slots in use at once so far (a true global peak).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn budget(&self) -> usize {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn an_idle_workers_share_may_be_borrowed() {
        let g = SlotGate::new(3, 2); // shares 2 and 1
        g.set_queued(0, 5);
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0)); // worker 1 has nothing waiting: borrow its slot
        assert!(!g.try_acquire(1));
        assert_eq!((g.in_use(), g.peak()), (3, 3));
        g.release(0);
        assert!(g.try_acquire(1));
        assert!(!g.try_acquire(0));
        assert_eq!(g.peak(), 3);
    }

    #[test]
    fn no_borrowing_while_another_worker_has_work_waiting() {
        let g = SlotGate::new(4, 2);
        g.set_queued(0, 10);
        g.set_queued(1, 10);
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0));
        assert!(!g.try_acquire(0), "at its share while worker 1 waits");
        assert!(g.try_acquire(1));
        assert!(g.try_acquire(1));
        assert!(!g.try_acquire(1));
        g.set_queued(1, 0);
        g.release(1);
        assert!(
            g.try_acquire(0),
            "worker 1 has no more work: worker 0 borrows"
        );
        assert_eq!(g.in_use(), 4);
    }

    #[test]
    fn a_release_wakes_the_starved_worker() {
        let g = Arc::new(SlotGate::new(2, 2));
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0)); // borrowed: worker 1 had nothing waiting then
        g.set_queued(1, 1);
        assert!(!g.try_acquire(1));
        let g2 = g.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g2.release(0);
        });
        tokio_uring::start(async {
            tokio::time::timeout(Duration::from_secs(5), g.starved(1))
                .await
                .expect("woken by the release");
        });
        releaser.join().unwrap();
        assert!(g.try_acquire(1));
    }

    #[test]
    fn a_worker_held_at_its_share_is_woken_when_the_others_run_dry() {
        let g = Arc::new(SlotGate::new(4, 2));
        g.set_queued(0, 3);
        g.set_queued(1, 3);
        assert!(g.try_acquire(0) && g.try_acquire(0));
        assert!(!g.try_acquire(0));
        let g2 = g.clone();
        let other = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g2.set_queued(1, 0); // worker 1 started everything it had
        });
        tokio_uring::start(async {
            tokio::time::timeout(Duration::from_secs(5), g.starved(0))
                .await
                .expect("woken when worker 1 had nothing left waiting");
        });
        other.join().unwrap();
        assert!(g.try_acquire(0));
    }

    #[test]
    fn many_threads_keep_the_count_exact() {
        let g = Arc::new(SlotGate::new(8, 4));
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if g.try_acquire(w) {
                            assert!(g.in_use() <= 8);
                            g.release(w);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(g.in_use(), 0);
        assert!(g.peak() <= 8);
    }
}
