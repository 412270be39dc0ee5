//! Copies through a proxy that drops 10% of new connections mid-request and answers 503 to
//! another 5%: every copy completes byte-identical, and verify proves it.

mod common;

use common::ferry_ok;
use ferry_testkit::tree::{assert_same_tree, write_tree};
use ferry_testkit::{Azurite, CountingProxy, FakeGcs, Faults, Moto, S3Server};

const MIB: usize = 1 << 20;

fn tree() -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = (0..4).map(|i| (format!("large/l{i}.bin"), 24 * MIB + i)).collect();
    files.extend((0..200).map(|i| (format!("small/s{i:03}.txt"), 100 + i * 13)));
    files
}

/// Dropped connections and 503s on 8% of requests. A request is sent at most 5 times (the one
/// retry layer), so one fails for good at 0.08^5 (3e-6); across the ~1,300 requests of the three
/// round trips a run fails about once in 300. At 15% (the rate before) it was 7.6e-5 a request,
/// about one run in ten, and CI met it.
const FAULTS: Faults = Faults { drop_pct: 5, unavailable_pct: 3, ..Faults::DEFAULT };

#[test]
fn copies_survive_dropped_connections_and_503s() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &tree());
    let s3 = S3Server::start();
    s3.create_bucket("faulty");
    let azurite = Azurite::start();
    azurite.create_container("faulty");
    let gcs = FakeGcs::start();
    gcs.create_bucket("faulty");
    let env = s3.env();

    for (name, url, service) in
        [("s3", "s3://faulty/f", &s3.endpoint), ("az", "az://faulty/f", &azurite.endpoint), ("gs", "gs://faulty/f", &gcs.endpoint)]
    {
        let leg = std::time::Instant::now();
        let proxy = CountingProxy::start_with_faults(service, FAULTS);
        let job = format!("job-{name}");
        let up =
            ferry_ok(w, &["copy", "src", url, "--job", &job, "--part-size", "8MiB", "--dst-endpoint", &proxy.endpoint, "--json"], &env, 0)
                .json();
        assert_eq!(up["failed"], 0, "{name}: {up}");
        ferry_ok(w, &["verify", "--job", &job, "--dst-endpoint", &proxy.endpoint], &env, 0);
        // Reads through faults too: download it back through the proxy.
        let back = w.join(format!("back-{name}"));
        let back = back.to_str().unwrap();
        ferry_ok(w, &["copy", url, back, "--job", &format!("job-back-{name}"), "--src-endpoint", &proxy.endpoint], &env, 0);
        assert_same_tree(&w.join("src"), std::path::Path::new(back));
        assert!(proxy.faults_injected() > 0, "{name}: no fault was injected");
        println!("{name}: {:?} faults, {:.1}s", proxy.faults_by_kind(), leg.elapsed().as_secs_f64());
    }
}

