//! Where a member of the cluster stands, shared by the master that decides it
//! and the clients that route around it.

use crate::wimpy_capnp::member;

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Registered, receiving its ranges, not yet on the ring.
    Joining,
    /// On the ring, serving its keys.
    Serving,
    /// On the ring, handing its ranges over before it goes.
    Leaving,
    /// On the ring but silent past the failure timeout: its keys answer
    /// "unavailable" until it comes back (there is no replica to fail over to).
    Down,
    /// On the ring and heartbeating, but its store failed (a write or an
    /// fsync failed, the disk filled up) and is being reopened: its keys
    /// answer "unavailable" until it serves again.
    Failed,
    /// Back from down or failed on a ring keeping more than one copy: on
    /// the ring, but out of its chains until it has caught up on the
    /// writes it missed.
    Returning,
}

impl MemberState {
    /// Whether the member's keys can be served now: false for `down` and
    /// `failed`, whose keys answer "unavailable".
    pub fn serves(self) -> bool {
        !matches!(self, MemberState::Down | MemberState::Failed | MemberState::Returning)
    }

    /// Whether the member heartbeats with its store open, and so can take
    /// part in moving ranges (a returning member does, though its chains
    /// do not have it yet).
    pub fn is_up(self) -> bool {
        !matches!(self, MemberState::Down | MemberState::Failed)
    }

    /// Whether a ring keeping more than one copy leaves the member out of
    /// its chains (the other members of each chain serve its keys): it
    /// does not serve.
    pub fn out_of_chains(self) -> bool {
        !self.serves()
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberState::Joining => "joining",
            MemberState::Serving => "serving",
            MemberState::Leaving => "leaving",
            MemberState::Down => "down",
            MemberState::Failed => "failed",
            MemberState::Returning => "returning",
        })
    }
}

impl From<MemberState> for member::State {
    fn from(s: MemberState) -> member::State {
        match s {
            MemberState::Joining => member::State::Joining,
            MemberState::Serving => member::State::Serving,
            MemberState::Leaving => member::State::Leaving,
            MemberState::Down => member::State::Down,
            MemberState::Failed => member::State::Failed,
            MemberState::Returning => member::State::Returning,
        }
    }
}

impl From<member::State> for MemberState {
    fn from(s: member::State) -> MemberState {
        match s {
            member::State::Joining => MemberState::Joining,
            member::State::Serving => MemberState::Serving,
            member::State::Leaving => MemberState::Leaving,
            member::State::Down => MemberState::Down,
            member::State::Failed => MemberState::Failed,
            member::State::Returning => MemberState::Returning,
        }
    }
}
