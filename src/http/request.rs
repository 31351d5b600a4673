//! GET request serialization (HTTP/1.1, keep-alive by default).

/// What goes into a request besides the URL.
#[derive(Clone, Debug)]
pub struct RequestOptions<'a> {
    pub user_agent: &'a str,
    /// Ask the server to close after this response (`Connection: close`).
    pub close: bool,
}

/// Append a `GET` request for `url` to `out`: request line with path+query (no fragment),
/// `Host` (with port only when not the scheme default; IPv6 literal in brackets),
/// `User-Agent`, `Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8`,
/// `Accept-Encoding: gzip, deflate`, and `Connection: close` when asked.
pub fn write_get(out: &mut Vec<u8>, url: &url::Url, opts: &RequestOptions<'_>) {
    let _ = (out, url, opts);
    todo!("http helper")
}
