//! The cluster (issue 16) end to end: a real `nats-server -js` on a loopback port with a temp
//! store, three `ringcrawl run` daemons with `[cluster]` (names from a real dnsmasq, pages
//! from a real nginx serving a generated multi-host site), one list submitted once with
//! `submit --nats`. One daemon is killed with `kill -9` mid-way and started again later, a
//! second is stopped with SIGTERM (exit 0). `collect` then holds exactly one record per line
//! (none missing, none doubled, none torn), with the same titles as a one-shot `fetch` of the
//! list; submitting the list again queues nothing, and collecting again adds nothing. Also: a
//! node's spool intake, and a node that dies half-way through publishing a spool list (a
//! failpoint's abort), a lost NATS connection, a node killed with chunks half done, a
//! server that speaks only TLS and admits only a credentials file's user (`collect --follow`),
//! a crawl under stream and bucket names of its own (the server's monitoring port lists what
//! it holds), and a list queued while no node runs (`collect` says the crawl is not over;
//! `collect --wait` waits for it) crawled by three nodes at their fair share of the
//! partitions, one of them joined by `run --nats` (its STATUS line).

mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    free_port, ringcrawl_bin, run_fetch, wait_until, Blackhole, Dnsmasq, NatsServer, Nginx, Notify,
    Proc, Site, SiteSpec, TlsCerts,
};

/// Site size: hosts x (pages + 5 extra URLs each).
const HOSTS: usize = 240;
const PAGES: usize = 5;
/// Each host's requests start this far apart, so the crawl lasts long enough to be
/// interrupted (one slot per host while it has a delay).
const HOST_DELAY_MS: u64 = 100;
/// Connections per node.
const CONCURRENCY: usize = 8;
const PARTITIONS: u32 = 12;
const LEASE_SECS: u64 = 2;
const ACK_WAIT_SECS: u64 = 4;
/// An ack wait longer than any test waits (lines of a dead node must not wait for it).
const LONG_ACK_WAIT_SECS: u64 = 300;
/// Longest wait for the whole list.
const WAIT: Duration = Duration::from_secs(90);

/// A generated site of `hosts` hosts with `pages` pages each behind a real nginx, its
/// names in a real dnsmasq, and what a correct crawl of each of its URLs gives.
struct Served {
    /// Serves the site while this lives.
    _nginx: Nginx,
    dns: Dnsmasq,
    expect: Vec<support::Expect>,
}

impl Served {
    fn start(dir: &Path, hosts: usize, pages: usize) -> Served {
        let site = Site::generate(
            &dir.join("site"),
            SiteSpec {
                hosts,
                pages,
                blogs: 0,
            },
        );
        let nginx = Nginx::start(&site, None);
        let dns = Dnsmasq::start(&site.host_names());
        let expect = site.expect("http", nginx.port);
        Served {
            _nginx: nginx,
            dns,
            expect,
        }
    }

    /// Every URL of the site, in order.
    fn urls(&self) -> Vec<String> {
        self.expect.iter().map(|e| e.url.clone()).collect()
    }

    /// The site's URLs as a list file at `path`, one per line.
    fn write_list(&self, path: &Path) {
        std::fs::write(path, self.urls().join("\n") + "\n").unwrap();
    }
}

/// Run `ringcrawl ARGS` to its end: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(ringcrawl_bin()).args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `ringcrawl submit --nats NATS LIST`, which must succeed; what it printed.
fn submit(nats: &str, list: &Path) -> String {
    let (code, stdout, err) = run(&["submit", "--nats", nats, list.to_str().unwrap()]);
    assert_eq!(code, Some(0), "submit: {err}");
    stdout
}

/// One node's directory: config, spool, journal, log.
struct NodeDir {
    dir: PathBuf,
}

