//! What the destination did not keep of the objects' headers, metadata and tags, per object
//! and counted: the copy's report names it (docs/fidelity.md has the matrix by pair).

use ferry_core::{Carries, NotCarried};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Objects named one by one in a report; beyond this they are only counted.
const NAMED: usize = 1_000;

/// `--tags`: whether object tags are copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagsMode {
    /// Where both sides keep tags (S3 tagging, Azure blob index tags, a local hop with metadata).
    #[default]
    Copy,
    Skip,
}

/// What a pair of providers cannot carry at all, said once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairLimit {
    /// The destination keeps no object tags (GCS; a local directory without metadata).
    NoTags,
    /// The destination keeps no headers or metadata (a local directory without `--local-metadata`).
    NoMetadata,
}

/// An object and what of it the destination did not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectNotCarried {
    pub key: String,
    pub not_carried: Vec<NotCarried>,
}

/// The report's account of attributes not carried.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fidelity {
    /// What this pair cannot carry at all.
    pub pair_limits: Vec<PairLimit>,
    /// Objects the destination did not keep everything of.
    pub objects: u64,
    /// Of them, objects that lost user metadata (a name or a value the destination cannot hold)
    /// or tags (ones it cannot hold, or over its count): they make the run exit 1.
    pub objects_losing_metadata: u64,
    /// Objects by what they lost (`Expires: the destination has no such header`, …).
    pub by_kind: BTreeMap<String, u64>,
    /// The objects (the first 1,000) and what each lost.
    pub named: Vec<ObjectNotCarried>,
}

impl Fidelity {
    /// The limits of copying to a destination that keeps `to`, with tags `tags`.
    pub fn for_pair(to: &Carries, tags: TagsMode) -> Fidelity {
        let mut pair_limits = Vec::new();
        if !to.metadata {
            pair_limits.push(PairLimit::NoMetadata);
        }
        if !to.tags && tags == TagsMode::Copy {
            pair_limits.push(PairLimit::NoTags);
        }
        Fidelity { pair_limits, ..Fidelity::default() }
    }

    /// Adds what another mover of the same run gathered (a device's, of other objects).
    pub(crate) fn absorb(&mut self, other: Fidelity) {
        for limit in other.pair_limits {
            if !self.pair_limits.contains(&limit) {
                self.pair_limits.push(limit);
            }
        }
        self.pair_limits.sort();
        self.objects += other.objects;
        self.objects_losing_metadata += other.objects_losing_metadata;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        self.named.extend(other.named);
        self.named.sort_by(|a, b| a.key.cmp(&b.key));
        self.named.truncate(NAMED);
    }

    /// Whether the run must exit 1 for what it did not carry.
    pub fn lost_user_data(&self) -> bool {
        self.objects_losing_metadata > 0
    }
}

/// Gathers [`Fidelity`] while objects are copied.
/// Objects seen are remembered so an object tried twice counts once.
#[derive(Debug, Default)]
pub(crate) struct Collect(Mutex<(Fidelity, std::collections::BTreeSet<String>)>);

impl Collect {
    pub(crate) fn new(start: Fidelity) -> Collect {
        Collect(Mutex::new((start, Default::default())))
    }

    pub(crate) fn record(&self, key: &str, not_carried: Vec<NotCarried>) {
        if not_carried.is_empty() {
            return;
        }
        let mut guard = self.0.lock().expect("fidelity lock");
        let (f, seen) = &mut *guard;
        if !seen.insert(key.to_string()) {
            return;
        }
        f.objects += 1;
        if not_carried.iter().any(NotCarried::loses_user_data) {
            f.objects_losing_metadata += 1;
        }
        let kinds: std::collections::BTreeSet<String> = not_carried.iter().map(kind_name).collect();
        for kind in kinds {
            *f.by_kind.entry(kind).or_default() += 1;
        }
        if f.named.len() < NAMED {
            f.named.push(ObjectNotCarried { key: key.to_string(), not_carried });
        }
    }

    pub(crate) fn take(&self) -> Fidelity {
        let mut f = std::mem::take(&mut self.0.lock().expect("fidelity lock").0);
        f.named.sort_by(|a, b| a.key.cmp(&b.key));
        f
    }
}

/// A kind of loss without the object's own names, for counting.
fn kind_name(n: &NotCarried) -> String {
    use ferry_core::headers::NameIssue;
    match n {
        NotCarried::Header { header } => format!("header {}", header.as_str()),
        NotCarried::Tags => "tags".into(),
        NotCarried::Metadata => "metadata".into(),
        NotCarried::Name { issue: NameIssue::Invalid, .. } => "metadata name not allowed".into(),
        NotCarried::Name { issue: NameIssue::CaseFolded { .. }, .. } => "metadata name lower-cased".into(),
        NotCarried::Name { issue: NameIssue::Collides { .. }, .. } => "metadata name collides".into(),
        NotCarried::Value { .. } => "metadata value not allowed".into(),
        NotCarried::Tag { issue: ferry_core::headers::TagIssue::Invalid, .. } => "tag not allowed".into(),
        NotCarried::Tag { issue: ferry_core::headers::TagIssue::TooMany { .. }, .. } => "tags over the limit".into(),
    }
}
