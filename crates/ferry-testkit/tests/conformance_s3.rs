//! The S3 adapter against s3s-fs, served in-process.

use ferry_providers::Connect;
use ferry_testkit::S3Server;
use ferry_testkit::conformance::{Adapter, ListOrder, Options, run};

/// One test for the whole suite (each check still runs and fails on its own): the S3 adapter
/// reads credentials only from the standard AWS environment, which may be set only while no
/// other thread reads it — so once, before any runtime starts, in the only test here.
#[test]
fn s3_adapter_conforms() {
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    for (k, v) in s3.env() {
        // SAFETY: the only test in this binary; no other thread exists yet that reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let options = Options {
        limits: ferry_providers::s3::LIMITS,
        keeps_attributes: true,
        list_order: ListOrder::Bytes,
        // s3s-fs does not implement ListMultipartUploads (AWS S3 does).
        lists_uploads: false,
        server_copy: true,
        copies_in_parts: true,
        // s3s-fs keeps objects as files named after the key and cannot take a 255-byte name.
        long_segment: false,
        copy_refuses_changed: true,
        // s3s-fs answers AccessDenied for an upload id it no longer knows (AWS: NoSuchUpload).
        aborts_gone_uploads: false,
    };
    let connect = Connect { endpoint: Some(s3.endpoint.clone()), ..Default::default() };
    run(Adapter::registry("s3://conformance/", "s3://no-such-bucket/", connect, options));
}
