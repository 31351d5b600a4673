//! Integration tests of the command line as a user meets it: the real binary's exit codes
//! (0 ok, 1 runtime failure, 2 usage error) and its error messages: one line, starting
//! with `ringcrawl: `, naming what is wrong in the user's words, each cause said once.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringcrawl");
/// Longest a run may take before it counts as hung (these all end in well under a second).
const KILL_AFTER: Duration = Duration::from_secs(60);

/// Run the binary with `args` (stdin from `stdin`, or empty) and collect its output.
fn ringcrawl(args: &[&str], stdin: Option<Stdio>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(stdin.unwrap_or_else(Stdio::null))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringcrawl");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > KILL_AFTER {
            let _ = child.kill();
            panic!("ringcrawl {args:?} still running after {KILL_AFTER:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

/// `stderr` is one `ringcrawl: ` line that contains `want` and says no cause twice.
fn assert_one_line(args: &[&str], stderr: &str, want: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: want one line, got:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("ringcrawl: "), "{args:?}: {line}");
    assert!(line.contains(want), "{args:?}: no {want:?} in {line}");
    // A cause repeated shows up as the same ": "-separated part twice.
    for part in line.split(": ").filter(|p| p.len() >= 8) {
        assert_eq!(
            line.matches(part).count(),
            1,
            "{args:?}: {part:?} said more than once in {line}"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn usage_errors_exit_2_with_one_line_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_key = write(dir.path(), "unknown.toml", "[fetch]\ncolour = 1\n");
    let bad_type = write(dir.path(), "type.toml", "[fetch]\nconcurrency = \"many\"\n");
    let bad_syntax = write(dir.path(), "syntax.toml", "[fetch\n");
    let cross = write(dir.path(), "cross.toml", "[fetch]\nper_host = 8\n");
    let spool = dir.path().join("spool").display().to_string();
    // For `run`: usable spool and journal, so the one problem is the unknown key.
    let daemon_unknown_key = write(
        dir.path(),
        "daemon.toml",
        &format!(
            "[daemon]\nspool = \"{spool}\"\njournal = \"{}/j.jsonl\"\n[fetch]\ncolour = 1\n",
            dir.path().display()
        ),
    );
    std::fs::create_dir_all(dir.path().join("spool/tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("spool/new")).unwrap();
    let missing = dir.path().join("missing").display().to_string();
    let list = write(
        dir.path(),
        "list.txt",
        "http://127.0.0.1:1/a\nhttp://127.0.0.1:1/b\n",
    );
    let not_csv = write(dir.path(), "not.csv", "url,final_url\n");
    let csv_out = write(
        dir.path(),
        "out.csv",
        "url,final_url,ip,status,content_type,title,title_truncated,link,error_kind,\
         error_message,error_hop,attempts,redirects,chain,bytes,ms,ts,tls_verified,src,line\n",
    );
    let other_out = write(
        dir.path(),
        "other.jsonl",
        "{\"url\":\"http://127.0.0.1:1/other\",\"line\":1}\n",
    );
    let out_in_missing_dir = format!("{missing}/out.jsonl");
    let ca = format!("{missing}/ca.pem");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Numbers the validation refuses, named as the flag.
        (
            vec!["fetch", "--timeout", "0", "x"],
            "bad value for --timeout: 0",
        ),
        (
            vec!["fetch", "--timeout", "nan", "x"],
            "bad value for --timeout: NaN",
        ),
        (
            vec!["fetch", "--timeout", "-1", "x"],
            "bad value for --timeout: -1",
        ),
        (
            vec!["fetch", "--connect-timeout", "1e9", "x"],
            "--connect-timeout",
        ),
        (
            vec!["fetch", "-c", "0", "x"],
            "bad value for --concurrency: 0",
        ),
        (
            vec!["fetch", "--per-host", "0", "x"],
            "bad value for --per-host: 0",
        ),
        (
            vec!["fetch", "--threads", "5000", "x"],
            "bad value for --threads",
        ),
        (
            vec!["fetch", "--max-body", "-1", "x"],
            "bad value for --max-body",
        ),
        (
            vec!["fetch", "--max-redirects", "1000", "x"],
            "--max-redirects",
        ),
        (vec!["fetch", "--user-agent", "", "x"], "--user-agent"),
        (
            vec!["fetch", "--follow", "<<", "x"],
            "bad value for --follow",
        ),
        (
            vec!["fetch", "-c", "4", "--per-host", "8", "x"],
            "bad value for --per-host: 8 is more than --concurrency 4",
        ),
        // Numbers clap cannot parse, and unknown flags (clap's errors, as one line).
        (vec!["fetch", "-c", "abc", "x"], "'--concurrency <N>'"),
        (vec!["fetch", "--timout", "3", "x"], "'--timeout'"),
        // Nothing to do.
        (vec!["fetch"], "no URLs given"),
        (vec!["fetch", "-q"], "no URLs given"),
        // Files named on the command line.
        (vec!["fetch", "-i", &missing, "x"], "cannot open"),
        (
            vec!["fetch", "-o", &out_in_missing_dir, "x"],
            "cannot create",
        ),
        (
            vec!["fetch", "--config", &missing, "x"],
            "cannot read config file",
        ),
        (
            vec!["fetch", "--ca-file", &ca, "http://127.0.0.1:1/"],
            "CA file",
        ),
        (vec!["submit", "--spool", &spool, &missing], "cannot read"),
        (vec!["submit"], "<FILE>"),
        (vec!["run", "--config", &missing], "cannot read config file"),
        // Config files with one problem each, named by key and file.
        (
            vec!["fetch", "--config", &unknown_key, "x"],
            "unknown key `fetch.colour`",
        ),
        (
            vec!["fetch", "--config", &bad_type, "x"],
            "bad value for `fetch.concurrency`: expected an integer",
        ),
        (vec!["fetch", "--config", &bad_syntax, "x"], "syntax error"),
        (
            vec!["fetch", "--config", &cross, "-c", "4", "x"],
            "bad value for `fetch.per_host`: 8 is more than --concurrency 4",
        ),
        (
            vec!["run", "--check-config", "--config", &daemon_unknown_key],
            "unknown key `fetch.colour`",
        ),
        // load: its own flags, the shared ones, and its URL.
        (
            vec!["load", "-c", "0", "http://x/"],
            "bad value for --connections: 0",
        ),
        (vec!["load", "-n", "0", "http://x/"], "--requests"),
        (vec!["load", "--rate", "0", "http://x/"], "--rate"),
        (
            vec!["load", "--connect-timeout", "0", "http://x/"],
            "--connect-timeout",
        ),
        (vec!["load", "not a url"], "bad value for URL"),
        // fetch's output format and --resume.
        (
            vec!["fetch", "--format", "xml", "x"],
            "invalid value 'xml' for '--format <FORMAT>'",
        ),
        (
            vec!["fetch", "--resolver", "localhost", "x"],
            "`localhost` is not IP, IP:PORT or [IPv6]:PORT",
        ),
        (
            vec!["fetch", "--resume", "-i", &list],
            "--resume needs -o FILE",
        ),
        (
            vec!["fetch", "--resume", "-i", &list, "-o", "-"],
            "--resume needs -o FILE",
        ),
        (
            vec!["fetch", "--resume", "-o", &other_out, "x"],
            "--resume continues a list: it needs -i LIST",
        ),
        (
            vec!["fetch", "--resume", "-i", &list, "-o", &other_out, "x"],
            "--resume continues a list",
        ),
        (
            vec![
                "fetch", "--resume", "--format", "csv", "-i", &list, "-o", &not_csv,
            ],
            "does not start with the CSV header",
        ),
        (
            vec!["fetch", "--resume", "-i", &list, "-o", &csv_out],
            "holds CSV records (its first line is the CSV header): resume it with --format csv",
        ),
        (
            vec!["fetch", "--resume", "-i", &list, "-o", &other_out],
            "--resume: line 1 of the list is not the URL of the output's record for line 1",
        ),
        (
            vec!["load", "ftp://x/"],
            "bad value for URL: \"ftp://x/\": unsupported scheme",
        ),
    ];
    for (args, want) in &cases {
        let out = ringcrawl(args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} must exit 2; stderr:\n{stderr}"
        );
        assert_one_line(args, &stderr, want);
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    assert!(
        !Path::new(&out_in_missing_dir).exists() && !Path::new(&missing).exists(),
        "nothing created"
    );
    assert_eq!(
        std::fs::read_to_string(&other_out).unwrap().lines().count(),
        1,
        "nothing appended to the output of another list"
    );
}

#[test]
fn a_config_file_with_several_problems_gets_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "[daemon]\nfsync = \"sometimes\"\n[fetch]\nconcurrency = 0\ntimeout_secs = -1\n",
    );
    let out = ringcrawl(&["fetch", "--config", &cfg, "x"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (line, key) in lines.iter().zip([
        "`daemon.fsync`",
        "`fetch.concurrency`",
        "`fetch.timeout_secs`",
    ]) {
        assert!(
            line.starts_with(&format!("ringcrawl: {cfg}: bad value for {key}")),
            "{line}"
        );
    }
}

#[test]
fn a_runtime_failure_exits_1_with_one_line() {
    // Standard input that cannot be read (a directory): the list read fails mid-run.
    let dir = std::fs::File::open("/").unwrap();
    let args = ["fetch", "-q", "-i", "-"];
    let out = ringcrawl(&args, Some(Stdio::from(dir)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_one_line(&args, &stderr, "reading the URL list");
}

#[test]
fn failed_urls_are_records_not_exit_codes() {
    let args = ["fetch", "-q", "http://127.0.0.1:1/", "not a url", "  "];
    let out = ringcrawl(&args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let records: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "a blank argument is no URL: {records:?}");
    let mut kinds: Vec<&str> = records
        .iter()
        .map(|r| r["error"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["connect_refused", "invalid_url"]);
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["--version"], &["fetch", "--help"]] {
        let out = ringcrawl(args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

/// The commands a user can complete and find in the manual.
const COMMANDS: [&str; 6] = ["fetch", "run", "submit", "load", "completions", "man"];

#[test]
fn completions_for_each_shell_name_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ringcrawl(&["completions", shell], None);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(out.stderr.is_empty(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in COMMANDS {
            assert!(script.contains(word), "{shell}: no {word}");
        }
        // fish names long flags without their dashes (`-l concurrency`).
        let flag = if shell == "fish" {
            "-l concurrency"
        } else {
            "--concurrency"
        };
        assert!(script.contains(flag), "{shell}: no {flag}");
        // The shell's own syntax check, when the shell is installed (bash always is).
        let check = Command::new(shell)
            .arg("-n")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match check {
            Ok(mut child) => {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(script.as_bytes())
                    .unwrap();
                let done = child.wait_with_output().unwrap();
                assert!(
                    done.status.success(),
                    "{shell} -n: {}",
                    String::from_utf8_lossy(&done.stderr)
                );
            }
            Err(_) if shell == "bash" => panic!("bash is not installed"),
            Err(_) => eprintln!("{shell} not installed: its script's syntax is not checked"),
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let args = ["completions", "tcsh"];
    let out = ringcrawl(&args, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_one_line(
        &args,
        &String::from_utf8_lossy(&out.stderr),
        "invalid value 'tcsh'",
    );
}

#[test]
fn the_man_page_renders_and_has_every_command() {
    let out = ringcrawl(&["man"], None);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    let title = page.lines().find(|l| l.starts_with(".TH")).unwrap();
    assert!(title.starts_with(".TH ringcrawl 1"), "{title}");
    for cmd in COMMANDS {
        let heading = format!(".SH \"RINGCRAWL {}\"", cmd.to_uppercase());
        assert!(page.contains(&heading), "no {heading}");
    }
    let Ok(mut man) = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("man is not installed: the page is not rendered");
        return;
    };
    let mut stdin = man.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(page.as_bytes()).unwrap();
    });
    let shown = man.wait_with_output().unwrap();
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    let errors = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.status.success() && errors.is_empty(), "man: {errors}");
    for cmd in COMMANDS {
        assert!(text.contains(&format!("RINGCRAWL {}", cmd.to_uppercase())));
    }
    assert!(text.contains("--concurrency"), "{text}");
}