impl NodeDir {
    fn new(root: &Path, name: &str, nats: &str, resolver: &str) -> NodeDir {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[daemon]\nspool = \"{spool}\"\njournal = \"{journal}\"\nrescan_secs = 0.2\n\
             drain_grace_secs = 3\n\
             [fetch]\nconcurrency = {CONCURRENCY}\nper_host = 2\nthreads = 1\ntimeout_secs = 10\n\
             connect_timeout_secs = 2\nallow = [\"loopback\"]\nrobots = false\nretries = 0\n\
             host_delay_ms = {HOST_DELAY_MS}\nresolver = \"{resolver}\"\n\
             [cluster]\nservers = [\"{nats}\"]\npartitions = {PARTITIONS}\nlease_secs = {LEASE_SECS}\n\
             ack_wait_secs = {ACK_WAIT_SECS}\nduplicate_window_secs = 600\n",
            spool = dir.join("spool").display(),
            journal = dir.join("journal.jsonl").display(),
        );
        std::fs::write(dir.join("ringcrawl.toml"), text).unwrap();
        NodeDir { dir }
    }

    /// Add `lines` to the node's `[cluster]` table (the file's last).
    fn cluster_keys(&self, lines: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config())
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.join("ringcrawl.toml")
    }

    /// Serve the node's metrics on `addr` (`[daemon] metrics_listen`).
    fn listen_for_metrics(&self, addr: SocketAddr) {
        let path = self.dir.join("ringcrawl.toml");
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "[daemon]\n",
            &format!("[daemon]\nmetrics_listen = \"{addr}\"\n"),
            1,
        );
        std::fs::write(path, text).unwrap();
    }

    fn log(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Leave the `[cluster]` table out of the configuration (the node joins by `--nats`).
    fn without_cluster_table(&self) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let (daemon_and_fetch, _) = text.split_once("[cluster]\n").unwrap();
        std::fs::write(self.config(), daemon_and_fetch).unwrap();
    }

    /// Start `ringcrawl run --config` (as the systemd unit does), its log level the
    /// configuration's (info).
    fn spawn(&self) -> Proc {
        self.spawn_with(&[], None, &[])
    }

    /// [`NodeDir::spawn`] with `extra` arguments after `--config FILE`, `NOTIFY_SOCKET` set
    /// to `notify` when given, and the environment variables `env`.
    fn spawn_with(&self, extra: &[&str], notify: Option<&Notify>, env: &[(&str, &str)]) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut cmd = Command::new(ringcrawl_bin());
        cmd.args(["run", "--config"])
            .arg(self.config())
            .args(extra)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(env.iter().copied());
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        Proc(cmd.spawn().unwrap())
    }

    /// [`NodeDir::spawn`] and wait until it joined.
    fn start(&self) -> Proc {
        self.start_with(&[], None, &[])
    }

    /// [`NodeDir::spawn_with`] and wait until it joined.
    fn start_with(&self, extra: &[&str], notify: Option<&Notify>, env: &[(&str, &str)]) -> Proc {
        let before = self.joins();
        let mut p = self.spawn_with(extra, notify, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.joins() == before {
            assert!(
                p.0.try_wait().unwrap().is_none(),
                "node exited:\n{}",
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "node did not join:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
        p
    }

    /// SIGTERM `p`, the node of this directory, which must exit 0; how long it took.
    fn stop(&self, mut p: Proc) -> Duration {
        let asked = Instant::now();
        signal(&p, "TERM");
        assert_eq!(p.0.wait().unwrap().code(), Some(0), "{}", self.logs());
        asked.elapsed()
    }

    /// The node, which cannot connect, said why once, in a line holding every one of
    /// `cause`, then retried quietly: one `NATS: client error` line over several retries, and
    /// none of the NATS client's own lines.
    fn says_why_once(&self, cause: &[&str]) {
        let retried = wait_until(Duration::from_secs(20), || {
            self.logs().contains("NATS: client error")
        });
        assert!(retried, "{}", self.logs());
        thread::sleep(Duration::from_secs(3)); // several retries
        let logs = self.logs();
        let said: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("cannot connect"))
            .collect();
        assert_eq!(said.len(), 1, "{logs}");
        assert!(cause.iter().all(|c| said[0].contains(c)), "{logs}");
        assert_eq!(logs.matches("NATS: client error").count(), 1, "{logs}");
        assert!(!logs.contains("async_nats"), "{logs}");
    }

    fn joins(&self) -> usize {
        self.logs().matches("joined the cluster").count()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// `GET /metrics` of a node (the body; empty when it cannot be read).
fn scrape(addr: SocketAddr) -> String {
    let Ok(mut c) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string())
}

/// The value of one series in a scrape.
fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .map(|(_, v)| v)
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.0.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// `ringcrawl collect` once (until caught up); returns its stderr.
fn collect(nats: &str, out: &Path) -> String {
    collect_from(["--nats", nats], out)
}

/// `ringcrawl collect` once from the cluster `from` names (`--nats URL` or `--config FILE`),
/// which must succeed; returns its stderr.
fn collect_from(from: [&str; 2], out: &Path) -> String {
    let (code, _, err) = run(&["collect", from[0], from[1], "-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "collect failed: {err}");
    err
}

fn lines_in(p: &Path) -> usize {
    std::fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// The records in `path` are those of a correct crawl of `expect`: one per URL, none doubled,
/// none missing, each as expected (status, title, ...).
fn assert_records_match(path: &Path, expect: &[support::Expect]) {
    let records = support::parse_journal(&std::fs::read(path).unwrap(), "");
    let by_url = support::by_url(&records);
    assert_eq!(by_url.len(), expect.len());
    for e in expect {
        let rec = by_url
            .get(&e.url)
            .unwrap_or_else(|| panic!("no record for {}", e.url));
        let bad = support::site::mismatches(e, rec, false);
        assert!(bad.is_empty(), "{}: {bad:?}", e.url);
    }
}

/// Collect until the file holds at least `n` lines.
fn collect_until(nats: &str, out: &Path, n: usize, nodes: &[&NodeDir]) {
    collect_until_from(["--nats", nats], out, n, nodes);
}

/// [`collect_until`] from the cluster `from` names (`--nats URL` or `--config FILE`).
fn collect_until_from(from: [&str; 2], out: &Path, n: usize, nodes: &[&NodeDir]) {
    let deadline = Instant::now() + WAIT;
    loop {
        collect_from(from, out);
        if lines_in(out) >= n {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes.iter().map(|d| d.logs()).collect();
            panic!(
                "only {} of {n} records after {WAIT:?}; node logs:\n{}",
                lines_in(out),
                logs.join("\n----\n")
            );
        }
        thread::sleep(Duration::from_millis(300));
    }
}

/// [`collect_until_from`] `n` lines, then, half a second later, once more: a record stored
/// twice or late would be there too.
fn collect_settled(from: [&str; 2], out: &Path, n: usize, nodes: &[&NodeDir]) {
    collect_until_from(from, out, n, nodes);
    thread::sleep(Duration::from_millis(500));
    collect_from(from, out);
}

#[test]
fn three_nodes_kill_9_and_sigterm_give_exactly_one_record_per_line() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), HOSTS, PAGES);
    let dns = &served.dns;

    // The list: every URL of the site, with an invalid line, a non-UTF-8 line and blank
    // lines among them (one intake path: they become invalid_url records on some node).
    let urls = served.urls();
    let mut list = Vec::new();
    let mut want = Vec::new(); // line numbers with a record
    let mut number = 0u64;
    for (i, u) in urls.iter().enumerate() {
        if i == 10 {
            list.extend_from_slice(b"not a url\n\n");
            number += 2;
            want.push(number - 1);
        }
        if i == 20 {
            list.extend_from_slice(b"http://h0001.site.test/\xff\xfe\r\n");
            number += 1;
            want.push(number);
        }
        list.extend_from_slice(u.as_bytes());
        list.push(b'\n');
        number += 1;
        want.push(number);
    }
    let list_path = tmp.path().join("broad.txt");
    std::fs::write(&list_path, &list).unwrap();
    let total = want.len();

    let url = nats.url();
    let dirs: Vec<NodeDir> = ["a", "b", "c"]
        .iter()
        .map(|n| NodeDir::new(tmp.path(), n, &url, &dns.resolver_arg()))
        .collect();
    let (da, db, dc) = (&dirs[0], &dirs[1], &dirs[2]);
    let all = [da, db, dc];
    let mut a = da.start();
    let b = db.start();
    let c = dc.start();

    let started = Instant::now();
    let stdout = submit(&url, &list_path);
    assert!(
        stdout.contains(&format!("({total} lines)")),
        "submit says what it queued: {stdout}"
    );
    let list_id = stdout
        .split_whitespace()
        .nth(3)
        .expect("queued FILE as LIST")
        .to_string();

    let records = tmp.path().join("records.jsonl");
    collect_until(&url, &records, total / 4, &all);
    a.0.kill().unwrap(); // SIGKILL
    a.0.wait().unwrap();
    assert!(lines_in(&records) < total, "killed before the end");

    collect_until(&url, &records, total / 2, &all);
    signal(&b, "TERM");
    let mut b = b;
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        if let Some(st) = b.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "SIGTERM: node did not stop");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(0), "SIGTERM exits 0:\n{}", db.logs());

    collect_until(&url, &records, total * 2 / 3, &all);
    let a2 = da.start();
    collect_until(&url, &records, total, &all);
    let took = started.elapsed();

    // Exactly one record per line, none torn, all of this list.
    let text = std::fs::read(&records).unwrap();
    assert!(text.ends_with(b"\n"), "torn last line");
    let mut by_line: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for l in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(l)
            .unwrap_or_else(|e| panic!("torn or bad line ({e}): {}", String::from_utf8_lossy(l)));
        assert_eq!(v["src"], list_id.as_str(), "{v}");
        let n = v["line"].as_u64().expect("line");
        assert!(by_line.insert(n, v).is_none(), "two records for line {n}");
    }
    let got: Vec<u64> = by_line.keys().copied().collect();
    assert_eq!(got, want, "one record per non-blank line");

    // The same records as a one-shot fetch of the list.
    let fetch = run_fetch(
        &[
            "-i",
            list_path.to_str().unwrap(),
            "-q",
            "--resolver",
            &dns.resolver_arg(),
        ],
        None,
    );
    fetch.assert_success();
    let one_shot = fetch.by_url();
    for r in by_line.values() {
        let u = r["url"].as_str().unwrap();
        let f = one_shot
            .get(u)
            .unwrap_or_else(|| panic!("fetch has no {u}"));
        for field in ["title", "status", "final_url"] {
            assert_eq!(r[field], f[field], "{field} of {u}: {r} vs {f}");
        }
        assert_eq!(r["error"]["kind"], f["error"]["kind"], "{u}: {r} vs {f}");
    }
    assert_eq!(one_shot.len(), total);

    // Submitting the same list again queues nothing new; collecting again adds nothing.
    let again = Command::new(ringcrawl_bin())
        .args(["submit", "--nats", &url])
        .arg(&list_path)
        .output()
        .unwrap();
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.contains(&format!("{total} already queued")),
        "{again}"
    );
    thread::sleep(Duration::from_millis(500));
    collect(&url, &records);
    assert_eq!(lines_in(&records), total);

    da.stop(a2);
    dc.stop(c);
    let mut log = std::io::stderr();
    let _ = writeln!(log, "cluster test: {total} lines in {took:?}");
}

