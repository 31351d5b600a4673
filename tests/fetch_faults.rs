//! `ringcrawl fetch` against misbehaving servers and DNS (issue 7): every URL gets exactly
//! one record with the right `error.kind` (or the right title), the whole list finishes
//! within `--timeout` plus a small margin, and the exit status is 0.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::dnsmasq::{NO_ADDRESS_NAME, NXDOMAIN_NAME};
use support::pages::{render, PageKind};
use support::{
    error_kind, free_port, run_fetch, Blackhole, Dnsmasq, FaultDns, FaultDnsMode, FaultServer,
};

/// `--timeout` used by the fault lists (seconds).
const TIMEOUT_S: u64 = 5;
/// Slack on top of the timeout for process start, scheduling and a debug build.
const MARGIN: Duration = Duration::from_secs(6);

/// What one URL's record must say.
#[derive(Clone, Debug)]
enum Want {
    /// Success: status, title, redirects, final URL (None = same as the URL).
    Page {
        status: u16,
        title: Option<String>,
        redirects: u32,
        final_url: Option<String>,
    },
    /// Failure with this `error.kind` (title null).
    Error(&'static str),
    /// Either a titleless success or `too_large` (a body past `--max-body` without a title;
    /// the contract leaves which one open), never anything slower.
    NoTitleOrTooLarge,
}

fn page(title: &str) -> Want {
    Want::Page {
        status: 200,
        title: Some(title.to_string()),
        redirects: 0,
        final_url: None,
    }
}

/// Check one record against `want`; a list of problems.
fn check(url: &str, rec: &Value, want: &Want) -> Vec<String> {
    let mut bad = Vec::new();
    for field in [
        "final_url",
        "status",
        "title",
        "error",
        "redirects",
        "bytes",
        "ms",
        "ts",
    ] {
        if rec.get(field).is_none() {
            bad.push(format!("{url}: field {field} missing in {rec}"));
        }
    }
    if !rec["ts"].is_string() || !rec["ms"].is_number() || !rec["bytes"].is_u64() {
        bad.push(format!("{url}: ts/ms/bytes have wrong types: {rec}"));
    }
    match want {
        Want::Page {
            status,
            title,
            redirects,
            final_url,
        } => {
            let final_url = final_url.clone().unwrap_or_else(|| url.to_string());
            let expect = serde_json::json!({
                "status": status, "title": title, "redirects": redirects,
                "final_url": final_url, "error": null,
            });
            for (k, v) in expect.as_object().expect("object") {
                if &rec[k] != v {
                    bad.push(format!(
                        "{url}: {k}: want {v}, got {} (record {rec})",
                        rec[k]
                    ));
                }
            }
        }
        Want::Error(kind) => {
            if error_kind(rec) != Some(*kind) || !rec["title"].is_null() {
                bad.push(format!(
                    "{url}: want error {kind} and null title, got {rec}"
                ));
            }
            if !rec["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && !m.contains('\n'))
            {
                bad.push(format!(
                    "{url}: error.message must be one non-empty line: {rec}"
                ));
            }
        }
        Want::NoTitleOrTooLarge => {
            let ok = rec["title"].is_null()
                && match error_kind(rec) {
                    None => rec["status"] == 200,
                    Some(k) => k == "too_large",
                };
            if !ok {
                bad.push(format!(
                    "{url}: want a titleless 200 or too_large, got {rec}"
                ));
            }
        }
    }
    bad
}

/// Run `fetch` over `cases` (URLs given on stdin), assert one record each, the wants, the
/// time bound and exit 0.
fn run_cases(cases: &[(String, Want)], args: &[&str], bound: Duration) {
    let mut input = String::new();
    for (url, _) in cases {
        input.push_str(url);
        input.push('\n');
    }
    let mut all_args = vec!["-i", "-"];
    all_args.extend_from_slice(args);
    let run = run_fetch(&all_args, Some(input.as_bytes()));
    run.assert_success();
    assert_eq!(
        run.records.len(),
        cases.len(),
        "one record per URL; stderr:\n{}",
        run.stderr
    );
    let by_url = run.by_url();
    let mut bad = Vec::new();
    for (url, want) in cases {
        match by_url.get(url) {
            Some(rec) => bad.extend(check(url, rec, want)),
            None => bad.push(format!("{url}: no record")),
        }
    }
    assert!(
        bad.is_empty(),
        "{} wrong records:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        run.elapsed <= bound,
        "took {:?}, bound {bound:?}",
        run.elapsed
    );
}

#[test]
fn every_fault_path_gets_its_classified_record_within_the_timeout() {
    let f = FaultServer::start();
    let hole = Blackhole::start();
    let refused = free_port();
    let u = |p: &str| f.url(p);
    let mut cases: Vec<(String, Want)> = vec![
        (u("/ok"), page("OK page")),
        (u("/chunked"), page("Chunked title")),
        (u("/close-delimited"), page("Close delimited")),
        (
            u("/redirect/3"),
            Want::Page {
                status: 200,
                title: Some("Redirect end".into()),
                redirects: 3,
                final_url: Some(u("/redirect/0")),
            },
        ),
        (u("/redirect/15"), Want::Error("too_many_redirects")),
        (u("/loop"), Want::Error("too_many_redirects")),
        (
            u("/relative-redirect"),
            Want::Page {
                status: 200,
                title: Some("OK page".into()),
                redirects: 1,
                final_url: Some(u("/ok?from=rel")),
            },
        ),
        (
            u("/404-with-title"),
            Want::Page {
                status: 404,
                title: Some("Not Found Here".into()),
                redirects: 0,
                final_url: None,
            },
        ),
        (u("/gzip"), page("Gzip title")),
        (u("/deflate"), page("Deflate title")),
        (
            u("/nohtml"),
            Want::Page {
                status: 200,
                title: None,
                redirects: 0,
                final_url: None,
            },
        ),
        (u("/stall"), Want::Error("timeout")),
        (u("/trickle-status"), Want::Error("timeout")),
        (u("/trickle-body"), Want::Error("timeout")),
        (u("/endless-headers"), Want::Error("too_large")),
        (u("/endless-body"), page("Endless")),
        (u("/endless-notitle"), Want::NoTitleOrTooLarge),
        (u("/reset"), Want::Error("reset")),
        (u("/garbage"), Want::Error("protocol")),
        (u("/bad-chunk"), Want::Error("protocol")),
        (u("/short-body"), Want::Error("protocol")),
        (u("/eof-before-response"), Want::Error("protocol")),
        (u("/conflicting-length"), Want::Error("protocol")),
        (u("/huge-head"), Want::Error("too_large")),
        (
            format!("http://127.0.0.1:{refused}/"),
            Want::Error("connect_refused"),
        ),
        (
            format!("http://{}/", hole.addr),
            Want::Error("connect_timeout"),
        ),
        (format!("https://{}/ok", f.addr), Want::Error("tls")),
    ];
    for kind in PageKind::ALL {
        let p = render(kind, "fault");
        let want = Want::Page {
            status: 200,
            title: p.title.clone(),
            redirects: 0,
            final_url: None,
        };
        cases.push((u(&format!("/charset/{}", kind.name())), want));
    }
    let timeout = TIMEOUT_S.to_string();
    run_cases(
        &cases,
        &[
            "--timeout",
            &timeout,
            "--connect-timeout",
            "2",
            "--per-host",
            "64",
        ],
        Duration::from_secs(TIMEOUT_S) + MARGIN,
    );
    // The over-long title is flagged.
    let run = run_fetch(&[&u("/charset/long")], None);
    run.assert_success();
    assert_eq!(run.records.len(), 1);
    assert_eq!(
        run.records[0]["title_truncated"], true,
        "{}",
        run.records[0]
    );
    // No retries of a page that gave its title; a chain over the limit is not walked past
    // the limit (15 -> ... -> 5 is 10 redirects; /redirect/4 is never requested).
    assert_eq!(f.hits("/endless-body"), 1);
    assert_eq!(f.hits("/redirect/15"), 1);
    assert_eq!(
        f.hits("/redirect/4"),
        0,
        "a chain over the limit must not be walked to its end"
    );
}

#[test]
fn max_redirects_option_is_the_limit() {
    let f = FaultServer::start();
    let cases = vec![
        (
            f.url("/redirect/2"),
            Want::Page {
                status: 200,
                title: Some("Redirect end".into()),
                redirects: 2,
                final_url: Some(f.url("/redirect/0")),
            },
        ),
        (f.url("/redirect/3"), Want::Error("too_many_redirects")),
    ];
    run_cases(&cases, &["--max-redirects", "2"], Duration::from_secs(20));
}

#[test]
fn keep_alive_connections_are_reused_for_the_same_host() {
    const N: usize = 60;
    let f = FaultServer::start();
    let cases: Vec<(String, Want)> = (0..N)
        .map(|i| {
            (
                f.url(&format!("/keepalive/{i}")),
                page(&format!("keepalive {i}")),
            )
        })
        .collect();
    run_cases(
        &cases,
        &["--per-host", "2", "-c", "4"],
        Duration::from_secs(20),
    );
    assert_eq!(f.requests(), N as u64);
    assert!(
        f.connections() <= 8,
        "{} connections for {N} requests: no keep-alive reuse",
        f.connections()
    );
}

/// A page far past the title is read to its end (unseen) when the slot has another job for
/// the host, so one connection serves them all; a lone page is not read to its end.
#[test]
fn big_pages_keep_their_connection_only_when_the_host_has_more_jobs() {
    const N: usize = 12;
    let f = FaultServer::start();
    let cases: Vec<(String, Want)> = (0..N)
        .map(|i| (f.url(&format!("/bigpage/{i}")), page(&format!("big {i}"))))
        .collect();
    run_cases(
        &cases,
        &["--per-host", "1", "-c", "1"],
        Duration::from_secs(20),
    );
    assert_eq!(f.requests(), N as u64);
    // The first page may start before the others are queued (then it is a lone page).
    assert!(
        f.connections() <= 2,
        "{} connections for {N} big pages on one host",
        f.connections()
    );

    let lone = FaultServer::start();
    let url = lone.url("/bigpage/lone");
    let run = run_fetch(&["-c", "1", &url], None);
    run.assert_success();
    let rec = &run.records[0];
    assert_eq!(rec["title"], "big lone");
    let bytes = rec["bytes"].as_u64().unwrap();
    assert!(
        bytes < support::fault::BIG_PAGE_BYTES as u64,
        "a lone page was read to its end ({bytes} bytes)"
    );
}

/// With `--follow`, each job moves its slot from the index host to the article host and
/// back: the connection it leaves is parked in the keep-alive pool and taken up again by the
/// next job, so each host is connected to about once, not once per job.
#[test]
fn connections_left_for_another_host_are_parked_and_reused() {
    const N: usize = 10;
    let index = FaultServer::start();
    let articles = FaultServer::start();
    let port = articles.addr.port();
    let mut input = String::new();
    for i in 0..N {
        input.push_str(&index.url(&format!("/linkto/{port}/{i}")));
        input.push('\n');
    }
    let run = run_fetch(
        &["-i", "-", "--follow", "h3 a", "-c", "1", "--per-host", "1"],
        Some(input.as_bytes()),
    );
    run.assert_success();
    assert_eq!(run.records.len(), N);
    for (i, url) in input.lines().enumerate() {
        let rec = &run.by_url()[url];
        assert_eq!(rec["title"], format!("keepalive {i}"), "{rec}");
        assert_eq!(
            rec["link"],
            articles.url(&format!("/keepalive/{i}")),
            "{rec}"
        );
    }
    assert_eq!(
        (index.requests(), articles.requests()),
        (N as u64, N as u64)
    );
    assert!(
        index.connections() <= 2 && articles.connections() <= 2,
        "connections: index {}, articles {} for {N} jobs",
        index.connections(),
        articles.connections()
    );
}

/// `unreachable`: in a network namespace of its own (root only; skipped otherwise) with an
/// `unreachable` route for 127.99.0.0/16, connecting there fails with EHOSTUNREACH, which
/// must be reported as `unreachable` (not as a refusal or a timeout), at once.
#[test]
fn unreachable_routes_are_classified() {
    use std::process::Command;
    if !support::running_as_root() {
        eprintln!("not root: cannot create a network namespace; skipping");
        return;
    }
    let ns = format!("ringcrawl-unreach-{}", std::process::id());
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ip(&["netns", "add", &ns]) {
        eprintln!("`ip netns add` failed; skipping");
        return;
    }
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    let setup = "ip link set lo up && ip route add unreachable 127.99.0.0/16 table local";
    assert!(ip(&["netns", "exec", &ns, "sh", "-c", setup]), "{setup}");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, support::ringcrawl_bin(), "fetch"])
        .args(["--connect-timeout", "5", "http://127.99.0.1/"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&out.stdout).expect("one record");
    assert_eq!(error_kind(&rec), Some("unreachable"), "{rec}");
    assert!(rec["ms"].as_f64().unwrap() < 1000.0, "not at once: {rec}");
}

#[test]
fn stalled_connections_do_not_hold_up_other_hosts() {
    const STALLS: usize = 1000;
    const PAGES: usize = 300;
    let stalls = FaultServer::start();
    let good = FaultServer::start();
    let mut cases: Vec<(String, Want)> = (0..STALLS)
        .map(|i| (stalls.url(&format!("/stall?n={i}")), Want::Error("timeout")))
        .collect();
    cases.extend((0..PAGES).map(|i| (good.url(&format!("/ok?n={i}")), page("OK page"))));
    let timeout = TIMEOUT_S.to_string();
    run_cases(
        &cases,
        &["--timeout", &timeout, "-c", "1400", "--per-host", "1000"],
        Duration::from_secs(TIMEOUT_S) + MARGIN,
    );
}

#[test]
fn dns_failures_are_classified() {
    let f = FaultServer::start();
    let dns = Dnsmasq::start(&["faults.test".to_string()]);
    let port = f.addr.port();
    let cases = vec![
        (format!("http://faults.test:{port}/ok"), page("OK page")),
        (
            format!("http://{NXDOMAIN_NAME}:{port}/"),
            Want::Error("dns_nxdomain"),
        ),
        (
            format!("http://{NO_ADDRESS_NAME}:{port}/"),
            Want::Error("dns_no_address"),
        ),
        (
            format!("http://127.0.0.1:{port}/keepalive/ip"),
            page("keepalive ip"),
        ),
    ];
    run_cases(
        &cases,
        &["--resolver", &dns.resolver_arg()],
        Duration::from_secs(20),
    );

    let servfail = FaultDns::start(FaultDnsMode::ServFail);
    let cases = vec![(
        format!("http://faults.test:{port}/ok"),
        Want::Error("dns_failure"),
    )];
    run_cases(
        &cases,
        &["--resolver", &servfail.addr.to_string()],
        Duration::from_secs(20),
    );
    assert!(servfail.queries() >= 1);

    // A DNS server that never answers: dns_timeout, well before a long URL deadline.
    let silent = FaultDns::start(FaultDnsMode::Silent);
    let cases = vec![(
        format!("http://faults.test:{port}/ok"),
        Want::Error("dns_timeout"),
    )];
    run_cases(
        &cases,
        &["--resolver", &silent.addr.to_string(), "--timeout", "20"],
        Duration::from_secs(20),
    );
}

/// A panic outside the per-URL catch (here: in a slot's bookkeeping, injected through the
/// debug build's failpoint) ends `fetch` promptly with exit 1 and one line saying why,
/// instead of a hang with the slot budget held.
#[test]
fn a_worker_panic_ends_fetch_promptly_with_exit_1() {
    let server = FaultServer::start();
    let list: String = (0..200)
        .map(|i| server.url(&format!("/keepalive/{i}")) + "\n")
        .collect();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(support::ringcrawl_bin())
        .args(["fetch", "-i", "-", "-q", "-c", "4", "--threads", "1"])
        .env("RINGCRAWL_FAILPOINT", "slot-release:2")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(list.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run ringcrawl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ringcrawl:"))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(
        ours[0].contains("internal error") && ours[0].contains("failpoint slot-release"),
        "{stderr}"
    );
}
