//! The configuration file (TOML: `ringcrawl run --config FILE`, also `fetch --config FILE`)
//! and the daemon's validated [`Config`].
//!
//! The `[daemon]` table is read and checked here. The `[fetch]` table is read here into a
//! [`RawFetchOptions`] layer (value types and key names only) and checked by `options`, the
//! one validation shared with the command-line flags. A [`Config`] is split by what a SIGHUP
//! may change: the [`Reloadable`] part takes effect at once, the [`RestartOnly`] part is kept
//! until the daemon restarts ([`Config::apply_reload`] says what changed in each).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::FsyncPolicy;
use crate::options::{FetchOptions, Given, Name, OptionError, RawFetchOptions, MAX_TIMEOUT_SECS};

/// Where `ringcrawl run` looks for its configuration when `--config` is not given (a missing
/// file there means "all defaults").
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/ringcrawl/ringcrawl.toml";
pub(crate) const DEFAULT_SPOOL: &str = "/var/spool/ringcrawl";
pub(crate) const DEFAULT_JOURNAL: &str = "/var/lib/ringcrawl/journal.jsonl";
pub(crate) const DEFAULT_DONE_RETENTION_DAYS: u64 = 7;
pub(crate) const DEFAULT_RESCAN: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_FILES: usize = 4;
pub(crate) const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(20);
/// Largest list file read (bytes): 1 GiB, some ten million URLs. A regular file cannot block
/// or spin a reader, but one that grows for ever (its owner may still hold it open) would
/// keep one busy without end.
pub(crate) const DEFAULT_MAX_LIST_BYTES: u64 = 1 << 30;
/// `daemon.max_list_bytes` at most (1 TiB).
pub(crate) const MAX_LIST_BYTES_LIMIT: u64 = 1 << 40;
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
pub(crate) const MAX_FILES_LIMIT: u64 = 1024;
pub(crate) const MAX_FSYNC_BATCH_MS: u64 = 60_000;
pub(crate) const MAX_DONE_RETENTION_DAYS: u64 = 100 * 365;
/// `[cluster]` defaults (see config/ringcrawl.toml and ARCHITECTURE.md, "Cluster").
pub(crate) const DEFAULT_SUBJECT_PREFIX: &str = "ringcrawl";
pub(crate) const DEFAULT_URL_STREAM: &str = "ringcrawl-urls";
pub(crate) const DEFAULT_RECORDS_STREAM: &str = "ringcrawl-records";
pub(crate) const DEFAULT_LEASE_BUCKET: &str = "ringcrawl-leases";
pub(crate) const DEFAULT_NODE_BUCKET: &str = "ringcrawl-nodes";
pub(crate) const DEFAULT_PARTITIONS: u64 = 64;
pub(crate) const MAX_PARTITIONS: u64 = 4096;
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 3600);
pub(crate) const MAX_DUPLICATE_WINDOW_SECS: u64 = 7 * 24 * 3600;
pub(crate) const DEFAULT_RECORDS_MAX_AGE_DAYS: u64 = 7;
pub(crate) const MAX_RECORDS_MAX_AGE_DAYS: u64 = 10 * 365;
/// Shortest lease: a node renews three times per lease.
pub(crate) const MIN_LEASE_SECS: f64 = 1.0;
const SECS_PER_DAY: u64 = 24 * 3600;
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Everything `ringcrawl run` needs, validated, split by what a reload may change.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Config {
    /// Kept from start to exit: a change in the file is logged on SIGHUP, not applied.
    pub restart: RestartOnly,
    /// Applied on SIGHUP.
    pub live: Reloadable,
    /// The file the configuration came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// The command-line overrides applied (kept so a reload applies them again).
    pub overrides: Overrides,
}

/// The part of the configuration that needs a restart to change.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RestartOnly {
    /// The spool root (with `tmp new cur done bad` under it); the daemon holds its lock.
    pub spool: PathBuf,
    /// `error | warn | info | debug | trace`, or a tracing `EnvFilter` directive (the
    /// subscriber is installed once).
    pub log_level: String,
    /// The engine's options (its threads, budget and resolvers are built once).
    pub fetch: FetchOptions,
    /// Where the Prometheus endpoint listens (`GET /metrics`); `None`: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// `[cluster]` (or `run --nats`): this daemon is a node of a NATS JetStream crawl.
    pub cluster: Option<ClusterConfig>,
}

/// The `[cluster]` table: where the NATS servers are, how to authenticate, and the names
/// and timings of the streams and buckets the nodes share (see `cluster`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`, `host:port`).
    pub servers: Vec<String>,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// Extra CA certificates (PEM) to verify the servers' TLS certificates.
    pub tls_ca: Option<PathBuf>,
    /// First subject token: URLs on `PREFIX.urls.N`, records on `PREFIX.records`.
    pub subject_prefix: String,
    pub url_stream: String,
    pub records_stream: String,
    pub lease_bucket: String,
    pub node_bucket: String,
    /// Partitions of a URL stream this configuration creates (an existing stream keeps its own).
    pub partitions: u32,
    /// A partition lease (and a node heartbeat) lives this long unless renewed.
    pub lease: Duration,
    /// A URL message handed out and not acked (nor marked in progress) is redelivered after this.
    pub ack_wait: Duration,
    /// Both streams drop a message whose `Nats-Msg-Id` they stored within this window.
    pub duplicate_window: Duration,
    /// Records older than this leave the records stream; `None` keeps them.
    pub records_max_age: Option<Duration>,
    /// This node's name in the buckets; `None`: host name, process id and a random suffix.
    pub node_id: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            servers: Vec::new(),
            credentials: None,
            tls_ca: None,
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_string(),
            url_stream: DEFAULT_URL_STREAM.to_string(),
            records_stream: DEFAULT_RECORDS_STREAM.to_string(),
            lease_bucket: DEFAULT_LEASE_BUCKET.to_string(),
            node_bucket: DEFAULT_NODE_BUCKET.to_string(),
            partitions: DEFAULT_PARTITIONS as u32,
            lease: DEFAULT_LEASE,
            ack_wait: DEFAULT_ACK_WAIT,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            records_max_age: Some(Duration::from_secs(
                DEFAULT_RECORDS_MAX_AGE_DAYS * SECS_PER_DAY,
            )),
            node_id: None,
        }
    }
}