/// A list dropped into a node's spool is published to the cluster: its records come from
/// `collect` (one per line), and `submit --wait` on that spool says so and fails, since the
/// node's own results hold none of them.
#[test]
fn a_list_in_a_nodes_spool_goes_to_the_cluster_and_submit_wait_says_so() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), 4, 2);
    let dns = &served.dns;
    let urls = served.urls();
    let list_path = tmp.path().join("spooled.txt");
    served.write_list(&list_path);

    let url = nats.url();
    let node = NodeDir::new(tmp.path(), "a", &url, &dns.resolver_arg());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    node.listen_for_metrics(metrics);
    let p = node.start();
    let out = Command::new(ringcrawl_bin())
        .args(["submit", "--wait", "--spool"])
        .arg(node.dir.join("spool"))
        .arg(&list_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was published to the cluster: its records come from `ringcrawl collect`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no records from the node's spool");

    let records = tmp.path().join("records.jsonl");
    collect_until(&url, &records, urls.len(), &[&node]);
    assert_eq!(lines_in(&records), urls.len());

    // The node's metrics: every partition held (it is alone), its records fetched and
    // stored, and no lag once an ownership round has seen the stream empty.
    let n = urls.len().to_string();
    let mut last = String::new();
    let settled = wait_until(Duration::from_secs(10), || {
        last = scrape(metrics);
        [
            ("ringcrawl_cluster_partitions", PARTITIONS.to_string()),
            ("ringcrawl_cluster_partitions_held", PARTITIONS.to_string()),
            ("ringcrawl_cluster_nodes", "1".into()),
            ("ringcrawl_cluster_connected", "1".into()),
            ("ringcrawl_cluster_lag", "0".into()),
            ("ringcrawl_cluster_records_stored_total", n.clone()),
            ("ringcrawl_records_total{outcome=\"ok\"}", n.clone()),
        ]
        .iter()
        .all(|(series, want)| sample(&last, series) == Some(want.as_str()))
    });
    assert!(settled, "{last}");
    node.stop(p);
}

