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
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).expect("formatting a UTC time cannot fail")
}
