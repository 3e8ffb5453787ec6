//! The consistent-hashing ring: which worker owns which key.
//!
//! Each worker is placed on the ring at many points ("virtual nodes"); a key
//! belongs to the worker of the last point at or before the key's hash,
//! wrapping around zero. Point positions are derived from the worker's id
//! alone (`key_hash("<id>#<i>")` for i in 0..vnodes), so any client in any
//! language that knows the members and the vnode count can rebuild the ring
//! from the master's member list, and get the same owners.
//!
//! Every membership change makes a new ring with a higher epoch; workers
//! refuse requests routed by an older one so clients learn to refresh.
//!
//! With `replicas` R, each key lives on a chain: its owner (the head) and
//! the next R-1 distinct workers met going on around the ring, in that
//! order; the last is the tail. Chains are derived like owners, so a client
//! that knows R rebuilds them too.
//!
//! Members out of service (down, failed, or catching up after either) stay
//! on the ring, so no key moves; with R above one each chain just leaves
//! them out, and its other members serve its keys. With one copy a key has
//! nowhere else to be, and its chain keeps its one member.

use std::collections::BTreeMap;

use crate::{KeyHashRange, key_hash};

/// Identifies a worker for its whole life, across restarts.
pub type WorkerId = u64;

/// Virtual nodes per worker by default. Shares vary around the mean by
/// about 1/sqrt(vnodes); for workers 1..=10 the largest share is 1.20 of the
/// mean (1.17 with 64 points, 1.10 with 128: single draws, not a trend).
pub const DEFAULT_VNODES: u32 = 256;

/// The most copies of a key a ring keeps.
pub const MAX_REPLICAS: u32 = 7;

/// Copies of each key a cluster keeps unless told otherwise: with three, a
/// chain survives one member's loss with a majority (two) still taking
/// writes, and a second loss with every acknowledged write still readable.
pub const DEFAULT_REPLICAS: u32 = 3;

/// A ring of workers at one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    epoch: u64,
    vnodes: u32,
    /// Copies of each key wanted: the chain length, if there are as many
    /// members.
    replicas: u32,
    /// Sorted by position; a position held by two workers (a 64-bit
    /// collision) goes to the lower id, so every builder agrees.
    points: Vec<(u64, WorkerId)>,
    /// Members left out of every chain while `replicas` is above one,
    /// ascending.
    out: Vec<WorkerId>,
    /// How many members the ring has, out ones included.
    member_count: usize,
}

impl Ring {
    /// An empty ring (no owners) at `epoch`.
    pub fn empty(epoch: u64, vnodes: u32) -> Ring {
        Ring { epoch, vnodes: vnodes.max(1), replicas: 1, points: Vec::new(), out: Vec::new(), member_count: 0 }
    }

    /// The ring of `workers` at `epoch`.
    pub fn new(epoch: u64, vnodes: u32, workers: impl IntoIterator<Item = WorkerId>) -> Ring {
        let vnodes = vnodes.max(1);
        let mut points: Vec<(u64, WorkerId)> =
            workers.into_iter().flat_map(|w| (0..vnodes).map(move |i| (point_position(w, i), w))).collect();
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        let mut ids: Vec<WorkerId> = points.iter().map(|p| p.1).collect();
        ids.sort_unstable();
        ids.dedup();
        Ring { epoch, vnodes, replicas: 1, points, out: Vec::new(), member_count: ids.len() }
    }

    /// The same ring keeping `replicas` copies of each key (at least one,
    /// at most [`MAX_REPLICAS`]).
    pub fn with_replicas(mut self, replicas: u32) -> Ring {
        self.replicas = replicas.clamp(1, MAX_REPLICAS);
        self
    }

    /// The same ring with `members` left out of its chains (while it
    /// keeps more than one copy of each key).
    pub fn with_out(mut self, members: impl IntoIterator<Item = WorkerId>) -> Ring {
        self.out = members.into_iter().collect();
        self.out.sort_unstable();
        self.out.dedup();
        self
    }

    /// The members left out of chains, ascending (see [`Ring::with_out`]).
    pub fn out(&self) -> &[WorkerId] {
        &self.out
    }