impl Default for RestartOnly {
    fn default() -> Self {
        RestartOnly {
            spool: PathBuf::from(DEFAULT_SPOOL),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            fetch: RawFetchOptions::service()
                .validate()
                .expect("the service defaults are valid"),
            metrics_listen: None,
            cluster: None,
        }
    }
}

/// The part of the configuration a SIGHUP applies.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reloadable {
    /// The JSON Lines journal file (reopened on SIGHUP and SIGUSR1).
    pub journal: PathBuf,
    pub fsync: FsyncPolicy,
    /// `done/` files older than this are deleted; `None` keeps them forever.
    pub done_retention: Option<Duration>,
    /// Period of the full `new/` rescan (inotify does the fast path).
    pub rescan: Duration,
    /// List files read at the same time.
    pub max_files: usize,
    /// SIGTERM: how long in-flight fetches may run before they are abandoned.
    pub drain_grace: Duration,
    /// Bytes of a list read at most; a larger list goes to `bad/` (for lists claimed after
    /// a reload).
    pub max_list_bytes: u64,
}

impl Default for Reloadable {
    fn default() -> Self {
        Reloadable {
            journal: PathBuf::from(DEFAULT_JOURNAL),
            fsync: FsyncPolicy::default(),
            done_retention: Some(Duration::from_secs(
                DEFAULT_DONE_RETENTION_DAYS * SECS_PER_DAY,
            )),
            rescan: DEFAULT_RESCAN,
            max_files: DEFAULT_MAX_FILES,
            drain_grace: DEFAULT_DRAIN_GRACE,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
        }
    }
}

/// Command-line values that win over the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub spool: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    /// `--nats URL[,URL...]`: the cluster's servers (a `[cluster]` with defaults if absent).
    pub nats: Option<String>,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    #[error("bad value for `{key}`: {message}")]
    BadValue { key: String, message: String },
    /// A `[fetch]` value (or a flag layered over the file) that `options` refused.
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error("{what} {path} is not usable: {message}")]
    Unusable {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl ConfigError {
    /// The error is about the file's text (so a message names the file).
    fn in_file(&self) -> bool {
        match self {
            ConfigError::Syntax(_) | ConfigError::UnknownKey(_) | ConfigError::BadValue { .. } => {
                true
            }
            ConfigError::Option(e) => matches!(e.name, Name::File(_)),
            ConfigError::Read { .. } | ConfigError::Unusable { .. } => false,
        }
    }
}

/// Every problem found, so `--check-config` can report them in one go: one per line, those
/// about the file's text prefixed with the file's path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match &self.file {
                Some(file) if e.in_file() => write!(f, "{}: {e}", file.display())?,
                _ => write!(f, "{e}")?,
            }
        }
        Ok(())
    }
}

/// One value that differs between two configurations, as `key: old -> new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The config file key.
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.old, self.new)
    }
}

/// Appends a [`Change`] when two renderings of a value differ.
#[derive(Default)]
struct Changes(Vec<Change>);

impl Changes {
    fn cmp<T: PartialEq + std::fmt::Debug>(&mut self, key: &'static str, old: &T, new: &T) {
        if old != new {
            self.0.push(Change {
                key,
                old: format!("{old:?}"),
                new: format!("{new:?}"),
            });
        }
    }
}

impl RestartOnly {
    /// What differs in `new`, by config file key.
    pub(crate) fn changes(&self, new: &RestartOnly) -> Vec<Change> {
        let mut c = Changes::default();
        c.cmp("daemon.spool", &self.spool, &new.spool);
        c.cmp("daemon.log_level", &self.log_level, &new.log_level);
        c.cmp(
            "daemon.metrics_listen",
            &self.metrics_listen,
            &new.metrics_listen,
        );
        let (a, b) = (&self.fetch, &new.fetch);
        c.cmp("fetch.concurrency", &a.concurrency, &b.concurrency);
        c.cmp("fetch.per_host", &a.per_host, &b.per_host);
        c.cmp("fetch.threads", &a.threads, &b.threads);
        c.cmp("fetch.timeout_secs", &a.timeout, &b.timeout);
        c.cmp(
            "fetch.connect_timeout_secs",
            &a.connect_timeout,
            &b.connect_timeout,
        );
        c.cmp("fetch.read_timeout_secs", &a.read_timeout, &b.read_timeout);
        c.cmp("fetch.max_redirects", &a.max_redirects, &b.max_redirects);
        c.cmp("fetch.max_body", &a.max_body, &b.max_body);
        c.cmp("fetch.user_agent", &a.user_agent, &b.user_agent);
        c.cmp("fetch.headers", &a.headers, &b.headers);
        c.cmp("fetch.resolver", &a.resolver, &b.resolver);
        c.cmp("fetch.ca_file", &a.ca_file, &b.ca_file);
        c.cmp("fetch.insecure", &a.insecure, &b.insecure);
        c.cmp("fetch.follow", &a.follow, &b.follow);
        c.cmp("fetch.bind", &a.bind, &b.bind);
        c.cmp("fetch.robots", &a.robots, &b.robots);
        c.cmp("fetch.retries", &a.retries, &b.retries);
        c.cmp("fetch.host_delay_ms", &a.host_delay, &b.host_delay);
        c.cmp("fetch.per_ip", &a.per_ip, &b.per_ip);
        c.cmp("fetch.deny/allow", &a.policy, &b.policy);
        c.cmp("fetch.proxy/noproxy", &a.proxy, &b.proxy);
        c.cmp("fetch.chain", &a.chain, &b.chain);
        c.cmp("cluster", &self.cluster, &new.cluster);
        c.0
    }
}

