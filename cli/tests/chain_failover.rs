//! Chain replication under kill -9: the real binaries, a master keeping
//! three copies of each key and three workers writing with `sync=always`.
//! Each worker is killed in turn (so each chain loses its head, its middle
//! member and its tail, once each) while a writer and a reader run, then
//! started again on its data. No acknowledged write is lost, no read of a
//! written key answers "not found", writes are served again soon after
//! each kill (the history of every call is linearizable), and a worker
//! back from the dead holds every acknowledged write once its chains have
//! it again.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wimpy_history::History;
use wimpy_net::{KeyPeer, Role};
use wimpy_schema::batch::{KeyAnswer, KeyRequest};

mod common;

use common::{Node, free_port, master_with, on_runtime, serving_client, wait_serving, worker_as};

/// What the writer and reader saw.
#[derive(Default)]
struct Seen {
    /// Every call and its answer, checked for linearizability at the end.
    history: History,
    /// Each key's last acknowledged value.
    last_acked: RefCell<BTreeMap<String, Vec<u8>>>,
    /// The longest a write took to be acknowledged (tries included).
    longest_write: Cell<Duration>,
    reads: Cell<u64>,
    /// Reads that failed (typed) rather than answered.
    unanswered_reads: Cell<u64>,
}

#[test]
fn killing_each_worker_in_turn_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _master = master_with(addr, &dir.path().join("master"), &["--replicas", "3"]);
    let data = |i: usize| dir.path().join(format!("w{i}"));
    // Each worker keeps its certificate (and so its id) across restarts.
    let name = |i: usize| format!("failover-w{i}");
    let start = |i: usize| {
        common::credentials().files(Role::Worker, &name(i));
        worker_as(addr, &data(i), &name(i), &[])
    };
    let mut workers: Vec<Option<Node>> = (0..3).map(|i| Some(start(i))).collect();
    on_runtime(|| async move {
        let security = common::credentials().client_security();
        let client = serving_client(addr, 3).await;
        let seen = Seen::default();
        #[allow(clippy::needless_range_loop)] // workers[victim] is replaced, not just read
        for victim in 0..3 {
            let running = Cell::new(true);
            let writer = async {
                let mut i = 0u32;
                while running.get() {
                    let key = format!("k{}", i % 40);
                    let value = format!("{victim}-{i}").into_bytes();
                    let started = Instant::now();
                    // Tried until acknowledged: an unacknowledged try may or
                    // may not have landed, and the next one settles it.
                    while seen.history.put(key.as_bytes(), &value, client.put(key.as_bytes(), &value)).await.is_err() {
                        assert!(started.elapsed() < Duration::from_secs(30), "{key} was never written");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    seen.longest_write.set(seen.longest_write.get().max(started.elapsed()));
                    seen.last_acked.borrow_mut().insert(key, value);
                    i += 1;
                }
            };
            let reader = async {
                let mut i = 0u32;
                while running.get() {
                    let key = format!("k{}", i % 40);
                    seen.reads.set(seen.reads.get() + 1);
                    if seen.history.get(key.as_bytes(), client.get(key.as_bytes())).await.is_err() {
                        seen.unanswered_reads.set(seen.unanswered_reads.get() + 1)
                    }
                    i += 1;
                    tokio::task::yield_now().await;
                }
            };
            let killer = async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                drop(workers[victim].take()); // SIGKILL
                tokio::time::sleep(Duration::from_secs(4)).await;
                running.set(false);
            };
            futures::join!(writer, reader, killer);
            workers[victim] = Some(start(victim));
            wait_serving(&client, 3).await;
        }
        eprintln!(
            "longest write {:?}; {} reads, {} unanswered (typed)",
            seen.longest_write.get(),
            seen.reads.get(),
            seen.unanswered_reads.get()
        );
        // The master marks a silent worker down after two seconds; the
        // chains close over it as soon as their members hear.
        assert!(seen.longest_write.get() < Duration::from_secs(5), "writes stopped for {:?}", seen.longest_write.get());
        // Every read answered a value some order of the calls explains:
        // no acknowledged write lost, no stale or invented value.
        match seen.history.check() {
            Ok(checked) => eprintln!("history linearizable: {checked:?}"),
            Err(violation) => panic!("{violation}"),
        }
        // Every member holds each key's last acknowledged value.
        let view = client.refresh_ring().await.unwrap();
        for m in &view.members {
            let w: wimpy_schema::wimpy_capnp::worker::Client =
                wimpy_net::connect(&m.address, &security, &[Role::Worker]).await.unwrap();
            let acked = seen.last_acked.borrow().clone();
            for (key, last) in &acked {
                let got = w.send_one(0, &KeyRequest::Get(key.clone().into_bytes())).await.unwrap();
                assert!(matches!(&got, KeyAnswer::Value(v) if v == last), "{key} on worker {}: {got:?}", m.id);
            }
        }
    });
}
