//! Which servers to ask and how: the system's `/etc/resolv.conf` (parsed with the
//! `resolv-conf` crate, read once per run) or one `--resolver IP:PORT`, and the names a
//! lookup tries (the search list).
//!
//! Followed from resolv.conf: `nameserver` (at most [`MAX_NAMESERVERS`], port 53; none
//! listed, or no file: 127.0.0.1 as for the C library), `options timeout: attempts: rotate
//! ndots: edns0 no-tld-query`, and `search` / `domain` (the last of the two wins). Not
//! followed: `sortlist`, `use-vc`, `no-aaaa` (AAAA follows the machine's addresses, see
//! `addrconfig`), and link-local servers with an interface name (`fe80::1%eth0`): skipped.
//!
//! The search list, when resolv.conf has one: a name with fewer dots than `ndots` tries each
//! search domain, then itself (unless `no-tld-query`), as the C library does. A name with
//! `ndots` dots or more, or written with a final dot, is asked as it is and only so: the C
//! library would try the search domains after it failed, but a crawler's names are public
//! names, and that fallback would multiply the queries of every dead host by the length of
//! the list and could answer a public URL with an internal host of the same prefix.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The system resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// The server the C library asks without a resolv.conf or a `nameserver` line in it.
pub const DEFAULT_SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT);
/// Servers used at most (glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// Search domains used at most (glibc's `MAXDNSRCH`).
pub const MAX_SEARCH_DOMAINS: usize = 6;
/// Rounds over the servers at most (glibc's `RES_MAXRETRY`).
pub const MAX_ATTEMPTS: u32 = 5;
/// Longest wait for one try (glibc's `RES_MAXRETRANS`).
pub const MAX_TRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `ndots` (glibc's `RES_MAXNDOTS`).
pub const MAX_NDOTS: u32 = 15;
/// Longest DNS name in text form, without the final dot.
pub const MAX_NAME_LEN: usize = 253;

/// Resolver settings as the stub resolver uses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvConf {
    /// Servers in resolv.conf order (never empty).
    pub servers: Vec<SocketAddr>,
    /// Rounds over the servers.
    pub attempts: u32,
    /// Wait for one try before the next goes out (the lookup's own bound may cut it).
    pub try_timeout: Duration,
    /// Start each query at the next server instead of the first.
    pub rotate: bool,
    /// Search domains: lower case, without dots at either end.
    pub search: Vec<String>,
    pub ndots: u32,
    /// Send EDNS0 (a larger UDP payload) with queries.
    pub edns0: bool,
    /// A name without dots is not asked as a top-level name after the search list.
    pub no_tld_query: bool,
}

impl ResolvConf {
    /// The settings for `server` alone (`--resolver`): defaults otherwise, no search list.
    pub fn server(server: SocketAddr) -> ResolvConf {
        ResolvConf {
            servers: vec![server],
            ..ResolvConf::parse("")
        }
    }

    /// Read `path`; a missing or unreadable file gives the defaults (127.0.0.1), as for the
    /// C library.
    pub fn load(path: &Path) -> ResolvConf {
        std::fs::read(path)
            .map(|bytes| ResolvConf::parse_bytes(&bytes))
            .unwrap_or_else(|_| ResolvConf::parse(""))
    }

    /// Parse resolv.conf text; lines it cannot read are skipped (as the C library does).
    pub fn parse(text: &str) -> ResolvConf {
        ResolvConf::parse_bytes(text.as_bytes())
    }

    fn parse_bytes(bytes: &[u8]) -> ResolvConf {
        let (cfg, _skipped) = resolv_conf::Config::parse_with_errors(bytes);
        let mut servers: Vec<SocketAddr> = cfg
            .nameservers
            .iter()
            .filter_map(|ip| match ip {
                resolv_conf::ScopedIp::V4(v4) => Some(IpAddr::V4(*v4)),
                resolv_conf::ScopedIp::V6(v6, None) => Some(IpAddr::V6(*v6)),
                resolv_conf::ScopedIp::V6(_, Some(_)) => None,
            })
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
            .take(MAX_NAMESERVERS)
            .collect();
        if servers.is_empty() {
            servers.push(DEFAULT_SERVER);
        }
        let search = cfg
            .get_last_search_or_domain()
            .map(|d| d.trim_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .take(MAX_SEARCH_DOMAINS)
            .collect();
        ResolvConf {
            servers,
            attempts: cfg.attempts.clamp(1, MAX_ATTEMPTS),
            try_timeout: Duration::from_secs(cfg.timeout.into())
                .clamp(Duration::from_secs(1), MAX_TRY_TIMEOUT),
            rotate: cfg.rotate,
            search,
            ndots: cfg.ndots.min(MAX_NDOTS),
            edns0: cfg.edns0,
            no_tld_query: cfg.no_tld_query,
        }
    }

    /// The names to ask for `name` (lower case, no final dot), in order; `absolute`: it was
    /// written with a final dot. See the module doc for the rules.
    pub fn candidates(&self, name: &str, absolute: bool) -> Vec<String> {
        if !self.searches(name, absolute) {
            return vec![name.to_string()];
        }
        let mut names: Vec<String> = self
            .search
            .iter()
            .map(|domain| format!("{name}.{domain}"))
            .filter(|n| n.len() <= MAX_NAME_LEN)
            .collect();
        // `no-tld-query` keeps a name without dots from being asked as a top-level name.
        if !self.no_tld_query || name.contains('.') {
            names.push(name.to_string());
        }
        names
    }

    /// Whether `name` goes through the search list (so `name` and `name.` differ).
    pub fn searches(&self, name: &str, absolute: bool) -> bool {
        !absolute && !self.search.is_empty() && dots(name) < self.ndots
    }
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf::parse("")
    }
}

