use clap::{CommandFactory, FromArgMatches};
use kappa_common::logging::exit_with;
use kappa_producer::config::Cli;

// Rows are allocated on the reading thread and freed on the sending one; mimalloc makes that
// cross-thread free cheap where glibc's malloc contends (measured: ~15% of the producer's time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status: see `Cli`'s documentation (`--help`).
fn main() {
    let version = kappa_common::logging::version_line(option_env!("KAPPA_COMMIT"));
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches()).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let config = cli.validate().unwrap_or_else(|e| exit_with(&e, 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let shutdown = kappa_common::shutdown::Shutdown::default();
    shutdown.listen(runtime.handle(), "sending what was read, then stopping");
    let outcome = runtime.block_on(kappa_producer::run(config, shutdown)).unwrap_or_else(|e| exit_with(&e, e.exit_code()));
    kappa_common::logging::summary(&outcome.summary.render(), &outcome.summary);
    if let Some(e) = outcome.error {
        exit_with(&e, e.exit_code());
    }
    let given_up = outcome.summary.undelivered - outcome.summary.unsent;
    if given_up > 0 {
        exit_with(&format!("{given_up} events could not be delivered; they are in the reject file"), 4);
    }
}
