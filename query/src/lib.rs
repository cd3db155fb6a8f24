//! `kappa-query`: SQL over a kappa-lake table (DataFusion over its Delta table).

pub mod at;
pub mod config;
pub mod counting;
pub mod error;
pub mod history;
pub mod lake;
pub mod local_reads;
pub mod output;
pub mod program;
pub mod read_only;
pub mod report;
pub mod session;

use std::io::Write;

use config::QueryConfig;
use error::QueryError;

/// Runs the init files, then each statement of the SQL, writing each result and its line.
pub async fn run(config: QueryConfig) -> Result<(), QueryError> {
    let started = std::time::Instant::now();
    // The table's log is read on a worker while the other tables are registered here: both are
    // fixed costs of every statement (reading a CSV dimension and inferring its types is ~4 ms,
    // the log of a compacted 120-day table ~6 ms), and this machine has two cores.
    let opening = {
        let (lake, table, at, aws) = (config.lake.clone(), config.table.clone(), config.at.clone(), config.aws.clone());
        tokio::spawn(async move { lake::open(&lake, &table, &at, &aws).await })
    };
    let context = session::context();
    for (name, path) in &config.register {
        session::register(&context, name, path).await?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), tables = config.register.len(), "other tables registered");
    let lake = opening.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    tracing::debug!(elapsed = ?started.elapsed(), version = lake.version, "table opened");
    let registered: Vec<String> = config.register.iter().map(|(name, _)| name.clone()).collect();
    let session = session::Session::new(context, lake, &registered).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "session ready");
    for (origin, sql) in &config.init {
        for statement in session.statements(origin, sql)? {
            session.run_quietly(origin, statement).await?;
        }
    }
    let mut out: Box<dyn Write + Send> = match &config.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| QueryError::Io { what: format!("--output {}", path.display()), source })?,
        )),
        None => Box::new(output::Stdout::new()),
    };
    let mut summaries = match &config.summary_json {
        Some(path) => {
            Some((path, std::fs::File::create(path).map_err(|source| QueryError::Io { what: format!("--summary-json {}", path.display()), source })?))
        }
        None => None,
    };
    let (origin, sql) = &config.sql;
    let lake = session.lake();
    for statement in session.statements(origin, sql)? {
        let mut running = session.start(origin, statement).await?;
        let written = output::write(&mut running, origin, config.format, config.max_rows, out.as_mut()).await?;
        out.flush().map_err(|e| QueryError::Output(e.to_string()))?;
        let outcome = session.finish(running, written.rows);
        if let Some(notice) = output::cut_notice(written) {
            eprintln!("{notice}");
        }
        if !config.quiet {
            let totals = lake.totals().await?;
            eprintln!("{}", output::summary(&outcome, &config.table, totals.files, totals.bytes));
        }
        if let Some((path, file)) = &mut summaries {
            let totals = lake.totals().await?;
            let figures = serde_json::json!({
                "rows": outcome.rows,
                "seconds": outcome.elapsed.as_secs_f64(),
                "scanned_bytes": outcome.scanned.bytes,
                "scanned_files": outcome.scanned.files,
                "table_bytes": totals.bytes,
                "table_files": totals.files,
                "version": lake.version,
            });
            writeln!(file, "{figures}").map_err(|source| QueryError::Io { what: format!("--summary-json {}", path.display()), source })?;
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "statements done");
    // The process ends next (see program.rs): tearing down the session (DataFusion's context, the
    // table's snapshot, every plan's metrics) took 4-5 ms of a 20 ms query, for memory the
    // exit frees anyway.
    std::mem::forget(session);
    Ok(())
}
