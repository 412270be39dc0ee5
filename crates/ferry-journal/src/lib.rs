//! The durable state of a job: which objects are done, pending or failed, their parts, and what
//! the copy proved about them.
//!
//! The journal is a SQLite database in the job directory (`journal.sqlite`, WAL mode). It is
//! seeded from a sealed manifest generation, then updated after every side effect the engine
//! has at the destination, so a re-run copies only what is not done. Commits are group-committed
//! (`synchronous = NORMAL`) except those that must be on disk before the side effect they
//! precede (an upload id before the upload is created, a device placement before the file is
//! written). Opening adds any column the schema has and an older journal lacks. It owns state only: it
//! never talks to a provider, and never stores a credential (nothing given to it carries one).
//!
//! # Layout
//! - [`Journal`]: open/migrate, seed, claim pending work, record parts and outcomes.
//! - [`ObjectRow`], [`Outcome`], [`StatusCounts`]: what goes in and comes out.
//! - [`Route`]: for disk exports and ingests, which device an object is on and the path it
//!   has there (the key stays the object's name at the cloud end).

use ferry_core::{Checksums, Evidence, ObjectEntry, SkipReason};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("journal {path} has schema version {found}, this ferry understands {expected}")]
    Version { path: PathBuf, found: i64, expected: i64 },
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// 1: copies; 2: disk export and ingest routes; 3: `renamed`, and a restarted object's
/// `last_modified` (version 2 journals made before `renamed` lack it, so every open adds any
/// column of [`SCHEMA`] a journal lacks, whatever its version says).
const SCHEMA_VERSION: i64 = 3;

/// The state of an entry the listing met but ferry does not copy; its `error` is the reason.
const SKIPPED: &str = "skipped";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    id            INTEGER PRIMARY KEY,
    generation    INTEGER NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    size          INTEGER NOT NULL,
    etag          TEXT,
    version       TEXT,
    src_crc32c    TEXT,
    src_md5       TEXT,
    content_type  TEXT,
    metadata      TEXT,
    state         TEXT NOT NULL DEFAULT 'pending',   -- pending | done | failed | refused | skipped (error: the SkipReason)
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
    last_modified TEXT                               -- of the version a restarted object copies (RFC 3339)
);
CREATE INDEX IF NOT EXISTS objects_state ON objects(state, id);
CREATE TABLE IF NOT EXISTS parts (
    object_id  INTEGER NOT NULL REFERENCES objects(id),
    part_no    INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    crc32c     TEXT NOT NULL,
    etag       TEXT,
    PRIMARY KEY (object_id, part_no)
);
";

/// Where a disk export writes an object, or where an ingest reads it: the device (an index
/// into the job's device list) and the path on it. `None` paths mean the key itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub device: Option<u32>,
    pub src_path: Option<String>,
    pub dst_path: Option<String>,
    /// The SHA-256 the source declares for the object (a shipment manifest does).
    pub expect_sha256: Option<String>,
}

/// A manifest entry to seed with its route, or with why it will not be copied.
#[derive(Debug, Clone)]
pub struct RoutedEntry {
    pub entry: ObjectEntry,
    pub route: Route,
    pub refused: Option<String>,
    /// Why the route's destination path is not the key (a disk layout renamed it).
    pub renamed: Option<String>,
}

/// A key whose name a disk layout changed or refused, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    pub key: String,
    pub dst_path: Option<String>,
    /// Why it is not copied (then it has no path).
    pub refused: Option<String>,
    /// Why its path is not its key.
    pub renamed: Option<String>,
}

/// An object the journal knows, with everything a copy needs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub id: i64,
    pub entry: ObjectEntry,
    pub state: String,
    pub attempts: i64,
    /// What a finished copy computed of the object: see [`Outcome::copied`].
    pub copied: Checksums,
    pub dst_etag: Option<String>,
    pub verified_by: Option<Evidence>,
    pub error: Option<String>,
    /// The destination's id of a multipart upload in progress (recorded before its first part).
    pub upload_id: Option<String>,
    pub route: Route,
    /// Why the row differs from the manifest's entry, e.g. `restarted: …` when the source changed
    /// and the journal tracks the version copied (its size, etag, version, last-modified time).
    pub note: Option<String>,
}

