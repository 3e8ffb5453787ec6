//! `wimpy status`.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wimpy_client::{Member, MoveChange, RangeMove, ScrubReport};

use super::Session;
use crate::failure::Failure;

/// Members, the epoch, and keys and bytes per worker; the copy a join,
/// leave or `wimpy remove` is making (how far, how fast, how long to go);
/// the scrub's last pass (when, how long, what it found and repaired, its
/// rate);
/// why a worker is down or failed, any damage a worker's store stepped
/// over when it last opened, and whose certificate each worker holds and
/// until when (flagged when it expires within 7 days).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  wimpy status\n  wimpy status -w json | jq '.members[] | {id, state, keys}'")]
pub(crate) struct Status {}

impl Status {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let wimpy_client::ClusterStatus { view, joining, moving, scrub } = s.client.status().await?;
        s.print(
            || {
                let mut t = format!("epoch {}, {} member(s)\n", view.ring.epoch(), view.members.len());
                let row = |t: &mut String, cells: [&dyn std::fmt::Display; 6]| {
                    let [id, address, state, keys, log, garbage] = cells;
                    let _ = writeln!(t, "{id:>4}  {address:<22} {state:<8} {keys:>10} {log:>12} {garbage:>12}");
                };
                row(&mut t, [&"id", &"address", &"state", &"keys", &"log bytes", &"garbage"]);
                let all: Vec<&Member> = view.members.iter().chain(&joining).collect();
                for m in &all {
                    let f = &m.stats;
                    row(&mut t, [&m.id, &m.address, &m.state, &f.live_keys, &f.log_bytes, &f.garbage_bytes]);
                }
                for m in &all {
                    match (m.certificate.as_str(), m.certificate_expires) {
                        ("", _) => {}
                        (name, Some(expires)) => {
                            let days = days_left(expires);
                            let flag = if expiring(expires) { "  EXPIRES SOON: issue a new one" } else { "" };
                            let _ = writeln!(t, "worker {}: certificate {name}, expires in {days} day(s){flag}", m.id);
                        }
                        (name, None) => {
                            let _ = writeln!(t, "worker {}: certificate {name}", m.id);
                        }
                    }
                }
                if let Some(m) = &moving {
                    let _ = writeln!(t, "{}", describe_move(m));
                }
                if view.ring.replicas() > 1 {
                    let _ = writeln!(t, "{}", describe_scrub(&scrub));
                }
                for m in all.iter().filter(|m| !m.reason.is_empty()) {
                    let _ = writeln!(t, "worker {} is {}: {}", m.id, m.state, m.reason);
                }
                for m in all.iter().filter(|m| m.stats.damaged_spans > 0) {
                    let f = &m.stats;
                    let _ = writeln!(
                        t,
                        "worker {}: its store stepped over {} damaged span(s) when it last opened (a record lost at each):",
                        m.id, f.damaged_spans
                    );
                    for d in &f.damage {
                        let _ = writeln!(t, "  segment {} offset {}: {} bytes, {}", d.segment, d.offset, d.bytes, d.reason);
                    }
                    if f.damaged_spans > f.damage.len() as u64 {
                        let _ = writeln!(t, "  ... and {} more", f.damaged_spans - f.damage.len() as u64);
                    }
                }
                t
            },
            || {
                json!({"epoch": view.ring.epoch(),
                       "members": view.members.iter().map(member_json).collect::<Vec<_>>(),
                       "joining": joining.iter().map(member_json).collect::<Vec<_>>(),
                       "moving": moving.as_ref().map(move_json),
                       "scrub": scrub_json(&scrub)})
            },
        )
    }
}

/// A certificate this close to its end is flagged.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86_400);

fn days_left(expires: SystemTime) -> u64 {
    expires.duration_since(SystemTime::now()).map_or(0, |d| d.as_secs() / 86_400)
}

fn expiring(expires: SystemTime) -> bool {
    expires.duration_since(SystemTime::now()).map_or(true, |d| d < EXPIRY_WARNING)
}

fn member_json(m: &Member) -> Value {
    let f = &m.stats;
    let expires = m.certificate_expires;
    json!({"id": m.id, "address": m.address, "state": m.state.to_string(), "reason": m.reason,
           "certificate": m.certificate,
           "certificate_expires": expires.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
           "certificate_expiring": expires.is_some_and(expiring),
           "keys": f.live_keys, "log_bytes": f.log_bytes,
           "garbage_bytes": f.garbage_bytes, "index_bytes": f.index_bytes, "damaged_spans": f.damaged_spans,
           "damage": f.damage.iter().map(|d| json!({"segment": d.segment, "offset": d.offset, "bytes": d.bytes,
               "reason": d.reason})).collect::<Vec<_>>()})
}

