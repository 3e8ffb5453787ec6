//! A chain's head cut off from the master while clients still reach it:
//! the real binaries, each node on a loopback address of its own
//! (127.88.N.1 the master, .2 to .4 the workers), three copies of each key,
//! and packet filter rules dropping what passes between the head and the
//! master. An SDK client writes and reads throughout, and a second client
//! keeps calling the cut-off worker directly by the ring it had, as one
//! that cannot reach the master either would. The cut-off worker stops
//! serving once its lease runs out, before the master hands its chains on,
//! so no two heads take writes for one range: every call of both clients
//! goes into one history, which must be linearizable, and every
//! acknowledged write reads back once the partition heals.
//!
//! Needs root and iptables (`scripts/setup` installs it); says so and
//! passes without running otherwise.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use wimpy_history::History;
use wimpy_net::{KeyPeer, Role};
use wimpy_schema::batch::{KeyAnswer, KeyRequest};

mod common;

use common::{Node, master_with, on_runtime, serving_client, worker_with};

/// Packet filter rules dropping all traffic between two addresses, both
/// ways; removed when dropped.
struct Cut {
    between: (IpAddr, IpAddr),
}

impl Cut {
    fn rules(&self) -> [(String, String); 2] {
        let (a, b) = (self.between.0.to_string(), self.between.1.to_string());
        [(a.clone(), b.clone()), (b, a)]
    }

    fn iptables(action: &str, from: &str, to: &str) -> std::io::Result<std::process::Output> {
        Command::new("iptables").args(["-w", action, "OUTPUT", "-s", from, "-d", to, "-j", "DROP"]).output()
    }

    fn new(a: IpAddr, b: IpAddr) -> Cut {
        let cut = Cut { between: (a, b) };
        for (from, to) in cut.rules() {
            let out = Cut::iptables("-A", &from, &to).unwrap();
            assert!(out.status.success(), "adding a rule: {}", String::from_utf8_lossy(&out.stderr));
        }
        cut
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for (from, to) in self.rules() {
            let _ = Cut::iptables("-D", &from, &to);
        }
    }
}

/// Why packet filter rules cannot be set here, if they cannot.
fn no_packet_filter() -> Option<String> {
    match Command::new("iptables").args(["-w", "-L", "OUTPUT", "-n"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("iptables: {e}")),
    }
}

#[test]
fn a_head_cut_off_from_the_master_stops_before_its_chains_are_handed_on() {
    if let Some(why) = no_packet_filter() {
        eprintln!("skipped: no packet filter here ({why})");
        return;
    }
    // Addresses of this run's own, so rules a killed run left behind touch
    // no other.
    let net = (std::process::id() % 250 + 1) as u8;
    let ip = |host: u8| IpAddr::V4(Ipv4Addr::new(127, 88, net, host));
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::new(ip(1), common::free_port());
    let _master = master_with(addr, &dir.path().join("master"), &["--replicas", "3"]);
    let _workers: Vec<Node> = (2..5u8)
        .map(|host| {
            let listen = SocketAddr::new(ip(host), 0).to_string();
            worker_with(addr, &dir.path().join(format!("w{host}")), &["--listen", &listen])
        })
        .collect();
    on_runtime(|| async move {
        let client = serving_client(addr, 3).await;
        let history = History::new();
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        for k in &keys {
            let v = format!("{k}-first").into_bytes();
            history.put(k.as_bytes(), &v, client.put(k.as_bytes(), &v)).await.unwrap();
        }
        let view = client.refresh_ring().await.unwrap();
        let cut_off = view.members.iter().find(|m| m.address.starts_with(&format!("{}:", ip(2)))).unwrap();
        let headed: Vec<&String> =
            keys.iter().filter(|k| view.ring.chain_of(k.as_bytes()).head() == Some(cut_off.id)).collect();
        assert!(!headed.is_empty(), "worker {} heads no key's chain", cut_off.id);
        let direct: wimpy_schema::wimpy_capnp::worker::Client =
            wimpy_net::connect(&cut_off.address, &common::credentials().client_security(), &[Role::Worker])
                .await
                .unwrap();

        let running = Cell::new(true);
        let cut_at = Cell::new(None::<Instant>);
        // Calls the cut-off worker answered (not refused) once its lease
        // must have run out.
        let answered_late = Cell::new(0u32);
        let writer = async {
            let mut i = 0u32;
            while running.get() {
                let k = &keys[i as usize % keys.len()];
                let v = format!("{k}-sdk-{i}").into_bytes();
                let _ = history.put(k.as_bytes(), &v, client.put(k.as_bytes(), &v)).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let reader = async {
            let mut i = 0u32;
            while running.get() {
                let k = &keys[(i as usize * 7) % keys.len()];
                let _ = history.get(k.as_bytes(), client.get(k.as_bytes())).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        // A client that still routes by the ring from before the cut.
        let stale = async {
            let mut i = 0u32;
            while running.get() {
                let k = headed[i as usize % headed.len()].as_bytes();
                let late = cut_at.get().is_some_and(|t: Instant| t.elapsed() > Duration::from_millis(1600));
                let epoch = view.ring.epoch();
                let answered = if i.is_multiple_of(2) {
                    let v = format!("stale-{i}").into_bytes();
                    let request = KeyRequest::Put(k.to_vec(), v.clone());
                    history.put(k, &v, async { stored(direct.send_one(epoch, &request).await) }).await.is_ok()
                } else {
                    let request = KeyRequest::Get(k.to_vec());
                    history.get(k, async { read(direct.send_one(epoch, &request).await) }).await.is_ok()
                };
                if answered && late {
                    answered_late.set(answered_late.get() + 1);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let partition = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cut = Cut::new(ip(1), ip(2));
            cut_at.set(Some(Instant::now()));
            // Past the master marking it down (2 s) and the chains moving on.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(cut);
            running.set(false);
        };
        futures::join!(writer, reader, stale, partition);
        assert_eq!(answered_late.get(), 0, "the cut-off worker answered after its lease ran out");

        // Healed: the worker comes back (caught up), and every key reads
        // back its last acknowledged value.
        common::wait_serving(&client, 3).await;
        for k in &keys {
            let deadline = Instant::now() + Duration::from_secs(10);
            while history.get(k.as_bytes(), client.get(k.as_bytes())).await.is_err() {
                assert!(Instant::now() < deadline, "{k} unreadable after the partition healed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        match history.check() {
            Ok(checked) => eprintln!("history linearizable: {checked:?}"),
            Err(violation) => panic!("{violation}"),
        }
    });
}

/// A direct put's answer as the history takes it.
fn stored(answer: capnp::Result<KeyAnswer>) -> Result<(), String> {
    match answer {
        Ok(KeyAnswer::Stored) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A direct get's answer as the history takes it.
fn read(answer: capnp::Result<KeyAnswer>) -> Result<Option<Vec<u8>>, String> {
    match answer {
        Ok(KeyAnswer::Value(v)) => Ok(Some(v)),
        Ok(KeyAnswer::NotFound) => Ok(None),
        other => Err(format!("{other:?}")),
    }
}
