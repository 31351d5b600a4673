//! The fetch options model: one validated [`FetchOptions`], built the same way for `fetch`,
//! `run` and `load`.
//!
//! Every source of options (a config file's `[fetch]` table in `config`, command-line flags in
//! `cli`) produces a [`RawFetchOptions`]: all fields optional, each value tagged with the
//! name the user gave it ([`Name`]: `fetch.timeout_secs` in a file, `--timeout` on the
//! command line). Sources are layered with [`RawFetchOptions::overlay`] (defaults, then the
//! file, then flags: the later one wins per field), and [`RawFetchOptions::validate`] checks
//! ranges and cross-field rules once, on the values that will be used, naming the offending
//! key in the user's vocabulary. Types are the sources' business (a TOML string where a
//! number belongs, an unparsable flag); values are this module's.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::http::Header;
use crate::netpolicy::{NamedSet, NetPolicy, Rule};
use crate::proxy::{self, NoProxy, Proxies, Proxy};

pub(crate) const DEFAULT_CONCURRENCY: usize = 256;
pub(crate) const DEFAULT_PER_HOST: usize = 6;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_MAX_REDIRECTS: u32 = 10;
pub(crate) const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("ringcrawl/", env!("CARGO_PKG_VERSION"));
/// Upper bounds that catch typos (a timeout of a year is a mistake, not a choice).
pub(crate) const MAX_TIMEOUT_SECS: f64 = 24.0 * 3600.0;
pub(crate) const MAX_CONCURRENCY: i64 = 1_000_000;
pub(crate) const MAX_THREADS: i64 = 1024;
pub(crate) const MAX_REDIRECTS: i64 = 100;
pub(crate) const MAX_BODY: i64 = u32::MAX as i64;
/// Most retries per URL.
pub(crate) const MAX_RETRIES: i64 = 10;
/// Longest per-host delay (one hour).
pub(crate) const MAX_HOST_DELAY_MS: i64 = 3_600_000;
/// Retries per URL the service (`ringcrawl run`) makes unless its config says otherwise.
pub(crate) const SERVICE_RETRIES: i64 = 2;
/// Port of a DNS server given by its address alone (`--resolver 10.0.0.1`).
pub(crate) const DNS_PORT: u16 = 53;

/// A DNS server (`--resolver`, `fetch.resolver`): `IP:PORT`, `[IPv6]:PORT`, or an address
/// alone (`IP`, `IPv6`, `[IPv6]`) for port [`DNS_PORT`].
pub(crate) fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("`{s}` is not IP, IP:PORT or [IPv6]:PORT"))
}

/// Everything that shapes how URLs are fetched; shared by `fetch`, `run` and `load`. Only
/// [`RawFetchOptions::validate`] makes one (or [`Default`], which is the same with no source).
#[derive(Clone, Debug, PartialEq)]
pub struct FetchOptions {
    /// Connections in flight, all workers together.
    pub concurrency: usize,
    /// Connections in flight per host (at most `concurrency`).
    pub per_host: usize,
    /// Worker threads (each one tokio-uring runtime); the number of cores unless given.
    pub threads: usize,
    /// Whole-URL deadline, redirects and both hops included.
    pub timeout: Duration,
    /// Connect timeout per address (at most `timeout`).
    pub connect_timeout: Duration,
    /// Longest wait for the next byte from a server.
    pub read_timeout: Duration,
    pub max_redirects: u32,
    /// Decoded body bytes read at most per page.
    pub max_body: u64,
    /// The `User-Agent` sent (empty: none): the first `-H User-Agent` when one is given,
    /// else `--user-agent`, else [`DEFAULT_USER_AGENT`]. robots.txt rules are matched for it.
    pub user_agent: String,
    /// Extra request headers (`-H`), in order; one naming a default header replaces it.
    pub headers: Vec<Header>,
    /// DNS server to use instead of /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
    /// Extra trust anchors (PEM).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (records get `tls_verified: false`).
    pub insecure: bool,
    /// Two-hop mode: follow the first link matching this CSS selector (checked to parse).
    pub follow: Option<String>,
    /// Source addresses for outbound connections.
    pub bind: Vec<IpAddr>,
    /// Obey robots.txt.
    pub robots: bool,
    /// Further attempts for a URL after a transient failure.
    pub retries: u32,
    /// Least time between two request starts on one host.
    pub host_delay: Duration,
    /// Connections in flight to one IP address at most, all hosts together.
    pub per_ip: Option<usize>,
    /// Which addresses may be connected to.
    pub policy: NetPolicy,
    /// The HTTP proxies by scheme and the hosts reached without them.
    pub proxy: Proxies,
    /// Records carry the redirect chain (`chain`).
    pub chain: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        RawFetchOptions::default()
            .validate()
            .expect("the defaults are valid")
    }
}

