//! `ringcrawl run`: the spool daemon. Owns the event loop that claims list files, runs one
//! thread per list in progress, moves lists out of `cur/` once their records are durable
//! and their results written (see `spool` for the exactly-once scheme and the trust model),
//! and handles signals, sd_notify and the watchdog.
//!
//! - Signals (the `signals` thread forwards them as events):
//!   SIGTERM/SIGINT stop claiming, stop the list threads, drain the engine for up to
//!   `drain_grace` (not at all while the journal is paused), stop the journal writer and
//!   return Ok (exit 0); SIGHUP sends `RELOADING=1`, reloads the config file, applies its
//!   reloadable part (`config::Reloadable`), logs each restart-only change it keeps, reopens
//!   the journal, then sends `READY=1`; SIGUSR1 only reopens the journal (logrotate).
//! - One thread per list in `cur/`: it feeds the list's lines through `spool::feed` (the one
//!   `intake` reader; the daemon's stop flag ends a read at the next buffer and a wait for
//!   queue room within a few ms, so no list can hold up SIGTERM), then waits until the list's
//!   records are durable, then writes its results (`spool::results`).
//! - Entries that are not lists (a FIFO, a device, a directory, a symbolic link, a socket, a
//!   name with a control character, the journal itself) go to `bad/`, each logged once.
//! - A paused journal (full disk: see `journal`) pauses claiming; the engine's backpressure
//!   pauses intake; STATUS says why; the watchdog counts the blocked workers as idle.
//! - sd_notify: READY once recovery is done and the engine runs (EXTEND_TIMEOUT_USEC while
//!   a long recovery scan runs before it), STATUS with live counts every second, WATCHDOG
//!   from the event loop (only when `WATCHDOG_USEC` is set) while the journal writer and the
//!   workers show they are alive, STOPPING.
//! - New files are noticed through inotify on `new/` and a periodic rescan.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, BufReader};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::config::Config;
use crate::engine::EngineStats;
use crate::engine::{Engine, EngineError};
use crate::intake::{ReadError, ReadLimits};
use crate::job::Summary;
use crate::journal::{
    lock, Journal, JournalControl, JournalError, JournalSetup, OnOpen, Opened, Progress, Target,
};
use crate::metrics::{ClusterGauges, MetricsError, MetricsServer, Sources};
use crate::options::FetchOptions;
use crate::spool::names::escape;
use crate::spool::results::{self, ListEnd, ResultsJob};
use crate::spool::scan::{self, Want};
use crate::spool::state::{History, HISTORY_FILE};
use crate::spool::{
    self, Claim, Entry, FeedStats, InProgress, JobSink, LineSet, Outcome, Spool, SpoolError,
};
use crate::worker::RecordSender;

/// Period of STATUS updates (and the longest event-loop sleep).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A worker that has not shown it is alive for this long is stuck (a worker's loop turns at
/// least every `worker::IDLE_SWEEP`, busy or idle), unless the journal is paused.
pub const WORKER_STALE_AFTER: Duration = Duration::from_secs(15);
/// A journal writer that has not shown it is alive for this long is stuck (it beats at
/// least every `journal::CONTROL_POLL` outside a system call, paused or not).
pub const JOURNAL_STALE_AFTER: Duration = Duration::from_secs(15);
/// How often `done/` and `out/` retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Read buffer of one list reader.
pub const READER_BUFFER: usize = 64 * 1024;
/// While the recovery scan runs before READY, systemd's start timeout is extended by this
/// much (`EXTEND_TIMEOUT_USEC`)...
pub const EXTEND_BY: Duration = Duration::from_secs(30);
/// ...when recovery begins and then every this often.
pub const EXTEND_EVERY: Duration = Duration::from_secs(10);
/// After a list's results could not be written (a full spool disk...), the list stays in
/// `cur/` and they are tried again after this, doubling up to [`RESULTS_RETRY_MAX`].
pub const RESULTS_RETRY_FIRST: Duration = Duration::from_secs(1);
/// See [`RESULTS_RETRY_FIRST`].
pub const RESULTS_RETRY_MAX: Duration = Duration::from_secs(60);
/// inotify read buffer.
const INOTIFY_BUFFER: usize = 4096;

/// Why the daemon stopped with an error (one-line messages).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("cannot start thread: {0}")]
    Thread(io::Error),
    #[error("journal writer stopped unexpectedly: {0}")]
    JournalDied(JournalError),
    #[error("engine still referenced by a reader at shutdown")]
    EngineShared,
    #[error("internal error (a ringcrawl bug, please report): {0}; exiting so the service restarts (recovery fetches what had no record)")]
    EngineFailed(String),
}

/// What the fetch engine must offer the daemon ([`Engine`] in production, a fake in tests).
pub trait Backend: JobSink + Send + 'static {
    fn in_flight(&self) -> u64;
    fn drain(self, grace: Duration) -> Summary;
    /// Why the engine failed (a worker panicked), if it did.
    fn failure(&self) -> Option<String>;
    /// How long ago the least recently alive worker showed it was alive.
    fn stalest_worker(&self) -> Duration;
    /// The engine's counters, for the metrics endpoint (`None`: nothing to report).
    fn engine_stats(&self) -> Option<Arc<EngineStats>> {
        None
    }
    /// A cluster node's partitions and lag, for the metrics endpoint.
    fn cluster_gauges(&self) -> Option<Arc<ClusterGauges>> {
        None
    }
    /// More for the STATUS line (a cluster node's partitions and lag).
    fn status(&self) -> Option<String> {
        None
    }
    /// Whether the records of submitted lines come to this daemon's journal (false for a
    /// cluster node, which publishes its spool's lines to the cluster).
    fn records_here(&self) -> bool {
        true
    }
}

impl Backend for Engine {
    fn in_flight(&self) -> u64 {
        Engine::in_flight(self)
    }
    fn drain(self, grace: Duration) -> Summary {
        Engine::drain(self, grace)
    }
    fn failure(&self) -> Option<String> {
        self.stats().failure()
    }
    fn stalest_worker(&self) -> Duration {
        self.stats().health().stalest()
    }
    fn engine_stats(&self) -> Option<Arc<EngineStats>> {
        Some(self.stats())
    }
}

/// Inputs of the event loop.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM / SIGINT.
    Terminate,
    /// SIGHUP.
    Reload,
    /// SIGUSR1.
    Reopen,
    /// Something appeared in `new/`.
    Wake,
    /// Journal records became durable.
    Durable(Progress),
    /// A list's reader finished (or failed on, or was stopped in) the file `src` in `cur/`.
    FeedDone {
        src: String,
        result: Result<FeedStats, ReadError>,
    },
    /// A list's results are written (records, or `None`: stopped first) or could not be.
    Finished {
        src: String,
        result: Result<Option<u64>, SpoolError>,
    },
}

