//! `kappa-lake`: the four tools in one binary, for the container image (scripts/image).
//!
//! Four static binaries repeat what they share: the AWS SDK, arrow, parquet, tokio, the
//! table's code. One binary holds it once, and the image links the four names to it; the
//! name a process is started by picks the tool, as `busybox` does. So `/kappa-consumer …` in
//! a task definition runs the consumer, and so does `/kappa-lake consumer …`.
//!
//! The release tarball keeps four binaries (scripts/release): a host that runs only the
//! producer does not carry DataFusion.

use std::ffi::OsString;
use std::path::Path;

// mimalloc, tuned by the consumer's and replay's own `main` (`kappa_common::memory`); the
// producer and the query use it untuned, as their own binaries do.
#[global_allocator]
static ALLOCATOR: kappa_common::memory::Allocator = kappa_common::memory::Allocator;

/// A tool's program: its arguments (the first names it) and the commit its version names.
type Program = fn(Vec<OsString>, Option<&str>);

const TOOLS: [(&str, Program); 4] = [
    ("kappa-producer", kappa_producer::program::main),
    ("kappa-consumer", kappa_consumer::program::main),
    ("kappa-replay", kappa_replay::program::main),
    ("kappa-query", kappa_query::program::main),
];

/// The tool a name calls: its full name (`kappa-query`) or short one (`query`).
fn tool(name: &str) -> Option<(&'static str, Program)> {
    TOOLS.iter().copied().find(|(full, _)| *full == name || full.strip_prefix("kappa-") == Some(name))
}

fn usage() -> String {
    let names: Vec<&str> = TOOLS.iter().map(|(name, _)| name.trim_start_matches("kappa-")).collect();
    format!(
        "kappa-lake {version}: the kappa-lake tools in one binary.\n\n\
         Usage: kappa-lake <TOOL> [ARGS]...   (or started through a link named kappa-<TOOL>)\n\n\
         Tools: {tools}; `kappa-lake <TOOL> --help` says more.",
        version = kappa_common::logging::version_line(option_env!("KAPPA_COMMIT")),
        tools = names.join(", ")
    )
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let started_as = args.first().and_then(|arg| Path::new(arg).file_name()).and_then(|name| name.to_str()).unwrap_or_default();
    let (name, program) = match tool(started_as) {
        Some(found) => found,
        None => {
            let named = args.get(1).and_then(|arg| arg.to_str()).unwrap_or_default();
            match (tool(named), named) {
                (Some(found), _) => {
                    // `kappa-lake consumer --lake …` runs as `kappa-consumer --lake …`: the
                    // tool's usage and errors name itself.
                    args.remove(0);
                    found
                }
                (None, "-h" | "--help" | "help") => {
                    println!("{}", usage());
                    return;
                }
                (None, "-V" | "--version") => {
                    println!("kappa-lake {}", kappa_common::logging::version_line(option_env!("KAPPA_COMMIT")));
                    return;
                }
                (None, "") => kappa_common::logging::exit_with(&usage(), 2),
                (None, other) => kappa_common::logging::exit_with(&format!("no tool named {other:?}\n\n{}", usage()), 2),
            }
        }
    };
    args[0] = name.into();
    program(args, option_env!("KAPPA_COMMIT"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_is_found_by_its_full_or_short_name() {
        assert_eq!(tool("kappa-query").map(|(name, _)| name), Some("kappa-query"));
        assert_eq!(tool("consumer").map(|(name, _)| name), Some("kappa-consumer"));
        assert!(tool("kappa-lake").is_none() && tool("lake").is_none() && tool("").is_none());
    }
}
