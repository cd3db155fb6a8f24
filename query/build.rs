//! Links kappa-query as a position-dependent executable on Linux (see below).
//!
//! kappa-query is started once per statement, so its start is part of every answer's time. A
//! position-independent executable makes the dynamic loader apply ~290,000 relocations to
//! DataFusion's and the AWS SDK's tables of function pointers at every start, copying ~5 MB of
//! pages: ~5 ms of a 25 ms query. Linked at a fixed address they are resolved once, by the
//! linker. (The code is compiled as before; only the final link changes, so no dependency is
//! rebuilt.)
///
/// Not for musl: its static binaries start from a position-independent start file, and linked
/// `-no-pie` they crashed in `_start_c` before `main`. A static PIE relocates itself at start
/// instead (the container image's kappa-query pays those few milliseconds).
fn main() {
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux && gnu {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
