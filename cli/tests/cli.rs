//! End to end: the real binaries. `wimpy local` starts a master and three
//! worker processes; the `wimpy` CLI drives them; Ctrl-C stops them all.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const WIMPY: &str = env!("CARGO_BIN_EXE_wimpy");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Local {
    child: Child,
    at: At,
}

/// Where a cluster is, and the directory `wimpy local` ran in: the
/// commands run there as the README has them, finding the credentials it
/// made (wimpy-data/tls) with no flag.
#[derive(Clone)]
struct At {
    master: String,
    dir: PathBuf,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wimpy(at: &At, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(WIMPY)
        .current_dir(&at.dir)
        .env_remove("WIMPY_CREDENTIALS")
        .env_remove("WIMPY_CA_FILE")
        .env_remove("WIMPY_CERT_FILE")
        .env_remove("WIMPY_KEY_FILE")
        .arg("--master")
        .arg(&at.master)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `wimpy local` with its defaults (data in wimpy-data), run in `dir`.
fn start_local(dir: &std::path::Path) -> Local {
    start_local_with(dir, &[])
}

/// `wimpy local` with `extra` flags, run in `dir`.
fn start_local_with(dir: &std::path::Path, extra: &[&str]) -> Local {
    let siblings: Vec<PathBuf> =
        ["wimpy-master", "wimpy-worker"].iter().map(|n| PathBuf::from(WIMPY).with_file_name(n)).collect();
    for s in &siblings {
        assert!(s.exists(), "{} is missing: run the tests with `cargo test --workspace`", s.display());
    }
    let master = format!("127.0.0.1:{}", free_port());
    let child = Command::new(WIMPY)
        .current_dir(dir)
        .args(["--master", &master, "local", "--workers", "3"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let local = Local { child, at: At { master, dir: dir.to_owned() } };
    // Bounded wait until all three workers serve.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = wimpy(&local.at, &["-w", "json", "status"], None);
        if o.status.success() && text(&o).matches("\"serving\"").count() == 3 {
            return local;
        }
        assert!(Instant::now() < deadline, "cluster did not come up: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_cli_drives_a_local_cluster_of_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut local = start_local(dir.path());
    let m = local.at.clone();

    let o = wimpy(&m, &["put", "greeting", "-"], Some(b"hello wimpy"));
    assert!(o.status.success(), "{o:?}");
    let o = wimpy(&m, &["get", "greeting"], None);
    assert_eq!((o.status.code(), text(&o).as_str()), (Some(0), "hello wimpy"));

    let file = dir.path().join("value.bin");
    let value: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&file, &value).unwrap();
    assert!(wimpy(&m, &["put", "blob", file.to_str().unwrap()], None).status.success());
    let back = dir.path().join("back.bin");
    assert!(wimpy(&m, &["get", "blob", "-o", back.to_str().unwrap()], None).status.success());
    assert_eq!(std::fs::read(&back).unwrap(), value);

    let o = wimpy(&m, &["--via-master", "get", "greeting"], None);
    assert_eq!(text(&o), "hello wimpy", "proxy mode reads the same value");
    let o = wimpy(&m, &["-w", "json", "get", "greeting"], None);
    assert!(text(&o).contains("\"value\":\"hello wimpy\""), "{}", text(&o));
    // `-` is standard output: the value itself, nothing beside it.
    let o = wimpy(&m, &["get", "blob", "-o", "-"], None);
    assert_eq!((o.status.code(), &o.stdout), (Some(0), &value));
    let o = wimpy(&m, &["get", "blob", "-w", "json", "-o", "-"], None);
    assert_eq!(o.stdout, value, "the value, not a report, goes to standard output");

    // Global flags go before or after the command, with the same result.
    let before = wimpy(&m, &["-w", "json", "status"], None);
    let after = wimpy(&m, &["status", "-w", "json"], None);
    assert!(before.status.success() && after.status.success(), "{before:?} {after:?}");
    let status: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3), "{status}");
    // The same members either way (their figures may move between the two
    // calls as heartbeats come in).
    let shape = |o: &Output| -> Vec<(Value, Value, Value)> {
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].clone(), m["address"].clone(), m["state"].clone()))
            .collect()
    };
    assert_eq!(shape(&before), shape(&after));
    let o = wimpy(&m, &["get", "greeting", "--via-master"], None);
    assert_eq!(text(&o), "hello wimpy", "--via-master after the command");

    // A scrub pass on demand finds the three copies alike; status shows it.
    assert_eq!(status["scrub"]["started_unix"], Value::Null, "{status}");
    let o = wimpy(&m, &["-w", "json", "scrub"], None);
    assert!(o.status.success(), "{o:?}");
    let scrub: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&scrub["scrub"]["differing"], &scrub["scrub"]["failure"]),
        (&Value::from(0), &Value::from("")),
        "{scrub}"
    );
    assert!(scrub["scrub"]["ranges"].as_u64().unwrap() > 0, "{scrub}");
    let o = wimpy(&m, &["status"], None);
    assert!(text(&o).contains("scrub: last pass"), "{}", text(&o));

    // Exit codes: 3 not found, 5 refused input, 4 unreachable, 2 usage.
    assert_eq!(wimpy(&m, &["get", "missing"], None).status.code(), Some(3));
    assert_eq!(wimpy(&m, &["put", "", "-"], Some(b"x")).status.code(), Some(5));
    let nobody = At { master: format!("127.0.0.1:{}", free_port()), ..m.clone() };
    assert_eq!(wimpy(&nobody, &["get", "greeting"], None).status.code(), Some(4));
    assert_eq!(wimpy(&m, &["frobnicate"], None).status.code(), Some(2));

    // The cluster speaks TLS only: a client without credentials, or with
    // none where the tool looks, gets nothing out of it.
    let o = wimpy(&m, &["--insecure", "get", "greeting"], None);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(text(&o).is_empty());
    let nowhere = dir.path().join("nowhere");
    std::fs::create_dir_all(&nowhere).unwrap();
    let elsewhere = At { dir: nowhere, ..m.clone() };
    let o = wimpy(&elsewhere, &["get", "greeting"], None);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no credentials"), "{o:?}");
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "master.key", "worker-0.key", "operator.key"] {
        let mode = std::fs::metadata(m.dir.join("wimpy-data/tls").join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let o = wimpy(&m, &["del", "greeting"], None);
    assert!(o.status.success());
    assert_eq!(wimpy(&m, &["del", "greeting"], None).status.code(), Some(3));

    let o = wimpy(&m, &["status"], None);
    assert!(text(&o).contains("3 member(s)"), "{}", text(&o));

    // The SDK example (cargo test builds examples) runs against the same cluster.
    let example = PathBuf::from(WIMPY).with_file_name("examples").join("quickstart");
    assert!(example.exists(), "{} was not built", example.display());
    let o = Command::new(&example).current_dir(&m.dir).arg(&m.master).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text(&o).matches("-> worker").count(), 5, "{}", text(&o));
    let o = wimpy(&m, &["ring"], None);
    assert_eq!(text(&o).matches("% of keys").count(), 3, "{}", text(&o));

    // Compute on the owner: the result equals the golden output (made by
    // the scalar reference) byte for byte, and hashes match the vectors.
    let testdata = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/compute");
    let scene = testdata.join("scene-a.png");
    assert!(wimpy(&m, &["put", "scene", scene.to_str().unwrap()], None).status.success());
    let gray = dir.path().join("gray.png");
    let o = wimpy(&m, &["compute", "scene", "--op", "grayscale", "-o", gray.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text(&o).contains("160x120"), "{}", text(&o));
    assert_eq!(std::fs::read(&gray).unwrap(), std::fs::read(testdata.join("golden/scene-a-grayscale.png")).unwrap());
    let o = wimpy(&m, &["compute", "scene", "--op", "blur:2", "--store-as", "scene-blurred"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = wimpy(&m, &["get", "scene-blurred", "-o", gray.to_str().unwrap()], None);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&gray).unwrap(), std::fs::read(testdata.join("golden/scene-a-blur.png")).unwrap());
    let vectors = std::fs::read_to_string(testdata.join("hashes.txt")).unwrap();
    for (algo, rounds) in [("sha256", "1"), ("blake3", "1000")] {
        let line = vectors.lines().find(|l| l.starts_with(&format!("{algo} {rounds} scene-a.png "))).unwrap();
        let expected = line.rsplit(' ').next().unwrap();
        let o = wimpy(&m, &["hash", "scene", "--algo", algo, "--rounds", rounds], None);
        assert_eq!(text(&o).split_whitespace().next(), Some(expected), "{algo} x{rounds}");
    }
    let o = wimpy(
        &m,
        &["-w", "json", "compute", "scene", "--op", "sobel", "--op", "encode:jpeg:80", "--store-as", "edges"],
        None,
    );
    assert!(text(&o).contains("\"kernel\""), "{}", text(&o));
    // A result to standard output is the PNG itself, equal to the golden one.
    let o = wimpy(&m, &["compute", "scene", "--op", "invert", "-o", "-"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, std::fs::read(testdata.join("golden/scene-a-invert.png")).unwrap());
    // Bad jobs and bad images are refused (exit 5); the worker keeps serving.
    assert_eq!(wimpy(&m, &["compute", "scene", "--op", "swirl"], None).status.code(), Some(5));
    assert_eq!(wimpy(&m, &["compute", "scene", "--op", "crop:150:0:20:20"], None).status.code(), Some(5));
    assert_eq!(wimpy(&m, &["compute", "blob", "--op", "invert"], None).status.code(), Some(5));
    assert_eq!(wimpy(&m, &["compute", "nothing", "--op", "invert"], None).status.code(), Some(3));
    let o = wimpy(&m, &["backends"], None);
    assert_eq!(text(&o).matches("simd").count(), 3, "{}", text(&o));

    // Ctrl-C: everything stops and `wimpy local` exits cleanly.
    interrupt(&mut local);
    assert_eq!(wimpy(&m, &["get", "blob"], None).status.code(), Some(4), "the cluster should be gone");

    // Restarted on the same data, the workers come back with their keys.
    let local = start_local(dir.path());
    let o = wimpy(&local.at, &["get", "blob", "-o", back.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), value);
}

/// Ctrl-C to `wimpy local`: it must stop its nodes and exit cleanly.
fn interrupt(local: &mut Local) {
    // SAFETY: kill(2) sends SIGINT to the child we spawned and still own.
    unsafe {
        libc::kill(local.child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = local.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "wimpy local did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_emulated_fleet_puts_each_worker_on_its_own_address_with_its_cpu_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut local = start_local_with(dir.path(), &["--emulate", "0.25,1ms"]);
    let m = local.at.clone();
    let o = wimpy(&m, &["-w", "json", "status"], None);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut addresses: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["address"].as_str().unwrap().rsplit_once(':').unwrap().0.to_owned())
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], "{status}");
    assert!(wimpy(&m, &["put", "greeting", "-"], Some(b"hello fleet")).status.success());
    assert_eq!(text(&wimpy(&m, &["get", "greeting"], None)), "hello fleet");
    // Each node in a CPU group of its own, where the machine lets us make
    // them; the groups go when the cluster stops.
    let group = std::path::PathBuf::from(format!("/sys/fs/cgroup/cpu/wimpy-local-{}", local.child.id()));
    let capped = group.exists();
    if capped {
        for node in ["master", "worker-0", "worker-1", "worker-2"] {
            let read = |f: &str| std::fs::read_to_string(group.join(node).join(f)).unwrap().trim().to_owned();
            assert_eq!(
                (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")),
                ("2500".into(), "10000".into()),
                "{node}"
            );
            assert!(!read("cgroup.procs").is_empty(), "{node} is in its group");
        }
    } else {
        eprintln!("no CPU groups at {} (cgroup v2, or not root): the caps were not checked", group.display());
    }
    interrupt(&mut local);
    assert!(!group.exists(), "the cluster's CPU groups are removed when it stops");
}

#[test]
fn completions_cover_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(WIMPY).args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", String::from_utf8_lossy(&o.stderr));
        let script = text(&o);
        for command in ["put", "get", "compute", "bench", "completions"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
    }
    let o = Command::new(WIMPY).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
}
