//! The job directory: one migration's configuration, manifests, journal and reports.
//!
//! ```text
//! JOB/job.toml            source, destination, endpoints, the run settings kept from the
//!                         first copy (`[settings]`, see `settings.rs`; never credentials)
//! JOB/manifests/gen-NNNN/ sealed manifest generations
//! JOB/(journal)           durable progress, and a disk export's (opened only through
//!                         [`Job::journal`]; where and how it is stored is the journal's)
//! JOB/reports/            one JSON report per run
//! JOB/.lock               held by the ferry process working on the job
//! ```
//! Nothing is written until the command has been validated: a job is persisted only after
//! both sides answered their checks.

use crate::settings::{AskedSettings, Settings};
use crate::{EngineError, Result};
use chrono::{DateTime, Utc};
use ferry_core::{Location, LocationError};
use ferry_journal::{Journal, JournalKind};
use ferry_manifest::{GENERATION_PREFIX, ManifestHeader};
use ferry_providers::{Connect, Provider, RunContext};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How each side is reached: endpoint and credential profile (names, never credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub source: Connect,
    pub destination: Connect,
}

#[derive(Debug, Serialize, Deserialize)]
struct JobFile {
    source: String,
    destination: String,
    source_endpoint: Option<String>,
    destination_endpoint: Option<String>,
    #[serde(default)]
    source_profile: Option<String>,
    #[serde(default)]
    destination_profile: Option<String>,
    /// A local source's symbolic links are followed (inside the source only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    follow_symlinks: bool,
    /// Every version of each key is listed and copied, oldest first (`--all-versions`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all_versions: bool,
    created_at: DateTime<Utc>,
    /// The run settings kept since the job's first copy; absent before it (and in a job an
    /// older ferry made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<Settings>,
    /// A table job: the database and tables it exports into its spool (its source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tables: Option<crate::tables::TablesSpec>,
}

pub struct Job {
    pub dir: PathBuf,
    pub source: Location,
    pub destination: Location,
    pub access: Access,
    persisted: bool,
    /// When the job was made (kept in `job.toml`): with its sides, what tells it from any
    /// other job, even one made again in the same directory.
    created_at: DateTime<Utc>,
    /// The settings `job.toml` keeps (`None`: no copy kept any yet).
    kept: Option<Settings>,
    /// The settings this run settled on ([`Job::settle`]), kept by [`Job::keep_settings`].
    settings: Option<Settings>,
    lock: Option<File>,
    /// A table job's source (see [`crate::tables`]).
    tables: Option<crate::tables::TablesSpec>,
    /// The journals opened for this run, each once (at its kind's [`slot`]).
    journals: [tokio::sync::OnceCell<Arc<dyn Journal>>; 3],
}

/// Where a journal of `kind` is kept in [`Job`]'s journals.
fn slot(kind: JournalKind) -> usize {
    match kind {
        JournalKind::Main => 0,
        JournalKind::Export => 1,
        JournalKind::ExportCheck => 2,
    }
}

/// Where `path` is, or would be once created: its nearest existing ancestor with every symlink
/// and `..` resolved, then the rest of it (which does not exist yet, so holds no symlink) with
/// `.` and `..` taken lexically — as `create_dir_all` would make it.
fn resolved(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut base = path.as_path();
    let mut out = loop {
        if let Ok(real) = base.canonicalize() {
            break real;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent;
            }
            // `..` or `.` as the last component of something that does not exist: keep it for
            // the lexical pass below.
            (Some(parent), None) => {
                rest.push(base.components().next_back().map(|c| c.as_os_str().to_os_string()).unwrap_or_default());
                base = parent;
            }
            (None, _) => break PathBuf::from("/"),
        }
    };
    for part in rest.iter().rev() {
        match part.to_str() {
            Some("..") => {
                out.pop();
            }
            Some(".") | Some("") => {}
            _ => out.push(part),
        }
    }
    out
}

/// Refuses endpoints that carry credentials, so they can be stored and printed as they are.
fn check_endpoint(url: &str) -> Result<()> {
    let authority = url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or_default()).unwrap_or(url);
    if authority.contains('@') {
        return Err(LocationError::CredentialsInUrl { url: ferry_core::location::redact(url), what: "user info" }.into());
    }
    if url.contains('?') {
        return Err(LocationError::CredentialsInUrl { url: ferry_core::location::redact(url), what: "a query string" }.into());
    }
    Ok(())
}

