//! Proxy mode, FAWN-KV's front end: the master forwards gets, puts and
//! deletes to the owning worker and serves hot keys from a bounded cache.
//!
//! Consistency of the cache for traffic through the master: every put or
//! delete removes its key before and after it is forwarded, and bumps a
//! generation counter as it starts and as it ends; a get caches what it
//! fetched only if no write through the master started or ended while it
//! was fetching. Writes that bypass the master (clients routing directly)
//! cannot be seen here, so entries also expire after a short time to live.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wimpy_net::deadline::{CALL, within};
use wimpy_net::{Batcher, KeyPeer, Role, Security};
use wimpy_schema::Failure;
use wimpy_schema::batch::{BATCHED_VALUE_LIMIT, KeyAnswer, KeyRequest};
use wimpy_schema::wimpy_capnp::worker;

/// Cache sizing and freshness.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Most keys held.
    pub max_entries: usize,
    /// Most value bytes held.
    pub max_bytes: usize,
    /// Values larger than this are never cached: a hot key is a small one.
    pub max_value: usize,
    /// How long an entry may be served, bounding staleness against writes
    /// that bypass the master.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_entries: 65_536, max_bytes: 64 << 20, max_value: 64 << 10, ttl: Duration::from_secs(1) }
    }
}

/// A bounded LRU of key -> value with a time to live.
#[derive(Debug)]
pub struct HotCache {
    entries: lru::LruCache<Vec<u8>, (Vec<u8>, Instant)>,
    bytes: usize,
    config: CacheConfig,
    /// Hits and misses, for status and benchmarks.
    pub hits: u64,
    pub misses: u64,
}

impl HotCache {
    pub fn new(config: CacheConfig) -> HotCache {
        let cap = NonZeroUsize::new(config.max_entries.max(1)).expect("at least one entry");
        HotCache { entries: lru::LruCache::new(cap), bytes: 0, config, hits: 0, misses: 0 }
    }

    /// The cached value of `key`, if fresh at `now`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        match self.entries.get(key) {
            Some((v, stored)) if now.duration_since(*stored) <= self.config.ttl => {
                self.hits += 1;
                Some(v.clone())
            }
            Some(_) => {
                self.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, now: Instant) {
        if value.len() > self.config.max_value || value.len() > self.config.max_bytes {
            return;
        }
        self.remove(&key);
        self.bytes += key.len() + value.len();
        if let Some((k, (v, _))) = self.entries.push(key, (value, now)) {
            self.bytes -= k.len() + v.len();
        }
        while self.bytes > self.config.max_bytes {
            match self.entries.pop_lru() {
                Some((k, (v, _))) => self.bytes -= k.len() + v.len(),
                None => break,
            }
        }
    }

    pub fn remove(&mut self, key: &[u8]) {
        if let Some((v, _)) = self.entries.pop(key) {
            self.bytes -= key.len() + v.len();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A worker's answer to one forwarded request.
enum Answer<T> {
    Done(T),
    /// The worker is behind the master's ring: wait for it and retry.
    Stale,
}

/// A worker's answer to a batched request: its value when `want` accepts
/// it, a retry when the worker lags the ring.
fn batched<T>(answer: KeyAnswer, want: impl FnOnce(KeyAnswer) -> Result<T, KeyAnswer>) -> Result<Answer<T>, Failure> {
    match answer {
        KeyAnswer::Failed(Failure::StaleEpoch(_)) => Ok(Answer::Stale),
        KeyAnswer::Failed(f) => Err(f),
        other => want(other).map(Answer::Done).map_err(|_| another_request()),
    }
}

fn another_request() -> Failure {
    Failure::Invalid("the worker answered another request".into())
}

/// Forwards requests to workers and keeps the hot-key cache.
///
/// Requests from all connections that go to one worker at the same time
/// travel together as `Worker.batch` messages: the proxy serves many
/// clients, so its batches fill up.
pub struct Proxy {
    /// What its connections to workers present and expect.
    security: Security,
    workers: RefCell<HashMap<String, worker::Client>>,
    batcher: Rc<Batcher<String, worker::Client>>,
    pub cache: RefCell<HotCache>,
    /// Bumped as every write through the proxy starts and ends.
    generation: Cell<u64>,
}

/// The owner of a key as the master sees it: its address and the epoch.
#[derive(Debug, Clone)]
pub struct Route {
    pub address: String,
    pub epoch: u64,
}

/// Attempts while a worker catches up with the master's ring.
const ATTEMPTS: u32 = 8;

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("workers", &self.workers.borrow().len()).field("cache", &self.cache).finish()
    }
}

impl Proxy {
    pub fn new(cache: CacheConfig, security: Security) -> Proxy {
        Proxy {
            security,
            workers: RefCell::new(HashMap::new()),
            batcher: Batcher::new(),
            cache: RefCell::new(HotCache::new(cache)),
            generation: Cell::new(0),
        }
    }

