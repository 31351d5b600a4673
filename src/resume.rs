//! `fetch -i LIST -o OUT --resume`: which lines of LIST already have a record in OUT, so a
//! run that was interrupted or killed continues where it stopped and ends with every line
//! recorded exactly once.
//!
//! A record is matched to its line by its `line` field (the 1-based line number in the `-i`
//! list, blank lines counted), which is exact even when the list holds the same URL twice;
//! records without one (URL arguments) match nothing. OUT is read once, before anything is
//! fetched: its torn last line (a run killed in the middle of a write) is cut off first,
//! as the journal's is, then each record's line number goes into a bitmap (one bit per
//! line). The line number is read from the end of the record (the last field, in both
//! formats), so the rest of a record is not parsed. To catch an OUT written for another
//! list, the first [`CHECK_SAMPLE`] records also keep a hash of their `url`, and the list's
//! line of that number must hash the same when it is read ([`Recorded::skip`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::intake::InputLine;
use crate::record::{csv_header, Format};

/// Records whose `url` is checked against the list's line of the same number.
pub(crate) const CHECK_SAMPLE: usize = 1024;
/// Highest line number `--resume` accepts (a bitmap up to this costs 512 MiB).
pub(crate) const MAX_LINE: u64 = 1 << 32;
/// Read buffer for OUT.
const READ_BUF_BYTES: usize = 256 * 1024;
/// The end of a JSON record with a `line` (its last field): `,"line":N}`.
const JSON_LINE_KEY: &[u8] = b",\"line\":";

/// Why OUT cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumeError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} holds CSV records (its first line is the CSV header): resume it with --format csv"
    )]
    IsCsv { path: PathBuf },
    #[error("{path} does not start with the CSV header, so it is not `fetch --format csv` output (JSON Lines output resumes without --format csv)")]
    NotCsv { path: PathBuf },
    #[error("{path} line {number}: not a ringcrawl {format} record")]
    NotRecord {
        path: PathBuf,
        number: u64,
        format: &'static str,
    },
    #[error("{path} line {number}: line number {line} is past the limit of {MAX_LINE}")]
    TooFar {
        path: PathBuf,
        number: u64,
        line: u64,
    },
}

/// The list's line does not match OUT's record for it.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the list is not the URL of the output's record for line {line}: the output was written for another list")]
pub(crate) struct Mismatch {
    pub line: u64,
}

/// The lines that already have a record.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    bits: Vec<u64>,
    /// Line number → hash of its record's `url`, for the first [`CHECK_SAMPLE`] records.
    sample: HashMap<u64, u64>,
    /// Records read that carry a line number.
    pub lines: u64,
    /// Records read without one (URL arguments).
    pub unnumbered: u64,
}

impl Recorded {
    /// Whether the list's `line` has a record (so it is skipped); [`Mismatch`] when its
    /// record is one of the sample and was for another URL.
    pub(crate) fn skip(&self, line: &InputLine) -> Result<bool, Mismatch> {
        let n = line.number;
        let word = self.bits.get((n / 64) as usize).copied().unwrap_or(0);
        if word & (1 << (n % 64)) == 0 {
            return Ok(false);
        }
        match self.sample.get(&n) {
            Some(&h) if h != url_hash(&line.text) => Err(Mismatch { line: n }),
            _ => Ok(true),
        }
    }

    fn insert(&mut self, line: u64) {
        let i = (line / 64) as usize;
        if i >= self.bits.len() {
            self.bits.resize(i + 1, 0);
        }
        let bit = 1 << (line % 64);
        if self.bits[i] & bit == 0 {
            self.bits[i] |= bit;
            self.lines += 1;
        }
    }
}

fn url_hash(url: &str) -> u64 {
    let mut h = DefaultHasher::new();
    url.hash(&mut h);
    h.finish()
}

/// Cut OUT's torn last line (if any) and read which lines it records. A missing OUT records
/// nothing (it is created when the run starts).
pub(crate) fn scan(path: &Path, format: Format) -> Result<Recorded, ResumeError> {
    let io_err = |source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recorded::default()),
        Err(e) => return Err(io_err(e)),
    };
    let cut = crate::journal::repair_torn_tail(&mut file).map_err(io_err)?;
    if cut > 0 {
        tracing::warn!(path = %path.display(), bytes = cut, "output had a torn last line; cut it off");
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    read_records(path, file, format)
}

