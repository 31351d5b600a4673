//! One worker: a thread with its own tokio-uring runtime, resolver, per-host scheduler,
//! read buffers and keep-alive pool ([`FetchCtx`]). It takes routed jobs from its channel
//! into the scheduler (at most `max_queued` waiting), starts a slot for each job the
//! scheduler and the shared slot gate allow, and runs each slot's jobs (one host, back to
//! back on one connection) through `fetch`. Every job ends in exactly one record on the
//! record channel, a panic included (an `internal` record).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use crate::error::ErrorKind;
use crate::failpoint;
use crate::fetch::{run_job, FetchCtx, Held};
use crate::gate::SlotGate;
use crate::html::FollowSelector;
use crate::intake::host_key;
use crate::job::{panic_message, Counters, Health, Job, WorkItem};
use crate::net::TlsContext;
use crate::options::FetchOptions;
use crate::record::Record;
use crate::sched::Scheduler;

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
}

type Sched = Rc<RefCell<Scheduler<String, WorkItem>>>;

/// A worker's handle on the shared connection budget and health, and where its slots say
/// they ended.
#[derive(Clone)]
struct WorkerSlots {
    gate: Arc<SlotGate>,
    health: Arc<Health>,
    index: usize,
    done: tokio::sync::mpsc::UnboundedSender<()>,
    /// A slot of this worker panicked (its bookkeeping is lost).
    broken: Rc<Cell<bool>>,
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
    let ctx = Rc::new(FetchCtx::new(
        w.opts, resolver, w.tls, w.follow, w.counters, w.idle_cap,
    ));
    let (done, done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let slots = WorkerSlots {
        gate: w.gate,
        health: w.health,
        index: w.index,
        done,
        broken: Rc::new(Cell::new(false)),
    };
    worker_loop(
        ctx.clone(),
        rx,
        done_rx,
        w.records,
        w.draining,
        slots,
        w.max_queued,
    )
    .await;
    ctx.close_idle().await;
}

/// Take jobs into the scheduler and start slots until the channel is closed and all work
/// is done (or, when draining, until running slots finish).
async fn worker_loop(
    ctx: Rc<FetchCtx>,
    mut rx: tokio::sync::mpsc::Receiver<WorkItem>,
    mut done_rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
    slots: WorkerSlots,
    max_queued: usize,
) {
    // The scheduler may use the whole budget; the gate keeps all workers together within it.
    let budget = slots.gate.budget();
    let sched: Sched = Rc::new(RefCell::new(Scheduler::new(budget, ctx.opts.per_host)));
    let mut open = true;
    let mut sweep = tokio::time::interval(IDLE_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        slots.health.beat(slots.index);
        if slots.health.has_failed() {
            // Another worker failed (this one's own failure ends the loop by unwinding).
            draining.store(true, Ordering::Release);
        }
        if draining.load(Ordering::Relaxed) {
            // Abandon what has not started; running slots finish their current job only.
            sched.borrow_mut().abandon_queued();
        }
        let mut starved = false;
        loop {
            let next = sched.borrow_mut().start_next_if(|| {
                starved = !slots.gate.try_acquire(slots.index);
                !starved
            });
            let Some((key, item)) = next else { break };
            // The slot future is spawned inside combinators, not an `async move` block that
            // awaits it (which would store it twice: the captured value and the awaitee).
            let slot = run_slot(
                ctx.clone(),
                sched.clone(),
                key,
                item,
                records.clone(),
                draining.clone(),
                slots.clone(),
            );
            let watch = slots.clone();
            tokio_uring::spawn(std::panic::AssertUnwindSafe(slot).catch_unwind().map(
                move |ended| {
                    if let Err(panic) = ended {
                        watch.failed(&*panic);
                    }
                },
            ));
        }
        let (idle, queued) = {
            let s = sched.borrow();
            (s.is_idle(), s.queued())
        };
        // Published after starting what could start, so other workers know at once whether
        // they may borrow this worker's idle share.
        slots.gate.set_queued(slots.index, queued);
        if !open && idle {
            break;
        }
        let take = open && queued < max_queued;
        tokio::select! {
            item = rx.recv(), if take => match item {
                Some(item) => {
                    let key = host_key(&item.url);
                    sched.borrow_mut().push(key, item);
                }
                None => open = false,
            },
            _ = done_rx.recv() => {}
            // Another worker gave a slot back while this one had work and no slot.
            _ = slots.gate.starved(slots.index), if starved => {}
            _ = sweep.tick() => {
                failpoint::hit("worker-sweep");
                ctx.close_expired_idle().await;
            }
        }
        if slots.broken.get() {
            // A slot of this worker panicked: its accounting is gone, so the scheduler
            // can never become idle. Stop now.
            break;
        }
    }
}

impl WorkerSlots {
    /// A slot of this worker panicked outside the per-URL catch.
    fn failed(&self, panic: &(dyn std::any::Any + Send)) {
        self.broken.set(true);
        self.health.fail(format!(
            "worker {} failed: a slot panicked: {}",
            self.index,
            panic_message(panic)
        ));
        // Wake the worker loop so it sees the failure at once.
        let _ = self.done.send(());
    }
}

/// One slot: run jobs of one host back to back on one keep-alive connection. (An `async
/// move` block, not an `async fn`, so the arguments are stored once in the task: see
/// [`run_job`].)
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future: see run_job"
)]
fn run_slot(
    ctx: Rc<FetchCtx>,
    sched: Sched,
    key: String,
    mut item: WorkItem,
    records: RecordSender,
    draining: Arc<AtomicBool>,
    slots: WorkerSlots,
) -> impl std::future::Future<Output = ()> {
    async move {
        let c = &ctx.counters;
        let mut held: Option<Held> = None;
        loop {
            let next_on_host = sched.borrow().has_queued(&key);
            let (rec, panicked) = record_or_internal(
                &item.job,
                run_job(&ctx, &item.job, item.url, &mut held, next_on_host),
            )
            .await;
            if panicked {
                held = None; // whatever state the connection was left in, it is not reused
            }
            c.dns_lookups
                .store(ctx.resolver.stats().lookups, Ordering::Relaxed);
            c.count(&rec);
            // Stop early when the journal is gone or the engine drains; what this host still
            // had queued is then abandoned (the worker loop drops queued work when draining).
            let stop = records.send(rec).is_err() || draining.load(Ordering::Relaxed);
            if stop {
                sched.borrow_mut().abandon_queued();
            }
            failpoint::hit("slot-next");
            match sched.borrow_mut().continue_slot(&key) {
                Some(next) => item = next,
                None => break,
            }
        }
        if let Some(h) = held {
            ctx.park(h).await;
        }
        failpoint::hit("slot-release");
        slots.gate.release(slots.index);
        let _ = slots.done.send(());
    }
}

