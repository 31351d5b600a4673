//! Failure injection for the tests of the binary. In debug builds, the environment variable
//! `RINGCRAWL_FAILPOINT=NAME[:N]` makes the point `NAME` panic the Nth time it is reached
//! (the first time without `:N`), and `RINGCRAWL_FAILPOINT=NAME:N:abort` makes it abort the
//! process there instead (one line on stderr, then SIGABRT: a crash at that exact moment,
//! where a panic could be caught, as a tokio task's is); release builds compile every point
//! to nothing. Tests use it to prove that a panic outside the per-URL catch (slot
//! bookkeeping, the worker loop) ends the run promptly with a non-zero exit instead of a
//! hang, and that a node killed in the middle of publishing a spool list loses and doubles
//! none of its lines.

/// Reach the failure point `name`.
#[inline]
pub(crate) fn hit(name: &str) {
    #[cfg(debug_assertions)]
    armed::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The variable naming the armed point.
    const VAR: &str = "RINGCRAWL_FAILPOINT";
    /// The suffix that makes the armed point abort the process instead of panicking.
    const ABORT: &str = ":abort";

    /// What the armed point does when its hit comes.
    #[derive(Debug, PartialEq)]
    enum Action {
        Panic,
        Abort,
    }

    /// The armed point, the hit that fails (1-based) and how.
    #[derive(Debug, PartialEq)]
    struct Armed {
        name: String,
        nth: u64,
        action: Action,
    }

    /// `NAME`, `NAME:N` (an `N` that is not a number counts as 1) or `NAME:N:abort`.
    fn parse(v: &str) -> Armed {
        let (v, action) = match v.strip_suffix(ABORT) {
            Some(rest) if rest.contains(':') => (rest, Action::Abort),
            _ => (v, Action::Panic),
        };
        let (name, nth) = match v.split_once(':') {
            Some((name, n)) => (name, n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Armed {
            name: name.to_string(),
            nth,
            action,
        }
    }

    /// The armed point, from [`VAR`].
    fn armed() -> Option<&'static Armed> {
        static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
        ARMED
            .get_or_init(|| std::env::var(VAR).ok().map(|v| parse(&v)))
            .as_ref()
    }

    pub(super) fn hit(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        if let Some(a) = armed() {
            if a.name == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == a.nth {
                match a.action {
                    Action::Panic => panic!("failpoint {name} reached"),
                    Action::Abort => {
                        eprintln!("failpoint {name} reached: aborting");
                        std::process::abort();
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn armed(name: &str, nth: u64, action: Action) -> Armed {
            Armed {
                name: name.to_string(),
                nth,
                action,
            }
        }

        #[test]
        fn a_failpoint_panics_at_its_nth_hit_unless_told_to_abort() {
            use Action::{Abort, Panic};
            for (v, want) in [
                ("slot-next", armed("slot-next", 1, Panic)),
                ("slot-next:200", armed("slot-next", 200, Panic)),
                ("slot-next:x", armed("slot-next", 1, Panic)),
                ("slot-next:abort", armed("slot-next", 1, Panic)),
                ("slot-next:2:x", armed("slot-next", 1, Panic)),
                (
                    "cluster-spool-stored:20:abort",
                    armed("cluster-spool-stored", 20, Abort),
                ),
                (
                    "cluster-spool-stored:x:abort",
                    armed("cluster-spool-stored", 1, Abort),
                ),
            ] {
                assert_eq!(parse(v), want, "{v}");
            }
        }
    }
}
