//! A whole cluster in one process: a master and workers on 127.0.0.1:0,
//! driven through the client SDK.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::OnceLock;
use wimpy_client::{Client, ClientError, ClientOptions};
use wimpy_history::History;
use wimpy_master::MasterConfig;

use wimpy_net::security::ClusterCa;
use wimpy_net::{KeyPeer, Role, Security};
use wimpy_schema::batch::{KeyAnswer, KeyRequest};
use wimpy_schema::wimpy_capnp::master;
use wimpy_store::{CompactionOptions, Options, SyncMode};
use wimpy_worker::node::WorkerConfig;
use wimpy_worker::server::intake::IntakeLimits;

/// The cluster CA of this test process: every node and client here holds
/// a certificate from it, and every connection is TLS.
fn ca() -> &'static ClusterCa {
    static CA: OnceLock<ClusterCa> = OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate("test").unwrap())
}

/// What a test's clients connect with: an admin's certificate.
fn client_tls() -> Security {
    ca().security(Role::Admin, "operator").unwrap()
}

/// A node running on its own thread until dropped.
struct Node {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn spawn_node<F, Fut>(serve: F) -> Node
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener, stopped).await;
        });
    });
    Node { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}

fn master() -> Node {
    master_keeping(1)
}

/// A master whose rings keep `replicas` copies of each key.
fn master_keeping(replicas: u32) -> Node {
    master_copying_at(replicas, wimpy_master::DEFAULT_REPAIR_BYTES_PER_SECOND)
}

/// The same, whose membership changes copy at most `bytes_per_second`
/// from each source.
fn master_copying_at(replicas: u32, bytes_per_second: u64) -> Node {
    master_with(replicas, move |config| config.repair_bytes_per_second = bytes_per_second)
}

/// A master whose rings keep `replicas` copies of each key, configured as
/// the tests' masters are, then as `tweak` says.
fn master_with(replicas: u32, tweak: impl FnOnce(&mut MasterConfig) + Send + 'static) -> Node {
    spawn_node(move |listener, stopped| async move {
        let mut config = MasterConfig {
            vnodes: 64,
            replicas,
            heartbeat: Duration::from_millis(20),
            down_after: Duration::from_millis(300),
            data: None,
            // A long time to live, so the test can see a cached value.
            cache: wimpy_master::CacheConfig { ttl: Duration::from_secs(30), ..Default::default() },
            security: ca().security(Role::Master, "master").unwrap(),
            signer: None,
            repair_bytes_per_second: wimpy_master::DEFAULT_REPAIR_BYTES_PER_SECOND,
            // Passes only when a test asks for one.
            scrub: wimpy_master::ScrubConfig { every: Duration::ZERO, bytes_per_second: 0 },
            remove_down_after: Duration::ZERO,
        };
        tweak(&mut config);
        wimpy_master::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    })
}

fn worker(master: SocketAddr, data: std::path::PathBuf) -> Node {
    worker_taking(master, data, SyncMode::Never, Default::default())
}

/// A worker with the sync mode `sync` and the intake caps `intake`.
fn worker_taking(master: SocketAddr, data: std::path::PathBuf, sync: SyncMode, intake: IntakeLimits) -> Node {
    let compute = wimpy_compute::EngineConfig {
        backends: vec![wimpy_compute::BackendKind::Simd],
        cpu_threads: 1,
        ..Default::default()
    };
    worker_with(master, data, sync, intake, compute)
}

/// A worker whose compute engine runs as `compute` says.
fn worker_computing(master: SocketAddr, data: std::path::PathBuf, compute: wimpy_compute::EngineConfig) -> Node {
    worker_with(master, data, SyncMode::Never, Default::default(), compute)
}

fn worker_with(
    master: SocketAddr,
    data: std::path::PathBuf,
    sync: SyncMode,
    intake: IntakeLimits,
    compute: wimpy_compute::EngineConfig,
) -> Node {
    spawn_node(move |listener, stopped| async move {
        let config = WorkerConfig {
            master,
            data,
            store: Options {
                sync,
                segment_bytes: 1 << 25,
                max_value_bytes: 16 << 20,
                compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
                ..Options::default()
            },
            cores: 1,
            compute,
            intake,
            security: ca().security(Role::Worker, "worker").unwrap(),
        };
        wimpy_worker::node::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    })
}

/// A master and `n` workers, their data in a temporary directory. Dropping
/// it stops the workers, then the master, then removes the data.
struct Cluster {
    _workers: Vec<Node>,
    master: Node,
    _dir: tempfile::TempDir,
}

fn cluster(n: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let master = master();
    let workers = (0..n).map(|i| worker(master.addr, dir.path().join(format!("w{i}")))).collect();
    Cluster { _workers: workers, master, _dir: dir }
}

fn client_side<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, body());
}

/// Waits (bounded) until the master's ring has `n` serving members.
/// A client of the master at `addr`, once the ring has `n` serving members.
async fn connected(addr: SocketAddr, n: usize) -> Client {
    let client = Client::connect(addr, client_tls()).await.unwrap();
    wait_for_members(&client, n).await;
    client
}

async fn wait_for_members(client: &Client, n: usize) {
    ring_until(client, &format!("{n} serving members"), |view| {
        view.members.len() == n && view.members.iter().all(|m| m.state == wimpy_client::MemberState::Serving)
    })
    .await;
}

/// The ring once `ready` says so of it: `what` it waits for.
async fn ring_until(
    client: &Client,
    what: &str,
    ready: impl Fn(&wimpy_client::RingView) -> bool,
) -> std::rc::Rc<wimpy_client::RingView> {
    // Bounded generously: a loaded CI machine may take a while to move data.
    for _ in 0..3000 {
        let view = client.refresh_ring().await.unwrap();
        if ready(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the ring never had {what}");
}

/// The id the ring gives the worker `node`.
fn id_of(view: &wimpy_client::RingView, node: &Node) -> u64 {
    let address = node.addr.to_string();
    view.members.iter().find(|m| m.address == address).expect("the worker is on the ring").id
}

/// A connection to the worker at `address`, to ask it alone (past the
/// SDK's routing).
async fn member(address: &str) -> wimpy_schema::wimpy_capnp::worker::Client {
    wimpy_net::connect(address, &client_tls(), &[Role::Worker]).await.unwrap()
}

/// What worker `w` itself answers to a get of `key`.
async fn asked(w: &wimpy_schema::wimpy_capnp::worker::Client, key: &[u8]) -> KeyAnswer {
    w.send_one(0, &KeyRequest::Get(key.to_vec())).await.unwrap()
}

/// Puts `value` under `key` until it is acknowledged (bounded), each try
/// recorded in `history`: a try that fails may or may not have landed, and
/// the next one settles it.
async fn put_until_acked(history: &History, client: &Client, key: &[u8], value: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = history.put(key, value, client.put(key, value)).await {
        assert!(std::time::Instant::now() < deadline, "{key:?} was never acknowledged: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `prefix{i}` -> i for i in 0..n.
async fn put_numbered(client: &Client, prefix: &str, n: u32) {
    for i in 0..n {
        client.put(format!("{prefix}{i}").as_bytes(), &i.to_le_bytes()).await.unwrap();
    }
}

/// Checks that `prefix{i}` reads back as i for i in 0..n.
async fn assert_numbered(client: &Client, prefix: &str, n: u32) {
    for i in 0..n {
        let key = format!("{prefix}{i}");
        assert_eq!(client.get(key.as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()), "{key}");
    }
}

/// Writes `prefix{i}` -> i for i in 0..n all at once, then reads them all
/// back at once: requests in flight together, as batching sees them.
async fn put_and_get_together(client: &Client, prefix: &str, n: u32) {
    let puts = (0..n).map(|i| async move { client.put(format!("{prefix}{i}").as_bytes(), &i.to_le_bytes()).await });
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    let gets = (0..n).map(|i| async move { (i, client.get(format!("{prefix}{i}").as_bytes()).await) });
    for (i, got) in futures::future::join_all(gets).await {
        assert_eq!(got.unwrap(), Some(i.to_le_bytes().to_vec()), "{prefix}{i}");
    }
}

/// Panics with the first key whose calls in `history` no order explains.
fn assert_linearizable(history: &History) {
    if let Err(violation) = history.check() {
        panic!("{violation}");
    }
}

/// Checks that every acknowledged write (key -> round) reads back.
async fn assert_acked(client: &Client, acked: &std::collections::BTreeMap<String, u32>) {
    for (key, round) in acked {
        assert_eq!(client.get(key.as_bytes()).await.unwrap(), Some(round.to_le_bytes().to_vec()), "{key}");
    }
}

#[test]
fn keys_route_to_their_owners_and_read_back() {
    let cluster = cluster(3);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let client = connected(maddr, 3).await;
        put_numbered(&client, "key-", 300).await;
        assert_numbered(&client, "key-", 300).await;
        assert!(client.delete(b"key-7").await.unwrap());
        assert!(!client.delete(b"key-7").await.unwrap());
        assert_eq!(client.get(b"key-7").await.unwrap(), None);
        // Every worker holds a share: routing spreads the keys.
        let view = client.status().await.unwrap().view;
        tokio::time::sleep(Duration::from_millis(100)).await; // a heartbeat carries fresh stats
        let view2 = client.status().await.unwrap().view;
        let total: u64 = view2.members.iter().map(|m| m.stats.live_keys).sum();
        assert_eq!(view.members.len(), 3);
        assert_eq!(total, 299, "{:?}", view2.members);
        assert!(view2.members.iter().all(|m| m.stats.live_keys > 30), "{:?}", view2.members);
        // Refusals come back typed.
        let err = client.put(b"", b"x").await.unwrap_err();
        assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
        let err = client.put(&vec![b'k'; 5000], b"x").await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge { limit: 4096, actual: 5000, .. }), "{err:?}");
    });
    drop(cluster);
}

#[test]
fn a_client_with_an_old_ring_is_told_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let m = master();
    let first = worker(m.addr, dir.path().join("w0"));
    let maddr = m.addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        client_side(|| async move {
            let client = connected(maddr, 1).await;
            let epoch = client.ring().ring.epoch();
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // The cached ring still has one member; the cluster has two now.
            // Writes to keys the newcomer owns are refused as stale by the
            // first worker, and land on the newcomer after a refresh.
            for i in 0..100u32 {
                client.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
            }
            assert!(client.ring().ring.epoch() > epoch, "the client never refreshed its ring");
            assert_eq!(client.ring().members.len(), 2);
            for i in 0..100u32 {
                assert_eq!(client.get(format!("k{i}").as_bytes()).await.unwrap(), Some(b"v".to_vec()));
            }
        })
    });
    ready_rx.recv().unwrap();
    let second = worker(m.addr, dir.path().join("w1"));
    // Let the second worker register and both learn the new ring.
    std::thread::sleep(Duration::from_millis(300));
    go_tx.send(()).unwrap();
    client_thread.join().unwrap();
    drop((first, second));
}

