//! HTTP proxies, sans-IO: a proxy URL ([`Proxy`]: host, port, credentials as a
//! `Proxy-Authorization` value, the keep-alive pool key of forwarded requests), the
//! `NO_PROXY` matcher ([`NoProxy`]), the route a URL takes ([`Proxies::route`]: direct,
//! forwarded in absolute-form to an HTTP proxy, or through a `CONNECT` tunnel), which
//! environment variables name the proxy of a scheme ([`env_proxy`], curl's rules), the
//! `CONNECT` handshake ([`Tunnel`]) and [`ProxyError`], the `proxy` error kind.
//!
//! Nothing here reads the environment, resolves a name or touches a socket: `options` builds
//! the [`Proxies`] of a run from its layers (the environment read once, at start), and
//! `fetch` and `net` do the I/O.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;
use url::Url;

use crate::http::{HttpError, ResponseReader};

/// Port of a proxy URL that names none (curl's default).
pub(crate) const DEFAULT_PROXY_PORT: u16 = 1080;

/// The environment variables that name the proxy for `http://` URLs, first set (and
/// non-empty) wins. Upper-case `HTTP_PROXY` is ignored, as curl does: CGI programs get a
/// request's `Proxy:` header as `HTTP_PROXY` ("httpoxy").
pub(crate) const HTTP_PROXY_VARS: [&str; 3] = ["http_proxy", "all_proxy", "ALL_PROXY"];
/// The same for `https://` URLs.
pub(crate) const HTTPS_PROXY_VARS: [&str; 4] =
    ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The environment variables listing the hosts reached without a proxy.
