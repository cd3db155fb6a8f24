use super::*;
use crate::state::Totals;
use kappa_common::store::LocalStore;

fn commit(n: u64, files: &[&str], resume: &str) -> Commit {
    Commit {
        format: FORMAT,
        commit: n,
        generation: "gen-000001".into(),
        created_ms: 0,
        schema_version: 1,
        added: files.iter().map(|f| DataFile { path: f.to_string(), partition: "year=2025".into(), rows: 1, bytes: 1, stats: None }).collect(),
        removed: vec![],
        errors: vec![],
        resume: [("0".to_string(), resume.to_string())].into(),
        written: BTreeMap::new(),
        quarantined: BTreeMap::new(),
        totals: Totals::default(),
        unacknowledged: BTreeMap::new(),
        archived: vec![],
        archive_positions: BTreeMap::new(),
        seen: BTreeMap::new(),
        horizons: BTreeMap::new(),
    }
}

fn schema() -> TableSchema {
    TableSchema::new(vec![kappa_common::schema::Column { name: "id".into(), column_type: kappa_common::schema::ColumnType::Int64, nullable: true }]).unwrap()
}

fn layout() -> Layout {
    Layout { partition_by: "year".into(), event_time: None }
}

#[tokio::test]
async fn commits_resume_state_and_orphan_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let table = Table::open_or_create(store.clone(), "sales").await.unwrap();
    assert_eq!(table.generation(), "gen-000001");
    assert_eq!(table.load_state().await.unwrap().last_commit, 0);

    table.put_object("year=2025/a.parquet", Bytes::from_static(b"a")).await.unwrap();
    table.commit(&commit(1, &["year=2025/a.parquet"], "10"), &schema(), &layout()).await.unwrap();
    table.put_object("year=2025/b.parquet", Bytes::from_static(b"b")).await.unwrap();
    table.commit(&commit(2, &["year=2025/b.parquet"], "20"), &schema(), &layout()).await.unwrap();
    // A flush that crashed before its commit left this behind.
    table.put_object("year=2025/orphan.parquet", Bytes::from_static(b"o")).await.unwrap();

    let reopened = Table::open_or_create(store.clone(), "sales").await.unwrap();
    let state = reopened.load_state().await.unwrap();
    assert_eq!(state.last_commit, 2);
    assert_eq!(state.resume["0"], "20");
    assert_eq!(state.files.len(), 2);
    assert_eq!(reopened.remove_uncommitted(&state).await.unwrap(), 1);
    let left: Vec<String> = store.list("sales/gen-000001/").await.unwrap().into_iter().map(|o| o.path).collect();
    assert_eq!(left, vec!["sales/gen-000001/year=2025/a.parquet", "sales/gen-000001/year=2025/b.parquet"]);

    // The Delta table holds them, under the table's root.
    let mut lake = LakeTable::open("sales", &location(&store, "sales").unwrap()).await.unwrap().unwrap();
    assert_eq!(lake.files().await.unwrap(), vec!["gen-000001/year=2025/a.parquet", "gen-000001/year=2025/b.parquet"]);
    assert_eq!(lake.partition_columns().unwrap(), vec!["year"]);
    // A second writer racing for the same commit number loses.
    let err = reopened.commit(&commit(2, &[], "30"), &schema(), &layout()).await.unwrap_err();
    assert!(matches!(err, TableError::ConcurrentWriter { commit: 2, .. }), "{err}");
}
