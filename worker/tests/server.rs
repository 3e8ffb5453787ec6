//! The worker's RPC service, served on 127.0.0.1:0 in-process and called
//! through a real Cap'n Proto connection.

use std::net::SocketAddr;
use std::sync::Arc;

mod common;

use common::tls;
use wimpy_net::Role;
use wimpy_schema::wimpy_capnp::{failure, get_result, key_op_result, worker, worker_admin, write_result};
use wimpy_schema::{LimitKind, Ring};
use wimpy_store::{CompactionOptions, Options, Store, SyncMode};
use wimpy_worker::server::{WorkerState, run};

struct Running {
    addr: SocketAddr,
    state: Arc<WorkerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        segment_bytes: 1 << 22,
        max_value_bytes: 2 << 20,
        compaction: CompactionOptions { enabled: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn start(id: u64, sync: SyncMode) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(sync)).unwrap();
    start_on(id, store, dir)
}

/// Serves `store`, which lives in `dir`.
fn start_on(id: u64, store: Store, dir: tempfile::TempDir) -> Running {
    serve_state(Arc::new(WorkerState::new(id, store, engine())), dir)
}

/// A compute engine on one CPU thread (these tests run no GPU jobs).
fn engine() -> Arc<wimpy_compute::Engine> {
    Arc::new(wimpy_compute::Engine::start(&wimpy_compute::EngineConfig {
        backends: vec![wimpy_compute::BackendKind::Simd],
        cpu_threads: 1,
        ..Default::default()
    }))
}

/// Serves `state`, whose store lives in `dir`.
fn serve_state(state: Arc<WorkerState>, dir: tempfile::TempDir) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            run(listener, served, tls(Role::Worker, "worker"), 2, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    Running { addr, state, stop: Some(stop), thread: Some(thread), _dir: dir }
}

/// Connects as the master would (these tests drive membership calls too).
async fn connect(addr: SocketAddr) -> worker::Client {
    connect_as(addr, Role::Master, "master").await
}

/// Connects with a certificate for `role` named `name`.
async fn connect_as(addr: SocketAddr, role: Role, name: &str) -> worker::Client {
    wimpy_net::connect(&addr.to_string(), &tls(role, name), &[Role::Worker]).await.unwrap()
}

/// Runs `body` on a client-side current-thread runtime with a LocalSet.
fn client_side<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&rt, body());
}

#[derive(Debug, PartialEq)]
enum Got {
    Value(Vec<u8>),
    NotFound,
    Stale(u64),
    TooLarge(LimitKind, u64, u64),
    Stored,
    Deleted(bool),
    Other(String),
}

fn failure_of(f: failure::Reader<'_>) -> Got {
    match f.which().unwrap() {
        failure::StaleEpoch(e) => Got::Stale(e),
        failure::TooLarge(g) => {
            let kind = g.get_kind().unwrap();
            // The words readers of schema version 1 compare stay as they were.
            assert_eq!(g.get_what().unwrap().to_str().unwrap(), kind.to_string());
            Got::TooLarge(kind, g.get_limit(), g.get_actual())
        }
        failure::Invalid(m) => Got::Other(format!("invalid: {}", m.unwrap().to_str().unwrap())),
        failure::Unavailable(m) => Got::Other(format!("unavailable: {}", m.unwrap().to_str().unwrap())),
        failure::Overloaded(()) => Got::Other("overloaded".into()),
        failure::Storage(g) => {
            Got::Other(format!("storage ({:?}): {}", g.get_kind().unwrap(), g.get_message().unwrap().to_str().unwrap()))
        }
        failure::Forbidden(g) => Got::Other(format!("forbidden: {}", g.get_message().unwrap().to_str().unwrap())),
        failure::Compute(c) => Got::Other(format!("compute: {}", c.unwrap().get_message().unwrap().to_str().unwrap())),
    }
}

async fn get(c: &worker::Client, key: &[u8], epoch: u64) -> Got {
    let mut req = c.get_request();
    req.get().set_key(key);
    req.get().set_epoch(epoch);
    let resp = req.send().promise.await.unwrap();
    match resp.get().unwrap().get_result().unwrap().which().unwrap() {
        get_result::Value(v) => Got::Value(v.unwrap().to_vec()),
        get_result::NotFound(()) => Got::NotFound,
        get_result::Failure(f) => failure_of(f.unwrap()),
        get_result::Streamed(n) => Got::Other(format!("streamed {n}")),
    }
}

async fn put(c: &worker::Client, key: &[u8], value: &[u8], epoch: u64) -> Result<(), Got> {
    let mut req = c.put_request();
    req.get().set_key(key);
    req.get().set_value(value);
    req.get().set_epoch(epoch);
    let resp = req.send().promise.await.unwrap();
    match resp.get().unwrap().get_result().unwrap().which().unwrap() {
        write_result::Ok(()) => Ok(()),
        write_result::Failure(f) => Err(failure_of(f.unwrap())),
    }
}

