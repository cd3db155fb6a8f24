//! kappa-table: the lake table (DESIGN.md, "Lake layout", "Commit protocol", "Generations and
//! replay"). The table format lives here, apart from the writers: the consumer and replay call
//! this crate, never the reverse.
//!
//! ```text
//! <lake>/<table>/_delta_log/…                               the Delta log: what readers read
//! <lake>/<table>/<generation>/year=…/…/part-….parquet       data files, named by the writers
//! <lake>/<table>/_kappa/…                                   generations, schema versions, a replay's own log
//! <lake>/<table>/_errors/<generation>/<commit>.ndjson       quarantined events
//! ```
//!
//! The modules, each using only those above it:
//! - [`delta`]: the Delta table itself (delta-rs's log store): create, commit with a writer's
//!   `txn` and state, the writer's last state read back, checkpoints and log cleanup, history;
//!   [`stats`] (file statistics from Parquet footers) and [`glue`] (the Glue catalog) beside it.
//! - [`error`] and [`state`]: what a writer's commit records and a restart resumes from.
//! - [`registry`]: the generations' register, completion marks and heartbeats.
//! - [`table`]: a generation of a table as its writer sees it: load the state, remove what no
//!   commit names, store schema versions and files, commit a flush.
//! - [`writers`]: who writes the table now, and what they are about to commit (no tool deletes it).
//! - [`generation`]: the generations' summaries and removal; [`switch`]: the switch between them.

pub mod delta;
pub mod error;
pub mod generation;
pub mod glue;
pub mod lake;
pub mod registry;
pub mod state;
pub mod stats;
pub mod switch;
pub mod table;
pub mod writers;

pub use self::error::TableError;
pub use self::state::{
    CONSUMER_APP_ID, Claims, Commit, DataFile, FORMAT, GENERATION_PROPERTY, Layout, SHARD_APP_PREFIX, SQS_APP_ID, SeenRows, ShardPositions, TableState, Totals,
    shard_app_id,
};
pub use self::table::{
    COMPACTED_PREFIX, COMPACTION_APP_ID, LiveFile, PARTITION_COLUMN_PREFIX, Table, live_generation, location, partition_columns, partition_dir,
    partition_of_dir,
};
