//! `wimpy scrub`.

use serde_json::json;

use super::Session;
use super::status::{describe_scrub, scrub_json};
use crate::failure::Failure;

/// Run a scrub pass now: the copies of every chain compared range by range
/// (counts and digests of keys and versions), and any copy that differs,
/// such as one holding a record damaged on its disk, repaired from the
/// chain's committed copy. Answers once the pass is done; the master also
/// runs one every `wimpy-master --scrub-every`. Needs a ring keeping more
/// than one copy of each key.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy scrub\n  wimpy status    # the last pass, under \"scrub\"")]
pub(crate) struct Scrub {}

impl Scrub {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let report = s.client.scrub().await?;
        s.print(|| format!("{}\n", describe_scrub(&report)), || json!({"ok": true, "scrub": scrub_json(&report)}))
    }
}
