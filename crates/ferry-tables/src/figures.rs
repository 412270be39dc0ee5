//! The figures that prove a table export: row count, row fingerprint and, per column, the
//! non-null and null counts, the minimum and maximum, and the sum of integer and decimal
//! columns. PostgreSQL computes them in SQL over the export's snapshot ([`sql`]); ferry
//! computes them from the values it wrote and, in `verify`, from the Parquet it reads back
//! ([`Tally`]). [`compare`] names every difference.
//!
//! Minimum and maximum are kept for the types PostgreSQL and Rust order alike: integers,
//! decimals, real and double (NaN above +Infinity, -0 equal to 0), dates, timestamps, times,
//! booleans (`bool_and`, `bool_or`) and text compared byte by byte (`COLLATE "C"`); they are
//! rendered in the fingerprint's canonical form. Sums are exact: integers and decimals only (a
//! float sum depends on the order of the additions; the fingerprint covers every float bit).

use crate::fingerprint::{Value, canonical_value, fold_sql, from_clause, ident, row_hash, row_hash_sql};
use crate::schema::{Column, ColumnType, Table};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// One column's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnFigures {
    pub column: String,
    pub non_null: u64,
    pub nulls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
}

/// A table's (or one of its files') figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub rows: u64,
    /// The sum modulo 2^64 of the rows' hashes (see [`crate::fingerprint`]).
    pub fingerprint: u64,
    pub columns: Vec<ColumnFigures>,
}

/// Which figure differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    Rows,
    Fingerprint,
    Columns,
    NonNull,
    Nulls,
    Min,
    Max,
    Sum,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Rows => "rows",
            Aggregate::Fingerprint => "fingerprint",
            Aggregate::Columns => "columns",
            Aggregate::NonNull => "non-null",
            Aggregate::Nulls => "nulls",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
        }
    }
}

/// A figure the database gave that the export's files do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FigureDifference {
    /// `None` for a whole-row figure (rows, fingerprint, columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub aggregate: Aggregate,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for FigureDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c}: {} {} (the database has {})", self.aggregate.as_str(), self.found, self.expected),
            None => write!(f, "{} {} (the database has {})", self.aggregate.as_str(), self.found, self.expected),
        }
    }
}

