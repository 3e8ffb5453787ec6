//! A client in another language: the Python client of the schema
//! (clients/python/kv.py, pycapnp) against the real binaries over mTLS. It
//! writes with a client certificate, and what it writes reads back through
//! the Rust SDK and the other way round; without a certificate from the CA
//! it gets nothing.
//!
//! `scripts/setup` installs pycapnp in `.venv-python`; elsewhere point
//! WIMPY_PYTHON at a Python that has it. Without one the test says it
//! skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use wimpy_net::Role;

mod common;

use common::{Node, credentials, free_port, master, serving_client, worker};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python that can import pycapnp, if there is one.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("WIMPY_PYTHON").map_or_else(|| repo().join(".venv-python/bin/python"), PathBuf::from);
    let works = Command::new(&python).args(["-c", "import capnp"]).output().is_ok_and(|o| o.status.success());
    works.then_some(python)
}

fn kv(python: &PathBuf, master: SocketAddr, name: &str, args: &[&str]) -> Output {
    Command::new(python)
        .arg(repo().join("clients/python/kv.py"))
        .args(["--master", &master.to_string(), "--as", name, "--credentials"])
        .arg(&credentials().dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_python_client_with_a_client_certificate_reads_and_writes_what_rust_does() {
    let Some(python) = python() else {
        eprintln!("skipped: no Python with pycapnp (run scripts/setup, or set WIMPY_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _master = master(addr, &dir.path().join("master"));
    let _workers: Vec<Node> = (0..2).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    credentials().files(Role::Client, "py-client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let client = serving_client(addr, 2).await;

        for i in 0..5 {
            let o = kv(&python, addr, "py-client", &["put", &format!("py-{i}"), &format!("from python {i}")]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        for i in 0..5 {
            let got = client.get(format!("py-{i}").as_bytes()).await.unwrap();
            assert_eq!(got.as_deref(), Some(format!("from python {i}").as_bytes()));
        }
        client.put(b"from-rust", b"written by the SDK").await.unwrap();
        let o = kv(&python, addr, "py-client", &["get", "from-rust"]);
        assert_eq!((o.status.code(), o.stdout.as_slice()), (Some(0), &b"written by the SDK"[..]));
        let o = kv(&python, addr, "py-client", &["get", "nobody-wrote-this"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));

        // Credentials the cluster's CA did not sign get no answer at all.
        let stranger = tempfile::tempdir().unwrap();
        let other = wimpy_net::security::ClusterCa::init(stranger.path(), "elsewhere").unwrap();
        other
            .issue(&wimpy_net::security::CertRequest::new(Role::Client, "py-client"))
            .unwrap()
            .write(stranger.path())
            .unwrap();
        let o = Command::new(&python)
            .arg(repo().join("clients/python/kv.py"))
            .args(["--master", &addr.to_string(), "--as", "py-client", "--credentials"])
            .arg(stranger.path())
            .args(["get", "py-0"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    });
}
