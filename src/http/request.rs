//! Request serialization (HTTP/1.1, keep-alive by default): the exact bytes of a request head.
//!
//! Owns the one request writer both `fetch` and `load` use ([`write_request`]): request line
//! (any [`Method`], the target in origin-form or, to an HTTP proxy, absolute-form), `Host`,
//! the run's [`HeaderBlock`] (ringcrawl's default `User-Agent`, `Accept` and
//! `Accept-Encoding`, and the user's extra headers, serialized once per run), an optional
//! `Proxy-Authorization`, an optional `Content-Length` and `Connection: close`; plus the
//! `CONNECT` request that opens a tunnel through a proxy ([`write_connect`]). Also owns the
//! validation of user-given headers ([`Header::parse`]) and methods ([`Method::parse`]).

use std::fmt;

/// The `Accept` header value sent with every request (unless an extra header replaces it).
pub const ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
/// The `Accept-Encoding` header value: the content codings `body` can decode.
pub const ACCEPT_ENCODING: &str = "gzip, deflate";

/// Header names ringcrawl writes itself and never takes from the user, each with why.
pub const RESERVED_HEADERS: [(&str, &str); 10] = [
    ("Host", "it is set from the URL"),
    ("Content-Length", "ringcrawl frames the request itself"),
    ("Transfer-Encoding", "ringcrawl frames the request itself"),
    ("Trailer", "ringcrawl frames the request itself"),
    ("Connection", "ringcrawl manages keep-alive itself"),
    ("Keep-Alive", "ringcrawl manages keep-alive itself"),
    ("Proxy-Connection", "ringcrawl manages keep-alive itself"),
    ("TE", "ringcrawl manages keep-alive itself"),
    ("Upgrade", "ringcrawl speaks HTTP/1.1 only"),
    (
        "Proxy-Authorization",
        "give proxy credentials in the proxy URL (they are never sent to origins)",
    ),
];

/// The default headers an extra header may replace, in the order they are written.
const DEFAULT_HEADER_NAMES: [&str; 3] = ["User-Agent", "Accept", "Accept-Encoding"];

/// Why a header line or a method given by the user is unusable (one line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0:?} is not `Name: value`")]
    NoColon(String),
    #[error("{0:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    BadName(String),
    #[error("the value of {0} contains a control character (CR, LF, NUL...)")]
    BadValue(String),
    #[error("{name} cannot be set: {why}")]
    Reserved { name: String, why: &'static str },
    #[error("{0:?} is not a method (a token such as GET, HEAD or POST)")]
    BadMethod(String),
}

/// RFC 9110 `tchar`: the bytes of a token (header names, methods).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A validated extra request header: the name a token, the value without control
/// characters (tab allowed) and without surrounding whitespace, the name not one of
/// [`RESERVED_HEADERS`]. An empty value means "send no such header" (so `Accept-Encoding:`
/// removes the default one, as with curl).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    name: String,
    value: String,
}

