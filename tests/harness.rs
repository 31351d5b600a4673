//! Sanity tests of the test infrastructure itself (no ringcrawl binary involved): nginx
//! serves the generated site for the right Host header (and over TLS with the generated
//! certificates, the bad ones failing), dnsmasq resolves generated names and NXDOMAINs
//! unknown ones, the fault DNS servers fail as designed, and every FaultServer path produces
//! its shape.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::dns::{query_a, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL};
use support::dnsmasq::{NO_ADDRESS_NAME, NXDOMAIN_NAME};
use support::pages::{render, PageKind};
use support::tls::{EXPIRED_HOST, SELF_SIGNED_HOST, WRONG_NAME_HOST};
use support::{
    Blackhole, Dnsmasq, FaultDns, FaultDnsMode, FaultServer, Nginx, Site, SiteSpec, TlsCerts,
};

/// How a raw exchange ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Idle,
    Reset,
    Limit,
}

/// Send `request` and read until EOF, `idle` without a byte, a reset, or `limit` bytes.
fn exchange(addr: SocketAddr, request: &[u8], idle: Duration, limit: usize) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(idle)).expect("timeout");
    s.write_all(request).expect("send request");
    read_until_end(&mut s, limit)
}

fn read_until_end(s: &mut TcpStream, limit: usize) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if out.len() >= limit {
            return (out, End::Limit);
        }
        match s.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, End::Idle)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, End::Reset),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Send `request` and collect whatever arrives within `total` wall time.
fn read_for(addr: SocketAddr, request: &[u8], total: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request).expect("send request");
    let end = Instant::now() + total;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: harness\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

