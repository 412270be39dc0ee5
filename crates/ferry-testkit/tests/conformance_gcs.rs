//! The GCS adapter against fake-gcs-server: one test per check, each on its own server.

use ferry_providers::Connect;
use ferry_testkit::FakeGcs;
use ferry_testkit::conformance::{Adapter, ListOrder, Options};

fn adapter() -> Adapter {
    let gcs = FakeGcs::start();
    gcs.create_bucket("conformance");
    let options = Options {
        limits: ferry_providers::gcs::LIMITS,
        keeps_attributes: true,
        list_order: ListOrder::Bytes,
        lists_uploads: true,
        server_copy: true,
        copies_in_parts: false,
        long_segment: true,
        aborts_gone_uploads: true,
        // fake-gcs-server ignores ifSourceGenerationMatch on rewrites (GCS honours it).
        copy_refuses_changed: false,
    };
    let connect = Connect { endpoint: Some(gcs.endpoint.clone()), ..Default::default() };
    Adapter::registry("gs://conformance/", "gs://no-such-bucket/", connect, options).keeping(gcs)
}

ferry_testkit::conformance_tests!(adapter());
