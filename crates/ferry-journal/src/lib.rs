//! The durable state of a job: which objects are done, pending or failed, their parts, and what
//! the copy proved about them.
//!
//! The engine sees the journal only as the [`Journal`] trait (an object ledger, its uploads and
//! its routes) behind an `Arc<dyn Journal>`, opened through [`open`] with the job directory and
//! a [`JournalKind`]. Nothing outside this crate knows where a journal lives, what its tables
//! are, or that the embedded default ([`SqliteJournal`]) is SQLite; a shared journal for many
//! workers (PostgreSQL) is another implementation of the same traits.
//!
//! Work is *claimed*, not paged: [`Ledger::claim`] leases pending objects to a worker until an
//! expiry; an outcome releases them; an expired lease makes them claimable again. Within one
//! pass ([`Ledger::begin_pass`]) an object is handed out at most once, so one that failed is not
//! tried again until the next pass. Lease times come from a [`Clock`] that reads tokio's time,
//! so tests drive them with `tokio::time::pause`/`advance`.
//!
//! An object row belongs to the manifest generation that last changed it:
//! [`Ledger::seed_generation`] merges a later generation's key-ordered listing with the rows
//! in one pass, marking each object added, changed (pending again), deleted (pending delete)
//! or unchanged.
//!
//! It owns state only: it never talks to a provider, and never stores a credential (nothing
//! given to it carries one).
//!
//! Before the engine writes an object at the destination it records what the destination held
//! under the key ([`Writes::begin_write`]), after it what it wrote: the destination write
//! ledger, one row per write tagged with the run ([`RunId`]), so a run can be undone.
//!
//! # Layout
//! - [`Journal`] = [`Ledger`] + [`Uploads`] + [`Routes`] + [`Writes`]: what the engine holds; [`open`],
//!   [`exists`], [`remove`]: the one place a job directory's journals are opened or dropped.
//! - `types`: what goes in and comes out ([`ObjectRow`], [`ObjectState`], [`Outcome`],
//!   [`StatusCounts`], [`Route`], claims: [`Worker`], [`Lease`], [`Clock`]).
//! - `writes`: the destination write ledger's face and types ([`Prior`], [`Wrote`], [`WriteRow`]).
//! - `sqlite`: [`SqliteJournal`], the embedded default: schema, migrations from older
//!   journals, and every query.

mod sqlite;
mod types;
mod writes;

pub use sqlite::SqliteJournal;
pub use types::*;
pub use writes::{Intent, Kept, Prior, RunId, RunKind, RunRow, Seen, UndoGroup, UndoState, Undone, WriteOp, WriteRow, Writes, Wrote};

use async_trait::async_trait;
use ferry_core::{ObjectEntry, SkipReason};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("journal {path} has schema version {found}, this ferry understands {expected}")]
    Version { path: PathBuf, found: i64, expected: i64 },
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Which of a job directory's journals: the job's own, a disk export's, or the scratch one a
/// `--check` of an export works on (dropped before each check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKind {
    Main,
    Export,
    ExportCheck,
}

/// Opens (creating and migrating if needed) the journal of `kind` in the job directory
/// `job_dir`, which must exist (an export's subdirectory is created here).
pub async fn open(job_dir: &Path, kind: JournalKind) -> Result<Arc<dyn Journal>> {
    let path = sqlite::path(job_dir, kind);
    // An export's journals have a directory of their own in the job's; the job's directory is
    // never made here (a job is persisted only after its checks).
    if let Some(parent) = path.parent().filter(|p| *p != job_dir) {
        std::fs::create_dir_all(parent).map_err(|source| JournalError::Io { path: parent.into(), source })?;
    }
    // Opening may migrate (add columns, build indexes over every row): off the executor.
    let journal = tokio::task::spawn_blocking(move || SqliteJournal::open(&path))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    Ok(Arc::new(journal))
}

/// Whether the journal of `kind` has been made in `job_dir`.
pub fn exists(job_dir: &Path, kind: JournalKind) -> bool {
    sqlite::path(job_dir, kind).exists()
}

/// Drops the journal of `kind` from `job_dir`, whole (nothing of it is left for a later open to
/// find). Nothing may hold it open.
pub fn remove(job_dir: &Path, kind: JournalKind) -> Result<()> {
    sqlite::remove(&sqlite::path(job_dir, kind))
}