    /// The same members plus `worker`, one epoch later.
    pub fn with(&self, worker: WorkerId) -> Ring {
        let mut members = self.members();
        members.push(worker);
        Ring::new(self.epoch + 1, self.vnodes, members).with_replicas(self.replicas).with_out(self.out.clone())
    }

    /// The same members less `worker`, one epoch later.
    pub fn without(&self, worker: WorkerId) -> Ring {
        let members = self.members().into_iter().filter(|&w| w != worker);
        let out = self.out.iter().copied().filter(|&w| w != worker);
        Ring::new(self.epoch + 1, self.vnodes, members).with_replicas(self.replicas).with_out(out)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Copies of each key the ring asks for; a chain is shorter while the
    /// ring has fewer members.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Member ids, ascending.
    pub fn members(&self) -> Vec<WorkerId> {
        let mut m: Vec<_> = self.points.iter().map(|p| p.1).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The index of the point whose range holds key hash `h`: the last
    /// point at or before `h`, wrapping to the last one before the first.
    fn point_of_hash(&self, h: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 <= h);
        Some(if i == 0 { self.points.len() - 1 } else { i - 1 })
    }

    /// The worker owning key hash `h` (its chain's head), if the ring has
    /// any.
    pub fn owner_of_hash(&self, h: u64) -> Option<WorkerId> {
        let at = self.point_of_hash(h)?;
        if self.leaves_out() { self.chain_from(at).head() } else { Some(self.points[at].1) }
    }

    /// Whether chains leave anyone out.
    fn leaves_out(&self) -> bool {
        self.replicas > 1 && !self.out.is_empty()
    }

    /// The worker owning `key`.
    pub fn owner(&self, key: &[u8]) -> Option<WorkerId> {
        self.owner_of_hash(key_hash(key))
    }

    /// The chain holding key hash `h`, head first; empty on an empty ring.
    pub fn chain_of_hash(&self, h: u64) -> Chain {
        self.point_of_hash(h).map_or_else(Chain::default, |at| self.chain_from(at))
    }

    /// Whether `chain` (one of this ring's) has enough of its members in
    /// service to take writes: more than half of the copies the ring
    /// keeps (its `replicas`, or every member if it has fewer). A write
    /// acknowledged by fewer could be lost with one more failure, and two
    /// halves of a partitioned cluster could both take writes.
    pub fn takes_writes(&self, chain: &Chain) -> bool {
        let full = (self.replicas as usize).min(self.member_count);
        chain.len() * 2 > full
    }

    /// The chain holding `key`, head first.
    pub fn chain_of(&self, key: &[u8]) -> Chain {
        self.chain_of_hash(key_hash(key))
    }

    /// The chain of the range starting at point `at`: that point's worker,
    /// then each worker not yet in it at the points after, wrapping.
    fn chain_from(&self, at: usize) -> Chain {
        let want = (self.replicas as usize).min(self.member_count);
        let mut chain = Chain::default();
        for step in 0..self.points.len() {
            if chain.len() == want {
                break;
            }
            let w = self.points[(at + step) % self.points.len()].1;
            if !chain.contains(w) {
                chain.push(w);
            }
        }
        if self.leaves_out() {
            chain.retain(|w| self.out.binary_search(&w).is_err());
        }
        chain
    }

    /// Every range of the hash space with its chain, in position order.
    /// Adjacent ranges of one chain are merged.
    pub fn chains(&self) -> Vec<(KeyHashRange, Chain)> {
        self.ranges_by(|i| self.chain_from(i))
    }

    /// The range after each point, labelled `label(point index)`, in
    /// position order; adjacent ranges of one label are merged, across zero
    /// too.
    fn ranges_by<T: PartialEq>(&self, label: impl Fn(usize) -> T) -> Vec<(KeyHashRange, T)> {
        let n = self.points.len();
        let mut out: Vec<(KeyHashRange, T)> = Vec::new();
        for i in 0..n {
            let (start, end) = (self.points[i].0, self.points[(i + 1) % n].0);
            let l = label(i);
            match out.last_mut() {
                Some((r, last)) if *last == l => r.end = end,
                _ => out.push((KeyHashRange::new(start, end), l)),
            }
        }
        // The first and last ranges meet across zero.
        if out.len() > 1 && out[0].1 == out[out.len() - 1].1 {
            let (first, _) = out.remove(0);
            out.last_mut().unwrap().0.end = first.end;
        }
        out
    }

    /// The ranges `worker` holds a copy of: those whose chain it is in.
    pub fn ranges_held_by(&self, worker: WorkerId) -> Vec<KeyHashRange> {
        self.chains().into_iter().filter(|(_, c)| c.contains(worker)).map(|(r, _)| r).collect()
    }

    /// Every range of the hash space with its owner, in position order.
    /// Adjacent ranges of one owner are merged.
    pub fn ranges(&self) -> Vec<(KeyHashRange, WorkerId)> {
        self.ranges_by(|i| self.points[i].1)
    }

    /// The ranges `worker` owns.
    pub fn ranges_of(&self, worker: WorkerId) -> Vec<KeyHashRange> {
        self.ranges().into_iter().filter(|r| r.1 == worker).map(|r| r.0).collect()
    }

    /// Share of the hash space each member owns, summing to 1.
    pub fn shares(&self) -> BTreeMap<WorkerId, f64> {
        let mut shares = BTreeMap::new();
        for (r, w) in self.ranges() {
            *shares.entry(w).or_insert(0.0) += range_len(r) as f64 / 2f64.powi(64);
        }
        shares
    }
}

/// The workers holding a key, in chain order: writes enter at the head and
/// pass down to the tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Kept inline: a chain is looked up for every request, and is short.
    /// Entries past `len` are zero.
    members: [WorkerId; MAX_REPLICAS as usize],
    len: u8,
}