/// Every flipped byte, on the way up or down, is caught by a checksum and repaired by a retry
/// from the source: the copies are byte-identical, no object is marked verified on bad bytes,
/// and the report counts the checksum retries.
#[test]
fn flipped_bytes_are_caught_and_repaired_never_verified() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut files = tree();
    // Mid-sized single-request objects too (a put and a GET whose bytes are all data).
    files.extend((0..20).map(|i| (format!("mid/m{i:02}.bin"), 300 * 1024 + i)));
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("flips");
    let azurite = Azurite::start();
    azurite.create_container("flips");
    let gcs = FakeGcs::start();
    gcs.create_bucket("flips");
    let env = s3.env();
    let up_faults =
        Faults { flip_upload_pct: 15, throttle_pct: 3, internal_pct: 2, latency: std::time::Duration::from_millis(2), ..Faults::DEFAULT };
    // A small object is one GET per attempt, and ferry tries an object 5 times in a run: at 15%
    // flipped and 3% cut short, one of ~450 reads failed every attempt in about 4% of runs (a
    // red CI with nothing wrong). At 6% + 2% that is ~0.15%, with dozens of flips still caught.
    let down_faults = Faults { flip_download_pct: 6, truncate_pct: 2, unavailable_pct: 2, ..Faults::DEFAULT };

    // s3s-fs keeps no checksum of a multipart object and ignores `partNumber` on HEAD, so its
    // multipart objects cannot prove a ranged read (S3 itself can: ferry checks the MD5 ETag
    // per part there). Large objects go to it in one put each, with their CRC32C.
    for (name, url, service, part_size) in [
        ("s3", "s3://flips/f", &s3.endpoint, "64MiB"),
        ("az", "az://flips/f", &azurite.endpoint, "8MiB"),
        ("gs", "gs://flips/f", &gcs.endpoint, "8MiB"),
    ] {
        let proxy = CountingProxy::start_with_faults(service, up_faults);
        let job = format!("job-{name}");
        let up_run = ferry_ok(
            w,
            &["copy", "src", url, "--job", &job, "--part-size", part_size, "--dst-endpoint", &proxy.endpoint, "--json"],
            &env,
            0,
        );
        let up = up_run.json();
        let injected = proxy.faults_by_kind();
        drop(proxy);
        let flips_up = injected.get("flip upload").copied().unwrap_or(0);
        assert!(flips_up > 0, "{name}: no upload byte was flipped: {injected:?}");
        assert_eq!(up["failed"], 0, "{name}: {up}");
        // Each flip was refused (by the service's check of ferry's checksum, or by ferry's check
        // of the service's answer) and sent again. s3s-fs reports a body that fails its SigV4
        // payload hash as a 500, so the cause may read "server error" rather than "checksum".
        let retried: u64 = up["retries"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        assert!(retried >= flips_up, "{name}: {flips_up} flipped uploads, {retried} retries: {up}");
        // The destination holds exactly the source's bytes: read every object back in full.
        ferry_ok(w, &["verify", "--job", &job, "--all-bytes", "--dst-endpoint", service], &env, 0);

        let proxy = CountingProxy::start_with_faults(service, down_faults);
        let back = w.join(format!("back-{name}"));
        // A whole-object checksum (GCS, S3) fails an attempt if any of its ranges was flipped:
        // at 15% flips per request, 16 MiB ranges keep the odds of five bad attempts in a row
        // for one object negligible (8 MiB ranges made it about 1%).
        let job_back = format!("job-back-{name}");
        let args =
            ["copy", url, back.to_str().unwrap(), "--job", &job_back, "--part-size", "16MiB", "--src-endpoint", &proxy.endpoint, "--json"];
        let down = ferry_ok(w, &args, &env, 0).json();
        let injected = proxy.faults_by_kind();
        let flips_down = injected.get("flip download").copied().unwrap_or(0);
        assert!(flips_down > 0, "{name}: no downloaded byte was flipped: {injected:?}");
        assert_eq!(down["failed"], 0, "{name}: {down}");
        // Each read with a flip fails the source's checksum (Azure's per range, GCS's and S3's
        // per object, where flips in two ranges of one read are one retry).
        let caught = down["retries"]["checksum mismatch"].as_u64().unwrap_or(0);
        assert!((1..=flips_down).contains(&caught), "{name}: {flips_down} flipped downloads, {caught} caught: {down}");
        // Every object read was proved by the source's own checksum.
        let proved: u64 = down["verified_by"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(how, _)| how.starts_with("source"))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        assert_eq!(proved, files.len() as u64, "{name}: {down}");
        assert_same_tree(&w.join("src"), &back);
        println!(
            "{name}: flipped up {flips_up}, down {flips_down}; faults up {:?}; retries up {} down {}",
            injected, up["retries"], down["retries"]
        );
    }
}

/// An S3 multipart object with no checksum is still proved on the way down: ferry learns the
/// part size (HEAD `partNumber=1`) and rebuilds the MD5 ETag from the bytes it reads, whatever
/// its own part size, so a flipped byte in any ranged read is caught and the object read again.
/// Runs on moto, which answers `partNumber` (s3s-fs ignores it); the objects are uploaded by
/// boto3, as another tool would have left them.
#[test]
fn s3_multipart_sources_are_proved_by_their_md5_etag() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files = vec![
        ("a/five.bin".to_string(), 23 * MIB + 5),
        ("a/six.bin".to_string(), 20 * MIB),
        ("b/seven.bin".to_string(), 7 * MIB + 1),
        ("b/single.bin".to_string(), 3 * MIB),
    ];
    write_tree(&w.join("src"), &files);
    let moto = Moto::start();
    moto.create_bucket("etags");
    let parts = [5 * MIB, 6 * MIB, 7 * MIB, 8 * MIB];
    for ((key, _), part) in files.iter().zip(parts) {
        moto.upload_in_parts("etags", key, &w.join("src").join(key), part as u64);
    }
    download_through_flips(w, "s3://etags", &moto.endpoint, &moto.env(), "source md5", files.len());
}

