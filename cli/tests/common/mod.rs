//! What the tests of the real binaries share: where the binaries are, and
//! the master and worker processes they start.

// Each test binary uses its own share of these.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const WIMPY: &str = env!("CARGO_BIN_EXE_wimpy");

pub fn binary(name: &str) -> PathBuf {
    PathBuf::from(WIMPY).with_file_name(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process, killed (and continued first, should it be stopped)
/// when dropped.
pub struct Node(pub Child);

impl Node {
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has
        // not reaped; it only sends a signal.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// A master on `addr` with 64 points per worker.
pub fn master(addr: SocketAddr, data: &Path) -> Node {
    let child = Command::new(binary("wimpy-master"))
        .args(["--listen", &addr.to_string(), "--vnodes", "64", "--data"])
        .arg(data)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Node(child)
}

/// A worker of the master at `master`: CPU backends only (they start at
/// once), one RPC thread, `--sync always`.
pub fn worker(master: SocketAddr, data: &Path) -> Node {
    worker_with(master, data, &[])
}

/// [`worker`] with more flags.
pub fn worker_with(master: SocketAddr, data: &Path, flags: &[&str]) -> Node {
    let child = Command::new(binary("wimpy-worker"))
        .args(["--master", &master.to_string(), "--backends", "cpu", "--cores", "1", "--sync", "always", "--data"])
        .arg(data)
        .args(flags)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Node(child)
}

/// Runs the `wimpy` CLI against the master at `master`, with `stdin`.
pub fn cli(master: SocketAddr, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(WIMPY)
        .arg("--master")
        .arg(master.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}
