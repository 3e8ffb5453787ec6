//! The master SIGKILLed and restarted on its data directory, with the real
//! binaries (three workers, `--sync always`) and a writer and a reader
//! going on throughout: no read of a stored key answers "not found", every
//! acknowledged write reads back once the cluster has settled, and the ring
//! and its members after the restart are those before. With the master
//! down for good, workers keeping one copy of each key serve on, and
//! workers keeping three stop once their leases run out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wimpy_client::{Client, ClientError, ClientOptions, MemberState};
use wimpy_net::KeyPeer;
use wimpy_schema::Failure;
use wimpy_schema::batch::{KeyAnswer, KeyRequest};

mod common;

use common::{Node, cli, free_port, master, master_with, on_runtime, worker};

/// The ring as members see it: epoch and (id, address, state) of each.
type RingShape = (u64, Vec<(u64, String, MemberState)>);

async fn ring_shape(client: &Client) -> Result<RingShape, ClientError> {
    let view = client.refresh_ring().await?;
    Ok((view.ring.epoch(), view.members.iter().map(|m| (m.id, m.address.clone(), m.state)).collect()))
}

#[test]
fn a_master_killed_and_restarted_loses_no_key_and_keeps_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let master_data = dir.path().join("master");
    let mut m = Some(master(addr, &master_data));
    let _workers: Vec<Node> = (0..3).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        // Short timeouts: requests that cannot be served while the master
        // is away fail fast instead of stalling the writer.
        let options = ClientOptions {
            timeout: Duration::from_secs(2),
            ..ClientOptions::new(common::credentials().client_security())
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = loop {
            if let Ok(c) = Client::connect_with(addr, options.clone()).await
                && let Ok((_, members)) = ring_shape(&c).await
                && members.len() == 3
                && members.iter().all(|m| m.2 == MemberState::Serving)
            {
                break c;
            }
            assert!(Instant::now() < deadline, "the cluster did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let before = ring_shape(&client).await.unwrap();

        let mut acked: BTreeMap<u32, u32> = BTreeMap::new();
        let history = wimpy_history::History::new();
        let (mut round, mut failed) = (0u32, 0u32);
        let started = Instant::now();
        let mut restarted = false;
        while started.elapsed() < Duration::from_secs(8) {
            let t = started.elapsed();
            if m.is_some() && t > Duration::from_secs(1) && !restarted {
                // SIGKILL: nothing of the master's is flushed on the way out.
                drop(m.take());
            }
            if m.is_none() && t > Duration::from_secs(2) {
                m = Some(master(addr, &master_data));
                restarted = true;
            }
            // One write, then one read of a key written earlier.
            let key = round % 400;
            let name = format!("k{key}");
            let value = round.to_le_bytes();
            match history.put(name.as_bytes(), &value, client.put(name.as_bytes(), &value)).await {
                Ok(()) => {
                    acked.insert(key, round);
                }
                Err(e) => {
                    assert!(e.is_unavailable(), "a write failed otherwise than unavailable: {e}");
                    failed += 1;
                }
            }
            if let Some((&k, _)) = acked.range(round.wrapping_mul(2_654_435_761) % 400..).next() {
                let name = format!("k{k}");
                if let Err(e) = history.get(name.as_bytes(), client.get(name.as_bytes())).await {
                    assert!(e.is_unavailable(), "a read failed otherwise than unavailable: {e}");
                }
            }
            round += 1;
        }
        assert!(restarted, "the master was not restarted");
        // No stored key answered not found, nor an older value than one
        // acknowledged before the read.
        if let Err(violation) = history.check() {
            panic!("{violation}");
        }
        assert!(acked.len() > 200, "too few writes went through: {} acked, {failed} failed", acked.len());
        // Settled within two failure timeouts (2 s each): everything
        // acknowledged reads back, and the ring is the one before.
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut missing = acked.len();
        while Instant::now() < deadline {
            missing = 0;
            for (k, v) in &acked {
                if client.get(format!("k{k}").as_bytes()).await.ok().flatten() != Some(v.to_le_bytes().to_vec()) {
                    missing += 1;
                }
            }
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(missing, 0, "acknowledged writes not readable two failure timeouts after the restart");
        assert_eq!(ring_shape(&client).await.unwrap(), before, "the ring after the restart is not the one before");
    });
    drop(m);
}

#[test]
fn with_the_master_down_the_cli_reads_and_writes_through_worker_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // One copy of each key: nobody can take a key over while the master is
    // away, so workers serve without its lease (with more copies they stop
    // once it runs out: see the next test).
    let m = master_with(addr, &dir.path().join("master"), &["--replicas", "1"]);
    let _workers: Vec<Node> = (0..3).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let o = cli(addr, &["status", "-w", "json"], b"");
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let members = v["members"].as_array().unwrap().clone();
            if members.len() == 3 && members.iter().all(|m| m["state"] == "serving") {
                break members;
            }
        }
        assert!(Instant::now() < deadline, "the cluster did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let seeds: Vec<String> = status.iter().map(|m| m["address"].as_str().unwrap().to_owned()).collect();
    let seeds = seeds.join(",");
    assert!(cli(addr, &["put", "before", "-"], b"written with the master up").status.success());

    drop(m);
    // Without seeds the cluster cannot be found; with them, work goes on.
    assert_eq!(cli(addr, &["get", "before"], b"").status.code(), Some(4));
    let o = cli(addr, &["--seeds", &seeds, "get", "before"], b"");
    assert_eq!((o.status.code(), o.stdout.as_slice()), (Some(0), &b"written with the master up"[..]), "{o:?}");
    let o = cli(addr, &["put", "during", "-", "--seeds", &seeds], b"written with the master down");
    assert!(o.status.success(), "{o:?}");
    let o = cli(addr, &["--seeds", &seeds, "get", "during"], b"");
    assert_eq!(o.stdout, b"written with the master down");
    // Only the master tells the membership.
    assert_eq!(cli(addr, &["--seeds", &seeds, "status"], b"").status.code(), Some(4));
}

