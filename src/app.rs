//! The `ringcrawl` command, all of it but the `main` stub in `src/main.rs`: parse the
//! command line, build the options, set up logging (for a person on a terminal, or for
//! journald: `<N>` priorities, no colours, no timestamps), run the chosen mode (`fetch`,
//! `run`, `submit`, `load`, `completions`, `man`), print the summary, and turn the outcome
//! into an exit code: 0 ok, 1 runtime failure, 2 usage error (a bad flag value, an unusable
//! config or input file, no URLs, a bad URL for `load`; clap's own parse errors included),
//! 130 / 143 after `fetch` was interrupted by SIGINT / SIGTERM. Every error is printed as one
//! line per cause (several only when a config file has several problems), each cause once.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, CollectCliArgs, Command, FetchArgs, LoadArgs, RunArgs, SubmitArgs};
use crate::config::{self, Config, Overrides};
use crate::engine::{Engine, EngineError, EngineStats, Stopped};
use crate::intake::{InputLine, LineReader, ReadError, ReadLimits};
use crate::job::Summary;
use crate::journal::{FsyncPolicy, Journal, Target};
use crate::load::LoadError;
use crate::options::RawFetchOptions;
use crate::progress::{ProgressDisplay, TICK};
use crate::record::Format;
use crate::resume::{self, Mismatch, Recorded};
use crate::spool::results::{self, ListEnd};
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
        Command::Load(args) => load(*args),
        Command::Run(args) => run(args),
        Command::Submit(args) => submit(args),
        Command::Completions(args) => {
            crate::clidoc::print(&crate::clidoc::completions(args.shell)).map_err(Failure::from)
        }
        Command::Man => crate::clidoc::man_page()
            .and_then(|page| crate::clidoc::print(&page))
            .map_err(Failure::from),
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

/// Log to stderr at `default` (or `RINGCRAWL_LOG`), the NATS client's own events left out
/// ([`log_filter`]): for a person on a terminal, with time and colours; for journald
/// (`JOURNAL_STREAM` set) or any other non-terminal, one line per event with an sd-daemon
/// `<N>` priority prefix ([`SdPriority`]) and nothing journald adds itself.
fn init_logging(default: &str) {
    let env = std::env::var("RINGCRAWL_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::new(log_filter(env.as_deref(), default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() || !io::stderr().is_terminal() {
        builder
            .with_ansi(false)
            .event_format(SdPriority::default())
            .init();
    } else {
        builder.init();
    }
}

/// The filter logging uses: `RINGCRAWL_LOG` when it is set and parses, else `default`; either
/// way through [`quiet_libraries`].
fn log_filter(env: Option<&str>, default: &str) -> String {
    let given = env.filter(|d| tracing_subscriber::EnvFilter::try_new(d).is_ok());
    quiet_libraries(given.unwrap_or(default))
}

/// `directive` with the NATS client's own log events off, unless it names the client. A
/// command's failure is its one-line error, and a node says a failed connection once with its
/// cause and then its `NATS:` events; the client's own lines would repeat them, one per
/// reconnect attempt.
fn quiet_libraries(directive: &str) -> String {
    if directive.contains("async_nats") {
        directive.to_string()
    } else {
        format!("{directive},async_nats=off")
    }
}

/// The sd-daemon(3) priority of a level: `err` 3, `warning` 4, `info` 6, `debug` 7 (trace
/// too), so that `journalctl -p err` filters.
fn sd_priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        tracing::Level::DEBUG | tracing::Level::TRACE => 7,
    }
}

/// An event as `<N>target: message fields`: the priority prefix journald reads (and strips),
/// no timestamp (journald has one), no level word (the prefix is the level), no colours.
struct SdPriority(
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
);

