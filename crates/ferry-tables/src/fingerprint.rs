//! The order-independent row fingerprint `verify` compares: the same number computed by
//! PostgreSQL in SQL over the snapshot and by ferry over the values it exported.
//!
//! Canonical form of a row: its fields in column order, joined by `,`; a field is `-` when NULL,
//! else `<bytes>:<text>` (the text's length in bytes, so no value can forge a separator), the
//! text being:
//!
//! | type | text |
//! |---|---|
//! | boolean | `t` or `f` |
//! | integers | decimal |
//! | real, double | the IEEE 754 bits, big-endian, lower-case hex (`float4send`/`float8send`) |
//! | numeric(p,s) | decimal with exactly s fraction digits, `-` for negatives |
//! | date | days since 1970-01-01, decimal |
//! | timestamp, timestamptz, time | microseconds since 1970-01-01 00:00 (UTC) or midnight, decimal |
//! | interval | `interval_send`'s 16 bytes in hex (microseconds, days, months, big-endian) |
//! | bytea | lower-case hex |
//! | uuid | lower-case, hyphenated |
//! | everything else (text, enums, json, jsonb, inet, cidr, macaddr, casts) | PostgreSQL's text form |
//!
//! A row's hash is the first 8 bytes of the MD5 of its canonical form, big-endian; the
//! fingerprint is the sum of the rows' hashes modulo 2^64, so row order does not matter and a
//! changed, dropped or added row changes it.

use crate::schema::{Column, ColumnType, TableName};

/// One field's value as exported (the wire's binary form, decoded by [`decode`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float32(f32),
    Float64(f64),
    /// `unscaled / 10^scale`.
    Decimal {
        unscaled: i128,
        scale: u8,
    },
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 00:00 (a timestamp, or a timestamptz in UTC), or since
    /// midnight (a time).
    Micros(i64),
    Interval {
        micros: i64,
        days: i32,
        months: i32,
    },
    Uuid([u8; 16]),
    /// A one-dimensional array's elements (an empty array has none).
    List(Vec<Value>),
}

