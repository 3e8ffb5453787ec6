//! The wimpy master: keeps cluster membership and the consistent-hashing ring
//! that clients route by. It stays off the data path unless a client asks it
//! to proxy.
//!
//! The ring works in the key-hash space defined by [`wimpy_schema::key_hash`].
//!
//! It owns membership and epochs ([`membership`]), the range moves of joins
//! and leaves ([`rebalance`]), the proxy and its hot-key cache ([`proxy`])
//! and the service that serves them. It talks to workers through the
//! contract and wimpy-net only: it must never depend on the worker crate,
//! the store or the compute engine.

pub mod membership;
pub mod proxy;
pub mod rebalance;
pub mod scrub;
mod service;
pub mod state;

pub use membership::{Member, MemberState, MemberStats, Membership};
pub use proxy::CacheConfig;
pub use scrub::ScrubConfig;
pub use service::{DEFAULT_REPAIR_BYTES_PER_SECOND, MasterConfig, run};
pub use wimpy_schema::{KeyHashRange, key_hash};
