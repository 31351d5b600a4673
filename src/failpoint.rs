//! Failure injection for the tests of the binary. In debug builds, the environment variable
//! `RINGCRAWL_FAILPOINT=NAME[:N]` makes the point `NAME` panic the Nth time it is reached
//! (the first time without `:N`); release builds compile every point to nothing. Tests use
//! it to prove that a panic outside the per-URL catch (slot bookkeeping, the worker loop)
//! ends the run promptly with a non-zero exit instead of a hang.

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

    /// The armed point and the hit that panics, from [`VAR`].
    fn armed() -> Option<&'static (String, u64)> {
        static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let v = std::env::var(VAR).ok()?;
                Some(match v.split_once(':') {
                    Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                    None => (v, 1),
                })
            })
            .as_ref()
    }

    pub(super) fn hit(name: &str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        if let Some((armed, nth)) = armed() {
            if armed == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
                panic!("failpoint {name} reached");
            }
        }
    }
}
