//! Options for the fetch path, with their defaults as named constants. (The daemon's TOML
//! file, CLI overrides and `--check-config` build on this.)

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONCURRENCY: usize = 256;
pub const DEFAULT_PER_HOST: usize = 6;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
pub const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;
pub const DEFAULT_USER_AGENT: &str = concat!("ringcrawl/", env!("CARGO_PKG_VERSION"));
/// Longest URL accepted (bytes); longer lines are `invalid_url`.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Everything that shapes how URLs are fetched; shared by `fetch`, `run` and `load`.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Connections in flight, all workers together.
    pub concurrency: usize,
    /// Connections in flight per host.
    pub per_host: usize,
    /// Worker threads (each one tokio-uring runtime).
    pub threads: usize,
    /// Whole-URL deadline, redirects and both hops included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest wait for the next byte from a server.
    pub read_timeout: Duration,
    pub max_redirects: u32,
    /// Decoded body bytes read at most per page.
    pub max_body: u64,
    pub user_agent: String,
    /// DNS server to use instead of /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
    /// Extra trust anchors (PEM).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (records get `tls_verified: false`).
    pub insecure: bool,
    /// Two-hop mode: follow the first link matching this CSS selector.
    pub follow: Option<String>,
    /// Source addresses for outbound connections.
    pub bind: Vec<IpAddr>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: DEFAULT_CONCURRENCY,
            per_host: DEFAULT_PER_HOST,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_body: DEFAULT_MAX_BODY,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            resolver: None,
            ca_file: None,
            insecure: false,
            follow: None,
            bind: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon configuration: TOML file + CLI overrides -> one validated `Config`.
// ---------------------------------------------------------------------------------------

/// Where `ringcrawl run` looks for its configuration when `--config` is not given (a missing
/// file there means "all defaults").
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ringcrawl/ringcrawl.toml";
pub const DEFAULT_SPOOL: &str = "/var/spool/ringcrawl";
pub const DEFAULT_JOURNAL: &str = "/var/lib/ringcrawl/journal.jsonl";
pub const DEFAULT_DONE_RETENTION_DAYS: u64 = 7;
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_FILES: usize = 4;
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(20);
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Upper bounds that catch typos (a timeout of a year is a mistake, not a choice).
pub const MAX_TIMEOUT_SECS: f64 = 24.0 * 3600.0;
pub const MAX_CONCURRENCY: usize = 1_000_000;
pub const MAX_THREADS: usize = 1024;
pub const MAX_FILES_LIMIT: usize = 1024;
pub const MAX_FSYNC_BATCH_MS: u64 = 60_000;
const SECS_PER_DAY: u64 = 24 * 3600;
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Everything `ringcrawl run` needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The spool root (with `tmp new cur done bad` under it).
    pub spool: PathBuf,
    /// The JSON Lines journal file.
    pub journal: PathBuf,
    pub fsync: crate::journal::FsyncPolicy,
    /// `done/` files older than this are deleted; `None` keeps them forever.
    pub done_retention: Option<Duration>,
    /// Period of the full `new/` rescan (inotify does the fast path).
    pub rescan: Duration,
    /// List files read at the same time.
    pub max_files: usize,
    /// SIGTERM: how long in-flight fetches may run before they are abandoned.
    pub drain_grace: Duration,
    /// `error | warn | info | debug | trace`, or a tracing `EnvFilter` directive.
    pub log_level: String,
    /// The file the configuration came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// The command-line overrides applied (kept so a reload applies them again).
    pub overrides: Overrides,
    pub fetch: FetchOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spool: PathBuf::from(DEFAULT_SPOOL),
            journal: PathBuf::from(DEFAULT_JOURNAL),
            fsync: crate::journal::FsyncPolicy::default(),
            done_retention: Some(Duration::from_secs(
                DEFAULT_DONE_RETENTION_DAYS * SECS_PER_DAY,
            )),
            rescan: DEFAULT_RESCAN,
            max_files: DEFAULT_MAX_FILES,
            drain_grace: DEFAULT_DRAIN_GRACE,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            source: None,
            overrides: Overrides::default(),
            fetch: FetchOptions::default(),
        }
    }
}

