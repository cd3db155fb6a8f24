//! An object store that counts what it serves under a table's data files, so that the "data
//! scanned" line after a statement is what was really read (as Athena bills it), not an
//! estimate from the plan.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;

use crate::local_reads::LocalReads;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, OBJECT_STORE_COALESCE_DEFAULT, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, coalesce_ranges,
};

/// What was read from a table's data files since the last [`Counters::take`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub bytes: u64,
    /// Distinct data files read from.
    pub files: u64,
}

/// Bytes and files served under one table's root, its Delta log left out.
///
/// Each byte of a file counts once per statement, however often it was fetched: a reader may
/// ask twice for the same bytes (a footer prefetch that covers a column chunk read later; a
/// small local file let go from memory and read again), and what a statement scanned is then
/// never more than the table holds. A full scan of 64 files of 0.8 MiB counted 49.7 of 49.0
/// MiB (101.56%) when every fetch was added up.
#[derive(Debug)]
pub struct Counters {
    /// The table's root as an object path (`work/lake/sales`), and its log under it.
    root: String,
    log: String,
    /// The ranges read of each file since the last [`Counters::take`].
    read: Mutex<HashMap<String, Vec<Range<u64>>>>,
}

impl Counters {
    pub fn new(root: &Path) -> Arc<Counters> {
        let root = root.as_ref().trim_end_matches('/').to_string();
        Arc::new(Counters { log: format!("{root}/_delta_log/"), root, read: Mutex::default() })
    }

    fn count(&self, location: &Path, ranges: impl IntoIterator<Item = Range<u64>>) {
        let path = location.as_ref();
        let under_root = path.strip_prefix(self.root.as_str()).is_some_and(|rest| rest.starts_with('/'));
        if !under_root || path.starts_with(&self.log) {
            return;
        }
        let mut read = self.read.lock().expect("counters lock");
        read.entry(path.to_string()).or_default().extend(ranges.into_iter().filter(|r| r.end > r.start));
    }

    /// What was read since the last call, and a fresh start.
    pub fn take(&self) -> Scanned {
        let read = std::mem::take(&mut *self.read.lock().expect("counters lock"));
        let files = read.values().filter(|ranges| !ranges.is_empty()).count() as u64;
        Scanned { bytes: read.into_values().map(covered).sum(), files }
    }
}

/// How many bytes `ranges` cover together, each byte once.
fn covered(mut ranges: Vec<Range<u64>>) -> u64 {
    ranges.sort_unstable_by_key(|r| r.start);
    let (mut total, mut reached) = (0, 0);
    for range in ranges {
        let start = range.start.max(reached);
        if range.end > start {
            total += range.end - start;
            reached = range.end;
        }
    }
    total
}

/// How the wrapped store serves several ranges of one object: what it fetches is what counts.
#[derive(Debug)]
pub enum RangeReads {
    /// A local file: read in place, a small one whole, once (see [`LocalReads`]).
    Local(LocalReads),
    /// Ranges less than 1 MiB apart merged into one request, the gaps fetched too:
    /// object_store's default for HTTP stores such as S3. Counting only the ranges asked for
    /// reported 475 KB where S3 served 865 KB (a one-day filter on the 10M-row benchmark).
    Coalesced,
}

/// `inner`, counting the bytes each read returns into `counters`.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
    ranges: RangeReads,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, counters: Arc<Counters>, ranges: RangeReads) -> CountingStore {
        CountingStore { inner, counters, ranges }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if let RangeReads::Local(reads) = &self.ranges
            && LocalReads::serves(&options)
        {
            let read = reads.get(location, options.range.as_ref())?;
            self.counters.count(location, read.from_disk.clone());
            let bytes = read.bytes;
            let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed());
            return Ok(GetResult { payload, meta: read.meta, range: read.range, attributes: Default::default() });
        }
        let head = options.head; // the object's metadata, no bytes
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.counters.count(location, [result.range.clone()]);
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match &self.ranges {
            RangeReads::Local(reads) => {
                let (bytes, from_disk) = reads.get_ranges(location, ranges)?;
                self.counters.count(location, from_disk);
                Ok(bytes)
            }
            // The same merging the store would do, each merged request through `get_opts`
            // above, where its whole length is counted.
            RangeReads::Coalesced => coalesce_ranges(ranges, |range| self.get_range(location, range), OBJECT_STORE_COALESCE_DEFAULT).await,
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
// One-range reads are what a footer read is; clippy takes `[a..b]` for a typo.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_read_twice_counts_once_and_the_log_not_at_all() {
        let counters = Counters::new(&Path::from("lake/t"));
        let file = Path::from("lake/t/p_day=1/a.parquet");
        // A footer prefetch, then column chunks inside it and before it, then the file again.
        counters.count(&file, [900..1000]);
        counters.count(&file, [950..980, 100..200, 150..300]);
        counters.count(&Path::from("lake/t/_delta_log/00000000000000000001.json"), [0..5000]);
        counters.count(&Path::from("lake/t2/b.parquet"), [0..5000]);
        counters.count(&Path::from("lake/t/b.parquet"), [0..0]);
        assert_eq!(counters.take(), Scanned { bytes: 300, files: 1 });
        counters.count(&file, [0..1000, 0..1000]);
        assert_eq!(counters.take(), Scanned { bytes: 1000, files: 1 }, "each statement counts afresh");
        assert_eq!(counters.take(), Scanned::default());
    }
}
