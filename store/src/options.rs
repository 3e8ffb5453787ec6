//! How a store is configured.

use std::str::FromStr;
use std::time::Duration;

use super::error::StoreError;
use super::format::{MAX_KEY_LEN, MAX_SEGMENT_SHIFT, MIN_SEGMENT_SHIFT, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// When written data is forced to flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every put and delete returns only after its record is fsynced.
    /// Concurrent writers share one fsync (group commit).
    Always,
    /// A background thread fsyncs at this interval; a crash loses at most
    /// about one interval of acknowledged writes.
    Interval(Duration),
    /// Only [`Store::flush`](super::Store::flush), checkpoints and close
    /// fsync; a crash may lose any write since.
    Never,
}

impl FromStr for SyncMode {
    type Err = StoreError;
    /// Parses `always`, `never` or `interval:<milliseconds>`.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(SyncMode::Interval(Duration::from_millis(ms))),
                _ => Err(StoreError::InvalidOptions(format!(
                    "sync mode {s:?}: expected always, never or interval:<milliseconds > 0>"
                ))),
            },
        }
    }
}

/// Background compaction settings.
#[derive(Clone, Debug)]
pub struct CompactionOptions {
    /// Whether a background thread compacts at all.
    pub enabled: bool,
    /// Compaction starts when garbage makes up this share of the log.
    pub garbage_ratio: f64,
    /// Only segments with at least this share of garbage are rewritten:
    /// copying a mostly live segment frees little.
    pub min_segment_garbage: f64,
    /// Upper bound on bytes read per second, so compaction leaves flash
    /// bandwidth to the foreground; `None` for no bound.
    pub bytes_per_second: Option<u64>,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            enabled: true,
            garbage_ratio: 0.4,
            min_segment_garbage: 0.25,
            bytes_per_second: Some(64 << 20),
        }
    }
}

/// Store settings. [`Options::default`] suits a worker on a small node.
#[derive(Clone, Debug)]
pub struct Options {
    /// When writes are forced to flash.
    pub sync: SyncMode,
    /// Longest key accepted, in bytes (at most 65535: the format's u16).
    pub max_key_bytes: usize,
    /// Longest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Size of each log segment file; a power of two from 1 MiB to 4 GiB.
    /// Fixed when the store is created.
    pub segment_bytes: u64,
    /// Log bytes appended between two index checkpoints; bounds how much
    /// log a recovery must roll forward over.
    pub checkpoint_every_bytes: u64,
    /// Keys the index is sized for at first; it grows past this as needed.
    pub expected_keys: u64,
    /// Share of index slots in use at which the index is grown.
    pub max_index_load: f64,
    /// Factor by which the index grows when full.
    pub index_growth: f64,
    /// Background compaction.
    pub compaction: CompactionOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            max_key_bytes: 4096,
            max_value_bytes: 64 << 20,
            segment_bytes: 256 << 20,
            checkpoint_every_bytes: 256 << 20,
            expected_keys: 4096,
            max_index_load: 0.94,
            index_growth: 2.0,
            compaction: CompactionOptions::default(),
        }
    }
}

impl Options {
    /// log2 of the segment size, after checking it.
    pub(crate) fn segment_shift(&self) -> Result<u8, StoreError> {
        let b = self.segment_bytes;
        let shift = b.trailing_zeros() as u8;
        if !b.is_power_of_two() || !(MIN_SEGMENT_SHIFT..=MAX_SEGMENT_SHIFT).contains(&shift) {
            return Err(StoreError::InvalidOptions(format!(
                "segment_bytes {b} must be a power of two from 1 MiB to 4 GiB"
            )));
        }
        Ok(shift)
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::InvalidOptions(m));
        self.segment_shift()?;
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_LEN {
            return bad(format!("max_key_bytes {} must be 1..={MAX_KEY_LEN}", self.max_key_bytes));
        }
        let largest = (SEGMENT_HEADER_LEN as usize + RECORD_HEADER_LEN + 8) as u64
            + self.max_key_bytes as u64
            + self.max_value_bytes as u64;
        if largest > self.segment_bytes || self.max_value_bytes > u32::MAX as usize {
            return bad(format!(
                "a record of the largest key and value ({largest} bytes) must fit one segment ({} bytes)",
                self.segment_bytes
            ));
        }
        if !(0.5..=0.98).contains(&self.max_index_load) {
            return bad(format!("max_index_load {} must be in 0.5..=0.98", self.max_index_load));
        }
        if !(1.1..=4.0).contains(&self.index_growth) {
            return bad(format!("index_growth {} must be in 1.1..=4.0", self.index_growth));
        }
        let c = &self.compaction;
        if !(0.0..1.0).contains(&c.garbage_ratio) || !(0.0..1.0).contains(&c.min_segment_garbage) {
            return bad("compaction ratios must be in 0..1".into());
        }
        if self.checkpoint_every_bytes == 0 {
            return bad("checkpoint_every_bytes must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_modes_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("always".parse::<SyncMode>().unwrap(), SyncMode::Always);
        assert_eq!("never".parse::<SyncMode>().unwrap(), SyncMode::Never);
        assert_eq!("interval:250".parse::<SyncMode>().unwrap(), SyncMode::Interval(Duration::from_millis(250)));
        for bad in ["", "sometimes", "interval:", "interval:0", "interval:x"] {
            let err = bad.parse::<SyncMode>().unwrap_err().to_string();
            assert!(err.contains("interval:<milliseconds"), "{err}");
        }
    }

    #[test]
    fn defaults_are_valid_and_oversized_values_are_not() {
        Options::default().validate().unwrap();
        let o = Options { segment_bytes: 1 << 20, ..Options::default() };
        assert!(matches!(o.validate(), Err(StoreError::InvalidOptions(_))));
        let o = Options { segment_bytes: 3 << 20, ..Options::default() };
        assert!(o.validate().is_err());
    }
}
