//! `wimpy bench repair`: how fast the chains of a dead worker get their
//! copies back, beside how fast this machine's disk writes in sequence.
//!
//! A local cluster keeping three copies of each key is loaded, one worker
//! is killed (SIGKILL) and, once the master marks it down, removed; the
//! bytes its chains' new members wrote (their log growth, from their
//! heartbeats) over the time the removal took give the rate. The disk's
//! own rate is a file of the same size written in the same directory in
//! 1 MiB writes, each made durable before the next.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use wimpy_client::{Client, MemberState, RangeMove};
use wimpy_net::Security;

use super::{OutputArgs, bench_nodes, check_sync, finish, on_runtime, say, start_local, unix_seconds};
use crate::failure::Failure;
use crate::local::{LocalCluster, NodeSettings};
use crate::{Format, Global};

/// Copies of each key the run's cluster keeps.
const REPLICAS: u32 = 3;

/// What `wimpy bench repair` runs.
#[derive(Args, Debug)]
pub(super) struct RepairArgs {
    /// Workers in the local cluster; one is killed and removed, so more
    /// than three are needed for its chains to take on new members.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Megabytes (10^6 bytes) of values to store before the kill.
    #[arg(long, default_value_t = 64)]
    mb: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 4096)]
    value_size: usize,
    /// The master's --repair-mb-s for the run: the cap on each source's
    /// first pass (0: none, to measure how fast a copy can go).
    #[arg(long, default_value_t = 0.0, value_parser = wimpy_net::flags::mb_per_second)]
    repair_mb_s: f64,
    /// Workers' sync mode: always, interval:MS or never.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Write the figures to this JSON file (- for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// What one run measured.
struct Measured {
    disk_mb_s: f64,
    stored_bytes: u64,
    copied_bytes: u64,
    took: Duration,
    /// How long each pass of the removal's copy lasted, as status saw it.
    passes: [Duration; 2],
}

pub(super) fn bench_repair(args: &RepairArgs, global: &Global) -> Result<(), Failure> {
    let format = global.format;
    if args.workers <= REPLICAS as usize {
        return Err(Failure::usage(format!(
            "--workers: give more than {REPLICAS}, so the removed worker's chains have members to take on"
        )));
    }
    if args.mb == 0 || args.value_size == 0 {
        return Err(Failure::usage("--mb and --value-size: give sizes above 0"));
    }
    check_sync(&args.sync)?;
    let settings = NodeSettings {
        repair_mb_s: Some(args.repair_mb_s),
        ..bench_nodes(&args.sync, REPLICAS, None, global.insecure)
    };
    let mut cluster = start_local(args.workers, settings)?;
    let (master, security) = (cluster.master, cluster.security.clone());
    let (local, dir) = cluster.local_mut().expect("a local cluster");
    // The cluster idles meanwhile: only heartbeats touch the disk.
    say(format, &format!("writing {} MB to {} in sequence, an fdatasync per MiB...\n", args.mb, dir.display()));
    let disk_mb_s = sequential_write_mb_s(dir, args.mb * 1_000_000)
        .map_err(|e| Failure::trouble(format!("timing the disk: {e}")))?;
    let m = on_runtime(measure(local, master, security, args, disk_mb_s, format))?;
    drop(cluster);
    let rate = m.copied_bytes as f64 / 1e6 / m.took.as_secs_f64();
    let cap = match args.repair_mb_s {
        0.0 => "no cap".to_owned(),
        r => format!("capped at {r} MB/s"),
    };
    say(
        format,
        &format!(
            "stored {:.1} MB ({REPLICAS} copies of each key on {} workers); removing a killed worker copied {:.1} MB \
             in {:.2} s ({cap}; first pass {:.2} s, fenced pass {:.2} s)\n\
             re-replication {rate:.1} MB/s beside this disk's sequential write {:.1} MB/s: {:.2}x\n",
            m.stored_bytes as f64 / 1e6,
            args.workers,
            m.copied_bytes as f64 / 1e6,
            m.took.as_secs_f64(),
            m.passes[0].as_secs_f64(),
            m.passes[1].as_secs_f64(),
            m.disk_mb_s,
            rate / m.disk_mb_s,
        ),
    );
    let doc = json!({
        "tool": "wimpy bench repair", "version": env!("CARGO_PKG_VERSION"), "started_unix": unix_seconds(),
        "workers": args.workers, "replicas": REPLICAS, "sync": args.sync, "value_size": args.value_size,
        "repair_mb_s_cap": args.repair_mb_s,
        "stored_bytes": m.stored_bytes, "copied_bytes": m.copied_bytes, "seconds": m.took.as_secs_f64(),
        "first_pass_seconds": m.passes[0].as_secs_f64(), "fenced_pass_seconds": m.passes[1].as_secs_f64(),
        "repair_mb_s": rate, "disk_sequential_write_mb_s": m.disk_mb_s, "ratio": rate / m.disk_mb_s,
    });
    finish(&doc, &OutputArgs { json: args.json.clone(), plot: None }, format)
}

