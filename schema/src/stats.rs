//! The schema's `StoreStats` as an owned value: what a worker's store says
//! about itself, written by the worker (heartbeats, `Worker.stats`) and the
//! master (members in rings and status), read by the master and clients.

use crate::wimpy_capnp::store_stats;

/// Damaged spans one `StoreStats` lists at most (the schema's
/// `maxReportedDamage`): enough to see where, not a dump of a ruined disk.
pub const MAX_REPORTED_DAMAGE: usize = crate::wimpy_capnp::MAX_REPORTED_DAMAGE as usize;

/// Figures of one worker's store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// Keys that a get would find.
    pub live_keys: u64,
    /// Bytes of all log segments on disk.
    pub log_bytes: u64,
    /// Log bytes held by overwritten or deleted records.
    pub garbage_bytes: u64,
    /// Bytes of the in-DRAM index.
    pub index_bytes: u64,
    /// What the store's last recovery stepped over, at most
    /// [`MAX_REPORTED_DAMAGE`] spans.
    pub damage: Vec<DamagedSpan>,
    /// How many spans it stepped over in all.
    pub damaged_spans: u64,
}

/// Bytes of a log that were no record, stepped over by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSpan {
    pub segment: u64,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

impl StoreFigures {
    /// Fills in a `StoreStats` builder (the first spans only).
    pub fn write(&self, mut b: store_stats::Builder<'_>) {
        b.set_live_keys(self.live_keys);
        b.set_log_bytes(self.log_bytes);
        b.set_garbage_bytes(self.garbage_bytes);
        b.set_index_bytes(self.index_bytes);
        b.set_damaged_spans(self.damaged_spans.max(self.damage.len() as u64));
        let listed = &self.damage[..self.damage.len().min(MAX_REPORTED_DAMAGE)];
        let mut list = b.init_damage(listed.len() as u32);
        for (i, d) in listed.iter().enumerate() {
            let mut s = list.reborrow().get(i as u32);
            s.set_segment(d.segment);
            s.set_offset(d.offset);
            s.set_bytes(d.bytes);
            s.set_reason(&d.reason);
        }
    }

    /// Reads a `StoreStats`.
    pub fn read(r: store_stats::Reader<'_>) -> capnp::Result<StoreFigures> {
        let mut damage = Vec::new();
        for d in r.get_damage()?.iter().take(MAX_REPORTED_DAMAGE) {
            damage.push(DamagedSpan {
                segment: d.get_segment(),
                offset: d.get_offset(),
                bytes: d.get_bytes(),
                reason: d.get_reason()?.to_string().unwrap_or_else(|_| "(not UTF-8)".into()),
            });
        }
        Ok(StoreFigures {
            live_keys: r.get_live_keys(),
            log_bytes: r.get_log_bytes(),
            garbage_bytes: r.get_garbage_bytes(),
            index_bytes: r.get_index_bytes(),
            damaged_spans: r.get_damaged_spans().max(damage.len() as u64),
            damage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_trip_and_list_the_first_spans_only() {
        let span = |i: u64| DamagedSpan { segment: 3, offset: 32 + 8 * i, bytes: 40, reason: "checksum".into() };
        let figures = StoreFigures {
            live_keys: 7,
            log_bytes: 9000,
            garbage_bytes: 100,
            index_bytes: 64,
            damage: (0..20).map(span).collect(),
            damaged_spans: 20,
        };
        let mut msg = capnp::message::Builder::new_default();
        figures.write(msg.init_root::<store_stats::Builder<'_>>());
        let back = StoreFigures::read(msg.get_root_as_reader::<store_stats::Reader<'_>>().unwrap()).unwrap();
        assert_eq!(back.damage, figures.damage[..MAX_REPORTED_DAMAGE].to_vec());
        assert_eq!(back.damaged_spans, 20);
        assert_eq!((back.live_keys, back.log_bytes, back.garbage_bytes, back.index_bytes), (7, 9000, 100, 64));
    }
}
