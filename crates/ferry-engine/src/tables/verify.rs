//! `verify` of a table job: every table file read back from the destination and its figures
//! compared with the database's; with `--sample N`, N rows of each table fetched by primary key
//! from PostgreSQL and compared field by field, and the sampled rows' foreign keys looked up
//! among the parent table's exported rows.
//!
//! Tables are read children first, so the keys a child's sample references are known when its
//! parent's files are read; a parent read before (a cycle, or a table referencing itself) is
//! read once more for them. Memory holds N rows per table and their wanted keys, whatever
//! the tables' sizes.

use super::{TableExport, TableExports, Unchecked, UncheckedReference, checkable, tables_dir, unchecked_references};
use crate::verify::{Difference, DifferenceKind};
use crate::{EngineError, Job, Result};
use ferry_providers::Provider;
use ferry_tables::connect::{Environment, PgUrl, Settings};
use ferry_tables::figures::{Tally, compare};
use ferry_tables::fingerprint::{Value, canonical_field};
use ferry_tables::sample::{self, Compared, Lookup, NotSampled, Reservoir};
use ferry_tables::schema::{ForeignKey, Table};
use ferry_tables::snapshot::Visibility;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// What `verify` proved of the table files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TablesVerified {
    pub tables: usize,
    pub files: u64,
    /// Files whose figures, read back from the destination, are the database's.
    pub matched: u64,
    pub rows: u64,
    /// What `--sample N` compared with the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleVerified>,
}

/// Rows sampled from the files and compared with the database, and their foreign keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleVerified {
    /// Every table's sampled rows together.
    #[serde(flatten)]
    pub counts: SampleCounts,
    /// Each table sampled, with what its rows gave.
    pub tables: Vec<TableSampled>,
    /// Tables whose rows could not be sampled, and why.
    pub not_sampled: Vec<TableNotSampled>,
    /// Sampled rows' foreign keys looked up among the parent's exported rows.
    pub references: u64,
    /// Of those, found.
    pub references_found: u64,
    /// Foreign keys not checked, and why.
    pub references_unchecked: Vec<UncheckedReference>,
}

/// What sampled rows gave.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SampleCounts {
    /// Rows fetched by primary key.
    pub rows: u64,
    /// The export's version of the row, every field equal.
    pub equal: u64,
    /// The export's version of the row, some field different (each a difference).
    pub differ: u64,
    /// Some field different, but written by a transaction in the snapshot's window, where a
    /// subtransaction still open then looks seen: not counted as a difference.
    pub uncertain: u64,
    /// Written after the export's snapshot: not compared.
    pub changed_since: u64,
    /// Deleted after the export's snapshot.
    pub gone_since: u64,
}

impl SampleCounts {
    fn add(&mut self, other: &SampleCounts) {
        self.rows += other.rows;
        self.equal += other.equal;
        self.differ += other.differ;
        self.uncertain += other.uncertain;
        self.changed_since += other.changed_since;
        self.gone_since += other.gone_since;
    }
}

/// One table's sampled rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableSampled {
    pub table: String,
    #[serde(flatten)]
    pub counts: SampleCounts,
}

/// A table `--sample` could not sample.
#[derive(Debug, Clone, Serialize)]
pub struct TableNotSampled {
    pub table: String,
    pub why: NotSampled,
}

/// How `verify --sample` reaches the database.
pub struct SampleRun<'a> {
    pub rows: usize,
    pub env: &'a Environment,
}

/// The keys a child's sampled rows reference in a parent table.
struct Want {
    child: usize,
    parent: usize,
    fk: ForeignKey,
    /// The referenced columns' positions in the parent.
    parent_columns: Vec<usize>,
    /// Each wanted key, with the file of the child row that references it.
    keys: BTreeMap<Vec<String>, String>,
    /// Keys looked up (a key wanted by several rows counts once).
    wanted: u64,
    /// Whether the parent's rows have been read for them.
    settled: bool,
}

