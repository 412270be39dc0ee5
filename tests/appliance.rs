//! Disk export and ingest: a tree spread over three size-limited devices (tmpfs mounts), each
//! device's SHA256SUMS checked by `sha256sum -c`, ingested into S3, Azure and GCS and read back
//! byte-identical; a flipped byte, a deleted file and a stray file on a "disk" named at ingest;
//! `--check` naming every bad key per layout; keys that would leave the root refused; an export
//! killed midway finished without rewriting a finished file.

mod common;

use common::{Tmpfs, ferry, ferry_command, ferry_ok};
use ferry_testkit::tree::{assert_same_tree, awkward_files, digest_tree, write_tree};
use ferry_testkit::{Azurite, FakeGcs, S3Server};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use ferry_journal::Routes;

/// Runs a journal call to its end on this thread.
fn block_on<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(call)
}

/// `sha256sum -c SHA256SUMS` at a device root.
fn sha256sum_check(root: &Path) {
    let out = Command::new("sha256sum").args(["-c", "--quiet", "--strict", "SHA256SUMS"]).current_dir(root).output().unwrap();
    assert!(
        out.status.success(),
        "sha256sum -c failed on {}:\n{}{}",
        root.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files a device's shipment manifest lists: key → path on the device.
fn shipped(root: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root.join("ferry-shipment.jsonl")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"].as_str().unwrap().to_string(), v["path"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Data files on a device (shipment files and the shipped manifest left out).
fn data_files(root: &Path) -> BTreeSet<String> {
    let shipment = |k: &str| ["SHA256SUMS", "ferry-shipment.jsonl", "ferry-bom.txt"].contains(&k) || k.starts_with("ferry-manifest/");
    digest_tree(root).into_keys().filter(|k| !shipment(k)).collect()
}

#[test]
fn export_spreads_over_three_small_devices_and_ingests_byte_identical_to_s3_azure_and_gcs() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    let files = awkward_files(false);
    write_tree(&src, &files);
    // 64 MiB + 1 needs the big device; the rest must spread over all three.
    let devices = [Tmpfs::mount(&w.join("d1"), 72), Tmpfs::mount(&w.join("d2"), 8), Tmpfs::mount(&w.join("d3"), 8)];
    let to: Vec<String> = devices.iter().map(|d| d.0.to_string_lossy().into_owned()).collect();

    let mut args = vec!["export", "src", "--job", "xjob", "--layout", "plain", "--json"];
    for d in &to {
        args.extend(["--to", d]);
    }
    let export = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(export["copied"], files.len(), "{export}");
    assert_eq!(export["unplaced"], 0, "{export}");
    let mut all = BTreeMap::new();
    for (i, d) in devices.iter().enumerate() {
        let listed = shipped(&d.0);
        assert!(!listed.is_empty(), "device {} got nothing: {export}", i + 1);
        assert_eq!(listed.values().cloned().collect::<BTreeSet<_>>(), data_files(&d.0), "device {} holds exactly its shipment", i + 1);
        sha256sum_check(&d.0);
        let digest = export["devices"][i]["shipment_sha256"].as_str().unwrap();
        assert_eq!(ferry_testkit::tree::file_sha256(&d.0.join("ferry-shipment.jsonl")), digest, "the printed digest is the manifest's");
        for key in listed.into_keys() {
            assert!(all.insert(key.clone(), i).is_none(), "{key} shipped twice");
        }
    }
    assert_eq!(all.len(), files.len(), "every object shipped once");
    assert_eq!(all["sizes/64MiB+1.bin"], 0, "the largest object goes on the device with room for it");

    // A second run has nothing to write and rewrites no shipment differently.
    let again = ferry_ok(w, &args, &[], 0).json();
    assert_eq!((again["copied"].as_u64(), again["already_done"].as_u64()), (Some(0), Some(files.len() as u64)), "{again}");

    let s3 = S3Server::start();
    s3.create_bucket("landing");
    let azurite = Azurite::start();
    azurite.create_container("landing");
    let gcs = FakeGcs::start();
    gcs.create_bucket("landing");
    let env = s3.env();
    let digests: Vec<String> = (0..3).map(|i| export["devices"][i]["shipment_sha256"].as_str().unwrap().to_string()).collect();
    for (name, dst, endpoint) in
        [("s3", "s3://landing/in", &s3.endpoint), ("az", "az://landing/in", &azurite.endpoint), ("gs", "gs://landing/in", &gcs.endpoint)]
    {
        let job = format!("ingest-{name}");
        let mut args = vec!["ingest", dst, "--job", &job, "--dst-endpoint", endpoint, "--json"];
        for (d, digest) in to.iter().zip(&digests) {
            args.extend(["--from", d, "--expect-digest", digest]);
        }
        let ingest = ferry_ok(w, &args, &env, 0).json();
        assert_eq!(ingest["copied"], files.len(), "{name}: {ingest}");
        assert_eq!(ingest["verified_by"]["shipment sha256"], files.len(), "{name}: every file proved by its shipped SHA-256: {ingest}");
        assert_eq!(ingest["provenance"]["generation"], 1, "{ingest}");
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(w.join(&job).join("shipment.json")).unwrap()).unwrap();
        assert_eq!(record["export_id"], export_id(&devices[0].0), "the ingest job records the export it came from");

        let verified = ferry_ok(w, &["verify", "--job", &job, "--json"], &env, 0).json();
        assert_eq!(verified["matched"], files.len(), "{name}: {verified}");
        let back = format!("back-{name}");
        let copied =
            ferry_ok(w, &["copy", dst, &back, "--job", &format!("{back}-job"), "--src-endpoint", endpoint, "--json"], &env, 0).json();
        assert_eq!(copied["failed"], 0, "{name}: {copied}");
        assert_same_tree(&src, &w.join(&back));
    }

    // In transit: a byte flipped on device 2, a file lost from device 3, a stray file on device 1.
    let on = |i: usize| shipped(&devices[i].0);
    let (flipped_key, flipped_path) = on(1).into_iter().find(|(k, _)| k.starts_with("small/")).unwrap();
    let flipped = devices[1].0.join(&flipped_path);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&flipped, bytes).unwrap();
    let (lost_key, lost_path) = on(2).into_iter().next().unwrap();
    std::fs::remove_file(devices[2].0.join(&lost_path)).unwrap();
    std::fs::write(devices[0].0.join("stray.txt"), "not shipped").unwrap();

    let mut args = vec!["ingest", "s3://landing/again", "--job", "ingest-damaged", "--dst-endpoint", &s3.endpoint, "--json"];
    for d in &to {
        args.extend(["--from", d]);
    }
    let damaged = ferry_ok(w, &args, &env, 3).json();
    let named = |what: &str| damaged[what].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(named("altered"), std::slice::from_ref(&flipped_key), "{damaged}");
    assert_eq!(named("missing"), std::slice::from_ref(&lost_key), "{damaged}");
    assert_eq!(damaged["extra"], serde_json::json!(["device 1: stray.txt"]), "{damaged}");
    assert_eq!(damaged["copied"], files.len() - 2, "{damaged}");
    let back =
        ferry_ok(w, &["copy", "s3://landing/again", "back-damaged", "--job", "back-damaged-job", "--src-endpoint", &s3.endpoint], &env, 0);
    drop(back);
    assert!(!w.join("back-damaged").join(&flipped_key).exists(), "an altered file was written to the destination as good");
    assert!(w.join("back-damaged").join("empty").exists() || flipped_key == "empty");
}