/// One operation of a raw `batch` call: a get (None) or a put.
type RawOp<'a> = (&'a [u8], Option<&'a [u8]>);

/// Sends `ops` as one `batch` call, deletes written as puts of `b"!del"`.
async fn batch(c: &worker::Client, ops: &[RawOp<'_>], epoch: u64) -> Vec<Got> {
    let mut req = c.batch_request();
    req.get().set_epoch(epoch);
    let mut list = req.get().init_ops(ops.len() as u32);
    for (i, (key, put)) in ops.iter().enumerate() {
        let mut op = list.reborrow().get(i as u32);
        op.set_key(key);
        match put {
            None => op.set_get(()),
            Some(b"!del") => op.set_delete(()),
            Some(v) => op.set_put(v),
        }
    }
    let resp = req.send().promise.await.unwrap();
    let results = resp.get().unwrap().get_results().unwrap();
    results
        .iter()
        .map(|r| match r.which().unwrap() {
            key_op_result::Value(v) => Got::Value(v.unwrap().to_vec()),
            key_op_result::NotFound(()) => Got::NotFound,
            key_op_result::Stored(()) => Got::Stored,
            key_op_result::Deleted(was) => Got::Deleted(was),
            key_op_result::Failure(f) => failure_of(f.unwrap()),
        })
        .collect()
}

/// The membership calls of the worker behind `c` (the tests connect as
/// the master, so they are handed out).
async fn admin(c: &worker::Client) -> worker_admin::Client {
    let answer = c.admin_request().send().promise.await.unwrap();
    assert!(!answer.get().unwrap().has_refused(), "the master is refused the membership calls");
    answer.get().unwrap().get_admin().unwrap()
}

async fn set_ring(c: &worker::Client, ring: &Ring) {
    set_ring_at(c, ring, &[]).await
}

/// [`set_ring`], with the members at `addresses` (id, address).
async fn set_ring_at(c: &worker::Client, ring: &Ring, addresses: &[(u64, String)]) {
    let mut req = admin(c).await.set_ring_request();
    let mut r = req.get().init_ring();
    r.set_epoch(ring.epoch());
    r.set_vnodes(ring.vnodes());
    r.set_replicas(ring.replicas());
    let members = ring.members();
    let mut list = r.init_members(members.len() as u32);
    for (i, id) in members.iter().enumerate() {
        let mut m = list.reborrow().get(i as u32);
        m.set_id(*id);
        if let Some((_, address)) = addresses.iter().find(|(a, _)| a == id) {
            m.set_address(address);
        }
    }
    req.send().promise.await.unwrap();
}

#[test]
fn put_get_delete_over_rpc() {
    let w = start(1, SyncMode::Always);
    client_side(|| async move {
        let c = connect(w.addr).await;
        // Not on a ring yet: nothing is served.
        assert!(matches!(get(&c, b"k", 0).await, Got::Other(m) if m.starts_with("unavailable")));
        set_ring(&c, &Ring::new(1, 64, [1])).await;
        assert_eq!(get(&c, b"k", 1).await, Got::NotFound);
        put(&c, b"k", b"v1", 1).await.unwrap();
        assert_eq!(get(&c, b"k", 1).await, Got::Value(b"v1".to_vec()));
        put(&c, b"k", &vec![7u8; 100_000], 1).await.unwrap();
        assert_eq!(get(&c, b"k", 1).await, Got::Value(vec![7u8; 100_000]));

        let mut del = c.delete_request();
        del.get().set_key(b"k");
        del.get().set_epoch(1);
        let resp = del.send().promise.await.unwrap();
        let deleted = match resp.get().unwrap().get_result().unwrap().which().unwrap() {
            wimpy_schema::wimpy_capnp::delete_result::Deleted(d) => d,
            wimpy_schema::wimpy_capnp::delete_result::Failure(_) => panic!("delete failed"),
        };
        assert!(deleted);
        assert_eq!(get(&c, b"k", 1).await, Got::NotFound);
    });
    assert_eq!(w.state.store().unwrap().stats().live_keys, 0);
}

#[test]
fn keys_routed_by_another_ring_are_refused_with_the_current_epoch() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        // Workers 1 and 2 share the ring at epoch 5; this is worker 1.
        let ring = Ring::new(5, 64, [1, 2]);
        set_ring(&c, &ring).await;
        let mine = (0u32..).map(|i| i.to_le_bytes()).find(|k| ring.owner(k) == Some(1)).unwrap();
        let theirs = (0u32..).map(|i| i.to_le_bytes()).find(|k| ring.owner(k) == Some(2)).unwrap();
        put(&c, &mine, b"x", 5).await.unwrap();
        assert_eq!(put(&c, &theirs, b"x", 5).await, Err(Got::Stale(5)));
        assert_eq!(get(&c, &theirs, 5).await, Got::Stale(5));
        // A caller ahead of the worker waits for it to catch up.
        assert_eq!(get(&c, &mine, 6).await, Got::Stale(5));
        // An older ring is ignored; the worker keeps epoch 5.
        set_ring(&c, &Ring::new(4, 64, [2])).await;
        assert_eq!(get(&c, &mine, 5).await, Got::Value(b"x".to_vec()));
    });
}

