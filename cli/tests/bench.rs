//! End to end: `wimpy bench` as a real process, starting its own local
//! cluster of real worker processes, writing JSON and charts.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const WIMPY: &str = env!("CARGO_BIN_EXE_wimpy");

/// Runs `wimpy bench ARGS` (ARGS split at spaces).
fn bench(args: &str) -> Output {
    Command::new(WIMPY).arg("bench").args(args.split_whitespace()).output().unwrap()
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{:?}\nstdout: {out}\nstderr: {}", o.status, String::from_utf8_lossy(&o.stderr));
    out
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A chart: an SVG document with drawing in it.
fn chart(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{}", path.display());
    assert!(text.contains("<polyline") || text.contains("<rect"), "{} draws nothing", path.display());
}

#[test]
fn a_short_mixed_bench_writes_every_figure_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("bench.json");
    let plots = dir.path().join("plots");
    let out = ok(&bench(&format!(
        "--local 2 --sync never --mix get=50,put=20,hash=20,pict=10 --records 300 --pictures 3 --picture-size 96x64 --clients 1,3 --duration 1500ms --json {} --plot {}",
        figures.display(),
        plots.display()
    )));
    assert!(out.contains("get 50%") && out.contains("p99.9 ms"), "{out}");
    let doc = json(&figures);
    assert_eq!(doc["cluster"]["workers"], 2);
    assert_eq!(doc["clients"]["connections"], "shared");
    assert_eq!(doc["clients"]["batching"], true);
    assert_eq!(doc["workload"]["mix"]["pict"], 10);
    assert_eq!(doc["load"]["records"], 300);
    assert_eq!(doc["load"]["pictures"], 3);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, clients) in runs.iter().zip([1, 3]) {
        assert_eq!(run["clients"], clients);
        assert!(run["ops_per_s"].as_f64().unwrap() > 0.0, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert!(run["energy"]["readable"].is_boolean());
        // Gets and puts went in batches (hash and pict jobs do not).
        let batches = &run["batches"];
        assert!(batches["sent"].as_u64().unwrap() > 0, "{run}");
        assert!(batches["requests_per_batch"].as_f64().unwrap() >= 1.0, "{run}");
        for op in ["get", "put", "hash", "pict"] {
            let o = &run["operations"][op];
            assert!(o["ops"].as_u64().unwrap() > 0, "{op} never ran: {run}");
            let l = &o["latency_us"];
            for q in ["p50", "p99", "p99_9", "max"] {
                assert!(l[q].as_u64().unwrap() > 0, "{op} {q}");
            }
            assert!(l["p50"].as_u64() <= l["p99"].as_u64() && l["p99"].as_u64() <= l["max"].as_u64());
            assert!(o["histogram"].as_str().unwrap().starts_with("HISTFAAA"));
        }
    }
    for name in ["latency-cdf-1-clients.svg", "latency-cdf-3-clients.svg", "throughput-vs-clients.svg"] {
        chart(&plots.join(name));
    }
}

#[test]
fn fixed_rate_scan_and_insert_workloads_run() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("e.json");
    ok(&bench(&format!(
        "--local 1 --sync never --workload e --records 200 --scan-max 5 --rate 200 --clients 2 --duration 1s --json {}",
        figures.display()
    )));
    let run = &json(&figures)["runs"][0];
    assert_eq!(run["pace"]["kind"], "fixed_rate");
    assert_eq!(run["pace"]["ops_per_s"], 200.0);
    let sent = run["ops"].as_u64().unwrap() + run["errors"].as_u64().unwrap() + run["unsent"].as_u64().unwrap();
    assert!((190..=210).contains(&sent), "200 due in a second: {run}");
    assert!(run["operations"]["scan"]["ops"].as_u64().unwrap() > 0);
}

