//! A worker whose disk fills up: the real binaries, a master and two
//! workers, one of them on a small tmpfs that a ballast file mostly fills.
//! When its store fails, `wimpy status` shows the worker `failed` and why,
//! its keys answer `unavailable` (never "not found") while the other
//! worker's keys are served, and once the ballast is removed it reopens by
//! itself and serves every acknowledged write again.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where the mount is refused the
//! test says so and does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wimpy_client::{Client, ClientOptions, MemberState};

mod common;

use common::{cli, free_port, master_with, on_runtime, worker, worker_with};

/// Size of the small disk, and of the ballast that leaves the store about
/// 16 MiB of it.
const DISK_MIB: u64 = 28;
const BALLAST_MIB: u64 = 12;

/// A tmpfs of `DISK_MIB`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={DISK_MIB}m"), "tmpfs"]).arg(at).output();
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                return None;
            }
        };
        if !out.status.success() {
            eprintln!("skipped: cannot mount a tmpfs here: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The state of worker `id` and why, as the master's status gives them.
async fn member_state(client: &Client, id: u64) -> Option<(MemberState, String)> {
    let view = client.status().await.ok()?.view;
    view.members.iter().find(|m| m.id == id).map(|m| (m.state, m.reason.clone()))
}

/// Waits (bounded) until worker `id` is in `state`; returns its reason.
async fn wait_until(client: &Client, id: u64, state: MemberState, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some((s, reason)) = member_state(client, id).await
            && s == state
        {
            return reason;
        }
        assert!(Instant::now() < deadline, "worker {id} never became {state}: {:?}", member_state(client, id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_full_disk_fails_its_worker_visibly_and_it_serves_again_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    // Declared first, dropped last: the workers are gone before it unmounts.
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk")) else {
        return;
    };
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![0x5a; (BALLAST_MIB << 20) as usize]).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // One copy of each key: the full worker's keys are nowhere else, so
    // they must answer unavailable (with more copies, the other serves).
    let _master = master_with(addr, &dir.path().join("master"), &["--replicas", "1"]);
    let small = disk.0.join("w0");
    // A small index, so that its checkpoint fits the small disk.
    let _full = worker_with(addr, &small, &["--expected-keys", "1024"]);
    on_runtime(|| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            if let Ok(c) = Client::connect_with(addr, ClientOptions::new(common::credentials().client_security())).await
            {
                break c;
            }
            assert!(Instant::now() < deadline, "no master");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let full_id = loop {
            if let Ok(id) = std::fs::read_to_string(small.join("worker.id")) {
                break id.trim().parse::<u64>().unwrap();
            }
            assert!(Instant::now() < deadline, "the first worker never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        wait_until(&client, full_id, MemberState::Serving, Duration::from_secs(30)).await;
        let _roomy = worker(addr, &dir.path().join("w1"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.refresh_ring().await.map(|v| v.members.len()).unwrap_or(0) < 2 {
            assert!(Instant::now() < deadline, "the second worker never joined");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ring = client.refresh_ring().await.unwrap();
        let owner = |k: &str| ring.ring.owner(k.as_bytes()).unwrap();

        // Write 64 KiB values until the small disk refuses one.
        let value = |i: u32| -> Vec<u8> { (0..64u32 << 10).map(|j| (i ^ j.wrapping_mul(31)) as u8).collect() };
        let mut acknowledged = Vec::new();
        let mut refused = None;
        for i in 0..2000u32 {
            let key = format!("k{i}");
            match client.put(key.as_bytes(), &value(i)).await {
                Ok(()) => acknowledged.push(i),
                Err(e) => {
                    assert_eq!(owner(&key), full_id, "{key} on the roomy worker: {e}");
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the small disk never filled up");
        eprintln!("{} writes acknowledged, then: {refused}", acknowledged.len());

        let reason = wait_until(&client, full_id, MemberState::Failed, Duration::from_secs(10)).await;
        assert!(reason.contains("No space left on device"), "{reason}");
        let status = cli(addr, &["status"], b"");
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{status:?}");
        assert!(text.contains(&format!("worker {full_id} is failed: ")) && text.contains("No space left"), "{text}");
        // Its keys are unavailable, not missing; the other worker serves.
        for &i in &acknowledged {
            let key = format!("k{i}");
            match client.get(key.as_bytes()).await {
                Ok(got) => {
                    assert_ne!(owner(&key), full_id, "{key} answered from the failed worker");
                    assert_eq!(got, Some(value(i)), "{key}");
                }
                Err(e) => assert!(e.is_unavailable() && owner(&key) == full_id, "{key}: {e}"),
            }
        }
        // A disk still full keeps it failed (no flapping back to serving).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(member_state(&client, full_id).await.map(|s| s.0), Some(MemberState::Failed));

        std::fs::remove_file(&ballast).unwrap();
        wait_until(&client, full_id, MemberState::Serving, Duration::from_secs(60)).await;
        for &i in &acknowledged {
            let key = format!("k{i}");
            let got = client.get(key.as_bytes()).await.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(got, Some(value(i)), "acknowledged {key} after the reopen");
        }
        let after = (2000u32..).find(|i| owner(&format!("k{i}")) == full_id).unwrap();
        client.put(format!("k{after}").as_bytes(), b"room again").await.unwrap();
        assert_eq!(client.get(format!("k{after}").as_bytes()).await.unwrap(), Some(b"room again".to_vec()));
    });
}
