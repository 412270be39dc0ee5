//! What a delta's merge is fed: the listing as it arrives, or a key-order spool of it.
//!
//! A source that lists in key order ([`Provider::lists_in_key_order`]: S3, GCS, Azure) is
//! listed by a task of its own while the journal's thread merges: pages go through a bounded
//! channel, the generation's manifest is written on the listing's side, and the two cores list
//! and merge at once. The merge checks the order as it reads; a key at or before the one before
//! it stops the merge (rolled back, nothing sealed) and the delta lists again through the
//! key-order spool. A listing that fails stops the merge too: keys after it would be taken as
//! gone.
//!
//! Any other source (a local disk's fanned-out walk) is listed whole into the spool first
//! (`key_order`), and the spool read back.

use super::marker_skipped;
use crate::key_order::ReadError;
use crate::{EngineError, Result, Stats};
use ferry_core::ObjectEntry;
use ferry_manifest::ManifestWriter;
use ferry_providers::Provider;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Pages of the listing between the listing task and the merge: enough to keep both busy,
/// few enough that memory does not grow with a slow merge (a page is ~1,000 entries).
const PAGES_IN_FLIGHT: usize = 8;

/// What stopped an arriving listing short.
pub(super) enum Stopped {
    /// The listing failed, or its manifest could not be written.
    Failed(EngineError),
    /// The source gave `key` at or before the key before it.
    OutOfOrder { key: String },
}

/// How an arriving listing ended (the first word is kept).
pub(super) enum Ended {
    /// Listed whole: its generation's manifest, to seal.
    Listed(Box<ManifestWriter>),
    Stopped(Stopped),
}

type Slot = Arc<Mutex<Option<Ended>>>;

fn set(slot: &Slot, ended: Ended) {
    slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(ended);
}

/// Where the merge's listing comes from, as the watch sees it at the end.
pub(super) enum Feed {
    Arriving {
        ended: Slot,
        /// Set when the listing stopped short: the merge stops at its next step.
        stopped: Arc<AtomicBool>,
    },
    Spooled {
        writer: Option<Box<ManifestWriter>>,
        read_error: ReadError,
        tmp: PathBuf,
    },
}

impl Feed {
    /// Whether the merge must stop now (what the listing gave so far is not the whole of it).
    pub(super) fn stopped(&self) -> bool {
        match self {
            Feed::Arriving { stopped, .. } => stopped.load(Ordering::Relaxed),
            Feed::Spooled { .. } => false,
        }
    }

    /// The generation's manifest once the whole listing was merged; `Ok(None)` when the merge
    /// must roll back for a reason the delta reads from the feed afterwards ([`Feed::end`]).
    pub(super) fn writer(&mut self) -> Result<Option<ManifestWriter>> {
        match self {
            Feed::Arriving { ended, .. } => {
                let mut ended = ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match ended.take() {
                    Some(Ended::Listed(writer)) => Ok(Some(*writer)),
                    Some(stopped) => {
                        *ended = Some(stopped);
                        Ok(None)
                    }
                    None => Err(EngineError::Io {
                        path: PathBuf::from("source listing"),
                        source: std::io::Error::other("the listing ended without a word"),
                    }),
                }
            }
            Feed::Spooled { writer, read_error, tmp } => {
                if let Some(e) = read_error.take() {
                    // Keys after the error would be taken as gone: nothing is merged but the whole listing.
                    return Err(EngineError::Io { path: tmp.clone(), source: e });
                }
                Ok(writer.take().map(|writer| *writer))
            }
        }
    }
}

/// The listing of `src` as the merge reads it, its feed, and the task listing it (aborted when
/// dropped).
pub(super) fn arriving(src: Arc<dyn Provider>, writer: ManifestWriter, stats: Arc<Stats>) -> (Arriving, Feed, Lister) {
    let (pages, rx) = tokio::sync::mpsc::channel(PAGES_IN_FLIGHT);
    let ended: Slot = Arc::default();
    let stopped = Arc::new(AtomicBool::new(false));
    let task = {
        let (ended, stopped) = (ended.clone(), stopped.clone());
        tokio::spawn(async move {
            let end = list(src.as_ref(), writer, &pages, &stats).await;
            if let Some(end) = end {
                if !matches!(end, Ended::Listed(_)) {
                    stopped.store(true, Ordering::Relaxed);
                }
                set(&ended, end);
            }
            // Only now does the merge see the listing's end: its word is there before.
            drop(pages);
        })
    };
    let listing = Arriving {
        pages: rx,
        page: Vec::new().into_iter(),
        last: String::new(),
        any: false,
        ended: ended.clone(),
        stopped: stopped.clone(),
    };
    let lister = Lister { task, ended: ended.clone() };
    (listing, Feed::Arriving { ended, stopped }, lister)
}

/// Lists `src` into `writer` and the channel; `None` when the merge stopped reading.
async fn list(
    src: &dyn Provider,
    mut writer: ManifestWriter,
    pages: &tokio::sync::mpsc::Sender<Vec<ObjectEntry>>,
    stats: &Stats,
) -> Option<Ended> {
    let mut listing = src.list();
    while let Some(page) = listing.next().await {
        let page = match page {
            Ok(page) => page,
            Err(source) => return Some(Ended::Stopped(Stopped::Failed(EngineError::Provider { side: "source", source }))),
        };
        Stats::add(&stats.listed, page.len() as u64);
        let page: Vec<ObjectEntry> = page.into_iter().map(marker_skipped).collect();
        for entry in &page {
            if let Err(e) = writer.push(entry) {
                return Some(Ended::Stopped(Stopped::Failed(e.into())));
            }
        }
        pages.send(page).await.ok()?;
    }
    Some(Ended::Listed(Box::new(writer)))
}

/// The task listing the source; aborted when dropped (the delta ended or was cancelled).
pub(super) struct Lister {
    task: tokio::task::JoinHandle<()>,
    ended: Slot,
}

impl Lister {
    /// What stopped the listing, once the merge is over (`None`: nothing did).
    pub(super) fn end(&self) -> Option<Stopped> {
        let mut ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match ended.take() {
            Some(Ended::Stopped(stopped)) => Some(stopped),
            listed => {
                *ended = listed;
                None
            }
        }
    }
}

impl Drop for Lister {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listing's entries as they arrive, checked to be in key order.
pub(super) struct Arriving {
    pages: tokio::sync::mpsc::Receiver<Vec<ObjectEntry>>,
    page: std::vec::IntoIter<ObjectEntry>,
    /// The key before (when `any`), its buffer reused.
    last: String,
    any: bool,
    ended: Slot,
    stopped: Arc<AtomicBool>,
}

impl Iterator for Arriving {
    type Item = ObjectEntry;

    /// Blocks for the next page: called on the journal's thread, never the runtime's.
    fn next(&mut self) -> Option<ObjectEntry> {
        loop {
            if let Some(entry) = self.page.next() {
                if self.any && self.last.as_str() >= entry.key.as_str() {
                    set(&self.ended, Ended::Stopped(Stopped::OutOfOrder { key: entry.key }));
                    self.stopped.store(true, Ordering::Relaxed);
                    self.pages.close();
                    return None;
                }
                self.last.clear();
                self.last.push_str(&entry.key);
                self.any = true;
                return Some(entry);
            }
            self.page = self.pages.blocking_recv()?.into_iter();
        }
    }
}