/// The name of an option as its source spells it, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// A config file key (`fetch.timeout_secs`).
    File(&'static str),
    /// A command-line flag (`--timeout`).
    Flag(&'static str),
    /// An environment variable (`https_proxy`).
    Env(&'static str),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::File(k) => write!(f, "`{k}`"),
            Name::Flag(k) => f.write_str(k),
            Name::Env(k) => write!(f, "environment variable {k}"),
        }
    }
}

/// A value and the name it was given under.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Given<T> {
    pub value: T,
    pub name: Name,
}

/// Options as a source gave them: `None` = not given (the layer below decides). Numbers are
/// wide (`i64` counts, `f64` seconds) so out-of-range values reach [`Self::validate`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RawFetchOptions {
    pub concurrency: Option<Given<i64>>,
    pub per_host: Option<Given<i64>>,
    /// 0 = the number of cores.
    pub threads: Option<Given<i64>>,
    pub timeout: Option<Given<f64>>,
    pub connect_timeout: Option<Given<f64>>,
    pub read_timeout: Option<Given<f64>>,
    pub max_redirects: Option<Given<i64>>,
    pub max_body: Option<Given<i64>>,
    pub user_agent: Option<Given<String>>,
    /// Extra request headers as written (`Name: value`).
    pub headers: Option<Given<Vec<String>>>,
    pub resolver: Option<Given<SocketAddr>>,
    pub ca_file: Option<Given<PathBuf>>,
    pub insecure: Option<Given<bool>>,
    pub follow: Option<Given<String>>,
    pub bind: Option<Given<Vec<IpAddr>>>,
    pub robots: Option<Given<bool>>,
    pub retries: Option<Given<i64>>,
    pub host_delay_ms: Option<Given<i64>>,
    pub per_ip: Option<Given<i64>>,
    /// Network policy rules as written (sets, CIDRs, addresses).
    pub deny: Option<Given<Vec<String>>>,
    pub allow: Option<Given<Vec<String>>>,
    /// The proxy URL of `http://` URLs as written (`""`: none).
    pub proxy_http: Option<Given<String>>,
    /// The same for `https://` URLs.
    pub proxy_https: Option<Given<String>>,
    /// The `NO_PROXY` list as written.
    pub no_proxy: Option<Given<String>>,
    pub chain: Option<Given<bool>>,
}

/// One unusable option value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("bad value for {name}: {message}")]
pub(crate) struct OptionError {
    pub name: Name,
    pub message: String,
}

/// Every unusable value found (one per line when displayed).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) struct OptionErrors(pub Vec<OptionError>);

impl std::fmt::Display for OptionErrors {
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

/// Collects errors while values are checked one by one.
#[derive(Default)]
struct Check(Vec<OptionError>);

impl Check {
    fn bad(&mut self, name: Name, message: String) {
        self.0.push(OptionError { name, message });
    }

