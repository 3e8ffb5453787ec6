//! Why the worker did not carry out a request, as the schema's `Failure`.

use super::FailureBuilder;
use crate::store::StoreError;

/// A request the worker refused or could not carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Routed by another ring than the worker's; the worker is at this epoch.
    StaleEpoch(u64),
    /// A key or value over a limit.
    TooLarge { what: &'static str, limit: u64, actual: u64 },
    /// A malformed request.
    Invalid(String),
    /// The key's owner cannot serve it now.
    Unavailable(String),
    /// Too much work queued: back off.
    Overloaded,
    /// The store failed.
    Storage(String),
}

impl Refusal {
    /// Fills in the schema's `Failure`.
    pub(crate) fn write(&self, mut f: FailureBuilder<'_>) {
        match self {
            Refusal::StaleEpoch(epoch) => f.set_stale_epoch(*epoch),
            Refusal::TooLarge { what, limit, actual } => {
                let mut g = f.init_too_large();
                g.set_what(*what);
                g.set_limit(*limit);
                g.set_actual(*actual);
            }
            Refusal::Invalid(m) => f.set_invalid(m),
            Refusal::Unavailable(m) => f.set_unavailable(m),
            Refusal::Overloaded => f.set_overloaded(()),
            Refusal::Storage(m) => f.set_storage(m),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::KeyTooLarge { len: 0, .. } => Refusal::Invalid("empty key".into()),
            StoreError::KeyTooLarge { len, max } => {
                Refusal::TooLarge { what: "key", limit: max as u64, actual: len as u64 }
            }
            StoreError::ValueTooLarge { len, max } => {
                Refusal::TooLarge { what: "value", limit: max as u64, actual: len as u64 }
            }
            other => Refusal::Storage(other.to_string()),
        }
    }
}
