//! A delta of a table job: each incremental table's rows written since its last export (see
//! [`ferry_tables::incremental`]) exported in one snapshot into one new file of the spool,
//! `<schema>/<table>/part-gNNNN-00000.parquet` (after the first generation's `part-NNNNN` in name order), proved against PostgreSQL's figures for the
//! same rows, and the next generation's table entries staged: the earlier files, the new ones,
//! each table's new watermark and the snapshot the next delta starts from. The delta then
//! lists the spool as it lists any source, and seals the entries with the generation.
//!
//! ```text
//! JOB/tables/since/gen-NNNN/T.json   table T's rows since, exported (or none): resumable
//! ```
//!
//! A killed delta starts again at the tables whose file is not recorded; a table recorded
//! with no rows is checked again (rows may have been written since), one with a file keeps it
//! (its file and its starting point are of one snapshot). Deletes are not seen.

use super::{ExportedFile, TableExports, component, file_sha256, read_json, sealed, spool, tables_dir, write_json};
use crate::{EngineError, Job, Result, Stats};
use ferry_tables::connect::{Environment, PgUrl, Settings};
use ferry_tables::export::{FileOptions, database_figures, export_range};
use ferry_tables::figures::compare;
use ferry_tables::ranges::Range;
use ferry_tables::snapshot::{Snapshot, SnapshotInfo, Visibility};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a delta exported of the tables.
#[derive(Debug, Clone, Serialize)]
pub struct TablesSince {
    pub tables: Vec<TableSince>,
    /// The snapshot this run read the rows in (tables recorded by an earlier run of the same
    /// delta were read in that run's).
    pub snapshot: Option<SnapshotInfo>,
    /// Rows deleted from the tables are not seen by an incremental export: the destination
    /// keeps them (always true; said in every report).
    pub deletes_not_seen: bool,
    pub dry_run: bool,
    /// Tables of the job's schemas created since the export: no delta exports them (the delta
    /// is incomplete, exit 1; a cutover does not hold).
    pub not_exported: Vec<String>,
    /// Prepared transactions of the database (durable writes not visible yet): a cutover does
    /// not hold while there are any.
    pub prepared: Vec<String>,
}

/// One table's rows since.
#[derive(Debug, Clone, Serialize)]
pub struct TableSince {
    pub table: String,
    pub column: String,
    /// Rows written since (past the watermark, or unseen by the last export's snapshot).
    pub rows: u64,
    /// The new file's key (none when there were no rows, or in a dry run).
    pub file: Option<String>,
    pub watermark_before: Option<String>,
    pub watermark: Option<String>,
    /// The watermark before, as a person reads it (dates and times as such).
    pub watermark_shown: Option<String>,
    /// Recorded by an earlier run of this delta.
    pub resumed: bool,
}

/// A table's delta as recorded: its file, if it had rows, and the snapshot it was read in.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    file: Option<ExportedFile>,
    snapshot: SnapshotInfo,
}

