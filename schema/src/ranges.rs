//! Lists of key-hash ranges in messages (fences and range moves).

use crate::KeyHashRange;
use crate::wimpy_capnp::key_hash_range;

/// The ranges of a list in a message.
pub fn read(list: capnp::struct_list::Reader<'_, key_hash_range::Owned>) -> Vec<KeyHashRange> {
    list.iter().map(|r| KeyHashRange::new(r.get_start(), r.get_end())).collect()
}

/// Fills `list` (initialised to `ranges.len()`) with `ranges`.
pub fn write(mut list: capnp::struct_list::Builder<'_, key_hash_range::Owned>, ranges: &[KeyHashRange]) {
    for (i, r) in ranges.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_start(r.start);
        b.set_end(r.end);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_round_trip_wrapping_and_whole_ones_too() {
        let ranges =
            [crate::KeyHashRange::new(10, 20), crate::KeyHashRange::new(u64::MAX - 3, 5), crate::KeyHashRange::ALL];
        let mut message = capnp::message::Builder::new_default();
        let mut root = message.init_root::<crate::wimpy_capnp::worker_admin::fence_params::Builder<'_>>();
        super::write(root.reborrow().init_ranges(ranges.len() as u32), &ranges);
        let reader =
            message.get_root_as_reader::<crate::wimpy_capnp::worker_admin::fence_params::Reader<'_>>().unwrap();
        assert_eq!(super::read(reader.get_ranges().unwrap()), ranges);
    }
}
