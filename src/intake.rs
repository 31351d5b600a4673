//! Input lines: the one reader of URL lists and the one validation of a line.
//!
//! Every source of URLs goes through here, so a line gets the same record whatever its
//! source: `fetch` URL arguments ([`InputLine::from_arg`]), `fetch -i FILE` / stdin and
//! spool list files ([`LineReader`]), `load`'s URL ([`parse_arg`]) and the progress bar's
//! count of a file ([`LineReader::count_non_blank`]).
//!
//! [`LineReader`] yields one [`InputLine`] per non-blank line of any `BufRead` without ever
//! holding more than [`MAX_KEPT_LINE_BYTES`] of a line: the rest of an over-long line is
//! skipped buffer by buffer, so a 1 GB line costs no more memory than a short one, and every
//! buffer fill polls the reader's stop flag and counts against its byte limit
//! ([`ReadLimits`]), so a list that is one endless line neither spins forever nor delays a
//! shutdown. Lines are trimmed (ASCII whitespace, CRLF included), and line numbers count
//! every line, blank ones too, so spool records point at the right place. [`parse_url`]
//! decides what is fetchable: a bare host name (`example.com`, `localhost:8080/x`) is
//! fetched as `http://` + the line; over-long and non-UTF-8 lines, like any other
//! unfetchable line, become `invalid_url` records.

use std::ffi::OsStr;
use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest URL accepted (bytes, after trimming); longer lines are `invalid_url`.
pub(crate) const MAX_URL_BYTES: usize = 8 * 1024;
/// Bytes of an over-long line kept (for its record's `url` field); the rest is skipped.
pub(crate) const MAX_KEPT_LINE_BYTES: usize = MAX_URL_BYTES + 1;
/// [`InputLine::number`] of a command-line argument: not a line of a list, so its record
/// has no `line`.
pub(crate) const ARG_LINE: u64 = 0;

/// One non-blank input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLine {
    /// The trimmed line (lossily decoded; cut to [`MAX_KEPT_LINE_BYTES`] when over-long).
    pub text: String,
    /// 1-based line number in its list (blank lines count); [`ARG_LINE`] for a
    /// command-line argument.
    pub number: u64,
    /// Length of the whole trimmed line in bytes, even when `text` was cut.
    pub len: usize,
    /// The kept bytes were not valid UTF-8.
    pub not_utf8: bool,
    /// The kept bytes when they are not UTF-8 (`text` is then their lossy decoding).
    raw: Option<Box<[u8]>>,
}

impl InputLine {
    /// A command-line argument as an input line (numbered [`ARG_LINE`]); `None` when it
    /// is blank.
    pub(crate) fn from_arg(arg: &OsStr) -> Option<InputLine> {
        let mut b = LineBuilder::default();
        b.push(arg.as_bytes());
        b.finish(ARG_LINE)
    }

    /// The kept bytes of the line as read (what `text` decodes): the cluster sends these.
    pub(crate) fn raw(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.text.as_bytes())
    }

    /// The line the reader made from `kept` bytes (see [`InputLine::raw`]) of a line
    /// `whole_len` bytes long when it was cut: a line rebuilt from a cluster message is the
    /// line the submitter read. `None` when blank.
    pub(crate) fn from_raw(
        kept: &[u8],
        number: u64,
        whole_len: Option<usize>,
    ) -> Option<InputLine> {
        let mut b = LineBuilder::default();
        b.push(kept);
        if let Some(len) = whole_len {
            b.end = b.end.max(len);
        }
        b.finish(number)
    }
}

/// Why reading a list ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The reader's stop flag was set.
    #[error("stopped")]
    Stopped,
    /// The input is longer than [`ReadLimits::max_bytes`].
    #[error("list is larger than {0} bytes")]
    TooLarge(u64),
}

/// What bounds one read of a list.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadLimits {
    /// Polled on every buffer fill: once set, reading ends with [`ReadError::Stopped`].
    pub stop: Option<Arc<AtomicBool>>,
    /// Bytes of input read at most; past it, reading ends with [`ReadError::TooLarge`].
    pub max_bytes: Option<u64>,
}

