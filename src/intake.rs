//! Reading URL lists as streams and turning lines into fetchable URLs.
//!
//! [`LineReader`] yields one [`InputLine`] per non-blank line of any `BufRead` without ever
//! holding more than [`MAX_KEPT_LINE_BYTES`] of a line: a 1 GB line costs no more than a
//! short one. Lines are trimmed (CRLF included), non-UTF-8 bytes are replaced (and make the
//! line invalid), and line numbers count every line, blank ones too, so spool records point
//! at the right place. [`parse_url`] decides what is fetchable; everything else becomes an
//! `invalid_url` record.

use std::io::{self, BufRead};

use crate::config::MAX_URL_BYTES;

/// Bytes of an over-long line kept (for its record's `url` field); the rest is skipped.
pub const MAX_KEPT_LINE_BYTES: usize = MAX_URL_BYTES + 1;

/// One non-blank input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLine {
    /// The trimmed line (lossily decoded; cut to [`MAX_KEPT_LINE_BYTES`] when over-long).
    pub text: String,
    /// 1-based line number in its source.
    pub number: u64,
    /// Length of the whole trimmed line in bytes, even when `text` was cut.
    pub len: usize,
    /// The raw bytes were not valid UTF-8.
    pub not_utf8: bool,
}

/// Streams the non-blank lines of a reader.
pub struct LineReader<R> {
    inner: R,
    number: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            number: 0,
            buf: Vec::new(),
        }
    }

    /// Read one raw line into `self.buf` (at most `MAX_KEPT_LINE_BYTES` kept); returns the
    /// full length, or `None` at end of input.
    fn read_raw_line(&mut self) -> io::Result<Option<usize>> {
        self.buf.clear();
        let mut total = 0usize;
        let mut any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(any.then_some(total));
            }
            any = true;
            let (part, used, done) = match memchr_newline(chunk) {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = MAX_KEPT_LINE_BYTES.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            total += part.len();
            self.inner.consume(used);
            if done {
                return Ok(Some(total));
            }
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

impl<R: BufRead> Iterator for LineReader<R> {
    type Item = io::Result<InputLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let total = match self.read_raw_line() {
                Ok(Some(n)) => n,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            self.number += 1;
            let raw = &self.buf[..];
            let cut = total > raw.len();
            let start = raw.iter().position(|c| !is_trim(*c)).unwrap_or(raw.len());
            let end = raw
                .iter()
                .rposition(|c| !is_trim(*c))
                .map_or(start, |i| i + 1);
            if start == end && !cut {
                continue; // blank line
            }
            let kept = &raw[start..end];
            // A cut line keeps its trailing part unseen, so its length runs to the end.
            let len = if cut { total - start } else { end - start };
            let (text, not_utf8) = match std::str::from_utf8(kept) {
                Ok(s) => (s.to_owned(), false),
                Err(e) if cut && e.error_len().is_none() => {
                    // A multi-byte char cut by the kept-bytes limit: not a decoding error.
                    (
                        String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
                        false,
                    )
                }
                Err(_) => (String::from_utf8_lossy(kept).into_owned(), true),
            };
            return Some(Ok(InputLine {
                text,
                number: self.number,
                len,
                not_utf8,
            }));
        }
    }
}

/// ASCII whitespace and the CR of CRLF endings.
fn is_trim(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// Why a line is not a fetchable URL (the `invalid_url` message).
pub fn parse_url(line: &InputLine) -> Result<url::Url, String> {
    if line.len > MAX_URL_BYTES {
        return Err(format!(
            "URL is {} bytes long (limit {MAX_URL_BYTES})",
            line.len
        ));
    }
    if line.not_utf8 {
        return Err("line is not valid UTF-8".to_string());
    }
    parse_url_str(&line.text)
}

/// [`parse_url`] for a string already known to be short and UTF-8.
pub fn parse_url_str(text: &str) -> Result<url::Url, String> {
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("URL contains {}", describe_char(c)));
    }
    let url = url::Url::parse(text).map_err(|e| format!("{e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (only http and https)"
            ))
        }
    }
    match url.host_str() {
        None | Some("") => return Err("URL has no host".to_string()),
        Some(_) => {}
    }
    if url.port() == Some(0) {
        return Err("port 0 is not a valid destination".to_string());
    }
    Ok(url)
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c => format!("the control or space character U+{:04X}", c as u32),
    }
}

/// The key that shards and schedules a URL: scheme, host and port (the keep-alive pool key).
pub fn host_key(url: &url::Url) -> String {
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<InputLine> {
        LineReader::new(input).map(|l| l.unwrap()).collect()
    }

    #[test]
    fn trims_skips_blank_and_counts_every_line() {
        let got = lines(b"  http://a/  \r\n\n\t\nhttp://b/\r\nhttp://c/");
        let t: Vec<_> = got.iter().map(|l| (l.text.as_str(), l.number)).collect();
        assert_eq!(
            t,
            vec![("http://a/", 1), ("http://b/", 4), ("http://c/", 5)]
        );
    }

    #[test]
    fn huge_line_is_cut_but_measured_and_next_line_survives() {
        let mut input = b"http://x/".to_vec();
        input.extend(std::iter::repeat_n(b'a', 1 << 20));
        input.extend_from_slice(b"\nhttp://next/\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len, 9 + (1 << 20));
        assert_eq!(got[0].text.len(), MAX_KEPT_LINE_BYTES);
        assert!(parse_url(&got[0]).unwrap_err().contains("bytes long"));
        assert_eq!(got[1].text, "http://next/");
        assert_eq!(got[1].number, 2);
    }

    #[test]
    fn non_utf8_is_replaced_and_invalid() {
        let got = lines(b"http://a/\xff\xfe\nhttp://b/\n");
        assert!(got[0].not_utf8);
        assert!(got[0].text.contains('\u{FFFD}'));
        assert!(parse_url(&got[0]).unwrap_err().contains("UTF-8"));
        assert!(parse_url(&got[1]).is_ok());
    }

    #[test]
    fn binary_junk_gives_one_line_per_newline_and_no_panic() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let n = junk.iter().filter(|&&b| b == b'\n').count();
        let got = lines(&junk);
        assert!(got.len() <= n + 1 && !got.is_empty());
        for l in &got {
            assert!(parse_url(l).is_err());
        }
    }

    #[test]
    fn url_rules() {
        assert!(parse_url_str("http://example.com/a?b=c#d").is_ok());
        assert!(parse_url_str("https://[::1]:8443/").is_ok());
        for (bad, why) in [
            ("ftp://example.com/", "scheme"),
            ("http://", "empty host"),
            ("http://example.com:99999/", "port"),
            ("http://exa mple.com/", "space"),
            ("http://example.com/a b", "space"),
            ("example.com", "relative"),
            ("http://example.com:0/", "port 0"),
            ("mailto:a@b", "scheme"),
        ] {
            assert!(
                parse_url_str(bad).is_err(),
                "{bad} should be invalid ({why})"
            );
        }
    }

    #[test]
    fn host_key_includes_scheme_and_default_port() {
        let k = |s| host_key(&url::Url::parse(s).unwrap());
        assert_eq!(k("http://A.example/x"), "http://a.example:80");
        assert_eq!(k("https://a.example/"), "https://a.example:443");
        assert_eq!(k("http://a.example:8080/"), "http://a.example:8080");
    }
}
