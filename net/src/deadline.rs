//! Deadlines for node-to-node calls: every call a master or worker makes to
//! another node ends in time, so one hung peer (a stopped process, a cut
//! link) cannot wedge the caller.
//!
//! The times are in tens of heartbeats: a peer that answers nothing for a
//! [`CALL`] has long been marked down by the master's failure detector
//! (which waits about two seconds), so giving up on it loses nothing that
//! waiting would have brought.

use std::future::Future;
use std::time::Duration;

/// A TCP connect to another node: a live node's kernel answers at once.
pub const CONNECT: Duration = Duration::from_secs(3);

/// One control call (fence, setRing, receiveRange, register, heartbeat) or
/// one chunk of a stream to another node.
pub const CALL: Duration = Duration::from_secs(5);

/// Awaits `call`, or fails with a `disconnected` error naming `what` once
/// `limit` passes: the peer is treated as gone, and its connection should be
/// dropped.
pub async fn within<T>(limit: Duration, what: &str, call: impl Future<Output = capnp::Result<T>>) -> capnp::Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(capnp::Error::disconnected(format!("{what}: no answer within {limit:?}"))),
    }
}
