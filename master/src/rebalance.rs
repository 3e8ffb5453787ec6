//! Moving key ranges when membership changes, so that no write is lost.
//!
//! A join or a leave: every span of the hash space whose chain gains a
//! worker is copied to that worker from the span's head (where its writes
//! enter) while reads and writes go on (pre-copy), at a set rate; then the
//! heads fence those spans (writes there answer "stale epoch" and clients
//! retry) and what was written to them since the pre-copy began is copied,
//! so the last copy misses nothing and writes wait only for that; then the
//! new ring goes out at a new epoch, which lifts the fences, and workers
//! delete what they no longer hold. With one copy per key a chain is its
//! owner: a join takes each of the newcomer's ranges from its previous
//! owner, a leave gives each of the leaver's ranges to its next owner; its
//! writes carry no versions, so the fenced copy is a whole one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wimpy_net::deadline::{CALL, within};
use wimpy_schema::wimpy_capnp::{record_sink, worker_admin};
use wimpy_schema::{KeyHashRange, MoveChange, RangeMove, Ring, WorkerId};

/// Ranges to copy, grouped by the worker that holds them now.
pub type Moves = BTreeMap<WorkerId, Vec<KeyHashRange>>;

/// One range to copy from one worker to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub from: WorkerId,
    pub to: WorkerId,
    pub range: KeyHashRange,
}

/// What changing the ring from `before` to `after` copies: for each span
/// of the hash space, every worker in the span's chain under `after` that
/// was not in it under `before` gets the span from its head under `before`.
/// Spans are cut at every range boundary of either ring, so each has one
/// chain in each; adjacent spans with the same source and receiver are
/// merged. Nothing moves into an empty ring (there is nothing to copy).
pub fn moves_for_change(before: &Ring, after: &Ring) -> Vec<Move> {
    let mut cuts: Vec<u64> = before.chains().iter().chain(after.chains().iter()).map(|(r, _)| r.start).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut moves: Vec<Move> = Vec::new();
    for (i, &start) in cuts.iter().enumerate() {
        // One cut alone makes the whole space (equal bounds).
        let span = KeyHashRange::new(start, cuts[(i + 1) % cuts.len()]);
        let (was, will) = (before.chain_of_hash(start), after.chain_of_hash(start));
        let Some(from) = was.head() else { continue };
        for &to in will.members().iter().filter(|w| !was.contains(**w)) {
            match moves.iter_mut().rev().find(|m| m.from == from && m.to == to) {
                Some(m) if m.range.end == span.start => m.range.end = span.end,
                _ => moves.push(Move { from, to, range: span }),
            }
        }
    }
    // The last span may continue the first across zero.
    if moves.len() > 1 {
        let first = moves[0];
        if let Some(at) = moves.iter().skip(1).rposition(|m| m.from == first.from && m.to == first.to)
            && moves[at + 1].range.end == first.range.start
        {
            moves[at + 1].range.end = first.range.end;
            moves.remove(0);
        }
    }
    moves
}

/// How far the copy of a membership change has got: `Master.status`'s
/// report (its `elapsed` left to [`Progress::report`]), and when the pass
/// began.
#[derive(Clone, Debug)]
pub struct Progress {
    pub at: RangeMove,
    pub began: Instant,
}

impl Progress {
    /// The first pass of `change` to `worker`, beginning now.
    pub fn new(worker: WorkerId, change: MoveChange, bytes_per_second: u64) -> Progress {
        let at = RangeMove {
            worker,
            change,
            pass: 1,
            bytes_copied: 0,
            bytes_expected: 0,
            records: 0,
            elapsed: Duration::ZERO,
            bytes_per_second,
            pairs_done: 0,
            pairs: 0,
        };
        Progress { at, began: Instant::now() }
    }

    /// As `Master.status` reports it.
    pub fn report(&self) -> RangeMove {
        RangeMove { elapsed: self.began.elapsed(), ..self.at.clone() }
    }
}

/// Where a change's progress is kept while it runs.
pub type ProgressCell = Rc<RefCell<Option<Progress>>>;

