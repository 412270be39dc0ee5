//! `ferry rollback`: puts the destination back as it was before a run (`--run ID`) or after a
//! generation (`--to-generation N`), from the write ledger.
//!
//! A rollback to before run R undoes R and every later run (they were made on top of it). The
//! ledger's writes of those runs are taken a destination key at a time, in key order: the
//! oldest write's prior state is what the key goes back to, the newest write is what ferry left
//! there. For each key:
//! 1. HEAD the key. Already as it was before: nothing to do. Not what ferry left (another
//!    writer put something there since): left as it is, named (`left_changed`).
//! 2. Absent before: delete it. Present before: copy it back from where it was kept — the
//!    `--backup-to` location the write recorded, else the destination's own versions (S3
//!    versioning, GCS object versioning: the version the first write replaced is copied over the
//!    key by the service). Neither: named as unrecoverable (exit 1).
//! 3. The ledger records the undo (begun before the destination is touched, done after), and
//!    the object's row goes back to pending (or pending delete), so the next `copy` or `delta`
//!    moves forward again.
//!
//! A rollback cut off (kill -9 included) is finished by running it again: keys it finished are
//! not looked at, a key it had begun is done again (deleting or copying back twice is harmless).
//! `--dry-run` asks the same HEADs and writes the plan, touching nothing.

use crate::{EngineError, Job, Result};
use ferry_core::{Location, ObjectEntry, SkipReason};
use ferry_journal::{JournalKind, Prior, RunId, RunKind, RunRow, UndoGroup, Undone, WriteOp, Wrote};
use ferry_providers::{Provider, ProviderError, RunContext};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// How far back a rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTo {
    /// To before this run (and every later one).
    Run(i64),
    /// To the destination as generation N's runs left it: every run begun after generation N
    /// was the newest is undone (`0`: every run).
    Generation(u32),
}

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub to: RollbackTo,
    pub dry_run: bool,
    /// Keys undone at once.
    pub transfers: usize,
}

/// Why a key could not be put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unrecoverable {
    /// It was overwritten or deleted with no `--backup-to`, and the destination keeps no versions.
    NotKept,
    /// The ledger does not know what was there (the destination could not be asked before the write).
    PriorUnknown,
    /// The destination keeps versions, but none of them is the one the write replaced.
    VersionNotFound,
    /// The `--backup-to` copy is gone.
    BackupMissing,
    /// The `--backup-to` copy is not the one ferry kept (another size or entity tag): it was
    /// altered since, and is not put back.
    BackupChanged,
}

impl Unrecoverable {
    fn says(self) -> &'static str {
        match self {
            Unrecoverable::NotKept => "overwritten or deleted with no --backup-to, and the destination keeps no versions",
            Unrecoverable::PriorUnknown => "what the destination held before is not known",
            Unrecoverable::VersionNotFound => "none of the destination's versions of it is the one ferry replaced",
            Unrecoverable::BackupMissing => "its --backup-to copy is gone",
            Unrecoverable::BackupChanged => "its --backup-to copy was altered since ferry kept it",
        }
    }
}

/// What a rollback does (or, dry, would do) with one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// It holds what it held before already.
    Nothing,
    /// Ferry created it: deleted.
    Delete,
    /// Copied back from the `--backup-to` location.
    FromBackup { backup: String },
    /// The destination's version `version` copied over it.
    FromVersion { version: String },
    /// Another writer changed it after ferry: left as it is.
    LeaveChanged,
    /// Cannot be put back.
    Unrecoverable { why: Unrecoverable },
}

/// One key of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub key: String,
    #[serde(flatten)]
    pub action: Action,
    /// Set when carrying it out failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct RollbackSummary {
    pub destination: String,
    /// The runs undone (this and later), oldest first.
    pub runs: Vec<i64>,
    /// The rollback's own run (none for a dry run).
    pub run: Option<i64>,
    pub dry_run: bool,
    /// Keys looked at.
    pub keys: u64,
    pub deleted: u64,
    pub restored_from_backup: u64,
    pub restored_from_version: u64,
    pub already: u64,
    pub left_changed: u64,
    pub unrecoverable: u64,
    pub failed: u64,
    /// Keys not undone (changed since, unrecoverable, failed), with why: the first 1,000.
    pub not_undone: Vec<Step>,
    /// Every step, a JSON line each (the exact plan, for a dry run).
    pub plan: Option<std::path::PathBuf>,
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

