//! Splitting an operation's output into tiles whose textures fit the GPU.
//!
//! Every operation here reads, for an output pixel, input pixels from one
//! interval per axis: the pixel itself (colour operations), a window of a
//! kernel's radius (blurs, Sobel, convolutions), a resize pass's taps, or one
//! pixel somewhere else (crop, flip, rotate, where an output axis may map to
//! the other input axis). A tile is a rectangle of output runs, one per axis,
//! and reads the rectangle of the input intervals those runs need, which
//! includes the halo a kernel reads past the tile's edge. The runs are grown
//! greedily until either the run or the input it needs would pass the
//! largest texture side.

use std::ops::Range;

use crate::plan::{Axis, Rect};

/// A run of output pixels along one axis and the input interval it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    pub output: Range<u32>,
    pub input: Range<u32>,
}

/// Splits `0..len` into runs of at most `max` pixels whose input intervals
/// are at most `max` pixels long. `input_of(i)` is the interval output pixel
/// `i` reads; runs read the smallest interval covering their pixels'.
pub(super) fn partition(len: u32, max: u32, input_of: impl Fn(u32) -> Range<u32>) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < len {
        let mut input = input_of(start);
        if input.end - input.start > max {
            return Err(format!(
                "output pixel {start} reads {} input pixels, more than the largest texture side of {max}",
                input.end - input.start
            ));
        }
        let mut end = start + 1;
        while end < len && end - start < max {
            let next = input_of(end);
            let grown = input.start.min(next.start)..input.end.max(next.end);
            if grown.end - grown.start > max {
                break;
            }
            input = grown;
            end += 1;
        }
        runs.push(Run { output: start..end, input });
        start = end;
    }
    Ok(runs)
}

/// The tiles of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TilePlan {
    /// Runs along the output's x axis.
    pub columns: Vec<Run>,
    /// Runs along the output's y axis.
    pub rows: Vec<Run>,
    /// The input axis the output's x axis reads (Y for quarter turns).
    pub columns_read: Axis,
}

impl TilePlan {
    /// Whether the whole output is one tile.
    pub fn is_single(&self) -> bool {
        self.columns.len() == 1 && self.rows.len() == 1
    }

    /// Every tile, as (output rectangle, input rectangle), row by row.
    pub fn tiles(&self) -> impl Iterator<Item = (Rect, Rect)> + '_ {
        self.rows.iter().flat_map(move |row| {
            self.columns.iter().map(move |column| {
                let output = Rect::spanning(&column.output, &row.output);
                let input = match self.columns_read {
                    Axis::X => Rect::spanning(&column.input, &row.input),
                    Axis::Y => Rect::spanning(&row.input, &column.input),
                };
                (output, input)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_axis_and_respect_the_limit() {
        let radius = 5u32;
        let len = 100u32;
        let runs = partition(len, 32, |i| i.saturating_sub(radius)..(i + radius + 1).min(len)).unwrap();
        assert_eq!(runs.first().unwrap().output.start, 0);
        assert_eq!(runs.last().unwrap().output.end, len);
        for pair in runs.windows(2) {
            assert_eq!(pair[0].output.end, pair[1].output.start);
        }
        for run in &runs {
            assert!(run.input.end - run.input.start <= 32);
            assert!(run.input.start <= run.output.start.saturating_sub(radius));
            assert!(run.input.end >= (run.output.end + radius).min(len));
        }
    }

    #[test]
    fn a_pixel_reading_too_much_is_refused() {
        assert!(partition(10, 4, |_| 0..5).is_err());
    }
}
