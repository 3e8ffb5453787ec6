//! wimpy's key space: the one key hash every client, master and worker
//! routes by ([`key_hash`]), the wrapping [`KeyHashRange`]s that membership
//! changes move between workers, and the consistent-hashing [`Ring`] that
//! maps a hash to its owner and to the chain of workers holding it.
//!
//! Pure functions over plain data. The store places keys by this hash and
//! the contract routes by it, so it sits below both: it must never depend
//! on Cap'n Proto, a runtime, or anything of the store or compute engine.

mod key_hash;
pub mod ring;

pub use key_hash::{KeyHashRange, RangeSet, key_hash};
pub use ring::{Chain, Ring, WorkerId};
