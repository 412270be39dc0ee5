//! The embedded journal: one SQLite database per journal in the job directory (WAL mode).
//!
//! Commits are group-committed (`synchronous = NORMAL`) except those that must be on disk
//! before the side effect they precede (an upload id before the upload is created, a device
//! placement before the file is written). An outcome (an object done, a write finished) is not a
//! commit of its own: it rides on the journal's next commit (see `Inner::tx`), so a copy of small
//! objects commits once per object, not three times. Opening migrates an older journal: it adds any column
//! the schema has and the journal lacks, then the indexes, then records the new version.
//!
//! One connection, behind a mutex held for one statement or transaction at a time (never across
//! an await). Calls that touch a few rows run on the caller's thread: they take microseconds, and
//! a hop to the blocking pool would cost more than the work. Calls that scan or write many rows
//! (seeding, merging a generation, claims and releases, counts, conflicts, durable commits that
//! wait for an fsync) run on tokio's blocking pool, so a large journal never stalls the executor.

mod merge;
mod writes;

use crate::*;
use ferry_core::{Checksums, Evidence};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Mutex, MutexGuard};

/// 1: copies; 2: disk export and ingest routes; 3: `renamed`, and a restarted object's
/// `last_modified`; 4: claims (`lease_owner`, `lease_until`, `claim_pass`) and the
/// `pending-delete` state of a generation merge (its `deleted_from` added later, without a new
/// version: older journals gain it like any column); 5: the destination write ledger (`runs`,
/// `writes`, created where missing); 6: `pinned`, and an object is unique by key and pinned
/// version (`objects_id`), not by key (an `--all-versions` job has a row per version): an
/// older journal's objects table, whose key column was declared UNIQUE, is built afresh with
/// its rows and ids (see `Inner::unpin_key`). Every open adds any column of [`SCHEMA`] a
/// journal lacks, whatever its version says (version 2 journals made before `renamed` lack it).
/// 7: rollback (`runs.generation`; `writes.backup`, `undone_by`, `undo_state`), added like
/// any column. `headers` (the listed system headers, which a shipment carries) is added like
/// any column, without a version of its own.
const SCHEMA_VERSION: i64 = 7;

/// The file names of each kind of journal in a job directory: known here and nowhere else.
pub(crate) fn path(job_dir: &Path, kind: JournalKind) -> PathBuf {
    match kind {
        JournalKind::Main => job_dir.join("journal.sqlite"),
        JournalKind::Export => job_dir.join("export").join("journal.sqlite"),
        JournalKind::ExportCheck => job_dir.join("export").join("check.sqlite"),
    }
}

/// Deletes a journal and its WAL files.
pub(crate) fn remove(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(JournalError::Io { path: p, source: e }),
            _ => {}
        }
    }
    Ok(())
}

/// The objects table's columns: one row per object (per key, or per key and version in an
/// `--all-versions` job). Kept apart so a migration can build the table afresh.
macro_rules! objects_columns {
    () => {
        "
    id            INTEGER PRIMARY KEY,
    generation    INTEGER NOT NULL,                  -- the generation that last changed the row
    key           TEXT NOT NULL,                     -- unique with pinned (see objects_id)
    size          INTEGER NOT NULL,
    etag          TEXT,
    version       TEXT,
    src_crc32c    TEXT,
    src_md5       TEXT,
    content_type  TEXT,
    metadata      TEXT,
    state         TEXT NOT NULL DEFAULT 'pending',   -- ObjectState::as_str (skipped: error is the SkipReason)
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    sha256        TEXT,                              -- of the bytes read and sent
    crc32c        TEXT,
    dst_etag      TEXT,
    verified_by   TEXT,
    upload_id     TEXT,
    part_size     INTEGER,                           -- of the open upload
    hash_next     INTEGER,                           -- parts hashed into hash_state
    hash_state    BLOB,                              -- running SHA-256/CRC32C after hash_next parts
    note          TEXT,                              -- e.g. why the object was restarted
    orphans       INTEGER NOT NULL DEFAULT 0,        -- uploads cut off at creation the service could not list
    updated_at    TEXT,
    device        INTEGER,                           -- disk export/ingest: the device the object is on
    src_path      TEXT,                              -- read from this path instead of the key
    dst_path      TEXT,                              -- written at this path instead of the key
    src_crc64     TEXT,                              -- CRC64NVME the source declares (a shipment manifest)
    expect_sha256 TEXT,                              -- SHA-256 the source declares (a shipment manifest)
    crc64nvme     TEXT,                              -- of the bytes read and sent
    renamed       TEXT,                              -- why dst_path is not the key (a disk layout's rule)
    last_modified TEXT,                              -- of the source version listed, or a restart copies (RFC 3339)
    lease_owner   TEXT,                              -- the worker holding the object's lease
    lease_until   INTEGER,                           -- its expiry (ms since the epoch); NULL: not leased
    claim_pass    INTEGER,                           -- the pass that last claimed it (not handed out again in it)
    storage_class TEXT,                              -- JSON ferry_core::StorageClass as listed (archived or not)
    restore_requested TEXT,                          -- when ferry asked the source to restore it (RFC 3339)
    deleted_from  TEXT,                              -- a pending delete's state before (a refused key that returns stays refused)
    src_attrs     TEXT,                              -- JSON ferry_core::headers::Attrs the source gave the last copy (for verify)
    headers       TEXT,                              -- JSON ferry_core::Headers as listed, or as a shipment carried them
    pinned        TEXT NOT NULL DEFAULT ''           -- the source version the row copies (--all-versions); '': the key's current one
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (",
    objects_columns!(),
    ");
CREATE TABLE IF NOT EXISTS parts (
    object_id  INTEGER NOT NULL REFERENCES objects(id),
    part_no    INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    crc32c     TEXT NOT NULL,
    etag       TEXT,
    PRIMARY KEY (object_id, part_no)
);
"
);

/// Indexes on columns an older journal may lack: made after its columns are added.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS objects_state ON objects(state, id);
CREATE UNIQUE INDEX IF NOT EXISTS objects_id ON objects(key, pinned);
CREATE INDEX IF NOT EXISTS objects_leased ON objects(lease_until) WHERE lease_until IS NOT NULL;
";

const ROW_COLUMNS: &str = "id, key, size, etag, version, src_crc32c, src_md5, content_type, metadata, state, attempts, sha256, crc32c, dst_etag, verified_by, error, upload_id, crc64nvme, device, src_path, dst_path, src_crc64, expect_sha256, note, last_modified, generation, storage_class, restore_requested, src_attrs, pinned, headers";

/// A column as `PRAGMA table_info` declares it: name, type, not null, default.
type Column = (String, String, bool, Option<String>);

/// Each column of `table`.
fn table_info(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let rows = stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    rows.collect()
}

fn state_from(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<ObjectState> {
    let name = r.get_ref(column)?.as_str()?;
    ObjectState::parse(name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, format!("unknown object state {name:?}").into())
    })
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    let metadata: Option<String> = r.get(8)?;
    let state = state_from(r, 9)?;
    Ok(ObjectRow {
        id: r.get(0)?,
        generation: r.get(25)?,
        entry: ObjectEntry {
            key: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            etag: r.get(3)?,
            version: r.get(4)?,
            checksums: Checksums { crc32c: r.get(5)?, md5: r.get(6)?, crc64nvme: r.get(21)?, sha256: None },
            content_type: r.get(7)?,
            metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default(),
            last_modified: r.get::<_, Option<String>>(24)?.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()),
            skipped: match state {
                ObjectState::Skipped => r.get_ref(15)?.as_str_or_null()?.and_then(SkipReason::parse),
                _ => None,
            },
            mode: None,
            storage_class: r.get_ref(26)?.as_str_or_null()?.and_then(|json| serde_json::from_str(json).ok()),
            pinned: !r.get_ref(29)?.as_str()?.is_empty(),
            headers: r.get_ref(30)?.as_str_or_null()?.and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default(),
            ..ObjectEntry::default()
        },
        state,
        attempts: r.get(10)?,
        copied: Checksums { sha256: r.get(11)?, crc32c: r.get(12)?, crc64nvme: r.get(17)?, md5: None },
        dst_etag: r.get(13)?,
        verified_by: r.get_ref(14)?.as_str_or_null()?.and_then(Evidence::parse),
        error: r.get(15)?,
        upload_id: r.get(16)?,
        route: Route { device: r.get(18)?, src_path: r.get(19)?, dst_path: r.get(20)?, expect_sha256: r.get(22)? },
        note: r.get(23)?,
        restore_requested: r.get::<_, Option<String>>(27)?.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()),
        src_attrs: r.get_ref(28)?.as_str_or_null()?.and_then(|json| serde_json::from_str(json).ok()),
    })
}