/// Reads every table file of `exports` back from `dst` and compares its figures with the
/// database's; each difference is named by key, table, column and figure.
pub(crate) async fn verify(
    job: &Job,
    dst: &dyn Provider,
    exports: &TableExports,
    sample: Option<SampleRun<'_>>,
    differences: &mut Vec<Difference>,
) -> Result<TablesVerified> {
    let mut out = TablesVerified { tables: exports.tables.len(), ..TablesVerified::default() };
    let tmp = tables_dir(job).join("verify");
    std::fs::create_dir_all(&tmp).map_err(EngineError::io(&tmp))?;
    let path = tmp.join("read-back.parquet");
    let sample = match sample {
        Some(s) if s.rows > 0 => s,
        _ => {
            for table in &exports.tables {
                read_table(dst, table, &path, &mut out, differences, |_, _| {}).await;
            }
            return Ok(out);
        }
    };
    let settings = Settings::resolve(&PgUrl::parse(&exports.source)?, sample.env)?;
    let client = settings.connect().await?;
    // Rows compared with another database's would be differences, or all gone since.
    super::planned_database(job, &client).await?;
    let tables: Vec<&Table> = exports.tables.iter().map(|t| &t.table).collect();
    let mut found = SampleVerified { references_unchecked: unchecked_references(tables.iter().copied()), ..SampleVerified::default() };
    let mut wants: Vec<Want> = Vec::new();
    for t in children_first(&tables) {
        let table = &exports.tables[t];
        let mut reservoir: Reservoir<(Vec<Value>, usize)> = Reservoir::new(sample.rows);
        let mine: Vec<usize> = wants.iter().enumerate().filter(|(_, w)| w.parent == t).map(|(i, _)| i).collect();
        let complete = read_table(dst, table, &path, &mut out, differences, |file, row| {
            reservoir.offer_with(|| (row.to_vec(), file));
            for &w in &mine {
                see_parent_row(&mut wants[w], row);
            }
        })
        .await;
        for w in mine {
            settle(&mut wants[w], complete, exports, &mut found, differences);
        }
        match Lookup::of(&table.table) {
            Ok(lookup) => sample_rows(&client, table, &lookup, reservoir.items(), &mut found, differences).await,
            Err(why) => found.not_sampled.push(TableNotSampled { table: table.name.clone(), why }),
        }
        // The sample's foreign keys, to be looked up in their parents' rows.
        for fk in &table.table.foreign_keys {
            let Ok((parent, child_columns, parent_columns)) = checkable(&table.table, fk, &tables) else {
                continue; // named in references_unchecked
            };
            let mut keys = BTreeMap::new();
            for (row, file) in reservoir.items() {
                // MATCH SIMPLE: a key with a NULL field references nothing.
                let key: Option<Vec<String>> = child_columns.iter().map(|&c| canonical_field(&row[c])).collect();
                if let Some(key) = key {
                    keys.entry(key).or_insert_with(|| table.files[*file].key.clone());
                }
            }
            let wanted = keys.len() as u64;
            wants.push(Want { child: t, parent, fk: fk.clone(), parent_columns, keys, wanted, settled: false });
        }
    }
    // Parents read before their children's samples were known: once more, for those keys.
    for parent in 0..exports.tables.len() {
        let late: Vec<usize> = wants.iter().enumerate().filter(|(_, w)| w.parent == parent && !w.settled).map(|(i, _)| i).collect();
        let mut complete = true;
        if late.iter().any(|&w| !wants[w].keys.is_empty()) {
            // Its figures were compared on the first reading; this one only looks for keys.
            let mut again = TablesVerified::default();
            let mut ignored = Vec::new();
            complete = read_table(dst, &exports.tables[parent], &path, &mut again, &mut ignored, |_, row| {
                for &w in &late {
                    see_parent_row(&mut wants[w], row);
                }
            })
            .await;
        }
        for w in late {
            settle(&mut wants[w], complete, exports, &mut found, differences);
        }
    }
    out.sample = Some(found);
    Ok(out)
}

/// Fetches each sampled row of `table` by its key and compares it with the file's; a table
/// whose rows cannot be fetched (dropped, altered since) is one difference, and the others
/// are sampled all the same.
async fn sample_rows(
    client: &ferry_tables::Client,
    table: &TableExport,
    lookup: &Lookup,
    rows: &[(Vec<Value>, usize)],
    found: &mut SampleVerified,
    differences: &mut Vec<Difference>,
) {
    let mut mine = SampleCounts::default();
    let error = |file: &str, e: &dyn std::fmt::Display| Difference {
        key: file.to_string(),
        kind: DifferenceKind::Error,
        detail: format!("{}: the sampled rows could not be fetched: {e}", table.name),
    };
    let Some(first) = rows.first() else { return };
    let prepared = match lookup.prepare(client).await {
        Ok(p) => p,
        Err(e) => {
            differences.push(error(&table.files[first.1].key, &e));
            return;
        }
    };
    for (row, file) in rows {
        let file = &table.files[*file];
        let Some(key) = lookup.key_of(row) else { continue };
        let Some(seen) = file.snapshot.visibility.as_deref().and_then(Visibility::parse) else {
            found.not_sampled.push(TableNotSampled { table: table.name.clone(), why: NotSampled::NoVisibility });
            break;
        };
        let fetched = match sample::fetch(client, &prepared, &key).await {
            Ok(f) => f,
            Err(e) => {
                differences.push(error(&file.key, &e));
                break;
            }
        };
        mine.rows += 1;
        match sample::compare(&table.table, row, &fetched, &seen) {
            Compared::Equal => mine.equal += 1,
            Compared::ChangedSince => mine.changed_since += 1,
            Compared::GoneSince => mine.gone_since += 1,
            Compared::Uncertain { .. } => mine.uncertain += 1,
            Compared::Differs { columns } => {
                mine.differ += 1;
                differences.push(Difference {
                    key: file.key.clone(),
                    kind: DifferenceKind::TableSample,
                    detail: format!(
                        "{}: the row with {} differs from the database's in {}",
                        table.name,
                        lookup.key_shown(&table.table, row).join(", "),
                        columns.join(", ")
                    ),
                });
            }
        }
    }
    found.counts.add(&mine);
    if mine.rows > 0 {
        found.tables.push(TableSampled { table: table.name.clone(), counts: mine });
    }
}

