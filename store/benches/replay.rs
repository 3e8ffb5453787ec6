//! Replay benchmark: rolling the log forward with damaged records beside the
//! same log clean, in one run.
//!
//! Fills a store with N keys (default 1 million; WIMPY_BENCH_KEYS to change)
//! of 16 bytes with 256-byte values, closes it and removes its index
//! checkpoint, so that opening replays the whole log. It is opened three
//! times: clean; with one byte flipped at a random spot in each of D equal
//! slices of the log (default 1,000; WIMPY_BENCH_DAMAGE), each of which
//! replay must step over by scanning for the next valid frame (a flip in a
//! record's padding harms nothing and is not counted as damage); and clean again, from a copy
//! of the undamaged files, so the page cache treats both clean runs alike.
//! Every open starts with the files in the page cache (they were just
//! written or read), which isolates replay's CPU cost from the disk.
//!
//! Run: cargo bench -p wimpy-store --bench replay
//! Output: a table on stdout and one JSON line (prefix `json:`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use wimpy_store::{CompactionOptions, Options, Store, SyncMode};

const VALUE_LEN: usize = 256;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn options(keys: u64) -> Options {
    Options {
        sync: SyncMode::Never,
        expected_keys: keys,
        // Only the checkpoint that close writes, which is then removed.
        checkpoint_every_bytes: u64::MAX,
        compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Opens the store in `dir` with no checkpoint; returns seconds, records
/// replayed and damaged spans stepped over.
fn replay(dir: &Path, keys: u64) -> (f64, u64, usize) {
    let _ = std::fs::remove_file(dir.join("index.ckpt"));
    let started = Instant::now();
    let store = Store::open(dir, options(keys)).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let report = store.recovery_report().clone();
    assert!(!report.checkpoint_used);
    drop(store);
    (seconds, report.replayed_records, report.damage.len())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn main() {
    let keys = env_u64("WIMPY_BENCH_KEYS", 1_000_000);
    let damage = env_u64("WIMPY_BENCH_DAMAGE", 1_000);
    let tmp = tempfile::tempdir().unwrap();
    let (clean, damaged) = (tmp.path().join("clean"), tmp.path().join("damaged"));
    {
        let store = Store::open(&clean, options(keys)).unwrap();
        let mut v = [0u8; VALUE_LEN];
        for i in 0..keys {
            v[..8].copy_from_slice(&i.to_le_bytes());
            store.put(&i.to_be_bytes().repeat(2), &v).unwrap();
        }
        store.close().unwrap();
    }
    copy_dir(&clean, &damaged);
    // One byte flipped in the value of `damage` records spread over the log.
    let files = segments(&damaged);
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let mut flipped = 0;
    for n in 0..damage {
        // A spot at random in each of `damage` equal slices of the log (an
        // even stride would fall on the same place of every record).
        let slice = total / damage;
        let jitter = (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) % slice;
        let mut at = n * slice + jitter;
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            if at < len {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new().read(true).write(true).open(f).unwrap();
                // Past the segment header: a record's bytes.
                let at = at.max(4096);
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, at).unwrap();
                file.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
                flipped += 1;
                break;
            }
            at -= len;
        }
    }
    let first = replay(&clean, keys);
    let hurt = replay(&damaged, keys);
    let again = replay(&clean, keys);
    let clean_s = first.0.min(again.0);
    let rate = |(s, records, _): (f64, u64, usize)| records as f64 / s;
    println!("{keys} keys, {total} log bytes, {flipped} bytes flipped");
    println!("| log | replay s | records | records/s | damaged spans |");
    println!("|---|---:|---:|---:|---:|");
    for (name, r) in [("clean", first), ("damaged", hurt), ("clean again", again)] {
        println!("| {name} | {:.3} | {} | {:.0} | {} |", r.0, r.1, rate(r), r.2);
    }
    println!("damaged replay takes {:.2}x the time of the faster clean one", hurt.0 / clean_s);
    println!(
        "json: {{\"keys\":{keys},\"log_bytes\":{total},\"flipped\":{flipped},\"clean_s\":{clean_s:.4},\"damaged_s\":{:.4},\"damaged_spans\":{},\"records_clean\":{},\"records_damaged\":{}}}",
        hurt.0, hurt.2, first.1, hurt.1
    );
}
