//! The command line (clap derive): the commands and their flags. Flags that shape fetching
//! become a [`RawFetchOptions`] layer (each value tagged with its flag's name) for the one
//! validation in `options`; `load`'s flags become [`LoadOptions`] the same way.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::http::Method;
use crate::load::{LoadOptions, Stop, MAX_BODY_BYTES};
use crate::options::{Given, Name, OptionError, OptionErrors, RawFetchOptions, MAX_TIMEOUT_SECS};
use crate::record::Format;

#[derive(Debug, Parser)]
#[command(
    name = "ringcrawl",
    version,
    about = "Fetch the HTML titles of huge URL lists over io_uring"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--resolver`'s help.
const RESOLVER_HELP: &str = "DNS server to query instead of /etc/resolv.conf (and /etc/hosts): \
IP, IP:PORT or [IPv6]:PORT [default port: 53]";

/// `fetch --help`'s closing paragraph.
pub(crate) const FETCH_AFTER_HELP: &str =
    "Ctrl-C (SIGINT) or SIGTERM stops reading URLs and lets the \
fetches in flight finish (for 10 s at most) with their records; then the summary, and exit \
status 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once. A list run with \
-i LIST -o OUT continues with the same command plus --resume.";

/// `load --help`'s closing paragraph.
pub(crate) const LOAD_AFTER_HELP: &str = "Prints a banner before the run and the report after \
it: requests/s, latency mean, stdev, max, percentiles and histogram, status codes, errors by \
class (connect, read, write, timeout; status: responses of 400 and above, still completed \
requests) and by kind, and the requests abandoned when -d ended the run. Exit status 0 when \
at least one request got a response, whatever its status; 1 with one line saying why when \
none did (connection refused, DNS failure, every request timed out...); 2 for a usage error.";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Fetch URLs (arguments, -i FILE, or -i - for stdin) and write one record per URL
    /// (JSON Lines, or CSV with --format csv).
    #[command(after_help = FETCH_AFTER_HELP)]
    Fetch(Box<FetchArgs>),
    /// Run the daemon: crawl list files dropped into the spool, journal every line once.
    Run(RunArgs),
    /// Queue URL list files (or - for stdin) into the daemon's spool, or with --nats into a
    /// cluster's URL stream.
    Submit(SubmitArgs),
    /// Append a cluster's records to a JSON Lines file, one line per submitted line.
    Collect(CollectCliArgs),
    /// Load-test one URL with keep-alive connections and report requests/s and latency.
    #[command(after_help = LOAD_AFTER_HELP)]
    Load(Box<LoadArgs>),
    /// Print a shell completion script (bash, zsh or fish) to standard output.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff, every command in one page) to standard output.
    #[command(after_help = MAN_AFTER_HELP)]
    Man,
}

/// `completions --help`'s closing paragraph.
const COMPLETIONS_AFTER_HELP: &str = "Install for every user, or for one shell session:
  ringcrawl completions bash > /usr/share/bash-completion/completions/ringcrawl
  ringcrawl completions zsh > /usr/local/share/zsh/site-functions/_ringcrawl
  ringcrawl completions fish > /usr/share/fish/vendor_completions.d/ringcrawl.fish
  source <(ringcrawl completions bash)";

/// `man --help`'s closing paragraph.
const MAN_AFTER_HELP: &str = "Read it, or install it:
  ringcrawl man | man -l -
  ringcrawl man > /usr/local/share/man/man1/ringcrawl.1";

/// `ringcrawl completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// The shells `ringcrawl completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `ringcrawl run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file [default: /etc/ringcrawl/ringcrawl.toml, if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Spool directory (overrides the config file).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Journal file (overrides the config file).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Join a NATS JetStream cluster: its server URLs, comma-separated (overrides the
    /// servers of the config's cluster table, or joins with that table's defaults).
    #[arg(long, value_name = "URL[,URL...]")]
    pub nats: Option<String>,
    /// Validate the configuration, report every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// `ringcrawl submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// Spool directory [default: the one in the configuration].
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Configuration file to take the spool directory (or the cluster table) from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Wait until each list is finished and print its records (from SPOOL/out/) on standard
    /// output; the "queued" lines go to standard error then. Exits 1 if a list went to bad/.
    #[arg(long)]
    pub wait: bool,
    /// Queue into the NATS JetStream cluster at these server URLs (comma-separated) instead
    /// of a spool.
    #[arg(long, value_name = "URL[,URL...]", conflicts_with_all = ["spool", "wait"])]
    pub nats: Option<String>,
    /// List files to queue ("-" = standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `ringcrawl collect`.