/// Takes `row` of the parent off the keys `want` still looks for.
fn see_parent_row(want: &mut Want, row: &[Value]) {
    if want.keys.is_empty() {
        return;
    }
    let key: Option<Vec<String>> = want.parent_columns.iter().map(|&c| canonical_field(&row[c])).collect();
    if let Some(key) = key {
        want.keys.remove(&key);
    }
}

/// Counts a want whose parent has been read (`complete`: every file of it), and names each key
/// the parent lacks; a parent not wholly read settles nothing but an unchecked reference.
fn settle(want: &mut Want, complete: bool, exports: &TableExports, found: &mut SampleVerified, differences: &mut Vec<Difference>) {
    want.settled = true;
    let (child, parent) = (&exports.tables[want.child], &exports.tables[want.parent]);
    if !complete {
        found.references_unchecked.push(UncheckedReference {
            table: child.name.clone(),
            constraint: want.fk.name.clone(),
            parent: parent.name.clone(),
            why: Unchecked::ParentUnreadable,
        });
        return;
    }
    found.references += want.wanted;
    found.references_found += want.wanted - want.keys.len() as u64;
    for (key, file) in &want.keys {
        differences.push(Difference {
            key: file.clone(),
            kind: DifferenceKind::TableReference,
            detail: format!(
                "{}: foreign key {} ({}) = ({}) is not among {}'s exported rows",
                child.name,
                want.fk.name,
                want.fk.columns.join(", "),
                key.join(", "),
                parent.name
            ),
        });
    }
}

/// The tables in an order where each comes after every table whose foreign keys reference it
/// (children first); a cycle is broken at the first table left.
fn children_first(tables: &[&Table]) -> Vec<usize> {
    let n = tables.len();
    // children[p]: the tables (other than p) with a foreign key to p.
    let mut children: Vec<HashSet<usize>> = vec![HashSet::new(); n];
    for (c, t) in tables.iter().enumerate() {
        for fk in &t.foreign_keys {
            if let Some(p) = tables.iter().position(|t| t.name == fk.parent)
                && p != c
            {
                children[p].insert(c);
            }
        }
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&p| !done[p] && children[p].iter().all(|&c| done[c])).or_else(|| (0..n).find(|&p| !done[p]));
        let p = next.expect("a table is left");
        done[p] = true;
        order.push(p);
    }
    order
}

/// Reads each file of `table` back from `dst` through `path`, adds its figures' differences,
/// and hands every row to `each` with the file's index; `false` when a file could not be read
/// (missing, unreadable, not the export's Parquet).
async fn read_table(
    dst: &dyn Provider,
    table: &TableExport,
    path: &Path,
    out: &mut TablesVerified,
    differences: &mut Vec<Difference>,
    mut each: impl FnMut(usize, &[Value]),
) -> bool {
    let mut complete = true;
    for (f, file) in table.files.iter().enumerate() {
        out.files += 1;
        let diff = |kind, detail: String| Difference { key: file.key.clone(), kind, detail: format!("{}: {detail}", table.name) };
        match download(dst, &file.key, path).await {
            Ok(true) => {}
            Ok(false) => {
                differences.push(diff(DifferenceKind::Missing, "the table file is not at the destination".into()));
                complete = false;
                continue;
            }
            Err(e) => {
                differences.push(diff(DifferenceKind::Error, e.to_string()));
                complete = false;
                continue;
            }
        }
        let mut tally = Tally::new(&table.table.columns);
        let read = ferry_tables::files::read_rows(path, &table.table.columns, |row| {
            tally.add(row);
            each(f, row);
        });
        let _ = std::fs::remove_file(path);
        if let Err(e) = read {
            differences.push(diff(DifferenceKind::TableFile, format!("not the export's Parquet: {e}")));
            complete = false;
            continue;
        }
        let found = tally.finish();
        out.rows += found.rows;
        let figures = compare(&file.figures, &found);
        if figures.is_empty() {
            out.matched += 1;
        }
        differences.extend(figures.into_iter().map(|d| diff(DifferenceKind::TableFigures, d.to_string())));
    }
    complete
}

/// Writes object `key` of `dst` to `path`; `false` when there is no such object.
async fn download(dst: &dyn Provider, key: &str, path: &Path) -> std::result::Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    use std::io::Write;
    let Some(head) = dst.head(key).await? else { return Ok(false) };
    let mut f = std::fs::File::create(path)?;
    let mut offset = 0;
    while offset < head.size {
        let end = (offset + crate::verify::READ_CHUNK).min(head.size);
        f.write_all(&dst.get(key, Some(offset..end)).await?.data)?;
        offset = end;
    }
    Ok(true)
}
