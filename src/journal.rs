//! The JSON Lines journal writer: one thread that owns the journal file (or stdout), drains
//! finished [`Record`]s from a bounded channel, and writes them in batches.
//!
//! - **Group commit.** Records that are already queued are written with one `write` call;
//!   the file is fsync'd according to [`FsyncPolicy`]: after every batch (`always`), at most
//!   every N ms while there is unsynced data (`batch`, the default, 200 ms), or never.
//! - **Durability notifications.** After each fsync (for `never`: after each write, which
//!   survives `kill -9` but not a power cut) the writer sends a [`Progress`] with the number of
//!   records per spool `src` that are now durable. The spool releases a list file from `cur/`
//!   only once all of its records are durable (see `spool` for the exactly-once scheme).
//! - **Torn tail repair.** The journal is append-only with a single writer, so the only damage
//!   a crash can do is a last line without its `\n`. [`repair_torn_tail`] truncates the file
//!   back to the last `\n` when it is opened.
//! - **Pause instead of failing** (the daemon: [`JournalSetup::pause_on_error`]). A failed
//!   write or fsync (a full disk, a read-only file system, an I/O error) never leaves a torn
//!   or unsynced record behind: [`Tail`] cuts the file back to the end of the last complete
//!   write (after a failed fsync, to the last synced length, and writes the unsynced bytes
//!   again), keeps the records, and the writer retries with a capped backoff
//!   ([`retry_delay`]). Meanwhile it takes no new records, so the bounded channel fills and
//!   the engine's backpressure stops intake; [`JournalControl::paused`] says why. Once a
//!   retry succeeds, writing goes on where it stopped: no record lost or doubled.
//! - **Position and segments.** [`JournalControl::position`] is where the next record will
//!   be written at the earliest: the current segment (a number the [`OnOpen`] hook gives each
//!   file the writer opens) and the length written to it. The spool records it when it claims
//!   a list, so crash recovery reads from there.
//! - **Liveness.** The writer beats on every turn of its loop, paused or not
//!   ([`JournalControl::stalest`]): the daemon's watchdog needs it alive.
//! - **Reopen.** [`JournalControl::reopen`] makes the writer fsync and close the file and open
//!   the path again (creating it), which is what logrotate's `create` mode needs after it moved
//!   the old file away. The path (and fsync policy) may be changed at the same time. While the
//!   writer is paused, a reopen waits until it can write again.
//! - **Stop.** [`JournalControl::stop`] makes the writer write what is queued, commit once,
//!   and end, even while paused (what it could not write then is dropped: those lines have no
//!   record and are fetched again at the next start).
//! - **Stdout mode** (`fetch`): flush after each batch, no fsync, no notifications.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;

/// Default bound on how long written records may stay unsynced with `FsyncPolicy::Batch`.
pub const DEFAULT_FSYNC_BATCH: Duration = Duration::from_millis(200);
/// Records queued between the engine and the writer (backpressure beyond this). The channel
/// is allocated whole at start (a few hundred bytes a record); this many cover a fsync's
/// pause at tens of thousands of records a second.
pub const RECORD_CHANNEL_CAPACITY: usize = 4 * 1024;
/// A batch is written once it reaches this many bytes even if more records are queued.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Written but unsynced bytes kept for a rewrite after a failed fsync, at most: past this the
/// writer commits at once, whatever the fsync policy's timer says.
pub const MAX_UNSYNCED_BYTES: usize = 16 * 1024 * 1024;
/// How often the writer looks at control requests (reopen, stop) while idle or paused; also
/// the longest time between two beats of a writer that is not inside a system call.
pub const CONTROL_POLL: Duration = Duration::from_millis(50);
/// After a write of fewer than [`COALESCE_BELOW`] records, the writer waits this long
/// before taking the next ones: workers then hand over records in batches instead of
/// waking this thread once per record (a futex wakeup and two context switches each, a
/// real share of the CPU at high record rates). Records are only this much later on disk.
pub const RECORD_COALESCE: Duration = Duration::from_millis(2);
/// See [`RECORD_COALESCE`].
pub const COALESCE_BELOW: usize = 64;
/// First wait before writing again after a failure; it doubles with each failed retry.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two retries of a paused writer.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Mode of a newly created journal file (before umask).
pub const JOURNAL_FILE_MODE: u32 = 0o640;
/// Chunk size used when scanning backwards for the last newline.
const TAIL_SCAN_CHUNK: u64 = 64 * 1024;

/// How a record becomes bytes (its line, with the `\n`), chosen once when the writer
/// starts: [`Record::write_line`] (JSON Lines, the journal's format) or
/// [`Record::write_csv_row`] (`fetch --format csv`).
pub type Encode = fn(&Record, &mut Vec<u8>);

/// When the journal file is fsync'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch of records.
    Always,
    /// At most this long after the first unsynced write.
    Batch(Duration),
    /// Never (records still reach the kernel after each batch and survive `kill -9`).
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Batch(DEFAULT_FSYNC_BATCH)
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Batch(d) => write!(f, "batch({} ms)", d.as_millis()),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

/// Journal failures (one-line messages).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open journal {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot repair torn tail of journal {path}: {source}")]
    Repair { path: PathBuf, source: io::Error },
    #[error("cannot write journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot fsync journal {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
    #[error("cannot record journal {path} in the spool's journal history: {source}")]
    Segment { path: PathBuf, source: io::Error },
    #[error("cannot start journal writer thread: {0}")]
    Thread(io::Error),
    #[error("journal writer thread panicked")]
    Panicked,
}

