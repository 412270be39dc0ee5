//! A listing in key order, whatever order it arrived in, with memory that does not grow with
//! the object count: an external merge sort over runs spilled to files in the job directory.
//!
//! Listings of S3 and GCS arrive in key order already; those are written straight to one run
//! and never sorted. A local disk's fanned-out walk does not: its entries are sorted in runs of
//! [`RUN_ENTRIES`] and merged when read. The sorted entries can be read more than once.

use ferry_core::ObjectEntry;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Entries held in memory before a run is sorted and spilled.
const RUN_ENTRIES: usize = 100_000;

/// Takes entries in any order; [`KeySorter::finish`] gives them back in key order.
pub(crate) struct KeySorter {
    dir: PathBuf,
    /// While every entry so far came in order, they go straight to the first run's file.
    straight: Option<BufWriter<File>>,
    last: Option<String>,
    held: Vec<ObjectEntry>,
    runs: Vec<PathBuf>,
    count: u64,
}

impl KeySorter {
    /// Spills into `dir`, which is made empty first (the remains of an interrupted sort).
    pub(crate) fn new(dir: &Path) -> std::io::Result<KeySorter> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let first = dir.join("run-0.jsonl");
        let straight = Some(BufWriter::new(File::create(&first)?));
        Ok(KeySorter { dir: dir.to_path_buf(), straight, last: None, held: Vec::new(), runs: vec![first], count: 0 })
    }

    pub(crate) fn push(&mut self, entry: ObjectEntry) -> std::io::Result<()> {
        self.count += 1;
        if let Some(out) = &mut self.straight {
            if self.last.as_deref().is_none_or(|last| last < entry.key.as_str()) {
                self.last = Some(entry.key.clone());
                return write_line(out, &entry);
            }
            // Out of order: the first run ends here, sorted; the rest is sorted in runs.
            self.straight.take().expect("a writer").flush()?;
        }
        self.held.push(entry);
        if self.held.len() >= RUN_ENTRIES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.held.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let path = self.dir.join(format!("run-{}.jsonl", self.runs.len()));
        let mut out = BufWriter::new(File::create(&path)?);
        for e in self.held.drain(..) {
            write_line(&mut out, &e)?;
        }
        out.flush()?;
        self.runs.push(path);
        Ok(())
    }

    /// Every entry pushed, sorted (its files are removed when it is dropped).
    pub(crate) fn finish(mut self) -> std::io::Result<Sorted> {
        if let Some(mut out) = self.straight.take() {
            out.flush()?;
        }
        self.spill()?;
        Ok(Sorted { dir: self.dir.clone(), runs: std::mem::take(&mut self.runs), count: self.count })
    }
}

fn write_line(out: &mut impl Write, e: &ObjectEntry) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    out.write_all(b"\n")
}

/// Sorted entries on disk.
pub(crate) struct Sorted {
    dir: PathBuf,
    runs: Vec<PathBuf>,
    /// How many entries were pushed (each read must give them all back).
    pub(crate) count: u64,
}

impl Sorted {
    /// The entries in key order. The iterator cannot fail: it ends at the first error it
    /// meets, which [`ReadError::take`] then gives, and the caller must check it (it also says
    /// when fewer entries came back than went in).
    pub(crate) fn entries(&self) -> std::io::Result<(Entries, ReadError)> {
        let error = ReadError { expected: self.count, ..ReadError::default() };
        let mut readers = Vec::with_capacity(self.runs.len());
        for path in &self.runs {
            readers.push(BufReader::new(File::open(path)?).lines());
        }
        let mut merged = Entries { readers, heads: BinaryHeap::new(), error: error.clone() };
        for i in 0..merged.readers.len() {
            merged.advance(i);
        }
        Ok((merged, error))
    }
}

impl Drop for Sorted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first error met reading sorted entries back, if any.
#[derive(Clone, Default)]
pub(crate) struct ReadError {
    first: Arc<Mutex<Option<std::io::Error>>>,
    given: Arc<std::sync::atomic::AtomicU64>,
    expected: u64,
}

