//! Joining with a one-time token, with the real binaries: `wimpy token
//! create` on an admin's certificate, then `wimpy-worker --join TOKEN` on a
//! node with nothing but the token. A spent or wrong token is refused; a
//! token naming another CA stops the joiner before it sends anything (the
//! token is still good afterwards).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wimpy_net::Role;
use wimpy_net::security::JoinToken;

mod common;

use common::{Node, binary, cli, credentials, free_port, signing_master, worker};

/// `wimpy-worker --join TOKEN --name NAME` on an empty data directory.
fn joiner(master: SocketAddr, data: &Path, token: &str, name: &str) -> Command {
    let mut cmd = Command::new(binary("wimpy-worker"));
    cmd.args(["--master", &master.to_string(), "--backends", "cpu", "--cores", "1", "--data"])
        .arg(data)
        .args(["--join", token, "--name", name])
        .env_remove("WIMPY_CA_FILE")
        .env_remove("WIMPY_CERT_FILE")
        .env_remove("WIMPY_KEY_FILE");
    cmd
}

/// Runs a joiner that must fail; returns what it said.
fn refused(mut cmd: Command) -> String {
    let o = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(!o.status.success(), "the joiner started");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn token(master: SocketAddr) -> String {
    let o = cli(master, &["token", "create", "--ttl", "10m"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Waits until a member holding `name`'s certificate serves.
fn wait_serving(master: SocketAddr, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = cli(master, &["status", "-w", "json"], b"");
        if o.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if status["members"].as_array().unwrap().iter().any(|m| m["certificate"] == name && m["state"] == "serving")
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{name} never served");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_worker_joins_with_a_token_once_and_a_wrong_token_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _master = signing_master(addr, &dir.path().join("master"));
    let _first = worker(addr, &dir.path().join("w0"));
    wait_serving_any(addr);

    // One command on the new node, with nothing but the token.
    let first = token(addr);
    let joined = Node(joiner(addr, &dir.path().join("pi-a"), &first, "pi-a").stderr(Stdio::null()).spawn().unwrap());
    wait_serving(addr, "pi-a");
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("pi-a/tls/pi-a.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // Spent: nobody joins with it again.
    let said = refused(joiner(addr, &dir.path().join("pi-b"), &first, "pi-b"));
    assert!(said.contains("unknown, spent or expired"), "{said}");

    // A wrong secret is refused and spends nothing.
    let second = token(addr);
    let mut wrong: JoinToken = second.parse().unwrap();
    wrong.secret[0] ^= 1;
    let said = refused(joiner(addr, &dir.path().join("pi-c"), &wrong.to_string(), "pi-c"));
    assert!(said.contains("unknown, spent or expired"), "{said}");

    // Another CA's fingerprint: the joiner stops at the TLS handshake,
    // before the token's secret (or anything else) is sent...
    let mut elsewhere: JoinToken = second.parse().unwrap();
    elsewhere.ca_fingerprint[0] ^= 1;
    let said = refused(joiner(addr, &dir.path().join("pi-d"), &elsewhere.to_string(), "pi-d"));
    assert!(said.contains("fingerprint"), "{said}");
    assert!(!dir.path().join("pi-d/tls/pi-d.pem").exists());
    // ...so the token is still good.
    let _third = Node(joiner(addr, &dir.path().join("pi-e"), &second, "pi-e").stderr(Stdio::null()).spawn().unwrap());
    wait_serving(addr, "pi-e");

    // A joined worker restarts on its certificate; the spent token is not
    // asked for again.
    drop(joined);
    let _again = Node(joiner(addr, &dir.path().join("pi-a"), &first, "pi-a").stderr(Stdio::null()).spawn().unwrap());
    wait_serving(addr, "pi-a");

    // Only an admin makes tokens.
    credentials().files(Role::Client, "just-a-client");
    let o = cli(addr, &["--as", "just-a-client", "token", "create"], b"");
    assert_eq!(o.status.code(), Some(6), "{}", String::from_utf8_lossy(&o.stderr));
}

fn wait_serving_any(master: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let o = cli(master, &["status", "-w", "json"], b"");
        if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"serving\"") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the first worker never served");
}
