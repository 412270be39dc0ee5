//! Copy and verify through the `ferry` binary against real services: cloud-to-cloud S3,
//! re-runs that copy nothing twice, verification that names altered and deleted objects,
//! and the manifest export's SHA-256s.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::S3Server;
use ferry_testkit::tree::{assert_same_tree, file_sha256, write_tree};

fn small_tree() -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = (0..40).map(|i| (format!("dir{}/file {i}.bin", i % 4), 100 + i * 37)).collect();
    files.push(("big/multipart.bin".into(), 21 << 20));
    files.push(("empty".into(), 0));
    files
}

#[test]
fn s3_to_s3_between_two_servers_then_back_to_disk() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    // Two separate S3-compatible services with the same keys in the standard environment.
    // The second accepts the first's keys: both sides read the one standard chain.
    let a = S3Server::start();
    let b = S3Server::start_with_keys(&a.access_key, &a.secret_key);
    a.create_bucket("alpha");
    b.create_bucket("beta");
    let env = a.env();

    ferry_ok(w, &["copy", "src", "s3://alpha/data", "--job", "j1", "--dst-endpoint", &a.endpoint], &env, 0);
    let run = ferry_ok(
        w,
        &[
            "copy",
            "s3://alpha/data",
            "s3://beta/copy",
            "--job",
            "j2",
            "--src-endpoint",
            &a.endpoint,
            "--dst-endpoint",
            &b.endpoint,
            "--json",
        ],
        &env,
        0,
    );
    let summary = run.json();
    assert_eq!(summary["copied"], small_tree().len(), "{summary}");
    ferry_ok(w, &["verify", "--job", "j2"], &env, 0);
    ferry_ok(w, &["copy", "s3://beta/copy", "back", "--job", "j3", "--src-endpoint", &b.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
    // The bytes really crossed: the second server's directory holds them.
    assert_eq!(file_sha256(&b.root.path().join("beta/copy/big/multipart.bin")), file_sha256(&w.join("src/big/multipart.bin")));
}

#[test]
fn a_rerun_copies_nothing_twice_and_status_reads_the_journal() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    let s3 = S3Server::start();
    s3.create_bucket("rerun");
    let env = s3.env();
    let args = ["copy", "src", "s3://rerun/", "--job", "job", "--dst-endpoint", &s3.endpoint, "--json"];
    let first = ferry_ok(w, &args, &env, 0).json();
    assert_eq!(first["copied"], small_tree().len());
    let second = ferry_ok(w, &["copy", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(second["copied"], 0, "{second}");
    assert_eq!(second["already_done"], small_tree().len(), "{second}");

    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(status["counts"]["done"], small_tree().len());
    assert_eq!(status["counts"]["pending"], 0);
    let reports = std::fs::read_dir(w.join("job/reports")).unwrap().count();
    assert_eq!(reports, 2, "one report per run");

    // A sample of 5 objects is read back in full; the rest get the quick check.
    let sampled = ferry_ok(w, &["verify", "--job", "job", "--sample", "5", "--json"], &env, 0).json();
    assert_eq!(sampled["matched"], small_tree().len(), "{sampled}");
    assert_eq!(sampled["proved_by"]["sha256 read-back"], 5, "{sampled}");
}

#[test]
fn verify_names_altered_and_deleted_objects_and_exits_3() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    let s3 = S3Server::start();
    s3.create_bucket("victim");
    let env = s3.env();
    ferry_ok(w, &["copy", "src", "s3://victim/v", "--job", "job", "--dst-endpoint", &s3.endpoint], &env, 0);
    ferry_ok(w, &["verify", "--job", "job"], &env, 0);

    // Overwrite one object through the S3 API with other bytes of the same size (another job),
    // and delete another behind ferry's back.
    let original = std::fs::read(w.join("src/dir1/file 5.bin")).unwrap();
    let evil = w.join("evil/dir1/file 5.bin");
    std::fs::create_dir_all(evil.parent().unwrap()).unwrap();
    std::fs::write(&evil, original.iter().map(|b| b ^ 0x55).collect::<Vec<u8>>()).unwrap();
    // …and leave an object the manifest never had.
    std::fs::write(w.join("evil/stray.txt"), b"not ours").unwrap();
    ferry_ok(w, &["copy", "evil", "s3://victim/v", "--job", "evil-job", "--dst-endpoint", &s3.endpoint], &env, 0);
    let root = s3.root.path().join("victim/v");
    std::fs::remove_file(root.join("dir2/file 6.bin")).unwrap();

    let run = ferry(w, &["verify", "--job", "job"], &env);
    assert_eq!(run.code, 3, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("dir1/file 5.bin"), "{}", run.stdout);
    assert!(run.stdout.contains("missing: dir2/file 6.bin"), "{}", run.stdout);
    assert!(run.stdout.contains("extra: stray.txt"), "{}", run.stdout);

    let json = ferry(w, &["verify", "--job", "job", "--json"], &env);
    assert_eq!(json.code, 3);
    let summary = json.json();
    let diffs = summary["differences"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str)> = diffs.iter().map(|d| (d["key"].as_str().unwrap(), d["kind"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("dir1/file 5.bin", "checksum"), ("dir2/file 6.bin", "missing"), ("stray.txt", "extra")], "{diffs:?}");
    assert_eq!(summary["extra"], 1);
    // Without the listing, the stray object is not looked for.
    let quiet = ferry(w, &["verify", "--job", "job", "--no-extra", "--json"], &env).json();
    assert_eq!(quiet["differences"].as_array().unwrap().len(), 2, "{quiet}");

    // Bit rot under the server (its stored checksum unchanged) is caught by reading every byte.
    let rotten = root.join("dir3/file 7.bin");
    let mut bytes = std::fs::read(&rotten).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&rotten, &bytes).unwrap();
    let all = ferry(w, &["verify", "--job", "job", "--all-bytes", "--json"], &env);
    assert_eq!(all.code, 3);
    let diffs = all.json()["differences"].clone();
    let rot = diffs.as_array().unwrap().iter().find(|d| d["key"] == "dir3/file 7.bin").unwrap_or_else(|| panic!("{diffs}"));
    // Either ferry's SHA-256 or the client's response checksum check names it.
    assert!(rot["detail"].as_str().unwrap().to_lowercase().contains("checksum") || rot["kind"] == "checksum", "{diffs}");
}

#[test]
fn manifest_export_carries_each_objects_sha256() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    ferry_ok(w, &["copy", "src", "dst", "--job", "job"], &[], 0);
    let jsonl = ferry_ok(w, &["manifest", "export", "--job", "job", "--format", "jsonl"], &[], 0);
    let mut rows = 0;
    for line in jsonl.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap();
        assert_eq!(v["sha256"].as_str().unwrap(), file_sha256(&w.join("src").join(key)), "{key}");
        assert!(v["verified_by"].is_string(), "{v}");
        rows += 1;
    }
    assert_eq!(rows, small_tree().len());
    let csv = ferry_ok(w, &["manifest", "export", "--job", "job", "--format", "csv"], &[], 0);
    assert!(csv.stdout.starts_with("key,size,"), "{}", csv.stdout);
    assert_eq!(csv.stdout.lines().count(), small_tree().len() + 1);
}

