use super::*;
use crate::state::{SeenRows, Totals};
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
        seen_ref: None,
        unacknowledged_ref: None,
        carried: Vec::new(),
        claims: None,
        claims_ref: None,
        epochs: Default::default(),
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
    table.put_object("year=2025/part-orphan.parquet", Bytes::from_static(b"o")).await.unwrap();
    // What some other tool put there is not ours to delete.
    table.put_object("year=2025/notes.txt", Bytes::from_static(b"n")).await.unwrap();

    let reopened = Table::open_or_create(store.clone(), "sales").await.unwrap();
    let state = reopened.load_state().await.unwrap();
    assert_eq!(state.last_commit, 2);
    assert_eq!(state.resume["0"], "20");
    assert_eq!(state.files.len(), 2);
    assert_eq!(reopened.remove_uncommitted(&state).await.unwrap(), 1);
    let left: Vec<String> = store.list("sales/gen-000001/").await.unwrap().into_iter().map(|o| o.path).collect();
    assert_eq!(left, vec!["sales/gen-000001/year=2025/a.parquet", "sales/gen-000001/year=2025/b.parquet", "sales/gen-000001/year=2025/notes.txt"]);

    // The Delta table holds them, under the table's root.
    let mut lake = LakeTable::open("sales", &location(&store, "sales").unwrap()).await.unwrap().unwrap();
    assert_eq!(lake.files().await.unwrap(), vec!["gen-000001/year=2025/a.parquet", "gen-000001/year=2025/b.parquet"]);
    assert_eq!(lake.partition_columns().unwrap(), vec!["year"]);
    // A second writer racing for the same commit number loses.
    let err = reopened.commit(&commit(2, &[], "30"), &schema(), &layout()).await.unwrap_err();
    assert!(matches!(err, TableError::ConcurrentWriter { commit: 2, .. }), "{err}");
}

/// With `_kappa/` lost, a replay's new generation must not take the live one's name, and a
/// generation's restart never deletes what the Delta log names.
#[tokio::test]
async fn a_lost_register_never_hands_out_the_live_name_and_the_log_protects_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let table = Table::open_or_create(store.clone(), "sales").await.unwrap();
    table.put_object("year=2025/part-a.parquet", Bytes::from_static(b"a")).await.unwrap();
    table.commit(&commit(1, &["year=2025/part-a.parquet"], "10"), &schema(), &layout()).await.unwrap();
    std::fs::remove_dir_all(dir.path().join("sales/_kappa")).unwrap();
    let replayed = crate::registry::create(&store, "sales", "replay").await.unwrap();
    assert_eq!(replayed, "gen-000002");
    // Even a writer that believes it owns gen-000001 with no commits of its own leaves the file.
    let staged = Table::open_generation(store.clone(), "sales", "gen-000001");
    assert_eq!(staged.remove_uncommitted(&TableState::default()).await.unwrap(), 0);
    assert!(store.get("sales/gen-000001/year=2025/part-a.parquet").await.is_ok());
}

/// A column another writer added while a consumer ran stays when the consumer's own schema
/// grows: its grown schema is the table's plus its new columns.
#[tokio::test]
async fn a_grown_schema_keeps_the_columns_another_writer_added() {
    use kappa_common::schema::{Column, ColumnType};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let table = Table::open_or_create(store.clone(), "sales").await.unwrap();
    table.put_object("year=2025/part-a.parquet", Bytes::from_static(b"a")).await.unwrap();
    table.commit(&commit(1, &["year=2025/part-a.parquet"], "10"), &schema(), &layout()).await.unwrap();
    // Another writer adds `note`.
    let location = location(&store, "sales").unwrap();
    let mut other = LakeTable::open("sales", &location).await.unwrap().unwrap();
    let mut with_note = schema();
    with_note.fields.push(Column { name: "note".into(), column_type: ColumnType::String, nullable: true });
    let setup = crate::delta::TableSetup {
        schema: with_note,
        partition_columns: vec!["year".into()],
        configuration: other.configuration().unwrap().into_iter().collect(),
    };
    let foreign = crate::delta::Commit {
        also: Vec::new(),
        fence: false,
        generation: None,
        app_id: "someone-else".into(),
        counter: 1,
        previous: None,
        commit_id: "x".into(),
        add: vec![],
        remove: vec![],
        data_change: true,
        replace_all: false,
        keep: vec![],
        restore: vec![],
        setup: Some(setup),
        state: serde_json::Value::Null,
    };
    other.commit(foreign).await.unwrap();
    // The consumer reads the table again (its status check), then grows its own schema.
    assert_eq!(table.current_generation().await.unwrap().as_deref(), Some("gen-000001"));
    let mut grown = schema();
    grown.fields.push(Column { name: "x".into(), column_type: ColumnType::Int64, nullable: true });
    table.commit(&Commit { schema_version: 2, ..commit(2, &[], "20") }, &grown, &layout()).await.unwrap();
    let names: Vec<String> = LakeTable::open("sales", &location).await.unwrap().unwrap().data_schema().unwrap().fields.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["id", "x", "note"]);
}

