//! Issue 12, the network providers: Azure reached through the emulator variables, SAS tokens in
//! error messages, source blobs overwritten mid-read, peers that stop reading an upload, huge
//! error bodies, and sweeping a bucket of many objects for stale uploads.
//!
//! Real services (Azurite, fake-gcs-server) where the behaviour is a real service's; a small
//! loopback peer in this file where it is an attack no real service makes.

mod common;

use bytes::Bytes;
use common::{Run, ferry, ferry_command, ferry_ok};
use ferry_testkit::services::{AZURITE_ACCOUNT, AZURITE_KEY};
use ferry_testkit::tree::{assert_same_tree, write_tree};
use ferry_testkit::{Azurite, CountingProxy, FakeGcs, Faults};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What the loopback peer does with one request.
enum Act {
    /// Answer with this status, headers and body, then close.
    Answer(u16, &'static str, String),
    /// Close the connection without an answer.
    Drop,
    /// Keep the connection open and never read or answer again.
    Hang,
    /// Answer this status with a body of this many bytes, written until the client goes away.
    Huge(u16, u64),
}

/// A loopback HTTP/1.1 peer acting per request (method, path with query) as told.
struct Peer {
    url: String,
    connections: Arc<AtomicU64>,
    /// The most bytes of a `Huge` body one connection took before it went away.
    most_written: Arc<AtomicU64>,
    /// Connections kept open by `Hang`, so they are never closed.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Peer {
    fn start(act: impl Fn(&str, &str) -> Act + Send + Sync + 'static) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (connections, most_written, held) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::new())));
        let act = Arc::new(act);
        let (c, m, h) = (connections.clone(), most_written.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                let (act, m, h) = (act.clone(), m.clone(), h.clone());
                std::thread::spawn(move || serve(stream, act.as_ref(), &m, &h));
            }
        });
        Peer { url, connections, most_written, _held: held }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

fn serve(mut stream: TcpStream, act: &(dyn Fn(&str, &str) -> Act + Send + Sync), most: &AtomicU64, held: &Mutex<Vec<TcpStream>>) {
    // The request head, byte by byte up to the blank line (at most 64 KiB).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65_536 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default().to_string(), words.next().unwrap_or_default().to_string());
    let length: u64 = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    match act(&method, &target) {
        Act::Answer(status, content_type, body) => {
            let _ = std::io::copy(&mut (&mut stream).take(length), &mut std::io::sink());
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
        Act::Drop => {}
        Act::Hang => held.lock().unwrap().push(stream),
        Act::Huge(status, size) => {
            let _ = std::io::copy(&mut (&mut stream).take(length), &mut std::io::sink());
            let head = format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'x'; 64 << 10];
            let mut written = 0u64;
            while written < size {
                let n = chunk.len().min((size - written) as usize);
                if stream.write_all(&chunk[..n]).is_err() {
                    break;
                }
                written += n as u64;
            }
            most.fetch_max(written, Ordering::Relaxed);
        }
    }
}

/// A loopback port with nothing listening on it.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    url
}

