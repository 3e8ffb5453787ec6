//! `wimpy bench failover`: what clients see while a chain's head dies.
//!
//! A local cluster keeping three copies of each key serves writers (closed
//! loop, each writing keys at random); a while in, one worker is killed
//! (SIGKILL). The latencies of writes sent before the kill (those in flight
//! at it wait out the failover) and after it are kept apart, and for the
//! keys the dead worker headed, the time from the kill
//! until the first write to one of them that was sent after the kill is
//! acknowledged: when its chains take writes again.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use wimpy_client::{Client, ClientOptions, MemberState};
use wimpy_net::Security;

use super::{OutputArgs, bench_nodes, check_sync, finish, on_runtime, say, start_local, unix_seconds};
use crate::failure::Failure;
use crate::local::LocalCluster;
use crate::{Format, Global};

/// What `wimpy bench failover` runs.
#[derive(Args, Debug)]
pub(super) struct FailoverArgs {
    /// Workers in the local cluster (three copies of each key, or one per
    /// worker if fewer).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Keys the writers choose from.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// How long the writers run before the kill.
    #[arg(long, default_value = "3s", value_parser = wimpy_net::flags::span)]
    before: Duration,
    /// How long they run after it.
    #[arg(long, default_value = "6s", value_parser = wimpy_net::flags::span)]
    after: Duration,
    /// Workers' sync mode: always, interval:MS or never.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Write the figures to this JSON file (- for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// What the writers saw.
struct Seen {
    before: Histogram<u64>,
    after: Histogram<u64>,
    /// Writes that failed (after the SDK's own retries), by kind.
    failed: std::collections::BTreeMap<String, u64>,
    /// From the kill to the first acknowledged write, sent after the kill,
    /// of a key the dead worker headed.
    served_again: Option<Duration>,
    victim: u64,
}

pub(super) fn bench_failover(args: &FailoverArgs, global: &Global) -> Result<(), Failure> {
    let format = global.format;
    if args.workers < 2 || args.clients == 0 || args.keys == 0 {
        return Err(Failure::usage("give --workers of 2 or more, and --clients and --keys above 0"));
    }
    check_sync(&args.sync)?;
    let replicas = crate::local::default_replicas(args.workers);
    let mut cluster = start_local(args.workers, bench_nodes(&args.sync, replicas, None, global.insecure))?;
    let (master, security) = (cluster.master, cluster.security.clone());
    let (local, _) = cluster.local_mut().expect("a local cluster");
    let seen = on_runtime(run(local, master, security, args, format))?;
    drop(cluster);
    let ms = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e3 };
    let max = |h: &Histogram<u64>| h.max() as f64 / 1e3;
    let served = seen.served_again.map_or("never, in the run".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    say(
        format,
        &format!(
            "{} writers, {} copies of each key on {} workers (sync {}); worker {} killed after {:?}\n\
             {:>14} {:>10} {:>9} {:>9} {:>9}\n\
             {:>14} {:>10} {:>9.2} {:>9.2} {:>9.1}\n\
             {:>14} {:>10} {:>9.2} {:>9.2} {:>9.1}\n\
             writes to the dead worker's chains served again {served} after the kill; writes failed: {}\n",
            args.clients,
            replicas,
            args.workers,
            args.sync,
            seen.victim,
            args.before,
            "",
            "writes",
            "p50 ms",
            "p99 ms",
            "max ms",
            "sent before",
            seen.before.len(),
            ms(&seen.before, 0.5),
            ms(&seen.before, 0.99),
            max(&seen.before),
            "sent after",
            seen.after.len(),
            ms(&seen.after, 0.5),
            ms(&seen.after, 0.99),
            max(&seen.after),
            match seen.failed.is_empty() {
                true => "none".to_owned(),
                false => seen.failed.iter().map(|(k, n)| format!("{k} x{n}")).collect::<Vec<_>>().join(", "),
            },
        ),
    );
    let figures = |h: &Histogram<u64>| {
        json!({"writes": h.len(), "p50_ms": ms(h, 0.5), "p99_ms": ms(h, 0.99), "p999_ms": ms(h, 0.999),
               "max_ms": max(h)})
    };
    let doc = json!({
        "tool": "wimpy bench failover", "version": env!("CARGO_PKG_VERSION"), "started_unix": unix_seconds(),
        "workers": args.workers, "replicas": replicas, "sync": args.sync, "clients": args.clients,
        "killed": seen.victim, "before": figures(&seen.before), "after": figures(&seen.after),
        "failed": seen.failed, "served_again_seconds": seen.served_again.map(|d| d.as_secs_f64()),
    });
    finish(&doc, &OutputArgs { json: args.json.clone(), plot: None }, format)
}

async fn run(
    local: &mut LocalCluster,
    master: SocketAddr,
    security: Security,
    args: &FailoverArgs,
    format: Format,
) -> Result<Seen, Failure> {
    let trouble = |e: wimpy_client::ClientError| Failure::trouble(e.to_string());
    // Patient: a write waits out the failover rather than failing.
    let options = ClientOptions { timeout: Duration::from_secs(30), attempts: 30, ..ClientOptions::new(security) };
    let client = Client::connect_with(master, options).await.map_err(trouble)?;
    let value = vec![0x5a; args.value_size];
    let victim_index = local.workers() - 1;
    let victim = super::repair::worker_id(&local.worker_data(victim_index))?;
    let ring = client.refresh_ring().await.map_err(trouble)?;
    let headed_by_victim = |key: &[u8]| ring.ring.chain_of(key).head() == Some(victim);
    let hist = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let (before, after) = (RefCell::new(hist()), RefCell::new(hist()));
    let failed: RefCell<std::collections::BTreeMap<String, u64>> = Default::default();
    let served_again: std::cell::Cell<Option<Duration>> = Default::default();
    let killed_at: std::cell::Cell<Option<Instant>> = Default::default();
    let end = Instant::now() + args.before + args.after;
    let writer = |n: usize| {
        let (client, value, headed_by_victim) = (&client, &value, &headed_by_victim);
        let (before, after, failed, served_again, killed_at) = (&before, &after, &failed, &served_again, &killed_at);
        async move {
            let mut i = n as u64;
            while Instant::now() < end {
                i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let key = format!("failover{}", (i >> 33) % args.keys);
                let sent = Instant::now();
                let after_kill = killed_at.get().is_some_and(|k| sent >= k);
                let done = client.put(key.as_bytes(), value).await;
                let took = sent.elapsed();
                match done {
                    Ok(()) => {
                        let h = if after_kill { after } else { before };
                        let _ = h.borrow_mut().record(took.as_micros().max(1) as u64);
                        if after_kill
                            && headed_by_victim(key.as_bytes())
                            && served_again.get().is_none()
                            && let Some(k) = killed_at.get()
                        {
                            served_again.set(Some(k.elapsed()));
                        }
                    }
                    Err(e) => *failed.borrow_mut().entry(super::run::error_kind(&e)).or_default() += 1,
                }
            }
        }
    };
    let killing = async {
        tokio::time::sleep(args.before).await;
        say(format, &format!("killing worker {victim}...\n"));
        killed_at.set(Some(Instant::now()));
        local.kill_worker(victim_index).map_err(|e| Failure::trouble(format!("killing worker {victim}: {e}")))
    };
    let writers = futures::future::join_all((0..args.clients).map(writer));
    let (killed, _) = tokio::join!(killing, writers);
    killed?;
    // The master saw it go.
    let status = client.status().await.map_err(trouble)?;
    if !status.view.members.iter().any(|m| m.id == victim && m.state == MemberState::Down) {
        say(format, &format!("(the master does not count worker {victim} as down yet)\n"));
    }
    Ok(Seen {
        before: before.into_inner(),
        after: after.into_inner(),
        failed: failed.into_inner(),
        served_again: served_again.get(),
        victim,
    })
}