/// Builds one line from the pieces a reader hands over: leading whitespace is dropped as it
/// comes, the first [`MAX_KEPT_LINE_BYTES`] after it are kept, and the end of the last
/// non-whitespace byte is tracked, so trailing whitespace (and the `\r` of CRLF) never
/// counts and a blank line is known without keeping it.
#[derive(Default)]
struct LineBuilder {
    kept: Vec<u8>,
    /// Bytes seen since the first non-whitespace byte.
    content: usize,
    /// Offset (in `content`) just past the last non-whitespace byte: the trimmed length.
    end: usize,
}

impl LineBuilder {
    fn push(&mut self, mut part: &[u8]) {
        if self.content == 0 {
            let start = part.iter().position(|&c| !is_trim(c)).unwrap_or(part.len());
            part = &part[start..];
        }
        if let Some(i) = part.iter().rposition(|&c| !is_trim(c)) {
            self.end = self.content + i + 1;
        }
        let room = MAX_KEPT_LINE_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&part[..part.len().min(room)]);
        self.content += part.len();
    }

    fn is_blank(&self) -> bool {
        self.end == 0
    }

    /// The line (`None` when blank); the builder is ready for the next one.
    fn finish(&mut self, number: u64) -> Option<InputLine> {
        let len = self.end;
        let kept = &self.kept[..self.kept.len().min(len)];
        let line = (len > 0).then(|| {
            let cut = len > kept.len();
            let (text, not_utf8) = match std::str::from_utf8(kept) {
                Ok(s) => (s.to_owned(), false),
                // A multi-byte char cut by the kept-bytes limit: not a decoding error.
                Err(e) if cut && e.error_len().is_none() => (
                    String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
                    false,
                ),
                Err(_) => (String::from_utf8_lossy(kept).into_owned(), true),
            };
            InputLine {
                text,
                number,
                len,
                raw: not_utf8.then(|| kept.into()),
                not_utf8,
            }
        });
        self.clear();
        line
    }

    fn clear(&mut self) {
        self.kept.clear();
        self.content = 0;
        self.end = 0;
    }
}

/// Streams the non-blank lines of a reader, within its [`ReadLimits`].
pub(crate) struct LineReader<R> {
    inner: R,
    limits: ReadLimits,
    /// Lines read so far, blank ones included.
    lines: u64,
    /// Bytes consumed so far.
    bytes: u64,
    line: LineBuilder,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, limits: ReadLimits) -> Self {
        LineReader {
            inner,
            limits,
            lines: 0,
            bytes: 0,
            line: LineBuilder::default(),
        }
    }

    /// Lines read so far, blank ones included (the number of the last line read).
    pub(crate) fn lines_read(&self) -> u64 {
        self.lines
    }

    /// Read the next line into `self.line`; `false` at the end of the input.
    fn read_line(&mut self) -> Result<bool, ReadError> {
        self.line.clear();
        let mut any = false;
        loop {
            if self
                .limits
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire))
            {
                return Err(ReadError::Stopped);
            }
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if chunk.is_empty() {
                if any {
                    self.lines += 1;
                }
                return Ok(any);
            }
            any = true;
            let (part, used, done) = match chunk.iter().position(|&c| c == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            self.line.push(part);
            self.inner.consume(used);
            self.bytes += used as u64;
            if let Some(max) = self.limits.max_bytes {
                if self.bytes > max {
                    return Err(ReadError::TooLarge(max));
                }
            }
            if done {
                self.lines += 1;
                return Ok(true);
            }
        }
    }

    /// Count the non-blank lines left (what the iterator would yield), keeping no text.
    pub(crate) fn count_non_blank(mut self) -> Result<u64, ReadError> {
        let mut n = 0;
        while self.read_line()? {
            n += u64::from(!self.line.is_blank());
        }
        Ok(n)
    }
}

