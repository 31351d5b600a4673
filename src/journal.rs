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
//! - **Reopen.** [`JournalControl::reopen`] makes the writer fsync and close the file and open
//!   the path again (creating it), which is what logrotate's `create` mode needs after it moved
//!   the old file away. The path (and fsync policy) may be changed at the same time.
//! - **Stdout mode** (`fetch`): flush after each batch, no fsync, no notifications.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;

/// Default bound on how long written records may stay unsynced with `FsyncPolicy::Batch`.
pub const DEFAULT_FSYNC_BATCH: Duration = Duration::from_millis(200);
/// Records queued between the engine and the writer (backpressure beyond this).
pub const RECORD_CHANNEL_CAPACITY: usize = 16 * 1024;
/// A batch is written once it reaches this many bytes even if more records are queued.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// How often the writer looks at control requests (reopen) while idle.
pub const CONTROL_POLL: Duration = Duration::from_millis(50);
/// After a write of fewer than [`COALESCE_BELOW`] records, the writer waits this long
/// before taking the next ones: workers then hand over records in batches instead of
/// waking this thread once per record (a futex wakeup and two context switches each, a
/// real share of the CPU at high record rates). Records are only this much later on disk.
pub const RECORD_COALESCE: Duration = Duration::from_millis(2);
/// See [`RECORD_COALESCE`].
pub const COALESCE_BELOW: usize = 64;
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
    #[error("cannot start journal writer thread: {0}")]
    Thread(io::Error),
    #[error("journal writer thread panicked")]
    Panicked,
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
}

/// Where the journal goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Stdout,
}

#[derive(Default)]
struct ControlState {
    reopen: bool,
    path: Option<PathBuf>,
    policy: Option<FsyncPolicy>,
}

/// Cloneable handle to ask the writer thread to reopen its file.
#[derive(Clone)]
pub struct JournalControl {
    flag: Arc<AtomicBool>,
    /// Set by [`Journal::close`].
    close: Arc<AtomicBool>,
    state: Arc<Mutex<ControlState>>,
    written: Arc<AtomicU64>,
}

impl JournalControl {
    /// Reopen the journal (optionally at a new path and with a new fsync policy) before the
    /// next batch. The old file is fsync'd first.
    pub fn reopen(&self, path: Option<PathBuf>, policy: Option<FsyncPolicy>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.reopen = true;
        if path.is_some() {
            st.path = path;
        }
        if policy.is_some() {
            st.policy = policy;
        }
        self.flag.store(true, Ordering::Release);
    }

    /// Records written so far (durable or not).
    pub fn records_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// A running journal writer thread.
pub struct Journal {
    thread: JoinHandle<Result<JournalStats, JournalError>>,
    control: JournalControl,
}

impl Journal {
    /// Open (creating) the journal file, repair a torn tail, and start the writer thread.
    /// Returns the writer and the sender the engine puts records on. `progress` receives a
    /// [`Progress`] after each commit.
    pub fn start(
        target: Target,
        policy: FsyncPolicy,
        progress: Option<Sender<Progress>>,
    ) -> Result<(Journal, SyncSender<Record>), JournalError> {
        Journal::start_encoded(target, policy, progress, Record::write_line)
    }

    /// [`Journal::start`] with records encoded by `encode` instead of as JSON Lines.
    pub fn start_encoded(
        target: Target,
        policy: FsyncPolicy,
        progress: Option<Sender<Progress>>,
        encode: Encode,
    ) -> Result<(Journal, SyncSender<Record>), JournalError> {
        let out = match &target {
            Target::File(path) => {
                let (file, removed) = open_journal(path)?;
                if removed > 0 {
                    tracing::warn!(path = %path.display(), bytes = removed, "journal had a torn last line; truncated it");
                }
                Output::File {
                    path: path.clone(),
                    file,
                }
            }
            Target::Stdout => Output::Stdout(io::stdout()),
        };
        let (tx, rx) = mpsc::sync_channel(RECORD_CHANNEL_CAPACITY);
        let control = JournalControl {
            flag: Arc::new(AtomicBool::new(false)),
            close: Arc::new(AtomicBool::new(false)),
            state: Arc::new(Mutex::new(ControlState::default())),
            written: Arc::new(AtomicU64::new(0)),
        };
        let writer = Writer {
            out,
            encode,
            policy,
            rx,
            progress,
            control: control.clone(),
            stats: JournalStats::default(),
            buf: Vec::with_capacity(64 * 1024),
            pending: HashMap::new(),
            pending_records: 0,
            dirty_since: None,
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run())
            .map_err(JournalError::Thread)?;
        Ok((Journal { thread, control }, tx))
    }

    /// A handle for reopen requests.
    pub fn control(&self) -> JournalControl {
        self.control.clone()
    }

