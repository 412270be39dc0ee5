//! PostgreSQL tables as a job's source: exported into Parquet files in the job's spool from one
//! snapshot, sealed into the manifest with each file's figures, then copied by the ordinary
//! engine (the spool is the job's source), and proved by `verify` against the figures the
//! database computed.
//!
//! ```text
//! JOB/tables/plan.json          the tables (columns, key) and each file's range, fixed by the first run
//! JOB/tables/done/T-F.json      a file exported: rows, bytes, SHA-256, snapshot, the database's figures
//! JOB/tables/spool/<schema>/<table>/part-NNNNN.parquet   the files (the job's source)
//! JOB/tables/tmp/               files being written (never listed)
//! JOB/manifests/gen-0001/tables.json   the table entries, hashed in manifest.json
//! ```
//!
//! A run exports the files not done yet, each file's range through one of `connections`
//! workers that adopted the run's snapshot; a killed export starts again at the files that
//! were in flight. The runs of one export each take a snapshot: a file records its own, and the
//! table entry lists every snapshot its files came from (one, unless an export was resumed).

use crate::job::write_atomically;
use crate::{EngineError, Job, Result, Stats};
use ferry_tables::connect::Settings as PgSettings;
pub use ferry_tables::connect::{Environment, PgUrl};
use ferry_tables::export::{FileOptions, database_figures, export_range};
use ferry_tables::figures::{Figures, compare};
pub use ferry_tables::files::Compression;
use ferry_tables::ranges::Range;
use ferry_tables::schema::{Cast, Table, TableName, describe};
use ferry_tables::snapshot::{Snapshot, SnapshotInfo, adopt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod since;
mod verify;
pub(crate) use since::export_since;
pub use since::{TableSince, TablesSince};
pub(crate) use verify::verify;
pub use verify::{SampleCounts, SampleRun, SampleVerified, TableNotSampled, TableSampled, TablesVerified};

/// The `file://` name of the table file entries in a generation.
pub const TABLES_FILE: &str = "tables.json";

/// What `job.toml` keeps of a table source (never a password: the URL cannot hold one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablesSpec {
    /// The `postgres://` URL, without credentials.
    pub url: String,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub casts: Vec<String>,
    /// `--incremental-by`: `column` (every table's) or `schema.table.column`; a delta exports
    /// the rows written since (see [`ferry_tables::incremental`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incremental_by: Vec<String>,
    pub rows_per_file: u64,
    pub compression: Compression,
    pub row_group_bytes: u64,
}

/// One file of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedFile {
    /// The key under the destination: `<schema>/<table>/part-NNNNN.parquet`.
    key: String,
    range: Range,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedTable {
    table: Table,
    files: Vec<PlannedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExportPlan {
    tables: Vec<PlannedTable>,
    /// The database the plan was made on (see `Snapshot::database`); a resume must be on it.
    #[serde(default)]
    database: Option<String>,
}

/// A file exported, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    pub key: String,
    pub range: Range,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The snapshot the file's rows were read in.
    pub snapshot: SnapshotInfo,
    /// PostgreSQL's figures for the file's rows, in SQL over that snapshot.
    pub figures: Figures,
}

/// A table export entry of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableExport {
    /// `schema.table`.
    pub name: String,
    pub table: Table,
    pub rows: u64,
    /// The table's fingerprint: the sum modulo 2^64 of its files'.
    pub fingerprint: u64,
    /// Every snapshot its files came from.
    pub snapshots: Vec<SnapshotInfo>,
    pub files: Vec<ExportedFile>,
    /// An incremental table: its column, and where the next delta starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
}

/// Where an incremental table's next delta starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremental {
    pub column: String,
    /// The largest value of the column among the rows exported (canonical text; none when no
    /// row had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// The visibility of the snapshot the table's files are, together, of: what it did not see
    /// is what the next delta exports.
    pub seen_by: String,
    /// What identified the table when it was exported, beyond its name.
    #[serde(flatten)]
    pub identity: Identity,
}

/// What identifies an incremental table beyond its name: a delta refuses a change, since the
/// rows it brings keep their `xmin` and would never be seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// A partitioned table's leaf partitions (`schema.name#oid`): one attached since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// The table's oid: another table swapped in under its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<u32>,
    /// Its columns' numbers: a column dropped and added again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attnums: Vec<i16>,
}