/// Writes `bytes` to a file in `dir` in 1 MiB writes, each made durable
/// (fdatasync) before the next: megabytes per second.
fn sequential_write_mb_s(dir: &Path, bytes: u64) -> std::io::Result<f64> {
    let path = dir.join("sequential-write-probe");
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let began = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        // Durable as it goes, as a receiving store's merges are: one
        // fsync at the end only would time the page cache.
        f.sync_data()?;
        left -= n as u64;
    }
    let took = began.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(bytes as f64 / 1e6 / took.as_secs_f64())
}

async fn measure(
    local: &mut LocalCluster,
    master: SocketAddr,
    security: Security,
    args: &RepairArgs,
    disk_mb_s: f64,
    format: Format,
) -> Result<Measured, Failure> {
    let trouble = |e: wimpy_client::ClientError| Failure::trouble(e.to_string());
    let client = Client::connect(master, security).await.map_err(trouble)?;
    let records = (args.mb * 1_000_000).div_ceil(args.value_size as u64);
    say(format, &format!("storing {records} values of {} bytes...\n", args.value_size));
    let value = |i: u64| -> Vec<u8> { (0..args.value_size as u64).map(|j| (i ^ j.wrapping_mul(31)) as u8).collect() };
    for first in (0..records).step_by(256) {
        let puts = (first..(first + 256).min(records)).map(|i| {
            let (client, v) = (&client, value(i));
            async move { client.put(format!("repair{i}").as_bytes(), &v).await }
        });
        for r in futures::future::join_all(puts).await {
            r.map_err(trouble)?;
        }
    }
    // The victim: the last worker, by the id it keeps in its data.
    let victim = local.workers() - 1;
    let id = worker_id(&local.worker_data(victim))?;
    let before = settled_log_bytes(&client).await?;
    local.kill_worker(victim).map_err(|e| Failure::trouble(format!("killing worker {id}: {e}")))?;
    say(format, &format!("killed worker {id}; waiting for the master to mark it down...\n"));
    loop {
        let status = client.status().await.map_err(trouble)?;
        if status.view.members.iter().any(|m| m.id == id && m.state == MemberState::Down) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let began = Instant::now();
    let mut seen: Vec<RangeMove> = Vec::new();
    let removing = client.remove(id);
    tokio::pin!(removing);
    loop {
        tokio::select! {
            done = &mut removing => {
                done.map_err(trouble)?;
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if let Ok(status) = client.status().await
                    && let Some(m) = status.moving
                {
                    seen.push(m);
                }
            }
        }
    }
    let took = began.elapsed();
    let pass = |n: u8| seen.iter().filter(|m| m.pass == n).map(|m| m.elapsed).max().unwrap_or_default();
    let after = settled_log_bytes(&client).await?;
    let copied_bytes = after
        .iter()
        .map(|(id, bytes)| bytes.saturating_sub(before.iter().find(|(b, _)| b == id).map_or(0, |(_, b)| *b)))
        .sum();
    Ok(Measured {
        disk_mb_s,
        stored_bytes: records * args.value_size as u64,
        copied_bytes,
        took,
        passes: [pass(1), pass(2)],
    })
}

/// The id a worker keeps in its data directory.
pub(super) fn worker_id(data: &Path) -> Result<u64, Failure> {
    let path = data.join("worker.id");
    let text = std::fs::read_to_string(&path).map_err(|e| Failure::trouble(format!("{}: {e}", path.display())))?;
    text.trim().parse().map_err(|e| Failure::trouble(format!("{}: {e}", path.display())))
}

/// Each serving member's log bytes once two heartbeats have gone by with
/// the same figures (the master knows a store's size from them).
async fn settled_log_bytes(client: &Client) -> Result<Vec<(u64, u64)>, Failure> {
    let mut last: Vec<(u64, u64)> = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let status = client.status().await.map_err(|e| Failure::trouble(e.to_string()))?;
        let now: Vec<(u64, u64)> = status
            .view
            .members
            .iter()
            .filter(|m| m.state == MemberState::Serving)
            .map(|m| (m.id, m.stats.log_bytes))
            .collect();
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}
