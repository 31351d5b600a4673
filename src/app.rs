//! The `ringcrawl` command, all of it but the `main` stub in `src/main.rs`: parse the
//! command line, build the options, run the chosen mode (`fetch`, `run`, `submit`, `load`),
//! print the summary, and turn the outcome into an exit code: 0 ok, 1 runtime failure, 2
//! usage error (a bad flag value, an unusable config or input file, no URLs, a bad URL for
//! `load`; clap's own parse errors included). Every error is printed as one line per cause
//! (several only when a config file has several problems), each cause once.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, CollectCliArgs, Command, FetchArgs, LoadArgs, RunArgs, SubmitArgs};
use crate::config::{self, Config, Overrides};
use crate::engine::{Engine, EngineError};
use crate::intake::{InputLine, LineReader, ReadLimits};
use crate::job::Summary;
use crate::journal::{FsyncPolicy, Journal, Target};
use crate::load::LoadError;
use crate::progress::{ProgressDisplay, TICK};
use crate::spool::SpoolError;

/// Exit code of a runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (as clap uses for its own).
const EXIT_USAGE: u8 = 2;
/// Input read buffer.
const INPUT_BUF_BYTES: usize = 256 * 1024;
/// Log level of the commands other than `run` (which takes it from its config).
const COMMAND_LOG_LEVEL: &str = "warn";

/// Why a command failed, and so its exit code. `?` on any error makes a runtime failure;
/// [`usage`] marks the user's mistakes.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: EXIT_FAILURE,
            error: e.into(),
        }
    }
}

/// A usage error (exit 2).
fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: e.into(),
    }
}

type Outcome = Result<(), Failure>;

/// Run the command named on the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    // The daemon logs at its configured level; it initializes logging once that is known.
    if !matches!(cli.command, Command::Run(_)) {
        init_logging(COMMAND_LOG_LEVEL);
    }
    let result = match cli.command {
        Command::Fetch(args) => fetch(*args),
        Command::Load(args) => load(args),
        Command::Run(args) => run(args),
        Command::Submit(args) => submit(args),
        Command::Collect(args) => collect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let mut err = io::stderr().lock();
            for line in error_lines(&f.error) {
                let _ = writeln!(err, "ringcrawl: {line}");
            }
            ExitCode::from(f.code)
        }
    }
}

/// The message of `e` and of each cause in its chain that the text so far does not already
/// contain, joined with `": "`; split into lines (one per problem when there are several).
fn error_lines(e: &anyhow::Error) -> Vec<String> {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if c.is_empty() || text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// clap's own outcome: help and version as clap prints them; a parse error as one line
/// (its usage block dropped, `--help` pointed to), exit 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
    }
    eprintln!("ringcrawl: {}", clap_one_line(&e.render().to_string()));
    ExitCode::from(EXIT_USAGE)
}

/// clap's rendered error as one line: `error: ` and the usage block dropped, tips kept.
fn clap_one_line(rendered: &str) -> String {
    let mut out = String::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("Usage:") || line.starts_with("For more information")
        {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out.push_str(" (see --help)");
    out
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGCRAWL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

fn is_stdio(p: Option<&Path>) -> bool {
    p.is_none_or(|p| p.as_os_str() == "-")
}

/// Engine start-up failures caused by the options (a CA file, a `--follow` selector, a
/// `--bind` address) are usage errors; the rest (io_uring, threads) are runtime failures.
fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Tls(_) | EngineError::Selector(_) | EngineError::Bind(_) => usage(e),
        EngineError::Start(_) => e.into(),
    }
}

