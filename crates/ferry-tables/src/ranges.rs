//! How a table is cut into files that workers export in parallel and a rerun exports again one
//! by one: by ranges of an integer primary key, else by ranges of heap pages (`ctid`). The
//! first range is open below and the last open above, so every row is in exactly one range
//! whatever was written since the ranges were planned.

use crate::fingerprint::{from_clause, ident, qualified};
use crate::schema::{ColumnType, Table};
use crate::{Result, TablesError};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

/// The rows of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Range {
    /// The whole table.
    All,
    /// `from <= key < to` (a missing bound is open).
    Key {
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<i64>,
    },
    /// Heap pages `from <= page < to` (a missing bound is open).
    Pages {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<u32>,
    },
    /// The rows of an incremental table written since an earlier export: past its watermark
    /// in `column`, or not seen by its snapshot (see [`crate::incremental`]).
    Since {
        column: String,
        /// The watermark: the largest value of `column` exported before (canonical text;
        /// none when no row had one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// The earlier snapshot's visibility (`xmin:xmax:xip,…`).
        unseen_by: String,
        /// The condition, as [`crate::incremental::since`] made it.
        sql: String,
    },
}

impl Range {
    /// The range as an SQL condition on the table's rows.
    pub fn predicate(&self) -> String {
        let mut parts = Vec::new();
        match self {
            Range::All => {}
            Range::Key { column, from, to } => {
                let c = ident(column);
                parts.extend(from.map(|f| format!("{c} >= {f}")));
                parts.extend(to.map(|t| format!("{c} < {t}")));
            }
            Range::Pages { from, to } => {
                parts.extend(from.map(|f| format!("ctid >= '({f},0)'::tid")));
                parts.extend(to.map(|t| format!("ctid < '({t},0)'::tid")));
            }
            Range::Since { sql, .. } => parts.push(sql.clone()),
        }
        if parts.is_empty() { "TRUE".to_string() } else { parts.join(" AND ") }
    }
}

async fn one(client: &Client, what: &str, sql: &str) -> Result<tokio_postgres::Row> {
    client.query_one(sql, &[]).await.map_err(|source| TablesError::Query { what: what.to_string(), source })
}

/// Cuts `table` into ranges of about `rows_per_file` rows, as the snapshot `client` is in
/// sees it.
pub async fn plan(client: &Client, table: &Table, rows_per_file: u64) -> Result<Vec<Range>> {
    let name = from_clause(table);
    let stats = client
        .query_one(
            "SELECT reltuples::int8, (pg_relation_size(oid) / current_setting('block_size')::int8)::int8 FROM pg_class WHERE oid = $1::text::regclass",
            &[&qualified(&table.name)],
        )
        .await
        .map_err(|source| TablesError::Query { what: format!("size {}", table.name), source })?;
    let (mut rows, pages): (i64, i64) = (stats.get(0), stats.get(1));
    if rows < 0 {
        // Never analyzed: count.
        rows = one(client, &format!("count {}", table.name), &format!("SELECT count(*) FROM {name}")).await?.get(0);
    }
    let n = (rows.max(0) as u64).div_ceil(rows_per_file.max(1)).max(1);
    if n == 1 {
        return Ok(vec![Range::All]);
    }
    let key = match table.primary_key.as_slice() {
        [k] => table
            .columns
            .iter()
            .find(|c| &c.name == k)
            .filter(|c| matches!(c.ty, ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64)),
        _ => None,
    };
    if let Some(key) = key {
        let c = ident(&key.name);
        let row = one(client, &format!("key range {}", table.name), &format!("SELECT min({c})::int8, max({c})::int8 FROM {name}")).await?;
        let (Some(lo), Some(hi)): (Option<i64>, Option<i64>) = (row.get(0), row.get(1)) else { return Ok(vec![Range::All]) };
        let width = ((hi as i128 - lo as i128 + 1) / n as i128).max(1);
        let bounds: Vec<i64> = (1..n as i128).map(|i| lo as i128 + i * width).filter(|b| *b <= hi as i128).map(|b| b as i64).collect();
        return Ok(cut(&bounds, |from, to| Range::Key { column: key.name.clone(), from, to }));
    }
    let per = (pages.max(1) as u64).div_ceil(n).max(1);
    let bounds: Vec<u32> = (1..n).map(|i| i * per).filter(|b| *b < pages.max(1) as u64).map(|b| b as u32).collect();
    Ok(cut(&bounds, |from, to| Range::Pages { from, to }))
}

/// Ranges between consecutive `bounds`, open at both ends.
fn cut<B: Copy>(bounds: &[B], make: impl Fn(Option<B>, Option<B>) -> Range) -> Vec<Range> {
    if bounds.is_empty() {
        return vec![Range::All];
    }
    let mut out = vec![make(None, Some(bounds[0]))];
    out.extend(bounds.windows(2).map(|w| make(Some(w[0]), Some(w[1]))));
    out.push(make(Some(bounds[bounds.len() - 1]), None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_open_at_both_ends_and_meet() {
        let r = cut(&[10i64, 20], |from, to| Range::Key { column: "id".into(), from, to });
        let p: Vec<String> = r.iter().map(Range::predicate).collect();
        assert_eq!(p, ["\"id\" < 10", "\"id\" >= 10 AND \"id\" < 20", "\"id\" >= 20"]);
        assert_eq!(Range::Pages { from: Some(4), to: None }.predicate(), "ctid >= '(4,0)'::tid");
        assert_eq!(Range::All.predicate(), "TRUE");
    }
}