/// An S3 object that declares only a CRC64NVME (S3's default checksum since 2025, full-object
/// even for multipart uploads) is proved by it: ranged reads of a large one and whole reads of
/// small ones, with flipped bytes caught and read again.
#[test]
fn s3_sources_with_only_crc64nvme_are_proved_by_it() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files = vec![("big.bin".to_string(), 20 * MIB + 3), ("mid.bin".to_string(), 300 * 1024), ("small.txt".to_string(), 999)];
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("crc64");
    for (key, _) in &files {
        s3.put_with_crc64nvme("crc64", key, std::fs::read(w.join("src").join(key)).unwrap());
    }
    download_through_flips(w, "s3://crc64", &s3.endpoint, &s3.env(), "source crc64nvme", files.len());
}

/// Copies `url` into `w/back` in 4 MiB ranges through a proxy flipping downloaded bytes, and
/// checks: nothing failed, all `objects` proved by `evidence`, every flip caught (flips in two
/// ranges of one object's read fail one check: one retry for both), `w/back` equal to `w/src`.
fn download_through_flips(w: &std::path::Path, url: &str, service: &str, env: &[(String, String)], evidence: &str, objects: usize) {
    // The first 3 reads of object bytes are flipped: fewer in all than the 5 attempts an object has.
    let proxy = CountingProxy::start_with_faults(service, Faults { flip_download_pct: 100, max_flips: 3, ..Faults::DEFAULT });
    let back = w.join("back");
    let args = ["copy", url, back.to_str().unwrap(), "--job", "down", "--part-size", "4MiB", "--src-endpoint", &proxy.endpoint, "--json"];
    let down = ferry_ok(w, &args, env, 0).json();
    let flips = proxy.faults_by_kind().get("flip download").copied().unwrap_or(0);
    assert_eq!(flips, 3);
    assert_eq!(down["failed"], 0, "{down}");
    assert_eq!(down["verified_by"][evidence], objects as u64, "{down}");
    let caught = down["retries"]["checksum mismatch"].as_u64().unwrap_or(0);
    assert!((1..=flips).contains(&caught), "{flips} flips, {caught} caught: {down}");
    assert_same_tree(&w.join("src"), &back);
}

#[test]
fn throttling_lowers_the_objects_in_flight_and_everything_still_lands() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<(String, usize)> = (0..150).map(|i| (format!("t/{i:03}.bin"), 2048 + i)).collect();
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("busy");
    let env = s3.env();

    // A service answering 429 to one request in twenty (under the one in twelve that makes
    // ferry's per-request pace grow to its 2 s ceiling, so the run stays short).
    let proxy = CountingProxy::start_with_faults(&s3.endpoint, Faults { throttle_pct: 5, ..Faults::DEFAULT });
    let args = ["copy", "src", "s3://busy/b", "--job", "j", "--transfers", "16", "--dst-endpoint", &proxy.endpoint, "--json"];
    let run = ferry_ok(w, &args, &env, 0).json();
    assert_eq!(run["copied"], files.len(), "{run}");
    assert!(proxy.faults_by_kind().get("429").copied().unwrap_or(0) > 0, "no 429 was injected");
    let lowest = run["transfers_lowest"].as_u64().unwrap();
    assert!(lowest < 16, "ferry kept 16 objects in flight while the service pushed back: {run}");
    ferry_ok(w, &["verify", "--job", "j", "--dst-endpoint", &s3.endpoint], &env, 0);

    // Without pushback the limit stays where it was set.
    let args = ["copy", "src", "s3://busy/c", "--job", "k", "--transfers", "16", "--dst-endpoint", &s3.endpoint, "--json"];
    let run = ferry_ok(w, &args, &env, 0).json();
    assert_eq!(run["transfers_lowest"], 16, "{run}");
}