    async fn worker(&self, address: &str) -> Result<worker::Client, Failure> {
        if let Some(w) = self.workers.borrow().get(address) {
            return Ok(w.clone());
        }
        let w: worker::Client = wimpy_net::connect(address, &self.security, &[Role::Worker])
            .await
            .map_err(|e| Failure::Unavailable(format!("worker {address} unreachable: {e}")))?;
        self.workers.borrow_mut().insert(address.to_owned(), w.clone());
        Ok(w)
    }

    /// Runs one forwarded request (given the worker's connection, the epoch
    /// and the worker's address), retrying while the worker lags the ring.
    async fn forward<T, F, Fut>(&self, route: impl Fn() -> Result<Route, Failure>, call: F) -> Result<T, Failure>
    where
        F: Fn(worker::Client, u64, String) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<Result<Answer<T>, Failure>>>,
    {
        let mut pause = Duration::from_millis(10);
        for _ in 0..ATTEMPTS {
            let r = route()?;
            let w = self.worker(&r.address).await?;
            // A hung owner fails this request in time (and is marked down
            // by the failure detector soon after).
            match within(CALL, "forwarding to the owner", call(w, r.epoch, r.address.clone())).await {
                Ok(Ok(Answer::Done(v))) => return Ok(v),
                Ok(Ok(Answer::Stale)) => {}
                Ok(Err(f)) => return Err(f),
                Err(e) => {
                    self.workers.borrow_mut().remove(&r.address);
                    return Err(Failure::Unavailable(format!("worker {}: {e}", r.address)));
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        Err(Failure::Unavailable("the owner did not catch up with the ring".into()))
    }

    pub async fn get(
        &self,
        key: &[u8],
        route: impl Fn() -> Result<Route, Failure>,
    ) -> Result<Option<Vec<u8>>, Failure> {
        if let Some(v) = self.cache.borrow_mut().get(key, Instant::now()) {
            return Ok(Some(v));
        }
        let started = self.generation.get();
        let value = self
            .forward(route, |w, epoch, address| async move {
                let get = KeyRequest::Get(key.to_vec());
                let mut answer = self.batcher.call(address, &w, epoch, get.clone()).await?;
                if answer.is_answer_full() {
                    // The batch's answer was full: ask for this one on its own.
                    answer = w.send_one(epoch, &get).await?;
                }
                Ok(batched(answer, KeyAnswer::into_value))
            })
            .await?;
        if let Some(v) = &value
            && self.generation.get() == started
        {
            self.cache.borrow_mut().insert(key.to_vec(), v.clone(), Instant::now());
        }
        Ok(value)
    }

    /// Marks a write to `key` as starting or ending.
    fn write_edge(&self, key: &[u8]) {
        self.generation.set(self.generation.get() + 1);
        self.cache.borrow_mut().remove(key);
    }

    /// The end edge of `request` if it is a write that was forwarded.
    fn write_ended(&self, request: &KeyRequest) {
        if let KeyRequest::Put(key, _) | KeyRequest::Delete(key) = request {
            self.write_edge(key);
        }
    }

    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        route: impl Fn() -> Result<Route, Failure>,
    ) -> Result<(), Failure> {
        self.write_edge(key);
        let result = self
            .forward(route, |w, epoch, address| async move {
                let put = KeyRequest::Put(key.to_vec(), value.to_vec());
                // A large value would fill a batch by itself: it goes alone.
                let answer = if value.len() <= BATCHED_VALUE_LIMIT {
                    self.batcher.call(address, &w, epoch, put).await?
                } else {
                    w.send_one(epoch, &put).await?
                };
                Ok(batched(answer, KeyAnswer::into_stored))
            })
            .await;
        self.write_edge(key);
        result
    }

    /// Serves a client's batch in list order. Gets the cache holds are
    /// answered at once; the other requests go to their owners, one queue
    /// per owner with a single waiter each (not a future per request: this
    /// is the master's hot path). What a worker could not answer within the
    /// batch (it lagged the ring, or the answer was full) is then served
    /// again on its own, as `get`, `put` and `delete` serve it.
    pub async fn serve_batch(
        &self,
        requests: Vec<KeyRequest>,
        route: impl Fn(&[u8]) -> Result<Route, Failure>,
    ) -> Vec<KeyAnswer> {
        let mut answers: Vec<Option<KeyAnswer>> = (0..requests.len()).map(|_| None).collect();
        // Per owner: where to, and its requests with their places in the batch.
        let mut owners: Vec<(Route, Vec<usize>, Vec<KeyRequest>)> = Vec::new();
        let now = Instant::now();
        for (i, request) in requests.into_iter().enumerate() {
            // In list order, so a get after a write of its key in the same
            // batch misses the cache and reads behind that write.
            match &request {
                KeyRequest::Get(key) => {
                    if let Some(v) = self.cache.borrow_mut().get(key, now) {
                        answers[i] = Some(KeyAnswer::Value(v));
                        continue;
                    }
                }
                KeyRequest::Put(key, _) | KeyRequest::Delete(key) => self.write_edge(key),
            }
            match route(request.key()) {
                Ok(to) => match owners.iter_mut().find(|(o, ..)| o.address == to.address) {
                    Some((_, places, queued)) => {
                        places.push(i);
                        queued.push(request);
                    }
                    None => owners.push((to, vec![i], vec![request])),
                },
                Err(f) => answers[i] = Some(KeyAnswer::Failed(f)),
            }
        }
        let started = self.generation.get();
        let forwarded = futures::future::join_all(
            owners
                .into_iter()
                .map(|(to, places, queued)| async move { (places, self.forward_many(&to, queued).await) }),
        )
        .await;
        let cacheable = self.generation.get() == started;
        let mut again = Vec::new();
        for (places, (requests, outcome)) in forwarded {
            match outcome {
                Ok(list) => {
                    for ((i, request), mut answer) in places.into_iter().zip(requests).zip(list) {
                        if answer.is_answer_full() || matches!(answer, KeyAnswer::Failed(Failure::StaleEpoch(_))) {
                            again.push((i, request));
                            continue;
                        }
                        if !answer.answers(&request) {
                            answer = KeyAnswer::Failed(another_request());
                        }
                        match (request, &answer) {
                            (KeyRequest::Get(key), KeyAnswer::Value(v)) if cacheable => {
                                self.cache.borrow_mut().insert(key, v.clone(), now)
                            }
                            (request, _) => self.write_ended(&request),
                        }
                        answers[i] = Some(answer);
                    }
                }
                Err(f) => {
                    for request in &requests {
                        self.write_ended(request);
                    }
                    for i in places {
                        answers[i] = Some(KeyAnswer::Failed(f.clone()));
                    }
                }
            }
        }
        let retried = futures::future::join_all(again.into_iter().map(|(i, request)| {
            let route = &route;
            async move { (i, self.serve_one(&request, || route(request.key())).await) }
        }))
        .await;
        for (i, answer) in retried {
            answers[i] = Some(answer);
        }
        answers.into_iter().map(|a| a.expect("every request of the batch is answered")).collect()
    }

    /// One request, as `get`, `put` or `delete` serves it.
    async fn serve_one(&self, request: &KeyRequest, route: impl Fn() -> Result<Route, Failure>) -> KeyAnswer {
        let key = request.key();
        let answer = match request {
            KeyRequest::Get(_) => self.get(key, route).await.map(|v| v.map_or(KeyAnswer::NotFound, KeyAnswer::Value)),
            KeyRequest::Put(_, value) => self.put(key, value, route).await.map(|()| KeyAnswer::Stored),
            KeyRequest::Delete(_) => self.delete(key, route).await.map(KeyAnswer::Deleted),
        };
        answer.unwrap_or_else(KeyAnswer::Failed)
    }

    /// Sends `requests` to the owner at `to` in its next batch; they come
    /// back with the worker's answers, or with why it could not be reached.
    async fn forward_many(
        &self,
        to: &Route,
        requests: Vec<KeyRequest>,
    ) -> (Vec<KeyRequest>, Result<Vec<KeyAnswer>, Failure>) {
        let w = match self.worker(&to.address).await {
            Ok(w) => w,
            Err(f) => return (requests, Err(f)),
        };
        let forwarded = self.batcher.call_many(to.address.clone(), &w, to.epoch, requests);
        let Ok((requests, answered)) = tokio::time::timeout(CALL, forwarded).await else {
            // The requests stay with the hung batch; whichever of them were
            // writes may still land, so no get running now may cache.
            self.workers.borrow_mut().remove(&to.address);
            self.generation.set(self.generation.get() + 1);
            let f = Failure::Unavailable(format!("worker {}: no answer within {CALL:?}", to.address));
            return (Vec::new(), Err(f));
        };
        let answered = answered.map_err(|e| {
            self.workers.borrow_mut().remove(&to.address);
            Failure::Unavailable(format!("worker {}: {e}", to.address))
        });
        (requests, answered)
    }

    pub async fn delete(&self, key: &[u8], route: impl Fn() -> Result<Route, Failure>) -> Result<bool, Failure> {
        self.write_edge(key);
        let result = self
            .forward(route, |w, epoch, address| async move {
                let answer = self.batcher.call(address, &w, epoch, KeyRequest::Delete(key.to_vec())).await?;
                Ok(batched(answer, KeyAnswer::into_deleted))
            })
            .await;
        self.write_edge(key);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> HotCache {
        HotCache::new(CacheConfig { max_entries, max_bytes, max_value: 100, ttl: Duration::from_secs(1) })
    }

    #[test]
    fn evicts_least_recently_used_within_both_bounds() {
        let t = Instant::now();
        let mut c = cache(3, 1000);
        for k in [b"a", b"b", b"c"] {
            c.insert(k.to_vec(), vec![0; 10], t);
        }
        assert!(c.get(b"a", t).is_some()); // a is now most recent
        c.insert(b"d".to_vec(), vec![0; 10], t);
        assert!(c.get(b"b", t).is_none(), "b was least recently used");
        assert_eq!(c.len(), 3);
        let mut c = cache(100, 50);
        for i in 0..10u8 {
            c.insert(vec![i], vec![i; 9], t);
        }
        assert!(c.bytes() <= 50);
        assert_eq!(c.len(), 5);
        assert!(c.get(&[9], t).is_some() && c.get(&[0], t).is_none());
    }

    #[test]
    fn entries_expire_and_large_values_are_not_kept() {
        let t = Instant::now();
        let mut c = cache(10, 1000);
        c.insert(b"k".to_vec(), b"v".to_vec(), t);
        assert_eq!(c.get(b"k", t + Duration::from_millis(999)), Some(b"v".to_vec()));
        assert_eq!(c.get(b"k", t + Duration::from_millis(1001)), None);
        assert_eq!(c.bytes(), 0);
        c.insert(b"big".to_vec(), vec![0; 101], t);
        assert!(c.is_empty());
        assert_eq!((c.hits, c.misses), (1, 1));
    }

    #[test]
    fn replacing_a_key_keeps_the_byte_count_right() {
        let t = Instant::now();
        let mut c = cache(10, 1000);
        c.insert(b"k".to_vec(), vec![0; 50], t);
        c.insert(b"k".to_vec(), vec![0; 20], t);
        assert_eq!(c.bytes(), 21);
        c.remove(b"k");
        assert_eq!(c.bytes(), 0);
    }
}
