//! Issue 12, hardening: a job directory reached through `..` or a symlink, crafted shipment
//! manifests, numeric flags that panicked, reports after a restarted object, and `export
//! --check` next to a running export.

mod common;

use common::{Run, ferry, ferry_command, ferry_ok};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Runs ferry expecting exit 2 with `needle` on stderr's first line.
fn refused(w: &Path, args: &[&str], needle: &str) -> Run {
    let run = ferry(w, args, &[]);
    assert_eq!(run.code, 2, "ferry {args:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.to_lowercase().contains(&needle.to_lowercase()), "{needle:?} not in {first:?}\nstderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// Every path under `root`, relative to it (symlinks not followed), but the `.home` the test
/// harness gives ferry.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name() == ".home" {
                continue;
            }
            out.push(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs `ferry ARGS` under `/usr/bin/time` with its address space capped at 4 GiB (so a runaway
/// allocation fails instead of taking the machine's memory); returns the run and its peak RSS
/// in KiB.
fn ferry_measured(w: &Path, args: &[&str]) -> (Run, u64) {
    let inner = ferry_command(w, args, &[]);
    let peak = w.join(".peak-rss");
    let mut cmd = Command::new("prlimit");
    cmd.arg("--as=4294967296").arg("/usr/bin/time").arg("-f").arg("%M").arg("-o").arg(&peak).arg(inner.get_program());
    cmd.args(inner.get_args()).current_dir(inner.get_current_dir().unwrap());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run ferry under /usr/bin/time");
    let text = std::fs::read_to_string(&peak).unwrap();
    // A child killed by a signal makes time(1) write "Command terminated by signal N" first.
    let kib = text.lines().last().unwrap().trim().parse().unwrap_or_else(|_| panic!("time(1) wrote {text:?}"));
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    (run, kib)
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, data).unwrap();
    ferry_testkit::tree::file_sha256(&p)
}

// Issue 12, case 8: the job-inside-source check compared paths lexically, so a job directory
// reached through `..` or a symlink passed and ferry copied its own journal and lock.
#[test]
fn case_08_a_job_inside_the_source_or_destination_through_dotdot_or_a_symlink_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a.txt"), b"a").unwrap();
    std::fs::create_dir_all(w.join("dst")).unwrap();
    std::fs::create_dir_all(w.join("a")).unwrap();
    std::os::unix::fs::symlink(w.join("src"), w.join("link-to-src")).unwrap();
    std::os::unix::fs::symlink("dst", w.join("link-to-dst")).unwrap();
    let before = tree(w);

    for job in ["a/other/../../src/job", "a/../src/job", "link-to-src/job", "link-to-src/deeper/job"] {
        refused(w, &["copy", "src", "dst", "--job", job], "inside the source");
    }
    for job in ["a/other/../../dst/job", "link-to-dst/job", "link-to-dst/new/../job"] {
        refused(w, &["copy", "src", "dst", "--job", job], "inside the destination");
    }
    // The source or destination given through a link is caught the same way.
    refused(w, &["copy", "link-to-src", "dst", "--job", "src/job"], "inside the source");
    refused(w, &["plan", "src", "link-to-dst", "--job", "dst/job", "--json"], "inside the destination");
    assert_eq!(tree(w), before, "nothing written: no job directory, no copied file");

    // A job beside them, reached through `..`, is fine.
    ferry_ok(w, &["copy", "src", "dst", "--job", "a/other/../job"], &[], 0);
    assert!(w.join("a/job/job.toml").is_file());
    assert_eq!(tree(&w.join("dst")), ["a.txt"]);
}

/// A shipment manifest as `ferry export` writes it, with `header` fields overridden and
/// `files` as its file lines; the files themselves are written on the device.
fn crafted_shipment(root: &Path, header: serde_json::Value, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(root).unwrap();
    let mut h = serde_json::json!({
        "format": "ferry-shipment/1",
        "export_id": "e-1",
        "source": "s3://bkt/",
        "generation": 1,
        "manifest_sha256": "00",
        "layout": {"kind": "plain"},
        "device": 1,
        "devices": 1,
        "label": "/mnt/d1",
        "files": files.len(),
        "bytes": files.iter().map(|(_, d)| d.len()).sum::<usize>(),
        "pending_elsewhere": 0,
        "created_at": "2026-12-01T00:00:00Z",
    });
    for (k, v) in header.as_object().unwrap() {
        h[k] = v.clone();
    }
    let mut text = format!("{h}\n");
    for (path, data) in files {
        std::fs::write(root.join(path), data).unwrap();
        let line =
            serde_json::json!({"path": path, "key": path, "size": data.len(), "sha256": sha256_hex(data), "crc64nvme": "", "crc32c": ""});
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(root.join("ferry-shipment.jsonl"), text).unwrap();
}

// Issue 12, case 9: a crafted shipment manifest (`"devices": 4000000000`) made ingest allocate
// 16 GiB. Every count a shipment declares is checked against what is on the disk.
#[test]
fn case_09_counts_a_shipment_declares_are_bounded_by_what_is_on_the_disk() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let file: (&str, &[u8]) = ("a.txt", b"hello");
    for (header, field) in [
        (serde_json::json!({"devices": 4_000_000_000u64}), "devices"),
        (serde_json::json!({"device": 3, "devices": 2}), "device"),
        (serde_json::json!({"device": 0}), "device"),
        (serde_json::json!({"files": 4_000_000_000u64}), "files"),
        (serde_json::json!({"bytes": 1u64 << 60}), "bytes"),
    ] {
        let dev = w.join("dev");
        let _ = std::fs::remove_dir_all(&dev);
        crafted_shipment(&dev, header.clone(), &[file]);
        let (run, kib) = ferry_measured(w, &["ingest", "landing", "--from", "dev", "--job", "job"]);
        assert_eq!(run.code, 2, "{header}: exit {}\nstdout:\n{}\nstderr:\n{}", run.code, run.stdout, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{header}: one line: {}", run.stderr);
        assert!(lines[0].contains("ferry-shipment.jsonl") && lines[0].contains(&format!("`{field}`")), "{header}: {}", lines[0]);
        assert!(kib < 200 << 10, "{header}: peak RSS {kib} KiB");
        assert!(!w.join("job").exists() && !w.join("landing").exists(), "{header}: nothing written");
    }
    // Devices the shipment names but were not given are reported, not allocated.
    let dev = w.join("dev");
    let _ = std::fs::remove_dir_all(&dev);
    crafted_shipment(&dev, serde_json::json!({"devices": 3}), &[file]);
    let run = ferry(w, &["ingest", "landing", "--from", "dev", "--job", "job", "--json"], &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.json()["devices_missing"], serde_json::json!([2, 3]));
    assert_eq!(std::fs::read(w.join("landing/a.txt")).unwrap(), b"hello");
}

// Issue 12, case 20 (shipment lines): a shipment manifest's lines were read whole, however long.
// A 200 MiB line is refused after 64 KiB, with the file and line named.
#[test]
fn case_20_a_huge_shipment_line_is_refused_without_reading_it_into_memory() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dev = w.join("dev");
    crafted_shipment(&dev, serde_json::json!({}), &[("a.txt", b"hello")]);
    let good = std::fs::read_to_string(dev.join("ferry-shipment.jsonl")).unwrap();
    let header = good.lines().next().unwrap();
    for (prefix, line) in [(format!("{header}\n{{\"path\": \""), 2), ("{\"format\": \"".to_string(), 1)] {
        // One line of 200 MiB, written in pieces.
        let mut f = std::fs::File::create(dev.join("ferry-shipment.jsonl")).unwrap();
        f.write_all(prefix.as_bytes()).unwrap();
        let piece = vec![b'x'; 1 << 20];
        for _ in 0..200 {
            f.write_all(&piece).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
        drop(f);
        let (run, kib) = ferry_measured(w, &["ingest", "landing", "--from", "dev", "--job", "job"]);
        assert_eq!(run.code, 2, "exit {}\nstdout:\n{}\nstderr:\n{}", run.code, run.stdout, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
        assert!(lines[0].contains("ferry-shipment.jsonl") && lines[0].contains(&format!("line {line}")), "{}", lines[0]);
        assert!(lines[0].contains("longer than"), "{}", lines[0]);
        // The line is 200 MiB; reading it whole would need at least that much.
        assert!(kib < 100 << 10, "peak RSS {kib} KiB reading a shipment with a 200 MiB line");
        assert!(!w.join("job").exists() && !w.join("landing").exists(), "nothing written");
    }
}

// Issue 12, case 10: numeric flags out of range panicked (exit 101), one after writing the
// job directory: `copy --transfers 2305843009213693952` (tokio's semaphore limit) and
// `clean DIR --older-than 1000000000d` (a date before the calendar). They are refused when the
// command line is parsed.
#[test]
fn case_10_out_of_range_numbers_are_refused_at_parse_time() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a.txt"), b"a").unwrap();
    std::fs::create_dir_all(w.join("d")).unwrap();
    let before = tree(w);
    for transfers in ["2305843009213693952", "0", "10001"] {
        refused(w, &["copy", "src", "dst", "--job", "job", "--transfers", transfers], "--transfers");
        refused(w, &["export", "src", "--to", "d", "--layout", "plain", "--job", "job", "--transfers", transfers], "--transfers");
        refused(w, &["verify", "--job", "job", "--transfers", transfers], "--transfers");
        refused(w, &["ingest", "dst", "--from", "d", "--job", "job", "--transfers", transfers], "--transfers");
    }
    for age in ["1000000000d", "18446744073709551615s", "99999999999999999999d", "36501d"] {
        refused(w, &["clean", "d", "--older-than", age], "--older-than");
    }
    assert_eq!(tree(w), before, "nothing written");
    // The largest values accepted work.
    ferry_ok(w, &["copy", "src", "dst", "--job", "job", "--transfers", "10000"], &[], 0);
    ferry_ok(w, &["clean", "d", "--older-than", "36500d"], &[], 0);
}

// Issue 12, case 13: when an object is restarted because its source changed, the journal copied
// the new version but `manifest export` showed the old size next to the new SHA-256 and the
// run summary counted the old size.
#[test]
fn case_13_reports_after_a_restart_show_the_version_copied() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/changing.txt"), b"first!").unwrap();
    std::fs::write(w.join("src/steady.txt"), b"steady").unwrap();
    ferry_ok(w, &["plan", "src", "dst", "--job", "job"], &[], 0);
    let new = b"second version, 26 bytes!!";
    assert_eq!(new.len(), 26);
    std::fs::write(w.join("src/changing.txt"), new).unwrap();
    let sha = sha256_hex(new);

    let copy = ferry_ok(w, &["copy", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(copy["copied"], 2, "{copy}");
    assert_eq!(copy["bytes_copied"], 26 + 6, "the summary counts the bytes of the version copied: {copy}");
    assert_eq!(copy["restarted"][0]["key"], "changing.txt", "{copy}");
    assert_eq!(std::fs::read(w.join("dst/changing.txt")).unwrap(), new);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join(copy["report"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(report["bytes_copied"], 26 + 6);

    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["counts"]["bytes"], 26 + 6, "{status}");
    assert_eq!(status["counts"]["done_bytes"], 26 + 6, "{status}");

    let jsonl = ferry_ok(w, &["manifest", "export", "--job", "job", "--format", "jsonl"], &[], 0);
    let rows: Vec<serde_json::Value> = jsonl.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let changed = rows.iter().find(|r| r["key"] == "changing.txt").unwrap();
    assert_eq!((changed["size"].as_u64(), changed["sha256"].as_str()), (Some(26), Some(sha.as_str())), "{changed}");
    assert!(changed["note"].as_str().unwrap_or_default().starts_with("restarted"), "{changed}");
    let steady = rows.iter().find(|r| r["key"] == "steady.txt").unwrap();
    assert_eq!((steady["size"].as_u64(), &steady["note"]), (Some(6), &serde_json::Value::Null), "{steady}");

    let csv = ferry_ok(w, &["manifest", "export", "--job", "job", "--format", "csv"], &[], 0).stdout;
    let mut lines = csv.lines();
    let columns: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no {name} column: {columns:?}"));
    let row: Vec<&str> = lines.find(|l| l.starts_with("changing.txt,")).unwrap().split(',').collect();
    assert_eq!((row[col("size")], row[col("sha256")]), ("26", sha.as_str()), "{csv}");
    assert!(row[col("note")].trim_start_matches('"').starts_with("restarted"), "{csv}");
}

// Issue 12, case 14: `export --check` released the reserve file of an export running on the same
// device before it found the job locked, though a check promises to write nothing.
#[test]
fn case_14_export_check_never_touches_a_running_exports_reserve() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a.txt"), b"a").unwrap();
    std::fs::create_dir_all(w.join("dev")).unwrap();
    let export = ["export", "src", "--to", "dev", "--job", "job", "--layout", "plain"];
    ferry_ok(w, &export, &[], 0);

    // A running export holds the job's lock and has its reserve on the device.
    let reserve = w.join("dev/.shipment-reserve.ferry-tmp-0");
    std::fs::write(&reserve, vec![0u8; 64 << 10]).unwrap();
    let lock = std::fs::File::options().write(true).open(w.join("job/.lock")).unwrap();
    lock.try_lock().unwrap();
    let check = ["export", "--to", "dev", "--job", "job", "--layout", "plain", "--check"];
    refused(w, &check, "in use by another ferry process");
    assert!(reserve.is_file(), "the running export's reserve is still there");
    refused(w, &export, "in use by another ferry process");
    assert!(reserve.is_file(), "an export that cannot take the lock leaves the reserve alone");

    // Unlocked, a check still writes nothing to the device; an export takes the stale reserve back.
    drop(lock);
    ferry_ok(w, &check, &[], 0);
    assert!(reserve.is_file(), "a check never touches a reserve file");
    ferry_ok(w, &export, &[], 0);
    assert!(!reserve.exists(), "an export releases a reserve left behind");
}

// Issue 15 (left from the delta work): a reader that closes ferry's standard output early
// (`ferry rollback --dry-run … | head -1`) made `println!` panic, exit 101 with a panic
// message; `ferry manifest export | head -1` ended with an error. Both now end quietly, exit 0,
// the job untouched.
#[test]
fn a_closed_standard_output_ends_ferry_quietly() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    ferry_testkit::tree::write_tree(&w.join("src"), &(0..3000).map(|i| (format!("f{i:04}"), 1)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    for args in [&["rollback", "--job", "j", "--run", "1", "--dry-run"][..], &["manifest", "export", "--job", "j", "--format", "jsonl"]] {
        let mut child =
            ferry_command(w, args, &[]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // Read one line, then go away (as `head -1` does).
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!first.is_empty());
    }
    assert_eq!(std::fs::read_dir(w.join("dst")).unwrap().count(), 3000, "a dry run touched nothing");
}