impl Header {
    /// Parse `Name: value`.
    pub fn parse(line: &str) -> Result<Header, HeaderError> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HeaderError::NoColon(line.to_string()))?;
        Header::new(name, value)
    }

    /// A header from its name and value (surrounding whitespace of the value dropped).
    pub fn new(name: &str, value: &str) -> Result<Header, HeaderError> {
        if !is_token(name) {
            return Err(HeaderError::BadName(name.to_string()));
        }
        if let Some((reserved, why)) = RESERVED_HEADERS
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(name))
        {
            return Err(HeaderError::Reserved {
                name: (*reserved).to_string(),
                why,
            });
        }
        let value = value.trim_matches([' ', '\t']);
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HeaderError::BadValue(name.to_string()));
        }
        Ok(Header {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether this header is called `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// A request method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    /// Any other token, as given (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// A method name: the common ones, or any other token.
    pub fn parse(s: &str) -> Result<Method, HeaderError> {
        Ok(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other if is_token(other) => Method::Other(other.to_string()),
            other => return Err(HeaderError::BadMethod(other.to_string())),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(m) => m,
        }
    }

    /// The response to this method has no body whatever its headers say
    /// (`ExchangeOptions::head_request`).
    pub fn is_head(&self) -> bool {
        matches!(self, Method::Head)
    }
}

/// The header lines every request of a run carries after `Host`, serialized once: the
/// default `User-Agent`, `Accept` and `Accept-Encoding`, each unless an extra header of that
/// name is given, then the extra headers in order (those with an empty value are not
/// written: they only remove a default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderBlock {
    /// `Name: value\r\n` lines.
    bytes: Vec<u8>,
}

impl HeaderBlock {
    /// The block for `user_agent` (empty: no `User-Agent`; control characters, which would
    /// split the line, become spaces) and the validated `extra` headers.
    pub fn new(user_agent: &str, extra: &[Header]) -> HeaderBlock {
        let mut bytes = Vec::new();
        let defaults = [user_agent, ACCEPT, ACCEPT_ENCODING];
        for (name, value) in DEFAULT_HEADER_NAMES.iter().zip(defaults) {
            if value.is_empty() || extra.iter().any(|h| h.is(name)) {
                continue;
            }
            push_line(&mut bytes, name, value);
        }
        for h in extra.iter().filter(|h| !h.value.is_empty()) {
            push_line(&mut bytes, &h.name, &h.value);
        }
        HeaderBlock { bytes }
    }

    /// The serialized lines, each ending in CRLF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(value.bytes().map(|b| {
        if b.is_ascii_control() && b != b'\t' {
            b' '
        } else {
            b
        }
    }));
    out.extend_from_slice(b"\r\n");
}

/// The form of the request target (RFC 9112 section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/path?query`: to the origin server itself (directly or through a CONNECT tunnel).
    Origin,
    /// `http://host:port/path?query`: to an HTTP proxy, which forwards it.
    Absolute,
}

/// One request head to write (see [`write_request`]).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub url: &'a url::Url,
    pub target: Target,
    /// The run's default and extra headers.
    pub headers: &'a HeaderBlock,
    /// The `Proxy-Authorization` value (`Basic ...`): only on a request to an HTTP proxy
    /// (absolute-form), never on one that reaches the origin.
    pub proxy_authorization: Option<&'a str>,
    /// `Content-Length` of the body the caller writes right after the head (exactly that
    /// many bytes); `None`: the request has no body and no `Content-Length`.
    pub body_len: Option<u64>,
    /// Ask the server to close after this response (`Connection: close`).
    pub close: bool,
}