#[test]
fn a_ring_the_master_does_not_confirm_drops_no_key_and_one_ahead_of_it_is_left_for_the_masters() {
    let w = start(1, SyncMode::Never);
    let state = w.state.clone();
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(3, 32, [1])).await;
        state.confirm_epoch(3);
        for i in 0..200u32 {
            put(&c, &i.to_le_bytes(), b"v", 3).await.unwrap();
        }
        // A ring far ahead that gives every key to another worker: routed
        // by at once (refusing is safe), but the master's epoch is still 3.
        set_ring(&c, &Ring::new(1000, 32, [2])).await;
        assert_eq!(get(&c, &7u32.to_le_bytes(), 1000).await, Got::Stale(1000));
        state.confirm_epoch(3);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(state.store().unwrap().stats().live_keys, 200, "no key was dropped");
        // The heartbeat fetches the master's ring, older than the one held,
        // and the worker follows it back.
        let members = vec![wimpy_schema::MemberInfo {
            id: 1,
            address: w.addr.to_string(),
            state: wimpy_schema::MemberState::Serving,
            stats: Default::default(),
            reason: String::new(),
            certificate: String::new(),
            certificate_expires: None,
        }];
        state.follow_master(wimpy_schema::RingInfo { epoch: 3, vnodes: 32, replicas: 1, members });
        state.confirm_epoch(3);
        for i in 0..200u32 {
            assert_eq!(get(&c, &i.to_le_bytes(), 3).await, Got::Value(b"v".to_vec()), "key {i}");
        }
    });
}

#[test]
fn oversized_and_empty_keys_are_refused_and_the_worker_keeps_serving() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 8, [1])).await;
        let long_key = vec![b'k'; 5000];
        assert_eq!(put(&c, &long_key, b"v", 1).await, Err(Got::TooLarge(LimitKind::Key, 4096, 5000)));
        assert!(matches!(put(&c, b"", b"v", 1).await, Err(Got::Other(m)) if m.contains("empty key")));
        let big = vec![0u8; (2 << 20) + 1];
        assert_eq!(put(&c, b"big", &big, 1).await, Err(Got::TooLarge(LimitKind::Value, 2 << 20, (2 << 20) + 1)));
        put(&c, b"ok", b"fine", 1).await.unwrap();
        assert_eq!(get(&c, b"ok", 1).await, Got::Value(b"fine".to_vec()));
        // A value over what one answer carries is stored, and a plain get
        // says to stream it; one at the limit comes whole.
        let over = vec![7u8; (1 << 20) + 1];
        put(&c, b"over", &over, 1).await.unwrap();
        assert_eq!(get(&c, b"over", 1).await, Got::TooLarge(LimitKind::ValueNeedsStream, 1 << 20, (1 << 20) + 1));
        let at = vec![9u8; 1 << 20];
        put(&c, b"at", &at, 1).await.unwrap();
        assert_eq!(get(&c, b"at", 1).await, Got::Value(at));
    });
}

#[test]
fn fences_refuse_writes_until_the_next_ring_which_also_drops_given_away_keys() {
    let w = start(1, SyncMode::Never);
    let store = w.state.store().unwrap();
    let state = w.state.clone();
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 32, [1])).await;
        state.confirm_epoch(1);
        for i in 0..500u32 {
            put(&c, &i.to_le_bytes(), b"v", 1).await.unwrap();
        }
        let mut req = admin(&c).await.fence_request();
        let mut r = req.get().init_ranges(1);
        r.reborrow().get(0).set_start(0);
        r.reborrow().get(0).set_end(0); // the whole space
        req.send().promise.await.unwrap();
        assert_eq!(put(&c, b"x", b"v", 1).await, Err(Got::Stale(1)), "a fenced write is refused");
        assert_eq!(get(&c, &7u32.to_le_bytes(), 1).await, Got::Value(b"v".to_vec()), "reads go on");

        // Worker 2 takes part of the space: the fence lifts, and worker 1
        // forgets the keys it gave away.
        let ring = Ring::new(2, 32, [1, 2]);
        set_ring(&c, &ring).await;
        // The master's next heartbeat answer confirms the epoch.
        state.confirm_epoch(2);
        // An overwrite of a key worker 1 keeps (one of the 500 written).
        let mine = (0u32..500).map(|i| i.to_le_bytes()).find(|k| ring.owner(k) == Some(1)).unwrap();
        put(&c, &mine, b"after", 2).await.unwrap();
        let kept = (0..500u32).filter(|i| ring.owner(&i.to_le_bytes()) == Some(1)).count() as u64;
        let mut live = 0;
        for _ in 0..200 {
            live = store.stats().live_keys;
            if live == kept {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(kept > 100 && kept < 400, "ring split {kept}");
        assert_eq!(live, kept, "worker 1 should hold only its own keys");
        for i in 0..500u32 {
            let k = i.to_le_bytes();
            let want = if ring.owner(&k) == Some(1) {
                Got::Value(if k == mine { b"after".to_vec() } else { b"v".to_vec() })
            } else {
                Got::Stale(2)
            };
            assert_eq!(get(&c, &k, 2).await, want, "key {i}");
        }
    });
}

