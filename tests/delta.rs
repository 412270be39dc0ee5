//! `ferry delta` (issue 15) end to end on real services: after a bulk copy the source changes
//! (added, overwritten — some at the same size —, deleted, and re-written with the same bytes)
//! and a delta leaves the destination byte-identical to the source, with exact counts, without
//! sending the touched objects again; a listing cut off, an emptied source and one that lost
//! too many objects are refused with nothing sealed or deleted.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::proxy::Refuse;
use ferry_testkit::tree::write_tree;
use ferry_testkit::{CountingProxy, FakeGcs, Moto};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects of the bulk copy, and of each kind of change: a tenth of the issue's figures by
/// default, so the suite stays quick; `DELTA_TEST_OBJECTS=10000` runs the issue's own (500
/// added, 300 overwritten of which 100 at the same size, 200 deleted, 100 touched). The counts
/// are exact either way.
fn objects() -> usize {
    std::env::var("DELTA_TEST_OBJECTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}
fn n_added() -> usize {
    objects() / 20
}
fn n_overwritten() -> usize {
    objects() * 3 / 100
}
fn n_same_size() -> usize {
    objects() / 100
}
fn n_deleted() -> usize {
    objects() / 50
}
fn n_touched() -> usize {
    objects() / 100
}

fn key(i: usize) -> String {
    format!("d{}/obj-{i:05}.bin", i % 7)
}

fn size(i: usize) -> usize {
    100 + (i * 37) % 900
}

/// Every object of `bucket` with the MD5 of its bytes (hex), read by boto3, not by ferry.
fn moto_md5s(moto: &Moto, bucket: &str) -> BTreeMap<String, String> {
    let script = r#"
import hashlib
out = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0]):
    for o in page.get("Contents", []):
        out[o["Key"]] = hashlib.md5(s3.get_object(Bucket=args[0], Key=o["Key"])["Body"].read()).hexdigest()
print(json.dumps(out))
"#;
    serde_json::from_str(&moto.boto3(script, &[bucket])).unwrap()
}

/// Every object of `bucket` with the MD5 fake-gcs-server computed of its bytes (hex).
fn gcs_md5s(gcs: &FakeGcs, bucket: &str) -> BTreeMap<String, String> {
    use base64::Engine;
    gcs.fields(bucket, "md5Hash")
        .into_iter()
        .map(|(k, b64)| (k, base64::engine::general_purpose::STANDARD.decode(b64).unwrap().iter().map(|b| format!("{b:02x}")).collect()))
        .collect()
}

/// Changes the source as the issue's Done means do: adds, overwrites (the first `n_same_size()` at
/// the same size with other bytes), deletes, and re-puts `n_touched()` objects with their own bytes
/// (a new last-modified time, the same ETag). Returns the bytes a delta must send.
fn change_source(moto: &Moto, bucket: &str) -> u64 {
    let script = r#"
import random
spec = json.loads(args[1])
for k, n, seed in spec["put"]:
    random.seed(seed)
    s3.put_object(Bucket=args[0], Key=k, Body=bytes(random.getrandbits(8) for _ in range(n)))
for k in spec["delete"]:
    s3.delete_object(Bucket=args[0], Key=k)
for k in spec["touch"]:
    # The same bytes, type, metadata and cache control written again: only the time changes (a
    # put that dropped any of them would change what travels with the bytes, and be copied again).
    got = s3.get_object(Bucket=args[0], Key=k)
    extra = {"CacheControl": got["CacheControl"]} if "CacheControl" in got else {}
    s3.put_object(Bucket=args[0], Key=k, Body=got["Body"].read(), ContentType=got["ContentType"], Metadata=got["Metadata"], **extra)
"#;
    let mut put = Vec::new();
    let mut sent = 0u64;
    for i in objects()..objects() + n_added() {
        put.push((key(i), size(i), i as u64));
        sent += size(i) as u64;
    }
    for i in 0..n_overwritten() {
        let n = if i < n_same_size() { size(i) } else { size(i) + 11 };
        put.push((key(i), n, 1_000_000 + i as u64));
        sent += n as u64;
    }
    let delete: Vec<String> = (n_overwritten()..n_overwritten() + n_deleted()).map(key).collect();
    let touch: Vec<String> = (n_overwritten() + n_deleted()..n_overwritten() + n_deleted() + n_touched()).map(key).collect();
    let spec = serde_json::json!({ "put": put, "delete": delete, "touch": touch });
    moto.boto3(script, &[bucket, &spec.to_string()]);
    sent
}

/// A source bucket on moto holding [`objects`] objects, written by ferry from a local tree.
fn seeded_source(w: &Path, moto: &Moto, bucket: &str) {
    moto.create_bucket(bucket);
    let files: Vec<(String, usize)> = (0..objects()).map(|i| (key(i), size(i))).collect();
    write_tree(&w.join("seed"), &files);
    ferry_ok(w, &["copy", "seed", &format!("s3://{bucket}"), "--job", "seed-job", "--dst-endpoint", &moto.endpoint], &moto.env(), 0);
}

