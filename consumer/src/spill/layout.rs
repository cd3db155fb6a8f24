//! How a spilled buffer's rows lie in a spill file: each column's Arrow buffers, concatenated
//! over the buffer's batches, copied once from those batches into the file, and read back as
//! arrays over the bytes read, with nothing to decode.
//!
//! Why not Arrow IPC, what spills were before: IPC writes one batch, so a buffer's batches (a
//! range of each chunk it took rows from) were first concatenated into one, then encoded into
//! the stream (a second copy of every value), in a vector (a third) copied into the staging
//! buffer (a fourth); and reading decoded the stream and validated every value again (each
//! decimal's precision alone was 1.4%). In a 10M-row wide run by day that was ~16% of the CPU
//! samples. (Strings' UTF-8 is still checked when read back: that check is safe code's.) Here
//! the values are copied once, from the batches into the staging buffer; only the small
//! buffers derived from them (validity bits moved to start at a byte, string offsets counted
//! from zero) are made beforehand, on the spill's workers.
//!
//! A segment (one run of batches sharing a schema) starts 64-aligned in its file:
//! - a header: `u32` format (1), `u32` columns, `u64` rows, then per column four `u64`: its
//!   null count, its validity bitmap's bytes (0: no nulls), its first buffer's bytes and its
//!   second's (0: none), all little-endian;
//! - the buffers, in that order, each starting a multiple of 16 bytes after the segment's start,
//!   so that every buffer read back is aligned for any Arrow type.
//!
//! Flat columns of numbers, decimals, dates, times, booleans, strings and binaries have a case
//! here; they are every type a table has. A run with a column of any other type is written as
//! one Arrow IPC stream instead (format 2), as spills were before.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, BooleanBufferBuilder, GenericBinaryArray, GenericStringArray, OffsetSizeTrait, PrimitiveArray,
    RecordBatch, RecordBatchOptions, downcast_primitive,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;

/// Format of a segment of columns laid out as above.
const COLUMNS: u32 = 1;
/// Format of a segment holding one Arrow IPC stream.
const IPC: u32 = 2;
/// Where each buffer starts, from the segment's start: the largest alignment an Arrow type
/// needs (`i128` decimals).
pub(super) const BUFFER_ALIGN: u64 = 16;

/// One run of batches, ready to be written: its header, then its buffers in file order, each
/// given as the pieces that follow one another in it.
pub(super) struct Run {
    pub(super) rows: usize,
    pub(super) schema: SchemaRef,
    pub(super) header: Vec<u8>,
    /// Slices of the batches' own buffers, and buffers derived from them.
    pub(super) buffers: Vec<Vec<Buffer>>,
}

impl Run {
    /// Lays out `batches` (of one schema).
    pub(super) fn new(batches: &[RecordBatch]) -> Result<Run, ArrowError> {
        let schema = batches[0].schema();
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        if !schema.fields().iter().all(|field| has_case(field.data_type())) {
            return ipc(schema, batches, rows);
        }
        let mut header = Vec::with_capacity(16 + 32 * schema.fields().len());
        header.extend_from_slice(&COLUMNS.to_le_bytes());
        header.extend_from_slice(&(schema.fields().len() as u32).to_le_bytes());
        header.extend_from_slice(&(rows as u64).to_le_bytes());
        let mut buffers = Vec::with_capacity(3 * schema.fields().len());
        for (column, field) in schema.fields().iter().enumerate() {
            let arrays: Vec<&ArrayRef> = batches.iter().map(|batch| batch.column(column)).collect();
            let nulls: usize = arrays.iter().map(|array| array.null_count()).sum();
            let validity = (nulls > 0).then(|| concat_bits(rows, arrays.iter().map(|array| (array.len(), array.nulls().map(NullBuffer::inner)))));
            let (first, second) = match field.data_type() {
                DataType::Boolean => (concat_bits(rows, arrays.iter().map(|array| (array.len(), Some(array.as_boolean().values())))), None),
                DataType::Utf8 | DataType::Binary => {
                    let (offsets, values) = offsets_and_values::<i32>(&arrays, field.name())?;
                    (offsets, Some(values))
                }
                DataType::LargeUtf8 | DataType::LargeBinary => {
                    let (offsets, values) = offsets_and_values::<i64>(&arrays, field.name())?;
                    (offsets, Some(values))
                }
                _ => (arrays.iter().map(|array| values_of(array.as_ref())).collect(), None),
            };
            let bytes = |pieces: &Vec<Buffer>| pieces.iter().map(Buffer::len).sum::<usize>() as u64;
            for n in [nulls as u64, validity.as_ref().map_or(0, bytes), bytes(&first), second.as_ref().map_or(0, bytes)] {
                header.extend_from_slice(&n.to_le_bytes());
            }
            buffers.extend(validity);
            buffers.push(first);
            buffers.extend(second);
        }
        Ok(Run { rows, schema, header, buffers })
    }
}

