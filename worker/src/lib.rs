//! The wimpy worker: owns part of the key space, keeps it in a FAWN-DS
//! store (wimpy-store), and runs compute jobs next to the data
//! (wimpy-compute). This crate is the glue: the RPC service over both
//! ([`server`]), staying on the master's ring ([`membership`]), keeping
//! the store in service and reopening it when it fails ([`store_slot`]),
//! and a
//! whole worker process as one call ([`node`]) that the `wimpy-worker`
//! binary and tests run.
//!
//! Everything that is not glue lives below: storage never depends on RPC,
//! and compute never on the store. The master and the client SDK never
//! depend on this crate.

pub mod membership;
pub mod node;
pub mod server;
pub mod store_slot;