impl<R: BufRead> Iterator for LineReader<R> {
    type Item = Result<InputLine, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Ok(true) => {
                    if let Some(line) = self.line.finish(self.lines) {
                        return Some(Ok(line));
                    }
                }
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// ASCII whitespace (the CR of CRLF endings included).
fn is_trim(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

/// Why a line is not a fetchable URL (the `invalid_url` message), or its URL (`http://` +
/// the line for a bare host name, see [`is_bare_host`]).
pub(crate) fn parse_url(line: &InputLine) -> Result<url::Url, String> {
    if line.len > MAX_URL_BYTES {
        return Err(format!(
            "URL is {} bytes long (limit {MAX_URL_BYTES})",
            line.len
        ));
    }
    if line.not_utf8 {
        return Err("line is not valid UTF-8".to_string());
    }
    parse_text(&line.text)
}

/// [`parse_url`] of a line's text once it is known to be within the size limit and UTF-8
/// (also for a job's URL read back from a spill file).
pub(crate) fn parse_text(text: &str) -> Result<url::Url, String> {
    if let Some(c) = first_space_or_control(text) {
        return Err(format!("URL contains {}", describe_char(c)));
    }
    let url = if is_bare_host(text) {
        let with_scheme = format!("{BARE_HOST_SCHEME}{text}");
        parse_known_origin(&with_scheme).map_err(|e| format!("{e} (read as {with_scheme})"))?
    } else {
        parse_known_origin(text).map_err(|e| format!("{e}"))?
    };
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

/// Origins a thread keeps in its [`parse_known_origin`] cache at most (it is emptied when
/// full).
const MAX_KNOWN_ORIGINS: usize = 4096;

/// `url::Url::parse(text)` for `text` without whitespace or control characters, faster for
/// a URL whose origin (`http://` or `https://` and the authority, as written) this thread
/// parsed before: its path-absolute rest (`/a?b#c`) is joined to that earlier URL, which is
/// the same URL (the url crate resolves the rest against the base's scheme, user, host and
/// port, and takes nothing else from it) without parsing the host again, the most costly
/// part of a parse (IDNA mapping). Lists hold many URLs per host; what comes out is what
/// `Url::parse` gives, only sooner.
fn parse_known_origin(text: &str) -> Result<url::Url, url::ParseError> {
    let Some((origin, rest)) = split_origin(text) else {
        return url::Url::parse(text);
    };
    KNOWN_ORIGINS.with(|known| {
        let mut known = known.borrow_mut();
        if let Some(base) = known.get(origin) {
            return base.join(rest);
        }
        let url = url::Url::parse(text)?;
        if known.len() >= MAX_KNOWN_ORIGINS {
            known.clear();
        }
        known.insert(origin.into(), url.clone());
        Ok(url)
    })
}

thread_local! {
    /// This thread's [`parse_known_origin`] cache: an origin as written, and a URL of it.
    static KNOWN_ORIGINS: std::cell::RefCell<crate::sched::HostMap<Box<str>, url::Url>> =
        std::cell::RefCell::new(crate::sched::HostMap::default());
}

/// `text` as its origin as written (`http://` or `https://` and the authority up to the
/// path's `/`) and a path-absolute rest (`/`, then anything but a second `/` or `\`, which
/// would make it a scheme-relative reference); `None` for any other shape.
fn split_origin(text: &str) -> Option<(&str, &str)> {
    let after_scheme = if text.starts_with("http://") {
        "http://".len()
    } else if text.starts_with("https://") {
        "https://".len()
    } else {
        return None;
    };
    let end = after_scheme + text[after_scheme..].find(['/', '\\', '?', '#'])?;
    let (origin, rest) = text.split_at(end);
    let path_absolute = rest.starts_with('/') && !rest[1..].starts_with(['/', '\\']);
    (end > after_scheme && path_absolute).then_some((origin, rest))
}

/// The first whitespace or control character of `text`: bytes while they are ASCII (the
/// ASCII ones are U+0000-U+0020 and U+007F), chars from the first non-ASCII byte on.
fn first_space_or_control(text: &str) -> Option<char> {
    let at = text.bytes().position(|b| b <= b' ' || b >= 0x7f)?;
    text[at..]
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
}

/// What a bare host name line is fetched as: `example.com:8080/a` is `http://example.com:8080/a`.
const BARE_HOST_SCHEME: &str = "http://";

/// Whether a line is a bare host name with an optional port, path, query or fragment
/// (`example.com`, `localhost:8080`, `10.0.0.1/x`, `[::1]:8443/`), as httpx users feed
/// them: it does not start with `/`, `?` or `#` (a relative reference), and it does not
/// start with a scheme (`http:`, `mailto:`; those keep it, so `mailto:a@b` stays
/// `invalid_url`). `name:` followed by a port (digits, then the end or `/`, `?`, `#`) is a
/// host and its port, not a scheme: `localhost:8080`, which the URL standard would read as
/// the scheme `localhost`.
fn is_bare_host(text: &str) -> bool {
    if text.starts_with(['/', '?', '#']) {
        return false;
    }
    let Some((scheme, rest)) = text.split_once(':') else {
        return true;
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return true; // `[::1]:80`, `a.example/x:y`: what precedes the colon is no scheme
    }
    let port_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let port = &rest[..port_end];
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// [`parse_url`] for one command-line argument.
pub(crate) fn parse_arg(arg: &OsStr) -> Result<url::Url, String> {
    match InputLine::from_arg(arg) {
        Some(line) => parse_url(&line),
        None => Err("URL is empty".to_string()),
    }
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c => format!("the control or space character U+{:04X}", c as u32),
    }
}

/// The key that shards and schedules a URL: `scheme://host:port` (the keep-alive pool key).
/// Built by hand in one allocation of the right size: it is made for every URL.
pub(crate) fn host_key(url: &url::Url) -> String {
    let (scheme, host) = (url.scheme(), url.host_str().unwrap_or(""));
    let port = url.port_or_known_default().unwrap_or(0);
    let mut key = String::with_capacity(scheme.len() + host.len() + HOST_KEY_EXTRA);
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(port));
    key
}

/// `://`, `:` and up to five port digits.
const HOST_KEY_EXTRA: usize = 9;

/// Hash what [`host_key`] is made of, without making it (routing a URL to its worker).
pub(crate) fn hash_host_key(url: &url::Url, hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    url.scheme().hash(hasher);
    url.host_str().unwrap_or("").hash(hasher);
    url.port_or_known_default().unwrap_or(0).hash(hasher);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_of_a_known_origin_parses_as_url_parse_does() {
        let origins = [
            "http://h0001.site.test",
            "http://EXAMPLE.com",
            "https://example.com:443",
            "http://example.com:8080",
            "http://user:pa%20ss@example.com",
            "http://[::1]:8443",
            "http://127.0.0.1",
            "http://bücher.example",
            "http://xn--bcher-kva.example",
            "https://a.b.c.d.example.",
        ];
        let rests = [
            "/",
            "/missing/3",
            "/a/b/../c/./d",
            "/%2e%2e/x",
            "/a?b=c&d#frag",
            "/?",
            "/#",
            "/a\\b\\c",
            "/über/straße?q=ä#é",
            "/a%zz%41",
            "/a b", // not reached in practice (spaces are refused first), still the same
            "/..",
            "/a?x=/\\y",
            "/a#b#c",
            "/;p=1",
            "/C:/x",
        ];
        let known = |origin: &str| KNOWN_ORIGINS.with(|k| k.borrow().contains_key(origin));
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: Vec<char> = "/\\?#.%2eEa:@;=&[]ü~+ ".chars().collect();
        let random: Vec<String> = (0..500)
            .map(|_| {
                let mut r = String::from("/");
                r.extend((0..rng.usize(0..12)).map(|_| alphabet[rng.usize(..alphabet.len())]));
                r
            })
            .collect();
        for origin in origins {
            parse_known_origin(&format!("{origin}/warm")).expect("the origin parses");
            assert!(known(origin), "{origin} is cached");
            for rest in rests
                .iter()
                .copied()
                .chain(random.iter().map(String::as_str))
            {
                let text = format!("{origin}{rest}");
                assert_eq!(parse_known_origin(&text), url::Url::parse(&text), "{text}");
            }
        }
    }

    #[test]
    fn only_a_plain_origin_and_a_path_absolute_rest_take_the_cache() {
        assert_eq!(
            split_origin("http://h.test/a?b"),
            Some(("http://h.test", "/a?b"))
        );
        assert_eq!(
            split_origin("https://h.test/"),
            Some(("https://h.test", "/"))
        );
        // Anything else is parsed whole.
        for text in [
            "http://h.test",
            "http://h.test?q",
            "http://h.test#f",
            "http://h.test\\a",
            "http://h.test//a",
            "http://h.test/\\a",
            "http:///a",
            "HTTP://h.test/a",
            "ftp://h.test/a",
            "http:/h.test/a",
        ] {
            assert_eq!(split_origin(text), None, "{text}");
            assert_eq!(parse_known_origin(text), url::Url::parse(text), "{text}");
        }
    }

    #[test]
    fn the_origin_cache_stays_bounded_and_right_when_full() {
        for i in 0..MAX_KNOWN_ORIGINS + 10 {
            let text = format!("http://h{i}.test/p");
            assert_eq!(parse_known_origin(&text), url::Url::parse(&text));
        }
        for i in 0..20 {
            let text = format!("http://h{i}.test/q?{i}");
            assert_eq!(parse_known_origin(&text), url::Url::parse(&text));
        }
        // A bad host is never cached: each of its URLs fails as Url::parse says.
        for _ in 0..2 {
            assert_eq!(
                parse_known_origin("http://exa mple.test/a"),
                url::Url::parse("http://exa mple.test/a")
            );
            assert!(parse_known_origin("http://[::1/a").is_err());
        }
    }

    #[test]
    fn host_keys_name_scheme_host_and_port() {
        let key = |u: &str| host_key(&url::Url::parse(u).unwrap());
        assert_eq!(key("http://Example.COM/x?y"), "http://example.com:80");
        assert_eq!(key("https://a.test/"), "https://a.test:443");
        assert_eq!(key("http://a.test:8080/"), "http://a.test:8080");
        assert_eq!(key("http://a.test:0/"), "http://a.test:0");
        assert_eq!(key("http://a.test:65535/"), "http://a.test:65535");
        assert_eq!(key("http://[::1]:9/"), "http://[::1]:9");
        // Routing hashes the same parts: equal keys, equal hashes.
        let hash = |u: &str| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            hash_host_key(&url::Url::parse(u).unwrap(), &mut h);
            std::hash::Hasher::finish(&h)
        };
        assert_eq!(hash("http://a.test/x"), hash("http://A.test:80/y"));
        assert_ne!(hash("http://a.test/"), hash("https://a.test/"));
    }

    /// A `BufRead` that hands out at most one byte per fill (the worst case for a reader
    /// that works buffer by buffer), and counts its fills.
    struct ByteAtATime<'a> {
        data: &'a [u8],
        fills: usize,
    }

