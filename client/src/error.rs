//! What a client call can fail with, and so what the caller can do.

use std::time::Duration;

use wimpy_schema::{Failure, LimitKind, Role, StorageKind, WorkerId};

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
    /// A key, value or answer over the cluster's limit; `kind` says which.
    #[error("{kind} of {actual} bytes refused: the limit is {limit}")]
    TooLarge { kind: LimitKind, limit: u64, actual: u64 },
    /// The request was malformed (an empty key, say).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The worker's store failed; `kind` says how (a full disk, a store
    /// that needs its worker restarted, corrupt data, other I/O).
    #[error("storage failure on the worker ({kind}): {message}")]
    Storage { kind: StorageKind, message: String },
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
    /// No member of the cluster has this id.
    #[error("no worker has id {0}")]
    NoSuchWorker(WorkerId),
    /// The worker is the last on the ring: nobody could take its keys.
    #[error("worker {0} is the last on the ring: there is nobody to hand its keys to")]
    LastWorker(WorkerId),
    /// The client's certificate does not carry the role the call needs
    /// (`wimpy leave` needs an admin's, say).
    #[error("forbidden: {message}")]
    Forbidden { needs: Role, message: String },
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

impl From<Failure> for ClientError {
    /// A node's refusal. A stale epoch never gets this far (the transport
    /// retries it); should one, the ring did not settle.
    fn from(f: Failure) -> ClientError {
        match f {
            Failure::StaleEpoch(_) => ClientError::Unsettled(1),
            Failure::TooLarge { kind, limit, actual } => ClientError::TooLarge { kind, limit, actual },
            Failure::Invalid(m) => ClientError::Invalid(m),
            Failure::Unavailable(m) => ClientError::Unavailable(m),
            Failure::Overloaded => ClientError::Overloaded,
            Failure::Storage { kind, message } => ClientError::Storage { kind, message },
            Failure::Compute(c) => ClientError::Compute(c),
            Failure::Forbidden { needs, message } => ClientError::Forbidden { needs, message },
        }
    }
}

impl From<capnp::NotInSchema> for ClientError {
    /// A union member or enum value this client does not know: the cluster
    /// runs a newer schema.
    fn from(e: capnp::NotInSchema) -> ClientError {
        ClientError::Rpc(e.into())
    }
}
