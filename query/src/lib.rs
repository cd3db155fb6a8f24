//! `kappa-query`: SQL over a kappa-lake table (DataFusion over its Delta table).

pub mod config;
pub mod counting;
pub mod error;
pub mod lake;
pub mod output;
pub mod report;
pub mod session;

use std::io::Write;

use config::QueryConfig;
use error::QueryError;

/// Runs the init files, then each statement of the SQL, writing each result and its line.
pub async fn run(config: QueryConfig) -> Result<(), QueryError> {
    let lake = lake::open(&config.lake, &config.table, &config.at, &config.aws).await?;
    let session = session::Session::new(lake).await?;
    for (name, path) in &config.register {
        session.register(name, path).await?;
    }
    for (origin, sql) in &config.init {
        for statement in session.statements(origin, sql)? {
            session.run(origin, statement).await?;
        }
    }
    let mut out: Box<dyn Write> = match &config.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| QueryError::Io { what: format!("--output {}", path.display()), source })?,
        )),
        None => Box::new(std::io::stdout().lock()),
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
        let outcome = session.run(origin, statement).await?;
        output::write(&outcome.batches, config.format, &mut out)?;
        out.flush().map_err(|e| QueryError::Output(e.to_string()))?;
        if !config.quiet {
            eprintln!("{}", output::summary(&outcome, &config.table, lake.total_files, lake.total_bytes));
        }
        if let Some((path, file)) = &mut summaries {
            let figures = serde_json::json!({
                "rows": outcome.rows,
                "seconds": outcome.elapsed.as_secs_f64(),
                "scanned_bytes": outcome.scanned.bytes,
                "scanned_files": outcome.scanned.files,
                "table_bytes": lake.total_bytes,
                "table_files": lake.total_files,
                "version": lake.version,
            });
            writeln!(file, "{figures}").map_err(|source| QueryError::Io { what: format!("--summary-json {}", path.display()), source })?;
        }
    }
    Ok(())
}
