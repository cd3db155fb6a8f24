// Rows are allocated on the reading thread and freed on the sending one; mimalloc makes that
// cross-thread free cheap where glibc's malloc contends (measured: ~15% of the producer's time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The commit is read here, not in the library: a new commit then relinks this binary
    // instead of recompiling the library.
    kappa_producer::program::main(std::env::args_os().collect(), option_env!("KAPPA_COMMIT"));
}
