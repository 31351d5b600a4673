//! The spool directory protocol (maildir style, one filesystem), its trust model, `ringcrawl
//! submit`, feeding list files to the engine (through `intake`'s one line reader), and crash
//! recovery.
//!
//! ```text
//! SPOOL       the submit group may enter it                       tmpfiles: 0750 daemon:submit
//! SPOOL/tmp   producers write here                                  3733 daemon:daemon
//! SPOOL/new   complete lists; inotify wakes the daemon              3733 daemon:daemon
//! SPOOL/cur   claimed (rename new/X -> cur/X), lines being fetched  0750
//! SPOOL/done  every line has a durable journal record               0750
//! SPOOL/bad   not a list, or could not be read (logged once)        0750
//! SPOOL/out   per-list results for their owners (`results`)         0751
//! ```
//!
//! **Trust.** `tmp/` and `new/` are setgid to the daemon's group (a list's group is the
//! daemon's, which reads it through the group bits; other submitters are "others" to it),
//! sticky (only a list's owner may rename or delete it; `link` never replaces), and
//! writable and searchable but not listable by others, with names nobody can guess
//! (`names::submit_name`). `cur/ done/ bad/` are the daemon's only; a submitter gets its
//! own records from `out/` (`results`). [`Spool::open`] sets these modes and groups on the
//! directories it owns. Entries are never followed: [`Spool::pending`] takes only regular
//! files with a usable name, and a claimed list is opened with `O_NOFOLLOW | O_NONBLOCK`
//! and checked with `fstat` before it is read; anything else goes to `bad/`.
//!
//! A file is only ever read from `cur/`, and only `rename`/`link` move files between
//! directories, so a producer's half-written file (which lives in `tmp/`) is never read.
//! Claim names are unique across `cur/ done/ bad/ out/` (a suffix `.N` is added on
//! collision), and the name in `cur/` is the `src` of every record made from the file;
//! `line` is the 1-based line number in the file (blank lines are skipped but counted).
//!
//! # Exactly once
//!
//! The journal is the only source of truth: a line is done iff the journal holds a complete
//! record with its `(src, line)`.
//!
//! 1. Before a list is renamed into `cur/`, its claim record (`state`) is written: the
//!    journal position at that moment, a point every record of the list comes after. The
//!    journal history (`state`) lists every journal file written since the oldest claim.
//! 2. While a file is in `cur/`, its lines are submitted to the engine; the journal writer
//!    reports per-`src` counts of records that are durable (after fsync; see `journal`).
//! 3. A file leaves `cur/` (to `done/` or `bad/`) only when the reader reached its end (or
//!    failed) and every submitted line's record is durable, and once its results are in
//!    `out/`. So after a crash, any file whose records might be incomplete is still in `cur/`.
//! 4. At start, before anything else is written, the journal's torn last line (if any) is
//!    truncated, then `scan::journaled_lines` reads the journal history's segments **once**,
//!    from the oldest claim on, and builds, for the lists in `cur/` only, a bitmap of the line
//!    numbers that have a record at or after the list's claim position. No clock is involved:
//!    a record before the claim belongs to an earlier list of the same name. A list claimed
//!    by a version without claim records (or every list, when the history was lost) falls
//!    back to the old rule (records whose `ts` is not older than the list's ctime).
//! 5. Each file in `cur/` is read again from the start and only lines missing from its bitmap
//!    are submitted. A record is written for a line at most once per run (the engine's
//!    contract) and a line journaled in an earlier run is skipped, so every line ends with
//!    exactly one record. Lines in flight at the crash had no complete record (a torn one is
//!    removed in step 4), so they are fetched again.
//!
//! With `fsync = "never"` "durable" means "written to the kernel": this survives `kill -9`
//! but not a power cut. A compressed rotated journal cannot be scanned; logrotate should use
//! `delaycompress` (the shipped snippet does) so the newest rotated file stays plain.