#[test]
fn keys_of_a_dead_worker_fail_fast_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let m = master();
    let a = worker(m.addr, dir.path().join("w0"));
    let b = worker(m.addr, dir.path().join("w1"));
    let maddr = m.addr;
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        client_side(|| async move {
            let client = connected(maddr, 2).await;
            ready_tx.send(()).unwrap();
            killed_rx.recv().unwrap();
            // Wait (bounded) for the master to mark the dead worker down.
            let mut down = None;
            for _ in 0..3000 {
                let view = client.refresh_ring().await.unwrap();
                if let Some(m) = view.members.iter().find(|m| m.state == wimpy_client::MemberState::Down) {
                    down = Some(m.id);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let down = down.expect("the master never noticed the dead worker");
            let ring = client.ring().ring.clone();
            let key = (0u32..).map(|i| format!("k{i}")).find(|k| ring.owner(k.as_bytes()) == Some(down)).unwrap();
            // The client knows from the ring that the owner is down: it
            // answers with the typed error without trying the worker.
            let err = client.get(key.as_bytes()).await.unwrap_err();
            assert!(matches!(err, ClientError::Unavailable(_)), "{err:?}");
            assert!(err.is_unavailable());
            // Keys of the live worker still work.
            let live = (0u32..).map(|i| format!("k{i}")).find(|k| ring.owner(k.as_bytes()) != Some(down)).unwrap();
            client.put(live.as_bytes(), b"still here").await.unwrap();
            // Through the master too, in one batch: the dead worker's key
            // fails typed, the others are served.
            let requests = [
                KeyRequest::Get(key.clone().into_bytes()),
                KeyRequest::Put(live.clone().into_bytes(), b"again".to_vec()),
                KeyRequest::Get(live.clone().into_bytes()),
            ];
            let answers = master_batch(maddr, &requests).await;
            assert!(matches!(answers[0], KeyAnswer::Failed(wimpy_schema::Failure::Unavailable(_))), "{answers:?}");
            assert_eq!(&answers[1..], &[KeyAnswer::Stored, KeyAnswer::Value(b"again".to_vec())]);
        })
    });
    ready_rx.recv().unwrap();
    drop(b);
    killed_tx.send(()).unwrap();
    client_thread.join().unwrap();
    drop(a);
}

#[test]
fn proxy_mode_forwards_and_its_cache_is_invalidated_by_writes_through_it() {
    let cluster = cluster(2);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let direct = Client::connect(maddr, client_tls()).await.unwrap();
        wait_for_members(&direct, 2).await;
        let proxied =
            Client::connect_with(maddr, ClientOptions { via_master: true, ..ClientOptions::new(client_tls()) })
                .await
                .unwrap();
        for i in 0..50u32 {
            proxied.put(format!("p{i}").as_bytes(), &i.to_le_bytes()).await.unwrap();
        }
        for i in 0..50u32 {
            // Written through the master, readable straight from the owner.
            assert_eq!(direct.get(format!("p{i}").as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()));
            assert_eq!(proxied.get(format!("p{i}").as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()));
        }
        // The hot key is now cached in the master: a write that bypasses the
        // master is not seen through it (until the entry's time to live)...
        proxied.get(b"p1").await.unwrap();
        direct.put(b"p1", b"direct").await.unwrap();
        assert_eq!(proxied.get(b"p1").await.unwrap(), Some(1u32.to_le_bytes().to_vec()));
        // ...while a write through the master replaces it at once.
        proxied.put(b"p1", b"through").await.unwrap();
        assert_eq!(proxied.get(b"p1").await.unwrap(), Some(b"through".to_vec()));
        assert!(proxied.delete(b"p1").await.unwrap());
        assert_eq!(proxied.get(b"p1").await.unwrap(), None);
        assert_eq!(direct.get(b"p1").await.unwrap(), None);
        let err = proxied.put(b"", b"x").await.unwrap_err();
        assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
        // Many requests through the master at once (it forwards them to the
        // workers in batches), each answered on its own.
        let before = proxied.batch_stats();
        put_and_get_together(&proxied, "q", 200).await;
        let sent = proxied.batch_stats() - before;
        assert_eq!(sent.requests, 400);
        assert!(sent.batches <= 8, "{sent:?}");
        assert_numbered(&direct, "q", 200).await;
    });
    drop(cluster);
}

/// Sends `requests` to the master as one `Master.batch` message.
async fn master_batch(maddr: SocketAddr, requests: &[KeyRequest]) -> Vec<KeyAnswer> {
    let master: master::Client = wimpy_net::connect(&maddr.to_string(), &client_tls(), &[Role::Master]).await.unwrap();
    master.send_batch(0, requests).await.unwrap()
}

#[test]
fn a_batch_through_the_master_is_served_in_list_order_past_its_cache() {
    let cluster = cluster(2);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let direct = connected(maddr, 2).await;
        let proxied =
            Client::connect_with(maddr, ClientOptions { via_master: true, ..ClientOptions::new(client_tls()) })
                .await
                .unwrap();
        proxied.put(b"o", b"old").await.unwrap();
        // The master now caches "o".
        assert_eq!(proxied.get(b"o").await.unwrap(), Some(b"old".to_vec()));
        let put = |k: &[u8], v: &[u8]| KeyRequest::Put(k.to_vec(), v.to_vec());
        let get = |k: &[u8]| KeyRequest::Get(k.to_vec());
        let delete = |k: &[u8]| KeyRequest::Delete(k.to_vec());
        // Each request sees the ones before it, whether the cache holds the
        // key or not and whichever worker owns it.
        let requests: Vec<KeyRequest> = vec![
            get(b"o"),
            put(b"o", b"new"),
            get(b"o"),
            put(b"other", b"1"),
            delete(b"o"),
            get(b"o"),
            delete(b"o"),
            put(b"", b"refused"),
            get(b"other"),
            put(b"o", b"last"),
        ];
        let answers = master_batch(maddr, &requests).await;
        assert_eq!(
            &answers[..7],
            &[
                KeyAnswer::Value(b"old".to_vec()),
                KeyAnswer::Stored,
                KeyAnswer::Value(b"new".to_vec()),
                KeyAnswer::Stored,
                KeyAnswer::Deleted(true),
                KeyAnswer::NotFound,
                KeyAnswer::Deleted(false),
            ]
        );
        assert!(matches!(answers[7], KeyAnswer::Failed(wimpy_schema::Failure::Invalid(_))), "{:?}", answers[7]);
        assert_eq!(&answers[8..], &[KeyAnswer::Value(b"1".to_vec()), KeyAnswer::Stored]);
        // The batch's writes replaced the cached value.
        assert_eq!(proxied.get(b"o").await.unwrap(), Some(b"last".to_vec()));
        assert_eq!(direct.get(b"o").await.unwrap(), Some(b"last".to_vec()));
        // Many batches at once, from many connections, each answered right.
        let rounds = (0..8u32).map(|c| async move {
            let requests: Vec<KeyRequest> = (0..100u32)
                .map(|i| KeyRequest::Put(format!("c{c}-{i}").into_bytes(), i.to_le_bytes().to_vec()))
                .collect();
            assert!(master_batch(maddr, &requests).await.iter().all(|a| *a == KeyAnswer::Stored));
            let requests: Vec<KeyRequest> =
                (0..100u32).map(|i| KeyRequest::Get(format!("c{c}-{i}").into_bytes())).collect();
            let expected: Vec<KeyAnswer> = (0..100u32).map(|i| KeyAnswer::Value(i.to_le_bytes().to_vec())).collect();
            assert_eq!(master_batch(maddr, &requests).await, expected);
        });
        futures::future::join_all(rounds).await;
    });
    drop(cluster);
}