impl ObjectRow {
    /// The name to read at the source: the routed path, else the key.
    pub fn src_key(&self) -> &str {
        self.route.src_path.as_deref().unwrap_or(&self.entry.key)
    }

    /// The name to write at the destination: the routed path, else the key.
    pub fn dst_key(&self) -> &str {
        self.route.dst_path.as_deref().unwrap_or(&self.entry.key)
    }
}

/// A part the destination acknowledged, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub part_no: u32,
    pub offset: u64,
    pub size: u64,
    pub crc32c: String,
    pub etag: Option<String>,
}

/// A multipart upload the journal knows is open at the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub id: i64,
    pub key: String,
    pub upload_id: String,
    pub parts: u64,
    pub bytes: u64,
}

/// What a finished copy of one object proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Checksums of the object copied: when ferry moved the bytes, their SHA-256, CRC32C and
    /// CRC64NVME; when the service copied the object itself, what it reported (no SHA-256).
    /// Its MD5 is not kept.
    pub copied: Checksums,
    pub dst_etag: Option<String>,
    /// Which check proved the bytes; stored by its stable name.
    pub verified_by: Evidence,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub objects: u64,
    pub bytes: u64,
    pub done: u64,
    pub done_bytes: u64,
    pub pending: u64,
    pub failed: u64,
    /// Objects a disk layout cannot hold (never copied).
    pub refused: u64,
    /// Entries the listing met but ferry does not copy (symlinks, FIFOs, folder markers…),
    /// not counted in `objects`; [`Journal::skipped_by_reason`] breaks them down.
    pub skipped: u64,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

const ROW_COLUMNS: &str = "id, key, size, etag, version, src_crc32c, src_md5, content_type, metadata, state, attempts, sha256, crc32c, dst_etag, verified_by, error, upload_id, crc64nvme, device, src_path, dst_path, src_crc64, expect_sha256, note, last_modified";

/// A column as `PRAGMA table_info` declares it: name, type, not null, default.
type Column = (String, String, bool, Option<String>);

/// Each column of `table`.
fn table_info(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let rows = stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    rows.collect()
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    let metadata: Option<String> = r.get(8)?;
    Ok(ObjectRow {
        id: r.get(0)?,
        entry: ObjectEntry {
            key: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            etag: r.get(3)?,
            version: r.get(4)?,
            checksums: Checksums { crc32c: r.get(5)?, md5: r.get(6)?, crc64nvme: r.get(21)?, sha256: None },
            content_type: r.get(7)?,
            metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default(),
            last_modified: r.get::<_, Option<String>>(24)?.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()),
            skipped: match r.get_ref(9)?.as_str()? {
                SKIPPED => r.get_ref(15)?.as_str_or_null()?.and_then(SkipReason::parse),
                _ => None,
            },
            mode: None,
        },
        state: r.get(9)?,
        attempts: r.get(10)?,
        copied: Checksums { sha256: r.get(11)?, crc32c: r.get(12)?, crc64nvme: r.get(17)?, md5: None },
        dst_etag: r.get(13)?,
        verified_by: r.get_ref(14)?.as_str_or_null()?.and_then(Evidence::parse),
        error: r.get(15)?,
        upload_id: r.get(16)?,
        route: Route { device: r.get(18)?, src_path: r.get(19)?, dst_path: r.get(20)?, expect_sha256: r.get(22)? },
        note: r.get(23)?,
    })
}