/// A commit with positions for `shards` (each resuming after `resume`).
fn shard_commit(n: u64, files: &[&str], shards: &[(&str, &str)]) -> Commit {
    Commit { resume: shards.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect(), ..commit(n, files, "0") }
}

async fn leased(store: &Store, worker: &str, held: &[(&str, u64)]) -> Table {
    let held = held.iter().map(|(s, e)| (s.to_string(), *e)).collect();
    Table::open_or_create(store.clone(), "sales").await.unwrap().leased(worker, &held)
}

#[tokio::test]
async fn leased_workers_append_side_by_side_and_a_take_fences_the_old_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    // Worker a holds shards 0 and 1, worker b shard 2: both commit, blind appends.
    let a = leased(&store, "a", &[("0", 1), ("1", 1)]).await;
    let b = leased(&store, "b", &[("2", 1)]).await;
    assert!(a.load_state().await.unwrap().resume.is_empty());
    a.put_object("year=2025/part-0-a.parquet", Bytes::from_static(b"a")).await.unwrap();
    a.commit(&shard_commit(1, &["year=2025/part-0-a.parquet"], &[("0", "10"), ("1", "11")]), &schema(), &layout()).await.unwrap();
    b.load_state().await.unwrap();
    b.commit(&shard_commit(1, &[], &[("2", "12")]), &schema(), &layout()).await.unwrap();
    a.commit(&shard_commit(2, &[], &[("0", "20"), ("1", "21")]), &schema(), &layout()).await.unwrap();

    // Worker c takes shard 1 at epoch 2: it resumes where a's last commit left shard 1 …
    let c = leased(&store, "c", &[("1", 2)]).await;
    let state = c.load_state().await.unwrap();
    assert_eq!(state.resume, [("1".to_string(), "21".to_string())].into());
    assert_eq!(c.shard_epochs(&["1".into(), "5".into()]).await.unwrap(), [("1".to_string(), Some(1)), ("5".to_string(), None)].into());
    // … and fences it with its first commit.
    c.commit(&shard_commit(1, &[], &[("1", "21")]), &schema(), &layout()).await.unwrap();
    assert_eq!(c.shard_epochs(&["1".into()]).await.unwrap()["1"], Some(2));
    // a, not yet aware, commits shards 0 and 1: refused whole, naming shard 1.
    a.put_object("year=2025/part-1-late.parquet", Bytes::from_static(b"l")).await.unwrap();
    let refused = a.commit(&shard_commit(3, &["year=2025/part-1-late.parquet"], &[("0", "30"), ("1", "31")]), &schema(), &layout()).await.unwrap_err();
    match refused {
        TableError::Fenced { shards, .. } => assert_eq!(shards, vec!["1".to_string()]),
        other => panic!("expected a fence, got {other}"),
    }
    // The late file is named by no commit; shard 0 is still a's, from its last commit.
    let mut lake = LakeTable::open("sales", &location(&store, "sales").unwrap()).await.unwrap().unwrap();
    assert!(!lake.files().await.unwrap().iter().any(|f| f.ends_with("part-1-late.parquet")));
    let a2 = leased(&store, "a", &[("0", 1)]).await;
    assert_eq!(a2.load_state().await.unwrap().resume, [("0".to_string(), "20".to_string())].into());
    a2.commit(&shard_commit(1, &[], &[("0", "30")]), &schema(), &layout()).await.unwrap();
    // c goes on from its fence.
    c.commit(&shard_commit(2, &[], &[("1", "40")]), &schema(), &layout()).await.unwrap();
    let d = leased(&store, "d", &[("0", 2), ("1", 3), ("2", 2)]).await;
    let state = d.load_state().await.unwrap();
    let expected: BTreeMap<String, String> = [("0", "30"), ("1", "40"), ("2", "12")].iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
    assert_eq!(state.resume, expected);
}