impl Chain {
    fn push(&mut self, worker: WorkerId) {
        self.members[self.len as usize] = worker;
        self.len += 1;
    }

    /// Drops the members `keep` says no to, keeping the order.
    fn retain(&mut self, keep: impl Fn(WorkerId) -> bool) {
        let mut kept = Chain::default();
        for &w in self.members() {
            if keep(w) {
                kept.push(w);
            }
        }
        *self = kept;
    }

    /// Where writes enter.
    pub fn head(&self) -> Option<WorkerId> {
        self.members().first().copied()
    }

    /// The last copy: a write is committed once it holds it.
    pub fn tail(&self) -> Option<WorkerId> {
        self.members().last().copied()
    }

    /// The member before `worker`, if `worker` is in the chain and not its
    /// head.
    pub fn predecessor(&self, worker: WorkerId) -> Option<WorkerId> {
        let at = self.members().iter().position(|&w| w == worker)?;
        at.checked_sub(1).map(|i| self.members[i])
    }

    /// The member after `worker`, if `worker` is in the chain and not its tail.
    pub fn successor(&self, worker: WorkerId) -> Option<WorkerId> {
        let at = self.members().iter().position(|&w| w == worker)?;
        self.members().get(at + 1).copied()
    }

    pub fn contains(&self, worker: WorkerId) -> bool {
        self.members().contains(&worker)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The members, head first.
    pub fn members(&self) -> &[WorkerId] {
        &self.members[..self.len as usize]
    }
}

/// Position of virtual node `i` of `worker`.
pub fn point_position(worker: WorkerId, i: u32) -> u64 {
    key_hash(format!("{worker}#{i}").as_bytes())
}

/// Number of hashes in `r` (the whole space counts as 2^64, saturated).
fn range_len(r: KeyHashRange) -> u64 {
    if r.start == r.end { u64::MAX } else { r.end.wrapping_sub(r.start) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_over_mean(ring: &Ring) -> f64 {
        let shares = ring.shares();
        let mean = 1.0 / shares.len() as f64;
        shares.values().cloned().fold(0.0, f64::max) / mean
    }

    #[test]
    fn empty_ring_owns_nothing_and_one_member_owns_everything() {
        assert_eq!(Ring::empty(0, 8).owner(b"k"), None);
        let ring = Ring::new(1, 8, [7]);
        for k in 0..100u32 {
            assert_eq!(ring.owner(&k.to_le_bytes()), Some(7));
        }
        let ranges = ring.ranges();
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        assert_eq!(ranges[0].1, 7);
        assert!(ranges[0].0.contains(0) && ranges[0].0.contains(u64::MAX));
    }

    #[test]
    fn ten_workers_are_balanced_within_a_quarter() {
        let ring = Ring::new(1, DEFAULT_VNODES, 1..=10);
        let ratio = max_over_mean(&ring);
        assert!(ratio <= 1.25, "largest share is {ratio:.3} of the mean");
        let total: f64 = ring.shares().values().sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ranges_agree_with_owner_lookup() {
        let ring = Ring::new(3, 16, [10, 20, 30]);
        for (r, w) in ring.ranges() {
            for h in [r.start, r.start.wrapping_add(1), r.end.wrapping_sub(1)] {
                assert_eq!(ring.owner_of_hash(h), Some(w), "hash {h:#x} in {r:?}");
            }
        }
        for k in 0..2000u32 {
            let h = key_hash(&k.to_le_bytes());
            let w = ring.owner_of_hash(h).unwrap();
            assert!(ring.ranges_of(w).iter().any(|r| r.contains(h)));
        }
    }

    #[test]
    fn a_join_moves_about_one_nth_of_the_space_and_only_to_the_newcomer() {
        let before = Ring::new(1, DEFAULT_VNODES, 1..=10);
        let after = before.with(11);
        assert_eq!(after.epoch(), 2);
        let mut moved = 0u64;
        let samples = 200_000u64;
        for i in 0..samples {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (before.owner_of_hash(h), after.owner_of_hash(h));
            if a != b {
                assert_eq!(b, Some(11), "hash {h:#x} moved from {a:?} to {b:?}");
                moved += 1;
            }
        }
        let fraction = moved as f64 / samples as f64;
        assert!((0.06..0.12).contains(&fraction), "{fraction:.4} of keys moved; expected about 1/11");
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys() {
        let before = Ring::new(5, DEFAULT_VNODES, 1..=10);
        let after = before.without(4);
        assert_eq!(after.epoch(), 6);
        assert_eq!(after.members(), vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
        for i in 0..100_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (before.owner_of_hash(h), after.owner_of_hash(h));
            if a != Some(4) {
                assert_eq!(a, b);
            } else {
                assert_ne!(b, Some(4));
            }
        }
    }

    #[test]
    fn a_chain_is_the_owner_then_the_next_distinct_workers_around_the_ring() {
        let ring = Ring::new(4, 16, [10, 20, 30, 40, 50]).with_replicas(3);
        for k in 0..2000u32 {
            let h = key_hash(&k.to_le_bytes());
            let chain = ring.chain_of_hash(h);
            assert_eq!(chain.len(), 3);
            assert_eq!(chain.head(), ring.owner_of_hash(h));
            // Walking the points from the owner's, the first three distinct
            // workers met are the chain, in order.
            let i = ring.points.partition_point(|p| p.0 <= h);
            let start = if i == 0 { ring.points.len() - 1 } else { i - 1 };
            let mut met = Vec::new();
            for step in 0..ring.points.len() {
                let w = ring.points[(start + step) % ring.points.len()].1;
                if !met.contains(&w) {
                    met.push(w);
                }
            }
            assert_eq!(chain.members(), &met[..3], "hash {h:#x}");
            assert_eq!(chain.successor(met[0]), Some(met[1]));
            assert_eq!(chain.successor(met[2]), None);
            assert_eq!(chain.predecessor(met[1]), Some(met[0]));
            assert_eq!(chain.predecessor(met[0]), None);
            assert_eq!(chain.tail(), Some(met[2]));
        }
    }

    #[test]
    fn chains_cover_the_space_agree_with_lookups_and_shrink_to_the_members() {
        let ring = Ring::new(2, 32, [1, 2, 3, 4]).with_replicas(3);
        let chains = ring.chains();
        let covered: u128 = chains.iter().map(|(r, _)| u128::from(range_len(*r))).sum();
        assert_eq!(covered, 1u128 << 64);
        for (r, c) in &chains {
            for h in [r.start, r.end.wrapping_sub(1)] {
                assert_eq!(&ring.chain_of_hash(h), c, "hash {h:#x} in {r:?}");
            }
        }
        // Each member holds three quarters of the space.
        for w in 1..=4 {
            let held: u128 = ring.ranges_held_by(w).iter().map(|r| u128::from(range_len(*r))).sum();
            let share = held as f64 / 2f64.powi(64);
            assert!((0.6..0.9).contains(&share), "worker {w} holds {share:.3}");
        }
        // Fewer members than replicas: every member holds every key.
        let small = Ring::new(1, 8, [7, 9]).with_replicas(3);
        assert!(small.chains().iter().all(|(_, c)| c.len() == 2));
        assert_eq!(Ring::empty(0, 8).with_replicas(3).chain_of(b"k"), Chain::default());
        // The factor survives membership changes.
        assert_eq!(ring.with(5).replicas(), 3);
        assert_eq!(ring.without(1).replicas(), 3);
    }

    #[test]
    fn a_member_out_of_service_leaves_its_chains_and_no_key_moves() {
        let ring = Ring::new(3, 64, [1, 2, 3, 4]).with_replicas(3);
        let out = ring.clone().with_out([2]);
        for i in 0..20_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (full, short) = (ring.chain_of_hash(h), out.chain_of_hash(h));
            let kept: Vec<WorkerId> = full.members().iter().copied().filter(|&w| w != 2).collect();
            assert_eq!(short.members(), &kept[..], "hash {h:#x}: the chain less worker 2, in order");
            assert_eq!(out.owner_of_hash(h), short.head());
        }
        assert!(out.ranges_held_by(2).is_empty());
        // With one copy a key's one member keeps it: there is no other.
        let single = Ring::new(3, 64, [1, 2]).with_out([2]);
        let theirs = (0u32..).map(|i| i.to_le_bytes()).find(|k| single.owner(k) == Some(2)).unwrap();
        assert_eq!(single.chain_of(&theirs).members(), &[2]);
        // Writes need most of the copies: two of three.
        let h = (0u64..)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .find(|&h| ring.chain_of_hash(h).len() == 3)
            .unwrap();
        assert!(ring.takes_writes(&ring.chain_of_hash(h)));
        assert!(out.takes_writes(&out.chain_of_hash(h)));
        let two_out = ring.clone().with_out([2, 3]);
        let short = two_out.chain_of_hash(h);
        assert_eq!(short.len() < 2, !two_out.takes_writes(&short));
        assert!(two_out.chains().iter().any(|(_, c)| !two_out.takes_writes(c)));
        // A ring smaller than its factor asks for most of its members.
        assert!(
            Ring::new(1, 8, [7]).with_replicas(3).takes_writes(&Ring::new(1, 8, [7]).with_replicas(3).chain_of(b"k"))
        );
        // Every member out: no chain, no owner.
        let none = ring.clone().with_out([1, 2, 3, 4]);
        assert_eq!(none.owner(b"k"), None);
        assert!(none.chain_of(b"k").is_empty());
        // Carried through membership changes.
        assert_eq!(out.with(5).out(), &[2]);
        assert_eq!(out.without(2).out(), &[] as &[WorkerId]);
    }

    #[test]
    fn a_join_changes_each_chain_by_at_most_the_newcomer_in_and_one_worker_out() {
        let before = Ring::new(1, DEFAULT_VNODES, 1..=6).with_replicas(3);
        let after = before.with(7);
        for i in 0..50_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (before.chain_of_hash(h), after.chain_of_hash(h));
            let gone: Vec<_> = a.members().iter().filter(|w| !b.contains(**w)).collect();
            let new: Vec<_> = b.members().iter().filter(|w| !a.contains(**w)).collect();
            assert!(new.is_empty() || new == [&7], "hash {h:#x}: {a:?} -> {b:?}");
            assert_eq!(gone.len(), new.len(), "hash {h:#x}: {a:?} -> {b:?}");
        }
    }

    #[test]
    fn positions_are_published_values() {
        // Any client can rebuild the ring: a point is XXH3-64 of "<id>#<i>".
        assert_eq!(point_position(1, 0), key_hash(b"1#0"));
        assert_eq!(point_position(42, 7), key_hash(b"42#7"));
    }
}
