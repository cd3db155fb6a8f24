use kappa_common::schema::{Column, ColumnType, TableSchema};
use serde_json::json;

use super::*;
use deltalake_core::DeltaTableBuilder;

fn schema() -> TableSchema {
    TableSchema::new(vec![
        Column { name: "sale_id".into(), column_type: ColumnType::String, nullable: true },
        Column { name: "quantity".into(), column_type: ColumnType::Int64, nullable: true },
    ])
    .unwrap()
}

fn file(path: &str, day: &str) -> DataFile {
    let partition_values = [("year", "2025"), ("month", "3"), ("day", day)].into_iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect();
    DataFile { path: path.to_string(), partition_values, size: 100, stats: Some(r#"{"numRecords":3}"#.to_string()) }
}

async fn open(dir: &std::path::Path) -> LakeTable {
    let location = TableLocation::local(dir, "sales").unwrap();
    let setup = TableSetup { schema: schema(), partition_columns: vec!["year".into(), "month".into(), "day".into()], configuration: Default::default() };
    LakeTable::create("sales", &location, &setup).await.unwrap()
}

/// An append by writer `app_id` (also used by other modules' tests).
pub(crate) fn commit(app_id: &str, counter: i64, commit_id: &str, files: Vec<DataFile>, state: Value) -> Commit {
    Commit {
        also: Vec::new(),
        fence: false,
        generation: None,
        app_id: app_id.into(),
        counter,
        previous: (counter > 1).then_some(counter - 1),
        commit_id: commit_id.into(),
        add: files,
        remove: Vec::new(),
        data_change: true,
        replace_all: false,
        keep: Vec::new(),
        restore: Vec::new(),
        setup: None,
        state,
    }
}

#[tokio::test]
async fn a_writer_resumes_from_the_state_its_last_commit_carried() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    assert_eq!(table.writer_state("consumer").await.unwrap(), None, "a new table has no writer state");
    for counter in 1..=3 {
        let files = vec![file(&format!("gen-000001/year=2025/month=03/day=19/part-{counter}.parquet"), "19")];
        table.commit(commit("consumer", counter, &format!("c{counter}"), files, json!({"resume": {"0": counter * 10}}))).await.unwrap();
    }
    // Another writer (a compaction, say) commits after: the consumer's state is found behind it.
    table.commit(commit("compactor", 1, "k1", vec![file("gen-000001/year=2025/month=03/day=20/part-x.parquet", "20")], json!(null))).await.unwrap();

    let mut reopened = open(dir.path()).await;
    assert_eq!(reopened.version(), Some(4));
    let state = reopened.writer_state("consumer").await.unwrap().unwrap();
    assert_eq!((state.version, state.counter, state.commit_id.as_str(), state.state.clone()), (3, 3, "c3", json!({"resume": {"0": 30}})));
    assert_eq!(reopened.files().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_second_writer_with_the_same_id_loses_and_a_retried_commit_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path()).await;
    let mut second = open(dir.path()).await;
    first.commit(commit("consumer", 1, "first-1", vec![file("gen-000001/a.parquet", "19")], json!(1))).await.unwrap();
    // The second handle read the table before that commit and prepares the same counter.
    let lost = second.commit(commit("consumer", 1, "second-1", vec![file("gen-000001/b.parquet", "19")], json!(2))).await;
    assert!(matches!(lost, Err(DeltaError::ConcurrentWriter { counter: 1, .. })), "{lost:?}");
    // The first writer's attempt whose answer was lost, tried again from a stale handle: its
    // own commit is recognised, nothing is written twice.
    let version_zero = DeltaTableBuilder::from_url(TableLocation::local(dir.path(), "sales").unwrap().url).unwrap().with_version(0).load().await.unwrap();
    let mut stale = LakeTable { name: "sales".into(), location: TableLocation::local(dir.path(), "sales").unwrap(), table: version_zero, own: None };
    let version = stale.commit(commit("consumer", 1, "first-1", vec![file("gen-000001/a.parquet", "19")], json!(1))).await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(open(dir.path()).await.files().await.unwrap(), vec!["gen-000001/a.parquet".to_string()]);
}

#[tokio::test]
async fn two_writers_creating_a_table_at_once_make_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(open(dir.path()), open(dir.path()));
    assert_eq!((a.version(), b.version()), (Some(0), Some(0)));
    let log: Vec<_> = std::fs::read_dir(dir.path().join("sales/_delta_log")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(log.iter().filter(|n| n.to_string_lossy().ends_with(".json")).count(), 1, "{log:?}");
}

#[tokio::test]
async fn checkpoints_bound_what_a_restart_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    let commits = CHECKPOINT_INTERVAL as i64 + 20;
    for counter in 1..=commits {
        table
            .commit(commit("consumer", counter, &format!("c{counter}"), vec![file(&format!("gen-000001/p-{counter}.parquet"), "19")], json!(counter)))
            .await
            .unwrap();
    }
    let log: Vec<String> =
        std::fs::read_dir(dir.path().join("sales/_delta_log")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(log.iter().any(|n| n.ends_with(".checkpoint.parquet")), "a checkpoint was written: {log:?}");
    let state = open(dir.path()).await.writer_state("consumer").await.unwrap().unwrap();
    assert_eq!((state.counter, state.state), (commits, json!(commits)));
}

#[tokio::test]
async fn a_switch_replaces_every_file_and_the_partitioning_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    table.commit(commit("consumer", 1, "c1", vec![file("gen-000001/year=2025/month=03/day=19/a.parquet", "19")], json!({"generation": 1}))).await.unwrap();
    let hour = |path: &str| DataFile {
        path: path.to_string(),
        partition_values: [("year", "2025"), ("month", "3"), ("day", "19"), ("hour", "7")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect(),
        size: 100,
        stats: None,
    };
    let setup = TableSetup {
        schema: schema(),
        partition_columns: ["year", "month", "day", "hour"].map(String::from).to_vec(),
        configuration: [("kappa.generation".to_string(), "gen-000002".to_string())].into(),
    };
    // A switch prepared before a consumer commit that it did not see loses.
    let mut stale = open_existing(dir.path()).await;
    table.commit(commit("consumer", 2, "c2", vec![file("gen-000001/year=2025/month=03/day=19/b.parquet", "19")], json!({"generation": 1}))).await.unwrap();
    let switch = Commit {
        also: Vec::new(),
        fence: false,
        generation: None,
        remove: Vec::new(),
        data_change: true,
        replace_all: true,
        setup: Some(setup),
        add: vec![hour("gen-000002/h1.parquet"), hour("gen-000002/h2.parquet")],
        ..commit("consumer", 2, "switch", vec![], json!({"generation": 2}))
    };
    let raced = stale.commit(Commit { previous: Some(1), ..switch.clone() }).await;
    assert!(matches!(raced, Err(DeltaError::ConcurrentWriter { .. })), "{raced:?}");
    let mut fresh = open_existing(dir.path()).await;
    let version = fresh.commit(Commit { counter: 3, previous: Some(2), ..switch }).await.unwrap();
    assert_eq!(fresh.files().await.unwrap(), vec!["gen-000002/h1.parquet", "gen-000002/h2.parquet"]);
    assert_eq!(fresh.partition_columns().unwrap(), vec!["year", "month", "day", "hour"]);
    assert_eq!(fresh.configuration().unwrap()["kappa.generation"], "gen-000002");
    assert_eq!(fresh.writer_state("consumer").await.unwrap().unwrap().state, json!({"generation": 2}));
    // The version before stays readable.
    let before = DeltaTableBuilder::from_url(TableLocation::local(dir.path(), "sales").unwrap().url).unwrap().with_version(version - 1).load().await.unwrap();
    assert_eq!(before.snapshot().unwrap().log_data().iter().count(), 2);
}

async fn open_existing(dir: &std::path::Path) -> LakeTable {
    LakeTable::open("sales", &TableLocation::local(dir, "sales").unwrap()).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_append_goes_on_over_a_compaction_and_conflicting_commits_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut consumer = open(dir.path()).await;
    let small = ["gen-000001/a.parquet", "gen-000001/b.parquet"];
    for (n, path) in small.iter().enumerate() {
        consumer.commit(commit("consumer", n as i64 + 1, &format!("c{n}"), vec![file(path, "19")], json!(n))).await.unwrap();
    }
    // A compaction replaces both files while the consumer prepares its next commit.
    let mut compactor = open(dir.path()).await;
    let compaction = Commit {
        also: Vec::new(),
        fence: false,
        generation: None,
        remove: small.iter().map(|p| p.to_string()).collect(),
        data_change: false,
        ..commit("compactor", 1, "k1", vec![file("gen-000001/ab.parquet", "19")], json!(null))
    };
    compactor.commit(compaction.clone()).await.unwrap();
    let version = consumer.commit(commit("consumer", 3, "c3", vec![file("gen-000001/c.parquet", "20")], json!(3))).await.unwrap();
    assert_eq!(version, 4, "the append was re-based over the compaction");
    let mut reader = open(dir.path()).await;
    assert_eq!(reader.files().await.unwrap(), vec!["gen-000001/ab.parquet".to_string(), "gen-000001/c.parquet".to_string()]);
    assert_eq!(reader.writer_state("consumer").await.unwrap().unwrap().state, json!(3));

    // A second compaction of the same files (planned before the first) must not remove them again.
    let mut stale = LakeTable {
        name: "sales".into(),
        location: TableLocation::local(dir.path(), "sales").unwrap(),
        table: DeltaTableBuilder::from_url(TableLocation::local(dir.path(), "sales").unwrap().url).unwrap().with_version(2).load().await.unwrap(),
        own: None,
    };
    let again = stale.commit(Commit { app_id: "another-compactor".into(), commit_id: "k1-again".into(), ..compaction }).await;
    assert!(matches!(again, Err(DeltaError::Raced { .. })), "{again:?}");

    // A new schema (a switch, a grown schema) stops a writer that prepared its commit before it.
    let mut grower = open(dir.path()).await;
    let grown = TableSetup {
        schema: schema(),
        partition_columns: vec!["year".into(), "month".into(), "day".into()],
        configuration: [("kappa.x".to_string(), "1".to_string())].into(),
    };
    grower.commit(Commit { setup: Some(grown), ..commit("replay", 1, "r1", vec![], json!(null)) }).await.unwrap();
    let stopped = consumer.commit(commit("consumer", 4, "c4", vec![file("gen-000001/d.parquet", "20")], json!(4))).await;
    assert!(matches!(stopped, Err(DeltaError::Raced { .. })), "{stopped:?}");
}

/// A checkpoint keeps the consumer's state beside it: once log cleanup has taken the commit
/// that carried it, a restart still finds it.
#[tokio::test]
async fn a_checkpoint_keeps_the_consumers_state_past_log_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    table.commit(commit(crate::state::CONSUMER_APP_ID, 1, "c1", vec![file("gen-000001/a.parquet", "19")], json!({"resume": {"0": 10}}))).await.unwrap();
    table.commit(commit("kappa-compact", 1, "k1", vec![file("gen-000001/b.parquet", "20")], json!(null))).await.unwrap();
    table.checkpoint_latest().await;
    // What log cleanup does once the commits are older than the retention.
    for version in 0..2 {
        std::fs::remove_file(dir.path().join(format!("sales/_delta_log/{version:020}.json"))).unwrap();
    }
    let reopened = LakeTable::open("sales", &TableLocation::local(dir.path(), "sales").unwrap()).await.unwrap().unwrap();
    let state = reopened.writer_state(crate::state::CONSUMER_APP_ID).await.unwrap().unwrap();
    assert_eq!((state.counter, state.commit_id.as_str(), state.state), (1, "c1", json!({"resume": {"0": 10}})));
}

