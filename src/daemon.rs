//! `ringcrawl run`: the spool daemon. Owns the event loop that claims list files, starts one
//! reader thread per file in progress, moves files out of `cur/` once their records are
//! durable (see `spool` for the exactly-once scheme), and handles signals and sd_notify.
//!
//! - Signals (a small tokio current-thread runtime on its own thread forwards them as events):
//!   SIGTERM/SIGINT stop claiming, stop the readers, drain the engine for up to
//!   `drain_grace`, fsync the journal and return Ok (exit 0); SIGHUP reloads the config file,
//!   applies its reloadable part (`config::Reloadable`: journal path and fsync policy,
//!   rescan period, max files, drain grace, retention), logs each restart-only change it
//!   keeps, and reopens the journal; SIGUSR1 only reopens the journal (logrotate `create`).
//! - One reader thread per list in `cur/` feeds its lines through `spool::feed` (the one
//!   `intake` reader, whose stop flag is the daemon's, so SIGTERM is not held up by a list
//!   that is one endless line).
//! - sd_notify: READY once recovery is done and the engine runs, STATUS with live counts
//!   every second, WATCHDOG from the event loop (only when `WATCHDOG_USEC` is set), STOPPING.
//! - New files are noticed through inotify on `new/` and a periodic rescan.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sd_notify::NotifyState;

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::intake::{ReadError, ReadLimits};
use crate::job::Summary;
use crate::journal::{Journal, JournalControl, JournalError, Progress, Target};
use crate::options::FetchOptions;
use crate::spool::{self, FeedStats, JobSink, LineSet, Outcome, Spool, SpoolError};
use crate::worker::RecordSender;