impl Reloadable {
    /// What differs in `new`, by config file key.
    pub(crate) fn changes(&self, new: &Reloadable) -> Vec<Change> {
        let mut c = Changes::default();
        c.cmp("daemon.journal", &self.journal, &new.journal);
        c.cmp("daemon.fsync", &self.fsync, &new.fsync);
        c.cmp(
            "daemon.done_retention_days",
            &self.done_retention,
            &new.done_retention,
        );
        c.cmp("daemon.rescan_secs", &self.rescan, &new.rescan);
        c.cmp("daemon.max_files", &self.max_files, &new.max_files);
        c.cmp(
            "daemon.drain_grace_secs",
            &self.drain_grace,
            &new.drain_grace,
        );
        c.cmp(
            "daemon.max_list_bytes",
            &self.max_list_bytes,
            &new.max_list_bytes,
        );
        c.0
    }
}

/// What [`Config::apply_reload`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReloadOutcome {
    /// Reloadable values that changed (now in force).
    pub applied: Vec<Change>,
    /// Restart-only values that changed (not in force until a restart).
    pub kept: Vec<Change>,
}

/// Reads typed values out of one TOML table, collecting every error. Keys are given with
/// their table (`fetch.timeout_secs`), as messages name them.
struct Section<'a> {
    table: &'a toml::Table,
    prefix_len: usize,
    seen: Vec<&'static str>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Section<'a> {
    fn new(root: &'a toml::Table, name: &'static str, errors: &'a mut Vec<ConfigError>) -> Self {
        static EMPTY: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
        let table = root
            .get(name)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| EMPTY.get_or_init(toml::Table::new));
        Section {
            table,
            prefix_len: name.len() + 1,
            seen: Vec::new(),
            errors,
        }
    }

    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::BadValue {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        let short = &key[self.prefix_len..];
        self.seen.push(short);
        self.table.get(short)
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            v => {
                self.bad(key, format!("expected a string, got {}", v.type_str()));
                None
            }
        }
    }

    /// A string where `""` means "not set".
    fn non_empty(&mut self, key: &'static str) -> Option<String> {
        self.string(key).filter(|s| !s.is_empty())
    }

    fn boolean(&mut self, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            toml::Value::Boolean(b) => Some(*b),
            v => {
                self.bad(key, format!("expected true or false, got {}", v.type_str()));
                None
            }
        }
    }

    /// An array of strings.
    fn strings(&mut self, key: &'static str) -> Option<Vec<String>> {
        let v = self.get(key)?;
        let items = v.as_array().map(|a| {
            a.iter()
                .map(|it| it.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
        });
        match items {
            Some(Some(list)) => Some(list),
            _ => {
                self.bad(key, "expected an array of strings");
                None
            }
        }
    }

    fn integer(&mut self, key: &'static str) -> Option<i64> {
        match self.get(key)? {
            toml::Value::Integer(i) => Some(*i),
            v => {
                self.bad(key, format!("expected an integer, got {}", v.type_str()));
                None
            }
        }
    }

    /// An integer in `min..=max` (daemon values; fetch values are checked by `options`).
    fn int(&mut self, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let i = self.integer(key)?;
        match u64::try_from(i) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.bad(key, format!("{i} is out of range {min}..={max}"));
                None
            }
        }
    }

    /// A number of seconds, integer or float.
    fn number(&mut self, key: &'static str) -> Option<f64> {
        match self.get(key)? {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            v => {
                self.bad(
                    key,
                    format!("expected a number of seconds, got {}", v.type_str()),
                );
                None
            }
        }
    }

    /// Seconds in `(0, MAX_TIMEOUT_SECS]` (daemon values).
    fn secs(&mut self, key: &'static str) -> Option<Duration> {
        let v = self.number(key)?;
        if v.is_finite() && v > 0.0 && v <= MAX_TIMEOUT_SECS {
            Some(Duration::from_secs_f64(v))
        } else {
            self.bad(
                key,
                format!("{v} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]"),
            );
            None
        }
    }

    /// The value with its name, for the `options` layer.
    fn given<T>(v: Option<T>, key: &'static str) -> Option<Given<T>> {
        v.map(|value| Given {
            value,
            name: Name::File(key),
        })
    }

    /// Keys of this table that nothing asked for.
    fn finish(self, name: &str) {
        for k in self.table.keys() {
            if !self.seen.contains(&k.as_str()) {
                self.errors
                    .push(ConfigError::UnknownKey(format!("{name}.{k}")));
            }
        }
    }
}

