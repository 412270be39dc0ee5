//! Sample-based record comparison for `verify --sample N`: rows chosen at random from the
//! Parquet read back, fetched by primary key from PostgreSQL, and compared field by field in
//! the fingerprint's canonical form (the same text in SQL and in Rust, so a field differs only
//! when its value does).
//!
//! `verify` runs after the export's snapshot is gone, so the database may have moved on. Each
//! row fetched carries its `xmin`; with the visibility of the export's snapshot
//! (`pg_current_snapshot()`, recorded with it) ferry tells a row the export saw, which must be
//! equal, from one written since, which is counted as changed since the export and not
//! compared. A row no longer in the database is counted as gone since (a row that never was
//! there changes the file's fingerprint, which `verify` proves for every file).
//!
//! A row whose fields differ and whose writer falls inside the snapshot's window (at or past
//! its `xmin`, before its `xmax`, not listed as in progress) is counted as uncertain, not as a
//! difference: PostgreSQL lists only top-level transactions in a snapshot, so a row written by
//! a subtransaction of one still open then looks visible. Each fetch reads the counter of its
//! own statement's snapshot, so a row's 32-bit `xmin` widens against a counter at least as new
//! as the row. Limits: a row frozen more than 2^31 transactions ago may look changed since;
//! tables without a primary key, or whose key has a type with no exact lookup (floating point,
//! interval, arrays, json), are not sampled, and named.

use crate::fingerprint::{Value, canonical_field, from_canonical_text, from_clause, ident, sql_canonical};
use crate::schema::{ColumnType, Table};
use crate::snapshot::{Visibility, widen};
use crate::{Result, TablesError};
use tokio_postgres::Client;

/// Keeps `n` items chosen uniformly at random from those offered (reservoir sampling), in
/// memory of `n` items whatever the table's size.
pub struct Reservoir<T> {
    n: usize,
    seen: u64,
    items: Vec<T>,
    state: u64,
}

impl<T> Reservoir<T> {
    pub fn new(n: usize) -> Reservoir<T> {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Reservoir { n, seen: 0, items: Vec::new(), state: seed | 1 }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough to choose rows, not a secret.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Offers one more item, made by `make` only if it is kept.
    pub fn offer_with(&mut self, make: impl FnOnce() -> T) {
        self.seen += 1;
        if self.items.len() < self.n {
            self.items.push(make());
            return;
        }
        if self.n == 0 {
            return;
        }
        let at = self.next_random() % self.seen;
        if (at as usize) < self.n {
            self.items[at as usize] = make();
        }
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }
}

/// Why a table's rows cannot be fetched by key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum NotSampled {
    /// The table has no primary key to fetch rows by.
    NoPrimaryKey,
    /// A key column's type has no exact lookup from its canonical text.
    KeyType { column: String, pg_type: String },
    /// The export did not record which transactions its snapshot saw (an export made before
    /// ferry recorded it), so a row changed since could not be told from a wrong one.
    NoVisibility,
}

impl std::fmt::Display for NotSampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSampled::NoPrimaryKey => write!(f, "no primary key to fetch rows by"),
            NotSampled::KeyType { column, pg_type } => write!(f, "key column {column} is {pg_type}, which ferry cannot look up exactly"),
            NotSampled::NoVisibility => write!(f, "the export did not record its snapshot's visibility"),
        }
    }
}

/// The SQL that fetches one row by its primary key: every column's canonical text, then the
/// row's `xmin` and the counter of the statement's snapshot; parameters are the key columns'
/// canonical texts, in key order.
#[derive(Debug, Clone)]
pub struct Lookup {
    sql: String,
    key: Vec<usize>,
}

/// The value of canonical text `$n` as a value of column type `ty` (`pg_type` as the catalog
/// names it), exactly, or `None` where there is no exact way back.
fn from_canonical(n: usize, ty: &ColumnType, pg_type: &str) -> Option<String> {
    from_canonical_text(&format!("${n}::text"), ty, pg_type)
}

impl Lookup {
    /// The lookup of `table`'s rows by primary key.
    pub fn of(table: &Table) -> Result<Lookup, NotSampled> {
        if table.primary_key.is_empty() {
            return Err(NotSampled::NoPrimaryKey);
        }
        let mut key = Vec::new();
        let mut conditions = Vec::new();
        for (i, name) in table.primary_key.iter().enumerate() {
            let at = table.columns.iter().position(|c| &c.name == name).ok_or(NotSampled::NoPrimaryKey)?;
            let column = &table.columns[at];
            let value = from_canonical(i + 1, &column.ty, &column.pg_type)
                .ok_or_else(|| NotSampled::KeyType { column: column.name.clone(), pg_type: column.pg_type.clone() })?;
            conditions.push(format!("{} = {value}", ident(&column.name)));
            key.push(at);
        }
        let fields: Vec<String> = table.columns.iter().map(|c| sql_canonical(&ident(&c.name), &c.ty)).collect();
        let sql = format!(
            "SELECT {}, xmin::text::int8, pg_snapshot_xmax(pg_current_snapshot())::text::int8 FROM {} WHERE {}",
            fields.join(", "),
            from_clause(table),
            conditions.join(" AND ")
        );
        Ok(Lookup { sql, key })
    }

    /// The canonical text of `row`'s key (`None` if a key field is NULL: not a row of the table).
    pub fn key_of(&self, row: &[Value]) -> Option<Vec<String>> {
        self.key.iter().map(|&i| canonical_field(&row[i])).collect()
    }

