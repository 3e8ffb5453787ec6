//! `wimpy del KEY`.

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// Delete a key (exit 3 if it was not there).
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  wimpy del greeting")]
pub(crate) struct Del {
    /// The key to delete.
    key: String,
}

impl Del {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        if !s.client.delete(self.key.as_bytes()).await? {
            return Err(Failure::not_found(&self.key));
        }
        s.print(|| format!("deleted {}\n", self.key), || json!({"ok": true, "key": self.key, "deleted": true}))
    }
}
