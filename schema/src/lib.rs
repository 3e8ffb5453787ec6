//! wimpy's shared vocabulary: the Cap'n Proto schema, the key hash every
//! client and worker routes by, the consistent-hashing [`Ring`], and the
//! key-hash ranges that membership changes move between workers.

pub mod batch;
mod failure;
pub mod job;
mod key_hash;
mod member_state;
pub mod ring;
pub mod rpc;

pub use failure::{ComputeFailure, ComputeFailureKind, Failure};
pub use key_hash::{KeyHashRange, key_hash};
pub use member_state::MemberState;
pub use ring::{Ring, WorkerId};

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
