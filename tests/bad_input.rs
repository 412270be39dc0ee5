//! Bad input gets one clear line on stderr, exit code 2, and nothing written.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::{Azurite, FakeGcs, S3Server, free_port};
use std::path::Path;

/// Runs ferry expecting exit 2 with one stderr line containing `needle`, and no job directory.
fn refused(w: &Path, args: &[&str], env: &[(String, String)], needle: &str) {
    let run = ferry(w, args, env);
    assert_eq!(run.code, 2, "ferry {args:?}\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{}", run.stderr);
    assert!(lines[0].to_lowercase().contains(&needle.to_lowercase()), "{needle:?} not in {:?}", lines[0]);
    assert!(!w.join("job").exists(), "ferry {args:?} wrote a job directory");
}

#[test]
fn unknown_scheme_missing_bucket_wrong_credentials_and_unreachable_endpoints_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a"), b"a").unwrap();
    let s3 = S3Server::start();
    s3.create_bucket("real");
    let env = s3.env();
    let ep = s3.endpoint.as_str();

    refused(w, &["plan", "ftp://host/x", "dst", "--job", "job"], &env, "unknown URL scheme");
    refused(w, &["copy", "src", "s3://missing-bucket/x", "--job", "job", "--dst-endpoint", ep], &env, "missing-bucket");
    refused(w, &["copy", "s3://missing-bucket/x", "dst", "--job", "job", "--src-endpoint", ep], &env, "does not exist");

    let wrong: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| if k == "AWS_SECRET_ACCESS_KEY" { (k.clone(), "not-the-secret".into()) } else { (k.clone(), v.clone()) })
        .collect();
    refused(w, &["copy", "src", "s3://real/x", "--job", "job", "--dst-endpoint", ep], &wrong, "denied");

    let nobody = format!("http://127.0.0.1:{}", free_port());
    refused(w, &["copy", "src", "s3://real/x", "--job", "job", "--dst-endpoint", &nobody], &env, "cannot reach");
    refused(w, &["copy", "src", "az://cnt/x", "--job", "job", "--dst-endpoint", &nobody], &env, "cannot reach");
    refused(w, &["copy", "src", "gs://bkt/x", "--job", "job", "--dst-endpoint", &nobody], &env, "cannot reach");
    refused(w, &["copy", "no/such/dir", "dst", "--job", "job"], &env, "does not exist");
    refused(w, &["copy", "src", "s3://AKIA:SECRET@real/x", "--job", "job"], &env, "credentials");
    // A job directory inside a local source or destination would copy itself.
    refused(w, &["copy", "src", ".", "--job", "job"], &env, "inside the destination");
    refused(w, &["copy", ".", "dst", "--job", "job"], &env, "inside the source");
}

#[test]
fn azure_and_gcs_missing_containers_and_wrong_keys_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a"), b"a").unwrap();
    let azurite = Azurite::start();
    azurite.create_container("real");
    let gcs = FakeGcs::start();

    refused(w, &["copy", "src", "az://nocontainer/x", "--job", "job", "--dst-endpoint", &azurite.endpoint], &[], "nocontainer");
    refused(w, &["copy", "src", "gs://nobucket/x", "--job", "job", "--dst-endpoint", &gcs.endpoint], &[], "nobucket");
    let wrong = [
        ("AZURE_STORAGE_ACCOUNT_NAME".to_string(), "devstoreaccount1".to_string()),
        ("AZURE_STORAGE_ACCOUNT_KEY".to_string(), "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=".to_string()),
    ];
    let ep = format!("{}/devstoreaccount1", azurite.endpoint);
    refused(w, &["copy", "src", "az://real/x", "--job", "job", "--dst-endpoint", &ep], &wrong, "denied");
}

#[test]
fn a_job_directory_refuses_another_source_or_destination() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::create_dir_all(w.join("other")).unwrap();
    std::fs::write(w.join("src/a"), b"a").unwrap();
    ferry_ok(w, &["copy", "src", "dst", "--job", "job"], &[], 0);
    let before = std::fs::read(w.join("job/job.toml")).unwrap();
    for args in [["copy", "other", "dst", "--job", "job"], ["copy", "src", "elsewhere", "--job", "job"]] {
        let run = ferry(w, &args, &[]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("belongs to a job"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read(w.join("job/job.toml")).unwrap(), before, "job file untouched");
    assert!(!w.join("elsewhere").exists());
    let run = ferry(w, &["verify", "--job", "nojob"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn no_secret_reaches_the_job_directory_or_the_output() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::write(w.join("src/a"), b"a").unwrap();
    let s3 = S3Server::start();
    s3.create_bucket("bkt1");
    let env = s3.env();
    let mut outputs = String::new();
    for args in [
        vec!["copy", "src", "s3://bkt1/p", "--job", "job", "--dst-endpoint", &s3.endpoint],
        vec!["verify", "--job", "job", "--json"],
        vec!["status", "--job", "job"],
        vec!["manifest", "export", "--job", "job", "--format", "jsonl"],
    ] {
        let run = ferry_ok(w, &args, &env, 0);
        outputs.push_str(&run.stdout);
        outputs.push_str(&run.stderr);
    }
    assert!(!outputs.contains(&s3.secret_key), "a command printed the secret");
    let mut stack = vec![w.join("job")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                let found = bytes.windows(s3.secret_key.len()).any(|win| win == s3.secret_key.as_bytes());
                assert!(!found, "{} holds the secret key", p.display());
            }
        }
    }
    assert!(files >= 4, "job dir has {files} files");
}