#[test]
fn a_worker_joins_while_a_writer_runs_and_no_acknowledged_write_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let m = master();
    let first: Vec<_> = (0..2).map(|i| worker(m.addr, dir.path().join(format!("w{i}")))).collect();
    let maddr = m.addr;
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (joined_tx, joined_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        client_side(|| async move {
            let client = connected(maddr, 2).await;
            // Data that the newcomer must receive.
            put_numbered(&client, "pre-", 2000).await;
            started_tx.send(()).unwrap();
            // Keep writing (and overwriting) while the join runs.
            let mut acked = std::collections::BTreeMap::new();
            let mut round = 0u32;
            let mut joined = false;
            while round < 20_000 {
                let key = format!("live-{}", round % 700);
                client.put(key.as_bytes(), &round.to_le_bytes()).await.unwrap();
                acked.insert(key, round);
                round += 1;
                if !joined && joined_rx.try_recv().is_ok() {
                    joined = true;
                    // A little more traffic on the new ring, then stop.
                    round = round.max(20_000 - 500);
                }
                if round.is_multiple_of(200) {
                    tokio::task::yield_now().await;
                }
            }
            assert!(joined, "the join never completed while the writer ran");
            let view = client.refresh_ring().await.unwrap();
            assert_eq!(view.members.len(), 3);
            assert_numbered(&client, "pre-", 2000).await;
            assert_acked(&client, &acked).await;
            // The newcomer holds its share, and the old owners forget what
            // they gave away: each key lives on exactly one worker.
            let distinct = 2000 + acked.len() as u64;
            let mut total = 0;
            for _ in 0..1500 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let view = client.status().await.unwrap().view;
                total = view.members.iter().map(|m| m.stats.live_keys).sum::<u64>();
                if total == distinct && view.members.iter().all(|m| m.stats.live_keys > 0) {
                    return;
                }
            }
            panic!("keys are not spread one copy each: {total} live across workers, {distinct} distinct");
        })
    });
    started_rx.recv().unwrap();
    let newcomer = worker(m.addr, dir.path().join("w2"));
    // Tell the writer once the newcomer serves (bounded wait on the master).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let c = Client::connect(maddr, client_tls()).await.unwrap();
        wait_for_members(&c, 3).await;
    });
    joined_tx.send(()).unwrap();
    client_thread.join().unwrap();
    drop((first, newcomer));
}

#[test]
fn a_worker_leaving_gracefully_hands_its_keys_over_while_a_writer_runs() {
    let cluster = cluster(3);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let client = connected(maddr, 3).await;
        put_numbered(&client, "k", 3000).await;
        let leaver = client.ring().members[1].id;
        // A second client keeps writing while the leave runs.
        let writer = tokio::task::spawn_local(async move {
            let c = Client::connect(maddr, client_tls()).await.unwrap();
            let mut acked = std::collections::BTreeMap::new();
            for round in 0..4000u32 {
                let key = format!("w{}", round % 500);
                c.put(key.as_bytes(), &round.to_le_bytes()).await.unwrap();
                acked.insert(key, round);
            }
            acked
        });
        // And one through the master, 25 requests at a time, so that they
        // travel as batches the master splits among the owners.
        let proxied_writer = tokio::task::spawn_local(async move {
            let options = ClientOptions { via_master: true, ..ClientOptions::new(client_tls()) };
            let c = Client::connect_with(maddr, options).await.unwrap();
            let mut acked = std::collections::BTreeMap::new();
            for round in 0..160u32 {
                let puts = (0..25u32).map(|i| {
                    let (c, key) = (&c, format!("m{i}-{}", round % 20));
                    async move { c.put(key.as_bytes(), &round.to_le_bytes()).await.map(|()| key) }
                });
                for key in futures::future::join_all(puts).await {
                    acked.insert(key.unwrap(), round);
                }
            }
            acked
        });
        client.leave(leaver).await.unwrap();
        let mut acked = writer.await.unwrap();
        acked.extend(proxied_writer.await.unwrap());
        let view = client.refresh_ring().await.unwrap();
        assert_eq!(view.members.len(), 2);
        assert!(view.members.iter().all(|m| m.id != leaver));
        assert_numbered(&client, "k", 3000).await;
        assert_acked(&client, &acked).await;
        // The last two cannot both leave: someone must keep the keys.
        let others: Vec<_> = view.members.iter().map(|m| m.id).collect();
        client.leave(others[0]).await.unwrap();
        let err = client.leave(others[1]).await.unwrap_err();
        assert!(matches!(err, ClientError::LastWorker(id) if id == others[1]), "{err:?}");
        let err = client.leave(999).await.unwrap_err();
        assert!(matches!(err, ClientError::NoSuchWorker(999)), "{err:?}");
        assert_numbered(&client, "k", 3000).await;
    });
    drop(cluster);
}

#[test]
fn values_larger_than_a_message_stream_both_ways() {
    let cluster = cluster(2);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let client = connected(maddr, 2).await;
        let big: Vec<u8> = (0..(5u32 << 20) + 12345).map(|i| (i ^ (i >> 11)) as u8).collect();
        client.put(b"big", &big).await.unwrap();
        assert_eq!(client.get(b"big").await.unwrap().as_deref(), Some(&big[..]));
        // Exactly one message's worth stays inline; one byte more streams.
        let edge = vec![7u8; 1 << 20];
        client.put(b"edge", &edge).await.unwrap();
        assert_eq!(client.get(b"edge").await.unwrap(), Some(edge));
        let err = client.put(b"huge", &vec![0u8; 17 << 20]).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge { limit, .. } if limit == 16 << 20), "{err:?}");
        assert_eq!(client.get(b"huge").await.unwrap(), None);
        // Through the master: a large put goes whole (the master sees every
        // write it caches around), a large get streams from the owner.
        let proxied =
            Client::connect_with(maddr, ClientOptions { via_master: true, ..ClientOptions::new(client_tls()) })
                .await
                .unwrap();
        assert_eq!(proxied.get(b"big").await.unwrap().as_deref(), Some(&big[..]));
        let two: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
        proxied.put(b"two", &two).await.unwrap();
        assert_eq!(client.get(b"two").await.unwrap().as_deref(), Some(&two[..]));
        assert_eq!(proxied.get(b"two").await.unwrap().as_deref(), Some(&two[..]));
        assert!(client.delete(b"big").await.unwrap());
        assert_eq!(client.get(b"big").await.unwrap(), None);
    });
    drop(cluster);
}

#[test]
fn requests_in_flight_together_travel_in_batches_and_each_gets_its_own_answer() {
    let cluster = cluster(2);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let client = connected(maddr, 2).await;
        let before = client.batch_stats();
        put_and_get_together(&client, "b-", 400).await;
        let client = &client;
        let sent = client.batch_stats() - before;
        assert_eq!(sent.requests, 800);
        // Two workers, two rounds: a few dozen batches at most (a round
        // splits where answers come back apart on a busy machine), not 800
        // messages.
        assert!(sent.batches <= 50, "{sent:?}");

        // Deletes, gets and puts of one round, each answered on its own.
        let mixed = (0..300u32).map(|i| async move {
            let key = format!("b-{i}");
            match i % 3 {
                0 => format!("{:?}", client.delete(key.as_bytes()).await),
                1 => format!("{:?}", client.get(key.as_bytes()).await),
                _ => format!("{:?}", client.put(key.as_bytes(), b"new").await),
            }
        });
        for (i, answer) in futures::future::join_all(mixed).await.into_iter().enumerate() {
            let expected = match i % 3 {
                0 => "Ok(true)".to_owned(),
                1 => format!("Ok(Some({:?}))", (i as u32).to_le_bytes().to_vec()),
                _ => "Ok(())".to_owned(),
            };
            assert_eq!(answer, expected, "b-{i}");
        }
        assert_eq!(client.get(b"b-0").await.unwrap(), None);
        assert_eq!(client.get(b"b-2").await.unwrap(), Some(b"new".to_vec()));

        // Values of 1 MiB read together overflow a batch's answer; those
        // that do not fit are fetched on their own.
        let mib = |i: u8| vec![i; 1 << 20];
        for i in 0..12u8 {
            client.put(format!("m-{i}").as_bytes(), &mib(i)).await.unwrap();
        }
        let gets = (0..12u8).map(|i| async move { (i, client.get(format!("m-{i}").as_bytes()).await) });
        for (i, got) in futures::future::join_all(gets).await {
            assert!(got.unwrap() == Some(mib(i)), "m-{i}");
        }
    });
    drop(cluster);
}

#[test]
fn without_batching_every_request_is_a_message_of_its_own() {
    let cluster = cluster(2);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        wait_for_members(&Client::connect(maddr, client_tls()).await.unwrap(), 2).await;
        let client = Client::connect_with(maddr, ClientOptions { batching: false, ..ClientOptions::new(client_tls()) })
            .await
            .unwrap();
        let client = &client;
        let puts = (0..100u32).map(|i| async move { client.put(format!("u-{i}").as_bytes(), &i.to_le_bytes()).await });
        for r in futures::future::join_all(puts).await {
            r.unwrap();
        }
        assert_numbered(client, "u-", 100).await;
        assert_eq!(client.batch_stats().batches, 0);
    });
    drop(cluster);
}

