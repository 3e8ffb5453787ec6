//! The master's RPC service on 127.0.0.1:0, driven through a real Cap'n Proto
//! connection.

use std::net::SocketAddr;

use std::sync::OnceLock;

use wimpy_master::{MasterConfig, run};
use wimpy_net::security::ClusterCa;
use wimpy_net::{Role, Security};
use wimpy_schema::wimpy_capnp::{heartbeat_answer, leave_result, master, member};
use wimpy_schema::{Failure, Ring};

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

fn start(config: MasterConfig) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            run(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    Running { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}

/// The cluster CA of this test process.
fn ca() -> &'static ClusterCa {
    static CA: OnceLock<ClusterCa> = OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate("test").unwrap())
}

fn master_tls() -> Security {
    ca().security(Role::Master, "master").unwrap()
}

/// Connects as a worker would (these tests register and heartbeat).
async fn connect(addr: SocketAddr) -> master::Client {
    connect_as(addr, Role::Worker).await
}

async fn connect_as(addr: SocketAddr, role: Role) -> master::Client {
    let name = role.as_str();
    wimpy_net::connect(&addr.to_string(), &ca().security(role, name).unwrap(), &[Role::Master]).await.unwrap()
}

fn client_side<T, F: std::future::Future<Output = T>>(body: impl FnOnce() -> F) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, body())
}

async fn register(m: &master::Client, id: u64, address: &str) -> (u64, u32) {
    let mut req = m.register_request();
    req.get().set_id(id);
    req.get().set_address(address);
    let resp = req.send().promise.await.unwrap();
    let r = resp.get().unwrap();
    (r.get_id(), r.get_heartbeat_millis())
}

/// The ring as the master publishes it: (epoch, vnodes, [(id, address, state)]).
async fn ring(m: &master::Client) -> (u64, u32, Vec<(u64, String, member::State)>) {
    let resp = m.ring_request().send().promise.await.unwrap();
    let r = resp.get().unwrap().get_ring().unwrap();
    let members = r
        .get_members()
        .unwrap()
        .iter()
        .map(|x| (x.get_id(), x.get_address().unwrap().to_string().unwrap(), x.get_state().unwrap()))
        .collect();
    (r.get_epoch(), r.get_vnodes(), members)
}

/// The master's answer to a heartbeat: its epoch, or `None` for "register again".
async fn heartbeat(m: &master::Client, id: u64, live_keys: u64) -> Option<u64> {
    let mut req = m.heartbeat_request();
    req.get().set_id(id);
    req.get().init_stats().set_live_keys(live_keys);
    let answer = req.send().promise.await.unwrap();
    match answer.get().unwrap().which().unwrap() {
        heartbeat_answer::Epoch(epoch) => Some(epoch),
        heartbeat_answer::UnknownMember(()) => None,
        heartbeat_answer::Refused(f) => panic!("heartbeat refused: {:?}", Failure::read(f.unwrap())),
    }
}

/// How the master answers `leave` of worker `id`.
async fn leave(m: &master::Client, id: u64) -> String {
    let mut req = m.leave_request();
    req.get().set_id(id);
    let resp = req.send().promise.await.unwrap();
    match resp.get().unwrap().get_result().unwrap().which().unwrap() {
        leave_result::Left(()) => "left".into(),
        leave_result::NotMember(()) => "not a member".into(),
        leave_result::LastOnRing(()) => "last on the ring".into(),
        leave_result::Failure(f) => format!("{:?}", Failure::read(f.unwrap()).unwrap()),
    }
}

