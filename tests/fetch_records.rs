//! Issue 15 records and input of `ringcrawl fetch` against the in-process fault server and a
//! real dnsmasq: the redirect chain (`--chain`), CSV output read back by a real CSV parser,
//! bare host names, and `--resolver IP:PORT`.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{error_kind, ringcrawl_bin, run_fetch, Dnsmasq, FaultServer};

/// `chain` as (path, status) pairs, the server's base cut off.
fn chain(r: &Value, base: &str) -> Vec<(String, u64)> {
    r["chain"]
        .as_array()
        .unwrap_or_else(|| panic!("no chain: {r}"))
        .iter()
        .map(|h| {
            let url = h["url"].as_str().unwrap();
            let path = url.strip_prefix(base).unwrap_or(url).to_string();
            (path, h["status"].as_u64().unwrap())
        })
        .collect()
}

fn hops(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(p, s)| (p.to_string(), *s)).collect()
}

/// `--chain`: every redirect before the page, in order, with its status; `[]` without
/// redirects; with `--follow` hop 1's page sits between the hops' redirects; a failure
/// keeps what it received. Without `--chain` there is no `chain` field at all.
#[test]
fn chain_lists_the_responses_before_the_final_one() {
    let f = FaultServer::start();
    let base = f.base();
    let three = f.url("/redirect/3");
    let none = f.url("/ok");
    let too_many = f.url("/redirect/5");
    let run = run_fetch(
        &[
            "-q",
            "--chain",
            "--max-redirects",
            "3",
            &three,
            &none,
            &too_many,
        ],
        None,
    );
    run.assert_success();
    let recs = run.by_url();
    let r = &recs[three.as_str()];
    assert_eq!(r["title"], "Redirect end", "{r}");
    assert_eq!(r["redirects"], 3);
    assert_eq!(
        chain(r, &base),
        hops(&[
            ("/redirect/3", 302),
            ("/redirect/2", 302),
            ("/redirect/1", 302)
        ])
    );
    assert_eq!(r["final_url"], f.url("/redirect/0"));
    assert_eq!(chain(&recs[none.as_str()], &base), hops(&[]));
    let r = &recs[too_many.as_str()];
    assert_eq!(error_kind(r), Some("too_many_redirects"), "{r}");
    assert_eq!(
        chain(r, &base).len(),
        4,
        "the refused redirect included: {r}"
    );

    // --follow: hop 1's redirect, hop 1's page, then hop 2 (no redirect here).
    let port = f.addr.port();
    let hop1 = f.url(&format!("/goto/127.0.0.1/{port}/linkto/{port}/7"));
    let run = run_fetch(&["-q", "--chain", "--follow", "h3 a", &hop1], None);
    run.assert_success();
    let r = &run.records[0];
    assert_eq!(r["title"], "keepalive 7", "{r}");
    assert_eq!(
        chain(r, &base),
        hops(&[
            (&format!("/goto/127.0.0.1/{port}/linkto/{port}/7"), 302),
            (&format!("/linkto/{port}/7"), 200),
        ])
    );

    // Off by default, and from a config file.
    let run = run_fetch(&["-q", &three], None);
    assert!(run.records[0].get("chain").is_none(), "{}", run.records[0]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[fetch]\nchain = true\n").unwrap();
    let run = run_fetch(&["-q", "--config", cfg.to_str().unwrap(), &three], None);
    assert_eq!(chain(&run.records[0], &base).len(), 3);
}

/// The CSV cell a JSON record's field becomes (null and absent: empty).
fn cell(r: &Value, column: &str) -> String {
    let v = match column {
        "error_kind" => &r["error"]["kind"],
        "error_message" => &r["error"]["message"],
        "error_hop" => &r["error"]["hop"],
        "chain" => {
            let pairs: Vec<String> = r["chain"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|h| format!("{} {}", h["status"], h["url"].as_str().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            return pairs.join(" ");
        }
        c => &r[c],
    };
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `--format csv` gives the same records as JSON Lines: a header, then one row per line,
/// parsed back by a real CSV parser, with every column holding the JSON value (timings
/// aside), whatever the values hold (commas and quotes in URLs and titles).
#[test]
fn csv_output_reads_back_as_the_json_records() {
    let f = FaultServer::start();
    let port = f.addr.port();
    let lines = [
        f.url("/ok"),
        f.url("/redirect/2"),
        f.url("/404-with-title"),
        f.url("/nohtml"),
        f.url("/sleep/0/a,b"),
        f.url("/sleep/0/say\"hi\""),
        "not a url, \"really\"".to_string(),
        format!("127.0.0.1:{port}/ok?bare"),
        "http://127.0.0.1:1/refused".to_string(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let list = list.to_str().unwrap();
    let json = run_fetch(&["-q", "--chain", "-i", list], None);
    json.assert_success();
    let json = json.by_url();

    let out = Command::new(ringcrawl_bin())
        .args(["fetch", "-q", "--chain", "--format", "csv", "-i", list])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header.join(" "),
        "url final_url ip status content_type title title_truncated link error_kind \
         error_message error_hop attempts redirects chain bytes ms ts tls_verified src line"
    );
    let rows: Vec<HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), lines.len());
    for row in &rows {
        let r = &json[row["url"].as_str()];
        for column in &header {
            match column.as_str() {
                "ms" | "ts" => assert!(!row[column].is_empty()),
                c => assert_eq!(row[c], cell(r, c), "{c} of {}", row["url"]),
            }
        }
    }
    let titles: Vec<&str> = rows.iter().map(|r| r["title"].as_str()).collect();
    assert!(
        titles.contains(&"slept a,b") && titles.contains(&"slept say%22hi%22"),
        "{titles:?}"
    );
}

/// A bare host name line is fetched as http://: as an argument, in a list, and when its
/// host's queue spills to disk (the jobs read back go through the same rule).
#[test]
fn bare_host_names_are_fetched_over_http() {
    const SPILLED: usize = 3_000;
    let f = FaultServer::start();
    let port = f.addr.port();
    let bare = format!("127.0.0.1:{port}/ok");
    let named = format!("localhost:{port}/redirect/1");
    let run = run_fetch(&["-q", &bare, &named], None);
    run.assert_success();
    let recs = run.by_url();
    assert_eq!(
        recs[bare.as_str()]["title"],
        "OK page",
        "{}",
        recs[bare.as_str()]
    );
    assert_eq!(recs[bare.as_str()]["final_url"], format!("http://{bare}"));
    assert_eq!(
        recs[named.as_str()]["title"],
        "Redirect end",
        "{}",
        recs[named.as_str()]
    );

    let list: String = (0..SPILLED)
        .map(|i| format!("127.0.0.1:{port}/ok?{i}\n"))
        .collect();
    let run = run_fetch(
        &["-q", "-i", "-", "-c", "2", "--threads", "1"],
        Some(list.as_bytes()),
    );
    run.assert_success();
    assert_eq!(run.records.len(), SPILLED);
    for r in &run.records {
        assert_eq!(r["title"], "OK page", "{r}");
    }
}

/// `--resolver IP:PORT` asks that server (a real dnsmasq) for names, bare ones included.
/// (`--resolver IP`, port 53, is a unit test: dnsmasq listens on a free port here.)
#[test]
fn resolver_ip_port_is_asked_for_names() {
    let f = FaultServer::start();
    let port = f.addr.port();
    let dns = Dnsmasq::start(&["named.test".to_string()]);
    let url = format!("http://named.test:{port}/ok");
    let bare = format!("named.test:{port}/sleep/0/bare");
    let run = run_fetch(
        &["-q", "--resolver", &dns.resolver_arg(), &url, &bare],
        None,
    );
    run.assert_success();
    let recs = run.by_url();
    assert_eq!(
        recs[url.as_str()]["title"],
        "OK page",
        "{}",
        recs[url.as_str()]
    );
    assert_eq!(recs[bare.as_str()]["title"], "slept bare");
    assert_eq!(recs[url.as_str()]["ip"], "127.0.0.1");
}