pub(crate) const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// The first of `vars` that `get` finds set and non-empty, with its value.
pub(crate) fn env_proxy(
    vars: &[&'static str],
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<(&'static str, String)> {
    vars.iter()
        .find_map(|&v| get(v).filter(|s| !s.is_empty()).map(|s| (v, s)))
}

/// An HTTP proxy (`http://[user:password@]host[:port]`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    host: url::Host<String>,
    port: u16,
    /// `Basic base64(user:password)` when the URL has credentials.
    authorization: Option<String>,
    /// `host:port` (IPv6 in brackets) for messages: never the credentials.
    display: String,
    /// The keep-alive pool key of requests forwarded through this proxy: one connection to
    /// it serves every `http://` origin.
    key: String,
}

impl Proxy {
    /// Parse a proxy URL as curl takes it: the scheme may be left out (`proxy:3128` is
    /// `http://proxy:3128`), the port defaults to [`DEFAULT_PROXY_PORT`], credentials are
    /// percent-decoded. Only `http://` proxies: TLS to the proxy and SOCKS are refused.
    pub(crate) fn parse(s: &str) -> Result<Proxy, String> {
        let with_scheme;
        let text = if s.contains("://") {
            s
        } else {
            with_scheme = format!("http://{s}");
            &with_scheme
        };
        let url = Url::parse(text).map_err(|e| format!("`{s}` is not a proxy URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(format!(
                    "`{s}`: https:// proxies (TLS to the proxy) are not supported, only http://"
                ))
            }
            sch if sch.starts_with("socks") => {
                return Err(format!(
                    "`{s}`: SOCKS proxies are not supported, only http://"
                ))
            }
            sch => {
                return Err(format!(
                    "`{s}`: unsupported proxy scheme {sch:?}, only http://"
                ))
            }
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{s}`: a proxy URL has no path, query or fragment"));
        }
        let host = url
            .host()
            .ok_or_else(|| format!("`{s}` has no host"))?
            .to_owned();
        // `Url` drops a port equal to the scheme's default (80): look at the text for it.
        let port = url
            .port()
            .or_else(|| written_port(text))
            .unwrap_or(DEFAULT_PROXY_PORT);
        let authorization = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => {
                let decode = |p: &str| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| format!("`{s}`: credentials are not UTF-8"))
                };
                let pair = format!("{}:{}", decode(user)?, decode(password.unwrap_or(""))?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        };
        let display = format!("{host}:{port}");
        Ok(Proxy {
            key: format!("proxy+http://{display}"),
            host,
            port,
            authorization,
            display,
        })
    }

    /// The host to connect to (a name is resolved locally).
    pub(crate) fn host(&self) -> &url::Host<String> {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The `Proxy-Authorization` value, when the URL has credentials.
    pub(crate) fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// The keep-alive pool key of the requests forwarded through this proxy.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// The explicit port of a URL's authority, if the text writes one.
fn written_port(text: &str) -> Option<u16> {
    let rest = &text[text.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostport = &authority[authority.rfind('@').map_or(0, |i| i + 1)..];
    let colon = hostport.rfind(':')?;
    if hostport[colon..].contains(']') {
        return None;
    }
    hostport[colon + 1..].parse().ok()
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Never prints the credentials (configuration changes are logged with `Debug`).
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.authorization.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "http://{auth}{}", self.display)
    }
}

/// What one `NO_PROXY` entry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    All,
    /// A host name and every name under it (lower case, without dots at either end).
    Name(String),
    /// An address or a CIDR block, for hosts written as IP literals.
    Net(IpNet),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    /// Only URLs to this port (`host:port` entries); `None`: any port.
    port: Option<u16>,
}

/// The hosts reached without a proxy (`NO_PROXY`, `--noproxy`), with curl's rules and Go's
/// port entries: a comma- or space-separated list of entries; `*` matches every host; a name
/// matches itself and every name under it (`example.com` and `.example.com` both match
/// `example.com` and `www.example.com`, not `notexample.com`; a leading `*.` is taken as
/// `.`); an IP address or a CIDR block (`10.0.0.0/8`, `::1`, `[::1]`) matches the URLs
/// whose host is an address in it (a name is never resolved to be matched); `entry:port`
/// matches only that port. Names compare case-insensitively, trailing dots ignored. An
/// entry that is none of these is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    entries: Vec<Entry>,
}

impl NoProxy {
    pub(crate) fn parse(list: &str) -> NoProxy {
        let entries = list
            .split([',', ' ', '\t'])
            .filter(|t| !t.is_empty())
            .filter_map(parse_entry)
            .collect();
        NoProxy { entries }
    }

    /// Whether a URL to `host`:`port` goes without a proxy.
    pub(crate) fn matches(&self, host: &url::Host<&str>, port: u16) -> bool {
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.pattern, host) {
                    (Pattern::All, _) => true,
                    (Pattern::Name(n), url::Host::Domain(d)) => name_under(d, n),
                    (Pattern::Net(net), url::Host::Ipv4(ip)) => net.contains(&IpAddr::V4(*ip)),
                    (Pattern::Net(net), url::Host::Ipv6(ip)) => net.contains(&IpAddr::V6(*ip)),
                    _ => false,
                }
        })
    }
}

/// Whether host name `d` is `n` or a name under it (trailing dot of `d` ignored).
fn name_under(d: &str, n: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d).as_bytes();
    let n = n.as_bytes();
    match d.len().checked_sub(n.len()) {
        Some(0) => d.eq_ignore_ascii_case(n),
        Some(at) => d[at - 1] == b'.' && d[at..].eq_ignore_ascii_case(n),
        None => false,
    }
}

fn parse_entry(token: &str) -> Option<Entry> {
    if token == "*" {
        return Some(Entry {
            pattern: Pattern::All,
            port: None,
        });
    }
    // `[v6]`, `[v6]:port`, `v6` (two colons or more: no port), `host`, `host:port`.
    let (host, port) = if let Some(inner) = token.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        match rest {
            "" => (addr, None),
            _ => (addr, Some(rest.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match token.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p.parse().ok()?)),
            _ => (token, None),
        }
    };
    if let Ok(net) = host.parse::<IpNet>() {
        return Some(Entry {
            pattern: Pattern::Net(net),
            port,
        });
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Entry {
            pattern: Pattern::Net(IpNet::from(ip)),
            port,
        });
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name = name.trim_matches('.');
    if name.is_empty() || name.contains(['*', '/']) {
        return None;
    }
    Some(Entry {
        pattern: Pattern::Name(name.to_ascii_lowercase()),
        port,
    })
}

/// The proxies of a run, by scheme, and the hosts reached without them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    pub http: Option<Proxy>,
    pub https: Option<Proxy>,
    pub no_proxy: NoProxy,
}

/// How a URL is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// Connect to the URL's host.
    Direct,
    /// `http://`: send the request in absolute-form to this proxy, which forwards it.
    Forward(&'a Proxy),
    /// `https://`: ask this proxy for a `CONNECT` tunnel to the origin, then TLS through it.
    Tunnel(&'a Proxy),
}

impl<'a> Route<'a> {
    /// The proxy of this route, if any.
    pub(crate) fn proxy(self) -> Option<&'a Proxy> {
        match self {
            Route::Direct => None,
            Route::Forward(p) | Route::Tunnel(p) => Some(p),
        }
    }

    /// The keep-alive pool key of connections on this route, when it is not the origin's:
    /// requests forwarded to a proxy share its connections, whatever their origin (a
    /// tunnel carries one origin, so it is pooled under the origin's key).
    pub(crate) fn pool_key(self) -> Option<&'a str> {
        match self {
            Route::Forward(p) => Some(p.key()),
            Route::Direct | Route::Tunnel(_) => None,
        }
    }
}

impl Proxies {
    /// No proxy for any URL.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The route of `url`: cheap (a scheme check, then the `NO_PROXY` match only when a
    /// proxy is set for the scheme).
    pub(crate) fn route(&self, url: &Url) -> Route<'_> {
        let https = url.scheme() == "https";
        let proxy = if https { &self.https } else { &self.http };
        let Some(proxy) = proxy else {
            return Route::Direct;
        };
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(host) if self.no_proxy.matches(&host, port) => Route::Direct,
            _ if https => Route::Tunnel(proxy),
            _ => Route::Forward(proxy),
        }
    }
}

