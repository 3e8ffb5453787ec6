//! `wimpy`: the command-line tool. Talks to a cluster through the client SDK,
//! runs a local one (`wimpy local`), or benchmarks one (`wimpy bench`).
//!
//! One module per command under [`cmd`]; this file reads the command line,
//! sets up logging and dispatches. The tool is a client: it reaches the
//! cluster through the SDK (and starts the node binaries for `wimpy local`),
//! and never links the worker, the store or a GPU crate. Exit codes are in [`failure::exit`]:
//! 0 ok, 1 error, 2 usage, 3 not found, 4 cluster unreachable or key
//! unavailable, 5 input refused (limits, bad input), 6 forbidden (your certificate lacks the role).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use wimpy_net::Security;
use wimpy_net::security::{CredentialError, CredentialFiles, Credentials};

// The benchmark's clients allocate per request; mimalloc keeps the load
// generator's own cost down.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod cmd;
mod emulate;
mod failure;
mod files;
mod local;

use failure::Failure;

/// wimpy: a key-value store for fleets of small machines.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:\n  wimpy local                          # a master and three workers on this machine\n  echo hello | wimpy put greeting -\n  wimpy get greeting\n  wimpy status -w json\n  wimpy --credentials /etc/wimpy/tls --as alice get greeting\n  wimpy completions bash > /etc/bash_completion.d/wimpy"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes, before or after its name.
#[derive(Args, Debug, Clone)]
pub(crate) struct Global {
    /// Address of the master.
    #[arg(long, global = true, env = "WIMPY_MASTER", default_value = "127.0.0.1:7070")]
    pub(crate) master: SocketAddr,
    /// How results are written: text for people, json for programs (one
    /// JSON document per line; failures too, as {"ok": false, ...}).
    #[arg(short = 'w', long = "write-out", global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Other nodes to ask for the ring when the master does not answer
    /// (workers' addresses, comma-separated): reads and writes go on
    /// through the ring a worker holds while the master is away.
    #[arg(long, global = true, env = "WIMPY_SEEDS", value_delimiter = ',', value_name = "ADDR,...")]
    pub(crate) seeds: Vec<SocketAddr>,
    /// Send requests through the master (proxy mode, with its hot-key cache)
    /// instead of straight to the worker that owns the key.
    #[arg(long, global = true)]
    pub(crate) via_master: bool,
    /// What to log on standard error: error, warn, info, debug, trace, or a
    /// filter such as wimpy_client=debug (default: $RUST_LOG, else warn).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Where your credentials are: the cluster CA's certificate (ca.pem)
    /// and yours (NAME.pem and NAME.key, NAME from --as). `wimpy local`
    /// writes its cluster's to DATA/tls, so by default the tool finds those
    /// of a `wimpy local` run in this directory.
    #[arg(
        long,
        global = true,
        env = "WIMPY_CREDENTIALS",
        default_value = "wimpy-data/tls",
        value_name = "DIR",
        help_heading = "Security"
    )]
    pub(crate) credentials: PathBuf,
    /// Whose certificate in --credentials to use (`wimpy local` makes
    /// "operator", an admin).
    #[arg(
        long = "as",
        global = true,
        env = "WIMPY_AS",
        default_value = "operator",
        value_name = "NAME",
        help_heading = "Security"
    )]
    pub(crate) as_name: String,
    /// The cluster CA's certificate, instead of the one in --credentials.
    #[arg(long, global = true, env = "WIMPY_CA_FILE", value_name = "PATH", help_heading = "Security")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Your certificate, instead of the one in --credentials.
    #[arg(long, global = true, env = "WIMPY_CERT_FILE", value_name = "PATH", help_heading = "Security")]
    pub(crate) cert_file: Option<PathBuf>,
    /// Your private key (mode 0600), instead of the one in --credentials.
    #[arg(long, global = true, env = "WIMPY_KEY_FILE", value_name = "PATH", help_heading = "Security")]
    pub(crate) key_file: Option<PathBuf>,
    /// Connect without TLS, to a cluster run with --insecure (and `wimpy
    /// local --insecure` runs one).
    #[arg(long, global = true, help_heading = "Security")]
    pub(crate) insecure: bool,
}