    /// A count in `min..=max`.
    fn count(&mut self, v: &Option<Given<i64>>, min: i64, max: i64) -> Option<u64> {
        let g = v.as_ref()?;
        if (min..=max).contains(&g.value) {
            Some(g.value as u64)
        } else {
            self.bad(g.name, format!("{} is out of range {min}..={max}", g.value));
            None
        }
    }

    /// Extra request headers; the bad ones reported.
    fn headers(&mut self, v: &Option<Given<Vec<String>>>) -> Vec<Header> {
        let Some(g) = v.as_ref() else {
            return Vec::new();
        };
        g.value
            .iter()
            .filter_map(|s| {
                Header::parse(s)
                    .map_err(|e| self.bad(g.name, e.to_string()))
                    .ok()
            })
            .collect()
    }

    /// A proxy URL (`""`: no proxy).
    fn proxy(&mut self, v: &Option<Given<String>>) -> Option<Proxy> {
        let g = v.as_ref().filter(|g| !g.value.is_empty())?;
        Proxy::parse(&g.value).map_err(|e| self.bad(g.name, e)).ok()
    }

    /// Network policy rules; the bad ones reported.
    fn rules(&mut self, v: &Option<Given<Vec<String>>>) -> Vec<Rule> {
        let Some(g) = v.as_ref() else {
            return Vec::new();
        };
        g.value
            .iter()
            .filter_map(|s| Rule::parse(s).map_err(|e| self.bad(g.name, e)).ok())
            .collect()
    }

    /// Seconds in `(0, MAX_TIMEOUT_SECS]`.
    fn secs(&mut self, v: &Option<Given<f64>>) -> Option<Duration> {
        let g = v.as_ref()?;
        if g.value.is_finite() && g.value > 0.0 && g.value <= MAX_TIMEOUT_SECS {
            Some(Duration::from_secs_f64(g.value))
        } else {
            self.bad(
                g.name,
                format!(
                    "{} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]",
                    g.value
                ),
            );
            None
        }
    }
}

/// The number of cores (the default for `threads`).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl RawFetchOptions {
    /// These options with every field `over` gives replaced by `over`'s.
    pub(crate) fn overlay(self, over: RawFetchOptions) -> RawFetchOptions {
        RawFetchOptions {
            concurrency: over.concurrency.or(self.concurrency),
            per_host: over.per_host.or(self.per_host),
            threads: over.threads.or(self.threads),
            timeout: over.timeout.or(self.timeout),
            connect_timeout: over.connect_timeout.or(self.connect_timeout),
            read_timeout: over.read_timeout.or(self.read_timeout),
            max_redirects: over.max_redirects.or(self.max_redirects),
            max_body: over.max_body.or(self.max_body),
            user_agent: over.user_agent.or(self.user_agent),
            headers: over.headers.or(self.headers),
            resolver: over.resolver.or(self.resolver),
            ca_file: over.ca_file.or(self.ca_file),
            insecure: over.insecure.or(self.insecure),
            follow: over.follow.or(self.follow),
            bind: over.bind.or(self.bind),
            robots: over.robots.or(self.robots),
            retries: over.retries.or(self.retries),
            host_delay_ms: over.host_delay_ms.or(self.host_delay_ms),
            per_ip: over.per_ip.or(self.per_ip),
            deny: over.deny.or(self.deny),
            allow: over.allow.or(self.allow),
            proxy_http: over.proxy_http.or(self.proxy_http),
            proxy_https: over.proxy_https.or(self.proxy_https),
            no_proxy: over.no_proxy.or(self.no_proxy),
            chain: over.chain.or(self.chain),
        }
    }