#[test]
fn with_three_copies_and_the_master_down_workers_refuse_once_their_leases_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let m = master_with(addr, &dir.path().join("master"), &["--replicas", "3"]);
    let _workers: Vec<Node> = (0..3).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    on_runtime(|| async move {
        let client = common::serving_client(addr, 3).await;
        client.put(b"k", b"v").await.unwrap();
        let security = common::credentials().client_security();
        let view = client.refresh_ring().await.unwrap();
        drop(m);
        // The master could now (were it only cut off from the workers)
        // mark any of them down and hand its roles on after 2 s; each
        // stops serving within 1.5 s of its last answered heartbeat.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let (epoch, head) = (view.ring.epoch(), view.ring.chain_of(b"k").head());
        let out_of_lease =
            |a: &KeyAnswer| matches!(a, KeyAnswer::Failed(Failure::Unavailable(why)) if why.contains("lease"));
        for member in &view.members {
            let w: wimpy_schema::wimpy_capnp::worker::Client =
                wimpy_net::connect(&member.address, &security, &[wimpy_net::Role::Worker]).await.unwrap();
            let read = w.send_one(epoch, &KeyRequest::Get(b"k".to_vec())).await.unwrap();
            assert!(out_of_lease(&read), "worker {} answered a read with {read:?}", member.id);
            // Only the head takes writes at all; it refuses them too.
            let written = w.send_one(epoch, &KeyRequest::Put(b"k".to_vec(), b"w".to_vec())).await.unwrap();
            assert!(
                if head == Some(member.id) { out_of_lease(&written) } else { matches!(written, KeyAnswer::Failed(_)) },
                "worker {} answered a write with {written:?}",
                member.id
            );
        }
    });
}
