//! Ctrl-C and `--resume` for `ringcrawl fetch` (issue 15): the first SIGINT or SIGTERM stops
//! reading, lets the fetches in flight finish with their records, prints the summary and
//! exits 130 or 143; a second one exits at once; `fetch -i LIST -o OUT --resume` then
//! fetches only the lines OUT has no record for, so every line ends up with exactly one.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{ringcrawl_bin, run_fetch, FaultServer};

/// Longest a run may take before the test gives up on it.
const KILL_AFTER: Duration = Duration::from_secs(60);

/// A `ringcrawl fetch` running in the background, its stderr collected.
struct Running {
    child: Child,
    started: Instant,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let child = Command::new(ringcrawl_bin())
            .arg("fetch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringcrawl");
        Running {
            child,
            started: Instant::now(),
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {name} failed");
    }

    /// Wait for the exit; its status, stderr, and how long after `since` it came.
    fn wait(mut self, since: Instant) -> (ExitStatus, String, Duration) {
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if self.started.elapsed() > KILL_AFTER {
                let _ = self.child.kill();
                panic!("ringcrawl fetch still running after {KILL_AFTER:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = since.elapsed();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        (status, err, took)
    }
}

/// A list of `n` URLs of `server` that each take `ms` to answer, one per line.
fn slow_list(dir: &Path, server: &FaultServer, n: usize, ms: u64) -> (String, Vec<String>) {
    let urls: Vec<String> = (1..=n)
        .map(|i| server.url(&format!("/sleep/{ms}/{i}")))
        .collect();
    let path = dir.join("list.txt");
    std::fs::write(&path, urls.join("\n") + "\n").unwrap();
    (path.display().to_string(), urls)
}

/// Each JSON record of `out` by its `line`, counted; panics on a line that is not JSON (a
/// torn line) or a record without `line`.
fn lines_recorded(out: &Path) -> BTreeMap<u64, (u32, serde_json::Value)> {
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    let mut seen = BTreeMap::new();
    for l in text.lines() {
        let r: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
        let n = r["line"].as_u64().unwrap_or_else(|| panic!("no line: {r}"));
        seen.entry(n).or_insert((0, r)).0 += 1;
    }
    seen
}

/// Every line of the list has exactly one record, for its URL, with its title.
fn assert_each_line_once(out: &Path, urls: &[String]) {
    let seen = lines_recorded(out);
    assert_eq!(seen.len(), urls.len(), "lines with a record");
    for (i, url) in urls.iter().enumerate() {
        let (count, r) = &seen[&(i as u64 + 1)];
        assert_eq!(*count, 1, "line {} has {count} records", i + 1);
        assert_eq!(r["url"], url.as_str());
        assert_eq!(r["title"], format!("slept {}", i + 1), "{r}");
    }
}

/// The judged scenario: 20,000 slow URLs, SIGINT after 3 s: exit 130 with the summary and
/// every finished fetch recorded (no torn line); `--resume` completes the list with exactly
/// one record per line.
#[test]
fn sigint_stops_with_a_summary_and_resume_completes_every_line_once() {
    const URLS: usize = 20_000;
    const SLEEP_MS: u64 = 500;
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (list, urls) = slow_list(dir.path(), &server, URLS, SLEEP_MS);
    let out = dir.path().join("out.jsonl");
    let out_arg = out.display().to_string();
    let first = [
        "-i",
        &list,
        "-o",
        &out_arg,
        "-c",
        "200",
        "--per-host",
        "200",
    ];
    let run = Running::start(&first);
    std::thread::sleep(Duration::from_secs(3));
    let before = server.requests();
    let sent = Instant::now();
    run.signal("INT");
    let (status, stderr, took) = run.wait(sent);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_millis(SLEEP_MS) + Duration::from_secs(3),
        "took {took:?} after SIGINT"
    );
    assert!(stderr.contains(" URLs in "), "a summary: {stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ringcrawl: interrupted by SIGINT: "),
        "{stderr}"
    );
    let seen = lines_recorded(&out);
    assert!(
        !seen.is_empty() && seen.len() < URLS,
        "{} recorded",
        seen.len()
    );
    assert!(seen.values().all(|(n, _)| *n == 1));
    // The fetches in flight at the signal finished and have their records: nearly every
    // request the server had seen has one.
    assert!(
        seen.len() as u64 + 50 >= before,
        "{} records for {before} requests before the signal",
        seen.len()
    );