impl Job {
    /// Opens the job in `dir`, or prepares a new one from `source` and `destination`. Given
    /// locations must match an existing job's; given endpoints override the stored ones.
    pub fn open(dir: &Path, source: Option<Location>, destination: Option<Location>, access: Access) -> Result<Job> {
        for ep in [&access.source.endpoint, &access.destination.endpoint].into_iter().flatten() {
            check_endpoint(ep)?;
        }
        let file = dir.join("job.toml");
        if file.exists() {
            let text = std::fs::read_to_string(&file).map_err(EngineError::io(&file))?;
            let stored: JobFile = toml::from_str(&text).map_err(|e| EngineError::JobFile { path: file.clone(), detail: e.to_string() })?;
            let parse = |s: &str| Location::parse(s).map_err(|e| EngineError::JobFile { path: file.clone(), detail: e.to_string() });
            let (job_src, job_dst) = (parse(&stored.source)?, parse(&stored.destination)?);
            for (what, given, job) in [("source", &source, &job_src), ("destination", &destination, &job_dst)] {
                if let Some(given) = given.as_ref().filter(|g| *g != job) {
                    return Err(EngineError::JobMismatch { dir: dir.into(), what, job: job.to_string(), given: given.to_string() });
                }
            }
            // A job's rows are of one kind: a key each, or a version each.
            if access.source.all_versions && !stored.all_versions {
                return Err(EngineError::PlannedWithoutVersions { dir: dir.into() });
            }
            return Ok(Job {
                dir: dir.into(),
                source: job_src,
                destination: job_dst,
                access: Access {
                    source: Connect {
                        endpoint: access.source.endpoint.or(stored.source_endpoint),
                        profile: access.source.profile.or(stored.source_profile),
                        follow_symlinks: access.source.follow_symlinks || stored.follow_symlinks,
                        local_metadata: access.source.local_metadata,
                        write: access.source.write,
                        all_versions: access.source.all_versions || stored.all_versions,
                    },
                    destination: Connect {
                        endpoint: access.destination.endpoint.or(stored.destination_endpoint),
                        profile: access.destination.profile.or(stored.destination_profile),
                        local_metadata: access.destination.local_metadata,
                        write: access.destination.write,
                        ..Connect::default()
                    },
                },
                persisted: true,
                created_at: stored.created_at,
                kept: stored.settings,
                settings: None,
                lock: None,
                tables: stored.tables,
                journals: Default::default(),
            });
        }
        match (source, destination) {
            (Some(source), Some(destination)) => {
                // Compared where they really are: `a/../src/job` or `link-to-src/job` is inside `src`.
                let job_dir = resolved(dir);
                for (what, location) in [("source", &source), ("destination", &destination)] {
                    if location.scheme == ferry_core::Scheme::Local && job_dir.starts_with(resolved(Path::new(&location.prefix))) {
                        return Err(EngineError::JobInsideLocation { dir: dir.into(), what, location: location.to_string() });
                    }
                }
                Ok(Job {
                    dir: dir.into(),
                    source,
                    destination,
                    access,
                    persisted: false,
                    created_at: Utc::now(),
                    kept: None,
                    settings: None,
                    lock: None,
                    tables: None,
                    journals: Default::default(),
                })
            }
            _ => Err(EngineError::NoJob { dir: dir.into() }),
        }
    }

    /// A table job's source, if this is one.
    pub fn tables(&self) -> Option<&crate::tables::TablesSpec> {
        self.tables.as_ref()
    }

    /// Makes a new job a table job exporting `spec` (an existing job keeps its own: a
    /// different `spec` is refused).
    pub fn set_tables(&mut self, spec: crate::tables::TablesSpec) -> Result<()> {
        match &self.tables {
            Some(kept)
                if (&kept.url, &kept.tables, &kept.schemas, &kept.casts) != (&spec.url, &spec.tables, &spec.schemas, &spec.casts) =>
            {
                Err(EngineError::JobMismatch {
                    dir: self.dir.clone(),
                    what: "table source",
                    job: format!("{} --table {:?} --schema {:?} --cast {:?}", kept.url, kept.tables, kept.schemas, kept.casts),
                    given: format!("{} --table {:?} --schema {:?} --cast {:?}", spec.url, spec.tables, spec.schemas, spec.casts),
                })
            }
            Some(_) => Ok(()),
            None if self.persisted => {
                Err(EngineError::JobMismatch { dir: self.dir.clone(), what: "source", job: self.source.to_string(), given: spec.url })
            }
            None => {
                self.tables = Some(spec);
                Ok(())
            }
        }
    }

