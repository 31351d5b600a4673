//! One worker: a thread with its own tokio-uring runtime, resolver, per-host scheduler,
//! read buffers and keep-alive pool ([`FetchCtx`]). It takes routed jobs from its channel
//! into the scheduler (at most `max_queued` waiting), starts a slot for each job the
//! scheduler and the shared slot gate allow, and runs each slot's jobs (one host, back to
//! back on one connection, at the start times the scheduler's politeness allows) through
//! `fetch`.
//!
//! Every job ends in exactly one record on the record channel: after its last attempt (a
//! transient failure waits for its retry in [`Retries`], holding no slot and no
//! connection), at once when its host's breaker is open (`breaker`), or as an `internal`
//! record when the fetch panicked.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::breaker::Breakers;
use crate::error::ErrorKind;
use crate::failpoint;
use crate::fetch::{run_job, Attempt, FetchCtx, Held};
use crate::gate::SlotGate;
use crate::html::FollowSelector;
use crate::intake::host_key;
use crate::ipgate::IpGate;
use crate::job::{panic_message, Counters, Health, Job, WorkItem};
use crate::net::TlsContext;
use crate::options::FetchOptions;
use crate::record::Record;
use crate::retry;
use crate::sched::{Handout, Scheduler};
use crate::spill::Spill;

/// One host may hold this fraction of a worker's queue bound in memory (at least
/// [`MIN_HOST_QUEUE`] jobs); its further jobs spill to disk (`spill`), so intake never
/// waits on one host while others have room.
pub const HOST_QUEUE_SHARE: usize = 8;
/// Jobs one host may always hold in memory.
pub const MIN_HOST_QUEUE: usize = 64;

/// How often a worker closes parked keep-alive connections that got too old.
pub const IDLE_SWEEP: Duration = Duration::from_secs(5);

/// Where finished records go (the journal writer thread's channel).
pub type RecordSender = std::sync::mpsc::SyncSender<Record>;

/// What a worker thread gets from the engine.
pub struct WorkerSetup {
    pub opts: Arc<FetchOptions>,
    pub tls: TlsContext,
    pub follow: Option<FollowSelector>,
    pub counters: Arc<Counters>,
    pub records: RecordSender,
    pub draining: Arc<AtomicBool>,
    pub gate: Arc<SlotGate>,
    pub health: Arc<Health>,
    /// This worker's number (its waiter in `gate`).
    pub index: usize,
    /// Idle keep-alive connections this worker may keep.
    pub idle_cap: usize,
    /// Jobs this worker's scheduler holds at most (intake waits past that).
    pub max_queued: usize,
    /// The `--per-ip` cap shared by the workers, if there is one.
    pub ip_gate: Option<Arc<IpGate>>,
}

/// What a worker's loop and its slots share (one per worker thread; not `Send`).
struct Worker {
    ctx: FetchCtx,
    sched: RefCell<Scheduler<String, WorkItem>>,
    retries: RefCell<Retries>,
    breakers: RefCell<Breakers>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
    gate: Arc<SlotGate>,
    health: Arc<Health>,
    /// This worker's number (its waiter in `gate`, its heartbeat in `health`).
    index: usize,
    /// Slots say here that they ended (or that a retry is waiting): the loop looks again.
    done: tokio::sync::mpsc::UnboundedSender<()>,
    /// A slot panicked outside the per-URL catch (its bookkeeping is lost).
    broken: Cell<bool>,
    ip_gate: Option<Arc<IpGate>>,
    /// Hosts blocked because their address is at its `--per-ip` cap, by address.
    blocked: RefCell<HashMap<IpAddr, Vec<String>>>,
    /// Jobs of hosts past their share of the queue, on disk.
    spill: RefCell<Spill>,
    /// A host's share of the queue (jobs kept in memory).
    host_cap: usize,
}

/// Jobs waiting for their next attempt, by due time: they hold no slot and no connection.
#[derive(Default)]
struct Retries {
    due: BTreeMap<(Instant, u64), (String, WorkItem)>,
    seq: u64,
}

