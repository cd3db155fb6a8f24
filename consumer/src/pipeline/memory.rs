//! Memory: buffers moved to the scratch directory when memory runs short, and rows copied
//! out of a decoded batch into buffers of their own.

use arrow::array::{ArrayRef, AsArray, Capacities, MutableArrayData, make_array};

use super::{Pipeline, PipelineError};
use crate::buffer::Buffer;
use crate::spill::Encoded;

impl Pipeline {
    /// Moves every buffer's rows in memory to the scratch directory, in one file: open ones,
    /// and sealed ones waiting for their partition in other shards. All of them: the rows of a
    /// chunk that many buffers share (see `RowSource::Gathered`) are freed only once none of
    /// them holds a range of it.
    pub(super) fn spill_buffers(&mut self) -> Result<(), PipelineError> {
        use rayon::prelude::*;
        let started = std::time::Instant::now();
        let sealed = self.sealed.iter_mut().map(|(_, b)| b);
        let mut spilling: Vec<&mut Buffer> = self.buffers.values_mut().chain(sealed).filter(|b| !b.in_memory.is_empty()).collect();
        let mut writer = self.spill.writer()?;
        let io_error = |source| crate::spill::SpillError { dir: self.spill.path().to_path_buf(), source };
        let (buffers, mut freed) = (spilling.len(), 0);
        let rows: usize = spilling.iter().flat_map(|b| b.in_memory.iter().map(|rows| rows.num_rows())).sum();
        // Gathered and laid out on every core, a few buffers at a time (so that the gathered
        // copies never add up to much), and copied in order into one file.
        for group in spilling.chunks_mut(SPILL_GROUP) {
            let encoded: Vec<_> = group.par_iter().map(|b| b.batches().and_then(|batches| Encoded::new(&batches))).collect();
            for (buffer, encoded) in group.iter_mut().zip(encoded) {
                freed += buffer.memory;
                buffer.spilled_to(&mut writer, encoded?).map_err(io_error)?;
            }
        }
        let written = writer.finish().map_err(io_error)?;
        self.stats.add_spill(written, rows as u64);
        tracing::debug!(buffers, freed_mib = freed >> 20, written_mib = written >> 20, took = ?started.elapsed(), "spilled");
        Ok(())
    }
}

/// Buffers encoded at once by a spill.
const SPILL_GROUP: usize = 64;

/// A copy of `rows` of `column`, in buffers of their own.
pub(super) fn copy_rows(column: &ArrayRef, rows: std::ops::Range<usize>) -> Result<ArrayRef, arrow::error::ArrowError> {
    let data = column.to_data();
    // Exact sizes, as `take` allocates: buffers are counted against --max-memory by capacity.
    let capacities = match column.as_string_opt::<i32>() {
        Some(strings) => Capacities::Binary(rows.len(), Some((strings.value_offsets()[rows.end] - strings.value_offsets()[rows.start]) as usize)),
        None => Capacities::Array(rows.len()),
    };
    let mut copy = MutableArrayData::with_capacities(vec![&data], false, capacities);
    copy.try_extend(0, rows.start, rows.end)?;
    Ok(make_array(copy.freeze()))
}
