//! The real `wimpy-worker` binary, with its default backends (the GPU ones
//! on Mesa here), stops cleanly every time: asked by SIGINT or SIGTERM, it
//! closes its store and exits 0, never by a signal. It once crashed in 3 of
//! 6 exits, after its last log line, inside a GPU library that another
//! thread had just unloaded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::{WORKER, master};

/// A worker process and the lines it writes to standard error.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn start(master: SocketAddr, data: &std::path::Path) -> Worker {
        Worker::start_with(master, data, &[])
    }

    /// [`Worker::start`] with more environment variables.
    fn start_with(master: SocketAddr, data: &std::path::Path, env: &[(&str, &str)]) -> Worker {
        let mut child = Command::new(WORKER)
            .args(["--master", &master.to_string(), "--listen", "127.0.0.1:0", "--log-level", "info", "--data"])
            .arg(data)
            .args(common::worker_credential_flags(&data.join("tls")))
            // What a service manager gives a headless worker: no session, so
            // no XDG_RUNTIME_DIR.
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker { child, lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {text:?} ({e}); the worker said: {:#?}", self.seen),
            }
        }
    }

    /// Sends `signal` and waits (bounded) for the process to end; the rest
    /// of what it said is in `seen`.
    fn stop(&mut self, signal: libc::c_int) -> ExitStatus {
        // SAFETY: kill(2) on the pid of a child this test spawned and has
        // not reaped; it only sends a signal.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the worker did not stop within 30 s: {:#?}", self.seen);
            std::thread::sleep(Duration::from_millis(10));
        };
        self.seen.extend(self.lines.iter());
        status
    }
}

#[test]
fn fifty_starts_and_stops_with_the_gpu_backends_all_exit_0() {
    let master = master();
    let dir = tempfile::tempdir().unwrap();
    for cycle in 0..50 {
        let mut worker = Worker::start(master.addr, dir.path());
        let backends = worker.wait_for("compute backends:");
        if cycle == 0 {
            // The point of the test is a clean exit with the GPU stacks loaded.
            assert!(backends.contains("wgpu (") && backends.contains("gles ("), "{backends}");
        }
        let signal = if cycle % 2 == 0 { libc::SIGINT } else { libc::SIGTERM };
        let status = worker.stop(signal);
        assert_eq!(
            (status.code(), status.signal()),
            (Some(0), None),
            "cycle {cycle}: the worker exited with {status:?}; it said: {:#?}",
            worker.seen
        );
        assert!(worker.seen.iter().any(|l| l.contains("shut down")), "cycle {cycle}: {:#?}", worker.seen);
        // A normal start and stop says nothing that reads as a failure
        // (Mesa's XDG_RUNTIME_DIR complaint among them).
        let alarming: Vec<_> =
            worker.seen.iter().filter(|l| l.to_lowercase().contains("error") || l.contains("WARN")).collect();
        assert!(alarming.is_empty(), "cycle {cycle}: {alarming:#?}");
    }
}

#[test]
fn no_gpu_library_is_unloaded_before_the_process_exits() {
    // The cause of the crash, seen directly rather than by its odds: a GPU
    // library unmapped while the process still runs (a lane dropping the
    // last wgpu instance unloaded the Vulkan driver, another unloaded
    // libGLESv2) while the main thread ran the exit handlers, one of them in
    // the driver just unmapped. The dynamic loader says when it unmaps one.
    let master = master();
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Worker::start_with(master.addr, dir.path(), &[("LD_DEBUG", "files")]);
    worker.wait_for("compute backends:");
    let status = worker.stop(libc::SIGINT);
    assert_eq!((status.code(), status.signal()), (Some(0), None), "{status:?}");
    let gpu = ["libEGL", "libGLES", "libGLdispatch", "libvulkan", "swrast_dri", "libgallium", "lvp"];
    let unmapped: Vec<_> =
        worker.seen.iter().filter(|l| l.contains("destroying link map") && gpu.iter().any(|g| l.contains(g))).collect();
    assert!(unmapped.is_empty(), "GPU libraries unloaded while the worker ran: {unmapped:#?}");
    // The loader did report what it unmapped (Mesa's device-select layer,
    // which the Vulkan loader loads and drops itself while listing devices).
    assert!(worker.seen.iter().any(|l| l.contains("destroying link map")), "LD_DEBUG=files said nothing");
}

#[test]
fn a_worker_stopped_before_it_reaches_the_master_exits_0() {
    // Nothing listens here: the worker keeps trying to register.
    let nobody: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Worker::start(nobody, dir.path());
    worker.wait_for("serving on");
    let status = worker.stop(libc::SIGTERM);
    assert_eq!((status.code(), status.signal()), (Some(0), None), "{status:?}: {:#?}", worker.seen);
    assert!(worker.seen.iter().any(|l| l.contains("stopped before joining")), "{:#?}", worker.seen);
}