/// Run the daemon with the real engine until SIGTERM/SIGINT. Blocks; returns Ok after a
/// clean drain (exit 0).
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    let (tx, rx) = mpsc::channel();
    forward_signals(tx.clone())?;
    serve(cfg, Engine::start, tx, rx).map(|_| ())
}

/// The daemon with an injectable engine and event channel (`run` wires real signals; tests
/// send [`Event::Terminate`] themselves). Returns the engine's final summary.
pub fn serve<B, F>(
    cfg: Config,
    start: F,
    tx: Sender<Event>,
    rx: Receiver<Event>,
) -> Result<Summary, DaemonError>
where
    B: Backend + Sync,
    F: FnOnce(&FetchOptions, RecordSender) -> Result<B, EngineError>,
{
    tracing::info!(
        "ringcrawl {} daemon starting: {}",
        env!("CARGO_PKG_VERSION"),
        cfg.summary_line()
    );
    let spool = Spool::open(&cfg.restart.spool)?;
    // Listening comes early: a taken port fails the start before any work.
    let metrics = match cfg.restart.metrics_listen {
        Some(addr) => {
            let sources = Arc::new(Sources::new(cfg.restart.spool.clone()));
            Some((MetricsServer::start(addr, sources.clone())?, sources))
        }
        None => None,
    };
    let (history, reseeded) = load_history(&spool, &cfg)?;
    let history = Arc::new(Mutex::new(history));
    let out_dir = spool.path(results::OUT, "");
    match results::acls_supported(&out_dir) {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(dir = %out_dir.display(), "no POSIX ACLs on the spool's file system: submitters cannot read their results in out/")
        }
        Err(e) => {
            tracing::warn!(dir = %out_dir.display(), error = %e, "cannot check POSIX ACL support of out/")
        }
    }

    // The journal's torn tail is repaired here, before the recovery scan reads it; each file
    // the writer opens is added to the journal history before it is written to.
    let (ptx, prx) = mpsc::channel::<Progress>();
    let hook = history.clone();
    let on_open: OnOpen = Box::new(move |o: &Opened<'_>| lock(&hook).begin(o));
    let (journal, records) = Journal::start_with(JournalSetup {
        target: Target::File(cfg.live.journal.clone()),
        policy: cfg.live.fsync,
        progress: Some(ptx),
        encode: crate::record::Record::write_line,
        on_open: Some(on_open),
        pause_on_error: true,
    })?;
    if let Some((_, sources)) = &metrics {
        sources.set_journal(journal.control());
    }
    let fwd_tx = tx.clone();
    let forwarder = std::thread::Builder::new()
        .name("journal-progress".into())
        .spawn(move || {
            for p in prx {
                if fwd_tx.send(Event::Durable(p)).is_err() {
                    return;
                }
            }
        })
        .map_err(DaemonError::Thread)?;

    let mut d = Daemon {
        cfg,
        spool,
        journal_ctl: journal.control(),
        backend: None,
        tx,
        stop: Arc::new(AtomicBool::new(false)),
        history,
        active: HashMap::new(),
        reported: HashSet::new(),
        want_scan: true,
        pending: 0,
        files_done: 0,
        files_bad: 0,
    };
    let recovered = d.recover(reseeded)?;
    let backend = Arc::new(start(&d.cfg.restart.fetch, records)?);
    if let Some((_, sources)) = &metrics {
        if let Some(stats) = backend.engine_stats() {
            sources.set_engine(stats);
        }
        if let Some(gauges) = backend.cluster_gauges() {
            sources.set_cluster(gauges);
        }
    }
    d.backend = Some(backend);
    start_inotify(&d.spool, d.tx.clone());
    for (list, want, skip) in recovered {
        d.start_list(list, want, Some(skip))?;
    }
    d.prune_history();
    if let Some(age) = d.cfg.live.done_retention {
        d.purge(age);
    }
    notify(&[NotifyState::Ready]);
    tracing::info!(spool = %d.cfg.restart.spool.display(), journal = %d.cfg.live.journal.display(), "ready");
    let loop_result = d.event_loop(&rx, &journal);
    notify(&[NotifyState::Stopping]);
    let summary = d.shutdown(&rx, forwarder, journal);
    // Scrapes went on during the drain; the endpoint closes with the daemon.
    if let Some((server, _)) = metrics {
        server.stop();
    }
    match (loop_result, summary) {
        (Err(LoopEnd::JournalDied), Err(DaemonError::Journal(e))) => {
            Err(DaemonError::JournalDied(e))
        }
        (Err(LoopEnd::JournalDied), Ok(_)) => Err(DaemonError::JournalDied(JournalError::Panicked)),
        (Err(LoopEnd::Error(e)), _) => Err(e),
        (_, summary) => summary,
    }
}

/// The journal history; when there is none (yet, or any more) but lists are in `cur/`, it
/// starts with the journal files they may have records in, and `true`: their claim records'
/// segment numbers then mean nothing.
fn load_history(spool: &Spool, cfg: &Config) -> Result<(History, bool), DaemonError> {
    let path = spool.path(spool::CUR, HISTORY_FILE);
    let state_err = |cause| SpoolError::State {
        path: path.clone(),
        cause,
    };
    let mut history = History::load(path.clone()).map_err(state_err)?;
    if history.is_empty() {
        if let Some(oldest) = spool.claim_ctimes()?.into_iter().min() {
            let files = scan::journal_candidates(&cfg.live.journal, oldest);
            history.seed(&files).map_err(state_err)?;
            return Ok((history, true));
        }
    } else if let Some(last) = history.segments().last() {
        if std::path::Path::new(&last.path) != cfg.live.journal {
            tracing::info!(was = last.path, now = %cfg.live.journal.display(), "journal path changed since the last run: recovery reads the old journal too");
        }
    }
    Ok((history, false))
}

/// Whether the watchdog may be pinged: the journal writer showed it is alive recently, and so
/// did the workers, or they are blocked on a paused journal (idle by design). `Err` says
/// what looks stuck.
fn watchdog_ok(
    stalest_worker: Duration,
    stalest_writer: Duration,
    journal_paused: bool,
) -> Result<(), &'static str> {
    if stalest_writer > JOURNAL_STALE_AFTER {
        return Err("the journal writer shows no sign of life");
    }
    if stalest_worker > WORKER_STALE_AFTER && !journal_paused {
        return Err("a worker shows no sign of life");
    }
    Ok(())
}

/// Why the event loop ended with an error.
enum LoopEnd {
    JournalDied,
    Error(DaemonError),
}

impl From<DaemonError> for LoopEnd {
    fn from(e: DaemonError) -> Self {
        LoopEnd::Error(e)
    }
}

