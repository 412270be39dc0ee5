use super::*;
use std::time::Duration;

fn routed(key: &str, size: u64, dst_path: &str) -> RoutedEntry {
    let entry = ObjectEntry { key: key.into(), size, ..Default::default() };
    RoutedEntry { entry, route: Route { dst_path: Some(dst_path.into()), ..Route::default() }, refused: None, renamed: None }
}

fn entries(n: usize) -> Vec<ObjectEntry> {
    (0..n).map(|i| ObjectEntry { key: format!("k{i}"), size: i as u64, ..Default::default() }).collect()
}

fn outcome() -> Outcome {
    Outcome {
        copied: Checksums { sha256: Some("s".into()), crc32c: Some("c".into()), ..Checksums::default() },
        dst_etag: Some("e".into()),
        verified_by: Evidence::SizeOnly,
        src_attrs: None,
    }
}

fn keys(rows: &[ObjectRow]) -> Vec<&str> {
    rows.iter().map(|r| r.entry.key.as_str()).collect()
}

/// A journal as an older ferry made it: `columns` of `objects` dropped, `version` recorded.
async fn older_journal(path: &Path, columns: &[&str], version: &str) {
    let j = SqliteJournal::open(path).unwrap();
    j.seed(1, &entries(3)).await.unwrap();
    j.0.conn().execute_batch("DROP INDEX IF EXISTS objects_leased; DROP INDEX IF EXISTS objects_id").unwrap();
    for name in columns {
        j.0.conn().execute_batch(&format!("ALTER TABLE objects DROP COLUMN {name}")).unwrap();
    }
    j.set_meta("schema_version", version).await.unwrap();
}

const V4_COLUMNS: [&str; 3] = ["lease_owner", "lease_until", "claim_pass"];

#[tokio::test]
async fn a_version_1_journal_gains_the_route_columns_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let v2 = ["device", "src_path", "dst_path", "src_crc64", "expect_sha256", "crc64nvme", "renamed", "last_modified"];
    older_journal(&path, &[&v2[..], &V4_COLUMNS[..]].concat(), "1").await;
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.meta("schema_version").await.unwrap(), Some(SCHEMA_VERSION.to_string()));
    assert_eq!(j.counts().await.unwrap().objects, 3);
    assert_eq!(j.get("k1").await.unwrap().unwrap().route, Route::default());
}

// Issue 12, case 22: `renamed` was added to the schema without a migration, so an export
// journal made before it failed "no such column: renamed".
#[tokio::test]
async fn case_22_a_version_2_journal_without_renamed_opens_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    older_journal(&path, &["renamed", "last_modified", "lease_owner", "lease_until", "claim_pass"], "2").await;
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.meta("schema_version").await.unwrap(), Some(SCHEMA_VERSION.to_string()));
    // What an export and `status` do with it.
    j.seed_routed(1, &[RoutedEntry { renamed: Some("too long".into()), ..routed("r", 1, "x/r") }]).await.unwrap();
    assert_eq!(j.renamed_count().await.unwrap(), 1);
    assert_eq!(j.noted("", 10).await.unwrap()[0].renamed.as_deref(), Some("too long"));
    assert_eq!(j.counts().await.unwrap().objects, 4);
    assert!(j.page(0, 10).await.unwrap().iter().all(|r| r.note.is_none()));

    // A journal of a newer ferry is refused, not changed.
    let newer = SCHEMA_VERSION + 1;
    j.set_meta("schema_version", &newer.to_string()).await.unwrap();
    drop(j);
    assert!(matches!(SqliteJournal::open(&path), Err(JournalError::Version { found, .. }) if found == newer));
}

// Issue 13: a version 3 journal (the release before claims) with work in every state is
// migrated: its rows keep their states and its pending and failed objects are claimable.
#[tokio::test]
async fn a_version_3_journal_is_migrated_and_its_work_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    older_journal(&path, &V4_COLUMNS, "3").await;
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE objects SET state = 'done' WHERE key = 'k0'; UPDATE objects SET state = 'failed', attempts = 1 WHERE key = 'k1';",
        )
        .unwrap();
    }
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.meta("schema_version").await.unwrap(), Some(SCHEMA_VERSION.to_string()));
    let w = j.begin_pass("w").await.unwrap();
    let claimed = j.claim(&w, 10, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap();
    assert_eq!(keys(&claimed), ["k1", "k2"]);
    // The write ledger is there for the next run.
    let run = j.begin_run(RunKind::Copy, 1).await.unwrap();
    let intent = Intent { object: claimed[0].id, target: "s3://b/", key: "k1", op: WriteOp::Put, prior: &Prior::Absent, seen: Seen::Head };
    let row = j.begin_write(run, &intent).await.unwrap();
    assert_eq!(j.writes(Some(run), 0, 10).await.unwrap().iter().map(|w| w.id).collect::<Vec<_>>(), [row]);
    assert_eq!(claimed[0].state, ObjectState::Failed);
    assert_eq!(j.get("k0").await.unwrap().unwrap().state, ObjectState::Done);
}

#[tokio::test]
async fn every_column_of_the_schema_is_added_to_a_journal_missing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let fresh = Connection::open_in_memory().unwrap();
    fresh.execute_batch(SCHEMA).unwrap();
    let all: Vec<String> = table_info(&fresh, "objects").unwrap().into_iter().map(|c| c.0).collect();
    // Every column a journal could lack (not the key, the primary key or the state the
    // table was created with).
    let droppable: Vec<&str> =
        all.iter().map(String::as_str).filter(|c| !["id", "generation", "key", "size", "state", "attempts"].contains(c)).collect();
    older_journal(&path, &droppable, "1").await;
    let j = SqliteJournal::open(&path).unwrap();
    let now: Vec<String> = table_info(&j.0.conn(), "objects").unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(now.iter().collect::<std::collections::BTreeSet<_>>(), all.iter().collect());
    assert_eq!(j.possible_orphans().await.unwrap(), 0, "NOT NULL DEFAULT columns get their default");
}

// Issue 12, case 19: the upload id journaled before an upload is created must be on disk
// before the destination holds the upload; other commits stay group-committed.
#[tokio::test]
async fn case_19_a_durable_write_leaves_the_connection_group_committing() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(2)).await.unwrap();
    let sync = |j: &SqliteJournal| j.0.conn().pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(sync(&j), 1, "NORMAL");
    let id = j.get("k1").await.unwrap().unwrap().id;
    j.set_upload(id, Some("u"), 8).await.unwrap();
    assert_eq!(sync(&j), 1, "back to NORMAL after the durable write");
    j.place_all(&[(id, 0)]).await.unwrap();
    assert_eq!(sync(&j), 1);
    assert_eq!(j.upload_of(id).await.unwrap(), Some(("u".to_string(), 8)));
    assert_eq!(j.get("k1").await.unwrap().unwrap().route.device, Some(0));
}

#[tokio::test]
async fn routed_objects_conflict_as_file_and_folder_or_by_case_and_pack_largest_first() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let rows = [routed("a", 5, "x/a"), routed("a/b", 7, "x/a/b"), routed("a.txt", 9, "x/a.txt"), routed("A.TXT", 1, "x/A.TXT")];
    j.seed_routed(1, &rows).await.unwrap();
    j.index_routes().await.unwrap();
    let conflicts = |fold| {
        let j = j.clone();
        async move { j.path_conflicts(fold).await.unwrap().into_iter().map(|(_, k, _)| k).collect::<Vec<_>>() }
    };
    assert_eq!(conflicts(false).await, ["a"], "a is a file and a folder; a.txt sorts between them and is no conflict");
    assert_eq!(conflicts(true).await, ["a", "A.TXT"]);
    let order: Vec<u64> = j.unplaced(None, 2).await.unwrap().into_iter().map(|(_, s)| s).collect();
    assert_eq!(order, [9, 7]);
    let (id, size) = j.unplaced(None, 2).await.unwrap()[1];
    assert_eq!(j.unplaced(Some((size, id)), 10).await.unwrap().iter().map(|(_, s)| *s).collect::<Vec<_>>(), [5, 1]);
}