/// One line on the copy a membership change is making.
fn describe_move(m: &RangeMove) -> String {
    let what = match m.change {
        MoveChange::Join => format!("worker {} joins", m.worker),
        MoveChange::Return => format!("worker {} catches up on what it missed", m.worker),
        MoveChange::Leave => format!("worker {} hands its ranges over", m.worker),
        MoveChange::Remove => format!("the chains worker {} was in take on new members", m.worker),
    };
    let mb = |b: f64| b / 1e6;
    let cap = match m.bytes_per_second {
        0 => String::new(),
        b => format!(", capped at {:.1} MB/s", mb(b as f64)),
    };
    let pairs = format!("{} of {} source-receiver pairs done", m.pairs_done, m.pairs);
    match (m.pass, m.eta()) {
        (1, eta) => format!(
            "moving: {what}: copying while writes go on, {:.1} of about {:.1} MB at {:.1} MB/s{cap}, {pairs}{}",
            mb(m.bytes_copied as f64),
            mb(m.bytes_expected as f64),
            mb(m.rate()),
            eta.map_or(String::new(), |d| format!(", about {} s to go", d.as_secs().max(1))),
        ),
        _ => format!(
            "moving: {what}: copying the writes since, with writes to the ranges held back: {:.1} MB, {pairs}",
            mb(m.bytes_copied as f64)
        ),
    }
}

/// One line on the scrub's last pass.
pub(crate) fn describe_scrub(r: &ScrubReport) -> String {
    let running = if r.running { " (a pass is under way)" } else { "" };
    let cap = match r.bytes_per_second {
        0 => "uncapped".to_owned(),
        b => format!("at most {:.1} MB/s per worker", b as f64 / 1e6),
    };
    let Some(started) = r.started else {
        return format!("scrub: no pass yet{running}; reads {cap}");
    };
    let ago = SystemTime::now().duration_since(started).map_or(0, |d| d.as_secs());
    let outcome = match r.failure.as_str() {
        "" => String::new(),
        why => format!("; stopped short: {why}"),
    };
    let read_rate = match r.took.as_secs_f64() {
        0.0 => 0.0,
        secs => r.log_bytes as f64 / 1e6 / secs,
    };
    format!(
        "scrub: last pass {ago} s ago, {:.1} s, compared {} range copies, {} differed, {} records sent to repair them;          read {:.1} MB at {read_rate:.1} MB/s ({cap}){outcome}{running}",
        r.took.as_secs_f64(),
        r.ranges,
        r.differing,
        r.repaired,
        r.log_bytes as f64 / 1e6,
    )
}

pub(crate) fn scrub_json(r: &ScrubReport) -> Value {
    json!({"started_unix": r.started.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
           "seconds": r.took.as_secs_f64(), "running": r.running, "ranges": r.ranges, "differing": r.differing,
           "repaired": r.repaired, "log_bytes": r.log_bytes, "bytes_per_second_cap": r.bytes_per_second,
           "failure": r.failure})
}

fn move_json(m: &RangeMove) -> Value {
    json!({"worker": m.worker, "change": m.change.to_string(), "pass": m.pass,
           "bytes_copied": m.bytes_copied, "bytes_expected": m.bytes_expected, "records": m.records,
           "elapsed_seconds": m.elapsed.as_secs_f64(), "bytes_per_second": m.rate(),
           "bytes_per_second_cap": m.bytes_per_second,
           "eta_seconds": m.eta().map(|d| d.as_secs_f64()),
           "pairs_done": m.pairs_done, "pairs": m.pairs})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_says_what_moves_how_far_and_how_long_it_has_to_go() {
        let mut m = RangeMove {
            worker: 4,
            change: MoveChange::Remove,
            pass: 1,
            bytes_copied: 12_000_000,
            bytes_expected: 36_000_000,
            records: 3000,
            elapsed: Duration::from_secs(3),
            bytes_per_second: 8_000_000,
            pairs_done: 1,
            pairs: 3,
        };
        let line = describe_move(&m);
        for part in
            ["worker 4", "12.0 of about 36.0 MB", "at 4.0 MB/s", "capped at 8.0 MB/s", "1 of 3", "about 6 s to go"]
        {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
        assert_eq!(move_json(&m)["eta_seconds"], 6.0);
        m.pass = 2;
        let line = describe_move(&m);
        assert!(line.contains("writes since") && !line.contains("to go"), "{line}");
        assert_eq!(move_json(&m)["eta_seconds"], Value::Null);
    }
}
