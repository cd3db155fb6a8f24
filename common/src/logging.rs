//! How the binaries talk to their user: `tracing` to stderr, filtered by `KAPPA_LOG` (e.g.
//! `debug`, `info,kappa_consumer=debug`), with the AWS SDK's own chatter kept at warnings and
//! delta-rs's silent unless named (`KAPPA_LOG=info,deltalake_core=debug`): it logs an ERROR for
//! every table that does not exist yet, which for us is a normal start; its real failures reach
//! the user as our errors. And one way to end on an error.

use std::io::IsTerminal;

pub fn init() {
    let mut directives = std::env::var("KAPPA_LOG").unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into());
    for quiet in ["deltalake_core", "buoyant_kernel", "delta_kernel"] {
        if !directives.contains(quiet) {
            directives.push_str(&format!(",{quiet}=off"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| "info".into());
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
