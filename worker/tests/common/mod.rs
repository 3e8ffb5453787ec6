//! What the worker's process tests share: the binary, a master, and the
//! cluster CA whose certificates they present (every test runs over TLS).

// Each test binary uses its own share of these.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{OnceLock, mpsc};

use wimpy_net::security::{CertRequest, ClusterCa, CredentialFiles};
use wimpy_net::{Role, Security};

/// The cluster CA of this test process.
pub fn ca() -> &'static ClusterCa {
    static CA: OnceLock<ClusterCa> = OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate("test").unwrap())
}

/// TLS as `name` in `role`, with a certificate from [`ca`].
pub fn tls(role: Role, name: &str) -> Security {
    ca().security(role, name).unwrap()
}

/// Writes the CA's certificate and a worker certificate into `dir` (unless
/// an earlier call did) and returns the flags that have `wimpy-worker`
/// present it.
pub fn worker_credential_flags(dir: &Path) -> Vec<std::ffi::OsString> {
    let files = CredentialFiles::in_dir(dir, "worker");
    if !files.cert.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&files.ca, ca().cert_pem()).unwrap();
        ca().issue(&CertRequest::new(Role::Worker, "worker")).unwrap().write(dir).unwrap();
    }
    files.node_args()
}

/// The real `wimpy-worker` binary.
pub const WORKER: &str = env!("CARGO_BIN_EXE_wimpy-worker");

/// A master on 127.0.0.1, on its own thread, until dropped.
pub struct Master {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // A master that already stopped has nobody to tell.
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

pub fn master() -> Master {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let config = wimpy_master::MasterConfig {
                vnodes: 16,
                ..wimpy_master::MasterConfig::new(tls(Role::Master, "master"))
            };
            wimpy_master::run(listener, config, async {
                stopped.await.ok();
            })
            .await
            .unwrap();
        });
    });
    Master { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}
