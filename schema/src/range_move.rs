//! The copy a membership change is making, as `Master.status` reports it.

use std::time::Duration;

use crate::WorkerId;
use crate::wimpy_capnp::range_move;

/// What kind of membership change copies ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveChange {
    /// A new worker takes its ranges.
    Join,
    /// A worker back from down catches up on what it missed.
    Return,
    /// A worker hands its ranges over (`wimpy leave`).
    Leave,
    /// The chains of a dead worker take on new members (`wimpy remove`).
    Remove,
}

impl std::fmt::Display for MoveChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MoveChange::Join => "join",
            MoveChange::Return => "return",
            MoveChange::Leave => "leave",
            MoveChange::Remove => "remove",
        })
    }
}

/// How far the copy of a membership change has got.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeMove {
    /// The member joining, returning, leaving or removed.
    pub worker: WorkerId,
    pub change: MoveChange,
    /// 1: the copy made while writes go on; 2: the writes since, with the
    /// ranges' heads fenced.
    pub pass: u8,
    /// Frame bytes this pass has copied.
    pub bytes_copied: u64,
    /// What the first pass should copy in all (an estimate from the
    /// sources' live bytes); 0 in the second pass.
    pub bytes_expected: u64,
    /// Records this pass has copied, as of the last pair it finished.
    pub records: u64,
    /// Since this pass began.
    pub elapsed: Duration,
    /// The cap on each source's rate in the first pass (0: none).
    pub bytes_per_second: u64,
    /// (source, receiver) pairs this pass has finished, and all of them.
    pub pairs_done: u32,
    pub pairs: u32,
}

impl RangeMove {
    pub fn read(r: range_move::Reader<'_>) -> capnp::Result<RangeMove> {
        Ok(RangeMove {
            worker: r.get_worker(),
            change: match r.get_change()? {
                range_move::Change::Join => MoveChange::Join,
                range_move::Change::Return => MoveChange::Return,
                range_move::Change::Leave => MoveChange::Leave,
                range_move::Change::Remove => MoveChange::Remove,
            },
            pass: r.get_pass(),
            bytes_copied: r.get_bytes_copied(),
            bytes_expected: r.get_bytes_expected(),
            records: r.get_records(),
            elapsed: Duration::from_millis(r.get_elapsed_millis()),
            bytes_per_second: r.get_bytes_per_second(),
            pairs_done: r.get_pairs_done(),
            pairs: r.get_pairs(),
        })
    }

    pub fn write(&self, mut b: range_move::Builder<'_>) {
        b.set_worker(self.worker);
        b.set_change(match self.change {
            MoveChange::Join => range_move::Change::Join,
            MoveChange::Return => range_move::Change::Return,
            MoveChange::Leave => range_move::Change::Leave,
            MoveChange::Remove => range_move::Change::Remove,
        });
        b.set_pass(self.pass);
        b.set_bytes_copied(self.bytes_copied);
        b.set_bytes_expected(self.bytes_expected);
        b.set_records(self.records);
        b.set_elapsed_millis(self.elapsed.as_millis() as u64);
        b.set_bytes_per_second(self.bytes_per_second);
        b.set_pairs_done(self.pairs_done);
        b.set_pairs(self.pairs);
    }

    /// The rate this pass has copied at so far, in bytes per second.
    pub fn rate(&self) -> f64 {
        match self.elapsed.as_secs_f64() {
            0.0 => 0.0,
            secs => self.bytes_copied as f64 / secs,
        }
    }

    /// How much longer the first pass should take at the rate so far:
    /// `None` in the second pass, or before anything was copied.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (self.pass == 1 && rate > 0.0)
            .then(|| Duration::from_secs_f64(self.bytes_expected.saturating_sub(self.bytes_copied) as f64 / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_rate_so_far() {
        let mut m = RangeMove {
            worker: 3,
            change: MoveChange::Remove,
            pass: 1,
            bytes_copied: 10_000_000,
            bytes_expected: 40_000_000,
            records: 0,
            elapsed: Duration::from_secs(2),
            bytes_per_second: 8_000_000,
            pairs_done: 1,
            pairs: 4,
        };
        assert_eq!(m.rate(), 5_000_000.0);
        assert_eq!(m.eta(), Some(Duration::from_secs(6)));
        m.bytes_copied = 50_000_000;
        assert_eq!(m.eta(), Some(Duration::ZERO), "past the estimate: any moment now");
        m.pass = 2;
        assert_eq!(m.eta(), None);
    }
}