impl RollbackSummary {
    /// Whether a key was left as it is or could not be put back (exit 1).
    pub fn incomplete(&self) -> bool {
        self.left_changed + self.unrecoverable + self.failed > 0
    }
}

/// The first of the runs a rollback to `to` undoes (it and every later one), of `runs` (the
/// ledger's): `Ok(None)`: nothing was written after it.
pub fn runs_to_undo(runs: &[RunRow], to: RollbackTo) -> Result<Option<RunId>> {
    let undoable = |r: &&RunRow| r.kind != RunKind::Rollback;
    match to {
        RollbackTo::Run(id) => match runs.iter().find(|r| r.id.0 == id) {
            Some(r) if r.kind == RunKind::Rollback => Err(EngineError::WriteSetting(format!(
                "--run {id} is a rollback: roll back to before the run it undid, or copy again to move forward"
            ))),
            Some(r) => Ok(Some(r.id)),
            None => Err(EngineError::WriteSetting(format!(
                "--run {id}: this job has no such run (its runs: {}; `ferry rollback --job DIR --list` shows them)",
                runs.iter().filter(undoable).map(|r| r.id.0.to_string()).collect::<Vec<_>>().join(", ")
            ))),
        },
        // A run an older ferry recorded without its generation is never taken for a later one.
        RollbackTo::Generation(n) => Ok(runs.iter().filter(undoable).find(|r| r.generation.is_some_and(|g| g > n)).map(|r| r.id)),
    }
}

