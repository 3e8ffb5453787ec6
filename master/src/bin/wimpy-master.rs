//! `wimpy-master`: keeps membership and the ring. Parses flags, binds, and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wimpy_master::{DEFAULT_REPAIR_BYTES_PER_SECOND, MasterConfig, ScrubConfig, run};
use wimpy_net::security::ClusterCa;
use wimpy_net::security::flags::NodeCredentialFlags;
use wimpy_net::{Role, Security};

// The proxy allocates a little per request (keys, values, futures);
// mimalloc's thread-local free lists serve that faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve the wimpy master.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Examples:\n  wimpy-master --data /var/lib/wimpy/master --listen 0.0.0.0:7070 \\\n    --ca-file tls/ca.pem --cert-file tls/master.pem --key-file tls/master.key\n  wimpy-master --data /tmp/master --insecure   # no TLS: a machine of your own only"
)]
struct Args {
    /// Address to serve RPC on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Data directory for the master's state: members, ring epoch, a change under way.
    #[arg(long)]
    data: PathBuf,
    /// Virtual nodes per worker on the ring.
    #[arg(long, default_value_t = wimpy_schema::ring::DEFAULT_VNODES)]
    vnodes: u32,
    /// Copies of each key, on that many workers in a chain: a write is
    /// acknowledged once every copy holds it. Kept in the data directory:
    /// a restarted master keeps the number it started the cluster with.
    #[arg(long, default_value_t = wimpy_schema::ring::DEFAULT_REPLICAS, value_parser = clap::value_parser!(u32).range(1..=i64::from(wimpy_schema::ring::MAX_REPLICAS)))]
    replicas: u32,
    /// The most megabytes (10^6 bytes) per second each worker sends while
    /// it copies ranges to a member taking them on (a join, a worker back
    /// from down, a leave, `wimpy remove`); 0 for no cap. The last, short
    /// copy of each change, which holds writes back, is not capped.
    #[arg(long, value_name = "MB_S", default_value_t = DEFAULT_REPAIR_BYTES_PER_SECOND as f64 / 1e6, value_parser = wimpy_net::flags::mb_per_second)]
    repair_mb_s: f64,
    /// Time between scrub passes, which compare every chain's copies range
    /// by range and repair a copy that differs (a record damaged on a
    /// worker's disk, say): 90s, 15m, 12h; 0 for none (`wimpy scrub` still
    /// runs one).
    #[arg(long, value_name = "SPAN", default_value = "12h", value_parser = wimpy_net::flags::span)]
    scrub_every: std::time::Duration,
    /// The most megabytes per second a scrub pass reads on each worker, on
    /// average over its log; 0 for no cap.
    #[arg(long, value_name = "MB_S", default_value_t = ScrubConfig::default().bytes_per_second as f64 / 1e6, value_parser = wimpy_net::flags::mb_per_second)]
    scrub_mb_s: f64,
    /// Remove a worker silent for this long (10m, 1h) as `wimpy remove`
    /// does, so that its chains take on other workers and have every copy
    /// again, where enough workers serve to stand in for it; 0 for never
    /// (the default: a removed worker comes back only on an empty data
    /// directory).
    #[arg(long, value_name = "SPAN", default_value = "0", value_parser = wimpy_net::flags::span)]
    remove_down_after: std::time::Duration,
    /// Hold back everything the master receives by this long (2ms, 500us),
    /// as a slower network would: an emulated fleet on one machine (`wimpy
    /// local --emulate`).
    #[arg(long, value_name = "SPAN", default_value = "0", value_parser = wimpy_net::flags::span)]
    receive_delay: std::time::Duration,
    /// What to log: error, warn, info, debug, trace, or a filter such as
    /// wimpy_master=debug,info (default: $RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(flatten)]
    credentials: NodeCredentialFlags,
    /// The cluster CA's private key (mode 0600): with it the master signs
    /// the certificates of workers that join with a token (`wimpy token
    /// create`, then `wimpy-worker --join TOKEN`). Without it, workers'
    /// certificates are issued by hand (`wimpy cert issue`).
    #[arg(long, env = "WIMPY_CA_KEY_FILE", value_name = "PATH", requires = "ca_file")]
    ca_key_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wimpy_net::logging::init(args.log_level.as_deref(), "info").map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    let credentials = args.credentials.credentials(Role::Master)?;
    let signer = match (&args.ca_key_file, &args.credentials.ca_file) {
        (Some(key), Some(cert)) => Some(std::sync::Arc::new(ClusterCa::load_files(cert, key)?)),
        _ => None,
    };
    let security = match (&credentials, &signer) {
        (Some(c), Some(_)) => {
            tracing::info!("signing joining workers' certificates (wimpy token create makes a join token)");
            Security::tls_accepting_joins(c)?
        }
        (Some(c), None) => Security::tls(c)?,
        (None, _) => Security::Insecure,
    };
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let shutdown = wimpy_net::signals::shutdown();
        // Known by its own address at both ends of what it opens, too.
        if !args.listen.ip().is_unspecified() {
            wimpy_net::connect_from(args.listen.ip());
        }
        wimpy_net::delay::set_receive_delay(args.receive_delay);
        tracing::info!("serving on {}", listener.local_addr()?);
        let config = MasterConfig {
            vnodes: args.vnodes,
            replicas: args.replicas,
            repair_bytes_per_second: (args.repair_mb_s * 1e6) as u64,
            scrub: ScrubConfig { every: args.scrub_every, bytes_per_second: (args.scrub_mb_s * 1e6) as u64 },
            remove_down_after: args.remove_down_after,
            data: Some(args.data),
            signer,
            ..MasterConfig::new(security)
        };
        run(listener, config, shutdown).await?;
        tracing::info!("shut down");
        anyhow::Ok(())
    })
}