impl Global {
    /// How to secure connections to the cluster: the credentials named by
    /// the flags (loaded and checked), or insecure.
    pub(crate) fn security(&self) -> Result<Security, Failure> {
        if self.insecure {
            return Ok(Security::Insecure);
        }
        let default = CredentialFiles::in_dir(&self.credentials, &self.as_name);
        let files = CredentialFiles {
            ca: self.ca_file.clone().unwrap_or(default.ca),
            cert: self.cert_file.clone().unwrap_or(default.cert),
            key: self.key_file.clone().unwrap_or(default.key),
        };
        let credentials = Credentials::load(&files).map_err(|e| match e {
            CredentialError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                Failure::usage(format!(
                    "no credentials: {} does not exist (run `wimpy local` here, point --credentials at a cluster's, \
                 or give --insecure for a cluster run without TLS)",
                    path.display()
                ))
            }
            e => Failure::usage(e.to_string()),
        })?;
        Security::tls(&credentials).map_err(|e| Failure::usage(e.to_string()))
    }
}

/// The output format of `-w/--write-out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    Put(cmd::put::Put),
    Get(cmd::get::Get),
    Del(cmd::del::Del),
    Status(cmd::status::Status),
    Ring(cmd::ring::Ring),
    Compute(cmd::compute::Compute),
    Hash(cmd::hash::Hash),
    Backends(cmd::backends::Backends),
    Leave(cmd::leave::Leave),
    Remove(cmd::remove::Remove),
    Scrub(cmd::scrub::Scrub),
    Local(cmd::local::Local),
    Ca(cmd::ca::Ca),
    Cert(cmd::cert::Cert),
    Token(cmd::token::Token),
    /// Benchmark a cluster: YCSB A-F, the GET/PUT/HASH/PICT mix or compute
    /// jobs, closed loop or at a fixed rate; `bench scale` over cluster
    /// sizes; `bench compute` over backends. Tables, JSON and SVG charts.
    #[command(after_help = bench::EXAMPLES)]
    Bench(Box<bench::BenchArgs>),
    Completions(cmd::completions::Completions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    if let Err(e) = wimpy_net::logging::init(g.log_level.as_deref(), "warn") {
        return fail(&Failure::usage(format!("--log-level: {e}")), g.format);
    }
    let result = match &cli.command {
        Command::Put(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Get(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Del(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Status(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Ring(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Compute(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Hash(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Backends(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Leave(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Remove(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Scrub(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        Command::Local(c) => c.run(g),
        Command::Ca(c) => c.run(g),
        Command::Cert(c) => c.run(g),
        Command::Token(c) => cmd::on_cluster(g, async |s| c.run(s).await),
        // The bench runs its own threads and runtimes.
        Command::Bench(args) => bench::main(args, g),
        Command::Completions(c) => c.run(<Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f, g.format),
    }
}

fn fail(f: &Failure, format: Format) -> ExitCode {
    match format {
        Format::Text => eprintln!("wimpy: {}", f.message),
        Format::Json => println!("{}", json!({"ok": false, "error": f.message, "exit": f.code})),
    }
    ExitCode::from(f.code)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, Format};

    #[test]
    fn every_command_shows_an_example() {
        fn walk(command: &mut clap::Command, path: &str) {
            let help = command.render_help().to_string();
            assert!(help.contains("Example"), "`{path} --help` shows no example:\n{help}");
            for sub in command.get_subcommands_mut().filter(|c| c.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                walk(sub, &path);
            }
        }
        walk(&mut Cli::command(), "wimpy");
    }

    #[test]
    fn global_flags_read_the_same_before_and_after_the_command() {
        let before =
            Cli::try_parse_from(["wimpy", "-w", "json", "--master", "10.0.0.1:9", "--via-master", "status"]).unwrap();
        let after =
            Cli::try_parse_from(["wimpy", "status", "--via-master", "-w", "json", "--master", "10.0.0.1:9"]).unwrap();
        for cli in [before, after] {
            assert!(matches!(cli.command, Command::Status(_)));
            assert_eq!(cli.global.format, Format::Json);
            assert_eq!(cli.global.master, "10.0.0.1:9".parse().unwrap());
            assert!(cli.global.via_master);
        }
        // -o is a file everywhere, never the output format.
        assert!(Cli::try_parse_from(["wimpy", "-o", "json", "status"]).is_err());
        let get = Cli::try_parse_from(["wimpy", "get", "k", "-o", "-", "-w", "json"]).unwrap();
        assert_eq!(get.global.format, Format::Json);
    }
}
