//! `wimpy ring`.

use std::fmt::Write;

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// The ring: which worker owns which share of the key space.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  wimpy ring\n  wimpy ring -w json")]
pub(crate) struct Ring {}

impl Ring {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let view = s.client.ring();
        let shares = view.ring.shares();
        let share = |id| shares.get(&id).copied().unwrap_or(0.0);
        s.print(
            || {
                let mut t = format!("epoch {}, {} points per worker\n", view.ring.epoch(), view.ring.vnodes());
                for m in &view.members {
                    let _ = writeln!(t, "{:>4}  {:<22} {:>6.2}% of keys", m.id, m.address, share(m.id) * 100.0);
                }
                t
            },
            || {
                json!({"epoch": view.ring.epoch(), "vnodes": view.ring.vnodes(),
                       "members": view.members.iter().map(|m| json!({"id": m.id, "address": m.address,
                           "share": share(m.id)})).collect::<Vec<_>>()})
            },
        )
    }
}
