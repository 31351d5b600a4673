//! Per-list results in `SPOOL/out/`, the way a submitter gets its own records back:
//!
//! - `out/NAME.jsonl`: the records of list `NAME` (journal lines with `"src": NAME`), in
//!   journal order, copied from the journal once every record of the list is durable;
//! - `out/NAME.status`: `done N` or `bad N: REASON` (N records), written last: once it
//!   exists, the results are complete.
//!
//! Both belong to the daemon (mode 0640, its group) and carry a POSIX ACL entry that lets
//! the list's owner (the uid that created the list file) read them, and nobody else: `out/`
//! can be entered but not listed by submitters. A file system without POSIX ACLs
//! still gets the files, readable by the daemon's group only (the daemon says so at start).

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::euid;
use super::scan::{self, Want};
use super::state::Segment;
use super::SpoolError;

/// The results directory under the spool root.
pub(crate) const OUT: &str = "out";
/// Suffix of a list's records file in `out/`.
pub(crate) const RECORDS_SUFFIX: &str = ".jsonl";
/// Suffix of a list's status file in `out/`.
pub(crate) const STATUS_SUFFIX: &str = ".status";
/// Mode of the result files (the daemon's group may read; the owner through the ACL).
pub(crate) const RESULT_FILE_MODE: u32 = 0o640;
/// How often `submit --wait` looks for a list's status file.
pub(crate) const WAIT_POLL: Duration = Duration::from_millis(200);
/// Write buffer of a results file.
const RESULTS_BUFFER: usize = 256 * 1024;

/// The extended attribute that holds a file's access ACL.
const ACL_XATTR: &CStr = c"system.posix_acl_access";
/// The kernel's ACL xattr format: a version, then (tag, permissions, id) entries sorted by
/// tag and id (`linux/posix_acl_xattr.h`).
const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;
const ACL_READ: u16 = 4;
const ACL_WRITE: u16 = 2;
/// A uid nobody is: the start-up check grants it read access on a probe file.
const PROBE_UID: u32 = 65534;

/// How a list ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListEnd {
    Done,
    /// Went to `bad/`, and why.
    Bad(String),
    /// Every line was published to the cluster (a cluster node's spool): the records are in
    /// the cluster's records stream (`ringcrawl collect`), none here.
    Cluster,
}

/// The status file's line.
pub(crate) fn status_text(end: &ListEnd, records: u64) -> String {
    match end {
        ListEnd::Done => format!("done {records}\n"),
        ListEnd::Bad(why) => format!("bad {records}: {why}\n"),
        ListEnd::Cluster => "cluster 0\n".to_string(),
    }
}

/// `status_text` read back: how the list ended and its number of records.
pub(crate) fn parse_status(text: &str) -> Option<(ListEnd, u64)> {
    let line = text.lines().next()?;
    if let Some(n) = line.strip_prefix("done ") {
        return Some((ListEnd::Done, n.trim().parse().ok()?));
    }
    if let Some(n) = line.strip_prefix("cluster ") {
        return Some((ListEnd::Cluster, n.trim().parse().ok()?));
    }
    let rest = line.strip_prefix("bad ")?;
    let (n, why) = rest.split_once(": ")?;
    Some((ListEnd::Bad(why.to_string()), n.parse().ok()?))
}

/// The results files of list `name`.
pub(crate) fn paths(out_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        out_dir.join(format!("{name}{RECORDS_SUFFIX}")),
        out_dir.join(format!("{name}{STATUS_SUFFIX}")),
    )
}

/// What one list's results need.
pub(crate) struct ResultsJob {
    pub out_dir: PathBuf,
    pub name: String,
    /// Who may read them.
    pub owner: u32,
    pub want: Want,
    pub segments: Vec<Segment>,
    pub end: ListEnd,
}

/// Write `out/NAME.jsonl` then `out/NAME.status` (each atomically, readable by the owner).
/// Returns the number of records, or `None` when `stop` was set first (nothing is left
/// behind then but a temporary file the next attempt replaces).
pub(crate) fn write(job: &ResultsJob, stop: &AtomicBool) -> Result<Option<u64>, SpoolError> {
    let (records_path, status_path) = paths(&job.out_dir, &job.name);
    let tmp = job
        .out_dir
        .join(format!(".{}{RECORDS_SUFFIX}.tmp", job.name));
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| SpoolError::Write { path, cause }
    };
    let file = create(&tmp).map_err(werr(&tmp))?;
    let mut w = BufWriter::with_capacity(RESULTS_BUFFER, file);
    let mut tick = |_| {
        if stop.load(Ordering::Acquire) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let n = if job.end == ListEnd::Cluster {
        0
    } else {
        let (n, walked) = scan::records_of(&job.segments, &job.name, &job.want, &mut tick, &mut w)?;
        if walked.stopped {
            return Ok(None);
        }
        for seg in &walked.missing {
            tracing::warn!(list = job.name, segment = seg.seq, path = seg.path, "a journal file of this list is gone (compressed or deleted): its results lack the records written to it");
        }
        n
    };
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(werr(&tmp))?;
    finish(&file, job.owner).map_err(werr(&tmp))?;
    fs::rename(&tmp, &records_path).map_err(werr(&records_path))?;

    let tmp = job
        .out_dir
        .join(format!(".{}{STATUS_SUFFIX}.tmp", job.name));
    let mut file = create(&tmp).map_err(werr(&tmp))?;
    file.write_all(status_text(&job.end, n).as_bytes())
        .map_err(werr(&tmp))?;
    finish(&file, job.owner).map_err(werr(&tmp))?;
    fs::rename(&tmp, &status_path).map_err(werr(&status_path))?;
    File::open(&job.out_dir)
        .and_then(|d| d.sync_all())
        .map_err(werr(&job.out_dir))?;
    Ok(Some(n))
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(RESULT_FILE_MODE)
        .open(path)
}