    // The same command plus --resume, with more connections to finish sooner.
    let resume = [
        "-i",
        &list,
        "-o",
        &out_arg,
        "-c",
        "2000",
        "--per-host",
        "2000",
        "--resume",
    ];
    let again = run_fetch(&resume, None);
    again.assert_success();
    assert!(
        again.stderr.contains(&format!(
            "--resume: {} lines already had a record",
            seen.len()
        )),
        "{}",
        again.stderr
    );
    assert_each_line_once(&out, &urls);
}

/// SIGTERM is the same stop, with exit 143; URLs taken but not started have no record and
/// the summary says how many.
#[test]
fn sigterm_exits_143_after_the_fetches_in_flight() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (list, _) = slow_list(dir.path(), &server, 2_000, 1_000);
    let out = dir.path().join("out.jsonl");
    let out_arg = out.display().to_string();
    let run = Running::start(&["-i", &list, "-o", &out_arg, "-c", "20", "--per-host", "20"]);
    std::thread::sleep(Duration::from_millis(1_500));
    let sent = Instant::now();
    run.signal("TERM");
    let (status, stderr, took) = run.wait(sent);
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(stderr.contains(" URLs in "), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    // Two rounds of 20 at most started before the signal, and all of them finished.
    let n = lines_recorded(&out).len();
    assert!((20..=60).contains(&n), "{n} records");
}

/// A second SIGINT does not wait for the fetches in flight: exit 130 at once.
#[test]
fn a_second_sigint_exits_at_once() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (list, urls) = slow_list(dir.path(), &server, 200, 8_000);
    let out = dir.path().join("out.jsonl");
    let out_arg = out.display().to_string();
    let args = ["-i", &list, "-o", &out_arg, "-c", "50", "--per-host", "50"];
    let run = Running::start(&args);
    assert!(support::wait_until(Duration::from_secs(20), || {
        server.requests() >= 50
    }));
    run.signal("INT");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    run.signal("INT");
    let (status, stderr, took) = run.wait(sent);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} after the second SIGINT"
    );
    assert!(lines_recorded(&out).is_empty(), "nothing had finished");
    drop(server);
    // What a second signal leaves is resumable like the rest.
    let fast = FaultServer::start();
    let (list2, urls2) = slow_list(dir.path(), &fast, urls.len(), 0);
    let resume = ["-i", &list2, "-o", &out_arg, "--resume", "-q"];
    run_fetch(&resume, None).assert_success();
    assert_each_line_once(&out, &urls2);
}

/// `--resume` matches records to lines by number, so a list with the same URL on several
/// lines is exact; a torn last line (a run killed mid-write) is cut off and its line
/// fetched again.
#[test]
fn resume_cuts_a_torn_line_and_matches_duplicates_by_line_number() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let same = server.url("/sleep/0/1");
    // Lines 1-3 are the same URL, line 4 is blank, line 5 another.
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        format!("{same}\n{same}\n{same}\n\n{}\n", server.url("/ok")),
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let done = format!("{{\"url\":\"{same}\",\"title\":\"slept 1\",\"line\":2}}\n");
    std::fs::write(&out, format!("{done}{{\"url\":\"{same}\",\"title\":\"sle")).unwrap();
    let (list_arg, out_arg) = (list.display().to_string(), out.display().to_string());
    let run = run_fetch(&["-i", &list_arg, "-o", &out_arg, "--resume"], None);
    run.assert_success();
    assert!(
        run.stderr
            .contains("--resume: 1 lines already had a record"),
        "{}",
        run.stderr
    );
    let seen = lines_recorded(&out);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 5]);
    assert!(seen.values().all(|(n, _)| *n == 1), "{seen:?}");
    assert!(
        std::fs::read_to_string(&out).unwrap().starts_with(&done),
        "kept as it was"
    );
    assert_eq!(server.hits("/sleep/0/1"), 2, "lines 1 and 3 only");
}

/// CSV output resumes like JSON Lines: the header is written once, rows appended, and the
/// rows read back by a CSV parser name every line once.
#[test]
fn csv_output_resumes_too() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (list, urls) = slow_list(dir.path(), &server, 50, 0);
    let out = dir.path().join("out.csv");
    let out_arg = out.display().to_string();
    let args = ["-q", "--format", "csv", "-i", &list, "-o", &out_arg];
    run_fetch(&args, None).assert_success();
    // Keep the header and the rows of the first ten lines finished, as after an interrupt.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut kept: Vec<&str> = text.lines().take(11).collect();
    kept.push("");
    std::fs::write(&out, kept.join("\n")).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    run_fetch(&resume, None).assert_success();
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let line_col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "line")
        .unwrap();
    let mut lines: Vec<u64> = reader
        .records()
        .map(|r| r.unwrap()[line_col].parse().unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, (1..=urls.len() as u64).collect::<Vec<_>>());
}
