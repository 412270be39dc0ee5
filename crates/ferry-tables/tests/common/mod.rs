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
