//! `wimpy status`.

use std::fmt::Write;

use serde_json::{Value, json};
use wimpy_client::Member;

use super::Session;
use crate::failure::Failure;

/// Members, the epoch, and keys and bytes per worker; why a worker is down
/// or failed, and any damage a worker's store stepped over when it last
/// opened.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  wimpy status\n  wimpy status -w json | jq '.members[] | {id, state, keys}'")]
pub(crate) struct Status {}

impl Status {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let (view, joining) = s.client.status().await?;
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
                       "joining": joining.iter().map(member_json).collect::<Vec<_>>()})
            },
        )
    }
}

fn member_json(m: &Member) -> Value {
    let f = &m.stats;
    json!({"id": m.id, "address": m.address, "state": m.state.to_string(), "reason": m.reason, "keys": f.live_keys, "log_bytes": f.log_bytes,
           "garbage_bytes": f.garbage_bytes, "index_bytes": f.index_bytes, "damaged_spans": f.damaged_spans,
           "damage": f.damage.iter().map(|d| json!({"segment": d.segment, "offset": d.offset, "bytes": d.bytes,
               "reason": d.reason})).collect::<Vec<_>>()})
}
