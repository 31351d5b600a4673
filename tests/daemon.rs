//! Integration tests of `ringcrawl run` / `ringcrawl submit`: the real binary on a temporary
//! spool and journal, fetching from a small HTTP server on 127.0.0.1 (some responses slow).
//! Covers: several lists, `kill -9` + restart (exactly once, no torn line), SIGHUP after the
//! journal was moved, SIGTERM drain and exit 0, a partial file in `tmp/` not read, an
//! unreadable file going to `bad/`, over-long and non-UTF-8 lines recorded as `fetch -i`
//! records them, `--check-config`, and the systemd unit (when `systemd-analyze` is
//! installed).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringcrawl");
/// Longest wait for any condition in these tests.
const WAIT: Duration = Duration::from_secs(90);
/// Delay of `/slow/...` responses.
const SLOW: Duration = Duration::from_millis(300);

/// A tiny HTTP/1.1 server: `/slow/...` answers after [`SLOW`], everything else at once, with
/// `<title>T {path}</title>`. One thread per connection, keep-alive honoured.
struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                thread::spawn(move || serve_conn(stream, &count));
            }
        });
        Server { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve_conn(stream: TcpStream, count: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        count.fetch_add(1, Ordering::Relaxed);
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        if path.starts_with("/slow/") {
            thread::sleep(SLOW);
        }
        let body = format!(
            "<!doctype html><html><head><title>T {path}</title></head><body>x</body></html>"
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// A daemon process that is killed if a test panics before stopping it.
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A temporary spool + journal + config file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let s = Setup { dir };
        let text = format!(
            "[daemon]\nspool = \"{}\"\njournal = \"{}\"\nfsync_batch_ms = 20\nrescan_secs = 0.2\n\
             max_files = 3\ndrain_grace_secs = 5\n{extra}\n[fetch]\nconcurrency = 64\nper_host = 16\n\
             threads = 1\ntimeout_secs = 10\nconnect_timeout_secs = 2\nallow = [\"loopback\"]\nrobots = false\n",
            s.spool().display(),
            s.journal().display()
        );
        std::fs::write(s.config(), text).unwrap();
        s
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn spool(&self) -> PathBuf {
        self.path("spool")
    }
    fn journal(&self) -> PathBuf {
        self.path("journal.jsonl")
    }
    fn config(&self) -> PathBuf {
        self.path("ringcrawl.toml")
    }

    fn start(&self) -> Proc {
        self.start_with(&[])
    }

    /// Start the daemon with extra environment variables.
    fn start_with(&self, env: &[(&str, &str)]) -> Proc {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let child = Proc(child);
        let spool = self.spool();
        wait_for("spool set up", || {
            spool.join("cur").is_dir() && spool.join(".lock").exists()
        });
        child
    }

    /// `ringcrawl submit`; returns its stdout.
    fn submit(&self, files: &[PathBuf]) -> String {
        let out = Command::new(BIN)
            .args(["submit", "--spool"])
            .arg(self.spool())
            .args(files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Write a list of `n` lines (every 10th blank, every 5th slow) into the temp dir.
    fn list(&self, server: &Server, name: &str, n: u64) -> (PathBuf, Vec<u64>) {
        let mut text = String::new();
        let mut lines = Vec::new();
        for i in 1..=n {
            if i % 10 == 0 {
                text.push_str("   \r\n");
                continue;
            }
            let kind = if i % 5 == 0 { "slow" } else { "fast" };
            text.push_str(&server.url(&format!("/{kind}/{name}/{i}")));
            text.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
            lines.push(i);
        }
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        (p, lines)
    }

    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.spool().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Proc) {
    signal(&child, "TERM");
    let st = wait_exit(&mut child);
    assert_eq!(st.code(), Some(0), "SIGTERM must exit 0");
}

/// Parse journal files: every line complete JSON; returns (src, line) -> records.
fn records(paths: &[PathBuf]) -> BTreeMap<(String, u64), Vec<serde_json::Value>> {
    let mut m: BTreeMap<(String, u64), Vec<serde_json::Value>> = BTreeMap::new();
    for p in paths {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            f.read_to_string(&mut text).unwrap();
        }
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "torn last line in {}",
            p.display()
        );
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}"));
            let k = (
                v["src"].as_str().expect("src").to_string(),
                v["line"].as_u64().expect("line"),
            );
            m.entry(k).or_default().push(v);
        }
    }
    m
}

fn journal_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