impl Default for SdPriority {
    fn default() -> Self {
        SdPriority(
            tracing_subscriber::fmt::format()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        )
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for SdPriority
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", sd_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
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

/// How long `fetch` lets the fetches in flight finish after the first SIGINT or SIGTERM;
/// those still running then have no record (`--resume` fetches them).
pub(crate) const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// After an interrupt, how long no fetch may have been running before `fetch` stops
/// waiting for intake to end (it may be blocked reading a quiet stdin).
const INTERRUPT_SETTLE: Duration = Duration::from_millis(200);
/// How often an interrupted `fetch` looks at the fetches still running.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// What the main thread of `fetch` waits for.
enum FetchEvent {
    /// SIGINT or SIGTERM (the first one; the second exits at once).
    Signal(libc::c_int),
    /// Intake ended and the engine finished (or the intake thread panicked: why).
    Done(Box<Result<(Summary, IntakeEnd), String>>),
}

/// How intake ended.
struct IntakeEnd {
    /// Why it stopped before the end of its input, if it did.
    result: Result<(), IntakeError>,
}

/// Why intake stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
enum IntakeError {
    #[error("reading the URL list")]
    Read(#[source] ReadError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("--resume")]
    Mismatch(#[source] Mismatch),
}

impl IntakeError {
    /// Intake stopped because it was told to (an interrupt), not because of a problem.
    fn is_stop(&self) -> bool {
        matches!(
            self,
            IntakeError::Stopped(_) | IntakeError::Read(ReadError::Stopped)
        )
    }
}

/// `ringcrawl fetch`: stream the inputs through the engine into the output. Intake and the
/// engine's finish run on a thread of their own, so this one answers a signal whatever
/// intake is blocked on (a quiet stdin, a full queue): the first SIGINT/SIGTERM stops
/// intake and the engine, waits up to [`INTERRUPT_GRACE`] for the fetches in flight, closes
/// the output with every record it got, prints the summary and exits 128 + the signal.
fn fetch(args: FetchArgs) -> Outcome {
    let flags = args.fetch.raw();
    // The environment's proxy settings lie under the file, the file under the flags.
    let env = RawFetchOptions::process_env();
    let opts = match &args.config {
        Some(path) => config::fetch_options_from_file(path, env, flags).map_err(usage)?,
        None => env.overlay(flags).validate().map_err(usage)?,
    };
    if args.urls.is_empty() && args.input.is_none() {
        return Err(usage(anyhow::anyhow!(
            "no URLs given: pass them as arguments, or use -i FILE (or -i - for stdin)"
        )));
    }
    let recorded = if args.resume {
        Some(resume_scan(&args)?)
    } else {
        None
    };
    let target = fetch_output(&args)?;
    let input = fetch_input(&args)?;
    let (events_tx, events) = mpsc::channel();
    on_interrupt(events_tx.clone())?;

    let on_stdout = target == Target::Stdout;
    let encode = args.format.encoder();
    let (journal, tx) = Journal::start_encoded(target, FsyncPolicy::Never, None, encode)?;
    let engine = Engine::start(&opts, tx).map_err(engine_failure)?;
    if on_stdout {
        stdout_header(args.format)?;
    }
    let progress = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let file = args
            .input
            .clone()
            .filter(|p| !args.resume && !is_stdio(Some(p)) && p.is_file());
        ProgressDisplay::start(engine.stats(), file)
    });
    let stats = engine.stats();
    let stop_engine = engine.stop_handle();
    let stop_reading = Arc::new(AtomicBool::new(false));
    let limits = ReadLimits {
        stop: Some(stop_reading.clone()),
        max_bytes: None,
    };
    let urls = args.urls.clone();
    let skipped = Arc::new(AtomicU64::new(0));
    let skips = skipped.clone();
    std::thread::Builder::new()
        .name("intake".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| {
                let end = feed(&engine, &urls, input, limits, recorded.as_ref(), &skips);
                (engine.finish(), end)
            });
            let done = std::panic::catch_unwind(run).map_err(|p| crate::job::panic_message(&*p));
            let _ = events_tx.send(FetchEvent::Done(Box::new(done)));
        })
        .context("cannot start the intake thread")?;