// Issue 12, case 4: entries a listing met but does not copy are recorded, not dropped.
#[tokio::test]
async fn skipped_entries_are_recorded_with_their_reason_and_never_handed_out_as_work() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let mut batch = entries(3);
    batch.push(ObjectEntry::skipped("link".into(), SkipReason::Symlink));
    batch.push(ObjectEntry::skipped("pipe".into(), SkipReason::Fifo));
    batch.push(ObjectEntry::skipped("pipe2".into(), SkipReason::Fifo));
    j.seed(1, &batch).await.unwrap();
    let c = j.counts().await.unwrap();
    assert_eq!((c.objects, c.pending, c.skipped), (3, 3, 3));
    let w = j.begin_pass("w").await.unwrap();
    let claimed = j.claim(&w, 100, Clock::new().lease(Duration::from_secs(60))).await.unwrap();
    assert_eq!(keys(&claimed), ["k0", "k1", "k2"]);
    let by: Vec<_> = j.skipped_by_reason().await.unwrap().into_iter().collect();
    assert_eq!(by, [(SkipReason::Symlink, 1), (SkipReason::Fifo, 2)]);
    let rows = j.skipped(0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|(_, k, r)| (k.as_str(), *r)).collect::<Vec<_>>(),
        [("link", SkipReason::Symlink), ("pipe", SkipReason::Fifo), ("pipe2", SkipReason::Fifo)]
    );
    assert_eq!(j.get("pipe").await.unwrap().unwrap().entry.skipped, Some(SkipReason::Fifo));
    assert_eq!(j.get("pipe").await.unwrap().unwrap().state, ObjectState::Skipped);
}

#[tokio::test]
async fn seeding_is_idempotent_and_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let j = SqliteJournal::open(&path).unwrap();
    j.seed(1, &entries(10)).await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    let lease = Lease { now: 0, ttl: Duration::from_secs(60) };
    let first = j.claim(&w, 3, lease).await.unwrap();
    assert_eq!(keys(&first), ["k0", "k1", "k2"]);
    j.mark_done(first[0].id, &outcome()).await.unwrap();
    j.mark_failed(first[1].id, "boom").await.unwrap();
    j.seed(1, &entries(10)).await.unwrap(); // replay
    drop(j);

    let j = SqliteJournal::open(&path).unwrap();
    let c = j.counts().await.unwrap();
    assert_eq!((c.objects, c.done, c.failed, c.pending), (10, 1, 1, 8));
    let done = j.get("k0").await.unwrap().unwrap();
    assert_eq!(done.copied.sha256.as_deref(), Some("s"));
    assert_eq!(done.verified_by, Some(Evidence::SizeOnly), "stored by name, read back as the value");
    assert_eq!(j.in_state(ObjectState::Failed, 0, 10).await.unwrap()[0].error.as_deref(), Some("boom"));
    // The next pass (after the leases of a killed run are let go) has the failed one and the rest.
    assert_eq!(j.release_leases().await.unwrap(), 1, "k2 was still leased");
    let w = j.begin_pass("w").await.unwrap();
    assert_eq!(j.claim(&w, 100, lease).await.unwrap().len(), 9);
}

// Issue 13: claims with leases replace cursor paging.
#[tokio::test]
async fn two_workers_claim_distinct_objects() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(5)).await.unwrap();
    let clock = Clock::new();
    let (a, b) = (j.begin_pass("a").await.unwrap(), j.begin_pass("b").await.unwrap());
    assert_ne!(a.pass, b.pass);
    let got_a = j.claim(&a, 2, clock.lease(Duration::from_secs(30))).await.unwrap();
    let got_b = j.claim(&b, 10, clock.lease(Duration::from_secs(30))).await.unwrap();
    assert_eq!(keys(&got_a), ["k0", "k1"]);
    assert_eq!(keys(&got_b), ["k2", "k3", "k4"]);
    assert!(j.claim(&a, 10, clock.lease(Duration::from_secs(30))).await.unwrap().is_empty(), "everything is leased");
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_makes_its_objects_claimable_again() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(3)).await.unwrap();
    let clock = Clock::new();
    let ttl = Duration::from_secs(30);
    let (a, b) = (j.begin_pass("a").await.unwrap(), j.begin_pass("b").await.unwrap());
    let got_a = j.claim(&a, 2, clock.lease(ttl)).await.unwrap();
    assert_eq!(keys(&got_a), ["k0", "k1"]);
    j.mark_done(got_a[0].id, &outcome()).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(keys(&j.claim(&b, 10, clock.lease(ttl)).await.unwrap()), ["k2"], "a's lease on k1 holds");
    tokio::time::advance(Duration::from_secs(2)).await;
    let taken = j.claim(&b, 10, clock.lease(ttl)).await.unwrap();
    assert_eq!(keys(&taken), ["k1"], "a's lease ran out; k0 is done and stays done");
    j.mark_done(taken[0].id, &outcome()).await.unwrap();
    assert_eq!(j.counts().await.unwrap().done, 2);
    // A worker never gets back what its pass claimed, even on an expired lease.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(j.claim(&b, 10, clock.lease(ttl)).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn done_and_failed_release_their_lease_and_a_failure_waits_for_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(4)).await.unwrap();
    let clock = Clock::new();
    let ttl = Duration::from_secs(30);
    let w = j.begin_pass("w").await.unwrap();
    let got = j.claim(&w, 2, clock.lease(ttl)).await.unwrap();
    let leased = |key: &'static str| {
        let j = j.clone();
        async move { j.0.conn().query_row("SELECT lease_until FROM objects WHERE key = ?1", [key], |r| r.get::<_, Option<i64>>(0)).unwrap() }
    };
    assert_eq!(leased("k0").await, Some(clock.now() + 30_000));
    j.mark_done(got[0].id, &outcome()).await.unwrap();
    j.mark_failed(got[1].id, "boom").await.unwrap();
    assert_eq!((leased("k0").await, leased("k1").await), (None, None));
    // Released without an outcome: not handed out again in this pass either.
    let rest = j.claim(&w, 10, clock.lease(ttl)).await.unwrap();
    assert_eq!(keys(&rest), ["k2", "k3"]);
    j.release(&[rest[0].id]).await.unwrap();
    assert_eq!(leased("k2").await, None);
    j.mark_done(rest[1].id, &outcome()).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(j.claim(&w, 10, clock.lease(ttl)).await.unwrap().is_empty(), "k1 failed and k2 was released in this pass");
    // Another worker, or the next pass, takes both.
    let next = j.begin_pass("w").await.unwrap();
    assert_eq!(keys(&j.claim(&next, 10, clock.lease(ttl)).await.unwrap()), ["k1", "k2"]);
}

#[tokio::test]
async fn claims_walk_the_pass_in_id_order_across_pending_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(6)).await.unwrap();
    let lease = Lease { now: 0, ttl: Duration::from_secs(60) };
    let w = j.begin_pass("w").await.unwrap();
    for r in j.claim(&w, 6, lease).await.unwrap() {
        if r.id % 2 == 0 {
            j.mark_failed(r.id, "x").await.unwrap();
        }
    }
    j.release_leases().await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    let mut order = Vec::new();
    loop {
        let got = j.claim(&w, 2, lease).await.unwrap();
        if got.is_empty() {
            break;
        }
        for r in got {
            order.push(r.entry.key.clone());
            j.mark_failed(r.id, "again").await.unwrap();
        }
    }
    assert_eq!(order, ["k0", "k1", "k2", "k3", "k4", "k5"], "each once, in id order");
}

