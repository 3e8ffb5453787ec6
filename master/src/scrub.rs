//! The scrub: the members of every chain compared range by range, and a
//! member whose copy differs repaired from the chain's committed state.
//!
//! Each member digests every range of its chains in one pass over its log
//! (`digestRanges`: a count and an XOR of a mix of each live record's key
//! hash and version). A member's digest of a range is compared with the
//! tail's, whose copy is the committed one; the tail's own with its
//! predecessor's. Writes go on meanwhile, so a digest taken while a write
//! was on its way down the chain may differ for no fault: a range differs
//! only if it differs again when digested a second time. It is then copied
//! from the reference to the member into a sink that takes only records
//! newer than the member's own (`receiveRanges(newerOnly)`): a record the
//! member lacks, holds at an older version, or cannot read (damaged on its
//! disk) is replaced, and nothing the member holds goes back in time or
//! away. The reading is paced: after each member's digests the pass waits
//! until that member's log bytes are due at the cap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use wimpy_net::deadline::{CALL, within};
/// What one pass did (`running` stays false: the master says whether one runs).
pub use wimpy_schema::ScrubReport as Report;
use wimpy_schema::wimpy_capnp::worker_admin;
use wimpy_schema::{KeyHashRange, Ring, WorkerId};

/// How the master scrubs.
#[derive(Clone, Copy, Debug)]
pub struct ScrubConfig {
    /// Time between passes; zero for none (`Master.scrub` still runs one).
    pub every: Duration,
    /// The most log bytes per second the pass reads on each member, on
    /// average over its log; 0 for no cap.
    pub bytes_per_second: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        // Twice a day, reading at most 4 MB/s: a Pi's SD card reads ten
        // times that, and a day's damage is found within half of one.
        ScrubConfig { every: Duration::from_secs(12 * 3600), bytes_per_second: 4_000_000 }
    }
}

/// One member's digest of one range.
type Digests = BTreeMap<(WorkerId, usize), (u64, u64)>;

/// Compares and repairs every chain of `ring` on the members in `clients`
/// (those of its chains; `log_bytes` their logs' sizes, for the pacing).
/// `still_current` says whether the ring is still the cluster's: a pass
/// stops before repairing anything once it is not.
pub async fn pass(
    ring: &Ring,
    clients: &BTreeMap<WorkerId, worker_admin::Client>,
    log_bytes: &BTreeMap<WorkerId, u64>,
    config: ScrubConfig,
    still_current: impl Fn() -> bool,
) -> Report {
    let started = Instant::now();
    let mut report =
        Report { started: Some(SystemTime::now()), bytes_per_second: config.bytes_per_second, ..Report::default() };
    if let Err(e) = compare_and_repair(ring, clients, log_bytes, config, &still_current, &mut report).await {
        report.failure = e.to_string();
    }
    report.took = started.elapsed();
    report
}

async fn compare_and_repair(
    ring: &Ring,
    clients: &BTreeMap<WorkerId, worker_admin::Client>,
    log_bytes: &BTreeMap<WorkerId, u64>,
    config: ScrubConfig,
    still_current: &impl Fn() -> bool,
    report: &mut Report,
) -> Result<(), capnp::Error> {
    let chains: Vec<(KeyHashRange, Vec<WorkerId>)> =
        ring.chains().into_iter().filter(|(_, c)| c.len() > 1).map(|(r, c)| (r, c.members().to_vec())).collect();
    // What each member's digest of each of its ranges is compared with.
    let mut pairs: Vec<(WorkerId, WorkerId, usize)> = Vec::new();
    for (i, (_, chain)) in chains.iter().enumerate() {
        let tail = chain[chain.len() - 1];
        for &m in chain {
            let reference = if m == tail { chain[chain.len() - 2] } else { tail };
            pairs.push((m, reference, i));
        }
    }
    let all: BTreeMap<WorkerId, Vec<usize>> = ranges_by_member(pairs.iter().map(|&(m, _, i)| (m, i)));
    let first = digest(&chains, &all, clients, log_bytes, config, report).await?;
    report.ranges = pairs.len() as u64;
    let suspects: Vec<_> = pairs.into_iter().filter(|&(m, r, i)| first.get(&(m, i)) != first.get(&(r, i))).collect();
    if suspects.is_empty() {
        return Ok(());
    }
    // Once more, only the ranges that differed, on both sides.
    let again = ranges_by_member(suspects.iter().flat_map(|&(m, r, i)| [(m, i), (r, i)]));
    let second = digest(&chains, &again, clients, log_bytes, config, report).await?;
    for (m, reference, i) in suspects {
        if second.get(&(m, i)) == second.get(&(reference, i)) {
            continue;
        }
        if !still_current() {
            return Err(capnp::Error::failed("the ring changed during the pass; the next pass covers it".into()));
        }
        report.differing += 1;
        let range = chains[i].0;
        tracing::warn!(worker = m, from = reference, ?range, "the scrub found a copy that differs; repairing it");
        report.repaired += repair(&clients[&reference], &clients[&m], range).await?;
    }
    Ok(())
}

