//! The schema's `Failure` union as an owned Rust value, written by workers
//! and the master and read by the master and clients: one mapping instead of
//! one per node.

use std::fmt;

use crate::Role;
use crate::wimpy_capnp::{compute_failure, failure};

pub use crate::wimpy_capnp::compute_failure::Kind as ComputeFailureKind;
pub use crate::wimpy_capnp::{LimitKind, StorageKind};

/// Why a request was not carried out (see `Failure` in wimpy.capnp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Routed by another ring than the node's; the node is at this epoch.
    StaleEpoch(u64),
    /// A key, value or answer over a limit; `kind` says which, and so what
    /// to do about it.
    TooLarge { kind: LimitKind, limit: u64, actual: u64 },
    /// A malformed request.
    Invalid(String),
    /// The key's owner cannot serve it now.
    Unavailable(String),
    /// Too much work queued: back off.
    Overloaded,
    /// The store failed; `kind` says how.
    Storage { kind: StorageKind, message: String },
    /// A compute job was refused or failed.
    Compute(ComputeFailure),
    /// The caller's certificate does not carry the role the call needs.
    Forbidden { needs: Role, message: String },
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

impl fmt::Display for ComputeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for LimitKind {
    /// What went over the limit, in the words a `tooLarge.what` carries
    /// (the words schema version 1 readers compare).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Unspecified => "request",
            LimitKind::Key => "key",
            LimitKind::Value => "value",
            LimitKind::ValueNeedsStream => "value (use getStream)",
            LimitKind::BatchAnswerFull => "batch answer",
            LimitKind::Result => "result",
        })
    }
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageKind::Io => "I/O failure",
            StorageKind::Full => "store full",
            StorageKind::Poisoned => "store poisoned by an earlier failed write",
            StorageKind::Corrupt => "corrupt data",
        })
    }
}

impl Failure {
    /// A storage failure of `kind`, described by `message`.
    pub fn storage(kind: StorageKind, message: impl Into<String>) -> Failure {
        Failure::Storage { kind, message: message.into() }
    }

    /// Fills in a `Failure` builder.
    pub fn write(&self, mut f: failure::Builder<'_>) {
        match self {
            Failure::StaleEpoch(epoch) => f.set_stale_epoch(*epoch),
            Failure::TooLarge { kind, limit, actual } => {
                let mut g = f.init_too_large();
                g.set_what(kind.to_string());
                g.set_kind(*kind);
                g.set_limit(*limit);
                g.set_actual(*actual);
            }
            Failure::Invalid(m) => f.set_invalid(m),
            Failure::Unavailable(m) => f.set_unavailable(m),
            Failure::Overloaded => f.set_overloaded(()),
            Failure::Storage { kind, message } => {
                let mut g = f.init_storage();
                g.set_message(message);
                g.set_kind(*kind);
            }
            Failure::Compute(c) => {
                let mut g = f.init_compute();
                g.set_kind(c.kind);
                g.set_message(&c.message);
                g.set_limit(c.limit);
                g.set_actual(c.actual);
            }
            Failure::Forbidden { needs, message } => {
                let mut g = f.init_forbidden();
                g.set_needs((*needs).into());
                g.set_message(message);
            }
        }
    }

    /// A call refused to `caller` (in words) for want of `needs`.
    pub fn forbidden(call: &str, needs: Role, caller: impl fmt::Display) -> Failure {
        Failure::Forbidden { needs, message: format!("{call} needs the {needs} role; {caller} does not hold it") }
    }

    /// Reads a `Failure`. A union member or kind this build does not know
    /// (a newer peer's) reads as the nearest it does, with a message that
    /// says what arrived.
    pub fn read(f: failure::Reader<'_>) -> capnp::Result<Failure> {
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
            Ok(t?.to_string().unwrap_or_else(|_| "(not UTF-8)".into()))
        };
        Ok(match f.which() {
            Ok(failure::StaleEpoch(e)) => Failure::StaleEpoch(e),
            Ok(failure::TooLarge(g)) => Failure::TooLarge {
                kind: g.get_kind().unwrap_or(LimitKind::Unspecified),
                limit: g.get_limit(),
                actual: g.get_actual(),
            },
            Ok(failure::Invalid(m)) => Failure::Invalid(text(m)?),
            Ok(failure::Unavailable(m)) => Failure::Unavailable(text(m)?),
            Ok(failure::Overloaded(())) => Failure::Overloaded,
            Ok(failure::Storage(g)) => {
                Failure::Storage { kind: g.get_kind().unwrap_or(StorageKind::Io), message: text(g.get_message())? }
            }
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
            Ok(failure::Forbidden(g)) => Failure::Forbidden {
                // A role this build does not know reads as the narrowest.
                needs: g.get_needs().map(Role::from).unwrap_or(Role::Master),
                message: text(g.get_message())?,
            },
            Err(e) => Failure::storage(StorageKind::Io, format!("unknown failure kind: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One failure of every kind the schema has.
    fn every_kind() -> Vec<Failure> {
        let mut all = vec![
            Failure::StaleEpoch(9),
            Failure::Invalid("empty key".into()),
            Failure::Unavailable("down".into()),
            Failure::Overloaded,
            Failure::Compute(ComputeFailure {
                kind: ComputeFailureKind::TooManyPixels,
                message: "too big".into(),
                limit: 50,
                actual: 51,
            }),
        ];
        for kind in [
            LimitKind::Unspecified,
            LimitKind::Key,
            LimitKind::Value,
            LimitKind::ValueNeedsStream,
            LimitKind::BatchAnswerFull,
            LimitKind::Result,
        ] {
            all.push(Failure::TooLarge { kind, limit: 10, actual: 11 });
        }
        for kind in [StorageKind::Io, StorageKind::Full, StorageKind::Poisoned, StorageKind::Corrupt] {
            all.push(Failure::storage(kind, "disk"));
        }
        for needs in Role::ALL {
            all.push(Failure::forbidden("setRing", needs, "someone"));
        }
        all
    }

    #[test]
    fn every_kind_round_trips_through_a_message() {
        for f in every_kind() {
            let mut msg = capnp::message::Builder::new_default();
            f.write(msg.init_root::<failure::Builder<'_>>());
            let back = Failure::read(msg.get_root_as_reader::<failure::Reader<'_>>().unwrap()).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn too_large_keeps_the_words_version_1_readers_compare() {
        let mut msg = capnp::message::Builder::new_default();
        Failure::TooLarge { kind: LimitKind::BatchAnswerFull, limit: 1, actual: 2 }
            .write(msg.init_root::<failure::Builder<'_>>());
        let f = msg.get_root_as_reader::<failure::Reader<'_>>().unwrap();
        let failure::TooLarge(g) = f.which().unwrap() else { panic!("not tooLarge") };
        assert_eq!(g.get_what().unwrap().to_str().unwrap(), "batch answer");
    }
}