impl Retries {
    fn push(&mut self, at: Instant, key: String, item: WorkItem) {
        self.seq += 1;
        self.due.insert((at, self.seq), (key, item));
    }

    /// When the next one is due.
    fn next_due(&self) -> Option<Instant> {
        self.due.first_key_value().map(|((at, _), _)| *at)
    }

    /// The jobs due by `now`, oldest first.
    fn take_due(&mut self, now: Instant) -> Vec<(String, WorkItem)> {
        let later = self.due.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.due, later)
            .into_values()
            .collect()
    }

    fn len(&self) -> usize {
        self.due.len()
    }

    fn clear(&mut self) {
        self.due.clear();
    }
}

/// The worker's life, inside its runtime: take jobs from `rx` and run them until the
/// channel is closed and all work is done (or, when draining, until running slots finish),
/// then close the keep-alive pool. A panic outside the per-URL catch (in a slot's
/// bookkeeping or in the loop itself) is a failure of the engine: it is recorded in
/// [`Health`], every worker drains, and this worker stops at once (its slots' records are
/// lost: the caller exits non-zero, and the daemon's recovery fetches them again).
pub async fn run(
    w: WorkerSetup,
    resolver: crate::dns::Resolver,
    rx: tokio::sync::mpsc::Receiver<WorkItem>,
) {
    let (health, draining, index) = (w.health.clone(), w.draining.clone(), w.index);
    let life = std::panic::AssertUnwindSafe(live(w, resolver, rx)).catch_unwind();
    if let Err(panic) = life.await {
        health.fail(format!("worker {index} failed: {}", panic_message(&*panic)));
        draining.store(true, Ordering::Release);
    }
}

