//! Planning a listing too large for any local service (a synthetic bucket): the manifest and
//! the journal, seeded side by side, hold exactly the listing, and a listing that fails or is
//! cut off leaves no work behind in the journal.

use ferry_core::{Location, ObjectEntry};
use ferry_engine::{Access, Job, Stats, plan};
use ferry_journal::JournalKind;
use ferry_manifest::ManifestReader;
use ferry_testkit::SyntheticBucket;

const OBJECTS: u64 = 25_321;

fn job(dir: &std::path::Path) -> Job {
    let src = Location::parse("s3://synthetic-source/").unwrap();
    let dst = Location::parse("s3://synthetic-destination/").unwrap();
    Job::open(&dir.join("job"), Some(src), Some(dst), Access::default()).unwrap()
}

fn bucket() -> SyntheticBucket {
    SyntheticBucket::new(Location::parse("s3://synthetic-source/").unwrap(), OBJECTS)
}

async fn journal_keys(job: &Job) -> Vec<String> {
    let journal = job.journal(JournalKind::Main).await.unwrap();
    let mut keys = Vec::new();
    let mut after = 0;
    loop {
        let page = journal.page(after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        keys.extend(page.into_iter().map(|r| r.entry.key));
    }
    keys
}

#[tokio::test]
async fn the_journal_and_the_manifest_hold_exactly_the_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    let summary = plan(&mut job, &bucket(), &Stats::default()).await.unwrap();
    assert_eq!((summary.objects, summary.already_planned), (OBJECTS, false));

    let expected: Vec<String> = (0..OBJECTS).map(|i| SyntheticBucket::entry(i).key).collect();
    assert_eq!(journal_keys(&job).await, expected, "journal rows in listing order");
    let mut manifest: Vec<ObjectEntry> = Vec::new();
    ManifestReader::open(&summary.manifest)
        .unwrap()
        .for_each_batch::<ferry_manifest::ManifestError>(|b| {
            manifest.extend(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(manifest.len() as u64, OBJECTS);
    assert_eq!(manifest[777], SyntheticBucket::entry(777));

    let again = plan(&mut job, &bucket(), &Stats::default()).await.unwrap();
    assert!(again.already_planned);
    assert_eq!(journal_keys(&job).await.len() as u64, OBJECTS, "a second plan adds nothing");
}

#[tokio::test]
async fn a_listing_that_fails_midway_leaves_no_work_and_the_next_plan_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    let err = plan(&mut job, &bucket().failing_at_page(20), &Stats::default()).await.unwrap_err();
    assert!(err.to_string().contains("listing page 20 refused"), "{err}");
    assert_eq!(job.latest_generation(), None, "nothing sealed");
    assert!(journal_keys(&job).await.is_empty(), "the 20 000 rows seeded before the failure are gone");

    let summary = plan(&mut job, &bucket(), &Stats::default()).await.unwrap();
    assert_eq!(summary.objects, OBJECTS);
    assert_eq!(journal_keys(&job).await.len() as u64, OBJECTS);
}

#[tokio::test]
async fn rows_of_a_listing_killed_midway_are_replaced_by_the_next_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    job.persist().unwrap();
    // What a SIGKILL during the listing leaves: rows of generation 1, no seal, no marker, and
    // among them keys the source no longer has.
    let journal = job.journal(JournalKind::Main).await.unwrap();
    let gone = ObjectEntry { key: "deleted-since/x.bin".into(), size: 3, ..Default::default() };
    journal.seed(1, &[SyntheticBucket::entry(0), gone.clone()]).await.unwrap();

    plan(&mut job, &bucket(), &Stats::default()).await.unwrap();
    assert!(!journal.has_key(&gone.key).await.unwrap(), "a key the finished listing does not have is not work");
    assert_eq!(journal.counts().await.unwrap().objects, OBJECTS);
}
