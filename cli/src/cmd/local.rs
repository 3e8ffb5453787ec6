//! `wimpy local`: a cluster in the foreground until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Global;
use crate::emulate::Emulation;
use crate::failure::Failure;
use crate::local::{LocalCluster, NodeSettings};

/// Run a local cluster: a master on --master and N workers, in the
/// foreground until Ctrl-C, restarting any node that dies. Connections are
/// TLS: the cluster's CA and certificates for its nodes and for you (as
/// "operator", an admin) are made under DATA/tls, where the other commands
/// look by default (--credentials). --insecure runs it without TLS.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  wimpy local\n  wimpy local --workers 5 --data /tmp/wimpy --sync interval:50\n  wimpy --master 127.0.0.1:7171 local   # then: wimpy --master 127.0.0.1:7171 status\n  wimpy local --data /tmp/w              # then: wimpy --credentials /tmp/w/tls status"
)]
pub(crate) struct Local {
    /// Number of workers.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Where the nodes keep their data.
    #[arg(long, default_value = "wimpy-data")]
    data: PathBuf,
    /// Workers' sync mode: always, interval:MS or never.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Copies of each key (chain replication), each on another worker: a
    /// write is acknowledged once all of them hold it. A cluster keeps the
    /// number it was first started with. [default: 3, or the number of
    /// workers if fewer]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(wimpy_client::MAX_REPLICAS)))]
    replicas: Option<u32>,
    /// The most megabytes per second each worker sends while it copies
    /// ranges to a member taking them on (a join, a worker back from down,
    /// a leave, `wimpy remove`); 0 for no cap. [default: the master's, 8]
    #[arg(long, value_name = "MB_S", value_parser = wimpy_net::flags::mb_per_second)]
    repair_mb_s: Option<f64>,
    /// An emulated fleet of small machines: each worker on a loopback
    /// address of its own (127.0.0.2, 127.0.0.3, ...), each node's CPU
    /// capped at CPU of a core (a cgroup quota; needs root, else the nodes
    /// run uncapped and say so) and, with LATENCY, everything each node
    /// receives held back that long. Example: 0.25,1ms
    #[arg(long, value_name = "CPU[,LATENCY]", value_parser = Emulation::parse)]
    emulate: Option<Emulation>,
}

impl Local {
    pub(crate) fn run(&self, global: &Global) -> Result<(), Failure> {
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let stopping = stopping.clone();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::spawn(move || {
                rt.block_on(async {
                    if let Err(e) = tokio::signal::ctrl_c().await {
                        tracing::error!("cannot wait for Ctrl-C ({e}); stopping");
                    }
                });
                stopping.store(true, Ordering::SeqCst);
            });
        }
        let master = global.master;
        let replicas = self.replicas.unwrap_or_else(|| crate::local::default_replicas(self.workers));
        let settings = NodeSettings {
            sync: self.sync.clone(),
            replicas,
            repair_mb_s: self.repair_mb_s,
            quiet: false,
            insecure: global.insecure,
            emulate: self.emulate,
        };
        let mut cluster = LocalCluster::start(master, self.workers, &self.data, settings)?;
        let security = if global.insecure {
            "no TLS (--insecure)".to_owned()
        } else {
            format!("TLS with credentials in {}", crate::local::credentials_dir(&self.data).display())
        };
        let fleet = match self.emulate {
            Some(e) => format!(", an emulated fleet ({e}; workers on 127.0.0.2 and up)"),
            None => String::new(),
        };
        eprintln!(
            "wimpy local: master on {master}, {} worker(s), data in {}, {security}{fleet}; Ctrl-C to stop",
            self.workers,
            self.data.display()
        );
        while !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            cluster.restart_exited()?;
        }
        eprintln!("wimpy local: stopping");
        cluster.stop();
        eprintln!("wimpy local: stopped");
        Ok(())
    }
}
