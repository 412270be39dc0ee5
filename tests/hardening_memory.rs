//! Issue 12, memory bounds and what a kill costs: `--max-memory` is a cap on every path (peak
//! RSS measured by the kernel, not reported by ferry), part sizes are validated against the
//! destination and the budget before anything is written, part counts are never truncated, and
//! a SIGKILL costs at most the budget's worth of bytes sent again.

mod common;

use common::{Rng, ferry, ferry_command, ferry_ok};
use ferry_testkit::tree::{assert_same_tree, write_tree};
use ferry_testkit::{CountingProxy, S3Server};
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const MIB: u64 = 1 << 20;
/// What the process itself takes besides the budget (runtime, TLS, SDK, the binary's pages):
/// the issue's bound is budget + 48 MiB.
const OVERHEAD: u64 = 48 * MIB;

/// A run of ferry with its peak resident set size: the kernel's high-water mark of the
/// process's memory (`VmHWM` in /proc/PID/status), read every 10 ms until it exits. (Not
/// `wait4`'s `ru_maxrss`: a child spawned from this test process starts from the test
/// process's own high-water mark, which holds the in-process S3 server's.) The mark only
/// grows, so the last reading misses at most a rise in the final 10 ms of the run.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    peak_rss: u64,
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

fn run_measured(w: &Path, args: &[&str], env: &[(String, String)]) -> Measured {
    let mut child = ferry_command(w, args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn ferry");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut peak_rss = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm(child.id()) {
            peak_rss = peak_rss.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(peak_rss > 0, "no VmHWM read for ferry");
    Measured { code: status.code().unwrap_or(-1), stdout: out.join().unwrap(), stderr: err.join().unwrap(), peak_rss }
}

fn assert_within_budget(run: &Measured, budget: u64, what: &str) {
    assert_eq!(run.code, 0, "{what} failed:\n{}\n{}", run.stdout, run.stderr);
    println!("{what}: peak RSS {} MiB under --max-memory {} MiB", run.peak_rss / MIB, budget / MIB);
    assert!(
        run.peak_rss <= budget + OVERHEAD,
        "{what}: peak RSS {} MiB, over --max-memory {} MiB + {} MiB",
        run.peak_rss / MIB,
        budget / MIB,
        OVERHEAD / MIB
    );
}

/// Runs ferry, killing it if it has not ended after `polls` × 100 ms: a guard against a run that
/// would go on for hours (what the old code did with these inputs), not a timing assertion.
fn ferry_guarded(w: &Path, args: &[&str], env: &[(String, String)], polls: u32) -> (i32, String) {
    let mut child = ferry_command(w, args, env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn ferry");
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    for _ in 0..polls {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (-1, format!("still running after {} s: killed\n{}", polls / 10, err.join().unwrap()))
}

/// A file of `size` bytes that takes no disk space (its blocks read as zeros).
fn sparse_file(path: &Path, size: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

fn files_under(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

// Issue 12, case 6: `--max-memory 1MiB --part-size 10GiB` on a 400 MB file peaked at 406 MB:
// the budget clamped a request to itself and let it through, and every object up to the part
// size was read whole for a single put.
#[test]
fn case_06_max_memory_caps_peak_rss_whatever_the_part_size() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut files = vec![("big.bin".to_string(), 200 << 20)];
    files.extend((0..8).map(|i| (format!("mid/m{i}.bin"), (25 << 20) + i)));
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("capped");
    let env = s3.env();
    let budget = 16 * MIB;

    let copy = ["copy", "src", "s3://capped/c", "--job", "job", "--dst-endpoint", &s3.endpoint, "--json"];
    let run = run_measured(w, &[&copy[..], &["--max-memory", "16MiB", "--part-size", "10GiB"]].concat(), &env);
    assert_within_budget(&run, budget, "copy");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    // The run says which part size it used, and that it is not the one asked for.
    assert_eq!(summary["part_size"], budget, "{summary}");
    assert_eq!(summary["part_size_asked"], 10u64 << 30, "{summary}");
    assert!(run.stderr.contains("parts of 16.0 MiB (--part-size 10.0 GiB lowered to fit --max-memory 16.0 MiB)"), "{}", run.stderr);

    // Reading everything back holds no more than the budget either, however many objects are
    // checked at once.
    let verify = run_measured(w, &["verify", "--job", "job", "--all-bytes", "--max-memory", "16MiB", "--json"], &env);
    assert_within_budget(&verify, budget, "verify --all-bytes");
    let verified: serde_json::Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(verified["proved_by"]["sha256 read-back"], files.len(), "{verified}");

    // And back down to a local disk, the other way through the same caps.
    let back = run_measured(
        w,
        &["copy", "s3://capped/c", "back", "--job", "back-job", "--src-endpoint", &s3.endpoint, "--max-memory", "16MiB"],
        &env,
    );
    assert_within_budget(&back, budget, "download");
    assert_same_tree(&w.join("src"), &w.join("back"));
}

// Issue 12, case 6: a run that cannot fit its parts into the budget is refused with one clear
// line and exit 2 before a byte moves: here an object that S3's 10,000-part limit forces into
// 11 MiB parts under an 8 MiB budget, and a budget below S3's 5 MiB minimum part.
#[test]
fn case_06_a_copy_whose_parts_cannot_fit_the_budget_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    sparse_file(&w.join("src/huge.bin"), 100 << 30);
    std::fs::write(w.join("src/small.txt"), b"small").unwrap();
    let s3 = S3Server::start();
    s3.create_bucket("refuse");
    let env = s3.env();

    let args = ["copy", "src", "s3://refuse/r", "--job", "job", "--dst-endpoint", &s3.endpoint, "--max-memory", "8MiB"];
    let (code, stderr) = ferry_guarded(w, &args, &env, 600);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("huge.bin (100.0 GiB)") && stderr.contains("raise --max-memory to at least 11MiB"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(files_under(&s3.root.path().join("refuse")), 0, "nothing may be written at the destination");

    // A budget smaller than the destination's smallest part: refused before the job exists.
    let args = ["copy", "src", "s3://refuse/r", "--job", "job2", "--dst-endpoint", &s3.endpoint, "--max-memory", "4MiB"];
    let (code, stderr) = ferry_guarded(w, &args, &env, 600);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("smallest part is 5.0 MiB") && stderr.contains("at least 5MiB"), "{stderr}");
    assert!(!w.join("job2").exists(), "a refused run leaves no job directory");
}

// Issue 12, case 11: `--part-size 0` was accepted (1-byte parts), a part size below the
// destination's minimum was silently raised, and a memory budget of 0 was taken.
#[test]
fn case_11_part_sizes_are_validated_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.txt".to_string(), 20_000)]);
    let s3 = S3Server::start();
    s3.create_bucket("sizes");
    let env = s3.env();
    let base = ["copy", "src", "s3://sizes/s", "--job", "job", "--dst-endpoint", &s3.endpoint];
    for (flags, expect) in [
        (["--part-size", "0"], "invalid part size \"0\": must be more than 0"),
        (["--part-size", "1MiB"], "--part-size 1.0 MiB: s3 takes parts of at least 5.0 MiB; use --part-size 5MiB or more"),
        (["--max-memory", "0"], "invalid memory budget \"0\": must be at least 1MiB"),
    ] {
        let run = ferry(w, &[&base[..], &flags[..]].concat(), &env);
        assert_eq!(run.code, 2, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(expect), "{flags:?}: {}", run.stderr);
        assert!(!w.join("job").exists(), "{flags:?}: a refused run leaves no job directory");
        assert_eq!(files_under(&s3.root.path().join("sizes")), 0, "{flags:?}: nothing may be written at the destination");
    }
}

// Issue 12, case 11: part counts were truncated to u32 on local destinations (`plan.count() as
// u32`): 1-byte parts of a 5 GiB object are 5,368,709,120 parts, of which the old code would
// have sent the first 1,073,741,824 and called it done.
#[test]
fn case_11_part_counts_beyond_u32_are_refused_not_truncated() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    sparse_file(&w.join("src/five.bin"), 5 << 30);
    let (code, stderr) = ferry_guarded(w, &["copy", "src", "dst", "--job", "job", "--part-size", "1"], &[], 600);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("five.bin") && stderr.contains("5368709120 parts, more than 4294967295: raise --part-size"), "{stderr}");
    assert_eq!(files_under(&w.join("dst")), 0, "nothing may be written at the destination");
}