/// Why a proxy failed a URL (error kind `proxy`). One line; never the credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The proxy's name did not resolve, connecting to it failed, or the connection broke
    /// before it answered a `CONNECT`.
    #[error("proxy {proxy}: {why}")]
    Unreachable {
        proxy: String,
        why: String,
        /// Worth another attempt (a timeout, a reset, a connection closed early).
        transient: bool,
    },
    /// 407: the proxy wants (other) credentials.
    #[error("proxy {proxy} answered 407 Proxy Authentication Required ({})",
        if *.sent { "it rejected the credentials of the proxy URL" } else { "the proxy URL has no credentials" })]
    AuthRequired { proxy: String, sent: bool },
    /// A `CONNECT` answered with a status other than 2xx (and 407).
    #[error("proxy {proxy} answered CONNECT {target} with status {status}")]
    Refused {
        proxy: String,
        target: String,
        status: u16,
    },
    /// The answer to a `CONNECT` was not HTTP, or had bytes after its head.
    #[error("proxy {proxy} answered CONNECT {target} with a malformed response: {why}")]
    Malformed {
        proxy: String,
        target: String,
        why: String,
    },
}

impl ProxyError {
    /// Whether the failure may go away on its own (see `retry`).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ProxyError::Unreachable { transient, .. } => *transient,
            ProxyError::Refused { status, .. } => crate::retry::transient_status(*status),
            ProxyError::AuthRequired { .. } | ProxyError::Malformed { .. } => false,
        }
    }

    /// This `Tunnel` failure of `proxy` for a tunnel to `url`'s origin.
    pub(crate) fn from_tunnel(e: TunnelError, proxy: &Proxy, url: &Url) -> ProxyError {
        let proxy_name = proxy.to_string();
        let target = || {
            format!(
                "{}:{}",
                url.host_str().unwrap_or(""),
                url.port_or_known_default().unwrap_or(0)
            )
        };
        match e {
            TunnelError::Status(407) => ProxyError::AuthRequired {
                proxy: proxy_name,
                sent: proxy.authorization.is_some(),
            },
            TunnelError::Status(status) => ProxyError::Refused {
                proxy: proxy_name,
                target: target(),
                status,
            },
            TunnelError::Closed => ProxyError::Unreachable {
                proxy: proxy_name,
                why: "connection closed before the answer to CONNECT".into(),
                transient: true,
            },
            TunnelError::Malformed(why) => ProxyError::Malformed {
                proxy: proxy_name,
                target: target(),
                why,
            },
        }
    }
}

