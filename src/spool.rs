//! The spool directory protocol (maildir style, one filesystem), `ringcrawl submit`, feeding
//! list files to the engine (through `intake`'s one line reader), and crash recovery.
//!
//! ```text
//! SPOOL/tmp   producers write here (ringcrawl submit: write, fsync, link into new/, fsync dir)
//! SPOOL/new   complete lists, ready; the daemon is woken by inotify (and rescans periodically)
//! SPOOL/cur   claimed by the daemon (rename new/X -> cur/X), lines being fetched
//! SPOOL/done  every line has a durable journal record (deleted after the retention period)
//! SPOOL/bad   could not be read (logged)
//! ```
//!
//! A file is only ever read from `cur/`, and only `rename`/`link` move files between
//! directories, so a producer's half-written file (which lives in `tmp/`) is never read.
//! Claim names are unique across `cur/ done/ bad/` (a suffix `.N` is added on collision), and
//! the name in `cur/` is the `src` of every record made from the file; `line` is the 1-based
//! line number in the file (blank lines are skipped but counted).
//!
//! # Exactly once
//!
//! The journal is the only source of truth: a line is done iff the journal holds a complete
//! record with its `(src, line)`.
//!
//! 1. While a file is in `cur/`, its lines are submitted to the engine; the journal writer
//!    reports per-`src` counts of records that are durable (after fsync; see `journal`).
//! 2. A file leaves `cur/` (to `done/`) only when the reader reached its end and every
//!    submitted line's record is durable. So after a crash, any file whose records might be
//!    incomplete is still in `cur/`.
//! 3. At start, before anything else is written, the journal's torn last line (if any) is
//!    truncated, then [`journaled_lines`] reads the journal **once** (plus rotated siblings
//!    that are newer than the oldest claim) and builds, for the `src` names in `cur/` only, a
//!    bitmap of the line numbers that already have a record. The cost is one sequential pass
//!    per restart, independent of how many files are in `cur/`, and memory is one bit per line
//!    of the files in progress. Records whose `ts` is older than the file's claim time (its
//!    ctime, set by the claim rename) are ignored, so an earlier, already finished list that
//!    had the same name cannot hide lines of this one.
//! 4. Each file in `cur/` is read again from the start and only lines missing from its bitmap
//!    are submitted. A record is written for a line at most once per run (the engine's
//!    contract) and a line journaled in an earlier run is skipped, so every line ends with
//!    exactly one record. Lines in flight at the crash had no complete record (a torn one is
//!    removed in step 3), so they are fetched again.
//!
//! With `fsync = "never"` "durable" means "written to the kernel": this survives `kill -9`
//! but not a power cut. A compressed rotated journal cannot be scanned; logrotate should use
//! `delaycompress` (the shipped snippet does) so the newest rotated file stays plain.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::{Engine, Stopped};
use crate::intake::{InputLine, LineReader, ReadError, ReadLimits};

pub const TMP: &str = "tmp";
pub const NEW: &str = "new";
pub const CUR: &str = "cur";
pub const DONE: &str = "done";
pub const BAD: &str = "bad";
/// Mode of directories producers write to (setgid: files inherit the submit group).
pub const PRODUCER_DIR_MODE: u32 = 0o2770;
/// Mode of the daemon-only directories (the submit group may look, not touch).
pub const DAEMON_DIR_MODE: u32 = 0o2750;
/// Mode of a submitted list (the daemon reads it through the group).
pub const SUBMITTED_FILE_MODE: u32 = 0o640;
/// Lock file under the spool root: one daemon per spool.
pub const LOCK_FILE: &str = ".lock";
/// Collision suffixes tried before giving up on a name.
pub const MAX_NAME_SUFFIX: u32 = 100_000;

/// Spool failures (one-line messages). Each names its cause inline, and the cause is not
/// also a `source()`: printing the chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {cause}")]
    Dir { path: PathBuf, cause: io::Error },
    #[error("spool {0} is in use by another ringcrawl daemon")]
    Locked(PathBuf),
    #[error("cannot read {path}: {cause}")]
    Input { path: PathBuf, cause: io::Error },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: io::Error },
    #[error("cannot move {from} to {to}: {cause}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        cause: io::Error,
    },
    #[error("no free name for {0} in the spool")]
    NoName(String),
    #[error("cannot scan journal {path}: {cause}")]
    Journal { path: PathBuf, cause: io::Error },
}

/// What happened to a file that leaves `cur/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Bad,
}

