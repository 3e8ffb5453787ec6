//! `wimpy-worker`: serves one FAWN-DS store and keeps itself on the master's
//! ring. Parses flags, binds, and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wimpy_compute::{BackendKind, EngineConfig, Limits};
use wimpy_net::security::flags::NodeCredentialFlags;
use wimpy_net::security::{CredentialFiles, Credentials, JoinToken};
use wimpy_net::{Role, Security};
use wimpy_store::{Options, SyncMode};
use wimpy_worker::node::{WorkerConfig, run};
use wimpy_worker::server::intake::IntakeLimits;

// Every request allocates a little (keys, answers, futures) on each
// serving thread; mimalloc's thread-local free lists beat glibc's malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve a wimpy worker.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  wimpy-worker --master 10.0.0.2:7070 --listen 0.0.0.0:7100 --data /var/lib/wimpy \\\n    --ca-file tls/ca.pem --cert-file tls/pi-3.pem --key-file tls/pi-3.key\n  wimpy-worker --master 10.0.0.2:7070 --data /var/lib/wimpy --join wimpy-join-1:...   # a token from `wimpy token create`\n  wimpy-worker --master 127.0.0.1:7070 --data /tmp/w1 --insecure   # no TLS: a machine of your own only"
)]
struct Args {
    /// Address of the master.
    #[arg(long, env = "WIMPY_MASTER", default_value = "127.0.0.1:7070")]
    master: SocketAddr,
    /// Address to serve RPC on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Data directory: the store and this worker's id.
    #[arg(long)]
    data: PathBuf,
    /// When writes reach flash: always, interval:MS or never.
    #[arg(long, default_value = "always")]
    sync: SyncMode,
    /// Keys to size the in-memory index for (it grows past this).
    #[arg(long, default_value_t = 1 << 20)]
    expected_keys: u64,
    /// Threads serving RPC (default: one per core).
    #[arg(long)]
    cores: Option<usize>,
    /// Compute backends to probe, comma-separated (wgpu, gles, simd, cpu).
    #[arg(long, value_delimiter = ',', default_value = "wgpu,gles,simd,cpu")]
    backends: Vec<BackendKind>,
    /// Largest image a compute job may decode or make, in pixels.
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    max_pixels: u64,
    /// How long a compute job may run, in milliseconds.
    #[arg(long, default_value_t = Limits::default().deadline.as_millis() as u64)]
    compute_deadline_ms: u64,
    /// Compute jobs each backend may hold waiting before answering "busy".
    #[arg(long, default_value_t = EngineConfig::default().queue_depth)]
    compute_queue: usize,
    /// Data-plane calls in flight the worker takes at once; past it a call
    /// answers "overloaded".
    #[arg(long, default_value_t = IntakeLimits::default().calls)]
    max_calls: usize,
    /// Data-plane calls in flight one connection may have.
    #[arg(long, default_value_t = IntakeLimits::default().calls_per_connection)]
    max_calls_per_connection: usize,
    /// MiB of uploaded values (putStream) held in memory at once; past it
    /// an upload answers "overloaded".
    #[arg(long, default_value_t = IntakeLimits::default().upload_bytes >> 20)]
    max_upload_mib: usize,
    /// Hold back everything this worker receives by this long (2ms,
    /// 500us), as a slower network would: an emulated fleet on one machine
    /// (`wimpy local --emulate`).
    #[arg(long, value_name = "SPAN", default_value = "0", value_parser = wimpy_net::flags::span)]
    receive_delay: std::time::Duration,
    /// What to log: error, warn, info, debug, trace, or a filter such as
    /// wimpy_store=debug,info (default: $RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(flatten)]
    credentials: NodeCredentialFlags,
    /// Join the cluster with a one-time token (`wimpy token create` prints
    /// one): the worker makes its key, checks the master's CA against the
    /// token and has the master sign its certificate, kept in DATA/tls for
    /// later starts (which then need no token).
    #[arg(
        long,
        env = "WIMPY_JOIN_TOKEN",
        value_name = "TOKEN",
        conflicts_with_all = ["ca_file", "cert_file", "key_file", "insecure"]
    )]
    join: Option<String>,
    /// The name to join as: the certificate's (default: this machine's
    /// host name).
    #[arg(long, requires = "join")]
    name: Option<String>,
}

/// The worker's credentials when it joins with a token: those of an
/// earlier join in DATA/tls, or new ones the master signs now.
fn joined(data: &std::path::Path, token: &str, name: Option<&str>, master: SocketAddr) -> anyhow::Result<Security> {
    let dir = data.join("tls");
    let name = match name {
        Some(name) => name.to_owned(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned()),
    };
    let files = CredentialFiles::in_dir(&dir, &name);
    if !files.cert.exists() {
        let token: JoinToken = token.parse()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        tokio::task::LocalSet::new()
            .block_on(&rt, wimpy_net::security::join::join(&master.to_string(), &token, &name, &dir))
            .with_context(|| format!("joining the cluster of {master} as {name}"))?;
        tracing::info!("joined as {name}; the certificate is in {}", dir.display());
    }
    let credentials = Credentials::load(&files)?.for_role(Role::Worker)?;
    Ok(Security::tls(&credentials)?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: nothing has started a thread yet; the runtime and the
    // engine's lanes start below.
    let private_runtime_dir = unsafe { wimpy_compute::environment::use_private_runtime_dir(&args.data.join("run")) }
        .with_context(|| format!("making {}", args.data.join("run").display()))?;
    wimpy_net::logging::init(args.log_level.as_deref(), "info").map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    let security = match &args.join {
        Some(token) => joined(&args.data, token, args.name.as_deref(), args.master)?,
        None => args.credentials.security(Role::Worker)?,
    };
    if private_runtime_dir {
        tracing::debug!("XDG_RUNTIME_DIR was not set: using {}", args.data.join("run").display());
    }
    let config = WorkerConfig {
        master: args.master,
        data: args.data,
        store: Options { sync: args.sync, expected_keys: args.expected_keys, ..Options::default() },
        cores: args.cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        compute: EngineConfig {
            backends: args.backends,
            limits: Limits {
                max_pixels: args.max_pixels,
                deadline: std::time::Duration::from_millis(args.compute_deadline_ms),
                ..Limits::default()
            },
            queue_depth: args.compute_queue,
            ..EngineConfig::default()
        },
        intake: IntakeLimits {
            calls: args.max_calls,
            calls_per_connection: args.max_calls_per_connection,
            upload_bytes: args.max_upload_mib << 20,
        },
        security,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let shutdown = wimpy_net::signals::shutdown();
        // Known by its own address at both ends of what it opens, too.
        if !args.listen.ip().is_unspecified() {
            wimpy_net::connect_from(args.listen.ip());
        }
        wimpy_net::delay::set_receive_delay(args.receive_delay);
        tracing::info!("serving on {}, master {}", listener.local_addr()?, config.master);
        run(listener, config, shutdown).await?;
        tracing::info!("shut down");
        anyhow::Ok(())
    })
}
