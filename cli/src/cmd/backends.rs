//! `wimpy backends`.

use std::fmt::Write;

use serde_json::json;

use super::Session;
use crate::failure::Failure;

/// The compute backends of every worker.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  wimpy backends\n  wimpy backends -w json")]
pub(crate) struct Backends {}

/// One line of the table: a worker's backend, or why the worker did not say.
struct Row {
    worker: u64,
    backend: String,
    device: String,
    software: bool,
    error: Option<String>,
}

impl Backends {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let mut rows = Vec::new();
        for (worker, answer) in s.client.backends().await? {
            match answer {
                Ok(list) => rows.extend(list.into_iter().map(|b| Row {
                    worker,
                    backend: b.backend.to_string(),
                    device: b.device,
                    software: b.software,
                    error: None,
                })),
                Err(e) => rows.push(Row {
                    worker,
                    backend: String::new(),
                    device: String::new(),
                    software: false,
                    error: Some(e.to_string()),
                }),
            }
        }
        s.print(
            || {
                let mut t = String::new();
                for r in &rows {
                    let _ = match &r.error {
                        Some(e) => writeln!(t, "{:>4}  unreachable: {e}", r.worker),
                        None => writeln!(
                            t,
                            "{:>4}  {:<5} {}{}",
                            r.worker,
                            r.backend,
                            r.device,
                            if r.software { " (software: correct, not fast)" } else { "" }
                        ),
                    };
                }
                t
            },
            || {
                json!(
                    rows.iter()
                        .map(|r| json!({"worker": r.worker, "backend": r.backend, "device": r.device,
                    "software": r.software, "error": r.error}))
                        .collect::<Vec<_>>()
                )
            },
        )
    }
}