/// A PNG of a `w × h` gradient with some texture.
fn test_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = x.wrapping_mul(2_654_435_761).wrapping_add(y.wrapping_mul(40_503)).wrapping_add(seed);
            px.extend_from_slice(&[(x * 3) as u8, (y * 5) as u8, (n >> 24) as u8, 255]);
        }
    }
    wimpy_compute::Image::new(w, h, px).encode(wimpy_client::job::Encoding::Png).unwrap()
}

/// What the scalar reference makes of `value`, run here in the test.
fn reference(job: &wimpy_client::job::Job, value: Vec<u8>) -> Vec<u8> {
    let mut cpu = wimpy_compute::backend::cpu::CpuBackend::default();
    let deadline = wimpy_compute::Deadline::after(Duration::from_secs(60));
    wimpy_compute::execute(&mut cpu, job, value, &wimpy_compute::Limits::default(), &deadline).unwrap().bytes
}

#[test]
fn compute_jobs_run_on_the_owner_and_match_the_reference() {
    use wimpy_client::job::Job;
    use wimpy_client::{ComputeFailureKind, ComputeRequest};
    let cluster = cluster(3);
    let maddr = cluster.master.addr;
    client_side(|| async move {
        let client = connected(maddr, 3).await;
        let png = test_png(97, 61, 1);
        client.put(b"photo", &png).await.unwrap();

        // One key: the worker's answer equals the reference computed here.
        let job = Job::parse(&["grayscale", "blur:1.5", "resize:40:30", "sobel"]).unwrap();
        let out = client.compute(b"photo", &ComputeRequest::new(job.clone())).await.unwrap().unwrap();
        assert_eq!(out.bytes, reference(&job, png.clone()));
        assert_eq!(out.size, Some((40, 30)));
        assert_eq!(out.backend, wimpy_client::job::BackendKind::Simd);
        assert!(out.times.decode > Duration::ZERO && out.times.kernel > Duration::ZERO);

        // Hashes, iterated, against the reference implementation.
        let job = Job::parse(&["sha256:3"]).unwrap();
        let out = client.compute(b"photo", &ComputeRequest::new(job.clone())).await.unwrap().unwrap();
        assert_eq!(out.bytes, reference(&job, png.clone()));
        assert_eq!(out.bytes.len(), 32);

        // Stored under a new key instead of returned.
        let job = Job::parse(&["invert"]).unwrap();
        client.compute_into(b"photo", &ComputeRequest::new(job.clone()), b"photo-inverted").await.unwrap().unwrap();
        assert_eq!(client.get(b"photo-inverted").await.unwrap().unwrap(), reference(&job, png.clone()));

        // A batch over keys spread across every worker.
        let mut keys = Vec::new();
        let mut images = Vec::new();
        for i in 0..24u32 {
            let key = format!("img-{i}").into_bytes();
            let image = test_png(20 + i, 13 + i % 5, i);
            client.put(&key, &image).await.unwrap();
            keys.push(key);
            images.push(image);
        }
        keys.push(b"img-missing".to_vec());
        let job = Job::parse(&["threshold:100", "rotate:90"]).unwrap();
        let results = client.compute_batch(&keys, &ComputeRequest::new(job.clone())).await;
        assert_eq!(results.len(), 25);
        for (i, image) in images.into_iter().enumerate() {
            let out = results[i].as_ref().unwrap().as_ref().unwrap();
            assert_eq!(out.bytes, reference(&job, image), "img-{i}");
        }
        assert!(matches!(results[24], Ok(None)));

        // Bad input comes back typed, and the worker keeps serving.
        let refused = |e: ClientError| match e {
            ClientError::Compute(c) => c,
            other => panic!("expected a compute failure, got {other:?}"),
        };
        client.put(b"not-an-image", b"hello, world").await.unwrap();
        let e = client.compute(b"not-an-image", &ComputeRequest::new(Job::parse(&["invert"]).unwrap())).await;
        assert_eq!(refused(e.unwrap_err()).kind, ComputeFailureKind::BadImage);
        let truncated = &png[..png.len() / 2];
        client.put(b"truncated", truncated).await.unwrap();
        let e = client.compute(b"truncated", &ComputeRequest::new(Job::parse(&["invert"]).unwrap())).await;
        assert_eq!(refused(e.unwrap_err()).kind, ComputeFailureKind::BadImage);
        // A header that claims 20000 x 20000 pixels: refused before decoding.
        let mut bomb = test_png(2, 2, 0);
        bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        client.put(b"bomb", &bomb).await.unwrap();
        let e =
            refused(client.compute(b"bomb", &ComputeRequest::new(Job::parse(&["invert"]).unwrap())).await.unwrap_err());
        assert_eq!((e.kind, e.limit, e.actual), (ComputeFailureKind::TooManyPixels, 50_000_000, 400_000_000));
        let e = client
            .compute(b"photo", &ComputeRequest::new(Job::parse(&["crop:90:0:20:20"]).unwrap()))
            .await
            .unwrap_err();
        assert_eq!(refused(e).kind, ComputeFailureKind::CropOutside);
        let mut on_gles = ComputeRequest::new(Job::parse(&["invert"]).unwrap());
        on_gles.backend = Some(wimpy_client::job::BackendKind::Gles);
        let e = client.compute(b"photo", &on_gles).await.unwrap_err();
        assert_eq!(refused(e).kind, ComputeFailureKind::BackendUnavailable);
        assert_eq!(
            client.compute(b"nothing-here", &ComputeRequest::new(Job::parse(&["invert"]).unwrap())).await.unwrap(),
            None
        );
        assert_eq!(client.get(b"photo").await.unwrap().unwrap(), png);
    });
    drop(cluster);
}

#[test]
fn with_three_copies_compute_jobs_spread_over_a_key_s_chain_and_a_busy_member_hands_its_jobs_on() {
    use wimpy_client::job::Job;
    use wimpy_client::{ComputeFailureKind, ComputeRequest};
    let dir = tempfile::tempdir().unwrap();
    let master = master_keeping(3);
    // Worker 2's engine takes no job past the one it runs: it answers
    // backend_busy whenever it has one.
    let workers: Vec<Node> = (0..3)
        .map(|i| {
            let engine = wimpy_compute::EngineConfig {
                backends: vec![wimpy_compute::BackendKind::Simd],
                cpu_threads: 1,
                queue_depth: if i == 2 { 0 } else { 16 },
                ..Default::default()
            };
            worker_computing(master.addr, dir.path().join(format!("w{i}")), engine)
        })
        .collect();
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        let view = client.refresh_ring().await.unwrap();
        let busy = id_of(&view, &workers[2]);
        let png = test_png(300, 200, 7);
        client.put(b"photo", &png).await.unwrap();
        let job = Job::parse(&["blur:3", "sobel"]).unwrap();
        let want = reference(&job, png.clone());
        // Many at once: the chain's three members share them, the busy one
        // handing on what it cannot take; every answer is right and says
        // who ran it.
        let runs = (0..24).map(|_| {
            let (client, job) = (&client, job.clone());
            async move { client.compute(b"photo", &ComputeRequest::new(job)).await }
        });
        let mut ran_on: std::collections::BTreeMap<u64, usize> = Default::default();
        for out in futures::future::join_all(runs).await {
            let out = out.unwrap().unwrap();
            assert_eq!(out.bytes, want);
            assert!(view.members.iter().any(|m| m.id == out.worker), "worker {} ran it", out.worker);
            assert!(out.worker_jobs >= 1);
            *ran_on.entry(out.worker).or_default() += 1;
        }
        eprintln!("jobs per worker: {ran_on:?} (worker {busy} takes one at a time)");
        assert!(ran_on.len() >= 2, "the jobs spread over the chain: {ran_on:?}");
        // A batch spreads too, and every result is right.
        let keys: Vec<Vec<u8>> = (0..12).map(|i| format!("photo-{i}").into_bytes()).collect();
        for k in &keys {
            client.put(k, &png).await.unwrap();
        }
        let results = client.compute_batch(&keys, &ComputeRequest::new(job.clone())).await;
        let mut batch_on = std::collections::BTreeSet::new();
        for r in results {
            let out = r.unwrap().unwrap();
            assert_eq!(out.bytes, want);
            batch_on.insert(out.worker);
        }
        assert!(batch_on.len() >= 2, "the batch spread over the chains: {batch_on:?}");
        // A backend no member has: the typed refusal, once all were asked.
        let mut on_gles = ComputeRequest::new(job.clone());
        on_gles.backend = Some(wimpy_client::job::BackendKind::Gles);
        match client.compute(b"photo", &on_gles).await {
            Err(ClientError::Compute(c)) => assert_eq!(c.kind, ComputeFailureKind::BackendUnavailable),
            other => panic!("expected backend_unavailable, got {other:?}"),
        }
    });
    drop(workers);
}

