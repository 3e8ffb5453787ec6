//! Histories of client operations, as fault tests record them, and a
//! check that each is linearizable.
//!
//! A test records every call it makes: when it was invoked, and when and
//! how it returned. A write that failed (or never returned) may or may not
//! have taken effect; a read that failed tells nothing. The check then
//! looks, key by key (a history of independent registers is linearizable
//! when each key's is), for one order of the calls that agrees with the
//! times (a call that returned before another was invoked comes first) and
//! in which every read answers the value of the write before it, or "not
//! found" if there is none. Finding none is a violation: a lost write, a
//! stale read or a value nobody wrote.
//!
//! The search is Wing and Gong's, with Lowe's memo of the states already
//! explored (the calls taken so far and the register's value): it tries
//! each call that may come next, goes back when a read disagrees, and never
//! explores one state twice. Failed writes of one value are
//! interchangeable but for when they were invoked, so they are taken in
//! that order (the earliest first), which keeps a write retried a hundred
//! times through a failover from making the search exponential.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

/// A call on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Put(Vec<u8>),
    Delete,
    Get,
}

/// How a call came back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Not yet (a call still out when the history is checked counts as
    /// failed).
    Pending,
    /// A put or delete, acknowledged.
    Wrote,
    /// A get, answered: the value, or `None` for "not found".
    Read(Option<Vec<u8>>),
    /// An error: a write may or may not have taken effect.
    Failed,
}

/// One recorded call.
#[derive(Debug, Clone)]
struct Entry {
    key: Vec<u8>,
    call: Call,
    /// Where its invocation falls among the history's events.
    invoked: u64,
    invoked_at: Instant,
    /// Where its return falls among the events, once it has returned.
    returned: Option<(u64, Instant)>,
    outcome: Outcome,
}

/// The handle of a call in flight, to record how it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a call's return must be recorded"]
pub struct Invoked(usize);

/// A history being recorded: shared by every task of a test (calls are
/// recorded under one lock, so their order is the order they happened).
#[derive(Debug)]
pub struct History {
    started: Instant,
    inner: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    entries: Vec<Entry>,
    /// Events (invocations and returns) so far.
    events: u64,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> History {
        History { started: Instant::now(), inner: Mutex::new(Recorded::default()) }
    }

    /// Records that `call` on `key` is being made now.
    pub fn invoke(&self, key: &[u8], call: Call) -> Invoked {
        let mut r = self.lock();
        r.events += 1;
        let invoked = r.events;
        r.entries.push(Entry {
            key: key.to_vec(),
            call,
            invoked,
            invoked_at: Instant::now(),
            returned: None,
            outcome: Outcome::Pending,
        });
        Invoked(r.entries.len() - 1)
    }

    /// A put or delete was acknowledged.
    pub fn wrote(&self, op: Invoked) {
        self.returned(op, Outcome::Wrote);
    }

    /// A get answered `value` (`None`: not found).
    pub fn read(&self, op: Invoked, value: Option<Vec<u8>>) {
        self.returned(op, Outcome::Read(value));
    }

    /// The call failed: a write may or may not have taken effect.
    pub fn failed(&self, op: Invoked) {
        self.returned(op, Outcome::Failed);
    }

    /// Makes the put `call` of `value` to `key`, recorded.
    pub async fn put<T, E>(&self, key: &[u8], value: &[u8], call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.write(key, Call::Put(value.to_vec()), call).await
    }

    /// Makes the delete `call` of `key`, recorded.
    pub async fn delete<T, E>(&self, key: &[u8], call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.write(key, Call::Delete, call).await
    }

    async fn write<T, E>(&self, key: &[u8], c: Call, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let op = self.invoke(key, c);
        let outcome = call.await;
        match &outcome {
            Ok(_) => self.wrote(op),
            Err(_) => self.failed(op),
        }
        outcome
    }

    /// Makes the get `call` of `key`, recorded. A call dropped before it
    /// returns stays out (a write then counts as failed).
    pub async fn get<E>(
        &self,
        key: &[u8],
        call: impl Future<Output = Result<Option<Vec<u8>>, E>>,
    ) -> Result<Option<Vec<u8>>, E> {
        let op = self.invoke(key, Call::Get);
        let outcome = call.await;
        match &outcome {
            Ok(v) => self.read(op, v.clone()),
            Err(_) => self.failed(op),
        }
        outcome
    }

