//! The journal record: one JSON object per input URL (see ARCHITECTURE.md, "Journal records").
//!
//! Field order and names are the user-visible contract; optional fields are omitted when
//! they do not apply (`src` only for spool input, `line` only for list input, `link` only
//! with `--follow`, `chain` only with `--chain`, `title_truncated` only when true,
//! `tls_verified` only when verification was off).

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

/// One response of a record's `chain`: a redirect (or, with `--follow`, hop 1's page).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainHop {
    /// The URL requested.
    pub url: String,
    pub status: u16,
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
    /// With `--chain`: every response before the one described, in order (see
    /// [`ChainHop`]); `None` (absent) without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<ChainHop>>,
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
    ///
    /// Written by hand, field by field, rather than through serde: this runs once per URL and
    /// serde_json's generic string escaping was the largest single cost of a keep-alive crawl.
    /// The bytes are exactly what `serde_json::to_writer(out, self)` gives (the `Serialize`
    /// derive stays the reference; `json_line_matches_serde` checks it).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.reserve(160 + self.url.len() + self.title.as_ref().map_or(0, String::len));
        out.extend_from_slice(b"{\"url\":");
        json_str(out, &self.url);
        out.extend_from_slice(b",\"final_url\":");
        json_opt_str(out, self.final_url.as_deref());
        out.extend_from_slice(b",\"ip\":");
        match self.ip {
            None => out.extend_from_slice(b"null"),
            Some(ip) => {
                out.push(b'"');
                json_ip(out, ip);
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\"status\":");
        json_opt_u64(out, self.status.map(u64::from));
        out.extend_from_slice(b",\"content_type\":");
        json_opt_str(out, self.content_type.as_deref());
        out.extend_from_slice(b",\"title\":");
        json_opt_str(out, self.title.as_deref());
        if self.title_truncated {
            out.extend_from_slice(b",\"title_truncated\":true");
        }
        if let Some(link) = &self.link {
            out.extend_from_slice(b",\"link\":");
            json_str(out, link);
        }
        out.extend_from_slice(b",\"error\":");
        match &self.error {
            None => out.extend_from_slice(b"null"),
            Some(e) => {
                out.extend_from_slice(b"{\"kind\":");
                json_str(out, e.kind.as_str());
                out.extend_from_slice(b",\"message\":");
                json_str(out, &e.message);
                if let Some(hop) = e.hop {
                    out.extend_from_slice(b",\"hop\":");
                    json_u64(out, hop.into());
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"attempts\":");
        json_u64(out, self.attempts.into());
        out.extend_from_slice(b",\"redirects\":");
        json_u64(out, self.redirects.into());
        if let Some(chain) = &self.chain {
            out.extend_from_slice(b",\"chain\":[");
            for (i, hop) in chain.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"url\":");
                json_str(out, &hop.url);
                out.extend_from_slice(b",\"status\":");
                json_u64(out, hop.status.into());
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"bytes\":");
        json_u64(out, self.bytes);
        out.extend_from_slice(b",\"ms\":");
        // serde_json's own float formatting (and `null` for NaN and infinities).
        serde::Serializer::serialize_f64(&mut serde_json::Serializer::new(&mut *out), self.ms)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"ts\":");
        json_str(out, &self.ts);
        if let Some(v) = self.tls_verified {
            out.extend_from_slice(b",\"tls_verified\":");
            out.extend_from_slice(if v { b"true" } else { b"false" });
        }
        if let Some(src) = &self.src {
            out.extend_from_slice(b",\"src\":");
            json_str(out, src);
        }
        if let Some(line) = self.line {
            out.extend_from_slice(b",\"line\":");
            json_u64(out, line);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `s` as a JSON string, escaped as serde_json escapes: `"` and `\` with a backslash,
/// U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`, the other control
/// characters below U+0020 as `\u00XX` (lowercase hex), everything else (DEL, non-ASCII)
/// as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping (most text).
        match bytes.get(i..i + 8) {
            Some(word) => {
                if !needs_escape(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
                    i += 8;
                    continue;
                }
            }
            None => {
                // The last few bytes, padded with ones that need no escape.
                let mut word = [b'a'; 8];
                word[..bytes.len() - i].copy_from_slice(&bytes[i..]);
                if !needs_escape(u64::from_le_bytes(word)) {
                    break;
                }
            }
        }
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                continue;
            }
        };
        out.push(b'\\');
        out.push(short);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `w` is below 0x20, `"` or `\` (exact, no false
/// positives or negatives: the classic "has a byte less than n" and "has a zero byte" tests).
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) != 0
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn json_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => json_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// An address as its `Display` text (what serde writes for it), IPv4 without `fmt`.
fn json_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T07:00:00.123Z`.
///
/// Every record carries one, so this avoids `fmt`: the text up to the seconds is kept per
/// thread and made again only when the second changes; the milliseconds are patched in.
pub fn now_rfc3339() -> String {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) if d.as_secs() < MAX_UNIX_SECS => unix_rfc3339(d.as_secs(), d.subsec_millis()),
        _ => rfc3339_millis(time::OffsetDateTime::now_utc()),
    }
}