/// A crawl under names of its own: a node, `submit --nats URL --config FILE` and `collect
/// --config FILE`, all with one `[cluster]` table that sets the subject prefix, both streams'
/// and both buckets' names, crawl a list to one record per URL, titles right; and the server
/// holds the crawl's streams and buckets under those names and subjects only: nothing under
/// the default names.
#[test]
fn a_crawl_named_in_cluster_uses_its_own_streams_and_buckets_and_none_of_the_defaults() {
    let nats = NatsServer::start_monitored();
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), 4, 3);
    let list_path = tmp.path().join("named.txt");
    served.write_list(&list_path);
    let total = served.urls().len();

    let url = nats.url();
    let node = NodeDir::new(tmp.path(), "named", &url, &served.dns.resolver_arg());
    node.cluster_keys(
        "subject_prefix = \"crawl.b\"\nurl_stream = \"urls-b\"\n\
         records_stream = \"records-b\"\nlease_bucket = \"leases-b\"\n\
         node_bucket = \"nodes-b\"\n",
    );
    let cfg = node.config();
    let cfg = cfg.to_str().unwrap();
    let p = node.start();
    let (code, stdout, err) = run(&[
        "submit",
        "--nats",
        &url,
        "--config",
        cfg,
        list_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "submit: {err}");
    assert!(stdout.contains(&format!("({total} lines)")), "{stdout}");

    let records = tmp.path().join("records.jsonl");
    collect_settled(["--config", cfg], &records, total, &[&node]);
    assert_records_match(&records, &served.expect);

    let mut want: BTreeMap<String, Vec<String>> = (0..PARTITIONS)
        .map(|p| (format!("urls-b-{p}"), vec![format!("crawl.b.urls.{p}")]))
        .collect();
    for (name, subject) in [
        ("records-b", "crawl.b.records"),
        ("KV_leases-b", "$KV.leases-b.>"),
        ("KV_nodes-b", "$KV.nodes-b.>"),
    ] {
        want.insert(name.into(), vec![subject.into()]);
    }
    let held: BTreeMap<String, Vec<String>> = nats
        .streams()
        .into_iter()
        .map(|(name, s)| (name, s.subjects))
        .collect();
    let defaults: Vec<&String> = held
        .keys()
        .filter(|n| n.starts_with("ringcrawl") || n.starts_with("KV_ringcrawl"))
        .collect();
    assert!(
        defaults.is_empty(),
        "streams under the default names: {defaults:?}"
    );
    assert_eq!(held, want, "the server's streams and their subjects");
    node.stop(p);
}

