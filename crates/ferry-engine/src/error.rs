//! Engine errors, with the distinction the CLI turns into exit codes.

use ferry_core::ErrorClass;
use ferry_core::size::format_size;
use ferry_providers::ProviderError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("{0}")]
    Location(#[from] ferry_core::LocationError),
    /// A destination write setting (`--storage-class`, `--sse`) the destination's provider does
    /// not have.
    #[error("{0}")]
    WriteSetting(String),
    /// A flag that contradicts a setting the job kept from its first copy (`given`: the flag
    /// and its value; `was`: how the job was first copied).
    #[error("{given}: this job was first copied {was} (kept in its job.toml); leave the flag out to keep it, or copy with a new --job")]
    SettingChanged { given: String, was: String },
    #[error("{side}: {source}")]
    Provider { side: &'static str, source: ProviderError },
    /// `--all-versions` given for a job planned without it: its manifest and journal hold one
    /// row per key.
    #[error("{dir} was planned without --all-versions (one version of each key): plan every version in a new --job directory")]
    PlannedWithoutVersions { dir: PathBuf },
    /// `--all-versions` where a side cannot list, read or keep versions.
    #[error("--all-versions: the {side} {location} {refusal}")]
    AllVersions { side: &'static str, location: String, refusal: VersionsRefusal },
    #[error(transparent)]
    Manifest(#[from] ferry_manifest::ManifestError),
    #[error(transparent)]
    Journal(#[from] ferry_journal::JournalError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{dir} holds no job yet: give SRC and DST")]
    NoJob { dir: PathBuf },
    #[error("{dir} belongs to a job with {what} {job}, not {given}: use another --job directory")]
    JobMismatch { dir: PathBuf, what: &'static str, job: String, given: String },
    #[error("{path} is not a valid job file: {detail}")]
    JobFile { path: PathBuf, detail: String },
    #[error("{dir} is in use by another ferry process (lock {lock})")]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("the job directory {dir} is inside the {what} {location}: put it elsewhere, or ferry would copy its own files")]
    JobInsideLocation { dir: PathBuf, what: &'static str, location: String },
    #[error("{dir} has no sealed manifest yet: run `ferry plan` or `ferry copy` first")]
    NotPlanned { dir: PathBuf },
    #[error("{dir} has no cutover record that holds for its newest generation: run `ferry cutover` first")]
    NoCutover { dir: PathBuf },
    #[error("{dir} already holds a job: give a new --job-out directory")]
    JobExists { dir: PathBuf },
    #[error("a cutover has no --dry-run: `ferry delta --dry-run` says what is left to copy and delete")]
    CutoverDryRun,
    #[error("generation {generation} is an unfinished delta's: run `ferry delta` to finish it before a dry run")]
    DeltaUnfinished { generation: u32 },
    #[error("{dir} copies every version (--all-versions): ferry delta does not replay versions yet")]
    DeltaOfAllVersions { dir: PathBuf },
    /// A table job with tables that are not incremental: a delta could not tell what was
    /// written since their export.
    #[error(
        "{dir}: {} not incremental: ferry delta and cutover replay only tables exported with --incremental-by COLUMN; export them again into a new job with it", tables.join(", ")
    )]
    DeltaOfTables { dir: PathBuf, tables: Vec<String> },
    /// An `--incremental-by` that names no column of a table, or a column that cannot be one.
    #[error("--incremental-by {given}: {table}: {reason}")]
    IncrementalColumn { given: String, table: String, reason: String },
    /// An ingest job whose shipment carried no manifest of the source (an export by an older
    /// ferry): its rows hold no entity tags or versions to compare a listing with.
    #[error(
        "{dir} ingested shipped disks (from {shipped_from}) that carry no manifest of that source (exported by an older ferry): a delta could not tell what changed since; plan a job from {shipped_from} to the same destination and run its deltas there"
    )]
    DeltaOfIngest { dir: PathBuf, shipped_from: String },
    /// A delta refused before it sealed, merged or deleted anything.
    #[error("delta refused: {0}")]
    DeltaRefused(crate::delta::DeltaRefusal),
    /// `--part-size` below what the destination accepts.
    #[error("--part-size {}: {provider} takes parts of at least {}; use --part-size {} or more", format_size(*given), format_size(*min), min.div_ceil(1 << 20).max(1).to_string() + "MiB")]
    PartSizeBelowMinimum { provider: &'static str, given: u64, min: u64 },
    /// No part size fits the memory budget and the destination's limits.
    #[error("copy refused, nothing copied: {what}: {source}")]
    NoPartPlan { what: String, source: ferry_core::PlanError },
    /// A disk export or ingest cannot start as asked (a device, a layout, a shipment).
    #[error(transparent)]
    Appliance(#[from] ApplianceError),
    #[error(transparent)]
    Tables(#[from] ferry_tables::TablesError),
    #[error(transparent)]
    TableExport(#[from] ferry_tables::export::ExportError),
    #[error("{}", refused(refusals))]
    TablesRefused { refusals: Vec<ferry_tables::schema::Refusal> },
    #[error("{}: the tables' columns changed since this export began; export them again with a new --job", dir.display())]
    TablesChanged { dir: PathBuf },
    /// An incremental table whose columns changed since its last export: its rows since would
    /// be written in the old shape.
    #[error(
        "{table}: its columns changed since its last export ({detail}); a delta would not export them as they are now: export the tables again into a new job"
    )]
    TableAltered { table: String, detail: String },
    /// A snapshot whose visibility was not recorded (an export by an older ferry), which an
    /// incremental table's delta starts from.
    #[error(
        "{what}: its snapshot's visibility (pg_current_snapshot) was not recorded, which an incremental delta needs; export the tables again into a new job"
    )]
    NoVisibility { what: String },
    /// The database's transaction counter is behind the last export's snapshot (a failover to
    /// a standby that lagged, a restore): rows written since may look older than the export.
    #[error(
        "{table}: the database's transaction counter ({now}) is behind the last export's snapshot ({was}): a failover to a lagging standby or a restore? Rows written since could not be told; export the tables again into a new job"
    )]
    CounterRewound { table: String, was: u64, now: u64 },
    /// A file the table entries list is not in the job's spool: a delta would record it gone and
    /// delete it at the destination.
    #[error(
        "{}: a table file the export recorded is not in the job's spool (an incremental job keeps its spool): restore it, or export the tables again into a new job", path.display()
    )]
    SpoolLost { path: PathBuf },
    #[error("{table}: {key}: the rows written are not the database's: {detail}")]
    TableExportDiffers { table: String, key: String, detail: String },
    #[error("{}: this export began on database {was}, the connection reaches {now}; give the same server (or a new --job)", dir.display())]
    TablesOtherDatabase { dir: PathBuf, was: String, now: String },
    #[error("{table} has no columns: a Parquet file without columns cannot hold its rows")]
    TableWithoutColumns { table: String },
    #[error("{}: a table job is planned by its export (`ferry copy --job DIR`), which has not finished", dir.display())]
    TablesNotExported { dir: PathBuf },
}

