//! Who wrote a version of the table, as messages name them: when a commit loses to another,
//! the user is told which writer won and what to do, not a generic "someone else".

use serde_json::Value;

use super::actions::parse_actions;
use super::{DeltaError, LakeTable, METADATA_KEY};
use crate::state::CONSUMER_APP_ID;

/// The writer of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    /// kappa-replay's switch (or `kappa-replay switch`) to a generation.
    Switch { generation: String },
    /// A kappa-consumer's flush (or a replay handing its positions over).
    Consumer { counter: i64 },
    /// Another kappa-lake writer: a compaction.
    Kappa { app_id: String },
    /// A writer that is not kappa-lake: python deltalake, Spark, Databricks.
    Foreign { engine: String, operation: String, mode: Option<String>, metadata: bool },
}

/// One version and its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authored {
    pub version: u64,
    pub author: Author,
}

impl std::fmt::Display for Authored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = self.version;
        match &self.author {
            Author::Switch { generation } => write!(f, "version {version} by kappa-replay's switch to {generation}"),
            Author::Consumer { counter } => write!(f, "version {version} by a kappa-consumer (its commit {counter})"),
            Author::Kappa { app_id } if app_id == crate::COMPACTION_APP_ID => write!(f, "version {version} by a kappa-lake compaction"),
            Author::Kappa { app_id } => write!(f, "version {version} by kappa-lake writer {app_id}"),
            Author::Foreign { engine, operation, mode, metadata } => {
                write!(f, "version {version} by {engine} ({operation}")?;
                if let Some(mode) = mode {
                    write!(f, ", mode {mode}")?;
                }
                write!(f, ")")?;
                if *metadata {
                    write!(f, ", which changed the table's schema, partitioning or properties")?;
                }
                Ok(())
            }
        }
    }
}

/// The kinds of action [`author_of`] reads.
pub(crate) const AUTHOR_KINDS: &[&str] = &["commitInfo", "metaData", "protocol"];

/// The author of a commit, from its actions.
pub(crate) fn author_of(actions: &[Value]) -> Author {
    let info = actions.iter().find_map(|a| a.get("commitInfo")).cloned().unwrap_or(Value::Null);
    let kappa = &info[METADATA_KEY];
    let metadata = actions.iter().any(|a| a.get("metaData").is_some() || a.get("protocol").is_some());
    if let Some(app_id) = kappa["appId"].as_str() {
        if app_id == CONSUMER_APP_ID {
            if kappa["commitId"].as_str().is_some_and(|id| id.starts_with("switch-")) {
                let generation = kappa["state"]["generation"].as_str().unwrap_or("another generation").to_string();
                return Author::Switch { generation };
            }
            return Author::Consumer { counter: kappa["counter"].as_i64().unwrap_or_default() };
        }
        return Author::Kappa { app_id: app_id.to_string() };
    }
    let engine = match (info["clientVersion"].as_str(), info["engineInfo"].as_str()) {
        (Some(client), _) if client.starts_with("delta-rs.py-") => format!("python deltalake {}", &client["delta-rs.py-".len()..]),
        (Some(client), _) => client.to_string(),
        (None, Some(engine)) => engine.to_string(),
        (None, None) => "a Delta writer that does not name itself".to_string(),
    };
    Author::Foreign {
        engine,
        operation: info["operation"].as_str().unwrap_or("an unnamed operation").to_string(),
        mode: info["operationParameters"]["mode"].as_str().map(str::to_string),
        metadata,
    }
}

impl LakeTable {
    /// The authors of `versions` the log still holds, oldest first.
    pub async fn authors(&self, versions: std::ops::RangeInclusive<u64>) -> Result<Vec<Authored>, DeltaError> {
        let log_store = self.table.log_store();
        let mut authors = Vec::new();
        for version in versions {
            if let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? {
                authors.push(Authored { version, author: author_of(&parse_actions(&self.name, version, &bytes, Some(AUTHOR_KINDS))?) });
            }
        }
        Ok(authors)
    }