// Issue 12, case 16: each kill cost 110–125 MiB against a 64 MiB budget (2.3–2.45× the data in
// all after 12 kills): s3s-fs lists parts without their ETags, so no journaled part was
// recognised and every open upload started over. The bound: data + kills × --max-memory (plus
// request headers), wherever the kills land — a part's memory is held until its acknowledgement
// is journaled, so at most the budget's worth of sent bytes is not; an upload completed but not
// yet journaled done is recognised by its ETag and not sent again.
#[test]
fn case_16_a_kill_costs_at_most_the_memory_budget_in_bytes_sent_again() {
    const KILLS: usize = 6;
    const BUDGET: u64 = 32 * MIB;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let files: Vec<(String, usize)> = (0..8).map(|i| (format!("large/l{i}.bin"), 40 << 20)).collect();
    let data: u64 = files.iter().map(|(_, n)| *n as u64).sum();
    write_tree(&w.join("src"), &files);
    let s3 = S3Server::start();
    s3.create_bucket("kills");
    let proxy = CountingProxy::start(&s3.endpoint);
    let env = s3.env();
    let args =
        ["copy", "src", "s3://kills/k", "--job", "job", "--dst-endpoint", &proxy.endpoint, "--max-memory", "32MiB", "--part-size", "8MiB"];

    let mut rng = Rng(0x5eed_0016);
    let mut kills: usize = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= KILLS + 1, "more runs than kills");
        let mut child = ferry_command(w, &args, &env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn ferry");
        if kills < KILLS {
            // Killed once this run has sent 40–72 MiB more (a moment chosen by progress, not by
            // time, so every kill lands while parts are being sent, however fast the machine).
            let at = proxy.uploaded() + 40 * MIB + rng.next() % (32 * MIB);
            let mut polls = 0;
            while proxy.uploaded() < at && child.try_wait().unwrap().is_none() && polls < 60_000 {
                std::thread::sleep(Duration::from_millis(2));
                polls += 1;
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                // What the service received whole it carries out before ferry runs again (a
                // real restart takes longer than this wait).
                for _ in 0..1000 {
                    if proxy.requests_in_flight() == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "final run failed: {}", String::from_utf8_lossy(&out.stderr));
        break;
    }
    assert!(kills >= 3, "only {kills} kills landed while the copy ran");
    let sent = proxy.uploaded();
    // Headers of a few hundred requests per run.
    let headers = runs as u64 * MIB;
    let limit = data + kills as u64 * BUDGET + headers;
    println!("sent {} MiB for {} MiB of data after {kills} kills (limit {} MiB)", sent / MIB, data / MIB, limit / MIB);
    assert!(sent >= data, "sent {sent} bytes, less than the data");
    assert!(
        sent <= limit,
        "sent {} MiB for {} MiB of data after {kills} kills: more than {} MiB (the data + kills × --max-memory)",
        sent / MIB,
        data / MIB,
        limit / MIB
    );
    ferry_ok(w, &["verify", "--job", "job", "--all-bytes", "--dst-endpoint", &s3.endpoint], &env, 0);
    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &env, 0).json();
    assert_eq!(status["open_uploads"].as_array().unwrap().len(), 0, "{status}");
}
