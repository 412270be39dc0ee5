//! The tables an export names, read from the catalog: their columns, each column's exact
//! Parquet mapping ([`ColumnType`]) or why it has none ([`Refusal`]), and their primary keys.
//!
//! A domain is its base type (with the domain's own type modifier where the column has none),
//! an array is a list of its element type, an enum is its label. What has no exact mapping —
//! unconstrained `numeric`, `numeric` wider than 38 digits or with a scale Parquet cannot hold,
//! and every type not in the table of docs/tables.md — is refused, naming `schema.table.column`
//! and the type, unless the user chose a [`Cast`] for it (`text`: PostgreSQL's own text form).

use crate::{Result, TablesError};
use tokio_postgres::Client;
use tokio_postgres::types::Oid;

/// A table as `--table` names it: `schema.table`, or `table` in `public`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName> {
        let (schema, name) = text.split_once('.').unwrap_or(("public", text));
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return Err(TablesError::Catalog(format!("{text:?} is not a table name (schema.table, or table in public)")));
        }
        Ok(TableName { schema: schema.to_string(), name: name.to_string() })
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// How a column is written to Parquet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "of")]
pub enum ColumnType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(precision, scale)`, precision at most 38: a Parquet decimal.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `text`, `varchar`, `char`, `name`.
    Text,
    Bytes,
    Date,
    Timestamp,
    /// In UTC, microseconds.
    TimestampTz,
    Time,
    Interval,
    Uuid,
    Json,
    Jsonb,
    /// An enum's label.
    Enum,
    Inet,
    Cidr,
    MacAddr,
    MacAddr8,
    /// A one-dimensional array of the element type (a value of more dimensions is refused when
    /// it is met).
    List(Box<ColumnType>),
    /// Exported as PostgreSQL's text form of the value, by the user's `--cast`.
    CastText,
}

/// Why a column has no exact mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// `numeric` without a precision: any number of digits, which no Parquet decimal holds.
    UnconstrainedNumeric,
    /// A precision over 38 digits (the widest Parquet decimal ferry writes).
    NumericTooWide { precision: u32 },
    /// A negative scale, or one larger than the precision (PostgreSQL 15 allows both).
    NumericScale { precision: u32, scale: i32 },
    /// A type with no mapping (a geometric type, `money`, `xml`, a range, a composite, an
    /// extension's type, an array of arrays…).
    NoMapping,
}

/// A column refused at plan time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub table: TableName,
    pub column: String,
    /// The column's type as PostgreSQL writes it (`numeric(50,2)`, `point`, `my_domain`).
    pub pg_type: String,
    pub reason: RefusalReason,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match &self.reason {
            RefusalReason::UnconstrainedNumeric => "numeric without a precision has no exact Parquet type".to_string(),
            RefusalReason::NumericTooWide { precision } => format!("{precision} digits: Parquet decimals hold at most 38"),
            RefusalReason::NumericScale { precision, scale } => {
                format!("scale {scale} with precision {precision}: a Parquet decimal's scale is 0 to its precision")
            }
            RefusalReason::NoMapping => "no exact Parquet mapping".to_string(),
        };
        write!(
            f,
            "{}.{} {}: {why} (--cast {}.{}=text exports its text form)",
            self.table, self.column, self.pg_type, self.table, self.column
        )
    }
}

/// A mapping the user chose for a column (`--cast schema.table.column=text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cast {
    pub table: TableName,
    pub column: String,
}

impl Cast {
    /// `schema.table.column=text`, or `table.column=text` for a table in `public`.
    pub fn parse(text: &str) -> Result<Cast> {
        let bad = || TablesError::Catalog(format!("{text:?} is not a cast (schema.table.column=text)"));
        let (target, to) = text.split_once('=').ok_or_else(bad)?;
        if to != "text" {
            return Err(TablesError::Catalog(format!("{text:?}: a column can be cast to text only")));
        }
        let (table, column) = target.rsplit_once('.').ok_or_else(bad)?;
        if column.is_empty() {
            return Err(bad());
        }
        Ok(Cast { table: TableName::parse(table)?, column: column.to_string() })
    }
}

/// A column of an exported table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    pub pg_type: String,
    pub ty: ColumnType,
    pub not_null: bool,
}

