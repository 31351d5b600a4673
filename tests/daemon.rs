//! Integration tests of `ringcrawl run` / `ringcrawl submit`: the real binary on a temporary
//! spool and journal, fetching from a small HTTP server on 127.0.0.1 (some responses slow).
//! Covers: several lists, `kill -9` + restart (exactly once, no torn line), the claim that a
//! `chmod`/`touch` of a list in `cur/` and a journal path changed by SIGHUP or across a
//! restart do not break exactly-once, SIGHUP after the journal was moved, SIGTERM drain and
//! exit 0, a partial file in `tmp/` not read, entries that are not lists (FIFO, symbolic
//! links, a directory, a name with a newline, a dangling link in `cur/`) going to `bad/`
//! without wedging the daemon, over-long and non-UTF-8 lines recorded as `fetch -i` records
//! them, a journal on a small full file system pausing and resuming (root: a tmpfs), the
//! submitters' trust model with real uids (root: `setpriv`), journald log lines, sd_notify
//! (READY, STATUS, WATCHDOG, RELOADING, EXTEND_TIMEOUT_USEC, STOPPING), `--check-config`, and
//! the systemd unit (when `systemd-analyze` is installed).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{Notify, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_ringcrawl");
/// Longest wait for any condition in these tests.
const WAIT: Duration = Duration::from_secs(90);
/// Delay of `/slow/...` responses.
const SLOW: Duration = Duration::from_millis(300);
/// `daemon.drain_grace_secs` of the test daemons.
const DRAIN_GRACE_SECS: u64 = 5;

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

