//! The awkward tree makes the round trip file → s3 → az → gs → file, one job per hop, and
//! comes back byte-identical; each hop verifies clean and keeps content types.

mod common;

use common::ferry_ok;
use ferry_testkit::tree::{assert_same_tree, awkward_files, write_tree};
use ferry_testkit::{Azurite, FakeGcs, S3Server};

#[test]
fn awkward_tree_round_trips_through_s3_azure_and_gcs() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &awkward_files(true));

    let s3 = S3Server::start();
    s3.create_bucket("hop1");
    let azurite = Azurite::start();
    azurite.create_container("hop2");
    let gcs = FakeGcs::start();
    gcs.create_bucket("hop3");
    let env = s3.env();

    // (job, from, to, source endpoint, destination endpoint)
    type Hop<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
    let hops: [Hop; 4] = [
        ("job1", "src", "s3://hop1/tree", None, Some(&s3.endpoint)),
        ("job2", "s3://hop1/tree", "az://hop2/x/tree", Some(&s3.endpoint), Some(&azurite.endpoint)),
        ("job3", "az://hop2/x/tree", "gs://hop3/tree", Some(&azurite.endpoint), Some(&gcs.endpoint)),
        ("job4", "gs://hop3/tree", "back", Some(&gcs.endpoint), None),
    ];
    for (job, from, to, src_ep, dst_ep) in hops {
        let mut args = vec!["copy", from, to, "--job", job, "--part-size", "8MiB", "--json"];
        if let Some(ep) = src_ep {
            args.extend(["--src-endpoint", ep]);
        }
        if let Some(ep) = dst_ep {
            args.extend(["--dst-endpoint", ep]);
        }
        let copied = ferry_ok(w, &args, &env, 0).json();
        assert_eq!(copied["failed"], 0, "{job}: {copied}");
        assert_eq!(copied["copied"], awkward_files(true).len(), "{job}: {copied}");
        if from.starts_with("gs://") {
            // GCS lists each object's CRC32C: every byte read was checked against the source's own.
            assert_eq!(copied["verified_by"]["source crc32c"], awkward_files(true).len(), "{job}: {copied}");
        }

        let verified = ferry_ok(w, &["verify", "--job", job, "--json"], &env, 0).json();
        assert_eq!(verified["matched"], awkward_files(true).len(), "{job}: {verified}");
        assert_eq!(verified["differences"].as_array().unwrap().len(), 0, "{job}: {verified}");
    }
    assert_same_tree(&src, &w.join("back"));

    // Content types survived the object-store hops (the local source's were guessed).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let loc = ferry_core::Location::parse("gs://hop3/tree").unwrap();
        let gs = ferry_providers::open(
            &loc,
            &ferry_providers::Connect { endpoint: Some(gcs.endpoint.clone()), profile: None, ..Default::default() },
            &ferry_providers::RunContext::unlimited(),
        )
        .await
        .unwrap();
        let head = gs.head("names/with space.txt").await.unwrap().expect("object on gcs");
        assert_eq!(head.content_type.as_deref(), Some("text/plain"));
        let big = gs.head("sizes/300MiB.bin").await.unwrap().expect("object on gcs");
        assert_eq!(big.size, 300 << 20);
    });
}