/// An opened (and locked) spool.
pub struct Spool {
    root: PathBuf,
    _lock: File,
}

impl Spool {
    /// Create missing sub-directories and take the spool lock.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        let dir_err = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| SpoolError::Dir { path, cause }
        };
        fs::create_dir_all(root).map_err(dir_err(root))?;
        for (sub, mode) in [
            (TMP, PRODUCER_DIR_MODE),
            (NEW, PRODUCER_DIR_MODE),
            (CUR, DAEMON_DIR_MODE),
            (DONE, DAEMON_DIR_MODE),
            (BAD, DAEMON_DIR_MODE),
        ] {
            let p = root.join(sub);
            if !p.is_dir() {
                DirBuilder::new()
                    .mode(mode)
                    .create(&p)
                    .map_err(dir_err(&p))?;
                // The umask may have cleared group bits; the producers need them.
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(dir_err(&p))?;
            }
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&lock_path)
            .map_err(dir_err(&lock_path))?;
        if !try_lock_exclusive(&lock).map_err(dir_err(&lock_path))? {
            return Err(SpoolError::Locked(root.to_path_buf()));
        }
        Ok(Spool {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `SPOOL/sub/name`.
    pub fn path(&self, sub: &str, name: &str) -> PathBuf {
        self.root.join(sub).join(name)
    }

    /// Names in `new/`, oldest first (dot files are ignored).
    pub fn pending(&self) -> Result<Vec<String>, SpoolError> {
        let mut v = self.list(NEW)?;
        v.sort();
        Ok(v.into_iter().map(|(_, n)| n).collect())
    }

    /// Names in `cur/` (files claimed before a restart).
    pub fn in_progress(&self) -> Result<Vec<String>, SpoolError> {
        Ok(self.list(CUR)?.into_iter().map(|(_, n)| n).collect())
    }

    fn list(&self, sub: &str) -> Result<Vec<(SystemTime, String)>, SpoolError> {
        let dir = self.root.join(sub);
        let err = |cause| SpoolError::Dir {
            path: dir.clone(),
            cause,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %dir.display(), name = ?entry.file_name(), "ignoring spool entry whose name is not UTF-8");
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((mtime, name));
        }
        Ok(out)
    }

    /// Claim `new/name` by renaming it into `cur/` under a name unique across `cur/ done/
    /// bad/`. Returns that name, or `None` if the file vanished.
    pub fn claim(&self, name: &str) -> Result<Option<String>, SpoolError> {
        let from = self.path(NEW, name);
        let target = self.free_name(name, &[CUR, DONE, BAD])?;
        let to = self.path(CUR, &target);
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(SpoolError::Rename { from, to, cause }),
        }
        self.sync_dirs(&[CUR, NEW])?;
        Ok(Some(target))
    }

    /// Move `cur/name` to `done/` or `bad/` (unique name there). Returns the new path.
    pub fn release(&self, name: &str, outcome: Outcome) -> Result<PathBuf, SpoolError> {
        let sub = match outcome {
            Outcome::Done => DONE,
            Outcome::Bad => BAD,
        };
        let from = self.path(CUR, name);
        let to = self.path(sub, &self.free_name(name, &[sub])?);
        fs::rename(&from, &to).map_err(|cause| SpoolError::Rename {
            from,
            to: to.clone(),
            cause,
        })?;
        self.sync_dirs(&[sub, CUR])?;
        Ok(to)
    }

    /// Delete files in `done/` last modified longer than `age` ago. Returns how many.
    pub fn purge_done(&self, age: Duration) -> Result<usize, SpoolError> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut n = 0;
        for (mtime, name) in self.list(DONE)? {
            if mtime < cutoff {
                let p = self.path(DONE, &name);
                fs::remove_file(&p).map_err(|cause| SpoolError::Write { path: p, cause })?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn free_name(&self, name: &str, subs: &[&str]) -> Result<String, SpoolError> {
        let taken = |cand: &str| {
            subs.iter()
                .any(|s| self.path(s, cand).symlink_metadata().is_ok())
        };
        if !taken(name) {
            return Ok(name.to_string());
        }
        (1..MAX_NAME_SUFFIX)
            .map(|i| format!("{name}.{i}"))
            .find(|c| !taken(c))
            .ok_or_else(|| SpoolError::NoName(name.to_string()))
    }

    fn sync_dirs(&self, subs: &[&str]) -> Result<(), SpoolError> {
        for s in subs {
            let p = self.root.join(s);
            sync_dir(&p).map_err(|cause| SpoolError::Write { path: p, cause })?;
        }
        Ok(())
    }
}

fn sync_dir(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when another process holds the lock.
fn try_lock_exclusive(f: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor number, which `f` keeps open for the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `ringcrawl submit`: queue each input (a path, or `-` for stdin) into `SPOOL/new`: copy
/// into `tmp/`, fsync, hard-link into `new/` under a free name (the input's base name, with a
/// `.N` suffix on collision), remove the tmp name, fsync both directories. All inputs are
/// opened before anything is queued. Returns the queued paths in input order.
pub fn submit(spool_dir: &Path, inputs: &[PathBuf]) -> Result<Vec<PathBuf>, SpoolError> {
    let mut sources: Vec<(String, Box<dyn Read>)> = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let name = format!(
                "stdin-{}.txt",
                crate::record::now_rfc3339().replace(':', "")
            );
            sources.push((name, Box::new(io::stdin())));
        } else {
            let f = File::open(input).map_err(|cause| SpoolError::Input {
                path: input.clone(),
                cause,
            })?;
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                let cause = io::Error::new(io::ErrorKind::InvalidInput, "is a directory");
                return Err(SpoolError::Input {
                    path: input.clone(),
                    cause,
                });
            }
            let base = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let base = base.trim_start_matches('.');
            let base = if base.is_empty() {
                "list".to_string()
            } else {
                base.to_string()
            };
            sources.push((base, Box::new(f)));
        }
    }
    let tmp_dir = spool_dir.join(TMP);
    let new_dir = spool_dir.join(NEW);
    for d in [&tmp_dir, &new_dir] {
        if !d.is_dir() {
            let cause = io::Error::new(io::ErrorKind::NotFound, "missing (is the spool set up?)");
            return Err(SpoolError::Dir {
                path: d.clone(),
                cause,
            });
        }
    }
    let mut queued = Vec::new();
    for (seq, (base, mut src)) in sources.into_iter().enumerate() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let tmp = tmp_dir.join(format!("{nanos}.{}.{seq}.part", std::process::id()));
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| SpoolError::Write { path, cause }
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SUBMITTED_FILE_MODE)
            .open(&tmp)
            .map_err(werr(&tmp))?;
        let copied = io::copy(&mut src, &mut f);
        let done = copied
            .map_err(werr(&tmp))
            .and_then(|_| {
                f.set_permissions(fs::Permissions::from_mode(SUBMITTED_FILE_MODE))
                    .map_err(werr(&tmp))
            })
            .and_then(|()| f.sync_all().map_err(werr(&tmp)))
            .and_then(|()| link_free(&tmp, &new_dir, &base, spool_dir));
        let _ = fs::remove_file(&tmp);
        let dest = done?;
        sync_dir(&new_dir).map_err(werr(&new_dir))?;
        sync_dir(&tmp_dir).map_err(werr(&tmp_dir))?;
        queued.push(dest);
    }
    Ok(queued)
}

