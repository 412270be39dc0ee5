//! Crash tests: SIGKILL the ferry process at random moments of a copy (listing, parts in flight,
//! completing uploads, journal commits), run it again each time, and check that the destination
//! ends byte-identical, that the bytes uploaded (counted by a proxy in front of the service)
//! exceed the data by no more than kills × the in-flight window, and that no upload is left open.

mod common;

use common::{Rng, ferry_command, ferry_ok};
use ferry_testkit::tree::{assert_same_tree, write_tree};
use ferry_testkit::{CountingProxy, FakeGcs, S3Server};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const MIB: usize = 1 << 20;
const PART: u64 = 8 << 20;
const TRANSFERS: u64 = 4;
/// Parts in flight per object (the engine's default `parts_per_object`).
const PARTS_IN_FLIGHT: u64 = 4;
const KILLS: usize = 7;
const LARGE_OBJECTS: usize = 8;

fn crash_tree() -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = (0..LARGE_OBJECTS).map(|i| (format!("large/object-{i}.bin"), 64 * MIB)).collect();
    files.extend((0..500).map(|i| (format!("small/{:02}/s{i:03}.txt", i % 20), 200 + i * 7)));
    files
}

/// Uploads s3s-fs holds open: it keeps one `.upload-*.json` file per upload in its root.
fn open_uploads_at(s3: &S3Server) -> usize {
    std::fs::read_dir(s3.root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload-"))
        .count()
}

/// Runs `args` until it completes, SIGKILLing it after a random delay (up to `max_delay_ms`)
/// `kills` times first. Returns the kills done and the final run's JSON summary.
fn copy_through_crashes(w: &Path, args: &[&str], env: &[(String, String)], seed: u64, max_delay_ms: u64) -> (usize, serde_json::Value) {
    let kills = KILLS;
    let mut rng = Rng(seed | 1);
    let mut done = 0;
    loop {
        let mut child = ferry_command(w, args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn ferry");
        if done < kills {
            std::thread::sleep(Duration::from_millis(50 + rng.next() % max_delay_ms));
            if child.try_wait().expect("try_wait").is_none() {
                child.kill().expect("SIGKILL ferry");
                child.wait().expect("reap ferry");
                done += 1;
                // Whatever the kill interrupted (a journal commit included), the journal opens.
                let job = args[args.iter().position(|a| *a == "--job").expect("--job") + 1];
                if w.join(job).join("journal.sqlite").exists() {
                    let status = common::ferry(w, &["status", "--job", job, "--json"], env);
                    assert!(
                        status.code == 0 || status.stderr.contains("no sealed manifest"),
                        "journal unreadable after kill {done}: {}",
                        status.stderr
                    );
                }
                continue;
            }
        }
        let out = child.wait_with_output().expect("ferry output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "final run failed (seed {seed}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        return (done, serde_json::from_str(&stdout).expect("json summary"));
    }
}

fn data_bytes() -> u64 {
    crash_tree().iter().map(|(_, n)| *n as u64).sum()
}

/// Uploaded bytes may exceed the data by at most the in-flight window per kill (plus request
/// overhead: headers of ~600 requests per run).
fn assert_bounded(uploaded: u64, kills: usize, what: &str) {
    let window = TRANSFERS * PARTS_IN_FLIGHT * PART;
    let limit = data_bytes() + kills as u64 * window + (16 << 20);
    println!("{what}: uploaded {uploaded} bytes for {} of data after {kills} kills (limit {limit})", data_bytes());
    assert!(uploaded <= limit, "{what}: uploaded {uploaded} bytes for {} of data after {kills} kills (limit {limit})", data_bytes());
    assert!(uploaded >= data_bytes(), "{what}: uploaded {uploaded} bytes, less than the data");
}

fn args<'a>(src: &'a str, dst: &'a str, job: &'a str, endpoint: Option<&'a str>) -> Vec<&'a str> {
    let mut a = vec!["copy", src, dst, "--job", job, "--part-size", "8MiB", "--transfers", "4", "--json"];
    if let Some(ep) = endpoint {
        a.extend(["--dst-endpoint", ep]);
    }
    a
}

#[test]
fn s3_copy_survives_sigkill_anywhere() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &crash_tree());
    let s3 = S3Server::start();
    s3.create_bucket("crash");
    let proxy = CountingProxy::start(&s3.endpoint);
    let env = s3.env();
    let seed = 0x5eed_0001;
    let (kills, summary) = copy_through_crashes(w, &args("src", "s3://crash/c", "job", Some(&proxy.endpoint)), &env, seed, 600);
    assert_eq!(kills, KILLS, "the copy finished before every kill landed");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_bounded(proxy.uploaded(), kills, "s3");

    ferry_ok(w, &["verify", "--job", "job"], &env, 0);
    // No upload of the job is left open at the server (s3s-fs keeps one file per open upload),
    // except those cut off while being created, which s3s-fs cannot list (ListMultipartUploads
    // answers 501): ferry counts each of those and says so in status.
    let open = open_uploads_at(&s3);
    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(status["open_uploads"].as_array().unwrap().len(), 0, "{status}");
    let reported = status["possibly_orphaned_uploads"].as_u64().unwrap();
    assert!(open as u64 <= reported, "{open} uploads left open at the server, ferry reported {reported}");
    // A kill can cut off the create of every large object in flight at that moment.
    assert!(reported <= (kills * LARGE_OBJECTS) as u64, "{reported} possible orphans from {kills} kills");

    ferry_ok(w, &["copy", "s3://crash/c", "back", "--job", "back-job", "--src-endpoint", &s3.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn gcs_copy_survives_sigkill_anywhere() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &crash_tree());
    let gcs = FakeGcs::start();
    gcs.create_bucket("crash");
    let proxy = CountingProxy::start(&gcs.endpoint);
    let seed = 0x5eed_0002;
    let (kills, summary) = copy_through_crashes(w, &args("src", "gs://crash/c", "job", Some(&proxy.endpoint)), &[], seed, 600);
    assert_eq!(kills, KILLS, "the copy finished before every kill landed");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_bounded(proxy.uploaded(), kills, "gcs");
    ferry_ok(w, &["verify", "--job", "job"], &[], 0);

    // No part object of the job is left behind.
    let names = gcs.object_names("crash");
    let leftovers: Vec<_> = names.iter().filter(|n| n.contains(".ferry-tmp-")).collect();
    assert!(leftovers.is_empty(), "part objects left: {leftovers:?}");
    assert_eq!(names.len(), crash_tree().len());

    ferry_ok(w, &["copy", "gs://crash/c", "back", "--job", "back-job", "--src-endpoint", &gcs.endpoint], &[], 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn local_copy_survives_sigkill_anywhere() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &crash_tree());
    let (kills, summary) = copy_through_crashes(w, &args("src", "dst", "job", None), &[], 0x5eed_0003, 200);
    assert_eq!(kills, KILLS, "the copy finished before every kill landed");
    assert_eq!(summary["failed"], 0, "{summary}");
    // Temp files are the local uploads: none may remain, and the tree is the source's.
    assert_same_tree(&w.join("src"), &w.join("dst"));
    ferry_ok(w, &["verify", "--job", "job"], &[], 0);
}

#[test]
fn a_source_changed_between_crash_and_resume_restarts_the_object_never_mixes_it() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files = vec![("big.bin".to_string(), 64 * MIB), ("small.txt".to_string(), 100)];
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("changing");
    let env = s3.env();
    let copy = args("src", "s3://changing/c", "job", Some(&s3.endpoint));

    interrupt_after_first_part(w, &copy, &env);

    // The source object changes (same size, other bytes), then the copy resumes.
    std::thread::sleep(Duration::from_millis(20));
    let changed: Vec<u8> = std::fs::read(w.join("src/big.bin")).unwrap().iter().map(|b| b.wrapping_add(1)).collect();
    std::fs::write(w.join("src/big.bin"), &changed).unwrap();
    let summary = ferry_ok(w, &copy, &env, 0).json();
    let restarted = summary["restarted"].as_array().unwrap();
    assert_eq!(restarted.len(), 1, "{summary}");
    assert_eq!(restarted[0]["key"], "big.bin");
    assert!(restarted[0]["error"].as_str().unwrap().contains("source changed"), "{summary}");

    // The destination holds exactly the new version, verified; no upload is left open.
    ferry_ok(w, &["verify", "--job", "job"], &env, 0);
    ferry_ok(w, &["copy", "s3://changing/c", "back", "--job", "back-job", "--src-endpoint", &s3.endpoint], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
    assert_eq!(open_uploads_at(&s3), 0, "uploads left open");
}

/// Starts a copy and SIGKILLs it once the journal shows an acknowledged part.
fn interrupt_after_first_part(w: &Path, copy: &[&str], env: &[(String, String)]) {
    let mut child = ferry_command(w, copy, env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "no part was acknowledged within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the copy finished before it could be interrupted");
        let status = common::ferry(w, &["status", "--job", "job", "--json"], env);
        if status.code == 0 && status.json()["open_uploads"].as_array().is_some_and(|u| u.iter().any(|u| u["parts"].as_u64() > Some(0))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn clean_aborts_the_uploads_an_interrupted_copy_left_and_a_second_process_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.bin".to_string(), 48 * MIB), ("b.bin".to_string(), 48 * MIB)]);
    let s3 = S3Server::start();
    s3.create_bucket("cleanme");
    let env = s3.env();
    let copy = args("src", "s3://cleanme/c", "job", Some(&s3.endpoint));
    interrupt_after_first_part(w, &copy, &env);
    let open_at_server = || open_uploads_at(&s3);
    assert!(open_at_server() > 0, "the interrupted copy left no upload open");

    // While one ferry works on the job, a second one is refused and changes nothing.
    let mut first =
        ferry_command(w, &["copy", "--job", "job", "--json"], &env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(first.try_wait().unwrap().is_none(), "the resumed copy finished within 300 ms");
    let second = common::ferry(w, &["clean", "--job", "job"], &env);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(second.stderr.contains("in use by another ferry process"), "{}", second.stderr);
    first.kill().unwrap();
    first.wait().unwrap();

    let dry = ferry_ok(w, &["clean", "--job", "job", "--dry-run", "--json"], &env, 0).json();
    let listed = dry["uploads"].as_array().unwrap().len();
    assert!(listed > 0, "{dry}");
    assert_eq!(open_at_server(), listed, "a dry run aborts nothing");
    let cleaned = ferry_ok(w, &["clean", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(cleaned["uploads"].as_array().unwrap().len(), listed);
    assert_eq!(open_at_server(), 0, "uploads still open after clean");
    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(status["open_uploads"].as_array().unwrap().len(), 0);

    // The job still finishes afterwards, from the parts it no longer has.
    ferry_ok(w, &["resume", "--job", "job"], &env, 0);
    ferry_ok(w, &["verify", "--job", "job"], &env, 0);
}

#[test]
fn azure_copy_survives_sigkill_anywhere() {
    use ferry_testkit::Azurite;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &crash_tree());
    let azurite = Azurite::start();
    azurite.create_container("crash");
    let proxy = CountingProxy::start(&azurite.endpoint);
    let seed = 0x5eed_0004;
    let (kills, summary) = copy_through_crashes(w, &args("src", "az://crash/c", "job", Some(&proxy.endpoint)), &[], seed, 600);
    assert_eq!(kills, KILLS, "the copy finished before every kill landed");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_bounded(proxy.uploaded(), kills, "azure");
    ferry_ok(w, &["verify", "--job", "job"], &[], 0);
    // Every blob was committed: no uncommitted block of the job remains.
    for (key, _) in crash_tree().iter().filter(|(k, _)| k.starts_with("large/")) {
        assert_eq!(azurite.uncommitted_blocks("crash", &format!("c/{key}")), 0, "{key} has uncommitted blocks");
    }
    ferry_ok(w, &["copy", "az://crash/c", "back", "--job", "back-job", "--src-endpoint", &azurite.endpoint], &[], 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
}

#[test]
fn clean_sweeps_a_destination_for_stale_uploads_whoever_left_them() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.bin".to_string(), 48 * MIB), ("b.bin".to_string(), 48 * MIB)]);
    let gcs = FakeGcs::start();
    gcs.create_bucket("sweep");
    interrupt_after_first_part(w, &args("src", "gs://sweep/s", "job", Some(&gcs.endpoint)), &[]);
    let temps = || gcs.object_names("sweep").into_iter().filter(|n| n.contains(".ferry-tmp-")).count();
    assert!(temps() > 0, "the interrupted copy left no part objects");

    // Too young to be stale: nothing listed.
    let young = ferry_ok(w, &["clean", "gs://sweep/", "--dst-endpoint", &gcs.endpoint, "--older-than", "1h", "--json"], &[], 0).json();
    assert_eq!(young["uploads"].as_array().unwrap().len(), 0, "{young}");
    // Listing is the default; --abort aborts.
    let listed = ferry_ok(w, &["clean", "gs://sweep/", "--dst-endpoint", &gcs.endpoint, "--older-than", "0s", "--json"], &[], 0).json();
    let n = listed["uploads"].as_array().unwrap().len();
    assert!(n > 0 && listed["dry_run"] == true, "{listed}");
    assert!(temps() > 0, "listing aborted something");
    let aborted =
        ferry_ok(w, &["clean", "gs://sweep/", "--dst-endpoint", &gcs.endpoint, "--older-than", "0s", "--abort", "--json"], &[], 0).json();
    assert_eq!(aborted["uploads"].as_array().unwrap().len(), n, "{aborted}");
    assert_eq!(temps(), 0, "part objects remain after the sweep");

    // The same on local disk: an interrupted local copy leaves temp files; the sweep removes them.
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    write_tree(&l.join("src"), &[("a.bin".to_string(), 48 * MIB), ("b.bin".to_string(), 48 * MIB)]);
    interrupt_after_first_part(l, &args("src", "dst", "job", None), &[]);
    let local_temps = || {
        std::fs::read_dir(l.join("dst"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".ferry-tmp-"))
            .count()
    };
    assert!(local_temps() > 0, "the interrupted local copy left no temp files");
    ferry_ok(l, &["clean", "dst", "--older-than", "0s", "--abort"], &[], 0);
    assert_eq!(local_temps(), 0);

    // A service that cannot list uploads says so, with exit 2.
    let s3 = S3Server::start();
    s3.create_bucket("nolist");
    let run = common::ferry(w, &["clean", "s3://nolist/", "--dst-endpoint", &s3.endpoint], &s3.env());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cannot list multipart uploads"), "{}", run.stderr);
}
