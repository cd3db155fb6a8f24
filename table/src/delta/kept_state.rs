//! A writer's resume state lives in the `commitInfo` of its last commit, and log cleanup
//! removes old commits once a checkpoint stands in for them — but checkpoints keep `txn`
//! actions, not `commitInfo`. A consumer idle for longer than `delta.logRetentionDuration`
//! whose last commit a checkpoint then covered would find its counter and not its state.
//!
//! So each checkpoint this crate writes keeps, before it cleans the log, the state of the
//! table's consumer as of that version beside it:
//!
//! ```text
//! <table>/_kappa/writer-states/<app id>-<counter:020>.json   {version, counter, commitId, state}
//! ```
//!
//! The writers are the consumer, the chain of an SQS queue's competing consumers (`kappa-sqs`)
//! and, when workers share the shards through leases, each shard (`kappa-shard:<shard>`; the
//! `:` is a plain character in object names).
//!
//! named by the exact counter the checkpoint's `txn` holds, so a restart that no longer finds
//! the commit reads the same state from there. (A foreign tool's log cleanup does not write
//! one: then the state is gone, and the message says how to go on.)

use bytes::Bytes;
use deltalake_core::logstore::object_store::ObjectStoreExt as _;
use deltalake_core::logstore::object_store::path::Path;
use serde_json::{Value, json};

use super::{DeltaError, LakeTable, WriterState};
use crate::state::CONSUMER_APP_ID;

fn kept_path(app_id: &str, counter: i64) -> Path {
    Path::from(format!("_kappa/writer-states/{app_id}-{counter:020}.json"))
}

impl LakeTable {
    /// Keeps the consumer's state as of the loaded version (see the module doc).
    pub(super) async fn keep_writer_states(&self) -> Result<(), DeltaError> {
        // Leased shards (`kappa-shard:*`) are writers too: those committed since the last
        // checkpoint keep their states the same way, so each shard's last state is kept by the
        // first checkpoint after it, before any cleanup can take its commit.
        // The chain of an SQS queue's competing consumers (`kappa-sqs`) is one writer.
        let mut app_ids = vec![CONSUMER_APP_ID.to_string(), crate::state::SQS_APP_ID.to_string()];
        let latest = self.version().unwrap_or_default();
        app_ids.extend(self.shard_writers(latest.saturating_sub(super::CHECKPOINT_INTERVAL), latest).await?);
        let store = self.table.log_store().object_store(None);
        let mut states = self.writer_states(&app_ids).await?;
        for app_id in app_ids {
            let Some(found) = states.remove(&app_id) else { continue };
            let body = json!({ "version": found.version, "counter": found.counter, "commitId": found.commit_id, "state": found.state });
            store.put(&kept_path(&app_id, found.counter), Bytes::from(body.to_string()).into()).await.map_err(|e| self.delta(e.into()))?;
        }
        Ok(())
    }

    /// The state a checkpoint kept for `app_id` at `counter`, if one did.
    pub(super) async fn kept_writer_state(&self, app_id: &str, counter: i64) -> Result<Option<WriterState>, DeltaError> {
        let store = self.table.log_store().object_store(None);
        let bytes = match store.get(&kept_path(app_id, counter)).await {
            Ok(result) => result.bytes().await.map_err(|e| self.delta(e.into()))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.delta(e.into())),
        };
        let kept: Value = serde_json::from_slice(&bytes).map_err(|e| DeltaError::Invalid {
            table: self.name.clone(),
            reason: format!("the kept writer state of {app_id} at {counter} is not valid JSON: {e}"),
        })?;
        Ok(Some(WriterState {
            version: kept["version"].as_u64().unwrap_or_default(),
            counter,
            commit_id: kept["commitId"].as_str().unwrap_or_default().to_string(),
            state: kept["state"].clone(),
        }))
    }
}