/// `rows` bits, from pieces in order, each its length and its bits (`None`: all set), as one
/// buffer starting at a byte.
fn concat_bits<'a>(rows: usize, pieces: impl Iterator<Item = (usize, Option<&'a BooleanBuffer>)>) -> Vec<Buffer> {
    let mut bits = BooleanBufferBuilder::new(rows);
    for (len, piece) in pieces {
        match piece {
            Some(piece) => bits.append_buffer(piece),
            None => bits.append_n(len, true),
        }
    }
    vec![bits.finish().into_inner()]
}

/// Whether a column of `data_type` is laid out as columns (else the run is an IPC stream).
fn has_case(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Boolean | DataType::Utf8 | DataType::Binary | DataType::LargeUtf8 | DataType::LargeBinary) || fixed_width(data_type).is_some()
}

/// The bytes of the values of `array`, of a primitive type: a slice of its buffer. (Taken
/// through the typed array: `Array::to_data` for each of a spill's ~20 slices per buffer and
/// column was 0.7% of a 10M-row run's CPU samples.)
fn values_of(array: &dyn Array) -> Buffer {
    macro_rules! values {
        ($t:ty) => {
            array.as_primitive::<$t>().values().inner().clone()
        };
    }
    downcast_primitive! {
        array.data_type() => (values),
        data_type => unreachable!("has_case: {data_type} is of fixed width")
    }
}

/// The bytes of a value of a primitive type (numbers, decimals, dates, times, durations,
/// intervals); `None` for any other type.
fn fixed_width(data_type: &DataType) -> Option<usize> {
    macro_rules! width {
        ($t:ty) => {
            Some(std::mem::size_of::<<$t as ArrowPrimitiveType>::Native>())
        };
    }
    downcast_primitive! {
        data_type => (width),
        _ => None
    }
}

/// The offsets of `arrays` (of strings or binaries) counted from zero as one array's, and the
/// slices of their values those offsets point into; an error if their values together are
/// more than the offsets can count (2 GiB for `i32`), as concatenating them would be.
fn offsets_and_values<O: OffsetSizeTrait>(arrays: &[&ArrayRef], column: &str) -> Result<(Vec<Buffer>, Vec<Buffer>), ArrowError> {
    let rows: usize = arrays.iter().map(|array| array.len()).sum();
    let total: usize = arrays.iter().map(|array| bytes_of::<O>(array).0).map(|own| (own[own.len() - 1] - own[0]).as_usize()).sum();
    if O::from_usize(total).is_none() {
        return Err(ArrowError::ComputeError(format!("column {column}: {total} bytes of values in one buffer, more than its offsets can count")));
    }
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(O::usize_as(0));
    let mut values = Vec::with_capacity(arrays.len());
    let mut base = O::usize_as(0);
    for array in arrays {
        let (own, bytes) = bytes_of::<O>(array);
        let (first, last) = (own[0], own[own.len() - 1]);
        offsets.extend(own[1..].iter().map(|&offset| offset - first + base));
        values.push(bytes.slice_with_length(first.as_usize(), (last - first).as_usize()));
        base += last - first;
    }
    Ok((vec![Buffer::from_vec(offsets)], values))
}

/// The offsets of a string or binary array and the buffer they point into.
fn bytes_of<O: OffsetSizeTrait>(array: &ArrayRef) -> (&[O], &Buffer) {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => (array.as_string::<O>().value_offsets(), array.as_string::<O>().values()),
        _ => (array.as_binary::<O>().value_offsets(), array.as_binary::<O>().values()),
    }
}