fn read_records(path: &Path, file: File, format: Format) -> Result<Recorded, ResumeError> {
    let io_err = |source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::with_capacity(READ_BUF_BYTES, file);
    let mut rec = Recorded::default();
    let mut buf = Vec::new();
    let header = csv_header();
    let mut number = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            return Ok(rec);
        }
        number += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if number == 1 {
            let is_header = line == header.trim_end().as_bytes();
            match format {
                Format::Jsonl if is_header => {
                    return Err(ResumeError::IsCsv {
                        path: path.to_path_buf(),
                    })
                }
                Format::Csv if !is_header => {
                    return Err(ResumeError::NotCsv {
                        path: path.to_path_buf(),
                    })
                }
                Format::Csv => continue,
                Format::Jsonl => {}
            }
        }
        let bad = || ResumeError::NotRecord {
            path: path.to_path_buf(),
            number,
            format: format.name(),
        };
        let (url, line_no) = match format {
            Format::Jsonl => json_record(line, rec.sample.len() < CHECK_SAMPLE).ok_or_else(bad)?,
            Format::Csv => csv_record(line, rec.sample.len() < CHECK_SAMPLE).ok_or_else(bad)?,
        };
        let Some(line_no) = line_no else {
            rec.unnumbered += 1;
            continue;
        };
        if line_no > MAX_LINE {
            return Err(ResumeError::TooFar {
                path: path.to_path_buf(),
                number,
                line: line_no,
            });
        }
        rec.insert(line_no);
        if let Some(url) = url {
            rec.sample.entry(line_no).or_insert_with(|| url_hash(&url));
        }
    }
}

/// A JSON record's `url` (when `want_url`) and `line`; `None` when it is not a record.
/// The line number is its last field, read from the end; a record without one, or whose
/// url is wanted, is parsed whole.
fn json_record(rec: &[u8], want_url: bool) -> Option<(Option<String>, Option<u64>)> {
    if !want_url {
        if let Some(n) = trailing_number(rec, JSON_LINE_KEY, b"}") {
            return Some((None, Some(n)));
        }
    }
    #[derive(serde::Deserialize)]
    struct Key {
        url: String,
        line: Option<u64>,
    }
    let k: Key = serde_json::from_slice(rec).ok()?;
    Some((want_url.then_some(k.url), k.line))
}

/// The number between `before` and `after` at the end of `rec` (`,"line":` and `}`).
fn trailing_number(rec: &[u8], before: &[u8], after: &[u8]) -> Option<u64> {
    let body = rec.strip_suffix(after)?;
    let digits = body.len() - body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, num) = body.split_at(digits);
    if num.is_empty() || !head.ends_with(before) {
        return None;
    }
    std::str::from_utf8(num).ok()?.parse().ok()
}

/// A CSV row's `url` (its first cell, when `want_url`) and `line` (its last cell: digits,
/// or empty for a URL argument); `None` when it is not a row of ringcrawl's CSV.
fn csv_record(row: &[u8], want_url: bool) -> Option<(Option<String>, Option<u64>)> {
    let last = row.iter().rposition(|&b| b == b',')?;
    let cell = &row[last + 1..];
    let line = if cell.is_empty() {
        None
    } else if cell.iter().all(u8::is_ascii_digit) {
        Some(std::str::from_utf8(cell).ok()?.parse().ok()?)
    } else {
        return None;
    };
    let url = if want_url {
        Some(first_csv_cell(std::str::from_utf8(row).ok()?)?)
    } else {
        None
    };
    Some((url, line))
}

