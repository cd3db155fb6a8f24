use clap::Parser;
use kappa_common::logging::exit_with;
use kappa_query::config::Cli;

/// Exit status: 0 done; 1 the query failed (SQL, the lake, I/O); 2 misconfiguration.
fn main() {
    kappa_common::logging::init();
    let config = Cli::parse().validate().unwrap_or_else(|e| exit_with(&e, 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(kappa_query::run(config)) {
        exit_with(&e, 1);
    }
}