// Issue 13: generations. Each case of a later generation's merge, and a replay.
#[tokio::test]
async fn seeding_a_later_generation_marks_objects_added_changed_deleted_or_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let gen1: Vec<ObjectEntry> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| ObjectEntry { key: k.to_string(), size: 1, etag: Some(format!("{k}1")), ..Default::default() })
        .collect();
    j.seed(1, &gen1).await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    for r in j.claim(&w, 10, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap() {
        j.mark_done(r.id, &outcome()).await.unwrap();
    }
    // Generation 2: a unchanged, b changed (new etag), c deleted, d unchanged, e added.
    let mut gen2 = gen1.clone();
    gen2[1].etag = Some("b2".into());
    gen2.remove(2);
    gen2.push(ObjectEntry { key: "e".into(), size: 7, ..Default::default() });
    let delta = j.seed_generation(2, Box::new(gen2.clone().into_iter())).await.unwrap();
    assert_eq!(delta, GenerationDelta { added: 1, changed: 1, deleted: 1, unchanged: 2, touched: 0, returned: 0 });
    let row = |k: &'static str| {
        let j = j.clone();
        async move { j.get(k).await.unwrap().unwrap() }
    };
    assert_eq!((row("a").await.state, row("a").await.generation), (ObjectState::Done, 1));
    let b = row("b").await;
    assert_eq!((b.state, b.generation, b.entry.etag.as_deref(), b.copied.sha256), (ObjectState::Pending, 2, Some("b2"), None));
    assert_eq!((row("c").await.state, row("c").await.generation), (ObjectState::PendingDelete, 2));
    assert_eq!((row("e").await.state, row("e").await.generation), (ObjectState::Pending, 2));
    let c = j.counts().await.unwrap();
    assert_eq!((c.objects, c.done, c.pending, c.pending_delete), (4, 2, 2, 1));

    // The same generation again changes nothing; nor does today's seed replaying it.
    let again = j.seed_generation(2, Box::new(gen2.clone().into_iter())).await.unwrap();
    assert_eq!(
        again,
        GenerationDelta { added: 0, changed: 0, deleted: 0, unchanged: 4, touched: 0, returned: 0 },
        "a key gone already is not counted"
    );
    j.seed(2, &gen2).await.unwrap();
    assert_eq!(j.counts().await.unwrap(), c);
    // A key whose delete is pending and that comes back as it was copied is done again (the
    // destination still holds the copy); b changed back, e is gone.
    let gen3 = gen1.clone();
    let back = j.seed_generation(3, Box::new(gen3.into_iter())).await.unwrap();
    assert_eq!((back.changed, back.deleted, back.returned), (1, 1, 1), "{back:?}");
    assert_eq!(row("c").await.state, ObjectState::Done);
}

#[tokio::test]
async fn a_generation_merge_pages_through_more_rows_than_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let gen1: Vec<ObjectEntry> = (0..2500).map(|i| ObjectEntry { key: format!("k{i:05}"), size: 1, ..Default::default() }).collect();
    j.seed(1, &gen1).await.unwrap();
    // Every third key dropped, and new keys between the old ones.
    let mut gen2: Vec<ObjectEntry> = gen1.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, e)| e.clone()).collect();
    gen2.extend((0..2500).step_by(5).map(|i| ObjectEntry { key: format!("k{i:05}x"), size: 2, ..Default::default() }));
    gen2.sort_by(|a, b| a.key.cmp(&b.key));
    let delta = j.seed_generation(2, Box::new(gen2.into_iter())).await.unwrap();
    assert_eq!(delta, GenerationDelta { added: 500, changed: 0, deleted: 834, unchanged: 1666, touched: 0, returned: 0 });
}

#[test]
fn object_states_keep_their_stored_names() {
    let names: Vec<&str> = ObjectState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["pending", "done", "failed", "refused", "skipped", "pending-delete", "deleted"]);
    assert!(ObjectState::ALL.iter().all(|s| ObjectState::parse(s.as_str()) == Some(*s)));
}

#[tokio::test]
async fn the_job_directory_s_journals_are_opened_and_removed_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [JournalKind::Main, JournalKind::Export, JournalKind::ExportCheck] {
        assert!(!crate::exists(dir.path(), kind));
        let j = crate::open(dir.path(), kind).await.unwrap();
        j.seed(1, &entries(1)).await.unwrap();
        drop(j);
        assert!(crate::exists(dir.path(), kind));
    }
    crate::remove(dir.path(), JournalKind::ExportCheck).unwrap();
    assert!(!crate::exists(dir.path(), JournalKind::ExportCheck));
    assert!(crate::exists(dir.path(), JournalKind::Export));
    let j = crate::open(dir.path(), JournalKind::ExportCheck).await.unwrap();
    assert_eq!(j.counts().await.unwrap().objects, 0, "a removed journal leaves nothing behind");
}

#[tokio::test]
async fn a_job_directory_that_does_not_exist_is_not_made_by_opening_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("no-such-job");
    assert!(crate::open(&job, JournalKind::Main).await.is_err());
    assert!(!job.exists(), "only persisting a job makes its directory");
}

// Issue 14: the journal keeps each object's storage class, and counts the restores ferry asked
// for and those not copied yet (in flight), for `ferry status`.
#[tokio::test]
async fn storage_classes_are_kept_and_restores_are_counted_until_copied() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("journal.sqlite")).unwrap();
    let glacier = ferry_core::StorageClass { name: "GLACIER".into(), state: ferry_core::ArchiveState::Archived };
    let mut listed = entries(3);
    listed[1].storage_class = Some(glacier.clone());
    listed[2].storage_class = Some(glacier.clone());
    j.seed(1, &listed).await.unwrap();
    assert_eq!(j.get("k1").await.unwrap().unwrap().entry.storage_class, Some(glacier.clone()));
    assert_eq!(j.get("k0").await.unwrap().unwrap().entry.storage_class, None);
    let c = j.counts().await.unwrap();
    assert_eq!((c.restores_requested, c.restoring), (0, 0));

    let (k1, k2) = (j.get("k1").await.unwrap().unwrap().id, j.get("k2").await.unwrap().unwrap().id);
    j.restore_requested(k1).await.unwrap();
    j.restore_requested(k2).await.unwrap();
    assert!(j.get("k1").await.unwrap().unwrap().restore_requested.is_some());
    j.mark_done(k1, &outcome()).await.unwrap();
    j.mark_failed(k2, "restoring").await.unwrap();
    let c = j.counts().await.unwrap();
    assert_eq!((c.restores_requested, c.restoring), (2, 1), "k2's restore is still in flight");

    // A later generation in which k2 changed (and is no longer archived) forgets its restore.
    let mut later = listed.clone();
    later[2].size += 1;
    later[2].storage_class = Some(ferry_core::StorageClass::online("STANDARD"));
    j.seed_generation(2, Box::new(later.into_iter())).await.unwrap();
    let k2 = j.get("k2").await.unwrap().unwrap();
    assert_eq!((k2.entry.storage_class, k2.restore_requested), (Some(ferry_core::StorageClass::online("STANDARD")), None));
    let c = j.counts().await.unwrap();
    assert_eq!((c.restores_requested, c.restoring), (1, 0));
}

