//! `wimpy local`: a master and N workers as child processes on 127.0.0.1,
//! restarted if they die, stopped cleanly on Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

fn spawn_master(bin: &Path, listen: SocketAddr, data: &Path) -> std::io::Result<Child> {
    Command::new(bin).arg("--listen").arg(listen.to_string()).arg("--data").arg(data.join("master")).spawn()
}

fn spawn_worker(
    bin: &Path,
    master: SocketAddr,
    data: &Path,
    i: usize,
    sync: &str,
    cores: usize,
) -> std::io::Result<Child> {
    Command::new(bin)
        .arg("--cores")
        .arg(cores.to_string())
        .arg("--sync")
        .arg(sync)
        .arg("--master")
        .arg(master.to_string())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data")
        .arg(data.join(format!("worker-{i}")))
        .spawn()
}

/// Asks a child to stop as Ctrl-C would, then waits for it (killing it if it
/// has not stopped within five seconds).
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child this process spawned and has
        // not reaped, so the pid cannot belong to anyone else; it only sends
        // a signal.
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

pub fn run(master: SocketAddr, workers: usize, data: &Path, sync: &str) -> std::io::Result<()> {
    let master_bin = sibling("wimpy-master")?;
    let worker_bin = sibling("wimpy-worker")?;
    std::fs::create_dir_all(data)?;
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            stopping.store(true, Ordering::SeqCst);
        });
    }
    // The workers share this machine: more RPC threads than cores only adds
    // context switches (measured: ~20% fewer requests served with 3 workers
    // of 2 threads each on 2 cores than with 1 thread each).
    let cores = (std::thread::available_parallelism().map_or(1, |n| n.get()) / workers.max(1)).max(1);
    let mut m = spawn_master(&master_bin, master, data)?;
    // Workers retry until the master answers, so nothing waits here.
    let mut ws: Vec<Child> =
        (0..workers).map(|i| spawn_worker(&worker_bin, master, data, i, sync, cores)).collect::<Result<_, _>>()?;
    eprintln!("wimpy local: master on {master}, {workers} worker(s), data in {}; Ctrl-C to stop", data.display());
    while !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        if let Ok(Some(status)) = m.try_wait() {
            eprintln!("wimpy local: master exited ({status}); restarting");
            m = spawn_master(&master_bin, master, data)?;
        }
        for (i, w) in ws.iter_mut().enumerate() {
            if let Ok(Some(status)) = w.try_wait() {
                eprintln!("wimpy local: worker {i} exited ({status}); restarting");
                *w = spawn_worker(&worker_bin, master, data, i, sync, cores)?;
            }
        }
    }
    eprintln!("wimpy local: stopping");
    for w in &mut ws {
        stop(w);
    }
    stop(&mut m);
    eprintln!("wimpy local: stopped");
    Ok(())
}