/// The first cell of an RFC 4180 row, unquoted.
fn first_csv_cell(row: &str) -> Option<String> {
    let Some(quoted) = row.strip_prefix('"') else {
        return Some(row.split(',').next().unwrap_or("").to_string());
    };
    let mut cell = String::new();
    let mut rest = quoted;
    loop {
        let end = rest.find('"')?;
        cell.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(after) => {
                cell.push('"');
                rest = after;
            }
            None => return (rest.is_empty() || rest.starts_with(',')).then_some(cell),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::record::{Record, RecordError};

    fn record(url: &str, line: Option<u64>, title: &str) -> Record {
        Record {
            url: url.into(),
            title: Some(title.into()),
            line,
            ts: "2026-12-01T00:03:28.237Z".into(),
            ..Record::default()
        }
    }

    fn input(text: &str, number: u64) -> InputLine {
        InputLine::from_raw(text.as_bytes(), number, None).expect("not blank")
    }

    /// Records as both formats write them, read back: the same lines, whatever the titles
    /// hold, with records past the sample read from their end only.
    #[test]
    fn both_formats_give_the_recorded_lines() {
        let mut records = vec![
            record("http://a.example/,x", Some(3), "t,\"line\":9}"),
            record("\"quoted\" url", Some(1), "a \"b\", c"),
            record("http://arg.example/", None, "an argument"),
            Record {
                error: Some(RecordError {
                    kind: ErrorKind::InvalidUrl,
                    message: "x,\"line\":7}".into(),
                    hop: None,
                }),
                ..record("bad url", Some(64), "")
            },
        ];
        records.extend(
            (100..100 + CHECK_SAMPLE as u64 + 10).map(|n| record("http://n/", Some(n), "n")),
        );
        for format in [Format::Jsonl, Format::Csv] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("out");
            let mut data = match format {
                Format::Csv => csv_header().into_bytes(),
                Format::Jsonl => Vec::new(),
            };
            for r in &records {
                format.encoder()(r, &mut data);
            }
            data.extend_from_slice(b"{\"url\":\"torn"); // a write cut short
            std::fs::write(&p, &data).unwrap();
            let rec = scan(&p, format).unwrap();
            assert_eq!(rec.lines, records.len() as u64 - 1, "{format:?}");
            assert_eq!(rec.unnumbered, 1);
            for (n, want) in [
                (1, true),
                (2, false),
                (3, true),
                (64, true),
                (65, false),
                (100, true),
            ] {
                let url = records
                    .iter()
                    .find(|r| r.line == Some(n))
                    .map_or("x", |r| &r.url);
                assert_eq!(
                    rec.skip(&input(url, n)).unwrap(),
                    want,
                    "{format:?} line {n}"
                );
            }
            assert!(rec.skip(&input("http://other/", 3)).is_err(), "{format:?}");
            assert!(rec.skip(&input("\"quoted\" url", 1)).unwrap());
            assert_eq!(
                std::fs::read(&p).unwrap(),
                data[..data.len() - 12],
                "torn line cut"
            );
        }
    }

    #[test]
    fn the_wrong_format_or_garbage_is_refused_and_no_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        assert_eq!(scan(&p, Format::Jsonl).unwrap().lines, 0);
        assert!(!p.exists());
        std::fs::write(&p, csv_header()).unwrap();
        assert!(matches!(
            scan(&p, Format::Jsonl),
            Err(ResumeError::IsCsv { .. })
        ));
        assert_eq!(scan(&p, Format::Csv).unwrap().lines, 0);
        std::fs::write(&p, "{\"url\":\"a\",\"line\":1}\n").unwrap();
        assert!(matches!(
            scan(&p, Format::Csv),
            Err(ResumeError::NotCsv { .. })
        ));
        std::fs::write(&p, "{\"url\":\"a\",\"line\":1}\nnot json\n").unwrap();
        let e = scan(&p, Format::Jsonl).unwrap_err().to_string();
        assert!(
            e.ends_with("out line 2: not a ringcrawl jsonl record"),
            "{e}"
        );
        std::fs::write(&p, format!("{{\"url\":\"a\",\"line\":{}}}\n", MAX_LINE + 1)).unwrap();
        assert!(matches!(
            scan(&p, Format::Jsonl),
            Err(ResumeError::TooFar { .. })
        ));
    }

    #[test]
    fn csv_first_cells_unquote_like_a_csv_parser() {
        for cell in ["plain", "a,b", "say \"hi\"", "", "\"", "x\ry"] {
            let mut row = Vec::new();
            row.extend_from_slice(csv_header().as_bytes());
            let r = record(cell, Some(1), "t");
            r.write_csv_row(&mut row);
            let parsed: Vec<csv::StringRecord> = csv::Reader::from_reader(&row[..])
                .records()
                .map(Result::unwrap)
                .collect();
            let line = std::str::from_utf8(&row[csv_header().len()..]).unwrap();
            assert_eq!(
                first_csv_cell(line.trim_end()).as_deref(),
                Some(&parsed[0][0]),
                "{cell:?}"
            );
        }
        assert_eq!(first_csv_cell("\"unterminated"), None);
        assert_eq!(first_csv_cell("\"a\"b,c"), None);
    }
}