/// A node that dies while it publishes a list from its spool (aborted by a failpoint right
/// after it counted the list's 100th PubAck: no drain, no flush, as a crash) leaves the list
/// in `cur/`, with some of its lines in the URL streams and the rest not sent yet. Started
/// again, it publishes the whole list again under the same list id (its claim name and
/// content): the URL streams store the lines they lacked and drop as duplicates those they
/// held (each line stored once in all), every line ends with exactly one record, by `(src,
/// line)`, titles right, and the list goes to `done/` (status `cluster 0`).
///
/// The list is long (1,000 URLs, no host delay, so it is crawled in seconds) because the node's
/// sends run well ahead of their PubAcks: a list of 50 is all sent before its first PubAck is
/// counted, and a crash then leaves nothing unsent (here about 200 lines are in when it dies).
#[test]
fn a_node_that_dies_publishing_a_spool_list_publishes_it_again_without_doubling_a_line() {
    let nats = NatsServer::start_monitored();
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), 100, 5);
    let (dns, expect) = (&served.dns, &served.expect);
    let list_path = tmp.path().join("spooled.txt");
    served.write_list(&list_path);
    let total = expect.len();
    let crash_at = total / 10;

    let url = nats.url();
    let node = NodeDir::new(tmp.path(), "a", &url, &dns.resolver_arg());
    let path = node.config();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("host_delay_ms = {HOST_DELAY_MS}"),
        "host_delay_ms = 0",
        1,
    );
    std::fs::write(&path, text).unwrap();
    // Lines the URL streams ever stored (a line sent again within the duplicate window is
    // not stored again; the spool intake sends a message per line).
    let stored = || -> u64 {
        nats.streams()
            .iter()
            .filter(|(name, _)| name.starts_with("ringcrawl-urls-"))
            .map(|(_, s)| s.last_seq)
            .sum()
    };

    let failpoint = format!("cluster-spool-stored:{crash_at}:abort");
    let mut p = node.start_with(&[], None, &[("RINGCRAWL_FAILPOINT", &failpoint)]);
    let spool = node.dir.join("spool");
    let (code, stdout, err) = run(&[
        "submit",
        "--spool",
        spool.to_str().unwrap(),
        list_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "submit --spool: {err}");
    // `queued SPOOL/new/NAME`: NAME is the list's name in the spool.
    let queued = stdout.trim_end().strip_prefix("queued ").expect(&stdout);
    let name = Path::new(queued).file_name().unwrap().to_str().unwrap();
    let mut died = None;
    let ended = wait_until(Duration::from_secs(30), || {
        died = p.0.try_wait().unwrap();
        died.is_some()
    });
    assert!(
        ended,
        "the failpoint did not end the node:\n{}",
        node.logs()
    );
    let died = died.unwrap();
    {
        use std::os::unix::process::ExitStatusExt as _;
        const SIGABRT: i32 = 6;
        assert_eq!(died.signal(), Some(SIGABRT), "{died}:\n{}", node.logs());
    }
    assert!(
        node.logs()
            .contains("failpoint cluster-spool-stored reached: aborting"),
        "{}",
        node.logs()
    );
    let (cur, done) = (spool.join("cur").join(name), spool.join("done").join(name));
    assert!(cur.exists() && !done.exists(), "the list stays in cur/");
    // What the server took from the dead node's connection: the count once it is steady.
    let mut at_crash = stored();
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = stored();
        if now == at_crash {
            break;
        }
        at_crash = now;
    }
    assert!(
        (crash_at as u64..total as u64).contains(&at_crash),
        "the node died with {at_crash} of {total} lines in the URL streams"
    );

    let p2 = node.start();
    let records = tmp.path().join("records.jsonl");
    collect_settled(["--nats", &url], &records, total, &[&node]);
    let text = std::fs::read_to_string(&records).unwrap();
    let mut by_key: BTreeMap<(String, u64), serde_json::Value> = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let key = (
            v["src"].as_str().expect("src").to_string(),
            v["line"].as_u64().expect("line"),
        );
        assert!(
            by_key.insert(key.clone(), v).is_none(),
            "two records for {key:?}"
        );
    }
    let srcs: std::collections::BTreeSet<&str> = by_key.keys().map(|(s, _)| s.as_str()).collect();
    assert_eq!(srcs.len(), 1, "one list id: {srcs:?}");
    assert!(
        srcs.iter().all(|s| s.starts_with(&format!("{name}@"))),
        "{name}: {srcs:?}"
    );
    let lines: Vec<u64> = by_key.keys().map(|(_, n)| *n).collect();
    assert_eq!(
        lines,
        (1..=total as u64).collect::<Vec<u64>>(),
        "one record per line"
    );
    for ((_, n), rec) in &by_key {
        let e = &expect[*n as usize - 1];
        let bad = support::site::mismatches(e, rec, false);
        assert!(bad.is_empty(), "{}: {bad:?}", e.url);
    }

    let moved = wait_until(Duration::from_secs(10), || done.exists() && !cur.exists());
    assert!(moved, "the list is not in done/:\n{}", node.logs());
    let status = std::fs::read_to_string(spool.join("out").join(format!("{name}.status")));
    assert_eq!(status.unwrap(), "cluster 0\n");
    assert_eq!(
        stored(),
        total as u64,
        "each line stored once in the URL streams ({at_crash} before the crash)"
    );
    node.stop(p2);
}