#[test]
fn a_worker_whose_log_was_damaged_says_where_in_status_and_keeps_its_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let master = master();
    let data = dir.path().join("w0");
    let w = worker(master.addr, data.clone());
    let maddr = master.addr;
    client_side(|| async move {
        let client = connected(maddr, 1).await;
        put_numbered(&client, "d", 400).await;
    });
    drop(w);
    // A byte flipped in the middle of the log, and no checkpoint, so the
    // restarted worker's store replays (and finds) it.
    std::fs::remove_file(data.join("index.ckpt")).unwrap();
    let segment = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let _w = worker(master.addr, data);
    client_side(|| async move {
        let client = connected(maddr, 1).await;
        // The heartbeat after the restart carries the report.
        let mut damage = Vec::new();
        for _ in 0..500 {
            let view = client.status().await.unwrap().view;
            damage = view.members[0].stats.damage.clone();
            if !damage.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(damage.len(), 1, "{damage:?}");
        let d = &damage[0];
        assert!(d.offset as usize <= middle && middle < (d.offset + d.bytes) as usize, "{d:?}");
        assert!(d.reason.contains("checksum") || d.reason.contains("header"), "{d:?}");
        let mut missing = 0;
        for i in 0..400u32 {
            match client.get(format!("d{i}").as_bytes()).await.unwrap() {
                Some(v) => assert_eq!(v, i.to_le_bytes().to_vec(), "d{i}"),
                None => missing += 1,
            }
        }
        assert_eq!(missing, 1, "only the damaged record is lost");
    });
}

#[test]
fn a_worker_at_its_intake_cap_answers_overloaded_and_the_sdk_backs_off_until_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let master = master();
    // Two calls in flight in the whole worker (puts stay in flight while
    // they wait for their fsync): twenty clients at once are far more than
    // it takes.
    let limits = IntakeLimits { calls: 2, ..IntakeLimits::default() };
    let _w = worker_taking(master.addr, dir.path().join("w0"), SyncMode::Always, limits);
    let maddr = master.addr;
    client_side(|| async move {
        connected(maddr, 1).await;
        let connect = |attempts| async move {
            let mut clients = Vec::new();
            for _ in 0..20 {
                // Each its own connection, and one message per request.
                let options = ClientOptions { batching: false, attempts, ..ClientOptions::new(client_tls()) };
                clients.push(Client::connect_with(maddr, options).await.unwrap());
            }
            clients
        };
        // Asked once, some are refused, typed.
        let once = connect(1).await;
        let tries = once
            .iter()
            .enumerate()
            .map(|(c, client)| async move { client.put(format!("once{c}").as_bytes(), b"v").await });
        let refused = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|r| matches!(r, Err(ClientError::Overloaded)))
            .count();
        assert!(refused > 0, "no request was refused at the cap");
        // Asked again after backing off, all are served.
        let clients = connect(12).await;
        let writes = clients.iter().enumerate().map(|(c, client)| async move {
            for i in 0..20u32 {
                let key = format!("c{c}-{i}");
                client.put(key.as_bytes(), &i.to_le_bytes()).await.unwrap();
            }
        });
        futures::future::join_all(writes).await;
        for (c, client) in clients.iter().enumerate() {
            for i in 0..20u32 {
                let key = format!("c{c}-{i}");
                assert_eq!(client.get(key.as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()), "{key}");
            }
        }
    });
}

/// A value the writer of the move test stores: `round` in its bytes, and
/// every 40th round one larger than a message, so that it streams.
fn model_value(round: u32) -> Vec<u8> {
    let len = if round.is_multiple_of(40) { (1 << 20) + 4096 + round as usize % 7 } else { 8 + round as usize % 13 };
    (0..len).map(|i| (i as u32 ^ round) as u8).collect()
}

#[test]
fn joins_and_leaves_under_puts_deletes_and_streams_lose_no_acknowledged_write_or_delete() {
    let dir = tempfile::tempdir().unwrap();
    let m = master();
    let first: Vec<_> = (0..2)
        .map(|i| worker_taking(m.addr, dir.path().join(format!("w{i}")), SyncMode::Always, Default::default()))
        .collect();
    let maddr = m.addr;
    let (moved_tx, moved_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        client_side(|| async move {
            let client = connected(maddr, 2).await;
            // Every call, with a read of another key after each write: no
            // read during the moves may answer not found for a key that
            // holds a value, nor an older value than one acknowledged.
            let history = History::new();
            // What each key must read afterwards: the last acknowledged
            // write wins, a delete included.
            let mut model: std::collections::BTreeMap<String, Option<u32>> = Default::default();
            let mut round = 0u32;
            let mut stop_at = u32::MAX;
            while round < stop_at {
                let key = format!("m-{}", round % 300);
                // 7 is prime to the 300 keys: each key sees puts and deletes.
                if round % 7 == 3 {
                    history.delete(key.as_bytes(), client.delete(key.as_bytes())).await.unwrap();
                    model.insert(key, None);
                } else {
                    let value = model_value(round);
                    history.put(key.as_bytes(), &value, client.put(key.as_bytes(), &value)).await.unwrap();
                    model.insert(key, Some(round));
                }
                let other = format!("m-{}", round.wrapping_mul(2_654_435_761) % 300);
                history.get(other.as_bytes(), client.get(other.as_bytes())).await.unwrap();
                if round == 600 {
                    started_tx.send(()).unwrap();
                }
                // Stop once the moves are done, so that what each key holds
                // was settled during them, not rewritten after.
                if stop_at == u32::MAX && moved_rx.try_recv().is_ok() {
                    stop_at = round;
                }
                round += 1;
                if round.is_multiple_of(50) {
                    tokio::task::yield_now().await;
                }
            }
            for (key, want) in &model {
                let got = history.get(key.as_bytes(), client.get(key.as_bytes())).await.unwrap();
                assert_eq!(got, want.map(model_value), "{key} after {round} rounds");
            }
            assert_linearizable(&history);
        })
    });
    started_rx.recv().unwrap();
    let newcomer = worker_taking(m.addr, dir.path().join("w2"), SyncMode::Always, Default::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, async {
        let c = Client::connect(maddr, client_tls()).await.unwrap();
        wait_for_members(&c, 3).await;
        // And one of the first two leaves, handing everything over again.
        let leaver = c.refresh_ring().await.unwrap().members[0].id;
        c.leave(leaver).await.unwrap();
        wait_for_members(&c, 2).await;
    });
    moved_tx.send(()).unwrap();
    writer.join().unwrap();
    drop((first, newcomer));
}

/// A master keeping three copies of each key, and three workers on
/// `data(0..3)`, each an `Option` so a test can stop it and start it again.
fn three_copies(data: impl Fn(usize) -> std::path::PathBuf) -> (Node, Vec<Option<Node>>) {
    let master = master_keeping(3);
    let workers = (0..3).map(|i| Some(worker(master.addr, data(i)))).collect();
    (master, workers)
}

/// Each key's (value, version) in the store at `dir`, for `keys`.
fn stored(dir: &std::path::Path, keys: &[Vec<u8>]) -> Vec<Option<(Vec<u8>, u64)>> {
    let store = wimpy_store::Store::open(dir, Options::default()).unwrap();
    keys.iter().map(|k| store.get_versioned(k).unwrap()).collect()
}

#[test]
fn with_three_copies_a_stopped_worker_loses_no_acknowledged_write_and_catches_up_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("w{i}"));
    let (master, mut workers) = three_copies(data);
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        let history = History::new();
        let mut acked: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        for i in 0..150u32 {
            let (key, value) = (format!("k{i}"), i.to_le_bytes());
            history.put(key.as_bytes(), &value, client.put(key.as_bytes(), &value)).await.unwrap();
            acked.insert(key, value.to_vec());
        }
        // Worker 1 goes away with writes going on: each is tried until
        // acknowledged, and every acknowledged one counts.
        let stopped = std::time::Instant::now();
        drop(workers[1].take());
        let mut first_after = None;
        for i in 100..300u32 {
            let (key, value) = (format!("k{i}"), format!("again {i}").into_bytes());
            put_until_acked(&history, &client, key.as_bytes(), &value).await;
            first_after.get_or_insert_with(|| stopped.elapsed());
            acked.insert(key, value);
            // And a read of a key written before, between the writes.
            let earlier = format!("k{}", i.wrapping_mul(2_654_435_761) % i);
            history.get(earlier.as_bytes(), client.get(earlier.as_bytes())).await.ok();
        }
        eprintln!("writes served again {:?} after the stop", first_after.unwrap());
        for (key, value) in &acked {
            let got = history.get(key.as_bytes(), client.get(key.as_bytes())).await.unwrap();
            assert_eq!(got.as_ref(), Some(value), "{key} with a member gone");
        }
        assert_linearizable(&history);
        // Back on its old data: it takes the writes it missed before its
        // chains have it again.
        workers[1] = Some(worker(master.addr, data(1)));
        wait_for_members(&client, 3).await;
        let back = workers[1].as_ref().unwrap();
        id_of(&client.refresh_ring().await.unwrap(), back);
        let w = member(&back.addr.to_string()).await;
        for (key, value) in &acked {
            let got = asked(&w, key.as_bytes()).await;
            assert!(matches!(&got, KeyAnswer::Value(v) if v == value), "{key} on the worker back: {got:?}");
        }
    });
    drop(workers);
}

/// Bytes in the logs under `dir`.
fn log_bytes(dir: &std::path::Path) -> u64 {
    log_files(dir).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum()
}

