//! `ringcrawl fetch` with extra headers and through HTTP proxies (issue 15): the exact head
//! sent with `-H`; a real tinyproxy in front of a real
//! nginx gives the same records as direct runs, over http (absolute-form) and https (CONNECT
//! tunnels, TLS to the origin with the test CA); `-H` headers reach the origin and proxy
//! credentials do not; a 407 and a refused proxy are `proxy` records; `NO_PROXY` and the
//! precedence of the environment, `--proxy` and `--noproxy`. The in-process fault server also
//! plays a proxy (it answers absolute-form requests as their path and keeps every head), to
//! see the bytes sent to a proxy and that one proxy connection serves every origin.

mod support;

use support::nginx::ECHO_HEADERS_PATH;
use support::site::{mismatches, Expect};
use support::{
    error_kind, run_fetch_env, FaultServer, FetchRun, Nginx, Site, SiteSpec, Tinyproxy,
    TinyproxyConfig, TlsCerts,
};

/// The site host nginx also serves as `localhost`, the one name tinyproxy can resolve.
const ALIASED_HOST: &str = "h0000.site.test";
const ALIAS: &str = "localhost";
/// Credentials of the authenticating proxy.
const USER: &str = "crawler";
const PASSWORD: &str = "s3cret";

/// nginx (http and https) serving a small site whose first host is also `localhost`.
struct Origin {
    site: Site,
    nginx: Nginx,
    certs: TlsCerts,
    _dir: tempfile::TempDir,
}

fn origin() -> Origin {
    let dir = tempfile::Builder::new()
        .prefix("ringcrawl-proxy-site")
        .tempdir()
        .expect("tempdir");
    let mut site = Site::generate(
        dir.path(),
        SiteSpec {
            hosts: 2,
            pages: support::pages::PageKind::ALL.len(),
            blogs: 0,
        },
    );
    site.hosts[0].aliases.push(ALIAS.to_string());
    let certs = TlsCerts::generate();
    let nginx = Nginx::start(&site, Some(&certs.nginx_tls()));
    Origin {
        site,
        nginx,
        certs,
        _dir: dir,
    }
}

impl Origin {
    fn tls_port(&self) -> u16 {
        self.nginx.tls_port.expect("TLS listener")
    }

    /// The expected records of every URL of the aliased host that stays on it (a redirect to
    /// another site host would need a name the proxy cannot resolve), under `localhost`.
    fn expects(&self, scheme: &str) -> Vec<Expect> {
        let port = if scheme == "https" {
            self.tls_port()
        } else {
            self.nginx.port
        };
        let local = |u: &str| u.replacen(ALIASED_HOST, ALIAS, 1);
        let host_prefix = format!("{scheme}://{ALIASED_HOST}:");
        self.site
            .expect(scheme, port)
            .into_iter()
            .filter(|e| e.url.starts_with(&host_prefix) && e.final_url.starts_with(&host_prefix))
            .map(|e| Expect {
                url: local(&e.url),
                final_url: local(&e.final_url),
                ..e
            })
            .collect()
    }

    fn ca(&self) -> String {
        self.certs.ca.display().to_string()
    }
}

fn url_list(expects: &[Expect]) -> String {
    expects.iter().map(|e| format!("{}\n", e.url)).collect()
}

/// One record per expectation, each as expected, with `ip` 127.0.0.1.
fn assert_records(run: &FetchRun, expects: &[Expect], what: &str) {
    run.assert_success();
    let by_url = run.by_url();
    let mut bad = Vec::new();
    for e in expects {
        match by_url.get(&e.url) {
            Some(rec) => {
                let mut m = mismatches(e, rec, false);
                if rec["ip"] != "127.0.0.1" {
                    m.push(format!("ip {}", rec["ip"]));
                }
                if !m.is_empty() {
                    bad.push(format!("{}: {} (record {rec})", e.url, m.join("; ")));
                }
            }
            None => bad.push(format!("{}: no record", e.url)),
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} URLs wrong:\n{}",
        bad.len(),
        expects.len(),
        bad.join("\n")
    );
    assert_eq!(run.records.len(), expects.len(), "{what}: extra records");
}

/// The one record of a run of one URL.
fn only(run: &FetchRun) -> &serde_json::Value {
    run.assert_success();
    assert_eq!(run.records.len(), 1, "{:?}", run.records);
    &run.records[0]
}

