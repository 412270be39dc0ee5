//! What a copy is asked to do, and how one object's failure is reported: shared by the
//! scheduler, the mover and every command that moves bytes (copy, export, ingest).

use ferry_core::FailureKind;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Objects in flight.
    pub transfers: usize,
    /// Part size; `None` lets the destination's limits decide.
    pub part_size: Option<u64>,
    /// Bytes buffered in total across all parts in flight.
    pub max_memory: u64,
    /// Parts in flight per object (reads and uploads each).
    pub parts_per_object: usize,
    /// Attempts per object within one run for failures that start the object over
    /// (`ErrorClass::Restart`: corrupted bytes, a cut body). A transient failure of one request
    /// is retried by the providers' request layer, never by restarting the object.
    pub attempts: u32,
    /// Plan and count what would be copied; write nothing to the destination.
    pub dry_run: bool,
    /// Let the service copy objects itself when source and destination are the same service
    /// reached the same way (`--server-side auto`); `false` moves every byte through ferry.
    pub server_side: bool,
    /// Permission bits of files written to local disk from a source that has none (an object
    /// store); `None`: 0644. A local source's own bits are kept.
    pub file_mode: Option<u32>,
    /// Whether object tags are copied (`--tags`), where both sides keep them.
    pub tags: crate::TagsMode,
    /// What to do with source objects that are archived and not restored (`--archived`).
    pub archived: Archived,
    /// `--storage-class-map`: the class objects of a source class are written in (keys: the
    /// source provider's spelling, see [`crate::Settings::storage_class_map`]).
    pub storage_class_map: std::collections::BTreeMap<String, String>,
    /// With [`Archived::Restore`]: how long the copy may wait for restores in flight, looking
    /// again every few minutes (zero: not at all; a later run copies them).
    pub restore_wait: std::time::Duration,
    /// `--backup-to`: before an object is overwritten (or, by a delta, deleted) at the
    /// destination, what was there is kept under this location's `run-N/` (see `backup.rs`).
    pub backup_to: Option<ferry_core::Location>,
}

/// What a copy does with a source object that is archived (S3 GLACIER / DEEP_ARCHIVE, Azure's
/// Archive tier) and has no readable restored copy. Neither choice stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Archived {
    /// Leave it unread: it fails alone (kind `archived`), is named in the report and by
    /// `verify`, and the run exits 1.
    #[default]
    Skip,
    /// Ask the source to restore it, and copy it once it is readable: in this run when the
    /// service restores at once, else in a later run (`ferry status` counts restores in
    /// flight).
    Restore(ferry_core::RestoreRequest),
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            transfers: 16,
            part_size: None,
            max_memory: 64 << 20,
            parts_per_object: 4,
            attempts: 5,
            dry_run: false,
            server_side: true,
            file_mode: None,
            tags: crate::TagsMode::Copy,
            archived: Archived::Skip,
            storage_class_map: Default::default(),
            restore_wait: std::time::Duration::ZERO,
            backup_to: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub key: String,
    /// What kind of failure, as found where it happened (written by its stable name).
    pub kind: FailureKind,
    pub error: String,
}
