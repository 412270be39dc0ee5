//! One moment of the database for every connection of an export: rows inserted, updated and
//! deleted after the snapshot was taken are seen by no worker that adopted it.

mod common;

use ferry_tables::snapshot::{Snapshot, adopt};
use ferry_testkit::postgres::Postgres;

async fn count_and_sum(client: &tokio_postgres::Client) -> (i64, i64) {
    let row = client.query_one("SELECT count(*), coalesce(sum(v), 0)::int8 FROM public.t", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn workers_that_adopt_the_snapshot_see_none_of_what_was_written_after_it() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;");
    let settings = common::settings(&pg, "db");
    let snapshot = Snapshot::begin(settings.connect().await.unwrap(), &[]).await.unwrap();
    let major = snapshot.info.server_version.split(['.', ' ']).next().unwrap();
    assert!(major.parse::<u32>().is_ok_and(|m| m >= 10), "{:?}", snapshot.info);
    assert!(snapshot.info.lsn.contains('/'), "{:?}", snapshot.info);
    let before = (1000, 500_500);

    // Written while the export runs: inserted, updated, deleted, committed.
    pg.sql("db", "INSERT INTO t SELECT g, g FROM generate_series(1001, 1100) g; UPDATE t SET v = v + 1 WHERE id <= 10; DELETE FROM t WHERE id BETWEEN 500 AND 549;");
    let plain = settings.connect().await.unwrap();
    assert_ne!(count_and_sum(&plain).await, before, "a connection outside the snapshot sees the writes");

    let mut workers = Vec::new();
    for _ in 0..3 {
        let worker = settings.connect().await.unwrap();
        snapshot.adopt(&worker).await.unwrap();
        workers.push(worker);
    }
    for worker in &workers {
        assert_eq!(count_and_sum(worker).await, before, "a worker sees the moment of the snapshot");
    }
    assert_eq!(count_and_sum(snapshot.client()).await, before);
    // A worker's transaction is read only: nothing an export does can write.
    let refused = workers[0].batch_execute("INSERT INTO public.t VALUES (0, 0)").await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION), "{refused}");

    let id = snapshot.info.id.clone();
    snapshot.finish().await.unwrap();
    let late = settings.connect().await.unwrap();
    let err = adopt(&late, &id).await.unwrap_err().to_string();
    assert!(err.contains("adopt the export's snapshot"), "{err}");
}
