//! The wimpy worker: owns part of the key space, keeps it in a FAWN-DS
//! log-structured [`store`], and runs compute jobs next to the data.

pub mod compute;
pub mod membership;
pub mod node;
pub mod server;
pub mod store;
