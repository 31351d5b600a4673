//! The daemon's Prometheus endpoint, end to end: the real `ringcrawl run` with
//! `[daemon] metrics_listen` on a free 127.0.0.1 port crawls a list (pages with titles,
//! 404s without one, refused connections, resets, garbage, invalid lines) from the in-process
//! fault server, and a scrape after the list is done must pass `promtool check metrics`
//! (Debian's prometheus package; `scripts/test` installs it, and under `CI` a missing
//! promtool fails the test) and agree with the journal: records by outcome and by error
//! kind, durable records, bytes, the duration histogram's count and sum. Also: every kind is
//! there (at 0) before any work, other paths and methods are refused, a reload keeps the
//! address (restart-only), a taken port fails the start with one line, and the endpoint
//! closes with the daemon.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, wait_until, FaultServer};

const BIN: &str = env!("CARGO_BIN_EXE_ringcrawl");
/// Longest wait for any condition here.
const WAIT: Duration = Duration::from_secs(90);
/// Where Debian's prometheus package puts promtool.
const PROMTOOL: &str = "/usr/bin/promtool";
/// The 19 error kinds of ARCHITECTURE.md, in `ErrorKind` order.
const KINDS: [&str; 19] = [
    "invalid_url",
    "dns_nxdomain",
    "dns_no_address",
    "dns_failure",
    "dns_timeout",
    "connect_refused",
    "connect_timeout",
    "unreachable",
    "tls",
    "reset",
    "timeout",
    "protocol",
    "too_large",
    "too_many_redirects",
    "no_link",
    "denied",
    "robots",
    "proxy",
    "internal",
];

/// A daemon process, killed if a test panics before stopping it.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM; the exit code.
    fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(started.elapsed() < WAIT, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// A temporary spool, journal and config file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn journal(&self) -> PathBuf {
        self.path("journal.jsonl")
    }

    fn config(&self) -> PathBuf {
        self.path("ringcrawl.toml")
    }

    fn write_config(&self, metrics_listen: &str) {
        let text = format!(
            "[daemon]\nspool = \"{}\"\njournal = \"{}\"\nfsync_batch_ms = 20\nrescan_secs = 0.2\n\
             metrics_listen = \"{metrics_listen}\"\n\
             [fetch]\nconcurrency = 32\nthreads = 2\ntimeout_secs = 10\nconnect_timeout_secs = 2\n\
             retries = 0\nallow = [\"loopback\"]\nrobots = false\n",
            self.path("spool").display(),
            self.journal().display(),
        );
        std::fs::write(self.config(), text).unwrap();
    }

    fn start(&self) -> Daemon {
        let stderr = self.path("daemon.log");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RINGCRAWL_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, stderr }
    }

    /// Queue `text` as a list with `ringcrawl submit`.
    fn submit(&self, text: &str) {
        let list = self.path("list.txt");
        std::fs::write(&list, text).unwrap();
        let out = Command::new(BIN)
            .args(["submit", "--spool"])
            .arg(self.path("spool"))
            .arg(&list)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn done(&self) -> usize {
        std::fs::read_dir(self.path("spool/done"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// One HTTP/1.1 exchange with the endpoint: (status, headers, body).
fn http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(request.as_bytes())?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Ok((status, head.to_string(), body.to_string()))
}

/// `GET /metrics`: the body, after checking the status and content type.
fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    body
}

/// Series (name with labels) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let v = if value == "+Inf" {
                f64::INFINITY
            } else {
                value.parse().unwrap()
            };
            (series.to_string(), v)
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in {m:?}"))
}