/// Every figure of `found` that is not `expected`'s. A sum either side could not hold exactly
/// (absent on one side only) is not compared.
pub fn compare(expected: &Figures, found: &Figures) -> Vec<FigureDifference> {
    let mut out = Vec::new();
    let mut differ = |column: Option<&str>, aggregate, e: String, f: String| {
        if e != f {
            out.push(FigureDifference { column: column.map(str::to_string), aggregate, expected: e, found: f });
        }
    };
    differ(None, Aggregate::Rows, expected.rows.to_string(), found.rows.to_string());
    differ(None, Aggregate::Fingerprint, format!("{:016x}", expected.fingerprint), format!("{:016x}", found.fingerprint));
    let names = |f: &Figures| f.columns.iter().map(|c| c.column.clone()).collect::<Vec<_>>().join(",");
    if names(expected) != names(found) {
        differ(None, Aggregate::Columns, names(expected), names(found));
        return out;
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    for (e, f) in expected.columns.iter().zip(&found.columns) {
        let c = Some(e.column.as_str());
        differ(c, Aggregate::NonNull, e.non_null.to_string(), f.non_null.to_string());
        differ(c, Aggregate::Nulls, e.nulls.to_string(), f.nulls.to_string());
        differ(c, Aggregate::Min, shown(&e.min), shown(&f.min));
        differ(c, Aggregate::Max, shown(&e.max), shown(&f.max));
        if e.sum.is_some() && f.sum.is_some() {
            differ(c, Aggregate::Sum, shown(&e.sum), shown(&f.sum));
        }
    }
    out
}

/// What is kept of a column of type `ty`.
fn ordered(ty: &ColumnType) -> bool {
    use ColumnType as T;
    matches!(
        ty,
        T::Bool
            | T::Int16
            | T::Int32
            | T::Int64
            | T::Float32
            | T::Float64
            | T::Decimal { .. }
            | T::Date
            | T::Timestamp
            | T::TimestampTz
            | T::Time
            | T::Text
            | T::CastText
    )
}

fn summed(ty: &ColumnType) -> bool {
    matches!(ty, ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 | ColumnType::Decimal { .. })
}

/// The SQL that gives `table`'s figures over the rows `predicate` keeps (`TRUE`: all), read
/// back by [`from_row`].
pub fn sql(table: &Table, predicate: &str) -> String {
    let columns = &table.columns[..];
    let mut select = vec!["count(*)".to_string(), fold_sql(&format!("sum({}::numeric)", row_hash_sql(columns)))];
    for c in columns {
        let n = ident(&c.name);
        select.push(format!("count({n})"));
        let (min, max) = match &c.ty {
            ty if !ordered(ty) => ("NULL::text".to_string(), "NULL::text".to_string()),
            ColumnType::Bool => (
                format!("CASE WHEN bool_and({n}) THEN 't' WHEN NOT bool_and({n}) THEN 'f' END"),
                format!("CASE WHEN bool_or({n}) THEN 't' WHEN NOT bool_or({n}) THEN 'f' END"),
            ),
            // -0 as 0 (adding 0), and any NaN as the one Rust renders, whatever its sign or payload.
            ColumnType::Float32 => (
                format!("CASE WHEN min({n}) = 'NaN' THEN '7fc00000' ELSE encode(float4send(min({n}) + 0::float4), 'hex') END"),
                format!("CASE WHEN max({n}) = 'NaN' THEN '7fc00000' ELSE encode(float4send(max({n}) + 0::float4), 'hex') END"),
            ),
            ColumnType::Float64 => (
                format!("CASE WHEN min({n}) = 'NaN' THEN '7ff8000000000000' ELSE encode(float8send(min({n}) + 0::float8), 'hex') END"),
                format!("CASE WHEN max({n}) = 'NaN' THEN '7ff8000000000000' ELSE encode(float8send(max({n}) + 0::float8), 'hex') END"),
            ),
            ColumnType::Date => (format!("(min({n}) - DATE '1970-01-01')::text"), format!("(max({n}) - DATE '1970-01-01')::text")),
            ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Time => (
                format!("(extract(epoch FROM min({n})) * 1000000)::int8::text"),
                format!("(extract(epoch FROM max({n})) * 1000000)::int8::text"),
            ),
            ColumnType::Text | ColumnType::CastText => {
                (format!("min(({n})::text COLLATE \"C\")"), format!("max(({n})::text COLLATE \"C\")"))
            }
            _ => (format!("min({n})::text"), format!("max({n})::text")),
        };
        select.push(min);
        select.push(max);
        select.push(if summed(&c.ty) { format!("sum({n})::text") } else { "NULL::text".to_string() });
    }
    format!("SELECT {} FROM {} WHERE {predicate}", select.join(", "), from_clause(table))
}

/// Reads the row [`sql`] returned.
pub fn from_row(columns: &[Column], row: &tokio_postgres::Row) -> Figures {
    let rows = row.get::<_, i64>(0) as u64;
    let fingerprint = row.get::<_, String>(1).parse().expect("the fingerprint is a number below 2^64");
    let columns = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = 2 + i * 4;
            let non_null = row.get::<_, i64>(at) as u64;
            ColumnFigures {
                column: c.name.clone(),
                non_null,
                nulls: rows - non_null,
                min: row.get(at + 1),
                max: row.get(at + 2),
                sum: row.get(at + 3),
            }
        })
        .collect();
    Figures { rows, fingerprint, columns }
}

/// One column's running figures.
#[derive(Debug, Clone)]
struct ColumnTally {
    non_null: u64,
    nulls: u64,
    min: Option<Value>,
    max: Option<Value>,
    /// The unscaled sum; `None` once it no longer fits an i128 (not compared then).
    sum: Option<i128>,
    scale: u8,
}

/// Figures computed from rows as they are written or read back.
#[derive(Debug, Clone)]
pub struct Tally {
    types: Vec<(String, ColumnType)>,
    rows: u64,
    fingerprint: u64,
    columns: Vec<ColumnTally>,
}

impl Tally {
    pub fn new(columns: &[Column]) -> Tally {
        let scale = |ty: &ColumnType| match ty {
            ColumnType::Decimal { scale, .. } => *scale,
            _ => 0,
        };
        Tally {
            types: columns.iter().map(|c| (c.name.clone(), c.ty.clone())).collect(),
            rows: 0,
            fingerprint: 0,
            columns: columns
                .iter()
                .map(|c| ColumnTally { non_null: 0, nulls: 0, min: None, max: None, sum: Some(0), scale: scale(&c.ty) })
                .collect(),
        }
    }

