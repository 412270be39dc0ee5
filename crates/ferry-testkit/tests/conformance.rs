//! The conformance suite against each adapter on its real local service.
//!
//! One test function per process on purpose: the S3 adapter reads credentials only from the
//! standard AWS environment, and the environment may be changed only while no other thread
//! reads it, so this binary sets it once before any runtime starts.

use ferry_core::Location;
use ferry_providers::{Connect, ProviderError};
use ferry_testkit::conformance::{Suite, run};
use ferry_testkit::{Azurite, FakeGcs, S3Server};

#[test]
fn every_adapter_passes_the_conformance_suite() {
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    for (k, v) in s3.env() {
        // SAFETY: the only test in this binary; no other thread exists yet that reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let azurite = Azurite::start();
    azurite.create_container("conformance");
    let gcs = FakeGcs::start();
    gcs.create_bucket("conformance");
    let local = tempfile::tempdir().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cases = [
            ("s3://conformance/suite/", Some(s3.endpoint.clone()), true),
            ("az://conformance/suite/", Some(azurite.endpoint.clone()), true),
            ("gs://conformance/suite/", Some(gcs.endpoint.clone()), true),
            (&*format!("file://{}/suite", local.path().display()), None, false),
        ];
        for (url, endpoint, keeps_attributes) in cases {
            let location = Location::parse(url).unwrap();
            let p = ferry_providers::open(
                &location,
                &Connect { endpoint: endpoint.clone(), profile: None, ..Default::default() },
                &ferry_providers::RunContext::unlimited(),
            )
            .await
            .unwrap();
            if location.scheme == ferry_core::Scheme::Local {
                std::fs::create_dir_all(&location.prefix).unwrap();
            }
            run(p.as_ref(), Suite { keeps_attributes }).await;

            // A missing bucket is named as such, and is fatal.
            let missing = Location { bucket: "no-such-bucket".into(), prefix: String::new(), ..location.clone() };
            let missing =
                if location.scheme == ferry_core::Scheme::Local { Location::parse("/nonexistent/ferry/dir").unwrap() } else { missing };
            let p = ferry_providers::open(
                &missing,
                &Connect { endpoint, profile: None, ..Default::default() },
                &ferry_providers::RunContext::unlimited(),
            )
            .await
            .unwrap();
            match p.check(false).await {
                Err(e @ ProviderError::NoSuchBucket { .. }) => assert_eq!(e.class(), ferry_core::ErrorClass::Fatal),
                other => panic!("{url}: check of a missing bucket gave {other:?}"),
            }
        }
    });
}
