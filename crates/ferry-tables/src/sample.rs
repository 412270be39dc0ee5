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
//! Limits: a row written by a subtransaction still open when the snapshot was taken looks
//! visible (PostgreSQL lists only top-level transactions in a snapshot), and a row frozen
//! more than 2^31 transactions ago may look changed since; tables without a primary key, or
//! whose key has a type with no exact lookup (floating point, interval, arrays, json), are not
//! sampled, and named.

use crate::fingerprint::{Value, canonical_field, from_clause, ident, sql_canonical};
use crate::schema::{ColumnType, Table};
use crate::{Result, TablesError};
use tokio_postgres::Client;

/// Which transactions a snapshot sees: `pg_current_snapshot()`'s `xmin:xmax:xip,…` (64-bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Visibility {
    /// Parses `pg_current_snapshot()::text`.
    pub fn parse(text: &str) -> Option<Visibility> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list.split(',').map(|x| x.parse().ok()).collect::<Option<Vec<u64>>>()?,
        };
        (parts.next().is_none() && xmin <= xmax).then_some(Visibility { xmin, xmax, xip })
    }

    /// Whether the snapshot sees what transaction `xid` (full, 64-bit) wrote.
    pub fn sees(&self, xid: u64) -> bool {
        // 0, 1 and 2 are invalid, bootstrap and frozen: older than any snapshot.
        xid < 3 || xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }

    /// The transaction counter when the snapshot was taken (its `xmax`).
    pub fn next(&self) -> u64 {
        self.xmax
    }
}

/// The full transaction id of a row's 32-bit `xmin`, given the full counter now (`next`): the
/// latest id at or before `next` with those low 32 bits.
pub fn widen(xmin: u32, next: u64) -> u64 {
    if xmin < 3 {
        return xmin as u64;
    }
    let back = (next as u32).wrapping_sub(xmin) as u64;
    next.checked_sub(back).unwrap_or(xmin as u64)
}

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
/// row's `xmin`; parameters are the key columns' canonical texts, in key order.
#[derive(Debug, Clone)]
pub struct Lookup {
    sql: String,
    key: Vec<usize>,
}

/// The value of canonical text `$n` as a value of column type `ty` (`pg_type` as the catalog
/// names it), exactly, or `None` where there is no exact way back.
fn from_canonical(n: usize, ty: &ColumnType, pg_type: &str) -> Option<String> {
    use ColumnType as T;
    let p = format!("${n}::text");
    let micros =
        |base: &str| format!("{base} + ({p}::int8 / 1000000) * INTERVAL '1 second' + ({p}::int8 % 1000000) * INTERVAL '1 microsecond'");
    Some(match ty {
        T::Bool | T::Int16 | T::Int32 | T::Int64 | T::Decimal { .. } | T::Uuid | T::Text | T::Enum | T::Jsonb => format!("{p}::{pg_type}"),
        T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => format!("{p}::{pg_type}"),
        T::Date => format!("DATE '1970-01-01' + {p}::int4"),
        T::Timestamp => micros("TIMESTAMP '1970-01-01 00:00:00'"),
        T::TimestampTz => micros("TIMESTAMPTZ '1970-01-01 00:00:00+00'"),
        T::Time => micros("TIME '00:00:00'"),
        T::Bytes => format!("decode({p}, 'hex')"),
        T::Float32 | T::Float64 | T::Interval | T::Json | T::List(_) => return None,
    })
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
        let sql = format!("SELECT {}, xmin::text::int8 FROM {} WHERE {}", fields.join(", "), from_clause(table), conditions.join(" AND "));
        Ok(Lookup { sql, key })
    }

    /// The canonical text of `row`'s key (`None` if a key field is NULL: not a row of the table).
    pub fn key_of(&self, row: &[Value]) -> Option<Vec<String>> {
        self.key.iter().map(|&i| canonical_field(&row[i])).collect()
    }
}

/// A sampled row as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// No row has the key any more.
    Gone,
    /// The row: each column's canonical text (`None` for NULL), and the transaction that wrote it.
    Row { fields: Vec<Option<String>>, xmin: u32 },
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
    /// No row has the key any more: deleted after the export.
    GoneSince,
}

/// Fetches the row whose key is `key` (canonical texts, in key order).
pub async fn fetch(client: &Client, lookup: &Lookup, key: &[String]) -> Result<Fetched> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = key.iter().map(|k| k as _).collect();
    let rows = client
        .query(&lookup.sql, &params)
        .await
        .map_err(|source| TablesError::Query { what: "fetch a sampled row by its primary key".into(), source })?;
    let Some(row) = rows.first() else { return Ok(Fetched::Gone) };
    let n = row.len() - 1;
    let fields = (0..n).map(|i| row.get::<_, Option<String>>(i)).collect();
    let xmin: i64 = row.get(n);
    Ok(Fetched::Row { fields, xmin: xmin as u32 })
}

/// Compares a file's `row` with what the database has for its key, given the export's snapshot
/// `seen` and the transaction counter now (`next`).
pub fn compare(table: &Table, row: &[Value], fetched: &Fetched, seen: &Visibility, next: u64) -> Compared {
    let Fetched::Row { fields, xmin } = fetched else { return Compared::GoneSince };
    if !seen.sees(widen(*xmin, next)) {
        return Compared::ChangedSince;
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .zip(row.iter().zip(fields))
        .filter(|(_, (v, f))| canonical_field(v) != **f)
        .map(|(c, _)| c.name.clone())
        .collect();
    if columns.is_empty() { Compared::Equal } else { Compared::Differs { columns } }
}

/// The full transaction counter now (`pg_current_snapshot()`'s `xmax`).
pub async fn next_xid(client: &Client) -> Result<u64> {
    let row = client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(|source| TablesError::Query { what: "read the transaction counter".into(), source })?;
    let text: String = row.get(0);
    Visibility::parse(&text).map(|v| v.next()).ok_or_else(|| TablesError::Catalog(format!("pg_current_snapshot() gave {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sees_what_committed_before_it() {
        let v = Visibility::parse("100:110:103,107").unwrap();
        assert!(v.sees(2) && v.sees(99) && v.sees(100) && v.sees(104));
        assert!(!v.sees(103) && !v.sees(107) && !v.sees(110) && !v.sees(5000));
        assert_eq!(Visibility::parse("5:5:").unwrap().xip, Vec::<u64>::new());
        assert!(Visibility::parse("9:5:").is_none() && Visibility::parse("a:b:").is_none() && Visibility::parse("1:2").is_none());
    }

    #[test]
    fn a_32_bit_xid_widens_to_the_latest_full_id_with_its_bits() {
        let next = (3u64 << 32) + 10;
        assert_eq!(widen(5, next), (3 << 32) + 5);
        assert_eq!(widen(u32::MAX - 1, next), (2u64 << 32) + (u32::MAX - 1) as u64);
        assert_eq!(widen(700, 1000), 700);
        assert_eq!(widen(2, next), 2);
    }

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
