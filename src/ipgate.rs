//! The per-IP cap (`--per-ip N`), shared by all workers: at most N requests in flight to
//! one server address, whatever host names they came under, so a thousand virtual hosts
//! on one shared IP cannot take every connection.
//!
//! A fetch takes a permit for the address it is about to connect to (or the peer of the
//! connection it reuses) and holds it for the request. When the address is at its cap the
//! fetch does not wait: its worker puts the job back at the front of its host's queue,
//! blocks the host, and gives the slot to other hosts; the gate wakes the worker when a
//! permit for that address is released (by any worker), and the worker unblocks as many of
//! the waiting hosts as there are free permits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Requests in flight per address, bounded; shared by the workers.
pub(crate) struct IpGate {
    limit: usize,
    state: Mutex<State>,
    /// One wake-up per worker.
    wakes: Vec<Notify>,
}

#[derive(Default)]
struct State {
    in_use: HashMap<IpAddr, usize>,
    /// Workers refused a permit for an address, to wake when one is released.
    wanted: HashMap<IpAddr, Vec<usize>>,
}

/// A request's right to be in flight to `ip`; released when dropped.
pub(crate) struct IpPermit {
    gate: Arc<IpGate>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        self.gate.release(self.ip);
    }
}

impl IpGate {
    /// A gate of `limit` permits per address for `workers` workers.
    pub(crate) fn new(limit: usize, workers: usize) -> IpGate {
        IpGate {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            wakes: (0..workers.max(1)).map(|_| Notify::new()).collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for `ip`, or `None` when it is at its cap (then `worker` is woken, through
    /// [`IpGate::released`], when a permit for it is released).
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr, worker: usize) -> Option<IpPermit> {
        let mut st = self.lock();
        let n = st.in_use.entry(ip).or_insert(0);
        if *n < self.limit {
            *n += 1;
            return Some(IpPermit {
                gate: self.clone(),
                ip,
            });
        }
        add_waiter(&mut st, ip, worker);
        None
    }

    /// Wake `worker` at the next release of a permit for `ip` (it still has hosts waiting
    /// for one), or at once if one is free already (released since it last looked).
    pub(crate) fn want(&self, ip: IpAddr, worker: usize) {
        let mut st = self.lock();
        if st.in_use.get(&ip).copied().unwrap_or(0) < self.limit {
            drop(st);
            self.wakes[worker].notify_one();
            return;
        }
        add_waiter(&mut st, ip, worker);
    }

    /// Free permits for `ip` right now.
    pub(crate) fn free(&self, ip: IpAddr) -> usize {
        self.limit
            .saturating_sub(self.lock().in_use.get(&ip).copied().unwrap_or(0))
    }

    /// Wait until a permit `worker` was refused may be free again.
    pub(crate) async fn released(&self, worker: usize) {
        self.wakes[worker].notified().await;
    }

    fn release(&self, ip: IpAddr) {
        let waiters = {
            let mut st = self.lock();
            if let Some(n) = st.in_use.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    st.in_use.remove(&ip);
                }
            }
            st.wanted.remove(&ip)
        };
        for w in waiters.into_iter().flatten() {
            // `notify_one` stores the wake-up if the worker is not waiting right now.
            self.wakes[w].notify_one();
        }
    }
}

fn add_waiter(st: &mut State, ip: IpAddr, worker: usize) {
    let waiters = st.wanted.entry(ip).or_default();
    if !waiters.contains(&worker) {
        waiters.push(worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn at_most_limit_permits_per_address() {
        let g = Arc::new(IpGate::new(2, 2));
        let a = g.try_acquire(ip("192.0.2.1"), 0).unwrap();
        let b = g.try_acquire(ip("192.0.2.1"), 1).unwrap();
        assert!(g.try_acquire(ip("192.0.2.1"), 0).is_none());
        assert!(g.try_acquire(ip("192.0.2.2"), 0).is_some(), "per address");
        assert_eq!(g.free(ip("192.0.2.1")), 0);
        drop(a);
        assert_eq!(g.free(ip("192.0.2.1")), 1);
        let c = g.try_acquire(ip("192.0.2.1"), 1).unwrap();
        drop((b, c));
        assert_eq!(g.free(ip("192.0.2.1")), 2);
        assert!(g.lock().in_use.is_empty(), "no entry left behind");
    }

    #[test]
    fn a_refused_worker_is_woken_by_a_release() {
        let g = Arc::new(IpGate::new(1, 2));
        let held = g.try_acquire(ip("192.0.2.9"), 0).unwrap();
        assert!(g.try_acquire(ip("192.0.2.9"), 1).is_none());
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut woken = std::pin::pin!(g.released(1));
        use std::future::Future;
        assert!(woken.as_mut().poll(&mut cx).is_pending());
        drop(held);
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        // Nobody else was waiting: worker 0 gets no wake-up.
        let mut other = std::pin::pin!(g.released(0));
        assert!(other.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn wanting_a_free_address_wakes_at_once() {
        let g = Arc::new(IpGate::new(1, 1));
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        use std::future::Future;
        g.want(ip("192.0.2.3"), 0);
        assert!(std::pin::pin!(g.released(0)).poll(&mut cx).is_ready());
        let held = g.try_acquire(ip("192.0.2.3"), 0).unwrap();
        g.want(ip("192.0.2.3"), 0);
        let mut woken = std::pin::pin!(g.released(0));
        assert!(
            woken.as_mut().poll(&mut cx).is_pending(),
            "busy: wait for a release"
        );
        drop(held);
        assert!(woken.as_mut().poll(&mut cx).is_ready());
    }
}