/// Period of STATUS updates (and the longest event-loop sleep).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A worker that has not shown it is alive for this long is stuck (a worker's loop turns at
/// least every `worker::IDLE_SWEEP`, busy or idle).
pub const WORKER_STALE_AFTER: Duration = Duration::from_secs(15);
/// How often `done/` retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Read buffer of one list reader.
pub const READER_BUFFER: usize = 64 * 1024;
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
    /// More for the STATUS line (a cluster node's partitions and lag).
    fn status(&self) -> Option<String> {
        None
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
    /// A reader finished (or failed on) the file `src` in `cur/`.
    FeedDone {
        src: String,
        result: Result<FeedStats, ReadError>,
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

    // The journal's torn tail is repaired here, before the recovery scan reads it.
    let (ptx, prx) = mpsc::channel::<Progress>();
    let (journal, records) = Journal::start(
        Target::File(cfg.live.journal.clone()),
        cfg.live.fsync,
        Some(ptx),
    )?;
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

    let recovered = recover(&spool, &cfg)?;
    let backend = Arc::new(start(&cfg.restart.fetch, records)?);
    start_inotify(&spool, tx.clone());

    let mut d = Daemon {
        cfg,
        spool,
        journal_ctl: journal.control(),
        backend: Some(backend),
        tx,
        stop: Arc::new(AtomicBool::new(false)),
        active: HashMap::new(),
        want_scan: true,
        pending: 0,
        files_done: 0,
        files_bad: 0,
    };
    for (name, skip) in recovered {
        d.start_reader(name, Some(skip))?;
    }
    if let Some(age) = d.cfg.live.done_retention {
        d.purge(age);
    }
    notify(&[NotifyState::Ready]);
    tracing::info!(spool = %d.cfg.restart.spool.display(), journal = %d.cfg.live.journal.display(), "ready");
    let loop_result = d.event_loop(&rx, &journal);
    notify(&[NotifyState::Stopping]);
    let summary = d.shutdown(&rx, forwarder, journal);
    match (loop_result, summary) {
        (Err(LoopEnd::JournalDied), Err(DaemonError::Journal(e))) => {
            Err(DaemonError::JournalDied(e))
        }
        (Err(LoopEnd::JournalDied), Ok(_)) => Err(DaemonError::JournalDied(JournalError::Panicked)),
        (Err(LoopEnd::Error(e)), _) => Err(e),
        (_, summary) => summary,
    }
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

/// Files in `cur/` at start: scan the journal once and return, per file, the lines that
/// already have a record.
fn recover(spool: &Spool, cfg: &Config) -> Result<Vec<(String, LineSet)>, DaemonError> {
    let names = spool.in_progress()?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted = HashMap::new();
    let mut oldest = SystemTime::now();
    for n in &names {
        let meta =
            std::fs::metadata(spool.path(spool::CUR, n)).map_err(|cause| SpoolError::Dir {
                path: spool.path(spool::CUR, n),
                cause,
            })?;
        let ctime = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(std::os::unix::fs::MetadataExt::ctime(&meta)).unwrap_or(0),
            );
        oldest = oldest.min(ctime);
        wanted.insert(n.clone(), spool::claim_ts(&meta));
    }
    let journals = spool::journal_candidates(&cfg.live.journal, oldest);
    let started = Instant::now();
    let mut found = spool::journaled_lines(&journals, &wanted)?;
    let already: u64 = found.values().map(LineSet::len).sum();
    tracing::info!(
        files = names.len(),
        journals = journals.len(),
        lines_already_journaled = already,
        ms = started.elapsed().as_millis() as u64,
        "recovering lists left in cur/"
    );
    Ok(names
        .into_iter()
        .map(|n| {
            let skip = found.remove(&n).unwrap_or_default();
            (n, skip)
        })
        .collect())
}

struct Active {
    submitted: Arc<AtomicU64>,
    durable: u64,
    /// The reader reached the end of the file (or failed).
    eof: bool,
    /// The reader failed: the file goes to `bad/`.
    failed: bool,
    /// The reader was stopped by shutdown: the file stays in `cur/`.
    stopped: bool,
    thread: Option<JoinHandle<()>>,
}

struct Daemon<B: Backend + Sync> {
    cfg: Config,
    spool: Spool,
    journal_ctl: JournalControl,
    /// `None` only during shutdown, once the engine has been handed to `drain`.
    backend: Option<Arc<B>>,
    tx: Sender<Event>,
    stop: Arc<AtomicBool>,
    active: HashMap<String, Active>,
    want_scan: bool,
    pending: usize,
    files_done: u64,
    files_bad: u64,
}

impl<B: Backend + Sync> Daemon<B> {
    fn event_loop(&mut self, rx: &Receiver<Event>, journal: &Journal) -> Result<(), LoopEnd> {
        let mut watchdog_usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
            .then(|| Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(10)));
        let tick = watchdog.map_or(STATUS_INTERVAL, |w| w.min(STATUS_INTERVAL));
        let mut next_status = Instant::now();
        let mut next_watchdog = Instant::now();
        let mut next_rescan = Instant::now() + self.cfg.live.rescan;
        let mut next_retention = Instant::now() + RETENTION_INTERVAL;
        loop {
            if self.want_scan {
                self.claim_new()?;
            }
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
            if let Some(period) = watchdog {
                if now >= next_watchdog {
                    // Only while the workers show they are alive: a stuck worker lets the
                    // watchdog fire, and systemd restarts the service.
                    let stalest = self
                        .backend
                        .as_ref()
                        .map_or(Duration::ZERO, |b| b.stalest_worker());
                    if stalest <= WORKER_STALE_AFTER {
                        notify(&[NotifyState::Watchdog]);
                    } else {
                        tracing::error!(
                            stalest_ms = stalest.as_millis() as u64,
                            "a worker shows no sign of life; not pinging the watchdog"
                        );
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
            Event::Reload => self.reload(),
            Event::Durable(p) => {
                for (src, n) in p.per_src {
                    if let Some(a) = self.active.get_mut(&src) {
                        a.durable += n;
                        self.maybe_release(&src);
                    }
                }
            }
            Event::FeedDone { src, result } => {
                if let Some(a) = self.active.get_mut(&src) {
                    if let Some(t) = a.thread.take() {
                        let _ = t.join();
                    }
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
                            a.failed = true;
                            tracing::warn!(src, error = %e, "cannot read list; it goes to bad/ once its submitted lines are journaled");
                        }
                    }
                    self.maybe_release(&src);
                }
            }
        }
        Ok(())
    }

    fn maybe_release(&mut self, src: &str) {
        let Some(a) = self.active.get(src) else {
            return;
        };
        if !a.eof || a.stopped || a.durable < a.submitted.load(Ordering::Acquire) {
            return;
        }
        let outcome = if a.failed {
            Outcome::Bad
        } else {
            Outcome::Done
        };
        let records = a.durable;
        self.active.remove(src);
        self.want_scan = true;
        match self.spool.release(src, outcome) {
            Ok(to) => {
                match outcome {
                    Outcome::Done => self.files_done += 1,
                    Outcome::Bad => self.files_bad += 1,
                }
                tracing::info!(src, records, to = %to.display(), "list finished");
            }
            Err(e) => {
                tracing::error!(src, error = %e, "cannot move finished list out of cur/; it will be re-checked at restart")
            }
        }
    }

    fn claim_new(&mut self) -> Result<(), DaemonError> {
        self.want_scan = false;
        if self.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let names = match self.spool.pending() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot list new/");
                return Ok(());
            }
        };
        self.pending = names.len();
        for name in names {
            if self.active.len() >= self.cfg.live.max_files {
                // Looked at again when a slot frees up.
                return Ok(());
            }
            match self.spool.claim(&name) {
                Ok(Some(claimed)) => {
                    self.pending -= 1;
                    tracing::info!(file = name, src = claimed, "claimed list");
                    self.start_reader(claimed, None)?;
                }
                Ok(None) => self.pending -= 1,
                Err(e) => tracing::error!(file = name, error = %e, "cannot claim list"),
            }
        }
        Ok(())
    }

    fn start_reader(&mut self, name: String, skip: Option<LineSet>) -> Result<(), DaemonError> {
        let path = self.spool.path(spool::CUR, &name);
        let submitted = Arc::new(AtomicU64::new(0));
        let backend = self.backend.clone().ok_or(DaemonError::EngineShared)?;
        // Issue 13 adds `daemon.max_list_bytes` as `max_bytes` here.
        let limits = ReadLimits {
            stop: Some(self.stop.clone()),
            max_bytes: None,
        };
        let tx = self.tx.clone();
        let counter = submitted.clone();
        let src_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("read {name}"))
            .spawn(move || {
                let src: Arc<str> = Arc::from(src_name.as_str());
                let result = File::open(&path).map_err(ReadError::from).and_then(|f| {
                    let r = BufReader::with_capacity(READER_BUFFER, f);
                    spool::feed(r, &src, skip.as_ref(), &*backend, &counter, limits)
                });
                drop(backend);
                let _ = tx.send(Event::FeedDone {
                    src: src_name,
                    result,
                });
            })
            .map_err(DaemonError::Thread)?;
        self.active.insert(
            name,
            Active {
                submitted,
                durable: 0,
                eof: false,
                failed: false,
                stopped: false,
                thread: Some(thread),
            },
        );
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
        let policy = (live.fsync != old.fsync).then_some(live.fsync);
        self.journal_ctl.reopen(path, policy);
        self.want_scan = true;
    }

    fn purge(&self, age: Duration) {
        match self.spool.purge_done(age) {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "deleted old lists from done/"),
            Err(e) => tracing::warn!(error = %e, "done/ retention failed"),
        }
    }

    fn status_line(&self) -> String {
        let line = format!(
            "lists: {} active, {} pending, {} done, {} bad; records: {} journaled; in flight: {}",
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

    /// Stop readers, drain the engine within the grace period, flush the journal, and move
    /// out of `cur/` whatever got complete meanwhile.
    fn shutdown(
        mut self,
        rx: &Receiver<Event>,
        forwarder: JoinHandle<()>,
        journal: Journal,
    ) -> Result<Summary, DaemonError> {
        let started = Instant::now();
        self.stop.store(true, Ordering::Release);
        // Readers leave after their current submit (which may wait for queue space).
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
        let grace = self.cfg.live.drain_grace.saturating_sub(started.elapsed());
        // Dropping the engine drops its record senders, which ends the journal writer.
        let summary = backend.drain(grace);
        let journal_result = journal.finish();
        let _ = forwarder.join();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Durable(_) | Event::FeedDone { .. } => self.handle(ev)?,
                _ => {}
            }
        }
        let stats = journal_result?;
        tracing::info!(
            records = stats.records,
            fsyncs = stats.fsyncs,
            left_in_cur = self.active.len(),
            ms = started.elapsed().as_millis() as u64,
            "stopped"
        );
        Ok(summary)
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
    use tokio::signal::unix::{signal, SignalKind};
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let kinds = [
                    SignalKind::terminate(),
                    SignalKind::interrupt(),
                    SignalKind::hangup(),
                    SignalKind::user_defined1(),
                ];
                let mut streams = Vec::new();
                for k in kinds {
                    match signal(k) {
                        Ok(s) => streams.push(s),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let [term, int, hup, usr1] = &mut streams[..] else {
                    return;
                };
                loop {
                    let ev = tokio::select! {
                        _ = term.recv() => Event::Terminate,
                        _ = int.recv() => Event::Terminate,
                        _ = hup.recv() => Event::Reload,
                        _ = usr1.recv() => Event::Reopen,
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            });
        })
        .map_err(DaemonError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Signals(e)),
        Err(_) => Err(DaemonError::Signals(io::Error::other(
            "signal thread ended",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stopped;
    use crate::intake::InputLine;
    use crate::journal::FsyncPolicy;
    use crate::record::Record;
    use std::collections::BTreeMap;
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
        fn submit_line(&self, line: InputLine, src: &Arc<str>) -> Result<(), Stopped> {
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
        let file = dir.join("ringcrawl.toml");
        let text = format!(
            "[daemon]\nspool = \"{}\"\njournal = \"{}\"\nfsync_batch_ms = 10\nrescan_secs = 0.1\nmax_files = 2\n",
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

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
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
        (1..=n)
            .filter(|i| i % 7 != 0)
            .map(|i| (name.to_string(), i))
            .collect()
    }

    #[test]
    fn lists_are_journaled_exactly_once_and_moved_to_done() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let spool_dir = cfg.restart.spool.clone();
        let journal = cfg.live.journal.clone();
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        let lists: Vec<_> = (0..4)
            .map(|i| write_list(dir.path(), &format!("l{i}.txt"), 50 + i))
            .collect();
        let queued = spool::submit(&spool_dir, &lists).unwrap();
        assert_eq!(queued.len(), 4);
        wait_for("lists done", || count(&spool_dir.join("done")) == 4);
        d.stop().unwrap();
        let keys = journal_keys(&[&journal]);
        let mut want: Vec<_> = (0..4)
            .flat_map(|i| expected(&format!("l{i}.txt"), 50 + i))
            .collect();
        want.sort();
        assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), want);
        assert!(keys.values().all(|&n| n == 1));
        assert_eq!(count(&spool_dir.join("cur")), 0);
    }

    #[test]
    fn interrupted_run_is_completed_without_duplicates_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        // First run: only 30 records are ever produced; the rest are "in flight" at the stop.
        let d = start(cfg.clone(), 30);
        wait_for("spool", || spool_dir.join("new").is_dir());
        spool::submit(&spool_dir, &[write_list(dir.path(), "big.txt", 100)]).unwrap();
        wait_for("30 records", || journal_keys(&[&journal]).len() == 30);
        d.stop().unwrap();
        assert_eq!(
            count(&spool_dir.join("cur")),
            1,
            "unfinished list stays in cur/"
        );
        // A crash mid-write leaves a torn record behind.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            b"{\"url\":\"http://127.0.0.1:9/big.txt/99\",\"src\":\"big.txt\",\"li",
        )
        .unwrap();
        drop(f);

        let d = start(cfg, u64::MAX);
        wait_for("list done", || count(&spool_dir.join("done")) == 1);
        d.stop().unwrap();
        let keys = journal_keys(&[&journal]);
        assert_eq!(
            keys.keys().cloned().collect::<Vec<_>>(),
            expected("big.txt", 100)
        );
        assert!(keys.values().all(|&n| n == 1), "duplicates: {keys:?}");
    }

    #[test]
    fn unreadable_list_goes_to_bad_and_reload_reopens_moved_journal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (spool_dir, journal) = (cfg.restart.spool.clone(), cfg.live.journal.clone());
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        // A directory cannot be read as a list (even by root).
        std::fs::create_dir(spool_dir.join("new/not-a-file")).unwrap();
        wait_for("bad", || spool_dir.join("bad/not-a-file").exists());

        spool::submit(&spool_dir, &[write_list(dir.path(), "a.txt", 10)]).unwrap();
        wait_for("a done", || count(&spool_dir.join("done")) == 1);
        let moved = dir.path().join("journal.jsonl.1");
        std::fs::rename(&journal, &moved).unwrap();
        d.tx.send(Event::Reload).unwrap();
        wait_for("new journal", || journal.exists());
        spool::submit(&spool_dir, &[write_list(dir.path(), "b.txt", 10)]).unwrap();
        wait_for("b done", || count(&spool_dir.join("done")) == 2);
        d.stop().unwrap();
        let old = journal_keys(&[&moved]);
        let new = journal_keys(&[&journal]);
        assert!(old.keys().all(|(s, _)| s == "a.txt") && old.len() == 9);
        assert!(new.keys().all(|(s, _)| s == "b.txt") && new.len() == 9);
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
        use std::io::Write;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let spool_dir = cfg.restart.spool.clone();
        let d = start(cfg, u64::MAX);
        wait_for("spool", || spool_dir.join("new").is_dir());
        // A FIFO fed 'x' forever: a list with no newline and no end. Opened before it is
        // dropped into new/, where the daemon claims it at once.
        let fifo = dir.path().join("endless");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Read-write, so opening waits for no reader and the daemon's open waits for no writer.
        let mut w = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        std::fs::rename(&fifo, spool_dir.join("new/endless")).unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (n, end) = (written.clone(), done.clone());
        let writer = std::thread::spawn(move || {
            let chunk = [b'x'; 64 * 1024];
            while !end.load(Ordering::Acquire) {
                match w.write(&chunk) {
                    Ok(k) => {
                        n.fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("fifo write: {e}"),
                }
            }
        });
        // Far more than a pipe holds: the daemon is reading (and skipping) the line.
        wait_for("the endless line being read", || {
            written.load(Ordering::Relaxed) > 16 << 20
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(d.stop().map(|_| ())));
        let stopped = rx.recv_timeout(Duration::from_secs(10));
        done.store(true, Ordering::Release);
        writer.join().unwrap();
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "SIGTERM waited on the endless line: {stopped:?}"
        );
        assert!(
            spool_dir.join("cur/endless").exists(),
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
}
