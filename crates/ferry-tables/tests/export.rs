//! A range of a table into a Parquet file: what the stream tallied, what the file reads back
//! as and what PostgreSQL computes in SQL over the same rows are the same figures, for every
//! exported type and its edge values; and ranges cover a table exactly once.

mod common;

use ferry_tables::export::{FileOptions, database_figures, export_range};
use ferry_tables::figures::{Tally, compare};
use ferry_tables::files::{Compression, read_rows};
use ferry_tables::ranges::{Range, plan};
use ferry_tables::schema::{TableName, describe};
use ferry_testkit::postgres::Postgres;

const OPTIONS: FileOptions = FileOptions { compression: Compression::Zstd, row_group_bytes: 1 << 20 };

#[tokio::test]
async fn every_type_round_trips_through_parquet_with_the_databases_figures() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", common::EDGE);
    let client = common::client(&pg, "db").await;
    let (tables, refusals) = describe(&client, &[TableName::parse("edge").unwrap()], &[], &[]).await.unwrap();
    assert!(refusals.is_empty(), "{refusals:?}");
    let table = &tables[0];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.parquet");
    let written = export_range(&client, table, "TRUE", &path, OPTIONS).await.unwrap();
    let database = database_figures(&client, table, "TRUE").await.unwrap();
    assert_eq!(compare(&database, &written), vec![], "the stream's figures");
    let mut read = Tally::new(&table.columns);
    read_rows(&path, &table.columns, |row| read.add(row)).unwrap();
    assert_eq!(compare(&database, &read.finish()), vec![], "the file's figures");
    assert_eq!(database.rows, 4);
    let big = database.columns.iter().find(|c| c.column == "big").unwrap();
    assert_eq!(big.max.as_deref(), Some("123456789012345678901234567890.12345678"));
    assert_eq!(big.sum.as_deref(), Some("23456789012345678901234567890.12345680"));
    let f4 = database.columns.iter().find(|c| c.column == "f4").unwrap();
    assert_eq!((f4.min.as_deref(), f4.max.as_deref()), (Some("ff800000"), Some("7fc00000")), "-Infinity and NaN");
}

#[tokio::test]
async fn a_value_parquet_cannot_hold_exactly_is_refused_by_table_column_and_row() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", "CREATE TABLE m (id int, n numeric(10,2), d date); INSERT INTO m VALUES (1, 1.5, '2020-01-01'), (2, 'NaN', 'infinity');");
    let client = common::client(&pg, "db").await;
    let (tables, _) = describe(&client, &[TableName::parse("m").unwrap()], &[], &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = export_range(&client, &tables[0], "TRUE", &dir.path().join("m.parquet"), OPTIONS).await.unwrap_err();
    assert_eq!(e.to_string(), "public.m.n, row 2 of its range: NaN or an infinity, which a Parquet decimal cannot hold");
}

#[tokio::test]
async fn ranges_by_key_and_by_page_cover_every_row_once() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql(
        "db",
        "CREATE TABLE k (id bigint PRIMARY KEY, v text); INSERT INTO k SELECT g * 3, md5(g::text) FROM generate_series(-500, 4499) g; \
         CREATE TABLE h (v text, n int); INSERT INTO h SELECT md5(g::text), g FROM generate_series(1, 5000) g; ANALYZE k; ANALYZE h;",
    );
    let client = common::client(&pg, "db").await;
    let (tables, _) = describe(&client, &[TableName::parse("k").unwrap(), TableName::parse("h").unwrap()], &[], &[]).await.unwrap();
    for table in &tables {
        let ranges = plan(&client, table, 1200).await.unwrap();
        assert!(ranges.len() >= 4, "{}: {ranges:?}", table.name);
        match table.name.name.as_str() {
            "k" => assert!(matches!(ranges[1], Range::Key { .. }), "{ranges:?}"),
            _ => assert!(matches!(ranges[1], Range::Pages { .. }), "{ranges:?}"),
        }
        let whole = database_figures(&client, table, "TRUE").await.unwrap();
        let (mut rows, mut sum) = (0u64, 0u64);
        for r in &ranges {
            let part = database_figures(&client, table, &r.predicate()).await.unwrap();
            assert!(part.rows > 0, "{}: {r:?} is empty", table.name);
            rows += part.rows;
            sum = sum.wrapping_add(part.fingerprint);
        }
        assert_eq!((rows, sum), (whole.rows, whole.fingerprint), "{}", table.name);
    }
}