/// A put of object `row` to `s3://b/`, the destination holding `prior`.
fn put_of<'a>(row: &'a ObjectRow, prior: &'a Prior) -> Intent<'a> {
    Intent { object: row.id, target: "s3://b/", key: &row.entry.key, op: WriteOp::Put, prior, seen: Seen::Head }
}

// Issue 13 review: each object's outcome was a commit of its own (three per object with the
// write ledger's two), most of the time of the 10,000-object engine test. Outcomes now ride on
// the journal's next commit; a kill loses at most those not yet committed — done marks, so the
// work is done again — never a ledger row begun before a write, never a done mark for work
// not done.
#[tokio::test]
async fn outcomes_ride_on_the_next_commit_and_a_kill_loses_only_done_marks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let j = SqliteJournal::open(&path).unwrap();
    j.seed(1, &entries(3)).await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    let got = j.claim(&w, 3, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap();
    let run = j.begin_run(RunKind::Copy, 1).await.unwrap();
    // What another process (`ferry status`, or the next run after a kill) reads.
    let other = Connection::open(&path).unwrap();
    let state = |key: &str| other.query_row("SELECT state FROM objects WHERE key = ?1", [key], |r| r.get::<_, String>(0)).unwrap();
    let finished = |id: i64| other.query_row("SELECT done FROM writes WHERE id = ?1", [id], |r| r.get::<_, bool>(0)).optional().unwrap();
    let wrote = Wrote { size: 0, etag: Some("w".into()), version: None };

    let w0 = j.begin_write(run, &put_of(&got[0], &Prior::Absent)).await.unwrap();
    assert_eq!(finished(w0), Some(false), "a ledger row is committed before its write is sent");
    j.finish_write(w0, &wrote).await.unwrap();
    j.mark_done(got[0].id, &outcome()).await.unwrap();
    assert_eq!((state("k0").as_str(), finished(w0)), ("pending", Some(false)), "k0's outcome is not a commit of its own");
    // It rides on the next commit: the ledger row k1's write needs first.
    let w1 = j.begin_write(run, &put_of(&got[1], &Prior::Absent)).await.unwrap();
    assert_eq!((state("k0").as_str(), finished(w0), finished(w1)), ("done", Some(true), Some(false)));

    // k1 is written and done, and the process is killed before the journal commits again.
    j.finish_write(w1, &wrote).await.unwrap();
    j.mark_done(got[1].id, &outcome()).await.unwrap();
    std::mem::forget(j);
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.get("k0").await.unwrap().unwrap().state, ObjectState::Done);
    assert_eq!(j.get("k1").await.unwrap().unwrap().state, ObjectState::Pending, "its done mark was lost: k1 is copied again");
    // The next run's write of k1 takes its unfinished row over, keeping what was there first.
    j.release_leases().await.unwrap();
    let next = j.begin_run(RunKind::Copy, 1).await.unwrap();
    let seen_now = Prior::Present { size: 0, etag: Some("w".into()), version: None };
    assert_eq!(j.begin_write(next, &put_of(&got[1], &seen_now)).await.unwrap(), w1);
    let rows = j.writes(None, 0, 10).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.id, r.prior.clone(), r.wrote.is_some())).collect::<Vec<_>>(),
        [(w0, Prior::Absent, true), (w1, Prior::Absent, false)]
    );
    // A release (the end of a pass) commits what is queued.
    j.finish_write(w1, &wrote).await.unwrap();
    j.mark_done(got[1].id, &outcome()).await.unwrap();
    j.release(&[]).await.unwrap();
    assert_eq!((state("k1").as_str(), finished(w1)), ("done", Some(true)));
}

// Issue 13 review: the write ledger's look-up of an unfinished row was prepared again by SQLite
// at every object (`ORDER BY id DESC` once the table grew), an eighth of the CPU of a copy of
// small objects.
#[tokio::test]
async fn the_statements_each_object_runs_are_prepared_once() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(300)).await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    let got = j.claim(&w, 300, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap();
    let run = j.begin_run(RunKind::Copy, 1).await.unwrap();
    // What the mover does for each object it puts in one request.
    for r in &got {
        assert_eq!(j.upload_of(r.id).await.unwrap(), None);
        let row = j.begin_write(run, &put_of(r, &Prior::Absent)).await.unwrap();
        j.finish_write(row, &Wrote::default()).await.unwrap();
        j.mark_done(r.id, &outcome()).await.unwrap();
    }
    j.release(&[]).await.unwrap();
    assert_eq!(j.counts().await.unwrap().done, 300);
    let conn = j.0.conn();
    for sql in [UPLOAD_OF, FORGET_PARTS, MARK_DONE, writes::OPEN_WRITE, writes::BEGIN_WRITE, writes::FINISH_WRITE] {
        let stmt = conn.prepare_cached(sql).unwrap();
        let (runs, again) = (stmt.get_status(rusqlite::StatementStatus::Run), stmt.get_status(rusqlite::StatementStatus::RePrepare));
        assert_eq!((runs, again), (300, 0), "{sql}: runs, and times prepared again");
    }
}

fn entry(key: &str, etag: &str) -> ObjectEntry {
    ObjectEntry { key: key.into(), size: 1, etag: Some(etag.into()), ..Default::default() }
}

async fn merge(j: &SqliteJournal, generation: u32, listing: &[ObjectEntry]) -> GenerationDelta {
    j.seed_generation(generation, Box::new(Vec::from(listing).into_iter())).await.unwrap()
}

// Issue 13 review (a): a key a disk layout refused, gone in one generation and back in the
// next, came back pending: its refusal (about its name, which is the same) was lost.
#[tokio::test]
async fn a_refused_key_that_is_deleted_and_comes_back_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let refused = RoutedEntry { refused: Some("name too long for the device".into()), ..routed("r", 1, "x/r") };
    j.seed_routed(1, &[refused, routed("a", 1, "x/a")]).await.unwrap();
    let gone = merge(&j, 2, &[ObjectEntry { key: "a".into(), size: 1, ..Default::default() }]).await;
    assert_eq!((gone.deleted, gone.unchanged), (1, 1));
    assert_eq!(j.get("r").await.unwrap().unwrap().state, ObjectState::PendingDelete);
    let back = merge(&j, 3, &[ObjectEntry { key: "a".into(), size: 1, ..Default::default() }, entry("r", "r3")]).await;
    assert_eq!((back.changed, back.unchanged), (1, 1));
    let r = j.get("r").await.unwrap().unwrap();
    assert_eq!((r.state, r.error.as_deref(), r.generation), (ObjectState::Refused, Some("name too long for the device"), 3));
    assert_eq!(j.counts().await.unwrap().refused, 1);
}

// Issue 13 review (b): an entry the listing skipped (a symlink) and that then vanished stayed
// skipped, counted unchanged: the journal said the source still had it.
#[tokio::test]
async fn a_skipped_entry_that_vanishes_is_deleted_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &[entry("a", "a1"), ObjectEntry::skipped("link".into(), SkipReason::Symlink)]).await.unwrap();
    let delta = merge(&j, 2, &[entry("a", "a1")]).await;
    assert_eq!(delta, GenerationDelta { added: 0, changed: 0, deleted: 1, unchanged: 1, touched: 0, returned: 0 });
    let link = j.get("link").await.unwrap().unwrap();
    assert_eq!((link.state, link.generation), (ObjectState::PendingDelete, 2));
    assert!(j.skipped_by_reason().await.unwrap().is_empty(), "no longer reported as an entry ferry does not copy");
    // Back as a file: pending; the same merge again changes nothing.
    let back = [entry("a", "a1"), entry("link", "l3")];
    assert_eq!(merge(&j, 3, &back).await.changed, 1);
    assert_eq!(j.get("link").await.unwrap().unwrap().state, ObjectState::Pending);
    assert_eq!(merge(&j, 3, &back).await, GenerationDelta { unchanged: 2, ..GenerationDelta::default() });
}

