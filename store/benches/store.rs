//! Store benchmark: wimpy's FAWN-DS store beside redb and fjall on one
//! workload, in one run.
//!
//! Workload: N keys (default 10 million; WIMPY_BENCH_KEYS to change) of 16
//! bytes with 256-byte values, inserted one put at a time in scrambled key
//! order, with no fsync per put and one durable flush at the end (wimpy
//! sync=never + flush; fjall persist(SyncAll); redb Durability::None per
//! commit + one Immediate commit). Each engine fills in a child process that
//! is killed with SIGKILL right after its final flush; the parent then times
//! reopening (recovery after a crash) and random gets of existing keys on 1
//! and 2 threads.
//!
//! Engines: `wimpy` (index sized for N keys, as a worker is configured),
//! `wimpy-grow` (default sizing: the index doubles as it fills), `fjall`,
//! `redb`.
//!
//! Run: cargo bench -p wimpy-worker --bench store [-- engines...]
//! Output: a table on stdout and a JSON line per engine (prefix `json:`).

use std::io::{BufRead, BufReader, Write};

use redb::ReadableDatabase;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALUE_LEN: usize = 256;
const KEY_LEN: usize = 16;

fn key(i: u64) -> [u8; KEY_LEN] {
    // Scrambled order: random inserts, which is what a hashed key space gives.
    let s = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) ^ 0x5851_f42d_4c95_7f2d;
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&s.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64, out: &mut [u8; VALUE_LEN]) {
    let mut x = i ^ 0xdead_beef;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// One engine behind the benchmark's four operations.
trait Engine: Send + Sync {
    fn put(&self, k: &[u8], v: &[u8]);
    fn get(&self, k: &[u8]) -> Option<usize>;
    fn flush(&self);
    /// Bytes of in-DRAM index, where the engine has one.
    fn index_bytes(&self) -> Option<u64> {
        None
    }
    /// What the engine says about its recovery, where it says anything.
    fn recovery_detail(&self) -> Option<String> {
        None
    }
}

struct Wimpy(wimpy_store::Store);
impl Engine for Wimpy {
    fn put(&self, k: &[u8], v: &[u8]) {
        self.0.put(k, v).unwrap()
    }
    fn get(&self, k: &[u8]) -> Option<usize> {
        self.0.get(k).unwrap().map(|v| v.len())
    }
    fn flush(&self) {
        self.0.flush().unwrap()
    }
    fn index_bytes(&self) -> Option<u64> {
        Some(self.0.stats().index_bytes)
    }
    fn recovery_detail(&self) -> Option<String> {
        let r = self.0.recovery_report();
        Some(format!(
            "checkpoint used: {}, replayed {} records ({} MB), {} truncations, {:?}",
            r.checkpoint_used,
            r.replayed_records,
            r.replayed_bytes >> 20,
            r.truncations.len(),
            r.duration
        ))
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);
impl Engine for Fjall {
    fn put(&self, k: &[u8], v: &[u8]) {
        self.1.insert(k, v).unwrap()
    }
    fn get(&self, k: &[u8]) -> Option<usize> {
        self.1.get(k).unwrap().map(|v| v.len())
    }
    fn flush(&self) {
        self.0.persist(fjall::PersistMode::SyncAll).unwrap()
    }
}

const REDB_TABLE: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("kv");
struct Redb(redb::Database);
impl Engine for Redb {
    fn put(&self, k: &[u8], v: &[u8]) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::None).unwrap();
        tx.open_table(REDB_TABLE).unwrap().insert(k, v).unwrap();
        tx.commit().unwrap();
    }
    fn get(&self, k: &[u8]) -> Option<usize> {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(REDB_TABLE).unwrap();
        t.get(k).unwrap().map(|v| v.value().len())
    }
    fn flush(&self) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::Immediate).unwrap();
        tx.open_table(REDB_TABLE).unwrap();
        tx.commit().unwrap();
    }
}

fn open(engine: &str, dir: &Path, n: u64) -> Box<dyn Engine> {
    let wimpy = |expected_keys| {
        let opts = wimpy_store::Options { sync: wimpy_store::SyncMode::Never, expected_keys, ..Default::default() };
        Box::new(Wimpy(wimpy_store::Store::open(dir, opts).unwrap()))
    };
    match engine {
        // Sized for the keys it will hold, as a worker is configured.
        "wimpy" => wimpy(n),
        // Default sizing: the index starts small and doubles as it fills,
        // so its bytes per key depend on where N falls between doublings.
        "wimpy-grow" => wimpy(wimpy_store::Options::default().expected_keys),
        "fjall" => {
            let db = fjall::Database::builder(dir).open().unwrap();
            let ks = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).unwrap();
            Box::new(Fjall(db, ks))
        }
        "redb" => {
            std::fs::create_dir_all(dir).unwrap();
            Box::new(Redb(redb::Database::create(dir.join("db.redb")).unwrap()))
        }
        other => panic!("unknown engine {other}"),
    }
}