/// A temporary spool + journal + config file.
struct Setup {
    dir: tempfile::TempDir,
    journal: PathBuf,
    extra: String,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let s = Setup {
            dir,
            journal,
            extra: extra.to_string(),
        };
        s.write_config();
        s
    }

    /// Point the config file at another journal (a reload or a restart takes it).
    fn set_journal(&mut self, journal: PathBuf) {
        self.journal = journal;
        self.write_config();
    }

    fn write_config(&self) {
        let text = format!(
            "[daemon]\nspool = \"{}\"\njournal = \"{}\"\nfsync_batch_ms = 20\nrescan_secs = 0.2\n\
             max_files = 3\ndrain_grace_secs = {DRAIN_GRACE_SECS}\n{}\n[fetch]\nconcurrency = 64\nper_host = 16\n\
             threads = 1\ntimeout_secs = 10\nconnect_timeout_secs = 2\n\
             allow = [\"loopback\"]\nrobots = false\n",
            self.spool().display(),
            self.journal.display(),
            self.extra,
        );
        std::fs::write(self.config(), text).unwrap();
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn spool(&self) -> PathBuf {
        self.path("spool")
    }
    fn journal(&self) -> PathBuf {
        self.journal.clone()
    }
    fn config(&self) -> PathBuf {
        self.path("ringcrawl.toml")
    }

    fn start(&self) -> Proc {
        self.start_with(&[])
    }

    /// Start the daemon with extra environment variables.
    fn start_with(&self, env: &[(&str, &str)]) -> Proc {
        self.launch(Launch {
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Launch::default()
        })
    }

    /// Start the daemon (through `sh -c 'WATCHDOG_PID=$$ exec ...'`, so that the watchdog's
    /// pid is the daemon's; under `setpriv` for another user) and wait for its spool.
    fn launch(&self, l: Launch<'_>) -> Proc {
        let mut cmd = match l.user {
            None => Command::new("sh"),
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("sh");
                c
            }
        };
        cmd.arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"")
            .arg(BIN)
            .arg(self.config())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(n) = l.notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        if let Some(usec) = l.watchdog_usec {
            cmd.env("WATCHDOG_USEC", usec.to_string());
        }
        match &l.stderr {
            Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
            None => cmd.stderr(Stdio::inherit()),
        };
        let child = Proc(cmd.spawn().unwrap());
        let spool = self.spool();
        wait_for("spool set up", || {
            spool.join("out").is_dir() && spool.join(".lock").exists()
        });
        child
    }

    /// `ringcrawl submit`; returns the lists' names (their records' `src`).
    fn submit(&self, files: &[PathBuf]) -> Vec<String> {
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
        let names = queued_names(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(names.len(), files.len());
        names
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

    /// Entries of a spool directory, the daemon's dot files left out.
    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.spool().join(sub))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// How to start the daemon, beyond the defaults.
#[derive(Default)]
struct Launch<'a> {
    env: Vec<(&'a str, String)>,
    /// Sets `NOTIFY_SOCKET`.
    notify: Option<&'a Notify>,
    /// Sets `WATCHDOG_USEC`.
    watchdog_usec: Option<u64>,
    /// Where stderr goes (the test's when `None`).
    stderr: Option<PathBuf>,
    /// Run as this uid and gid, without supplementary groups.
    user: Option<(u32, u32)>,
}

/// The list names in `submit`'s `queued SPOOL/new/NAME` lines.
fn queued_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("queued "))
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Wait until the daemon's notifications so far satisfy `f`.
fn wait_notified(notify: &Notify, what: &str, f: impl Fn(&[String]) -> bool) {
    wait_for(what, || f(&notify.messages()));
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
    assert!(
        dups.is_empty(),
        "{} lines with duplicate records, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
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
    let mut all_lines = Vec::new();
    let mut files = Vec::new();
    for i in 0..4 {
        let (p, lines) = s.list(&server, &format!("list-{i}.txt"), 150 + i);
        all_lines.push(lines);
        files.push(p);
    }
    let names = s.submit(&files);
    let mut want = Vec::new();
    for (i, (name, lines)) in names.iter().zip(&all_lines).enumerate() {
        assert!(
            name.starts_with(&format!("list-{i}.txt.")),
            "a list's name starts with its file's: {name}"
        );
        want.extend(want_for(name, lines));
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
    let mut all_lines = Vec::new();
    let mut files = Vec::new();
    for i in 0..3 {
        let (p, lines) = s.list(&server, &format!("big-{i}.txt"), 2000);
        all_lines.push(lines);
        files.push(p);
    }
    let names = s.submit(&files);
    let mut want = Vec::new();
    for (name, lines) in names.iter().zip(&all_lines) {
        want.extend(want_for(name, lines));
    }
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
    let (p, lines) = s.list(&server, "panicky.txt", 600);
    let name = &s.submit(&[p])[0];
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
    let a = s.submit(&[a]).remove(0);
    wait_for("a done", || s.count("done") == 1);
    let moved = s.path("journal.jsonl.1");
    std::fs::rename(s.journal(), &moved).unwrap();
    signal(&child, "HUP");
    let journal = s.journal();
    wait_for("journal recreated", || journal.exists());
    let (b, b_lines) = s.list(&server, "b.txt", 30);
    let b = s.submit(&[b]).remove(0);
    wait_for("b done", || s.count("done") == 2);
    stop(child);
    assert_exactly_once(&records(&[moved]), &want_for(&a, &a_lines), &server);
    assert_exactly_once(&records(&[s.journal()]), &want_for(&b, &b_lines), &server);
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
    let a = s.submit(&[a]).remove(0);
    wait_for("a done", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(&records(&[s.journal()]), &want_for(&a, &a_lines), &server);
    assert_eq!(journal_lines(&moved), 0);
}

#[test]
fn sigterm_drains_and_exits_zero_leaving_unfinished_lists_for_restart() {
    let server = Server::start();
    let s = Setup::new("");
    let mut child = s.start();
    let (p, lines) = s.list(&server, "slow.txt", 3000);
    let name = s.submit(&[p]).remove(0);
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
    assert_exactly_once(&records(&[journal]), &want_for(&name, &lines), &server);
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
    let name = s.submit(std::slice::from_ref(&list)).remove(0);
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
        let d = &daemon[&(name.clone(), line)][0];
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
    let ok = &daemon[&(name.clone(), 4)][0];
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
    let ok = s.submit(&[ok]).remove(0);
    wait_for("ok done", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(&records(&[s.journal()]), &want_for(&ok, &lines), &server);
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
    let name = queued_names(&String::from_utf8_lossy(&out.stdout)).remove(0);
    wait_for("o done", || spool.join("done").join(&name).exists());
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    assert_exactly_once(&records(&[journal]), &want_for(&name, &lines), &server);
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// SIGTERM; the daemon must exit 0 within `limit`.
fn stop_within(mut child: Proc, limit: Duration) {
    signal(&child, "TERM");
    let started = Instant::now();
    let st = wait_exit(&mut child);
    assert_eq!(st.code(), Some(0), "SIGTERM must exit 0");
    assert!(
        started.elapsed() <= limit,
        "SIGTERM took {:?} (limit {limit:?})",
        started.elapsed()
    );
}

/// The records of list `name` in `journals`.
fn records_of(journals: &[PathBuf], name: &str) -> usize {
    records(journals).keys().filter(|(s, _)| s == name).count()
}

/// Issue 13's hostile submitter: a FIFO, a symbolic link to /dev/zero, one to the journal, a
/// directory and a file with a newline in its name dropped into `new/` of a running daemon,
/// and a dangling symbolic link left in `cur/` before a restart. Then a good list gets all
/// its records within 10 s, every bad entry ends in `bad/`, SIGTERM exits 0 within the drain
/// grace + 5 s, and a restart starts.
#[test]
fn a_hostile_spool_cannot_wedge_the_daemon() {
    let server = Server::start();
    let s = Setup::new("");
    let notify = Notify::new(s.path("notify.sock"));
    let launch = || {
        notify.clear();
        let child = s.launch(Launch {
            notify: Some(&notify),
            ..Launch::default()
        });
        wait_notified(&notify, "READY=1", |m| {
            m.iter().any(|m| m.contains("READY=1"))
        });
        child
    };
    let grace_plus_5 = Duration::from_secs(DRAIN_GRACE_SECS + 5);
    let child = launch();
    let new = s.spool().join("new");
    mkfifo(&new.join("fifo"));
    std::os::unix::fs::symlink("/dev/zero", new.join("zero")).unwrap();
    std::os::unix::fs::symlink(s.journal(), new.join("journal")).unwrap();
    std::fs::create_dir(new.join("directory")).unwrap();
    std::fs::write(new.join("evil\nname"), server.url("/fast/evil/1") + "\n").unwrap();
    let bad = s.spool().join("bad");
    let in_bad = |names: &[&str]| names.iter().all(|n| bad.join(n).symlink_metadata().is_ok());
    let hostile = ["fifo", "zero", "journal", "directory", "evil\nname"];
    wait_for("the hostile entries in bad/", || in_bad(&hostile));
    stop_within(child, grace_plus_5);

    std::os::unix::fs::symlink(s.path("nowhere"), s.spool().join("cur/dangling")).unwrap();
    let child = launch();
    let (p, lines) = s.list(&server, "good.txt", 200);
    let submitted = Instant::now();
    let name = s.submit(&[p]).remove(0);
    let journal = s.journal();
    wait_for("the good list's records", || {
        records_of(std::slice::from_ref(&journal), &name) == lines.len()
    });
    assert!(
        submitted.elapsed() <= Duration::from_secs(10),
        "the good list took {:?}",
        submitted.elapsed()
    );
    wait_for("the good list done", || s.count("done") == 1);
    assert!(in_bad(&hostile) && in_bad(&["dangling"]));
    assert_eq!(s.count("bad"), 6);
    assert_eq!(s.count("new") + s.count("cur"), 0);
    stop_within(child, grace_plus_5);

    let child = launch();
    stop_within(child, grace_plus_5);
    assert_exactly_once(&records(&[journal]), &want_for(&name, &lines), &server);
}

/// Recovery once took a list's claim time from its ctime, which `chmod` and `touch` move:
/// the records from before the crash were then ignored and their lines fetched again.
#[test]
fn touching_a_claimed_list_before_a_restart_keeps_exactly_once() {
    let server = Server::start();
    let s = Setup::new("");
    let mut child = s.start();
    let (p, lines) = s.list(&server, "touched.txt", 2000);
    let name = s.submit(&[p]).remove(0);
    let journal = s.journal();
    wait_for("some records", || journal_lines(&journal) > 300);
    child.kill().unwrap();
    child.wait().unwrap();
    let claimed = s.spool().join("cur").join(&name);
    assert!(claimed.exists(), "in progress at the kill");
    thread::sleep(Duration::from_millis(50));
    std::fs::set_permissions(
        &claimed,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&claimed)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();

    let child = s.start();
    wait_for("done after restart", || s.count("done") == 1);
    stop(child);
    assert_exactly_once(&records(&[journal]), &want_for(&name, &lines), &server);
}

/// A SIGHUP that changes `journal` mid-list splits the list's records over two files, then
/// `kill -9`, then a restart with yet another `journal`: recovery reads them all.
#[test]
fn journal_path_changes_by_sighup_and_across_a_restart_keep_exactly_once() {
    let server = Server::start();
    let mut s = Setup::new("");
    let mut child = s.start();
    let (p, lines) = s.list(&server, "split.txt", 3000);
    let name = s.submit(&[p]).remove(0);
    let first = s.journal();
    wait_for("records in the first journal", || {
        journal_lines(&first) > 200
    });
    let second = s.path("second.jsonl");
    s.set_journal(second.clone());
    signal(&child, "HUP");
    wait_for("records in the second journal", || {
        journal_lines(&second) > 200
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.count("cur"), 1, "in progress at the kill");
    let third = s.path("third.jsonl");
    s.set_journal(third.clone());

    let child = s.start();
    wait_for("done after restart", || s.count("done") == 1);
    stop(child);
    assert!(
        journal_lines(&third) > 0,
        "the rest went to the third journal"
    );
    assert_exactly_once(
        &records(&[first, second, third]),
        &want_for(&name, &lines),
        &server,
    );
}

/// Unmounts a test file system (lazily: whatever still holds it open).
struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` on `dir`; `None` when that is refused.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system of `dir` with `dir/filler`, leaving about `room` bytes.
fn fill(dir: &Path, room: u64) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![b'f'; 4096];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(room)).unwrap();
    filler
}

/// The journal on a small full file system: the daemon pauses (STATUS and the log say why,
/// the watchdog keeps being pinged, no torn line), stops promptly when asked, starts paused,
/// and resumes when room is made, with exactly one record per line.
#[test]
fn a_full_journal_pauses_the_daemon_and_it_resumes_with_nothing_lost() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let server = Server::start();
    let mut s = Setup::new("");
    let fs_dir = s.path("small-fs");
    let Some(_mount) = Mount::tmpfs(&fs_dir, "256k") else {
        eprintln!("skipping: mount -t tmpfs was refused");
        return;
    };
    let journal = fs_dir.join("journal.jsonl");
    s.set_journal(journal.clone());
    let filler = fill(&fs_dir, 8 * 1024);
    let notify = Notify::new(s.path("notify.sock"));
    let log = s.path("daemon.log");
    let launch = || {
        notify.clear();
        let child = s.launch(Launch {
            notify: Some(&notify),
            watchdog_usec: Some(400_000),
            stderr: Some(log.clone()),
            ..Launch::default()
        });
        wait_notified(&notify, "READY=1", |m| {
            m.iter().any(|m| m.contains("READY=1"))
        });
        child
    };
    let paused = "STATUS=paused: journal full (No space left on device);";
    let child = launch();
    let (p, lines) = s.list(&server, "full.txt", 400);
    let name = s.submit(&[p]).remove(0);
    wait_notified(&notify, "the paused status", |m| {
        m.iter().any(|m| m.contains(paused))
    });
    let pings = notify.count("WATCHDOG=1");
    thread::sleep(Duration::from_millis(1500));
    assert!(
        notify.count("WATCHDOG=1") >= pings + 3,
        "the watchdog is pinged while paused"
    );
    let last_status = notify
        .messages()
        .into_iter()
        .rfind(|m| m.contains("STATUS="))
        .unwrap();
    assert!(last_status.contains(paused), "{last_status}");
    let got = records_of(std::slice::from_ref(&journal), &name); // also: no torn line
    assert!(got < lines.len(), "the disk is full: {got} records");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("<3>") && l.contains("journal full (No space left on device)")),
        "{text}"
    );
    // A stop while paused is prompt and clean; a start on the full disk pauses again.
    stop_within(child, Duration::from_secs(5));
    let child = launch();
    wait_notified(&notify, "paused again", |m| {
        m.iter().any(|m| m.contains(paused))
    });

    std::fs::remove_file(&filler).unwrap();
    wait_for("done once there is room", || s.count("done") == 1);
    wait_notified(&notify, "a status without the pause", |m| {
        m.iter()
            .rev()
            .find(|m| m.contains("STATUS="))
            .is_some_and(|m| !m.contains("paused"))
    });
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("journal writable again; resuming"), "{text}");
    assert_exactly_once(&records(&[journal]), &want_for(&name, &lines), &server);
}

/// Runs `sh -c SCRIPT` as uid `uid` in groups `gid` (primary and only supplementary);
/// whether it succeeded, and its stdout.
fn as_user(uid: u32, gid: u32, script: &str, stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg(format!("--groups={gid}"))
        .args(["sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The trust model with real uids (numeric ids, no accounts made): a daemon that is not
/// root, two submitters in the submit group. One cannot read, list, delete, rename or replace
/// the other's pending list, nor read its finished list or results; each gets its own
/// records, from `out/` and through `submit --wait`.
#[test]
fn submitters_cannot_touch_each_others_lists_and_get_their_own_records() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and setpriv to act as other users");
        return;
    }
    const SUBMIT_GID: u32 = 4_213_000;
    const DAEMON: (u32, u32) = (4_213_001, 4_213_001);
    const ALICE: u32 = 4_213_002;
    const BOB: u32 = 4_213_003;
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let mut s = Setup::new("");
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The test's directory is reachable by all; the spool root lets only the submit group
    // in; the journal's directory is the daemon's.
    chmod(s.dir.path(), 0o711);
    std::fs::create_dir(s.spool()).unwrap();
    std::os::unix::fs::chown(s.spool(), Some(DAEMON.0), Some(SUBMIT_GID)).unwrap();
    chmod(&s.spool(), 0o750);
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(DAEMON.0), Some(DAEMON.1)).unwrap();
    s.set_journal(state.join("journal.jsonl"));
    chmod(&s.config(), 0o644);
    let daemon = || {
        s.launch(Launch {
            user: Some(DAEMON),
            ..Launch::default()
        })
    };
    // The daemon sets the spool up; the lists then wait in new/ while it is stopped.
    stop(daemon());
    let spool = s.spool();
    let submit = |uid: u32, list: &str, wait: bool| {
        let script = format!(
            "exec \"{BIN}\" submit --spool \"{}\" {} -",
            spool.display(),
            if wait { "--wait 2>/dev/null" } else { "" }
        );
        as_user(uid, SUBMIT_GID, &script, Some(list))
    };
    let (a_path, a_lines) = s.list(&server, "alice.txt", 30);
    let (b_path, b_lines) = s.list(&server, "bob.txt", 20);
    let (ok, out) = submit(ALICE, &std::fs::read_to_string(&a_path).unwrap(), false);
    assert!(ok, "alice submits");
    let alice = queued_names(&out).remove(0);
    let (ok, out) = submit(BOB, &std::fs::read_to_string(&b_path).unwrap(), false);
    assert!(ok, "bob submits");
    let bob = queued_names(&out).remove(0);
    let sp = spool.display().to_string();
    let bob_tries = |script: &str| as_user(BOB, SUBMIT_GID, &script.replace("SPOOL", &sp), None).0;
    let pending = format!("SPOOL/new/{alice}");
    assert!(
        as_user(
            ALICE,
            SUBMIT_GID,
            &format!("cat {}", pending.replace("SPOOL", &sp)),
            None
        )
        .0,
        "alice reads her own pending list"
    );
    assert!(
        !bob_tries(&format!("cat {pending}")),
        "bob reads alice's pending list"
    );
    assert!(!bob_tries("ls SPOOL/new"), "bob lists new/");
    assert!(
        !bob_tries(&format!("rm -f {pending}")),
        "bob deletes alice's list"
    );
    assert!(
        !bob_tries(&format!("mv {pending} SPOOL/new/stolen")),
        "bob renames it"
    );
    assert!(
        !bob_tries(&format!(
            "echo http://evil/ > SPOOL/tmp/bob-x && mv -f SPOOL/tmp/bob-x {pending}"
        )),
        "bob replaces it by rename"
    );
    assert!(
        !bob_tries(&format!("ln -f SPOOL/tmp/bob-x {pending}")),
        "bob replaces it by link"
    );
    assert!(spool.join("new").join(&alice).exists());

    let child = daemon();
    let out_dir = spool.join("out");
    wait_for("both lists done", || {
        out_dir.join(format!("{alice}.status")).exists()
            && out_dir.join(format!("{bob}.status")).exists()
    });
    let (ok, mine) = as_user(
        ALICE,
        SUBMIT_GID,
        &format!("cat {sp}/out/{alice}.jsonl"),
        None,
    );
    assert!(ok, "alice reads her results");
    let results_path = s.path("alice-results.jsonl");
    std::fs::write(&results_path, &mine).unwrap();
    assert_exactly_once(
        &records(std::slice::from_ref(&results_path)),
        &want_for(&alice, &a_lines),
        &server,
    );
    for what in [
        format!("cat SPOOL/out/{alice}.jsonl"),
        format!("cat SPOOL/out/{alice}.status"),
        format!("cat SPOOL/done/{alice}"),
        "ls SPOOL/out".to_string(),
        "ls SPOOL/done".to_string(),
        "ls SPOOL/cur".to_string(),
    ] {
        assert!(!bob_tries(&what), "bob must not: {what}");
    }
    let (ok, _) = as_user(BOB, SUBMIT_GID, &format!("cat {sp}/out/{bob}.jsonl"), None);
    assert!(ok, "bob reads his own results");
    // --wait prints the list's records once it is done.
    let (c_path, c_lines) = s.list(&server, "carol.txt", 12);
    let (ok, waited) = submit(ALICE, &std::fs::read_to_string(&c_path).unwrap(), true);
    assert!(ok, "submit --wait");
    std::fs::write(&results_path, &waited).unwrap();
    let got = records(std::slice::from_ref(&results_path));
    let carol = got.keys().next().unwrap().0.clone();
    assert!(carol.starts_with("stdin-"), "{carol}");
    assert_exactly_once(&got, &want_for(&carol, &c_lines), &server);
    stop(child);
    let _ = b_lines;
}

/// With journald (`JOURNAL_STREAM`), log lines carry `<N>` priorities and neither colours
/// nor timestamps; a name with a newline is escaped and stays on one line.
#[test]
fn logs_for_journald_have_priorities_and_one_line_per_event() {
    let s = Setup::new("");
    let log = s.path("daemon.log");
    let child = s.launch(Launch {
        env: vec![("JOURNAL_STREAM", "8:12345".to_string())],
        stderr: Some(log.clone()),
        ..Launch::default()
    });
    std::fs::create_dir(s.spool().join("new/a\nb")).unwrap();
    wait_for("the directory in bad/", || s.count("bad") == 1);
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "no priority: {line:?}"
        );
        assert!(!line.contains('\x1b'), "colours: {line:?}");
        assert!(
            !line[3..].starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp: {line:?}"
        );
    }
    assert!(text.contains("<6>ringcrawl::daemon: ready"), "{text}");
    let bad = text.lines().find(|l| l.contains("not a list")).unwrap();
    assert!(bad.starts_with("<4>") && bad.contains("a\\nb"), "{bad}");
}

/// SIGHUP: `RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`. A start that recovers lists
/// sends `EXTEND_TIMEOUT_USEC` before `READY=1`.
#[test]
fn reload_and_recovery_speak_sd_notify() {
    let server = Server::start();
    let s = Setup::new("");
    let notify = Notify::new(s.path("notify.sock"));
    let launch = || {
        notify.clear();
        s.launch(Launch {
            notify: Some(&notify),
            ..Launch::default()
        })
    };
    let mut child = launch();
    wait_notified(&notify, "READY=1", |m| {
        m.iter().any(|m| m.contains("READY=1"))
    });
    notify.clear();
    signal(&child, "HUP");
    wait_notified(&notify, "READY=1 after RELOADING=1", |m| {
        let reloading = m.iter().position(|m| m.contains("RELOADING=1"));
        reloading.is_some_and(|i| m[i + 1..].iter().any(|m| m.contains("READY=1")))
    });
    let msgs = notify.messages();
    let reloading = msgs.iter().find(|m| m.contains("RELOADING=1")).unwrap();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);

    let (p, _) = s.list(&server, "slow.txt", 1000);
    s.submit(&[p]);
    let journal = s.journal();
    wait_for("some records", || journal_lines(&journal) > 50);
    child.kill().unwrap();
    child.wait().unwrap();
    let child = launch();
    wait_notified(&notify, "READY=1", |m| {
        m.iter().any(|m| m.contains("READY=1"))
    });
    let msgs = notify.messages();
    let extend = msgs.iter().position(|m| m.contains("EXTEND_TIMEOUT_USEC="));
    let ready = msgs.iter().position(|m| m.contains("READY=1"));
    assert!(extend.is_some() && extend < ready, "{msgs:?}");
    stop(child);
}
