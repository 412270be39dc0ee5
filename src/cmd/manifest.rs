//! `ferry manifest export --job DIR --format csv|jsonl`

use super::open_job;
use crate::Exit;
use crate::args::{Common, Format};
use ferry_core::ObjectEntry;
use ferry_engine::EngineError;
use ferry_journal::JournalKind;
use ferry_manifest::{ExportFormat, ManifestReader};
use std::io::Write;
use std::path::Path;

pub async fn export(common: &Common, format: Format, output: Option<&Path>) -> Result<Exit, EngineError> {
    let job = open_job(common, None, None)?;
    let generation = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let journal = job.journal(JournalKind::Main).await?;
    let format = match format {
        Format::Csv => ExportFormat::Csv,
        Format::Jsonl => ExportFormat::Jsonl,
    };
    let output_path = output.map(Path::to_path_buf);
    // The manifest is read and written on the blocking pool; each entry asks the journal.
    let runtime = tokio::runtime::Handle::current();
    let rows = tokio::task::spawn_blocking(move || -> Result<u64, EngineError> {
        let mut out: Box<dyn Write> = match &output_path {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(|source| EngineError::Io { path: path.clone(), source })?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        // The journal is the truth for what was copied: a restarted object shows the version
        // copied, not the sealed one.
        let rows = ferry_manifest::export(&reader, format, &mut out, |e| {
            let row = runtime.block_on(journal.get_object(e.id())).ok().flatten()?;
            let copied = row.note.as_ref().map(|_| ObjectEntry {
                content_type: e.content_type.clone(),
                metadata: e.metadata.clone(),
                ..row.entry.clone()
            });
            Some(ferry_manifest::Proof { sha256: row.copied.sha256, verified_by: row.verified_by, copied, note: row.note })
        });
        let path = output_path.as_deref().unwrap_or(Path::new("<stdout>"));
        let rows = rows.map_err(EngineError::from).and_then(|rows| {
            out.flush().map_err(|source| EngineError::Io { path: path.into(), source })?;
            Ok(rows)
        });
        // A reader of standard output that went away (`| head`) ends the export quietly.
        match rows {
            Err(EngineError::Manifest(ferry_manifest::ManifestError::Io { source, .. }) | EngineError::Io { source, .. })
                if output_path.is_none() && source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                std::process::exit(0)
            }
            other => other,
        }
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    if output.is_some() {
        eprintln!("exported {rows} entries of generation {generation}");
    }
    Ok(Exit::Ok)
}
