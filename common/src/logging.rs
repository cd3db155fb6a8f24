//! Logging for the binaries: `tracing` to stderr, filtered by `KAPPA_LOG` (e.g. `debug`,
//! `info,kappa_consumer=debug`); the AWS SDK's own chatter is kept at warnings by default.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG").unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
