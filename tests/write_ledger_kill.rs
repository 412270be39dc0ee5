//! A copy SIGKILLed mid-write leaves write ledger rows begun and never finished; the resumed run
//! takes each over — the same row, now tagged with the resumed run — keeping the state the
//! destination had before ferry's first try (issue 13; the ledger's unit tests in
//! ferry-journal cover the take-over itself, this the whole way through the binary).

mod common;

use common::{ferry_command, ferry_ok};
use ferry_journal::{Prior, WriteRow};
use ferry_testkit::S3Server;
use ferry_testkit::tree::write_tree;
use std::collections::BTreeMap;
use std::path::Path;

fn ledger(job: &Path) -> Vec<WriteRow> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let journal = ferry_journal::open(job, ferry_journal::JournalKind::Main).await.unwrap();
        journal.writes(None, 0, 10_000).await.unwrap()
    })
}

#[test]
fn a_write_cut_off_by_a_kill_is_taken_over_by_the_resumed_run_with_its_first_prior_state() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Every key already at the destination (smaller), so each row's prior state is "present".
    let files: Vec<(String, usize)> = (0..40).map(|i| (format!("f{i:02}.bin"), 48 << 10)).collect();
    let before: Vec<(String, usize)> = files.iter().map(|(k, _)| (k.clone(), 3)).collect();
    write_tree(&w.join("src"), &files);
    write_tree(&w.join("before"), &before);
    let s3 = S3Server::start();
    s3.create_bucket("kill");
    let env = s3.env();
    ferry_ok(w, &["copy", "before", "s3://kill/d", "--job", "j0", "--dst-endpoint", &s3.endpoint], &env, 0);

    // Slow writes (a few each second, four at once), so a kill lands while some are in flight:
    // their ledger rows are begun and not finished.
    let args = ["copy", "src", "s3://kill/d", "--job", "j1", "--dst-endpoint", &s3.endpoint, "--transfers", "4", "--bwlimit", "256KiB"];
    let mut cut_off: Vec<WriteRow> = Vec::new();
    for _ in 0..5 {
        let mut child =
            ferry_command(w, &args, &env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        // Killed once the ledger shows writes begun: polled, never a fixed delay.
        let mut begun = false;
        for _ in 0..3000 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if w.join("j1/journal.sqlite").exists() && ledger(&w.join("j1")).iter().any(|r| r.wrote.is_none()) {
                begun = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        cut_off = ledger(&w.join("j1")).into_iter().filter(|r| r.wrote.is_none()).collect();
        if begun && !cut_off.is_empty() {
            break;
        }
    }
    assert!(!cut_off.is_empty(), "no kill landed with a write in flight");
    for row in &cut_off {
        assert!(matches!(row.prior, Prior::Present { size: 3, .. }), "the first try recorded what was there: {row:?}");
    }

    let summary = ferry_ok(w, &["copy", "--job", "j1", "--json"], &env, 0).json();
    assert_eq!(summary["failed"], 0, "{summary}");
    let rows = ledger(&w.join("j1"));
    let by_id: BTreeMap<i64, &WriteRow> = rows.iter().map(|r| (r.id, r)).collect();
    let last_run = rows.iter().map(|r| r.run).max().unwrap();
    for before in &cut_off {
        let after = by_id[&before.id];
        assert_eq!((after.key.as_str(), after.run), (before.key.as_str(), last_run), "taken over by the resumed run: {after:?}");
        assert_eq!(after.prior, before.prior, "{}: keeps the state before ferry's first try", before.key);
        assert_eq!(after.wrote.as_ref().map(|w| w.size), Some(48 << 10), "{after:?}");
    }
    // One row per object written, whatever the kills cut off.
    let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "one row per key: {rows:#?}");
    assert!(rows.iter().all(|r| r.wrote.is_some()), "every write finished");
}