/// Why a value could not be decoded exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a {what} of {len} bytes")]
    Length { what: &'static str, len: usize },
    #[error("NaN or an infinity, which a Parquet decimal cannot hold")]
    NumericSpecial,
    #[error("a number that does not fit numeric({precision},{scale})")]
    NumericRange { precision: u8, scale: u8 },
    #[error("infinity, which a Parquet date or timestamp cannot hold")]
    Infinite,
    /// A finite timestamp within about 30 years of PostgreSQL's last (294276 AD): counted from
    /// 1970 in microseconds it is past what 64 bits hold.
    #[error("a timestamp past what a Parquet timestamp (64-bit microseconds since 1970) holds")]
    TimestampRange,
    #[error("text that is not UTF-8")]
    NotUtf8,
    #[error("an array of {0} dimensions (ferry exports one-dimensional arrays)")]
    Dimensions(i32),
    #[error("an array whose first index is {0} (a Parquet list starts at 1)")]
    LowerBound(i32),
    #[error("an array of element type {0}, not the column's")]
    ElementType(u32),
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

/// Decodes a field of column type `ty` from PostgreSQL's binary form, as the export's query
/// selects it ([`select_list`]: text-like types arrive as text).
pub fn decode(ty: &ColumnType, raw: Option<&[u8]>) -> Result<Value, DecodeError> {
    use ColumnType as T;
    let Some(b) = raw else { return Ok(Value::Null) };
    let fixed = |what: &'static str, n: usize| if b.len() == n { Ok(()) } else { Err(DecodeError::Length { what, len: b.len() }) };
    Ok(match ty {
        T::Bool => {
            fixed("boolean", 1)?;
            Value::Bool(b[0] != 0)
        }
        T::Int16 => {
            fixed("smallint", 2)?;
            Value::Int(i16::from_be_bytes([b[0], b[1]]) as i64)
        }
        T::Int32 => {
            fixed("integer", 4)?;
            Value::Int(i32::from_be_bytes(b.try_into().expect("4 bytes")) as i64)
        }
        T::Int64 => {
            fixed("bigint", 8)?;
            Value::Int(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        T::Float32 => {
            fixed("real", 4)?;
            Value::Float32(f32::from_be_bytes(b.try_into().expect("4 bytes")))
        }
        T::Float64 => {
            fixed("double", 8)?;
            Value::Float64(f64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        T::Decimal { precision, scale } => decimal(b, *precision, *scale)?,
        T::Bytes => Value::Bytes(b.to_vec()),
        T::Date => {
            fixed("date", 4)?;
            let days = i32::from_be_bytes(b.try_into().expect("4 bytes"));
            if days == i32::MAX || days == i32::MIN {
                return Err(DecodeError::Infinite);
            }
            Value::Date(days.checked_add(PG_EPOCH_DAYS).ok_or(DecodeError::TimestampRange)?)
        }
        T::Timestamp | T::TimestampTz => {
            fixed("timestamp", 8)?;
            let micros = i64::from_be_bytes(b.try_into().expect("8 bytes"));
            if micros == i64::MAX || micros == i64::MIN {
                return Err(DecodeError::Infinite);
            }
            Value::Micros(micros.checked_add(PG_EPOCH_MICROS).ok_or(DecodeError::TimestampRange)?)
        }
        T::Time => {
            fixed("time", 8)?;
            Value::Micros(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }
        T::Interval => {
            fixed("interval", 16)?;
            Value::Interval {
                micros: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
                days: i32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
                months: i32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
            }
        }
        T::Uuid => {
            fixed("uuid", 16)?;
            Value::Uuid(b.try_into().expect("16 bytes"))
        }
        T::Text | T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => {
            Value::Text(String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8)?)
        }
        T::List(inner) => list(inner, b)?,
    })
}

/// A binary array (dimensions, a has-nulls flag, the element type's oid, each dimension's
/// length and lower bound, then each element as a length and its bytes) as a list, when it has
/// at most one dimension starting at 1.
fn list(inner: &ColumnType, b: &[u8]) -> Result<Value, DecodeError> {
    let short = || DecodeError::Length { what: "array", len: b.len() };
    let int = |at: usize| b.get(at..at + 4).map(|w| i32::from_be_bytes(w.try_into().expect("4 bytes"))).ok_or_else(short);
    let dims = int(0)?;
    match dims {
        0 => return Ok(Value::List(Vec::new())),
        1 => {}
        n => return Err(DecodeError::Dimensions(n)),
    }
    let (len, lower) = (int(12)?, int(16)?);
    if lower != 1 {
        return Err(DecodeError::LowerBound(lower));
    }
    let mut at = 20;
    let mut items = Vec::with_capacity(len.clamp(0, 1 << 16) as usize);
    for _ in 0..len.max(0) {
        let n = int(at)?;
        at += 4;
        if n < 0 {
            items.push(Value::Null);
            continue;
        }
        let raw = b.get(at..at + n as usize).ok_or_else(short)?;
        at += n as usize;
        items.push(decode(inner, Some(raw))?);
    }
    if at != b.len() {
        return Err(short());
    }
    Ok(Value::List(items))
}

/// A binary `numeric` (digit count, weight, sign, display scale, then base-10000 digits) as an
/// unscaled integer at `scale`, checked against `precision`.
fn decimal(b: &[u8], precision: u8, scale: u8) -> Result<Value, DecodeError> {
    if b.len() < 8 {
        return Err(DecodeError::Length { what: "numeric", len: b.len() });
    }
    let word = |i: usize| i16::from_be_bytes([b[2 * i], b[2 * i + 1]]);
    let (ndigits, weight, sign) = (word(0) as usize, word(1) as i32, word(2) as u16);
    if b.len() != 8 + 2 * ndigits {
        return Err(DecodeError::Length { what: "numeric", len: b.len() });
    }
    if sign != 0x0000 && sign != 0x4000 {
        return Err(DecodeError::NumericSpecial);
    }
    let range = DecodeError::NumericRange { precision, scale };
    let mut unscaled: i128 = 0;
    for i in 0..ndigits {
        let digit = word(4 + i) as i128;
        // This digit's power of ten in the unscaled integer.
        let power = (weight - i as i32) * 4 + scale as i32;
        if power >= 0 {
            let term = 10i128.checked_pow(power as u32).and_then(|p| p.checked_mul(digit)).ok_or(range.clone())?;
            unscaled = unscaled.checked_add(term).ok_or(range.clone())?;
        } else if digit != 0 {
            let div = 10i128.pow((-power).min(38) as u32);
            if digit % div != 0 {
                return Err(range);
            }
            unscaled += digit / div;
        }
    }
    if unscaled >= 10i128.pow(precision as u32) {
        return Err(range);
    }
    Ok(Value::Decimal { unscaled: if sign == 0x4000 { -unscaled } else { unscaled }, scale })
}

/// A value's canonical text (see the module docs); empty for NULL.
pub fn canonical_value(v: &Value) -> String {
    canonical(v).unwrap_or_default()
}

/// A field's canonical text (see the module docs); `None` for NULL.
pub fn canonical_field(v: &Value) -> Option<String> {
    canonical(v)
}

fn canonical(v: &Value) -> Option<String> {
    let mut out = String::new();
    canonical_into(v, &mut out).then_some(out)
}

/// Writes `v`'s canonical text to `out`; `false` (nothing written) for NULL.
fn canonical_into(v: &Value, out: &mut String) -> bool {
    use std::fmt::Write;
    match v {
        Value::Null => return false,
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float32(f) => hex_into(&f.to_bits().to_be_bytes(), out),
        Value::Float64(f) => hex_into(&f.to_bits().to_be_bytes(), out),
        Value::Decimal { unscaled, scale } => {
            if *unscaled < 0 {
                out.push('-');
            }
            let start = out.len();
            let _ = write!(out, "{}", unscaled.unsigned_abs());
            let scale = *scale as usize;
            let digits = out.len() - start;
            if digits <= scale {
                out.insert_str(start, &"0".repeat(scale + 1 - digits));
            }
            if scale > 0 {
                out.insert(out.len() - scale, '.');
            }
        }
        Value::Text(t) => out.push_str(t),
        Value::Bytes(b) => hex_into(b, out),
        Value::Date(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Micros(m) => {
            let _ = write!(out, "{m}");
        }
        Value::Interval { micros, days, months } => {
            hex_into(&micros.to_be_bytes(), out);
            hex_into(&days.to_be_bytes(), out);
            hex_into(&months.to_be_bytes(), out);
        }
        Value::Uuid(u) => out.push_str(&uuid_text(u)),
        Value::List(items) => {
            out.push('[');
            fields_into(items, out, &mut String::new());
            out.push(']');
        }
    }
    true
}

fn hex_into(b: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() * 2);
    for x in b {
        out.push(DIGITS[(x >> 4) as usize] as char);
        out.push(DIGITS[(x & 15) as usize] as char);
    }
}

/// A uuid's text: lower-case, hyphenated.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex(u);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn hex(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 2);
    hex_into(b, &mut out);
    out
}

/// A row's hash: the first 8 bytes of the MD5 of its canonical form, big-endian.
pub fn row_hash(row: &[Value]) -> u64 {
    use md5::Digest;
    thread_local! {
        // The row's text and one field's, kept between rows: no allocation a row.
        static BUFFERS: std::cell::RefCell<(String, String)> = const { std::cell::RefCell::new((String::new(), String::new())) };
    }
    BUFFERS.with_borrow_mut(|(text, field)| {
        text.clear();
        fields_into(row, text, field);
        let digest = md5::Md5::digest(text.as_bytes());
        // A huge row's buffers are not kept for the rest of the process.
        for b in [text, field] {
            if b.capacity() > 1 << 20 {
                *b = String::new();
            }
        }
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    })
}

/// A row's canonical form (see the module docs).
pub fn canonical_row(row: &[Value]) -> String {
    let mut text = String::with_capacity(row.len() * 16);
    fields_into(row, &mut text, &mut String::new());
    text
}

/// Values as `len:text` or `-`, joined by `,`, written to `text` (`field` is scratch).
fn fields_into(row: &[Value], text: &mut String, field: &mut String) {
    use std::fmt::Write;
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        field.clear();
        if canonical_into(v, field) {
            let _ = write!(text, "{}:", field.len());
            text.push_str(field);
        } else {
            text.push('-');
        }
    }
}

/// Adds rows' hashes into a fingerprint, as verify adds them from Parquet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub rows: u64,
    pub sum: u64,
}

impl Fingerprint {
    pub fn add(&mut self, row: &[Value]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(row_hash(row));
    }
}

pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table as SQL names it, quoted.
pub fn qualified(table: &TableName) -> String {
    format!("{}.{}", ident(&table.schema), ident(&table.name))
}

/// The rows a table export reads: `ONLY` the table for an ordinary one (the tables inheriting
/// from it are tables of their own), the table with its partitions for a partitioned one.
pub fn from_clause(table: &crate::schema::Table) -> String {
    match table.partitioned {
        true => qualified(&table.name),
        false => format!("ONLY {}", qualified(&table.name)),
    }
}

/// The export's select list: each column as [`decode`] reads it (text-like types as text).
pub fn select_list(columns: &[Column]) -> String {
    let one = |c: &Column| {
        let name = ident(&c.name);
        match &c.ty {
            ty if textual(ty) => format!("{name}::text"),
            ColumnType::List(inner) if textual(inner) => format!("{name}::text[]"),
            _ => name,
        }
    };
    columns.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// Whether values of `ty` travel as their text form.
pub(crate) fn textual(ty: &ColumnType) -> bool {
    use ColumnType as T;
    matches!(ty, T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText | T::Text)
}

/// The canonical text in SQL (see the module docs) of expression `n`, of type `ty`.
pub(crate) fn sql_canonical(n: &str, ty: &ColumnType) -> String {
    use ColumnType as T;
    match ty {
        T::Bool => format!("CASE WHEN {n} THEN 't' WHEN NOT {n} THEN 'f' END"),
        T::Int16 | T::Int32 | T::Int64 | T::Decimal { .. } | T::Uuid => format!("{n}::text"),
        T::Float32 => format!("encode(float4send({n}), 'hex')"),
        T::Float64 => format!("encode(float8send({n}), 'hex')"),
        T::Bytes => format!("encode({n}, 'hex')"),
        T::Date => format!("({n} - DATE '1970-01-01')::text"),
        T::Timestamp | T::TimestampTz | T::Time => format!("(extract(epoch FROM {n}) * 1000000)::int8::text"),
        T::Interval => format!("encode(interval_send({n}), 'hex')"),
        T::Text | T::Json | T::Jsonb | T::Enum | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => format!("{n}::text"),
        T::List(inner) => {
            let e = sql_canonical("u.e", inner);
            format!(
                "CASE WHEN {n} IS NOT NULL THEN '[' || coalesce((SELECT string_agg({}, ',' ORDER BY u.o) FROM unnest({n}) WITH ORDINALITY AS u(e, o)), '') || ']' END",
                field(&e)
            )
        }
    }
}

/// A field in the canonical form: `len:text`, or `-` for NULL.
fn field(e: &str) -> String {
    format!("coalesce(octet_length({e})::text || ':' || {e}, '-')")
}

/// A row's canonical form as an SQL expression over the table's columns.
pub fn row_sql(columns: &[Column]) -> String {
    let fields: Vec<String> = columns.iter().map(|c| field(&sql_canonical(&ident(&c.name), &c.ty))).collect();
    match fields.as_slice() {
        [] => "''".to_string(),
        f => f.join(" || ',' || "),
    }
}

/// The expression giving a row's hash as a signed 64-bit integer (to be summed as numeric).
pub fn row_hash_sql(columns: &[Column]) -> String {
    format!("('x' || substr(md5({}), 1, 16))::bit(64)::int8", row_sql(columns))
}

/// Brings a numeric sum of signed row hashes to the fingerprint: modulo 2^64, as text.
pub fn fold_sql(sum: &str) -> String {
    let m = "18446744073709551616";
    format!("(((coalesce({sum}, 0) % {m}) + {m}) % {m})::text")
}

/// The SQL that gives a table's row count and fingerprint (as text: the sum modulo 2^64 is
/// unsigned) over the transaction's snapshot.
pub fn sql(table: &TableName, columns: &[Column]) -> String {
    format!("SELECT count(*), {} FROM {}", fold_sql(&format!("sum({}::numeric)", row_hash_sql(columns))), qualified(table))
}

/// The value of the canonical text SQL expression `p` as a value of column type `ty`, exactly.
pub(crate) fn from_canonical_text(p: &str, ty: &ColumnType, pg_type: &str) -> Option<String> {
    use ColumnType as T;
    let micros =
        |base: &str| format!("{base} + ({p}::int8 / 1000000) * INTERVAL '1 second' + ({p}::int8 % 1000000) * INTERVAL '1 microsecond'");
    Some(match ty {
        T::Bool | T::Int16 | T::Int32 | T::Int64 | T::Decimal { .. } | T::Uuid | T::Text | T::Enum | T::Jsonb => format!("{p}::{pg_type}"),
        T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::CastText => format!("{p}::{pg_type}"),
        T::Date => format!("DATE '1970-01-01' + {p}::int4"),
        T::Timestamp => micros("TIMESTAMP '1970-01-01 00:00:00'"),
        T::TimestampTz => micros("TIMESTAMPTZ '1970-01-01 00:00:00+00'"),
        // TIME '00:00' plus a day wraps to 00:00; 24:00:00 is a time of its own.
        T::Time => format!("CASE WHEN {p}::int8 = 86400000000 THEN TIME '24:00:00' ELSE {} END", micros("TIME '00:00:00'")),
        T::Bytes => format!("decode({p}, 'hex')"),
        T::Float32 | T::Float64 | T::Interval | T::Json | T::List(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_render_with_their_scale_and_sign() {
        let d = |unscaled, scale| canonical(&Value::Decimal { unscaled, scale }).unwrap();
        assert_eq!(
            (d(1250, 2), d(-50, 2), d(0, 2), d(7, 0), d(-123456, 3)),
            ("12.50".into(), "-0.50".into(), "0.00".into(), "7".into(), "-123.456".into())
        );
    }

    #[test]
    fn a_binary_numeric_decodes_exactly_or_is_refused() {
        // 12345.678 as PostgreSQL sends it: digits 1, 2345, 6780; weight 1; dscale 3.
        let wire = |digits: &[i16], weight: i16, sign: u16, dscale: i16| {
            let mut b = Vec::new();
            for w in [digits.len() as i16, weight, sign as i16, dscale] {
                b.extend(w.to_be_bytes());
            }
            for d in digits {
                b.extend(d.to_be_bytes());
            }
            b
        };
        let v = decimal(&wire(&[1, 2345, 6780], 1, 0, 3), 12, 3).unwrap();
        assert_eq!(v, Value::Decimal { unscaled: 12_345_678, scale: 3 });
        let v = decimal(&wire(&[1, 2345, 6780], 1, 0x4000, 3), 12, 3).unwrap();
        assert_eq!(canonical(&v).unwrap(), "-12345.678");
        assert_eq!(decimal(&wire(&[], 0, 0xC000, 0), 12, 3), Err(DecodeError::NumericSpecial));
        assert!(matches!(decimal(&wire(&[1, 2345, 6780], 1, 0, 3), 5, 3), Err(DecodeError::NumericRange { .. })));
        assert!(matches!(decimal(&[0, 1], 5, 3), Err(DecodeError::Length { .. })));
    }

    #[test]
    fn a_finite_timestamp_past_64_bits_from_1970_is_out_of_range_not_infinite() {
        // 294276-12-31 23:59:59.999999, PostgreSQL's last timestamp, in microseconds since 2000.
        let last = 9_223_371_331_199_999_999i64;
        assert_eq!(decode(&ColumnType::Timestamp, Some(&last.to_be_bytes())), Err(DecodeError::TimestampRange));
        assert_eq!(decode(&ColumnType::Timestamp, Some(&i64::MAX.to_be_bytes())), Err(DecodeError::Infinite));
        assert_eq!(decode(&ColumnType::TimestampTz, Some(&0i64.to_be_bytes())), Ok(Value::Micros(PG_EPOCH_MICROS)));
    }
}