    fn returned(&self, op: Invoked, outcome: Outcome) {
        let mut r = self.lock();
        r.events += 1;
        let at = r.events;
        let e = &mut r.entries[op.0];
        assert!(e.returned.is_none(), "a call's return recorded twice");
        match (&e.call, &outcome) {
            (Call::Get, Outcome::Wrote) | (Call::Put(_) | Call::Delete, Outcome::Read(_)) => {
                panic!("{:?} cannot return {outcome:?}", e.call)
            }
            _ => {}
        }
        e.returned = Some((at, Instant::now()));
        e.outcome = outcome;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks every key's history for linearizability.
    pub fn check(&self) -> Result<Checked, Violation> {
        let entries = self.lock().entries.clone();
        let mut by_key: BTreeMap<Vec<u8>, Vec<Entry>> = BTreeMap::new();
        for e in entries {
            by_key.entry(e.key.clone()).or_default().push(e);
        }
        let mut checked = Checked::default();
        for (key, entries) in by_key {
            checked.keys += 1;
            checked.calls += entries.len();
            checked.uncertain += entries.iter().filter(|e| uncertain_write(e)).count();
            match linearizable(&entries) {
                Verdict::Linearizable => {}
                verdict => {
                    let undecided = verdict == Verdict::Undecided;
                    return Err(Violation { key, started: self.started, entries, undecided });
                }
            }
        }
        Ok(checked)
    }
}

/// A write that failed or never came back.
fn uncertain_write(e: &Entry) -> bool {
    e.call != Call::Get && matches!(e.outcome, Outcome::Failed | Outcome::Pending)
}

/// What a check covered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub keys: usize,
    pub calls: usize,
    /// Writes that failed or never came back: they may or may not have
    /// taken effect.
    pub uncertain: usize,
}

/// A key whose history no order of its calls explains; its `Display` is
/// the key's history, call by call.
pub struct Violation {
    key: Vec<u8>,
    started: Instant,
    entries: Vec<Entry>,
    /// The search gave up before it found an order or ran out of them.
    undecided: bool,
}

