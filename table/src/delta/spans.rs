//! Which generation each version of the table held, and what a version holds: the truth that
//! `status` and `describe` report, whoever wrote the table (our own records are only hints:
//! a foreign compaction, vacuum or delete changes the rows without telling them, and `_kappa/`
//! can be lost).

use super::actions::parse_commit;
use super::{DeltaError, LakeTable, TableLocation};
use crate::state::GENERATION_PROPERTY;

/// The versions during which the table held one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub generation: String,
    pub first: u64,
    pub last: u64,
}

/// Rows, files and bytes of a version, from its files' entries in the log (rows from their
/// statistics; a file without them counts as `rows_unknown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionTotals {
    pub version: u64,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub rows_unknown: u64,
}

impl LakeTable {
    /// The rows, files and bytes of the loaded version.
    pub async fn totals(&mut self) -> Result<VersionTotals, DeltaError> {
        let mut totals = VersionTotals { version: self.version().unwrap_or_default(), ..VersionTotals::default() };
        for file in self.file_details().await? {
            totals.files += 1;
            totals.bytes += file.size.max(0) as u64;
            match file.num_records {
                Some(rows) => totals.rows += rows,
                None => totals.rows_unknown += 1,
            }
        }
        Ok(totals)
    }

    /// The table as of `version` (time travel).
    pub async fn open_at(name: &str, location: &TableLocation, version: u64) -> Result<LakeTable, DeltaError> {
        let delta = |source| DeltaError::Delta { table: name.to_string(), source };
        let table = location.builder().map_err(delta)?.with_version(version).load().await.map_err(delta)?;
        Ok(LakeTable { name: name.to_string(), location: location.clone(), table, own: None })
    }

    /// The generations the versions the log still holds belonged to, oldest first: one span per
    /// stretch of versions whose `kappa.generation` property was the same. Versions before the
    /// oldest commit the log keeps (log retention) count as the generation that commit had.
    pub async fn spans(&self) -> Result<Vec<Span>, DeltaError> {
        let log_store = self.table.log_store();
        let latest = self.version().unwrap_or_default();
        // The oldest commit still there: walk back until one is missing.
        let mut oldest = latest;
        while oldest > 0 && log_store.read_commit_entry(oldest - 1).await.map_err(|e| self.delta(e))?.is_some() {
            oldest -= 1;
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut generation = None;
        if oldest > 0 {
            // What held before the oldest commit: the table as of the version before it, when a
            // checkpoint still rebuilds it.
            if let Ok(before) = LakeTable::open_at(&self.name, &self.location, oldest - 1).await {
                generation = before.configuration().ok().and_then(|c| c.get(GENERATION_PROPERTY).cloned());
            }
        }
        for version in oldest..=latest {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { continue };
            for action in parse_commit(&self.name, version, &bytes)? {
                if let Some(metadata) = action.get("metaData") {
                    generation = metadata["configuration"][GENERATION_PROPERTY].as_str().map(str::to_string);
                }
            }
            let Some(current) = &generation else { continue };
            match spans.last_mut() {
                Some(span) if &span.generation == current => span.last = version,
                _ => spans.push(Span { generation: current.clone(), first: version, last: version }),
            }
        }
        Ok(spans)
    }
}