#[test]
fn keys_given_away_and_copied_back_before_the_drop_are_kept() {
    // Worker 1 gives worker 2 part of the space (epoch 2); before worker 1
    // hears that epoch confirmed, the master moves half of those ranges
    // back to it for the ring after (epoch 3, not yet published). The drop
    // of the keys epoch 2 gave away must spare what was copied back.
    let (w1, w2) = (start(1, SyncMode::Never), start(2, SyncMode::Never));
    let (store, state) = (w1.state.store().unwrap(), w1.state.clone());
    client_side(|| async move {
        let (c1, c2) = (connect(w1.addr).await, connect(w2.addr).await);
        set_ring(&c1, &Ring::new(1, 32, [1])).await;
        state.confirm_epoch(1);
        for i in 0..500u32 {
            put(&c1, &i.to_le_bytes(), b"first", 1).await.unwrap();
        }
        let ring = Ring::new(2, 32, [1, 2]);
        set_ring(&c1, &ring).await;
        set_ring(&c2, &ring).await;
        // Worker 2 rewrites the keys it was given.
        let given: Vec<u32> = (0..500u32).filter(|i| ring.owner(&i.to_le_bytes()) == Some(2)).collect();
        for i in &given {
            put(&c2, &i.to_le_bytes(), b"second", 2).await.unwrap();
        }
        let theirs = ring.ranges_held_by(2);
        let back = &theirs[..theirs.len() / 2];
        let mut receive = admin(&c1).await.receive_ranges_request();
        wimpy_schema::ranges::write(receive.get().init_ranges(back.len() as u32), back);
        let sink = receive.send().promise.await.unwrap().get().unwrap().get_sink().unwrap();
        let mut send = admin(&c2).await.send_ranges_request();
        wimpy_schema::ranges::write(send.get().init_ranges(back.len() as u32), back);
        send.get().set_sink(sink);
        let copied = send.send().promise.await.unwrap().get().unwrap().get_records();
        let in_back = |i: u32| back.iter().any(|r| r.contains(wimpy_schema::key_hash(&i.to_le_bytes())));
        let (came_back, stayed_away): (Vec<u32>, Vec<u32>) = given.iter().partition(|&&i| in_back(i));
        assert_eq!(copied, came_back.len() as u64);
        assert!(!came_back.is_empty() && !stayed_away.is_empty(), "the ranges split the keys");

        // The master's heartbeat confirms epoch 2: the keys of the ranges
        // that stayed away go, those copied back stay.
        state.confirm_epoch(2);
        let kept = 500 - stayed_away.len() as u64;
        for _ in 0..200 {
            if store.stats().live_keys == kept {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(store.stats().live_keys, kept, "only the keys that stayed away are dropped");
        for i in came_back {
            assert_eq!(store.get(&i.to_le_bytes()).unwrap().as_deref(), Some(&b"second"[..]), "key {i}");
        }
        for i in stayed_away {
            assert_eq!(store.get(&i.to_le_bytes()).unwrap(), None, "key {i}");
        }
    });
}

#[test]
fn a_batch_answers_each_operation_in_order_and_on_its_own() {
    let w = start(1, SyncMode::Always);
    client_side(|| async move {
        let c = connect(w.addr).await;
        let ring = Ring::new(5, 64, [1, 2]);
        set_ring(&c, &ring).await;
        let mine: Vec<[u8; 4]> =
            (0u32..).map(|i| i.to_le_bytes()).filter(|k| ring.owner(k) == Some(1)).take(2).collect();
        let theirs = (0u32..).map(|i| i.to_le_bytes()).find(|k| ring.owner(k) == Some(2)).unwrap();
        let (a, b) = (&mine[0][..], &mine[1][..]);
        let long = (0u32..)
            .map(|i| {
                let mut k = vec![b'k'; 5000];
                k[..4].copy_from_slice(&i.to_le_bytes());
                k
            })
            .find(|k| ring.owner(k) == Some(1))
            .unwrap();
        let got = batch(
            &c,
            &[
                (a, Some(b"1")),
                (a, None),
                (&theirs, Some(b"x")),
                (&theirs, None),
                (a, Some(b"!del")),
                (a, None),
                (&long, Some(b"v")),
                (b, Some(b"2")),
                (b, None),
            ],
            5,
        )
        .await;
        assert_eq!(got.len(), 9);
        assert_eq!(
            &got[..6],
            &[Got::Stored, Got::Value(b"1".to_vec()), Got::Stale(5), Got::Stale(5), Got::Deleted(true), Got::NotFound]
        );
        assert_eq!(got[6], Got::TooLarge(LimitKind::Key, 4096, 5000));
        assert_eq!(&got[7..], &[Got::Stored, Got::Value(b"2".to_vec())]);
        // A caller ahead of the worker: every operation waits for it.
        assert_eq!(batch(&c, &[(a, None), (b, Some(b"3"))], 6).await, vec![Got::Stale(5), Got::Stale(5)]);
        assert_eq!(get(&c, b, 5).await, Got::Value(b"2".to_vec()));
    });
    assert_eq!(w.state.store().unwrap().stats().live_keys, 1);
}

#[test]
fn oversized_batches_are_refused_whole_and_a_full_answer_defers_the_rest() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 8, [1])).await;
        let invalid = |g: &Got| matches!(g, Got::Other(m) if m.starts_with("invalid"));

        // Too many operations: none is carried out.
        let keys: Vec<Vec<u8>> = (0..1025u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let ops: Vec<RawOp<'_>> = keys.iter().map(|k| (&k[..], Some(&b"v"[..]))).collect();
        let got = batch(&c, &ops, 1).await;
        assert!(got.len() == 1025 && got.iter().all(invalid), "{:?}", &got[..2]);
        assert_eq!(w.state.store().unwrap().stats().live_keys, 0);

        // Too many bytes: 5 MiB of values against 4 MiB allowed.
        let mib = vec![9u8; 1 << 20];
        let ops: Vec<RawOp<'_>> = keys[..5].iter().map(|k| (&k[..], Some(&mib[..]))).collect();
        let got = batch(&c, &ops, 1).await;
        assert!(got.iter().all(invalid), "{:?}", got);
        assert_eq!(w.state.store().unwrap().stats().live_keys, 0);

        // Five values of 1 MiB read in one batch: four fill the answer; the
        // fifth is refused as "batch answer", to be fetched on its own.
        for k in &keys[..5] {
            put(&c, k, &mib, 1).await.unwrap();
        }
        let ops: Vec<RawOp<'_>> = keys[..5].iter().map(|k| (&k[..], None)).collect();
        let got = batch(&c, &ops, 1).await;
        assert!(got[..4].iter().all(|g| *g == Got::Value(mib.clone())));
        assert_eq!(got[4], Got::TooLarge(LimitKind::BatchAnswerFull, 4 << 20, 5 << 20));
        assert_eq!(get(&c, &keys[4], 1).await, Got::Value(mib.clone()));
    });
}

