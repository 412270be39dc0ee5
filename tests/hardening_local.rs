//! Issue 12, local disk: a hostile destination tree (symlinks planted where ferry writes), a
//! hostile source tree (symlinks, FIFOs and sockets swapped in after the plan, unreadable files),
//! a full destination, names as long as the file system allows, and permission bits.

mod common;

use common::{Run, ferry, ferry_as_nobody, ferry_command, ferry_ok};
use ferry_testkit::S3Server;
use ferry_testkit::tree::{assert_same_tree, file_sha256, write_tree};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &[u8] = b"root-only secret outside the tree\n";

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false)
}

/// Every file under `root` whose bytes are `needle`, as a list of paths.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && std::fs::read(e.path()).unwrap() == needle {
                found.push(e.path());
            }
        }
    }
    found
}

fn failure_of<'a>(summary: &'a serde_json::Value, key: &str) -> &'a str {
    summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .and_then(|f| f["error"].as_str())
        .unwrap_or_else(|| panic!("no failure for {key}: {summary}"))
}

// Issue 12, case 1: a destination directory that is a symlink (`sub -> /elsewhere`) got
// `sub/file.txt` written to `/elsewhere/file.txt`.
#[test]
fn case_01_destination_symlink_directory_is_not_followed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write(&w.join("src/top.txt"), b"top\n");
    write(&w.join("src/sub/file.txt"), b"copied bytes\n");
    write(&w.join("src/sub/deeper/more.txt"), b"more\n");
    write(&w.join("elsewhere/file.txt"), SECRET);
    std::fs::create_dir_all(w.join("dst")).unwrap();
    symlink(w.join("elsewhere"), w.join("dst/sub")).unwrap();

    let run = ferry(w, &["copy", "src", "dst", "--job", "job"], &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("failed: sub/file.txt: ")
            && run.stdout.contains("destination path component sub is a symlink; ferry does not write through symlinks"),
        "{}",
        run.stdout
    );
    // Nothing outside the destination changed; the link is still a link; the rest was copied.
    assert_eq!(std::fs::read(w.join("elsewhere/file.txt")).unwrap(), SECRET);
    assert_eq!(std::fs::read_dir(w.join("elsewhere")).unwrap().count(), 1, "something was written outside the destination");
    assert!(is_symlink(&w.join("dst/sub")));
    assert_eq!(std::fs::read(w.join("dst/top.txt")).unwrap(), b"top\n");
    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["counts"]["failed"], 2, "{status}");
}

// Issue 12, case 1: a planted `.NAME.ferry-tmp-put -> /victim` (the temp name was predictable)
// overwrote `/victim` and left NAME a symlink to it.
#[test]
fn case_01_planted_temp_name_symlink_is_not_written_through() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write(&w.join("src/a.txt"), b"object bytes\n");
    write(&w.join("src/dir/b.txt"), b"object bytes b\n");
    write(&w.join("victim"), SECRET);
    std::fs::create_dir_all(w.join("dst/dir")).unwrap();
    // The old predictable names, and the new temp prefix with ids an attacker might guess.
    let planted = [
        "dst/.a.txt.ferry-tmp-put",
        "dst/dir/.b.txt.ferry-tmp-put",
        "dst/.ferry-tmp-put",
        "dst/.ferry-tmp-0000000000000000000000000000000f",
        "dst/dir/.ferry-tmp-00000000000000000000000000000000",
    ];
    for p in planted {
        symlink(w.join("victim"), w.join(p)).unwrap();
    }

    ferry_ok(w, &["copy", "src", "dst", "--job", "job"], &[], 0);
    assert_eq!(std::fs::read(w.join("victim")).unwrap(), SECRET, "the victim was written through a planted temp name");
    for (key, bytes) in [("a.txt", &b"object bytes\n"[..]), ("dir/b.txt", b"object bytes b\n")] {
        let dst = w.join("dst").join(key);
        assert!(!is_symlink(&dst), "{key} was left a symlink");
        assert_eq!(std::fs::read(&dst).unwrap(), bytes);
    }
    for p in planted {
        assert!(is_symlink(&w.join(p)), "{p} was replaced");
    }
    ferry_ok(w, &["verify", "--job", "job", "--all-bytes"], &[], 0);
}

