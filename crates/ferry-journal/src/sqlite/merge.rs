//! A watched generation merge ([`crate::Ledger::merge_generation`]): the journal's rows and a
//! key-ordered listing walked together once, in one transaction, with a [`MergeWatch`] judging
//! what looks touched, told each change, and deciding at the end whether it is committed.
//!
//! The steps are those of [`Inner::seed_generation`] (`merge_added`, `merge_listed`,
//! `merge_gone`); what is added here is the watch, the tally of what the journal held, and a
//! narrower read of each row (the columns a merge compares, `src_attrs` parsed only for a look).

use super::{Inner, merge_added, merge_gone, merge_listed, state_from};
use crate::*;
use ferry_core::{Checksums, Evidence};
use rusqlite::{Connection, params};

/// Steps of a watched merge taken at a time (one query of rows, one chunk of the listing, one
/// call to judge). The merge is one transaction whatever its size.
const WATCHED_BATCH: usize = 4096;

/// The columns a merge reads of each row ([`merge_row_from`]).
const MERGE_COLUMNS: &str = "id, key, size, etag, version, src_crc32c, src_md5, src_crc64, state, error, last_modified, deleted_from, verified_by, sha256, src_attrs, generation";

/// A row as a merge needs it.
struct MergeRow {
    row: ObjectRow,
    deleted_from: Option<ObjectState>,
    /// As stored: parsed only for a [`LookKind::NewTime`].
    src_attrs: Option<String>,
}

fn merge_row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<MergeRow> {
    let state = state_from(r, 8)?;
    let error: Option<String> = r.get(9)?;
    let skipped = match state {
        ObjectState::Skipped => error.as_deref().and_then(SkipReason::parse),
        _ => None,
    };
    let last_modified = r.get_ref(10)?.as_str_or_null()?.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
    Ok(MergeRow {
        row: ObjectRow {
            id: r.get(0)?,
            generation: r.get(15)?,
            entry: ObjectEntry {
                key: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                etag: r.get(3)?,
                version: r.get(4)?,
                checksums: Checksums { crc32c: r.get(5)?, md5: r.get(6)?, crc64nvme: r.get(7)?, sha256: None },
                last_modified,
                skipped,
                ..ObjectEntry::default()
            },
            state,
            attempts: 0,
            copied: Checksums { sha256: r.get(13)?, ..Checksums::default() },
            dst_etag: None,
            verified_by: r.get_ref(12)?.as_str_or_null()?.and_then(Evidence::parse),
            error,
            upload_id: None,
            route: Route::default(),
            note: None,
            restore_requested: None,
            src_attrs: None,
        },
        deleted_from: r.get_ref(11)?.as_str_or_null()?.and_then(ObjectState::parse),
        src_attrs: r.get(14)?,
    })
}

/// One key of the merge: only in the journal, only in the listing, or in both — by its index
/// in the batch's rows and in the listing's chunk (the 1.4 KB values stay where they are).
#[derive(Clone, Copy)]
enum Pair {
    Gone(usize),
    Added(usize),
    Both(usize, usize),
}

/// Counts a row the merge met in what the journal held.
fn tally(held: &mut Held, state: ObjectState) {
    match state {
        ObjectState::Done | ObjectState::Failed | ObjectState::Pending => held.objects += 1,
        ObjectState::PendingDelete => held.pending_delete += 1,
        ObjectState::Refused | ObjectState::Skipped | ObjectState::Deleted => {}
    }
}

fn gone(state: ObjectState) -> bool {
    matches!(state, ObjectState::PendingDelete | ObjectState::Deleted)
}

/// Whether the listed entry looks touched or changed at its old size (see [`LookKind`]).
fn look_of(m: &MergeRow, e: &ObjectEntry) -> Option<LookKind> {
    let row = &m.row;
    if e.skipped.is_some() || row.entry.skipped.is_some() {
        return None;
    }
    if row.entry.same_version(e) {
        let new_time =
            matches!((row.entry.last_modified, e.last_modified), (Some(a), Some(b)) if a.timestamp_millis() != b.timestamp_millis());
        (row.state == ObjectState::Done && new_time && m.src_attrs.is_some()).then_some(LookKind::NewTime)
    } else {
        let copied = row.state == ObjectState::Done || (row.state == ObjectState::PendingDelete && row.verified_by.is_some());
        (copied && row.entry.size == e.size && row.copied.sha256.is_some()).then_some(LookKind::OtherTag)
    }
}

