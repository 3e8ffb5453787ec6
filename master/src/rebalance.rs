//! Moving key ranges when membership changes, so that no write is lost.
//!
//! A join: every range the newcomer will own is copied to it from its
//! current owner while reads and writes go on (pre-copy); then the owners
//! fence those ranges (writes there answer "stale epoch" and clients retry)
//! and the ranges are copied again, so the last copy misses nothing; then
//! the newcomer goes on the ring at a new epoch, which lifts the fences, and
//! the old owners delete what they gave away.

use std::collections::BTreeMap;

use wimpy_net::deadline::{CALL, within};
use wimpy_schema::wimpy_capnp::worker_admin;
use wimpy_schema::{KeyHashRange, Ring, WorkerId};

/// Ranges to copy, grouped by the worker that holds them now.
pub type Moves = BTreeMap<WorkerId, Vec<KeyHashRange>>;

/// One range to copy from one worker to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: WorkerId,
    pub to: WorkerId,
    pub range: KeyHashRange,
}

/// Where the ranges of `leaver` go when `before` becomes `after`: removing
/// a member's points merges each of its ranges into the range before it, so
/// each has a single new owner.
pub fn moves_for_leave(before: &Ring, after: &Ring, leaver: WorkerId) -> Vec<Move> {
    before
        .ranges_of(leaver)
        .into_iter()
        .filter_map(|range| after.owner_of_hash(range.start).map(|to| Move { from: leaver, to, range }))
        .collect()
}

/// Copies every move twice: once while writes go on, once more with the
/// sources fenced. On failure the fences are lifted again.
///
/// Fences and sinks are control calls, each within
/// [`deadline::CALL`](wimpy_net::deadline::CALL). The copy of a range has no
/// deadline of its own (a range has no size bound): the caller stops the
/// transfer when a worker it involves is marked down.
pub async fn transfer(plan: &[Move], clients: &BTreeMap<WorkerId, worker_admin::Client>) -> Result<u64, capnp::Error> {
    let mut fenced: Moves = Moves::new();
    for m in plan {
        fenced.entry(m.from).or_default().push(m.range);
    }
    let result = async {
        let mut copied = 0;
        for pass in 0..2 {
            if pass == 1 {
                for (from, ranges) in &fenced {
                    fence(&clients[from], ranges).await?;
                }
                copied = 0;
            }
            for m in plan {
                if pass == 1 {
                    // Renew the source's fence lease before each range.
                    fence(&clients[&m.from], &fenced[&m.from]).await?;
                }
                // The last pass, its source fenced, is the range's whole
                // truth: the receiver drops what it holds beyond it (keys
                // deleted since the first pass).
                let mut receive = clients[&m.to].receive_range_request();
                let mut range = receive.get().init_range();
                range.set_start(m.range.start);
                range.set_end(m.range.end);
                receive.get().set_replace(pass == 1);
                let sink = within(CALL, "receiveRange", receive.send().promise).await?.get()?.get_sink()?;
                let mut req = clients[&m.from].send_range_request();
                let mut range = req.get().init_range();
                range.set_start(m.range.start);
                range.set_end(m.range.end);
                req.get().set_sink(sink);
                copied += req.send().promise.await?.get()?.get_records();
            }
        }
        Ok(copied)
    }
    .await;
    if result.is_err() {
        for from in fenced.keys() {
            // A fence left standing lapses by itself after its lease.
            if let Err(e) = fence(&clients[from], &[]).await {
                tracing::warn!(worker = from, error = %e, "lifting the fence after a failed move");
            }
        }
    }
    result
}

/// What `newcomer` takes over when `before` becomes `after`: each of its
/// ranges in `after`, and who owns that span in `before` (adding points
/// only splits ranges, so each has a single previous owner).
pub fn moves_for_join(before: &Ring, after: &Ring, newcomer: WorkerId) -> Moves {
    let mut moves = Moves::new();
    for r in after.ranges_of(newcomer) {
        if let Some(from) = before.owner_of_hash(r.start) {
            moves.entry(from).or_default().push(r);
        }
    }
    moves
}

/// The plan of a join: every range in `moves` goes to `newcomer`.
pub fn join_plan(moves: &Moves, newcomer: WorkerId) -> Vec<Move> {
    moves
        .iter()
        .flat_map(|(from, ranges)| ranges.iter().map(move |r| Move { from: *from, to: newcomer, range: *r }))
        .collect()
}

async fn fence(w: &worker_admin::Client, ranges: &[KeyHashRange]) -> Result<(), capnp::Error> {
    let mut req = w.fence_request();
    let mut list = req.get().init_ranges(ranges.len() as u32);
    for (i, r) in ranges.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_start(r.start);
        b.set_end(r.end);
    }
    within(CALL, "fence", req.send().promise).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leave_hands_each_range_to_a_single_remaining_owner() {
        let before = Ring::new(1, 32, [1, 2, 3]);
        let after = before.without(2);
        let plan = moves_for_leave(&before, &after, 2);
        assert_eq!(plan.len(), before.ranges_of(2).len());
        for m in plan {
            assert_eq!(m.from, 2);
            assert_ne!(m.to, 2);
            for h in [m.range.start, m.range.end.wrapping_sub(1)] {
                assert_eq!(before.owner_of_hash(h), Some(2));
                assert_eq!(after.owner_of_hash(h), Some(m.to));
            }
        }
    }

    #[test]
    fn a_join_takes_each_range_from_its_single_previous_owner() {
        let before = Ring::new(1, 32, [1, 2, 3]);
        let after = before.with(4);
        let moves = moves_for_join(&before, &after, 4);
        let total: usize = moves.values().map(Vec::len).sum();
        assert_eq!(total, after.ranges_of(4).len());
        for (from, ranges) in &moves {
            for r in ranges {
                // Every hash of the moved range belonged to `from` before.
                for h in [r.start, r.end.wrapping_sub(1), r.start.wrapping_add((r.end.wrapping_sub(r.start)) / 2)] {
                    assert_eq!(before.owner_of_hash(h), Some(*from));
                    assert_eq!(after.owner_of_hash(h), Some(4));
                }
            }
        }
    }
}
