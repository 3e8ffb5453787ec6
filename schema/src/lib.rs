//! wimpy's contract: what every node and client agrees on. The Cap'n Proto
//! schema (`wimpy.capnp`) and its generated code ([`wimpy_capnp`]), the
//! schema's `Failure` union as a Rust value ([`Failure`]), compute jobs and
//! their wire codec ([`job`]), the batch codecs ([`batch`]), range lists ([`ranges`]), member states, certificate roles,
//! reader limits, and, re-exported from wimpy-keyspace, the key hash and the
//! ring that routing follows.
//!
//! Plain data and codecs only: it must never depend on a runtime (tokio),
//! the RPC system, the store, or the compute engine, so that anything
//! speaking the protocol can use it.

pub mod batch;
mod failure;
pub mod job;
mod member_state;
pub mod range_move;
pub mod ranges;
pub mod ring_info;
mod role;
pub mod scrub_report;
mod stats;

pub use failure::{ComputeFailure, ComputeFailureKind, Failure, LimitKind, StorageKind};
pub use member_state::MemberState;
pub use range_move::{MoveChange, RangeMove};
pub use ring_info::{MemberInfo, RingInfo};
pub use role::{Role, UnknownRole};
pub use scrub_report::ScrubReport;
pub use stats::{DamagedSpan, MAX_REPORTED_DAMAGE, StoreFigures};
pub use wimpy_keyspace::{KeyHashRange, RangeSet, Ring, WorkerId, key_hash, ring};

/// Limits every wimpy node and client reads Cap'n Proto messages with.
///
/// A message carries at most one inline value or stream chunk (1 MiB each,
/// `maxInlineValue` and `maxChunk` in the schema) plus small fields, so 8 MiB
/// of traversal is ample for honest peers and bounds what a hostile one can
/// make a node walk. Nesting stays at the library default.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut o = capnp::message::ReaderOptions::new();
    o.traversal_limit_in_words(Some((8 << 20) / 8));
    o
}

/// Code generated from `schema/wimpy.capnp` by capnpc at build time.
#[allow(missing_debug_implementations, clippy::all, clippy::unimplemented, clippy::undocumented_unsafe_blocks)]
pub mod wimpy_capnp {
    include!(concat!(env!("OUT_DIR"), "/wimpy_capnp.rs"));
}