#[tokio::test]
async fn a_checkpoint_keeps_each_leased_shards_state_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let a = leased(&store, "a", &[("0", 1), ("1", 1)]).await;
    a.load_state().await.unwrap();
    for n in 1..=crate::delta::CHECKPOINT_INTERVAL {
        let (zero, one) = (format!("{}", 10 * n), format!("{}", 10 * n + 1));
        a.commit(&shard_commit(n, &[], &[("0", &zero), ("1", &one)]), &schema(), &layout()).await.unwrap();
    }
    let kept: Vec<String> =
        std::fs::read_dir(dir.path().join("sales/_kappa/writer-states")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for shard in ["0", "1"] {
        assert!(kept.iter().any(|name| name.starts_with(&format!("kappa-shard:{shard}-"))), "{kept:?}");
    }
}

fn claims(writer: &str, messages: &[&str], rows: &[(&str, &str)]) -> crate::state::Claims {
    crate::state::Claims {
        writer: writer.into(),
        messages: messages.iter().map(|m| m.to_string()).collect(),
        confirmed: Vec::new(),
        rows: rows.iter().map(|(s, r)| (s.to_string(), r.to_string())).collect(),
        totals: Totals::default(),
    }
}

/// Two consumers of one SQS queue: each commit goes on top of the other's, the loser learns
/// what the winner stored, and a third starting later reads everything from the chain's end.
#[tokio::test]
async fn competing_consumers_chain_their_commits_and_learn_each_others_claims() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let a = Table::open_or_create(store.clone(), "sales").await.unwrap().competing("a");
    let b = Table::open_or_create(store.clone(), "sales").await.unwrap().competing("b");
    a.load_state().await.unwrap();
    b.load_state().await.unwrap();
    let a_tag = a.competing_tag().unwrap();
    let b_tag = b.competing_tag().unwrap();
    assert_ne!(a_tag, b_tag);
    let seen = |rows: &str| [("f:1".to_string(), SeenRows { rows: rows.into(), ms: 1 })].into();
    let first = Commit { claims: Some(claims(&a_tag, &["m1", "m2"], &[("f:1", "0-9")])), seen: seen("0-9"), ..commit(1, &[], "1") };
    a.commit(&first, &schema(), &layout()).await.unwrap();
    // b has not seen a's commit: refused, nothing made.
    let second = Commit { claims: Some(claims(&b_tag, &["m2", "m3"], &[("f:1", "5-14")])), ..commit(1, &[], "1") };
    let refused = b.commit(&second, &schema(), &layout()).await.unwrap_err();
    assert!(matches!(refused, TableError::PeerCommitted { .. }), "{refused}");
    // b reads what a stored, and goes on top of it.
    let learnt = b.peer_claims().await.unwrap();
    assert_eq!(learnt, vec![claims(&a_tag, &["m1", "m2"], &[("f:1", "0-9")])]);
    assert!(b.peer_claims().await.unwrap().is_empty(), "claims are learnt once");
    b.commit(&Commit { seen: seen("0-14"), ..second.clone() }, &schema(), &layout()).await.unwrap();
    // a's next commit is refused in turn, and learns b's claims but not its own.
    let refused = a.commit(&commit(2, &[], "2"), &schema(), &layout()).await.unwrap_err();
    assert!(matches!(refused, TableError::PeerCommitted { .. }), "{refused}");
    assert_eq!(a.peer_claims().await.unwrap(), vec![claims(&b_tag, &["m2", "m3"], &[("f:1", "5-14")])]);
    // A consumer starting now (any worker id) starts from the chain's last commit: b's, which
    // remembers every producer row stored so far, without b's positions.
    let c = Table::open_or_create(store.clone(), "sales").await.unwrap().competing("c");
    let state = c.load_state().await.unwrap();
    assert_eq!(state.seen["f:1"].rows, "0-14");
    assert!(state.resume.is_empty(), "{:?}", state.resume);
    // The chain's commits carry one txn app id, whose version counts them.
    let lake = LakeTable::open("sales", &location(&store, "sales").unwrap()).await.unwrap().unwrap();
    assert_eq!(lake.writer_counter(crate::state::SQS_APP_ID).await.unwrap(), Some(2));
}

