//! `ringcrawl load` against the in-process fault server: request counts, status codes and
//! keep-alive reuse in the `--json` report, stale keep-alive connections (a server that
//! closes after each response without saying so) reopened without counting errors, and `-H`
//! headers on every request.

mod support;

use std::process::Command;

use support::{ringcrawl_bin, FaultServer};

/// Run `ringcrawl load ARGS --json`; the report, parsed.
fn load_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(ringcrawl_bin())
        .arg("load")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ringcrawl load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stderr}"))
}

#[test]
fn load_counts_every_request_on_kept_alive_connections() {
    let server = FaultServer::start();
    let r = load_json(&[&server.url("/ok"), "-n", "500", "-c", "4"]);
    assert_eq!(r["requests"], 500, "{r}");
    assert_eq!(r["status"]["200"], 500, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
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
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
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
