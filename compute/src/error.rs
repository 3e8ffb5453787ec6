use wimpy_schema::job::OpError;

use super::BackendKind;

/// Why a compute job did not produce a result. Every refusal states the
/// limit and the actual value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComputeError {
    /// The job itself is malformed (unknown operation, bad parameter, wrong order).
    #[error(transparent)]
    BadJob(#[from] OpError),
    /// The value is not an image this worker can decode.
    #[error("cannot decode the value as an image: {0}")]
    BadImage(String),
    /// The image has no pixels.
    #[error("the image is {width}x{height}: it has no pixels")]
    EmptyImage { width: u32, height: u32 },
    /// The image (as declared by its header, or as an operation would make it) is too large.
    #[error("the image would be {width}x{height} = {pixels} pixels, more than the limit of {limit}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, limit: u64 },
    /// The value is larger than a job may read.
    #[error("the value is {actual} bytes, more than the compute limit of {limit}")]
    ValueTooLarge { actual: u64, limit: u64 },
    /// The job ran past its deadline (checked between passes).
    #[error("the job ran {elapsed_ms} ms, past its deadline of {limit_ms} ms")]
    DeadlineExceeded { elapsed_ms: u64, limit_ms: u64 },
    /// A crop rectangle that does not fit inside the image.
    #[error("crop {x},{y} {crop_width}x{crop_height} does not fit in a {width}x{height} image")]
    CropOutside { x: u32, y: u32, crop_width: u32, crop_height: u32, width: u32, height: u32 },
    /// The job asked for a backend this worker does not have.
    #[error("backend {0} is not available on this worker")]
    BackendUnavailable(BackendKind),
    /// The backend's queue is full.
    #[error("backend {backend} is busy: {queued} jobs queued, the limit is {limit}")]
    Overloaded { backend: BackendKind, queued: usize, limit: usize },
    /// Encoding failed (the encoder refused the image).
    #[error("cannot encode the image: {0}")]
    Encode(String),
    /// The device failed (lost context, out of memory, shader error).
    #[error("backend {backend} failed: {reason}")]
    Device { backend: BackendKind, reason: String },
}