#[test]
fn with_three_copies_a_worker_back_on_its_disk_is_sent_what_it_missed_and_not_its_whole_share() {
    const KEYS: u32 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("w{i}"));
    let (master, mut workers) = three_copies(data);
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        let value = |i: u32, round: u32| format!("{round} {i} ").repeat(100).into_bytes();
        let mut model: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
        let first: Vec<(String, Vec<u8>)> = (0..KEYS).map(|i| (format!("k{i}"), value(i, 0))).collect();
        let puts = first.iter().map(|(k, v)| client.put(k.as_bytes(), v));
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
        model.extend(first.into_iter().map(|(k, v)| (k, Some(v))));
        drop(workers[1].take());
        let held = log_bytes(&data(1));
        let history = History::new();
        // While it is away (tried until its chains close over it): some
        // keys written again, some new, some deleted.
        for i in (0..KEYS).step_by(97).chain(KEYS..KEYS + 10) {
            let (key, v) = (format!("k{i}"), value(i, 1));
            put_until_acked(&history, &client, key.as_bytes(), &v).await;
            model.insert(key, Some(v));
        }
        for i in (5..KEYS).step_by(211) {
            let key = format!("k{i}");
            history.delete(key.as_bytes(), client.delete(key.as_bytes())).await.unwrap();
            model.insert(key, None);
        }
        // It comes back while a writer goes on, through its catching up.
        let stop = std::cell::Cell::new(false);
        let written = std::cell::RefCell::new(Vec::new());
        let writer = async {
            for n in 0u32.. {
                if stop.get() {
                    break;
                }
                let i = n.wrapping_mul(7919) % KEYS;
                let (key, v) = (format!("k{i}"), value(i, 2 + n));
                put_until_acked(&history, &client, key.as_bytes(), &v).await;
                written.borrow_mut().push((key, v));
                // A few hundred a second: what reaches it through its
                // chains stays well under a whole copy.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let back = async {
            workers[1] = Some(worker(master.addr, data(1)));
            wait_for_members(&client, 3).await;
            let at = (log_bytes(&data(1)), written.borrow().len() as u64);
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.set(true);
            at
        };
        let ((), (serving_at, written_by_then)) = futures::join!(writer, back);
        assert_linearizable(&history);
        let written = written.into_inner();
        eprintln!("{} writes while it came back", written.len());
        assert!(!written.is_empty());
        model.extend(written.into_iter().map(|(k, v)| (k, Some(v))));
        let back = workers[1].as_ref().unwrap();
        let w = member(&back.addr.to_string()).await;
        for (key, value) in &model {
            let got = asked(&w, key.as_bytes()).await;
            match value {
                Some(v) => assert!(matches!(&got, KeyAnswer::Value(x) if x == v), "{key} on the worker back: {got:?}"),
                None => assert!(matches!(got, KeyAnswer::NotFound), "{key}, deleted, on the worker back: {got:?}"),
            }
        }
        // A whole copy of its share would have written all it held again;
        // by the time it served it had what it missed, and at most the
        // writes made while it came back (each under 1 KiB of log).
        let grew = serving_at.saturating_sub(held);
        let bound = held / 4 + written_by_then * 1024;
        eprintln!("the worker back held {held} bytes of log and took {grew} more ({written_by_then} writes meanwhile)");
        assert!(bound < held, "too many writes while it came back for the test to tell");
        assert!(grew < bound, "it took {grew} bytes of log where it held {held}: a whole copy");
    });
    drop(workers);
}

#[test]
fn with_three_copies_and_two_gone_reads_go_on_and_writes_wait_until_a_second_copy_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("w{i}"));
    let (master, mut workers) = three_copies(data);
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        put_numbered(&client, "k", 100).await;
        drop(workers[1].take());
        drop(workers[2].take());
        ring_until(&client, "two members down", |view| {
            view.members.iter().filter(|m| m.state == wimpy_client::MemberState::Down).count() == 2
        })
        .await;
        // One copy left: every acknowledged write reads back from it, and
        // writes are refused, saying why, rather than kept on one copy.
        assert_numbered(&client, "k", 100).await;
        let refused = client.put(b"k1", b"alone").await.unwrap_err();
        assert!(refused.is_unavailable() && refused.to_string().contains("copies"), "{refused}");
        assert_eq!(client.get(b"k1").await.unwrap(), Some(1u32.to_le_bytes().to_vec()));
        // A second copy back (caught up): writes are taken again.
        workers[1] = Some(worker(master.addr, data(1)));
        put_until_acked(&History::new(), &client, b"k1", b"again").await;
        assert_eq!(client.get(b"k1").await.unwrap(), Some(b"again".to_vec()));
        for i in 2..100u32 {
            assert_eq!(client.get(format!("k{i}").as_bytes()).await.unwrap(), Some(i.to_le_bytes().to_vec()));
        }
    });
    drop(workers);
}

#[test]
fn with_three_copies_a_wiped_worker_is_removed_and_every_key_is_back_on_three() {
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("w{i}"));
    let (master, mut workers) = three_copies(data);
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        put_numbered(&client, "k", 200).await;
        let lost = id_of(&client.refresh_ring().await.unwrap(), workers[1].as_ref().unwrap());
        // Its disk is gone: it comes back empty, under a new id.
        drop(workers[1].take());
        std::fs::remove_dir_all(data(1)).unwrap();
        workers[1] = Some(worker(master.addr, data(1)));
        let view = ring_until(&client, "the lost worker down and three serving", |view| {
            let state = |id| view.members.iter().find(|m| m.id == id).map(|m| m.state);
            let serving = view.members.iter().filter(|m| m.state == wimpy_client::MemberState::Serving).count();
            state(lost) == Some(wimpy_client::MemberState::Down) && serving == 3
        })
        .await;
        // A worker in service is not removed, and nor is one that is not there.
        let serving = view.members.iter().find(|m| m.id != lost).unwrap().id;
        assert!(matches!(client.remove(serving).await, Err(ClientError::Invalid(_))));
        assert!(matches!(client.remove(999).await, Err(ClientError::NoSuchWorker(999))));
        client.remove(lost).await.unwrap();
        let view = client.refresh_ring().await.unwrap();
        assert_eq!(view.members.len(), 3);
        assert!(view.members.iter().all(|m| m.id != lost));
        // Every key has its three copies again: each member answers it.
        for m in &view.members {
            let w = member(&m.address).await;
            for i in 0..200u32 {
                let got = asked(&w, format!("k{i}").as_bytes()).await;
                assert!(
                    matches!(&got, KeyAnswer::Value(v) if v[..] == i.to_le_bytes()),
                    "k{i} on worker {}: {got:?}",
                    m.id
                );
            }
        }
    });
    drop(workers);
}

#[test]
fn with_three_copies_of_four_a_worker_down_for_long_is_removed_and_every_key_is_back_on_three() {
    let dir = tempfile::tempdir().unwrap();
    let master = master_with(3, |config| config.remove_down_after = Duration::from_secs(1));
    let mut workers: Vec<Option<Node>> =
        (0..4).map(|i| Some(worker(master.addr, dir.path().join(format!("w{i}"))))).collect();
    client_side(|| async {
        let client = connected(master.addr, 4).await;
        put_numbered(&client, "k", 300).await;
        let dead = id_of(&client.refresh_ring().await.unwrap(), workers[2].as_ref().unwrap());
        drop(workers[2].take());
        let down = ring_until(&client, "the dead worker down", |view| {
            view.members.iter().any(|m| m.id == dead && m.state == wimpy_client::MemberState::Down)
        })
        .await;
        let down_at = (std::time::Instant::now(), down.ring.epoch());
        // Taken off the ring by itself, after its second of silence.
        let view = ring_until(&client, "the dead worker removed", |view| {
            view.members.len() == 3 && view.members.iter().all(|m| m.id != dead)
        })
        .await;
        eprintln!("removed {:?} after it was seen down", down_at.0.elapsed());
        assert!(view.ring.epoch() > down_at.1);
        for m in &view.members {
            assert_eq!(m.state, wimpy_client::MemberState::Serving, "worker {}", m.id);
            let w = member(&m.address).await;
            for i in 0..300u32 {
                let got = asked(&w, format!("k{i}").as_bytes()).await;
                assert!(
                    matches!(&got, KeyAnswer::Value(v) if v[..] == i.to_le_bytes()),
                    "k{i} on worker {}: {got:?}",
                    m.id
                );
            }
        }
        assert_numbered(&client, "k", 300).await;
    });
    drop(workers);
}