/// Why a disk export or ingest cannot go on as asked: the devices given, the options a job
/// started with, or a shipment that is not what it should be. Each is the user's to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplianceError {
    #[error("give at least one --from device")]
    NoDevices,
    #[error("device {} does not exist or is not a directory: mount it first", device.display())]
    NoDevice { device: PathBuf },
    /// More devices than a shipment can number; `across_runs`: counting every device path the
    /// export has had in its runs.
    #[error("{}", too_many(*given, *max, *across_runs))]
    TooManyDevices { given: usize, max: u32, across_runs: bool },
    #[error("{} and {} are on the same file system: give each device once", first.display(), second.display())]
    SameFileSystem { first: PathBuf, second: PathBuf },
    /// An export resumed with another layout or manifest generation than it started with.
    #[error("this job's export was started with another {what} ({was}); finish it with the same options, or use another --job")]
    OptionChanged { what: &'static str, was: String },
    #[error("writing the shipment manifest on {}: {source}", device.display())]
    ShipmentWrite { device: PathBuf, source: Box<EngineError> },
    #[error("{}: no {} at its root: not a disk written by `ferry export`, or not mounted", device.display(), ferry_manifest::shipment::SHIPMENT_FILE)]
    NoShipment { device: PathBuf },
    #[error("{}: the shipment manifest's SHA-256 is {digest}, none of the digests expected: it changed since export", device.display())]
    UnexpectedDigest { device: PathBuf, digest: String },
    #[error("{}: belongs to export {export}, the other disks to {others}", device.display())]
    MixedExports { device: PathBuf, export: String, others: String },
    #[error("{}: its shipment manifest says the export has {says} devices, another disk's says {other}", device.display())]
    DeviceCountDiffers { device: PathBuf, says: u32, other: u32 },
    #[error("{}: device {index} of the export was given twice", device.display())]
    DeviceTwice { device: PathBuf, index: u32 },
    /// `job`: the job directory, whose journal holds the record.
    #[error("{}: unreadable shipment record in the journal: {detail}", job.display())]
    ShipmentRecord { job: PathBuf, detail: String },
    #[error("these disks are from export {disks}, this job ingests export {job}: use another --job")]
    OtherExport { disks: String, job: String },
    #[error("device {index} ({}) was not given when this job started; ingest it with another --job", device.display())]
    DeviceNotInJob { device: PathBuf, index: u32 },
    /// The manifest generation a device carries (`ferry-manifest/`) is not the one its
    /// shipment was exported from, or cannot be read: nothing is ingested.
    #[error("{}: {detail}; refusing to ingest (remove the folder to ingest without the source's identities)", dir.display())]
    ShippedManifest { dir: PathBuf, detail: String },
    /// A delta made the job read from the exported source: its disks are behind it.
    #[error("{}: a delta made this job read from {reads_from} instead of its disks; ingest them with another --job", job.display())]
    IngestAfterDelta { job: PathBuf, reads_from: String },
}