    /// The newest version that changed the table's schema, partitioning or properties (within
    /// the last `limit` versions the log still holds), and its author.
    pub async fn last_setup_change(&self, limit: u64) -> Result<Option<Authored>, DeltaError> {
        let log_store = self.table.log_store();
        let latest = self.version().unwrap_or_default();
        for version in (latest.saturating_sub(limit)..=latest).rev() {
            let Some(bytes) = log_store.read_commit_entry(version).await.map_err(|e| self.delta(e))? else { break };
            let actions = parse_actions(&self.name, version, &bytes, Some(AUTHOR_KINDS))?;
            if actions.iter().any(|a| a.get("metaData").is_some()) {
                return Ok(Some(Authored { version, author: author_of(&actions) }));
            }
        }
        Ok(None)
    }

    /// `error` (a commit that lost to others made after `base`) with who won and what to do.
    pub(super) async fn explained(&self, error: DeltaError, base: u64) -> DeltaError {
        let latest = self.version().unwrap_or(base);
        let authors = match &error {
            DeltaError::ConcurrentWriter { app_id, .. } => match self.writer_state(app_id).await {
                Ok(Some(state)) => self.authors(state.version..=state.version).await.unwrap_or_default(),
                _ => Vec::new(),
            },
            _ => self.authors(base + 1..=latest.max(base + 1)).await.unwrap_or_default(),
        };
        let by = advice(&authors);
        match error {
            DeltaError::ConcurrentWriter { table, app_id, counter, .. } => DeltaError::ConcurrentWriter { table, app_id, counter, by },
            DeltaError::Raced { table, app_id, counter, version, .. } => DeltaError::Raced { table, app_id, counter, version, by },
            DeltaError::FilesGone { table, app_id, counter, missing, total, .. } => DeltaError::FilesGone { table, app_id, counter, missing, total, by },
            other => other,
        }
    }
}

/// Who committed first, and what the writer that lost should do.
fn advice(authors: &[Authored]) -> String {
    if authors.is_empty() {
        return "another writer committed first (the log no longer says which)".to_string();
    }
    let shown: Vec<String> = authors.iter().take(3).map(ToString::to_string).collect();
    let mut text = format!("{} committed first", shown.join("; "));
    if authors.len() > 3 {
        text.push_str(&format!(" (and {} more)", authors.len() - 3));
    }
    let advice = if let Some(switch) = authors.iter().find_map(|a| match &a.author {
        Author::Switch { generation } => Some(generation),
        _ => None,
    }) {
        format!("the table holds {switch} now: a consumer continues on it from the positions the switch handed over")
    } else if authors.iter().any(|a| matches!(a.author, Author::Consumer { .. })) {
        "two consumers wrote as this table's consumer: run one consumer per table and source".to_string()
    } else if authors.iter().any(|a| matches!(a.author, Author::Foreign { metadata: true, .. })) {
        "start the writer again: it reads the table as it is now (a table re-partitioned by another tool is refused with what to do)".to_string()
    } else {
        "nothing of this commit was made; run it again".to_string()
    };
    format!("{text}; {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writers_are_named_as_users_know_them() {
        let python = [
            json!({"commitInfo": {"clientVersion": "delta-rs.py-1.6.6", "operation": "WRITE", "operationParameters": {"mode": "Overwrite"}}}),
            json!({"metaData": {}}),
        ];
        let spark = [json!({"commitInfo": {"engineInfo": "Apache-Spark/3.5.1 Delta-Lake/3.2.0", "operation": "OPTIMIZE"}})];
        let switch = [json!({"commitInfo": {"kappa": {"appId": CONSUMER_APP_ID, "commitId": "switch-gen-000002-1", "state": {"generation": "gen-000002"}}}})];
        let text = |actions: &[Value]| Authored { version: 7, author: author_of(actions) }.to_string();
        assert_eq!(text(&python), "version 7 by python deltalake 1.6.6 (WRITE, mode Overwrite), which changed the table's schema, partitioning or properties");
        assert_eq!(text(&spark), "version 7 by Apache-Spark/3.5.1 Delta-Lake/3.2.0 (OPTIMIZE)");
        assert_eq!(text(&switch), "version 7 by kappa-replay's switch to gen-000002");
        let authors = [Authored { version: 7, author: author_of(&switch) }];
        assert!(advice(&authors).ends_with("the table holds gen-000002 now: a consumer continues on it from the positions the switch handed over"));
    }
}