#[test]
fn dry_run_counts_the_work_and_writes_nothing_to_the_destination() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    let total: usize = small_tree().iter().map(|(_, n)| n).sum();
    let run = ferry_ok(w, &["copy", "src", "dst", "--job", "job", "--dry-run", "--json"], &[], 0).json();
    assert_eq!(run["dry_run"], true);
    assert_eq!(run["pending"], small_tree().len(), "{run}");
    assert_eq!(run["pending_bytes"], total, "{run}");
    assert!(!w.join("dst").exists(), "a dry run wrote to the destination");
    let real = ferry_ok(w, &["copy", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(real["copied"], small_tree().len());
}

#[test]
fn a_bad_key_fails_alone_and_never_escapes_a_local_destination() {
    use ferry_testkit::FakeGcs;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("keys");
    let objects: Vec<_> =
        ["good.txt", "in/../../escape.txt", "double//slash.txt"].map(|key| (key, bytes::Bytes::from(format!("contents of {key}")))).into();
    gcs.put_objects("keys", &objects, None);
    let args = ["copy", "gs://keys/", "out/dst", "--job", "job", "--src-endpoint", &gcs.endpoint];
    let run = ferry(w, &args, &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("in/../../escape.txt") && run.stdout.contains("double//slash.txt"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(w.join("out/dst/good.txt")).unwrap(), "contents of good.txt");
    assert!(!w.join("escape.txt").exists() && !w.join("out/escape.txt").exists(), "a key escaped the destination root");

    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["counts"]["failed"], 2, "{status}");
    assert_eq!(status["counts"]["done"], 1, "{status}");
    // A re-run tries the failed objects again (and they fail again, alone).
    let again = ferry(w, &["copy", "--job", "job", "--json"], &[]);
    assert_eq!(again.code, 1);
    assert_eq!(again.json()["failed"], 2);
    // Verify names them as not copied.
    let verify = ferry(w, &["verify", "--job", "job"], &[]);
    assert_eq!(verify.code, 3);
    assert!(verify.stdout.contains("not-copied: double//slash.txt"), "{}", verify.stdout);
}

#[test]
fn two_s3_services_with_different_credentials_through_named_profiles() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    let (a, b) = (S3Server::start(), S3Server::start());
    a.create_bucket("alpha");
    b.create_bucket("beta");
    assert_ne!(a.secret_key, b.secret_key);
    // The standard AWS credentials file, in the HOME the ferry processes get.
    let aws = w.join(".home/.aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[old-cloud]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n[new-cloud]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            a.access_key, a.secret_key, b.access_key, b.secret_key
        ),
    )
    .unwrap();
    let env = [("AWS_REGION".to_string(), "us-east-1".to_string())];

    ferry_ok(w, &["copy", "src", "s3://alpha/x", "--job", "j1", "--dst-endpoint", &a.endpoint, "--dst-profile", "old-cloud"], &env, 0);
    let across = [
        "copy",
        "s3://alpha/x",
        "s3://beta/y",
        "--job",
        "j2",
        "--src-endpoint",
        &a.endpoint,
        "--src-profile",
        "old-cloud",
        "--dst-endpoint",
        &b.endpoint,
        "--dst-profile",
        "new-cloud",
        "--json",
    ];
    let summary = ferry_ok(w, &across, &env, 0).json();
    assert_eq!(summary["copied"], small_tree().len(), "{summary}");
    // The job remembers the profile names (never the keys), so later commands need none.
    ferry_ok(w, &["verify", "--job", "j2"], &env, 0);
    let job = std::fs::read_to_string(w.join("j2/job.toml")).unwrap();
    assert!(job.contains("new-cloud") && !job.contains(&b.secret_key), "{job}");
    assert_eq!(file_sha256(&b.root.path().join("beta/y/big/multipart.bin")), file_sha256(&w.join("src/big/multipart.bin")));

    // The wrong profile for a side is refused as such.
    let wrong =
        ferry(w, &["copy", "s3://alpha/x", "dst", "--job", "j3", "--src-endpoint", &a.endpoint, "--src-profile", "new-cloud"], &env);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("denied"), "{}", wrong.stderr);
}