#[test]
fn workers_register_heartbeat_and_leave() {
    let master = start(MasterConfig { vnodes: 32, ..MasterConfig::new(master_tls()) });
    client_side(|| async move {
        let m = connect(master.addr).await;
        assert_eq!(ring(&m).await, (0, 32, vec![]));
        assert_eq!(register(&m, 0, "127.0.0.1:7001").await, (1, 500));
        let (epoch, vnodes, members) = ring(&m).await;
        assert_eq!((epoch, &members), (1, &vec![(1, "127.0.0.1:7001".into(), member::State::Serving)]));
        // A client rebuilds the same ring from ids alone.
        let rebuilt = Ring::new(epoch, vnodes, members.iter().map(|m| m.0));
        assert_eq!(rebuilt.members(), vec![1]);

        // A second worker joins: it is not on the ring until its ranges have
        // moved to it (nothing answers at this address, so it stays joining).
        assert_eq!(register(&m, 0, "127.0.0.1:9").await.0, 2);
        assert_eq!(ring(&m).await.0, 1);
        let status = m.status_request().send().promise.await.unwrap();
        let joining: Vec<u64> = status.get().unwrap().get_joining().unwrap().iter().map(|x| x.get_id()).collect();
        assert_eq!(joining, vec![2]);

        assert_eq!(heartbeat(&m, 1, 42).await, Some(1));
        assert_eq!(heartbeat(&m, 99, 0).await, None, "unknown ids are told to register");

        // A worker restarted on its data directory comes back with its id.
        assert_eq!(register(&m, 1, "127.0.0.1:7001").await.0, 1);
        assert_eq!(ring(&m).await.0, 1);

        // Leaving is an operator's call: a worker may not ask it.
        assert!(leave(&m, 1).await.contains("needs the admin role"));
        let admin = connect_as(master.addr, Role::Admin).await;
        // The last worker on the ring cannot leave: nobody could take its keys.
        assert_eq!(leave(&admin, 1).await, "last on the ring");
        assert_eq!(leave(&admin, 99).await, "not a member");
        // A joiner that never got data can leave at once; its id is retired.
        assert_eq!(leave(&admin, 2).await, "left");
        assert_eq!(leave(&admin, 2).await, "not a member");
        let mut again = m.register_request();
        again.get().set_id(2);
        again.get().set_address("127.0.0.1:9");
        let err = again.send().promise.await.err().expect("a departed id is refused");
        assert!(err.to_string().contains("left the cluster"), "{err}");
    });
}

#[test]
fn a_silent_worker_is_marked_down_and_returns_with_its_next_heartbeat() {
    let master = start(MasterConfig {
        vnodes: 8,
        replicas: 1,
        heartbeat: std::time::Duration::from_millis(20),
        down_after: std::time::Duration::from_millis(100),
        data: None,
        cache: wimpy_master::CacheConfig::default(),
        security: master_tls(),
        signer: None,
        repair_bytes_per_second: 0,
        scrub: wimpy_master::ScrubConfig::default(),
        remove_down_after: std::time::Duration::ZERO,
    });
    client_side(|| async move {
        let m = connect(master.addr).await;
        register(&m, 0, "127.0.0.1:7001").await;
        // The failure detector runs on the master's real clock: wait until it
        // has had the chance to see the silence, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, _, members) = ring(&m).await;
            if members[0].2 == member::State::Down {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "worker never marked down");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let epoch = heartbeat(&m, 1, 0).await.expect("a known member");
        assert_eq!(ring(&m).await, (epoch, 8, vec![(1, "127.0.0.1:7001".into(), member::State::Serving)]));
    });
}

#[test]
fn a_restarted_master_continues_the_epochs_it_published() {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterConfig { vnodes: 8, data: Some(dir.path().to_path_buf()), ..MasterConfig::new(master_tls()) };
    {
        let master = start(config.clone());
        client_side(|| async move {
            let m = connect(master.addr).await;
            register(&m, 0, "127.0.0.1:7001").await;
            register(&m, 1, "127.0.0.1:7002").await; // moved: a new epoch
            assert_eq!(ring(&m).await.0, 2);
        });
    }
    let master = start(config);
    client_side(|| async move {
        let m = connect(master.addr).await;
        assert_eq!(ring(&m).await.0, 2, "a restarted master starts from the last epoch");
        // Workers come back with their ids; the epoch moves past anything seen.
        register(&m, 1, "127.0.0.1:7001").await;
        assert_eq!(ring(&m).await.0, 3);
    });
}

#[test]
fn a_restarted_master_resumes_its_members_and_ring() {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterConfig { vnodes: 8, data: Some(dir.path().to_path_buf()), ..MasterConfig::new(master_tls()) };
    let before = {
        let master = start(config.clone());
        client_side(|| async move {
            let m = connect(master.addr).await;
            register(&m, 0, "127.0.0.1:7001").await;
            // A newcomer whose join cannot move data (nobody answers there).
            register(&m, 0, "127.0.0.1:9").await;
            ring(&m).await
        })
    };
    let master = start(config);
    client_side(|| async move {
        let m = connect(master.addr).await;
        assert_eq!(ring(&m).await, before, "the ring of the last run, at its epoch");
        let status = m.status_request().send().promise.await.unwrap();
        let joining: Vec<u64> = status.get().unwrap().get_joining().unwrap().iter().map(|x| x.get_id()).collect();
        assert_eq!(joining, vec![2], "the joiner is still joining");
        // The worker comes back to its place: same id, no new epoch.
        assert_eq!(register(&m, 1, "127.0.0.1:7001").await.0, 1);
        assert_eq!(heartbeat(&m, 1, 0).await, Some(before.0));
        assert_eq!(ring(&m).await, before);
        // New workers get new ids.
        assert_eq!(register(&m, 0, "127.0.0.1:7003").await.0, 3);
    });
}
