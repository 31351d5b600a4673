//! Response head parsing with httparse: status, framing-relevant headers, size caps.

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
}

/// Parse a response head from the start of `buf`.
/// `Ok(None)`: incomplete, need more bytes (error `TooLarge` once `buf` exceeds
/// [`MAX_HEAD_BYTES`] without a complete head). `Ok(Some((head, n)))`: the head took `n` bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let _ = buf;
    todo!("http helper")
}