    let mut interrupted = None;
    let done = match events.recv() {
        Ok(FetchEvent::Done(done)) => Some(*done),
        Ok(FetchEvent::Signal(sig)) => {
            interrupted = Some(sig);
            stop_reading.store(true, Ordering::Release);
            stop_engine.stop();
            wait_after_interrupt(&events, &stats)
        }
        Err(_) => None, // not while the signal thread holds a sender
    };
    let (summary, end) = match done {
        Some(Ok((summary, end))) => (summary, Some(end)),
        Some(Err(why)) => {
            return Err(anyhow::anyhow!(
                "internal error (a ringcrawl bug, please report): intake failed: {why}"
            )
            .into())
        }
        None => (stats.summary(), None),
    };
    if let Some(p) = progress {
        p.finish();
    }
    if let Some(why) = stats.failure() {
        return Err(
            anyhow::anyhow!("internal error (a ringcrawl bug, please report): {why}").into(),
        );
    }
    let written = match interrupted {
        None => journal.finish(),
        Some(_) => journal.close(),
    }
    .context("writing records")?;
    let skipped = skipped.load(Ordering::Relaxed);
    let read_all = match end.map(|e| e.result) {
        Some(Err(e)) if !(interrupted.is_some() && e.is_stop()) => return Err(intake_failure(e)),
        Some(Ok(())) => true,
        _ => false,
    };
    if interrupted.is_none() {
        debug_assert_eq!(written.records, summary.urls);
    }
    if !args.quiet {
        if args.resume {
            eprintln!("ringcrawl: --resume: {skipped} lines already had a record");
        }
        print_summary(&summary);
    }
    match interrupted {
        None => Ok(()),
        Some(sig) => Err(Failure {
            code: crate::signals::exit_status(sig),
            error: anyhow::anyhow!(
                "interrupted by {}: {} records written; {} URLs read had none{}",
                crate::signals::name(sig),
                written.records,
                stats.submitted().saturating_sub(written.records),
                if read_all {
                    ""
                } else {
                    ", and the rest of the input was not read"
                },
            ),
        }),
    }
}

/// Where `fetch` writes: stdout, or `-o FILE` made ready (created, truncated unless
/// `--resume`, with the format's header when it starts empty).
fn fetch_output(args: &FetchArgs) -> Result<Target, Failure> {
    if is_stdio(args.output.as_deref()) {
        return Ok(Target::Stdout);
    }
    let path = args.output.clone().expect("not stdio");
    start_output(&path, args.format, args.resume).map_err(usage)?;
    Ok(Target::File(path))
}

/// The format's header on stdout, once nothing can fail as a usage error any more.
fn stdout_header(format: Format) -> Outcome {
    if let Some(header) = format.header() {
        let mut out = io::stdout().lock();
        out.write_all(header.as_bytes())
            .and_then(|()| out.flush())
            .context("writing the header")?;
    }
    Ok(())
}

/// `fetch`'s `-i` list, opened.
fn fetch_input(args: &FetchArgs) -> Result<Option<Box<dyn BufRead + Send>>, Failure> {
    Ok(match args.input.as_deref() {
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
    })
}

/// Handle SIGINT and SIGTERM for `fetch`: the first one becomes an event for the main
/// thread; the second exits at once (128 + its number), whatever is going on.
fn on_interrupt(events: mpsc::Sender<FetchEvent>) -> Result<(), Failure> {
    let mut signalled = false;
    crate::signals::spawn(&[libc::SIGINT, libc::SIGTERM], move |sig| {
        if signalled {
            std::process::exit(i32::from(crate::signals::exit_status(sig)));
        }
        signalled = true;
        let _ = events.send(FetchEvent::Signal(sig));
        true
    })
    .context("cannot install signal handlers")?;
    Ok(())
}

