//! Incremental tables (`--incremental-by COLUMN`): a later generation exports only the rows
//! written since the table's last export. A row is written since when its value in the column
//! is past the watermark (the largest value exported before), or when the transaction that
//! wrote it (its `xmin`, widened to 64 bits) is at or past the `xmin` of the last export's
//! snapshot: every transaction that snapshot may not have seen is there, a subtransaction of
//! one still open then included (a snapshot lists only top-level transactions in progress, so
//! `pg_visible_in_snapshot` would take a savepoint's rows as seen). The second test catches
//! what a watermark alone loses: a transaction that took its `updated_at` before the export and
//! committed after it, an id committed out of order, an update that does not move the column.
//! It also takes again rows that committed just before the snapshot (in its window): those are
//! exported twice, which a reader taking the newest generation's row per key does not notice.
//!
//! Deletes are not seen this way. The check of `xmin` has no index: each delta reads the whole
//! table (twice: PostgreSQL's figures, then the COPY).

use crate::fingerprint::ident;
use crate::schema::{Column, ColumnType};
use crate::snapshot::Visibility;
use std::cmp::Ordering;

/// Whether a column of type `ty` can be an incremental table's column: one whose values
/// PostgreSQL and ferry order alike and ferry can write back into SQL exactly.
pub fn column_allowed(ty: &ColumnType) -> bool {
    use ColumnType as T;
    matches!(ty, T::Int16 | T::Int32 | T::Int64 | T::Decimal { .. } | T::Date | T::Timestamp | T::TimestampTz)
}

/// The condition on a table's rows that keeps those written since an export whose snapshot
/// had `unseen_by` visibility and whose largest value of `column` was `after` (canonical);
/// `next` is the full transaction counter of the snapshot the condition runs in (a row's
/// 32-bit `xmin` widens against it). `None` if the column's type is not allowed.
pub fn since(column: &Column, after: Option<&str>, unseen_by: &str, next: u64) -> Option<String> {
    if !column_allowed(&column.ty) {
        return None;
    }
    let first_unseen = Visibility::parse(unseen_by)?.xmin();
    let c = ident(&column.name);
    let past = match after {
        Some(w) => {
            let literal = format!("'{}'::text", w.replace('\'', "''"));
            format!("{c} > {}", crate::fingerprint::from_canonical_text(&literal, &column.ty, &column.pg_type)?)
        }
        None => format!("{c} IS NOT NULL"),
    };
    // xmin's full id: the latest at or before `next` with its 32 bits; 0, 1, 2 (frozen) are
    // older than any snapshot.
    let x = "xmin::text::int8";
    let full = format!("(CASE WHEN {x} < 3 THEN {x} ELSE {next} - ((({next} % 4294967296) - {x} + 4294967296) % 4294967296) END)");
    Some(format!("({past} OR {full} >= {first_unseen})"))
}

/// How two canonical values of an allowed column type order.
pub fn order(ty: &ColumnType, a: &str, b: &str) -> Ordering {
    match ty {
        // Same scale for every value of a column: the digits without the point order as integers.
        ColumnType::Decimal { .. } => {
            let n = |s: &str| s.replace('.', "").parse::<i128>().unwrap_or(0);
            n(a).cmp(&n(b))
        }
        _ => {
            let n = |s: &str| s.parse::<i64>().unwrap_or(0);
            n(a).cmp(&n(b))
        }
    }
}

/// The later of two watermarks.
pub fn later(ty: &ColumnType, a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if order(ty, &a, &b) == Ordering::Less { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(ty: ColumnType, pg_type: &str) -> Column {
        Column { name: "updated at".into(), pg_type: pg_type.into(), ty, not_null: true }
    }

    #[test]
    fn the_condition_is_past_the_watermark_or_unseen_by_the_snapshot() {
        let c = column(ColumnType::TimestampTz, "timestamp with time zone");
        let sql = since(&c, Some("1700000000000000"), "100:110:103", 5000).unwrap();
        assert!(sql.starts_with("(\"updated at\" > TIMESTAMPTZ '1970-01-01 00:00:00+00' + ('1700000000000000'::text::int8"), "{sql}");
        assert!(sql.ends_with("% 4294967296) END) >= 100)"), "{sql}");
        assert!(since(&c, None, "100:110:", 5000).unwrap().contains("IS NOT NULL OR"));
        assert!(since(&column(ColumnType::Text, "text"), None, "1:2:", 5).is_none());
        assert!(since(&c, None, "garbage", 5).is_none());
    }

    #[test]
    fn watermarks_order_as_their_values() {
        let d = ColumnType::Decimal { precision: 12, scale: 2 };
        assert_eq!(later(&d, Some("-1.50".into()), Some("-10.00".into())), Some("-1.50".into()));
        assert_eq!(later(&d, Some("9.99".into()), Some("10.00".into())), Some("10.00".into()));
        assert_eq!(later(&ColumnType::Int64, Some("9".into()), Some("10".into())), Some("10".into()));
        assert_eq!(later(&ColumnType::Int64, None, Some("3".into())), Some("3".into()));
    }
}
