//! What the worker answers when its store refuses a request.

use wimpy_schema::Failure;

use wimpy_store::StoreError;

/// The schema's `Failure` for a store error.
pub fn refusal(e: StoreError) -> Failure {
    match e {
        StoreError::KeyTooLarge { len: 0, .. } => Failure::Invalid("empty key".into()),
        StoreError::KeyTooLarge { len, max } => {
            Failure::TooLarge { what: "key".into(), limit: max as u64, actual: len as u64 }
        }
        StoreError::ValueTooLarge { len, max } => {
            Failure::TooLarge { what: "value".into(), limit: max as u64, actual: len as u64 }
        }
        other => Failure::Storage(other.to_string()),
    }
}