// Issue 13 review (c): a changed object kept the device and path an export had placed the old
// version on (and the digest a shipment declared for it), so it was never placed again.
#[tokio::test]
async fn a_changed_object_loses_its_old_placement_and_declared_digest() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let mut placed = routed("k", 1, "x/k");
    placed.entry.etag = Some("k1".into());
    placed.route.expect_sha256 = Some("old".into());
    j.seed_routed(1, &[placed, routed("same", 1, "x/same")]).await.unwrap();
    let ids: Vec<i64> = j.page(0, 10).await.unwrap().iter().map(|r| r.id).collect();
    j.place_all(&[(ids[0], 0), (ids[1], 0)]).await.unwrap();
    let delta = merge(&j, 2, &[entry("k", "k2"), ObjectEntry { key: "same".into(), size: 1, ..Default::default() }]).await;
    assert_eq!((delta.changed, delta.unchanged), (1, 1));
    let k = j.get("k").await.unwrap().unwrap();
    assert_eq!(k.route, Route::default(), "placed again, like an added key");
    assert_eq!(j.unplaced(None, 10).await.unwrap().iter().map(|(id, _)| *id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(j.get("same").await.unwrap().unwrap().route.device, Some(0), "an unchanged object keeps its place");
}

// Issue 13 review (d): the merge held the journal for its whole run, reading its listing with
// the connection locked: on a 100M-object job every claim waited minutes.
#[tokio::test]
async fn a_generation_merge_never_holds_the_journal_while_it_reads_its_listing() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let gen1: Vec<ObjectEntry> = (0..3000).map(|i| ObjectEntry { key: format!("k{i:05}"), size: 1, ..Default::default() }).collect();
    j.seed(1, &gen1).await.unwrap();
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (probe, seen) = (j.clone(), held.clone());
    let listing = gen1.clone().into_iter().enumerate().map(move |(i, mut e)| {
        if probe.0.conn.try_lock().is_err() {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if i % 2 == 0 {
            e.size = 2;
        }
        e
    });
    let delta = j.seed_generation(2, Box::new(listing)).await.unwrap();
    assert_eq!(delta, GenerationDelta { added: 0, changed: 1500, deleted: 0, unchanged: 1500, touched: 0, returned: 0 });
    assert_eq!(held.load(std::sync::atomic::Ordering::Relaxed), 0, "entries read while the journal was held");
    let sizes: Vec<u64> = j.page(0, 4).await.unwrap().iter().map(|r| r.entry.size).collect();
    assert_eq!(sizes, [2, 1, 2, 1]);
}

#[tokio::test]
async fn a_generation_merge_adds_and_deletes_runs_longer_than_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let mut gen1: Vec<ObjectEntry> = ["a", "m", "z"].iter().map(|k| entry(k, "1")).collect();
    gen1.extend((0..2500).map(|i| entry(&format!("y{i:05}"), "1")));
    gen1.sort_by(|a, b| a.key.cmp(&b.key));
    j.seed(1, &gen1).await.unwrap();
    // 3000 new keys between m and y…, every y… gone, z kept.
    let mut gen2: Vec<ObjectEntry> = ["a", "m", "z"].iter().map(|k| entry(k, "1")).collect();
    gen2.extend((0..3000).map(|i| entry(&format!("m{i:05}"), "2")));
    gen2.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        merge(&j, 2, &gen2).await,
        GenerationDelta { added: 3000, changed: 0, deleted: 2500, unchanged: 3, touched: 0, returned: 0 }
    );
    assert_eq!(merge(&j, 2, &gen2).await, GenerationDelta { added: 0, changed: 0, deleted: 0, unchanged: 3003, touched: 0, returned: 0 });
    let c = j.counts().await.unwrap();
    assert_eq!((c.objects, c.pending_delete), (3003, 2500));
}

/// A watch that records what a merge tells it, answers its looks from `verdicts` (by key;
/// unexamined otherwise), and commits when `commit`.
#[derive(Default)]
struct Recorder {
    verdicts: std::collections::HashMap<String, Verdict>,
    commit: bool,
    /// Stops the merge at this step (counted from 1).
    stop_at: Option<usize>,
    seen: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    looks: Vec<(String, LookKind, bool)>,
    steps: Vec<String>,
    held: Option<Held>,
}

impl MergeWatch for Recorder {
    fn judge(&mut self, looks: &[Look<'_>]) -> Vec<Verdict> {
        let mut seen = self.seen.lock().unwrap();
        looks
            .iter()
            .map(|l| {
                seen.looks.push((l.row.entry.key.clone(), l.kind, l.row.src_attrs.is_some()));
                self.verdicts.get(&l.listed.key).copied().unwrap_or(Verdict::unexamined(l.kind))
            })
            .collect()
    }
    fn step(&mut self, step: MergeStep<'_>) -> bool {
        let line = match step {
            MergeStep::Added { new } => format!("added {}", new.key),
            MergeStep::Changed { old, new } => format!("changed {} {:?}>{:?}", new.key, old.etag, new.etag),
            MergeStep::Touched { new, .. } => format!("touched {}", new.key),
            MergeStep::Deleted { old } => format!("deleted {}", old.key),
        };
        let mut seen = self.seen.lock().unwrap();
        seen.steps.push(line);
        self.stop_at != Some(seen.steps.len())
    }
    fn finish(&mut self, _: &GenerationDelta, held: &Held) -> bool {
        self.seen.lock().unwrap().held = Some(*held);
        self.commit
    }
}

/// Generation 1 of a, b, c, d (size 1, tag 1, at time 0) all copied, with attributes.
async fn copied_abcd(j: &SqliteJournal) {
    let e = |k: &str| ObjectEntry { key: k.into(), size: 1, etag: Some("1".into()), last_modified: at(0), ..Default::default() };
    j.seed(1, &[e("a"), e("b"), e("c"), e("d")]).await.unwrap();
    let w = j.begin_pass("w").await.unwrap();
    let copied = Outcome { src_attrs: Some(ferry_core::headers::Attrs::default()), ..outcome() };
    for r in j.claim(&w, 10, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap() {
        j.mark_done(r.id, &copied).await.unwrap();
    }
    j.release(&[]).await.unwrap();
}

fn at(s: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(1_700_000_000 + s, 0)
}

fn listed(k: &str, etag: &str, t: i64) -> ObjectEntry {
    ObjectEntry { key: k.into(), size: 1, etag: Some(etag.into()), last_modified: at(t), ..Default::default() }
}

async fn watched(j: &SqliteJournal, listing: Vec<ObjectEntry>, watch: Recorder) -> (GenerationDelta, bool) {
    let meta = vec![("merged".to_string(), "2".to_string())];
    j.merge_generation(2, Box::new(listing.into_iter()), Box::new(watch), meta).await.unwrap()
}

#[tokio::test]
async fn a_watched_merge_rolled_back_changes_nothing_and_says_what_it_would_have_done() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    copied_abcd(&j).await;
    // a unchanged, b touched (same tag, later time), c changed, d gone, e added.
    let gen2 = vec![listed("a", "1", 0), listed("b", "1", 60), listed("c", "2", 60), listed("e", "1", 60)];
    let want = GenerationDelta { added: 1, changed: 1, deleted: 1, unchanged: 2, touched: 1, returned: 0 };
    let before = j.page(0, 100).await.unwrap();
    let watch = Recorder::default();
    let seen = watch.seen.clone();
    assert_eq!(watched(&j, gen2.clone(), watch).await, (want, false));
    let after = j.page(0, 100).await.unwrap();
    assert_eq!(format!("{after:?}"), format!("{before:?}"), "a rolled-back merge writes nothing");
    assert_eq!(j.meta("merged").await.unwrap(), None, "nor its meta");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.steps, ["touched b", "changed c Some(\"1\")>Some(\"2\")", "deleted d", "added e"]);
    // b with the attributes it was copied with; c, copied, has another tag at its old size.
    let looks = [("b".to_string(), LookKind::NewTime, true), ("c".to_string(), LookKind::OtherTag, false)];
    assert_eq!(seen.looks, looks);
    assert_eq!(seen.held, Some(Held { objects: 4, pending_delete: 0 }));

