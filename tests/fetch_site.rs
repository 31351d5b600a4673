//! `ringcrawl fetch` against a real nginx serving a generated multi-host site, names resolved
//! by a real dnsmasq given with `--resolver` (issues 2 and 3): every URL exactly one record
//! with the exact expected title (charsets, HTML traps, 404s, redirects), the same over https
//! with a private CA (`--ca-file`), TLS failures classified as `tls`, `--follow 'h3 a'`, and
//! a hostile input list (invalid URLs, junk, CRLF, a 1 MB line, no final newline).

mod support;

use std::time::Duration;

use support::site::{mismatches, Expect};
use support::tls::{EXPIRED_HOST, SELF_SIGNED_HOST, WRONG_NAME_HOST};
use support::{
    error_kind, parse_journal, run_fetch, Dnsmasq, FetchRun, Nginx, Site, SiteSpec, TlsCerts,
};

/// Site size of the plain-http run: hosts x (pages + 5 extra URLs each), about 15,000 URLs
/// on a thousand host names.
const HTTP_HOSTS: usize = 1000;
const HTTP_PAGES: usize = 10;
/// Site size of the https run (every page kind on every host).
const TLS_HOSTS: usize = 200;
const TLS_PAGES: usize = 23;
/// Wall-time bound of one full-site run (debug build, 2 shared cores).
const SITE_RUN_BOUND: Duration = Duration::from_secs(180);

/// A running site: generated files, nginx (optionally with TLS) and dnsmasq for its names.
struct Fixture {
    site: Site,
    nginx: Nginx,
    dns: Dnsmasq,
    certs: Option<TlsCerts>,
    _dir: tempfile::TempDir,
}

fn fixture(spec: SiteSpec, tls: bool) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("ringcrawl-site")
        .tempdir()
        .expect("tempdir");
    let site = Site::generate(dir.path(), spec);
    let certs = tls.then(TlsCerts::generate);
    let nginx = Nginx::start(&site, certs.as_ref().map(|c| c.nginx_tls()).as_ref());
    let mut names = site.host_names();
    names.extend([EXPIRED_HOST, WRONG_NAME_HOST, SELF_SIGNED_HOST].map(String::from));
    let dns = Dnsmasq::start(&names);
    Fixture {
        site,
        nginx,
        dns,
        certs,
        _dir: dir,
    }
}

/// Assert one record per expected URL, each matching, and nothing else.
fn assert_records(run: &FetchRun, expects: &[Expect], follow: bool) {
    run.assert_success();
    let by_url = run.by_url();
    let mut bad = Vec::new();
    for e in expects {
        match by_url.get(&e.url) {
            Some(rec) => {
                let m = mismatches(e, rec, follow);
                if !m.is_empty() {
                    bad.push(format!("{}: {} (record {rec})", e.url, m.join("; ")));
                }
            }
            None => bad.push(format!("{}: no record", e.url)),
        }
    }
    let shown: Vec<_> = bad.iter().take(40).cloned().collect();
    assert!(
        bad.is_empty(),
        "{} of {} URLs wrong:\n{}",
        bad.len(),
        expects.len(),
        shown.join("\n")
    );
    assert_eq!(
        run.records.len(),
        expects.len(),
        "extra records; stderr:\n{}",
        run.stderr
    );
}

fn url_list(expects: &[Expect]) -> String {
    expects.iter().map(|e| format!("{}\n", e.url)).collect()
}

#[test]
fn whole_site_over_http_gives_exact_titles() {
    let fx = fixture(
        SiteSpec {
            hosts: HTTP_HOSTS,
            pages: HTTP_PAGES,
            blogs: 0,
        },
        false,
    );
    let expects = fx.site.expect("http", fx.nginx.port);
    let run = run_fetch(
        &["-i", "-", "--resolver", &fx.dns.resolver_arg()],
        Some(url_list(&expects).as_bytes()),
    );
    assert_records(&run, &expects, false);
    assert!(run.elapsed < SITE_RUN_BOUND, "took {:?}", run.elapsed);
}

#[test]
fn whole_site_over_https_gives_the_same_titles_and_tls_errors_are_classified() {
    let fx = fixture(
        SiteSpec {
            hosts: TLS_HOSTS,
            pages: TLS_PAGES,
            blogs: 0,
        },
        true,
    );
    let certs = fx.certs.as_ref().expect("certs");
    let tls_port = fx.nginx.tls_port.expect("tls port");
    let ca = certs.ca.to_str().expect("utf-8 path").to_string();
    let resolver = fx.dns.resolver_arg();

    let expects = fx.site.expect("https", tls_port);
    // Same titles as over http, URL for URL.
    let http = fx.site.expect("http", fx.nginx.port);
    for (s, p) in expects.iter().zip(&http) {
        assert_eq!((&s.title, s.status), (&p.title, p.status));
    }
    let mut input = url_list(&expects);
    let bad_hosts = [EXPIRED_HOST, WRONG_NAME_HOST, SELF_SIGNED_HOST];
    for h in bad_hosts {
        input.push_str(&format!("https://{h}:{tls_port}/\n"));
    }
    // TLS to the plain-HTTP port.
    let plain = format!("https://h0000.site.test:{}/p0000.html", fx.nginx.port);
    input.push_str(&format!("{plain}\n"));
    let run = run_fetch(
        &["-i", "-", "--resolver", &resolver, "--ca-file", &ca],
        Some(input.as_bytes()),
    );
    run.assert_success();
    let by_url = run.by_url();
    let mut errors = Vec::new();
    for h in bad_hosts {
        errors.push(format!("https://{h}:{tls_port}/"));
    }
    errors.push(plain);
    for url in &errors {
        let rec = by_url
            .get(url)
            .unwrap_or_else(|| panic!("no record for {url}"));
        assert_eq!(error_kind(rec), Some("tls"), "{url}: {rec}");
        assert!(rec["title"].is_null(), "{rec}");
    }
    let only_site = FetchRun {
        records: run
            .records
            .iter()
            .filter(|r| !errors.iter().any(|u| r["url"] == u.as_str()))
            .cloned()
            .collect(),
        stderr: run.stderr.clone(),
        status: run.status,
        elapsed: run.elapsed,
    };
    assert_records(&only_site, &expects, false);
    assert!(run.elapsed < SITE_RUN_BOUND, "took {:?}", run.elapsed);

    // Without the private CA every site URL is an unknown-issuer TLS error.
    let some: Vec<&Expect> = expects.iter().take(20).collect();
    let input: String = some.iter().map(|e| format!("{}\n", e.url)).collect();
    let run = run_fetch(
        &["-i", "-", "--resolver", &resolver],
        Some(input.as_bytes()),
    );
    run.assert_success();
    assert_eq!(run.records.len(), some.len());
    for rec in &run.records {
        assert_eq!(error_kind(rec), Some("tls"), "{rec}");
    }
}

