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

const TABLE: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE edge (
  id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, f4 real, f8 double precision,
  big numeric(38,8), money2 numeric(12,2), t text, c char(4), raw bytea, d date, ts timestamp,
  tz timestamptz, tm time, iv interval, u uuid, j json, jb jsonb, m mood, ip inet, mac macaddr,
  ai integer[], at text[], an numeric(6,2)[], aj jsonb[]
);
INSERT INTO edge VALUES
  (1, true, -32768, 2147483647, 'NaN', 'Infinity', 123456789012345678901234567890.12345678, -0.05, 'héllo, 日本 ✓', 'ab',
   '\\x00ff00', '1969-12-31', '2024-02-29 23:59:59.999999', '1999-12-31 23:00:00-05', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.7',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"b\": 1,  \"a\": [1,2]}', '{\"b\": 1, \"a\": [1,2]}', 'happy', '192.168.0.1/24', '08:00:2b:01:02:03',
   '{1,NULL,-3}', '{\"a,b\",\"\",NULL,\"日本\"}', '{1.50,NULL}', ARRAY['{\"k\": 1}'::jsonb]),
  (2, false, 0, -1, '-Infinity', '-0', -99999999999999999999999999999.99999999, 0, '', '', '', '2000-01-01', '0001-01-01 00:00:00',
   '2000-01-01 00:00:00+00', '00:00:00', '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000', 'null', '\"x\"', 'sad', '::1', 'ff:ff:ff:ff:ff:ff',
   '{}', '{}', '{}', '{}'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, true, 7, 7, 1.5, 2.2250738585072014e-308, 0.00000001, 1.10, 'a,b:c\\N-', 'x', '\\x5c4e', '294276-12-31', '1970-01-01 00:00:00.000001',
   '2038-01-19 03:14:08+00', '12:00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '{}', 'ok', '10.0.0.0/8', '00:00:00:00:00:00',
   '{NULL}', '{NULL,NULL}', NULL, '{NULL}');
";

const OPTIONS: FileOptions = FileOptions { compression: Compression::Zstd, row_group_bytes: 1 << 20 };

#[tokio::test]
async fn every_type_round_trips_through_parquet_with_the_databases_figures() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", TABLE);
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
