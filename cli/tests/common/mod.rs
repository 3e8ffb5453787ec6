//! What the tests of the real binaries share: where the binaries are, the
//! master and worker processes they start, and the CA whose certificates
//! those processes and the CLI present (every test runs over TLS).

// Each test binary uses its own share of these.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use wimpy_net::security::{CertRequest, ClusterCa, CredentialFiles, Credentials};
use wimpy_net::{Role, Security};

pub const WIMPY: &str = env!("CARGO_BIN_EXE_wimpy");

pub fn binary(name: &str) -> PathBuf {
    PathBuf::from(WIMPY).with_file_name(name)
}

/// This test process's cluster CA and the certificates issued from it, in
/// one directory under cargo's scratch space, laid out as `wimpy ca init`
/// and `wimpy cert issue` lay it out (so the CLI reads it with
/// `--credentials`). Certificates are issued on first use of a name.
pub struct TestCredentials {
    pub dir: PathBuf,
    ca: ClusterCa,
    issued: Mutex<BTreeSet<String>>,
}

impl TestCredentials {
    /// The files of `name`'s certificate as `role`, issued if need be.
    pub fn files(&self, role: Role, name: &str) -> CredentialFiles {
        let mut issued = self.issued.lock().unwrap();
        if issued.insert(name.to_owned()) {
            let mut request = CertRequest::new(role, name);
            // Nodes serve on 127.0.0.1: clients that check a server's name
            // (Python's ssl) find it in the certificate.
            if role.is_node() {
                request.alt_names = vec!["127.0.0.1".into(), "localhost".into()];
            }
            self.ca.issue(&request).unwrap().write(&self.dir).unwrap();
        }
        CredentialFiles::in_dir(&self.dir, name)
    }

    /// Flags that have a node present `name`'s certificate as `role`.
    pub fn node_flags(&self, role: Role, name: &str) -> Vec<std::ffi::OsString> {
        self.files(role, name).node_args()
    }

    /// Issues `request` into the directory (as `wimpy cert issue` would).
    pub fn issue(&self, request: &CertRequest) {
        self.issued.lock().unwrap().insert(request.name.clone());
        self.ca.issue(request).unwrap().write(&self.dir).unwrap();
    }

    /// The CA itself, to sign what a test needs (an expired certificate, say).
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// SDK options that connect as an admin ("operator").
    pub fn client_security(&self) -> Security {
        let files = self.files(Role::Admin, "operator");
        Security::tls(&Credentials::load(&files).unwrap()).unwrap()
    }
}

/// The CA of this test process.
pub fn credentials() -> &'static TestCredentials {
    static CREDENTIALS: OnceLock<TestCredentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("credentials-{}", std::process::id()));
        // A directory left by an earlier process with this pid goes.
        std::fs::remove_dir_all(&dir).ok();
        let ca = ClusterCa::init(&dir, "test").unwrap();
        TestCredentials { dir, ca, issued: Mutex::new(BTreeSet::new()) }
    })
}

/// A node's certificate name: its data directory's, made unique in the
/// process (tests name their directories alike).
fn node_name(data: &Path) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = data.file_name().map_or("node".into(), |n| n.to_string_lossy().into_owned());
    format!("{base}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `body` on a current-thread runtime, inside the `LocalSet` the SDK
/// needs.
pub fn on_runtime<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, body());
}

/// An admin's SDK client of the master at `addr`, once `n` workers serve
/// (bounded: a minute each to connect and to see them serve).
pub async fn serving_client(addr: SocketAddr, n: usize) -> wimpy_client::Client {
    use wimpy_client::{Client, ClientOptions};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let client = loop {
        if let Ok(c) = Client::connect_with(addr, ClientOptions::new(credentials().client_security())).await {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no master at {addr}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    wait_serving(&client, n).await;
    client
}

/// Waits (bounded: a minute) until the ring has `n` members, all serving.
pub async fn wait_serving(client: &wimpy_client::Client, n: usize) {
    use wimpy_client::MemberState;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(view) = client.refresh_ring().await
            && view.members.len() == n
            && view.members.iter().all(|m| m.state == MemberState::Serving)
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the ring never had {n} serving members");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
    master_with(addr, data, &[])
}

/// [`master`] with more flags.
pub fn master_with(addr: SocketAddr, data: &Path, flags: &[&str]) -> Node {
    let child = Command::new(binary("wimpy-master"))
        .args(["--listen", &addr.to_string(), "--vnodes", "64", "--data"])
        .arg(data)
        .args(credentials().node_flags(Role::Master, &node_name(data)))
        .args(flags)
        .stderr(node_log(data))
        .spawn()
        .unwrap();
    Node(child)
}

/// Where a node's log goes: nowhere, or with `WIMPY_TEST_LOGS=DIR` set, to
/// a file in DIR named after its data directory (appended to across
/// restarts), to see what the nodes of a failing test did.
fn node_log(data: &Path) -> Stdio {
    let Some(dir) = std::env::var_os("WIMPY_TEST_LOGS") else { return Stdio::null() };
    let name = data.file_name().map_or("node".into(), |n| n.to_string_lossy().into_owned());
    let path = Path::new(&dir).join(format!("{name}-{}.log", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().into()
}

/// [`master`] holding the CA's key: it signs the certificates of workers
/// that join with a token.
pub fn signing_master(addr: SocketAddr, data: &Path) -> Node {
    let child = Command::new(binary("wimpy-master"))
        .args(["--listen", &addr.to_string(), "--vnodes", "64", "--data"])
        .arg(data)
        .args(credentials().node_flags(Role::Master, &node_name(data)))
        .arg("--ca-key-file")
        .arg(credentials().dir.join("ca.key"))
        .stderr(node_log(data))
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
    let name = node_name(data);
    credentials().files(Role::Worker, &name);
    worker_as(master, data, &name, flags)
}

/// [`worker_with`], presenting the certificate of `name` in the test's
/// credentials (issued beforehand).
pub fn worker_as(master: SocketAddr, data: &Path, name: &str, flags: &[&str]) -> Node {
    let child = Command::new(binary("wimpy-worker"))
        .args(["--master", &master.to_string(), "--backends", "cpu", "--cores", "1", "--sync", "always", "--data"])
        .arg(data)
        .args(CredentialFiles::in_dir(&credentials().dir, name).node_args())
        .args(flags)
        .stderr(node_log(data))
        .spawn()
        .unwrap();
    Node(child)
}

/// Runs the `wimpy` CLI against the master at `master`, with `stdin`, as
/// an admin of the test CA.
pub fn cli(master: SocketAddr, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let tls = credentials();
    tls.files(Role::Admin, "operator");
    let mut child = Command::new(WIMPY)
        .arg("--master")
        .arg(master.to_string())
        .arg("--credentials")
        .arg(&tls.dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}