fn export_id(device: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(device.join("ferry-shipment.jsonl")).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    header["export_id"].clone()
}

#[test]
fn check_lists_every_name_each_layout_renames_or_refuses() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let long = vec!["n".repeat(200); 5].join("/"); // 1004 bytes: fits alone, not under a 24-byte prefix
    let keys: Vec<String> = [
        "top.txt",
        "My_Photos/a.jpg",
        "data/fine.txt",
        "data/a:b.txt",
        "data/trailing.",
        "data/CON.txt",
        "data/Case.txt",
        "data/case.txt",
        "data/back\\slash",
        "data/line\nfeed",
        "data/cr\rreturn",
        "SHA256SUMS",
        ".well-known/acme-challenge/token",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([long.clone()])
    .collect();
    let files: Vec<(String, usize)> = keys.iter().map(|k| (k.clone(), 3)).collect();
    write_tree(&w.join("src"), &files);
    ferry_ok(w, &["plan", "src", "dst", "--job", "job"], &[], 0);

    let set = |keys: &[&str]| -> BTreeSet<String> { keys.iter().map(|k| k.to_string()).collect() };
    let everywhere = ["data/back\\slash", "data/cr\rreturn"];
    // (layout, options, refused beyond `everywhere`, renamed)
    type Expected<'a> = (&'a str, &'a [&'a str], BTreeSet<String>, BTreeSet<String>);
    let expected: [Expected; 4] = [
        ("plain", &[], set(&["SHA256SUMS"]), set(&[])),
        (
            "databox-disk",
            &[],
            // Top-level files have no container; Case.txt and case.txt are one name on NTFS.
            set(&["top.txt", "SHA256SUMS", "data/a:b.txt", "data/trailing.", "data/CON.txt", "data/case.txt", "data/line\nfeed"]),
            // Container names made valid: the first folder lowercased, trimmed, cut to 63.
            set(&["My_Photos/a.jpg", ".well-known/acme-challenge/token", long.as_str()]),
        ),
        (
            "transfer-appliance",
            &["--prefix", "ingest/from/the/old/site"],
            set(&["SHA256SUMS", ".well-known/acme-challenge/token", "data/line\nfeed", long.as_str()]),
            set(&[]),
        ),
        ("snowball", &[], set(&["SHA256SUMS"]), set(&[])),
    ];
    for (layout, options, refused, renamed) in expected {
        let mut args = vec!["export", "--job", "job", "--check", "--layout", layout, "--json"];
        args.extend(options);
        let check = ferry_ok(w, &args, &[], 1).json();
        let findings = check["findings"].as_array().unwrap();
        let of = |action: &str| -> BTreeSet<String> {
            findings.iter().filter(|f| f["action"] == action).map(|f| f["key"].as_str().unwrap().to_string()).collect()
        };
        let want: BTreeSet<String> = refused.into_iter().chain(everywhere.iter().map(|k| k.to_string())).collect();
        assert_eq!(of("refused"), want, "{layout}: refused keys\n{check:#}");
        assert_eq!(of("renamed"), renamed, "{layout}: renamed keys\n{check:#}");
        assert!(findings.iter().all(|f| !f["reason"].as_str().unwrap().is_empty()), "{layout}: every finding says why");
        assert!(!w.join("job/export/journal.sqlite").exists(), "a check keeps no export state");
    }
    // Text output lists each key with its reason.
    let text = ferry_ok(w, &["export", "--job", "job", "--check", "--layout", "databox-disk"], &[], 1).stdout;
    assert!(text.contains("renamed: My_Photos/a.jpg -> BlockBlob/my-photos/a.jpg"), "{text}");
    assert!(text.contains("refused: data/CON.txt: \"CON.txt\" is a reserved name"), "{text}");
}