/// Every expected (src, line) has exactly one record, and there is nothing else.
fn assert_exactly_once(
    got: &BTreeMap<(String, u64), Vec<serde_json::Value>>,
    want: &[(String, u64)],
    server: &Server,
) {
    let dups: Vec<_> = got
        .iter()
        .filter(|(_, v)| v.len() != 1)
        .map(|(k, _)| k)
        .collect();
    assert!(dups.is_empty(), "duplicate records: {dups:?}");
    let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "missing records: {} e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(got.len(), want.len(), "unexpected extra records");
    for ((_, line), v) in got {
        let r = &v[0];
        let kind = if line % 5 == 0 { "slow" } else { "fast" };
        let path = r["url"]
            .as_str()
            .unwrap()
            .trim_start_matches(&server.url(""))
            .to_string();
        assert!(
            path.starts_with(&format!("/{kind}/")) && path.ends_with(&format!("/{line}")),
            "{r}"
        );
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["title"], format!("T {path}"), "{r}");
    }
}

fn want_for(src: &str, lines: &[u64]) -> Vec<(String, u64)> {
    lines.iter().map(|&l| (src.to_string(), l)).collect()
}

#[test]
fn several_lists_get_one_record_per_line() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let mut want = Vec::new();
    let mut files = Vec::new();
    for i in 0..4 {
        let name = format!("list-{i}.txt");
        let (p, lines) = s.list(&server, &name, 150 + i);
        want.extend(want_for(&name, &lines));
        files.push(p);
    }
    let out = s.submit(&files);
    for i in 0..4 {
        assert!(
            out.contains(&format!("list-{i}.txt")),
            "submit output names the file: {out}"
        );
    }
    wait_for("all lists done", || s.count("done") == 4);
    stop(child);
    want.sort();
    assert_exactly_once(&records(&[s.journal()]), &want, &server);
    assert_eq!(s.count("cur"), 0);
    assert_eq!(s.count("new"), 0);
    assert!(server.requests.load(Ordering::Relaxed) >= want.len() as u64);
}

#[test]
fn kill_9_mid_run_then_restart_gives_exactly_once() {
    let server = Server::start();
    let s = Setup::new("");
    let mut child = s.start();
    let mut want = Vec::new();
    let mut files = Vec::new();
    for i in 0..3 {
        let name = format!("big-{i}.txt");
        let (p, lines) = s.list(&server, &name, 2000);
        want.extend(want_for(&name, &lines));
        files.push(p);
    }
    s.submit(&files);
    let journal = s.journal();
    wait_for("some records", || journal_lines(&journal) > 500);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(s.count("cur") > 0, "lists were in progress at the kill");
    let before = journal_lines(&journal);
    assert!(before < want.len(), "killed before the end");

    let child = s.start();
    wait_for("all lists done after restart", || s.count("done") == 3);
    stop(child);
    want.sort();
    assert_exactly_once(&records(&[journal]), &want, &server);
}

/// A panic outside the per-URL catch (injected in a slot's bookkeeping by the debug build's
/// failpoint) makes the daemon exit non-zero promptly rather than look healthy with its
/// lists stuck in `cur/`; restarted, recovery gives every line exactly one record.
#[test]
fn a_worker_panic_exits_non_zero_and_a_restart_completes_exactly_once() {
    let server = Server::start();
    let s = Setup::new("");
    let mut child = s.start_with(&[("RINGCRAWL_FAILPOINT", "slot-next:200")]);
    let name = "panicky.txt";
    let (p, lines) = s.list(&server, name, 600);
    s.submit(&[p]);
    let st = wait_exit(&mut child);
    assert_ne!(st.code(), Some(0), "a failed engine must not exit 0");
    assert!(st.code().is_some(), "exited by itself, not killed: {st}");
    assert_eq!(s.count("cur"), 1, "the list is left for recovery");

    let child = s.start();
    wait_for("the list done after restart", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(&records(&[s.journal()]), &want_for(name, &lines), &server);
}

#[test]
fn sighup_after_moving_the_journal_writes_a_new_file() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let (a, a_lines) = s.list(&server, "a.txt", 30);
    s.submit(&[a]);
    wait_for("a done", || s.count("done") == 1);
    let moved = s.path("journal.jsonl.1");
    std::fs::rename(s.journal(), &moved).unwrap();
    signal(&child, "HUP");
    let journal = s.journal();
    wait_for("journal recreated", || journal.exists());
    let (b, b_lines) = s.list(&server, "b.txt", 30);
    s.submit(&[b]);
    wait_for("b done", || s.count("done") == 2);
    stop(child);
    assert_exactly_once(&records(&[moved]), &want_for("a.txt", &a_lines), &server);
    assert_exactly_once(
        &records(&[s.journal()]),
        &want_for("b.txt", &b_lines),
        &server,
    );
}

