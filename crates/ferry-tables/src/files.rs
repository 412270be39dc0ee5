//! The Parquet files of an export: each column's Arrow type, the writer that turns rows into
//! row groups sized by bytes, and the reader `verify` uses to turn a file back into rows.
//!
//! | PostgreSQL | Parquet (Arrow) |
//! |---|---|
//! | boolean | BOOLEAN |
//! | smallint, integer, bigint | INT16, INT32, INT64 |
//! | real, double precision | FLOAT, DOUBLE (NaN and ±Infinity kept) |
//! | numeric(p,s), p ≤ 38 | DECIMAL(p,s) |
//! | text, varchar, char, name, enums, json, jsonb, inet, cidr, macaddr, uuid, casts | STRING (UTF-8) |
//! | bytea | BINARY |
//! | date | DATE |
//! | timestamp | TIMESTAMP(MICROS, not adjusted to UTC) |
//! | timestamptz | TIMESTAMP(MICROS, UTC) |
//! | time | TIME(MICROS) |
//! | interval | a struct of `months` INT32, `days` INT32, `microseconds` INT64 (PostgreSQL's own three fields) |
//! | one-dimensional arrays | LIST of the element's type, elements nullable |

use crate::fingerprint::{Value, uuid_text};
use crate::schema::{Column, ColumnType};
use arrow_array::builder::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

impl Compression {
    fn parquet(self) -> ParquetCompression {
        match self {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        }
    }
}

/// What went wrong writing or reading a file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: arrow_schema::ArrowError },
    #[error("{path}: column {column} is {found}, the export wrote {expected}")]
    Shape { path: PathBuf, column: String, expected: String, found: String },
}

/// A column's Arrow type.
pub fn arrow_type(ty: &ColumnType) -> DataType {
    use ColumnType as T;
    match ty {
        T::Bool => DataType::Boolean,
        T::Int16 => DataType::Int16,
        T::Int32 => DataType::Int32,
        T::Int64 => DataType::Int64,
        T::Float32 => DataType::Float32,
        T::Float64 => DataType::Float64,
        T::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale as i8),
        T::Bytes => DataType::Binary,
        T::Date => DataType::Date32,
        T::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        T::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        T::Time => DataType::Time64(TimeUnit::Microsecond),
        T::Interval => DataType::Struct(interval_fields()),
        T::List(inner) => DataType::List(Arc::new(Field::new("element", arrow_type(inner), true))),
        T::Text | T::Uuid | T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => DataType::Utf8,
    }
}

fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("microseconds", DataType::Int64, false),
    ])
}

/// The file's schema: one field per column, nullable unless the column is `NOT NULL`.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, arrow_type(&c.ty), !c.not_null)).collect::<Vec<_>>()))
}

