//! The work of a migration: planning, copying, verifying — everything between a parsed command
//! line and the providers, journal and manifest.
//!
//! The engine owns the job directory's layout and the order of side effects: a source is
//! listed into a sealed manifest before a byte moves, the journal is seeded from that sealed
//! manifest, and each object's outcome is journaled as soon as the destination acknowledged it.
//! It never prints: progress goes through [`Stats`] counters the caller polls, results come back
//! as summaries and as JSON reports under `JOB/reports/`.
//!
//! # Layout
//! - [`job`]: `JOB/` — `job.toml`, manifest generations, the lock, reports; the one place the
//!   job's journals are opened ([`Job::journal`], an `Arc<dyn ferry_journal::Journal>`).
//! - [`mod@plan`]: list the source (every version of each key with `--all-versions`) into a
//!   sealed manifest generation, seed the journal; count and name objects under S3 object lock.
//! - [`mod@copy`]: a copy from source to destination: plan, one scheduler pass, the summary.
//! - [`mod@delta`]: list the source again, seal the next generation with its change set, copy
//!   what changed, and delete what is gone (only when asked and safe).
//! - [`mod@cutover`]: a final delta, a second listing proved identical, a verify, and the
//!   hashed cutover record.
//! - [`mod@reverse`]: after a cutover, a job from the new side back to the old whose first
//!   generation is the new side at cutover.
//! - [`mod@rollback`]: the destination put back as it was before a run or after a
//!   generation, from the write ledger (backups, the destination's versions).
//! - `backup`: `--backup-to`, what a write replaces kept first, and the one copy between two
//!   providers outside the mover (backups and restores).
//! - `key_order`: a listing in key order whatever order it came in (an external sort).
//! - [`settings`]: the run settings a job keeps from its first copy (class, encryption,
//!   local metadata, tags, archived objects), and how a later run's flags meet them.
//! - [`options`]: what a copy is asked to do ([`CopyOptions`]) and a failed object ([`copy::Failure`]).
//! - `scheduler`: one pass over the journal's pending objects, claimed in leased batches,
//!   `--transfers` at a time, each through the mover its route picks; a key's versions
//!   (`--all-versions`) one after the other, oldest first.
//! - `held`: what the destination held, from one listing of a small destination: the write
//!   ledger's prior states without a HEAD per object.
//! - `mover`: one object — a single put, or a resumable parallel multipart upload — under a
//!   byte budget.
//! - [`mod@export`]: the manifest onto appliance disks (layouts, packing, shipment manifests).
//! - [`mod@ingest`]: shipped disks into a cloud destination, proved against their shipment.
//! - [`fidelity`]: what the destination did not keep of the headers, metadata and tags,
//!   per object, and `--tags`.
//! - [`skipped`]: what the listing met and ferry does not copy, by reason, for every summary.
//! - [`mod@clean`]: abort the multipart uploads a job left open.
//! - [`mod@verify`]: compare the destination with what the copy recorded and the source declared
//!   (with `--all-versions`, each key's versions in order).
//! - [`mod@tables`]: PostgreSQL tables exported into Parquet files in the job's spool from one
//!   snapshot, sealed with the database's figures, copied as objects, proved by `verify`.
//! - [`stats`]: live counters for progress display.
//! - [`error`]: [`EngineError`] (with [`ApplianceError`] for devices and shipments, and
//!   [`VersionsRefusal`] for a side an `--all-versions` job cannot use), and which errors are the
//!   user's to fix.

mod backup;
pub mod clean;
mod concurrency;
pub mod copy;
pub mod cutover;
pub mod delta;
pub mod error;
pub mod export;
pub mod fidelity;
mod held;
pub mod ingest;
pub mod job;
mod key_order;
mod mover;
pub mod options;
pub mod plan;
pub mod reverse;
pub mod rollback;
mod scheduler;
pub mod settings;
pub mod skipped;
pub mod stats;
pub mod tables;
pub mod verify;

pub use clean::{CleanSummary, clean, sweep};
pub use copy::{Archived, CopyOptions, CopySummary, copy};
pub use cutover::{CutoverOptions, CutoverRecord, CutoverSummary, cutover};
pub use delta::{DeltaOptions, DeltaRefusal, DeltaSummary, MaxDelete, delta};
pub use error::{ApplianceError, EngineError, VersionsRefusal};
pub use export::{ExportOptions, ExportSummary, export};
pub use fidelity::{Fidelity, TagsMode};
pub use ingest::{IngestOptions, IngestSummary, follow_source, ingest};
pub use job::{Access, Job};
pub use plan::{Locked, PlanSummary, plan};
pub use reverse::{ReverseSummary, reverse};
pub use rollback::{RollbackOptions, RollbackSummary, RollbackTo, rollback};
pub use settings::{AskedSettings, Settings};
pub use skipped::Skipped;
pub use stats::Stats;
pub use verify::{Difference, DifferenceKind, VerifyOptions, VerifySummary, verify};

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
