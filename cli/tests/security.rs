//! An attacker on the cluster's network, with the real binaries (a master,
//! two workers): without a certificate, with one from another CA, with an
//! expired one, or with one of the wrong role, no membership call gets
//! through (setRing, fence, sendRange, receiveRange on the workers;
//! register, heartbeat and leave on the master; a worker's certificate
//! speaks for its own member only), and every stored key reads back
//! afterwards with the ring as it was.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use wimpy_client::MemberState;
use wimpy_net::security::{CertRequest, ClusterCa};
use wimpy_net::{Role, Security};
use wimpy_schema::Failure;
use wimpy_schema::wimpy_capnp::{heartbeat_answer, leave_result, master, worker};

mod common;

use common::{Node, cli, credentials, free_port, master, serving_client, worker, worker_as};

/// Whom an attack comes from.
struct Attacker {
    who: &'static str,
    security: Security,
    /// Whether TLS lets it in at all (its certificate is from the CA and valid).
    admitted: bool,
    role: Option<Role>,
}

fn attackers() -> Vec<Attacker> {
    let ca = credentials().ca();
    let other = ClusterCa::generate("elsewhere").unwrap();
    let mut expired = CertRequest::new(Role::Master, "old-master");
    expired.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
    expired.not_after = SystemTime::now() - Duration::from_secs(86_400);
    let tls = |role, name| ca.security(role, name).unwrap();
    vec![
        Attacker { who: "no certificate", security: Security::Insecure, admitted: false, role: None },
        Attacker {
            who: "another CA's master certificate",
            security: other.security(Role::Master, "master").unwrap(),
            admitted: false,
            role: None,
        },
        Attacker {
            who: "an expired master certificate",
            security: Security::tls(&ca.credentials_for(&expired).unwrap()).unwrap(),
            admitted: false,
            role: None,
        },
        Attacker {
            who: "a client certificate",
            security: tls(Role::Client, "mallory"),
            admitted: true,
            role: Some(Role::Client),
        },
        Attacker {
            who: "an admin certificate",
            security: tls(Role::Admin, "operator-2"),
            admitted: true,
            role: Some(Role::Admin),
        },
        Attacker {
            who: "another worker's certificate",
            security: tls(Role::Worker, "worker-x"),
            admitted: true,
            role: Some(Role::Worker),
        },
        // Signed by the CA as a master, but not the master these workers
        // registered with (a stale or stolen one).
        Attacker {
            who: "a second master certificate",
            security: tls(Role::Master, "rogue-master"),
            admitted: true,
            role: Some(Role::Master),
        },
    ]
}

/// A sink an attacker hands a worker to dump a range into.
struct Swallow;

impl wimpy_schema::wimpy_capnp::record_sink::Server for Swallow {}

/// What one attacker got out of a worker's membership calls: every way in
/// is tried, and each must be refused.
async fn attack_worker(a: &Attacker, address: &str) -> Result<(), String> {
    // TLS may turn it away at connect, or (TLS 1.3 checks the client's
    // certificate after the client thinks it is done) at the first call.
    let Ok(w) = wimpy_net::connect::<worker::Client>(address, &a.security, &[Role::Worker]).await else {
        return Ok(());
    };
    // The version 2 slots of the membership calls are gone.
    let mut old = w.obsolete_set_ring_request();
    old.get().init_ring().set_epoch(u64::MAX);
    if let Ok(answer) = old.send().promise.await {
        let _ = answer;
        return Err(format!("{}: the obsolete setRing slot answered", a.who));
    }
    let mut old = w.obsolete_fence_request();
    old.get().init_ranges(1);
    if old.send().promise.await.is_ok() {
        return Err(format!("{}: the obsolete fence slot answered", a.who));
    }
    let mut old = w.obsolete_receive_range_request();
    old.get().set_replace(true);
    if old.send().promise.await.is_ok() {
        return Err(format!("{}: the obsolete receiveRange slot answered", a.who));
    }
    // sendRange would stream a whole range to a sink of the caller's.
    let sink: wimpy_schema::wimpy_capnp::record_sink::Client = capnp_rpc::new_client(Swallow);
    let mut old = w.obsolete_send_range_request();
    old.get().set_sink(sink);
    if old.send().promise.await.is_ok() {
        return Err(format!("{}: the obsolete sendRange slot answered", a.who));
    }
    let answer = match w.admin_request().send().promise.await {
        Ok(answer) => answer,
        Err(_) if !a.admitted => return Ok(()),
        Err(e) => return Err(format!("{}: admin failed without a typed refusal: {e}", a.who)),
    };
    let answer = answer.get().map_err(|e| e.to_string())?;
    if !answer.has_refused() {
        return Err(format!("{}: was handed the membership calls", a.who));
    }
    match Failure::read(answer.get_refused().unwrap()).unwrap() {
        Failure::Forbidden { needs: Role::Master, message } => {
            assert!(message.contains("master"), "{message}");
            Ok(())
        }
        f => Err(format!("{}: refused, but not as forbidden: {f:?}", a.who)),
    }
}