/// The `[fetch]` table as an options layer: types checked, values left to `options`.
fn fetch_layer(mut f: Section<'_>) -> RawFetchOptions {
    let int = |f: &mut Section<'_>, key| Section::given(f.integer(key), key);
    let secs = |f: &mut Section<'_>, key| Section::given(f.number(key), key);
    let mut raw = RawFetchOptions {
        concurrency: int(&mut f, "fetch.concurrency"),
        per_host: int(&mut f, "fetch.per_host"),
        threads: int(&mut f, "fetch.threads"),
        timeout: secs(&mut f, "fetch.timeout_secs"),
        connect_timeout: secs(&mut f, "fetch.connect_timeout_secs"),
        read_timeout: secs(&mut f, "fetch.read_timeout_secs"),
        max_redirects: int(&mut f, "fetch.max_redirects"),
        max_body: int(&mut f, "fetch.max_body"),
        user_agent: Section::given(f.string("fetch.user_agent"), "fetch.user_agent"),
        headers: Section::given(f.strings("fetch.headers"), "fetch.headers"),
        ca_file: Section::given(
            f.non_empty("fetch.ca_file").map(PathBuf::from),
            "fetch.ca_file",
        ),
        insecure: Section::given(f.boolean("fetch.insecure"), "fetch.insecure"),
        follow: Section::given(f.non_empty("fetch.follow"), "fetch.follow"),
        robots: Section::given(f.boolean("fetch.robots"), "fetch.robots"),
        retries: int(&mut f, "fetch.retries"),
        host_delay_ms: int(&mut f, "fetch.host_delay_ms"),
        per_ip: int(&mut f, "fetch.per_ip"),
        deny: Section::given(f.strings("fetch.deny"), "fetch.deny"),
        allow: Section::given(f.strings("fetch.allow"), "fetch.allow"),
        no_proxy: Section::given(f.non_empty("fetch.noproxy"), "fetch.noproxy"),
        chain: Section::given(f.boolean("fetch.chain"), "fetch.chain"),
        ..RawFetchOptions::default()
    };
    let proxy = Section::given(f.non_empty("fetch.proxy"), "fetch.proxy");
    raw.proxy_http = proxy.clone();
    raw.proxy_https = proxy;
    if let Some(s) = f.non_empty("fetch.resolver") {
        match crate::options::parse_resolver(&s) {
            Ok(a) => raw.resolver = Section::given(Some(a), "fetch.resolver"),
            Err(e) => f.bad("fetch.resolver", e),
        }
    }
    if let Some(v) = f.get("fetch.bind") {
        match v.as_array() {
            Some(items) => {
                let mut addrs = Vec::new();
                for it in items {
                    match it.as_str().map(str::parse::<IpAddr>) {
                        Some(Ok(a)) => addrs.push(a),
                        _ => f.bad("fetch.bind", format!("{it} is not an IP address")),
                    }
                }
                raw.bind = Section::given(Some(addrs), "fetch.bind");
            }
            None => f.bad("fetch.bind", "expected an array of IP addresses"),
        }
    }
    f.finish("fetch");
    raw
}

/// A NATS name (stream, bucket, subject token): letters, digits, `-` and `_`.
fn is_nats_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `[cluster]` table (present, or implied by `--nats`); `None` when neither.
fn cluster_table(
    mut c: Section<'_>,
    present: bool,
    overrides: &Overrides,
) -> Option<ClusterConfig> {
    let mut cc = ClusterConfig::default();
    if let Some(list) = c.strings("cluster.servers") {
        cc.servers = list;
    }
    if let Some(s) = &overrides.nats {
        cc.servers = s.split(',').map(|u| u.trim().to_string()).collect();
    }
    cc.credentials = c.non_empty("cluster.credentials_file").map(PathBuf::from);
    cc.tls_ca = c.non_empty("cluster.tls_ca_file").map(PathBuf::from);
    for (key, slot) in [
        ("cluster.url_stream", &mut cc.url_stream),
        ("cluster.records_stream", &mut cc.records_stream),
        ("cluster.lease_bucket", &mut cc.lease_bucket),
        ("cluster.node_bucket", &mut cc.node_bucket),
    ] {
        if let Some(v) = c.string(key) {
            if is_nats_name(&v) {
                *slot = v;
            } else {
                c.bad(
                    key,
                    format!("`{v}` is not a name of 1 to 64 letters, digits, - or _"),
                );
            }
        }
    }
    if let Some(v) = c.string("cluster.subject_prefix") {
        if v.split('.').all(is_nats_name) {
            cc.subject_prefix = v;
        } else {
            c.bad(
                "cluster.subject_prefix",
                format!("`{v}` is not dot-separated tokens of letters, digits, - or _"),
            );
        }
    }
    if let Some(n) = c.int("cluster.partitions", 1, MAX_PARTITIONS) {
        cc.partitions = n as u32;
    }
    if let Some(v) = c.secs("cluster.lease_secs") {
        if v.as_secs_f64() >= MIN_LEASE_SECS {
            cc.lease = v;
        } else {
            c.bad(
                "cluster.lease_secs",
                format!("{} is below {MIN_LEASE_SECS}", v.as_secs_f64()),
            );
        }
    }
    if let Some(v) = c.secs("cluster.ack_wait_secs") {
        cc.ack_wait = v;
    }
    if let Some(v) = c.int(
        "cluster.duplicate_window_secs",
        1,
        MAX_DUPLICATE_WINDOW_SECS,
    ) {
        cc.duplicate_window = Duration::from_secs(v);
    }
    if let Some(days) = c.int("cluster.records_max_age_days", 0, MAX_RECORDS_MAX_AGE_DAYS) {
        cc.records_max_age = (days > 0).then(|| Duration::from_secs(days * SECS_PER_DAY));
    }
    // A redelivered line is fetched again within a lease and an ack wait: its record must
    // still meet the first one's id. The server keeps ids no longer than it keeps messages.
    let least = cc.lease + cc.ack_wait;
    let dup = cc.duplicate_window.as_secs();
    if cc.duplicate_window < least {
        c.bad(
            "cluster.duplicate_window_secs",
            format!(
                "{dup} is less than lease_secs + ack_wait_secs ({} s)",
                least.as_secs_f64()
            ),
        );
    }
    if cc
        .records_max_age
        .is_some_and(|age| age < cc.duplicate_window)
    {
        c.bad(
            "cluster.duplicate_window_secs",
            format!("{dup} is longer than records_max_age_days"),
        );
    }
    if let Some(id) = c.non_empty("cluster.node_id") {
        if id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            cc.node_id = Some(id);
        } else {
            c.bad(
                "cluster.node_id",
                format!("`{id}` may hold only letters, digits, -, _ and ."),
            );
        }
    }
    let wanted = present || overrides.nats.is_some();
    if wanted {
        if cc.servers.is_empty() {
            c.bad("cluster.servers", "is empty (give at least one NATS URL)");
        }
        for s in &cc.servers {
            if let Err(e) = s.parse::<async_nats::ServerAddr>() {
                c.bad("cluster.servers", format!("`{s}` is not a NATS URL: {e}"));
            }
        }
    }
    c.finish("cluster");
    wanted.then_some(cc)
}

