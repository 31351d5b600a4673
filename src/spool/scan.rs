//! Reading the journal back: which lines of the lists in `cur/` already have a record
//! (recovery), and the records of one list (its results). Both walk the journal history's
//! segments ([`Segment`]) from a claim position on, one sequential pass, and count a
//! record for a list only at or after the list's claim position ([`Want`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::state::Segment;
use super::{LineSet, SpoolError};
use crate::journal::JournalPos;

/// A progress callback is called after about this many bytes read (the daemon extends
/// systemd's start timeout, or checks for a stop, from it).
pub(crate) const TICK_BYTES: u64 = 16 << 20;
/// Read buffer of a scan.
const SCAN_BUFFER: usize = 1 << 20;

/// Where one list's records may be: at or after `from`, and (a list claimed before claim
/// records existed) with a `ts` not older than `not_before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub from: JournalPos,
    pub not_before: Option<String>,
}

impl Want {
    fn takes(&self, at: JournalPos, ts: Option<&str>) -> bool {
        at >= self.from
            && match (&self.not_before, ts) {
                (Some(min), Some(ts)) => ts >= min.as_str(),
                _ => true,
            }
    }
}

/// What a walk over the segments saw.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Segment files read.
    pub files: usize,
    pub bytes: u64,
    /// Segments whose file is gone (compressed or deleted): records in them were not seen.
    pub missing: Vec<Segment>,
    /// The progress callback asked to stop.
    pub stopped: bool,
}

/// What recovery, results and `collect` read of a journal line: its list, line and time.
#[derive(serde::Deserialize)]
pub(crate) struct RecordKey<'a> {
    #[serde(borrow)]
    pub src: Option<std::borrow::Cow<'a, str>>,
    pub line: Option<u64>,
    #[serde(borrow)]
    pub ts: Option<std::borrow::Cow<'a, str>>,
}

/// The file of `seg`: its path if that is still the same file, else a rotated sibling
/// (`NAME.1`, `NAME-20261130`...) with its device and inode.
pub(crate) fn locate(seg: &Segment) -> Option<PathBuf> {
    let same = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev() == seg.dev && m.ino() == seg.ino)
            .unwrap_or(false)
    };
    let path = PathBuf::from(&seg.path);
    if same(&path) {
        return Some(path);
    }
    siblings(&path).into_iter().find(|p| same(p))
}

/// `journal`'s rotated siblings in its directory: names that continue its name with `.` or
/// `-`.
fn siblings(journal: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (
        journal.parent(),
        journal.file_name().and_then(|n| n.to_str()),
    ) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
            })
        })
        .map(|e| e.path())
        .collect()
}

/// For lists claimed before claim records existed: the journal and its uncompressed rotated
/// siblings modified since `since`, oldest first (the history is seeded with them).
pub(crate) fn journal_candidates(journal: &Path, since: SystemTime) -> Vec<PathBuf> {
    let mut out: Vec<(SystemTime, PathBuf)> = Vec::new();
    for p in siblings(journal) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Ok(mtime) = fs::metadata(&p).and_then(|m| m.modified()) else {
            continue;
        };
        if mtime < since {
            continue;
        }
        if [".gz", ".xz", ".zst", ".bz2", ".lz4"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            tracing::warn!(path = %p.display(), "compressed rotated journal is newer than a claimed list and cannot be scanned; its records may be fetched again");
            continue;
        }
        out.push((mtime, p));
    }
    out.sort();
    let mut files: Vec<PathBuf> = out.into_iter().map(|(_, p)| p).collect();
    files.push(journal.to_path_buf());
    files
}