/// A list queued while no node runs: `collect` says the crawl is not over. Three nodes join,
/// one by `run --nats URL` with no `[cluster]` table: they split the partitions at their fair
/// share, none held twice, and the `--nats` node's STATUS line says what it holds. `collect
/// --wait` then exits only once every line has its record, and a second output file gets every
/// record too (its own consumer).
#[test]
fn three_nodes_share_the_partitions_and_collect_wait_waits_for_the_crawl() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), 6, 2);
    let urls = served.urls();
    let list = tmp.path().join("list.txt");
    served.write_list(&list);
    let url = nats.url();
    let resolver = served.dns.resolver_arg();
    let nodes: Vec<NodeDir> = ["a", "b", "c"]
        .iter()
        .map(|name| NodeDir::new(tmp.path(), name, &url, &resolver))
        .collect();
    let metrics: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| {
            let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            n.listen_for_metrics(addr);
            addr
        })
        .collect();

    // Queued with b's [cluster] table (its partition count), no node running yet.
    let config = nodes[1].config();
    let (code, _, err) = run(&[
        "submit",
        "--nats",
        &url,
        "--config",
        config.to_str().unwrap(),
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "submit: {err}");
    let records = tmp.path().join("records.jsonl");
    let said = collect(&url, &records);
    assert_eq!(lines_in(&records), 0, "{said}");
    assert!(
        said.contains("the crawl is not over: ")
            && said.contains("collect again later, or with --wait"),
        "{said}"
    );

    // Started before any node: it must wait for them and for the whole crawl.
    let mut waiting = Proc(
        Command::new(ringcrawl_bin())
            .args(["collect", "--wait", "--nats", &url, "-o"])
            .arg(&records)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.0.try_wait().unwrap().is_none(),
        "collect --wait ended with no node running"
    );

    let b = nodes[1].start(); // first: the lease bucket gets its lease time
    nodes[0].without_cluster_table();
    let notify = Notify::new(tmp.path().join("notify.sock"));
    let a = nodes[0].start_with(&["--nats", &url], Some(&notify), &[]);
    let c = nodes[2].start();

    let share = PARTITIONS / 3;
    let mut last = Vec::new();
    let fair = wait_until(Duration::from_secs(30), || {
        last = metrics
            .iter()
            .map(|m| {
                sample(&scrape(*m), "ringcrawl_cluster_partitions_held")
                    .and_then(|v| v.parse::<u32>().ok())
            })
            .collect();
        last.iter().all(|h| *h == Some(share))
    });
    assert!(fair, "partitions held by a, b, c: {last:?}");
    let status = wait_until(Duration::from_secs(10), || {
        notify.messages().iter().any(|m| {
            m.contains("STATUS=")
                && m.contains(&format!(", {share} of {PARTITIONS} partitions held,"))
        })
    });
    assert!(status, "{:?}", notify.messages());

    let ended = wait_until(WAIT, || waiting.0.try_wait().unwrap().is_some());
    assert!(ended, "collect --wait still running after {WAIT:?}");
    let mut said = String::new();
    waiting
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert_eq!(waiting.0.wait().unwrap().code(), Some(0), "{said}");
    assert_eq!(lines_in(&records), urls.len(), "{said}");
    assert!(!said.contains("not over"), "{said}");
    assert_records_match(&records, &served.expect);
    // A second file has its own consumer: it gets every record, whatever the first file took.
    let second = tmp.path().join("second.jsonl");
    collect(&url, &second);
    assert_eq!(lines_in(&second), urls.len());
    for (dir, p) in nodes.iter().zip([a, b, c]) {
        dir.stop(p);
    }
}