/// How the copies of a change go.
#[derive(Debug)]
pub struct Copying {
    /// The cap on each source's rate in the first pass, in bytes per
    /// second (0: none).
    pub bytes_per_second: u64,
    /// Each source's live bytes as of its last heartbeat: with the share
    /// of the hash space it sends, what the first pass should copy.
    pub live_bytes: BTreeMap<WorkerId, u64>,
    /// Set to the change's [`Progress`] while the copy runs (its `worker`
    /// and `kind` as given).
    pub progress: ProgressCell,
    /// The receivers may hold most of what they are sent already (a member
    /// back on its old data): compare first, and copy only what differs.
    pub compare_first: bool,
}

/// The width of the pieces two copies of a range are compared in: 1/16384
/// of the hash space, so that a member that missed a few writes is sent
/// the keys of a few pieces, not its whole share.
const COMPARED_PIECE: u64 = 1 << 50;

/// The pieces of `ranges` in which the copy at `to` differs from the one
/// at `from`, joined where they meet; and `from`'s cut (see
/// `WorkerAdmin.digestRanges`): the receiver holds, in every other piece,
/// each key `from` holds at a version up to the cut at that version.
async fn differing(
    from: &worker_admin::Client,
    to: &worker_admin::Client,
    ranges: &[KeyHashRange],
) -> Result<(Vec<KeyHashRange>, u64), capnp::Error> {
    let pieces: Vec<KeyHashRange> = ranges.iter().flat_map(|r| r.pieces(COMPARED_PIECE)).collect();
    let digests = |w: &worker_admin::Client| {
        let mut req = w.digest_ranges_request();
        wimpy_schema::ranges::write(req.get().init_ranges(pieces.len() as u32), &pieces);
        req.send().promise
    };
    // The source's first: its cut must come before the receiver's digests
    // are compared with it (the receiver, out of its chains, takes no
    // writes meanwhile).
    let source = digests(from).await?;
    let source = source.get()?;
    let cut = source.get_up_to();
    let receiver = digests(to).await?;
    let (source, receiver) = (source.get_digests()?, receiver.get()?.get_digests()?);
    if source.len() as usize != pieces.len() || receiver.len() as usize != pieces.len() {
        return Err(capnp::Error::failed("a digest answer does not match its ranges".into()));
    }
    let mut differ: Vec<KeyHashRange> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let (a, b) = (source.get(i as u32), receiver.get(i as u32));
        if (a.get_records(), a.get_digest()) == (b.get_records(), b.get_digest()) {
            continue;
        }
        match differ.last_mut() {
            Some(last) if last.end == piece.start => last.end = piece.end,
            _ => differ.push(*piece),
        }
    }
    Ok((differ, cut))
}