impl ReadError {
    /// The error that ended the entries; or, once they were all read, an error when fewer came
    /// back than were pushed.
    pub(crate) fn take(&self) -> Option<std::io::Error> {
        let first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let given = self.given.load(std::sync::atomic::Ordering::Relaxed);
        first.or_else(|| {
            (given != self.expected).then(|| std::io::Error::other(format!("{given} sorted entries read back of {}", self.expected)))
        })
    }

    fn set(&self, e: std::io::Error) {
        self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
    }

    fn failed(&self) -> bool {
        self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }
}

/// A k-way merge of sorted runs.
pub(crate) struct Entries {
    readers: Vec<std::io::Lines<BufReader<File>>>,
    /// The next entry of each run not yet given, smallest key first.
    heads: BinaryHeap<Reverse<Head>>,
    error: ReadError,
}

struct Head {
    entry: ObjectEntry,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        (&self.entry.key, self.run) == (&other.entry.key, other.run)
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.entry.key, self.run).cmp(&(&other.entry.key, other.run))
    }
}

impl Entries {
    fn advance(&mut self, run: usize) {
        match self.readers[run].next() {
            None => {}
            Some(Ok(line)) => match serde_json::from_str::<ObjectEntry>(&line) {
                Ok(entry) => self.heads.push(Reverse(Head { entry, run })),
                Err(e) => self.error.set(e.into()),
            },
            Some(Err(e)) => self.error.set(e),
        }
    }
}

impl Iterator for Entries {
    type Item = ObjectEntry;

    fn next(&mut self) -> Option<ObjectEntry> {
        if self.error.failed() {
            return None;
        }
        let Reverse(Head { entry, run }) = self.heads.pop()?;
        self.advance(run);
        self.error.given.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry { key: key.into(), size: key.len() as u64, ..Default::default() }
    }

    fn sorted_keys(sorted: &Sorted) -> Vec<String> {
        let (entries, error) = sorted.entries().unwrap();
        let keys = entries.map(|e| e.key).collect();
        assert!(error.take().is_none());
        keys
    }

    #[test]
    fn keys_in_order_are_one_run_and_come_back_as_they_went_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = KeySorter::new(&dir.path().join("sort")).unwrap();
        for k in ["a", "b", "b/c", "z"] {
            sorter.push(entry(k)).unwrap();
        }
        let sorted = sorter.finish().unwrap();
        assert_eq!(sorted.runs.len(), 1);
        assert_eq!(sorted_keys(&sorted), ["a", "b", "b/c", "z"]);
        // A second read gives the same.
        assert_eq!(sorted_keys(&sorted), ["a", "b", "b/c", "z"]);
        let spill = dir.path().join("sort");
        drop(sorted);
        assert!(!spill.exists(), "the runs are removed with the sorted entries");
    }

    #[test]
    fn keys_out_of_order_across_many_runs_are_merged_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = KeySorter::new(&dir.path().join("sort")).unwrap();
        // Descending, so every entry after the first is out of order: 2.5 runs of them.
        let n = RUN_ENTRIES * 5 / 2;
        let mut want: Vec<String> = (0..n).map(|i| format!("k{:07}", n - i)).collect();
        want.push("é".into());
        want.push("Z".into());
        for k in &want {
            sorter.push(entry(k)).unwrap();
        }
        let sorted = sorter.finish().unwrap();
        assert!(sorted.runs.len() >= 3, "{} runs", sorted.runs.len());
        assert_eq!(sorted.count, want.len() as u64);
        want.sort();
        assert_eq!(sorted_keys(&sorted), want);
    }

    #[test]
    fn a_damaged_run_ends_the_entries_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = KeySorter::new(&dir.path().join("sort")).unwrap();
        for k in ["a", "b", "c"] {
            sorter.push(entry(k)).unwrap();
        }
        let sorted = sorter.finish().unwrap();
        let first = serde_json::to_string(&entry("a")).unwrap();
        std::fs::write(&sorted.runs[0], format!("{first}\nnot json\n")).unwrap();
        let (entries, error) = sorted.entries().unwrap();
        assert_eq!(entries.count(), 1);
        assert!(error.take().is_some());
    }
}