fn dots(name: &str) -> u32 {
    u32::try_from(name.bytes().filter(|&b| b == b'.').count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn servers_options_and_search() {
        let c = ResolvConf::parse(
            "# comment\n\
             nameserver 10.0.0.2\n\
             nameserver 2001:db8::53\n\
             nameserver fe80::1%eth0\n\
             nameserver 10.0.0.3\n\
             nameserver 10.0.0.4\n\
             domain ignored.example\n\
             search Corp.Example. lab.example\n\
             options timeout:3 attempts:4 rotate ndots:2 edns0 no-tld-query\n\
             sortlist 10.0.0.0/8\n",
        );
        assert_eq!(
            c.servers,
            [
                addr("10.0.0.2:53"),
                addr("[2001:db8::53]:53"),
                addr("10.0.0.3:53")
            ]
        );
        assert_eq!(c.attempts, 4);
        assert_eq!(c.try_timeout, Duration::from_secs(3));
        assert!(c.rotate && c.edns0 && c.no_tld_query);
        assert_eq!(c.ndots, 2);
        assert_eq!(c.search, ["corp.example", "lab.example"]);
    }

    #[test]
    fn defaults_without_a_file_or_servers() {
        let c = ResolvConf::load(Path::new("/nonexistent/ringcrawl/resolv.conf"));
        assert_eq!(c.servers, [DEFAULT_SERVER]);
        assert_eq!((c.attempts, c.try_timeout), (2, Duration::from_secs(5)));
        assert!(!c.rotate && !c.edns0 && c.search.is_empty());
        assert_eq!(c.ndots, 1);
        assert_eq!(
            ResolvConf::parse("options rotate\n").servers,
            [DEFAULT_SERVER]
        );
    }

    #[test]
    fn out_of_range_options_are_clamped() {
        let c = ResolvConf::parse("nameserver 10.0.0.2\noptions timeout:0 attempts:0 ndots:99\n");
        assert_eq!(
            (c.attempts, c.try_timeout, c.ndots),
            (1, Duration::from_secs(1), 15)
        );
        let c = ResolvConf::parse("options timeout:300 attempts:50\n");
        assert_eq!((c.attempts, c.try_timeout), (MAX_ATTEMPTS, MAX_TRY_TIMEOUT));
    }

    #[test]
    fn the_last_of_search_and_domain_wins() {
        let c = ResolvConf::parse("search a.example b.example\ndomain c.example\n");
        assert_eq!(c.search, ["c.example"]);
        assert_eq!(ResolvConf::parse("search .\n").search, Vec::<String>::new());
    }

    #[test]
    fn a_given_server_has_no_search_list() {
        let c = ResolvConf::server(addr("127.0.0.53:5353"));
        assert_eq!(c.servers, [addr("127.0.0.53:5353")]);
        assert_eq!(c.candidates("intranet", false), ["intranet"]);
    }

    #[test]
    fn candidates_follow_ndots_and_the_final_dot() {
        let c = ResolvConf::parse("search corp.example lab.example\n");
        // Fewer dots than ndots (1): the search list, then the name itself.
        assert_eq!(
            c.candidates("intranet", false),
            ["intranet.corp.example", "intranet.lab.example", "intranet"]
        );
        // Written with a final dot: as it is.
        assert_eq!(c.candidates("intranet", true), ["intranet"]);
        // Enough dots: as it is, and only so.
        assert_eq!(c.candidates("www.example.com", false), ["www.example.com"]);
        let c = ResolvConf::parse("search corp.example\noptions ndots:3 no-tld-query\n");
        assert_eq!(
            c.candidates("a.b", false),
            ["a.b.corp.example", "a.b"],
            "no-tld-query spares names with a dot"
        );
        assert_eq!(c.candidates("host", false), ["host.corp.example"]);
        assert_eq!(c.candidates("a.b.c.d", false), ["a.b.c.d"]);
        // No search list: as it is.
        assert_eq!(ResolvConf::parse("").candidates("host", false), ["host"]);
    }

    #[test]
    fn overlong_candidates_are_skipped() {
        let c = ResolvConf::parse("search corp.example\n");
        let long = "x".repeat(MAX_NAME_LEN - 4);
        // `long.corp.example` would be too long: only the name itself.
        assert_eq!(c.candidates(&long, false), [long.as_str()]);
    }
}