/// Read a config file's text; `None` with `missing_ok` when it does not exist.
fn read_file(path: &Path, missing_ok: bool) -> Result<Option<String>, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigErrors {
            file: None,
            errors: vec![ConfigError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            }],
        }),
    }
}

/// `fetch --config FILE`: the file (all of it checked, its `[fetch]` table used) layered
/// over `base` (the environment's proxy settings), the command-line `flags` over it,
/// validated as one.
pub(crate) fn fetch_options_from_file(
    path: &Path,
    base: RawFetchOptions,
    flags: RawFetchOptions,
) -> Result<FetchOptions, ConfigErrors> {
    let text = read_file(path, false)?.unwrap_or_default();
    let mut errors = Vec::new();
    match Config::parse_into(&text, &Overrides::default(), base, flags, &mut errors) {
        Some(cfg) if errors.is_empty() => Ok(cfg.restart.fetch),
        _ => Err(ConfigErrors {
            file: Some(path.to_path_buf()),
            errors,
        }),
    }
}

/// The configuration's text and the file it came from: `path`, or [`DEFAULT_CONFIG_PATH`],
/// where a missing file means none (`(None, None)`: defaults).
fn read_config(path: Option<&Path>) -> Result<(Option<String>, Option<PathBuf>), ConfigErrors> {
    match path {
        Some(p) => Ok((read_file(p, false)?, Some(p.to_path_buf()))),
        None => {
            let p = Path::new(DEFAULT_CONFIG_PATH);
            let text = read_file(p, true)?;
            let file = text.is_some().then(|| p.to_path_buf());
            Ok((text, file))
        }
    }
}

/// `submit --nats` and `collect`: the `[cluster]` table of the configuration (`path`, or the
/// default file when it exists) with `nats` (comma-separated URLs; `""` for none) over its
/// servers. The whole file is checked; the daemon's paths are not.
pub(crate) fn cluster_options(
    path: Option<&Path>,
    nats: &str,
) -> Result<ClusterConfig, ConfigErrors> {
    let (text, file) = read_config(path)?;
    let overrides = Overrides {
        nats: (!nats.is_empty()).then(|| nats.to_string()),
        ..Overrides::default()
    };
    let mut errors = Vec::new();
    let base = RawFetchOptions::service();
    let cfg = Config::parse_into(
        &text.unwrap_or_default(),
        &overrides,
        base,
        RawFetchOptions::default(),
        &mut errors,
    );
    match cfg.and_then(|c| c.restart.cluster) {
        Some(c) if errors.is_empty() => Ok(c),
        None if errors.is_empty() => Err(ConfigErrors {
            file: None,
            errors: vec![ConfigError::BadValue {
                key: "cluster.servers".into(),
                message: "no cluster: give --nats URL or a [cluster] table in --config".into(),
            }],
        }),
        _ => Err(ConfigErrors { file, errors }),
    }
}

