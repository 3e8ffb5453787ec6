//! `wimpy put KEY [FILE]`.

use std::path::PathBuf;

use serde_json::json;

use super::Session;
use crate::failure::Failure;
use crate::files;

/// Store a value: from FILE, or standard input if FILE is - or absent.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy put photo testdata/compute/scene-a.png\n  echo hello | wimpy put greeting -"
)]
pub(crate) struct Put {
    /// The key to store under.
    key: String,
    /// Where the value comes from (- or absent: standard input).
    file: Option<PathBuf>,
}

impl Put {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let value = files::read_input(self.file.as_deref().unwrap_or("-".as_ref()))?;
        s.client.put(self.key.as_bytes(), &value).await?;
        s.print(
            || format!("stored {} ({} bytes)\n", self.key, value.len()),
            || json!({"ok": true, "key": self.key, "bytes": value.len()}),
        )
    }
}