/// A memory budget of two parts still moves objects of many parts, several at a time: uploads in
/// flight keep going while the next read waits for memory (they once were not polled then, and
/// the copy hung). The copy must end by itself within the time limit.
#[test]
fn a_budget_of_two_parts_copies_many_part_objects_without_stalling() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<(String, usize)> = (0..4).map(|i| (format!("big/b{i}.bin"), (40 << 20) + i)).collect();
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("budget");
    let env = s3.env();
    let args =
        ["copy", "src", "s3://budget/b", "--job", "job", "--part-size", "8MiB", "--max-memory", "16MiB", "--dst-endpoint", &s3.endpoint];
    let mut child = common::ferry_command(w, &args, &env).stdout(std::process::Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the copy stalled with a 16 MiB budget");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    ferry_ok(
        w,
        &[
            "copy",
            "s3://budget/b",
            "back",
            "--job",
            "back-job",
            "--max-memory",
            "16MiB",
            "--part-size",
            "8MiB",
            "--src-endpoint",
            &s3.endpoint,
        ],
        &env,
        0,
    );
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn bwlimit_and_tpslimit_hold_a_copy_to_their_rates() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let s3 = S3Server::start();
    s3.create_bucket("limited");
    let env = s3.env();

    // 24 MiB at 8 MiB/s: three 8 MiB parts, each booked a second after the one before, so
    // the last is sent no sooner than 2 s in (the local reads are not limited).
    write_tree(&w.join("big"), &[("a.bin".into(), 24 << 20)]);
    let args = ["copy", "big", "s3://limited/big", "--job", "jb", "--dst-endpoint", &s3.endpoint, "--part-size", "8MiB"];
    let started = std::time::Instant::now();
    ferry_ok(w, &[&args[..], &["--bwlimit", "8MiB/s"]].concat(), &env, 0);
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(1_950), "24 MiB at 8 MiB/s took only {took:?}");

    // 30 objects at 12 requests per second: at least 30 requests, the last no sooner than
    // 29/12 s in.
    let small: Vec<(String, usize)> = (0..30).map(|i| (format!("s{i}"), 10)).collect();
    write_tree(&w.join("small"), &small);
    let started = std::time::Instant::now();
    ferry_ok(w, &["copy", "small", "s3://limited/small", "--job", "js", "--dst-endpoint", &s3.endpoint, "--tpslimit", "12"], &env, 0);
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(2_400), "30 puts at 12/s took only {took:?}");
    ferry_ok(w, &["verify", "--job", "js"], &env, 0);

    let bad = ferry(w, &["copy", "small", "s3://limited/x", "--job", "jx", "--bwlimit", "0"], &env);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("must be more than 0"), "{}", bad.stderr);
}