impl JournalError {
    /// The OS error behind a write or fsync failure.
    fn io(&self) -> Option<&io::Error> {
        match self {
            JournalError::Write { source, .. } | JournalError::Sync { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Records that became durable in one commit, counted per spool `src`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `(src, records)` for records carrying a `src`.
    pub per_src: Vec<(String, u64)>,
    /// All records made durable by this commit (with or without `src`).
    pub records: u64,
}

/// Counters of a finished writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    pub bytes: u64,
    /// write(2) calls (one per batch of records).
    pub writes: u64,
    pub fsyncs: u64,
    pub reopens: u64,
    /// Times the writer paused on a failed write or fsync.
    pub pauses: u64,
    /// Records taken from the channel but not written when a stop came while paused.
    pub dropped: u64,
}

/// Where the journal goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Stdout,
}

/// A place in the journal: byte `offset` of segment `seq` (see [`OnOpen`]). Ordered by
/// segment, then offset: the order in which records were written.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct JournalPos {
    pub seq: u64,
    pub offset: u64,
}

/// A journal file the writer just opened, before it writes anything to it.
#[derive(Debug)]
pub struct Opened<'a> {
    pub path: &'a Path,
    pub dev: u64,
    pub ino: u64,
    /// Its length (after the torn-tail repair): the writer's records start here.
    pub start: u64,
}

