//! `ringcrawl load` against the in-process fault servers: request counts, status codes and
//! keep-alive reuse in the `--json` report, stale keep-alive connections (a server that
//! closes after each response without saying so) reopened without counting errors, `-H`
//! headers on every request; method, body and Content-Length as the server sees them;
//! `-d` as a hard limit (a server that never answers, one whose accept queue is full) with
//! the requests in flight abandoned and counted apart, the banner before the run; one line
//! and exit 1 when no request got a response; the latency statistics and histogram of
//! `--json` and their sums; `--timeout`; `--bind` source addresses.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, ringcrawl_bin, Blackhole, FaultServer};

/// Slack allowed past a `-d` limit before a run counts as overrunning it (start-up, a debug
/// build on a busy machine).
const END_SLACK: Duration = Duration::from_secs(3);

/// One finished `ringcrawl load` run.
struct LoadRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// When the first line of stdout arrived, from the start.
    first_line_after: Option<Duration>,
}

/// Run `ringcrawl load ARGS`, noting when its first stdout line arrives.
fn run_load(args: &[&str]) -> LoadRun {
    let started = Instant::now();
    let mut child = Command::new(ringcrawl_bin())
        .arg("load")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringcrawl load");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut out = BufReader::new(child.stdout.take().expect("stdout pipe"));
    let mut stdout = String::new();
    let mut first_line_after = None;
    while out.read_line(&mut stdout).expect("read stdout") > 0 {
        first_line_after.get_or_insert_with(|| started.elapsed());
    }
    let status = child.wait().expect("wait for ringcrawl load");
    LoadRun {
        status,
        stdout,
        stderr: err_reader.join().expect("stderr thread"),
        elapsed: started.elapsed(),
        first_line_after,
    }
}

/// Run `ringcrawl load ARGS --json`; the report, parsed.
fn load_json(args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let run = run_load(&args);
    assert!(run.status.success(), "load failed: {}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {}", run.stderr))
}

/// A run that got no response: exit 1, nothing on stdout but the banner, and one line on
/// stderr saying so; that line.
fn assert_no_success(run: &LoadRun) -> String {
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
    assert!(
        lines[0].starts_with("ringcrawl: load: no request succeeded: "),
        "{}",
        lines[0]
    );
    assert!(
        !run.stdout.contains("Requests/sec") && !run.stdout.contains('{'),
        "no report: {}",
        run.stdout
    );
    lines[0].to_string()
}

