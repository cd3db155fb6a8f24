// jemalloc: see `kappa_common::memory` for why (a long-running consumer's memory stays flat).
#[global_allocator]
static ALLOCATOR: kappa_common::memory::Allocator = kappa_common::memory::Allocator;

fn main() {
    // The commit is read here, not in the library: a new commit then relinks this binary
    // instead of recompiling the library.
    kappa_replay::program::main(std::env::args_os().collect(), option_env!("KAPPA_COMMIT"));
}
