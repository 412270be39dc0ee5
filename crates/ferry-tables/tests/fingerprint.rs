//! The row fingerprint is the same number in PostgreSQL's SQL and in ferry's Rust for every
//! exported type and its edge values, and any changed, dropped or added row changes it.

mod common;

use ferry_tables::fingerprint::{Fingerprint, canonical_row, decode, qualified, row_sql, select_list, sql};
use ferry_tables::schema::{TableName, describe};
use ferry_testkit::postgres::Postgres;
use tokio_postgres::types::{FromSql, Type};

/// A field as the wire gives it, whatever its type.
struct Raw(Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn both(client: &tokio_postgres::Client, table: &TableName) -> (Fingerprint, Fingerprint) {
    let (tables, refusals) = describe(client, std::slice::from_ref(table), &[], &[]).await.unwrap();
    assert!(refusals.is_empty(), "{refusals:?}");
    let columns = &tables[0].columns;
    let row = client.query_one(&sql(table, columns), &[]).await.unwrap();
    let in_sql = Fingerprint { rows: row.get::<_, i64>(0) as u64, sum: row.get::<_, String>(1).parse().unwrap() };
    let mut in_rust = Fingerprint::default();
    let texts = client.query(&format!("SELECT {} FROM {} ORDER BY id", row_sql(columns), qualified(table)), &[]).await.unwrap();
    let rows = client.query(&format!("SELECT {} FROM {} ORDER BY id", select_list(columns), qualified(table)), &[]).await.unwrap();
    for (r, text) in rows.iter().zip(&texts) {
        let values: Vec<_> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| decode(&c.ty, r.get::<_, Raw>(i).0.as_deref()).unwrap_or_else(|e| panic!("{}: {e}", c.name)))
            .collect();
        // Field by field first, so a difference is named.
        assert_eq!(canonical_row(&values), text.get::<_, String>(0), "the canonical forms of a row");
        in_rust.add(&values);
    }
    (in_sql, in_rust)
}

#[tokio::test]
async fn sql_and_rust_agree_on_every_type_and_edge_value_and_any_row_change_moves_the_fingerprint() {
    let pg = Postgres::start();
    pg.create_db("db");
    pg.sql("db", common::EDGE);
    let client = common::client(&pg, "db").await;
    let table = TableName::parse("edge").unwrap();

    let (in_sql, in_rust) = both(&client, &table).await;
    assert_eq!(in_sql, in_rust);
    assert_eq!(in_sql.rows, 4);
    let mut seen = vec![in_sql.sum];
    for change in [
        "UPDATE edge SET big = big + 0.00000001 WHERE id = 1",
        "UPDATE edge SET f8 = '0' WHERE id = 2",
        "UPDATE edge SET t = NULL WHERE id = 4",
        "UPDATE edge SET tz = tz + interval '1 microsecond' WHERE id = 1",
        "UPDATE edge SET ai = '{1,NULL,-3,4}' WHERE id = 1",
        "UPDATE edge SET at = '{}' WHERE id = 4",
        "DELETE FROM edge WHERE id = 3",
        "INSERT INTO edge (id) VALUES (5)",
    ] {
        pg.sql("db", change);
        let (in_sql, in_rust) = both(&client, &table).await;
        assert_eq!(in_sql, in_rust, "after {change}");
        assert!(!seen.contains(&in_sql.sum), "{change} left the fingerprint as it was");
        seen.push(in_sql.sum);
    }
}
