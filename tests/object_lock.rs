//! Issue 14: source objects under S3 object lock (a legal hold, a retention whose date is
//! ahead) are counted and named when the plan lists them (moto, a bucket created with object
//! lock on); a bucket without object lock is asked nothing per object.

mod common;

use common::ferry_ok;
use ferry_testkit::Moto;

#[test]
fn plan_names_the_objects_under_legal_hold_or_retention() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    moto.boto3_on("vault",
        r#"
s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
s3.put_object(Bucket=bucket, Key="free.txt", Body=b"a")
s3.put_object(Bucket=bucket, Key="held.txt", Body=b"b", ChecksumAlgorithm="CRC32", ObjectLockLegalHoldStatus="ON")
s3.put_object(Bucket=bucket, Key="kept.txt", Body=b"c", ChecksumAlgorithm="CRC32", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=datetime(2099, 1, 1))
"#,
    );
    let json = ferry_ok(w, &["plan", "s3://vault/", "out", "--job", "j", "--src-endpoint", &moto.endpoint, "--json"], &env, 0).json();
    assert_eq!(json["objects"], 3, "{json}");
    assert_eq!(json["locked"], 2, "{json}");
    let named = json["locked_objects"].as_array().unwrap();
    assert_eq!(named.len(), 2, "{json}");
    assert_eq!((named[0]["key"].as_str(), named[0]["legal_hold"].as_bool()), (Some("held.txt"), Some(true)), "{json}");
    assert!(named[0]["retention"].is_null(), "{json}");
    assert_eq!((named[1]["key"].as_str(), named[1]["legal_hold"].as_bool()), (Some("kept.txt"), Some(false)), "{json}");
    assert_eq!(named[1]["retention"]["mode"], "governance", "{json}");
    assert!(named[1]["retention"]["until"].as_str().unwrap().starts_with("2099-01-01"), "{json}");

    // The text report counts and names them too, and says the lock does not travel.
    let text = ferry_ok(w, &["plan", "s3://vault/", "out", "--job", "k", "--src-endpoint", &moto.endpoint], &env, 0);
    assert!(text.stdout.contains("2 objects are under object lock"), "{}", text.stdout);
    assert!(text.stdout.contains("never their lock"), "{}", text.stdout);
    assert!(text.stdout.contains("held.txt: legal hold"), "{}", text.stdout);
    assert!(text.stdout.contains("kept.txt: governance retention until 2099-01-01"), "{}", text.stdout);

    // Without object lock on the bucket, nothing is locked (and no object is asked).
    moto.boto3_on("plain", "s3.create_bucket(Bucket=bucket)\ns3.put_object(Bucket=bucket, Key='a.txt', Body=b'a')");
    let plain = ferry_ok(w, &["plan", "s3://plain/", "out", "--job", "p", "--src-endpoint", &moto.endpoint, "--json"], &env, 0).json();
    assert_eq!((plain["objects"].as_u64(), plain["locked"].as_u64()), (Some(1), Some(0)), "{plain}");
    assert_eq!(plain["locked_objects"], serde_json::json!([]), "{plain}");
}