/// A table to export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub name: TableName,
    pub columns: Vec<Column>,
    /// The primary key's columns in key order (empty: none).
    pub primary_key: Vec<String>,
    /// A partitioned table (read with its partitions); an ordinary one is read without the
    /// tables that inherit from it (`FROM ONLY`), which are tables of their own.
    #[serde(default)]
    pub partitioned: bool,
    /// The table's foreign keys, whichever table they reference (`verify --sample` checks those
    /// whose parent is exported too; the plan names the others).
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
}

/// A foreign key: `columns` of the table reference `parent_columns` of `parent`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForeignKey {
    /// The constraint's name.
    pub name: String,
    pub columns: Vec<String>,
    pub parent: TableName,
    pub parent_columns: Vec<String>,
    /// Whether PostgreSQL has checked every row against it (false for one added `NOT VALID`
    /// and not validated since: its existing rows may reference nothing).
    #[serde(default = "validated")]
    pub validated: bool,
}

fn validated() -> bool {
    true
}

/// The tables named by `tables` and every table of `schemas` (sorted, each once), their
/// columns mapped, with every column that cannot be mapped: the caller refuses the plan when
/// there is any. A table or cast that names nothing is an error.
pub async fn describe(client: &Client, tables: &[TableName], schemas: &[String], casts: &[Cast]) -> Result<(Vec<Table>, Vec<Refusal>)> {
    let mut names: Vec<TableName> = tables.to_vec();
    for schema in schemas {
        let found = tables_of(client, std::slice::from_ref(schema)).await?;
        if found.is_empty() {
            return Err(TablesError::Catalog(format!("schema {schema:?} has no tables (or does not exist)")));
        }
        names.extend(found);
    }
    names.sort();
    names.dedup();
    let (mut out, mut refusals) = (Vec::new(), Vec::new());
    for name in names {
        let table = describe_table(client, &name, casts, &mut refusals).await?;
        out.push(table);
    }
    for cast in casts {
        let named = out.iter().any(|t| t.name == cast.table && t.columns.iter().any(|c| c.name == cast.column));
        if !named {
            return Err(TablesError::Catalog(format!("--cast {}.{}: no such column among the exported tables", cast.table, cast.column)));
        }
    }
    Ok((out, refusals))
}

async fn query(
    client: &Client,
    what: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>> {
    client.query(sql, params).await.map_err(|source| TablesError::Query { what: what.to_string(), source })
}

async fn describe_table(client: &Client, name: &TableName, casts: &[Cast], refusals: &mut Vec<Refusal>) -> Result<Table> {
    let rel = query(
        client,
        "find the table",
        "SELECT c.oid, c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        &[&name.schema, &name.name],
    )
    .await?;
    let Some(rel) = rel.first() else {
        return Err(TablesError::Catalog(format!("no table {name}")));
    };
    let oid: Oid = rel.get(0);
    let partitioned: bool = rel.get(1);
    let rows = query(
        client,
        "read the table's columns",
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atttypid, a.atttypmod
         FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[&oid],
    )
    .await?;
    let mut columns = Vec::new();
    for r in rows {
        let (column, pg_type, not_null): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
        let cast = casts.iter().any(|c| &c.table == name && c.column == column);
        let ty = if cast { Ok(ColumnType::CastText) } else { resolve(client, r.get(3), r.get(4)).await? };
        match ty {
            Ok(ty) => columns.push(Column { name: column, pg_type, ty, not_null }),
            Err(reason) => refusals.push(Refusal { table: name.clone(), column, pg_type, reason }),
        }
    }
    let key = query(
        client,
        "read the table's primary key",
        "SELECT a.attname::text FROM pg_index i
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.n",
        &[&oid],
    )
    .await?;
    let foreign = query(
        client,
        "read the table's foreign keys",
        "SELECT con.conname::text, pn.nspname::text, pc.relname::text,
           array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.n),
           array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.n),
           con.convalidated
         FROM pg_constraint con JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE con.conrelid = $1 AND con.contype = 'f'
           AND (con.conparentid = 0 OR (SELECT p.conrelid FROM pg_constraint p WHERE p.oid = con.conparentid) <> con.conrelid)
         ORDER BY 1",
        &[&oid],
    )
    .await?;
    let foreign_keys = foreign
        .iter()
        .map(|r| ForeignKey {
            name: r.get(0),
            parent: TableName { schema: r.get(1), name: r.get(2) },
            columns: r.get(3),
            parent_columns: r.get(4),
            validated: r.get(5),
        })
        .collect();
    Ok(Table { name: name.clone(), columns, primary_key: key.iter().map(|r| r.get(0)).collect(), partitioned, foreign_keys })
}