#[test]
fn keys_that_would_leave_the_export_root_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("keys");
    let bad = ["../../etc/passwd", "/abs", "in/../../escape.txt", "double//slash.txt", "dot/./x"];
    let objects: Vec<_> =
        bad.iter().chain(&["good/file.txt"]).map(|key| (*key, bytes::Bytes::from(format!("contents of {key}")))).collect();
    gcs.put_objects("keys", &objects, Some("application/x-ferry-test"));
    let device = w.join("box/device");
    std::fs::create_dir_all(&device).unwrap();
    for layout in ["plain", "snowball", "transfer-appliance", "databox-disk"] {
        let job = format!("job-{layout}");
        let args =
            ["export", "gs://keys/", "--to", "box/device", "--job", &job, "--layout", layout, "--src-endpoint", &gcs.endpoint, "--json"];
        let run = ferry_ok(w, &args, &[], 1).json();
        let refused: BTreeSet<&str> =
            run["findings"].as_array().unwrap().iter().filter(|f| f["action"] == "refused").map(|f| f["key"].as_str().unwrap()).collect();
        for key in bad {
            assert!(refused.contains(key), "{layout}: {key} not refused: {run}");
        }
        assert_eq!(run["copied"], 1, "{layout}: the good key is exported: {run}");
    }
    // Nothing was written anywhere but under the device root.
    let outside: Vec<String> =
        digest_tree(w).into_keys().filter(|k| !k.starts_with("box/device/") && !k.starts_with("job-") && !k.starts_with(".home")).collect();
    assert!(outside.is_empty(), "written outside the device root: {outside:?}");
    assert!(!Path::new("/abs").exists(), "/abs was written at the file system root");
    assert!(device.join("good/file.txt").exists() && device.join("BlockBlob/good/file.txt").exists());

    // The source's content type travels in the shipment manifest and is restored at ingest
    // (the disk itself would only suggest text/plain for a .txt).
    // (This device holds the last export's files and the earlier ones' too: those are extra.)
    gcs.create_bucket("landing");
    let args = ["ingest", "--from", "box/device", "gs://landing/", "--job", "ingest", "--dst-endpoint", &gcs.endpoint, "--json"];
    let ingest = ferry_ok(w, &args, &[], 3).json();
    assert_eq!(ingest["extra"], serde_json::json!(["device 1: good/file.txt"]), "{ingest}");
    assert_eq!(ingest["copied"], 1, "{ingest}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let loc = ferry_core::Location::parse("gs://landing/").unwrap();
        let p = ferry_providers::open(
            &loc,
            &ferry_providers::Connect { endpoint: Some(gcs.endpoint.clone()), profile: None, ..Default::default() },
            &ferry_providers::RunContext::unlimited(),
        )
        .await
        .unwrap();
        let head = p.head("good/file.txt").await.unwrap().expect("ingested");
        assert_eq!(head.content_type.as_deref(), Some("application/x-ferry-test"));
    });
    // A delta of the ingest job lists the bucket the disk was exported from, not the disk (whose
    // files, the shipment manifest among them, would be replayed under their paths there): the
    // keys the layout refused, which no disk carried, are what it would add.
    let names = gcs.object_names("landing");
    let args = ["delta", "--job", "ingest", "--src-endpoint", &gcs.endpoint, "--dst-endpoint", &gcs.endpoint, "--dry-run", "--json"];
    let delta = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(delta["source"], "gs://keys/", "{delta:#}");
    assert_eq!(
        (delta["changes"]["added"].as_u64(), delta["changes"]["unchanged"].as_u64()),
        (Some(bad.len() as u64), Some(1)),
        "{delta:#}"
    );
    assert!(!w.join("ingest/manifests/gen-0002").exists());
    assert_eq!(gcs.object_names("landing"), names);
}