/// A run whose schema has a type the layout has no case for: one Arrow IPC stream.
fn ipc(schema: SchemaRef, batches: &[RecordBatch], rows: usize) -> Result<Run, ArrowError> {
    let batch = arrow::compute::concat_batches(&schema, batches)?;
    let mut stream = Vec::with_capacity(batch.get_array_memory_size() + 4096);
    let mut writer = StreamWriter::try_new(&mut stream, &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    let mut header = Vec::with_capacity(16);
    header.extend_from_slice(&IPC.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(rows as u64).to_le_bytes());
    Ok(Run { rows, schema, header, buffers: vec![vec![Buffer::from_vec(stream)]] })
}

/// The rows of a segment, from its bytes (`segment`, starting at an address aligned to
/// [`BUFFER_ALIGN`]) and the schema it was written with.
pub(super) fn read(segment: Buffer, schema: &SchemaRef) -> Result<Vec<RecordBatch>, ArrowError> {
    let invalid = |what: String| ArrowError::IpcError(format!("spill segment of {} bytes: {what}", segment.len()));
    let mut header = Header { bytes: segment.as_slice(), at: 0 };
    let (format, columns, rows) = (header.u32()?, header.u32()? as usize, header.u64()? as usize);
    match format {
        COLUMNS if columns == schema.fields().len() => {}
        COLUMNS => return Err(invalid(format!("{columns} columns, for a schema of {}", schema.fields().len()))),
        IPC => return read_ipc(segment.slice(16)),
        _ => return Err(invalid(format!("unknown format {format}"))),
    }
    // (Every column takes at least a bit a row: this bounds the sizes computed from `rows`.)
    if columns > 0 && rows as u64 > segment.len() as u64 * 8 {
        return Err(invalid(format!("{rows} rows")));
    }
    let mut at = (16 + 32 * columns) as u64;
    let mut next = |len: u64| -> Result<Buffer, ArrowError> {
        let end = at.checked_add(len).filter(|&end| end <= segment.len() as u64);
        let end = end.ok_or_else(|| invalid(format!("a buffer of {len} bytes at {at}")))?;
        let buffer = segment.slice_with_length(at as usize, len as usize);
        at = end.next_multiple_of(BUFFER_ALIGN);
        Ok(buffer)
    };
    let bitmap_bytes = rows.div_ceil(8) as u64;
    let mut arrays = Vec::with_capacity(columns);
    for field in schema.fields() {
        let (null_count, validity, first, second) = (header.u64()?, header.u64()?, header.u64()?, header.u64()?);
        let column = || format!("column {}", field.name());
        let nulls = match (null_count, validity) {
            (0, 0) => None,
            (1.., bytes) if bytes == bitmap_bytes => {
                let nulls = NullBuffer::new(BooleanBuffer::new(next(bytes)?, 0, rows));
                if nulls.null_count() as u64 != null_count {
                    return Err(invalid(format!("{}: {} nulls, {null_count} in the header", column(), nulls.null_count())));
                }
                Some(nulls)
            }
            _ => return Err(invalid(format!("{}: {null_count} nulls in a bitmap of {validity} bytes", column()))),
        };
        let data_type = field.data_type();
        let strings = matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary);
        if !strings && second != 0 {
            return Err(invalid(format!("{}: a second buffer of {second} bytes for {data_type}", column())));
        }
        let mut buffer = |len: u64, expected: u64| match len == expected {
            true => next(len),
            false => Err(invalid(format!("{}: a buffer of {len} bytes, for {rows} rows of {data_type}", column()))),
        };
        // Built with the arrays' safe constructors: they check the buffers' lengths and
        // alignment, the offsets, and the strings' UTF-8 (ASCII at ~10 GB/s). What they do not
        // check again is each decimal's precision, which `ArrayData::build` did for every value
        // read back (1.4% of a 10M-row run's CPU samples, with the IPC reader).
        let array: ArrayRef = match data_type {
            DataType::Boolean => Arc::new(BooleanArray::new(BooleanBuffer::new(buffer(first, bitmap_bytes)?, 0, rows), nulls)),
            DataType::Utf8 => Arc::new(GenericStringArray::<i32>::try_new(offsets(buffer(first, (rows as u64 + 1) * 4)?, rows)?, next(second)?, nulls)?),
            DataType::LargeUtf8 => Arc::new(GenericStringArray::<i64>::try_new(offsets(buffer(first, (rows as u64 + 1) * 8)?, rows)?, next(second)?, nulls)?),
            DataType::Binary => Arc::new(GenericBinaryArray::<i32>::try_new(offsets(buffer(first, (rows as u64 + 1) * 4)?, rows)?, next(second)?, nulls)?),
            DataType::LargeBinary => Arc::new(GenericBinaryArray::<i64>::try_new(offsets(buffer(first, (rows as u64 + 1) * 8)?, rows)?, next(second)?, nulls)?),
            _ => {
                let width = fixed_width(data_type).ok_or_else(|| invalid(format!("{}: no layout for {data_type}", column())))?;
                let values = buffer(first, (rows * width) as u64)?;
                macro_rules! primitive {
                    ($t:ty) => {
                        Arc::new(PrimitiveArray::<$t>::try_new(ScalarBuffer::new(values, 0, rows), nulls)?.with_data_type(data_type.clone()))
                    };
                }
                downcast_primitive! {
                    data_type => (primitive),
                    _ => unreachable!("fixed_width: a primitive type")
                }
            }
        };
        arrays.push(array);
    }
    // (Checks each column's type and length against the schema, and that a non-nullable field
    // has no nulls.)
    let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &RecordBatchOptions::new().with_row_count(Some(rows)))?;
    Ok(vec![batch])
}

