//! The wimpy client SDK: fetches the ring from the master, caches it, and
//! sends each request straight to the worker that owns the key. A worker that
//! answers "stale epoch" makes the client refresh the ring and retry; a
//! dropped connection is re-opened. The master stays off the data path.
//!
//! Requests that tasks sharing a [`Client`] have in flight to the same worker
//! at once travel together in one message (`Worker.batch`), each still
//! answered on its own: the many-clients case costs one RPC per batch rather
//! than one per request.
//!
//! Connections are TLS with a certificate from the cluster's CA
//! ([`security`]): `Client::connect(addr, Security::from_files(...)?)`.
//!
//! capnp-rpc is single-threaded, so a [`Client`] lives on one thread: use it
//! inside a tokio `LocalSet` on a current-thread runtime.
//!
//! Every get, put and delete goes through one transport (`Client::call`):
//! to the owner or, in proxy mode, the master; batched, alone, or streamed
//! when the value is larger than a message. The SDK is what applications
//! link: it must never depend on the worker, the store, the compute engine
//! or a GPU crate.

mod client;
mod compute;
mod error;
mod streams;

pub use client::{BatchStats, Client, ClientOptions, ClusterStatus, Member, MemberState, RingView};
pub use compute::{ComputeOutput, ComputeRequest, WorkerBackend};
pub use error::ClientError;
/// Credentials and TLS: what a client presents to the cluster.
pub use wimpy_net::security;
pub use wimpy_net::security::Security;
pub use wimpy_schema::job;
pub use wimpy_schema::job::StageTimes;
pub use wimpy_schema::ring::{DEFAULT_REPLICAS, MAX_REPLICAS};
pub use wimpy_schema::{ComputeFailure, ComputeFailureKind, LimitKind, StorageKind};
pub use wimpy_schema::{DamagedSpan, KeyHashRange, MoveChange, RangeMove, Ring, ScrubReport, StoreFigures, key_hash};