/// Exports the rows written since the newest sealed generation into the spool and stages the
/// table entries of `generation` (see the module docs); a dry run counts them only.
pub(crate) async fn export_since(job: &Job, generation: u32, dry_run: bool, stats: &Arc<Stats>) -> Result<TablesSince> {
    let spec = job.tables().expect("a table job").clone();
    let parent = generation - 1;
    let mut exports: TableExports = sealed(job, parent)?.ok_or_else(|| EngineError::TablesNotExported { dir: job.dir.clone() })?;
    let not: Vec<String> = exports.tables.iter().filter(|t| t.incremental.is_none()).map(|t| t.name.clone()).collect();
    if !not.is_empty() {
        return Err(EngineError::DeltaOfTables { dir: job.dir.clone(), tables: not });
    }
    let settings = Settings::resolve(&PgUrl::parse(&exports.source)?, &Environment::current())?;
    let tables: Vec<_> = exports.tables.iter().map(|t| t.table.clone()).collect();
    let snapshot = Snapshot::begin(settings.connect().await?, &tables).await?;
    super::planned_database(job, snapshot.client()).await?;
    // The tables as they are now: a column added, dropped or retyped since is refused.
    let names: Vec<_> = tables.iter().map(|t| t.name.clone()).collect();
    let casts = spec.casts.iter().map(|c| ferry_tables::schema::Cast::parse(c)).collect::<std::result::Result<Vec<_>, _>>()?;
    let (now, refusals) = ferry_tables::schema::describe(snapshot.client(), &names, &[], &casts).await?;
    if let Some(r) = refusals.first() {
        // A column added since with no exact Parquet type: left out of `now`, so refused here.
        return Err(EngineError::TableAltered { table: r.table.to_string(), detail: format!("a column now refused: {r}") });
    }
    for (was, now) in tables.iter().zip(&now) {
        if was.columns != now.columns || was.primary_key != now.primary_key {
            let shape = |t: &ferry_tables::schema::Table| {
                t.columns.iter().map(|c| format!("{} {}", c.name, c.pg_type)).collect::<Vec<_>>().join(", ")
            };
            return Err(EngineError::TableAltered {
                table: was.name.to_string(),
                detail: format!("was ({}), now ({})", shape(was), shape(now)),
            });
        }
    }
    let spool_dir = spool(&job.dir);
    // A counter behind the last snapshot's (a failover to a standby that lagged, a restore):
    // rows written since may carry ids below what was recorded.
    let next = snapshot.info.visibility.as_deref().and_then(Visibility::parse).map(|v| v.xmax());
    let next = next.ok_or_else(|| EngineError::NoVisibility { what: "the delta's snapshot".into() })?;
    for export in &exports.tables {
        let inc = export.incremental.as_ref().expect("checked above");
        let seen = Visibility::parse(&inc.seen_by).map(|v| v.xmin()).unwrap_or(0);
        if next < seen {
            return Err(EngineError::CounterRewound { table: export.name.clone(), was: seen, now: next });
        }
        if let Some(detail) = inc.identity.changed(&super::Identity::of(snapshot.client(), &export.table).await?) {
            return Err(EngineError::TableAltered { table: export.name.clone(), detail });
        }
        // The spool holds every file the entries list: the delta lists it as the job's source,
        // and a file gone from it would be deleted at the destination.
        for file in &export.files {
            let at = spool_dir.join(&file.key);
            if std::fs::metadata(&at).map(|m| m.len()).ok() != Some(file.bytes) {
                return Err(EngineError::SpoolLost { path: at });
            }
        }
    }
    // Tables of the job's schemas created since: not exported by any delta.
    let have: std::collections::BTreeSet<_> = exports.tables.iter().map(|t| t.table.name.clone()).collect();
    let not_exported: Vec<String> = ferry_tables::schema::tables_of(snapshot.client(), &spec.schemas)
        .await?
        .into_iter()
        .filter(|t| !have.contains(t))
        .map(|t| t.to_string())
        .collect();
    let prepared = ferry_tables::schema::prepared_transactions(snapshot.client()).await?;
    let records = tables_dir(job).join("since").join(format!("gen-{generation:04}"));
    let (spool, tmp) = (spool(&job.dir), tables_dir(job).join("tmp"));
    for d in [&records, &tmp] {
        std::fs::create_dir_all(d).map_err(EngineError::io(d))?;
    }
    // A file a killed delta was writing is not any table's: written again from the start.
    for entry in std::fs::read_dir(&tmp).map_err(EngineError::io(&tmp))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("since-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let options = FileOptions { compression: spec.compression, row_group_bytes: spec.row_group_bytes as usize };
    let mut out =
        TablesSince { tables: Vec::new(), snapshot: Some(snapshot.info.clone()), deletes_not_seen: true, dry_run, not_exported, prepared };
    if !dry_run {
        Stats::add(&stats.total_objects, exports.tables.len() as u64);
    }
    for (t, export) in exports.tables.iter_mut().enumerate() {
        let inc = export.incremental.clone().expect("checked above");
        let table = &export.table;
        let at = table.columns.iter().position(|c| c.name == inc.column).ok_or_else(|| EngineError::IncrementalColumn {
            given: inc.column.clone(),
            table: export.name.clone(),
            reason: "the column is not among the exported ones".into(),
        })?;
        let key = format!("{}/{}/part-g{generation:04}-00000.parquet", component(&table.name.schema), component(&table.name.name));
        let record_path = records.join(format!("{t:04}.json"));
        let mut line = TableSince {
            table: export.name.clone(),
            column: inc.column.clone(),
            rows: 0,
            file: None,
            watermark_before: inc.watermark.clone(),
            watermark: inc.watermark.clone(),
            watermark_shown: inc.watermark.as_deref().map(|w| ferry_tables::sample::shown_canonical(&table.columns[at].ty, w)),
            resumed: false,
        };
        // A dry run counts as the delta would go on: a file an earlier run recorded is kept.
        let kept = read_json::<Record>(&record_path).ok().filter(|r| kept_file(&spool, r));
        let record = match kept {
            Some(record) => {
                line.resumed = true;
                record
            }
            None => {
                let sql = ferry_tables::incremental::since(&table.columns[at], inc.watermark.as_deref(), &inc.seen_by, next)
                    .ok_or_else(|| EngineError::NoVisibility { what: format!("{}'s last export", export.name) })?;
                let range = Range::Since { column: inc.column.clone(), after: inc.watermark.clone(), unseen_by: inc.seen_by.clone(), sql };
                let predicate = range.predicate();
                if dry_run {
                    line.rows = count(snapshot.client(), &export.name, &ferry_tables::fingerprint::from_clause(table), &predicate).await?;
                    out.tables.push(line);
                    continue;
                }
                // The COPY first: a value with no Parquet form is refused by table, column and row.
                let part = tmp.join(format!("since-{t:04}.parquet"));
                let written = export_range(snapshot.client(), table, &predicate, &part, options).await?;
                if written.rows == 0 {
                    let _ = std::fs::remove_file(&part);
                    write_json(&record_path, &Record { file: None, snapshot: snapshot.info.clone() })?;
                    out.tables.push(line);
                    advance(export, None, &snapshot.info, at);
                    continue;
                }
                let figures = database_figures(snapshot.client(), table, &predicate).await?;
                let differences = compare(&figures, &written);
                if !differences.is_empty() {
                    let _ = std::fs::remove_file(&part);
                    let detail = differences.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ");
                    return Err(EngineError::TableExportDiffers { table: export.name.clone(), key, detail });
                }
                let to = spool.join(&key);
                let dir = to.parent().expect("a key has a directory");
                std::fs::create_dir_all(dir).map_err(EngineError::io(dir))?;
                std::fs::rename(&part, &to).map_err(EngineError::io(&to))?;
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(EngineError::io(dir))?;
                let (sha256, bytes) = file_sha256(&to)?;
                let file =
                    ExportedFile { key: key.clone(), range, rows: figures.rows, bytes, sha256, snapshot: snapshot.info.clone(), figures };
                let record = Record { file: Some(file), snapshot: snapshot.info.clone() };
                write_json(&record_path, &record)?;
                record
            }
        };
        if !dry_run {
            Stats::add(&stats.objects_done, 1);
        }
        if let Some(file) = &record.file {
            line.rows = file.rows;
            line.file = Some(file.key.clone());
        }
        advance(export, record.file, &record.snapshot, at);
        line.watermark = export.incremental.as_ref().and_then(|i| i.watermark.clone());
        out.tables.push(line);
    }
    let _ = snapshot.finish().await;
    if !dry_run {
        write_json(&tables_dir(job).join(super::TABLES_FILE), &exports)?;
    }
    Ok(out)
}

/// Whether the record's file (if any) is in the spool as recorded; a record of no rows is not
/// kept (rows may have been written since).
fn kept_file(spool: &std::path::Path, record: &Record) -> bool {
    let Some(file) = &record.file else { return false };
    let at = spool.join(&file.key);
    std::fs::metadata(&at).is_ok_and(|m| m.len() == file.bytes) && file_sha256(&at).is_ok_and(|(sha, _)| sha == file.sha256)
}

/// The table entry with `file` (the rows since, if any) added, read in `snapshot`.
fn advance(export: &mut super::TableExport, file: Option<ExportedFile>, snapshot: &SnapshotInfo, at: usize) {
    let inc = export.incremental.as_mut().expect("an incremental table");
    if let Some(file) = file {
        let ty = &export.table.columns[at].ty;
        let max = file.figures.columns.get(at).and_then(|c| c.max.clone());
        inc.watermark = ferry_tables::incremental::later(ty, inc.watermark.take(), max);
        export.rows += file.rows;
        export.fingerprint = export.fingerprint.wrapping_add(file.figures.fingerprint);
        export.files.push(file);
    }
    if let Some(v) = &snapshot.visibility {
        inc.seen_by = v.clone();
    }
    if !export.snapshots.iter().any(|s| s.id == snapshot.id) {
        export.snapshots.push(snapshot.clone());
    }
}

/// How many rows of `table` (`from`: its FROM clause) `predicate` keeps, in the snapshot.
async fn count(client: &ferry_tables::Client, table: &str, from: &str, predicate: &str) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM {from} WHERE {predicate}");
    let row = client.query_one(&sql, &[]).await.map_err(|source| {
        EngineError::Tables(ferry_tables::TablesError::Query { what: format!("count the rows of {table} written since"), source })
    })?;
    Ok(row.get::<_, i64>(0) as u64)
}
