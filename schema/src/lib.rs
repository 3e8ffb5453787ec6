//! wimpy's shared vocabulary: the Cap'n Proto schema, the key hash every
//! client and worker routes by, the consistent-hashing [`Ring`], and the
//! key-hash ranges that membership changes move between workers.

mod key_hash;
pub mod ring;

pub use key_hash::{KeyHashRange, key_hash};
pub use ring::{Ring, WorkerId};

/// Code generated from `schema/wimpy.capnp` by capnpc at build time.
#[allow(missing_debug_implementations, clippy::all)]
pub mod wimpy_capnp {
    include!(concat!(env!("OUT_DIR"), "/wimpy_capnp.rs"));
}