/// Sync a results file and let its owner read it.
fn finish(file: &File, owner: u32) -> io::Result<()> {
    file.sync_all()?;
    if owner == 0 || owner == euid() {
        return Ok(()); // root reads anything; the daemon owns the file
    }
    match grant_read(file, owner) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(&e) => {
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "no POSIX ACLs on the spool's file system: submitters cannot read their results in out/");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP))
}

/// The ACL `user::rw-, user:UID:r--, group::r--, mask::r--, other::---` in the kernel's
/// xattr format.
fn acl_bytes(uid: u32) -> Vec<u8> {
    let entries = [
        (ACL_USER_OBJ, ACL_READ | ACL_WRITE, ACL_UNDEFINED_ID),
        (ACL_USER, ACL_READ, uid),
        (ACL_GROUP_OBJ, ACL_READ, ACL_UNDEFINED_ID),
        (ACL_MASK, ACL_READ, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ];
    let mut v = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Give `uid` read access to `file` (which this process owns) with an ACL entry.
fn grant_read(file: &File, uid: u32) -> io::Result<()> {
    let acl = acl_bytes(uid);
    // SAFETY: the descriptor is open for the call; the name is a NUL-terminated constant and
    // the value a live buffer of the length passed; fsetxattr reads both and keeps neither.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            ACL_XATTR.as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether files in `dir` can carry an ACL entry for another user (tried on a probe file).
pub(crate) fn acls_supported(dir: &Path) -> io::Result<bool> {
    let probe = dir.join(".acl-probe");
    let f = create(&probe)?;
    let r = grant_read(&f, PROBE_UID);
    let _ = fs::remove_file(&probe);
    match r {
        Ok(()) => Ok(true),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `submit --wait`: wait until list `name`'s status file exists, copy its records to
/// `out`, and say how it ended.
pub(crate) fn wait(spool: &Path, name: &str, out: &mut dyn Write) -> Result<ListEnd, SpoolError> {
    let (records_path, status_path) = paths(&spool.join(OUT), name);
    let rerr = |path: &Path| {
        let path = path.to_path_buf();
        move |cause: io::Error| SpoolError::Results { path, cause }
    };
    let status = loop {
        match fs::read_to_string(&status_path) {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::thread::sleep(WAIT_POLL),
            Err(e) => return Err(rerr(&status_path)(e)),
        }
    };
    let (end, _) = parse_status(&status).ok_or_else(|| {
        rerr(&status_path)(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a status line",
        ))
    })?;
    let mut f = File::open(&records_path).map_err(rerr(&records_path))?;
    let mut buf = vec![0u8; RESULTS_BUFFER];
    loop {
        let n = f.read(&mut buf).map_err(rerr(&records_path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|cause| SpoolError::Write {
                path: PathBuf::from("-"),
                cause,
            })?;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalPos;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn status_lines_round_trip() {
        for (end, n) in [
            (ListEnd::Done, 7),
            (ListEnd::Bad("list is larger than 10 bytes: x".into()), 2),
            (ListEnd::Cluster, 0),
        ] {
            assert_eq!(parse_status(&status_text(&end, n)), Some((end, n)));
        }
        assert_eq!(parse_status("whatever"), None);
    }

    #[test]
    fn the_acl_is_the_kernel_format() {
        let b = acl_bytes(60001);
        assert_eq!(b.len(), 4 + 5 * 8);
        assert_eq!(&b[..4], &[2, 0, 0, 0]);
        // The named user entry: tag 2, read, uid 60001.
        assert_eq!(&b[12..20], &[2, 0, 4, 0, 0x61, 0xea, 0, 0]);
    }

    #[test]
    fn results_hold_the_lists_records_and_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j.jsonl");
        let rec =
            |src: &str, line: u64| format!("{{\"url\":\"u\",\"src\":\"{src}\",\"line\":{line}}}\n");
        fs::write(&j, rec("a", 1) + &rec("b", 1) + &rec("a", 2)).unwrap();
        let m = fs::metadata(&j).unwrap();
        let seg = Segment {
            seq: 1,
            dev: m.dev(),
            ino: m.ino(),
            start: 0,
            path: j.to_string_lossy().into_owned(),
        };
        let out_dir = dir.path().join(OUT);
        fs::create_dir(&out_dir).unwrap();
        let job = ResultsJob {
            out_dir: out_dir.clone(),
            name: "a".into(),
            owner: euid(),
            want: Want {
                from: JournalPos { seq: 1, offset: 0 },
                not_before: None,
            },
            segments: vec![seg],
            end: ListEnd::Done,
        };
        assert_eq!(write(&job, &AtomicBool::new(false)).unwrap(), Some(2));
        let mut got = Vec::new();
        assert_eq!(wait(dir.path(), "a", &mut got).unwrap(), ListEnd::Done);
        assert_eq!(String::from_utf8(got).unwrap(), rec("a", 1) + &rec("a", 2));
        let (records, _) = paths(&out_dir, "a");
        let mode = fs::metadata(records).unwrap().mode();
        assert_eq!(mode & 0o777, RESULT_FILE_MODE);
        assert!(acls_supported(&out_dir).is_ok());
        assert_eq!(
            fs::read_dir(&out_dir).unwrap().count(),
            2,
            "no temporary or probe file left"
        );
    }
}
