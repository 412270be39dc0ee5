//! The catalog read from a real PostgreSQL: every supported type maps exactly, domains and
//! arrays through to their base, and every column without an exact mapping is refused by name
//! unless cast.

mod common;

use ferry_tables::schema::{Cast, ColumnType, RefusalReason, TableName, describe};
use ferry_testkit::postgres::Postgres;

const SCHEMA: &str = "
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN shop.money2 AS numeric(12,2);
CREATE DOMAIN shop.positive AS int8 CHECK (VALUE > 0);
CREATE TABLE shop.every_type (
  id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, f4 real, f8 double precision,
  amount numeric(30,6), total shop.money2, t text, v varchar(20), c char(3), raw bytea, d date,
  ts timestamp, tz timestamptz, tm time, iv interval, u uuid, j json, jb jsonb, m shop.mood,
  ip inet, net cidr, mac macaddr, mac8 macaddr8, ints integer[], texts text[], moods shop.mood[],
  n shop.positive NOT NULL
);
CREATE TABLE shop.lossy (
  a int, b int, loose numeric, wide numeric(50,2), neg numeric(5,-2), p point, cash money, x xml,
  PRIMARY KEY (b, a)
);
CREATE TABLE shop.plain (x int);
ALTER TABLE shop.plain DROP COLUMN x;
ALTER TABLE shop.plain ADD COLUMN y text;
";

#[tokio::test]
async fn every_supported_type_maps_exactly_and_the_rest_is_refused_by_name_unless_cast() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", SCHEMA);
    let client = common::client(&pg, "db").await;

    let (tables, refusals) = describe(&client, &[], &["shop".to_string()], &[]).await.unwrap();
    let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["shop.every_type", "shop.lossy", "shop.plain"]);
    let every = &tables[0];
    let ty = |name: &str| every.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name}")).ty.clone();
    use ColumnType::*;
    for (column, want) in [
        ("id", Int64),
        ("b", Bool),
        ("i2", Int16),
        ("i4", Int32),
        ("f4", Float32),
        ("f8", Float64),
        ("amount", Decimal { precision: 30, scale: 6 }),
        ("total", Decimal { precision: 12, scale: 2 }),
        ("t", Text),
        ("v", Text),
        ("c", Text),
        ("raw", Bytes),
        ("d", Date),
        ("ts", Timestamp),
        ("tz", TimestampTz),
        ("tm", Time),
        ("iv", Interval),
        ("u", Uuid),
        ("j", Json),
        ("jb", Jsonb),
        ("m", Enum),
        ("ip", Inet),
        ("net", Cidr),
        ("mac", MacAddr),
        ("mac8", MacAddr8),
        ("ints", List(Box::new(Int32))),
        ("texts", List(Box::new(Text))),
        ("moods", List(Box::new(Enum))),
        ("n", Int64),
    ] {
        assert_eq!(ty(column), want, "{column}");
    }
    assert_eq!(every.columns.len(), 29, "every column, in order, none refused");
    assert!(every.columns.iter().find(|c| c.name == "n").unwrap().not_null);
    assert_eq!(every.columns.iter().find(|c| c.name == "total").unwrap().pg_type, "shop.money2");
    assert_eq!(every.primary_key, ["id"]);
    assert_eq!(tables[1].primary_key, ["b", "a"], "a composite key in key order");
    assert_eq!(tables[2].columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["y"], "a dropped column is not exported");

    let refused: Vec<(String, String, RefusalReason)> =
        refusals.iter().map(|r| (format!("{}.{}", r.table, r.column), r.pg_type.clone(), r.reason.clone())).collect();
    assert_eq!(
        refused,
        [
            ("shop.lossy.loose".to_string(), "numeric".to_string(), RefusalReason::UnconstrainedNumeric),
            ("shop.lossy.wide".into(), "numeric(50,2)".into(), RefusalReason::NumericTooWide { precision: 50 }),
            ("shop.lossy.neg".into(), "numeric(5,-2)".into(), RefusalReason::NumericScale { precision: 5, scale: -2 }),
            ("shop.lossy.p".into(), "point".into(), RefusalReason::NoMapping),
            ("shop.lossy.cash".into(), "money".into(), RefusalReason::NoMapping),
            ("shop.lossy.x".into(), "xml".into(), RefusalReason::NoMapping),
        ]
    );
    let said = refusals[0].to_string();
    assert!(said.starts_with("shop.lossy.loose numeric: ") && said.contains("--cast shop.lossy.loose=text"), "{said}");

    // Cast, a refused column is exported as its text form; the others are still refused.
    let casts = [Cast::parse("shop.lossy.loose=text").unwrap(), Cast::parse("shop.lossy.p=text").unwrap()];
    let lossy = TableName::parse("shop.lossy").unwrap();
    let (tables, refusals) = describe(&client, std::slice::from_ref(&lossy), &[], &casts).await.unwrap();
    assert_eq!(tables.len(), 1);
    assert!(tables[0].columns.iter().filter(|c| c.ty == CastText).map(|c| c.name.as_str()).eq(["loose", "p"]));
    assert_eq!(refusals.len(), 4);

    // What names nothing is an error naming it.
    let err = describe(&client, &[TableName::parse("shop.nope").unwrap()], &[], &[]).await.unwrap_err().to_string();
    assert!(err.contains("no table shop.nope"), "{err}");
    let err = describe(&client, &[lossy], &[], &[Cast::parse("shop.lossy.ghost=text").unwrap()]).await.unwrap_err().to_string();
    assert!(err.contains("--cast shop.lossy.ghost"), "{err}");
    let err = describe(&client, &[], &["empty".to_string()], &[]).await.unwrap_err().to_string();
    assert!(err.contains("schema \"empty\" has no tables"), "{err}");
}