/// Runs ferry to its end, killing it (and failing) if it is still running after `limit`: a
/// bound so a stalled transfer fails the test instead of hanging it, not a timing assertion.
fn ferry_bounded(cwd: &Path, args: &[&str], env: &[(String, String)], limit: std::time::Duration) -> Run {
    let mut child =
        ferry_command(cwd, args, env).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("run ferry");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let step = std::time::Duration::from_millis(100);
    let mut waited = std::time::Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if waited >= limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry {args:?} was still running after {limit:?}: a stalled request was never given up\nstderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(step);
        waited += step;
    };
    Run { code: status.code().unwrap_or(-1), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

// ---------------------------------------------------------------------------------------------
// Case 15

// Issue 12, case 15: with AZURE_STORAGE_USE_EMULATOR and AZURITE_BLOB_STORAGE_URL (the README's
// variables, no endpoint flag), every request — writes and reads, single puts and blocks — goes to
// Azurite; a proxy trap catches anything that tries to leave for *.blob.core.windows.net.
#[test]
fn case_15_azure_through_the_emulator_variables_sends_every_request_to_azurite() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut files: Vec<(String, usize)> = (0..12).map(|i| (format!("small/f{i}.bin"), 1000 + i * 311)).collect();
    files.push(("big/blocks.bin".into(), (20 << 20) + 12_345));
    files.push(("mid/single.bin".into(), 6 << 20));
    write_tree(&w.join("src"), &files);
    let azurite = Azurite::start();
    azurite.create_container("emu");
    // Any request not to loopback goes through the trap (reqwest honours these), which counts it
    // and hangs up.
    let trap = Peer::start(|_, _| Act::Drop);
    let env = env(&[
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", &azurite.endpoint),
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("HTTPS_PROXY", &trap.url),
        ("HTTP_PROXY", &trap.url),
        ("ALL_PROXY", &trap.url),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ]);
    let up = ferry_ok(w, &["copy", "src", "az://emu/data", "--job", "up", "--part-size", "8MiB", "--json"], &env, 0).json();
    assert_eq!(up["copied"], files.len(), "{up}");
    ferry_ok(w, &["verify", "--job", "up", "--all-bytes"], &env, 0);
    let down = ferry_ok(w, &["copy", "az://emu/data", "back", "--job", "down", "--part-size", "8MiB", "--json"], &env, 0).json();
    assert_eq!(down["copied"], files.len(), "{down}");
    ferry_ok(w, &["verify", "--job", "down"], &env, 0);
    assert_same_tree(&w.join("src"), &w.join("back"));
    assert_eq!(trap.connections(), 0, "a request left loopback (through the proxy trap)");

    // The emulator variables alone (no account named): the development account is meant.
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| !k.starts_with("AZURE_STORAGE_ACCOUNT")).collect();
    let again = ferry_ok(w, &["copy", "src", "az://emu/again", "--job", "again", "--json"], &env, 0).json();
    assert_eq!(again["copied"], files.len(), "{again}");
    assert_eq!(trap.connections(), 0, "a request left loopback (through the proxy trap)");
}

// ---------------------------------------------------------------------------------------------
// Case 17

const SECRET: &str = "SECRETSIGNATURE123";

/// Every byte a job directory holds in its journal and reports, as text.
fn job_bytes(job: &Path) -> String {
    let mut all = String::new();
    for name in ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"] {
        if let Ok(bytes) = std::fs::read(job.join(name)) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for entry in std::fs::read_dir(job.join("reports")).into_iter().flatten().flatten() {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()));
    }
    all
}