impl Config {
    /// Read `path` (or [`DEFAULT_CONFIG_PATH`] when `None`, where a missing file means
    /// defaults), apply `overrides`, validate values, and check that the spool and journal
    /// directories are usable. All problems are returned together. The file's `[fetch]`
    /// table is layered over the service's defaults and the process environment's proxy
    /// settings (`http_proxy`...).
    pub(crate) fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let (text, source) = read_config(path)?;
        let mut errors = Vec::new();
        let text = text.unwrap_or_default();
        let cfg = Config::parse_into(
            &text,
            overrides,
            RawFetchOptions::service().overlay(RawFetchOptions::process_env()),
            RawFetchOptions::default(),
            &mut errors,
        );
        if let Some(cfg) = &cfg {
            errors.extend(cfg.check_paths());
        }
        match cfg {
            Some(mut cfg) if errors.is_empty() => {
                cfg.source = source;
                Ok(cfg)
            }
            _ => Err(ConfigErrors {
                file: source,
                errors,
            }),
        }
    }

    /// Parse and validate TOML text plus overrides, without touching the filesystem.
    #[cfg(test)]
    pub(crate) fn parse(text: &str, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let (base, flags) = (RawFetchOptions::service(), RawFetchOptions::default());
        match Config::parse_into(text, overrides, base, flags, &mut errors) {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigErrors { file: None, errors }),
        }
    }

    /// Parse `text`; the file's `[fetch]` table is layered over `fetch_base` (the service's
    /// defaults for the daemon, nothing for `fetch --config`), and `fetch_flags` over it.
    fn parse_into(
        text: &str,
        overrides: &Overrides,
        fetch_base: RawFetchOptions,
        fetch_flags: RawFetchOptions,
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
        for (k, v) in &root {
            match (k.as_str(), v) {
                ("daemon" | "fetch" | "cluster", toml::Value::Table(_)) => {}
                ("daemon" | "fetch" | "cluster", _) => errors.push(ConfigError::BadValue {
                    key: k.clone(),
                    message: "expected a table".into(),
                }),
                _ => errors.push(ConfigError::UnknownKey(k.clone())),
            }
        }

        let mut d = Section::new(&root, "daemon", errors);
        let (live, restart) = (&mut cfg.live, &mut cfg.restart);
        if let Some(s) = d.string("daemon.spool") {
            restart.spool = PathBuf::from(s);
        }
        if let Some(s) = d.string("daemon.journal") {
            live.journal = PathBuf::from(s);
        }
        let batch_ms = d.int("daemon.fsync_batch_ms", 1, MAX_FSYNC_BATCH_MS);
        if let Some(s) = d.string("daemon.fsync") {
            match s.as_str() {
                "always" => live.fsync = FsyncPolicy::Always,
                "never" => live.fsync = FsyncPolicy::Never,
                "batch" => {}
                other => d.bad(
                    "daemon.fsync",
                    format!("`{other}` is not one of always, batch, never"),
                ),
            }
        }
        if let Some(ms) = batch_ms {
            if live.fsync == FsyncPolicy::default() {
                live.fsync = FsyncPolicy::Batch(Duration::from_millis(ms));
            }
        }
        if let Some(days) = d.int("daemon.done_retention_days", 0, MAX_DONE_RETENTION_DAYS) {
            live.done_retention = (days > 0).then(|| Duration::from_secs(days * SECS_PER_DAY));
        }
        if let Some(v) = d.secs("daemon.rescan_secs") {
            live.rescan = v;
        }
        if let Some(v) = d.int("daemon.max_files", 1, MAX_FILES_LIMIT) {
            live.max_files = v as usize;
        }
        if let Some(v) = d.secs("daemon.drain_grace_secs") {
            live.drain_grace = v;
        }
        if let Some(v) = d.int("daemon.max_list_bytes", 1, MAX_LIST_BYTES_LIMIT) {
            live.max_list_bytes = v;
        }
        if let Some(s) = d.string("daemon.log_level") {
            if LOG_LEVELS.contains(&s.as_str()) || s.contains('=') {
                restart.log_level = s;
            } else {
                d.bad(
                    "daemon.log_level",
                    format!("`{s}` is not one of {}", LOG_LEVELS.join(", ")),
                );
            }
        }
        if let Some(s) = d.non_empty("daemon.metrics_listen") {
            match parse_listen(&s) {
                Ok(addr) => restart.metrics_listen = Some(addr),
                Err(message) => d.bad("daemon.metrics_listen", message),
            }
        }
        d.finish("daemon");

        let file_layer = fetch_layer(Section::new(&root, "fetch", errors));
        match fetch_base
            .overlay(file_layer)
            .overlay(fetch_flags)
            .validate()
        {
            Ok(o) => cfg.restart.fetch = o,
            Err(e) => errors.extend(e.0.into_iter().map(ConfigError::Option)),
        }

        let c = Section::new(&root, "cluster", errors);
        cfg.restart.cluster = cluster_table(c, root.contains_key("cluster"), overrides);

        cfg.overrides = overrides.clone();
        if let Some(p) = &overrides.spool {
            cfg.restart.spool = p.clone();
        }
        if let Some(p) = &overrides.journal {
            cfg.live.journal = p.clone();
        }
        for (key, p) in [
            ("daemon.spool", &cfg.restart.spool),
            ("daemon.journal", &cfg.live.journal),
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
    fn check_paths(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let spool = &self.restart.spool;
        if let Err(message) = check_writable_dir(spool) {
            errors.push(ConfigError::Unusable {
                what: "spool directory",
                path: spool.clone(),
                message,
            });
        }
        let journal = &self.live.journal;
        let journal_dir = match journal.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(message) = check_writable_dir(&journal_dir) {
            errors.push(ConfigError::Unusable {
                what: "journal directory",
                path: journal_dir,
                message,
            });
        } else if journal.exists() {
            let ok = std::fs::OpenOptions::new().append(true).open(journal);
            if let Err(e) = ok {
                errors.push(ConfigError::Unusable {
                    what: "journal",
                    path: journal.clone(),
                    message: e.to_string(),
                });
            }
        }
        let cluster = self.restart.cluster.as_ref();
        let files = [
            ("CA file", self.restart.fetch.ca_file.as_ref()),
            (
                "cluster credentials file",
                cluster.and_then(|c| c.credentials.as_ref()),
            ),
            (
                "cluster TLS CA file",
                cluster.and_then(|c| c.tls_ca.as_ref()),
            ),
        ];
        for (what, path) in files {
            let Some(path) = path else { continue };
            if let Err(e) = std::fs::File::open(path) {
                errors.push(ConfigError::Unusable {
                    what,
                    path: path.clone(),
                    message: e.to_string(),
                });
            }
        }
        errors
    }

    /// SIGHUP: take `new`'s reloadable part, keep this run's restart-only part, and say
    /// what changed in each.
    pub(crate) fn apply_reload(&mut self, new: Config) -> ReloadOutcome {
        let outcome = ReloadOutcome {
            applied: self.live.changes(&new.live),
            kept: self.restart.changes(&new.restart),
        };
        self.live = new.live;
        outcome
    }

    /// One line describing the effective configuration (logged at start-up).
    pub(crate) fn summary_line(&self) -> String {
        let (r, l, o) = (&self.restart, &self.live, &self.restart.fetch);
        format!(
            "config={} spool={} journal={} fsync={} done_retention={} rescan={:?} max_files={} \
             drain_grace={:?} max_list_bytes={} log_level={} metrics_listen={} concurrency={} per_host={} threads={} timeout={:?} \
             connect_timeout={:?} read_timeout={:?} max_redirects={} max_body={} resolver={} \
             ca_file={} insecure={} follow={} user_agent={:?} cluster={}",
            self.source
                .as_ref()
                .map_or("(defaults)".to_string(), |p| p.display().to_string()),
            r.spool.display(),
            l.journal.display(),
            l.fsync,
            l.done_retention.map_or("forever".to_string(), |d| format!(
                "{}d",
                d.as_secs() / SECS_PER_DAY
            )),
            l.rescan,
            l.max_files,
            l.drain_grace,
            l.max_list_bytes,
            r.log_level,
            r.metrics_listen.map_or("-".to_string(), |a| a.to_string()),
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
            r.cluster
                .as_ref()
                .map_or("-".to_string(), |c| c.servers.join(",")),
        )
    }
}

/// `daemon.metrics_listen`: an IP address and a port other than 0 (no name: nothing is
/// resolved to listen).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("`{s}` has port 0; give the port to listen on")),
        Ok(a) => Ok(a),
        Err(_) => Err(format!(
            "`{s}` is not an IP address and port (e.g. \"127.0.0.1:9464\", \"[::1]:9464\")"
        )),
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

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("", &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn shipped_config_file_parses_to_the_defaults() {
        let text = include_str!("../config/ringcrawl.toml");
        let c = Config::parse(text, &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
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
            max_list_bytes = 4096
            metrics_listen = "[::1]:9464"
            [fetch]
            concurrency = 100
            per_host = 2
            threads = 3
            timeout_secs = 5
            connect_timeout_secs = 1.5
            resolver = "127.0.0.1:5353"
            bind = ["127.0.0.2"]
            headers = ["X-Crawl: 1"]
        "#;
        let ov = Overrides {
            journal: Some("/tmp/x.jsonl".into()),
            spool: None,
            nats: None,
        };
        let c = Config::parse(text, &ov).unwrap();
        assert_eq!(c.restart.spool, PathBuf::from("/srv/spool"));
        assert_eq!(c.live.journal, PathBuf::from("/tmp/x.jsonl"));
        assert_eq!(c.live.fsync, FsyncPolicy::Batch(Duration::from_millis(50)));
        assert_eq!(c.live.done_retention, None);
        assert_eq!(c.live.max_files, 9);
        assert_eq!(c.live.drain_grace, Duration::from_millis(2500));
        assert_eq!(c.live.max_list_bytes, 4096);
        assert_eq!(
            c.restart.metrics_listen,
            Some("[::1]:9464".parse().unwrap())
        );
        let o = &c.restart.fetch;
        assert_eq!(o.concurrency, 100);
        assert_eq!(o.threads, 3);
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        assert_eq!(o.resolver, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(o.bind, vec!["127.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(o.headers[0].to_string(), "X-Crawl: 1");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            colour = "blue"
            [daemon]
            fsync = "sometimes"
            max_files = 0
            max_list_bytes = 0
            spoool = "/x"
            metrics_listen = "localhost:9464"
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
            "bad value for `daemon.max_list_bytes`: 0 is out of range",
            "bad value for `daemon.metrics_listen`: `localhost:9464` is not an IP address and port",
            "bad value for `fetch.concurrency`: expected an integer, got string",
            "bad value for `fetch.timeout_secs`: -1 is not a number of seconds",
            "bad value for `fetch.resolver`",
            "bad value for `fetch.bind`",
        ] {
            assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
        }
        assert_eq!(errs.errors.len(), 10, "{msg}");
    }

    #[test]
    fn cross_field_checks() {
        let text =
            "[fetch]\nconcurrency = 4\nper_host = 8\ntimeout_secs = 1\nconnect_timeout_secs = 2\n";
        let msg = Config::parse(text, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`fetch.per_host`: 8 is more than `fetch.concurrency` 4"),
            "{msg}"
        );
        assert!(msg.contains("`fetch.connect_timeout_secs`"), "{msg}");
        // A value left to its default shrinks to fit instead.
        let c = Config::parse("[fetch]\nconcurrency = 4\n", &Overrides::default()).unwrap();
        assert_eq!(c.restart.fetch.per_host, 4);
    }

    #[test]
    fn metrics_listen_is_an_address_and_a_port_or_empty_for_none() {
        let parse = |v: &str| {
            Config::parse(
                &format!("[daemon]\nmetrics_listen = {v}\n"),
                &Overrides::default(),
            )
        };
        assert_eq!(parse("\"\"").unwrap().restart.metrics_listen, None);
        assert_eq!(
            parse("\"0.0.0.0:9464\"").unwrap().restart.metrics_listen,
            Some("0.0.0.0:9464".parse().unwrap())
        );
        for (bad, want) in [
            ("\"127.0.0.1\"", "is not an IP address and port"),
            ("\"127.0.0.1:0\"", "has port 0"),
            ("9464", "expected a string, got integer"),
        ] {
            let msg = parse(bad).unwrap_err().to_string();
            assert!(
                msg.starts_with("bad value for `daemon.metrics_listen`: ") && msg.contains(want),
                "{bad}: {msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn cluster_table_values_defaults_and_errors() {
        let c = Config::parse("", &Overrides::default()).unwrap();
        assert_eq!(c.restart.cluster, None, "no table, no --nats: not a node");
        let text = r#"
            [cluster]
            servers = ["nats://127.0.0.1:4222", "tls://n2.example:4222"]
            subject_prefix = "crawl.a"
            url_stream = "urls-a"
            partitions = 8
            lease_secs = 3
            ack_wait_secs = 6
            duplicate_window_secs = 600
            records_max_age_days = 0
            node_id = "n1.example"
        "#;
        let c = Config::parse(text, &Overrides::default()).unwrap();
        let k = c.restart.cluster.unwrap();
        assert_eq!(k.servers.len(), 2);
        assert_eq!(
            (k.subject_prefix.as_str(), k.url_stream.as_str()),
            ("crawl.a", "urls-a")
        );
        assert_eq!(k.records_stream, DEFAULT_RECORDS_STREAM);
        assert_eq!((k.partitions, k.lease), (8, Duration::from_secs(3)));
        assert_eq!(k.records_max_age, None);
        assert_eq!(k.node_id.as_deref(), Some("n1.example"));
        let ov = Overrides {
            nats: Some("nats://10.0.0.1:4222,10.0.0.2:4222".into()),
            ..Overrides::default()
        };
        let c = Config::parse("", &ov).unwrap().restart.cluster.unwrap();
        assert_eq!(c.servers, ["nats://10.0.0.1:4222", "10.0.0.2:4222"]);
        assert_eq!(c.partitions, DEFAULT_PARTITIONS as u32);

        let bad = r#"
            [cluster]
            servers = []
            url_stream = "a.b"
            subject_prefix = "x y"
            partitions = 0
            lease_secs = 0.5
            duplicate_window_secs = 10
            colour = 1
        "#;
        let msg = Config::parse(bad, &Overrides::default())
            .unwrap_err()
            .to_string();
        for want in [
            "bad value for `cluster.servers`: is empty",
            "bad value for `cluster.url_stream`: `a.b` is not a name",
            "bad value for `cluster.subject_prefix`",
            "bad value for `cluster.partitions`: 0 is out of range 1..=4096",
            "bad value for `cluster.lease_secs`: 0.5 is below 1",
            "bad value for `cluster.duplicate_window_secs`: 10 is less than lease_secs + ack_wait_secs",
            "unknown key `cluster.colour`",
        ] {
            assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
        }
        assert!(msg.lines().all(|l| l.contains("cluster")), "{msg}");
    }

    #[test]
    fn syntax_error_is_one_line() {
        let errs = Config::parse("[daemon\nx=1", &Overrides::default()).unwrap_err();
        assert_eq!(errs.errors.len(), 1);
        assert!(matches!(errs.errors[0], ConfigError::Syntax(_)));
        assert!(!errs.to_string().contains('\n'));
    }

    #[test]
    fn load_checks_directories_and_names_the_file() {
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
        let fsync_line = msg.lines().find(|l| l.contains("daemon.fsync")).unwrap();
        assert!(
            fsync_line.starts_with(&format!("{}: bad value", cfg_path.display())),
            "{fsync_line}"
        );

        let ok = Overrides {
            spool: Some(dir.path().join("spool/not/yet")),
            journal: Some(dir.path().join("j.jsonl")),
            nats: None,
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
    fn missing_explicit_file_is_one_error_naming_it_once() {
        let errs = Config::load(
            Some(Path::new("/nonexistent/ringcrawl.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(errs.errors[0], ConfigError::Read { .. }));
        assert_eq!(
            errs.to_string()
                .matches("/nonexistent/ringcrawl.toml")
                .count(),
            1
        );
    }

    #[test]
    fn flags_layer_over_the_file_for_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[fetch]\nconcurrency = 4\nper_host = 3\ntimeout_secs = 9\n",
        )
        .unwrap();
        let flags = RawFetchOptions {
            concurrency: Some(Given {
                value: 2,
                name: Name::Flag("--concurrency"),
            }),
            ..Default::default()
        };
        let err = fetch_options_from_file(&path, RawFetchOptions::default(), flags.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("bad value for `fetch.per_host`: 3 is more than --concurrency 2"),
            "{err}"
        );
        std::fs::write(&path, "[fetch]\ntimeout_secs = 9\n").unwrap();
        let o = fetch_options_from_file(&path, RawFetchOptions::default(), flags).unwrap();
        assert_eq!((o.concurrency, o.per_host), (2, 2));
        assert_eq!(o.timeout, Duration::from_secs(9));
    }

    #[test]
    fn reload_applies_the_reloadable_part_and_keeps_the_rest() {
        let mut running = Config::default();
        let mut new = Config::default();
        new.restart.spool = "/elsewhere".into();
        new.restart.log_level = "debug".into();
        new.restart.fetch.concurrency = 10;
        new.restart.metrics_listen = Some("127.0.0.1:9464".parse().unwrap());
        new.live.max_files = 1;
        new.live.fsync = FsyncPolicy::Always;
        new.live.journal = "/j2".into();
        let before = running.restart.clone();
        let out = running.apply_reload(new.clone());
        assert_eq!(running.live, new.live, "reloadable values are in force");
        assert_eq!(running.restart, before, "restart-only values are kept");
        let keys = |v: &[Change]| v.iter().map(|c| c.key).collect::<Vec<_>>();
        assert_eq!(
            keys(&out.applied),
            ["daemon.journal", "daemon.fsync", "daemon.max_files"]
        );
        assert_eq!(
            keys(&out.kept),
            [
                "daemon.spool",
                "daemon.log_level",
                "daemon.metrics_listen",
                "fetch.concurrency"
            ]
        );
        assert_eq!(
            out.applied[1].to_string(),
            "daemon.fsync: Batch(200ms) -> Always"
        );
        // Nothing changed: nothing to say.
        assert_eq!(
            running.apply_reload(running.clone()),
            ReloadOutcome::default()
        );
    }
}