/// 10000-01-01T00:00:00Z: [`unix_rfc3339`] writes four-digit years only.
const MAX_UNIX_SECS: u64 = 253_402_300_800;

/// `secs.millis` after the Unix epoch (before [`MAX_UNIX_SECS`]) as [`rfc3339_millis`] writes
/// it, with the per-thread cache of the current second's text.
fn unix_rfc3339(secs: u64, millis: u32) -> String {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(u64, [u8; TIMESTAMP_LEN])> =
            const { Cell::new((u64::MAX, [0; TIMESTAMP_LEN])) };
    }
    let mut text = SECOND.with(|c| {
        let (cached, text) = c.get();
        if cached == secs {
            return text;
        }
        let text = second_text(secs);
        c.set((secs, text));
        text
    });
    let ms = millis.min(999);
    text[20] = b'0' + (ms / 100) as u8;
    text[21] = b'0' + (ms / 10 % 10) as u8;
    text[22] = b'0' + (ms % 10) as u8;
    std::str::from_utf8(&text).expect("ASCII").to_owned()
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` for `secs` after the Unix epoch (below [`MAX_UNIX_SECS`]):
/// made once a second per thread, so the `time` crate's calendar and `fmt` are cheap here.
fn second_text(secs: u64) -> [u8; TIMESTAMP_LEN] {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).expect("below MAX_UNIX_SECS");
    let text = rfc3339_millis(t);
    text.as_bytes().try_into().expect("a four-digit year")
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
mod json_tests {
    use super::*;

    fn serde_line(r: &Record) -> Vec<u8> {
        let mut v = serde_json::to_vec(r).unwrap();
        v.push(b'\n');
        v
    }

    fn check(r: &Record) {
        let mut out = b"prefix".to_vec();
        r.write_line(&mut out);
        let want = serde_line(r);
        assert_eq!(
            String::from_utf8_lossy(&out[6..]),
            String::from_utf8_lossy(&want),
            "{r:?}"
        );
        assert_eq!(&out[..6], b"prefix");
    }

    /// The eight-byte test is exact: every byte value at every position, among bytes that
    /// need no escape and among ones that do.
    #[test]
    fn needs_escape_is_exact() {
        let naive = |w: [u8; 8]| w.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for fill in [b'a', 0xff, 0x80, b' ', 0x21, 0x5d, 0x1f, b'"'] {
            for at in 0..8 {
                for b in 0..=255u8 {
                    let mut w = [fill; 8];
                    w[at] = b;
                    assert_eq!(needs_escape(u64::from_le_bytes(w)), naive(w), "{w:?}");
                }
            }
        }
    }

    /// Every character below U+0080, a few beyond, and random mixes: the same bytes as the
    /// serde derive, on records with every optional field present and absent.
    #[test]
    fn json_line_matches_serde() {
        let mut all = String::new();
        for c in (0u32..0x80).chain([0xa0, 0xe9, 0x2028, 0x2029, 0xfeff, 0xfffd, 0x1f600]) {
            all.push(char::from_u32(c).unwrap());
        }
        let full = |text: &str| Record {
            url: text.into(),
            final_url: Some(format!("{text}/final")),
            ip: Some("2001:db8::1".parse().unwrap()),
            status: Some(200),
            content_type: Some(text.into()),
            title: Some(text.into()),
            title_truncated: true,
            link: Some(text.into()),
            error: Some(RecordError {
                kind: ErrorKind::InvalidUrl,
                message: text.into(),
                hop: Some(2),
            }),
            attempts: u32::MAX,
            redirects: 3,
            chain: Some(vec![
                ChainHop {
                    url: text.into(),
                    status: 301,
                },
                ChainHop {
                    url: "http://b/".into(),
                    status: 302,
                },
            ]),
            bytes: u64::MAX,
            ms: 1.694,
            ts: "2026-12-01T00:03:28.237Z".into(),
            tls_verified: Some(false),
            src: Some(text.into()),
            line: Some(7),
        };
        check(&Record::default());
        check(&full(""));
        check(&full(&all));
        for c in all.chars() {
            check(&full(&format!("a{c}b{c}")));
        }
        let mut rng = fastrand::Rng::with_seed(17);
        let pool: Vec<char> = all.chars().collect();
        for i in 0..500 {
            let len = rng.usize(0..40);
            let text: String = (0..len).map(|_| pool[rng.usize(..pool.len())]).collect();
            let mut r = full(&text);
            r.ip = Some(std::net::IpAddr::from(rng.u32(..).to_be_bytes()));
            r.ms = f64::from(rng.u32(..)) / 1000.0;
            if i % 2 == 0 {
                r.title_truncated = false;
                r.link = None;
                r.chain = if i % 4 == 0 { None } else { Some(vec![]) };
                r.tls_verified = Some(true).filter(|_| i % 3 == 0);
                r.src = None;
                r.line = None;
                r.status = None;
                r.ip = None;
            }
            check(&r);
        }
        for kind in ErrorKind::ALL {
            for hop in [None, Some(1)] {
                check(&Record {
                    error: Some(RecordError {
                        kind,
                        message: "m".into(),
                        hop,
                    }),
                    ..Record::default()
                });
            }
        }
        // Escapes at every position of a long string (the eight-byte scan and its tail).
        for len in 0..40 {
            for at in 0..len {
                for c in ['"', '\\', '\n', '\u{1f}', '\u{0}', '\u{7f}', 'é'] {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].into();
                    text.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                    check(&Record {
                        title: Some(text),
                        ..Record::default()
                    });
                }
            }
        }
        for ms in [
            0.0,
            -0.0,
            1e-7,
            123456789.125,
            f64::NAN,
            f64::INFINITY,
            1e300,
        ] {
            check(&Record {
                ms,
                ..Record::default()
            });
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.12.1",
            "::",
            "::ffff:1.2.3.4",
            "fe80::1",
        ] {
            check(&Record {
                ip: Some(ip.parse().unwrap()),
                ..Record::default()
            });
        }
    }
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
        assert!(now.as_str() >= "2026", "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}

#[cfg(test)]
mod unix_timestamp_tests {
    use super::*;

    fn reference(secs: u64, millis: u32) -> String {
        let nanos = i128::from(secs) * 1_000_000_000 + i128::from(millis) * 1_000_000 + 999_999;
        rfc3339_millis(time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap())
    }

    /// The cached, fmt-free text is what the `time`-based one gives: boundaries, leap days,
    /// random instants, and the same second with other milliseconds (the cache hit).
    #[test]
    fn unix_timestamps_match_the_time_crate() {
        let day = 86_400;
        let mut secs = vec![0, 59, 60, 3599, 3600, day - 1, day, MAX_UNIX_SECS - 1];
        for (y, m, d) in [
            (1972, 2, 29),
            (2000, 2, 29),
            (2000, 3, 1),
            (2100, 2, 28),
            (2100, 3, 1),
        ] {
            let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d);
            let t = date.unwrap().midnight().assume_utc().unix_timestamp() as u64;
            secs.extend([t - 1, t, t + day - 1]);
        }
        let mut rng = fastrand::Rng::with_seed(3339);
        secs.extend((0..20_000).map(|_| rng.u64(..MAX_UNIX_SECS)));
        for s in secs {
            for ms in [0, 7, 999, rng.u32(..1000)] {
                let got = unix_rfc3339(s, ms);
                assert_eq!(got, reference(s, ms), "{s}.{ms}");
                assert_eq!((got.len(), got.capacity()), (TIMESTAMP_LEN, TIMESTAMP_LEN));
            }
        }
    }
}

/// The format of `fetch`'s records (`--format`); the daemon's journal is always JSON Lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line ([`Record::write_line`]).
    #[default]
    Jsonl,
    /// A header row ([`csv_header`]), then one row per record ([`Record::write_csv_row`]).
    Csv,
}

impl Format {
    /// Its `--format` value.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// How a record is written in this format (chosen once, for the journal writer).
    pub fn encoder(self) -> fn(&Record, &mut Vec<u8>) {
        match self {
            Format::Jsonl => Record::write_line,
            Format::Csv => Record::write_csv_row,
        }
    }

    /// What a new output starts with: the CSV header row.
    pub fn header(self) -> Option<String> {
        match self {
            Format::Jsonl => None,
            Format::Csv => Some(csv_header()),
        }
    }
}

/// The columns of `fetch --format csv`, in order: the JSON fields, with `error` flattened
/// into `error_kind`, `error_message` and `error_hop`.
pub const CSV_COLUMNS: [&str; 20] = [
    "url",
    "final_url",
    "ip",
    "status",
    "content_type",
    "title",
    "title_truncated",
    "link",
    "error_kind",
    "error_message",
    "error_hop",
    "attempts",
    "redirects",
    "chain",
    "bytes",
    "ms",
    "ts",
    "tls_verified",
    "src",
    "line",
];

/// The CSV header row ([`CSV_COLUMNS`]) with its line end.
pub fn csv_header() -> String {
    let mut h = CSV_COLUMNS.join(",");
    h.push('\n');
    h
}

impl Record {
    /// Serialize as one CSV row (with the trailing `\n`) appended to `out`: the columns of
    /// [`CSV_COLUMNS`], an empty cell where the JSON field is null or absent, `chain` as
    /// `STATUS URL` pairs separated by spaces, fields quoted as RFC 4180 says (when they
    /// hold a comma, a double quote, CR or LF; quotes doubled).
    pub fn write_csv_row(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        fn text(out: &mut Vec<u8>, s: Option<&str>) {
            if let Some(s) = s {
                csv_field(out, s);
            }
            out.push(b',');
        }
        fn shown(out: &mut Vec<u8>, v: Option<impl std::fmt::Display>) {
            if let Some(v) = v {
                let _ = write!(out, "{v}");
            }
            out.push(b',');
        }
        let error = self.error.as_ref();
        text(out, Some(&self.url));
        text(out, self.final_url.as_deref());
        shown(out, self.ip);
        shown(out, self.status);
        text(out, self.content_type.as_deref());
        text(out, self.title.as_deref());
        shown(out, self.title_truncated.then_some(true));
        text(out, self.link.as_deref());
        text(out, error.map(|e| e.kind.as_str()));
        text(out, error.map(|e| e.message.as_str()));
        shown(out, error.and_then(|e| e.hop));
        shown(out, Some(self.attempts));
        shown(out, Some(self.redirects));
        match self.chain.as_deref() {
            None | Some([]) => out.push(b','),
            Some(chain) => text(out, Some(&chain_cell(chain))),
        }
        shown(out, Some(self.bytes));
        shown(out, Some(self.ms));
        text(out, Some(&self.ts));
        shown(out, self.tls_verified);
        text(out, self.src.as_deref());
        if let Some(line) = self.line {
            let _ = write!(out, "{line}");
        }
        out.push(b'\n');
    }
}

/// A chain as one CSV cell: `STATUS URL` pairs separated by spaces (URLs hold no spaces).
fn chain_cell(chain: &[ChainHop]) -> String {
    use std::fmt::Write;
    let mut cell = String::new();
    for hop in chain {
        let sep = if cell.is_empty() { "" } else { " " };
        let _ = write!(cell, "{sep}{} {}", hop.status, hop.url);
    }
    cell
}

/// One CSV field, quoted when RFC 4180 requires it.
fn csv_field(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_rows(data: &[u8]) -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(data)
            .records()
            .map(Result::unwrap)
            .collect()
    }

    /// Every CSV cell, read back by a real CSV parser, is the JSON value (null and absent
    /// as empty cells, `error` flattened), whatever characters the text fields hold.
    #[test]
    fn csv_rows_read_back_as_the_json_values() {
        let full = Record {
            url: "http://a.example/x?q=1,2".into(),
            final_url: Some("https://a.example/y".into()),
            ip: Some("2001:db8::1".parse().unwrap()),
            status: Some(200),
            content_type: Some("text/html; charset=\"utf-8\"".into()),
            title: Some("A \"quoted\", comma'd\rtitle — ünïcode ".into()),
            title_truncated: true,
            link: Some("http://b.example/".into()),
            error: None,
            attempts: 2,
            redirects: 2,
            chain: Some(vec![
                ChainHop {
                    url: "http://a.example/x?q=1,2".into(),
                    status: 301,
                },
                ChainHop {
                    url: "https://a.example/z".into(),
                    status: 302,
                },
            ]),
            bytes: 1234,
            ms: 1.694,
            ts: "2026-12-01T00:03:28.237Z".into(),
            tls_verified: Some(false),
            src: Some("list,1.txt".into()),
            line: Some(7),
        };
        let failed = Record {
            url: "not a url".into(),
            error: Some(RecordError {
                kind: ErrorKind::InvalidUrl,
                message: "invalid URL: \"x\", y".into(),
                hop: Some(2),
            }),
            chain: Some(vec![]),
            ts: "2026-12-01T00:03:28.237Z".into(),
            ..Record::default()
        };
        let empty_title = Record {
            title: Some(String::new()),
            ..Record::default()
        };
        let mut data = csv_header().into_bytes();
        for r in [&full, &failed, &empty_title] {
            r.write_csv_row(&mut data);
        }
        assert_eq!(
            data.iter().filter(|&&b| b == b'\n').count(),
            4,
            "one physical line per row"
        );
        let rows = csv_rows(&data);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].iter().collect::<Vec<_>>(), CSV_COLUMNS);
        for row in &rows {
            assert_eq!(row.len(), CSV_COLUMNS.len());
        }
        let cells = |i: usize| -> std::collections::HashMap<&str, String> {
            CSV_COLUMNS
                .iter()
                .copied()
                .zip(rows[i].iter().map(str::to_owned))
                .collect()
        };
        // The full record: each cell is the JSON value as text.
        let json = serde_json::to_value(&full).unwrap();
        let c = cells(1);
        for (k, v) in json.as_object().unwrap() {
            if k == "error" {
                continue; // null here; flattened below
            }
            let want = match (k.as_str(), v) {
                ("chain", _) => "301 http://a.example/x?q=1,2 302 https://a.example/z".into(),
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, v) => v.to_string(),
            };
            assert_eq!(c[k.as_str()], want, "{k}");
        }
        assert_eq!(c["error_kind"], "");
        // The failure: error flattened, nulls empty, an empty chain empty.
        let c = cells(2);
        assert_eq!(c["error_kind"], "invalid_url");
        assert_eq!(c["error_message"], "invalid URL: \"x\", y");
        assert_eq!(c["error_hop"], "2");
        for k in ["final_url", "ip", "status", "title", "chain", "line", "src"] {
            assert_eq!(c[k], "", "{k}");
        }
        assert_eq!(c["ms"].parse::<f64>().unwrap(), 0.0);
        assert_eq!(cells(3)["title"], "");
    }

    #[test]
    fn csv_quoting_follows_rfc_4180() {
        let mut out = Vec::new();
        for s in ["plain", "a,b", "say \"hi\"", "cr\rlf\n", ""] {
            csv_field(&mut out, s);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"cr\rlf\n\"||"
        );
    }
}