    /// Adds a row (its values in column order).
    pub fn add(&mut self, row: &[Value]) {
        self.rows += 1;
        self.fingerprint = self.fingerprint.wrapping_add(row_hash(row));
        for ((_, ty), (t, v)) in self.types.iter().zip(self.columns.iter_mut().zip(row)) {
            if matches!(v, Value::Null) {
                t.nulls += 1;
                continue;
            }
            t.non_null += 1;
            if ordered(ty) {
                if t.min.as_ref().is_none_or(|m| order(v, m) == Ordering::Less) {
                    t.min = Some(v.clone());
                }
                if t.max.as_ref().is_none_or(|m| order(v, m) == Ordering::Greater) {
                    t.max = Some(v.clone());
                }
            }
            if summed(ty) {
                let n = match v {
                    Value::Int(i) => *i as i128,
                    Value::Decimal { unscaled, .. } => *unscaled,
                    _ => 0,
                };
                t.sum = t.sum.and_then(|s| s.checked_add(n));
            }
        }
    }

    /// The rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(&self) -> Figures {
        let columns = self
            .types
            .iter()
            .zip(&self.columns)
            .map(|((name, ty), t)| ColumnFigures {
                column: name.clone(),
                non_null: t.non_null,
                nulls: t.nulls,
                min: t.min.as_ref().map(rendered),
                max: t.max.as_ref().map(rendered),
                sum: match (summed(ty) && t.non_null > 0, t.sum, ty) {
                    (true, Some(s), ColumnType::Decimal { .. }) => Some(canonical_value(&Value::Decimal { unscaled: s, scale: t.scale })),
                    (true, Some(s), _) => Some(s.to_string()),
                    _ => None,
                },
            })
            .collect();
        Figures { rows: self.rows, fingerprint: self.fingerprint, columns }
    }
}

/// A minimum or maximum as the SQL renders it: floats with -0 as 0 and one NaN.
fn rendered(v: &Value) -> String {
    match v {
        Value::Float32(f) if *f == 0.0 => canonical_value(&Value::Float32(0.0)),
        Value::Float32(f) if f.is_nan() => canonical_value(&Value::Float32(f32::NAN)),
        Value::Float64(f) if *f == 0.0 => canonical_value(&Value::Float64(0.0)),
        Value::Float64(f) if f.is_nan() => canonical_value(&Value::Float64(f64::NAN)),
        v => canonical_value(v),
    }
}

/// PostgreSQL's order for two non-null values of one column (NaN above everything).
fn order(a: &Value, b: &Value) -> Ordering {
    fn float(a: f64, b: f64) -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a.partial_cmp(&b).expect("neither is NaN"),
        }
    }
    match (a, b) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Float32(a), Value::Float32(b)) => float(*a as f64, *b as f64),
        (Value::Float64(a), Value::Float64(b)) => float(*a, *b),
        (Value::Decimal { unscaled: a, .. }, Value::Decimal { unscaled: b, .. }) => a.cmp(b),
        (Value::Date(a), Value::Date(b)) => a.cmp(b),
        (Value::Micros(a), Value::Micros(b)) => a.cmp(b),
        (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType) -> Column {
        Column { name: name.into(), pg_type: String::new(), ty, not_null: false }
    }

    #[test]
    fn floats_order_as_postgresql_does_and_a_negative_zero_is_zero() {
        let mut t = Tally::new(&[col("f", ColumnType::Float64)]);
        for f in [1.5, f64::NAN, f64::NEG_INFINITY, -0.0, f64::INFINITY] {
            t.add(&[Value::Float64(f)]);
        }
        t.add(&[Value::Null]);
        let f = t.finish();
        let c = &f.columns[0];
        assert_eq!((c.non_null, c.nulls), (5, 1));
        assert_eq!(c.min.as_deref(), Some("fff0000000000000"));
        assert_eq!(c.max.as_deref(), Some("7ff8000000000000"));
        let mut z = Tally::new(&[col("f", ColumnType::Float64)]);
        z.add(&[Value::Float64(-0.0)]);
        assert_eq!(z.finish().columns[0].min.as_deref(), Some("0000000000000000"));
    }

    #[test]
    fn decimal_sums_keep_their_scale_and_a_difference_is_named_by_column_and_aggregate() {
        let cols = [col("n", ColumnType::Decimal { precision: 12, scale: 2 }), col("i", ColumnType::Int32)];
        let mut t = Tally::new(&cols);
        t.add(&[Value::Decimal { unscaled: 1050, scale: 2 }, Value::Int(3)]);
        t.add(&[Value::Decimal { unscaled: -25, scale: 2 }, Value::Null]);
        let a = t.finish();
        assert_eq!((a.columns[0].sum.as_deref(), a.columns[1].sum.as_deref()), (Some("10.25"), Some("3")));
        let mut b = a.clone();
        b.columns[0].max = Some("10.51".into());
        let d = compare(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].column.as_deref(), d[0].aggregate), (Some("n"), Aggregate::Max));
        assert_eq!(d[0].to_string(), "column n: max 10.51 (the database has 10.50)");
    }
}
