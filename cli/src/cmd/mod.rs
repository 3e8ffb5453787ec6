//! One module per command, as mini-redis has one file per command. Each
//! holds the command's arguments (a clap `Args` struct whose doc comment is
//! its `--help`, with examples after it) and its `run`.

pub(crate) mod backends;
pub(crate) mod ca;
pub(crate) mod cert;
pub(crate) mod completions;
pub(crate) mod compute;
pub(crate) mod del;
pub(crate) mod get;
pub(crate) mod hash;
pub(crate) mod leave;
pub(crate) mod local;
pub(crate) mod put;
pub(crate) mod remove;
pub(crate) mod ring;
pub(crate) mod scrub;
pub(crate) mod status;
pub(crate) mod token;

use std::io::Write;

use serde_json::Value;
use wimpy_client::{Client, ClientOptions};

use crate::failure::Failure;
use crate::{Format, Global};

/// What a command that talks to the cluster runs with.
pub(crate) struct Session {
    /// Connected to the master, with its ring fetched.
    pub(crate) client: Client,
    /// How results are written.
    pub(crate) format: Format,
}

impl Session {
    /// Prints a command's outcome: `text` (as it is) for people, or `json`
    /// as one line for programs. Only the one asked for is built.
    pub(crate) fn print(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) -> Result<(), Failure> {
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Text => out.write_all(text().as_bytes())?,
            Format::Json => writeln!(out, "{}", json())?,
        }
        out.flush()?;
        Ok(())
    }
}

/// Connects to the cluster `global` names and runs `command` with it, on a
/// current-thread runtime inside a `LocalSet` (capnp-rpc is single-threaded).
pub(crate) fn on_cluster(
    global: &Global,
    command: impl AsyncFnOnce(&Session) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&rt, async {
        let options = ClientOptions {
            via_master: global.via_master,
            seeds: global.seeds.clone(),
            ..ClientOptions::new(global.security()?)
        };
        let client = Client::connect_with(global.master, options).await?;
        command(&Session { client, format: global.format }).await
    })
}

/// Bytes as lowercase hex, as digests and fingerprints are printed.
pub(crate) use wimpy_net::security::hex;