struct Active {
    /// Where its records are in the journal.
    want: Want,
    /// Who may read its results.
    owner: u32,
    submitted: Arc<AtomicU64>,
    durable: u64,
    /// The reader reached the end of the file (or failed).
    eof: bool,
    /// The reader failed, and why: the file goes to `bad/`.
    failed: Option<String>,
    /// The reader was stopped by shutdown: the file stays in `cur/`.
    stopped: bool,
    /// Tells the list's thread how the list ended, once its records are durable; taken
    /// when sent.
    finish: Option<Sender<ListEnd>>,
    /// How it ended, once `finish` was sent.
    end: Option<ListEnd>,
    /// Writing its results failed this many times in a row...
    results_failures: u32,
    /// ...and is tried again then.
    retry_results: Option<Instant>,
    thread: Option<JoinHandle<()>>,
}

struct Daemon<B: Backend + Sync> {
    cfg: Config,
    spool: Spool,
    journal_ctl: JournalControl,
    /// `None` before the engine starts and during shutdown, once it is handed to `drain`.
    backend: Option<Arc<B>>,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    active: HashMap<String, Active>,
    /// Entries of `new/` that could not be claimed or moved to `bad/` (said once).
    reported: HashSet<OsString>,
    want_scan: bool,
    pending: usize,
    files_done: u64,
    files_bad: u64,
}

impl<B: Backend + Sync> Daemon<B> {
    /// Entries in `cur/` at start: send what is not a list to `bad/`, scan the journal
    /// history once, and return, per list, where its records are and the lines that
    /// already have one.
    fn recover(
        &mut self,
        reseeded: bool,
    ) -> Result<Vec<(spool::Opened, Want, LineSet)>, DaemonError> {
        let history = self.history.clone();
        let is_journal = |dev, ino| lock(&history).holds(dev, ino);
        let first = lock(&self.history).first();
        let known = |seq| !reseeded && lock(&history).segments().iter().any(|s| s.seq == seq);
        let mut lists = Vec::new();
        let mut wanted = HashMap::new();
        for entry in self.spool.in_progress(&is_journal)? {
            match entry {
                InProgress::Unfit { name, why } => {
                    self.reject(spool::CUR, name, &why.to_string());
                }
                InProgress::List {
                    list,
                    claim,
                    ctime_ts,
                    ..
                } => {
                    let want = match claim {
                        Some(c) if known(c.journal.seq) => Want {
                            from: c.journal,
                            not_before: None,
                        },
                        Some(c) => {
                            tracing::warn!(src = list.name, segment = c.journal.seq, "the journal history lacks this list's claim segment (was cur/.journals removed?): its records are told apart by their time");
                            Want {
                                from: first,
                                not_before: Some(ctime_ts),
                            }
                        }
                        None => {
                            tracing::warn!(src = list.name, "list claimed by an older version (no claim record): its records are told apart by their time");
                            Want {
                                from: first,
                                not_before: Some(ctime_ts),
                            }
                        }
                    };
                    wanted.insert(list.name.clone(), want.clone());
                    lists.push((list, want));
                }
            }
        }
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        notify(&[extend_timeout()]);
        let started = Instant::now();
        let mut extended = Instant::now();
        let segments = lock(&self.history).segments().to_vec();
        let (mut found, walked) = scan::journaled_lines(&segments, &wanted, &mut |_| {
            if extended.elapsed() >= EXTEND_EVERY {
                notify(&[extend_timeout()]);
                extended = Instant::now();
            }
            ControlFlow::Continue(())
        })?;
        for seg in &walked.missing {
            tracing::warn!(segment = seg.seq, path = seg.path, "a journal file written since the oldest claim is gone (compressed or deleted): lines recorded in it are fetched again");
        }
        let already: u64 = found.values().map(LineSet::len).sum();
        tracing::info!(
            files = lists.len(),
            journals = walked.files,
            bytes = walked.bytes,
            lines_already_journaled = already,
            ms = started.elapsed().as_millis() as u64,
            "recovering lists left in cur/"
        );
        Ok(lists
            .into_iter()
            .map(|(list, want)| {
                let skip = found.remove(&list.name).unwrap_or_default();
                (list, want, skip)
            })
            .collect())
    }

    fn event_loop(&mut self, rx: &Receiver<Event>, journal: &Journal) -> Result<(), LoopEnd> {
        let mut watchdog_usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
            .then(|| Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(10)));
        let tick = watchdog.map_or(STATUS_INTERVAL, |w| w.min(STATUS_INTERVAL));
        let mut next_status = Instant::now();
        let mut next_watchdog = Instant::now();
        let mut next_rescan = Instant::now() + self.cfg.live.rescan;
        let mut next_retention = Instant::now() + RETENTION_INTERVAL;
        let mut was_paused = false;
        loop {
            if self.want_scan {
                self.claim_new()?;
            }
            self.retry_results()?;
            let now = Instant::now();
            let wait = [next_status, next_rescan]
                .into_iter()
                .chain(watchdog.map(|_| next_watchdog))
                .min()
                .unwrap_or(now + tick)
                .saturating_duration_since(now)
                .min(tick);
            match rx.recv_timeout(wait) {
                Ok(Event::Terminate) => {
                    tracing::info!(in_flight = self.in_flight(), "stop requested: draining");
                    return Ok(());
                }
                Ok(ev) => self.handle(ev)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            if journal.is_finished() {
                return Err(LoopEnd::JournalDied);
            }
            if let Some(why) = self.backend.as_ref().and_then(|b| b.failure()) {
                return Err(LoopEnd::Error(DaemonError::EngineFailed(why)));
            }
            let paused = self.journal_ctl.paused().is_some();
            if was_paused && !paused {
                self.want_scan = true; // claiming waited for the journal
            }
            if paused != was_paused {
                next_status = now; // say it at once
            }
            was_paused = paused;
            if let Some(period) = watchdog {
                if now >= next_watchdog {
                    let stalest = self
                        .backend
                        .as_ref()
                        .map_or(Duration::ZERO, |b| b.stalest_worker());
                    match watchdog_ok(stalest, self.journal_ctl.stalest(), paused) {
                        Ok(()) => notify(&[NotifyState::Watchdog]),
                        // A stuck worker or writer lets the watchdog fire, and systemd
                        // restarts the service.
                        Err(what) => tracing::error!(
                            stalest_worker_ms = stalest.as_millis() as u64,
                            stalest_writer_ms = self.journal_ctl.stalest().as_millis() as u64,
                            "{what}; not pinging the watchdog"
                        ),
                    }
                    next_watchdog = now + period;
                }
            }
            if now >= next_status {
                let status = self.status_line();
                notify(&[NotifyState::Status(&status)]);
                next_status = now + STATUS_INTERVAL;
            }
            if now >= next_rescan {
                self.want_scan = true;
                next_rescan = now + self.cfg.live.rescan;
            }
            if now >= next_retention {
                if let Some(age) = self.cfg.live.done_retention {
                    self.purge(age);
                }
                next_retention = now + RETENTION_INTERVAL;
            }
        }
    }