    /// True once the writer thread has ended (all senders dropped, or an I/O error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the writer to end: it ends when every record sender has been dropped, after a
    /// final write and fsync.
    pub fn finish(self) -> Result<JournalStats, JournalError> {
        self.thread.join().map_err(|_| JournalError::Panicked)?
    }

    /// End the writer now, with record senders still alive (`fetch` interrupted, workers
    /// still fetching): the records already queued are written (within [`CONTROL_POLL`]),
    /// later ones are refused (their senders get an error). Every record written is whole.
    pub fn close(self) -> Result<JournalStats, JournalError> {
        self.control.close.store(true, Ordering::Release);
        self.finish()
    }
}

enum Output {
    File { path: PathBuf, file: File },
    Stdout(io::Stdout),
}

struct Writer {
    out: Output,
    encode: Encode,
    policy: FsyncPolicy,
    rx: Receiver<Record>,
    progress: Option<Sender<Progress>>,
    control: JournalControl,
    stats: JournalStats,
    buf: Vec<u8>,
    /// Records written but not yet reported durable, per src.
    pending: HashMap<String, u64>,
    pending_records: u64,
    /// When the oldest unsynced write happened.
    dirty_since: Option<Instant>,
}

impl Writer {
    fn run(mut self) -> Result<JournalStats, JournalError> {
        // On error the writer (and with it the receiver) is dropped when this returns, so
        // producers see the failure instead of blocking.
        self.run_loop().map(|()| self.stats.clone())
    }

    fn run_loop(&mut self) -> Result<(), JournalError> {
        loop {
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
                    while self.buf.len() < MAX_BATCH_BYTES {
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
                    self.write_batch()?;
                    if disconnected {
                        return self.commit();
                    }
                    if batch < COALESCE_BELOW {
                        std::thread::sleep(RECORD_COALESCE);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.commit(),
            }
            let due = match (self.policy, self.dirty_since) {
                (FsyncPolicy::Batch(max), Some(since)) => since.elapsed() >= max,
                (FsyncPolicy::Always | FsyncPolicy::Never, Some(_)) => true,
                _ => false,
            };
            if due {
                self.commit()?;
            }
            if self.control.flag.swap(false, Ordering::AcqRel) {
                self.handle_control()?;
            }
            if self.control.close.load(Ordering::Acquire) {
                while let Ok(rec) = self.rx.try_recv() {
                    self.append(&rec);
                }
                return self.commit();
            }
        }
    }

    fn append(&mut self, rec: &Record) {
        (self.encode)(rec, &mut self.buf);
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
        if self.buf.is_empty() {
            return Ok(());
        }
        self.stats.writes += 1;
        match &mut self.out {
            Output::File { path, file } => {
                file.write_all(&self.buf)
                    .map_err(|source| JournalError::Write {
                        path: path.clone(),
                        source,
                    })?
            }
            Output::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(&self.buf)
                    .and_then(|()| lock.flush())
                    .map_err(|source| JournalError::Write {
                        path: PathBuf::from("-"),
                        source,
                    })?
            }
        }
        self.stats.bytes += self.buf.len() as u64;
        self.buf.clear();
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Make everything written so far durable (per policy) and report it.
    fn commit(&mut self) -> Result<(), JournalError> {
        self.write_batch()?;
        if self.dirty_since.take().is_none() {
            return Ok(());
        }
        if let Output::File { path, file } = &self.out {
            if self.policy != FsyncPolicy::Never {
                file.sync_data().map_err(|source| JournalError::Sync {
                    path: path.clone(),
                    source,
                })?;
                self.stats.fsyncs += 1;
            }
        }
        self.stats.records += self.pending_records;
        self.control
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

    fn handle_control(&mut self) -> Result<(), JournalError> {
        let (reopen, path, policy) = {
            let mut st = self.control.state.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut st.reopen),
                st.path.take(),
                st.policy.take(),
            )
        };
        if let Some(p) = policy {
            self.policy = p;
        }
        if !reopen {
            return Ok(());
        }
        self.commit()?;
        if let Output::File { path: cur, file } = &mut self.out {
            let new_path = path.unwrap_or_else(|| cur.clone());
            let (new_file, removed) = match open_journal(&new_path) {
                Ok(opened) => opened,
                Err(e) => {
                    // Keep journaling into the file we have rather than losing records.
                    tracing::error!(error = %e, still_writing = %cur.display(), "journal reopen failed");
                    return Ok(());
                }
            };
            if removed > 0 {
                tracing::warn!(path = %new_path.display(), bytes = removed, "journal had a torn last line; truncated it");
            }
            tracing::info!(path = %new_path.display(), "journal reopened");
            *file = new_file;
            *cur = new_path;
            self.stats.reopens += 1;
        }
        Ok(())
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
