//! Sans-IO partition ownership: how many partitions a node may hold (its fair share of the
//! live nodes), which free ones to try to take, which extras to give back, and when a lease
//! this node holds must be treated as lost because it could not be renewed in time. The node
//! loop (`node`) feeds it the buckets' contents and the clock, and carries out the answer
//! with key-value operations (create = take, CAS update = renew, delete = give back).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::wire::fnv1a;

/// A lease is treated as lost this fraction of a lease before the server would drop it, so
/// that a node stops consuming before another node can take its partition over.
pub const LOCAL_MARGIN_DIVISOR: u32 = 4;
/// Rounds (heartbeat, renewals, takes) per lease.
pub const ROUNDS_PER_LEASE: u32 = 3;

/// Partitions one of `live` nodes may hold: `ceil(partitions / live)`, so the shares of the
/// live nodes cover every partition.
pub fn fair_share(partitions: u32, live: usize) -> usize {
    (partitions as usize).div_ceil(live.max(1))
}

/// What the buckets say this round.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub partitions: u32,
    /// Nodes with a live heartbeat (this one included).
    pub live_nodes: usize,
    /// Partitions with a lease, whoever holds it.
    pub leased: BTreeSet<u32>,
    /// Partitions this node holds (and keeps consuming).
    pub held: BTreeSet<u32>,
    /// Partitions this node is giving back (no longer consumed, lease kept until drained).
    pub releasing: BTreeSet<u32>,
}

/// What to do this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free partitions to try to take, in order, until `want` of them succeeded.
    pub candidates: Vec<u32>,
    pub want: usize,
    /// Held partitions to stop consuming and give back once drained.
    pub give_back: Vec<u32>,
}

/// Decide this round for node `me`. A node under its share tries the free partitions,
/// starting at a place that depends on its id (so nodes that start together do not all race
/// for partition 0); a node over its share gives back its highest-numbered extras. Partitions
/// being given back count against the share until they are released.
pub fn plan(me: &str, v: &View) -> Plan {
    let share = fair_share(v.partitions, v.live_nodes);
    let mine = v.held.len() + v.releasing.len();
    if mine > share {
        let extra = (mine - share).min(v.held.len());
        return Plan {
            give_back: v.held.iter().rev().take(extra).copied().collect(),
            ..Plan::default()
        };
    }
    let want = share - mine;
    if want == 0 || v.partitions == 0 {
        return Plan::default();
    }
    let start = (fnv1a(me.as_bytes()) % u64::from(v.partitions)) as u32;
    let candidates = (0..v.partitions)
        .map(|i| (start + i) % v.partitions)
        .filter(|p| !v.leased.contains(p) && !v.held.contains(p) && !v.releasing.contains(p))
        .collect();
    Plan {
        candidates,
        want,
        give_back: Vec::new(),
    }
}

/// The clock of the leases this node holds.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    pub lease: Duration,
}

impl LeaseClock {
    /// How often a node renews its leases and heartbeat.
    pub fn round(&self) -> Duration {
        self.lease / ROUNDS_PER_LEASE
    }

    /// A lease last renewed (its write sent) at `renewed` must be treated as lost at `now`:
    /// the server drops it `lease` after it stored the write, which was not before `renewed`,
    /// and this node stops a margin earlier.
    pub fn lost(&self, renewed: Instant, now: Instant) -> bool {
        now.saturating_duration_since(renewed) >= self.lease - self.lease / LOCAL_MARGIN_DIVISOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(partitions: u32, live: usize, leased: &[u32], held: &[u32]) -> View {
        View {
            partitions,
            live_nodes: live,
            leased: leased.iter().copied().collect(),
            held: held.iter().copied().collect(),
            releasing: BTreeSet::new(),
        }
    }

    #[test]
    fn shares_cover_every_partition() {
        assert_eq!(fair_share(64, 3), 22);
        assert_eq!(fair_share(64, 0), 64);
        assert_eq!(fair_share(8, 3), 3);
        assert_eq!(
            fair_share(4, 100),
            1,
            "more nodes than partitions: one each at most"
        );
        for p in 1..200u32 {
            for n in 1..50usize {
                assert!(fair_share(p, n) * n >= p as usize);
            }
        }
    }

    #[test]
    fn a_lone_node_takes_everything_from_its_own_starting_point() {
        let p = plan("node-a", &view(8, 1, &[], &[]));
        assert_eq!(p.want, 8);
        assert_eq!(p.candidates.len(), 8);
        let start = p.candidates[0];
        assert!(p
            .candidates
            .iter()
            .enumerate()
            .all(|(i, &c)| c == (start + i as u32) % 8));
        let q = plan("node-b", &view(8, 1, &[], &[]));
        assert_eq!(q.candidates.len(), 8);
    }

    #[test]
    fn a_node_under_its_share_tries_only_free_partitions() {
        let v = view(8, 2, &[0, 1, 2, 3, 4], &[0]);
        let p = plan("n", &v);
        assert_eq!(p.want, 3);
        let mut c = p.candidates.clone();
        c.sort();
        assert_eq!(c, vec![5, 6, 7]);
        assert!(p.give_back.is_empty());
    }

    #[test]
    fn a_node_over_its_share_gives_back_extras_when_others_join() {
        let all: Vec<u32> = (0..8).collect();
        let p = plan("n", &view(8, 1, &all, &all));
        assert_eq!(p, Plan::default(), "alone: keeps everything");
        let p = plan("n", &view(8, 3, &all, &all));
        assert_eq!(p.give_back, vec![7, 6, 5, 4, 3], "share 3 of 8");
        assert!(p.candidates.is_empty());
        let mut v = view(8, 3, &all, &[0, 1, 2]);
        v.releasing = [3, 4].into_iter().collect();
        let p = plan("n", &v);
        assert_eq!(
            p.give_back,
            vec![2, 1],
            "releasing ones count until released"
        );
    }

    #[test]
    fn a_lease_is_lost_locally_before_the_server_drops_it() {
        let c = LeaseClock {
            lease: Duration::from_secs(12),
        };
        assert_eq!(c.round(), Duration::from_secs(4));
        let t = Instant::now();
        assert!(!c.lost(t, t + Duration::from_secs(8)));
        assert!(c.lost(t, t + Duration::from_secs(9)));
        assert!(
            !c.lost(t + Duration::from_secs(1), t),
            "a clock going backwards is not a loss"
        );
    }
}