/// Called by the writer each time it opens a journal file (at start and on every reopen),
/// before writing to it; returns the new segment's number. An error keeps the writer on
/// its old file (at start: fails the start).
pub type OnOpen = Box<dyn FnMut(&Opened<'_>) -> io::Result<u64> + Send>;

/// How to start a [`Journal`].
pub struct JournalSetup {
    pub target: Target,
    pub policy: FsyncPolicy,
    /// Receives a [`Progress`] after each commit.
    pub progress: Option<Sender<Progress>>,
    /// How a record becomes bytes ([`Record::write_line`]: JSON Lines).
    pub encode: Encode,
    pub on_open: Option<OnOpen>,
    /// Pause and retry on a failed write or fsync (the daemon) instead of ending with the
    /// error (`fetch`).
    pub pause_on_error: bool,
}

#[derive(Default)]
struct ControlState {
    reopen: bool,
    path: Option<PathBuf>,
    policy: Option<FsyncPolicy>,
}

/// What the writer shares with its [`JournalControl`] handles.
struct Shared {
    /// A reopen request is waiting in `state`.
    flag: AtomicBool,
    state: Mutex<ControlState>,
    /// Records durable so far.
    written: AtomicU64,
    position: Mutex<JournalPos>,
    /// Why the writer is paused, if it is.
    paused: Mutex<Option<String>>,
    stop: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` of the writer's last beat.
    beat: AtomicU64,
}

/// Cloneable handle on the writer thread: reopen, stop, and what it is doing.
#[derive(Clone)]
pub struct JournalControl {
    shared: Arc<Shared>,
}

impl JournalControl {
    /// Reopen the journal (optionally at a new path and with a new fsync policy) before the
    /// next batch. The old file is fsync'd first.
    pub fn reopen(&self, path: Option<PathBuf>, policy: Option<FsyncPolicy>) {
        let mut st = lock(&self.shared.state);
        st.reopen = true;
        if path.is_some() {
            st.path = path;
        }
        if policy.is_some() {
            st.policy = policy;
        }
        self.shared.flag.store(true, Ordering::Release);
    }

    /// Records durable so far.
    pub fn records_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Where the next record will be written at the earliest.
    pub fn position(&self) -> JournalPos {
        *lock(&self.shared.position)
    }

    /// Why the writer is paused (`journal full (No space left on device)`), if it is.
    pub fn paused(&self) -> Option<String> {
        lock(&self.shared.paused).clone()
    }

    /// How long ago the writer last showed it is alive.
    pub fn stalest(&self) -> Duration {
        let beat = Duration::from_millis(self.shared.beat.load(Ordering::Relaxed));
        self.shared.started.elapsed().saturating_sub(beat)
    }

    /// Write what is queued, commit once (even while paused), and end the writer.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Lock `m`, also when a panicking holder poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running journal writer thread.
pub struct Journal {
    thread: JoinHandle<Result<JournalStats, JournalError>>,
    control: JournalControl,
}

impl Journal {
    /// [`Journal::start_encoded`] as JSON Lines.
    #[cfg(test)]
    pub fn start(
        target: Target,
        policy: FsyncPolicy,
        progress: Option<Sender<Progress>>,
    ) -> Result<(Journal, SyncSender<Record>), JournalError> {
        Journal::start_encoded(target, policy, progress, Record::write_line)
    }

    /// Open (creating) the journal file, repair a torn tail, and start the writer thread,
    /// which ends on the first failed write (`fetch`) and writes each record as `encode`
    /// makes it. Returns the writer and the sender the engine puts records on. `progress`
    /// receives a [`Progress`] after each commit.
    pub fn start_encoded(
        target: Target,
        policy: FsyncPolicy,
        progress: Option<Sender<Progress>>,
        encode: Encode,
    ) -> Result<(Journal, SyncSender<Record>), JournalError> {
        Journal::start_with(JournalSetup {
            target,
            policy,
            progress,
            encode,
            on_open: None,
            pause_on_error: false,
        })
    }

    /// [`Journal::start_encoded`] with every option.
    pub fn start_with(setup: JournalSetup) -> Result<(Journal, SyncSender<Record>), JournalError> {
        let JournalSetup {
            target,
            policy,
            progress,
            encode,
            mut on_open,
            pause_on_error,
        } = setup;
        let mut position = JournalPos::default();
        let (out, len) = match &target {
            Target::File(path) => {
                let (file, start) = open_segment(path, &mut on_open, &mut position)?;
                let out = Output::File {
                    path: path.clone(),
                    file,
                };
                (out, start)
            }
            Target::Stdout => (Output::Stdout(io::stdout()), 0),
        };
        let (tx, rx) = mpsc::sync_channel(RECORD_CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            flag: AtomicBool::new(false),
            state: Mutex::new(ControlState::default()),
            written: AtomicU64::new(0),
            position: Mutex::new(position),
            paused: Mutex::new(None),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            beat: AtomicU64::new(0),
        });
        let syncs = matches!(out, Output::File { .. }) && policy != FsyncPolicy::Never;
        let writer = Writer {
            out,
            encode,
            policy,
            rx,
            progress,
            shared: shared.clone(),
            stats: JournalStats::default(),
            tail: Tail::new(len, syncs),
            pending: HashMap::new(),
            pending_records: 0,
            dirty_since: None,
            on_open,
            pause_on_error,
            paused: None,
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run())
            .map_err(JournalError::Thread)?;
        Ok((
            Journal {
                thread,
                control: JournalControl { shared },
            },
            tx,
        ))
    }

    /// A handle for reopen and stop requests and the writer's state.
    pub fn control(&self) -> JournalControl {
        self.control.clone()
    }

    /// True once the writer thread has ended (all senders dropped, a stop, or an error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the writer to end: it ends when every record sender has been dropped, after a
    /// final write and fsync, or after [`JournalControl::stop`].
    pub fn finish(self) -> Result<JournalStats, JournalError> {
        self.thread.join().map_err(|_| JournalError::Panicked)?
    }

    /// End the writer now, with record senders still alive (`fetch` interrupted, workers
    /// still fetching): the records already queued are written (within [`CONTROL_POLL`]),
    /// later ones are refused (their senders get an error). Every record written is whole.
    pub fn close(self) -> Result<JournalStats, JournalError> {
        self.control.stop();
        self.finish()
    }
}

/// Open `path` as the writer's next file (repairing a torn tail) and register it through
/// `on_open`; `position` becomes its start. Returns the file and its length.
fn open_segment(
    path: &Path,
    on_open: &mut Option<OnOpen>,
    position: &mut JournalPos,
) -> Result<(File, u64), JournalError> {
    let (file, removed) = open_journal(path)?;
    if removed > 0 {
        tracing::warn!(path = %path.display(), bytes = removed, "journal had a torn last line; truncated it");
    }
    let meta = file.metadata().map_err(|source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let start = meta.len();
    let seq = match on_open {
        Some(hook) => hook(&Opened {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            start,
        })
        .map_err(|source| JournalError::Segment {
            path: path.to_path_buf(),
            source,
        })?,
        None => position.seq,
    };
    *position = JournalPos { seq, offset: start };
    Ok((file, start))
}

/// The file operations [`Tail`] needs (a real file, stdout, or a test double).
pub trait TailFile {
    /// Append all of `bytes` (a failure may leave part of them written).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Cut the file back to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Make what was appended durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Reserve room for `len` bytes at `offset` without writing them, so that a write there
    /// cannot fail half-way for want of space. The default reserves nothing.
    fn reserve(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// The end of the journal file as the writer knows it, without I/O of its own: the records
/// not yet written, the bytes written but not yet synced (kept so that a failed fsync can
/// write them again), and the lengths that a failure cuts the file back to. After any
/// failure the file holds only complete records, each at most once, once the cut is done,
/// and the next [`Tail::write`] does the cut first.
#[derive(Debug)]
pub struct Tail {
    /// Records appended and not yet written.
    buf: Vec<u8>,
    /// The bytes in `synced_len..written_len` (only while `keep_unsynced`).
    unsynced: Vec<u8>,
    keep_unsynced: bool,
    synced_len: u64,
    written_len: u64,
    /// After a failure: cut the file back to this length before writing again.
    cut_to: Option<u64>,
}

impl Tail {
    /// A file of `len` bytes, all of them durable; `keep_unsynced` when the file is fsync'd
    /// (otherwise a write is as durable as it gets).
    pub fn new(len: u64, keep_unsynced: bool) -> Tail {
        Tail {
            buf: Vec::with_capacity(64 * 1024),
            unsynced: Vec::new(),
            keep_unsynced,
            synced_len: len,
            written_len: len,
            cut_to: None,
        }
    }

    /// Where the bytes not yet written go (whole records only).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Bytes written and not yet synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// The file's length once everything written so far stays: where the next record goes.
    pub fn written_len(&self) -> u64 {
        self.written_len
    }

    /// Write the queued bytes (doing a pending cut first; with `reserve`, reserving their
    /// room first, so that a full disk fails the write before any byte is written). On
    /// failure the file is cut back at once to its length before this write (or that cut is
    /// left pending when it fails too), and the bytes stay queued.
    pub fn write(&mut self, f: &mut dyn TailFile, reserve: bool) -> io::Result<usize> {
        if let Some(len) = self.cut_to {
            f.truncate(len)?;
            self.cut_to = None;
        }
        if self.buf.is_empty() {
            return Ok(0);
        }
        if reserve {
            f.reserve(self.written_len, self.buf.len() as u64)?;
        }
        if let Err(e) = f.append(&self.buf) {
            self.cut_now(f, self.written_len);
            return Err(e);
        }
        let n = self.buf.len();
        self.written_len += n as u64;
        if self.keep_unsynced {
            self.unsynced.extend_from_slice(&self.buf);
        }
        self.buf.clear();
        Ok(n)
    }

    /// Sync what was written. On failure the file is to be cut back to its last synced
    /// length and the unsynced bytes are queued again, ahead of the rest.
    pub fn sync(&mut self, f: &mut dyn TailFile) -> io::Result<()> {
        if let Err(e) = f.sync() {
            self.cut_now(f, self.synced_len);
            self.written_len = self.synced_len;
            let mut again = std::mem::take(&mut self.unsynced);
            again.extend_from_slice(&self.buf);
            self.buf = again;
            return Err(e);
        }
        self.synced_len = self.written_len;
        self.unsynced.clear();
        Ok(())
    }

    /// Cut the file back to `len` now; if that fails, before the next write.
    fn cut_now(&mut self, f: &mut dyn TailFile, len: u64) {
        self.cut_to = f.truncate(len).is_err().then_some(len);
    }

    /// The file stops (or starts) being fsync'd: what was written counts as durable.
    pub fn set_keep_unsynced(&mut self, keep: bool) {
        self.keep_unsynced = keep;
        self.synced_len = self.written_len;
        self.unsynced.clear();
    }

    /// Drop the queued and unsynced bytes (a stop while paused): the file is to be cut back
    /// to its last durable length. Returns how many bytes were dropped.
    pub fn abandon(&mut self) -> usize {
        let n = self.buf.len() + self.unsynced.len();
        if self.written_len != self.synced_len || self.cut_to.is_some() {
            self.cut_to = Some(self.synced_len);
        }
        self.written_len = self.synced_len;
        self.buf.clear();
        self.unsynced.clear();
        n
    }
}

/// How long a paused writer waits before its `attempt`th retry (0-based): [`RETRY_FIRST`],
/// doubling, at most [`RETRY_MAX`].
pub fn retry_delay(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_MAX)
}

/// What a paused writer says about an OS error: `journal full (No space left on device)`
/// for a full disk or quota, `journal not writable (...)` for anything else.
pub fn pause_reason(e: &io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "journal full",
        _ => "journal not writable",
    };
    format!("{what} ({})", os_message(e))
}

/// An OS error's text without Rust's ` (os error N)` suffix.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

enum Output {
    File { path: PathBuf, file: File },
    Stdout(io::Stdout),
}

impl Output {
    fn path(&self) -> PathBuf {
        match self {
            Output::File { path, .. } => path.clone(),
            Output::Stdout(_) => PathBuf::from("-"),
        }
    }
}

impl TailFile for Output {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(bytes),
            Output::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(bytes).and_then(|()| lock.flush())
            }
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.set_len(len),
            Output::Stdout(_) => Ok(()),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.sync_data(),
            Output::Stdout(_) => Ok(()),
        }
    }

    fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let Output::File { file, .. } = self else {
            return Ok(());
        };
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Ok(());
        };
        // SAFETY: fallocate only reads the descriptor number, which `file` keeps open for the
        // call; KEEP_SIZE allocates blocks without changing the file's length or contents.
        let rc =
            unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // A file system that cannot reserve: the write itself will tell.
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(()),
            _ => Err(e),
        }
    }
}

/// A paused writer's state.
struct Paused {
    reason: String,
    since: Instant,
    /// Failed retries so far.
    attempts: u32,
    next_try: Instant,
}

struct Writer {
    out: Output,
    encode: Encode,
    policy: FsyncPolicy,
    rx: Receiver<Record>,
    progress: Option<Sender<Progress>>,
    shared: Arc<Shared>,
    stats: JournalStats,
    tail: Tail,
    /// Records appended but not yet reported durable, per src.
    pending: HashMap<String, u64>,
    pending_records: u64,
    /// When the oldest unsynced write happened.
    dirty_since: Option<Instant>,
    on_open: Option<OnOpen>,
    pause_on_error: bool,
    paused: Option<Paused>,
}

impl Writer {
    fn run(mut self) -> Result<JournalStats, JournalError> {
        // On error the writer (and with it the receiver) is dropped when this returns, so
        // producers see the failure instead of blocking.
        self.run_loop().map(|()| self.stats.clone())
    }

    fn beat(&self) {
        let ms = u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.shared.beat.store(ms, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn run_loop(&mut self) -> Result<(), JournalError> {
        loop {
            self.beat();
            if self.stopping() {
                return self.stop_now();
            }
            if self.paused.is_some() {
                self.retry()?;
                continue;
            }
            let timeout = match (self.policy, self.dirty_since) {
                (FsyncPolicy::Batch(max), Some(since)) => (since + max)
                    .saturating_duration_since(Instant::now())
                    .min(CONTROL_POLL),
                _ => CONTROL_POLL,
            };
            match self.rx.recv_timeout(timeout) {
                Ok(rec) => {
                    self.append(&rec);
                    let mut batch = 1usize;
                    let mut disconnected = false;
                    while self.tail.queued() < MAX_BATCH_BYTES {
                        match self.rx.try_recv() {
                            Ok(rec) => {
                                self.append(&rec);
                                batch += 1;
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        }
                    }
                    if let Err(e) = self.write_batch() {
                        self.pause(e)?;
                        continue;
                    }
                    if disconnected {
                        return self.last_commit();
                    }
                    if batch < COALESCE_BELOW {
                        std::thread::sleep(RECORD_COALESCE);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.last_commit(),
            }
            let due = match (self.policy, self.dirty_since) {
                (FsyncPolicy::Batch(max), Some(since)) => {
                    since.elapsed() >= max || self.tail.unsynced() >= MAX_UNSYNCED_BYTES
                }
                (FsyncPolicy::Always | FsyncPolicy::Never, Some(_)) => true,
                _ => false,
            };
            if due {
                if let Err(e) = self.commit() {
                    self.pause(e)?;
                    continue;
                }
            }
            if self.shared.flag.swap(false, Ordering::AcqRel) {
                self.handle_control()?;
            }
        }
    }

    fn append(&mut self, rec: &Record) {
        (self.encode)(rec, self.tail.buf_mut());
        self.pending_records += 1;
        if let Some(src) = &rec.src {
            match self.pending.get_mut(src.as_str()) {
                Some(n) => *n += 1,
                None => {
                    self.pending.insert(src.clone(), 1);
                }
            }
        }
    }

    fn write_batch(&mut self) -> Result<(), JournalError> {
        // A paused writer reserves the room first: its retries never leave part of a batch
        // behind, even for an instant.
        let reserve = self.paused.is_some();
        let written =
            self.tail
                .write(&mut self.out, reserve)
                .map_err(|source| JournalError::Write {
                    path: self.out.path(),
                    source,
                })?;
        if written > 0 {
            self.stats.writes += 1;
            self.stats.bytes += written as u64;
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        lock(&self.shared.position).offset = self.tail.written_len();
        Ok(())
    }

    /// Make everything written so far durable (per policy) and report it.
    fn commit(&mut self) -> Result<(), JournalError> {
        self.write_batch()?;
        let Some(since) = self.dirty_since.take() else {
            return Ok(());
        };
        if matches!(self.out, Output::File { .. }) && self.policy != FsyncPolicy::Never {
            if let Err(source) = self.tail.sync(&mut self.out) {
                self.dirty_since = Some(since);
                lock(&self.shared.position).offset = self.tail.written_len();
                return Err(JournalError::Sync {
                    path: self.out.path(),
                    source,
                });
            }
            self.stats.fsyncs += 1;
        }
        self.stats.records += self.pending_records;
        self.shared
            .written
            .store(self.stats.records, Ordering::Relaxed);
        let progress = Progress {
            per_src: self.pending.drain().collect(),
            records: std::mem::take(&mut self.pending_records),
        };
        if let Some(tx) = &self.progress {
            // The receiver going away (daemon shutting down) is not the writer's problem.
            let _ = tx.send(progress);
        }
        Ok(())
    }

    /// A write or fsync failed: pause (daemon) or end with the error (`fetch`).
    fn pause(&mut self, e: JournalError) -> Result<(), JournalError> {
        let Some(os) = e.io().filter(|_| self.pause_on_error) else {
            return Err(e);
        };
        let reason = pause_reason(os);
        tracing::error!(error = %e, "{reason}: intake paused; retrying until the journal can be written again");
        self.stats.pauses += 1;
        *lock(&self.shared.paused) = Some(reason.clone());
        let now = Instant::now();
        self.paused = Some(Paused {
            reason,
            since: now,
            attempts: 0,
            next_try: now + retry_delay(0),
        });
        Ok(())
    }

    /// Paused: wait for the next retry (beating, and ending the wait on a stop), then try
    /// to write and commit what is held.
    fn retry(&mut self) -> Result<(), JournalError> {
        let Some(p) = &self.paused else {
            return Ok(());
        };
        let next_try = p.next_try;
        loop {
            let now = Instant::now();
            if now >= next_try || self.stopping() {
                break;
            }
            std::thread::sleep(next_try.saturating_duration_since(now).min(CONTROL_POLL));
            self.beat();
        }
        if self.stopping() {
            return Ok(());
        }
        match self.commit() {
            Ok(()) => {
                if let Some(p) = self.paused.take() {
                    tracing::info!(
                        paused_ms = p.since.elapsed().as_millis() as u64,
                        retries = p.attempts + 1,
                        "journal writable again; resuming"
                    );
                }
                *lock(&self.shared.paused) = None;
                Ok(())
            }
            Err(e) => {
                let Some(os) = e.io() else {
                    return Err(e);
                };
                let reason = pause_reason(os);
                let p = self.paused.as_mut().expect("paused");
                if reason != p.reason {
                    tracing::error!(error = %e, "{reason}: intake still paused");
                    *lock(&self.shared.paused) = Some(reason.clone());
                    p.reason = reason;
                }
                p.attempts = p.attempts.saturating_add(1);
                p.next_try = Instant::now() + retry_delay(p.attempts);
                Ok(())
            }
        }
    }

    /// Every sender is gone: commit, retrying while paused until it works or a stop comes.
    fn last_commit(&mut self) -> Result<(), JournalError> {
        loop {
            if self.paused.is_some() {
                self.retry()?;
                if self.paused.is_none() {
                    return Ok(());
                }
            } else {
                match self.commit() {
                    Ok(()) => return Ok(()),
                    Err(e) => self.pause(e)?,
                }
            }
            self.beat();
            if self.stopping() {
                return self.stop_now();
            }
        }
    }

    /// Stop requested: write what is queued, commit once, end. While paused, what cannot be
    /// written is dropped (its lines have no record).
    fn stop_now(&mut self) -> Result<(), JournalError> {
        while let Ok(rec) = self.rx.try_recv() {
            self.append(&rec);
        }
        match self.commit() {
            Ok(()) => Ok(()),
            Err(e) if self.pause_on_error && e.io().is_some() => {
                let records = self.pending_records;
                let bytes = self.tail.abandon();
                // Leave no partial record behind: cut back to what is durable.
                let cut = self.tail.write(&mut self.out, false);
                self.stats.dropped += records;
                tracing::error!(
                    error = %e,
                    records,
                    bytes,
                    cut_back = cut.is_ok(),
                    "stopping with the journal not writable: these records are not written; their lines are fetched again at the next start"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn handle_control(&mut self) -> Result<(), JournalError> {
        let (reopen, path, policy) = {
            let mut st = lock(&self.shared.state);
            (
                std::mem::take(&mut st.reopen),
                st.path.take(),
                st.policy.take(),
            )
        };
        if let Some(p) = policy {
            if let Err(e) = self.commit() {
                // Keep the request for after the pause.
                self.requeue(reopen, path, Some(p));
                return self.pause(e);
            }
            self.policy = p;
            self.tail.set_keep_unsynced(
                matches!(self.out, Output::File { .. }) && p != FsyncPolicy::Never,
            );
        }
        if !reopen {
            return Ok(());
        }
        if let Err(e) = self.commit() {
            self.requeue(true, path, None);
            return self.pause(e);
        }
        let keep = self.policy != FsyncPolicy::Never;
        let Output::File { path: cur, .. } = &self.out else {
            return Ok(());
        };
        let new_path = path.unwrap_or_else(|| cur.clone());
        let mut position = *lock(&self.shared.position);
        match open_segment(&new_path, &mut self.on_open, &mut position) {
            Ok((file, start)) => {
                tracing::info!(path = %new_path.display(), segment = position.seq, "journal reopened");
                self.out = Output::File {
                    path: new_path,
                    file,
                };
                self.tail = Tail::new(start, keep);
                *lock(&self.shared.position) = position;
                self.stats.reopens += 1;
            }
            Err(e) => {
                // Keep journaling into the file we have rather than losing records.
                tracing::error!(error = %e, still_writing = %cur.display(), "journal reopen failed");
            }
        }
        Ok(())
    }

    /// Put a control request back (it is handled once the writer can write again).
    fn requeue(&self, reopen: bool, path: Option<PathBuf>, policy: Option<FsyncPolicy>) {
        let mut st = lock(&self.shared.state);
        st.reopen |= reopen;
        if st.path.is_none() {
            st.path = path;
        }
        if st.policy.is_none() {
            st.policy = policy;
        }
        self.shared.flag.store(true, Ordering::Release);
    }
}

/// Open (create) a journal for appending and repair a torn tail. Returns the file and the
/// number of bytes removed.
pub fn open_journal(path: &Path) -> Result<(File, u64), JournalError> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(JOURNAL_FILE_MODE)
        .open(path)
        .map_err(|source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let removed = repair_torn_tail(&mut file).map_err(|source| JournalError::Repair {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((file, removed))
}

/// Truncate `file` after its last `\n` (to empty if there is none) and fsync if anything
/// was removed. Returns the number of bytes removed.
pub fn repair_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut end = len;
    let mut chunk = vec![0u8; TAIL_SCAN_CHUNK as usize];
    let keep = loop {
        let start = end.saturating_sub(TAIL_SCAN_CHUNK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    if keep == len {
        return Ok(0);
    }
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(len - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(url: &str, src: Option<&str>, line: Option<u64>) -> Record {
        Record {
            url: url.into(),
            src: src.map(str::to_string),
            line,
            ts: "2026-11-23T07:00:00.000Z".into(),
            ..Record::default()
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A journal file in memory with a size limit (a small full disk) and fsyncs that fail on
    /// request; `durable` is what a power cut would leave.
    struct SmallDisk {
        data: Vec<u8>,
        room: usize,
        fail_syncs: u32,
        durable: usize,
    }

    impl SmallDisk {
        fn new(room: usize) -> SmallDisk {
            SmallDisk {
                data: Vec::new(),
                room,
                fail_syncs: 0,
                durable: 0,
            }
        }
    }

    impl TailFile for SmallDisk {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            let fit = self.room.saturating_sub(self.data.len()).min(bytes.len());
            self.data.extend_from_slice(&bytes[..fit]);
            if fit < bytes.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            self.durable = self.durable.min(self.data.len());
            Ok(())
        }
        fn reserve(&mut self, offset: u64, len: u64) -> io::Result<()> {
            if offset as usize + len as usize > self.room {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            if self.fail_syncs > 0 {
                self.fail_syncs -= 1;
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.durable = self.data.len();
            Ok(())
        }
    }

    fn line(i: usize) -> String {
        format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 17))
    }

    /// Every complete line of `data`, and no partial one.
    fn complete_lines(data: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(data).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "torn tail: {text:?}"
        );
        text.lines().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn a_full_disk_cuts_the_partial_batch_and_the_retry_writes_each_record_once() {
        let mut disk = SmallDisk::new(700);
        let mut tail = Tail::new(0, true);
        let want: Vec<String> = (0..100).map(line).collect();
        let mut failures = 0;
        for batch in want.chunks(7) {
            for l in batch {
                tail.buf_mut().extend_from_slice(l.as_bytes());
            }
            let mut reserve = false;
            while tail
                .write(&mut disk, reserve)
                .and_then(|_| tail.sync(&mut disk))
                .is_err()
            {
                failures += 1;
                // The partial batch was cut at once; the batch is kept for the retry, which
                // reserves its room first (a paused writer).
                assert!(tail.queued() > 0, "the batch is kept");
                assert_eq!(complete_lines(&disk.data).concat().len(), disk.data.len());
                reserve = true;
                disk.room += 150; // some room was made
            }
            assert_eq!(tail.written_len(), disk.data.len() as u64);
        }
        assert!(failures > 5, "the disk filled up: {failures}");
        assert_eq!(complete_lines(&disk.data), want);
        assert_eq!(disk.durable, disk.data.len());
    }

    #[test]
    fn a_failed_fsync_writes_the_unsynced_bytes_again_once() {
        let mut disk = SmallDisk::new(usize::MAX);
        let mut tail = Tail::new(0, true);
        tail.buf_mut().extend_from_slice(line(1).as_bytes());
        tail.write(&mut disk, false).unwrap();
        tail.sync(&mut disk).unwrap();
        for i in 2..5 {
            tail.buf_mut().extend_from_slice(line(i).as_bytes());
            tail.write(&mut disk, false).unwrap();
        }
        let before = tail.written_len();
        disk.fail_syncs = 2;
        assert!(tail.sync(&mut disk).is_err());
        assert_eq!(
            tail.written_len(),
            line(1).len() as u64,
            "back to the synced length"
        );
        tail.buf_mut().extend_from_slice(line(5).as_bytes());
        assert!(tail.write(&mut disk, false).is_ok() && tail.sync(&mut disk).is_err());
        tail.write(&mut disk, false).unwrap();
        tail.sync(&mut disk).unwrap();
        assert!(tail.written_len() > before);
        let want: Vec<String> = (1..=5).map(line).collect();
        assert_eq!(complete_lines(&disk.data), want);
        assert_eq!(disk.durable, disk.data.len());
    }

    #[test]
    fn abandoning_cuts_back_to_what_is_durable() {
        let mut disk = SmallDisk::new(usize::MAX);
        let mut tail = Tail::new(0, true);
        tail.buf_mut().extend_from_slice(line(1).as_bytes());
        tail.write(&mut disk, false).unwrap();
        tail.sync(&mut disk).unwrap();
        tail.buf_mut().extend_from_slice(line(2).as_bytes());
        tail.write(&mut disk, false).unwrap();
        tail.buf_mut().extend_from_slice(line(3).as_bytes());
        assert_eq!(tail.abandon(), line(2).len() + line(3).len());
        tail.write(&mut disk, false).unwrap();
        assert_eq!(complete_lines(&disk.data), vec![line(1)]);
        // Without fsync (policy never), a write is what counts.
        let mut tail = Tail::new(disk.data.len() as u64, false);
        tail.buf_mut().extend_from_slice(line(4).as_bytes());
        tail.write(&mut disk, false).unwrap();
        assert_eq!(tail.abandon(), 0);
        assert_eq!(complete_lines(&disk.data), vec![line(1), line(4)]);
    }

    #[test]
    fn retries_back_off_to_a_cap_and_reasons_name_the_os_error() {
        assert_eq!(retry_delay(0), RETRY_FIRST);
        assert_eq!(retry_delay(1), RETRY_FIRST * 2);
        assert_eq!(retry_delay(3), RETRY_FIRST * 8);
        assert_eq!(retry_delay(10), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            pause_reason(&full),
            "journal full (No space left on device)"
        );
        let quota = io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(pause_reason(&quota).starts_with("journal full ("));
        let ro = io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(
            pause_reason(&ro),
            "journal not writable (Read-only file system)"
        );
    }

    #[test]
    fn position_follows_writes_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let q = dir.path().join("k.jsonl");
        std::fs::write(&p, b"{}\n").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let on_open: OnOpen = Box::new(move |o: &Opened<'_>| {
            let mut v = log.lock().unwrap();
            v.push((o.path.to_path_buf(), o.start));
            Ok(v.len() as u64 + 6)
        });
        let (ptx, prx) = mpsc::channel();
        let (j, tx) = Journal::start_with(JournalSetup {
            target: Target::File(p.clone()),
            policy: FsyncPolicy::Always,
            progress: Some(ptx),
            encode: Record::write_line,
            on_open: Some(on_open),
            pause_on_error: true,
        })
        .unwrap();
        let ctl = j.control();
        assert_eq!(ctl.position(), JournalPos { seq: 7, offset: 3 });
        tx.send(rec("http://a.test/", Some("s"), Some(1))).unwrap();
        prx.recv_timeout(Duration::from_secs(5)).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        assert_eq!(
            ctl.position(),
            JournalPos {
                seq: 7,
                offset: len
            }
        );
        ctl.reopen(Some(q.clone()), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctl.position().seq != 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ctl.position(), JournalPos { seq: 8, offset: 0 });
        assert!(ctl.stalest() < Duration::from_secs(1));
        assert_eq!(ctl.paused(), None);
        ctl.stop();
        let stats = j.finish().unwrap();
        assert_eq!(stats.records, 1);
        drop(tx);
        assert_eq!(*seen.lock().unwrap(), vec![(p, 3), (q, 0)]);
    }

    #[test]
    fn stop_ends_the_writer_while_senders_are_alive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (j, tx) = Journal::start(Target::File(p.clone()), FsyncPolicy::Always, None).unwrap();
        tx.send(rec("http://a.test/", None, None)).unwrap();
        j.control().stop();
        let stats = j.finish().unwrap();
        assert_eq!(stats.records, 1, "what was queued is written");
        assert_eq!(lines(&p).len(), 1);
        assert!(tx.send(rec("http://b.test/", None, None)).is_err());
    }

    #[test]
    fn torn_tail_is_truncated_to_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let (_f, removed) = open_journal(&p).unwrap();
        assert_eq!(removed, 5);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn torn_tail_without_any_newline_empties_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        // Longer than one scan chunk, so the backwards scan crosses chunk boundaries.
        std::fs::write(&p, vec![b'x'; (TAIL_SCAN_CHUNK * 2 + 7) as usize]).unwrap();
        let (_f, removed) = open_journal(&p).unwrap();
        assert_eq!(removed, TAIL_SCAN_CHUNK * 2 + 7);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }

    #[test]
    fn newline_far_back_is_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let mut data = b"{}\n".to_vec();
        data.extend(vec![b'y'; (TAIL_SCAN_CHUNK + 10) as usize]);
        std::fs::write(&p, &data).unwrap();
        let (_f, removed) = open_journal(&p).unwrap();
        assert_eq!(removed, TAIL_SCAN_CHUNK + 10);
        assert_eq!(std::fs::read(&p).unwrap(), b"{}\n");
    }

    #[test]
    fn intact_journal_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(&p, b"{}\n{}\n").unwrap();
        let (_f, removed) = open_journal(&p).unwrap();
        assert_eq!(removed, 0);
        assert_eq!(std::fs::read(&p).unwrap(), b"{}\n{}\n");
    }

    /// Records trickling in one by one (20,000/s) are written in batches, not one write each.
    #[test]
    fn a_trickle_of_records_is_written_in_batches() {
        const N: u64 = 400;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (j, tx) = Journal::start(Target::File(p.clone()), FsyncPolicy::Never, None).unwrap();
        for i in 0..N {
            tx.send(rec("http://a.test/", None, Some(i))).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
        drop(tx);
        let stats = j.finish().unwrap();
        assert_eq!(stats.records, N);
        assert_eq!(lines(&p).len(), N as usize);
        assert!(
            stats.writes <= N / 8,
            "{} writes for {N} records",
            stats.writes
        );
    }

    #[test]
    fn writes_records_and_reports_durable_progress() {
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::default(),
            FsyncPolicy::Never,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("j.jsonl");
            std::fs::write(&p, b"{\"old\":true}\n{\"torn").unwrap();
            let (ptx, prx) = mpsc::channel();
            let (j, tx) = Journal::start(Target::File(p.clone()), policy, Some(ptx)).unwrap();
            for i in 1..=5 {
                tx.send(rec("http://a.test/", Some("l1"), Some(i))).unwrap();
            }
            tx.send(rec("http://b.test/", Some("l2"), Some(3))).unwrap();
            tx.send(rec("http://c.test/", None, None)).unwrap();
            drop(tx);
            let stats = j.finish().unwrap();
            assert_eq!(stats.records, 7, "{policy}");
            let mut per: HashMap<String, u64> = HashMap::new();
            let mut total = 0;
            for pr in prx.try_iter() {
                total += pr.records;
                for (s, n) in pr.per_src {
                    *per.entry(s).or_default() += n;
                }
            }
            assert_eq!(total, 7);
            assert_eq!(per["l1"], 5);
            assert_eq!(per["l2"], 1);
            let got = lines(&p);
            assert_eq!(got.len(), 8);
            assert_eq!(got[0]["old"], true);
            assert_eq!(got[3]["line"], 3);
            assert_eq!(got[7]["url"], "http://c.test/");
            assert!(got[7].get("src").is_none());
            if policy == FsyncPolicy::Never {
                assert_eq!(stats.fsyncs, 0);
            } else {
                assert!(stats.fsyncs >= 1);
            }
        }
    }

    #[test]
    fn batch_policy_commits_while_idle_within_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let (ptx, prx) = mpsc::channel();
        let policy = FsyncPolicy::Batch(Duration::from_millis(30));
        let (j, tx) = Journal::start(Target::File(p), policy, Some(ptx)).unwrap();
        tx.send(rec("http://a.test/", Some("s"), Some(1))).unwrap();
        // The sender is still alive: the commit must come from the batch timer.
        let pr = prx
            .recv_timeout(Duration::from_secs(5))
            .expect("commit within bound");
        assert_eq!(pr.per_src, vec![("s".to_string(), 1)]);
        drop(tx);
        assert_eq!(j.finish().unwrap().fsyncs, 1);
    }

    #[test]
    fn reopen_after_move_creates_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let moved = dir.path().join("j.jsonl.1");
        let (ptx, prx) = mpsc::channel();
        let (j, tx) =
            Journal::start(Target::File(p.clone()), FsyncPolicy::Always, Some(ptx)).unwrap();
        tx.send(rec("http://a.test/", None, None)).unwrap();
        prx.recv_timeout(Duration::from_secs(5)).unwrap();
        std::fs::rename(&p, &moved).unwrap();
        j.control().reopen(None, None);
        // Give the writer a chance to act on the request before the next record.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(rec("http://b.test/", None, None)).unwrap();
        drop(tx);
        let stats = j.finish().unwrap();
        assert_eq!(stats.reopens, 1);
        assert_eq!(lines(&moved).len(), 1);
        let new = lines(&p);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0]["url"], "http://b.test/");
    }

    #[test]
    fn reopen_can_switch_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let q = dir.path().join("b.jsonl");
        let (j, tx) = Journal::start(Target::File(p.clone()), FsyncPolicy::Never, None).unwrap();
        j.control()
            .reopen(Some(q.clone()), Some(FsyncPolicy::Always));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !q.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(rec("http://b.test/", None, None)).unwrap();
        drop(tx);
        let stats = j.finish().unwrap();
        assert_eq!(stats.fsyncs, 1, "new policy applies");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        assert_eq!(lines(&q).len(), 1);
    }

    #[test]
    fn failed_reopen_keeps_writing_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let (j, tx) = Journal::start(Target::File(p.clone()), FsyncPolicy::Always, None).unwrap();
        j.control()
            .reopen(Some(dir.path().join("missing/b.jsonl")), None);
        std::thread::sleep(CONTROL_POLL * 3);
        tx.send(rec("http://b.test/", None, None)).unwrap();
        drop(tx);
        let stats = j.finish().unwrap();
        assert_eq!(stats.reopens, 0);
        assert_eq!(lines(&p).len(), 1);
    }

    #[test]
    fn close_writes_what_is_queued_while_senders_live_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.csv");
        let encode: Encode = Record::write_csv_row;
        let (j, tx) =
            Journal::start_encoded(Target::File(p.clone()), FsyncPolicy::Never, None, encode)
                .unwrap();
        for i in 1..=3 {
            tx.send(rec("http://a.test/", None, Some(i))).unwrap();
        }
        let stats = j.close().unwrap();
        assert_eq!(stats.records, 3);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.lines().all(|l| l.starts_with("http://a.test/,")),
            "{text}"
        );
        assert!(
            tx.send(rec("http://b.test/", None, None)).is_err(),
            "closed"
        );
    }

    #[test]
    fn unopenable_journal_is_a_clear_error() {
        let err = Journal::start(
            Target::File(PathBuf::from("/nonexistent-dir-ringcrawl/j.jsonl")),
            FsyncPolicy::Always,
            None,
        )
        .err()
        .unwrap();
        assert!(err
            .to_string()
            .starts_with("cannot open journal /nonexistent-dir-ringcrawl/j.jsonl"));
    }
}
