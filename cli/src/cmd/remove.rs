//! `wimpy remove WORKER_ID`.

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// Take a worker that is gone for good off the ring: one that is down or
/// failed and will not come back on its data (its disk died, or it was
/// started again on an empty one and joined under a new id). Each chain
/// it was in takes on another member, which gets the chain's keys from the
/// members that stayed. Needs a ring keeping more than one copy of each
/// key; a worker in service hands its keys over with `wimpy leave`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy status            # the worker shows as down\n  wimpy remove 3")]
pub(crate) struct Remove {
    /// The id `wimpy status` shows for the worker.
    worker_id: u64,
}

impl Remove {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let id = self.worker_id;
        s.client.remove(id).await?;
        s.print(
            || format!("worker {id} is off the ring; its keys' other copies were copied to the chains' new members\n"),
            || json!({"ok": true, "removed": id}),
        )
    }
}