/// Hard-link `tmp` as `new_dir/base` (or `base.N`): `link` fails instead of replacing, so
/// concurrent producers cannot overwrite each other. Names present in `cur/` or `done/` are
/// skipped too, so list names stay distinct in the journal.
fn link_free(tmp: &Path, new_dir: &Path, base: &str, spool: &Path) -> Result<PathBuf, SpoolError> {
    for i in 0..MAX_NAME_SUFFIX {
        let name = if i == 0 {
            base.to_string()
        } else {
            format!("{base}.{i}")
        };
        if [CUR, DONE]
            .iter()
            .any(|s| spool.join(s).join(&name).symlink_metadata().is_ok())
        {
            continue;
        }
        let dest = new_dir.join(&name);
        match fs::hard_link(tmp, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(cause) => {
                return Err(SpoolError::Rename {
                    from: tmp.to_path_buf(),
                    to: dest,
                    cause,
                })
            }
        }
    }
    Err(SpoolError::NoName(base.to_string()))
}

/// A set of line numbers (a growable bitmap: one bit per line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineSet {
    words: Vec<u64>,
    len: u64,
}

impl LineSet {
    pub fn insert(&mut self, line: u64) -> bool {
        let (w, b) = ((line / 64) as usize, line % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        self.len += u64::from(fresh);
        fresh
    }

    pub fn contains(&self, line: u64) -> bool {
        self.words
            .get((line / 64) as usize)
            .is_some_and(|w| w & (1 << (line % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }
}

/// The journals that may hold records for files claimed at or after `since`: `journal` itself
/// and its uncompressed rotated siblings (`NAME.1`, `NAME-20261123`, ...) modified since then.
pub fn journal_candidates(journal: &Path, since: SystemTime) -> Vec<PathBuf> {
    let mut out = vec![journal.to_path_buf()];
    let (Some(dir), Some(base)) = (
        journal.parent(),
        journal.file_name().and_then(|n| n.to_str()),
    ) else {
        return out;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        if !(rest.starts_with('.') || rest.starts_with('-')) {
            continue;
        }
        let fresh = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|m| m >= since)
            .unwrap_or(true);
        if !fresh {
            continue;
        }
        if [".gz", ".xz", ".zst", ".bz2", ".lz4"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            tracing::warn!(path = %e.path().display(), "compressed rotated journal is newer than a claimed list and cannot be scanned; its records may be fetched again");
            continue;
        }
        out.push(e.path());
    }
    out
}

/// The claim time of a file in `cur/` (its ctime, set by the claim rename), in the journal's
/// `ts` format so records can be compared as strings.
pub fn claim_ts(meta: &fs::Metadata) -> String {
    let nanos = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct RecordKey<'a> {
    #[serde(borrow)]
    src: Option<std::borrow::Cow<'a, str>>,
    line: Option<u64>,
    #[serde(borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
}

/// One pass over `journals`: for each `src` in `wanted` (mapped to its claim `ts`), the line
/// numbers that have a record with `ts >= claim ts`. A missing journal counts as empty;
/// lines that are not valid JSON records are ignored.
pub fn journaled_lines(
    journals: &[PathBuf],
    wanted: &HashMap<String, String>,
) -> Result<HashMap<String, LineSet>, SpoolError> {
    let mut out: HashMap<String, LineSet> = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut buf = Vec::with_capacity(4096);
    for path in journals {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(cause) => {
                return Err(SpoolError::Journal {
                    path: path.clone(),
                    cause,
                })
            }
        };
        let mut r = BufReader::with_capacity(1 << 20, f);
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|cause| SpoolError::Journal {
                    path: path.clone(),
                    cause,
                })?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                break; // a torn last line is not a record
            }
            let Ok(k) = serde_json::from_slice::<RecordKey>(&buf) else {
                continue;
            };
            let (Some(src), Some(line)) = (k.src, k.line) else {
                continue;
            };
            let Some(since) = wanted.get(src.as_ref()) else {
                continue;
            };
            if k.ts.as_deref().is_some_and(|ts| ts < since.as_str()) {
                continue;
            }
            out.entry(src.into_owned()).or_default().insert(line);
        }
    }
    Ok(out)
}