/// The chain indexes each member digests.
fn ranges_by_member(of: impl Iterator<Item = (WorkerId, usize)>) -> BTreeMap<WorkerId, Vec<usize>> {
    let mut by: BTreeMap<WorkerId, Vec<usize>> = BTreeMap::new();
    for (m, i) in of {
        by.entry(m).or_default().push(i);
    }
    for v in by.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    by
}

/// Each member's digests of the chains' ranges `wanted` names, one member
/// at a time, paced to the cap.
async fn digest(
    chains: &[(KeyHashRange, Vec<WorkerId>)],
    wanted: &BTreeMap<WorkerId, Vec<usize>>,
    clients: &BTreeMap<WorkerId, worker_admin::Client>,
    log_bytes: &BTreeMap<WorkerId, u64>,
    config: ScrubConfig,
    report: &mut Report,
) -> Result<Digests, capnp::Error> {
    let mut digests = Digests::new();
    for (&m, indexes) in wanted {
        let began = tokio::time::Instant::now();
        let ranges: Vec<KeyHashRange> = indexes.iter().map(|&i| chains[i].0).collect();
        let mut req = clients[&m].digest_ranges_request();
        wimpy_schema::ranges::write(req.get().init_ranges(ranges.len() as u32), &ranges);
        let read = log_bytes.get(&m).copied().unwrap_or(0);
        // A pass over the member's whole log: a control call's time, and
        // that of reading the log at 5 MB/s (a slow SD card's pace).
        let limit = CALL + Duration::from_secs_f64(read as f64 / 5e6);
        let answer = within(limit, "digestRanges", req.send().promise).await?;
        let list = answer.get()?.get_digests()?;
        if list.len() as usize != indexes.len() {
            return Err(capnp::Error::failed(format!(
                "worker {m} digested {} of {} ranges",
                list.len(),
                indexes.len()
            )));
        }
        for (d, &i) in list.iter().zip(indexes) {
            digests.insert((m, i), (d.get_records(), d.get_digest()));
        }
        report.log_bytes += read;
        if config.bytes_per_second > 0 {
            tokio::time::sleep_until(began + Duration::from_secs_f64(read as f64 / config.bytes_per_second as f64))
                .await;
        }
    }
    Ok(digests)
}

/// Copies `range` from `reference` to `member`, which keeps only what is
/// newer than its own; returns how many records went.
async fn repair(
    reference: &worker_admin::Client,
    member: &worker_admin::Client,
    range: KeyHashRange,
) -> Result<u64, capnp::Error> {
    let mut receive = member.receive_ranges_request();
    wimpy_schema::ranges::write(receive.get().init_ranges(1), &[range]);
    receive.get().set_newer_only(true);
    let sink = within(CALL, "receiveRanges", receive.send().promise).await?.get()?.get_sink()?;
    let mut send = reference.send_ranges_request();
    wimpy_schema::ranges::write(send.get().init_ranges(1), &[range]);
    send.get().set_sink(sink);
    Ok(send.send().promise.await?.get()?.get_records())
}
