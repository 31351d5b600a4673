//! The engine: one OS thread per worker, each running its own tokio-uring runtime with its
//! own resolver, per-host scheduler and keep-alive pool. Jobs are routed by a hash of the
//! host through bounded channels (backpressure to intake); finished records go to one
//! `Sender<Record>` (the journal writer).
//!
//! The connection budget (`--concurrency`) is split evenly across workers and capped by the
//! file-descriptor limit, which is raised from soft to hard at start. The workers'
//! schedulers hold at most [`queue_bound`] jobs between them, so memory does not grow with
//! the list; intake blocks on the bounded channel past that. Counters are per worker (atomics
//! written by one thread, read by whoever asks for a [`Summary`]): no lock on the URL path.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dns::{DnsConfig, Resolver};
use crate::error::ErrorKind;
use crate::fetch::{run_job, Held, WorkerCtx};
use crate::html::FollowSelector;
use crate::intake::{host_key, parse_url, InputLine};
use crate::net::TlsContext;
use crate::options::FetchOptions;
use crate::pool::MAX_IDLE_CONNS;
use crate::record::{now_rfc3339, Record, RecordError};
use crate::sched::Scheduler;

mod gate;
pub use gate::SlotGate;

/// Jobs queued (not yet running) across all workers, per slot of the budget: every slot
/// that finishes finds work waiting. A queued job costs ~400 bytes (the job, its host's
/// queue and map entry, the host key), so at `-c 10000` the queues stay under ~8 MB.
pub const QUEUED_PER_SLOT: usize = 2;
/// Jobs queued across all workers at least, whatever the budget: look-ahead past a run of
/// one host's URLs for a small `-c`.
pub const MIN_QUEUED_TOTAL: usize = 16 * 1024;
/// Capacity of each intake-to-worker channel.
pub const JOB_CHANNEL_CAP: usize = 1024;
/// Jobs one of `workers` schedulers holds at most, for a connection budget of `budget`.
/// (A fixed 32 Ki per worker was 26 MB of queues on two workers, and 8x that on 16 cores.)
pub fn queue_bound(budget: usize, workers: usize) -> usize {
    let total = budget.saturating_mul(QUEUED_PER_SLOT).max(MIN_QUEUED_TOTAL);
    total.div_ceil(workers.max(1))
}

/// File descriptors kept back from the connection budget (stdio, journal, DNS sockets,
/// io_uring fds, spool files).
pub const RESERVED_FDS: u64 = 256;
/// How often a worker closes parked keep-alive connections that got too old.
pub const IDLE_SWEEP: Duration = Duration::from_secs(5);
/// io_uring submission queue entries per worker, at most.
pub const MAX_RING_ENTRIES: u32 = 4096;

/// One URL to fetch. `url` is the trimmed input line; `src`/`line` are set for spool input.
#[derive(Clone, Debug)]
pub struct Job {
    pub url: String,
    pub src: Option<Arc<str>>,
    pub line: Option<u64>,
}

/// Where finished records go (the journal writer thread's channel).
pub type RecordSender = std::sync::mpsc::SyncSender<Record>;

/// End-of-run (or live) counters, summed over workers.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub urls: u64,
    /// Records by outcome: `ok` plus one entry per error kind.
    pub ok: u64,
    pub errors: std::collections::BTreeMap<crate::error::ErrorKind, u64>,
    pub bytes_read: u64,
    pub peak_in_flight: u64,
    pub dns_lookups: u64,
    pub connections_opened: u64,
    pub connections_reused: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
    pub elapsed: std::time::Duration,
}