impl Identity {
    /// `table`'s identity in the catalog `client` reads.
    pub(crate) async fn of(client: &ferry_tables::Client, table: &Table) -> Result<Identity> {
        let (oid, attnums) = ferry_tables::schema::identity(client, table).await?;
        Ok(Identity { partitions: ferry_tables::schema::partitions(client, table).await?, relation: Some(oid), attnums })
    }

    /// How `now` differs from this identity, for a person; `None` when it does not (an identity
    /// recorded before oids and column numbers were is checked by its partitions only).
    pub(crate) fn changed(&self, now: &Identity) -> Option<String> {
        if self.partitions != now.partitions {
            return Some(format!("its partitions were ({}), now ({})", self.partitions.join(", "), now.partitions.join(", ")));
        }
        if let (Some(was), Some(oid)) = (self.relation, now.relation)
            && was != oid
        {
            return Some(format!("another table has its name now (oid {was} then, {oid} now): its rows would never be seen"));
        }
        if !self.attnums.is_empty() && self.attnums != now.attnums {
            return Some("a column was dropped and added again (its values would not be seen)".into());
        }
        None
    }
}

/// The generation's `tables.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableExports {
    pub source: String,
    pub tables: Vec<TableExport>,
}

/// What an export run did.
#[derive(Debug, Clone, Serialize)]
pub struct TablesSummary {
    pub source: String,
    pub tables: usize,
    pub files: usize,
    /// Files exported by this run (the rest were done by an earlier one, or the job was sealed).
    pub exported: usize,
    pub rows: u64,
    /// This run's snapshot (none when nothing was left to export).
    pub snapshot: Option<SnapshotInfo>,
    /// Snapshots the export's files came from, across its runs.
    pub snapshots: usize,
    /// Foreign keys `verify --sample` will not check, and why; those whose parent table is not
    /// in the export reference rows the destination will not have.
    pub references_unchecked: Vec<UncheckedReference>,
    pub already_planned: bool,
    pub dry_run: bool,
    pub seconds: f64,
}

/// A foreign key whose references `verify --sample` does not look up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UncheckedReference {
    /// The child table.
    pub table: String,
    pub constraint: String,
    pub parent: String,
    pub why: Unchecked,
}

/// Why a foreign key is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unchecked {
    /// The parent table is not in the export: the destination will not have the rows the
    /// exported child rows reference.
    ParentNotExported,
    /// A column of the key (in the child or the parent) is not among the exported columns.
    ColumnsNotExported,
    /// A child column's type is not its parent column's (numeric scales, date and timestamp…):
    /// equal values need not have equal canonical text.
    TypesDiffer,
    /// Added `NOT VALID` and not validated since: existing rows may reference nothing.
    NotValidated,
    /// Some of the parent's files could not be read back.
    ParentUnreadable,
}

impl Unchecked {
    pub fn as_str(self) -> &'static str {
        match self {
            Unchecked::ParentNotExported => "the parent table is not in the export",
            Unchecked::ColumnsNotExported => "a column of the key is not exported",
            Unchecked::TypesDiffer => "the child's and the parent's key columns have different types",
            Unchecked::NotValidated => "the constraint is NOT VALID",
            Unchecked::ParentUnreadable => "the parent's files could not all be read back",
        }
    }
}

impl std::fmt::Display for UncheckedReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} → {}", self.table, self.constraint, self.parent)
    }
}

/// How a foreign key of `child` is checked among `tables`: the parent's index and the key's
/// column positions in the child and in the parent, or why it is not.
pub(crate) fn checkable(
    child: &Table,
    fk: &ferry_tables::schema::ForeignKey,
    tables: &[&Table],
) -> std::result::Result<(usize, Vec<usize>, Vec<usize>), Unchecked> {
    let parent = tables.iter().position(|t| t.name == fk.parent).ok_or(Unchecked::ParentNotExported)?;
    let positions =
        |t: &Table, names: &[String]| names.iter().map(|n| t.columns.iter().position(|c| &c.name == n)).collect::<Option<Vec<_>>>();
    let (Some(cols), Some(pcols)) = (positions(child, &fk.columns), positions(tables[parent], &fk.parent_columns)) else {
        return Err(Unchecked::ColumnsNotExported);
    };
    let same = cols.iter().zip(&pcols).all(|(&c, &p)| same_canonical(&child.columns[c], &tables[parent].columns[p]));
    if !same {
        return Err(Unchecked::TypesDiffer);
    }
    if !fk.validated {
        return Err(Unchecked::NotValidated);
    }
    Ok((parent, cols, pcols))
}