    // Committed: the same merge as a seed, and its meta with it.
    let watch = Recorder { commit: true, ..Recorder::default() };
    assert_eq!(watched(&j, gen2, watch).await, (want, true));
    assert_eq!(j.meta("merged").await.unwrap().as_deref(), Some("2"));
    let b = j.get("b").await.unwrap().unwrap();
    assert_eq!((b.entry.last_modified, b.state), (at(60), ObjectState::Done), "touched: its time kept, not copied again");
    let c = j.get("c").await.unwrap().unwrap();
    assert_eq!((c.state, c.entry.etag.as_deref()), (ObjectState::Pending, Some("2")));
    assert_eq!(j.get("d").await.unwrap().unwrap().state, ObjectState::PendingDelete);
}

#[tokio::test]
async fn a_watched_merge_copies_again_what_its_watch_finds_changed_and_keeps_what_it_finds_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    copied_abcd(&j).await;
    // a: same tag, new time, and the watch finds its metadata changed; b: another tag at the
    // same size, and the watch finds its bytes as copied; c: another tag, not examined (changed).
    let gen2 = vec![listed("a", "1", 60), listed("b", "2", 60), listed("c", "2", 60), listed("d", "1", 0)];
    let verdicts = [("a".to_string(), Verdict::Changed), ("b".to_string(), Verdict::Unchanged)].into();
    let watch = Recorder { verdicts, commit: true, ..Recorder::default() };
    let seen = watch.seen.clone();
    let (delta, committed) = watched(&j, gen2, watch).await;
    assert!(committed);
    assert_eq!(delta, GenerationDelta { added: 0, changed: 2, deleted: 0, unchanged: 2, touched: 1, returned: 0 });
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let looks: Vec<_> = seen.looks.iter().map(|(k, kind, _)| (k.as_str(), *kind)).collect();
    assert_eq!(looks, [("a", LookKind::NewTime), ("b", LookKind::OtherTag), ("c", LookKind::OtherTag)]);
    assert_eq!(seen.steps, ["changed a Some(\"1\")>Some(\"1\")", "touched b", "changed c Some(\"1\")>Some(\"2\")"]);
    let a = j.get("a").await.unwrap().unwrap();
    assert_eq!((a.state, a.note.as_deref()), (ObjectState::Pending, Some("metadata changed at the source (same bytes)")));
    let b = j.get("b").await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.entry.etag.as_deref(), b.entry.last_modified),
        (ObjectState::Done, Some("2"), at(60)),
        "its new identity recorded"
    );
    assert_eq!(j.get("c").await.unwrap().unwrap().state, ObjectState::Pending);
    // Merged again, b is unchanged: its new tag is the journal's.
    let watch = Recorder { commit: true, ..Recorder::default() };
    let gen2 = vec![listed("a", "1", 60), listed("b", "2", 60), listed("c", "2", 60), listed("d", "1", 0)];
    let (delta, _) = watched(&j, gen2, watch).await;
    assert_eq!((delta.changed, delta.unchanged, delta.touched), (0, 4, 0), "{delta:?}");
}

#[tokio::test]
async fn a_watch_that_stops_a_merge_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    // More keys than a batch, so the stop falls after some were written.
    let gen1: Vec<ObjectEntry> = (0..5000).map(|i| listed(&format!("k{i:05}"), "1", 0)).collect();
    j.seed(1, &gen1).await.unwrap();
    let gen2: Vec<ObjectEntry> = (0..5000).map(|i| listed(&format!("k{i:05}"), "2", 0)).collect();
    let watch = Recorder { commit: true, stop_at: Some(4500), ..Recorder::default() };
    let seen = watch.seen.clone();
    let (_, committed) = watched(&j, gen2, watch).await;
    assert!(!committed);
    assert!(seen.lock().unwrap().held.is_none(), "not asked to finish");
    let changed = j.page(0, 10_000).await.unwrap().iter().filter(|r| r.entry.etag.as_deref() != Some("1")).count();
    assert_eq!(changed, 0);
}

#[tokio::test]
async fn a_watched_merge_tallies_what_the_journal_held_and_names_keys_back_from_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    copied_abcd(&j).await;
    // Generation 2 loses c and d; generation 3 has c back and d still gone.
    let commit = || Recorder { commit: true, ..Recorder::default() };
    watched(&j, vec![listed("a", "1", 0), listed("b", "1", 0)], commit()).await;
    let watch = commit();
    let seen = watch.seen.clone();
    let gen3 = vec![listed("a", "1", 0), listed("b", "1", 0), listed("c", "1", 0)];
    let (delta, _) = j.merge_generation(3, Box::new(gen3.into_iter()), Box::new(watch), Vec::new()).await.unwrap();
    assert_eq!((delta.returned, delta.deleted, delta.unchanged), (1, 0, 3), "{delta:?}");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.held, Some(Held { objects: 2, pending_delete: 2 }));
    assert_eq!(seen.steps, ["added c"], "a key back after a delete is added; one still gone is no change");
}

#[tokio::test]
async fn a_deleted_key_stays_out_of_the_counts_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let e = |k: &str| ObjectEntry { key: k.into(), size: 1, etag: Some("1".into()), ..Default::default() };
    j.seed(1, &[e("a"), e("b")]).await.unwrap();
    j.seed_generation(2, Box::new(vec![e("a")].into_iter())).await.unwrap();
    let b = j.get("b").await.unwrap().unwrap();
    j.mark_deleted(b.id).await.unwrap();
    let c = j.counts().await.unwrap();
    assert_eq!((c.objects, c.pending_delete, c.deleted), (1, 0, 1));
    // Still gone: nothing to count, nothing to do.
    let again = j.seed_generation(3, Box::new(vec![e("a")].into_iter())).await.unwrap();
    assert_eq!(again, GenerationDelta { unchanged: 1, ..Default::default() });
    assert_eq!(j.get("b").await.unwrap().unwrap().state, ObjectState::Deleted);
    // Back at the source: copied again.
    let back = j.seed_generation(4, Box::new(vec![e("a"), e("b")].into_iter())).await.unwrap();
    assert_eq!(back.changed, 1);
    assert_eq!(j.get("b").await.unwrap().unwrap().state, ObjectState::Pending);
    // A pending delete only: marking a row in another state deleted does nothing.
    let a = j.get("a").await.unwrap().unwrap();
    j.mark_deleted(a.id).await.unwrap();
    assert_eq!(j.get("a").await.unwrap().unwrap().state, ObjectState::Pending);
}

