//! Copies through a proxy that drops 10% of new connections mid-request and answers 503 to
//! another 5%: every copy completes byte-identical, and verify proves it.

mod common;

use common::ferry_ok;
use ferry_testkit::tree::{assert_same_tree, write_tree};
use ferry_testkit::{Azurite, CountingProxy, FakeGcs, Faults, S3Server};

const MIB: usize = 1 << 20;

fn tree() -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = (0..4).map(|i| (format!("large/l{i}.bin"), 24 * MIB + i)).collect();
    files.extend((0..200).map(|i| (format!("small/s{i:03}.txt"), 100 + i * 13)));
    files
}

const FAULTS: Faults = Faults { drop_pct: 10, unavailable_pct: 5, ..Faults::DEFAULT };

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
        println!("{name}: {} connections faulted", proxy.faults_injected());
    }
}
