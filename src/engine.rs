//! The engine: starts one worker per thread (`worker`), routes each submitted line to a
//! worker by a hash of its host (so one host's scheduling, DNS cache entries and keep-alive
//! connections live on one core, with no locks), and hands every job exactly one record on
//! the record channel (an invalid line gets its `invalid_url` record here, at intake).
//!
//! The connection budget (`--concurrency`) is shared by the workers through the slot gate
//! (`gate`) and capped by the file-descriptor limit, which is raised from soft to hard at
//! start. The workers' schedulers hold at most [`queue_bound`] jobs between them, so memory
//! does not grow with the list; intake blocks on the bounded channel past that. Counters are
//! per worker (`job::Counters`), summed on demand into a [`Summary`].

use std::hash::BuildHasher;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dns::{DnsConfig, Resolver};
use crate::error::ErrorKind;
use crate::gate::SlotGate;
use crate::html::FollowSelector;
use crate::intake::{hash_host_key, parse_url, InputLine, ARG_LINE};
use crate::job::{Counters, Health, Job, Summary, WorkItem};
use crate::net::{RuntimeThread, StartError, TlsConfigError, TlsContext};
use crate::options::FetchOptions;
use crate::pool::MAX_IDLE_CONNS;
use crate::worker::{RecordSender, WorkerSetup};

/// Jobs queued (not yet running) across all workers, per slot of the budget: every slot
/// that finishes finds work waiting. A queued job costs ~400 bytes (the job, its host's
/// queue and map entry, the host key), so at `-c 10000` the queues stay under ~8 MB.
pub const QUEUED_PER_SLOT: usize = 2;
/// Jobs queued across all workers at least, whatever the budget: look-ahead past a run of
/// one host's URLs for a small `-c`.
pub const MIN_QUEUED_TOTAL: usize = 16 * 1024;
/// Capacity of each intake-to-worker channel.
pub const JOB_CHANNEL_CAP: usize = 1024;
/// Intake blocked on a full channel goes on once the worker has taken this many jobs.
pub const INTAKE_BATCH: usize = JOB_CHANNEL_CAP / 8;
/// Jobs one of `workers` schedulers holds at most, for a connection budget of `budget`.
/// (A fixed number per worker would grow with the core count, not with the work.)
pub fn queue_bound(budget: usize, workers: usize) -> usize {
    let total = budget.saturating_mul(QUEUED_PER_SLOT).max(MIN_QUEUED_TOTAL);
    total.div_ceil(workers.max(1))
}

/// File descriptors kept back from the connection budget (stdio, journal, DNS sockets,
/// io_uring fds, spool files).
pub const RESERVED_FDS: u64 = 256;
/// After a worker failed, how long the others may take to finish the URLs they are
/// fetching before the engine gives up on them.
pub const FAILURE_GRACE: Duration = Duration::from_secs(5);
/// How often `finish` and `drain` look at the worker threads.
const FINISH_POLL: Duration = Duration::from_millis(10);
/// A submit waiting for room in a full queue ([`Engine::submit_line`],
/// [`Engine::submit_line_until`]) looks again after this, doubling up to [`SUBMIT_POLL_MAX`]:
/// the queue holds far more than the workers take in that time, so they never wait for intake.
pub const SUBMIT_POLL_MIN: Duration = Duration::from_micros(500);
/// See [`SUBMIT_POLL_MIN`]; also the longest a waiting submit takes to see a stop.
pub const SUBMIT_POLL_MAX: Duration = Duration::from_millis(5);
/// io_uring submission queue entries per worker, at most.
pub const MAX_RING_ENTRIES: u32 = 4096;

/// Why the engine could not start (clear one-line messages for the binary edge).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error(transparent)]
    Selector(#[from] crate::html::HtmlError),
    #[error(transparent)]
    Bind(#[from] crate::net::BindCheckError),
}

/// Returned by [`Engine::submit_line`] once the engine is stopping.
#[derive(Debug, thiserror::Error)]
#[error("engine is stopping")]
pub struct Stopped;

/// Stops an [`Engine`] from another thread (`fetch`'s signal handling) without owning it:
/// from then on submits fail with [`Stopped`], queued jobs and waiting retries are abandoned
/// without a record, and the fetches already running finish (with their records); then the
/// workers end and [`Engine::finish`] returns.
#[derive(Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
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
    health: Arc<Health>,
    started: Instant,
}

impl EngineStats {
    /// How the workers are doing (heartbeats, failure).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Why the engine failed (a worker panicked outside the per-URL catch), if it did.
    pub fn failure(&self) -> Option<String> {
        self.health.failure()
    }

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