fn refused(refusals: &[ferry_tables::schema::Refusal]) -> String {
    if refusals.is_empty() {
        return "no table to export: --table and --schema name none".to_string();
    }
    let lines: Vec<String> = refusals.iter().map(|r| format!("  {r}")).collect();
    format!("{} columns have no exact Parquet mapping; nothing was exported:\n{}", refusals.len(), lines.join("\n"))
}

fn too_many(given: usize, max: u32, across_runs: bool) -> String {
    match across_runs {
        false => format!("{given} devices given: an export spans at most {max}"),
        true => {
            format!("this export has had {given} device paths: an export spans at most {max} (give each disk where it was mounted before)")
        }
    }
}

/// Why a side cannot take part in an `--all-versions` job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionsRefusal {
    /// The provider has no versions ferry can list and read (only S3 and GCS have them so far).
    #[error("has no versions ferry can list and read (only S3 and GCS buckets so far)")]
    Unsupported,
    /// The destination would keep only the last write of each key: every version but the
    /// newest would be lost without a word.
    #[error("does not keep versions (turn bucket versioning on), so only the last version of each key would be kept")]
    NotKept,
}

impl EngineError {
    /// Whether the user must fix the command, the configuration or the environment (exit code 2),
    /// as opposed to a run that went ahead and met failures.
    pub fn is_usage(&self) -> bool {
        match self {
            EngineError::Provider { source, .. } => {
                source.class() == ErrorClass::Fatal || matches!(source, ProviderError::Unreachable { .. })
            }
            EngineError::Location(_)
            | EngineError::NoJob { .. }
            | EngineError::JobMismatch { .. }
            | EngineError::JobFile { .. }
            | EngineError::Locked { .. }
            | EngineError::NotPlanned { .. }
            | EngineError::DeltaRefused(_)
            | EngineError::CutoverDryRun
            | EngineError::DeltaUnfinished { .. }
            | EngineError::DeltaOfAllVersions { .. }
            | EngineError::DeltaOfTables { .. }
            | EngineError::IncrementalColumn { .. }
            | EngineError::DeltaOfIngest { .. }
            | EngineError::NoCutover { .. }
            | EngineError::JobExists { .. }
            | EngineError::JobInsideLocation { .. }
            | EngineError::Appliance(_)
            | EngineError::PartSizeBelowMinimum { .. }
            | EngineError::NoPartPlan { .. }
            | EngineError::Manifest(_)
            | EngineError::WriteSetting(_)
            | EngineError::SettingChanged { .. }
            | EngineError::AllVersions { .. }
            | EngineError::PlannedWithoutVersions { .. } => true,
            EngineError::Tables(e) => !matches!(e, ferry_tables::TablesError::Query { .. } | ferry_tables::TablesError::Io { .. }),
            EngineError::TableExport(e) => matches!(e, ferry_tables::export::ExportError::Value { .. }),
            EngineError::TablesRefused { .. }
            | EngineError::TablesChanged { .. }
            | EngineError::TableAltered { .. }
            | EngineError::NoVisibility { .. }
            | EngineError::CounterRewound { .. }
            | EngineError::SpoolLost { .. }
            | EngineError::TablesOtherDatabase { .. }
            | EngineError::TablesNotExported { .. }
            | EngineError::TableWithoutColumns { .. } => true,
            EngineError::TableExportDiffers { .. } => false,
            EngineError::Journal(_) | EngineError::Io { .. } => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { path, source }
    }
}