    /// A short id of this job, the same for every run of it and different for any other job
    /// (even one made again in the same directory): where its `--backup-to` copies go.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let who = format!("{}|{}|{}", self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), self.source, self.destination);
        hex::encode(&sha2::Sha256::digest(who.as_bytes())[..8])
    }

    /// Settles `--local-metadata` for any command on this job: the one given, else the one
    /// kept (see [`crate::settings`]); refused where it contradicts the kept one.
    pub fn settle_local_metadata(&mut self, asked: Option<ferry_providers::local::LocalMetadata>) -> Result<()> {
        let m = crate::settings::settle_local_metadata(self.kept.as_ref(), asked)?;
        (self.access.source.local_metadata, self.access.destination.local_metadata) = (m, m);
        Ok(())
    }

    /// Settles the settings of a run that copies: what `asked` gives (checked against the
    /// destination's provider), the job's kept settings for the rest; a usage error, before
    /// anything is opened or written, where a flag contradicts a kept setting. Every write to
    /// the destination then carries them; the copy keeps them (`Job::keep_settings`).
    pub fn settle(&mut self, asked: &AskedSettings) -> Result<Settings> {
        let schemes = (self.source.scheme, self.destination.scheme);
        let settings = Settings::settle(self.kept.as_ref(), asked, schemes, self.access.destination.local_metadata)?;
        if let Some(backup) = settings.backup_to()? {
            // A kept copy must keep what the destination keeps (headers, metadata, tags): on
            // another kind of store it would come back without them.
            if backup.scheme != self.destination.scheme {
                return Err(EngineError::WriteSetting(format!(
                    "--backup-to {backup}: keep backups on the destination's kind of store ({}://), which keeps what its objects carry",
                    self.destination.scheme.as_url_scheme()
                )));
            }
            // Kept objects among the destination's would be copied, verified and deleted as
            // its own; among the source's, listed by the next delta; in the job directory,
            // mixed with its files. Local paths are compared where they really are (`..`,
            // doubled slashes, symbolic links).
            let real = |l: &Location| match l.scheme {
                ferry_core::Scheme::Local => {
                    Location { prefix: resolved(Path::new(&l.prefix)).to_string_lossy().into_owned(), ..l.clone() }
                }
                _ => l.clone(),
            };
            let job_dir = Location { prefix: resolved(&self.dir).to_string_lossy().into_owned(), ..Location::parse("/").expect("a path") };
            let places = [("destination", real(&self.destination)), ("source", real(&self.source)), ("job directory", job_dir)];
            for (what, location) in places {
                if real(&backup).overlaps(&location) {
                    return Err(EngineError::WriteSetting(format!(
                        "--backup-to {backup} overlaps the {what} {location}: keep backups in a location of their own"
                    )));
                }
            }
        }
        self.access.destination.write = settings.write();
        self.settings = Some(settings.clone());
        Ok(settings)
    }

    /// Keeps this run's settled settings in `job.toml` (once the job is persisted, under its
    /// lock, before the first write): later runs of the job take them.
    pub(crate) fn keep_settings(&mut self) -> Result<()> {
        let Some(settings) = self.settings.clone().filter(|s| self.kept.as_ref() != Some(s)) else { return Ok(()) };
        self.lock()?;
        let path = self.dir.join("job.toml");
        let text = std::fs::read_to_string(&path).map_err(EngineError::io(&path))?;
        let mut file: JobFile = toml::from_str(&text).map_err(|e| EngineError::JobFile { path: path.clone(), detail: e.to_string() })?;
        file.settings = Some(settings.clone());
        let text = toml::to_string(&file).expect("job file serializes");
        write_atomically(&path, text.as_bytes()).map_err(EngineError::io(&path))?;
        self.kept = Some(settings);
        Ok(())
    }

    /// Makes `source` the job's source, in `job.toml` too (an ingest job that goes on from its
    /// disks to the system they were exported from). The source's endpoint and profile are
    /// this run's (`--src-endpoint`, `--src-profile`), kept for the runs after it.
    pub(crate) fn move_source(&mut self, source: Location) -> Result<()> {
        self.lock()?;
        let path = self.dir.join("job.toml");
        let text = std::fs::read_to_string(&path).map_err(EngineError::io(&path))?;
        let mut file: JobFile = toml::from_str(&text).map_err(|e| EngineError::JobFile { path: path.clone(), detail: e.to_string() })?;
        let moved = (source.to_string(), self.access.source.endpoint.clone(), self.access.source.profile.clone());
        if (&file.source, &file.source_endpoint, &file.source_profile, file.follow_symlinks) != (&moved.0, &moved.1, &moved.2, false) {
            (file.source, file.source_endpoint, file.source_profile) = moved;
            file.follow_symlinks = false;
            let text = toml::to_string(&file).expect("job file serializes");
            write_atomically(&path, text.as_bytes()).map_err(EngineError::io(&path))?;
        }
        (self.source, self.access.source.follow_symlinks) = (source, false);
        Ok(())
    }

    /// Opens both providers for `run` and checks them (bucket exists, credentials work).
    /// Sends requests, writes nothing.
    pub async fn providers(&self, run: &Arc<RunContext>) -> Result<(Arc<dyn Provider>, Arc<dyn Provider>)> {
        let (src, dst) = tokio::join!(self.source_provider(run), self.destination_provider(run));
        let (src, dst) = (src?, dst?);
        if self.all_versions() {
            self.check_versions(src.as_ref(), Some(dst.as_ref())).await?;
        }
        Ok((src, dst))
    }

    /// Whether the job copies every version of each key (`--all-versions`, kept in job.toml).
    pub fn all_versions(&self) -> bool {
        self.access.source.all_versions
    }

    /// Refuses an `--all-versions` job (a usage error, before anything is written) where the
    /// source cannot list and read versions, or the destination (when given) cannot or does
    /// not keep them: writing every version onto a destination that keeps one per key would
    /// keep only the last, losing the history without a word.
    pub async fn check_versions(&self, src: &dyn Provider, dst: Option<&dyn Provider>) -> Result<()> {
        let refuse = |side, location: &Location, refusal| EngineError::AllVersions { side, location: location.to_string(), refusal };
        if src.versions().is_none() {
            return Err(refuse("source", &self.source, crate::VersionsRefusal::Unsupported));
        }
        if let Some(dst) = dst {
            let Some(versions) = dst.versions() else {
                return Err(refuse("destination", &self.destination, crate::VersionsRefusal::Unsupported));
            };
            if !versions.keeps_versions().await.map_err(|source| EngineError::Provider { side: "destination", source })? {
                return Err(refuse("destination", &self.destination, crate::VersionsRefusal::NotKept));
            }
        }
        Ok(())
    }

    /// Opens and checks the source alone.
    pub async fn source_provider(&self, run: &Arc<RunContext>) -> Result<Arc<dyn Provider>> {
        open_side("source", &self.source, &self.access.source, false, run).await
    }

    /// Opens and checks the destination alone (what `verify` needs: the source may be gone).
    pub async fn destination_provider(&self, run: &Arc<RunContext>) -> Result<Arc<dyn Provider>> {
        open_side("destination", &self.destination, &self.access.destination, true, run).await
    }

    /// Takes the job's lock, creating the directory if new, then writes `job.toml` if new
    /// (atomically: a crash leaves the whole file or none, and only the lock holder writes it).
    pub fn persist(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(EngineError::io(&self.dir))?;
        self.lock()?;
        std::fs::create_dir_all(self.dir.join("manifests")).map_err(EngineError::io(&self.dir))?;
        if !self.persisted {
            let path = self.dir.join("job.toml");
            if path.exists() {
                // Another process made this job between our open and our lock: check against it.
                let stored = Job::open(&self.dir, Some(self.source.clone()), Some(self.destination.clone()), self.access.clone())?;
                (self.access, self.persisted, self.kept, self.created_at) = (stored.access, true, stored.kept, stored.created_at);
                return Ok(());
            }
            let file = JobFile {
                source: self.source.to_string(),
                destination: self.destination.to_string(),
                source_endpoint: self.access.source.endpoint.clone(),
                destination_endpoint: self.access.destination.endpoint.clone(),
                source_profile: self.access.source.profile.clone(),
                destination_profile: self.access.destination.profile.clone(),
                follow_symlinks: self.access.source.follow_symlinks,
                all_versions: self.access.source.all_versions,
                created_at: self.created_at,
                settings: None,
                tables: self.tables.clone(),
            };
            let text = toml::to_string(&file).expect("job file serializes");
            write_atomically(&path, text.as_bytes()).map_err(EngineError::io(&path))?;
            // The job directory's own entry, so a journal in it cannot outlive it after a power loss.
            let dir = std::path::absolute(&self.dir).map_err(EngineError::io(&self.dir))?;
            if let Some(parent) = dir.parent() {
                File::open(parent).and_then(|p| p.sync_all()).map_err(EngineError::io(parent))?;
            }
            self.persisted = true;
        }
        Ok(())
    }

    /// Takes the job's lock (an advisory lock released when the process exits, even on SIGKILL).
    pub fn lock(&mut self) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let path = self.dir.join(".lock");
        let f = File::options().create(true).truncate(false).write(true).open(&path).map_err(EngineError::io(&path))?;
        match f.try_lock() {
            Ok(()) => {
                self.lock = Some(f);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Locked { dir: self.dir.clone(), lock: path }),
            Err(std::fs::TryLockError::Error(e)) => Err(EngineError::Io { path, source: e }),
        }
    }

    pub fn exists(&self) -> bool {
        self.persisted
    }

    /// The job's journal of `kind`, opened (and migrated, if an older ferry made it) on first
    /// use and shared by everything the run does after: the one place a job's journals open.
    pub async fn journal(&self, kind: JournalKind) -> Result<Arc<dyn Journal>> {
        let opened = self.journals[slot(kind)].get_or_try_init(|| ferry_journal::open(&self.dir, kind)).await?;
        Ok(opened.clone())
    }

    /// Whether the job has a journal of `kind` (e.g. whether it was ever exported to disks).
    pub fn has_journal(&self, kind: JournalKind) -> bool {
        ferry_journal::exists(&self.dir, kind)
    }

    /// Drops the job's journal of `kind` (a check's scratch journal, before the next check).
    /// What this run opened of it is closed first; nothing else may hold it.
    pub fn remove_journal(&mut self, kind: JournalKind) -> Result<()> {
        self.journals[slot(kind)].take();
        Ok(ferry_journal::remove(&self.dir, kind)?)
    }

    pub fn generation_dir(&self, generation: u32) -> PathBuf {
        self.dir.join("manifests").join(ManifestHeader::dir_name(generation))
    }

    /// The newest sealed generation, if any.
    pub fn latest_generation(&self) -> Option<u32> {
        let entries = std::fs::read_dir(self.dir.join("manifests")).ok()?;
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix(GENERATION_PREFIX)?.parse::<u32>().ok())
            .filter(|g| ManifestHeader::path(&self.generation_dir(*g)).exists())
            .max()
    }

    /// Writes `JOB/reports/{kind}-{timestamp}.json` and returns its path.
    /// A new file in the job's reports, `KIND-TIME.EXT`, to write a long report into.
    pub(crate) fn report_file(&self, kind: &str, ext: &str) -> Result<(PathBuf, std::fs::File)> {
        let dir = self.dir.join("reports");
        std::fs::create_dir_all(&dir).map_err(EngineError::io(&dir))?;
        let path = dir.join(format!("{kind}-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        let file = std::fs::File::create(&path).map_err(EngineError::io(&path))?;
        Ok((path, file))
    }

    pub fn write_report(&self, kind: &str, report: &serde_json::Value) -> Result<PathBuf> {
        let dir = self.dir.join("reports");
        std::fs::create_dir_all(&dir).map_err(EngineError::io(&dir))?;
        let path = dir.join(format!("{kind}-{}.json", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        let text = serde_json::to_vec_pretty(report).expect("report serializes");
        std::fs::write(&path, text).map_err(EngineError::io(&path))?;
        Ok(path)
    }
}

/// Writes `path` whole or not at all: a temp file beside it, fsynced, renamed over it, and the
/// directory fsynced so the rename itself survives a power loss.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

async fn open_side(
    side: &'static str,
    location: &Location,
    connect: &Connect,
    for_write: bool,
    run: &Arc<RunContext>,
) -> Result<Arc<dyn Provider>> {
    let err = |source| EngineError::Provider { side, source };
    let provider = ferry_providers::open(location, connect, run).await.map_err(err)?;
    provider.check(for_write).await.map_err(err)?;
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_refuses_another_source_and_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("job");
        let src = Location::parse("s3://bkt-a/p").unwrap();
        let dst = Location::parse("gs://bkt-b/").unwrap();
        let mut job = Job::open(&d, Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
        assert!(!d.exists(), "nothing is written before persist");
        job.persist().unwrap();

        let other = Location::parse("s3://bkt-a/q").unwrap();
        let err = Job::open(&d, Some(other), Some(dst.clone()), Access::default()).err().unwrap();
        assert!(matches!(err, EngineError::JobMismatch { what: "source", .. }), "{err}");

        let mut again = Job::open(&d, None, None, Access::default()).unwrap();
        assert_eq!(again.source, src);
        assert!(matches!(again.lock(), Err(EngineError::Locked { .. })));
        drop(job);
        again.lock().unwrap();
    }

    // Issue 12, case 19: job.toml was written before the lock was taken, so a second process
    // could rewrite the file of a job another one was working on.
    #[test]
    fn case_19_job_toml_is_written_only_under_the_lock_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("job");
        std::fs::create_dir_all(&d).unwrap();
        let held = File::options().create(true).truncate(false).write(true).open(d.join(".lock")).unwrap();
        held.try_lock().unwrap();
        let (src, dst) = (Location::parse("s3://bkt-a/p").unwrap(), Location::parse("gs://bkt-b/").unwrap());
        let mut job = Job::open(&d, Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
        assert!(matches!(job.persist(), Err(EngineError::Locked { .. })));
        assert!(!d.join("job.toml").exists(), "the lock is taken before job.toml is written");
        drop(held);

        // What a crash between writing the temp file and renaming it leaves: the temp file, no
        // job.toml. The job is still new, and is created whole.
        std::fs::write(d.join(".job.toml.tmp"), "source = \"s3://trunc").unwrap();
        let mut job2 = Job::open(&d, Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
        assert!(!job2.exists());
        job2.persist().unwrap();
        assert!(!d.join(".job.toml.tmp").exists());
        drop(job2);
        assert_eq!(Job::open(&d, None, None, Access::default()).unwrap().source, src);

        // A job made by another process between this one's open and its lock is checked, not
        // overwritten.
        let e = dir.path().join("raced");
        let mut first = Job::open(&e, Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
        let other = Location::parse("s3://bkt-a/q").unwrap();
        let mut second = Job::open(&e, Some(other), Some(dst.clone()), Access::default()).unwrap();
        first.persist().unwrap();
        let written = std::fs::read(e.join("job.toml")).unwrap();
        drop(first);
        assert!(matches!(second.persist(), Err(EngineError::JobMismatch { what: "source", .. })));
        assert_eq!(std::fs::read(e.join("job.toml")).unwrap(), written);
    }

    // Issue 12, case 8: where a job directory is, compared with real paths.
    #[test]
    fn case_08_a_job_directory_is_resolved_through_dotdot_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("link")).unwrap();
        assert_eq!(resolved(&root.join("a/other/../../src/job")), root.join("src/job"));
        assert_eq!(resolved(&root.join("a/other/../src/job")), root.join("a/src/job"));
        assert_eq!(resolved(&root.join("link/x/../job")), root.join("src/job"));
        assert_eq!(resolved(&root.join("link/new/..")), root.join("src"));
        assert_eq!(resolved(&root.join("a/./b")), root.join("a/b"));
        let src = Location::parse(&root.join("src").to_string_lossy()).unwrap();
        let dst = Location::parse("s3://bkt-b/").unwrap();
        for job in ["a/other/../../src/job", "link/job", "src"] {
            let err = Job::open(&root.join(job), Some(src.clone()), Some(dst.clone()), Access::default()).err();
            assert!(matches!(err, Some(EngineError::JobInsideLocation { what: "source", .. })), "{job}: {err:?}");
        }
        assert!(Job::open(&root.join("a/../srcjob"), Some(src), Some(dst), Access::default()).is_ok(), "a sibling is fine");
    }

    #[test]
    fn endpoints_with_credentials_are_refused() {
        let eps = Access {
            source: Connect { endpoint: Some("http://user:secret@127.0.0.1:9000".into()), profile: None, ..Default::default() },
            ..Default::default()
        };
        let err = Job::open(Path::new("/nonexistent"), None, None, eps).err().unwrap().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