    /// Fetches running right now (slots held), all workers together.
    pub fn running(&self) -> usize {
        self.gate.in_use()
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
    threads: Vec<RuntimeThread<()>>,
    stats: Arc<EngineStats>,
    records: RecordSender,
    draining: Arc<AtomicBool>,
}

impl Engine {
    /// Start `opts.threads` workers. Every submitted job yields exactly one record on
    /// `records` (unless abandoned by [`Engine::drain`]).
    pub fn start(opts: &FetchOptions, records: RecordSender) -> Result<Engine, EngineError> {
        let threads = opts.threads.max(1);
        crate::net::check_bind_addrs(&opts.bind)?;
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
        let health = Arc::new(Health::new(threads));
        let ip_gate = opts
            .per_ip
            .map(|limit| Arc::new(crate::ipgate::IpGate::new(limit, threads)));
        let max_queued = queue_bound(budget, threads);

        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = tokio::sync::mpsc::channel(JOB_CHANNEL_CAP);
            let counters = Arc::new(Counters::default());
            let w = WorkerSetup {
                opts: opts.clone(),
                tls: tls.clone(),
                follow: follow.clone(),
                counters: counters.clone(),
                records: records.clone(),
                draining: draining.clone(),
                gate: gate.clone(),
                health: health.clone(),
                index: i,
                idle_cap: idle_cap / threads,
                max_queued,
                ip_gate: ip_gate.clone(),
            };
            let dns = dns.clone();
            let handle = crate::net::spawn_runtime(
                format!("ringcrawl-w{i}"),
                entries,
                move || Resolver::new(&dns).map_err(|e| format!("cannot set up DNS: {e}")),
                move |resolver| crate::worker::run(w, resolver, rx),
            )?;
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
            health,
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

    /// Parse and route one input line (from [`crate::intake::LineReader`], which knows
    /// about over-long and non-UTF-8 lines); a line that is not a fetchable URL becomes an
    /// `invalid_url` record at once. The record carries the line's number unless it is a
    /// command-line argument ([`ARG_LINE`]). Blocks while the target worker's queue is full
    /// (backpressure).
    pub fn submit_line(&self, line: InputLine, src: Option<Arc<str>>) -> Result<(), Stopped> {
        self.route(line, src, None)
    }

    /// [`Engine::submit_line`] that gives up ([`Stopped`]) once `stop` is set instead of
    /// waiting on a full queue (or a full record channel) for as long as it stays full: a
    /// waiting caller looks at `stop` at least every [`SUBMIT_POLL_MAX`].
    pub fn submit_line_until(
        &self,
        line: InputLine,
        src: Option<Arc<str>>,
        stop: &AtomicBool,
    ) -> Result<(), Stopped> {
        self.route(line, src, Some(stop))
    }

    fn route(
        &self,
        line: InputLine,
        src: Option<Arc<str>>,
        stop: Option<&AtomicBool>,
    ) -> Result<(), Stopped> {
        let parsed = parse_url(&line);
        let number = (line.number != ARG_LINE).then_some(line.number);
        let job = Job::new(line.text, src, number);
        if self.draining.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        let sent = match parsed {
            Ok(url) => {
                // Which worker: foldhash, fixed seed (only spreads hosts over workers).
                let mut h = foldhash::fast::FixedState::with_seed(17).build_hasher();
                hash_host_key(&url, &mut h);
                let worker = (h.finish() % self.senders.len() as u64) as usize;
                let tx = &self.senders[worker];
                send_job(tx, WorkItem { job, url }, stop)
            }
            Err(message) => {
                let rec =
                    job.error_record(ErrorKind::InvalidUrl, format!("invalid URL: {message}"));
                self.stats.intake.count(&rec);
                match stop {
                    None => self.records.send(rec).map_err(|_| Stopped),
                    Some(stop) => send_until(
                        rec,
                        stop,
                        |rec| match self.records.try_send(rec) {
                            Ok(()) => Ok(None),
                            Err(std::sync::mpsc::TrySendError::Full(rec)) => Ok(Some(rec)),
                            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(Stopped),
                        },
                        || true,
                    ),
                }
            }
        };
        if sent.is_err() {
            self.stats.submitted.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Jobs submitted and not yet recorded.
    pub fn in_flight(&self) -> u64 {
        self.stats.in_flight()
    }

    /// A snapshot of the counters.
    pub fn summary(&self) -> Summary {
        self.stats.summary()
    }

    /// A handle that stops the engine from another thread (see [`StopHandle`]).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.draining.clone())
    }

    /// The counters, shareable with other threads beyond the engine's lifetime.
    pub fn stats(&self) -> Arc<EngineStats> {
        self.stats.clone()
    }

    /// Wait until every submitted job has its record, then stop the workers. After a
    /// failure (see [`EngineStats::failure`]) the workers drain, and this waits for them
    /// at most [`FAILURE_GRACE`].
    pub fn finish(mut self) -> Summary {
        self.senders.clear(); // workers see their channel close once it is empty
        let mut failed_at = None;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if self.stats.health.has_failed() {
                let since = *failed_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= FAILURE_GRACE {
                    break;
                }
            }
            std::thread::sleep(FINISH_POLL);
        }
        self.join_finished();
        self.summary()
    }

    /// Join the worker threads that have ended; the others are left to die with the
    /// process.
    fn join_finished(&mut self) {
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    /// Stop taking jobs, let in-flight ones finish for up to `grace`, then abandon the rest
    /// (no record is written for an abandoned job), and stop the workers.
    pub fn drain(mut self, grace: Duration) -> Summary {
        self.draining.store(true, Ordering::Relaxed);
        self.senders.clear();
        let until = Instant::now() + grace;
        while Instant::now() < until && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(FINISH_POLL);
        }
        self.join_finished();
        self.summary()
    }
}

/// Queue `item` for its worker. While the worker's channel is full, wait until it has room
/// for [`INTAKE_BATCH`] jobs, not one: a worker that takes a job per finished one would
/// otherwise wake intake for every job. [`Stopped`] once `stop` (when given) is set or the
/// worker is gone.
fn send_job(
    tx: &tokio::sync::mpsc::Sender<WorkItem>,
    item: WorkItem,
    stop: Option<&AtomicBool>,
) -> Result<(), Stopped> {
    use tokio::sync::mpsc::error::TrySendError;
    static NEVER: AtomicBool = AtomicBool::new(false);
    send_until(
        item,
        stop.unwrap_or(&NEVER),
        |item| match tx.try_send(item) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(item)) => Ok(Some(item)),
            Err(TrySendError::Closed(_)) => Err(Stopped),
        },
        || tx.capacity() >= INTAKE_BATCH || tx.is_closed(),
    )
}