async fn live(
    w: WorkerSetup,
    resolver: crate::dns::Resolver,
    rx: tokio::sync::mpsc::Receiver<WorkItem>,
) {
    let (done, done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The scheduler may use the whole budget; the gate keeps all workers together within it.
    let sched = Scheduler::new(w.gate.budget(), w.opts.per_host, w.opts.host_delay);
    let worker = Rc::new(Worker {
        ctx: FetchCtx::new(
            w.opts,
            resolver,
            w.tls,
            w.follow,
            w.counters,
            w.idle_cap,
            w.ip_gate.clone().map(|g| (g, w.index)),
        ),
        sched: RefCell::new(sched),
        retries: RefCell::new(Retries::default()),
        breakers: RefCell::new(Breakers::default()),
        records: w.records,
        draining: w.draining,
        gate: w.gate,
        health: w.health,
        index: w.index,
        done,
        broken: Cell::new(false),
        ip_gate: w.ip_gate,
        blocked: RefCell::new(HashMap::new()),
        spill: RefCell::new(Spill::default()),
        host_cap: (w.max_queued / HOST_QUEUE_SHARE).max(MIN_HOST_QUEUE),
    });
    worker_loop(worker.clone(), rx, done_rx, w.max_queued).await;
    worker.ctx.close_idle().await;
}

/// Take jobs into the scheduler and start slots until the channel is closed and all work
/// is done (or, when draining, until running slots finish).
async fn worker_loop(
    w: Rc<Worker>,
    mut rx: tokio::sync::mpsc::Receiver<WorkItem>,
    mut done_rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    max_queued: usize,
) {
    let mut open = true;
    let mut sweep = tokio::time::interval(IDLE_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        w.health.beat(w.index);
        if w.health.has_failed() {
            // Another worker failed (this one's own failure ends the loop by unwinding).
            w.draining.store(true, Ordering::Release);
        }
        if w.draining.load(Ordering::Relaxed) {
            // Abandon what has not started; running slots finish their current job only.
            w.sched.borrow_mut().abandon_queued();
            w.retries.borrow_mut().clear();
            w.spill.borrow_mut().clear();
        }
        let now = Instant::now();
        for (key, item) in w.retries.borrow_mut().take_due(now) {
            w.sched.borrow_mut().push(key, item);
        }
        w.refill();
        let mut starved = false;
        loop {
            let next = w.sched.borrow_mut().start_next_if(now, || {
                starved = !w.gate.try_acquire(w.index);
                !starved
            });
            let Some(handout) = next else { break };
            // The slot future is spawned inside combinators, not an `async move` block that
            // awaits it (which would store it twice: the captured value and the awaitee).
            let Handout { key, job, start_at } = handout;
            let slot = run_slot(w.clone(), key, Some(job), start_at);
            let watch = w.clone();
            tokio_uring::spawn(std::panic::AssertUnwindSafe(slot).catch_unwind().map(
                move |ended| {
                    if let Err(panic) = ended {
                        watch.slot_failed(&*panic);
                    }
                },
            ));
        }
        let (idle, queued, wake) = {
            let s = w.sched.borrow();
            (s.is_idle(), s.queued(), s.next_wake())
        };
        let (retrying, retry_due) = {
            let r = w.retries.borrow();
            (r.len(), r.next_due())
        };
        // Published after starting what could start, so other workers know at once whether
        // they may borrow this worker's idle share.
        w.gate.set_queued(w.index, queued);
        if !open && idle && retrying == 0 && w.spill.borrow().total() == 0 {
            break;
        }
        let take = open && queued + retrying < max_queued;
        let wake = wake.into_iter().chain(retry_due).min();
        tokio::select! {
            item = rx.recv(), if take => match item {
                Some(item) => w.enqueue(item),
                None => open = false,
            },
            _ = done_rx.recv() => {}
            // Another worker gave a slot back while this one had work and no slot.
            _ = w.gate.starved(w.index), if starved => {}
            // A host's politeness delay or a retry is due.
            _ = tokio::time::sleep_until(wake.unwrap_or(now).into()), if wake.is_some() => {}
            // A permit for an address some of this worker's hosts wait for was released.
            _ = ip_released(&w), if !w.blocked.borrow().is_empty() => w.unblock_ips(),
            _ = sweep.tick() => {
                failpoint::hit("worker-sweep");
                let now = Instant::now();
                w.breakers.borrow_mut().prune(now);
                w.sched.borrow_mut().prune(now);
                w.ctx.prune_politeness(now);
                w.ctx.close_expired_idle().await;
            }
        }
        if w.broken.get() {
            // A slot of this worker panicked: its accounting is gone, so the scheduler
            // can never become idle. Stop now.
            break;
        }
    }
}

impl Worker {
    /// A slot of this worker panicked outside the per-URL catch.
    fn slot_failed(&self, panic: &(dyn std::any::Any + Send)) {
        self.broken.set(true);
        self.health.fail(format!(
            "worker {} failed: a slot panicked: {}",
            self.index,
            panic_message(panic)
        ));
        // Wake the worker loop so it sees the failure at once.
        let _ = self.done.send(());
    }

    /// One attempt at `item` (or none, when its host's breaker is open).
    async fn attempt(
        &self,
        key: &str,
        item: &mut WorkItem,
        held: &mut Option<Held>,
    ) -> (Attempt, bool) {
        item.job.started.get_or_insert_with(Instant::now);
        if let Err(open) = self.breakers.borrow().check(key, Instant::now()) {
            let record = item.job.error_record(open.kind, open.message);
            return (Attempt::done(record), false);
        }
        item.job.attempts += 1;
        let next_on_host = self.sched.borrow().has_queued(key);
        let fetch = run_job(&self.ctx, &item.job, &item.url, held, next_on_host);
        let (attempt, panicked) = record_or_internal(&item.job, fetch).await;
        // The breaker learns from real attempts on this host (not from the linked page of
        // a --follow hop 2, which is another host's).
        let rec = &attempt.record;
        let outcome = match &rec.error {
            Some(e) if e.hop == Some(2) => None,
            Some(e) => Some(Some(e.kind)),
            None => Some(None),
        };
        if let Some(kind) = outcome {
            if self.breakers.borrow_mut().record(key, kind, Instant::now()) {
                tracing::warn!(
                    host = key,
                    kind = %kind.map_or("-", |k| k.as_str()),
                    "host failing: its URLs fail at once for {} s",
                    crate::breaker::COOL_DOWN.as_secs()
                );
            }
        }
        (attempt, panicked)
    }

    /// Queue a job from intake: in memory, or on disk when its host has its share already.
    fn enqueue(&self, item: WorkItem) {
        let key = host_key(&item.url);
        let spilling = self.spill.borrow().len(&key) > 0
            || self.sched.borrow().queued_for(&key) >= self.host_cap;
        if spilling {
            match self.spill.borrow_mut().push(&key, &item.job) {
                Ok(()) => return,
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot spill a host's queue to disk; keeping it in memory"
                ),
            }
        }
        self.sched.borrow_mut().push(key, item);
    }

    /// Bring spilled jobs back for hosts whose queue went below half their share.
    fn refill(&self) {
        if self.spill.borrow().total() == 0 {
            return;
        }
        let half = self.host_cap / 2;
        let keys = self.spill.borrow().keys();
        for key in keys {
            let queued = self.sched.borrow().queued_for(&key);
            if queued >= half {
                continue;
            }
            let jobs = match self.spill.borrow_mut().take(&key, self.host_cap - queued) {
                Ok(jobs) => jobs,
                Err(e) => {
                    // Jobs that cannot be had back would never get a record: the engine
                    // fails (the daemon restarts, and recovery fetches what had none).
                    self.health.fail(format!(
                        "worker {} cannot read back spilled jobs of {key}: {e}",
                        self.index
                    ));
                    return;
                }
            };
            for job in jobs {
                match crate::intake::parse_text(&job.url) {
                    Ok(url) => self
                        .sched
                        .borrow_mut()
                        .push(key.clone(), WorkItem { job, url }),
                    Err(e) => {
                        let rec = job.error_record(
                            ErrorKind::Internal,
                            format!("spilled job lost its URL: {e}"),
                        );
                        self.ctx.counters.count(&rec);
                        let _ = self.records.send(rec);
                    }
                }
            }
        }
    }

    /// Unblock as many hosts of each blocked address as it has free permits.
    fn unblock_ips(&self) {
        let Some(gate) = &self.ip_gate else {
            return;
        };
        let mut blocked = self.blocked.borrow_mut();
        let mut sched = self.sched.borrow_mut();
        blocked.retain(|ip, hosts| {
            let free = gate.free(*ip).min(hosts.len());
            for key in hosts.drain(..free) {
                sched.unblock(&key);
            }
            if !hosts.is_empty() {
                // The release that woke us took our place in line: stand in it again.
                gate.want(*ip, self.index);
            }
            !hosts.is_empty()
        });
    }

    /// The attempt's outcome: a retry later (true), or its record now.
    fn settle(&self, key: &str, item: &mut Option<WorkItem>, mut attempt: Attempt) -> bool {
        let c = &self.ctx.counters;
        if let Some(ip) = attempt.blocked_on {
            // Not an attempt: back to the front of its host's queue until a permit is free.
            let mut it = item.take().expect("the slot's job");
            it.job.attempts -= 1;
            let key = key.to_string();
            let mut sched = self.sched.borrow_mut();
            sched.push_front(&key, it);
            sched.block(&key);
            let mut blocked = self.blocked.borrow_mut();
            let hosts = blocked.entry(ip).or_default();
            if !hosts.contains(&key) {
                hosts.push(key);
            }
            return true;
        }
        let job = &item.as_ref().expect("the slot's job").job;
        let draining = self.draining.load(Ordering::Relaxed);
        if let (Some(after), false) = (attempt.retry, draining) {
            if job.attempts <= self.ctx.opts.retries {
                let wait = retry::backoff(job.attempts, after, fastrand::f64());
                c.retries.fetch_add(1, Ordering::Relaxed);
                let item = item.take().expect("the slot's job");
                self.retries
                    .borrow_mut()
                    .push(Instant::now() + wait, key.to_string(), item);
                let _ = self.done.send(()); // the loop arms its timer
                return true;
            }
        }
        *c.dns.lock().unwrap_or_else(|e| e.into_inner()) = self.ctx.resolver.stats();
        c.count(&attempt.record);
        attempt.finish(item.take().expect("the slot's job"));
        // Stop early when the journal is gone or the engine drains; what this host still
        // had queued is then abandoned (the worker loop drops queued work when draining).
        if self.records.send(attempt.record).is_err() || draining {
            self.sched.borrow_mut().abandon_queued();
        }
        false
    }
}