#[test]
fn an_export_killed_midway_finishes_without_rewriting_finished_files() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<(String, usize)> =
        (0..300).map(|i| (format!("f/{i:03}.bin"), 512 << 10)).chain([("big.bin".to_string(), 32 << 20)]).collect();
    write_tree(&w.join("src"), &files);
    std::fs::create_dir_all(w.join("dev")).unwrap();
    let args = ["export", "src", "--to", "dev", "--job", "job", "--layout", "plain", "--transfers", "1", "--part-size", "1MiB"];
    // Files the journal had finished at each kill, with their inode and mtime then.
    let mut finished: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
    let mut kills = 0;
    // Each run is killed once it has finished a few more files than the last (never after a
    // fixed delay: a loaded machine may not have started by then).
    let export_journal = w.join("job/export/journal.sqlite");
    let done_on_device = || done_count(&export_journal, |j| block_on(j.on_device(0, true)).map(|(n, _)| n));
    for _ in 0..3 {
        let mut child = ferry_command(w, &args, &[]).stdout(std::process::Stdio::null()).spawn().unwrap();
        if !finishes_more(&mut child, done_on_device, 10) {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let journal = ferry_journal::SqliteJournal::open(&export_journal).unwrap();
        for row in block_on(journal.done_on_device(0, "", 100_000)).unwrap() {
            let meta = std::fs::metadata(w.join("dev").join(row.dst_key())).unwrap();
            finished.entry(row.dst_key().to_string()).or_insert((meta.ino(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    assert!(kills >= 2, "the export finished before two kills landed: make it larger");
    assert!(!finished.is_empty(), "no file was finished before the kills: nothing to prove");
    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["export"]["counts"]["objects"], files.len(), "{status}");
    assert!(status["export"]["counts"]["done"].as_u64().unwrap() >= finished.len() as u64, "{status}");
    let done = ferry_ok(w, &[&args[..], &["--json"]].concat(), &[], 0).json();
    assert_eq!(done["already_done"].as_u64().unwrap() + done["copied"].as_u64().unwrap(), files.len() as u64, "{done}");
    for (path, (ino, mtime, nsec)) in &finished {
        let meta = std::fs::metadata(w.join("dev").join(path)).unwrap();
        assert_eq!((meta.ino(), meta.mtime(), meta.mtime_nsec()), (*ino, *mtime, *nsec), "{path} was rewritten after the kill");
    }
    println!("{kills} kills, {} files finished before them were left alone", finished.len());
    sha256sum_check(&w.join("dev"));
    let mut on_device = digest_tree(&w.join("dev"));
    on_device.retain(|k, _| !["SHA256SUMS", "ferry-shipment.jsonl"].contains(&k.as_str()) && !k.starts_with("ferry-manifest/"));
    assert_eq!(on_device, digest_tree(&w.join("src")), "the device holds the source, byte for byte");
    assert!(!digest_tree(&w.join("dev")).keys().any(|k| k.contains("ferry-tmp")), "a temp file was left on the device");

    // The ingest is resumable the same way: killed twice, then finished, byte-identical.
    let ingest = ["ingest", "--from", "dev", "landing", "--job", "ingest", "--transfers", "1", "--part-size", "1MiB"];
    let mut ingest_kills = 0;
    let ingest_journal = w.join("ingest/journal.sqlite");
    let ingested = || done_count(&ingest_journal, |j| block_on(ferry_journal::Ledger::counts(j)).map(|c| c.done));
    for _ in 0..2 {
        let mut child = ferry_command(w, &ingest, &[]).stdout(std::process::Stdio::null()).spawn().unwrap();
        if finishes_more(&mut child, ingested, 10) {
            child.kill().unwrap();
            ingest_kills += 1;
        }
        child.wait().unwrap();
    }
    let landed = ferry_ok(w, &[&ingest[..], &["--json"]].concat(), &[], 0).json();
    assert!(landed["already_done"].as_u64().unwrap() > 0, "the killed runs finished nothing: {landed}");
    assert_eq!(landed["already_done"].as_u64().unwrap() + landed["copied"].as_u64().unwrap(), files.len() as u64, "{landed}");
    assert_eq!(digest_tree(&w.join("landing")), digest_tree(&w.join("src")), "after {ingest_kills} kills");
}

/// Objects a journal at `path` has done, as `count` reads them (0 before it exists).
fn done_count(path: &Path, count: impl Fn(&ferry_journal::SqliteJournal) -> ferry_journal::Result<u64>) -> u64 {
    if !path.exists() {
        return 0;
    }
    ferry_journal::SqliteJournal::open(path).and_then(|j| count(&j)).unwrap_or(0)
}

/// Waits until `child` has finished `more` objects beyond those `done` counts now: `true`, to
/// kill it; `false` when it exits first. Bounded: panics after two minutes without progress.
fn finishes_more(child: &mut std::process::Child, done: impl Fn() -> u64, more: u64) -> bool {
    let start = done();
    for _ in 0..2400 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if done() >= start + more {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no progress in two minutes")
}

/// Bytes free on the file system holding `dir`.
fn available(dir: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_device_that_fills_up_hands_its_objects_to_the_next_and_too_few_devices_are_named() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("src");
    let files: Vec<(String, usize)> = (0..30).map(|i| (format!("obj/{i:02}.bin"), 1 << 20)).collect();
    write_tree(&w.join("tree"), &files);
    ferry_ok(w, &["copy", "tree", "gs://src/", "--job", "upload", "--dst-endpoint", &gcs.endpoint], &[], 0);
    let d1 = Tmpfs::mount(&w.join("d1"), 48);
    let d2 = Tmpfs::mount(&w.join("d2"), 40);

    // Run 1, slowed down, is killed once every object is packed (all fit on d1, the larger).
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["export", "gs://src/", "--job", "job", "--layout", "plain", "--src-endpoint", &gcs.endpoint, "--json"];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect()
    };
    let first = args(&["--to", "d1", "--to", "d2", "--bwlimit", "1MiB", "--transfers", "1"]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let mut child = ferry_command(w, &first, &[]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let journal = w.join("job/export/journal.sqlite");
    let packed = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        journal.exists()
            && ferry_journal::SqliteJournal::open(&journal).and_then(|j| block_on(j.on_device(0, false))).is_ok_and(|(n, _)| n >= 25)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(packed, "the export never packed its objects onto device 1");

    // Someone fills d1 before the export is resumed: the objects packed onto it no longer fit.
    let filler = available(&d1.0) - (4 << 20);
    std::fs::write(d1.0.join("filler.bin"), vec![0u8; filler as usize]).unwrap();
    let second = args(&["--to", "d1", "--to", "d2"]);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let done = ferry_ok(w, &second, &[], 0).json();
    assert_eq!(done["devices"][0]["full"], true, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    let (on1, on2) = (shipped(&d1.0), shipped(&d2.0));
    assert!(!on1.is_empty() && !on2.is_empty(), "{done}");
    let all: BTreeSet<&String> = on1.keys().chain(on2.keys()).collect();
    assert_eq!(all.len(), files.len(), "every object shipped, once: {done}");
    for d in [&d1.0, &d2.0] {
        sha256sum_check(d);
        assert!(!digest_tree(d).keys().any(|k| k.contains("ferry-tmp")), "a half-written file was left on {}", d.display());
    }

    // Too few devices: what does not fit is counted, named in text, and the exit is 1.
    let d3 = Tmpfs::mount(&w.join("d3"), 8);
    let small = ["export", "tree", "--job", "job-small", "--layout", "plain", "--to", "d3"];
    let run = ferry_ok(w, &small, &[], 1);
    assert!(run.stdout.contains("do not fit on the devices given"), "{}", run.stdout);
    let n = shipped(&d3.0).len();
    assert!(n > 0 && n < files.len(), "{n} of {} on an 8 MiB device", files.len());
    sha256sum_check(&d3.0);
}

#[test]
fn bad_devices_and_shipments_get_one_clear_line_and_exit_2() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a/one.txt".to_string(), 10), ("a/two.txt".to_string(), 20)]);
    let one_line = |args: &[&str], names: &str| {
        let run = common::ferry(w, args, &[]);
        assert_eq!(run.code, 2, "{args:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: one line: {}", run.stderr);
        assert!(run.stderr.contains(names), "{args:?}: names {names}: {}", run.stderr);
    };
    one_line(&["export", "src", "--job", "j1", "--layout", "plain", "--to", "nowhere"], "nowhere");
    // A digest that is not one is a usage error, not "the shipment changed since export".
    let run = common::ferry(w, &["ingest", "--from", "src", "out", "--job", "jd", "--expect-digest", "deadbeef"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"deadbeef\" is not a SHA-256"), "{}", run.stderr);
    assert!(!w.join("jd").exists() && !w.join("out").exists());
    assert!(!w.join("j1").exists(), "a refused export leaves no job behind");
    one_line(&["export", "--job", "j1", "--layout", "plain", "--to", "src"], "give SRC");
    one_line(&["ingest", "--from", "src", "out", "--job", "i1"], "ferry-shipment.jsonl");
    std::fs::create_dir_all(w.join("twice/a")).unwrap();
    one_line(&["export", "src", "--job", "j2", "--layout", "plain", "--to", "twice", "--to", "twice/a"], "same file system");

    std::fs::create_dir_all(w.join("dev")).unwrap();
    let export = ferry_ok(w, &["export", "src", "--job", "x", "--layout", "plain", "--to", "dev", "--json"], &[], 0).json();
    let digest = export["devices"][0]["shipment_sha256"].as_str().unwrap().to_string();
    one_line(&["ingest", "--from", "dev", "out", "--job", "i2", "--expect-digest", &"0".repeat(64)], &digest);

    // A dry run reads the shipment and the disk, uploads nothing.
    let dry = ferry_ok(w, &["ingest", "--from", "dev", "out", "--job", "i3", "--dry-run", "--json"], &[], 0).json();
    assert_eq!((dry["dry_run"].as_bool(), dry["objects_total"].as_u64(), dry["pending_bytes"].as_u64()), (Some(true), Some(2), Some(30)));
    assert!(!w.join("out").exists(), "a dry run wrote to the destination");

    // A shipment manifest edited on the disk: its line is named.
    let path = w.join("dev/ferry-shipment.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"size\":10", "\"size\":\"ten\"", 1)).unwrap();
    one_line(&["ingest", "--from", "dev", "out", "--job", "i4"], "ferry-shipment.jsonl is corrupt: line 2");
}

// Issue 15: each device carries the exported manifest generation, which the ingest adopts the
// source's identities from. One that is not the shipment's — edited, a shard altered, a shard
// planted as a link to /dev/zero — is refused in one line naming it, before anything is
// written; a shipment without one is ingested, and a delta of that job is refused, naming why.
#[test]
fn a_shipped_manifest_that_is_not_the_shipment_s_is_refused_and_without_one_no_delta_follows() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a/one.txt".to_string(), 10), ("a/two.txt".to_string(), 20)]);
    std::fs::create_dir_all(w.join("dev")).unwrap();
    ferry_ok(w, &["export", "src", "--job", "x", "--layout", "plain", "--to", "dev"], &[], 0);
    let generation = w.join("dev/ferry-manifest/gen-0001");
    let header = generation.join("manifest.json");
    let shard = std::fs::read_dir(&generation)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a shard shipped");
    let refused = |job: &str, names: &[&str]| {
        let run = ferry(w, &["ingest", "--from", "dev", "out", "--job", job], &[]);
        assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        for name in names {
            assert!(run.stderr.contains(name), "names {name}: {}", run.stderr);
        }
        assert!(!w.join("out").exists(), "a refused ingest wrote to the destination");
    };

    let (text, bytes) = (std::fs::read(&header).unwrap(), std::fs::read(&shard).unwrap());
    let mut edited = text.clone();
    edited.extend_from_slice(b" ");
    std::fs::write(&header, &edited).unwrap();
    refused("i1", &["ferry-manifest/gen-0001", "not the manifest this shipment was exported from"]);
    std::fs::write(&header, &text).unwrap();

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&shard, &flipped).unwrap();
    refused("i2", &[&shard.file_name().unwrap().to_string_lossy(), "does not match the sealed"]);

    std::fs::remove_file(&shard).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &shard).unwrap();
    refused("i3", &["is not a plain file"]);
    std::fs::remove_file(&shard).unwrap();
    std::fs::write(&shard, &bytes).unwrap();

    // As exported, it is adopted; without it, the ingest goes ahead and no delta can follow.
    let ingested = ferry_ok(w, &["ingest", "--from", "dev", "out", "--job", "i4", "--json"], &[], 0).json();
    assert_eq!(ingested["provenance"]["identities"], 2, "{ingested:#}");
    std::fs::remove_dir_all(w.join("dev/ferry-manifest")).unwrap();
    let ingested = ferry_ok(w, &["ingest", "--from", "dev", "out2", "--job", "i5", "--json"], &[], 0).json();
    assert!(ingested["provenance"]["identities"].is_null(), "{ingested:#}");
    let job_toml = std::fs::read_to_string(w.join("i5/job.toml")).unwrap();
    let delta = ferry(w, &["delta", "--job", "i5"], &[]);
    assert_eq!(delta.code, 2, "{}", delta.stderr);
    assert!(delta.stderr.contains("carry no manifest of") && delta.stderr.contains("plan a job from"), "{}", delta.stderr);
    assert!(!w.join("i5/manifests/gen-0002").exists(), "nothing sealed");
    assert_eq!(std::fs::read_to_string(w.join("i5/job.toml")).unwrap(), job_toml, "the job still reads from its disk");
}

// Issue 15 (hostile pass): what a source gives besides the bytes — Content-Type, metadata,
// system headers — travels in the shipment (no disk keeps it, no S3 listing carries it) and is
// written by the ingest; what the destination cannot hold is named and makes the ingest exit 1,
// as a copy does; tags, which no shipment carries, are said at export.
#[test]
fn what_the_source_gave_travels_in_the_shipment_and_what_the_destination_cannot_hold_is_named() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("gsrc");
    let mut attrs = ferry_providers::PutAttrs {
        content_type: Some("text/x-ferry-shipped".into()),
        metadata: [("owner".to_string(), "ops team".to_string())].into(),
        ..Default::default()
    };
    *attrs.headers.slot(ferry_core::Header::CacheControl) = Some("max-age=9".into());
    gcs.put_objects_with("gsrc", &[("plain.txt", bytes::Bytes::from_static(b"plain"))], &attrs);
    let newline = ferry_providers::PutAttrs { metadata: [("note".to_string(), "line1\nline2".to_string())].into(), ..Default::default() };
    gcs.put_objects_with("gsrc", &[("nl.txt", bytes::Bytes::from_static(b"nl"))], &newline);
    let device = w.join("d1");
    std::fs::create_dir(&device).unwrap();
    let d1 = device.to_str().unwrap();

    let export = ["export", "gs://gsrc", "--to", d1, "--job", "xj", "--layout", "plain", "--src-endpoint", &gcs.endpoint, "--json"];
    let exported = ferry_ok(w, &export, &[], 0).json();
    assert_eq!(exported["fidelity"]["pair_limits"], serde_json::json!(["no-tags"]), "{exported:#}");
    let shipment = std::fs::read_to_string(device.join("ferry-shipment.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(shipment.lines().find(|l| l.contains("\"plain.txt\"")).unwrap()).unwrap();
    assert_eq!(
        (&line["content_type"], &line["metadata"]["owner"], &line["headers"]["cache_control"]),
        (&serde_json::json!("text/x-ferry-shipped"), &serde_json::json!("ops team"), &serde_json::json!("max-age=9")),
        "{line:#}"
    );

    let moto = ferry_testkit::Moto::start();
    moto.create_bucket("landing");
    let ingest = ["ingest", "--from", d1, "s3://landing", "--job", "ij", "--dst-endpoint", &moto.endpoint, "--json"];
    let out = ferry(w, &ingest, &moto.env());
    assert_eq!(out.code, 1, "S3 cannot hold a metadata value with a line feed: {}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no --expect-digest"), "an unproved shipment is said: {}", out.stderr);
    let ingested: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let fidelity = &ingested["fidelity"];
    assert_eq!(
        (fidelity["objects_losing_metadata"].as_u64(), fidelity["named"][0]["key"].as_str()),
        (Some(1), Some("nl.txt")),
        "{ingested:#}"
    );
    let heads = moto.head_headers("landing", &["content-type", "cache-control", "x-amz-meta-owner"]);
    assert_eq!(heads["plain.txt"], "text/x-ferry-shipped max-age=9 ops team", "{heads:?}");
}