/// The `rows + 1` offsets in `buffer` (checked to start at zero and never fall; the array's
/// constructor checks that they end within its values).
fn offsets<O: OffsetSizeTrait>(buffer: Buffer, rows: usize) -> Result<OffsetBuffer<O>, ArrowError> {
    let offsets = ScalarBuffer::<O>::new(buffer, 0, rows + 1);
    // (Without an early exit, the comparisons run as vector instructions. `OffsetBuffer::new`
    // checks the same again, but by panicking.)
    let falls = offsets.windows(2).fold(false, |falls, pair| falls | (pair[1] < pair[0]));
    if offsets[0] != O::usize_as(0) || falls {
        return Err(ArrowError::IpcError("spill segment: offsets that do not rise from zero".into()));
    }
    Ok(OffsetBuffer::new(offsets))
}

fn read_ipc(mut stream: Buffer) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !stream.is_empty() {
        if let Some(batch) = decoder.decode(&mut stream)? {
            batches.push(batch);
        }
    }
    decoder.finish()?;
    Ok(batches)
}

/// Reads the header's little-endian numbers in order.
struct Header<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Header<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ArrowError> {
        let bytes = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or_else(|| ArrowError::IpcError(format!("spill segment of {} bytes: a header cut short", self.bytes.len())))?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32, ArrowError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, ArrowError> {
        self.take().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, Date32Array, Decimal128Array, Decimal256Array, DurationSecondArray, Float64Array, Int8Array, Int64Array, IntervalMonthDayNanoArray,
        LargeBinaryArray, LargeStringArray, ListArray, StringArray, Time64NanosecondArray, TimestampMicrosecondArray,
    };
    use arrow::buffer::MutableBuffer;
    use arrow::datatypes::{Field, Int64Type, Schema};
    use arrow::datatypes::{IntervalMonthDayNano, IntervalUnit, TimeUnit, i256};
    use rand::{Rng, SeedableRng};