/// One `pg_type` row, as far as the mapping asks.
struct PgType {
    name: String,
    namespace: String,
    kind: String,
    category: String,
    base: Oid,
    base_typmod: i32,
    element: Oid,
}

async fn lookup(client: &Client, oid: Oid) -> Result<PgType> {
    let rows = query(
        client,
        "read a column's type",
        "SELECT t.typname::text, n.nspname::text, t.typtype::text, t.typcategory::text, t.typbasetype, t.typtypmod, t.typelem
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1",
        &[&oid],
    )
    .await?;
    let r = rows.first().ok_or_else(|| TablesError::Catalog(format!("type {oid} is not in pg_type")))?;
    Ok(PgType {
        name: r.get(0),
        namespace: r.get(1),
        kind: r.get(2),
        category: r.get(3),
        base: r.get(4),
        base_typmod: r.get(5),
        element: r.get(6),
    })
}

/// The mapping of type `oid` with modifier `typmod`: domains unwrapped to their base, one
/// level of array to a list.
async fn resolve(client: &Client, mut oid: Oid, mut typmod: i32) -> Result<Result<ColumnType, RefusalReason>> {
    let mut list = false;
    for _ in 0..64 {
        let t = lookup(client, oid).await?;
        if t.kind == "d" {
            if typmod == -1 {
                typmod = t.base_typmod;
            }
            oid = t.base;
            continue;
        }
        if t.category == "A" {
            if list {
                return Ok(Err(RefusalReason::NoMapping));
            }
            list = true;
            oid = t.element;
            continue;
        }
        return Ok(scalar(&t, typmod).map(|ty| if list { ColumnType::List(Box::new(ty)) } else { ty }));
    }
    Err(TablesError::Catalog(format!("type {oid}: domains nested deeper than 64")))
}

fn scalar(t: &PgType, typmod: i32) -> Result<ColumnType, RefusalReason> {
    if t.kind == "e" {
        return Ok(ColumnType::Enum);
    }
    if t.namespace != "pg_catalog" || t.kind != "b" {
        return Err(RefusalReason::NoMapping);
    }
    Ok(match t.name.as_str() {
        "bool" => ColumnType::Bool,
        "int2" => ColumnType::Int16,
        "int4" => ColumnType::Int32,
        "int8" => ColumnType::Int64,
        "float4" => ColumnType::Float32,
        "float8" => ColumnType::Float64,
        "numeric" => return numeric(typmod),
        "text" | "varchar" | "bpchar" | "name" => ColumnType::Text,
        "bytea" => ColumnType::Bytes,
        "date" => ColumnType::Date,
        "timestamp" => ColumnType::Timestamp,
        "timestamptz" => ColumnType::TimestampTz,
        "time" => ColumnType::Time,
        "interval" => ColumnType::Interval,
        "uuid" => ColumnType::Uuid,
        "json" => ColumnType::Json,
        "jsonb" => ColumnType::Jsonb,
        "inet" => ColumnType::Inet,
        "cidr" => ColumnType::Cidr,
        "macaddr" => ColumnType::MacAddr,
        "macaddr8" => ColumnType::MacAddr8,
        _ => return Err(RefusalReason::NoMapping),
    })
}

/// `numeric(p, s)` from its type modifier (PostgreSQL's encoding: `((p << 16) | s) + 4`, the
/// scale an 11-bit signed number since PostgreSQL 15).
fn numeric(typmod: i32) -> Result<ColumnType, RefusalReason> {
    if typmod < 4 {
        return Err(RefusalReason::UnconstrainedNumeric);
    }
    let m = typmod - 4;
    let precision = ((m >> 16) & 0xffff) as u32;
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    if precision > 38 {
        return Err(RefusalReason::NumericTooWide { precision });
    }
    if scale < 0 || scale as u32 > precision {
        return Err(RefusalReason::NumericScale { precision, scale });
    }
    Ok(ColumnType::Decimal { precision: precision as u8, scale: scale as u8 })
}