/// Command-line values that win over the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub spool: Option<PathBuf>,
    pub journal: Option<PathBuf>,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config syntax error: {0}")]
    Syntax(String),
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    #[error("bad value for `{key}`: {message}")]
    BadValue { key: String, message: String },
    #[error("{what} {path} is not usable: {message}")]
    Unusable {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// Every problem found, so `--check-config` can report them in one go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads typed values out of one TOML table, collecting every error.
struct Section<'a> {
    name: &'static str,
    table: &'a toml::Table,
    seen: Vec<&'a str>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Section<'a> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.name)
    }

    fn bad(&mut self, k: &str, message: impl Into<String>) {
        let key = self.key(k);
        self.errors.push(ConfigError::BadValue {
            key,
            message: message.into(),
        });
    }

    fn get(&mut self, k: &'a str) -> Option<&'a toml::Value> {
        self.seen.push(k);
        self.table.get(k)
    }

    fn string(&mut self, k: &'a str) -> Option<String> {
        match self.get(k)? {
            toml::Value::String(s) => Some(s.clone()),
            v => {
                self.bad(k, format!("expected a string, got {}", v.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, k: &'a str) -> Option<bool> {
        match self.get(k)? {
            toml::Value::Boolean(b) => Some(*b),
            v => {
                self.bad(k, format!("expected true or false, got {}", v.type_str()));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn int(&mut self, k: &'a str, min: u64, max: u64) -> Option<u64> {
        match self.get(k)? {
            toml::Value::Integer(i) if *i >= 0 && (min..=max).contains(&(*i as u64)) => {
                Some(*i as u64)
            }
            toml::Value::Integer(i) => {
                self.bad(k, format!("{i} is out of range {min}..={max}"));
                None
            }
            v => {
                self.bad(k, format!("expected an integer, got {}", v.type_str()));
                None
            }
        }
    }

    /// Seconds (integer or float) in `(0, MAX_TIMEOUT_SECS]`.
    fn secs(&mut self, k: &'a str) -> Option<Duration> {
        let v = match self.get(k)? {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            v => {
                self.bad(
                    k,
                    format!("expected a number of seconds, got {}", v.type_str()),
                );
                return None;
            }
        };
        if v.is_finite() && v > 0.0 && v <= MAX_TIMEOUT_SECS {
            Some(Duration::from_secs_f64(v))
        } else {
            self.bad(
                k,
                format!("{v} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]"),
            );
            None
        }
    }

    fn finish(self) {
        for k in self.table.keys() {
            if !self.seen.contains(&k.as_str()) {
                self.errors
                    .push(ConfigError::UnknownKey(format!("{}.{k}", self.name)));
            }
        }
    }
}

impl Config {
    /// Read `path` (or [`DEFAULT_CONFIG_PATH`] when `None`, where a missing file means
    /// defaults), apply `overrides`, validate values, and check that the spool and journal
    /// directories are usable. All problems are returned together.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let (text, source) = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (t, Some(p.to_path_buf())),
                Err(e) => {
                    return Err(ConfigErrors(vec![ConfigError::Read {
                        path: p.to_path_buf(),
                        message: e.to_string(),
                    }]))
                }
            },
            None => match std::fs::read_to_string(DEFAULT_CONFIG_PATH) {
                Ok(t) => (t, Some(PathBuf::from(DEFAULT_CONFIG_PATH))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
                Err(e) => {
                    return Err(ConfigErrors(vec![ConfigError::Read {
                        path: PathBuf::from(DEFAULT_CONFIG_PATH),
                        message: e.to_string(),
                    }]))
                }
            },
        };
        let mut errors = Vec::new();
        let cfg = Config::parse_into(&text, overrides, &mut errors);
        if let Some(cfg) = &cfg {
            errors.extend(cfg.check_paths());
        }
        match cfg {
            Some(mut cfg) if errors.is_empty() => {
                cfg.source = source;
                Ok(cfg)
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Parse and validate TOML text plus overrides, without touching the filesystem.
    pub fn parse(text: &str, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        match Config::parse_into(text, overrides, &mut errors) {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigErrors(errors)),
        }
    }

    fn parse_into(
        text: &str,
        overrides: &Overrides,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Config> {
        let root: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string().lines().next().unwrap_or_default().to_string();
                errors.push(ConfigError::Syntax(msg));
                return None;
            }
        };
        let mut cfg = Config::default();
        let empty = toml::Table::new();
        for (k, v) in &root {
            match (k.as_str(), v) {
                ("daemon" | "fetch", toml::Value::Table(_)) => {}
                ("daemon" | "fetch", _) => errors.push(ConfigError::BadValue {
                    key: k.clone(),
                    message: "expected a table".into(),
                }),
                _ => errors.push(ConfigError::UnknownKey(k.clone())),
            }
        }
        let table = |name: &str| {
            root.get(name)
                .and_then(toml::Value::as_table)
                .unwrap_or(&empty)
        };

        let mut d = Section {
            name: "daemon",
            table: table("daemon"),
            seen: Vec::new(),
            errors,
        };
        if let Some(s) = d.string("spool") {
            cfg.spool = PathBuf::from(s);
        }
        if let Some(s) = d.string("journal") {
            cfg.journal = PathBuf::from(s);
        }
        let batch_ms = d.int("fsync_batch_ms", 1, MAX_FSYNC_BATCH_MS);
        if let Some(s) = d.string("fsync") {
            use crate::journal::FsyncPolicy;
            match s.as_str() {
                "always" => cfg.fsync = FsyncPolicy::Always,
                "never" => cfg.fsync = FsyncPolicy::Never,
                "batch" => {}
                other => d.bad(
                    "fsync",
                    format!("`{other}` is not one of always, batch, never"),
                ),
            }
        }
        if let Some(ms) = batch_ms {
            if cfg.fsync == crate::journal::FsyncPolicy::default() {
                cfg.fsync = crate::journal::FsyncPolicy::Batch(Duration::from_millis(ms));
            }
        }
        if let Some(days) = d.int("done_retention_days", 0, 100 * 365) {
            cfg.done_retention = (days > 0).then(|| Duration::from_secs(days * SECS_PER_DAY));
        }
        if let Some(v) = d.secs("rescan_secs") {
            cfg.rescan = v;
        }
        if let Some(v) = d.int("max_files", 1, MAX_FILES_LIMIT as u64) {
            cfg.max_files = v as usize;
        }
        if let Some(v) = d.secs("drain_grace_secs") {
            cfg.drain_grace = v;
        }
        if let Some(s) = d.string("log_level") {
            if LOG_LEVELS.contains(&s.as_str()) || s.contains('=') {
                cfg.log_level = s;
            } else {
                d.bad(
                    "log_level",
                    format!("`{s}` is not one of {}", LOG_LEVELS.join(", ")),
                );
            }
        }
        d.finish();

        let mut f = Section {
            name: "fetch",
            table: table("fetch"),
            seen: Vec::new(),
            errors,
        };
        let o = &mut cfg.fetch;
        if let Some(v) = f.int("concurrency", 1, MAX_CONCURRENCY as u64) {
            o.concurrency = v as usize;
        }
        if let Some(v) = f.int("per_host", 1, MAX_CONCURRENCY as u64) {
            o.per_host = v as usize;
        }
        if let Some(v) = f.int("threads", 0, MAX_THREADS as u64) {
            if v > 0 {
                o.threads = v as usize;
            }
        }
        if let Some(v) = f.secs("timeout_secs") {
            o.timeout = v;
        }
        if let Some(v) = f.secs("connect_timeout_secs") {
            o.connect_timeout = v;
        }
        if let Some(v) = f.secs("read_timeout_secs") {
            o.read_timeout = v;
        }
        if let Some(v) = f.int("max_redirects", 0, 100) {
            o.max_redirects = v as u32;
        }
        if let Some(v) = f.int("max_body", 1, u64::from(u32::MAX)) {
            o.max_body = v;
        }
        if let Some(s) = f.string("user_agent") {
            if s.is_empty() || s.chars().any(char::is_control) {
                f.bad("user_agent", "must be non-empty printable text");
            } else {
                o.user_agent = s;
            }
        }
        if let Some(s) = f.string("resolver") {
            if !s.is_empty() {
                match s.parse::<SocketAddr>() {
                    Ok(a) => o.resolver = Some(a),
                    Err(_) => f.bad("resolver", format!("`{s}` is not IP:PORT")),
                }
            }
        }
        if let Some(s) = f.string("ca_file") {
            if !s.is_empty() {
                o.ca_file = Some(PathBuf::from(s));
            }
        }
        if let Some(b) = f.boolean("insecure") {
            o.insecure = b;
        }
        if let Some(s) = f.string("follow") {
            if !s.is_empty() {
                o.follow = Some(s);
            }
        }
        if let Some(v) = f.get("bind") {
            match v.as_array() {
                Some(items) => {
                    let mut addrs = Vec::new();
                    for it in items {
                        match it.as_str().map(str::parse::<IpAddr>) {
                            Some(Ok(a)) => addrs.push(a),
                            _ => f.bad("bind", format!("{it} is not an IP address")),
                        }
                    }
                    o.bind = addrs;
                }
                None => f.bad("bind", "expected an array of IP addresses"),
            }
        }
        f.finish();

        if o.per_host > o.concurrency {
            errors.push(ConfigError::BadValue {
                key: "fetch.per_host".into(),
                message: format!(
                    "{} is larger than fetch.concurrency {}",
                    o.per_host, o.concurrency
                ),
            });
        }
        if o.connect_timeout > o.timeout {
            errors.push(ConfigError::BadValue {
                key: "fetch.connect_timeout_secs".into(),
                message: "is longer than fetch.timeout_secs".into(),
            });
        }
        cfg.overrides = overrides.clone();
        if let Some(p) = &overrides.spool {
            cfg.spool = p.clone();
        }
        if let Some(p) = &overrides.journal {
            cfg.journal = p.clone();
        }
        for (key, p) in [
            ("daemon.spool", &cfg.spool),
            ("daemon.journal", &cfg.journal),
        ] {
            if p.as_os_str().is_empty() {
                errors.push(ConfigError::BadValue {
                    key: key.into(),
                    message: "is empty".into(),
                });
            }
        }
        Some(cfg)
    }

    /// Filesystem checks: the spool root is a writable directory (or can be created), the
    /// journal's directory is writable and the journal, if present, is a writable file, and
    /// a configured CA file is readable.
    pub fn check_paths(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Err(message) = check_writable_dir(&self.spool) {
            errors.push(ConfigError::Unusable {
                what: "spool directory",
                path: self.spool.clone(),
                message,
            });
        }
        let journal_dir = match self.journal.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(message) = check_writable_dir(&journal_dir) {
            errors.push(ConfigError::Unusable {
                what: "journal directory",
                path: journal_dir,
                message,
            });
        } else if self.journal.exists() {
            let ok = std::fs::OpenOptions::new().append(true).open(&self.journal);
            if let Err(e) = ok {
                errors.push(ConfigError::Unusable {
                    what: "journal",
                    path: self.journal.clone(),
                    message: e.to_string(),
                });
            }
        }
        if let Some(ca) = &self.fetch.ca_file {
            if let Err(e) = std::fs::File::open(ca) {
                errors.push(ConfigError::Unusable {
                    what: "CA file",
                    path: ca.clone(),
                    message: e.to_string(),
                });
            }
        }
        errors
    }

    /// Human-readable differences between two configurations, as `key: old -> new`.
    pub fn diff(&self, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |k: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{k}: {a} -> {b}"));
            }
        };
        cmp(
            "daemon.spool",
            self.spool.display().to_string(),
            new.spool.display().to_string(),
        );
        cmp(
            "daemon.journal",
            self.journal.display().to_string(),
            new.journal.display().to_string(),
        );
        cmp(
            "daemon.fsync",
            self.fsync.to_string(),
            new.fsync.to_string(),
        );
        cmp(
            "daemon.done_retention",
            format!("{:?}", self.done_retention),
            format!("{:?}", new.done_retention),
        );
        cmp(
            "daemon.rescan",
            format!("{:?}", self.rescan),
            format!("{:?}", new.rescan),
        );
        cmp(
            "daemon.max_files",
            self.max_files.to_string(),
            new.max_files.to_string(),
        );
        cmp(
            "daemon.drain_grace",
            format!("{:?}", self.drain_grace),
            format!("{:?}", new.drain_grace),
        );
        cmp(
            "daemon.log_level",
            self.log_level.clone(),
            new.log_level.clone(),
        );
        cmp(
            "fetch",
            format!("{:?}", self.fetch),
            format!("{:?}", new.fetch),
        );
        out
    }

    /// One line describing the effective configuration (logged at start-up).
    pub fn summary_line(&self) -> String {
        let o = &self.fetch;
        format!(
            "config={} spool={} journal={} fsync={} done_retention={} rescan={:?} max_files={} \
             drain_grace={:?} log_level={} concurrency={} per_host={} threads={} timeout={:?} \
             connect_timeout={:?} read_timeout={:?} max_redirects={} max_body={} resolver={} \
             ca_file={} insecure={} follow={} user_agent={:?}",
            self.source
                .as_ref()
                .map_or("(defaults)".to_string(), |p| p.display().to_string()),
            self.spool.display(),
            self.journal.display(),
            self.fsync,
            self.done_retention
                .map_or("forever".to_string(), |d| format!(
                    "{}d",
                    d.as_secs() / SECS_PER_DAY
                )),
            self.rescan,
            self.max_files,
            self.drain_grace,
            self.log_level,
            o.concurrency,
            o.per_host,
            o.threads,
            o.timeout,
            o.connect_timeout,
            o.read_timeout,
            o.max_redirects,
            o.max_body,
            o.resolver.map_or("system".to_string(), |a| a.to_string()),
            o.ca_file
                .as_ref()
                .map_or("-".to_string(), |p| p.display().to_string()),
            o.insecure,
            o.follow.as_deref().unwrap_or("-"),
            o.user_agent,
        )
    }
}

/// `path` is a directory we can create files in, or does not exist yet but its nearest
/// existing ancestor is (the daemon creates it). Probes by creating and removing a file.
fn check_writable_dir(path: &Path) -> Result<(), String> {
    let mut p = path.to_path_buf();
    loop {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
                _ => return Err("does not exist".into()),
            },
            Err(e) => return Err(e.to_string()),
        }
    }
    let probe = p.join(format!(".ringcrawl-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot create files in {}: {e}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::FsyncPolicy;

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("", &Overrides::default()).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn shipped_config_file_parses_to_the_defaults() {
        let text = include_str!("../config/ringcrawl.toml");
        let c = Config::parse(text, &Overrides::default()).unwrap();
        let mut d = Config::default();
        // The shipped file says `threads = 0` (= cores), which is the default too.
        d.fetch.threads = c.fetch.threads;
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn values_and_overrides_apply() {
        let text = r#"
            [daemon]
            spool = "/srv/spool"
            journal = "/srv/j.jsonl"
            fsync = "batch"
            fsync_batch_ms = 50
            done_retention_days = 0
            max_files = 9
            drain_grace_secs = 2.5
            [fetch]
            concurrency = 100
            per_host = 2
            threads = 3
            timeout_secs = 5
            connect_timeout_secs = 1.5
            resolver = "127.0.0.1:5353"
            bind = ["127.0.0.2"]
        "#;
        let ov = Overrides {
            journal: Some("/tmp/x.jsonl".into()),
            spool: None,
        };
        let c = Config::parse(text, &ov).unwrap();
        assert_eq!(c.spool, PathBuf::from("/srv/spool"));
        assert_eq!(c.journal, PathBuf::from("/tmp/x.jsonl"));
        assert_eq!(c.fsync, FsyncPolicy::Batch(Duration::from_millis(50)));
        assert_eq!(c.done_retention, None);
        assert_eq!(c.max_files, 9);
        assert_eq!(c.drain_grace, Duration::from_millis(2500));
        assert_eq!(c.fetch.concurrency, 100);
        assert_eq!(c.fetch.threads, 3);
        assert_eq!(c.fetch.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.fetch.resolver, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(c.fetch.bind, vec!["127.0.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            colour = "blue"
            [daemon]
            fsync = "sometimes"
            max_files = 0
            spoool = "/x"
            [fetch]
            concurrency = "many"
            timeout_secs = -1
            resolver = "localhost"
            bind = ["nope"]
        "#;
        let errs = Config::parse(text, &Overrides::default()).unwrap_err();
        let msg = errs.to_string();
        for want in [
            "unknown key `colour`",
            "unknown key `daemon.spoool`",
            "bad value for `daemon.fsync`",
            "bad value for `daemon.max_files`: 0 is out of range",
            "bad value for `fetch.concurrency`: expected an integer, got string",
            "bad value for `fetch.timeout_secs`",
            "bad value for `fetch.resolver`",
            "bad value for `fetch.bind`",
        ] {
            assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
        }
        assert_eq!(errs.0.len(), 8, "{msg}");
    }

    #[test]
    fn cross_field_checks() {
        let text =
            "[fetch]\nconcurrency = 4\nper_host = 8\ntimeout_secs = 1\nconnect_timeout_secs = 2\n";
        let msg = Config::parse(text, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("fetch.per_host"), "{msg}");
        assert!(msg.contains("fetch.connect_timeout_secs"), "{msg}");
    }

    #[test]
    fn syntax_error_is_one_line() {
        let errs = Config::parse("[daemon\nx=1", &Overrides::default()).unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert!(matches!(errs.0[0], ConfigError::Syntax(_)));
        assert!(!errs.to_string().contains('\n'));
    }

    #[test]
    fn load_checks_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("c.toml");
        let file_not_dir = dir.path().join("plain");
        std::fs::write(&file_not_dir, "").unwrap();
        std::fs::write(
            &cfg_path,
            format!(
                "[daemon]\nspool = \"{}\"\njournal = \"{}/j.jsonl\"\nfsync = \"bogus\"\n",
                file_not_dir.display(),
                file_not_dir.display()
            ),
        )
        .unwrap();
        let errs = Config::load(Some(&cfg_path), &Overrides::default()).unwrap_err();
        let msg = errs.to_string();
        assert!(msg.contains("spool directory"), "{msg}");
        assert!(msg.contains("journal directory"), "{msg}");
        assert!(msg.contains("daemon.fsync"), "{msg}");

        let ok = Overrides {
            spool: Some(dir.path().join("spool/not/yet")),
            journal: Some(dir.path().join("j.jsonl")),
        };
        std::fs::write(&cfg_path, "").unwrap();
        let c = Config::load(Some(&cfg_path), &ok).unwrap();
        assert_eq!(c.source.as_deref(), Some(cfg_path.as_path()));
        assert!(
            !dir.path().join("spool").exists(),
            "checks have no side effects"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let errs = Config::load(
            Some(Path::new("/nonexistent/ringcrawl.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(errs.0[0], ConfigError::Read { .. }));
    }

    #[test]
    fn diff_lists_changes() {
        let a = Config::default();
        let mut b = a.clone();
        b.max_files = 1;
        b.fsync = FsyncPolicy::Always;
        let d = a.diff(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d
            .iter()
            .any(|l| l == "daemon.fsync: batch(200 ms) -> always"));
    }
}