#[test]
fn sigusr1_reopens_the_journal() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let moved = s.path("journal.jsonl.old");
    std::fs::rename(s.journal(), &moved).unwrap();
    signal(&child, "USR1");
    let journal = s.journal();
    wait_for("journal recreated", || journal.exists());
    let (a, a_lines) = s.list(&server, "a.txt", 20);
    s.submit(&[a]);
    wait_for("a done", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(
        &records(&[s.journal()]),
        &want_for("a.txt", &a_lines),
        &server,
    );
    assert_eq!(journal_lines(&moved), 0);
}

#[test]
fn sigterm_drains_and_exits_zero_leaving_unfinished_lists_for_restart() {
    let server = Server::start();
    let s = Setup::new("");
    let mut child = s.start();
    let (p, lines) = s.list(&server, "slow.txt", 3000);
    s.submit(&[p]);
    let journal = s.journal();
    wait_for("some records", || journal_lines(&journal) > 100);
    signal(&child, "TERM");
    let started = Instant::now();
    let st = wait_exit(&mut child);
    assert_eq!(st.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "drain is bounded by the grace period"
    );
    let got = records(std::slice::from_ref(&journal));
    assert!(got.values().all(|v| v.len() == 1));
    if got.len() < lines.len() {
        assert_eq!(s.count("cur"), 1, "unfinished list stays in cur/");
    }
    let child = s.start();
    wait_for("done after restart", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(&records(&[journal]), &want_for("slow.txt", &lines), &server);
}

/// The record fields that do not depend on when or from where a line was fetched.
fn outcome(r: &serde_json::Value) -> serde_json::Value {
    let mut r = r.clone();
    for k in ["ts", "ms", "src", "line"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

#[test]
fn overlong_and_non_utf8_lines_get_the_same_records_as_fetch_i() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let long = server.url(&format!("/fast/odd.txt/{}", "a".repeat(10_000)));
    let mut text = Vec::new();
    text.extend_from_slice(long.as_bytes());
    text.extend_from_slice(b"\r\n\n");
    text.extend_from_slice(server.url("/fast/odd.txt/3").as_bytes());
    text.extend_from_slice(b"\xff\xfe\n");
    text.extend_from_slice(server.url("/fast/odd.txt/4").as_bytes());
    text.extend_from_slice(b"\n");
    let list = s.path("odd.txt");
    std::fs::write(&list, &text).unwrap();
    s.submit(std::slice::from_ref(&list));
    wait_for("odd done", || s.count("done") == 1);
    stop(child);
    let daemon = records(&[s.journal()]);
    assert_eq!(
        daemon.keys().map(|(_, l)| *l).collect::<Vec<_>>(),
        [1, 3, 4],
        "one record per non-blank line, each with src and line"
    );

    let out = Command::new(BIN)
        .args(["fetch", "-q", "-i"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(fetched.len(), 3);
    assert!(fetched.iter().all(|r| r.get("src").is_none()));
    let mut lines: Vec<u64> = fetched
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [1, 3, 4],
        "fetch -i numbers its lines as the daemon does"
    );

    for (line, why) in [(1, "bytes long"), (3, "not valid UTF-8")] {
        let d = &daemon[&("odd.txt".to_string(), line)][0];
        assert_eq!(d["error"]["kind"], "invalid_url", "{d}");
        assert!(d["error"]["message"].as_str().unwrap().contains(why), "{d}");
        let same: Vec<_> = fetched
            .iter()
            .filter(|f| outcome(f) == outcome(d))
            .collect();
        assert_eq!(
            same.len(),
            1,
            "fetch -i has the daemon's record {d}: {fetched:?}"
        );
    }
    let ok = &daemon[&("odd.txt".to_string(), 4)][0];
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        2,
        "only line 4 was fetched, once by each"
    );
}

#[test]
fn partial_file_in_tmp_is_not_read_until_renamed_into_new() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let tmp = s.spool().join("tmp/part.txt");
    let mut f = std::fs::File::create(&tmp).unwrap();
    writeln!(f, "{}", server.url("/fast/part.txt/1")).unwrap();
    f.flush().unwrap();
    thread::sleep(Duration::from_millis(800));
    assert_eq!(journal_lines(&s.journal()), 0, "nothing read from tmp/");
    writeln!(f, "{}", server.url("/fast/part.txt/2")).unwrap();
    drop(f);
    std::fs::rename(&tmp, s.spool().join("new/part.txt")).unwrap();
    wait_for("part done", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(
        &records(&[s.journal()]),
        &want_for("part.txt", &[1, 2]),
        &server,
    );
}

#[test]
fn unreadable_file_goes_to_bad() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    // A directory cannot be read as a list, whoever runs the test.
    std::fs::create_dir(s.spool().join("new/dir.txt")).unwrap();
    wait_for("dir in bad/", || s.spool().join("bad/dir.txt").exists());
    let (ok, lines) = s.list(&server, "ok.txt", 5);
    s.submit(&[ok]);
    wait_for("ok done", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(
        &records(&[s.journal()]),
        &want_for("ok.txt", &lines),
        &server,
    );
}

#[test]
fn check_config_reports_every_problem_and_fails() {
    let s = Setup::new("");
    let ok = Command::new(BIN)
        .args(["run", "--check-config", "--config"])
        .arg(s.config())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = s.path("bad.toml");
    std::fs::write(
        &bad,
        "mystery = 1\n[daemon]\nfsync = \"sometimes\"\nspool = \"/proc/ringcrawl-spool\"\n[fetch]\nconcurrency = 0\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "mystery",
        "daemon.fsync",
        "fetch.concurrency",
        "/proc/ringcrawl-spool",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    // `run` itself refuses a bad config with the same messages and a non-zero exit.
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon.fsync"));
}

#[test]
fn cli_overrides_spool_and_journal() {
    let server = Server::start();
    let s = Setup::new("");
    let spool = s.path("other-spool");
    let journal = s.path("other.jsonl");
    let mut child = Proc(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.config())
            .arg("--spool")
            .arg(&spool)
            .arg("--journal")
            .arg(&journal)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("other spool", || spool.join(".lock").exists());
    let (p, lines) = s.list(&server, "o.txt", 5);
    let out = Command::new(BIN)
        .args(["submit", "--spool"])
        .arg(&spool)
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_for("o done", || spool.join("done/o.txt").exists());
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    assert_exactly_once(&records(&[journal]), &want_for("o.txt", &lines), &server);
    assert!(!s.spool().exists());
}

#[test]
fn submit_from_stdin() {
    let server = Server::start();
    let s = Setup::new("");
    let child = s.start();
    let mut sub = Command::new(BIN)
        .args(["submit", "--spool"])
        .arg(s.spool())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let body = format!(
        "{}\n\n{}\n",
        server.url("/fast/stdin/1"),
        server.url("/fast/stdin/3")
    );
    sub.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    assert!(sub.wait().unwrap().success());
    wait_for("stdin list done", || s.count("done") == 1);
    stop(child);
    let got = records(&[s.journal()]);
    assert_eq!(got.len(), 2);
    assert!(got.keys().all(|(src, _)| src.starts_with("stdin-")));
    assert_eq!(got.keys().map(|k| k.1).collect::<Vec<_>>(), vec![1, 3]);
}

/// `systemd-analyze verify` is clean and `security` exposure is at most 2.0 (skipped when
/// the tool is not installed).
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed; skipping");
        return;
    };
    assert!(v.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/ringcrawl.service"
    ))
    .unwrap();
    let unit_path = dir.path().join("ringcrawl.service");
    std::fs::write(&unit_path, unit.replace("/usr/bin/ringcrawl", BIN)).unwrap();

    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && msg.trim().is_empty(),
        "verify: {msg}"
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// sd_notify: READY, STATUS with counts, WATCHDOG pings (WATCHDOG_USEC set), STOPPING.
#[test]
fn sd_notify_ready_status_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let s = Setup::new("");
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's pid.
    let child = Proc(
        Command::new("sh")
            .arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"")
            .arg(BIN)
            .arg(s.config())
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "200000")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while !(seen.contains("READY=1")
        && seen.matches("WATCHDOG=1").count() >= 3
        && seen.contains("STATUS="))
    {
        assert!(Instant::now() < deadline, "notifications so far: {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("STATUS=lists: 0 active"), "{seen}");
    stop(child);
    let mut tail = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(tail.contains("STOPPING=1"), "{tail}");
}
