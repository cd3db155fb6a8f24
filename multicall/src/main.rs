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

use kappa_common::logging::{exit_with, version_line};

// jemalloc, the consumer's and replay's (`kappa_common::memory`): the image runs them for months.
// The producer and the query, short-lived, link mimalloc in their own binaries.
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
         Tools: {tools}; `kappa-lake <TOOL> --help` or `kappa-lake help <TOOL>` says more.",
        version = version_line(option_env!("KAPPA_COMMIT")),
        tools = names.join(", ")
    )
}

/// What the arguments ask of `kappa-lake` started under a name that is no tool's.
enum Asked {
    /// A tool, and its arguments (the first names it).
    Tool(&'static str, Program, Vec<OsString>),
    /// Text for standard output (help, version): exit 0.
    Print(String),
    /// A usage error: exit 2.
    Usage(String),
}

fn asked(started_as: &str, mut args: Vec<OsString>) -> Asked {
    // Lossy only for messages: a name that is not UTF-8 is no tool's either way.
    let word = |at: usize| args.get(at).map(|arg| arg.to_string_lossy().into_owned());
    let (first, second) = (word(1).unwrap_or_default(), word(2));
    match (first.as_str(), tool(&first)) {
        (_, Some((name, program))) => {
            // `kappa-lake consumer --lake …` runs as `kappa-consumer --lake …`: the tool's usage
            // and errors name itself.
            args.remove(0);
            Asked::Tool(name, program, args)
        }
        ("help", None) => match second.as_deref().map(|name| (name, tool(name))) {
            Some((_, Some((name, program)))) => Asked::Tool(name, program, vec![OsString::new(), "--help".into()]),
            Some((other, None)) => Asked::Usage(format!("no tool named {other:?}\n\n{}", usage())),
            None => Asked::Print(usage()),
        },
        ("-h" | "--help", None) => Asked::Print(usage()),
        ("-V" | "--version", None) => Asked::Print(format!("kappa-lake {}", version_line(option_env!("KAPPA_COMMIT")))),
        ("", None) => Asked::Usage(format!("name a tool\n\n{}", usage())),
        (other, None) => {
            // A copy under another name (`kappa-consumer-old`) takes its first flag for a tool:
            // say which name it was started by.
            let started = match started_as {
                "kappa-lake" => String::new(),
                name => format!(" (started as {name:?}, which names no tool, so the first argument must)"),
            };
            Asked::Usage(format!("no tool named {other:?}{started}\n\n{}", usage()))
        }
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let started_as = args.first().and_then(|arg| Path::new(arg).file_name()).map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let (name, program, mut args) = match tool(&started_as) {
        Some((name, program)) => (name, program, args),
        None => match asked(&started_as, args) {
            Asked::Tool(name, program, args) => (name, program, args),
            Asked::Print(text) => {
                println!("{text}");
                return;
            }
            Asked::Usage(text) => exit_with(&text, 2),
        },
    };
    args[0] = name.into();
    program(args, option_env!("KAPPA_COMMIT"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_tool_is_found_by_its_full_or_short_name() {
        assert_eq!(tool("kappa-query").map(|(name, _)| name), Some("kappa-query"));
        assert_eq!(tool("consumer").map(|(name, _)| name), Some("kappa-consumer"));
        assert!(tool("kappa-lake").is_none() && tool("lake").is_none() && tool("").is_none());
    }

    #[test]
    fn the_first_argument_names_the_tool_and_help_names_the_tools() {
        match asked("kappa-lake", args(&["/kappa-lake", "replay", "status", "--lake", "l"])) {
            Asked::Tool(name, _, rest) => assert_eq!((name, rest), ("kappa-replay", args(&["replay", "status", "--lake", "l"]))),
            _ => panic!("replay"),
        }
        match asked("kappa-lake", args(&["kappa-lake", "help", "query"])) {
            Asked::Tool(name, _, rest) => assert_eq!((name, rest[1].clone()), ("kappa-query", OsString::from("--help"))),
            _ => panic!("help query"),
        }
        for words in [&["kappa-lake", "--help"][..], &["kappa-lake", "help"]] {
            assert!(matches!(asked("kappa-lake", args(words)), Asked::Print(text) if text.contains("Tools: producer, consumer, replay, query")), "{words:?}");
        }
        assert!(matches!(asked("kappa-lake", args(&["kappa-lake", "-V"])), Asked::Print(text) if text.starts_with("kappa-lake 0.")));
    }

    #[test]
    fn a_word_that_names_no_tool_is_a_usage_error_that_says_so() {
        assert!(matches!(asked("kappa-lake", args(&["kappa-lake"])), Asked::Usage(text) if text.starts_with("name a tool")));
        assert!(matches!(asked("kappa-lake", args(&["kappa-lake", "ingest"])), Asked::Usage(text) if text.starts_with("no tool named \"ingest\"\n")));
        assert!(matches!(asked("kappa-lake", args(&["kappa-lake", "help", "ingest"])), Asked::Usage(text) if text.starts_with("no tool named \"ingest\"")));
        let copied = asked("kappa-consumer-old", args(&["./kappa-consumer-old", "--lake", "l"]));
        assert!(matches!(copied, Asked::Usage(text) if text.contains("started as \"kappa-consumer-old\"")));
    }
}
