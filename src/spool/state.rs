//! The daemon's own records in `cur/`, which make recovery independent of clocks and of
//! journal path changes:
//!
//! - a **claim record** `cur/.NAME.claim` per list: the journal position ([`JournalPos`])
//!   when the list was claimed, written (atomically, fsync'd) before the claim rename. Every
//!   record of the list comes after it, so recovery reads from there: a record before it
//!   belongs to an earlier list of the same name, whatever any timestamp says.
//! - the **journal history** `cur/.journals`: one [`Segment`] per journal file the writer
//!   opened (at start and at every reopen, SIGHUP with a new path included), each with its
//!   number, device and inode, path, and the length it had when writing began. Segments are
//!   added before the writer writes to the file and dropped once no claimed list is older.
//!   Recovery reads every segment from a list's claim on, finding a renamed (rotated) file
//!   by its inode.
//!
//! Both are JSON, written to a temporary name, fsync'd, renamed into place, and the
//! directory fsync'd.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::journal::{JournalPos, Opened};

/// The journal history file, in `cur/`.
pub(crate) const HISTORY_FILE: &str = ".journals";
/// Mode of the daemon's state files.
const STATE_FILE_MODE: u32 = 0o600;

/// Where a list's records start in the journal (`cur/.NAME.claim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ClaimRecord {
    pub journal: JournalPos,
}

/// The claim record's path for list `name` in `cur`.
pub(crate) fn claim_path(cur: &Path, name: &str) -> PathBuf {
    cur.join(format!(".{name}.claim"))
}

/// The list name a claim record's file name is for (`.NAME.claim` -> `NAME`).
pub(crate) fn claim_of(file_name: &str) -> Option<&str> {
    file_name.strip_prefix('.')?.strip_suffix(".claim")
}

/// Write the claim record of `name` (durably) before the list is renamed into `cur`.
pub(crate) fn write_claim(cur: &Path, name: &str, rec: &ClaimRecord) -> io::Result<()> {
    let text = serde_json::to_string(rec).map_err(io::Error::other)? + "\n";
    write_atomic(&claim_path(cur, name), text.as_bytes())
}