    /// `rows` rows of every type a table has, and a few more, about one value in four null
    /// (none in the non-nullable `id` and `count`; `count` has a null buffer all the same, and
    /// `nothing` is all nulls).
    pub(in crate::spill) fn every_type(rows: usize, seed: u64) -> RecordBatch {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let maybe = |rng: &mut rand::rngs::StdRng| rng.random_bool(0.75);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("paid", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("amount", DataType::Decimal128(20, 2), true),
            Field::new("small", DataType::Int8, true),
            Field::new("blob", DataType::Binary, true),
            Field::new("note", DataType::LargeUtf8, true),
            Field::new("bytes", DataType::LargeBinary, true),
            Field::new("huge", DataType::Decimal256(50, 3), true),
            Field::new("every", DataType::Interval(IntervalUnit::MonthDayNano), true),
            Field::new("took", DataType::Duration(TimeUnit::Second), true),
            Field::new("time", DataType::Time64(TimeUnit::Nanosecond), true),
            Field::new("count", DataType::Int64, false),
            Field::new("nothing", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7 - 3));
        let names = StringArray::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| "é".repeat(i % 5) + &format!("name {i}"))));
        let prices = Float64Array::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as f64 / 3.0)));
        let paid = BooleanArray::from_iter((0..rows).map(|_| maybe(&mut rng).then(|| rng.random_bool(0.5))));
        let days = Date32Array::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(20_000 + i as i32)));
        let at = TimestampMicrosecondArray::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as i64 * 1_000_003))).with_timezone("UTC");
        let amounts =
            Decimal128Array::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as i128 * 101 - 5_000))).with_precision_and_scale(20, 2).unwrap();
        let small = Int8Array::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as i8)));
        let blobs = BinaryArray::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| vec![i as u8; i % 4])));
        let notes = LargeStringArray::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| format!("{i:x}"))));
        let bytes = LargeBinaryArray::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| vec![7u8; i % 3])));
        let huge = Decimal256Array::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| i256::from_i128(i as i128 * 1_000_000_007))))
            .with_precision_and_scale(50, 3)
            .unwrap();
        let every = IntervalMonthDayNanoArray::from_iter((0..rows).map(|i| maybe(&mut rng).then(|| IntervalMonthDayNano::new(i as i32, 2, 3 * i as i64))));
        let took = DurationSecondArray::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as i64)));
        let time = Time64NanosecondArray::from_iter((0..rows).map(|i| maybe(&mut rng).then_some(i as i64 * 999)));
        let count = Int64Array::new((0..rows as i64).collect(), Some(NullBuffer::new_valid(rows)));
        let nothing = StringArray::new_null(rows);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(names),
            Arc::new(prices),
            Arc::new(paid),
            Arc::new(days),
            Arc::new(at),
            Arc::new(amounts),
            Arc::new(small),
            Arc::new(blobs),
            Arc::new(notes),
            Arc::new(bytes),
            Arc::new(huge),
            Arc::new(every),
            Arc::new(took),
            Arc::new(time),
            Arc::new(count),
            Arc::new(nothing),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// Random slices of `batch` (empty ones, single rows at odd offsets, long ones), in order.
    pub(in crate::spill) fn slices(batch: &RecordBatch, seed: u64) -> Vec<RecordBatch> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut slices = Vec::new();
        let mut at = 0;
        while at < batch.num_rows() {
            let len = match rng.random_range(0..4) {
                0 => 0,
                1 => 1,
                2 => rng.random_range(2..20),
                _ => rng.random_range(20..500),
            }
            .min(batch.num_rows() - at);
            slices.push(batch.slice(at, len));
            at += len + rng.random_range(0..3);
        }
        slices
    }

    /// A segment's bytes as the spill writer lays them out, at an aligned address.
    fn segment_of(run: &Run) -> Buffer {
        let mut out = MutableBuffer::new(0);
        out.extend_from_slice(&run.header);
        for buffer in &run.buffers {
            out.extend_zeros((out.len() as u64).next_multiple_of(BUFFER_ALIGN) as usize - out.len());
            for piece in buffer {
                out.extend_from_slice(piece.as_slice());
            }
        }
        out.into()
    }

    #[test]
    fn slices_of_every_type_read_back_as_one_batch() {
        for seed in 0..20 {
            let batch = every_type(2_000, seed);
            let slices = slices(&batch, seed);
            let run = Run::new(&slices).unwrap();
            assert_eq!(run.header[..4], COLUMNS.to_le_bytes(), "every type has a case");
            let read = read(segment_of(&run), &batch.schema()).unwrap();
            assert_eq!(read, vec![arrow::compute::concat_batches(&batch.schema(), &slices).unwrap()], "seed {seed}");
        }
        // No slices with nulls at all, and one slice of one row.
        let batch = every_type(1, 0);
        assert_eq!(read(segment_of(&Run::new(std::slice::from_ref(&batch)).unwrap()), &batch.schema()).unwrap(), vec![batch.clone()]);
        let ids = batch.project(&[0]).unwrap();
        assert_eq!(read(segment_of(&Run::new(&[ids.slice(0, 0), ids.clone()]).unwrap()), &ids.schema()).unwrap(), vec![ids]);
    }

    #[test]
    fn values_past_what_the_offsets_count_are_an_error() {
        // Two slices of 1.1 GB of binary values (zeroed memory the test never touches): 2.2 GB
        // in one buffer, past what i32 offsets count. Concatenating them fails the same way.
        let values = Buffer::from_vec(vec![0u8; 1_100_000_000]);
        let array = BinaryArray::new(OffsetBuffer::new(vec![0, 1_100_000_000].into()), values, None);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![Field::new("blob", DataType::Binary, false)])), vec![Arc::new(array)]).unwrap();
        let error = Run::new(&[batch.clone(), batch]).err().expect("an error").to_string();
        assert!(error.contains("column blob: 2200000000 bytes"), "{error}");
    }

    #[test]
    fn a_type_without_a_case_goes_as_an_ipc_stream() {
        let schema = Arc::new(Schema::new(vec![Field::new("tags", DataType::new_list(DataType::Int64, true), true)]));
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>((0..100).map(|i| (i % 3 != 0).then(|| (0..i % 4).map(Some).collect::<Vec<_>>())));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(lists)]).unwrap();
        let slices = [batch.slice(0, 10), batch.slice(13, 1), batch.slice(50, 50)];
        let run = Run::new(&slices).unwrap();
        assert_eq!(run.header[..4], IPC.to_le_bytes());
        assert_eq!(read(segment_of(&run), &schema).unwrap(), vec![arrow::compute::concat_batches(&schema, &slices).unwrap()]);
    }

    #[test]
    fn a_damaged_segment_is_an_error_not_a_panic() {
        let batch = every_type(300, 1);
        let run = Run::new(&slices(&batch, 1)).unwrap();
        let good = segment_of(&run);
        let with = |at: usize, value: u64| {
            let mut bytes = good.as_slice().to_vec();
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            let mut out = MutableBuffer::new(bytes.len());
            out.extend_from_slice(&bytes);
            read(out.into(), &batch.schema())
        };
        let column = |n: usize, field: usize| 16 + 32 * n + 8 * field;
        let cases = [
            (8, u64::MAX),           // rows
            (8, 299),                // one row fewer
            (column(0, 2), 8 * 299), // ids' bytes
            (column(1, 0), 0),       // a null count of 0, with a bitmap
            (column(1, 3), 1 << 40), // names' values past the end
            (column(3, 3), 5),       // a second buffer for booleans
            (column(6, 2), 8 * 300), // decimals of 8 bytes
            (column(9, 2), 4 * 301), // large strings' offsets as small ones
        ];
        for (at, value) in cases {
            assert!(with(at, value).is_err(), "{value} at byte {at} was read");
        }
        // Offsets that fall: the names' first offsets, swapped.
        let mut bytes = good.as_slice().to_vec();
        let names = {
            let mut at = 16 + 32 * batch.num_columns();
            for buffer in &run.buffers[..2] {
                at = (at + buffer.iter().map(Buffer::len).sum::<usize>()).next_multiple_of(16);
            }
            at
        };
        // (ids' values, then names' bitmap, then names' offsets.)
        bytes[names + 4..names + 8].copy_from_slice(&1_000i32.to_le_bytes());
        let mut out = MutableBuffer::new(bytes.len());
        out.extend_from_slice(&bytes);
        let error = read(out.into(), &batch.schema()).unwrap_err().to_string();
        assert!(error.contains("offsets"), "{error}");
        // Cut short.
        assert!(read(good.slice_with_length(0, good.len() / 2), &batch.schema()).is_err());
        assert!(read(good.slice_with_length(0, 12), &batch.schema()).is_err());
    }
}