/// The claim time of a list claimed before claim records existed (its ctime, set by the
/// claim rename), in the journal's `ts` format so records compare as strings.
pub(crate) fn claim_ts(meta: &fs::Metadata) -> String {
    let nanos = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Read every complete line of the segments numbered `from_seq` and later, each from its
/// start, calling `visit` with the line's position; `tick` after about [`TICK_BYTES`]
/// (a `Break` ends the walk). A segment whose file is gone is reported, not an error.
pub(crate) fn walk(
    segments: &[Segment],
    from_seq: u64,
    tick: &mut dyn FnMut(u64) -> ControlFlow<()>,
    visit: &mut dyn FnMut(JournalPos, &[u8]),
) -> Result<Walked, SpoolError> {
    let mut w = Walked::default();
    let mut next_tick = TICK_BYTES;
    let mut buf = Vec::with_capacity(4096);
    for seg in segments.iter().filter(|s| s.seq >= from_seq) {
        let Some(path) = locate(seg) else {
            w.missing.push(seg.clone());
            continue;
        };
        let err = |cause| SpoolError::Journal {
            path: path.clone(),
            cause,
        };
        let mut f = File::open(&path).map_err(err)?;
        f.seek(SeekFrom::Start(seg.start)).map_err(err)?;
        w.files += 1;
        let mut r = BufReader::with_capacity(SCAN_BUFFER, f);
        let mut offset = seg.start;
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf).map_err(err)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break; // the end, or a torn (or still being written) last line
            }
            visit(
                JournalPos {
                    seq: seg.seq,
                    offset,
                },
                &buf,
            );
            offset += n as u64;
            w.bytes += n as u64;
            if w.bytes >= next_tick {
                next_tick += TICK_BYTES;
                if tick(w.bytes).is_break() {
                    w.stopped = true;
                    return Ok(w);
                }
            }
        }
    }
    Ok(w)
}

