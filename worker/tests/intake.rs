//! Bounded intake, against the real `wimpy-worker` binary: 200 uploads of
//! 64 MiB at once get typed `overloaded` answers once the worker holds as
//! many upload bytes as it takes, its memory stays bounded, and small
//! requests on another connection are served throughout. Afterwards the
//! bytes are all given back: one 64 MiB upload goes through.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{WORKER, master};
use wimpy_net::Role;
use wimpy_schema::Failure;
use wimpy_schema::wimpy_capnp::{master as master_capnp, worker, write_result};

/// MiB of uploads the worker under test holds at most.
const CAP_MIB: u64 = 128;
const UPLOADS: usize = 200;
const UPLOAD_BYTES: u64 = 64 << 20;

/// The peak resident memory of process `pid`, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() << 10
}

/// The worker process, killed however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// How one upload ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Stored,
    Overloaded,
    Other(String),
}

/// Uploads `size` bytes (the same chunk over and over) under `key`.
async fn upload(w: &worker::Client, epoch: u64, key: &[u8], size: u64, chunk: &[u8]) -> Ended {
    let mut req = w.put_stream_request();
    req.get().set_key(key);
    req.get().set_size(size);
    req.get().set_epoch(epoch);
    let resp = match req.send().promise.await {
        Ok(resp) => resp,
        Err(e) => return Ended::Other(e.to_string()),
    };
    let r = resp.get().unwrap();
    if r.has_failure() {
        return match Failure::read(r.get_failure().unwrap()).unwrap() {
            Failure::Overloaded => Ended::Overloaded,
            f => Ended::Other(format!("{f:?}")),
        };
    }
    let up = r.get_upload().unwrap();
    let mut sent = 0;
    let mut refused = None;
    while sent < size {
        let mut write = up.write_request();
        write.get().set_chunk(&chunk[..chunk.len().min((size - sent) as usize)]);
        if let Err(e) = write.send().await {
            refused = Some(e);
            break;
        }
        sent += chunk.len() as u64;
    }
    match up.commit_request().send().promise.await {
        Ok(done) => match done.get().unwrap().get_result().unwrap().which().unwrap() {
            write_result::Ok(()) => Ended::Stored,
            write_result::Failure(f) => match Failure::read(f.unwrap()).unwrap() {
                Failure::Overloaded => Ended::Overloaded,
                f => Ended::Other(format!("{f:?}")),
            },
        },
        // The refused stream's error is the typed kind as well.
        Err(_) if refused.as_ref().is_some_and(|e| e.kind == capnp::ErrorKind::Overloaded) => Ended::Overloaded,
        Err(e) => Ended::Other(format!("{e} (after {refused:?})")),
    }
}

#[test]
fn two_hundred_64_mib_uploads_at_once_are_refused_in_time_and_memory_stays_bounded() {
    let master = master();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(WORKER)
        .args(["--master", &master.addr.to_string(), "--backends", "cpu", "--cores", "1", "--sync", "never"])
        .args(["--max-upload-mib", &CAP_MIB.to_string(), "--log-level", "info", "--data"])
        .arg(dir.path())
        .args(common::worker_credential_flags(&dir.path().join("tls")))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The address it serves on, from its first lines.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let _worker = Killed(child);
    let address = loop {
        let line = lines.next().expect("the worker said where it serves").unwrap();
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest.split(',').next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = common::tls(Role::Client, "client");
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let m: master_capnp::Client =
            wimpy_net::connect(&master.addr.to_string(), &client, &[Role::Master]).await.unwrap();
        let epoch = loop {
            let ring = m.ring_request().send().promise.await.unwrap();
            let ring = ring.get().unwrap().get_ring().unwrap();
            if ring.get_members().unwrap().len() == 1 {
                break ring.get_epoch();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let w: worker::Client = wimpy_net::connect(&address, &client, &[Role::Worker]).await.unwrap();
        // Let the worker take the ring before the load starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let baseline = peak_rss(pid);
        let chunk = Rc::new(vec![0x5au8; 1 << 20]);

        // Small requests on a connection of their own, answered all along.
        let probe: worker::Client = wimpy_net::connect(&address, &client, &[Role::Worker]).await.unwrap();
        let storm_over = Rc::new(Cell::new(false));
        let slowest = Rc::new(Cell::new(Duration::ZERO));
        let probes = tokio::task::spawn_local({
            let (storm_over, slowest) = (storm_over.clone(), slowest.clone());
            async move {
                let mut served = 0u32;
                while !storm_over.get() {
                    let asked = Instant::now();
                    let mut req = probe.put_request();
                    req.get().set_key(format!("probe{served}").as_bytes());
                    req.get().set_value(b"small");
                    req.get().set_epoch(epoch);
                    let answer = tokio::time::timeout(Duration::from_secs(10), req.send().promise).await;
                    let answer = answer.expect("a small put waited 10 s").unwrap();
                    assert!(matches!(
                        answer.get().unwrap().get_result().unwrap().which().unwrap(),
                        write_result::Ok(())
                    ));
                    slowest.set(slowest.get().max(asked.elapsed()));
                    served += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                served
            }
        });

        let ended = Rc::new(RefCell::new(Vec::new()));
        let storm = (0..UPLOADS).map(|i| {
            let (w, chunk, ended) = (w.clone(), chunk.clone(), ended.clone());
            async move {
                let e = upload(&w, epoch, format!("big{i}").as_bytes(), UPLOAD_BYTES, &chunk).await;
                ended.borrow_mut().push(e);
            }
        });
        let started = Instant::now();
        futures::future::join_all(storm).await;
        let took = started.elapsed();
        storm_over.set(true);
        let served = probes.await.unwrap();
        let peak = peak_rss(pid);

        let ended = std::mem::take(&mut *ended.borrow_mut());
        let overloaded = ended.iter().filter(|e| **e == Ended::Overloaded).count();
        let stored = ended.iter().filter(|e| **e == Ended::Stored).count();
        let others: Vec<_> = ended.iter().filter(|e| matches!(e, Ended::Other(_))).collect();
        assert!(others.is_empty(), "uploads ended otherwise than stored or overloaded: {others:?}");
        assert!(overloaded > 0, "none was refused: {stored} stored");
        eprintln!(
            "{UPLOADS} uploads of 64 MiB in {took:?}: {stored} stored, {overloaded} overloaded; peak RSS {} MiB \
             (baseline {} MiB, cap {CAP_MIB} MiB); {served} small puts meanwhile, the slowest {:?}",
            peak >> 20,
            baseline >> 20,
            slowest.get()
        );
        // The bound, over the baseline: the cap; a 1 MiB chunk in flight per
        // stream; for each upload stored, its value and the log's framed
        // copy of it while the commit writes; and 64 MiB of allocator slack.
        // (Without the cap, each upload would hold its whole 64 MiB.)
        let bound = baseline + ((CAP_MIB + UPLOADS as u64 + 64) << 20) + stored as u64 * 2 * UPLOAD_BYTES;
        assert!(peak < bound, "peak RSS {} MiB past {} MiB", peak >> 20, bound >> 20);
        assert!(served > 0, "no small request was served during the uploads");

        // Every reserved byte came back: one upload now fits whole.
        assert_eq!(upload(&w, epoch, b"after", UPLOAD_BYTES, &chunk).await, Ended::Stored);
    });
}
