//! `wimpy`: the command-line tool. Talks to a cluster through the client SDK,
//! or runs a local one (`wimpy local`).
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 cluster unreachable or
//! key unavailable, 5 input refused (limits, bad input).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use wimpy_client::{Client, ClientError};

mod local;

/// wimpy: a key-value store for fleets of small machines.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address of the master.
    #[arg(long, env = "WIMPY_MASTER", default_value = "127.0.0.1:7070")]
    master: SocketAddr,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Send requests through the master (proxy mode, with its hot-key cache)
    /// instead of straight to the worker that owns the key.
    #[arg(long)]
    via_master: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store a value: from FILE, or standard input if FILE is - or absent.
    Put { key: String, file: Option<PathBuf> },
    /// Print a value, or write it to a file with -o.
    Get {
        key: String,
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Delete a key.
    Del { key: String },
    /// Members, the epoch, and keys and bytes per worker.
    Status,
    /// The ring: which worker owns which share of the key space.
    Ring,
    /// Have a worker hand its keys to the others and leave the ring.
    Leave { worker_id: u64 },
    /// Run a local cluster: a master on --master and N workers, in the
    /// foreground until Ctrl-C.
    Local {
        /// Number of workers.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Where the nodes keep their data.
        #[arg(long, default_value = "wimpy-data")]
        data: PathBuf,
        /// Workers' sync mode: always, interval:MS or never.
        #[arg(long, default_value = "always")]
        sync: String,
    },
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            ClientError::TooLarge { .. } | ClientError::Invalid(_) => 5,
            e if e.is_unavailable() => 4,
            _ => 1,
        };
        Failure { code, message: e.to_string() }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure { code: 1, message: e.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Local { workers, ref data, ref sync } => {
            local::run(cli.master, workers, data, sync).map_err(Failure::from)
        }
        _ => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&Failure::from(e), cli.format),
            };
            tokio::task::LocalSet::new().block_on(&rt, execute(&cli))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f, cli.format),
    }
}

fn fail(f: &Failure, format: Format) -> ExitCode {
    match format {
        Format::Text => eprintln!("wimpy: {}", f.message),
        Format::Json => println!("{}", json!({"ok": false, "error": f.message, "exit": f.code})),
    }
    ExitCode::from(f.code)
}

async fn execute(cli: &Cli) -> Result<(), Failure> {
    let opts = wimpy_client::ClientOptions { via_master: cli.via_master, ..Default::default() };
    let client = Client::connect_with(cli.master, opts).await?;
    let out = &mut std::io::stdout().lock();
    match &cli.command {
        Command::Put { key, file } => {
            let value = match file.as_deref() {
                None => read_stdin()?,
                Some(p) if p.as_os_str() == "-" => read_stdin()?,
                Some(p) => {
                    std::fs::read(p).map_err(|e| Failure { code: 5, message: format!("{}: {e}", p.display()) })?
                }
            };
            client.put(key.as_bytes(), &value).await?;
            match cli.format {
                Format::Text => writeln!(out, "stored {} ({} bytes)", key, value.len())?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "key": key, "bytes": value.len()}))?,
            }
        }
        Command::Get { key, out: file } => {
            let Some(value) = client.get(key.as_bytes()).await? else {
                return Err(Failure { code: 3, message: format!("{key}: not found") });
            };
            match (file, cli.format) {
                (Some(p), Format::Text) => {
                    std::fs::write(p, &value)?;
                    writeln!(out, "wrote {} bytes to {}", value.len(), p.display())?;
                }
                (Some(p), Format::Json) => {
                    std::fs::write(p, &value)?;
                    writeln!(out, "{}", json!({"ok": true, "key": key, "bytes": value.len(), "file": p}))?;
                }
                (None, Format::Text) => out.write_all(&value)?,
                (None, Format::Json) => match std::str::from_utf8(&value) {
                    Ok(text) => writeln!(out, "{}", json!({"ok": true, "key": key, "value": text}))?,
                    Err(_) => writeln!(out, "{}", json!({"ok": true, "key": key, "value_hex": hex(&value)}))?,
                },
            }
        }
        Command::Del { key } => {
            if !client.delete(key.as_bytes()).await? {
                return Err(Failure { code: 3, message: format!("{key}: not found") });
            }
            match cli.format {
                Format::Text => writeln!(out, "deleted {key}")?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "key": key, "deleted": true}))?,
            }
        }
        Command::Status => {
            let (view, joining) = client.status().await?;
            let member = |m: &wimpy_client::Member| {
                json!({"id": m.id, "address": m.address, "state": format!("{:?}", m.state).to_lowercase(),
                       "keys": m.live_keys, "log_bytes": m.log_bytes, "garbage_bytes": m.garbage_bytes,
                       "index_bytes": m.index_bytes})
            };
            match cli.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({"epoch": view.ring.epoch(), "members": view.members.iter().map(member).collect::<Vec<_>>(),
                           "joining": joining.iter().map(member).collect::<Vec<_>>()})
                )?,
                Format::Text => {
                    writeln!(out, "epoch {}, {} member(s)", view.ring.epoch(), view.members.len())?;
                    writeln!(
                        out,
                        "{:>4}  {:<22} {:<8} {:>10} {:>12} {:>12}",
                        "id", "address", "state", "keys", "log bytes", "garbage"
                    )?;
                    for m in view.members.iter().chain(joining.iter()) {
                        writeln!(
                            out,
                            "{:>4}  {:<22} {:<8} {:>10} {:>12} {:>12}",
                            m.id,
                            m.address,
                            format!("{:?}", m.state).to_lowercase(),
                            m.live_keys,
                            m.log_bytes,
                            m.garbage_bytes
                        )?;
                    }
                }
            }
        }
        Command::Ring => {
            let view = client.ring();
            let shares = view.ring.shares();
            match cli.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({"epoch": view.ring.epoch(), "vnodes": view.ring.vnodes(),
                           "members": view.members.iter().map(|m| json!({"id": m.id, "address": m.address,
                               "share": shares.get(&m.id).copied().unwrap_or(0.0)})).collect::<Vec<_>>()})
                )?,
                Format::Text => {
                    writeln!(out, "epoch {}, {} points per worker", view.ring.epoch(), view.ring.vnodes())?;
                    for m in &view.members {
                        let share = shares.get(&m.id).copied().unwrap_or(0.0) * 100.0;
                        writeln!(out, "{:>4}  {:<22} {:>6.2}% of keys", m.id, m.address, share)?;
                    }
                }
            }
        }
        Command::Leave { worker_id } => {
            client.leave(*worker_id).await?;
            match cli.format {
                Format::Text => writeln!(out, "worker {worker_id} handed its keys over and left the ring")?,
                Format::Json => writeln!(out, "{}", json!({"ok": true, "left": worker_id}))?,
            }
        }
        Command::Local { .. } => unreachable!("handled in main"),
    }
    Ok(())
}

fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut v = Vec::new();
    std::io::stdin().read_to_end(&mut v)?;
    Ok(v)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