/// Whether equal values of columns `a` and `b` have one canonical text: the same type, any two
/// integer types, decimals of one scale (a text cast only of the same PostgreSQL type).
fn same_canonical(a: &ferry_tables::schema::Column, b: &ferry_tables::schema::Column) -> bool {
    use ferry_tables::schema::ColumnType as T;
    match (&a.ty, &b.ty) {
        (T::Int16 | T::Int32 | T::Int64, T::Int16 | T::Int32 | T::Int64) => true,
        (T::Decimal { scale: x, .. }, T::Decimal { scale: y, .. }) => x == y,
        (T::CastText, T::CastText) => a.pg_type == b.pg_type,
        (x, y) => x == y,
    }
}

/// The foreign keys of `tables` that `verify --sample` cannot check, and why.
pub fn unchecked_references<'a>(tables: impl IntoIterator<Item = &'a Table>) -> Vec<UncheckedReference> {
    let tables: Vec<&Table> = tables.into_iter().collect();
    let mut out = Vec::new();
    for t in &tables {
        for fk in &t.foreign_keys {
            if let Err(why) = checkable(t, fk, &tables) {
                out.push(UncheckedReference { table: t.name.to_string(), constraint: fk.name.clone(), parent: fk.parent.to_string(), why });
            }
        }
    }
    out
}

/// How a run exports.
#[derive(Debug, Clone, Copy)]
pub struct ExportRun {
    /// Worker connections, each exporting one file at a time.
    pub connections: usize,
    pub dry_run: bool,
}

pub(super) fn tables_dir(job: &Job) -> PathBuf {
    job.dir.join("tables")
}

/// The spool a table job reads its files from (the job's source).
pub fn spool(job_dir: &Path) -> PathBuf {
    std::path::absolute(job_dir).unwrap_or_else(|_| job_dir.to_path_buf()).join("tables").join("spool")
}

/// A schema or table name as one path component: anything but letters, digits, `_` and `-`
/// percent-encoded (so `/`, `..` or a NUL cannot leave the table's directory).
fn component(name: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'-');
    percent_encoding::utf8_percent_encode(name, KEEP).to_string()
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(EngineError::io(path))?;
    serde_json::from_slice(&text).map_err(|e| EngineError::JobFile { path: path.to_path_buf(), detail: e.to_string() })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(EngineError::io(dir))?;
    }
    write_atomically(path, &serde_json::to_vec_pretty(value).expect("serializes")).map_err(EngineError::io(path))
}

fn done_path(job: &Job, t: usize, f: usize) -> PathBuf {
    tables_dir(job).join("done").join(format!("{t:04}-{f:05}.json"))
}