#[test]
fn many_requests_for_one_waiter_are_split_at_the_batch_limits_and_handed_back_in_order() {
    use wimpy_net::Batcher;
    use wimpy_schema::batch::{KeyAnswer, KeyRequest, MAX_BATCH_OPS};
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 8, [1])).await;
        let batcher = Batcher::<(), worker::Client>::new();
        // More puts than one batch may carry, after a request queued for
        // another waiter: they fill that batch up and spill into a second.
        let single = batcher.call((), &c, 1, KeyRequest::Put(b"first".to_vec(), b"1".to_vec()));
        let puts: Vec<KeyRequest> =
            (0..1500u32).map(|i| KeyRequest::Put(i.to_le_bytes().to_vec(), i.to_be_bytes().to_vec())).collect();
        let many = batcher.call_many((), &c, 1, puts.clone());
        let (single, (back, answered)) = futures::join!(single, many);
        assert_eq!(single.unwrap(), KeyAnswer::Stored);
        assert_eq!(back, puts);
        let answers = answered.unwrap();
        assert!(answers.len() == 1500 && answers.iter().all(|a| *a == KeyAnswer::Stored));
        assert_eq!(batcher.stats().requests, 1501);
        assert_eq!(batcher.stats().batches, 1501usize.div_ceil(MAX_BATCH_OPS) as u64);

        let gets: Vec<KeyRequest> = (0..1500u32).rev().map(|i| KeyRequest::Get(i.to_le_bytes().to_vec())).collect();
        let (back, answered) = batcher.call_many((), &c, 1, gets.clone()).await;
        assert_eq!(back, gets);
        let expected: Vec<KeyAnswer> = (0..1500u32).rev().map(|i| KeyAnswer::Value(i.to_be_bytes().to_vec())).collect();
        assert_eq!(answered.unwrap(), expected);

        // A caller ahead of the worker's ring: each answer says so.
        let (_, answered) = batcher.call_many((), &c, 2, gets[..3].to_vec()).await;
        let stale = |a: &KeyAnswer| matches!(a, KeyAnswer::Failed(wimpy_schema::Failure::StaleEpoch(1)));
        assert!(answered.unwrap().iter().all(stale));

        // The worker is gone: the requests come back with the batch's error.
        drop(w);
        let (back, answered) = batcher.call_many((), &c, 1, gets[..3].to_vec()).await;
        assert_eq!(back, &gets[..3]);
        assert!(answered.is_err());
    });
}