/// The change-set line of a key merged by the rules alone (no verdict changed it).
fn step_of<'a>(row: &'a ObjectRow, e: &'a ObjectEntry) -> Option<MergeStep<'a>> {
    let old = !gone(row.state) && row.state != ObjectState::Skipped && row.entry.skipped.is_none();
    let new = e.skipped.is_none();
    match (old, new) {
        (false, false) => None,
        (true, false) => Some(MergeStep::Deleted { old: &row.entry }),
        (false, true) => Some(MergeStep::Added { new: e }),
        (true, true) if !row.entry.same_version(e) => Some(MergeStep::Changed { old: &row.entry, new: e }),
        (true, true) => {
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_millis());
            (time(row.entry.last_modified) != time(e.last_modified)).then_some(MergeStep::Touched { old: &row.entry, new: e })
        }
    }
}

impl Inner {
    pub(super) fn merge_generation(
        &self,
        generation: u32,
        listing: &mut dyn Iterator<Item = ObjectEntry>,
        watch: &mut dyn MergeWatch,
        meta: &[(String, String)],
    ) -> Result<(GenerationDelta, bool)> {
        // Outcomes waiting for a commit are not the merge's: they must not be rolled back with it.
        self.flush()?;
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(self.err())?;
        let (delta, held, whole) = merge_watched(&tx, generation, listing, watch).map_err(self.err())?;
        let commit = whole && watch.finish(&delta, &held);
        if commit {
            for (name, value) in meta {
                tx.execute(
                    "INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    [name, value],
                )
                .map_err(self.err())?;
            }
            tx.commit().map_err(self.err())?;
        } else {
            tx.rollback().map_err(self.err())?;
        }
        Ok((delta, commit))
    }
}