#[test]
fn load_counts_every_request_on_kept_alive_connections() {
    let server = FaultServer::start();
    let r = load_json(&[&server.url("/ok"), "-n", "500", "-c", "4"]);
    assert_eq!(r["requests"], 500, "{r}");
    assert_eq!(r["status"]["200"], 500, "{r}");
    assert_eq!(r["error_kinds"], serde_json::json!({}), "{r}");
    assert_eq!(r["connects"], 4, "one connection per slot, kept alive: {r}");
    assert_eq!(server.requests(), 500);
    assert!(r["latency_ms"]["max"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn stale_keep_alive_connections_are_reopened_not_counted_as_errors() {
    let server = FaultServer::start();
    let r = load_json(&[&server.url("/then-close"), "-n", "60", "-c", "2"]);
    assert_eq!(r["requests"], 60, "{r}");
    assert_eq!(r["status"]["200"], 60, "{r}");
    assert_eq!(r["error_kinds"], serde_json::json!({}), "{r}");
    assert_eq!(r["connects"], 60, "a new connection per request: {r}");
    assert_eq!(server.requests(), 60);
}

#[test]
fn extra_headers_go_on_every_request() {
    let server = FaultServer::start();
    let r = load_json(&[
        &server.url("/ok"),
        "-n",
        "10",
        "-c",
        "2",
        "-H",
        "X-A: 1",
        "-H",
        "User-Agent: bench/2",
    ]);
    assert_eq!(r["status"]["200"], 10, "{r}");
    let heads = server.heads();
    assert_eq!(heads.len(), 10);
    for head in heads {
        assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nX-A: 1"), "{head}");
        assert!(head.contains("\r\nUser-Agent: bench/2"), "{head}");
        assert!(
            !head.contains("ringcrawl/"),
            "the default User-Agent is replaced: {head}"
        );
    }
}

#[test]
fn method_body_file_and_headers_are_what_the_server_sees() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    // Binary-safe: the file's bytes, as they are.
    let body: &[u8] = b"{\"name\": \"ringcrawl\", \"bytes\": \"\x00\xff\r\n\"}\n";
    std::fs::write(&file, body).unwrap();
    let r = load_json(&[
        &server.url("/ok"),
        "-m",
        "POST",
        "--body-file",
        file.to_str().unwrap(),
        "-H",
        "X-A: 1",
        "-H",
        "Content-Type: application/json",
        "-n",
        "20",
        "-c",
        "2",
    ]);
    assert_eq!(r["requests"], 20, "{r}");
    assert_eq!(r["method"], "POST", "{r}");
    assert_eq!(r["status"]["200"], 20, "{r}");
    let heads = server.heads();
    assert_eq!(heads.len(), 20);
    for head in &heads {
        assert!(head.starts_with("POST /ok HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nX-A: 1\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
    }
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 20);
    assert!(bodies.iter().all(|b| b == body), "every body whole");
    assert_eq!(server.connections(), 2, "kept alive with bodies too");

    // --body and any token as the method; a method with content says Content-Length: 0.
    let server = FaultServer::start();
    let r = load_json(&[
        &server.url("/ok"),
        "-m",
        "PURGE",
        "--body",
        "x=1",
        "-n",
        "3",
    ]);
    assert_eq!(r["requests"], 3, "{r}");
    let head = &server.heads()[0];
    assert!(head.starts_with("PURGE /ok HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 3"), "{head}");
    assert_eq!(server.bodies()[0], b"x=1");
    let server = FaultServer::start();
    load_json(&[&server.url("/ok"), "-m", "PUT", "-n", "1", "-c", "1"]);
    assert!(server.heads()[0].contains("\r\nContent-Length: 0"));
}

#[test]
fn an_unreadable_body_file_or_a_bad_method_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for (args, want) in [
        (
            vec!["--body-file", missing.to_str().unwrap()],
            "bad value for --body-file: ",
        ),
        (
            vec!["--body-file", dir.path().to_str().unwrap()],
            "bad value for --body-file: ",
        ),
        (vec!["-m", "GE T"], "bad value for --method: "),
        (
            vec!["--body", "x", "--body-file", missing.to_str().unwrap()],
            "the argument '--body <STRING>' cannot be used with",
        ),
    ] {
        let mut all = vec!["http://127.0.0.1:1/", "-n", "1"];
        all.extend(args);
        let run = run_load(&all);
        assert_eq!(run.status.code(), Some(2), "{all:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.starts_with(&format!("ringcrawl: {want}")),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "no banner: {}", run.stdout);
    }
}

#[test]
fn duration_is_a_hard_limit_when_the_server_never_answers() {
    let server = FaultServer::start();
    let run = run_load(&[&server.url("/stall"), "-d", "2", "-c", "4"]);
    assert!(
        run.elapsed < Duration::from_secs(2) + END_SLACK,
        "a 2 s run took {:?}",
        run.elapsed
    );
    let line = assert_no_success(&run);
    assert!(line.contains("4 requests abandoned"), "{line}");
    assert!(
        run.stdout
            .starts_with(&format!("Running 2s test @ {}\n", server.url("/stall"))),
        "{}",
        run.stdout
    );
    let banner_at = run.first_line_after.expect("a banner");
    assert!(
        banner_at < Duration::from_secs(1),
        "the banner comes before the run, not after it: {banner_at:?}"
    );
}

#[test]
fn duration_is_a_hard_limit_when_the_accept_queue_is_full() {
    // Connects time out after 10 s (the default --connect-timeout); the run ends at 2 s.
    let hole = Blackhole::start();
    let run = run_load(&[&format!("http://{}/", hole.addr), "-d", "2", "-c", "4"]);
    assert!(
        run.elapsed < Duration::from_secs(2) + END_SLACK,
        "a 2 s run took {:?}",
        run.elapsed
    );
    let line = assert_no_success(&run);
    assert!(line.contains("abandoned"), "{line}");
}

#[test]
fn requests_in_flight_at_the_end_are_abandoned_apart_from_completed_ones() {
    let server = FaultServer::start();
    let started = Instant::now();
    let r = load_json(&[&server.url("/sleep/600/x"), "-d", "2", "-c", "2"]);
    assert!(started.elapsed() < Duration::from_secs(2) + END_SLACK);
    let requests = r["requests"].as_u64().unwrap();
    let abandoned = r["abandoned"].as_u64().unwrap();
    assert!((2..=6).contains(&requests), "{r}");
    assert!(
        (1..=2).contains(&abandoned),
        "one in flight per connection: {r}"
    );
    assert_eq!(r["error_kinds"], serde_json::json!({}), "not errors: {r}");
    assert_eq!(r["errors"]["timeout"], 0, "{r}");
    assert!(r["duration_s"].as_f64().unwrap() < 2.5, "{r}");
    assert!(r["latency_ms"]["min"].as_f64().unwrap() >= 600.0, "{r}");
}

#[test]
fn a_closed_port_fails_at_once_with_one_line() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let run = run_load(&[&url, "-d", "20", "-c", "8"]);
    let line = assert_no_success(&run);
    assert!(
        line.contains(&format!("connection refused by 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(
        run.elapsed < Duration::from_secs(10),
        "no connection can be made: no need to wait for -d 20 ({:?})",
        run.elapsed
    );
    let run = run_load(&[&url, "-n", "5", "--json"]);
    assert_no_success(&run);
    assert!(run.stdout.is_empty(), "no JSON report: {}", run.stdout);
}

#[test]
fn json_report_has_the_statistics_and_its_sums_agree() {
    let server = FaultServer::start();
    let r = load_json(&[&server.url("/ok"), "-n", "300", "-c", "3"]);
    let requests = r["requests"].as_u64().unwrap();
    assert_eq!(requests, 300, "{r}");
    let l = &r["latency_ms"];
    let stat = |k: &str| {
        l[k].as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{k}: {r}"))
    };
    for k in ["p50", "p75", "p90", "p99", "p999", "max"] {
        assert!(stat("min") <= stat(k), "{k}: {r}");
    }
    assert!(
        stat("p50") <= stat("p75") && stat("p75") <= stat("p90"),
        "{r}"
    );
    assert!(
        stat("p90") <= stat("p99") && stat("p99") <= stat("p999"),
        "{r}"
    );
    assert!(
        stat("p999") <= stat("max") && stat("mean") <= stat("max"),
        "{r}"
    );
    assert!(stat("stdev") >= 0.0, "{r}");
    let hist = r["histogram_ms"].as_array().expect("histogram_ms array");
    assert!(!hist.is_empty(), "{r}");
    let mut sum = 0;
    let mut prev = 0.0;
    for b in hist {
        let le = b["le"].as_f64().expect("le");
        assert!(le > prev, "bounds increase: {r}");
        prev = le;
        sum += b["count"].as_u64().expect("count");
    }
    assert_eq!(sum, requests, "every request in one bucket: {r}");
    assert!(prev >= stat("max"), "the last bucket holds the max: {r}");
    let statuses: u64 = r["status"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(statuses, requests, "{r}");
    assert_eq!(
        r["errors"],
        serde_json::json!({"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}),
        "{r}"
    );
    assert_eq!(r["abandoned"], 0, "-n runs abandon nothing: {r}");
    assert_eq!(r["method"], "GET");

    // Responses of 400 and above are completed requests, counted as status errors: exit 0.
    let r = load_json(&[&server.url("/404-with-title"), "-n", "50", "-c", "2"]);
    assert_eq!(r["requests"], 50, "{r}");
    assert_eq!(r["status"]["404"], 50, "{r}");
    assert_eq!(r["errors"]["status"], 50, "{r}");
}

#[test]
fn text_report_follows_the_banner() {
    let server = FaultServer::start();
    let run = run_load(&[&server.url("/ok"), "-n", "100", "-c", "2", "--threads", "1"]);
    assert!(run.status.success(), "{}", run.stderr);
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!(
            "Running 100 requests @ {}\n  1 threads and 2 connections\n",
            server.url("/ok")
        )),
        "{out}"
    );
    for want in [
        "  Latency (ms)  mean ",
        " stdev ",
        " min ",
        " max ",
        "  Latency distribution (ms)\n",
        "    99.9%  ",
        "  Latency histogram (ms)\n    <= ",
        "  100 requests in ",
        "  Status codes: 200: 100\n",
        "Requests/sec: ",
        "Transfer/sec: ",
    ] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
}

#[test]
fn timeout_bounds_each_request() {
    let server = FaultServer::start();
    let run = run_load(&[
        &server.url("/stall"),
        "-n",
        "4",
        "-c",
        "2",
        "--timeout",
        "1",
    ]);
    let line = assert_no_success(&run);
    assert!(line.contains("timed out"), "{line}");
    assert!(line.contains("(4 failed)"), "{line}");
    assert!(
        run.elapsed >= Duration::from_millis(1900) && run.elapsed < Duration::from_secs(5),
        "two rounds of 1 s timeouts: {:?}",
        run.elapsed
    );
}

#[test]
fn bind_addresses_are_the_sources_of_the_connections() {
    let server = FaultServer::start();
    let r = load_json(&[
        &server.url("/ok"),
        "-n",
        "40",
        "-c",
        "4",
        "--threads",
        "1",
        "--bind",
        "127.0.0.2,127.0.0.3",
    ]);
    assert_eq!(r["requests"], 40, "{r}");
    let mut sources: Vec<String> = server.peers().iter().map(|p| p.ip().to_string()).collect();
    assert_eq!(sources.len(), 4, "{sources:?}");
    sources.sort();
    sources.dedup();
    assert_eq!(sources, ["127.0.0.2", "127.0.0.3"], "used in turn");

    // With net.ipv4.ip_nonlocal_bind=1 the kernel accepts any address: nothing to check.
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .is_ok_and(|v| v.trim() == "1");
    if nonlocal {
        return;
    }
    let run = run_load(&[&server.url("/ok"), "-n", "1", "--bind", "192.0.2.1"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run
        .stderr
        .starts_with("ringcrawl: --bind 192.0.2.1: cannot bind"));
}