pub(crate) mod names;
pub(crate) mod results;
pub(crate) mod scan;
pub(crate) mod state;

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::{Engine, Stopped};
use crate::intake::{InputLine, LineReader, ReadError, ReadLimits};
use crate::journal::JournalPos;
use names::BadName;
use results::OUT;
use state::ClaimRecord;

pub const TMP: &str = "tmp";
pub const NEW: &str = "new";
pub const CUR: &str = "cur";
pub const DONE: &str = "done";
pub const BAD: &str = "bad";
/// Mode of a spool root the daemon creates (tmpfiles.d creates it with the submit group).
pub const ROOT_DIR_MODE: u32 = 0o750;
/// Mode of `tmp/` and `new/`: setgid (lists get the daemon's group), sticky (only a list's
/// owner may rename or delete it), others may add entries and open them by name, not list.
pub const DROP_DIR_MODE: u32 = 0o3733;
/// Mode of `out/`: others may open a result by name (its ACL permitting), not list.
pub const OUT_DIR_MODE: u32 = 0o751;
/// Mode of `cur/ done/ bad/`: the daemon (and its group) only.
pub const DAEMON_DIR_MODE: u32 = 0o750;
/// Mode of a submitted list: its owner and the daemon's group may read it.
pub const SUBMITTED_FILE_MODE: u32 = 0o640;
/// Lock file under the spool root: one daemon per spool.
pub const LOCK_FILE: &str = ".lock";
const LOCK_FILE_MODE: u32 = 0o600;
/// Collision suffixes tried before giving up on a name.
pub const MAX_NAME_SUFFIX: u32 = 100_000;
/// Fresh random names `submit` tries when a name is taken in `new/`.
const SUBMIT_NAME_TRIES: u32 = 16;

/// The directories under the spool root and their modes. The group of `tmp/ new/ out/` is
/// the daemon's, so that submitters are "others" to each other's lists.
const DIRS: [(&str, u32); 6] = [
    (TMP, DROP_DIR_MODE),
    (NEW, DROP_DIR_MODE),
    (CUR, DAEMON_DIR_MODE),
    (DONE, DAEMON_DIR_MODE),
    (BAD, DAEMON_DIR_MODE),
    (OUT, OUT_DIR_MODE),
];

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
    #[error("cannot read results {path}: {cause}")]
    Results { path: PathBuf, cause: io::Error },
    #[error("spool state {path}: {cause}")]
    State { path: PathBuf, cause: io::Error },
}

/// What happened to a file that leaves `cur/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Bad,
}

/// Why a spool entry is not a list (it goes to `bad/`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unfit {
    #[error(transparent)]
    Name(#[from] BadName),
    #[error("it is {0}, not a regular file")]
    Kind(&'static str),
    #[error("it is the journal itself")]
    Journal,
    #[error("cannot open it: {0}")]
    Open(io::Error),
}

/// An entry of `new/`.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A regular file with a usable name.
    List(String),
    /// Anything else (it goes to `bad/` as it is).
    Unfit { name: OsString, why: Unfit },
}

/// A list claimed into `cur/` (or found there at start), opened and checked.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Its name in `cur/`: the `src` of its records.
    pub name: String,
    pub file: File,
    /// The uid that created it: the one its results are for.
    pub owner: u32,
}

/// What [`Spool::claim`] did.
#[derive(Debug)]
pub(crate) enum Claim {
    Claimed(Opened, ClaimRecord),
    /// The file vanished from `new/` first.
    Gone,
    /// It is in `cur/` under `name` but is not a list (the caller sends it to `bad/`).
    Unfit {
        name: String,
        why: Unfit,
    },
}

/// An entry of `cur/` at start.
#[derive(Debug)]
pub(crate) enum InProgress {
    /// A list; `claim` is `None` when an older version claimed it (no claim record): then
    /// its ctime (`ctime_ts`, in the records' `ts` format) is its claim time.
    List {
        list: Opened,
        claim: Option<ClaimRecord>,
        ctime_ts: String,
    },
    Unfit {
        name: OsString,
        why: Unfit,
    },
}