/// Where the reader sends lines: the engine, or a test double.
pub(crate) trait JobSink: Sync {
    fn submit_line(&self, line: InputLine, src: &Arc<str>) -> Result<(), Stopped>;
}

impl JobSink for Engine {
    fn submit_line(&self, line: InputLine, src: &Arc<str>) -> Result<(), Stopped> {
        Engine::submit_line(self, line, Some(src.clone()))
    }
}

/// Counters of one [`feed`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FeedStats {
    /// Lines read (blank ones included).
    pub lines: u64,
    pub submitted: u64,
    /// Lines skipped because the journal already had them.
    pub skipped: u64,
    /// The stop flag (or the engine stopping) ended the read early.
    pub stopped: bool,
}

/// Stream the non-blank lines of `reader` (read by the one [`LineReader`], within `limits`)
/// into `sink` with `src`; their 1-based line numbers count blank lines too. Lines in `skip`
/// are not submitted. `submitted` is incremented *before* each submit so it never lags the
/// records that come back. A set stop flag or a stopping engine ends the read with
/// `stopped`; an unreadable (or too large) list is an error.
pub(crate) fn feed<R: BufRead>(
    reader: R,
    src: &Arc<str>,
    skip: Option<&LineSet>,
    sink: &dyn JobSink,
    submitted: &AtomicU64,
    limits: ReadLimits,
) -> Result<FeedStats, ReadError> {
    let mut st = FeedStats::default();
    let mut lines = LineReader::new(reader, limits);
    for line in lines.by_ref() {
        let line = match line {
            Ok(line) => line,
            Err(ReadError::Stopped) => {
                st.stopped = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if skip.is_some_and(|s| s.contains(line.number)) {
            st.skipped += 1;
            continue;
        }
        submitted.fetch_add(1, Ordering::AcqRel);
        if sink.submit_line(line, src).is_err() {
            submitted.fetch_sub(1, Ordering::AcqRel);
            st.stopped = true;
            break;
        }
        st.submitted += 1;
    }
    st.lines = lines.lines_read();
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(InputLine, Arc<str>)>>);
    impl JobSink for Collect {
        fn submit_line(&self, line: InputLine, src: &Arc<str>) -> Result<(), Stopped> {
            self.0.lock().unwrap().push((line, src.clone()));
            Ok(())
        }
    }

    fn run_feed(input: &[u8], skip: Option<&LineSet>) -> (Vec<(String, u64)>, FeedStats) {
        let sink = Collect::default();
        let n = AtomicU64::new(0);
        let src: Arc<str> = Arc::from("l.txt");
        let st = feed(input, &src, skip, &sink, &n, ReadLimits::default()).unwrap();
        assert_eq!(n.load(Ordering::Relaxed), st.submitted);
        let lines = sink.0.into_inner().unwrap();
        assert!(lines.iter().all(|(_, s)| &**s == "l.txt"));
        (
            lines.into_iter().map(|(l, _)| (l.text, l.number)).collect(),
            st,
        )
    }

    #[test]
    fn feed_numbers_lines_and_skips_blanks() {
        let input = b"http://a.test/\r\n\n   \nhttp://b\xffc.test/ \n\thttp://c.test/";
        let (lines, st) = run_feed(input, None);
        assert_eq!(
            lines,
            vec![
                ("http://a.test/".to_string(), 1),
                ("http://b\u{fffd}c.test/".to_string(), 4),
                ("http://c.test/".to_string(), 5)
            ]
        );
        assert_eq!(
            st,
            FeedStats {
                lines: 5,
                submitted: 3,
                skipped: 0,
                stopped: false
            }
        );
    }

    #[test]
    fn feed_skips_journaled_lines() {
        let mut skip = LineSet::default();
        skip.insert(1);
        skip.insert(3);
        let (lines, st) = run_feed(b"a\nb\nc\nd\n", Some(&skip));
        assert_eq!(lines, vec![("b".to_string(), 2), ("d".to_string(), 4)]);
        assert_eq!(st.skipped, 2);
    }

    #[test]
    fn feed_submits_overlong_lines_for_their_record_and_keeps_counting() {
        let mut input = vec![b'x'; 200_000];
        input.extend_from_slice(b"\nnext\n");
        let (lines, st) = run_feed(&input, None);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), crate::intake::MAX_KEPT_LINE_BYTES);
        assert_eq!(lines[1], ("next".to_string(), 2));
        assert_eq!(st.lines, 2);
    }

    #[test]
    fn feed_stops_on_flag_and_on_stopped_engine() {
        struct Refuse;
        impl JobSink for Refuse {
            fn submit_line(&self, _: InputLine, _: &Arc<str>) -> Result<(), Stopped> {
                Err(Stopped)
            }
        }
        let n = AtomicU64::new(0);
        let src: Arc<str> = Arc::from("x");
        let st = feed(
            &b"a\nb\n"[..],
            &src,
            None,
            &Refuse,
            &n,
            ReadLimits::default(),
        )
        .unwrap();
        assert!(st.stopped);
        assert_eq!(n.load(Ordering::Relaxed), 0);
        let stop = ReadLimits {
            stop: Some(Arc::new(AtomicBool::new(true))),
            max_bytes: None,
        };
        let st = feed(&b"a\nb\n"[..], &src, None, &Collect::default(), &n, stop).unwrap();
        assert!(st.stopped);
        assert_eq!(st.lines, 0);
    }

    #[test]
    fn lineset_basics() {
        let mut s = LineSet::default();
        assert_eq!(s.len(), 0);
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert!(s.insert(63));
        assert!(s.contains(63) && s.contains(1000) && !s.contains(64) && !s.contains(1_000_000));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn submit_claim_release_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let spool = Spool::open(&root).unwrap();
        assert!(matches!(Spool::open(&root), Err(SpoolError::Locked(_))));
        let mode = fs::metadata(root.join(NEW)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, PRODUCER_DIR_MODE);

        let input = dir.path().join("list.txt");
        fs::write(&input, "http://a.test/\n").unwrap();
        let q = submit(&root, &[input.clone(), input.clone()]).unwrap();
        assert_eq!(
            q,
            vec![root.join("new/list.txt"), root.join("new/list.txt.1")]
        );
        assert_eq!(
            fs::read_dir(root.join(TMP)).unwrap().count(),
            0,
            "tmp/ is cleaned"
        );
        assert_eq!(
            fs::metadata(&q[0]).unwrap().permissions().mode() & 0o777,
            SUBMITTED_FILE_MODE
        );

        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 2);
        let c = spool.claim("list.txt").unwrap().unwrap();
        assert_eq!(c, "list.txt");
        assert_eq!(spool.claim("list.txt").unwrap(), None, "already claimed");
        assert_eq!(spool.in_progress().unwrap(), vec!["list.txt".to_string()]);
        let done = spool.release(&c, Outcome::Done).unwrap();
        assert_eq!(done, root.join("done/list.txt"));

        // A new list with a name already in done/ gets a fresh name at submit and at claim.
        let q2 = submit(&root, std::slice::from_ref(&input)).unwrap();
        assert_eq!(q2, vec![root.join("new/list.txt.2")]);
        fs::write(root.join("new/list.txt"), "direct producer\n").unwrap();
        assert_eq!(spool.claim("list.txt").unwrap().unwrap(), "list.txt.1");
        assert_eq!(spool.claim("list.txt.1").unwrap().unwrap(), "list.txt.1.1");
        let bad = spool.release("list.txt.1", Outcome::Bad).unwrap();
        assert_eq!(bad, root.join("bad/list.txt.1"));
    }

    #[test]
    fn submit_refuses_missing_inputs_before_queueing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let _spool = Spool::open(&root).unwrap();
        let ok = dir.path().join("ok.txt");
        fs::write(&ok, "x\n").unwrap();
        let err = submit(&root, &[ok, dir.path().join("missing.txt")]).unwrap_err();
        assert!(err.to_string().contains("missing.txt"), "{err}");
        assert_eq!(fs::read_dir(root.join(NEW)).unwrap().count(), 0);
        let err = submit(&dir.path().join("nospool"), &[]).map(|v| v.len());
        assert!(err.is_err());
    }

    #[test]
    fn purge_done_removes_only_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        fs::write(dir.path().join("done/old"), "").unwrap();
        fs::write(dir.path().join("done/new"), "").unwrap();
        let old = File::options()
            .write(true)
            .open(dir.path().join("done/old"))
            .unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(3 * 86400))
            .unwrap();
        assert_eq!(spool.purge_done(Duration::from_secs(86400)).unwrap(), 1);
        assert!(dir.path().join("done/new").exists());
        assert!(!dir.path().join("done/old").exists());
    }

    #[test]
    fn recovery_scan_finds_journaled_lines_of_wanted_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal.jsonl");
        let rotated = dir.path().join("journal.jsonl.1");
        let compressed = dir.path().join("journal.jsonl.2.gz");
        let other = dir.path().join("journalx");
        let rec = |src: &str, line: u64, ts: &str| {
            format!("{{\"url\":\"u\",\"title\":\"has \\\"src\\\":\\\"a\\\" inside\",\"ts\":\"{ts}\",\"src\":\"{src}\",\"line\":{line}}}\n")
        };
        let t1 = "2026-11-23T07:00:00.000Z";
        let t0 = "2026-11-22T07:00:00.000Z";
        fs::write(&rotated, rec("a", 1, t1) + &rec("a", 2, t0)).unwrap();
        fs::write(&compressed, "binary").unwrap();
        fs::write(&other, rec("a", 9, t1)).unwrap();
        fs::write(
            &j,
            rec("a", 3, t1) + &rec("b", 1, t1) + "not json\n" + &rec("a", 4, t1)[..20],
        )
        .unwrap();
        let journals = journal_candidates(&j, SystemTime::UNIX_EPOCH);
        assert_eq!(journals.len(), 2, "{journals:?}");
        let wanted = HashMap::from([("a".to_string(), "2026-11-23T00:00:00.000Z".to_string())]);
        let got = journaled_lines(&journals, &wanted).unwrap();
        assert_eq!(got.len(), 1);
        let a = &got["a"];
        // line 2 is older than the claim, line 4 is torn, b is not wanted.
        assert!(a.contains(1) && a.contains(3) && !a.contains(2) && !a.contains(4));
        assert_eq!(a.len(), 2);
        assert!(journal_candidates(&j, SystemTime::now() + Duration::from_secs(3600)).len() == 1);
    }

    #[test]
    fn claim_ts_matches_record_format() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        let ts = claim_ts(&fs::metadata(dir.path().join("f")).unwrap());
        let now = crate::record::now_rfc3339();
        assert_eq!(ts.len(), now.len());
        assert!(ts <= now, "{ts} <= {now}");
    }
}