/// A node that loses NATS (the server killed) stops taking work: its leases are dropped and
/// its metrics say so, while it keeps running and retrying. With the server back (same port,
/// same store), it takes its partitions again and the list ends with exactly one record per
/// line, titles right: nothing fetched while it was cut off is lost.
#[test]
fn a_node_that_loses_nats_stops_taking_work_and_resumes_without_loss() {
    let mut nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    // Few hosts, many pages: with the host delay the crawl lasts a few seconds.
    let served = Served::start(tmp.path(), 6, 30);
    let (dns, expect) = (&served.dns, &served.expect);
    let list_path = tmp.path().join("list.txt");
    served.write_list(&list_path);

    let url = nats.url();
    let node = NodeDir::new(tmp.path(), "a", &url, &dns.resolver_arg());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    node.listen_for_metrics(metrics);
    let mut p = node.start();
    submit(&url, &list_path);
    let records = tmp.path().join("records.jsonl");
    collect_until(&url, &records, expect.len() / 5, &[&node]);

    nats.kill();
    let mut last = String::new();
    // A round without NATS waits out request timeouts (the heartbeat's, the renewals').
    let cut_off = wait_until(Duration::from_secs(60), || {
        last = scrape(metrics);
        sample(&last, "ringcrawl_cluster_connected") == Some("0")
            && sample(&last, "ringcrawl_cluster_partitions_held") == Some("0")
    });
    assert!(cut_off, "the node still holds partitions:\n{last}");
    assert!(
        p.0.try_wait().unwrap().is_none(),
        "the node keeps running:\n{}",
        node.logs()
    );

    nats.restart();
    collect_settled(["--nats", &url], &records, expect.len(), &[&node]);
    assert_records_match(&records, expect);
    let resumed = sample(&scrape(metrics), "ringcrawl_cluster_partitions_held")
        .map(str::to_string)
        .unwrap_or_default();
    assert_eq!(resumed, PARTITIONS.to_string(), "partitions taken again");

    node.stop(p);
}

/// A chunk of lines is acked only once every line in it has its record: a node killed with
/// `kill -9` while its chunks are half done (their lines finish out of order, each host's a
/// host delay apart, several hosts at once) acked none of them, so they come back whole to
/// the node started next, and every line ends with exactly one record (the lines recorded
/// before the kill are fetched again and dropped as duplicates). They come back once the dead
/// node's lease is gone, not after the ack wait (five minutes here).
#[test]
fn a_node_killed_with_chunks_half_done_loses_none_of_their_lines() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    // One partition: the list's lines go in chunks of consecutive lines, each spanning
    // two or three hosts of 15 URLs.
    let served = Served::start(tmp.path(), 4, 10);
    let (dns, expect) = (&served.dns, &served.expect);
    let list_path = tmp.path().join("list.txt");
    served.write_list(&list_path);
    let urls = served.urls();
    let total = urls.len();

    let url = nats.url();
    let node = NodeDir::new(tmp.path(), "a", &url, &dns.resolver_arg());
    let path = node.dir.join("ringcrawl.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen(&format!("partitions = {PARTITIONS}"), "partitions = 1", 1)
        .replacen("per_host = 2", "per_host = 1", 1)
        .replacen(
            &format!("host_delay_ms = {HOST_DELAY_MS}"),
            "host_delay_ms = 300",
            1,
        )
        .replacen(
            &format!("ack_wait_secs = {ACK_WAIT_SECS}"),
            &format!("ack_wait_secs = {LONG_ACK_WAIT_SECS}"),
            1,
        );
    std::fs::write(&path, text).unwrap();
    let mut p = node.start();
    submit(&url, &list_path);
    let records = tmp.path().join("records.jsonl");
    // A few lines of each host done: no chunk is complete (a host's 15 lines take 4.5 s).
    collect_until(&url, &records, 6, &[&node]);
    p.0.kill().unwrap(); // SIGKILL
    p.0.wait().unwrap();
    let done = lines_in(&records);
    assert!(
        done < total / 2,
        "killed with chunks half done ({done} of {total})"
    );

    let restarted = Instant::now();
    let p2 = node.start();
    collect_until(&url, &records, total, &[&node]);
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(LONG_ACK_WAIT_SECS / 5),
        "the dead node's lines came back after {took:?}"
    );
    assert!(
        node.logs()
            .contains("taking over messages its last owner left unacked"),
        "{}",
        node.logs()
    );
    thread::sleep(Duration::from_millis(500));
    collect(&url, &records);
    let text = std::fs::read_to_string(&records).unwrap();
    let mut by_line: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let n = v["line"].as_u64().expect("line");
        assert!(by_line.insert(n, v).is_none(), "two records for line {n}");
    }
    assert_eq!(
        by_line.keys().copied().collect::<Vec<u64>>(),
        (1..=total as u64).collect::<Vec<u64>>(),
        "one record per line"
    );
    for (i, e) in expect.iter().enumerate() {
        let rec = &by_line[&(i as u64 + 1)];
        let bad = support::site::mismatches(e, rec, false);
        assert!(bad.is_empty(), "{}: {bad:?}", e.url);
    }
    node.stop(p2);
}

