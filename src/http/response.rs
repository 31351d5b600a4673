//! Response head parsing with httparse: status, framing-relevant headers, size caps.
//!
//! Owns the rules that turn a raw head into a [`ResponseHead`]: which body framing applies
//! (RFC 9112 section 6.3), whether the connection may be reused, and which header values the
//! client keeps. httparse is stateless, so callers re-parse from the start of their buffer.

use std::mem::MaybeUninit;

use super::HttpError;

/// Largest response head accepted (status line + headers + CRLFCRLF).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 128;

/// The parts of a response head the client acts on. Header values are kept as raw bytes
/// only where needed; everything else is parsed once here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Content-Length, when present and valid (conflicting values are a protocol error).
    /// `None` when `chunked` is set, even if the header was present (chunked wins).
    pub content_length: Option<u64>,
    /// Transfer-Encoding ends in `chunked`.
    pub chunked: bool,
    /// The connection cannot be reused after this response (Connection: close, HTTP/1.0
    /// without keep-alive, or close-delimited body).
    pub close: bool,
    /// Location header, raw (resolve against the request URL).
    pub location: Option<String>,
    /// Content-Type header value, raw.
    pub content_type: Option<String>,
    /// Content-Encoding: `gzip`/`x-gzip`/`deflate` understood; other values kept raw.
    pub content_encoding: Option<String>,
    /// Retry-After header, raw (seconds or an HTTP date).
    pub retry_after: Option<String>,
}

impl ResponseHead {
    /// 1xx, 204 and 304 responses never carry a body, whatever their headers say.
    pub fn status_has_body(&self) -> bool {
        !(self.status < 200 || self.status == 204 || self.status == 304)
    }
}

/// Parse a response head from the start of `buf`.
/// `Ok(None)`: incomplete, need more bytes (error `TooLarge` once `buf` exceeds
/// [`MAX_HEAD_BYTES`] without a complete head). `Ok(Some((head, n)))`: the head took `n` bytes.
///
/// Framing rules: a `Transfer-Encoding` whose last coding is `chunked` wins over any
/// `Content-Length` (RFC 9112 section 6.3), but such a response is marked `close`; a
/// `Transfer-Encoding` not ending in `chunked` means a close-delimited body, and combined
/// with a `Content-Length` it is a protocol error. Repeated `Content-Length` values (in one
/// field or several) must all agree.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    // Uninitialized slots: httparse fills only as many as the head has (a zeroed array
    // would cost a write of every slot per response).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response_with_uninit_headers(&mut resp, window, &mut headers)
        .map_err(map_httparse_error)?;
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HttpError::TooLarge(format!(
                "response head larger than {MAX_HEAD_BYTES} bytes"
            )))
        }
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        // httparse always fills both on `Complete`; treat the impossible as malformed.
        return Err(HttpError::Protocol("bad status line".into()));
    };
    if status < 100 {
        return Err(HttpError::Protocol(format!(
            "bad status line: status code {status:03}"
        )));
    }
    head_from_fields(version, status, resp.headers).map(|head| Some((head, len)))
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    let what = match e {
        httparse::Error::Status => "bad status line",
        httparse::Error::Version => "bad status line: not HTTP/1.x",
        httparse::Error::HeaderName => "bad header name",
        httparse::Error::HeaderValue => "bad header value",
        httparse::Error::NewLine => "bad line ending in response head",
        httparse::Error::Token => "bad token in response head",
        httparse::Error::TooManyHeaders => {
            return HttpError::TooLarge(format!("more than {MAX_HEADERS} header fields"))
        }
    };
    HttpError::Protocol(what.into())
}

/// Collects the framing-relevant header fields, then applies the framing rules.
fn head_from_fields(
    version: u8,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<ResponseHead, HttpError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_codings: Vec<String> = Vec::new();
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut location = None;
    let mut content_type = None;
    let mut retry_after = None;
    let mut encodings: Vec<String> = Vec::new();

    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii().is_empty() {
                return Err(HttpError::Protocol("bad Content-Length".into()));
            }
            for part in split_list(h.value) {
                let n = parse_content_length(part)?;
                match content_length {
                    Some(prev) if prev != n => {
                        return Err(HttpError::Protocol("conflicting Content-Length".into()))
                    }
                    _ => content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_codings.extend(split_list(h.value).map(lower));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in split_list(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("location") {
            location.get_or_insert_with(|| text(h.value));
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type.get_or_insert_with(|| text(h.value));
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after.get_or_insert_with(|| text(h.value));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            encodings.extend(split_list(h.value).map(lower));
        }
    }

    let mut close = conn_close || (version == 0 && !conn_keep_alive);
    let mut chunked = false;
    if !transfer_codings.is_empty() {
        chunked = transfer_codings.last().map(String::as_str) == Some("chunked");
        if !chunked && content_length.is_some() {
            return Err(HttpError::Protocol(
                "conflicting Content-Length and Transfer-Encoding".into(),
            ));
        }
        if let Some(bad) = transfer_codings
            .iter()
            .find(|c| !matches!(c.as_str(), "chunked" | "identity"))
        {
            return Err(HttpError::Protocol(format!(
                "unsupported Transfer-Encoding: {bad}"
            )));
        }
        // Either framing by `chunked` despite a Content-Length (a smuggling pattern), or
        // a Transfer-Encoding from an HTTP/1.0 peer: do not trust the connection further.
        if content_length.is_some() || version == 0 {
            close = true;
        }
        content_length = None;
    }
    let mut head = ResponseHead {
        status,
        version,
        content_length,
        chunked,
        close,
        location,
        content_type,
        content_encoding: if encodings.is_empty() {
            None
        } else {
            Some(encodings.join(", "))
        },
        retry_after,
    };
    if head.status_has_body() && !head.chunked && head.content_length.is_none() {
        head.close = true;
    }
    Ok(head)
}

/// Comma-separated list elements of a field value, OWS-trimmed, empty elements dropped.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|part| part.trim_ascii())
        .filter(|part| !part.is_empty())
}

fn lower(token: &[u8]) -> String {
    String::from_utf8_lossy(token).to_ascii_lowercase()
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value.trim_ascii()).into_owned()
}