// Issue 14 (verify compares every header): a done object keeps the attributes its source gave
// the copy, across a reopen; a journal made before the column gains it, its rows without one.
#[tokio::test]
async fn a_done_object_keeps_its_source_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    older_journal(&path, &["src_attrs"], "5").await;
    let j = SqliteJournal::open(&path).unwrap();
    assert!(j.page(0, 10).await.unwrap().iter().all(|r| r.src_attrs.is_none()));
    let attrs = ferry_core::headers::Attrs {
        content_type: Some("text/html".into()),
        headers: ferry_core::Headers { cache_control: Some("no-store".into()), ..Default::default() },
        metadata: [("Owner-Team".to_string(), "web".to_string())].into(),
    };
    let id = j.get("k1").await.unwrap().unwrap().id;
    j.mark_done(id, &Outcome { src_attrs: Some(attrs.clone()), ..outcome() }).await.unwrap();
    drop(j);
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.get("k1").await.unwrap().unwrap().src_attrs, Some(attrs));
    assert_eq!(j.get("k2").await.unwrap().unwrap().src_attrs, None);
}

fn version_of(key: &str, version: &str) -> ObjectEntry {
    ObjectEntry { key: key.into(), size: 1, version: Some(version.into()), pinned: true, ..Default::default() }
}

// Issue 14 (`--all-versions`): a version 5 journal declared its key column UNIQUE, which SQLite
// cannot drop; opening it builds the table afresh with the same rows, ids and parts, and the
// journal then takes a row per version of a key.
#[tokio::test]
async fn a_version_5_journal_with_unique_keys_is_rebuilt_keeping_its_rows_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        let v5 = objects_columns!()
            .replace("key           TEXT NOT NULL,", "key TEXT NOT NULL UNIQUE,")
            .replace("deleted_from  TEXT,", "deleted_from  TEXT")
            .lines()
            // Columns a version 5 journal did not have.
            .filter(|l| !["pinned", "src_attrs", "headers"].iter().any(|c| l.trim_start().starts_with(c)))
            .collect::<Vec<_>>()
            .join("\n");
        conn.execute_batch(&format!(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE objects ({v5}
);
             CREATE TABLE parts (object_id INTEGER NOT NULL REFERENCES objects(id), part_no INTEGER NOT NULL, offset INTEGER NOT NULL,
                                 size INTEGER NOT NULL, crc32c TEXT NOT NULL, etag TEXT, PRIMARY KEY (object_id, part_no));
             INSERT INTO meta VALUES ('schema_version', '5');
             INSERT INTO objects (id, generation, key, size, state) VALUES (7, 1, 'a', 3, 'done'), (9, 1, 'b', 4, 'pending');
             INSERT INTO parts VALUES (9, 0, 0, 4, 'c', 'e');"
        ))
        .unwrap();
        assert!(conn.execute("INSERT INTO objects (generation, key, size) VALUES (1, 'a', 1)", []).is_err(), "v5 keys are unique");
    }
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.meta("schema_version").await.unwrap(), Some(SCHEMA_VERSION.to_string()));
    let a = j.get("a").await.unwrap().unwrap();
    assert_eq!((a.id, a.state, a.entry.pinned), (7, ObjectState::Done, false));
    assert_eq!(j.get("b").await.unwrap().unwrap().id, 9);
    assert_eq!(j.parts(9).await.unwrap().len(), 1);
    // A key's current version is still one row; its versions are one row each.
    j.seed(1, &[ObjectEntry { key: "a".into(), ..Default::default() }]).await.unwrap();
    j.seed(1, &[version_of("v", "1"), version_of("v", "2"), version_of("v", "1")]).await.unwrap();
    assert_eq!(j.counts().await.unwrap().objects, 4);
    drop(j);
    // Opening again rebuilds nothing.
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.counts().await.unwrap().objects, 4);
}

// Issue 14 (`--all-versions`): a key's versions are claimed together, oldest first, however
// the batch falls, so the caller can write them in order.
#[tokio::test]
async fn versions_of_a_key_are_never_split_between_claims() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let listing = [version_of("a", "1"), version_of("b", "x"), version_of("b", "y"), version_of("b", "z"), version_of("c", "1")];
    j.seed(1, &listing).await.unwrap();
    let worker = j.begin_pass("w").await.unwrap();
    let clock = Clock::new();
    let first = j.claim(&worker, 2, clock.lease(Duration::from_secs(60))).await.unwrap();
    let versions: Vec<_> = first.iter().map(|r| (r.entry.key.as_str(), r.entry.version.as_deref().unwrap(), r.entry.pinned)).collect();
    let y = j.get_object(ferry_core::ObjectId { key: "b", version: Some("y") }).await.unwrap().unwrap();
    assert_eq!((y.id, y.entry.version.as_deref()), (first[2].id, Some("y")));
    assert!(j.get_object(ferry_core::ObjectId { key: "b", version: None }).await.unwrap().is_none());
    assert_eq!(versions, [("a", "1", true), ("b", "x", true), ("b", "y", true), ("b", "z", true)]);
    assert_eq!(keys(&j.claim(&worker, 2, clock.lease(Duration::from_secs(60))).await.unwrap()), ["c"]);
}

// Issue 15 (rollback): a key's writes since a run are one group — its oldest write's prior
// state, its newest write — made of the writes no rollback finished; an undo begun and cut off
// is said (the next rollback does the key again); one finished leaves the group, marks the
// object to copy again, and names what was put back as what the earlier write left.
#[tokio::test]
async fn writes_since_a_run_are_grouped_by_key_and_an_undo_is_journaled_begun_then_done() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    j.seed(1, &entries(2)).await.unwrap();
    let (k0, k1) = (j.get("k0").await.unwrap().unwrap(), j.get("k1").await.unwrap().unwrap());
    let wrote = |etag: &str| Wrote { size: 1, etag: Some(etag.into()), version: None };
    let first = j.begin_run(RunKind::Copy, 1).await.unwrap();
    let a = j.begin_write(first, &put_of(&k0, &Prior::Absent)).await.unwrap();
    j.finish_write(a, &wrote("e1")).await.unwrap();
    j.mark_done(k0.id, &outcome()).await.unwrap();
    let second = j.begin_run(RunKind::Copy, 2).await.unwrap();
    let held = Prior::Present { size: 1, etag: Some("e1".into()), version: None };
    let b = j.begin_write(second, &put_of(&k0, &held)).await.unwrap();
    let kept = Kept { location: "s3://keep/run-2/".into(), size: 1, etag: Some("e1".into()) };
    j.set_backup(b, &kept).await.unwrap();
    j.finish_write(b, &wrote("e2")).await.unwrap();
    let c = j.begin_write(second, &put_of(&k1, &Prior::Absent)).await.unwrap();
    assert_eq!(j.prior_of(b).await.unwrap(), (held.clone(), Some(kept.clone())));

    let runs = j.runs().await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.id, r.generation, r.writes)).collect::<Vec<_>>(), [(first, Some(1), 1), (second, Some(2), 2)]);
    let since_first = j.undo_groups("s3://b/", first, "", 10).await.unwrap();
    assert_eq!(since_first.iter().map(|g| (g.key.as_str(), g.rows.clone())).collect::<Vec<_>>(), [("k0", vec![a, b]), ("k1", vec![c])]);
    assert_eq!((since_first[0].first.prior.clone(), since_first[0].last.wrote.clone()), (Prior::Absent, Some(wrote("e2"))));
    let since_second = j.undo_groups("s3://b/", second, "", 10).await.unwrap();
    assert_eq!(since_second[0].first.backup.as_ref(), Some(&kept));
    assert_eq!(j.undo_groups("s3://b/", second, "k0", 10).await.unwrap().len(), 1, "keyset paging");
    assert!(j.undo_groups("s3://other/", first, "", 10).await.unwrap().is_empty(), "another target's writes");

    let by = j.begin_run(RunKind::Rollback, 2).await.unwrap();
    j.mark_done(k0.id, &outcome()).await.unwrap();
    j.begin_undo(&[b], by, k0.id).await.unwrap();
    assert!(j.undo_groups("s3://b/", second, "", 10).await.unwrap()[0].begun);
    assert_eq!(j.get("k0").await.unwrap().unwrap().state, ObjectState::Pending, "begun: no longer taken as copied");
    let again = Wrote { size: 1, etag: Some("e1-again".into()), version: Some("v9".into()) };
    j.finish_undo(&[b], by, k0.id, Undone::Restored, Some(&again)).await.unwrap();
    let left = j.undo_groups("s3://b/", second, "", 10).await.unwrap();
    assert_eq!(left.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(), ["k1"]);
    // The bulk copy's write of k0 is what the key holds again, under the tag it has now.
    let since_first = j.undo_groups("s3://b/", first, "", 10).await.unwrap();
    assert_eq!(since_first[0].rows, [a]);
    assert_eq!(since_first[0].last.wrote.as_ref().map(|w| (w.etag.as_deref(), w.version.as_deref())), Some((Some("e1-again"), Some("v9"))));
    let k0_now = j.get("k0").await.unwrap().unwrap();
    assert_eq!((k0_now.state, k0_now.note.as_deref()), (ObjectState::Pending, Some(format!("rolled back by run {}", by.0).as_str())));
    assert_eq!(j.last_put(k0.id, "s3://b/").await.unwrap(), Some(again), "an undone write is not what ferry left");
    assert_eq!(j.runs().await.unwrap()[1].undone, 1);
}