/// Why the engine could not start (clear one-line messages for the binary edge).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("io_uring is not available ({0}); ringcrawl needs Linux 5.11+ without a seccomp filter blocking io_uring_setup")]
    NoUring(String),
    /// The CA file or TLS configuration (its message names the file once).
    #[error(transparent)]
    Tls(#[from] crate::net::TlsConfigError),
    #[error(transparent)]
    Selector(#[from] crate::html::HtmlError),
    #[error("{0}")]
    Bind(String),
    #[error("cannot start worker thread: {0}")]
    Thread(String),
}

/// Returned by [`Engine::submit_line`] once the engine is stopping.
#[derive(Debug, thiserror::Error)]
#[error("engine is stopping")]
pub struct Stopped;

/// Live counters of one worker (or of the engine itself, for invalid URLs).
#[derive(Debug, Default)]
pub struct Counters {
    pub recorded: AtomicU64,
    pub ok: AtomicU64,
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    pub bytes_read: AtomicU64,
    pub dns_lookups: AtomicU64,
    pub conns_opened: AtomicU64,
    pub conns_reused: AtomicU64,
}

impl Counters {
    fn count(&self, rec: &Record) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(rec.bytes, Ordering::Relaxed);
        match &rec.error {
            None => self.ok.fetch_add(1, Ordering::Relaxed),
            Some(e) => {
                let i = ErrorKind::ALL
                    .iter()
                    .position(|k| *k == e.kind)
                    .expect("known kind");
                self.errors[i].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn add_to(&self, sum: &mut Summary) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sum.urls += get(&self.recorded);
        sum.ok += get(&self.ok);
        for (kind, n) in ErrorKind::ALL.iter().zip(&self.errors) {
            let n = get(n);
            if n > 0 {
                *sum.errors.entry(*kind).or_default() += n;
            }
        }
        sum.bytes_read += get(&self.bytes_read);
        sum.dns_lookups += get(&self.dns_lookups);
        sum.connections_opened += get(&self.conns_opened);
        sum.connections_reused += get(&self.conns_reused);
    }
}

/// A job with its parsed URL, as queued in a worker.
struct WorkItem {
    job: Job,
    url: url::Url,
}

/// The engine's counters, readable from any thread while it runs (progress, sd_notify
/// STATUS) and after it stopped.
pub struct EngineStats {
    workers: Vec<Arc<Counters>>,
    /// Counts records made at intake (invalid URLs).
    intake: Counters,
    submitted: AtomicU64,
    tls: TlsContext,
    gate: Arc<SlotGate>,
    started: Instant,
}

impl EngineStats {
    /// A snapshot of the counters.
    pub fn summary(&self) -> Summary {
        let mut sum = Summary::default();
        self.intake.add_to(&mut sum);
        for w in &self.workers {
            w.add_to(&mut sum);
        }
        sum.peak_in_flight = self.gate.peak() as u64;
        let tls = self.tls.stats();
        sum.tls_full_handshakes = tls.full_handshakes;
        sum.tls_resumed_handshakes = tls.resumed_handshakes;
        sum.elapsed = self.started.elapsed();
        sum
    }

    /// Jobs submitted so far.
    pub fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// Jobs submitted and not yet recorded.
    pub fn in_flight(&self) -> u64 {
        self.submitted().saturating_sub(self.summary().urls)
    }
}

/// Handle to the running worker threads. `Send + Sync`: intake threads share it.
pub struct Engine {
    senders: Vec<tokio::sync::mpsc::Sender<WorkItem>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<EngineStats>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
}

impl Engine {
    /// Start `opts.threads` workers. Every submitted job yields exactly one record on
    /// `records` (unless abandoned by [`Engine::drain`]).
    pub fn start(opts: &FetchOptions, records: RecordSender) -> Result<Engine, EngineError> {
        let threads = opts.threads.max(1);
        crate::net::tcp::check_bind_addrs(&opts.bind)
            .map_err(|e| EngineError::Bind(e.to_string()))?;
        let follow = opts
            .follow
            .as_deref()
            .map(FollowSelector::parse)
            .transpose()?;
        let tls = TlsContext::new(opts.ca_file.as_deref(), opts.insecure)?;
        let (budget, idle_cap) = connection_budget(opts.concurrency);
        let gate = Arc::new(SlotGate::new(budget, threads));
        // Rings are sized for a worker's even share; a worker that borrows more slots than
        // that just submits in more batches.
        let per_worker = budget.div_ceil(threads).max(1);
        let entries = (per_worker as u32)
            .next_power_of_two()
            .clamp(256, MAX_RING_ENTRIES);
        let dns = DnsConfig::system(opts.resolver);
        let opts = Arc::new(FetchOptions {
            concurrency: budget,
            ..opts.clone()
        });
        let draining = Arc::new(AtomicBool::new(false));

        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = tokio::sync::mpsc::channel(JOB_CHANNEL_CAP);
            let counters = Arc::new(Counters::default());
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
            let w = WorkerSetup {
                opts: opts.clone(),
                dns: dns.clone(),
                tls: tls.clone(),
                follow: follow.clone(),
                counters: counters.clone(),
                records: records.clone(),
                draining: draining.clone(),
                gate: gate.clone(),
                index: i,
                idle_cap: idle_cap / threads,
            };
            let handle = std::thread::Builder::new()
                .name(format!("ringcrawl-w{i}"))
                .spawn(move || worker_thread(w, rx, entries, ready_tx))
                .map_err(|e| EngineError::Thread(e.to_string()))?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(EngineError::NoUring(e)),
                Err(_) => return Err(EngineError::Thread("worker died at start".to_string())),
            }
            senders.push(tx);
            handles.push(handle);
            workers.push(counters);
        }
        let stats = Arc::new(EngineStats {
            workers,
            intake: Counters::default(),
            submitted: AtomicU64::new(0),
            tls,
            gate,
            started: Instant::now(),
        });
        Ok(Engine {
            senders,
            threads: handles,
            stats,
            records,
            draining,
        })
    }

    /// Parse and route one input line (from any source: see `intake`); a line that is not a
    /// fetchable URL becomes an `invalid_url` record at once. Blocks while the target
    /// worker's queue is full (backpressure).
    pub fn submit_line(&self, line: InputLine, src: Option<Arc<str>>) -> Result<(), Stopped> {
        let parsed = parse_url(&line);
        let job = Job {
            url: line.text,
            line: src.as_ref().map(|_| line.number),
            src,
        };
        self.route(job, parsed)
    }

    fn route(&self, job: Job, parsed: Result<url::Url, String>) -> Result<(), Stopped> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        let url = match parsed {
            Ok(url) => url,
            Err(message) => {
                let rec = invalid_record(job, message);
                self.stats.intake.count(&rec);
                return self.records.send(rec).map_err(|_| Stopped);
            }
        };
        let mut h = DefaultHasher::new();
        host_key(&url).hash(&mut h);
        let worker = (h.finish() % self.senders.len() as u64) as usize;
        self.senders[worker]
            .blocking_send(WorkItem { job, url })
            .map_err(|_| Stopped)
    }

    /// Jobs submitted and not yet recorded.
    pub fn in_flight(&self) -> u64 {
        self.stats.in_flight()
    }

    /// A snapshot of the counters.
    pub fn summary(&self) -> Summary {
        self.stats.summary()
    }

    /// The counters, shareable with other threads beyond the engine's lifetime.
    pub fn stats(&self) -> Arc<EngineStats> {
        self.stats.clone()
    }

    /// Wait until every submitted job has its record, then stop the workers.
    pub fn finish(mut self) -> Summary {
        self.senders.clear(); // workers see their channel close once it is empty
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.summary()
    }

    /// Stop taking jobs, let in-flight ones finish for up to `grace`, then abandon the rest
    /// (no record is written for an abandoned job), and stop the workers.
    pub fn drain(mut self, grace: Duration) -> Summary {
        self.draining.store(true, Ordering::Relaxed);
        self.senders.clear();
        let until = Instant::now() + grace;
        while Instant::now() < until && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Threads still running past the grace period are left to die with the process.
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.summary()
    }
}

