//! The write ledger's table and queries (see [`crate::Writes`]).

use crate::{Intent, Kept, Prior, RunId, RunKind, RunRow, Seen, UndoGroup, UndoState, Undone, WriteOp, WriteRow, Wrote};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,
    started   TEXT NOT NULL,
    generation INTEGER                           -- the job's newest generation as the run began
);
CREATE TABLE IF NOT EXISTS writes (
    id            INTEGER PRIMARY KEY,
    run           INTEGER NOT NULL,
    object        INTEGER NOT NULL,
    target        TEXT NOT NULL,                 -- the destination location (a device root)
    key           TEXT NOT NULL,
    op            TEXT NOT NULL,                 -- put | delete
    prior         TEXT NOT NULL,                 -- absent | present | unknown
    prior_seen    TEXT NOT NULL,                 -- head | listing | none
    prior_size    INTEGER,
    prior_etag    TEXT,
    prior_version TEXT,
    done          INTEGER NOT NULL DEFAULT 0,
    wrote_size    INTEGER,
    wrote_etag    TEXT,
    wrote_version TEXT,
    backup        TEXT,                          -- where the prior object was kept (--backup-to)
    backup_size   INTEGER,                       -- the kept copy, as written
    backup_etag   TEXT,
    undone_by     INTEGER,                       -- the rollback run that undid the write
    undo_state    TEXT                           -- begun | done (UndoState)
);
CREATE INDEX IF NOT EXISTS writes_object ON writes(object, done);
";

/// Made after the columns an older ledger lacks are added.
pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS writes_key ON writes(target, key, id);
";

// The statements each object's write runs: cached, and each prepared once (see
// `the_statements_each_object_runs_are_prepared_once`).
/// The unfinished row of a write of the same object, target and key: at most one (a write takes
/// an unfinished row over rather than add one). No `ORDER BY id DESC`: with it SQLite prepares
/// the statement again at every run once the table grows.
pub(super) const OPEN_WRITE: &str = "SELECT id FROM writes WHERE object = ?1 AND done = 0 AND op = ?2 AND target = ?3 AND key = ?4 LIMIT 1";
pub(super) const TAKE_OVER: &str = "UPDATE writes SET run = ?2 WHERE id = ?1";
pub(super) const BEGIN_WRITE: &str =
    "INSERT INTO writes (run, object, target, key, op, prior, prior_seen, prior_size, prior_etag, prior_version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
pub(super) const FINISH_WRITE: &str = "UPDATE writes SET done = 1, wrote_size = ?2, wrote_etag = ?3, wrote_version = ?4 WHERE id = ?1";

pub(super) fn begin_run(conn: &Connection, kind: RunKind, generation: u32) -> rusqlite::Result<RunId> {
    conn.execute(
        "INSERT INTO runs (kind, started, generation) VALUES (?1, ?2, ?3)",
        params![kind.as_str(), chrono::Utc::now().to_rfc3339(), generation],
    )?;
    Ok(RunId(conn.last_insert_rowid()))
}

pub(super) fn runs(conn: &Connection) -> rusqlite::Result<Vec<RunRow>> {
    let mut stmt = conn.prepare(
        "SELECT r.id, r.kind, r.generation, r.started,
                (SELECT COUNT(*) FROM writes w WHERE w.run = r.id),
                (SELECT COUNT(*) FROM writes w WHERE w.run = r.id AND w.undo_state = 'done')
         FROM runs r ORDER BY r.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let kind: String = r.get(1)?;
        Ok(RunRow {
            id: RunId(r.get(0)?),
            kind: RunKind::parse(&kind).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("unknown run kind {kind}").into())
            })?,
            generation: r.get(2)?,
            started: r.get(3)?,
            writes: r.get::<_, i64>(4)? as u64,
            undone: r.get::<_, i64>(5)? as u64,
        })
    })?;
    rows.collect()
}

pub(super) fn set_backup(conn: &Connection, row: i64, backup: &Kept) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE writes SET backup = ?2, backup_size = ?3, backup_etag = ?4 WHERE id = ?1")?.execute(params![
        row,
        backup.location,
        backup.size as i64,
        backup.etag
    ])?;
    Ok(())
}

