//! The schema's `Failure` union as an owned Rust value, written by workers
//! and the master and read by the master and clients: one mapping instead of
//! one per node.

use crate::wimpy_capnp::{compute_failure, failure};

/// Why a request was not carried out (see `Failure` in wimpy.capnp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Routed by another ring than the node's; the node is at this epoch.
    StaleEpoch(u64),
    /// A key or value over a limit; `what` names it ("key", "value", ...).
    TooLarge { what: String, limit: u64, actual: u64 },
    /// A malformed request.
    Invalid(String),
    /// The key's owner cannot serve it now.
    Unavailable(String),
    /// Too much work queued: back off.
    Overloaded,
    /// The store failed.
    Storage(String),
    /// A compute job was refused or failed.
    Compute(ComputeFailure),
}

/// Why a compute job gave no result (see `ComputeFailure` in wimpy.capnp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeFailure {
    /// What kind of failure, for programs to switch on.
    pub kind: ComputeFailureKind,
    /// In words, with the limit and the actual value.
    pub message: String,
    /// The limit broken, where the kind has one (else 0).
    pub limit: u64,
    /// The value that broke it (else 0).
    pub actual: u64,
}

pub use crate::wimpy_capnp::compute_failure::Kind as ComputeFailureKind;

impl std::fmt::Display for ComputeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// Fills in a `Failure` builder.
    pub fn write(&self, mut f: failure::Builder<'_>) {
        match self {
            Failure::StaleEpoch(epoch) => f.set_stale_epoch(*epoch),
            Failure::TooLarge { what, limit, actual } => {
                let mut g = f.init_too_large();
                g.set_what(what);
                g.set_limit(*limit);
                g.set_actual(*actual);
            }
            Failure::Invalid(m) => f.set_invalid(m),
            Failure::Unavailable(m) => f.set_unavailable(m),
            Failure::Overloaded => f.set_overloaded(()),
            Failure::Storage(m) => f.set_storage(m),
            Failure::Compute(c) => {
                let mut g = f.init_compute();
                g.set_kind(c.kind);
                g.set_message(&c.message);
                g.set_limit(c.limit);
                g.set_actual(c.actual);
            }
        }
    }

    /// Reads a `Failure`; a union member this build does not know reads as
    /// a storage failure that says so.
    pub fn read(f: failure::Reader<'_>) -> capnp::Result<Failure> {
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
            Ok(t?.to_string().unwrap_or_else(|_| "(not UTF-8)".into()))
        };
        Ok(match f.which() {
            Ok(failure::StaleEpoch(e)) => Failure::StaleEpoch(e),
            Ok(failure::TooLarge(g)) => {
                Failure::TooLarge { what: text(g.get_what())?, limit: g.get_limit(), actual: g.get_actual() }
            }
            Ok(failure::Invalid(m)) => Failure::Invalid(text(m)?),
            Ok(failure::Unavailable(m)) => Failure::Unavailable(text(m)?),
            Ok(failure::Overloaded(())) => Failure::Overloaded,
            Ok(failure::Storage(m)) => Failure::Storage(text(m)?),
            Ok(failure::Compute(c)) => {
                let c: compute_failure::Reader<'_> = c?;
                Failure::Compute(ComputeFailure {
                    // An unknown kind from a newer peer reads as a device failure; the message says what it was.
                    kind: c.get_kind().unwrap_or(ComputeFailureKind::Device),
                    message: text(c.get_message())?,
                    limit: c.get_limit(),
                    actual: c.get_actual(),
                })
            }
            Err(e) => Failure::Storage(format!("unknown failure kind: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_a_message() {
        let all = [
            Failure::StaleEpoch(9),
            Failure::TooLarge { what: "value".into(), limit: 10, actual: 11 },
            Failure::Invalid("empty key".into()),
            Failure::Unavailable("down".into()),
            Failure::Overloaded,
            Failure::Storage("disk".into()),
            Failure::Compute(ComputeFailure {
                kind: ComputeFailureKind::TooManyPixels,
                message: "too big".into(),
                limit: 50,
                actual: 51,
            }),
        ];
        for f in all {
            let mut msg = capnp::message::Builder::new_default();
            f.write(msg.init_root::<failure::Builder<'_>>());
            let back = Failure::read(msg.get_root_as_reader::<failure::Reader<'_>>().unwrap()).unwrap();
            assert_eq!(back, f);
        }
    }
}
