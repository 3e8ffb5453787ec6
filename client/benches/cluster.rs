//! Load against a running cluster: N concurrent clients, each with its own
//! connections, doing PUTs then GETs of fixed-size values over a key space,
//! straight to the owners or through the master.
//!
//! cargo bench -p wimpy-client --bench cluster -- --master 127.0.0.1:7070 \
//!     [--clients 50] [--threads 2] [--seconds 10] [--value-size 100] \
//!     [--keys 100000] [--via-master]
//!
//! Prints one `json:` line per phase.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wimpy_client::{Client, ClientOptions};

#[derive(Clone, Debug)]
struct Args {
    master: SocketAddr,
    clients: usize,
    threads: usize,
    seconds: f64,
    value_size: usize,
    keys: u64,
    via_master: bool,
}

fn parse() -> Args {
    let mut a = Args {
        master: "127.0.0.1:7070".parse().unwrap(),
        clients: 50,
        threads: 2,
        seconds: 10.0,
        value_size: 100,
        keys: 100_000,
        via_master: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--master" => a.master = val().parse().expect("--master ADDR"),
            "--clients" => a.clients = val().parse().expect("--clients N"),
            "--threads" => a.threads = val().parse().expect("--threads N"),
            "--seconds" => a.seconds = val().parse().expect("--seconds S"),
            "--value-size" => a.value_size = val().parse().expect("--value-size BYTES"),
            "--keys" => a.keys = val().parse().expect("--keys N"),
            "--via-master" => a.via_master = true,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Runs `clients / threads` clients on each of `threads` threads for the
/// phase's duration; returns completed operations and seconds taken.
fn phase(args: &Args, put: bool) -> (u64, f64) {
    let per_thread = args.clients.div_ceil(args.threads);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let handles: Vec<_> = (0..args.threads)
        .map(|t| {
            let args = args.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                tokio::task::LocalSet::new().block_on(&rt, async move {
                    let done = Rc::new(Cell::new(0u64));
                    let mut tasks = Vec::new();
                    for c in 0..per_thread {
                        let (args, done) = (args.clone(), done.clone());
                        tasks.push(tokio::task::spawn_local(async move {
                            let opts = ClientOptions { via_master: args.via_master, ..ClientOptions::default() };
                            let client = Client::connect_with(args.master, opts).await.expect("connect");
                            let value = vec![b'x'; args.value_size];
                            let mut x = ((t * 1000 + c) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                            while Instant::now() < deadline {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let key = format!("bench-{}", x % args.keys);
                                if put {
                                    client.put(key.as_bytes(), &value).await.expect("put");
                                } else {
                                    client.get(key.as_bytes()).await.expect("get");
                                }
                                done.set(done.get() + 1);
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    done.get()
                })
            })
        })
        .collect();
    let ops: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (ops, started.elapsed().as_secs_f64())
}

fn main() {
    let args = parse();
    let route = if args.via_master { "via-master" } else { "direct" };
    for (name, put) in [("PUT", true), ("GET", false)] {
        let (ops, secs) = phase(&args, put);
        let rate = ops as f64 / secs;
        let mb = rate * args.value_size as f64 / 1e6;
        println!(
            "{name:<4} {route:<10} {:>3} clients {:>8} B values: {rate:>10.0} ops/s {mb:>8.1} MB/s",
            args.clients, args.value_size
        );
        println!(
            "json: {{\"op\":\"{name}\",\"route\":\"{route}\",\"clients\":{},\"value_bytes\":{},\"ops_per_s\":{rate:.0},\"mb_per_s\":{mb:.2}}}",
            args.clients, args.value_size
        );
    }
}
