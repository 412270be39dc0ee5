//! One range of a table into one Parquet file: `COPY (SELECT …) TO STDOUT (FORMAT binary)`
//! streamed, each tuple decoded exactly ([`crate::fingerprint::decode`]), written in batches
//! and tallied ([`crate::figures::Tally`]) on the way; then the database's own figures for the
//! same rows, in SQL over the same snapshot ([`database_figures`]).

use crate::TablesError;
use crate::figures::{Figures, Tally};
use crate::files::{Compression, FileError, ParquetSink};
use crate::fingerprint::{DecodeError, decode, from_clause, select_list};
use crate::schema::{Table, TableName};
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use std::path::Path;
use tokio_postgres::Client;

/// Why a range was not exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Tables(#[from] TablesError),
    #[error(transparent)]
    File(#[from] FileError),
    /// A value with no exact Parquet form (a numeric NaN, an infinite date, an array of two
    /// dimensions…), named by table, column and row.
    #[error("{table}.{column}, row {row} of its range: {error}")]
    Value { table: TableName, column: String, row: u64, error: DecodeError },
    #[error("{table}: the binary COPY stream is malformed: {reason}")]
    Wire { table: TableName, reason: String },
}

/// The file's layout: compression and row group size.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    pub compression: Compression,
    pub row_group_bytes: usize,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Exports the rows of `table` that `predicate` keeps into a Parquet file at `path`, through
/// `client` (in the export's snapshot), and returns the figures of what was written.
pub async fn export_range(
    client: &Client,
    table: &Table,
    predicate: &str,
    path: &Path,
    options: FileOptions,
) -> Result<Figures, ExportError> {
    let sql =
        format!("COPY (SELECT {} FROM {} WHERE {predicate}) TO STDOUT (FORMAT binary)", select_list(&table.columns), from_clause(table));
    let query = |source| TablesError::Query { what: format!("export {}", table.name), source };
    let stream = client.copy_out(sql.as_str()).await.map_err(query)?;
    let mut stream = std::pin::pin!(stream);
    let mut sink = ParquetSink::create(path, &table.columns, options.compression, options.row_group_bytes)?;
    let mut tally = Tally::new(&table.columns);
    let mut buf = BytesMut::new();
    let mut header = false;
    let mut ended = false;
    let wire = |reason: &str| ExportError::Wire { table: table.name.clone(), reason: reason.to_string() };
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(query)?);
        if !header {
            if buf.len() < SIGNATURE.len() + 8 {
                continue;
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(wire("no PGCOPY signature"));
            }
            let ext = u32::from_be_bytes(buf[SIGNATURE.len() + 4..SIGNATURE.len() + 8].try_into().expect("4 bytes")) as usize;
            if buf.len() < SIGNATURE.len() + 8 + ext {
                continue;
            }
            buf.advance(SIGNATURE.len() + 8 + ext);
            header = true;
        }
        while let Some(tuple) = take_tuple(&mut buf, table.columns.len()).map_err(|r| wire(&r))? {
            let Some(tuple) = tuple else {
                ended = true;
                break;
            };
            let mut values = Vec::with_capacity(table.columns.len());
            for (c, raw) in table.columns.iter().zip(fields(&tuple)) {
                let v = decode(&c.ty, raw).map_err(|error| ExportError::Value {
                    table: table.name.clone(),
                    column: c.name.clone(),
                    row: tally.rows() + 1,
                    error,
                })?;
                values.push(v);
            }
            tally.add(&values);
            sink.push(values)?;
        }
    }
    if !ended {
        return Err(wire("the stream ended without its trailer"));
    }
    sink.finish()?;
    Ok(tally.finish())
}

/// One whole tuple off the front of `buf` (its fields, read by [`fields`], without copying
/// them): `Ok(None)` when more bytes are needed, `Some(None)` at the trailer.
fn take_tuple(buf: &mut BytesMut, columns: usize) -> Result<Option<Option<bytes::Bytes>>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let n = i16::from_be_bytes([buf[0], buf[1]]);
    if n == -1 {
        buf.advance(2);
        return Ok(Some(None));
    }
    if n as usize != columns {
        return Err(format!("a tuple of {n} fields, the query selects {columns}"));
    }
    // Check the whole tuple is here before taking anything.
    let mut at = 2;
    for _ in 0..columns {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        at += 4;
        if len > 0 {
            at += len as usize;
        }
    }
    if buf.len() < at {
        return Ok(None);
    }
    let mut tuple = buf.split_to(at);
    tuple.advance(2);
    Ok(Some(Some(tuple.freeze())))
}

/// The fields of a tuple [`take_tuple`] took: each its bytes, or `None` for NULL.
fn fields(tuple: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut rest = tuple;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        rest = &rest[4..];
        if len < 0 {
            return Some(None);
        }
        let (field, after) = rest.split_at(len as usize);
        rest = after;
        Some(Some(field))
    })
}

/// PostgreSQL's figures for the rows of `table` that `predicate` keeps, in SQL over the
/// snapshot `client` is in.
pub async fn database_figures(client: &Client, table: &Table, predicate: &str) -> Result<Figures, TablesError> {
    let sql = crate::figures::sql(table, predicate);
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|source| TablesError::Query { what: format!("the figures of {}", table.name), source })?;
    Ok(crate::figures::from_row(&table.columns, &row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_is_taken_only_once_all_of_it_arrived() {
        let mut whole = BytesMut::new();
        whole.extend_from_slice(&2i16.to_be_bytes());
        whole.extend_from_slice(&3i32.to_be_bytes());
        whole.extend_from_slice(b"abc");
        whole.extend_from_slice(&(-1i32).to_be_bytes());
        whole.extend_from_slice(&(-1i16).to_be_bytes());
        let mut part = BytesMut::from(&whole[..7]);
        assert_eq!(take_tuple(&mut part, 2), Ok(None));
        assert_eq!(part.len(), 7, "nothing taken");
        let tuple = take_tuple(&mut whole, 2).unwrap().unwrap().unwrap();
        assert_eq!(fields(&tuple).collect::<Vec<_>>(), [Some(&b"abc"[..]), None]);
        assert_eq!(take_tuple(&mut whole, 2), Ok(Some(None)));
        let mut bad = BytesMut::from(&3i16.to_be_bytes()[..]);
        assert!(take_tuple(&mut bad, 2).is_err());
    }
}
