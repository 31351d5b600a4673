//! Whether AAAA records are worth asking for: only when this machine has an IPv6 address
//! that can reach beyond it (the rule of getaddrinfo's `AI_ADDRCONFIG`), looked at again
//! every [`ADDRCONFIG_RECHECK`]. Without one, IPv6 answers could never be connected to, and
//! skipping them halves the queries.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::Families;

/// The kernel's list of configured IPv6 addresses, through `/proc/self`: systemd's
/// `ProcSubset=pid` (in the shipped unit) hides `/proc/net`, not `/proc/self/net`.
pub const IF_INET6: &str = "/proc/self/net/if_inet6";
/// How long a resolver trusts its look at the machine's IPv6 addresses: a daemon may start
/// before its IPv6 address is configured, and then asks for AAAA within this time after.
pub const ADDRCONFIG_RECHECK: Duration = Duration::from_secs(30);
/// `if_inet6` scope values of addresses that reach beyond the link: global and site-local
/// (loopback is 0x10, link-local 0x20).
const ROUTABLE_SCOPES: [u8; 2] = [0x00, 0x40];

/// Whether `if_inet6` text lists an address of global or site scope on an interface other
/// than loopback.
pub fn has_routable_ipv6(if_inet6: &str) -> bool {
    if_inet6.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, _, _, scope, _, name] => {
                *name != "lo"
                    && u8::from_str_radix(scope, 16).is_ok_and(|s| ROUTABLE_SCOPES.contains(&s))
            }
            _ => false,
        }
    })
}

/// What to ask for now, judged from the machine's addresses (no [`IF_INET6`] means IPv6 is
/// off in the kernel).
pub fn machine_families() -> Families {
    if std::fs::read_to_string(IF_INET6).is_ok_and(|t| has_routable_ipv6(&t)) {
        Families::Both
    } else {
        Families::Ipv4Only
    }
}

/// `fixed` if configured; else the last `look` at the machine if it is younger than
/// [`ADDRCONFIG_RECHECK`], else a new one (remembered in `auto` with when to look again).
pub fn decide_families(
    fixed: Option<Families>,
    auto: &Cell<(Families, Instant)>,
    now: Instant,
    look: impl FnOnce() -> Families,
) -> Families {
    if let Some(fixed) = fixed {
        return fixed;
    }
    let (last, next_look) = auto.get();
    if now < next_look {
        return last;
    }
    let current = look();
    auto.set((current, now + ADDRCONFIG_RECHECK));
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_looked_at_again_after_the_recheck_time() {
        let t0 = Instant::now();
        let auto = Cell::new((Families::Both, t0));
        let looks = Cell::new(0);
        let look = |answer| {
            let looks = &looks;
            move || {
                looks.set(looks.get() + 1);
                answer
            }
        };
        // First query: looks (IPv4 only at boot).
        let f = decide_families(None, &auto, t0, look(Families::Ipv4Only));
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 1));
        // Within the recheck time: the same answer, no new look, even though IPv6 came up.
        let soon = t0 + ADDRCONFIG_RECHECK - Duration::from_millis(1);
        let f = decide_families(None, &auto, soon, look(Families::Both));
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 1));
        // After it: looks again and asks for AAAA from then on.
        let later = t0 + ADDRCONFIG_RECHECK;
        let f = decide_families(None, &auto, later, look(Families::Both));
        assert_eq!((f, looks.get()), (Families::Both, 2));
        // A configured choice never looks.
        let f = decide_families(
            Some(Families::Ipv4Only),
            &auto,
            later + ADDRCONFIG_RECHECK,
            look(Families::Both),
        );
        assert_eq!((f, looks.get()), (Families::Ipv4Only, 2));
    }

    #[test]
    fn routable_ipv6_is_global_or_site_scope_off_loopback() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let link = "fe80000000000000021122fffe334455 02 40 20 80     eth0\n";
        let global = "20010db8000000000000000000000001 02 40 00 80     eth0\n";
        assert!(!has_routable_ipv6(""));
        assert!(!has_routable_ipv6(lo));
        assert!(!has_routable_ipv6(&format!("{lo}{link}")));
        assert!(has_routable_ipv6(&format!("{lo}{link}{global}")));
        assert!(!has_routable_ipv6("garbage line\n"));
    }

    #[test]
    fn ipv6_is_looked_at_through_proc_self() {
        // `ProcSubset=pid` hides /proc/net but not /proc/self/net.
        assert!(IF_INET6.starts_with("/proc/self/net/"), "{IF_INET6}");
        if std::path::Path::new("/proc/net/if_inet6").exists() {
            let via_self = std::fs::read_to_string(IF_INET6).unwrap();
            let via_net = std::fs::read_to_string("/proc/net/if_inet6").unwrap();
            assert_eq!(has_routable_ipv6(&via_self), has_routable_ipv6(&via_net));
        }
    }
}
