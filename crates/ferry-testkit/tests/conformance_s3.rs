//! The S3 adapter against s3s-fs, served in-process: one test per check, each on its own server.

use ferry_providers::Connect;
use ferry_testkit::S3Server;
use ferry_testkit::conformance::{Adapter, ListOrder, Options};

const ACCESS_KEY: &str = "ferry-conformance";
const SECRET_KEY: &str = "ferry-conformance-secret";

fn adapter() -> Adapter {
    // The S3 adapter reads credentials only from the standard AWS environment. Every test here
    // sets the same ones through this `Once` before it opens a provider; the others wait in
    // `call_once`, so nothing reads the environment while it changes.
    static CREDENTIALS: std::sync::Once = std::sync::Once::new();
    CREDENTIALS.call_once(|| {
        for (k, v) in [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY), ("AWS_REGION", "us-east-1")] {
            // SAFETY: see above; no thread reads the environment until this closure returns.
            unsafe { std::env::set_var(k, v) };
        }
    });
    let s3 = S3Server::start_with_keys(ACCESS_KEY, SECRET_KEY);
    s3.create_bucket("conformance");
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
        // s3s-fs answers AccessDenied for an upload id it no longer knows (AWS: NoSuchUpload).
        aborts_gone_uploads: false,
        copy_refuses_changed: true,
    };
    let connect = Connect { endpoint: Some(s3.endpoint.clone()), ..Default::default() };
    Adapter::registry("s3://conformance/", "s3://no-such-bucket/", connect, options).keeping(s3)
}

ferry_testkit::conformance_tests!(adapter());
