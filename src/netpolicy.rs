//! Where ringcrawl may connect: the network policy (`--deny`/`--allow`, `deny`/`allow` in the
//! config), sans-IO. A rule is a CIDR (`10.0.0.0/8`, `2001:db8::/32`), a single address, or
//! a named set ([`NamedSet`]); an address is denied when a deny rule matches it and no allow
//! rule does (allow rules are exceptions: `--deny all --allow 203.0.113.0/24` is an
//! allow-list). IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are judged as the IPv4
//! address they carry, so they cannot slip past an IPv4 rule.
//!
//! `fetch` checks every address before it connects: literal IPs, each resolved address
//! (denied ones are dropped; a name with only denied addresses fails with `denied`),
//! redirect targets, `--follow` hops and robots.txt fetches alike, so a public page cannot
//! send the crawler to cloud metadata or an internal service.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Named address sets a rule may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NamedSet {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16) and unique-local fc00::/7.
    Private,
    /// 169.254/16 (cloud metadata lives at 169.254.169.254) and fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT, 100.64/10.
    Cgnat,
    /// 224/4 and ff00::/8.
    Multicast,
    /// 0.0.0.0/8 ("this network": connecting to it reaches this host) and ::.
    Unspecified,
    /// Every address (for allow-lists: `--deny all --allow NET`).
    All,
}

impl NamedSet {
    /// Every set, with the name rules use.
    pub(crate) const ALL: [(&'static str, NamedSet); 7] = [
        ("loopback", NamedSet::Loopback),
        ("private", NamedSet::Private),
        ("link-local", NamedSet::LinkLocal),
        ("cgnat", NamedSet::Cgnat),
        ("multicast", NamedSet::Multicast),
        ("unspecified", NamedSet::Unspecified),
        ("all", NamedSet::All),
    ];

    /// The sets the shipped service configuration denies: everything that is not the
    /// public internet.
    pub(crate) const SERVICE_DENIED: [&'static str; 6] = [
        "loopback",
        "private",
        "link-local",
        "cgnat",
        "multicast",
        "unspecified",
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(n, _)| *n)
            .expect("every set is listed")
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (NamedSet::All, _) => true,
            (NamedSet::Loopback, IpAddr::V4(a)) => a.is_loopback(),
            (NamedSet::Loopback, IpAddr::V6(a)) => a.is_loopback(),
            (NamedSet::Private, IpAddr::V4(a)) => a.is_private(),
            (NamedSet::Private, IpAddr::V6(a)) => (a.segments()[0] & 0xfe00) == 0xfc00,
            (NamedSet::LinkLocal, IpAddr::V4(a)) => a.is_link_local(),
            (NamedSet::LinkLocal, IpAddr::V6(a)) => (a.segments()[0] & 0xffc0) == 0xfe80,
            (NamedSet::Cgnat, IpAddr::V4(a)) => {
                a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64
            }
            (NamedSet::Cgnat, IpAddr::V6(_)) => false,
            (NamedSet::Multicast, IpAddr::V4(a)) => a.is_multicast(),
            (NamedSet::Multicast, IpAddr::V6(a)) => a.is_multicast(),
            (NamedSet::Unspecified, IpAddr::V4(a)) => a.octets()[0] == 0,
            (NamedSet::Unspecified, IpAddr::V6(a)) => a.is_unspecified(),
        }
    }
}

/// One rule: a network or a named set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    Net(IpNet),
    Set(NamedSet),
}

impl Rule {
    /// A rule as written: a set name, a CIDR, or an address.
    pub(crate) fn parse(s: &str) -> Result<Rule, String> {
        let s = s.trim();
        if let Some((_, set)) = NamedSet::ALL.iter().find(|(n, _)| *n == s) {
            return Ok(Rule::Set(*set));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Rule::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(ip)));
        }
        let names: Vec<&str> = NamedSet::ALL.iter().map(|(n, _)| *n).collect();
        Err(format!(
            "`{s}` is not a CIDR, an address, or one of {}",
            names.join(", ")
        ))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Rule::Set(set) => set.contains(ip),
            Rule::Net(net) => net.contains(&ip),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Set(s) => f.write_str(s.name()),
            Rule::Net(n) => write!(f, "{n}"),
        }
    }
}

/// The deny and allow rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NetPolicy {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
}

impl NetPolicy {
    pub(crate) fn new(deny: Vec<Rule>, allow: Vec<Rule>) -> NetPolicy {
        NetPolicy { deny, allow }
    }