// A version 6 journal's ledger lacks the rollback columns: they are added, rows kept.
#[tokio::test]
async fn a_version_6_ledger_gains_the_rollback_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    {
        let j = SqliteJournal::open(&path).unwrap();
        j.seed(1, &entries(1)).await.unwrap();
        let k0 = j.get("k0").await.unwrap().unwrap();
        let run = j.begin_run(RunKind::Copy, 1).await.unwrap();
        j.begin_write(run, &put_of(&k0, &Prior::Absent)).await.unwrap();
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX writes_key; ALTER TABLE writes DROP COLUMN backup; ALTER TABLE writes DROP COLUMN undone_by;
             ALTER TABLE writes DROP COLUMN undo_state; ALTER TABLE runs DROP COLUMN generation;
             UPDATE meta SET value = '6' WHERE name = 'schema_version';",
        )
        .unwrap();
    }
    let j = SqliteJournal::open(&path).unwrap();
    assert_eq!(j.meta("schema_version").await.unwrap(), Some(SCHEMA_VERSION.to_string()));
    assert_eq!(j.runs().await.unwrap()[0].generation, None);
    let groups = j.undo_groups("s3://b/", RunId(1), "", 10).await.unwrap();
    assert_eq!((groups.len(), groups[0].first.backup.clone(), groups[0].begun), (1, None, false));
}

// Issue 15 review: an ingest's rows take the source's identity from the shipped manifest, by
// key and size; a row shipped at another size (the export met a newer version) takes none, and
// would be judged unchanged by every delta after (no tag to compare). Leaving the devices makes
// it pending again, and forgets every route, in the commit that sets the marker.
#[tokio::test]
async fn rows_leave_their_devices_and_those_without_a_source_identity_are_copied_again() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let shipped = |key: &str, size: u64| RoutedEntry {
        entry: ObjectEntry { key: key.into(), size, ..Default::default() },
        route: Route { device: Some(0), src_path: Some(format!("disk/{key}")), dst_path: None, expect_sha256: Some("00".repeat(32)) },
        refused: None,
        renamed: None,
    };
    j.seed_routed(1, &[shipped("a", 1), shipped("b", 2)]).await.unwrap();
    let listed = |key: &str, size: u64| ObjectEntry { key: key.into(), size, etag: Some(format!("tag-{key}")), ..Default::default() };
    // `b` is listed at another size than shipped: not adopted.
    assert_eq!(j.adopt_identity(&[listed("a", 1), listed("b", 3), listed("c", 1)]).await.unwrap(), 1);
    let worker = j.begin_pass("w").await.unwrap();
    for row in j.claim(&worker, 10, Lease { now: 0, ttl: Duration::from_secs(60) }).await.unwrap() {
        j.mark_done(row.id, &outcome()).await.unwrap();
    }
    assert_eq!(j.leave_devices(&[("left".into(), "s3://src/".into())]).await.unwrap(), 2);
    let (a, b) = (j.get("a").await.unwrap().unwrap(), j.get("b").await.unwrap().unwrap());
    assert_eq!((a.state, a.entry.etag.as_deref()), (ObjectState::Done, Some("tag-a")));
    assert_eq!(b.state, ObjectState::Pending, "{b:?}");
    assert!(b.note.as_deref().is_some_and(|n| n.contains("copied again")), "{b:?}");
    assert!([&a, &b].iter().all(|r| r.route == Route::default() && r.src_key() == r.entry.key), "routes forgotten");
    assert_eq!(j.meta("left").await.unwrap().as_deref(), Some("s3://src/"));
}

// Issue 15 (the appliance delta): a shipped file's system headers reach the ingest's copy only
// through the journal (the disk keeps none), so a row keeps the headers it was seeded with
// while it is read from its device (a listing adopted fills gaps only); they are forgotten
// when it leaves the device, and a changed object takes its new listing's.
#[tokio::test]
async fn a_row_keeps_the_headers_it_was_seeded_with_until_its_object_changes() {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
    let mut headers = ferry_core::Headers::default();
    *headers.slot(ferry_core::Header::CacheControl) = Some("max-age=77".into());
    let seeded = RoutedEntry {
        entry: ObjectEntry {
            key: "a".into(),
            size: 1,
            headers: headers.clone(),
            content_type: Some("text/shipped".into()),
            ..Default::default()
        },
        route: Route { device: Some(0), src_path: Some("disk/a".into()), dst_path: None, expect_sha256: Some("00".repeat(32)) },
        refused: None,
        renamed: None,
    };
    j.seed_routed(1, &[seeded]).await.unwrap();
    assert_eq!(j.get("a").await.unwrap().unwrap().entry.headers, headers);
    let listed = ObjectEntry { key: "a".into(), size: 1, etag: Some("t1".into()), ..Default::default() };
    assert_eq!(j.adopt_identity(std::slice::from_ref(&listed)).await.unwrap(), 1);
    assert_eq!(j.get("a").await.unwrap().unwrap().entry.headers, headers, "a listing without headers keeps the shipped ones");
    let other_listing = ObjectEntry { content_type: Some("text/from-listing".into()), ..listed.clone() };
    j.adopt_identity(&[other_listing]).await.unwrap();
    assert_eq!(
        j.get("a").await.unwrap().unwrap().entry.content_type.as_deref(),
        Some("text/shipped"),
        "the listing fills gaps, it overrides nothing shipped"
    );
    // Once the job reads from the source, what the shipment carried goes with the route.
    j.leave_devices(&[]).await.unwrap();
    assert_eq!(j.get("a").await.unwrap().unwrap().entry.headers, ferry_core::Headers::default());
    let mut other = ferry_core::Headers::default();
    *other.slot(ferry_core::Header::ContentLanguage) = Some("fr".into());
    let changed = ObjectEntry { size: 2, etag: Some("t2".into()), headers: other.clone(), ..listed };
    j.seed_generation(2, Box::new(vec![changed].into_iter())).await.unwrap();
    assert_eq!(j.get("a").await.unwrap().unwrap().entry.headers, other, "a changed object takes its new listing's");
}