/// Recovery: for each list in `wanted`, the line numbers that have a record it takes. One
/// pass from the oldest claim on.
pub(crate) fn journaled_lines(
    segments: &[Segment],
    wanted: &HashMap<String, Want>,
    tick: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<(HashMap<String, LineSet>, Walked), SpoolError> {
    let mut out: HashMap<String, LineSet> = HashMap::new();
    let Some(from) = wanted.values().map(|w| w.from.seq).min() else {
        return Ok((out, Walked::default()));
    };
    let walked = walk(segments, from, tick, &mut |at, line| {
        let Ok(k) = serde_json::from_slice::<RecordKey>(line) else {
            return;
        };
        let (Some(src), Some(n)) = (k.src, k.line) else {
            return;
        };
        if wanted
            .get(src.as_ref())
            .is_some_and(|w| w.takes(at, k.ts.as_deref()))
        {
            out.entry(src.into_owned()).or_default().insert(n);
        }
    })?;
    Ok((out, walked))
}

/// Results: copy the records of list `src` that `want` takes into `out`, in journal order.
/// Returns how many.
pub(crate) fn records_of(
    segments: &[Segment],
    src: &str,
    want: &Want,
    tick: &mut dyn FnMut(u64) -> ControlFlow<()>,
    out: &mut dyn io::Write,
) -> Result<(u64, Walked), SpoolError> {
    let mut n = 0;
    let mut failed = None;
    let walked = walk(segments, want.from.seq, tick, &mut |at, line| {
        if failed.is_some() {
            return;
        }
        let Ok(k) = serde_json::from_slice::<RecordKey>(line) else {
            return;
        };
        if k.src.as_deref() == Some(src) && want.takes(at, k.ts.as_deref()) {
            match out.write_all(line) {
                Ok(()) => n += 1,
                Err(e) => failed = Some(e),
            }
        }
    })?;
    match failed {
        Some(cause) => Err(SpoolError::Write {
            path: PathBuf::from("results"),
            cause,
        }),
        None => Ok((n, walked)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(src: &str, line: u64, ts: &str) -> String {
        format!("{{\"url\":\"u\",\"title\":\"has \\\"src\\\":\\\"a\\\" inside\",\"ts\":\"{ts}\",\"src\":\"{src}\",\"line\":{line}}}\n")
    }

    fn segment(seq: u64, path: &Path, start: u64) -> Segment {
        let m = fs::metadata(path).unwrap();
        Segment {
            seq,
            dev: m.dev(),
            ino: m.ino(),
            start,
            path: path.to_string_lossy().into_owned(),
        }
    }

    fn none(_: u64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    const T: &str = "2026-11-23T07:00:00.000Z";

    /// Segment 1 is `a.jsonl` (rotated away to `a.jsonl.1` since), segment 2 `b.jsonl` (a
    /// SIGHUP changed the path), segment 3 `a.jsonl` again, from its length then.
    #[test]
    fn recovery_reads_every_segment_from_each_claim_on() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        let older = rec("l", 1, T) + &rec("l", 2, T); // an earlier list named l
        fs::write(&a, older.clone() + &rec("l", 3, T)).unwrap();
        let s1 = segment(1, &a, 0);
        fs::rename(&a, dir.path().join("a.jsonl.1")).unwrap();
        fs::write(&b, rec("l", 4, T) + &rec("m", 1, T) + "not json\n").unwrap();
        let s2 = segment(2, &b, 0);
        fs::write(&a, rec("l", 5, T) + &rec("m", 2, T) + &rec("l", 6, T)[..20]).unwrap();
        let s3 = segment(3, &a, 0);
        let segments = [s1, s2, s3];
        let wanted = HashMap::from([
            (
                "l".to_string(),
                Want {
                    from: JournalPos {
                        seq: 1,
                        offset: older.len() as u64,
                    },
                    not_before: None,
                },
            ),
            (
                "m".to_string(),
                Want {
                    from: JournalPos { seq: 3, offset: 0 },
                    not_before: None,
                },
            ),
        ]);
        let (got, walked) = journaled_lines(&segments, &wanted, &mut none).unwrap();
        assert_eq!(walked.files, 3);
        assert!(walked.missing.is_empty());
        let lines = |s: &str| (1..10).filter(|&i| got[s].contains(i)).collect::<Vec<_>>();
        // l: 1 and 2 are before its claim, 6 is torn; m: line 1 is before its claim.
        assert_eq!(lines("l"), [3, 4, 5]);
        assert_eq!(lines("m"), [2]);

        let mut out = Vec::new();
        let (n, _) = records_of(&segments, "l", &wanted["l"], &mut none, &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            rec("l", 3, T) + &rec("l", 4, T) + &rec("l", 5, T)
        );
    }

    #[test]
    fn a_gone_segment_is_reported_and_a_tick_can_stop_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        fs::write(&a, rec("l", 1, T)).unwrap();
        let s1 = segment(1, &a, 0);
        let mut body = String::new();
        while (body.len() as u64) < TICK_BYTES + 1000 {
            body.push_str(&rec("l", 2, T));
        }
        // A new file (a new inode: made while the old one lives) replaces it.
        let next = dir.path().join("next");
        fs::write(&next, &body).unwrap();
        fs::rename(&next, &a).unwrap();
        let s2 = segment(2, &a, 0);
        let want = Want {
            from: JournalPos { seq: 1, offset: 0 },
            not_before: None,
        };
        let wanted = HashMap::from([("l".to_string(), want)]);
        let mut ticks = 0;
        let (_, walked) = journaled_lines(&[s1.clone(), s2], &wanted, &mut |_| {
            ticks += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(walked.missing, vec![s1]);
        assert!(walked.stopped);
        assert_eq!(ticks, 1);
    }

    #[test]
    fn lists_from_before_claim_records_use_the_ctime_rule() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("journal.jsonl");
        let rotated = dir.path().join("journal.jsonl.1");
        let compressed = dir.path().join("journal.jsonl.2.gz");
        let other = dir.path().join("journalx");
        let t0 = "2026-11-22T07:00:00.000Z";
        fs::write(&rotated, rec("a", 1, T) + &rec("a", 2, t0)).unwrap();
        fs::write(&compressed, "binary").unwrap();
        fs::write(&other, rec("a", 9, T)).unwrap();
        fs::write(&j, rec("a", 3, T) + &rec("b", 1, T)).unwrap();
        let files = journal_candidates(&j, SystemTime::UNIX_EPOCH);
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[1], j, "the journal itself last");
        let segments: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, p)| segment(i as u64 + 1, p, 0))
            .collect();
        let want = Want {
            from: JournalPos { seq: 1, offset: 0 },
            not_before: Some("2026-11-23T00:00:00.000Z".to_string()),
        };
        let wanted = HashMap::from([("a".to_string(), want)]);
        let (got, _) = journaled_lines(&segments, &wanted, &mut none).unwrap();
        let a = &got["a"];
        assert!(a.contains(1) && a.contains(3) && !a.contains(2) && !a.contains(9));
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(journal_candidates(&j, later), vec![j.clone()]);
        let ts = claim_ts(&fs::metadata(&j).unwrap());
        let now = crate::record::now_rfc3339();
        assert_eq!(ts.len(), now.len());
        assert!(ts <= now, "{ts} <= {now}");
    }
}
