//! What every test of this crate does first: reach the test's cluster as a user of libpq's
//! conventions would (PGUSER and PGPASSWORD), for database `db`.

use ferry_tables::connect::{Environment, PgUrl, Settings};
use ferry_testkit::postgres::{PASSWORD, Postgres, USER};

pub fn settings(pg: &Postgres, db: &str) -> Settings {
    let env = Environment {
        vars: [("PGUSER", USER), ("PGPASSWORD", PASSWORD)].map(|(k, v)| (k.to_string(), v.to_string())).into(),
        ..Default::default()
    };
    Settings::resolve(&PgUrl::parse(&pg.url(db)).unwrap(), &env).unwrap()
}

#[allow(dead_code)] // not every test file connects at once
pub async fn client(pg: &Postgres, db: &str) -> tokio_postgres::Client {
    settings(pg, db).connect().await.unwrap()
}

/// A table of every exported type with its edge values (NaN, ±Infinity, -0, 38-digit numerics,
/// unicode, bytea with NULs, year 1 and year 294276, arrays empty, NULL and of NULLs, NULL everywhere).
#[allow(dead_code)] // not every test file uses it
pub const EDGE: &str = "
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