/// The record for a line that is not a fetchable URL.
pub fn invalid_record(job: Job, message: String) -> Record {
    job_error_record(
        &job,
        ErrorKind::InvalidUrl,
        format!("invalid URL: {message}"),
    )
}

/// A failure record for `job` made without a fetch result (invalid input, a panic).
fn job_error_record(job: &Job, kind: ErrorKind, message: String) -> Record {
    Record {
        url: job.url.clone(),
        error: Some(RecordError {
            kind,
            message,
            hop: None,
        }),
        ts: now_rfc3339(),
        src: job.src.as_deref().map(str::to_owned),
        line: job.line,
        ..Record::default()
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit and return how many connections fit in
/// it: `wanted`, or less (said once on stderr) when the limit is too low; and how many idle
/// keep-alive connections may be kept besides (what the limit leaves, at most
/// [`MAX_IDLE_CONNS`]).
pub fn connection_budget(wanted: usize) -> (usize, usize) {
    split_fds(wanted, raise_nofile_limit())
}

fn split_fds(wanted: usize, limit: u64) -> (usize, usize) {
    let fit = limit.saturating_sub(RESERVED_FDS).max(1) as usize;
    if wanted > fit {
        tracing::warn!(
            "--concurrency {wanted} does not fit in the open-file limit ({limit}); running with {fit} connections"
        );
        return (fit, 0);
    }
    let budget = wanted.max(1);
    (budget, (fit - budget).min(MAX_IDLE_CONNS))
}

/// Set the soft open-file limit to the hard one; returns the soft limit in force.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass by valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// What a worker thread needs from the engine.
struct WorkerSetup {
    opts: Arc<FetchOptions>,
    dns: DnsConfig,
    tls: TlsContext,
    follow: Option<FollowSelector>,
    counters: Arc<Counters>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
    gate: Arc<SlotGate>,
    /// This worker's number (its waiter in `gate`).
    index: usize,
    /// Idle keep-alive connections this worker may keep.
    idle_cap: usize,
}

/// Body of a worker thread: build its tokio-uring runtime (reporting failure to `start`)
/// and run the worker loop until its channel closes.
fn worker_thread(
    w: WorkerSetup,
    rx: tokio::sync::mpsc::Receiver<WorkItem>,
    entries: u32,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
) {
    let rt = match crate::net::new_runtime(entries) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    rt.block_on(async move {
        let resolver = match Resolver::new(&w.dns) {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot set up DNS: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let ctx = WorkerCtx::new(w.opts, resolver, w.tls, w.follow, w.counters, w.idle_cap);
        let (done, done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let slots = WorkerSlots {
            gate: w.gate,
            index: w.index,
            done,
        };
        let ctx = Rc::new(ctx);
        worker_loop(ctx.clone(), rx, done_rx, w.records, w.draining, slots).await;
        ctx.close_idle().await;
    });
}

type Sched = Rc<RefCell<Scheduler<String, WorkItem>>>;

/// A worker's handle on the shared connection budget, and where its slots say they ended.
#[derive(Clone)]
struct WorkerSlots {
    gate: Arc<SlotGate>,
    index: usize,
    done: tokio::sync::mpsc::UnboundedSender<()>,
}

/// Take jobs into the scheduler and start slots until the channel is closed and all work
/// is done (or, when draining, until running slots finish).
async fn worker_loop(
    ctx: Rc<WorkerCtx>,
    mut rx: tokio::sync::mpsc::Receiver<WorkItem>,
    mut done_rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
    slots: WorkerSlots,
) {
    // The scheduler may use the whole budget; the gate keeps all workers together within it.
    let budget = slots.gate.budget();
    let sched: Sched = Rc::new(RefCell::new(Scheduler::new(budget, ctx.opts.per_host)));
    let max_queued = queue_bound(budget, slots.gate.workers());
    let mut open = true;
    let mut sweep = tokio::time::interval(IDLE_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
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
            // The slot future is spawned as it is: wrapping it in an `async move` block that
            // awaits it would store it twice (the captured value and the awaitee).
            tokio_uring::spawn(run_slot(
                ctx.clone(),
                sched.clone(),
                key,
                item,
                records.clone(),
                draining.clone(),
                slots.clone(),
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
            _ = sweep.tick() => ctx.close_expired_idle().await,
        }
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
    ctx: Rc<WorkerCtx>,
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
            // Stop early when the journal is gone or the engine drains; what this host still had
            // queued is then abandoned (the worker loop drops queued work when draining).
            let stop = records.send(rec).is_err() || draining.load(Ordering::Relaxed);
            if stop {
                sched.borrow_mut().abandon_queued();
            }
            match sched.borrow_mut().continue_slot(&key) {
                Some(next) => item = next,
                None => break,
            }
        }
        if let Some(h) = held {
            ctx.park(h).await;
        }
        slots.gate.release(slots.index);
        let _ = slots.done.send(());
    }
}

/// Run one job's future; a panic inside it becomes an `internal` error record for the job
/// (and `true`), so the slot goes on and the URL still gets exactly one record. A
/// combinator, not an `async fn`, so the job's future is stored once, not twice.
pub fn record_or_internal<'a>(
    job: &'a Job,
    fetch: impl std::future::Future<Output = Record> + 'a,
) -> impl std::future::Future<Output = (Record, bool)> + 'a {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fetch)
        .catch_unwind()
        .map(move |outcome| match outcome {
            Ok(rec) => (rec, false),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string());
                let message = format!("internal error (a ringcrawl bug, please report): {what}");
                (job_error_record(job, ErrorKind::Internal, message), true)
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
    fn queues_are_bounded_by_the_budget_not_the_list() {
        // Two slots' worth of work per slot, split over the workers...
        assert_eq!(queue_bound(10_000, 2), 10_000);
        assert_eq!(queue_bound(10_000, 16), 1_250);
        // ...and a floor of look-ahead for small budgets.
        assert_eq!(queue_bound(300, 2), 8 * 1024);
        assert_eq!(queue_bound(300, 0), 16 * 1024);
    }

    #[test]
    fn fds_left_after_the_budget_go_to_idle_connections() {
        // Plenty of fds: the budget as asked, idle connections up to the pool's cap.
        assert_eq!(split_fds(300, 1 << 20), (300, MAX_IDLE_CONNS));
        // Some left: those, and no more.
        let limit = RESERVED_FDS + 300 + 100;
        assert_eq!(split_fds(300, limit), (300, 100));
        // Too few for the budget itself: it shrinks, and nothing is kept idle.
        assert_eq!(split_fds(10_000, RESERVED_FDS + 500), (500, 0));
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