/// The merge itself, in `tx`. Returns what it did, what the journal held before, and whether it
/// went through the whole listing (`false`: the watch stopped it).
fn merge_watched(
    tx: &Connection,
    generation: u32,
    listing: &mut dyn Iterator<Item = ObjectEntry>,
    watch: &mut dyn MergeWatch,
) -> rusqlite::Result<(GenerationDelta, Held, bool)> {
    let mut delta = GenerationDelta::default();
    let mut held = Held::default();
    // Everything up to this key (of either side) is merged.
    let mut after = String::new();
    // The listing's entries not merged yet, from `chunk[taken..]`.
    let mut chunk: Vec<ObjectEntry> = Vec::with_capacity(WATCHED_BATCH);
    let (mut listing_done, mut journal_done) = (false, false);
    let select = format!("SELECT {MERGE_COLUMNS} FROM objects WHERE key > ?1 ORDER BY key LIMIT ?2");
    loop {
        if chunk.is_empty() && !listing_done {
            chunk.extend((&mut *listing).take(WATCHED_BATCH));
            listing_done = chunk.len() < WATCHED_BATCH;
        }
        if chunk.is_empty() && listing_done && journal_done {
            return Ok((delta, held, true));
        }
        let mut rows: Vec<MergeRow> = tx
            .prepare_cached(&select)?
            .query_map(params![after, WATCHED_BATCH as i64], merge_row_from)?
            .collect::<rusqlite::Result<_>>()?;
        let page_full = rows.len() == WATCHED_BATCH;
        let mut pairs = Vec::with_capacity(WATCHED_BATCH);
        let (mut r, mut c) = (0, 0);
        for _ in 0..WATCHED_BATCH {
            let order = match (rows.get(r), chunk.get(c)) {
                (None, None) => break,
                // The journal may have rows past this page: read them first.
                (None, Some(_)) if page_full => break,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                // The listing may have this key in its next chunk.
                (Some(_), None) if !listing_done => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(m), Some(entry)) => m.row.entry.key.as_str().cmp(entry.key.as_str()),
            };
            let pair = match order {
                std::cmp::Ordering::Less => Pair::Gone(r),
                std::cmp::Ordering::Greater => Pair::Added(c),
                std::cmp::Ordering::Equal => Pair::Both(r, c),
            };
            r += usize::from(order.is_le());
            c += usize::from(order.is_ge());
            pairs.push(pair);
        }
        journal_done = r == rows.len() && !page_full;
        if let Some(last) = pairs.last() {
            after = match *last {
                Pair::Gone(i) | Pair::Both(i, _) => rows[i].row.entry.key.clone(),
                Pair::Added(i) => chunk[i].key.clone(),
            };
        }

        // What looks touched, or changed at its old size, is judged before anything is merged.
        let mut kinds: Vec<Option<LookKind>> = Vec::with_capacity(pairs.len());
        for pair in &pairs {
            let kind = match *pair {
                Pair::Both(i, j) => look_of(&rows[i], &chunk[j]),
                _ => None,
            };
            if let (Some(LookKind::NewTime), Pair::Both(i, _)) = (kind, *pair) {
                let m = &mut rows[i];
                m.row.src_attrs = m.src_attrs.as_deref().and_then(|json| serde_json::from_str(json).ok());
            }
            kinds.push(kind);
        }
        let looks: Vec<Look<'_>> = pairs
            .iter()
            .zip(&kinds)
            .filter_map(|(pair, kind)| match (*pair, kind) {
                (Pair::Both(i, j), Some(kind)) => Some(Look { kind: *kind, row: &rows[i].row, listed: &chunk[j] }),
                _ => None,
            })
            .collect();
        let mut verdicts = if looks.is_empty() { Vec::new() } else { watch.judge(&looks) }.into_iter();
        drop(looks);

        for (pair, kind) in pairs.into_iter().zip(kinds) {
            let verdict = kind.map(|kind| verdicts.next().unwrap_or(Verdict::unexamined(kind)));
            let going_on = match pair {
                Pair::Gone(i) => {
                    let m = &rows[i];
                    tally(&mut held, m.row.state);
                    let counted = !gone(m.row.state);
                    merge_gone(tx, generation, &m.row, &mut delta)?;
                    let present = counted && m.row.state != ObjectState::Skipped && m.row.entry.skipped.is_none();
                    !present || watch.step(MergeStep::Deleted { old: &m.row.entry })
                }
                Pair::Added(j) => {
                    let e = &chunk[j];
                    merge_added(tx, generation, e)?;
                    delta.added += 1;
                    e.skipped.is_some() || watch.step(MergeStep::Added { new: e })
                }
                Pair::Both(i, j) => {
                    let (m, e) = (&mut rows[i], &chunk[j]);
                    tally(&mut held, m.row.state);
                    match (kind, verdict) {
                        (Some(LookKind::OtherTag), Some(Verdict::Unchanged)) => {
                            // Its bytes are as copied: its new identity is recorded, and it
                            // merges as unchanged (touched).
                            let old = m.row.entry.clone();
                            tx.prepare_cached(
                                "UPDATE objects SET etag = ?2, version = ?3, last_modified = ?4, updated_at = datetime('now') WHERE id = ?1",
                            )?
                            .execute(params![m.row.id, e.etag, e.version, super::rfc3339(e)])?;
                            (m.row.entry.etag, m.row.entry.version, m.row.entry.last_modified) =
                                (e.etag.clone(), e.version.clone(), e.last_modified);
                            let was_present = !gone(m.row.state);
                            let unchanged = delta.unchanged;
                            merge_listed(tx, generation, &m.row, m.deleted_from, e, &mut delta)?;
                            if delta.unchanged > unchanged {
                                delta.touched += 1;
                            }
                            let step = if was_present { MergeStep::Touched { old: &old, new: e } } else { MergeStep::Added { new: e } };
                            watch.step(step)
                        }
                        (Some(LookKind::NewTime), Some(Verdict::Changed)) => {
                            // The same bytes with other headers or metadata: copied again,
                            // with what this listing carries of them (none, for S3), so the
                            // copy writes what its read gives and nothing kept from before.
                            merge_listed(tx, generation, &m.row, m.deleted_from, e, &mut delta)?;
                            tx.prepare_cached(
                                "UPDATE objects SET state = 'pending', attempts = 0, note = ?2, updated_at = datetime('now'),
                                 content_type = ?3, metadata = ?4, headers = ?5
                                 WHERE id = ?1 AND state = 'done'",
                            )?
                            .execute(params![
                                m.row.id,
                                "metadata changed at the source (same bytes)",
                                e.content_type,
                                super::metadata_json(e),
                                super::headers_json(e)
                            ])?;
                            delta.unchanged -= 1;
                            delta.touched -= 1;
                            delta.changed += 1;
                            watch.step(MergeStep::Changed { old: &m.row.entry, new: e })
                        }
                        _ => {
                            merge_listed(tx, generation, &m.row, m.deleted_from, e, &mut delta)?;
                            step_of(&m.row, e).is_none_or(|step| watch.step(step))
                        }
                    }
                }
            };
            if !going_on {
                return Ok((delta, held, false));
            }
        }
        // What this batch did not reach of the chunk waits for the next; the rows are read again.
        chunk.drain(..c);
    }
}