/// Append the head of `req` to `out`: `METHOD target HTTP/1.1`, `Host` (with the port only
/// when it is not the scheme's default; an IPv6 literal in brackets), the header block,
/// `Proxy-Authorization`, `Content-Length` and `Connection: close` when asked, and the
/// empty line. The target never has the fragment or the userinfo of the URL.
///
/// `url` comes from the `url` crate, so its path and query are already percent-encoded and
/// free of spaces and control characters.
pub fn write_request(out: &mut Vec<u8>, req: &Request<'_>) {
    let url = req.url;
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    if req.target == Target::Absolute {
        out.extend_from_slice(url.scheme().as_bytes());
        out.extend_from_slice(b"://");
        push_authority(out, url);
    }
    let path = url.path();
    if !path.starts_with('/') {
        // Only non-special schemes can have an empty or relative-looking path.
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    if let Some(query) = url.query() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    push_authority(out, url);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.headers.as_bytes());
    if let Some(auth) = req.proxy_authorization {
        push_line(out, "Proxy-Authorization", auth);
    }
    if let Some(len) = req.body_len {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if req.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `host` or `host:port` of `url` (the port only when it is not the scheme's default).
fn push_authority(out: &mut Vec<u8>, url: &url::Url) {
    // `host_str` already brackets IPv6 literals; `port` is `None` for the scheme default.
    out.extend_from_slice(url.host_str().unwrap_or("").as_bytes());
    if let Some(port) = url.port() {
        out.push(b':');
        out.extend_from_slice(port.to_string().as_bytes());
    }
}

/// Append a `CONNECT host:port` request to `out`, asking a proxy for a tunnel to `url`'s
/// origin (the port always written: the scheme's default when the URL has none), with
/// `Host` the same authority, `User-Agent` (unless empty) and `Proxy-Authorization` when
/// given. The run's extra headers are for the origin and do not go on it.
pub fn write_connect(
    out: &mut Vec<u8>,
    url: &url::Url,
    user_agent: &str,
    proxy_authorization: Option<&str>,
) {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(443).to_string();
    for part in [
        b"CONNECT ".as_slice(),
        host.as_bytes(),
        b":",
        port.as_bytes(),
    ] {
        out.extend_from_slice(part);
    }
    for part in [b" HTTP/1.1\r\nHost: ".as_slice(), host.as_bytes(), b":"] {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(port.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !user_agent.is_empty() {
        push_line(out, "User-Agent", user_agent);
    }
    if let Some(auth) = proxy_authorization {
        push_line(out, "Proxy-Authorization", auth);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str = "User-Agent: rc/1\r\n\
                            Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\
                            Accept-Encoding: gzip, deflate\r\n";

    fn headers(extra: &[&str]) -> Vec<Header> {
        extra.iter().map(|h| Header::parse(h).unwrap()).collect()
    }

    fn write(url: &str, f: impl FnOnce(&mut Request<'_>)) -> String {
        let url = url::Url::parse(url).unwrap();
        let block = HeaderBlock::new("rc/1", &[]);
        let mut req = Request {
            method: &Method::Get,
            url: &url,
            target: Target::Origin,
            headers: &block,
            proxy_authorization: None,
            body_len: None,
            close: false,
        };
        f(&mut req);
        let mut out = Vec::new();
        write_request(&mut out, &req);
        String::from_utf8(out).unwrap()
    }

    fn get(url: &str, close: bool) -> String {
        write(url, |r| r.close = close)
    }

    #[test]
    fn default_port_path_query_no_fragment() {
        assert_eq!(
            get("http://Example.COM/a/b?x=1&y=%20#frag", false),
            format!("GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\n{DEFAULTS}\r\n")
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
        let block = HeaderBlock::new("a\r\nX-Evil: 1", &[]);
        let s = String::from_utf8(block.as_bytes().to_vec()).unwrap();
        assert!(s.starts_with("User-Agent: a  X-Evil: 1\r\n"), "{s}");
        assert!(!s.contains("\r\nX-Evil"));
    }

    #[test]
    fn absolute_form_to_a_proxy_without_userinfo_or_fragment() {
        let req = write("http://user:pw@a.example:8080/p?q=1#f", |r| {
            r.target = Target::Absolute;
            r.proxy_authorization = Some("Basic dTpw");
        });
        assert_eq!(
            req,
            format!(
                "GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\n{DEFAULTS}\
                 Proxy-Authorization: Basic dTpw\r\n\r\n"
            )
        );
        let req = write("http://[::1]/", |r| r.target = Target::Absolute);
        assert!(req.starts_with("GET http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\n"));
    }

    #[test]
    fn post_and_head_heads() {
        let url = url::Url::parse("http://h.example/submit").unwrap();
        let block = HeaderBlock::new("rc/1", &headers(&["Content-Type: application/json"]));
        let mut out = Vec::new();
        write_request(
            &mut out,
            &Request {
                method: &Method::Post,
                url: &url,
                target: Target::Origin,
                headers: &block,
                proxy_authorization: None,
                body_len: Some(13),
                close: true,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "POST /submit HTTP/1.1\r\nHost: h.example\r\n{DEFAULTS}\
                 Content-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
            )
        );
        let head = write("http://h.example/", |r| r.method = &Method::Head);
        assert_eq!(
            head,
            format!("HEAD / HTTP/1.1\r\nHost: h.example\r\n{DEFAULTS}\r\n")
        );
        let empty = write("http://h.example/", |r| {
            r.method = &Method::Put;
            r.body_len = Some(0);
        });
        assert!(empty.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{empty}");
        assert!(Method::Head.is_head() && !Method::Get.is_head());
    }

    #[test]
    fn extra_headers_follow_the_defaults_and_replace_or_remove_them() {
        let block = |extra: &[&str]| {
            String::from_utf8(
                HeaderBlock::new("rc/1", &headers(extra))
                    .as_bytes()
                    .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(
            block(&["X-A: 1", "x-b:two words ", "X-A: 2"]),
            format!("{DEFAULTS}X-A: 1\r\nx-b: two words\r\nX-A: 2\r\n")
        );
        assert_eq!(
            block(&["user-agent: other/2", "Accept: */*"]),
            "Accept-Encoding: gzip, deflate\r\nuser-agent: other/2\r\nAccept: */*\r\n"
        );
        assert_eq!(
            block(&["Accept-Encoding:", "User-Agent:  "]),
            "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
        );
        assert_eq!(
            String::from_utf8(HeaderBlock::new("", &[]).as_bytes().to_vec()).unwrap(),
            "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n\
             Accept-Encoding: gzip, deflate\r\n"
        );
    }

    #[test]
    fn header_validation() {
        assert_eq!(
            Header::parse("X-Tab:\ta\tb\t").unwrap().value(),
            "a\tb",
            "tabs inside are allowed, around are trimmed"
        );
        assert_eq!(Header::parse("X-Utf8: é").unwrap().to_string(), "X-Utf8: é");
        assert!(matches!(
            Header::parse("no colon"),
            Err(HeaderError::NoColon(_))
        ));
        for bad in ["X A: 1", ": 1", "X(A): 1", "Ä: 1", " X: 1"] {
            assert!(
                matches!(Header::parse(bad), Err(HeaderError::BadName(_))),
                "{bad}"
            );
        }
        for bad in ["X: a\rb", "X: a\nb", "X: a\0b", "X: a\x1bb", "X: a\x7f"] {
            assert!(
                matches!(Header::parse(bad), Err(HeaderError::BadValue(_))),
                "{bad:?}"
            );
        }
        for name in [
            "host",
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Keep-Alive",
            "te",
            "Trailer",
            "upgrade",
            "Proxy-Connection",
            "proxy-authorization",
        ] {
            let e = Header::parse(&format!("{name}: x")).unwrap_err();
            assert!(matches!(e, HeaderError::Reserved { .. }), "{name}");
            assert!(e.to_string().contains("cannot be set: "), "{e}");
        }
        assert_eq!(
            Header::parse("HOST: x").unwrap_err().to_string(),
            "Host cannot be set: it is set from the URL"
        );
    }

    #[test]
    fn methods() {
        assert_eq!(Method::parse("POST").unwrap(), Method::Post);
        assert_eq!(Method::parse("PURGE").unwrap().as_str(), "PURGE");
        assert_eq!(
            Method::parse("get").unwrap(),
            Method::Other("get".into()),
            "methods are case-sensitive"
        );
        for bad in ["", "GE T", "GET\r\n"] {
            assert!(Method::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connect_request() {
        let url = url::Url::parse("https://a.example/x?y").unwrap();
        let mut out = Vec::new();
        write_connect(&mut out, &url, "rc/1", Some("Basic dTpw"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nUser-Agent: rc/1\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let url = url::Url::parse("https://[::1]:8443/").unwrap();
        let mut out = Vec::new();
        write_connect(&mut out, &url, "", None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"
        );
    }
}