#[test]
fn a_removed_worker_s_ranges_are_copied_at_the_set_rate_with_their_progress_in_status_as_writes_go_on() {
    const RATE: u64 = 2_000_000;
    let dir = tempfile::tempdir().unwrap();
    let master = master_copying_at(3, RATE);
    let mut workers: Vec<Option<Node>> =
        (0..4).map(|i| Some(worker(master.addr, dir.path().join(format!("w{i}"))))).collect();
    client_side(|| async {
        let client = connected(master.addr, 4).await;
        // About 3 MB of values: each worker holds three quarters of them.
        let value = |i: u32, round: u32| -> Vec<u8> { (0..1000u32).map(|j| (i ^ j ^ round) as u8).collect() };
        let puts = (0..3000u32).map(|i| {
            let client = &client;
            async move { client.put(format!("k{i}").as_bytes(), &value(i, 0)).await.unwrap() }
        });
        futures::future::join_all(puts).await;
        let lost = id_of(&client.refresh_ring().await.unwrap(), workers[3].as_ref().unwrap());
        drop(workers[3].take());
        ring_until(&client, "the stopped worker down", |view| {
            view.members.iter().any(|m| m.id == lost && m.state == wimpy_client::MemberState::Down)
        })
        .await;
        // Writes (and deletes) go on while its chains take on new members:
        // those of the first pass are in the second one's copy.
        let history = History::new();
        let removing = async {
            client.remove(lost).await.unwrap();
        };
        let writing = async {
            let mut slowest = Duration::ZERO;
            for i in 0..400u32 {
                let key = format!("k{}", i * 7);
                let began = std::time::Instant::now();
                if i % 5 == 0 {
                    let deadline = began + Duration::from_secs(20);
                    while history.delete(key.as_bytes(), client.delete(key.as_bytes())).await.is_err() {
                        assert!(std::time::Instant::now() < deadline, "the delete of {key} was never acknowledged");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } else {
                    put_until_acked(&history, &client, key.as_bytes(), &value(i * 7, 1)).await;
                }
                slowest = slowest.max(began.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            slowest
        };
        let watching = async {
            let mut seen: Vec<wimpy_client::RangeMove> = Vec::new();
            loop {
                match client.status().await.unwrap().moving {
                    Some(m) => seen.push(m),
                    None if !seen.is_empty() => return seen,
                    None => {}
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        };
        let began = std::time::Instant::now();
        let ((), slowest, seen) = tokio::join!(removing, writing, watching);
        let took = began.elapsed();
        let first: Vec<_> = seen.iter().filter(|m| m.pass == 1).collect();
        let last = first.last().expect("status showed the first pass");
        eprintln!(
            "the removal took {took:?}; its first pass copied {} bytes of {} expected; the slowest write took {slowest:?}",
            last.bytes_copied, last.bytes_expected
        );
        assert!(seen.iter().all(|m| m.worker == lost && m.change == wimpy_client::MoveChange::Remove));
        assert!(last.bytes_expected > 1_000_000, "the estimate counts the sources' live bytes: {last:?}");
        assert!(first.iter().any(|m| m.eta().is_some()), "the first pass says how long it has to go");
        assert!(first.iter().any(|m| m.bytes_copied >= 1_000_000), "status showed the pass a megabyte in: {last:?}");
        for m in first.iter().filter(|m| m.bytes_copied >= 1_000_000) {
            // The source sleeps after each 256 KiB chunk until it is due.
            assert!(m.rate() <= 1.5 * RATE as f64, "copying at {} B/s, over the cap of {RATE}", m.rate());
            assert_eq!(m.bytes_per_second, RATE);
        }
        assert!(client.status().await.unwrap().moving.is_none(), "nothing moves once the removal is done");
        assert_linearizable(&history);
        // Every key, as last acknowledged, on each of its three copies.
        let view = client.refresh_ring().await.unwrap();
        assert_eq!(view.members.len(), 3);
        for m in &view.members {
            let w = member(&m.address).await;
            for i in 0..3000u32 {
                let key = format!("k{i}");
                let want = match (i % 7, (i / 7) % 5) {
                    (0, 0) if i / 7 < 400 => None,
                    (0, _) if i / 7 < 400 => Some(value(i, 1)),
                    _ => Some(value(i, 0)),
                };
                let got = asked(&w, key.as_bytes()).await;
                match (&got, &want) {
                    (KeyAnswer::Value(v), Some(want)) if v == want => {}
                    (KeyAnswer::NotFound, None) => {}
                    (KeyAnswer::Value(v), _) => {
                        panic!("{key} on worker {}: {} bytes, not what was acknowledged last", m.id, v.len())
                    }
                    _ => panic!("{key} on worker {}: {got:?}, not {} bytes", m.id, want.map_or(0, |w| w.len())),
                }
            }
        }
    });
    drop(workers);
}

/// Every log segment under `dir`, however deep.
fn log_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(log_files(&path));
        } else if path.extension().is_some_and(|x| x == "log") {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_byte_flipped_on_one_copy_is_found_and_repaired_by_the_scrub_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("w{i}"));
    let master = master_keeping(3);
    // Durable at once, so every record is in its log file to be damaged.
    let workers: Vec<Node> =
        (0..3).map(|i| worker_taking(master.addr, data(i), SyncMode::Always, Default::default())).collect();
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        let value = |i: u32, round: u32| -> Vec<u8> { (0..1000u32).map(|j| (i * 7 + j + round) as u8).collect() };
        for i in 0..300u32 {
            client.put(format!("k{i}").as_bytes(), &value(i, 0)).await.unwrap();
        }
        assert_eq!(client.status().await.unwrap().scrub.started, None, "no pass yet");
        // A byte of one value flipped on worker 1's disk while it runs.
        let victim = 123u32;
        let key = format!("k{victim}");
        let needle = [key.as_bytes(), &value(victim, 0)[..32]].concat();
        let (log, at) = log_files(&data(1))
            .into_iter()
            .find_map(|log| {
                let bytes = std::fs::read(&log).unwrap();
                bytes.windows(needle.len()).position(|w| w == needle).map(|at| (log, at))
            })
            .expect("the record is in worker 1's log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[at + needle.len() + 100] ^= 0x08;
        std::fs::write(&log, &bytes).unwrap();
        let view = client.refresh_ring().await.unwrap();
        let damaged = member(&workers[1].addr.to_string()).await;
        let got = asked(&damaged, key.as_bytes()).await;
        assert!(matches!(got, KeyAnswer::Failed(_)), "the damage is caught on read: {got:?}");
        // The pass runs beside a writer of other keys.
        let history = History::new();
        let writing = async {
            for round in 1..=40u32 {
                let i = 200 + round % 50;
                put_until_acked(&history, &client, format!("k{i}").as_bytes(), &value(i, round)).await;
            }
        };
        let (report, ()) = tokio::join!(client.scrub(), writing);
        let report = report.unwrap();
        eprintln!("{report:?}");
        assert_eq!(report.failure, "");
        assert!(report.differing >= 1 && report.repaired >= 1, "the damaged copy is found and repaired: {report:?}");
        assert!(report.ranges >= 3 * 64, "every member's every range is compared: {report:?}");
        assert_eq!(client.status().await.unwrap().scrub, report, "status shows the last pass");
        assert_linearizable(&history);
        let got = asked(&damaged, key.as_bytes()).await;
        assert!(matches!(&got, KeyAnswer::Value(v) if *v == value(victim, 0)), "repaired: {got:?}");
        // Every key reads back from every copy, as last acknowledged.
        let last: std::collections::BTreeMap<u32, u32> = (1..=40u32).map(|round| (200 + round % 50, round)).collect();
        for m in &view.members {
            let w = member(&m.address).await;
            for i in 0..300u32 {
                let want = value(i, last.get(&i).copied().unwrap_or(0));
                let got = asked(&w, format!("k{i}").as_bytes()).await;
                assert!(matches!(&got, KeyAnswer::Value(v) if *v == want), "k{i} on worker {}: {got:?}", m.id);
            }
        }
        // A second pass finds nothing left to repair.
        let again = client.scrub().await.unwrap();
        assert_eq!((again.differing, again.repaired), (0, 0), "{again:?}");
    });
    drop(workers);
}

#[test]
fn with_three_copies_a_join_and_a_leave_under_writes_keep_every_range_on_three_workers_throughout() {
    let dir = tempfile::tempdir().unwrap();
    // Copies capped at 2 MB/s, so that each change takes a while.
    let master = master_copying_at(3, 2_000_000);
    let mut workers: Vec<Node> = (0..3).map(|i| worker(master.addr, dir.path().join(format!("w{i}")))).collect();
    let value = |i: u32, round: u32| {
        let mut v = format!("{i}:{round}:").into_bytes();
        v.resize(1000, i as u8);
        v
    };
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        let puts = (0..1500u32).map(|i| {
            let client = &client;
            async move { client.put(format!("still{i}").as_bytes(), &value(i, 0)).await.unwrap() }
        });
        futures::future::join_all(puts).await;
        // A writer of other keys throughout; a watcher asking, for every
        // ring the master publishes, each member of each of the resting
        // keys' chains for its copy: every one of the three must hold it.
        let history = History::new();
        let done = std::cell::Cell::new(false);
        let writing = async {
            let mut round = 0u32;
            while !done.get() {
                let i = round % 100;
                put_until_acked(&history, &client, format!("busy{i}").as_bytes(), &value(i, round)).await;
                round += 1;
            }
            round
        };
        let watching = async {
            let mut connections: std::collections::HashMap<String, wimpy_schema::wimpy_capnp::worker::Client> =
                Default::default();
            let mut rings = 0;
            let mut last_epoch = 0;
            loop {
                // Read before the ring: once done, this pass checks the last.
                let finished = done.get();
                let view = client.refresh_ring().await.unwrap();
                if view.ring.epoch() != last_epoch {
                    last_epoch = view.ring.epoch();
                    rings += 1;
                    'ring: for i in (0..1500u32).step_by(37) {
                        let key = format!("still{i}");
                        let chain = view.ring.chain_of(key.as_bytes());
                        assert_eq!(chain.len(), 3, "{key} at epoch {last_epoch}: a chain of {}", chain.len());
                        for id in chain.members() {
                            let m = view.members.iter().find(|m| m.id == *id).unwrap();
                            if !connections.contains_key(&m.address) {
                                connections.insert(m.address.clone(), member(&m.address).await);
                            }
                            let mut got = asked(&connections[&m.address], key.as_bytes()).await;
                            // A member that has not heard of this ring yet
                            // says so; it hears within a heartbeat.
                            for _ in 0..200 {
                                match &got {
                                    KeyAnswer::Failed(wimpy_schema::Failure::StaleEpoch(e)) if *e < last_epoch => {
                                        tokio::time::sleep(Duration::from_millis(5)).await;
                                        got = asked(&connections[&m.address], key.as_bytes()).await;
                                    }
                                    _ => break,
                                }
                            }
                            if matches!(&got, KeyAnswer::Value(v) if *v == value(i, 0)) {
                                continue;
                            }
                            // Only a ring still the master's must hold: one
                            // replaced meanwhile may have had its member
                            // drop what it gave away.
                            if client.refresh_ring().await.unwrap().ring.epoch() != last_epoch {
                                break 'ring;
                            }
                            panic!("{key} on worker {id} at epoch {last_epoch}: {got:?}");
                        }
                    }
                }
                if finished {
                    return rings;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let changing = async {
            // A fourth worker joins, then the first leaves.
            workers.push(worker(master.addr, dir.path().join("w3")));
            wait_for_members(&client, 4).await;
            let view = client.refresh_ring().await.unwrap();
            let first = id_of(&view, &workers[0]);
            client.leave(first).await.unwrap();
            wait_for_members(&client, 3).await;
            done.set(true);
        };
        let (rounds, rings, ()) = tokio::join!(writing, watching, changing);
        eprintln!("{rounds} writes went on through {rings} rings");
        assert!(rings >= 3, "the watcher saw the rings before, after the join and after the leave: {rings}");
        assert_linearizable(&history);
        // Every key, resting or busy, on each member of its chain.
        let view = client.refresh_ring().await.unwrap();
        let busy_last: std::collections::BTreeMap<u32, u32> = (0..rounds).map(|r| (r % 100, r)).collect();
        let keys = (0..1500u32)
            .map(|i| (format!("still{i}"), value(i, 0)))
            .chain(busy_last.iter().map(|(i, r)| (format!("busy{i}"), value(*i, *r))));
        let keys: Vec<(String, Vec<u8>)> = keys.collect();
        for m in &view.members {
            let w = member(&m.address).await;
            let held = keys.iter().filter(|(key, _)| view.ring.chain_of(key.as_bytes()).contains(m.id));
            let asks = held.map(|(key, want)| {
                let w = &w;
                async move { (key, want, asked(w, key.as_bytes()).await) }
            });
            for (key, want, got) in futures::future::join_all(asks).await {
                assert!(matches!(&got, KeyAnswer::Value(v) if v == want), "{key} on worker {}: {got:?}", m.id);
            }
        }
        for (key, _) in &keys {
            assert_eq!(view.ring.chain_of(key.as_bytes()).len(), 3, "{key}");
        }
    });
    drop(workers);
}

#[test]
fn with_three_copies_every_member_answers_reads_with_the_newest_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let master = master_keeping(3);
    let workers: Vec<Node> = (0..3).map(|i| worker(master.addr, dir.path().join(format!("w{i}")))).collect();
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        // Many overwrites of a few keys at once: each chain carries several
        // writes of one key on their way together.
        let puts = (0..400u32).map(|i| {
            let client = &client;
            async move {
                client.put(format!("hot{}", i % 5).as_bytes(), format!("v{i}").as_bytes()).await.unwrap();
            }
        });
        futures::future::join_all(puts).await;
        let mut members = Vec::new();
        for w in &workers {
            members.push(member(&w.addr.to_string()).await);
        }
        for k in 0..5 {
            let key = format!("hot{k}").into_bytes();
            let mut seen = Vec::new();
            for m in &members {
                match asked(m, &key).await {
                    KeyAnswer::Value(v) => seen.push(v),
                    other => panic!("a member answered {other:?} for {key:?}"),
                }
            }
            assert!(seen.iter().all(|v| *v == seen[0]), "the members disagree on {key:?}: {seen:?}");
            let written = String::from_utf8(seen[0].clone()).unwrap();
            let i: u32 = written[1..].parse().unwrap();
            assert_eq!(i % 5, k, "{key:?} holds {written}, a value of another key");
            // The SDK's reads go to each member in turn, and agree.
            for _ in 0..3 {
                assert_eq!(client.get(&key).await.unwrap(), Some(seen[0].clone()));
            }
            // Once a write is acknowledged, every member answers it.
            client.put(&key, b"last").await.unwrap();
            for m in &members {
                let got = asked(m, &key).await;
                assert!(matches!(&got, KeyAnswer::Value(v) if v == b"last"), "{got:?}");
            }
        }
        for m in &members {
            assert!(matches!(asked(m, b"never").await, KeyAnswer::NotFound));
        }
    });
}