/// The claim record of `name`; `None` when it has none (claimed by an older version).
pub(crate) fn read_claim(cur: &Path, name: &str) -> io::Result<Option<ClaimRecord>> {
    match fs::read(claim_path(cur, name)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `bytes` into `path` atomically and durably: a temporary file next to it, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_file_name(format!(
        "{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(STATE_FILE_MODE)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// One journal file as the writer began writing to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Segment {
    pub seq: u64,
    pub dev: u64,
    pub ino: u64,
    /// Its length when the writer began: the segment's records start here.
    pub start: u64,
    /// Where it was (a rotated file is found next to it by device and inode).
    pub path: String,
}

impl Segment {
    /// Where the segment starts.
    pub fn begin(&self) -> JournalPos {
        JournalPos {
            seq: self.seq,
            offset: self.start,
        }
    }
}

/// The journal history (`cur/.journals`), oldest segment first.
#[derive(Debug)]
pub(crate) struct History {
    file: PathBuf,
    segments: Vec<Segment>,
}

impl History {
    /// Read the history file (missing: an empty history).
    pub fn load(file: PathBuf) -> io::Result<History> {
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let segments = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            })
            .collect::<io::Result<Vec<Segment>>>()?;
        Ok(History { file, segments })
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment's start (where a list claimed before the history existed may
    /// have records).
    pub fn first(&self) -> JournalPos {
        self.segments
            .first()
            .map(Segment::begin)
            .unwrap_or_default()
    }

    /// Whether a segment is the file `dev`/`ino` (a list must never be a journal).
    pub fn holds(&self, dev: u64, ino: u64) -> bool {
        self.segments.iter().any(|s| s.dev == dev && s.ino == ino)
    }

    /// Add whole files written before there was a history (lists claimed by an older
    /// version are looked for in them), oldest first.
    pub fn seed(&mut self, files: &[PathBuf]) -> io::Result<()> {
        for p in files {
            let Ok(m) = fs::metadata(p) else {
                continue;
            };
            let seq = self.next_seq();
            self.segments.push(Segment {
                seq,
                dev: m.dev(),
                ino: m.ino(),
                start: 0,
                path: p.to_string_lossy().into_owned(),
            });
        }
        self.save()
    }

    /// The writer opened a journal file: add it as the newest segment (durably) and
    /// return its number.
    pub fn begin(&mut self, o: &Opened<'_>) -> io::Result<u64> {
        let seq = self.next_seq();
        self.segments.push(Segment {
            seq,
            dev: o.dev,
            ino: o.ino,
            start: o.start,
            path: o.path.to_string_lossy().into_owned(),
        });
        if let Err(e) = self.save() {
            self.segments.pop();
            return Err(e);
        }
        Ok(seq)
    }

    /// Drop the segments older than `oldest` (the oldest claim's segment); `None` (no list
    /// claimed) keeps only the newest segment.
    pub fn prune(&mut self, oldest: Option<u64>) -> io::Result<()> {
        let last = self.segments.last().map_or(0, |s| s.seq);
        let keep_from = oldest.unwrap_or(last).min(last);
        let before = self.segments.len();
        self.segments.retain(|s| s.seq >= keep_from);
        if self.segments.len() == before {
            return Ok(());
        }
        self.save()
    }

    fn next_seq(&self) -> u64 {
        self.segments.last().map_or(1, |s| s.seq + 1)
    }

    fn save(&self) -> io::Result<()> {
        let mut text = String::new();
        for s in &self.segments {
            text.push_str(&serde_json::to_string(s).map_err(io::Error::other)?);
            text.push('\n');
        }
        write_atomic(&self.file, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(path: &Path, ino: u64, start: u64) -> Opened<'_> {
        Opened {
            path,
            dev: 1,
            ino,
            start,
        }
    }

    #[test]
    fn history_numbers_segments_persists_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(HISTORY_FILE);
        let mut h = History::load(file.clone()).unwrap();
        assert!(h.is_empty());
        let j = dir.path().join("j.jsonl");
        assert_eq!(h.begin(&opened(&j, 10, 0)).unwrap(), 1);
        assert_eq!(h.begin(&opened(&j, 11, 0)).unwrap(), 2);
        assert_eq!(h.begin(&opened(&j, 10, 500)).unwrap(), 3);
        let again = History::load(file.clone()).unwrap();
        assert_eq!(again.segments(), h.segments());
        assert!(h.holds(1, 11) && !h.holds(2, 11));
        assert_eq!(h.first(), JournalPos { seq: 1, offset: 0 });
        h.prune(Some(2)).unwrap();
        assert_eq!(
            h.segments().iter().map(|s| s.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        h.prune(None).unwrap();
        let again = History::load(file).unwrap();
        assert_eq!(again.segments().len(), 1);
        assert_eq!(
            again.segments()[0].begin(),
            JournalPos {
                seq: 3,
                offset: 500
            }
        );
        // Numbers keep growing after a prune.
        let mut again = again;
        assert_eq!(again.begin(&opened(&j, 12, 0)).unwrap(), 4);
    }

    #[test]
    fn claim_records_round_trip_and_name_their_list() {
        let dir = tempfile::tempdir().unwrap();
        let rec = ClaimRecord {
            journal: JournalPos { seq: 4, offset: 77 },
        };
        write_claim(dir.path(), "urls.txt", &rec).unwrap();
        assert_eq!(read_claim(dir.path(), "urls.txt").unwrap(), Some(rec));
        assert_eq!(read_claim(dir.path(), "other").unwrap(), None);
        let name = claim_path(dir.path(), "urls.txt");
        let file = name.file_name().unwrap().to_str().unwrap();
        assert_eq!(claim_of(file), Some("urls.txt"));
        assert_eq!(claim_of("urls.txt"), None);
        let mode = fs::metadata(&name).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            STATE_FILE_MODE
        );
    }
}
