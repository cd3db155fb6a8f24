//! The allocator of the programs that run the consumer's pipeline (`kappa-consumer`,
//! `kappa-replay`, and the image's `kappa-lake` when it runs either): mimalloc, returning freed memory to the kernel 100 ms after it is freed.
//!
//! Why mimalloc: decoding threads allocate each chunk's arrays and the pipeline thread frees
//! them; a commit encodes thousands of small files on every core, each a few hundred small
//! allocations made on one thread and freed on another. glibc's malloc (tuned to keep 32 MiB
//! per arena, 2 arenas) spent ~18% of a 1M-row hour run in `malloc`/`free` and their
//! consolidation. Measured on bench/consumer.sh's wide rows by hour (release, settled file
//! system, alternating runs, 2026-11-26):
//!
//! | rows | glibc | mimalloc, purge after 1 s (its default) | mimalloc, after 100 ms | after 0 ms |
//! |---|---|---|---|---|
//! | 1M | 15.2-17.3 s, 152-192 MiB | 11.0-11.2 s, 221-225 MiB | | |
//! | 10M | 85.9 s, 224 MiB | 46.4 s, 252 MiB | 46.0 s, 218 MiB | 69.4 s, 160 MiB |
//!
//! (The glibc runs alternated with the mimalloc ones; glibc's earlier medians were 17.8 s and
//! 63.7 s.) Purging after 100 ms keeps the memory of the chunk in flight for reuse and gives
//! back what a commit's burst leaves; 0 ms makes every free a system call. Musl's allocator,
//! in the static release binaries, is slower than glibc's: mimalloc replaces it there too.

/// The programs' global allocator: `#[global_allocator] static A: kappa_common::memory::Allocator = kappa_common::memory::Allocator;`.
pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay`: its place in mimalloc v3's `mi_option_e`, which
/// libmimalloc-sys's bindings do not name (a test checks it is the option whose default is
/// the documented 1000 ms).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds after which freed memory goes back to the kernel (see the table above).
const PURGE_AFTER_MS: std::ffi::c_long = 100;

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

/// Sets the allocator's options. Call first thing in the program (`program::main`).
pub fn tune_allocator() {
    #[allow(unsafe_code)] // the workspace's one unsafe call: a C function with no safe wrapper
    // SAFETY: mi_option_set stores a value in mimalloc's option table; the option index is in
    // range (checked by a test) and any delay is valid.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        #[allow(unsafe_code)]
        // SAFETY: reads and sets mimalloc's option table.
        unsafe {
            // Only mimalloc's purge delay defaults to 1000 (ms); another index would be another
            // option, and the setting would do something else.
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), 1000, "mimalloc's option order changed: find mi_option_purge_delay in its mimalloc.h");
            tune_allocator();
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), PURGE_AFTER_MS);
        }
    }
}