/// An entry (not followed) as a list name, or why it cannot be one; nothing is opened.
fn classify(name: &OsStr, meta: &fs::Metadata) -> Result<String, Unfit> {
    match names::list_name(name) {
        Err(why) => Err(Unfit::Name(why)),
        Ok(_) if !meta.is_file() => Err(Unfit::Kind(kind_of(meta.file_type()))),
        Ok(s) => Ok(s.to_string()),
    }
}

/// The process's effective uid.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The process's effective gid.
fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// What kind of non-regular file `t` is, for a log line.
fn kind_of(t: fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

/// Open a list without following a symbolic link, without blocking (a FIFO, a device), and
/// check with `fstat` that it is a regular file and not a journal (`is_journal`).
pub(crate) fn open_list(
    path: &Path,
    is_journal: &dyn Fn(u64, u64) -> bool,
) -> Result<(File, fs::Metadata), Unfit> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Unfit::Kind("a symbolic link"),
            _ => Unfit::Open(e),
        })?;
    let meta = file.metadata().map_err(Unfit::Open)?;
    if !meta.is_file() {
        return Err(Unfit::Kind(kind_of(meta.file_type())));
    }
    if is_journal(meta.dev(), meta.ino()) {
        return Err(Unfit::Journal);
    }
    Ok((file, meta))
}

/// An opened (and locked) spool.
pub struct Spool {
    root: PathBuf,
    _lock: File,
}