/// Offer `item` with `try_send` (which hands it back while the queue is full) until it is
/// taken; after a refusal, try again once `room` says so, looking every [`SUBMIT_POLL_MIN`]
/// doubling to [`SUBMIT_POLL_MAX`]. [`Stopped`] once `stop` is set or the queue is gone.
pub(crate) fn send_until<T>(
    mut item: T,
    stop: &AtomicBool,
    mut try_send: impl FnMut(T) -> Result<Option<T>, Stopped>,
    room: impl Fn() -> bool,
) -> Result<(), Stopped> {
    let mut wait = SUBMIT_POLL_MIN;
    loop {
        match try_send(item)? {
            None => return Ok(()),
            Some(back) => item = back,
        }
        loop {
            if stop.load(Ordering::Acquire) {
                return Err(Stopped);
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(SUBMIT_POLL_MAX);
            if room() {
                break;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize) -> WorkItem {
        let text = format!("http://a.test/{i}");
        let url = url::Url::parse(&text).expect("a URL");
        WorkItem {
            job: Job::new(text, None, None),
            url,
        }
    }

    /// Intake waiting on a full channel goes on only once a batch is free, and in order;
    /// a stop ends the wait.
    #[test]
    fn a_full_channel_takes_the_next_job_once_a_batch_is_free() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(JOB_CHANNEL_CAP);
        for i in 0..JOB_CHANNEL_CAP {
            send_job(&tx, item(i), None).expect("room");
        }
        let done = Arc::new(AtomicBool::new(false));
        let sender = {
            let (tx, done) = (tx.clone(), done.clone());
            std::thread::spawn(move || {
                let sent = send_job(&tx, item(JOB_CHANNEL_CAP), None);
                done.store(true, Ordering::Release);
                sent
            })
        };
        // The sender finds the channel full (a sender that finds room goes on at once).
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..INTAKE_BATCH - 1 {
            rx.try_recv().expect("a job");
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !done.load(Ordering::Acquire),
            "went on before a batch was free: capacity {}",
            tx.capacity()
        );
        rx.try_recv().expect("a job");
        assert!(sender.join().expect("no panic").is_ok());
        let mut last = None;
        while let Ok(w) = rx.try_recv() {
            last = Some(w.job.url.clone());
        }
        assert_eq!(last.as_deref(), Some("http://a.test/1024"));

        for i in 0..JOB_CHANNEL_CAP {
            send_job(&tx, item(i), None).expect("room");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let waiting = {
            let (tx, stop) = (tx.clone(), stop.clone());
            std::thread::spawn(move || send_job(&tx, item(0), Some(&stop)))
        };
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Release);
        assert!(waiting.join().expect("no panic").is_err());
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
    fn a_submit_waiting_on_a_full_queue_gives_up_on_stop() {
        let stop = AtomicBool::new(false);
        let mut tries = 0;
        let r = send_until(
            7,
            &stop,
            |item| {
                tries += 1;
                if tries == 3 {
                    stop.store(true, Ordering::Release);
                }
                Ok(Some(item))
            },
            || true,
        );
        assert!(r.is_err());
        assert_eq!(tries, 3);
        let mut tries = 0;
        let r = send_until(
            7,
            &AtomicBool::new(false),
            |item| {
                tries += 1;
                Ok((tries < 4).then_some(item))
            },
            || true,
        );
        assert!(r.is_ok() && tries == 4);
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
}