    /// The proxy settings of an environment, as the layer under the config file and the
    /// flags: `get` reads one variable (see `proxy::HTTP_PROXY_VARS` and its siblings for
    /// which, curl's rules).
    pub(crate) fn env(get: &dyn Fn(&str) -> Option<String>) -> RawFetchOptions {
        let given = |(var, value)| Given {
            value,
            name: Name::Env(var),
        };
        RawFetchOptions {
            proxy_http: proxy::env_proxy(&proxy::HTTP_PROXY_VARS, get).map(given),
            proxy_https: proxy::env_proxy(&proxy::HTTPS_PROXY_VARS, get).map(given),
            no_proxy: proxy::env_proxy(&proxy::NO_PROXY_VARS, get).map(given),
            ..RawFetchOptions::default()
        }
    }

    /// [`RawFetchOptions::env`] of this process, read once at start.
    pub(crate) fn process_env() -> RawFetchOptions {
        RawFetchOptions::env(&|k| std::env::var(k).ok())
    }

    /// The defaults of the service (`ringcrawl run`), a layer under its config file: it
    /// obeys robots.txt, retries transient failures, and connects only to the public
    /// internet (everything but loopback, private, link-local, CGNAT, multicast and
    /// unspecified addresses).
    pub(crate) fn service() -> RawFetchOptions {
        let file = |key| Name::File(key);
        RawFetchOptions {
            robots: Some(Given {
                value: true,
                name: file("fetch.robots"),
            }),
            retries: Some(Given {
                value: SERVICE_RETRIES,
                name: file("fetch.retries"),
            }),
            deny: Some(Given {
                value: NamedSet::SERVICE_DENIED.map(String::from).to_vec(),
                name: file("fetch.deny"),
            }),
            ..RawFetchOptions::default()
        }
    }

