//! Who is in the cluster, and the ring that follows from it.
//!
//! Pure bookkeeping with explicit times, so failure detection is tested
//! without sleeping. Every change that clients must route around (a member
//! added, removed, or changing state) makes a new epoch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use wimpy_schema::MemberState;
use wimpy_schema::{Ring, WorkerId};

/// The master's record of one worker's store, from its last heartbeat.
pub type MemberStats = wimpy_schema::StoreFigures;

/// One worker as the master knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Stable id, kept by the worker across restarts.
    pub id: WorkerId,
    /// host:port of the worker's RPC listener.
    pub address: String,
    pub state: MemberState,
    /// When the last heartbeat (or the registration) arrived.
    pub last_seen: Instant,
    pub stats: MemberStats,
    /// What its worker last said failed in its store (while `Failed`).
    pub failure: String,
    /// The name on the certificate it registered with: only that
    /// certificate may register or heartbeat as this member. `None` when
    /// the cluster runs insecure.
    pub holder: Option<String>,
    /// When that certificate expires, as of its last registration (not
    /// kept across master restarts: the next registration says).
    pub certificate_expires: Option<std::time::SystemTime>,
}

impl Member {
    /// Why the member is down or failed, as of `now`; empty otherwise.
    pub fn reason(&self, now: Instant) -> String {
        match self.state {
            MemberState::Down => {
                format!("no heartbeat for {:.1} s", now.saturating_duration_since(self.last_seen).as_secs_f64())
            }
            MemberState::Failed => self.failure.clone(),
            _ => String::new(),
        }
    }
}

/// The membership table and its epoch.
#[derive(Debug)]
pub struct Membership {
    members: BTreeMap<WorkerId, Member>,
    epoch: u64,
    vnodes: u32,
    /// Copies of each key: the rings' replication factor.
    replicas: u32,
    next_id: WorkerId,
    /// Silence after which a serving member counts as down.
    down_after: Duration,
    /// Members that left after handing their ranges over; they may not
    /// come back under the same id (their data was given away).
    departed: std::collections::BTreeSet<WorkerId>,
    /// Join tokens not spent yet: the SHA-256 of each secret, and when it
    /// expires (seconds since the Unix epoch).
    join_tokens: BTreeMap<[u8; 32], u64>,
    /// The ring of the current epoch, once built. Every membership change
    /// moves the epoch, which is what invalidates it.
    ring_cache: std::cell::RefCell<Option<std::rc::Rc<Ring>>>,
    /// The join or leave moving data now, if any.
    change: Option<Change>,
}

/// A membership change that moves data, recorded while it runs so that a
/// master restarted in the middle knows to finish or undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Join(WorkerId),
    Leave(WorkerId),
}

/// Everything of a [`Membership`] that must outlive the master process:
/// the members, the epoch and the vnode count (which give the ring, the
/// same on every rebuild), the ids retired, and the change under way.
/// Heartbeat times and store figures are not kept: they come back with the
/// next heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: u64,
    pub vnodes: u32,
    pub replicas: u32,
    pub next_id: WorkerId,
    /// Every member: id, address, state and the certificate name it holds.
    pub members: Vec<(WorkerId, String, MemberState, Option<String>)>,
    pub departed: Vec<WorkerId>,
    /// Unspent join tokens: secret hash, expiry (Unix seconds).
    pub join_tokens: Vec<([u8; 32], u64)>,
    pub change: Option<Change>,
}

impl Membership {
    pub fn new(vnodes: u32, down_after: Duration) -> Membership {
        Membership {
            members: BTreeMap::new(),
            epoch: 0,
            vnodes,
            replicas: 1,
            next_id: 1,
            down_after,
            departed: Default::default(),
            join_tokens: BTreeMap::new(),
            ring_cache: Default::default(),
            change: None,
        }
    }

    /// The same membership keeping `replicas` copies of each key.
    pub fn with_replicas(mut self, replicas: u32) -> Membership {
        self.replicas = replicas.max(1);
        self
    }

