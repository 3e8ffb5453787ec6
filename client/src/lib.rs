//! The wimpy client SDK: routes each key straight to the worker that owns it,
//! by the key hash every node agrees on.

pub use wimpy_schema::{KeyHashRange, key_hash};
