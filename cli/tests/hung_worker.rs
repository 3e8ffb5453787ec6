//! A hung worker (SIGSTOP) wedges nothing: the real binaries, a master and
//! three workers, and a client of the master's proxy. Requests for the
//! other workers' keys are served, those of the hung one fail in time as
//! `unavailable`, the master keeps answering, and a join started while the
//! worker hangs finishes once it answers again, with every key readable.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wimpy_client::{Client, ClientOptions, MemberState};

mod common;

use common::{Node, free_port, master_with, on_runtime, worker};

/// Waits (bounded) until the ring has `n` members, all in `state`.
async fn wait_for(client: &Client, n: usize, state: MemberState, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(view) = client.refresh_ring().await
            && view.members.len() == n
            && view.members.iter().all(|m| m.state == state)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the ring never had {n} members {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_stopped_worker_wedges_neither_the_proxy_nor_membership() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // One copy of each key: the stopped worker's keys are nowhere else, so
    // they must fail fast (with more copies, the others serve them).
    let _master = master_with(addr, &dir.path().join("master"), &["--replicas", "1"]);
    let workers: Vec<Node> = (0..3).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    let dir = &dir;
    on_runtime(|| async move {
        let options = ClientOptions { via_master: true, ..ClientOptions::new(common::credentials().client_security()) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            if let Ok(c) = Client::connect_with(addr, options.clone()).await {
                break c;
            }
            assert!(Instant::now() < deadline, "no master");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        wait_for(&client, 3, MemberState::Serving, Duration::from_secs(60)).await;
        for i in 0..300u32 {
            client.put(format!("k{i}").as_bytes(), &i.to_le_bytes()).await.unwrap();
        }
        let view = client.refresh_ring().await.unwrap();
        // The id the master gave the worker to stop, as it keeps it.
        let hung_id: u64 = std::fs::read_to_string(dir.path().join("w1/worker.id")).unwrap().trim().parse().unwrap();
        let owner = |i: u32| view.ring.owner(format!("k{i}").as_bytes()).unwrap();

        workers[1].signal(libc::SIGSTOP);
        // A newcomer registers at once, before the master has marked the
        // stopped worker down: its join sets out to copy ranges from it.
        let newcomer = worker(addr, &dir.path().join("w3"));
        // Keys of the others are served all along; the hung one's keys fail
        // within a call's deadline (not the client's own, longer timeout)
        // and say why.
        for i in 0..300u32 {
            let asked = Instant::now();
            let got = client.get(format!("k{i}").as_bytes()).await;
            if owner(i) == hung_id {
                let err = got.unwrap_err();
                assert!(err.is_unavailable(), "k{i}: {err}");
                assert!(
                    asked.elapsed() < Duration::from_secs(8),
                    "k{i} waited {:?} on the hung worker",
                    asked.elapsed()
                );
            } else {
                assert_eq!(got.unwrap(), Some(i.to_le_bytes().to_vec()), "k{i}");
            }
        }
        // The master answers, and marks the worker down.
        let deadline = Instant::now() + Duration::from_secs(20);
        let joiner = loop {
            let wimpy_client::ClusterStatus { view, joining, .. } =
                tokio::time::timeout(Duration::from_secs(5), client.status()).await.unwrap().unwrap();
            if view.members.iter().any(|m| m.id == hung_id && m.state == MemberState::Down)
                && let Some(j) = joining.first()
            {
                break j.id;
            }
            assert!(Instant::now() < deadline, "the hung worker was never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The join cannot finish without the hung worker's ranges, but it
        // gives up in time instead of holding every other change: the
        // newcomer's own leave goes through.
        let left = tokio::time::timeout(Duration::from_secs(15), client.leave(joiner)).await;
        assert!(matches!(left, Ok(Ok(()))), "{left:?}");
        drop(newcomer);

        // Back again: the worker serves, and a join now finishes with every
        // key readable.
        workers[1].signal(libc::SIGCONT);
        wait_for(&client, 3, MemberState::Serving, Duration::from_secs(30)).await;
        let _newcomer = worker(addr, &dir.path().join("w4"));
        wait_for(&client, 4, MemberState::Serving, Duration::from_secs(60)).await;
        for i in 0..300u32 {
            assert_eq!(client.get(format!("k{i}").as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()), "k{i}");
        }
    });
}