// Issue 12, case 1: a symlink at the final name is replaced by the copy, never written through
// (single put and multipart both rename over it).
#[test]
fn case_01_final_name_symlink_is_replaced_not_written_through() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("small.txt".into(), 100), ("big.bin".into(), 3 << 20)]);
    write(&w.join("victim-small"), SECRET);
    write(&w.join("victim-big"), SECRET);
    std::fs::create_dir_all(w.join("dst")).unwrap();
    symlink(w.join("victim-small"), w.join("dst/small.txt")).unwrap();
    symlink(w.join("victim-big"), w.join("dst/big.bin")).unwrap();

    ferry_ok(w, &["copy", "src", "dst", "--job", "job", "--part-size", "1MiB"], &[], 0);
    assert_eq!(std::fs::read(w.join("victim-small")).unwrap(), SECRET);
    assert_eq!(std::fs::read(w.join("victim-big")).unwrap(), SECRET);
    assert!(!is_symlink(&w.join("dst/small.txt")) && !is_symlink(&w.join("dst/big.bin")));
    assert_same_tree(&w.join("src"), &w.join("dst"));
}

// Issue 12, case 2: a source file swapped for a symlink between plan and copy was read through
// it (a root-only file outside the source landed in the destination).
#[test]
fn case_02_source_swapped_for_a_symlink_after_the_plan_is_not_read() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("small.txt".into(), SECRET.len()), ("big.bin".into(), 3 << 20), ("kept.txt".into(), 10)]);
    let outside_big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    write(&w.join("secret"), SECRET);
    write(&w.join("secret-big"), &outside_big);
    chmod(&w.join("secret"), 0o600);
    ferry_ok(w, &["plan", "src", "dst", "--job", "job"], &[], 0);
    for (name, target) in [("small.txt", "secret"), ("big.bin", "secret-big")] {
        std::fs::remove_file(w.join("src").join(name)).unwrap();
        symlink(w.join(target), w.join("src").join(name)).unwrap();
    }

    let run = ferry(w, &["copy", "--job", "job", "--part-size", "1MiB", "--json"], &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["copied"], 1, "{summary}");
    for key in ["small.txt", "big.bin"] {
        let error = failure_of(&summary, key);
        assert!(error.contains("is a symlink"), "{key}: {error}");
        assert!(!w.join("dst").join(key).exists(), "{key} was written");
    }
    assert!(files_holding(&w.join("dst"), SECRET).is_empty(), "the secret reached the destination");
}