/// What one attacker got out of the master's lifecycle calls.
async fn attack_master(a: &Attacker, addr: SocketAddr, worker_id: u64) -> Result<(), String> {
    let Ok(m) = wimpy_net::connect::<master::Client>(&addr.to_string(), &a.security, &[Role::Master]).await else {
        return Ok(());
    };
    let refused_as = |f: Failure, needs: Role, call: &str| match f {
        Failure::Forbidden { needs: n, .. } if n == needs => Ok(()),
        f => Err(format!("{}: {call} refused, but not for want of {needs}: {f:?}", a.who)),
    };
    // register and heartbeat: the worker role only.
    let mut req = m.register_request();
    req.get().set_id(0);
    req.get().set_address("127.0.0.1:1");
    match req.send().promise.await {
        Err(_) if !a.admitted => {}
        Err(e) => return Err(format!("{}: register failed untyped: {e}", a.who)),
        Ok(answer) => {
            let r = answer.get().unwrap();
            match a.role {
                Some(Role::Worker) => {
                    // A genuine worker certificate may register (that is
                    // what it is for); take the newcomer out again below.
                    assert!(!r.has_refused());
                }
                _ if r.has_refused() => {
                    refused_as(Failure::read(r.get_refused().unwrap()).unwrap(), Role::Worker, "register")?
                }
                _ => return Err(format!("{}: registered a worker", a.who)),
            }
        }
    }
    let mut req = m.heartbeat_request();
    req.get().set_id(worker_id);
    req.get().set_store_failure("forged: the store is gone");
    match req.send().promise.await {
        Err(_) if !a.admitted => {}
        Err(e) => return Err(format!("{}: heartbeat failed untyped: {e}", a.who)),
        Ok(answer) => match answer.get().unwrap().which().unwrap() {
            // Even a genuine worker certificate may not speak for another
            // worker: the member is held by the certificate it registered with.
            heartbeat_answer::Refused(f) => refused_as(Failure::read(f.unwrap()).unwrap(), Role::Worker, "heartbeat")?,
            _ => return Err(format!("{}: its heartbeat for worker {worker_id} was taken", a.who)),
        },
    }
    // leave: the admin role only.
    if a.role != Some(Role::Admin) {
        let mut req = m.leave_request();
        req.get().set_id(worker_id);
        match req.send().promise.await {
            Err(_) if !a.admitted => {}
            Err(e) => return Err(format!("{}: leave failed untyped: {e}", a.who)),
            Ok(answer) => match answer.get().unwrap().get_result().unwrap().which().unwrap() {
                leave_result::Failure(f) => refused_as(Failure::read(f.unwrap()).unwrap(), Role::Admin, "leave")?,
                _ => return Err(format!("{}: made worker {worker_id} leave", a.who)),
            },
        }
    }
    Ok(())
}

#[test]
fn no_membership_call_gets_through_without_the_right_certificate_and_every_key_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _master = master(addr, &dir.path().join("master"));
    let _workers: Vec<Node> = (0..2).map(|i| worker(addr, &dir.path().join(format!("w{i}")))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let client = serving_client(addr, 2).await;
        for i in 0..100u32 {
            client.put(format!("k{i}").as_bytes(), &i.to_le_bytes()).await.unwrap();
        }
        let before = client.refresh_ring().await.unwrap();
        let (ids, addresses): (Vec<u64>, Vec<String>) =
            before.members.iter().map(|m| (m.id, m.address.clone())).unzip();

        let mut broken = Vec::new();
        for a in attackers() {
            for address in &addresses {
                if let Err(e) = attack_worker(&a, address).await {
                    broken.push(e);
                }
            }
            if let Err(e) = attack_master(&a, addr, ids[0]).await {
                broken.push(e);
            }
        }
        assert!(broken.is_empty(), "calls that got through:\n{}", broken.join("\n"));

        // A worker certificate may register a worker: one that never
        // serves joins, and the operator (an admin) has it leave again,
        // so that the ring ends as it began.
        let ring = client.refresh_ring().await.unwrap();
        for m in ring.members.iter().filter(|m| !ids.contains(&m.id)) {
            client.leave(m.id).await.ok();
        }
        let joining = client.status().await.unwrap().joining;
        for m in joining {
            client.leave(m.id).await.ok();
        }

        // Nothing moved, nothing lost: the same serving members, every key.
        let after = client.refresh_ring().await.unwrap();
        let serving: Vec<u64> =
            after.members.iter().filter(|m| m.state == MemberState::Serving).map(|m| m.id).collect();
        assert_eq!(serving, ids, "{after:?}");
        for i in 0..100u32 {
            let got = client.get(format!("k{i}").as_bytes()).await.unwrap();
            assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]), "key k{i}");
        }
    });
}

#[test]
fn status_names_each_workers_certificate_and_flags_one_about_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _master = master(addr, &dir.path().join("master"));
    let _long = worker(addr, &dir.path().join("w0"));
    let mut short = CertRequest::new(Role::Worker, "short-lived");
    short.not_after = SystemTime::now() + Duration::from_secs(3 * 86_400);
    credentials().issue(&short);
    let _short = worker_as(addr, &dir.path().join("w1"), "short-lived", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let members = loop {
        let o = cli(addr, &["status", "-w", "json"], b"");
        if o.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let mut members: Vec<serde_json::Value> = status["members"].as_array().unwrap().clone();
            members.extend(status["joining"].as_array().unwrap().iter().cloned());
            if members.len() == 2 {
                break members;
            }
        }
        assert!(Instant::now() < deadline, "two workers never registered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let by_name = |name: &str| members.iter().find(|m| m["certificate"] == name).cloned();
    let short = by_name("short-lived").unwrap_or_else(|| panic!("{members:?}"));
    assert_eq!(short["certificate_expiring"], true, "{short}");
    let long = members.iter().find(|m| m["certificate"] != "short-lived").unwrap();
    assert!(long["certificate"].as_str().unwrap().starts_with("w0"), "{long}");
    assert_eq!(long["certificate_expiring"], false, "{long}");
    let left = long["certificate_expires"].as_u64().unwrap()
        - SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(left > 300 * 86_400, "{long}");

    let text = String::from_utf8(cli(addr, &["status"], b"").stdout).unwrap();
    assert!(text.contains("certificate short-lived, expires in 2 day(s)  EXPIRES SOON"), "{text}");
}
