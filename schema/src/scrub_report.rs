//! The scrub's last pass, as `Master.status` and `Master.scrub` report it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wimpy_capnp::scrub_report;

/// What the scrub's last pass did (see `ScrubReport` in the schema).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// When the last pass began; `None`: no pass yet.
    pub started: Option<SystemTime>,
    pub took: Duration,
    /// A pass is under way now.
    pub running: bool,
    /// (member, range) digests compared.
    pub ranges: u64,
    /// Of those, ones that differed twice and were repaired.
    pub differing: u64,
    /// Records sent in repairs.
    pub repaired: u64,
    /// Log bytes the members read for their digests.
    pub log_bytes: u64,
    /// The cap on each member's reading (0: none).
    pub bytes_per_second: u64,
    /// Why the last pass stopped short; empty when it finished.
    pub failure: String,
}

impl ScrubReport {
    pub fn read(r: scrub_report::Reader<'_>) -> capnp::Result<ScrubReport> {
        Ok(ScrubReport {
            started: match r.get_started_unix() {
                0 => None,
                secs => Some(UNIX_EPOCH + Duration::from_secs(secs)),
            },
            took: Duration::from_millis(r.get_took_millis()),
            running: r.get_running(),
            ranges: r.get_ranges(),
            differing: r.get_differing(),
            repaired: r.get_repaired(),
            log_bytes: r.get_log_bytes(),
            bytes_per_second: r.get_bytes_per_second(),
            failure: r.get_failure()?.to_string().map_err(|e| capnp::Error::failed(format!("scrub failure: {e}")))?,
        })
    }

    pub fn write(&self, mut b: scrub_report::Builder<'_>) {
        b.set_started_unix(crate::ring_info::unix_seconds(self.started));
        b.set_took_millis(self.took.as_millis() as u64);
        b.set_running(self.running);
        b.set_ranges(self.ranges);
        b.set_differing(self.differing);
        b.set_repaired(self.repaired);
        b.set_log_bytes(self.log_bytes);
        b.set_bytes_per_second(self.bytes_per_second);
        b.set_failure(self.failure.as_str());
    }
}
