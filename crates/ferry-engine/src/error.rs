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
    #[error("{side}: {source}")]
    Provider { side: &'static str, source: ProviderError },
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
    /// `--part-size` below what the destination accepts.
    #[error("--part-size {}: {provider} takes parts of at least {}; use --part-size {} or more", format_size(*given), format_size(*min), min.div_ceil(1 << 20).max(1).to_string() + "MiB")]
    PartSizeBelowMinimum { provider: &'static str, given: u64, min: u64 },
    /// No part size fits the memory budget and the destination's limits.
    #[error("copy refused, nothing copied: {what}: {source}")]
    NoPartPlan { what: String, source: ferry_core::PlanError },
    /// A disk export or ingest cannot start as asked (a device, a layout, a shipment).
    #[error("{0}")]
    Appliance(String),
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
            | EngineError::JobInsideLocation { .. }
            | EngineError::Appliance(_)
            | EngineError::PartSizeBelowMinimum { .. }
            | EngineError::NoPartPlan { .. }
            | EngineError::Manifest(_) => true,
            EngineError::Journal(_) | EngineError::Io { .. } => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { path, source }
    }
}
