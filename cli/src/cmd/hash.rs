//! `wimpy hash KEY`.

use clap::ValueEnum;
use wimpy_client::ComputeRequest;
use wimpy_client::job::Job;

use super::compute::{output_json, parse_backend};
use super::{Session, hex};
use crate::failure::Failure;

/// Hash the value at KEY on the worker that owns it.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  wimpy hash photo\n  wimpy hash photo --algo sha256 --rounds 1000 --backend gles")]
pub(crate) struct Hash {
    /// The key whose value to hash.
    key: String,
    /// The hash function.
    #[arg(long, value_enum, default_value_t = Algo::Blake3)]
    algo: Algo,
    /// Hash the digest again, this many times in all.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Backend to run on: auto, cpu, simd, gles or wgpu.
    #[arg(long, default_value = "auto")]
    backend: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Algo {
    Blake3,
    Sha256,
}

impl Hash {
    pub(crate) async fn run(&self, s: &Session) -> Result<(), Failure> {
        let op = match self.algo {
            Algo::Blake3 => "blake3",
            Algo::Sha256 => "sha256",
        };
        let job = Job::parse(&[format!("{op}:{}", self.rounds)]).map_err(Failure::refused)?;
        let request = ComputeRequest { job, backend: parse_backend(&self.backend)?, deadline: None };
        let key = &self.key;
        let Some(result) = s.client.compute(key.as_bytes(), &request).await? else {
            return Err(Failure::not_found(key));
        };
        s.print(|| format!("{}  {key}\n", hex(&result.bytes)), || output_json(key, &result, None, true))
    }
}
