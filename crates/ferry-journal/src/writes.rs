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
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Copy => "copy",
            RunKind::Export => "export",
            RunKind::Ingest => "ingest",
            RunKind::Delta => "delta",
        }
    }
}

/// One run of a job: the tag on every write it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
}

/// The destination write ledger of a journal.
#[async_trait]
pub trait Writes: Send + Sync {
    /// Starts a run: the tag on every destination write it records.
    async fn begin_run(&self, kind: RunKind) -> Result<RunId>;
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