#[test]
fn titles_through_a_real_proxy_are_the_direct_ones_over_http_and_https() {
    let o = origin();
    let proxy = Tinyproxy::start(&TinyproxyConfig {
        connect_ports: vec![o.tls_port()],
        basic_auth: None,
    });
    for scheme in ["http", "https"] {
        let expects = o.expects(scheme);
        assert!(expects.len() > 20, "{}", expects.len());
        let list = url_list(&expects);
        let ca = o.ca();
        let direct = run_fetch_env(&["-i", "-", "--ca-file", &ca], Some(list.as_bytes()), &[]);
        assert_records(&direct, &expects, &format!("{scheme} direct"));
        let seen = proxy.requests().len();
        let proxied = run_fetch_env(
            &["-i", "-", "--ca-file", &ca, "--proxy", &proxy.url()],
            Some(list.as_bytes()),
            &[],
        );
        assert_records(&proxied, &expects, &format!("{scheme} through tinyproxy"));
        // Every page (and redirect hop) went through the proxy, in the form of its scheme.
        let requests = &proxy.requests()[seen..];
        let hops: usize = expects.iter().map(|e| 1 + e.redirects as usize).sum();
        if scheme == "http" {
            assert_eq!(requests.len(), hops, "{requests:#?}");
            let absolute = format!("GET http://{ALIAS}:{}/", o.nginx.port);
            assert!(
                requests.iter().all(|r| r.starts_with(&absolute)),
                "{requests:#?}"
            );
        } else {
            let connect = format!("CONNECT {ALIAS}:{} HTTP/1.1", o.tls_port());
            assert!(
                !requests.is_empty() && requests.len() <= hops,
                "{requests:#?}"
            );
            assert!(requests.iter().all(|r| *r == connect), "{requests:#?}");
        }
    }
}

#[test]
fn headers_reach_the_origin_through_the_proxy_and_proxy_credentials_do_not() {
    let o = origin();
    let proxy = Tinyproxy::start(&TinyproxyConfig {
        connect_ports: vec![o.tls_port()],
        basic_auth: Some((USER.into(), PASSWORD.into())),
    });
    let ca = o.ca();
    let with_credentials = proxy.url_with(USER, PASSWORD);
    for (scheme, port) in [("http", o.nginx.port), ("https", o.tls_port())] {
        let url = format!("{scheme}://{ALIAS}:{port}{ECHO_HEADERS_PATH}");
        let args = [
            url.as_str(),
            "--ca-file",
            &ca,
            "--proxy",
            &with_credentials,
            "-H",
            "X-A: through",
            "-H",
            "User-Agent: proxied/1",
        ];
        let run = run_fetch_env(&args, None, &[]);
        let rec = only(&run);
        assert_eq!(
            rec["title"],
            "x-a=[through] pa=[] ua=[proxied/1]",
            "{scheme}: {rec}\n{}",
            proxy.logs()
        );
        // Without credentials: 407, a proxy record.
        let run = run_fetch_env(
            &[&url, "--ca-file", &ca, "--proxy", &proxy.url()],
            None,
            &[],
        );
        let rec = only(&run);
        assert_eq!(error_kind(rec), Some("proxy"), "{scheme}: {rec}");
        assert_eq!(
            rec["error"]["message"],
            format!(
                "proxy {} answered 407 Proxy Authentication Required (the proxy URL has no \
                 credentials)",
                proxy.addr
            )
        );
        assert_eq!(rec["ip"], "127.0.0.1", "the proxy's address");
    }
    // Wrong credentials: tinyproxy answers 401 (not 407). To a CONNECT that is a proxy
    // record; to a forwarded request it cannot be told from an origin's 401 (it is a page).
    let url = format!("https://{ALIAS}:{}{ECHO_HEADERS_PATH}", o.tls_port());
    let wrong = proxy.url_with(USER, "wrong");
    let run = run_fetch_env(&[&url, "--ca-file", &ca, "--proxy", &wrong], None, &[]);
    let rec = only(&run);
    assert_eq!(error_kind(rec), Some("proxy"), "{rec}");
    let msg = rec["error"]["message"].as_str().unwrap();
    assert!(msg.ends_with("with status 401"), "{msg}");
    assert!(!msg.contains(USER) && !msg.contains("wrong"), "{msg}");
}

