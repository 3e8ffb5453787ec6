//! How a command fails: a message and the exit code that tells scripts what
//! kind of failure it was.

use wimpy_client::{ClientError, ComputeFailureKind};

/// Exit codes, one per kind of failure a script may want to tell apart.
pub(crate) mod exit {
    /// Any other failure.
    pub const ERROR: u8 = 1;
    /// The command line was wrong (clap uses the same code).
    pub const USAGE: u8 = 2;
    /// The key holds no value.
    pub const NOT_FOUND: u8 = 3;
    /// The cluster could not be reached, or could not serve the key now.
    pub const UNAVAILABLE: u8 = 4;
    /// The input was refused: over a limit, malformed, not an image.
    pub const REFUSED: u8 = 5;
    /// Your certificate does not allow the command (a client's asking for
    /// an admin's `wimpy leave`, say).
    pub const FORBIDDEN: u8 = 6;
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(exit::USAGE, message)
    }

    pub(crate) fn refused(message: impl std::fmt::Display) -> Failure {
        Failure::new(exit::REFUSED, message.to_string())
    }

    pub(crate) fn trouble(message: impl Into<String>) -> Failure {
        Failure::new(exit::ERROR, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Failure {
        Failure::new(exit::UNAVAILABLE, message)
    }

    pub(crate) fn not_found(key: &str) -> Failure {
        Failure::new(exit::NOT_FOUND, format!("{key}: not found"))
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        use ComputeFailureKind as K;
        let code = match &e {
            ClientError::TooLarge { .. } | ClientError::Invalid(_) | ClientError::LastWorker(_) => exit::REFUSED,
            ClientError::NoSuchWorker(_) => exit::NOT_FOUND,
            ClientError::Forbidden { .. } => exit::FORBIDDEN,
            ClientError::Compute(c) => match c.kind {
                K::BadJob
                | K::BadImage
                | K::EmptyImage
                | K::TooManyPixels
                | K::ValueTooLarge
                | K::CropOutside
                | K::BackendUnavailable => exit::REFUSED,
                K::BackendBusy => exit::UNAVAILABLE,
                K::DeadlineExceeded | K::Encode | K::Device => exit::ERROR,
            },
            e if e.is_unavailable() => exit::UNAVAILABLE,
            _ => exit::ERROR,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::trouble(e.to_string())
    }
}