    /// Check every value and the rules between them, fill in defaults, and return the
    /// options, or every problem found.
    ///
    /// Cross-field rules: `per_host <= concurrency` and `connect_timeout <= timeout`. When
    /// the smaller-side option was given, breaking the rule is an error naming it; when it
    /// was left to its default, the default shrinks to fit (`-c 2` alone means two per host).
    pub(crate) fn validate(&self) -> Result<FetchOptions, OptionErrors> {
        let mut c = Check::default();
        let concurrency = c.count(&self.concurrency, 1, MAX_CONCURRENCY);
        let per_host = c.count(&self.per_host, 1, MAX_CONCURRENCY);
        let threads = c.count(&self.threads, 0, MAX_THREADS);
        let timeout = c.secs(&self.timeout);
        let connect_timeout = c.secs(&self.connect_timeout);
        let read_timeout = c.secs(&self.read_timeout);
        let max_redirects = c.count(&self.max_redirects, 0, MAX_REDIRECTS);
        let max_body = c.count(&self.max_body, 1, MAX_BODY);
        if let Some(g) = &self.user_agent {
            if g.value.is_empty() || g.value.chars().any(char::is_control) {
                c.bad(g.name, "must be non-empty printable text".into());
            }
        }
        let headers = c.headers(&self.headers);
        if let Some(g) = &self.follow {
            if let Err(e) = crate::html::FollowSelector::parse(&g.value) {
                c.bad(g.name, e.to_string());
            }
        }
        let retries = c.count(&self.retries, 0, MAX_RETRIES);
        let host_delay = c.count(&self.host_delay_ms, 0, MAX_HOST_DELAY_MS);
        let per_ip = c.count(&self.per_ip, 1, MAX_CONCURRENCY);
        let deny = c.rules(&self.deny);
        let allow = c.rules(&self.allow);
        let http_proxy = c.proxy(&self.proxy_http);
        // One setting for both schemes (`--proxy`, `all_proxy`) is checked (and reported) once.
        let https_proxy = if self.proxy_https == self.proxy_http {
            http_proxy.clone()
        } else {
            c.proxy(&self.proxy_https)
        };
        let proxy = Proxies {
            http: http_proxy,
            https: https_proxy,
            no_proxy: self
                .no_proxy
                .as_ref()
                .map_or_else(NoProxy::default, |g| NoProxy::parse(&g.value)),
        };

        let concurrency = concurrency.map_or(DEFAULT_CONCURRENCY, |v| v as usize);
        let per_host = match (per_host, &self.per_host) {
            (Some(v), Some(g)) if v as usize > concurrency => {
                c.bad(
                    g.name,
                    format!(
                        "{v} is more than {} {concurrency}",
                        given_or_default(&self.concurrency, "the default concurrency")
                    ),
                );
                concurrency
            }
            (Some(v), _) => v as usize,
            (None, _) => DEFAULT_PER_HOST.min(concurrency),
        };
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        let connect_timeout = match (connect_timeout, &self.connect_timeout) {
            (Some(v), Some(g)) if v > timeout => {
                c.bad(
                    g.name,
                    format!(
                        "{} s is longer than {} {} s",
                        g.value,
                        given_or_default(&self.timeout, "the default timeout"),
                        timeout.as_secs_f64()
                    ),
                );
                timeout
            }
            (Some(v), _) => v,
            (None, _) => DEFAULT_CONNECT_TIMEOUT.min(timeout),
        };
        if !c.0.is_empty() {
            return Err(OptionErrors(c.0));
        }
        let value = |g: &Option<Given<String>>| g.as_ref().map(|g| g.value.clone());
        // A `-H User-Agent` wins over `--user-agent`, as with curl.
        let user_agent = headers
            .iter()
            .find(|h| h.is("User-Agent"))
            .map(|h| h.value().to_string())
            .or_else(|| value(&self.user_agent))
            .unwrap_or_else(|| DEFAULT_USER_AGENT.into());
        Ok(FetchOptions {
            concurrency,
            per_host,
            threads: match threads {
                None | Some(0) => cores(),
                Some(n) => n as usize,
            },
            timeout,
            connect_timeout,
            read_timeout: read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
            max_redirects: max_redirects.map_or(DEFAULT_MAX_REDIRECTS, |v| v as u32),
            max_body: max_body.unwrap_or(DEFAULT_MAX_BODY),
            user_agent,
            headers,
            resolver: self.resolver.as_ref().map(|g| g.value),
            ca_file: self.ca_file.as_ref().map(|g| g.value.clone()),
            insecure: self.insecure.as_ref().is_some_and(|g| g.value),
            follow: value(&self.follow),
            bind: self
                .bind
                .as_ref()
                .map(|g| g.value.clone())
                .unwrap_or_default(),
            robots: self.robots.as_ref().is_some_and(|g| g.value),
            retries: retries.map_or(0, |v| v as u32),
            host_delay: Duration::from_millis(host_delay.unwrap_or(0)),
            per_ip: per_ip.map(|v| v as usize),
            policy: NetPolicy::new(deny, allow),
            proxy,
            chain: self.chain.as_ref().is_some_and(|g| g.value),
        })
    }
}