impl Spool {
    /// Create missing directories (and set the trust model's modes and groups on those this
    /// process owns), then take the spool lock.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        let dir_err = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| SpoolError::Dir { path, cause }
        };
        if !root.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(ROOT_DIR_MODE)
                .create(root)
                .map_err(dir_err(root))?;
        }
        for (sub, mode) in DIRS {
            let p = root.join(sub);
            if fs::symlink_metadata(&p).is_err() {
                DirBuilder::new()
                    .mode(mode)
                    .create(&p)
                    .map_err(dir_err(&p))?;
            }
            enforce_dir(&p, mode).map_err(dir_err(&p))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(LOCK_FILE_MODE)
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
    pub fn path(&self, sub: &str, name: impl AsRef<OsStr>) -> PathBuf {
        self.root.join(sub).join(name.as_ref())
    }

    /// The entries of `new/`, oldest first: lists, and what cannot be one (dot files are
    /// producers' business and ignored).
    pub(crate) fn pending(&self) -> Result<Vec<Entry>, SpoolError> {
        let mut out = Vec::new();
        // Not followed: the type and time of each entry itself.
        for (name, meta) in self.entries(NEW)? {
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let e = match classify(&name, &meta) {
                Ok(list) => Entry::List(list),
                Err(why) => Entry::Unfit { name, why },
            };
            out.push((mtime, name_of(&e).to_os_string(), e));
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(out.into_iter().map(|(_, _, e)| e).collect())
    }

    /// Claim `new/name`: write its claim record (the journal position `at`), rename it into
    /// `cur/` under a name unique across `cur/ done/ bad/ out/`, then open and check it.
    pub(crate) fn claim(
        &self,
        name: &str,
        at: JournalPos,
        is_journal: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Claim, SpoolError> {
        let from = self.path(NEW, name);
        let target = self.free_name(name, &[CUR, DONE, BAD], true)?;
        let to = self.path(CUR, &target);
        let cur = self.root.join(CUR);
        let rec = ClaimRecord { journal: at };
        state::write_claim(&cur, &target, &rec).map_err(|cause| SpoolError::State {
            path: state::claim_path(&cur, &target),
            cause,
        })?;
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) => {
                let _ = fs::remove_file(state::claim_path(&cur, &target));
                if e.kind() == io::ErrorKind::NotFound {
                    return Ok(Claim::Gone);
                }
                return Err(SpoolError::Rename { from, to, cause: e });
            }
        }
        self.sync_dirs(&[CUR, NEW])?;
        Ok(match open_list(&to, is_journal) {
            Ok((file, meta)) => Claim::Claimed(
                Opened {
                    name: target,
                    file,
                    owner: meta.uid(),
                },
                rec,
            ),
            Err(why) => Claim::Unfit { name: target, why },
        })
    }

    /// The ctimes of the lists in `cur/`: when there is no journal history, it starts with the
    /// journal files modified since the oldest (lists claimed by an older version, or whose
    /// history was lost, are matched by time in them).
    pub(crate) fn claim_ctimes(&self) -> Result<Vec<SystemTime>, SpoolError> {
        Ok(self
            .entries(CUR)?
            .into_iter()
            .filter(|(_, meta)| meta.is_file())
            .map(|(_, meta)| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0))
            })
            .collect())
    }

    /// The entries of `cur/` at start, checked like a fresh claim; claim records without
    /// their list and temporary files are removed.
    pub(crate) fn in_progress(
        &self,
        is_journal: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Vec<InProgress>, SpoolError> {
        let cur = self.root.join(CUR);
        let mut out = Vec::new();
        let mut lists = Vec::new();
        for (name, meta) in self.entries(CUR)? {
            match classify(&name, &meta) {
                Ok(list) => lists.push(list),
                Err(why) => out.push(InProgress::Unfit { name, why }),
            }
        }
        self.remove_orphans(&lists);
        for name in lists {
            let path = self.path(CUR, &name);
            let (file, meta) = match open_list(&path, is_journal) {
                Ok(opened) => opened,
                Err(why) => {
                    out.push(InProgress::Unfit {
                        name: name.into(),
                        why,
                    });
                    continue;
                }
            };
            let claim = state::read_claim(&cur, &name).map_err(|cause| SpoolError::State {
                path: state::claim_path(&cur, &name),
                cause,
            })?;
            out.push(InProgress::List {
                list: Opened {
                    name,
                    file,
                    owner: meta.uid(),
                },
                claim,
                ctime_ts: scan::claim_ts(&meta),
            });
        }
        Ok(out)
    }

    /// Remove claim records whose list is not in `cur/` (a crash between writing the record
    /// and the claim rename, or after a release) and leftover temporary files.
    fn remove_orphans(&self, lists: &[String]) {
        let cur = self.root.join(CUR);
        let Ok(entries) = fs::read_dir(&cur) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let orphan = match state::claim_of(name) {
                Some(list) => !lists.iter().any(|l| l == list),
                None => name.starts_with('.') && name.ends_with(".tmp"),
            };
            if orphan {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// `sub`'s entries that are not dot files, not followed (one gone meanwhile is left out).
    fn entries(&self, sub: &str) -> Result<Vec<(OsString, fs::Metadata)>, SpoolError> {
        let dir = self.root.join(sub);
        let err = |cause| SpoolError::Dir {
            path: dir.clone(),
            cause,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                out.push((name, meta));
            }
        }
        Ok(out)
    }

    /// Move `sub/name` (not a list) to `bad/` as it is. Returns the new path.
    pub(crate) fn reject(&self, sub: &str, name: &OsStr) -> Result<PathBuf, SpoolError> {
        let from = self.path(sub, name);
        let to = self.path(BAD, self.free_os_name(name, &[BAD])?);
        fs::rename(&from, &to).map_err(|cause| SpoolError::Rename {
            from,
            to: to.clone(),
            cause,
        })?;
        if let Some(n) = name.to_str() {
            let _ = fs::remove_file(state::claim_path(&self.root.join(CUR), n));
        }
        self.sync_dirs(&[BAD, sub])?;
        Ok(to)
    }

    /// Move `cur/name` to `done/` or `bad/` (unique name there) and drop its claim record.
    /// Returns the new path.
    pub fn release(&self, name: &str, outcome: Outcome) -> Result<PathBuf, SpoolError> {
        let sub = match outcome {
            Outcome::Done => DONE,
            Outcome::Bad => BAD,
        };
        let from = self.path(CUR, name);
        let to = self.path(sub, self.free_name(name, &[sub], false)?);
        fs::rename(&from, &to).map_err(|cause| SpoolError::Rename {
            from,
            to: to.clone(),
            cause,
        })?;
        let _ = fs::remove_file(state::claim_path(&self.root.join(CUR), name));
        self.sync_dirs(&[sub, CUR])?;
        Ok(to)
    }

    /// Delete files in `done/` and `out/` last modified longer than `age` ago. Returns how
    /// many.
    pub fn purge_done(&self, age: Duration) -> Result<usize, SpoolError> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut n = 0;
        for sub in [DONE, OUT] {
            for (name, meta) in self.entries(sub)? {
                if meta.modified().unwrap_or(SystemTime::UNIX_EPOCH) < cutoff {
                    let p = self.path(sub, &name);
                    fs::remove_file(&p).map_err(|cause| SpoolError::Write { path: p, cause })?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// `name`, or `name.N`, free in every one of `subs` (and, with `results`, without
    /// results in `out/`).
    fn free_name(&self, name: &str, subs: &[&str], results: bool) -> Result<String, SpoolError> {
        let out = self.root.join(OUT);
        let taken = |cand: &str| {
            subs.iter()
                .any(|s| self.path(s, cand).symlink_metadata().is_ok())
                || (results && results::paths(&out, cand).1.symlink_metadata().is_ok())
        };
        if !taken(name) {
            return Ok(name.to_string());
        }
        (1..MAX_NAME_SUFFIX)
            .map(|i| format!("{name}.{i}"))
            .find(|c| !taken(c))
            .ok_or_else(|| SpoolError::NoName(name.to_string()))
    }

    /// [`Spool::free_name`] for a name that may not be UTF-8.
    fn free_os_name(&self, name: &OsStr, subs: &[&str]) -> Result<OsString, SpoolError> {
        let taken = |cand: &OsStr| {
            subs.iter()
                .any(|s| self.path(s, cand).symlink_metadata().is_ok())
        };
        if !taken(name) {
            return Ok(name.to_os_string());
        }
        (1..MAX_NAME_SUFFIX)
            .map(|i| {
                let mut c = name.to_os_string();
                c.push(format!(".{i}"));
                c
            })
            .find(|c| !taken(c))
            .ok_or_else(|| SpoolError::NoName(names::escape(name)))
    }

    fn sync_dirs(&self, subs: &[&str]) -> Result<(), SpoolError> {
        for s in subs {
            let p = self.root.join(s);
            sync_dir(&p).map_err(|cause| SpoolError::Write { path: p, cause })?;
        }
        Ok(())
    }
}

fn name_of(e: &Entry) -> &OsStr {
    match e {
        Entry::List(n) => OsStr::new(n),
        Entry::Unfit { name, .. } => name,
    }
}

/// Give a spool directory its mode, and the daemon's group for those that are not only the
/// daemon's, when this process owns it; say so when it cannot.
fn enforce_dir(p: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(p)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a directory",
        ));
    }
    let want_gid = egid();
    let (have_mode, have_gid) = (meta.mode() & 0o7777, meta.gid());
    if have_mode == mode && have_gid == want_gid {
        return Ok(());
    }
    if meta.uid() != euid() && euid() != 0 {
        tracing::warn!(dir = %p.display(), mode = format!("{have_mode:o}"), want = format!("{mode:o}"), "spool directory is not the daemon's: cannot set the mode and group the trust model needs");
        return Ok(());
    }
    if have_gid != want_gid {
        std::os::unix::fs::chown(p, None, Some(want_gid))?;
    }
    // Set after the chown, which may clear the setgid bit.
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

fn sync_dir(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// Make `dir`'s entries durable. A submitter may not open `new/` (it is not listable), so
/// then the whole file system holding `file` is synced instead.
fn sync_entries(dir: &Path, file: &File) -> io::Result<()> {
    match sync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // SAFETY: syncfs only reads the descriptor number, which `file` keeps open.
            let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        r => r,
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when another process holds the lock.
fn try_lock_exclusive(f: &File) -> io::Result<bool> {
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

/// Random bytes for a submitted name.
fn random_bytes() -> io::Result<[u8; names::NAME_RANDOM_BYTES]> {
    let mut b = [0u8; names::NAME_RANDOM_BYTES];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// `ringcrawl submit`: queue each input (a path, or `-` for stdin) into `SPOOL/new`: copy
/// into `tmp/`, fsync, hard-link into `new/` under a fresh unguessable name
/// (`names::submit_name`), remove the tmp name, make both directories durable. All inputs
/// are opened before anything is queued. Returns the queued paths in input order; each
/// one's file name is its list's `src` and its results' name in `out/`.
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
            .and_then(|()| link_fresh(&tmp, &new_dir, &base));
        let _ = fs::remove_file(&tmp);
        let dest = done?;
        sync_entries(&new_dir, &f).map_err(werr(&new_dir))?;
        sync_entries(&tmp_dir, &f).map_err(werr(&tmp_dir))?;
        queued.push(dest);
    }
    Ok(queued)
}

/// Hard-link `tmp` into `new_dir` under a fresh name made from `base`: `link` fails instead
/// of replacing, so concurrent producers cannot overwrite each other.
fn link_fresh(tmp: &Path, new_dir: &Path, base: &str) -> Result<PathBuf, SpoolError> {
    for _ in 0..SUBMIT_NAME_TRIES {
        let random = random_bytes().map_err(|cause| SpoolError::Write {
            path: PathBuf::from("/dev/urandom"),
            cause,
        })?;
        let dest = new_dir.join(names::submit_name(base, &random));
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

/// Where the reader sends lines: the engine, or a test double.
pub(crate) trait JobSink: Sync {
    /// Submit one line; while the engine's queue is full, wait, but give up once `stop` is
    /// set.
    fn submit_line(
        &self,
        line: InputLine,
        src: &Arc<str>,
        stop: Option<&AtomicBool>,
    ) -> Result<(), Stopped>;
}

impl JobSink for Engine {
    fn submit_line(
        &self,
        line: InputLine,
        src: &Arc<str>,
        stop: Option<&AtomicBool>,
    ) -> Result<(), Stopped> {
        match stop {
            Some(stop) => Engine::submit_line_until(self, line, Some(src.clone()), stop),
            None => Engine::submit_line(self, line, Some(src.clone())),
        }
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
    let stop = limits.stop.clone();
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
        if sink.submit_line(line, src, stop.as_deref()).is_err() {
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
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(InputLine, Arc<str>)>>);
    impl JobSink for Collect {
        fn submit_line(
            &self,
            line: InputLine,
            src: &Arc<str>,
            _: Option<&AtomicBool>,
        ) -> Result<(), Stopped> {
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
    fn feed_stops_on_flag_and_on_stopped_engine_and_passes_the_flag_on() {
        struct Refuse;
        impl JobSink for Refuse {
            fn submit_line(
                &self,
                _: InputLine,
                _: &Arc<str>,
                stop: Option<&AtomicBool>,
            ) -> Result<(), Stopped> {
                assert!(stop.is_some(), "a waiting submit can see the stop");
                Err(Stopped)
            }
        }
        let n = AtomicU64::new(0);
        let src: Arc<str> = Arc::from("x");
        let limits = |stop| ReadLimits {
            stop: Some(Arc::new(AtomicBool::new(stop))),
            max_bytes: None,
        };
        let st = feed(&b"a\nb\n"[..], &src, None, &Refuse, &n, limits(false)).unwrap();
        assert!(st.stopped);
        assert_eq!(n.load(Ordering::Relaxed), 0);
        let st = feed(
            &b"a\nb\n"[..],
            &src,
            None,
            &Collect::default(),
            &n,
            limits(true),
        )
        .unwrap();
        assert!(st.stopped);
        assert_eq!(st.lines, 0);
    }

    #[test]
    fn an_oversize_list_submits_the_lines_that_end_within_the_limit() {
        let sink = Collect::default();
        let n = AtomicU64::new(0);
        let src: Arc<str> = Arc::from("big");
        let limits = ReadLimits {
            stop: None,
            max_bytes: Some(25),
        };
        let r = feed(
            &b"http://a/\nhttp://b/\nhttp://c/\n"[..],
            &src,
            None,
            &sink,
            &n,
            limits,
        );
        assert!(matches!(r, Err(ReadError::TooLarge(25))));
        assert_eq!(
            n.load(Ordering::Relaxed),
            2,
            "the first two lines end within 25 bytes"
        );
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

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn no_journal(_: u64, _: u64) -> bool {
        false
    }

    fn claimed(c: Claim) -> (Opened, ClaimRecord) {
        match c {
            Claim::Claimed(o, r) => (o, r),
            other => panic!("not claimed: {other:?}"),
        }
    }

    #[test]
    fn open_sets_the_trust_models_modes_and_takes_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        fs::create_dir(&root).unwrap();
        // An old layout: new/ group-writable without the sticky bit, done/ group-readable.
        for sub in [NEW, DONE] {
            fs::create_dir(root.join(sub)).unwrap();
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o2770)).unwrap();
        }
        let _spool = Spool::open(&root).unwrap();
        assert!(matches!(Spool::open(&root), Err(SpoolError::Locked(_))));
        for (sub, want) in DIRS {
            assert_eq!(mode(&root.join(sub)), want, "{sub}");
            assert_eq!(fs::metadata(root.join(sub)).unwrap().gid(), egid());
        }
        assert_eq!(mode(&root.join(LOCK_FILE)), LOCK_FILE_MODE);
    }

    #[test]
    fn submit_claim_release_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let spool = Spool::open(&root).unwrap();
        let input = dir.path().join("list.txt");
        fs::write(&input, "http://a.test/\n").unwrap();
        let q = submit(&root, &[input.clone(), input.clone()]).unwrap();
        assert_eq!(q.len(), 2);
        assert_ne!(q[0], q[1], "every submission gets its own name");
        let names: Vec<String> = q
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        for (p, n) in q.iter().zip(&names) {
            assert_eq!(p.parent().unwrap(), root.join(NEW));
            assert!(n.starts_with("list.txt.") && n.len() == 9 + 2 * names::NAME_RANDOM_BYTES);
            assert_eq!(mode(p) & 0o777, SUBMITTED_FILE_MODE);
        }
        assert_eq!(
            fs::read_dir(root.join(TMP)).unwrap().count(),
            0,
            "tmp/ is cleaned"
        );

        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 2);
        let at = JournalPos { seq: 3, offset: 99 };
        let (list, rec) = claimed(spool.claim(&names[0], at, &no_journal).unwrap());
        assert_eq!(list.name, names[0]);
        assert_eq!(list.owner, euid());
        assert_eq!(rec.journal, at);
        let cur = root.join(CUR);
        assert_eq!(state::read_claim(&cur, &names[0]).unwrap(), Some(rec));
        assert!(matches!(
            spool.claim(&names[0], at, &no_journal).unwrap(),
            Claim::Gone
        ));
        let done = spool.release(&names[0], Outcome::Done).unwrap();
        assert_eq!(done, root.join(DONE).join(&names[0]));
        assert_eq!(
            state::read_claim(&cur, &names[0]).unwrap(),
            None,
            "the claim record goes"
        );

        // A raw producer's list whose name is taken in done/ gets a suffix.
        fs::write(root.join(NEW).join(&names[0]), "direct producer\n").unwrap();
        let (list, _) = claimed(spool.claim(&names[0], at, &no_journal).unwrap());
        assert_eq!(list.name, format!("{}.1", names[0]));
        let bad = spool.release(&list.name, Outcome::Bad).unwrap();
        assert_eq!(bad, root.join(BAD).join(&list.name));
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
    fn entries_that_are_not_lists_are_told_apart_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let new = dir.path().join(NEW);
        fs::write(new.join("good.txt"), "http://a/\n").unwrap();
        fs::write(new.join(".hidden"), "").unwrap();
        fs::write(new.join("evil\nname"), "http://a/\n").unwrap();
        fs::create_dir(new.join("dir")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", new.join("zero")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), new.join("dangling")).unwrap();
        let fifo = std::ffi::CString::new(new.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut lists = Vec::new();
        let mut unfit = Vec::new();
        for e in spool.pending().unwrap() {
            match e {
                Entry::List(n) => lists.push(n),
                Entry::Unfit { name, why } => unfit.push((names::escape(&name), why.to_string())),
            }
        }
        unfit.sort();
        assert_eq!(lists, ["good.txt"]);
        let want = [
            ("dangling", "it is a symbolic link, not a regular file"),
            ("dir", "it is a directory, not a regular file"),
            ("evil\\nname", "its name contains a control character"),
            ("fifo", "it is a FIFO, not a regular file"),
            ("zero", "it is a symbolic link, not a regular file"),
        ];
        let got: Vec<(&str, &str)> = unfit
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(got, want);
        let to = spool.reject(NEW, OsStr::new("evil\nname")).unwrap();
        assert_eq!(to, dir.path().join(BAD).join("evil\nname"));
    }

    #[test]
    fn a_claimed_entry_is_opened_without_following_or_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let cur = dir.path();
        let journal = cur.join("journal");
        fs::write(&journal, "{}\n").unwrap();
        let fifo_path = cur.join("fifo");
        let fifo = std::ffi::CString::new(fifo_path.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink(&journal, cur.join("link")).unwrap();
        fs::hard_link(&journal, cur.join("hard")).unwrap();
        let j = fs::metadata(&journal).unwrap();
        let is_journal = |dev, ino| dev == j.dev() && ino == j.ino();
        let why = |name: &str| {
            open_list(&cur.join(name), &is_journal)
                .unwrap_err()
                .to_string()
        };
        // A FIFO without a writer would block a plain open for ever.
        assert_eq!(why("fifo"), "it is a FIFO, not a regular file");
        assert_eq!(why("link"), "it is a symbolic link, not a regular file");
        assert_eq!(why("hard"), "it is the journal itself");
        fs::write(cur.join("list"), "x\n").unwrap();
        assert!(open_list(&cur.join("list"), &is_journal).is_ok());
    }

    #[test]
    fn recovery_sends_what_is_not_a_list_to_bad_and_drops_orphan_claim_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let cur = dir.path().join(CUR);
        fs::write(cur.join("old.txt"), "x\n").unwrap();
        fs::write(cur.join("new.txt"), "x\n").unwrap();
        let rec = ClaimRecord {
            journal: JournalPos { seq: 2, offset: 5 },
        };
        state::write_claim(&cur, "new.txt", &rec).unwrap();
        state::write_claim(&cur, "gone.txt", &rec).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), cur.join("dangling")).unwrap();
        assert_eq!(
            spool.claim_ctimes().unwrap().len(),
            2,
            "the lists, not the link"
        );
        let mut lists = Vec::new();
        let mut unfit = Vec::new();
        for e in spool.in_progress(&no_journal).unwrap() {
            match e {
                InProgress::List { list, claim, .. } => lists.push((list.name, claim)),
                InProgress::Unfit { name, .. } => unfit.push(name),
            }
        }
        lists.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            lists,
            [
                ("new.txt".to_string(), Some(rec)),
                ("old.txt".to_string(), None)
            ]
        );
        assert_eq!(unfit, [OsString::from("dangling")]);
        assert!(!state::claim_path(&cur, "gone.txt").exists());
        assert!(state::claim_path(&cur, "new.txt").exists());
    }

    #[test]
    fn purge_done_removes_only_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        for p in ["done/old", "done/new", "out/old.jsonl"] {
            fs::write(dir.path().join(p), "").unwrap();
        }
        for p in ["done/old", "out/old.jsonl"] {
            let old = File::options()
                .write(true)
                .open(dir.path().join(p))
                .unwrap();
            old.set_modified(SystemTime::now() - Duration::from_secs(3 * 86400))
                .unwrap();
        }
        assert_eq!(spool.purge_done(Duration::from_secs(86400)).unwrap(), 2);
        assert!(dir.path().join("done/new").exists());
        assert!(!dir.path().join("done/old").exists());
        assert!(!dir.path().join("out/old.jsonl").exists());
    }
}