/// A server that speaks only TLS and admits only a credentials file's user: a node, `submit`
/// and `collect --follow` all configured from `[cluster]` (`credentials_file`,
/// `tls_ca_file`) crawl a list to exactly one record per line; `collect --follow` writes
/// them as they come and keeps running until SIGTERM (then exit 0 with its summary), and
/// `collect` run again adds nothing.
/// Without the credentials, or without the CA, each command fails with one line saying why.
#[test]
fn a_cluster_behind_tls_and_credentials_works_and_collect_follows() {
    let certs = TlsCerts::generate();
    let (_nats, secure) = NatsServer::start_secure(&certs);
    let url = format!("nats://127.0.0.1:{}", _nats.port);
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), 16, 2);
    let list_path = tmp.path().join("secure.txt");
    served.write_list(&list_path);
    let total = served.urls().len();
    let records = tmp.path().join("records.jsonl");
    let out = records.to_str().unwrap();

    // Each missing piece: one line naming the cause, exit 1, nothing written.
    let (creds, ca) = (secure.creds.display(), secure.ca.display());
    for (name, keys, cause) in [
        (
            "no-creds",
            format!("tls_ca_file = \"{ca}\"\n"),
            "authorization",
        ),
        (
            "no-ca",
            format!("credentials_file = \"{creds}\"\n"),
            "certificate",
        ),
    ] {
        let d = NodeDir::new(tmp.path(), name, &url, &served.dns.resolver_arg());
        d.cluster_keys(&keys);
        let cfg = d.config();
        let (code, _, err) = run(&["collect", "--config", cfg.to_str().unwrap(), "-o", out]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(err.to_lowercase().contains(cause), "{name}: {err}");
        let list = list_path.to_str().unwrap();
        let (code, _, err) = run(&[
            "submit",
            "--config",
            cfg.to_str().unwrap(),
            "--nats",
            &url,
            list,
        ]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
    }
    assert_eq!(lines_in(&records), 0, "nothing collected");

    // A node without the credentials says why once and retries quietly.
    let refused = NodeDir::new(tmp.path(), "refused", &url, &served.dns.resolver_arg());
    refused.cluster_keys(&format!("tls_ca_file = \"{ca}\"\n"));
    let r = refused.spawn();
    refused.says_why_once(&["authorization violation"]);
    refused.stop(r);

    let node = NodeDir::new(tmp.path(), "secure", &url, &served.dns.resolver_arg());
    node.cluster_keys(&format!(
        "credentials_file = \"{creds}\"\ntls_ca_file = \"{ca}\"\n"
    ));
    let cfg = node.config();
    let cfg = cfg.to_str().unwrap();
    let n = node.start();

    let mut follow = Command::new(ringcrawl_bin())
        .args(["collect", "--follow", "--config", cfg, "-o", out])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stdout, err) = run(&[
        "submit",
        "--config",
        cfg,
        "--nats",
        &url,
        list_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "submit: {err}");
    assert!(stdout.contains(&format!("({total} lines)")), "{stdout}");

    let all_in = wait_until(WAIT, || lines_in(&records) >= total);
    assert!(
        all_in,
        "collect --follow wrote {} of {total}:\n{}",
        lines_in(&records),
        node.logs()
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "collect --follow keeps running once caught up"
    );
    let _ = Command::new("kill").arg(follow.id().to_string()).status();
    let stopped = follow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "SIGTERM ends collect --follow: {err}"
    );
    assert!(
        err.contains(&format!("holds {total} records")),
        "its summary: {err}"
    );

    let mut seen = std::collections::BTreeSet::new();
    let by_url: BTreeMap<&str, &support::Expect> =
        served.expect.iter().map(|e| (e.url.as_str(), e)).collect();
    let text = std::fs::read_to_string(&records).unwrap();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(seen.insert(v["line"].as_u64().unwrap()), "two records: {l}");
        let e = by_url[v["url"].as_str().unwrap()];
        assert_eq!(v["title"].as_str(), e.title.as_deref(), "{l}");
        assert_eq!(v["status"].as_u64(), Some(e.status as u64), "{l}");
    }
    assert_eq!(seen.len(), total, "one record per line");

    let err = collect_from(["--config", cfg], &records);
    assert_eq!(
        lines_in(&records),
        total,
        "collecting again adds nothing: {err}"
    );
    node.stop(n);
}

/// A node whose server does not answer says why once (the cause, then the retries quietly),
/// keeps retrying, and stops at once on SIGTERM: it holds nothing to give back.
#[test]
fn a_node_without_a_server_says_why_once_and_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", free_port());
    let node = NodeDir::new(tmp.path(), "alone", &url, "127.0.0.1:53");
    let p = node.spawn();
    node.says_why_once(&[&url, "refused"]);
    let took = node.stop(p);
    assert!(
        took < Duration::from_secs(5),
        "stopped in {took:?}:\n{}",
        node.logs()
    );
}

/// A node whose server never answers its connection (a full accept queue: the connect hangs
/// until its 5 s timeout) stops at once on SIGTERM, without waiting the attempt out.
#[test]
fn a_node_stopped_while_connecting_stops_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let hole = Blackhole::start();
    let url = format!("nats://{}", hole.addr);
    let node = NodeDir::new(tmp.path(), "waiting", &url, "127.0.0.1:53");
    let p = node.spawn();
    let ready = wait_until(Duration::from_secs(20), || node.logs().contains("ready"));
    assert!(ready, "{}", node.logs());
    thread::sleep(Duration::from_millis(500)); // inside the first attempt
    let took = node.stop(p);
    assert!(
        took < Duration::from_secs(3),
        "stopped in {took:?}:\n{}",
        node.logs()
    );
}
