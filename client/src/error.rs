//! What a client call can fail with, and so what the caller can do.

use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A node could not be reached; the cluster may be down or the address wrong.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The worker owning the key is down or not serving; try again later.
    #[error("key unavailable: {0}")]
    Unavailable(String),
    /// A key or value over the cluster's limit.
    #[error("{what} of {actual} bytes refused: the limit is {limit}")]
    TooLarge { what: String, limit: u64, actual: u64 },
    /// The request was malformed (an empty key, say).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The worker's store failed; its operator must look.
    #[error("storage failure on the worker: {0}")]
    Storage(String),
    /// The worker is overloaded; back off.
    #[error("worker overloaded")]
    Overloaded,
    /// A compute job was refused or failed; `failure.kind` says why, for
    /// programs to switch on.
    #[error("compute: {0}")]
    Compute(wimpy_schema::ComputeFailure),
    /// No answer within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The ring kept changing under the request.
    #[error("routing did not settle after {0} attempts")]
    Unsettled(u32),
    /// The cluster has no workers yet.
    #[error("the cluster has no workers")]
    NoWorkers,
    /// Any other RPC failure.
    #[error("rpc: {0}")]
    Rpc(#[from] capnp::Error),
}

impl ClientError {
    /// Whether the failure says the cluster could not be reached or served
    /// the key (as opposed to a refusal of the request itself).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Unavailable(_)
                | ClientError::Timeout(_)
                | ClientError::NoWorkers
                | ClientError::Unsettled(_)
        )
    }
}

impl From<capnp::NotInSchema> for ClientError {
    /// A union member or enum value this client does not know: the cluster
    /// runs a newer schema.
    fn from(e: capnp::NotInSchema) -> ClientError {
        ClientError::Rpc(e.into())
    }
}