/// How a message names the other side of a cross-field rule.
fn given_or_default<T>(v: &Option<Given<T>>, default: &str) -> String {
    v.as_ref()
        .map_or_else(|| default.to_string(), |g| g.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag<T>(name: &'static str, value: T) -> Option<Given<T>> {
        Some(Given {
            value,
            name: Name::Flag(name),
        })
    }

    fn file<T>(name: &'static str, value: T) -> Option<Given<T>> {
        Some(Given {
            value,
            name: Name::File(name),
        })
    }

    fn messages(raw: &RawFetchOptions) -> Vec<String> {
        raw.validate()
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn nothing_given_is_the_defaults() {
        let o = RawFetchOptions::default().validate().unwrap();
        assert_eq!(o.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(o.per_host, DEFAULT_PER_HOST);
        assert_eq!(o.threads, cores());
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        assert_eq!(o.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(o.user_agent, DEFAULT_USER_AGENT);
        assert!(!o.insecure && o.bind.is_empty() && o.follow.is_none());
    }

    #[test]
    fn later_layers_win_field_by_field() {
        let file_layer = RawFetchOptions {
            concurrency: file("fetch.concurrency", 100),
            timeout: file("fetch.timeout_secs", 5.0),
            ..Default::default()
        };
        let flags = RawFetchOptions {
            concurrency: flag("--concurrency", 10),
            ..Default::default()
        };
        let o = file_layer.overlay(flags).validate().unwrap();
        assert_eq!(o.concurrency, 10);
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

    #[test]
    fn range_errors_name_the_key_as_its_source_spells_it() {
        let raw = RawFetchOptions {
            timeout: flag("--timeout", 0.0),
            concurrency: file("fetch.concurrency", 0),
            read_timeout: flag("--read-timeout", f64::NAN),
            max_redirects: file("fetch.max_redirects", 101),
            max_body: flag("--max-body", 0),
            threads: flag("--threads", -1),
            user_agent: flag("--user-agent", "a\tb".to_string()),
            follow: flag("--follow", "<<".to_string()),
            ..Default::default()
        };
        let m = messages(&raw);
        assert_eq!(m.len(), 8, "{m:#?}");
        for want in [
            "bad value for --timeout: 0 is not a number of seconds",
            "bad value for `fetch.concurrency`: 0 is out of range 1..=1000000",
            "bad value for --read-timeout: NaN",
            "bad value for `fetch.max_redirects`: 101 is out of range 0..=100",
            "bad value for --max-body: 0 is out of range",
            "bad value for --threads: -1 is out of range 0..=1024",
            "bad value for --user-agent: must be non-empty printable text",
            "bad value for --follow: invalid CSS selector",
        ] {
            assert!(
                m.iter().any(|l| l.starts_with(want)),
                "no {want:?} in {m:#?}"
            );
        }
    }

    #[test]
    fn cross_field_rules_blame_the_given_option() {
        let raw = RawFetchOptions {
            concurrency: file("fetch.concurrency", 4),
            per_host: flag("--per-host", 8),
            timeout: flag("--timeout", 1.0),
            connect_timeout: file("fetch.connect_timeout_secs", 2.0),
            ..Default::default()
        };
        assert_eq!(
            messages(&raw),
            vec![
                "bad value for --per-host: 8 is more than `fetch.concurrency` 4",
                "bad value for `fetch.connect_timeout_secs`: 2 s is longer than --timeout 1 s",
            ]
        );
        let raw = RawFetchOptions {
            per_host: flag("--per-host", 1000),
            ..Default::default()
        };
        assert_eq!(
            messages(&raw),
            vec!["bad value for --per-host: 1000 is more than the default concurrency 256"]
        );
    }

    #[test]
    fn defaults_shrink_to_fit_a_given_smaller_side() {
        let raw = RawFetchOptions {
            concurrency: flag("-c", 2),
            timeout: flag("--timeout", 5.0),
            ..Default::default()
        };
        let o = raw.validate().unwrap();
        assert_eq!((o.concurrency, o.per_host), (2, 2));
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(
            o.read_timeout, DEFAULT_READ_TIMEOUT,
            "no rule for read_timeout"
        );
    }

    #[test]
    fn politeness_retries_and_policy_validate_like_the_rest() {
        let raw = RawFetchOptions {
            retries: flag("--retries", 11),
            host_delay_ms: file("fetch.host_delay_ms", -1),
            per_ip: flag("--per-ip", 0),
            deny: flag("--deny", vec!["private".into(), "10.0.0.0/40".into()]),
            ..Default::default()
        };
        let m = messages(&raw);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("bad value for --retries: 11 is out of range 0..=10"));
        assert!(m[3].starts_with("bad value for --deny: `10.0.0.0/40` is not a CIDR"));
        let o = RawFetchOptions {
            retries: flag("--retries", 3),
            host_delay_ms: flag("--host-delay", 250),
            per_ip: flag("--per-ip", 2),
            deny: flag("--deny", vec!["loopback".into()]),
            allow: flag("--allow", vec!["127.0.0.9".into()]),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(o.retries, 3);
        assert_eq!(o.host_delay, Duration::from_millis(250));
        assert_eq!(o.per_ip, Some(2));
        assert!(o.policy.denies("127.0.0.1".parse().unwrap()).is_some());
        assert!(o.policy.denies("127.0.0.9".parse().unwrap()).is_none());
        let d = RawFetchOptions::default().validate().unwrap();
        assert!(!d.robots && d.retries == 0 && d.policy.allows_everything());
        assert_eq!((d.host_delay, d.per_ip), (Duration::ZERO, None));
    }

    #[test]
    fn the_service_obeys_robots_retries_and_stays_on_the_public_internet() {
        let o = RawFetchOptions::service().validate().unwrap();
        assert!(o.robots);
        assert_eq!(o.retries, SERVICE_RETRIES as u32);
        for ip in [
            "127.0.0.1",
            "10.0.0.5",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "0.0.0.0",
        ] {
            assert!(o.policy.denies(ip.parse().unwrap()).is_some(), "{ip}");
        }
        assert!(o.policy.denies("93.184.216.34".parse().unwrap()).is_none());
        // A file may open it up again.
        let file_layer = RawFetchOptions {
            allow: file("fetch.allow", vec!["loopback".into()]),
            robots: file("fetch.robots", false),
            ..Default::default()
        };
        let o = RawFetchOptions::service()
            .overlay(file_layer)
            .validate()
            .unwrap();
        assert!(!o.robots);
        assert!(o.policy.denies("127.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn headers_are_checked_and_a_header_user_agent_wins() {
        let raw = RawFetchOptions {
            headers: flag(
                "--header",
                vec![
                    "Host: x".into(),
                    "X-A 1".into(),
                    "X-B: a\nb".into(),
                    "X-Ok: 1".into(),
                ],
            ),
            ..Default::default()
        };
        assert_eq!(
            messages(&raw),
            vec![
                "bad value for --header: Host cannot be set: it is set from the URL",
                "bad value for --header: \"X-A 1\" is not `Name: value`",
                "bad value for --header: the value of X-B contains a control character (CR, LF, NUL...)",
            ]
        );
        let o = RawFetchOptions {
            user_agent: flag("--user-agent", "flag/1".to_string()),
            headers: file(
                "fetch.headers",
                vec!["X-A: 1".into(), "user-agent: header/2".into()],
            ),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(o.user_agent, "header/2");
        assert_eq!(o.headers.len(), 2);
        let o = RawFetchOptions {
            headers: flag("--header", vec!["User-Agent:".into()]),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(o.user_agent, "", "an empty -H User-Agent sends none");
        let d = RawFetchOptions::default().validate().unwrap();
        assert!(d.headers.is_empty());
    }

    fn env(pairs: &[(&str, &str)]) -> RawFetchOptions {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RawFetchOptions::env(&|k| map.get(k).cloned())
    }

    fn proxy_ports(o: &FetchOptions) -> (Option<u16>, Option<u16>) {
        let port = |p: &Option<Proxy>| p.as_ref().map(Proxy::port);
        (port(&o.proxy.http), port(&o.proxy.https))
    }

    #[test]
    fn proxies_come_from_the_environment_under_the_file_under_the_flags() {
        let e = env(&[
            ("http_proxy", "http://127.0.0.1:1"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("HTTPS_PROXY", "127.0.0.1:2"),
            ("no_proxy", "a.test"),
        ]);
        let o = e.clone().validate().unwrap();
        assert_eq!(proxy_ports(&o), (Some(1), Some(2)));
        assert_eq!(o.proxy.no_proxy, NoProxy::parse("a.test"));
        let only_all = env(&[("ALL_PROXY", "http://127.0.0.1:3")])
            .validate()
            .unwrap();
        assert_eq!(proxy_ports(&only_all), (Some(3), Some(3)));
        let upper_http_only = env(&[("HTTP_PROXY", "http://127.0.0.1:9")]);
        assert!(
            upper_http_only.validate().unwrap().proxy.is_empty(),
            "httpoxy"
        );

        // A file's proxy is for both schemes; a flag wins over both; NO_PROXY stays unless
        // a layer above gives its own list (curl: --noproxy overrides NO_PROXY).
        let file_layer = RawFetchOptions {
            proxy_http: file("fetch.proxy", "http://127.0.0.1:4".into()),
            proxy_https: file("fetch.proxy", "http://127.0.0.1:4".into()),
            ..Default::default()
        };
        let o = e.clone().overlay(file_layer.clone()).validate().unwrap();
        assert_eq!(proxy_ports(&o), (Some(4), Some(4)));
        assert_eq!(o.proxy.no_proxy, NoProxy::parse("a.test"));
        let flags = RawFetchOptions {
            proxy_http: flag("--proxy", "http://127.0.0.1:5".into()),
            proxy_https: flag("--proxy", "http://127.0.0.1:5".into()),
            no_proxy: flag("--noproxy", String::new()),
            ..Default::default()
        };
        let o = e
            .clone()
            .overlay(file_layer)
            .overlay(flags)
            .validate()
            .unwrap();
        assert_eq!(proxy_ports(&o), (Some(5), Some(5)));
        assert_eq!(o.proxy.no_proxy, NoProxy::default());
        // `--proxy ''`: no proxy, whatever the environment says.
        let off = RawFetchOptions {
            proxy_http: flag("--proxy", String::new()),
            proxy_https: flag("--proxy", String::new()),
            ..Default::default()
        };
        assert!(e.overlay(off).validate().unwrap().proxy.is_empty());
    }

    #[test]
    fn a_bad_proxy_names_its_variable_or_flag() {
        let e = env(&[("https_proxy", "socks5://127.0.0.1:1080")]);
        assert_eq!(
            messages(&e),
            vec![
                "bad value for environment variable https_proxy: `socks5://127.0.0.1:1080`: \
                 SOCKS proxies are not supported, only http://"
            ]
        );
        let raw = RawFetchOptions {
            proxy_http: flag("--proxy", "https://p:443".into()),
            proxy_https: flag("--proxy", "https://p:443".into()),
            ..Default::default()
        };
        let m = messages(&raw);
        assert_eq!(m.len(), 1, "one setting, one message: {m:#?}");
        assert!(m[0].starts_with("bad value for --proxy: `https://p:443`: https:// proxies"));
    }

    #[test]
    fn a_resolver_without_a_port_is_on_port_53() {
        let ok = |s: &str| parse_resolver(s).unwrap().to_string();
        assert_eq!(ok("127.0.0.1"), "127.0.0.1:53");
        assert_eq!(ok("127.0.0.1:5353"), "127.0.0.1:5353");
        assert_eq!(ok("::1"), "[::1]:53");
        assert_eq!(ok("[::1]"), "[::1]:53");
        assert_eq!(ok("[::1]:5353"), "[::1]:5353");
        assert_eq!(ok("2001:db8::1"), "[2001:db8::1]:53");
        for bad in [
            "localhost",
            "",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[::1]:x",
            "::1:53x",
        ] {
            let e = parse_resolver(bad).unwrap_err();
            assert!(
                e.contains("is not IP, IP:PORT or [IPv6]:PORT"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn threads_zero_means_cores() {
        let raw = RawFetchOptions {
            threads: flag("--threads", 0),
            ..Default::default()
        };
        assert_eq!(raw.validate().unwrap().threads, cores());
        let raw = RawFetchOptions {
            threads: file("fetch.threads", 3),
            ..Default::default()
        };
        assert_eq!(raw.validate().unwrap().threads, 3);
    }
}