/// A permit for an address this worker waits for was released (never, without a cap).
async fn ip_released(w: &Worker) {
    match &w.ip_gate {
        Some(g) => g.released(w.index).await,
        None => std::future::pending().await,
    }
}

/// One slot: run jobs of one host back to back on one keep-alive connection, each at the
/// start time the scheduler gave it. (An `async move` block, not an `async fn`, so the
/// arguments are stored once in the task: see [`run_job`].)
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn run_slot(
    w: Rc<Worker>,
    key: String,
    mut item: Option<WorkItem>,
    mut start_at: Instant,
) -> impl std::future::Future<Output = ()> {
    async move {
        let mut held: Option<Held> = None;
        loop {
            if start_at > Instant::now() {
                tokio::time::sleep_until(start_at.into()).await;
            }
            let job = item.as_mut().expect("a job to run");
            let (attempt, panicked) = w.attempt(&key, job, &mut held).await;
            if panicked {
                held = None; // whatever state the connection was left in, it is not reused
            }
            w.settle(&key, &mut item, attempt);
            for (host, delay) in w.ctx.take_crawl_delays() {
                w.sched.borrow_mut().set_delay(&host, delay);
            }
            failpoint::hit("slot-next");
            let next = w.sched.borrow_mut().continue_slot(&key, Instant::now());
            match next {
                Some((next, at)) => {
                    item = Some(next);
                    start_at = at;
                }
                None => break,
            }
        }
        if let Some(h) = held {
            w.ctx.park(h).await;
        }
        failpoint::hit("slot-release");
        w.gate.release(w.index);
        let _ = w.done.send(());
    }
}

