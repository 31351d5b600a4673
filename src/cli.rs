//! Command-line interface (clap derive): `fetch`, and the option set shared with the daemon
//! and load modes, mapped onto [`FetchOptions`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, FetchOptions};

#[derive(Debug, Parser)]
#[command(
    name = "ringcrawl",
    version,
    about = "Fetch the HTML titles of huge URL lists over io_uring"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch URLs (arguments, -i FILE, or -i - for stdin) and write one JSON line per URL.
    Fetch(FetchArgs),
    /// Run the daemon: crawl list files dropped into the spool, journal every line once.
    Run(RunArgs),
    /// Queue URL list files (or - for stdin) into the daemon's spool.
    Submit(SubmitArgs),
    /// Load-test one URL with keep-alive connections and report requests/s and latency.
    Load(LoadArgs),
}

/// `ringcrawl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/ringcrawl/ringcrawl.toml, if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Spool directory (overrides the config file).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Journal file (overrides the config file).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Validate the configuration, report every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// `ringcrawl submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Spool directory [default: the one in the configuration].
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Configuration file to take the spool directory from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// List files to queue ("-" = standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `ringcrawl load`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("stop").args(["requests", "duration"])))]
pub struct LoadArgs {
    /// The URL to request (http or https).
    pub url: String,
    /// Connections kept open [default: 100].
    #[arg(short = 'c', long, value_name = "N", default_value_t = 100)]
    pub connections: usize,
    /// Stop after N requests.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Stop after S seconds [default: 10 when -n is not given].
    #[arg(short = 'd', long, value_name = "S")]
    pub duration: Option<f64>,
    /// Worker threads [default: number of cores; half of them when the target is this
    /// machine (a loopback address), so the server under test keeps the other half].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Open loop at this many requests/s overall, latency corrected for coordinated omission.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Connect timeout in seconds [default: 10].
    #[arg(long, value_name = "S")]
    pub connect_timeout: Option<f64>,
    /// Extra trusted CA certificates (PEM) for https.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// DANGEROUS: accept any TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// DNS server to query instead of /etc/resolv.conf.
    #[arg(long, value_name = "IP:PORT")]
    pub resolver: Option<SocketAddr>,
    /// User-Agent header [default: ringcrawl/VERSION].
    #[arg(long, value_name = "S")]
    pub user_agent: Option<String>,
}

/// Default length of a load test without -n or -d.
pub const DEFAULT_LOAD_SECS: f64 = 10.0;

impl LoadArgs {
    /// Validate into [`crate::load::LoadOptions`].
    pub fn options(&self) -> Result<crate::load::LoadOptions, FlagError> {
        use crate::load::{LoadOptions, Stop};
        let url = url::Url::parse(&self.url).map_err(|e| FlagError {
            flag: "URL",
            why: format!("{:?}: {e}", self.url),
        })?;
        let stop = match (self.requests, self.duration) {
            (Some(0), _) => {
                return Err(FlagError {
                    flag: "requests",
                    why: "must be at least 1".into(),
                })
            }
            (Some(n), _) => Stop::Requests(n),
            (None, d) => Stop::Duration(seconds("duration", d.unwrap_or(DEFAULT_LOAD_SECS))?),
        };
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(FlagError {
                    flag: "rate",
                    why: format!("{r} (must be > 0)"),
                });
            }
        }
        let defaults = FetchOptions::default();
        Ok(LoadOptions {
            url,
            connections: positive("connections", self.connections)?,
            threads: self.threads.map(|t| positive("threads", t)).transpose()?,
            stop,
            rate: self.rate,
            connect_timeout: match self.connect_timeout {
                Some(v) => seconds("connect-timeout", v)?,
                None => defaults.connect_timeout,
            },
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            resolver: self.resolver,
            user_agent: self.user_agent.clone().unwrap_or(defaults.user_agent),
        })
    }
}

