//! `ferry manifest export --job DIR --format csv|jsonl`

use super::open_job;
use crate::Exit;
use crate::args::{Common, Format};
use ferry_core::ObjectEntry;
use ferry_engine::EngineError;
use ferry_journal::Journal;
use ferry_manifest::{ExportFormat, ManifestReader};
use std::io::Write;
use std::path::Path;

pub fn export(common: &Common, format: Format, output: Option<&Path>) -> Result<Exit, EngineError> {
    let job = open_job(common, None, None)?;
    let generation = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let journal = Journal::open(&job.journal_path())?;
    let format = match format {
        Format::Csv => ExportFormat::Csv,
        Format::Jsonl => ExportFormat::Jsonl,
    };
    let mut out: Box<dyn Write> = match output {
        Some(path) => {
            Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|source| EngineError::Io { path: path.into(), source })?))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // The journal is the truth for what was copied: a restarted object shows the version
    // copied, not the sealed one.
    let rows = ferry_manifest::export(&reader, format, &mut out, |e| {
        let row = journal.get(&e.key).ok().flatten()?;
        let copied = row.note.as_ref().map(|_| ObjectEntry {
            content_type: e.content_type.clone(),
            metadata: e.metadata.clone(),
            ..row.entry.clone()
        });
        Some(ferry_manifest::Proof { sha256: row.copied.sha256, verified_by: row.verified_by, copied, note: row.note })
    })?;
    out.flush().map_err(|source| EngineError::Io { path: output.unwrap_or(Path::new("<stdout>")).into(), source })?;
    if output.is_some() {
        eprintln!("exported {rows} entries of generation {generation}");
    }
    Ok(Exit::Ok)
}
