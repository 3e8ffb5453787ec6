//! The schema's `Failure` union as an owned Rust value, written by workers
//! and the master and read by the master and clients: one mapping instead of
//! one per node.

use crate::wimpy_capnp::failure;

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
        ];
        for f in all {
            let mut msg = capnp::message::Builder::new_default();
            f.write(msg.init_root::<failure::Builder<'_>>());
            let back = Failure::read(msg.get_root_as_reader::<failure::Reader<'_>>().unwrap()).unwrap();
            assert_eq!(back, f);
        }
    }
}
