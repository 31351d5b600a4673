//! GET request serialization (HTTP/1.1, keep-alive by default).
//!
//! Owns the exact bytes of the request the client sends: request line, `Host`, `User-Agent`,
//! `Accept`, `Accept-Encoding` and optional `Connection: close`.

/// The `Accept` header value sent with every request.
pub const ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
/// The `Accept-Encoding` header value: the content codings `body` can decode.
pub const ACCEPT_ENCODING: &str = "gzip, deflate";

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
///
/// Control characters in the user agent (which would split the header) are replaced by
/// spaces. `url` comes from the `url` crate, so its path and query are already
/// percent-encoded and free of spaces and control characters.
pub fn write_get(out: &mut Vec<u8>, url: &url::Url, opts: &RequestOptions<'_>) {
    out.extend_from_slice(b"GET ");
    let path = url.path();
    if path.starts_with('/') {
        out.extend_from_slice(path.as_bytes());
    } else {
        // Only non-special schemes can have an empty or relative-looking path.
        out.push(b'/');
        out.extend_from_slice(path.as_bytes());
    }
    if let Some(query) = url.query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    // `host_str` already brackets IPv6 literals; `port` is `None` for the scheme default.
    out.extend_from_slice(url.host_str().unwrap_or("").as_bytes());
    if let Some(port) = url.port() {
        out.push(b':');
        out.extend_from_slice(port.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend(
        opts.user_agent
            .bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\nAccept: ");
    out.extend_from_slice(ACCEPT.as_bytes());
    out.extend_from_slice(b"\r\nAccept-Encoding: ");
    out.extend_from_slice(ACCEPT_ENCODING.as_bytes());
    if opts.close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, close: bool) -> String {
        let url = url::Url::parse(url).unwrap();
        let mut out = Vec::new();
        write_get(
            &mut out,
            &url,
            &RequestOptions {
                user_agent: "rc/1",
                close,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_port_path_query_no_fragment() {
        assert_eq!(
            get("http://Example.COM/a/b?x=1&y=%20#frag", false),
            "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: rc/1\r\n\
             Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\
             Accept-Encoding: gzip, deflate\r\n\r\n"
        );
    }

    #[test]
    fn root_path_and_connection_close() {
        let req = get("http://example.com", true);
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: example.com\r\n"));
        assert!(req.ends_with("\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn non_default_port_kept_default_port_dropped() {
        assert!(get("http://127.0.0.1:8080/", false).contains("\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(get("http://127.0.0.1:80/", false).contains("\r\nHost: 127.0.0.1\r\n"));
        assert!(get("https://127.0.0.1:443/", false).contains("\r\nHost: 127.0.0.1\r\n"));
        assert!(get("https://127.0.0.1:80/", false).contains("\r\nHost: 127.0.0.1:80\r\n"));
    }

    #[test]
    fn ipv6_host_in_brackets() {
        assert!(get("http://[::1]/", false).contains("\r\nHost: [::1]\r\n"));
        assert!(get("http://[::1]:8443/x", false).contains("\r\nHost: [::1]:8443\r\n"));
    }

    #[test]
    fn user_agent_control_chars_cannot_inject_headers() {
        let url = url::Url::parse("http://127.0.0.1/").unwrap();
        let mut out = Vec::new();
        write_get(
            &mut out,
            &url,
            &RequestOptions {
                user_agent: "a\r\nX-Evil: 1",
                close: false,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\r\nUser-Agent: a  X-Evil: 1\r\n"));
        assert!(!s.contains("\r\nX-Evil"));
    }
}
