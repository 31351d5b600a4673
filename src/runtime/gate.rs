//! The connection budget shared by all workers: one atomic count of slots in use, so a
//! worker whose hosts hash to more work than its share can use the slots other workers leave
//! idle (a fixed per-worker split left a tail: with 20,000 distinct hosts on two workers,
//! one got 10,048 URLs for its 5,000 slots and ran a third, almost empty wave).
//!
//! Taking and giving back a slot is one atomic operation each; a worker that found the budget
//! exhausted marks itself starved and is woken by the next release on any worker.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Slots in use across workers, bounded by `budget`.
pub struct SlotGate {
    budget: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    workers: Vec<Waiter>,
}

struct Waiter {
    starved: AtomicBool,
    wake: Notify,
}

impl SlotGate {
    /// A gate of `budget` slots (at least 1) for `workers` workers.
    pub fn new(budget: usize, workers: usize) -> SlotGate {
        SlotGate {
            budget: budget.max(1),
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            workers: (0..workers.max(1))
                .map(|_| Waiter {
                    starved: AtomicBool::new(false),
                    wake: Notify::new(),
                })
                .collect(),
        }
    }

    /// Take a slot for `worker`; `false` when the budget is used up, in which case `worker`
    /// is woken (see [`SlotGate::starved`]) by the next release.
    pub fn try_acquire(&self, worker: usize) -> bool {
        if self.take() {
            return true;
        }
        self.workers[worker].starved.store(true, Ordering::SeqCst);
        // A release between the failed take and the flag would have woken nobody: look again.
        if self.take() {
            self.workers[worker].starved.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn take(&self) -> bool {
        let mut cur = self.in_use.load(Ordering::SeqCst);
        loop {
            if cur >= self.budget {
                return false;
            }
            match self.in_use.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(cur + 1, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Give a slot back and wake one starved worker, if any.
    pub fn release(&self) {
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.starved.swap(false, Ordering::SeqCst))
        {
            w.wake.notify_one();
        }
    }

    /// Resolves when `worker` may find a free slot again (after it was refused one).
    pub async fn starved(&self, worker: usize) {
        self.workers[worker].wake.notified().await;
    }

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
    fn budget_is_shared_and_never_exceeded() {
        let g = SlotGate::new(3, 2);
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0));
        assert!(g.try_acquire(0)); // one worker may take every slot
        assert!(!g.try_acquire(1));
        assert_eq!((g.in_use(), g.peak()), (3, 3));
        g.release();
        assert!(g.try_acquire(1));
        assert!(!g.try_acquire(0));
        assert_eq!(g.peak(), 3);
    }

    #[test]
    fn a_release_wakes_the_starved_worker() {
        let g = Arc::new(SlotGate::new(1, 2));
        assert!(g.try_acquire(0));
        assert!(!g.try_acquire(1));
        let g2 = g.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g2.release();
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
    fn many_threads_keep_the_count_exact() {
        let g = Arc::new(SlotGate::new(8, 4));
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if g.try_acquire(w) {
                            assert!(g.in_use() <= 8);
                            g.release();
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