/// Copies every move twice: once while writes go on, at the set rate;
/// once more with the sources fenced, carrying only what was written since
/// the first pass began (where the sources number their writes; all of it
/// again where they do not), as fast as it goes, since writes wait for it.
/// On failure the fences are lifted again.
///
/// Fences and sinks are control calls, each within
/// [`deadline::CALL`](wimpy_net::deadline::CALL). The copy of a range has no
/// deadline of its own (a range has no size bound): the caller stops the
/// transfer when a worker it involves is marked down.
pub async fn transfer(
    plan: &[Move],
    clients: &BTreeMap<WorkerId, worker_admin::Client>,
    copying: &Copying,
) -> Result<u64, capnp::Error> {
    let mut fenced: Moves = Moves::new();
    // Each pair of workers moves all its ranges in one pass over the
    // source's log; one pair at a time, so each source sends one copy at
    // a time.
    let mut pairs: BTreeMap<(WorkerId, WorkerId), Vec<KeyHashRange>> = BTreeMap::new();
    for m in plan {
        fenced.entry(m.from).or_default().push(m.range);
        pairs.entry((m.from, m.to)).or_default().push(m.range);
    }
    // Per pair: the version up to which its first pass had every write.
    let mut up_to: BTreeMap<(WorkerId, WorkerId), u64> = BTreeMap::new();
    // What the first pass copies of each pair: every range, or where the
    // receiver holds them already, the pieces it holds otherwise than the
    // source. The fenced pass goes over every range either way.
    let mut first = pairs.clone();
    if copying.compare_first {
        for (&(from, to), ranges) in &pairs {
            let (differ, cut) = differing(&clients[&from], &clients[&to], ranges).await?;
            tracing::info!(
                from,
                to,
                share = differ.iter().map(KeyHashRange::share).sum::<f64>(),
                of = ranges.iter().map(KeyHashRange::share).sum::<f64>(),
                "the receiver's copy differs in this share of the hash space"
            );
            first.insert((from, to), differ);
            up_to.insert((from, to), cut);
        }
    }
    let expected: u64 = first
        .iter()
        .map(|((from, _), ranges)| {
            let share: f64 = ranges.iter().map(KeyHashRange::share).sum();
            (copying.live_bytes.get(from).copied().unwrap_or(0) as f64 * share) as u64
        })
        .sum();
    let begin_pass = |pass: u8| {
        if let Some(p) = copying.progress.borrow_mut().as_mut() {
            let mut next = Progress::new(p.at.worker, p.at.change, copying.bytes_per_second);
            next.at.pass = pass;
            next.at.bytes_expected = if pass == 1 { expected } else { 0 };
            next.at.pairs = pairs.len() as u32;
            *p = next;
        }
    };
    let result = async {
        let mut copied = 0;
        for pass in 0..2 {
            begin_pass(pass + 1);
            if pass == 1 {
                for (from, ranges) in &fenced {
                    fence(&clients[from], ranges).await?;
                }
                copied = 0;
            }
            for (&(from, to), ranges) in if pass == 0 { &first } else { &pairs } {
                if ranges.is_empty() {
                    // Nothing differs: nothing to copy before the fence.
                    if let Some(p) = copying.progress.borrow_mut().as_mut() {
                        p.at.pairs_done += 1;
                    }
                    continue;
                }
                if pass == 1 {
                    // Renew the source's fence lease before each copy.
                    fence(&clients[&from], &fenced[&from]).await?;
                }
                // The last pass, its source fenced, makes the receiver's
                // copy the source's: the receiver drops what it holds
                // beyond what was sent or said unchanged (keys deleted
                // since the first pass).
                let mut receive = clients[&to].receive_ranges_request();
                wimpy_schema::ranges::write(receive.get().init_ranges(ranges.len() as u32), ranges);
                receive.get().set_replace(pass == 1);
                let sink = within(CALL, "receiveRanges", receive.send().promise).await?.get()?.get_sink()?;
                let sink: record_sink::Client =
                    capnp_rpc::new_client(CountingSink { inner: sink, progress: copying.progress.clone() });
                let mut req = clients[&from].send_ranges_request();
                wimpy_schema::ranges::write(req.get().init_ranges(ranges.len() as u32), ranges);
                req.get().set_sink(sink);
                if pass == 0 {
                    req.get().set_bytes_per_second(copying.bytes_per_second);
                } else {
                    req.get().set_after(up_to.get(&(from, to)).copied().unwrap_or(0));
                }
                let answer = req.send().promise.await?;
                let answer = answer.get()?;
                if pass == 0 {
                    // A cut taken before the digests compared stands: the
                    // pieces passed over are the receiver's up to it.
                    up_to.entry((from, to)).or_insert(answer.get_up_to());
                }
                copied += answer.get_records();
                if let Some(p) = copying.progress.borrow_mut().as_mut() {
                    p.at.records += answer.get_records();
                    p.at.pairs_done += 1;
                }
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

/// Passes a copy's records on to the receiver's sink, counting the bytes
/// into the change's progress. (The copy goes through the master either
/// way: it hands the receiver's sink to the source.)
struct CountingSink {
    inner: record_sink::Client,
    progress: ProgressCell,
}

impl record_sink::Server for CountingSink {
    async fn write(self: Rc<Self>, params: record_sink::WriteParams) -> Result<(), capnp::Error> {
        let frames = params.get()?.get_frames()?;
        let mut req = self.inner.write_request();
        req.get().set_frames(frames);
        let len = frames.len() as u64;
        req.send().await?;
        if let Some(p) = self.progress.borrow_mut().as_mut() {
            p.at.bytes_copied += len;
        }
        Ok(())
    }

    async fn unchanged(
        self: Rc<Self>,
        params: record_sink::UnchangedParams,
        _: record_sink::UnchangedResults,
    ) -> Result<(), capnp::Error> {
        let mut req = self.inner.unchanged_request();
        req.get().set_hashes(params.get()?.get_hashes()?)?;
        req.send().promise.await?;
        Ok(())
    }

    async fn done(
        self: Rc<Self>,
        _: record_sink::DoneParams,
        mut results: record_sink::DoneResults,
    ) -> Result<(), capnp::Error> {
        let answer = self.inner.done_request().send().promise.await?;
        results.get().set_records(answer.get()?.get_records());
        Ok(())
    }
}

async fn fence(w: &worker_admin::Client, ranges: &[KeyHashRange]) -> Result<(), capnp::Error> {
    let mut req = w.fence_request();
    wimpy_schema::ranges::write(req.get().init_ranges(ranges.len() as u32), ranges);
    within(CALL, "fence", req.send().promise).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who holds hash `h` once `moves` are done: its chain before, and
    /// every receiver of a move covering it.
    fn holders_after(before: &Ring, moves: &[Move], h: u64) -> Vec<WorkerId> {
        let mut held: Vec<WorkerId> = before.chain_of_hash(h).members().to_vec();
        held.extend(moves.iter().filter(|m| m.range.contains(h)).map(|m| m.to));
        held
    }

    /// Every worker of every chain under `after` holds its spans once the
    /// moves are done; each move comes from the span's head before, to a
    /// worker that did not hold it; no span moves twice to one worker.
    fn check(before: &Ring, after: &Ring, moves: &[Move]) {
        for i in 0..20_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let held = holders_after(before, moves, h);
            for w in after.chain_of_hash(h).members() {
                assert!(held.contains(w), "hash {h:#x}: worker {w} of the new chain gets no copy");
            }
            let covering: Vec<&Move> = moves.iter().filter(|m| m.range.contains(h)).collect();
            for m in &covering {
                assert_eq!(before.chain_of_hash(h).head(), Some(m.from), "hash {h:#x}: {m:?}");
                assert!(!before.chain_of_hash(h).contains(m.to), "hash {h:#x}: {m:?} copies to a holder");
                assert!(after.chain_of_hash(h).contains(m.to), "hash {h:#x}: {m:?} copies to a non-member");
            }
            let mut to: Vec<_> = covering.iter().map(|m| m.to).collect();
            to.sort_unstable();
            let n = to.len();
            to.dedup();
            assert_eq!(to.len(), n, "hash {h:#x}: a worker gets the same span twice");
        }
    }

    #[test]
    fn with_one_copy_a_leave_hands_each_range_to_its_next_owner() {
        let before = Ring::new(1, 32, [1, 2, 3]);
        let after = before.without(2);
        let plan = moves_for_change(&before, &after);
        assert_eq!(plan.len(), before.ranges_of(2).len());
        for m in &plan {
            assert_eq!(m.from, 2);
            assert_ne!(m.to, 2);
            for h in [m.range.start, m.range.end.wrapping_sub(1)] {
                assert_eq!(before.owner_of_hash(h), Some(2));
                assert_eq!(after.owner_of_hash(h), Some(m.to));
            }
        }
        check(&before, &after, &plan);
    }

    #[test]
    fn with_one_copy_a_join_takes_each_range_from_its_previous_owner() {
        let before = Ring::new(1, 32, [1, 2, 3]);
        let after = before.with(4);
        let plan = moves_for_change(&before, &after);
        assert_eq!(plan.len(), after.ranges_of(4).len());
        for m in &plan {
            assert_eq!(m.to, 4);
            let r = m.range;
            // Every hash of the moved range belonged to `from` before.
            for h in [r.start, r.end.wrapping_sub(1), r.start.wrapping_add((r.end.wrapping_sub(r.start)) / 2)] {
                assert_eq!(before.owner_of_hash(h), Some(m.from));
                assert_eq!(after.owner_of_hash(h), Some(4));
            }
        }
        check(&before, &after, &plan);
    }

    #[test]
    fn with_three_copies_every_new_chain_member_gets_its_spans_from_the_head() {
        let before = Ring::new(1, 32, [1, 2, 3, 4, 5]).with_replicas(3);
        for after in [before.with(6), before.without(3), before.without(1)] {
            let plan = moves_for_change(&before, &after);
            assert!(!plan.is_empty());
            check(&before, &after, &plan);
        }
        // Growing from fewer members than copies: the newcomer gets everything.
        let two = Ring::new(1, 16, [1, 2]).with_replicas(3);
        let plan = moves_for_change(&two, &two.with(3));
        check(&two, &two.with(3), &plan);
        assert!(plan.iter().all(|m| m.to == 3));
        // The first member joins an empty ring: nothing to copy.
        let empty = Ring::empty(0, 16).with_replicas(3);
        assert!(moves_for_change(&empty, &empty.with(1)).is_empty());
    }
}