// Issue 12, case 5: a FIFO put in place of a planned file hung the copy forever (and a socket
// or device must not be read either).
#[test]
fn case_05_fifo_or_socket_in_place_of_a_planned_file_fails_that_object() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("fifo".into(), 10), ("sock".into(), 10), ("big-fifo".into(), 3 << 20), ("kept".into(), 10)]);
    ferry_ok(w, &["plan", "src", "dst", "--job", "job"], &[], 0);
    for name in ["fifo", "big-fifo"] {
        std::fs::remove_file(w.join("src").join(name)).unwrap();
        let made = Command::new("mkfifo").arg(w.join("src").join(name)).status().unwrap();
        assert!(made.success());
    }
    std::fs::remove_file(w.join("src/sock")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(w.join("src/sock")).unwrap();

    // A hang guard, not a speed test: a copy that blocks on the FIFO is killed and fails here.
    let mut child = ferry_command(w, &["copy", "--job", "job", "--part-size", "1MiB", "--json"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut finished = false;
    for _ in 0..1200 {
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !finished {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(finished, "the copy hung on a FIFO");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert!(failure_of(&summary, "fifo").contains("is a FIFO"), "{summary}");
    assert!(failure_of(&summary, "big-fifo").contains("is a FIFO"), "{summary}");
    assert!(failure_of(&summary, "sock").contains("is a socket"), "{summary}");
}

// Issue 12, case 3: one unreadable source file stopped the whole job (PermissionDenied was
// fatal). Done means: 1,000 readable and 10 unreadable files, copied as an unprivileged user:
// the 1,000 copied, the 10 failed with "permission denied", exit 1; after a chmod, a re-run
// copies exactly the 10.
#[test]
fn case_03_unreadable_files_fail_alone_and_a_rerun_copies_them() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut files: Vec<(String, usize)> = (0..1000).map(|i| (format!("d{}/f{i:04}.txt", i % 10), 20 + i % 50)).collect();
    let locked: Vec<String> = (0..10).map(|i| format!("d{i}/locked-{i}.txt")).collect();
    files.extend(locked.iter().map(|k| (k.clone(), 30)));
    write_tree(&w.join("src"), &files);
    for key in &locked {
        chmod(&w.join("src").join(key), 0o000);
    }
    // The unprivileged user may write the work directory and read the tree.
    chmod(w, 0o777);
    std::fs::create_dir_all(w.join(".home")).unwrap();
    chmod(&w.join(".home"), 0o777);

    let run = ferry_as_nobody(w, &["copy", "src", "dst", "--job", "job", "--json"]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["copied"], 1000, "{summary}");
    assert_eq!(summary["failed"], 10, "{summary}");
    assert!(summary["stopped_by"].is_null(), "{summary}");
    for key in &locked {
        assert!(failure_of(&summary, key).contains("permission denied"), "{summary}");
    }
    let status = ferry_as_nobody(w, &["status", "--job", "job", "--json"]);
    assert_eq!(status.json()["counts"]["failed"], 10, "{}", status.stdout);

    for key in &locked {
        chmod(&w.join("src").join(key), 0o644);
    }
    let again = ferry_as_nobody(w, &["copy", "--job", "job", "--json"]);
    assert_eq!(again.code, 0, "stdout:\n{}\nstderr:\n{}", again.stdout, again.stderr);
    let again = again.json();
    assert_eq!(again["copied"], 10, "{again}");
    assert_eq!(again["already_done"], 1000, "{again}");
    assert_same_tree(&w.join("src"), &w.join("dst"));
}

/// A tmpfs of `mib` MiB mounted at `dir`: a destination that really fills up. Unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "mounting a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

// Issue 12, case 3: a full destination file system stopped the run, though smaller objects
// after the one that did not fit would still have fitted.
#[test]
fn case_03_a_full_destination_fails_the_object_and_the_run_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut files = vec![("a-too-big.bin".to_string(), 6 << 20)];
    files.extend((0..20).map(|i| (format!("b-small-{i:02}.txt"), 1000)));
    write_tree(&w.join("src"), &files);
    let _dst = Tmpfs::mount(&w.join("dst"), 4);

    // One object at a time, in key order: the big one fails first, then the small ones fit.
    let run = ferry(w, &["copy", "src", "dst", "--job", "job", "--transfers", "1", "--json"], &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert!(summary["stopped_by"].is_null(), "{summary}");
    assert_eq!(summary["copied"], 20, "{summary}");
    assert!(failure_of(&summary, "a-too-big.bin").contains("no space left"), "{summary}");
    let left: Vec<_> = std::fs::read_dir(w.join("dst")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 20, "a temp file or the big object was left: {left:?}");
}

// Issue 12, case 7: temp names added 15 or 44 bytes to the object's name, so a name near 255
// bytes could never be copied to a local destination.
#[test]
fn case_07_a_255_byte_name_copies_to_local_disk_single_and_multipart() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let long_small = format!("{}.txt", "s".repeat(251));
    let long_big = format!("dir/{}.bin", "b".repeat(251));
    assert_eq!(long_small.len(), 255);
    write_tree(&w.join("src"), &[(long_small.clone(), 1000), (long_big.clone(), 3 << 20)]);

    let run = ferry(w, &["copy", "src", "dst", "--job", "job", "--part-size", "1MiB", "--json"], &[]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["copied"], 2);
    assert_same_tree(&w.join("src"), &w.join("dst"));
    ferry_ok(w, &["verify", "--job", "job", "--all-bytes"], &[], 0);
    assert_eq!(file_sha256(&w.join("dst").join(&long_big)), file_sha256(&w.join("src").join(&long_big)));
}

// Issue 12, case 12: a mode-600 file arrived as 644 on a local destination.
#[test]
fn case_12_local_to_local_keeps_permission_bits_without_setuid() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files = [("private.txt", 0o600), ("group.txt", 0o640), ("tool.sh", 0o755), ("setuid", 0o4755), ("dir/big.bin", 0o600)];
    let tree: Vec<(String, usize)> = files.iter().map(|(k, _)| (k.to_string(), if k.ends_with(".bin") { 3 << 20 } else { 100 })).collect();
    write_tree(&w.join("src"), &tree);
    for (key, mode) in files {
        chmod(&w.join("src").join(key), mode);
    }

    ferry_ok(w, &["copy", "src", "dst", "--job", "job", "--part-size", "1MiB"], &[], 0);
    for (key, mode) in files {
        assert_eq!(mode_of(&w.join("dst").join(key)), mode & 0o777, "{key}");
    }
    assert_eq!(mode_of(&w.join("dst/dir")), 0o755);
}

// Issue 12, case 12: from an object store, files arrive 0644 (directories 0755), or with the
// mode `--file-mode` gives.
#[test]
fn case_12_object_store_sources_write_0644_or_the_file_mode_given() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a/small.txt".into(), 100), ("big.bin".into(), 3 << 20)]);
    chmod(&w.join("src/a/small.txt"), 0o600);
    let s3 = S3Server::start();
    s3.create_bucket("modes");
    let env = s3.env();
    ferry_ok(w, &["copy", "src", "s3://modes/m", "--job", "up", "--dst-endpoint", &s3.endpoint], &env, 0);

    let back = ["copy", "s3://modes/m", "back", "--job", "job-back", "--src-endpoint", &s3.endpoint, "--part-size", "1MiB"];
    ferry_ok(w, &back, &env, 0);
    assert_eq!(mode_of(&w.join("back/a/small.txt")), 0o644);
    assert_eq!(mode_of(&w.join("back/big.bin")), 0o644);
    assert_eq!(mode_of(&w.join("back/a")), 0o755);

    let given = ["copy", "s3://modes/m", "given", "--job", "job-given", "--src-endpoint", &s3.endpoint, "--part-size", "1MiB"];
    ferry_ok(w, &[&given[..], &["--file-mode", "0640"]].concat(), &env, 0);
    assert_eq!(mode_of(&w.join("given/a/small.txt")), 0o640);
    assert_eq!(mode_of(&w.join("given/big.bin")), 0o640);
    let bad = ferry(w, &["copy", "src", "x", "--job", "bad", "--file-mode", "4755"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--file-mode"), "{}", bad.stderr);
    assert!(!w.join("x").exists() && !w.join("bad").exists());
}

// Issue 12, case 3 (the destination side, a guard): a destination directory this user may not
// write stops the run at once (exit 2) — no object could be written — while an unwritable
// subdirectory fails only the objects under it.
#[test]
fn case_03_an_unwritable_destination_root_stops_and_an_unwritable_subdirectory_fails_its_objects() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.txt".into(), 10), ("locked/b.txt".into(), 10), ("open/c.txt".into(), 10)]);
    chmod(w, 0o777);
    std::fs::create_dir_all(w.join(".home")).unwrap();
    chmod(&w.join(".home"), 0o777);
    // Owned by root, 0755: nobody cannot write it.
    std::fs::create_dir_all(w.join("root-owned")).unwrap();
    let run = ferry_as_nobody(w, &["copy", "src", "root-owned", "--job", "job1"]);
    assert_eq!(run.code, 2, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cannot write the destination directory"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(w.join("root-owned")).unwrap().count(), 0);

    std::fs::create_dir_all(w.join("dst/locked")).unwrap();
    chmod(&w.join("dst"), 0o777);
    let run = ferry_as_nobody(w, &["copy", "src", "dst", "--job", "job2", "--json"]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["copied"], 2, "{summary}");
    assert!(failure_of(&summary, "locked/b.txt").contains("permission denied"), "{summary}");
}