    fn in_flight(&self) -> u64 {
        self.backend.as_ref().map_or(0, |b| b.in_flight())
    }

    fn handle(&mut self, ev: Event) -> Result<(), DaemonError> {
        match ev {
            Event::Terminate => {}
            Event::Wake => self.want_scan = true,
            Event::Reopen => {
                tracing::info!("SIGUSR1: reopening journal");
                self.journal_ctl.reopen(None, None);
            }
            Event::Reload => {
                notify_reloading();
                self.reload();
                notify(&[NotifyState::Ready]);
            }
            Event::Durable(p) => {
                for (src, n) in p.per_src {
                    if let Some(a) = self.active.get_mut(&src) {
                        a.durable += n;
                        self.maybe_finish(&src);
                    }
                }
            }
            Event::FeedDone { src, result } => {
                if let Some(a) = self.active.get_mut(&src) {
                    match result {
                        Ok(st) if st.stopped => a.stopped = true,
                        Ok(st) => {
                            a.eof = true;
                            tracing::info!(
                                src,
                                lines = st.lines,
                                submitted = st.submitted,
                                skipped = st.skipped,
                                "list read"
                            );
                        }
                        Err(e) => {
                            a.eof = true;
                            let why = match &e {
                                ReadError::TooLarge(max) => format!("it is larger than daemon.max_list_bytes ({max} bytes): only the lines that end within the first {max} bytes have records"),
                                e => format!("cannot read it: {e}"),
                            };
                            tracing::warn!(src, error = %e, "{why}; the list goes to bad/ once the records of its lines read so far are durable");
                            a.failed = Some(why);
                        }
                    }
                    self.maybe_finish(&src);
                }
            }
            Event::Finished { src, result } => self.release(&src, result),
        }
        Ok(())
    }

    /// Once a list is read (or failed) and every submitted line's record is durable, tell
    /// its thread to write the results.
    fn maybe_finish(&mut self, src: &str) {
        let Some(a) = self.active.get_mut(src) else {
            return;
        };
        if !a.eof || a.stopped || a.durable < a.submitted.load(Ordering::Acquire) {
            return;
        }
        let Some(finish) = a.finish.take() else {
            return;
        };
        let here = self.backend.as_ref().is_none_or(|b| b.records_here());
        let end = match &a.failed {
            Some(why) => ListEnd::Bad(why.clone()),
            None if here => ListEnd::Done,
            None => ListEnd::Cluster,
        };
        a.end = Some(end.clone());
        if finish.send(end).is_err() {
            tracing::error!(
                src,
                "list thread is gone; the list stays in cur/ until the next start"
            );
        }
    }

    /// A list's results are written: move it to `done/` or `bad/`.
    fn release(&mut self, src: &str, result: Result<Option<u64>, SpoolError>) {
        let Some(mut a) = self.active.remove(src) else {
            return;
        };
        if let Some(t) = a.thread.take() {
            let _ = t.join();
        }
        match result {
            Ok(Some(_)) => {}
            Ok(None) => return, // stopped first: the list stays in cur/
            Err(e) => {
                let wait = RESULTS_RETRY_FIRST
                    .saturating_mul(1 << a.results_failures.min(16))
                    .min(RESULTS_RETRY_MAX);
                if a.results_failures == 0 {
                    tracing::error!(src, error = %e, "cannot write the list's results to out/; the list stays in cur/ and they are tried again");
                }
                a.results_failures += 1;
                a.retry_results = Some(Instant::now() + wait);
                self.active.insert(src.to_string(), a);
                return;
            }
        }
        if a.results_failures > 0 {
            tracing::info!(
                src,
                tries = a.results_failures + 1,
                "list's results written"
            );
        }
        self.want_scan = true;
        let outcome = match a.end {
            Some(ListEnd::Bad(_)) => Outcome::Bad,
            _ => Outcome::Done,
        };
        match self.spool.release(src, outcome) {
            Ok(to) => {
                match outcome {
                    Outcome::Done => self.files_done += 1,
                    Outcome::Bad => self.files_bad += 1,
                }
                tracing::info!(src, records = a.durable, to = %to.display(), "list finished");
            }
            Err(e) => {
                tracing::error!(src, error = %e, "cannot move finished list out of cur/; it will be re-checked at restart")
            }
        }
        self.prune_history();
    }

    /// Drop the journal history's segments older than every list in progress.
    fn prune_history(&self) {
        let oldest = self.active.values().map(|a| a.want.from.seq).min();
        if let Err(e) = lock(&self.history).prune(oldest) {
            tracing::warn!(error = %e, "cannot update the journal history in cur/");
        }
    }

    /// Move an entry that is not a list to `bad/`, saying so once.
    fn reject(&mut self, sub: &str, name: OsString, why: &str) {
        match self.spool.reject(sub, &name) {
            Ok(to) => {
                self.files_bad += 1;
                tracing::warn!(entry = %escape(&name), to = %escape(to.as_os_str()), "not a list: {why}; moved to bad/");
            }
            Err(e) => {
                if self.reported.insert(name.clone()) {
                    tracing::error!(entry = %escape(&name), error = %e, "not a list ({why}) and cannot be moved to bad/");
                }
            }
        }
    }

