//! How wimpy nodes and clients talk to each other: Cap'n Proto two-party
//! connections over TCP with the contract's reader limits
//! ([`connection`]), and the coalescing of concurrent key requests to one
//! peer into `batch` calls ([`batcher`]) that the client SDK and the
//! master's proxy share.
//!
//! Every connection in the cluster is opened and served here, so this is
//! where transport security and deadlines belong. It depends on the
//! contract and tokio; never on the store, the compute engine or a GPU
//! crate.

pub mod batcher;
pub mod connection;
pub mod logging;

pub use batcher::{Answered, BatchPeer, BatchStats, Batcher};
pub use connection::{connect, serve};