#[test]
fn bench_scale_and_bench_compute_make_their_tables_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("scale.json");
    let plots = dir.path().join("plots");
    let out = ok(&bench(&format!(
        "scale --workers 1,2 --sync never --workload c --records 200 --clients 2 --duration 1s --json {} --plot {}",
        figures.display(),
        plots.display()
    )));
    assert!(out.contains("workers") && out.contains("ops/s"), "{out}");
    let scale = json(&figures)["scale"].as_array().unwrap().clone();
    assert_eq!(scale.iter().map(|s| s["workers"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert!(scale.iter().all(|s| s["runs"][0]["ops_per_s"].as_f64().unwrap() > 0.0));
    chart(&plots.join("throughput-vs-workers.svg"));

    let figures = dir.path().join("compute.json");
    let out = ok(&bench(&format!(
        "compute --local 1 --backends cpu,simd --op blur:1 --op sha256 --runs 2 --picture-size 64x48 --json {} --plot {}",
        figures.display(),
        plots.display()
    )));
    assert!(out.contains("kernel") && out.contains("simd"), "{out}");
    let cells = json(&figures)["cells"].as_array().unwrap().clone();
    assert_eq!(cells.len(), 4);
    for c in &cells {
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["runs"], 2);
        assert!(c["stages_ms"]["kernel"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert_eq!(cells[0]["rate_unit"], "MP/s");
    assert_eq!(cells[2]["rate_unit"], "MB/s");
    chart(&plots.join("compute-stages.svg"));
}

#[test]
fn bench_repair_measures_a_removal_s_copy_beside_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("repair.json");
    let out = ok(&bench(&format!("repair --mb 2 --value-size 1000 --sync never --json {}", figures.display())));
    assert!(out.contains("re-replication") && out.contains("sequential write"), "{out}");
    let doc = json(&figures);
    assert_eq!(doc["stored_bytes"], 2_000_000);
    // The killed worker held three quarters of the keys: its chains' new
    // members took about that much.
    let copied = doc["copied_bytes"].as_u64().unwrap();
    assert!((1_000_000..3_000_000).contains(&copied), "{doc}");
    assert!(doc["repair_mb_s"].as_f64().unwrap() > 0.0 && doc["disk_sequential_write_mb_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_failover_times_writes_across_a_kill_and_the_chains_taking_writes_again() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("failover.json");
    let out = ok(&bench(&format!(
        "failover --clients 4 --keys 500 --before 1s --after 6s --sync never --json {}",
        figures.display()
    )));
    assert!(out.contains("served again"), "{out}");
    let doc = json(&figures);
    assert!(doc["before"]["writes"].as_u64().unwrap() > 0 && doc["after"]["writes"].as_u64().unwrap() > 0, "{doc}");
    // Its chains close over it once the master marks it down (2 s).
    let again = doc["served_again_seconds"].as_f64().unwrap_or_else(|| panic!("never served again: {doc}"));
    assert!(again > 0.0 && again < 6.0, "{doc}");
}

#[test]
fn bad_requests_get_their_exit_codes() {
    let code = |args: &str| bench(args).status.code();
    // Usage (2): an unknown workload or distribution, a bad mix, no clients.
    assert_eq!(code("--workload z"), Some(2));
    assert_eq!(code("--distribution pareto"), Some(2));
    assert_eq!(code("--mix get=x"), Some(2));
    assert_eq!(code("--clients 0"), Some(2));
    assert_eq!(code("compute --backends abacus"), Some(2));
    assert_eq!(code("--local 1 --sync sometimes"), Some(2));
    assert_eq!(code("--rate 0"), Some(2));
    assert_eq!(code("--rate 1e300"), Some(2));
    assert_eq!(code("repair --workers 3"), Some(2));
    assert_eq!(code("failover --workers 1"), Some(2));
    assert_eq!(code("repair --repair-mb-s -1"), Some(2));
    // Refused input (5): a pipeline that is not one.
    assert_eq!(code("--workload compute --op swirl"), Some(5));
    // Unreachable (4): nobody at the master's address.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o =
        Command::new(WIMPY).args(["--master", &format!("127.0.0.1:{port}"), "--insecure", "bench"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
}