/// Rolls the job's destination back (see the module docs). `dst` must have been opened and
/// checked in `run`.
pub async fn rollback(job: &mut Job, dst: Arc<dyn Provider>, opts: RollbackOptions, run: &Arc<RunContext>) -> Result<RollbackSummary> {
    let started = Instant::now();
    // An unmounted disk lists as empty: every key would look as it was before ferry.
    if job.destination.scheme == ferry_core::Scheme::Local && !std::path::Path::new(&job.destination.prefix).is_dir() {
        return Err(EngineError::WriteSetting(format!(
            "the destination {} is not a directory (is its disk mounted?): nothing rolled back",
            job.destination
        )));
    }
    job.persist()?;
    if let RollbackTo::Generation(n) = opts.to
        && n > job.latest_generation().unwrap_or(0)
    {
        return Err(EngineError::WriteSetting(format!(
            "--to-generation {n}: this job's newest generation is {} (`ferry rollback --list` shows the runs)",
            job.latest_generation().unwrap_or(0)
        )));
    }
    let journal = job.journal(JournalKind::Main).await?;
    let runs = journal.runs().await?;
    let mut summary = RollbackSummary { destination: job.destination.to_string(), dry_run: opts.dry_run, ..Default::default() };
    let Some(from) = runs_to_undo(&runs, opts.to)? else {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    };
    summary.runs = runs.iter().filter(|r| r.id >= from && r.kind != RunKind::Rollback && r.undone < r.writes).map(|r| r.id.0).collect();
    let target = job.destination.to_string();
    // Nothing left to undo: no rollback run is recorded.
    if journal.undo_groups(&target, from, "", 1).await?.is_empty() {
        summary.runs.clear();
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let by = match opts.dry_run {
        true => None,
        false => Some(journal.begin_run(RunKind::Rollback, job.latest_generation().unwrap_or(0)).await?),
    };
    summary.run = by.map(|r| r.0);
    let (plan_path, mut plan) = job.report_file(if opts.dry_run { "rollback-plan" } else { "rollback-steps" }, "jsonl")?;
    let undo = Undo {
        dst,
        versions: tokio::sync::OnceCell::new(),
        backups: tokio::sync::Mutex::new(HashMap::new()),
        job,
        run,
        journal: journal.clone(),
    };
    let mut after = String::new();
    loop {
        let groups = journal.undo_groups(&target, from, &after, 256).await?;
        let Some(last) = groups.last() else { break };
        after = last.key.clone();
        let steps: Vec<Result<Step>> = futures::stream::iter(groups)
            .map(|group| {
                let (undo, journal) = (&undo, journal.clone());
                async move {
                    // A destination or backup that cannot be reached, or refuses the
                    // credentials, stops the rollback (the journal as it was): the next keys
                    // would fail alike, each after its retries.
                    let action = match undo.decide(&group).await {
                        Ok(action) => action,
                        Err(e) if e.is_usage() => return Err(e),
                        Err(e) => return Ok(Step { key: group.key.clone(), action: Action::Nothing, error: Some(e.to_string()) }),
                    };
                    let mut step = Step { key: group.key.clone(), action, error: None };
                    if let Some(by) = by {
                        match undo.carry_out(journal.as_ref(), &group, &step.action, by).await {
                            Err(e) if e.is_usage() => return Err(e),
                            Err(e) => step.error = Some(e.to_string()),
                            Ok(()) => {}
                        }
                    }
                    Ok(step)
                }
            })
            // In key order (the plan reads as the ledger does), several at a time.
            .buffered(opts.transfers.max(1))
            .collect()
            .await;
        for step in steps {
            let step = step?;
            // Once the batch is done (a restore beside it could be writing into the folder): the
            // folders the undone run made for a key it created go with it.
            if by.is_some() && step.error.is_none() && step.action == Action::Delete {
                let _ = undo.dst.prune_folders(&step.key).await;
            }
            summary.keys += 1;
            let line = serde_json::to_string(&step).expect("a step serializes");
            writeln!(plan, "{line}").map_err(EngineError::io(&plan_path))?;
            let undone = step.error.is_none();
            match (&step.action, undone) {
                (_, false) => summary.failed += 1,
                (Action::Nothing, true) => summary.already += 1,
                (Action::Delete, true) => summary.deleted += 1,
                (Action::FromBackup { .. }, true) => summary.restored_from_backup += 1,
                (Action::FromVersion { .. }, true) => summary.restored_from_version += 1,
                (Action::LeaveChanged, true) => summary.left_changed += 1,
                (Action::Unrecoverable { .. }, true) => summary.unrecoverable += 1,
            }
            let named = !undone || matches!(step.action, Action::LeaveChanged | Action::Unrecoverable { .. });
            if named && summary.not_undone.len() < 1000 {
                summary.not_undone.push(step);
            }
        }
    }
    plan.sync_all().map_err(EngineError::io(&plan_path))?;
    summary.plan = Some(plan_path);
    journal.release(&[]).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report(if opts.dry_run { "rollback-dry-run" } else { "rollback" }, &report)?);
    Ok(summary)
}

/// What one rollback holds while it undoes keys.
struct Undo<'a> {
    journal: Arc<dyn ferry_journal::Journal>,
    dst: Arc<dyn Provider>,
    /// Whether the destination keeps versions (asked once).
    versions: tokio::sync::OnceCell<bool>,
    /// The backup locations the ledger names, opened once each.
    backups: tokio::sync::Mutex<HashMap<String, Arc<dyn Provider>>>,
    job: &'a Job,
    run: &'a Arc<RunContext>,
}

