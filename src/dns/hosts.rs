//! The hosts file (`/etc/hosts`) as one compact, immutable table: parsed once per run and
//! shared by every worker, consulted before any DNS query.
//!
//! Semantics follow glibc's `files` source in `hosts: files dns`: a name listed in the file is
//! answered from the file alone (no query for the other address family), names are matched
//! case-insensitively without a trailing dot, and lines are `ADDRESS NAME [ALIAS...]` with
//! `#` comments. Unparsable addresses and zone-scoped IPv6 addresses are skipped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

/// The system hosts file.
pub const SYSTEM_HOSTS: &str = "/etc/hosts";

/// Name -> addresses, IPv4 before IPv6 (the order the fetch path tries them), file order
/// within a family, duplicates removed.
#[derive(Debug, Default)]
pub struct HostsTable {
    by_name: HashMap<Box<str>, Box<[IpAddr]>>,
}

impl HostsTable {
    /// Read `path`; a missing or unreadable file is an empty table (as for the C library).
    pub fn load(path: &Path) -> HostsTable {
        std::fs::read(path)
            .map(|bytes| HostsTable::parse(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    }

    /// Parse hosts-file text.
    pub fn parse(text: &str) -> HostsTable {
        let mut lists: HashMap<Box<str>, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_ascii_whitespace();
            let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                let name = normalize(name);
                if name.is_empty() {
                    continue;
                }
                let ips = lists.entry(name.into_boxed_str()).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let by_name = lists
            .into_iter()
            .map(|(name, mut ips)| {
                ips.sort_by_key(|ip| ip.is_ipv6()); // stable: file order within a family
                (name, ips.into_boxed_slice())
            })
            .collect();
        HostsTable { by_name }
    }

    /// The addresses listed for `name` (already lower-case, no trailing dot), if any.
    pub fn get(&self, name: &str) -> Option<Rc<[IpAddr]>> {
        self.by_name.get(name).map(|ips| Rc::from(&ips[..]))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Lower-case, without a trailing dot: the form lookups use.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(t: &HostsTable, name: &str) -> Vec<String> {
        t.get(name)
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn names_aliases_comments_and_families() {
        let t = HostsTable::parse(
            "# comment line\n\
             127.0.0.1\tlocalhost\n\
             ::1 localhost ip6-localhost\n\
             10.0.0.5 Web.Example. web # trailing comment\n\
             fe80::1%eth0 scoped.example\n\
             not-an-ip broken.example\n\
             10.0.0.6 web.example\n\
             10.0.0.5 web.example\n\
             \n   \n\
             192.0.2.1\n",
        );
        assert_eq!(ips(&t, "localhost"), ["127.0.0.1", "::1"]);
        assert_eq!(ips(&t, "ip6-localhost"), ["::1"]);
        assert_eq!(ips(&t, "web.example"), ["10.0.0.5", "10.0.0.6"]);
        assert_eq!(ips(&t, "web"), ["10.0.0.5"]);
        assert!(t.get("scoped.example").is_none());
        assert!(t.get("broken.example").is_none());
        assert!(t.get("comment").is_none());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn ipv4_comes_first_whatever_the_file_order() {
        let t = HostsTable::parse("2001:db8::1 dual\n192.0.2.7 dual\n2001:db8::2 dual\n");
        assert_eq!(ips(&t, "dual"), ["192.0.2.7", "2001:db8::1", "2001:db8::2"]);
    }

    #[test]
    fn missing_file_is_empty() {
        let t = HostsTable::load(Path::new("/nonexistent/ringcrawl/hosts"));
        assert!(t.is_empty());
    }

    #[test]
    fn stays_compact_for_large_files() {
        let text: String = (0..20_000)
            .map(|i| format!("127.1.{}.{} host{i}.example\n", i / 250, i % 250 + 1))
            .collect();
        let t = HostsTable::parse(&text);
        assert_eq!(t.len(), 20_000);
        assert_eq!(ips(&t, "host19999.example"), ["127.1.79.250"]);
    }
}