#[test]
fn with_three_copies_every_acknowledged_write_is_on_three_workers() {
    let dir = tempfile::tempdir().unwrap();
    let master = master_keeping(3);
    let mut workers: Vec<Node> = (0..3).map(|i| worker(master.addr, dir.path().join(format!("w{i}")))).collect();
    let mut expected: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
    let big = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect::<Vec<u8>>();
    client_side(|| async {
        let client = connected(master.addr, 3).await;
        // Batched (many in flight), alone, streamed in one and in several
        // forwarded messages; overwritten and deleted.
        let puts = (0..300u32).map(|i| {
            let client = &client;
            async move { client.put(format!("k{i}").as_bytes(), &i.to_le_bytes()).await.unwrap() }
        });
        futures::future::join_all(puts).await;
        for i in 0..300u32 {
            expected.insert(format!("k{i}").into_bytes(), Some(i.to_le_bytes().to_vec()));
        }
        for i in (0..300u32).step_by(3) {
            client.put(format!("k{i}").as_bytes(), b"again").await.unwrap();
            expected.insert(format!("k{i}").into_bytes(), Some(b"again".to_vec()));
        }
        for i in (1..300u32).step_by(5) {
            assert!(client.delete(format!("k{i}").as_bytes()).await.unwrap());
            expected.insert(format!("k{i}").into_bytes(), None);
        }
        for (key, len) in [("alone", 200 << 10), ("streamed", 3 << 20), ("streamed-long", 9 << 20)] {
            client.put(key.as_bytes(), &big(len, len as u8)).await.unwrap();
            expected.insert(key.as_bytes().to_vec(), Some(big(len, len as u8)));
        }
        for (k, v) in &expected {
            assert_eq!(&client.get(k).await.unwrap(), v, "{}", String::from_utf8_lossy(k));
        }
    });
    // A fourth worker joins: the chains it enters copy their ranges to it,
    // and writes after it go down the new chains. Then the first leaves:
    // the chains it was in take another worker, which gets their copies.
    workers.push(worker(master.addr, dir.path().join("w3")));
    let mut leaver = None;
    client_side(|| async {
        let client = connected(master.addr, 4).await;
        for i in 0..100u32 {
            client.put(format!("after{i}").as_bytes(), &i.to_be_bytes()).await.unwrap();
            expected.insert(format!("after{i}").into_bytes(), Some(i.to_be_bytes().to_vec()));
        }
        let view = client.refresh_ring().await.unwrap();
        let first = view.members.iter().find(|m| m.address == workers[0].addr.to_string()).unwrap().id;
        client.leave(first).await.unwrap();
        leaver = Some(0);
        wait_for_members(&client, 3).await;
        for i in 0..100u32 {
            client.put(format!("left{i}").as_bytes(), &i.to_be_bytes()).await.unwrap();
            expected.insert(format!("left{i}").into_bytes(), Some(i.to_be_bytes().to_vec()));
        }
        for (k, v) in &expected {
            assert_eq!(&client.get(k).await.unwrap(), v, "{}", String::from_utf8_lossy(k));
        }
    });
    drop(workers);
    let keys: Vec<Vec<u8>> = expected.keys().cloned().collect();
    // The worker that left keeps what it gave away; the count is of the
    // three still in the cluster.
    let copies: Vec<_> =
        (0..4).filter(|i| Some(*i) != leaver).map(|i| stored(&dir.path().join(format!("w{i}")), &keys)).collect();
    for (n, (key, want)) in expected.iter().enumerate() {
        let held: Vec<&(Vec<u8>, u64)> = copies.iter().filter_map(|c| c[n].as_ref()).collect();
        let name = String::from_utf8_lossy(key);
        match want {
            // A deleted key is on no worker of its chain; one that left the
            // chain may still hold an older copy until it drops the range.
            None => assert!(held.len() <= 1, "{name}: deleted, yet on {} workers", held.len()),
            Some(value) => {
                let newest = held.iter().map(|(_, v)| *v).max().unwrap_or(0);
                assert!(newest > 0, "{name}: written through a chain without a version");
                let current: Vec<_> = held.iter().filter(|(_, v)| *v == newest).collect();
                assert!(current.len() >= 3, "{name}: the newest version is on {} workers, not 3", current.len());
                assert!(current.iter().all(|(v, _)| v == value), "{name}: a copy holds another value");
            }
        }
    }
}