/// `ringcrawl fetch`: stream the inputs through the engine into the output.
fn fetch(args: FetchArgs) -> Outcome {
    let flags = args.fetch.raw();
    let opts = match &args.config {
        Some(path) => config::fetch_options_from_file(path, flags).map_err(usage)?,
        None => flags.validate().map_err(usage)?,
    };
    if args.urls.is_empty() && args.input.is_none() {
        return Err(usage(anyhow::anyhow!(
            "no URLs given: pass them as arguments, or use -i FILE (or -i - for stdin)"
        )));
    }
    let target = if is_stdio(args.output.as_deref()) {
        Target::Stdout
    } else {
        let path = args.output.clone().expect("not stdio");
        // A fresh output per run: fetch is one-shot, unlike the daemon's append-only journal.
        File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))
            .map_err(usage)?;
        Target::File(path)
    };
    let input: Option<Box<dyn BufRead>> = match args.input.as_deref() {
        None => None,
        Some(p) if is_stdio(Some(p)) => Some(Box::new(BufReader::with_capacity(
            INPUT_BUF_BYTES,
            io::stdin(),
        ))),
        Some(p) => {
            let f = File::open(p)
                .with_context(|| format!("cannot open {}", p.display()))
                .map_err(usage)?;
            Some(Box::new(BufReader::with_capacity(INPUT_BUF_BYTES, f)))
        }
    };

    let (journal, tx) = Journal::start(target, FsyncPolicy::Never, None)?;
    let engine = Engine::start(&opts, tx).map_err(engine_failure)?;
    let progress = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let file = args
            .input
            .clone()
            .filter(|p| !is_stdio(Some(p)) && p.is_file());
        ProgressDisplay::start(engine.stats(), file)
    });
    let stats = engine.stats();
    let intake = feed(&engine, &args.urls, input);
    let summary = engine.finish();
    if let Some(p) = progress {
        p.finish();
    }
    if let Some(why) = stats.failure() {
        return Err(
            anyhow::anyhow!("internal error (a ringcrawl bug, please report): {why}").into(),
        );
    }
    let written = journal.finish().context("writing records")?;
    intake?;
    debug_assert_eq!(written.records, summary.urls);
    if !args.quiet {
        print_summary(&summary);
    }
    Ok(())
}

/// Submit every argument and input line; an unreadable input stops intake (the URLs
/// already submitted still get their records).
fn feed(engine: &Engine, urls: &[OsString], input: Option<Box<dyn BufRead>>) -> anyhow::Result<()> {
    for (i, u) in urls.iter().enumerate() {
        if let Some(line) = InputLine::from_arg(u, i as u64 + 1) {
            engine.submit_line(line, None)?;
        }
    }
    if let Some(input) = input {
        for line in LineReader::new(input, ReadLimits::default()) {
            engine.submit_line(line.context("reading the URL list")?, None)?;
        }
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let errors: u64 = s.errors.values().sum();
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "ringcrawl: {} URLs in {:.2} s ({:.0}/s): {} ok, {} failed{}{}",
        s.urls,
        secs,
        s.urls as f64 / secs,
        s.ok,
        errors,
        if s.errors.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(" ({})", parts.join(", "))
        },
        match (s.retries, s.robots_fetches) {
            (0, 0) => String::new(),
            (r, 0) => format!("; {r} retries"),
            (r, n) => format!("; {r} retries, {n} robots.txt fetched"),
        }
    );
    let _ = writeln!(
        err,
        "ringcrawl: {} bytes read ({} per URL), peak {} in flight, {}, {} connections opened, {} reused, TLS handshakes {} full / {} resumed",
        s.bytes_read,
        s.bytes_read.checked_div(s.urls).unwrap_or(0),
        s.peak_in_flight,
        dns_summary(&s.dns),
        s.connections_opened,
        s.connections_reused,
        s.tls_full_handshakes,
        s.tls_resumed_handshakes,
    );
}

/// "N DNS lookups" and, when any, the resolver's retries, TCP fallbacks, stray answers.
fn dns_summary(d: &crate::dns::DnsStats) -> String {
    let mut extra = Vec::new();
    for (n, what) in [
        (d.retries, "retries"),
        (d.tcp_fallbacks, "over TCP"),
        (d.ignored_answers, "stray answers ignored"),
    ] {
        if n > 0 {
            extra.push(format!("{n} {what}"));
        }
    }
    if extra.is_empty() {
        format!("{} DNS lookups", d.lookups)
    } else {
        format!("{} DNS lookups ({})", d.lookups, extra.join(", "))
    }
}