fn parse_content_length(digits: &[u8]) -> Result<u64, HttpError> {
    let bad = || HttpError::Protocol("bad Content-Length".into());
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
            .ok_or_else(bad)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<(ResponseHead, usize)>, HttpError> {
        parse_head(head.as_bytes())
    }

    fn ok(head: &str) -> ResponseHead {
        let (h, n) = parse(head).unwrap().expect("complete head");
        assert_eq!(n, head.len());
        h
    }

    fn err(head: &str) -> String {
        match parse(head) {
            Err(HttpError::Protocol(m)) => m,
            other => panic!("expected protocol error, got {other:?}"),
        }
    }

    #[test]
    fn partial_then_complete_with_length_of_head_only() {
        assert_eq!(parse("HTTP/1.1 200 OK\r\nContent-Len").unwrap(), None);
        let (h, n) = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(n, 38);
        assert_eq!(
            h,
            ResponseHead {
                status: 200,
                version: 1,
                content_length: Some(3),
                chunked: false,
                close: false,
                location: None,
                content_type: None,
                content_encoding: None,
                retry_after: None,
            }
        );
    }

    #[test]
    fn missing_reason_phrase_and_bare_lf() {
        assert_eq!(ok("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n").status, 404);
        assert_eq!(ok("HTTP/1.1 200 OK\nContent-Length: 0\n\n").status, 200);
    }

    #[test]
    fn content_length_duplicates_must_agree() {
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").content_length,
            Some(5)
        );
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n").content_length,
            Some(5)
        );
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            "conflicting Content-Length"
        );
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\n"),
            "conflicting Content-Length"
        );
    }

    #[test]
    fn bad_content_length_values() {
        for v in ["abc", "-1", "+5", "1 2", "", "99999999999999999999999"] {
            assert_eq!(
                err(&format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\n")),
                "bad Content-Length",
                "value {v:?}"
            );
        }
    }

    #[test]
    fn chunked_wins_over_content_length_but_closes() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked);
        assert!(h.close);
        assert_eq!(h.content_length, None);
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert!(h.chunked && !h.close);
    }

    #[test]
    fn transfer_encoding_not_ending_in_chunked() {
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n"),
            "conflicting Content-Length and Transfer-Encoding"
        );
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n");
        assert!(!h.chunked && h.close);
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            "unsupported Transfer-Encoding: gzip"
        );
        let h =
            ok("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.chunked && h.close);
    }

    #[test]
    fn connection_tokens_case_insensitive_and_versions() {
        assert!(
            ok("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n").close
        );
        assert!(
            !ok("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").close
        );
        assert!(ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
        let h = ok("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.version, 0);
        assert!(!h.close);
    }

    #[test]
    fn close_delimited_only_for_statuses_with_body() {
        assert!(ok("HTTP/1.1 200 OK\r\n\r\n").close);
        assert!(!ok("HTTP/1.1 204 No Content\r\n\r\n").close);
        assert!(!ok("HTTP/1.1 304 Not Modified\r\n\r\n").close);
        assert!(!ok("HTTP/1.1 100 Continue\r\n\r\n").close);
    }

    #[test]
    fn kept_header_values() {
        let h = ok(
            "HTTP/1.1 301 Moved\r\nLocation:  /next?a=1 \r\nLocation: /second\r\n\
                    Content-Type: text/html; charset=utf-8\r\nContent-Encoding: GZIP\r\n\
                    content-encoding: identity\r\nRetry-After: 120 \r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(h.location.as_deref(), Some("/next?a=1"));
        assert_eq!(h.content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert_eq!(h.content_encoding.as_deref(), Some("gzip, identity"));
        assert_eq!(h.retry_after.as_deref(), Some("120"));
    }

    #[test]
    fn httparse_errors_say_what() {
        assert_eq!(err("HTTP/1.1 2x0 OK\r\n\r\n"), "bad status line");
        assert_eq!(
            err("HTTP/2 200 OK\r\n\r\n"),
            "bad status line: not HTTP/1.x"
        );
        assert_eq!(
            err("FTP/1.1 200 OK\r\n\r\n"),
            "bad status line: not HTTP/1.x"
        );
        assert_eq!(
            err("HTTP/1.1 099 Odd\r\n\r\n"),
            "bad status line: status code 099"
        );
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nBad(Name): x\r\n\r\n"),
            "bad header name"
        );
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nName: a\x01b\r\n\r\n"),
            "bad header value"
        );
        assert_eq!(
            err("HTTP/1.1 200 OK\r\nName: a\rb\r\n\r\n"),
            "bad header value"
        );
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert_eq!(
            parse(&head),
            Err(HttpError::TooLarge("more than 128 header fields".into()))
        );
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut head = String::from("HTTP/1.1 200 OK\r\nX-Big: ");
        head.push_str(&"a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(&head),
            Err(HttpError::TooLarge(
                "response head larger than 65536 bytes".into()
            ))
        );
        // Just under the cap and still incomplete: wait for more.
        assert_eq!(parse(&head[..MAX_HEAD_BYTES - 1]), Ok(None));
    }
}
