//! The `ringcrawl` command (all of it but the `main` stub in `src/main.rs`): parse the CLI,
//! load options, run the chosen mode, print errors as one line and map them to exit codes
//! (0 ok, 1 runtime failure, 2 usage).

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, FetchArgs, LoadArgs, RunArgs, SubmitArgs};
use crate::config::FetchOptions;
use crate::config::{Config, Overrides};
use crate::intake::LineReader;
use crate::journal::{FsyncPolicy, Journal, Target};
use crate::progress::ProgressDisplay;
use crate::runtime::{Engine, Summary};

/// Input read buffer.
const INPUT_BUF_BYTES: usize = 256 * 1024;

/// Run the command named on the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs at its configured level; it initializes logging once that is known.
    if !matches!(cli.command, Command::Run(_)) {
        init_logging("warn");
    }
    let result = match cli.command {
        Command::Fetch(args) => fetch(args),
        Command::Load(args) => load(args),
        Command::Run(args) => run(args),
        Command::Submit(args) => submit(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcrawl: {e:#}");
            ExitCode::FAILURE
        }
    }
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

/// `ringcrawl fetch`: stream the inputs through the engine into the output.
fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let base = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Config::parse(&text, &Overrides::default())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .fetch
        }
        None => FetchOptions::default(),
    };
    let opts = args.fetch.apply(&base)?;
    if args.urls.is_empty() && args.input.is_none() {
        anyhow::bail!("no URLs given: pass them as arguments, or use -i FILE (or -i - for stdin)");
    }
    let target = if is_stdio(args.output.as_deref()) {
        Target::Stdout
    } else {
        let path = args.output.clone().expect("not stdio");
        // A fresh output per run: fetch is one-shot, unlike the daemon's append-only journal.
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Target::File(path)
    };
    let input: Option<Box<dyn BufRead>> = match args.input.as_deref() {
        None => None,
        Some(p) if is_stdio(Some(p)) => Some(Box::new(BufReader::with_capacity(
            INPUT_BUF_BYTES,
            io::stdin(),
        ))),
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            Some(Box::new(BufReader::with_capacity(INPUT_BUF_BYTES, f)))
        }
    };

    let (journal, tx) = Journal::start(target, FsyncPolicy::Never, None)?;
    let engine = Engine::start(&opts, tx)?;
    let progress = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let file = args
            .input
            .clone()
            .filter(|p| !is_stdio(Some(p)) && p.is_file());
        ProgressDisplay::start(engine.stats(), file)
    });
    let intake = feed(&engine, &args.urls, input);
    let summary = engine.finish();
    if let Some(p) = progress {
        p.finish();
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
fn feed(engine: &Engine, urls: &[String], input: Option<Box<dyn BufRead>>) -> anyhow::Result<()> {
    for u in urls {
        for line in LineReader::new(u.as_bytes()) {
            engine.submit_line(line?, None)?;
        }
    }
    if let Some(input) = input {
        for line in LineReader::new(input) {
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
        "ringcrawl: {} URLs in {:.2} s ({:.0}/s): {} ok, {} failed{}",
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
        }
    );
    let _ = writeln!(
        err,
        "ringcrawl: {} bytes read ({} per URL), peak {} in flight, {} DNS lookups, {} connections opened, {} reused, TLS handshakes {} full / {} resumed",
        s.bytes_read,
        s.bytes_read.checked_div(s.urls).unwrap_or(0),
        s.peak_in_flight,
        s.dns_lookups,
        s.connections_opened,
        s.connections_reused,
        s.tls_full_handshakes,
        s.tls_resumed_handshakes,
    );
}

/// `ringcrawl load`: run the load test, with a live line on a terminal, then report.
fn load(args: LoadArgs) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let opts = args.options()?;
    let live = Arc::new(crate::load::LiveCounters::default());
    let done = Arc::new(AtomicBool::new(false));
    let ticker = io::stderr().is_terminal().then(|| {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(crate::progress::TICK);
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
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", crate::load::format_report(&report));
    }
    Ok(())
}

/// `ringcrawl run`: the daemon (or `--check-config`).
fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        spool: args.spool,
        journal: args.journal,
    };
    let cfg = match Config::load(args.config.as_deref(), &overrides) {
        Ok(cfg) => cfg,
        Err(errors) => {
            init_logging("warn");
            anyhow::bail!("invalid configuration:\n{errors}");
        }
    };
    if args.check_config {
        println!("configuration OK");
        return Ok(());
    }
    init_logging(&cfg.log_level);
    crate::daemon::run(cfg)?;
    Ok(())
}

/// `ringcrawl submit`: queue list files into the spool and say what was queued.
fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let spool = match args.spool {
        Some(dir) => dir,
        None => {
            Config::load(args.config.as_deref(), &Overrides::default())
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?
                .spool
        }
    };
    for path in crate::spool::submit(&spool, &args.files)? {
        println!("queued {}", path.display());
    }
    Ok(())
}
