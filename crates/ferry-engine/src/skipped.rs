//! What a job does not copy: the entries its listing met and recorded as skipped (symlinks,
//! FIFOs, unreadable folders, folder markers…), counted by reason and named, for every run's
//! summary and report.

use crate::Result;
use ferry_core::SkipReason;
use ferry_journal::Journal;
use serde::Serialize;
use std::collections::BTreeMap;

/// Entries named in a summary at most; the journal (and `ferry manifest export`) has them all.
pub const NAMED: usize = 10_000;

/// One skipped entry, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedEntry {
    pub key: String,
    pub reason: SkipReason,
}

/// The job's skipped entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub total: u64,
    /// Of `total`, entries that hold data the destination will lack (every reason but folder
    /// markers and ferry's own temp files): any makes `copy` and `verify` exit 1.
    pub lost: u64,
    pub by_reason: BTreeMap<SkipReason, u64>,
    /// The first [`NAMED`] of them, in listing order.
    pub entries: Vec<SkippedEntry>,
}

impl Skipped {
    /// The job's skipped entries as its journal records them.
    pub async fn of(journal: &dyn Journal) -> Result<Skipped> {
        let by_reason = journal.skipped_by_reason().await?;
        let total = by_reason.values().sum();
        let lost = by_reason.iter().filter(|(r, _)| r.is_loss()).map(|(_, n)| n).sum();
        let mut entries = Vec::new();
        if total > 0 {
            let mut cursor = 0;
            while entries.len() < NAMED {
                let page = journal.skipped(cursor, 1024.min(NAMED - entries.len())).await?;
                let Some((last, _, _)) = page.last() else { break };
                cursor = *last;
                entries.extend(page.into_iter().map(|(_, key, reason)| SkippedEntry { key, reason }));
            }
        }
        Ok(Skipped { total, lost, by_reason, entries })
    }

    /// `3 symlink, 1 fifo`: the counts by reason, for one line of text.
    pub fn counts_text(&self) -> String {
        self.by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", ")
    }
}