/// Exports the job's tables into its spool and seals the generation (unless one is sealed).
/// Every column is mapped, or the run is refused before anything is written.
pub async fn export(
    job: &mut Job,
    spec: &TablesSpec,
    env: &Environment,
    run: ExportRun,
    stats: &Arc<crate::Stats>,
) -> Result<TablesSummary> {
    let started = std::time::Instant::now();
    let mut summary = TablesSummary {
        source: spec.url.clone(),
        tables: 0,
        files: 0,
        exported: 0,
        rows: 0,
        snapshot: None,
        snapshots: 0,
        references_unchecked: Vec::new(),
        already_planned: false,
        dry_run: run.dry_run,
        seconds: 0.0,
    };
    if let Some(generation) = job.latest_generation() {
        let exports = sealed(job, generation)?;
        if let Some(exports) = exports {
            summary.tables = exports.tables.len();
            summary.files = exports.tables.iter().map(|t| t.files.len()).sum();
            summary.rows = exports.tables.iter().map(|t| t.rows).sum();
            summary.snapshots =
                exports.tables.iter().flat_map(|t| t.snapshots.iter().map(|s| &s.id)).collect::<std::collections::BTreeSet<_>>().len();
            summary.references_unchecked = unchecked_references(exports.tables.iter().map(|t| &t.table));
        }
        summary.already_planned = true;
        return Ok(summary);
    }
    let url = PgUrl::parse(&spec.url)?;
    let settings = PgSettings::resolve(&url, env)?;
    let names = spec.tables.iter().map(|t| TableName::parse(t)).collect::<std::result::Result<Vec<_>, _>>()?;
    let casts = spec.casts.iter().map(|c| Cast::parse(c)).collect::<std::result::Result<Vec<_>, _>>()?;
    let leader = settings.connect().await?;
    let (described, refusals) = describe(&leader, &names, &spec.schemas, &casts).await?;
    if !refusals.is_empty() {
        return Err(EngineError::TablesRefused { refusals });
    }
    if described.is_empty() {
        return Err(EngineError::TablesRefused { refusals: Vec::new() });
    }
    if let Some(t) = described.iter().find(|t| t.columns.is_empty()) {
        // A Parquet file of no columns holds no rows: its rows would be lost.
        return Err(EngineError::TableWithoutColumns { table: t.name.to_string() });
    }
    incremental_columns(spec, &described)?;
    summary.tables = described.len();
    summary.references_unchecked = unchecked_references(&described);
    if run.dry_run {
        return Ok(summary);
    }
    job.persist()?;
    let snapshot = Snapshot::begin(leader, &described).await?;
    let database = snapshot.database().await;
    let plan_path = tables_dir(job).join("plan.json");
    let plan: ExportPlan = if plan_path.exists() {
        let plan: ExportPlan = read_json(&plan_path)?;
        let was: Vec<&Table> = plan.tables.iter().map(|t| &t.table).collect();
        let now: Vec<&Table> = described.iter().collect();
        if was != now {
            return Err(EngineError::TablesChanged { dir: job.dir.clone() });
        }
        same_database(job, plan.database.as_ref(), database.as_ref())?;
        plan
    } else {
        let mut tables = Vec::new();
        for table in &described {
            let ranges = ferry_tables::ranges::plan(snapshot.client(), table, spec.rows_per_file).await?;
            let dir = format!("{}/{}", component(&table.name.schema), component(&table.name.name));
            let files =
                ranges.into_iter().enumerate().map(|(i, range)| PlannedFile { key: format!("{dir}/part-{i:05}.parquet"), range }).collect();
            tables.push(PlannedTable { table: table.clone(), files });
        }
        let plan = ExportPlan { tables, database };
        write_json(&plan_path, &plan)?;
        plan
    };
    summary.files = plan.tables.iter().map(|t| t.files.len()).sum();
    let spool = spool(&job.dir);
    let tmp = tables_dir(job).join("tmp");
    for d in [&spool, &tmp] {
        std::fs::create_dir_all(d).map_err(EngineError::io(d))?;
    }
    // What is left: each file without a record, or whose record is not of the planned file or
    // whose spooled file is not the recorded one (size, then SHA-256).
    let mut pending = Vec::new();
    for (t, table) in plan.tables.iter().enumerate() {
        for (f, file) in table.files.iter().enumerate() {
            if recorded(job, &spool, t, f, file).is_none() {
                pending.push((t, f));
            }
        }
    }
    summary.snapshot = Some(snapshot.info.clone());
    let plan = Arc::new(plan);
    let pass = Pass { settings: &settings, plan: plan.clone(), spool: spool.clone(), tmp, done: tables_dir(job).join("done"), spec, run };
    summary.exported = pass.export(&snapshot.info, pending, stats).await?;
    // A table whose files come from more than one run's snapshot is proved whole in this one:
    // its count and fingerprint now must be the sum of its files', else the files of earlier
    // runs are exported again in this snapshot (rows updated or moved between runs).
    for (t, table) in plan.tables.iter().enumerate() {
        let records: Vec<ExportedFile> = (0..table.files.len()).map(|f| read_json(&done_path(job, t, f))).collect::<Result<_>>()?;
        if records.iter().all(|r| r.snapshot.id == snapshot.info.id) {
            continue;
        }
        if whole_table_matches(&snapshot, &table.table, &records).await? {
            continue;
        }
        let stale: Vec<(usize, usize)> =
            records.iter().enumerate().filter(|(_, r)| r.snapshot.id != snapshot.info.id).map(|(f, _)| (t, f)).collect();
        summary.exported += pass.export(&snapshot.info, stale, stats).await?;
        let records: Vec<ExportedFile> = (0..table.files.len()).map(|f| read_json(&done_path(job, t, f))).collect::<Result<_>>()?;
        if !whole_table_matches(&snapshot, &table.table, &records).await? {
            return Err(EngineError::TableExportDiffers {
                table: table.table.name.to_string(),
                key: "(the whole table)".into(),
                detail: "its files' rows and fingerprint do not add up to the table's in one snapshot".into(),
            });
        }
    }
    let mut identities = Vec::new();
    for table in &plan.tables {
        identities.push(match incremental_column(spec, &table.table)? {
            Some(_) => Some(Identity::of(snapshot.client(), &table.table).await?),
            None => None,
        });
    }
    let info = snapshot.info.clone();
    let _ = snapshot.finish().await;
    // Every file is done: the entries, staged for the generation the plan seals.
    let mut exports = TableExports { source: spec.url.clone(), tables: Vec::new() };
    let mut snapshots = std::collections::BTreeSet::new();
    for (t, table) in plan.tables.iter().enumerate() {
        let mut files = Vec::new();
        for f in 0..table.files.len() {
            files.push(read_json::<ExportedFile>(&done_path(job, t, f))?);
        }
        let mut infos: Vec<SnapshotInfo> = Vec::new();
        for file in &files {
            if !infos.iter().any(|i| i.id == file.snapshot.id) {
                infos.push(file.snapshot.clone());
            }
        }
        snapshots.extend(infos.iter().map(|i| i.id.clone()));
        // The files are of one moment: their one snapshot, or this run's, in which a table of
        // several runs was proved whole.
        let moment = if infos.len() == 1 { &infos[0] } else { &info };
        let incremental = match incremental_column(spec, &table.table)? {
            Some(at) => Some(Incremental {
                column: table.table.columns[at].name.clone(),
                watermark: watermark(&table.table, at, &files),
                seen_by: moment.visibility.clone().ok_or_else(|| EngineError::NoVisibility { what: table.table.name.to_string() })?,
                identity: identities[t].take().expect("an incremental table's identity was read"),
            }),
            None => None,
        };
        exports.tables.push(TableExport {
            name: table.table.name.to_string(),
            table: table.table.clone(),
            rows: files.iter().map(|f| f.rows).sum(),
            fingerprint: files.iter().fold(0u64, |s, f| s.wrapping_add(f.figures.fingerprint)),
            snapshots: infos,
            files,
            incremental,
        });
    }
    summary.rows = exports.tables.iter().map(|t| t.rows).sum();
    summary.snapshots = snapshots.len();
    write_json(&tables_dir(job).join(TABLES_FILE), &exports)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The position of `table`'s incremental column, if `spec` makes it incremental: a
/// `schema.table.column` of its own, else a bare `column`; refused when the table has no such
/// column or its type cannot order a delta.
pub(crate) fn incremental_column(spec: &TablesSpec, table: &Table) -> Result<Option<usize>> {
    let own = format!("{}.", table.name);
    let given = spec
        .incremental_by
        .iter()
        .find(|g| g.strip_prefix(&own).is_some_and(|c| !c.contains('.')))
        .or_else(|| spec.incremental_by.iter().find(|g| !g.contains('.')));
    let Some(given) = given else { return Ok(None) };
    let name = given.rsplit('.').next().unwrap_or(given);
    let refuse = |reason: String| EngineError::IncrementalColumn { given: given.clone(), table: table.name.to_string(), reason };
    let at = table.columns.iter().position(|c| c.name == name).ok_or_else(|| refuse(format!("no column {name:?}")))?;
    let column = &table.columns[at];
    if !ferry_tables::incremental::column_allowed(&column.ty) {
        return Err(refuse(format!(
            "column {name} is {}: an incremental column is an integer, numeric, date, timestamp or timestamptz",
            column.pg_type
        )));
    }
    Ok(Some(at))
}

/// Refuses a connection that reaches another database (`now`) than the one the export was
/// planned on (`was`); either unknown (no right to the cluster's control data) passes.
fn same_database(job: &Job, was: Option<&String>, now: Option<&String>) -> Result<()> {
    match (was, now) {
        (Some(was), Some(now)) if was != now => {
            Err(EngineError::TablesOtherDatabase { dir: job.dir.clone(), was: was.clone(), now: now.clone() })
        }
        _ => Ok(()),
    }
}

/// [`same_database`] for `client`, against the job's plan.
pub(crate) async fn planned_database(job: &Job, client: &ferry_tables::Client) -> Result<()> {
    let plan: ExportPlan = read_json(&tables_dir(job).join("plan.json"))?;
    same_database(job, plan.database.as_ref(), ferry_tables::snapshot::database_of(client).await.as_ref())
}

/// Checks `spec`'s `--incremental-by` against the tables: each names a column of a table
/// exported (a qualified one, its table's), and, when any is given, every table is incremental
/// (a delta replays all of a job's tables or none).
fn incremental_columns(spec: &TablesSpec, tables: &[Table]) -> Result<()> {
    if spec.incremental_by.is_empty() {
        return Ok(());
    }
    let bare: Vec<&String> = spec.incremental_by.iter().filter(|g| !g.contains('.')).collect();
    let conflict = |given: String, table: String| EngineError::IncrementalColumn {
        given,
        table,
        reason: "more than one column given: one COLUMN for every table, or one schema.table.column per table".into(),
    };
    if bare.len() > 1 {
        return Err(conflict(bare.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" "), "every table".into()));
    }
    for table in tables {
        let own = format!("{}.", table.name);
        let mine: Vec<&String> = spec.incremental_by.iter().filter(|g| g.strip_prefix(&own).is_some_and(|c| !c.contains('.'))).collect();
        if mine.len() > 1 {
            return Err(conflict(mine.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" "), table.name.to_string()));
        }
    }
    let mut without = Vec::new();
    for table in tables {
        if incremental_column(spec, table)?.is_none() {
            without.push(table.name.to_string());
        }
    }
    for given in spec.incremental_by.iter().filter(|g| g.contains('.')) {
        let matched = tables.iter().any(|t| given.strip_prefix(&format!("{}.", t.name)).is_some_and(|c| !c.contains('.')));
        if !matched {
            return Err(EngineError::IncrementalColumn {
                given: given.clone(),
                table: given.rsplit_once('.').map(|(t, _)| t.to_string()).unwrap_or_default(),
                reason: "not a table of the export (schema.table.column)".into(),
            });
        }
    }
    if let Some(first) = without.first() {
        return Err(EngineError::IncrementalColumn {
            given: spec.incremental_by.join(" "),
            table: first.clone(),
            reason: format!(
                "{} not incremental: a delta replays all of a job's tables, so give each one its column (--incremental-by COLUMN for all)",
                without.join(", ")
            ),
        });
    }
    Ok(())
}