#[derive(Debug, Args)]
pub(crate) struct CollectCliArgs {
    /// NATS server URLs, comma-separated (overrides the config's cluster servers).
    #[arg(long, value_name = "URL[,URL...]")]
    pub nats: Option<String>,
    /// Configuration file to take the cluster table from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The JSON Lines file records are appended to (created if missing).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Keep collecting new records instead of exiting once caught up.
    #[arg(long, conflicts_with = "wait")]
    pub follow: bool,
    /// Exit only once the crawl is over: no line left queued in the cluster and every record
    /// collected (nodes must be running).
    #[arg(long)]
    pub wait: bool,
    /// Durable consumer name [default: the output file's own, from its absolute path]
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
}

/// `ringcrawl load`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("stop").args(["requests", "duration"])))]
pub(crate) struct LoadArgs {
    /// The URL to request (http or https).
    pub url: OsString,
    /// Connections kept open [default: 100].
    #[arg(short = 'c', long, value_name = "N", allow_negative_numbers = true)]
    pub connections: Option<i64>,
    /// Stop after N requests.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Stop after S seconds, a hard limit: requests still in flight then are abandoned, not
    /// waited for, and counted apart [default: 10 when -n is not given].
    #[arg(short = 'd', long, value_name = "S", allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Request method: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or any other token
    /// (case-sensitive) [default: GET].
    #[arg(short = 'm', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// Request body, sent with Content-Length on every request (POST, PUT and PATCH without
    /// a body send Content-Length: 0).
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<OsString>,
    /// Request body from FILE, read once at start (at most 16 MiB).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Deadline per request in seconds, connect included; a request past it is a timeout
    /// error [default: 30].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    /// Worker threads [default (or 0): number of cores; half of them when the target is
    /// this machine (a loopback address), so the server under test keeps the other half].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
    /// Open loop at this many requests/s overall, latency corrected for coordinated omission.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Connect timeout in seconds [default: 10].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub connect_timeout: Option<f64>,
    /// Extra trusted CA certificates (PEM) for https.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// DANGEROUS: accept any TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// DNS server to query instead of /etc/resolv.conf (see `RESOLVER_HELP`).
    #[arg(
        long,
        value_name = "IP[:PORT]",
        value_parser = crate::options::parse_resolver,
        help = RESOLVER_HELP
    )]
    pub resolver: Option<SocketAddr>,
    /// User-Agent header [default: ringcrawl/VERSION]; a -H User-Agent wins over it.
    #[arg(long, value_name = "S")]
    pub user_agent: Option<String>,
    /// Extra request header 'Name: value', repeatable; sent in the order given after
    /// ringcrawl's User-Agent, Accept and Accept-Encoding, and replacing the one it names (an
    /// empty value removes it, as with curl: -H 'Accept-Encoding:'). Host, Content-Length,
    /// Transfer-Encoding, Trailer, Connection, Keep-Alive, Proxy-Connection, TE and Upgrade
    /// are refused (ringcrawl sets the host from the URL and owns framing and keep-alive), and
    /// so is Proxy-Authorization (give proxy credentials in the proxy URL).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Source addresses for the connections, comma-separated, used in turn (more source
    /// ports than one address has).
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
}

/// Connections of a load test without -c.
pub(crate) const DEFAULT_LOAD_CONNECTIONS: i64 = 100;
/// Length of a load test without -n or -d.
pub(crate) const DEFAULT_LOAD_SECS: f64 = 10.0;

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Jsonl, Format::Csv]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// A flag's value with its name.
fn flag<T>(name: &'static str, value: Option<T>) -> Option<Given<T>> {
    value.map(|value| Given {
        value,
        name: Name::Flag(name),
    })
}

/// A repeatable flag's values with its name; `None` when it was not given.
fn list<T: Clone>(name: &'static str, values: &[T]) -> Option<Given<Vec<T>>> {
    flag(name, (!values.is_empty()).then(|| values.to_vec()))
}

