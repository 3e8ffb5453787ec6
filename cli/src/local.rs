//! Local clusters: a master and N workers as child processes on 127.0.0.1.
//! `wimpy local` (crate::cmd::local) runs one in the foreground; `wimpy
//! bench --local N` and `wimpy bench scale` start one per run.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::emulate::{CpuCaps, Emulation};
use std::time::{Duration, SystemTime};

use wimpy_net::security::{CaError, CertRequest, ClusterCa, CredentialFiles, Credentials};
use wimpy_net::{Role, Security};

/// Finds a sibling binary (wimpy-master, wimpy-worker) next to this one.
fn sibling(name: &str) -> std::io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} not found next to {}; build all binaries (cargo build --release)", name, me.display()),
        ))
    }
}

/// Has the child stop (as on Ctrl-C) when this process dies, however it
/// dies: a killed `wimpy local` or `wimpy bench` leaves no nodes behind.
fn stop_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the hook runs in the forked child before exec; prctl(2) is
    // async-signal-safe, allocates nothing and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Copies of each key a local cluster of `workers` keeps unless told:
/// the cluster default, or every worker if there are fewer.
pub fn default_replicas(workers: usize) -> u32 {
    wimpy_client::DEFAULT_REPLICAS.min(workers.max(1) as u32)
}

/// Where a local cluster keeps its CA and its nodes' and operator's
/// certificates: `DATA/tls`, the tool's default `--credentials` for the
/// default data directory.
pub fn credentials_dir(data: &Path) -> PathBuf {
    data.join("tls")
}

/// The certificate `wimpy local` makes for the person at the keyboard: an
/// admin, so that every command works (the tool's default `--as`).
pub const OPERATOR: &str = "operator";

/// Makes the cluster's CA under `dir` if there is none, and a certificate
/// for every node of a cluster of `workers` and for the operator that is
/// missing or no longer valid. A CA already there is kept, so that
/// certificates issued from it by hand go on working.
fn ensure_credentials(dir: &Path, workers: usize) -> std::io::Result<()> {
    let fail = |e: CaError| std::io::Error::other(format!("the local cluster's credentials in {}: {e}", dir.display()));
    let ca = if dir.join(wimpy_net::security::ca::CA_CERT_FILE).exists() {
        ClusterCa::load(dir).map_err(fail)?
    } else {
        ClusterCa::init(dir, "local").map_err(fail)?
    };
    let mut wanted = vec![(Role::Master, "master".to_owned()), (Role::Admin, OPERATOR.to_owned())];
    wanted.extend((0..workers).map(|i| (Role::Worker, worker_name(i))));
    for (role, name) in wanted {
        let files = CredentialFiles::in_dir(dir, &name);
        match Credentials::load(&files) {
            Ok(c) if c.identity().role == role && c.identity().remaining(SystemTime::now()) > RENEW_WITHIN => continue,
            Ok(_) | Err(_) => {
                for stale in [&files.cert, &files.key] {
                    match std::fs::remove_file(stale) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
            }
        }
        let mut request = CertRequest::new(role, name);
        request.alt_names = vec!["localhost".into(), "127.0.0.1".into()];
        ca.issue(&request).map_err(fail)?.write(dir).map_err(fail)?;
    }
    Ok(())
}

/// A local certificate this close to expiry is replaced at the next start.
const RENEW_WITHIN: Duration = Duration::from_secs(7 * 86_400);

fn worker_name(i: usize) -> String {
    format!("worker-{i}")
}

/// How the nodes of a local cluster run.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Workers' sync mode: always, interval:MS or never.
    pub sync: String,
    /// Copies of each key the master's rings keep.
    pub replicas: u32,
    /// The master's `--repair-mb-s`; `None` for its default.
    pub repair_mb_s: Option<f64>,
    /// Whether the nodes' log lines stay out of this process's stderr.
    pub quiet: bool,
    /// Whether the nodes run without TLS.
    pub insecure: bool,
    /// An emulated fleet: each worker on a loopback address of its own,
    /// every node's CPU capped and what it receives delayed.
    pub emulate: Option<Emulation>,
}

/// A master and its workers, each a child process.
#[derive(Debug)]
pub struct LocalCluster {
    master: SocketAddr,
    data: PathBuf,
    /// Where the nodes' credentials are; `None` runs them `--insecure`.
    tls: Option<PathBuf>,
    settings: NodeSettings,
    /// RPC threads per worker.
    cores: usize,
    master_bin: PathBuf,
    worker_bin: PathBuf,
    master_child: Child,
    workers: Vec<Child>,
    /// The cgroups capping the nodes of an emulated fleet (dropped after
    /// the nodes have stopped, which removes them).
    caps: Option<CpuCaps>,
}

