//! The job directory: one migration's configuration, manifests, journal and reports.
//!
//! ```text
//! JOB/job.toml            source, destination, endpoints (never credentials)
//! JOB/manifests/gen-NNNN/ sealed manifest generations
//! JOB/journal.sqlite      durable progress
//! JOB/reports/            one JSON report per run
//! JOB/.lock               held by the ferry process working on the job
//! ```
//! Nothing is written until the command has been validated: a job is persisted only after
//! both sides answered their checks.

use crate::{EngineError, Result};
use chrono::{DateTime, Utc};
use ferry_core::{Location, LocationError};
use ferry_manifest::{GENERATION_PREFIX, ManifestHeader};
use ferry_providers::{Connect, Provider};
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
    created_at: DateTime<Utc>,
}

pub struct Job {
    pub dir: PathBuf,
    pub source: Location,
    pub destination: Location,
    pub access: Access,
    persisted: bool,
    lock: Option<File>,
}

/// `path` made absolute against the working directory (no file system access).
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
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
            return Ok(Job {
                dir: dir.into(),
                source: job_src,
                destination: job_dst,
                access: Access {
                    source: Connect {
                        endpoint: access.source.endpoint.or(stored.source_endpoint),
                        profile: access.source.profile.or(stored.source_profile),
                        follow_symlinks: access.source.follow_symlinks,
                    },
                    destination: Connect {
                        endpoint: access.destination.endpoint.or(stored.destination_endpoint),
                        profile: access.destination.profile.or(stored.destination_profile),
                        follow_symlinks: access.destination.follow_symlinks,
                    },
                },
                persisted: true,
                lock: None,
            });
        }
        match (source, destination) {
            (Some(source), Some(destination)) => {
                for (what, location) in [("source", &source), ("destination", &destination)] {
                    if location.scheme == ferry_core::Scheme::Local && absolute(dir).starts_with(&location.prefix) {
                        return Err(EngineError::JobInsideLocation { dir: dir.into(), what, location: location.to_string() });
                    }
                }
                Ok(Job { dir: dir.into(), source, destination, access, persisted: false, lock: None })
            }
            _ => Err(EngineError::NoJob { dir: dir.into() }),
        }
    }

    /// Opens both providers and checks them (bucket exists, credentials work). Sends requests,
    /// writes nothing.
    pub async fn providers(&self) -> Result<(Arc<dyn Provider>, Arc<dyn Provider>)> {
        let (src, dst) = tokio::join!(self.source_provider(), self.destination_provider());
        Ok((src?, dst?))
    }

    /// Opens and checks the source alone.
    pub async fn source_provider(&self) -> Result<Arc<dyn Provider>> {
        open_side("source", &self.source, &self.access.source, false).await
    }

    /// Opens and checks the destination alone (what `verify` needs: the source may be gone).
    pub async fn destination_provider(&self) -> Result<Arc<dyn Provider>> {
        open_side("destination", &self.destination, &self.access.destination, true).await
    }

    /// Creates the directory and `job.toml` if new, and takes the job's lock.
    pub fn persist(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("manifests")).map_err(EngineError::io(&self.dir))?;
        if !self.persisted {
            let file = JobFile {
                source: self.source.to_string(),
                destination: self.destination.to_string(),
                source_endpoint: self.access.source.endpoint.clone(),
                destination_endpoint: self.access.destination.endpoint.clone(),
                source_profile: self.access.source.profile.clone(),
                destination_profile: self.access.destination.profile.clone(),
                created_at: Utc::now(),
            };
            let path = self.dir.join("job.toml");
            let text = toml::to_string(&file).expect("job file serializes");
            std::fs::write(&path, text).map_err(EngineError::io(&path))?;
            self.persisted = true;
        }
        self.lock()
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

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.sqlite")
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
    pub fn write_report(&self, kind: &str, report: &serde_json::Value) -> Result<PathBuf> {
        let dir = self.dir.join("reports");
        std::fs::create_dir_all(&dir).map_err(EngineError::io(&dir))?;
        let path = dir.join(format!("{kind}-{}.json", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        let text = serde_json::to_vec_pretty(report).expect("report serializes");
        std::fs::write(&path, text).map_err(EngineError::io(&path))?;
        Ok(path)
    }
}

async fn open_side(side: &'static str, location: &Location, connect: &Connect, for_write: bool) -> Result<Arc<dyn Provider>> {
    let err = |source| EngineError::Provider { side, source };
    let provider = ferry_providers::open(location, connect).await.map_err(err)?;
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

    #[test]
    fn endpoints_with_credentials_are_refused() {
        let eps = Access {
            source: Connect { endpoint: Some("http://user:secret@127.0.0.1:9000".into()), ..Default::default() },
            ..Default::default()
        };
        let err = Job::open(Path::new("/nonexistent"), None, None, eps).err().unwrap().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