/// Why a `CONNECT` did not open a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TunnelError {
    /// A final status other than 2xx.
    Status(u16),
    /// The proxy closed the connection before a complete answer.
    Closed,
    /// Not an HTTP answer, or bytes after a 2xx head (the origin cannot have spoken yet).
    Malformed(String),
}

/// The client side of a `CONNECT` handshake, sans-IO: fed the proxy's answer as it arrives,
/// it says when the tunnel is open. The answer is a response head (1xx heads skipped) whose
/// 2xx status opens the tunnel; a 2xx answer has no body (RFC 9110 section 9.3.6), so its
/// `Content-Length` or `Transfer-Encoding` are ignored.
pub(crate) struct Tunnel {
    reader: ResponseReader,
}

impl Tunnel {
    pub(crate) fn new() -> Tunnel {
        // A head request's reader: the answer ends at its head, whatever its headers say.
        Tunnel {
            reader: ResponseReader::new(0, true),
        }
    }

    /// `bytes` (not empty) arrived: `Ok(true)` when the tunnel is open, `Ok(false)` when
    /// more of the answer is needed.
    pub(crate) fn received(&mut self, bytes: &[u8]) -> Result<bool, TunnelError> {
        let taken = self
            .reader
            .feed(bytes, &mut |_| {})
            .map_err(|e| TunnelError::Malformed(e.to_string()))?;
        if !self.reader.is_done() {
            return Ok(false);
        }
        let status = self.reader.head().map_or(0, |h| h.status);
        if !(200..300).contains(&status) {
            return Err(TunnelError::Status(status));
        }
        if taken < bytes.len() {
            return Err(TunnelError::Malformed(format!(
                "{} bytes after a {status} head",
                bytes.len() - taken
            )));
        }
        Ok(true)
    }