/// `ringcrawl load`: run the load test, with a live line on a terminal, then report.
fn load(args: LoadArgs) -> Outcome {
    let opts = args.options().map_err(usage)?;
    let live = Arc::new(crate::load::LiveCounters::default());
    let done = Arc::new(AtomicBool::new(false));
    let ticker = io::stderr().is_terminal().then(|| {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                let n = live.requests.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprint!(
                    "\r{n} requests, {:.0}/s, {} errors, {secs:.1}s   ",
                    n as f64 / secs.max(1e-9),
                    live.errors.load(Ordering::Relaxed)
                );
            }
            eprint!("\r\x1b[2K");
        })
    });
    let report = crate::load::run(opts, live);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let report = report.map_err(|e| match e {
        LoadError::Tls(_) => usage(e),
        LoadError::Dns(_) | LoadError::Start(_) => e.into(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", crate::load::format_report(&report));
    }
    Ok(())
}

/// `ringcrawl run`: the daemon (or `--check-config`).
fn run(args: RunArgs) -> Outcome {
    let overrides = Overrides {
        spool: args.spool,
        journal: args.journal,
        nats: args.nats,
    };
    let cfg = match Config::load(args.config.as_deref(), &overrides) {
        Ok(cfg) => cfg,
        Err(errors) => {
            init_logging(COMMAND_LOG_LEVEL);
            return Err(usage(errors));
        }
    };
    if args.check_config {
        println!("configuration OK");
        return Ok(());
    }
    init_logging(&cfg.restart.log_level);
    if cfg.restart.cluster.is_some() {
        crate::cluster::run(cfg)?;
    } else {
        crate::daemon::run(cfg)?;
    }
    Ok(())
}

/// `ringcrawl submit`: queue list files into the spool (or the cluster) and say what was
/// queued.
fn submit(args: SubmitArgs) -> Outcome {
    if let Some(nats) = args.nats.as_deref() {
        let cluster = config::cluster_options(args.config.as_deref(), nats).map_err(usage)?;
        let queued = crate::cluster::submit(&cluster, &args.files).map_err(|e| match e {
            crate::cluster::ClusterError::Input { .. } => usage(e),
            e => e.into(),
        })?;
        for q in queued {
            let again = match q.duplicates {
                0 => String::new(),
                d => format!(", {d} already queued"),
            };
            println!(
                "queued {} as {} ({} lines{again})",
                q.input.display(),
                q.list,
                q.lines
            );
        }
        return Ok(());
    }
    let spool = match args.spool {
        Some(dir) => dir,
        None => {
            Config::load(args.config.as_deref(), &Overrides::default())
                .map_err(usage)?
                .restart
                .spool
        }
    };
    let queued = crate::spool::submit(&spool, &args.files).map_err(|e| match e {
        SpoolError::Input { .. } => usage(e),
        e => e.into(),
    })?;
    for path in queued {
        println!("queued {}", path.display());
    }
    Ok(())
}

/// `ringcrawl collect`: append the cluster's records to a file until caught up (or for
/// ever with `--follow`).
fn collect(args: CollectCliArgs) -> Outcome {
    let nats = args.nats.as_deref().unwrap_or_default();
    let cluster = config::cluster_options(args.config.as_deref(), nats).map_err(usage)?;
    let run = crate::cluster::CollectArgs {
        output: args.output,
        follow: args.follow,
        consumer: args.consumer,
    };
    let done = crate::cluster::collect(&cluster, &run)?;
    if done.torn > 0 {
        eprintln!(
            "ringcrawl: collect: cut a torn last line ({} bytes) from {}",
            done.torn,
            run.output.display()
        );
    }
    eprintln!(
        "ringcrawl: collect: {} records written, {} duplicates skipped; {} holds {} records",
        done.written,
        done.duplicates,
        run.output.display(),
        done.total
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read CA file /x: {0}")]
    struct Inline(#[source] io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || io::Error::from(io::ErrorKind::NotFound);
        let e = anyhow::Error::new(Inline(io()));
        assert_eq!(
            error_lines(&e),
            ["cannot read CA file /x: entity not found"]
        );
        let e = anyhow::Error::new(io()).context("cannot open /y");
        assert_eq!(error_lines(&e), ["cannot open /y: entity not found"]);
        let e = anyhow::Error::new(Inline(io())).context("starting");
        assert_eq!(
            error_lines(&e),
            ["starting: cannot read CA file /x: entity not found"]
        );
    }

    #[test]
    fn several_problems_are_several_lines() {
        let e = anyhow::anyhow!("bad value for --a: x\nbad value for --b: y");
        assert_eq!(error_lines(&e).len(), 2);
    }

    #[test]
    fn clap_errors_become_one_line_with_their_tips() {
        let e = Cli::try_parse_from(["ringcrawl", "fetch", "--timout", "1"]).unwrap_err();
        let line = clap_one_line(&e.render().to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("unexpected argument '--timout' found"),
            "{line}"
        );
        assert!(line.contains("--timeout"), "the tip is kept: {line}");
        assert!(!line.contains("Usage:"), "{line}");
        let e = Cli::try_parse_from(["ringcrawl", "submit"]).unwrap_err();
        let line = clap_one_line(&e.render().to_string());
        assert!(
            line.starts_with("the following required arguments were not provided: <FILE>"),
            "{line}"
        );
    }
}
