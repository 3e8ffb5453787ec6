//! What the worker's process tests share: the binary and a master.

use std::net::SocketAddr;
use std::sync::mpsc;

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
            let config = wimpy_master::MasterConfig { vnodes: 16, ..Default::default() };
            wimpy_master::run(listener, config, async {
                stopped.await.ok();
            })
            .await
            .unwrap();
        });
    });
    Master { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}