/// After the first signal: wait until intake and the engine are done, or until no fetch has
/// been running for [`INTERRUPT_SETTLE`] (intake blocked in a read, whose lines would be
/// dropped anyway), or at most [`INTERRUPT_GRACE`]. `None` when intake was left running.
fn wait_after_interrupt(
    events: &mpsc::Receiver<FetchEvent>,
    stats: &EngineStats,
) -> Option<Result<(Summary, IntakeEnd), String>> {
    let deadline = Instant::now() + INTERRUPT_GRACE;
    let mut idle_since = None;
    loop {
        match events.recv_timeout(INTERRUPT_POLL) {
            Ok(FetchEvent::Done(done)) => return Some(*done),
            Ok(FetchEvent::Signal(_)) => {} // the second one exits in the handler
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        if stats.running() > 0 {
            idle_since = None;
        } else if now.duration_since(*idle_since.get_or_insert(now)) >= INTERRUPT_SETTLE {
            return None;
        }
    }
}

/// An intake failure: a mismatched `--resume` output is the user's mistake.
fn intake_failure(e: IntakeError) -> Failure {
    match e {
        IntakeError::Mismatch(_) => usage(e),
        e => e.into(),
    }
}

/// `--resume`: check that it applies, and read which lines OUT already records.
fn resume_scan(args: &FetchArgs) -> Result<Recorded, Failure> {
    let out = args.output.as_deref().filter(|p| !is_stdio(Some(p)));
    let Some(out) = out else {
        return Err(usage(anyhow::anyhow!(
            "--resume needs -o FILE, the output of the run it continues"
        )));
    };
    if args.input.is_none() || !args.urls.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "--resume continues a list: it needs -i LIST (or -i -) and no URL arguments"
        )));
    }
    resume::scan(out, args.format).map_err(usage)
}