    fn claim_new(&mut self) -> Result<(), DaemonError> {
        self.want_scan = false;
        if self.stop.load(Ordering::Acquire) || self.journal_ctl.paused().is_some() {
            return Ok(());
        }
        let entries = match self.spool.pending() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot list new/");
                return Ok(());
            }
        };
        self.pending = entries
            .iter()
            .filter(|e| matches!(e, Entry::List(_)))
            .count();
        let history = self.history.clone();
        let is_journal = |dev, ino| lock(&history).holds(dev, ino);
        for entry in entries {
            let name = match entry {
                Entry::Unfit { name, why } => {
                    self.reject(spool::NEW, name, &why.to_string());
                    continue;
                }
                Entry::List(name) => name,
            };
            if self.active.len() >= self.cfg.live.max_files {
                continue; // looked at again when a slot frees up
            }
            match self
                .spool
                .claim(&name, self.journal_ctl.position(), &is_journal)
            {
                Ok(Claim::Claimed(list, rec)) => {
                    self.pending -= 1;
                    tracing::info!(file = name, src = list.name, "claimed list");
                    let want = Want {
                        from: rec.journal,
                        not_before: None,
                    };
                    self.start_list(list, want, None)?;
                }
                Ok(Claim::Gone) => self.pending -= 1,
                Ok(Claim::Unfit { name: claimed, why }) => {
                    self.pending -= 1;
                    self.reject(spool::CUR, claimed.into(), &why.to_string());
                }
                Err(e) => {
                    if self.reported.insert(name.clone().into()) {
                        tracing::error!(file = name, error = %e, "cannot claim list");
                    }
                }
            }
        }
        Ok(())
    }

    /// Start the thread of one list in `cur/`: read and submit its lines (but those in
    /// `skip`), then, once told how it ended, write its results.
    fn start_list(
        &mut self,
        list: spool::Opened,
        want: Want,
        skip: Option<LineSet>,
    ) -> Result<(), DaemonError> {
        let submitted = Arc::new(AtomicU64::new(0));
        let backend = self.backend.clone().ok_or(DaemonError::EngineShared)?;
        let limits = ReadLimits {
            stop: Some(self.stop.clone()),
            max_bytes: Some(self.cfg.live.max_list_bytes),
        };
        let (finish_tx, finish_rx) = mpsc::channel::<ListEnd>();
        let tx = self.tx.clone();
        let counter = submitted.clone();
        let stop = self.stop.clone();
        let history = self.history.clone();
        let out_dir = self.spool.path(results::OUT, "");
        let name = list.name.clone();
        let list_owner = list.owner;
        let job_want = want.clone();
        let thread = std::thread::Builder::new()
            .name(format!("list {name}"))
            .spawn(move || {
                let spool::Opened { name, file, owner } = list;
                let src: Arc<str> = Arc::from(name.as_str());
                let r = BufReader::with_capacity(READER_BUFFER, file);
                let result = spool::feed(r, &src, skip.as_ref(), &*backend, &counter, limits);
                drop(backend);
                let _ = tx.send(Event::FeedDone {
                    src: name.clone(),
                    result,
                });
                // The daemon says how the list ended once its records are durable (or drops
                // the sender at shutdown).
                let Ok(end) = finish_rx.recv() else {
                    return;
                };
                let job = ResultsJob {
                    out_dir,
                    name,
                    owner,
                    want: job_want,
                    segments: Vec::new(),
                    end,
                };
                write_results(job, &history, &stop, &tx);
            })
            .map_err(DaemonError::Thread)?;
        self.active.insert(
            name,
            Active {
                want,
                owner: list_owner,
                submitted,
                durable: 0,
                eof: false,
                failed: None,
                stopped: false,
                finish: Some(finish_tx),
                end: None,
                results_failures: 0,
                retry_results: None,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Try again to write the results of the lists whose last try failed, when due.
    fn retry_results(&mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        for (name, a) in &mut self.active {
            if a.retry_results.is_none_or(|at| now < at) || self.stop.load(Ordering::Acquire) {
                continue;
            }
            a.retry_results = None;
            let job = ResultsJob {
                out_dir: self.spool.path(results::OUT, ""),
                name: name.clone(),
                owner: a.owner,
                want: a.want.clone(),
                segments: Vec::new(),
                end: a.end.clone().unwrap_or(ListEnd::Done),
            };
            let (history, stop, tx) = (self.history.clone(), self.stop.clone(), self.tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("results {name}"))
                .spawn(move || write_results(job, &history, &stop, &tx))
                .map_err(DaemonError::Thread)?;
            a.thread = Some(thread);
        }
        Ok(())
    }

    /// SIGHUP: re-read the config file; apply its reloadable part, log each restart-only
    /// change (kept until a restart), and reopen the journal (at its new path, if it moved).
    fn reload(&mut self) {
        let new = match Config::load(self.cfg.source.as_deref(), &self.cfg.overrides) {
            Ok(c) => c,
            Err(errs) => {
                for e in &errs.errors {
                    tracing::error!(error = %e, "SIGHUP: config not reloaded");
                }
                self.journal_ctl.reopen(None, None);
                return;
            }
        };
        let old = self.cfg.live.clone();
        let outcome = self.cfg.apply_reload(new);
        if outcome.applied.is_empty() && outcome.kept.is_empty() {
            tracing::info!("SIGHUP: config unchanged; reopening journal");
        }
        for c in &outcome.kept {
            tracing::warn!(change = %c, "SIGHUP: change needs a restart; keeping the running value");
        }
        for c in &outcome.applied {
            tracing::info!(change = %c, "SIGHUP: applied");
        }
        let live = &self.cfg.live;
        let path = (live.journal != old.journal).then(|| live.journal.clone());
        if let Some(p) = &path {
            tracing::info!(was = %old.journal.display(), now = %p.display(), "journal path changed: recovery reads both until no list claimed before is left");
        }
        let policy = (live.fsync != old.fsync).then_some(live.fsync);
        self.journal_ctl.reopen(path, policy);
        self.want_scan = true;
    }

    fn purge(&self, age: Duration) {
        match self.spool.purge_done(age) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                files = n,
                "deleted old lists from done/ and results from out/"
            ),
            Err(e) => tracing::warn!(error = %e, "done/ retention failed"),
        }
    }

    fn status_line(&self) -> String {
        let paused = self
            .journal_ctl
            .paused()
            .map_or(String::new(), |why| format!("paused: {why}; "));
        let line = format!(
            "{paused}lists: {} active, {} pending, {} done, {} bad; records: {} journaled; in flight: {}",
            self.active.len(),
            self.pending,
            self.files_done,
            self.files_bad,
            self.journal_ctl.records_written(),
            self.in_flight()
        );
        match self.backend.as_ref().and_then(|b| b.status()) {
            Some(more) => format!("{line}; {more}"),
            None => line,
        }
    }

    /// Stop the list threads, drain the engine within the grace period (at once while the
    /// journal is paused: nothing could be written), stop the journal writer, and move out of
    /// `cur/` the lists whose results were written meanwhile. Lists that became complete but
    /// have no results yet stay in `cur/`; the next start finishes them without a fetch.
    fn shutdown(
        mut self,
        rx: &Receiver<Event>,
        forwarder: JoinHandle<()>,
        journal: Journal,
    ) -> Result<Summary, DaemonError> {
        let started = Instant::now();
        self.stop.store(true, Ordering::Release);
        for a in self.active.values_mut() {
            a.finish = None;
        }
        // Readers see the stop at their next buffer or within a few ms of waiting for queue
        // room; result writers at their next buffer; the others wait for `finish`, gone.
        for a in self.active.values_mut() {
            if let Some(t) = a.thread.take() {
                let _ = t.join();
            }
        }
        let backend = self
            .backend
            .take()
            .and_then(Arc::into_inner)
            .ok_or(DaemonError::EngineShared)?;
        let grace = match self.journal_ctl.paused() {
            Some(why) => {
                tracing::warn!(
                    "stopping while paused ({why}): fetches in flight are abandoned at once"
                );
                Duration::ZERO
            }
            None => self.cfg.live.drain_grace.saturating_sub(started.elapsed()),
        };
        let summary = backend.drain(grace);
        // The writer writes what is queued and ends, even if abandoned workers still hold
        // record senders.
        self.journal_ctl.stop();
        let journal_result = journal.finish();
        let _ = forwarder.join();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Durable(p) => {
                    for (src, n) in p.per_src {
                        if let Some(a) = self.active.get_mut(&src) {
                            a.durable += n;
                        }
                    }
                }
                Event::Finished { src, result } => self.release(&src, result),
                _ => {}
            }
        }
        let stats = journal_result?;
        tracing::info!(
            records = stats.records,
            fsyncs = stats.fsyncs,
            pauses = stats.pauses,
            dropped = stats.dropped,
            left_in_cur = self.active.len(),
            ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
        Ok(summary)
    }
}

