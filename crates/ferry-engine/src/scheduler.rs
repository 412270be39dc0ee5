//! The scheduler: one pass over the journal's pending objects, claimed from the journal in
//! batches (leased to this process until their outcome is journaled), each handed to the mover
//! its route picks, `--transfers` at a time or fewer while the services push back. A fatal error
//! stops the pass early. Copy, export and ingest each run passes through it.
//!
//! The scheduler knows nothing of where objects go: a [`Router`] the command supplies picks each
//! object's mover and says which routes are closed (a disk export closes a device that fills
//! up; the objects it did not take come back in [`Pass::handed_back`] to be placed again).

use crate::concurrency::Gate;
use crate::mover::{Budget, Mover, ObjectError};
use crate::options::{CopyOptions, Failure};
use crate::{Result, Stats};
use ferry_core::{ErrorClass, FailureKind};
use ferry_journal::{Clock, Journal, ObjectRow, RunId, RunKind};
use ferry_providers::RunContext;
use futures::stream::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a run's movers share: the journal and the run's tag in its write ledger, the memory
/// budget (part buffers are recycled in the run's pool; the free ones kept are bounded by the
/// same budget), the counters, and the run's context.
pub(crate) struct Shared {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) run_id: RunId,
    pub(crate) budget: Budget,
    pub(crate) stats: Arc<Stats>,
    pub(crate) run: Arc<RunContext>,
}

/// Starts a run of `kind` in the journal (its writes are tagged with it) and sets up what its
/// movers share.
pub(crate) async fn shared(
    journal: Arc<dyn Journal>,
    kind: RunKind,
    generation: u32,
    opts: &CopyOptions,
    stats: &Arc<Stats>,
    run: &Arc<RunContext>,
) -> Result<Shared> {
    let run_id = journal.begin_run(kind, generation).await?;
    run.buffers().set_limit(usize::try_from(opts.max_memory).unwrap_or(usize::MAX));
    Ok(Shared { journal, run_id, budget: Budget::new(opts.max_memory), stats: stats.clone(), run: run.clone() })
}

/// Which mover takes each object, and which routes are closed: asked by the scheduler,
/// answered by the command (copy: one mover; export and ingest: one per device).
pub(crate) trait Router: Sync {
    /// The mover for `row`; `None`: not in this pass (e.g. an object not yet placed on a device).
    fn mover(&self, row: &ObjectRow) -> Option<Arc<Mover>>;

    /// Whether `row`'s route is closed: the object is handed back untried.
    fn closed(&self, _row: &ObjectRow) -> bool {
        false
    }

    /// `row` failed with `error`: whether that closes its route, so the object is handed back
    /// rather than failed (and the route's other objects are not tried this pass).
    fn close_on(&self, _row: &ObjectRow, _error: &ObjectError) -> bool {
        false
    }
}

/// Every object through one mover, no route ever closed.
pub(crate) struct OneMover(pub(crate) Arc<Mover>);

impl Router for OneMover {
    fn mover(&self, _row: &ObjectRow) -> Option<Arc<Mover>> {
        Some(self.0.clone())
    }
}

/// What one pass over the journal's pending objects did.
pub(crate) struct Pass {
    pub(crate) copied: u64,
    pub(crate) bytes: u64,
    /// In key order.
    pub(crate) failures: Vec<Failure>,
    /// A fatal error that stopped the pass early.
    pub(crate) stopped_by: Option<String>,
    /// Objects whose route closed (before they started, or by their own failure), by journal
    /// id: neither copied nor failed.
    pub(crate) handed_back: Vec<i64>,
    pub(crate) transfers_lowest: usize,
}