pub(super) fn prior_of(conn: &Connection, row: i64) -> rusqlite::Result<(Prior, Option<Kept>)> {
    let row = conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM writes WHERE id = ?1"))?.query_row([row], row_of)?;
    Ok((row.prior, row.backup))
}

const ROW_COLUMNS: &str = "id, run, object, key, op, prior, prior_seen, prior_size, prior_etag, prior_version, done, wrote_size, wrote_etag, wrote_version, target, backup, undone_by, undo_state, backup_size, backup_etag";

/// The groups of writes a rollback to before run `from` undoes, a key each (see
/// [`crate::Writes::undo_groups`]).
pub(super) fn undo_groups(conn: &Connection, target: &str, from: RunId, after_key: &str, limit: usize) -> rusqlite::Result<Vec<UndoGroup>> {
    let keys: Vec<String> = conn
        .prepare_cached(
            "SELECT key FROM writes WHERE target = ?1 AND key > ?2 AND run >= ?3 AND undo_state IS NOT 'done'
             GROUP BY key ORDER BY key LIMIT ?4",
        )?
        .query_map(params![target, after_key, from.0, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM writes WHERE target = ?1 AND key = ?2 AND run >= ?3 AND undo_state IS NOT 'done' ORDER BY id"
    ))?;
    let mut groups = Vec::with_capacity(keys.len());
    for key in keys {
        let rows: Vec<WriteRow> = stmt.query_map(params![target, key, from.0], row_of)?.collect::<rusqlite::Result<_>>()?;
        let (Some(first), Some(last)) = (rows.first().cloned(), rows.last().cloned()) else { continue };
        let begun = rows.iter().any(|r| matches!(r.undo, Some((_, UndoState::Begun))));
        groups.push(UndoGroup { key, rows: rows.iter().map(|r| r.id).collect(), first, last, begun });
    }
    Ok(groups)
}

pub(super) fn mark_undo(conn: &Connection, rows: &[i64], by: RunId, state: UndoState) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE writes SET undone_by = ?2, undo_state = ?3 WHERE id = ?1")?;
    for row in rows {
        stmt.execute(params![row, by.0, state.as_str()])?;
    }
    Ok(())
}

/// The newest finished put before row `first` under its key that no rollback undid now names
/// `now`'s entity tag and version as what it left (see [`crate::Writes::finish_undo`]).
pub(super) fn earlier_put_left(conn: &Connection, first: i64, now: &Wrote) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE writes SET wrote_etag = ?2, wrote_version = ?3 WHERE id = (
             SELECT MAX(w.id) FROM writes w, writes f
             WHERE f.id = ?1 AND w.target = f.target AND w.key = f.key AND w.id < f.id
               AND w.op = 'put' AND w.done = 1 AND w.undo_state IS NOT 'done'
               AND (f.prior_size IS NULL OR w.wrote_size = f.prior_size))",
    )?
    .execute(params![first, now.etag, now.version])?;
    Ok(())
}

/// The object a rollback begins undoing the writes of: no longer copied.
pub(super) fn object_undoing(conn: &Connection, object: i64, by: RunId) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE objects SET state = 'pending', note = ?2, lease_owner = NULL, lease_until = NULL, updated_at = datetime('now')
         WHERE id = ?1 AND state = 'done'",
        params![object, format!("rollback begun by run {}", by.0)],
    )?;
    Ok(())
}

/// The object whose writes were undone: copied again by the next run (its copy is gone), or,
/// gone from the source with what the destination held put back, deleted again.
pub(super) fn object_undone(conn: &Connection, object: i64, by: RunId, left: Undone) -> rusqlite::Result<()> {
    let note = format!("rolled back by run {}", by.0);
    match left {
        Undone::Restored => conn.execute(
            "UPDATE objects SET state = CASE state WHEN 'deleted' THEN 'pending-delete' WHEN 'done' THEN 'pending' ELSE state END,
                    note = ?2, lease_owner = NULL, lease_until = NULL, updated_at = datetime('now') WHERE id = ?1",
            params![object, note],
        )?,
        Undone::Removed => conn.execute(
            "UPDATE objects SET state = CASE state WHEN 'done' THEN 'pending' ELSE state END,
                    note = ?2, lease_owner = NULL, lease_until = NULL, updated_at = datetime('now') WHERE id = ?1",
            params![object, note],
        )?,
    };
    Ok(())
}