/// The largest value of column `at` among `files`' rows (from their figures).
pub(crate) fn watermark(table: &Table, at: usize, files: &[ExportedFile]) -> Option<String> {
    let ty = &table.columns[at].ty;
    files
        .iter()
        .filter_map(|f| f.figures.columns.get(at).and_then(|c| c.max.clone()))
        .fold(None, |w, m| ferry_tables::incremental::later(ty, w, Some(m)))
}

/// Exports files of the plan through worker connections that adopt one snapshot.
struct Pass<'a> {
    settings: &'a PgSettings,
    plan: Arc<ExportPlan>,
    spool: PathBuf,
    tmp: PathBuf,
    done: PathBuf,
    spec: &'a TablesSpec,
    run: ExportRun,
}

impl Pass<'_> {
    /// Exports `files` (table, file) in snapshot `info`; returns how many.
    async fn export(&self, info: &SnapshotInfo, files: Vec<(usize, usize)>, stats: &Arc<crate::Stats>) -> Result<usize> {
        let count = files.len();
        if count == 0 {
            return Ok(0);
        }
        Stats::add(&stats.total_objects, count as u64);
        // A record goes before its file is written again: a kill in between leaves no record
        // of another file's content.
        for (t, f) in &files {
            let record = self.done.join(format!("{t:04}-{f:05}.json"));
            match std::fs::remove_file(&record) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(EngineError::Io { path: record, source: e }),
                _ => {}
            }
        }
        let workers_wanted = self.run.connections.max(1).min(count);
        let queue = Arc::new(Mutex::new(files.into_iter().rev().collect::<Vec<_>>()));
        let options = FileOptions { compression: self.spec.compression, row_group_bytes: self.spec.row_group_bytes as usize };
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..workers_wanted {
            // Two connections a worker: the COPY streams on one while PostgreSQL computes the
            // same rows' figures on the other, so neither waits for the other to finish.
            let client = self.settings.connect().await?;
            adopt(&client, &info.id).await?;
            let figures_client = self.settings.connect().await?;
            adopt(&figures_client, &info.id).await?;
            let (plan, queue, spool, tmp, info) = (self.plan.clone(), queue.clone(), self.spool.clone(), self.tmp.clone(), info.clone());
            let done_dir = self.done.clone();
            let stats = stats.clone();
            workers.spawn(async move {
                loop {
                    let Some((t, f)) = queue.lock().expect("queue").pop() else { break };
                    let (table, file) = (&plan.tables[t].table, &plan.tables[t].files[f]);
                    let predicate = file.range.predicate();
                    let part = tmp.join(format!("{t:04}-{f:05}.parquet"));
                    let (written, figures) = tokio::try_join!(
                        async { export_range(&client, table, &predicate, &part, options).await.map_err(EngineError::from) },
                        async { database_figures(&figures_client, table, &predicate).await.map_err(EngineError::from) }
                    )?;
                    let differences = compare(&figures, &written);
                    if !differences.is_empty() {
                        let detail = differences.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ");
                        return Err(EngineError::TableExportDiffers { table: table.name.to_string(), key: file.key.clone(), detail });
                    }
                    let at = spool.join(&file.key);
                    let dir = at.parent().expect("a key has a directory");
                    std::fs::create_dir_all(dir).map_err(EngineError::io(dir))?;
                    std::fs::rename(&part, &at).map_err(EngineError::io(&at))?;
                    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(EngineError::io(dir))?;
                    let (sha256, bytes) = file_sha256(&at)?;
                    let record = ExportedFile {
                        key: file.key.clone(),
                        range: file.range.clone(),
                        rows: figures.rows,
                        bytes,
                        sha256,
                        snapshot: info.clone(),
                        figures,
                    };
                    write_json(&done_dir.join(format!("{t:04}-{f:05}.json")), &record)?;
                    Stats::add(&stats.objects_done, 1);
                }
                Ok::<_, EngineError>(())
            });
        }
        while let Some(joined) = workers.join_next().await {
            joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        }
        Ok(count)
    }
}