/// `Some(true)` when a switch was given (a switch cannot turn a file's `true` off).
fn switch(name: &'static str, on: bool) -> Option<Given<bool>> {
    flag(name, on.then_some(true))
}

impl LoadArgs {
    /// Validate into [`LoadOptions`]: the shared options (`-c` is their concurrency) through
    /// the one validation, the load-only ones here; every problem reported.
    pub(crate) fn options(&self) -> Result<LoadOptions, OptionErrors> {
        let raw = RawFetchOptions {
            concurrency: flag(
                "--connections",
                Some(self.connections.unwrap_or(DEFAULT_LOAD_CONNECTIONS)),
            ),
            threads: flag("--threads", self.threads),
            timeout: flag("--timeout", self.timeout),
            connect_timeout: flag("--connect-timeout", self.connect_timeout),
            ca_file: flag("--ca-file", self.ca_file.clone()),
            insecure: switch("--insecure", self.insecure),
            resolver: flag("--resolver", self.resolver),
            user_agent: flag("--user-agent", self.user_agent.clone()),
            headers: list("--header", &self.headers),
            bind: list("--bind", &self.bind),
            ..RawFetchOptions::default()
        };
        let mut errors = Vec::new();
        let mut bad = |name, message: String| {
            errors.push(OptionError {
                name: Name::Flag(name),
                message,
            })
        };
        let url = crate::intake::parse_arg(&self.url);
        if let Err(why) = &url {
            bad("URL", format!("{:?}: {why}", self.url));
        }
        let stop = match (self.requests, self.duration) {
            (Some(0), _) => {
                bad("--requests", "0 is out of range 1..".into());
                None
            }
            (Some(n), _) => Some(Stop::Requests(n)),
            (None, d) => {
                let d = d.unwrap_or(DEFAULT_LOAD_SECS);
                if d.is_finite() && d > 0.0 && d <= MAX_TIMEOUT_SECS {
                    Some(Stop::Duration(Duration::from_secs_f64(d)))
                } else {
                    bad(
                        "--duration",
                        format!("{d} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]"),
                    );
                    None
                }
            }
        };
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bad(
                    "--rate",
                    format!("{r} is not a number of requests/s above 0"),
                );
            }
        }
        let method = match Method::parse(self.method.as_deref().unwrap_or("GET")) {
            Ok(m) => Some(m),
            Err(e) => {
                bad("--method", e.to_string());
                None
            }
        };
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Ok(Some(b.clone().into_vec())),
            (None, Some(path)) => read_body(path).map(Some),
            (None, None) => Ok(None),
        };
        let body = match body {
            Ok(Some(b)) if b.len() as u64 > MAX_BODY_BYTES => {
                let name = if self.body.is_some() {
                    "--body"
                } else {
                    "--body-file"
                };
                bad(
                    name,
                    format!("{} bytes is more than {MAX_BODY_BYTES}", b.len()),
                );
                None
            }
            Ok(b) => Some(b),
            Err(why) => {
                bad("--body-file", why);
                None
            }
        };
        let fetch = raw.validate().map_err(|e| errors.extend(e.0));
        match (url, stop, method, body, fetch) {
            (Ok(url), Some(stop), Some(method), Some(body), Ok(fetch)) if errors.is_empty() => {
                Ok(LoadOptions {
                    url,
                    threads: self.threads.filter(|&t| t > 0).map(|_| fetch.threads),
                    stop,
                    rate: self.rate,
                    method,
                    body,
                    fetch,
                })
            }
            _ => Err(OptionErrors(errors)),
        }
    }
}

/// The contents of a `--body-file`, at most [`MAX_BODY_BYTES`] of them read (more is an
/// error the caller reports); a one-line reason when it cannot be read.
fn read_body(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let why = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(why)?;
    let mut body = Vec::new();
    file.take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(why)?;
    Ok(body)
}

/// `ringcrawl fetch`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// URLs to fetch (in addition to --input). A bare host name (example.com,
    /// example.com:8080/path) is fetched over http, as if the line started with "http://".
    pub urls: Vec<OsString>,
    /// Read URLs from FILE, one per line ("-" = standard input); bare host names as for
    /// arguments.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write records to FILE instead of standard output ("-" = standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Record format: jsonl (one JSON object per line) or csv (a header row, then one row
    /// per record: the JSON fields in order, error flattened into error_kind,
    /// error_message, error_hop).
    #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
    pub format: Format,
    /// Continue an interrupted or killed `-i LIST -o OUT` run: skip the lines of LIST that
    /// OUT has a record for (matched by their "line" field; a torn last line of OUT is cut
    /// off first) and append the records of the others to OUT.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no end-of-run summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Take fetch options from the fetch table of this TOML config file (flags still win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchFlags,
}