/// Issue 60, 1: two writers of one chain (the consumers of an SQS queue share a counter). X's
/// commit lands but its answer is lost; Y commits on top of it; X, trying again from what it
/// read before, must find its commit by its id, not commit the same files a second time.
#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_found_by_its_id_after_the_chain_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = open(dir.path()).await;
    let chain = |counter: i64, id: &str, path: &str| commit(crate::state::SQS_APP_ID, counter, id, vec![file(path, "19")], json!(counter));
    // X's attempt, landed (made here through another handle: its answer never reached X).
    open_existing(dir.path()).await.commit(chain(1, "x-1", "gen-000001/x.parquet")).await.unwrap();
    // Y read X's commit and goes on top of it.
    open_existing(dir.path()).await.commit(chain(2, "y-2", "gen-000001/y.parquet")).await.unwrap();
    // X, still at version 0, tries again: its own commit is version 1.
    assert_eq!(x.commit(chain(1, "x-1", "gen-000001/x.parquet")).await.unwrap(), 1);
    let mut reader = open_existing(dir.path()).await;
    assert_eq!(reader.version(), Some(2), "nothing committed twice");
    assert_eq!(reader.files().await.unwrap(), vec!["gen-000001/x.parquet".to_string(), "gen-000001/y.parquet".to_string()]);
    // Another writer's commit of X's counter (a commit id X never made) is no success of X's.
    let mut stale = open_existing(dir.path()).await;
    let mut z = open_existing(dir.path()).await;
    z.commit(chain(3, "z-3", "gen-000001/z.parquet")).await.unwrap();
    let lost = stale.commit(chain(3, "w-3", "gen-000001/w.parquet")).await;
    assert!(matches!(lost, Err(DeltaError::ConcurrentWriter { .. })), "{lost:?}");
}