fn get_close(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Split a raw response into (head text, body bytes).
fn split(resp: &[u8]) -> (String, Vec<u8>) {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a head");
    (
        String::from_utf8_lossy(&resp[..end]).into_owned(),
        resp[end + 4..].to_vec(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

const IDLE: Duration = Duration::from_secs(3);
const LIMIT: usize = 1 << 20;

#[test]
fn nginx_serves_every_site_url_by_host_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = Site::generate(
        dir.path(),
        SiteSpec {
            hosts: 3,
            pages: PageKind::ALL.len(),
            blogs: 3,
        },
    );
    let nginx = Nginx::start(&site, None);
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let expects = site.expect("http", nginx.port);
    assert_eq!(expects.len(), 3 * (PageKind::ALL.len() + 5));
    for e in &expects {
        let rest = e.url.strip_prefix("http://").expect("http url");
        let (authority, path) = rest.split_at(rest.find('/').expect("path"));
        let host = authority.split(':').next().expect("host");
        let (resp, end) = exchange(addr, &get_close(path, host), IDLE, LIMIT);
        assert_eq!(end, End::Eof, "{}", e.url);
        let (head, body) = split(&resp);
        let status: u16 = head[9..12].parse().expect("status code");
        if e.redirects == 0 {
            assert_eq!(status, e.status, "{}: {head}", e.url);
            let file = if status == 404 {
                "404.html"
            } else {
                &path[1..]
            };
            let on_disk = std::fs::read(dir.path().join(host).join(file)).expect("page on disk");
            assert_eq!(body, on_disk, "{}", e.url);
            let ct = header(&head, "content-type");
            assert_eq!(ct.len(), 1, "{}: {head}", e.url);
        } else {
            assert!(matches!(status, 301 | 302 | 307 | 308), "{}: {head}", e.url);
            let loc = header(&head, "location");
            assert_eq!(loc.len(), 1, "{}: {head}", e.url);
            if e.redirects == 1 {
                assert_eq!(loc[0], e.final_url, "{}", e.url);
            }
        }
    }
    // Content types by extension, as pages.rs declares them.
    let (resp, _) = exchange(
        addr,
        &get_close("/p0000.hu8", "h0000.site.test"),
        IDLE,
        LIMIT,
    );
    assert_eq!(
        header(&split(&resp).0, "content-type"),
        ["text/html; charset=utf-8"]
    );
    // An unknown Host gets the empty default server.
    let (resp, _) = exchange(
        addr,
        &get_close("/p0000.hu8", "nobody.site.test"),
        IDLE,
        LIMIT,
    );
    assert!(
        resp.starts_with(b"HTTP/1.1 421"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // Blog index with its h3 link.
    let (resp, _) = exchange(addr, &get_close("/", "b000.blog.test"), IDLE, LIMIT);
    let (_, body) = split(&resp);
    assert!(String::from_utf8_lossy(&body).contains("<h3><a href=\"posts/first-0.html\">"));
    // Keep-alive works: two requests on one connection.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut two = get("/p0001.html", "h0000.site.test");
    two.extend(get("/missing.html", "h0000.site.test"));
    s.write_all(&two).expect("write");
    let (resp, end) = read_until_end(&mut s, LIMIT);
    assert_eq!(end, End::Idle);
    assert_eq!(resp.windows(9).filter(|w| w == b"HTTP/1.1 ").count(), 2);
}

fn tls_client(ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("read CA");
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.expect("CA pem")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// GET `/` over TLS to `host` (SNI + Host); the whole response or the TLS error text.
fn tls_get(
    cfg: &Arc<rustls::ClientConfig>,
    port: u16,
    host: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client conn");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect tls port");
    sock.set_read_timeout(Some(IDLE)).expect("timeout");
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    stream
        .write_all(&get_close(path, host))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // nginx may close without close_notify after a Connection: close response.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => Ok(out),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn nginx_tls_listener_serves_with_generated_certificates() {
    let certs = TlsCerts::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = Site::generate(
        dir.path(),
        SiteSpec {
            hosts: 2,
            pages: 2,
            blogs: 0,
        },
    );
    let nginx = Nginx::start(&site, Some(&certs.nginx_tls()));
    let port = nginx.tls_port.expect("tls port");
    let cfg = tls_client(&certs.ca);
    let page = render(
        PageKind::ALL[7 % PageKind::ALL.len()],
        "h0001.site.test p0000",
    );
    let path = format!("/p0000.{}", page.content_type.extension());
    let ok = tls_get(&cfg, port, "h0001.site.test", &path)
        .unwrap_or_else(|e| panic!("TLS GET: {e}\n{}", nginx.logs()));
    assert!(
        ok.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    assert!(
        ok.ends_with(&page.body),
        "TLS body differs from the page on disk"
    );
    for (host, why) in [
        (EXPIRED_HOST, "expired"),
        (WRONG_NAME_HOST, "not valid for name"),
        (SELF_SIGNED_HOST, "UnknownIssuer"),
    ] {
        let err = tls_get(&cfg, port, host, "/").expect_err(host);
        assert!(
            err.contains(why) || err.to_lowercase().contains(&why.to_lowercase()),
            "{host}: {err}"
        );
    }
}

#[test]
fn dnsmasq_resolves_generated_names_and_nxdomains_others() {
    let names: Vec<String> = (0..50).map(|i| format!("h{i:04}.site.test")).collect();
    let dns = Dnsmasq::start(&names);
    let t = Duration::from_secs(2);
    for n in [&names[0], &names[49]] {
        let ans = query_a(dns.addr, n, t).expect("answer");
        assert_eq!(ans.rcode, RCODE_NOERROR, "{n}");
        assert_eq!(ans.a, [std::net::Ipv4Addr::LOCALHOST], "{n}");
    }
    let nx = query_a(dns.addr, NXDOMAIN_NAME, t).expect("answer");
    assert_eq!(nx.rcode, RCODE_NXDOMAIN, "{}", dns.logs());
    let nx2 = query_a(dns.addr, "h9999.site.test", t).expect("answer");
    assert_eq!(nx2.rcode, RCODE_NXDOMAIN);
    let noaddr = query_a(dns.addr, NO_ADDRESS_NAME, t).expect("answer");
    assert_eq!((noaddr.rcode, noaddr.a.len()), (RCODE_NOERROR, 0));
    assert!(dns.resolver_arg().starts_with("127.0.0.1:"));
}

#[test]
fn fault_dns_servers_fail_as_designed() {
    let servfail = FaultDns::start(FaultDnsMode::ServFail);
    let ans = query_a(servfail.addr, "anything.test", Duration::from_secs(2)).expect("answer");
    assert_eq!(ans.rcode, RCODE_SERVFAIL);
    let silent = FaultDns::start(FaultDnsMode::Silent);
    let err =
        query_a(silent.addr, "anything.test", Duration::from_millis(400)).expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(crate::support::wait_until(
        Duration::from_secs(1),
        || silent.queries() == 1
    ));
}

#[test]
fn fault_server_plain_shapes() {
    let f = FaultServer::start();
    let h = "127.0.0.1";
    let go = |path: &str| exchange(f.addr, &get_close(path, h), IDLE, LIMIT);

    let (r, _) = go("/ok");
    let (head, body) = split(&r);
    assert!(head.starts_with("HTTP/1.1 200"));
    assert_eq!(
        header(&head, "content-length"),
        [body.len().to_string().as_str()]
    );
    assert!(String::from_utf8_lossy(&body).contains("<title>OK page</title>"));

    let (r, end) = exchange(
        f.addr,
        &get("/chunked", h),
        Duration::from_millis(500),
        LIMIT,
    );
    assert_eq!(end, End::Idle, "chunked keeps the connection");
    let (head, body) = split(&r);
    assert_eq!(header(&head, "transfer-encoding"), ["chunked"]);
    assert!(body.starts_with(b"f\r\n<html><head><ti\r\nc;name=value\r\n"));
    assert!(body.ends_with(b"0\r\nX-Check: done\r\n\r\n"));

    let (r, end) = go("/close-delimited");
    assert_eq!(end, End::Eof);
    let (head, body) = split(&r);
    assert!(head.starts_with("HTTP/1.0 200") && header(&head, "content-length").is_empty());
    assert!(body.ends_with(b"</html>\n"));

    let (r, _) = go("/redirect/3");
    assert_eq!(header(&split(&r).0, "location"), ["/redirect/2"]);
    let (r, _) = go("/redirect/0");
    assert!(String::from_utf8_lossy(&r).contains("<title>Redirect end</title>"));
    let (r, _) = go("/loop");
    assert_eq!(header(&split(&r).0, "location"), ["/loop2"]);
    let (r, _) = go("/loop2");
    assert_eq!(header(&split(&r).0, "location"), ["/loop"]);
    let (r, _) = go("/relative-redirect");
    assert!(r.starts_with(b"HTTP/1.1 302"));
    assert_eq!(header(&split(&r).0, "location"), ["ok?from=rel"]);

    let (r, _) = go("/404-with-title");
    assert!(
        r.starts_with(b"HTTP/1.1 404")
            && String::from_utf8_lossy(&r).contains("<title>Not Found Here</title>")
    );

    let (r, _) = go("/gzip");
    let (head, body) = split(&r);
    assert_eq!(header(&head, "content-encoding"), ["gzip"]);
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert!(text.contains("<title>Gzip title</title>"));
    let (r, _) = go("/deflate");
    let (head, body) = split(&r);
    assert_eq!(header(&head, "content-encoding"), ["deflate"]);
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("inflate");
    assert!(text.contains("<title>Deflate title</title>"));

    let (r, _) = go("/nohtml");
    let (head, body) = split(&r);
    assert_eq!(header(&head, "content-type"), ["image/png"]);
    assert!(body.starts_with(b"\x89PNG"));

    let (r, end) = exchange(f.addr, b"\x16\x03\x01\x00\x05hello", IDLE, LIMIT);
    assert!(
        end == End::Eof && r.starts_with(b"HTTP/1.1 400"),
        "TLS bytes get a 400"
    );

    let (r, _) = go("/nope");
    assert!(r.starts_with(b"HTTP/1.1 404"));
    assert!(f.hits("/ok") == 1 && f.hits("/loop2") == 1 && f.hits("/redirect/3") == 1);
}

#[test]
fn fault_server_broken_shapes() {
    let f = FaultServer::start();
    let h = "127.0.0.1";
    let short = Duration::from_millis(700);
    let go = |path: &str, idle: Duration, limit: usize| {
        exchange(f.addr, &get_close(path, h), idle, limit)
    };

    let (r, end) = go("/stall", short, LIMIT);
    assert_eq!((r.len(), end), (0, End::Idle));

    // Trickles never go idle for long: read for a fixed wall time instead.
    let r = read_for(
        f.addr,
        &get_close("/trickle-status", h),
        Duration::from_millis(2500),
    );
    assert!(
        (2..=4).contains(&r.len()) && b"HTTP".starts_with(&r),
        "{r:?}"
    );

    let r = read_for(
        f.addr,
        &get_close("/trickle-body", h),
        Duration::from_millis(2500),
    );
    let (head, body) = split(&r);
    assert!(
        head.starts_with("HTTP/1.1 200") && (2..=4).contains(&body.len()),
        "{body:?}"
    );

    let (r, end) = go("/endless-headers", IDLE, 300 * 1024);
    assert_eq!(end, End::Limit);
    assert!(!r.windows(4).any(|w| w == b"\r\n\r\n"));

    let (r, end) = go("/endless-body", IDLE, 2 << 20);
    assert_eq!(end, End::Limit);
    assert!(String::from_utf8_lossy(&r[..300]).contains("<title>Endless</title>"));
    let (r, end) = go("/endless-notitle", IDLE, 2 << 20);
    assert_eq!(end, End::Limit);
    assert!(!String::from_utf8_lossy(&r).contains("<title"));

    let (r, end) = go("/reset", IDLE, LIMIT);
    assert_eq!((r.len(), end), (0, End::Reset));

    let (r, end) = go("/garbage", IDLE, LIMIT);
    assert!(end == End::Eof && !r.is_empty() && !r.starts_with(b"HTTP/"));

    let (r, end) = go("/bad-chunk", IDLE, LIMIT);
    assert_eq!(end, End::Eof);
    assert!(split(&r).1.starts_with(b"zz\r\n"));

    let (r, end) = go("/short-body", IDLE, LIMIT);
    assert_eq!(end, End::Eof);
    let (head, body) = split(&r);
    assert_eq!(header(&head, "content-length"), ["1000"]);
    assert_eq!(body.len(), support::fault::SHORT_BODY_SENT);

    let (r, end) = go("/eof-before-response", IDLE, LIMIT);
    assert_eq!((r.len(), end), (0, End::Eof));

    let (r, _) = go("/conflicting-length", IDLE, LIMIT);
    let head = split(&r).0;
    let lengths = header(&head, "content-length");
    assert!(
        lengths.len() == 2 && lengths[0] != lengths[1],
        "{lengths:?}"
    );

    let (r, end) = go("/huge-head", IDLE, LIMIT);
    assert_eq!(end, End::Eof);
    assert!(split(&r).0.len() > support::fault::HUGE_HEADER_BYTES);
}

#[test]
fn fault_server_charset_pages_match_their_variants() {
    let f = FaultServer::start();
    for kind in PageKind::ALL {
        let (r, _) = exchange(
            f.addr,
            &get_close(&format!("/charset/{}", kind.name()), "x"),
            IDLE,
            LIMIT,
        );
        let (head, body) = split(&r);
        let page = render(kind, "fault");
        assert!(head.starts_with("HTTP/1.1 200"), "{}", kind.name());
        assert_eq!(
            header(&head, "content-type"),
            [page.content_type.header_value()]
        );
        assert_eq!(body, page.body, "{}", kind.name());
    }
}

#[test]
fn fault_server_counts_keepalive_reuse() {
    let f = FaultServer::start();
    let mut s = TcpStream::connect(f.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut reqs = Vec::new();
    for i in 0..5 {
        reqs.extend(get(&format!("/keepalive/{i}"), "127.0.0.1"));
    }
    s.write_all(&reqs).expect("pipeline");
    let (r, end) = read_until_end(&mut s, LIMIT);
    assert_eq!(end, End::Idle);
    assert_eq!(
        r.windows(17)
            .filter(|w| w == b"HTTP/1.1 200 OK\r\n")
            .count(),
        5
    );
    assert_eq!((f.connections(), f.requests()), (1, 5));
    assert_eq!(f.hits("/keepalive/4"), 1);
}

#[test]
fn fault_server_handles_thousands_of_connections() {
    const N: usize = 2000;
    let f = FaultServer::start();
    let mut socks: Vec<TcpStream> = (0..N)
        .map(|_| TcpStream::connect(f.addr).expect("connect"))
        .collect();
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(&get_close(&format!("/keepalive/{i}"), "127.0.0.1"))
            .expect("send");
    }
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let (r, end) = read_until_end(s, LIMIT);
        assert_eq!(end, End::Eof, "connection {i}");
        assert!(String::from_utf8_lossy(&r).contains(&format!("<title>keepalive {i}</title>")));
    }
    assert_eq!(f.connections(), N as u64);
    drop(socks);
    assert!(
        support::wait_until(Duration::from_secs(5), || f.live() == 0),
        "live {}",
        f.live()
    );
}

#[test]
fn blackhole_connects_time_out() {
    let b = Blackhole::start();
    let started = Instant::now();
    let err =
        TcpStream::connect_timeout(&b.addr, Duration::from_millis(500)).expect_err("no SYN-ACK");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[test]
fn closed_port_refuses() {
    let port = support::free_port();
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