// Issue 12, case 17: a SAS token (query parameters on every URL ferry's block client sends) never
// reaches an output — not stdout, stderr, the journal, a report, `status` or `manifest export` —
// when the peer refuses the connection, accepts and then hangs up, or accepts and never answers.
#[test]
fn case_17_a_sas_token_never_reaches_any_output() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.txt".to_string(), 1000), ("b/c.bin".to_string(), 70_000)]);
    let listing = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs><Blob><Name>f.bin</Name><Properties>\
                   <Content-Length>1000</Content-Length><Content-Type>application/octet-stream</Content-Type><Last-Modified>Tue, 01 Dec 2026 10:00:00 GMT</Last-Modified>\
                   <Etag>\"0x1\"</Etag><BlobType>BlockBlob</BlobType></Properties></Blob></Blobs><NextMarker/></EnumerationResults>";
    // Lists (ferry's check and the source listing go through object_store) answer; every request
    // of ferry's own block client is cut off, or held open with no answer.
    let hangup = Peer::start(move |_, target| match target.contains("comp=list") {
        true => Act::Answer(200, "application/xml", listing.to_string()),
        false => Act::Drop,
    });
    let silent = Peer::start(move |_, target| match target.contains("comp=list") {
        true => Act::Answer(200, "application/xml", listing.to_string()),
        false => Act::Hang,
    });
    let sas = format!("sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&sig={SECRET}");
    let env = env(&[
        ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
        ("AZURE_STORAGE_SAS_TOKEN", &sas),
        ("FERRY_REQUEST_TIMEOUT", "1"),
        ("FERRY_MIN_RATE", "1GiB"),
    ]);
    let closed = closed_port();
    let limit = std::time::Duration::from_secs(600);
    let runs: [(&str, [&str; 2], &str, i32); 5] = [
        ("up", ["src", "az://box/up"], &hangup.url, 1),
        ("down", ["az://box/", "down-dst"], &hangup.url, 1),
        ("closed", ["src", "az://box/x"], &closed, 2),
        ("silent-up", ["src", "az://box/up"], &silent.url, 1),
        ("silent-down", ["az://box/", "silent-down-dst"], &silent.url, 1),
    ];
    for (job, [src, dst], endpoint, code) in runs {
        let side = if src.starts_with("az://") { "--src-endpoint" } else { "--dst-endpoint" };
        let run = ferry_bounded(w, &["copy", src, dst, "--job", job, side, endpoint], &env, limit);
        let mut outputs = vec![("copy", run.stdout.clone() + &run.stderr)];
        if code == 1 {
            let status = ferry(w, &["status", "--job", job, "--json"], &env);
            outputs.push(("status", status.stdout.clone() + &status.stderr));
            let export = ferry(w, &["manifest", "export", "--job", job, "--format", "jsonl"], &env);
            outputs.push(("manifest export", export.stdout + &export.stderr));
            outputs.push(("the journal and reports", job_bytes(&w.join(job))));
            for (what, text) in &outputs {
                assert!(!text.contains(SECRET), "{job}: {what} contains the SAS signature:\n{text}");
            }
            assert!(
                status.stdout.contains("failed"),
                "{job}: status:\n{}{}\ncopy:\n{}{}",
                status.stdout,
                status.stderr,
                run.stdout,
                run.stderr
            );
        }
        for (what, text) in &outputs {
            assert!(!text.contains(SECRET), "{job}: {what} contains the SAS signature:\n{text}");
        }
        assert_eq!(run.code, code, "{job}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Case 18

fn pattern(size: usize, seed: u8) -> Bytes {
    Bytes::from((0..size).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed).collect::<Vec<u8>>())
}

/// A proxy in front of Azurite that, when the first GET of `blob` asking for the range starting
/// at `offset` arrives, overwrites the blob with `new` (another writer) before passing it on.
fn overwriting_proxy(azurite: &Azurite, container: &str, blob: &str, offset: u64, new: Bytes) -> (CountingProxy, Arc<AtomicBool>) {
    let fired = Arc::new(AtomicBool::new(false));
    let (endpoint, container, suffix, f) = (azurite.endpoint.clone(), container.to_string(), format!("/{blob}"), fired.clone());
    let range = format!("bytes={offset}-");
    let hook: ferry_testkit::proxy::Hook = Arc::new(move |req: &ferry_testkit::proxy::RequestHead| {
        let asks = req.method.as_str() == "GET"
            && req.uri.path().ends_with(&suffix)
            && req.headers.get("x-ms-range").and_then(|v| v.to_str().ok()).is_some_and(|r| r.starts_with(&range));
        if !asks || f.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (endpoint, container, key, new) = (endpoint.clone(), container.clone(), suffix[1..].to_string(), new.clone());
        Some(Box::pin(async move { ferry_testkit::services::put_blob(&endpoint, &container, &key, new).await }))
    });
    (CountingProxy::start_with_hook(&azurite.endpoint, Faults::DEFAULT, Some(hook)), fired)
}

// Issue 12, case 18: a source blob overwritten between two ranged reads of one object (inside a
// single read of a 6 MiB blob, and in the last part of a 24 MiB one read in 8 MiB parts) is never
// written as a mix of the two versions: the object is restarted and arrives as one version whole.
#[test]
fn case_18_an_azure_source_overwritten_between_reads_is_never_stitched() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let azurite = Azurite::start();
    for (name, size, offset) in [("single.bin", 6usize << 20, 4u64 << 20), ("parts.bin", 24 << 20, 20 << 20)] {
        let container = name.replace(".bin", "");
        azurite.create_container(&container);
        let (old, new) = (pattern(size, 0), pattern(size, 0x5a));
        azurite.put_blobs(&container, &[(name, old.clone())]);
        let (proxy, fired) = overwriting_proxy(&azurite, &container, name, offset, new.clone());
        let dst = w.join(format!("dst-{container}"));
        let src = format!("az://{container}/");
        let args =
            ["copy", &src, dst.to_str().unwrap(), "--job", &container, "--part-size", "8MiB", "--src-endpoint", &proxy.endpoint, "--json"];
        let run = ferry(w, &args, &[]);
        assert!(fired.load(Ordering::SeqCst), "{name}: the blob was never overwritten mid-read");
        let got = std::fs::read(dst.join(name)).unwrap_or_default();
        let mixed = got.len() == size && got != old && got != new;
        assert!(!mixed, "{name}: the copy is a mix of two versions of the blob (exit {}):\n{}", run.code, run.stdout);
        assert_eq!(run.code, 0, "{name}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        let summary = run.json();
        assert!(got == new, "{name}: the destination does not hold the blob's current version: {summary}");
        assert_eq!(summary["restarted"].as_array().map(Vec::len), Some(1), "{name}: {summary}");
    }
}

// Issue 12, case 18: the bytes read of a blob that declares a whole-object Content-MD5 are proved
// against it; a blob whose bytes disagree with its Content-MD5 is never marked done (single read
// of a 6 MiB blob in 4 MiB ranges, and a 20 MiB blob read in 8 MiB parts).
#[test]
fn case_18_a_blob_whose_bytes_disagree_with_its_content_md5_is_not_done() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let azurite = Azurite::start();
    azurite.create_container("lies");
    let (single, parts) = (pattern(6 << 20, 1), pattern(20 << 20, 2));
    azurite.put_blobs("lies", &[("single.bin", single), ("parts.bin", parts)]);
    // The base64 of sixteen 7s: an MD5 neither blob has.
    let wrong = "BwcHBwcHBwcHBwcHBwcHBw==";
    azurite.set_content_md5("lies", "single.bin", wrong);
    azurite.set_content_md5("lies", "parts.bin", wrong);
    let run =
        ferry(w, &["copy", "az://lies/", "dst", "--job", "j", "--part-size", "8MiB", "--src-endpoint", &azurite.endpoint, "--json"], &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["failed"], 2, "{summary}");
    for f in summary["failures"].as_array().unwrap() {
        assert!(f["error"].as_str().unwrap().contains("checksum mismatch"), "{summary}");
    }
}