/// Issue 60, 7: a shard's state is found without walking the log back to its commit: from the
/// commits since the last checkpoint, else from the state the checkpoint kept. A commit before
/// the checkpoint that cannot be read shows no walk reached it.
#[tokio::test]
async fn writer_states_are_found_without_reading_commits_before_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    let shard = |n: u32| crate::state::shard_app_id(&n.to_string());
    table.commit(Commit { previous: None, ..commit(&shard(0), 1 << 32 | 1, "s0", vec![], json!({"shard": 0})) }).await.unwrap();
    let busy = CHECKPOINT_INTERVAL as i64 * 2 + 30;
    for n in 1..=busy {
        let counter = 1 << 32 | n;
        let previous = (n > 1).then(|| counter - 1);
        table.commit(Commit { previous, ..commit(&shard(1), counter, &format!("s1-{n}"), vec![], json!({"shard": 1, "n": n})) }).await.unwrap();
    }
    // A commit long before the last checkpoint (199) is damaged: nothing must read it.
    std::fs::write(dir.path().join("sales/_delta_log/00000000000000000150.json"), b"{not json").unwrap();
    let reopened = open_existing(dir.path()).await;
    assert_eq!(reopened.last_checkpoint().await.unwrap(), Some(2 * CHECKPOINT_INTERVAL - 1));
    let states = reopened.writer_states(&[shard(0), shard(1), shard(7)]).await.unwrap();
    assert_eq!(states[&shard(0)].state, json!({"shard": 0}), "the quiet shard, from the state the checkpoint kept");
    assert_eq!(states[&shard(1)].state, json!({"shard": 1, "n": busy}), "the busy one, from the commits since");
    assert_eq!(states[&shard(0)].version, 1);
    assert!(!states.contains_key(&shard(7)), "a shard never committed has no state");
}