/// A replay's generation written by two leased writers: each commit numbered in one sequence,
/// a shard's state from the last commit holding it, and a commit that finds another writer's
/// commit of one of its shards refused.
#[tokio::test]
async fn writers_sharing_a_replays_generation_number_their_commits_as_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let open = |held: &[(&str, u64)], worker: &str| {
        let held = held.iter().map(|(s, e)| (s.to_string(), *e)).collect();
        Table::open_generation(store.clone(), "sales", "gen-000002").leased(worker, &held)
    };
    let totals = |rows| Totals { rows, files: 1, bytes: 1, quarantined: 0 };
    let a = open(&[("0", 1), ("1", 1)], "a");
    let b = open(&[("2", 1), ("3", 1)], "b");
    assert!(a.load_state().await.unwrap().resume.is_empty());
    b.load_state().await.unwrap();
    a.put_object("year=2025/part-0-a.parquet", Bytes::from_static(b"a")).await.unwrap();
    a.commit(&Commit { totals: totals(5), ..shard_commit(1, &["year=2025/part-0-a.parquet"], &[("0", "10"), ("1", "11")]) }, &schema(), &layout())
        .await
        .unwrap();
    b.put_object("year=2025/part-2-b.parquet", Bytes::from_static(b"b")).await.unwrap();
    // b's own first commit: number 2 of the log, after a's.
    b.commit(&Commit { totals: totals(7), ..shard_commit(1, &["year=2025/part-2-b.parquet"], &[("2", "12"), ("3", "13")]) }, &schema(), &layout())
        .await
        .unwrap();
    assert!(dir.path().join("sales/_kappa/gen-000002/commits/00000000000000000002.json").exists());
    // c takes shard 1 from a at epoch 2 and commits it.
    let c = open(&[("1", 2)], "c");
    assert_eq!(c.load_state().await.unwrap().resume, [("1".to_string(), "11".to_string())].into());
    c.commit(&shard_commit(1, &[], &[("1", "21")]), &schema(), &layout()).await.unwrap();
    // a, not yet aware, is refused for shard 1; its file is named by no commit.
    a.put_object("year=2025/part-1-late.parquet", Bytes::from_static(b"l")).await.unwrap();
    let refused = a.commit(&shard_commit(2, &["year=2025/part-1-late.parquet"], &[("0", "20"), ("1", "31")]), &schema(), &layout()).await.unwrap_err();
    assert!(matches!(&refused, TableError::Fenced { shards, .. } if shards == &vec!["1".to_string()]), "{refused}");
    // The whole generation: every shard from its last commit, every file of them, the totals
    // summed.
    let whole = Table::open_generation(store.clone(), "sales", "gen-000002");
    let (files, state) = whole.staged().await.unwrap();
    let expected: BTreeMap<String, String> = [("0", "10"), ("1", "21"), ("2", "12"), ("3", "13")].iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
    assert_eq!(state.resume, expected);
    assert_eq!(files.len(), 2);
    assert_eq!(state.totals.rows, 12);
    assert_eq!(whole.shared_epochs().await.unwrap()["1"], 2);
}

#[tokio::test]
async fn a_checkpoint_keeps_the_sqs_chains_state_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let a = Table::open_or_create(store.clone(), "sales").await.unwrap().competing("a");
    a.load_state().await.unwrap();
    for n in 1..=crate::delta::CHECKPOINT_INTERVAL {
        a.commit(&commit(n, &[], "1"), &schema(), &layout()).await.unwrap();
    }
    let kept: Vec<String> =
        std::fs::read_dir(dir.path().join("sales/_kappa/writer-states")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(kept.iter().any(|name| name.starts_with("kappa-sqs-")), "{kept:?}");
}

/// Issue 60, 5: a writer of a shared replay whose lease view is behind (another writer took a
/// shard and committed it since) is refused as it loads the log, not left to make a commit
/// that reading the log would leave out whole, with the rows of its other shards.
#[tokio::test]
async fn a_shared_replay_writer_behind_a_newer_epoch_is_refused_as_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let open = |held: &[(&str, u64)], worker: &str| {
        let held = held.iter().map(|(s, e)| (s.to_string(), *e)).collect();
        Table::open_generation(store.clone(), "sales", "gen-000002").leased(worker, &held)
    };
    let a = open(&[("0", 1), ("1", 1)], "a");
    a.load_state().await.unwrap();
    a.commit(&shard_commit(1, &[], &[("0", "10"), ("1", "11")]), &schema(), &layout()).await.unwrap();
    // b takes shard 1 at epoch 2 and commits it.
    let b = open(&[("1", 2)], "b");
    b.load_state().await.unwrap();
    b.commit(&shard_commit(1, &[], &[("1", "21")]), &schema(), &layout()).await.unwrap();
    // a starts a new session still believing it holds shard 1 at epoch 1: refused at once.
    let behind = open(&[("0", 1), ("1", 1)], "a");
    match behind.load_state().await {
        Err(TableError::Fenced { shards, .. }) => assert_eq!(shards, vec!["1".to_string()]),
        other => panic!("expected a fence, got {other:?}"),
    }
    // With shard 0 alone it goes on, and its commits count.
    let a = open(&[("0", 1)], "a");
    assert_eq!(a.load_state().await.unwrap().resume, [("0".to_string(), "10".to_string())].into());
    a.commit(&shard_commit(2, &[], &[("0", "30")]), &schema(), &layout()).await.unwrap();
    let (_, state) = Table::open_generation(store.clone(), "sales", "gen-000002").staged().await.unwrap();
    assert_eq!(state.resume, [("0".to_string(), "30".to_string()), ("1".to_string(), "21".to_string())].into());
}