/// Options that shape fetching (`fetch`; `run` takes them from its config file).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct FetchFlags {
    /// Connections in flight, all threads together [default: 256].
    #[arg(short = 'c', long, value_name = "N", allow_negative_numbers = true)]
    pub concurrency: Option<i64>,
    /// Connections in flight per host [default: 6, or --concurrency if less].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub per_host: Option<i64>,
    /// Worker threads, each one io_uring runtime [default (or 0): number of cores].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<i64>,
    /// Deadline per URL in seconds, redirects and both --follow hops included [default: 30].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    /// Connect timeout per address in seconds [default: 10, or --timeout if less].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub connect_timeout: Option<f64>,
    /// Longest wait for the next byte from a server, in seconds [default: 15].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub read_timeout: Option<f64>,
    /// Redirects followed per page at most [default: 10].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_redirects: Option<i64>,
    /// Body bytes read per page at most [default: 4194304].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub max_body: Option<i64>,
    /// DNS server to query instead of /etc/resolv.conf (see `RESOLVER_HELP`).
    #[arg(
        long,
        value_name = "IP[:PORT]",
        value_parser = crate::options::parse_resolver,
        help = RESOLVER_HELP
    )]
    pub resolver: Option<SocketAddr>,
    /// Extra trusted CA certificates (PEM) for https.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// DANGEROUS: accept any TLS certificate. Records fetched this way carry
    /// "tls_verified": false.
    #[arg(long)]
    pub insecure: bool,
    /// Two-hop mode: follow the first link matching this CSS selector (e.g. 'h3 a') and
    /// report the linked page's title.
    #[arg(long, value_name = "CSS")]
    pub follow: Option<String>,
    /// User-Agent header [default: ringcrawl/VERSION]; a -H User-Agent wins over it.
    #[arg(long, value_name = "S")]
    pub user_agent: Option<String>,
    /// Extra request header 'Name: value', repeatable; sent in the order given after
    /// ringcrawl's User-Agent, Accept and Accept-Encoding, and replacing the one it names (an
    /// empty value removes it, as with curl: -H 'Accept-Encoding:'). Host, Content-Length,
    /// Transfer-Encoding, Trailer, Connection, Keep-Alive, Proxy-Connection, TE and Upgrade
    /// are refused (ringcrawl sets the host from the URL and owns framing and keep-alive), and
    /// so is Proxy-Authorization (give proxy credentials in the proxy URL).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Source addresses for outbound connections, comma-separated.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
    /// Obey robots.txt: fetch it once per origin and skip disallowed URLs (error kind
    /// "robots"); its Crawl-delay becomes the host's least interval [default: off for
    /// fetch, on for the service].
    #[arg(long)]
    pub robots: bool,
    /// Attempts after a transient failure (connect timeout, reset, timeout, DNS timeout or
    /// SERVFAIL, HTTP 429/502/503/504, a connection closed before the response head), with
    /// exponential backoff and full jitter; Retry-After is honoured [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub retries: Option<i64>,
    /// Least time between two request starts on one host, in milliseconds [default: 0].
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub host_delay: Option<i64>,
    /// Connections in flight to one IP address, all host names together [default: no
    /// limit].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub per_ip: Option<i64>,
    /// Never connect to these addresses (error kind "denied"): CIDRs, addresses, or the
    /// sets loopback, private, link-local, cgnat, multicast, unspecified, all; comma-
    /// separated, repeatable. Checked on every address: resolved names, redirects,
    /// --follow hops, robots.txt [default: none for fetch; the service denies every set
    /// but all].
    #[arg(long, value_name = "RULE[,RULE...]", value_delimiter = ',')]
    pub deny: Vec<String>,
    /// Exceptions to --deny, same syntax (e.g. --deny all --allow 203.0.113.0/24).
    #[arg(long, value_name = "RULE[,RULE...]", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// HTTP proxy for http and https URLs: http://HOST:PORT, or http://USER:PASSWORD@HOST:PORT
    /// for Basic credentials (the scheme may be left out; the port is 1080 when left out, as
    /// with curl): http URLs are sent to it in absolute form, https URLs get a CONNECT
    /// tunnel. '' = no proxy, whatever the
    /// environment says. Without it: http_proxy for http URLs, https_proxy or HTTPS_PROXY
    /// for https URLs, else all_proxy or ALL_PROXY (upper-case HTTP_PROXY is ignored, as
    /// curl does). Records of proxied URLs have the proxy's address as "ip"; proxy failures
    /// are error kind "proxy".
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Hosts reached without the proxy, comma-separated: names (and the names under them),
    /// IP addresses or CIDRs, each with an optional :PORT; '*' = every host. Overrides
    /// no_proxy/NO_PROXY ('' = no exception).
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,
    /// Records carry "chain": the responses before the one described, e.g. [{"url":
    /// "http://a/", "status": 301}]; with --follow, hop 1's redirects, hop 1's page and
    /// hop 2's redirects.
    #[arg(long)]
    pub chain: bool,
}

