use kappa_common::schema::{Column, ColumnType, TableSchema};
use serde_json::json;

use super::*;

fn schema() -> TableSchema {
    TableSchema::new(vec![
        Column { name: "sale_id".into(), column_type: ColumnType::String, nullable: true },
        Column { name: "quantity".into(), column_type: ColumnType::Int64, nullable: true },
    ])
    .unwrap()
}

fn file(path: &str, day: &str) -> DataFile {
    let partition_values = [("year", "2025"), ("month", "03"), ("day", day)].into_iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect();
    DataFile { path: path.to_string(), partition_values, size: 100, stats: Some(r#"{"numRecords":3}"#.to_string()) }
}

async fn open(dir: &std::path::Path) -> LakeTable {
    let location = TableLocation::local(dir, "sales").unwrap();
    LakeTable::open_or_create("sales", &location, &schema(), &["year", "month", "day"]).await.unwrap()
}

#[tokio::test]
async fn a_writer_resumes_from_the_state_its_last_commit_carried() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = open(dir.path()).await;
    assert_eq!(table.writer_state("consumer").await.unwrap(), None, "a new table has no writer state");
    for counter in 1..=3 {
        let files = vec![file(&format!("gen-000001/year=2025/month=03/day=19/part-{counter}.parquet"), "19")];
        table.commit_flush("consumer", counter, &format!("c{counter}"), files, json!({"resume": {"0": counter * 10}})).await.unwrap();
    }
    // Another writer (a compaction, say) commits after: the consumer's state is found behind it.
    table.commit_flush("compactor", 1, "k1", vec![file("gen-000001/year=2025/month=03/day=20/part-x.parquet", "20")], json!(null)).await.unwrap();

    let reopened = open(dir.path()).await;
    assert_eq!(reopened.version(), Some(4));
    let state = reopened.writer_state("consumer").await.unwrap().unwrap();
    assert_eq!((state.version, state.counter, state.commit_id.as_str(), state.state.clone()), (3, 3, "c3", json!({"resume": {"0": 30}})));
    assert_eq!(reopened.files().unwrap().len(), 4);
}

#[tokio::test]
async fn a_second_writer_with_the_same_id_loses_and_a_retried_commit_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path()).await;
    let mut second = open(dir.path()).await;
    first.commit_flush("consumer", 1, "first-1", vec![file("gen-000001/a.parquet", "19")], json!(1)).await.unwrap();
    // The second handle read the table before that commit and prepares the same counter.
    let lost = second.commit_flush("consumer", 1, "second-1", vec![file("gen-000001/b.parquet", "19")], json!(2)).await;
    assert!(matches!(lost, Err(TableError::ConcurrentWriter { counter: 1, .. })), "{lost:?}");
    // The first writer's attempt whose answer was lost, tried again from a stale handle: its
    // own commit is recognised, nothing is written twice.
    let version_zero = DeltaTableBuilder::from_url(TableLocation::local(dir.path(), "sales").unwrap().url).unwrap().with_version(0).load().await.unwrap();
    let mut stale = LakeTable { name: "sales".into(), table: version_zero };
    let version = stale.commit_flush("consumer", 1, "first-1", vec![file("gen-000001/a.parquet", "19")], json!(1)).await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(open(dir.path()).await.files().unwrap(), vec!["gen-000001/a.parquet".to_string()]);
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
            .commit_flush("consumer", counter, &format!("c{counter}"), vec![file(&format!("gen-000001/p-{counter}.parquet"), "19")], json!(counter))
            .await
            .unwrap();
    }
    let log: Vec<String> =
        std::fs::read_dir(dir.path().join("sales/_delta_log")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(log.iter().any(|n| n.ends_with(".checkpoint.parquet")), "a checkpoint was written: {log:?}");
    let state = open(dir.path()).await.writer_state("consumer").await.unwrap().unwrap();
    assert_eq!((state.counter, state.state), (commits, json!(commits)));
}
