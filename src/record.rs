//! The journal record: one JSON object per input URL (see ARCHITECTURE.md, "Journal records").
//!
//! Field order and names are the user-visible contract; optional fields are omitted when
//! they do not apply (`src`/`line` only for spool input, `link` only with `--follow`,
//! `title_truncated` only when true, `tls_verified` only when verification was off).

use serde::Serialize;

use crate::error::ErrorKind;

/// `error` object of a failed record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordError {
    pub kind: ErrorKind,
    pub message: String,
    /// With `--follow`: which hop failed (1 = the listed page, 2 = the linked page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<u8>,
}

/// One journal line.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Record {
    /// The input line as given (trimmed; invalid UTF-8 replaced by U+FFFD).
    pub url: String,
    pub final_url: Option<String>,
    /// The server address of the last connection used (or tried) for this URL.
    pub ip: Option<std::net::IpAddr>,
    pub status: Option<u16>,
    /// The final response's `Content-Type` header, as sent.
    pub content_type: Option<String>,
    pub title: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub title_truncated: bool,
    /// With `--follow`: the absolute URL of the followed link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub error: Option<RecordError>,
    /// Attempts made (more than 1 after retries of transient failures; 0 when the URL was
    /// never tried: invalid, or its host failing).
    pub attempts: u32,
    pub redirects: u32,
    /// Bytes read from the network for this URL (all hops, headers included).
    pub bytes: u64,
    /// Wall time for this URL in milliseconds.
    pub ms: f64,
    /// RFC 3339 UTC timestamp of completion, millisecond precision.
    pub ts: String,
    /// `Some(false)` when TLS verification was disabled by `--insecure` for this URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verified: Option<bool>,
    /// Spool input only: the list file name and 1-based line number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl Record {
    /// Serialize as one JSON line (with the trailing `\n`) appended to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("records always serialize");
        out.push(b'\n');
    }
}

/// Current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T07:00:00.123Z`.
pub fn now_rfc3339() -> String {
    rfc3339_millis(time::OffsetDateTime::now_utc())
}

/// Length of a timestamp written by [`rfc3339_millis`] (years 0000-9999).
const TIMESTAMP_LEN: usize = 24;

/// `t` (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, in one allocation of the exact size: every
/// record carries one.
fn rfc3339_millis(t: time::OffsetDateTime) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(TIMESTAMP_LEN);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    s
}

#[cfg(test)]
mod timestamp_tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let t = time::macros::datetime!(2026-11-23 07:00:09.123456 UTC);
        assert_eq!(rfc3339_millis(t), "2026-11-23T07:00:09.123Z");
        let t = time::macros::datetime!(0999-01-02 03:04:05.000999 UTC);
        let s = rfc3339_millis(t);
        assert_eq!(s, "0999-01-02T03:04:05.000Z");
        assert_eq!((s.len(), s.capacity()), (TIMESTAMP_LEN, TIMESTAMP_LEN));
        let now = now_rfc3339();
        assert_eq!(now.len(), TIMESTAMP_LEN);
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