#[test]
fn requests_to_a_proxy_are_absolute_form_with_credentials_and_share_one_connection() {
    // The fault server plays the proxy: it answers absolute-form requests as their path.
    let fake_proxy = FaultServer::start();
    let proxy_url = format!("http://{USER}:{PASSWORD}@{}", fake_proxy.addr);
    // Names under .invalid never resolve: only the proxy may see them.
    let urls: Vec<String> = (0..20)
        .map(|i| format!("http://h{i}.invalid/keepalive/{i}"))
        .collect();
    let list: String = urls.iter().map(|u| format!("{u}\n")).collect();
    let run = run_fetch_env(
        &[
            "-i",
            "-",
            "-c",
            "1",
            "--threads",
            "1",
            "--proxy",
            &proxy_url,
            "-H",
            "X-A: 1",
        ],
        Some(list.as_bytes()),
        &[],
    );
    run.assert_success();
    let by_url = run.by_url();
    for (i, u) in urls.iter().enumerate() {
        let rec = &by_url[u];
        assert_eq!(rec["title"], format!("keepalive {i}"), "{rec}");
        assert_eq!(rec["ip"], "127.0.0.1");
    }
    assert_eq!(
        fake_proxy.connections(),
        1,
        "one keep-alive connection to the proxy serves every origin"
    );
    let heads = fake_proxy.heads();
    assert_eq!(heads.len(), urls.len());
    let basic = "Proxy-Authorization: Basic Y3Jhd2xlcjpzM2NyZXQ=";
    for head in &heads {
        let first = head.lines().next().unwrap();
        let host = first
            .strip_prefix("GET http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("not absolute-form: {head}"));
        assert!(head.contains(&format!("\r\nHost: {host}\r\n")), "{head}");
        assert!(head.contains(basic), "{head}");
        assert!(head.contains("\r\nX-A: 1"), "{head}");
    }
}

#[test]
fn a_connect_refused_by_the_proxy_or_a_dead_proxy_is_a_proxy_record() {
    let fake_proxy = FaultServer::start();
    // The fault server answers a CONNECT (target `host:port`, no such path) with 404.
    let run = run_fetch_env(
        &[
            "https://a.invalid/",
            "--proxy",
            &format!("http://{}", fake_proxy.addr),
        ],
        None,
        &[],
    );
    let rec = only(&run);
    assert_eq!(error_kind(rec), Some("proxy"), "{rec}");
    assert_eq!(
        rec["error"]["message"],
        format!(
            "proxy {} answered CONNECT a.invalid:443 with status 404",
            fake_proxy.addr
        )
    );
    assert!(fake_proxy.heads()[0]
        .starts_with("CONNECT a.invalid:443 HTTP/1.1\r\nHost: a.invalid:443\r\n"));

    let dead = closed_port();
    for url in ["http://a.invalid/", "https://a.invalid/"] {
        let run = run_fetch_env(&[url, "--proxy", &format!("127.0.0.1:{dead}")], None, &[]);
        let rec = only(&run);
        assert_eq!(error_kind(rec), Some("proxy"), "{rec}");
        assert_eq!(
            rec["error"]["message"],
            format!("proxy 127.0.0.1:{dead}: connection refused by 127.0.0.1:{dead}")
        );
        assert_eq!(rec["ip"], "127.0.0.1");
    }
}

/// A port on 127.0.0.1 that refuses connections.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_environment_names_the_proxy_unless_flags_say_otherwise_and_no_proxy_is_honoured() {
    let origin = FaultServer::start();
    let fake_proxy = FaultServer::start();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let good = format!("http://{}", fake_proxy.addr);
    let ok_url = origin.url("/ok");
    let title = |run: &FetchRun| only(run)["title"].clone();
    let kind = |run: &FetchRun| error_kind(only(run)).map(str::to_string);

    // http_proxy is used; upper-case HTTP_PROXY is not (httpoxy); all_proxy is the fallback.
    let run = run_fetch_env(&[&ok_url], None, &[("http_proxy", &dead)]);
    assert_eq!(kind(&run).as_deref(), Some("proxy"));
    let run = run_fetch_env(&[&ok_url], None, &[("HTTP_PROXY", &dead)]);
    assert_eq!(title(&run), "OK page", "HTTP_PROXY is ignored");
    let run = run_fetch_env(&[&ok_url], None, &[("ALL_PROXY", &dead)]);
    assert_eq!(kind(&run).as_deref(), Some("proxy"));
    let run = run_fetch_env(
        &["https://a.invalid/"],
        None,
        &[("http_proxy", &good), ("HTTPS_PROXY", &dead)],
    );
    assert!(
        only(&run)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "https URLs take HTTPS_PROXY"
    );

    // --proxy wins over the environment; --proxy '' turns proxies off.
    let before = fake_proxy.requests();
    let run = run_fetch_env(&[&ok_url, "--proxy", &good], None, &[("http_proxy", &dead)]);
    assert_eq!(title(&run), "OK page");
    assert_eq!(fake_proxy.requests(), before + 1, "went through --proxy");
    let run = run_fetch_env(&[&ok_url, "--proxy", ""], None, &[("http_proxy", &dead)]);
    assert_eq!(title(&run), "OK page");

    // NO_PROXY: by name, by address, with a port, `*`; --noproxy replaces it.
    let port = origin.addr.port();
    for no_proxy in [
        "127.0.0.1".to_string(),
        "127.0.0.0/8".to_string(),
        format!("other.test, 127.0.0.1:{port}"),
        "*".to_string(),
    ] {
        let run = run_fetch_env(
            &[&ok_url],
            None,
            &[("http_proxy", &dead), ("NO_PROXY", &no_proxy)],
        );
        assert_eq!(title(&run), "OK page", "NO_PROXY={no_proxy}");
    }
    let localhost_url = format!("http://localhost:{port}/ok");
    let run = run_fetch_env(
        &[&localhost_url],
        None,
        &[("http_proxy", &dead), ("no_proxy", ".localhost")],
    );
    assert_eq!(title(&run), "OK page", "a name matches itself");
    let run = run_fetch_env(
        &[&ok_url],
        None,
        &[
            ("http_proxy", &dead),
            ("NO_PROXY", &format!("127.0.0.1:{}", port + 1)),
        ],
    );
    assert_eq!(kind(&run).as_deref(), Some("proxy"), "another port");
    let run = run_fetch_env(
        &[&ok_url, "--noproxy", ""],
        None,
        &[("http_proxy", &dead), ("NO_PROXY", "*")],
    );
    assert_eq!(
        kind(&run).as_deref(),
        Some("proxy"),
        "--noproxy '' replaces NO_PROXY"
    );
    let run = run_fetch_env(&[&ok_url, "--noproxy", "*"], None, &[("http_proxy", &dead)]);
    assert_eq!(title(&run), "OK page");
}