/// Records the intent's prior state for a write by `run`, unless a write of the same object to
/// the same target and key was begun and never finished: that row is taken over by `run` and
/// keeps the prior state it recorded (a write elsewhere, e.g. to another device after the first
/// filled up, is a row of its own). Returns the row's id.
pub(super) fn begin_write(conn: &Connection, run: RunId, intent: &Intent<'_>) -> rusqlite::Result<i64> {
    let Intent { object, target, key, op, prior, seen } = *intent;
    let open: Option<i64> =
        conn.prepare_cached(OPEN_WRITE)?.query_row(params![object, op.as_str(), target, key], |r| r.get(0)).optional()?;
    if let Some(id) = open {
        conn.prepare_cached(TAKE_OVER)?.execute(params![id, run.0])?;
        return Ok(id);
    }
    let (state, size, etag, version) = match prior {
        Prior::Absent => ("absent", None, None, None),
        Prior::Present { size, etag, version } => ("present", Some(*size as i64), etag.as_deref(), version.as_deref()),
        Prior::Unknown => ("unknown", None, None, None),
    };
    conn.prepare_cached(BEGIN_WRITE)?.execute(params![
        run.0,
        object,
        target,
        key,
        op.as_str(),
        state,
        seen.as_str(),
        size,
        etag,
        version
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records what the write of row `id` left at the destination.
pub(super) fn finish_write(conn: &Connection, id: i64, wrote: &Wrote) -> rusqlite::Result<()> {
    conn.prepare_cached(FINISH_WRITE)?.execute(params![id, wrote.size as i64, wrote.etag, wrote.version])?;
    Ok(())
}

/// Rows of the ledger after id `after`, in the order they were begun; `run` narrows them to one
/// run's.
pub(super) fn writes(conn: &Connection, run: Option<RunId>, after: i64, limit: usize) -> rusqlite::Result<Vec<WriteRow>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM writes WHERE id > ?1 AND (?2 IS NULL OR run = ?2) ORDER BY id LIMIT ?3"))?;
    let rows = stmt.query_map(params![after, run.map(|r| r.0), limit as i64], row_of)?;
    rows.collect()
}

/// A ledger row, selected as [`ROW_COLUMNS`].
fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<WriteRow> {
    let prior = match r.get_ref(5)?.as_str()? {
        "absent" => Prior::Absent,
        "present" => Prior::Present { size: r.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64, etag: r.get(8)?, version: r.get(9)? },
        _ => Prior::Unknown,
    };
    let done: bool = r.get(10)?;
    let bad = |col: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, format!("unknown {what}").into())
    };
    let undo = match (r.get::<_, Option<i64>>(16)?, r.get::<_, Option<String>>(17)?) {
        (Some(by), Some(state)) => Some((RunId(by), UndoState::parse(&state).ok_or_else(|| bad(17, "undo state"))?)),
        _ => None,
    };
    Ok(WriteRow {
        id: r.get(0)?,
        run: RunId(r.get(1)?),
        object: r.get(2)?,
        target: r.get(14)?,
        key: r.get(3)?,
        op: WriteOp::parse(r.get_ref(4)?.as_str()?).ok_or_else(|| bad(4, "write"))?,
        prior,
        seen: Seen::parse(r.get_ref(6)?.as_str()?).ok_or_else(|| bad(6, "prior source"))?,
        wrote: done
            .then(|| -> rusqlite::Result<Wrote> {
                Ok(Wrote { size: r.get::<_, Option<i64>>(11)?.unwrap_or(0) as u64, etag: r.get(12)?, version: r.get(13)? })
            })
            .transpose()?,
        backup: r
            .get::<_, Option<String>>(15)?
            .map(|location| -> rusqlite::Result<Kept> {
                Ok(Kept { location, size: r.get::<_, Option<i64>>(18)?.unwrap_or(0) as u64, etag: r.get(19)? })
            })
            .transpose()?,
        undo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(INDEXES).unwrap();
        c
    }

    fn put<'a>(object: i64, target: &'a str, key: &'a str, prior: &'a Prior) -> Intent<'a> {
        Intent { object, target, key, op: WriteOp::Put, prior, seen: Seen::Head }
    }

    #[test]
    fn one_row_per_write_with_the_prior_state() {
        let c = conn();
        let run = begin_run(&c, RunKind::Copy, 1).unwrap();
        let prior = Prior::Present { size: 3, etag: Some("e1".into()), version: Some("v1".into()) };
        let a = begin_write(&c, run, &put(1, "s3://b/", "a", &prior)).unwrap();
        let b = begin_write(&c, run, &Intent { seen: Seen::Listing, ..put(2, "s3://b/", "b", &Prior::Absent) }).unwrap();
        finish_write(&c, a, &Wrote { size: 5, etag: Some("e2".into()), version: None }).unwrap();
        let rows = writes(&c, Some(run), 0, 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].id, &rows[0].prior, rows[0].seen), (a, &prior, Seen::Head));
        assert_eq!(rows[0].wrote, Some(Wrote { size: 5, etag: Some("e2".into()), version: None }));
        assert_eq!((rows[1].id, &rows[1].prior, rows[1].wrote.as_ref()), (b, &Prior::Absent, None));
    }

    #[test]
    fn a_cut_off_write_is_taken_over_and_keeps_what_was_there_first() {
        let c = conn();
        let first = begin_run(&c, RunKind::Copy, 1).unwrap();
        let row = begin_write(&c, first, &put(7, "/dev1", "k", &Prior::Absent)).unwrap();
        // The next run HEADs ferry's own half-finished write; the ledger keeps "absent".
        let second = begin_run(&c, RunKind::Copy, 1).unwrap();
        let seen_now = Prior::Present { size: 9, etag: Some("ferry".into()), version: None };
        let again = begin_write(&c, second, &put(7, "/dev1", "k", &seen_now)).unwrap();
        assert_eq!(again, row);
        finish_write(&c, again, &Wrote { size: 9, etag: Some("ferry".into()), version: None }).unwrap();
        let rows = writes(&c, None, 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].run, &rows[0].prior), (second, &Prior::Absent));
        // A finished write is history: the next write of the object is a new row.
        let third = begin_run(&c, RunKind::Copy, 1).unwrap();
        let next = begin_write(&c, third, &put(7, "/dev1", "k", &seen_now)).unwrap();
        assert_ne!(next, row);
        assert_eq!(writes(&c, Some(third), 0, 10).unwrap()[0].prior, seen_now);
    }

    // Found in review: an export whose first device filled up wrote the object to another
    // device, and the ledger took the first device's row over with its prior state.
    #[test]
    fn a_write_to_another_target_or_key_is_a_row_of_its_own() {
        let c = conn();
        let run = begin_run(&c, RunKind::Export, 1).unwrap();
        let on_first = begin_write(&c, run, &put(3, "/dev1", "x/k", &Prior::Absent)).unwrap();
        let held = Prior::Present { size: 4, etag: None, version: None };
        let on_second = begin_write(&c, run, &put(3, "/dev2", "x/k", &held)).unwrap();
        let renamed = begin_write(&c, run, &put(3, "/dev2", "x/k~1", &Prior::Absent)).unwrap();
        assert_ne!(on_first, on_second);
        assert_ne!(on_second, renamed);
        let rows = writes(&c, Some(run), 0, 10).unwrap();
        let seen: Vec<(&str, &str, &Prior)> = rows.iter().map(|r| (r.target.as_str(), r.key.as_str(), &r.prior)).collect();
        assert_eq!(seen, [("/dev1", "x/k", &Prior::Absent), ("/dev2", "x/k", &held), ("/dev2", "x/k~1", &Prior::Absent)]);
    }
}