    /// `row`'s key for a person: `column = value` a key column, text quoted as SQL quotes it,
    /// dates and times as calendar dates and clock times (UTC).
    pub fn key_shown(&self, table: &Table, row: &[Value]) -> Vec<String> {
        self.key.iter().map(|&i| format!("{} = {}", table.columns[i].name, shown(&table.columns[i].ty, &row[i]))).collect()
    }
}

/// A canonical value of a column of type `ty` (an incremental table's watermark) as a person
/// reads it: dates and times as such, anything else as it is.
pub fn shown_canonical(ty: &ColumnType, text: &str) -> String {
    let value = match ty {
        ColumnType::Date => text.parse().ok().map(Value::Date),
        ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Time => text.parse().ok().map(Value::Micros),
        _ => None,
    };
    value.map(|v| shown(ty, &v)).unwrap_or_else(|| text.to_string())
}

/// A key value as a person reads it.
fn shown(ty: &ColumnType, v: &Value) -> String {
    use arrow_array::temporal_conversions::{date32_to_datetime, time64us_to_time, timestamp_us_to_datetime};
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let canonical = || canonical_field(v).unwrap_or_else(|| "NULL".into());
    match (ty, v) {
        (_, Value::Text(s)) => Some(quoted(s)),
        (ColumnType::Date, Value::Date(d)) => date32_to_datetime(*d).map(|t| quoted(&t.date().to_string())),
        (ColumnType::Timestamp, Value::Micros(m)) => timestamp_us_to_datetime(*m).map(|t| quoted(&t.to_string())),
        (ColumnType::TimestampTz, Value::Micros(m)) => timestamp_us_to_datetime(*m).map(|t| quoted(&format!("{t}+00"))),
        (ColumnType::Time, Value::Micros(m)) => time64us_to_time(*m).map(|t| quoted(&t.to_string())),
        (ColumnType::Bytes, _) => Some(format!("'\\x{}'", canonical())),
        (ColumnType::Uuid | ColumnType::Inet | ColumnType::Cidr | ColumnType::MacAddr | ColumnType::MacAddr8, _) => {
            Some(quoted(&canonical()))
        }
        _ => None,
    }
    .unwrap_or_else(canonical)
}

/// A sampled row as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// No row has the key any more.
    Gone,
    /// The row: each column's canonical text (`None` for NULL), the transaction that wrote it,
    /// and the full transaction counter of the snapshot it was read in.
    Row { fields: Vec<Option<String>>, xmin: u32, next: u64 },
}

/// What the database says of one sampled row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    /// The export's snapshot saw this version, and every field is the file's.
    Equal,
    /// The export's snapshot saw this version, and these columns differ from the file's.
    Differs { columns: Vec<String> },
    /// The row was written after the export's snapshot: not compared.
    ChangedSince,
    /// These columns differ, and the row's writer is in the snapshot's window, where a
    /// subtransaction still open then looks visible: not counted as a difference.
    Uncertain { columns: Vec<String> },
    /// No row has the key any more: deleted after the export.
    GoneSince,
}

/// A [`Lookup`] prepared on one connection, for the rows of one table.
pub struct Prepared {
    statement: tokio_postgres::Statement,
}

impl Lookup {
    /// Prepares the lookup on `client` (once a table).
    pub async fn prepare(&self, client: &Client) -> Result<Prepared> {
        let statement = client
            .prepare(&self.sql)
            .await
            .map_err(|source| TablesError::Query { what: "prepare the lookup of sampled rows by primary key".into(), source })?;
        Ok(Prepared { statement })
    }
}

/// Fetches the row whose key is `key` (canonical texts, in key order).
pub async fn fetch(client: &Client, lookup: &Prepared, key: &[String]) -> Result<Fetched> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = key.iter().map(|k| k as _).collect();
    let rows = client
        .query(&lookup.statement, &params)
        .await
        .map_err(|source| TablesError::Query { what: "fetch a sampled row by its primary key".into(), source })?;
    let Some(row) = rows.first() else { return Ok(Fetched::Gone) };
    let n = row.len() - 2;
    let fields = (0..n).map(|i| row.get::<_, Option<String>>(i)).collect();
    let (xmin, next): (i64, i64) = (row.get(n), row.get(n + 1));
    Ok(Fetched::Row { fields, xmin: xmin as u32, next: next as u64 })
}

/// Compares a file's `row` with what the database has for its key, given the export's snapshot
/// `seen`.
pub fn compare(table: &Table, row: &[Value], fetched: &Fetched, seen: &Visibility) -> Compared {
    let Fetched::Row { fields, xmin, next } = fetched else { return Compared::GoneSince };
    let writer = widen(*xmin, *next);
    if !seen.sees(writer) {
        return Compared::ChangedSince;
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .zip(row.iter().zip(fields))
        .filter(|(_, (v, f))| canonical_field(v) != **f)
        .map(|(c, _)| c.name.clone())
        .collect();
    match (columns.is_empty(), seen.in_window(writer)) {
        (true, _) => Compared::Equal,
        (false, true) => Compared::Uncertain { columns },
        (false, false) => Compared::Differs { columns },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservoir_keeps_n_rows_and_draws_from_all() {
        let mut r = Reservoir::new(10);
        for i in 0..10_000u32 {
            r.offer_with(|| i);
        }
        assert_eq!(r.items().len(), 10);
        // Uniform: with 10 of 10 000 kept, all from the first 100 would be a broken sampler.
        assert!(r.items().iter().any(|&i| i >= 100));
        let mut none: Reservoir<u32> = Reservoir::new(0);
        none.offer_with(|| unreachable!("nothing is kept"));
        assert!(none.items().is_empty());
    }
}