#[test]
fn a_delta_from_s3_to_gcs_copies_what_changed_deletes_what_is_gone_and_leaves_touched_objects_alone() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    seeded_source(w, &moto, "live");
    let gcs = FakeGcs::start();
    gcs.create_bucket("copy");
    let proxy = CountingProxy::start(&gcs.endpoint);
    let env = moto.env();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(["--job", "j", "--src-endpoint", &moto.endpoint, "--dst-endpoint", &proxy.endpoint].map(String::from));
        a
    };
    let run = |extra: &[&str], code: i32| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ferry_ok(w, &a, &env, code)
    };
    run(&["copy", "s3://live", "gs://copy"], 0);
    assert_eq!(gcs_md5s(&gcs, "copy"), moto_md5s(&moto, "live"));

    let sent = change_source(&moto, "live");
    // A dry run says what a delta would do, and changes nothing.
    let dry = run(&["delta", "--delete", "--dry-run", "--json"], 0).json();
    assert_eq!(dry["changes"]["added"], n_added() as u64, "{dry:#}");
    assert!(!w.join("j/manifests/gen-0002").exists(), "a dry run seals nothing");
    let before = proxy.uploaded();
    let summary = run(&["delta", "--delete", "--json"], 0).json();
    let uploaded = proxy.uploaded() - before;

    let changes = &summary["changes"];
    assert_eq!(changes["added"], n_added() as u64, "{summary:#}");
    assert_eq!(changes["changed"], n_overwritten() as u64, "{summary:#}");
    assert_eq!(changes["deleted"], n_deleted() as u64, "{summary:#}");
    assert_eq!(changes["touched"], n_touched() as u64, "{summary:#}");
    assert_eq!(changes["unchanged"], (objects() - n_overwritten() - n_deleted()) as u64, "{summary:#}");
    assert_eq!(summary["generation"], 2);
    assert_eq!(summary["copy"]["copied"], (n_added() + n_overwritten()) as u64);
    assert_eq!(summary["copy"]["bytes_copied"], sent);
    assert_eq!(summary["deletes"]["deleted"], n_deleted() as u64);
    assert_eq!(summary["deletes"]["failed"], 0);
    // The change set is sealed with generation 2: a line a key, with what it was and is.
    let header: serde_json::Value = serde_json::from_slice(&std::fs::read(w.join("j/manifests/gen-0002/manifest.json")).unwrap()).unwrap();
    assert_eq!(header["changes"]["file"], "changes.jsonl", "{header:#}");
    let set: Vec<serde_json::Value> = std::fs::read_to_string(w.join("j/manifests/gen-0002/changes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| set.iter().filter(|c| c["change"] == kind).count();
    assert_eq!(
        (of("added"), of("changed"), of("deleted"), of("touched")),
        (n_added(), n_overwritten(), n_deleted(), n_touched()),
        "{set:#?}"
    );
    assert_eq!(header["changes"]["rows"].as_u64(), Some(set.len() as u64));
    let same_size = set.iter().find(|c| c["key"] == key(0)).unwrap();
    assert_eq!(same_size["old"]["size"], same_size["new"]["size"], "{same_size}");
    assert_ne!(same_size["old"]["etag"], same_size["new"]["etag"], "{same_size}");
    assert!(set.iter().filter(|c| c["change"] == "added").all(|c| c["old"].is_null() && c["new"]["size"].is_u64()));
    // The touched objects (each at least 100 bytes) were not sent again: what went up is the
    // changed bytes and the requests' own lines and headers (under 2 KiB each).
    let requests = (n_added() + n_overwritten() + n_deleted()) as u64;
    assert!(uploaded >= sent && uploaded < sent + requests * 2048, "uploaded {uploaded}, changed bytes {sent}");
    assert_eq!(gcs_md5s(&gcs, "copy"), moto_md5s(&moto, "live"), "the destination is the source, byte for byte");

    // Verify agrees, proving the deleted keys absent; a second delta finds nothing to do.
    let verify = run(&["verify", "--json"], 0).json();
    assert_eq!(verify["proved_by"]["absent"], n_deleted() as u64, "{verify:#}");
    let again = run(&["delta", "--delete", "--json"], 0).json();
    // A quiet source: nothing sealed, generation 2 stands.
    assert_eq!((again["generation"].as_u64(), again["unchanged_source"].as_bool()), (Some(2), Some(true)), "{again:#}");
    assert_eq!(again["changes"]["unchanged"], (objects() + n_added() - n_deleted()) as u64, "{again:#}");
    assert_eq!(again["copy"]["copied"], 0);
    // The change set is sealed: an edited one is refused, naming it.
    let path = w.join("j/manifests/gen-0002/changes.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("added", "deleted", 1)).unwrap();
    let edited = run(&["delta", "--dry-run"], 2);
    assert!(edited.stderr.contains("changes.jsonl") && edited.stderr.contains("corrupt"), "{}", edited.stderr);
}

#[test]
fn a_listing_cut_off_seals_nothing_and_deletes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    seeded_source(w, &moto, "cut");
    let dst = w.join("dst");
    let env = moto.env();
    ferry_ok(w, &["copy", "s3://cut", "dst", "--job", "j", "--src-endpoint", &moto.endpoint], &env, 0);
    moto.boto3("for k in args[1:]: s3.delete_object(Bucket=args[0], Key=k)", &["cut", &key(0), &key(1)]);

    // Listing pages of 1000 keys: every request for the third page on is refused (the page
    // after the second), so the listing cannot finish.
    let lists = Arc::new(AtomicU64::new(0));
    let counted = lists.clone();
    let refuse: Refuse = Arc::new(move |head| {
        let listing = head.method == http::Method::GET && head.uri.query().is_some_and(|q| q.contains("list-type=2"));
        listing && counted.fetch_add(1, Ordering::SeqCst) >= 2
    });
    let proxy = CountingProxy::start_refusing(&moto.endpoint, refuse);
    // 1000 keys list in one page; make the source span three pages.
    let extra: Vec<String> = (objects()..objects() * 2 + 10).map(key).collect();
    let script = "for k in args[1:]: s3.put_object(Bucket=args[0], Key=k, Body=b'x')";
    moto.boto3(script, &[&["cut"], extra.iter().map(String::as_str).collect::<Vec<_>>().as_slice()].concat());
    let out = ferry(w, &["delta", "--delete", "--job", "j", "--src-endpoint", &proxy.endpoint], &env);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("source"), "names the side: {}", out.stderr);
    assert!(lists.load(Ordering::SeqCst) >= 3, "the listing reached the refused page");
    assert!(!w.join("j/manifests/gen-0002").exists(), "no generation sealed or left behind");
    for i in 0..2 {
        assert!(dst.join(key(i)).exists(), "{} deleted after a listing that did not finish", key(i));
    }
    // The same delta with the whole listing finishes, and deletes the two keys.
    let done = ferry_ok(w, &["delta", "--delete", "--job", "j", "--src-endpoint", &moto.endpoint, "--json"], &env, 0).json();
    assert_eq!(done["changes"]["deleted"], 2, "{done:#}");
    assert_eq!(done["changes"]["added"], extra.len() as u64, "{done:#}");
    assert!(!dst.join(key(0)).exists() && !dst.join(key(1)).exists());
}

