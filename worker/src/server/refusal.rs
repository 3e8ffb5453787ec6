//! What the worker answers when its store refuses a request.

use wimpy_schema::{Failure, LimitKind, StorageKind};
use wimpy_store::StoreError;

/// The schema's `Failure` for a store error: a refusal of the request
/// itself where it was one (`tooLarge`, `invalid`), else a `storage`
/// failure of the kind that tells the caller (and its operator) what to do.
pub fn refusal(e: StoreError) -> Failure {
    let kind = match &e {
        StoreError::KeyTooLarge { len: 0, .. } => return Failure::Invalid("empty key".into()),
        StoreError::KeyTooLarge { len, max } => {
            return Failure::TooLarge { kind: LimitKind::Key, limit: *max as u64, actual: *len as u64 };
        }
        StoreError::ValueTooLarge { len, max } => {
            return Failure::TooLarge { kind: LimitKind::Value, limit: *max as u64, actual: *len as u64 };
        }
        // Closing is the worker stopping: ask someone else, or again later.
        StoreError::Closed => return Failure::Unavailable("the worker is stopping".into()),
        StoreError::Full { .. } => StorageKind::Full,
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => StorageKind::Full,
        // Out of service until it is reopened: the key holds what it held,
        // it just cannot be read or written now.
        StoreError::Poisoned { cause } => {
            return Failure::Unavailable(format!("this worker's store failed and is being reopened: {cause}"));
        }
        StoreError::Corrupt { .. } | StoreError::Format { .. } => StorageKind::Corrupt,
        _ => StorageKind::Io,
    };
    Failure::storage(kind, e.to_string())
}