#[test]
fn an_unusable_proxy_setting_is_a_usage_error_naming_its_source() {
    let run = run_fetch_env(
        &["http://127.0.0.1:9/"],
        None,
        &[("https_proxy", "socks5://127.0.0.1:1080")],
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "ringcrawl: bad value for environment variable https_proxy: \
         `socks5://127.0.0.1:1080`: SOCKS proxies are not supported, only http://"
    );
    let run = run_fetch_env(
        &["http://127.0.0.1:9/", "--proxy", "https://p:3128"],
        None,
        &[],
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("bad value for --proxy: `https://p:3128`"),
        "{}",
        run.stderr
    );
    let run = run_fetch_env(&["http://127.0.0.1:9/", "-H", "Host: x"], None, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim(),
        "ringcrawl: bad value for --header: Host cannot be set: it is set from the URL"
    );
}

#[test]
fn extra_headers_follow_the_defaults_in_order_and_replace_or_remove_them() {
    let origin = FaultServer::start();
    let run = run_fetch_env(
        &[
            &origin.url("/ok"),
            "-H",
            "X-B: two words ",
            "-H",
            "accept: text/html",
            "-H",
            "Accept-Encoding:",
            "-H",
            "X-B: again",
            "--user-agent",
            "flag/1",
        ],
        None,
        &[],
    );
    assert_eq!(only(&run)["title"], "OK page");
    assert_eq!(
        origin.heads(),
        [format!(
            "GET /ok HTTP/1.1\r\nHost: {}\r\nUser-Agent: flag/1\r\nX-B: two words\r\n\
             accept: text/html\r\nX-B: again",
            origin.addr
        )]
    );
}

#[test]
fn through_a_proxy_the_policy_checks_ip_literal_origins_and_not_the_proxy() {
    let fake_proxy = FaultServer::start();
    let proxy_url = format!("http://{}", fake_proxy.addr);
    let denied = "http://127.0.0.1:9/ok";
    let named = "http://a.invalid/ok";
    let run = run_fetch_env(
        &[denied, named, "--deny", "loopback", "--proxy", &proxy_url],
        None,
        &[],
    );
    run.assert_success();
    let by_url = run.by_url();
    assert_eq!(
        error_kind(&by_url[denied]),
        Some("denied"),
        "{}",
        by_url[denied]
    );
    assert_eq!(
        by_url[named]["title"], "OK page",
        "the proxy on loopback is configured, not denied: {}",
        by_url[named]
    );
    assert_eq!(
        fake_proxy.requests(),
        1,
        "the denied URL never reached the proxy"
    );
}