/// `ringcrawl fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// URLs to fetch (in addition to --input).
    pub urls: Vec<String>,
    /// Read URLs from FILE, one per line ("-" = standard input).
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write records to FILE instead of standard output ("-" = standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No progress bar and no end-of-run summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Take fetch options from this TOML file (flags still win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub fetch: FetchFlags,
}

/// Options that shape fetching, shared by `fetch`, `run` and `load`.
#[derive(Debug, Args, Clone, Default)]
pub struct FetchFlags {
    /// Connections in flight, all threads together [default: 256].
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Connections in flight per host [default: 6].
    #[arg(long, value_name = "N")]
    pub per_host: Option<usize>,
    /// Worker threads, each one io_uring runtime [default: number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Deadline per URL in seconds, redirects and both --follow hops included [default: 30].
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
    /// Connect timeout per address in seconds [default: 10].
    #[arg(long, value_name = "S")]
    pub connect_timeout: Option<f64>,
    /// Longest wait for the next byte from a server, in seconds [default: 15].
    #[arg(long, value_name = "S")]
    pub read_timeout: Option<f64>,
    /// Redirects followed per page at most [default: 10].
    #[arg(long, value_name = "N")]
    pub max_redirects: Option<u32>,
    /// Body bytes read per page at most [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_body: Option<u64>,
    /// DNS server to query instead of /etc/resolv.conf.
    #[arg(long, value_name = "IP:PORT")]
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
    /// User-Agent header [default: ringcrawl/VERSION].
    #[arg(long, value_name = "S")]
    pub user_agent: Option<String>,
    /// Source addresses for outbound connections, comma-separated.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
}

/// Why a flag value is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for --{flag}: {why}")]
pub struct FlagError {
    pub flag: &'static str,
    pub why: String,
}

fn seconds(flag: &'static str, v: f64) -> Result<Duration, FlagError> {
    if v.is_finite() && v > 0.0 && v <= config::MAX_TIMEOUT_SECS {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(FlagError {
            flag,
            why: format!(
                "{v} (seconds, more than 0 and at most {})",
                config::MAX_TIMEOUT_SECS
            ),
        })
    }
}

fn positive(flag: &'static str, v: usize) -> Result<usize, FlagError> {
    if v == 0 {
        return Err(FlagError {
            flag,
            why: "must be at least 1".to_string(),
        });
    }
    Ok(v)
}

impl FetchFlags {
    /// Apply these flags over `base` (defaults or a config file).
    pub fn apply(&self, base: &FetchOptions) -> Result<FetchOptions, FlagError> {
        let mut o = base.clone();
        if let Some(v) = self.concurrency {
            o.concurrency = positive("concurrency", v)?;
        }
        if let Some(v) = self.per_host {
            o.per_host = positive("per-host", v)?;
        }
        if let Some(v) = self.threads {
            o.threads = positive("threads", v)?;
        }
        if let Some(v) = self.timeout {
            o.timeout = seconds("timeout", v)?;
        }
        if let Some(v) = self.connect_timeout {
            o.connect_timeout = seconds("connect-timeout", v)?;
        }
        if let Some(v) = self.read_timeout {
            o.read_timeout = seconds("read-timeout", v)?;
        }
        if let Some(v) = self.max_redirects {
            o.max_redirects = v;
        }
        if let Some(v) = self.max_body {
            o.max_body = v;
        }
        if self.resolver.is_some() {
            o.resolver = self.resolver;
        }
        if self.ca_file.is_some() {
            o.ca_file = self.ca_file.clone();
        }
        o.insecure |= self.insecure;
        if self.follow.is_some() {
            o.follow = self.follow.clone();
        }
        if let Some(ua) = &self.user_agent {
            o.user_agent = ua.clone();
        }
        if !self.bind.is_empty() {
            o.bind = self.bind.clone();
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_flags() {
        let parse = |args: &[&str]| {
            let mut v = vec!["ringcrawl", "load"];
            v.extend_from_slice(args);
            let Command::Load(l) = Cli::try_parse_from(v).unwrap().command else {
                panic!("load")
            };
            l.options()
        };
        let o = parse(&["http://127.0.0.1:8080/", "-c", "5", "-n", "100"]).unwrap();
        assert_eq!(o.connections, 5);
        assert_eq!(o.stop, crate::load::Stop::Requests(100));
        let o = parse(&["http://127.0.0.1/"]).unwrap();
        assert_eq!(o.stop, crate::load::Stop::Duration(Duration::from_secs(10)));
        assert!(parse(&["http://127.0.0.1/", "--rate", "0"]).is_err());
        assert!(parse(&["not a url"]).is_err());
        assert!(
            Cli::try_parse_from(["ringcrawl", "load", "http://a/", "-n", "1", "-d", "1"]).is_err()
        );
    }

    #[test]
    fn flags_override_defaults_and_reject_nonsense() {
        let cli = Cli::try_parse_from([
            "ringcrawl",
            "fetch",
            "-c",
            "10",
            "--timeout",
            "2.5",
            "--bind",
            "127.0.0.2,127.0.0.3",
            "http://a/",
        ])
        .unwrap();
        let Command::Fetch(f) = cli.command else {
            panic!("fetch")
        };
        let o = f.fetch.apply(&FetchOptions::default()).unwrap();
        assert_eq!(o.concurrency, 10);
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.bind.len(), 2);
        assert_eq!(f.urls, vec!["http://a/"]);
        for bad in [["--timeout", "0"], ["--timeout", "nan"], ["-c", "0"]] {
            let cli = Cli::try_parse_from(["ringcrawl", "fetch", bad[0], bad[1]]).unwrap();
            let Command::Fetch(f) = cli.command else {
                panic!("fetch")
            };
            assert!(f.fetch.apply(&FetchOptions::default()).is_err(), "{bad:?}");
        }
    }
}