impl Journal {
    /// Opens (creating and migrating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal> {
        let err = |source| JournalError::Sqlite { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let j = Journal { conn, path: path.to_path_buf() };
        let version = j.meta("schema_version")?;
        match version.as_deref().map(|v| v.parse::<i64>().unwrap_or(-1)) {
            Some(v) if !(1..=SCHEMA_VERSION).contains(&v) => {
                return Err(JournalError::Version { path: path.into(), found: v, expected: SCHEMA_VERSION });
            }
            _ => {}
        }
        j.add_missing_columns()?;
        if version.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
            j.set_meta("schema_version", &SCHEMA_VERSION.to_string())?;
        }
        Ok(j)
    }

    /// Adds every column [`SCHEMA`] has and this journal's tables lack (a journal made by an
    /// older ferry), as `PRAGMA table_info` of a fresh copy of the schema declares it. Columns
    /// are only ever added, with their defaults; rows keep their values.
    fn add_missing_columns(&self) -> Result<()> {
        let fresh = Connection::open_in_memory().map_err(self.err())?;
        fresh.execute_batch(SCHEMA).map_err(self.err())?;
        for table in ["meta", "objects", "parts"] {
            let have: std::collections::HashSet<String> =
                table_info(&self.conn, table).map_err(self.err())?.into_iter().map(|c| c.0).collect();
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
                self.conn.execute_batch(&sql).map_err(self.err())?;
            }
        }
        Ok(())
    }

    /// Runs `write` as a commit that is on disk when this returns (the WAL is fsynced), for writes
    /// that precede a side effect at the destination. Other commits are group-committed
    /// (`synchronous = NORMAL`): a power loss may forget the last of them, never a durable one,
    /// since the WAL keeps a prefix of its commits and this one's fsync covers all before it.
    fn durably<T>(&self, write: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.conn.pragma_update(None, "synchronous", "FULL").map_err(self.err())?;
        let done = write(&self.conn);
        self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(self.err())?;
        done.map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        |source| JournalError::Sqlite { path: self.path.clone(), source }
    }

    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        self.conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(self.err())
    }

    pub fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.conn
            .execute("INSERT INTO meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, value])
            .map_err(self.err())?;
        Ok(())
    }

    /// Adds a batch of manifest entries of `generation` as pending work (entries the listing
    /// skipped as `skipped`, with their reason), in one transaction. Replaying a batch is
    /// harmless: keys already known keep their state.
    pub fn seed(&mut self, generation: u32, entries: &[ObjectEntry]) -> Result<()> {
        self.insert_rows(generation, entries.iter().map(|e| (e, None, None, None)))
    }

    /// Forgets the objects a listing of `generation` seeded before it was cut off (the listing
    /// starts again), keeping any that work has touched. Keys an earlier generation seeded are
    /// not this generation's rows and stay.
    pub fn unseed(&mut self, generation: u32) -> Result<u64> {
        let n = self
            .conn
            .execute(
                "DELETE FROM objects WHERE generation = ?1 AND state = 'pending' AND attempts = 0 AND upload_id IS NULL
                 AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.object_id = objects.id)",
                [generation],
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    /// Up to `limit` objects still to copy (pending, or failed with fewer than `max_attempts`
    /// attempts), with ids above `after`, in id order.
    pub fn todo(&self, after: i64, limit: usize, max_attempts: i64) -> Result<Vec<ObjectRow>> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM objects WHERE id > ?1 AND (state = 'pending' OR (state = 'failed' AND attempts < ?3)) ORDER BY id LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt.query_map(params![after, limit as i64, max_attempts], row_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The largest object still to copy (not done nor refused): its key and size.
    pub fn largest_pending(&self) -> Result<Option<(String, u64)>> {
        self.conn
            .query_row("SELECT key, size FROM objects WHERE state IN ('pending', 'failed') ORDER BY size DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .optional()
            .map_err(self.err())
    }

    /// Objects in `state`, with ids above `after`, in id order.
    pub fn in_state(&self, state: &str, after: i64, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt.query_map(params![state, after, limit as i64], row_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Every object with an id above `after`, in id order, whatever its state.
    pub fn page(&self, after: i64, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE id > ?1 ORDER BY id LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt.query_map(params![after, limit as i64], row_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Whether the manifest this journal was seeded from has `key`.
    pub fn has_key(&self, key: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM objects WHERE key = ?1").map_err(self.err())?;
        stmt.exists([key]).map_err(self.err())
    }

    pub fn get(&self, key: &str) -> Result<Option<ObjectRow>> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM objects WHERE key = ?1");
        self.conn.query_row(&sql, [key], row_from).optional().map_err(self.err())
    }

    /// The upload recorded for object `id` (its id and part size), if one is open.
    pub fn upload_of(&self, id: i64) -> Result<Option<(String, u64)>> {
        let row: (Option<String>, Option<i64>) = self
            .conn
            .query_row("SELECT upload_id, part_size FROM objects WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        Ok(match row {
            (Some(upload_id), Some(part_size)) => Some((upload_id, part_size as u64)),
            _ => None,
        })
    }

    /// Records a multipart upload (its id, and the part size its parts are cut to) before it is
    /// created and before its first part is sent. Durable when this returns: an upload the
    /// destination holds and the journal forgot would be billed and never aborted.
    pub fn set_upload(&self, id: i64, upload_id: Option<&str>, part_size: u64) -> Result<()> {
        self.durably(|c| {
            c.execute("UPDATE objects SET upload_id = ?2, part_size = ?3 WHERE id = ?1", params![id, upload_id, part_size as i64])
        })?;
        Ok(())
    }

    /// Records the running digest of an upload after its first `next` parts, all acknowledged,
    /// so a resume continues hashing from there instead of re-reading them.
    pub fn set_hash_state(&self, id: i64, next: u32, state: &[u8]) -> Result<()> {
        self.conn
            .execute("UPDATE objects SET hash_next = ?2, hash_state = ?3 WHERE id = ?1", params![id, next, state])
            .map_err(self.err())?;
        Ok(())
    }

    /// The running digest recorded for object `id`: parts covered, and the state.
    pub fn hash_state(&self, id: i64) -> Result<Option<(u32, Vec<u8>)>> {
        let row: (Option<u32>, Option<Vec<u8>>) = self
            .conn
            .query_row("SELECT hash_next, hash_state FROM objects WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        Ok(match row {
            (Some(next), Some(state)) => Some((next, state)),
            _ => None,
        })
    }

    /// The source object changed since the manifest: from now on the journal tracks its current
    /// version (`entry`), and says why in the object's note. Open upload state must be cleared first.
    pub fn restart_object(&self, id: i64, entry: &ObjectEntry, note: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE objects SET size = ?2, etag = ?3, version = ?4, src_crc32c = ?5, src_md5 = ?6, note = ?7, last_modified = ?8 WHERE id = ?1",
                params![id, entry.size as i64, entry.etag, entry.version, entry.checksums.crc32c, entry.checksums.md5, note, entry.last_modified.map(|t| t.to_rfc3339())],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Counts an upload of object `id` that may be left open at the destination: its creation was
    /// cut off and the service cannot list uploads to find it.
    pub fn note_orphan(&self, id: i64) -> Result<()> {
        self.conn.execute("UPDATE objects SET orphans = orphans + 1 WHERE id = ?1", [id]).map_err(self.err())?;
        Ok(())
    }

    /// How many uploads may have been left open that way, over the whole job.
    pub fn possible_orphans(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COALESCE(SUM(orphans), 0) FROM objects", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Records a part the destination acknowledged.
    pub fn record_part(&self, id: i64, part_no: u32, offset: u64, size: u64, crc32c: &str, etag: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO parts (object_id, part_no, offset, size, crc32c, etag) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, part_no, offset as i64, size as i64, crc32c, etag],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets part `part_no` of object `id`, before different bytes are sent for it: until
    /// their acknowledgement is journaled, the destination's part is not the recorded one.
    pub fn forget_part(&self, id: i64, part_no: u32) -> Result<()> {
        self.conn.execute("DELETE FROM parts WHERE object_id = ?1 AND part_no = ?2", params![id, part_no]).map_err(self.err())?;
        Ok(())
    }

    /// The parts journaled for object `id`, in part order.
    pub fn parts(&self, id: i64) -> Result<Vec<PartRow>> {
        let mut stmt = self
            .conn
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

    /// Forgets object `id`'s upload and its parts (the upload was aborted or is gone).
    pub fn clear_upload(&mut self, id: i64) -> Result<()> {
        let path = self.path.clone();
        let err = |source| JournalError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM parts WHERE object_id = ?1", [id]).map_err(err)?;
        tx.execute("UPDATE objects SET upload_id = NULL, part_size = NULL, hash_next = NULL, hash_state = NULL WHERE id = ?1", [id])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Uploads open at the destination on behalf of this job, with what they hold.
    pub fn open_uploads(&self) -> Result<Vec<OpenUpload>> {
        let mut stmt = self
            .conn
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

    /// Records a finished object; its upload is closed, so its parts are forgotten.
    pub fn mark_done(&self, id: i64, o: &Outcome) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute("DELETE FROM parts WHERE object_id = ?1", [id]).map_err(self.err())?;
        tx.execute(
                "UPDATE objects SET state = 'done', error = NULL, upload_id = NULL, part_size = NULL, hash_next = NULL, hash_state = NULL, attempts = attempts + 1, sha256 = ?2, crc32c = ?3,
                 dst_etag = ?4, verified_by = ?5, crc64nvme = ?6, updated_at = datetime('now') WHERE id = ?1",
                params![id, o.copied.sha256, o.copied.crc32c, o.dst_etag, o.verified_by.as_str(), o.copied.crc64nvme],
            )
            .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    pub fn mark_failed(&self, id: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE objects SET state = 'failed', error = ?2, attempts = attempts + 1, updated_at = datetime('now') WHERE id = ?1",
                params![id, error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Adds a batch of entries with their routes (disk export and ingest), in one transaction;
    /// a refused entry is recorded as `refused` with its reason and never copied. Replaying a
    /// batch is harmless: keys already known keep their state and route.
    pub fn seed_routed(&mut self, generation: u32, entries: &[RoutedEntry]) -> Result<()> {
        self.insert_rows(generation, entries.iter().map(|r| (&r.entry, Some(&r.route), r.refused.as_deref(), r.renamed.as_deref())))
    }

    /// Inserts entries (with their route, why a layout refused or renamed them) in one
    /// transaction; keys already known keep their row. A skipped entry is `skipped` with its
    /// reason, a refused one `refused`, the rest `pending`.
    fn insert_rows<'a>(
        &mut self,
        generation: u32,
        rows: impl Iterator<Item = (&'a ObjectEntry, Option<&'a Route>, Option<&'a str>, Option<&'a str>)>,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |source| JournalError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO objects (generation, key, size, etag, version, src_crc32c, src_md5, content_type, metadata,
                                          device, src_path, dst_path, src_crc64, expect_sha256, state, error, renamed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT(key) DO NOTHING",
                )
                .map_err(err)?;
            let no_route = Route::default();
            for (e, route, refused, renamed) in rows {
                let route = route.unwrap_or(&no_route);
                let meta = (!e.metadata.is_empty()).then(|| serde_json::to_string(&e.metadata).expect("map serializes"));
                let (state, error) = match (e.skipped, refused) {
                    (Some(reason), _) => (SKIPPED, Some(reason.as_str())),
                    (None, Some(refused)) => ("refused", Some(refused)),
                    (None, None) => ("pending", None),
                };
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
                    state,
                    error,
                    renamed
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Indexes that routed jobs (disk export and ingest) query by: sizes for packing, device
    /// paths for shipments, conflicts and extras. Created on first use; plain copies never pay.
    pub fn index_routes(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "CREATE INDEX IF NOT EXISTS objects_by_size ON objects(size DESC, id);
                 CREATE INDEX IF NOT EXISTS objects_by_dst_path ON objects(dst_path);
                 CREATE INDEX IF NOT EXISTS objects_by_src_path ON objects(device, src_path);",
            )
            .map_err(self.err())
    }

    /// Refuses object `id` for good (it is not copied), with why.
    pub fn refuse(&self, id: i64, reason: &str) -> Result<()> {
        self.conn
            .execute("UPDATE objects SET state = 'refused', error = ?2, updated_at = datetime('now') WHERE id = ?1", params![id, reason])
            .map_err(self.err())?;
        Ok(())
    }

    /// Keys refused or renamed, with the reasons, in key order after `after_key`.
    pub fn noted(&self, after_key: &str, limit: usize) -> Result<Vec<Noted>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, dst_path, state, error, renamed FROM objects WHERE (state = 'refused' OR renamed IS NOT NULL) AND key > ?1
                 ORDER BY key LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![after_key, limit as i64], |r| {
                let refused = r.get::<_, String>(2)? == "refused";
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

    /// How many objects are copied under another name than their key.
    pub fn renamed_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM objects WHERE renamed IS NOT NULL AND state != 'refused'", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Pairs of routed objects that cannot both exist on a device: one's path is a folder of
    /// the other's (`a` and `a/b`), or, when `fold_case`, the paths differ only in case.
    /// Returns (the object to refuse, the path it collides with); each pair once.
    pub fn path_conflicts(&self, fold_case: bool) -> Result<Vec<(i64, String, String)>> {
        let mut out = Vec::new();
        // A file whose path + '/' starts another path: the range scan [p/, p0) on the index.
        let mut stmt = self
            .conn
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
            self.conn.execute_batch("CREATE INDEX IF NOT EXISTS objects_by_folded_path ON objects(lower(dst_path))").map_err(self.err())?;
            let mut stmt = self
                .conn
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

    /// Pending objects with no device yet, largest first (keyset paging from `(size, id)`).
    pub fn unplaced(&self, after: Option<(u64, i64)>, limit: usize) -> Result<Vec<(i64, u64)>> {
        let (size, id) = after.map(|(s, i)| (s as i64, i)).unwrap_or((i64::MAX, 0));
        let mut stmt = self
            .conn
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

    /// Puts object `id` on `device` (or takes it off any, to be placed again).
    pub fn place(&self, id: i64, device: Option<u32>) -> Result<()> {
        self.conn.execute("UPDATE objects SET device = ?2 WHERE id = ?1", params![id, device]).map_err(self.err())?;
        Ok(())
    }

    /// Puts each object on its device, in one commit that is on disk when this returns: a file
    /// written to a device the journal forgot would be a stray file on it after a power loss.
    pub fn place_all(&self, placed: &[(i64, u32)]) -> Result<()> {
        self.durably(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached("UPDATE objects SET device = ?2 WHERE id = ?1")?;
                for (id, device) in placed {
                    stmt.execute(params![id, device])?;
                }
            }
            tx.commit()
        })
    }

    /// Count and bytes of the objects on `device` in `state` (`None`: not done yet).
    pub fn on_device(&self, device: u32, done: bool) -> Result<(u64, u64)> {
        let sql = match done {
            true => "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE device = ?1 AND state = 'done'",
            false => "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE device = ?1 AND state IN ('pending', 'failed')",
        };
        self.conn.query_row(sql, [device], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))).map_err(self.err())
    }

    /// Finished objects on `device`, in destination path order after `after_path`.
    pub fn done_on_device(&self, device: u32, after_path: &str, limit: usize) -> Result<Vec<ObjectRow>> {
        let sql =
            format!("SELECT {ROW_COLUMNS} FROM objects WHERE device = ?1 AND state = 'done' AND dst_path > ?2 ORDER BY dst_path LIMIT ?3");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt.query_map(params![device, after_path, limit as i64], row_from).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Whether an object is read from `path` on `device` (an ingest's shipment lists it).
    pub fn has_src_path(&self, device: u32, path: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM objects WHERE device = ?1 AND src_path = ?2").map_err(self.err())?;
        stmt.exists(params![device, path]).map_err(self.err())
    }

    /// Skipped entries counted by reason (every generation), reasons in their declared order.
    pub fn skipped_by_reason(&self) -> Result<std::collections::BTreeMap<SkipReason, u64>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT error, COUNT(*) FROM objects WHERE state = ?1 GROUP BY error").map_err(self.err())?;
        let rows = stmt.query_map([SKIPPED], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.err())?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (reason, n) = row.map_err(self.err())?;
            // A reason this ferry does not know (a newer one wrote it) still counts as a loss.
            let reason = reason.as_deref().and_then(SkipReason::parse).unwrap_or(SkipReason::InvalidName);
            *out.entry(reason).or_default() += n;
        }
        Ok(out)
    }

    /// Up to `limit` skipped entries with ids above `after`, in id order: `(id, key, reason)`.
    pub fn skipped(&self, after: i64, limit: usize) -> Result<Vec<(i64, String, SkipReason)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, key, error FROM objects WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![SKIPPED, after, limit as i64], |r| {
                let reason: Option<String> = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, reason.as_deref().and_then(SkipReason::parse).unwrap_or(SkipReason::InvalidName)))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn counts(&self) -> Result<StatusCounts> {
        let mut c = StatusCounts::default();
        let mut stmt =
            self.conn.prepare("SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM objects GROUP BY state").map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))
            .map_err(self.err())?;
        for row in rows {
            let (state, n, bytes) = row.map_err(self.err())?;
            if state == "refused" {
                c.refused = n;
                continue;
            }
            if state == SKIPPED {
                c.skipped = n;
                continue;
            }
            c.objects += n;
            c.bytes += bytes;
            match state.as_str() {
                "done" => (c.done, c.done_bytes) = (n, bytes),
                "failed" => c.failed = n,
                _ => c.pending += n,
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(key: &str, size: u64, dst_path: &str) -> RoutedEntry {
        let entry = ObjectEntry { key: key.into(), size, ..Default::default() };
        RoutedEntry { entry, route: Route { dst_path: Some(dst_path.into()), ..Route::default() }, refused: None, renamed: None }
    }

    /// A journal as an older ferry made it: `columns` of `objects` dropped, `version` recorded.
    fn older_journal(path: &Path, columns: &[&str], version: &str) {
        let mut j = Journal::open(path).unwrap();
        j.seed(1, &entries(3)).unwrap();
        for name in columns {
            j.conn.execute_batch(&format!("ALTER TABLE objects DROP COLUMN {name}")).unwrap();
        }
        j.set_meta("schema_version", version).unwrap();
    }

    #[test]
    fn a_version_1_journal_gains_the_route_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let v2 = ["device", "src_path", "dst_path", "src_crc64", "expect_sha256", "crc64nvme", "renamed", "last_modified"];
        older_journal(&path, &v2, "1");
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.meta("schema_version").unwrap().as_deref(), Some("3"));
        assert_eq!(j.counts().unwrap().objects, 3);
        assert_eq!(j.get("k1").unwrap().unwrap().route, Route::default());
    }

    // Issue 12, case 22: `renamed` was added to the schema without a migration, so an export
    // journal made before it failed "no such column: renamed".
    #[test]
    fn case_22_a_version_2_journal_without_renamed_opens_and_exports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        older_journal(&path, &["renamed", "last_modified"], "2");
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.meta("schema_version").unwrap().as_deref(), Some("3"));
        // What an export and `status` do with it.
        j.seed_routed(1, &[RoutedEntry { renamed: Some("too long".into()), ..routed("r", 1, "x/r") }]).unwrap();
        assert_eq!(j.renamed_count().unwrap(), 1);
        assert_eq!(j.noted("", 10).unwrap()[0].renamed.as_deref(), Some("too long"));
        assert_eq!(j.counts().unwrap().objects, 4);
        assert!(j.page(0, 10).unwrap().iter().all(|r| r.note.is_none()));

        // A journal of a newer ferry is refused, not changed.
        j.set_meta("schema_version", "4").unwrap();
        drop(j);
        assert!(matches!(Journal::open(&path), Err(JournalError::Version { found: 4, .. })));
    }

    #[test]
    fn every_column_of_the_schema_is_added_to_a_journal_missing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let fresh = Connection::open_in_memory().unwrap();
        fresh.execute_batch(SCHEMA).unwrap();
        let all: Vec<String> = table_info(&fresh, "objects").unwrap().into_iter().map(|c| c.0).collect();
        // Every column a journal could lack (not the key, the primary key or the state the
        // table was created with).
        let droppable: Vec<&str> =
            all.iter().map(String::as_str).filter(|c| !["id", "generation", "key", "size", "state", "attempts"].contains(c)).collect();
        older_journal(&path, &droppable, "1");
        let j = Journal::open(&path).unwrap();
        let now: Vec<String> = table_info(&j.conn, "objects").unwrap().into_iter().map(|c| c.0).collect();
        assert_eq!(now.iter().collect::<std::collections::BTreeSet<_>>(), all.iter().collect());
        assert_eq!(j.possible_orphans().unwrap(), 0, "NOT NULL DEFAULT columns get their default");
    }

    // Issue 12, case 19: the upload id journaled before an upload is created must be on disk
    // before the destination holds the upload; other commits stay group-committed.
    #[test]
    fn case_19_a_durable_write_leaves_the_connection_group_committing() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.seed(1, &entries(2)).unwrap();
        let sync = |j: &Journal| j.conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(sync(&j), 1, "NORMAL");
        let id = j.get("k1").unwrap().unwrap().id;
        j.set_upload(id, Some("u"), 8).unwrap();
        assert_eq!(sync(&j), 1, "back to NORMAL after the durable write");
        j.place_all(&[(id, 0)]).unwrap();
        assert_eq!(sync(&j), 1);
        assert_eq!(j.upload_of(id).unwrap(), Some(("u".to_string(), 8)));
        assert_eq!(j.get("k1").unwrap().unwrap().route.device, Some(0));
    }

    #[test]
    fn routed_objects_conflict_as_file_and_folder_or_by_case_and_pack_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let rows = [routed("a", 5, "x/a"), routed("a/b", 7, "x/a/b"), routed("a.txt", 9, "x/a.txt"), routed("A.TXT", 1, "x/A.TXT")];
        j.seed_routed(1, &rows).unwrap();
        j.index_routes().unwrap();
        let keys = |fold| j.path_conflicts(fold).unwrap().into_iter().map(|(_, k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(false), ["a"], "a is a file and a folder; a.txt sorts between them and is no conflict");
        assert_eq!(keys(true), ["a", "A.TXT"]);
        let order: Vec<u64> = j.unplaced(None, 2).unwrap().into_iter().map(|(_, s)| s).collect();
        assert_eq!(order, [9, 7]);
        let (id, size) = j.unplaced(None, 2).unwrap()[1];
        assert_eq!(j.unplaced(Some((size, id)), 10).unwrap().iter().map(|(_, s)| *s).collect::<Vec<_>>(), [5, 1]);
    }

    fn entries(n: usize) -> Vec<ObjectEntry> {
        (0..n).map(|i| ObjectEntry { key: format!("k{i}"), size: i as u64, ..Default::default() }).collect()
    }

    // Issue 12, case 4: entries a listing met but does not copy are recorded, not dropped.
    #[test]
    fn skipped_entries_are_recorded_with_their_reason_and_never_handed_out_as_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let mut batch = entries(3);
        batch.push(ObjectEntry::skipped("link".into(), SkipReason::Symlink));
        batch.push(ObjectEntry::skipped("pipe".into(), SkipReason::Fifo));
        batch.push(ObjectEntry::skipped("pipe2".into(), SkipReason::Fifo));
        j.seed(1, &batch).unwrap();
        let c = j.counts().unwrap();
        assert_eq!((c.objects, c.pending, c.skipped), (3, 3, 3));
        assert!(j.todo(0, 100, 3).unwrap().iter().all(|r| r.entry.skipped.is_none()));
        let by: Vec<_> = j.skipped_by_reason().unwrap().into_iter().collect();
        assert_eq!(by, [(SkipReason::Symlink, 1), (SkipReason::Fifo, 2)]);
        let rows = j.skipped(0, 10).unwrap();
        assert_eq!(
            rows.iter().map(|(_, k, r)| (k.as_str(), *r)).collect::<Vec<_>>(),
            [("link", SkipReason::Symlink), ("pipe", SkipReason::Fifo), ("pipe2", SkipReason::Fifo)]
        );
        assert_eq!(j.get("pipe").unwrap().unwrap().entry.skipped, Some(SkipReason::Fifo));
    }

    #[test]
    fn seeding_is_idempotent_and_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let mut j = Journal::open(&path).unwrap();
        j.seed(1, &entries(10)).unwrap();
        let first = j.todo(0, 3, 3).unwrap();
        assert_eq!(first.iter().map(|r| r.entry.key.as_str()).collect::<Vec<_>>(), ["k0", "k1", "k2"]);
        let outcome = Outcome {
            copied: Checksums { sha256: Some("s".into()), crc32c: Some("c".into()), ..Checksums::default() },
            dst_etag: Some("e".into()),
            verified_by: Evidence::SizeOnly,
        };
        j.mark_done(first[0].id, &outcome).unwrap();
        j.mark_failed(first[1].id, "boom").unwrap();
        j.seed(1, &entries(10)).unwrap(); // replay
        drop(j);

        let j = Journal::open(&path).unwrap();
        let c = j.counts().unwrap();
        assert_eq!((c.objects, c.done, c.failed, c.pending), (10, 1, 1, 8));
        let done = j.get("k0").unwrap().unwrap();
        assert_eq!(done.copied.sha256.as_deref(), Some("s"));
        assert_eq!(done.verified_by, Some(Evidence::SizeOnly), "stored by name, read back as the value");
        // A failed object is retried while it has attempts left, then no longer.
        assert_eq!(j.todo(0, 100, 3).unwrap().len(), 9);
        assert_eq!(j.todo(0, 100, 1).unwrap().len(), 8);
    }
}
