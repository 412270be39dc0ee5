//! Issue 13, "one retry layer instead of SDK × mover × re-send nested retries": a request the
//! service refuses is sent at most `retries::REQUEST.attempts` times in all — not the S3 SDK's
//! (or ferry's own HTTP helper's) attempts times the mover's — and the run's report counts
//! each retry once, by cause. Counted at the service's door (the test proxy), against the real
//! emulators: S3 through the AWS SDK, GCS and Azure through ferry's own HTTP.

mod common;

use common::ferry_ok;
use ferry_providers::retries::REQUEST;
use ferry_testkit::tree::write_tree;
use ferry_testkit::{Azurite, CountingProxy, FakeGcs, Faults, S3Server};

/// Copies one small file to `url` through a proxy that refuses the first `refused` uploads
/// (503 SlowDown, `Retry-After: 0`); returns the run's report and the uploads the proxy refused.
fn copy_refused(url: &str, service: &str, env: &[(String, String)], refused: u64, code: i32) -> (serde_json::Value, u64) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("one.txt".to_string(), 1000)]);
    let proxy = CountingProxy::start_with_faults(service, Faults { refuse_uploads: refused, ..Faults::DEFAULT });
    let args = ["copy", "src", url, "--job", "j", "--dst-endpoint", &proxy.endpoint, "--json"];
    let report = ferry_ok(w, &args, env, code).json();
    (report, proxy.faults_by_kind().get("refused upload").copied().unwrap_or(0))
}

fn one_layer(name: &str, url: &str, service: &str, env: &[(String, String)], cause: &str) {
    let attempts = u64::from(REQUEST.attempts);
    // Refused for good: the upload is sent `attempts` times in all, then the object fails.
    let (report, sent) = copy_refused(&format!("{url}/always"), service, env, u64::MAX, 1);
    assert_eq!(report["failed"], 1, "{name}: {report}");
    assert_eq!(sent, attempts, "{name}: one refused upload sent {sent} times (nested retries multiply): {report}");
    assert_eq!(report["retries"], serde_json::json!({ cause: attempts - 1 }), "{name}: each retry counted once: {report}");
    // Refused twice, then taken: three sends, two retries counted.
    let (report, sent) = copy_refused(&format!("{url}/twice"), service, env, 2, 0);
    assert_eq!((report["copied"].as_u64(), sent), (Some(1), 2), "{name}: {report}");
    assert_eq!(report["retries"], serde_json::json!({ cause: 2 }), "{name}: {report}");
}

#[test]
fn a_refused_s3_upload_is_sent_at_most_the_layers_attempts() {
    let s3 = S3Server::start();
    s3.create_bucket("retry");
    // S3 names a 503 SlowDown throttling.
    one_layer("s3", "s3://retry", &s3.endpoint, &s3.env(), "throttled (429)");
}

#[test]
fn a_refused_gcs_upload_is_sent_at_most_the_layers_attempts() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("retry");
    one_layer("gs", "gs://retry", &gcs.endpoint, &[], "unavailable (503)");
}

#[test]
fn a_refused_azure_upload_is_sent_at_most_the_layers_attempts() {
    let azurite = Azurite::start();
    azurite.create_container("retry");
    one_layer("az", "az://retry", &azurite.endpoint, &[], "unavailable (503)");
}

/// object_store's requests (Azure's listing and container check) go through the same layer:
/// a service busy for the run's first two requests is asked again, and the report counts both.
#[test]
fn azure_listing_through_object_store_is_retried_and_counted_by_the_one_layer() {
    let azurite = Azurite::start();
    azurite.create_container("listed");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("one.txt".to_string(), 1000)]);
    ferry_ok(w, &["copy", "src", "az://listed/p", "--job", "up", "--dst-endpoint", &azurite.endpoint], &[], 0);
    let proxy = CountingProxy::start_with_faults(&azurite.endpoint, Faults { refuse_first: 2, ..Faults::DEFAULT });
    let args = ["copy", "az://listed/p", "back", "--job", "down", "--src-endpoint", &proxy.endpoint, "--json"];
    let report = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(proxy.faults_by_kind().get("refused"), Some(&2));
    assert_eq!(report["retries"], serde_json::json!({ "unavailable (503)": 2 }), "{report}");
}
