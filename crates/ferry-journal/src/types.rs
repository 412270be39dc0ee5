//! What goes into a journal and comes out of it.

use ferry_core::{Checksums, Evidence, ObjectEntry};

/// Where an object is in its life, stored by the stable name [`ObjectState::as_str`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectState {
    /// To copy.
    Pending,
    Done,
    /// The last attempt failed; the next pass tries again (`error` says why).
    Failed,
    /// A disk layout cannot hold it: never copied (`error` says why).
    Refused,
    /// The listing met it but ferry does not copy it (`error` is the [`ferry_core::SkipReason`]).
    Skipped,
    /// Gone from the source in a later generation: a delete at the destination still to do.
    PendingDelete,
    /// Gone from the source, and deleted at the destination by a delta (`--delete`).
    Deleted,
}

impl ObjectState {
    pub const ALL: [ObjectState; 7] = [
        ObjectState::Pending,
        ObjectState::Done,
        ObjectState::Failed,
        ObjectState::Refused,
        ObjectState::Skipped,
        ObjectState::PendingDelete,
        ObjectState::Deleted,
    ];

    /// The name a journal stores; never changes once released.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectState::Pending => "pending",
            ObjectState::Done => "done",
            ObjectState::Failed => "failed",
            ObjectState::Refused => "refused",
            ObjectState::Skipped => "skipped",
            ObjectState::PendingDelete => "pending-delete",
            ObjectState::Deleted => "deleted",
        }
    }

    pub fn parse(name: &str) -> Option<ObjectState> {
        ObjectState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for ObjectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The manifest generation that last changed the object.
    pub generation: u32,
    pub entry: ObjectEntry,
    pub state: ObjectState,
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
    /// When ferry asked the source to restore the (archived) object, if it did.
    pub restore_requested: Option<chrono::DateTime<chrono::Utc>>,
    /// What the source gave the last finished copy besides the bytes (see [`Outcome::src_attrs`]);
    /// `None` for objects not copied, or copied by a ferry that did not keep it.
    pub src_attrs: Option<ferry_core::headers::Attrs>,
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
    /// The Content-Type, headers and user metadata the source gave the copy (as read, before
    /// they were fitted to the destination): what `verify` expects at the destination.
    pub src_attrs: Option<ferry_core::headers::Attrs>,
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
    /// not counted in `objects`; [`crate::Ledger::skipped_by_reason`] breaks them down.
    pub skipped: u64,
    /// Objects a later generation no longer lists (not counted in `objects`).
    #[serde(skip_serializing_if = "is_zero")]
    pub pending_delete: u64,
    /// Objects a later generation no longer lists, deleted at the destination (not counted in
    /// `objects`).
    #[serde(skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// Objects (in `objects`) ferry asked the source to restore (`--archived restore`), and
    /// those of them not copied yet: restores in flight.
    #[serde(skip_serializing_if = "is_zero")]
    pub restores_requested: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub restoring: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What seeding a later generation did to each key ([`crate::Ledger::seed_generation`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenerationDelta {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Of `unchanged`: the same content (size, etag, version, checksums) with another
    /// last-modified time. Recorded, never copied again.
    pub touched: u64,
    /// Of `changed` and `unchanged`: keys whose delete was still pending (gone from an earlier
    /// listing, still at the destination) listed again. One that comes back as it was copied
    /// is done again, not copied a second time.
    pub returned: u64,
}

/// A worker in one pass over the journal's work ([`crate::Ledger::begin_pass`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub name: String,
    /// Unique per journal: no two passes share one.
    pub pass: i64,
}

/// Milliseconds since the Unix epoch, as leases are stored (comparable across processes).
pub type Millis = i64;

/// A lease asked for at `now`, held for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub now: Millis,
    pub ttl: std::time::Duration,
}

impl Lease {
    pub fn until(&self) -> Millis {
        self.now.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Wall-clock time as tokio sees it: the wall time when the clock was made, advanced by tokio's
/// monotonic time since. Leases are stored in wall time (another process reads them), and tests
/// move it with `tokio::time::pause`/`advance` instead of waiting.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Millis,
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock { wall, start: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> Millis {
        let since = tokio::time::Instant::now().saturating_duration_since(self.start);
        self.wall.saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// A lease from now, for `ttl`.
    pub fn lease(&self, ttl: std::time::Duration) -> Lease {
        Lease { now: self.now(), ttl }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// How far the destination is behind the source: objects still to copy (pending or failed) and
/// deletes still to carry out, with the ages of the changes not yet copied, from the source's
/// last-modified times ([`crate::Ledger::lag`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lag {
    /// When it was measured.
    pub at: chrono::DateTime<chrono::Utc>,
    pub objects: u64,
    pub bytes: u64,
    /// Keys gone from the source still at the destination.
    pub deletes: u64,
    /// The source's last-modified time of the oldest change not yet copied, and its age in
    /// seconds at `at`.
    pub oldest_change: Option<chrono::DateTime<chrono::Utc>>,
    pub oldest_age_seconds: Option<u64>,
    /// `objects` by the age of the change: under a minute, 1–15 minutes, 15–60 minutes, over an
    /// hour, and those whose time the listing did not give.
    pub under_1m: u64,
    pub from_1m_to_15m: u64,
    pub from_15m_to_1h: u64,
    pub over_1h: u64,
    pub age_unknown: u64,
}

/// One key at which a generation merge found the listing other than the generation merged
/// before it ([`crate::Ledger::merge_generation`]): a line of the change set. `old` is the
/// object as the journal held it (that generation's listing, with what copying learned since).
#[derive(Debug, Clone, Copy)]
pub enum MergeStep<'a> {
    /// Listed, and not an object of the generation before (new, or back after a delete).
    Added { new: &'a ObjectEntry },
    /// Listed with other content (size, entity tag, version or a checksum), or with the same
    /// bytes and other headers or metadata ([`Verdict::Changed`] of a [`LookKind::NewTime`]).
    Changed { old: &'a ObjectEntry, new: &'a ObjectEntry },
    /// The same content at another last-modified time (recorded, not copied).
    Touched { old: &'a ObjectEntry, new: &'a ObjectEntry },
    /// Gone from the listing.
    Deleted { old: &'a ObjectEntry },
}

/// Why a merge asks about an object before it decides ([`MergeWatch::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookKind {
    /// Copied, and listed with the same content at another last-modified time: touched
    /// ([`Verdict::Unchanged`]) unless its headers or metadata changed at the source (a
    /// rewrite of an S3 object's metadata keeps its ETag).
    NewTime,
    /// Copied, and listed at its old size with another entity tag or version: changed
    /// ([`Verdict::Changed`]) unless its bytes are as copied (a local file's tag is its time).
    OtherTag,
}

/// An object a merge asks about: the journal's row (with `src_attrs` for a
/// [`LookKind::NewTime`]) and the listed entry.
#[derive(Debug)]
pub struct Look<'a> {
    pub kind: LookKind,
    pub row: &'a ObjectRow,
    pub listed: &'a ObjectEntry,
}

/// What a [`MergeWatch`] concluded about a [`Look`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same content as copied: not copied again (a new identity is recorded).
    Unchanged,
    /// To copy again.
    Changed,
}

impl Verdict {
    /// What a merge takes a look of `kind` to be when nobody looked.
    pub fn unexamined(kind: LookKind) -> Verdict {
        match kind {
            LookKind::NewTime => Verdict::Unchanged,
            LookKind::OtherTag => Verdict::Changed,
        }
    }
}

/// What the journal held before a merge (tallied by its scan): the refusals of a delta
/// ([`MergeWatch::finish`]) are measured against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Objects (neither skipped nor gone).
    pub objects: u64,
    /// Deletes not yet carried out.
    pub pending_delete: u64,
}

/// Watches a merge ([`crate::Ledger::merge_generation`]) from inside its one transaction,
/// called on the journal's thread in key order: judges the objects it asks about, is told each
/// change, and decides at the end whether the merge is committed.
pub trait MergeWatch: Send {
    /// A verdict for each of `looks` (in their order), before any of them is merged.
    fn judge(&mut self, looks: &[Look<'_>]) -> Vec<Verdict>;
    /// One change, in key order. `false` stops the merge (nothing is committed).
    fn step(&mut self, step: MergeStep<'_>) -> bool;
    /// Every key merged (`delta`), against what the journal held before (`held`): `true`
    /// commits the merge, `false` rolls it back.
    fn finish(&mut self, delta: &GenerationDelta, held: &Held) -> bool;
}
