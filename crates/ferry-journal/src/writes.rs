//! The destination write ledger: before ferry writes or deletes an object at the destination,
//! what the destination held under that key; after, what ferry wrote. One row per write, tagged
//! with the run that made it, so a run can be undone (restore or delete what it wrote) and a
//! report can say which objects ferry overwrote.
//!
//! A write that a crash cut off leaves its row unfinished; the next attempt at the same object
//! takes that row over instead of adding one, keeping the state the destination had *before
//! ferry's first try* (a later HEAD could see ferry's own half-finished write as "what was
//! there").

use crate::Result;
use async_trait::async_trait;
use std::fmt;

/// What a run is, for the ledger's readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Copy,
    Export,
    Ingest,
    /// A delta's deletes at the destination (its copies are a [`RunKind::Copy`]).
    Delta,
    /// A rollback: it writes no ledger rows of its own, it marks the rows it undid.
    Rollback,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Copy => "copy",
            RunKind::Export => "export",
            RunKind::Ingest => "ingest",
            RunKind::Delta => "delta",
            RunKind::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        [RunKind::Copy, RunKind::Export, RunKind::Ingest, RunKind::Delta, RunKind::Rollback].into_iter().find(|k| k.as_str() == s)
    }
}

/// A run as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRow {
    pub id: RunId,
    pub kind: RunKind,
    /// The job's newest generation when the run began (`None`: a run recorded by a ferry that
    /// did not say).
    pub generation: Option<u32>,
    /// When it began (RFC 3339).
    pub started: String,
    /// Rows it recorded in the ledger, and how many of them a rollback has undone.
    pub writes: u64,
    pub undone: u64,
}

impl serde::Serialize for RunKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One run of a job: the tag on every write it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {}", self.0)
    }
}

/// A write at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Put,
    Delete,
}

impl WriteOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WriteOp::Put => "put",
            WriteOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<WriteOp> {
        match s {
            "put" => Some(WriteOp::Put),
            "delete" => Some(WriteOp::Delete),
            _ => None,
        }
    }
}

/// Where the prior state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A HEAD of the key just before the write.
    Head,
    /// A listing of the destination made by this run before the write.
    Listing,
    /// Not looked at (the destination could not be asked): the prior state is unknown.
    None,
}

impl Seen {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Seen::Head => "head",
            Seen::Listing => "listing",
            Seen::None => "none",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Seen> {
        match s {
            "head" => Some(Seen::Head),
            "listing" => Some(Seen::Listing),
            "none" => Some(Seen::None),
            _ => None,
        }
    }
}

/// What the destination held under a key before ferry wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// Nothing: undoing the write deletes the key.
    Absent,
    /// An object, as the destination described it (the version, where the destination keeps
    /// versions, is what a rollback restores).
    Present { size: u64, etag: Option<String>, version: Option<String> },
    /// The destination could not be asked.
    Unknown,
}

/// What ferry wrote (for a put).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wrote {
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
}

/// A write about to be sent: what the ledger records before it.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    /// The journal id of the object written.
    pub object: i64,
    /// Where it is written: the destination location (an export's device root), as text. An
    /// unfinished row is taken over only by a write to the same target and key.
    pub target: &'a str,
    /// The destination key, relative to `target`.
    pub key: &'a str,
    pub op: WriteOp,
    pub prior: &'a Prior,
    pub seen: Seen,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRow {
    pub id: i64,
    pub run: RunId,
    /// The journal id of the object written.
    pub object: i64,
    /// The destination location written to (an export's device root).
    pub target: String,
    /// The destination key, relative to `target`.
    pub key: String,
    pub op: WriteOp,
    pub prior: Prior,
    pub seen: Seen,
    /// `None` while the write has not been acknowledged (a crash cut it off, or it failed).
    pub wrote: Option<Wrote>,
    /// Where the destination's object was kept before this write replaced or deleted it
    /// (`--backup-to`), and what the kept copy was when it was made.
    pub backup: Option<Kept>,
    /// The rollback that undid this write, and how far it got.
    pub undo: Option<(RunId, UndoState)>,
}

/// A copy kept of what a write replaced (`--backup-to`): where, and as the backup location
/// described it once written, so a rollback can tell a kept copy altered or lost since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The location under which it has the write's key, as text.
    pub location: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// How far a rollback got with a key's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoState {
    /// Recorded before the destination is touched: a rollback cut off here does the key again.
    Begun,
    /// The destination holds again what it held before the first of the writes.
    Done,
}