    /// The proxy closed the connection before the answer was complete.
    pub(crate) fn closed(&mut self) -> TunnelError {
        match self.reader.eof(&mut |_| {}) {
            Err(HttpError::ClosedBeforeHead(_)) => TunnelError::Closed,
            Err(e) => TunnelError::Malformed(e.to_string()),
            Ok(()) => TunnelError::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> url::Host<String> {
        url::Host::parse(s).unwrap()
    }

    fn matches(list: &str, h: &str, port: u16) -> bool {
        let h = host(h);
        let h = match &h {
            url::Host::Domain(d) => url::Host::Domain(d.as_str()),
            url::Host::Ipv4(ip) => url::Host::Ipv4(*ip),
            url::Host::Ipv6(ip) => url::Host::Ipv6(*ip),
        };
        NoProxy::parse(list).matches(&h, port)
    }

    #[test]
    fn no_proxy_names_match_themselves_and_below() {
        for list in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.COM.",
        ] {
            assert!(matches(list, "example.com", 80), "{list}");
            assert!(matches(list, "www.example.com", 443), "{list}");
            assert!(matches(list, "a.b.example.com.", 80), "{list}");
            assert!(!matches(list, "notexample.com", 80), "{list}");
            assert!(!matches(list, "example.com.org", 80), "{list}");
        }
        assert!(!matches("www.example.com", "example.com", 80));
        assert!(!matches("", "example.com", 80));
        assert!(!matches(",, ,", "example.com", 80));
        assert!(matches("a.test, example.com ,b.test", "x.example.com", 80));
        assert!(matches("a.test example.com", "example.com", 80));
    }

    #[test]
    fn no_proxy_star_addresses_cidrs_and_ports() {
        assert!(matches("*", "anything.test", 1));
        assert!(matches("*", "10.1.2.3", 1));
        assert!(matches("a.test,*", "b.test", 1));
        assert!(!matches("*.", "b.test", 1), "a broken entry is ignored");
        assert!(matches("127.0.0.1", "127.0.0.1", 8080));
        assert!(!matches("127.0.0.1", "127.0.0.2", 8080));
        assert!(
            !matches("127.0.0.1", "localhost", 80),
            "names are not resolved"
        );
        assert!(!matches("localhost", "127.0.0.1", 80));
        assert!(matches("10.0.0.0/8", "10.200.0.1", 80));
        assert!(!matches("10.0.0.0/8", "11.0.0.1", 80));
        assert!(matches("::1", "[::1]", 80));
        assert!(matches("[::1]", "[::1]", 80));
        assert!(matches("fd00::/8", "[fd12::1]", 80));
        assert!(!matches("fd00::/8", "[fe80::1]", 80));
        assert!(matches("example.com:8080", "www.example.com", 8080));
        assert!(!matches("example.com:8080", "www.example.com", 80));
        assert!(matches("127.0.0.1:3000", "127.0.0.1", 3000));
        assert!(!matches("127.0.0.1:3000", "127.0.0.1", 3001));
        assert!(matches("[::1]:3000", "[::1]", 3000));
        assert!(!matches("[::1]:3000", "[::1]", 80));
        assert!(
            !matches("example.com:x", "example.com", 80),
            "bad port: ignored"
        );
    }

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://127.0.0.1:3128").unwrap();
        assert_eq!(p.host(), &host("127.0.0.1"));
        assert_eq!((p.port(), p.authorization()), (3128, None));
        assert_eq!(p.to_string(), "127.0.0.1:3128");
        assert_eq!(p.key(), "proxy+http://127.0.0.1:3128");
        let p = Proxy::parse("Proxy.Corp").unwrap();
        assert_eq!(p.host(), &host("proxy.corp"));
        assert_eq!(p.port(), DEFAULT_PROXY_PORT, "curl's default port");
        assert_eq!(Proxy::parse("http://proxy:80/").unwrap().port(), 80);
        assert_eq!(Proxy::parse("u:p@proxy:80").unwrap().port(), 80);
        assert_eq!(Proxy::parse("http://[::1]:8080").unwrap().port(), 8080);
        assert_eq!(Proxy::parse("http://[::1]").unwrap().port(), 1080);
        assert_eq!(
            Proxy::parse("http://[::1]").unwrap().to_string(),
            "[::1]:1080"
        );
        // RFC 7617's example, and percent-decoded credentials.
        let p = Proxy::parse("http://Aladdin:open%20sesame@p:3128").unwrap();
        assert_eq!(
            p.authorization(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        assert_eq!(format!("{p:?}"), "http://***@p:3128");
        assert!(!p.to_string().contains("Aladdin"));
        let p = Proxy::parse("http://user@p:3128").unwrap();
        assert_eq!(p.authorization(), Some("Basic dXNlcjo="));
        for (bad, why) in [
            ("https://p:443", "https:// proxies"),
            ("socks5://p:1080", "SOCKS proxies"),
            ("ftp://p", "unsupported proxy scheme"),
            ("http://p:3128/path", "no path"),
            ("http://p:3128/?q", "no path"),
            ("http://", "is not a proxy URL"),
            ("http://p:99999", "is not a proxy URL"),
            ("http://%ff:x@p", "not UTF-8"),
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn routes_by_scheme_and_no_proxy() {
        let p = |s| Some(Proxy::parse(s).unwrap());
        let url = |s| Url::parse(s).unwrap();
        let none = Proxies::default();
        assert!(none.is_empty());
        assert_eq!(none.route(&url("http://a.test/")), Route::Direct);
        let ps = Proxies {
            http: p("http://h:1"),
            https: p("http://s:2"),
            no_proxy: NoProxy::parse("local.test,10.0.0.0/8"),
        };
        assert!(matches!(ps.route(&url("http://a.test/")), Route::Forward(x) if x.port() == 1));
        assert!(matches!(ps.route(&url("https://a.test/")), Route::Tunnel(x) if x.port() == 2));
        assert_eq!(ps.route(&url("http://www.local.test/")), Route::Direct);
        assert_eq!(ps.route(&url("https://10.9.9.9/")), Route::Direct);
        let only_https = Proxies {
            https: p("http://s:2"),
            ..Proxies::default()
        };
        assert_eq!(only_https.route(&url("http://a.test/")), Route::Direct);
        assert!(matches!(
            only_https.route(&url("https://a.test/")),
            Route::Tunnel(_)
        ));
    }

    #[test]
    fn env_variables_first_set_wins_and_upper_case_http_proxy_is_ignored() {
        let env = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| map.get(k).cloned()
        };
        let get = env(&[
            ("HTTP_PROXY", "http://evil:1"),
            ("ALL_PROXY", "http://all:2"),
        ]);
        assert_eq!(
            env_proxy(&HTTP_PROXY_VARS, &get),
            Some(("ALL_PROXY", "http://all:2".to_string()))
        );
        let get = env(&[("https_proxy", ""), ("HTTPS_PROXY", "http://s:3")]);
        assert_eq!(
            env_proxy(&HTTPS_PROXY_VARS, &get),
            Some(("HTTPS_PROXY", "http://s:3".to_string())),
            "an empty variable counts as unset"
        );
        let get = env(&[("https_proxy", "http://a:1"), ("HTTPS_PROXY", "http://b:2")]);
        assert_eq!(env_proxy(&HTTPS_PROXY_VARS, &get).unwrap().0, "https_proxy");
        assert_eq!(env_proxy(&NO_PROXY_VARS, &env(&[])), None);
    }

    fn tunnel(answer: &[&[u8]]) -> Result<bool, TunnelError> {
        let mut t = Tunnel::new();
        let mut last = Ok(false);
        for piece in answer {
            last = t.received(piece);
            if last != Ok(false) {
                break;
            }
        }
        last
    }

    #[test]
    fn connect_answers() {
        assert_eq!(
            tunnel(&[b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy\r\n\r\n"]),
            Ok(true)
        );
        assert_eq!(
            tunnel(&[b"HTTP/1.1 200 OK\r\n", b"Content-Length: 5\r\n", b"\r\n"]),
            Ok(true),
            "a 2xx to CONNECT has no body, whatever its headers say"
        );
        assert_eq!(
            tunnel(&[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"]),
            Ok(true)
        );
        assert_eq!(
            tunnel(&[
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nno!"
            ]),
            Err(TunnelError::Status(407))
        );
        assert_eq!(
            tunnel(&[b"HTTP/1.1 403 Forbidden\r\n\r\n"]),
            Err(TunnelError::Status(403))
        );
        assert!(matches!(
            tunnel(&[b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01"]),
            Err(TunnelError::Malformed(m)) if m == "3 bytes after a 200 head"
        ));
        assert!(matches!(
            tunnel(&[b"SSH-2.0-OpenSSH\r\n\r\n"]),
            Err(TunnelError::Malformed(m)) if m.contains("bad status line")
        ));
        let mut t = Tunnel::new();
        assert_eq!(t.closed(), TunnelError::Closed);
        let mut t = Tunnel::new();
        assert_eq!(t.received(b"HTTP/1.1 2"), Ok(false));
        assert_eq!(t.closed(), TunnelError::Closed);
    }

    #[test]
    fn proxy_errors_name_the_proxy_never_the_credentials() {
        let with = Proxy::parse("http://u:secret@p.test:3128").unwrap();
        let url = Url::parse("https://a.test/").unwrap();
        let e = ProxyError::from_tunnel(TunnelError::Status(407), &with, &url);
        assert_eq!(
            e.to_string(),
            "proxy p.test:3128 answered 407 Proxy Authentication Required (it rejected the \
             credentials of the proxy URL)"
        );
        assert!(!e.is_transient());
        let without = Proxy::parse("p.test:3128").unwrap();
        let e = ProxyError::from_tunnel(TunnelError::Status(407), &without, &url);
        assert!(
            e.to_string()
                .ends_with("(the proxy URL has no credentials)"),
            "{e}"
        );
        let e = ProxyError::from_tunnel(TunnelError::Status(403), &with, &url);
        assert_eq!(
            e.to_string(),
            "proxy p.test:3128 answered CONNECT a.test:443 with status 403"
        );
        assert!(!e.is_transient());
        let e = ProxyError::from_tunnel(TunnelError::Status(503), &with, &url);
        assert!(e.is_transient());
        let e = ProxyError::from_tunnel(TunnelError::Closed, &with, &url);
        assert!(e.is_transient());
        assert!(!e.to_string().contains("secret"));
    }
}