    /// No deny rule: every address is allowed (and nothing needs checking).
    pub(crate) fn allows_everything(&self) -> bool {
        self.deny.is_empty()
    }

    /// The deny rule that forbids `ip`, or `None` when it may be connected to.
    pub(crate) fn denies(&self, ip: IpAddr) -> Option<&Rule> {
        if self.deny.is_empty() {
            return None;
        }
        let ip = canonical(ip);
        let rule = self.deny.iter().find(|r| r.contains(ip))?;
        (!self.allow.iter().any(|r| r.contains(ip))).then_some(rule)
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Addresses every named set must (and must not) contain, for tests and documentation.
#[cfg(test)]
const EXAMPLES: &[(&str, &str, bool)] = &[
    ("loopback", "127.0.0.1", true),
    ("loopback", "127.255.0.9", true),
    ("loopback", "::1", true),
    ("loopback", "128.0.0.1", false),
    ("private", "10.0.0.5", true),
    ("private", "172.16.0.1", true),
    ("private", "172.31.255.255", true),
    ("private", "172.32.0.1", false),
    ("private", "192.168.1.1", true),
    ("private", "fd12::1", true),
    ("private", "fc00::1", true),
    ("private", "fe00::1", false),
    ("link-local", "169.254.169.254", true),
    ("link-local", "fe80::1", true),
    ("link-local", "febf::1", true),
    ("link-local", "fec0::1", false),
    ("cgnat", "100.64.0.1", true),
    ("cgnat", "100.127.255.255", true),
    ("cgnat", "100.128.0.1", false),
    ("multicast", "224.0.0.1", true),
    ("multicast", "ff02::1", true),
    ("unspecified", "0.0.0.0", true),
    ("unspecified", "0.1.2.3", true),
    ("unspecified", "::", true),
    ("all", "8.8.8.8", true),
    ("all", "2001:db8::1", true),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|s| Rule::parse(s).unwrap()).collect()
    }

    #[test]
    fn named_sets_hold_what_their_rfcs_say() {
        for (set, addr, inside) in EXAMPLES {
            let rule = Rule::parse(set).unwrap();
            assert_eq!(rule.contains(ip(addr)), *inside, "{set} {addr}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            for name in NamedSet::SERVICE_DENIED {
                assert!(
                    !Rule::parse(name).unwrap().contains(ip(public)),
                    "{name} {public}"
                );
            }
        }
    }

    #[test]
    fn rules_parse_cidrs_addresses_and_names_and_say_why_not() {
        assert_eq!(
            Rule::parse("10.1.2.3/8").unwrap(),
            Rule::Net("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            Rule::parse(" 192.0.2.7 ").unwrap(),
            Rule::Net("192.0.2.7/32".parse().unwrap())
        );
        assert_eq!(
            Rule::parse("private").unwrap(),
            Rule::Set(NamedSet::Private)
        );
        assert_eq!(Rule::parse("link-local").unwrap().to_string(), "link-local");
        for bad in ["", "10.0.0.0/33", "privat", "example.com", "1.2.3"] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains("is not a CIDR"), "{bad}: {e}");
        }
    }

    #[test]
    fn allow_rules_are_exceptions_to_deny_rules() {
        let p = NetPolicy::new(rules(&["loopback", "private"]), rules(&["127.0.0.2"]));
        assert!(p.denies(ip("127.0.0.1")).is_some());
        assert_eq!(
            p.denies(ip("10.9.9.9")).map(ToString::to_string),
            Some("private".into())
        );
        assert!(p.denies(ip("127.0.0.2")).is_none(), "the allowed exception");
        assert!(p.denies(ip("93.184.216.34")).is_none(), "public");
        // An allow-list.
        let p = NetPolicy::new(rules(&["all"]), rules(&["203.0.113.0/24"]));
        assert!(p.denies(ip("203.0.113.9")).is_none());
        assert!(p.denies(ip("198.51.100.1")).is_some());
        // Nothing denied: nothing to check.
        let p = NetPolicy::new(vec![], rules(&["10.0.0.0/8"]));
        assert!(p.allows_everything());
        assert!(p.denies(ip("10.0.0.1")).is_none());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_judged_as_ipv4() {
        let p = NetPolicy::new(rules(&["link-local", "10.0.0.0/8"]), vec![]);
        assert!(p.denies(ip("::ffff:169.254.169.254")).is_some());
        assert!(p.denies(ip("::ffff:10.0.0.1")).is_some());
        assert!(p.denies(ip("::ffff:8.8.8.8")).is_none());
    }
}
