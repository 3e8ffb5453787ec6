//! How wimpy nodes and clients talk to each other: Cap'n Proto two-party
//! connections over TCP with the contract's reader limits
//! ([`connection`]), key requests to a worker or the master alone or in
//! batches ([`KeyPeer`]), and the coalescing of concurrent key requests to
//! one peer into `batch` calls ([`batcher`]) that the client SDK and the
//! master's proxy share. Also the start-up every binary shares: logging
//! ([`logging`]) and the signals that stop a process ([`signals`]).
//!
//! Every connection in the cluster is opened and served here, TLS under
//! each ([`security`]: the cluster's CA, credentials, peers' identities),
//! with deadlines ([`deadline`]). It depends on the
//! contract and tokio; never on the store, the compute engine or a GPU
//! crate.

pub mod batcher;
pub mod connection;
pub mod deadline;
pub mod delay;
pub mod flags;
pub mod logging;
mod peer;
pub mod security;
pub mod signals;

pub use batcher::{Answered, BatchStats, Batcher};
pub use connection::{connect, connect_from, connect_to, serve};
pub use peer::KeyPeer;
pub use security::{Peer, Role, Security};