impl Violation {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Whether the check gave up rather than found no order.
    pub fn undecided(&self) -> bool {
        self.undecided
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Calls of a violation printed at most: the first ones, where a long
/// history's trouble is not, are left out.
const PRINTED_CALLS: usize = 300;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.undecided {
            writeln!(
                f,
                "the check gave up on key {} after {MAX_STATES} states, with no order found yet:",
                shown(&self.key)
            )?;
        } else {
            writeln!(f, "no order of the calls on key {} explains what they answered:", shown(&self.key))?;
        }
        let ms = |t: Instant| t.duration_since(self.started).as_secs_f64() * 1e3;
        let skipped = self.entries.len().saturating_sub(PRINTED_CALLS);
        if skipped > 0 {
            writeln!(f, "  ({skipped} earlier calls left out)")?;
        }
        for e in &self.entries[skipped..] {
            let returned = e.returned.map_or("never".to_string(), |(_, t)| format!("{:.3}", ms(t)));
            let call = match &e.call {
                Call::Put(v) => format!("put {}", shown(v)),
                Call::Delete => "delete".to_string(),
                Call::Get => "get".to_string(),
            };
            let outcome = match &e.outcome {
                Outcome::Pending => "(no answer)".to_string(),
                Outcome::Wrote => "ok".to_string(),
                Outcome::Read(Some(v)) => format!("-> {}", shown(v)),
                Outcome::Read(None) => "-> not found".to_string(),
                Outcome::Failed => "failed".to_string(),
            };
            writeln!(f, "  {:>10.3} .. {returned:>10} ms  {call} {outcome}", ms(e.invoked_at))?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// A key or value as text, cut short.
fn shown(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN { format!("{text:?}… ({} bytes)", bytes.len()) } else { format!("{text:?}") }
}

/// One call as the search sees it.
#[derive(Debug, Clone, Copy)]
struct Op {
    invoked: u64,
    /// `u64::MAX` for a write that may have taken effect at any time after
    /// it was invoked.
    returned: u64,
    /// It must be placed in the order (it returned); an uncertain write
    /// may be left out.
    certain: bool,
    effect: Effect,
    /// An uncertain write of the same value invoked just before this one:
    /// taken before this one is.
    twin_before: Option<usize>,
}

/// What a call does to the register, values numbered (0: no value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Write(usize),
    Read(usize),
}

/// Whether one key's calls have an order that explains them.
fn linearizable(entries: &[Entry]) -> Verdict {
    fn number<'a>(values: &mut HashMap<Option<&'a [u8]>, usize>, v: Option<&'a [u8]>) -> usize {
        let next = values.len();
        *values.entry(v).or_insert(next)
    }
    let mut values = HashMap::from([(None, 0)]);
    let mut ops: Vec<Op> = Vec::new();
    for e in entries {
        let effect = match (&e.call, &e.outcome) {
            // A failed or unanswered read tells nothing.
            (Call::Get, Outcome::Read(v)) => Effect::Read(number(&mut values, v.as_deref())),
            (Call::Get, _) => continue,
            (Call::Put(v), _) => Effect::Write(number(&mut values, Some(v))),
            (Call::Delete, _) => Effect::Write(0),
        };
        let certain = matches!(e.outcome, Outcome::Wrote | Outcome::Read(_));
        let returned = if certain { e.returned.map_or(u64::MAX, |(at, _)| at) } else { u64::MAX };
        ops.push(Op { invoked: e.invoked, returned, certain, effect, twin_before: None });
    }
    // A write that may not have happened, whose value no read answered,
    // explains nothing: an order with it placed somewhere is still one
    // without it (nothing read its value, so a write follows it). Left
    // out, it costs the search nothing; left in, a run of failed writes
    // during an outage makes every subset of them a state to explore.
    let read: HashSet<usize> =
        ops.iter().filter_map(|op| if let Effect::Read(v) = op.effect { Some(v) } else { None }).collect();
    ops.retain(|op| op.certain || matches!(op.effect, Effect::Write(v) if read.contains(&v)));
    ops.sort_by_key(|op| op.invoked);
    let mut last_uncertain: HashMap<usize, usize> = HashMap::new();
    for (i, op) in ops.iter_mut().enumerate() {
        if let (false, Effect::Write(v)) = (op.certain, op.effect) {
            op.twin_before = last_uncertain.insert(v, i);
        }
    }
    Search::new(&ops).run()
}

/// States one key's search explores at most before it gives up: a
/// history that needs more is reported as undecided, not hung on.
const MAX_STATES: usize = 2_000_000;

/// What a key's search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    NotLinearizable,
    /// It gave up after [`MAX_STATES`].
    Undecided,
}

