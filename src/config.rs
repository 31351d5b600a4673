//! Options for the fetch path, with their defaults as named constants. (The daemon's TOML
//! file, CLI overrides and `--check-config` build on this.)

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_CONCURRENCY: usize = 256;
pub const DEFAULT_PER_HOST: usize = 6;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
pub const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;
pub const DEFAULT_USER_AGENT: &str = concat!("ringcrawl/", env!("CARGO_PKG_VERSION"));
/// Largest accepted value for any timeout option, in seconds (one day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
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