#[test]
fn follow_h3_links_reports_the_linked_article() {
    let fx = fixture(
        SiteSpec {
            hosts: 2,
            pages: 2,
            blogs: 12,
        },
        false,
    );
    let expects = fx.site.expect_follow("http", fx.nginx.port);
    assert!(expects.iter().any(|e| e.error_kind == Some("no_link")));
    let run = run_fetch(
        &[
            "-i",
            "-",
            "--resolver",
            &fx.dns.resolver_arg(),
            "--follow",
            "h3 a",
        ],
        Some(url_list(&expects).as_bytes()),
    );
    assert_records(&run, &expects, true);
}

#[test]
fn hostile_input_file_gives_one_record_per_non_blank_line() {
    let fx = fixture(
        SiteSpec {
            hosts: 3,
            pages: TLS_PAGES,
            blogs: 0,
        },
        false,
    );
    let port = fx.nginx.port;
    let good = fx.site.expect("http", port);
    let (a, b, c) = (&good[0], &good[1], &good[2]);
    let long_prefix = format!("http://h0000.site.test:{port}/");
    let long_line = format!("{long_prefix}{}", "a".repeat(1 << 20));

    let mut input: Vec<u8> = Vec::new();
    let mut add = |line: &[u8], eol: &[u8]| {
        input.extend_from_slice(line);
        input.extend_from_slice(eol);
    };
    add(a.url.as_bytes(), b"\r\n"); // CRLF
    add(b"", b"\n"); // blank
    add(b"   \t ", b"\r\n"); // blank after trimming
    add(
        format!("ftp://h0000.site.test:{port}/file").as_bytes(),
        b"\n",
    );
    add(b"gopher://h0001.site.test/", b"\n");
    add(b"http://", b"\n");
    add(format!("http://:{port}/empty-host").as_bytes(), b"\n");
    add(b"http://h0000.site.test:70000/", b"\n");
    add(b"http://h0000.site.test:99999999999/", b"\n");
    add(format!("http://h0000 site.test:{port}/").as_bytes(), b"\n");
    add(b"not a url at all", b"\n");
    add(long_line.as_bytes(), b"\n");
    add(
        &[
            format!("http://h0000.site.test:{port}/").as_bytes(),
            b"\xff\xfe\xfd",
        ]
        .concat(),
        b"\n",
    );
    add(b"\x00\x01\x02\x1b[31mbinary junk\x7f\xc3", b"\n");
    add(format!("   {}   ", b.url).as_bytes(), b"\n"); // surrounding whitespace
    add(c.url.as_bytes(), b""); // no final newline
    let invalid_count = 11;

    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("hostile.txt");
    let out = dir.path().join("journal.jsonl");
    std::fs::write(&list, &input).expect("write list");
    let run = run_fetch(
        &[
            "-i",
            list.to_str().expect("path"),
            "-o",
            out.to_str().expect("path"),
            "--resolver",
            &fx.dns.resolver_arg(),
        ],
        None,
    );
    run.assert_success();
    assert!(run.records.is_empty(), "-o FILE: nothing on stdout");
    let records = parse_journal(&std::fs::read(&out).expect("journal written"), &run.stderr);
    assert_eq!(
        records.len(),
        3 + invalid_count,
        "one record per non-blank line; stderr:\n{}",
        run.stderr
    );

    for e in [a, b, c] {
        let rec = records
            .iter()
            .find(|r| r["url"] == e.url.as_str())
            .unwrap_or_else(|| panic!("no record for {}", e.url));
        let m = mismatches(e, rec, false);
        assert!(m.is_empty(), "{}: {m:?}", e.url);
    }
    let invalid: Vec<_> = records
        .iter()
        .filter(|r| error_kind(r) == Some("invalid_url"))
        .collect();
    assert_eq!(invalid.len(), invalid_count, "{records:#?}");
    for r in &invalid {
        assert!(r["title"].is_null() && r["status"].is_null(), "{r}");
    }
    let has = |url: &str| invalid.iter().any(|r| r["url"] == url);
    assert!(has("http://") && has("http://h0000.site.test:70000/") && has("not a url at all"));
    assert!(has(&format!("http://h0000 site.test:{port}/")));
    assert!(
        has(&format!(
            "http://h0000.site.test:{port}/\u{fffd}\u{fffd}\u{fffd}"
        )),
        "non-UTF-8 bytes become U+FFFD"
    );
    assert_eq!(
        invalid
            .iter()
            .filter(|r| r["url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&long_prefix) && u.len() > 8192))
            .count(),
        1,
        "the 1 MB line has one invalid_url record"
    );
}
