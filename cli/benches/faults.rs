//! Fault benchmarks with the real binaries, each beside a peer measured in
//! the same run:
//!
//! 1. **Master restart.** A master and three workers (`--sync always`) hold
//!    3,000 keys. The master is SIGKILLed and started again on its data
//!    directory; timed from the restart: until it answers at all (the
//!    peer), and until every key reads back through its proxy. Reads that
//!    answer "not found" meanwhile are counted (there must be none).
//! 2. **Intake cap.** 64 concurrent clients put 100-byte values, one call
//!    each (no batching), for 5 s against one worker, first with the
//!    default caps (the peer), then capped at 4 calls in flight: calls over
//!    the cap answer `overloaded`, and the SDK backs off and retries them.
//!
//! Build the binaries first (the bench runs those beside it):
//!
//! ```sh
//! cargo build --release -p wimpy-master -p wimpy-worker && cargo bench -p wimpy-cli --bench faults
//! ```

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wimpy_client::{Client, ClientOptions};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Node, free_port, master, on_runtime, wait_serving, worker, worker_with};

async fn connect(addr: SocketAddr, options: ClientOptions) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = Client::connect_with(addr, options.clone()).await {
            return c;
        }
        assert!(Instant::now() < deadline, "no master at {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const KEYS: u32 = 3000;

/// One restart: seconds until the master answers, until every key reads
/// back through it, and "not found" answers seen meanwhile.
fn restart_once() -> (f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let master_dir = dir.path().join("master");
    let mut m = master(addr, &master_dir);
    let _workers: Vec<Node> = (0..3).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    let mut result = (0.0, 0.0, 0);
    on_runtime(|| async {
        let client = Rc::new(connect(addr, ClientOptions::new(common::credentials().client_security())).await);
        wait_serving(&client, 3).await;
        let puts = (0..KEYS).map(|i| {
            let client = client.clone();
            async move { client.put(format!("k{i}").as_bytes(), &i.to_le_bytes()).await.unwrap() }
        });
        futures::future::join_all(puts).await;
        m.signal(libc::SIGKILL);
        m.0.wait().unwrap();
        let restarted = Instant::now();
        m = master(addr, &master_dir);
        let options = ClientOptions {
            via_master: true,
            timeout: Duration::from_secs(2),
            ..ClientOptions::new(common::credentials().client_security())
        };
        let proxy = Rc::new(connect(addr, options).await);
        let answers = restarted.elapsed().as_secs_f64();
        let mut left: Vec<u32> = (0..KEYS).collect();
        let mut not_found = 0;
        while !left.is_empty() {
            let reads = left.iter().map(|&i| {
                let proxy = proxy.clone();
                async move { (i, proxy.get(format!("k{i}").as_bytes()).await) }
            });
            let mut still = Vec::new();
            for (i, got) in futures::future::join_all(reads).await {
                match got {
                    Ok(Some(v)) => assert_eq!(v, i.to_le_bytes(), "k{i}"),
                    Ok(None) => {
                        not_found += 1;
                        still.push(i);
                    }
                    Err(_) => still.push(i),
                }
            }
            left = still;
            assert!(restarted.elapsed() < Duration::from_secs(60), "{} keys never readable", left.len());
        }
        result = (answers, restarted.elapsed().as_secs_f64(), not_found);
    });
    drop(m);
    result
}

/// Put ops/s of 64 one-call clients for 5 s against one worker started
/// with `flags`, and the puts that failed (retries used up).
fn intake_run(flags: &[&str]) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _m = master(addr, &dir.path().join("master"));
    let _w = worker_with(addr, &dir.path().join("w0"), flags);
    let mut result = (0.0, 0);
    on_runtime(|| async {
        let client = Rc::new(
            connect(
                addr,
                ClientOptions { batching: false, ..ClientOptions::new(common::credentials().client_security()) },
            )
            .await,
        );
        wait_serving(&client, 1).await;
        let started = Instant::now();
        let until = started + Duration::from_secs(5);
        let clients = (0..64u32).map(|c| {
            let client = client.clone();
            async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut i = 0u32;
                while Instant::now() < until {
                    match client.put(format!("c{c}-{i}").as_bytes(), &[c as u8; 100]).await {
                        Ok(()) => ok += 1,
                        Err(_) => failed += 1,
                    }
                    i += 1;
                }
                (ok, failed)
            }
        });
        let counts = futures::future::join_all(clients).await;
        let ok: u64 = counts.iter().map(|c| c.0).sum();
        result = (ok as f64 / started.elapsed().as_secs_f64(), counts.iter().map(|c| c.1).sum());
    });
    result
}

fn main() {
    // cargo bench passes --bench; nothing here takes flags.
    println!("## Master restart ({KEYS} keys, 3 workers, sync=always), 3 runs");
    println!("| run | answers s | all keys readable s | not-found answers |");
    println!("|---|---:|---:|---:|");
    let mut runs = Vec::new();
    for run in 1..=3 {
        let (answers, readable, not_found) = restart_once();
        println!("| {run} | {answers:.3} | {readable:.3} | {not_found} |");
        runs.push((answers, readable, not_found));
    }
    let median = |f: fn(&(f64, f64, u64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (answers, readable) = (median(|r| r.0), median(|r| r.1));
    println!(
        "median: every key readable {readable:.3} s after the restart, {:.2}x the time to answer at all",
        readable / answers
    );

    println!("\n## Intake (64 clients, one put per call, 5 s, 1 worker, sync=always)");
    println!("| worker | puts/s | failed puts |");
    println!("|---|---:|---:|");
    let (free, free_failed) = intake_run(&[]);
    println!("| default caps | {free:.0} | {free_failed} |");
    let (capped, capped_failed) = intake_run(&["--max-calls", "4"]);
    println!("| --max-calls 4 | {capped:.0} | {capped_failed} |");
    println!("capped: {:.2}x the puts/s of the default caps", capped / free);
    println!(
        "json: {{\"restart_answers_s\":{answers:.4},\"restart_readable_s\":{readable:.4},\"not_found\":{},\"puts_default\":{free:.1},\"puts_capped\":{capped:.1},\"failed_default\":{free_failed},\"failed_capped\":{capped_failed}}}",
        runs.iter().map(|r| r.2).sum::<u64>()
    );
}