/// The state a seeded entry starts in, and its `error` (why it is not copied).
fn seeded_state<'a>(e: &'a ObjectEntry, refused: Option<&'a str>) -> (ObjectState, Option<&'a str>) {
    match (e.skipped, refused) {
        (Some(reason), _) => (ObjectState::Skipped, Some(reason.as_str())),
        (None, Some(refused)) => (ObjectState::Refused, Some(refused)),
        (None, None) => (ObjectState::Pending, None),
    }
}

/// The embedded journal (see the module docs). Cheap to share: clones hold one connection.
#[derive(Clone)]
pub struct SqliteJournal(Arc<Inner>);

pub(crate) struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// This process's pass and the highest id its claims handed out from fresh rows: every
    /// claimable row below it was handed out already in the pass (or is leased elsewhere, and
    /// found by expiry), so claims never rescan a pass's done and failed rows.
    floor: Mutex<(i64, i64)>,
    /// Outcomes waiting for the journal's next commit (see [`Inner::tx`]), in the order given.
    queue: Mutex<Vec<Queued>>,
}

/// An outcome recorded but not yet committed: it rides on the journal's next commit.
enum Queued {
    /// [`Ledger::mark_done`] of an object.
    Done(i64, Box<Outcome>),
    /// [`Writes::finish_write`] of a write ledger row.
    Wrote(i64, Wrote),
}

// The statements each object's copy runs: cached, and each prepared once (see
// `the_statements_each_object_runs_are_prepared_once`).
const FORGET_PARTS: &str = "DELETE FROM parts WHERE object_id = ?1";
const MARK_DONE: &str = "UPDATE objects SET state = 'done', error = NULL, upload_id = NULL, part_size = NULL, hash_next = NULL,
     hash_state = NULL, attempts = attempts + 1, sha256 = ?2, crc32c = ?3, dst_etag = ?4, verified_by = ?5, crc64nvme = ?6,
     src_attrs = ?7, lease_owner = NULL, lease_until = NULL, updated_at = datetime('now') WHERE id = ?1";
const UPLOAD_OF: &str = "SELECT upload_id, part_size FROM objects WHERE id = ?1";

/// Outcomes queued at most before they are committed on their own.
const MAX_QUEUED: usize = 256;

impl Queued {
    fn apply(&self, c: &Connection) -> rusqlite::Result<()> {
        match self {
            Queued::Done(id, o) => {
                c.prepare_cached(FORGET_PARTS)?.execute([id])?;
                let Outcome { copied, dst_etag, verified_by, src_attrs } = o.as_ref();
                let src_attrs = src_attrs.as_ref().map(|a| serde_json::to_string(a).expect("attributes serialize"));
                c.prepare_cached(MARK_DONE)?.execute(params![
                    id,
                    copied.sha256,
                    copied.crc32c,
                    dst_etag,
                    verified_by.as_str(),
                    copied.crc64nvme,
                    src_attrs
                ])?;
            }
            Queued::Wrote(row, wrote) => writes::finish_write(c, *row, wrote)?,
        }
        Ok(())
    }
}

impl Drop for Inner {
    // A journal dropped with outcomes queued (a run that ends without a last release) commits
    // them: only a kill loses them.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl SqliteJournal {
    /// Opens (creating and migrating if needed) the journal at `path`. Blocks: [`crate::open`]
    /// calls it on the blocking pool.
    pub fn open(path: &Path) -> Result<SqliteJournal> {
        let err = |source| JournalError::Sqlite { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(writes::SCHEMA).map_err(err)?;
        let j = Inner { conn: Mutex::new(conn), path: path.to_path_buf(), floor: Mutex::new((0, 0)), queue: Mutex::default() };
        let version = j.meta(SCHEMA_VERSION_META)?;
        match version.as_deref().map(|v| v.parse::<i64>().unwrap_or(-1)) {
            Some(v) if !(1..=SCHEMA_VERSION).contains(&v) => {
                return Err(JournalError::Version { path: path.into(), found: v, expected: SCHEMA_VERSION });
            }
            _ => {}
        }
        j.add_missing_columns()?;
        j.unpin_key()?;
        j.conn().execute_batch(INDEXES).map_err(j.err())?;
        j.conn().execute_batch(writes::INDEXES).map_err(j.err())?;
        if version.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
            j.set_meta(SCHEMA_VERSION_META, &SCHEMA_VERSION.to_string())?;
        }
        Ok(SqliteJournal(Arc::new(j)))
    }

    /// Runs `work` on tokio's blocking pool (on this thread when there is no runtime).
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.0.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.spawn_blocking(move || work(&inner)).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            Err(_) => work(&inner),
        }
    }
}