/// The Arrow array of one column's values (all of type `ty`, or NULL).
fn array_of(ty: &ColumnType, values: &[Value]) -> ArrayRef {
    use ColumnType as T;
    macro_rules! prim {
        ($builder:ty, $pat:pat => $v:expr) => {{
            let mut b = <$builder>::with_capacity(values.len());
            for v in values {
                match v {
                    $pat => b.append_value($v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        T::Bool => prim!(BooleanBuilder, Value::Bool(x) => *x),
        T::Int16 => prim!(Int16Builder, Value::Int(x) => *x as i16),
        T::Int32 => prim!(Int32Builder, Value::Int(x) => *x as i32),
        T::Int64 => prim!(Int64Builder, Value::Int(x) => *x),
        T::Float32 => prim!(Float32Builder, Value::Float32(x) => *x),
        T::Float64 => prim!(Float64Builder, Value::Float64(x) => *x),
        T::Decimal { precision, scale } => {
            let mut b = Decimal128Builder::with_capacity(values.len()).with_precision_and_scale(*precision, *scale as i8).expect("p <= 38");
            for v in values {
                match v {
                    Value::Decimal { unscaled, .. } => b.append_value(*unscaled),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        T::Bytes => {
            let mut b = BinaryBuilder::with_capacity(values.len(), values.len() * 16);
            for v in values {
                match v {
                    Value::Bytes(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        T::Date => prim!(Date32Builder, Value::Date(x) => *x),
        T::Timestamp => prim!(TimestampMicrosecondBuilder, Value::Micros(x) => *x),
        T::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(values.len()).with_timezone("UTC");
            for v in values {
                match v {
                    Value::Micros(x) => b.append_value(*x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        T::Time => prim!(Time64MicrosecondBuilder, Value::Micros(x) => *x),
        T::Interval => {
            let (mut months, mut days, mut micros) = (Int32Builder::new(), Int32Builder::new(), Int64Builder::new());
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                let (m, d, us) = match v {
                    Value::Interval { months, days, micros } => (*months, *days, *micros),
                    _ => (0, 0, 0),
                };
                months.append_value(m);
                days.append_value(d);
                micros.append_value(us);
                valid.push(!matches!(v, Value::Null));
            }
            let arrays: Vec<ArrayRef> = vec![Arc::new(months.finish()), Arc::new(days.finish()), Arc::new(micros.finish())];
            Arc::new(arrow_array::StructArray::new(interval_fields(), arrays, Some(arrow_buffer::NullBuffer::from(valid))))
        }
        T::List(inner) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut valid = Vec::with_capacity(values.len());
            let mut flat = Vec::new();
            offsets.push(0i32);
            for v in values {
                if let Value::List(items) = v {
                    flat.extend(items.iter().cloned());
                }
                valid.push(!matches!(v, Value::Null));
                offsets.push(flat.len() as i32);
            }
            let field = Arc::new(Field::new("element", arrow_type(inner), true));
            Arc::new(arrow_array::ListArray::new(
                field,
                arrow_buffer::OffsetBuffer::new(offsets.into()),
                array_of(inner, &flat),
                Some(arrow_buffer::NullBuffer::from(valid)),
            ))
        }
        T::Text | T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText | T::Uuid => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 16);
            for v in values {
                match v {
                    Value::Text(x) => b.append_value(x),
                    Value::Uuid(u) => b.append_value(uuid_text(u)),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// Rows per record batch handed to the writer.
pub const BATCH_ROWS: usize = 8192;

/// Writes rows into one Parquet file, a row group each time the one being built reaches
/// `row_group_bytes` (memory is about one row group plus one batch).
pub struct ParquetSink {
    path: PathBuf,
    types: Vec<ColumnType>,
    schema: SchemaRef,
    columns: Vec<Vec<Value>>,
    writer: ArrowWriter<std::fs::File>,
    row_group_bytes: usize,
}

impl ParquetSink {
    pub fn create(path: &Path, columns: &[Column], compression: Compression, row_group_bytes: usize) -> Result<ParquetSink, FileError> {
        let file = std::fs::File::create(path).map_err(|source| FileError::Io { path: path.to_path_buf(), source })?;
        let schema = arrow_schema(columns);
        let props = WriterProperties::builder().set_compression(compression.parquet()).set_max_row_group_row_count(None).build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|source| FileError::Parquet { path: path.to_path_buf(), source })?;
        Ok(ParquetSink {
            path: path.to_path_buf(),
            types: columns.iter().map(|c| c.ty.clone()).collect(),
            schema,
            columns: columns.iter().map(|_| Vec::with_capacity(BATCH_ROWS)).collect(),
            writer,
            row_group_bytes,
        })
    }

    /// Adds a row (its values in column order).
    pub fn push(&mut self, row: Vec<Value>) -> Result<(), FileError> {
        for (column, v) in self.columns.iter_mut().zip(row) {
            column.push(v);
        }
        if self.columns.first().is_some_and(|c| c.len() >= BATCH_ROWS) {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), FileError> {
        let Some(rows) = self.columns.first().map(Vec::len) else { return Ok(()) };
        if rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.types.iter().zip(&self.columns).map(|(ty, v)| array_of(ty, v)).collect();
        self.columns.iter_mut().for_each(Vec::clear);
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).map_err(|source| FileError::Arrow { path: self.path.clone(), source })?;
        let parquet = |source| FileError::Parquet { path: self.path.clone(), source };
        self.writer.write(&batch).map_err(parquet)?;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush().map_err(|source| FileError::Parquet { path: self.path.clone(), source })?;
        }
        Ok(())
    }

    /// Writes what is left and the footer, and syncs the file.
    pub fn finish(mut self) -> Result<(), FileError> {
        self.write_batch()?;
        let file = self.writer.into_inner().map_err(|source| FileError::Parquet { path: self.path.clone(), source })?;
        file.sync_all().map_err(|source| FileError::Io { path: self.path.clone(), source })
    }
}

/// Reads a file back as rows, calling `f` with each row's values in column order; the file's
/// columns must be `columns` (names and Arrow types).
pub fn read_rows(path: &Path, columns: &[Column], mut f: impl FnMut(&[Value])) -> Result<(), FileError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|source| FileError::Io { path: path.to_path_buf(), source })?;
    let parquet = |source| FileError::Parquet { path: path.to_path_buf(), source };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?.with_batch_size(BATCH_ROWS);
    let schema = builder.schema().clone();
    let expected = arrow_schema(columns);
    let fields = |s: &Schema| s.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ");
    if schema.fields().len() != expected.fields().len()
        || schema.fields().iter().zip(expected.fields()).any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
    {
        return Err(FileError::Shape { path: path.to_path_buf(), column: "*".into(), expected: fields(&expected), found: fields(&schema) });
    }
    let reader = builder.build().map_err(parquet)?;
    let mut row = Vec::with_capacity(columns.len());
    for batch in reader {
        let batch = batch.map_err(|source| FileError::Arrow { path: path.to_path_buf(), source })?;
        for i in 0..batch.num_rows() {
            row.clear();
            for (c, array) in columns.iter().zip(batch.columns()) {
                row.push(value_at(&c.ty, array.as_ref(), i));
            }
            f(&row);
        }
    }
    Ok(())
}

/// Row `i` of `array` (of column type `ty`) as a value.
fn value_at(ty: &ColumnType, array: &dyn Array, i: usize) -> Value {
    use ColumnType as T;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(i) {
        return Value::Null;
    }
    match ty {
        T::Bool => Value::Bool(array.as_boolean().value(i)),
        T::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(i) as i64),
        T::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(i) as i64),
        T::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(i)),
        T::Float32 => Value::Float32(array.as_primitive::<Float32Type>().value(i)),
        T::Float64 => Value::Float64(array.as_primitive::<Float64Type>().value(i)),
        T::Decimal { scale, .. } => Value::Decimal { unscaled: array.as_primitive::<Decimal128Type>().value(i), scale: *scale },
        T::Bytes => Value::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        T::Date => Value::Date(array.as_primitive::<Date32Type>().value(i)),
        T::Timestamp | T::TimestampTz => Value::Micros(array.as_primitive::<TimestampMicrosecondType>().value(i)),
        T::Time => Value::Micros(array.as_primitive::<Time64MicrosecondType>().value(i)),
        T::Interval => {
            let s = array.as_struct();
            Value::Interval {
                months: s.column(0).as_primitive::<Int32Type>().value(i),
                days: s.column(1).as_primitive::<Int32Type>().value(i),
                micros: s.column(2).as_primitive::<Int64Type>().value(i),
            }
        }
        T::List(inner) => {
            let items = array.as_list::<i32>().value(i);
            Value::List((0..items.len()).map(|j| value_at(inner, items.as_ref(), j)).collect())
        }
        T::Text | T::Uuid | T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => {
            Value::Text(array.as_string::<i32>().value(i).to_string())
        }
    }
}
