//! `wimpy get KEY [-o FILE]`.

use std::path::PathBuf;

use serde_json::json;

use super::{Session, hex};
use crate::failure::Failure;
use crate::{Format, files};

/// Print a value, or write it to a file with -o.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy get greeting\n  wimpy get photo -o photo.png\n  wimpy get photo -o - | file -\n  wimpy get greeting -w json      # {\"ok\":true,\"key\":\"greeting\",\"value\":\"hello\\n\"}"
)]
pub(crate) struct Get {
    /// The key to read.
    key: String,
    /// Write the value to FILE (- for standard output, with no report).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

impl Get {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let key = &self.key;
        let Some(value) = s.client.get(key.as_bytes()).await? else {
            return Err(Failure::not_found(key));
        };
        match &self.out {
            // Standard output carries the value itself: no report beside it.
            Some(path) if files::is_std(path) => files::write_output(path, &value),
            Some(path) => {
                files::write_output(path, &value)?;
                s.print(
                    || format!("wrote {} bytes to {}\n", value.len(), path.display()),
                    || json!({"ok": true, "key": key, "bytes": value.len(), "file": path}),
                )
            }
            None if s.format == Format::Text => files::write_output("-".as_ref(), &value),
            None => s.print(String::new, || match std::str::from_utf8(&value) {
                Ok(text) => json!({"ok": true, "key": key, "value": text}),
                Err(_) => json!({"ok": true, "key": key, "value_hex": hex(&value)}),
            }),
        }
    }
}