    /// Copies of each key the rings keep.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// What must be kept of this membership (see [`Snapshot`]).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            epoch: self.epoch,
            vnodes: self.vnodes,
            replicas: self.replicas,
            next_id: self.next_id,
            members: self.members.values().map(|m| (m.id, m.address.clone(), m.state, m.holder.clone())).collect(),
            departed: self.departed.iter().copied().collect(),
            join_tokens: self.join_tokens.iter().map(|(h, e)| (*h, *e)).collect(),
            change: self.change,
        }
    }

    /// The membership `snapshot` kept, as a restarted master resumes it:
    /// every member is taken as heard from `now`, so that one that does not
    /// come back is marked down a failure timeout later, not at once.
    pub fn restore(snapshot: &Snapshot, down_after: Duration, now: Instant) -> Membership {
        let mut m = Membership::new(snapshot.vnodes, down_after).with_replicas(snapshot.replicas);
        m.epoch = snapshot.epoch;
        m.next_id = snapshot.next_id.max(1);
        m.departed = snapshot.departed.iter().copied().collect();
        m.join_tokens = snapshot.join_tokens.iter().copied().collect();
        m.change = snapshot.change;
        for (id, address, state, holder) in &snapshot.members {
            m.members.insert(
                *id,
                Member {
                    id: *id,
                    address: address.clone(),
                    state: *state,
                    last_seen: now,
                    stats: MemberStats::default(),
                    // Its next heartbeat says what failed, or that it healed.
                    failure: match state {
                        MemberState::Failed => "its store had failed when the master stopped".into(),
                        _ => String::new(),
                    },
                    holder: holder.clone(),
                    certificate_expires: None,
                },
            );
        }
        m
    }

    /// The join or leave moving data now, if any.
    pub fn change(&self) -> Option<Change> {
        self.change
    }

    /// Records the join or leave that starts moving data (`None`: it ended).
    pub fn set_change(&mut self, change: Option<Change>) {
        self.change = change;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Continues numbering epochs after `epoch`, so a restarted master never
    /// publishes an epoch its workers have already seen.
    pub fn resume_after(mut self, epoch: u64) -> Membership {
        self.epoch = self.epoch.max(epoch);
        self
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// Members by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, id: WorkerId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The ring at the current epoch: every member but joining ones.
    /// Built once per epoch: proxied requests look it up every time.
    pub fn ring(&self) -> std::rc::Rc<Ring> {
        let mut cached = self.ring_cache.borrow_mut();
        match &*cached {
            Some(r) if r.epoch() == self.epoch => r.clone(),
            _ => {
                let on_ring = self.members.values().filter(|m| m.state != MemberState::Joining).map(|m| m.id);
                let ring = std::rc::Rc::new(
                    Ring::new(self.epoch, self.vnodes, on_ring)
                        .with_replicas(self.replicas)
                        .with_out(self.out_of_chains(None)),
                );
                *cached = Some(ring.clone());
                ring
            }
        }
    }

    /// Registers a worker at `address`. `id` is the id it kept from an
    /// earlier run (0 for a new worker). Returns the id it must keep and
    /// whether it must first receive its ranges (it is `Joining`).
    ///
    /// A returning worker serves again at once when it is its keys' only
    /// copy: its data is its own. On a ring keeping more copies, one back
    /// from down or failed missed the writes made meanwhile: it is
    /// `Returning`, out of its chains, until the caller has copied its
    /// ranges to it again and calls [`Membership::promote`]. The first
    /// worker of an empty ring has nothing to receive and serves at once
    /// too. Any other newcomer joins: the caller moves its ranges to it and
    /// then promotes it.
    pub fn register(&mut self, id: WorkerId, address: String, now: Instant) -> (WorkerId, bool) {
        let id = if id == 0 { self.next_id } else { id };
        self.next_id = self.next_id.max(id + 1);
        match self.members.get_mut(&id) {
            Some(m) if m.state == MemberState::Joining => {
                m.address = address;
                m.last_seen = now;
                (id, true)
            }
            Some(m) => {
                let state = match m.state {
                    MemberState::Down | MemberState::Failed | MemberState::Returning => back(self.replicas),
                    _ => MemberState::Serving,
                };
                let changed = m.address != address || m.state != state;
                m.address = address;
                m.state = state;
                m.last_seen = now;
                if changed {
                    self.epoch += 1;
                }
                (id, state == MemberState::Returning)
            }
            None => {
                let joins = self.members.values().any(|m| m.state != MemberState::Joining);
                let state = if joins { MemberState::Joining } else { MemberState::Serving };
                self.members.insert(
                    id,
                    Member {
                        id,
                        address,
                        state,
                        last_seen: now,
                        stats: MemberStats::default(),
                        failure: String::new(),
                        holder: None,
                        certificate_expires: None,
                    },
                );
                if !joins {
                    self.epoch += 1;
                }
                (id, joins)
            }
        }
    }

    /// The ring as it will be once joining (or returning) member `id`
    /// serves.
    pub fn ring_with(&self, id: WorkerId) -> Ring {
        let on_ring = self.members.values().filter(|m| m.state != MemberState::Joining || m.id == id).map(|m| m.id);
        Ring::new(self.epoch + 1, self.vnodes, on_ring)
            .with_replicas(self.replicas)
            .with_out(self.out_of_chains(Some(id)))
    }

    /// Members a ring keeping more than one copy leaves out of its chains,
    /// but for `but`.
    fn out_of_chains(&self, but: Option<WorkerId>) -> Vec<WorkerId> {
        self.members.values().filter(|m| m.state.out_of_chains() && Some(m.id) != but).map(|m| m.id).collect()
    }

    /// Puts a joining member on the ring, or a returning one back in its
    /// chains. Returns whether it was joining or returning.
    pub fn promote(&mut self, id: WorkerId) -> bool {
        match self.members.get_mut(&id) {
            Some(m) if matches!(m.state, MemberState::Joining | MemberState::Returning) => {
                m.state = MemberState::Serving;
                self.epoch += 1;
                true
            }
            _ => false,
        }
    }

    /// Records a heartbeat, with what failed in the worker's store if it
    /// does not serve (`None` while it does). Returns the current epoch, or
    /// `None` for an unknown id (the worker must register again).
    ///
    /// A member on the ring whose store failed becomes `Failed`: still on
    /// the ring (its keys are nowhere else), but routed around. It serves
    /// again with the first heartbeat that reports no failure. A joining
    /// member stays joining either way: its join fails and retries.
    /// Whether the holder of the certificate named `holder` may register or
    /// heartbeat as member `id`: an id nobody holds yet, or one that
    /// certificate holds already. `None` (an insecure cluster, where nobody
    /// can be told apart) may speak for anyone.
    pub fn may_speak_for(&self, id: WorkerId, holder: Option<&str>) -> Result<(), String> {
        let (Some(holder), Some(member)) = (holder, self.members.get(&id)) else { return Ok(()) };
        match &member.holder {
            Some(held) if held != holder => {
                Err(format!("worker {id} is held by the certificate of {held:?}, not of {holder:?}"))
            }
            _ => Ok(()),
        }
    }

    /// Records that member `id` registered with the certificate named
    /// `holder`, valid until `expires`.
    pub fn bind(&mut self, id: WorkerId, holder: Option<String>, expires: Option<std::time::SystemTime>) {
        if let Some(m) = self.members.get_mut(&id) {
            if holder.is_some() {
                m.holder = holder;
            }
            m.certificate_expires = expires;
        }
    }

    pub fn heartbeat(
        &mut self,
        id: WorkerId,
        stats: MemberStats,
        failure: Option<String>,
        now: Instant,
    ) -> Option<u64> {
        let m = self.members.get_mut(&id)?;
        m.last_seen = now;
        m.stats = stats;
        let state = match (&failure, m.state) {
            (_, MemberState::Joining) => MemberState::Joining,
            (Some(_), _) => MemberState::Failed,
            (None, MemberState::Down | MemberState::Failed) => back(self.replicas),
            (None, state) => state,
        };
        if state != m.state {
            m.state = state;
            self.epoch += 1;
        }
        m.failure = failure.unwrap_or_default();
        Some(self.epoch)
    }

    /// Marks members silent for longer than the timeout as down. Returns
    /// whether anything changed (and so the epoch moved).
    pub fn sweep(&mut self, now: Instant) -> bool {
        let mut changed = false;
        // A joiner that fell silent was never on the ring: just forget it.
        self.members.retain(|_, m| {
            m.state != MemberState::Joining || now.saturating_duration_since(m.last_seen) <= self.down_after
        });
        for m in self.members.values_mut() {
            if matches!(
                m.state,
                MemberState::Serving | MemberState::Leaving | MemberState::Failed | MemberState::Returning
            ) && now.saturating_duration_since(m.last_seen) > self.down_after
            {
                m.state = MemberState::Down;
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
        }
        changed
    }

    /// Members silent for longer than `after` whose chains can be whole
    /// again without them: on a ring keeping more than one copy, with at
    /// least as many other members serving as it keeps copies. Removing
    /// one gives each chain it was in another member, which is sent the
    /// chain's keys, so a second failure finds every key on R workers
    /// again; with fewer members left, a removal would only shorten the
    /// chains, and the member had better come back.
    pub fn overdue(&self, now: Instant, after: Duration) -> Vec<WorkerId> {
        let serving = self.members.values().filter(|m| m.state == MemberState::Serving).count();
        if self.replicas < 2 || serving < self.replicas as usize {
            return Vec::new();
        }
        self.members
            .values()
            .filter(|m| m.state == MemberState::Down && now.saturating_duration_since(m.last_seen) > after)
            .map(|m| m.id)
            .collect()
    }

    /// Removes a member. Returns whether it was there.
    pub fn remove(&mut self, id: WorkerId) -> bool {
        let was = self.members.remove(&id).is_some();
        if was {
            self.epoch += 1;
        }
        was
    }

    /// Removes a member that handed its ranges over; its id is retired.
    pub fn depart(&mut self, id: WorkerId) -> bool {
        self.departed.insert(id);
        self.remove(id)
    }

    /// Whether `id` left the cluster for good.
    /// Keeps a join token (its secret's hash) until `expires` (Unix
    /// seconds), dropping those already expired at `now`.
    pub fn add_join_token(&mut self, hash: [u8; 32], expires: u64, now: u64) {
        self.join_tokens.retain(|_, e| *e > now);
        self.join_tokens.insert(hash, expires);
    }

    /// Spends the join token whose secret hashes to `hash`: true if it was
    /// there and not expired at `now` (it is gone either way).
    pub fn spend_join_token(&mut self, hash: &[u8; 32], now: u64) -> bool {
        self.join_tokens.remove(hash).is_some_and(|expires| expires > now)
    }

    pub fn has_departed(&self, id: WorkerId) -> bool {
        self.departed.contains(&id)
    }

    /// The ring as it will be once `id` is gone.
    pub fn ring_without(&self, id: WorkerId) -> Ring {
        let on_ring = self.members.values().filter(|m| m.state != MemberState::Joining && m.id != id).map(|m| m.id);
        let out = self.out_of_chains(Some(id));
        Ring::new(self.epoch + 1, self.vnodes, on_ring).with_replicas(self.replicas).with_out(out)
    }
}

/// The state of a member back from down or failed on a ring keeping
/// `replicas` copies: with one its data is its keys' only copy, and it
/// serves again at once; with more it missed writes its chains took
/// without it, and catches up first.
fn back(replicas: u32) -> MemberState {
    if replicas > 1 { MemberState::Returning } else { MemberState::Serving }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_assigns_ids_and_moves_the_epoch() {
        let t = Instant::now();
        let mut m = Membership::new(16, Duration::from_secs(3));
        // The first worker serves at once; the next one joins.
        assert_eq!(m.register(0, "a:1".into(), t), (1, false));
        assert_eq!(m.register(0, "b:1".into(), t), (2, true));
        assert_eq!(m.epoch(), 1);
        assert_eq!(m.ring().members(), vec![1]);
        assert_eq!(m.ring_with(2).members(), vec![1, 2]);
        assert!(m.promote(2));
        assert!(!m.promote(2));
        assert_eq!(m.epoch(), 2);
        assert_eq!(m.ring().members(), vec![1, 2]);
        // A restart on the same address with its id changes nothing.
        assert_eq!(m.register(1, "a:1".into(), t), (1, false));
        assert_eq!(m.epoch(), 2);
        // A known id on a new address is the same member, moved.
        assert_eq!(m.register(1, "a:2".into(), t), (1, false));
        assert_eq!(m.epoch(), 3);
        assert_eq!(m.member(1).unwrap().address, "a:2");
        // An id kept from an earlier master run is honoured (it was serving
        // somewhere: its data is its own), and new ids go past it.
        assert_eq!(m.register(9, "c:1".into(), t).0, 9);
        assert_eq!(m.register(0, "d:1".into(), t).0, 10);
    }

    #[test]
    fn silent_members_go_down_and_come_back_with_a_heartbeat() {
        let t = Instant::now();
        let mut m = Membership::new(16, Duration::from_secs(3));
        m.register(0, "a".into(), t);
        m.register(0, "b".into(), t);
        m.promote(2);
        let e = m.epoch();
        assert_eq!(
            m.heartbeat(1, MemberStats { live_keys: 5, ..Default::default() }, None, t + Duration::from_secs(2)),
            Some(e)
        );
        assert!(!m.sweep(t + Duration::from_secs(3)));
        assert!(m.sweep(t + Duration::from_millis(3500)));
        assert_eq!(m.member(2).unwrap().state, MemberState::Down);
        assert_eq!(m.member(1).unwrap().state, MemberState::Serving);
        assert_eq!(m.epoch(), e + 1);
        // Down members stay on the ring: their keys have nowhere else to go.
        assert_eq!(m.ring().members(), vec![1, 2]);
        assert_eq!(m.member(2).unwrap().reason(t + Duration::from_secs(4)), "no heartbeat for 4.0 s");
        assert_eq!(m.heartbeat(2, MemberStats::default(), None, t + Duration::from_secs(4)), Some(e + 2));
        assert_eq!(m.member(2).unwrap().state, MemberState::Serving);
        assert_eq!(m.heartbeat(77, MemberStats::default(), None, t), None);
        assert_eq!(m.member(1).unwrap().stats.live_keys, 5);
    }

    #[test]
    fn a_member_down_long_is_overdue_only_where_enough_others_serve_to_stand_in() {
        let t = Instant::now();
        let second = Duration::from_secs(1);
        let members = |n: u64| {
            let mut m = Membership::new(16, second).with_replicas(3);
            for i in 1..=n {
                m.register(0, format!("w{i}"), t);
                m.promote(i);
            }
            for i in 1..n {
                m.heartbeat(i, MemberStats::default(), None, t + 10 * second);
            }
            assert!(m.sweep(t + 10 * second));
            assert_eq!(m.member(n).unwrap().state, MemberState::Down);
            m
        };
        // Four members, three copies: the three left make whole chains.
        let four = members(4);
        assert_eq!(four.overdue(t + 10 * second, 5 * second), vec![4]);
        assert_eq!(four.overdue(t + 10 * second, 20 * second), Vec::<WorkerId>::new());
        // Three: the two left cannot, and removing it would only shorten them.
        assert_eq!(members(3).overdue(t + 10 * second, 5 * second), Vec::<WorkerId>::new());
        // One copy: its keys are on it alone.
        let mut single = members(4);
        single.replicas = 1;
        assert_eq!(single.overdue(t + 10 * second, 5 * second), Vec::<WorkerId>::new());
    }

    #[test]
    fn a_member_whose_store_failed_stays_on_the_ring_until_it_heals() {
        let t = Instant::now();
        let mut m = Membership::new(16, Duration::from_secs(3));
        m.register(0, "a".into(), t);
        m.register(0, "b".into(), t);
        m.promote(2);
        let e = m.epoch();
        let full = || Some("writing the log failed: No space left on device".to_string());
        assert_eq!(m.heartbeat(2, MemberStats::default(), full(), t), Some(e + 1));
        let x = m.member(2).unwrap();
        assert_eq!(
            (x.state, x.reason(t).as_str()),
            (MemberState::Failed, "writing the log failed: No space left on device")
        );
        assert_eq!(m.ring().members(), vec![1, 2]);
        // Reporting the same failure again changes nothing.
        assert_eq!(m.heartbeat(2, MemberStats::default(), full(), t), Some(e + 1));
        // Failed members still answer heartbeats; silent ones go down.
        assert!(m.sweep(t + Duration::from_secs(4)));
        assert_eq!(m.member(2).unwrap().state, MemberState::Down);
        assert_eq!(m.heartbeat(2, MemberStats::default(), None, t + Duration::from_secs(5)), Some(e + 3));
        assert_eq!((m.member(2).unwrap().state, m.member(2).unwrap().reason(t)), (MemberState::Serving, String::new()));
        // A joiner whose store fails stays a joiner: its join retries.
        m.register(0, "c".into(), t);
        m.heartbeat(3, MemberStats::default(), full(), t + Duration::from_secs(5));
        assert_eq!(m.member(3).unwrap().state, MemberState::Joining);
    }

    #[test]
    fn removing_a_member_takes_it_off_the_ring() {
        let t = Instant::now();
        let mut m = Membership::new(16, Duration::from_secs(3));
        m.register(0, "a".into(), t);
        m.register(0, "b".into(), t);
        m.promote(2);
        assert!(m.remove(1));
        assert!(!m.remove(1));
        assert_eq!(m.ring().members(), vec![2]);
        assert_eq!(m.epoch(), 3);
        // A joiner that goes silent is forgotten without a new epoch.
        m.register(0, "c".into(), t);
        m.sweep(t + Duration::from_secs(4));
        assert!(m.member(3).is_none());
    }
}
