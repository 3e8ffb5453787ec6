//! A real crash test: a child process writes with sync=always and prints each
//! acknowledged operation; the parent kills it with SIGKILL at a random
//! moment, reopens the store, and checks that every acknowledged write reads
//! back with its exact value. Repeated over many rounds on one directory, so
//! each round also recovers what earlier crashes left behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use wimpy_store::{CompactionOptions, Options, Store, SyncMode};

const ROUNDS: u64 = 12;
/// Keys per round; writes cycle over them so the log fills with garbage and
/// background compaction runs while the process is killed.
const KEYS: u64 = 300;
const CHILD_DIR: &str = "WIMPY_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "WIMPY_CRASH_CHILD_ROUND";

fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_bytes: 1 << 20,
        max_value_bytes: 64 << 10,
        checkpoint_every_bytes: 2 << 20,
        compaction: CompactionOptions {
            enabled: true,
            garbage_ratio: 0.3,
            min_segment_garbage: 0.2,
            bytes_per_second: None,
        },
        ..Options::default()
    }
}

fn key(round: u64, i: u64) -> Vec<u8> {
    format!("r{round}-k{}", i % KEYS).into_bytes()
}

fn value(round: u64, i: u64) -> Vec<u8> {
    let len = 200 + (i * 7919) % 3000;
    (0..len).map(|j| (j ^ i ^ (round << 4)) as u8).collect()
}

/// The child's body: runs only when the parent starts this binary with the
/// child variables set.
#[test]
#[ignore = "run by store_crash::acknowledged_writes_survive_sigkill as a child process"]
fn crash_child_writer() {
    let dir = std::env::var(CHILD_DIR).expect("child needs its directory");
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        store.put(&key(round, i), &value(round, i)).unwrap();
        use std::io::Write;
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    // Per round: the highest acknowledged write, if any.
    let mut acked_by_round: Vec<Option<u64>> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_after = Duration::from_millis(rng.random_range(30..400));
        let started = Instant::now();
        let mut last = None;
        // An acknowledgement counts only as a whole line: the kill may cut
        // the last one short ("ack 17" of "ack 1729").
        let mut read_ack = |stdout: &mut BufReader<_>| -> bool {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if let Some(i) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                        last = last.max(Some(i.parse::<u64>().unwrap()));
                    }
                    true
                }
                _ => false,
            }
        };
        // Read acknowledgements until the deadline, then kill mid-stream.
        while started.elapsed() < kill_after && read_ack(&mut stdout) {}
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements already printed before the kill count too.
        while read_ack(&mut stdout) {}
        child.wait().unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        // The write in flight at the kill may have reached the log; if it
        // did, recovery has made it part of history from now on.
        let in_flight = last.map_or(0, |l| l + 1);
        if store.get(&key(round, in_flight)).unwrap() == Some(value(round, in_flight)) {
            last = Some(in_flight);
        }
        acked_by_round.push(last);

        for (r, last) in acked_by_round.iter().enumerate() {
            let r = r as u64;
            let Some(last) = *last else { continue };
            for k in 0..KEYS.min(last + 1) {
                // The newest acknowledged write of key k.
                let newest = last - (last + KEYS - k) % KEYS;
                let got = store.get(&key(r, k)).unwrap();
                let ok = got.as_deref() == Some(&value(r, newest)[..]);
                let found = got.map(|g| (0..=last + 1).rev().find(|&i| value(r, i) == g));
                assert!(
                    ok,
                    "round {r} key {k}: acknowledged write {newest} lost after crash in round {round}; found {found:?}\n{:?}",
                    store.recovery_report()
                );
            }
        }
        store.close().unwrap();
    }
    assert!(
        acked_by_round.iter().filter(|a| a.is_some()).count() >= 10,
        "too few rounds wrote anything: {acked_by_round:?}"
    );
}