/// Wing and Gong's search, with the explored states kept.
struct Search<'a> {
    ops: &'a [Op],
    /// The calls placed so far.
    taken: Vec<u64>,
    required: usize,
    seen: HashSet<(Vec<u64>, usize)>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Op]) -> Search<'a> {
        Search {
            ops,
            taken: vec![0; ops.len().div_ceil(64)],
            required: ops.iter().filter(|op| op.certain).count(),
            seen: HashSet::new(),
        }
    }

    fn is_taken(&self, i: usize) -> bool {
        self.taken[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.taken[i / 64] ^= 1 << (i % 64);
    }

    /// The first call at or after `from` (in the order of [`Search::nth`])
    /// that may come next with the register holding `value`, and where it
    /// is in that order.
    fn candidate(&self, from: usize, value: usize) -> Option<(usize, usize)> {
        // No call invoked after some untaken call returned can come first.
        let horizon =
            (0..self.ops.len()).filter(|&j| !self.is_taken(j)).map(|j| self.ops[j].returned).min().unwrap_or(u64::MAX);
        (from..2 * self.ops.len()).filter_map(|k| self.nth(k).map(|i| (k, i))).find(|&(_, i)| {
            let op = &self.ops[i];
            op.invoked < horizon
                && !self.is_taken(i)
                && op.twin_before.is_none_or(|t| self.is_taken(t))
                && match op.effect {
                    Effect::Write(_) => true,
                    Effect::Read(v) => v == value,
                }
        })
    }

    /// The call tried `k`th: every certain call first, then the uncertain
    /// writes (each in the order invoked), so that the search places a
    /// write that may not have happened only where a read needs it.
    fn nth(&self, k: usize) -> Option<usize> {
        let n = self.ops.len();
        let (uncertain, i) = (k >= n, k % n);
        (self.ops[i].certain != uncertain).then_some(i)
    }

    fn run(mut self) -> Verdict {
        // The calls placed, in order: each with where it was in the order
        // tried and the value before it.
        let mut placed: Vec<(usize, usize, usize)> = Vec::new();
        let (mut value, mut done) = (0, 0);
        'state: loop {
            if done == self.required {
                return Verdict::Linearizable;
            }
            if self.seen.len() >= MAX_STATES {
                return Verdict::Undecided;
            }
            // A state explored before leads nowhere.
            let mut from = if self.seen.insert((self.taken.clone(), value)) { Some(0) } else { None };
            loop {
                if let Some((k, i)) = from.and_then(|from| self.candidate(from, value)) {
                    placed.push((i, k, value));
                    self.flip(i);
                    done += usize::from(self.ops[i].certain);
                    if let Effect::Write(v) = self.ops[i].effect {
                        value = v;
                    }
                    continue 'state;
                }
                let Some((i, k, before)) = placed.pop() else { return Verdict::NotLinearizable };
                self.flip(i);
                done -= usize::from(self.ops[i].certain);
                value = before;
                from = Some(k + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(h: &History, key: &str, value: &str) -> Invoked {
        h.invoke(key.as_bytes(), Call::Put(value.as_bytes().to_vec()))
    }

    fn get(h: &History, key: &str) -> Invoked {
        h.invoke(key.as_bytes(), Call::Get)
    }

    fn some(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn sequential_reads_of_the_last_write_pass() {
        let h = History::new();
        let p = put(&h, "k", "a");
        h.wrote(p);
        let g = get(&h, "k");
        h.read(g, some("a"));
        let p = put(&h, "k", "b");
        h.wrote(p);
        let g = get(&h, "k");
        h.read(g, some("b"));
        let d = h.invoke(b"k", Call::Delete);
        h.wrote(d);
        let g = get(&h, "k");
        h.read(g, None);
        assert_eq!(h.check().unwrap(), Checked { keys: 1, calls: 6, uncertain: 0 });
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_found() {
        let h = History::new();
        let p = put(&h, "k", "a");
        h.wrote(p);
        let p = put(&h, "k", "b");
        h.wrote(p);
        let g = get(&h, "k");
        h.read(g, some("a"));
        let v = h.check().unwrap_err();
        assert_eq!(v.key(), b"k");
        let printed = v.to_string();
        assert!(printed.contains(r#"put "b" ok"#) && printed.contains(r#"get -> "a""#), "{printed}");
    }

    #[test]
    fn a_lost_write_reads_as_not_found_and_is_found() {
        let h = History::new();
        let p = put(&h, "k", "a");
        h.wrote(p);
        let g = get(&h, "k");
        h.read(g, None);
        assert!(h.check().is_err());
    }

    #[test]
    fn a_value_nobody_wrote_is_found() {
        let h = History::new();
        let g = get(&h, "k");
        h.read(g, some("z"));
        assert!(h.check().is_err());
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_either_value() {
        for seen in [some("a"), some("b")] {
            let h = History::new();
            let p = put(&h, "k", "a");
            h.wrote(p);
            let p = put(&h, "k", "b");
            let g = get(&h, "k");
            h.read(g, seen);
            h.wrote(p);
            assert!(h.check().is_ok());
        }
    }

    #[test]
    fn reads_may_not_go_back_once_one_saw_the_new_value() {
        // b is being written; one read sees it, a later read must too.
        let h = History::new();
        let p = put(&h, "k", "a");
        h.wrote(p);
        let pb = put(&h, "k", "b");
        let g = get(&h, "k");
        h.read(g, some("b"));
        let g = get(&h, "k");
        h.read(g, some("a"));
        h.wrote(pb);
        assert!(h.check().is_err());
    }

    #[test]
    fn a_failed_write_may_or_may_not_have_taken_effect() {
        for (seen, ok) in [(some("a"), true), (some("b"), true), (None, false)] {
            let h = History::new();
            let p = put(&h, "k", "a");
            h.wrote(p);
            let p = put(&h, "k", "b");
            h.failed(p);
            let g = get(&h, "k");
            h.read(g, seen.clone());
            assert_eq!(h.check().is_ok(), ok, "{seen:?}");
        }
        // An unanswered write may land late, but not before it was made.
        let h = History::new();
        let g = get(&h, "k");
        h.read(g, some("b"));
        let _never = put(&h, "k", "b");
        assert!(h.check().is_err());
        // A failed read tells nothing.
        let h = History::new();
        let p = put(&h, "k", "a");
        h.wrote(p);
        let g = get(&h, "k");
        h.failed(g);
        assert_eq!(h.check().unwrap().uncertain, 0);
    }

    #[test]
    fn recorded_calls_check_like_hand_recorded_ones() {
        let h = History::new();
        let ok = |v: Option<&str>| std::future::ready(Ok::<_, ()>(v.map(|v| v.as_bytes().to_vec())));
        poll_once(async {
            h.put(b"k", b"a", std::future::ready(Ok::<(), ()>(()))).await.unwrap();
            assert_eq!(h.get(b"k", ok(Some("a"))).await, Ok(Some(b"a".to_vec())));
            h.delete(b"k", std::future::ready(Err::<(), _>("down"))).await.unwrap_err();
            h.get(b"k", ok(None)).await.unwrap();
        });
        assert_eq!(h.check().unwrap(), Checked { keys: 1, calls: 4, uncertain: 1 });
        poll_once(async {
            h.get(b"k", ok(Some("a"))).await.unwrap();
        });
        assert!(h.check().is_err(), "the delete was seen to have taken effect");
    }

    /// Runs a future that never waits.
    fn poll_once<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn keys_are_checked_apart() {
        let h = History::new();
        let p = put(&h, "x", "1");
        h.wrote(p);
        let p = put(&h, "y", "2");
        h.wrote(p);
        let g = get(&h, "y");
        h.read(g, some("2"));
        let g = get(&h, "x");
        h.read(g, some("2"));
        assert_eq!(h.check().unwrap_err().key(), b"x");
    }

    #[test]
    fn a_write_retried_through_a_long_outage_checks_quickly() {
        // One writer retries each value until it is acknowledged, a reader
        // reads between tries: the shape of a failover test's history.
        let h = History::new();
        let mut last = None;
        for round in 0..40 {
            let value = format!("v{round}");
            for _ in 0..if round % 10 == 5 { 150 } else { 2 } {
                let p = put(&h, "k", &value);
                let g = get(&h, "k");
                h.read(g, last.clone());
                h.failed(p);
            }
            let p = put(&h, "k", &value);
            h.wrote(p);
            last = some(&value);
            let g = get(&h, "k");
            h.read(g, last.clone());
        }
        // Without the failed tries taken earliest first, the 150 of one
        // value would make 2^150 states to explore.
        assert_eq!(h.check().unwrap().uncertain, 4 * 150 + 36 * 2);
    }

    #[test]
    fn failed_writes_no_read_saw_cost_the_search_nothing() {
        // A client cut off from a chain tries sixty writes of its own
        // values, none of them answered, while another writes and reads:
        // every subset of the sixty would be a state of its own.
        let h = History::new();
        let mut last = None;
        for round in 0..60 {
            let _lost = put(&h, "k", &format!("lost-{round}"));
            let value = format!("v{round}");
            let p = put(&h, "k", &value);
            h.wrote(p);
            last = some(&value);
            let g = get(&h, "k");
            h.read(g, last.clone());
        }
        assert_eq!(h.check().unwrap().uncertain, 60);
        // One of them read after all must be placed where it was read.
        let g = get(&h, "k");
        h.read(g, some("lost-59"));
        assert!(h.check().is_ok(), "lost-59 may have landed after v59");
        // Never answered, lost-3 may land as late as that too...
        let g = get(&h, "k");
        h.read(g, some("lost-3"));
        assert!(h.check().is_ok(), "lost-3 may have landed last");
        // ...but v59, acknowledged before both reads, cannot come back.
        let g = get(&h, "k");
        h.read(g, last);
        assert!(h.check().is_err(), "v59 read again after lost-3 with no write of it between");
    }

    #[test]
    fn concurrent_writers_and_readers_of_one_key() {
        // Three writers at once, then reads: the last read must see one of
        // the three, and every later read the same one.
        let h = History::new();
        let ps: Vec<_> = ["a", "b", "c"].iter().map(|v| put(&h, "k", v)).collect();
        let g1 = get(&h, "k");
        h.read(g1, some("b"));
        for p in ps {
            h.wrote(p);
        }
        let g = get(&h, "k");
        h.read(g, some("c"));
        assert!(h.check().is_ok(), "c was written after b's read");
        let g = get(&h, "k");
        h.read(g, some("b"));
        assert!(h.check().is_err(), "c then b again with no write between");
    }
}
