//! The scheduler: one pass over the journal's pending objects, each handed to the mover its
//! route picks, `--transfers` at a time or fewer while the services push back. A fatal error
//! stops the pass early. Copy, export and ingest each run passes through it.

use crate::Result;
use crate::concurrency::Gate;
use crate::mover::{Budget, Mover};
use crate::options::{CopyOptions, Failure};
use ferry_core::ErrorClass;
use ferry_journal::{Journal, ObjectRow};
use futures::stream::StreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a run's movers share: the journal, and the memory budget (part buffers are recycled;
/// the free ones kept are bounded by the same budget).
pub(crate) fn shared(journal: Journal, opts: &CopyOptions) -> (Arc<Mutex<Journal>>, Budget) {
    ferry_core::buffers::set_limit(usize::try_from(opts.max_memory).unwrap_or(usize::MAX));
    (Arc::new(Mutex::new(journal)), Budget::new(opts.max_memory))
}

/// What one pass over the journal's pending objects did.
pub(crate) struct Pass {
    pub(crate) copied: u64,
    pub(crate) bytes: u64,
    /// In key order.
    pub(crate) failures: Vec<Failure>,
    /// A fatal error that stopped the pass early.
    pub(crate) stopped_by: Option<String>,
    /// Objects whose device filled up (or had before they started): (journal id, device).
    pub(crate) full: Vec<(i64, u32)>,
    pub(crate) transfers_lowest: usize,
}

/// Runs every pending object of `journal` through the mover `pick` chooses for it (`None`:
/// not now, e.g. an object not yet placed on a device), `transfers` at a time or fewer while
/// the services push back. A fatal error stops the pass; a device that fills up does not: its
/// objects are handed back in [`Pass::full`], and the device is not written again this pass.
pub(crate) async fn run_pass(
    journal: &Arc<Mutex<Journal>>,
    transfers: usize,
    pick: impl Fn(&ObjectRow) -> Option<Arc<Mover>>,
) -> Result<Pass> {
    let stop: Arc<Mutex<Option<String>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let full_devices: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    // Page through the journal lazily: ids only grow, so a cursor never revisits an object
    // that failed in this pass.
    let pages = futures::stream::unfold((0i64, false), {
        let journal = journal.clone();
        let stopping = stopping.clone();
        move |(cursor, finished)| {
            let journal = journal.clone();
            let stopping = stopping.clone();
            async move {
                if finished || stopping.load(Ordering::Relaxed) {
                    return None;
                }
                let rows = journal.lock().expect("journal lock").todo(cursor, 512, i64::MAX);
                match rows {
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let next = rows.last().map(|r| r.id).unwrap_or(cursor);
                        Some((Ok(rows), (next, false)))
                    }
                    Err(e) => Some((Err(e), (cursor, true))),
                }
            }
        }
    });
    let mut journal_error = None;
    // At most `transfers` objects at once, fewer while the services push back.
    let throttles = ferry_providers::retries::throttles;
    let gate = Arc::new(Gate::new(transfers, throttles()));
    // Outcomes are folded as they come: memory stays flat however many objects the job has.
    let (copied, bytes, mut failures, full) = pages
        .filter_map(|page| {
            let keep = match page {
                Ok(rows) => Some(futures::stream::iter(rows)),
                Err(e) => {
                    journal_error = Some(e);
                    None
                }
            };
            async move { keep }
        })
        .flatten()
        .filter_map(|row| {
            let mover = pick(&row);
            async move { mover.map(|m| (row, m)) }
        })
        .map(|(row, mover)| {
            let gate = gate.clone();
            let stop = stop.clone();
            let stopping = stopping.clone();
            let full_devices = full_devices.clone();
            async move {
                if stopping.load(Ordering::Relaxed) {
                    return None;
                }
                let key = row.entry.key.clone();
                let device = row.route.device;
                if let Some(d) = device.filter(|d| full_devices.lock().expect("full lock").contains(d)) {
                    return Some((key, Outcome::Full(row.id, d)));
                }
                let slot = gate.enter(throttles()).await;
                let result = mover.copy_with_retries(&row).await;
                gate.leave(slot, throttles());
                let outcome = match (result, device) {
                    (Ok(copied), _) => Outcome::Done(copied),
                    (Err(e), Some(d)) if e.full => {
                        full_devices.lock().expect("full lock").insert(d);
                        Outcome::Full(row.id, d)
                    }
                    (Err(e), _) => {
                        if e.class == ErrorClass::Fatal {
                            stopping.store(true, Ordering::Relaxed);
                            stop.lock().expect("stop lock").get_or_insert_with(|| e.message.clone());
                        }
                        Outcome::Failed(e.message)
                    }
                };
                Some((key, outcome))
            }
        })
        .buffer_unordered(transfers.max(1))
        .filter_map(|r| async move { r })
        .fold((0u64, 0u64, Vec::new(), Vec::new()), |(copied, bytes, mut failures, mut full), (key, outcome)| async move {
            match outcome {
                // The size of the version copied, which a restart may have changed.
                Outcome::Done(size) => return (copied + 1, bytes + size, failures, full),
                Outcome::Failed(error) => failures.push(Failure { key, error }),
                Outcome::Full(id, device) => full.push((id, device)),
            }
            (copied, bytes, failures, full)
        })
        .await;
    if let Some(e) = journal_error {
        return Err(e.into());
    }
    failures.sort_by(|a, b| a.key.cmp(&b.key));
    let stopped_by = stop.lock().expect("stop lock").clone();
    Ok(Pass { copied, bytes, failures, stopped_by, full, transfers_lowest: gate.lowest() })
}

/// How one object of a pass ended.
enum Outcome {
    /// Copied, with the size of the version copied.
    Done(u64),
    Failed(String),
    /// Its device is full: (journal id, device).
    Full(i64, u32),
}
