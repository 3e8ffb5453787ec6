//! Local clusters: a master and N workers as child processes on 127.0.0.1.
//! `wimpy local` (crate::cmd::local) runs one in the foreground; `wimpy
//! bench --local N` and `wimpy bench scale` start one per run.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A master and its workers, each a child process.
#[derive(Debug)]
pub struct LocalCluster {
    master: SocketAddr,
    data: PathBuf,
    sync: String,
    /// RPC threads per worker.
    cores: usize,
    /// Whether the nodes' log lines reach this process's stderr.
    quiet: bool,
    master_bin: PathBuf,
    worker_bin: PathBuf,
    master_child: Child,
    workers: Vec<Child>,
}

impl LocalCluster {
    /// Starts a master on `master` and `workers` workers with data under
    /// `data`. Workers retry until the master answers, so this does not wait
    /// for them: see [`crate::bench::cluster::wait_serving`].
    pub fn start(master: SocketAddr, workers: usize, data: &Path, sync: &str, quiet: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(data)?;
        // The workers share this machine: more RPC threads than cores only
        // adds context switches (measured: ~20% fewer requests served with 3
        // workers of 2 threads each on 2 cores than with 1 thread each).
        let cores = (std::thread::available_parallelism().map_or(1, |n| n.get()) / workers.max(1)).max(1);
        let master_bin = sibling("wimpy-master")?;
        let worker_bin = sibling("wimpy-worker")?;
        let mut cluster = LocalCluster {
            master,
            data: data.to_owned(),
            sync: sync.to_owned(),
            cores,
            quiet,
            master_child: spawn_master(&master_bin, master, data, quiet)?,
            master_bin,
            worker_bin,
            workers: Vec::with_capacity(workers),
        };
        for i in 0..workers {
            let w = cluster.spawn_worker(i)?;
            cluster.workers.push(w);
        }
        Ok(cluster)
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    fn spawn_worker(&self, i: usize) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.worker_bin);
        stop_with_parent(&mut cmd)
            .arg("--cores")
            .arg(self.cores.to_string())
            .arg("--sync")
            .arg(&self.sync)
            .arg("--master")
            .arg(self.master.to_string())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(self.data.join(format!("worker-{i}")));
        if self.quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        cmd.spawn()
    }

    /// Restarts any node that exited; says so on stderr.
    pub fn restart_exited(&mut self) -> std::io::Result<()> {
        if let Ok(Some(status)) = self.master_child.try_wait() {
            eprintln!("wimpy local: master exited ({status}); restarting");
            self.master_child = spawn_master(&self.master_bin, self.master, &self.data, self.quiet)?;
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

fn spawn_master(bin: &Path, listen: SocketAddr, data: &Path, quiet: bool) -> std::io::Result<Child> {
    let mut cmd = Command::new(bin);
    stop_with_parent(&mut cmd).arg("--listen").arg(listen.to_string()).arg("--data").arg(data.join("master"));
    if quiet {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    cmd.spawn()
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