/// Run one job's future; a panic inside it becomes an `internal` error record for the job
/// (and `true`), so the slot goes on and the URL still gets exactly one record. A
/// combinator, not an `async fn`, so the job's future is stored once, not twice.
fn record_or_internal<'a>(
    job: &'a Job,
    fetch: impl std::future::Future<Output = Attempt> + 'a,
) -> impl std::future::Future<Output = (Attempt, bool)> + 'a {
    std::panic::AssertUnwindSafe(fetch)
        .catch_unwind()
        .map(move |outcome| match outcome {
            Ok(attempt) => (attempt, false),
            Err(panic) => {
                let message = format!(
                    "internal error (a ringcrawl bug, please report): {}",
                    panic_message(&*panic)
                );
                (
                    Attempt::done(job.error_record(ErrorKind::Internal, message)),
                    true,
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new(
            "http://a.test/".to_string(),
            Some(Arc::from("list.txt")),
            Some(7),
        )
    }

    #[test]
    fn a_panicking_fetch_becomes_an_internal_record() {
        let job = job();
        let (attempt, panicked) = tokio_uring::start(record_or_internal(&job, async {
            panic!("boom at byte 3");
        }));
        assert!(panicked);
        let rec = attempt.record;
        assert!(attempt.retry.is_none());
        let err = rec.error.expect("an error record");
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("boom at byte 3"), "{}", err.message);
        assert_eq!(rec.url, "http://a.test/");
        assert_eq!((rec.src.as_deref(), rec.line), (Some("list.txt"), Some(7)));
        assert!(rec.title.is_none());
    }

    #[test]
    fn a_normal_fetch_passes_through() {
        let job = job();
        let (attempt, panicked) = tokio_uring::start(record_or_internal(&job, async {
            Attempt {
                record: Record {
                    url: "http://a.test/".to_string(),
                    title: Some("T".to_string()),
                    ..Record::default()
                },
                retry: Some(None),
                blocked_on: None,
            }
        }));
        assert!(!panicked);
        assert_eq!(attempt.record.title.as_deref(), Some("T"));
        assert_eq!(attempt.retry, Some(None));
    }
}