impl UndoState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UndoState::Begun => "begun",
            UndoState::Done => "done",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<UndoState> {
        match s {
            "begun" => Some(UndoState::Begun),
            "done" => Some(UndoState::Done),
            _ => None,
        }
    }
}

/// What a rollback left under a key it undid, for the object's row in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    /// Nothing: the key was absent before the writes.
    Removed,
    /// What was there before the writes, put back.
    Restored,
}

/// The writes still standing under one destination key since a run: what a rollback to before
/// that run has to undo, in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoGroup {
    pub key: String,
    /// The oldest of them: its prior state (and backup) is what the key goes back to.
    pub first: WriteRow,
    /// The newest: what ferry left there last.
    pub last: WriteRow,
    /// Every row of the group, oldest first.
    pub rows: Vec<i64>,
    /// An earlier rollback began undoing it and was cut off before it finished.
    pub begun: bool,
}

/// The destination write ledger of a journal.
#[async_trait]
pub trait Writes: Send + Sync {
    /// Starts a run: the tag on every destination write it records. `generation`: the job's
    /// newest generation as the run begins (what `rollback --to-generation` goes by).
    async fn begin_run(&self, kind: RunKind, generation: u32) -> Result<RunId>;
    /// Every run, oldest first, with its ledger row counts. Scans the ledger.
    async fn runs(&self) -> Result<Vec<RunRow>>;
    /// Records, before write `row` is sent, that what the destination held was kept under the
    /// location `backup` (same key). Committed before it returns, like [`Writes::begin_write`].
    async fn set_backup(&self, row: i64, backup: &Kept) -> Result<()>;
    /// What write `row` recorded the destination held before it, and where that was kept if
    /// an attempt already kept it: a write taken over from a cut-off attempt goes by the state
    /// its first attempt saw, and must not keep ferry's own half-finished write.
    async fn prior_of(&self, row: i64) -> Result<(Prior, Option<Kept>)>;
    /// The destination keys at `target` with writes of runs `from` and later that no rollback
    /// finished undoing, in key order after `after_key`, up to `limit` of them, each with its
    /// writes (only those not undone).
    async fn undo_groups(&self, target: &str, from: RunId, after_key: &str, limit: usize) -> Result<Vec<UndoGroup>>;
    /// Records that rollback `by` begins undoing `rows`, writes of `object` (committed before it
    /// returns): the object is no longer taken as copied (a copy or `status` after a rollback
    /// cut off here sees it pending).
    async fn begin_undo(&self, rows: &[i64], by: RunId, object: i64) -> Result<()>;
    /// Records that rollback `by` undid `rows` (oldest first), writes of `object`, leaving `left`
    /// at the destination: the object is to copy again (or to delete again, when the source no
    /// longer has it and what was there is back), so the next copy or delta moves forward.
    /// `now`: what was put back (its entity tag and version), which an earlier write of
    /// ferry's under the key (one no rollback undid) now names as what ferry left there: a copy
    /// put back under a new tag or version (a local file's time, a copy in parts, a versioned
    /// bucket's new version) is still ferry's to delete or roll back.
    async fn finish_undo(&self, rows: &[i64], by: RunId, object: i64, left: Undone, now: Option<&Wrote>) -> Result<()>;
    /// Records, before the write is sent, what the destination held under the intent's key
    /// before `run` writes it; a write of the same object, target and key an earlier attempt
    /// began and never finished is taken over, keeping the state it recorded. Returns the
    /// ledger row to finish.
    ///
    /// Group-committed like an outcome, not fsynced: a kill cannot lose it, a power loss may
    /// (an fsync per object would cost more than the copy of a small object); the next run
    /// then records ferry's own write as what was there.
    async fn begin_write(&self, run: RunId, intent: &Intent<'_>) -> Result<i64>;
    /// Records what write `row` left at the destination. Committed like an outcome
    /// ([`crate::Ledger::mark_done`]): a kill may lose it, and the next attempt takes the row
    /// over.
    async fn finish_write(&self, row: i64, wrote: &Wrote) -> Result<()>;
    /// What the newest finished put of `object` at `target` left there, if ferry ever wrote it.
    async fn last_put(&self, object: i64, target: &str) -> Result<Option<Wrote>>;
    /// The ledger after row `after`, oldest first; `run` narrows it to one run's writes.
    async fn writes(&self, run: Option<RunId>, after: i64, limit: usize) -> Result<Vec<WriteRow>>;
}