/// Run one job's future; a panic inside it becomes an `internal` error record for the job
/// (and `true`), so the slot goes on and the URL still gets exactly one record. A
/// combinator, not an `async fn`, so the job's future is stored once, not twice.
fn record_or_internal<'a>(
    job: &'a Job,
    fetch: impl std::future::Future<Output = Record> + 'a,
) -> impl std::future::Future<Output = (Record, bool)> + 'a {
    std::panic::AssertUnwindSafe(fetch)
        .catch_unwind()
        .map(move |outcome| match outcome {
            Ok(rec) => (rec, false),
            Err(panic) => {
                let message = format!(
                    "internal error (a ringcrawl bug, please report): {}",
                    panic_message(&*panic)
                );
                (job.error_record(ErrorKind::Internal, message), true)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            url: "http://a.test/".to_string(),
            src: Some(Arc::from("list.txt")),
            line: Some(7),
        }
    }

    #[test]
    fn a_panicking_fetch_becomes_an_internal_record() {
        let job = job();
        let (rec, panicked) = tokio_uring::start(record_or_internal(&job, async {
            panic!("boom at byte 3");
        }));
        assert!(panicked);
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
        let (rec, panicked) = tokio_uring::start(record_or_internal(&job, async {
            Record {
                url: "http://a.test/".to_string(),
                title: Some("T".to_string()),
                ..Record::default()
            }
        }));
        assert!(!panicked);
        assert_eq!(rec.title.as_deref(), Some("T"));
    }
}