impl Undo<'_> {
    /// What to do with a key's writes: decided from a HEAD of the key and the ledger, changing
    /// nothing.
    async fn decide(&self, group: &UndoGroup) -> Result<Action> {
        let dst = |source| EngineError::Provider { side: "destination", source };
        let now = self.dst.head(&group.key).await.map_err(dst)?;
        let before = &group.first.prior;
        if holds(&now, before) {
            return Ok(Action::Nothing);
        }
        // What ferry left there: a delete leaves nothing; a write cut off before its
        // acknowledgement may have landed: taken as ferry's only at the size ferry was writing.
        let ferrys = match (group.last.op, &group.last.wrote) {
            (WriteOp::Delete, _) => now.is_none(),
            (WriteOp::Put, Some(wrote)) => {
                now.as_ref().is_some_and(|n| n.size == wrote.size && same_tag(&n.etag, &wrote.etag) && same_tag(&n.version, &wrote.version))
            }
            (WriteOp::Put, None) => match &now {
                Some(n) => self.journal.get(&group.key).await?.is_some_and(|row| row.entry.size == n.size),
                None => false,
            },
        };
        // A key an earlier rollback began may hold what it began to put back (a local copy
        // gets a new time, so a new tag): that, proved by content, is done again; anything else
        // is another writer's.
        let putting_back = !ferrys && group.begun && self.holds_what_was_kept(group, &now).await?;
        if !ferrys && !putting_back {
            return Ok(Action::LeaveChanged);
        }
        Ok(match before {
            Prior::Absent => match now {
                Some(_) => Action::Delete,
                None => Action::Nothing,
            },
            Prior::Unknown => Action::Unrecoverable { why: Unrecoverable::PriorUnknown },
            Prior::Present { size, etag, version } => {
                if let Some(kept) = &group.first.backup {
                    match self.kept_copy(kept, &group.key).await? {
                        Ok(_) => Action::FromBackup { backup: kept.location.clone() },
                        Err(why) => Action::Unrecoverable { why },
                    }
                } else if self.keeps_versions().await? {
                    match self.replaced_version(group, *size, etag, version).await? {
                        Some(version) => Action::FromVersion { version },
                        None => Action::Unrecoverable { why: Unrecoverable::VersionNotFound },
                    }
                } else {
                    Action::Unrecoverable { why: Unrecoverable::NotKept }
                }
            }
        })
    }

    /// The `--backup-to` copy of `key`, as ferry kept it: `Err` when it is gone or not what was
    /// kept (another size, another entity tag).
    async fn kept_copy(&self, kept: &ferry_journal::Kept, key: &str) -> Result<std::result::Result<ObjectEntry, Unrecoverable>> {
        let from = self.backup(&kept.location).await?;
        let held = from.head(key).await.map_err(|source| EngineError::Provider { side: "backup", source })?;
        Ok(match held {
            None => Err(Unrecoverable::BackupMissing),
            Some(h) if h.size != kept.size || kept.etag.is_some() && h.etag != kept.etag => Err(Unrecoverable::BackupChanged),
            Some(h) => Ok(h),
        })
    }

    /// Whether `now` is the copy a rollback began to put back: the kept copy's bytes (read
    /// and hashed on both sides), or the version's entity tag.
    async fn holds_what_was_kept(&self, group: &UndoGroup, now: &Option<ObjectEntry>) -> Result<bool> {
        let Some(now) = now else { return Ok(false) };
        let Prior::Present { size, etag, .. } = &group.first.prior else { return Ok(false) };
        if now.size != *size {
            return Ok(false);
        }
        if let Some(kept) = &group.first.backup {
            let Ok(copy) = self.kept_copy(kept, &group.key).await? else { return Ok(false) };
            let from = self.backup(&kept.location).await?;
            let (a, b) = tokio::join!(
                crate::verify::sha256_of(from.as_ref(), &copy.key, copy.size),
                crate::verify::sha256_of(self.dst.as_ref(), &now.key, now.size)
            );
            return Ok(matches!((a, b), (Ok(a), Ok(b)) if a == b));
        }
        Ok(etag.is_some() && now.etag == *etag)
    }

    async fn keeps_versions(&self) -> Result<bool> {
        let asked = self
            .versions
            .get_or_try_init(|| async {
                match self.dst.versions() {
                    Some(v) => v.keeps_versions().await,
                    None => Ok(false),
                }
            })
            .await;
        asked.copied().map_err(|source| EngineError::Provider { side: "destination", source })
    }

    /// The destination's version of the key that the group's first write replaced: the one the
    /// ledger recorded, else the newest of the key's versions with the prior size and entity
    /// tag that none of the group's writes made.
    async fn replaced_version(
        &self,
        group: &UndoGroup,
        size: u64,
        etag: &Option<String>,
        version: &Option<String>,
    ) -> Result<Option<String>> {
        if let Some(v) = version.as_ref().filter(|v| v.as_str() != "null") {
            return Ok(Some(v.clone()));
        }
        let versions = self.dst.versions().expect("asked only where the destination keeps versions");
        let all = versions.versions_of(&group.key).await.map_err(|source| EngineError::Provider { side: "destination", source })?;
        let ours: Vec<&str> = [&group.first, &group.last].iter().filter_map(|r| r.wrote.as_ref()?.version.as_deref()).collect();
        Ok(all
            .iter()
            .rev()
            .filter(|e| e.skipped != Some(SkipReason::DeleteMarker))
            .find(|e| e.size == size && same_tag(&e.etag, etag) && e.version.as_deref().is_some_and(|v| !ours.contains(&v)))
            .and_then(|e| e.version.clone()))
    }

    /// Carries out `action` on the key, journaled: begun before the destination is touched,
    /// done after. Steps that change nothing are journaled done at once; those not undone
    /// (changed since, unrecoverable) are not journaled, so the next rollback looks again.
    async fn carry_out(&self, journal: &dyn ferry_journal::Journal, group: &UndoGroup, action: &Action, by: RunId) -> Result<()> {
        let left = match action {
            Action::LeaveChanged | Action::Unrecoverable { .. } => return Ok(()),
            Action::Nothing => match group.first.prior {
                Prior::Absent => Undone::Removed,
                _ => Undone::Restored,
            },
            Action::Delete => Undone::Removed,
            Action::FromBackup { .. } | Action::FromVersion { .. } => Undone::Restored,
        };
        if *action != Action::Nothing {
            journal.begin_undo(&group.rows, by, group.last.object).await?;
        }
        let dst = |source| EngineError::Provider { side: "destination", source };
        match action {
            Action::Delete => self.dst.delete(&group.key).await.map_err(dst)?,
            Action::FromBackup { backup } => {
                let from = self.backup(backup).await?;
                let kept = group.first.backup.as_ref().expect("a backup action has its copy");
                let object = match self.kept_copy(kept, &group.key).await? {
                    Ok(object) => object,
                    Err(_) => return Err(EngineError::Provider { side: "backup", source: gone(&group.key, backup) }),
                };
                let server_side =
                    self.dst.server_copy().is_some_and(|c| c.copies_from(from.location(), &self.backup_connect(from.location())));
                crate::backup::copy(from.as_ref(), &object, self.dst.as_ref(), server_side).await.map_err(dst)?;
            }
            Action::FromVersion { version } => {
                let versions = self.dst.versions().expect("a version is restored only where the destination keeps them");
                let held = versions.head_version(&group.key, version).await.map_err(dst)?;
                let Some(held) = held else { return Err(dst(gone(&group.key, version))) };
                let object = ObjectEntry { version: Some(version.clone()), pinned: true, ..held };
                let server_side = self.dst.server_copy().is_some();
                crate::backup::copy(self.dst.as_ref(), &object, self.dst.as_ref(), server_side).await.map_err(dst)?;
            }
            _ => {}
        }
        // What was put back, as the destination names it now (a copy may be given a new tag,
        // and a versioned bucket a new version).
        let now = match left {
            Undone::Restored => {
                self.dst.head(&group.key).await.map_err(dst)?.map(|h| Wrote { size: h.size, etag: h.etag, version: h.version })
            }
            Undone::Removed => None,
        };
        journal.finish_undo(&group.rows, by, group.last.object, left, now.as_ref()).await?;
        Ok(())
    }

    fn backup_connect(&self, backup: &Location) -> ferry_providers::Connect {
        crate::backup::connect_for(backup, &self.job.destination, &self.job.access.destination)
    }

    /// The backup location `text` names, opened once.
    async fn backup(&self, text: &str) -> Result<Arc<dyn Provider>> {
        let mut opened = self.backups.lock().await;
        if let Some(p) = opened.get(text) {
            return Ok(p.clone());
        }
        let location = Location::parse(text)?;
        let provider = crate::backup::open(&location, &self.backup_connect(&location), self.run).await?;
        opened.insert(text.to_string(), provider.clone());
        Ok(provider)
    }
}