impl LocalCluster {
    /// Starts a master on `master` and `workers` workers with data under
    /// `data`, run as `settings` say, with TLS unless they say insecure
    /// (making the credentials it needs under [`credentials_dir`]).
    /// Workers retry until the master answers, so this does not wait for
    /// them: see [`crate::bench::cluster::wait_serving`].
    pub fn start(master: SocketAddr, workers: usize, data: &Path, settings: NodeSettings) -> std::io::Result<Self> {
        std::fs::create_dir_all(data)?;
        let tls = if settings.insecure {
            None
        } else {
            let dir = credentials_dir(data);
            ensure_credentials(&dir, workers)?;
            Some(dir)
        };
        // The workers share this machine: more RPC threads than cores only
        // adds context switches (measured: ~20% fewer requests served with 3
        // workers of 2 threads each on 2 cores than with 1 thread each).
        let cores = (std::thread::available_parallelism().map_or(1, |n| n.get()) / workers.max(1)).max(1);
        let master_bin = sibling("wimpy-master")?;
        let worker_bin = sibling("wimpy-worker")?;
        let caps = match settings.emulate.map(|e| CpuCaps::new(e.cpu)) {
            Some(Ok(caps)) => Some(caps),
            Some(Err(why)) => {
                eprintln!("wimpy local: the nodes run with no CPU cap: {why}");
                None
            }
            None => None,
        };
        let mut cluster = LocalCluster {
            master,
            data: data.to_owned(),
            master_child: spawn_master(&master_bin, master, data, tls.as_deref(), &settings)?,
            tls,
            settings,
            cores,
            master_bin,
            worker_bin,
            workers: Vec::with_capacity(workers),
            caps,
        };
        cluster.cap("master", cluster.master_child.id());
        for i in 0..workers {
            let w = cluster.spawn_worker(i)?;
            cluster.workers.push(w);
        }
        Ok(cluster)
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// How a client reaches this cluster: as the operator over TLS, or
    /// insecure.
    pub fn client_security(&self) -> std::io::Result<Security> {
        match &self.tls {
            None => Ok(Security::Insecure),
            Some(dir) => Credentials::load(&CredentialFiles::in_dir(dir, OPERATOR))
                .and_then(|c| Security::tls(&c))
                .map_err(std::io::Error::other),
        }
    }

    /// Caps the node `name` (process `pid`), if the fleet is emulated and
    /// caps can be set; says so on stderr if one cannot.
    fn cap(&self, name: &str, pid: u32) {
        if let Some(caps) = &self.caps
            && let Err(why) = caps.cap(name, pid)
        {
            eprintln!("wimpy local: {name} runs with no CPU cap: {why}");
        }
    }

    fn spawn_worker(&self, i: usize) -> std::io::Result<Child> {
        let listen = match self.settings.emulate {
            Some(_) => SocketAddr::from((Emulation::worker_ip(i), 0)),
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut cmd = Command::new(&self.worker_bin);
        stop_with_parent(&mut cmd)
            .arg("--cores")
            .arg(self.cores.to_string())
            .arg("--sync")
            .arg(&self.settings.sync)
            .arg("--master")
            .arg(self.master.to_string())
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data")
            .arg(self.data.join(worker_name(i)));
        if let Some(e) = self.settings.emulate {
            cmd.arg("--receive-delay").arg(format!("{}us", e.latency.as_micros()));
        }
        credential_flags(&mut cmd, self.tls.as_deref(), &worker_name(i));
        if self.settings.quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd.spawn()?;
        self.cap(&worker_name(i), child.id());
        Ok(child)
    }

    /// Where worker `i` keeps its data.
    pub fn worker_data(&self, i: usize) -> PathBuf {
        self.data.join(worker_name(i))
    }

    /// Kills worker `i` at once (SIGKILL), as a dead machine stops: nothing
    /// flushed, nothing said to the master. It stays dead until
    /// [`LocalCluster::restart_exited`].
    pub fn kill_worker(&mut self, i: usize) -> std::io::Result<()> {
        let w = &mut self.workers[i];
        w.kill()?;
        w.wait().map(drop)
    }

    /// Restarts any node that exited; says so on stderr.
    pub fn restart_exited(&mut self) -> std::io::Result<()> {
        if let Ok(Some(status)) = self.master_child.try_wait() {
            eprintln!("wimpy local: master exited ({status}); restarting");
            self.master_child =
                spawn_master(&self.master_bin, self.master, &self.data, self.tls.as_deref(), &self.settings)?;
            self.cap("master", self.master_child.id());
        }
        for i in 0..self.workers.len() {
            if let Ok(Some(status)) = self.workers[i].try_wait() {
                eprintln!("wimpy local: worker {i} exited ({status}); restarting");
                self.workers[i] = self.spawn_worker(i)?;
            }
        }
        Ok(())
    }

    /// Stops the workers, then the master, as Ctrl-C would.
    pub fn stop(&mut self) {
        for w in &mut self.workers {
            stop(w);
        }
        stop(&mut self.master_child);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_master(
    bin: &Path,
    listen: SocketAddr,
    data: &Path,
    tls: Option<&Path>,
    settings: &NodeSettings,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(bin);
    stop_with_parent(&mut cmd).arg("--listen").arg(listen.to_string()).arg("--data").arg(data.join("master"));
    cmd.arg("--replicas").arg(settings.replicas.to_string());
    if let Some(rate) = settings.repair_mb_s {
        cmd.arg("--repair-mb-s").arg(rate.to_string());
    }
    if let Some(e) = settings.emulate {
        cmd.arg("--receive-delay").arg(format!("{}us", e.latency.as_micros()));
    }
    credential_flags(&mut cmd, tls, "master");
    if let Some(dir) = tls {
        // The local master signs for workers that join with a token
        // (`wimpy token create`), as a fleet's can.
        cmd.arg("--ca-key-file").arg(dir.join(wimpy_net::security::ca::CA_KEY_FILE));
    }
    if settings.quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn()
}

/// Has a node run with the credentials of `name` in `tls`, or insecure.
fn credential_flags(cmd: &mut Command, tls: Option<&Path>, name: &str) {
    match tls {
        Some(dir) => {
            cmd.args(CredentialFiles::in_dir(dir, name).node_args());
        }
        None => {
            cmd.arg("--insecure");
        }
    }
    // The nodes read exactly these flags: nothing from this environment.
    for var in ["WIMPY_CA_FILE", "WIMPY_CERT_FILE", "WIMPY_KEY_FILE"] {
        cmd.env_remove(var);
    }
}

/// Asks a child to stop as Ctrl-C would, then waits for it (killing it if it
/// has not stopped within five seconds). A child already reaped is left be.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child this process spawned and has
        // not reaped (try_wait above found it running), so the pid cannot
        // belong to anyone else; it only sends a signal.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