/// `ferry copy FROM TO` with both sides through one counting proxy in front of `service` (one
/// service, reached the same way), plus `extra` arguments: the JSON summary, and the proxy (the
/// job's endpoint from now on), which counts the bytes ferry sent.
fn copy_through_one_proxy(
    w: &std::path::Path,
    env: &[(String, String)],
    service: &str,
    from: &str,
    to: &str,
    job: &str,
    extra: &[&str],
) -> (serde_json::Value, ferry_testkit::CountingProxy) {
    let proxy = ferry_testkit::CountingProxy::start(service);
    let args = ["copy", from, to, "--job", job, "--src-endpoint", &proxy.endpoint, "--dst-endpoint", &proxy.endpoint, "--json"];
    let summary = ferry_ok(w, &[&args[..], extra].concat(), env, 0).json();
    (summary, proxy)
}

#[test]
fn s3_to_s3_on_one_service_is_copied_by_the_service_and_proved() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let s3 = S3Server::start();
    s3.create_bucket("alpha");
    s3.create_bucket("beta");
    let env = s3.env();
    write_tree(&w.join("src"), &small_tree());
    ferry_ok(w, &["copy", "src", "s3://alpha/data", "--job", "j1", "--dst-endpoint", &s3.endpoint], &env, 0);

    let (summary, proxy) =
        copy_through_one_proxy(w, &env, &s3.endpoint, "s3://alpha/data", "s3://beta/copied", "j2", &["--part-size", "8MiB"]);
    assert_eq!(summary["copied"], small_tree().len(), "{summary}");
    let by = summary["verified_by"].as_object().unwrap();
    assert!(by.keys().all(|k| k.starts_with("server-side")), "every object copied by the service: {summary}");
    // s3s-fs keeps the MD5 ETag of a single-request copy; the copy in parts has only its size.
    assert_eq!(by.get("server-side md5").and_then(|n| n.as_u64()), Some(small_tree().len() as u64 - 1), "{summary}");
    let uploaded = proxy.uploaded();
    assert!(uploaded < 1 << 20, "no object bytes went through ferry: {uploaded} bytes uploaded");
    ferry_ok(w, &["verify", "--job", "j2"], &env, 0);
    // The 21 MiB object went as three UploadPartCopy parts; the service holds it byte for byte.
    assert_eq!(file_sha256(&s3.root.path().join("beta/copied/big/multipart.bin")), file_sha256(&w.join("src/big/multipart.bin")));
    ferry_ok(w, &["copy", "s3://beta/copied", "back", "--job", "j3", "--src-endpoint", &s3.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));

    // `--server-side never` moves the bytes through ferry instead.
    let (summary, proxy) =
        copy_through_one_proxy(w, &env, &s3.endpoint, "s3://alpha/data", "s3://beta/through", "j4", &["--server-side", "never"]);
    assert!(summary["verified_by"].as_object().unwrap().keys().all(|k| !k.starts_with("server-side")), "{summary}");
    let uploaded = proxy.uploaded();
    assert!(uploaded >= 21 << 20, "the bytes went through ferry: {uploaded}");
}

