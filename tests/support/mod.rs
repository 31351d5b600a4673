//! Shared integration-test infrastructure: in-process fault servers, a real nginx serving a
//! generated multi-host site, a real dnsmasq resolving its names, a real tinyproxy, a real
//! NATS JetStream server, an sd_notify socket, test certificates, and the helper that runs the `ringcrawl` binary
//! and parses its journal.
//!
//! Integration test files use it with `mod support;`. Every server binds 127.0.0.1 on a free
//! port and stops when its handle is dropped. Not every test file uses every item.
#![allow(dead_code, unused_imports)]

pub mod dns;
pub mod dnsmasq;
pub mod fault;
pub mod nats;
pub mod nginx;
pub mod notify;
pub mod pages;
pub mod site;
pub mod tinyproxy;
pub mod tls;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use dns::{FaultDns, FaultDnsMode};
pub use dnsmasq::Dnsmasq;
pub use fault::{Blackhole, FaultServer};
pub use nats::NatsServer;
pub use nginx::{Nginx, NginxTls};
pub use notify::Notify;
pub use site::{Expect, Site, SiteSpec};
pub use tinyproxy::{Tinyproxy, TinyproxyConfig};
pub use tls::TlsCerts;

/// Longest a single `ringcrawl fetch` run may take before the harness kills it (a hang is a
/// test failure, never a stuck suite).
pub const FETCH_KILL_AFTER: Duration = Duration::from_secs(240);
/// How long to wait for a spawned server (nginx, dnsmasq) to accept requests.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(15);

/// A TCP (and, where possible, UDP) port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    for _ in 0..64 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local_addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

/// The result of one `ringcrawl fetch` run.
#[derive(Debug)]
pub struct FetchRun {
    /// The journal lines, parsed (a line that is not JSON fails the run's test).
    pub records: Vec<serde_json::Value>,
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl FetchRun {
    /// Records keyed by their `url` field; panics when a URL has more than one record.
    pub fn by_url(&self) -> HashMap<String, serde_json::Value> {
        by_url(&self.records)
    }

    /// Panics with the stderr when the run did not exit 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "ringcrawl fetch exited with {}; stderr:\n{}",
            self.status,
            self.stderr
        );
    }
}

/// Path of the binary under test.
pub fn ringcrawl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringcrawl")
}

/// The environment variables that choose a proxy: cleared for every run the harness starts,
/// so a proxy set where the tests run does not take part (a test sets what it means).
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Run `ringcrawl fetch ARGS`, feeding `stdin` (if any) and collecting the journal from
/// stdout. The child is killed after [`FETCH_KILL_AFTER`]. No proxy variable is passed on.
pub fn run_fetch(args: &[&str], stdin: Option<&[u8]>) -> FetchRun {
    run_fetch_env(args, stdin, &[])
}

/// [`run_fetch`] with these environment variables set (after the proxy variables were
/// cleared).
pub fn run_fetch_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> FetchRun {
    let started = Instant::now();
    let mut cmd = Command::new(ringcrawl_bin());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .arg("fetch")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringcrawl");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        std::thread::spawn(move || {
            // The binary may stop reading early only by exiting; a broken pipe then is fine.
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out_pipe.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        err_pipe.read_to_end(&mut buf).map(|_| buf)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ringcrawl") {
            break status;
        }
        if started.elapsed() > FETCH_KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringcrawl fetch {args:?} still running after {FETCH_KILL_AFTER:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    if let Some(w) = writer {
        w.join().expect("stdin writer thread");
    }
    let stdout = out_reader
        .join()
        .expect("stdout thread")
        .expect("read stdout");
    let stderr = err_reader
        .join()
        .expect("stderr thread")
        .expect("read stderr");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let records = parse_journal(&stdout, &stderr);
    FetchRun {
        records,
        stderr,
        status,
        elapsed,
    }
}

/// `records` keyed by their `url` field; panics when a URL has more than one record.
pub fn by_url(records: &[serde_json::Value]) -> HashMap<String, serde_json::Value> {
    let mut map = HashMap::with_capacity(records.len());
    for r in records {
        let url = r["url"]
            .as_str()
            .unwrap_or_else(|| panic!("record without url: {r}"));
        if let Some(prev) = map.insert(url.to_string(), r.clone()) {
            panic!("two records for {url}: {prev} and {r}");
        }
    }
    map
}

/// Parse JSON Lines output; every line must be one JSON object.
pub fn parse_journal(stdout: &[u8], stderr: &str) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(stdout)
        .unwrap_or_else(|e| panic!("journal is not UTF-8 ({e}); stderr:\n{stderr}"));
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {line:?}"));
            assert!(v.is_object(), "journal line is not an object: {line}");
            v
        })
        .collect()
}

/// `error.kind` of a record, if it has an error.
pub fn error_kind(record: &serde_json::Value) -> Option<&str> {
    record["error"]["kind"].as_str()
}

/// Poll `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

/// A daemon process that is killed if a test panics before stopping it.
pub struct Proc(pub std::process::Child);

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
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

/// Why a server the tests started is not serving.
pub enum NotStarted {
    /// Its process exited first.
    Exited(ExitStatus),
    /// It did not answer within [`SERVER_START_TIMEOUT`].
    Silent,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStarted::Exited(status) => write!(f, "exited at start ({status})"),
            NotStarted::Silent => write!(f, "did not answer in {SERVER_START_TIMEOUT:?}"),
        }
    }
}

/// Wait until `ready` says a freshly spawned server answers, unless its process exits first.
pub fn wait_started(
    child: &mut std::process::Child,
    mut ready: impl FnMut() -> bool,
) -> Result<(), NotStarted> {
    let mut exited = None;
    let up = wait_until(SERVER_START_TIMEOUT, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        ready()
    });
    match exited {
        Some(status) => Err(NotStarted::Exited(status)),
        None if up => Ok(()),
        None => Err(NotStarted::Silent),
    }
}

/// Whether this process runs as root (owner of /proc/self), without a syscall wrapper.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}