/// Make `path` ready for records: created (or truncated, unless `resume`), with the
/// format's header when it is empty.
fn start_output(path: &Path, format: Format, resume: bool) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if !resume {
        f.set_len(0)
            .with_context(|| format!("cannot truncate {}", path.display()))?;
    }
    let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(true);
    if let (true, Some(header)) = (empty, format.header()) {
        f.write_all(header.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Submit every argument and input line (with `--resume`, only the lines `recorded` does
/// not have); an unreadable input stops intake (the URLs already submitted still get their
/// records), and so does a stop (`limits.stop`, or the engine stopping).
fn feed(
    engine: &Engine,
    urls: &[OsString],
    input: Option<Box<dyn BufRead + Send>>,
    limits: ReadLimits,
    recorded: Option<&Recorded>,
    skipped: &AtomicU64,
) -> IntakeEnd {
    let run = || -> Result<(), IntakeError> {
        for u in urls {
            if let Some(line) = InputLine::from_arg(u) {
                engine.submit_line(line, None)?;
            }
        }
        let Some(input) = input else {
            return Ok(());
        };
        for line in LineReader::new(input, limits) {
            let line = line.map_err(IntakeError::Read)?;
            if let Some(r) = recorded {
                let skip = r.skip(&line).map_err(|e| {
                    engine.stop_handle().stop(); // the output is another list's: stop at once
                    IntakeError::Mismatch(e)
                })?;
                if skip {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            engine.submit_line(line, None)?;
        }
        Ok(())
    };
    IntakeEnd { result: run() }
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

/// `ringcrawl load`: check and resolve, print the banner (text reports), run the load test
/// with a live line on a terminal, then report; a run without a single response fails with
/// one line.
fn load(args: LoadArgs) -> Outcome {
    let opts = args.options().map_err(usage)?;
    let plan = crate::load::Plan::new(opts).map_err(load_failure)?;
    if !args.json {
        let mut out = io::stdout().lock();
        out.write_all(plan.banner().as_bytes())?;
        out.flush()?;
    }
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
    let report = plan.run(live);
    done.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    let report = report.map_err(load_failure)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", crate::load::format_report(&report));
    }
    Ok(())
}

/// A load test that could not run or got no response: a usage error when a flag's value
/// was unusable (`--ca-file`, `--bind`), a runtime failure otherwise.
fn load_failure(e: LoadError) -> Failure {
    match e {
        LoadError::Tls(_) | LoadError::Bind(_) => usage(e),
        LoadError::Resolve(_) | LoadError::Start(_) | LoadError::NoSuccess(_) => e.into(),
    }
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
    if !args.wait {
        for path in queued {
            println!("queued {}", path.display());
        }
        return Ok(());
    }
    for path in &queued {
        eprintln!("queued {}", path.display());
    }
    let mut out = io::stdout().lock();
    let mut bad = Vec::new();
    for path in &queued {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match results::wait(&spool, &name, &mut out)? {
            ListEnd::Done => {}
            ListEnd::Bad(why) => bad.push(format!("list {name} went to bad/: {why}")),
            ListEnd::Cluster => bad.push(format!(
                "list {name} was published to the cluster: its records come from `ringcrawl collect`"
            )),
        }
    }
    out.flush()?;
    if bad.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(bad.join("\n")).into())
    }
}

/// `ringcrawl collect`: append the cluster's records to a file until caught up (or for
/// ever with `--follow`).
fn collect(args: CollectCliArgs) -> Outcome {
    let nats = args.nats.as_deref().unwrap_or_default();
    let cluster = config::cluster_options(args.config.as_deref(), nats).map_err(usage)?;
    let run = crate::cluster::CollectArgs {
        output: args.output,
        follow: args.follow,
        wait: args.wait,
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
    if done.queued > 0 {
        eprintln!(
            "ringcrawl: collect: the crawl is not over: {} URL messages (chunks of lines) are \
             still queued in the cluster; collect again later, or with --wait",
            done.queued
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_clients_own_events_are_off_unless_named() {
        assert_eq!(quiet_libraries("warn"), "warn,async_nats=off");
        assert_eq!(
            quiet_libraries("ringcrawl=debug"),
            "ringcrawl=debug,async_nats=off"
        );
        assert_eq!(
            quiet_libraries("info,async_nats=debug"),
            "info,async_nats=debug"
        );
        // What the subscriber is given parses.
        tracing_subscriber::EnvFilter::try_new(quiet_libraries("info")).unwrap();
    }

    #[test]
    fn ringcrawl_log_is_quieted_like_the_default_unless_it_names_the_client() {
        assert_eq!(log_filter(None, "warn"), "warn,async_nats=off");
        assert_eq!(log_filter(Some("info"), "warn"), "info,async_nats=off");
        assert_eq!(
            log_filter(Some("info,async_nats=debug"), "warn"),
            "info,async_nats=debug"
        );
        // A filter that does not parse falls back to the default, as before.
        assert_eq!(log_filter(Some("=[bad"), "warn"), "warn,async_nats=off");
    }

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
    fn fetch_help_states_the_interrupt_grace() {
        let secs = format!("{} s", INTERRUPT_GRACE.as_secs());
        assert!(crate::cli::FETCH_AFTER_HELP.contains(&secs));
    }

    #[test]
    fn several_problems_are_several_lines() {
        let e = anyhow::anyhow!("bad value for --a: x\nbad value for --b: y");
        assert_eq!(error_lines(&e).len(), 2);
    }

    #[test]
    fn journald_lines_carry_the_priority_and_nothing_journald_adds() {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .event_format(SdPriority::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(path = "/x", "cannot write");
            tracing::warn!("paused");
            tracing::info!("ready");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, p) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>"]) {
            assert!(line.starts_with(p), "{line}");
            assert!(!line.contains('\x1b'), "no colours: {line}");
            assert!(!line.contains("ERROR") && !line.contains("WARN"), "{line}");
            assert!(
                !line[3..].starts_with(char::is_numeric),
                "no timestamp: {line}"
            );
        }
        assert_eq!(
            lines[0],
            "<3>ringcrawl::app::tests: cannot write path=\"/x\""
        );
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