#[test]
fn gcs_to_gcs_on_one_service_is_rewritten_by_the_service_and_proved() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = ferry_testkit::FakeGcs::start();
    gcs.create_bucket("gamma");
    gcs.create_bucket("delta");
    let env: Vec<(String, String)> = Vec::new();
    write_tree(&w.join("src"), &small_tree());
    ferry_ok(w, &["copy", "src", "gs://gamma/data", "--job", "j1", "--dst-endpoint", &gcs.endpoint], &env, 0);

    let (summary, proxy) = copy_through_one_proxy(w, &env, &gcs.endpoint, "gs://gamma/data", "gs://delta/copied", "j2", &[]);
    assert_eq!(summary["copied"], small_tree().len(), "{summary}");
    // GCS reports the copy's CRC32C, and the source declares its own: every object is proved.
    let by = summary["verified_by"].as_object().unwrap();
    assert_eq!(by.get("server-side crc32c").and_then(|n| n.as_u64()), Some(small_tree().len() as u64), "{summary}");
    let uploaded = proxy.uploaded();
    assert!(uploaded < 1 << 20, "no object bytes went through ferry: {uploaded} bytes uploaded");
    ferry_ok(w, &["verify", "--job", "j2", "--all-bytes"], &env, 0);
    ferry_ok(w, &["copy", "gs://delta/copied", "back", "--job", "j3", "--src-endpoint", &gcs.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn azure_to_azure_in_one_account_is_copied_by_the_service_and_proved() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let azurite = ferry_testkit::Azurite::start();
    azurite.create_container("epsilon");
    azurite.create_container("zeta");
    let env: Vec<(String, String)> = Vec::new();
    write_tree(&w.join("src"), &small_tree());
    ferry_ok(w, &["copy", "src", "az://epsilon/data", "--job", "j1", "--dst-endpoint", &azurite.endpoint], &env, 0);

    let (summary, proxy) = copy_through_one_proxy(w, &env, &azurite.endpoint, "az://epsilon/data", "az://zeta/copied", "j2", &[]);
    assert_eq!(summary["copied"], small_tree().len(), "{summary}");
    let by = summary["verified_by"].as_object().unwrap();
    // Blobs ferry wrote in one Put Blob keep their Content-MD5, which the copy carries: those
    // are proved by it; the one written as blocks has no MD5 to compare, only its size.
    assert_eq!(by.get("server-side md5").and_then(|n| n.as_u64()), Some(small_tree().len() as u64 - 1), "{summary}");
    assert_eq!(by.get("server-side size").and_then(|n| n.as_u64()), Some(1), "{summary}");
    let uploaded = proxy.uploaded();
    assert!(uploaded < 1 << 20, "no object bytes went through ferry: {uploaded} bytes uploaded");
    ferry_ok(w, &["verify", "--job", "j2"], &env, 0);
    ferry_ok(w, &["copy", "az://zeta/copied", "back", "--job", "j3", "--src-endpoint", &azurite.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn a_deep_s3_bucket_is_listed_in_parallel_and_in_key_order() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // 30 top-level prefixes (some nested deeper) and objects at the top level between them,
    // named so that `a.txt` < `a/…` < `a0` in S3's byte order.
    let mut files: Vec<(String, usize)> = Vec::new();
    for p in 0..30 {
        for i in 0..40 {
            files.push((format!("p{p:02}/{}/o{i:02}", i % 3), 10));
        }
    }
    for top in ["a.txt", "a0", "p05.txt", "zz"] {
        files.push((top.to_string(), 10));
    }
    for i in 0..20 {
        files.push((format!("a/{i}"), 10));
    }
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("deep");
    let env = s3.env();
    ferry_ok(w, &["copy", "src", "s3://deep/tree", "--job", "up", "--dst-endpoint", &s3.endpoint], &env, 0);

    ferry_ok(w, &["plan", "s3://deep/tree", "listed", "--job", "p", "--src-endpoint", &s3.endpoint], &env, 0);
    let out = ferry_ok(w, &["manifest", "export", "--job", "p", "--format", "jsonl"], &env, 0);
    let keys: Vec<String> =
        out.stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].as_str().unwrap().to_string()).collect();
    let mut expected: Vec<String> = files.iter().map(|(k, _)| k.clone()).collect();
    expected.sort();
    assert_eq!(keys, expected, "every key once, in S3's order");
}