/// The leaf partitions of partitioned table `table` (`schema.name#oid` each, sorted); none for
/// an ordinary table. A partition attached (or swapped in under the same name) since an
/// incremental export holds rows no delta sees.
pub async fn partitions(client: &Client, table: &Table) -> Result<Vec<String>> {
    if !table.partitioned {
        return Ok(Vec::new());
    }
    let rows = query(
        client,
        "list the table's partitions",
        "SELECT n.nspname::text || '.' || c.relname::text || '#' || c.oid::text FROM pg_partition_tree((SELECT c.oid FROM pg_class c JOIN pg_namespace n
           ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)) p
         JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.isleaf ORDER BY 1",
        &[&table.name.schema, &table.name.name],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What identifies `table` beyond its name: its oid and its columns' numbers (`attnum`). A table
/// swapped in under the same name, or a column dropped and added again, keeps the name and the
/// shape but not these, and its rows keep their `xmin`: an incremental delta would not see them.
pub async fn identity(client: &Client, table: &Table) -> Result<(u32, Vec<i16>)> {
    let rows = query(
        client,
        "read the table's identity",
        "SELECT c.oid, array(SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        &[&table.name.schema, &table.name.name],
    )
    .await?;
    let row = rows.first().ok_or_else(|| TablesError::Catalog(format!("no table {}", table.name)))?;
    let oid: Oid = row.get(0);
    Ok((oid, row.get(1)))
}

/// The tables of `schemas` now (sorted), to tell those created since an export.
pub async fn tables_of(client: &Client, schemas: &[String]) -> Result<Vec<TableName>> {
    let mut out = Vec::new();
    for schema in schemas {
        let rows = query(
            client,
            "list the schema's tables",
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
            &[schema],
        )
        .await?;
        out.extend(rows.iter().map(|r| TableName { schema: schema.clone(), name: r.get(0) }));
    }
    out.sort();
    Ok(out)
}

/// The prepared transactions of the database (`PREPARE TRANSACTION`, not yet committed or rolled
/// back): writes that are durable but not visible yet.
pub async fn prepared_transactions(client: &Client) -> Result<Vec<String>> {
    let rows = query(
        client,
        "list the prepared transactions",
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() ORDER BY 1",
        &[],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers_decode_as_postgresql_encodes_them() {
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(numeric(typmod(12, 2)), Ok(ColumnType::Decimal { precision: 12, scale: 2 }));
        assert_eq!(numeric(typmod(38, 38)), Ok(ColumnType::Decimal { precision: 38, scale: 38 }));
        assert_eq!(numeric(-1), Err(RefusalReason::UnconstrainedNumeric));
        assert_eq!(numeric(typmod(39, 0)), Err(RefusalReason::NumericTooWide { precision: 39 }));
        assert_eq!(numeric(typmod(5, -2)), Err(RefusalReason::NumericScale { precision: 5, scale: -2 }));
        assert_eq!(numeric(typmod(2, 5)), Err(RefusalReason::NumericScale { precision: 2, scale: 5 }));
    }

    #[test]
    fn names_and_casts_parse_or_say_what_they_should_be() {
        assert_eq!(TableName::parse("orders").unwrap(), TableName { schema: "public".into(), name: "orders".into() });
        assert_eq!(TableName::parse("shop.orders").unwrap().to_string(), "shop.orders");
        assert!(TableName::parse("a.b.c").is_err() && TableName::parse(".x").is_err());
        let cast = Cast::parse("shop.orders.total=text").unwrap();
        assert_eq!((cast.table.to_string(), cast.column.as_str()), ("shop.orders".into(), "total"));
        assert_eq!(Cast::parse("orders.total=text").unwrap().table.schema, "public");
        assert!(Cast::parse("shop.orders.total=float8").unwrap_err().to_string().contains("text only"));
        assert!(Cast::parse("total=text").is_err());
    }
}