// ---------------------------------------------------------------------------------------------
// Case 20

// Issue 12, case 20: an error answer's body is read only so far (a peer answering 500 with
// 100 MiB never gets them all taken), and the message printed from it stays one short line.
#[test]
fn case_20_a_huge_error_body_is_not_read_whole() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.txt".to_string(), 100)]);
    const HUGE: u64 = 100 << 20;
    let peer = Peer::start(|_, _| Act::Huge(500, HUGE));
    let run = ferry(w, &["copy", "src", "gs://box/x", "--job", "j", "--dst-endpoint", &peer.url], &[]);
    assert_ne!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    assert!(peer.connections() > 0);
    let most = peer.most_written.load(Ordering::Relaxed);
    assert!(most < HUGE / 4, "ferry took {most} bytes of a {HUGE}-byte error answer");
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        assert!(line.len() < 1000, "a {}-byte line: {}…", line.len(), &line[..200]);
    }
}

// Issue 12, case 20: sweeping a GCS bucket for stale uploads goes page by page: the upload found
// on the first page of the listing is aborted before the last page is asked for (the whole
// listing is never held), and only ferry's temporary part objects are deleted.
#[test]
fn case_20_a_gcs_sweep_aborts_page_by_page() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("sweep");
    let id = "0123456789abcdef0123456789abcdef";
    let mut objects: Vec<(String, Bytes)> =
        (0..3).map(|i| (format!("a.bin.ferry-tmp-{id}-{i:05}"), Bytes::from(vec![i as u8; 100]))).collect();
    objects.extend((0..1100).map(|i| (format!("z/{i:05}"), Bytes::from_static(b"keep"))));
    let refs: Vec<(&str, Bytes)> = objects.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    gcs.put_objects("sweep", &refs, None);
    let proxy = CountingProxy::start(&gcs.endpoint);
    let run = ferry_ok(w, &["clean", "gs://sweep/", "--older-than", "0s", "--abort", "--dst-endpoint", &proxy.endpoint, "--json"], &[], 0);
    let summary = run.json();
    assert_eq!(summary["uploads"].as_array().map(Vec::len), Some(1), "{summary}");
    let requests = proxy.requests();
    let first_delete = requests.iter().position(|r| r.starts_with("DELETE")).expect("nothing was deleted");
    let last_page =
        requests.iter().rposition(|r| r.starts_with("GET /storage/v1/b/sweep/o?") && r.contains("pageToken")).expect("one page");
    assert!(first_delete < last_page, "the whole listing was read before anything was aborted:\n{}", requests.join("\n"));
    let names = gcs.object_names("sweep");
    assert_eq!(names.len(), 1100, "only the part objects are gone");
    assert!(names.iter().all(|n| n.starts_with("z/")));
}

