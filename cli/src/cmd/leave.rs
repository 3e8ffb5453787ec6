//! `wimpy leave WORKER_ID`.

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// Have a worker hand its keys to the others and leave the ring; returns
/// once the handover is done and the worker can be stopped.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy status            # find the worker's id\n  wimpy leave 3")]
pub(crate) struct Leave {
    /// The id `wimpy status` shows for the worker.
    worker_id: u64,
}

impl Leave {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let id = self.worker_id;
        s.client.leave(id).await?;
        s.print(|| format!("worker {id} handed its keys over and left the ring\n"), || json!({"ok": true, "left": id}))
    }
}
