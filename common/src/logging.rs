//! How the binaries talk to their user: `tracing` to stderr, filtered by `KAPPA_LOG` (e.g.
//! `debug`, `info,kappa_consumer=debug`), with the AWS SDK's own chatter kept at warnings by
//! default; and one way to end on an error.

use std::io::IsTerminal;

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG").unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into());
    // Colour codes only where a terminal shows them: in a log file or CI output they are noise.
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).with_target(false).init();
}

/// Ends the process on an error the user can act on: one `error: …` line (the error's own
/// message, which names its cause), never a debug dump or a backtrace; those are for bugs,
/// which panic.
pub fn exit_with(error: &dyn std::fmt::Display, code: i32) -> ! {
    eprintln!("error: {error}");
    std::process::exit(code)
}