/// What the engine holds: one journal, its four faces.
pub trait Journal: Ledger + Uploads + Routes + Writes {}
impl<T: Ledger + Uploads + Routes + Writes + ?Sized> Journal for T {}

/// The object ledger: seeding from manifests, claiming work, outcomes, and what reports read.
///
/// Every method is cheap unless it says otherwise (a write of a few rows, a read by key or id);
/// those that say "scans" read every row and may take seconds on a million-object job.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// A value the engine keeps with the job (layout, seeded generation, devices…).
    async fn meta(&self, name: &str) -> Result<Option<String>>;
    async fn set_meta(&self, name: &str, value: &str) -> Result<()>;

    /// Adds a batch of manifest entries of `generation` as pending work (entries the listing
    /// skipped as skipped, with their reason), in one commit. Replaying a batch is harmless:
    /// objects already known keep their row. An object is its [`ferry_core::ObjectId`]: its
    /// key, and the version a pinned entry stands for (an `--all-versions` job has a row per
    /// version, in listing order: [`Ledger::claim`] hands out a key's versions together, oldest
    /// first, never split between claims).
    async fn seed(&self, generation: u32, entries: &[ObjectEntry]) -> Result<()>;
    /// Forgets the objects a listing of `generation` seeded before it was cut off (the listing
    /// starts again), keeping any that work has touched.
    async fn unseed(&self, generation: u32) -> Result<u64>;
    /// Merges a later `generation` into the journal in one pass over two key-ordered streams:
    /// the journal's rows and `listing` (which must be in key order). A key only in the listing
    /// is added (pending); one whose size, etag, version or checksums differ is changed
    /// (pending again, now of `generation`, its route and placement dropped to be made again;
    /// a key a layout refused stays refused); one only in the journal, whatever its state, is
    /// deleted ([`ObjectState::PendingDelete`]), and one that comes back after that is changed
    /// (refused again if it was); the rest are unchanged and keep their generation. Seeding the
    /// same listing twice changes nothing. Scans, in batches: the journal is free between
    /// them (for claims), and never held while the listing is read.
    async fn seed_generation(&self, generation: u32, listing: Box<dyn Iterator<Item = ObjectEntry> + Send>) -> Result<GenerationDelta>;
    /// [`Ledger::seed_generation`] in one pass and one transaction, watched: `watch` judges
    /// the objects that look touched or changed at their old size, is told every key at which
    /// the listing differs from the generation before (the change set), and decides once the
    /// whole listing is merged whether the merge is committed — with `meta` set in the same
    /// commit — or rolled back, changing nothing (a dry run, a refused delete, a listing that
    /// could not be read back). Returns what the merge did (or would have done) and whether it
    /// was committed. Scans; holds the journal for the whole merge.
    async fn merge_generation(
        &self,
        generation: u32,
        listing: Box<dyn Iterator<Item = ObjectEntry> + Send>,
        watch: Box<dyn MergeWatch>,
        meta: Vec<(String, String)>,
    ) -> Result<(GenerationDelta, bool)>;
    /// Records that a pending delete was carried out at the destination.
    async fn mark_deleted(&self, id: i64) -> Result<()>;
    /// Records as done (with `note`) each pending object that has the key, size and entity tag
    /// of one of `entries` (a reversed job's objects that are as they were written at cutover),
    /// with the entity tag its destination holds (the second of each pair); an entry without a
    /// tag matches nothing. Returns how many.
    async fn mark_equal_done(&self, entries: &[(ObjectEntry, Option<String>)], note: &str) -> Result<u64>;
    /// The rows of those of `keys` the journal has, in key order (one query).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<ObjectRow>>;

    /// Starts a pass of `worker`: objects it claims in this pass are never handed to it again
    /// in it (one that failed waits for the next pass).
    async fn begin_pass(&self, worker: &str) -> Result<Worker>;
    /// Releases every lease: only for the holder of the job's lock, which knows no other
    /// worker is alive (a killed run's leases would otherwise hold its objects until expiry).
    async fn release_leases(&self) -> Result<u64>;
    /// Hands `worker` up to `n` objects still to copy (pending, or failed in an earlier pass),
    /// in id order, leased to it until `lease` expires: none another worker holds on an
    /// unexpired lease, none this pass has had. An empty answer means the pass is over.
    async fn claim(&self, worker: &Worker, n: usize, lease: Lease) -> Result<Vec<ObjectRow>>;
    /// Gives claimed objects back without an outcome (e.g. their device is full): they stay as
    /// they were, and are not handed out again in this pass. Every outcome recorded before it
    /// is committed when it returns, even with no ids (the end of a pass calls it).
    async fn release(&self, ids: &[i64]) -> Result<()>;
    /// Records a finished object (releasing its lease); its upload is closed, so its parts are
    /// forgotten. Call it only once the object is at the destination. It may be committed with
    /// the journal's next write rather than at once (at the latest by the next claim or
    /// release, or any read that could miss it): a kill may lose it, and the object is copied
    /// again; nothing else is ever lost that way.
    async fn mark_done(&self, id: i64, outcome: &Outcome) -> Result<()>;
    /// Records a failed attempt (releasing its lease).
    async fn mark_failed(&self, id: i64, error: &str) -> Result<()>;
    /// The source object changed since the manifest: from now on the journal tracks its current
    /// version (`entry`), and says why in the object's note. Open upload state must be cleared first.
    async fn restart_object(&self, id: i64, entry: &ObjectEntry, note: &str) -> Result<()>;
    /// Records that ferry asked the source to restore the (archived) object now; counted in
    /// [`StatusCounts::restores_requested`] and, until it is done, `restoring`.
    async fn restore_requested(&self, id: i64) -> Result<()>;

    /// The largest object still to copy (pending or failed): its key and size.
    async fn largest_pending(&self) -> Result<Option<(String, u64)>>;
    /// Objects in `state`, with ids above `after`, in id order.
    async fn in_state(&self, state: ObjectState, after: i64, limit: usize) -> Result<Vec<ObjectRow>>;
    /// Every object with an id above `after`, in id order, whatever its state.
    async fn page(&self, after: i64, limit: usize) -> Result<Vec<ObjectRow>>;
    /// Whether the manifests this journal was seeded from have `key` (in any generation).
    async fn has_key(&self, key: &str) -> Result<bool>;
    async fn get(&self, key: &str) -> Result<Option<ObjectRow>>;
    /// The object `id` names: a key's row, or in an `--all-versions` job the row of one version
    /// of it ([`Ledger::get`] gives the first of them).
    async fn get_object(&self, id: ferry_core::ObjectId<'_>) -> Result<Option<ObjectRow>>;

    /// Counts and bytes by state. Scans.
    async fn counts(&self) -> Result<StatusCounts>;
    /// How far the destination is behind the source at `now`. Scans.
    async fn lag(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Lag>;
    /// Skipped entries counted by reason (every generation), reasons in their declared order. Scans.
    async fn skipped_by_reason(&self) -> Result<std::collections::BTreeMap<SkipReason, u64>>;
    /// Up to `limit` skipped entries with ids above `after`, in id order: `(id, key, reason)`.
    async fn skipped(&self, after: i64, limit: usize) -> Result<Vec<(i64, String, SkipReason)>>;
}

/// Multipart uploads open at the destination and the parts it acknowledged.
#[async_trait]
pub trait Uploads: Send + Sync {
    /// The upload recorded for object `id` (its id and part size), if one is open.
    async fn upload_of(&self, id: i64) -> Result<Option<(String, u64)>>;
    /// Records a multipart upload (its id, and the part size its parts are cut to) before it is
    /// created and before its first part is sent. Durable when this returns: an upload the
    /// destination holds and the journal forgot would be billed and never aborted.
    async fn set_upload(&self, id: i64, upload_id: Option<&str>, part_size: u64) -> Result<()>;
    /// Forgets object `id`'s upload and its parts (the upload was aborted or is gone).
    async fn clear_upload(&self, id: i64) -> Result<()>;
    /// Uploads open at the destination on behalf of this job, with what they hold.
    async fn open_uploads(&self) -> Result<Vec<OpenUpload>>;
    /// Records the running digest of an upload after its first `next` parts, all acknowledged,
    /// so a resume continues hashing from there instead of re-reading them.
    async fn set_hash_state(&self, id: i64, next: u32, state: &[u8]) -> Result<()>;
    /// The running digest recorded for object `id`: parts covered, and the state.
    async fn hash_state(&self, id: i64) -> Result<Option<(u32, Vec<u8>)>>;
    /// Records a part the destination acknowledged.
    async fn record_part(&self, id: i64, part: &PartRow) -> Result<()>;
    /// Forgets part `part_no` of object `id`, before different bytes are sent for it: until
    /// their acknowledgement is journaled, the destination's part is not the recorded one.
    async fn forget_part(&self, id: i64, part_no: u32) -> Result<()>;
    /// The parts journaled for object `id`, in part order.
    async fn parts(&self, id: i64) -> Result<Vec<PartRow>>;
    /// Counts an upload of object `id` that may be left open at the destination: its creation
    /// was cut off and the service cannot list uploads to find it.
    async fn note_orphan(&self, id: i64) -> Result<()>;
    /// How many uploads may have been left open that way, over the whole job. Scans.
    async fn possible_orphans(&self) -> Result<u64>;
}

/// Routes of disk exports and ingests: which device an object is on and its path there.
#[async_trait]
pub trait Routes: Send + Sync {
    /// Adds a batch of entries with their routes, in one commit; a refused entry is recorded
    /// as refused with its reason and never copied. Replaying a batch is harmless: keys already
    /// known keep their state and route.
    async fn seed_routed(&self, generation: u32, entries: &[RoutedEntry]) -> Result<()>;
    /// Builds what routed queries need (first use only; plain copies never pay). Scans.
    async fn index_routes(&self) -> Result<()>;
    /// Pairs of routed objects that cannot both exist on a device: one's path is a folder of
    /// the other's (`a` and `a/b`), or, when `fold_case`, the paths differ only in case.
    /// Returns (the object to refuse, its key, why); each pair once. Scans.
    async fn path_conflicts(&self, fold_case: bool) -> Result<Vec<(i64, String, String)>>;
    /// Refuses object `id` for good (it is not copied), with why.
    async fn refuse(&self, id: i64, reason: &str) -> Result<()>;
    /// Keys refused or renamed, with the reasons, in key order after `after_key`.
    async fn noted(&self, after_key: &str, limit: usize) -> Result<Vec<Noted>>;
    /// How many objects are copied under another name than their key. Scans.
    async fn renamed_count(&self) -> Result<u64>;
    /// Pending objects with no device yet, largest first (keyset paging from `(size, id)`).
    async fn unplaced(&self, after: Option<(u64, i64)>, limit: usize) -> Result<Vec<(i64, u64)>>;
    /// Puts object `id` on `device` (or takes it off any, to be placed again).
    async fn place(&self, id: i64, device: Option<u32>) -> Result<()>;
    /// Puts each object on its device, in one commit that is on disk when this returns: a file
    /// written to a device the journal forgot would be a stray file on it after a power loss.
    async fn place_all(&self, placed: &[(i64, u32)]) -> Result<()>;
    /// Count and bytes of the objects on `device` that are done (`true`) or still to copy.
    async fn on_device(&self, device: u32, done: bool) -> Result<(u64, u64)>;
    /// Finished objects on `device`, in destination path order after `after_path`.
    async fn done_on_device(&self, device: u32, after_path: &str, limit: usize) -> Result<Vec<ObjectRow>>;
    /// Whether an object is read from `path` on `device` (an ingest's shipment lists it).
    async fn has_src_path(&self, device: u32, path: &str) -> Result<bool>;
    /// An ingest takes on the source's identity of the objects it seeded from a shipment: for
    /// each entry of the exported manifest, the row of its key and size gets its entity tag,
    /// version, last-modified time, storage class, metadata and content type, and the source
    /// checksums it lacks (those the shipment declared are kept). In one commit; returns how many
    /// rows took one on. A key the shipment does not hold, or holds at another size, is left.
    async fn adopt_identity(&self, entries: &[ObjectEntry]) -> Result<u64>;
    /// Forgets every row's device route (device, paths on it, the digest a shipment declared):
    /// the job's objects are read from its source from now on, by key. A routed row that took no
    /// source identity ([`Routes::adopt_identity`]: no entity tag, no version) is pending again,
    /// with a note: nothing tells what the source holds for it. Sets `meta` in the same commit.
    /// Returns how many rows had a route. Scans.
    async fn leave_devices(&self, meta: &[(String, String)]) -> Result<u64>;
}