/// Write a list's results (from the journal history as it is now: `job.segments` is filled
/// here) and report it.
fn write_results(
    mut job: ResultsJob,
    history: &Mutex<History>,
    stop: &AtomicBool,
    tx: &Sender<Event>,
) {
    job.segments = lock(history).segments().to_vec();
    let result = results::write(&job, stop);
    let _ = tx.send(Event::Finished {
        src: job.name,
        result,
    });
}

/// `EXTEND_TIMEOUT_USEC` for [`EXTEND_BY`].
fn extend_timeout() -> NotifyState<'static> {
    NotifyState::ExtendTimeoutUsec(u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX))
}

/// `RELOADING=1` with `MONOTONIC_USEC` (CLOCK_MONOTONIC in µs), as systemd wants them
/// together.
fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read CLOCK_MONOTONIC");
            notify(&[NotifyState::Reloading]);
        }
    }
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn start_inotify(spool: &Spool, tx: Sender<Event>) {
    let dir: PathBuf = spool.root().join(spool::NEW);
    let setup = || -> io::Result<inotify::Inotify> {
        let ino = inotify::Inotify::init()?;
        ino.watches().add(
            &dir,
            inotify::WatchMask::MOVED_TO | inotify::WatchMask::CREATE,
        )?;
        Ok(ino)
    };
    let mut ino = match setup() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "inotify unavailable; relying on the periodic rescan");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("inotify".into()).spawn(move || {
        let mut buf = [0u8; INOTIFY_BUFFER];
        loop {
            match ino.read_events_blocking(&mut buf) {
                Ok(_) => {
                    if tx.send(Event::Wake).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inotify read failed; relying on the periodic rescan");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start inotify thread; relying on the periodic rescan");
    }
}

/// Install SIGTERM/SIGINT/SIGHUP/SIGUSR1 handlers (call before READY) on a thread that forwards
/// them as events.
pub fn forward_signals(tx: Sender<Event>) -> Result<(), DaemonError> {
    let signals = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
    crate::signals::spawn(&signals, move |sig| {
        let ev = match sig {
            libc::SIGHUP => Event::Reload,
            libc::SIGUSR1 => Event::Reopen,
            _ => Event::Terminate,
        };
        tx.send(ev).is_ok()
    })
    .map_err(DaemonError::Signals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stopped;
    use crate::intake::InputLine;
    use crate::journal::{FsyncPolicy, CONTROL_POLL};
    use crate::record::Record;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Mutex;

    /// A line as the engine gets it.
    type Job = (InputLine, Arc<str>);

    /// A stand-in engine: one worker thread turns jobs into records; after `budget` records
    /// it holds jobs forever (in flight at a "crash"); `drain` abandons what is left.
    struct Fake {
        jobs: Mutex<Option<mpsc::Sender<Job>>>,
        in_flight: Arc<AtomicU64>,
        abandon: Arc<AtomicBool>,
        worker: Mutex<Option<JoinHandle<()>>>,
    }

    impl Fake {
        fn start(records: RecordSender, budget: u64) -> Fake {
            let (jtx, jrx) = mpsc::channel::<Job>();
            let in_flight = Arc::new(AtomicU64::new(0));
            let abandon = Arc::new(AtomicBool::new(false));
            let (fl, ab) = (in_flight.clone(), abandon.clone());
            let worker = std::thread::spawn(move || {
                let mut done = 0;
                for (line, src) in jrx {
                    if ab.load(Ordering::Acquire) || done >= budget {
                        continue;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    let rec = Record {
                        url: line.text,
                        ts: crate::record::now_rfc3339(),
                        src: Some(src.to_string()),
                        line: Some(line.number),
                        ..Record::default()
                    };
                    done += 1;
                    fl.fetch_sub(1, Ordering::AcqRel);
                    if records.send(rec).is_err() {
                        return;
                    }
                }
            });
            Fake {
                jobs: Mutex::new(Some(jtx)),
                in_flight,
                abandon,
                worker: Mutex::new(Some(worker)),
            }
        }
    }

    impl JobSink for Fake {
        fn submit_line(
            &self,
            line: InputLine,
            src: &Arc<str>,
            _: Option<&AtomicBool>,
        ) -> Result<(), Stopped> {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = self.jobs.lock().unwrap();
            guard
                .as_ref()
                .ok_or(Stopped)?
                .send((line, src.clone()))
                .map_err(|_| Stopped)
        }
    }

    impl Backend for Fake {
        fn in_flight(&self) -> u64 {
            self.in_flight.load(Ordering::Acquire)
        }
        fn drain(self, _grace: Duration) -> Summary {
            self.abandon.store(true, Ordering::Release);
            drop(self.jobs.lock().unwrap().take());
            if let Some(w) = self.worker.lock().unwrap().take() {
                w.join().unwrap();
            }
            Summary::default()
        }
        fn failure(&self) -> Option<String> {
            None
        }
        fn stalest_worker(&self) -> Duration {
            Duration::ZERO
        }
    }

    struct Running {
        tx: Sender<Event>,
        thread: JoinHandle<Result<Summary, DaemonError>>,
    }

    fn start(cfg: Config, budget: u64) -> Running {
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let thread =
            std::thread::spawn(move || serve(cfg, |_, r| Ok(Fake::start(r, budget)), tx2, rx));
        Running { tx, thread }
    }

    impl Running {
        fn stop(self) -> Result<Summary, DaemonError> {
            self.tx.send(Event::Terminate).unwrap();
            self.thread.join().unwrap()
        }
    }

    fn config(dir: &Path) -> Config {
        config_with(dir, "")
    }

    fn config_with(dir: &Path, extra: &str) -> Config {
        let file = dir.join("ringcrawl.toml");
        let text = format!(
            "[daemon]\nspool = \"{}\"\njournal = \"{}\"\nfsync_batch_ms = 10\nrescan_secs = 0.1\nmax_files = 2\n{extra}\n",
            dir.join("spool").display(),
            dir.join("journal.jsonl").display()
        );
        std::fs::write(&file, text).unwrap();
        let cfg = Config::load(Some(&file), &Default::default()).unwrap();
        assert_eq!(
            cfg.live.fsync,
            FsyncPolicy::Batch(Duration::from_millis(10))
        );
        cfg
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Entries of `dir`, the daemon's dot files left out.
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Submit `list`; its name in the spool (the `src` of its records).
    fn queue(spool_dir: &Path, list: PathBuf) -> String {
        let q = spool::submit(spool_dir, &[list]).unwrap();
        q[0].file_name().unwrap().to_str().unwrap().to_string()
    }

    /// (src, line) -> number of records, over the given journal files.
    fn journal_keys(paths: &[&Path]) -> BTreeMap<(String, u64), u32> {
        let mut m = BTreeMap::new();
        for p in paths {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "torn line in {}",
                p.display()
            );
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let k = (
                    v["src"].as_str().unwrap().to_string(),
                    v["line"].as_u64().unwrap(),
                );
                *m.entry(k).or_default() += 1;
            }
        }
        m
    }

    /// The journal holds exactly the (src, line) keys `want` (sorted), each once.
    fn assert_each_once(journal: &Path, want: Vec<(String, u64)>) {
        let keys = journal_keys(&[journal]);
        assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), want);
        assert!(keys.values().all(|&n| n == 1), "duplicates: {keys:?}");
    }

    fn write_list(dir: &Path, name: &str, n: u64) -> PathBuf {
        let p = dir.join(name);
        let mut text = String::new();
        for i in 1..=n {
            if i % 7 == 0 {
                text.push_str("  \r\n");
            } else {
                text.push_str(&format!("http://127.0.0.1:9/{name}/{i}\r\n"));
            }
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn expected(name: &str, n: u64) -> Vec<(String, u64)> {
        let mut v: Vec<_> = (1..=n)
            .filter(|i| i % 7 != 0)
            .map(|i| (name.to_string(), i))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn lists_are_journaled_exactly_once_and_moved_to_done_with_their_results() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let spool_dir = cfg.restart.spool.clone();
        let journal = cfg.live.journal.clone();
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        let names: Vec<_> = (0..4)
            .map(|i| {
                queue(
                    &spool_dir,
                    write_list(dir.path(), &format!("l{i}.txt"), 50 + i),
                )
            })
            .collect();
        wait_for("lists done", || count(&spool_dir.join("done")) == 4);
        d.stop().unwrap();
        let mut want: Vec<_> = (0..4)
            .flat_map(|i| expected(&names[i], 50 + i as u64))
            .collect();
        want.sort();
        assert_each_once(&journal, want);
        assert_eq!(count(&spool_dir.join("cur")), 0);
        for n in &names {
            assert!(
                spool_dir.join("done").join(n).exists(),
                "done/ keeps the name {n}"
            );
        }
        let out = spool_dir.join(results::OUT);
        let mine = journal_keys(&[&out.join(format!("{}.jsonl", names[2]))]);
        assert_eq!(
            mine.keys().cloned().collect::<Vec<_>>(),
            expected(&names[2], 52)
        );
        let status = std::fs::read_to_string(out.join(format!("{}.status", names[2]))).unwrap();
        assert_eq!(status, format!("done {}\n", mine.len()));
    }

    #[test]
    fn interrupted_run_is_completed_without_duplicates_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        // First run: only 30 records are ever produced; the rest are "in flight" at the stop.
        let d = start(cfg.clone(), 30);
        wait_for("spool", || spool_dir.join("new").is_dir());
        let name = queue(&spool_dir, write_list(dir.path(), "big.txt", 100));
        wait_for("30 records", || journal_keys(&[&journal]).len() == 30);
        d.stop().unwrap();
        assert_eq!(
            count(&spool_dir.join("cur")),
            1,
            "unfinished list stays in cur/"
        );
        // A crash mid-write leaves a torn record behind; the list's ctime moves (which
        // recovery must not care about).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        let torn = format!("{{\"url\":\"http://127.0.0.1:9/big.txt/99\",\"src\":\"{name}\",\"li");
        std::io::Write::write_all(&mut f, torn.as_bytes()).unwrap();
        drop(f);
        let listed = spool_dir.join("cur").join(&name);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::set_permissions(&listed, std::fs::Permissions::from_mode(0o600)).unwrap();

        let d = start(cfg, u64::MAX);
        wait_for("list done", || count(&spool_dir.join("done")) == 1);
        d.stop().unwrap();
        assert_each_once(&journal, expected(&name, 100));
    }

    #[test]
    fn a_lost_journal_history_falls_back_to_the_claim_time() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        let d = start(cfg.clone(), 30);
        wait_for("spool", || spool_dir.join("new").is_dir());
        // Segment numbers that a new history would not give again.
        for _ in 0..3 {
            d.tx.send(Event::Reopen).unwrap();
            std::thread::sleep(CONTROL_POLL * 3);
        }
        let name = queue(&spool_dir, write_list(dir.path(), "lost.txt", 100));
        wait_for("30 records", || journal_keys(&[&journal]).len() == 30);
        d.stop().unwrap();
        std::fs::remove_file(spool_dir.join("cur").join(HISTORY_FILE)).unwrap();
        let d = start(cfg, u64::MAX);
        wait_for("list done", || count(&spool_dir.join("done")) == 1);
        d.stop().unwrap();
        assert_each_once(&journal, expected(&name, 100));
    }

    #[test]
    fn entries_that_are_not_lists_go_to_bad_and_reload_reopens_moved_journal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        // Left in cur/ before the start: a dangling symbolic link does not stop the daemon.
        Spool::open(&spool_dir).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), spool_dir.join("cur/dangling"))
            .unwrap();
        let d = start(cfg, u64::MAX);
        wait_for("journal", || journal.exists());
        std::fs::create_dir(spool_dir.join("new/not-a-file")).unwrap();
        std::os::unix::fs::symlink(&journal, spool_dir.join("new/the-journal")).unwrap();
        std::fs::write(spool_dir.join("new/line\nbreak"), "http://127.0.0.1:9/x\n").unwrap();
        std::fs::hard_link(&journal, spool_dir.join("new/hard-linked-journal")).unwrap();
        wait_for("bad", || count(&spool_dir.join("bad")) == 5);
        for name in [
            "dangling",
            "not-a-file",
            "the-journal",
            "line\nbreak",
            "hard-linked-journal",
        ] {
            assert!(
                spool_dir.join("bad").join(name).symlink_metadata().is_ok(),
                "{name}"
            );
        }

        let a = queue(&spool_dir, write_list(dir.path(), "a.txt", 10));
        wait_for("a done", || count(&spool_dir.join("done")) == 1);
        let moved = dir.path().join("journal.jsonl.1");
        std::fs::rename(&journal, &moved).unwrap();
        d.tx.send(Event::Reload).unwrap();
        wait_for("new journal", || journal.exists());
        let b = queue(&spool_dir, write_list(dir.path(), "b.txt", 10));
        wait_for("b done", || count(&spool_dir.join("done")) == 2);
        d.stop().unwrap();
        let old = journal_keys(&[&moved]);
        let new = journal_keys(&[&journal]);
        assert!(old.keys().all(|(s, _)| *s == a) && old.len() == 9);
        assert!(new.keys().all(|(s, _)| *s == b) && new.len() == 9);
    }

    #[test]
    fn an_oversize_list_goes_to_bad_with_records_for_its_first_lines() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_with(dir.path(), "max_list_bytes = 200");
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        let list = write_list(dir.path(), "big.txt", 20);
        let text = std::fs::read_to_string(&list).unwrap();
        let name = queue(&spool_dir, list);
        wait_for("bad", || count(&spool_dir.join("bad")) == 1);
        d.stop().unwrap();
        // The lines that end within the first 200 bytes.
        let mut end = 0;
        let within = text
            .split_inclusive('\n')
            .take_while(|l| {
                end += l.len();
                end <= 200
            })
            .count() as u64;
        let keys = journal_keys(&[&journal]);
        assert_eq!(
            keys.keys().cloned().collect::<Vec<_>>(),
            expected(&name, within)
        );
        let status =
            std::fs::read_to_string(spool_dir.join("out").join(format!("{name}.status"))).unwrap();
        assert!(
            status.starts_with(&format!(
                "bad {}: it is larger than daemon.max_list_bytes (200 bytes)",
                keys.len()
            )),
            "{status}"
        );
    }

    #[test]
    fn results_that_cannot_be_written_are_tried_again_and_the_list_waits_in_cur() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        // out/ is not a directory for a while: no result can be written.
        let out = spool_dir.join(results::OUT);
        let aside = dir.path().join("out-aside");
        std::fs::rename(&out, &aside).unwrap();
        std::fs::write(&out, "").unwrap();
        let name = queue(&spool_dir, write_list(dir.path(), "wait.txt", 20));
        wait_for("records", || {
            journal_keys(&[&journal]).len() == expected(&name, 20).len()
        });
        std::thread::sleep(RESULTS_RETRY_FIRST * 2);
        assert!(spool_dir.join("cur").join(&name).exists(), "waits in cur/");
        std::fs::remove_file(&out).unwrap();
        std::fs::rename(&aside, &out).unwrap();
        wait_for("done", || count(&spool_dir.join("done")) == 1);
        d.stop().unwrap();
        let status = std::fs::read_to_string(out.join(format!("{name}.status"))).unwrap();
        assert_eq!(status, format!("done {}\n", expected(&name, 20).len()));
    }

    #[test]
    fn partial_file_in_tmp_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        std::fs::write(spool_dir.join("tmp/partial"), "http://127.0.0.1:9/x\n").unwrap();
        spool::submit(&spool_dir, &[write_list(dir.path(), "c.txt", 3)]).unwrap();
        wait_for("c done", || count(&spool_dir.join("done")) == 1);
        std::thread::sleep(Duration::from_millis(300));
        d.stop().unwrap();
        assert!(spool_dir.join("tmp/partial").exists());
        assert_eq!(journal_keys(&[&journal]).len(), 3);
    }

    #[test]
    fn a_list_that_is_one_endless_line_does_not_hold_up_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        // No size limit to speak of: the read would go on for a long time.
        let cfg = config_with(dir.path(), "max_list_bytes = 1099511627776");
        let spool_dir = cfg.restart.spool.clone();
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        // A sparse file of 1 TiB of zero bytes (no disk space): one line without an end,
        // moved in as a producer would (`submit` would copy it).
        let endless = spool_dir.join("tmp/endless");
        std::fs::File::create(&endless)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let name = "endless".to_string();
        std::fs::rename(&endless, spool_dir.join("new").join(&name)).unwrap();
        wait_for("the endless line being read", || {
            spool_dir.join("cur").join(&name).exists()
        });
        std::thread::sleep(Duration::from_millis(200));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(d.stop().map(|_| ())));
        let stopped = rx.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "SIGTERM waited on the endless line: {stopped:?}"
        );
        assert!(
            spool_dir.join("cur").join(&name).exists(),
            "an unfinished list stays in cur/"
        );
    }

    #[test]
    fn second_daemon_on_same_spool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let spool_dir = cfg.restart.spool.clone();
        let d = start(cfg.clone(), u64::MAX);
        wait_for("spool", || spool_dir.join(".lock").exists());
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = mpsc::channel();
        let err = serve(cfg, |_, r| Ok(Fake::start(r, 0)), tx, rx).unwrap_err();
        assert!(
            err.to_string()
                .contains("in use by another ringcrawl daemon"),
            "{err}"
        );
        d.stop().unwrap();
    }

    /// An engine whose queue is always full: a submit waits until the stop flag is set. (It
    /// keeps the record sender, as an engine does: the journal writer lives while it does.)
    struct FullQueue {
        _records: RecordSender,
    }

    impl JobSink for FullQueue {
        fn submit_line(
            &self,
            _: InputLine,
            _: &Arc<str>,
            stop: Option<&AtomicBool>,
        ) -> Result<(), Stopped> {
            let stop = stop.expect("a list reader passes its stop flag");
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Stopped)
        }
    }

    impl Backend for FullQueue {
        fn in_flight(&self) -> u64 {
            0
        }
        fn drain(self, _grace: Duration) -> Summary {
            Summary::default()
        }
        fn failure(&self) -> Option<String> {
            None
        }
        fn stalest_worker(&self) -> Duration {
            Duration::ZERO
        }
    }

    #[test]
    fn a_reader_waiting_on_a_full_queue_does_not_hold_up_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let spool_dir = cfg.restart.spool.clone();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let thread =
            std::thread::spawn(move || serve(cfg, |_, r| Ok(FullQueue { _records: r }), tx2, rx));
        wait_for("spool", || spool_dir.join("new").is_dir());
        let name = queue(&spool_dir, write_list(dir.path(), "stuck.txt", 10));
        wait_for("claimed", || spool_dir.join("cur").join(&name).exists());
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        tx.send(Event::Terminate).unwrap();
        thread.join().unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            spool_dir.join("cur").join(&name).exists(),
            "left for the next start"
        );
    }

    #[test]
    fn the_watchdog_wants_a_live_writer_and_live_or_blocked_workers() {
        let fresh = Duration::from_secs(1);
        let stale = WORKER_STALE_AFTER + Duration::from_secs(1);
        assert!(watchdog_ok(fresh, fresh, false).is_ok());
        assert!(watchdog_ok(stale, fresh, false).is_err());
        // Workers blocked on a paused journal are idle by design.
        assert!(watchdog_ok(stale, fresh, true).is_ok());
        // A stuck writer is never fine.
        assert!(watchdog_ok(fresh, JOURNAL_STALE_AFTER * 2, true).is_err());
    }
}
