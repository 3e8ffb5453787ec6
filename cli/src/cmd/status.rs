//! `wimpy status`.

use std::fmt::Write;

use serde_json::{Value, json};
use wimpy_client::Member;

use super::Session;
use crate::failure::Failure;

/// Members, the epoch, and keys and bytes per worker.
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
                for m in view.members.iter().chain(&joining) {
                    row(&mut t, [&m.id, &m.address, &state(m), &m.live_keys, &m.log_bytes, &m.garbage_bytes]);
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

fn state(m: &Member) -> String {
    format!("{:?}", m.state).to_lowercase()
}

fn member_json(m: &Member) -> Value {
    json!({"id": m.id, "address": m.address, "state": state(m), "keys": m.live_keys, "log_bytes": m.log_bytes,
           "garbage_bytes": m.garbage_bytes, "index_bytes": m.index_bytes})
}