/// Child: fill, flush, report, then wait to be killed.
fn child(engine: &str, dir: &Path, n: u64) -> ! {
    let e = open(engine, dir, n);
    let mut v = [0u8; VALUE_LEN];
    let started = Instant::now();
    for i in 0..n {
        value(i, &mut v);
        e.put(&key(i), &v);
    }
    e.flush();
    let secs = started.elapsed().as_secs_f64();
    println!("filled {secs}");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct Result {
    engine: String,
    fill_secs: f64,
    recovery_secs: f64,
    get_ops: [f64; 2],
    index_bytes_per_key: Option<f64>,
    disk_bytes: u64,
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() { dir_bytes(&e.path()) } else { m.len() }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn random_gets(e: &Arc<dyn Engine>, n: u64, threads: usize, per_thread: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let e = e.clone();
            s.spawn(move || {
                let mut x = 0x1234_5678_9abc_def0u64 ^ t as u64;
                for _ in 0..per_thread {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = x % n;
                    assert_eq!(e.get(&key(i)), Some(VALUE_LEN), "key {i} missing");
                }
            });
        }
    });
    (threads as u64 * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn run(engine: &str, root: &Path, n: u64, gets: u64) -> Result {
    let dir = root.join(engine);
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe)
        .args(["child", engine, dir.to_str().unwrap(), &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let fill_secs: f64 = line.trim().strip_prefix("filled ").expect("child reports its fill").parse().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let disk_bytes = dir_bytes(&dir);

    let started = Instant::now();
    let e: Arc<dyn Engine> = Arc::from(open(engine, &dir, n));
    let recovery_secs = started.elapsed().as_secs_f64();
    if let Some(d) = e.recovery_detail() {
        println!("{engine} recovery: {d}");
    }
    // Warm the page cache and the engine's own caches the same way for all.
    random_gets(&e, n, 2, gets / 4);
    let g1 = random_gets(&e, n, 1, gets);
    let g2 = random_gets(&e, n, 2, gets);
    let index_bytes_per_key = e.index_bytes().map(|b| b as f64 / n as f64);
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
    Result { engine: engine.into(), fill_secs, recovery_secs, get_ops: [g1, g2], index_bytes_per_key, disk_bytes }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => child(&args[2], Path::new(&args[3]), args[4].parse().unwrap()),
        // Times one reopen of a store a killed child left, for profiling.
        Some("reopen") => {
            let started = Instant::now();
            let e = open(&args[2], Path::new(&args[3]), args[4].parse().unwrap());
            println!("reopen {:?} {}", started.elapsed(), e.recovery_detail().unwrap_or_default());
            return;
        }
        _ => {}
    }
    let n: u64 = std::env::var("WIMPY_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let gets: u64 = std::env::var("WIMPY_BENCH_GETS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let root = std::env::var("WIMPY_BENCH_DIR").unwrap_or_else(|_| "target/store-bench".into());
    let mut engines: Vec<String> = args[1..].iter().filter(|a| !a.starts_with('-')).cloned().collect();
    if engines.is_empty() {
        engines = vec!["wimpy".into(), "wimpy-grow".into(), "fjall".into(), "redb".into()];
    }
    println!("{n} keys x {VALUE_LEN}-byte values, {KEY_LEN}-byte keys, {gets} random gets per thread count");
    println!(
        "{:<10} {:>10} {:>12} {:>14} {:>14} {:>12} {:>10} {:>10}",
        "engine", "fill MB/s", "fill ops/s", "get ops/s 1t", "get ops/s 2t", "recovery s", "index B/k", "disk MB"
    );
    for e in &engines {
        let r = run(e, Path::new(&root), n, gets);
        let mb = (n as f64 * (KEY_LEN + VALUE_LEN) as f64) / 1e6;
        println!(
            "{:<10} {:>10.1} {:>12.0} {:>14.0} {:>14.0} {:>12.3} {:>10} {:>10.0}",
            r.engine,
            mb / r.fill_secs,
            n as f64 / r.fill_secs,
            r.get_ops[0],
            r.get_ops[1],
            r.recovery_secs,
            r.index_bytes_per_key.map_or("-".into(), |b| format!("{b:.2}")),
            r.disk_bytes as f64 / 1e6
        );
        println!(
            "json: {{\"engine\":\"{}\",\"keys\":{n},\"fill_mb_s\":{:.2},\"fill_ops_s\":{:.0},\"get_ops_s_1t\":{:.0},\"get_ops_s_2t\":{:.0},\"recovery_s\":{:.4},\"index_bytes_per_key\":{},\"disk_bytes\":{}}}",
            r.engine,
            mb / r.fill_secs,
            n as f64 / r.fill_secs,
            r.get_ops[0],
            r.get_ops[1],
            r.recovery_secs,
            r.index_bytes_per_key.map_or("null".into(), |b| format!("{b:.3}")),
            r.disk_bytes
        );
    }
}