/// Whether the destination's state `now` is the prior state `before`.
fn holds(now: &Option<ObjectEntry>, before: &Prior) -> bool {
    match (now, before) {
        (None, Prior::Absent) => true,
        (Some(n), Prior::Present { size, etag, .. }) => n.size == *size && etag.is_some() && same_tag(&n.etag, etag),
        _ => false,
    }
}

/// Entity tags equal where both are known.
fn same_tag(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn gone(key: &str, whence: &str) -> ProviderError {
    ProviderError::NotFound { provider: "rollback", key: format!("{key} (kept at {whence})") }
}

/// Lines of a plan file, for the CLI to print.
pub fn plan_lines(path: &std::path::Path) -> std::io::Result<impl Iterator<Item = Step>> {
    use std::io::BufRead;
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(file.lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str::<StepLine>(&l).ok()).map(|s| s.into_step()))
}

/// A plan line as read back.
#[derive(serde::Deserialize)]
struct StepLine {
    key: String,
    action: String,
    backup: Option<String>,
    version: Option<String>,
    why: Option<String>,
    error: Option<String>,
}

impl StepLine {
    fn into_step(self) -> Step {
        let action = match self.action.as_str() {
            "delete" => Action::Delete,
            "from-backup" => Action::FromBackup { backup: self.backup.unwrap_or_default() },
            "from-version" => Action::FromVersion { version: self.version.unwrap_or_default() },
            "leave-changed" => Action::LeaveChanged,
            "unrecoverable" => Action::Unrecoverable {
                why: match self.why.as_deref() {
                    Some("prior-unknown") => Unrecoverable::PriorUnknown,
                    Some("version-not-found") => Unrecoverable::VersionNotFound,
                    Some("backup-missing") => Unrecoverable::BackupMissing,
                    Some("backup-changed") => Unrecoverable::BackupChanged,
                    _ => Unrecoverable::NotKept,
                },
            },
            _ => Action::Nothing,
        };
        Step { key: self.key, action, error: self.error }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(e) = &self.error {
            return write!(f, "failed         {}: {e}", self.key);
        }
        match &self.action {
            Action::Nothing => write!(f, "as before      {}", self.key)?,
            Action::Delete => write!(f, "delete         {}", self.key)?,
            Action::FromBackup { backup } => write!(f, "from backup    {} ({backup})", self.key)?,
            Action::FromVersion { version } => write!(f, "from version   {} (version {version})", self.key)?,
            Action::LeaveChanged => write!(f, "left changed   {} (another writer changed it after ferry)", self.key)?,
            Action::Unrecoverable { why } => write!(f, "unrecoverable  {} ({})", self.key, why.says())?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, kind: RunKind, generation: Option<u32>) -> RunRow {
        RunRow { id: RunId(id), kind, generation, started: String::new(), writes: 1, undone: 0 }
    }

    #[test]
    fn a_rollback_goes_back_to_the_first_run_after_the_generation_and_never_undoes_a_rollback() {
        let runs = [
            run(1, RunKind::Copy, None),
            run(2, RunKind::Copy, Some(1)),
            run(3, RunKind::Copy, Some(2)),
            run(4, RunKind::Delta, Some(2)),
            run(5, RunKind::Rollback, Some(3)),
            run(6, RunKind::Copy, Some(3)),
        ];
        let to = |t| runs_to_undo(&runs, t).unwrap().map(|r| r.0);
        assert_eq!(to(RollbackTo::Generation(1)), Some(3));
        assert_eq!(to(RollbackTo::Generation(2)), Some(6));
        assert_eq!(to(RollbackTo::Generation(0)), Some(2), "a run recorded without its generation is not taken for a later one");
        assert_eq!(to(RollbackTo::Generation(3)), None);
        assert_eq!(to(RollbackTo::Run(4)), Some(4));
        assert!(runs_to_undo(&runs, RollbackTo::Run(5)).is_err(), "a rollback is not undone");
        assert!(runs_to_undo(&runs, RollbackTo::Run(9)).is_err());
    }
}