/// Fences the whole key space of the worker behind `c`.
async fn fence_everything(c: &worker::Client) {
    let mut req = admin(c).await.fence_request();
    let mut r = req.get().init_ranges(1);
    r.reborrow().get(0).set_start(0);
    r.reborrow().get(0).set_end(0);
    req.send().promise.await.unwrap();
}

#[test]
fn an_upload_committed_after_a_fence_is_refused_not_lost() {
    let w = start(1, SyncMode::Always);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 32, [1])).await;
        let value = vec![9u8; 3 << 19];
        let mut req = c.put_stream_request();
        req.get().set_key(b"late");
        req.get().set_size(value.len() as u64);
        req.get().set_epoch(1);
        let resp = req.send().promise.await.unwrap();
        let upload = resp.get().unwrap().get_upload().unwrap();
        for chunk in value.chunks(1 << 20) {
            let mut write = upload.write_request();
            write.get().set_chunk(chunk);
            write.send().await.unwrap();
        }
        // The key's range starts moving before the commit lands: storing
        // the value now would put it where the last copy no longer looks.
        fence_everything(&c).await;
        let done = upload.commit_request().send().promise.await.unwrap();
        let refused = match done.get().unwrap().get_result().unwrap().which().unwrap() {
            write_result::Ok(()) => panic!("a commit after the fence was stored"),
            write_result::Failure(f) => failure_of(f.unwrap()),
        };
        assert_eq!(refused, Got::Stale(1));
        assert_eq!(get(&c, b"late", 1).await, Got::NotFound);
    });
}

#[test]
fn a_fence_returns_only_once_the_writes_that_passed_it_are_durable() {
    // With sync=always a put is stored (and waits for its fsync) on the
    // blocking pool after its fence check; the fence must wait for it, or
    // the last copy of the range could miss it. Values of most of a MiB
    // make each store call take a while, so many are still on their way
    // when the fence arrives.
    let w = start(1, SyncMode::Always);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 32, [1])).await;
        let value = std::rc::Rc::new(vec![3u8; 900 << 10]);
        let writers: Vec<_> = (0..200u32)
            .map(|i| {
                let (c, value) = (c.clone(), value.clone());
                tokio::task::spawn_local(async move { (i, put(&c, &i.to_le_bytes(), &value, 1).await) })
            })
            .collect();
        tokio::task::yield_now().await;
        fence_everything(&c).await;
        // Everything acknowledged is in the store now, as the copy would see it.
        let live_at_fence = w.state.store().unwrap().stats().live_keys;
        let mut acked = 0;
        for writer in writers {
            let (i, outcome) = writer.await.unwrap();
            match outcome {
                Ok(()) => acked += 1,
                Err(got) => assert_eq!(got, Got::Stale(1), "key {i}"),
            }
        }
        assert_eq!(live_at_fence, acked, "every write acknowledged was stored before the fence returned");
    });
}

#[test]
fn a_failed_store_answers_unavailable_and_serves_again_once_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let disk = wimpy_store::io::FaultyDir::new(dir.path()).unwrap();
    let store = Store::open_in(Arc::new(disk.clone()), options(SyncMode::Always)).unwrap();
    let w = start_on(1, store, dir);
    let value = |i: u32| vec![i as u8; 1000 + i as usize];
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 64, [1])).await;
        for i in 0..50u32 {
            put(&c, &i.to_be_bytes(), &value(i), 1).await.unwrap();
        }
        assert_eq!(w.state.store_slot().failure(), None);
        // The disk goes: the next write tears, and every call after fails.
        disk.fail_write_at(0);
        let unsure = put(&c, b"unsure", &[9u8; 5000], 1).await;
        assert!(matches!(&unsure, Err(Got::Other(m)) if m.starts_with("storage")), "{unsure:?}");
        let why = w.state.store_slot().failure().expect("the store says it failed");
        assert!(why.contains("injected"), "{why}");
        // Its keys are unavailable, not missing, and writes are refused alike.
        let got = get(&c, &0u32.to_be_bytes(), 1).await;
        assert!(matches!(&got, Got::Other(m) if m.starts_with("unavailable") && m.contains("injected")), "{got:?}");
        let refused = put(&c, b"new", b"v", 1).await;
        assert!(matches!(&refused, Err(Got::Other(m)) if m.starts_with("unavailable")), "{refused:?}");

        // Reopening fails while the disk is still gone, and says so.
        let still = w.state.store_slot().heal().unwrap_err();
        assert!(still.contains("reopening it failed"), "{still}");
        let got = get(&c, &0u32.to_be_bytes(), 1).await;
        assert!(matches!(&got, Got::Other(m) if m.starts_with("unavailable")), "{got:?}");

        // The disk is back: the store reopens from its log and serves.
        disk.reset().unwrap();
        let report = w.state.store_slot().heal().unwrap().expect("the store was reopened");
        assert!(report.live_keys >= 50, "{report:?}");
        assert_eq!(w.state.store_slot().failure(), None);
        assert_eq!(w.state.store_slot().heal().unwrap().map(|r| r.live_keys), None, "nothing more to heal");
        for i in 0..50u32 {
            assert_eq!(get(&c, &i.to_be_bytes(), 1).await, Got::Value(value(i)), "acknowledged write {i}");
        }
        // The write whose outcome was unknown is there whole or not at all.
        let unsure = get(&c, b"unsure", 1).await;
        assert!(unsure == Got::NotFound || unsure == Got::Value(vec![9u8; 5000]), "{unsure:?}");
        put(&c, b"new", b"v", 1).await.unwrap();
        assert_eq!(get(&c, b"new", 1).await, Got::Value(b"v".to_vec()));
    });
}

