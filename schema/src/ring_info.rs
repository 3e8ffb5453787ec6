//! The schema's `RingInfo` as an owned value: everything a client needs to
//! route (the members on the ring at an epoch, with their addresses). The
//! master publishes it; workers keep the one they were given and hand it on
//! (`Worker.ring`), so clients can route while the master is away.

use crate::wimpy_capnp::{member, ring_info};
use crate::{MemberState, Ring, StoreFigures, WorkerId};

/// One member as a ring lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: WorkerId,
    /// host:port of its RPC listener.
    pub address: String,
    pub state: MemberState,
    /// Its store's figures as of its last heartbeat (empty in a ring a
    /// worker hands on).
    pub stats: StoreFigures,
    /// Why it is down or failed; empty otherwise.
    pub reason: String,
    /// The name on the certificate it registered with (empty when not
    /// known or insecure).
    pub certificate: String,
    /// When that certificate expires, if known.
    pub certificate_expires: Option<std::time::SystemTime>,
}

/// The members on the ring at `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingInfo {
    pub epoch: u64,
    pub vnodes: u32,
    /// Copies of each key (at least one): the length of its chain.
    pub replicas: u32,
    pub members: Vec<MemberInfo>,
}

impl MemberInfo {
    pub fn read(m: member::Reader<'_>) -> capnp::Result<MemberInfo> {
        Ok(MemberInfo {
            id: m.get_id(),
            address: m.get_address()?.to_string().map_err(|e| capnp::Error::failed(format!("member address: {e}")))?,
            state: m.get_state()?.into(),
            stats: StoreFigures::read(m.get_stats()?)?,
            reason: m.get_reason()?.to_string().map_err(|e| capnp::Error::failed(format!("member reason: {e}")))?,
            certificate: m
                .get_certificate()?
                .to_string()
                .map_err(|e| capnp::Error::failed(format!("member certificate: {e}")))?,
            certificate_expires: match m.get_certificate_expires() {
                0 => None,
                secs => Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
            },
        })
    }

    pub fn write(&self, mut b: member::Builder<'_>) {
        b.set_id(self.id);
        b.set_address(self.address.as_str());
        b.set_state(self.state.into());
        b.set_reason(self.reason.as_str());
        b.set_certificate(self.certificate.as_str());
        b.set_certificate_expires(unix_seconds(self.certificate_expires));
        self.stats.write(b.init_stats());
    }
}

/// Seconds since the Unix epoch, 0 for none (the schema's "not known").
pub fn unix_seconds(t: Option<std::time::SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs().max(1))
}

impl RingInfo {
    /// No members, at epoch 0.
    pub fn empty() -> RingInfo {
        RingInfo { epoch: 0, vnodes: 1, replicas: 1, members: Vec::new() }
    }

    /// The ring to route by: with more than one copy of each key, its
    /// chains leave out members that are down, failed or returning.
    pub fn ring(&self) -> Ring {
        Ring::new(self.epoch, self.vnodes, self.members.iter().map(|m| m.id))
            .with_replicas(self.replicas)
            .with_out(self.members.iter().filter(|m| m.state.out_of_chains()).map(|m| m.id))
    }

    pub fn read(r: ring_info::Reader<'_>) -> capnp::Result<RingInfo> {
        let members = r.get_members()?.iter().map(MemberInfo::read).collect::<capnp::Result<_>>()?;
        // Masters before schema version 4 send no factor: one copy.
        Ok(RingInfo { epoch: r.get_epoch(), vnodes: r.get_vnodes(), replicas: r.get_replicas().max(1), members })
    }

    pub fn write(&self, mut b: ring_info::Builder<'_>) {
        b.set_epoch(self.epoch);
        b.set_vnodes(self.vnodes);
        b.set_replicas(self.replicas);
        let mut list = b.init_members(self.members.len() as u32);
        for (i, m) in self.members.iter().enumerate() {
            m.write(list.reborrow().get(i as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: WorkerId) -> MemberInfo {
        MemberInfo {
            id,
            address: format!("127.0.0.1:{}", 7000 + id),
            state: MemberState::Serving,
            stats: StoreFigures::default(),
            reason: String::new(),
            certificate: String::new(),
            certificate_expires: None,
        }
    }

    fn round_trip(info: &RingInfo) -> RingInfo {
        let mut message = capnp::message::Builder::new_default();
        info.write(message.init_root());
        RingInfo::read(message.get_root_as_reader().unwrap()).unwrap()
    }

    #[test]
    fn the_replication_factor_travels_and_a_ring_without_one_keeps_one_copy() {
        let info = RingInfo { epoch: 9, vnodes: 8, replicas: 3, members: (1..=4).map(member).collect() };
        let back = round_trip(&info);
        assert_eq!(back, info);
        let ring = back.ring();
        assert_eq!(ring.replicas(), 3);
        assert_eq!(ring.chain_of(b"k").len(), 3);
        assert_eq!(ring.chain_of(b"k").head(), ring.owner(b"k"));

        // A master of schema version 3 never sets the field.
        let mut message = capnp::message::Builder::new_default();
        let mut old = message.init_root::<ring_info::Builder<'_>>();
        old.set_epoch(2);
        old.set_vnodes(8);
        let read = RingInfo::read(message.get_root_as_reader().unwrap()).unwrap();
        assert_eq!(read.replicas, 1);
        assert_eq!(read.ring().replicas(), 1);
    }
}
