//! Errors of the FAWN-DS store.

use std::io;
use std::path::PathBuf;

/// What went wrong in a store call, and so what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key is empty or longer than the store allows; shorten it.
    #[error("key of {len} bytes refused: keys must be 1 to {max} bytes")]
    KeyTooLarge {
        /// Length of the refused key.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The value is longer than the store allows; split it or raise the limit.
    #[error("value of {len} bytes refused: the limit is {max} bytes")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A write or fsync failed earlier, so what is on disk is no longer known
    /// to match what was acknowledged. Every call fails until the store is
    /// reopened, which recovers from the log.
    #[error("store is poisoned by an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// An I/O call failed. Writes and fsyncs that fail also poison the store.
    #[error("{op} failed: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A record read back from the log does not match its checksum: the
    /// flash returned different bytes than were written.
    #[error("corrupt record in segment {segment} at byte {offset}: {reason}")]
    Corrupt {
        /// Sequence number of the segment holding the record.
        segment: u64,
        /// Byte offset of the record inside the segment file.
        offset: u64,
        /// What did not check out.
        reason: &'static str,
    },
    /// The directory holds files this version cannot read.
    #[error("{path}: {reason}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log address space (2^32 units of 8 bytes, 32 GiB) is used up by
    /// live and not yet compacted data; compact or split the store.
    #[error("store is full: {live_bytes} live bytes in {segments} segments fill the 32 GiB log address space")]
    Full {
        /// Bytes of records a get could still reach.
        live_bytes: u64,
        /// Segments on disk.
        segments: usize,
    },
    /// Another store (in this process or another) has the directory open.
    #[error("{path} is in use by another store; close it first")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The options cannot work together.
    #[error("invalid store options: {0}")]
    InvalidOptions(String),
    /// The store is being closed.
    #[error("store is closed")]
    Closed,
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| StoreError::Io { op, source }
    }
}