    impl io::Read for ByteAtATime<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    impl BufRead for ByteAtATime<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            self.fills += 1;
            Ok(&self.data[..self.data.len().min(1)])
        }
        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    /// The lines of `input`, read whole and byte at a time; both ways must agree.
    fn lines(input: &[u8]) -> Vec<InputLine> {
        let whole: Vec<_> = LineReader::new(input, ReadLimits::default())
            .map(Result::unwrap)
            .collect();
        let bytewise = ByteAtATime {
            data: input,
            fills: 0,
        };
        let slow: Vec<_> = LineReader::new(bytewise, ReadLimits::default())
            .map(Result::unwrap)
            .collect();
        assert_eq!(whole, slow, "whole and byte-at-a-time reads differ");
        let count = LineReader::new(input, ReadLimits::default())
            .count_non_blank()
            .unwrap();
        assert_eq!(count, whole.len() as u64, "the count is the lines yielded");
        whole
    }

    #[test]
    fn trims_crlf_skips_blank_and_counts_every_line() {
        let got = lines(b"  http://a/  \r\n\n\t\r\n\x0b\x0c\nhttp://b/\r\nhttp://c/");
        let t: Vec<_> = got.iter().map(|l| (l.text.as_str(), l.number)).collect();
        assert_eq!(
            t,
            vec![("http://a/", 1), ("http://b/", 5), ("http://c/", 6)]
        );
        assert_eq!(got[0].len, "http://a/".len());
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\r\n   ").is_empty());
        let mut r = LineReader::new(&b"a\n\n\nb\n\n"[..], ReadLimits::default());
        assert_eq!(r.by_ref().count(), 2);
        assert_eq!(
            r.lines_read(),
            5,
            "blank lines are counted, a final newline is not a line"
        );
    }

    #[test]
    fn huge_line_is_cut_but_measured_and_next_line_survives() {
        let mut input = b"  http://x/".to_vec();
        input.extend(std::iter::repeat_n(b'a', 20_000));
        input.extend_from_slice(b" \r\nhttp://next/\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len, 9 + 20_000, "trimmed length of the whole line");
        assert_eq!(got[0].text.len(), MAX_KEPT_LINE_BYTES);
        assert!(got[0].text.starts_with("http://x/aaa"));
        assert!(!got[0].not_utf8);
        assert_eq!(
            parse_url(&got[0]).unwrap_err(),
            format!("URL is 20009 bytes long (limit {MAX_URL_BYTES})")
        );
        assert_eq!((got[1].text.as_str(), got[1].number), ("http://next/", 2));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_a_url_one_more_is_not() {
        let url = |n: usize| {
            let mut s = "http://a/".to_string();
            s.push_str(&"b".repeat(n - s.len()));
            s
        };
        let ok = lines(format!("{}\n", url(MAX_URL_BYTES)).as_bytes());
        assert!(parse_url(&ok[0]).is_ok());
        let long = lines(format!("{}\r\n", url(MAX_URL_BYTES + 1)).as_bytes());
        assert!(parse_url(&long[0]).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn long_runs_of_whitespace_are_trimmed_not_kept() {
        let mut input = vec![b' '; 3 * MAX_KEPT_LINE_BYTES];
        input.extend_from_slice(b"http://a/");
        input.extend(vec![b'\t'; 3 * MAX_KEPT_LINE_BYTES]);
        input.extend_from_slice(b"\n");
        input.extend(vec![b' '; 3 * MAX_KEPT_LINE_BYTES]);
        input.extend_from_slice(b"\nhttp://b/\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2, "a long blank line is blank");
        assert_eq!(got[0].text, "http://a/");
        assert_eq!(got[0].len, 9);
        assert_eq!((got[1].text.as_str(), got[1].number), ("http://b/", 3));
    }

    #[test]
    fn non_utf8_is_replaced_and_invalid() {
        let got = lines(b"http://a/\xff\xfe\nhttp://b/\n");
        assert!(got[0].not_utf8);
        assert_eq!(got[0].text, "http://a/\u{FFFD}\u{FFFD}");
        assert_eq!(parse_url(&got[0]).unwrap_err(), "line is not valid UTF-8");
        assert!(parse_url(&got[1]).is_ok());
    }

    #[test]
    fn a_multibyte_char_cut_at_the_limit_is_not_a_decoding_error() {
        // 'é' is two bytes; its first byte is the last kept one.
        let mut line = "http://a/".to_string();
        line.push_str(&"b".repeat(MAX_KEPT_LINE_BYTES - 1 - line.len()));
        line.push_str("éé");
        let got = lines(format!("{line}\n").as_bytes());
        assert!(!got[0].not_utf8);
        assert_eq!(got[0].text.len(), MAX_KEPT_LINE_BYTES - 1);
        assert_eq!(got[0].len, line.len());
        assert!(parse_url(&got[0]).unwrap_err().contains("bytes long"));
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
    fn stop_is_polled_on_every_fill_even_inside_an_endless_line() {
        let stop = Arc::new(AtomicBool::new(false));
        let endless = vec![b'x'; 1 << 20];
        let mut input = ByteAtATime {
            data: &endless,
            fills: 0,
        };
        let limits = ReadLimits {
            stop: Some(stop.clone()),
            max_bytes: None,
        };
        // Stop after 1,000 fills, from inside the reader's loop.
        struct StopAfter<'a, 'b> {
            inner: &'a mut ByteAtATime<'b>,
            stop: Arc<AtomicBool>,
        }
        impl io::Read for StopAfter<'_, '_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.inner.read(buf)
            }
        }
        impl BufRead for StopAfter<'_, '_> {
            fn fill_buf(&mut self) -> io::Result<&[u8]> {
                if self.inner.fills == 1000 {
                    self.stop.store(true, Ordering::Release);
                }
                self.inner.fill_buf()
            }
            fn consume(&mut self, n: usize) {
                self.inner.consume(n)
            }
        }
        let r = StopAfter {
            inner: &mut input,
            stop: stop.clone(),
        };
        let mut reader = LineReader::new(r, limits);
        assert!(matches!(reader.next(), Some(Err(ReadError::Stopped))));
        drop(reader);
        assert_eq!(
            input.fills, 1001,
            "stopped at the first fill after the flag"
        );
        assert_eq!(input.data.len(), endless.len() - 1001);
    }

    #[test]
    fn a_set_stop_flag_reads_nothing() {
        let limits = ReadLimits {
            stop: Some(Arc::new(AtomicBool::new(true))),
            max_bytes: None,
        };
        let mut r = LineReader::new(&b"http://a/\n"[..], limits);
        assert!(matches!(r.next(), Some(Err(ReadError::Stopped))));
        assert_eq!(r.lines_read(), 0);
    }

    #[test]
    fn max_bytes_bounds_the_list_even_inside_one_line() {
        let limits = |max| ReadLimits {
            stop: None,
            max_bytes: Some(max),
        };
        let input = b"http://a/\nhttp://b/\n"; // 20 bytes
        assert_eq!(
            LineReader::new(&input[..], limits(20))
                .count_non_blank()
                .unwrap(),
            2
        );
        let mut r = LineReader::new(&input[..], limits(19));
        assert_eq!(r.next().unwrap().unwrap().text, "http://a/");
        assert!(matches!(r.next(), Some(Err(ReadError::TooLarge(19)))));
        let endless = vec![b'x'; 1 << 20];
        let bytewise = ByteAtATime {
            data: &endless,
            fills: 0,
        };
        let mut r = LineReader::new(bytewise, limits(4096));
        assert!(matches!(r.next(), Some(Err(ReadError::TooLarge(4096)))));
    }

    #[test]
    fn a_line_rebuilt_from_its_raw_bytes_is_the_line_read() {
        let mut long = b"http://a/".to_vec();
        long.extend(std::iter::repeat_n(
            b'b',
            MAX_KEPT_LINE_BYTES - 1 - long.len(),
        ));
        long.extend_from_slice("éé".as_bytes());
        let mut input = b"  http://a.test/x \nhttp://b/\xff\xfe\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\n");
        input.extend(std::iter::repeat_n(b'z', 3 * MAX_KEPT_LINE_BYTES));
        input.extend_from_slice(b"\xff\n");
        let got = lines(&input);
        assert_eq!(got.len(), 4);
        assert_eq!(got[1].raw(), b"http://b/\xff\xfe");
        for l in &got {
            let cut = (l.len > l.raw().len()).then_some(l.len);
            assert_eq!(
                InputLine::from_raw(l.raw(), l.number, cut).as_ref(),
                Some(l)
            );
        }
        assert_eq!(InputLine::from_raw(b" \t", 1, None), None);
    }

    #[test]
    fn arguments_are_lines_too() {
        let a = InputLine::from_arg(OsStr::new(" http://a/\n")).unwrap();
        assert_eq!(
            (a.text.as_str(), a.number, a.len),
            ("http://a/", ARG_LINE, 9)
        );
        assert!(InputLine::from_arg(OsStr::new("  ")).is_none());
        let bad = OsStr::from_bytes(b"http://a/\xff");
        assert_eq!(parse_arg(bad).unwrap_err(), "line is not valid UTF-8");
        let long = "http://a/".to_string() + &"b".repeat(MAX_URL_BYTES);
        assert!(parse_arg(OsStr::new(&long))
            .unwrap_err()
            .contains("bytes long"));
        assert_eq!(parse_arg(OsStr::new("")).unwrap_err(), "URL is empty");
    }

    #[test]
    fn url_rules() {
        let parse = |s: &str| parse_arg(OsStr::new(s));
        assert!(parse("http://example.com/a?b=c#d").is_ok());
        assert!(parse("https://[::1]:8443/").is_ok());
        for (bad, why) in [
            ("ftp://example.com/", "scheme"),
            ("http://", "empty host"),
            ("http://example.com:99999/", "port"),
            ("http://exa mple.com/", "space"),
            ("http://example.com/a b", "space"),
            ("http://example.com/a\u{1}b", "control"),
            ("http://example.com:0/", "port 0"),
            ("mailto:a@b", "scheme"),
        ] {
            assert!(parse(bad).is_err(), "{bad} should be invalid ({why})");
        }
    }

    #[test]
    fn bare_host_names_are_fetched_over_http() {
        let parse = |s: &str| parse_arg(OsStr::new(s)).map(|u| u.to_string());
        for (line, want) in [
            ("example.com", "http://example.com/"),
            ("Example.COM.", "http://example.com./"),
            (
                "example.com:8080/path?q=1#f",
                "http://example.com:8080/path?q=1#f",
            ),
            ("localhost:8080", "http://localhost:8080/"),
            ("localhost:8080/a", "http://localhost:8080/a"),
            ("localhost:8080?x", "http://localhost:8080/?x"),
            ("127.0.0.1", "http://127.0.0.1/"),
            ("127.0.0.1:9/x", "http://127.0.0.1:9/x"),
            ("[::1]:8443/", "http://[::1]:8443/"),
            ("[::1]", "http://[::1]/"),
            ("sub.example.com/a://b", "http://sub.example.com/a://b"),
            ("xn--bcher-kva.example", "http://xn--bcher-kva.example/"),
            ("bücher.example", "http://xn--bcher-kva.example/"),
        ] {
            assert_eq!(parse(line).as_deref(), Ok(want), "{line}");
        }
        // A line with a scheme keeps it, whatever it is.
        for (line, why) in [
            ("ftp://example.com/", "unsupported scheme \"ftp\""),
            ("mailto:a@b", "unsupported scheme \"mailto\""),
            ("javascript:alert(1)", "unsupported scheme \"javascript\""),
            ("urn:isbn:123", "unsupported scheme \"urn\""),
            ("localhost:80x", "unsupported scheme \"localhost\""),
            ("localhost:", "unsupported scheme \"localhost\""),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        // Bare, but still not a URL: the message says how the line was read.
        for (line, why) in [
            (":8080", "empty host (read as http://:8080)"),
            (
                "example.com:99999",
                "invalid port number (read as http://example.com:99999)",
            ),
            ("::1", "read as http://::1"),
            ("example.com:0", "port 0"),
            ("//example.com/", "relative URL without a base"),
            ("/path", "relative URL without a base"),
            ("?q", "relative URL without a base"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        assert!(is_bare_host("example.com"));
        assert!(!is_bare_host("http://example.com"));
        assert!(!is_bare_host("HTTPS://example.com"));
    }

    #[test]
    fn host_key_includes_scheme_and_default_port() {
        let k = |s| host_key(&url::Url::parse(s).unwrap());
        assert_eq!(k("http://A.example/x"), "http://a.example:80");
        assert_eq!(k("https://a.example/"), "https://a.example:443");
        assert_eq!(k("http://a.example:8080/"), "http://a.example:8080");
    }

    /// The byte scan finds what `chars().find(whitespace or control)` finds, for every
    /// character up to U+0800 and a few beyond, anywhere in a line.
    #[test]
    fn space_or_control_scan_matches_the_char_scan() {
        let naive = |t: &str| t.chars().find(|c| c.is_whitespace() || c.is_control());
        let extra = [
            0x1680, 0x2000, 0x200b, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff,
        ];
        for c in (0..0x800).chain(extra).filter_map(char::from_u32) {
            for t in [
                format!("{c}"),
                format!("http://a.test/{c}"),
                format!("http://é.test/{c}x"),
                format!("{c}http://a.test/ x"),
                format!("http://a.test/\u{a0}{c}"),
            ] {
                assert_eq!(first_space_or_control(&t), naive(&t), "{t:?}");
            }
        }
        assert_eq!(first_space_or_control("http://a.test/x"), None);
        assert_eq!(first_space_or_control(""), None);
    }
}