/// File `f` of table `t` as an earlier run recorded it, if the record is of the planned file
/// and the spool holds exactly the recorded bytes.
fn recorded(job: &Job, spool: &Path, t: usize, f: usize, planned: &PlannedFile) -> Option<ExportedFile> {
    let record: ExportedFile = read_json(&done_path(job, t, f)).ok()?;
    if record.key != planned.key || record.range != planned.range {
        return None;
    }
    let at = spool.join(&record.key);
    if std::fs::metadata(&at).ok()?.len() != record.bytes {
        return None;
    }
    (file_sha256(&at).ok()?.0 == record.sha256).then_some(record)
}

/// Whether `table`'s count and fingerprint in `snapshot` are its files'.
async fn whole_table_matches(snapshot: &Snapshot, table: &Table, files: &[ExportedFile]) -> Result<bool> {
    let figures = database_figures(snapshot.client(), table, "TRUE").await?;
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    let sum = files.iter().fold(0u64, |s, f| s.wrapping_add(f.figures.fingerprint));
    Ok((figures.rows, figures.fingerprint) == (rows, sum))
}

/// The staged `tables.json` for the generation being planned, if the job exports tables.
pub(crate) fn staged(job: &Job) -> Result<Option<(PathBuf, u64)>> {
    let path = tables_dir(job).join(TABLES_FILE);
    if job.tables().is_none() || !path.exists() {
        return Ok(None);
    }
    let exports: TableExports = read_json(&path)?;
    Ok(Some((path, exports.tables.iter().map(|t| t.files.len() as u64).sum())))
}

/// The table entries of a sealed generation (checked against its header's SHA-256 when it was
/// opened), if it has any.
pub fn sealed(job: &Job, generation: u32) -> Result<Option<TableExports>> {
    let dir = job.generation_dir(generation);
    let reader = ferry_manifest::ManifestReader::open(&dir)?;
    match &reader.header().tables {
        Some(info) => Ok(Some(read_json(&dir.join(&info.file))?)),
        None => Ok(None),
    }
}

/// A spooled file's SHA-256 and size.
fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let sha256 = ferry_manifest::shipment::file_sha256(path)?;
    let bytes = std::fs::metadata(path).map_err(EngineError::io(path))?.len();
    Ok((sha256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_path_component_each() {
        assert_eq!(component("orders"), "orders");
        assert_eq!(component("../etc"), "%2E%2E%2Fetc");
        assert_eq!(component("a b/ü"), "a%20b%2F%C3%BC");
    }
}