/// Whether a missing tool must fail the test (CI) rather than skip a step.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `promtool check metrics` on `text` (its parser and linter): no problem reported.
fn promtool_check(text: &str) {
    if !Path::new(PROMTOOL).exists() {
        assert!(
            !in_ci(),
            "{PROMTOOL} is missing (Debian package prometheus; scripts/test installs it)"
        );
        eprintln!("{PROMTOOL} is missing (apt-get install prometheus): format not checked");
        return;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

#[test]
fn a_scrape_passes_promtool_and_agrees_with_the_journal() {
    let server = FaultServer::start();
    let refused = free_port();
    let s = Setup::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    s.write_config(&addr.to_string());
    let d = s.start();
    assert!(
        wait_until(WAIT, || http(addr, "GET /metrics HTTP/1.1\r\n\r\n").is_ok()),
        "the endpoint never answered:\n{}",
        d.log()
    );

    // Before any work: every kind at 0 (rate() works from the first scrape), nothing queued.
    let first = scrape(addr);
    promtool_check(&first);
    let m = samples(&first);
    for kind in KINDS {
        assert_eq!(
            get(
                &m,
                &format!("ringcrawl_record_errors_total{{kind=\"{kind}\"}}")
            ),
            0.0
        );
    }
    assert_eq!(get(&m, "ringcrawl_records_total{outcome=\"ok\"}"), 0.0);
    assert_eq!(get(&m, "ringcrawl_journal_paused"), 0.0);

    // Other paths and methods.
    let (status, _, _) = http(addr, "GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status, 404);
    let (status, head, _) =
        http(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(status, 405);
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");

    let mut list = String::new();
    for i in 0..40 {
        list.push_str(&server.url(&format!("/ok?i={i}\n")));
    }
    for i in 0..10 {
        list.push_str(&server.url(&format!("/no-such-page/{i}\n")));
        list.push_str(&format!("http://127.0.0.1:{refused}/{i}\n"));
    }
    for i in 0..3 {
        list.push_str(&server.url(&format!("/reset?i={i}\n")));
        list.push_str(&server.url(&format!("/garbage?i={i}\n")));
        list.push_str("not a url\n\n");
    }
    s.submit(&list);
    assert!(
        wait_until(WAIT, || s.done() == 1),
        "the list was not finished:\n{}",
        d.log()
    );
    // The spool's directories are counted at most once a second: scrape until the count
    // made after the list moved to done/ shows.
    let mut text = scrape(addr);
    assert!(
        wait_until(WAIT, || {
            text = scrape(addr);
            text.contains("\nringcrawl_spool_lists{state=\"done\"} 1\n")
        }),
        "{text}"
    );
    promtool_check(&text);
    let m = samples(&text);

    let journal: Vec<serde_json::Value> = std::fs::read_to_string(s.journal())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(journal.len(), 40 + 20 + 9);
    let mut kinds: BTreeMap<&str, f64> = KINDS.iter().map(|k| (*k, 0.0)).collect();
    let mut ok = 0.0;
    for r in &journal {
        match r["error"]["kind"].as_str() {
            Some(k) => *kinds.get_mut(k).expect("a known kind") += 1.0,
            None => ok += 1.0,
        }
    }
    // The mix did what it says.
    assert_eq!(ok, 50.0, "ok pages and 404s");
    assert_eq!(
        journal
            .iter()
            .filter(|r| r["status"] == 404 && r["title"].is_null())
            .count(),
        10
    );
    assert_eq!(kinds["connect_refused"], 10.0);
    assert_eq!(kinds["invalid_url"], 3.0);

    // Records: in total, by outcome, by kind.
    let records: f64 = ["ok", "error"]
        .iter()
        .map(|o| get(&m, &format!("ringcrawl_records_total{{outcome=\"{o}\"}}")))
        .sum();
    assert_eq!(records, journal.len() as f64);
    assert_eq!(get(&m, "ringcrawl_records_total{outcome=\"ok\"}"), ok);
    for (kind, n) in &kinds {
        let series = format!("ringcrawl_record_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(get(&m, &series), *n, "{series}");
    }
    assert_eq!(
        get(&m, "ringcrawl_journal_records_total"),
        journal.len() as f64
    );
    let bytes: u64 = journal.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert_eq!(get(&m, "ringcrawl_read_bytes_total"), bytes as f64);

    // The histogram has the tried URLs' ms (invalid lines were never tried).
    let tried: Vec<f64> = journal
        .iter()
        .filter(|r| r["attempts"].as_u64().unwrap() > 0)
        .map(|r| r["ms"].as_f64().unwrap())
        .collect();
    let h = "ringcrawl_fetch_duration_seconds";
    assert_eq!(get(&m, &format!("{h}_count")), tried.len() as f64);
    assert_eq!(
        get(&m, &format!("{h}_bucket{{le=\"+Inf\"}}")),
        tried.len() as f64
    );
    let secs: f64 = tried.iter().sum::<f64>() / 1000.0;
    assert!(
        (get(&m, &format!("{h}_sum")) - secs).abs() < 1e-5,
        "{secs} {m:?}"
    );
    let within = |limit_s: f64| tried.iter().filter(|ms| **ms <= limit_s * 1000.0).count();
    assert_eq!(
        get(&m, &format!("{h}_bucket{{le=\"1\"}}")),
        within(1.0) as f64
    );

    // Nothing left in flight; the spool as it is.
    assert_eq!(get(&m, "ringcrawl_fetches_in_flight"), 0.0);
    assert_eq!(get(&m, "ringcrawl_jobs_queued"), 0.0);
    assert_eq!(get(&m, "ringcrawl_spool_lists{state=\"done\"}"), 1.0);
    for state in ["new", "cur", "bad"] {
        assert_eq!(
            get(&m, &format!("ringcrawl_spool_lists{{state=\"{state}\"}}")),
            0.0
        );
    }
    assert!(get(&m, "ringcrawl_connections_opened_total") >= 1.0);
    assert!(
        get(&m, "ringcrawl_connections_reused_total") >= 1.0,
        "40 pages of one host reuse connections"
    );
    assert_eq!(get(&m, "ringcrawl_dns_lookups_total"), 0.0, "IP literals");

    // A reload keeps the address (restart-only) and says so.
    s.write_config(&format!("127.0.0.1:{}", free_port()));
    d.signal("HUP");
    assert!(
        wait_until(WAIT, || d.log().contains("daemon.metrics_listen")),
        "{}",
        d.log()
    );
    assert!(d.log().contains("needs a restart"), "{}", d.log());
    let again = samples(&scrape(addr));
    assert_eq!(get(&again, "ringcrawl_records_total{outcome=\"ok\"}"), ok);

    assert_eq!(d.stop(), Some(0));
    assert!(TcpStream::connect(addr).is_err(), "closed with the daemon");
}

#[test]
fn a_taken_port_fails_the_start_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let s = Setup::new();
    s.write_config(&addr.to_string());
    let mut d = s.start();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < WAIT, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", d.log());
    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("ringcrawl: "))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(&format!(
            "cannot listen for metrics on {addr} (daemon.metrics_listen)"
        )),
        "{log}"
    );
}