#[test]
fn an_emptied_source_and_one_losing_too_many_objects_are_refused_unless_forced() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<(String, usize)> = (0..100).map(|i| (key(i), 10)).collect();
    write_tree(&w.join("src"), &files);
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);

    // 40 of 100 gone: above the default limit (10%).
    for i in 0..40 {
        std::fs::remove_file(w.join("src").join(key(i))).unwrap();
    }
    let out = ferry(w, &["delta", "--delete", "--job", "j"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("40 deletes exceed --max-delete 10 (of 100 objects"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {}", out.stderr);
    assert!(!w.join("j/manifests/gen-0002").exists());
    assert!(w.join("dst").join(key(0)).exists(), "nothing deleted");
    // Without --delete nothing is deleted, so nothing is refused: the deletes are recorded.
    let recorded = ferry_ok(w, &["delta", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(recorded["changes"]["deleted"], 40);
    assert_eq!(recorded["deletes"]["pending"], 40);
    assert!(w.join("dst").join(key(0)).exists());
    // verify names each as deleted at the source and still at the destination.
    let verify = ferry(w, &["verify", "--job", "j", "--json"], &[]);
    assert_eq!(verify.code, 3);
    let differences = verify.json()["differences"].as_array().unwrap().clone();
    assert_eq!(differences.iter().filter(|d| d["kind"] == "deleted-at-source").count(), 40);
    // A raised limit lets them go.
    let raised = ferry_ok(w, &["delta", "--delete", "--max-delete", "40%", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(raised["deletes"]["deleted"], 40, "{raised:#}");
    assert!(!w.join("dst").join(key(0)).exists());

    // The source emptied: refused even without --delete.
    for i in 40..100 {
        std::fs::remove_file(w.join("src").join(key(i))).unwrap();
    }
    let out = ferry(w, &["delta", "--job", "j"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the source lists no objects"), "{}", out.stderr);
    assert!(w.join("dst").join(key(50)).exists());
    let forced = ferry_ok(w, &["delta", "--delete", "--force-delete", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(forced["deletes"]["deleted"], 60, "{forced:#}");
    assert!(!w.join("dst").join(key(50)).exists());
}

#[test]
fn max_delete_takes_a_count_or_a_percentage_and_nothing_else() {
    let work = tempfile::tempdir().unwrap();
    for bad in ["ten", "-1", "101%", "%"] {
        let out = ferry(work.path(), &["delta", "--job", "j", &format!("--max-delete={bad}")], &[]);
        assert_eq!(out.code, 2, "{bad}: {}", out.stderr);
        assert!(out.stderr.contains("--max-delete"), "{bad}: {}", out.stderr);
    }
}

#[test]
fn a_delta_from_a_local_disk_to_azure_reads_touched_files_instead_of_sending_them_again() {
    use ferry_testkit::services::{AZURITE_ACCOUNT, AZURITE_KEY};
    use ferry_testkit::tree::digest_tree;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    let files: Vec<(String, usize)> = (0..objects()).map(|i| (key(i), size(i))).collect();
    write_tree(&src, &files);
    let azurite = ferry_testkit::Azurite::start();
    azurite.create_container("site");
    let proxy = CountingProxy::start(&azurite.endpoint);
    // The README's way: the emulator variables, no endpoint flag.
    let env: Vec<(String, String)> = [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", proxy.endpoint.as_str()),
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ferry_ok(w, &["copy", "src", "az://site", "--job", "j"], &env, 0);
    assert_eq!(azurite.blob_sha256s("site"), digest_tree(&src));

    // Added, overwritten (the first n_same_size() at their size), deleted, and touched: the same
    // bytes with a later modification time, which is what a local listing's entity tag is of.
    let mut sent = 0u64;
    let mut changed: Vec<(String, usize)> = (objects()..objects() + n_added()).map(|i| (key(i), size(i))).collect();
    for i in 0..n_overwritten() {
        let n = if i < n_same_size() { size(i) } else { size(i) + 11 };
        let path = src.join(key(i));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.resize(n, 0);
        bytes[0] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        sent += n as u64;
    }
    write_tree(&src, &changed);
    sent += changed.iter().map(|(_, n)| *n as u64).sum::<u64>();
    for i in n_overwritten()..n_overwritten() + n_deleted() {
        std::fs::remove_file(src.join(key(i))).unwrap();
    }
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for i in n_overwritten() + n_deleted()..n_overwritten() + n_deleted() + n_touched() {
        std::fs::File::options().write(true).open(src.join(key(i))).unwrap().set_modified(later).unwrap();
    }
    changed.clear();

    let before = proxy.uploaded();
    let summary = ferry_ok(w, &["delta", "--delete", "--job", "j", "--json"], &env, 0).json();
    let uploaded = proxy.uploaded() - before;
    let changes = &summary["changes"];
    assert_eq!(changes["added"], n_added() as u64, "{summary:#}");
    assert_eq!(changes["changed"], n_overwritten() as u64, "the same-size overwrites too: {summary:#}");
    assert_eq!(changes["deleted"], n_deleted() as u64, "{summary:#}");
    assert_eq!(changes["touched"], n_touched() as u64, "{summary:#}");
    assert_eq!(summary["copy"]["bytes_copied"], sent, "{summary:#}");
    let requests = (n_added() + n_overwritten() + n_deleted()) as u64;
    assert!(uploaded >= sent && uploaded < sent + requests * 2048, "uploaded {uploaded}, changed bytes {sent}");
    assert_eq!(azurite.blob_sha256s("site"), digest_tree(&src), "the destination is the source, byte for byte");
    // The touch is recorded: a second delta reads nothing again and finds nothing to do.
    let again = ferry_ok(w, &["delta", "--delete", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((again["changes"]["changed"].as_u64(), again["changes"]["touched"].as_u64()), (Some(0), Some(0)), "{again:#}");
    ferry_ok(w, &["verify", "--job", "j", "--all-bytes"], &env, 0);
}

/// The journal's counts, read beside a running ferry.
fn counts(job: &Path) -> Option<ferry_journal::StatusCounts> {
    if !job.join("journal.sqlite").exists() {
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async { ferry_journal::open(job, ferry_journal::JournalKind::Main).await.ok()?.counts().await.ok() })
}

/// Runs `args` and kills it (SIGKILL) once `landed` holds of the journal's counts: polled,
/// never a fixed delay. Returns whether the kill landed before the run ended.
fn kill_when(w: &Path, args: &[&str], env: &[(String, String)], landed: impl Fn(&ferry_journal::StatusCounts) -> bool) -> bool {
    let mut child =
        common::ferry_command(w, args, env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    for _ in 0..3000 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if counts(&w.join("j")).is_some_and(|c| landed(&c)) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    false
}

#[test]
fn a_delta_killed_during_its_copies_and_during_its_deletes_is_finished_by_the_next_run() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &(0..200).map(|i| (key(i), 300)).collect::<Vec<_>>());
    let s3 = ferry_testkit::S3Server::start();
    s3.create_bucket("killed");
    let proxy = CountingProxy::start(&s3.endpoint);
    let env = s3.env();
    ferry_ok(w, &["copy", "src", "s3://killed", "--job", "j", "--dst-endpoint", &proxy.endpoint], &env, 0);
    let puts_before = proxy.requests().iter().filter(|r| r.starts_with("PUT ")).count();

    // 100 added, 100 deleted; slow (20 requests a second, one object at a time) so each kill
    // lands in the middle of its phase.
    write_tree(&src, &(200..300).map(|i| (key(i), 300)).collect::<Vec<_>>());
    for i in 0..100 {
        std::fs::remove_file(src.join(key(i))).unwrap();
    }
    let args = [
        "delta",
        "--delete",
        "--max-delete",
        "50%",
        "--job",
        "j",
        "--dst-endpoint",
        &proxy.endpoint,
        "--transfers",
        "1",
        "--tpslimit",
        "20",
    ];
    let done_before = counts(&w.join("j")).unwrap().done;
    assert!(kill_when(w, &args, &env, |c| c.done >= done_before - 100 + 10 && c.pending > 0), "killed during the copies");
    assert!(kill_when(w, &args, &env, |c| c.deleted >= 10 && c.pending_delete > 0), "killed during the deletes");
    let last =
        ferry_ok(w, &["delta", "--delete", "--max-delete", "50%", "--job", "j", "--dst-endpoint", &proxy.endpoint, "--json"], &env, 0)
            .json();
    assert_eq!(last["resumed"], true, "the killed delta is finished, not listed again: {last:#}");
    assert_eq!(last["generation"], 2);
    let c = counts(&w.join("j")).unwrap();
    assert_eq!((c.objects, c.done, c.pending_delete, c.deleted), (200, 200, 0, 100));

    // The bucket holds exactly the source.
    let held = digest_tree_of_bucket(&s3.root.path().join("killed"));
    assert_eq!(held, ferry_testkit::tree::digest_tree(&src));
    // Each added object was sent once, or twice if a kill cut its upload off (one in flight).
    let puts: Vec<String> = proxy.requests().into_iter().filter(|r| r.starts_with("PUT ")).skip(puts_before).collect();
    assert!((100..=101).contains(&puts.len()), "{} puts for 100 added objects", puts.len());
}

/// What s3s-fs holds under a bucket's directory, its own files left out.
fn digest_tree_of_bucket(dir: &Path) -> BTreeMap<String, String> {
    ferry_testkit::tree::digest_tree(dir).into_iter().filter(|(k, _)| !k.contains(".s3s") && !k.ends_with(".json")).collect()
}

#[test]
fn the_lag_counts_what_is_behind_by_the_age_of_each_change_exactly() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &(0..20).map(|i| (key(i), 100)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);

    // Changes at known times (whole seconds, so every precision keeps them): added files aged
    // 10 s, 5 min, 8 min, 30 min and 3 h, one overwritten 5 min ago, two deleted.
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = |ago: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs - ago);
    let aged = [(100, 10), (101, 300), (102, 480), (103, 1800), (104, 3 * 3600)];
    write_tree(&src, &aged.iter().map(|(i, _)| (key(*i), 1000 + i)).collect::<Vec<_>>());
    for (i, ago) in aged {
        std::fs::File::options().write(true).open(src.join(key(i))).unwrap().set_modified(at(ago)).unwrap();
    }
    std::fs::write(src.join(key(0)), vec![7u8; 333]).unwrap();
    std::fs::File::options().write(true).open(src.join(key(0))).unwrap().set_modified(at(300)).unwrap();
    std::fs::remove_file(src.join(key(1))).unwrap();
    std::fs::remove_file(src.join(key(2))).unwrap();

    let summary = ferry_ok(w, &["delta", "--job", "j", "--json"], &[], 0).json();
    let lag = &summary["lag_listed"];
    assert_eq!(lag["objects"], 6, "{lag:#}");
    assert_eq!(lag["bytes"], 333 + (1100..=1104).sum::<u64>(), "{lag:#}");
    assert_eq!(lag["deletes"], 2, "{lag:#}");
    let oldest: chrono::DateTime<chrono::Utc> = serde_json::from_value(lag["oldest_change"].clone()).unwrap();
    assert_eq!(oldest.timestamp() as u64, secs - 3 * 3600, "{lag:#}");
    let buckets = ["under_1m", "from_1m_to_15m", "from_15m_to_1h", "over_1h", "age_unknown"].map(|b| lag[b].as_u64().unwrap());
    assert_eq!(buckets, [1, 3, 1, 1, 0], "{lag:#}");
    // Copied: nothing behind but the deletes (no --delete).
    let after = &summary["lag"];
    assert_eq!((after["objects"].as_u64(), after["deletes"].as_u64()), (Some(0), Some(2)), "{after:#}");
    let status = ferry_ok(w, &["status", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(status["lag"]["deletes"], 2, "{status:#}");
    let text = ferry_ok(w, &["status", "--job", "j"], &[], 0).stdout;
    assert!(text.contains("2 deletes to carry out"), "{text}");
}

/// The delta reports of the job, oldest first.
fn delta_reports(job: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<_> = std::fs::read_dir(job.join("reports"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.to_string_lossy().contains("/delta-")).collect())
        .unwrap_or_default();
    names.sort();
    names.iter().filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok()).collect()
}

#[test]
fn a_watch_replays_each_change_and_stops_cleanly_between_passes_on_sigterm() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &(0..10).map(|i| (key(i), 100)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    let child = common::ferry_command(w, &["delta", "--watch", "--interval", "1s", "--delete", "--job", "j"], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..1500 {
            if done() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    };
    wait_for("the first pass", &|| !delta_reports(&w.join("j")).is_empty());
    write_tree(&src, &[(key(50), 123)]);
    std::fs::remove_file(src.join(key(3))).unwrap();
    wait_for("a pass copying the change", &|| w.join("dst").join(key(50)).exists() && !w.join("dst").join(key(3)).exists());
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped between passes"), "{stderr}");
    // Every generation the watch made is sealed, and each pass wrote its report.
    let reports = delta_reports(&w.join("j"));
    let last = reports.last().unwrap();
    let generations = std::fs::read_dir(w.join("j/manifests")).unwrap().count();
    assert_eq!(generations as u64, last["generation"].as_u64().unwrap(), "no unsealed generation left");
    assert!(reports.iter().any(|r| r["changes"]["added"] == 1 && r["deletes"]["deleted"] == 1), "{reports:#?}");
    ferry_ok(w, &["verify", "--job", "j"], &[], 0);
}

#[test]
fn a_watch_until_lag_0_stops_once_a_pass_finds_the_source_quiet() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &(0..10).map(|i| (key(i), 100)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    write_tree(&w.join("src"), &[(key(60), 10)]);
    // The first pass finds one change: not quiet; the second finds none and stops.
    let out = ferry_ok(w, &["delta", "--watch", "--interval", "1s", "--until-lag", "0", "--job", "j"], &[], 0);
    assert!(out.stderr.contains("quiet"), "{}", out.stderr);
    let reports = delta_reports(&w.join("j"));
    assert_eq!(reports.len(), 2);
    // The quiet pass sealed nothing: generation 2 (the change) stands, no manifest a pass.
    assert_eq!((reports[1]["unchanged_source"].as_bool(), reports[1]["generation"].as_u64()), (Some(true), Some(2)), "{:#}", reports[1]);
    assert_eq!(std::fs::read_dir(w.join("j/manifests")).unwrap().count(), 2);
    let quiet = ferry_ok(w, &["delta", "--job", "j"], &[], 0);
    assert!(quiet.stdout.contains("no change since generation 2"), "{}", quiet.stdout);
    assert_eq!(std::fs::read_dir(w.join("j/manifests")).unwrap().count(), 2);
    // --interval and --until-lag belong to --watch.
    let out = ferry(w, &["delta", "--until-lag", "0", "--job", "j"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// Sets `path`'s modification time to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

// Hostile-user findings on delta (issue 15), each red before its fix.

#[test]
fn a_file_replaced_at_the_same_size_and_modification_time_is_copied_again() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (name, body) in [("k1", "v1\n"), ("k2", "v2\n"), ("k3", "v3\n"), ("k4", "v4\n")] {
        std::fs::write(src.join(name), body).unwrap();
        set_mtime(&src.join(name), 1_700_000_000);
    }
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    // `mv k2 k1`, then k3 rewritten with its time put back (`touch -r`): same sizes, same times.
    std::fs::rename(src.join("k2"), src.join("k1")).unwrap();
    std::fs::write(src.join("k2"), "x2\n").unwrap();
    set_mtime(&src.join("k2"), 1_700_000_000);
    std::fs::write(src.join("k3"), "x3\n").unwrap();
    set_mtime(&src.join("k3"), 1_700_000_000);
    let summary = ferry_ok(w, &["delta", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(summary["changes"]["changed"], 3, "{summary:#}");
    assert_eq!(ferry_testkit::tree::digest_tree(&w.join("dst")), ferry_testkit::tree::digest_tree(&src));
    // A touch alone is still only a touch.
    set_mtime(&src.join("k4"), 1_800_000_000);
    let touched = ferry_ok(w, &["delta", "--job", "j", "--json"], &[], 0).json();
    assert_eq!((touched["changes"]["touched"].as_u64(), touched["copy"]["copied"].as_u64()), (Some(1), Some(0)), "{touched:#}");
}

#[test]
fn a_delete_never_removes_what_the_job_did_not_copy() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &(0..20).map(|i| (key(i), 10)).collect::<Vec<_>>());
    std::fs::create_dir_all(w.join("dst").join(key(0)).parent().unwrap()).unwrap();
    std::fs::write(w.join("dst").join(key(0)), "PRECIOUS").unwrap();
    ferry_ok(w, &["plan", "src", "dst", "--job", "j"], &[], 0);
    std::fs::remove_file(w.join("src").join(key(0))).unwrap();
    let summary = ferry_ok(w, &["delta", "--delete", "--max-delete", "5", "--job", "j", "--json"], &[], 0).json();
    assert_eq!((summary["deletes"]["deleted"].as_u64(), summary["deletes"]["left_not_copied"].as_u64()), (Some(0), Some(1)), "{summary:#}");
    assert_eq!(std::fs::read_to_string(w.join("dst").join(key(0))).unwrap(), "PRECIOUS");
}

#[test]
fn a_refused_delta_records_nothing_and_keys_back_from_a_short_listing_are_not_copied_again() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &(0..20).map(|i| (key(i), 10)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    // Refused (10 deletes of 20, over the default 10%) with a touched file: nothing recorded,
    // so the next dry run still sees the touch.
    set_mtime(&src.join(key(19)), 1_800_000_000);
    let away = w.join("away");
    std::fs::create_dir_all(&away).unwrap();
    for i in 0..10 {
        std::fs::rename(src.join(key(i)), away.join(format!("{i}"))).unwrap();
    }
    let out = ferry(w, &["delta", "--delete", "--job", "j"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let dry = ferry_ok(w, &["delta", "--dry-run", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(dry["changes"]["touched"], 1, "{dry:#}");
    // Recorded without --delete: ten pending deletes. The files come back as they were: the
    // deletes are gone, nothing is copied again, and --delete is not refused.
    let recorded = ferry_ok(w, &["delta", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(recorded["deletes"]["pending"], 10, "{recorded:#}");
    for i in 0..10 {
        std::fs::rename(away.join(format!("{i}")), src.join(key(i))).unwrap();
    }
    let back = ferry_ok(w, &["delta", "--delete", "--job", "j", "--json"], &[], 0).json();
    assert_eq!(back["changes"]["returned"], 10, "{back:#}");
    assert_eq!((back["copy"]["copied"].as_u64(), back["deletes"]["deleted"].as_u64()), (Some(0), Some(0)), "{back:#}");
    ferry_ok(w, &["verify", "--job", "j"], &[], 0);
}

#[test]
fn flags_that_mean_nothing_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[(key(0), 10)]);
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    for args in [&["delta", "--job", "j", "--max-delete", "5"][..], &["delta", "--job", "j", "--watch", "--interval", "0s"]] {
        let out = ferry(w, args, &[]);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_delete_leaves_an_object_another_writer_put_at_the_destination_since() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &(0..20).map(|i| (key(i), 10)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    std::fs::remove_file(w.join("src").join(key(0))).unwrap();
    std::fs::remove_file(w.join("src").join(key(1))).unwrap();
    // Someone else's object under a key ferry copied: not ferry's to delete.
    std::fs::write(w.join("dst").join(key(0)), "written by the application after the copy").unwrap();
    let summary = ferry_ok(w, &["delta", "--delete", "--max-delete", "5", "--job", "j", "--json"], &[], 0).json();
    assert_eq!((summary["deletes"]["deleted"].as_u64(), summary["deletes"]["left_changed"].as_u64()), (Some(1), Some(1)), "{summary:#}");
    assert_eq!(std::fs::read_to_string(w.join("dst").join(key(0))).unwrap(), "written by the application after the copy");
    assert!(!w.join("dst").join(key(1)).exists());
    let verify = ferry(w, &["verify", "--job", "j", "--json"], &[]);
    assert_eq!(verify.code, 3, "named: {}", verify.stdout);
}

// Issue 15 (left from the delta work): a file that becomes a folder (`a` gone, `a/b` added)
// deadlocked every delta: `a/b` cannot be written while `a` is a file at a local destination,
// and the delete of `a` waited for every copy to succeed. Now the deletes that block the failed
// copies go first, and the copies are tried again.
#[test]
fn a_file_that_becomes_a_folder_is_replayed_by_one_delta() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &[("a".to_string(), 10), ("keep/x".to_string(), 20)]);
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    std::fs::remove_file(src.join("a")).unwrap();
    write_tree(&src, &[("a/b".to_string(), 30), ("a/c/d".to_string(), 40)]);
    // Without --delete the copy cannot land, and says so.
    let held = ferry(w, &["delta", "--job", "j"], &[]);
    assert_eq!(held.code, 1, "{}\n{}", held.stdout, held.stderr);
    assert!(w.join("dst/a").is_file());
    let done = ferry_ok(w, &["delta", "--job", "j", "--delete", "--max-delete", "50%", "--json"], &[], 0).json();
    assert_eq!((done["deletes"]["deleted"].as_u64(), done["copy"]["failed"].as_u64()), (Some(1), Some(0)), "{done:#}");
    assert_eq!(ferry_testkit::tree::digest_tree(&w.join("dst")), ferry_testkit::tree::digest_tree(&src));
    ferry_ok(w, &["verify", "--job", "j"], &[], 0);
}

// Issue 15 (left from the delta work): S3 rewrites an object's metadata by copying it onto
// itself, which keeps its ETag and changes only its last-modified time: the delta took it as
// touched and never carried the new metadata. A touched object is now HEADed, and one whose
// headers or metadata differ from what its copy carried is copied again.
#[test]
fn a_metadata_rewrite_that_keeps_the_etag_is_copied_again() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    moto.create_bucket("meta-src");
    moto.create_bucket("meta-dst");
    moto.boto3_on(
        "meta-src",
        r#"
for i in range(4):
    s3.put_object(Bucket=bucket, Key=f"o{i}", Body=b"x" * (100 + i), Metadata={"team": "old"}, ContentType="text/plain")
"#,
    );
    let env = moto.env();
    let ep = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", moto.endpoint.as_str()];
    ferry_ok(w, &[&["copy", "s3://meta-src", "s3://meta-dst", "--job", "j"][..], &ep].concat(), &env, 0);
    let etags = || moto.boto3_on("meta-src", "print(sorted((o['Key'], o['ETag']) for o in s3.list_objects_v2(Bucket=bucket)['Contents']))");
    let before = etags();
    // o1's metadata rewritten in place; o2 touched (copied onto itself, metadata kept).
    moto.boto3_on(
        "meta-src",
        r#"
import time
time.sleep(1.1)
s3.copy_object(Bucket=bucket, Key="o1", CopySource={"Bucket": bucket, "Key": "o1"}, Metadata={"team": "new"}, MetadataDirective="REPLACE", ContentType="text/plain")
s3.copy_object(Bucket=bucket, Key="o2", CopySource={"Bucket": bucket, "Key": "o2"}, Metadata={"team": "old"}, MetadataDirective="REPLACE", ContentType="text/plain")
"#,
    );
    assert_eq!(etags(), before, "a metadata rewrite keeps the ETag");
    let delta = ferry_ok(w, &["delta", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((delta["changes"]["changed"].as_u64(), delta["changes"]["touched"].as_u64()), (Some(1), Some(1)), "{delta:#}");
    assert_eq!(delta["copy"]["copied"].as_u64(), Some(1), "{delta:#}");
    let team = moto.boto3_on("meta-dst", "print(s3.head_object(Bucket=bucket, Key='o1')['Metadata'].get('team'))");
    assert_eq!(team.trim(), "new");
    ferry_ok(w, &["verify", "--job", "j"], &env, 0);
}

/// The manifest SHA-256 a device's shipment header declares.
fn declared_manifest_sha256(device: &Path) -> String {
    let text = std::fs::read_to_string(device.join("ferry-shipment.jsonl")).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    header["manifest_sha256"].as_str().unwrap().to_string()
}

// Issue 15: "after an ingest, `ferry delta` on the ingest's job starts from the shipment's
// manifest generation". The export ships its manifest on every device; the ingest takes the
// source's identity of each object from it (an S3 ETag, its time); the delta on the ingest job
// lists the exported bucket and replays exactly what changed there since the export — the
// same-size overwrites found by their ETags, the touched objects not sent again.
#[test]
fn a_delta_of_an_ingest_job_lists_the_exported_source_and_replays_what_changed_since_the_export() {
    use common::Tmpfs;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    seeded_source(w, &moto, "live");
    // What no disk keeps and no listing carries travels through the shipment: a type ferry
    // could not guess from the name, user metadata and a system header, on the objects the
    // delta will touch and on some it will not.
    let dressed: Vec<String> = (0..n_overwritten() + n_deleted() + n_touched() + 20).map(key).collect();
    let dress = r#"
for k in json.loads(args[1]):
    s3.copy_object(Bucket=args[0], Key=k, CopySource={"Bucket": args[0], "Key": k}, MetadataDirective="REPLACE",
                   ContentType="text/x-ferry-shipped", Metadata={"owner": "team " + k}, CacheControl="max-age=77")
"#;
    moto.boto3(dress, &["live", &serde_json::to_string(&dressed).unwrap()]);
    let env = moto.env();
    let devices = [Tmpfs::mount(&w.join("d1"), 16), Tmpfs::mount(&w.join("d2"), 16)];
    let (d1, d2) = (devices[0].0.to_string_lossy().into_owned(), devices[1].0.to_string_lossy().into_owned());
    let export = ["export", "s3://live", "--to", &d1, "--to", &d2, "--job", "xjob", "--layout", "plain", "--src-endpoint", &moto.endpoint];
    let exported = ferry_ok(w, &[&export[..], &["--json"]].concat(), &env, 0).json();
    assert_eq!(exported["copied"], objects() as u64, "{exported:#}");
    for d in &devices {
        let shipped = d.0.join("ferry-manifest/gen-0001/manifest.json");
        assert_eq!(
            ferry_testkit::tree::file_sha256(&shipped),
            declared_manifest_sha256(&d.0),
            "{} carries the shipment's manifest",
            d.0.display()
        );
    }

    let gcs = FakeGcs::start();
    gcs.create_bucket("landing");
    let proxy = CountingProxy::start(&gcs.endpoint);
    let ingest = ["ingest", "--from", &d1, "--from", &d2, "gs://landing", "--job", "ij", "--dst-endpoint", &proxy.endpoint, "--json"];
    let ingested = ferry_ok(w, &ingest, &env, 0).json();
    assert_eq!(ingested["copied"], objects() as u64, "{ingested:#}");
    assert_eq!(ingested["provenance"]["identities"], objects() as u64, "every object took the source's identity: {ingested:#}");
    assert_eq!(gcs_md5s(&gcs, "landing"), moto_md5s(&moto, "live"));
    let dressed_at_destination = || {
        let objects = gcs.objects("landing");
        let dressed_there = |k: &String| {
            let o = objects.iter().find(|o| o["name"] == k.as_str()).unwrap_or_else(|| panic!("{k} not at the destination"));
            (o["contentType"].as_str(), o["metadata"]["owner"].as_str(), o["cacheControl"].as_str())
                == (Some("text/x-ferry-shipped"), Some(format!("team {k}").as_str()), Some("max-age=77"))
        };
        (n_overwritten() + n_deleted()..dressed.len()).map(|i| &dressed[i]).filter(|k| !dressed_there(k)).cloned().collect::<Vec<_>>()
    };
    assert_eq!(dressed_at_destination(), Vec::<String>::new(), "the ingest wrote the source's type, metadata and headers");

    let sent = change_source(&moto, "live");
    let delta = |extra: &[&str], code: i32| {
        let args =
            [&["delta", "--job", "ij", "--src-endpoint", &moto.endpoint, "--dst-endpoint", &proxy.endpoint, "--json"][..], extra].concat();
        ferry_ok(w, &args, &env, code).json()
    };
    let job_toml = || std::fs::read_to_string(w.join("ij/job.toml")).unwrap();
    // A delta that cannot reach the source keeps nothing: the job still reads from its disks.
    let kept = job_toml();
    let args = ["delta", "--job", "ij", "--src-endpoint", "http://127.0.0.1:1", "--dst-endpoint", &proxy.endpoint];
    let unreachable = ferry(w, &args, &env);
    assert_eq!(unreachable.code, 2, "{}", unreachable.stderr);
    assert_eq!(job_toml(), kept, "a refused delta moved the job");
    let dry = delta(&["--delete", "--dry-run"], 0);
    assert_eq!(dry["changes"]["changed"], n_overwritten() as u64, "{dry:#}");
    assert!(job_toml().contains(&d1), "a dry run leaves the job reading from its disks:\n{}", job_toml());

    let before = proxy.uploaded();
    let summary = delta(&["--delete"], 0);
    let uploaded = proxy.uploaded() - before;
    let changes = &summary["changes"];
    assert_eq!(summary["source"], "s3://live/", "{summary:#}");
    assert_eq!(changes["added"], n_added() as u64, "{summary:#}");
    assert_eq!(changes["changed"], n_overwritten() as u64, "the same-size overwrites too: {summary:#}");
    assert_eq!(changes["deleted"], n_deleted() as u64, "{summary:#}");
    assert_eq!(changes["touched"], n_touched() as u64, "{summary:#}");
    assert_eq!(summary["copy"]["copied"], (n_added() + n_overwritten()) as u64, "{summary:#}");
    assert_eq!(summary["copy"]["bytes_copied"], sent, "{summary:#}");
    assert_eq!(summary["deletes"]["deleted"], n_deleted() as u64, "{summary:#}");
    let requests = (n_added() + n_overwritten() + n_deleted()) as u64;
    assert!(uploaded >= sent && uploaded < sent + requests * 2048, "uploaded {uploaded}, changed bytes {sent}");
    assert_eq!(gcs_md5s(&gcs, "landing"), moto_md5s(&moto, "live"), "the destination is the source, byte for byte");
    assert_eq!(dressed_at_destination(), Vec::<String>::new(), "touched and untouched objects keep what the source gave them");
    assert!(job_toml().contains("s3://live"), "the job reads from the exported bucket now:\n{}", job_toml());

    // From now on it is a job like any other: verify passes, a quiet source has nothing to do,
    // and the disks cannot be ingested into it again.
    ferry_ok(w, &["verify", "--job", "ij", "--dst-endpoint", &proxy.endpoint], &env, 0);
    let again = delta(&["--delete"], 0);
    assert_eq!((again["unchanged_source"].as_bool(), again["copy"]["copied"].as_u64()), (Some(true), Some(0)), "{again:#}");
    let refused = ferry(w, &ingest, &env);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("a delta made this job read from s3://live"), "{}", refused.stderr);

    // The source drops what the shipment carried (the same bytes put again bare): the copies
    // lose it too, nothing of the shipment is written back, and verify agrees.
    let first = n_overwritten() + n_deleted() + n_touched();
    let stripped: Vec<String> = dressed[first..first + 5].to_vec();
    let strip = r#"
for k in json.loads(args[1]):
    s3.put_object(Bucket=args[0], Key=k, Body=s3.get_object(Bucket=args[0], Key=k)["Body"].read())
"#;
    moto.boto3(strip, &["live", &serde_json::to_string(&stripped).unwrap()]);
    let bare = delta(&[], 0);
    assert_eq!((bare["changes"]["changed"].as_u64(), bare["copy"]["copied"].as_u64()), (Some(5), Some(5)), "{bare:#}");
    let objects = gcs.objects("landing");
    for k in &stripped {
        let o = objects.iter().find(|o| o["name"] == k.as_str()).unwrap();
        assert!(o["metadata"]["owner"].is_null() && o["cacheControl"].is_null(), "{k} kept the shipped attributes: {o:#}");
        assert_ne!(o["contentType"], "text/x-ferry-shipped", "{k}");
    }
    ferry_ok(w, &["verify", "--job", "ij", "--dst-endpoint", &proxy.endpoint], &env, 0);
}