impl FetchFlags {
    /// These flags as an options layer (over the defaults or a config file).
    pub(crate) fn raw(&self) -> RawFetchOptions {
        RawFetchOptions {
            concurrency: flag("--concurrency", self.concurrency),
            per_host: flag("--per-host", self.per_host),
            threads: flag("--threads", self.threads),
            timeout: flag("--timeout", self.timeout),
            connect_timeout: flag("--connect-timeout", self.connect_timeout),
            read_timeout: flag("--read-timeout", self.read_timeout),
            max_redirects: flag("--max-redirects", self.max_redirects),
            max_body: flag("--max-body", self.max_body),
            user_agent: flag("--user-agent", self.user_agent.clone()),
            headers: list("--header", &self.headers),
            resolver: flag("--resolver", self.resolver),
            ca_file: flag("--ca-file", self.ca_file.clone()),
            insecure: switch("--insecure", self.insecure),
            follow: flag("--follow", self.follow.clone()),
            bind: flag("--bind", (!self.bind.is_empty()).then(|| self.bind.clone())),
            robots: switch("--robots", self.robots),
            retries: flag("--retries", self.retries),
            host_delay_ms: flag("--host-delay", self.host_delay),
            per_ip: flag("--per-ip", self.per_ip),
            deny: flag("--deny", (!self.deny.is_empty()).then(|| self.deny.clone())),
            allow: flag(
                "--allow",
                (!self.allow.is_empty()).then(|| self.allow.clone()),
            ),
            proxy_http: flag("--proxy", self.proxy.clone()),
            proxy_https: flag("--proxy", self.proxy.clone()),
            no_proxy: flag("--noproxy", self.noproxy.clone()),
            chain: switch("--chain", self.chain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<LoadOptions, OptionErrors> {
        let mut v = vec!["ringcrawl", "load"];
        v.extend_from_slice(args);
        let Command::Load(l) = Cli::try_parse_from(v).unwrap().command else {
            panic!("load")
        };
        l.options()
    }

    fn fetch(args: &[&str]) -> FetchArgs {
        let mut v = vec!["ringcrawl", "fetch"];
        v.extend_from_slice(args);
        let Command::Fetch(f) = Cli::try_parse_from(v).unwrap().command else {
            panic!("fetch")
        };
        *f
    }

    #[test]
    fn load_flags() {
        let o = load(&["http://127.0.0.1:8080/", "-c", "5", "-n", "100"]).unwrap();
        assert_eq!(o.fetch.concurrency, 5);
        assert_eq!(o.stop, Stop::Requests(100));
        assert_eq!(o.threads, None);
        let o = load(&["http://127.0.0.1/", "--threads", "3"]).unwrap();
        assert_eq!(o.fetch.concurrency, 100);
        assert_eq!(o.threads, Some(3));
        assert_eq!(o.stop, Stop::Duration(Duration::from_secs(10)));
        assert!(
            Cli::try_parse_from(["ringcrawl", "load", "http://a/", "-n", "1", "-d", "1"]).is_err()
        );
    }

    #[test]
    fn load_request_and_connection_flags() {
        let o = load(&[
            "http://127.0.0.1/",
            "-m",
            "PATCH",
            "--body",
            "a=1",
            "--timeout",
            "2.5",
            "--bind",
            "127.0.0.2,127.0.0.3",
        ])
        .unwrap();
        assert_eq!(o.method, Method::Patch);
        assert_eq!(o.body.as_deref(), Some(&b"a=1"[..]));
        assert_eq!(o.fetch.timeout, Duration::from_millis(2500));
        assert_eq!(o.fetch.connect_timeout, Duration::from_millis(2500));
        assert_eq!(o.fetch.bind.len(), 2);
        let o = load(&["http://127.0.0.1/"]).unwrap();
        assert_eq!((o.method, o.body), (Method::Get, None));
        assert_eq!(o.fetch.timeout, crate::options::DEFAULT_TIMEOUT);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, b"\x00bytes\xff").unwrap();
        let o = load(&["http://127.0.0.1/", "--body-file", file.to_str().unwrap()]).unwrap();
        assert_eq!(o.body.as_deref(), Some(&b"\x00bytes\xff"[..]));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(MAX_BODY_BYTES + 1)
            .unwrap();
        let errs = load(&["http://127.0.0.1/", "--body-file", file.to_str().unwrap()]).unwrap_err();
        assert_eq!(
            errs.to_string(),
            format!(
                "bad value for --body-file: {} bytes is more than {MAX_BODY_BYTES}",
                MAX_BODY_BYTES + 1
            )
        );
        assert!(Cli::try_parse_from([
            "ringcrawl",
            "load",
            "http://a/",
            "--body",
            "x",
            "--body-file",
            "f"
        ])
        .is_err());
    }

    #[test]
    fn load_reports_every_bad_value_by_its_flag() {
        let errs = load(&[
            "not a url",
            "-c",
            "0",
            "--rate",
            "0",
            "-d",
            "-1",
            "-m",
            "A B",
            "--timeout",
            "0",
            "--body-file",
            "/nonexistent/body",
        ])
        .unwrap_err();
        let msg = errs.to_string();
        for want in [
            "bad value for URL: \"not a url\": ",
            "bad value for --connections: 0 is out of range",
            "bad value for --rate: 0 is not",
            "bad value for --duration: -1 is not",
            "bad value for --method: \"A B\" is not a method",
            "bad value for --timeout: 0 is not",
            "bad value for --body-file: /nonexistent/body: No such file or directory",
        ] {
            assert!(msg.contains(want), "no {want:?} in {msg}");
        }
        assert_eq!(errs.0.len(), 7, "{msg}");
        assert!(
            load(&["ftp://a/"]).is_err(),
            "one URL validation for all inputs"
        );
    }

    #[test]
    fn header_flags_repeat_in_fetch_and_load() {
        let f = fetch(&["-H", "X-A: 1", "--header", "X-B: 2", "http://a/"]);
        let o = f.fetch.raw().validate().unwrap();
        let names: Vec<&str> = o.headers.iter().map(|h| h.name()).collect();
        assert_eq!(names, ["X-A", "X-B"]);
        let o = load(&["http://127.0.0.1/", "-H", "Accept: */*"]).unwrap();
        assert_eq!(o.fetch.headers[0].value(), "*/*");
        let errs = load(&["http://127.0.0.1/", "-H", "Connection: close"]).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "bad value for --header: Connection cannot be set: ringcrawl manages keep-alive itself"
        );
    }

    #[test]
    fn fetch_flags_become_a_named_layer() {
        let f = fetch(&[
            "-c",
            "10",
            "--timeout",
            "2.5",
            "--bind",
            "127.0.0.2,127.0.0.3",
            "http://a/",
        ]);
        let o = f.fetch.raw().validate().unwrap();
        assert_eq!(o.concurrency, 10);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.connect_timeout, Duration::from_millis(2500));
        assert_eq!(o.bind.len(), 2);
        assert_eq!(f.urls, vec![OsString::from("http://a/")]);
        for (bad, name) in [
            (["--timeout", "0"], "--timeout"),
            (["--timeout", "nan"], "--timeout"),
            (["--timeout", "-1"], "--timeout"),
            (["-c", "0"], "--concurrency"),
            (["--max-body", "-5"], "--max-body"),
            (["--user-agent", ""], "--user-agent"),
        ] {
            let errs = fetch(&bad).fetch.raw().validate().unwrap_err();
            assert_eq!(errs.0[0].name, Name::Flag(name), "{bad:?}");
        }
    }
}