const SCHEMA_VERSION_META: &str = "schema_version";
const PASSES_META: &str = "passes";

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding it leaves no half transaction: rusqlite rolls back on drop.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        |source| JournalError::Sqlite { path: self.path.clone(), source }
    }

    fn queued(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `write` on `conn` (this journal's, locked) as one transaction that first commits
    /// every queued outcome. Outcomes are not commits of their own: a commit per object (three
    /// with the write ledger's) was most of the cost of copying small objects. They ride on
    /// the next commit — the next object's write ledger row, a part, a claim, a release — or
    /// are committed when [`MAX_QUEUED`] wait, or before any read that could see them
    /// missing. A kill loses at most the outcomes still queued, so the objects are copied
    /// again; a write the destination must not see before the journal has it (a ledger row, an
    /// upload id, a forgotten part) is never queued.
    fn tx<T>(&self, conn: &Connection, write: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut queue = self.queued();
        let done = (|| {
            let tx = conn.unchecked_transaction()?;
            for q in queue.iter() {
                q.apply(&tx)?;
            }
            let out = write(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        // A failed commit keeps the outcomes queued for the next.
        if done.is_ok() {
            queue.clear();
        }
        done.map_err(self.err())
    }

    /// [`Inner::tx`] on this journal's connection.
    fn write<T>(&self, write: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.tx(&self.conn(), write)
    }

    /// The connection, with every queued outcome committed: for reads that must see them.
    fn read(&self) -> Result<MutexGuard<'_, Connection>> {
        let conn = self.conn();
        if !self.queued().is_empty() {
            self.tx(&conn, |_| Ok(()))?;
        }
        Ok(conn)
    }

    /// The connection for a read of object `id`'s own rows: outcomes of other objects stay
    /// queued (the copy of the next object reads its upload while the last one's outcome waits).
    fn read_of(&self, id: i64) -> Result<MutexGuard<'_, Connection>> {
        let conn = self.conn();
        if self.queued().iter().any(|q| matches!(q, Queued::Done(of, _) if *of == id)) {
            self.tx(&conn, |_| Ok(()))?;
        }
        Ok(conn)
    }

    /// Commits every queued outcome.
    fn flush(&self) -> Result<()> {
        self.read().map(drop)
    }

    /// Queues an outcome for the next commit.
    fn enqueue(&self, q: Queued) -> Result<()> {
        let full = {
            let mut queue = self.queued();
            queue.push(q);
            queue.len() >= MAX_QUEUED
        };
        if full { self.flush() } else { Ok(()) }
    }

    /// Adds every column [`SCHEMA`] has and this journal's tables lack (a journal made by an
    /// older ferry), as `PRAGMA table_info` of a fresh copy of the schema declares it. Columns
    /// are only ever added, with their defaults; rows keep their values.
    fn add_missing_columns(&self) -> Result<()> {
        let fresh = Connection::open_in_memory().map_err(self.err())?;
        fresh.execute_batch(SCHEMA).map_err(self.err())?;
        fresh.execute_batch(writes::SCHEMA).map_err(self.err())?;
        let conn = self.conn();
        for table in ["meta", "objects", "parts", "runs", "writes"] {
            let have: std::collections::HashSet<String> = table_info(&conn, table).map_err(self.err())?.into_iter().map(|c| c.0).collect();
            for (name, kind, not_null, default) in table_info(&fresh, table).map_err(self.err())? {
                if have.contains(&name) {
                    continue;
                }
                let mut sql = format!("ALTER TABLE {table} ADD COLUMN {name} {kind}");
                if let Some(default) = default {
                    sql.push_str(&format!(" DEFAULT {default}"));
                }
                if not_null {
                    sql.push_str(" NOT NULL");
                }
                conn.execute_batch(&sql).map_err(self.err())?;
            }
        }
        Ok(())
    }

    /// Builds the objects table afresh where its key column was declared UNIQUE (a journal made
    /// before version 6): SQLite cannot drop a column's constraint, and an `--all-versions`
    /// job keeps a row per version of a key. Every row is copied with its id (parts and the
    /// write ledger name objects by id), in one transaction; the indexes are made after.
    fn unpin_key(&self) -> Result<()> {
        let conn = self.conn();
        let unique_key: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_index_list('objects') AS i
                  WHERE i.origin = 'u' AND (SELECT group_concat(name) FROM pragma_index_info(i.name)) = 'key')",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        if !unique_key {
            return Ok(());
        }
        // The schema's columns: the old table has each of them (added above).
        let fresh = Connection::open_in_memory().map_err(self.err())?;
        fresh.execute_batch(SCHEMA).map_err(self.err())?;
        let columns: Vec<String> = table_info(&fresh, "objects").map_err(self.err())?.into_iter().map(|c| c.0).collect();
        let columns = columns.join(", ");
        // The parts and the write ledger keep naming the same ids: their references are not
        // checked while the table is swapped (SQLite's own recipe for altering a table).
        let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).map_err(self.err())?;
        conn.pragma_update(None, "foreign_keys", false).map_err(self.err())?;
        let rebuilt = self.tx(&conn, |tx| {
            tx.execute_batch(&format!(
                "CREATE TABLE objects_v6 ({});
                 INSERT INTO objects_v6 ({columns}) SELECT {columns} FROM objects;
                 DROP TABLE objects;
                 ALTER TABLE objects_v6 RENAME TO objects;",
                objects_columns!()
            ))
        });
        conn.pragma_update(None, "foreign_keys", enforced).map_err(self.err())?;
        rebuilt
    }

    /// Runs `write` as a commit that is on disk when this returns (the WAL is fsynced), for writes
    /// that precede a side effect at the destination. Other commits are group-committed
    /// (`synchronous = NORMAL`): a power loss may forget the last of them, never a durable one,
    /// since the WAL keeps a prefix of its commits and this one's fsync covers all before it.
    fn durably<T>(&self, write: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL").map_err(self.err())?;
        let done = self.tx(&conn, write);
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(self.err())?;
        done
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read()?.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(self.err())
    }

    fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.write(|c| {
            c.execute("INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, value])
        })?;
        Ok(())
    }

    fn unseed(&self, generation: u32) -> Result<u64> {
        let n = self.write(|c| {
            c.execute(
                "DELETE FROM objects WHERE generation = ?1 AND state = 'pending' AND attempts = 0 AND upload_id IS NULL
                 AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.object_id = objects.id)",
                [generation],
            )
        })?;
        Ok(n as u64)
    }

    /// Inserts entries (with their route, why a layout refused or renamed them) in one
    /// transaction; keys already known keep their row.
    fn insert_rows<'a>(
        &self,
        generation: u32,
        rows: impl Iterator<Item = (&'a ObjectEntry, Option<&'a Route>, Option<&'a str>, Option<&'a str>)>,
    ) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO objects (generation, key, size, etag, version, src_crc32c, src_md5, content_type, metadata,
                                          device, src_path, dst_path, src_crc64, expect_sha256, state, error, renamed, storage_class,
                                          last_modified, pinned, headers)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21) ON CONFLICT DO NOTHING",
            )?;
            let no_route = Route::default();
            for (e, route, refused, renamed) in rows {
                let route = route.unwrap_or(&no_route);
                let meta = metadata_json(e);
                let (state, error) = seeded_state(e, refused);
                stmt.execute(params![
                    generation,
                    e.key,
                    e.size as i64,
                    e.etag,
                    e.version,
                    e.checksums.crc32c,
                    e.checksums.md5,
                    e.content_type,
                    meta,
                    route.device,
                    route.src_path,
                    route.dst_path,
                    e.checksums.crc64nvme,
                    route.expect_sha256,
                    state.as_str(),
                    error,
                    renamed,
                    storage_class_json(e),
                    rfc3339(e),
                    e.id().version.unwrap_or_default(),
                    headers_json(e)
                ])?;
            }
            Ok(())
        })
    }

    /// See [`Ledger::seed_generation`]. Both sides are walked in key order, in batches: up to
    /// [`MERGE_BATCH`] entries are read from the listing with the journal free, then merged with
    /// the rows after the last key merged in one transaction of at most [`MERGE_BATCH`] steps,
    /// the rows read in it before they are changed. Between batches the journal is free, so a
    /// merge of millions of keys never holds claims up for longer than one batch.
    /// (A delta merges its listing watched, in one transaction: `merge::merge_watched`.)
    fn seed_generation(&self, generation: u32, listing: &mut dyn Iterator<Item = ObjectEntry>) -> Result<GenerationDelta> {
        let mut delta = GenerationDelta::default();
        // Everything up to this key (of either side) is merged.
        let mut after = String::new();
        let mut chunk: std::collections::VecDeque<ObjectEntry> = Default::default();
        let (mut listing_done, mut journal_done) = (false, false);
        loop {
            if chunk.is_empty() && !listing_done {
                chunk.extend((&mut *listing).take(MERGE_BATCH));
                listing_done = chunk.len() < MERGE_BATCH;
            }
            if chunk.is_empty() && listing_done && journal_done {
                return Ok(delta);
            }
            self.write(|tx| {
                let mut rows: std::collections::VecDeque<(ObjectRow, Option<ObjectState>)> = tx
                    .prepare_cached(&format!("SELECT {ROW_COLUMNS}, deleted_from FROM objects WHERE key > ?1 ORDER BY key LIMIT ?2"))?
                    .query_map(params![after, MERGE_BATCH as i64], |r| {
                        let deleted_from = r.get_ref("deleted_from")?.as_str_or_null()?.and_then(ObjectState::parse);
                        Ok((row_from(r)?, deleted_from))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let page_full = rows.len() == MERGE_BATCH;
                for _ in 0..MERGE_BATCH {
                    let order = match (rows.front(), chunk.front()) {
                        (None, None) => break,
                        // The journal may have rows past this page: read them first.
                        (None, Some(_)) if page_full => break,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        // The listing may have this key in its next chunk.
                        (Some(_), None) if !listing_done => break,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (Some((row, _)), Some(entry)) => row.entry.key.as_str().cmp(entry.key.as_str()),
                    };
                    after = match order {
                        std::cmp::Ordering::Less => {
                            let (row, _) = rows.pop_front().expect("a row");
                            merge_gone(tx, generation, &row, &mut delta)?;
                            row.entry.key
                        }
                        std::cmp::Ordering::Greater => {
                            let e = chunk.pop_front().expect("an entry");
                            merge_added(tx, generation, &e)?;
                            delta.added += 1;
                            e.key
                        }
                        std::cmp::Ordering::Equal => {
                            let (row, deleted_from) = rows.pop_front().expect("a row");
                            let e = chunk.pop_front().expect("an entry");
                            merge_listed(tx, generation, &row, deleted_from, &e, &mut delta)?;
                            e.key
                        }
                    };
                }
                journal_done = rows.is_empty() && !page_full;
                Ok(())
            })?;
        }
    }

    fn begin_pass(&self, worker: &str) -> Result<Worker> {
        let pass = self.write(|tx| {
            let last: Option<String> = tx.query_row("SELECT value FROM meta WHERE name = ?1", [PASSES_META], |r| r.get(0)).optional()?;
            let pass = last.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![PASSES_META, pass.to_string()],
            )?;
            Ok(pass)
        })?;
        Ok(Worker { name: worker.to_string(), pass })
    }

    fn release_leases(&self) -> Result<u64> {
        let n = self.write(|c| c.execute("UPDATE objects SET lease_owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL", []))?;
        Ok(n as u64)
    }

    fn claim(&self, worker: &Worker, n: usize, lease: Lease) -> Result<Vec<ObjectRow>> {
        let mut floor = self.floor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if floor.0 != worker.pass {
            *floor = (worker.pass, 0);
        }
        let limit = n as i64;
        let mut rows = self.write(|tx| {
            // Objects whose lease ran out (a worker died or lost them), this pass's own excepted.
            let mut rows: Vec<ObjectRow> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM objects WHERE lease_until IS NOT NULL AND lease_until <= ?1 AND claim_pass IS NOT ?2
                     AND state IN ('pending', 'failed') ORDER BY id LIMIT ?3"
                ))?;
                stmt.query_map(params![lease.now, worker.pass, limit], row_from)?.collect::<rusqlite::Result<_>>()?
            };
            // Then fresh ones: pending and failed walked apart, each on its (state, id) index from
            // the pass's floor, and the lowest ids of both taken.
            let wanted = limit - rows.len() as i64;
            if wanted > 0 {
                let mut fresh: Vec<ObjectRow> = Vec::new();
                for state in [ObjectState::Pending, ObjectState::Failed] {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {ROW_COLUMNS} FROM objects WHERE state = ?1 AND id > ?2 AND lease_until IS NULL AND claim_pass IS NOT ?3
                         ORDER BY id LIMIT ?4"
                    ))?;
                    let page = stmt.query_map(params![state.as_str(), floor.1, worker.pass, wanted], row_from)?;
                    fresh.extend(page.collect::<rusqlite::Result<Vec<_>>>()?);
                }
                fresh.sort_by_key(|r| r.id);
                fresh.truncate(wanted as usize);
                // A key's versions (an `--all-versions` job) are never split between claims: the
                // caller writes them one after the other, oldest (lowest id) first, so the
                // destination's versions come in the source's order.
                if let Some(last) = fresh.last().filter(|r| r.entry.pinned) {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {ROW_COLUMNS} FROM objects WHERE key = ?1 AND id > ?2 AND state IN ('pending', 'failed')
                         AND lease_until IS NULL AND claim_pass IS NOT ?3 ORDER BY id"
                    ))?;
                    let rest = stmt.query_map(params![last.entry.key, last.id, worker.pass], row_from)?;
                    let rest = rest.collect::<rusqlite::Result<Vec<_>>>()?;
                    fresh.extend(rest);
                }
                if let Some(last) = fresh.last() {
                    floor.1 = last.id;
                }
                rows.extend(fresh);
            }
            {
                let mut stmt = tx.prepare_cached("UPDATE objects SET lease_owner = ?2, lease_until = ?3, claim_pass = ?4 WHERE id = ?1")?;
                for r in &rows {
                    stmt.execute(params![r.id, worker.name, lease.until(), worker.pass])?;
                }
            }
            Ok(rows)
        })?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn release(&self, ids: &[i64]) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE objects SET lease_owner = NULL, lease_until = NULL WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
    }

    fn mark_failed(&self, id: i64, error: &str) -> Result<()> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE objects SET state = 'failed', error = ?2, attempts = attempts + 1, lease_owner = NULL, lease_until = NULL,
                 updated_at = datetime('now') WHERE id = ?1",
            )?
            .execute(params![id, error])
        })?;
        Ok(())
    }

    fn restart_object(&self, id: i64, entry: &ObjectEntry, note: &str) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE objects SET size = ?2, etag = ?3, version = ?4, src_crc32c = ?5, src_md5 = ?6, note = ?7, last_modified = ?8 WHERE id = ?1",
                params![id, entry.size as i64, entry.etag, entry.version, entry.checksums.crc32c, entry.checksums.md5, note, rfc3339(entry)],
            )
        })?;
        Ok(())
    }

    fn largest_pending(&self) -> Result<Option<(String, u64)>> {
        self.read()?
            .query_row("SELECT key, size FROM objects WHERE state IN ('pending', 'failed') ORDER BY size DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .optional()
            .map_err(self.err())
    }

    fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ObjectRow>> {
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached(sql).map_err(self.err())?;
        let rows = stmt.query_map(params, row_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn get(&self, key: &str) -> Result<Option<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE key = ?1");
        self.read()?.query_row(&sql, [key], row_from).optional().map_err(self.err())
    }

    fn has(&self, sql: &str, params: impl rusqlite::Params) -> Result<bool> {
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached(sql).map_err(self.err())?;
        stmt.exists(params).map_err(self.err())
    }

    fn count(&self, sql: &str) -> Result<u64> {
        self.read()?.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(self.err())
    }

    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        self.write(|c| c.prepare_cached(sql)?.execute(params))?;
        Ok(())
    }

    fn counts(&self) -> Result<StatusCounts> {
        let mut c = StatusCounts::default();
        let conn = self.read()?;
        let mut stmt = conn.prepare("SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM objects GROUP BY state").map_err(self.err())?;
        let rows =
            stmt.query_map([], |r| Ok((state_from(r, 0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))).map_err(self.err())?;
        for row in rows {
            let (state, n, bytes) = row.map_err(self.err())?;
            match state {
                ObjectState::Refused => c.refused = n,
                ObjectState::Skipped => c.skipped = n,
                ObjectState::PendingDelete => c.pending_delete = n,
                ObjectState::Deleted => c.deleted = n,
                ObjectState::Done | ObjectState::Failed | ObjectState::Pending => {
                    c.objects += n;
                    c.bytes += bytes;
                    match state {
                        ObjectState::Done => (c.done, c.done_bytes) = (n, bytes),
                        ObjectState::Failed => c.failed = n,
                        _ => c.pending += n,
                    }
                }
            }
        }
        let (requested, restoring): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(state <> ?1), 0) FROM objects WHERE restore_requested IS NOT NULL",
                [ObjectState::Done.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err())?;
        (c.restores_requested, c.restoring) = (requested as u64, restoring as u64);
        Ok(c)
    }

    fn restore_requested(&self, id: i64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE objects SET restore_requested = ?2, updated_at = datetime('now') WHERE id = ?1",
                params![id, chrono::Utc::now().to_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn skipped_by_reason(&self) -> Result<std::collections::BTreeMap<SkipReason, u64>> {
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached("SELECT error, COUNT(*) FROM objects WHERE state = ?1 GROUP BY error").map_err(self.err())?;
        let rows = stmt
            .query_map([ObjectState::Skipped.as_str()], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(self.err())?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (reason, n) = row.map_err(self.err())?;
            // A reason this ferry does not know (a newer one wrote it) still counts as a loss.
            let reason = reason.as_deref().and_then(SkipReason::parse).unwrap_or(SkipReason::InvalidName);
            *out.entry(reason).or_default() += n;
        }
        Ok(out)
    }

    fn skipped(&self, after: i64, limit: usize) -> Result<Vec<(i64, String, SkipReason)>> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached("SELECT id, key, error FROM objects WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![ObjectState::Skipped.as_str(), after, limit as i64], |r| {
                let reason: Option<String> = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, reason.as_deref().and_then(SkipReason::parse).unwrap_or(SkipReason::InvalidName)))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn upload_of(&self, id: i64) -> Result<Option<(String, u64)>> {
        let row: (Option<String>, Option<i64>) = self
            .read_of(id)?
            .prepare_cached(UPLOAD_OF)
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(self.err())?;
        Ok(match row {
            (Some(upload_id), Some(part_size)) => Some((upload_id, part_size as u64)),
            _ => None,
        })
    }

    fn hash_state(&self, id: i64) -> Result<Option<(u32, Vec<u8>)>> {
        let row: (Option<u32>, Option<Vec<u8>>) = self
            .read_of(id)?
            .prepare_cached("SELECT hash_next, hash_state FROM objects WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(self.err())?;
        Ok(match row {
            (Some(next), Some(state)) => Some((next, state)),
            _ => None,
        })
    }

    fn parts(&self, id: i64) -> Result<Vec<PartRow>> {
        let conn = self.read_of(id)?;
        let mut stmt = conn
            .prepare_cached("SELECT part_no, offset, size, crc32c, etag FROM parts WHERE object_id = ?1 ORDER BY part_no")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(PartRow {
                    part_no: r.get(0)?,
                    offset: r.get::<_, i64>(1)? as u64,
                    size: r.get::<_, i64>(2)? as u64,
                    crc32c: r.get(3)?,
                    etag: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn clear_upload(&self, id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM parts WHERE object_id = ?1", [id])?;
            tx.execute("UPDATE objects SET upload_id = NULL, part_size = NULL, hash_next = NULL, hash_state = NULL WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn open_uploads(&self) -> Result<Vec<OpenUpload>> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare(
                "SELECT o.id, o.key, o.upload_id, COUNT(p.part_no), COALESCE(SUM(p.size), 0) FROM objects o
                 LEFT JOIN parts p ON p.object_id = o.id WHERE o.upload_id IS NOT NULL GROUP BY o.id ORDER BY o.id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OpenUpload {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    upload_id: r.get(2)?,
                    parts: r.get::<_, i64>(3)? as u64,
                    bytes: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn index_routes(&self) -> Result<()> {
        self.write(|c| {
            c.execute_batch(
                "CREATE INDEX IF NOT EXISTS objects_by_size ON objects(size DESC, id);
                 CREATE INDEX IF NOT EXISTS objects_by_dst_path ON objects(dst_path);
                 CREATE INDEX IF NOT EXISTS objects_by_src_path ON objects(device, src_path);",
            )
        })
    }

    fn noted(&self, after_key: &str, limit: usize) -> Result<Vec<Noted>> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, dst_path, state, error, renamed FROM objects WHERE (state = 'refused' OR renamed IS NOT NULL) AND key > ?1
                 ORDER BY key LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![after_key, limit as i64], |r| {
                let refused = state_from(r, 2)? == ObjectState::Refused;
                Ok(Noted {
                    key: r.get(0)?,
                    dst_path: if refused { None } else { r.get(1)? },
                    refused: if refused { Some(r.get::<_, Option<String>>(3)?.unwrap_or_default()) } else { None },
                    renamed: if refused { None } else { r.get(4)? },
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn path_conflicts(&self, fold_case: bool) -> Result<Vec<(i64, String, String)>> {
        let mut out = Vec::new();
        let conn = self.read()?;
        // A file whose path + '/' starts another path: the range scan [p/, p0) on the index.
        let mut stmt = conn
            .prepare(
                "SELECT a.id, a.key, (SELECT b.dst_path FROM objects b WHERE b.dst_path >= a.dst_path || '/' AND b.dst_path < a.dst_path || '0'
                                        AND b.state != 'refused' LIMIT 1)
                 FROM objects a WHERE a.dst_path IS NOT NULL AND a.state != 'refused'",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)))
            .map_err(self.err())?;
        for row in rows {
            if let (id, key, Some(other)) = row.map_err(self.err())? {
                out.push((id, key, format!("{other} needs it as a folder")));
            }
        }
        if fold_case {
            conn.execute_batch("CREATE INDEX IF NOT EXISTS objects_by_folded_path ON objects(lower(dst_path))").map_err(self.err())?;
            let mut stmt = conn
                .prepare(
                    "SELECT a.id, a.key, b.dst_path FROM objects a JOIN objects b ON lower(a.dst_path) = lower(b.dst_path) AND a.id > b.id
                     WHERE a.dst_path IS NOT NULL AND a.state != 'refused' AND b.state != 'refused'",
                )
                .map_err(self.err())?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).map_err(self.err())?;
            for row in rows {
                let (id, key, other) = row.map_err(self.err())?;
                out.push((id, key, format!("same name as {other} but for case, which the device does not tell apart")));
            }
        }
        Ok(out)
    }

    fn unplaced(&self, after: Option<(u64, i64)>, limit: usize) -> Result<Vec<(i64, u64)>> {
        let (size, id) = after.map(|(s, i)| (s as i64, i)).unwrap_or((i64::MAX, 0));
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, size FROM objects WHERE state IN ('pending', 'failed') AND device IS NULL
                 AND (size < ?1 OR (size = ?1 AND id > ?2)) ORDER BY size DESC, id LIMIT ?3",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![size, id, limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    fn place_all(&self, placed: &[(i64, u32)]) -> Result<()> {
        self.durably(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE objects SET device = ?2 WHERE id = ?1")?;
            for (id, device) in placed {
                stmt.execute(params![id, device])?;
            }
            Ok(())
        })
    }

    fn on_device(&self, device: u32, done: bool) -> Result<(u64, u64)> {
        let sql = match done {
            true => "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE device = ?1 AND state = 'done'",
            false => "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE device = ?1 AND state IN ('pending', 'failed')",
        };
        self.read()?.query_row(sql, [device], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))).map_err(self.err())
    }
}

/// An entry's storage class as the journal stores it: JSON, or NULL when it has none.
fn storage_class_json(e: &ObjectEntry) -> Option<String> {
    e.storage_class.as_ref().map(|c| serde_json::to_string(c).expect("class serializes"))
}

/// Steps of a generation merge in one transaction, and entries of its listing read at a time.
const MERGE_BATCH: usize = 1024;

/// A generation merge met a key only in the listing: a new object.
fn merge_added(tx: &Connection, generation: u32, e: &ObjectEntry) -> rusqlite::Result<()> {
    let (state, error) = seeded_state(e, None);
    tx.prepare_cached(
        "INSERT INTO objects (generation, key, size, etag, version, src_crc32c, src_md5, src_crc64, content_type, metadata, state, error,
                              storage_class, last_modified, headers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        generation,
        e.key,
        e.size as i64,
        e.etag,
        e.version,
        e.checksums.crc32c,
        e.checksums.md5,
        e.checksums.crc64nvme,
        e.content_type,
        metadata_json(e),
        state.as_str(),
        error,
        storage_class_json(e),
        rfc3339(e),
        headers_json(e)
    ])?;
    Ok(())
}

/// An entry's last-modified time as the journal stores it.
fn rfc3339(e: &ObjectEntry) -> Option<String> {
    e.last_modified.map(stored_time)
}

/// A time as the journal stores it: RFC 3339 in UTC to the millisecond, one width for every
/// time, so stored times compare as text ([`Ledger::lag`]'s ages).
fn stored_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A generation merge met a key only in the journal: gone from the source. Whatever the row
/// was (copied, pending, refused by a layout, skipped by the listing) it is now a pending
/// delete; the state it had is kept beside it, and so is its `error` (a refusal's reason), so
/// a key that comes back is refused again.
fn merge_gone(tx: &Connection, generation: u32, row: &ObjectRow, delta: &mut GenerationDelta) -> rusqlite::Result<()> {
    // Gone already: not an object of either generation, so not counted.
    if matches!(row.state, ObjectState::PendingDelete | ObjectState::Deleted) {
        return Ok(());
    }
    delta.deleted += 1;
    tx.prepare_cached("UPDATE objects SET generation = ?1, state = ?3, deleted_from = ?4, updated_at = datetime('now') WHERE id = ?2")?
        .execute(params![generation, row.id, ObjectState::PendingDelete.as_str(), row.state.as_str()])?;
    Ok(())
}

/// A generation merge met a key on both sides: unchanged, or changed (copied again from the
/// start), or back after a delete.
fn merge_listed(
    tx: &Connection,
    generation: u32,
    row: &ObjectRow,
    deleted_from: Option<ObjectState>,
    e: &ObjectEntry,
    delta: &mut GenerationDelta,
) -> rusqlite::Result<()> {
    let gone = matches!(row.state, ObjectState::PendingDelete | ObjectState::Deleted);
    if row.state == ObjectState::PendingDelete {
        delta.returned += 1;
        // Gone from one listing (a listing that came up short, say) and back as it was copied:
        // the destination still holds that copy, so it is done again.
        // …unless a delete of it was begun (a kill or a lost answer may have left it done).
        let delete_begun: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM writes WHERE object = ?1 AND op = 'delete')")?
            .query_row([row.id], |r| r.get(0))?;
        if deleted_from == Some(ObjectState::Done) && !delete_begun && row.entry.same_version(e) {
            delta.unchanged += 1;
            tx.prepare_cached("UPDATE objects SET state = ?2, deleted_from = NULL, updated_at = datetime('now') WHERE id = ?1")?
                .execute(params![row.id, ObjectState::Done.as_str()])?;
            return Ok(());
        }
    }
    if !gone && row.entry.same_version(e) {
        delta.unchanged += 1;
        // The same content, touched: its time is kept (the lag of a later change is measured
        // from it), and nothing is copied.
        // Compared to the millisecond, as a manifest keeps it.
        if let (Some(had), Some(now)) = (row.entry.last_modified, e.last_modified)
            && had.timestamp_millis() != now.timestamp_millis()
        {
            delta.touched += 1;
            tx.prepare_cached("UPDATE objects SET last_modified = ?2 WHERE id = ?1")?.execute(params![row.id, stored_time(now)])?;
        }
        return Ok(());
    }
    delta.changed += 1;
    // A layout's refusal is about the name, which has not changed, even across a delete.
    let was = if gone { deleted_from } else { Some(row.state) };
    let (state, error) = match (was, e.skipped) {
        (Some(ObjectState::Refused), None) => (ObjectState::Refused, row.error.as_deref()),
        _ => seeded_state(e, None),
    };
    // A changed object is copied again from the start: its parts and running hash are of the
    // old version, and so is its placement on an export's device (its path there, and a digest
    // a shipment declared) or its path on an ingest's: it is placed again like an added key,
    // or read from the source by its key. Its open upload (if any) stays known, so it is reused
    // or aborted, never forgotten at the destination.
    tx.prepare_cached(
        "UPDATE objects SET generation = ?1, size = ?3, etag = ?4, version = ?5, src_crc32c = ?6, src_md5 = ?7, src_crc64 = ?8,
         content_type = ?9, metadata = ?10, state = ?11, error = ?12, storage_class = ?13, restore_requested = NULL, attempts = 0, note = NULL, last_modified = ?14, headers = ?15,
         sha256 = NULL, crc32c = NULL, crc64nvme = NULL, dst_etag = NULL, verified_by = NULL, hash_next = NULL, hash_state = NULL,
         device = NULL, src_path = NULL, dst_path = NULL, renamed = NULL, expect_sha256 = NULL, deleted_from = NULL, updated_at = datetime('now')
         WHERE id = ?2",
    )?
    .execute(params![
        generation,
        row.id,
        e.size as i64,
        e.etag,
        e.version,
        e.checksums.crc32c,
        e.checksums.md5,
        e.checksums.crc64nvme,
        e.content_type,
        metadata_json(e),
        state.as_str(),
        error,
        storage_class_json(e),
        rfc3339(e),
        headers_json(e)
    ])?;
    tx.prepare_cached(FORGET_PARTS)?.execute([row.id])?;
    Ok(())
}

/// An entry's user metadata as the journal stores it: JSON, or NULL when it has none.
fn metadata_json(e: &ObjectEntry) -> Option<String> {
    (!e.metadata.is_empty()).then(|| serde_json::to_string(&e.metadata).expect("map serializes"))
}

/// An entry's system headers as the journal stores them: JSON, or NULL when it has none.
fn headers_json(e: &ObjectEntry) -> Option<String> {
    (!e.headers.is_empty()).then(|| serde_json::to_string(&e.headers).expect("headers serialize"))
}

#[async_trait]
impl Ledger for SqliteJournal {
    async fn meta(&self, name: &str) -> Result<Option<String>> {
        self.0.meta(name)
    }

    async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.0.set_meta(name, value)
    }

    async fn seed(&self, generation: u32, entries: &[ObjectEntry]) -> Result<()> {
        let entries = entries.to_vec();
        self.blocking(move |j| j.insert_rows(generation, entries.iter().map(|e| (e, None, None, None)))).await
    }

    async fn unseed(&self, generation: u32) -> Result<u64> {
        self.blocking(move |j| j.unseed(generation)).await
    }

    async fn seed_generation(&self, generation: u32, mut listing: Box<dyn Iterator<Item = ObjectEntry> + Send>) -> Result<GenerationDelta> {
        self.blocking(move |j| j.seed_generation(generation, &mut listing)).await
    }

    async fn merge_generation(
        &self,
        generation: u32,
        mut listing: Box<dyn Iterator<Item = ObjectEntry> + Send>,
        mut watch: Box<dyn MergeWatch>,
        meta: Vec<(String, String)>,
    ) -> Result<(GenerationDelta, bool)> {
        self.blocking(move |j| j.merge_generation(generation, &mut listing, watch.as_mut(), &meta)).await
    }

    async fn lag(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Lag> {
        let ago = |minutes: i64| stored_time(now - chrono::Duration::minutes(minutes));
        let conn = self.0.read()?;
        let mut lag = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(last_modified),
                        COALESCE(SUM(last_modified >= ?1), 0), COALESCE(SUM(last_modified < ?1 AND last_modified >= ?2), 0),
                        COALESCE(SUM(last_modified < ?2 AND last_modified >= ?3), 0), COALESCE(SUM(last_modified < ?3), 0),
                        COALESCE(SUM(last_modified IS NULL), 0)
                 FROM objects WHERE state IN ('pending', 'failed')",
                params![ago(1), ago(15), ago(60)],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
                    let oldest =
                        r.get::<_, Option<String>>(2)?.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc());
                    Ok(Lag {
                        at: now,
                        objects: n(0)?,
                        bytes: n(1)?,
                        deletes: 0,
                        oldest_change: oldest,
                        oldest_age_seconds: oldest.map(|t| (now - t).num_seconds().max(0) as u64),
                        under_1m: n(3)?,
                        from_1m_to_15m: n(4)?,
                        from_15m_to_1h: n(5)?,
                        over_1h: n(6)?,
                        age_unknown: n(7)?,
                    })
                },
            )
            .map_err(self.0.err())?;
        lag.deletes = conn
            .query_row("SELECT COUNT(*) FROM objects WHERE state = ?1", [ObjectState::PendingDelete.as_str()], |r| r.get::<_, i64>(0))
            .map_err(self.0.err())? as u64;
        Ok(lag)
    }

    async fn mark_equal_done(&self, entries: &[(ObjectEntry, Option<String>)], note: &str) -> Result<u64> {
        let entries = entries.to_vec();
        let note = note.to_string();
        self.blocking(move |j| {
            j.write(|tx| {
                let mut stmt = tx.prepare_cached(
                    "UPDATE objects SET state = 'done', note = ?4, dst_etag = ?5, updated_at = datetime('now')
                     WHERE key = ?1 AND size = ?2 AND etag = ?3 AND state = 'pending'",
                )?;
                let mut n = 0;
                // Without an entity tag to compare, nothing is taken as equal.
                for (e, held) in entries.iter().filter(|(e, _)| e.skipped.is_none() && e.etag.is_some()) {
                    n += stmt.execute(params![e.key, e.size as i64, e.etag, note, held])? as u64;
                }
                Ok(n)
            })
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<ObjectRow>> {
        let mut rows = Vec::with_capacity(keys.len());
        // Within SQLite's limit of bound parameters per statement.
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE key IN ({marks}) ORDER BY key");
            rows.extend(self.0.rows(&sql, rusqlite::params_from_iter(chunk))?);
        }
        rows.sort_by(|a, b| a.entry.key.cmp(&b.entry.key));
        Ok(rows)
    }

    async fn mark_deleted(&self, id: i64) -> Result<()> {
        self.0.execute(
            "UPDATE objects SET state = ?2, lease_owner = NULL, lease_until = NULL, updated_at = datetime('now') WHERE id = ?1 AND state = ?3",
            params![id, ObjectState::Deleted.as_str(), ObjectState::PendingDelete.as_str()],
        )
    }

    async fn begin_pass(&self, worker: &str) -> Result<Worker> {
        self.0.begin_pass(worker)
    }

    async fn release_leases(&self) -> Result<u64> {
        self.blocking(|j| j.release_leases()).await
    }

    // A claim writes up to a batch of rows, and a release at the end of a pass may cover
    // thousands (a full device's objects): both on the blocking pool, like seeding.
    async fn claim(&self, worker: &Worker, n: usize, lease: Lease) -> Result<Vec<ObjectRow>> {
        let worker = worker.clone();
        self.blocking(move |j| j.claim(&worker, n, lease)).await
    }

    async fn release(&self, ids: &[i64]) -> Result<()> {
        // Even with nothing to release: the end of a pass commits the outcomes still queued.
        let ids = ids.to_vec();
        self.blocking(move |j| j.release(&ids)).await
    }

    async fn mark_done(&self, id: i64, outcome: &Outcome) -> Result<()> {
        self.0.enqueue(Queued::Done(id, Box::new(outcome.clone())))
    }

    async fn mark_failed(&self, id: i64, error: &str) -> Result<()> {
        self.0.mark_failed(id, error)
    }

    async fn restart_object(&self, id: i64, entry: &ObjectEntry, note: &str) -> Result<()> {
        self.0.restart_object(id, entry, note)
    }

    async fn largest_pending(&self) -> Result<Option<(String, u64)>> {
        self.blocking(|j| j.largest_pending()).await
    }

    async fn in_state(&self, state: ObjectState, after: i64, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
        self.0.rows(&sql, params![state.as_str(), after, limit as i64])
    }

    async fn page(&self, after: i64, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE id > ?1 ORDER BY id LIMIT ?2");
        self.0.rows(&sql, params![after, limit as i64])
    }

    async fn has_key(&self, key: &str) -> Result<bool> {
        self.0.has("SELECT 1 FROM objects WHERE key = ?1", [key])
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectRow>> {
        self.0.get(key)
    }

    async fn get_object(&self, id: ferry_core::ObjectId<'_>) -> Result<Option<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE key = ?1 AND pinned = ?2");
        self.0.read()?.query_row(&sql, params![id.key, id.version.unwrap_or_default()], row_from).optional().map_err(self.0.err())
    }

    async fn counts(&self) -> Result<StatusCounts> {
        self.blocking(|j| j.counts()).await
    }

    async fn restore_requested(&self, id: i64) -> Result<()> {
        self.0.restore_requested(id)
    }

    async fn skipped_by_reason(&self) -> Result<std::collections::BTreeMap<SkipReason, u64>> {
        self.blocking(|j| j.skipped_by_reason()).await
    }

    async fn skipped(&self, after: i64, limit: usize) -> Result<Vec<(i64, String, SkipReason)>> {
        self.0.skipped(after, limit)
    }
}

#[async_trait]
impl Uploads for SqliteJournal {
    async fn upload_of(&self, id: i64) -> Result<Option<(String, u64)>> {
        self.0.upload_of(id)
    }

    async fn set_upload(&self, id: i64, upload_id: Option<&str>, part_size: u64) -> Result<()> {
        let upload_id = upload_id.map(str::to_string);
        // Waits for an fsync: off the executor.
        self.blocking(move |j| {
            j.durably(|c| {
                c.execute("UPDATE objects SET upload_id = ?2, part_size = ?3 WHERE id = ?1", params![id, upload_id, part_size as i64])
            })
            .map(|_| ())
        })
        .await
    }

    async fn clear_upload(&self, id: i64) -> Result<()> {
        self.0.clear_upload(id)
    }

    async fn open_uploads(&self) -> Result<Vec<OpenUpload>> {
        self.blocking(|j| j.open_uploads()).await
    }

    async fn set_hash_state(&self, id: i64, next: u32, state: &[u8]) -> Result<()> {
        self.0.execute("UPDATE objects SET hash_next = ?2, hash_state = ?3 WHERE id = ?1", params![id, next, state])
    }

    async fn hash_state(&self, id: i64) -> Result<Option<(u32, Vec<u8>)>> {
        self.0.hash_state(id)
    }

    async fn record_part(&self, id: i64, p: &PartRow) -> Result<()> {
        self.0.execute(
            "INSERT OR REPLACE INTO parts (object_id, part_no, offset, size, crc32c, etag) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, p.part_no, p.offset as i64, p.size as i64, p.crc32c, p.etag],
        )
    }

    async fn forget_part(&self, id: i64, part_no: u32) -> Result<()> {
        self.0.execute("DELETE FROM parts WHERE object_id = ?1 AND part_no = ?2", params![id, part_no])
    }

    async fn parts(&self, id: i64) -> Result<Vec<PartRow>> {
        self.0.parts(id)
    }

    async fn note_orphan(&self, id: i64) -> Result<()> {
        self.0.execute("UPDATE objects SET orphans = orphans + 1 WHERE id = ?1", [id])
    }

    async fn possible_orphans(&self) -> Result<u64> {
        self.blocking(|j| j.count("SELECT COALESCE(SUM(orphans), 0) FROM objects")).await
    }
}

#[async_trait]
impl Routes for SqliteJournal {
    async fn adopt_identity(&self, entries: &[ObjectEntry]) -> Result<u64> {
        let entries = entries.to_vec();
        self.blocking(move |j| {
            j.write(|tx| {
                let mut stmt = tx.prepare_cached(
                    "UPDATE objects SET etag = ?3, version = ?4, last_modified = ?5, storage_class = ?6,
                     metadata = COALESCE(metadata, ?7), content_type = COALESCE(content_type, ?8), headers = COALESCE(headers, ?12),
                     src_crc32c = COALESCE(src_crc32c, ?9), src_md5 = COALESCE(src_md5, ?10), src_crc64 = COALESCE(src_crc64, ?11),
                     updated_at = datetime('now')
                     WHERE key = ?1 AND pinned = '' AND size = ?2 AND device IS NOT NULL",
                )?;
                let mut n = 0;
                for e in entries.iter().filter(|e| e.skipped.is_none()) {
                    n += stmt.execute(params![
                        e.key,
                        e.size as i64,
                        e.etag,
                        e.version,
                        rfc3339(e),
                        storage_class_json(e),
                        metadata_json(e),
                        e.content_type,
                        e.checksums.crc32c,
                        e.checksums.md5,
                        e.checksums.crc64nvme,
                        headers_json(e),
                    ])? as u64;
                }
                Ok(n)
            })
        })
        .await
    }

    async fn leave_devices(&self, meta: &[(String, String)]) -> Result<u64> {
        let meta = meta.to_vec();
        self.blocking(move |j| {
            j.write(|tx| {
                tx.execute(
                    "UPDATE objects SET state = 'pending', attempts = 0, error = NULL, updated_at = datetime('now'),
                     note = 'copied again from the source: the shipped manifest did not list it at the size it was shipped'
                     WHERE device IS NOT NULL AND etag IS NULL AND version IS NULL AND state IN ('done', 'failed')",
                    [],
                )?;
                // What the shipment carried of each object's attributes goes with its route:
                // read from the source, an object has what the source's read gives it (and
                // `src_attrs` keeps what the copy wrote, for verify and the next delta).
                let left = tx.execute(
                    "UPDATE objects SET device = NULL, src_path = NULL, dst_path = NULL, expect_sha256 = NULL, updated_at = datetime('now'),
                     content_type = NULL, metadata = NULL, headers = NULL
                     WHERE device IS NOT NULL OR src_path IS NOT NULL OR expect_sha256 IS NOT NULL",
                    [],
                )?;
                let mut set =
                    tx.prepare_cached("INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2")?;
                for (name, value) in &meta {
                    set.execute(params![name, value])?;
                }
                Ok(left as u64)
            })
        })
        .await
    }

    async fn seed_routed(&self, generation: u32, entries: &[RoutedEntry]) -> Result<()> {
        let entries = entries.to_vec();
        self.blocking(move |j| {
            j.insert_rows(generation, entries.iter().map(|r| (&r.entry, Some(&r.route), r.refused.as_deref(), r.renamed.as_deref())))
        })
        .await
    }

    async fn index_routes(&self) -> Result<()> {
        self.blocking(|j| j.index_routes()).await
    }

    async fn path_conflicts(&self, fold_case: bool) -> Result<Vec<(i64, String, String)>> {
        self.blocking(move |j| j.path_conflicts(fold_case)).await
    }

    async fn refuse(&self, id: i64, reason: &str) -> Result<()> {
        self.0.execute("UPDATE objects SET state = 'refused', error = ?2, updated_at = datetime('now') WHERE id = ?1", params![id, reason])
    }

    async fn noted(&self, after_key: &str, limit: usize) -> Result<Vec<Noted>> {
        self.0.noted(after_key, limit)
    }

    async fn renamed_count(&self) -> Result<u64> {
        self.blocking(|j| j.count("SELECT COUNT(*) FROM objects WHERE renamed IS NOT NULL AND state != 'refused'")).await
    }

    async fn unplaced(&self, after: Option<(u64, i64)>, limit: usize) -> Result<Vec<(i64, u64)>> {
        self.0.unplaced(after, limit)
    }

    async fn place(&self, id: i64, device: Option<u32>) -> Result<()> {
        self.0.execute("UPDATE objects SET device = ?2 WHERE id = ?1", params![id, device])
    }

    async fn place_all(&self, placed: &[(i64, u32)]) -> Result<()> {
        let placed = placed.to_vec();
        // Waits for an fsync: off the executor.
        self.blocking(move |j| j.place_all(&placed)).await
    }

    async fn on_device(&self, device: u32, done: bool) -> Result<(u64, u64)> {
        self.blocking(move |j| j.on_device(device, done)).await
    }

    async fn done_on_device(&self, device: u32, after_path: &str, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql =
            format!("SELECT {ROW_COLUMNS} FROM objects WHERE device = ?1 AND state = 'done' AND dst_path > ?2 ORDER BY dst_path LIMIT ?3");
        self.0.rows(&sql, params![device, after_path, limit as i64])
    }

    async fn has_src_path(&self, device: u32, path: &str) -> Result<bool> {
        self.0.has("SELECT 1 FROM objects WHERE device = ?1 AND src_path = ?2", params![device, path])
    }
}

#[cfg(test)]
mod tests;

#[async_trait]
impl Writes for SqliteJournal {
    async fn last_put(&self, object: i64, target: &str) -> Result<Option<Wrote>> {
        let conn = self.0.read()?;
        conn.prepare_cached(
            "SELECT wrote_size, wrote_etag, wrote_version FROM writes WHERE object = ?1 AND target = ?2 AND op = 'put' AND done = 1 AND undo_state IS NOT 'done'
             ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![object, target], |r| {
                Ok(Wrote { size: r.get::<_, Option<i64>>(0)?.unwrap_or(0) as u64, etag: r.get(1)?, version: r.get(2)? })
            })
            .optional()
        })
        .map_err(self.0.err())
    }

    async fn begin_run(&self, kind: RunKind, generation: u32) -> Result<RunId> {
        self.0.write(|c| writes::begin_run(c, kind, generation))
    }

    async fn runs(&self) -> Result<Vec<RunRow>> {
        self.blocking(|j| writes::runs(&*j.read()?).map_err(j.err())).await
    }

    async fn set_backup(&self, row: i64, backup: &Kept) -> Result<()> {
        self.0.write(|c| writes::set_backup(c, row, backup))
    }

    async fn prior_of(&self, row: i64) -> Result<(Prior, Option<Kept>)> {
        writes::prior_of(&*self.0.read()?, row).map_err(self.0.err())
    }

    async fn undo_groups(&self, target: &str, from: RunId, after_key: &str, limit: usize) -> Result<Vec<UndoGroup>> {
        let (target, after_key) = (target.to_string(), after_key.to_string());
        self.blocking(move |j| writes::undo_groups(&*j.read()?, &target, from, &after_key, limit).map_err(j.err())).await
    }

    async fn begin_undo(&self, rows: &[i64], by: RunId, object: i64) -> Result<()> {
        self.0.write(|c| {
            writes::mark_undo(c, rows, by, UndoState::Begun)?;
            writes::object_undoing(c, object, by)
        })
    }

    async fn finish_undo(&self, rows: &[i64], by: RunId, object: i64, left: Undone, now: Option<&Wrote>) -> Result<()> {
        self.0.write(|c| {
            writes::mark_undo(c, rows, by, UndoState::Done)?;
            if let (Some(first), Some(now), Undone::Restored) = (rows.first(), now, left) {
                writes::earlier_put_left(c, *first, now)?;
            }
            writes::object_undone(c, object, by, left)
        })
    }

    async fn begin_write(&self, run: RunId, intent: &Intent<'_>) -> Result<i64> {
        self.0.write(|c| writes::begin_write(c, run, intent))
    }

    async fn finish_write(&self, row: i64, wrote: &Wrote) -> Result<()> {
        self.0.enqueue(Queued::Wrote(row, wrote.clone()))
    }

    async fn writes(&self, run: Option<RunId>, after: i64, limit: usize) -> Result<Vec<WriteRow>> {
        writes::writes(&*self.0.read()?, run, after, limit).map_err(self.0.err())
    }
}