/// A forward through `link`, numbered `seq` on it, of one write of `key`
/// (numbered `version`, holding `value`) at `epoch`.
async fn forward_at(
    link: &wimpy_schema::wimpy_capnp::chain_link::Client,
    key: &[u8],
    epoch: u64,
    seq: u64,
    version: u64,
    value: &[u8],
) -> Got {
    let mut req = link.forward_request();
    req.get().set_epoch(epoch);
    req.get().set_seq(seq);
    let mut write = req.get().init_writes(1).get(0);
    write.set_key(key);
    write.set_version(version);
    let mut put = write.init_put();
    put.set_offset(0);
    put.set_total(value.len() as u64);
    put.set_bytes(value);
    let answer = req.send().promise.await.unwrap();
    match answer.get().unwrap().get_result().unwrap().which().unwrap() {
        wimpy_schema::wimpy_capnp::chain_result::Ok(()) => Got::Stored,
        wimpy_schema::wimpy_capnp::chain_result::Failure(f) => failure_of(f.unwrap()),
    }
}

/// A forward of one write of `key` at `epoch` through `link`.
async fn forward(link: &wimpy_schema::wimpy_capnp::chain_link::Client, key: &[u8], epoch: u64) -> Got {
    forward_at(link, key, epoch, 0, 5, b"v").await
}

/// A chain link to the worker at `addr` as worker `from`'s link number
/// `generation`.
async fn chain_link(addr: SocketAddr, from: u64, generation: u64) -> wimpy_schema::wimpy_capnp::chain_link::Client {
    let w = connect_as(addr, Role::Worker, &format!("worker-{from}")).await;
    let mut req = w.chain_request();
    req.get().set_from(from);
    req.get().set_generation(generation);
    req.send().promise.await.unwrap().get().unwrap().get_link().unwrap()
}

/// Keys k0, k1, ... whose chain under `ring` worker `id` heads.
fn headed_by(ring: &Ring, id: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..).map(|i| format!("k{i}").into_bytes()).filter(move |k| ring.chain_of(k).head() == Some(id))
}

/// A ring of workers 1 and 2 keeping two copies, and a key whose chain
/// worker 2 heads (so worker 1 is its tail).
fn two_copies() -> (Ring, Vec<u8>) {
    let ring = Ring::new(1, 8, [1, 2]).with_replicas(2);
    let key = headed_by(&ring, 2).next().unwrap();
    (ring, key)
}