// ---------------------------------------------------------------------------------------------
// Case 21

// Issue 12, case 21: a GCS or Azure peer that accepts an upload and stops reading its body (and
// never answers) does not stall the object forever: each attempt times out (the limit grows with
// the body; FERRY_REQUEST_TIMEOUT and FERRY_MIN_RATE shorten it here), is retried, and the object
// fails "timed out" with exit 1.
#[test]
fn case_21_a_peer_that_stops_reading_an_upload_fails_the_object_timed_out() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // 12 MiB: far more than the socket buffers take, so the sender really blocks.
    write_tree(&w.join("src"), &[("stuck.bin".to_string(), 12 << 20)]);
    let gcs = Peer::start(|method, target| match (method, target) {
        ("GET", "/storage/v1/b/box") => Act::Answer(200, "application/json", "{\"name\":\"box\"}".into()),
        ("GET", _) => Act::Answer(404, "application/json", "{\"error\":{\"code\":404,\"message\":\"No such object\"}}".into()),
        _ => Act::Hang,
    });
    let azure = Peer::start(|method, target| match (method, target.contains("comp=list")) {
        ("GET", true) => Act::Answer(
            200,
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs/><NextMarker/></EnumerationResults>".into(),
        ),
        _ => Act::Hang,
    });
    let env = env(&[("FERRY_REQUEST_TIMEOUT", "1"), ("FERRY_MIN_RATE", "1GiB")]);
    for (job, dst, peer) in [("gs", "gs://box/x", &gcs), ("az", "az://box/x", &azure)] {
        let args = ["copy", "src", dst, "--job", job, "--part-size", "64MiB", "--dst-endpoint", &peer.url, "--json"];
        let run = ferry_bounded(w, &args, &env, std::time::Duration::from_secs(300));
        assert_eq!(run.code, 1, "{job}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        let summary = run.json();
        assert_eq!(summary["failed"], 1, "{job}: {summary}");
        let error = summary["failures"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("timed out"), "{job}: {error}");
        assert!(summary["retries"]["timeout"].as_u64().unwrap_or(0) > 0, "{job}: {summary}");
    }
}