/// Issue 60, 3 and 4: a data file is created only where its name is free. The same bytes
/// stored first by another (a paused writer, a flush before a crash) are taken as this file;
/// other bytes are never replaced, this file takes a name of its own. And no leased worker
/// deletes a file another may still commit.
#[tokio::test]
async fn data_files_are_never_replaced_and_leased_workers_delete_no_uncommitted_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let a = leased(&store, "a", &[("0", 1)]).await;
    let b = leased(&store, "b", &[("0", 2)]).await;
    let name = "year=2025/part-0-00000000000000000001-00000000000000000009.parquet";
    assert_eq!(a.put_new_object(name, Bytes::from_static(b"rows, as a writes them")).await.unwrap(), name);
    // b writes the same rows the same way: a's object is b's file.
    assert_eq!(b.put_new_object(name, Bytes::from_static(b"rows, as a writes them")).await.unwrap(), name);
    // b writes them otherwise (another version, codec or schema): a's object stays.
    let own = b.put_new_object(name, Bytes::from_static(b"rows, as b writes them")).await.unwrap();
    assert_ne!(own, name);
    assert!(own.starts_with("year=2025/part-0-") && own.ends_with(".parquet"), "{own}");
    b.sync_objects().await.unwrap();
    assert_eq!(&b.get_object(name).await.unwrap()[..], b"rows, as a writes them");
    assert_eq!(&b.get_object(&own).await.unwrap()[..], b"rows, as b writes them");
    // A new session of a leased worker, whatever the writer records say, deletes no `part-`
    // file no commit names: another worker may commit it.
    let c = leased(&store, "c", &[("0", 3)]).await;
    let state = c.load_state().await.unwrap();
    c.remove_uncommitted(&state).await.unwrap();
    assert!(c.get_object(name).await.is_ok() && c.get_object(&own).await.is_ok());
}

/// Issue 60, 2: `--start latest` is pinned to the first run that asked for it.
#[tokio::test]
async fn the_latest_start_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let table = Table::open_or_create(store.clone(), "sales").await.unwrap();
    assert_eq!(table.latest_start(1_000).await.unwrap(), 1_000);
    assert_eq!(table.latest_start(5_000).await.unwrap(), 1_000, "a later run reads the first start");
    let other = Table::open_or_create(store, "sales").await.unwrap();
    assert_eq!(other.latest_start(9_000).await.unwrap(), 1_000);
}

/// Issue 60, 4: a worker that takes a shard of an existing table fences it at once, with no
/// rows: the previous owner's next commit is refused however quiet the shard stays.
#[tokio::test]
async fn a_take_is_fenced_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(LocalStore::new(dir.path()));
    let a = leased(&store, "a", &[("0", 1)]).await;
    assert!(!a.fence_due().await.unwrap(), "no table yet: nothing to fence");
    a.load_state().await.unwrap();
    a.commit(&shard_commit(1, &[], &[("0", "10")]), &schema(), &layout()).await.unwrap();
    assert!(!a.fence_due().await.unwrap(), "its own epoch");
    let b = leased(&store, "b", &[("0", 2)]).await;
    b.load_state().await.unwrap();
    assert!(b.fence_due().await.unwrap());
    b.commit(&shard_commit(1, &[], &[("0", "10")]), &schema(), &layout()).await.unwrap();
    assert!(!b.fence_due().await.unwrap());
    let late = a.commit(&shard_commit(2, &[], &[("0", "20")]), &schema(), &layout()).await.unwrap_err();
    assert!(matches!(late, TableError::Fenced { .. }), "{late}");
}