/// Runs every pending object of `journal` through the mover `router` picks for it,
/// `transfers` at a time or fewer while the services push back (throttling answers the run's
/// retry layer counted). A fatal error stops the pass; a
/// route that closes does not: its objects are handed back in [`Pass::handed_back`].
pub(crate) async fn run_pass(
    journal: &Arc<dyn Journal>,
    transfers: usize,
    run: &ferry_providers::RunContext,
    router: &dyn Router,
) -> Result<Pass> {
    let stop: Arc<Mutex<Option<String>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    // This process holds the job's lock, so no other worker is alive: a lease still held is a
    // killed run's, and its objects are work again.
    journal.release_leases().await?;
    let worker = journal.begin_pass(&format!("ferry-{}", std::process::id())).await?;
    let clock = Clock::new();
    // Objects are claimed lazily, a batch at a time. A pass never hands out an object twice, so
    // one that failed in it is not tried again until the next pass. Those no mover takes now
    // are given back at once.
    let pages = futures::stream::unfold(false, |finished| {
        let (journal, stopping, worker) = (journal.clone(), stopping.clone(), &worker);
        async move {
            if finished || stopping.load(Ordering::Relaxed) {
                return None;
            }
            let claimed = match journal.claim(worker, CLAIM_BATCH, clock.lease(LEASE)).await {
                Ok(rows) if rows.is_empty() => return None,
                Ok(rows) => rows,
                Err(e) => return Some((Err(e), true)),
            };
            let (mut taken, mut untaken) = (Vec::with_capacity(claimed.len()), Vec::new());
            for row in claimed {
                match router.mover(&row) {
                    Some(mover) => taken.push((row, mover)),
                    None => untaken.push(row.id),
                }
            }
            if let Err(e) = journal.release(&untaken).await {
                return Some((Err(e), true));
            }
            Some((Ok(in_order(taken)), false))
        }
    });
    let mut journal_error = None;
    // At most `transfers` objects at once, fewer while the services push back.
    // Every throttling answer passes the providers' one retry layer, which counts it.
    let throttles = || run.retries().throttles();
    let gate = Arc::new(Gate::new(transfers, throttles()));
    // Outcomes are folded as they come: memory stays flat however many objects the job has.
    let (copied, bytes, mut failures, handed_back, mut unrun) = pages
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
        .map(|group| {
            let gate = gate.clone();
            let stop = stop.clone();
            let stopping = stopping.clone();
            async move {
                let mut outcomes = Vec::with_capacity(group.len());
                // A group's objects run one after the other; once one does not finish, the
                // versions after it wait for a later pass (written after it, never before).
                let mut held = false;
                for (row, mover) in group {
                    let key = row.entry.key.clone();
                    if held || stopping.load(Ordering::Relaxed) {
                        outcomes.push((key, Outcome::NotRun(row.id)));
                        continue;
                    }
                    if router.closed(&row) {
                        held = true;
                        outcomes.push((key, Outcome::HandedBack(row.id)));
                        continue;
                    }
                    let slot = gate.enter(throttles()).await;
                    let result = mover.copy_with_retries(&row).await;
                    gate.leave(slot, throttles());
                    let outcome = match result {
                        Ok(copied) => Outcome::Done(copied),
                        Err(e) if router.close_on(&row, &e) => Outcome::HandedBack(row.id),
                        Err(e) => {
                            if e.class == ErrorClass::Fatal {
                                stopping.store(true, Ordering::Relaxed);
                                stop.lock().expect("stop lock").get_or_insert_with(|| e.message.clone());
                            }
                            Outcome::Failed(e.kind, e.message)
                        }
                    };
                    held = !matches!(outcome, Outcome::Done(_));
                    outcomes.push((key, outcome));
                }
                futures::stream::iter(outcomes)
            }
        })
        .buffer_unordered(transfers.max(1))
        .flatten()
        .fold(
            (0u64, 0u64, Vec::new(), Vec::new(), Vec::new()),
            |(copied, bytes, mut failures, mut handed_back, mut unrun), (key, outcome)| async move {
                match outcome {
                    // The size of the version copied, which a restart may have changed.
                    Outcome::Done(size) => return (copied + 1, bytes + size, failures, handed_back, unrun),
                    Outcome::Failed(kind, error) => failures.push(Failure { key, kind, error }),
                    Outcome::HandedBack(id) => handed_back.push(id),
                    Outcome::NotRun(id) => unrun.push(id),
                }
                (copied, bytes, failures, handed_back, unrun)
            },
        )
        .await;
    if let Some(e) = journal_error {
        return Err(e.into());
    }
    // Claimed and not finished: handed back, or left untried by a stop. The release also
    // commits the last outcomes the journal queued, so the pass ends with all of them on record.
    unrun.extend(&handed_back);
    journal.release(&unrun).await?;
    failures.sort_by(|a, b| a.key.cmp(&b.key));
    let stopped_by = stop.lock().expect("stop lock").clone();
    Ok(Pass { copied, bytes, failures, stopped_by, handed_back, transfers_lowest: gate.lowest() })
}

/// A claimed page as the units the pass runs: each object alone, except the versions of one key
/// (pinned rows, `--all-versions`), which the journal hands out together and oldest first, and
/// which run as one unit in that order, so the destination's versions come in the source's.
fn in_order(taken: Vec<(ObjectRow, Arc<Mover>)>) -> Vec<Vec<(ObjectRow, Arc<Mover>)>> {
    let mut groups: Vec<Vec<(ObjectRow, Arc<Mover>)>> = Vec::with_capacity(taken.len());
    for (row, mover) in taken {
        match groups.last_mut() {
            Some(last) if row.entry.pinned && last[0].0.entry.pinned && last[0].0.entry.key == row.entry.key => last.push((row, mover)),
            _ => groups.push(vec![(row, mover)]),
        }
    }
    groups
}

/// How one object of a pass ended.
enum Outcome {
    /// Copied, with the size of the version copied.
    Done(u64),
    Failed(FailureKind, String),
    /// Its route closed: its journal id.
    HandedBack(i64),
    /// Claimed, not tried: the pass was stopping. Its journal id.
    NotRun(i64),
}

/// Objects claimed at a time: enough to keep `--transfers` busy between claims.
const CLAIM_BATCH: usize = 512;
/// How long a claim holds. A run renews none: one process works alone on a job (it holds the
/// job's lock) and releases a killed run's leases when it starts, so expiry only matters to a
/// worker sharing the journal.
const LEASE: std::time::Duration = std::time::Duration::from_secs(3600);