#[test]
fn a_head_whose_writes_on_their_way_fill_its_room_holds_new_ones_back() {
    // Worker 1 heads a two-copy chain whose next member takes connections
    // and never answers; it has room for one 600-byte write on its way.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(SyncMode::Never)).unwrap();
    let state = Arc::new(WorkerState::new(1, store, engine()).with_chain_room(1000));
    let w = serve_state(state, dir);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let store = w.state.store().unwrap();
    client_side(|| async move {
        let c = connect(w.addr).await;
        let ring = Ring::new(1, 8, [1, 2]).with_replicas(2);
        set_ring_at(&c, &ring, &[(1, w.addr.to_string()), (2, silent.local_addr().unwrap().to_string())]).await;
        let ours: Vec<Vec<u8>> = headed_by(&ring, 1).take(2).collect();
        let (first, second) = (ours[0].clone(), ours[1].clone());
        let value = vec![7u8; 600];
        let c2 = c.clone();
        let (v1, v2) = (value.clone(), value.clone());
        let one = tokio::task::spawn_local(async move { put(&c, &first, &v1, 1).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let two = tokio::task::spawn_local(async move { put(&c2, &second, &v2, 1).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // The first is stored here and on its way; the second waits for
        // room, not yet numbered or stored.
        assert_eq!(store.get(&ours[0]).unwrap(), Some(value.clone()));
        assert_eq!(store.get(&ours[1]).unwrap(), None, "a write went ahead with no room for it");
        // The next member never answers: the first fails (unavailable),
        // its room goes to the second, which fails the same way.
        for answer in [one.await.unwrap(), two.await.unwrap()] {
            assert!(matches!(&answer, Err(Got::Other(m)) if m.starts_with("unavailable")), "{answer:?}");
        }
        assert_eq!(store.get(&ours[1]).unwrap(), Some(value), "the second went ahead once there was room");
    });
}

#[test]
fn forwards_on_a_link_are_stored_in_their_order_whatever_order_they_arrive_in() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        let (ring, key) = two_copies();
        set_ring(&c, &ring).await;
        let link = chain_link(w.addr, 2, 1).await;
        // The second forward goes first; it waits for the first, so the
        // later write is the one that stays.
        let (second, first) = futures::join!(forward_at(&link, &key, 1, 1, 7, b"second"), async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            forward_at(&link, &key, 1, 0, 6, b"first").await
        });
        assert_eq!((first, second), (Got::Stored, Got::Stored));
        assert_eq!(get(&c, &key, 1).await, Got::Value(b"second".to_vec()));
        assert_eq!(w.state.store().unwrap().get_versioned(&key).unwrap().map(|(_, v)| v), Some(7));
    });
}

#[test]
fn a_write_the_chain_did_not_take_is_never_read_back() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        // Worker 1 heads chains whose next member, worker 2, is nowhere.
        let ring = Ring::new(1, 8, [1, 2]).with_replicas(2);
        set_ring(&c, &ring).await;
        let key = headed_by(&ring, 1).next().unwrap();
        // The batch's own read of its write fails with the write.
        let answers = batch(&c, &[(&key, Some(b"unsure")), (&key, None)], 1).await;
        assert!(answers.iter().all(|a| matches!(a, Got::Other(m) if m.starts_with("unavailable"))), "{answers:?}");
        // Held here but not by the tail: a later read answers unavailable
        // once it has waited for the chain, never the value.
        let got = get(&c, &key, 1).await;
        assert!(matches!(&got, Got::Other(m) if m.starts_with("unavailable") && m.contains("copy")), "{got:?}");
    });
}

#[test]
fn a_newer_chain_link_from_a_worker_retires_its_older_one() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        let (ring, key) = two_copies();
        set_ring(&c, &ring).await;
        let old = chain_link(w.addr, 2, 10).await;
        assert_eq!(forward_at(&old, &key, 1, 0, 5, b"old").await, Got::Stored);
        // Worker 2 gave up on the old link and sends again on a new one,
        // then a newer write.
        let new = chain_link(w.addr, 2, 11).await;
        assert_eq!(forward_at(&new, &key, 1, 0, 5, b"old").await, Got::Stored);
        assert_eq!(forward_at(&new, &key, 1, 1, 6, b"new").await, Got::Stored);
        // A forward still on its way on the old link is refused, not
        // stored over the newer write.
        let late = forward_at(&old, &key, 1, 1, 5, b"old").await;
        assert!(matches!(&late, Got::Other(m) if m.starts_with("unavailable")), "{late:?}");
        assert_eq!(get(&c, &key, 1).await, Got::Value(b"new".to_vec()));
        // Another worker's links are its own.
        let other = chain_link(w.addr, 3, 1).await;
        assert_eq!(forward_at(&other, &key, 1, 0, 8, b"from 3").await, Got::Stored);
    });
}

#[test]
fn the_chain_link_is_for_workers_and_takes_no_write_of_a_chain_this_worker_heads() {
    let w = start(1, SyncMode::Never);
    client_side(|| async move {
        let c = connect(w.addr).await;
        set_ring(&c, &Ring::new(1, 8, [1])).await;
        for (role, name) in [(Role::Client, "app"), (Role::Admin, "operator"), (Role::Master, "master")] {
            let answer = connect_as(w.addr, role, name).await.chain_request().send().promise.await.unwrap();
            let answer = answer.get().unwrap();
            assert!(answer.has_refused(), "{name} was handed the chain link");
            let refused = failure_of(answer.get_refused().unwrap());
            assert!(matches!(&refused, Got::Other(m) if m.starts_with("forbidden")), "{refused:?}");
        }
        let answer = connect_as(w.addr, Role::Worker, "worker-2").await.chain_request().send().promise.await.unwrap();
        let link = answer.get().unwrap().get_link().unwrap();
        // One worker on the ring heads every chain: nothing comes to it
        // down one, at its epoch or another.
        assert_eq!(forward(&link, b"k", 1).await, Got::Stale(1));
        assert_eq!(forward(&link, b"k", 7).await, Got::Stale(1));
        assert_eq!(get(&c, b"k", 1).await, Got::NotFound, "a refused forward stored nothing");
    });
}
